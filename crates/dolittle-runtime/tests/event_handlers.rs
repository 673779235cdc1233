//! Event handlers over real reverse calls on loopback: order, partitions, retries, the rules
//! of streams on re-registration, and disconnects.

mod common;

use std::time::Duration;

use common::heads::{TestEventHandler, event_of, partition_of, tenant_of};
use common::{SECOND_TENANT, TestRuntime, commit, event_type, failure_id, uncommitted};
use dolittle_contracts::failure_ids;
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x4e5d6c7b_8a9f_4b0c_9d1e_2f3a4b5c6d7e));
const RETRY_SOON: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_handler_sees_every_event_of_its_types_once_and_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{\"n\":0}"),
            uncommitted("a", event_type(2), "{\"n\":1}"),
            uncommitted("b", event_type(1), "{\"n\":2}"),
        ],
    )
    .await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    assert!(handler.refused.is_none(), "{:?}", handler.refused);

    let mut seen = Vec::new();
    for _ in 0..2 {
        let request = handler.next_request().await;
        seen.push(event_of(&request).sequence_number);
        assert_eq!(tenant_of(&request), TenantId::DEVELOPMENT);
        handler.respond(&request, None).await;
    }
    assert_eq!(
        seen,
        vec![0, 2],
        "only events of the handled type, in order (catch-up)"
    );

    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("c", event_type(1), "{\"n\":3}")],
    )
    .await;
    let live = handler.next_request().await;
    let event = event_of(&live);
    assert_eq!(
        (event.sequence_number, event.content.as_str()),
        (3, "{\"n\":3}")
    );
    assert_eq!(partition_of(&live), "c", "partitioned by event source");
    handler.respond(&live, None).await;
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_failing_partition_is_parked_while_the_others_go_on_and_is_retried() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("failing", event_type(1), "{\"n\":0}"),
            uncommitted("healthy", event_type(1), "{\"n\":1}"),
            uncommitted("failing", event_type(1), "{\"n\":2}"),
            uncommitted("healthy", event_type(1), "{\"n\":3}"),
        ],
    )
    .await;

    let first = handler.next_request().await;
    assert_eq!(event_of(&first).sequence_number, 0);
    assert!(first.retry_processing_state.is_none());
    handler.respond(&first, Some(("boom", RETRY_SOON))).await;

    // The healthy partition goes on past the failing one's events.
    let mut order = Vec::new();
    let mut retries = Vec::new();
    while order.len() < 5 {
        let request = handler.next_request().await;
        let event = event_of(&request);
        if let Some(retry) = &request.retry_processing_state {
            retries.push((
                event.sequence_number,
                retry.retry_count,
                retry.failure_reason.clone(),
            ));
        }
        order.push((partition_of(&request), event.sequence_number));
        let fail_again = event.sequence_number == 0 && retries.len() == 1;
        handler
            .respond(&request, fail_again.then_some(("boom again", RETRY_SOON)))
            .await;
    }
    let healthy: Vec<u64> = order
        .iter()
        .filter(|(partition, _)| partition == "healthy")
        .map(|(_, n)| *n)
        .collect();
    let failing: Vec<u64> = order
        .iter()
        .filter(|(partition, _)| partition == "failing")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(healthy, vec![1, 3]);
    assert_eq!(
        failing,
        vec![0, 0, 2],
        "retried twice, then caught up in order"
    );
    assert_eq!(
        retries,
        vec![(0, 0, "boom".to_owned()), (0, 1, "boom again".to_owned())]
    );
    handler
        .expect_no_request_for(Duration::from_millis(500))
        .await;
    runtime.stop().await;
}

#[tokio::test]
async fn an_unpartitioned_handler_halts_at_a_failing_event_until_it_succeeds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], false)
            .await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{}"),
            uncommitted("b", event_type(1), "{}"),
        ],
    )
    .await;
    let first = handler.next_request().await;
    assert_eq!(partition_of(&first), "00000000-0000-0000-0000-000000000000");
    handler.respond(&first, Some(("boom", RETRY_SOON))).await;
    let retried = handler.next_request().await;
    assert_eq!(
        event_of(&retried).sequence_number,
        0,
        "nothing after the failing event first"
    );
    assert_eq!(
        retried
            .retry_processing_state
            .as_ref()
            .map(|retry| retry.retry_count),
        Some(0)
    );
    handler.respond(&retried, None).await;
    let second = handler.next_request().await;
    assert_eq!(event_of(&second).sequence_number, 1);
    assert!(second.retry_processing_state.is_none());
    handler.respond(&second, None).await;
    runtime.stop().await;
}

#[tokio::test]
async fn every_tenant_gets_its_own_processor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT, SECOND_TENANT]).await;
    let mut store = runtime.event_store().await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    commit(
        &mut store,
        SECOND_TENANT,
        vec![uncommitted("a", event_type(1), "{\"tenant\":2}")],
    )
    .await;
    let request = handler.next_request().await;
    assert_eq!(tenant_of(&request), SECOND_TENANT);
    assert_eq!(event_of(&request).content, "{\"tenant\":2}");
    handler.respond(&request, None).await;
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_second_registration_of_the_same_handler_is_refused_while_the_first_is_connected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let first =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    assert!(first.refused.is_none());
    let mut second =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    let refused = second.refused.clone().expect("refused");
    assert_eq!(
        failure_id(&refused),
        failure_ids::FAILED_TO_REGISTER_EVENT_HANDLER
    );
    assert!(
        refused.reason.contains("already registered"),
        "{}",
        refused.reason
    );
    // The refused call stays open (and pinged) so that SDK 17 retries calmly.
    second
        .expect_no_request_for(Duration::from_millis(1500))
        .await;

    let invalid = TestEventHandler::register(
        &runtime,
        EventProcessorId::NIL,
        ScopeId::DEFAULT,
        &[event_type(1)],
        true,
    )
    .await;
    let refused = invalid.refused.clone().expect("refused");
    assert_eq!(
        failure_id(&refused),
        failure_ids::CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM
    );
    runtime.stop().await;
}

