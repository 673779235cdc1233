//! Event types: Rust types that serde turns into the JSON content of events, each with the
//! event type id and generation it is committed under.
//!
//! [`EventType`] is one such type (derive it with `#[derive(EventType)]`); [`Events`] is a set of
//! them that aggregates and event handlers dispatch on (derive it on an enum with
//! `#[derive(Events)]`; every event type is also a set of one). Events of types that a set does
//! not know reach event handlers as [`HandledEvent::Unknown`], with their raw JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A serde type committed as events of one event type.
///
/// Derive it:
///
/// ```
/// use dolittle_sdk::EventType;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, EventType)]
/// #[event_type(id = "1844473f-d714-4327-8b7f-5b3c2bdfc26a", generation = 1)]
/// struct DishPrepared {
///     dish: String,
///     chef: String,
/// }
///
/// assert_eq!(DishPrepared::EVENT_TYPE.generation, 1);
/// ```
pub trait EventType: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event type id and generation events of this type are committed with.
    const EVENT_TYPE: dolittle_types::EventType;
}

/// A set of event types, dispatched on by event type id: an enum deriving `Events` whose
/// variants each hold one [`EventType`], or a single event type.
pub trait Events: Sized + Send + Sync + 'static {
    /// Every event type of the set.
    fn event_types() -> Vec<dolittle_types::EventType>;

    /// The event type of this event.
    fn event_type(&self) -> dolittle_types::EventType;

    /// The event as JSON content.
    fn to_content(&self) -> Result<String, serde_json::Error>;

    /// Reads an event of `event_type` from its JSON content: `None` when the set has no such
    /// event type (matched by id; the generation is not compared, as the Runtime does).
    fn from_content(
        event_type: dolittle_types::EventType,
        content: &str,
    ) -> Option<Result<Self, serde_json::Error>>;
}

/// An event that reached an event handler: one of its typed events, or one of a type that its
/// [`Events`] do not know, with the raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum HandledEvent<E> {
    /// An event of a known type.
    Known(E),
    /// An event of a type the handler has no Rust type for.
    Unknown {
        /// Its event type.
        event_type: dolittle_types::EventType,
        /// Its content as JSON.
        content: serde_json::Value,
    },
}

impl<E: Events> HandledEvent<E> {
    /// Reads an event: known types are deserialized, others are kept as JSON. Content that is
    /// not JSON, or does not fit the known type, is an error.
    pub fn read(event_type: dolittle_types::EventType, content: &str) -> crate::Result<Self> {
        match E::from_content(event_type, content) {
            Some(Ok(event)) => Ok(Self::Known(event)),
            Some(Err(source)) => Err(crate::Error::Deserialize {
                what: format!("an event of type {}", event_type.id),
                source,
            }),
            None => serde_json::from_str(content)
                .map(|content| Self::Unknown {
                    event_type,
                    content,
                })
                .map_err(|source| crate::Error::Deserialize {
                    what: format!("an event of unknown type {}", event_type.id),
                    source,
                }),
        }
    }

    /// The typed event, if it is of a known type.
    pub fn known(self) -> Option<E> {
        match self {
            Self::Known(event) => Some(event),
            Self::Unknown { .. } => None,
        }
    }
}
