use dolittle_sdk::Events;

#[derive(Events)]
enum Nothing {}

fn main() {}
