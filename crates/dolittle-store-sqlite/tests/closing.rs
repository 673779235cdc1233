//! Dropping the store stops its writer only after the writer has written what was queued.

use std::time::Duration;

use dolittle_store::EventStore;
use dolittle_store::conformance::{execution_context, numbered_events, read_whole_log};
use dolittle_store_sqlite::SqliteEventStore;
use dolittle_types::ScopeId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_queued_before_the_store_is_dropped_are_written() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    let store = SqliteEventStore::open(&path).expect("opening the store");
    let context = execution_context();
    for first in 0..20 {
        let commit = store.commit(numbered_events("source", first, 1), &context);
        // One poll hands the request to the writer; the caller then gives up waiting.
        let _ = tokio::time::timeout(Duration::ZERO, commit).await;
    }
    drop(store);
    let reopened: dolittle_store::SharedEventStore =
        std::sync::Arc::new(SqliteEventStore::open(&path).expect("reopening the store"));
    let log = read_whole_log(&reopened, ScopeId::DEFAULT).await;
    assert_eq!(log.len(), 20, "every queued commit was written");
    assert_eq!(*reopened.watch_log(ScopeId::DEFAULT).borrow(), 20);
}
