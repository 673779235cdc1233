//! Two (or more) Runtimes on loopback for event-horizon tests: each with its own working
//! folder, `.dolittle/*.json` files, embedded stores, private and public endpoints. A Runtime
//! runs in-process ([`Node`]) or as the real `dolittle-runtime` binary ([`Process`]). Heads are
//! played by small tasks speaking the raw contracts: a public filter that puts every public
//! event into its stream partitioned by event source, and an event handler that reports what
//! it is sent.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dolittle_contracts::execution;
use dolittle_contracts::runtime::eventhorizon::SubscriptionResponse;
use dolittle_contracts::runtime::eventhorizon::subscriptions_client::SubscriptionsClient;
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_contracts::runtime::events::processing::event_handler_client_to_runtime_message::Message as ToRuntimeFromHandler;
use dolittle_contracts::runtime::events::processing::event_handler_runtime_to_client_message::Message as FromRuntimeToHandler;
use dolittle_contracts::runtime::events::processing::event_handlers_client::EventHandlersClient;
use dolittle_contracts::runtime::events::processing::filter_runtime_to_client_message::Message as FromRuntimeToFilter;
use dolittle_contracts::runtime::events::processing::filters_client::FiltersClient;
use dolittle_contracts::runtime::events::processing::public_filter_client_to_runtime_message::Message as ToRuntimeFromFilter;
use dolittle_contracts::runtime::events::processing::{
    EventHandlerClientToRuntimeMessage, EventHandlerRegistrationRequest, EventHandlerResponse,
    PartitionedFilterResponse, PublicFilterClientToRuntimeMessage, PublicFilterRegistrationRequest,
};
use dolittle_contracts::runtime::events::{CommitEventsRequest, UncommittedEvent};
use dolittle_contracts::services::{
    CallRequestContext, Pong, ReverseCallArgumentsContext, ReverseCallResponseContext,
};
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_store::{LogFilter, SharedEventStore, StreamEvent, SubscriptionKey};
use dolittle_types::{
    Claim, CommittedEvent, ConsentId, EventProcessorId, EventType, EventTypeId, ExecutionContext,
    MicroserviceId, PartitionId, ScopeId, StreamId, TenantId, Uuid,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const PRODUCER: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x1a2b3c4d_0000_4000_8000_00000000a001));
pub const CONSUMER: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x1a2b3c4d_0000_4000_8000_00000000b002));
pub const OTHER_TENANT: TenantId =
    TenantId(Uuid::from_u128(0x7a9d3e1c_5b2f_4c8e_9d1a_2f3b4c5d6e7f));
/// The producer's public filter, and so its public stream.
pub const PUBLIC_STREAM: StreamId =
    StreamId(Uuid::from_u128(0x5c0e7a11_0000_4000_8000_0000000000f1));
/// The consumer's scope the events go into.
pub const SCOPE: ScopeId = ScopeId(Uuid::from_u128(0x5c0e7a11_0000_4000_8000_0000000000c1));
pub const CONSENT: ConsentId = ConsentId(Uuid::from_u128(0xc0c0c0c0_0000_4000_8000_000000000001));
/// The partition the tests subscribe to (an event source, as the public filter partitions).
pub const PARTITION: &str = "7d3c1b2a-0000-4000-8000-00000000aaaa";
pub const OTHER_PARTITION: &str = "7d3c1b2a-0000-4000-8000-00000000bbbb";

pub fn event_type() -> EventType {
    EventType::new(EventTypeId(Uuid::from_u128(0xe7e7)), 1)
}

/// One consent line of `event-horizon-consents.json`.
#[derive(Clone)]
pub struct ConsentLine {
    pub producer_tenant: TenantId,
    pub consumer_microservice: MicroserviceId,
    pub consumer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: String,
    pub consent: ConsentId,
}

impl ConsentLine {
    /// The consent the tests use: the consumer's development tenant to [`PARTITION`].
    pub fn standard() -> Self {
        Self {
            producer_tenant: TenantId::DEVELOPMENT,
            consumer_microservice: CONSUMER,
            consumer_tenant: TenantId::DEVELOPMENT,
            stream: PUBLIC_STREAM,
            partition: PARTITION.to_owned(),
            consent: CONSENT,
        }
    }
}

