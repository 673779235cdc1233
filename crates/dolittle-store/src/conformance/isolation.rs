//! Tenants and scopes do not share anything, and everything survives closing and reopening.

use dolittle_types::{
    AggregateRootInstance, CommittedAggregateEvents, CommittedEvent, ScopeId, StreamId,
};

use super::*;
use crate::{
    ProcessorKey, ProcessorKind, ProjectionDefinition, StoreError, StreamDefinition, StreamEvent,
    StreamProcessorState, SubscriptionKey, SubscriptionState,
};

/// Everything a store holds that the suite wrote, read back through the trait.
#[derive(Debug, PartialEq)]
pub struct StoreSnapshot {
    pub default_log: Vec<CommittedEvent>,
    pub scoped_log: Vec<CommittedEvent>,
    pub aggregates: Vec<AggregateRootInstance>,
    pub aggregate: CommittedAggregateEvents,
    pub stream_definitions: Vec<(ScopeId, StreamDefinition)>,
    pub default_stream: Vec<StreamEvent>,
    pub scoped_stream: Vec<StreamEvent>,
    pub processor_states: Vec<(ProcessorKey, StreamProcessorState)>,
    pub projection_definitions: Vec<ProjectionDefinition>,
    pub read_models: Vec<(String, String)>,
    pub subscription_states: Vec<(SubscriptionKey, SubscriptionState)>,
}

const SCOPED: u128 = 1;
const STREAM: u128 = 1;

/// Writes something of every kind into a store, in the default scope and in scope 1.
pub async fn populate(store: &SharedEventStore) {
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 5), &context)
        .await
        .expect("committing");
    store
        .commit_aggregate(
            aggregate_events(aggregate_root(1), "kitchen", 0, 0, 3),
            &context,
        )
        .await
        .expect("committing an aggregate");
    store
        .commit_aggregate(
            aggregate_events(aggregate_root(2), "bar", 0, 0, 1),
            &context,
        )
        .await
        .expect("committing an aggregate");
    let key = subscription(scope(SCOPED), "partition");
    store
        .commit_external(&key, vec![external(3), external(4)], &subscription_state(5))
        .await
        .expect("committing external events");
    let definition = StreamDefinition {
        stream: stream(STREAM),
        partitioned: true,
        public: true,
        filter: crate::FilterDefinition::Remote,
    };
    store
        .put_stream_definition(ScopeId::DEFAULT, &definition)
        .await
        .expect("putting");
    store
        .put_stream_definition(scope(SCOPED), &definition)
        .await
        .expect("putting");
    let filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    store
        .append_to_stream(
            ScopeId::DEFAULT,
            stream(STREAM),
            vec![entry("a", 1), entry("b", 6), entry("a", 8)],
            &filter,
            &filter_state(9),
        )
        .await
        .expect("appending");
    let scoped_filter = processor(ProcessorKind::Filter, scope(SCOPED), 1);
    store
        .append_to_stream(
            scope(SCOPED),
            stream(STREAM),
            vec![entry("x", 1)],
            &scoped_filter,
            &filter_state(2),
        )
        .await
        .expect("appending");
    store
        .save_processor_state(
            &processor(ProcessorKind::EventHandler, ScopeId::DEFAULT, 2),
            &partitioned_state(7),
        )
        .await
        .expect("saving");
    let projection_definition = projection_definition(ScopeId::DEFAULT, 1);
    store
        .put_projection_definition(&projection_definition)
        .await
        .expect("putting");
    store
        .apply_read_model_changes(
            ScopeId::DEFAULT,
            projection_definition.projection,
            vec![set("k1", "{\"a\": 1}"), set("k2", "[]")],
            &projection_key(ScopeId::DEFAULT, projection_definition.projection),
            &filter_state(4),
        )
        .await
        .expect("applying");
    store
        .save_subscription_state(&subscription(scope(2), "other"), &subscription_state(1))
        .await
        .expect("saving");
}

