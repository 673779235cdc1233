//! The head side of a reverse call (protocol §3.1), shared by event handlers, filters and
//! projections: send the registration first, answer every ping with a pong, run every request
//! concurrently and answer it by its call id, and reconnect with backoff when the call ends.
//!
//! On shutdown the loop stops reading new requests, waits until the requests in flight are
//! answered, and then closes its side of the call.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::events::processing::{ProcessorFailure, RetryProcessingState};
use dolittle_contracts::services::ReverseCallArgumentsContext;
use dolittle_types::{EventProcessorId, TenantId};
use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{Backoff, Client};
use crate::error::Error;

/// How often the Runtime is asked to ping; a call without a ping or request for three
/// intervals is considered dead.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// A boxed future, for the protocol methods.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The error an event handler, filter or projection returns: anything that is an error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Where an event processor stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorState {
    /// Connecting or waiting for the Runtime to accept the registration.
    Connecting,
    /// Registered: the Runtime sends it events.
    Registered,
    /// The last attempt failed; it reconnects after a delay.
    Reconnecting {
        /// Why the last attempt failed.
        reason: String,
    },
    /// Stopped by [`crate::Client::shutdown`].
    Stopped,
}

/// A handle on a registered event processor: its id and whether the Runtime accepted it.
#[derive(Debug, Clone)]
pub struct ProcessorHandle {
    id: EventProcessorId,
    state: watch::Receiver<ProcessorState>,
    registrations: Arc<AtomicU64>,
}

impl ProcessorHandle {
    /// The id of the event handler, filter or projection.
    pub fn id(&self) -> EventProcessorId {
        self.id
    }

    /// How many times the Runtime accepted its registration (more than once after
    /// reconnections).
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::SeqCst)
    }

    /// Where it stands now.
    pub fn state(&self) -> ProcessorState {
        self.state.borrow().clone()
    }

    /// Waits until the Runtime accepts the registration; [`Error::ShutDown`] if the client
    /// shuts down first. Registration is retried for ever, so bound this with a timeout where
    /// a refusal matters.
    pub async fn registered(&self) -> Result<(), Error> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|state| matches!(state, ProcessorState::Registered | ProcessorState::Stopped))
            .await;
        match result.as_deref() {
            Ok(ProcessorState::Registered) => Ok(()),
            _ => Err(Error::ShutDown),
        }
    }
}

/// What arrived from the Runtime on a reverse call.
pub(crate) enum Incoming<R> {
    /// The registration response, with its failure if refused.
    Registration(Option<Failure>),
    /// A request to answer.
    Request(R),
    /// A ping, to answer with a pong.
    Ping,
    /// A message without content.
    Nothing,
}

/// One kind of reverse call, seen from the head.
pub(crate) trait ReverseCallProtocol: Send + Sync + 'static {
    type ClientMessage: Send + 'static;
    type ServerMessage: Send + 'static;
    type Request: Send + 'static;

    /// `event handler`, `filter`, ... for logs and errors.
    fn kind(&self) -> &'static str;
    fn id(&self) -> EventProcessorId;
    fn registration(&self, arguments: ReverseCallArgumentsContext) -> Self::ClientMessage;
    fn pong(&self) -> Self::ClientMessage;
    fn classify(&self, message: Self::ServerMessage) -> Incoming<Self::Request>;
    fn connect(
        &self,
        channel: Channel,
        outgoing: ReceiverStream<Self::ClientMessage>,
    ) -> BoxFuture<Result<Streaming<Self::ServerMessage>, tonic::Status>>;
    /// Answers one request; never fails (failures are answered as processor failures).
    fn handle(self: Arc<Self>, request: Self::Request) -> BoxFuture<Self::ClientMessage>;
}

/// Starts the reverse call of a protocol on the client's task tracker.
pub(crate) fn spawn<P: ReverseCallProtocol>(client: &Client, protocol: P) -> ProcessorHandle {
    let (state_sender, state) = watch::channel(ProcessorState::Connecting);
    let registrations = Arc::new(AtomicU64::new(0));
    let handle = ProcessorHandle {
        id: protocol.id(),
        state,
        registrations: registrations.clone(),
    };
    let task_client = client.clone();
    client.tasks().spawn(run(
        task_client,
        Arc::new(protocol),
        state_sender,
        registrations,
    ));
    handle
}

enum Ended {
    /// Shut down on purpose.
    Stopped,
    /// The call failed or ended; reconnect. `registered` tells whether it had been accepted.
    Failed { reason: String, registered: bool },
}

