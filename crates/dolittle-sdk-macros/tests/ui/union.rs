use dolittle_sdk::EventType;

#[derive(EventType)]
#[event_type(id = "5f9c1c43-4c5e-4b1f-9a8e-2d1f0c3b4a59")]
union Bits {
    whole: u32,
    half: u16,
}

fn main() {}
