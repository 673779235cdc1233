//! Filters: decide for every event of a scope's event log whether it goes into a stream, and
//! into which partition.
//!
//! * a private unpartitioned filter writes a stream of the scope, all in one partition;
//! * a private partitioned filter writes a stream of the scope, in the partitions it chooses;
//! * a public filter writes a public stream (the default scope only) that other microservices
//!   can subscribe to over the event horizon; it only sees public events.
//!
//! Implement [`Filter`] or pass an async closure `|event, context| async move { .. }`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dolittle_contracts::runtime::events::processing::filter_client_to_runtime_message::Message as UnpartitionedFromHead;
use dolittle_contracts::runtime::events::processing::filter_runtime_to_client_message::Message as ToHead;
use dolittle_contracts::runtime::events::processing::filters_client::FiltersClient;
use dolittle_contracts::runtime::events::processing::partitioned_filter_client_to_runtime_message::Message as PartitionedFromHead;
use dolittle_contracts::runtime::events::processing::public_filter_client_to_runtime_message::Message as PublicFromHead;
use dolittle_contracts::runtime::events::processing::{
    FilterClientToRuntimeMessage, FilterEventRequest, FilterRegistrationRequest, FilterResponse,
    FilterRuntimeToClientMessage, PartitionedFilterClientToRuntimeMessage,
    PartitionedFilterRegistrationRequest, PartitionedFilterResponse,
    PublicFilterClientToRuntimeMessage, PublicFilterRegistrationRequest,
};
use dolittle_contracts::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use dolittle_types::{CommittedEvent, EventProcessorId, PartitionId, ScopeId, TenantId};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{Backoff, Client};
use crate::processing::{
    BoxFuture, HandlerError, Incoming, ProcessorHandle, ReverseCallProtocol, guarded,
    processor_failure, request_tenant,
};

/// Whether an event goes into the filter's stream, and in which partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not in the stream.
    Exclude,
    /// In the stream, in a partition (ignored by unpartitioned filters).
    Include(PartitionId),
}

impl Decision {
    /// In the stream, in the unpartitioned partition.
    pub fn include() -> Self {
        Self::Include(PartitionId::unpartitioned())
    }

    /// In the stream, in a partition.
    pub fn include_in(partition: impl Into<PartitionId>) -> Self {
        Self::Include(partition.into())
    }

    /// Whether the event goes into the stream.
    pub fn is_included(&self) -> bool {
        matches!(self, Self::Include(_))
    }
}

/// The circumstances of a filter call.
#[derive(Debug, Clone)]
pub struct FilterContext {
    /// The tenant whose event log is filtered.
    pub tenant: TenantId,
    /// The scope of the event log.
    pub scope: ScopeId,
    /// How many times this event failed before (0 on the first attempt).
    pub retries: u32,
}

/// Decides which events go into a stream.
pub trait Filter: Send + Sync + 'static {
    /// Decides for one event; an error makes the Runtime retry it later.
    fn filter(
        &self,
        event: CommittedEvent,
        context: FilterContext,
    ) -> impl Future<Output = Result<Decision, HandlerError>> + Send;
}

impl<F, Fut> Filter for F
where
    F: Fn(CommittedEvent, FilterContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision, HandlerError>> + Send,
{
    fn filter(
        &self,
        event: CommittedEvent,
        context: FilterContext,
    ) -> impl Future<Output = Result<Decision, HandlerError>> + Send {
        self(event, context)
    }
}

/// Which of the three kinds of filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    Unpartitioned,
    Partitioned,
    Public,
}

/// The identity and kind of a filter registration. The filter id is the id of the stream it
/// writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterOptions {
    id: EventProcessorId,
    scope: ScopeId,
    kind: FilterKind,
    retry: Backoff,
}

