//! The Dolittle gRPC contracts, wire-compatible with Dolittle contracts 5.4.0 (Fundamentals
//! and Runtime), and the conversions between those wire messages and `dolittle-types`.
//!
//! The `.proto` files live in `proto/` with Dolittle's file layout and package names, so every
//! HTTP/2 path (`/dolittle.runtime.events.EventStore/Commit`, ...) is exactly Dolittle's.
//! `build.rs` compiles them with `protox` and generates prost messages and tonic clients and
//! servers.
//!
//! # Module paths
//!
//! Each protobuf package `dolittle.X.Y` is the module `dolittle_contracts::X::Y` (the leading
//! `dolittle` is dropped):
//!
//! | package | module |
//! |---|---|
//! | `dolittle.protobuf` | [`protobuf`] (`Uuid`, `Failure`) |
//! | `dolittle.artifacts` | [`artifacts`] |
//! | `dolittle.versioning` | [`versioning`] |
//! | `dolittle.security` | [`security`] |
//! | `dolittle.execution` | [`execution`] |
//! | `dolittle.services` | [`services`] (call contexts, `Ping`, `Pong`) |
//! | `dolittle.runtime.events` | [`runtime::events`] |
//! | `dolittle.runtime.events.processing` | [`runtime::events::processing`] |
//! | `dolittle.runtime.projections` | [`runtime::projections`] |
//! | `dolittle.runtime.eventhorizon` | [`runtime::eventhorizon`] |
//! | `dolittle.runtime.embeddings` | [`runtime::embeddings`] |
//!
//! A service `S` of a package has a client in `<package>::s_client::SClient` and a server
//! trait and wrapper in `<package>::s_server::{S, SServer}`, for example
//! `runtime::events::event_store_client::EventStoreClient` and
//! `runtime::events::event_store_server::{EventStore, EventStoreServer}`. Nested messages and
//! oneofs live in a snake_case module named after their message, for example
//! `runtime::events::processing::event_handler_runtime_to_client_message::Message`.
//! `google.protobuf.Timestamp` and `Duration` are [`prost_types`]' types.
//!
//! Clients are built on a channel with `SClient::new(channel)`. The `connect(endpoint)`
//! constructor is not generated: the reverse-call services have an rpc named `Connect`, and
//! the two would clash.
//!
//! # String ids
//!
//! Contracts 5.4.0 carry event source ids and partition ids as Uuids; the concepts allow any
//! string. The messages that carry them have an extra `optional string` field numbered 100
//! (`eventSourceIdString`, `partitionIdString`); [`convert`] applies the rules, documented at
//! the top of `proto/Runtime/Events/Uncommitted.proto` and on [`convert::STRING_ID_NAMESPACE`].
//!
//! # Conversions
//!
//! Protobuf stays at the edge: [`convert`] turns wire messages into domain types (and back),
//! and reports a [`convert::ConversionError`] naming the field that was wrong. [`failure_ids`]
//! holds the well-known failure ids.

pub mod convert;
pub mod failure_ids;

pub use convert::{ConversionError, failure};

// Generated code: the oneof enums keep prost's unboxed variants (boxing would change the
// API every user of the messages sees), so the lint about variant sizes is off there.

/// `dolittle.protobuf`: Uuid and Failure.
#[allow(clippy::large_enum_variant)]
pub mod protobuf {
    include!(concat!(env!("OUT_DIR"), "/dolittle.protobuf.rs"));
}

/// `dolittle.artifacts`: Artifact.
#[allow(clippy::large_enum_variant)]
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/dolittle.artifacts.rs"));
}

/// `dolittle.versioning`: Version.
#[allow(clippy::large_enum_variant)]
pub mod versioning {
    include!(concat!(env!("OUT_DIR"), "/dolittle.versioning.rs"));
}

/// `dolittle.security`: Claim.
#[allow(clippy::large_enum_variant)]
pub mod security {
    include!(concat!(env!("OUT_DIR"), "/dolittle.security.rs"));
}

/// `dolittle.execution`: ExecutionContext.
#[allow(clippy::large_enum_variant)]
pub mod execution {
    include!(concat!(env!("OUT_DIR"), "/dolittle.execution.rs"));
}

/// `dolittle.services`: call contexts of unary and reverse calls, Ping and Pong.
#[allow(clippy::large_enum_variant)]
pub mod services {
    include!(concat!(env!("OUT_DIR"), "/dolittle.services.rs"));
}

/// `dolittle.runtime.*`: the services of the Runtime.
pub mod runtime {
    /// `dolittle.runtime.events`: the event store.
    #[allow(clippy::large_enum_variant)]
    pub mod events {
        include!(concat!(env!("OUT_DIR"), "/dolittle.runtime.events.rs"));

        /// `dolittle.runtime.events.processing`: event handlers, filters, projections.
        pub mod processing {
            include!(concat!(
                env!("OUT_DIR"),
                "/dolittle.runtime.events.processing.rs"
            ));
        }
    }

    /// `dolittle.runtime.projections`: projection state and the projection store.
    #[allow(clippy::large_enum_variant)]
    pub mod projections {
        include!(concat!(env!("OUT_DIR"), "/dolittle.runtime.projections.rs"));
    }

    /// `dolittle.runtime.eventhorizon`: subscriptions and the runtime-to-runtime consumer.
    #[allow(clippy::large_enum_variant)]
    pub mod eventhorizon {
        include!(concat!(
            env!("OUT_DIR"),
            "/dolittle.runtime.eventhorizon.rs"
        ));
    }

    /// `dolittle.runtime.embeddings`: embeddings and the embedding store.
    #[allow(clippy::large_enum_variant)]
    pub mod embeddings {
        include!(concat!(env!("OUT_DIR"), "/dolittle.runtime.embeddings.rs"));
    }
}

#[cfg(test)]
mod tests {
    use super::runtime::{embeddings, eventhorizon, events, projections};

    /// The service names make the HTTP/2 paths (`/<service>/<method>`) that heads call.
    #[test]
    fn services_have_dolittles_package_qualified_names() {
        let names = [
            events::event_store_server::SERVICE_NAME,
            events::processing::event_handlers_server::SERVICE_NAME,
            events::processing::filters_server::SERVICE_NAME,
            events::processing::projections_server::SERVICE_NAME,
            events::processing::processors_server::SERVICE_NAME,
            projections::projections_server::SERVICE_NAME,
            eventhorizon::subscriptions_server::SERVICE_NAME,
            eventhorizon::consumer_server::SERVICE_NAME,
            embeddings::embeddings_server::SERVICE_NAME,
            embeddings::embedding_store_server::SERVICE_NAME,
        ];
        assert_eq!(
            names,
            [
                "dolittle.runtime.events.EventStore",
                "dolittle.runtime.events.processing.EventHandlers",
                "dolittle.runtime.events.processing.Filters",
                "dolittle.runtime.events.processing.Projections",
                "dolittle.runtime.events.processing.Processors",
                "dolittle.runtime.projections.Projections",
                "dolittle.runtime.eventhorizon.Subscriptions",
                "dolittle.runtime.eventhorizon.Consumer",
                "dolittle.runtime.embeddings.Embeddings",
                "dolittle.runtime.embeddings.EmbeddingStore",
            ]
        );
    }
}
