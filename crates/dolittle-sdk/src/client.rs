//! The client: the one connection of a head to its Runtime, built with [`Client::builder`].
//!
//! The client holds a gRPC channel (which reconnects on its own after the first connection),
//! the microservice's identity that goes into every execution context, and the tasks of the
//! event processors it registered and of the event horizon subscriptions declared on its
//! builder. Per-tenant handles ([`Client::event_store`],
//! [`Client::projections`], [`Client::aggregate_of`]) are cheap clones. [`Client::shutdown`]
//! closes every reverse call and waits for the in-flight events to be answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolittle_types::{
    CorrelationId, EventSourceId, ExecutionContext, MicroserviceId, TenantId, Version,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};

use crate::aggregates::{AggregateOf, AggregateRoot};
use crate::error::{Error, Result};
use crate::event_handlers::{EventHandler, EventHandlerOptions};
use crate::event_horizon::{DeclaredSubscription, EventHorizons, SubscriptionHandle};
use crate::event_store::EventStore;
use crate::filters::{Filter, FilterOptions};
use crate::processing::ProcessorHandle;
use crate::projections::{Projection, ProjectionStore};

/// The address the official SDKs and the Runtime use by default.
pub const DEFAULT_RUNTIME_ADDRESS: &str = "http://127.0.0.1:50053";

/// Delays that grow by doubling from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Doubling delays from `initial` to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before attempt `attempt + 1` (0 gives `initial`).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(10))
    }
}

/// Builds a [`Client`]: the microservice, the Runtime address, version and environment.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    microservice: MicroserviceId,
    runtime: String,
    version: Version,
    environment: String,
    connect_attempts: u32,
    backoff: Backoff,
    event_horizons: Vec<DeclaredSubscription>,
    #[cfg(feature = "in-process")]
    in_process_public_endpoint: Option<String>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            microservice: MicroserviceId::NIL,
            runtime: DEFAULT_RUNTIME_ADDRESS.to_owned(),
            version: Version::default(),
            environment: "Development".to_owned(),
            connect_attempts: 10,
            backoff: Backoff::default(),
            event_horizons: Vec::new(),
            #[cfg(feature = "in-process")]
            in_process_public_endpoint: None,
        }
    }
}

impl ClientBuilder {
    /// The microservice this head belongs to (the empty GUID if not set).
    pub fn microservice(mut self, microservice: impl Into<MicroserviceId>) -> Self {
        self.microservice = microservice.into();
        self
    }

    /// The Runtime's private endpoint, like `http://127.0.0.1:50053` (the default).
    pub fn runtime(mut self, address: impl Into<String>) -> Self {
        self.runtime = address.into();
        self
    }

    /// The version of the microservice, sent in every execution context.
    pub fn version(mut self, major: i32, minor: i32, patch: i32) -> Self {
        self.version = Version {
            major,
            minor,
            patch,
            ..Version::default()
        };
        self
    }

    /// The environment, sent in every execution context (`Development` by default).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// How many times [`ClientBuilder::connect`] tries before it gives up (10 by default).
    pub fn connect_attempts(mut self, attempts: u32) -> Self {
        self.connect_attempts = attempts.max(1);
        self
    }

