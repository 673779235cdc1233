//! Conversions between the wire messages and the domain types of `dolittle-types`.
//!
//! Services call these at the edge and pass only domain types inward. Conversions from the wire
//! can fail (a missing message, a Uuid that is not 16 bytes); they never panic and report a
//! [`ConversionError`] naming the field, as a dotted path in the proto's own field names
//! (`callContext.executionContext.tenantId`, `events[2].artifact.id`).
//!
//! # Uuids
//!
//! A `dolittle.protobuf.Uuid` holds the 16 bytes of a GUID in the Microsoft layout (first three
//! groups little-endian), which is [`Uuid::from_bytes_le`] / [`Uuid::to_bytes_le`]. The bytes are
//! opaque: version and variant bits are never checked, because heads send random GUIDs that are
//! not valid version 4 UUIDs in text form.
//!
//! # String ids
//!
//! Event source ids and partition ids are strings in the domain. On the wire they travel as a
//! Uuid plus the extension field `eventSourceIdString` / `partitionIdString` (field 100):
//! * from the wire ([`string_id_from_wire`]): a present string wins; otherwise the id is the
//!   Uuid's GUID as lowercase text with dashes, which is what an SDK 17 head means;
//! * to the wire ([`string_id_to_wire`]): both are set, the Uuid being [`guid_for_string_id`]:
//!   the GUID itself when the string is a GUID in lowercase dashed text, otherwise the
//!   version 5 UUID of the string in [`STRING_ID_NAMESPACE`]. An SDK 17 head thus sees a stable
//!   GUID for every string, and the same GUID it sent for its own GUID ids.
//!
//! Only the canonical lowercase dashed text counts as "a GUID": `445F8EA8-...` or a GUID without
//! dashes gets a derived GUID like any other string. This keeps the mapping from strings to
//! GUIDs one-to-one, so two different event sources never look the same to an SDK 17 head.

use std::fmt;

use dolittle_types::{
    AggregateMetadata, AggregateRootId, Claim, CommittedAggregateEvents, CommittedEvent, ConsentId,
    CorrelationId, EventHorizonMetadata, EventProcessorId, EventSourceId, EventType, EventTypeId,
    ExecutionContext, MicroserviceId, PartitionId, ScopeId, StreamId, TenantId, Timestamp,
    UncommittedAggregateEvent, UncommittedAggregateEvents, UncommittedEvent, Version,
};
use uuid::Uuid;

use crate::runtime::events::{
    committed_aggregate_events, processing, uncommitted_aggregate_events,
};
use crate::{artifacts, execution, protobuf, runtime, security, services, versioning};

/// The namespace of the version 5 UUIDs derived from string ids that are not GUIDs:
/// `8fa81f10-489e-479a-9d36-9b2a89a0e69e`. Part of the protocol: changing it changes the GUID
/// every SDK 17 head sees for such ids.
pub const STRING_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8fa81f10_489e_479a_9d36_9b2a89a0e69e);

/// A wire message that cannot become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A field that has to be present is absent.
    #[error("{field} is missing")]
    Missing { field: String },
    /// A Uuid whose value is not 16 bytes long.
    #[error("{field} is not a valid uuid: it has {length} bytes instead of 16")]
    UuidLength { field: String, length: usize },
    /// A field whose value contradicts the rest of the message.
    #[error("{field} is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

impl ConversionError {
    fn missing(field: &str) -> Self {
        Self::Missing {
            field: field.to_owned(),
        }
    }

    /// The dotted path of the field that was wrong.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing { field }
            | Self::UuidLength { field, .. }
            | Self::Invalid { field, .. } => field,
        }
    }

    /// The same error for a field inside `parent`.
    pub fn within(self, parent: impl fmt::Display) -> Self {
        let prefix = |field: String| format!("{parent}.{field}");
        match self {
            Self::Missing { field } => Self::Missing {
                field: prefix(field),
            },
            Self::UuidLength { field, length } => Self::UuidLength {
                field: prefix(field),
                length,
            },
            Self::Invalid { field, reason } => Self::Invalid {
                field: prefix(field),
                reason,
            },
        }
    }
}

/// A failure to put in a response's `failure` field.
pub fn failure(id: Uuid, reason: impl Into<String>) -> protobuf::Failure {
    protobuf::Failure {
        id: Some(id.into()),
        reason: reason.into(),
    }
}

// ---- Uuids and GUID identifiers -------------------------------------------------------------

impl From<Uuid> for protobuf::Uuid {
    fn from(value: Uuid) -> Self {
        Self {
            value: value.to_bytes_le().to_vec(),
        }
    }
}

impl TryFrom<&protobuf::Uuid> for Uuid {
    type Error = ConversionError;

    fn try_from(value: &protobuf::Uuid) -> Result<Self, Self::Error> {
        uuid_from_wire("value", value)
    }
}

/// The GUID in a wire Uuid; `field` names it in the error when it is not 16 bytes.
pub fn uuid_from_wire(field: &str, value: &protobuf::Uuid) -> Result<Uuid, ConversionError> {
    let bytes: [u8; 16] =
        value
            .value
            .as_slice()
            .try_into()
            .map_err(|_| ConversionError::UuidLength {
                field: field.to_owned(),
                length: value.value.len(),
            })?;
    Ok(Uuid::from_bytes_le(bytes))
}

