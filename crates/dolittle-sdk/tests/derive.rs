//! What the derive macros generate (their compile errors are tested in `dolittle-sdk-macros`).

use dolittle_sdk::types::{EventType as EventTypeKey, EventTypeId, Uuid};
use dolittle_sdk::{EventType, Events, HandledEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "f0e1d2c3-b4a5-4968-8776-655443322110", generation = 7)]
struct Renamed {
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "f0e1d2c3-b4a5-4968-8776-655443322111")]
enum Switched {
    On,
    Off,
}

#[derive(Debug, PartialEq, Events)]
enum Things {
    Renamed(Renamed),
    Switched(Switched),
}

#[test]
fn event_type_carries_its_id_and_generation_defaulting_to_one() {
    assert_eq!(
        Renamed::EVENT_TYPE,
        EventTypeKey {
            id: EventTypeId(Uuid::from_u128(0xf0e1d2c3_b4a5_4968_8776_655443322110)),
            generation: 7,
        }
    );
    assert_eq!(Switched::EVENT_TYPE.generation, 1);
}

#[test]
fn an_events_enum_dispatches_by_event_type_id() {
    assert_eq!(
        Things::event_types(),
        [Renamed::EVENT_TYPE, Switched::EVENT_TYPE]
    );
    let renamed = Things::from(Renamed { name: "x".into() });
    assert_eq!(renamed.event_type(), Renamed::EVENT_TYPE);
    assert_eq!(renamed.to_content().expect("json"), r#"{"name":"x"}"#);

    let other_generation = EventTypeKey {
        generation: 1,
        ..Switched::EVENT_TYPE
    };
    let read = Things::from_content(other_generation, r#""Off""#).map(|result| result.ok());
    assert_eq!(read, Some(Some(Things::Switched(Switched::Off))));

    let unknown = EventTypeKey {
        id: EventTypeId(Uuid::from_u128(1)),
        generation: 1,
    };
    assert!(Things::from_content(unknown, "{}").is_none());
}

#[test]
fn handled_events_keep_unknown_types_as_json_and_reject_content_that_does_not_fit() {
    let unknown = EventTypeKey {
        id: EventTypeId(Uuid::from_u128(1)),
        generation: 3,
    };
    let kept = HandledEvent::<Things>::read(unknown, r#"{"a":[1,2]}"#).expect("json");
    let wrong = HandledEvent::<Things>::read(Renamed::EVENT_TYPE, r#"{"nom":"x"}"#);
    let not_json = HandledEvent::<Things>::read(unknown, "not json");

    assert_eq!(
        kept,
        HandledEvent::Unknown {
            event_type: unknown,
            content: serde_json::json!({"a": [1, 2]}),
        }
    );
    assert!(matches!(
        wrong,
        Err(dolittle_sdk::Error::Deserialize { .. })
    ));
    assert!(not_json.is_err());
}
