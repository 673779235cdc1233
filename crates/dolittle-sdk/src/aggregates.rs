//! Aggregate roots: state rebuilt from the events an instance committed, and commands that
//! uphold the rules and `apply` new events.
//!
//! [`AggregateOf::perform`] fetches the instance's events, rehydrates a fresh root with
//! [`AggregateRoot::on`], runs the command, and commits what it applied with the version it
//! saw. When someone else committed in between (a concurrency conflict) the whole perform runs
//! again on fresh state, a bounded number of times; then the conflict is returned as an error.

use std::time::Duration;

use dolittle_types::{
    AggregateRootId, AggregateRootVersion, EventSourceId, UncommittedAggregateEvent,
};

use crate::client::Backoff;
use crate::error::{Error, Result};
use crate::event_store::EventStore;
use crate::event_types::Events;

/// The events a root applied during one command, waiting to be committed.
#[derive(Debug)]
pub struct Applied<E> {
    events: Vec<(E, bool)>,
}

impl<E> Default for Applied<E> {
    fn default() -> Self {
        Self { events: Vec::new() }
    }
}

impl<E> Applied<E> {
    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn take(&mut self) -> Vec<(E, bool)> {
        std::mem::take(&mut self.events)
    }
}

/// An aggregate root: a type of consistency boundary whose instances are event sources.
///
/// Keep an `Applied<Self::Events>` field (default) and return it from
/// [`AggregateRoot::applied`]; commands call [`AggregateRoot::apply`], which updates the state
/// through [`AggregateRoot::on`] at once and queues the event for the commit.
pub trait AggregateRoot: Default + Send + 'static {
    /// The aggregate root id of this type.
    const ID: AggregateRootId;

    /// The events this root applies and rebuilds from.
    type Events: Events;

    /// Changes the state for one event: while rehydrating and when a command applies it.
    fn on(&mut self, event: &Self::Events);

    /// The queue of applied events (a field of the root).
    fn applied(&mut self) -> &mut Applied<Self::Events>;

    /// Applies a new private event: the state changes now, the event is committed when the
    /// command succeeds.
    fn apply(&mut self, event: impl Into<Self::Events>)
    where
        Self: Sized,
    {
        let event = event.into();
        self.on(&event);
        self.applied().events.push((event, false));
    }

    /// Applies a new public event.
    fn apply_public(&mut self, event: impl Into<Self::Events>)
    where
        Self: Sized,
    {
        let event = event.into();
        self.on(&event);
        self.applied().events.push((event, true));
    }
}

/// A command's own rejection, or a failure to fetch or commit.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError<E> {
    /// The command refused (a rule of the aggregate): nothing was committed.
    #[error("the command was rejected: {0}")]
    Rejected(E),
    /// Fetching, rehydrating or committing failed; a concurrency conflict that outlasted every
    /// attempt is [`Error::ConcurrencyConflict`].
    #[error(transparent)]
    Sdk(#[from] Error),
}

impl<E> AggregateError<E> {
    /// Whether this is a concurrency conflict that outlasted every attempt.
    pub fn is_concurrency_conflict(&self) -> bool {
        matches!(self, Self::Sdk(error) if error.is_concurrency_conflict())
    }
}

/// One aggregate root instance of a tenant, from [`crate::Client::aggregate_of`]. Cheap to
/// clone.
pub struct AggregateOf<R> {
    event_store: EventStore,
    event_source: EventSourceId,
    max_attempts: u32,
    backoff: Backoff,
    root: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for AggregateOf<R> {
    fn clone(&self) -> Self {
        Self {
            event_store: self.event_store.clone(),
            event_source: self.event_source.clone(),
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            root: std::marker::PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for AggregateOf<R> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AggregateOf")
            .field("aggregate_root", &std::any::type_name::<R>())
            .field("event_source", &self.event_source)
            .field("tenant", &self.event_store.tenant())
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl<R: AggregateRoot> AggregateOf<R> {
    pub(crate) fn new(event_store: EventStore, event_source: EventSourceId) -> Self {
        Self {
            event_store,
            event_source,
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(200)),
            root: std::marker::PhantomData,
        }
    }

    /// How many times [`AggregateOf::perform`] runs on a concurrency conflict (5 by default).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The event source id of this instance.
    pub fn event_source(&self) -> &EventSourceId {
        &self.event_source
    }

    /// The current state and version of the instance, rebuilt from its events.
    pub async fn get(&self) -> Result<(R, AggregateRootVersion)> {
        let committed = self
            .event_store
            .fetch_for_aggregate(R::ID, self.event_source.clone())
            .await?;
        let mut root = R::default();
        for (index, event) in committed.events.iter().enumerate() {
            if let Some(metadata) = event.aggregate
                && metadata.version != index as u64
            {
                return Err(Error::AggregateVersionOutOfOrder {
                    index,
                    version: metadata.version,
                });
            }
            match R::Events::from_content(event.event_type, &event.content) {
                Some(Ok(typed)) => root.on(&typed),
                Some(Err(source)) => {
                    return Err(Error::Deserialize {
                        what: format!("an event of type {}", event.event_type.id),
                        source,
                    });
                }
                None => tracing::debug!(
                    event_type = %event.event_type.id,
                    aggregate_root = %R::ID,
                    "skipping an event type the aggregate root does not know"
                ),
            }
        }
        Ok((root, committed.events.len() as u64))
    }

    /// Runs a command on fresh state and commits the events it applied with the version it saw.
    /// On a concurrency conflict the whole perform runs again (up to the attempts set with
    /// [`AggregateOf::max_attempts`]); the command must therefore not have side effects beyond
    /// the root. Returns what the command returned.
    pub async fn perform<T, E, F>(&self, mut command: F) -> Result<T, AggregateError<E>>
    where
        F: FnMut(&mut R) -> Result<T, E>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut root, version) = self.get().await?;
            let output = command(&mut root).map_err(AggregateError::Rejected)?;
            let applied = root.applied().take();
            if applied.is_empty() {
                return Ok(output);
            }
            let events = applied
                .into_iter()
                .map(|(event, public)| {
                    Ok(UncommittedAggregateEvent {
                        event_type: event.event_type(),
                        public,
                        content: event.to_content().map_err(Error::Serialize)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            match self
                .event_store
                .commit_for_aggregate(R::ID, self.event_source.clone(), version, events)
                .await
            {
                Ok(_) => return Ok(output),
                Err(error) if error.is_concurrency_conflict() && attempt < self.max_attempts => {
                    tracing::debug!(
                        aggregate_root = %R::ID,
                        event_source = %self.event_source,
                        attempt,
                        "concurrency conflict, performing again"
                    );
                    tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
