//! The one conformance suite every backend runs: the semantics of [`EventStore`], stated once.
//!
//! A backend implements [`StoreHarness`] (how to open a fresh store, and how to close one and
//! open it again) and instantiates the suite in its `tests/conformance.rs`:
//!
//! ```ignore
//! dolittle_store::conformance_suite!(MyHarness::new().await);
//! ```
//!
//! The macro expands to one `#[tokio::test]` per semantic; each test builds its own harness from
//! the expression, so the expression may `.await`. The calling crate needs `tokio` as a
//! dependency. Every test awaits wake-ups with a generous timeout instead of polling, and no test
//! asserts on wall-clock time.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use dolittle_types::{
    Claim, CommittedEvent, CorrelationId, EventLogSequenceNumber, EventSourceId, EventType,
    EventTypeId, ExecutionContext, MicroserviceId, ScopeId, TenantId, UncommittedEvent, Uuid,
    Version,
};

use crate::{LogFilter, SharedEventStore};

mod aggregates;
mod event_horizon;
mod event_log;
mod isolation;
mod projections;
mod states;
mod streams;

pub use aggregates::*;
pub use event_horizon::*;
pub use event_log::*;
pub use isolation::*;
pub use projections::*;
pub use states::*;
pub use streams::*;

/// How the suite gets stores of a backend.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// Opens the store called `name`: a fresh empty one the first time this harness is asked for
    /// the name, the existing one after that. Different names are different tenants' stores.
    async fn open(&self, name: &str) -> SharedEventStore;

    /// Closes a store (the suite passes the last handle it holds, and the backend must release
    /// everything it holds of it) and opens the same store again.
    async fn close_and_reopen(&self, name: &str, store: SharedEventStore) -> SharedEventStore;
}

/// Expands to one `#[tokio::test]` per semantic of the suite, each running against a harness
/// built by the given expression (which may `.await`).
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@tests $harness;
            an_empty_log_has_length_zero_and_reads_nothing,
            commits_get_gapless_sequence_numbers_from_zero,
            concurrent_commits_are_gapless_and_each_batch_is_contiguous,
            a_batch_with_bad_content_is_refused_naming_the_index_and_writes_nothing,
            an_empty_batch_is_refused_and_writes_nothing,
            content_is_returned_byte_for_byte,
            every_field_of_a_committed_event_round_trips,
            fields_that_change_back_and_forth_between_events_round_trip,
            read_log_pages_from_a_position_with_a_limit,
            read_log_keeps_only_the_given_event_types_across_pages,
            read_log_keeps_only_public_events_when_asked,
            read_log_keeps_only_events_of_one_event_source,
            watch_log_wakes_up_when_events_are_committed,
            aggregate_commits_get_versions_and_aggregate_metadata,
            a_stale_aggregate_commit_is_refused_with_the_current_version,
            concurrent_aggregate_commits_with_one_expected_version_let_exactly_one_win,
            fetch_aggregate_returns_only_its_events_in_version_order,
            list_aggregates_lists_every_instance_with_its_version,
            stream_definitions_are_stored_replaced_and_listed,
            append_to_stream_assigns_positions_and_saves_the_filter_state,
            read_stream_reads_all_partitions_or_one_from_a_position,
            an_append_referencing_a_missing_event_writes_neither_entries_nor_state,
            watch_stream_wakes_up_when_entries_are_appended,
            processor_states_are_saved_replaced_and_listed,
            projection_definitions_are_stored_replaced_and_listed,
            read_model_changes_and_the_projection_state_are_applied_together,
            promoting_a_rebuilt_projection_replaces_the_live_read_models,
            dropping_a_projection_deletes_its_read_models_definition_and_state,
            external_events_are_written_into_the_scoped_log_with_event_horizon_metadata,
            subscription_states_are_saved_replaced_and_listed,
            tenants_do_not_share_anything,
            scopes_do_not_share_logs_or_streams,
            everything_is_still_there_after_closing_and_reopening,
        );
    };
    (@tests $harness:expr; $($test:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let harness = $harness;
                $crate::conformance::$test(&harness).await;
            }
        )*
    };
}

