//! The event horizon through the SDK: a producer head's public filter writes a public stream, a
//! consumer head subscribes its tenant to a partition of it (with one call, or declared on the
//! client builder), and an event handler in the consumer's scope gets the producer's public
//! events. Refusals reach the application with the Runtime's failure id and reason. Two
//! Runtimes on loopback.

use std::path::Path;
use std::time::Duration;

use dolittle_contracts::failure_ids;
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_sdk::types::{
    CommittedEvent, ConsentId, EventProcessorId, MicroserviceId, ScopeId, StreamId, TenantId, Uuid,
};
use dolittle_sdk::{
    Client, ClientBuilder, Decision, Error, EventContext, EventHandler, EventHandlerOptions,
    EventType, FilterContext, FilterOptions, HandledEvent, HandlerError, Subscription,
    SubscriptionFailure, SubscriptionState,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const PATIENCE: Duration = Duration::from_secs(30);
const PRODUCER: MicroserviceId = MicroserviceId(Uuid::from_u128(0xe4e4_0001));
const CONSUMER: MicroserviceId = MicroserviceId(Uuid::from_u128(0xe4e4_0002));
const PUBLIC_STREAM: Uuid = Uuid::from_u128(0xe4e4_0003);
const CONSENT: ConsentId = ConsentId(Uuid::from_u128(0xe4e4_0004));
const SCOPE: ScopeId = ScopeId(Uuid::from_u128(0xe4e4_0005));

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "e4e40000-0000-4000-8000-000000000006")]
struct OrderPlaced {
    dish: String,
}

/// A Runtime in this process: its private and public addresses and a way to stop it.
struct Node {
    private: String,
    public_port: u16,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(
        folder: &Path,
        microservice: MicroserviceId,
        files: &[(&str, serde_json::Value)],
    ) -> Self {
        let config_folder = folder.join(".dolittle");
        std::fs::create_dir_all(&config_folder).expect("create .dolittle");
        std::fs::write(
            config_folder.join("tenants.json"),
            serde_json::json!({ TenantId::DEVELOPMENT.to_string(): {} }).to_string(),
        )
        .expect("write tenants.json");
        for (name, content) in files {
            std::fs::write(config_folder.join(name), content.to_string()).expect("write file");
        }
        let config = RuntimeConfig::load(Overrides {
            working_dir: Some(folder.to_owned()),
            microservice: Some(microservice.to_string()),
            ..Overrides::default()
        })
        .expect("configuration loads");
        let tenants = Tenants::open(&config.tenants).await.expect("stores open");
        let private = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", private.local_addr().expect("address"));
        let public_port = public.local_addr().expect("address").port();
        let context = RuntimeContext::new(config, tenants);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                private,
                public: Some(public),
                metrics: None,
                management: None,
            };
            dolittle_runtime::run(context, listeners, async move {
                let _ = stopped.await;
            })
            .await
            .expect("runtime runs");
        });
        Self {
            private: address,
            public_port,
            stop,
            task,
        }
    }

    async fn client(&self, microservice: MicroserviceId) -> Client {
        self.builder(microservice)
            .connect()
            .await
            .expect("client connects")
    }

    fn builder(&self, microservice: MicroserviceId) -> ClientBuilder {
        Client::builder()
            .microservice(microservice)
            .runtime(self.private.as_str())
            .backoff(dolittle_sdk::Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(500),
            ))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("runtime stops in time")
            .expect("runtime task");
    }
}

struct Kitchen {
    seen: mpsc::UnboundedSender<(String, EventContext)>,
}

impl EventHandler for Kitchen {
    type Events = OrderPlaced;

    async fn handle(
        &self,
        event: HandledEvent<OrderPlaced>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if let HandledEvent::Known(order) = event {
            let _ = self.seen.send((order.dish, context));
        }
        Ok(())
    }
}

fn subscription(partition: &str) -> Subscription {
    Subscription {
        producer_microservice: PRODUCER,
        producer_tenant: TenantId::DEVELOPMENT,
        stream: StreamId(PUBLIC_STREAM),
        partition: partition.into(),
        scope: SCOPE,
    }
}