/// A GUID identifier from a wire field that has to be present.
pub fn required_guid<T: From<Uuid>>(
    field: &str,
    value: Option<&protobuf::Uuid>,
) -> Result<T, ConversionError> {
    let value = value.ok_or_else(|| ConversionError::missing(field))?;
    uuid_from_wire(field, value).map(T::from)
}

/// A GUID identifier from a wire field that may be absent (absent gives `None`; a present value
/// of the wrong length is still an error).
pub fn optional_guid<T: From<Uuid>>(
    field: &str,
    value: Option<&protobuf::Uuid>,
) -> Result<Option<T>, ConversionError> {
    value
        .map(|value| uuid_from_wire(field, value).map(T::from))
        .transpose()
}

macro_rules! guid_identifiers_to_wire {
    ($($name:ty),* $(,)?) => {
        $(
            impl From<$name> for protobuf::Uuid {
                fn from(value: $name) -> Self {
                    Uuid::from(value).into()
                }
            }
        )*
    };
}

guid_identifiers_to_wire!(
    TenantId,
    MicroserviceId,
    ScopeId,
    StreamId,
    EventTypeId,
    AggregateRootId,
    CorrelationId,
    ConsentId,
    EventProcessorId,
);

// ---- String ids -------------------------------------------------------------------------------

/// The GUID that stands for a string id on the wire: the GUID itself for a GUID in lowercase
/// dashed text, otherwise the version 5 UUID of its UTF-8 bytes in [`STRING_ID_NAMESPACE`].
pub fn guid_for_string_id(id: &str) -> Uuid {
    if id.len() == 36 && !id.bytes().any(|byte| byte.is_ascii_uppercase()) {
        // 36 characters that parse can only be the dashed form; lowercase makes it canonical.
        if let Ok(guid) = Uuid::try_parse(id) {
            return guid;
        }
    }
    Uuid::new_v5(&STRING_ID_NAMESPACE, id.as_bytes())
}

/// A string id from its two wire fields: the string when present, otherwise the Uuid's GUID as
/// lowercase dashed text. `field` is the Uuid field's name (`eventSourceId`, `partitionId`).
pub fn string_id_from_wire(
    field: &str,
    text: Option<String>,
    guid: Option<&protobuf::Uuid>,
) -> Result<String, ConversionError> {
    if let Some(text) = text {
        return Ok(text);
    }
    let guid: Uuid = required_guid(field, guid)?;
    Ok(guid.hyphenated().to_string())
}

/// The two wire fields of a string id: the Uuid ([`guid_for_string_id`]) and the string.
pub fn string_id_to_wire(id: &str) -> (protobuf::Uuid, String) {
    (guid_for_string_id(id).into(), id.to_owned())
}

/// An event source id from the wire fields `eventSourceId` and `eventSourceIdString`.
pub fn event_source_from_wire(
    text: Option<String>,
    guid: Option<&protobuf::Uuid>,
) -> Result<EventSourceId, ConversionError> {
    string_id_from_wire("eventSourceId", text, guid).map(EventSourceId)
}

/// A partition id from the wire fields `partitionId` and `partitionIdString`.
pub fn partition_from_wire(
    text: Option<String>,
    guid: Option<&protobuf::Uuid>,
) -> Result<PartitionId, ConversionError> {
    string_id_from_wire("partitionId", text, guid).map(PartitionId)
}

// ---- Timestamps ------------------------------------------------------------------------------

/// A domain time as a protobuf Timestamp.
pub fn timestamp_to_wire(time: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = time.seconds_and_nanos();
    prost_types::Timestamp { seconds, nanos }
}

/// A protobuf Timestamp as a domain time (microsecond precision, saturating at the extremes).
pub fn timestamp_from_wire(time: &prost_types::Timestamp) -> Timestamp {
    Timestamp::from_seconds_and_nanos(time.seconds, time.nanos)
}

fn required_timestamp(
    field: &str,
    time: Option<&prost_types::Timestamp>,
) -> Result<Timestamp, ConversionError> {
    time.map(timestamp_from_wire)
        .ok_or_else(|| ConversionError::missing(field))
}

// ---- Artifacts, versions, claims, execution contexts ------------------------------------------

impl From<EventType> for artifacts::Artifact {
    fn from(value: EventType) -> Self {
        Self {
            id: Some(value.id.into()),
            generation: value.generation,
        }
    }
}

impl TryFrom<&artifacts::Artifact> for EventType {
    type Error = ConversionError;

    fn try_from(value: &artifacts::Artifact) -> Result<Self, Self::Error> {
        Ok(EventType::new(
            required_guid("id", value.id.as_ref())?,
            value.generation,
        ))
    }
}

/// An event type from an artifact field that has to be present.
pub fn event_type_from_wire(
    field: &str,
    artifact: Option<&artifacts::Artifact>,
) -> Result<EventType, ConversionError> {
    let artifact = artifact.ok_or_else(|| ConversionError::missing(field))?;
    EventType::try_from(artifact).map_err(|error| error.within(field))
}

