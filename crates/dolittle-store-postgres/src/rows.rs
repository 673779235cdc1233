//! Reads committed events out of result rows.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use dolittle_store::StoreError;
use dolittle_types::{
    AggregateMetadata, CommittedEvent, EventHorizonMetadata, EventSourceId, EventType,
    ExecutionContext, Timestamp, Uuid,
};
use tokio_postgres::{Client, Row, Statement};

use crate::error::{corrupt, from_bigint, store_error};

/// Reads the execution contexts of events by id.
pub(crate) const READ_CONTEXTS: &str =
    "SELECT id, context FROM execution_contexts WHERE id = ANY($1)";

/// Execution contexts already read, shared by a store's reads. Contexts never change once
/// stored, so the cache is never stale; it starts over when it grows past its bound.
#[derive(Default)]
pub(crate) struct ContextCache {
    contexts: Mutex<HashMap<i64, ExecutionContext>>,
}

const CACHED_CONTEXTS: usize = 4096;

impl ContextCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, ExecutionContext>> {
        // The map stays consistent if a holder panicked: every change is one insert or clear.
        self.contexts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Decodes events. Events refer to their execution context by id; the decoder finds the
/// contexts of a batch of rows in the store's cache or reads them in one query
/// ([`EventDecoder::load_contexts`]), and parses each once.
pub(crate) struct EventDecoder<'cache> {
    cache: &'cache ContextCache,
    contexts: HashMap<i64, ExecutionContext>,
}

impl<'cache> EventDecoder<'cache> {
    pub(crate) fn new(cache: &'cache ContextCache) -> Self {
        Self {
            cache,
            contexts: HashMap::new(),
        }
    }

    /// Reads the execution contexts of these rows (whose event columns start at `first`) that
    /// the decoder does not have yet.
    pub(crate) async fn load_contexts(
        &mut self,
        client: &Client,
        read_contexts: &Statement,
        rows: &[Row],
        first: usize,
    ) -> Result<(), tokio_postgres::Error> {
        let mut missing: Vec<i64> = Vec::new();
        for row in rows {
            let id: i64 = row.try_get(first + 7)?;
            if !self.contexts.contains_key(&id) && !missing.contains(&id) {
                missing.push(id);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        {
            let cached = self.cache.lock();
            missing.retain(|id| match cached.get(id) {
                Some(context) => {
                    self.contexts.insert(*id, context.clone());
                    false
                }
                None => true,
            });
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut read = Vec::new();
        for row in client.query(read_contexts, &[&missing]).await? {
            let id: i64 = row.try_get(0)?;
            let text: &str = row.try_get(1)?;
            // A context that does not parse is reported when an event needs it.
            if let Ok(context) = serde_json::from_str::<ExecutionContext>(text) {
                read.push((id, context));
            }
        }
        let mut cached = self.cache.lock();
        if cached.len() + read.len() > CACHED_CONTEXTS {
            cached.clear();
        }
        for (id, context) in read {
            cached.insert(id, context.clone());
            self.contexts.insert(id, context);
        }
        Ok(())
    }

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
        let context_id: i64 = row.try_get(column(7)).map_err(store_error)?;
        let aggregate_root: Option<Uuid> = row.try_get(column(8)).map_err(store_error)?;
        let aggregate_version: Option<i64> = row.try_get(column(9)).map_err(store_error)?;
        let external_sequence_number: Option<i64> = row.try_get(column(10)).map_err(store_error)?;
        let received: Option<i64> = row.try_get(column(11)).map_err(store_error)?;
        let consent: Option<Uuid> = row.try_get(column(12)).map_err(store_error)?;

        let execution_context = self
            .contexts
            .get(&context_id)
            .cloned()
            .ok_or_else(|| corrupt(format!("execution context {context_id} is missing")))?;
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
