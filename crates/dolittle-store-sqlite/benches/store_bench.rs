//! The event store benchmark: prints a table and a one-line summary.
//!
//! Run it with
//!
//! ```text
//! cargo bench -p dolittle-store-sqlite --bench store-bench
//! ```
//!
//! Events carry an execution context like the ones the SDKs send (microservice, tenant,
//! version, correlation and environment, no claims). Stores are real files in a temporary folder (under `DOLITTLE_BENCH_DIR` when set, so that it
//! can be pointed at the disk to measure), written with full durability. Every scenario runs
//! `DOLITTLE_BENCH_RUNS` times (default 3) and the table shows the median and the range. The
//! first two rows measure, with every run, what the machine gives at that moment: how often the
//! disk syncs a rewritten block, and how many one-row transactions plain SQLite commits; on a
//! shared machine both move a lot, and the durable scenarios move with them. The scenarios take a
//! [`SharedEventStore`] and nothing else, so a backend is one more entry in [`backends`] and one
//! more column in the table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolittle_store::SharedEventStore;
use dolittle_store::conformance::numbered_events;
use dolittle_store_sqlite::SqliteEventStore;
use dolittle_types::{
    AggregateRootId, CorrelationId, EventType, EventTypeId, ExecutionContext, MicroserviceId,
    ScopeId, TenantId, UncommittedAggregateEvent, UncommittedAggregateEvents, Uuid, Version,
};

/// How long a throughput scenario commits.
const THROUGHPUT_DURATION: Duration = Duration::from_secs(2);
const AGGREGATES: usize = 10_000;
const EVENTS_PER_AGGREGATE: usize = 100;
const AGGREGATE_FETCHES: usize = 2_000;
const READ_PAGE: usize = 1_000;

/// An execution context as a head sends it.
fn execution_context() -> ExecutionContext {
    ExecutionContext {
        microservice: MicroserviceId(Uuid::from_u128(0xbe7c)),
        tenant: TenantId::DEVELOPMENT,
        version: Version {
            major: 1,
            ..Version::default()
        },
        correlation: CorrelationId::new_random(),
        claims: Vec::new(),
        environment: "Development".to_owned(),
    }
}

/// A store backend under measurement: a name and a way to open a fresh store.
struct Backend {
    name: &'static str,
    open: Box<dyn Fn(&str) -> SharedEventStore>,
}

fn backends(folder: &Path) -> Vec<Backend> {
    let sqlite_folder = folder.to_path_buf();
    vec![Backend {
        name: "sqlite",
        open: Box::new(move |name| {
            let path: PathBuf = sqlite_folder.join(format!("{name}.db"));
            Arc::new(SqliteEventStore::open(path).expect("opening a SQLite store"))
        }),
    }]
}

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

struct Scenario {
    name: &'static str,
    unit: &'static str,
    goal: Goal,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "the disk itself: 4 KiB rewrite + fdatasync (for context)",
        unit: "syncs/s",
        goal: Goal::AtLeast(0.0),
    },
    Scenario {
        name: "raw SQLite: 1-row transactions, WAL, synchronous=FULL (for context)",
        unit: "commits/s",
        goal: Goal::AtLeast(0.0),
    },
    Scenario {
        name: "durable 1-event commits, 1 writer",
        unit: "commits/s",
        goal: Goal::AtLeast(5_000.0),
    },
    Scenario {
        name: "durable 100-event commits, 1 writer",
        unit: "events/s",
        goal: Goal::AtLeast(150_000.0),
    },
    Scenario {
        name: "group commit, 8 committers",
        unit: "commits/s",
        goal: Goal::AtLeast(0.0),
    },
    Scenario {
        name: "group commit, 64 committers",
        unit: "commits/s",
        goal: Goal::AtLeast(30_000.0),
    },
    Scenario {
        name: "sequential read of 1M events",
        unit: "events/s",
        goal: Goal::AtLeast(1_000_000.0),
    },
    Scenario {
        name: "fetch a 100-event aggregate of 10k, p50",
        unit: "ms",
        goal: Goal::AtMost(0.5),
    },
    Scenario {
        name: "fetch a 100-event aggregate of 10k, p99",
        unit: "ms",
        goal: Goal::AtMost(f64::INFINITY),
    },
];

