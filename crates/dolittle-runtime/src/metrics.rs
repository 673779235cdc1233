//! Metrics in the Prometheus text format, and the health endpoints, on the metrics port.
//!
//! The counters are plain atomics kept by the parts of the Runtime that count; rendering reads
//! them without locks that commits would wait for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use dolittle_types::TenantId;

/// Upper bounds of the commit latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct TenantCounters {
    commits: AtomicU64,
    events: AtomicU64,
    failed_commits: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// The Runtime's metrics.
pub struct Metrics {
    started: Instant,
    tenants: Mutex<BTreeMap<TenantId, Arc<TenantCounters>>>,
    /// Stream processors running, per kind.
    processors: Mutex<BTreeMap<&'static str, Arc<AtomicI64>>>,
    reverse_calls: AtomicI64,
    processing_failures: AtomicU64,
    events_processed: AtomicU64,
    /// Event-horizon subscriptions of this Runtime as a consumer, by their label set.
    subscriptions: Mutex<BTreeMap<String, Arc<SubscriptionCounters>>>,
    /// Set once every tenant's store is open and the Runtime serves: what `/readyz` reports.
    ready: std::sync::atomic::AtomicBool,
}

/// The counters of one event-horizon subscription (consumer side).
#[derive(Default)]
pub struct SubscriptionCounters {
    /// Events received and stored into the scoped event log.
    pub received: AtomicU64,
    /// The next position wanted in the producer's public stream partition.
    pub position: AtomicU64,
    /// Microseconds from the producer's commit of the last stored event to its storing here.
    pub lag_micros: AtomicU64,
    /// 1 while the subscription is failing (not connected), 0 while it receives.
    pub failing: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            tenants: Mutex::new(BTreeMap::new()),
            processors: Mutex::new(BTreeMap::new()),
            reverse_calls: AtomicI64::new(0),
            processing_failures: AtomicU64::new(0),
            events_processed: AtomicU64::new(0),
            subscriptions: Mutex::new(BTreeMap::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Reverse calls that heads hold open (one per registered processor and head).
    pub fn open_reverse_calls(&self) -> i64 {
        self.reverse_calls.load(Ordering::Relaxed)
    }

    /// Marks the Runtime ready: its stores are open and it serves.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn tenant(&self, tenant: TenantId) -> Arc<TenantCounters> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tenants.entry(tenant).or_default().clone()
    }

    /// Counts a commit and its latency.
    pub fn commit_succeeded(&self, tenant: TenantId, events: usize, started: Instant) {
        let counters = self.tenant(tenant);
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.events.fetch_add(events as u64, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                counters.latency_buckets[index].fetch_add(1, Ordering::Relaxed);
            }
        }
        counters.latency_count.fetch_add(1, Ordering::Relaxed);
        counters
            .latency_sum_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    pub fn commit_failed(&self, tenant: TenantId) {
        self.tenant(tenant)
            .failed_commits
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a running stream processor of a kind until the guard is dropped.
    pub fn processor_running(&self, kind: &'static str) -> GaugeGuard {
        let gauge = self
            .processors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(kind)
            .or_default()
            .clone();
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge)
    }

    pub fn reverse_call_opened(self: &Arc<Self>) -> ReverseCallGuard {
        self.reverse_calls.fetch_add(1, Ordering::Relaxed);
        ReverseCallGuard(self.clone())
    }

