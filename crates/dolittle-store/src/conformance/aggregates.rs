//! Aggregates: versions, conflicts, fetches and listings.

use dolittle_types::{
    AggregateMetadata, AggregateRootId, AggregateRootInstance, CommittedAggregateEvents, ScopeId,
    UncommittedAggregateEvent, UncommittedAggregateEvents,
};

use super::*;
use crate::StoreError;

pub fn aggregate_root(number: u128) -> AggregateRootId {
    AggregateRootId(test_uuid(0xa66_0000 | number))
}

/// An aggregate commit of `count` events numbered in their content from `first`.
pub fn aggregate_events(
    root: AggregateRootId,
    source: &str,
    expected_version: u64,
    first: usize,
    count: usize,
) -> UncommittedAggregateEvents {
    UncommittedAggregateEvents {
        aggregate_root: root,
        event_source: source.into(),
        expected_version,
        events: (first..first + count)
            .map(|number| UncommittedAggregateEvent {
                event_type: event_type(10 + (number % 2) as u128, 1),
                public: number % 2 == 0,
                content: format!("{{\"{source}\":{number}}}"),
            })
            .collect(),
    }
}

pub async fn aggregate_commits_get_versions_and_aggregate_metadata<H: StoreHarness>(harness: &H) {
    let store = harness.open("aggregate-versions").await;
    let context = execution_context();
    let root = aggregate_root(1);
    store
        .commit(numbered_events("plain", 0, 2), &context)
        .await
        .expect("committing");
    let first = store
        .commit_aggregate(aggregate_events(root, "kitchen", 0, 0, 2), &context)
        .await
        .expect("committing an aggregate");
    assert_eq!(first.aggregate_root, root);
    assert_eq!(first.event_source, "kitchen".into());
    assert_eq!(first.version, 2);
    store
        .commit(numbered_events("plain", 2, 1), &context)
        .await
        .expect("committing");
    let second = store
        .commit_aggregate(aggregate_events(root, "kitchen", 2, 2, 3), &context)
        .await
        .expect("committing an aggregate");
    assert_eq!(second.version, 5);
    let numbers: Vec<_> = first
        .events
        .iter()
        .chain(&second.events)
        .map(|event| event.sequence_number)
        .collect();
    assert_eq!(
        numbers,
        vec![2, 3, 5, 6, 7],
        "aggregate events share the log's numbering"
    );
    for (version, event) in first.events.iter().chain(&second.events).enumerate() {
        assert_eq!(
            event.aggregate,
            Some(AggregateMetadata {
                aggregate_root: root,
                version: version as u64,
            })
        );
        assert_eq!(event.event_source, "kitchen".into());
        assert_eq!(event.execution_context, context);
        assert_eq!(event.event_horizon, None);
        assert_eq!(event.content, format!("{{\"kitchen\":{version}}}"));
    }
    let log = read_whole_log(&store, ScopeId::DEFAULT).await;
    assert_eq!(log.len(), 8);
    for event in first.events.iter().chain(&second.events) {
        assert_eq!(&log[event.sequence_number as usize], event);
    }
    assert_eq!(log[4].aggregate, None);
}

pub async fn a_stale_aggregate_commit_is_refused_with_the_current_version<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("aggregate-conflict").await;
    let context = execution_context();
    let root = aggregate_root(1);
    store
        .commit_aggregate(aggregate_events(root, "kitchen", 0, 0, 2), &context)
        .await
        .expect("committing an aggregate");
    for expected in [0, 1, 3, 100] {
        let result = store
            .commit_aggregate(aggregate_events(root, "kitchen", expected, 2, 1), &context)
            .await;
        assert_eq!(
            result,
            Err(StoreError::AggregateConcurrencyConflict {
                aggregate_root: root,
                event_source: "kitchen".into(),
                expected,
                current: 2,
            })
        );
    }
    let result = store
        .commit_aggregate(aggregate_events(root, "new-kitchen", 1, 0, 1), &context)
        .await;
    assert_eq!(
        result,
        Err(StoreError::AggregateConcurrencyConflict {
            aggregate_root: root,
            event_source: "new-kitchen".into(),
            expected: 1,
            current: 0,
        }),
        "an instance without events is at version 0"
    );
    assert_eq!(
        read_whole_log(&store, ScopeId::DEFAULT).await.len(),
        2,
        "nothing written"
    );
    assert_eq!(
        store.list_aggregates(None).await.expect("listing"),
        vec![AggregateRootInstance {
            aggregate_root: root,
            event_source: "kitchen".into(),
            version: 2,
        }]
    );
    let next = store
        .commit_aggregate(aggregate_events(root, "kitchen", 2, 2, 1), &context)
        .await
        .expect("committing with the current version");
    assert_eq!(next.version, 3);
    assert_eq!(
        next.events[0].sequence_number, 2,
        "refused commits use no sequence numbers"
    );
}

pub async fn concurrent_aggregate_commits_with_one_expected_version_let_exactly_one_win<
    H: StoreHarness,
