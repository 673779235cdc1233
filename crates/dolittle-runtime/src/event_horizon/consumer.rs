//! The consumer side of the event horizon: this Runtime's subscriptions to producers.
//!
//! One task runs per subscription, keyed by the consumer tenant and the [`SubscriptionKey`]
//! (producer microservice, producer tenant, stream, partition, scope); asking again for a
//! running subscription reuses it. The task connects to the producer's public endpoint found
//! in `microservices.json`, sends the subscription request from its stored position, answers
//! pings, and stores the events it receives in batches: each batch goes into the scoped event
//! log together with the subscription's new position in one atomic `commit_external`, and
//! only then are the events answered. A crash on either side therefore neither skips nor
//! duplicates an event: the producer sends again what was not answered, and whatever is below
//! the stored position is answered without being stored twice.
//!
//! When the producer is unreachable, refuses, or the connection breaks, the task records why in
//! the subscription state (reason, attempts, retry time) and tries again after
//! min(2^(attempts-1), 60) seconds. Subscriptions are stored when first asked for, so a
//! restarted Runtime resumes them without waiting for a head to ask again.
//!
//! The consumer microservice the producer checks consents against is the one of the head that
//! asked. It is kept in the subscription's stored state, so a resumed subscription asks as the
//! same microservice; only states stored before it was kept fall back to this Runtime's own id
//! (bounded-context.json or `--microservice-id`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolittle_contracts::convert;
use dolittle_contracts::runtime::eventhorizon::consumer_client::ConsumerClient;
use dolittle_contracts::runtime::eventhorizon::event_horizon_producer_to_consumer_message::Message as FromProducer;
use dolittle_contracts::runtime::eventhorizon::{
    ConsumerRequest, EventHorizonConsumerToProducerMessage, EventHorizonProducerToConsumerMessage,
};
use dolittle_store::{
    ExternalEvent, ProcessingFailure, SharedEventStore, SubscriptionKey, SubscriptionState,
};
use dolittle_types::{
    CommittedEvent, ConsentId, CorrelationId, ExecutionContext, MicroserviceId, TenantId,
    Timestamp, Uuid,
};
use futures::FutureExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Endpoint;

use crate::RuntimeContext;
use crate::event_horizon::protocol::{consumer_response, pong, subscription_to_wire};
use crate::event_horizon::{ConsumerSubscription, SubscriptionError};
use crate::failures::error_handling_event;
use crate::metrics::SubscriptionCounters;

/// The ping interval this Runtime asks producers for (Dolittle v6.1 asks for 10 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long to wait for a producer to accept a TCP connection and answer the call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most events stored in one atomic write.
const MOST_EVENTS_PER_WRITE: usize = 2048;
/// The longest pause between attempts.
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// How long to wait before reading a subscription's state again after the store failed.
const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Room for pongs and responses to a producer.
const OUTGOING_QUEUE: usize = 4096;
/// The largest message accepted from a producer (events can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The outcome of one attempt to connect to a producer, numbered from 1.
#[derive(Debug, Clone, Default)]
struct Attempt {
    number: u64,
    result: Option<Result<ConsentId, SubscriptionError>>,
}

#[derive(Clone)]
struct Running {
    attempts: watch::Receiver<Attempt>,
    /// Cuts a backoff short when a head asks for a failing subscription again.
    retry_now: Arc<Notify>,
}

