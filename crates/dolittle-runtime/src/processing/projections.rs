//! Projections: read models that the Runtime keeps from a scope's event log by asking a head
//! how each event changes the read model of its key (concepts §5, protocol.md §3.5).
//!
//! A projection is an unpartitioned [`StreamProcessor`] per tenant whose source is the scope's
//! event log filtered to the selected event types. For each event the Runtime finds the key
//! (event source id, partition id or an event property), the current state of that key (the
//! stored read model, or the initial state), asks the head, and replaces or deletes the read
//! model. The changes of a batch are committed with the processor's position in one atomic store
//! operation, so a restart neither loses nor applies a change twice.
//!
//! Differences from Dolittle v6.1, on purpose:
//! - A failure the head reports is retried after the head's `retryTimeout`, as for event
//!   handlers. v6.1 ignored the retry wish and stopped the projection at that event for good.
//!   A key that cannot be found (a missing property) is not retried: the event cannot change.
//!   A new registration tries it once more.
//! - The same event type listed twice is refused with a failure; v6.1 silently ended the call.
//! - A changed definition (event types, key selectors or initial state) is rebuilt *beside* the
//!   old read models, under a shadow projection id derived from the projection id and the new
//!   definition ([`shadow_id`]). Readers keep getting the old read models (and the old initial
//!   state) until the rebuild has caught up with the log; then the store swaps them in one
//!   atomic operation ([`EventStore::promote_projection_rebuild`]). v6.1 dropped the read models
//!   and rebuilt in place, so readers saw a half-built projection. A rebuild interrupted by a
//!   restart continues where it was when the same definition is registered again; a shadow left
//!   by a definition that is no longer registered is dropped.
//!
//! Throughput: the wire carries one event per request, so one request at a time would make a
//! catch-up as slow as the round trip to the head. A projection therefore reads a window of
//! events ahead and keeps up to [`IN_FLIGHT_LIMIT`] requests in flight for *different* keys,
//! while the events of one key are still sent one after the other, each with the state the
//! previous one produced. The stream processor still consumes the answers in log order, so the
//! committed position and read models are exactly those of sequential processing. The trade-off:
//! a head sees requests for different keys concurrently and out of log order (only the order
//! per key is kept), and when an event fails the answers already received for later events are
//! thrown away and those events are sent again (at-least-once, as after any restart). A head
//! that needs the global order of events across keys should be an event handler instead.
//!
//! [`StreamProcessor`]: crate::processing::stream_processor::StreamProcessor
//! [`EventStore::promote_projection_rebuild`]: dolittle_store::EventStore::promote_projection_rebuild

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dolittle_store::{
    KeySelector, LogFilter, ProcessorKey, ProcessorKind, ProjectionDefinition, ReadModelChange,
    SharedEventStore, StoreError, StreamProcessorState,
};
use dolittle_types::{
    CommittedEvent, EventProcessorId, EventTypeId, PartitionId, ScopeId, TenantId, Uuid,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::RuntimeContext;
use crate::processing::stream_processor::{EventProcessor, Outcome, ReplayError, RetryState};
use crate::processing::{run_registered, start_for_every_tenant};
use crate::reverse_calls::CallError;

/// How many events of the source a projection reads at a time when it reads ahead.
const PAGE_SIZE: usize = 1_000;
/// How many answers a projection may hold that its stream processor has not taken yet.
const LOOKAHEAD: usize = 4_000;
/// How many requests for different keys a projection keeps in flight at most.
pub const IN_FLIGHT_LIMIT: usize = 256;
/// How many latest states a projection remembers per tenant, to spare store reads. Past this,
/// it forgets them all after the next commit and reads from the store again.
const REMEMBERED_STATES: usize = 100_000;

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("Failed to register Projection: {0}. The projection id cannot be the empty id")]
    InvalidId(EventProcessorId),
    #[error(
        "Failed to register Projection: {id}. Event type {event_type} is selected more than once; \
         each event type can have one key selector"
    )]
    DuplicateEventType {
        id: EventProcessorId,
        event_type: EventTypeId,
    },
    #[error("Failed to register Projection: {id}. The initial state is not valid JSON: {reason}")]
    InvalidInitialState {
        id: EventProcessorId,
        reason: String,
    },
    #[error(
        "Failed to register Projection: {0}. Event Processor already registered with the same id."
    )]
    AlreadyRegistered(EventProcessorId),
    #[error(
        "Failed to register Projection: {id}. The event store of tenant {tenant} failed: {error}"
    )]
    Store {
        id: EventProcessorId,
        tenant: TenantId,
        error: StoreError,
    },
}

/// Where a current state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentStateKind {
    /// The key has no read model; the state is the projection's initial state.
    CreatedFromInitialState,
    /// The stored read model of the key.
    Persisted,
}

/// The state of one key of a projection, as sent to a head or returned to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentState {
    pub kind: CurrentStateKind,
    pub key: String,
    pub state: String,
}

/// What a head decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projected {
    /// The key's read model becomes this state.
    Replace(String),
    /// The key's read model is deleted.
    Delete,
}

