//! The domain vocabulary of the Dolittle concepts documents: tenants, microservices, scopes,
//! streams, partitions, event sources, event types, sequence numbers, execution contexts and
//! events, uncommitted and committed.
//!
//! This crate does no I/O and knows nothing of the wire or of storage: every other crate speaks
//! in these types. Identifiers that the concepts define as GUIDs are newtypes over [`Uuid`];
//! event source ids and partition ids are strings, because the concepts put no rules on them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
pub use uuid::Uuid;

/// Declares a newtype over [`Uuid`] with the conversions every GUID identifier needs.
macro_rules! guid_identifier {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The empty GUID `00000000-0000-0000-0000-000000000000`.
            pub const NIL: Self = Self(Uuid::nil());

            /// A fresh random identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Whether this is the empty GUID.
            pub fn is_nil(&self) -> bool {
                self.0.is_nil()
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), formatter)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

guid_identifier!(
    /// A tenant: one customer of a microservice, with an event store of its own.
    TenantId
);
guid_identifier!(
    /// A microservice: one or more heads talking to one Runtime.
    MicroserviceId
);
guid_identifier!(
    /// A scope: events from the event horizon live in a scoped event log; the default scope is
    /// the empty GUID.
    ScopeId
);
guid_identifier!(
    /// A stream. The event log is the stream with the empty GUID.
    StreamId
);
guid_identifier!(
    /// An event type's identity, independent of its generation.
    EventTypeId
);
guid_identifier!(
    /// The type of an aggregate root (the Kitchen class, not one kitchen).
    AggregateRootId
);
guid_identifier!(
    /// Correlates the work caused by one request.
    CorrelationId
);
guid_identifier!(
    /// A consent given by a producer for an event-horizon subscription.
    ConsentId
);
guid_identifier!(
    /// An event processor: an event handler, a filter or a projection.
    EventProcessorId
);

impl TenantId {
    /// The development tenant that Dolittle uses when nothing is configured.
    pub const DEVELOPMENT: Self = Self(Uuid::from_u128(0x445f8ea8_1a6f_40d7_b2fc_796dba92dc44));
    /// The System tenant the SDKs put in the context of registrations.
    pub const SYSTEM: Self = Self(Uuid::from_u128(0x08831584_e016_42f6_bc5e_c4f098fed42b));
}

impl ScopeId {
    /// The default scope: the microservice's own events.
    pub const DEFAULT: Self = Self::NIL;
}

impl StreamId {
    /// The event log of a scope.
    pub const EVENT_LOG: Self = Self::NIL;
}

/// A partition of a stream. Any string; the unpartitioned partition is the empty GUID text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub String);

impl PartitionId {
    /// The text of the only partition of an unpartitioned stream.
    pub const UNPARTITIONED_TEXT: &'static str = "00000000-0000-0000-0000-000000000000";

    /// The only partition of an unpartitioned stream.
    pub fn unpartitioned() -> Self {
        Self(Self::UNPARTITIONED_TEXT.to_owned())
    }

    /// The partition as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PartitionId {
    fn default() -> Self {
        Self::unpartitioned()
    }
}

/// The source of an event, like a primary key: any string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EventSourceId(pub String);

impl EventSourceId {
    /// The event source as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_identifier_conversions {
    ($name:ident) => {
        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

string_identifier_conversions!(PartitionId);
string_identifier_conversions!(EventSourceId);

/// An event type: its identity and its generation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct EventType {
    pub id: EventTypeId,
    pub generation: u32,
}

impl EventType {
    pub fn new(id: EventTypeId, generation: u32) -> Self {
        Self { id, generation }
    }
}

/// The 0-based position of an event in a (scoped) event log.
pub type EventLogSequenceNumber = u64;
/// The 0-based position of an entry in a stream.
pub type StreamPosition = u64;
/// The version of an aggregate root instance: the number of events committed for it.
pub type AggregateRootVersion = u64;

/// A point in time with microsecond precision, as microseconds since the Unix epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time of the system clock.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    pub fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn unix_micros(self) -> i64 {
        self.0
    }

    /// Seconds and nanoseconds since the epoch, as protobuf's Timestamp carries them.
    pub fn seconds_and_nanos(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(1_000_000);
        let nanos = (self.0.rem_euclid(1_000_000) * 1000) as i32;
        (seconds, nanos)
    }

    pub fn from_seconds_and_nanos(seconds: i64, nanos: i32) -> Self {
        Self(
            seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(nanos) / 1000),
        )
    }

    /// This time moved forward by a duration.
    pub fn after(self, duration: Duration) -> Self {
        Self(
            self.0
                .saturating_add(duration.as_micros().min(i64::MAX as u128) as i64),
        )
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Self(since.as_micros().min(i64::MAX as u128) as i64),
            Err(before) => Self(-(before.duration().as_micros().min(i64::MAX as u128) as i64)),
        }
    }
}

