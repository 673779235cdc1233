//! The errors of the SDK, as values: every failure the Runtime reports keeps its failure id and
//! reason, and a concurrency conflict on an aggregate is a variant of its own so that callers
//! can match on it.

use dolittle_types::{AggregateRootId, AggregateRootVersion, EventSourceId};
use uuid::Uuid;

/// What can go wrong when a head talks to the Runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Runtime address is not a valid URI.
    #[error("invalid runtime address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No connection to the Runtime could be made within the configured attempts.
    #[error("could not connect to the runtime at {address} after {attempts} attempts: {source}")]
    Connect {
        /// The Runtime's address.
        address: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A gRPC call failed with a status (the Runtime is unreachable, or refused the call).
    #[error("the call to the runtime failed: {0}")]
    Rpc(#[from] Box<tonic::Status>),
    /// The Runtime answered with a failure.
    #[error("the runtime reported failure {id}: {reason}")]
    Runtime {
        /// The well-known failure id (see `dolittle_contracts::failure_ids`).
        id: Uuid,
        /// The Runtime's explanation.
        reason: String,
    },
    /// Events were committed for an aggregate root at a version that is no longer the current
    /// one: someone else committed in between.
    #[error(
        "concurrency conflict on aggregate root {aggregate_root} event source {event_source}: expected version {expected_version}: {reason}"
    )]
    ConcurrencyConflict {
        /// The aggregate root type.
        aggregate_root: AggregateRootId,
        /// The aggregate root instance.
        event_source: EventSourceId,
        /// The version the commit expected.
        expected_version: AggregateRootVersion,
        /// The Runtime's explanation, with the current version.
        reason: String,
    },
    /// An event could not be turned into JSON.
    #[error("could not serialize an event: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The JSON content of an event or a read model does not fit its Rust type.
    #[error("could not deserialize {what}: {source}")]
    Deserialize {
        /// What was being read (an event type, a projection).
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The Runtime sent a message that could not be read.
    #[error("the runtime sent an unreadable message: {0}")]
    Conversion(#[from] dolittle_contracts::ConversionError),
    /// The aggregate's events came back out of order from the Runtime.
    #[error("aggregate root event {index} has version {version}")]
    AggregateVersionOutOfOrder {
        /// The position of the event in the fetched list.
        index: usize,
        /// The version it carried.
        version: AggregateRootVersion,
    },
    /// The client was shut down.
    #[error("the client is shut down")]
    ShutDown,
    /// The in-process Runtime could not start.
    #[error("the in-process runtime could not start: {0}")]
    InProcess(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}

impl Error {
    /// Whether this is an aggregate root concurrency conflict.
    pub fn is_concurrency_conflict(&self) -> bool {
        matches!(self, Self::ConcurrencyConflict { .. })
    }

    /// The Runtime's failure id, for failures the Runtime reported.
    pub fn failure_id(&self) -> Option<Uuid> {
        match self {
            Self::Runtime { id, .. } => Some(*id),
            Self::ConcurrencyConflict { .. } => {
                Some(dolittle_contracts::failure_ids::AGGREGATE_ROOT_CONCURRENCY_CONFLICT)
            }
            _ => None,
        }
    }
}

/// A `Failure` from a response, as an [`Error::Runtime`].
pub(crate) fn runtime_failure(failure: dolittle_contracts::protobuf::Failure) -> Error {
    let id = failure
        .id
        .as_ref()
        .and_then(|id| Uuid::try_from(id).ok())
        .unwrap_or_else(Uuid::nil);
    Error::Runtime {
        id,
        reason: failure.reason,
    }
}

/// The result of SDK operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
