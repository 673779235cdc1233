//! The event log: order, gapless sequence numbers, batch atomicity, content and metadata round
//! trips, filtered reads and wake-ups.

use std::collections::BTreeSet;

use dolittle_types::{ScopeId, Timestamp, UncommittedAggregateEvent, UncommittedAggregateEvents};

use super::*;
use crate::StoreError;

pub async fn an_empty_log_has_length_zero_and_reads_nothing<H: StoreHarness>(harness: &H) {
    let store = harness.open("empty").await;
    assert!(
        !store.describe().backend.is_empty(),
        "a store names its backend"
    );
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 0);
    let page = store
        .read_log(ScopeId::DEFAULT, 0, 10, &LogFilter::default())
        .await
        .expect("reading an empty log");
    assert!(page.events.is_empty());
    assert_eq!(page.next, 0);
    assert!(read_whole_log(&store, scope(1)).await.is_empty());
}

pub async fn commits_get_gapless_sequence_numbers_from_zero<H: StoreHarness>(harness: &H) {
    let store = harness.open("gapless").await;
    let context = execution_context();
    let mut committed = Vec::new();
    for (first, count) in [(0, 3), (3, 2), (5, 1), (6, 4)] {
        let events = store
            .commit(numbered_events("source", first, count), &context)
            .await
            .expect("committing");
        let numbers: Vec<_> = events.iter().map(|event| event.sequence_number).collect();
        let expected: Vec<_> = (first as u64..(first + count) as u64).collect();
        assert_eq!(
            numbers, expected,
            "a batch gets the next sequence numbers in order"
        );
        committed.extend(events);
    }
    let read = read_whole_log(&store, ScopeId::DEFAULT).await;
    assert_eq!(
        read, committed,
        "the log holds exactly what was committed, in order"
    );
    for (number, event) in read.iter().enumerate() {
        assert_eq!(event.content, format!("{{\"n\":{number}}}"));
    }
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 10);
}

pub async fn concurrent_commits_are_gapless_and_each_batch_is_contiguous<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("concurrent").await;
    let committers = 16;
    let commits_per_committer = 12;
    let mut tasks = Vec::new();
    for committer in 0..committers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let context = execution_context();
            let mut batches = Vec::new();
            for commit in 0..commits_per_committer {
                let size = 1 + (committer + commit) % 3;
                let events: Vec<_> = (0..size)
                    .map(|index| {
                        event(
                            &format!("committer-{committer}"),
                            event_type(1, 1),
                            false,
                            &format!("{{\"c\":{committer},\"k\":{commit},\"i\":{index}}}"),
                        )
                    })
                    .collect();
                batches.push(store.commit(events, &context).await.expect("committing"));
            }
            batches
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        batches.extend(task.await.expect("a committer task"));
    }
    let read = read_whole_log(&store, ScopeId::DEFAULT).await;
    let total: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(read.len(), total);
    for (number, event) in read.iter().enumerate() {
        assert_eq!(event.sequence_number, number as u64, "no gaps");
    }
    for batch in &batches {
        for pair in batch.windows(2) {
            assert_eq!(
                pair[0].sequence_number + 1,
                pair[1].sequence_number,
                "a batch is contiguous"
            );
        }
        for event in batch {
            assert_eq!(&read[event.sequence_number as usize], event);
        }
    }
}

pub async fn a_batch_with_bad_content_is_refused_naming_the_index_and_writes_nothing<
    H: StoreHarness,
