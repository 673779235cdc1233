//! The event store of one tenant: commit events (one, a batch, public ones), commit events for
//! an aggregate root at an expected version, and fetch an aggregate root's events.
//!
//! Event source ids are any string: each is sent as the string extension field and as the GUID
//! derived from it, so heads on the official SDKs see a stable GUID for it.

use dolittle_contracts::failure_ids;
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_contracts::runtime::events::{
    CommitAggregateEventsRequest, CommitEventsRequest, FetchForAggregateRequest,
};
use dolittle_types::{
    AggregateRootId, AggregateRootVersion, CommittedAggregateEvents, CommittedEvent, EventSourceId,
    TenantId, UncommittedAggregateEvent, UncommittedAggregateEvents, UncommittedEvent,
};

use crate::client::Client;
use crate::error::{Error, Result, runtime_failure};
use crate::event_types::Events;

/// An event ready to commit: typed content turned into JSON, its event source, and whether it
/// is public.
pub fn uncommitted<E: Events>(
    event: &E,
    event_source: impl Into<EventSourceId>,
    public: bool,
) -> Result<UncommittedEvent> {
    Ok(UncommittedEvent {
        event_source: event_source.into(),
        event_type: event.event_type(),
        public,
        content: event.to_content().map_err(Error::Serialize)?,
    })
}

/// The event store of one tenant.
#[derive(Debug, Clone)]
pub struct EventStore {
    client: Client,
    tenant: TenantId,
}

impl EventStore {
    pub(crate) fn new(client: Client, tenant: TenantId) -> Self {
        Self { client, tenant }
    }

    /// The tenant whose event store this is.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Commits one private event.
    pub async fn commit<E: Events>(
        &self,
        event: &E,
        event_source: impl Into<EventSourceId>,
    ) -> Result<CommittedEvent> {
        let mut committed = self
            .commit_events(vec![uncommitted(event, event_source, false)?])
            .await?;
        committed.pop().ok_or_else(|| Error::Runtime {
            id: failure_ids::OTHER,
            reason: "the runtime returned no committed event".to_owned(),
        })
    }

    /// Commits one public event: public filters can put it in public streams for the event
    /// horizon.
    pub async fn commit_public<E: Events>(
        &self,
        event: &E,
        event_source: impl Into<EventSourceId>,
    ) -> Result<CommittedEvent> {
        let mut committed = self
            .commit_events(vec![uncommitted(event, event_source, true)?])
            .await?;
        committed.pop().ok_or_else(|| Error::Runtime {
            id: failure_ids::OTHER,
            reason: "the runtime returned no committed event".to_owned(),
        })
    }

    /// Commits private events of one set of event types, atomically and in order.
    pub async fn commit_batch<E: Events>(
        &self,
        events: impl IntoIterator<Item = (EventSourceId, E)>,
    ) -> Result<Vec<CommittedEvent>> {
        let events = events
            .into_iter()
            .map(|(event_source, event)| uncommitted(&event, event_source, false))
            .collect::<Result<Vec<_>>>()?;
        self.commit_events(events).await
    }

    /// Commits events atomically and in order (build them with [`uncommitted`]).
    pub async fn commit_events(
        &self,
        events: Vec<UncommittedEvent>,
    ) -> Result<Vec<CommittedEvent>> {
        let mut client = EventStoreClient::new(self.client.channel()?);
        let response = client
            .commit(CommitEventsRequest {
                call_context: Some(self.client.call_context(self.tenant)),
                events: events.into_iter().map(Into::into).collect(),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            return Err(runtime_failure(failure));
        }
        response
            .events
            .into_iter()
            .map(|event| CommittedEvent::try_from(event).map_err(Error::from))
            .collect()
    }

    /// Commits events for an aggregate root instance, which must be at `expected_version`;
    /// otherwise nothing is committed and the result is [`Error::ConcurrencyConflict`].
    pub async fn commit_for_aggregate(
        &self,
        aggregate_root: AggregateRootId,
        event_source: impl Into<EventSourceId>,
        expected_version: AggregateRootVersion,
        events: Vec<UncommittedAggregateEvent>,
    ) -> Result<CommittedAggregateEvents> {
        let event_source = event_source.into();
        let mut client = EventStoreClient::new(self.client.channel()?);
        let response = client
            .commit_for_aggregate(CommitAggregateEventsRequest {
                call_context: Some(self.client.call_context(self.tenant)),
                events: Some(
                    UncommittedAggregateEvents {
                        aggregate_root,
                        event_source: event_source.clone(),
                        expected_version,
                        events,
                    }
                    .into(),
                ),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            let error = runtime_failure(failure);
            return Err(match error {
                Error::Runtime { id, reason }
                    if id == failure_ids::AGGREGATE_ROOT_CONCURRENCY_CONFLICT =>
                {
                    Error::ConcurrencyConflict {
                        aggregate_root,
                        event_source,
                        expected_version,
                        reason,
                    }
                }
                other => other,
            });
        }
        let events = response.events.ok_or_else(|| Error::Runtime {
            id: failure_ids::OTHER,
            reason: "the runtime returned no committed events".to_owned(),
        })?;
        Ok(CommittedAggregateEvents::try_from(events)?)
    }

    /// Every event of an aggregate root instance, in version order.
    pub async fn fetch_for_aggregate(
        &self,
        aggregate_root: AggregateRootId,
        event_source: impl Into<EventSourceId>,
    ) -> Result<CommittedAggregateEvents> {
        let event_source = event_source.into();
        let mut client = EventStoreClient::new(self.client.channel()?);
        let response = client
            .fetch_for_aggregate(FetchForAggregateRequest {
                call_context: Some(self.client.call_context(self.tenant)),
                aggregate: Some(dolittle_contracts::convert::aggregate_to_wire(
                    aggregate_root,
                    &event_source,
                )),
            })
            .await?
            .into_inner();
        if let Some(failure) = response.failure {
            return Err(runtime_failure(failure));
        }
        match response.events {
            Some(events) => Ok(CommittedAggregateEvents::try_from(events)?),
            None => Ok(CommittedAggregateEvents {
                aggregate_root,
                event_source,
                version: 0,
                events: Vec::new(),
            }),
        }
    }
}
