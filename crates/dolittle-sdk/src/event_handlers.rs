//! Event handlers: react to committed events of some types, in a scope, partitioned by event
//! source or not.
//!
//! A handler implements [`EventHandler`] with its [`Events`] as the typed events it dispatches
//! on. Events of types its `Events` do not know (types added with
//! [`EventHandlerOptions::also_handle`]) arrive as [`HandledEvent::Unknown`] with their JSON.
//! An error returned by `handle` (or a panic) becomes a processor failure that asks the Runtime
//! to retry after a growing delay; the partition (or the whole unpartitioned handler) waits
//! until the event succeeds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dolittle_contracts::runtime::events::processing::event_handler_client_to_runtime_message::Message as FromHead;
use dolittle_contracts::runtime::events::processing::event_handler_runtime_to_client_message::Message as ToHead;
use dolittle_contracts::runtime::events::processing::event_handlers_client::EventHandlersClient;
use dolittle_contracts::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, EventHandlerResponse,
    EventHandlerRuntimeToClientMessage, HandleEventRequest,
};
use dolittle_contracts::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use dolittle_types::{
    EventLogSequenceNumber, EventProcessorId, EventSourceId, EventType, ExecutionContext,
    PartitionId, ScopeId, TenantId, Timestamp,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{Backoff, Client};
use crate::event_types::{Events, HandledEvent};
use crate::processing::{
    BoxFuture, HandlerError, Incoming, ProcessorHandle, ReverseCallProtocol, guarded,
    processor_failure, request_tenant,
};

/// Where and how an event was committed, given to handlers with the event.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// The tenant whose event log holds the event.
    pub tenant: TenantId,
    /// The event's position in the (scoped) event log.
    pub sequence_number: EventLogSequenceNumber,
    /// The event's source.
    pub event_source: EventSourceId,
    /// The event's type.
    pub event_type: EventType,
    /// When it was committed.
    pub occurred: Timestamp,
    /// Whether it was committed as public.
    pub public: bool,
    /// The execution context it was committed in.
    pub committed_in: ExecutionContext,
    /// The partition of the handler's stream (the event source when partitioned).
    pub partition: PartitionId,
    /// The scope of the handler.
    pub scope: ScopeId,
    /// How many times this event failed before (0 on the first attempt).
    pub retries: u32,
    /// Why the previous attempt failed, on a retry.
    pub previous_failure: Option<String>,
}

/// Handles committed events. Implement it with `async fn handle(..)`.
pub trait EventHandler: Send + Sync + 'static {
    /// The event types this handler handles, typed.
    type Events: Events;

    /// Handles one event. An error makes the Runtime retry the event later.
    fn handle(
        &self,
        event: HandledEvent<Self::Events>,
        context: EventContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// The identity and behaviour of an event handler registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHandlerOptions {
    id: EventProcessorId,
    scope: ScopeId,
    partitioned: bool,
    additional_event_types: Vec<EventType>,
    retry: Backoff,
}

