//! A projection head written against the raw contracts: it opens a reverse call, registers a
//! projection, answers pings, and either hands each request to the test or answers every
//! request with a function. It only needs a channel, so the benchmark uses it too.

#![allow(dead_code)]

use std::time::Duration;

use dolittle_contracts::execution;
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::events::processing::projection_client_to_runtime_message::Message as FromHead;
use dolittle_contracts::runtime::events::processing::projection_event_selector::Selector;
use dolittle_contracts::runtime::events::processing::projection_response::Response as Projected;
use dolittle_contracts::runtime::events::processing::projection_runtime_to_client_message::Message as ToHead;
use dolittle_contracts::runtime::events::processing::projections_client::ProjectionsClient;
use dolittle_contracts::runtime::events::processing::{
    EventPropertyKeySelector, EventSourceIdKeySelector, PartitionIdKeySelector, ProcessorFailure,
    ProjectionClientToRuntimeMessage, ProjectionDeleteResponse, ProjectionEventSelector,
    ProjectionRegistrationRequest, ProjectionReplaceResponse, ProjectionRequest,
    ProjectionResponse, ProjectionRuntimeToClientMessage,
};
use dolittle_contracts::runtime::projections::ProjectionCurrentStateType;
use dolittle_contracts::services::{Pong, ReverseCallArgumentsContext, ReverseCallResponseContext};
use dolittle_types::{
    CommittedEvent, CorrelationId, EventProcessorId, EventType, ExecutionContext, MicroserviceId,
    ScopeId, TenantId, Uuid,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// How long a test waits for something the Runtime should send.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How a projection picks the key of an event.
#[derive(Debug, Clone)]
pub enum Key {
    EventSource,
    Partition,
    Property(&'static str),
}

/// What the head answers to a request.
#[derive(Debug, Clone)]
pub enum Answer {
    Replace(String),
    Delete,
    Fail(String, Duration),
}

/// A projection connected to a Runtime over a real reverse call.
pub struct TestProjection {
    sender: mpsc::Sender<ProjectionClientToRuntimeMessage>,
    incoming: Streaming<ProjectionRuntimeToClientMessage>,
    /// The failure of the registration response, if it was refused.
    pub refused: Option<Failure>,
}

impl TestProjection {
    /// Registers a projection; `None` when the call ended without a registration response.
    pub async fn try_register(
        channel: Channel,
        id: EventProcessorId,
        scope: ScopeId,
        selectors: &[(EventType, Key)],
        initial_state: &str,
    ) -> Option<Self> {
        let (sender, receiver) = mpsc::channel(1024);
        let head_context = ExecutionContext {
            microservice: MicroserviceId(Uuid::from_u128(0x7a1c1f5e_3d2b_4c8e_9f10_2b6d8e4a9c01)),
            tenant: TenantId::SYSTEM,
            correlation: CorrelationId::new_random(),
            environment: "Test".into(),
            ..ExecutionContext::default()
        };
        let registration = ProjectionRegistrationRequest {
            call_context: Some(ReverseCallArgumentsContext {
                execution_context: Some(execution::ExecutionContext::from(head_context)),
                head_id: Some(Uuid::new_v4().into()),
                ping_interval: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            }),
            scope_id: Some(scope.into()),
            projection_id: Some(id.into()),
            events: selectors
                .iter()
                .map(|(event_type, key)| ProjectionEventSelector {
                    event_type: Some((*event_type).into()),
                    selector: Some(match key {
                        Key::EventSource => {
                            Selector::EventSourceKeySelector(EventSourceIdKeySelector {})
                        }
                        Key::Partition => Selector::PartitionKeySelector(PartitionIdKeySelector {}),
                        Key::Property(name) => {
                            Selector::EventPropertyKeySelector(EventPropertyKeySelector {
                                property_name: (*name).to_owned(),
                            })
                        }
                    }),
                })
                .collect(),
            initial_state: initial_state.to_owned(),
        };
        sender
            .send(ProjectionClientToRuntimeMessage {
                message: Some(FromHead::RegistrationRequest(registration)),
            })
            .await
            .ok()?;
        let mut client = ProjectionsClient::new(channel);
        let incoming = client
            .connect(ReceiverStream::new(receiver))
            .await
            .ok()?
            .into_inner();
        let mut projection = Self {
            sender,
            incoming,
            refused: None,
        };
        match projection.next_message().await {
            Some(ToHead::RegistrationResponse(response)) => {
                projection.refused = response.failure;
                Some(projection)
            }
            Some(other) => panic!("expected a registration response first, got {other:?}"),
            None => None,
        }
    }

    /// Registers a projection and fails the test if the call ends without an answer.
    pub async fn register(
        channel: Channel,
        id: EventProcessorId,
        scope: ScopeId,
        selectors: &[(EventType, Key)],
        initial_state: &str,
    ) -> Self {
        Self::try_register(channel, id, scope, selectors, initial_state)
            .await
            .expect("the call ended before the registration response")
    }

    /// The next message that is not a ping (pings are answered), or `None` when the call ends.
    async fn next_message(&mut self) -> Option<ToHead> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.incoming.message())
                .await
                .expect("the Runtime sent nothing in time");
            match message {
                Ok(Some(ProjectionRuntimeToClientMessage {
                    message: Some(ToHead::Ping(_)),
                })) => {
                    let _ = self
                        .sender
                        .send(ProjectionClientToRuntimeMessage {
                            message: Some(FromHead::Pong(Pong {})),
                        })
                        .await;
                }
                Ok(Some(ProjectionRuntimeToClientMessage { message })) => return message,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next request to project an event.
    pub async fn next_request(&mut self) -> ProjectionRequest {
        match self.next_message().await {
            Some(ToHead::HandleRequest(request)) => request,
            other => panic!("expected a projection request, got {other:?}"),
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
                Ok(Ok(Some(ProjectionRuntimeToClientMessage {
                    message: Some(ToHead::Ping(_)),
                }))) => {
                    let _ = self
                        .sender
                        .send(ProjectionClientToRuntimeMessage {
                            message: Some(FromHead::Pong(Pong {})),
                        })
                        .await;
                }
                Ok(Ok(Some(other))) => panic!("expected no request, got {other:?}"),
                Ok(_) => return,
            }
        }
    }

    /// Answers a request.
    pub async fn respond(&self, request: &ProjectionRequest, answer: Answer) {
        let _ = self.sender.send(response_to(request, answer)).await;
    }

    /// Answers every request with `answer` until the call ends; returns how many it answered.
    pub fn serve(
        mut self,
        answer: impl Fn(&ProjectionRequest) -> Answer + Send + 'static,
    ) -> tokio::task::JoinHandle<u64> {
        tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let message = match self.incoming.message().await {
                    Ok(Some(ProjectionRuntimeToClientMessage { message })) => message,
                    Ok(None) | Err(_) => return answered,
                };
                let reply = match message {
                    Some(ToHead::Ping(_)) => ProjectionClientToRuntimeMessage {
                        message: Some(FromHead::Pong(Pong {})),
                    },
                    Some(ToHead::HandleRequest(request)) => {
                        answered += 1;
                        response_to(&request, answer(&request))
                    }
                    _ => continue,
                };
                if self.sender.send(reply).await.is_err() {
                    return answered;
                }
            }
        })
    }

    /// Closes the head's side of the call.
    pub fn disconnect(self) {
        drop(self.sender);
        drop(self.incoming);
    }
}

