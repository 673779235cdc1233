//! The wire of `Consumer/Subscribe` (protocol.md §2.8): a reverse call in which the consumer
//! Runtime is the client. Its first message is a `subscriptionRequest`, the producer accepts
//! with `subscriptionResponse{consentId}` and then sends events as requests correlated by call
//! id. This module takes those messages apart and builds them; nothing else here.

use std::time::Duration;

use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::failure_ids;
use dolittle_contracts::protobuf::Failure;
use dolittle_contracts::runtime::eventhorizon::event_horizon_consumer_to_producer_message::Message as FromConsumer;
use dolittle_contracts::runtime::eventhorizon::event_horizon_producer_to_consumer_message::Message as ToConsumer;
use dolittle_contracts::runtime::eventhorizon::{
    ConsumerRequest, ConsumerResponse, ConsumerSubscriptionRequest,
    EventHorizonConsumerToProducerMessage, EventHorizonProducerToConsumerMessage,
    SubscriptionResponse,
};
use dolittle_contracts::services::{
    Ping, ReverseCallArgumentsContext, ReverseCallRequestContext, ReverseCallResponseContext,
};
use dolittle_types::{ConsentId, ExecutionContext, Uuid};

use crate::event_horizon::ConsumerSubscription;
use crate::reverse_calls::{FromHead, ReverseCallProtocol};

/// The ping interval a consumer asks for when it does not say (Dolittle v6.1 uses 10 s).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// `dolittle.runtime.eventhorizon.Consumer/Subscribe`, seen from the producer.
pub struct ConsumerProtocol;

impl ReverseCallProtocol for ConsumerProtocol {
    type ClientMessage = EventHorizonConsumerToProducerMessage;
    type ServerMessage = EventHorizonProducerToConsumerMessage;
    type Registration = ConsumerSubscriptionRequest;
    type RegistrationResponse = SubscriptionResponse;
    type Request = ConsumerRequest;
    type Response = ConsumerResponse;

    const FAILED_TO_REGISTER: Uuid = failure_ids::MISSING_SUBSCRIPTION_ARGUMENTS;

    fn classify(message: Self::ClientMessage) -> FromHead<Self::Registration, Self::Response> {
        match message.message {
            Some(FromConsumer::SubscriptionRequest(request)) => FromHead::Registration(request),
            Some(FromConsumer::Response(response)) => FromHead::Response(response),
            Some(FromConsumer::Pong(_)) => FromHead::Pong,
            None => FromHead::Empty,
        }
    }

    fn arguments(registration: &Self::Registration) -> Option<&ReverseCallArgumentsContext> {
        registration.call_context.as_ref()
    }

    fn response_context(response: &Self::Response) -> Option<&ReverseCallResponseContext> {
        response.call_context.as_ref()
    }

    fn registration_response(failure: Option<Failure>) -> Self::ServerMessage {
        subscription_response(failure, None)
    }

    fn request(request: Self::Request) -> Self::ServerMessage {
        EventHorizonProducerToConsumerMessage {
            message: Some(ToConsumer::Request(request)),
        }
    }

    fn ping() -> Self::ServerMessage {
        EventHorizonProducerToConsumerMessage {
            message: Some(ToConsumer::Ping(Ping {})),
        }
    }

    fn set_request_context(request: &mut Self::Request, context: ReverseCallRequestContext) {
        request.call_context = Some(context);
    }
}

/// The producer's answer to a subscription request: a consent or a failure.
pub fn subscription_response(
    failure: Option<Failure>,
    consent: Option<ConsentId>,
) -> EventHorizonProducerToConsumerMessage {
    EventHorizonProducerToConsumerMessage {
        message: Some(ToConsumer::SubscriptionResponse(SubscriptionResponse {
            failure,
            consent_id: consent.map(Into::into),
        })),
    }
}

