//! What only the PostgreSQL backend has: one writer per log, schema versions, tenants in
//! separate databases, wake-ups from other processes through LISTEN/NOTIFY, and reconnecting
//! after its connections are killed.
//!
//! Needs a server at `127.0.0.1:5432` (user `postgres`, trust authentication), or the one that
//! `DOLITTLE_TEST_POSTGRES_URL` names.

mod support;

use std::time::Duration;

use dolittle_store::conformance::{execution_context, numbered_events, within_timeout};
use dolittle_store::{EventStore, LogFilter, StoreError};
use dolittle_store_postgres::{PostgresEventStore, SUPPORTED_SCHEMA_VERSION};
use dolittle_types::ScopeId;
use support::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_schema_is_refused_until_the_first_closes() {
    let database = TestDatabase::create("second_writer").await;
    let first = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting the first writer");
    let second = PostgresEventStore::connect(database.config("tenant")).await;
    assert!(
        matches!(second, Err(StoreError::ConcurrentWriter(_))),
        "got {second:?}"
    );
    let other_schema = PostgresEventStore::connect(database.config("other_tenant")).await;
    assert!(
        other_schema.is_ok(),
        "another schema of the same database is another store: {other_schema:?}"
    );
    first
        .commit(numbered_events("source", 0, 2), &execution_context())
        .await
        .expect("committing");
    first.close().await;
    let closed = first
        .commit(numbered_events("source", 2, 1), &execution_context())
        .await;
    assert!(
        matches!(closed, Err(StoreError::Unavailable(_))),
        "a closed store refuses writes: {closed:?}"
    );
    let second = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting once the first writer closed");
    let next = second
        .commit(numbered_events("source", 2, 1), &execution_context())
        .await
        .expect("committing");
    assert_eq!(next[0].sequence_number, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_starting_at_once_on_a_fresh_schema_migrate_it_once() {
    let database = TestDatabase::create("concurrent_migrations").await;
    let connects = (0..4).map(|_| PostgresEventStore::connect(database.config("tenant")));
    let results = futures::future::join_all(connects).await;
    let connected = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(connected, 1, "exactly one store gets the writer lock");
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(StoreError::ConcurrentWriter(_))),
            "the others are refused as second writers, not by a broken migration: {result:?}"
        );
    }
    let client = database.client().await;
    let versions = client
        .query("SELECT version FROM tenant.schema_migrations", &[])
        .await
        .expect("reading the migrations");
    assert_eq!(versions.len() as i64, SUPPORTED_SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_written_by_a_newer_runtime_is_refused() {
    let database = TestDatabase::create("newer_schema").await;
    let store = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting");
    store.close().await;
    drop(store);
    let client = database.client().await;
    client
        .execute(
            "INSERT INTO tenant.schema_migrations (version) VALUES ($1)",
            &[&(SUPPORTED_SCHEMA_VERSION + 5)],
        )
        .await
        .expect("pretending a newer runtime migrated");
    let result = PostgresEventStore::connect(database.config("tenant")).await;
    assert!(
        matches!(
            result,
            Err(StoreError::NewerSchema { found, supported })
                if found == SUPPORTED_SCHEMA_VERSION + 5 && supported == SUPPORTED_SCHEMA_VERSION
        ),
        "got {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_in_separate_databases_do_not_see_each_other() {
    let first_database = TestDatabase::create("tenant_a").await;
    let second_database = TestDatabase::create("tenant_b").await;
    let first = PostgresEventStore::connect(first_database.config("public"))
        .await
        .expect("connecting");
    let second = PostgresEventStore::connect(second_database.config("public"))
        .await
        .expect("connecting");
    first
        .commit(numbered_events("a", 0, 3), &execution_context())
        .await
        .expect("committing");
    let committed = second
        .commit(numbered_events("b", 0, 1), &execution_context())
        .await
        .expect("committing");
    assert_eq!(committed[0].sequence_number, 0);
    let page = second
        .read_log(ScopeId::DEFAULT, 0, 10, &LogFilter::default())
        .await
        .expect("reading");
    assert_eq!(page.events, committed);
    assert_eq!(*second.watch_log(ScopeId::DEFAULT).borrow(), 1);
    assert_eq!(*first.watch_log(ScopeId::DEFAULT).borrow(), 3);
}

/// Another process's commit announces itself the way the appender does: one notification per
/// group commit, naming the schema and the new lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_from_other_processes_wake_watchers_of_the_right_schema_only() {
    let database = TestDatabase::create("notifications").await;
    let store = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting");
    let neighbour = PostgresEventStore::connect(database.config("neighbour"))
        .await
        .expect("connecting");
    let scope = ScopeId::new_random();
    let mut receiver = store.watch_log(scope);
    let neighbour_receiver = neighbour.watch_log(scope);
    let client = database.client().await;
    // The listener connects in the background; notify until it hears.
    let woken = within_timeout("a wake-up from another process", async {
        loop {
            client
                .execute(
                    "SELECT pg_notify('dolittle_event_store', $1)",
                    &[&format!("tenant\nl {scope} 42")],
                )
                .await
                .expect("notifying");
            if tokio::time::timeout(Duration::from_millis(200), receiver.changed())
                .await
                .is_ok()
            {
                break *receiver.borrow_and_update();
            }
        }
    })
    .await;
    assert_eq!(woken, 42);
    assert_eq!(
        *neighbour_receiver.borrow(),
        0,
        "a notification names the schema it is about"
    );

    // A notification too big to carry lengths asks listeners to re-read them.
    client
        .batch_execute(&format!(
            "INSERT INTO tenant.log_lengths (scope, length) VALUES ('{scope}', 50) \
             ON CONFLICT (scope) DO UPDATE SET length = excluded.length; \
             SELECT pg_notify('dolittle_event_store', E'tenant\\n*')"
        ))
        .await
        .expect("notifying");
    let reread = within_timeout("a re-read after a notification", async {
        receiver
            .wait_for(|length| *length == 50)
            .await
            .map(|length| *length)
    })
    .await
    .expect("the store is open");
    assert_eq!(reread, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reconnects_after_its_connections_are_killed() {
    let database = TestDatabase::create("killed_connections").await;
    let store = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting");
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 3), &context)
        .await
        .expect("committing");
    store
        .read_log(ScopeId::DEFAULT, 0, 10, &LogFilter::default())
        .await
        .expect("reading, so that the pool holds a connection");
    let client = database.client().await;
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("killing the store's connections");
    assert!(
        killed.len() >= 2,
        "the appender's and the pool's connections"
    );

    // Operations may fail while the store notices; they must fail as unavailable, and the
    // store must come back by itself.
    let mut failures = 0;
    let committed = loop {
        match store
            .commit(numbered_events("source", 3, 2), &context)
            .await
        {
            Ok(committed) => break committed,
            Err(StoreError::Unavailable(_)) if failures < 5 => failures += 1,
            Err(error) => panic!("a commit after the connections were killed: {error:?}"),
        }
    };
    assert_eq!(
        committed
            .iter()
            .map(|event| event.sequence_number)
            .collect::<Vec<_>>(),
        vec![3, 4],
        "numbering goes on without a gap"
    );
    let mut failures = 0;
    let page = loop {
        match store
            .read_log(ScopeId::DEFAULT, 0, 10, &LogFilter::default())
            .await
        {
            Ok(page) => break page,
            Err(StoreError::Unavailable(_)) if failures < 5 => failures += 1,
            Err(error) => panic!("a read after the connections were killed: {error:?}"),
        }
    };
    assert_eq!(page.events.len(), 5);
    assert_eq!(page.next, 5);
}

/// The primary key on (scope, sequence_number) is the last line of defence: a row that got in
/// behind the writer lock's back is never duplicated or skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_behind_the_appenders_back_makes_the_commit_fail_loudly() {
    let database = TestDatabase::create("intruder").await;
    let store = PostgresEventStore::connect(database.config("tenant"))
        .await
        .expect("connecting");
    let context = execution_context();
    store
        .commit(numbered_events("source", 0, 2), &context)
        .await
        .expect("committing");
    let client = database.client().await;
    client
        .batch_execute(
            "INSERT INTO tenant.events (scope, sequence_number, occurred, event_source, \
             event_type, event_type_generation, public, content, execution_context) \
             SELECT scope, 2, occurred, 'intruder', event_type, event_type_generation, public, \
             '{\"intruder\":true}', execution_context FROM tenant.events \
             WHERE sequence_number = 0",
        )
        .await
        .expect("writing behind the appender's back");
    let result = store
        .commit(numbered_events("source", 2, 3), &context)
        .await;
    assert!(
        matches!(result, Err(StoreError::ConcurrentWriter(_))),
        "got {result:?}"
    );
    let rows = client
        .query(
            "SELECT sequence_number, content FROM tenant.events ORDER BY sequence_number",
            &[],
        )
        .await
        .expect("reading");
    let numbers: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        numbers,
        vec![0, 1, 2],
        "nothing duplicated, nothing skipped"
    );
    let third: String = rows[2].get(1);
    assert_eq!(third, "{\"intruder\":true}");
}

