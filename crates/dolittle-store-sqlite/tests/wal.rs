//! The WAL is started over once checkpoints catch up, so that it is rewritten in place instead of
//! growing with every commit (a sync that must also record a longer file costs twice as much).

use dolittle_store::EventStore;
use dolittle_store::conformance::{event, event_type, execution_context};
use dolittle_store_sqlite::SqliteEventStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_far_smaller_than_what_was_committed() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    let store = SqliteEventStore::open(&path).expect("opening the store");
    let context = execution_context();
    let padding = "x".repeat(1000);
    let commits = 600;
    let events_per_commit = 100;
    for commit in 0..commits {
        let events = (0..events_per_commit)
            .map(|index| {
                let content =
                    format!("{{\"commit\":{commit},\"index\":{index},\"p\":\"{padding}\"}}");
                event("source", event_type(1, 1), false, &content)
            })
            .collect();
        store.commit(events, &context).await.expect("committing");
    }
    let committed_bytes = (commits * events_per_commit * 1000) as u64;
    let wal_bytes = std::fs::metadata(folder.path().join("tenant.db-wal"))
        .expect("the WAL file")
        .len();
    assert!(
        wal_bytes < committed_bytes / 2,
        "the WAL holds {wal_bytes} bytes after {committed_bytes} bytes of events were committed"
    );
}
