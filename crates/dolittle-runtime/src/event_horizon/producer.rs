//! The producer side of the event horizon: one `Consumer/Subscribe` call from a consumer
//! Runtime (protocol.md §3.6).
//!
//! The first message is checked: arguments, producer tenant, one matching consent, and the
//! stream must be public (a public filter's stream in the default scope; a stream that does
//! not exist yet is waited for). Then the partition is streamed from the requested position and
//! followed live through the store's stream watch. Up to [`EVENTS_IN_FLIGHT`] events are sent
//! before their responses come back; responses are matched by call id, so a consumer that
//! answers one at a time (Dolittle's) still works. Pings run on their own timer from the start.
//! When the consents change and this subscription's consent is gone, the producer sends a
//! `subscriptionResponse` with MissingConsent and ends the call.

use std::sync::Arc;
use std::time::Duration;

use dolittle_contracts::runtime::eventhorizon::event_horizon_consumer_to_producer_message::Message as FromConsumer;
use dolittle_contracts::runtime::eventhorizon::{
    ConsumerRequest, EventHorizonConsumerToProducerMessage, EventHorizonEvent,
    EventHorizonProducerToConsumerMessage,
};
use dolittle_types::{CorrelationId, ExecutionContext, ScopeId};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::RuntimeContext;
use crate::event_horizon::protocol::{
    ConsumerProtocol, subscription_from_wire, subscription_response,
};
use crate::event_horizon::{ConsumerSubscription, SubscriptionError, find_consent};
use crate::failures::subscription_failure;
use crate::reverse_calls::{HeadConnection, start_connection};

/// How many events may wait for the consumer's response at once.
pub const EVENTS_IN_FLIGHT: usize = 2048;
/// How long the producer waits for the consumer's first message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

type Outgoing = mpsc::Sender<Result<EventHorizonProducerToConsumerMessage, Status>>;

/// Serves one `Consumer/Subscribe` call until the consumer goes, the consent is withdrawn, or
/// the Runtime shuts down. Dropping the last sender of `outgoing` ends the call with status OK.
pub async fn serve(
    context: RuntimeContext,
    mut incoming: Streaming<EventHorizonConsumerToProducerMessage>,
    outgoing: Outgoing,
) {
    let first = tokio::select! {
        first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, incoming.next()) => first,
        () = context.shutdown.cancelled() => return,
    };
    let parsed = match first {
        Ok(Some(Ok(EventHorizonConsumerToProducerMessage {
            message: Some(FromConsumer::SubscriptionRequest(request)),
        }))) => subscription_from_wire(request).map_err(|error| error.to_string()),
        Ok(Some(Ok(_))) => Err("the first message was not a subscription request".to_owned()),
        Ok(Some(Err(status))) => Err(format!("the call failed: {}", status.message())),
        Ok(None) => Err("the call ended before a subscription request".to_owned()),
        Err(_) => Err("no subscription request within 30 s".to_owned()),
    };
    let (subscription, ping_interval, consumer_context) = match parsed {
        Ok(parsed) => parsed,
        Err(reason) => {
            let failure = subscription_failure(&SubscriptionError::MissingArguments(reason));
            let _ = outgoing
                .send(Ok(subscription_response(Some(failure), None)))
                .await;
            return;
        }
    };
    let cancelled = context.shutdown.child_token();
    let _stop_when_done = cancelled.clone().drop_guard();
    let connection = start_connection::<ConsumerProtocol>(
        incoming,
        outgoing,
        ping_interval,
        consumer_context,
        cancelled.clone(),
    );
    let outcome = Subscription {
        context: &context,
        connection: &connection,
        subscription: &subscription,
    }
    .run()
    .await;
    match outcome {
        Ok(()) => {}
        Err(SubscriptionError::Cancelled) => {
            tracing::debug!(stream = %subscription.stream, "event horizon consumer went away");
        }
        Err(error) => {
            tracing::info!(
                %error,
                consumer_microservice = %subscription.consumer_microservice,
                consumer_tenant = %subscription.consumer_tenant,
                producer_tenant = %subscription.producer_tenant,
                stream = %subscription.stream,
                partition = %subscription.partition.as_str(),
                "event horizon subscription refused or ended"
            );
            let failure = subscription_failure(&error);
            let _ = connection
                .send(subscription_response(Some(failure), None))
                .await;
        }
    }
}

/// Whether the consent a subscription was accepted under is still the one in force. A consent
/// replaced by another id also ends the subscription: the consumer subscribes again and learns
/// the new consent.
fn check_consent(
    consents: &mut tokio::sync::watch::Receiver<Arc<crate::event_horizon::Consents>>,
    request: &ConsumerSubscription,
    consent: dolittle_types::ConsentId,
) -> Result<(), SubscriptionError> {
    let now = find_consent(&consents.borrow_and_update(), request)?;
    if now != consent {
        return Err(SubscriptionError::missing_consent(request, String::new()));
    }
    Ok(())
}

