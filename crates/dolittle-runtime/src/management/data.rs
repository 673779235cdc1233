//! What the management API reads of a tenant's data: the Runtime itself, tenants and their
//! stores, the event log page by page, streams, aggregates, event types seen, read models,
//! event-horizon consents and subscriptions. Every read goes through the store traits.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use dolittle_store::{LogFilter, SharedEventStore};
use dolittle_types::{
    AggregateRootId, CommittedEvent, EventProcessorId, EventSourceId, EventTypeId, MicroserviceId,
    PartitionId, ScopeId, StreamId, TenantId,
};
use serde::Serialize;

use super::{ApiResult, ManagementError, QueryParameters, rfc3339};
use crate::RuntimeContext;

/// The most events (or stream entries) one page holds.
const MAXIMUM_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// How many events the event-type census reads at most, so that one request stays bounded on
/// a very long log; the answer says when it stopped early.
const EVENT_TYPE_SCAN_LIMIT: u64 = 1_000_000;

#[derive(Serialize)]
pub struct RuntimeView {
    pub version: &'static str,
    pub microservice: MicroserviceId,
    pub uptime_seconds: f64,
    pub tenants: usize,
    /// Reverse calls held open by connected heads (one per registered processor).
    pub open_reverse_calls: i64,
    pub registered_processors: usize,
}

pub async fn runtime(State(context): State<RuntimeContext>) -> ApiResult<RuntimeView> {
    Ok(Json(RuntimeView {
        version: env!("CARGO_PKG_VERSION"),
        microservice: context.config.microservice,
        uptime_seconds: context.metrics.uptime().as_secs_f64(),
        tenants: context.tenants.len(),
        open_reverse_calls: context.metrics.open_reverse_calls(),
        registered_processors: context.processors.registered().len(),
    }))
}

#[derive(Serialize)]
pub struct TenantView {
    pub id: TenantId,
    pub store: StoreView,
}

#[derive(Serialize)]
pub struct StoreView {
    pub backend: String,
    /// Where the store lives, never with a password.
    pub location: String,
}

pub async fn tenants(State(context): State<RuntimeContext>) -> ApiResult<Vec<TenantView>> {
    let tenants = context
        .tenants
        .iter()
        .map(|(tenant, store)| {
            let described = store.describe();
            TenantView {
                id: tenant,
                store: StoreView {
                    backend: described.backend,
                    location: described.location,
                },
            }
        })
        .collect();
    Ok(Json(tenants))
}

/// An event as the API shows it: its content as JSON when it is JSON.
#[derive(Serialize)]
pub struct EventView {
    pub sequence_number: u64,
    pub occurred: String,
    pub event_source: EventSourceId,
    pub event_type: EventTypeId,
    pub event_type_generation: u32,
    pub public: bool,
    pub content: serde_json::Value,
    pub correlation: String,
    pub aggregate_root: Option<AggregateRootId>,
    pub aggregate_root_version: Option<u64>,
    pub external_sequence_number: Option<u64>,
    pub consent: Option<String>,
}

impl From<CommittedEvent> for EventView {
    fn from(event: CommittedEvent) -> Self {
        let content = serde_json::from_str(&event.content)
            .unwrap_or(serde_json::Value::String(event.content));
        Self {
            sequence_number: event.sequence_number,
            occurred: rfc3339(event.occurred),
            event_source: event.event_source,
            event_type: event.event_type.id,
            event_type_generation: event.event_type.generation,
            public: event.public,
            content,
            correlation: event.execution_context.correlation.to_string(),
            aggregate_root: event.aggregate.map(|aggregate| aggregate.aggregate_root),
            aggregate_root_version: event.aggregate.map(|aggregate| aggregate.version),
            external_sequence_number: event
                .event_horizon
                .map(|horizon| horizon.external_sequence_number),
            consent: event
                .event_horizon
                .map(|horizon| horizon.consent.to_string()),
        }
    }
}

fn tenant_store(
    context: &RuntimeContext,
    tenant: &str,
) -> Result<SharedEventStore, ManagementError> {
    let tenant: TenantId = tenant
        .parse()
        .map_err(|_| ManagementError::invalid(format!("{tenant:?} is not a tenant id")))?;
    Ok(context.tenants.store(tenant)?.clone())
}

fn limit(query: &QueryParameters) -> Result<usize, ManagementError> {
    Ok(query
        .parsed::<usize>("limit")?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAXIMUM_PAGE))
}

#[derive(Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Where the next page starts.
    pub next: u64,
    /// The length of the scope's log.
    pub tail: u64,
}

