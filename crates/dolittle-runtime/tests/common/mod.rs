//! A whole Runtime started in-process on loopback port 0 with embedded stores in a temporary
//! folder, and wire helpers for tests that talk to it as a head would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dolittle_contracts::convert;
use dolittle_contracts::execution;
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_contracts::runtime::events::{CommitEventsRequest, UncommittedEvent};
use dolittle_contracts::services::CallRequestContext;
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_types::{EventType, EventTypeId, ExecutionContext, MicroserviceId, TenantId, Uuid};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const SECOND_TENANT: TenantId =
    TenantId(Uuid::from_u128(0x7a9d3e1c_5b2f_4c8e_9d1a_2f3b4c5d6e7f));
pub const MICROSERVICE: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x7a1c1f5e_3d2b_4c8e_9f10_2b6d8e4a9c01));

/// A Runtime running in this process.
pub struct TestRuntime {
    pub address: SocketAddr,
    pub context: RuntimeContext,
    pub working_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestRuntime {
    /// Starts a Runtime for the given tenants, with its files in `working_dir`.
    pub async fn start_in(working_dir: &Path, tenants: &[TenantId]) -> Self {
        Self::start_with(working_dir, tenants, None, Overrides::default()).await
    }

    /// Starts a Runtime with a `resources.json` of the given content, when there is one.
    pub async fn start_with_resources(
        working_dir: &Path,
        tenants: &[TenantId],
        resources: Option<serde_json::Value>,
    ) -> Self {
        Self::start_with(working_dir, tenants, resources, Overrides::default()).await
    }

    /// Starts a Runtime with resources and overrides (flags) of a test's choosing.
    pub async fn start_with(
        working_dir: &Path,
        tenants: &[TenantId],
        resources: Option<serde_json::Value>,
        overrides: Overrides,
    ) -> Self {
        let folder = working_dir.join(".dolittle");
        std::fs::create_dir_all(&folder).expect("create .dolittle");
        let tenants_json: serde_json::Map<String, serde_json::Value> = tenants
            .iter()
            .map(|tenant| (tenant.to_string(), serde_json::json!({})))
            .collect();
        std::fs::write(
            folder.join("tenants.json"),
            serde_json::to_string(&tenants_json).expect("json"),
        )
        .expect("write tenants.json");
        if let Some(resources) = resources {
            std::fs::write(folder.join("resources.json"), resources.to_string())
                .expect("write resources.json");
        }
        let config = RuntimeConfig::load(Overrides {
            working_dir: Some(working_dir.to_owned()),
            ..overrides
        })
        .expect("configuration loads");
        let stores = Tenants::open(&config.tenants).await.expect("stores open");
        let private = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = private.local_addr().expect("address");
        let context = RuntimeContext::new(config, stores);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = context.clone();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                private,
                public: None,
                metrics: None,
                management: None,
            };
            dolittle_runtime::run(running, listeners, async move {
                let _ = stopped.await;
            })
            .await
            .expect("runtime runs");
        });
        Self {
            address,
            context,
            working_dir: working_dir.to_owned(),
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
            tokio::time::timeout(std::time::Duration::from_secs(20), task)
                .await
                .expect("runtime stops in time")
                .expect("runtime task");
        }
    }

    pub async fn channel(&self) -> Channel {
        connect(self.address).await
    }

    pub async fn event_store(&self) -> EventStoreClient<Channel> {
        EventStoreClient::new(self.channel().await)
    }
}

/// Something a test head can connect to: an in-process Runtime or another process's address.
pub trait RuntimeAddress {
    fn address(&self) -> SocketAddr;
}

impl RuntimeAddress for TestRuntime {
    fn address(&self) -> SocketAddr {
        self.address
    }
}

impl RuntimeAddress for SocketAddr {
    fn address(&self) -> SocketAddr {
        *self
    }
}

/// A channel to a Runtime's private endpoint.
pub async fn connect(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn execution_context(tenant: TenantId) -> ExecutionContext {
    ExecutionContext {
        microservice: MICROSERVICE,
        tenant,
        correlation: dolittle_types::CorrelationId::new_random(),
        environment: "Test".into(),
        ..ExecutionContext::default()
    }
}

pub fn call_context(tenant: TenantId) -> Option<CallRequestContext> {
    Some(CallRequestContext {
        execution_context: Some(execution::ExecutionContext::from(execution_context(tenant))),
        head_id: None,
    })
}

pub fn event_type(n: u128) -> EventType {
    EventType::new(EventTypeId(Uuid::from_u128(n)), 1)
}

pub fn uncommitted(event_source: &str, event_type: EventType, content: &str) -> UncommittedEvent {
    dolittle_types::UncommittedEvent {
        event_source: event_source.into(),
        event_type,
        public: false,
        content: content.to_owned(),
    }
    .into()
}

/// Commits events for a tenant and fails the test on any failure.
pub async fn commit(
    client: &mut EventStoreClient<Channel>,
    tenant: TenantId,
    events: Vec<UncommittedEvent>,
) -> Vec<dolittle_types::CommittedEvent> {
    let response = client
        .commit(CommitEventsRequest {
            call_context: call_context(tenant),
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
        .map(|event| {
            dolittle_types::CommittedEvent::try_from(event).expect("committed event converts")
        })
        .collect()
}

pub fn failure_id(failure: &dolittle_contracts::protobuf::Failure) -> Uuid {
    convert::uuid_from_wire("id", failure.id.as_ref().expect("failure id")).expect("16 bytes")
}
pub mod heads;

/// The real `dolittle-runtime` binary running as a child process, for tests that kill it.
pub struct ChildRuntime {
    pub address: SocketAddr,
    child: std::process::Child,
}

impl ChildRuntime {
    /// Starts the binary in `working_dir` (which holds `.dolittle/`) on a free private port and
    /// waits until it accepts connections.
    pub async fn start_in(working_dir: &Path, tenants: &[TenantId]) -> Self {
        let folder = working_dir.join(".dolittle");
        std::fs::create_dir_all(&folder).expect("create .dolittle");
        let tenants_json: serde_json::Map<String, serde_json::Value> = tenants
            .iter()
            .map(|tenant| (tenant.to_string(), serde_json::json!({})))
            .collect();
        std::fs::write(
            folder.join("tenants.json"),
            serde_json::to_string(&tenants_json).expect("json"),
        )
        .expect("write tenants.json");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dolittle-runtime"))
            .current_dir(working_dir)
            .args([
                "--private-port",
                &port.to_string(),
                "--public-port",
                "0",
                "--metrics-port",
                "0",
                "--management-port",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn dolittle-runtime");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the runtime did not start listening"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self { address, child }
    }

    /// Kills the process with SIGKILL: no shutdown, no flushing.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RuntimeAddress for ChildRuntime {
    fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for ChildRuntime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildRuntime {
    /// Sends SIGTERM and waits for the process to exit, returning its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the runtime did not exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
