//! The shared conformance suite, run against real SQLite files in a temporary folder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use dolittle_store::conformance::StoreHarness;
use dolittle_store::{EventStore, SharedEventStore};
use dolittle_store_sqlite::SqliteEventStore;

struct SqliteHarness {
    folder: tempfile::TempDir,
    open: Mutex<HashMap<String, Weak<dyn EventStore>>>,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            folder: tempfile::tempdir().expect("a temporary folder"),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open_file(&self, name: &str) -> SharedEventStore {
        let path = self.folder.path().join(format!("{name}.db"));
        let store: SharedEventStore =
            Arc::new(SqliteEventStore::open(&path).expect("opening the store"));
        self.open
            .lock()
            .expect("the harness lock")
            .insert(name.to_owned(), Arc::downgrade(&store));
        store
    }
}

#[async_trait]
impl StoreHarness for SqliteHarness {
    async fn open(&self, name: &str) -> SharedEventStore {
        let existing = self
            .open
            .lock()
            .expect("the harness lock")
            .get(name)
            .and_then(Weak::upgrade);
        existing.unwrap_or_else(|| self.open_file(name))
    }

    async fn close_and_reopen(&self, name: &str, store: SharedEventStore) -> SharedEventStore {
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the suite hands over the last handle of the store"
        );
        drop(store);
        self.open_file(name)
    }
}

dolittle_store::conformance_suite!(SqliteHarness::new());
