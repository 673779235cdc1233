//! The event store service over real gRPC on loopback, on embedded stores in a temporary
//! folder: commits, aggregates and conflicts, tenant isolation, bad input, restarts.

mod common;

use common::{
    SECOND_TENANT, TestRuntime, call_context, commit, event_type, failure_id, uncommitted,
};
use dolittle_contracts::convert;
use dolittle_contracts::failure_ids;
use dolittle_contracts::protobuf::Uuid as WireUuid;
use dolittle_contracts::runtime::events::uncommitted_aggregate_events::UncommittedAggregateEvent;
use dolittle_contracts::runtime::events::{
    CommitAggregateEventsRequest, CommitEventsRequest, FetchForAggregateRequest,
    UncommittedAggregateEvents,
};
use dolittle_contracts::services::CallRequestContext;
use dolittle_runtime::failures::{INVALID_REQUEST, UNKNOWN_TENANT};
use dolittle_types::{AggregateRootId, TenantId, Uuid};

const KITCHEN: AggregateRootId =
    AggregateRootId(Uuid::from_u128(0x0d8f7c6b_5a49_4c3b_9e2d_1f0a9b8c7d6e));

fn aggregate_commit(
    tenant: TenantId,
    event_source: &str,
    expected: u64,
    contents: &[&str],
) -> CommitAggregateEventsRequest {
    let (guid, text) = convert::string_id_to_wire(event_source);
    CommitAggregateEventsRequest {
        call_context: call_context(tenant),
        events: Some(UncommittedAggregateEvents {
            aggregate_root_id: Some(KITCHEN.into()),
            event_source_id: Some(guid),
            expected_aggregate_root_version: expected,
            events: contents
                .iter()
                .map(|content| UncommittedAggregateEvent {
                    artifact: Some(event_type(1).into()),
                    public: false,
                    content: (*content).to_owned(),
                })
                .collect(),
            event_source_id_string: Some(text),
        }),
    }
}

fn fetch_request(tenant: TenantId, event_source: &str) -> FetchForAggregateRequest {
    FetchForAggregateRequest {
        call_context: call_context(tenant),
        aggregate: Some(convert::aggregate_to_wire(KITCHEN, &event_source.into())),
    }
}

#[tokio::test]
async fn commits_get_gapless_sequence_numbers_and_return_content_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;
    let content = "{ \"b\": 1,   \"a\": \"ø\" }";
    let first = commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![uncommitted("kitchen 1", event_type(1), content)],
    )
    .await;
    let batch = commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{}"),
            uncommitted("b", event_type(2), "[1]"),
        ],
    )
    .await;
    assert_eq!(first[0].sequence_number, 0);
    assert_eq!(first[0].content, content);
    assert_eq!(first[0].event_source.as_str(), "kitchen 1");
    assert_eq!(first[0].execution_context.tenant, TenantId::DEVELOPMENT);
    assert_eq!(
        batch
            .iter()
            .map(|event| event.sequence_number)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(batch[1].event_type, event_type(2));
    runtime.stop().await;
}

#[tokio::test]
async fn bad_requests_get_failures_that_name_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;

    let empty = client
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![],
        })
        .await
        .expect("call")
        .into_inner();
    assert_eq!(
        failure_id(empty.failure.as_ref().expect("failure")),
        failure_ids::NO_EVENTS_TO_COMMIT
    );

    let bad_json = client
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![
                uncommitted("a", event_type(1), "{}"),
                uncommitted("a", event_type(1), "{oops"),
            ],
        })
        .await
        .expect("call")
        .into_inner();
    let failure = bad_json.failure.expect("failure");
    assert_eq!(failure_id(&failure), INVALID_REQUEST);
    assert!(failure.reason.contains("event 1"), "{}", failure.reason);

    let mut short_uuid = call_context(TenantId::DEVELOPMENT);
    if let Some(execution_context) = short_uuid
        .as_mut()
        .and_then(|context| context.execution_context.as_mut())
    {
        execution_context.tenant_id = Some(WireUuid {
            value: vec![1, 2, 3],
        });
    }
    let short = client
        .commit(CommitEventsRequest {
            call_context: short_uuid,
            events: vec![uncommitted("a", event_type(1), "{}")],
        })
        .await
        .expect("call")
        .into_inner();
    let failure = short.failure.expect("failure");
    assert_eq!(failure_id(&failure), INVALID_REQUEST);
    assert!(failure.reason.contains("tenantId"), "{}", failure.reason);

    let unknown = client
        .commit(CommitEventsRequest {
            call_context: call_context(SECOND_TENANT),
            events: vec![uncommitted("a", event_type(1), "{}")],
        })
        .await
        .expect("call")
        .into_inner();
    let failure = unknown.failure.expect("failure");
    assert_eq!(failure_id(&failure), UNKNOWN_TENANT);
    assert!(
        failure.reason.contains(&SECOND_TENANT.to_string()),
        "{}",
        failure.reason
    );

    let missing_context = client
        .commit(CommitEventsRequest {
            call_context: Some(CallRequestContext {
                execution_context: None,
                head_id: None,
            }),
            events: vec![uncommitted("a", event_type(1), "{}")],
        })
        .await
        .expect("call")
        .into_inner();
    assert_eq!(
        failure_id(&missing_context.failure.expect("failure")),
        INVALID_REQUEST
    );

    // None of the refused commits wrote anything.
    let committed = commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;
    assert_eq!(committed[0].sequence_number, 0);
    runtime.stop().await;
}

