//! Projection benchmark: catch-up over a long event log through a head answering over loopback,
//! then GetOne latency and GetAll over every key.
//!
//! Run (1,000,000 events over 10,000 keys by default; smaller for a quick look):
//!
//! ```text
//! cargo run --release -p dolittle-runtime --example projection_benchmark
//! cargo run --release -p dolittle-runtime --example projection_benchmark -- --events 100000
//! ```
//!
//! A whole Runtime runs in this process on a loopback port with a SQLite store in a temporary
//! folder, and the head (written against the raw contracts, as the tests' head) runs in the
//! same process and answers every request by counting the events of its key. Head and Runtime
//! share the machine's cores. The events are committed straight into the store before the
//! projection registers, so the catch-up is timed alone.

#[path = "../tests/common/projection_head.rs"]
mod projection_head;

use std::time::{Duration, Instant};

use dolittle_contracts::execution;
use dolittle_contracts::runtime::projections::projections_client::ProjectionsClient;
use dolittle_contracts::runtime::projections::{GetAllRequest, GetOneRequest};
use dolittle_contracts::services::CallRequestContext;
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_runtime::tenants::Tenants;
use dolittle_runtime::{Listeners, RuntimeContext};
use dolittle_store::{ProcessorKind, StreamProcessorState};
use dolittle_types::{
    CorrelationId, EventProcessorId, EventType, EventTypeId, ExecutionContext, MicroserviceId,
    ScopeId, TenantId, UncommittedEvent, Uuid,
};
use projection_head::{Answer, Key, TestProjection};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const PROJECTION: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d));
const COMMIT_BATCH: usize = 5_000;
const GET_ONE_SAMPLES: usize = 10_000;
const GET_ALL_SAMPLES: usize = 20;

struct Settings {
    events: usize,
    keys: usize,
}

fn settings() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        events: 1_000_000,
        keys: 10_000,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let value = arguments
            .next()
            .ok_or_else(|| anyhow::anyhow!("{argument} needs a value"))?;
        match argument.as_str() {
            "--events" => settings.events = value.parse()?,
            "--keys" => settings.keys = value.parse()?,
            other => anyhow::bail!("unknown argument {other}; use --events N --keys N"),
        }
    }
    anyhow::ensure!(settings.keys > 0 && settings.events >= settings.keys);
    Ok(settings)
}

fn execution_context() -> ExecutionContext {
    ExecutionContext {
        microservice: MicroserviceId(Uuid::from_u128(0x7a1c1f5e_3d2b_4c8e_9f10_2b6d8e4a9c01)),
        tenant: TenantId::DEVELOPMENT,
        correlation: CorrelationId::new_random(),
        environment: "Benchmark".into(),
        ..ExecutionContext::default()
    }
}