/// The edge that asks a head to project an event onto a state.
#[async_trait]
pub trait ProjectionHead: Send + Sync + 'static {
    async fn project(
        &self,
        tenant: TenantId,
        event: CommittedEvent,
        current: CurrentState,
        retry: Option<RetryState>,
    ) -> Result<Outcome<Projected>, CallError>;
}

/// Why the key of an event could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("event {sequence_number} has no property '{property}' to take the projection key from")]
    MissingProperty {
        property: String,
        sequence_number: u64,
    },
    #[error(
        "event {sequence_number} has content that is not a JSON object, so property '{property}' \
         cannot be taken as the projection key"
    )]
    NotAnObject {
        property: String,
        sequence_number: u64,
    },
}

/// The key of the read model an event updates.
pub fn key_of(selector: &KeySelector, event: &CommittedEvent) -> Result<String, KeyError> {
    match selector {
        KeySelector::EventSource => Ok(event.event_source.0.clone()),
        // The event log is unpartitioned, so every event is in the unpartitioned partition (as
        // in v6.1).
        KeySelector::Partition => Ok(PartitionId::UNPARTITIONED_TEXT.to_owned()),
        KeySelector::Property(property) => {
            let content: serde_json::Value =
                serde_json::from_str(&event.content).map_err(|_| KeyError::NotAnObject {
                    property: property.clone(),
                    sequence_number: event.sequence_number,
                })?;
            let serde_json::Value::Object(object) = content else {
                return Err(KeyError::NotAnObject {
                    property: property.clone(),
                    sequence_number: event.sequence_number,
                });
            };
            object
                .get(property)
                .map(property_text)
                .ok_or_else(|| KeyError::MissingProperty {
                    property: property.clone(),
                    sequence_number: event.sequence_number,
                })
        }
    }
}

/// A JSON value as text the way Dolittle v6.1 made keys of it (Newtonsoft's `JToken.ToString`):
/// a string without quotes, a number as its decimal text, `True`/`False`, `null` as an empty
/// string, objects and arrays as indented JSON.
pub fn property_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::Bool(true) => "True".to_owned(),
        serde_json::Value::Bool(false) => "False".to_owned(),
        serde_json::Value::Null => String::new(),
        composite => serde_json::to_string_pretty(composite).unwrap_or_default(),
    }
}

/// Whether two definitions would build the same read models: the same initial state text and
/// the same key selector for the same event types, in any order.
pub fn same_definition(left: &ProjectionDefinition, right: &ProjectionDefinition) -> bool {
    left.scope == right.scope
        && left.initial_state == right.initial_state
        && normalized_selectors(left) == normalized_selectors(right)
}

fn normalized_selectors(definition: &ProjectionDefinition) -> Vec<(EventTypeId, KeySelector)> {
    let mut selectors: Vec<_> = definition
        .selectors
        .iter()
        .map(|selector| (selector.event_type, selector.key_selector.clone()))
        .collect();
    selectors.sort_by_key(|selector| selector.0);
    selectors
}

/// The id under which a definition of a projection is rebuilt beside the live read models: a
/// version 5 UUID in the namespace of the projection id, named by the definition's selectors
/// and initial state. The same definition always gets the same shadow id, so an interrupted
/// rebuild continues after a restart.
pub fn shadow_id(
    projection: EventProcessorId,
    definition: &ProjectionDefinition,
) -> EventProcessorId {
    let selectors: Vec<String> = normalized_selectors(definition)
        .into_iter()
        .map(|(event_type, selector)| match selector {
            KeySelector::EventSource => format!("{event_type}:event-source"),
            KeySelector::Partition => format!("{event_type}:partition"),
            KeySelector::Property(property) => format!("{event_type}:property:{property}"),
        })
        .collect();
    let name = serde_json::json!({
        "scope": definition.scope.to_string(),
        "selectors": selectors,
        "initialState": definition.initial_state,
    })
    .to_string();
    EventProcessorId(Uuid::new_v5(&projection.0, name.as_bytes()))
}

/// Whether a stored definition is a rebuild of a projection (stored under its shadow id), rather
/// than a projection of its own. Listings for operators can use it to tell rebuilds apart.
pub fn is_rebuild_of(projection: EventProcessorId, stored: &ProjectionDefinition) -> bool {
    stored.projection != projection && shadow_id(projection, stored) == stored.projection
}

/// Checks what can be checked without a store.
fn validate(definition: &ProjectionDefinition) -> Result<(), RegistrationError> {
    let id = definition.projection;
    if id.is_nil() {
        return Err(RegistrationError::InvalidId(id));
    }
    let mut seen = HashSet::new();
    for selector in &definition.selectors {
        if !seen.insert(selector.event_type) {
            return Err(RegistrationError::DuplicateEventType {
                id,
                event_type: selector.event_type,
            });
        }
    }
    serde_json::from_str::<serde_json::Value>(&definition.initial_state).map_err(|error| {
        RegistrationError::InvalidInitialState {
            id,
            reason: error.to_string(),
        }
    })?;
    Ok(())
}