impl From<Version> for versioning::Version {
    fn from(value: Version) -> Self {
        Self {
            major: value.major,
            minor: value.minor,
            patch: value.patch,
            build: value.build,
            pre_release_string: value.pre_release,
        }
    }
}

impl From<versioning::Version> for Version {
    fn from(value: versioning::Version) -> Self {
        Self {
            major: value.major,
            minor: value.minor,
            patch: value.patch,
            build: value.build,
            pre_release: value.pre_release_string,
        }
    }
}

impl From<Claim> for security::Claim {
    fn from(value: Claim) -> Self {
        Self {
            key: value.key,
            value: value.value,
            value_type: value.value_type,
        }
    }
}

impl From<security::Claim> for Claim {
    fn from(value: security::Claim) -> Self {
        Self {
            key: value.key,
            value: value.value,
            value_type: value.value_type,
        }
    }
}

impl From<ExecutionContext> for execution::ExecutionContext {
    fn from(value: ExecutionContext) -> Self {
        Self {
            microservice_id: Some(value.microservice.into()),
            tenant_id: Some(value.tenant.into()),
            version: Some(value.version.into()),
            correlation_id: Some(value.correlation.into()),
            claims: value.claims.into_iter().map(Into::into).collect(),
            environment: value.environment,
        }
    }
}

impl From<&ExecutionContext> for execution::ExecutionContext {
    fn from(value: &ExecutionContext) -> Self {
        value.clone().into()
    }
}

/// The three GUIDs are required (a context without a tenant has no meaning); an absent version
/// is 0.0.0.0 without a pre-release.
impl TryFrom<execution::ExecutionContext> for ExecutionContext {
    type Error = ConversionError;

    fn try_from(value: execution::ExecutionContext) -> Result<Self, Self::Error> {
        Ok(Self {
            microservice: required_guid("microserviceId", value.microservice_id.as_ref())?,
            tenant: required_guid("tenantId", value.tenant_id.as_ref())?,
            version: value.version.map(Into::into).unwrap_or_default(),
            correlation: required_guid("correlationId", value.correlation_id.as_ref())?,
            claims: value.claims.into_iter().map(Into::into).collect(),
            environment: value.environment,
        })
    }
}

/// An execution context from a field that has to be present.
pub fn execution_context_from_wire(
    field: &str,
    context: Option<execution::ExecutionContext>,
) -> Result<ExecutionContext, ConversionError> {
    let context = context.ok_or_else(|| ConversionError::missing(field))?;
    ExecutionContext::try_from(context).map_err(|error| error.within(field))
}

/// The execution context of a unary call: `callContext.executionContext`.
pub fn execution_context_from_call_context(
    call_context: Option<services::CallRequestContext>,
) -> Result<ExecutionContext, ConversionError> {
    let call_context = call_context.ok_or_else(|| ConversionError::missing("callContext"))?;
    execution_context_from_wire("executionContext", call_context.execution_context)
        .map_err(|error| error.within("callContext"))
}

// ---- Uncommitted events (head -> Runtime) ----------------------------------------------------

impl TryFrom<runtime::events::UncommittedEvent> for UncommittedEvent {
    type Error = ConversionError;

    fn try_from(value: runtime::events::UncommittedEvent) -> Result<Self, Self::Error> {
        Ok(Self {
            event_source: event_source_from_wire(
                value.event_source_id_string,
                value.event_source_id.as_ref(),
            )?,
            event_type: event_type_from_wire("artifact", value.artifact.as_ref())?,
            public: value.public,
            content: value.content,
        })
    }
}

impl From<UncommittedEvent> for runtime::events::UncommittedEvent {
    fn from(value: UncommittedEvent) -> Self {
        let (guid, text) = string_id_to_wire(value.event_source.as_str());
        Self {
            artifact: Some(value.event_type.into()),
            event_source_id: Some(guid),
            public: value.public,
            content: value.content,
            event_source_id_string: Some(text),
        }
    }
}

impl TryFrom<runtime::events::UncommittedAggregateEvents> for UncommittedAggregateEvents {
    type Error = ConversionError;

    fn try_from(value: runtime::events::UncommittedAggregateEvents) -> Result<Self, Self::Error> {
        let events = value
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                Ok(UncommittedAggregateEvent {
                    event_type: event_type_from_wire("artifact", event.artifact.as_ref())
                        .map_err(|error| error.within(format_args!("events[{index}]")))?,
                    public: event.public,
                    content: event.content,
                })
            })
            .collect::<Result<_, ConversionError>>()?;
        Ok(Self {
            aggregate_root: required_guid("aggregateRootId", value.aggregate_root_id.as_ref())?,
            event_source: event_source_from_wire(
                value.event_source_id_string,
                value.event_source_id.as_ref(),
            )?,
            expected_version: value.expected_aggregate_root_version,
            events,
        })
    }
}

impl From<UncommittedAggregateEvents> for runtime::events::UncommittedAggregateEvents {
    fn from(value: UncommittedAggregateEvents) -> Self {
        let (guid, text) = string_id_to_wire(value.event_source.as_str());
        Self {
            aggregate_root_id: Some(value.aggregate_root.into()),
            event_source_id: Some(guid),
            expected_aggregate_root_version: value.expected_version,
            events: value
                .events
                .into_iter()
                .map(
                    |event| uncommitted_aggregate_events::UncommittedAggregateEvent {
                        artifact: Some(event.event_type.into()),
                        public: event.public,
                        content: event.content,
                    },
                )
                .collect(),
            event_source_id_string: Some(text),
        }
    }
}

