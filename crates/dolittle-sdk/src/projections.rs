//! Projections: read models that the Runtime keeps, one per key, updated by the head's `on`
//! method for every event of the types it selects, and read back with typed GetOne and GetAll.
//!
//! A projection is a serde type with a `Default` (its initial state) that implements
//! [`Projection`]: its id and scope, its [`Events`], the key each event type is stored under
//! ([`KeySelector`]), and `on`. Register it with [`crate::Client::register_projection`]; read it
//! with [`crate::Client::projections`].

use std::collections::BTreeMap;
use std::sync::Arc;

use dolittle_contracts::runtime::events::processing::projection_client_to_runtime_message::Message as FromHead;
use dolittle_contracts::runtime::events::processing::projection_event_selector::Selector;
use dolittle_contracts::runtime::events::processing::projection_response::Response;
use dolittle_contracts::runtime::events::processing::projection_runtime_to_client_message::Message as ToHead;
use dolittle_contracts::runtime::events::processing::projections_client::ProjectionsClient as ProcessingClient;
use dolittle_contracts::runtime::events::processing::{
    EventPropertyKeySelector, EventSourceIdKeySelector, PartitionIdKeySelector,
    ProjectionClientToRuntimeMessage, ProjectionDeleteResponse, ProjectionEventSelector,
    ProjectionRegistrationRequest, ProjectionReplaceResponse, ProjectionRequest,
    ProjectionResponse, ProjectionRuntimeToClientMessage,
};
use dolittle_contracts::runtime::projections::projections_client::ProjectionsClient as StoreClient;
use dolittle_contracts::runtime::projections::{
    GetAllRequest, GetOneRequest, ProjectionCurrentState, ProjectionCurrentStateType,
};
use dolittle_contracts::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use dolittle_types::{
    EventLogSequenceNumber, EventProcessorId, EventSourceId, EventType, ScopeId, TenantId,
    Timestamp,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{Backoff, Client};
use crate::error::{Error, Result, runtime_failure};
use crate::event_types::Events;
use crate::processing::{
    BoxFuture, Incoming, ProcessorHandle, ReverseCallProtocol, guarded, processor_failure,
    request_tenant,
};

/// Which read model an event updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The read model of the event's source.
    EventSource,
    /// The read model of the event's partition.
    Partition,
    /// The read model named by a top-level property of the event's JSON content.
    Property(String),
}

/// What `on` did with the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Keep the changed read model.
    Replace,
    /// Delete the read model of this key.
    Delete,
}

/// The circumstances of one projected event.
#[derive(Debug, Clone)]
pub struct ProjectionContext {
    /// The tenant.
    pub tenant: TenantId,
    /// The key of the read model.
    pub key: String,
    /// Whether the read model was the initial state (nothing stored for the key yet).
    pub created_from_initial_state: bool,
    /// The event's source.
    pub event_source: EventSourceId,
    /// The event's position in the event log.
    pub sequence_number: EventLogSequenceNumber,
    /// When the event was committed.
    pub occurred: Timestamp,
}

/// A read model kept by the Runtime. `Default` is the initial state of every key.
pub trait Projection: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// The projection's id.
    const ID: EventProcessorId;

    /// The scope whose event log it projects (the default scope unless overridden).
    const SCOPE: ScopeId = ScopeId::DEFAULT;

    /// The events it projects.
    type Events: Events;

    /// The key each event type updates (the event source unless overridden).
    fn key_selector(event_type: EventType) -> KeySelector {
        let _ = event_type;
        KeySelector::EventSource
    }

    /// Updates the read model of the event's key.
    fn on(&mut self, event: Self::Events, context: &ProjectionContext) -> Outcome;
}

pub(crate) fn spawn<P: Projection>(client: &Client) -> ProcessorHandle {
    crate::processing::spawn(
        client,
        ProjectionProtocol::<P> {
            retry: client.backoff(),
            projection: std::marker::PhantomData,
        },
    )
}

struct ProjectionProtocol<P> {
    retry: Backoff,
    projection: std::marker::PhantomData<fn() -> P>,
}

fn project<P: Projection>(
    request: ProjectionRequest,
) -> std::result::Result<Option<String>, String> {
    let tenant = request_tenant(request.call_context.as_ref()).map_err(|e| e.to_string())?;
    let current = request
        .current_state
        .ok_or_else(|| "the request has no current state".to_owned())?;
    let stream_event = request
        .event
        .ok_or_else(|| "the request has no event".to_owned())?;
    let (event, _, _, _) = dolittle_contracts::convert::stream_event_from_wire(stream_event)
        .map_err(|error| format!("the runtime sent an unreadable event: {error}"))?;
    let mut read_model: P = serde_json::from_str(&current.state)
        .map_err(|error| format!("the current state does not fit the read model: {error}"))?;
    let typed = match P::Events::from_content(event.event_type, &event.content) {
        Some(Ok(typed)) => typed,
        Some(Err(error)) => return Err(format!("the event does not fit its type: {error}")),
        None => {
            return Err(format!(
                "the projection has no event type {}",
                event.event_type.id
            ));
        }
    };
    let context = ProjectionContext {
        tenant,
        key: current.key,
        created_from_initial_state: current.r#type
            == ProjectionCurrentStateType::CreatedFromInitialState as i32,
        event_source: event.event_source,
        sequence_number: event.sequence_number,
        occurred: event.occurred,
    };
    match read_model.on(typed, &context) {
        Outcome::Replace => serde_json::to_string(&read_model)
            .map(Some)
            .map_err(|error| format!("the read model does not serialize: {error}")),
        Outcome::Delete => Ok(None),
    }
}