/// The key under which the live processor state of a projection is kept.
pub fn processor_key(scope: ScopeId, projection: EventProcessorId) -> ProcessorKey {
    ProcessorKey {
        kind: ProcessorKind::Projection,
        scope,
        processor: projection,
    }
}

/// Checks a registration, decides per tenant whether the projection continues or is rebuilt,
/// and starts one stream processor per tenant, running until `cancelled`.
pub async fn register(
    context: &RuntimeContext,
    definition: ProjectionDefinition,
    head: Arc<dyn ProjectionHead>,
    cancelled: CancellationToken,
) -> Result<(), RegistrationError> {
    validate(&definition)?;
    let id = definition.projection;
    let key = processor_key(definition.scope, id);
    let guard = context
        .processors
        .try_register(key)
        .ok_or(RegistrationError::AlreadyRegistered(id))?;
    let mut targets = HashMap::new();
    for (tenant, store) in context.tenants.iter() {
        let target = prepare_tenant(store, &definition)
            .await
            .map_err(|error| RegistrationError::Store { id, tenant, error })?;
        targets.insert(tenant, target);
    }
    let processors = start_for_every_tenant(
        context,
        key,
        &cancelled,
        |tenant, store| {
            Arc::new(ProjectionProcessor {
                shared: Arc::new(Shared {
                    definition: definition.clone(),
                    tenant,
                    store: store.clone(),
                    head: head.clone(),
                    target: Mutex::new(targets.get(&tenant).copied().unwrap_or(Target::Live)),
                    remembered: Mutex::new(HashMap::new()),
                }),
                pipeline: Mutex::new(None),
                context: context.clone(),
            })
        },
        |tenant, error| RegistrationError::Store { id, tenant, error },
    )
    .await?;
    run_registered(context, processors, cancelled, guard);
    Ok(())
}

/// Where a tenant's projection writes its read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The live read models, under the projection id.
    Live,
    /// A rebuild beside the live read models, under a shadow id.
    Rebuild(EventProcessorId),
}

/// Compares a registration with what a tenant's store holds and prepares the store: a new
/// projection is stored and built live; an unchanged one continues; a changed one is rebuilt
/// under its shadow id. Shadows of other definitions of the projection are dropped.
async fn prepare_tenant(
    store: &SharedEventStore,
    definition: &ProjectionDefinition,
) -> Result<Target, StoreError> {
    let id = definition.projection;
    let scope = definition.scope;
    let wanted_shadow = shadow_id(id, definition);
    for stored in store.list_projection_definitions().await? {
        let stale = stored.scope == scope
            && stored.projection != wanted_shadow
            && is_rebuild_of(id, &stored);
        if stale {
            tracing::info!(projection = %id, shadow = %stored.projection, "dropping the rebuild of a definition that is no longer registered");
            store.drop_projection(scope, stored.projection).await?;
        }
    }
    let live = store.get_projection_definition(scope, id).await?;
    let target = match live {
        None => {
            store.put_projection_definition(definition).await?;
            Target::Live
        }
        Some(live) if same_definition(&live, definition) => Target::Live,
        Some(_) => {
            let shadow = ProjectionDefinition {
                projection: wanted_shadow,
                ..definition.clone()
            };
            store.put_projection_definition(&shadow).await?;
            tracing::info!(projection = %id, shadow = %wanted_shadow, "the definition changed; rebuilding beside the live read models");
            Target::Rebuild(wanted_shadow)
        }
    };
    if let Target::Rebuild(shadow) = target {
        // A rebuild with nothing to process would never commit, and so never be promoted.
        let shadow_key = processor_key(scope, shadow);
        let mut state = store
            .get_processor_state(&shadow_key)
            .await?
            .unwrap_or_default();
        if state.failure.is_none()
            && let Some(end) = nothing_left(store, definition, state.position).await?
        {
            state.position = state.position.max(end);
            store
                .promote_projection_rebuild(shadow, definition, &state)
                .await?;
            tracing::info!(projection = %id, "rebuild had nothing left to process; promoted");
            return Ok(Target::Live);
        }
    }
    Ok(target)
}

/// Whether the scope's log holds no event for the projection at or after `position`: then the
/// position past what was looked at, else `None`.
async fn nothing_left(
    store: &SharedEventStore,
    definition: &ProjectionDefinition,
    position: u64,
) -> Result<Option<u64>, StoreError> {
    let scope = definition.scope;
    if *store.watch_log(scope).borrow() <= position {
        return Ok(Some(position));
    }
    let page = store
        .read_log(scope, position, 1, &source_filter(definition))
        .await?;
    Ok(page.events.is_empty().then_some(page.next))
}

fn source_filter(definition: &ProjectionDefinition) -> LogFilter {
    LogFilter {
        event_types: Some(
            definition
                .selectors
                .iter()
                .map(|selector| selector.event_type)
                .collect(),
        ),
        ..LogFilter::default()
    }
}

