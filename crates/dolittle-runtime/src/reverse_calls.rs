//! Reverse calls: the bidirectional streams on which a head registers a processor and the
//! Runtime then sends it requests (protocol.md §3.1).
//!
//! The head speaks first with its registration arguments. From then on the Runtime pings on
//! its own timer every `pingInterval` (starting before the registration response), keeps a
//! keepalive deadline of three intervals refreshed by every message from the head, correlates
//! requests and responses by call id with any number in flight, and, when the head goes away,
//! fails every pending call and cancels the registration's token so that the processors stop
//! and unregister.
//!
//! The five `Connect` services share this machinery through the [`ReverseCallProtocol`] trait,
//! which says how to take each service's oneof messages apart and put them together.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolittle_contracts::services::{
    ReverseCallArgumentsContext, ReverseCallRequestContext, ReverseCallResponseContext,
};
use dolittle_types::{ExecutionContext, Uuid};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

/// How long the Runtime waits for the head's first message.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused call is kept open before the Runtime ends it, unless the head ends it
/// first. Keeping it open makes SDK 17 retry after 1 s instead of in a hot loop.
const REFUSED_CALL_LINGER: Duration = Duration::from_secs(60);
/// Bounds the outgoing queue of one reverse call.
const OUTGOING_QUEUE: usize = 1024;
/// The smallest ping interval the Runtime honours, so a head cannot make it spin.
const MINIMUM_PING_INTERVAL: Duration = Duration::from_millis(100);

/// The message kinds a head sends on a reverse call.
pub enum FromHead<Registration, Response> {
    Registration(Registration),
    Response(Response),
    Pong,
    /// A message with no arm set.
    Empty,
}

/// How one reverse-call service's messages are taken apart and built.
pub trait ReverseCallProtocol: Send + Sync + 'static {
    /// What the head sends (the `...ClientToRuntimeMessage`).
    type ClientMessage: Send + 'static;
    /// What the Runtime sends (the `...RuntimeToClientMessage`).
    type ServerMessage: Send + 'static;
    type Registration: Send + 'static;
    type RegistrationResponse: Send + 'static;
    type Request: Send + 'static;
    type Response: Send + 'static;

    /// The failure id used when registration arguments are missing.
    const FAILED_TO_REGISTER: Uuid;

    fn classify(message: Self::ClientMessage) -> FromHead<Self::Registration, Self::Response>;
    fn arguments(registration: &Self::Registration) -> Option<&ReverseCallArgumentsContext>;
    fn response_context(response: &Self::Response) -> Option<&ReverseCallResponseContext>;
    fn registration_response(
        failure: Option<dolittle_contracts::protobuf::Failure>,
    ) -> Self::ServerMessage;
    fn request(request: Self::Request) -> Self::ServerMessage;
    fn ping() -> Self::ServerMessage;
    fn set_request_context(request: &mut Self::Request, context: ReverseCallRequestContext);
}

/// Why a call to the head did not get a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the head disconnected")]
    Disconnected,
}

type PendingCalls<Response> = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Response>>>>;

/// Sends requests to a connected head and awaits its responses.
pub struct HeadConnection<P: ReverseCallProtocol> {
    outgoing: mpsc::Sender<Result<P::ServerMessage, Status>>,
    pending: PendingCalls<P::Response>,
    cancelled: CancellationToken,
    /// The head's context from its registration: its microservice, version and environment.
    pub head_context: ExecutionContext,
}

impl<P: ReverseCallProtocol> HeadConnection<P> {
    /// Sends a request with a fresh call id and the given execution context, and waits for the
    /// head's response. Fails when the head disconnects before it answers.
    pub async fn call(
        &self,
        mut request: P::Request,
        execution_context: &ExecutionContext,
    ) -> Result<P::Response, CallError> {
        let call_id = Uuid::new_v4();
        let call_id_bytes = call_id.to_bytes_le().to_vec();
        let (sender, receiver) = oneshot::channel();
        self.lock_pending().insert(call_id_bytes.clone(), sender);
        P::set_request_context(
            &mut request,
            ReverseCallRequestContext {
                call_id: Some(dolittle_contracts::protobuf::Uuid::from(call_id)),
                execution_context: Some(execution_context.clone().into()),
            },
        );
        if self.outgoing.send(Ok(P::request(request))).await.is_err() {
            self.lock_pending().remove(&call_id_bytes);
            return Err(CallError::Disconnected);
        }
        tokio::select! {
            response = receiver => response.map_err(|_| CallError::Disconnected),
            () = self.cancelled.cancelled() => {
                self.lock_pending().remove(&call_id_bytes);
                Err(CallError::Disconnected)
            }
        }
    }

