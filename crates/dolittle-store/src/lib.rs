//! The storage traits of a tenant's event store, and the semantics every backend must keep.
//!
//! One [`EventStore`] holds everything of one tenant (concepts §8): the event log of every scope,
//! aggregate versions, stream definitions and the entries of filtered streams, stream-processor
//! states, projection definitions and read models, and event-horizon subscription states.
//! Tenants never share a store value; the Runtime opens one per tenant.
//!
//! The trait is async because it is the boundary between the Runtime's tasks and the storage
//! engines, which do their blocking work on their own threads. Semantics that do not depend on the
//! engine (validation of a batch, for instance) live here, once, above the trait. The
//! `conformance` feature exposes the one test suite every backend runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use dolittle_types::{
    AggregateRootId, AggregateRootInstance, AggregateRootVersion, CommittedAggregateEvents,
    CommittedEvent, ConsentId, EventLogSequenceNumber, EventProcessorId, EventSourceId,
    EventTypeId, ExecutionContext, MicroserviceId, PartitionId, ScopeId, StreamId, StreamPosition,
    TenantId, Timestamp, UncommittedAggregateEvents, UncommittedEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[cfg(feature = "conformance")]
pub mod conformance;
mod validation;

pub use validation::{validate_aggregate_batch, validate_batch, validate_json};

/// What can go wrong in a store. Business rejections (an empty batch, bad content, a version
/// conflict) stay distinct from infrastructure failures all the way to the head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("there are no events to commit")]
    EmptyBatch,
    #[error("event {index} of the batch has content that is not valid JSON: {reason}")]
    InvalidContent { index: usize, reason: String },
    #[error(
        "aggregate root {aggregate_root} instance {event_source:?} is at version {current}, \
         but the commit expected version {expected}"
    )]
    AggregateConcurrencyConflict {
        aggregate_root: AggregateRootId,
        event_source: EventSourceId,
        expected: AggregateRootVersion,
        current: AggregateRootVersion,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error(
        "the store was written by a newer version of the Runtime (schema version {found}, \
         this Runtime knows up to {supported})"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("another writer is appending to this event log: {0}")]
    ConcurrentWriter(String),
    #[error("event store failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which events of a log a read keeps. The default keeps every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Keep only events of these type ids (generations are ignored), when given.
    pub event_types: Option<Vec<EventTypeId>>,
    /// Keep only public events.
    pub public_only: bool,
    /// Keep only events of this event source, when given.
    pub event_source: Option<EventSourceId>,
}

/// A page of an event log read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The kept events, in sequence-number order.
    pub events: Vec<CommittedEvent>,
    /// Where the next read should start: after the last event that the read looked at, kept or
    /// not. Equal to the log's length when the read reached the end.
    pub next: EventLogSequenceNumber,
}

/// How a stream is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterDefinition {
    /// A filter whose decisions are made by a head.
    Remote,
    /// The filter of an event handler: events of these type ids.
    EventTypes(Vec<EventTypeId>),
}

/// A stream definition (concepts §8 `stream-definitions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDefinition {
    pub stream: StreamId,
    pub partitioned: bool,
    pub public: bool,
    pub filter: FilterDefinition,
}

/// One entry appended to a stream: a reference to an event of the scope's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub partition: PartitionId,
    pub sequence_number: EventLogSequenceNumber,
}

/// An event read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub position: StreamPosition,
    pub partition: PartitionId,
    pub event: CommittedEvent,
}

/// The kinds of stream processors the Runtime keeps state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProcessorKind {
    EventHandler,
    Filter,
    Projection,
}

impl ProcessorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventHandler => "event-handler",
            Self::Filter => "filter",
            Self::Projection => "projection",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::EventHandler, Self::Filter, Self::Projection]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// Identifies a stream processor within a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessorKey {
    pub kind: ProcessorKind,
    pub scope: ScopeId,
    pub processor: EventProcessorId,
}

/// Why an unpartitioned processor is halted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingFailure {
    pub reason: String,
    /// How many times processing the event at the processor's position has failed.
    pub attempts: u32,
    /// When to try again; `None` means never (the head asked not to retry).
    pub retry_time: Option<Timestamp>,
    pub last_failed: Timestamp,
}