struct Subscription<'a> {
    context: &'a RuntimeContext,
    connection: &'a Arc<HeadConnection<ConsumerProtocol>>,
    subscription: &'a ConsumerSubscription,
}

impl Subscription<'_> {
    async fn run(self) -> Result<(), SubscriptionError> {
        let request = self.subscription;
        let store = self
            .context
            .tenants
            .store(request.producer_tenant)
            .map_err(|_| SubscriptionError::UnknownProducerTenant(request.producer_tenant))?
            .clone();
        let mut consents = self.context.event_horizon.consents();
        let consent = find_consent(&consents.borrow_and_update(), request)?;
        let mut public = self.is_public(&store).await?;
        self.connection
            .send(subscription_response(None, Some(consent)))
            .await
            .map_err(|_| SubscriptionError::Cancelled)?;
        tracing::info!(
            %consent,
            consumer_microservice = %request.consumer_microservice,
            consumer_tenant = %request.consumer_tenant,
            producer_tenant = %request.producer_tenant,
            stream = %request.stream,
            partition = %request.partition.as_str(),
            position = request.position,
            "event horizon subscription accepted"
        );

        let request_context = ExecutionContext {
            microservice: self.context.config.microservice,
            tenant: request.producer_tenant,
            correlation: CorrelationId::new_random(),
            ..ExecutionContext::default()
        };
        let mut length = store.watch_stream(ScopeId::DEFAULT, request.stream);
        let mut position = request.position;
        let mut in_flight = FuturesOrdered::new();
        let cancelled = self.connection.cancellation().clone();
        // The stream length of the last read that reached the end of what was there; reading
        // again is only worth it when the stream has grown since.
        let mut read_to_length = None;
        loop {
            // Checked on every turn, not only while idle, so that a long catch-up stops soon
            // after its consent is withdrawn.
            if consents.has_changed().unwrap_or(true) {
                check_consent(&mut consents, request, consent)?;
            }
            let mut read_something = false;
            // Mark the length seen before reading, so an append during the read wakes us.
            let seen_length = *length.borrow_and_update();
            // Refill the window in large reads: when at least half of it is free.
            if in_flight.len() <= EVENTS_IN_FLIGHT / 2
                && public
                && seen_length > position
                && read_to_length != Some(seen_length)
            {
                let wanted = EVENTS_IN_FLIGHT - in_flight.len();
                let events = store
                    .read_stream(
                        ScopeId::DEFAULT,
                        request.stream,
                        position,
                        Some(&request.partition),
                        wanted,
                    )
                    .await
                    .map_err(SubscriptionError::Store)?;
                if events.len() < wanted {
                    read_to_length = Some(seen_length);
                }
                for stream_event in events {
                    position = stream_event.position + 1;
                    read_something = true;
                    let mut event = stream_event.event;
                    if !event.public {
                        // Public filters only see public events; this guards the rule.
                        tracing::warn!(
                            sequence_number = event.sequence_number,
                            stream = %request.stream,
                            "a private event in a public stream is not sent"
                        );
                        continue;
                    }
                    event.execution_context.claims.clear();
                    let message = ConsumerRequest {
                        call_context: None,
                        event: Some(EventHorizonEvent {
                            stream_sequence_number: stream_event.position,
                            event: Some(event.into()),
                        }),
                    };
                    // Written here, in stream order; only the responses are awaited later.
                    let response = self
                        .connection
                        .send_request(message, &request_context)
                        .await
                        .map_err(|_| SubscriptionError::Cancelled)?;
                    in_flight.push_back(response);
                }
            }
            if read_something {
                continue;
            }
            tokio::select! {
                response = in_flight.next(), if !in_flight.is_empty() => {
                    let Some(response) = response else { continue };
                    let response = response.map_err(|_| SubscriptionError::Cancelled)?;
                    if let Some(failure) = response.failure {
                        return Err(SubscriptionError::Consumer(failure.reason));
                    }
                }
                changed = length.changed(), if in_flight.len() <= EVENTS_IN_FLIGHT / 2 => {
                    if changed.is_err() {
                        return Err(SubscriptionError::Cancelled);
                    }
                    if !public {
                        public = self.is_public(&store).await?;
                    }
                }
                changed = consents.changed() => {
                    if changed.is_err() {
                        return Err(SubscriptionError::Cancelled);
                    }
                    check_consent(&mut consents, request, consent)?;
                }
                () = cancelled.cancelled() => return Err(SubscriptionError::Cancelled),
            }
        }
    }

    /// Whether the stream is known to be public. A private stream is refused; a stream that
    /// does not exist yet is not (its public filter may be registered later).
    async fn is_public(
        &self,
        store: &dolittle_store::SharedEventStore,
    ) -> Result<bool, SubscriptionError> {
        let definition = store
            .get_stream_definition(ScopeId::DEFAULT, self.subscription.stream)
            .await
            .map_err(SubscriptionError::Store)?;
        match definition {
            Some(definition) if definition.public => Ok(true),
            Some(_) => Err(SubscriptionError::NotAPublicStream(
                self.subscription.stream,
            )),
            None => Ok(false),
        }
    }
}