/// The subscriptions running in this Runtime.
#[derive(Default)]
pub struct Subscriptions {
    running: Mutex<HashMap<(TenantId, SubscriptionKey), Running>>,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, SubscriptionKey), Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys of the running subscriptions, per consumer tenant.
    pub fn keys(&self) -> Vec<(TenantId, SubscriptionKey)> {
        let mut keys: Vec<_> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// Starts (or reuses) a subscription for a consumer tenant and waits for the outcome of its
/// first connection attempt (of the next one, when a running one is failing).
pub async fn subscribe(
    context: &RuntimeContext,
    consumer: &ExecutionContext,
    key: SubscriptionKey,
) -> Result<ConsentId, SubscriptionError> {
    let tenant = consumer.tenant;
    context
        .tenants
        .store(tenant)
        .map_err(|_| SubscriptionError::UnknownConsumerTenant(tenant))?;
    if !context
        .config
        .microservices
        .contains_key(&key.producer_microservice)
    {
        return Err(SubscriptionError::MissingMicroserviceConfiguration(
            key.producer_microservice,
        ));
    }
    let running = start(context, tenant, consumer.microservice, key);
    let mut attempts = running.attempts.clone();
    let seen = attempts.borrow_and_update().clone();
    let wanted = match seen.result {
        Some(Ok(consent)) => return Ok(consent),
        Some(Err(_)) => {
            running.retry_now.notify_one();
            seen.number + 1
        }
        None => seen.number.max(1),
    };
    loop {
        tokio::select! {
            changed = attempts.changed() => {
                if changed.is_err() {
                    return Err(SubscriptionError::Cancelled);
                }
            }
            () = context.shutdown.cancelled() => return Err(SubscriptionError::Cancelled),
        }
        let attempt = attempts.borrow_and_update().clone();
        if let Some(result) = attempt.result.filter(|_| attempt.number >= wanted) {
            return result;
        }
    }
}

/// Starts every subscription stored in the tenants' stores by earlier runs.
pub fn resume_stored_subscriptions(context: &RuntimeContext) {
    let context = context.clone();
    context.processors.clone().spawn(async move {
        for (tenant, store) in context.tenants.iter() {
            match store.list_subscription_states().await {
                Ok(states) => {
                    for (key, state) in states {
                        tracing::info!(
                            %tenant,
                            producer_microservice = %key.producer_microservice,
                            producer_tenant = %key.producer_tenant,
                            stream = %key.stream,
                            partition = %key.partition.as_str(),
                            scope = %key.scope,
                            position = state.position,
                            "resuming event horizon subscription"
                        );
                        let microservice = state
                            .consumer_microservice
                            .unwrap_or(context.config.microservice);
                        start(&context, tenant, microservice, key);
                    }
                }
                Err(error) => {
                    tracing::error!(%tenant, %error, "cannot list event horizon subscriptions");
                }
            }
        }
    });
}

/// The running subscription for a key, started when there is none.
fn start(
    context: &RuntimeContext,
    tenant: TenantId,
    consumer_microservice: MicroserviceId,
    key: SubscriptionKey,
) -> Running {
    let mut running = context.event_horizon.subscriptions.lock();
    if let Some(existing) = running.get(&(tenant, key.clone())) {
        return existing.clone();
    }
    let (attempts_sender, attempts) = watch::channel(Attempt::default());
    let entry = Running {
        attempts,
        retry_now: Arc::new(Notify::new()),
    };
    running.insert((tenant, key.clone()), entry.clone());
    drop(running);
    let Ok(store) = context.tenants.store(tenant).cloned() else {
        attempts_sender.send_replace(Attempt {
            number: 1,
            result: Some(Err(SubscriptionError::UnknownConsumerTenant(tenant))),
        });
        return entry;
    };
    let counters = context.metrics.subscription(labels(tenant, &key));
    let task = SubscriptionTask {
        context: context.clone(),
        tenant,
        consumer_microservice,
        key,
        store,
        counters,
        attempts: attempts_sender,
        retry_now: entry.retry_now.clone(),
        cancelled: context.shutdown.child_token(),
    };
    context.processors.spawn(task.run());
    entry
}

fn labels(tenant: TenantId, key: &SubscriptionKey) -> String {
    format!(
        "tenant=\"{tenant}\",producer_microservice=\"{}\",producer_tenant=\"{}\",stream=\"{}\",\
         partition=\"{}\",scope=\"{}\"",
        key.producer_microservice,
        key.producer_tenant,
        key.stream,
        key.partition
            .as_str()
            .replace('\\', "\\\\")
            .replace('"', "\\\""),
        key.scope
    )
}

/// The pause before attempt `failures + 1`: 1, 2, 4, ... seconds, at most 60.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(1 << exponent).min(LONGEST_BACKOFF)
}

struct SubscriptionTask {
    context: RuntimeContext,
    tenant: TenantId,
    consumer_microservice: MicroserviceId,
    key: SubscriptionKey,
    store: SharedEventStore,
    counters: Arc<SubscriptionCounters>,
    attempts: watch::Sender<Attempt>,
    retry_now: Arc<Notify>,
    cancelled: CancellationToken,
}

/// An accepted connection to a producer.
struct Connection {
    consent: ConsentId,
    outgoing: mpsc::Sender<EventHorizonConsumerToProducerMessage>,
    incoming: Streaming<EventHorizonProducerToConsumerMessage>,
}