>(
    harness: &H,
) {
    let store = harness.open("bad-content").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 1), &context)
        .await
        .expect("committing");
    let mut batch = numbered_events("source", 1, 4);
    batch[2].content = "{\"unterminated\": ".to_owned();
    let result = store.commit(batch, &context).await;
    assert!(
        matches!(result, Err(StoreError::InvalidContent { index: 2, .. })),
        "got {result:?}"
    );
    let mut not_json = numbered_events("source", 1, 2);
    not_json[0].content = "hello".to_owned();
    let result = store.commit(not_json, &context).await;
    assert!(
        matches!(result, Err(StoreError::InvalidContent { index: 0, .. })),
        "got {result:?}"
    );
    let aggregate = UncommittedAggregateEvents {
        aggregate_root: dolittle_types::AggregateRootId(test_uuid(0xa66)),
        event_source: "kitchen".into(),
        expected_version: 0,
        events: vec![
            UncommittedAggregateEvent {
                event_type: event_type(1, 1),
                public: false,
                content: "{}".to_owned(),
            },
            UncommittedAggregateEvent {
                event_type: event_type(1, 1),
                public: false,
                content: "{]".to_owned(),
            },
        ],
    };
    let result = store.commit_aggregate(aggregate, &context).await;
    assert!(
        matches!(result, Err(StoreError::InvalidContent { index: 1, .. })),
        "got {result:?}"
    );
    assert_eq!(read_whole_log(&store, ScopeId::DEFAULT).await.len(), 1);
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 1);
    assert!(
        store
            .list_aggregates(None)
            .await
            .expect("listing")
            .is_empty()
    );
    let next = store
        .commit(numbered_events("source", 1, 1), &context)
        .await
        .expect("committing after a refused batch");
    assert_eq!(
        next[0].sequence_number, 1,
        "a refused batch uses no sequence numbers"
    );
}

pub async fn an_empty_batch_is_refused_and_writes_nothing<H: StoreHarness>(harness: &H) {
    let store = harness.open("empty-batch").await;
    let context = execution_context();
    assert_eq!(
        store.commit(Vec::new(), &context).await,
        Err(StoreError::EmptyBatch)
    );
    let aggregate = UncommittedAggregateEvents {
        aggregate_root: dolittle_types::AggregateRootId(test_uuid(0xa66)),
        event_source: "kitchen".into(),
        expected_version: 0,
        events: Vec::new(),
    };
    assert_eq!(
        store.commit_aggregate(aggregate, &context).await,
        Err(StoreError::EmptyBatch)
    );
    assert!(read_whole_log(&store, ScopeId::DEFAULT).await.is_empty());
    assert!(
        store
            .list_aggregates(None)
            .await
            .expect("listing")
            .is_empty()
    );
    let first = store
        .commit(numbered_events("source", 0, 1), &context)
        .await
        .expect("committing");
    assert_eq!(first[0].sequence_number, 0);
}

/// JSON texts that a store must not normalise.
pub const AWKWARD_CONTENTS: &[&str] = &[
    "{\"b\":1,\"a\":2}",
    "{ \"a\" :\t1 ,\n  \"b\" : [ 1 , 2 ]\r\n}",
    "{\"text\":\"æøå 🦀 日本語\",\"escaped\":\"\\u00e6\\n\\\"\"}",
    "  [1.0, 1e10, -0, 12345678901234567890123]  ",
    "\"just a string\"",
    "null",
    "{\"nested\":{\"deep\":{\"deeper\":[{},[],{\"x\":null}]}}}",
    "{\"a\":1,\"a\":2}",
];

pub async fn content_is_returned_byte_for_byte<H: StoreHarness>(harness: &H) {
    let store = harness.open("content").await;
    let context = execution_context();
    let batch: Vec<_> = AWKWARD_CONTENTS
        .iter()
        .map(|content| event("source", event_type(1, 1), true, content))
        .collect();
    let committed = store.commit(batch, &context).await.expect("committing");
    let read = read_whole_log(&store, ScopeId::DEFAULT).await;
    for ((content, committed), read) in AWKWARD_CONTENTS.iter().zip(&committed).zip(&read) {
        assert_eq!(committed.content, *content);
        assert_eq!(read.content, *content);
    }
    let aggregate = UncommittedAggregateEvents {
        aggregate_root: dolittle_types::AggregateRootId(test_uuid(0xa66)),
        event_source: "kitchen".into(),
        expected_version: 0,
        events: AWKWARD_CONTENTS
            .iter()
            .map(|content| UncommittedAggregateEvent {
                event_type: event_type(2, 1),
                public: false,
                content: (*content).to_owned(),
            })
            .collect(),
    };
    store
        .commit_aggregate(aggregate, &context)
        .await
        .expect("committing an aggregate");
    let fetched = store
        .fetch_aggregate(
            dolittle_types::AggregateRootId(test_uuid(0xa66)),
            &"kitchen".into(),
        )
        .await
        .expect("fetching");
    let contents: Vec<_> = fetched
        .events
        .iter()
        .map(|event| event.content.as_str())
        .collect();
    assert_eq!(contents, AWKWARD_CONTENTS);
}

