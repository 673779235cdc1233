//! The event horizon between two Runtimes on loopback (issue 10): consents, what crosses and
//! what does not, order, metadata, scoped event handlers, refusals, retries, withdrawn and added
//! consents, and subscriptions that resume after a restart.

mod horizon;

use std::time::Duration;

use dolittle_contracts::failure_ids;
use dolittle_contracts::runtime::eventhorizon::consumer_client::ConsumerClient;
use dolittle_contracts::runtime::eventhorizon::event_horizon_consumer_to_producer_message::Message as FromConsumer;
use dolittle_contracts::runtime::eventhorizon::event_horizon_producer_to_consumer_message::Message as FromProducer;
use dolittle_contracts::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle_contracts::runtime::eventhorizon::{
    EventHorizonConsumerToProducerMessage, Subscription,
};
use dolittle_contracts::services::Pong;
use dolittle_store::SubscriptionState;
use dolittle_types::{EventProcessorId, MicroserviceId, ScopeId, TenantId, Uuid};
use horizon::*;
use tokio_stream::wrappers::ReceiverStream;

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x4a4a4a4a_0000_4000_8000_000000000001));

fn producer_setup(consents: &[ConsentLine]) -> Setup<'_> {
    Setup {
        tenants: &[TenantId::DEVELOPMENT],
        producers: &[],
        consents,
    }
}

async fn start_pair(
    consents: &[ConsentLine],
    producer_dir: &std::path::Path,
    consumer_dir: &std::path::Path,
) -> (Node, Node) {
    let producer = Node::start(producer_dir, PRODUCER, &producer_setup(consents), 0).await;
    let producers = [(PRODUCER, producer.public.port())];
    let consumer = Node::start(
        consumer_dir,
        CONSUMER,
        &Setup {
            tenants: &[TenantId::DEVELOPMENT, OTHER_TENANT],
            producers: &producers,
            consents: &[],
        },
        0,
    )
    .await;
    (producer, consumer)
}