/// A parked partition of a partitioned processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingPartition {
    /// The position of the failing event in the processor's source.
    pub position: u64,
    pub reason: String,
    pub attempts: u32,
    /// When to try again; `None` means never.
    pub retry_time: Option<Timestamp>,
    pub last_failed: Timestamp,
}

/// The persistent state of a stream processor (concepts §3 and §8 `stream-processor-states`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamProcessorState {
    /// The position of the next event to process in the processor's source.
    pub position: u64,
    pub partitioned: bool,
    pub last_successfully_processed: Option<Timestamp>,
    /// Set when an unpartitioned processor is halted at `position`.
    pub failure: Option<ProcessingFailure>,
    /// The parked partitions of a partitioned processor.
    pub failing_partitions: BTreeMap<PartitionId, FailingPartition>,
}

/// How a projection finds the key of the read model an event updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySelector {
    EventSource,
    Partition,
    Property(String),
}

/// One event type a projection handles, and how it picks the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionEventSelector {
    pub event_type: EventTypeId,
    pub key_selector: KeySelector,
}

/// A projection's definition, as registered by a head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionDefinition {
    pub projection: EventProcessorId,
    pub scope: ScopeId,
    pub selectors: Vec<ProjectionEventSelector>,
    pub initial_state: String,
}

/// A change to one read model: replace its state, or delete it (`state` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelChange {
    pub key: String,
    pub state: Option<String>,
}

/// Identifies an event-horizon subscription within the consumer tenant's store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubscriptionKey {
    pub producer_microservice: MicroserviceId,
    pub producer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: PartitionId,
    /// The consumer's scope the events are written into.
    pub scope: ScopeId,
}

/// The persistent state of an event-horizon subscription (concepts §8 `subscription-states`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionState {
    /// The next position wanted in the producer's public stream partition.
    pub position: StreamPosition,
    pub last_successfully_processed: Option<Timestamp>,
    pub failure: Option<ProcessingFailure>,
    /// The consumer microservice the subscription presents to the producer (the one of the
    /// head that asked for it), so that a subscription resumed after a restart asks as the
    /// same microservice. Absent in states written before it was kept.
    #[serde(default)]
    pub consumer_microservice: Option<MicroserviceId>,
}

/// An event received over the event horizon, to be written into a scoped event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEvent {
    /// The event as the producer committed it; its sequence number is the producer's.
    pub event: CommittedEvent,
    pub consent: ConsentId,
    pub received: Timestamp,
}

/// What a store is and where it lives, for operators (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDescription {
    pub backend: String,
    pub location: String,
}

