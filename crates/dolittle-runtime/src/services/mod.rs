//! The gRPC services of the Runtime and the routers of its endpoints. Each service converts
//! wire messages to domain types as soon as they arrive and back as they leave.

pub mod event_handlers;
pub mod event_horizon;
pub mod event_store;
pub mod filters;
pub mod projection_store;
pub mod projections;
pub mod protocols;

use std::time::Duration;

use dolittle_contracts::runtime::eventhorizon::consumer_server::ConsumerServer;
use dolittle_contracts::runtime::eventhorizon::subscriptions_server::SubscriptionsServer;
use dolittle_contracts::runtime::events::event_store_server::EventStoreServer;
use dolittle_contracts::runtime::events::processing::event_handlers_server::EventHandlersServer;
use dolittle_contracts::runtime::events::processing::filters_server::FiltersServer;
use dolittle_contracts::runtime::events::processing::projections_server::ProjectionsServer;
use dolittle_contracts::runtime::events::processing::{ProcessorFailure, RetryProcessingState};
use dolittle_contracts::runtime::projections::projections_server::ProjectionsServer as ProjectionStoreServer;
use dolittle_types::{CorrelationId, ExecutionContext, TenantId};
use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::RuntimeContext;
use crate::processing::stream_processor::{Outcome, RetryState};

/// When a head asks for a retry without saying when.
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything heads call, served on the private endpoint.
pub fn private_router(context: &RuntimeContext) -> Router {
    let limit = context.config.max_request_bytes;
    Server::builder()
        .add_service(
            EventStoreServer::new(event_store::EventStoreService::new(context.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            EventHandlersServer::new(event_handlers::EventHandlersService::new(context.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            FiltersServer::new(filters::FiltersService::new(context.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(SubscriptionsServer::new(
            event_horizon::SubscriptionsService::new(context.clone()),
        ))
        .add_service(
            ProjectionsServer::new(projections::ProjectionsService::new(context.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            ProjectionStoreServer::new(projection_store::ProjectionStoreService::new(
                context.clone(),
            ))
            .max_decoding_message_size(limit),
        )
}

/// What other Runtimes call (the event horizon), served on the public endpoint.
pub fn public_router(context: &RuntimeContext) -> Router {
    Server::builder().add_service(
        ConsumerServer::new(event_horizon::ConsumerService::new(context.clone()))
            .max_decoding_message_size(context.config.max_request_bytes),
    )
}

/// The execution context of a request the Runtime sends a head while processing for a tenant:
/// the head's microservice, version and environment, the tenant, a new correlation, no claims.
pub fn request_execution_context(head: &ExecutionContext, tenant: TenantId) -> ExecutionContext {
    ExecutionContext {
        microservice: head.microservice,
        tenant,
        version: head.version.clone(),
        correlation: CorrelationId::new_random(),
        claims: Vec::new(),
        environment: head.environment.clone(),
    }
}

/// The retry state of a request, on the wire.
pub fn retry_to_wire(retry: Option<RetryState>) -> Option<RetryProcessingState> {
    retry.map(|retry| RetryProcessingState {
        failure_reason: retry.reason,
        retry_count: retry.retry_count,
    })
}

/// What a head's answer means: success, or a failure with its retry wish.
pub fn outcome_of<Output>(failure: Option<ProcessorFailure>, output: Output) -> Outcome<Output> {
    match failure {
        None => Outcome::Succeeded(output),
        Some(failure) => Outcome::Failed {
            reason: failure.reason,
            retry_after: failure.retry.then(|| {
                failure
                    .retry_timeout
                    .and_then(|timeout| Duration::try_from(timeout).ok())
                    .unwrap_or(DEFAULT_RETRY_TIMEOUT)
            }),
        },
    }
}