/// Writes `event-horizon-consents.json` (replacing it atomically).
pub fn write_consents(working_dir: &Path, consents: &[ConsentLine]) {
    let mut map = serde_json::Map::new();
    for line in consents {
        let entry = map
            .entry(line.producer_tenant.to_string())
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({
                "microservice": line.consumer_microservice.to_string(),
                "tenant": line.consumer_tenant.to_string(),
                "stream": line.stream.to_string(),
                "partition": line.partition,
                "consent": line.consent.to_string(),
            }));
        }
    }
    let folder = working_dir.join(".dolittle");
    std::fs::create_dir_all(&folder).expect("create .dolittle");
    let temporary = folder.join("event-horizon-consents.json.tmp");
    std::fs::write(
        &temporary,
        serde_json::to_string_pretty(&map).expect("json"),
    )
    .expect("write consents");
    std::fs::rename(&temporary, folder.join("event-horizon-consents.json")).expect("rename");
}

/// The files of one microservice's Runtime.
pub struct Setup<'a> {
    pub tenants: &'a [TenantId],
    pub producers: &'a [(MicroserviceId, u16)],
    pub consents: &'a [ConsentLine],
}

pub fn write_files(working_dir: &Path, setup: &Setup<'_>) {
    let folder = working_dir.join(".dolittle");
    std::fs::create_dir_all(&folder).expect("create .dolittle");
    let tenants: serde_json::Map<String, serde_json::Value> = setup
        .tenants
        .iter()
        .map(|tenant| (tenant.to_string(), serde_json::json!({})))
        .collect();
    std::fs::write(
        folder.join("tenants.json"),
        serde_json::to_string(&tenants).expect("json"),
    )
    .expect("write tenants.json");
    let microservices: serde_json::Map<String, serde_json::Value> = setup
        .producers
        .iter()
        .map(|(id, port)| {
            (
                id.to_string(),
                serde_json::json!({"host": "127.0.0.1", "port": port}),
            )
        })
        .collect();
    std::fs::write(
        folder.join("microservices.json"),
        serde_json::to_string(&microservices).expect("json"),
    )
    .expect("write microservices.json");
    write_consents(working_dir, setup.consents);
}

/// A Runtime running in this process.
pub struct Node {
    pub microservice: MicroserviceId,
    pub private: SocketAddr,
    pub public: SocketAddr,
    pub working_dir: PathBuf,
    pub context: RuntimeContext,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Node {
    /// Starts a Runtime for `microservice` with its files in `working_dir`, its public
    /// endpoint on `public_port` (0: any free port).
    pub async fn start(
        working_dir: &Path,
        microservice: MicroserviceId,
        setup: &Setup<'_>,
        public_port: u16,
    ) -> Self {
        write_files(working_dir, setup);
        Self::restart(working_dir, microservice, public_port).await
    }

    /// Starts a Runtime on the files already in `working_dir`.
    pub async fn restart(
        working_dir: &Path,
        microservice: MicroserviceId,
        public_port: u16,
    ) -> Self {
        let config = RuntimeConfig::load(Overrides {
            working_dir: Some(working_dir.to_owned()),
            microservice: Some(microservice.to_string()),
            ..Overrides::default()
        })
        .expect("configuration loads");
        let tenants = Tenants::open(&config.tenants).await.expect("stores open");
        let private = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind private");
        let public = bind_retrying(public_port).await;
        let private_address = private.local_addr().expect("address");
        let public_address = public.local_addr().expect("address");
        let context = RuntimeContext::new(config, tenants);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let context = context.clone();
            async move {
                let listeners = Listeners {
                    private,
                    public: Some(public),
                    metrics: None,
                    management: None,
                };
                dolittle_runtime::run(context, listeners, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("runtime runs");
            }
        });
        Self {
            microservice,
            private: private_address,
            public: public_address,
            working_dir: working_dir.to_owned(),
            context,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the Runtime and waits until it has closed its stores.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("runtime stops in time")
                .expect("runtime task");
        }
    }

    pub fn store(&self, tenant: TenantId) -> SharedEventStore {
        self.context.tenants.store(tenant).expect("tenant").clone()
    }

    pub async fn channel(&self) -> Channel {
        connect(self.private).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind_retrying(port: u16) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(error) if tries < 50 => {
                tries += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot bind port {port}: {error}"),
        }
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

pub async fn connect(address: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{address}")).expect("uri");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("cannot connect to {address}: {error}"),
        }
    }
}

