use dolittle_sdk::Events;

#[derive(Events)]
struct NotAnEnum {
    name: String,
}

fn main() {}