pub async fn every_field_of_a_committed_event_round_trips<H: StoreHarness>(harness: &H) {
    let store = harness.open("fields").await;
    let first_context = execution_context();
    let mut second_context = execution_context();
    second_context.claims.clear();
    second_context.environment = "Production".to_owned();
    second_context.version.pre_release = String::new();
    second_context.tenant = dolittle_types::TenantId(test_uuid(0x7e));
    let before = Timestamp::now();
    let first = store
        .commit(
            vec![
                event("källa 🦀", event_type(1, 7), true, "{\"a\":1}"),
                event("", event_type(2, 0), false, "{}"),
            ],
            &first_context,
        )
        .await
        .expect("committing");
    let second = store
        .commit(
            vec![event("other", event_type(3, u32::MAX), true, "[]")],
            &second_context,
        )
        .await
        .expect("committing");
    let after = Timestamp::now();
    let committed: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(committed[0].event_source, "källa 🦀".into());
    assert_eq!(committed[0].event_type, event_type(1, 7));
    assert!(committed[0].public);
    assert_eq!(committed[1].event_source, "".into());
    assert_eq!(committed[1].event_type, event_type(2, 0));
    assert!(!committed[1].public);
    assert_eq!(committed[2].event_type, event_type(3, u32::MAX));
    assert_eq!(committed[0].execution_context, first_context);
    assert_eq!(committed[1].execution_context, first_context);
    assert_eq!(committed[2].execution_context, second_context);
    for event in &committed {
        assert!(
            before <= event.occurred && event.occurred <= after,
            "occurred is the commit time"
        );
        assert_eq!(event.aggregate, None);
        assert_eq!(event.event_horizon, None);
    }
    assert_eq!(read_whole_log(&store, ScopeId::DEFAULT).await, committed);
}

/// Fields that go back and forth inside a batch, and plain events right after an aggregate's,
/// are each stored as committed (a backend may reuse what it sent for the event before).
pub async fn fields_that_change_back_and_forth_between_events_round_trip<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("back-and-forth").await;
    let context = execution_context();
    let mut other_context = execution_context();
    other_context.environment = "Production".to_owned();
    // (source, type, public, content) of a plain batch, an aggregate's batch of source "a", and
    // one plain event after it.
    let plain = [
        ("a", event_type(1, 1), true, "{\"n\":0}"),
        ("b", event_type(2, 1), false, "{\"n\":1}"),
        ("a", event_type(1, 2), true, "{\"n\":1}"),
        ("a", event_type(1, 2), false, "{\"n\":0}"),
    ];
    let of_aggregate = [
        ("a", event_type(1, 1), false, "{\"n\":0}"),
        ("a", event_type(2, 1), true, "{\"n\":0}"),
        ("a", event_type(1, 1), false, "{\"n\":0}"),
    ];
    let after = ("a", event_type(1, 1), true, "{}");
    let plain_events = |sent: &[(&str, EventType, bool, &str)]| -> Vec<_> {
        sent.iter()
            .map(|(source, event_type, public, content)| {
                event(source, *event_type, *public, content)
            })
            .collect()
    };
    let mut committed = store
        .commit(plain_events(&plain), &context)
        .await
        .expect("committing");
    let aggregate = store
        .commit_aggregate(
            UncommittedAggregateEvents {
                aggregate_root: dolittle_types::AggregateRootId(test_uuid(0xa66)),
                event_source: "a".into(),
                expected_version: 0,
                events: of_aggregate
                    .iter()
                    .map(
                        |(_, event_type, public, content)| UncommittedAggregateEvent {
                            event_type: *event_type,
                            public: *public,
                            content: (*content).to_owned(),
                        },
                    )
                    .collect(),
            },
            &other_context,
        )
        .await
        .expect("committing an aggregate");
    committed.extend(aggregate.events);
    committed.extend(
        store
            .commit(plain_events(&[after]), &context)
            .await
            .expect("committing after the aggregate"),
    );
    let read = read_whole_log(&store, ScopeId::DEFAULT).await;
    assert_eq!(read, committed, "the log holds what each commit returned");
    let shapes: Vec<_> = read
        .iter()
        .map(|event| {
            (
                (
                    event.event_source.as_str(),
                    event.event_type,
                    event.public,
                    event.content.as_str(),
                ),
                event.aggregate.as_ref().map(|metadata| metadata.version),
                event.execution_context.environment.as_str(),
            )
        })
        .collect();
    let development = context.environment.as_str();
    let expected: Vec<_> = plain
        .into_iter()
        .map(|sent| (sent, None, development))
        .chain(
            of_aggregate
                .into_iter()
                .zip(0..)
                .map(|(sent, version)| (sent, Some(version), "Production")),
        )
        .chain([(after, None, development)])
        .collect();
    assert_eq!(shapes, expected);
}

