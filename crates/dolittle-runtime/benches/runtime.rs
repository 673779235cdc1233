//! Runtime benchmark over real gRPC on loopback, embedded SQLite stores in a temporary folder.
//!
//! Run: `cargo bench -p dolittle-runtime --bench runtime` (add `-- --quick` for a short run).
//! Prints a table and a summary line. Workloads (issues 4 and 5):
//! - single client, 1-event commits; 64 concurrent clients over 8 channels; 100-event commits;
//!   beside each, the same calls for a tenant the Runtime does not have, answered before any
//!   store work: the cost of the gRPC round trip alone on this machine, for context;
//! - commit -> handled latency through a partitioned event handler in a head over loopback;
//! - catch-up of N events (1,000,000 by default) through one partitioned event handler;
//! - boot time and resident memory of the real binary with 100 tenants x 20 event handlers.
//!
//! `DOLITTLE_BENCH_ONLY=single,concurrent,batch,latency,catch-up,boot` runs only the named
//! workloads. `DOLITTLE_BENCH_RUNTIME=process` runs the commit and latency workloads against the
//! `dolittle-runtime` binary in a process of its own instead of a Runtime in the bench's process
//! (on this 2-core machine both gave the same rates within noise).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::heads::TestEventHandler;
use common::{
    ChildRuntime, RuntimeAddress, TestRuntime, call_context, connect, event_type, uncommitted,
};
use dolittle_contracts::runtime::events::CommitEventsRequest;
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};

