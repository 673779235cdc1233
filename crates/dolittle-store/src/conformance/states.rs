//! Stream processor states, failing partitions included.

use std::collections::BTreeMap;

use dolittle_types::{PartitionId, ScopeId, Timestamp};

use super::*;
use crate::{FailingPartition, ProcessingFailure, ProcessorKind, StreamProcessorState};

/// An unpartitioned processor halted at its position.
pub fn failing_state(position: u64) -> StreamProcessorState {
    StreamProcessorState {
        position,
        partitioned: false,
        last_successfully_processed: Some(Timestamp(1_600_000_000_123_456)),
        failure: Some(ProcessingFailure {
            reason: "the handler threw: \"kaputt\" ✗".to_owned(),
            attempts: 7,
            retry_time: Some(Timestamp(1_600_000_060_000_001)),
            last_failed: Timestamp(1_600_000_000_999_999),
        }),
        failing_partitions: BTreeMap::new(),
    }
}

/// A partitioned processor with two parked partitions.
pub fn partitioned_state(position: u64) -> StreamProcessorState {
    let mut failing_partitions = BTreeMap::new();
    failing_partitions.insert(
        PartitionId::from("kitchen-1"),
        FailingPartition {
            position: 3,
            reason: "first".to_owned(),
            attempts: 1,
            retry_time: None,
            last_failed: Timestamp(-5),
        },
    );
    failing_partitions.insert(
        PartitionId::unpartitioned(),
        FailingPartition {
            position: position.saturating_sub(1),
            reason: String::new(),
            attempts: u32::MAX,
            retry_time: Some(Timestamp(i64::MAX)),
            last_failed: Timestamp(0),
        },
    );
    StreamProcessorState {
        position,
        partitioned: true,
        last_successfully_processed: None,
        failure: None,
        failing_partitions,
    }
}

pub async fn processor_states_are_saved_replaced_and_listed<H: StoreHarness>(harness: &H) {
    let store = harness.open("processor-states").await;
    let handler = processor(ProcessorKind::EventHandler, ScopeId::DEFAULT, 1);
    let same_id_as_filter = processor(ProcessorKind::Filter, ScopeId::DEFAULT, 1);
    let same_id_in_scope = processor(ProcessorKind::EventHandler, scope(1), 1);
    let projection = processor(ProcessorKind::Projection, ScopeId::DEFAULT, 2);
    assert_eq!(
        store.get_processor_state(&handler).await.expect("getting"),
        None
    );
    let saves = [
        (handler, failing_state(10)),
        (same_id_as_filter, filter_state(3)),
        (same_id_in_scope, partitioned_state(12)),
        (projection, StreamProcessorState::default()),
    ];
    for (key, state) in &saves {
        store
            .save_processor_state(key, state)
            .await
            .expect("saving");
    }
    for (key, state) in &saves {
        assert_eq!(
            store
                .get_processor_state(key)
                .await
                .expect("getting")
                .as_ref(),
            Some(state),
            "kind, scope and processor id make the key"
        );
    }
    let replaced = partitioned_state(40);
    store
        .save_processor_state(&handler, &replaced)
        .await
        .expect("replacing");
    assert_eq!(
        store.get_processor_state(&handler).await.expect("getting"),
        Some(replaced.clone())
    );
    let mut listed = store.list_processor_states().await.expect("listing");
    listed.sort_by_key(|(key, _)| *key);
    let mut expected: Vec<_> = saves.to_vec();
    expected[0].1 = replaced;
    expected.sort_by_key(|(key, _)| *key);
    assert_eq!(listed, expected);
}
