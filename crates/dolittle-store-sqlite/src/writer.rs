//! The one writer thread of a database, and its group commit.
//!
//! Every write is a [`Request`] sent over a channel. The writer takes the first waiting request,
//! drains whatever else is queued (up to [`MAX_GROUP`]), and writes them all in ONE transaction
//! with ONE sync of the WAL: under load, the cost of the sync is shared by every request of the
//! group. Each request runs inside its own savepoint, so a refused request (an aggregate
//! conflict, an entry that references a missing event) writes nothing and does not disturb the
//! others of its group. Replies go out, and watchers are woken, only after the transaction
//! committed.
//!
//! The writer keeps the length of every log and stream in memory (it is the only writer, and a
//! file lock keeps other processes out), so numbering needs no query. Changes that a request
//! makes to that memory are staged, applied when its savepoint is released, and dropped when it
//! is rolled back; a failed commit reloads everything from the file.
//!
//! Durability: commits of events, definitions and stream appends are written with
//! `synchronous=FULL`, so an acknowledged write survives power loss. A group that holds only
//! processor states, subscription states or read-model changes is written with
//! `synchronous=NORMAL` (no sync of its own): a crash may lose the last of those, which makes
//! the processors deliver some events again, and never skips one, because a lost state always
//! goes with everything written after it (the WAL is replayed as a prefix).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use dolittle_store::{
    ExternalEvent, ProcessorKey, ProcessorKind, ProjectionDefinition, ReadModelChange, StoreError,
    StoreResult, StreamDefinition, StreamEntry, StreamProcessorState, SubscriptionKey,
    SubscriptionState,
};
use dolittle_types::{
    AggregateMetadata, CommittedAggregateEvents, CommittedEvent, EventHorizonMetadata,
    EventProcessorId, ExecutionContext, ScopeId, StreamId, Timestamp, UncommittedAggregateEvents,
    UncommittedEvent,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::codec::{Guid, guid, shared_context_body, sqlite_error, to_i64, to_json, to_u64, uuid};
use crate::schema::{create_scoped_log, log_table};
use crate::watchers::Watchers;

/// How long the writer keeps looking for the next request after a group before it sleeps, so
/// that a committer that answers each reply with its next commit within this time finds the
/// writer awake instead of waking its thread. An idle store pays this once per group. (Its gain
/// is small: alternating runs of the Runtime bench put it within the noise of this machine.)
const LINGER: Duration = Duration::from_micros(60);

/// The next request: one already waiting, one that comes while the writer lingers, or the next
/// one after it slept. `None` when every sender is gone.
fn next_request(requests: &Receiver<Request>) -> Option<Request> {
    let started = Instant::now();
    loop {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if started.elapsed() >= LINGER => {
                return requests.recv().ok();
            }
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// The most requests written in one transaction.
const MAX_GROUP: usize = 1024;
/// How many shared execution contexts the writer remembers.
const MAX_CACHED_CONTEXTS: usize = 4096;
/// The WAL length (in frames, a page each) from which the writer finishes the checkpointer's
/// work itself, so that its next transaction starts the WAL over. Rewriting a WAL that no longer
/// grows is what keeps syncs cheap: a sync that must also record a longer file costs about twice
/// as much on ext4. While commits keep coming the checkpointer never catches up with the end of
/// the WAL, so this is the length at which the WAL stops growing; a short one leaves a new or
/// reopened store few commits of growth (with 4,096 frames, single commits over the first two
/// seconds of a store were about 12 % slower than with 1,024).
const WAL_RESTART_FRAMES: i64 = 1024;
/// How long the writer waits before it tries again when readers kept its checkpoint from
/// catching up.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(20);

pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// What the writer does once the group's transaction has committed (`None`) or failed.
type Completion = Box<dyn FnOnce(Option<&StoreError>)>;

/// How durable a write must be when it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced to disk before the reply.
    Full,
    /// May be lost in a crash together with every write after it.
    Relaxed,
}

/// One write, with the channel its reply goes to.
pub(crate) struct Request {
    durability: Durability,
    operation: Box<dyn FnOnce(&mut Writer) -> Completion + Send>,
}

impl Request {
    pub(crate) fn new<T, F>(durability: Durability, reply: Reply<T>, operation: F) -> Self
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> StoreResult<T> + Send + 'static,
    {
        Self {
            durability,
            operation: Box::new(move |writer| writer.run_request(reply, operation)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Log {
    key: i64,
    length: u64,
}

/// The logs and streams of a database with their lengths, as found at open.
pub(crate) struct Lengths {
    logs: HashMap<ScopeId, Log>,
    streams: HashMap<(ScopeId, StreamId), Log>,
}

impl Lengths {
    pub(crate) fn load(connection: &Connection) -> StoreResult<Self> {
        let scopes: Vec<(i64, [u8; 16])> = connection
            .prepare("SELECT scope_key, scope_id FROM scopes")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(sqlite_error)?;
        let mut logs = HashMap::new();
        for (key, scope) in scopes {
            let length: i64 = connection
                .query_row(
                    &format!(
                        "SELECT coalesce(max(sequence_number) + 1, 0) FROM {}",
                        log_table(key)
                    ),
                    [],
                    |row| row.get(0),
                )
                .map_err(sqlite_error)?;
            let length = to_u64(length, "log length").map_err(sqlite_error)?;
            logs.insert(ScopeId(uuid(scope)), Log { key, length });
        }
        let streams = connection
            .prepare(
                "SELECT stream_key, scope_id, stream_id, \
                 (SELECT coalesce(max(position) + 1, 0) FROM stream_entries \
                  WHERE stream_entries.stream_key = streams.stream_key) \
                 FROM streams",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| {
                        let scope: [u8; 16] = row.get(1)?;
                        let stream: [u8; 16] = row.get(2)?;
                        let log = Log {
                            key: row.get(0)?,
                            length: to_u64(row.get(3)?, "stream length")?,
                        };
                        Ok(((ScopeId(uuid(scope)), StreamId(uuid(stream))), log))
                    })?
                    .collect()
            })
            .map_err(sqlite_error)?;
        Ok(Self { logs, streams })
    }

    pub(crate) fn logs(&self) -> impl Iterator<Item = (ScopeId, u64)> + '_ {
        self.logs.iter().map(|(scope, log)| (*scope, log.length))
    }

    pub(crate) fn streams(&self) -> impl Iterator<Item = ((ScopeId, StreamId), u64)> + '_ {
        self.streams.iter().map(|(key, log)| (*key, log.length))
    }
}

/// Changes of one request to the writer's memory, applied when its savepoint is released.
#[derive(Default)]
struct Staged {
    logs: HashMap<ScopeId, Log>,
    streams: HashMap<(ScopeId, StreamId), Log>,
    contexts: Vec<(String, i64)>,
}

/// The columns of an event log row, in the order of the log's insert statement.
struct LogRow<'a> {
    sequence_number: i64,
    occurred: i64,
    event_source: &'a str,
    context_key: i64,
    correlation: Guid,
    type_id: Guid,
    generation: u32,
    public: bool,
    content: &'a str,
    aggregate_key: Option<i64>,
    aggregate_root: Option<Guid>,
    aggregate_version: Option<i64>,
    external_sequence_number: Option<i64>,
    received: Option<i64>,
    consent: Option<Guid>,
}

impl<'a> LogRow<'a> {
    fn new(
        event: &'a CommittedEvent,
        aggregate_key: Option<i64>,
        context_key: i64,
    ) -> StoreResult<Self> {
        let aggregate = event.aggregate.as_ref();
        let horizon = event.event_horizon.as_ref();
        Ok(Self {
            sequence_number: to_i64(event.sequence_number, "sequence number")?,
            occurred: event.occurred.unix_micros(),
            event_source: event.event_source.as_str(),
            context_key,
            correlation: guid(event.execution_context.correlation),
            type_id: guid(event.event_type.id),
            generation: event.event_type.generation,
            public: event.public,
            content: &event.content,
            aggregate_key,
            aggregate_root: aggregate.map(|metadata| guid(metadata.aggregate_root)),
            aggregate_version: aggregate
                .map(|metadata| to_i64(metadata.version, "aggregate version"))
                .transpose()?,
            external_sequence_number: horizon
                .map(|metadata| to_i64(metadata.external_sequence_number, "sequence number"))
                .transpose()?,
            received: horizon.map(|metadata| metadata.received.unix_micros()),
            consent: horizon.map(|metadata| guid(metadata.consent)),
        })
    }

    /// Binds the row to the log's insert statement, leaving alone the parameters that still
    /// hold the same value from `previous`, the row last executed with this statement.
    fn bind(
        &self,
        statement: &mut rusqlite::Statement<'_>,
        previous: Option<&Self>,
    ) -> rusqlite::Result<()> {
        let mut index = 0;
        macro_rules! columns {
            ($($column:ident),*) => {$(
                index += 1;
                if previous.map(|row| &row.$column) != Some(&self.$column) {
                    statement.raw_bind_parameter(index, &self.$column)?;
                }
            )*};
        }
        columns!(
            sequence_number,
            occurred,
            event_source,
            context_key,
            correlation,
            type_id,
            generation,
            public,
            content,
            aggregate_key,
            aggregate_root,
            aggregate_version,
            external_sequence_number,
            received,
            consent
        );
        Ok(())
    }
}

pub(crate) struct Writer {
    connection: Connection,
    lengths: Lengths,
    /// Keys of shared execution contexts by their stored body.
    contexts: HashMap<String, i64>,
    /// The last context found in `contexts`: most commits come with the same one, and comparing
    /// is cheaper than encoding.
    last_context: Option<(ExecutionContext, i64)>,
    staged: Staged,
    touched_logs: HashSet<ScopeId>,
    touched_streams: HashSet<(ScopeId, StreamId)>,
    /// Set when the group's transaction can no longer be committed.
    group_failure: Option<StoreError>,
    /// The group has one request, which runs without a savepoint of its own: when it is
    /// refused, the whole transaction is rolled back instead.
    alone: bool,
    /// The one request of a group `alone` was refused.
    refused_alone: bool,
    synchronous_full: bool,
    /// The frames in the WAL after the last commit, as SQLite's WAL hook reports them.
    wal_frames: Arc<AtomicI64>,
    /// When the writer may next try to finish a checkpoint.
    next_checkpoint: Instant,
    watchers: Arc<Watchers>,
    /// Counts the groups written, for the checkpointer to see when writes come and stop.
    commits: Arc<AtomicU64>,
    /// Dropped with the writer, which tells the checkpointer to stop.
    _checkpointer_stop: Sender<()>,
}

impl Writer {
    pub(crate) fn new(
        mut connection: Connection,
        lengths: Lengths,
        watchers: Arc<Watchers>,
        commits: Arc<AtomicU64>,
        checkpointer_stop: Sender<()>,
    ) -> StoreResult<Self> {
        let wal_frames = Arc::new(AtomicI64::new(0));
        let hook_frames = Arc::clone(&wal_frames);
        connection
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
                hook_frames.store(i64::from(frames), Ordering::Relaxed);
                Ok(())
            }))
            .map_err(sqlite_error)?;
        Ok(Self {
            connection,
            lengths,
            contexts: HashMap::new(),
            last_context: None,
            staged: Staged::default(),
            touched_logs: HashSet::new(),
            touched_streams: HashSet::new(),
            group_failure: None,
            alone: false,
            refused_alone: false,
            synchronous_full: true,
            wal_frames,
            next_checkpoint: Instant::now(),
            watchers,
            commits,
            _checkpointer_stop: checkpointer_stop,
        })
    }

    /// Writes groups of requests until every sender is gone and the queue is empty.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        while let Some(first) = next_request(&requests) {
            let mut group = Vec::with_capacity(64);
            group.push(first);
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.write_group(group);
            self.commits.fetch_add(1, Ordering::Relaxed);
            if self.wal_frames.load(Ordering::Relaxed) >= WAL_RESTART_FRAMES
                && Instant::now() >= self.next_checkpoint
            {
                self.finish_checkpoint();
            }
        }
        tracing::debug!("the event store writer stopped");
    }

    /// Checkpoints what the checkpointer thread has not yet copied (little, as it runs often),
    /// so that the next transaction restarts the WAL from its beginning.
    fn finish_checkpoint(&mut self) {
        let result = self
            .connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            });
        match result {
            Ok((busy, wal_frames, checkpointed_frames)) => {
                tracing::trace!(
                    busy,
                    wal_frames,
                    checkpointed_frames,
                    "the writer checkpointed"
                );
                if busy == 0 && wal_frames == checkpointed_frames {
                    self.wal_frames.store(0, Ordering::Relaxed);
                } else {
                    self.next_checkpoint = Instant::now() + CHECKPOINT_RETRY;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "the writer could not checkpoint");
                self.next_checkpoint = Instant::now() + CHECKPOINT_RETRY;
            }
        }
    }

    fn write_group(&mut self, group: Vec<Request>) {
        let full = group
            .iter()
            .any(|request| request.durability == Durability::Full);
        self.group_failure = self.begin(full).err();
        self.alone = group.len() == 1;
        self.refused_alone = false;
        let completions: Vec<Completion> = group
            .into_iter()
            .map(|request| (request.operation)(self))
            .collect();
        if std::mem::take(&mut self.refused_alone) && self.group_failure.is_none() {
            // The only request was refused: nothing of the transaction is kept, and its
            // completion carries the refusal.
            self.touched_logs.clear();
            self.touched_streams.clear();
            if let Err(error) = self.statement("ROLLBACK") {
                self.group_failure = Some(sqlite_error(error));
            } else {
                for completion in completions {
                    completion(None);
                }
                return;
            }
        }
        let outcome = match self.group_failure.take() {
            Some(failure) => Err(failure),
            None => self
                .connection
                .prepare_cached("COMMIT")
                .and_then(|mut statement| statement.execute([]))
                .map(|_| ())
                .map_err(sqlite_error),
        };
        match outcome {
            Ok(()) => {
                for scope in self.touched_logs.drain() {
                    if let Some(log) = self.lengths.logs.get(&scope) {
                        self.watchers.publish_log(scope, log.length);
                    }
                }
                for (scope, stream) in self.touched_streams.drain() {
                    if let Some(log) = self.lengths.streams.get(&(scope, stream)) {
                        self.watchers.publish_stream(scope, stream, log.length);
                    }
                }
                for completion in completions {
                    completion(None);
                }
            }
            Err(failure) => {
                tracing::error!(error = %failure, "an event store transaction failed");
                if !self.connection.is_autocommit() {
                    let _ = self.connection.execute_batch("ROLLBACK");
                }
                self.touched_logs.clear();
                self.touched_streams.clear();
                self.contexts.clear();
                self.last_context = None;
                match Lengths::load(&self.connection) {
                    Ok(lengths) => self.lengths = lengths,
                    Err(error) => {
                        tracing::error!(%error, "cannot reload the event store's lengths");
                    }
                }
                for completion in completions {
                    completion(Some(&failure));
                }
            }
        }
    }

    fn begin(&mut self, full: bool) -> StoreResult<()> {
        if full != self.synchronous_full {
            let level = if full { "FULL" } else { "NORMAL" };
            self.connection
                .execute_batch(&format!("PRAGMA synchronous = {level}"))
                .map_err(sqlite_error)?;
            self.synchronous_full = full;
        }
        self.connection
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut statement| statement.execute([]))
            .map(|_| ())
            .map_err(sqlite_error)
    }

    /// Runs one request inside its own savepoint of the group's transaction.
    fn run_request<T: Send + 'static>(
        &mut self,
        reply: Reply<T>,
        operation: impl FnOnce(&mut Self) -> StoreResult<T>,
    ) -> Completion {
        let result = match &self.group_failure {
            Some(failure) => Err(failure.clone()),
            None => self.run_in_savepoint(operation),
        };
        Box::new(move |failure| {
            let result = match failure {
                Some(failure) => Err(failure.clone()),
                None => result,
            };
            // The caller may have gone away; its write stands all the same.
            let _ = reply.send(result);
        })
    }

    fn run_in_savepoint<T>(
        &mut self,
        operation: impl FnOnce(&mut Self) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.staged = Staged::default();
        if self.alone {
            let result = operation(self);
            let staged = std::mem::take(&mut self.staged);
            match &result {
                Ok(_) => self.keep(staged),
                Err(_) => self.refused_alone = true,
            }
            return result;
        }
        if let Err(error) = self.statement("SAVEPOINT request") {
            let error = sqlite_error(error);
            self.group_failure = Some(error.clone());
            return Err(error);
        }
        let result = operation(self);
        let end = if result.is_ok() {
            self.statement("RELEASE request")
        } else {
            self.statement("ROLLBACK TO request")
                .and_then(|()| self.statement("RELEASE request"))
        };
        let staged = std::mem::take(&mut self.staged);
        if let Err(error) = end {
            let error = sqlite_error(error);
            self.group_failure = Some(error.clone());
            return Err(error);
        }
        if result.is_ok() {
            self.keep(staged);
        }
        result
    }

    /// Keeps what a request that succeeded changed in the writer's memory.
    fn keep(&mut self, staged: Staged) {
        self.lengths.logs.extend(staged.logs);
        self.lengths.streams.extend(staged.streams);
        if self.contexts.len() + staged.contexts.len() > MAX_CACHED_CONTEXTS {
            self.contexts.clear();
        }
        self.contexts.extend(staged.contexts);
    }

    /// Runs a statement without parameters, prepared once.
    fn statement(&self, sql: &str) -> rusqlite::Result<()> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(|_| ())
    }

    fn log(&self, scope: ScopeId) -> Option<Log> {
        self.staged
            .logs
            .get(&scope)
            .or_else(|| self.lengths.logs.get(&scope))
            .copied()
    }

    fn stream(&self, scope: ScopeId, stream: StreamId) -> Option<Log> {
        self.staged
            .streams
            .get(&(scope, stream))
            .or_else(|| self.lengths.streams.get(&(scope, stream)))
            .copied()
    }

    /// The log of a scope, made on its first event.
    fn log_or_create(&mut self, scope: ScopeId) -> StoreResult<Log> {
        if let Some(log) = self.log(scope) {
            return Ok(log);
        }
        self.connection
            .prepare_cached("INSERT INTO scopes (scope_id) VALUES (?1)")
            .and_then(|mut statement| statement.execute([guid(scope)]))
            .map_err(sqlite_error)?;
        let key = self.connection.last_insert_rowid();
        self.connection
            .execute_batch(&create_scoped_log(key))
            .map_err(sqlite_error)?;
        let log = Log { key, length: 0 };
        self.staged.logs.insert(scope, log);
        Ok(log)
    }

    fn context_key(&mut self, context: &ExecutionContext) -> StoreResult<i64> {
        if let Some((last, key)) = &self.last_context
            && same_shared_context(last, context)
        {
            return Ok(*key);
        }
        let body = shared_context_body(context)?;
        if let Some(key) = self.contexts.get(&body) {
            self.last_context = Some((context.clone(), *key));
            return Ok(*key);
        }
        if let Some((_, key)) = self
            .staged
            .contexts
            .iter()
            .find(|(staged, _)| *staged == body)
        {
            return Ok(*key);
        }
        let existing: Option<i64> = self
            .connection
            .prepare_cached("SELECT context_key FROM execution_contexts WHERE body = ?1")
            .and_then(|mut statement| statement.query_row([&body], |row| row.get(0)).optional())
            .map_err(sqlite_error)?;
        let key = match existing {
            Some(key) => key,
            None => {
                self.connection
                    .prepare_cached("INSERT INTO execution_contexts (body) VALUES (?1)")
                    .and_then(|mut statement| statement.execute([&body]))
                    .map_err(sqlite_error)?;
                self.connection.last_insert_rowid()
            }
        };
        self.staged.contexts.push((body, key));
        Ok(key)
    }

    /// Appends events to a scope's log, giving them the next sequence numbers. Each event
    /// comes with the surrogate key of its aggregate instance, when it has one.
    fn append_to_log(
        &mut self,
        scope: ScopeId,
        mut events: Vec<(CommittedEvent, Option<i64>)>,
    ) -> StoreResult<Vec<CommittedEvent>> {
        let log = self.log_or_create(scope)?;
        let mut context_keys = Vec::with_capacity(events.len());
        let mut previous: Option<(&ExecutionContext, i64)> = None;
        for (event, _) in &events {
            let context = &event.execution_context;
            let key = match previous {
                Some((previous, key)) if same_shared_context(previous, context) => key,
                _ => self.context_key(context)?,
            };
            previous = Some((context, key));
            context_keys.push(key);
        }
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "INSERT INTO {} (sequence_number, occurred, event_source, context_key, \
                 correlation, type_id, generation, public, content, aggregate_key, \
                 aggregate_root, aggregate_version, external_sequence_number, received, consent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                log_table(log.key)
            ))
            .map_err(sqlite_error)?;
        // A statement keeps its parameters between executions: of each row, only what differs
        // from the row before is bound again (most of a batch shares its context, correlation,
        // time and type, and binding text or a blob copies it).
        let first = log.length;
        for (index, (event, _)) in events.iter_mut().enumerate() {
            event.sequence_number = first + index as u64;
        }
        let mut previous: Option<LogRow<'_>> = None;
        for ((event, aggregate_key), context_key) in events.iter().zip(context_keys) {
            let row = LogRow::new(event, *aggregate_key, context_key)?;
            row.bind(&mut statement, previous.as_ref())
                .and_then(|()| statement.raw_execute())
                .map_err(sqlite_error)?;
            previous = Some(row);
        }
        let next = first + events.len() as u64;
        drop(statement);
        self.staged.logs.insert(
            scope,
            Log {
                key: log.key,
                length: next,
            },
        );
        self.touched_logs.insert(scope);
        Ok(events.into_iter().map(|(event, _)| event).collect())
    }

    pub(crate) fn commit(
        &mut self,
        events: Vec<UncommittedEvent>,
        context: &ExecutionContext,
    ) -> StoreResult<Vec<CommittedEvent>> {
        let occurred = Timestamp::now();
        let events = events
            .into_iter()
            .map(|event| {
                let committed = CommittedEvent {
                    sequence_number: 0,
                    occurred,
                    event_source: event.event_source,
                    execution_context: context.clone(),
                    event_type: event.event_type,
                    public: event.public,
                    content: event.content,
                    aggregate: None,
                    event_horizon: None,
                };
                (committed, None)
            })
            .collect();
        self.append_to_log(ScopeId::DEFAULT, events)
    }

    pub(crate) fn commit_aggregate(
        &mut self,
        events: UncommittedAggregateEvents,
        context: &ExecutionContext,
    ) -> StoreResult<CommittedAggregateEvents> {
        let root = guid(events.aggregate_root);
        let existing: Option<(i64, i64)> = self
            .connection
            .prepare_cached(
                "SELECT aggregate_key, version FROM aggregates \
                 WHERE aggregate_root = ?1 AND event_source = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![root, events.event_source.as_str()], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
            })
            .map_err(sqlite_error)?;
        let current = match existing {
            Some((_, version)) => to_u64(version, "aggregate version").map_err(sqlite_error)?,
            None => 0,
        };
        if current != events.expected_version {
            return Err(StoreError::AggregateConcurrencyConflict {
                aggregate_root: events.aggregate_root,
                event_source: events.event_source,
                expected: events.expected_version,
                current,
            });
        }
        let key = match existing {
            Some((key, _)) => key,
            None => {
                self.connection
                    .prepare_cached(
                        "INSERT INTO aggregates (aggregate_root, event_source, version) \
                         VALUES (?1, ?2, 0)",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![root, events.event_source.as_str()])
                    })
                    .map_err(sqlite_error)?;
                self.connection.last_insert_rowid()
            }
        };
        let occurred = Timestamp::now();
        let count = events.events.len() as u64;
        let rows = events
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let committed = CommittedEvent {
                    sequence_number: 0,
                    occurred,
                    event_source: events.event_source.clone(),
                    execution_context: context.clone(),
                    event_type: event.event_type,
                    public: event.public,
                    content: event.content,
                    aggregate: Some(AggregateMetadata {
                        aggregate_root: events.aggregate_root,
                        version: current + index as u64,
                    }),
                    event_horizon: None,
                };
                (committed, Some(key))
            })
            .collect();
        let committed = self.append_to_log(ScopeId::DEFAULT, rows)?;
        let version = current + count;
        self.connection
            .prepare_cached("UPDATE aggregates SET version = ?2 WHERE aggregate_key = ?1")
            .and_then(|mut statement| {
                statement.execute(params![
                    key,
                    to_i64(version, "aggregate version")
                        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))?
                ])
            })
            .map_err(sqlite_error)?;
        Ok(CommittedAggregateEvents {
            aggregate_root: events.aggregate_root,
            event_source: events.event_source,
            version,
            events: committed,
        })
    }

    pub(crate) fn commit_external(
        &mut self,
        subscription: &SubscriptionKey,
        events: Vec<ExternalEvent>,
        state: &SubscriptionState,
    ) -> StoreResult<Vec<CommittedEvent>> {
        let rows: Vec<_> = events
            .into_iter()
            .map(|external| {
                let committed = CommittedEvent {
                    event_horizon: Some(EventHorizonMetadata {
                        external_sequence_number: external.event.sequence_number,
                        received: external.received,
                        consent: external.consent,
                    }),
                    ..external.event
                };
                (committed, None)
            })
            .collect();
        let committed = if rows.is_empty() {
            Vec::new()
        } else {
            self.append_to_log(subscription.scope, rows)?
        };
        self.save_subscription_state(subscription, state)?;
        Ok(committed)
    }

    pub(crate) fn put_stream_definition(
        &mut self,
        scope: ScopeId,
        definition: &StreamDefinition,
    ) -> StoreResult<()> {
        let body = to_json(definition)?;
        self.execute(
            "INSERT OR REPLACE INTO stream_definitions (scope_id, stream_id, body) \
             VALUES (?1, ?2, ?3)",
            params![guid(scope), guid(definition.stream), body],
        )
    }

    pub(crate) fn append_to_stream(
        &mut self,
        scope: ScopeId,
        stream: StreamId,
        entries: Vec<StreamEntry>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<u64> {
        let log_length = self.log(scope).map_or(0, |log| log.length);
        for (index, entry) in entries.iter().enumerate() {
            if entry.sequence_number >= log_length {
                return Err(StoreError::InvalidArgument(format!(
                    "stream entry {index} references event {} of scope {scope}, whose log has \
                     {log_length} events",
                    entry.sequence_number
                )));
            }
        }
        let mut length = self.stream(scope, stream).map_or(0, |log| log.length);
        if !entries.is_empty() {
            let log = match self.stream(scope, stream) {
                Some(log) => log,
                None => {
                    self.execute(
                        "INSERT INTO streams (scope_id, stream_id) VALUES (?1, ?2)",
                        params![guid(scope), guid(stream)],
                    )?;
                    Log {
                        key: self.connection.last_insert_rowid(),
                        length: 0,
                    }
                }
            };
            let mut statement = self
                .connection
                .prepare_cached(
                    "INSERT INTO stream_entries (stream_key, position, partition, sequence_number) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sqlite_error)?;
            for entry in &entries {
                statement
                    .execute(params![
                        log.key,
                        to_i64(length, "stream position")?,
                        entry.partition.as_str(),
                        to_i64(entry.sequence_number, "sequence number")?,
                    ])
                    .map_err(sqlite_error)?;
                length += 1;
            }
            drop(statement);
            self.staged.streams.insert(
                (scope, stream),
                Log {
                    key: log.key,
                    length,
                },
            );
            self.touched_streams.insert((scope, stream));
        }
        self.save_processor_state(processor, state)?;
        Ok(length)
    }

    pub(crate) fn save_processor_state(
        &mut self,
        key: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let body = to_json(state)?;
        self.execute(
            "INSERT OR REPLACE INTO processor_states (kind, scope_id, processor_id, body) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.kind.as_str(),
                guid(key.scope),
                guid(key.processor),
                body
            ],
        )
    }

    pub(crate) fn put_projection_definition(
        &mut self,
        definition: &ProjectionDefinition,
    ) -> StoreResult<()> {
        let body = to_json(definition)?;
        self.execute(
            "INSERT OR REPLACE INTO projection_definitions (scope_id, projection_id, body) \
             VALUES (?1, ?2, ?3)",
            params![guid(definition.scope), guid(definition.projection), body],
        )
    }

    pub(crate) fn apply_read_model_changes(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
        changes: Vec<ReadModelChange>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        for change in &changes {
            match &change.state {
                Some(model) => self.execute(
                    "INSERT OR REPLACE INTO read_models (scope_id, projection_id, key, state) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![guid(scope), guid(projection), change.key, model],
                )?,
                None => self.execute(
                    "DELETE FROM read_models \
                     WHERE scope_id = ?1 AND projection_id = ?2 AND key = ?3",
                    params![guid(scope), guid(projection), change.key],
                )?,
            }
        }
        self.save_processor_state(processor, state)
    }

    pub(crate) fn promote_projection_rebuild(
        &mut self,
        rebuilt: EventProcessorId,
        definition: &ProjectionDefinition,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let live = definition.projection;
        if rebuilt == live {
            return Err(StoreError::InvalidArgument(format!(
                "projection {live} cannot be promoted in place of itself"
            )));
        }
        let scope = definition.scope;
        self.execute(
            "DELETE FROM read_models WHERE scope_id = ?1 AND projection_id = ?2",
            params![guid(scope), guid(live)],
        )?;
        self.execute(
            "UPDATE read_models SET projection_id = ?2 WHERE scope_id = ?1 AND projection_id = ?3",
            params![guid(scope), guid(live), guid(rebuilt)],
        )?;
        self.put_projection_definition(definition)?;
        self.forget_projection(scope, rebuilt)?;
        let key = ProcessorKey {
            kind: ProcessorKind::Projection,
            scope,
            processor: live,
        };
        self.save_processor_state(&key, state)
    }

    pub(crate) fn drop_projection(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<()> {
        self.execute(
            "DELETE FROM read_models WHERE scope_id = ?1 AND projection_id = ?2",
            params![guid(scope), guid(projection)],
        )?;
        self.forget_projection(scope, projection)
    }

    /// Deletes a projection's definition and processor state.
    fn forget_projection(
        &mut self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<()> {
        self.execute(
            "DELETE FROM projection_definitions WHERE scope_id = ?1 AND projection_id = ?2",
            params![guid(scope), guid(projection)],
        )?;
        self.execute(
            "DELETE FROM processor_states WHERE kind = ?1 AND scope_id = ?2 AND processor_id = ?3",
            params![
                ProcessorKind::Projection.as_str(),
                guid(scope),
                guid(projection)
            ],
        )
    }

    pub(crate) fn save_subscription_state(
        &mut self,
        subscription: &SubscriptionKey,
        state: &SubscriptionState,
    ) -> StoreResult<()> {
        let body = to_json(state)?;
        self.execute(
            "INSERT OR REPLACE INTO subscription_states (producer_microservice, producer_tenant, \
             stream_id, partition, scope_id, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                guid(subscription.producer_microservice),
                guid(subscription.producer_tenant),
                guid(subscription.stream),
                subscription.partition.as_str(),
                guid(subscription.scope),
                body
            ],
        )
    }

    fn execute(&self, sql: &str, parameters: impl rusqlite::Params) -> StoreResult<()> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(parameters))
            .map(|_| ())
            .map_err(sqlite_error)
    }
}

/// Whether two execution contexts differ at most in their correlation.
fn same_shared_context(first: &ExecutionContext, second: &ExecutionContext) -> bool {
    first.microservice == second.microservice
        && first.tenant == second.tenant
        && first.version == second.version
        && first.claims == second.claims
        && first.environment == second.environment
}