/// Errors a reader can get from the projection store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("Projection definition for projection {projection} in scope {scope} does not exist")]
    NoDefinition {
        projection: EventProcessorId,
        scope: ScopeId,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state of one key: its read model, or the initial state when it has none.
pub async fn get_one(
    store: &SharedEventStore,
    scope: ScopeId,
    projection: EventProcessorId,
    key: &str,
) -> Result<CurrentState, ReadError> {
    // The read model first: if it exists, the definition does too, and one read is enough.
    if let Some(state) = store.get_read_model(scope, projection, key).await? {
        return Ok(CurrentState {
            kind: CurrentStateKind::Persisted,
            key: key.to_owned(),
            state,
        });
    }
    let definition = store
        .get_projection_definition(scope, projection)
        .await?
        .ok_or(ReadError::NoDefinition { projection, scope })?;
    Ok(CurrentState {
        kind: CurrentStateKind::CreatedFromInitialState,
        key: key.to_owned(),
        state: definition.initial_state,
    })
}

/// Every stored read model of a projection, ordered by key.
pub async fn get_all(
    store: &SharedEventStore,
    scope: ScopeId,
    projection: EventProcessorId,
) -> Result<Vec<CurrentState>, ReadError> {
    let models = store.get_read_models(scope, projection).await?;
    if models.is_empty()
        && store
            .get_projection_definition(scope, projection)
            .await?
            .is_none()
    {
        return Err(ReadError::NoDefinition { projection, scope });
    }
    Ok(models
        .into_iter()
        .map(|(key, state)| CurrentState {
            kind: CurrentStateKind::Persisted,
            key,
            state,
        })
        .collect())
}

/// What the processor and its read-ahead window share.
struct Shared {
    /// The registered definition, under the live projection id.
    definition: ProjectionDefinition,
    tenant: TenantId,
    store: SharedEventStore,
    head: Arc<dyn ProjectionHead>,
    target: Mutex<Target>,
    /// The latest state of keys whose changes the stream processor has accepted (`None`: no
    /// read model). Only this processor writes the projection's read models, so this is what
    /// the store holds once the pending changes are committed.
    remembered: Mutex<HashMap<String, Option<String>>>,
}

impl Shared {
    fn target(&self) -> Target {
        *self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn target_id(&self) -> EventProcessorId {
        match self.target() {
            Target::Live => self.definition.projection,
            Target::Rebuild(shadow) => shadow,
        }
    }

    fn selector_for(&self, event_type: EventTypeId) -> Option<&KeySelector> {
        self.definition
            .selectors
            .iter()
            .find(|selector| selector.event_type == event_type)
            .map(|selector| &selector.key_selector)
    }

    fn key_of(&self, event: &CommittedEvent) -> Result<String, KeyError> {
        let selector = self
            .selector_for(event.event_type.id)
            .cloned()
            .unwrap_or(KeySelector::EventSource);
        key_of(&selector, event)
    }

    fn lock_remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.remembered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, key: &str, state: Option<String>) {
        self.lock_remembered().insert(key.to_owned(), state);
    }

    /// Drops the remembered states when there are many. Only right after a commit: then every
    /// change the processor accepted is in the store.
    fn forget_remembered_if_many(&self) {
        let mut remembered = self.lock_remembered();
        if remembered.len() >= REMEMBERED_STATES {
            remembered.clear();
        }
    }

    /// The latest state of a key: remembered (every accepted change that is not yet committed
    /// is), else stored.
    async fn latest_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        let remembered = self.lock_remembered().get(key).cloned();
        if let Some(state) = remembered {
            return Ok(state);
        }
        self.store
            .get_read_model(self.definition.scope, self.target_id(), key)
            .await
    }

    fn current_state(&self, key: String, state: Option<String>) -> CurrentState {
        match state {
            Some(state) => CurrentState {
                kind: CurrentStateKind::Persisted,
                key,
                state,
            },
            None => CurrentState {
                kind: CurrentStateKind::CreatedFromInitialState,
                key,
                state: self.definition.initial_state.clone(),
            },
        }
    }

    /// Projects one event onto the latest state of its key.
    async fn project(
        &self,
        event: CommittedEvent,
        key: String,
        state: Option<String>,
        retry: Option<RetryState>,
    ) -> Result<Outcome<ReadModelChange>, CallError> {
        let current = self.current_state(key.clone(), state);
        let outcome = self
            .head
            .project(self.tenant, event, current, retry)
            .await?;
        Ok(match outcome {
            Outcome::Succeeded(Projected::Replace(state)) => {
                if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&state) {
                    Outcome::Failed {
                        reason: format!(
                            "the projection returned a state for key '{key}' that is not valid \
                             JSON: {error}"
                        ),
                        retry_after: Some(INVALID_STATE_RETRY),
                    }
                } else {
                    Outcome::Succeeded(ReadModelChange {
                        key,
                        state: Some(state),
                    })
                }
            }
            Outcome::Succeeded(Projected::Delete) => {
                Outcome::Succeeded(ReadModelChange { key, state: None })
            }
            Outcome::Failed {
                reason,
                retry_after,
            } => Outcome::Failed {
                reason,
                retry_after,
            },
        })
    }
}