impl FilterOptions {
    /// A private unpartitioned filter in the default scope.
    pub fn private(id: impl Into<EventProcessorId>) -> Self {
        Self {
            id: id.into(),
            scope: ScopeId::DEFAULT,
            kind: FilterKind::Unpartitioned,
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// A public filter: it writes a public stream from the public events of the default scope.
    pub fn public(id: impl Into<EventProcessorId>) -> Self {
        Self {
            kind: FilterKind::Public,
            ..Self::private(id)
        }
    }

    /// Makes a private filter partitioned: events go into the partitions it decides.
    pub fn partitioned(mut self) -> Self {
        if self.kind == FilterKind::Unpartitioned {
            self.kind = FilterKind::Partitioned;
        }
        self
    }

    /// Filters the event log of a scope (private filters only; public filters always use the
    /// default scope).
    pub fn in_scope(mut self, scope: impl Into<ScopeId>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The delays before the Runtime retries a failed event.
    pub fn retry_backoff(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// The filter's id (the id of its stream).
    pub fn id(&self) -> EventProcessorId {
        self.id
    }
}

pub(crate) fn spawn<F: Filter>(
    client: &Client,
    options: FilterOptions,
    filter: F,
) -> ProcessorHandle {
    match options.kind {
        FilterKind::Unpartitioned => crate::processing::spawn(
            client,
            FilterProtocol::<F, Unpartitioned>::new(options, filter),
        ),
        FilterKind::Partitioned => crate::processing::spawn(
            client,
            FilterProtocol::<F, Partitioned>::new(options, filter),
        ),
        FilterKind::Public => {
            crate::processing::spawn(client, FilterProtocol::<F, Public>::new(options, filter))
        }
    }
}

/// The wire messages of one kind of filter.
trait FilterWire: Send + Sync + 'static {
    type ClientMessage: Send + 'static;
    const KIND: &'static str;
    fn registration(
        options: &FilterOptions,
        arguments: ReverseCallArgumentsContext,
    ) -> Self::ClientMessage;
    fn pong() -> Self::ClientMessage;
    fn result(
        call_context: ReverseCallResponseContext,
        decision: Option<Decision>,
        failure: Option<dolittle_contracts::runtime::events::processing::ProcessorFailure>,
    ) -> Self::ClientMessage;
    fn connect(
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<FilterRuntimeToClientMessage>, tonic::Status>>;
}

struct Unpartitioned;
struct Partitioned;
struct Public;

fn partitioned_result(
    call_context: ReverseCallResponseContext,
    decision: Option<Decision>,
    failure: Option<dolittle_contracts::runtime::events::processing::ProcessorFailure>,
) -> PartitionedFilterResponse {
    let (is_included, partition) = match decision {
        Some(Decision::Include(partition)) => (true, partition),
        _ => (false, PartitionId::unpartitioned()),
    };
    let (guid, text) = dolittle_contracts::convert::string_id_to_wire(partition.as_str());
    PartitionedFilterResponse {
        call_context: Some(call_context),
        is_included,
        partition_id: Some(guid),
        failure,
        partition_id_string: Some(text),
    }
}

impl FilterWire for Unpartitioned {
    type ClientMessage = FilterClientToRuntimeMessage;
    const KIND: &'static str = "filter";

    fn registration(
        options: &FilterOptions,
        arguments: ReverseCallArgumentsContext,
    ) -> Self::ClientMessage {
        FilterClientToRuntimeMessage {
            message: Some(UnpartitionedFromHead::RegistrationRequest(
                FilterRegistrationRequest {
                    call_context: Some(arguments),
                    scope_id: Some(options.scope.into()),
                    filter_id: Some(options.id.into()),
                },
            )),
        }
    }

    fn pong() -> Self::ClientMessage {
        FilterClientToRuntimeMessage {
            message: Some(UnpartitionedFromHead::Pong(Pong {})),
        }
    }

    fn result(
        call_context: ReverseCallResponseContext,
        decision: Option<Decision>,
        failure: Option<dolittle_contracts::runtime::events::processing::ProcessorFailure>,
    ) -> Self::ClientMessage {
        FilterClientToRuntimeMessage {
            message: Some(UnpartitionedFromHead::FilterResult(FilterResponse {
                call_context: Some(call_context),
                is_included: decision.is_some_and(|decision| decision.is_included()),
                failure,
            })),
        }
    }

    fn connect(
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<FilterRuntimeToClientMessage>, tonic::Status>> {
        Box::pin(async move {
            Ok(FiltersClient::new(channel)
                .connect(outgoing)
                .await?
                .into_inner())
        })
    }
}

impl FilterWire for Partitioned {
    type ClientMessage = PartitionedFilterClientToRuntimeMessage;
    const KIND: &'static str = "partitioned filter";

    fn registration(
        options: &FilterOptions,
        arguments: ReverseCallArgumentsContext,
    ) -> Self::ClientMessage {
        PartitionedFilterClientToRuntimeMessage {
            message: Some(PartitionedFromHead::RegistrationRequest(
                PartitionedFilterRegistrationRequest {
                    call_context: Some(arguments),
                    scope_id: Some(options.scope.into()),
                    filter_id: Some(options.id.into()),
                },
            )),
        }
    }

    fn pong() -> Self::ClientMessage {
        PartitionedFilterClientToRuntimeMessage {
            message: Some(PartitionedFromHead::Pong(Pong {})),
        }
    }

    fn result(
        call_context: ReverseCallResponseContext,
        decision: Option<Decision>,
        failure: Option<dolittle_contracts::runtime::events::processing::ProcessorFailure>,
    ) -> Self::ClientMessage {
        PartitionedFilterClientToRuntimeMessage {
            message: Some(PartitionedFromHead::FilterResult(partitioned_result(
                call_context,
                decision,
                failure,
            ))),
        }
    }

    fn connect(
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<FilterRuntimeToClientMessage>, tonic::Status>> {
        Box::pin(async move {
            Ok(FiltersClient::new(channel)
                .connect_partitioned(outgoing)
                .await?
                .into_inner())
        })
    }
}

impl FilterWire for Public {
    type ClientMessage = PublicFilterClientToRuntimeMessage;
    const KIND: &'static str = "public filter";

    fn registration(
        options: &FilterOptions,
        arguments: ReverseCallArgumentsContext,
    ) -> Self::ClientMessage {
        PublicFilterClientToRuntimeMessage {
            message: Some(PublicFromHead::RegistrationRequest(
                PublicFilterRegistrationRequest {
                    call_context: Some(arguments),
                    filter_id: Some(options.id.into()),
                },
            )),
        }
    }

    fn pong() -> Self::ClientMessage {
        PublicFilterClientToRuntimeMessage {
            message: Some(PublicFromHead::Pong(Pong {})),
        }
    }

    fn result(
        call_context: ReverseCallResponseContext,
        decision: Option<Decision>,
        failure: Option<dolittle_contracts::runtime::events::processing::ProcessorFailure>,
    ) -> Self::ClientMessage {
        PublicFilterClientToRuntimeMessage {
            message: Some(PublicFromHead::FilterResult(partitioned_result(
                call_context,
                decision,
                failure,
            ))),
        }
    }

    fn connect(
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<FilterRuntimeToClientMessage>, tonic::Status>> {
        Box::pin(async move {
            Ok(FiltersClient::new(channel)
                .connect_public(outgoing)
                .await?
                .into_inner())
        })
    }
}

struct FilterProtocol<F, W> {
    options: FilterOptions,
    filter: F,
    wire: std::marker::PhantomData<fn() -> W>,
}

impl<F: Filter, W: FilterWire> FilterProtocol<F, W> {
    fn new(options: FilterOptions, filter: F) -> Self {
        Self {
            options,
            filter,
            wire: std::marker::PhantomData,
        }
    }

    async fn decide(&self, request: FilterEventRequest) -> Result<Decision, String> {
        let tenant = request_tenant(request.call_context.as_ref()).map_err(|e| e.to_string())?;
        let event = request
            .event
            .ok_or_else(|| "the request has no event".to_owned())?;
        let event = CommittedEvent::try_from(event)
            .map_err(|error| format!("the runtime sent an unreadable event: {error}"))?;
        let scope =
            dolittle_contracts::convert::optional_guid("scopeId", request.scope_id.as_ref())
                .map_err(|error| error.to_string())?
                .unwrap_or_default();
        let context = FilterContext {
            tenant,
            scope,
            retries: request
                .retry_processing_state
                .as_ref()
                .map_or(0, |state| state.retry_count.saturating_add(1)),
        };
        guarded(self.filter.filter(event, context)).await
    }
}

impl<F: Filter, W: FilterWire> ReverseCallProtocol for FilterProtocol<F, W> {
    type ClientMessage = W::ClientMessage;
    type ServerMessage = FilterRuntimeToClientMessage;
    type Request = FilterEventRequest;

    fn kind(&self) -> &'static str {
        W::KIND
    }

    fn id(&self) -> EventProcessorId {
        self.options.id
    }

    fn registration(&self, arguments: ReverseCallArgumentsContext) -> Self::ClientMessage {
        W::registration(&self.options, arguments)
    }

    fn pong(&self) -> Self::ClientMessage {
        W::pong()
    }

    fn classify(&self, message: Self::ServerMessage) -> Incoming<Self::Request> {
        match message.message {
            Some(ToHead::RegistrationResponse(response)) => {
                Incoming::Registration(response.failure)
            }
            Some(ToHead::FilterRequest(request)) => Incoming::Request(request),
            Some(ToHead::Ping(_)) => Incoming::Ping,
            None => Incoming::Nothing,
        }
    }

    fn connect(
        &self,
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<Self::ServerMessage>, tonic::Status>> {
        W::connect(channel, outgoing)
    }

    fn handle(self: Arc<Self>, request: Self::Request) -> BoxFuture<Self::ClientMessage> {
        Box::pin(async move {
            let call_id = request
                .call_context
                .as_ref()
                .and_then(|context| context.call_id.clone());
            let retry_state = request.retry_processing_state.clone();
            let (decision, failure) = match self.decide(request).await {
                Ok(decision) => (Some(decision), None),
                Err(reason) => {
                    tracing::warn!(filter = %self.options.id, %reason, "filter failed");
                    (
                        None,
                        Some(processor_failure(
                            reason,
                            &self.options.retry,
                            retry_state.as_ref(),
                        )),
                    )
                }
            };
            W::result(ReverseCallResponseContext { call_id }, decision, failure)
        })
    }
}