/// The aggregate root and event source of a `FetchForAggregate` request's `aggregate`.
pub fn aggregate_from_wire(
    aggregate: runtime::events::Aggregate,
) -> Result<(AggregateRootId, EventSourceId), ConversionError> {
    Ok((
        required_guid("aggregateRootId", aggregate.aggregate_root_id.as_ref())?,
        event_source_from_wire(
            aggregate.event_source_id_string,
            aggregate.event_source_id.as_ref(),
        )?,
    ))
}

/// The `aggregate` of a `FetchForAggregate` request.
pub fn aggregate_to_wire(
    aggregate_root: AggregateRootId,
    event_source: &EventSourceId,
) -> runtime::events::Aggregate {
    let (guid, text) = string_id_to_wire(event_source.as_str());
    runtime::events::Aggregate {
        event_source_id: Some(guid),
        aggregate_root_id: Some(aggregate_root.into()),
        event_source_id_string: Some(text),
    }
}

// ---- Committed events (Runtime -> head) ------------------------------------------------------

/// `external`, `externalEventLogSequenceNumber` and `externalEventReceived` come from the
/// event-horizon metadata. The aggregate metadata has no place in a `CommittedEvent`.
impl From<CommittedEvent> for runtime::events::CommittedEvent {
    fn from(value: CommittedEvent) -> Self {
        let (guid, text) = string_id_to_wire(value.event_source.as_str());
        let (external, external_sequence_number, external_received) = match value.event_horizon {
            Some(metadata) => (
                true,
                metadata.external_sequence_number,
                Some(timestamp_to_wire(metadata.received)),
            ),
            None => (false, 0, None),
        };
        Self {
            event_log_sequence_number: value.sequence_number,
            occurred: Some(timestamp_to_wire(value.occurred)),
            event_source_id: Some(guid),
            execution_context: Some(value.execution_context.into()),
            r#type: Some(value.event_type.into()),
            public: value.public,
            content: value.content,
            external,
            external_event_log_sequence_number: external_sequence_number,
            external_event_received: external_received,
            event_source_id_string: Some(text),
        }
    }
}

/// The wire carries no aggregate metadata and no consent, so `aggregate` is `None` and an
/// external event's consent is the empty GUID.
impl TryFrom<runtime::events::CommittedEvent> for CommittedEvent {
    type Error = ConversionError;

    fn try_from(value: runtime::events::CommittedEvent) -> Result<Self, Self::Error> {
        let event_horizon = value.external.then(|| EventHorizonMetadata {
            external_sequence_number: value.external_event_log_sequence_number,
            received: value
                .external_event_received
                .as_ref()
                .map(timestamp_from_wire)
                .unwrap_or_default(),
            consent: ConsentId::NIL,
        });
        Ok(Self {
            sequence_number: value.event_log_sequence_number,
            occurred: required_timestamp("occurred", value.occurred.as_ref())?,
            event_source: event_source_from_wire(
                value.event_source_id_string,
                value.event_source_id.as_ref(),
            )?,
            execution_context: execution_context_from_wire(
                "executionContext",
                value.execution_context,
            )?,
            event_type: event_type_from_wire("type", value.r#type.as_ref())?,
            public: value.public,
            content: value.content,
            aggregate: None,
            event_horizon,
        })
    }
}

/// `aggregateRootVersion` is the 0-based version of the last event: taken from the last event's
/// aggregate metadata, or `version - 1` without it, and 0 when there are no events.
impl From<CommittedAggregateEvents> for runtime::events::CommittedAggregateEvents {
    fn from(value: CommittedAggregateEvents) -> Self {
        let aggregate_root_version = match value.events.last() {
            None => 0,
            Some(last) => last
                .aggregate
                .map(|metadata| metadata.version)
                .unwrap_or_else(|| value.version.saturating_sub(1)),
        };
        let (guid, text) = string_id_to_wire(value.event_source.as_str());
        Self {
            event_source_id: Some(guid),
            aggregate_root_id: Some(value.aggregate_root.into()),
            aggregate_root_version,
            events: value
                .events
                .into_iter()
                .map(
                    |event| committed_aggregate_events::CommittedAggregateEvent {
                        event_log_sequence_number: event.sequence_number,
                        occurred: Some(timestamp_to_wire(event.occurred)),
                        execution_context: Some(event.execution_context.into()),
                        r#type: Some(event.event_type.into()),
                        public: event.public,
                        content: event.content,
                    },
                )
                .collect(),
            event_source_id_string: Some(text),
        }
    }
}

/// Event `i` of `n` gets aggregate version `aggregateRootVersion - (n - 1) + i`, and the
/// instance's version is the number after the last event (0 without events).
impl TryFrom<runtime::events::CommittedAggregateEvents> for CommittedAggregateEvents {
    type Error = ConversionError;