impl<P: Projection> ReverseCallProtocol for ProjectionProtocol<P> {
    type ClientMessage = ProjectionClientToRuntimeMessage;
    type ServerMessage = ProjectionRuntimeToClientMessage;
    type Request = ProjectionRequest;

    fn kind(&self) -> &'static str {
        "projection"
    }

    fn id(&self) -> EventProcessorId {
        P::ID
    }

    fn registration(&self, arguments: ReverseCallArgumentsContext) -> Self::ClientMessage {
        let events = crate::event_handlers::distinct_by_id(P::Events::event_types())
            .into_iter()
            .map(|event_type| ProjectionEventSelector {
                event_type: Some(event_type.into()),
                selector: Some(match P::key_selector(event_type) {
                    KeySelector::EventSource => {
                        Selector::EventSourceKeySelector(EventSourceIdKeySelector {})
                    }
                    KeySelector::Partition => {
                        Selector::PartitionKeySelector(PartitionIdKeySelector {})
                    }
                    KeySelector::Property(property_name) => {
                        Selector::EventPropertyKeySelector(EventPropertyKeySelector {
                            property_name,
                        })
                    }
                }),
            })
            .collect();
        let initial_state =
            serde_json::to_string(&P::default()).unwrap_or_else(|_| "{}".to_owned());
        ProjectionClientToRuntimeMessage {
            message: Some(FromHead::RegistrationRequest(
                ProjectionRegistrationRequest {
                    call_context: Some(arguments),
                    scope_id: Some(P::SCOPE.into()),
                    projection_id: Some(P::ID.into()),
                    events,
                    initial_state,
                },
            )),
        }
    }

    fn pong(&self) -> Self::ClientMessage {
        ProjectionClientToRuntimeMessage {
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
    ) -> BoxFuture<std::result::Result<Streaming<Self::ServerMessage>, tonic::Status>> {
        Box::pin(async move {
            Ok(ProcessingClient::new(channel)
                .connect(outgoing)
                .await?
                .into_inner())
        })
    }

    fn handle(self: Arc<Self>, request: Self::Request) -> BoxFuture<Self::ClientMessage> {
        Box::pin(async move {
            let call_id = request
                .call_context
                .as_ref()
                .and_then(|context| context.call_id.clone());
            let retry_state = request.retry_processing_state.clone();
            let outcome = guarded(async move { project::<P>(request).map_err(Into::into) }).await;
            let (response, failure) = match outcome {
                Ok(Some(state)) => (
                    Some(Response::Replace(ProjectionReplaceResponse { state })),
                    None,
                ),
                Ok(None) => (Some(Response::Delete(ProjectionDeleteResponse {})), None),
                Err(reason) => {
                    tracing::warn!(projection = %P::ID, %reason, "projection failed");
                    (
                        None,
                        Some(processor_failure(reason, &self.retry, retry_state.as_ref())),
                    )
                }
            };
            ProjectionClientToRuntimeMessage {
                message: Some(FromHead::HandleResult(ProjectionResponse {
                    call_context: Some(ReverseCallResponseContext { call_id }),
                    response,
                    failure,
                })),
            }
        })
    }
}

/// The read models of one tenant.
#[derive(Debug, Clone)]
pub struct ProjectionStore {
    client: Client,
    tenant: TenantId,
}

fn read_state<P: Projection>(state: &ProjectionCurrentState) -> Result<P> {
    serde_json::from_str(&state.state).map_err(|source| Error::Deserialize {
        what: format!("the read model of projection {} key {:?}", P::ID, state.key),
        source,
    })
}

impl ProjectionStore {
    pub(crate) fn new(client: Client, tenant: TenantId) -> Self {
        Self { client, tenant }
    }

    /// The read model of a key: the initial state (`Default`) when nothing is stored for it.
    pub async fn get<P: Projection>(&self, key: impl Into<String>) -> Result<P> {
        let mut client = StoreClient::new(self.client.channel()?);
        let response = client
            .get_one(GetOneRequest {
                call_context: Some(self.client.call_context(self.tenant)),
                scope_id: Some(P::SCOPE.into()),
                projection_id: Some(P::ID.into()),
                key: key.into(),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            return Err(runtime_failure(failure));
        }
        let state = response.state.ok_or_else(|| Error::Runtime {
            id: dolittle_contracts::failure_ids::OTHER,
            reason: "the runtime returned no state".to_owned(),
        })?;
        read_state(&state)
    }

    /// Every stored read model, by key.
    pub async fn get_all<P: Projection>(&self) -> Result<BTreeMap<String, P>> {
        let mut client = StoreClient::new(self.client.channel()?);
        let response = client
            .get_all(GetAllRequest {
                call_context: Some(self.client.call_context(self.tenant)),
                scope_id: Some(P::SCOPE.into()),
                projection_id: Some(P::ID.into()),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            return Err(runtime_failure(failure));
        }
        response
            .states
            .iter()
            .map(|state| Ok((state.key.clone(), read_state(state)?)))
            .collect()
    }
}
