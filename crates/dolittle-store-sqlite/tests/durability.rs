//! Acknowledged commits survive a process that is killed in the middle of a stream of commits.
//!
//! The test runs this very test binary again as a child (selected by an environment variable)
//! that commits from several tasks at once and prints every acknowledgement; the parent kills
//! it with SIGKILL after a while, opens the file again and checks that every acknowledged commit
//! is there, at the sequence numbers it was acknowledged with, and that the log has no gap.
//! SIGKILL loses what the process had not handed to the kernel; it cannot simulate a power
//! failure, which `synchronous=FULL` covers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use dolittle_store::conformance::{execution_context, read_whole_log};
use dolittle_store::{
    ProcessorKey, ProcessorKind, SharedEventStore, StreamEntry, StreamProcessorState,
};
use dolittle_store_sqlite::SqliteEventStore;
use dolittle_types::{EventProcessorId, EventType, EventTypeId, ScopeId, StreamId, Uuid};

const CHILD_PATH_VARIABLE: &str = "DOLITTLE_DURABILITY_CHILD_DATABASE";
const COMMITTERS: usize = 8;
const ACKNOWLEDGEMENTS_BEFORE_THE_KILL: usize = 3000;

fn filter_key() -> ProcessorKey {
    ProcessorKey {
        kind: ProcessorKind::Filter,
        scope: ScopeId::DEFAULT,
        processor: EventProcessorId(Uuid::from_u128(0xf17e)),
    }
}

fn filtered_stream() -> StreamId {
    StreamId(Uuid::from_u128(0x57))
}

/// The child's side: commit until killed, printing `committer commit first count` for every
/// acknowledged commit, while a filter appends every tenth event to a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child_commits_until_killed() {
    let Ok(path) = std::env::var(CHILD_PATH_VARIABLE) else {
        return;
    };
    let store: SharedEventStore =
        Arc::new(SqliteEventStore::open(path).expect("the child opens the store"));
    let mut tasks = Vec::new();
    for committer in 0..COMMITTERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let context = execution_context();
            for commit in 0usize.. {
                let size = 1 + (committer + commit) % 4;
                let events = (0..size)
                    .map(|index| dolittle_types::UncommittedEvent {
                        event_source: format!("committer-{committer}").into(),
                        event_type: EventType::new(EventTypeId(Uuid::from_u128(1)), 1),
                        public: false,
                        content: format!("{{\"c\":{committer},\"k\":{commit},\"i\":{index}}}"),
                    })
                    .collect();
                let committed = store.commit(events, &context).await.expect("committing");
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "ack {committer} {commit} {} {size}",
                    committed[0].sequence_number
                )
                .expect("printing an acknowledgement");
                out.flush().expect("flushing");
            }
        }));
    }
    let filter = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut position = 0;
            let mut watcher = store.watch_log(ScopeId::DEFAULT);
            loop {
                let length = *watcher.borrow_and_update();
                let entries: Vec<_> = (position..length)
                    .filter(|number| number % 10 == 0)
                    .map(|sequence_number| StreamEntry {
                        partition: Default::default(),
                        sequence_number,
                    })
                    .collect();
                let state = StreamProcessorState {
                    position: length,
                    ..Default::default()
                };
                store
                    .append_to_stream(
                        ScopeId::DEFAULT,
                        filtered_stream(),
                        entries,
                        &filter_key(),
                        &state,
                    )
                    .await
                    .expect("appending");
                position = length;
                watcher.changed().await.expect("the store is open");
            }
        })
    };
    for task in tasks {
        task.await.expect("a committer");
    }
    filter.await.expect("the filter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_a_killed_process() {
    if std::env::var(CHILD_PATH_VARIABLE).is_ok() {
        return;
    }
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "durability_child_commits_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PATH_VARIABLE, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the child");
    let stdout = child.stdout.take().expect("the child's output");
    // committer -> (commit -> (first sequence number, size))
    let mut acknowledged: BTreeMap<(usize, usize), (u64, usize)> = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    while acknowledged.len() < ACKNOWLEDGEMENTS_BEFORE_THE_KILL {
        let Some(line) = lines.next() else {
            panic!(
                "the child stopped after {} acknowledgements",
                acknowledged.len()
            );
        };
        let line = line.expect("reading the child's output");
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() != Some(&"ack") {
            continue;
        }
        let number = |index: usize| fields[index].parse::<u64>().expect("a number");
        acknowledged.insert(
            (number(1) as usize, number(2) as usize),
            (number(3), number(4) as usize),
        );
    }
    child.kill().expect("killing the child");
    child.wait().expect("reaping the child");
    // Acknowledgements printed before the kill but not read yet count too.
    for line in lines.map_while(Result::ok) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() == 5 && fields[0] == "ack" {
            let number = |index: usize| fields[index].parse::<u64>().expect("a number");
            acknowledged.insert(
                (number(1) as usize, number(2) as usize),
                (number(3), number(4) as usize),
            );
        }
    }

    let store: SharedEventStore =
        Arc::new(SqliteEventStore::open(&path).expect("reopening after the kill"));
    let log = read_whole_log(&store, ScopeId::DEFAULT).await;
    for (number, event) in log.iter().enumerate() {
        assert_eq!(event.sequence_number, number as u64, "the log has no gap");
    }
    for ((committer, commit), (first, size)) in &acknowledged {
        for index in 0..*size {
            let event = log
                .get(*first as usize + index)
                .unwrap_or_else(|| panic!("acknowledged event {} is lost", first + index as u64));
            assert_eq!(
                event.content,
                format!("{{\"c\":{committer},\"k\":{commit},\"i\":{index}}}"),
                "an acknowledged event is at its acknowledged sequence number"
            );
        }
    }
    let state = store
        .get_processor_state(&filter_key())
        .await
        .expect("reading the filter's state")
        .unwrap_or_default();
    let stream = store
        .read_stream(ScopeId::DEFAULT, filtered_stream(), 0, None, usize::MAX)
        .await
        .expect("reading the stream");
    let expected: Vec<u64> = (0..state.position)
        .filter(|number| number % 10 == 0)
        .collect();
    let appended: Vec<u64> = stream
        .iter()
        .map(|entry| entry.event.sequence_number)
        .collect();
    assert_eq!(
        appended, expected,
        "the stream holds exactly what the filter's saved position says it appended"
    );
    assert!(state.position <= log.len() as u64);
    let next = store
        .commit(
            vec![dolittle_types::UncommittedEvent {
                event_source: "after".into(),
                event_type: EventType::new(EventTypeId(Uuid::from_u128(1)), 1),
                public: false,
                content: "{}".to_owned(),
            }],
            &execution_context(),
        )
        .await
        .expect("committing after the crash");
    assert_eq!(next[0].sequence_number, log.len() as u64);
}
