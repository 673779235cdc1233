//! Test databases on a real PostgreSQL server: each test creates its own database with a unique
//! name and drops it at the end.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/postgres` unless `DOLITTLE_TEST_POSTGRES_URL`
//! (or `DATABASE_URL`) names another; that URL must let the tests create and drop databases.
//! An unreachable server fails the test with a message saying how to fix it (never a skip:
//! `scripts/ensure-postgres.sh` starts the local cluster when it is installed but down).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dolittle_store::SharedEventStore;
use dolittle_store::conformance::StoreHarness;
use dolittle_store_postgres::{PostgresConfig, PostgresEventStore};
use tokio_postgres::NoTls;

pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server the tests use, and whether it came from the environment.
pub fn admin_url() -> String {
    ["DOLITTLE_TEST_POSTGRES_URL", "DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| DEFAULT_TEST_URL.to_owned())
}

/// Quotes a value of a key=value connection string.
fn quote_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A key=value connection string for a database of the server that `config` points at.
pub fn connection_string_for(config: &tokio_postgres::Config, database: &str) -> String {
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        parts.push(format!("host={}", quote_value(&host)));
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote_value(user)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quote_value(&String::from_utf8_lossy(password))
        ));
    }
    parts.push(format!("dbname={}", quote_value(database)));
    parts.join(" ")
}

/// Runs a statement on the server's administrative database.
pub async fn admin_execute(admin_url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    result
}

static DATABASE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database created for one test, dropped when this value is dropped.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
    /// A connection string for the database.
    pub url: String,
}

impl TestDatabase {
    /// Creates a fresh database on the test server; fails the test, saying what to do, when the
    /// server cannot be reached.
    pub async fn create(label: &str) -> Self {
        Self::create_on(&admin_url(), label).await
    }

    pub async fn create_on(admin_url: &str, label: &str) -> Self {
        let config: tokio_postgres::Config = admin_url
            .parse()
            .unwrap_or_else(|error| panic!("the test url {admin_url:?} is not valid: {error}"));
        let unique = format!(
            "{}_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.subsec_nanos())
                .unwrap_or(0)
        );
        let label: String = label
            .chars()
            .map(|character| {
                if character.is_ascii_alphanumeric() {
                    character.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!("dolittle_test_{label}_{unique}");
        if let Err(error) = admin_execute(admin_url, &format!("CREATE DATABASE \"{name}\"")).await {
            panic!(
                "PostgreSQL is not reachable at {admin_url} (or refused to create a test \
                 database): {error}. Start it (scripts/ensure-postgres.sh) or set \
                 DOLITTLE_TEST_POSTGRES_URL to a server where the tests may create databases"
            );
        }
        Self {
            admin_url: admin_url.to_owned(),
            url: connection_string_for(&config, &name),
            name,
        }
    }

    pub fn config(&self, schema: &str) -> PostgresConfig {
        PostgresConfig {
            schema: schema.to_owned(),
            ..PostgresConfig::new(self.url.clone())
        }
    }

    /// A client connected to the test database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connecting to the test database");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which must not be blocked on; a thread with a
        // runtime of its own does the dropping.
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(admin_execute(&admin_url, &sql))
                .map_err(std::io::Error::other)
        });
        if let Ok(Err(error)) = dropping.join() {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// The conformance harness: one database per test, one schema per store name (so the tenant
/// isolation semantics are checked between schemas of one database, the harder case).
pub struct PostgresHarness {
    stores: Mutex<HashMap<String, Arc<PostgresEventStore>>>,
    database: TestDatabase,
}

impl PostgresHarness {
    pub async fn new() -> Self {
        Self {
            database: TestDatabase::create("conformance").await,
            stores: Mutex::new(HashMap::new()),
        }
    }

    async fn connect(&self, name: &str) -> Arc<PostgresEventStore> {
        let store = PostgresEventStore::connect(self.database.config(name))
            .await
            .unwrap_or_else(|error| panic!("opening store {name:?}: {error}"));
        Arc::new(store)
    }
}

#[async_trait]
impl StoreHarness for PostgresHarness {
    async fn open(&self, name: &str) -> SharedEventStore {
        let existing = self
            .stores
            .lock()
            .expect("the harness lock")
            .get(name)
            .cloned();
        match existing {
            Some(store) => store,
            None => {
                let store = self.connect(name).await;
                self.stores
                    .lock()
                    .expect("the harness lock")
                    .insert(name.to_owned(), store.clone());
                store
            }
        }
    }

    async fn close_and_reopen(&self, name: &str, store: SharedEventStore) -> SharedEventStore {
        drop(store);
        let open = self.stores.lock().expect("the harness lock").remove(name);
        if let Some(open) = open {
            open.close().await;
        }
        self.open(name).await
    }
}
