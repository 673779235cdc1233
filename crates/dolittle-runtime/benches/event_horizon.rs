//! Event horizon benchmark: two Runtimes in this process over real gRPC on loopback, each with
//! its own embedded SQLite stores in a temporary folder (issue 10, item 13).
//!
//! Run: `cargo bench -p dolittle-runtime --bench event_horizon` (add `-- --quick` for a short
//! run). Each workload runs 3 times; the table shows the medians, then a summary line.
//! - catch-up: 100,000 events already in the producer's public stream partition, from the
//!   consumer's Subscribe until all are in its scoped event log (target >= 50,000 events/s);
//! - live latency: one public event committed at the producer at a time, until a scoped event
//!   handler in a head at the consumer receives it, through the producer's public filter in a
//!   head (targets p50 <= 5 ms, p99 <= 20 ms).

#[path = "../tests/horizon/mod.rs"]
mod horizon;

use std::time::{Duration, Instant};

use dolittle_store::{
    FilterDefinition, ProcessorKey, ProcessorKind, StreamDefinition, StreamEntry,
    StreamProcessorState,
};
use dolittle_types::{
    EventProcessorId, ExecutionContext, PartitionId, ScopeId, TenantId, UncommittedEvent, Uuid,
};
use horizon::*;

const RUNS: usize = 3;
const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x4a4a4a4a_0000_4000_8000_0000000000b1));

async fn start_pair(
    producer_dir: &std::path::Path,
    consumer_dir: &std::path::Path,
) -> (Node, Node) {
    let producer = Node::start(
        producer_dir,
        PRODUCER,
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &[],
            consents: &[ConsentLine::standard()],
        },
        0,
    )
    .await;
    let producers = [(PRODUCER, producer.public.port())];
    let consumer = Node::start(
        consumer_dir,
        CONSUMER,
        &Setup {
            tenants: &[TenantId::DEVELOPMENT],
            producers: &producers,
            consents: &[],
        },
        0,
    )
    .await;
    (producer, consumer)
}

/// Fills the producer's public stream partition directly through its store, as its public
/// filter would, so that the catch-up measures the horizon alone.
async fn fill_public_stream(producer: &Node, count: usize) {
    let store = producer.store(TenantId::DEVELOPMENT);
    store
        .put_stream_definition(
            ScopeId::DEFAULT,
            &StreamDefinition {
                stream: PUBLIC_STREAM,
                partitioned: true,
                public: true,
                filter: FilterDefinition::Remote,
            },
        )
        .await
        .expect("definition");
    let key = ProcessorKey {
        kind: ProcessorKind::Filter,
        scope: ScopeId::DEFAULT,
        processor: EventProcessorId(PUBLIC_STREAM.0),
    };
    let context = ExecutionContext {
        microservice: PRODUCER,
        tenant: TenantId::DEVELOPMENT,
        ..ExecutionContext::default()
    };
    let mut written = 0;
    while written < count {
        let size = (count - written).min(1000);
        let events = (0..size)
            .map(|n| UncommittedEvent {
                event_source: PARTITION.into(),
                event_type: event_type(),
                public: true,
                content: format!(
                    "{{\"n\":{},\"name\":\"a small public event\"}}",
                    written + n
                ),
            })
            .collect();
        let committed = store.commit(events, &context).await.expect("commit");
        let next = committed
            .last()
            .map_or(0, |event| event.sequence_number + 1);
        let entries = committed
            .iter()
            .map(|event| StreamEntry {
                partition: PartitionId::from(PARTITION),
                sequence_number: event.sequence_number,
            })
            .collect();
        let state = StreamProcessorState {
            position: next,
            ..StreamProcessorState::default()
        };
        store
            .append_to_stream(ScopeId::DEFAULT, PUBLIC_STREAM, entries, &key, &state)
            .await
            .expect("append");
        written += size;
    }
}

/// Events per second from Subscribe until the scoped log holds them all.
async fn catch_up(count: usize) -> f64 {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(producer_dir.path(), consumer_dir.path()).await;
    fill_public_stream(&producer, count).await;
    let consumer_store = consumer.store(TenantId::DEVELOPMENT);
    let mut length = consumer_store.watch_log(SCOPE);
    let channel = consumer.channel().await;
    let started = Instant::now();
    let response = subscribe(
        channel,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    while (*length.borrow_and_update() as usize) < count {
        tokio::time::timeout(Duration::from_secs(120), length.changed())
            .await
            .expect("catch-up progresses")
            .expect("store open");
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    consumer.stop().await;
    producer.stop().await;
    rate
}

/// Commit at the producer -> scoped handler at the consumer, one event at a time.
async fn live_latency(samples: usize) -> Vec<Duration> {
    let (producer_dir, consumer_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (producer, consumer) = start_pair(producer_dir.path(), consumer_dir.path()).await;
    let _filter = PublicFilter::register(producer.channel().await, PRODUCER).await;
    let mut handler =
        EventHandler::register(consumer.channel().await, CONSUMER, HANDLER, SCOPE).await;
    let response = subscribe(
        consumer.channel().await,
        TenantId::DEVELOPMENT,
        TenantId::DEVELOPMENT,
        PARTITION,
    )
    .await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    let channel = producer.channel().await;
    let warm_up = 20;
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..(warm_up + samples) {
        let started = Instant::now();
        commit(
            channel.clone(),
            PRODUCER,
            TenantId::DEVELOPMENT,
            vec![event(PARTITION, true, n as u64)],
        )
        .await;
        let expected = format!("{{\"n\":{n}}}");
        loop {
            let (_, handled) = handler.next(1).await.remove(0);
            if handled.content == expected {
                break;
            }
        }
        if n >= warm_up {
            latencies.push(started.elapsed());
        }
    }
    consumer.stop().await;
    producer.stop().await;
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let (events, samples) = if quick { (10_000, 100) } else { (100_000, 500) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 1..=RUNS {
        let rate = runtime.block_on(catch_up(events));
        let latencies = runtime.block_on(live_latency(samples));
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        eprintln!(
            "run {run}: catch-up {rate:.0} events/s, live p50 {}, p99 {}",
            millis(p50),
            millis(p99)
        );
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    let rate = median(rates);
    let (p50, p99) = (median(p50s), median(p99s));
    let rows = [
        (
            format!("catch-up of {events} public events into the scoped log"),
            format!("{rate:.0} events/s"),
            ">= 50000 events/s".to_owned(),
            rate >= 50_000.0,
        ),
        (
            format!("live commit -> scoped handler, p50 ({samples} events)"),
            millis(p50),
            "<= 5 ms".to_owned(),
            p50 <= Duration::from_millis(5),
        ),
        (
            format!("live commit -> scoped handler, p99 ({samples} events)"),
            millis(p99),
            "<= 20 ms".to_owned(),
            p99 <= Duration::from_millis(20),
        ),
    ];
    println!("| workload (median of {RUNS} runs) | result | target | met |");
    println!("|---|---|---|---|");
    for (workload, result, target, met) in &rows {
        println!(
            "| {workload} | {result} | {target} | {} |",
            if *met { "yes" } else { "no" }
        );
    }
    let met = rows.iter().filter(|row| row.3).count();
    println!(
        "summary: event horizon catch-up {rate:.0} events/s, live p50 {} p99 {}; {met} of {} targets met",
        millis(p50),
        millis(p99),
        rows.len()
    );
}
