//! The event store benchmark, PostgreSQL and SQLite side by side: prints a table and a one-line
//! summary.
//!
//! Run it with
//!
//! ```text
//! bash scripts/ensure-postgres.sh && cargo bench -p dolittle-store-postgres --bench store-bench
//! ```
//!
//! The workloads are those of the SQLite benchmark (`dolittle-store-sqlite`'s `store-bench`),
//! run through the `EventStore` trait on every backend: durable 1-event commits from one writer,
//! 100-event commits, group commit with 8 and 64 committers, a sequential read of 1M events,
//! and fetches of a 100-event aggregate among 10k. PostgreSQL runs in a database created for
//! the run (on `DOLITTLE_TEST_POSTGRES_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped at the end; SQLite in a temporary
//! folder (under `DOLITTLE_BENCH_DIR` when set). Every scenario runs `DOLITTLE_BENCH_RUNS` times
//! (default 3) and the table shows the median. `DOLITTLE_BENCH_BACKENDS=postgres` (or `sqlite`)
//! runs one backend only.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolittle_store::SharedEventStore;
use dolittle_store::conformance::{execution_context, numbered_events};
use dolittle_store_postgres::PostgresEventStore;
use dolittle_store_sqlite::SqliteEventStore;
use dolittle_types::{
    AggregateRootId, EventType, EventTypeId, ScopeId, UncommittedAggregateEvent,
    UncommittedAggregateEvents, Uuid,
};
use support::TestDatabase;

/// How long a throughput scenario commits.
const THROUGHPUT_DURATION: Duration = Duration::from_secs(2);
const AGGREGATES: usize = 10_000;
const EVENTS_PER_AGGREGATE: usize = 100;
const AGGREGATE_FETCHES: usize = 2_000;
const READ_PAGE: usize = 1_000;

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

struct Scenario {
    name: &'static str,
    unit: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "raw PostgreSQL: 1-row INSERT transactions, 1 client (for context)",
        unit: "commits/s",
    },
    Scenario {
        name: "durable 1-event commits, 1 writer",
        unit: "commits/s",
    },
    Scenario {
        name: "durable 100-event commits, 1 writer",
        unit: "events/s",
    },
    Scenario {
        name: "group commit, 8 committers",
        unit: "commits/s",
    },
    Scenario {
        name: "group commit, 64 committers",
        unit: "commits/s",
    },
    Scenario {
        name: "sequential read of 1M events",
        unit: "events/s",
    },
    Scenario {
        name: "fetch a 100-event aggregate of 10k, p50",
        unit: "ms",
    },
    Scenario {
        name: "fetch a 100-event aggregate of 10k, p99",
        unit: "ms",
    },
];

/// Where a backend's stores live.
enum Location {
    Postgres(TestDatabase),
    Sqlite(tempfile::TempDir),
}

/// A backend under measurement, with its own targets (issues 2 and 3), one per scenario.
struct Backend {
    name: &'static str,
    goals: [Goal; 8],
    location: Location,
}

impl Backend {
    async fn open(&self, name: &str) -> SharedEventStore {
        match &self.location {
            Location::Postgres(database) => Arc::new(
                PostgresEventStore::connect(database.config(&name.replace('-', "_")))
                    .await
                    .expect("opening a PostgreSQL store"),
            ),
            Location::Sqlite(folder) => {
                let path: PathBuf = folder.path().join(format!("{name}.db"));
                Arc::new(SqliteEventStore::open(path).expect("opening a SQLite store"))
            }
        }
    }
}

async fn backends() -> Vec<Backend> {
    let wanted =
        std::env::var("DOLITTLE_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".to_owned());
    let mut backends = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        match name {
            "postgres" => backends.push(Backend {
                name: "postgres",
                goals: [
                    Goal::None,
                    Goal::AtLeast(4_000.0),
                    Goal::AtLeast(50_000.0),
                    Goal::None,
                    Goal::AtLeast(20_000.0),
                    Goal::AtLeast(300_000.0),
                    Goal::None,
                    Goal::None,
                ],
                location: Location::Postgres(TestDatabase::create("bench").await),
            }),
            "sqlite" => backends.push(Backend {
                name: "sqlite",
                goals: [
                    Goal::None,
                    Goal::AtLeast(5_000.0),
                    Goal::AtLeast(150_000.0),
                    Goal::None,
                    Goal::AtLeast(30_000.0),
                    Goal::AtLeast(1_000_000.0),
                    Goal::AtMost(0.5),
                    Goal::None,
                ],
                location: Location::Sqlite(
                    match std::env::var_os("DOLITTLE_BENCH_DIR") {
                        Some(parent) => tempfile::tempdir_in(parent),
                        None => tempfile::tempdir(),
                    }
                    .expect("a temporary folder for the stores"),
                ),
            }),
            other => panic!("unknown backend {other:?} in DOLITTLE_BENCH_BACKENDS"),
        }
    }
    backends
}

