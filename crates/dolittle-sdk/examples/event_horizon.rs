//! Two microservices, each with its own Runtime, sharing events over the event horizon. One
//! command starts everything:
//!
//!     cargo run -p dolittle-sdk --features in-process --example event_horizon
//!
//! * The kitchen (the producer) runs a Runtime in this process with its public endpoint on a
//!   free loopback port, and an `event-horizon-consents.json` that lets the delivery
//!   microservice's development tenant read partition `orders` of its public stream. Its head
//!   registers a public filter that puts public events into that partition, and commits orders
//!   as public events and a recipe as a private one, which never leaves the kitchen.
//! * The delivery (the consumer) runs its own Runtime in this process, with a
//!   `microservices.json` that says where the kitchen's public endpoint is. Its head declares
//!   the subscription on the client builder, into the scope `DELIVERY_SCOPE`, and registers an
//!   event handler in that scope that prints every order it receives.
//!
//! The Runtimes keep their data and configuration in their own folders under a temporary
//! folder. The example ends with exit code 0 once the delivery has received the three orders in
//! order (one committed before it subscribed, two after), and with an error if they do not
//! arrive within 30 s or anything else arrives.

use std::path::Path;
use std::time::Duration;

use dolittle_sdk::types::{
    CommittedEvent, ConsentId, EventProcessorId, MicroserviceId, ScopeId, StreamId, TenantId,
};
use dolittle_sdk::{
    Client, Decision, EventContext, EventHandler, EventHandlerOptions, EventType, FilterContext,
    FilterOptions, HandledEvent, HandlerError, uuid,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

const KITCHEN: MicroserviceId = MicroserviceId(uuid!("3f2c2b7e-6a0d-4c59-9f3e-1b7d4f0a8c21"));
const DELIVERY: MicroserviceId = MicroserviceId(uuid!("9a41d6c3-2e85-4b7f-a3d0-5c6e8f1b2d34"));
/// The kitchen's public filter, and so the id of its public stream.
const PUBLIC_ORDERS: EventProcessorId =
    EventProcessorId(uuid!("c7e5a3b1-4d2f-4e6a-8b9c-0d1e2f3a4b5c"));
const ORDERS_PARTITION: &str = "orders";
const CONSENT: ConsentId = ConsentId(uuid!("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"));
/// The scope of the delivery's event log that receives the kitchen's orders.
const DELIVERY_SCOPE: ScopeId = ScopeId(uuid!("e1d2c3b4-a5f6-4789-9abc-def012345678"));
const DISPATCHER: EventProcessorId =
    EventProcessorId(uuid!("0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"));
const PATIENCE: Duration = Duration::from_secs(30);

type Failure = Box<dyn std::error::Error>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "7c1e9a52-3b4d-4f6e-8a0b-2c3d4e5f6a7b")]
struct OrderPlaced {
    order: String,
    dish: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "7c1e9a52-3b4d-4f6e-8a0b-2c3d4e5f6a7c")]
struct RecipeChanged {
    dish: String,
    secret_ingredient: String,
}

/// The delivery's event handler in the scope of the kitchen's orders.
struct Dispatcher {
    received: mpsc::UnboundedSender<OrderPlaced>,
}

impl EventHandler for Dispatcher {
    type Events = OrderPlaced;

    async fn handle(
        &self,
        event: HandledEvent<OrderPlaced>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if let HandledEvent::Known(order) = event {
            println!(
                "  [delivery]  received order {} ({}) from {} in scope {}",
                order.order, order.dish, context.event_source, context.scope
            );
            let _ = self.received.send(order);
        }
        Ok(())
    }
}

fn order(order: &str, dish: &str) -> OrderPlaced {
    OrderPlaced {
        order: order.to_owned(),
        dish: dish.to_owned(),
    }
}

/// Writes a configuration file into a microservice's `.dolittle` folder.
fn write_config(
    microservice_folder: &Path,
    name: &str,
    content: serde_json::Value,
) -> Result<(), Failure> {
    let folder = microservice_folder.join(".dolittle");
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join(name), serde_json::to_string_pretty(&content)?)?;
    Ok(())
}

