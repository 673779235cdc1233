//! `dolittle.runtime.events.processing.Projections/Connect`: a head registers a projection on a
//! reverse call and the Runtime sends it each event with the current state of its key
//! (protocol.md §2.6, §3.5).

use std::sync::Arc;

use async_trait::async_trait;
use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::failure_ids;
use dolittle_contracts::runtime::events::processing::projection_event_selector::Selector;
use dolittle_contracts::runtime::events::processing::projection_response::Response as WireProjected;
use dolittle_contracts::runtime::events::processing::projections_server::Projections;
use dolittle_contracts::runtime::events::processing::{
    ProjectionClientToRuntimeMessage, ProjectionRegistrationRequest, ProjectionRequest,
};
use dolittle_contracts::runtime::projections::{
    ProjectionCurrentState, ProjectionCurrentStateType,
};
use dolittle_store::{KeySelector, ProjectionDefinition, ProjectionEventSelector};
use dolittle_types::{CommittedEvent, EventProcessorId, PartitionId, ScopeId, TenantId};
use tonic::{Request, Response, Status, Streaming};

use crate::RuntimeContext;
use crate::failures::failure;
use crate::processing::projections::{
    CurrentState, CurrentStateKind, Projected, ProjectionHead, register,
};
use crate::processing::stream_processor::{Outcome, RetryState};
use crate::reverse_calls::{self, CallError, HeadConnection, OutgoingStream, Registration};
use crate::services::protocols::ProjectionProtocol;
use crate::services::{outcome_of, request_execution_context, retry_to_wire};

pub struct ProjectionsService {
    context: RuntimeContext,
}

impl ProjectionsService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }
}

fn definition_from_wire(
    registration: ProjectionRegistrationRequest,
) -> Result<ProjectionDefinition, ConversionError> {
    let selectors = registration
        .events
        .iter()
        .enumerate()
        .map(|(index, selector)| {
            let field = format!("events[{index}]");
            let event_type = convert::event_type_from_wire(
                &format!("{field}.eventType"),
                selector.event_type.as_ref(),
            )?;
            let key_selector = match &selector.selector {
                Some(Selector::EventSourceKeySelector(_)) => KeySelector::EventSource,
                Some(Selector::PartitionKeySelector(_)) => KeySelector::Partition,
                Some(Selector::EventPropertyKeySelector(property)) => {
                    KeySelector::Property(property.property_name.clone())
                }
                None => {
                    return Err(ConversionError::Missing {
                        field: format!("{field}.selector"),
                    });
                }
            };
            Ok(ProjectionEventSelector {
                event_type: event_type.id,
                key_selector,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProjectionDefinition {
        projection: convert::required_guid::<EventProcessorId>(
            "projectionId",
            registration.projection_id.as_ref(),
        )?,
        scope: convert::optional_guid::<ScopeId>("scopeId", registration.scope_id.as_ref())?
            .unwrap_or_default(),
        selectors,
        initial_state: registration.initial_state,
    })
}

/// A current state on the wire.
pub fn current_state_to_wire(current: CurrentState) -> ProjectionCurrentState {
    let kind = match current.kind {
        CurrentStateKind::CreatedFromInitialState => {
            ProjectionCurrentStateType::CreatedFromInitialState
        }
        CurrentStateKind::Persisted => ProjectionCurrentStateType::Persisted,
    };
    ProjectionCurrentState {
        r#type: kind as i32,
        key: current.key,
        state: current.state,
    }
}

#[tonic::async_trait]
impl Projections for ProjectionsService {
    type ConnectStream = OutgoingStream<ProjectionProtocol>;

    async fn connect(
        &self,
        request: Request<Streaming<ProjectionClientToRuntimeMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let context = self.context.clone();
        let stream = reverse_calls::serve::<ProjectionProtocol, _, _>(
            request.into_inner(),
            &self.context,
            move |registration, connection| async move {
                let definition = match definition_from_wire(registration) {
                    Ok(definition) => definition,
                    Err(error) => {
                        return Registration::Refused(failure(
                            failure_ids::FAILED_TO_REGISTER_PROJECTION,
                            format!("Failed to register Projection: {error}"),
                        ));
                    }
                };
                let head = Arc::new(WireProjectionHead {
                    connection: connection.clone(),
                    scope: definition.scope,
                });
                let id = definition.projection;
                match register(
                    &context,
                    definition,
                    head,
                    connection.cancellation().clone(),
                )
                .await
                {
                    Ok(()) => {
                        tracing::info!(projection = %id, "projection registered");
                        Registration::Accepted
                    }
                    Err(error) => Registration::Refused(failure(
                        failure_ids::FAILED_TO_REGISTER_PROJECTION,
                        error.to_string(),
                    )),
                }
            },
        );
        Ok(Response::new(stream))
    }
}

/// Sends events to a head's projection over its reverse call.
struct WireProjectionHead {
    connection: Arc<HeadConnection<ProjectionProtocol>>,
    scope: ScopeId,
}

#[async_trait]
impl ProjectionHead for WireProjectionHead {
    async fn project(
        &self,
        tenant: TenantId,
        event: CommittedEvent,
        current: CurrentState,
        retry: Option<RetryState>,
    ) -> Result<Outcome<Projected>, CallError> {
        let request = ProjectionRequest {
            call_context: None,
            current_state: Some(current_state_to_wire(current)),
            event: Some(convert::stream_event_to_wire(
                event,
                &PartitionId::unpartitioned(),
                self.scope,
                false,
            )),
            retry_processing_state: retry_to_wire(retry),
        };
        let execution_context = request_execution_context(&self.connection.head_context, tenant);
        let response = self.connection.call(request, &execution_context).await?;
        if response.failure.is_some() {
            return Ok(outcome_of(response.failure, Projected::Delete));
        }
        Ok(match response.response {
            Some(WireProjected::Replace(replace)) => {
                Outcome::Succeeded(Projected::Replace(replace.state))
            }
            Some(WireProjected::Delete(_)) => Outcome::Succeeded(Projected::Delete),
            None => Outcome::Failed {
                reason: "the head answered with neither a new state, a delete nor a failure"
                    .to_owned(),
                retry_after: Some(std::time::Duration::from_secs(5)),
            },
        })
    }
}