fn call_context() -> Option<CallRequestContext> {
    Some(CallRequestContext {
        execution_context: Some(execution::ExecutionContext::from(execution_context())),
        head_id: None,
    })
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Answers like a typical head: parse the state, count, serialise.
fn count(request: &dolittle_contracts::runtime::events::processing::ProjectionRequest) -> Answer {
    let state = request
        .current_state
        .as_ref()
        .map(|current| current.state.as_str())
        .unwrap_or("{}");
    let mut state: serde_json::Value =
        serde_json::from_str(state).unwrap_or_else(|_| serde_json::json!({}));
    let count = state["count"].as_u64().unwrap_or(0) + 1;
    state["count"] = count.into();
    Answer::Replace(state.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings()?;
    let folder = tempfile::tempdir()?;
    let dolittle = folder.path().join(".dolittle");
    std::fs::create_dir_all(&dolittle)?;
    std::fs::write(
        dolittle.join("tenants.json"),
        format!("{{\"{}\":{{}}}}", TenantId::DEVELOPMENT),
    )?;
    let config = RuntimeConfig::load(Overrides {
        working_dir: Some(folder.path().to_owned()),
        ..Overrides::default()
    })?;
    let stores = Tenants::open(&config.tenants).await?;
    let store = stores.store(TenantId::DEVELOPMENT)?.clone();
    let context = RuntimeContext::new(config, stores);
    let private = TcpListener::bind("127.0.0.1:0").await?;
    let address = private.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(dolittle_runtime::run(
        context.clone(),
        Listeners {
            private,
            public: None,
            metrics: None,
            management: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));

    // The event log: `events` events round-robin over `keys` event sources.
    let event_type = EventType::new(EventTypeId(Uuid::from_u128(1)), 1);
    let committing = Instant::now();
    let mut committed = 0;
    while committed < settings.events {
        let batch: Vec<UncommittedEvent> = (committed
            ..(committed + COMMIT_BATCH).min(settings.events))
            .map(|n| UncommittedEvent {
                event_source: format!("key-{}", n % settings.keys).into(),
                event_type,
                public: false,
                content: format!("{{\"n\":{n}}}"),
            })
            .collect();
        committed += batch.len();
        store.commit(batch, &execution_context()).await?;
    }
    let commit_time = committing.elapsed();

    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let catching_up = Instant::now();
    let projection = TestProjection::register(
        channel.clone(),
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type, Key::EventSource)],
        "{}",
    )
    .await;
    anyhow::ensure!(projection.refused.is_none(), "{:?}", projection.refused);
    let head = projection.serve(count);
    let position = loop {
        let state: Option<StreamProcessorState> = context
            .processors
            .registered()
            .into_iter()
            .find(|(key, _)| key.kind == ProcessorKind::Projection)
            .and_then(|(_, processor)| {
                processor
                    .states
                    .get(&TenantId::DEVELOPMENT)
                    .map(|state| state.borrow().clone())
            });
        if let Some(state) = state {
            anyhow::ensure!(state.failure.is_none(), "{:?}", state.failure);
            if state.position >= settings.events as u64 {
                break state.position;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let catch_up_time = catching_up.elapsed();
    let events_per_second = position as f64 / catch_up_time.as_secs_f64();

    let mut client = ProjectionsClient::new(channel);
    let mut get_one = Vec::with_capacity(GET_ONE_SAMPLES);
    for sample in 0..GET_ONE_SAMPLES {
        let key = format!("key-{}", (sample * 7_919) % settings.keys);
        let started = Instant::now();
        let response = client
            .get_one(GetOneRequest {
                call_context: call_context(),
                scope_id: None,
                projection_id: Some(PROJECTION.into()),
                key,
            })
            .await?
            .into_inner();
        get_one.push(started.elapsed());
        anyhow::ensure!(response.failure.is_none(), "{:?}", response.failure);
    }
    get_one.sort();
    let mut get_all = Vec::with_capacity(GET_ALL_SAMPLES);
    let mut models = 0;
    for _ in 0..GET_ALL_SAMPLES {
        let started = Instant::now();
        let response = client
            .get_all(GetAllRequest {
                call_context: call_context(),
                scope_id: None,
                projection_id: Some(PROJECTION.into()),
            })
            .await?
            .into_inner();
        get_all.push(started.elapsed());
        anyhow::ensure!(response.failure.is_none(), "{:?}", response.failure);
        models = response.states.len();
    }
    get_all.sort();
    anyhow::ensure!(
        models == settings.keys,
        "expected {} read models, got {models}",
        settings.keys
    );

    println!(
        "| measurement | value |\n|---|---|\n\
         | events in the log | {} |\n\
         | keys (read models) | {} |\n\
         | commit of the log (setup) | {:.2} s |\n\
         | catch-up time | {:.2} s |\n\
         | catch-up rate | {:.0} events/s |\n\
         | GetOne p50 | {:.3} ms |\n\
         | GetOne p99 | {:.3} ms |\n\
         | GetAll ({} read models) p50 | {:.2} ms |\n\
         | GetAll max | {:.2} ms |",
        settings.events,
        settings.keys,
        commit_time.as_secs_f64(),
        catch_up_time.as_secs_f64(),
        events_per_second,
        millis(percentile(&get_one, 0.5)),
        millis(percentile(&get_one, 0.99)),
        models,
        millis(percentile(&get_all, 0.5)),
        millis(percentile(&get_all, 1.0)),
    );
    println!(
        "summary: catch-up {:.0} events/s (target >= 50000), GetOne p50 {:.3} ms (target <= 0.5), \
         GetAll over {} keys p50 {:.2} ms",
        events_per_second,
        millis(percentile(&get_one, 0.5)),
        models,
        millis(percentile(&get_all, 0.5)),
    );

    let _ = stop.send(());
    let _ = runtime.await;
    let _ = head.await;
    Ok(())
}