async fn within<T, E: Into<Failure>>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(format!("{what} did not happen within {PATIENCE:?}").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let folder = tempfile::tempdir()?;
    let kitchen_folder = folder.path().join("kitchen");
    let delivery_folder = folder.path().join("delivery");
    let tenant = TenantId::DEVELOPMENT;

    // The producer: its consent for the delivery, then its Runtime with a public endpoint.
    write_config(
        &kitchen_folder,
        "event-horizon-consents.json",
        serde_json::json!({
            tenant.to_string(): [{
                "microservice": DELIVERY.to_string(),
                "tenant": tenant.to_string(),
                "stream": PUBLIC_ORDERS.to_string(),
                "partition": ORDERS_PARTITION,
                "consent": CONSENT.to_string(),
            }]
        }),
    )?;
    let kitchen = Client::builder()
        .microservice(KITCHEN)
        .in_process_public_endpoint("127.0.0.1:0")
        .start_in_process(&kitchen_folder, &[tenant])
        .await?;
    let kitchen_public = kitchen
        .in_process_public_address()
        .ok_or("the kitchen's Runtime has no public endpoint")?;
    println!(
        "kitchen Runtime: private {}, public {kitchen_public}",
        kitchen.runtime_address()
    );

    let public_filter = kitchen.register_filter(
        FilterOptions::public(PUBLIC_ORDERS),
        |_: CommittedEvent, _: FilterContext| async {
            Ok::<_, HandlerError>(Decision::include_in(ORDERS_PARTITION))
        },
    );
    within(
        "the public filter's registration",
        public_filter.registered(),
    )
    .await?;
    let kitchen_events = kitchen.event_store(tenant);
    kitchen_events
        .commit_public(&order("A-1", "Bean Blaster Taco"), "table 1")
        .await?;
    println!("  [kitchen]   order A-1 committed as a public event");
    let recipe = RecipeChanged {
        dish: "Bean Blaster Taco".into(),
        secret_ingredient: "smoked paprika".into(),
    };
    kitchen_events.commit(&recipe, "recipes").await?;
    println!("  [kitchen]   a recipe committed as a private event (it stays in the kitchen)");

    // The consumer: where the kitchen is, then its Runtime and a head that subscribes.
    write_config(
        &delivery_folder,
        "microservices.json",
        serde_json::json!({
            KITCHEN.to_string(): {"host": "127.0.0.1", "port": kitchen_public.port()}
        }),
    )?;
    let delivery = Client::builder()
        .microservice(DELIVERY)
        .event_horizons(|horizons| {
            horizons.for_tenant(tenant, |subscriptions| {
                subscriptions
                    .from_producer_microservice(KITCHEN)
                    .from_producer_tenant(tenant)
                    .from_producer_stream(StreamId(PUBLIC_ORDERS.0))
                    .from_producer_partition(ORDERS_PARTITION)
                    .to_scope(DELIVERY_SCOPE)
                    .on_success(|_, subscription, consent| {
                        println!(
                            "  [delivery]  subscribed to partition {} of the kitchen's public stream, consent {consent}",
                            subscription.partition
                        );
                    })
                    .on_failure(|_, _, failure| {
                        eprintln!(
                            "  [delivery]  subscription refused ({:?}): {}; asking again in {:?}",
                            failure.failure_id, failure.reason, failure.retry_in
                        );
                    })
            })
        })
        .start_in_process(&delivery_folder, &[tenant])
        .await?;
    println!("delivery Runtime: private {}", delivery.runtime_address());

    let (received, mut orders) = mpsc::unbounded_channel();
    let dispatcher = delivery.register_event_handler(
        EventHandlerOptions::new(DISPATCHER)
            .in_scope(DELIVERY_SCOPE)
            .partitioned(false),
        Dispatcher { received },
    );
    within("the dispatcher's registration", dispatcher.registered()).await?;
    let subscription = delivery
        .event_horizon_subscriptions()
        .first()
        .ok_or("the subscription was not declared")?;
    let consent = within("the subscription", subscription.subscribed()).await?;
    if consent != CONSENT {
        return Err(format!("the subscription got consent {consent}, not {CONSENT}").into());
    }

    kitchen_events
        .commit_public(&order("A-2", "Avocado Artillery"), "table 2")
        .await?;
    kitchen_events
        .commit_public(&order("A-3", "Quesadilla"), "table 1")
        .await?;
    println!("  [kitchen]   orders A-2 and A-3 committed as public events");

    let expected = [
        order("A-1", "Bean Blaster Taco"),
        order("A-2", "Avocado Artillery"),
        order("A-3", "Quesadilla"),
    ];
    for wanted in &expected {
        let got = within("an order's delivery", async {
            orders.recv().await.ok_or("the dispatcher stopped")
        })
        .await?;
        if &got != wanted {
            return Err(format!("expected {wanted:?}, received {got:?}").into());
        }
    }

    delivery.shutdown().await;
    kitchen.shutdown().await;
    println!("the delivery received every public order of the kitchen, in order");
    Ok(())
}