/// When a state that is not JSON is asked for again (the head may have been fixed).
const INVALID_STATE_RETRY: Duration = Duration::from_secs(5);

type Answer = Result<Outcome<ReadModelChange>, CallError>;

/// How far a pipeline has read the source.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The sequence number after the last event read.
    read_until: u64,
    /// The pipeline stopped: it reached the end of the source, or an event failed.
    finished: bool,
}

/// What the stream processor tells a pipeline about the answers it took.
#[derive(Default)]
struct Consumption {
    /// How many answers the stream processor has taken.
    taken: AtomicU64,
    /// The sequence number after the last event whose change the processor accepted.
    accepted_until: AtomicU64,
    taken_one: Notify,
}

/// Requests sent ahead of the stream processor: a task reads the source ahead of it and keeps
/// requests in flight, and the processor takes the answers in log order.
struct Pipeline {
    answers: Arc<Mutex<HashMap<u64, oneshot::Receiver<Answer>>>>,
    progress: watch::Receiver<Progress>,
    consumption: Arc<Consumption>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pipeline {
    fn start(shared: Arc<Shared>, from: u64) -> Self {
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let (progress_sender, progress) = watch::channel(Progress {
            read_until: from,
            finished: false,
        });
        let consumption = Arc::new(Consumption {
            accepted_until: AtomicU64::new(from),
            ..Consumption::default()
        });
        let task = tokio::spawn(run_pipeline(
            shared,
            from,
            answers.clone(),
            progress_sender,
            consumption.clone(),
        ));
        Self {
            answers,
            progress,
            consumption,
            task,
        }
    }
}

struct ProjectionProcessor {
    shared: Arc<Shared>,
    pipeline: Mutex<Option<Pipeline>>,
    context: RuntimeContext,
}

/// Where the answer for an event is.
enum SentAhead {
    Answer(oneshot::Receiver<Answer>),
    /// Not read yet; wait for the pipeline to read further.
    NotYet(watch::Receiver<Progress>),
    /// The pipeline will not send it.
    No,
}

impl ProjectionProcessor {
    fn lock_pipeline(&self) -> std::sync::MutexGuard<'_, Option<Pipeline>> {
        self.pipeline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn forget_pipeline(&self) {
        self.lock_pipeline().take();
    }

    fn look_for(&self, sequence_number: u64) -> SentAhead {
        let pipeline = self.lock_pipeline();
        let Some(pipeline) = pipeline.as_ref() else {
            return SentAhead::No;
        };
        let answer = pipeline
            .answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&sequence_number);
        if let Some(answer) = answer {
            pipeline.consumption.taken.fetch_add(1, Ordering::Relaxed);
            pipeline.consumption.taken_one.notify_one();
            return SentAhead::Answer(answer);
        }
        let progress = *pipeline.progress.borrow();
        if progress.finished || progress.read_until > sequence_number {
            SentAhead::No
        } else {
            SentAhead::NotYet(pipeline.progress.clone())
        }
    }

    /// The answer the pipeline got (or will get) for an event, starting a pipeline from it when
    /// there is none that will send it.
    async fn sent_ahead(&self, sequence_number: u64) -> Option<oneshot::Receiver<Answer>> {
        let mut started = false;
        loop {
            match self.look_for(sequence_number) {
                SentAhead::Answer(answer) => return Some(answer),
                SentAhead::NotYet(mut progress) => {
                    if progress.changed().await.is_err() {
                        self.forget_pipeline();
                    }
                }
                SentAhead::No if started => return None,
                SentAhead::No => {
                    *self.lock_pipeline() =
                        Some(Pipeline::start(self.shared.clone(), sequence_number));
                    started = true;
                }
            }
        }
    }

    fn accepted(&self, sequence_number: u64) {
        if let Some(pipeline) = self.lock_pipeline().as_ref() {
            pipeline
                .consumption
                .accepted_until
                .store(sequence_number + 1, Ordering::Relaxed);
        }
    }

    /// Processes an event on its own, without the pipeline.
    async fn process_alone(&self, event: &CommittedEvent, retry: Option<RetryState>) -> Answer {
        let key = match self.shared.key_of(event) {
            Ok(key) => key,
            Err(error) => return Ok(key_failure(error)),
        };
        let state = match self.shared.latest_state(&key).await {
            Ok(state) => state,
            Err(error) => return Ok(store_failure(error)),
        };
        self.shared.project(event.clone(), key, state, retry).await
    }
}

fn key_failure(error: KeyError) -> Outcome<ReadModelChange> {
    Outcome::Failed {
        reason: error.to_string(),
        retry_after: None,
    }
}

fn store_failure(error: StoreError) -> Outcome<ReadModelChange> {
    Outcome::Failed {
        reason: format!("the read models could not be read: {error}"),
        retry_after: Some(Duration::from_secs(1)),
    }
}

/// The latest state a pipeline knows of a key, and the event that made it.
struct KnownState {
    made_by: u64,
    state: Option<String>,
}

