use dolittle_sdk::EventType;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
#[event_type(id = "5f9c1c43-4c5e-4b1f-9a8e-2d1f0c3b4a59", generation = 5000000000)]
struct HugeGeneration {
    name: String,
}

fn main() {}
