//! Event handlers, filters and projections as an operator sees them: what each one is (scope,
//! partitioned, event types) and, per tenant, where it is (position, log tail, lag) and how it
//! is (running, idle, failing, with its failing partitions). Registered processors are read
//! from their live state; processors no head has registered from their stored state.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dolittle_store::{
    FilterDefinition, ProcessorKey, ProcessorKind, ProjectionDefinition, StreamProcessorState,
};
use dolittle_types::{EventProcessorId, PartitionId, ScopeId, TenantId};
use serde::{Deserialize, Serialize};

use super::{ApiResult, ManagementError, QueryParameters, REFUSED, rfc3339};
use crate::RuntimeContext;
use crate::processing::{RegisteredProcessor, ReplayFailure};

/// One processor and its state in every tenant where it has one.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorView {
    pub kind: &'static str,
    pub id: EventProcessorId,
    pub scope: ScopeId,
    pub partitioned: bool,
    pub event_types: Vec<String>,
    /// Whether a connected head has registered it now.
    pub registered: bool,
    pub tenants: Vec<TenantProcessorView>,
}

/// A processor in one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantProcessorView {
    pub tenant: TenantId,
    /// `running`, `idle` (no head has registered it) or `failing`.
    pub state: &'static str,
    /// The next event-log sequence number the processor will process.
    pub position: u64,
    /// The length of the scope's event log.
    pub log_tail: u64,
    /// Events between the position and the log tail.
    pub lag: u64,
    /// A projection being rebuilt from the start beside its live read models: the position and
    /// lag are the rebuild's, and readers get the live read models until it has caught up.
    pub rebuilding: bool,
    pub last_successfully_processed: Option<String>,
    /// Why an unpartitioned processor is halted.
    pub failure: Option<FailureView>,
    pub failing_partitions: Vec<FailingPartitionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub reason: String,
    pub attempts: u32,
    pub retry_time: Option<String>,
    pub last_failed: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailingPartitionView {
    pub partition: PartitionId,
    pub position: u64,
    pub reason: String,
    pub attempts: u32,
    pub retry_time: Option<String>,
    pub last_failed: String,
}

struct Definition {
    partitioned: bool,
    event_types: Vec<String>,
}

