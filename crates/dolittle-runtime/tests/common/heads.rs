//! A head written against the raw contracts: it opens a reverse call, registers an event
//! handler, answers pings, and hands the test each request to answer as it likes.

use std::time::Duration;

use dolittle_contracts::execution;
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
use dolittle_contracts::runtime::events::processing::event_handler_runtime_to_client_message::Message as ToHead;
use dolittle_contracts::runtime::events::processing::event_handlers_client::EventHandlersClient;
use dolittle_contracts::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, EventHandlerResponse,
    EventHandlerRuntimeToClientMessage, HandleEventRequest, ProcessorFailure,
};
use dolittle_contracts::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use dolittle_types::{CommittedEvent, EventProcessorId, EventType, ScopeId, TenantId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::{RuntimeAddress, connect, execution_context};

/// How long a test waits for something the Runtime should send.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// An event handler connected to a Runtime over a real reverse call.
pub struct TestEventHandler {
    sender: mpsc::Sender<EventHandlerClientToRuntimeMessage>,
    incoming: Streaming<EventHandlerRuntimeToClientMessage>,
    /// The failure of the registration response, if it was refused.
    pub refused: Option<Failure>,
}

impl TestEventHandler {
    pub async fn register(
        runtime: &impl RuntimeAddress,
        id: EventProcessorId,
        scope: ScopeId,
        types: &[EventType],
        partitioned: bool,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(64);
        let registration = EventHandlerRegistrationRequest {
            call_context: Some(ReverseCallArgumentsContext {
                execution_context: Some(execution::ExecutionContext::from(execution_context(
                    TenantId::SYSTEM,
                ))),
                head_id: Some(dolittle_types::Uuid::new_v4().into()),
                ping_interval: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            }),
            scope_id: Some(scope.into()),
            event_handler_id: Some(id.into()),
            types: types
                .iter()
                .map(|event_type| (*event_type).into())
                .collect(),
            partitioned,
        };
        sender
            .send(EventHandlerClientToRuntimeMessage {
                message: Some(FromHead::RegistrationRequest(registration)),
            })
            .await
            .expect("queue registration");
        let mut client = EventHandlersClient::new(connect(runtime.address()).await);
        let incoming = client
            .connect(ReceiverStream::new(receiver))
            .await
            .expect("connect")
            .into_inner();
        let mut handler = Self {
            sender,
            incoming,
            refused: None,
        };
        match handler.next_message().await {
            Some(ToHead::RegistrationResponse(response)) => {
                handler.refused = response.failure;
                handler
            }
            Some(other) => panic!("expected a registration response first, got {other:?}"),
            None => panic!("the call ended before the registration response"),
        }
    }

    /// The next message that is not a ping (pings are answered), or `None` when the call ends.
    async fn next_message(&mut self) -> Option<ToHead> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.incoming.message())
                .await
                .expect("the Runtime sent nothing in time");
            match message {
                Ok(Some(EventHandlerRuntimeToClientMessage {
                    message: Some(ToHead::Ping(_)),
                })) => {
                    let _ = self
                        .sender
                        .send(EventHandlerClientToRuntimeMessage {
                            message: Some(FromHead::Pong(Pong {})),
                        })
                        .await;
                }
                Ok(Some(EventHandlerRuntimeToClientMessage { message })) => return message,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next request to handle an event.
    pub async fn next_request(&mut self) -> HandleEventRequest {
        match self.next_message().await {
            Some(ToHead::HandleRequest(request)) => request,
            other => panic!("expected a handle request, got {other:?}"),
        }
    }

    /// Waits a while and checks that no request arrives (pings are answered meanwhile).
    pub async fn expect_no_request_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return;
            }
            match tokio::time::timeout(remaining, self.incoming.message()).await {
                Err(_) => return,
                Ok(Ok(Some(EventHandlerRuntimeToClientMessage {
                    message: Some(ToHead::Ping(_)),
                }))) => {
                    let _ = self
                        .sender
                        .send(EventHandlerClientToRuntimeMessage {
                            message: Some(FromHead::Pong(Pong {})),
                        })
                        .await;
                }
                Ok(Ok(Some(other))) => panic!("expected no request, got {other:?}"),
                Ok(_) => return,
            }
        }
    }

    /// Answers a request: success, or a failure asking for a retry after `retry_after`.
    pub async fn respond(&self, request: &HandleEventRequest, failure: Option<(&str, Duration)>) {
        let call_id = request
            .call_context
            .as_ref()
            .and_then(|context| context.call_id.clone());
        let failure = failure.map(|(reason, retry_after)| ProcessorFailure {
            reason: reason.to_owned(),
            retry: true,
            retry_timeout: Some(prost_types::Duration::try_from(retry_after).expect("duration")),
        });
        self.sender
            .send(EventHandlerClientToRuntimeMessage {
                message: Some(FromHead::HandleResult(EventHandlerResponse {
                    call_context: Some(ReverseCallResponseContext { call_id }),
                    failure,
                })),
            })
            .await
            .expect("send response");
    }

    /// Closes the head's side of the call.
    pub fn disconnect(self) {
        drop(self.sender);
        drop(self.incoming);
    }
}

/// The committed event in a request, as a domain value.
pub fn event_of(request: &HandleEventRequest) -> CommittedEvent {
    let stream_event = request.event.clone().expect("stream event");
    CommittedEvent::try_from(stream_event.event.expect("event")).expect("event converts")
}

/// The partition of a request, as text.
pub fn partition_of(request: &HandleEventRequest) -> String {
    let stream_event = request.event.clone().expect("stream event");
    dolittle_contracts::convert::partition_from_wire(
        stream_event.partition_id_string,
        stream_event.partition_id.as_ref(),
    )
    .expect("partition converts")
    .0
}

/// The tenant a request was sent for.
pub fn tenant_of(request: &HandleEventRequest) -> TenantId {
    let context = request
        .call_context
        .clone()
        .and_then(|context| context.execution_context)
        .expect("execution context");
    dolittle_types::ExecutionContext::try_from(context)
        .expect("context converts")
        .tenant
}