/// Reads back everything [`populate`] wrote, in a stable order.
pub async fn snapshot(store: &SharedEventStore) -> StoreSnapshot {
    let mut aggregates = store.list_aggregates(None).await.expect("listing");
    aggregates.sort_by(|a, b| {
        (a.aggregate_root, &a.event_source).cmp(&(b.aggregate_root, &b.event_source))
    });
    let mut stream_definitions = store.list_stream_definitions().await.expect("listing");
    stream_definitions.sort_by_key(|(scope_id, definition)| (*scope_id, definition.stream));
    let mut processor_states = store.list_processor_states().await.expect("listing");
    processor_states.sort_by_key(|(key, _)| *key);
    let mut projection_definitions = store.list_projection_definitions().await.expect("listing");
    projection_definitions.sort_by_key(|definition| (definition.scope, definition.projection));
    let mut subscription_states = store.list_subscription_states().await.expect("listing");
    subscription_states.sort_by(|a, b| a.0.cmp(&b.0));
    let read_stream = |scope_id: ScopeId, stream_id: StreamId| {
        let store = store.clone();
        async move {
            store
                .read_stream(scope_id, stream_id, 0, None, 1000)
                .await
                .expect("reading")
        }
    };
    StoreSnapshot {
        default_log: read_whole_log(store, ScopeId::DEFAULT).await,
        scoped_log: read_whole_log(store, scope(SCOPED)).await,
        aggregates,
        aggregate: store
            .fetch_aggregate(aggregate_root(1), &"kitchen".into())
            .await
            .expect("fetching"),
        stream_definitions,
        default_stream: read_stream(ScopeId::DEFAULT, stream(STREAM)).await,
        scoped_stream: read_stream(scope(SCOPED), stream(STREAM)).await,
        processor_states,
        projection_definitions,
        read_models: store
            .get_read_models(ScopeId::DEFAULT, projection(1))
            .await
            .expect("getting"),
        subscription_states,
    }
}

pub async fn tenants_do_not_share_anything<H: StoreHarness>(harness: &H) {
    let first = harness.open("tenant-a").await;
    let second = harness.open("tenant-b").await;
    populate(&first).await;
    let empty = snapshot(&second).await;
    assert!(empty.default_log.is_empty());
    assert!(empty.scoped_log.is_empty());
    assert!(empty.aggregates.is_empty());
    assert_eq!(empty.aggregate.version, 0);
    assert!(empty.stream_definitions.is_empty());
    assert!(empty.default_stream.is_empty());
    assert!(empty.scoped_stream.is_empty());
    assert!(empty.processor_states.is_empty());
    assert!(empty.projection_definitions.is_empty());
    assert!(empty.read_models.is_empty());
    assert!(empty.subscription_states.is_empty());
    assert_eq!(*second.watch_log(ScopeId::DEFAULT).borrow(), 0);
    assert_eq!(
        *second
            .watch_stream(ScopeId::DEFAULT, stream(STREAM))
            .borrow(),
        0
    );
    let committed = second
        .commit(numbered_events("source", 0, 2), &execution_context())
        .await
        .expect("committing");
    assert_eq!(
        committed[0].sequence_number, 0,
        "every tenant's log starts at 0"
    );
    let populated = snapshot(&first).await;
    assert_eq!(populated.default_log.len(), 9);
    let mut again = harness.open("tenant-a").await;
    assert_eq!(
        snapshot(&again).await,
        populated,
        "opening a name again opens the same store"
    );
    again = harness.open("tenant-b").await;
    assert_eq!(read_whole_log(&again, ScopeId::DEFAULT).await, committed);
}

