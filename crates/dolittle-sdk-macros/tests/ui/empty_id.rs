use dolittle_sdk::EventType;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
#[event_type(id = "00000000-0000-0000-0000-000000000000")]
struct EmptyId {
    name: String,
}

fn main() {}
