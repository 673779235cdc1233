//! The Dolittle Runtime: the server that heads connect to.
//!
//! [`run`] serves the private gRPC endpoint (everything heads call), the public one (the event
//! horizon) and the metrics port, on listeners it is given, until a shutdown future resolves.
//! Configuration ([`config`]) and tenancy ([`tenants`]) are prepared by the caller, usually
//! `main.rs`, so that tests can start a whole Runtime on port 0 in-process.

pub mod config;
pub mod event_horizon;
pub mod failures;
pub mod management;
pub mod metrics;
pub mod processing;
pub mod reverse_calls;
pub mod services;
pub mod tenants;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::RuntimeConfig;
use crate::metrics::Metrics;
use crate::processing::ProcessorRegistry;
use crate::tenants::Tenants;

/// What every service of the Runtime shares.
#[derive(Clone)]
pub struct RuntimeContext {
    pub config: Arc<RuntimeConfig>,
    pub tenants: Tenants,
    pub metrics: Arc<Metrics>,
    pub processors: Arc<ProcessorRegistry>,
    /// Consents in force and the running event-horizon subscriptions.
    pub event_horizon: Arc<event_horizon::EventHorizon>,
    /// Cancelled when the Runtime shuts down: every processor and reverse call stops.
    pub shutdown: CancellationToken,
}

impl RuntimeContext {
    pub fn new(config: RuntimeConfig, tenants: Tenants) -> Self {
        let event_horizon = Arc::new(event_horizon::EventHorizon::new(config.consents.clone()));
        Self {
            event_horizon,
            config: Arc::new(config),
            tenants,
            metrics: Arc::new(Metrics::new()),
            processors: Arc::new(ProcessorRegistry::default()),
            shutdown: CancellationToken::new(),
        }
    }
}

/// The sockets the Runtime serves on, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub private: TcpListener,
    pub public: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
    /// The management API and dashboard ([`management`]).
    pub management: Option<TcpListener>,
}

/// Why the Runtime stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the {endpoint} gRPC endpoint failed: {source}")]
    Grpc {
        endpoint: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the metrics endpoint failed: {0}")]
    Metrics(#[source] std::io::Error),
    #[error("the management endpoint failed: {0}")]
    Management(#[source] std::io::Error),
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight calls finish, stops
/// every processor and returns.
pub async fn run(
    context: RuntimeContext,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let token = context.shutdown.clone();
    // The stores were opened before the context was made: from here on the Runtime is ready.
    context.metrics.set_ready();
    tokio::spawn({
        let token = token.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            token.cancel();
        }
    });

    event_horizon::start(&context);
    let private = {
        let router = services::private_router(&context);
        let token = token.clone();
        let incoming = without_delay(listeners.private);
        async move {
            router
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await
                .map_err(|source| RunError::Grpc {
                    endpoint: "private",
                    source,
                })
        }
    };
    let public = {
        let token = token.clone();
        let listener = listeners.public;
        let router = services::public_router(&context);
        async move {
            match listener {
                Some(listener) => router
                    .serve_with_incoming_shutdown(without_delay(listener), token.cancelled_owned())
                    .await
                    .map_err(|source| RunError::Grpc {
                        endpoint: "public",
                        source,
                    }),
                None => Ok(()),
            }
        }
    };
    let metrics = {
        let token = token.clone();
        let listener = listeners.metrics;
        let processors = context.clone();
        let router = metrics::router_with(context.metrics.clone(), move || {
            management::prometheus::render(&processors)
        });
        async move {
            match listener {
                Some(listener) => axum::serve(listener, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
                    .map_err(RunError::Metrics),
                None => Ok(()),
            }
        }
    };
    let management = {
        let token = token.clone();
        let listener = listeners.management;
        let router = management::router(context.clone());
        async move {
            match listener {
                Some(listener) => axum::serve(listener, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
                    .map_err(RunError::Management),
                None => Ok(()),
            }
        }
    };
    let result = tokio::try_join!(private, public, metrics, management).map(|_| ());
    token.cancel();
    context.processors.wait_until_stopped().await;
    result
}

/// The connections a listener accepts, with Nagle's algorithm off. tonic's own `tcp_nodelay`
/// applies only to listeners it binds itself; without it, a response larger than one segment
/// waits for the peer's delayed acknowledgement (about 40 ms) on every call.
fn without_delay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot turn Nagle's algorithm off for a connection");
            }
        })
    })
}
