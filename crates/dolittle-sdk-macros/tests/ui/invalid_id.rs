use dolittle_sdk::EventType;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
#[event_type(id = "not-a-guid")]
struct BadId {
    name: String,
}

fn main() {}