#[tokio::test]
async fn public_events_of_a_producer_reach_a_consumer_handler_in_the_subscribed_scope() {
    let producer_folder = tempfile::tempdir().expect("folder");
    let consumer_folder = tempfile::tempdir().expect("folder");
    let consents = serde_json::json!({
        TenantId::DEVELOPMENT.to_string(): [{
            "microservice": CONSUMER.to_string(),
            "tenant": TenantId::DEVELOPMENT.to_string(),
            "stream": PUBLIC_STREAM.to_string(),
            "partition": "orders",
            "consent": CONSENT.to_string(),
        }]
    });
    let producer = Node::start(
        producer_folder.path(),
        PRODUCER,
        &[("event-horizon-consents.json", consents)],
    )
    .await;
    let microservices = serde_json::json!({
        PRODUCER.to_string(): {"host": "127.0.0.1", "port": producer.public_port}
    });
    let consumer = Node::start(
        consumer_folder.path(),
        CONSUMER,
        &[("microservices.json", microservices)],
    )
    .await;
    let producing = producer.client(PRODUCER).await;
    let consuming = consumer.client(CONSUMER).await;

    let filter = producing.register_filter(
        FilterOptions::public(EventProcessorId(PUBLIC_STREAM)),
        |_: CommittedEvent, _: FilterContext| async {
            Ok::<_, HandlerError>(Decision::include_in("orders"))
        },
    );
    let (seen, mut received) = mpsc::unbounded_channel();
    let handler = consuming.register_event_handler(
        EventHandlerOptions::new(EventProcessorId(Uuid::from_u128(0xe4e4_0007)))
            .in_scope(SCOPE)
            .partitioned(false),
        Kitchen { seen },
    );
    for handle in [&filter, &handler] {
        tokio::time::timeout(PATIENCE, handle.registered())
            .await
            .expect("registered in time")
            .expect("registered");
    }
    let store = producing.event_store(TenantId::DEVELOPMENT);
    store
        .commit_public(
            &OrderPlaced {
                dish: "Taco".into(),
            },
            "table 1",
        )
        .await
        .expect("commit");
    store
        .commit(
            &OrderPlaced {
                dish: "Secret sauce".into(),
            },
            "table 1",
        )
        .await
        .expect("commit");
    store
        .commit_public(
            &OrderPlaced {
                dish: "Burrito".into(),
            },
            "table 2",
        )
        .await
        .expect("commit");

    let horizon = consuming.event_horizon(TenantId::DEVELOPMENT);
    let refused = horizon.subscribe(subscription("no consent here")).await;
    let consent = horizon
        .subscribe(subscription("orders"))
        .await
        .expect("subscribed");

    assert_eq!(consent, CONSENT);
    assert!(
        matches!(refused, Err(Error::Runtime { id, .. }) if id == failure_ids::MISSING_CONSENT),
        "{refused:?}"
    );
    let (first, first_context) = next(&mut received).await;
    let (second, _) = next(&mut received).await;
    assert_eq!(
        [first.as_str(), second.as_str()],
        ["Taco", "Burrito"],
        "only public events cross"
    );
    assert_eq!(first_context.scope, SCOPE);
    assert_eq!(first_context.event_source.as_str(), "table 1");
    assert_eq!(first_context.tenant, TenantId::DEVELOPMENT);

    consuming.shutdown().await;
    producing.shutdown().await;
    consumer.stop().await;
    producer.stop().await;
}

async fn next(
    received: &mut mpsc::UnboundedReceiver<(String, EventContext)>,
) -> (String, EventContext) {
    tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("an event crossed in time")
        .expect("channel open")
}

fn consents(partitions: &[&str]) -> serde_json::Value {
    let consents: Vec<_> = partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            serde_json::json!({
                "microservice": CONSUMER.to_string(),
                "tenant": TenantId::DEVELOPMENT.to_string(),
                "stream": PUBLIC_STREAM.to_string(),
                "partition": partition,
                "consent": Uuid::from_u128(CONSENT.0.as_u128() + index as u128).to_string(),
            })
        })
        .collect();
    serde_json::json!({ TenantId::DEVELOPMENT.to_string(): consents })
}