pub async fn events(
    State(context): State<RuntimeContext>,
    Path(tenant): Path<String>,
    query: QueryParameters,
) -> ApiResult<EventPage> {
    let store = tenant_store(&context, &tenant)?;
    let scope = query
        .parsed::<ScopeId>("scope")?
        .unwrap_or(ScopeId::DEFAULT);
    let from = query.parsed::<u64>("from")?.unwrap_or(0);
    let limit = limit(&query)?;
    let filter = LogFilter {
        event_types: query
            .parsed::<EventTypeId>("event_type")?
            .map(|event_type| vec![event_type]),
        public_only: query.parsed::<bool>("public")?.unwrap_or(false),
        event_source: query.text("event_source").map(EventSourceId::from),
    };
    let tail = *store.watch_log(scope).borrow();
    let page = store.read_log(scope, from, limit, &filter).await?;
    Ok(Json(EventPage {
        events: page.events.into_iter().map(EventView::from).collect(),
        next: page.next,
        tail,
    }))
}

#[derive(Serialize)]
pub struct EventTypeView {
    pub id: EventTypeId,
    pub generations: Vec<u32>,
    pub events: u64,
    pub first_sequence_number: u64,
    pub last_sequence_number: u64,
    pub last_occurred: String,
}

#[derive(Serialize)]
pub struct EventTypesView {
    pub event_types: Vec<EventTypeView>,
    /// How many events were read to count them.
    pub scanned: u64,
    /// False when the log is longer than one census reads.
    pub complete: bool,
}

pub async fn event_types(
    State(context): State<RuntimeContext>,
    Path(tenant): Path<String>,
    query: QueryParameters,
) -> ApiResult<EventTypesView> {
    let store = tenant_store(&context, &tenant)?;
    let scope = query
        .parsed::<ScopeId>("scope")?
        .unwrap_or(ScopeId::DEFAULT);
    let tail = *store.watch_log(scope).borrow();
    let mut seen: BTreeMap<EventTypeId, EventTypeView> = BTreeMap::new();
    let mut from = 0;
    while from < tail && from < EVENT_TYPE_SCAN_LIMIT {
        let page = store
            .read_log(scope, from, MAXIMUM_PAGE, &LogFilter::default())
            .await?;
        for event in &page.events {
            let view = seen
                .entry(event.event_type.id)
                .or_insert_with(|| EventTypeView {
                    id: event.event_type.id,
                    generations: Vec::new(),
                    events: 0,
                    first_sequence_number: event.sequence_number,
                    last_sequence_number: event.sequence_number,
                    last_occurred: String::new(),
                });
            if !view.generations.contains(&event.event_type.generation) {
                view.generations.push(event.event_type.generation);
                view.generations.sort_unstable();
            }
            view.events += 1;
            view.last_sequence_number = event.sequence_number;
            view.last_occurred = rfc3339(event.occurred);
        }
        if page.next <= from {
            break;
        }
        from = page.next;
    }
    Ok(Json(EventTypesView {
        event_types: seen.into_values().collect(),
        scanned: from,
        complete: from >= tail,
    }))
}

#[derive(Serialize)]
pub struct StreamEventView {
    pub position: u64,
    pub partition: PartitionId,
    pub event: EventView,
}

#[derive(Serialize)]
pub struct StreamPage {
    pub events: Vec<StreamEventView>,
    pub next: u64,
    /// The length of the stream.
    pub tail: u64,
}

pub async fn stream(
    State(context): State<RuntimeContext>,
    Path((tenant, stream)): Path<(String, String)>,
    query: QueryParameters,
) -> ApiResult<StreamPage> {
    let store = tenant_store(&context, &tenant)?;
    let stream: StreamId = stream
        .parse()
        .map_err(|_| ManagementError::invalid(format!("{stream:?} is not a stream id")))?;
    let scope = query
        .parsed::<ScopeId>("scope")?
        .unwrap_or(ScopeId::DEFAULT);
    let from = query.parsed::<u64>("from")?.unwrap_or(0);
    let partition = query
        .text("partition")
        .map(|text| PartitionId(text.to_owned()));
    let limit = limit(&query)?;
    let tail = *store.watch_stream(scope, stream).borrow();
    let events = store
        .read_stream(scope, stream, from, partition.as_ref(), limit)
        .await?;
    let next = events.last().map_or(from, |event| event.position + 1);
    Ok(Json(StreamPage {
        events: events
            .into_iter()
            .map(|event| StreamEventView {
                position: event.position,
                partition: event.partition,
                event: event.event.into(),
            })
            .collect(),
        next,
        tail,
    }))
}

#[derive(Serialize)]
pub struct AggregateRootView {
    pub aggregate_root: AggregateRootId,
    pub instances: Vec<AggregateInstanceView>,
}

#[derive(Serialize)]
pub struct AggregateInstanceView {
    pub event_source: EventSourceId,
    pub version: u64,
}

