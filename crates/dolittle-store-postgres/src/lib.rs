//! The PostgreSQL backend of the event store, for deployments that outgrow one machine's file.
//!
//! One [`PostgresEventStore`] is one tenant's store: a database, or a schema within one (the
//! tenant's `resources.json` entry says which). At startup it creates the schema when missing
//! and runs the versioned migrations under an advisory lock ([`schema`]).
//!
//! Writes to event logs and streams go through ONE appender task per store ([`appender`]),
//! which batches concurrent requests into one transaction, so that sequence numbers are gapless
//! and in commit order; it holds a session-level advisory lock so that a second process writing
//! the same log fails loudly instead of creating gaps or duplicates. Everything else (reads,
//! states, definitions, read models) uses a small connection pool ([`pool`]). Readers learn of
//! new events through `watch` channels fed by the appender and, for other processes' commits,
//! by LISTEN/NOTIFY ([`watches`]).
//!
//! When the server is down, operations fail with [`StoreError::Unavailable`]; the pool, the
//! appender and the listener reconnect by themselves when it is back.

mod appender;
mod error;
mod pool;
mod rows;
mod schema;
mod watches;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use dolittle_store::{
    EventStore, ExternalEvent, LogFilter, LogPage, ProcessorKey, ProcessorKind,
    ProjectionDefinition, ReadModelChange, StoreDescription, StoreError, StoreResult,
    StreamDefinition, StreamEntry, StreamEvent, StreamProcessorState, SubscriptionKey,
    SubscriptionState, validate_aggregate_batch, validate_batch, validate_json,
};
use dolittle_types::{
    AggregateRootId, AggregateRootInstance, CommittedAggregateEvents, CommittedEvent,
    EventLogSequenceNumber, EventProcessorId, EventSourceId, ExecutionContext, MicroserviceId,
    PartitionId, ScopeId, StreamId, StreamPosition, TenantId, UncommittedAggregateEvents,
    UncommittedEvent, Uuid,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::appender::{Appender, Message, Reply, Request, Work};
use crate::error::{from_bigint, to_bigint};
use crate::pool::{Pool, PooledConnection};
use crate::rows::{ContextCache, EventDecoder, READ_CONTEXTS, from_json, to_json};
use crate::watches::Watches;

pub use crate::schema::SUPPORTED_VERSION as SUPPORTED_SCHEMA_VERSION;

/// Where a tenant's store lives, as its `resources.json` entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq URL (`postgres://user@host:5432/database`) or key=value string. TLS is not
    /// supported.
    pub connection_string: String,
    /// The schema that holds the store's tables; created when missing.
    pub schema: String,
    /// How many pooled connections the store opens at most, besides its appender's and its
    /// listener's.
    pub max_connections: usize,
}

impl PostgresConfig {
    pub const DEFAULT_SCHEMA: &'static str = "public";
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

