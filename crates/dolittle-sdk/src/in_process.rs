//! A Runtime inside the head's own process (feature `in-process`): the microservice composed
//! back into one application, on the embedded store, listening on a free loopback port.

use std::net::SocketAddr;
use std::path::Path;

use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_types::{MicroserviceId, TenantId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A running in-process Runtime.
pub(crate) struct InProcessRuntime {
    address: SocketAddr,
    public_address: Option<SocketAddr>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl InProcessRuntime {
    /// Starts a Runtime with its configuration and data under `working_dir/.dolittle`. When
    /// there is no `tenants.json` yet, one with `tenants` is written (the development tenant
    /// when the list is empty). With `public_endpoint`, its public endpoint (the event horizon's
    /// producer side) listens there too.
    pub(crate) async fn start(
        working_dir: &Path,
        microservice: MicroserviceId,
        tenants: &[TenantId],
        public_endpoint: Option<&str>,
    ) -> Result<Self> {
        let folder = working_dir.join(".dolittle");
        std::fs::create_dir_all(&folder).map_err(|error| {
            Error::InProcess(format!("cannot create {}: {error}", folder.display()))
        })?;
        let tenants_file = folder.join("tenants.json");
        if !tenants_file.exists() {
            let tenants = if tenants.is_empty() {
                vec![TenantId::DEVELOPMENT]
            } else {
                tenants.to_vec()
            };
            let json: serde_json::Map<String, serde_json::Value> = tenants
                .iter()
                .map(|tenant| (tenant.to_string(), serde_json::json!({})))
                .collect();
            let text = serde_json::Value::Object(json).to_string();
            std::fs::write(&tenants_file, text).map_err(|error| {
                Error::InProcess(format!("cannot write {}: {error}", tenants_file.display()))
            })?;
        }
        let config = RuntimeConfig::load(Overrides {
            working_dir: Some(working_dir.to_owned()),
            microservice: Some(microservice.to_string()),
            ..Overrides::default()
        })
        .map_err(|error| Error::InProcess(error.to_string()))?;
        let stores = Tenants::open(&config.tenants)
            .await
            .map_err(|error| Error::InProcess(error.to_string()))?;
        let private = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| Error::InProcess(format!("cannot bind a loopback port: {error}")))?;
        let address = private
            .local_addr()
            .map_err(|error| Error::InProcess(error.to_string()))?;
        let public = match public_endpoint {
            Some(endpoint) => Some(TcpListener::bind(endpoint).await.map_err(|error| {
                Error::InProcess(format!(
                    "cannot bind the public endpoint {endpoint}: {error}"
                ))
            })?),
            None => None,
        };
        let public_address = public
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|error| Error::InProcess(error.to_string()))?;
        let context = RuntimeContext::new(config, stores);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                private,
                public,
                metrics: None,
                management: None,
            };
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = dolittle_runtime::run(context, listeners, shutdown).await {
                tracing::error!(%error, "the in-process runtime stopped with an error");
            }
        });
        tracing::info!(%address, ?public_address, "in-process runtime started");
        Ok(Self {
            address,
            public_address,
            stop,
            task,
        })
    }

    /// The address of its private endpoint.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address of its public endpoint, when it has one.
    pub(crate) fn public_address(&self) -> Option<SocketAddr> {
        self.public_address
    }

    /// Stops it and waits until its stores are closed.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the in-process runtime task failed");
        }
    }
}