    /// Sends a request now and returns the future of its response, so that a caller can write
    /// many requests in a fixed order and await their responses later (the event horizon keeps
    /// several events in flight this way; polling many [`Self::call`] futures at once would not
    /// keep their order on the wire).
    pub async fn send_request(
        &self,
        mut request: P::Request,
        execution_context: &ExecutionContext,
    ) -> Result<
        impl std::future::Future<Output = Result<P::Response, CallError>> + Send + 'static,
        CallError,
    > {
        let call_id = Uuid::new_v4();
        let call_id_bytes = call_id.to_bytes_le().to_vec();
        let (sender, receiver) = oneshot::channel();
        self.lock_pending().insert(call_id_bytes.clone(), sender);
        P::set_request_context(
            &mut request,
            ReverseCallRequestContext {
                call_id: Some(dolittle_contracts::protobuf::Uuid::from(call_id)),
                execution_context: Some(execution_context.clone().into()),
            },
        );
        if self.outgoing.send(Ok(P::request(request))).await.is_err() {
            self.lock_pending().remove(&call_id_bytes);
            return Err(CallError::Disconnected);
        }
        let cancelled = self.cancelled.clone();
        let pending = self.pending.clone();
        Ok(async move {
            tokio::select! {
                response = receiver => response.map_err(|_| CallError::Disconnected),
                () = cancelled.cancelled() => {
                    pending
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(&call_id_bytes);
                    Err(CallError::Disconnected)
                }
            }
        })
    }

    /// Writes a message that is not a request (the event horizon's subscription response).
    pub async fn send(&self, message: P::ServerMessage) -> Result<(), CallError> {
        self.outgoing
            .send(Ok(message))
            .await
            .map_err(|_| CallError::Disconnected)
    }

