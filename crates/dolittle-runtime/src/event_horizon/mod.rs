//! The event horizon (concepts §7, protocol.md §2.8 and §3.6): how a microservice's public
//! streams reach other microservices.
//!
//! - [`producer`] serves `Consumer/Subscribe` on the public endpoint: it checks a consumer's
//!   request against the consents of `event-horizon-consents.json`, then streams one partition
//!   of a public stream to it, from the position asked for and then live.
//! - [`consumer`] runs this Runtime's subscriptions to producers (started by
//!   `Subscriptions/Subscribe` on the private endpoint, or resumed from the store at start-up):
//!   received events go into the consumer tenant's scoped event log together with the
//!   subscription's position, in one atomic store operation.
//!
//! The consents are held in a watch channel so that a change of the file (noticed by
//! [`watch_consents_file`], or forced with SIGHUP through [`EventHorizon::reload_consents`])
//! reaches every running producer-side subscription, which ends itself when its consent is gone.

pub mod consumer;
pub mod producer;
pub mod protocol;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dolittle_store::StoreError;
use dolittle_types::{
    ConsentId, MicroserviceId, PartitionId, StreamId, StreamPosition, TenantId, Uuid,
};
use tokio::sync::watch;

use crate::RuntimeContext;
use crate::config::{ConfigError, ConfigLocation, Consent};

/// The consents of every producer tenant, as read from `event-horizon-consents.json`.
pub type Consents = BTreeMap<TenantId, Vec<Consent>>;

/// How often the consents file is looked at for a change (one `stat`).
const CONSENTS_FILE_CHECK: Duration = Duration::from_secs(1);

/// Why a subscription was refused or stopped, on either side of the horizon. The wire failure
/// each becomes is decided in [`crate::failures::subscription_failure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("Subscription arguments were not received: {0}")]
    MissingArguments(String),
    #[error("There are no consents configured for Producer Tenant {0}")]
    UnknownProducerTenant(TenantId),
    #[error(
        "There are no consent configured for Partition {partition} in Public Stream {stream} in \
         Tenant {producer_tenant} to Consumer Tenant {consumer_tenant} in Microservice \
         {consumer_microservice}{ambiguity}"
    )]
    MissingConsent {
        partition: PartitionId,
        stream: StreamId,
        producer_tenant: TenantId,
        consumer_tenant: TenantId,
        consumer_microservice: MicroserviceId,
        /// Says when several consents matched (which counts as none).
        ambiguity: String,
    },
    #[error(
        "Stream {0} is not a public stream: only public streams (written by public filters) can \
         be subscribed to"
    )]
    NotAPublicStream(StreamId),
    #[error("No microservice configuration for producer microservice {0}")]
    MissingMicroserviceConfiguration(MicroserviceId),
    #[error("{0}")]
    CouldNotConnect(String),
    /// The producer refused or ended the subscription with this failure.
    #[error("{reason}")]
    Producer { id: Uuid, reason: String },
    /// The consumer answered an event with a failure.
    #[error("the consumer failed to handle an event: {0}")]
    Consumer(String),
    #[error("Event Horizon subscription was cancelled")]
    Cancelled,
    #[error("consumer tenant {0} is not configured in this Runtime (see tenants.json)")]
    UnknownConsumerTenant(TenantId),
    #[error("{0}")]
    Store(StoreError),
}

impl SubscriptionError {
    /// MissingConsent for what a consumer asked for.
    pub fn missing_consent(request: &ConsumerSubscription, ambiguity: String) -> Self {
        Self::MissingConsent {
            partition: request.partition.clone(),
            stream: request.stream,
            producer_tenant: request.producer_tenant,
            consumer_tenant: request.consumer_tenant,
            consumer_microservice: request.consumer_microservice,
            ambiguity,
        }
    }
}

/// What a consumer Runtime asks a producer for, from the first message of `Consumer/Subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSubscription {
    pub consumer_microservice: MicroserviceId,
    pub consumer_tenant: TenantId,
    pub producer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: PartitionId,
    /// The next position wanted in the public stream.
    pub position: StreamPosition,
}

/// The event horizon's shared state: the consents in force and the running subscriptions.
pub struct EventHorizon {
    consents: watch::Sender<Arc<Consents>>,
    pub subscriptions: consumer::Subscriptions,
}

impl EventHorizon {
    pub fn new(consents: Consents) -> Self {
        let (sender, _) = watch::channel(Arc::new(consents));
        Self {
            consents: sender,
            subscriptions: consumer::Subscriptions::default(),
        }
    }

    /// The consents in force, to be watched for changes.
    pub fn consents(&self) -> watch::Receiver<Arc<Consents>> {
        self.consents.subscribe()
    }

    /// Puts new consents in force; returns whether they differ from the old ones. Subscriptions
    /// whose consent is gone end with MissingConsent; added consents apply to the next request.
    pub fn replace_consents(&self, consents: Consents) -> bool {
        self.consents.send_if_modified(|current| {
            if **current == consents {
                return false;
            }
            *current = Arc::new(consents);
            true
        })
    }

