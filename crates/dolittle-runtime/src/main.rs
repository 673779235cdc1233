//! `dolittle-runtime`: parses flags and configuration, sets up logging, opens the tenants'
//! stores, binds the endpoints and runs the Runtime until SIGINT or SIGTERM. A second signal
//! exits at once; SIGHUP re-reads the event-horizon consents.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use tokio::net::TcpListener;

/// The Dolittle Runtime: an event store and the server that Dolittle heads connect to.
///
/// Configuration comes from Dolittle's `.dolittle/*.json` files (tenants.json, resources.json,
/// endpoints.json, metrics.json, microservices.json, event-horizon-consents.json,
/// bounded-context.json), looked for in .dolittle/, config/, /config/, data/, .. and . of the
/// working directory. With no files at all it serves the development tenant
/// 445f8ea8-1a6f-40d7-b2fc-796dba92dc44 on the embedded store under .dolittle/data.
/// Every flag can also be given as the environment variable named after it; flags win over the
/// environment, which wins over the files.
#[derive(Debug, Parser)]
#[command(name = "dolittle-runtime", version, about, long_about)]
struct Arguments {
    /// Look for configuration files in this folder only [env: DOLITTLE_CONFIG_DIR]
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Folder of the embedded stores of tenants without a resources.json entry
    /// (default .dolittle/data) [env: DOLITTLE_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This microservice's id (default: bounded-context.json's boundedContext)
    /// [env: DOLITTLE_MICROSERVICE_ID]
    #[arg(long, value_name = "GUID")]
    microservice_id: Option<String>,
    /// Port of the private gRPC endpoint that heads call (default 50053)
    /// [env: DOLITTLE_PRIVATE_PORT]
    #[arg(long, value_name = "PORT")]
    private_port: Option<u16>,
    /// Port of the public gRPC endpoint, the event horizon (default 50052)
    /// [env: DOLITTLE_PUBLIC_PORT]
    #[arg(long, value_name = "PORT")]
    public_port: Option<u16>,
    /// Port of the management API (default 51052) [env: DOLITTLE_MANAGEMENT_PORT]
    #[arg(long, value_name = "PORT")]
    management_port: Option<u16>,
    /// File holding the bearer token of the management API, required when it is bound to an
    /// address other than loopback [env: DOLITTLE_MANAGEMENT_TOKEN_FILE, or the token itself
    /// in DOLITTLE_MANAGEMENT_TOKEN]
    #[arg(long, value_name = "FILE")]
    management_token_file: Option<PathBuf>,
    /// Port of the metrics and health endpoints (default 9700) [env: DOLITTLE_METRICS_PORT]
    #[arg(long, value_name = "PORT")]
    metrics_port: Option<u16>,
    /// Address the private endpoint binds to (default 0.0.0.0) [env: DOLITTLE_PRIVATE_HOST]
    #[arg(long, value_name = "IP")]
    private_host: Option<String>,
    /// Address the public endpoint binds to (default 0.0.0.0) [env: DOLITTLE_PUBLIC_HOST]
    #[arg(long, value_name = "IP")]
    public_host: Option<String>,
    /// Address the management endpoint binds to (default 127.0.0.1)
    /// [env: DOLITTLE_MANAGEMENT_HOST]
    #[arg(long, value_name = "IP")]
    management_host: Option<String>,
    /// The largest request a head may send, in bytes (default 33554432)
    /// [env: DOLITTLE_MAX_REQUEST_BYTES]
    #[arg(long, value_name = "BYTES")]
    max_request_bytes: Option<usize>,
    /// Log format: text or json (default text) [env: DOLITTLE_LOG_FORMAT]; the level is set
    /// with RUST_LOG (default info)
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl Arguments {
    fn overrides(self) -> Overrides {
        Overrides {
            config_dir: self.config_dir,
            data_dir: self.data_dir,
            working_dir: None,
            microservice: self.microservice_id,
            public_port: self.public_port,
            private_port: self.private_port,
            management_port: self.management_port,
            metrics_port: self.metrics_port,
            public_host: self.public_host,
            private_host: self.private_host,
            management_host: self.management_host,
            max_request_bytes: self.max_request_bytes,
            log_format: self.log_format,
            management_token: None,
            management_token_file: self.management_token_file,
        }
    }
}

fn main() -> std::process::ExitCode {
    match start() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes, without a backtrace: this is for people, not for debuggers.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    let environment: HashMap<String, String> = std::env::vars().collect();
    let overrides = Overrides::from_environment(&environment)?.overridden_by(arguments.overrides());
    let log_format = overrides.log_format.clone();
    setup_logging(log_format.as_deref() == Some("json"));
    let config = RuntimeConfig::load(overrides).context("invalid configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

fn setup_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn bind(name: &str, host: std::net::IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::new(host, port);
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {name} endpoint"))
}

async fn serve(config: RuntimeConfig) -> anyhow::Result<()> {
    // The metrics port answers liveness (and "not ready") while the stores open.
    let metrics = bind("metrics", config.metrics.host, config.metrics.port).await?;
    let (metrics, tenants) =
        dolittle_runtime::metrics::serve_health_while(metrics, Tenants::open(&config.tenants))
            .await
            .context("the metrics endpoint failed while the stores opened")?;
    let tenants = tenants?;
    let private = bind("private", config.private.host, config.private.port).await?;
    let public = match config.public.enabled {
        true => Some(bind("public", config.public.host, config.public.port).await?),
        false => None,
    };
    let management = match config.management.enabled {
        true => Some(bind("management", config.management.host, config.management.port).await?),
        false => None,
    };
    tracing::info!(
        private = %private.local_addr()?,
        public = %public
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map_or_else(|| "disabled".to_owned(), |address| address.to_string()),
        metrics = %metrics.local_addr()?,
        management = %management
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map_or_else(|| "disabled".to_owned(), |address| address.to_string()),
        tenants = tenants.len(),
        microservice = %config.microservice,
        "dolittle runtime is listening"
    );
    let context = RuntimeContext::new(config, tenants);
    #[cfg(unix)]
    tokio::spawn(reload_consents_on_hangup(context.clone()));
    let listeners = Listeners {
        private,
        public,
        metrics: Some(metrics),
        management,
    };
    dolittle_runtime::run(context, listeners, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reads `event-horizon-consents.json` again on every SIGHUP (it is also re-read when it
/// changes on disk).
#[cfg(unix)]
async fn reload_consents_on_hangup(context: RuntimeContext) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; consents are re-read when their file changes");
        return;
    };
    while hangups.recv().await.is_some() {
        match context
            .event_horizon
            .reload_consents(&context.config.location)
        {
            Ok(changed) => tracing::info!(changed, "consents re-read on SIGHUP"),
            Err(error) => {
                tracing::warn!(%error, "consents not re-read on SIGHUP; the old ones stay")
            }
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
