//! The versioned schema of a tenant's database, its migrations, and the settings of every
//! connection.
//!
//! The schema version lives in SQLite's `user_version`. Migrations run in one transaction at
//! open; a file whose version is newer than [`SCHEMA_VERSION`] is refused with
//! [`StoreError::NewerSchema`] and left untouched.
//!
//! Layout: every scope has its own log table `event_log_<scope key>` whose integer primary key
//! is the sequence number, so appending never touches a secondary index. The default scope is
//! scope key 0. Only aggregate events are indexed (a partial index on integer surrogate keys),
//! execution contexts are stored once and referenced by key, and stream entries reference log
//! events instead of copying them.

use std::path::Path;
use std::time::Duration;

use dolittle_store::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::codec::sqlite_error;

/// The newest schema this code knows.
pub const SCHEMA_VERSION: i64 = 1;

/// The migrations, in order: migration `n` (0-based) takes a file from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    r#"
    CREATE TABLE scopes (
        scope_key INTEGER PRIMARY KEY,
        scope_id BLOB NOT NULL UNIQUE
    );
    INSERT INTO scopes (scope_key, scope_id) VALUES (0, zeroblob(16));
    CREATE TABLE execution_contexts (
        context_key INTEGER PRIMARY KEY,
        body TEXT NOT NULL UNIQUE
    );
    CREATE TABLE event_log_0 (
        sequence_number INTEGER PRIMARY KEY,
        occurred INTEGER NOT NULL,
        event_source TEXT NOT NULL,
        context_key INTEGER NOT NULL,
        correlation BLOB NOT NULL,
        type_id BLOB NOT NULL,
        generation INTEGER NOT NULL,
        public INTEGER NOT NULL,
        content TEXT NOT NULL,
        aggregate_key INTEGER,
        aggregate_root BLOB,
        aggregate_version INTEGER,
        external_sequence_number INTEGER,
        received INTEGER,
        consent BLOB
    );
    CREATE INDEX event_log_0_aggregate_events
        ON event_log_0 (aggregate_key, aggregate_version) WHERE aggregate_key IS NOT NULL;
    CREATE TABLE aggregates (
        aggregate_key INTEGER PRIMARY KEY,
        aggregate_root BLOB NOT NULL,
        event_source TEXT NOT NULL,
        version INTEGER NOT NULL,
        UNIQUE (aggregate_root, event_source)
    );
    CREATE TABLE stream_definitions (
        scope_id BLOB NOT NULL,
        stream_id BLOB NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (scope_id, stream_id)
    ) WITHOUT ROWID;
    CREATE TABLE streams (
        stream_key INTEGER PRIMARY KEY,
        scope_id BLOB NOT NULL,
        stream_id BLOB NOT NULL,
        UNIQUE (scope_id, stream_id)
    );
    CREATE TABLE stream_entries (
        stream_key INTEGER NOT NULL,
        position INTEGER NOT NULL,
        partition TEXT NOT NULL,
        sequence_number INTEGER NOT NULL,
        PRIMARY KEY (stream_key, position)
    ) WITHOUT ROWID;
    CREATE INDEX stream_entries_by_partition ON stream_entries (stream_key, partition, position);
    CREATE TABLE processor_states (
        kind TEXT NOT NULL,
        scope_id BLOB NOT NULL,
        processor_id BLOB NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, scope_id, processor_id)
    ) WITHOUT ROWID;
    CREATE TABLE projection_definitions (
        scope_id BLOB NOT NULL,
        projection_id BLOB NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (scope_id, projection_id)
    ) WITHOUT ROWID;
    CREATE TABLE read_models (
        scope_id BLOB NOT NULL,
        projection_id BLOB NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (scope_id, projection_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE subscription_states (
        producer_microservice BLOB NOT NULL,
        producer_tenant BLOB NOT NULL,
        stream_id BLOB NOT NULL,
        partition TEXT NOT NULL,
        scope_id BLOB NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (producer_microservice, producer_tenant, stream_id, partition, scope_id)
    ) WITHOUT ROWID;
    "#,
];

/// The columns of a log table, in the order [`crate::reader`] decodes them.
pub(crate) const EVENT_COLUMNS: &str = "sequence_number, occurred, event_source, context_key, \
    correlation, type_id, generation, public, content, aggregate_root, aggregate_version, \
    external_sequence_number, received, consent";

pub(crate) fn log_table(scope_key: i64) -> String {
    format!("event_log_{scope_key}")
}

/// The statement that creates the log of a scope other than the default one. Scoped logs hold
/// no aggregate events, so they have no index at all.
pub(crate) fn create_scoped_log(scope_key: i64) -> String {
    format!(
        "CREATE TABLE {} (
            sequence_number INTEGER PRIMARY KEY,
            occurred INTEGER NOT NULL,
            event_source TEXT NOT NULL,
            context_key INTEGER NOT NULL,
            correlation BLOB NOT NULL,
            type_id BLOB NOT NULL,
            generation INTEGER NOT NULL,
            public INTEGER NOT NULL,
            content TEXT NOT NULL,
            aggregate_key INTEGER,
            aggregate_root BLOB,
            aggregate_version INTEGER,
            external_sequence_number INTEGER,
            received INTEGER,
            consent BLOB
        )",
        log_table(scope_key)
    )
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the writer's connection: WAL, `synchronous=FULL` (the writer lowers it for groups that
/// hold only relaxed writes), and no automatic checkpoints, which the checkpointer thread does
/// off the commit path.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error)?;
    let journal_mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "the database cannot use write-ahead logging (journal mode {journal_mode})"
        )));
    }
    connection
        .execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA cache_size = -32768;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(sqlite_error)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// Opens a reading connection. It never writes, so it never checkpoints either.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error)?;
    connection
        .execute_batch(
            "PRAGMA query_only = ON;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA cache_size = -32768;
             PRAGMA mmap_size = 268435456;",
        )
        .map_err(sqlite_error)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// Opens the checkpointer's connection.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error)?;
    connection
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")
        .map_err(sqlite_error)?;
    Ok(connection)
}

/// Brings a file to [`SCHEMA_VERSION`], or refuses a file of a newer schema.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let found = user_version(connection)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(sqlite_error)?;
    // Read again under the lock: another process may have migrated in between.
    let found = user_version(&transaction)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        transaction.execute_batch(migration).map_err(sqlite_error)?;
        tracing::info!(
            from_version = from,
            to_version = from + 1,
            "migrated the event store"
        );
    }
    transaction
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sqlite_error)?;
    transaction.commit().map_err(sqlite_error)
}

pub(crate) fn user_version(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite_error)
}