/// Waits until the stored state of a subscription satisfies `condition`.
async fn wait_for_state(
    consumer: &Node,
    partition: &str,
    condition: impl Fn(&SubscriptionState) -> bool,
) -> SubscriptionState {
    let store = consumer.store(TenantId::DEVELOPMENT);
    let key = subscription_key(partition);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = store
            .get_subscription_state(&key)
            .await
            .expect("read state");
        if let Some(state) = state.filter(|state| condition(state)) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription state did not change as expected in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn public_events_cross_in_order_with_their_metadata_and_private_ones_never_do() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    let mut uncommitted = Vec::new();
    for n in 0..10 {
        uncommitted.push(event(PARTITION, n % 2 == 0, n));
        uncommitted.push(event(OTHER_PARTITION, true, 100 + n));
    }
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        uncommitted,
    )
    .await;
    let producer_store = producer.store(TenantId::DEVELOPMENT);
    wait_for_public_stream(&producer_store, 15).await;

    let mut handler =
        EventHandler::register(consumer.channel().await, CONSUMER, HANDLER, SCOPE).await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    assert_eq!(response.consent_id, Some(CONSENT.into()));

    let consumer_store = consumer.store(TenantId::DEVELOPMENT);
    let received = wait_for_scope(&consumer_store, SCOPE, 5).await;
    let public = read_public_partition(&producer_store, PARTITION).await;
    assert_eq!(
        public.len(),
        5,
        "the public partition holds the public events only"
    );
    assert_eq!(received.len(), 5, "only the subscribed partition crosses");
    for (index, (scoped, source)) in received.iter().zip(&public).enumerate() {
        assert_eq!(
            scoped.sequence_number, index as u64,
            "the scoped log is gapless"
        );
        assert_eq!(
            scoped.content, source.event.content,
            "same events in the same order"
        );
        assert_eq!(scoped.event_source, source.event.event_source);
        assert_eq!(scoped.occurred, source.event.occurred);
        assert!(scoped.public, "a private event crossed: {scoped:?}");
        assert!(scoped.execution_context.claims.is_empty(), "claims crossed");
        let metadata = scoped.event_horizon.expect("event horizon metadata");
        assert_eq!(
            metadata.external_sequence_number,
            source.event.sequence_number
        );
        assert_eq!(metadata.consent, CONSENT);
    }
    assert!(
        read_scope(&consumer_store, ScopeId::DEFAULT)
            .await
            .is_empty(),
        "received events stay out of the default scope"
    );

    // Live: new public events follow without a new subscription.
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        vec![
            event(PARTITION, true, 20),
            event(PARTITION, false, 21),
            event(PARTITION, true, 22),
        ],
    )
    .await;
    let received = wait_for_scope(&consumer_store, SCOPE, 7).await;
    let contents: Vec<&str> = received
        .iter()
        .map(|event| event.content.as_str())
        .collect();
    assert_eq!(
        contents,
        [
            "{\"n\":0}",
            "{\"n\":2}",
            "{\"n\":4}",
            "{\"n\":6}",
            "{\"n\":8}",
            "{\"n\":20}",
            "{\"n\":22}"
        ]
    );

    // The scoped handler sees each received event once, in order, for the consumer tenant.
    let handled = handler.next(7).await;
    let handled_numbers: Vec<u64> = handled
        .iter()
        .map(|(_, event)| event.sequence_number)
        .collect();
    assert_eq!(handled_numbers, (0..7).collect::<Vec<u64>>());
    assert!(
        handled
            .iter()
            .all(|(tenant, _)| *tenant == TenantId::DEVELOPMENT)
    );
    assert!(
        handled
            .iter()
            .all(|(_, event)| event.event_horizon.is_some())
    );

    // Another consumer tenant without the subscription sees nothing.
    assert!(
        read_scope(&consumer.store(OTHER_TENANT), SCOPE)
            .await
            .is_empty()
    );

    // Asking again reuses the running subscription.
    let again = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert_eq!(again.consent_id, Some(CONSENT.into()));
    assert_eq!(consumer.context.event_horizon.subscriptions.keys().len(), 1);
    let metrics = consumer.context.metrics.render();
    assert!(
        metrics.lines().any(|line| line
            .starts_with("dolittle_event_horizon_received_events_total{")
            && line.ends_with(" 7")),
        "{metrics}"
    );
    assert!(
        handler.handled.try_recv().is_err(),
        "an event was handled twice"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn subscriptions_without_a_matching_consent_are_refused_and_the_reason_is_recorded() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;

    let other_partition = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        OTHER_PARTITION,
    )
    .await;
    assert_eq!(
        failure_id(&other_partition),
        Some(failure_ids::MISSING_CONSENT)
    );
    let reason = &other_partition.failure.as_ref().expect("failure").reason;
    assert!(reason.contains(OTHER_PARTITION), "{reason}");
    assert!(reason.contains(&PUBLIC_STREAM.to_string()), "{reason}");
    assert!(reason.contains(&CONSUMER.to_string()), "{reason}");

    let other_consumer_tenant = subscribe(
        consumer.channel().await,
        OTHER_TENANT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert_eq!(
        failure_id(&other_consumer_tenant),
        Some(failure_ids::MISSING_CONSENT)
    );
    assert!(
        other_consumer_tenant
            .failure
            .as_ref()
            .expect("failure")
            .reason
            .contains(&OTHER_TENANT.to_string())
    );

    let unknown_producer_tenant = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        OTHER_TENANT,
        PARTITION,
    )
    .await;
    assert_eq!(
        failure_id(&unknown_producer_tenant),
        Some(failure_ids::MISSING_CONSENT)
    );
    assert_eq!(
        unknown_producer_tenant
            .failure
            .as_ref()
            .expect("failure")
            .reason,
        format!("There are no consents configured for Producer Tenant {OTHER_TENANT}")
    );

    let unknown_microservice = MicroserviceId(Uuid::from_u128(0xdead));
    let unconfigured = subscribe_to(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        unknown_microservice,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert_eq!(
        failure_id(&unconfigured),
        Some(failure_ids::MISSING_MICROSERVICE_CONFIGURATION)
    );
    assert_eq!(
        unconfigured.failure.as_ref().expect("failure").reason,
        format!("No microservice configuration for producer microservice {unknown_microservice}")
    );

    // The refused subscription keeps trying, and its state says why.
    let state = wait_for_state(&consumer, OTHER_PARTITION, |state| state.failure.is_some()).await;
    let failure = state.failure.expect("failure");
    assert!(
        failure.reason.contains("There are no consent configured"),
        "{}",
        failure.reason
    );
    assert!(failure.attempts >= 1);
    assert!(
        failure
            .retry_time
            .is_some_and(|retry| retry >= failure.last_failed)
    );
    assert_eq!(state.position, 0);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn an_unreachable_producer_is_retried_until_it_comes() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let port = free_port();
    let consumer = Node::start(
        consumer_dir.path(),
        CONSUMER,
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[(PRODUCER, port)],
            consents: &[],
        },
        0,
    )
    .await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert_eq!(
        failure_id(&response),
        Some(failure_ids::COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME)
    );
    let state = wait_for_state(&consumer, PARTITION, |state| state.failure.is_some()).await;
    assert!(
        state
            .failure
            .expect("failure")
            .reason
            .contains(&port.to_string())
    );

    let producer = Node::start(
        producer_dir.path(),
        PRODUCER,
        &producer_setup(&[ConsentLine::standard()]),
        port,
    )
    .await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        vec![event(PARTITION, true, 1), event(PARTITION, true, 2)],
    )
    .await;
    let received = wait_for_scope(&consumer.store(TenantId::DEVELOPMENT), SCOPE, 2).await;
    assert_eq!(received.len(), 2);
    let state = wait_for_state(&consumer, PARTITION, |state| state.failure.is_none()).await;
    assert_eq!(state.position, 2);
    assert!(state.last_successfully_processed.is_some());
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn the_consumer_service_is_public_only_and_checks_its_first_message() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;

    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(EventHorizonConsumerToProducerMessage {
            message: Some(FromConsumer::Pong(Pong {})),
        })
        .await
        .expect("queue");
    let mut incoming = ConsumerClient::new(connect(producer.public).await)
        .subscribe(ReceiverStream::new(receiver))
        .await
        .expect("subscribe call")
        .into_inner();
    let answer = loop {
        let message = tokio::time::timeout(PATIENCE, incoming.message())
            .await
            .expect("in time")
            .expect("message")
            .expect("not ended");
        match message.message {
            Some(FromProducer::SubscriptionResponse(response)) => break response,
            Some(FromProducer::Ping(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    let failure = answer.failure.expect("refused");
    assert_eq!(
        dolittle_contracts::convert::uuid_from_wire("id", failure.id.as_ref().expect("id"))
            .expect("id"),
        failure_ids::MISSING_SUBSCRIPTION_ARGUMENTS
    );
    assert!(answer.consent_id.is_none());

    // Not on the private endpoint; and heads' Subscriptions not on the public one.
    let (_keep, receiver) = tokio::sync::mpsc::channel(4);
    let private = ConsumerClient::new(producer.channel().await)
        .subscribe(ReceiverStream::new(receiver))
        .await;
    assert_eq!(
        private.err().map(|status| status.code()),
        Some(tonic::Code::Unimplemented)
    );
    let public = SubscriptionsClient::new(connect(producer.public).await)
        .subscribe(Subscription::default())
        .await;
    assert_eq!(
        public.err().map(|status| status.code()),
        Some(tonic::Code::Unimplemented)
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn a_withdrawn_consent_ends_the_subscription_and_a_restored_one_resumes_it() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        vec![event(PARTITION, true, 1)],
    )
    .await;
    let consumer_store = consumer.store(TenantId::DEVELOPMENT);
    wait_for_scope(&consumer_store, SCOPE, 1).await;

    // The file changes on disk: no restart, no signal.
    write_consents(producer_dir.path(), &[]);
    let state = wait_for_state(&consumer, PARTITION, |state| state.failure.is_some()).await;
    let reason = state.failure.expect("failure").reason;
    assert!(
        reason.contains("There are no consent configured"),
        "{reason}"
    );
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        vec![event(PARTITION, true, 2)],
    )
    .await;
    wait_for_state(&consumer, PARTITION, |state| {
        state
            .failure
            .as_ref()
            .is_some_and(|failure| failure.attempts >= 2)
    })
    .await;
    assert_eq!(
        read_scope(&consumer_store, SCOPE).await.len(),
        1,
        "nothing crosses without a consent"
    );

    write_consents(producer_dir.path(), &[ConsentLine::standard()]);
    let received = wait_for_scope(&consumer_store, SCOPE, 2).await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].content, "{\"n\":2}");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn subscriptions_resume_when_the_consumer_restarts_without_a_head_asking_again() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let first: Vec<_> = (0..3).map(|n| event(PARTITION, true, n)).collect();
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        first,
    )
    .await;
    wait_for_scope(&consumer.store(TenantId::DEVELOPMENT), SCOPE, 3).await;
    consumer.stop().await;

    let more: Vec<_> = (3..6).map(|n| event(PARTITION, true, n)).collect();
    commit(
        producer.channel().await,
        PRODUCER,
        TenantId::DEVELOPMENT,
        more,
    )
    .await;
    let consumer = Node::restart(consumer_dir.path(), CONSUMER, 0).await;
    let received = wait_for_scope(&consumer.store(TenantId::DEVELOPMENT), SCOPE, 6).await;
    let external: Vec<u64> = received
        .iter()
        .map(|event| {
            event
                .event_horizon
                .expect("metadata")
                .external_sequence_number
        })
        .collect();
    assert_eq!(
        external,
        (0..6).collect::<Vec<u64>>(),
        "no gap, no duplicate"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn a_large_backlog_crosses_complete_and_in_order() {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(
        &[ConsentLine::standard()],
        producer_dir.path(),
        consumer_dir.path(),
    )
    .await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    for batch in 0..10 {
        let events: Vec<_> = (0..100)
            .map(|n| event(PARTITION, true, batch * 100 + n))
            .collect();
        commit(
            producer.channel().await,
            PRODUCER,
            TenantId::DEVELOPMENT,
            events,
        )
        .await;
    }
    let producer_store = producer.store(TenantId::DEVELOPMENT);
    wait_for_public_stream(&producer_store, 1000).await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let received = wait_for_scope(&consumer.store(TenantId::DEVELOPMENT), SCOPE, 1000).await;
    let external: Vec<u64> = received
        .iter()
        .map(|event| {
            event
                .event_horizon
                .expect("metadata")
                .external_sequence_number
        })
        .collect();
    assert_eq!(external, (0..1000).collect::<Vec<u64>>());
    consumer.stop().await;
    producer.stop().await;
}
