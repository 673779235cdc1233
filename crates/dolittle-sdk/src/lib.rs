//! The Rust SDK for Dolittle heads: commit events, run aggregates, handle events, filter them
//! into streams and keep projections, against a Dolittle Runtime over the same gRPC contracts
//! as the official SDKs.
//!
//! * [`Client`]: built with [`Client::builder`], connects (with backoff) to the Runtime and
//!   hands out per-tenant handles: [`Client::event_store`], [`Client::aggregate_of`],
//!   [`Client::projections`].
//! * Event types: serde types with `#[derive(EventType)]` and
//!   `#[event_type(id = "<guid>", generation = 1)]`; sets of them with `#[derive(Events)]` on an
//!   enum.
//! * [`EventStore`]: commit one event, a batch, public events; event source ids are any string.
//! * [`AggregateRoot`] and [`AggregateOf::perform`]: rehydrate, run a command, commit with the
//!   expected version, retry on a concurrency conflict, and report a lasting conflict as
//!   [`Error::ConcurrencyConflict`].
//! * [`EventHandler`], [`Filter`] and [`Projection`]: event processors on reverse calls that
//!   reconnect with backoff and close gracefully on [`Client::shutdown`].
//! * Event horizon: subscribe a tenant to another microservice's public stream, into a scope,
//!   declared on the builder ([`ClientBuilder::event_horizons`], with success and failure
//!   callbacks and a [`SubscriptionHandle`] per subscription) or with one call
//!   ([`EventHorizon::subscribe`]).
//! * Feature `in-process`: `ClientBuilder::start_in_process` runs a Runtime inside the same
//!   process, on the embedded store (with `ClientBuilder::in_process_public_endpoint`, also its
//!   public endpoint for other microservices' Runtimes).
//!
//! Errors are values: every call returns [`Result`], and failures reported by the Runtime keep
//! its failure id and reason ([`Error::Runtime`]).
//!
//! # Quick start
//!
//! ```no_run
//! use dolittle_sdk::{
//!     Client, EventContext, EventHandler, EventHandlerOptions, EventType, HandledEvent,
//!     HandlerError,
//! };
//! use dolittle_sdk::types::{EventProcessorId, TenantId, Uuid};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, EventType)]
//! #[event_type(id = "1844473f-d714-4327-8b7f-5b3c2bdfc26a")]
//! struct DishPrepared {
//!     dish: String,
//!     chef: String,
//! }
//!
//! struct Announcer;
//!
//! impl EventHandler for Announcer {
//!     type Events = DishPrepared;
//!
//!     async fn handle(
//!         &self,
//!         event: HandledEvent<DishPrepared>,
//!         context: EventContext,
//!     ) -> Result<(), HandlerError> {
//!         if let HandledEvent::Known(dish) = event {
//!             println!("{} prepared {} in {}", dish.chef, dish.dish, context.event_source);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn quick_start() -> dolittle_sdk::Result<()> {
//! let client = Client::builder()
//!     .microservice(Uuid::from_u128(0xf39b1f61_d360_4675_b859_53c05c87c0e6))
//!     .runtime("http://127.0.0.1:50053")
//!     .version(1, 0, 0)
//!     .environment("Development")
//!     .connect()
//!     .await?;
//!
//! let handler = client.register_event_handler(
//!     EventHandlerOptions::new(Uuid::from_u128(0xf2d366cf_c00a_4479_acc4_851e04b6fbba)),
//!     Announcer,
//! );
//! handler.registered().await?;
//!
//! let dish = DishPrepared { dish: "Bean Blaster Taco".into(), chef: "Mr. Taco".into() };
//! client.event_store(TenantId::DEVELOPMENT).commit(&dish, "kitchen-1").await?;
//!
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod aggregates;
pub mod client;
pub mod error;
pub mod event_handlers;
pub mod event_horizon;
pub mod event_store;
pub mod event_types;
pub mod filters;
#[cfg(feature = "in-process")]
mod in_process;
pub mod processing;
pub mod projections;

pub use aggregates::{AggregateError, AggregateOf, AggregateRoot, Applied};
pub use client::{Backoff, Client, ClientBuilder, DEFAULT_RUNTIME_ADDRESS};
pub use error::{Error, Result};
pub use event_handlers::{EventContext, EventHandler, EventHandlerOptions};
pub use event_horizon::{
    EventHorizon, EventHorizons, Subscription, SubscriptionFailure, SubscriptionHandle,
    SubscriptionState,
};
pub use event_store::{EventStore, uncommitted};
pub use event_types::{EventType, Events, HandledEvent};
pub use filters::{Decision, Filter, FilterContext, FilterOptions};
pub use processing::{HandlerError, ProcessorHandle, ProcessorState};
pub use projections::{KeySelector, Outcome, Projection, ProjectionContext, ProjectionStore};

/// `#[derive(EventType)]` and `#[derive(Events)]`.
pub use dolittle_sdk_macros::{EventType, Events};

/// The domain types: tenants, event sources, event types, committed events, ...
pub use dolittle_types as types;

/// The `uuid!` macro, for constant ids: `AggregateRootId(uuid!("..."))`.
pub use uuid::uuid;

#[doc(hidden)]
pub use serde_json;