/// The version of a microservice.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Version {
    pub major: i32,
    pub minor: i32,
    pub patch: i32,
    pub build: i32,
    pub pre_release: String,
}

/// A claim about the user on whose behalf something was done.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Claim {
    pub key: String,
    pub value: String,
    pub value_type: String,
}

/// Who did something, for which tenant, and in which correlation.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ExecutionContext {
    pub microservice: MicroserviceId,
    pub tenant: TenantId,
    pub version: Version,
    pub correlation: CorrelationId,
    pub claims: Vec<Claim>,
    pub environment: String,
}

/// An event that a head asks to commit.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UncommittedEvent {
    pub event_source: EventSourceId,
    pub event_type: EventType,
    pub public: bool,
    /// The event as JSON text; stored and returned byte for byte.
    pub content: String,
}

/// Events that an aggregate root instance asks to commit, with the version it expects.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UncommittedAggregateEvents {
    pub aggregate_root: AggregateRootId,
    pub event_source: EventSourceId,
    /// The number of events the head believes were already committed for this instance.
    pub expected_version: AggregateRootVersion,
    pub events: Vec<UncommittedAggregateEvent>,
}

/// One event of an aggregate commit: the event source is the aggregate's.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UncommittedAggregateEvent {
    pub event_type: EventType,
    pub public: bool,
    pub content: String,
}

/// Marks an event that an aggregate root applied.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AggregateMetadata {
    pub aggregate_root: AggregateRootId,
    /// The 0-based version of this event within its aggregate root instance.
    pub version: AggregateRootVersion,
}

/// Marks an event that came over the event horizon from a producer microservice.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EventHorizonMetadata {
    /// The event's sequence number in the producer's event log.
    pub external_sequence_number: EventLogSequenceNumber,
    /// When this Runtime received it.
    pub received: Timestamp,
    /// The consent under which it crossed.
    pub consent: ConsentId,
}

/// An event as it stands in an event log.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CommittedEvent {
    pub sequence_number: EventLogSequenceNumber,
    pub occurred: Timestamp,
    pub event_source: EventSourceId,
    pub execution_context: ExecutionContext,
    pub event_type: EventType,
    pub public: bool,
    pub content: String,
    pub aggregate: Option<AggregateMetadata>,
    pub event_horizon: Option<EventHorizonMetadata>,
}

/// The events of one aggregate root instance, in version order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CommittedAggregateEvents {
    pub aggregate_root: AggregateRootId,
    pub event_source: EventSourceId,
    /// The version of the instance after these events: the number of events it has.
    pub version: AggregateRootVersion,
    pub events: Vec<CommittedEvent>,
}

/// An aggregate root instance and its current version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AggregateRootInstance {
    pub aggregate_root: AggregateRootId,
    pub event_source: EventSourceId,
    pub version: AggregateRootVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_identifiers_have_their_documented_text() {
        assert_eq!(
            TenantId::DEVELOPMENT.to_string(),
            "445f8ea8-1a6f-40d7-b2fc-796dba92dc44"
        );
        assert_eq!(
            TenantId::SYSTEM.to_string(),
            "08831584-e016-42f6-bc5e-c4f098fed42b"
        );
        assert_eq!(
            PartitionId::unpartitioned().as_str(),
            ScopeId::DEFAULT.to_string()
        );
    }

    #[test]
    fn timestamps_round_trip_through_seconds_and_nanos() {
        for micros in [
            0,
            1,
            999_999,
            1_000_000,
            1_700_000_000_123_456,
            -1,
            -1_500_000,
        ] {
            let time = Timestamp(micros);
            let (seconds, nanos) = time.seconds_and_nanos();
            assert!((0..1_000_000_000).contains(&nanos));
            assert_eq!(Timestamp::from_seconds_and_nanos(seconds, nanos), time);
        }
    }
}
