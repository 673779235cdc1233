//! Event horizon subscriptions: ask this microservice's Runtime to subscribe one of its tenants
//! to a partition of another microservice's public stream. The Runtime keeps the subscription
//! running and writes the events it receives into the scoped event log of `scope`, where event
//! handlers registered [`in_scope`](crate::EventHandlerOptions::in_scope) process them.
//!
//! Two ways to subscribe:
//!
//! * declared on the client builder with [`ClientBuilder::event_horizons`](crate::ClientBuilder::event_horizons),
//!   like the official SDKs' `withEventHorizons`: connecting the client subscribes them in the
//!   background, asks again with backoff while the Runtime refuses, and reports every outcome
//!   to the subscription's `on_success` / `on_failure` callbacks and through its
//!   [`SubscriptionHandle`] ([`Client::event_horizon_subscriptions`]);
//! * one call, [`EventHorizon::subscribe`], that returns the consent or the refusal.
//!
//! Once the Runtime has accepted a subscription it keeps it (across its own restarts too), so
//! the SDK does not ask again after a success.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use dolittle_contracts::runtime::eventhorizon::Subscription as WireSubscription;
use dolittle_contracts::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle_types::{ConsentId, MicroserviceId, PartitionId, ScopeId, StreamId, TenantId};
use futures::Stream;
use tokio::sync::watch;
use uuid::Uuid;

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

/// Called when the Runtime accepts a declared subscription: the consumer tenant, the
/// subscription and the producer's consent.
type SuccessCallback = Arc<dyn Fn(TenantId, &Subscription, ConsentId) + Send + Sync>;
/// Called every time the Runtime refuses a declared subscription (or cannot be reached).
type FailureCallback = Arc<dyn Fn(TenantId, &Subscription, &SubscriptionFailure) + Send + Sync>;

/// Why a declared subscription was not accepted this time. The SDK asks again after
/// `retry_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFailure {
    /// The Runtime's failure id: MissingConsent `be1ba4e6-…` when the producer has no consent
    /// for it, MissingMicroserviceConfiguration `9b74482a-…` when the producer is not in the
    /// consumer Runtime's `microservices.json`, CouldNotConnectToProducerRuntime `2e6b926a-…`
    /// when the producer's Runtime cannot be reached (see `dolittle_contracts::failure_ids`).
    /// `None` when the head could not reach its own Runtime; `reason` then holds the gRPC
    /// status.
    pub failure_id: Option<Uuid>,
    /// The Runtime's reason, as it gave it.
    pub reason: String,
    /// How many attempts in a row have failed, this one included.
    pub attempts: u32,
    /// When the SDK asks the Runtime again.
    pub retry_in: Duration,
}

/// Where a declared subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionState {
    /// Asked, and waiting for the Runtime's first answer.
    Subscribing,
    /// Accepted with the producer's consent. The Runtime keeps it from now on.
    Subscribed {
        /// The producer's consent.
        consent: ConsentId,
    },
    /// The last attempt was refused; the SDK asks again after `retry_in`.
    Failed(SubscriptionFailure),
    /// The client shut down before the subscription was accepted.
    Stopped,
}

/// A subscription declared on the builder, with its callbacks.
#[derive(Clone)]
pub(crate) struct DeclaredSubscription {
    tenant: TenantId,
    subscription: Subscription,
    on_success: Option<SuccessCallback>,
    on_failure: Option<FailureCallback>,
}

impl std::fmt::Debug for DeclaredSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeclaredSubscription")
            .field("tenant", &self.tenant)
            .field("subscription", &self.subscription)
            .field("on_success", &self.on_success.is_some())
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

/// The event horizon subscriptions declared on a [`ClientBuilder`](crate::ClientBuilder),
/// grouped by consumer tenant with [`EventHorizons::for_tenant`].
#[derive(Debug, Clone, Default)]
pub struct EventHorizons {
    declared: Vec<DeclaredSubscription>,
}

impl EventHorizons {
    /// Declares subscriptions of one consumer tenant: the events go into that tenant's scoped
    /// event log. Call it again for more tenants (or more subscriptions of the same tenant).
    pub fn for_tenant<Declared: Into<TenantSubscriptions>>(
        mut self,
        tenant: impl Into<TenantId>,
        declare: impl FnOnce(TenantSubscriptions) -> Declared,
    ) -> Self {
        let subscriptions = declare(TenantSubscriptions {
            tenant: tenant.into(),
            declared: Vec::new(),
        })
        .into();
        self.declared.extend(subscriptions.declared);
        self
    }

    pub(crate) fn into_declared(self) -> Vec<DeclaredSubscription> {
        self.declared
    }
}

/// The subscriptions of one consumer tenant, declared one after the other:
/// `from_producer_microservice(..)` … `to_scope(..)`, then optional callbacks, then the next
/// `from_producer_microservice(..)`.
#[derive(Debug, Clone)]
pub struct TenantSubscriptions {
    tenant: TenantId,
    declared: Vec<DeclaredSubscription>,
}

