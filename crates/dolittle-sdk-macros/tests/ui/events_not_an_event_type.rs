use dolittle_sdk::Events;

#[derive(Events)]
enum Door {
    Opened(String),
}

fn main() {}