    fn try_from(value: runtime::events::CommittedAggregateEvents) -> Result<Self, Self::Error> {
        let aggregate_root: AggregateRootId =
            required_guid("aggregateRootId", value.aggregate_root_id.as_ref())?;
        let event_source =
            event_source_from_wire(value.event_source_id_string, value.event_source_id.as_ref())?;
        let count = value.events.len() as u64;
        let first_version = if count == 0 {
            0
        } else {
            value
                .aggregate_root_version
                .checked_sub(count - 1)
                .ok_or_else(|| ConversionError::Invalid {
                    field: "aggregateRootVersion".to_owned(),
                    reason: format!(
                        "version {} of the last event is too small for {count} events",
                        value.aggregate_root_version
                    ),
                })?
        };
        let events = value
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                committed_aggregate_event_from_wire(
                    event,
                    &event_source,
                    AggregateMetadata {
                        aggregate_root,
                        version: first_version + index as u64,
                    },
                )
                .map_err(|error| error.within(format_args!("events[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            aggregate_root,
            event_source,
            version: if count == 0 { 0 } else { first_version + count },
            events,
        })
    }
}

fn committed_aggregate_event_from_wire(
    event: committed_aggregate_events::CommittedAggregateEvent,
    event_source: &EventSourceId,
    aggregate: AggregateMetadata,
) -> Result<CommittedEvent, ConversionError> {
    Ok(CommittedEvent {
        sequence_number: event.event_log_sequence_number,
        occurred: required_timestamp("occurred", event.occurred.as_ref())?,
        event_source: event_source.clone(),
        execution_context: execution_context_from_wire(
            "executionContext",
            event.execution_context,
        )?,
        event_type: event_type_from_wire("type", event.r#type.as_ref())?,
        public: event.public,
        content: event.content,
        aggregate: Some(aggregate),
        event_horizon: None,
    })
}

/// A stream entry for an event processor, with both partition fields set.
pub fn stream_event_to_wire(
    event: CommittedEvent,
    partition: &PartitionId,
    scope: ScopeId,
    partitioned: bool,
) -> processing::StreamEvent {
    let (guid, text) = string_id_to_wire(partition.as_str());
    processing::StreamEvent {
        event: Some(event.into()),
        partition_id: Some(guid),
        scope_id: Some(scope.into()),
        partitioned,
        partition_id_string: Some(text),
    }
}

/// The parts of a stream entry received by a head: the event, its partition, the scope and the
/// `partitioned` flag.
pub fn stream_event_from_wire(
    stream_event: processing::StreamEvent,
) -> Result<(CommittedEvent, PartitionId, ScopeId, bool), ConversionError> {
    let event = stream_event
        .event
        .ok_or_else(|| ConversionError::missing("event"))?;
    let event = CommittedEvent::try_from(event).map_err(|error| error.within("event"))?;
    let partition = partition_from_wire(
        stream_event.partition_id_string,
        stream_event.partition_id.as_ref(),
    )?;
    let scope = optional_guid("scopeId", stream_event.scope_id.as_ref())?.unwrap_or_default();
    Ok((event, partition, scope, stream_event.partitioned))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::runtime::events::processing::{
        EventHandlerRegistrationResponse, EventHandlerRuntimeToClientMessage,
        event_handler_runtime_to_client_message,
    };

    const DEVELOPMENT_TENANT_BYTES: [u8; 16] = [
        0xa8, 0x8e, 0x5f, 0x44, 0x6f, 0x1a, 0xd7, 0x40, 0xb2, 0xfc, 0x79, 0x6d, 0xba, 0x92, 0xdc,
        0x44,
    ];

    fn wire_uuid(bytes: &[u8]) -> protobuf::Uuid {
        protobuf::Uuid {
            value: bytes.to_vec(),
        }
    }

    fn sample_execution_context() -> ExecutionContext {
        ExecutionContext {
            microservice: MicroserviceId(Uuid::from_u128(0x1111)),
            tenant: TenantId::DEVELOPMENT,
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
                build: 4,
                pre_release: "beta".to_owned(),
            },
            correlation: CorrelationId(Uuid::from_u128(0x2222)),
            claims: vec![Claim {
                key: "name".to_owned(),
                value: "chef".to_owned(),
                value_type: "string".to_owned(),
            }],
            environment: "Development".to_owned(),
        }
    }

    fn sample_committed_event(sequence_number: u64, event_source: &str) -> CommittedEvent {
        CommittedEvent {
            sequence_number,
            occurred: Timestamp(1_700_000_000_123_456),
            event_source: EventSourceId::from(event_source),
            execution_context: sample_execution_context(),
            event_type: EventType::new(EventTypeId(Uuid::from_u128(0x3333)), 2),
            public: true,
            content: r#"{"dish":"taco"}"#.to_owned(),
            aggregate: None,
            event_horizon: None,
        }
    }

    #[test]
    fn development_tenant_has_the_documented_net_byte_order() {
        let wire = protobuf::Uuid::from(TenantId::DEVELOPMENT);
        assert_eq!(wire.value, DEVELOPMENT_TENANT_BYTES);

        let mut message = vec![0x0a, 0x10];
        message.extend_from_slice(&DEVELOPMENT_TENANT_BYTES);
        assert_eq!(wire.encode_to_vec(), message);

        let context = execution::ExecutionContext {
            tenant_id: Some(wire.clone()),
            ..Default::default()
        };
        let mut as_tenant_field = vec![0x12, 0x12];
        as_tenant_field.extend_from_slice(&message);
        assert_eq!(context.encode_to_vec(), as_tenant_field);

        let back: Uuid = required_guid("tenantId", Some(&wire)).unwrap();
        assert_eq!(back.to_string(), "445f8ea8-1a6f-40d7-b2fc-796dba92dc44");
    }

    #[test]
    fn system_tenant_has_the_documented_net_byte_order() {
        assert_eq!(
            protobuf::Uuid::from(TenantId::SYSTEM).value,
            [
                0x84, 0x15, 0x83, 0x08, 0x16, 0xe0, 0xf6, 0x42, 0xbc, 0x5e, 0xc4, 0xf0, 0x98, 0xfe,
                0xd4, 0x2b
            ]
        );
    }

    #[test]
    fn uuid_bytes_are_opaque_and_never_validated() {
        // Version and variant bits as an SDK's random GUID may have them in the .NET layout.
        let bytes = [0xff; 16];
        let guid: Uuid = required_guid("callId", Some(&wire_uuid(&bytes))).unwrap();
        assert_eq!(guid.to_bytes_le(), bytes);
    }

    #[test]
    fn uuids_that_are_not_16_bytes_are_errors_naming_the_field() {
        for length in [0, 1, 15, 17, 32] {
            let error =
                required_guid::<Uuid>("scopeId", Some(&wire_uuid(&vec![7; length]))).unwrap_err();
            assert_eq!(
                error,
                ConversionError::UuidLength {
                    field: "scopeId".to_owned(),
                    length
                }
            );
        }
        assert_eq!(
            Uuid::try_from(&wire_uuid(&[1, 2, 3])).unwrap_err().field(),
            "value"
        );
        assert!(matches!(
            required_guid::<Uuid>("scopeId", None),
            Err(ConversionError::Missing { field }) if field == "scopeId"
        ));
        assert_eq!(
            optional_guid::<ScopeId>("scopeId", None).unwrap(),
            None,
            "an absent optional uuid is not an error"
        );
        assert!(optional_guid::<ScopeId>("scopeId", Some(&wire_uuid(&[]))).is_err());
    }

    #[test]
    fn nested_uuid_errors_name_the_whole_path() {
        let mut event = runtime::events::UncommittedEvent::from(UncommittedEvent {
            event_source: EventSourceId::from("kitchen"),
            event_type: EventType::new(EventTypeId(Uuid::from_u128(1)), 1),
            public: false,
            content: "{}".to_owned(),
        });
        event.artifact.as_mut().unwrap().id = Some(wire_uuid(&[0; 15]));
        let error = UncommittedEvent::try_from(event).unwrap_err();
        assert_eq!(error.field(), "artifact.id");
        assert_eq!(
            error.to_string(),
            "artifact.id is not a valid uuid: it has 15 bytes instead of 16"
        );

        let mut context = execution::ExecutionContext::from(sample_execution_context());
        context.tenant_id = Some(wire_uuid(&[]));
        let call_context = services::CallRequestContext {
            execution_context: Some(context),
            head_id: None,
        };
        let error = execution_context_from_call_context(Some(call_context)).unwrap_err();
        assert_eq!(error.field(), "callContext.executionContext.tenantId");

        let aggregate_events = runtime::events::UncommittedAggregateEvents {
            aggregate_root_id: Some(Uuid::from_u128(9).into()),
            event_source_id: Some(Uuid::from_u128(8).into()),
            expected_aggregate_root_version: 0,
            events: vec![
                uncommitted_aggregate_events::UncommittedAggregateEvent {
                    artifact: Some(EventType::new(EventTypeId(Uuid::from_u128(1)), 1).into()),
                    public: false,
                    content: "{}".to_owned(),
                },
                uncommitted_aggregate_events::UncommittedAggregateEvent {
                    artifact: None,
                    public: false,
                    content: "{}".to_owned(),
                },
            ],
            event_source_id_string: None,
        };
        let error = UncommittedAggregateEvents::try_from(aggregate_events).unwrap_err();
        assert_eq!(error.to_string(), "events[1].artifact is missing");
    }

    #[test]
    fn a_guid_string_id_stands_for_itself() {
        let text = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44";
        assert_eq!(guid_for_string_id(text), TenantId::DEVELOPMENT.0);
        let (guid, string) = string_id_to_wire(text);
        assert_eq!(guid.value, DEVELOPMENT_TENANT_BYTES);
        assert_eq!(string, text);

        // A head that only sends the Uuid gets the lowercase dashed text.
        let from_uuid_only = event_source_from_wire(None, Some(&guid)).unwrap();
        assert_eq!(from_uuid_only.as_str(), text);
    }

    #[test]
    fn a_non_guid_string_id_gets_a_stable_derived_guid() {
        let first = guid_for_string_id("kitchen-42");
        assert_eq!(
            first,
            guid_for_string_id("kitchen-42"),
            "same input, same guid"
        );
        assert_eq!(first, Uuid::new_v5(&STRING_ID_NAMESPACE, b"kitchen-42"));
        assert_eq!(first.get_version_num(), 5);
        assert_ne!(first, guid_for_string_id("kitchen-43"));
        assert_ne!(guid_for_string_id(""), Uuid::nil());

        // Other spellings of a GUID are strings like any other, so no two ids share a guid.
        let upper = "445F8EA8-1A6F-40D7-B2FC-796DBA92DC44";
        let simple = "445f8ea81a6f40d7b2fc796dba92dc44";
        assert_ne!(guid_for_string_id(upper), TenantId::DEVELOPMENT.0);
        assert_ne!(guid_for_string_id(simple), TenantId::DEVELOPMENT.0);
        assert_ne!(guid_for_string_id(upper), guid_for_string_id(simple));
    }

    #[test]
    fn a_string_id_on_the_wire_wins_over_the_uuid() {
        let unrelated_guid = protobuf::Uuid::from(Uuid::from_u128(0x42));
        let partition =
            partition_from_wire(Some("customer-7".to_owned()), Some(&unrelated_guid)).unwrap();
        assert_eq!(partition.as_str(), "customer-7");
        let partition = partition_from_wire(Some("customer-7".to_owned()), None).unwrap();
        assert_eq!(partition.as_str(), "customer-7");
        assert_eq!(
            partition_from_wire(None, None).unwrap_err(),
            ConversionError::Missing {
                field: "partitionId".to_owned()
            }
        );
        assert_eq!(
            event_source_from_wire(None, Some(&wire_uuid(&[1; 3])))
                .unwrap_err()
                .field(),
            "eventSourceId"
        );
    }

    #[test]
    fn the_runtime_sets_both_event_source_fields() {
        let wire = runtime::events::CommittedEvent::from(sample_committed_event(3, "kitchen-42"));
        assert_eq!(wire.event_source_id_string.as_deref(), Some("kitchen-42"));
        assert_eq!(
            wire.event_source_id,
            Some(guid_for_string_id("kitchen-42").into())
        );
        // Field 100, length-delimited: tag bytes a2 06.
        let only_string = runtime::events::UncommittedEvent {
            event_source_id_string: Some("a".to_owned()),
            ..Default::default()
        };
        assert_eq!(only_string.encode_to_vec(), [0xa2, 0x06, 0x01, b'a']);
    }

    #[test]
    fn an_empty_registration_response_arm_is_encoded() {
        let message = EventHandlerRuntimeToClientMessage {
            message: Some(
                event_handler_runtime_to_client_message::Message::RegistrationResponse(
                    EventHandlerRegistrationResponse::default(),
                ),
            ),
        };
        assert_eq!(message.encode_to_vec(), [0x0a, 0x00]);
        let decoded = EventHandlerRuntimeToClientMessage::decode([0x0a, 0x00].as_slice()).unwrap();
        assert_eq!(decoded, message);
    }

    #[test]
    fn uncommitted_events_round_trip() {
        let event = UncommittedEvent {
            event_source: EventSourceId::from("order/17"),
            event_type: EventType::new(EventTypeId(Uuid::from_u128(0xabc)), 3),
            public: true,
            content: r#"{"a":1}"#.to_owned(),
        };
        let wire = runtime::events::UncommittedEvent::from(event.clone());
        let bytes = wire.encode_to_vec();
        let decoded = runtime::events::UncommittedEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(UncommittedEvent::try_from(decoded).unwrap(), event);

        let events = UncommittedAggregateEvents {
            aggregate_root: AggregateRootId(Uuid::from_u128(0xdef)),
            event_source: EventSourceId::from("445f8ea8-1a6f-40d7-b2fc-796dba92dc44"),
            expected_version: 4,
            events: vec![UncommittedAggregateEvent {
                event_type: EventType::new(EventTypeId(Uuid::from_u128(0xabc)), 1),
                public: false,
                content: "{}".to_owned(),
            }],
        };
        let wire = runtime::events::UncommittedAggregateEvents::from(events.clone());
        assert_eq!(
            wire.event_source_id.as_ref().unwrap().value,
            DEVELOPMENT_TENANT_BYTES
        );
        assert_eq!(UncommittedAggregateEvents::try_from(wire).unwrap(), events);
    }

    #[test]
    fn an_sdk17_uncommitted_event_gets_the_guid_text_as_event_source() {
        let wire = runtime::events::UncommittedEvent {
            artifact: Some(EventType::new(EventTypeId(Uuid::from_u128(1)), 1).into()),
            event_source_id: Some(wire_uuid(&DEVELOPMENT_TENANT_BYTES)),
            public: false,
            content: "{}".to_owned(),
            event_source_id_string: None,
        };
        let event = UncommittedEvent::try_from(wire).unwrap();
        assert_eq!(
            event.event_source.as_str(),
            "445f8ea8-1a6f-40d7-b2fc-796dba92dc44"
        );
    }

    #[test]
    fn committed_events_carry_event_horizon_metadata_and_round_trip() {
        let mut event = sample_committed_event(11, "kitchen");
        event.event_horizon = Some(EventHorizonMetadata {
            external_sequence_number: 99,
            received: Timestamp(1_700_000_001_000_000),
            consent: ConsentId::NIL,
        });
        let wire = runtime::events::CommittedEvent::from(event.clone());
        assert!(wire.external);
        assert_eq!(wire.external_event_log_sequence_number, 99);
        assert_eq!(
            wire.external_event_received,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_001,
                nanos: 0
            })
        );
        assert_eq!(
            wire.occurred,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000
            })
        );
        assert_eq!(CommittedEvent::try_from(wire).unwrap(), event);

        let local = runtime::events::CommittedEvent::from(sample_committed_event(12, "kitchen"));
        assert!(!local.external);
        assert_eq!(local.external_event_received, None);

        let mut without_occurred = local.clone();
        without_occurred.occurred = None;
        assert_eq!(
            CommittedEvent::try_from(without_occurred).unwrap_err(),
            ConversionError::Missing {
                field: "occurred".to_owned()
            }
        );
    }

    #[test]
    fn committed_aggregate_events_use_the_last_events_zero_based_version() {
        let aggregate_root = AggregateRootId(Uuid::from_u128(0x77));
        // Committed with expected version 5: the events get versions 5, 6, 7.
        let events: Vec<CommittedEvent> = (0..3)
            .map(|index| CommittedEvent {
                aggregate: Some(AggregateMetadata {
                    aggregate_root,
                    version: 5 + index,
                }),
                ..sample_committed_event(20 + index, "kitchen")
            })
            .collect();
        let domain = CommittedAggregateEvents {
            aggregate_root,
            event_source: EventSourceId::from("kitchen"),
            version: 8,
            events,
        };
        let wire = runtime::events::CommittedAggregateEvents::from(domain.clone());
        assert_eq!(wire.aggregate_root_version, 7);
        assert_eq!(wire.events.len(), 3);
        assert_eq!(wire.event_source_id_string.as_deref(), Some("kitchen"));

        let back = CommittedAggregateEvents::try_from(wire).unwrap();
        assert_eq!(back, domain);

        let empty = CommittedAggregateEvents {
            aggregate_root,
            event_source: EventSourceId::from("kitchen"),
            version: 0,
            events: Vec::new(),
        };
        let wire = runtime::events::CommittedAggregateEvents::from(empty.clone());
        assert_eq!(wire.aggregate_root_version, 0);
        assert_eq!(CommittedAggregateEvents::try_from(wire).unwrap(), empty);
    }

    #[test]
    fn committed_aggregate_events_with_an_impossible_version_are_rejected() {
        let mut wire = runtime::events::CommittedAggregateEvents::from(CommittedAggregateEvents {
            aggregate_root: AggregateRootId(Uuid::from_u128(0x77)),
            event_source: EventSourceId::from("kitchen"),
            version: 2,
            events: vec![
                sample_committed_event(0, "kitchen"),
                sample_committed_event(1, "kitchen"),
            ],
        });
        assert_eq!(wire.aggregate_root_version, 1);
        wire.aggregate_root_version = 0;
        assert_eq!(
            CommittedAggregateEvents::try_from(wire)
                .unwrap_err()
                .field(),
            "aggregateRootVersion"
        );
    }

    #[test]
    fn stream_events_carry_both_partition_fields() {
        let event = sample_committed_event(5, "kitchen");
        let scope = ScopeId(Uuid::from_u128(0x55));
        let wire =
            stream_event_to_wire(event.clone(), &PartitionId::from("customer-7"), scope, true);
        assert_eq!(wire.partition_id_string.as_deref(), Some("customer-7"));
        assert_eq!(
            wire.partition_id,
            Some(guid_for_string_id("customer-7").into())
        );
        let (back, partition, back_scope, partitioned) = stream_event_from_wire(wire).unwrap();
        assert_eq!(back, event);
        assert_eq!(partition.as_str(), "customer-7");
        assert_eq!(back_scope, scope);
        assert!(partitioned);
    }

    #[test]
    fn execution_contexts_round_trip_and_require_their_guids() {
        let context = sample_execution_context();
        let wire = execution::ExecutionContext::from(&context);
        assert_eq!(ExecutionContext::try_from(wire.clone()).unwrap(), context);

        let mut without_version = wire.clone();
        without_version.version = None;
        assert_eq!(
            ExecutionContext::try_from(without_version).unwrap().version,
            Version::default()
        );

        let mut without_correlation = wire;
        without_correlation.correlation_id = None;
        assert_eq!(
            execution_context_from_wire("executionContext", Some(without_correlation))
                .unwrap_err()
                .field(),
            "executionContext.correlationId"
        );
        assert_eq!(
            execution_context_from_call_context(None)
                .unwrap_err()
                .field(),
            "callContext"
        );
    }

    #[test]
    fn aggregates_and_failures_convert() {
        let aggregate = aggregate_to_wire(
            AggregateRootId(Uuid::from_u128(0x10)),
            &EventSourceId::from("kitchen"),
        );
        assert_eq!(
            aggregate_from_wire(aggregate).unwrap(),
            (
                AggregateRootId(Uuid::from_u128(0x10)),
                EventSourceId::from("kitchen")
            )
        );

        let failure = failure(
            crate::failure_ids::NO_EVENTS_TO_COMMIT,
            "There are no events in uncommitted events sequence",
        );
        assert_eq!(
            required_guid::<Uuid>("id", failure.id.as_ref()).unwrap(),
            crate::failure_ids::NO_EVENTS_TO_COMMIT
        );
        assert_eq!(
            failure.reason,
            "There are no events in uncommitted events sequence"
        );
    }
}