/// Everything one tenant's event store does. Implementations must pass the conformance suite.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// The backend and its location, without secrets.
    fn describe(&self) -> StoreDescription;

    // ---- the event log ----

    /// Commits a batch to the default scope's log, atomically: every event gets the next
    /// gapless sequence number, or (on any error) nothing is written.
    async fn commit(
        &self,
        events: Vec<UncommittedEvent>,
        context: &ExecutionContext,
    ) -> StoreResult<Vec<CommittedEvent>>;

    /// Commits events of an aggregate root instance if its current version equals the expected
    /// one; otherwise fails with [`StoreError::AggregateConcurrencyConflict`] and writes nothing.
    async fn commit_aggregate(
        &self,
        events: UncommittedAggregateEvents,
        context: &ExecutionContext,
    ) -> StoreResult<CommittedAggregateEvents>;

    /// Reads a page of a scope's log from a sequence number, keeping what the filter keeps.
    async fn read_log(
        &self,
        scope: ScopeId,
        from: EventLogSequenceNumber,
        limit: usize,
        filter: &LogFilter,
    ) -> StoreResult<LogPage>;

    /// The length of a scope's log (the next sequence number), kept current as events are
    /// committed, so that a reader can await "the log has grown past N" without polling.
    fn watch_log(&self, scope: ScopeId) -> watch::Receiver<EventLogSequenceNumber>;

    // ---- aggregates ----

    /// The events of an aggregate root instance in version order, and its version.
    async fn fetch_aggregate(
        &self,
        aggregate_root: AggregateRootId,
        event_source: &EventSourceId,
    ) -> StoreResult<CommittedAggregateEvents>;

    /// Every aggregate root instance with its version, optionally of one aggregate root.
    async fn list_aggregates(
        &self,
        aggregate_root: Option<AggregateRootId>,
    ) -> StoreResult<Vec<AggregateRootInstance>>;

    // ---- streams ----

    async fn get_stream_definition(
        &self,
        scope: ScopeId,
        stream: StreamId,
    ) -> StoreResult<Option<StreamDefinition>>;

    async fn put_stream_definition(
        &self,
        scope: ScopeId,
        definition: &StreamDefinition,
    ) -> StoreResult<()>;

    async fn list_stream_definitions(&self) -> StoreResult<Vec<(ScopeId, StreamDefinition)>>;

    /// Appends a filter's output to a stream AND saves the filter's state, in one atomic
    /// operation, so that a crash can neither duplicate nor skip an entry. The entries get the
    /// next stream positions. Returns the stream's new length.
    async fn append_to_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        entries: Vec<StreamEntry>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<StreamPosition>;

    /// Reads a stream from a position, in all partitions or one. The events come from the log.
    async fn read_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        from: StreamPosition,
        partition: Option<&PartitionId>,
        limit: usize,
    ) -> StoreResult<Vec<StreamEvent>>;

    /// The length of a stream, kept current as entries are appended.
    fn watch_stream(&self, scope: ScopeId, stream: StreamId) -> watch::Receiver<StreamPosition>;

    // ---- stream processor states ----

    async fn get_processor_state(
        &self,
        key: &ProcessorKey,
    ) -> StoreResult<Option<StreamProcessorState>>;

    /// Saves a processor's state. May be less durable than commits: a crash may lose the last
    /// saved positions (events are then delivered again), never skip an event.
    async fn save_processor_state(
        &self,
        key: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()>;

    async fn list_processor_states(&self)
    -> StoreResult<Vec<(ProcessorKey, StreamProcessorState)>>;

    // ---- projections ----

    async fn get_projection_definition(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Option<ProjectionDefinition>>;

    async fn put_projection_definition(&self, definition: &ProjectionDefinition)
    -> StoreResult<()>;

    async fn list_projection_definitions(&self) -> StoreResult<Vec<ProjectionDefinition>>;

    async fn get_read_model(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        key: &str,
    ) -> StoreResult<Option<String>>;

    /// Every read model of a projection as (key, state), ordered by key.
    async fn get_read_models(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Vec<(String, String)>>;

    /// Applies read-model changes AND saves the projection's processor state atomically.
    async fn apply_read_model_changes(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        changes: Vec<ReadModelChange>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()>;

    /// Atomically makes a rebuilt projection the live one: deletes the read models of
    /// `definition.projection`, moves those of `rebuilt` in their place, stores the definition
    /// and the processor state under the live projection, and forgets `rebuilt`'s definition
    /// and state. Readers see the old read models or the new ones, never a mixture.
    async fn promote_projection_rebuild(
        &self,
        rebuilt: EventProcessorId,
        definition: &ProjectionDefinition,
        state: &StreamProcessorState,
    ) -> StoreResult<()>;

    /// Deletes every read model, the definition and the processor state of a projection.
    async fn drop_projection(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<()>;

    // ---- event horizon ----

    /// Writes events received over the event horizon into a scoped log AND saves the
    /// subscription's state, atomically. The events get the scoped log's next sequence
    /// numbers and keep the producer's as their external sequence number.
    async fn commit_external(
        &self,
        subscription: &SubscriptionKey,
        events: Vec<ExternalEvent>,
        state: &SubscriptionState,
    ) -> StoreResult<Vec<CommittedEvent>>;

    async fn get_subscription_state(
        &self,
        subscription: &SubscriptionKey,
    ) -> StoreResult<Option<SubscriptionState>>;

    async fn save_subscription_state(
        &self,
        subscription: &SubscriptionKey,
        state: &SubscriptionState,
    ) -> StoreResult<()>;

    async fn list_subscription_states(
        &self,
    ) -> StoreResult<Vec<(SubscriptionKey, SubscriptionState)>>;
}

/// A shared handle to one tenant's store.
pub type SharedEventStore = Arc<dyn EventStore>;
