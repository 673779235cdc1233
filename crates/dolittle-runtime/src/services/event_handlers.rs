//! `dolittle.runtime.events.processing.EventHandlers/Connect`: a head registers an event
//! handler on a reverse call and the Runtime sends it the events to handle (protocol.md §3.3).

use std::sync::Arc;

use async_trait::async_trait;
use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::failure_ids;
use dolittle_contracts::runtime::events::processing::event_handlers_server::EventHandlers;
use dolittle_contracts::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, HandleEventRequest,
};
use dolittle_types::{CommittedEvent, EventProcessorId, PartitionId, ScopeId, TenantId};
use tonic::{Request, Response, Status, Streaming};

use crate::RuntimeContext;
use crate::failures::failure;
use crate::processing::event_handlers::{
    EventHandlerDefinition, EventHandlerHead, RegistrationError, register,
};
use crate::processing::stream_processor::{Outcome, RetryState};
use crate::reverse_calls::{self, CallError, HeadConnection, OutgoingStream, Registration};
use crate::services::protocols::EventHandlerProtocol;
use crate::services::{outcome_of, request_execution_context, retry_to_wire};

pub struct EventHandlersService {
    context: RuntimeContext,
}

impl EventHandlersService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }
}

fn definition_from_wire(
    registration: EventHandlerRegistrationRequest,
) -> Result<EventHandlerDefinition, ConversionError> {
    let types = registration
        .types
        .iter()
        .enumerate()
        .map(|(index, artifact)| {
            convert::event_type_from_wire(&format!("types[{index}]"), Some(artifact))
                .map(|event_type| event_type.id)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EventHandlerDefinition {
        id: convert::required_guid::<EventProcessorId>(
            "eventHandlerId",
            registration.event_handler_id.as_ref(),
        )?,
        scope: convert::optional_guid::<ScopeId>("scopeId", registration.scope_id.as_ref())?
            .unwrap_or_default(),
        types,
        partitioned: registration.partitioned,
    })
}

fn refusal(error: &RegistrationError) -> dolittle_contracts::protobuf::Failure {
    let id = match error {
        RegistrationError::InvalidId(_) => {
            failure_ids::CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM
        }
        _ => failure_ids::FAILED_TO_REGISTER_EVENT_HANDLER,
    };
    failure(id, error.to_string())
}

#[tonic::async_trait]
impl EventHandlers for EventHandlersService {
    type ConnectStream = OutgoingStream<EventHandlerProtocol>;

    async fn connect(
        &self,
        request: Request<Streaming<EventHandlerClientToRuntimeMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let context = self.context.clone();
        let stream = reverse_calls::serve::<EventHandlerProtocol, _, _>(
            request.into_inner(),
            &self.context,
            move |registration, connection| async move {
                let definition = match definition_from_wire(registration) {
                    Ok(definition) => definition,
                    Err(error) => {
                        return Registration::Refused(failure(
                            failure_ids::FAILED_TO_REGISTER_EVENT_HANDLER,
                            format!("Failed to register Event Handler: {error}"),
                        ));
                    }
                };
                let head = Arc::new(WireEventHandlerHead {
                    connection: connection.clone(),
                    scope: definition.scope,
                    partitioned: definition.partitioned,
                });
                let id = definition.id;
                match register(
                    &context,
                    definition,
                    head,
                    connection.cancellation().clone(),
                )
                .await
                {
                    Ok(()) => {
                        tracing::info!(event_handler = %id, "event handler registered");
                        Registration::Accepted
                    }
                    Err(error) => Registration::Refused(refusal(&error)),
                }
            },
        );
        Ok(Response::new(stream))
    }
}

/// Sends events to a head's event handler over its reverse call.
struct WireEventHandlerHead {
    connection: Arc<HeadConnection<EventHandlerProtocol>>,
    scope: ScopeId,
    partitioned: bool,
}

#[async_trait]
impl EventHandlerHead for WireEventHandlerHead {
    async fn handle(
        &self,
        tenant: TenantId,
        event: &CommittedEvent,
        partition: &PartitionId,
        retry: Option<RetryState>,
    ) -> Result<Outcome<()>, CallError> {
        let request = HandleEventRequest {
            call_context: None,
            event: Some(convert::stream_event_to_wire(
                event.clone(),
                partition,
                self.scope,
                self.partitioned,
            )),
            retry_processing_state: retry_to_wire(retry),
        };
        let execution_context = request_execution_context(&self.connection.head_context, tenant);
        let response = self.connection.call(request, &execution_context).await?;
        Ok(outcome_of(response.failure, ()))
    }
}