impl TenantSubscriptions {
    /// Starts a subscription to a producer microservice (it must be in the consumer Runtime's
    /// `microservices.json`).
    pub fn from_producer_microservice(
        self,
        microservice: impl Into<MicroserviceId>,
    ) -> FromProducerMicroservice {
        FromProducerMicroservice {
            subscriptions: self,
            producer_microservice: microservice.into(),
        }
    }

    /// Declares a subscription given as a whole.
    pub fn subscription(self, subscription: Subscription) -> SubscriptionDeclaration {
        let tenant = self.tenant;
        SubscriptionDeclaration {
            subscriptions: self,
            declared: DeclaredSubscription {
                tenant,
                subscription,
                on_success: None,
                on_failure: None,
            },
        }
    }
}

/// A subscription with its producer microservice; next: the producer tenant.
#[derive(Debug, Clone)]
pub struct FromProducerMicroservice {
    subscriptions: TenantSubscriptions,
    producer_microservice: MicroserviceId,
}

impl FromProducerMicroservice {
    /// The producer's tenant whose public stream is subscribed to.
    pub fn from_producer_tenant(self, tenant: impl Into<TenantId>) -> FromProducerTenant {
        FromProducerTenant {
            previous: self,
            producer_tenant: tenant.into(),
        }
    }
}

/// A subscription with its producer tenant; next: the public stream.
#[derive(Debug, Clone)]
pub struct FromProducerTenant {
    previous: FromProducerMicroservice,
    producer_tenant: TenantId,
}

impl FromProducerTenant {
    /// The producer's public stream: the id of its public filter.
    pub fn from_producer_stream(self, stream: impl Into<StreamId>) -> FromProducerStream {
        FromProducerStream {
            previous: self,
            stream: stream.into(),
        }
    }
}

/// A subscription with its public stream; next: the partition.
#[derive(Debug, Clone)]
pub struct FromProducerStream {
    previous: FromProducerTenant,
    stream: StreamId,
}

impl FromProducerStream {
    /// The partition of the public stream (the one the producer's consent names).
    pub fn from_producer_partition(
        self,
        partition: impl Into<PartitionId>,
    ) -> FromProducerPartition {
        FromProducerPartition {
            previous: self,
            partition: partition.into(),
        }
    }
}

/// A subscription with its partition; next: the consumer's scope.
#[derive(Debug, Clone)]
pub struct FromProducerPartition {
    previous: FromProducerStream,
    partition: PartitionId,
}

impl FromProducerPartition {
    /// The scope of the consumer tenant's event log that receives the events.
    pub fn to_scope(self, scope: impl Into<ScopeId>) -> SubscriptionDeclaration {
        let FromProducerPartition {
            previous:
                FromProducerStream {
                    previous:
                        FromProducerTenant {
                            previous:
                                FromProducerMicroservice {
                                    subscriptions,
                                    producer_microservice,
                                },
                            producer_tenant,
                        },
                    stream,
                },
            partition,
        } = self;
        subscriptions.subscription(Subscription {
            producer_microservice,
            producer_tenant,
            stream,
            partition,
            scope: scope.into(),
        })
    }
}

/// A complete subscription: add callbacks, or declare the next one with
/// [`SubscriptionDeclaration::from_producer_microservice`].
#[derive(Debug, Clone)]
pub struct SubscriptionDeclaration {
    subscriptions: TenantSubscriptions,
    declared: DeclaredSubscription,
}

impl SubscriptionDeclaration {
    /// Called once, when the Runtime accepts the subscription, with the consumer tenant, the
    /// subscription and the producer's consent. Runs on the SDK's task: keep it short and do
    /// not block (send to a channel or spawn for longer work). A panic is caught and logged.
    pub fn on_success(
        mut self,
        callback: impl Fn(TenantId, &Subscription, ConsentId) + Send + Sync + 'static,
    ) -> Self {
        self.declared.on_success = Some(Arc::new(callback));
        self
    }

    /// Called after every refused attempt, with the consumer tenant, the subscription and the
    /// failure (the Runtime's failure id and reason, the attempts so far and when the SDK asks
    /// again). Same rules as [`SubscriptionDeclaration::on_success`].
    pub fn on_failure(
        mut self,
        callback: impl Fn(TenantId, &Subscription, &SubscriptionFailure) + Send + Sync + 'static,
    ) -> Self {
        self.declared.on_failure = Some(Arc::new(callback));
        self
    }

    /// Declares another subscription of the same consumer tenant.
    pub fn from_producer_microservice(
        self,
        microservice: impl Into<MicroserviceId>,
    ) -> FromProducerMicroservice {
        TenantSubscriptions::from(self).from_producer_microservice(microservice)
    }
}

impl From<SubscriptionDeclaration> for TenantSubscriptions {
    fn from(declaration: SubscriptionDeclaration) -> Self {
        let mut subscriptions = declaration.subscriptions;
        subscriptions.declared.push(declaration.declared);
        subscriptions
    }
}

/// A handle on a subscription declared on the builder: what it is and where it stands.
#[derive(Debug, Clone)]
pub struct SubscriptionHandle {
    tenant: TenantId,
    subscription: Subscription,
    state: watch::Receiver<SubscriptionState>,
}

