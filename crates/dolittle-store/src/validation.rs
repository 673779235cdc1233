//! Checks a batch before any backend writes it, so that every backend refuses the same input
//! with the same error.

use dolittle_types::{UncommittedAggregateEvents, UncommittedEvent};
use serde::de::IgnoredAny;

use crate::{StoreError, StoreResult};

/// Checks that a text is JSON. Used for event content, read-model states and initial states.
pub fn validate_json(text: &str) -> Result<(), String> {
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Refuses an empty batch, and content that is not JSON naming the event's index in the batch.
pub fn validate_batch(events: &[UncommittedEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    for (index, event) in events.iter().enumerate() {
        validate_json(&event.content)
            .map_err(|reason| StoreError::InvalidContent { index, reason })?;
    }
    Ok(())
}

/// The same checks as [`validate_batch`] for an aggregate commit.
pub fn validate_aggregate_batch(events: &UncommittedAggregateEvents) -> StoreResult<()> {
    if events.events.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    for (index, event) in events.events.iter().enumerate() {
        validate_json(&event.content)
            .map_err(|reason| StoreError::InvalidContent { index, reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use dolittle_types::{EventType, EventTypeId};

    use super::*;

    fn event(content: &str) -> UncommittedEvent {
        UncommittedEvent {
            event_source: "source".into(),
            event_type: EventType::new(EventTypeId::NIL, 1),
            public: false,
            content: content.to_owned(),
        }
    }

    #[test]
    fn an_empty_batch_is_refused() {
        assert_eq!(validate_batch(&[]), Err(StoreError::EmptyBatch));
    }

    #[test]
    fn bad_content_names_the_index_of_the_event() {
        let result = validate_batch(&[event("{}"), event("[1,2]"), event("{\"a\":")]);
        assert!(matches!(
            result,
            Err(StoreError::InvalidContent { index: 2, .. })
        ));
    }

    #[test]
    fn any_json_value_is_accepted() {
        assert_eq!(
            validate_batch(&[event("{\"a\": 1}"), event("\"text\""), event("3")]),
            Ok(())
        );
    }
}