/// Every processor the Runtime knows of (registered now, or with a stored state), optionally of
/// one kind and one tenant, ordered by kind, scope and id.
pub async fn collect(
    context: &RuntimeContext,
    kind: Option<ProcessorKind>,
    tenant: Option<TenantId>,
) -> Result<Vec<ProcessorView>, ManagementError> {
    if let Some(tenant) = tenant {
        context.tenants.store(tenant)?;
    }
    let registered: HashMap<ProcessorKey, RegisteredProcessor> =
        context.processors.registered().into_iter().collect();
    let wanted = |key: &ProcessorKey| kind.is_none_or(|kind| key.kind == kind);
    let mut views: BTreeMap<ProcessorKey, ProcessorView> = BTreeMap::new();
    for (tenant_id, store) in context.tenants.iter() {
        if tenant.is_some_and(|tenant| tenant != tenant_id) {
            continue;
        }
        let (states, streams, projections) = futures::future::try_join3(
            store.list_processor_states(),
            store.list_stream_definitions(),
            store.list_projection_definitions(),
        )
        .await?;
        let mut definitions: HashMap<ProcessorKey, Definition> = HashMap::new();
        for (scope, stream) in streams {
            let (kind, event_types) = match &stream.filter {
                FilterDefinition::EventTypes(types) => (
                    ProcessorKind::EventHandler,
                    types.iter().map(ToString::to_string).collect(),
                ),
                FilterDefinition::Remote => (ProcessorKind::Filter, Vec::new()),
            };
            let key = ProcessorKey {
                kind,
                scope,
                processor: EventProcessorId(stream.stream.0),
            };
            definitions.insert(
                key,
                Definition {
                    partitioned: stream.partitioned,
                    event_types,
                },
            );
        }
        for projection in &projections {
            let key = ProcessorKey {
                kind: ProcessorKind::Projection,
                scope: projection.scope,
                processor: projection.projection,
            };
            definitions.insert(
                key,
                Definition {
                    partitioned: false,
                    event_types: projection
                        .selectors
                        .iter()
                        .map(|selector| selector.event_type.to_string())
                        .collect(),
                },
            );
        }
        let rebuilds = rebuilds(&projections);
        let mut tenant_states: BTreeMap<ProcessorKey, (StreamProcessorState, bool)> = states
            .into_iter()
            .map(|(key, state)| (key, (state, false)))
            .collect();
        // A rebuild is shown as its projection's state, not as a projection of its own.
        let mut rebuilding = Vec::new();
        for (shadow, projection) in &rebuilds {
            if let Some((state, _)) = tenant_states.remove(shadow) {
                tenant_states.insert(*projection, (state, false));
                rebuilding.push(*projection);
            }
        }
        for (key, processor) in &registered {
            if let Some(live) = processor.states.get(&tenant_id) {
                tenant_states.insert(*key, (live.borrow().clone(), true));
            }
        }
        for (key, (state, live)) in tenant_states {
            if !wanted(&key) {
                continue;
            }
            let view = views.entry(key).or_insert_with(|| ProcessorView {
                kind: key.kind.as_str(),
                id: key.processor,
                scope: key.scope,
                partitioned: state.partitioned,
                event_types: Vec::new(),
                registered: registered.contains_key(&key),
                tenants: Vec::new(),
            });
            if let Some(definition) = definitions.get(&key) {
                view.partitioned = definition.partitioned;
                if view.event_types.is_empty() {
                    view.event_types = definition.event_types.clone();
                }
            }
            let log_tail = *store.watch_log(key.scope).borrow();
            let mut tenant = tenant_view(tenant_id, &state, live, log_tail);
            tenant.rebuilding = rebuilding.contains(&key);
            view.tenants.push(tenant);
        }
    }
    Ok(views.into_values().collect())
}

/// The processor keys of projection rebuilds (stored under shadow ids) and of the projections
/// they rebuild.
fn rebuilds(projections: &[ProjectionDefinition]) -> Vec<(ProcessorKey, ProcessorKey)> {
    let key = |definition: &ProjectionDefinition| ProcessorKey {
        kind: ProcessorKind::Projection,
        scope: definition.scope,
        processor: definition.projection,
    };
    projections
        .iter()
        .filter_map(|shadow| {
            projections
                .iter()
                .find(|live| {
                    live.scope == shadow.scope
                        && crate::processing::projections::is_rebuild_of(live.projection, shadow)
                })
                .map(|live| (key(shadow), key(live)))
        })
        .collect()
}

pub(crate) fn tenant_view(
    tenant: TenantId,
    state: &StreamProcessorState,
    live: bool,
    log_tail: u64,
) -> TenantProcessorView {
    let failing = state.failure.is_some() || !state.failing_partitions.is_empty();
    TenantProcessorView {
        tenant,
        state: match (failing, live) {
            (true, _) => "failing",
            (false, true) => "running",
            (false, false) => "idle",
        },
        position: state.position,
        log_tail,
        lag: log_tail.saturating_sub(state.position),
        rebuilding: false,
        last_successfully_processed: state.last_successfully_processed.map(rfc3339),
        failure: state.failure.as_ref().map(|failure| FailureView {
            reason: failure.reason.clone(),
            attempts: failure.attempts,
            retry_time: failure.retry_time.map(rfc3339),
            last_failed: rfc3339(failure.last_failed),
        }),
        failing_partitions: state
            .failing_partitions
            .iter()
            .map(|(partition, failing)| FailingPartitionView {
                partition: partition.clone(),
                position: failing.position,
                reason: failing.reason.clone(),
                attempts: failing.attempts,
                retry_time: failing.retry_time.map(rfc3339),
                last_failed: rfc3339(failing.last_failed),
            })
            .collect(),
    }
}

