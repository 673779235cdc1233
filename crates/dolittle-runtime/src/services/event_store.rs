//! `dolittle.runtime.events.EventStore`: Commit, CommitForAggregate and FetchForAggregate
//! (protocol.md §3.2). Every failure is returned inside the response with status OK, as the
//! SDKs expect; the tenant is the request's execution context's.

use std::time::Instant;

use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::events::event_store_server::EventStore;
use dolittle_contracts::runtime::events::{
    CommitAggregateEventsRequest, CommitAggregateEventsResponse, CommitEventsRequest,
    CommitEventsResponse, FetchForAggregateRequest, FetchForAggregateResponse,
};
use dolittle_store::SharedEventStore;
use dolittle_types::{ExecutionContext, UncommittedAggregateEvents, UncommittedEvent};
use tonic::{Request, Response, Status};

use crate::RuntimeContext;
use crate::failures::{invalid_request, store_failure, tenant_failure};

/// The event store service of the private endpoint.
pub struct EventStoreService {
    context: RuntimeContext,
}

impl EventStoreService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }

    /// The execution context of a call and the store of its tenant.
    fn resolve(
        &self,
        call_context: Option<dolittle_contracts::services::CallRequestContext>,
    ) -> Result<(ExecutionContext, SharedEventStore), Failure> {
        let execution_context =
            convert::execution_context_from_call_context(call_context).map_err(invalid_request)?;
        let store = self
            .context
            .tenants
            .store(execution_context.tenant)
            .map_err(|error| tenant_failure(&error))?
            .clone();
        Ok((execution_context, store))
    }
}

fn events_from_wire(
    events: Vec<dolittle_contracts::runtime::events::UncommittedEvent>,
) -> Result<Vec<UncommittedEvent>, ConversionError> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            UncommittedEvent::try_from(event)
                .map_err(|error| error.within(format!("events[{index}]")))
        })
        .collect()
}

#[tonic::async_trait]
impl EventStore for EventStoreService {
    async fn commit(
        &self,
        request: Request<CommitEventsRequest>,
    ) -> Result<Response<CommitEventsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let (execution_context, store) = match self.resolve(request.call_context) {
            Ok(resolved) => resolved,
            Err(failure) => {
                return Ok(Response::new(CommitEventsResponse {
                    failure: Some(failure),
                    events: vec![],
                }));
            }
        };
        let tenant = execution_context.tenant;
        let events = match events_from_wire(request.events) {
            Ok(events) => events,
            Err(error) => {
                self.context.metrics.commit_failed(tenant);
                return Ok(Response::new(CommitEventsResponse {
                    failure: Some(invalid_request(error)),
                    events: vec![],
                }));
            }
        };
        let response = match store.commit(events, &execution_context).await {
            Ok(committed) => {
                self.context
                    .metrics
                    .commit_succeeded(tenant, committed.len(), started);
                CommitEventsResponse {
                    failure: None,
                    events: committed.into_iter().map(Into::into).collect(),
                }
            }
            Err(error) => {
                self.context.metrics.commit_failed(tenant);
                tracing::debug!(%tenant, %error, "commit refused");
                CommitEventsResponse {
                    failure: Some(store_failure(&error)),
                    events: vec![],
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn commit_for_aggregate(
        &self,
        request: Request<CommitAggregateEventsRequest>,
    ) -> Result<Response<CommitAggregateEventsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let refused = |failure| {
            Ok(Response::new(CommitAggregateEventsResponse {
                failure: Some(failure),
                events: None,
            }))
        };
        let (execution_context, store) = match self.resolve(request.call_context) {
            Ok(resolved) => resolved,
            Err(failure) => return refused(failure),
        };
        let tenant = execution_context.tenant;
        let Some(events) = request.events else {
            return refused(invalid_request(ConversionError::Missing {
                field: "events".into(),
            }));
        };
        let events = match UncommittedAggregateEvents::try_from(events) {
            Ok(events) => events,
            Err(error) => return refused(invalid_request(error.within("events"))),
        };
        match store.commit_aggregate(events, &execution_context).await {
            Ok(committed) => {
                self.context
                    .metrics
                    .commit_succeeded(tenant, committed.events.len(), started);
                Ok(Response::new(CommitAggregateEventsResponse {
                    failure: None,
                    events: Some(committed.into()),
                }))
            }
            Err(error) => {
                self.context.metrics.commit_failed(tenant);
                tracing::debug!(%tenant, %error, "aggregate commit refused");
                refused(store_failure(&error))
            }
        }
    }

    async fn fetch_for_aggregate(
        &self,
        request: Request<FetchForAggregateRequest>,
    ) -> Result<Response<FetchForAggregateResponse>, Status> {
        let request = request.into_inner();
        let refused = |failure| {
            Ok(Response::new(FetchForAggregateResponse {
                failure: Some(failure),
                events: None,
            }))
        };
        let (_, store) = match self.resolve(request.call_context) {
            Ok(resolved) => resolved,
            Err(failure) => return refused(failure),
        };
        let Some(aggregate) = request.aggregate else {
            return refused(invalid_request(ConversionError::Missing {
                field: "aggregate".into(),
            }));
        };
        let (aggregate_root, event_source) = match convert::aggregate_from_wire(aggregate) {
            Ok(aggregate) => aggregate,
            Err(error) => return refused(invalid_request(error.within("aggregate"))),
        };
        match store.fetch_aggregate(aggregate_root, &event_source).await {
            Ok(events) => Ok(Response::new(FetchForAggregateResponse {
                failure: None,
                events: Some(events.into()),
            })),
            Err(error) => refused(store_failure(&error)),
        }
    }
}
