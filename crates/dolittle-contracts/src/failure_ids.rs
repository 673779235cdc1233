//! The well-known failure ids of the Dolittle Runtime (v6.1), as `Failure.id` values.
//!
//! Heads tell failures apart by these ids, so they are part of the protocol. The names follow
//! Dolittle's, in Rust's constant style.

use uuid::Uuid;

// Generic.

/// Other: an unexpected error: `05cc1d10-4efc-457b-84a6-a1be0a5f36ba`.
pub const OTHER: Uuid = Uuid::from_u128(0x05cc1d10_4efc_457b_84a6_a1be0a5f36ba);

/// Unknown: `90e76603-b6ea-403e-a68e-b9b385b92b16`.
pub const UNKNOWN: Uuid = Uuid::from_u128(0x90e76603_b6ea_403e_a68e_b9b385b92b16);

// Event store.

/// EventStoreUnavailable: `b6fcb5dd-a32b-435b-8bf4-ed96e846d460`.
pub const EVENT_STORE_UNAVAILABLE: Uuid = Uuid::from_u128(0xb6fcb5dd_a32b_435b_8bf4_ed96e846d460);

/// EventAppliedByOtherAggregateRoot: `d08a30b0-56ab-43dc-8fe6-490320514d2f`.
pub const EVENT_APPLIED_BY_OTHER_AGGREGATE_ROOT: Uuid =
    Uuid::from_u128(0xd08a30b0_56ab_43dc_8fe6_490320514d2f);

/// EventAppliedToOtherEventSource: `b2acc526-ba3a-490e-9f15-9453c6f13b46`.
pub const EVENT_APPLIED_TO_OTHER_EVENT_SOURCE: Uuid =
    Uuid::from_u128(0xb2acc526_ba3a_490e_9f15_9453c6f13b46);

/// EventStorePersistanceError (Dolittle's spelling): `ad55fca7-476a-4f68-9411-1a3b087ab843`.
pub const EVENT_STORE_PERSISTENCE_ERROR: Uuid =
    Uuid::from_u128(0xad55fca7_476a_4f68_9411_1a3b087ab843);

/// EventStoreConsistencyError: `6f0e6cab-c7e5-402e-a502-e095f9545297`.
pub const EVENT_STORE_CONSISTENCY_ERROR: Uuid =
    Uuid::from_u128(0x6f0e6cab_c7e5_402e_a502_e095f9545297);

/// EventLogSequenceIsOutOfOrder: `eb508238-87ff-4519-a743-03be5196a83d`.
pub const EVENT_LOG_SEQUENCE_IS_OUT_OF_ORDER: Uuid =
    Uuid::from_u128(0xeb508238_87ff_4519_a743_03be5196a83d);

/// EventCannotBeNull: `45a811d9-bdf7-4ee1-b9bc-3f248e761799`.
pub const EVENT_CANNOT_BE_NULL: Uuid = Uuid::from_u128(0x45a811d9_bdf7_4ee1_b9bc_3f248e761799);

/// AggregateRootVersionOutOfOrder: `eb51284e-c7b4-4966-8da4-64a862f07560`.
pub const AGGREGATE_ROOT_VERSION_OUT_OF_ORDER: Uuid =
    Uuid::from_u128(0xeb51284e_c7b4_4966_8da4_64a862f07560);

/// AggregateRootConcurrencyConflict: the expected aggregate root version is not the current one: `f25cccfb-3ae1-4969-bee6-906370ffbc2d`.
pub const AGGREGATE_ROOT_CONCURRENCY_CONFLICT: Uuid =
    Uuid::from_u128(0xf25cccfb_3ae1_4969_bee6_906370ffbc2d);

/// NoEventsToCommit: `ef3f1a42-9bc3-4d98-aa2a-942db7c56ac1`.
pub const NO_EVENTS_TO_COMMIT: Uuid = Uuid::from_u128(0xef3f1a42_9bc3_4d98_aa2a_942db7c56ac1);

