//! Filters through the SDK against a real Runtime: the streams they write, checked in the
//! Runtime's own store.

mod common;

use common::{TestRuntime, next, stream_when_it_has};
use dolittle_sdk::types::{CommittedEvent, EventProcessorId, StreamId, TenantId, Uuid};
use dolittle_sdk::{Decision, EventType, FilterContext, FilterOptions, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "c0ffee00-0000-4000-8000-000000000001")]
struct DishPrepared {
    dish: String,
    chef: String,
}

const PRIVATE: Uuid = Uuid::from_u128(0xf1000000_0000_4000_8000_000000000001);
const PARTITIONED: Uuid = Uuid::from_u128(0xf1000000_0000_4000_8000_000000000002);
const PUBLIC: Uuid = Uuid::from_u128(0xf1000000_0000_4000_8000_000000000003);

fn dish(dish: &str, chef: &str) -> DishPrepared {
    DishPrepared {
        dish: dish.into(),
        chef: chef.into(),
    }
}

fn read(content: &str) -> DishPrepared {
    serde_json::from_str(content).expect("json")
}

async fn tacos_only(event: CommittedEvent, _: FilterContext) -> Result<Decision, HandlerError> {
    let dish: DishPrepared = serde_json::from_str(&event.content)?;
    Ok(if dish.dish.contains("Taco") {
        Decision::include()
    } else {
        Decision::Exclude
    })
}

#[tokio::test]
async fn filters_write_private_partitioned_and_public_streams() {
    let runtime = TestRuntime::start().await;
    let client = &runtime.client;
    let (public_seen, mut public_calls) = mpsc::unbounded_channel();
    let handles = [
        client.register_filter(
            FilterOptions::private(EventProcessorId(PRIVATE)),
            tacos_only,
        ),
        client.register_filter(
            FilterOptions::private(EventProcessorId(PARTITIONED)).partitioned(),
            |event: CommittedEvent, _: FilterContext| async move {
                let dish: DishPrepared = serde_json::from_str(&event.content)?;
                Ok::<_, HandlerError>(Decision::include_in(dish.chef))
            },
        ),
        client.register_filter(
            FilterOptions::public(EventProcessorId(PUBLIC)),
            move |event: CommittedEvent, context: FilterContext| {
                let _ = public_seen.send((event.public, context.tenant));
                async move { Ok::<_, HandlerError>(Decision::include_in("everything public")) }
            },
        ),
    ];
    for handle in &handles {
        tokio::time::timeout(common::PATIENCE, handle.registered())
            .await
            .expect("registered in time")
            .expect("registered");
    }
    let store = client.event_store(TenantId::DEVELOPMENT);

    store
        .commit(&dish("Bean Blaster Taco", "Mr. Taco"), "kitchen")
        .await
        .expect("commit");
    store
        .commit_public(&dish("Avocado Artillery", "Remy"), "kitchen")
        .await
        .expect("commit");
    store
        .commit(&dish("Taco Tuesday", "Remy"), "kitchen")
        .await
        .expect("commit");

    let private = stream_when_it_has(&runtime, TenantId::DEVELOPMENT, StreamId(PRIVATE), 2).await;
    let dishes: Vec<_> = private
        .iter()
        .map(|(_, content)| read(content).dish)
        .collect();
    assert_eq!(dishes, ["Bean Blaster Taco", "Taco Tuesday"]);

    let partitioned =
        stream_when_it_has(&runtime, TenantId::DEVELOPMENT, StreamId(PARTITIONED), 3).await;
    let partitions: Vec<_> = partitioned
        .iter()
        .map(|(partition, content)| (partition.as_str(), read(content).chef))
        .collect();
    assert_eq!(
        partitions,
        [
            ("Mr. Taco", "Mr. Taco".to_owned()),
            ("Remy", "Remy".to_owned()),
            ("Remy", "Remy".to_owned())
        ]
    );

    let public = stream_when_it_has(&runtime, TenantId::DEVELOPMENT, StreamId(PUBLIC), 1).await;
    assert_eq!(public.len(), 1);
    assert_eq!(public[0].0, "everything public");
    assert_eq!(read(&public[0].1).dish, "Avocado Artillery");
    assert_eq!(
        next(&mut public_calls).await,
        (true, TenantId::DEVELOPMENT),
        "the public filter only sees public events"
    );
    assert!(public_calls.try_recv().is_err());
    runtime.stop().await;
}