/// Reads the source ahead of the stream processor and sends its requests: the events of one
/// key one after the other, each with the state the previous one made; the next events of up to
/// [`IN_FLIGHT_LIMIT`] keys at once, earliest first; never more than [`LOOKAHEAD`] answers that
/// the processor has not taken. Every answer goes to its event's slot. After a failure (or an
/// event whose key cannot be found) nothing after that event is sent, because the stream
/// processor halts there; the events before it are still answered. The pipeline finishes when
/// it reaches the end of the source or after a failure.
async fn run_pipeline(
    shared: Arc<Shared>,
    from: u64,
    answers: Arc<Mutex<HashMap<u64, oneshot::Receiver<Answer>>>>,
    progress: watch::Sender<Progress>,
    consumption: Arc<Consumption>,
) {
    let filter = source_filter(&shared.definition);
    let mut next = from;
    let mut created: u64 = 0;
    let mut exhausted = false;
    // Nothing after this sequence number is sent.
    let mut limit = u64::MAX;
    let mut events: HashMap<u64, (CommittedEvent, String)> = HashMap::new();
    let mut senders: HashMap<u64, oneshot::Sender<Answer>> = HashMap::new();
    // The keys with an event in flight, and their events waiting behind it.
    let mut waiting: HashMap<String, VecDeque<u64>> = HashMap::new();
    let mut ready: BTreeSet<u64> = BTreeSet::new();
    let mut known: HashMap<String, KnownState> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    loop {
        let ahead = created.saturating_sub(consumption.taken.load(Ordering::Relaxed));
        let room = LOOKAHEAD.saturating_sub(ahead as usize).min(PAGE_SIZE);
        if !exhausted && room >= PAGE_SIZE.min(LOOKAHEAD) / 2 {
            let page = match shared
                .store
                .read_log(shared.definition.scope, next, room, &filter)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "a projection could not read ahead; processing without");
                    exhausted = true;
                    continue;
                }
            };
            exhausted = page.events.len() < room;
            next = page.next.max(next);
            // States the processor has accepted are remembered by it; forget them here.
            let accepted = consumption.accepted_until.load(Ordering::Relaxed);
            known.retain(|_, known| known.made_by >= accepted);
            let mut slots = Vec::with_capacity(page.events.len());
            for event in page.events {
                let sequence_number = event.sequence_number;
                let (sender, receiver) = oneshot::channel();
                slots.push((sequence_number, receiver));
                created += 1;
                let key = match shared.key_of(&event) {
                    Ok(key) => key,
                    Err(error) => {
                        let _ = sender.send(Ok(key_failure(error)));
                        limit = sequence_number;
                        exhausted = true;
                        next = sequence_number + 1;
                        break;
                    }
                };
                senders.insert(sequence_number, sender);
                match waiting.get_mut(&key) {
                    Some(queue) => queue.push_back(sequence_number),
                    None => {
                        waiting.insert(key.clone(), VecDeque::new());
                        ready.insert(sequence_number);
                    }
                }
                events.insert(sequence_number, (event, key));
            }
            answers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend(slots);
            progress.send_replace(Progress {
                read_until: next,
                finished: false,
            });
        }
        while in_flight.len() < IN_FLIGHT_LIMIT {
            let Some(sequence_number) = ready.pop_first() else {
                break;
            };
            let Some((event, key)) = events.remove(&sequence_number) else {
                continue;
            };
            let Some(sender) = senders.remove(&sequence_number) else {
                continue;
            };
            if sequence_number > limit {
                continue;
            }
            let state = known.get(&key).map(|known| known.state.clone());
            let shared = shared.clone();
            in_flight.push(async move {
                let state = match state {
                    Some(state) => Ok(state),
                    None => shared.latest_state(&key).await,
                };
                let answer = match state {
                    Ok(state) => shared.project(event, key.clone(), state, None).await,
                    Err(error) => Ok(store_failure(error)),
                };
                (sequence_number, key, sender, answer)
            });
        }
        if in_flight.is_empty() {
            if exhausted {
                break;
            }
            // Waiting for the processor to take answers before reading further.
            consumption.taken_one.notified().await;
            continue;
        }
        let Some((sequence_number, key, sender, answer)) = in_flight.next().await else {
            continue;
        };
        let next_of_key = match &answer {
            Ok(Outcome::Succeeded(change)) => {
                known.insert(
                    key.clone(),
                    KnownState {
                        made_by: sequence_number,
                        state: change.state.clone(),
                    },
                );
                waiting.get_mut(&key).and_then(VecDeque::pop_front)
            }
            Ok(Outcome::Failed { .. }) => {
                limit = limit.min(sequence_number);
                exhausted = true;
                None
            }
            Err(_) => {
                let _ = sender.send(answer);
                break;
            }
        };
        let _ = sender.send(answer);
        match next_of_key {
            Some(next_event) => {
                ready.insert(next_event);
            }
            None => {
                waiting.remove(&key);
            }
        }
    }
    progress.send_replace(Progress {
        read_until: next,
        finished: true,
    });
}

