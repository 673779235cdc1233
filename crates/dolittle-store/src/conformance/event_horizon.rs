//! The event horizon: external events written into scoped logs, and subscription states.

use dolittle_types::{
    CommittedEvent, ConsentId, CorrelationId, EventHorizonMetadata, MicroserviceId, PartitionId,
    ScopeId, TenantId, Timestamp,
};

use super::*;
use crate::{ExternalEvent, ProcessingFailure, SubscriptionKey, SubscriptionState};

pub fn subscription(scope_id: ScopeId, partition: &str) -> SubscriptionKey {
    SubscriptionKey {
        producer_microservice: MicroserviceId(test_uuid(0xb0_0001)),
        producer_tenant: TenantId(test_uuid(0xb0_0002)),
        stream: stream(0xb0),
        partition: PartitionId::from(partition),
        scope: scope_id,
    }
}

/// An event as a producer committed it, at the producer's sequence number.
pub fn producer_event(sequence_number: u64) -> CommittedEvent {
    let mut context = execution_context();
    context.microservice = MicroserviceId(test_uuid(0xb0_0001));
    context.tenant = TenantId(test_uuid(0xb0_0002));
    context.correlation = CorrelationId(test_uuid(0xc0_0000 | u128::from(sequence_number)));
    CommittedEvent {
        sequence_number,
        occurred: Timestamp(1_650_000_000_000_000 + sequence_number as i64),
        event_source: format!("producer-source-{sequence_number}").into(),
        execution_context: context,
        event_type: event_type(5, 2),
        public: true,
        content: format!("{{ \"from\" : \"producer\", \"n\": {sequence_number} }}"),
        aggregate: None,
        event_horizon: None,
    }
}

pub fn external(sequence_number: u64) -> ExternalEvent {
    ExternalEvent {
        event: producer_event(sequence_number),
        consent: ConsentId(test_uuid(0xc0)),
        received: Timestamp(1_700_000_000_000_000 + sequence_number as i64),
    }
}

pub fn subscription_state(position: u64) -> SubscriptionState {
    SubscriptionState {
        position,
        last_successfully_processed: Some(Timestamp(1_700_000_000_000_000)),
        failure: None,
        consumer_microservice: Some(dolittle_types::MicroserviceId(test_uuid(0xc1))),
    }
}

pub async fn external_events_are_written_into_the_scoped_log_with_event_horizon_metadata<
    H: StoreHarness,
>(
    harness: &H,
) {
    let store = harness.open("event-horizon").await;
    let scope_id = scope(1);
    let key = subscription(scope_id, "partition-1");
    store
        .commit(numbered_events("local", 0, 2), &execution_context())
        .await
        .expect("committing to the default scope");
    let mut watcher = store.watch_log(scope_id);
    assert_eq!(*watcher.borrow_and_update(), 0);
    let first = store
        .commit_external(
            &key,
            vec![external(10), external(11), external(15)],
            &subscription_state(16),
        )
        .await
        .expect("committing external events");
    within_timeout("a wake-up of the scoped log", watcher.changed())
        .await
        .expect("the store is open");
    assert_eq!(*watcher.borrow(), 3);
    let second = store
        .commit_external(&key, vec![external(16)], &subscription_state(17))
        .await
        .expect("committing external events");
    let committed: Vec<_> = first.into_iter().chain(second).collect();
    for (number, (event, producer_number)) in committed.iter().zip([10, 11, 15, 16]).enumerate() {
        let received = external(producer_number);
        let expected = CommittedEvent {
            sequence_number: number as u64,
            event_horizon: Some(EventHorizonMetadata {
                external_sequence_number: producer_number,
                received: received.received,
                consent: received.consent,
            }),
            ..received.event
        };
        assert_eq!(
            event, &expected,
            "the producer's event keeps every field in the scoped log"
        );
    }
    assert_eq!(read_whole_log(&store, scope_id).await, committed);
    assert_eq!(
        read_whole_log(&store, ScopeId::DEFAULT).await.len(),
        2,
        "the default log is apart"
    );
    assert_eq!(*store.watch_log(ScopeId::DEFAULT).borrow(), 2);
    assert_eq!(
        store.get_subscription_state(&key).await.expect("getting"),
        Some(subscription_state(17)),
        "the subscription's state is saved with its events"
    );
    let public = LogFilter {
        public_only: true,
        event_types: Some(vec![event_type(5, 2).id]),
        event_source: Some("producer-source-15".into()),
    };
    let filtered = read_filtered_log(&store, scope_id, &public, 10).await;
    assert_eq!(
        filtered,
        vec![committed[2].clone()],
        "scoped logs are filtered like the default one"
    );
}

pub async fn subscription_states_are_saved_replaced_and_listed<H: StoreHarness>(harness: &H) {
    let store = harness.open("subscription-states").await;
    let first = subscription(scope(1), "a");
    let other_partition = subscription(scope(1), "b");
    let other_scope = subscription(scope(2), "a");
    let other_tenant = SubscriptionKey {
        producer_tenant: TenantId(test_uuid(0xb0_0003)),
        ..first.clone()
    };
    assert_eq!(
        store.get_subscription_state(&first).await.expect("getting"),
        None
    );
    let failing = SubscriptionState {
        position: 4,
        last_successfully_processed: None,
        failure: Some(ProcessingFailure {
            reason: "the producer refused: no consent".to_owned(),
            attempts: 3,
            retry_time: Some(Timestamp(1_700_000_000_500_000)),
            last_failed: Timestamp(1_700_000_000_000_000),
        }),
        consumer_microservice: None,
    };
    let saves = [
        (first.clone(), subscription_state(1)),
        (other_partition, subscription_state(2)),
        (other_scope, failing),
        (other_tenant, SubscriptionState::default()),
    ];
    for (key, state) in &saves {
        store
            .save_subscription_state(key, state)
            .await
            .expect("saving");
    }
    for (key, state) in &saves {
        assert_eq!(
            store
                .get_subscription_state(key)
                .await
                .expect("getting")
                .as_ref(),
            Some(state)
        );
    }
    store
        .save_subscription_state(&first, &subscription_state(9))
        .await
        .expect("replacing");
    let mut listed = store.list_subscription_states().await.expect("listing");
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = saves.to_vec();
    expected[0].1 = subscription_state(9);
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed, expected);
}