// Event handlers.

/// NoEventHandlerRegistrationReceived: `209a79c7-824c-4988-928b-0dd517746ca0`.
pub const NO_EVENT_HANDLER_REGISTRATION_RECEIVED: Uuid =
    Uuid::from_u128(0x209a79c7_824c_4988_928b_0dd517746ca0);

/// CannotRegisterEventHandlerOnNonWriteableStream: `45b4c918-37a5-405c-9865-d032869b1d24`.
pub const CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM: Uuid =
    Uuid::from_u128(0x45b4c918_37a5_405c_9865_d032869b1d24);

/// FailedToRegisterEventHandler: `dbfdfa15-e727-49f6-bed8-7a787954a4c6`.
pub const FAILED_TO_REGISTER_EVENT_HANDLER: Uuid =
    Uuid::from_u128(0xdbfdfa15_e727_49f6_bed8_7a787954a4c6);

// Filters.

/// NoFilterRegistrationReceived: `d6060ba0-39bd-4815-8b0e-6b43b5f87bc5`.
pub const NO_FILTER_REGISTRATION_RECEIVED: Uuid =
    Uuid::from_u128(0xd6060ba0_39bd_4815_8b0e_6b43b5f87bc5);

/// CannotRegisterFilterOnNonWriteableStream: `2cdb6143-4f3d-49cb-bd58-68fd1376dab1`.
pub const CANNOT_REGISTER_FILTER_ON_NON_WRITEABLE_STREAM: Uuid =
    Uuid::from_u128(0x2cdb6143_4f3d_49cb_bd58_68fd1376dab1);

/// FailedToRegisterFilter: `f0480899-8aed-4191-b339-5121f4d9f2e2`.
pub const FAILED_TO_REGISTER_FILTER: Uuid = Uuid::from_u128(0xf0480899_8aed_4191_b339_5121f4d9f2e2);

// Projections.

/// NoProjectionRegistrationReceived: `1547a083-6a6e-4c49-886d-6852c029b252`.
pub const NO_PROJECTION_REGISTRATION_RECEIVED: Uuid =
    Uuid::from_u128(0x1547a083_6a6e_4c49_886d_6852c029b252);

/// FailedToRegisterProjection: `eb82f4d3-06e5-45cc-ac97-7d77dd1e5d07`.
pub const FAILED_TO_REGISTER_PROJECTION: Uuid =
    Uuid::from_u128(0xeb82f4d3_06e5_45cc_ac97_7d77dd1e5d07);

// Projection store.

/// FailedToGetProjectionDefinition: `0cbd47f6-50b4-4488-afc3-6ba6b02b0dbd`.
pub const FAILED_TO_GET_PROJECTION_DEFINITION: Uuid =
    Uuid::from_u128(0x0cbd47f6_50b4_4488_afc3_6ba6b02b0dbd);

// Embeddings.

/// NoEmbeddingRegistrationReceived: `bda8fb78-1cbb-4b1b-962c-eb8f90087bb0`.
pub const NO_EMBEDDING_REGISTRATION_RECEIVED: Uuid =
    Uuid::from_u128(0xbda8fb78_1cbb_4b1b_962c_eb8f90087bb0);

/// NoEmbeddingRegisteredForTenant: `d76e5522-9bbd-4bb1-87df-b167e42acf02`.
pub const NO_EMBEDDING_REGISTERED_FOR_TENANT: Uuid =
    Uuid::from_u128(0xd76e5522_9bbd_4bb1_87df_b167e42acf02);

/// FailedToRegisterEmbedding: `77cd99ec-9939-43ae-83dc-3c770ef65a4c`.
pub const FAILED_TO_REGISTER_EMBEDDING: Uuid =
    Uuid::from_u128(0x77cd99ec_9939_43ae_83dc_3c770ef65a4c);

