//! A whole Runtime in-process with its management and metrics endpoints on loopback port 0,
//! and a small HTTP/1.0 client to call them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_types::TenantId;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a test waits for something the Runtime should do.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A Runtime with its management and metrics endpoints on loopback port 0.
pub struct ManagedRuntime {
    pub private: SocketAddr,
    pub management: SocketAddr,
    pub metrics: SocketAddr,
    pub context: RuntimeContext,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl crate::common::RuntimeAddress for ManagedRuntime {
    fn address(&self) -> SocketAddr {
        self.private
    }
}

impl ManagedRuntime {
    pub async fn start(working_dir: &Path, tenants: &[TenantId], overrides: Overrides) -> Self {
        let folder = working_dir.join(".dolittle");
        std::fs::create_dir_all(&folder).expect("create .dolittle");
        let tenants_json: serde_json::Map<String, Value> = tenants
            .iter()
            .map(|tenant| (tenant.to_string(), json!({})))
            .collect();
        std::fs::write(
            folder.join("tenants.json"),
            serde_json::to_string(&tenants_json).expect("json"),
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
        let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addresses = (
            private.local_addr().expect("address"),
            management.local_addr().expect("address"),
            metrics.local_addr().expect("address"),
        );
        let context = RuntimeContext::new(config, stores);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = context.clone();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                private,
                public: None,
                metrics: Some(metrics),
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
            metrics: addresses.2,
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

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = http(self.management, "GET", path, None, None).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body) =
            http(self.management, "POST", path, Some(&body.to_string()), None).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Polls an endpoint until `done` holds for its answer.
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never became what the test waits for: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One HTTP/1.0 request: the status and the body.
pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the management endpoint");
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    if let Some(authorization) = authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("status code");
    (status, body.to_owned())
}