impl EventHandlerOptions {
    /// A partitioned handler in the default scope, retrying failures after 1 s, doubling up to
    /// 60 s.
    pub fn new(id: impl Into<EventProcessorId>) -> Self {
        Self {
            id: id.into(),
            scope: ScopeId::DEFAULT,
            partitioned: true,
            additional_event_types: Vec::new(),
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// Partitioned by event source (the default) or not: in a partitioned handler a failing
    /// event holds up only its own event source.
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// Processes the events of a scope (events from the event horizon) instead of the default.
    pub fn in_scope(mut self, scope: impl Into<ScopeId>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Also handles events of a type that has no Rust type here: they reach the handler as
    /// [`HandledEvent::Unknown`].
    pub fn also_handle(mut self, event_type: EventType) -> Self {
        self.additional_event_types.push(event_type);
        self
    }

    /// The delays before the Runtime retries a failed event: `retry.delay(n)` after the n-th
    /// failure.
    pub fn retry_backoff(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// The handler's id.
    pub fn id(&self) -> EventProcessorId {
        self.id
    }
}

struct EventHandlerProtocol<H> {
    options: EventHandlerOptions,
    handler: H,
}

pub(crate) fn spawn<H: EventHandler>(
    client: &Client,
    options: EventHandlerOptions,
    handler: H,
) -> ProcessorHandle {
    crate::processing::spawn(client, EventHandlerProtocol { options, handler })
}

/// Event types by id, first occurrence kept (the Runtime matches types by id).
pub(crate) fn distinct_by_id(types: impl IntoIterator<Item = EventType>) -> Vec<EventType> {
    let mut distinct: Vec<EventType> = Vec::new();
    for event_type in types {
        if !distinct.iter().any(|known| known.id == event_type.id) {
            distinct.push(event_type);
        }
    }
    distinct
}

impl<H: EventHandler> EventHandlerProtocol<H> {
    async fn answer(&self, request: HandleEventRequest) -> Result<(), String> {
        let tenant = request_tenant(request.call_context.as_ref()).map_err(|e| e.to_string())?;
        let stream_event = request
            .event
            .ok_or_else(|| "the request has no event".to_owned())?;
        let (event, partition, scope, _) =
            dolittle_contracts::convert::stream_event_from_wire(stream_event)
                .map_err(|error| format!("the runtime sent an unreadable event: {error}"))?;
        let handled = HandledEvent::<H::Events>::read(event.event_type, &event.content)
            .map_err(|error| error.to_string())?;
        let context = EventContext {
            tenant,
            sequence_number: event.sequence_number,
            event_source: event.event_source,
            event_type: event.event_type,
            occurred: event.occurred,
            public: event.public,
            committed_in: event.execution_context,
            partition,
            scope,
            retries: request
                .retry_processing_state
                .as_ref()
                .map_or(0, |state| state.retry_count.saturating_add(1)),
            previous_failure: request
                .retry_processing_state
                .as_ref()
                .map(|state| state.failure_reason.clone()),
        };
        guarded(self.handler.handle(handled, context)).await
    }
}

impl<H: EventHandler> ReverseCallProtocol for EventHandlerProtocol<H> {
    type ClientMessage = EventHandlerClientToRuntimeMessage;
    type ServerMessage = EventHandlerRuntimeToClientMessage;
    type Request = HandleEventRequest;

    fn kind(&self) -> &'static str {
        "event handler"
    }

    fn id(&self) -> EventProcessorId {
        self.options.id
    }

    fn registration(&self, arguments: ReverseCallArgumentsContext) -> Self::ClientMessage {
        let types = distinct_by_id(
            H::Events::event_types()
                .into_iter()
                .chain(self.options.additional_event_types.iter().copied()),
        );
        EventHandlerClientToRuntimeMessage {
            message: Some(FromHead::RegistrationRequest(
                EventHandlerRegistrationRequest {
                    call_context: Some(arguments),
                    scope_id: Some(self.options.scope.into()),
                    event_handler_id: Some(self.options.id.into()),
                    types: types.into_iter().map(Into::into).collect(),
                    partitioned: self.options.partitioned,
                },
            )),
        }
    }

    fn pong(&self) -> Self::ClientMessage {
        EventHandlerClientToRuntimeMessage {
            message: Some(FromHead::Pong(Pong {})),
        }
    }

    fn classify(&self, message: Self::ServerMessage) -> Incoming<Self::Request> {
        match message.message {
            Some(ToHead::RegistrationResponse(response)) => {
                Incoming::Registration(response.failure)
            }
            Some(ToHead::HandleRequest(request)) => Incoming::Request(request),
            Some(ToHead::Ping(_)) => Incoming::Ping,
            None => Incoming::Nothing,
        }
    }

    fn connect(
        &self,
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<Self::ServerMessage>, tonic::Status>> {
        Box::pin(async move {
            let mut client = EventHandlersClient::new(channel);
            Ok(client.connect(outgoing).await?.into_inner())
        })
    }

    fn handle(self: Arc<Self>, request: Self::Request) -> BoxFuture<Self::ClientMessage> {
        Box::pin(async move {
            let call_id = request
                .call_context
                .as_ref()
                .and_then(|context| context.call_id.clone());
            let retry_state = request.retry_processing_state.clone();
            let failure = match self.answer(request).await {
                Ok(()) => None,
                Err(reason) => {
                    tracing::warn!(event_handler = %self.options.id, %reason, "event handler failed");
                    Some(processor_failure(
                        reason,
                        &self.options.retry,
                        retry_state.as_ref(),
                    ))
                }
            };
            EventHandlerClientToRuntimeMessage {
                message: Some(FromHead::HandleResult(EventHandlerResponse {
                    call_context: Some(ReverseCallResponseContext { call_id }),
                    failure,
                })),
            }
        })
    }
}