pub async fn read_log_pages_from_a_position_with_a_limit<H: StoreHarness>(harness: &H) {
    let store = harness.open("paging").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 10), &context)
        .await
        .expect("committing");
    let all = LogFilter::default();
    let read = |from, limit| {
        let store = store.clone();
        let all = all.clone();
        async move {
            let page = store
                .read_log(ScopeId::DEFAULT, from, limit, &all)
                .await
                .expect("reading");
            let numbers: Vec<u64> = page
                .events
                .iter()
                .map(|event| event.sequence_number)
                .collect();
            (numbers, page.next)
        }
    };
    assert_eq!(read(0, 3).await, (vec![0, 1, 2], 3));
    assert_eq!(read(3, 100).await, ((3..10).collect(), 10));
    assert_eq!(read(7, 2).await, (vec![7, 8], 9));
    assert_eq!(read(9, 1).await, (vec![9], 10));
    assert_eq!(read(10, 5).await, (vec![], 10));
}

pub async fn read_log_keeps_only_the_given_event_types_across_pages<H: StoreHarness>(harness: &H) {
    let store = harness.open("type-filter").await;
    let context = execution_context();
    let kinds = [
        (1, 1),
        (2, 1),
        (1, 2),
        (3, 1),
        (2, 5),
        (4, 1),
        (1, 1),
        (3, 9),
    ];
    let mut batch = Vec::new();
    for round in 0..5 {
        for (number, (kind, generation)) in kinds.iter().enumerate() {
            batch.push(event(
                "source",
                event_type(*kind, *generation),
                false,
                &format!("{{\"round\":{round},\"n\":{number}}}"),
            ));
        }
    }
    // A long tail the filter keeps nothing of: the read must still reach the end.
    batch.extend(
        numbered_events("source", 0, 30)
            .into_iter()
            .map(|mut event| {
                event.event_type = event_type(9, 1);
                event
            }),
    );
    let committed = store.commit(batch, &context).await.expect("committing");
    let filter = LogFilter {
        event_types: Some(vec![event_type(1, 1).id, event_type(3, 1).id]),
        ..LogFilter::default()
    };
    let expected: Vec<_> = committed
        .iter()
        .filter(|event| {
            filter
                .event_types
                .as_ref()
                .is_some_and(|t| t.contains(&event.event_type.id))
        })
        .cloned()
        .collect();
    assert_eq!(
        expected.len(),
        25,
        "generations do not matter to the filter"
    );
    for limit in [1, 2, 3, 1000] {
        assert_eq!(
            read_filtered_log(&store, ScopeId::DEFAULT, &filter, limit).await,
            expected
        );
    }
    let page = store
        .read_log(ScopeId::DEFAULT, 0, 1000, &filter)
        .await
        .expect("reading");
    assert_eq!(page.events, expected);
    assert_eq!(
        page.next,
        committed.len() as u64,
        "a read that reached the end says so"
    );
    let nothing = LogFilter {
        event_types: Some(vec![event_type(42, 1).id]),
        ..LogFilter::default()
    };
    assert!(
        read_filtered_log(&store, ScopeId::DEFAULT, &nothing, 4)
            .await
            .is_empty()
    );
}

