//! The kitchen of the Dolittle concepts documents: a Kitchen aggregate that enforces the rules of
//! concepts §10 (a dish must be on the menu, the inventory must hold its ingredients, an
//! available chef prepares it), an event handler that announces prepared dishes, and a projection
//! of the dishes each chef prepared.
//!
//! Against a running Runtime (`cargo run -p dolittle-runtime`, private port 50053):
//!
//!     cargo run -p dolittle-sdk --example kitchen
//!
//! With a Runtime inside the example's own process instead:
//!
//!     cargo run -p dolittle-sdk --example kitchen --features in-process -- --in-process
//!
//! Set `DOLITTLE_RUNTIME` to use another address than `http://127.0.0.1:50053`.

use std::collections::BTreeMap;
use std::time::Duration;

use dolittle_sdk::types::{AggregateRootId, EventProcessorId, EventType as EventTypeKey, TenantId};
use dolittle_sdk::{
    AggregateError, AggregateRoot, Applied, Client, EventContext, EventHandler,
    EventHandlerOptions, EventType, Events, HandledEvent, HandlerError, KeySelector, Outcome,
    Projection, ProjectionContext, uuid,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

// ---- Events ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "5b8ed2a4-7c4e-4c2e-9f7a-1d3b0f6e2a11")]
struct ChefHired {
    chef: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "5b8ed2a4-7c4e-4c2e-9f7a-1d3b0f6e2a12")]
struct DishAddedToMenu {
    dish: String,
    ingredients: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "5b8ed2a4-7c4e-4c2e-9f7a-1d3b0f6e2a13")]
struct IngredientRestocked {
    ingredient: String,
    amount: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "5b8ed2a4-7c4e-4c2e-9f7a-1d3b0f6e2a14")]
struct DishPrepared {
    dish: String,
    chef: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "5b8ed2a4-7c4e-4c2e-9f7a-1d3b0f6e2a15")]
struct ChefFinished {
    chef: String,
}

#[derive(Debug, Clone, Events)]
enum KitchenEvent {
    ChefHired(ChefHired),
    DishAddedToMenu(DishAddedToMenu),
    IngredientRestocked(IngredientRestocked),
    DishPrepared(DishPrepared),
    ChefFinished(ChefFinished),
}

// ---- The Kitchen aggregate ------------------------------------------------------------------

#[derive(Default)]
struct Kitchen {
    menu: BTreeMap<String, BTreeMap<String, u32>>,
    inventory: BTreeMap<String, u32>,
    /// Chefs in hiring order, and whether each is available.
    chefs: Vec<(String, bool)>,
    applied: Applied<KitchenEvent>,
}

#[derive(Debug, thiserror::Error)]
enum KitchenError {
    #[error("{0} is not on the menu")]
    DishNotOnMenu(String),
    #[error("{0} is not in the inventory")]
    IngredientNotInInventory(String),
    #[error("only {left} of {ingredient} left, {needed} needed")]
    InventoryOutOfIngredient {
        ingredient: String,
        left: u32,
        needed: u32,
    },
    #[error("no chef is available")]
    NoAvailableChefs,
}

impl Kitchen {
    fn hire_chef(&mut self, chef: &str) {
        if !self.chefs.iter().any(|(name, _)| name == chef) {
            self.apply(ChefHired { chef: chef.into() });
        }
    }

    fn add_to_menu(&mut self, dish: &str, ingredients: &[(&str, u32)]) {
        self.apply(DishAddedToMenu {
            dish: dish.into(),
            ingredients: ingredients
                .iter()
                .map(|(name, amount)| ((*name).to_owned(), *amount))
                .collect(),
        });
    }

    fn restock(&mut self, ingredient: &str, amount: u32) {
        self.apply(IngredientRestocked {
            ingredient: ingredient.into(),
            amount,
        });
    }

    /// The rules of concepts §10, then the event. Returns the chef who prepares it.
    fn prepare_dish(&mut self, dish: &str) -> Result<String, KitchenError> {
        let Some(ingredients) = self.menu.get(dish) else {
            return Err(KitchenError::DishNotOnMenu(dish.into()));
        };
        for (ingredient, needed) in ingredients {
            let Some(left) = self.inventory.get(ingredient) else {
                return Err(KitchenError::IngredientNotInInventory(ingredient.clone()));
            };
            if left < needed {
                return Err(KitchenError::InventoryOutOfIngredient {
                    ingredient: ingredient.clone(),
                    left: *left,
                    needed: *needed,
                });
            }
        }
        let Some((chef, _)) = self.chefs.iter().find(|(_, available)| *available) else {
            return Err(KitchenError::NoAvailableChefs);
        };
        let chef = chef.clone();
        self.apply(DishPrepared {
            dish: dish.into(),
            chef: chef.clone(),
        });
        Ok(chef)
    }