/// An execution context of a head of `microservice` for `tenant`, carrying a claim (which must
/// never cross the horizon).
pub fn head_context(microservice: MicroserviceId, tenant: TenantId) -> ExecutionContext {
    ExecutionContext {
        microservice,
        tenant,
        correlation: dolittle_types::CorrelationId::new_random(),
        claims: vec![Claim {
            key: "secret".into(),
            value: "do not share".into(),
            value_type: "string".into(),
        }],
        environment: "Test".into(),
        ..ExecutionContext::default()
    }
}

pub fn call_context(microservice: MicroserviceId, tenant: TenantId) -> Option<CallRequestContext> {
    Some(CallRequestContext {
        execution_context: Some(execution::ExecutionContext::from(head_context(
            microservice,
            tenant,
        ))),
        head_id: None,
    })
}

/// An event of [`event_type`] for an event source, public or private.
pub fn event(event_source: &str, public: bool, n: u64) -> UncommittedEvent {
    dolittle_types::UncommittedEvent {
        event_source: event_source.into(),
        event_type: event_type(),
        public,
        content: format!("{{\"n\":{n}}}"),
    }
    .into()
}

/// Commits events and fails the test on any failure.
pub async fn commit(
    channel: Channel,
    microservice: MicroserviceId,
    tenant: TenantId,
    events: Vec<UncommittedEvent>,
) -> Vec<CommittedEvent> {
    let response = EventStoreClient::new(channel)
        .commit(CommitEventsRequest {
            call_context: call_context(microservice, tenant),
            events,
        })
        .await
        .expect("commit call")
        .into_inner();
    assert!(
        response.failure.is_none(),
        "commit failed: {:?}",
        response.failure
    );
    response
        .events
        .into_iter()
        .map(|event| CommittedEvent::try_from(event).expect("committed event converts"))
        .collect()
}

/// Asks a consumer Runtime, as a head would, to subscribe.
pub async fn subscribe(
    channel: Channel,
    consumer_tenant: TenantId,
    producer_tenant: TenantId,
    partition: &str,
) -> SubscriptionResponse {
    subscribe_to(
        channel,
        consumer_tenant,
        PRODUCER,
        producer_tenant,
        partition,
    )
    .await
}

pub async fn subscribe_to(
    channel: Channel,
    consumer_tenant: TenantId,
    producer: MicroserviceId,
    producer_tenant: TenantId,
    partition: &str,
) -> SubscriptionResponse {
    let (partition_guid, partition_text) =
        dolittle_contracts::convert::string_id_to_wire(partition);
    tokio::time::timeout(
        PATIENCE,
        SubscriptionsClient::new(channel).subscribe(
            dolittle_contracts::runtime::eventhorizon::Subscription {
                call_context: call_context(CONSUMER, consumer_tenant),
                microservice_id: Some(producer.into()),
                tenant_id: Some(producer_tenant.into()),
                stream_id: Some(PUBLIC_STREAM.into()),
                partition_id: Some(partition_guid),
                scope_id: Some(SCOPE.into()),
                partition_id_string: Some(partition_text),
            },
        ),
    )
    .await
    .expect("subscribe answers in time")
    .expect("subscribe call")
    .into_inner()
}

pub fn failure_id(response: &SubscriptionResponse) -> Option<Uuid> {
    response.failure.as_ref().map(|failure| {
        dolittle_contracts::convert::uuid_from_wire("id", failure.id.as_ref().expect("id"))
            .expect("16 bytes")
    })
}

pub fn subscription_key(partition: &str) -> SubscriptionKey {
    SubscriptionKey {
        producer_microservice: PRODUCER,
        producer_tenant: TenantId::DEVELOPMENT,
        stream: PUBLIC_STREAM,
        partition: PartitionId::from(partition),
        scope: SCOPE,
    }
}

/// Every event of a scope's log.
pub async fn read_scope(store: &SharedEventStore, scope: ScopeId) -> Vec<CommittedEvent> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page = store
            .read_log(scope, from, 10_000, &LogFilter::default())
            .await
            .expect("read log");
        let done = page.events.is_empty();
        events.extend(page.events);
        if done || page.next == from {
            return events;
        }
        from = page.next;
    }
}