/// The subscription a consumer asks for, the ping interval it wants and its execution context.
pub fn subscription_from_wire(
    request: ConsumerSubscriptionRequest,
) -> Result<(ConsumerSubscription, Duration, ExecutionContext), ConversionError> {
    let call_context = request
        .call_context
        .ok_or_else(|| ConversionError::Missing {
            field: "callContext".to_owned(),
        })?;
    let execution_context = convert::execution_context_from_wire(
        "callContext.executionContext",
        call_context.execution_context,
    )?;
    let ping_interval = call_context
        .ping_interval
        .and_then(|interval| Duration::try_from(interval).ok())
        .unwrap_or(DEFAULT_PING_INTERVAL);
    let subscription = ConsumerSubscription {
        consumer_microservice: execution_context.microservice,
        consumer_tenant: execution_context.tenant,
        producer_tenant: convert::required_guid("tenantId", request.tenant_id.as_ref())?,
        stream: convert::required_guid("streamId", request.stream_id.as_ref())?,
        partition: convert::partition_from_wire(
            request.partition_id_string,
            request.partition_id.as_ref(),
        )?,
        position: request.stream_position,
    };
    Ok((subscription, ping_interval, execution_context))
}

/// The first message a consumer Runtime sends.
pub fn subscription_to_wire(
    subscription: &ConsumerSubscription,
    execution_context: &ExecutionContext,
    ping_interval: Duration,
) -> EventHorizonConsumerToProducerMessage {
    let (partition_guid, partition_text) =
        convert::string_id_to_wire(subscription.partition.as_str());
    EventHorizonConsumerToProducerMessage {
        message: Some(FromConsumer::SubscriptionRequest(
            ConsumerSubscriptionRequest {
                call_context: Some(ReverseCallArgumentsContext {
                    execution_context: Some(execution_context.into()),
                    head_id: None,
                    ping_interval: ping_interval.try_into().ok(),
                }),
                tenant_id: Some(subscription.producer_tenant.into()),
                stream_id: Some(subscription.stream.into()),
                partition_id: Some(partition_guid),
                stream_position: subscription.position,
                partition_id_string: Some(partition_text),
            },
        )),
    }
}

/// A consumer's answer to one event: success, or a failure that ends the subscription.
pub fn consumer_response(
    call_id: Option<dolittle_contracts::protobuf::Uuid>,
    failure: Option<Failure>,
) -> EventHorizonConsumerToProducerMessage {
    EventHorizonConsumerToProducerMessage {
        message: Some(FromConsumer::Response(ConsumerResponse {
            call_context: Some(ReverseCallResponseContext { call_id }),
            failure,
        })),
    }
}

/// A consumer's answer to a ping.
pub fn pong() -> EventHorizonConsumerToProducerMessage {
    EventHorizonConsumerToProducerMessage {
        message: Some(FromConsumer::Pong(dolittle_contracts::services::Pong {})),
    }
}

#[cfg(test)]
mod tests {
    use dolittle_types::{MicroserviceId, PartitionId, StreamId, TenantId};

    use super::*;

    #[test]
    fn a_subscription_request_survives_the_wire() {
        let subscription = ConsumerSubscription {
            consumer_microservice: MicroserviceId(Uuid::from_u128(1)),
            consumer_tenant: TenantId(Uuid::from_u128(2)),
            producer_tenant: TenantId(Uuid::from_u128(3)),
            stream: StreamId(Uuid::from_u128(4)),
            partition: PartitionId::from("not a guid"),
            position: 42,
        };
        let context = ExecutionContext {
            microservice: subscription.consumer_microservice,
            tenant: subscription.consumer_tenant,
            ..ExecutionContext::default()
        };
        let message = subscription_to_wire(&subscription, &context, Duration::from_secs(10));
        let Some(FromConsumer::SubscriptionRequest(request)) = message.message else {
            panic!("a subscription request");
        };
        let (back, interval, _) = subscription_from_wire(request).expect("converts");
        assert_eq!(back, subscription);
        assert_eq!(interval, Duration::from_secs(10));
    }

    #[test]
    fn a_request_without_call_context_is_refused_naming_the_field() {
        let error =
            subscription_from_wire(ConsumerSubscriptionRequest::default()).expect_err("refused");
        assert_eq!(error.field(), "callContext");
    }
}
