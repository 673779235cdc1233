//! Streams: definitions, appends that save the filter's state atomically, reads and wake-ups.

use dolittle_types::{EventProcessorId, PartitionId, ScopeId, StreamId, Timestamp};

use super::*;
use crate::{
    FilterDefinition, ProcessorKey, ProcessorKind, StoreError, StreamDefinition, StreamEntry,
    StreamProcessorState,
};

pub fn stream(number: u128) -> StreamId {
    StreamId(test_uuid(0x57_0000 | number))
}

pub fn processor(kind: ProcessorKind, scope: ScopeId, number: u128) -> ProcessorKey {
    ProcessorKey {
        kind,
        scope,
        processor: EventProcessorId(test_uuid(0xf1_0000 | number)),
    }
}

pub fn filter_state(position: u64) -> StreamProcessorState {
    StreamProcessorState {
        position,
        partitioned: false,
        last_successfully_processed: Some(Timestamp(1_700_000_000_000_000 + position as i64)),
        ..StreamProcessorState::default()
    }
}

pub fn entry(partition: &str, sequence_number: u64) -> StreamEntry {
    StreamEntry {
        partition: PartitionId::from(partition),
        sequence_number,
    }
}

pub async fn stream_definitions_are_stored_replaced_and_listed<H: StoreHarness>(harness: &H) {
    let store = harness.open("stream-definitions").await;
    let (first, second) = (stream(1), stream(2));
    assert_eq!(
        store
            .get_stream_definition(ScopeId::DEFAULT, first)
            .await
            .expect("getting"),
        None
    );
    let remote = StreamDefinition {
        stream: first,
        partitioned: true,
        public: true,
        filter: FilterDefinition::Remote,
    };
    let by_types = StreamDefinition {
        stream: second,
        partitioned: false,
        public: false,
        filter: FilterDefinition::EventTypes(vec![event_type(1, 1).id, event_type(2, 1).id]),
    };
    let scoped = StreamDefinition {
        stream: first,
        partitioned: false,
        public: false,
        filter: FilterDefinition::EventTypes(vec![event_type(3, 1).id]),
    };
    for (scope_id, definition) in [
        (ScopeId::DEFAULT, &remote),
        (ScopeId::DEFAULT, &by_types),
        (scope(1), &scoped),
    ] {
        store
            .put_stream_definition(scope_id, definition)
            .await
            .expect("putting");
    }
    let get = |scope_id, stream_id| {
        let store = store.clone();
        async move {
            store
                .get_stream_definition(scope_id, stream_id)
                .await
                .expect("getting")
        }
    };
    assert_eq!(get(ScopeId::DEFAULT, first).await, Some(remote.clone()));
    assert_eq!(get(ScopeId::DEFAULT, second).await, Some(by_types.clone()));
    assert_eq!(get(scope(1), first).await, Some(scoped.clone()));
    assert_eq!(get(scope(1), second).await, None);
    let replaced = StreamDefinition {
        partitioned: false,
        filter: FilterDefinition::EventTypes(Vec::new()),
        ..remote.clone()
    };
    store
        .put_stream_definition(ScopeId::DEFAULT, &replaced)
        .await
        .expect("replacing");
    assert_eq!(get(ScopeId::DEFAULT, first).await, Some(replaced.clone()));
    let mut listed = store.list_stream_definitions().await.expect("listing");
    listed.sort_by_key(|(scope_id, definition)| (*scope_id, definition.stream));
    let mut expected = vec![
        (ScopeId::DEFAULT, replaced),
        (ScopeId::DEFAULT, by_types),
        (scope(1), scoped),
    ];
    expected.sort_by_key(|(scope_id, definition)| (*scope_id, definition.stream));
    assert_eq!(listed, expected);
}

pub async fn append_to_stream_assigns_positions_and_saves_the_filter_state<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("stream-append").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 8), &context)
        .await
        .expect("committing");
    let filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    let target = stream(1);
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 0), entry("b", 2), entry("a", 4)],
            &filter,
            &filter_state(5),
        )
        .await
        .expect("appending");
    assert_eq!(length, 3);
    assert_eq!(
        store.get_processor_state(&filter).await.expect("getting"),
        Some(filter_state(5))
    );
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            Vec::new(),
            &filter,
            &filter_state(6),
        )
        .await
        .expect("appending nothing, saving the position");
    assert_eq!(length, 3, "an empty append only saves the state");
    assert_eq!(
        store.get_processor_state(&filter).await.expect("getting"),
        Some(filter_state(6))
    );
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("b", 7)],
            &filter,
            &filter_state(8),
        )
        .await
        .expect("appending");
    assert_eq!(length, 4);
    assert_eq!(*store.watch_stream(ScopeId::DEFAULT, target).borrow(), 4);
    let read = store
        .read_stream(ScopeId::DEFAULT, target, 0, None, 100)
        .await
        .expect("reading");
    let log = read_whole_log(&store, ScopeId::DEFAULT).await;
    let expected = [("a", 0), ("b", 2), ("a", 4), ("b", 7)];
    assert_eq!(read.len(), expected.len());
    for (position, (stream_event, (partition, sequence_number))) in
        read.iter().zip(expected).enumerate()
    {
        assert_eq!(stream_event.position, position as u64);
        assert_eq!(stream_event.partition, PartitionId::from(partition));
        assert_eq!(
            stream_event.event, log[sequence_number as usize],
            "a stream entry reads the event from the log"
        );
    }
    assert_eq!(
        read_whole_log(&store, ScopeId::DEFAULT).await.len(),
        8,
        "the log is unchanged"
    );
}

