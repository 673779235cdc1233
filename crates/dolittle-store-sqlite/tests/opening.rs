//! Opening a tenant's file: schema versions, the single-writer lock, folders and WAL.

use dolittle_store::conformance::{execution_context, numbered_events};
use dolittle_store::{EventStore, StoreError};
use dolittle_store_sqlite::{SCHEMA_VERSION, SqliteEventStore};
use dolittle_types::ScopeId;

fn user_version(path: &std::path::Path) -> i64 {
    let connection = rusqlite::Connection::open(path).expect("opening the file directly");
    connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("reading the schema version")
}

#[tokio::test]
async fn a_file_written_by_a_newer_schema_is_refused_and_left_alone() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    let store = SqliteEventStore::open(&path).expect("creating the store");
    store
        .commit(numbered_events("source", 0, 3), &execution_context())
        .await
        .expect("committing");
    drop(store);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    {
        let connection = rusqlite::Connection::open(&path).expect("opening the file directly");
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .expect("pretending a newer Runtime wrote the file");
    }
    let result = SqliteEventStore::open(&path);
    assert!(
        matches!(
            result,
            Err(StoreError::NewerSchema { found, supported })
                if found == SCHEMA_VERSION + 5 && supported == SCHEMA_VERSION
        ),
        "got {:?}",
        result.err()
    );
    assert_eq!(
        user_version(&path),
        SCHEMA_VERSION + 5,
        "the file is not touched"
    );
}

#[tokio::test]
async fn a_file_is_written_by_one_store_at_a_time() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    let store = SqliteEventStore::open(&path).expect("opening the store");
    let second = SqliteEventStore::open(&path);
    assert!(
        matches!(second, Err(StoreError::ConcurrentWriter(_))),
        "got {:?}",
        second.err()
    );
    drop(store);
    let reopened = SqliteEventStore::open(&path).expect("opening after the first closed");
    assert_eq!(*reopened.watch_log(ScopeId::DEFAULT).borrow(), 0);
}

#[tokio::test]
async fn opening_creates_the_folder_and_uses_write_ahead_logging() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("data").join("nested").join("tenant.db");
    let store = SqliteEventStore::open(&path).expect("opening the store");
    assert_eq!(store.describe().backend, "sqlite");
    assert!(store.describe().location.ends_with("tenant.db"));
    store
        .commit(numbered_events("source", 0, 1), &execution_context())
        .await
        .expect("committing");
    let connection = rusqlite::Connection::open(&path).expect("opening the file directly");
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("reading the journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("tenant.db");
    std::fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .expect("writing a file");
    let result = SqliteEventStore::open(&path);
    assert!(result.is_err(), "a file that is not a database is refused");
}
