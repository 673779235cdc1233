//! A whole Runtime started in this test process on loopback port 0, with embedded SQLite
//! stores in a temporary folder, and an SDK client connected to it over real gRPC.

#![allow(dead_code)]

use std::time::Duration;

use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_sdk::Client;
use dolittle_sdk::types::{MicroserviceId, TenantId, Uuid};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECOND_TENANT: TenantId =
    TenantId(Uuid::from_u128(0x7a9d3e1c_5b2f_4c8e_9d1a_2f3b4c5d6e7f));
pub const MICROSERVICE: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x2c1f9a3e_8b4d_4e6f_9a1b_3c5d7e9f1a2b));

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A Runtime in this process and a client connected to it.
pub struct TestRuntime {
    pub client: Client,
    pub address: String,
    /// The Runtime's stores, to check what it wrote.
    pub tenants: Tenants,
    _folder: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestRuntime {
    pub async fn start() -> Self {
        let folder = tempfile::tempdir().expect("temporary folder");
        let config_folder = folder.path().join(".dolittle");
        std::fs::create_dir_all(&config_folder).expect("create .dolittle");
        let tenants = serde_json::json!({
            TenantId::DEVELOPMENT.to_string(): {},
            SECOND_TENANT.to_string(): {},
        });
        std::fs::write(config_folder.join("tenants.json"), tenants.to_string())
            .expect("write tenants.json");
        let (address, tenants, stop, task) = run_runtime(folder.path(), "127.0.0.1:0").await;
        let client = Self::connect_to(&address).await;
        Self {
            client,
            address,
            tenants,
            _folder: folder,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the Runtime (the client stays) and starts it again on the same address and data.
    pub async fn restart(&mut self) {
        self.stop_runtime().await;
        // Let go of the stores so that the new Runtime can open them.
        self.tenants = Tenants::from_stores(Default::default());
        let listen = self.address.trim_start_matches("http://").to_owned();
        let (_, tenants, stop, task) = run_runtime(self._folder.path(), &listen).await;
        self.tenants = tenants;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    async fn stop_runtime(&mut self) {
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

    /// Another client of the same Runtime.
    pub async fn connect_to(address: &str) -> Client {
        Client::builder()
            .microservice(MICROSERVICE)
            .runtime(address)
            .version(1, 2, 3)
            .environment("Test")
            .backoff(dolittle_sdk::Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(500),
            ))
            .connect()
            .await
            .expect("client connects")
    }

    /// Shuts the client down, then the Runtime.
    pub async fn stop(mut self) {
        self.client.shutdown().await;
        self.stop_runtime().await;
    }
}

/// Starts a Runtime on `listen` with its files in `folder`.
async fn run_runtime(
    folder: &std::path::Path,
    listen: &str,
) -> (String, Tenants, oneshot::Sender<()>, JoinHandle<()>) {
    let config = RuntimeConfig::load(Overrides {
        working_dir: Some(folder.to_owned()),
        ..Overrides::default()
    })
    .expect("configuration loads");
    let stores = Tenants::open(&config.tenants).await.expect("stores open");
    let private = TcpListener::bind(listen).await.expect("bind");
    let address = format!("http://{}", private.local_addr().expect("address"));
    let tenants = stores.clone();
    let context = RuntimeContext::new(config, stores);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listeners = Listeners {
            private,
            public: None,
            metrics: None,
            management: None,
        };
        dolittle_runtime::run(context, listeners, async move {
            let _ = stopped.await;
        })
        .await
        .expect("runtime runs");
    });
    (address, tenants, stop, task)
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Receives the next value, failing the test if none arrives in time.
pub async fn next<T>(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(PATIENCE, receiver.recv())
        .await
        .expect("nothing arrived in time")
        .expect("channel open")
}

/// The entries of a stream once it has at least `length` of them: (partition, event content).
pub async fn stream_when_it_has(
    runtime: &TestRuntime,
    tenant: TenantId,
    stream: dolittle_sdk::types::StreamId,
    length: u64,
) -> Vec<(String, String)> {
    let store = runtime.tenants.store(tenant).expect("tenant store").clone();
    let mut watch = store.watch_stream(dolittle_sdk::types::ScopeId::DEFAULT, stream);
    tokio::time::timeout(PATIENCE, watch.wait_for(|known| *known >= length))
        .await
        .expect("the stream grew in time")
        .expect("watch open");
    store
        .read_stream(dolittle_sdk::types::ScopeId::DEFAULT, stream, 0, None, 1000)
        .await
        .expect("read stream")
        .into_iter()
        .map(|entry| (entry.partition.0, entry.event.content))
        .collect()
}