    fn finish(&mut self, chef: &str) {
        self.apply(ChefFinished { chef: chef.into() });
    }
}

impl AggregateRoot for Kitchen {
    const ID: AggregateRootId = AggregateRootId(uuid!("d9a9a9b6-3a53-4b7c-8e0e-2f7d6c5b4a31"));
    type Events = KitchenEvent;

    fn on(&mut self, event: &KitchenEvent) {
        match event {
            KitchenEvent::ChefHired(hired) => self.chefs.push((hired.chef.clone(), true)),
            KitchenEvent::DishAddedToMenu(added) => {
                self.menu
                    .insert(added.dish.clone(), added.ingredients.clone());
            }
            KitchenEvent::IngredientRestocked(restocked) => {
                *self
                    .inventory
                    .entry(restocked.ingredient.clone())
                    .or_default() += restocked.amount;
            }
            KitchenEvent::DishPrepared(prepared) => {
                if let Some(ingredients) = self.menu.get(&prepared.dish) {
                    for (ingredient, used) in ingredients {
                        if let Some(left) = self.inventory.get_mut(ingredient) {
                            *left = left.saturating_sub(*used);
                        }
                    }
                }
                self.set_available(&prepared.chef, false);
            }
            KitchenEvent::ChefFinished(finished) => self.set_available(&finished.chef, true),
        }
    }

    fn applied(&mut self) -> &mut Applied<KitchenEvent> {
        &mut self.applied
    }
}

impl Kitchen {
    fn set_available(&mut self, chef: &str, available: bool) {
        for (name, is_available) in &mut self.chefs {
            if name == chef {
                *is_available = available;
            }
        }
    }
}

// ---- An event handler -----------------------------------------------------------------------

/// Announces every prepared dish of this run's kitchen.
struct Announcer {
    kitchen: String,
    announced: mpsc::UnboundedSender<String>,
}

impl EventHandler for Announcer {
    type Events = DishPrepared;

    async fn handle(
        &self,
        event: HandledEvent<DishPrepared>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if context.event_source.as_str() != self.kitchen {
            return Ok(());
        }
        if let HandledEvent::Known(prepared) = event {
            println!(
                "  [handler]    #{} {} prepared {}",
                context.sequence_number, prepared.chef, prepared.dish
            );
            let _ = self.announced.send(prepared.dish);
        }
        Ok(())
    }
}

// ---- A projection: the dishes each chef prepared ---------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
struct DishesOfChef {
    chef: String,
    dishes: BTreeMap<String, u32>,
}

impl Projection for DishesOfChef {
    const ID: EventProcessorId = EventProcessorId(uuid!("0767bc04-bc03-40b8-a0be-5f6c6130f68b"));
    type Events = DishPrepared;

    fn key_selector(_: EventTypeKey) -> KeySelector {
        KeySelector::Property("chef".into())
    }

    fn on(&mut self, event: DishPrepared, _: &ProjectionContext) -> Outcome {
        self.chef = event.chef;
        *self.dishes.entry(event.dish).or_default() += 1;
        Outcome::Replace
    }
}

// ---- The story ------------------------------------------------------------------------------

const EVENT_HANDLER: EventProcessorId =
    EventProcessorId(uuid!("f2d366cf-c00a-4479-acc4-851e04b6fbba"));