pub async fn read_log_keeps_only_public_events_when_asked<H: StoreHarness>(harness: &H) {
    let store = harness.open("public-filter").await;
    let context = execution_context();
    let batch: Vec<_> = (0..20)
        .map(|number| {
            event(
                "source",
                event_type(1, 1),
                number % 3 == 0,
                &format!("{number}"),
            )
        })
        .collect();
    let committed = store.commit(batch, &context).await.expect("committing");
    let filter = LogFilter {
        public_only: true,
        ..LogFilter::default()
    };
    let expected: Vec<_> = committed
        .iter()
        .filter(|event| event.public)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 7);
    for limit in [1, 4, 100] {
        assert_eq!(
            read_filtered_log(&store, ScopeId::DEFAULT, &filter, limit).await,
            expected
        );
    }
}

pub async fn read_log_keeps_only_events_of_one_event_source<H: StoreHarness>(harness: &H) {
    let store = harness.open("source-filter").await;
    let context = execution_context();
    let sources = ["a", "b", "a-b", "A", "b"];
    let batch: Vec<_> = (0..25)
        .map(|number| {
            event(
                sources[number % sources.len()],
                event_type(1 + (number % 2) as u128, 1),
                number % 3 == 0,
                &format!("{number}"),
            )
        })
        .collect();
    let committed = store.commit(batch, &context).await.expect("committing");
    let by_source = LogFilter {
        event_source: Some("b".into()),
        ..LogFilter::default()
    };
    let expected: Vec<_> = committed
        .iter()
        .filter(|event| event.event_source.as_str() == "b")
        .cloned()
        .collect();
    assert_eq!(expected.len(), 10);
    assert_eq!(
        read_filtered_log(&store, ScopeId::DEFAULT, &by_source, 3).await,
        expected
    );
    let combined = LogFilter {
        event_types: Some(vec![event_type(2, 1).id]),
        public_only: true,
        event_source: Some("a".into()),
    };
    let expected: Vec<_> = committed
        .iter()
        .filter(|event| {
            event.event_source.as_str() == "a"
                && event.public
                && event.event_type.id == event_type(2, 1).id
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        read_filtered_log(&store, ScopeId::DEFAULT, &combined, 2).await,
        expected
    );
}

pub async fn watch_log_wakes_up_when_events_are_committed<H: StoreHarness>(harness: &H) {
    let store = harness.open("watch-log").await;
    let context = execution_context();
    let mut receiver = store.watch_log(ScopeId::DEFAULT);
    assert_eq!(*receiver.borrow_and_update(), 0);
    let mut waiter = store.watch_log(ScopeId::DEFAULT);
    let waiting = tokio::spawn(async move {
        *waiter
            .wait_for(|length| *length >= 3)
            .await
            .expect("the store is open")
    });
    store
        .commit(numbered_events("source", 0, 1), &context)
        .await
        .expect("committing");
    within_timeout("a wake-up after a commit", receiver.changed())
        .await
        .expect("the store is open");
    assert_eq!(*receiver.borrow_and_update(), 1);
    store
        .commit(numbered_events("source", 1, 2), &context)
        .await
        .expect("committing");
    let woken_at = within_timeout("a waiter for length 3", waiting)
        .await
        .expect("the waiting task");
    assert_eq!(woken_at, 3);
    let late = store.watch_log(ScopeId::DEFAULT);
    assert_eq!(
        *late.borrow(),
        3,
        "a new receiver starts at the current length"
    );
    let mut other_scope = store.watch_log(scope(1));
    assert_eq!(*other_scope.borrow_and_update(), 0);
    store
        .commit(numbered_events("source", 3, 1), &context)
        .await
        .expect("committing");
    within_timeout("a wake-up after a commit", receiver.changed())
        .await
        .expect("the store is open");
    assert_eq!(*receiver.borrow(), 4);
    assert!(
        !other_scope.has_changed().expect("the store is open"),
        "a commit to the default scope does not wake watchers of another scope"
    );
    let distinct: BTreeSet<_> = read_whole_log(&store, ScopeId::DEFAULT)
        .await
        .iter()
        .map(|event| event.sequence_number)
        .collect();
    assert_eq!(distinct.len(), 4);
}
