//! Event handlers: a filter on event types and a processor that calls the head (concepts §4).
//!
//! This Runtime does not write a handler's filtered stream: the handler reads its scope's
//! event log directly, keeping the events of its types, and its position is an event-log
//! sequence number. The stream still exists by definition (the log filtered by the stored
//! types), so the rules of streams are checked on every registration against the stored
//! definition: a handler may not stop handling a type it has handled, may not start handling
//! a type that already occurred before its position, and may not switch between partitioned
//! and unpartitioned once it has processed events.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use dolittle_store::{
    FilterDefinition, LogFilter, ProcessorKey, ProcessorKind, SharedEventStore, StoreError,
    StreamDefinition, StreamProcessorState,
};
use dolittle_types::{
    CommittedEvent, EventProcessorId, EventTypeId, PartitionId, ScopeId, StreamId, TenantId,
};
use tokio_util::sync::CancellationToken;

use crate::RuntimeContext;
use crate::processing::stream_processor::{EventProcessor, Outcome, RetryState};
use crate::processing::{check_then_store_definition, run_registered, start_for_every_tenant};
use crate::reverse_calls::CallError;

/// An event handler as a head registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHandlerDefinition {
    pub id: EventProcessorId,
    pub scope: ScopeId,
    pub types: Vec<EventTypeId>,
    pub partitioned: bool,
}

impl EventHandlerDefinition {
    pub fn key(&self) -> ProcessorKey {
        ProcessorKey {
            kind: ProcessorKind::EventHandler,
            scope: self.scope,
            processor: self.id,
        }
    }

    fn stream_definition(&self) -> StreamDefinition {
        StreamDefinition {
            stream: StreamId(self.id.0),
            partitioned: self.partitioned,
            public: false,
            filter: FilterDefinition::EventTypes(self.types.clone()),
        }
    }
}

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("Cannot register Event Handler: '{0}' because it is an invalid Stream Id")]
    InvalidId(EventProcessorId),
    #[error("Failed to register Event Handler: {0}. Filter already registered")]
    AlreadyRegistered(EventProcessorId),
    #[error("Failed to register Event Handler: {id}. {reason}")]
    BreaksStreamRules {
        id: EventProcessorId,
        reason: String,
    },
    #[error(
        "Failed to register Event Handler: {id}. The event store of tenant {tenant} failed: {error}"
    )]
    Store {
        id: EventProcessorId,
        tenant: TenantId,
        error: StoreError,
    },
}

/// What a head does with an event: the edge that turns it into a request on the wire.
#[async_trait]
pub trait EventHandlerHead: Send + Sync + 'static {
    async fn handle(
        &self,
        tenant: TenantId,
        event: &CommittedEvent,
        partition: &PartitionId,
        retry: Option<RetryState>,
    ) -> Result<Outcome<()>, CallError>;
}

/// Checks a registration against the rules of streams for every tenant, stores the definition,
/// and starts one stream processor per tenant. The processors run until `cancelled`; the
/// registration is released when they have all stopped.
pub async fn register(
    context: &RuntimeContext,
    definition: EventHandlerDefinition,
    head: Arc<dyn EventHandlerHead>,
    cancelled: CancellationToken,
) -> Result<(), RegistrationError> {
    if definition.id.is_nil() {
        return Err(RegistrationError::InvalidId(definition.id));
    }
    let key = definition.key();
    let guard = context
        .processors
        .try_register(key)
        .ok_or(RegistrationError::AlreadyRegistered(definition.id))?;
    check_then_store_definition(
        context,
        definition.scope,
        &definition.stream_definition(),
        |tenant, store| {
            let definition = &definition;
            async move {
                check_stream_rules(&store, definition)
                    .await
                    .map_err(|error| match error {
                        RuleCheck::Broken(reason) => RegistrationError::BreaksStreamRules {
                            id: definition.id,
                            reason,
                        },
                        RuleCheck::Store(error) => RegistrationError::Store {
                            id: definition.id,
                            tenant,
                            error,
                        },
                    })
            }
        },
        |tenant, error| RegistrationError::Store {
            id: definition.id,
            tenant,
            error,
        },
    )
    .await?;
    let processors = start_for_every_tenant(
        context,
        key,
        &cancelled,
        |tenant, store| {
            Arc::new(HandlerProcessor {
                definition: definition.clone(),
                tenant,
                store: store.clone(),
                head: head.clone(),
                context: context.clone(),
            })
        },
        |tenant, error| RegistrationError::Store {
            id: definition.id,
            tenant,
            error,
        },
    )
    .await?;
    run_registered(context, processors, cancelled, guard);
    Ok(())
}

enum RuleCheck {
    Broken(String),
    Store(StoreError),
}