#[async_trait]
impl EventProcessor for ProjectionProcessor {
    type Output = ReadModelChange;

    fn key(&self) -> ProcessorKey {
        processor_key(self.shared.definition.scope, self.shared.target_id())
    }

    fn tenant(&self) -> TenantId {
        self.shared.tenant
    }

    fn partitioned(&self) -> bool {
        false
    }

    fn source_filter(&self) -> LogFilter {
        source_filter(&self.shared.definition)
    }

    fn partition_of(&self, _event: &CommittedEvent) -> PartitionId {
        PartitionId::unpartitioned()
    }

    fn partition_filter(&self, _partition: &PartitionId) -> LogFilter {
        source_filter(&self.shared.definition)
    }

    async fn process(
        &self,
        event: &CommittedEvent,
        _partition: &PartitionId,
        retry: Option<RetryState>,
        _pending: &[ReadModelChange],
    ) -> Result<Outcome<ReadModelChange>, CallError> {
        // Every change the processor has accepted is remembered until it is committed, so the
        // pending changes need not be looked at.
        let answer = if retry.is_some() {
            self.forget_pipeline();
            self.process_alone(event, retry).await
        } else {
            match self.sent_ahead(event.sequence_number).await {
                Some(answer) => match answer.await {
                    Ok(answer) => answer,
                    // The pipeline stopped before answering; ask on its own.
                    Err(_) => self.process_alone(event, None).await,
                },
                None => self.process_alone(event, None).await,
            }
        };
        match &answer {
            Ok(Outcome::Succeeded(change)) => {
                self.shared.remember(&change.key, change.state.clone());
                self.accepted(event.sequence_number);
                self.context.metrics.event_processed();
            }
            Ok(Outcome::Failed { .. }) => {
                self.forget_pipeline();
                self.context.metrics.processing_failed();
            }
            Err(_) => self.forget_pipeline(),
        }
        answer
    }

    async fn commit(
        &self,
        outputs: &[ReadModelChange],
        state: &StreamProcessorState,
    ) -> Result<(), StoreError> {
        let shared = &self.shared;
        let scope = shared.definition.scope;
        let target = shared.target_id();
        // When this fails the stream processor keeps the changes and offers them again with
        // the next batch, so none is lost.
        shared
            .store
            .apply_read_model_changes(
                scope,
                target,
                outputs.to_vec(),
                &processor_key(scope, target),
                state,
            )
            .await?;
        // Every accepted change is in the store now, so the remembered states may be dropped.
        shared.forget_remembered_if_many();
        let Target::Rebuild(shadow) = shared.target() else {
            return Ok(());
        };
        if state.failure.is_some() {
            return Ok(());
        }
        if nothing_left(&shared.store, &shared.definition, state.position)
            .await?
            .is_some()
        {
            shared
                .store
                .promote_projection_rebuild(shadow, &shared.definition, state)
                .await?;
            *shared
                .target
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Target::Live;
            // Requests sent ahead read states under the shadow id, which is gone now.
            self.forget_pipeline();
            tracing::info!(projection = %shared.definition.projection, tenant = %shared.tenant, position = state.position, "rebuild caught up with the event log; promoted");
        }
        Ok(())
    }

