use dolittle_sdk::EventType;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
struct NoId {
    name: String,
}

fn main() {}