    /// The delays between connection attempts and between reconnections of event processors.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Declares event horizon subscriptions, like the official SDKs' `withEventHorizons`:
    ///
    /// ```no_run
    /// # use dolittle_sdk::Client;
    /// # use dolittle_sdk::types::{MicroserviceId, ScopeId, StreamId, TenantId, Uuid};
    /// # async fn example() -> dolittle_sdk::Result<()> {
    /// # let producer = MicroserviceId(Uuid::from_u128(1));
    /// # let public_stream = StreamId(Uuid::from_u128(2));
    /// # let scope = ScopeId(Uuid::from_u128(3));
    /// let client = Client::builder()
    ///     .event_horizons(|horizons| {
    ///         horizons.for_tenant(TenantId::DEVELOPMENT, |subscriptions| {
    ///             subscriptions
    ///                 .from_producer_microservice(producer)
    ///                 .from_producer_tenant(TenantId::DEVELOPMENT)
    ///                 .from_producer_stream(public_stream)
    ///                 .from_producer_partition("orders")
    ///                 .to_scope(scope)
    ///                 .on_success(|tenant, subscription, consent| {
    ///                     println!("{tenant} subscribed to {subscription:?} with consent {consent}");
    ///                 })
    ///                 .on_failure(|tenant, _, failure| {
    ///                     eprintln!("{tenant}: {:?} {}", failure.failure_id, failure.reason);
    ///                 })
    ///         })
    ///     })
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`ClientBuilder::connect`] returns without waiting for them: each is asked for in the
    /// background until the Runtime accepts it (asking again after the [`ClientBuilder::backoff`]
    /// delays while it refuses), and every outcome goes to its callbacks and its
    /// [`SubscriptionHandle`] ([`Client::event_horizon_subscriptions`]). Calling this again adds
    /// more subscriptions.
    pub fn event_horizons(mut self, declare: impl FnOnce(EventHorizons) -> EventHorizons) -> Self {
        self.event_horizons
            .extend(declare(EventHorizons::default()).into_declared());
        self
    }

    /// Also opens the in-process Runtime's public endpoint (the one other microservices'
    /// Runtimes subscribe to over the event horizon) on `address`, like `127.0.0.1:0` for a free
    /// loopback port; read the address it got from [`Client::in_process_public_address`].
    /// Without it the in-process Runtime has only its private endpoint.
    #[cfg(feature = "in-process")]
    pub fn in_process_public_endpoint(mut self, address: impl Into<String>) -> Self {
        self.in_process_public_endpoint = Some(address.into());
        self
    }

    /// Connects to the Runtime, retrying with backoff, and starts the event horizon
    /// subscriptions declared with [`ClientBuilder::event_horizons`].
    pub async fn connect(self) -> Result<Client> {
        let endpoint = Endpoint::from_shared(self.runtime.clone())
            .map_err(|error| Error::InvalidAddress {
                address: self.runtime.clone(),
                reason: error.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let mut attempt = 0;
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(source) => {
                    attempt += 1;
                    if attempt >= self.connect_attempts {
                        return Err(Error::Connect {
                            address: self.runtime,
                            attempts: attempt,
                            source,
                        });
                    }
                    let delay = self.backoff.delay(attempt - 1);
                    tracing::debug!(address = %self.runtime, attempt, ?delay, "runtime not reachable yet");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        tracing::info!(address = %self.runtime, microservice = %self.microservice, "connected to the runtime");
        let (senders, handles): (Vec<_>, Vec<_>) = self
            .event_horizons
            .iter()
            .map(crate::event_horizon::prepare)
            .unzip();
        let client = Client {
            inner: Arc::new(Inner {
                channel,
                address: self.runtime,
                microservice: self.microservice,
                version: self.version,
                environment: self.environment,
                backoff: self.backoff,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                on_shutdown: Mutex::new(Vec::new()),
                event_horizon_subscriptions: handles,
                #[cfg(feature = "in-process")]
                in_process_public_address: std::sync::OnceLock::new(),
            }),
        };
        for (declared, state) in self.event_horizons.into_iter().zip(senders) {
            client.tasks().spawn(crate::event_horizon::keep_subscribing(
                client.clone(),
                declared,
                state,
            ));
        }
        Ok(client)
    }

    /// Starts a Runtime inside this process on the embedded store in `working_dir` (its
    /// `.dolittle/` configuration is read from there, and written with the given tenants when
    /// there is none), then connects to it. [`Client::shutdown`] stops that Runtime too.
    #[cfg(feature = "in-process")]
    pub async fn start_in_process(
        self,
        working_dir: impl AsRef<std::path::Path>,
        tenants: &[TenantId],
    ) -> Result<Client> {
        let runtime = crate::in_process::InProcessRuntime::start(
            working_dir.as_ref(),
            self.microservice,
            tenants,
            self.in_process_public_endpoint.as_deref(),
        )
        .await?;
        let address = format!("http://{}", runtime.address());
        let public_address = runtime.public_address();
        let client = self.runtime(address).connect().await;
        match client {
            Ok(client) => {
                if let Some(public_address) = public_address {
                    let _ = client.inner.in_process_public_address.set(public_address);
                }
                client.on_shutdown(Box::new(move || Box::pin(runtime.stop())));
                Ok(client)
            }
            Err(error) => {
                runtime.stop().await;
                Err(error)
            }
        }
    }
}

type ShutdownAction =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

struct Inner {
    channel: Channel,
    address: String,
    microservice: MicroserviceId,
    version: Version,
    environment: String,
    backoff: Backoff,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    on_shutdown: Mutex<Vec<ShutdownAction>>,
    event_horizon_subscriptions: Vec<SubscriptionHandle>,
    #[cfg(feature = "in-process")]
    in_process_public_address: std::sync::OnceLock<std::net::SocketAddr>,
}

/// A head's connection to its Runtime. Cheap to clone; every clone is the same client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("runtime", &self.inner.address)
            .field("microservice", &self.inner.microservice)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the defaults: Runtime at [`DEFAULT_RUNTIME_ADDRESS`], microservice and
    /// version empty, environment `Development`.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The Runtime address this client talks to.
    pub fn runtime_address(&self) -> &str {
        &self.inner.address
    }

    /// The microservice of this head.
    pub fn microservice(&self) -> MicroserviceId {
        self.inner.microservice
    }

    /// The event store of a tenant.
    pub fn event_store(&self, tenant: TenantId) -> EventStore {
        EventStore::new(self.clone(), tenant)
    }

    /// The event horizon subscriptions of a consumer tenant.
    pub fn event_horizon(&self, tenant: TenantId) -> crate::event_horizon::EventHorizon {
        crate::event_horizon::EventHorizon::new(self.clone(), tenant)
    }

    /// The event horizon subscriptions declared with [`ClientBuilder::event_horizons`], in the
    /// order they were declared: where each stands, and a way to wait for it.
    pub fn event_horizon_subscriptions(&self) -> &[SubscriptionHandle] {
        &self.inner.event_horizon_subscriptions
    }

    /// The address of the in-process Runtime's public endpoint, when it was started with
    /// [`ClientBuilder::in_process_public_endpoint`].
    #[cfg(feature = "in-process")]
    pub fn in_process_public_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.in_process_public_address.get().copied()
    }

    /// The projection store of a tenant: the read models of projections.
    pub fn projections(&self, tenant: TenantId) -> ProjectionStore {
        ProjectionStore::new(self.clone(), tenant)
    }

    /// One instance of an aggregate root of a tenant, on which commands are performed.
    pub fn aggregate_of<R: AggregateRoot>(
        &self,
        tenant: TenantId,
        event_source: impl Into<EventSourceId>,
    ) -> AggregateOf<R> {
        AggregateOf::new(self.event_store(tenant), event_source.into())
    }

    /// Registers an event handler and keeps it connected (reconnecting with backoff) until
    /// [`Client::shutdown`]. The handle tells when the Runtime has accepted it.
    pub fn register_event_handler<H: EventHandler>(
        &self,
        options: EventHandlerOptions,
        handler: H,
    ) -> ProcessorHandle {
        crate::event_handlers::spawn(self, options, handler)
    }

    /// Registers a filter (private unpartitioned, private partitioned or public, as the options
    /// say) and keeps it connected until [`Client::shutdown`].
    pub fn register_filter<F: Filter>(&self, options: FilterOptions, filter: F) -> ProcessorHandle {
        crate::filters::spawn(self, options, filter)
    }

    /// Registers a projection and keeps it connected until [`Client::shutdown`].
    pub fn register_projection<P: Projection>(&self) -> ProcessorHandle {
        crate::projections::spawn::<P>(self)
    }

    /// Closes every reverse call after the events in flight are answered, waits for the event
    /// processors to stop, and stops an in-process Runtime. Calls made afterwards fail with
    /// [`Error::ShutDown`].
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let actions = match self.inner.on_shutdown.lock() {
            Ok(mut actions) => std::mem::take(&mut *actions),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for action in actions {
            action().await;
        }
    }

    /// Whether [`Client::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub(crate) fn channel(&self) -> Result<Channel> {
        if self.is_shut_down() {
            return Err(Error::ShutDown);
        }
        Ok(self.inner.channel.clone())
    }

    pub(crate) fn backoff(&self) -> Backoff {
        self.inner.backoff
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    #[cfg(feature = "in-process")]
    fn on_shutdown(&self, action: ShutdownAction) {
        match self.inner.on_shutdown.lock() {
            Ok(mut actions) => actions.push(action),
            Err(poisoned) => poisoned.into_inner().push(action),
        }
    }

    /// The execution context of a call for a tenant, with a fresh correlation id.
    pub(crate) fn execution_context(&self, tenant: TenantId) -> ExecutionContext {
        ExecutionContext {
            microservice: self.inner.microservice,
            tenant,
            version: self.inner.version.clone(),
            correlation: CorrelationId::new_random(),
            claims: Vec::new(),
            environment: self.inner.environment.clone(),
        }
    }

    /// The call context of a unary call for a tenant.
    pub(crate) fn call_context(
        &self,
        tenant: TenantId,
    ) -> dolittle_contracts::services::CallRequestContext {
        dolittle_contracts::services::CallRequestContext {
            execution_context: Some(self.execution_context(tenant).into()),
            head_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|attempt| backoff.delay(attempt)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
