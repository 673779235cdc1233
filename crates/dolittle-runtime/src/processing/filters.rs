//! Filters: processors whose head decides, event by event, what goes into a stream (concepts
//! §3–4). Private filters read their scope's log and write a private stream, partitioned or
//! not; public filters see only public events and write a public stream in the default scope.
//!
//! A filter's output and its position advance in one atomic store operation, so a crash can
//! neither duplicate nor skip an entry.
//!
//! Re-registration: the stored definition is checked (partitioned and public may not change,
//! and the id may not be an event handler's stream). The head's filter logic itself is not
//! re-run over history (Dolittle v6.1 did that after accepting); a filter whose logic changes
//! should get a new id. Checking it would cost a pass over the whole log on every start.

use std::sync::Arc;

use async_trait::async_trait;
use dolittle_store::{
    FilterDefinition, LogFilter, ProcessorKey, ProcessorKind, SharedEventStore, StoreError,
    StreamDefinition, StreamEntry, StreamProcessorState,
};
use dolittle_types::{CommittedEvent, EventProcessorId, PartitionId, ScopeId, StreamId, TenantId};
use tokio_util::sync::CancellationToken;

use crate::RuntimeContext;
use crate::processing::stream_processor::{EventProcessor, Outcome, RetryState};
use crate::processing::{check_then_store_definition, run_registered, start_for_every_tenant};
use crate::reverse_calls::CallError;

/// The three kinds of filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    Unpartitioned,
    Partitioned,
    Public,
}

/// A filter as a head registers it. Its id is the id of the stream it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRegistration {
    pub id: EventProcessorId,
    pub scope: ScopeId,
    pub kind: FilterKind,
}

impl FilterRegistration {
    pub fn key(&self) -> ProcessorKey {
        ProcessorKey {
            kind: ProcessorKind::Filter,
            scope: self.scope,
            processor: self.id,
        }
    }

    fn stream_definition(&self) -> StreamDefinition {
        StreamDefinition {
            stream: StreamId(self.id.0),
            partitioned: self.kind != FilterKind::Unpartitioned,
            public: self.kind == FilterKind::Public,
            filter: FilterDefinition::Remote,
        }
    }
}

/// What the head decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterDecision {
    pub included: bool,
    pub partition: PartitionId,
}

/// The edge that asks the head to filter an event.
#[async_trait]
pub trait FilterHead: Send + Sync + 'static {
    async fn filter(
        &self,
        tenant: TenantId,
        event: &CommittedEvent,
        retry: Option<RetryState>,
    ) -> Result<Outcome<FilterDecision>, CallError>;
}

/// Why a filter registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterRegistrationError {
    #[error("Filter Id: '{0}' is an invalid Stream Id")]
    InvalidId(EventProcessorId),
    #[error("Failed to register Filter '{0}'. Filter already registered.")]
    AlreadyRegistered(EventProcessorId),
    #[error("Failed to register Filter '{id}'. {reason}")]
    BreaksStreamRules {
        id: EventProcessorId,
        reason: String,
    },
    #[error("Failed to register Filter '{id}'. The event store of tenant {tenant} failed: {error}")]
    Store {
        id: EventProcessorId,
        tenant: TenantId,
        error: StoreError,
    },
}