pub async fn scopes_do_not_share_logs_or_streams<H: StoreHarness>(harness: &H) {
    let store = harness.open("scopes").await;
    populate(&store).await;
    let state = snapshot(&store).await;
    assert_eq!(state.default_log.len(), 9);
    assert_eq!(state.scoped_log.len(), 2);
    assert!(read_whole_log(&store, scope(2)).await.is_empty());
    assert!(
        state
            .scoped_log
            .iter()
            .all(|event| event.event_horizon.is_some())
    );
    assert!(
        state
            .default_log
            .iter()
            .all(|event| event.event_horizon.is_none())
    );
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 9);
    assert_eq!(*store.watch_log(scope(SCOPED)).borrow(), 2);
    assert_eq!(state.default_stream.len(), 3);
    assert_eq!(state.scoped_stream.len(), 1);
    assert_eq!(
        state.scoped_stream[0].event, state.scoped_log[1],
        "a scoped stream references its scope's log"
    );
    assert_eq!(state.default_stream[0].event, state.default_log[1]);
    assert_eq!(
        *store
            .watch_stream(ScopeId::DEFAULT, stream(STREAM))
            .borrow(),
        3
    );
    assert_eq!(
        *store.watch_stream(scope(SCOPED), stream(STREAM)).borrow(),
        1
    );
    let committed = store
        .commit_external(
            &subscription(scope(2), "p"),
            vec![external(1)],
            &subscription_state(2),
        )
        .await
        .expect("committing into a third scope");
    assert_eq!(
        committed[0].sequence_number, 0,
        "every scope's log starts at 0"
    );
    let scoped_append = store
        .append_to_stream(
            scope(SCOPED),
            stream(STREAM),
            vec![entry("x", 2)],
            &processor(ProcessorKind::Filter, scope(SCOPED), 1),
            &filter_state(3),
        )
        .await;
    assert!(
        matches!(scoped_append, Err(StoreError::InvalidArgument(_))),
        "a scoped stream cannot reference an event that only the default log has: {scoped_append:?}"
    );
}

pub async fn everything_is_still_there_after_closing_and_reopening<H: StoreHarness>(harness: &H) {
    let store = harness.open("reopen").await;
    populate(&store).await;
    let before = snapshot(&store).await;
    let store = harness.close_and_reopen("reopen", store).await;
    let after = snapshot(&store).await;
    assert_eq!(after, before);
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 9);
    assert_eq!(*store.watch_log(scope(SCOPED)).borrow(), 2);
    assert_eq!(
        *store
            .watch_stream(ScopeId::DEFAULT, stream(STREAM))
            .borrow(),
        3
    );
    assert_eq!(
        *store.watch_stream(scope(SCOPED), stream(STREAM)).borrow(),
        1
    );
    let context = execution_context();
    let next = store
        .commit(numbered_events("source", 5, 1), &context)
        .await
        .expect("committing after reopening");
    assert_eq!(
        next[0].sequence_number, 9,
        "numbering goes on without a gap"
    );
    let stale = store
        .commit_aggregate(
            aggregate_events(aggregate_root(1), "kitchen", 0, 0, 1),
            &context,
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::AggregateConcurrencyConflict { current: 3, .. })
        ),
        "aggregate versions survive: {stale:?}"
    );
    let aggregate = store
        .commit_aggregate(
            aggregate_events(aggregate_root(1), "kitchen", 3, 3, 1),
            &context,
        )
        .await
        .expect("committing an aggregate after reopening");
    assert_eq!(aggregate.version, 4);
    let external_events = store
        .commit_external(
            &subscription(scope(SCOPED), "partition"),
            vec![external(5)],
            &subscription_state(6),
        )
        .await
        .expect("committing external events after reopening");
    assert_eq!(external_events[0].sequence_number, 2);
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            stream(STREAM),
            vec![entry("b", 9)],
            &processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1),
            &filter_state(10),
        )
        .await
        .expect("appending after reopening");
    assert_eq!(length, 4);
    let store = harness.close_and_reopen("reopen", store).await;
    let reopened_again = snapshot(&store).await;
    assert_eq!(reopened_again.default_log.len(), 11);
    assert_eq!(reopened_again.scoped_log.len(), 3);
    assert_eq!(reopened_again.default_stream.len(), 4);
    assert_eq!(reopened_again.aggregate.version, 4);
}