pub async fn aggregates(
    State(context): State<RuntimeContext>,
    Path(tenant): Path<String>,
    query: QueryParameters,
) -> ApiResult<Vec<AggregateRootView>> {
    let store = tenant_store(&context, &tenant)?;
    let root = query.parsed::<AggregateRootId>("aggregate_root")?;
    let instances = store.list_aggregates(root).await?;
    let mut roots: BTreeMap<AggregateRootId, Vec<AggregateInstanceView>> = BTreeMap::new();
    for instance in instances {
        roots
            .entry(instance.aggregate_root)
            .or_default()
            .push(AggregateInstanceView {
                event_source: instance.event_source,
                version: instance.version,
            });
    }
    Ok(Json(
        roots
            .into_iter()
            .map(|(aggregate_root, instances)| AggregateRootView {
                aggregate_root,
                instances,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
pub struct AggregateEventsView {
    pub aggregate_root: AggregateRootId,
    pub event_source: EventSourceId,
    pub version: u64,
    pub events: Vec<EventView>,
}

pub async fn aggregate_events(
    State(context): State<RuntimeContext>,
    Path((tenant, aggregate_root, event_source)): Path<(String, String, String)>,
) -> ApiResult<AggregateEventsView> {
    let store = tenant_store(&context, &tenant)?;
    let aggregate_root: AggregateRootId = aggregate_root.parse().map_err(|_| {
        ManagementError::invalid(format!("{aggregate_root:?} is not an aggregate root id"))
    })?;
    let event_source = EventSourceId::from(event_source.as_str());
    let fetched = store.fetch_aggregate(aggregate_root, &event_source).await?;
    Ok(Json(AggregateEventsView {
        aggregate_root: fetched.aggregate_root,
        event_source: fetched.event_source,
        version: fetched.version,
        events: fetched.events.into_iter().map(EventView::from).collect(),
    }))
}

#[derive(Serialize)]
pub struct ReadModelView {
    pub key: String,
    pub state: serde_json::Value,
}

pub async fn read_models(
    State(context): State<RuntimeContext>,
    Path((tenant, projection)): Path<(String, String)>,
    query: QueryParameters,
) -> ApiResult<Vec<ReadModelView>> {
    let store = tenant_store(&context, &tenant)?;
    let projection: EventProcessorId = projection
        .parse()
        .map_err(|_| ManagementError::invalid(format!("{projection:?} is not a projection id")))?;
    let scope = query
        .parsed::<ScopeId>("scope")?
        .unwrap_or(ScopeId::DEFAULT);
    let as_json =
        |state: String| serde_json::from_str(&state).unwrap_or(serde_json::Value::String(state));
    let models = match query.text("key") {
        Some(key) => match store.get_read_model(scope, projection, key).await? {
            Some(state) => vec![ReadModelView {
                key: key.to_owned(),
                state: as_json(state),
            }],
            None => {
                return Err(ManagementError::not_found(format!(
                    "projection {projection} has no read model with key {key:?}"
                )));
            }
        },
        None => store
            .get_read_models(scope, projection)
            .await?
            .into_iter()
            .map(|(key, state)| ReadModelView {
                key,
                state: as_json(state),
            })
            .collect(),
    };
    Ok(Json(models))
}

#[derive(Serialize)]
pub struct SubscriptionView {
    pub producer_microservice: MicroserviceId,
    pub producer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: PartitionId,
    pub scope: ScopeId,
    pub position: u64,
    pub last_successfully_processed: Option<String>,
    pub failure: Option<super::processors::FailureView>,
}

pub async fn subscriptions(
    State(context): State<RuntimeContext>,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<SubscriptionView>> {
    let store = tenant_store(&context, &tenant)?;
    let states = store.list_subscription_states().await?;
    Ok(Json(
        states
            .into_iter()
            .map(|(key, state)| SubscriptionView {
                producer_microservice: key.producer_microservice,
                producer_tenant: key.producer_tenant,
                stream: key.stream,
                partition: key.partition,
                scope: key.scope,
                position: state.position,
                last_successfully_processed: state.last_successfully_processed.map(rfc3339),
                failure: state.failure.map(|failure| super::processors::FailureView {
                    reason: failure.reason,
                    attempts: failure.attempts,
                    retry_time: failure.retry_time.map(rfc3339),
                    last_failed: rfc3339(failure.last_failed),
                }),
            })
            .collect(),
    ))
}

#[derive(Serialize)]
pub struct ConsentView {
    pub producer_tenant: TenantId,
    pub consumer_microservice: MicroserviceId,
    pub consumer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: PartitionId,
    pub consent: String,
}

/// The consents in force: those of `event-horizon-consents.json` as last read (the file is
/// read again when it changes and on SIGHUP).
pub async fn consents(State(context): State<RuntimeContext>) -> ApiResult<Vec<ConsentView>> {
    let consents = context.event_horizon.consents().borrow().clone();
    Ok(Json(
        consents
            .iter()
            .flat_map(|(producer_tenant, consents)| {
                consents.iter().map(|consent| ConsentView {
                    producer_tenant: *producer_tenant,
                    consumer_microservice: consent.consumer_microservice,
                    consumer_tenant: consent.consumer_tenant,
                    stream: consent.stream,
                    partition: consent.partition.clone(),
                    consent: consent.consent.to_string(),
                })
            })
            .collect(),
    ))
}
