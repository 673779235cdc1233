use dolittle_sdk::{EventType, Events};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventType)]
#[event_type(id = "5f9c1c43-4c5e-4b1f-9a8e-2d1f0c3b4a59")]
struct Opened;

#[derive(Events)]
enum Door {
    Opened(Opened),
    Closed { by: String },
}

fn main() {}