fn main() {
    let runs: usize = std::env::var("DOLITTLE_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .filter(|runs| *runs > 0)
        .unwrap_or(3);
    let folder = match std::env::var_os("DOLITTLE_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("a temporary folder for the stores");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let backends = backends(folder.path());
    // results[backend][scenario] = one value per run
    let mut results = vec![vec![Vec::new(); SCENARIOS.len()]; backends.len()];
    for (backend_index, backend) in backends.iter().enumerate() {
        eprintln!(
            "{}: preparing 10k aggregates of 100 events (1M events)",
            backend.name
        );
        let prepared = runtime.block_on(prepare_aggregates(backend.open.as_ref()));
        for run in 0..runs {
            eprintln!("{}: run {} of {runs}", backend.name, run + 1);
            let name = |scenario: &str| format!("{scenario}-{run}");
            let disk = disk_syncs(folder.path());
            let raw = raw_sqlite_commits(&folder.path().join(format!("raw-{run}.db")));
            let values = runtime.block_on(async {
                let single = commits(&(backend.open)(&name("single")), 1, 1).await;
                let batch = commits(&(backend.open)(&name("batch")), 1, 100).await * 100.0;
                let eight = commits(&(backend.open)(&name("group-8")), 8, 1).await;
                let sixty_four = commits(&(backend.open)(&name("group-64")), 64, 1).await;
                let read = sequential_read(&prepared).await;
                let (p50, p99) = fetch_aggregates(&prepared, run).await;
                [disk, raw, single, batch, eight, sixty_four, read, p50, p99]
            });
            for (scenario, value) in values.into_iter().enumerate() {
                results[backend_index][scenario].push(value);
            }
        }
    }
    print_table(&backends, &mut results, runs);
}

/// How many times a second the disk under the stores rewrites a 4 KiB block and syncs it: what
/// a durable commit costs at least. On a shared machine this moves, so it is measured with every
/// run.
fn disk_syncs(folder: &Path) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = folder.join("disk-probe");
    let file = std::fs::File::create(&path).expect("creating the disk probe");
    let block = [0x5au8; 4096];
    for index in 0..256u64 {
        file.write_all_at(&block, index * 4096)
            .expect("writing the disk probe");
    }
    file.sync_all().expect("syncing the disk probe");
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        file.write_all_at(&block, (syncs % 256) * 4096)
            .expect("writing the disk probe");
        file.sync_data().expect("syncing the disk probe");
        syncs += 1;
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    syncs as f64 / started.elapsed().as_secs_f64()
}

/// How many one-row transactions plain SQLite commits in a second, in WAL mode with
/// `synchronous=FULL` and its default automatic checkpoints: the baseline a store adds to.
fn raw_sqlite_commits(path: &Path) -> f64 {
    let connection = rusqlite::Connection::open(path).expect("opening a raw SQLite file");
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE events (sequence_number INTEGER PRIMARY KEY, content TEXT NOT NULL);",
        )
        .expect("preparing the raw SQLite file");
    let mut insert = connection
        .prepare("INSERT INTO events (content) VALUES (?1)")
        .expect("preparing an insert");
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        insert
            .execute(["{\"n\":1}"])
            .expect("committing to raw SQLite");
        commits += 1;
    }
    commits as f64 / started.elapsed().as_secs_f64()
}

/// Commits from `committers` concurrent tasks for [`THROUGHPUT_DURATION`]; returns commits/s.
async fn commits(store: &SharedEventStore, committers: usize, events_per_commit: usize) -> f64 {
    // Warm up: the file, the schema, the statement caches.
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

async fn prepare_aggregates(open: &dyn Fn(&str) -> SharedEventStore) -> Prepared {
    let store = open("aggregates");
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
    format!("{} {unit}", format_number(value, unit))
}

fn format_number(value: f64, unit: &str) -> String {
    if unit == "ms" {
        return format!("{value:.3}");
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
    grouped
}

fn format_goal(goal: Goal, unit: &str) -> String {
    match goal {
        Goal::AtLeast(target) if target > 0.0 => format!(">= {}", format_value(target, unit)),
        Goal::AtMost(target) if target.is_finite() => format!("<= {}", format_value(target, unit)),
        _ => "-".to_owned(),
    }
}

fn meets(goal: Goal, value: f64) -> bool {
    match goal {
        Goal::AtLeast(target) => value >= target,
        Goal::AtMost(target) => value <= target,
    }
}

fn print_table(backends: &[Backend], results: &mut [Vec<Vec<f64>>], runs: usize) {
    let mut header = "| scenario | target |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for backend in backends {
        header.push_str(&format!(" {} (median of {runs}, range) |", backend.name));
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    let mut summaries = Vec::new();
    let mut medians = vec![vec![0.0; SCENARIOS.len()]; backends.len()];
    for (scenario_index, scenario) in SCENARIOS.iter().enumerate() {
        let mut row = format!(
            "| {} | {} |",
            scenario.name,
            format_goal(scenario.goal, scenario.unit)
        );
        for (backend_index, backend_results) in results.iter_mut().enumerate() {
            let value = median(&mut backend_results[scenario_index]);
            medians[backend_index][scenario_index] = value;
            let mark = if meets(scenario.goal, value) {
                ""
            } else {
                " (missed)"
            };
            // `median` sorted the runs, so the range is the first and the last.
            let runs_of_scenario = &backend_results[scenario_index];
            let range = match (runs_of_scenario.first(), runs_of_scenario.last()) {
                (Some(low), Some(high)) if runs > 1 => format!(
                    " ({} to {})",
                    format_number(*low, scenario.unit),
                    format_number(*high, scenario.unit)
                ),
                _ => String::new(),
            };
            row.push_str(&format!(
                " {}{mark}{range} |",
                format_value(value, scenario.unit)
            ));
        }
        println!("{row}");
    }
    for (backend, values) in backends.iter().zip(&medians) {
        let targets: Vec<_> = SCENARIOS
            .iter()
            .zip(values)
            .filter(|(scenario, _)| format_goal(scenario.goal, scenario.unit) != "-")
            .collect();
        let met = targets
            .iter()
            .filter(|(scenario, value)| meets(scenario.goal, **value))
            .count();
        summaries.push(format!(
            "{}: {met}/{} targets met (single {}, 64 committers {}, batches {}, read {}, \
             aggregate p50 {}; raw SQLite {}, the disk {})",
            backend.name,
            targets.len(),
            format_value(values[2], "commits/s"),
            format_value(values[5], "commits/s"),
            format_value(values[3], "events/s"),
            format_value(values[6], "events/s"),
            format_value(values[7], "ms"),
            format_value(values[1], "commits/s"),
            format_value(values[0], "syncs/s"),
        ));
    }
    println!("\nsummary: {}", summaries.join("; "));
}