fn response_to(request: &ProjectionRequest, answer: Answer) -> ProjectionClientToRuntimeMessage {
    let call_id = request
        .call_context
        .as_ref()
        .and_then(|context| context.call_id.clone());
    let (response, failure) = match answer {
        Answer::Replace(state) => (
            Some(Projected::Replace(ProjectionReplaceResponse { state })),
            None,
        ),
        Answer::Delete => (Some(Projected::Delete(ProjectionDeleteResponse {})), None),
        Answer::Fail(reason, retry_after) => (
            None,
            Some(ProcessorFailure {
                reason,
                retry: true,
                retry_timeout: Some(
                    prost_types::Duration::try_from(retry_after).expect("duration"),
                ),
            }),
        ),
    };
    ProjectionClientToRuntimeMessage {
        message: Some(FromHead::HandleResult(ProjectionResponse {
            call_context: Some(ReverseCallResponseContext { call_id }),
            response,
            failure,
        })),
    }
}

/// The committed event in a request, as a domain value.
pub fn event_of(request: &ProjectionRequest) -> CommittedEvent {
    let stream_event = request.event.clone().expect("stream event");
    CommittedEvent::try_from(stream_event.event.expect("event")).expect("event converts")
}

/// The key, state and whether it was created from the initial state, of a request.
pub fn current_of(request: &ProjectionRequest) -> (String, String, bool) {
    let current = request.current_state.clone().expect("current state");
    let initial = current.r#type == ProjectionCurrentStateType::CreatedFromInitialState as i32;
    (current.key, current.state, initial)
}

/// The tenant a request was sent for.
pub fn tenant_of(request: &ProjectionRequest) -> TenantId {
    let context = request
        .call_context
        .clone()
        .and_then(|context| context.execution_context)
        .expect("execution context");
    ExecutionContext::try_from(context)
        .expect("context converts")
        .tenant
}