/// Checks a filter registration for every tenant, stores its stream definition and starts one
/// stream processor per tenant, running until `cancelled`.
pub async fn register(
    context: &RuntimeContext,
    registration: FilterRegistration,
    head: Arc<dyn FilterHead>,
    cancelled: CancellationToken,
) -> Result<(), FilterRegistrationError> {
    if registration.id.is_nil() {
        return Err(FilterRegistrationError::InvalidId(registration.id));
    }
    let key = registration.key();
    let guard = context
        .processors
        .try_register(key)
        .ok_or(FilterRegistrationError::AlreadyRegistered(registration.id))?;
    let definition = registration.stream_definition();
    check_then_store_definition(
        context,
        registration.scope,
        &definition,
        |tenant, store| {
            let (registration, definition) = (&registration, &definition);
            async move {
                let stored = store
                    .get_stream_definition(registration.scope, definition.stream)
                    .await
                    .map_err(|error| FilterRegistrationError::Store {
                        id: registration.id,
                        tenant,
                        error,
                    })?;
                match stored.map(|stored| (broken_rule(&stored, definition), stored)) {
                    Some((Some(reason), _)) => Err(FilterRegistrationError::BreaksStreamRules {
                        id: registration.id,
                        reason,
                    }),
                    Some((None, stored)) => Ok(stored != *definition),
                    None => Ok(true),
                }
            }
        },
        |tenant, error| FilterRegistrationError::Store {
            id: registration.id,
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
            Arc::new(FilterProcessor {
                registration: registration.clone(),
                tenant,
                store: store.clone(),
                head: head.clone(),
                context: context.clone(),
            })
        },
        |tenant, error| FilterRegistrationError::Store {
            id: registration.id,
            tenant,
            error,
        },
    )
    .await?;
    run_registered(context, processors, cancelled, guard);
    Ok(())
}

/// Which rule of streams a changed definition would break, if any.
fn broken_rule(stored: &StreamDefinition, new: &StreamDefinition) -> Option<String> {
    if stored.filter != FilterDefinition::Remote {
        return Some("Its id is already the stream of an event handler in this scope".to_owned());
    }
    if stored.partitioned != new.partitioned {
        return Some(
            "It would change its stream between partitioned and unpartitioned, which a stream \
             cannot do. Give the filter a new id instead"
                .to_owned(),
        );
    }
    if stored.public != new.public {
        return Some(
            "It would change its stream between public and private. Give the filter a new id \
             instead"
                .to_owned(),
        );
    }
    None
}

struct FilterProcessor {
    registration: FilterRegistration,
    tenant: TenantId,
    store: SharedEventStore,
    head: Arc<dyn FilterHead>,
    context: RuntimeContext,
}

#[async_trait]
impl EventProcessor for FilterProcessor {
    /// The stream entry for an included event.
    type Output = Option<StreamEntry>;

    fn key(&self) -> ProcessorKey {
        self.registration.key()
    }

    fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Filtering itself is not partitioned: the event log is one unpartitioned stream.
    fn partitioned(&self) -> bool {
        false
    }

    fn source_filter(&self) -> LogFilter {
        LogFilter {
            public_only: self.registration.kind == FilterKind::Public,
            ..LogFilter::default()
        }
    }

    fn partition_of(&self, _event: &CommittedEvent) -> PartitionId {
        PartitionId::unpartitioned()
    }

    fn partition_filter(&self, _partition: &PartitionId) -> LogFilter {
        self.source_filter()
    }

    async fn process(
        &self,
        event: &CommittedEvent,
        _partition: &PartitionId,
        retry: Option<RetryState>,
        _pending: &[Option<StreamEntry>],
    ) -> Result<Outcome<Option<StreamEntry>>, CallError> {
        let outcome = self.head.filter(self.tenant, event, retry).await?;
        Ok(match outcome {
            Outcome::Succeeded(decision) => {
                self.context.metrics.event_processed();
                let partition = if self.registration.kind == FilterKind::Unpartitioned {
                    PartitionId::unpartitioned()
                } else {
                    decision.partition
                };
                Outcome::Succeeded(decision.included.then_some(StreamEntry {
                    partition,
                    sequence_number: event.sequence_number,
                }))
            }
            Outcome::Failed {
                reason,
                retry_after,
            } => {
                self.context.metrics.processing_failed();
                Outcome::Failed {
                    reason,
                    retry_after,
                }
            }
        })
    }

    async fn commit(
        &self,
        outputs: &[Option<StreamEntry>],
        state: &StreamProcessorState,
    ) -> Result<(), StoreError> {
        let entries: Vec<StreamEntry> = outputs.iter().flatten().cloned().collect();
        self.store
            .append_to_stream(
                self.registration.scope,
                StreamId(self.registration.id.0),
                entries,
                &self.key(),
                state,
            )
            .await
            .map(|_| ())
    }
}