async fn run<P: ReverseCallProtocol>(
    client: Client,
    protocol: Arc<P>,
    state: watch::Sender<ProcessorState>,
    registrations: Arc<AtomicU64>,
) {
    let token = client.shutdown_token();
    let backoff: Backoff = client.backoff();
    let mut attempt = 0u32;
    loop {
        let ended = connect_once(&client, &protocol, &state, &registrations).await;
        match ended {
            Ended::Stopped => break,
            Ended::Failed { reason, registered } => {
                if registered {
                    attempt = 0;
                }
                let delay = backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    kind = protocol.kind(),
                    id = %protocol.id(),
                    %reason,
                    ?delay,
                    "reverse call ended, reconnecting"
                );
                let _ = state.send(ProcessorState::Reconnecting { reason });
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    let _ = state.send(ProcessorState::Stopped);
}

async fn connect_once<P: ReverseCallProtocol>(
    client: &Client,
    protocol: &Arc<P>,
    state: &watch::Sender<ProcessorState>,
    registrations: &AtomicU64,
) -> Ended {
    let token = client.shutdown_token();
    let channel = match client.channel() {
        Ok(channel) => channel,
        Err(_) => return Ended::Stopped,
    };
    let _ = state.send(ProcessorState::Connecting);
    let (sender, receiver) = mpsc::channel::<P::ClientMessage>(64);
    let arguments = ReverseCallArgumentsContext {
        execution_context: Some(client.execution_context(TenantId::SYSTEM).into()),
        head_id: Some(uuid::Uuid::new_v4().into()),
        ping_interval: Some(prost_types::Duration {
            seconds: PING_INTERVAL.as_secs() as i64,
            nanos: 0,
        }),
    };
    if sender.send(protocol.registration(arguments)).await.is_err() {
        return Ended::Stopped;
    }
    let connected = tokio::select! {
        _ = token.cancelled() => return Ended::Stopped,
        connected = protocol.connect(channel, ReceiverStream::new(receiver)) => connected,
    };
    let mut incoming = match connected {
        Ok(incoming) => incoming,
        Err(status) => {
            return Ended::Failed {
                reason: format!("could not open the call: {status}"),
                registered: false,
            };
        }
    };
    let mut registered = false;
    let mut in_flight = JoinSet::new();
    let silence = PING_INTERVAL * 3;
    let ended = loop {
        tokio::select! {
            _ = token.cancelled() => break Ended::Stopped,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            message = tokio::time::timeout(silence, incoming.message()) => {
                let message = match message {
                    Err(_) => break Ended::Failed {
                        reason: format!("no ping from the runtime for {silence:?}"),
                        registered,
                    },
                    Ok(Err(status)) => break Ended::Failed {
                        reason: format!("the call failed: {status}"),
                        registered,
                    },
                    Ok(Ok(None)) => break Ended::Failed {
                        reason: "the runtime ended the call".to_owned(),
                        registered,
                    },
                    Ok(Ok(Some(message))) => message,
                };
                match protocol.classify(message) {
                    Incoming::Ping => {
                        if sender.send(protocol.pong()).await.is_err() {
                            break Ended::Failed { reason: "the call closed".to_owned(), registered };
                        }
                    }
                    Incoming::Registration(None) => {
                        registered = true;
                        registrations.fetch_add(1, Ordering::SeqCst);
                        tracing::info!(kind = protocol.kind(), id = %protocol.id(), "registered");
                        let _ = state.send(ProcessorState::Registered);
                    }
                    Incoming::Registration(Some(failure)) => {
                        let error = crate::error::runtime_failure(failure);
                        break Ended::Failed {
                            reason: format!("registration refused: {error}"),
                            registered: false,
                        };
                    }
                    Incoming::Request(request) => {
                        let protocol = protocol.clone();
                        let sender = sender.clone();
                        in_flight.spawn(async move {
                            let response = protocol.handle(request).await;
                            let _ = sender.send(response).await;
                        });
                    }
                    Incoming::Nothing => {}
                }
            }
        }
    };
    if matches!(ended, Ended::Stopped) {
        // Answer what is in flight before closing our side of the call, so that no event the
        // handler finished is processed again after a restart.
        while in_flight.join_next().await.is_some() {}
    } else {
        in_flight.abort_all();
    }
    drop(sender);
    drop(incoming);
    ended
}

/// Runs user code, turning a panic into an error so that the Runtime still gets an answer.
pub(crate) async fn guarded<T>(
    future: impl Future<Output = Result<T, HandlerError>>,
) -> Result<T, String> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("panicked: {message}"))
        }
    }
}

/// A processor failure that asks for a retry after the backoff's delay for this attempt.
pub(crate) fn processor_failure(
    reason: String,
    retry: &Backoff,
    state: Option<&RetryProcessingState>,
) -> ProcessorFailure {
    let attempt = state.map_or(0, |state| state.retry_count.saturating_add(1));
    let delay = retry.delay(attempt);
    ProcessorFailure {
        reason,
        retry: true,
        retry_timeout: Some(prost_types::Duration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    }
}

/// The tenant of a request: the tenant of its execution context.
pub(crate) fn request_tenant(
    context: Option<&dolittle_contracts::services::ReverseCallRequestContext>,
) -> Result<TenantId, Error> {
    let execution_context = context
        .and_then(|context| context.execution_context.clone())
        .ok_or_else(|| Error::Runtime {
            id: dolittle_contracts::failure_ids::OTHER,
            reason: "the request has no execution context".to_owned(),
        })?;
    Ok(dolittle_types::ExecutionContext::try_from(execution_context)?.tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_failures_ask_for_retries_after_growing_delays() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let timeout = |state: Option<RetryProcessingState>| {
            processor_failure("boom".into(), &backoff, state.as_ref())
                .retry_timeout
                .map(|duration| (duration.seconds, duration.nanos))
        };
        let retry = |retry_count| RetryProcessingState {
            failure_reason: "boom".into(),
            retry_count,
        };

        assert_eq!(timeout(None), Some((0, 500_000_000)));
        assert_eq!(timeout(Some(retry(0))), Some((1, 0)));
        assert_eq!(timeout(Some(retry(1))), Some((2, 0)));
        assert_eq!(timeout(Some(retry(9))), Some((4, 0)));
        assert!(processor_failure("boom".into(), &backoff, None).retry);
    }

    #[tokio::test]
    async fn guarded_turns_errors_and_panics_into_reasons() {
        let failed = guarded(async { Err::<(), HandlerError>("the oven is cold".into()) }).await;
        let panicked = guarded(async {
            if true {
                panic!("the oven exploded");
            }
            Ok::<(), HandlerError>(())
        })
        .await;
        let fine = guarded(async { Ok::<_, HandlerError>(7) }).await;

        assert_eq!(failed, Err("the oven is cold".to_owned()));
        assert_eq!(panicked, Err("panicked: the oven exploded".to_owned()));
        assert_eq!(fine, Ok(7));
    }
}
