//! Messages encoded by the protoc-generated JavaScript of `@dolittle/runtime.contracts@5.4.0`
//! (the code SDK 17 sends with) decode into the expected values here, and re-encode to the same
//! bytes. The hex strings were produced once with the npm packages' `serializeBinary`; every
//! Uuid is 16 consecutive bytes starting at a distinct value so that a swapped field shows.

use dolittle_contracts::convert::{execution_context_from_call_context, required_guid};
use dolittle_contracts::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, event_handler_client_to_runtime_message,
};
use dolittle_contracts::runtime::events::{
    CommitAggregateEventsRequest, CommitEventsRequest, CommitEventsResponse,
    FetchForAggregateResponse,
};
use dolittle_types::{
    AggregateMetadata, AggregateRootId, Claim, CommittedAggregateEvents, CommittedEvent,
    CorrelationId, EventType, EventTypeId, ExecutionContext, MicroserviceId, TenantId, Timestamp,
    UncommittedAggregateEvents, UncommittedEvent, Uuid, Version,
};
use prost::Message;

const COMMIT_EVENTS_REQUEST: &str = "0a640a620a120a10101112131415161718191a1b1c1d1e1f12120a10202122232425262728292a2b2c2d2e2f1a0c08011002180320042a02726322120a10303132333435363738393a3b3c3d3e3f2a090a016b1201761a0174320b446576656c6f706d656e7412370a160a120a10404142434445464748494a4b4c4d4e4f100712120a10505152535455565758595a5b5c5d5e5f180122077b2278223a317d";
const COMMIT_AGGREGATE_EVENTS_REQUEST: &str = "0a640a620a120a10101112131415161718191a1b1c1d1e1f12120a10202122232425262728292a2b2c2d2e2f1a0c08011002180320042a02726322120a10303132333435363738393a3b3c3d3e3f2a090a016b1201761a0174320b446576656c6f706d656e7412490a120a10606162636465666768696a6b6c6d6e6f12120a10707172737475767778797a7b7c7d7e7f18ac02221c0a160a120a10404142434445464748494a4b4c4d4e4f10071a027b7d";
const EVENT_HANDLER_REGISTRATION: &str = "0ac0010a7c0a620a120a10101112131415161718191a1b1c1d1e1f12120a10202122232425262728292a2b2c2d2e2f1a0c08011002180320042a02726322120a10303132333435363738393a3b3c3d3e3f2a090a016b1201761a0174320b446576656c6f706d656e7412120a10808182838485868788898a8b8c8d8e8f1a02080112120a10909192939495969798999a9b9c9d9e9f1a120a10a0a1a2a3a4a5a6a7a8a9aaabacadaeaf22160a120a10404142434445464748494a4b4c4d4e4f10072801";

/// What this crate encodes for a commit response and a fetch response whose event source is the
/// string `kitchen-42`. Checked once by decoding these bytes with the npm packages'
/// `deserializeBinary`: the unknown field 100 is skipped and the event source reads as
/// `dd741da7-7adf-5aa6-bca8-4572ce83bc6f`, the derived GUID. Kept here so that a change to the
/// encoding shows.
const COMMIT_EVENTS_RESPONSE: &str = "129e010829120b0880e2cfaa06108094ef3a1a120a10a71d74dddf7aa65abca84572ce83bc6f224b0a120a100000000000000000000000000000000112120a10a88e5f446f1ad740b2fc796dba92dc441a0022120a1000000000000000000000000000000002320b446576656c6f706d656e742a160a120a100000000000000000000000000000000310013a077b2261223a317da2060a6b69746368656e2d3432";
const FETCH_FOR_AGGREGATE_RESPONSE: &str = "12b6010a120a10a71d74dddf7aa65abca84572ce83bc6f12120a10000000000000000000000000000000091804227d0829120b0880e2cfaa06108094ef3a1a4b0a120a100000000000000000000000000000000112120a10a88e5f446f1ad740b2fc796dba92dc441a0022120a1000000000000000000000000000000002320b446576656c6f706d656e7422160a120a1000000000000000000000000000000003100132077b2261223a317da2060a6b69746368656e2d3432";

fn bytes_from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("test data is hex"))
        .collect()
}

/// The GUID whose .NET bytes are `first, first + 1, ..., first + 15`.
fn counting_guid(first: u8) -> Uuid {
    let mut bytes = [0; 16];
    for (offset, byte) in bytes.iter_mut().enumerate() {
        *byte = first + offset as u8;
    }
    Uuid::from_bytes_le(bytes)
}

fn expected_execution_context() -> ExecutionContext {
    ExecutionContext {
        microservice: counting_guid(0x10).into(),
        tenant: counting_guid(0x20).into(),
        version: Version {
            major: 1,
            minor: 2,
            patch: 3,
            build: 4,
            pre_release: "rc".to_owned(),
        },
        correlation: counting_guid(0x30).into(),
        claims: vec![Claim {
            key: "k".to_owned(),
            value: "v".to_owned(),
            value_type: "t".to_owned(),
        }],
        environment: "Development".to_owned(),
    }
}