#[tokio::test]
async fn a_reconnecting_handler_resumes_where_it_was_without_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let events = (0..3)
        .map(|n| uncommitted("a", event_type(1), &format!("{{\"n\":{n}}}")))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;

    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    for expected in 0..2 {
        let request = handler.next_request().await;
        assert_eq!(event_of(&request).sequence_number, expected);
        handler.respond(&request, None).await;
    }
    let unanswered = handler.next_request().await;
    assert_eq!(event_of(&unanswered).sequence_number, 2);
    handler.disconnect();

    // The old registration is torn down; a new one succeeds and gets the unanswered event.
    let mut again = loop {
        let handler =
            TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
                .await;
        if handler.refused.is_none() {
            break handler;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = again.next_request().await;
    assert_eq!(
        event_of(&request).sequence_number,
        2,
        "resumes at the first unhandled event"
    );
    again.respond(&request, None).await;
    again
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    runtime.stop().await;
}

#[tokio::test]
async fn re_registrations_that_break_the_rules_of_streams_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{}"),
            uncommitted("a", event_type(2), "{}"),
        ],
    )
    .await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    let request = handler.next_request().await;
    handler.respond(&request, None).await;
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    handler.disconnect();

    let register_until_not_busy = |types: Vec<dolittle_types::EventType>, partitioned: bool| {
        let runtime = &runtime;
        async move {
            loop {
                let handler = TestEventHandler::register(
                    runtime,
                    HANDLER,
                    ScopeId::DEFAULT,
                    &types,
                    partitioned,
                )
                .await;
                match &handler.refused {
                    Some(failure) if failure.reason.contains("already registered") => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => return handler,
                }
            }
        }
    };

    let added_past_type = register_until_not_busy(vec![event_type(1), event_type(2)], true).await;
    let reason = added_past_type.refused.clone().expect("refused").reason;
    assert!(reason.contains("already occurred"), "{reason}");
    added_past_type.disconnect();

    let removed_type = register_until_not_busy(vec![event_type(3)], true).await;
    let reason = removed_type.refused.clone().expect("refused").reason;
    assert!(reason.contains("no longer handles"), "{reason}");
    removed_type.disconnect();

    let unpartitioned = register_until_not_busy(vec![event_type(1)], false).await;
    let reason = unpartitioned.refused.clone().expect("refused").reason;
    assert!(reason.contains("partitioned"), "{reason}");
    unpartitioned.disconnect();

    let never_committed_type =
        register_until_not_busy(vec![event_type(1), event_type(9)], true).await;
    assert!(
        never_committed_type.refused.is_none(),
        "a type never committed may be added"
    );
    runtime.stop().await;
}

fn handler_key() -> dolittle_store::ProcessorKey {
    dolittle_store::ProcessorKey {
        kind: dolittle_store::ProcessorKind::EventHandler,
        scope: ScopeId::DEFAULT,
        processor: HANDLER,
    }
}

#[tokio::test]
async fn a_replay_while_the_head_is_connected_sends_the_events_again_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let events = ["a", "b", "a", "b"]
        .iter()
        .map(|source| uncommitted(source, event_type(1), "{}"))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    for _ in 0..4 {
        let request = handler.next_request().await;
        handler.respond(&request, None).await;
    }
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;

    let past = dolittle_runtime::processing::replay(
        &runtime.context,
        handler_key(),
        Some(TenantId::DEVELOPMENT),
        Some(10),
        None,
    )
    .await;
    let error = past
        .expect_err("a position past the current one is refused")
        .to_string();
    assert!(
        error.contains("past the processor's current position 4"),
        "{error}"
    );

    dolittle_runtime::processing::replay(
        &runtime.context,
        handler_key(),
        Some(TenantId::DEVELOPMENT),
        Some(1),
        None,
    )
    .await
    .expect("replay from 1");
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let request = handler.next_request().await;
        replayed.push(event_of(&request).sequence_number);
        handler.respond(&request, None).await;
    }
    replayed.sort_unstable();
    assert_eq!(replayed, vec![1, 2, 3]);
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;

    dolittle_runtime::processing::replay(
        &runtime.context,
        handler_key(),
        None,
        Some(0),
        Some("a".into()),
    )
    .await
    .expect("replay one partition");
    let mut partition_a = Vec::new();
    for _ in 0..2 {
        let request = handler.next_request().await;
        assert_eq!(partition_of(&request), "a");
        assert!(
            request.retry_processing_state.is_none(),
            "a replay is not a retry"
        );
        partition_a.push(event_of(&request).sequence_number);
        handler.respond(&request, None).await;
    }
    assert_eq!(partition_a, vec![0, 2], "in order within the partition");
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    runtime.stop().await;
}
