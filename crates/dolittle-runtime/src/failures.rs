//! The one place where errors become Dolittle `Failure`s on the wire (STYLE habit 4).
//!
//! A business rejection (no events, bad content, a version conflict), a request the Runtime
//! cannot read, an unknown tenant and an infrastructure failure each keep a distinct failure id
//! all the way to the head.

use dolittle_contracts::failure_ids;
use dolittle_contracts::protobuf::{Failure, Uuid as WireUuid};
use dolittle_store::StoreError;
use dolittle_types::Uuid;

use crate::event_horizon::SubscriptionError;
use crate::processing::projections::ReadError;
use crate::tenants::TenantError;

/// A request that could not be read: a Uuid that is not 16 bytes, a missing field. This id
/// is this Runtime's own; Dolittle v6.1 answered such requests with an `Other` failure.
pub const INVALID_REQUEST: Uuid = Uuid::from_u128(0x6a1e0c2b_52c7_4f0e_9a4e_3d1f6b8e2c71);
/// A tenant the Runtime is not configured for. This id is this Runtime's own; Dolittle v6.1
/// answered with an `Other` failure and a stack trace.
pub const UNKNOWN_TENANT: Uuid = Uuid::from_u128(0x2f3c8a91_7d4e_4b6a_8c15_9e0a7b3d5f42);

/// Builds a failure with an id and a reason.
pub fn failure(id: Uuid, reason: impl Into<String>) -> Failure {
    Failure {
        id: Some(WireUuid {
            value: id.to_bytes_le().to_vec(),
        }),
        reason: reason.into(),
    }
}

/// The failure a store error becomes.
pub fn store_failure(error: &StoreError) -> Failure {
    match error {
        StoreError::EmptyBatch => failure(
            failure_ids::NO_EVENTS_TO_COMMIT,
            "There are no events in uncommitted events sequence",
        ),
        StoreError::AggregateConcurrencyConflict {
            aggregate_root,
            event_source,
            expected,
            current,
        } => failure(
            failure_ids::AGGREGATE_ROOT_CONCURRENCY_CONFLICT,
            format!(
                "Tried to commit events to event source {event_source} on aggregate root \
                     {aggregate_root} with expected aggregate root version {expected}, but current \
                     aggregate root version was {current}. The expected aggregate root version \
                     needs to be the same as the current aggregate root version"
            ),
        ),
        StoreError::InvalidContent { .. } | StoreError::InvalidArgument(_) => {
            failure(INVALID_REQUEST, error.to_string())
        }
        StoreError::Unavailable(_) => {
            failure(failure_ids::EVENT_STORE_UNAVAILABLE, error.to_string())
        }
        StoreError::NewerSchema { .. } | StoreError::ConcurrentWriter(_) => failure(
            failure_ids::EVENT_STORE_CONSISTENCY_ERROR,
            error.to_string(),
        ),
        StoreError::Internal(_) => failure(
            failure_ids::EVENT_STORE_PERSISTENCE_ERROR,
            error.to_string(),
        ),
    }
}

/// The failure for a tenant the Runtime does not serve.
pub fn tenant_failure(error: &TenantError) -> Failure {
    failure(UNKNOWN_TENANT, error.to_string())
}

/// The failure a read of the projection store becomes.
pub fn projection_read_failure(error: &ReadError) -> Failure {
    match error {
        ReadError::NoDefinition { .. } => failure(
            failure_ids::FAILED_TO_GET_PROJECTION_DEFINITION,
            error.to_string(),
        ),
        ReadError::Store(error) => store_failure(error),
    }
}

/// The failure for a request the Runtime cannot read.
pub fn invalid_request(reason: impl std::fmt::Display) -> Failure {
    failure(INVALID_REQUEST, format!("invalid request: {reason}"))
}

/// The failure an event-horizon subscription error becomes, on either side of the horizon
/// (protocol.md §3.6 and §4.3).
pub fn subscription_failure(error: &SubscriptionError) -> Failure {
    let id = match error {
        SubscriptionError::MissingArguments(_) => failure_ids::MISSING_SUBSCRIPTION_ARGUMENTS,
        SubscriptionError::UnknownProducerTenant(_)
        | SubscriptionError::MissingConsent { .. }
        | SubscriptionError::NotAPublicStream(_) => failure_ids::MISSING_CONSENT,
        SubscriptionError::MissingMicroserviceConfiguration(_) => {
            failure_ids::MISSING_MICROSERVICE_CONFIGURATION
        }
        SubscriptionError::CouldNotConnect(_) => failure_ids::COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME,
        SubscriptionError::Producer { id, .. } => *id,
        SubscriptionError::Consumer(_) => failure_ids::ERROR_HANDLING_EVENT,
        SubscriptionError::Cancelled => failure_ids::SUBSCRIPTION_CANCELLED,
        SubscriptionError::UnknownConsumerTenant(_) => UNKNOWN_TENANT,
        SubscriptionError::Store(error) => return store_failure(error),
    };
    failure(id, error.to_string())
}

/// The failure a consumer Runtime answers an event with when it cannot store it.
pub fn error_handling_event(reason: impl std::fmt::Display) -> Failure {
    failure(failure_ids::ERROR_HANDLING_EVENT, reason.to_string())
}

#[cfg(test)]
mod tests {
    use dolittle_types::{AggregateRootId, EventSourceId};

    use super::*;

    fn id_of(failure: &Failure) -> Uuid {
        let bytes: [u8; 16] = failure
            .id
            .as_ref()
            .expect("id")
            .value
            .as_slice()
            .try_into()
            .expect("16 bytes");
        Uuid::from_bytes_le(bytes)
    }

    #[test]
    fn a_concurrency_conflict_has_dolittles_id_and_reason() {
        let failure = store_failure(&StoreError::AggregateConcurrencyConflict {
            aggregate_root: AggregateRootId(
                "0d8f7c6b-5a49-4c3b-9e2d-1f0a9b8c7d6e"
                    .parse()
                    .expect("guid"),
            ),
            event_source: EventSourceId::from("9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"),
            expected: 1,
            current: 3,
        });
        assert_eq!(
            id_of(&failure),
            failure_ids::AGGREGATE_ROOT_CONCURRENCY_CONFLICT
        );
        assert_eq!(
            failure.reason,
            "Tried to commit events to event source 9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d on aggregate \
             root 0d8f7c6b-5a49-4c3b-9e2d-1f0a9b8c7d6e with expected aggregate root version 1, but \
             current aggregate root version was 3. The expected aggregate root version needs to be \
             the same as the current aggregate root version"
        );
    }

    #[test]
    fn rejections_and_infrastructure_failures_keep_distinct_ids() {
        let ids = [
            id_of(&store_failure(&StoreError::EmptyBatch)),
            id_of(&store_failure(&StoreError::InvalidContent {
                index: 0,
                reason: "x".into(),
            })),
            id_of(&store_failure(&StoreError::Unavailable("down".into()))),
            id_of(&store_failure(&StoreError::Internal("disk".into()))),
            id_of(&tenant_failure(&TenantError::Unknown(
                dolittle_types::TenantId::NIL,
            ))),
        ];
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