fn expected_event_type() -> EventType {
    EventType::new(EventTypeId(counting_guid(0x40)), 7)
}

#[test]
fn a_commit_request_from_the_javascript_contracts_decodes_and_reencodes_identically() {
    let bytes = bytes_from_hex(COMMIT_EVENTS_REQUEST);
    let request = CommitEventsRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(request.encode_to_vec(), bytes);

    let context = execution_context_from_call_context(request.call_context).expect("context");
    assert_eq!(context, expected_execution_context());
    let events: Vec<UncommittedEvent> = request
        .events
        .into_iter()
        .map(UncommittedEvent::try_from)
        .collect::<Result<_, _>>()
        .expect("events");
    assert_eq!(
        events,
        vec![UncommittedEvent {
            event_source: counting_guid(0x50).hyphenated().to_string().into(),
            event_type: expected_event_type(),
            public: true,
            content: r#"{"x":1}"#.to_owned(),
        }]
    );
}

#[test]
fn an_aggregate_commit_request_from_the_javascript_contracts_decodes_and_reencodes_identically() {
    let bytes = bytes_from_hex(COMMIT_AGGREGATE_EVENTS_REQUEST);
    let request = CommitAggregateEventsRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(request.encode_to_vec(), bytes);

    let events = UncommittedAggregateEvents::try_from(request.events.expect("events present"))
        .expect("converts");
    assert_eq!(events.aggregate_root.0, counting_guid(0x60));
    assert_eq!(
        events.event_source.as_str(),
        counting_guid(0x70).hyphenated().to_string()
    );
    assert_eq!(events.expected_version, 300);
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].event_type, expected_event_type());
    assert_eq!(events.events[0].content, "{}");
}

#[test]
fn an_event_handler_registration_from_the_javascript_contracts_decodes_and_reencodes_identically() {
    let bytes = bytes_from_hex(EVENT_HANDLER_REGISTRATION);
    let message = EventHandlerClientToRuntimeMessage::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(message.encode_to_vec(), bytes);

    let Some(event_handler_client_to_runtime_message::Message::RegistrationRequest(registration)) =
        message.message
    else {
        panic!(
            "expected the registrationRequest arm, got {:?}",
            message.message
        );
    };
    let arguments = registration.call_context.expect("arguments context");
    assert_eq!(
        arguments.ping_interval,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 0
        })
    );
    let head: Uuid = required_guid("headId", arguments.head_id.as_ref()).expect("head id");
    assert_eq!(head, counting_guid(0x80));
    let scope: Uuid = required_guid("scopeId", registration.scope_id.as_ref()).expect("scope");
    assert_eq!(scope, counting_guid(0x90));
    let handler: Uuid =
        required_guid("eventHandlerId", registration.event_handler_id.as_ref()).expect("id");
    assert_eq!(handler, counting_guid(0xa0));
    assert_eq!(
        EventType::try_from(&registration.types[0]).expect("type"),
        expected_event_type()
    );
    assert!(registration.partitioned);
}

#[test]
fn responses_with_string_event_sources_encode_as_checked_against_the_javascript_contracts() {
    let event = CommittedEvent {
        sequence_number: 41,
        occurred: Timestamp(1_700_000_000_123_456),
        event_source: "kitchen-42".into(),
        execution_context: ExecutionContext {
            microservice: MicroserviceId(Uuid::from_u128(1)),
            tenant: TenantId::DEVELOPMENT,
            version: Version::default(),
            correlation: CorrelationId(Uuid::from_u128(2)),
            claims: Vec::new(),
            environment: "Development".to_owned(),
        },
        event_type: EventType::new(EventTypeId(Uuid::from_u128(3)), 1),
        public: false,
        content: r#"{"a":1}"#.to_owned(),
        aggregate: Some(AggregateMetadata {
            aggregate_root: AggregateRootId(Uuid::from_u128(9)),
            version: 4,
        }),
        event_horizon: None,
    };
    let commit = CommitEventsResponse {
        failure: None,
        events: vec![event.clone().into()],
    };
    assert_eq!(
        commit.encode_to_vec(),
        bytes_from_hex(COMMIT_EVENTS_RESPONSE)
    );

    let fetch = FetchForAggregateResponse {
        failure: None,
        events: Some(
            CommittedAggregateEvents {
                aggregate_root: AggregateRootId(Uuid::from_u128(9)),
                event_source: "kitchen-42".into(),
                version: 5,
                events: vec![event],
            }
            .into(),
        ),
    };
    assert_eq!(
        fetch.encode_to_vec(),
        bytes_from_hex(FETCH_FOR_AGGREGATE_RESPONSE)
    );
}
