use dolittle_sdk::EventType;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
#[event_type(generation = 2)]
struct OnlyGeneration {
    name: String,
}

fn main() {}
