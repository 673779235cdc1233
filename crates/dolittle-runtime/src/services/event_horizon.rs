//! The event horizon's two gRPC services: `Consumer/Subscribe` (producer side, served on the
//! public endpoint only) and `Subscriptions/Subscribe` (consumer side, called by heads on the
//! private endpoint). The work is in [`crate::event_horizon`].

use dolittle_contracts::convert::{self, ConversionError};
use dolittle_contracts::runtime::eventhorizon::consumer_server::Consumer;
use dolittle_contracts::runtime::eventhorizon::subscriptions_server::Subscriptions;
use dolittle_contracts::runtime::eventhorizon::{
    EventHorizonConsumerToProducerMessage, EventHorizonProducerToConsumerMessage, Subscription,
    SubscriptionResponse,
};
use dolittle_store::SubscriptionKey;
use dolittle_types::{ExecutionContext, ScopeId};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::RuntimeContext;
use crate::event_horizon::protocol::ConsumerProtocol;
use crate::event_horizon::{SubscriptionError, consumer, producer};
use crate::failures::subscription_failure;
use crate::reverse_calls::OutgoingStream;

/// Room for pings and events waiting to be written to one consumer.
const OUTGOING_QUEUE: usize = 1024;

/// `dolittle.runtime.eventhorizon.Consumer`, on the public endpoint.
pub struct ConsumerService {
    context: RuntimeContext,
}

impl ConsumerService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl Consumer for ConsumerService {
    type SubscribeStream = OutgoingStream<ConsumerProtocol>;

    async fn subscribe(
        &self,
        request: Request<Streaming<EventHorizonConsumerToProducerMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (outgoing, receiver) =
            mpsc::channel::<Result<EventHorizonProducerToConsumerMessage, Status>>(OUTGOING_QUEUE);
        let open = self.context.metrics.reverse_call_opened();
        let context = self.context.clone();
        let incoming = request.into_inner();
        // Tracked with the processors, so that shutdown waits for it to let go of the stores.
        self.context.processors.spawn(async move {
            producer::serve(context, incoming, outgoing).await;
            drop(open);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// `dolittle.runtime.eventhorizon.Subscriptions`, on the private endpoint.
pub struct SubscriptionsService {
    context: RuntimeContext,
}

impl SubscriptionsService {
    pub fn new(context: RuntimeContext) -> Self {
        Self { context }
    }
}

/// The consumer's execution context and the subscription a head asks for.
fn subscription_from_wire(
    request: Subscription,
) -> Result<(ExecutionContext, SubscriptionKey), ConversionError> {
    let consumer = convert::execution_context_from_call_context(request.call_context)?;
    let key = SubscriptionKey {
        producer_microservice: convert::required_guid(
            "microserviceId",
            request.microservice_id.as_ref(),
        )?,
        producer_tenant: convert::required_guid("tenantId", request.tenant_id.as_ref())?,
        stream: convert::required_guid("streamId", request.stream_id.as_ref())?,
        partition: convert::partition_from_wire(
            request.partition_id_string,
            request.partition_id.as_ref(),
        )?,
        scope: convert::optional_guid("scopeId", request.scope_id.as_ref())?
            .unwrap_or(ScopeId::DEFAULT),
    };
    Ok((consumer, key))
}

#[tonic::async_trait]
impl Subscriptions for SubscriptionsService {
    async fn subscribe(
        &self,
        request: Request<Subscription>,
    ) -> Result<Response<SubscriptionResponse>, Status> {
        let result = match subscription_from_wire(request.into_inner()) {
            Ok((consumer, key)) => consumer::subscribe(&self.context, &consumer, key).await,
            Err(error) => Err(SubscriptionError::MissingArguments(error.to_string())),
        };
        Ok(Response::new(match result {
            Ok(consent) => SubscriptionResponse {
                failure: None,
                consent_id: Some(consent.into()),
            },
            Err(error) => SubscriptionResponse {
                failure: Some(subscription_failure(&error)),
                consent_id: None,
            },
        }))
    }
}