    /// A configuration with the default schema and pool size.
    pub fn new(connection_string: impl Into<String>) -> Self {
        Self {
            connection_string: connection_string.into(),
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// How many write requests may wait for the appender before callers wait to send theirs.
const APPENDER_QUEUE: usize = 4096;

/// One tenant's event store in PostgreSQL.
pub struct PostgresEventStore {
    description: StoreDescription,
    pool: Pool,
    watches: Arc<Watches>,
    contexts: ContextCache,
    requests: mpsc::Sender<Message>,
    /// Dropped (or sent to) when the store closes, which stops the listener.
    stop_listener: watch::Sender<()>,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresEventStore")
            .field("location", &self.description.location)
            .finish_non_exhaustive()
    }
}

impl PostgresEventStore {
    /// Connects, creates the schema and runs migrations, and takes the writer lock of the
    /// store's logs: fails with [`StoreError::ConcurrentWriter`] when another process holds it,
    /// with [`StoreError::NewerSchema`] when a newer Runtime wrote the schema, and with
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: PostgresConfig) -> StoreResult<Self> {
        if config.schema.is_empty() || config.schema.contains('\0') {
            return Err(StoreError::InvalidArgument(format!(
                "{:?} is not a schema name",
                config.schema
            )));
        }
        let mut client_config: tokio_postgres::Config =
            config.connection_string.parse().map_err(|error| {
                StoreError::InvalidArgument(format!("the postgresql connection string: {error}"))
            })?;
        if client_config.get_connect_timeout().is_none() {
            client_config.connect_timeout(pool::CONNECT_TIMEOUT);
        }
        if client_config.get_application_name().is_none() {
            client_config.application_name("dolittle-runtime");
        }
        let description = StoreDescription {
            backend: "postgres".to_owned(),
            location: describe_location(&client_config, &config.schema),
        };

        let mut client = pool::open_client(&client_config, &config.schema).await?;
        schema::migrate(&mut client, &config.schema).await?;
        drop(client);

        let watches = Arc::new(Watches::default());
        let mut appender = Appender::new(
            client_config.clone(),
            config.schema.clone(),
            watches.clone(),
        );
        appender.start().await?;
        let (requests, receiver) = mpsc::channel(APPENDER_QUEUE);
        tokio::spawn(appender.run(receiver));
        let (stop_listener, listener_stopped) = watch::channel(());
        tokio::spawn(watches::listen(
            watches.clone(),
            client_config.clone(),
            config.schema.clone(),
            listener_stopped,
        ));
        Ok(Self {
            description,
            pool: Pool::new(client_config, config.schema, config.max_connections),
            watches,
            contexts: ContextCache::default(),
            requests,
            stop_listener,
        })
    }

    /// Closes the store: waits for the appender to finish the writes it has and to release the
    /// writer lock, and stops the listener. Operations after this fail with
    /// [`StoreError::Unavailable`]. Dropping the store closes it too, without waiting.
    pub async fn close(&self) {
        let (closed, wait) = oneshot::channel();
        if self.requests.send(Message::Close(closed)).await.is_ok() {
            let _ = wait.await;
        }
        let _ = self.stop_listener.send(());
    }

    async fn connection(&self) -> StoreResult<PooledConnection<'_>> {
        self.pool.get().await
    }

    /// Runs a query for at most one row and returns its first column as text.
    async fn query_text(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Option<String>> {
        let mut pooled = self.connection().await?;
        let row = pooled
            .get()
            .client
            .query_opt(sql, parameters)
            .await
            .map_err(|error| pooled.fail(error))?;
        row.map(|row| row.try_get(0).map_err(error::store_error))
            .transpose()
    }

    async fn append(&self, work: Work, reply: Reply) -> StoreResult<()> {
        self.requests
            .send(Message::Request(Box::new(Request { work, reply })))
            .await
            .map_err(|_| StoreError::Unavailable("the event store is closed".to_owned()))
    }
}

/// Waits for the appender's answer.
async fn answer<T>(receiver: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
    receiver
        .await
        .map_err(|_| StoreError::Unavailable("the event store is closed".to_owned()))?
}

fn describe_location(config: &tokio_postgres::Config, schema: &str) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("(default database)");
    format!("postgres://{host}:{port}/{database} schema {schema}")
}

