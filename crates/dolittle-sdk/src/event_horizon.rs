//! Event horizon subscriptions: ask this microservice's Runtime to subscribe one of its tenants
//! to a partition of another microservice's public stream. The Runtime keeps the subscription
//! running and writes the events it receives into the scoped event log of `scope`, where event
//! handlers registered [`in_scope`](crate::EventHandlerOptions::in_scope) process them.

use dolittle_contracts::runtime::eventhorizon::Subscription as WireSubscription;
use dolittle_contracts::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle_types::{ConsentId, MicroserviceId, PartitionId, ScopeId, StreamId, TenantId};

use crate::client::Client;
use crate::error::{Error, Result, runtime_failure};

/// What to subscribe to, and where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The producer microservice (it must be in the Runtime's `microservices.json`).
    pub producer_microservice: MicroserviceId,
    /// The producer's tenant.
    pub producer_tenant: TenantId,
    /// The producer's public stream (the id of its public filter).
    pub stream: StreamId,
    /// The partition of that stream.
    pub partition: PartitionId,
    /// The scope of this tenant's event log that receives the events.
    pub scope: ScopeId,
}

/// Event horizon subscriptions of one consumer tenant.
#[derive(Debug, Clone)]
pub struct EventHorizon {
    client: Client,
    tenant: TenantId,
}

impl EventHorizon {
    pub(crate) fn new(client: Client, tenant: TenantId) -> Self {
        Self { client, tenant }
    }

    /// Subscribes and returns the producer's consent once the first connection to the producer
    /// has an outcome. A refusal (no consent, unknown producer, producer unreachable) is an
    /// [`Error::Runtime`] with the Runtime's failure id; subscribing again is safe.
    pub async fn subscribe(&self, subscription: Subscription) -> Result<ConsentId> {
        let mut client = SubscriptionsClient::new(self.client.channel()?);
        let mut call_context = self.client.call_context(self.tenant);
        call_context.head_id = Some(uuid::Uuid::new_v4().into());
        let (partition_guid, partition_text) =
            dolittle_contracts::convert::string_id_to_wire(subscription.partition.as_str());
        let response = client
            .subscribe(WireSubscription {
                call_context: Some(call_context),
                microservice_id: Some(subscription.producer_microservice.into()),
                tenant_id: Some(subscription.producer_tenant.into()),
                stream_id: Some(subscription.stream.into()),
                partition_id: Some(partition_guid),
                scope_id: Some(subscription.scope.into()),
                partition_id_string: Some(partition_text),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            return Err(runtime_failure(failure));
        }
        let consent = response.consent_id.ok_or_else(|| Error::Runtime {
            id: dolittle_contracts::failure_ids::OTHER,
            reason: "the runtime returned no consent".to_owned(),
        })?;
        Ok(dolittle_contracts::convert::required_guid(
            "consentId",
            Some(&consent),
        )?)
    }
}