impl SubscriptionHandle {
    /// The consumer tenant.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// What is subscribed to, and the scope the events go into.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Where it stands now.
    pub fn state(&self) -> SubscriptionState {
        self.state.borrow().clone()
    }

    /// Waits until the Runtime accepts the subscription and returns the producer's consent;
    /// [`Error::ShutDown`] if the client shuts down first. Refusals are asked again for ever,
    /// so bound this with a timeout where a refusal matters (and read the refusals from
    /// [`SubscriptionHandle::state`], [`SubscriptionHandle::outcomes`] or `on_failure`).
    pub async fn subscribed(&self) -> Result<ConsentId> {
        let mut state = self.state.clone();
        let reached = state
            .wait_for(|state| {
                matches!(
                    state,
                    SubscriptionState::Subscribed { .. } | SubscriptionState::Stopped
                )
            })
            .await;
        match reached.as_deref() {
            Ok(SubscriptionState::Subscribed { consent }) => Ok(*consent),
            _ => Err(Error::ShutDown),
        }
    }

    /// The outcomes of its attempts as a stream: the present one first (unless it is still
    /// [`SubscriptionState::Subscribing`]), then each new one. It ends after
    /// [`SubscriptionState::Subscribed`] or [`SubscriptionState::Stopped`]. A reader that falls
    /// behind sees the latest outcome, not each failure in between (`on_failure` sees them
    /// all, with their attempt numbers).
    pub fn outcomes(&self) -> impl Stream<Item = SubscriptionState> + Send + 'static {
        let mut receiver = self.state.clone();
        receiver.mark_changed();
        futures::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            loop {
                receiver.changed().await.ok()?;
                let state = receiver.borrow_and_update().clone();
                match state {
                    SubscriptionState::Subscribing => continue,
                    SubscriptionState::Failed(_) => return Some((state, Some(receiver))),
                    SubscriptionState::Subscribed { .. } | SubscriptionState::Stopped => {
                        return Some((state, None));
                    }
                }
            }
        })
    }
}

/// The watch channel of a declared subscription, made before the client exists so that the
/// client can hold the handles.
pub(crate) fn prepare(
    declared: &DeclaredSubscription,
) -> (watch::Sender<SubscriptionState>, SubscriptionHandle) {
    let (sender, receiver) = watch::channel(SubscriptionState::Subscribing);
    let handle = SubscriptionHandle {
        tenant: declared.tenant,
        subscription: declared.subscription.clone(),
        state: receiver,
    };
    (sender, handle)
}

/// Asks the Runtime for a declared subscription until it accepts it or the client shuts down,
/// reporting every outcome.
pub(crate) async fn keep_subscribing(
    client: Client,
    declared: DeclaredSubscription,
    state: watch::Sender<SubscriptionState>,
) {
    let token = client.shutdown_token();
    let backoff = client.backoff();
    let horizon = client.event_horizon(declared.tenant);
    let DeclaredSubscription {
        tenant,
        subscription,
        on_success,
        on_failure,
    } = declared;
    let mut attempts = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = token.cancelled() => break,
            outcome = horizon.subscribe(subscription.clone()) => outcome,
        };
        match outcome {
            Ok(consent) => {
                tracing::info!(
                    %tenant,
                    producer_microservice = %subscription.producer_microservice,
                    producer_tenant = %subscription.producer_tenant,
                    stream = %subscription.stream,
                    partition = %subscription.partition,
                    scope = %subscription.scope,
                    %consent,
                    "event horizon subscription accepted"
                );
                state.send_replace(SubscriptionState::Subscribed { consent });
                if let Some(callback) = &on_success {
                    run_callback("on_success", || callback(tenant, &subscription, consent));
                }
                return;
            }
            Err(Error::ShutDown) => break,
            Err(error) => {
                let retry_in = backoff.delay(attempts);
                attempts = attempts.saturating_add(1);
                let failure = SubscriptionFailure {
                    failure_id: error.failure_id(),
                    reason: match error {
                        Error::Runtime { reason, .. } => reason,
                        other => other.to_string(),
                    },
                    attempts,
                    retry_in,
                };
                tracing::warn!(
                    %tenant,
                    producer_microservice = %subscription.producer_microservice,
                    producer_tenant = %subscription.producer_tenant,
                    stream = %subscription.stream,
                    partition = %subscription.partition,
                    scope = %subscription.scope,
                    failure_id = ?failure.failure_id,
                    reason = %failure.reason,
                    attempts,
                    ?retry_in,
                    "event horizon subscription refused, asking again later"
                );
                state.send_replace(SubscriptionState::Failed(failure.clone()));
                if let Some(callback) = &on_failure {
                    run_callback("on_failure", || callback(tenant, &subscription, &failure));
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(retry_in) => {}
                }
            }
        }
    }
    state.send_replace(SubscriptionState::Stopped);
}

/// Runs an application callback; a panic in it is logged and does not end the subscription's
/// task.
fn run_callback(which: &'static str, callback: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(callback)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::error!(
            callback = which,
            panic = %message,
            "an event horizon subscription callback panicked"
        );
    }
}