struct Row {
    workload: String,
    result: String,
    target: String,
    met: bool,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

/// A tenant no Runtime here is configured for: commits for it are answered with a failure
/// before any store work, which measures the gRPC round trip alone.
const NO_TENANT: TenantId = TenantId(Uuid::from_u128(0x0bad_0bad_0bad_4bad_8bad_0bad_0bad_0bad));

/// The round trips of one client: (commits/s, sorted latencies).
async fn one_client(
    runtime: &impl RuntimeAddress,
    count: usize,
    tenant: TenantId,
) -> (f64, Vec<Duration>) {
    let mut client = EventStoreClient::new(connect(runtime.address()).await);
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for n in 0..count {
        let begun = Instant::now();
        let response = client
            .commit(CommitEventsRequest {
                call_context: call_context(tenant),
                events: vec![uncommitted(
                    &format!("source {}", n % 100),
                    event_type(1),
                    "{\"n\":1}",
                )],
            })
            .await
            .expect("commit");
        assert_eq!(
            response.into_inner().failure.is_none(),
            tenant != NO_TENANT,
            "a commit succeeds for a configured tenant only"
        );
        latencies.push(begun.elapsed());
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (rate, latencies)
}

async fn single_client_commits(runtime: &impl RuntimeAddress, count: usize) -> Vec<Row> {
    let (floor, floor_latencies) = one_client(runtime, count, NO_TENANT).await;
    let (rate, latencies) = one_client(runtime, count, TenantId::DEVELOPMENT).await;
    vec![
        Row {
            workload: "gRPC round trip alone, 1 client (refused before the store; for context)"
                .into(),
            result: format!(
                "{floor:.0} calls/s (p50 {})",
                millis(percentile(&floor_latencies, 0.5))
            ),
            target: "-".into(),
            met: true,
        },
        Row {
            workload: "1 client, 1-event commits".into(),
            result: format!(
                "{rate:.0} commits/s (p50 {}, p99 {})",
                millis(percentile(&latencies, 0.5)),
                millis(percentile(&latencies, 0.99))
            ),
            target: ">= 4,000 commits/s".into(),
            met: rate >= 4000.0,
        },
    ]
}

/// Calls from `clients` concurrent clients over 8 channels; returns calls/s.
async fn many_clients(
    runtime: &impl RuntimeAddress,
    clients: usize,
    per_client: usize,
    tenant: TenantId,
) -> f64 {
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(connect(runtime.address()).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            let channel = channels[index % channels.len()].clone();
            tokio::spawn(async move {
                let mut client = EventStoreClient::new(channel);
                for n in 0..per_client {
                    let response = client
                        .commit(CommitEventsRequest {
                            call_context: call_context(tenant),
                            events: vec![uncommitted(
                                &format!("client {index} {n}"),
                                event_type(2),
                                "{\"n\":2}",
                            )],
                        })
                        .await
                        .expect("commit");
                    assert_eq!(response.into_inner().failure.is_none(), tenant != NO_TENANT);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    (clients * per_client) as f64 / started.elapsed().as_secs_f64()
}

async fn concurrent_commits(
    runtime: &impl RuntimeAddress,
    clients: usize,
    per_client: usize,
) -> Vec<Row> {
    let floor = many_clients(runtime, clients, per_client, NO_TENANT).await;
    let rate = many_clients(runtime, clients, per_client, TenantId::DEVELOPMENT).await;
    vec![
        Row {
            workload: format!(
                "gRPC round trips alone, {clients} clients (refused before the store; for context)"
            ),
            result: format!("{floor:.0} calls/s"),
            target: "-".into(),
            met: true,
        },
        Row {
            workload: format!("{clients} concurrent clients, 1-event commits"),
            result: format!("{rate:.0} events/s"),
            target: ">= 50,000 events/s".into(),
            met: rate >= 50_000.0,
        },
    ]
}

/// 100-event calls from one client; returns events/s.
async fn batches_of_100(runtime: &impl RuntimeAddress, batches: usize, tenant: TenantId) -> f64 {
    let mut client = EventStoreClient::new(connect(runtime.address()).await);
    let started = Instant::now();
    for batch in 0..batches {
        let events = (0..100)
            .map(|n| uncommitted(&format!("batch {batch} {n}"), event_type(3), "{\"n\":3}"))
            .collect();
        let response = client
            .commit(CommitEventsRequest {
                call_context: call_context(tenant),
                events,
            })
            .await
            .expect("commit");
        assert_eq!(response.into_inner().failure.is_none(), tenant != NO_TENANT);
    }
    (batches * 100) as f64 / started.elapsed().as_secs_f64()
}

async fn batch_commits(runtime: &impl RuntimeAddress, batches: usize) -> Vec<Row> {
    let floor = batches_of_100(runtime, batches, NO_TENANT).await;
    let rate = batches_of_100(runtime, batches, TenantId::DEVELOPMENT).await;
    vec![
        Row {
            workload: "100-event requests alone, 1 client (decoded, then refused before the \
                       store; for context)"
                .into(),
            result: format!("{floor:.0} events/s"),
            target: "-".into(),
            met: true,
        },
        Row {
            workload: "1 client, 100-event commits".into(),
            result: format!("{rate:.0} events/s"),
            target: ">= 150,000 events/s".into(),
            met: rate >= 150_000.0,
        },
    ]
}

async fn commit_to_handled_latency(runtime: &impl RuntimeAddress, count: usize) -> Row {
    let handler_id = EventProcessorId(Uuid::new_v4());
    let mut handler = TestEventHandler::register(
        runtime,
        handler_id,
        ScopeId::DEFAULT,
        &[event_type(7)],
        true,
    )
    .await;
    assert!(handler.refused.is_none());
    let mut client = EventStoreClient::new(connect(runtime.address()).await);
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let begun = Instant::now();
        let response = client
            .commit(CommitEventsRequest {
                call_context: call_context(TenantId::DEVELOPMENT),
                events: vec![uncommitted(
                    &format!("latency {}", n % 10),
                    event_type(7),
                    "{}",
                )],
            })
            .await
            .expect("commit");
        assert!(response.into_inner().failure.is_none());
        let request = handler.next_request().await;
        latencies.push(begun.elapsed());
        handler.respond(&request, None).await;
    }
    handler.disconnect();
    latencies.sort_unstable();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    Row {
        workload: "commit -> handled latency (head over loopback)".into(),
        result: format!("p50 {}, p99 {}", millis(p50), millis(p99)),
        target: "p50 <= 1 ms, p99 <= 5 ms".into(),
        met: p50 <= Duration::from_millis(1) && p99 <= Duration::from_millis(5),
    }
}

async fn catch_up(runtime: &impl RuntimeAddress, events: usize) -> Row {
    let mut client = EventStoreClient::new(connect(runtime.address()).await);
    for batch in 0..events.div_ceil(1000) {
        let batch_events = (0..1000.min(events - batch * 1000))
            .map(|n| {
                uncommitted(
                    &format!("partition {}", (batch * 1000 + n) % 1000),
                    event_type(9),
                    "{\"catch\":\"up\"}",
                )
            })
            .collect();
        let response = client
            .commit(CommitEventsRequest {
                call_context: call_context(TenantId::DEVELOPMENT),
                events: batch_events,
            })
            .await
            .expect("commit");
        assert!(response.into_inner().failure.is_none());
    }
    let started = Instant::now();
    let handler_id = EventProcessorId(Uuid::new_v4());
    let mut handler = TestEventHandler::register(
        runtime,
        handler_id,
        ScopeId::DEFAULT,
        &[event_type(9)],
        true,
    )
    .await;
    for _ in 0..events {
        let request = handler.next_request().await;
        handler.respond(&request, None).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    handler.disconnect();
    Row {
        workload: format!("catch-up of {events} events, 1 handler, 1000 partitions"),
        result: format!("{rate:.0} events/s"),
        target: ">= 50,000 events/s".into(),
        met: rate >= 50_000.0,
    }
}

fn boot_time_and_memory(tenants: usize, handlers: usize) -> Row {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join(".dolittle");
    std::fs::create_dir_all(&folder).expect("folder");
    let tenant_ids: Vec<TenantId> = (0..tenants)
        .map(|n| TenantId(Uuid::from_u128(0x1000 + n as u128)))
        .collect();
    let tenants_json: serde_json::Map<String, serde_json::Value> = tenant_ids
        .iter()
        .map(|tenant| (tenant.to_string(), serde_json::json!({})))
        .collect();
    std::fs::write(
        folder.join("tenants.json"),
        serde_json::to_string(&tenants_json).expect("json"),
    )
    .expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dolittle-runtime"))
        .current_dir(dir.path())
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
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn dolittle-runtime");
    let boot = runtime.block_on(async {
        let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        while tokio::net::TcpStream::connect(address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let listening = started.elapsed();
        let mut registered = Vec::new();
        for _ in 0..handlers {
            let handler = TestEventHandler::register(
                &address,
                EventProcessorId(Uuid::new_v4()),
                ScopeId::DEFAULT,
                &[event_type(1)],
                true,
            )
            .await;
            assert!(handler.refused.is_none());
            registered.push(handler);
        }
        let all_registered = started.elapsed();
        let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| {
                        line.split_whitespace()
                            .nth(1)
                            .and_then(|kib| kib.parse::<u64>().ok())
                    })
            })
            .unwrap_or(0);
        (listening, all_registered, rss)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (listening, all_registered, rss_kib) = boot;
    let rss_mib = rss_kib as f64 / 1024.0;
    Row {
        workload: format!("boot with {tenants} tenants x {handlers} handlers"),
        result: format!(
            "listening after {}, all registered after {}, RSS {rss_mib:.0} MiB",
            millis(listening),
            millis(all_registered)
        ),
        target: "<= 2 s, <= 300 MB".into(),
        met: all_registered <= Duration::from_secs(2) && rss_mib <= 300.0,
    }
}

/// How much each head workload does: single-client commits, concurrent clients, calls per
/// client, 100-event batches and latency samples.
#[derive(Clone, Copy)]
struct Sizes {
    single: usize,
    clients: usize,
    per_client: usize,
    batches: usize,
    latency: usize,
}

/// The workloads of heads committing to one Runtime.
async fn head_workloads(
    runtime: &impl RuntimeAddress,
    wanted: &impl Fn(&str) -> bool,
    sizes: Sizes,
) -> Vec<Row> {
    let mut rows = Vec::new();
    if wanted("single") {
        rows.extend(single_client_commits(runtime, sizes.single).await);
    }
    if wanted("concurrent") {
        rows.extend(concurrent_commits(runtime, sizes.clients, sizes.per_client).await);
    }
    if wanted("batch") {
        rows.extend(batch_commits(runtime, sizes.batches).await);
    }
    if wanted("latency") {
        rows.push(commit_to_handled_latency(runtime, sizes.latency).await);
    }
    rows
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let (sizes, catch_up_events) = if quick {
        let sizes = Sizes {
            single: 1000,
            clients: 64,
            per_client: 20,
            batches: 100,
            latency: 300,
        };
        (sizes, 50_000)
    } else {
        let sizes = Sizes {
            single: 5000,
            clients: 64,
            per_client: 500,
            batches: 500,
            latency: 2000,
        };
        (sizes, 1_000_000)
    };
    // DOLITTLE_BENCH_RUNTIME=process runs the head workloads against the dolittle-runtime
    // binary in a process of its own, as heads meet it; by default it runs in the bench's process.
    let in_process = std::env::var("DOLITTLE_BENCH_RUNTIME").as_deref() != Ok("process");
    // DOLITTLE_BENCH_ONLY=single,concurrent,batch,latency,catch-up,boot runs only those.
    let only = std::env::var("DOLITTLE_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|wanted| wanted.trim() == name))
    };
    let mut rows = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        if in_process {
            let server = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
            rows.extend(head_workloads(&server, &wanted, sizes).await);
            server.stop().await;
        } else {
            // Dropping it kills the process.
            let server = ChildRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
            rows.extend(head_workloads(&server, &wanted, sizes).await);
        }

        if wanted("catch-up") {
            let dir = tempfile::tempdir().expect("temp dir");
            let server = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
            rows.push(catch_up(&server, catch_up_events).await);
            server.stop().await;
        }
    });
    drop(runtime);
    if wanted("boot") {
        rows.push(boot_time_and_memory(100, 20));
    }

    println!("| workload | result | target | met |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} |",
            row.workload,
            row.result,
            row.target,
            match (row.target.as_str(), row.met) {
                ("-", _) => "-",
                (_, true) => "yes",
                (_, false) => "no",
            }
        );
    }
    let targeted: Vec<&Row> = rows.iter().filter(|row| row.target != "-").collect();
    let met = targeted.iter().filter(|row| row.met).count();
    println!(
        "summary: {met} of {} runtime targets met{}",
        targeted.len(),
        if quick { " (quick run)" } else { "" }
    );
}