fn main() {
    let runs: usize = std::env::var("DOLITTLE_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .filter(|runs| *runs > 0)
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let backends = runtime.block_on(backends());
    // results[backend][scenario] = one value per run
    let mut results = vec![vec![Vec::new(); SCENARIOS.len()]; backends.len()];
    for (backend_index, backend) in backends.iter().enumerate() {
        eprintln!(
            "{}: preparing 10k aggregates of 100 events (1M events)",
            backend.name
        );
        let prepared = runtime.block_on(prepare_aggregates(backend));
        for run in 0..runs {
            eprintln!("{}: run {} of {runs}", backend.name, run + 1);
            let name = |scenario: &str| format!("{scenario}-{run}");
            let values = runtime.block_on(async {
                let raw = match &backend.location {
                    Location::Postgres(database) => raw_postgres_commits(database).await,
                    Location::Sqlite(_) => f64::NAN,
                };
                let single = commits(&backend.open(&name("single")).await, 1, 1).await;
                let batch = commits(&backend.open(&name("batch")).await, 1, 100).await * 100.0;
                let eight = commits(&backend.open(&name("group-8")).await, 8, 1).await;
                let sixty_four = commits(&backend.open(&name("group-64")).await, 64, 1).await;
                let read = sequential_read(&prepared).await;
                let (p50, p99) = fetch_aggregates(&prepared, run).await;
                [raw, single, batch, eight, sixty_four, read, p50, p99]
            });
            for (scenario, value) in values.into_iter().enumerate() {
                results[backend_index][scenario].push(value);
            }
        }
    }
    print_table(&backends, &mut results, runs);
    // The PostgreSQL database is dropped with the backends, inside the runtime.
    runtime.block_on(async move { drop(backends) });
}

/// What the server does without the store: single-row INSERTs in their own transactions from
/// one client, for [`THROUGHPUT_DURATION`]; returns commits/s.
async fn raw_postgres_commits(database: &TestDatabase) -> f64 {
    let client = database.client().await;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.raw_probe (id bigint PRIMARY KEY, payload text)",
        )
        .await
        .expect("creating the probe table");
    let insert = client
        .prepare("INSERT INTO public.raw_probe (id, payload) VALUES ($1, $2)")
        .await
        .expect("preparing");
    let first: i64 = client
        .query_one("SELECT coalesce(max(id), 0) + 1 FROM public.raw_probe", &[])
        .await
        .expect("reading the probe table")
        .get(0);
    let started = Instant::now();
    let mut commits = 0i64;
    while started.elapsed() < THROUGHPUT_DURATION {
        client
            .execute(&insert, &[&(first + commits), &"{\"n\":1}"])
            .await
            .expect("inserting");
        commits += 1;
    }
    commits as f64 / started.elapsed().as_secs_f64()
}

/// Commits from `committers` concurrent tasks for [`THROUGHPUT_DURATION`]; returns commits/s.
async fn commits(store: &SharedEventStore, committers: usize, events_per_commit: usize) -> f64 {
    // Warm up: the connection, the schema, the statement caches.
    store
        .commit(
            numbered_events("warm-up", 0, events_per_commit),
            &execution_context(),
        )
        .await
        .expect("committing");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for committer in 0..committers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let context = execution_context();
            let source = format!("committer-{committer}");
            let mut commits = 0u64;
            while started.elapsed() < THROUGHPUT_DURATION {
                let events = numbered_events(&source, commits as usize, events_per_commit);
                store.commit(events, &context).await.expect("committing");
                commits += 1;
            }
            commits
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a committer");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A store with 10k aggregates of 100 events each, committed in rounds of 10 events per
/// aggregate so that an aggregate's events are spread over the log.
struct Prepared {
    store: SharedEventStore,
    length: u64,
}

fn aggregate_root() -> AggregateRootId {
    AggregateRootId(Uuid::from_u128(0xa66))
}

fn aggregate_source(number: usize) -> String {
    // Random-looking ids, as real event sources are.
    Uuid::from_u128(0x9e37_79b9_7f4a_7c15_u128.wrapping_mul(number as u128 + 1)).to_string()
}

async fn prepare_aggregates(backend: &Backend) -> Prepared {
    let store = backend.open("aggregates").await;
    let rounds = 10;
    let per_round = EVENTS_PER_AGGREGATE / rounds;
    let tasks_count = 16;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for task in 0..tasks_count {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let context = execution_context();
                for aggregate in (task..AGGREGATES).step_by(tasks_count) {
                    let events = UncommittedAggregateEvents {
                        aggregate_root: aggregate_root(),
                        event_source: aggregate_source(aggregate).into(),
                        expected_version: (round * per_round) as u64,
                        events: (0..per_round)
                            .map(|index| UncommittedAggregateEvent {
                                event_type: EventType::new(
                                    EventTypeId(Uuid::from_u128(1 + (index % 4) as u128)),
                                    1,
                                ),
                                public: false,
                                content: format!(
                                    "{{\"aggregate\":{aggregate},\"round\":{round},\
                                     \"index\":{index},\"text\":\"some payload text\"}}"
                                ),
                            })
                            .collect(),
                    };
                    store
                        .commit_aggregate(events, &context)
                        .await
                        .expect("committing an aggregate");
                }
            }));
        }
        for task in tasks {
            task.await.expect("a preparing task");
        }
    }
    let length = *store.watch_log(ScopeId::DEFAULT).borrow();
    assert_eq!(length, (AGGREGATES * EVENTS_PER_AGGREGATE) as u64);
    Prepared { store, length }
}