/// How long a test waits for a wake-up before it fails. Generous: a wake-up that comes at all
/// comes in milliseconds.
pub const WAKE_UP_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits a future, failing the test when it takes longer than [`WAKE_UP_TIMEOUT`].
pub async fn within_timeout<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAKE_UP_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A deterministic identifier for tests.
pub fn test_uuid(number: u128) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | number)
}

pub fn event_type(number: u128, generation: u32) -> EventType {
    EventType::new(EventTypeId(test_uuid(number)), generation)
}

pub fn scope(number: u128) -> ScopeId {
    ScopeId(test_uuid(0x5c0_0000 | number))
}

/// An execution context with every field set, claims included.
pub fn execution_context() -> ExecutionContext {
    ExecutionContext {
        microservice: MicroserviceId(test_uuid(0xa1)),
        tenant: TenantId::DEVELOPMENT,
        version: Version {
            major: 3,
            minor: 14,
            patch: 15,
            build: 926,
            pre_release: "rc.1+ünïcode".to_owned(),
        },
        correlation: CorrelationId(Uuid::new_v4()),
        claims: vec![
            Claim {
                key: "sub".to_owned(),
                value: "alice".to_owned(),
                value_type: "string".to_owned(),
            },
            Claim {
                key: "roles".to_owned(),
                value: "[\"admin\", \"cook\"]".to_owned(),
                value_type: "json".to_owned(),
            },
        ],
        environment: "Development".to_owned(),
    }
}

/// An uncommitted event with JSON content.
pub fn event(source: &str, event_type: EventType, public: bool, content: &str) -> UncommittedEvent {
    UncommittedEvent {
        event_source: EventSourceId::from(source),
        event_type,
        public,
        content: content.to_owned(),
    }
}

/// `count` private events of one type, numbered in their content from `first`.
pub fn numbered_events(source: &str, first: usize, count: usize) -> Vec<UncommittedEvent> {
    (first..first + count)
        .map(|number| {
            event(
                source,
                event_type(1, 1),
                false,
                &format!("{{\"n\":{number}}}"),
            )
        })
        .collect()
}

/// Every event of a scope's log, read in pages, checking the paging contract on the way.
pub async fn read_whole_log(store: &SharedEventStore, scope: ScopeId) -> Vec<CommittedEvent> {
    read_filtered_log(store, scope, &LogFilter::default(), 7).await
}

/// Every event of a scope's log that a filter keeps, read in pages of `limit`.
pub async fn read_filtered_log(
    store: &SharedEventStore,
    scope: ScopeId,
    filter: &LogFilter,
    limit: usize,
) -> Vec<CommittedEvent> {
    let length = *store.watch_log(scope).borrow();
    let mut events = Vec::new();
    let mut from: EventLogSequenceNumber = 0;
    loop {
        let page = store
            .read_log(scope, from, limit, filter)
            .await
            .expect("reading the log");
        assert!(
            page.events.len() <= limit,
            "a page holds at most `limit` events"
        );
        for event in &page.events {
            assert!(event.sequence_number >= from, "a page starts at `from`");
            assert!(
                event.sequence_number < page.next,
                "`next` is after every event read"
            );
        }
        if page.events.is_empty() && page.next == from {
            assert!(
                from >= length,
                "a read that makes no progress is at the end of the log"
            );
            break;
        }
        assert!(
            page.next > from,
            "a page that is not at the end moves forward"
        );
        events.extend(page.events);
        from = page.next;
    }
    for pair in events.windows(2) {
        assert!(
            pair[0].sequence_number < pair[1].sequence_number,
            "events come in order"
        );
    }
    events
}