/// PostgreSQL text cannot hold NUL characters; refuse them before they reach the server.
fn refuse_nul(text: &str, what: &str) -> StoreResult<()> {
    if text.contains('\0') {
        return Err(StoreError::InvalidArgument(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The smallest and largest windows of sequence numbers or positions one read query covers.
const MIN_READ_WINDOW: u64 = 1024;
const MAX_READ_WINDOW: u64 = 65_536;
/// A filtered log read returns (maybe with fewer events than asked) after looking at this many.
const MAX_LOOKED_AT_PER_READ: u64 = 1 << 20;

const LOG_LENGTH: &str = "SELECT length FROM log_lengths WHERE scope = $1";
const STREAM_LENGTH: &str = "SELECT length FROM stream_lengths WHERE scope = $1 AND stream = $2";
const READ_LOG: &str = concat!(
    "SELECT ",
    "e.sequence_number, e.occurred, e.event_source, e.event_type, e.event_type_generation, ",
    "e.public, e.content, e.execution_context, e.aggregate_root, e.aggregate_version, ",
    "e.external_sequence_number, e.received, e.consent ",
    "FROM events e WHERE e.scope = $1 AND e.sequence_number >= $2 AND e.sequence_number < $3 ",
    "AND ($4::uuid[] IS NULL OR e.event_type = ANY($4)) AND (NOT $5 OR e.public) ",
    "AND ($6::text IS NULL OR e.event_source = $6) ",
    "ORDER BY e.sequence_number LIMIT $7"
);
const FETCH_AGGREGATE: &str = concat!(
    "SELECT ",
    "e.sequence_number, e.occurred, e.event_source, e.event_type, e.event_type_generation, ",
    "e.public, e.content, e.execution_context, e.aggregate_root, e.aggregate_version, ",
    "e.external_sequence_number, e.received, e.consent ",
    "FROM events e WHERE e.aggregate_root = $1 AND e.event_source = $2 AND e.scope = $3 ",
    "ORDER BY e.aggregate_version"
);
const READ_STREAM: &str = concat!(
    "SELECT s.position, s.partition, ",
    "e.sequence_number, e.occurred, e.event_source, e.event_type, e.event_type_generation, ",
    "e.public, e.content, e.execution_context, e.aggregate_root, e.aggregate_version, ",
    "e.external_sequence_number, e.received, e.consent ",
    "FROM stream_entries s JOIN events e ",
    "ON e.scope = s.scope AND e.sequence_number = s.sequence_number ",
    "WHERE s.scope = $1 AND s.stream = $2 AND s.position >= $3 AND s.position < $5 ",
    "ORDER BY s.position LIMIT $4"
);
const READ_STREAM_PARTITION: &str = concat!(
    "SELECT s.position, s.partition, ",
    "e.sequence_number, e.occurred, e.event_source, e.event_type, e.event_type_generation, ",
    "e.public, e.content, e.execution_context, e.aggregate_root, e.aggregate_version, ",
    "e.external_sequence_number, e.received, e.consent ",
    "FROM stream_entries s JOIN events e ",
    "ON e.scope = s.scope AND e.sequence_number = s.sequence_number ",
    "WHERE s.scope = $1 AND s.stream = $2 AND s.partition = $6 AND s.position >= $3 ",
    "AND s.position < $5 ",
    "ORDER BY s.position LIMIT $4"
);

#[async_trait]
impl EventStore for PostgresEventStore {
    fn describe(&self) -> StoreDescription {
        self.description.clone()
    }

    async fn commit(
        &self,
        events: Vec<UncommittedEvent>,
        context: &ExecutionContext,
    ) -> StoreResult<Vec<CommittedEvent>> {
        validate_batch(&events)?;
        for event in &events {
            refuse_nul(event.event_source.as_str(), "an event source")?;
        }
        let (reply, receiver) = oneshot::channel();
        let work = Work::Commit {
            events,
            context: context.clone(),
        };
        self.append(work, Reply::Events(reply)).await?;
        answer(receiver).await
    }

    async fn commit_aggregate(
        &self,
        events: UncommittedAggregateEvents,
        context: &ExecutionContext,
    ) -> StoreResult<CommittedAggregateEvents> {
        validate_aggregate_batch(&events)?;
        refuse_nul(events.event_source.as_str(), "an event source")?;
        let (reply, receiver) = oneshot::channel();
        let work = Work::CommitAggregate {
            events,
            context: context.clone(),
        };
        self.append(work, Reply::Aggregate(reply)).await?;
        answer(receiver).await
    }

    async fn read_log(
        &self,
        scope: ScopeId,
        from: EventLogSequenceNumber,
        limit: usize,
        filter: &LogFilter,
    ) -> StoreResult<LogPage> {
        let mut pooled = self.connection().await?;
        let statements = (
            pooled.get().statement(LOG_LENGTH).await,
            pooled.get().statement(READ_LOG).await,
            pooled.get().statement(READ_CONTEXTS).await,
        );
        let (length_statement, read_statement, contexts_statement) = match statements {
            (Ok(length), Ok(read), Ok(contexts)) => (length, read, contexts),
            (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                return Err(pooled.fail_store(error));
            }
        };
        // The length first: the read then sees at least every event below it, so `next` never
        // skips an event committed in between. What the store knows (its own commits, others'
        // notifications) is committed; only a read at that end asks the database for more.
        let length = match self.watches.known_log_length(scope) {
            Some(known) if known > from => known,
            _ => {
                let length: i64 = match pooled
                    .get()
                    .client
                    .query_opt(&length_statement, &[&scope.0])
                    .await
                {
                    Ok(Some(row)) => row.try_get(0).map_err(|error| pooled.fail(error))?,
                    Ok(None) => 0,
                    Err(error) => return Err(pooled.fail(error)),
                };
                from_bigint(length, "log length")?
            }
        };
        if from >= length || limit == 0 {
            return Ok(LogPage {
                events: Vec::new(),
                next: from,
            });
        }
        let event_types: Option<Vec<Uuid>> = filter
            .event_types
            .as_ref()
            .map(|types| types.iter().map(|event_type| event_type.0).collect());
        let event_source: Option<&str> = filter.event_source.as_ref().map(EventSourceId::as_str);
        let mut decoder = EventDecoder::new(&self.contexts);
        let mut events = Vec::new();
        // The log is read in windows of sequence numbers, so that a query never scans more
        // than its window whatever plan the server picks; a filter that keeps few events makes
        // the windows grow, and a page may end before the log does (`next` says where).
        let mut cursor = from;
        let mut window = (limit as u64).clamp(MIN_READ_WINDOW, MAX_READ_WINDOW);
        let mut looked_at = 0;
        let next = loop {
            let end = length.min(cursor.saturating_add(window));
            let wanted = limit - events.len();
            let rows = pooled
                .get()
                .client
                .query(
                    &read_statement,
                    &[
                        &scope.0,
                        &to_bigint(cursor, "sequence number")?,
                        &to_bigint(end, "sequence number")?,
                        &event_types,
                        &filter.public_only,
                        &event_source,
                        &limit_of(wanted),
                    ],
                )
                .await
                .map_err(|error| pooled.fail(error))?;
            decoder
                .load_contexts(&pooled.get().client, &contexts_statement, &rows, 0)
                .await
                .map_err(|error| pooled.fail(error))?;
            for row in &rows {
                events.push(decoder.decode(row, 0)?);
            }
            if rows.len() >= wanted {
                match events.last() {
                    Some(last) => break last.sequence_number + 1,
                    None => break end,
                }
            }
            looked_at += end - cursor;
            cursor = end;
            if cursor >= length || looked_at >= MAX_LOOKED_AT_PER_READ {
                break cursor;
            }
            window = (window * 2).min(MAX_READ_WINDOW);
        };
        Ok(LogPage { events, next })
    }

    fn watch_log(&self, scope: ScopeId) -> watch::Receiver<EventLogSequenceNumber> {
        self.watches.watch_log(scope)
    }

    async fn fetch_aggregate(
        &self,
        aggregate_root: AggregateRootId,
        event_source: &EventSourceId,
    ) -> StoreResult<CommittedAggregateEvents> {
        let mut pooled = self.connection().await?;
        let statements = (
            pooled.get().statement(FETCH_AGGREGATE).await,
            pooled.get().statement(READ_CONTEXTS).await,
        );
        let (statement, contexts_statement) = match statements {
            (Ok(statement), Ok(contexts)) => (statement, contexts),
            (Err(error), _) | (_, Err(error)) => return Err(pooled.fail_store(error)),
        };
        let rows = pooled
            .get()
            .client
            .query(
                &statement,
                &[
                    &aggregate_root.0,
                    &event_source.as_str(),
                    &ScopeId::DEFAULT.0,
                ],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        let mut decoder = EventDecoder::new(&self.contexts);
        decoder
            .load_contexts(&pooled.get().client, &contexts_statement, &rows, 0)
            .await
            .map_err(|error| pooled.fail(error))?;
        let events = rows
            .iter()
            .map(|row| decoder.decode(row, 0))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(CommittedAggregateEvents {
            aggregate_root,
            event_source: event_source.clone(),
            version: events.len() as u64,
            events,
        })
    }

    async fn list_aggregates(
        &self,
        aggregate_root: Option<AggregateRootId>,
    ) -> StoreResult<Vec<AggregateRootInstance>> {
        let mut pooled = self.connection().await?;
        let root: Option<Uuid> = aggregate_root.map(|root| root.0);
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT aggregate_root, event_source, version FROM aggregates \
                 WHERE $1::uuid IS NULL OR aggregate_root = $1 \
                 ORDER BY aggregate_root, event_source",
                &[&root],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                let root: Uuid = row.try_get(0).map_err(error::store_error)?;
                let source: String = row.try_get(1).map_err(error::store_error)?;
                let version: i64 = row.try_get(2).map_err(error::store_error)?;
                Ok(AggregateRootInstance {
                    aggregate_root: root.into(),
                    event_source: EventSourceId(source),
                    version: from_bigint(version, "aggregate version")?,
                })
            })
            .collect()
    }

    async fn get_stream_definition(
        &self,
        scope: ScopeId,
        stream: StreamId,
    ) -> StoreResult<Option<StreamDefinition>> {
        self.query_text(
            "SELECT definition FROM stream_definitions WHERE scope = $1 AND stream = $2",
            &[&scope.0, &stream.0],
        )
        .await?
        .map(|text| from_json(&text, "stream definition"))
        .transpose()
    }

    async fn put_stream_definition(
        &self,
        scope: ScopeId,
        definition: &StreamDefinition,
    ) -> StoreResult<()> {
        let text = to_json(definition)?;
        let mut pooled = self.connection().await?;
        pooled
            .get()
            .client
            .execute(
                "INSERT INTO stream_definitions (scope, stream, definition) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, stream) DO UPDATE SET definition = excluded.definition",
                &[&scope.0, &definition.stream.0, &text],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        Ok(())
    }

    async fn list_stream_definitions(&self) -> StoreResult<Vec<(ScopeId, StreamDefinition)>> {
        let mut pooled = self.connection().await?;
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT scope, definition FROM stream_definitions ORDER BY scope, stream",
                &[],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                let scope: Uuid = row.try_get(0).map_err(error::store_error)?;
                let text: &str = row.try_get(1).map_err(error::store_error)?;
                Ok((scope.into(), from_json(text, "stream definition")?))
            })
            .collect()
    }

    async fn append_to_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        entries: Vec<StreamEntry>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<StreamPosition> {
        for entry in &entries {
            refuse_nul(entry.partition.as_str(), "a partition")?;
        }
        let (reply, receiver) = oneshot::channel();
        let work = Work::AppendToStream {
            scope,
            stream,
            entries,
            processor: *processor,
            state: to_json(state)?,
        };
        self.append(work, Reply::Position(reply)).await?;
        answer(receiver).await
    }

    async fn read_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        from: StreamPosition,
        partition: Option<&PartitionId>,
        limit: usize,
    ) -> StoreResult<Vec<StreamEvent>> {
        let mut pooled = self.connection().await?;
        let statements = (
            pooled.get().statement(STREAM_LENGTH).await,
            pooled.get().statement(READ_STREAM).await,
            pooled.get().statement(READ_STREAM_PARTITION).await,
            pooled.get().statement(READ_CONTEXTS).await,
        );
        let (length_statement, read_statement, partition_statement, contexts_statement) =
            match statements {
                (Ok(length), Ok(read), Ok(partition), Ok(contexts)) => {
                    (length, read, partition, contexts)
                }
                (Err(error), _, _, _)
                | (_, Err(error), _, _)
                | (_, _, Err(error), _)
                | (_, _, _, Err(error)) => return Err(pooled.fail_store(error)),
            };
        // As in `read_log`: a length the store knows is committed.
        let length = match self.watches.known_stream_length(scope, stream) {
            Some(known) if known > from => known,
            _ => {
                let length: i64 = match pooled
                    .get()
                    .client
                    .query_opt(&length_statement, &[&scope.0, &stream.0])
                    .await
                {
                    Ok(Some(row)) => row.try_get(0).map_err(|error| pooled.fail(error))?,
                    Ok(None) => 0,
                    Err(error) => return Err(pooled.fail(error)),
                };
                from_bigint(length, "stream length")?
            }
        };
        let mut decoder = EventDecoder::new(&self.contexts);
        let mut events = Vec::new();
        // Positions are gapless, so reading all partitions needs one window of `limit`
        // positions; one partition is read in growing windows until the page is full or the
        // stream ends (see `read_log`).
        let mut cursor = from;
        let mut window = match partition {
            None => limit as u64,
            Some(_) => (limit as u64).clamp(MIN_READ_WINDOW, MAX_READ_WINDOW),
        };
        while cursor < length && events.len() < limit {
            let end = length.min(cursor.saturating_add(window));
            let wanted = limit_of(limit - events.len());
            let start = to_bigint(cursor, "stream position")?;
            let stop = to_bigint(end, "stream position")?;
            let client = &pooled.get().client;
            let result = match partition {
                Some(partition) => {
                    client
                        .query(
                            &partition_statement,
                            &[
                                &scope.0,
                                &stream.0,
                                &start,
                                &wanted,
                                &stop,
                                &partition.as_str(),
                            ],
                        )
                        .await
                }
                None => {
                    client
                        .query(
                            &read_statement,
                            &[&scope.0, &stream.0, &start, &wanted, &stop],
                        )
                        .await
                }
            };
            let rows = result.map_err(|error| pooled.fail(error))?;
            decoder
                .load_contexts(&pooled.get().client, &contexts_statement, &rows, 2)
                .await
                .map_err(|error| pooled.fail(error))?;
            for row in &rows {
                let position: i64 = row.try_get(0).map_err(error::store_error)?;
                let partition: String = row.try_get(1).map_err(error::store_error)?;
                events.push(StreamEvent {
                    position: from_bigint(position, "stream position")?,
                    partition: PartitionId(partition),
                    event: decoder.decode(row, 2)?,
                });
            }
            cursor = end;
            window = (window * 2).min(MAX_READ_WINDOW);
        }
        Ok(events)
    }

    fn watch_stream(&self, scope: ScopeId, stream: StreamId) -> watch::Receiver<StreamPosition> {
        self.watches.watch_stream(scope, stream)
    }

    async fn get_processor_state(
        &self,
        key: &ProcessorKey,
    ) -> StoreResult<Option<StreamProcessorState>> {
        self.query_text(
            "SELECT state FROM processor_states \
                 WHERE kind = $1 AND scope = $2 AND processor = $3",
            &[&key.kind.as_str(), &key.scope.0, &key.processor.0],
        )
        .await?
        .map(|text| from_json(&text, "processor state"))
        .transpose()
    }

    async fn save_processor_state(
        &self,
        key: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let text = to_json(state)?;
        let mut pooled = self.connection().await?;
        pooled
            .get()
            .client
            .execute(
                UPSERT_PROCESSOR_STATE,
                &[&key.kind.as_str(), &key.scope.0, &key.processor.0, &text],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        Ok(())
    }

    async fn list_processor_states(
        &self,
    ) -> StoreResult<Vec<(ProcessorKey, StreamProcessorState)>> {
        let mut pooled = self.connection().await?;
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT kind, scope, processor, state FROM processor_states \
                 ORDER BY kind, scope, processor",
                &[],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.try_get(0).map_err(error::store_error)?;
                let scope: Uuid = row.try_get(1).map_err(error::store_error)?;
                let processor: Uuid = row.try_get(2).map_err(error::store_error)?;
                let text: &str = row.try_get(3).map_err(error::store_error)?;
                let kind = ProcessorKind::parse(kind)
                    .ok_or_else(|| error::corrupt(format!("processor kind {kind:?}")))?;
                Ok((
                    ProcessorKey {
                        kind,
                        scope: scope.into(),
                        processor: EventProcessorId(processor),
                    },
                    from_json(text, "processor state")?,
                ))
            })
            .collect()
    }

    async fn get_projection_definition(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Option<ProjectionDefinition>> {
        self.query_text(
            "SELECT definition FROM projection_definitions \
                 WHERE scope = $1 AND projection = $2",
            &[&scope.0, &projection.0],
        )
        .await?
        .map(|text| from_json(&text, "projection definition"))
        .transpose()
    }

    async fn put_projection_definition(
        &self,
        definition: &ProjectionDefinition,
    ) -> StoreResult<()> {
        validate_json(&definition.initial_state).map_err(|reason| {
            StoreError::InvalidArgument(format!(
                "the initial state of the projection is not valid JSON: {reason}"
            ))
        })?;
        let text = to_json(definition)?;
        let mut pooled = self.connection().await?;
        pooled
            .get()
            .client
            .execute(
                UPSERT_PROJECTION_DEFINITION,
                &[&definition.scope.0, &definition.projection.0, &text],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        Ok(())
    }

    async fn list_projection_definitions(&self) -> StoreResult<Vec<ProjectionDefinition>> {
        let mut pooled = self.connection().await?;
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT definition FROM projection_definitions ORDER BY scope, projection",
                &[],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                let text: &str = row.try_get(0).map_err(error::store_error)?;
                from_json(text, "projection definition")
            })
            .collect()
    }

    async fn get_read_model(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        key: &str,
    ) -> StoreResult<Option<String>> {
        refuse_nul(key, "a read model key")?;
        self.query_text(
            "SELECT state FROM read_models WHERE scope = $1 AND projection = $2 AND key = $3",
            &[&scope.0, &projection.0, &key],
        )
        .await
    }

    async fn get_read_models(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Vec<(String, String)>> {
        let mut pooled = self.connection().await?;
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT key, state FROM read_models WHERE scope = $1 AND projection = $2 \
                 ORDER BY key COLLATE \"C\"",
                &[&scope.0, &projection.0],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(error::store_error)?,
                    row.try_get(1).map_err(error::store_error)?,
                ))
            })
            .collect()
    }

    async fn apply_read_model_changes(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        changes: Vec<ReadModelChange>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        // The last change of a key wins.
        let mut last_changes: HashMap<String, Option<String>> = HashMap::new();
        for change in changes {
            refuse_nul(&change.key, "a read model key")?;
            if let Some(state) = &change.state {
                validate_json(state).map_err(|reason| {
                    StoreError::InvalidArgument(format!(
                        "the state of read model {:?} is not valid JSON: {reason}",
                        change.key
                    ))
                })?;
            }
            last_changes.insert(change.key, change.state);
        }
        let mut deleted: Vec<&str> = Vec::new();
        let (mut set_keys, mut set_states): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for (key, state) in &last_changes {
            match state {
                Some(state) => {
                    set_keys.push(key);
                    set_states.push(state);
                }
                None => deleted.push(key),
            }
        }
        let state_text = to_json(state)?;
        let mut pooled = self.connection().await?;
        let result = async {
            let transaction = pooled.get().client.transaction().await?;
            if !deleted.is_empty() {
                transaction
                    .execute(
                        "DELETE FROM read_models \
                         WHERE scope = $1 AND projection = $2 AND key = ANY($3)",
                        &[&scope.0, &projection.0, &deleted],
                    )
                    .await?;
            }
            if !set_keys.is_empty() {
                transaction
                    .execute(
                        "INSERT INTO read_models (scope, projection, key, state) \
                         SELECT $1, $2, * FROM unnest($3::text[], $4::text[]) \
                         ON CONFLICT (scope, projection, key) DO UPDATE SET state = excluded.state",
                        &[&scope.0, &projection.0, &set_keys, &set_states],
                    )
                    .await?;
            }
            transaction
                .execute(
                    UPSERT_PROCESSOR_STATE,
                    &[
                        &processor.kind.as_str(),
                        &processor.scope.0,
                        &processor.processor.0,
                        &state_text,
                    ],
                )
                .await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| pooled.fail(error))
    }

    async fn promote_projection_rebuild(
        &self,
        rebuilt: EventProcessorId,
        definition: &ProjectionDefinition,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let definition_text = to_json(definition)?;
        let state_text = to_json(state)?;
        let scope = definition.scope.0;
        let live = definition.projection.0;
        let kind = ProcessorKind::Projection.as_str();
        let mut pooled = self.connection().await?;
        let result = async {
            let transaction = pooled.get().client.transaction().await?;
            transaction
                .execute(
                    "DELETE FROM read_models WHERE scope = $1 AND projection = $2",
                    &[&scope, &live],
                )
                .await?;
            transaction
                .execute(
                    "UPDATE read_models SET projection = $3 WHERE scope = $1 AND projection = $2",
                    &[&scope, &rebuilt.0, &live],
                )
                .await?;
            transaction
                .execute(
                    UPSERT_PROJECTION_DEFINITION,
                    &[&scope, &live, &definition_text],
                )
                .await?;
            transaction
                .execute(UPSERT_PROCESSOR_STATE, &[&kind, &scope, &live, &state_text])
                .await?;
            transaction
                .execute(
                    "DELETE FROM projection_definitions WHERE scope = $1 AND projection = $2",
                    &[&scope, &rebuilt.0],
                )
                .await?;
            transaction
                .execute(
                    "DELETE FROM processor_states \
                     WHERE kind = $1 AND scope = $2 AND processor = $3",
                    &[&kind, &scope, &rebuilt.0],
                )
                .await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| pooled.fail(error))
    }

    async fn drop_projection(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<()> {
        let kind = ProcessorKind::Projection.as_str();
        let mut pooled = self.connection().await?;
        let result = async {
            let transaction = pooled.get().client.transaction().await?;
            transaction
                .execute(
                    "DELETE FROM read_models WHERE scope = $1 AND projection = $2",
                    &[&scope.0, &projection.0],
                )
                .await?;
            transaction
                .execute(
                    "DELETE FROM projection_definitions WHERE scope = $1 AND projection = $2",
                    &[&scope.0, &projection.0],
                )
                .await?;
            transaction
                .execute(
                    "DELETE FROM processor_states \
                     WHERE kind = $1 AND scope = $2 AND processor = $3",
                    &[&kind, &scope.0, &projection.0],
                )
                .await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| pooled.fail(error))
    }

    async fn commit_external(
        &self,
        subscription: &SubscriptionKey,
        events: Vec<ExternalEvent>,
        state: &SubscriptionState,
    ) -> StoreResult<Vec<CommittedEvent>> {
        refuse_nul(subscription.partition.as_str(), "a partition")?;
        for (index, external) in events.iter().enumerate() {
            validate_json(&external.event.content)
                .map_err(|reason| StoreError::InvalidContent { index, reason })?;
            refuse_nul(external.event.event_source.as_str(), "an event source")?;
        }
        let (reply, receiver) = oneshot::channel();
        let work = Work::CommitExternal {
            subscription: subscription.clone(),
            events,
            state: to_json(state)?,
        };
        self.append(work, Reply::Events(reply)).await?;
        answer(receiver).await
    }

    async fn get_subscription_state(
        &self,
        subscription: &SubscriptionKey,
    ) -> StoreResult<Option<SubscriptionState>> {
        self.query_text(
            "SELECT state FROM subscription_states WHERE producer_microservice = $1 \
                 AND producer_tenant = $2 AND stream = $3 AND partition = $4 AND scope = $5",
            &[
                &subscription.producer_microservice.0,
                &subscription.producer_tenant.0,
                &subscription.stream.0,
                &subscription.partition.as_str(),
                &subscription.scope.0,
            ],
        )
        .await?
        .map(|text| from_json(&text, "subscription state"))
        .transpose()
    }

    async fn save_subscription_state(
        &self,
        subscription: &SubscriptionKey,
        state: &SubscriptionState,
    ) -> StoreResult<()> {
        refuse_nul(subscription.partition.as_str(), "a partition")?;
        let text = to_json(state)?;
        let mut pooled = self.connection().await?;
        pooled
            .get()
            .client
            .execute(
                "INSERT INTO subscription_states \
                 (producer_microservice, producer_tenant, stream, partition, scope, state) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (producer_microservice, producer_tenant, stream, partition, scope) \
                 DO UPDATE SET state = excluded.state",
                &[
                    &subscription.producer_microservice.0,
                    &subscription.producer_tenant.0,
                    &subscription.stream.0,
                    &subscription.partition.as_str(),
                    &subscription.scope.0,
                    &text,
                ],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        Ok(())
    }

    async fn list_subscription_states(
        &self,
    ) -> StoreResult<Vec<(SubscriptionKey, SubscriptionState)>> {
        let mut pooled = self.connection().await?;
        let rows = pooled
            .get()
            .client
            .query(
                "SELECT producer_microservice, producer_tenant, stream, partition, scope, state \
                 FROM subscription_states \
                 ORDER BY producer_microservice, producer_tenant, stream, partition, scope",
                &[],
            )
            .await
            .map_err(|error| pooled.fail(error))?;
        rows.iter()
            .map(|row| {
                let microservice: Uuid = row.try_get(0).map_err(error::store_error)?;
                let tenant: Uuid = row.try_get(1).map_err(error::store_error)?;
                let stream: Uuid = row.try_get(2).map_err(error::store_error)?;
                let partition: String = row.try_get(3).map_err(error::store_error)?;
                let scope: Uuid = row.try_get(4).map_err(error::store_error)?;
                let text: &str = row.try_get(5).map_err(error::store_error)?;
                Ok((
                    SubscriptionKey {
                        producer_microservice: MicroserviceId(microservice),
                        producer_tenant: TenantId(tenant),
                        stream: stream.into(),
                        partition: PartitionId(partition),
                        scope: scope.into(),
                    },
                    from_json(text, "subscription state")?,
                ))
            })
            .collect()
    }
}

const UPSERT_PROCESSOR_STATE: &str = "INSERT INTO processor_states (kind, scope, processor, state) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (kind, scope, processor) DO UPDATE SET state = excluded.state";
const UPSERT_PROJECTION_DEFINITION: &str = "INSERT INTO projection_definitions \
     (scope, projection, definition) VALUES ($1, $2, $3) \
     ON CONFLICT (scope, projection) DO UPDATE SET definition = excluded.definition";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_has_the_documented_defaults() {
        let config = PostgresConfig::new("postgres://postgres@127.0.0.1:5432/tenant");
        assert_eq!(config.schema, "public");
        assert_eq!(config.max_connections, 16);
    }

    #[test]
    fn the_location_names_no_password() {
        let config: tokio_postgres::Config = "postgres://alice:secret@db.example:6543/tenant_a"
            .parse()
            .expect("a valid url");
        let location = describe_location(&config, "dolittle");
        assert_eq!(
            location,
            "postgres://db.example:6543/tenant_a schema dolittle"
        );
        assert!(!location.contains("secret"));
    }
}