>(
    harness: &H,
) {
    let store = harness.open("aggregate-race").await;
    let root = aggregate_root(1);
    let mut tasks = Vec::new();
    for contender in 0..12usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let context = execution_context();
            // Plain commits in between, so that a backend that groups commits mixes outcomes.
            let plain = store.commit(numbered_events("plain", contender, 1), &context);
            let aggregate = store.commit_aggregate(
                aggregate_events(root, "kitchen", 0, 0, 1 + contender % 3),
                &context,
            );
            let (plain, aggregate) = tokio::join!(plain, aggregate);
            plain.expect("a plain commit succeeds beside a conflicting one");
            aggregate
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        match task.await.expect("a contender task") {
            Ok(committed) => winners.push(committed),
            Err(error) => losers.push(error),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one commit with the expected version wins"
    );
    let winner: &CommittedAggregateEvents = &winners[0];
    for error in losers {
        assert_eq!(
            error,
            StoreError::AggregateConcurrencyConflict {
                aggregate_root: root,
                event_source: "kitchen".into(),
                expected: 0,
                current: winner.version,
            }
        );
    }
    let log = read_whole_log(&store, ScopeId::DEFAULT).await;
    assert_eq!(log.len(), 12 + winner.events.len());
    for (number, event) in log.iter().enumerate() {
        assert_eq!(event.sequence_number, number as u64);
    }
    let fetched = store
        .fetch_aggregate(root, &"kitchen".into())
        .await
        .expect("fetching");
    assert_eq!(&fetched, winner);
}

pub async fn fetch_aggregate_returns_only_its_events_in_version_order<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("aggregate-fetch").await;
    let context = execution_context();
    let (kitchen, bar) = (aggregate_root(1), aggregate_root(2));
    let instances = [(kitchen, "one"), (kitchen, "two"), (bar, "one")];
    let mut versions = [0u64; 3];
    let mut committed: [Vec<_>; 3] = Default::default();
    for round in 0..4 {
        for (index, (root, source)) in instances.iter().enumerate() {
            let count = 1 + (round + index) % 3;
            let result = store
                .commit_aggregate(
                    aggregate_events(
                        *root,
                        source,
                        versions[index],
                        versions[index] as usize,
                        count,
                    ),
                    &context,
                )
                .await
                .expect("committing an aggregate");
            versions[index] = result.version;
            committed[index].extend(result.events);
            store
                .commit(numbered_events(source, round, 1), &context)
                .await
                .expect("committing an event of no aggregate with the same event source");
        }
    }
    for (index, (root, source)) in instances.iter().enumerate() {
        let fetched = store
            .fetch_aggregate(*root, &(*source).into())
            .await
            .expect("fetching");
        assert_eq!(fetched.aggregate_root, *root);
        assert_eq!(fetched.event_source, (*source).into());
        assert_eq!(fetched.version, versions[index]);
        assert_eq!(fetched.events, committed[index]);
        for (version, event) in fetched.events.iter().enumerate() {
            assert_eq!(
                event.aggregate.map(|metadata| metadata.version),
                Some(version as u64)
            );
        }
    }
    let unknown = store
        .fetch_aggregate(bar, &"two".into())
        .await
        .expect("fetching an instance without events");
    assert_eq!(
        unknown,
        CommittedAggregateEvents {
            aggregate_root: bar,
            event_source: "two".into(),
            version: 0,
            events: Vec::new(),
        }
    );
}

pub async fn list_aggregates_lists_every_instance_with_its_version<H: StoreHarness>(harness: &H) {
    let store = harness.open("aggregate-list").await;
    let context = execution_context();
    let (kitchen, bar) = (aggregate_root(1), aggregate_root(2));
    assert!(
        store
            .list_aggregates(None)
            .await
            .expect("listing")
            .is_empty()
    );
    for (root, source, count) in [(kitchen, "one", 3), (kitchen, "two", 1), (bar, "one", 2)] {
        store
            .commit_aggregate(aggregate_events(root, source, 0, 0, count), &context)
            .await
            .expect("committing an aggregate");
    }
    store
        .commit_aggregate(aggregate_events(kitchen, "two", 1, 1, 4), &context)
        .await
        .expect("committing an aggregate");
    let instance = |root, source: &str, version| AggregateRootInstance {
        aggregate_root: root,
        event_source: source.into(),
        version,
    };
    let sorted = |mut instances: Vec<AggregateRootInstance>| {
        instances.sort_by(|a, b| {
            (a.aggregate_root, &a.event_source).cmp(&(b.aggregate_root, &b.event_source))
        });
        instances
    };
    assert_eq!(
        sorted(store.list_aggregates(None).await.expect("listing")),
        sorted(vec![
            instance(kitchen, "one", 3),
            instance(kitchen, "two", 5),
            instance(bar, "one", 2),
        ])
    );
    assert_eq!(
        sorted(store.list_aggregates(Some(kitchen)).await.expect("listing")),
        sorted(vec![
            instance(kitchen, "one", 3),
            instance(kitchen, "two", 5)
        ])
    );
    assert!(
        store
            .list_aggregates(Some(aggregate_root(3)))
            .await
            .expect("listing")
            .is_empty()
    );
}