async fn list(
    context: &RuntimeContext,
    kind: Option<ProcessorKind>,
    query: &QueryParameters,
) -> ApiResult<Vec<ProcessorView>> {
    let tenant = query.parsed::<TenantId>("tenant")?;
    let scope = query.parsed::<ScopeId>("scope")?;
    let mut views = collect(context, kind, tenant).await?;
    if let Some(scope) = scope {
        views.retain(|view| view.scope == scope);
    }
    Ok(Json(views))
}

/// One processor by id; `?scope=` chooses when the id is used in more than one scope.
async fn get_one(
    context: &RuntimeContext,
    kind: ProcessorKind,
    id: &str,
    query: &QueryParameters,
) -> Result<ProcessorView, ManagementError> {
    let id: EventProcessorId = id
        .parse()
        .map_err(|_| ManagementError::invalid(format!("{id:?} is not a processor id")))?;
    let tenant = query.parsed::<TenantId>("tenant")?;
    let scope = query.parsed::<ScopeId>("scope")?;
    let mut found: Vec<ProcessorView> = collect(context, Some(kind), tenant)
        .await?
        .into_iter()
        .filter(|view| view.id == id && scope.is_none_or(|scope| view.scope == scope))
        .collect();
    match found.len() {
        0 => Err(ManagementError::not_found(format!(
            "there is no {} {id}{}",
            noun(kind),
            scope.map_or_else(String::new, |scope| format!(" in scope {scope}"))
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(ManagementError::invalid(format!(
            "{} {id} exists in more than one scope: say which with scope",
            noun(kind)
        ))),
    }
}

fn noun(kind: ProcessorKind) -> &'static str {
    match kind {
        ProcessorKind::EventHandler => "event handler",
        ProcessorKind::Filter => "filter",
        ProcessorKind::Projection => "projection",
    }
}

pub async fn list_all(
    State(context): State<RuntimeContext>,
    query: QueryParameters,
) -> ApiResult<Vec<ProcessorView>> {
    let kind = match query.text("kind") {
        Some(text) => Some(ProcessorKind::parse(text).ok_or_else(|| {
            ManagementError::invalid(format!(
                "kind {text:?} is not event-handler, filter or projection"
            ))
        })?),
        None => None,
    };
    list(&context, kind, &query).await
}

pub async fn list_event_handlers(
    State(context): State<RuntimeContext>,
    query: QueryParameters,
) -> ApiResult<Vec<ProcessorView>> {
    list(&context, Some(ProcessorKind::EventHandler), &query).await
}

pub async fn list_filters(
    State(context): State<RuntimeContext>,
    query: QueryParameters,
) -> ApiResult<Vec<ProcessorView>> {
    list(&context, Some(ProcessorKind::Filter), &query).await
}

pub async fn list_projections(
    State(context): State<RuntimeContext>,
    query: QueryParameters,
) -> ApiResult<Vec<ProcessorView>> {
    list(&context, Some(ProcessorKind::Projection), &query).await
}

pub async fn get_event_handler(
    State(context): State<RuntimeContext>,
    Path(id): Path<String>,
    query: QueryParameters,
) -> ApiResult<ProcessorView> {
    get_one(&context, ProcessorKind::EventHandler, &id, &query)
        .await
        .map(Json)
}

pub async fn get_filter(
    State(context): State<RuntimeContext>,
    Path(id): Path<String>,
    query: QueryParameters,
) -> ApiResult<ProcessorView> {
    get_one(&context, ProcessorKind::Filter, &id, &query)
        .await
        .map(Json)
}

pub async fn get_projection(
    State(context): State<RuntimeContext>,
    Path(id): Path<String>,
    query: QueryParameters,
) -> ApiResult<ProcessorView> {
    get_one(&context, ProcessorKind::Projection, &id, &query)
        .await
        .map(Json)
}

/// What a replay asks for. Every field may be left out: all tenants, from the start, every
/// partition, the scope the processor is found in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub tenant: Option<TenantId>,
    pub from: Option<u64>,
    pub partition: Option<PartitionId>,
    pub scope: Option<ScopeId>,
}

/// What a replay answers: the processor as it is right after the replay was accepted.
#[derive(Debug, Serialize)]
pub struct ReplayResponse {
    pub replayed: ProcessorView,
}

pub async fn replay_event_handler(
    State(context): State<RuntimeContext>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<ReplayResponse> {
    let (request, lookup) = replay_request(&body)?;
    let found = get_one(&context, ProcessorKind::EventHandler, &id, &lookup).await?;
    replay_and_show(
        &context,
        ProcessorKind::EventHandler,
        &found,
        &lookup,
        request.tenant,
        request.from,
        request.partition,
    )
    .await
}

/// A replay request from its body (empty: every default), and the lookup of its processor.
fn replay_request(body: &[u8]) -> Result<(ReplayRequest, QueryParameters), ManagementError> {
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(body).map_err(ManagementError::invalid)?
    };
    let lookup = QueryParameters::parse(
        request
            .scope
            .map(|scope| format!("scope={scope}"))
            .as_deref(),
    );
    Ok((request, lookup))
}

/// Replays a processor that was found, and answers it as it is right after.
async fn replay_and_show(
    context: &RuntimeContext,
    kind: ProcessorKind,
    found: &ProcessorView,
    lookup: &QueryParameters,
    tenant: Option<TenantId>,
    from: Option<u64>,
    partition: Option<PartitionId>,
) -> ApiResult<ReplayResponse> {
    let key = ProcessorKey {
        kind,
        scope: found.scope,
        processor: found.id,
    };
    crate::processing::replay(context, key, tenant, from, partition)
        .await
        .map_err(replay_error)?;
    let replayed = get_one(context, kind, &found.id.to_string(), lookup).await?;
    Ok(Json(ReplayResponse { replayed }))
}

fn replay_error(failure: ReplayFailure) -> ManagementError {
    match failure {
        ReplayFailure::Refused { .. } => {
            ManagementError::new(StatusCode::CONFLICT, REFUSED, failure.to_string())
        }
        ReplayFailure::UnknownTenant(tenant) => crate::tenants::TenantError::Unknown(tenant).into(),
        ReplayFailure::NeverRan(..) => ManagementError::not_found(failure.to_string()),
        ReplayFailure::Store { error, .. } => error.into(),
        ReplayFailure::Stopped => ManagementError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            REFUSED,
            failure.to_string(),
        ),
    }
}

