//! The tables of a store, created and upgraded by versioned migrations at startup.
//!
//! Migrations run under a session-level advisory lock, so that two Runtimes starting at once
//! against the same schema do not both try to create it. A schema written by a newer Runtime
//! (a migration version this code does not know) is refused with [`StoreError::NewerSchema`].
//!
//! Design notes: identifiers are `uuid`s; JSON (event content, execution contexts, states) is
//! `text`, because `jsonb` would change whitespace and key order and content must come back
//! byte for byte. An event refers to its execution context by id: the events of a commit share
//! one, and it is most of an event's bytes. The only secondary index on the event log is a partial one on aggregate
//! events, so that commits of events that belong to no aggregate pay for no random-key index.

use dolittle_store::StoreError;
use tokio_postgres::Client;

use crate::error::store_error;
use crate::pool::quote_identifier;

/// The advisory-lock class of the migrations lock (the second key is the schema's hash).
const MIGRATIONS_LOCK_CLASS: i32 = 0x646f_6d00;
/// The advisory-lock class of the one-writer-per-log lock.
pub(crate) const WRITER_LOCK_CLASS: i32 = 0x646f_7700;

/// The migrations, in order; the version of a migration is its index plus one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE events (
    scope uuid NOT NULL,
    sequence_number bigint NOT NULL,
    occurred bigint NOT NULL,
    event_source text NOT NULL,
    event_type uuid NOT NULL,
    event_type_generation bigint NOT NULL,
    public boolean NOT NULL,
    content text NOT NULL,
    execution_context bigint NOT NULL,
    aggregate_root uuid,
    aggregate_version bigint,
    external_sequence_number bigint,
    received bigint,
    consent uuid,
    CONSTRAINT events_one_event_per_sequence_number PRIMARY KEY (scope, sequence_number)
);
CREATE INDEX events_by_aggregate
    ON events (aggregate_root, event_source, scope, aggregate_version)
    WHERE aggregate_root IS NOT NULL;
CREATE TABLE execution_contexts (
    id bigint PRIMARY KEY,
    context text NOT NULL
);
CREATE TABLE log_lengths (
    scope uuid PRIMARY KEY,
    length bigint NOT NULL
);
CREATE TABLE aggregates (
    aggregate_root uuid NOT NULL,
    event_source text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (aggregate_root, event_source)
);
CREATE TABLE stream_definitions (
    scope uuid NOT NULL,
    stream uuid NOT NULL,
    definition text NOT NULL,
    PRIMARY KEY (scope, stream)
);
CREATE TABLE stream_lengths (
    scope uuid NOT NULL,
    stream uuid NOT NULL,
    length bigint NOT NULL,
    PRIMARY KEY (scope, stream)
);
CREATE TABLE stream_entries (
    scope uuid NOT NULL,
    stream uuid NOT NULL,
    position bigint NOT NULL,
    partition text NOT NULL,
    sequence_number bigint NOT NULL,
    CONSTRAINT stream_entries_one_entry_per_position PRIMARY KEY (scope, stream, position)
);
CREATE INDEX stream_entries_by_partition ON stream_entries (scope, stream, partition, position);
CREATE TABLE processor_states (
    kind text NOT NULL,
    scope uuid NOT NULL,
    processor uuid NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (kind, scope, processor)
);
CREATE TABLE projection_definitions (
    scope uuid NOT NULL,
    projection uuid NOT NULL,
    definition text NOT NULL,
    PRIMARY KEY (scope, projection)
);
CREATE TABLE read_models (
    scope uuid NOT NULL,
    projection uuid NOT NULL,
    key text NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (scope, projection, key)
);
CREATE TABLE subscription_states (
    producer_microservice uuid NOT NULL,
    producer_tenant uuid NOT NULL,
    stream uuid NOT NULL,
    partition text NOT NULL,
    scope uuid NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (producer_microservice, producer_tenant, stream, partition, scope)
);
"#];

/// The newest schema version this code knows.
pub const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

/// A stable 32-bit hash of the schema name, the second key of the store's advisory locks
/// (advisory locks are per database, and several stores may share a database).
pub(crate) fn schema_lock_key(schema: &str) -> i32 {
    // FNV-1a: stable across Rust versions and processes, unlike the standard library's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in schema.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates the schema when missing and runs the migrations it lacks, under the migrations lock.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let key = schema_lock_key(schema);
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&MIGRATIONS_LOCK_CLASS, &key],
        )
        .await
        .map_err(store_error)?;
    let result = migrate_locked(client, schema).await;
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&MIGRATIONS_LOCK_CLASS, &key],
        )
        .await
        .map_err(store_error);
    result.and(unlocked.map(|_| ()))
}

async fn migrate_locked(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let quoted = quote_identifier(schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted};
             SET search_path TO {quoted};
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version bigint PRIMARY KEY,
                 applied timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(store_error)?;
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(store_error)?;
    let current: i64 = row.try_get(0).map_err(store_error)?;
    if current > SUPPORTED_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: SUPPORTED_VERSION,
        });
    }
    let applied = usize::try_from(current).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index as i64 + 1;
        let transaction = client.transaction().await.map_err(store_error)?;
        transaction
            .batch_execute(migration)
            .await
            .map_err(store_error)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        tracing::info!(schema, version, "applied event store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_of_a_schema_is_stable() {
        assert_eq!(schema_lock_key("public"), schema_lock_key("public"));
        assert_ne!(schema_lock_key("public"), schema_lock_key("tenant_a"));
        // FNV-1a of the empty text is its offset basis.
        assert_eq!(schema_lock_key(""), 0x811c_9dc5_u32 as i32);
    }
}