/// FailedToUpdateEmbedding: `4f765146-c635-497a-a14b-b7f80d5cf875`.
pub const FAILED_TO_UPDATE_EMBEDDING: Uuid =
    Uuid::from_u128(0x4f765146_c635_497a_a14b_b7f80d5cf875);

/// FailedToDeleteEmbedding: `dcfba172-9348-4b2c-b518-17603798c0ec`.
pub const FAILED_TO_DELETE_EMBEDDING: Uuid =
    Uuid::from_u128(0xdcfba172_9348_4b2c_b518_17603798c0ec);

// Embedding store.

/// FailedToGetEmbeddingDefinition: `c76b3806-8b74-47b0-b169-5e3ff1f5265b`.
pub const FAILED_TO_GET_EMBEDDING_DEFINITION: Uuid =
    Uuid::from_u128(0xc76b3806_8b74_47b0_b169_5e3ff1f5265b);

// Event horizon, consumer side.

/// MissingMicroserviceConfiguration: `9b74482a-8eaa-47ab-ac1c-53d704e4e77d`.
pub const MISSING_MICROSERVICE_CONFIGURATION: Uuid =
    Uuid::from_u128(0x9b74482a_8eaa_47ab_ac1c_53d704e4e77d);

/// SubscriptionCancelled: `2ed211ce-7f9b-4a9f-ae9d-973bfe8aaf2b`.
pub const SUBSCRIPTION_CANCELLED: Uuid = Uuid::from_u128(0x2ed211ce_7f9b_4a9f_ae9d_973bfe8aaf2b);

/// CouldNotConnectToProducerRuntime: `2e6b926a-a213-4175-a597-df64aee4a497`.
pub const COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME: Uuid =
    Uuid::from_u128(0x2e6b926a_a213_4175_a597_df64aee4a497);

/// ErrorHandlingEvent: `af3ac513-0411-4e3e-adcf-581ef0227e67`.
pub const ERROR_HANDLING_EVENT: Uuid = Uuid::from_u128(0xaf3ac513_0411_4e3e_adcf_581ef0227e67);

// Event horizon, producer side.

/// MissingConsent: `be1ba4e6-81e3-49c4-bec2-6c7e262bfb77`.
pub const MISSING_CONSENT: Uuid = Uuid::from_u128(0xbe1ba4e6_81e3_49c4_bec2_6c7e262bfb77);

/// MissingSubscriptionArguments: `3f88dfb6-93d6-40d3-9d28-8be149f9e02d`.
pub const MISSING_SUBSCRIPTION_ARGUMENTS: Uuid =
    Uuid::from_u128(0x3f88dfb6_93d6_40d3_9d28_8be149f9e02d);

