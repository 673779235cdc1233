//! Projections through the SDK against a real Runtime: read models per key from `on`, key
//! selectors, deletes, typed GetOne and GetAll.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{PATIENCE, SECOND_TENANT, TestRuntime};
use dolittle_sdk::types::{EventProcessorId, EventType as EventTypeKey, TenantId, Uuid};
use dolittle_sdk::{
    EventType, Events, KeySelector, Outcome, Projection, ProjectionContext, ProjectionStore,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "9e0d0000-0000-4000-8000-000000000001")]
struct DishPrepared {
    dish: String,
    chef: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "9e0d0000-0000-4000-8000-000000000002")]
struct ChefRetired {
    chef: String,
}

#[derive(Debug, Clone, PartialEq, Events)]
enum ChefEvent {
    DishPrepared(DishPrepared),
    ChefRetired(ChefRetired),
}

/// The dishes each chef prepared, keyed by the `chef` property.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct DishesOfChef {
    chef: String,
    dishes: BTreeMap<String, u32>,
}

impl Projection for DishesOfChef {
    const ID: EventProcessorId = EventProcessorId(Uuid::from_u128(0x9e0d_0001));
    type Events = ChefEvent;

    fn key_selector(_: EventTypeKey) -> KeySelector {
        KeySelector::Property("chef".into())
    }

    fn on(&mut self, event: ChefEvent, context: &ProjectionContext) -> Outcome {
        match event {
            ChefEvent::DishPrepared(prepared) => {
                assert_eq!(context.key, prepared.chef);
                self.chef = prepared.chef;
                *self.dishes.entry(prepared.dish).or_default() += 1;
                Outcome::Replace
            }
            ChefEvent::ChefRetired(_) => Outcome::Delete,
        }
    }
}

/// How many dishes each kitchen (event source) prepared.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct KitchenTally {
    prepared: u32,
    first_was_initial: bool,
}

impl Projection for KitchenTally {
    const ID: EventProcessorId = EventProcessorId(Uuid::from_u128(0x9e0d_0002));
    type Events = DishPrepared;

    fn on(&mut self, _: DishPrepared, context: &ProjectionContext) -> Outcome {
        if self.prepared == 0 {
            self.first_was_initial = context.created_from_initial_state;
        }
        self.prepared += 1;
        Outcome::Replace
    }
}

fn prepared(dish: &str, chef: &str) -> DishPrepared {
    DishPrepared {
        dish: dish.into(),
        chef: chef.into(),
    }
}

/// Reads every read model until `done` holds, failing the test if it never does.
async fn all_when<P: Projection>(
    store: &ProjectionStore,
    done: impl Fn(&BTreeMap<String, P>) -> bool,
) -> BTreeMap<String, P> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let all = store.get_all::<P>().await.expect("get all");
            if done(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the projection caught up in time")
}

#[tokio::test]
async fn projections_keep_typed_read_models_per_key() {
    let runtime = TestRuntime::start().await;
    let client = &runtime.client;
    for handle in [
        client.register_projection::<DishesOfChef>(),
        client.register_projection::<KitchenTally>(),
    ] {
        tokio::time::timeout(PATIENCE, handle.registered())
            .await
            .expect("registered in time")
            .expect("registered");
    }
    let events = client.event_store(TenantId::DEVELOPMENT);
    events
        .commit(&prepared("Taco", "Mr. Taco"), "kitchen-1")
        .await
        .expect("commit");
    events
        .commit(&prepared("Taco", "Mr. Taco"), "kitchen-2")
        .await
        .expect("commit");
    events
        .commit(&prepared("Ratatouille", "Remy"), "kitchen-1")
        .await
        .expect("commit");
    events
        .commit(&prepared("Soup", "Gusteau"), "kitchen-2")
        .await
        .expect("commit");
    events
        .commit(
            &ChefRetired {
                chef: "Gusteau".into(),
            },
            "kitchen-2",
        )
        .await
        .expect("commit");
    let projections = client.projections(TenantId::DEVELOPMENT);

    let chefs = all_when::<DishesOfChef>(&projections, |all| {
        all.len() == 2 && all.get("Remy").is_some()
    })
    .await;
    let kitchens = all_when::<KitchenTally>(&projections, |all| {
        all.values().map(|tally| tally.prepared).sum::<u32>() == 4
    })
    .await;

    assert_eq!(
        chefs.get("Mr. Taco").map(|chef| chef.dishes.clone()),
        Some(BTreeMap::from([("Taco".to_owned(), 2)]))
    );
    assert!(!chefs.contains_key("Gusteau"), "retired chefs are deleted");
    let one = projections
        .get::<DishesOfChef>("Remy")
        .await
        .expect("get one");
    assert_eq!(one.dishes, BTreeMap::from([("Ratatouille".to_owned(), 1)]));
    let nobody = projections
        .get::<DishesOfChef>("nobody")
        .await
        .expect("get one");
    assert_eq!(
        nobody,
        DishesOfChef::default(),
        "an unknown key is the initial state"
    );
    assert_eq!(
        kitchens.get("kitchen-1"),
        Some(&KitchenTally {
            prepared: 2,
            first_was_initial: true
        })
    );
    assert!(
        projections
            .get_all::<KitchenTally>()
            .await
            .expect("get all")
            .len()
            == 2
    );
    let other_tenant = client
        .projections(SECOND_TENANT)
        .get_all::<KitchenTally>()
        .await
        .expect("get all");
    assert!(
        other_tenant.is_empty(),
        "tenants have their own read models"
    );
    runtime.stop().await;
}
