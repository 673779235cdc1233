//! Reads committed events out of result rows.

use dolittle_store::StoreError;
use dolittle_types::{
    AggregateMetadata, CommittedEvent, EventHorizonMetadata, EventSourceId, EventType,
    ExecutionContext, Timestamp, Uuid,
};
use tokio_postgres::Row;

use crate::error::{corrupt, from_bigint, store_error};

/// Decodes events; remembers the last execution context, because the events of one commit
/// share theirs and parsing it again for each is most of the cost of a read.
#[derive(Default)]
pub(crate) struct EventDecoder {
    last_context: Option<(String, ExecutionContext)>,
}

impl EventDecoder {
    /// Decodes the event whose columns start at `first` in the row: sequence_number,
    /// occurred, event_source, event_type, event_type_generation, public, content,
    /// execution_context, aggregate_root, aggregate_version, external_sequence_number,
    /// received, consent.
    pub(crate) fn decode(&mut self, row: &Row, first: usize) -> Result<CommittedEvent, StoreError> {
        let column = |offset: usize| first + offset;
        let sequence_number: i64 = row.try_get(column(0)).map_err(store_error)?;
        let occurred: i64 = row.try_get(column(1)).map_err(store_error)?;
        let event_source: String = row.try_get(column(2)).map_err(store_error)?;
        let event_type: Uuid = row.try_get(column(3)).map_err(store_error)?;
        let generation: i64 = row.try_get(column(4)).map_err(store_error)?;
        let public: bool = row.try_get(column(5)).map_err(store_error)?;
        let content: String = row.try_get(column(6)).map_err(store_error)?;
        let context_text: &str = row.try_get(column(7)).map_err(store_error)?;
        let aggregate_root: Option<Uuid> = row.try_get(column(8)).map_err(store_error)?;
        let aggregate_version: Option<i64> = row.try_get(column(9)).map_err(store_error)?;
        let external_sequence_number: Option<i64> = row.try_get(column(10)).map_err(store_error)?;
        let received: Option<i64> = row.try_get(column(11)).map_err(store_error)?;
        let consent: Option<Uuid> = row.try_get(column(12)).map_err(store_error)?;

        let execution_context = self.context(context_text)?;
        let aggregate = match (aggregate_root, aggregate_version) {
            (Some(root), Some(version)) => Some(AggregateMetadata {
                aggregate_root: root.into(),
                version: from_bigint(version, "aggregate version")?,
            }),
            _ => None,
        };
        let event_horizon = match (external_sequence_number, received, consent) {
            (Some(external), Some(received), Some(consent)) => Some(EventHorizonMetadata {
                external_sequence_number: from_bigint(external, "external sequence number")?,
                received: Timestamp(received),
                consent: consent.into(),
            }),
            _ => None,
        };
        Ok(CommittedEvent {
            sequence_number: from_bigint(sequence_number, "sequence number")?,
            occurred: Timestamp(occurred),
            event_source: EventSourceId(event_source),
            execution_context,
            event_type: EventType::new(
                event_type.into(),
                u32::try_from(generation).map_err(|_| corrupt("event type generation"))?,
            ),
            public,
            content,
            aggregate,
            event_horizon,
        })
    }

    fn context(&mut self, text: &str) -> Result<ExecutionContext, StoreError> {
        if let Some((last_text, last)) = &self.last_context
            && last_text == text
        {
            return Ok(last.clone());
        }
        let context: ExecutionContext = serde_json::from_str(text)
            .map_err(|error| corrupt(format!("execution context: {error}")))?;
        self.last_context = Some((text.to_owned(), context.clone()));
        Ok(context)
    }
}

/// Serializes a value the store keeps as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Internal(error.to_string()))
}

/// Parses a value the store keeps as JSON text.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| corrupt(format!("{what}: {error}")))
}
