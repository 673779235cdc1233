//! Reads, on connections of their own: a small pool of reading connections used from tokio's
//! blocking threads, so that reads never wait for the writer (WAL readers see the last commit
//! without taking its lock) and async code never blocks on the disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use dolittle_store::{
    LogFilter, LogPage, ProcessorKey, ProcessorKind, ProjectionDefinition, StoreError, StoreResult,
    StreamDefinition, StreamEvent, StreamProcessorState, SubscriptionKey, SubscriptionState,
};
use dolittle_types::{
    AggregateMetadata, AggregateRootId, AggregateRootInstance, CommittedAggregateEvents,
    CommittedEvent, ConsentId, CorrelationId, EventHorizonMetadata, EventLogSequenceNumber,
    EventProcessorId, EventSourceId, EventType, EventTypeId, ExecutionContext, MicroserviceId,
    PartitionId, ScopeId, StreamId, StreamPosition, TenantId, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use crate::codec::{Guid, from_json, guid, sqlite_error, to_i64, to_u64, uuid};
use crate::schema::{self, EVENT_COLUMNS, log_table};

/// How many idle reading connections the pool keeps.
const MAX_IDLE_READERS: usize = 8;
/// How many shared execution contexts a reader remembers.
const MAX_CACHED_CONTEXTS: usize = 4096;

pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs a read on a blocking thread with a reading connection.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reader) -> StoreResult<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut reader = match idle {
                Some(reader) => reader,
                None => Reader::open(&pool.path)?,
            };
            let result = read(&mut reader);
            if reader.connection.is_autocommit() {
                let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(reader);
                }
            }
            result
        })
        .await
        .map_err(|error| StoreError::Internal(format!("a read task failed: {error}")))?
    }
}

/// A reading connection and what it remembers of immutable rows.
pub(crate) struct Reader {
    connection: Connection,
    /// Shared execution contexts by key; a context row never changes once written.
    contexts: HashMap<i64, ExecutionContext>,
    /// Scope keys; a scope's key never changes once given.
    scopes: HashMap<ScopeId, i64>,
}

/// The parts of a read that need the connection, apart from the caches, so that both can be
/// borrowed at once.
struct Decoder<'a> {
    connection: &'a Connection,
    contexts: &'a mut HashMap<i64, ExecutionContext>,
    /// The last context decoded, with its key: most events of a read share their context with
    /// the event before, and comparing keys is cheaper than hashing one.
    last_context: Option<(i64, ExecutionContext)>,
}

impl Decoder<'_> {
    fn context(&mut self, key: i64) -> rusqlite::Result<ExecutionContext> {
        if let Some((last, context)) = &self.last_context
            && *last == key
        {
            return Ok(context.clone());
        }
        let context = match self.contexts.get(&key) {
            Some(context) => context.clone(),
            None => self.load_context(key)?,
        };
        self.last_context = Some((key, context.clone()));
        Ok(context)
    }

    /// Reads a context that is not cached yet from its row, and caches it.
    fn load_context(&mut self, key: i64) -> rusqlite::Result<ExecutionContext> {
        let body: String = self
            .connection
            .prepare_cached("SELECT body FROM execution_contexts WHERE context_key = ?1")?
            .query_row([key], |row| row.get(0))?;
        let context: ExecutionContext = serde_json::from_str(&body)
            .map_err(|error| crate::codec::corrupt(format!("execution context {key}: {error}")))?;
        if self.contexts.len() >= MAX_CACHED_CONTEXTS {
            self.contexts.clear();
        }
        self.contexts.insert(key, context.clone());
        Ok(context)
    }

    /// Decodes the [`EVENT_COLUMNS`] that start at column `first`.
    fn event(&mut self, row: &Row<'_>, first: usize) -> rusqlite::Result<CommittedEvent> {
        let column = |offset: usize| first + offset;
        let mut execution_context = self.context(row.get(column(3))?)?;
        execution_context.correlation = CorrelationId(uuid(row.get(column(4))?));
        let generation: i64 = row.get(column(6))?;
        let aggregate_root: Option<Guid> = row.get(column(9))?;
        let aggregate = match aggregate_root {
            Some(root) => Some(AggregateMetadata {
                aggregate_root: AggregateRootId(uuid(root)),
                version: to_u64(row.get(column(10))?, "aggregate version")?,
            }),
            None => None,
        };
        let external_sequence_number: Option<i64> = row.get(column(11))?;
        let event_horizon = match external_sequence_number {
            Some(number) => Some(EventHorizonMetadata {
                external_sequence_number: to_u64(number, "external sequence number")?,
                received: Timestamp(row.get(column(12))?),
                consent: ConsentId(uuid(row.get(column(13))?)),
            }),
            None => None,
        };
        Ok(CommittedEvent {
            sequence_number: to_u64(row.get(column(0))?, "sequence number")?,
            occurred: Timestamp(row.get(column(1))?),
            event_source: EventSourceId(row.get(column(2))?),
            execution_context,
            event_type: EventType::new(
                EventTypeId(uuid(row.get(column(5))?)),
                u32::try_from(generation).map_err(|_| {
                    crate::codec::corrupt(format!("generation {generation} is out of range"))
                })?,
            ),
            public: row.get(column(7))?,
            content: row.get(column(8))?,
            aggregate,
            event_horizon,
        })
    }
}