async fn connect() -> Result<(Client, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    let builder = Client::builder()
        .microservice(uuid!("f39b1f61-d360-4675-b859-53c05c87c0e6"))
        .version(1, 0, 0)
        .environment("Development");
    if std::env::args().any(|argument| argument == "--in-process") {
        #[cfg(feature = "in-process")]
        {
            let folder = tempfile::tempdir()?;
            println!(
                "starting a Runtime in this process, data in {}",
                folder.path().display()
            );
            let client = builder.start_in_process(folder.path(), &[]).await?;
            return Ok((client, Some(folder)));
        }
        #[cfg(not(feature = "in-process"))]
        return Err("--in-process needs the feature: add --features in-process".into());
    }
    let address = std::env::var("DOLITTLE_RUNTIME")
        .unwrap_or_else(|_| dolittle_sdk::DEFAULT_RUNTIME_ADDRESS.to_owned());
    println!("connecting to the Runtime at {address}");
    Ok((
        builder
            .runtime(address)
            .connect_attempts(3)
            .connect()
            .await?,
        None,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _folder) = connect().await?;
    let tenant = TenantId::DEVELOPMENT;
    let kitchen_id = format!(
        "kitchen-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    println!("kitchen {kitchen_id}");

    let (announced, mut announcements) = mpsc::unbounded_channel();
    let handler = client.register_event_handler(
        EventHandlerOptions::new(EVENT_HANDLER),
        Announcer {
            kitchen: kitchen_id.clone(),
            announced,
        },
    );
    let projection = client.register_projection::<DishesOfChef>();
    tokio::time::timeout(Duration::from_secs(10), handler.registered()).await??;

    let kitchen = client.aggregate_of::<Kitchen>(tenant, kitchen_id.as_str());
    kitchen
        .perform(|kitchen| {
            kitchen.hire_chef("Mr. Taco");
            kitchen.hire_chef("Remy");
            kitchen.add_to_menu("Bean Blaster Taco", &[("tortilla", 1), ("beans", 2)]);
            kitchen.add_to_menu("Avocado Artillery", &[("tortilla", 1), ("avocado", 1)]);
            kitchen.restock("tortilla", 4);
            kitchen.restock("beans", 4);
            Ok::<_, KitchenError>(())
        })
        .await?;
    println!("  [aggregate]  hired Mr. Taco and Remy, two dishes on the menu, inventory stocked");

    enum Step {
        Prepare(&'static str),
        Finish(&'static str),
        Restock(&'static str, u32),
    }
    let steps = [
        Step::Prepare("Bean Blaster Taco"),
        Step::Prepare("Bean Blaster Taco"),
        Step::Prepare("Bean Blaster Taco"),
        Step::Prepare("Quesadilla"),
        Step::Prepare("Avocado Artillery"),
        Step::Restock("avocado", 1),
        Step::Prepare("Avocado Artillery"),
        Step::Finish("Mr. Taco"),
        Step::Prepare("Avocado Artillery"),
    ];
    let mut prepared = 0;
    for step in steps {
        match step {
            Step::Prepare(dish) => {
                match kitchen.perform(|kitchen| kitchen.prepare_dish(dish)).await {
                    Ok(chef) => {
                        prepared += 1;
                        println!("  [aggregate]  {chef} prepares {dish}");
                    }
                    Err(AggregateError::Rejected(rule)) => {
                        println!("  [aggregate]  refused {dish}: {rule}");
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Step::Finish(chef) => {
                kitchen
                    .perform(|kitchen| {
                        kitchen.finish(chef);
                        Ok::<_, KitchenError>(())
                    })
                    .await?;
                println!("  [aggregate]  {chef} is available again");
            }
            Step::Restock(ingredient, amount) => {
                kitchen
                    .perform(|kitchen| {
                        kitchen.restock(ingredient, amount);
                        Ok::<_, KitchenError>(())
                    })
                    .await?;
                println!("  [aggregate]  restocked {amount} {ingredient}");
            }
        }
    }

    for _ in 0..prepared {
        tokio::time::timeout(Duration::from_secs(10), announcements.recv()).await?;
    }

    match tokio::time::timeout(Duration::from_secs(3), projection.registered()).await {
        Ok(Ok(())) => {
            let projections = client.projections(tenant);
            for _ in 0..50 {
                let all = projections.get_all::<DishesOfChef>().await?;
                if all
                    .values()
                    .map(|chef| chef.dishes.values().sum::<u32>())
                    .sum::<u32>()
                    >= prepared
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for chef in ["Mr. Taco", "Remy"] {
                let dishes = projections.get::<DishesOfChef>(chef).await?;
                println!(
                    "  [projection] {chef} (all kitchens so far): {:?}",
                    dishes.dishes
                );
            }
        }
        _ => println!("  [projection] the Runtime did not accept the projection: skipped"),
    }

    let (state, version) = kitchen.get().await?;
    println!(
        "kitchen {kitchen_id} is at version {version}; inventory left: {:?}",
        state.inventory
    );
    client.shutdown().await;
    Ok(())
}
