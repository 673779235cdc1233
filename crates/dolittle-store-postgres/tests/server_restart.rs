//! The fault test: PostgreSQL really stops (an immediate shutdown, as in a crash) while commits
//! are in flight, and starts again.
//!
//! It runs against a throw-away cluster that it creates under a temporary folder with `initdb`
//! and `pg_ctl` on a free port, so the shared server never goes down. A guard stops the cluster
//! and deletes it whatever happens. The PostgreSQL binaries are looked for in
//! `DOLITTLE_TEST_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`, then `PATH`; when running
//! as root, the cluster is run as the `postgres` user (the server refuses to run as root).
//!
//! Run it alone with `cargo test -p dolittle-store-postgres --test server_restart`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dolittle_store::conformance::{execution_context, numbered_events, within_timeout};
use dolittle_store::{EventStore, LogFilter, ProcessorKey, ProcessorKind, StoreError};
use dolittle_store_postgres::PostgresEventStore;
use dolittle_types::{AggregateRootId, EventProcessorId, ScopeId};

/// The folder of `initdb` and `pg_ctl`, if PostgreSQL is installed here.
fn postgres_binaries() -> Option<PathBuf> {
    if let Ok(folder) = std::env::var("DOLITTLE_TEST_PG_BIN") {
        return Some(PathBuf::from(folder));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|folder| folder.join("pg_ctl").exists())
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster of this test's own, stopped and deleted when dropped.
struct ThrowAwayCluster {
    binaries: PathBuf,
    as_postgres_user: bool,
    folder: tempfile::TempDir,
    port: u16,
}

impl ThrowAwayCluster {
    fn create(binaries: PathBuf) -> Self {
        let folder = tempfile::Builder::new()
            .prefix("dolittle-pg-fault-")
            .tempdir()
            .expect("a temporary folder");
        let as_postgres_user = running_as_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(folder.path())
                .status()
                .expect("running chown");
            assert!(status.success(), "giving the cluster folder to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            binaries,
            as_postgres_user,
            folder,
            port,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.folder.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            self.port
        )
    }

    fn run(&self, program: &str, arguments: &[&str]) {
        let program = self.binaries.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(arguments)
            .current_dir(self.folder.path())
            .output()
            .unwrap_or_else(|error| panic!("running {}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{} {arguments:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.folder.path().display()
        );
        let log = self.folder.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server the way a crash would: no checkpoint, clients cut off.
    fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn is_running(&self) -> bool {
        Path::new(&self.data()).join("postmaster.pid").exists()
    }
}

impl Drop for ThrowAwayCluster {
    fn drop(&mut self) {
        if self.is_running() {
            let program = self.binaries.join("pg_ctl");
            let data = self.data();
            let arguments = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if self.as_postgres_user {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&program)
                    .args(arguments)
                    .output()
            } else {
                Command::new(&program).args(arguments).output()
            };
        }
    }
}

/// Awaits an operation's result, retrying while the store reports itself unavailable (the
/// server has just come back and the store reconnects on use).
async fn once_available<T, F, Fut>(what: &str, mut operation: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    within_timeout(what, async {
        loop {
            match operation().await {
                Ok(value) => return value,
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("{what}: {error:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashing_and_restarting_makes_the_store_unavailable_then_it_recovers_by_itself() {
    let Some(binaries) = postgres_binaries() else {
        let message = "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: set \
                       DOLITTLE_TEST_PG_BIN to their folder";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED the server restart test: {message}");
        return;
    };
    let cluster = ThrowAwayCluster::create(binaries);
    cluster.start();
    let store = Arc::new(
        PostgresEventStore::connect(dolittle_store_postgres::PostgresConfig {
            schema: "tenant".to_owned(),
            ..dolittle_store_postgres::PostgresConfig::new(cluster.url())
        })
        .await
        .expect("connecting to the throw-away cluster"),
    );
    let context = execution_context();
    store
        .commit(numbered_events("before", 0, 3), &context)
        .await
        .expect("committing before the crash");

    // Committers run through the crash; each batch of 5 is tagged so that the log shows
    // whether it went in whole.
    let running = Arc::new(AtomicBool::new(true));
    let mut committers = Vec::new();
    for committer in 0..6 {
        let store = store.clone();
        let running = running.clone();
        let context = context.clone();
        committers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut batch = 0;
            while running.load(Ordering::Relaxed) {
                let tag = format!("c{committer}-b{batch}");
                let result = store.commit(numbered_events(&tag, 0, 5), &context).await;
                outcomes.push((tag, result));
                batch += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            outcomes
        }));
    }
    let mut receiver = store.watch_log(ScopeId::DEFAULT);
    within_timeout(
        "commits under way",
        receiver.wait_for(|length| *length >= 60),
    )
    .await
    .expect("the store is open");

    cluster.crash();
    let down = store
        .commit(numbered_events("while-down", 0, 1), &context)
        .await;
    assert!(
        matches!(down, Err(StoreError::Unavailable(_))),
        "a commit while the server is down: {down:?}"
    );
    let read = store
        .read_log(ScopeId::DEFAULT, 0, 10, &LogFilter::default())
        .await;
    assert!(
        matches!(read, Err(StoreError::Unavailable(_))),
        "a read while the server is down: {read:?}"
    );
    let aggregate = store
        .fetch_aggregate(AggregateRootId::new_random(), &"kitchen".into())
        .await;
    assert!(
        matches!(aggregate, Err(StoreError::Unavailable(_))),
        "an aggregate fetch while the server is down: {aggregate:?}"
    );
    let key = ProcessorKey {
        kind: ProcessorKind::EventHandler,
        scope: ScopeId::DEFAULT,
        processor: EventProcessorId::new_random(),
    };
    let state = store.get_processor_state(&key).await;
    assert!(
        matches!(state, Err(StoreError::Unavailable(_))),
        "a state read while the server is down: {state:?}"
    );

    cluster.start();
    let after = once_available("a commit after the restart", || {
        store.commit(numbered_events("after", 0, 2), &context)
    })
    .await;
    running.store(false, Ordering::Relaxed);
    let mut acknowledged = BTreeMap::new();
    let mut refused = 0;
    for committer in committers {
        for (tag, result) in committer.await.expect("a committer") {
            match result {
                Ok(events) => {
                    acknowledged.insert(tag, events);
                }
                Err(StoreError::Unavailable(_)) => refused += 1,
                Err(error) => panic!("a commit during the crash failed oddly: {error:?}"),
            }
        }
    }
    assert!(refused > 0, "some commits met the server down");

    let log = once_available("a read after the restart", || async {
        let mut events = Vec::new();
        let mut from = 0;
        loop {
            let page = store
                .read_log(ScopeId::DEFAULT, from, 1000, &LogFilter::default())
                .await?;
            if page.events.is_empty() {
                return Ok(events);
            }
            from = page.next;
            events.extend(page.events);
        }
    })
    .await;
    for (number, event) in log.iter().enumerate() {
        assert_eq!(event.sequence_number, number as u64, "no gap, no duplicate");
    }
    acknowledged.insert("after".to_owned(), after);
    for (tag, events) in &acknowledged {
        for event in events {
            assert_eq!(
                &log[event.sequence_number as usize], event,
                "acknowledged batch {tag} is in the log as acknowledged"
            );
        }
    }
    // Every batch is wholly in or wholly out: its 5 events, contiguous, or none of them.
    let mut positions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &log {
        positions
            .entry(event.event_source.as_str())
            .or_default()
            .push(event.sequence_number);
    }
    for (tag, numbers) in positions {
        let expected = match tag {
            "before" => 3,
            "after" => 2,
            _ => 5,
        };
        assert_eq!(numbers.len(), expected, "batch {tag} is whole");
        assert!(
            numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "batch {tag} is contiguous"
        );
    }

    // The listener reconnected too: a notification from another process wakes watchers.
    let scope = ScopeId::new_random();
    let mut scoped = store.watch_log(scope);
    let (client, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the restarted cluster");
    tokio::spawn(connection);
    let woken = within_timeout("a notification after the restart", async {
        loop {
            client
                .execute(
                    "SELECT pg_notify('dolittle_event_store', $1)",
                    &[&format!("tenant\nl {scope} 7")],
                )
                .await
                .expect("notifying");
            if tokio::time::timeout(Duration::from_millis(200), scoped.changed())
                .await
                .is_ok()
            {
                break *scoped.borrow_and_update();
            }
        }
    })
    .await;
    assert_eq!(woken, 7);
    assert_eq!(
        *store.watch_log(ScopeId::DEFAULT).borrow(),
        log.len() as u64
    );
}