impl SubscriptionTask {
    async fn run(self) {
        let Some(mut state) = self.load_state().await else {
            return;
        };
        let mut failures: u32 = 0;
        loop {
            let number = self.attempts.borrow().number + 1;
            let reason = match self.connect(state.position).await {
                Ok(connection) => {
                    self.attempts.send_replace(Attempt {
                        number,
                        result: Some(Ok(connection.consent)),
                    });
                    failures = 0;
                    self.counters.failing.store(0, Ordering::Relaxed);
                    if state.failure.take().is_some() {
                        self.save_state(&state).await;
                    }
                    tracing::info!(
                        tenant = %self.tenant,
                        producer_microservice = %self.key.producer_microservice,
                        stream = %self.key.stream,
                        consent = %connection.consent,
                        position = state.position,
                        "event horizon subscription connected"
                    );
                    self.receive(connection, &mut state).await
                }
                Err(error) => {
                    self.attempts.send_replace(Attempt {
                        number,
                        result: Some(Err(error.clone())),
                    });
                    error
                }
            };
            if self.cancelled.is_cancelled() || reason == SubscriptionError::Cancelled {
                return;
            }
            failures = failures.saturating_add(1);
            let delay = backoff(failures);
            let now = Timestamp::now();
            state.failure = Some(ProcessingFailure {
                reason: reason.to_string(),
                attempts: failures,
                retry_time: Some(now.after(delay)),
                last_failed: now,
            });
            self.counters.failing.store(1, Ordering::Relaxed);
            tracing::warn!(
                tenant = %self.tenant,
                producer_microservice = %self.key.producer_microservice,
                stream = %self.key.stream,
                partition = %self.key.partition.as_str(),
                reason = %reason,
                attempts = failures,
                retry_in = ?delay,
                "event horizon subscription is failing"
            );
            self.save_state(&state).await;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.retry_now.notified() => {}
                () = self.cancelled.cancelled() => return,
            }
        }
    }

    /// The stored state, stored first when the subscription is new.
    async fn load_state(&self) -> Option<SubscriptionState> {
        loop {
            let result = match self.store.get_subscription_state(&self.key).await {
                Ok(Some(state))
                    if state.consumer_microservice == Some(self.consumer_microservice) =>
                {
                    Ok(state)
                }
                Ok(stored) => {
                    // New, or stored before the consumer microservice was kept: keep it now so
                    // that a resumed subscription asks the producer as the same microservice.
                    let state = SubscriptionState {
                        consumer_microservice: Some(self.consumer_microservice),
                        ..stored.unwrap_or_default()
                    };
                    self.store
                        .save_subscription_state(&self.key, &state)
                        .await
                        .map(|()| state)
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(state) => {
                    self.counters
                        .position
                        .store(state.position, Ordering::Relaxed);
                    return Some(state);
                }
                Err(error) => {
                    tracing::error!(tenant = %self.tenant, %error, "cannot read subscription state");
                    self.attempts.send_modify(|attempt| {
                        attempt.number += 1;
                        attempt.result = Some(Err(SubscriptionError::Store(error)));
                    });
                    tokio::select! {
                        () = tokio::time::sleep(STORE_RETRY_DELAY) => {}
                        () = self.cancelled.cancelled() => return None,
                    }
                }
            }
        }
    }

    async fn save_state(&self, state: &SubscriptionState) {
        if let Err(error) = self.store.save_subscription_state(&self.key, state).await {
            tracing::error!(tenant = %self.tenant, %error, "cannot save subscription state");
        }
    }

    /// Connects to the producer and waits for its answer to the subscription request.
    async fn connect(
        &self,
        position: dolittle_types::StreamPosition,
    ) -> Result<Connection, SubscriptionError> {
        let address = self
            .context
            .config
            .microservices
            .get(&self.key.producer_microservice)
            .ok_or(SubscriptionError::MissingMicroserviceConfiguration(
                self.key.producer_microservice,
            ))?;
        let uri = format!("http://{}:{}", address.host, address.port);
        let could_not_connect =
            |what: String| SubscriptionError::CouldNotConnect(format!("{uri}: {what}"));
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|error| could_not_connect(format!("not a valid address: {error}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = tokio::select! {
            channel = endpoint.connect() => channel
                .map_err(|error| could_not_connect(format!("cannot connect: {}", error_chain(&error))))?,
            () = self.cancelled.cancelled() => return Err(SubscriptionError::Cancelled),
        };
        let (outgoing, receiver) = mpsc::channel(OUTGOING_QUEUE);
        let subscription = ConsumerSubscription {
            consumer_microservice: self.consumer_microservice,
            consumer_tenant: self.tenant,
            producer_tenant: self.key.producer_tenant,
            stream: self.key.stream,
            partition: self.key.partition.clone(),
            position,
        };
        let execution_context = ExecutionContext {
            microservice: self.consumer_microservice,
            tenant: self.tenant,
            correlation: CorrelationId::new_random(),
            ..ExecutionContext::default()
        };
        outgoing
            .try_send(subscription_to_wire(
                &subscription,
                &execution_context,
                PING_INTERVAL,
            ))
            .map_err(|_| could_not_connect("cannot queue the subscription request".into()))?;
        let mut client = ConsumerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let call = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.subscribe(ReceiverStream::new(receiver)),
        );
        let mut incoming = tokio::select! {
            response = call => response
                .map_err(|_| could_not_connect("the producer did not answer in time".into()))?
                .map_err(|status| could_not_connect(format!("the call failed: {}", status.message())))?
                .into_inner(),
            () = self.cancelled.cancelled() => return Err(SubscriptionError::Cancelled),
        };
        loop {
            let message = tokio::select! {
                message = tokio::time::timeout(PING_INTERVAL * 3, incoming.message()) => message,
                () = self.cancelled.cancelled() => return Err(SubscriptionError::Cancelled),
            };
            let message = match message {
                Err(_) => {
                    return Err(could_not_connect(
                        "the producer did not answer in time".into(),
                    ));
                }
                Ok(Err(status)) => {
                    return Err(could_not_connect(format!(
                        "the call failed: {}",
                        status.message()
                    )));
                }
                Ok(Ok(None)) => {
                    return Err(could_not_connect(
                        "the producer ended the call without answering".into(),
                    ));
                }
                Ok(Ok(Some(message))) => message,
            };
            match message.message {
                Some(FromProducer::Ping(_)) => {
                    let _ = outgoing.try_send(pong());
                }
                Some(FromProducer::SubscriptionResponse(response)) => {
                    if let Some(failure) = response.failure {
                        return Err(producer_failure(failure));
                    }
                    let consent = convert::optional_guid::<ConsentId>(
                        "consentId",
                        response.consent_id.as_ref(),
                    )
                    .map_err(|error| could_not_connect(error.to_string()))?
                    .unwrap_or(ConsentId::NIL);
                    return Ok(Connection {
                        consent,
                        outgoing,
                        incoming,
                    });
                }
                Some(FromProducer::Request(_)) => {
                    return Err(could_not_connect(
                        "the producer sent an event before accepting the subscription".into(),
                    ));
                }
                None => {}
            }
        }
    }

    /// Receives and stores events until the connection ends; returns why it ended.
    async fn receive(
        &self,
        mut connection: Connection,
        state: &mut SubscriptionState,
    ) -> SubscriptionError {
        let mut batch: Vec<ConsumerRequest> = Vec::new();
        loop {
            let message = tokio::select! {
                message = tokio::time::timeout(PING_INTERVAL * 3, connection.incoming.message()) => message,
                () = self.cancelled.cancelled() => return SubscriptionError::Cancelled,
            };
            let mut ended = match message {
                Err(_) => Some(SubscriptionError::CouldNotConnect(
                    "the producer sent nothing within three ping intervals".into(),
                )),
                Ok(message) => self.take(&connection, message, &mut batch),
            };
            while ended.is_none() && batch.len() < MOST_EVENTS_PER_WRITE {
                // Whatever has already arrived goes into the same write.
                match connection.incoming.message().now_or_never() {
                    Some(message) => ended = self.take(&connection, message, &mut batch),
                    None => break,
                }
            }
            if !batch.is_empty()
                && let Err(error) = self.store_batch(&connection, &mut batch, state).await
            {
                return error;
            }
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Handles one message: pings are answered, events are added to the batch. Returns why
    /// the connection ended, if it did.
    fn take(
        &self,
        connection: &Connection,
        message: Result<Option<EventHorizonProducerToConsumerMessage>, tonic::Status>,
        batch: &mut Vec<ConsumerRequest>,
    ) -> Option<SubscriptionError> {
        match message {
            Err(status) => Some(SubscriptionError::CouldNotConnect(format!(
                "the connection to the producer failed: {}",
                status.message()
            ))),
            Ok(None) => Some(SubscriptionError::CouldNotConnect(
                "the producer ended the subscription".into(),
            )),
            Ok(Some(message)) => match message.message {
                Some(FromProducer::Ping(_)) => {
                    let _ = connection.outgoing.try_send(pong());
                    None
                }
                Some(FromProducer::Request(request)) => {
                    batch.push(request);
                    None
                }
                Some(FromProducer::SubscriptionResponse(response)) => {
                    Some(response.failure.map(producer_failure).unwrap_or_else(|| {
                        SubscriptionError::CouldNotConnect(
                            "the producer answered the subscription twice".into(),
                        )
                    }))
                }
                None => None,
            },
        }
    }

    /// Stores a batch of received events with the new position, then answers them.
    async fn store_batch(
        &self,
        connection: &Connection,
        batch: &mut Vec<ConsumerRequest>,
        state: &mut SubscriptionState,
    ) -> Result<(), SubscriptionError> {
        let received = Timestamp::now();
        let mut events = Vec::with_capacity(batch.len());
        let mut call_ids = Vec::with_capacity(batch.len());
        let mut position = state.position;
        let mut last_occurred = None;
        let mut invalid = None;
        for request in batch.drain(..) {
            call_ids.push(request.call_context.and_then(|context| context.call_id));
            let Some(event) = request.event else {
                invalid.get_or_insert_with(|| "a request without an event".to_owned());
                continue;
            };
            if event.stream_sequence_number < position {
                // Already stored: the producer sends again what was not answered before.
                continue;
            }
            let committed = event
                .event
                .ok_or_else(|| "an event horizon event without its event".to_owned())
                .and_then(|event| {
                    CommittedEvent::try_from(event).map_err(|error| error.to_string())
                });
            match committed {
                Ok(committed) => {
                    last_occurred = Some(committed.occurred);
                    position = event.stream_sequence_number + 1;
                    events.push(ExternalEvent {
                        event: committed,
                        consent: connection.consent,
                        received,
                    });
                }
                Err(reason) => {
                    invalid.get_or_insert(reason);
                    break;
                }
            }
        }
        let stored = events.len();
        tracing::debug!(
            from = state.position,
            to = position,
            stored,
            first = events.first().map(|event| event.event.sequence_number),
            "storing received events"
        );
        if position != state.position {
            let new_state = SubscriptionState {
                position,
                last_successfully_processed: Some(received),
                failure: None,
                consumer_microservice: Some(self.consumer_microservice),
            };
            if let Err(error) = self
                .store
                .commit_external(&self.key, events, &new_state)
                .await
            {
                let failure = error_handling_event(&error);
                for call_id in call_ids {
                    let _ = connection
                        .outgoing
                        .try_send(consumer_response(call_id, Some(failure.clone())));
                }
                return Err(SubscriptionError::Store(error));
            }
            *state = new_state;
        }
        if let Some(reason) = invalid {
            let failure = error_handling_event(&reason);
            for call_id in call_ids {
                let _ = connection
                    .outgoing
                    .try_send(consumer_response(call_id, Some(failure.clone())));
            }
            return Err(SubscriptionError::Consumer(reason));
        }
        for call_id in call_ids {
            if connection
                .outgoing
                .send(consumer_response(call_id, None))
                .await
                .is_err()
            {
                return Err(SubscriptionError::CouldNotConnect(
                    "the connection to the producer closed".into(),
                ));
            }
        }
        self.counters
            .received
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.counters.position.store(position, Ordering::Relaxed);
        if let Some(occurred) = last_occurred {
            let lag = received
                .unix_micros()
                .saturating_sub(occurred.unix_micros());
            self.counters
                .lag_micros
                .store(lag.max(0) as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The failure a producer answered with, kept with its id.
fn producer_failure(failure: dolittle_contracts::protobuf::Failure) -> SubscriptionError {
    let id = failure
        .id
        .as_ref()
        .and_then(|id| convert::uuid_from_wire("failure.id", id).ok())
        .unwrap_or(Uuid::nil());
    SubscriptionError::Producer {
        id,
        reason: failure.reason,
    }
}

/// An error and its sources, for a transport error whose outer message says little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9)
            .map(|failures| backoff(failures).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