#[tokio::test]
async fn aggregates_commit_with_expected_versions_and_conflicts_carry_dolittles_failure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;
    let tenant = TenantId::DEVELOPMENT;

    let first = client
        .commit_for_aggregate(aggregate_commit(
            tenant,
            "kitchen",
            0,
            &["{\"n\":0}", "{\"n\":1}"],
        ))
        .await
        .expect("call")
        .into_inner();
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let events = first.events.expect("events");
    assert_eq!(
        events.aggregate_root_version, 1,
        "version of the last event, 0-based"
    );
    assert_eq!(events.events.len(), 2);

    let conflict = client
        .commit_for_aggregate(aggregate_commit(tenant, "kitchen", 1, &["{}"]))
        .await
        .expect("call")
        .into_inner();
    let failure = conflict.failure.expect("conflict");
    assert_eq!(
        failure_id(&failure),
        failure_ids::AGGREGATE_ROOT_CONCURRENCY_CONFLICT
    );
    assert!(
        failure.reason.contains(
            "expected aggregate root version 1, but current aggregate root version was 2"
        ),
        "{}",
        failure.reason
    );

    let second = client
        .commit_for_aggregate(aggregate_commit(tenant, "kitchen", 2, &["{\"n\":2}"]))
        .await
        .expect("call")
        .into_inner();
    assert!(second.failure.is_none());
    assert_eq!(second.events.expect("events").aggregate_root_version, 2);

    let fetched = client
        .fetch_for_aggregate(fetch_request(tenant, "kitchen"))
        .await
        .expect("call")
        .into_inner();
    let fetched = fetched.events.expect("events");
    assert_eq!(fetched.aggregate_root_version, 2);
    let contents: Vec<&str> = fetched
        .events
        .iter()
        .map(|event| event.content.as_str())
        .collect();
    assert_eq!(contents, vec!["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);

    let empty = client
        .fetch_for_aggregate(fetch_request(tenant, "no such kitchen"))
        .await
        .expect("call")
        .into_inner();
    let empty = empty.events.expect("events");
    assert!(empty.events.is_empty());
    assert_eq!(empty.aggregate_root_version, 0);
    runtime.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT, SECOND_TENANT]).await;
    let mut client = runtime.event_store().await;
    let response = client
        .commit_for_aggregate(aggregate_commit(
            TenantId::DEVELOPMENT,
            "kitchen",
            0,
            &["{}"],
        ))
        .await
        .expect("call")
        .into_inner();
    assert!(response.failure.is_none());
    commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;

    let other = commit(
        &mut client,
        SECOND_TENANT,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;
    assert_eq!(
        other[0].sequence_number, 0,
        "the second tenant has its own log"
    );
    let fetched = client
        .fetch_for_aggregate(fetch_request(SECOND_TENANT, "kitchen"))
        .await
        .expect("call")
        .into_inner();
    assert!(fetched.events.expect("events").events.is_empty());
    runtime.stop().await;
}

#[tokio::test]
async fn every_acknowledged_commit_is_still_there_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;
    for n in 0..20 {
        let response = client
            .commit_for_aggregate(aggregate_commit(
                TenantId::DEVELOPMENT,
                "kitchen",
                n,
                &[&format!("{{\"n\":{n}}}")],
            ))
            .await
            .expect("call")
            .into_inner();
        assert!(response.failure.is_none());
    }
    runtime.stop().await;

    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;
    let fetched = client
        .fetch_for_aggregate(fetch_request(TenantId::DEVELOPMENT, "kitchen"))
        .await
        .expect("call")
        .into_inner();
    let fetched = fetched.events.expect("events");
    assert_eq!(fetched.events.len(), 20);
    assert_eq!(fetched.events[19].content, "{\"n\":19}");
    let next = commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;
    assert_eq!(next[0].sequence_number, 20);
    runtime.stop().await;
}

#[tokio::test]
async fn an_sdk_17_head_sees_a_stable_guid_for_a_string_event_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut client = runtime.event_store().await;
    let response = client
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![
                uncommitted("order 17", event_type(1), "{}"),
                uncommitted("order 17", event_type(1), "{}"),
            ],
        })
        .await
        .expect("call")
        .into_inner();
    let guids: Vec<_> = response
        .events
        .iter()
        .map(|event| event.event_source_id.clone().expect("guid"))
        .collect();
    assert_eq!(guids[0], guids[1]);
    assert_eq!(guids[0].value.len(), 16);
    assert_eq!(
        response.events[0].event_source_id_string.as_deref(),
        Some("order 17")
    );

    // An SDK 17 head sends only the Uuid; it reads back as the GUID's text.
    let guid = Uuid::from_u128(0x9b8a7c6d_5e4f_4a3b_8c2d_1e0f9a8b7c6d);
    let mut event = uncommitted("ignored", event_type(1), "{}");
    event.event_source_id = Some(guid.into());
    event.event_source_id_string = None;
    let committed = commit(&mut client, TenantId::DEVELOPMENT, vec![event]).await;
    assert_eq!(
        committed[0].event_source.as_str(),
        "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    );
    runtime.stop().await;
}

#[tokio::test]
async fn an_oversized_request_gets_a_clear_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let overrides = dolittle_runtime::config::Overrides {
        max_request_bytes: Some(4096),
        ..Default::default()
    };
    let runtime =
        TestRuntime::start_with(dir.path(), &[TenantId::DEVELOPMENT], None, overrides).await;
    let mut client = runtime.event_store().await;
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(10_000));
    let status = client
        .commit(CommitEventsRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            events: vec![uncommitted("a", event_type(1), &big)],
        })
        .await
        .expect_err("refused");
    assert!(status.message().contains("too large"), "{status:?}");
    let committed = commit(
        &mut client,
        TenantId::DEVELOPMENT,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;
    assert_eq!(committed[0].sequence_number, 0);
    runtime.stop().await;
}