/// Reads go through the log and streams in windows of positions (so that no query scans more
/// than its window); a page that keeps few events still reaches them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_keep_few_events_of_a_long_log_or_stream_find_them_all() {
    use dolittle_store::conformance::{event, event_type, read_filtered_log};
    use dolittle_store::{ProcessorKey, ProcessorKind, StreamEntry, StreamProcessorState};
    use dolittle_types::{EventProcessorId, PartitionId, StreamId};

    let database = TestDatabase::create("windows").await;
    let store: dolittle_store::SharedEventStore = std::sync::Arc::new(
        PostgresEventStore::connect(database.config("tenant"))
            .await
            .expect("connecting"),
    );
    let rare_positions = [10_u64, 1500, 4000, 4999];
    let batch: Vec<_> = (0..5000_u64)
        .map(|number| {
            let kind = if rare_positions.contains(&number) {
                2
            } else {
                1
            };
            event("source", event_type(kind, 1), false, &format!("{number}"))
        })
        .collect();
    store
        .commit(batch, &execution_context())
        .await
        .expect("committing");
    let rare = LogFilter {
        event_types: Some(vec![event_type(2, 1).id]),
        ..LogFilter::default()
    };
    for limit in [1, 3, 100] {
        let found: Vec<u64> = read_filtered_log(&store, ScopeId::DEFAULT, &rare, limit)
            .await
            .iter()
            .map(|event| event.sequence_number)
            .collect();
        assert_eq!(found, rare_positions, "with pages of {limit}");
    }

    let stream = StreamId::new_random();
    let entries: Vec<StreamEntry> = (0..5000_u64)
        .map(|number| StreamEntry {
            partition: PartitionId::from(if rare_positions.contains(&number) {
                "rare"
            } else {
                "common"
            }),
            sequence_number: number,
        })
        .collect();
    let filter = ProcessorKey {
        kind: ProcessorKind::Filter,
        scope: ScopeId::DEFAULT,
        processor: EventProcessorId::new_random(),
    };
    let length = store
        .append_to_stream(
            ScopeId::DEFAULT,
            stream,
            entries,
            &filter,
            &StreamProcessorState::default(),
        )
        .await
        .expect("appending");
    assert_eq!(length, 5000);
    let partition = PartitionId::from("rare");
    let read = store
        .read_stream(ScopeId::DEFAULT, stream, 11, Some(&partition), 10)
        .await
        .expect("reading a partition");
    let positions: Vec<u64> = read.iter().map(|entry| entry.position).collect();
    assert_eq!(positions, vec![1500, 4000, 4999]);
    assert_eq!(read[1].event.content, "4000");
    let all = store
        .read_stream(ScopeId::DEFAULT, stream, 4990, None, 100)
        .await
        .expect("reading all partitions");
    assert_eq!(
        all.iter().map(|entry| entry.position).collect::<Vec<_>>(),
        (4990..5000).collect::<Vec<_>>()
    );
}