/// Waits until a scope's log has at least `count` events, then returns them all.
pub async fn wait_for_scope(
    store: &SharedEventStore,
    scope: ScopeId,
    count: usize,
) -> Vec<CommittedEvent> {
    let mut length = store.watch_log(scope);
    tokio::time::timeout(PATIENCE, async {
        while (*length.borrow_and_update() as usize) < count {
            if length.changed().await.is_err() {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the scoped log did not reach {count} events in time (it has {})",
            *length.borrow()
        )
    });
    read_scope(store, scope).await
}

/// Every event of one partition of a public stream of the default scope.
pub async fn read_public_partition(store: &SharedEventStore, partition: &str) -> Vec<StreamEvent> {
    let partition = PartitionId::from(partition);
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page = store
            .read_stream(
                ScopeId::DEFAULT,
                PUBLIC_STREAM,
                from,
                Some(&partition),
                10_000,
            )
            .await
            .expect("read stream");
        let Some(last) = page.last() else {
            return events;
        };
        from = last.position + 1;
        events.extend(page);
    }
}

/// Waits until a public stream has at least `count` entries.
pub async fn wait_for_public_stream(store: &SharedEventStore, count: u64) {
    let mut length = store.watch_stream(ScopeId::DEFAULT, PUBLIC_STREAM);
    tokio::time::timeout(PATIENCE, async {
        while *length.borrow_and_update() < count {
            if length.changed().await.is_err() {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the public stream did not reach {count} entries in time"));
}

/// A head's public filter that includes every event, partitioned by event source. Aborted when
/// dropped.
pub struct PublicFilter {
    task: JoinHandle<()>,
}

impl Drop for PublicFilter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PublicFilter {
    pub async fn register(channel: Channel, microservice: MicroserviceId) -> Self {
        let (sender, receiver) = mpsc::channel(1024);
        sender
            .send(PublicFilterClientToRuntimeMessage {
                message: Some(ToRuntimeFromFilter::RegistrationRequest(
                    PublicFilterRegistrationRequest {
                        call_context: Some(arguments(microservice)),
                        filter_id: Some(PUBLIC_STREAM.into()),
                    },
                )),
            })
            .await
            .expect("queue registration");
        let mut incoming = FiltersClient::new(channel)
            .connect_public(ReceiverStream::new(receiver))
            .await
            .expect("connect public filter")
            .into_inner();
        let (registered, accepted) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut registered = Some(registered);
            while let Ok(Some(message)) = incoming.message().await {
                let reply = match message.message {
                    Some(FromRuntimeToFilter::RegistrationResponse(response)) => {
                        if let Some(registered) = registered.take() {
                            let _ = registered.send(response.failure);
                        }
                        continue;
                    }
                    Some(FromRuntimeToFilter::Ping(_)) => ToRuntimeFromFilter::Pong(Pong {}),
                    Some(FromRuntimeToFilter::FilterRequest(request)) => {
                        let event = CommittedEvent::try_from(request.event.expect("event"))
                            .expect("event converts");
                        let (guid, text) = dolittle_contracts::convert::string_id_to_wire(
                            event.event_source.as_str(),
                        );
                        ToRuntimeFromFilter::FilterResult(PartitionedFilterResponse {
                            call_context: Some(ReverseCallResponseContext {
                                call_id: request.call_context.and_then(|context| context.call_id),
                            }),
                            is_included: true,
                            partition_id: Some(guid),
                            failure: None,
                            partition_id_string: Some(text),
                        })
                    }
                    None => continue,
                };
                if sender
                    .send(PublicFilterClientToRuntimeMessage {
                        message: Some(reply),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let refused = tokio::time::timeout(PATIENCE, accepted)
            .await
            .expect("registration answered in time")
            .expect("registration answered");
        assert!(refused.is_none(), "public filter refused: {refused:?}");
        Self { task }
    }
}

fn arguments(microservice: MicroserviceId) -> ReverseCallArgumentsContext {
    ReverseCallArgumentsContext {
        execution_context: Some(execution::ExecutionContext::from(ExecutionContext {
            microservice,
            tenant: TenantId::SYSTEM,
            ..ExecutionContext::default()
        })),
        head_id: Some(Uuid::new_v4().into()),
        ping_interval: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    }
}

/// A head's event handler in a scope that succeeds at once and reports (tenant, event) for
/// every request. Aborted when dropped.
pub struct EventHandler {
    task: JoinHandle<()>,
    pub handled: mpsc::UnboundedReceiver<(TenantId, CommittedEvent)>,
}

impl Drop for EventHandler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventHandler {
    pub async fn register(
        channel: Channel,
        microservice: MicroserviceId,
        id: EventProcessorId,
        scope: ScopeId,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(1024);
        sender
            .send(EventHandlerClientToRuntimeMessage {
                message: Some(ToRuntimeFromHandler::RegistrationRequest(
                    EventHandlerRegistrationRequest {
                        call_context: Some(arguments(microservice)),
                        scope_id: Some(scope.into()),
                        event_handler_id: Some(id.into()),
                        types: vec![event_type().into()],
                        partitioned: true,
                    },
                )),
            })
            .await
            .expect("queue registration");
        let mut incoming = EventHandlersClient::new(channel)
            .connect(ReceiverStream::new(receiver))
            .await
            .expect("connect event handler")
            .into_inner();
        let (registered, accepted) = oneshot::channel();
        let (report, handled) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut registered = Some(registered);
            while let Ok(Some(message)) = incoming.message().await {
                let reply = match message.message {
                    Some(FromRuntimeToHandler::RegistrationResponse(response)) => {
                        if let Some(registered) = registered.take() {
                            let _ = registered.send(response.failure);
                        }
                        continue;
                    }
                    Some(FromRuntimeToHandler::Ping(_)) => ToRuntimeFromHandler::Pong(Pong {}),
                    Some(FromRuntimeToHandler::HandleRequest(request)) => {
                        let call_context = request.call_context.clone();
                        let tenant = call_context
                            .as_ref()
                            .and_then(|context| context.execution_context.clone())
                            .map(|context| {
                                ExecutionContext::try_from(context).expect("context").tenant
                            })
                            .expect("execution context");
                        let stream_event = request.event.expect("stream event");
                        let event = CommittedEvent::try_from(stream_event.event.expect("event"))
                            .expect("event converts");
                        let _ = report.send((tenant, event));
                        ToRuntimeFromHandler::HandleResult(EventHandlerResponse {
                            call_context: Some(ReverseCallResponseContext {
                                call_id: call_context.and_then(|context| context.call_id),
                            }),
                            failure: None,
                        })
                    }
                    None => continue,
                };
                if sender
                    .send(EventHandlerClientToRuntimeMessage {
                        message: Some(reply),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let refused = tokio::time::timeout(PATIENCE, accepted)
            .await
            .expect("registration answered in time")
            .expect("registration answered");
        assert!(refused.is_none(), "event handler refused: {refused:?}");
        Self { task, handled }
    }

    /// The next `count` events handled.
    pub async fn next(&mut self, count: usize) -> Vec<(TenantId, CommittedEvent)> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let next = tokio::time::timeout(PATIENCE, self.handled.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("only {} of {count} events handled in time", events.len())
                })
                .expect("handler running");
            events.push(next);
        }
        events
    }
}

/// The real `dolittle-runtime` binary, started in a working folder with its `.dolittle/` files.
pub struct Process {
    pub private: SocketAddr,
    pub public: SocketAddr,
    pub metrics: SocketAddr,
    child: std::process::Child,
}

impl Process {
    /// Starts the binary on the given ports and waits until its private endpoint accepts.
    pub async fn start(
        working_dir: &Path,
        microservice: MicroserviceId,
        private_port: u16,
        public_port: u16,
        metrics_port: u16,
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(working_dir.join("runtime.log"))
            .expect("open log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dolittle-runtime"))
            .current_dir(working_dir)
            .args([
                "--private-port",
                &private_port.to_string(),
                "--public-port",
                &public_port.to_string(),
                "--metrics-port",
                &metrics_port.to_string(),
                "--management-port",
                "0",
                "--microservice-id",
                &microservice.to_string(),
            ])
            .env(
                "RUST_LOG",
                std::env::var("HORIZON_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dolittle-runtime");
        let address =
            |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().expect("address") };
        let process = Self {
            private: address(private_port),
            public: address(public_port),
            metrics: address(metrics_port),
            child,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(process.private)
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the runtime did not start listening (see runtime.log in {})",
                working_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    /// Sends SIGHUP (the Runtime re-reads its consents).
    pub fn hang_up(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Kills the process with SIGKILL: no shutdown, no flushing.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The embedded store file of a tenant under a working folder (the default place).
pub fn store_path(working_dir: &Path, tenant: TenantId) -> PathBuf {
    working_dir
        .join(".dolittle")
        .join("data")
        .join(format!("{tenant}.db"))
}

/// Opens a tenant's embedded store of a Runtime that is not running.
pub async fn open_store(working_dir: &Path, tenant: TenantId) -> SharedEventStore {
    let path = store_path(working_dir, tenant);
    let store =
        tokio::task::spawn_blocking(move || dolittle_store_sqlite::SqliteEventStore::open(&path))
            .await
            .expect("open task")
            .expect("store opens");
    std::sync::Arc::new(store)
}