    /// Reads `event-horizon-consents.json` again and puts it in force. On an error the old
    /// consents stay.
    pub fn reload_consents(&self, location: &ConfigLocation) -> Result<bool, ConfigError> {
        let consents = location.read_consents()?;
        let changed = self.replace_consents(consents);
        if changed {
            tracing::info!("event horizon consents changed");
        }
        Ok(changed)
    }
}

/// The one consent that allows a subscription, or why there is none. Several matching consents
/// count as none (Dolittle v6.1 does the same), and the reason says so.
pub fn find_consent(
    consents: &Consents,
    request: &ConsumerSubscription,
) -> Result<ConsentId, SubscriptionError> {
    let matching: Vec<&Consent> = consents
        .get(&request.producer_tenant)
        .map(|list| {
            list.iter()
                .filter(|consent| {
                    consent.consumer_microservice == request.consumer_microservice
                        && consent.consumer_tenant == request.consumer_tenant
                        && consent.stream == request.stream
                        && consent.partition == request.partition
                })
                .collect()
        })
        .unwrap_or_default();
    match matching.as_slice() {
        [consent] => Ok(consent.consent),
        others => {
            if others.len() > 1 {
                tracing::warn!(
                    count = others.len(),
                    producer_tenant = %request.producer_tenant,
                    stream = %request.stream,
                    "several consents match one subscription; it is refused"
                );
            }
            let ambiguity = match others.len() {
                0 => String::new(),
                count => format!(" ({count} consents match, which is ambiguous)"),
            };
            Err(SubscriptionError::missing_consent(request, ambiguity))
        }
    }
}

/// Starts what the event horizon runs by itself: the subscriptions stored by earlier runs, and
/// the watch on the consents file.
pub fn start(context: &RuntimeContext) {
    consumer::resume_stored_subscriptions(context);
    let context = context.clone();
    context
        .processors
        .clone()
        .spawn(watch_consents_file(context));
}

/// Re-reads the consents file whenever its modification time or length changes.
pub async fn watch_consents_file(context: RuntimeContext) {
    let location = context.config.location.clone();
    let mut last = location.consents_stamp();
    let mut ticks = tokio::time::interval(CONSENTS_FILE_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = context.shutdown.cancelled() => return,
        }
        let stamp = location.consents_stamp();
        if stamp == last {
            continue;
        }
        last = stamp;
        if let Err(error) = context.event_horizon.reload_consents(&location) {
            tracing::warn!(%error, "the changed consents file is not valid; the old consents stay");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ConsumerSubscription {
        ConsumerSubscription {
            consumer_microservice: MicroserviceId(Uuid::from_u128(1)),
            consumer_tenant: TenantId(Uuid::from_u128(2)),
            producer_tenant: TenantId(Uuid::from_u128(3)),
            stream: StreamId(Uuid::from_u128(4)),
            partition: PartitionId::unpartitioned(),
            position: 0,
        }
    }

    fn consent_for(request: &ConsumerSubscription, id: u128) -> Consent {
        Consent {
            consumer_microservice: request.consumer_microservice,
            consumer_tenant: request.consumer_tenant,
            stream: request.stream,
            partition: request.partition.clone(),
            consent: ConsentId(Uuid::from_u128(id)),
        }
    }

    #[test]
    fn exactly_one_matching_consent_allows_a_subscription() {
        let request = request();
        let mut other_partition = consent_for(&request, 8);
        other_partition.partition = PartitionId::from("other");
        let consents = Consents::from([(
            request.producer_tenant,
            vec![other_partition, consent_for(&request, 9)],
        )]);
        assert_eq!(
            find_consent(&consents, &request),
            Ok(ConsentId(Uuid::from_u128(9)))
        );
    }

    #[test]
    fn no_or_several_matching_consents_name_what_was_asked_for() {
        let request = request();
        let error = find_consent(&Consents::new(), &request).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "There are no consent configured for Partition 00000000-0000-0000-0000-000000000000 \
             in Public Stream 00000000-0000-0000-0000-000000000004 in Tenant \
             00000000-0000-0000-0000-000000000003 to Consumer Tenant \
             00000000-0000-0000-0000-000000000002 in Microservice \
             00000000-0000-0000-0000-000000000001"
        );
        let twice = Consents::from([(
            request.producer_tenant,
            vec![consent_for(&request, 8), consent_for(&request, 9)],
        )]);
        let error = find_consent(&twice, &request).expect_err("ambiguous");
        assert!(matches!(error, SubscriptionError::MissingConsent { .. }));
        assert!(error.to_string().contains("ambiguous"), "{error}");
    }

    #[test]
    fn replacing_consents_reports_whether_they_changed() {
        let request = request();
        let horizon = EventHorizon::new(Consents::new());
        let mut watcher = horizon.consents();
        let consents = Consents::from([(request.producer_tenant, vec![consent_for(&request, 9)])]);
        assert!(horizon.replace_consents(consents.clone()));
        assert!(watcher.has_changed().expect("open"));
        watcher.mark_unchanged();
        assert!(!horizon.replace_consents(consents));
        assert!(!watcher.has_changed().expect("open"));
    }
}
