//! The event horizon through the SDK: a producer head's public filter writes a public stream, a
//! consumer head subscribes its tenant to a partition of it, and an event handler in the
//! consumer's scope gets the producer's public events. Two Runtimes on loopback.

use std::path::Path;
use std::time::Duration;

use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_sdk::types::{
    CommittedEvent, ConsentId, EventProcessorId, MicroserviceId, ScopeId, StreamId, TenantId, Uuid,
};
use dolittle_sdk::{
    Client, Decision, Error, EventContext, EventHandler, EventHandlerOptions, EventType,
    FilterContext, FilterOptions, HandledEvent, HandlerError, Subscription,
};
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
        Client::builder()
            .microservice(microservice)
            .runtime(self.private.as_str())
            .backoff(dolittle_sdk::Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(500),
            ))
            .connect()
            .await
            .expect("client connects")
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
        matches!(refused, Err(Error::Runtime { id, .. }) if id == dolittle_contracts::failure_ids::MISSING_CONSENT),
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
