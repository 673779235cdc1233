//! The real Runtime process killed with SIGKILL in the middle of processing and of commits,
//! then restarted on the same data: every acknowledged commit is there, and the event handler
//! skips nothing and sees again at most the events after its last stored position.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::heads::{TestEventHandler, event_of};
use common::{ChildRuntime, call_context, connect, event_type, uncommitted};
use dolittle_contracts::runtime::events::CommitEventsRequest;
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x5f6e7d8c_9b0a_4c1d_8e2f_3a4b5c6d7e8f));
/// The most events a handler may see again after a crash: one batch of the stream processor.
const BATCH: u64 = 100;

#[tokio::test]
async fn a_killed_runtime_loses_no_acknowledged_commit_and_skips_no_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ChildRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = EventStoreClient::new(connect(runtime.address).await);
    for batch in 0..5 {
        let events = (0..100)
            .map(|n| {
                uncommitted(
                    &format!("{batch}-{n}"),
                    event_type(1),
                    &format!("{{\"n\":{}}}", batch * 100 + n),
                )
            })
            .collect();
        let response = store
            .commit(CommitEventsRequest {
                call_context: call_context(TenantId::DEVELOPMENT),
                events,
            })
            .await
            .expect("commit")
            .into_inner();
        assert!(response.failure.is_none());
    }

    // A committer keeps committing one event at a time while the process is killed.
    let committer_address = runtime.address;
    let committer = tokio::spawn(async move {
        let mut client = EventStoreClient::new(connect(committer_address).await);
        let mut acknowledged = Vec::new();
        loop {
            let request = CommitEventsRequest {
                call_context: call_context(TenantId::DEVELOPMENT),
                events: vec![uncommitted("late", event_type(2), "{}")],
            };
            match client.commit(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    assert!(response.failure.is_none());
                    acknowledged.push(response.events[0].event_log_sequence_number);
                }
                Err(_) => return acknowledged,
            }
        }
    });

    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], false)
            .await;
    let mut first_run = Vec::new();
    while first_run.len() < 250 {
        let request = handler.next_request().await;
        first_run.push(event_of(&request).sequence_number);
        handler.respond(&request, None).await;
    }
    runtime.kill();
    let acknowledged = committer.await.expect("committer");
    assert!(
        !acknowledged.is_empty(),
        "commits were acknowledged before the kill"
    );

    let runtime = ChildRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = EventStoreClient::new(connect(runtime.address).await);
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], false)
            .await;
    assert!(handler.refused.is_none());
    let mut second_run = Vec::new();
    loop {
        let request = handler.next_request().await;
        let sequence_number = event_of(&request).sequence_number;
        second_run.push(sequence_number);
        handler.respond(&request, None).await;
        if sequence_number == 499 {
            break;
        }
    }
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;

    // Nothing skipped: every event was handled in one run or the other, and in order.
    let handled: BTreeSet<u64> = first_run.iter().chain(second_run.iter()).copied().collect();
    assert_eq!(handled, (0..500).collect::<BTreeSet<u64>>());
    assert!(
        second_run.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "in order after the restart"
    );
    // Re-delivery only since the last stored position.
    let resumed_at = second_run[0];
    let handled_before = *first_run.last().expect("handled") + 1;
    assert!(
        resumed_at <= handled_before,
        "resumed at {resumed_at}, after what was handled"
    );
    assert!(
        handled_before - resumed_at <= BATCH,
        "resumed at {resumed_at}, {handled_before} were handled"
    );

    // Every acknowledged commit survived, and the log goes on without a gap.
    let next = store
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![uncommitted("after", event_type(2), "{}")],
        })
        .await
        .expect("commit")
        .into_inner();
    let next_sequence_number = next.events[0].event_log_sequence_number;
    let last_acknowledged = *acknowledged.last().expect("acknowledged");
    assert!(
        next_sequence_number > last_acknowledged,
        "acknowledged commit {last_acknowledged} was lost"
    );
    assert_eq!(
        acknowledged,
        (500..=last_acknowledged).collect::<Vec<_>>(),
        "acknowledged commits are gapless"
    );
    runtime.kill();
}

#[tokio::test]
async fn sigterm_stops_the_runtime_gracefully_with_a_head_connected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ChildRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = EventStoreClient::new(connect(runtime.address).await);
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    let response = store
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![uncommitted("a", event_type(1), "{}")],
        })
        .await
        .expect("commit")
        .into_inner();
    assert!(response.failure.is_none());
    let request = handler.next_request().await;
    handler.respond(&request, None).await;
    let status = tokio::task::spawn_blocking(move || runtime.terminate())
        .await
        .expect("terminate");
    assert!(status.success(), "exit status {status}");

    // What was acknowledged and handled before the shutdown is still there and not re-sent.
    let runtime = ChildRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    assert!(handler.refused.is_none());
    handler
        .expect_no_request_for(Duration::from_millis(500))
        .await;
    runtime.kill();
}