type Outcome = (
    TenantId,
    Subscription,
    Result<ConsentId, SubscriptionFailure>,
);

/// A builder with one subscription of the development tenant per partition, all reporting to
/// one channel.
fn subscribing(
    builder: ClientBuilder,
    subscriptions: &[Subscription],
    outcomes: &mpsc::UnboundedSender<Outcome>,
) -> ClientBuilder {
    builder.event_horizons(|horizons| {
        subscriptions.iter().fold(horizons, |horizons, wanted| {
            let (succeeded, failed) = (outcomes.clone(), outcomes.clone());
            horizons.for_tenant(TenantId::DEVELOPMENT, |subscriptions| {
                subscriptions
                    .from_producer_microservice(wanted.producer_microservice)
                    .from_producer_tenant(wanted.producer_tenant)
                    .from_producer_stream(wanted.stream)
                    .from_producer_partition(wanted.partition.clone())
                    .to_scope(wanted.scope)
                    .on_success(move |tenant, subscription, consent| {
                        let _ = succeeded.send((tenant, subscription.clone(), Ok(consent)));
                    })
                    .on_failure(move |tenant, subscription, failure| {
                        let _ = failed.send((tenant, subscription.clone(), Err(failure.clone())));
                    })
            })
        })
    })
}

/// The outcomes reported to the callbacks, read per partition in the order they came.
struct Outcomes {
    receiver: mpsc::UnboundedReceiver<Outcome>,
    not_yet_read: Vec<Outcome>,
}

impl Outcomes {
    fn new(receiver: mpsc::UnboundedReceiver<Outcome>) -> Self {
        Self {
            receiver,
            not_yet_read: Vec::new(),
        }
    }

    /// The next outcome reported for `partition`.
    async fn next_of(&mut self, partition: &str) -> Outcome {
        if let Some(index) = self
            .not_yet_read
            .iter()
            .position(|outcome| outcome.1.partition.as_str() == partition)
        {
            return self.not_yet_read.remove(index);
        }
        loop {
            let outcome = tokio::time::timeout(PATIENCE, self.receiver.recv())
                .await
                .expect("an outcome in time")
                .expect("channel open");
            if outcome.1.partition.as_str() == partition {
                return outcome;
            }
            self.not_yet_read.push(outcome);
        }
    }

    /// Whether nothing more was reported within a short while.
    async fn stays_quiet(&mut self) -> bool {
        self.not_yet_read.is_empty()
            && tokio::time::timeout(Duration::from_millis(200), self.receiver.recv())
                .await
                .is_err()
    }
}

