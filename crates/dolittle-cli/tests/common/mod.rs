//! A whole Runtime in-process with its management endpoint on loopback port 0, and the raw
//! test head of the Runtime's own tests (shared by path, not copied).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_types::{ExecutionContext, MicroserviceId, TenantId, Uuid};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

#[path = "../../../dolittle-runtime/tests/common/heads.rs"]
pub mod heads;
#[path = "../../../dolittle-runtime/tests/common/projection_head.rs"]
pub mod projection_head;

pub const MICROSERVICE: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x7a1c1f5e_3d2b_4c8e_9f10_2b6d8e4a9c01));

pub struct ManagedRuntime {
    pub private: SocketAddr,
    pub management: SocketAddr,
    pub context: RuntimeContext,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub trait RuntimeAddress {
    fn address(&self) -> SocketAddr;
}

impl RuntimeAddress for ManagedRuntime {
    fn address(&self) -> SocketAddr {
        self.private
    }
}

impl ManagedRuntime {
    pub async fn start(working_dir: &Path, overrides: Overrides) -> Self {
        let folder = working_dir.join(".dolittle");
        std::fs::create_dir_all(&folder).expect("create .dolittle");
        std::fs::write(
            folder.join("tenants.json"),
            format!(r#"{{"{}": {{}}}}"#, TenantId::DEVELOPMENT),
        )
        .expect("write tenants.json");
        let config = RuntimeConfig::load(Overrides {
            working_dir: Some(working_dir.to_owned()),
            ..overrides
        })
        .expect("configuration loads");
        let stores = Tenants::open(&config.tenants).await.expect("stores open");
        let private = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let management = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addresses = (
            private.local_addr().expect("address"),
            management.local_addr().expect("address"),
        );
        let context = RuntimeContext::new(config, stores);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = context.clone();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                private,
                public: None,
                metrics: None,
                management: Some(management),
            };
            dolittle_runtime::run(running, listeners, async move {
                let _ = stopped.await;
            })
            .await
            .expect("runtime runs");
        });
        Self {
            private: addresses.0,
            management: addresses.1,
            context,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("runtime stops in time")
                .expect("runtime task");
        }
    }
}

pub async fn connect(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
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