/// Rebuilds a projection from the start of the event log. A registered projection rebuilds
/// beside its live read models, which readers keep getting until the rebuild has caught up and
/// replaces them in one step. A projection no head has registered now has its read models,
/// definition and state dropped, so that the next registration builds it from the start;
/// readers find no read models until then.
pub async fn replay_projection(
    State(context): State<RuntimeContext>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<ReplayResponse> {
    let (request, lookup) = replay_request(&body)?;
    if request.from.is_some_and(|from| from > 0) || request.partition.is_some() {
        return Err(ManagementError::invalid(
            "a projection is rebuilt from the start: from and partition do not apply",
        ));
    }
    let found = get_one(&context, ProcessorKind::Projection, &id, &lookup).await?;
    if found.registered {
        return replay_and_show(
            &context,
            ProcessorKind::Projection,
            &found,
            &lookup,
            request.tenant,
            Some(0),
            None,
        )
        .await;
    }
    let tenants = match request.tenant {
        Some(tenant) => vec![tenant],
        None => found.tenants.iter().map(|entry| entry.tenant).collect(),
    };
    for tenant in tenants {
        let store = context.tenants.store(tenant)?;
        store.drop_projection(found.scope, found.id).await?;
    }
    let replayed = ProcessorView {
        tenants: Vec::new(),
        ..found
    };
    Ok(Json(ReplayResponse { replayed }))
}