    /// An operator's rebuild of a running projection: the read models are built again from the
    /// start under the shadow id of the registered definition, while readers keep getting the
    /// live ones, and promoted when the rebuild has caught up (as for a changed definition).
    async fn before_replay(&self, from: u64) -> Result<(), ReplayError> {
        if from > 0 {
            return Err(ReplayError::OnlyFromTheStart(from));
        }
        let shared = &self.shared;
        let scope = shared.definition.scope;
        let not_saved = |error: StoreError| ReplayError::NotSaved(error.to_string());
        // Nothing in the log for this projection: there is nothing to build, and a rebuild
        // would never commit (and so never be promoted).
        if nothing_left(&shared.store, &shared.definition, 0)
            .await
            .map_err(not_saved)?
            .is_some()
        {
            return Ok(());
        }
        let shadow = shadow_id(shared.definition.projection, &shared.definition);
        // What an earlier rebuild of this definition left is started afresh.
        shared
            .store
            .drop_projection(scope, shadow)
            .await
            .map_err(not_saved)?;
        shared
            .store
            .put_projection_definition(&ProjectionDefinition {
                projection: shadow,
                ..shared.definition.clone()
            })
            .await
            .map_err(not_saved)?;
        *shared
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Target::Rebuild(shadow);
        // Answers sent ahead and remembered states belong to the live read models.
        self.forget_pipeline();
        shared.lock_remembered().clear();
        tracing::info!(projection = %shared.definition.projection, tenant = %shared.tenant, shadow = %shadow, "rebuilding from the start beside the live read models");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use dolittle_store::ProjectionEventSelector;
    use dolittle_types::{EventType, ExecutionContext, Timestamp};

    use super::*;

    fn event(content: &str) -> CommittedEvent {
        CommittedEvent {
            sequence_number: 7,
            occurred: Timestamp::now(),
            event_source: "Source-1".into(),
            execution_context: ExecutionContext::default(),
            event_type: EventType::new(EventTypeId(Uuid::from_u128(1)), 1),
            public: false,
            content: content.to_owned(),
            aggregate: None,
            event_horizon: None,
        }
    }

    fn property(name: &str) -> KeySelector {
        KeySelector::Property(name.to_owned())
    }

    #[test]
    fn keys_from_the_event_source_and_the_partition() {
        let event = event("{}");
        assert_eq!(
            key_of(&KeySelector::EventSource, &event).as_deref(),
            Ok("Source-1")
        );
        assert_eq!(
            key_of(&KeySelector::Partition, &event).as_deref(),
            Ok("00000000-0000-0000-0000-000000000000")
        );
    }

    #[test]
    fn property_keys_are_turned_into_text_as_newtonsoft_does() {
        let content = r#"{"s":"text","i":42,"f":1.5,"t":true,"n":null,"o":{"a":1},"l":[1,2]}"#;
        let event = event(content);
        let key = |name: &str| key_of(&property(name), &event).expect("key");
        assert_eq!(key("s"), "text");
        assert_eq!(key("i"), "42");
        assert_eq!(key("f"), "1.5");
        assert_eq!(key("t"), "True");
        assert_eq!(key("n"), "");
        assert_eq!(key("o"), "{\n  \"a\": 1\n}");
        assert_eq!(key("l"), "[\n  1,\n  2\n]");
        assert_eq!(
            key_of(&property("f"), &self::event(r#"{"f":false}"#)).as_deref(),
            Ok("False")
        );
    }

    #[test]
    fn a_missing_property_names_the_property_and_the_event() {
        let error = key_of(&property("orderId"), &event(r#"{"other":1}"#)).expect_err("missing");
        assert_eq!(
            error,
            KeyError::MissingProperty {
                property: "orderId".into(),
                sequence_number: 7
            }
        );
        assert!(error.to_string().contains("'orderId'"));
        assert!(error.to_string().contains("event 7"));
        assert!(matches!(
            key_of(&property("orderId"), &event("[1]")),
            Err(KeyError::NotAnObject { .. })
        ));
    }

    fn definition(selectors: &[(u128, KeySelector)], initial_state: &str) -> ProjectionDefinition {
        ProjectionDefinition {
            projection: EventProcessorId(Uuid::from_u128(9)),
            scope: ScopeId::DEFAULT,
            selectors: selectors
                .iter()
                .map(|(event_type, key_selector)| ProjectionEventSelector {
                    event_type: EventTypeId(Uuid::from_u128(*event_type)),
                    key_selector: key_selector.clone(),
                })
                .collect(),
            initial_state: initial_state.to_owned(),
        }
    }

    #[test]
    fn the_order_of_selectors_does_not_change_a_definition_but_anything_else_does() {
        let original = definition(&[(1, KeySelector::EventSource), (2, property("id"))], "{}");
        let reordered = definition(&[(2, property("id")), (1, KeySelector::EventSource)], "{}");
        let id = original.projection;
        assert!(same_definition(&original, &reordered));
        assert_eq!(shadow_id(id, &original), shadow_id(id, &reordered));
        let changes = [
            definition(
                &[(1, KeySelector::EventSource), (2, property("other"))],
                "{}",
            ),
            definition(&[(1, KeySelector::Partition), (2, property("id"))], "{}"),
            definition(&[(1, KeySelector::EventSource)], "{}"),
            definition(
                &[(1, KeySelector::EventSource), (2, property("id"))],
                "{\"a\":1}",
            ),
        ];
        let rebuild = ProjectionDefinition {
            projection: shadow_id(id, &changes[0]),
            ..changes[0].clone()
        };
        assert!(is_rebuild_of(id, &rebuild));
        assert!(!is_rebuild_of(id, &original));
        assert!(!is_rebuild_of(
            EventProcessorId(Uuid::from_u128(10)),
            &rebuild
        ));
        for changed in &changes {
            assert!(!same_definition(&original, changed), "{changed:?}");
            assert_ne!(shadow_id(id, &original), shadow_id(id, changed));
            assert_ne!(shadow_id(id, changed), id);
        }
    }

    #[test]
    fn registrations_are_validated() {
        assert!(matches!(
            validate(&definition(
                &[(1, KeySelector::EventSource), (1, property("id"))],
                "{}"
            )),
            Err(RegistrationError::DuplicateEventType { .. })
        ));
        assert!(matches!(
            validate(&definition(&[(1, KeySelector::EventSource)], "{not json")),
            Err(RegistrationError::InvalidInitialState { .. })
        ));
        let mut nil = definition(&[(1, KeySelector::EventSource)], "{}");
        nil.projection = EventProcessorId::NIL;
        assert!(matches!(
            validate(&nil),
            Err(RegistrationError::InvalidId(_))
        ));
        assert!(validate(&definition(&[(1, KeySelector::EventSource)], "{}")).is_ok());
    }
}