/// Every id of this module with its name, for lookups and tests.
pub const ALL: &[(&str, Uuid)] = &[
    ("OTHER", OTHER),
    ("UNKNOWN", UNKNOWN),
    ("EVENT_STORE_UNAVAILABLE", EVENT_STORE_UNAVAILABLE),
    (
        "EVENT_APPLIED_BY_OTHER_AGGREGATE_ROOT",
        EVENT_APPLIED_BY_OTHER_AGGREGATE_ROOT,
    ),
    (
        "EVENT_APPLIED_TO_OTHER_EVENT_SOURCE",
        EVENT_APPLIED_TO_OTHER_EVENT_SOURCE,
    ),
    (
        "EVENT_STORE_PERSISTENCE_ERROR",
        EVENT_STORE_PERSISTENCE_ERROR,
    ),
    (
        "EVENT_STORE_CONSISTENCY_ERROR",
        EVENT_STORE_CONSISTENCY_ERROR,
    ),
    (
        "EVENT_LOG_SEQUENCE_IS_OUT_OF_ORDER",
        EVENT_LOG_SEQUENCE_IS_OUT_OF_ORDER,
    ),
    ("EVENT_CANNOT_BE_NULL", EVENT_CANNOT_BE_NULL),
    (
        "AGGREGATE_ROOT_VERSION_OUT_OF_ORDER",
        AGGREGATE_ROOT_VERSION_OUT_OF_ORDER,
    ),
    (
        "AGGREGATE_ROOT_CONCURRENCY_CONFLICT",
        AGGREGATE_ROOT_CONCURRENCY_CONFLICT,
    ),
    ("NO_EVENTS_TO_COMMIT", NO_EVENTS_TO_COMMIT),
    (
        "NO_EVENT_HANDLER_REGISTRATION_RECEIVED",
        NO_EVENT_HANDLER_REGISTRATION_RECEIVED,
    ),
    (
        "CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM",
        CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM,
    ),
    (
        "FAILED_TO_REGISTER_EVENT_HANDLER",
        FAILED_TO_REGISTER_EVENT_HANDLER,
    ),
    (
        "NO_FILTER_REGISTRATION_RECEIVED",
        NO_FILTER_REGISTRATION_RECEIVED,
    ),
    (
        "CANNOT_REGISTER_FILTER_ON_NON_WRITEABLE_STREAM",
        CANNOT_REGISTER_FILTER_ON_NON_WRITEABLE_STREAM,
    ),
    ("FAILED_TO_REGISTER_FILTER", FAILED_TO_REGISTER_FILTER),
    (
        "NO_PROJECTION_REGISTRATION_RECEIVED",
        NO_PROJECTION_REGISTRATION_RECEIVED,
    ),
    (
        "FAILED_TO_REGISTER_PROJECTION",
        FAILED_TO_REGISTER_PROJECTION,
    ),
    (
        "FAILED_TO_GET_PROJECTION_DEFINITION",
        FAILED_TO_GET_PROJECTION_DEFINITION,
    ),
    (
        "NO_EMBEDDING_REGISTRATION_RECEIVED",
        NO_EMBEDDING_REGISTRATION_RECEIVED,
    ),
    (
        "NO_EMBEDDING_REGISTERED_FOR_TENANT",
        NO_EMBEDDING_REGISTERED_FOR_TENANT,
    ),
    ("FAILED_TO_REGISTER_EMBEDDING", FAILED_TO_REGISTER_EMBEDDING),
    ("FAILED_TO_UPDATE_EMBEDDING", FAILED_TO_UPDATE_EMBEDDING),
    ("FAILED_TO_DELETE_EMBEDDING", FAILED_TO_DELETE_EMBEDDING),
    (
        "FAILED_TO_GET_EMBEDDING_DEFINITION",
        FAILED_TO_GET_EMBEDDING_DEFINITION,
    ),
    (
        "MISSING_MICROSERVICE_CONFIGURATION",
        MISSING_MICROSERVICE_CONFIGURATION,
    ),
    ("SUBSCRIPTION_CANCELLED", SUBSCRIPTION_CANCELLED),
    (
        "COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME",
        COULD_NOT_CONNECT_TO_PRODUCER_RUNTIME,
    ),
    ("ERROR_HANDLING_EVENT", ERROR_HANDLING_EVENT),
    ("MISSING_CONSENT", MISSING_CONSENT),
    (
        "MISSING_SUBSCRIPTION_ARGUMENTS",
        MISSING_SUBSCRIPTION_ARGUMENTS,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_print_as_documented() {
        let mut seen = std::collections::HashSet::new();
        for (name, id) in ALL {
            assert!(seen.insert(*id), "{name} is not unique");
        }
        assert_eq!(ALL.len(), 33);
        assert_eq!(
            AGGREGATE_ROOT_CONCURRENCY_CONFLICT.to_string(),
            "f25cccfb-3ae1-4969-bee6-906370ffbc2d"
        );
        assert_eq!(
            NO_EVENTS_TO_COMMIT.to_string(),
            "ef3f1a42-9bc3-4d98-aa2a-942db7c56ac1"
        );
        assert_eq!(OTHER.to_string(), "05cc1d10-4efc-457b-84a6-a1be0a5f36ba");
    }
}