    /// Cancelled when the head disconnects or the Runtime shuts down.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancelled
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, oneshot::Sender<P::Response>>> {
        // A poisoned map only means another task panicked while holding it; the map itself
        // is still consistent (inserts and removes are single operations).
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The outcome of a registration decided by a service.
pub enum Registration {
    /// Accepted: the service runs its processors until the connection's token is cancelled.
    Accepted,
    /// Refused with a failure the head sees.
    Refused(dolittle_contracts::protobuf::Failure),
}

/// The outgoing half of a reverse call, returned to tonic as the response stream.
pub type OutgoingStream<P> =
    Pin<Box<dyn Stream<Item = Result<<P as ReverseCallProtocol>::ServerMessage, Status>> + Send>>;

/// Runs one reverse call. `register` receives the registration message and the connection,
/// decides, and when it accepts starts whatever processing it wants (spawned tasks that watch
/// `connection.cancellation()`). Returns at once with the stream tonic sends to the head.
pub fn serve<P, F, Fut>(
    incoming: Streaming<P::ClientMessage>,
    context: &crate::RuntimeContext,
    register: F,
) -> OutgoingStream<P>
where
    P: ReverseCallProtocol,
    P::ClientMessage: prost::Message + Default,
    F: FnOnce(P::Registration, Arc<HeadConnection<P>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Registration> + Send + 'static,
{
    let (outgoing, receiver) = mpsc::channel(OUTGOING_QUEUE);
    let open = context.metrics.reverse_call_opened();
    let shutdown = context.shutdown.clone();
    tokio::spawn(async move {
        run_reverse_call::<P, F, Fut>(incoming, outgoing, shutdown, register).await;
        drop(open);
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

async fn run_reverse_call<P, F, Fut>(
    mut incoming: Streaming<P::ClientMessage>,
    outgoing: mpsc::Sender<Result<P::ServerMessage, Status>>,
    shutdown: CancellationToken,
    register: F,
) where
    P: ReverseCallProtocol,
    P::ClientMessage: prost::Message + Default,
    F: FnOnce(P::Registration, Arc<HeadConnection<P>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Registration> + Send + 'static,
{
    let first = tokio::select! {
        first = tokio::time::timeout(REGISTRATION_TIMEOUT, incoming.next()) => first,
        () = shutdown.cancelled() => return,
    };
    let registration = match first {
        Ok(Some(Ok(message))) => match P::classify(message) {
            FromHead::Registration(registration) => Some(registration),
            _ => None,
        },
        _ => None,
    };
    let arguments = registration.as_ref().and_then(|registration| {
        let arguments = P::arguments(registration)?;
        let head_context = ExecutionContext::try_from(arguments.execution_context.clone()?).ok()?;
        let interval = arguments.ping_interval?;
        Some((head_context, interval))
    });
    let (Some(registration), Some((head_context, ping_interval))) = (registration, arguments)
    else {
        let failure = dolittle_contracts::failure(
            P::FAILED_TO_REGISTER,
            "Connection arguments were not received",
        );
        refuse::<P>(incoming, &outgoing, failure, &shutdown).await;
        return;
    };
    let ping_interval = Duration::try_from(ping_interval)
        .unwrap_or(Duration::from_secs(1))
        .max(MINIMUM_PING_INTERVAL);

    let cancelled = shutdown.child_token();
    let connection = Arc::new(HeadConnection::<P> {
        outgoing: outgoing.clone(),
        pending: Arc::new(Mutex::new(HashMap::new())),
        cancelled: cancelled.clone(),
        head_context,
    });
    let pinger = tokio::spawn(ping::<P>(
        outgoing.clone(),
        ping_interval,
        cancelled.clone(),
    ));
    let reader = tokio::spawn(read_responses::<P>(
        incoming,
        connection.pending.clone(),
        ping_interval * 3,
        cancelled.clone(),
    ));

    match register(registration, connection.clone()).await {
        Registration::Accepted => {
            if outgoing
                .send(Ok(P::registration_response(None)))
                .await
                .is_err()
            {
                cancelled.cancel();
            }
        }
        Registration::Refused(failure) => {
            tracing::info!(reason = %failure.reason, "registration refused");
            let _ = outgoing
                .send(Ok(P::registration_response(Some(failure))))
                .await;
            // Keep the call open (and pinging) so that the head retries after its own delay
            // instead of at once; end it after a while if the head never does.
            let _ = tokio::time::timeout(REFUSED_CALL_LINGER, cancelled.cancelled()).await;
            cancelled.cancel();
        }
    }
    cancelled.cancelled().await;
    pinger.abort();
    reader.abort();
    // Dropping the senders fails every call still waiting for a response.
    connection
        .pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clear();
}

/// Starts the generic parts of a reverse call whose first message the caller has already read
/// and judged: pings on their own timer, the keepalive deadline, and responses matched to
/// pending calls. For services whose accept response carries more than a failure (the event
/// horizon's `subscriptionResponse{consentId}`), which then write it with
/// [`HeadConnection::send`]. Everything stops when `cancelled` is cancelled or the client goes.
pub(crate) fn start_connection<P>(
    incoming: Streaming<P::ClientMessage>,
    outgoing: mpsc::Sender<Result<P::ServerMessage, Status>>,
    ping_interval: Duration,
    head_context: ExecutionContext,
    cancelled: CancellationToken,
) -> Arc<HeadConnection<P>>
where
    P: ReverseCallProtocol,
    P::ClientMessage: prost::Message + Default,
{
    let ping_interval = ping_interval.max(MINIMUM_PING_INTERVAL);
    let connection = Arc::new(HeadConnection::<P> {
        outgoing: outgoing.clone(),
        pending: Arc::new(Mutex::new(HashMap::new())),
        cancelled: cancelled.clone(),
        head_context,
    });
    let pinger = tokio::spawn(ping::<P>(outgoing, ping_interval, cancelled.clone()));
    let reader = tokio::spawn(read_responses::<P>(
        incoming,
        connection.pending.clone(),
        ping_interval * 3,
        cancelled.clone(),
    ));
    let pending = connection.pending.clone();
    tokio::spawn(async move {
        cancelled.cancelled().await;
        pinger.abort();
        reader.abort();
        pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    });
    connection
}

/// Answers a registration that cannot be accepted, and keeps the call open for a while.
async fn refuse<P: ReverseCallProtocol>(
    mut incoming: Streaming<P::ClientMessage>,
    outgoing: &mpsc::Sender<Result<P::ServerMessage, Status>>,
    failure: dolittle_contracts::protobuf::Failure,
    shutdown: &CancellationToken,
) where
    P::ClientMessage: prost::Message + Default,
{
    tracing::info!(reason = %failure.reason, "reverse call refused");
    if outgoing
        .send(Ok(P::registration_response(Some(failure))))
        .await
        .is_err()
    {
        return;
    }
    let drain = async { while let Some(Ok(_)) = incoming.next().await {} };
    tokio::select! {
        _ = tokio::time::timeout(REFUSED_CALL_LINGER, drain) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn ping<P: ReverseCallProtocol>(
    outgoing: mpsc::Sender<Result<P::ServerMessage, Status>>,
    interval: Duration,
    cancelled: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = cancelled.cancelled() => return,
        }
        match outgoing.try_send(Ok(P::ping())) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                cancelled.cancel();
                return;
            }
        }
    }
}

async fn read_responses<P: ReverseCallProtocol>(
    mut incoming: Streaming<P::ClientMessage>,
    pending: PendingCalls<P::Response>,
    keepalive: Duration,
    cancelled: CancellationToken,
) where
    P::ClientMessage: prost::Message + Default,
{
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout(keepalive, incoming.next()) => message,
            () = cancelled.cancelled() => return,
        };
        match message {
            Ok(Some(Ok(message))) => match P::classify(message) {
                FromHead::Response(response) => {
                    let call_id = P::response_context(&response)
                        .and_then(|context| context.call_id.as_ref())
                        .map(|call_id| call_id.value.clone());
                    let Some(call_id) = call_id else {
                        tracing::warn!("a response without a call id is ignored");
                        continue;
                    };
                    let waiting = pending
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(&call_id);
                    match waiting {
                        Some(sender) => {
                            let _ = sender.send(response);
                        }
                        None => tracing::warn!("a response to an unknown call is ignored"),
                    }
                }
                FromHead::Pong | FromHead::Empty => {}
                FromHead::Registration(_) => {
                    tracing::warn!("a second registration on one reverse call is ignored");
                }
            },
            Ok(Some(Err(status))) => {
                tracing::debug!(%status, "reverse call ended by the head");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                tracing::info!(
                    ?keepalive,
                    "head missed its keepalive deadline; disconnecting"
                );
                break;
            }
        }
    }
    cancelled.cancel();
}