    pub fn event_processed(&self) {
        self.events_processed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn processing_failed(&self) {
        self.processing_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of an event-horizon subscription; `labels` is its Prometheus label set
    /// (`name="value",...`).
    pub fn subscription(&self, labels: String) -> Arc<SubscriptionCounters> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(labels)
            .or_default()
            .clone()
    }

    fn render_subscriptions(&self, text: &mut String) {
        let subscriptions = self
            .subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&SubscriptionCounters) -> String,
        );
        let families: [Family; 4] = [
            (
                "dolittle_event_horizon_received_events_total",
                "counter",
                "Events received over the event horizon and stored in a scoped event log.",
                |counters| counters.received.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dolittle_event_horizon_position",
                "gauge",
                "Next position wanted in the producer's public stream partition.",
                |counters| counters.position.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dolittle_event_horizon_lag_seconds",
                "gauge",
                "Time from the producer's commit of the last received event to its storing here.",
                |counters| (counters.lag_micros.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
            ),
            (
                "dolittle_event_horizon_failing",
                "gauge",
                "1 while an event horizon subscription is not connected to its producer.",
                |counters| counters.failing.load(Ordering::Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for (labels, counters) in &subscriptions {
                let _ = writeln!(text, "{name}{{{labels}}} {}", value(counters));
            }
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let _ = writeln!(
            text,
            "# HELP dolittle_commits_total Commits that succeeded."
        );
        let _ = writeln!(text, "# TYPE dolittle_commits_total counter");
        for (tenant, counters) in &tenants {
            let _ = writeln!(
                text,
                "dolittle_commits_total{{tenant=\"{tenant}\"}} {}",
                counters.commits.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP dolittle_committed_events_total Events committed."
        );
        let _ = writeln!(text, "# TYPE dolittle_committed_events_total counter");
        for (tenant, counters) in &tenants {
            let _ = writeln!(
                text,
                "dolittle_committed_events_total{{tenant=\"{tenant}\"}} {}",
                counters.events.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP dolittle_failed_commits_total Commits refused or failed."
        );
        let _ = writeln!(text, "# TYPE dolittle_failed_commits_total counter");
        for (tenant, counters) in &tenants {
            let _ = writeln!(
                text,
                "dolittle_failed_commits_total{{tenant=\"{tenant}\"}} {}",
                counters.failed_commits.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP dolittle_commit_duration_seconds Time to commit, from request to durable."
        );
        let _ = writeln!(text, "# TYPE dolittle_commit_duration_seconds histogram");
        for (tenant, counters) in &tenants {
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "dolittle_commit_duration_seconds_bucket{{tenant=\"{tenant}\",le=\"{bound}\"}} {}",
                    counters.latency_buckets[index].load(Ordering::Relaxed)
                );
            }
            let count = counters.latency_count.load(Ordering::Relaxed);
            let _ = writeln!(
                text,
                "dolittle_commit_duration_seconds_bucket{{tenant=\"{tenant}\",le=\"+Inf\"}} {count}"
            );
            let sum = counters.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                text,
                "dolittle_commit_duration_seconds_sum{{tenant=\"{tenant}\"}} {sum}"
            );
            let _ = writeln!(
                text,
                "dolittle_commit_duration_seconds_count{{tenant=\"{tenant}\"}} {count}"
            );
        }
        let processors = self
            .processors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let _ = writeln!(
            text,
            "# HELP dolittle_stream_processors Stream processors running, per kind (concepts §3)."
        );
        let _ = writeln!(text, "# TYPE dolittle_stream_processors gauge");
        for (kind, gauge) in &processors {
            let _ = writeln!(
                text,
                "dolittle_stream_processors{{kind=\"{kind}\"}} {}",
                gauge.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP dolittle_reverse_calls Open reverse calls from heads."
        );
        let _ = writeln!(text, "# TYPE dolittle_reverse_calls gauge");
        let _ = writeln!(
            text,
            "dolittle_reverse_calls {}",
            self.reverse_calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP dolittle_processed_events_total Events processed successfully by stream processors."
        );
        let _ = writeln!(text, "# TYPE dolittle_processed_events_total counter");
        let _ = writeln!(
            text,
            "dolittle_processed_events_total {}",
            self.events_processed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP dolittle_processing_failures_total Failed attempts to process an event."
        );
        let _ = writeln!(text, "# TYPE dolittle_processing_failures_total counter");
        let _ = writeln!(
            text,
            "dolittle_processing_failures_total {}",
            self.processing_failures.load(Ordering::Relaxed)
        );
        self.render_subscriptions(&mut text);
        let _ = writeln!(
            text,
            "# HELP dolittle_uptime_seconds Seconds since the Runtime started."
        );
        let _ = writeln!(text, "# TYPE dolittle_uptime_seconds gauge");
        let _ = writeln!(
            text,
            "dolittle_uptime_seconds {}",
            self.started.elapsed().as_secs_f64()
        );
        text
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard(Arc<AtomicI64>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an open reverse call until dropped.
pub struct ReverseCallGuard(Arc<Metrics>);

impl Drop for ReverseCallGuard {
    fn drop(&mut self) {
        self.0.reverse_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The HTTP routes of the metrics port: `/metrics` (and `/metrics/`), `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    router_with(metrics, String::new)
}

/// The routes of the metrics port, with more Prometheus text appended to `/metrics` by `more`
/// (the per-processor gauges, which need the whole Runtime).
pub fn router_with(
    metrics: Arc<Metrics>,
    more: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Router {
    let render = {
        let metrics = metrics.clone();
        move || {
            let metrics = metrics.clone();
            let more = more.clone();
            async move {
                let mut text = metrics.render();
                text.push_str(&more());
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            }
        }
    };
    let ready = move || {
        let ready = metrics.is_ready();
        async move {
            match ready {
                true => (axum::http::StatusCode::OK, "ready"),
                false => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready"),
            }
        }
    };
    Router::new()
        .route("/metrics", get(render.clone()))
        .route("/metrics/", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
}

/// A listener shared with a server that is stopped before the listener is needed again.
struct SharedListener(Arc<tokio::net::TcpListener>);

impl axum::serve::Listener for SharedListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves the health endpoints on the metrics listener while `starting` runs (the stores
/// open): `/healthz` answers ok so that a liveness probe does not kill a Runtime whose stores
/// take long to open, `/readyz` answers 503. Then hands the listener back for [`crate::run`].
pub async fn serve_health_while<T>(
    listener: tokio::net::TcpListener,
    starting: impl std::future::Future<Output = T>,
) -> std::io::Result<(tokio::net::TcpListener, T)> {
    let shared = Arc::new(listener);
    let (started, stop) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        SharedListener(shared.clone()),
        router(Arc::new(Metrics::new())),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.await;
    });
    let server = tokio::spawn(server.into_future());
    let output = starting.await;
    let _ = started.send(());
    match server.await {
        Ok(served) => served?,
        Err(error) => return Err(std::io::Error::other(error)),
    }
    let listener = Arc::try_unwrap(shared).map_err(|_| {
        std::io::Error::other("the start-up health server still holds the metrics listener")
    })?;
    Ok((listener, output))
}

#[cfg(test)]
mod startup_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn status_of(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn while_the_stores_open_the_runtime_is_alive_but_not_ready() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (opened, opening) = tokio::sync::oneshot::channel::<()>();
        let starting = tokio::spawn(serve_health_while(listener, async move {
            let _ = opening.await;
            "stores"
        }));
        assert!(status_of(address, "/healthz").await.contains("200"));
        assert!(status_of(address, "/readyz").await.contains("503"));
        let _ = opened.send(());
        let (listener, output) = starting
            .await
            .expect("task")
            .expect("the listener comes back");
        assert_eq!(output, "stores");
        assert_eq!(listener.local_addr().expect("address"), address);
    }
}