#[tokio::test]
async fn subscriptions_declared_on_the_builder_are_made_on_connect_and_their_events_handled_in_scope()
 {
    let producer_folder = tempfile::tempdir().expect("folder");
    let consumer_folder = tempfile::tempdir().expect("folder");
    let producer = Node::start(
        producer_folder.path(),
        PRODUCER,
        &[("event-horizon-consents.json", consents(&["orders"]))],
    )
    .await;
    let consumer = Node::start(
        consumer_folder.path(),
        CONSUMER,
        &[(
            "microservices.json",
            serde_json::json!({
                PRODUCER.to_string(): {"host": "127.0.0.1", "port": producer.public_port}
            }),
        )],
    )
    .await;
    let producing = producer.client(PRODUCER).await;
    let filter = producing.register_filter(
        FilterOptions::public(EventProcessorId(PUBLIC_STREAM)),
        |_: CommittedEvent, _: FilterContext| async {
            Ok::<_, HandlerError>(Decision::include_in("orders"))
        },
    );
    tokio::time::timeout(PATIENCE, filter.registered())
        .await
        .expect("registered in time")
        .expect("registered");
    producing
        .event_store(TenantId::DEVELOPMENT)
        .commit_public(
            &OrderPlaced {
                dish: "Taco".into(),
            },
            "table 1",
        )
        .await
        .expect("commit");

    let (outcome_sender, outcomes) = mpsc::unbounded_channel();
    let mut outcomes = Outcomes::new(outcomes);
    let consuming = subscribing(
        consumer.builder(CONSUMER),
        &[subscription("orders")],
        &outcome_sender,
    )
    .connect()
    .await
    .expect("client connects");
    let (seen, mut received) = mpsc::unbounded_channel();
    let handler = consuming.register_event_handler(
        EventHandlerOptions::new(EventProcessorId(Uuid::from_u128(0xe4e4_0008)))
            .in_scope(SCOPE)
            .partitioned(false),
        Kitchen { seen },
    );
    let (tenant, subscribed_to, outcome) = outcomes.next_of("orders").await;
    let handles = consuming.event_horizon_subscriptions();
    let consent = tokio::time::timeout(PATIENCE, handles[0].subscribed())
        .await
        .expect("subscribed in time")
        .expect("subscribed");
    let (before, _) = next(&mut received).await;
    producing
        .event_store(TenantId::DEVELOPMENT)
        .commit_public(
            &OrderPlaced {
                dish: "Burrito".into(),
            },
            "table 2",
        )
        .await
        .expect("commit");
    let (after, context) = next(&mut received).await;
    let outcomes_of_handle: Vec<_> = handles[0].outcomes().collect().await;

    assert_eq!(tenant, TenantId::DEVELOPMENT);
    assert_eq!(subscribed_to, subscription("orders"));
    assert_eq!(outcome, Ok(CONSENT));
    assert_eq!(consent, CONSENT);
    assert_eq!(handles.len(), 1);
    assert_eq!(handles[0].tenant(), TenantId::DEVELOPMENT);
    assert_eq!(handles[0].subscription(), &subscription("orders"));
    assert_eq!(
        handles[0].state(),
        SubscriptionState::Subscribed { consent: CONSENT }
    );
    assert_eq!(
        outcomes_of_handle,
        [SubscriptionState::Subscribed { consent: CONSENT }],
        "the stream of outcomes ends after the success"
    );
    assert_eq!(
        [before.as_str(), after.as_str()],
        ["Taco", "Burrito"],
        "events committed before and after the subscription cross"
    );
    assert_eq!(context.scope, SCOPE);
    assert!(handler.registrations() >= 1);
    assert!(
        outcomes.stays_quiet().await,
        "a subscription is not asked for again after its success"
    );

    consuming.shutdown().await;
    producing.shutdown().await;
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test]
async fn refused_builder_subscriptions_reach_the_app_with_the_runtimes_failure_and_are_asked_again()
{
    let producer_folder = tempfile::tempdir().expect("folder");
    let consumer_folder = tempfile::tempdir().expect("folder");
    let producer = Node::start(
        producer_folder.path(),
        PRODUCER,
        &[("event-horizon-consents.json", consents(&["orders"]))],
    )
    .await;
    let unknown_producer = MicroserviceId(Uuid::from_u128(0xe4e4_0010));
    let unreachable_producer = MicroserviceId(Uuid::from_u128(0xe4e4_0011));
    let unreachable_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let consumer = Node::start(
        consumer_folder.path(),
        CONSUMER,
        &[(
            "microservices.json",
            serde_json::json!({
                PRODUCER.to_string(): {"host": "127.0.0.1", "port": producer.public_port},
                unreachable_producer.to_string(): {"host": "127.0.0.1", "port": unreachable_port},
            }),
        )],
    )
    .await;
    let producing = producer.client(PRODUCER).await;
    let filter = producing.register_filter(
        FilterOptions::public(EventProcessorId(PUBLIC_STREAM)),
        |_: CommittedEvent, _: FilterContext| async {
            Ok::<_, HandlerError>(Decision::include_in("drinks"))
        },
    );
    tokio::time::timeout(PATIENCE, filter.registered())
        .await
        .expect("registered in time")
        .expect("registered");

    let no_consent = subscription("drinks");
    let unknown = Subscription {
        producer_microservice: unknown_producer,
        ..subscription("unknown")
    };
    let unreachable = Subscription {
        producer_microservice: unreachable_producer,
        ..subscription("unreachable")
    };
    let (outcome_sender, outcomes) = mpsc::unbounded_channel();
    let mut outcomes = Outcomes::new(outcomes);
    let panicking_calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = panicking_calls.clone();
    let builder = subscribing(
        consumer.builder(CONSUMER),
        &[no_consent.clone(), unknown.clone(), unreachable.clone()],
        &outcome_sender,
    )
    .event_horizons(|horizons| {
        horizons.for_tenant(TenantId::DEVELOPMENT, |subscriptions| {
            subscriptions
                .subscription(subscription("panicking callback"))
                .on_failure(move |_, _, _| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    panic!("the application's callback failed");
                })
        })
    });
    let consuming = builder.connect().await.expect("client connects");

    let (_, refused, missing_consent) = outcomes.next_of("drinks").await;
    let (_, _, missing_producer) = outcomes.next_of("unknown").await;
    let (_, _, unreachable_failure) = outcomes.next_of("unreachable").await;
    let (_, _, asked_again) = outcomes.next_of("unreachable").await;
    let handles = consuming.event_horizon_subscriptions();
    let mut panicking_outcomes = Box::pin(handles[3].outcomes());
    let mut panicking_attempts = Vec::new();
    while panicking_attempts.len() < 2 {
        let outcome = tokio::time::timeout(PATIENCE, panicking_outcomes.next())
            .await
            .expect("an outcome in time")
            .expect("outcomes go on");
        if let SubscriptionState::Failed(failure) = outcome {
            panicking_attempts.push(failure.attempts);
        }
    }

    let missing_consent = missing_consent.expect_err("refused");
    assert_eq!(refused, no_consent);
    assert_eq!(
        missing_consent.failure_id,
        Some(failure_ids::MISSING_CONSENT)
    );
    assert!(
        missing_consent.reason.contains("drinks"),
        "{}",
        missing_consent.reason
    );
    assert_eq!(missing_consent.attempts, 1);
    let missing_producer = missing_producer.expect_err("refused");
    assert_eq!(
        missing_producer.failure_id,
        Some(failure_ids::MISSING_MICROSERVICE_CONFIGURATION)
    );
    assert!(
        missing_producer
            .reason
            .contains(&unknown_producer.to_string()),
        "{}",
        missing_producer.reason
    );
    let unreachable_failure = unreachable_failure.expect_err("refused");
    assert_eq!(
        unreachable_failure.failure_id,
        Some(failure_ids::COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME)
    );
    assert!(
        unreachable_failure
            .reason
            .contains(&unreachable_port.to_string()),
        "{}",
        unreachable_failure.reason
    );
    let asked_again = asked_again.expect_err("still refused");
    assert_eq!(
        asked_again.attempts, 2,
        "the SDK asks again after a refusal"
    );
    assert!(asked_again.retry_in >= unreachable_failure.retry_in);
    assert!(
        matches!(handles[1].state(), SubscriptionState::Failed(failure) if failure.failure_id == Some(failure_ids::MISSING_MICROSERVICE_CONFIGURATION))
    );
    assert!(
        panicking_attempts.windows(2).all(|pair| pair[0] < pair[1]),
        "a panicking callback does not stop the retries: {panicking_attempts:?}"
    );
    assert!(panicking_calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // The producer grants the consent without a restart: the next attempt is accepted.
    std::fs::write(
        producer_folder
            .path()
            .join(".dolittle")
            .join("event-horizon-consents.json"),
        consents(&["orders", "drinks"]).to_string(),
    )
    .expect("write consents");
    let granted = loop {
        match outcomes.next_of("drinks").await {
            (_, _, Ok(consent)) => break consent,
            (_, _, Err(failure)) => {
                assert_eq!(failure.failure_id, Some(failure_ids::MISSING_CONSENT));
            }
        }
    };
    assert_eq!(granted, ConsentId(Uuid::from_u128(CONSENT.0.as_u128() + 1)));
    assert_eq!(
        tokio::time::timeout(PATIENCE, handles[0].subscribed())
            .await
            .expect("in time")
            .expect("subscribed"),
        granted
    );

    let unreachable_handle = handles[2].clone();
    consuming.shutdown().await;

    assert_eq!(unreachable_handle.state(), SubscriptionState::Stopped);
    assert!(matches!(
        unreachable_handle.subscribed().await,
        Err(Error::ShutDown)
    ));
    producing.shutdown().await;
    consumer.stop().await;
    producer.stop().await;
}