/// Reads the whole log in pages; returns events/s.
async fn sequential_read(prepared: &Prepared) -> f64 {
    let filter = Default::default();
    let started = Instant::now();
    let mut from = 0;
    let mut read = 0u64;
    while from < prepared.length {
        let page = prepared
            .store
            .read_log(ScopeId::DEFAULT, from, READ_PAGE, &filter)
            .await
            .expect("reading");
        read += page.events.len() as u64;
        from = page.next;
    }
    assert_eq!(read, prepared.length);
    read as f64 / started.elapsed().as_secs_f64()
}

/// Fetches random aggregates one at a time; returns the p50 and p99 latency in milliseconds.
async fn fetch_aggregates(prepared: &Prepared, run: usize) -> (f64, f64) {
    let mut latencies = Vec::with_capacity(AGGREGATE_FETCHES);
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ run as u64;
    for _ in 0..AGGREGATE_FETCHES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let aggregate = (state % AGGREGATES as u64) as usize;
        let started = Instant::now();
        let fetched = prepared
            .store
            .fetch_aggregate(aggregate_root(), &aggregate_source(aggregate).into())
            .await
            .expect("fetching");
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(fetched.events.len(), EVENTS_PER_AGGREGATE);
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    (percentile(0.5), percentile(0.99))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn format_value(value: f64, unit: &str) -> String {
    if value.is_nan() {
        return "-".to_owned();
    }
    if unit == "ms" {
        return format!("{value:.3} {unit}");
    }
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{grouped} {unit}")
}

fn format_goal(goal: Goal, unit: &str) -> String {
    match goal {
        Goal::AtLeast(target) => format!(">= {}", format_value(target, unit)),
        Goal::AtMost(target) => format!("<= {}", format_value(target, unit)),
        Goal::None => "-".to_owned(),
    }
}

fn meets(goal: Goal, value: f64) -> bool {
    match goal {
        Goal::AtLeast(target) => value >= target,
        Goal::AtMost(target) => value <= target,
        Goal::None => true,
    }
}

fn print_table(backends: &[Backend], results: &mut [Vec<Vec<f64>>], runs: usize) {
    let mut header = "| scenario |".to_owned();
    let mut rule = "|---|".to_owned();
    for backend in backends {
        header.push_str(&format!(
            " {} target | {} (median of {runs}) |",
            backend.name, backend.name
        ));
        rule.push_str("---|---:|");
    }
    println!("{header}\n{rule}");
    let mut medians = vec![vec![0.0; SCENARIOS.len()]; backends.len()];
    for (scenario_index, scenario) in SCENARIOS.iter().enumerate() {
        let mut row = format!("| {} |", scenario.name);
        for (backend_index, backend) in backends.iter().enumerate() {
            let value = median(&mut results[backend_index][scenario_index]);
            medians[backend_index][scenario_index] = value;
            let goal = backend.goals[scenario_index];
            let mark = if meets(goal, value) { "" } else { " (missed)" };
            row.push_str(&format!(
                " {} | {}{mark} |",
                format_goal(goal, scenario.unit),
                format_value(value, scenario.unit)
            ));
        }
        println!("{row}");
    }
    let summaries: Vec<String> = backends
        .iter()
        .zip(&medians)
        .map(|(backend, values)| {
            let targets: Vec<_> = backend
                .goals
                .iter()
                .zip(values)
                .filter(|(goal, _)| !matches!(goal, Goal::None))
                .collect();
            let met = targets
                .iter()
                .filter(|(goal, value)| meets(**goal, **value))
                .count();
            format!(
                "{}: {met}/{} targets met (single {}, 64 committers {}, batches {}, read {}, \
                 aggregate p50 {}{})",
                backend.name,
                targets.len(),
                format_value(values[1], "commits/s"),
                format_value(values[4], "commits/s"),
                format_value(values[2], "events/s"),
                format_value(values[5], "events/s"),
                format_value(values[6], "ms"),
                if values[0].is_nan() {
                    String::new()
                } else {
                    format!("; raw PostgreSQL {}", format_value(values[0], "commits/s"))
                },
            )
        })
        .collect();
    println!("\nsummary: {}", summaries.join("; "));
}