impl Reader {
    fn open(path: &std::path::Path) -> StoreResult<Self> {
        Ok(Self {
            connection: schema::open_reader(path)?,
            contexts: HashMap::new(),
            scopes: HashMap::new(),
        })
    }

    fn scope_key(&mut self, scope: ScopeId) -> StoreResult<Option<i64>> {
        if let Some(key) = self.scopes.get(&scope) {
            return Ok(Some(*key));
        }
        let key: Option<i64> = self
            .connection
            .prepare_cached("SELECT scope_key FROM scopes WHERE scope_id = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([guid(scope)], |row| row.get(0))
                    .optional()
            })
            .map_err(sqlite_error)?;
        if let Some(key) = key {
            self.scopes.insert(scope, key);
        }
        Ok(key)
    }

    /// Runs a read in one read transaction, so that it sees one snapshot of the database.
    fn snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Decoder<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let transaction = self.connection.transaction().map_err(sqlite_error)?;
        let mut decoder = Decoder {
            connection: &transaction,
            contexts: &mut self.contexts,
            last_context: None,
        };
        let result = read(&mut decoder).map_err(sqlite_error)?;
        transaction.commit().map_err(sqlite_error)?;
        Ok(result)
    }

    pub(crate) fn read_log(
        &mut self,
        scope: ScopeId,
        from: EventLogSequenceNumber,
        limit: usize,
        filter: &LogFilter,
    ) -> StoreResult<LogPage> {
        let Some(scope_key) = self.scope_key(scope)? else {
            return Ok(LogPage {
                events: Vec::new(),
                next: from,
            });
        };
        let keeps_nothing = filter.event_types.as_ref().is_some_and(Vec::is_empty);
        let table = log_table(scope_key);
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM {table} WHERE sequence_number >= ?");
        let mut arguments: Vec<rusqlite::types::Value> = vec![to_i64(from, "position")?.into()];
        if let Some(types) = filter
            .event_types
            .as_ref()
            .filter(|types| !types.is_empty())
        {
            sql.push_str(" AND type_id IN (");
            sql.push_str(&vec!["?"; types.len()].join(", "));
            sql.push(')');
            arguments.extend(types.iter().map(|id| guid(*id).to_vec().into()));
        }
        if filter.public_only {
            sql.push_str(" AND public = 1");
        }
        if let Some(source) = &filter.event_source {
            sql.push_str(" AND event_source = ?");
            arguments.push(source.as_str().to_owned().into());
        }
        // No LIMIT: SQLite prepares a statement again whenever a LIMIT parameter is bound, so
        // the read stops stepping once it has enough rows instead (the rows come in the order of
        // the table, so nothing is sorted first).
        sql.push_str(" ORDER BY sequence_number");
        let length_sql = format!("SELECT coalesce(max(sequence_number) + 1, 0) FROM {table}");
        self.snapshot(|decoder| {
            let mut events = Vec::with_capacity(limit.min(4096));
            if !keeps_nothing && limit > 0 {
                let mut statement = decoder.connection.prepare_cached(&sql)?;
                let mut rows = statement.query(params_from_iter(arguments))?;
                while events.len() < limit
                    && let Some(row) = rows.next()?
                {
                    events.push(decoder.event(row, 0)?);
                }
            }
            let next = match events.last() {
                Some(last) if events.len() == limit => last.sequence_number + 1,
                _ => {
                    let length: i64 = decoder
                        .connection
                        .prepare_cached(&length_sql)?
                        .query_row([], |row| row.get(0))?;
                    to_u64(length, "log length")?.max(from)
                }
            };
            Ok(LogPage { events, next })
        })
    }

    pub(crate) fn fetch_aggregate(
        &mut self,
        aggregate_root: AggregateRootId,
        event_source: &EventSourceId,
    ) -> StoreResult<CommittedAggregateEvents> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_log_0 WHERE aggregate_key = ?1 \
             ORDER BY aggregate_version"
        );
        self.snapshot(|decoder| {
            let instance: Option<(i64, i64)> = decoder
                .connection
                .prepare_cached(
                    "SELECT aggregate_key, version FROM aggregates \
                     WHERE aggregate_root = ?1 AND event_source = ?2",
                )?
                .query_row(
                    rusqlite::params![guid(aggregate_root), event_source.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let mut events = Vec::new();
            let mut version = 0;
            if let Some((key, stored_version)) = instance {
                version = to_u64(stored_version, "aggregate version")?;
                let mut statement = decoder.connection.prepare_cached(&sql)?;
                let mut rows = statement.query([key])?;
                while let Some(row) = rows.next()? {
                    events.push(decoder.event(row, 0)?);
                }
            }
            Ok(CommittedAggregateEvents {
                aggregate_root,
                event_source: event_source.clone(),
                version,
                events,
            })
        })
    }

    pub(crate) fn list_aggregates(
        &mut self,
        aggregate_root: Option<AggregateRootId>,
    ) -> StoreResult<Vec<AggregateRootInstance>> {
        // Two statements, so that listing one aggregate root uses the index on it.
        let sql = if aggregate_root.is_some() {
            "SELECT aggregate_root, event_source, version FROM aggregates \
             WHERE aggregate_root = ?1 ORDER BY aggregate_key"
        } else {
            "SELECT aggregate_root, event_source, version FROM aggregates \
             WHERE ?1 IS NULL ORDER BY aggregate_key"
        };
        self.snapshot(|decoder| {
            let mut statement = decoder.connection.prepare_cached(sql)?;
            let rows = statement.query_map([aggregate_root.map(guid)], |row| {
                Ok(AggregateRootInstance {
                    aggregate_root: AggregateRootId(uuid(row.get(0)?)),
                    event_source: EventSourceId(row.get(1)?),
                    version: to_u64(row.get(2)?, "aggregate version")?,
                })
            })?;
            rows.collect()
        })
    }

    pub(crate) fn read_stream(
        &mut self,
        scope: ScopeId,
        stream: StreamId,
        from: StreamPosition,
        partition: Option<&PartitionId>,
        limit: usize,
    ) -> StoreResult<Vec<StreamEvent>> {
        let Some(scope_key) = self.scope_key(scope)? else {
            return Ok(Vec::new());
        };
        let columns = EVENT_COLUMNS
            .split(", ")
            .map(|column| format!("event.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Reading one partition walks the partition index, never the whole stream; the planner
        // cannot know that a partition is sparse, so it is told.
        let (entries_index, partition_condition) = if partition.is_some() {
            (
                " INDEXED BY stream_entries_by_partition",
                " AND entry.partition = ?4",
            )
        } else {
            ("", " AND ?4 IS NULL")
        };
        let sql = format!(
            "SELECT entry.position, entry.partition, {columns} \
             FROM streams JOIN stream_entries AS entry{entries_index} \
             ON entry.stream_key = streams.stream_key \
             JOIN {table} AS event ON event.sequence_number = entry.sequence_number \
             WHERE streams.scope_id = ?1 AND streams.stream_id = ?2 AND entry.position >= ?3\
             {partition_condition} ORDER BY entry.position",
            table = log_table(scope_key),
        );
        let from = to_i64(from, "stream position")?;
        let partition = partition.map(|partition| partition.as_str().to_owned());
        self.snapshot(|decoder| {
            let mut statement = decoder.connection.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params![
                guid(scope),
                guid(stream),
                from,
                partition
            ])?;
            let mut events = Vec::new();
            // No LIMIT, for the reason given in `read_log`.
            while events.len() < limit
                && let Some(row) = rows.next()?
            {
                events.push(StreamEvent {
                    position: to_u64(row.get(0)?, "stream position")?,
                    partition: PartitionId(row.get(1)?),
                    event: decoder.event(row, 2)?,
                });
            }
            Ok(events)
        })
    }

    pub(crate) fn get_stream_definition(
        &mut self,
        scope: ScopeId,
        stream: StreamId,
    ) -> StoreResult<Option<StreamDefinition>> {
        let body = self.optional_text(
            "SELECT body FROM stream_definitions WHERE scope_id = ?1 AND stream_id = ?2",
            rusqlite::params![guid(scope), guid(stream)],
        )?;
        body.as_deref().map(from_json).transpose()
    }

    pub(crate) fn list_stream_definitions(
        &mut self,
    ) -> StoreResult<Vec<(ScopeId, StreamDefinition)>> {
        let rows: Vec<(Guid, String)> = self
            .all_rows("SELECT scope_id, body FROM stream_definitions", |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        rows.into_iter()
            .map(|(scope, body)| Ok((ScopeId(uuid(scope)), from_json(&body)?)))
            .collect()
    }

    pub(crate) fn get_processor_state(
        &mut self,
        key: &ProcessorKey,
    ) -> StoreResult<Option<StreamProcessorState>> {
        let body = self.optional_text(
            "SELECT body FROM processor_states \
             WHERE kind = ?1 AND scope_id = ?2 AND processor_id = ?3",
            rusqlite::params![key.kind.as_str(), guid(key.scope), guid(key.processor)],
        )?;
        body.as_deref().map(from_json).transpose()
    }

    pub(crate) fn list_processor_states(
        &mut self,
    ) -> StoreResult<Vec<(ProcessorKey, StreamProcessorState)>> {
        let rows: Vec<(String, Guid, Guid, String)> = self.all_rows(
            "SELECT kind, scope_id, processor_id, body FROM processor_states",
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
        rows.into_iter()
            .map(|(kind, scope, processor, body)| {
                let kind = ProcessorKind::parse(&kind).ok_or_else(|| {
                    StoreError::Internal(format!("unknown stream processor kind {kind:?}"))
                })?;
                let key = ProcessorKey {
                    kind,
                    scope: ScopeId(uuid(scope)),
                    processor: EventProcessorId(uuid(processor)),
                };
                Ok((key, from_json(&body)?))
            })
            .collect()
    }

    pub(crate) fn get_projection_definition(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Option<ProjectionDefinition>> {
        let body = self.optional_text(
            "SELECT body FROM projection_definitions WHERE scope_id = ?1 AND projection_id = ?2",
            rusqlite::params![guid(scope), guid(projection)],
        )?;
        body.as_deref().map(from_json).transpose()
    }

    pub(crate) fn list_projection_definitions(&mut self) -> StoreResult<Vec<ProjectionDefinition>> {
        let rows: Vec<String> =
            self.all_rows("SELECT body FROM projection_definitions", |row| row.get(0))?;
        rows.iter().map(|body| from_json(body)).collect()
    }

    pub(crate) fn get_read_model(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
        key: &str,
    ) -> StoreResult<Option<String>> {
        self.optional_text(
            "SELECT state FROM read_models WHERE scope_id = ?1 AND projection_id = ?2 AND key = ?3",
            rusqlite::params![guid(scope), guid(projection), key],
        )
    }

    pub(crate) fn get_read_models(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Vec<(String, String)>> {
        self.snapshot(|decoder| {
            let mut statement = decoder.connection.prepare_cached(
                "SELECT key, state FROM read_models WHERE scope_id = ?1 AND projection_id = ?2 \
                 ORDER BY key",
            )?;
            let rows = statement
                .query_map(rusqlite::params![guid(scope), guid(projection)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            rows.collect()
        })
    }

    pub(crate) fn get_subscription_state(
        &mut self,
        key: &SubscriptionKey,
    ) -> StoreResult<Option<SubscriptionState>> {
        let body = self.optional_text(
            "SELECT body FROM subscription_states WHERE producer_microservice = ?1 \
             AND producer_tenant = ?2 AND stream_id = ?3 AND partition = ?4 AND scope_id = ?5",
            rusqlite::params![
                guid(key.producer_microservice),
                guid(key.producer_tenant),
                guid(key.stream),
                key.partition.as_str(),
                guid(key.scope)
            ],
        )?;
        body.as_deref().map(from_json).transpose()
    }

    pub(crate) fn list_subscription_states(
        &mut self,
    ) -> StoreResult<Vec<(SubscriptionKey, SubscriptionState)>> {
        type SubscriptionRow = (Guid, Guid, Guid, String, Guid, String);
        let rows: Vec<SubscriptionRow> = self.all_rows(
            "SELECT producer_microservice, producer_tenant, stream_id, partition, scope_id, body \
             FROM subscription_states",
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(microservice, tenant, stream, partition, scope, body)| {
                let key = SubscriptionKey {
                    producer_microservice: MicroserviceId(uuid(microservice)),
                    producer_tenant: TenantId(uuid(tenant)),
                    stream: StreamId(uuid(stream)),
                    partition: PartitionId(partition),
                    scope: ScopeId(uuid(scope)),
                };
                Ok((key, from_json(&body)?))
            })
            .collect()
    }

    fn optional_text(
        &mut self,
        sql: &str,
        parameters: impl rusqlite::Params,
    ) -> StoreResult<Option<String>> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.query_row(parameters, |row| row.get(0)).optional())
            .map_err(sqlite_error)
    }

    fn all_rows<T>(
        &mut self,
        sql: &str,
        decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        self.snapshot(|decoder| {
            let mut statement = decoder.connection.prepare_cached(sql)?;
            let rows = statement.query_map([], decode)?;
            rows.collect()
        })
    }
}