pub async fn read_stream_reads_all_partitions_or_one_from_a_position<H: StoreHarness>(harness: &H) {
    let store = harness.open("stream-read").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 20), &context)
        .await
        .expect("committing");
    let filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    let target = stream(1);
    let partitions = ["x", "y", "z", PartitionId::UNPARTITIONED_TEXT];
    let entries: Vec<_> = (0..20)
        .rev()
        .map(|number| entry(partitions[number as usize % 4], number))
        .collect();
    store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            entries.clone(),
            &filter,
            &filter_state(20),
        )
        .await
        .expect("appending");
    let read = |from, partition: Option<&'static str>, limit| {
        let store = store.clone();
        let entries = entries.clone();
        async move {
            let partition = partition.map(PartitionId::from);
            store
                .read_stream(ScopeId::DEFAULT, target, from, partition.as_ref(), limit)
                .await
                .expect("reading")
                .into_iter()
                .map(|stream_event| {
                    assert_eq!(
                        stream_event.event.sequence_number,
                        entries[stream_event.position as usize].sequence_number
                    );
                    assert_eq!(
                        stream_event.partition,
                        entries[stream_event.position as usize].partition
                    );
                    stream_event.position
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read(0, None, 100).await, (0..20).collect::<Vec<_>>());
    assert_eq!(read(5, None, 3).await, vec![5, 6, 7]);
    assert_eq!(read(18, None, 10).await, vec![18, 19]);
    assert_eq!(read(20, None, 10).await, Vec::<u64>::new());
    // Entry at position p references event 19 - p, in partition (19 - p) % 4.
    assert_eq!(read(0, Some("x"), 100).await, vec![3, 7, 11, 15, 19]);
    assert_eq!(read(4, Some("y"), 2).await, vec![6, 10]);
    assert_eq!(
        read(0, Some(PartitionId::UNPARTITIONED_TEXT), 100).await,
        vec![0, 4, 8, 12, 16]
    );
    assert_eq!(read(0, Some("nobody"), 100).await, Vec::<u64>::new());
    assert!(
        store
            .read_stream(ScopeId::DEFAULT, stream(2), 0, None, 10)
            .await
            .expect("reading a stream with no entries")
            .is_empty()
    );
}

pub async fn an_append_referencing_a_missing_event_writes_neither_entries_nor_state<
    H: StoreHarness,
>(
    harness: &H,
) {
    let store = harness.open("stream-append-atomic").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 3), &context)
        .await
        .expect("committing");
    let filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    let target = stream(1);
    store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 0)],
            &filter,
            &filter_state(1),
        )
        .await
        .expect("appending");
    let result = store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 1), entry("a", 3)],
            &filter,
            &filter_state(4),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidArgument(_))),
        "got {result:?}"
    );
    assert_eq!(
        store.get_processor_state(&filter).await.expect("getting"),
        Some(filter_state(1)),
        "a refused append does not save the state"
    );
    let read = store
        .read_stream(ScopeId::DEFAULT, target, 0, None, 10)
        .await
        .expect("reading");
    assert_eq!(read.len(), 1, "a refused append writes no entry");
    assert_eq!(*store.watch_stream(ScopeId::DEFAULT, target).borrow(), 1);
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 2)],
            &filter,
            &filter_state(3),
        )
        .await
        .expect("appending");
    assert_eq!(length, 2, "a refused append uses no positions");
}

pub async fn watch_stream_wakes_up_when_entries_are_appended<H: StoreHarness>(harness: &H) {
    let store = harness.open("stream-watch").await;
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 5), &context)
        .await
        .expect("committing");
    let filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    let (target, other) = (stream(1), stream(2));
    let mut receiver = store.watch_stream(ScopeId::DEFAULT, target);
    let mut other_receiver = store.watch_stream(ScopeId::DEFAULT, other);
    assert_eq!(*receiver.borrow_and_update(), 0);
    assert_eq!(*other_receiver.borrow_and_update(), 0);
    let mut waiter = store.watch_stream(ScopeId::DEFAULT, target);
    let waiting = tokio::spawn(async move {
        *waiter
            .wait_for(|length| *length >= 3)
            .await
            .expect("the store is open")
    });
    store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 0)],
            &filter,
            &filter_state(1),
        )
        .await
        .expect("appending");
    within_timeout("a wake-up after an append", receiver.changed())
        .await
        .expect("the store is open");
    assert_eq!(*receiver.borrow_and_update(), 1);
    store
        .append_to_stream(
            ScopeId::DEFAULT,
            target,
            vec![entry("a", 1), entry("b", 2)],
            &filter,
            &filter_state(3),
        )
        .await
        .expect("appending");
    assert_eq!(
        within_timeout("a waiter for length 3", waiting)
            .await
            .expect("task"),
        3
    );
    assert!(
        !other_receiver.has_changed().expect("the store is open"),
        "appending to one stream does not wake watchers of another"
    );
    assert_eq!(*store.watch_stream(ScopeId::DEFAULT, target).borrow(), 3);
    assert_eq!(
        *store.watch_stream(scope(1), target).borrow(),
        0,
        "streams are per scope"
    );
}