impl From<StoreError> for RuleCheck {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Checks a (re-)registration against what the tenant's store says the handler has done.
/// Returns whether the stored definition has to be written (it is new or changed).
async fn check_stream_rules(
    store: &SharedEventStore,
    definition: &EventHandlerDefinition,
) -> Result<bool, RuleCheck> {
    let Some(stored) = store
        .get_stream_definition(definition.scope, StreamId(definition.id.0))
        .await?
    else {
        return Ok(true);
    };
    let changed = stored != definition.stream_definition();
    let position = store
        .get_processor_state(&definition.key())
        .await?
        .map(|state| state.position)
        .unwrap_or(0);
    if position == 0 {
        return Ok(changed);
    }
    if stored.partitioned != definition.partitioned {
        let (was, is) = if stored.partitioned {
            ("partitioned", "unpartitioned")
        } else {
            ("unpartitioned", "partitioned")
        };
        return Err(RuleCheck::Broken(format!(
            "It was {was} and is now registered as {is}: a stream cannot change between \
             partitioned and unpartitioned. Give the event handler a new id instead"
        )));
    }
    let FilterDefinition::EventTypes(stored_types) = &stored.filter else {
        return Err(RuleCheck::Broken(format!(
            "Its id is already used by a filter's stream in scope {}",
            definition.scope
        )));
    };
    let stored_types: BTreeSet<EventTypeId> = stored_types.iter().copied().collect();
    let new_types: BTreeSet<EventTypeId> = definition.types.iter().copied().collect();
    for removed in stored_types.difference(&new_types) {
        if let Some(sequence_number) =
            first_occurrence_before(store, definition.scope, *removed, position).await?
        {
            return Err(RuleCheck::Broken(format!(
                "It no longer handles event type {removed}, which it has already handled \
                 (first at event log sequence number {sequence_number}): events cannot be removed \
                 from its stream. Give the event handler a new id, or keep handling the type"
            )));
        }
    }
    for added in new_types.difference(&stored_types) {
        if let Some(sequence_number) =
            first_occurrence_before(store, definition.scope, *added, position).await?
        {
            return Err(RuleCheck::Broken(format!(
                "It now handles event type {added}, which already occurred at event log sequence \
                 number {sequence_number}, before the events it has handled: that would change the \
                 order of its stream. Give the event handler a new id to handle this type"
            )));
        }
    }
    Ok(changed)
}

/// The sequence number of the first event of a type before a position, if there is one.
async fn first_occurrence_before(
    store: &SharedEventStore,
    scope: ScopeId,
    event_type: EventTypeId,
    position: u64,
) -> Result<Option<u64>, StoreError> {
    let filter = LogFilter {
        event_types: Some(vec![event_type]),
        ..LogFilter::default()
    };
    let page = store.read_log(scope, 0, 1, &filter).await?;
    Ok(page
        .events
        .first()
        .map(|event| event.sequence_number)
        .filter(|sequence_number| *sequence_number < position))
}

struct HandlerProcessor {
    definition: EventHandlerDefinition,
    tenant: TenantId,
    store: SharedEventStore,
    head: Arc<dyn EventHandlerHead>,
    context: RuntimeContext,
}

#[async_trait]
impl EventProcessor for HandlerProcessor {
    type Output = ();

    fn key(&self) -> ProcessorKey {
        self.definition.key()
    }

    fn tenant(&self) -> TenantId {
        self.tenant
    }

    fn partitioned(&self) -> bool {
        self.definition.partitioned
    }

    fn source_filter(&self) -> LogFilter {
        LogFilter {
            event_types: Some(self.definition.types.clone()),
            ..LogFilter::default()
        }
    }

    fn partition_of(&self, event: &CommittedEvent) -> PartitionId {
        if self.definition.partitioned {
            PartitionId(event.event_source.0.clone())
        } else {
            PartitionId::unpartitioned()
        }
    }

    fn partition_filter(&self, partition: &PartitionId) -> LogFilter {
        LogFilter {
            event_types: Some(self.definition.types.clone()),
            event_source: Some(partition.0.clone().into()),
            ..LogFilter::default()
        }
    }

    async fn process(
        &self,
        event: &CommittedEvent,
        partition: &PartitionId,
        retry: Option<RetryState>,
        _pending: &[()],
    ) -> Result<Outcome<()>, CallError> {
        let outcome = self
            .head
            .handle(self.tenant, event, partition, retry)
            .await?;
        match &outcome {
            Outcome::Succeeded(()) => self.context.metrics.event_processed(),
            Outcome::Failed { .. } => self.context.metrics.processing_failed(),
        }
        Ok(outcome)
    }

    async fn commit(
        &self,
        _outputs: &[()],
        state: &StreamProcessorState,
    ) -> Result<(), StoreError> {
        self.store
            .save_processor_state(&self.definition.key(), state)
            .await
    }
}
