//! The one writer of a store's event logs and streams.
//!
//! Sequence numbers must be gapless AND commit-ordered: a reader that has seen event N must
//! never later find a new event below N. A PostgreSQL sequence hands numbers out in start order,
//! not commit order, and a counter row updated by many connections serializes them one commit
//! at a time. So one task per store owns the log: it takes every commit request waiting in its
//! channel, numbers the events in memory, writes the whole group in ONE statement (one
//! `INSERT ... SELECT FROM unnest(...)` per table in data-modifying `WITH`s, so a group costs one
//! round trip, one implicit transaction and one WAL flush), sends ONE notification, and replies
//! to each request through its oneshot.
//!
//! Only one process may append to a log: the appender holds a session-level advisory lock on
//! its own connection and refuses to write ([`StoreError::ConcurrentWriter`]) when another
//! session holds it. The primary key on (scope, sequence_number) is the last line of defence.
//! The in-memory lengths are re-read from the database every time the appender (re)connects,
//! so a commit whose outcome was lost with the connection is counted exactly as the database
//! has it: a group is one transaction, wholly in or wholly out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dolittle_store::{
    ExternalEvent, ProcessorKey, StoreError, StoreResult, StreamEntry, SubscriptionKey,
};
use dolittle_types::{
    AggregateMetadata, AggregateRootId, AggregateRootVersion, CommittedAggregateEvents,
    CommittedEvent, EventHorizonMetadata, EventSourceId, ExecutionContext, ScopeId, StreamId,
    StreamPosition, Timestamp, UncommittedAggregateEvents, UncommittedEvent, Uuid,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::error::{from_bigint, is_unavailable, is_unique_violation, store_error, to_bigint};
use crate::pool::open_client;
use crate::schema::{WRITER_LOCK_CLASS, schema_lock_key};
use crate::watches::{NOTIFY_CHANNEL, Watches, notification_payload};

/// How long the appender waits for the writer lock before it reports a second writer.
const WRITER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The size of one throw-away value the appender's server session allocates and frees when it
/// connects. Executing a group statement takes a little over 128 KiB of server memory, which is
/// glibc malloc's default trim threshold: without this, the backend grows its heap with `brk`
/// and hands it back to the kernel on every single commit (two system calls and a dozen page
/// faults, measured at about 100 µs of server CPU per 1-event commit). Freeing one block larger
/// than the mmap threshold makes glibc raise its mmap and trim thresholds for the rest of the
/// session (to this size and twice it), so the session keeps its heap.
const ALLOCATOR_WARM_UP_BYTES: usize = 1 << 20;

/// At most this many events are written in one group transaction.
const MAX_GROUP_EVENTS: usize = 20_000;

/// What a caller asks the appender to write.
pub(crate) enum Work {
    Commit {
        events: Vec<UncommittedEvent>,
        context: ExecutionContext,
    },
    CommitAggregate {
        events: UncommittedAggregateEvents,
        context: ExecutionContext,
    },
    CommitExternal {
        subscription: SubscriptionKey,
        events: Vec<ExternalEvent>,
        state: String,
    },
    AppendToStream {
        scope: ScopeId,
        stream: StreamId,
        entries: Vec<StreamEntry>,
        processor: ProcessorKey,
        state: String,
    },
}

impl Work {
    fn size(&self) -> usize {
        match self {
            Self::Commit { events, .. } => events.len(),
            Self::CommitAggregate { events, .. } => events.events.len(),
            Self::CommitExternal { events, .. } => events.len(),
            Self::AppendToStream { entries, .. } => entries.len(),
        }
    }
}

/// Where the answer goes.
pub(crate) enum Reply {
    Events(oneshot::Sender<StoreResult<Vec<CommittedEvent>>>),
    Aggregate(oneshot::Sender<StoreResult<CommittedAggregateEvents>>),
    Position(oneshot::Sender<StoreResult<StreamPosition>>),
}

pub(crate) struct Request {
    pub(crate) work: Work,
    pub(crate) reply: Reply,
}

/// What the appender's channel carries.
pub(crate) enum Message {
    Request(Box<Request>),
    /// Finish what came before, release the writer lock, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// The answer to a request, before it is sent.
enum Outcome {
    Events(Vec<CommittedEvent>),
    Aggregate(CommittedAggregateEvents),
    Position(StreamPosition),
}

impl Reply {
    fn send(self, result: StoreResult<Outcome>) {
        let mismatch = || StoreError::Internal("the appender answered the wrong kind".to_owned());
        // A caller that stopped waiting has nobody to tell; its work is done either way.
        match self {
            Self::Events(sender) => {
                let _ = sender.send(result.and_then(|outcome| match outcome {
                    Outcome::Events(events) => Ok(events),
                    _ => Err(mismatch()),
                }));
            }
            Self::Aggregate(sender) => {
                let _ = sender.send(result.and_then(|outcome| match outcome {
                    Outcome::Aggregate(events) => Ok(events),
                    _ => Err(mismatch()),
                }));
            }
            Self::Position(sender) => {
                let _ = sender.send(result.and_then(|outcome| match outcome {
                    Outcome::Position(position) => Ok(position),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

/// Writes a whole group in ONE statement, so in one implicit transaction and one round trip:
/// every data-modifying `WITH` runs exactly once, whether or not anything reads its output, and
/// an empty array writes nothing. The group's one notification is sent when it commits.
const WRITE_GROUP: &str = "WITH new_events AS ( \
       INSERT INTO events (scope, sequence_number, occurred, event_source, event_type, \
       event_type_generation, public, content, execution_context, aggregate_root, \
       aggregate_version, external_sequence_number, received, consent) \
       SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::uuid[], \
       $6::bigint[], $7::boolean[], $8::text[], $9::bigint[], $10::uuid[], $11::bigint[], \
       $12::bigint[], $13::bigint[], $14::uuid[]) \
     ), new_log_lengths AS ( \
       INSERT INTO log_lengths (scope, length) SELECT * FROM unnest($15::uuid[], $16::bigint[]) \
       ON CONFLICT (scope) DO UPDATE SET length = excluded.length \
     ), new_aggregate_versions AS ( \
       INSERT INTO aggregates (aggregate_root, event_source, version) \
       SELECT * FROM unnest($17::uuid[], $18::text[], $19::bigint[]) \
       ON CONFLICT (aggregate_root, event_source) DO UPDATE SET version = excluded.version \
     ), new_stream_entries AS ( \
       INSERT INTO stream_entries (scope, stream, position, partition, sequence_number) \
       SELECT * FROM unnest($20::uuid[], $21::uuid[], $22::bigint[], $23::text[], \
       $24::bigint[]) \
     ), new_stream_lengths AS ( \
       INSERT INTO stream_lengths (scope, stream, length) \
       SELECT * FROM unnest($25::uuid[], $26::uuid[], $27::bigint[]) \
       ON CONFLICT (scope, stream) DO UPDATE SET length = excluded.length \
     ), new_processor_states AS ( \
       INSERT INTO processor_states (kind, scope, processor, state) \
       SELECT * FROM unnest($28::text[], $29::uuid[], $30::uuid[], $31::text[]) \
       ON CONFLICT (kind, scope, processor) DO UPDATE SET state = excluded.state \
     ), new_subscription_states AS ( \
       INSERT INTO subscription_states \
       (producer_microservice, producer_tenant, stream, partition, scope, state) \
       SELECT * FROM unnest($32::uuid[], $33::uuid[], $34::uuid[], $35::text[], $36::uuid[], \
       $37::text[]) \
       ON CONFLICT (producer_microservice, producer_tenant, stream, partition, scope) \
       DO UPDATE SET state = excluded.state \
     ), new_execution_contexts AS ( \
       INSERT INTO execution_contexts (id, context) \
       SELECT * FROM unnest($40::bigint[], $41::text[]) \
     ) \
     SELECT pg_notify($38, $39)";
const SELECT_AGGREGATES: &str = "SELECT a.aggregate_root, a.event_source, a.version \
     FROM aggregates a JOIN unnest($1::uuid[], $2::text[]) AS wanted (aggregate_root, event_source) \
     ON a.aggregate_root = wanted.aggregate_root AND a.event_source = wanted.event_source";

/// The appender's connection, holding the writer lock, and what it knows of the database.
struct Writer {
    client: Client,
    write_group: Statement,
    select_aggregates: Statement,
    log_lengths: HashMap<ScopeId, u64>,
    stream_lengths: HashMap<(ScopeId, StreamId), u64>,
    /// The id the next new execution context gets.
    next_context_id: i64,
    /// Ids of execution contexts already stored, by their JSON text (a cache, bounded).
    context_ids: HashMap<String, i64>,
    /// Versions of aggregate root instances read or written since connecting (a cache,
    /// bounded; right because nobody else writes while the writer lock is held).
    aggregate_versions: HashMap<(AggregateRootId, EventSourceId), AggregateRootVersion>,
}

/// How many aggregate versions the appender remembers before it starts over.
const REMEMBERED_AGGREGATES: usize = 100_000;

/// How many execution contexts the appender remembers; past this it starts over (a context
/// it forgot is stored again under a new id, which costs a row, nothing else).
const REMEMBERED_CONTEXTS: usize = 10_000;

pub(crate) struct Appender {
    config: tokio_postgres::Config,
    schema: String,
    watches: Arc<Watches>,
    writer: Option<Writer>,
}

impl Appender {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        schema: String,
        watches: Arc<Watches>,
    ) -> Self {
        Self {
            config,
            schema,
            watches,
            writer: None,
        }
    }

    /// Takes the writer lock now, so that a second writer is found at startup.
    pub(crate) async fn start(&mut self) -> StoreResult<()> {
        self.writer = Some(self.connect().await?);
        Ok(())
    }

    /// Serves requests until every sender is dropped or the store is closed.
    pub(crate) async fn run(mut self, mut messages: mpsc::Receiver<Message>) {
        let mut closing = None;
        while let Some(first) = messages.recv().await {
            let mut group = Vec::new();
            let mut size = 0;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Request(request) => {
                        size += request.work.size();
                        group.push(*request);
                    }
                    Message::Close(closed) => {
                        closing = Some(closed);
                        break;
                    }
                }
                if size < MAX_GROUP_EVENTS {
                    next = messages.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.serve(group).await;
            }
            if closing.is_some() {
                break;
            }
        }
        // Release the writer lock before answering, so that whoever waits for the close can
        // open the store again at once.
        if let Some(writer) = self.writer.take() {
            let _ = writer
                .client
                .batch_execute("SELECT pg_advisory_unlock_all()")
                .await;
        }
        if let Some(closed) = closing {
            let _ = closed.send(());
        }
    }

    async fn connect(&self) -> StoreResult<Writer> {
        let client = open_client(&self.config, &self.schema).await?;
        // Waits a little for the lock: a session of ours that the server has not finished
        // ending (after a network failure or a restart of this process) may still hold it.
        client
            .batch_execute(&format!(
                "SET lock_timeout = {}",
                WRITER_LOCK_WAIT.as_millis()
            ))
            .await
            .map_err(store_error)?;
        let locking = client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&WRITER_LOCK_CLASS, &schema_lock_key(&self.schema)],
            )
            .await;
        match locking {
            Ok(_) => {}
            Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(StoreError::ConcurrentWriter(format!(
                    "another session holds the writer lock of schema {:?}; is another Runtime \
                     using the same database and schema?",
                    self.schema
                )));
            }
            Err(error) => return Err(store_error(error)),
        }
        client
            .batch_execute(&format!(
                "SET lock_timeout = 0; SELECT length(repeat('x', {ALLOCATOR_WARM_UP_BYTES}))"
            ))
            .await
            .map_err(store_error)?;
        let (write_group, select_aggregates) = futures::try_join!(
            client.prepare(WRITE_GROUP),
            client.prepare(SELECT_AGGREGATES)
        )
        .map_err(store_error)?;
        let (logs, streams, contexts) = futures::try_join!(
            client.query("SELECT scope, length FROM log_lengths", &[]),
            client.query("SELECT scope, stream, length FROM stream_lengths", &[]),
            client.query_one(
                "SELECT coalesce(max(id), 0) + 1 FROM execution_contexts",
                &[]
            ),
        )
        .map_err(store_error)?;
        let next_context_id: i64 = contexts.try_get(0).map_err(store_error)?;
        let mut log_lengths = HashMap::new();
        for row in logs {
            let scope: Uuid = row.try_get(0).map_err(store_error)?;
            let length: i64 = row.try_get(1).map_err(store_error)?;
            log_lengths.insert(scope.into(), from_bigint(length, "log length")?);
        }
        let mut stream_lengths = HashMap::new();
        for row in streams {
            let scope: Uuid = row.try_get(0).map_err(store_error)?;
            let stream: Uuid = row.try_get(1).map_err(store_error)?;
            let length: i64 = row.try_get(2).map_err(store_error)?;
            stream_lengths.insert(
                (scope.into(), stream.into()),
                from_bigint(length, "stream length")?,
            );
        }
        for (scope, length) in &log_lengths {
            self.watches.advance_log(*scope, *length);
        }
        for ((scope, stream), length) in &stream_lengths {
            self.watches.advance_stream(*scope, *stream, *length);
        }
        Ok(Writer {
            client,
            write_group,
            select_aggregates,
            log_lengths,
            stream_lengths,
            next_context_id,
            context_ids: HashMap::new(),
            aggregate_versions: HashMap::new(),
        })
    }

    /// Writes a group and answers every request in it.
    async fn serve(&mut self, group: Vec<Request>) {
        match self.write(&group).await {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    request.reply.send(outcome);
                }
            }
            Err(failure) if group.len() > 1 && failure.may_be_one_request => {
                // One request may hold something the database refuses; write each alone so
                // that it fails alone.
                for request in group {
                    let outcome = match self.write(std::slice::from_ref(&request)).await {
                        Ok(mut outcomes) => outcomes
                            .pop()
                            .unwrap_or_else(|| Err(StoreError::Internal("no outcome".to_owned()))),
                        Err(failure) => Err(failure.error),
                    };
                    request.reply.send(outcome);
                }
            }
            Err(failure) => {
                for request in group {
                    request.reply.send(Err(failure.error.clone()));
                }
            }
        }
    }

    /// Writes the requests that can be written in one transaction; the outcome of each request
    /// (its result, or why it alone was refused) comes back in order.
    async fn write(&mut self, group: &[Request]) -> Result<Vec<StoreResult<Outcome>>, Failure> {
        if self.writer.is_none() {
            self.writer = Some(self.connect().await.map_err(Failure::whole)?);
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err(Failure::whole(StoreError::Internal("no writer".to_owned())));
        };
        let result = write_group(writer, &self.schema, group).await;
        match result {
            Ok(GroupWritten {
                outcomes,
                aggregates,
                logs,
                streams,
                contexts,
                next_context_id,
            }) => {
                writer.next_context_id = next_context_id;
                if writer.context_ids.len() + contexts.len() > REMEMBERED_CONTEXTS {
                    writer.context_ids.clear();
                }
                writer.context_ids.extend(contexts);
                if writer.aggregate_versions.len() + aggregates.len() > REMEMBERED_AGGREGATES {
                    writer.aggregate_versions.clear();
                }
                writer.aggregate_versions.extend(aggregates);
                for (scope, length) in logs {
                    writer.log_lengths.insert(scope, length);
                    self.watches.advance_log(scope, length);
                }
                for ((scope, stream), length) in streams {
                    writer.stream_lengths.insert((scope, stream), length);
                    self.watches.advance_stream(scope, stream, length);
                }
                Ok(outcomes)
            }
            Err(GroupError::Store(error)) => Err(Failure::whole(error)),
            Err(GroupError::Postgres(error)) => {
                if is_unavailable(&error) {
                    // The outcome of the transaction is unknown: forget what we knew and
                    // re-read it from the database on reconnecting.
                    self.writer = None;
                    return Err(Failure::whole(store_error(error)));
                }
                // The group was one statement, so its implicit transaction is over.
                if is_unique_violation(&error) {
                    self.writer = None;
                    return Err(Failure::whole(StoreError::ConcurrentWriter(format!(
                        "a sequence number or stream position was already taken: {}",
                        crate::error::describe(&error)
                    ))));
                }
                Err(Failure {
                    error: store_error(error),
                    may_be_one_request: true,
                })
            }
        }
    }
}

/// Why a whole group failed.
struct Failure {
    error: StoreError,
    /// Whether the failure may come from one request's content.
    may_be_one_request: bool,
}

impl Failure {
    fn whole(error: StoreError) -> Self {
        Self {
            error,
            may_be_one_request: false,
        }
    }
}

enum GroupError {
    Store(StoreError),
    Postgres(tokio_postgres::Error),
}

/// What a written group changed, to be remembered once it is committed.
struct GroupWritten {
    outcomes: Vec<StoreResult<Outcome>>,
    aggregates: HashMap<(AggregateRootId, EventSourceId), AggregateRootVersion>,
    logs: HashMap<ScopeId, u64>,
    streams: HashMap<(ScopeId, StreamId), u64>,
    contexts: HashMap<String, i64>,
    next_context_id: i64,
}

/// The rows one group writes, column by column.
#[derive(Default)]
struct EventColumns {
    scope: Vec<Uuid>,
    sequence_number: Vec<i64>,
    occurred: Vec<i64>,
    event_source: Vec<String>,
    event_type: Vec<Uuid>,
    generation: Vec<i64>,
    public: Vec<bool>,
    content: Vec<String>,
    context: Vec<i64>,
    aggregate_root: Vec<Option<Uuid>>,
    aggregate_version: Vec<Option<i64>>,
    external_sequence_number: Vec<Option<i64>>,
    received: Vec<Option<i64>>,
    consent: Vec<Option<Uuid>>,
}

impl EventColumns {
    fn push(&mut self, scope: ScopeId, event: &CommittedEvent, context: i64) -> StoreResult<()> {
        self.scope.push(scope.0);
        self.sequence_number
            .push(to_bigint(event.sequence_number, "sequence number")?);
        self.occurred.push(event.occurred.0);
        self.event_source.push(event.event_source.0.clone());
        self.event_type.push(event.event_type.id.0);
        self.generation.push(i64::from(event.event_type.generation));
        self.public.push(event.public);
        self.content.push(event.content.clone());
        self.context.push(context);
        self.aggregate_root
            .push(event.aggregate.map(|aggregate| aggregate.aggregate_root.0));
        self.aggregate_version.push(match event.aggregate {
            Some(aggregate) => Some(to_bigint(aggregate.version, "aggregate version")?),
            None => None,
        });
        match event.event_horizon {
            Some(horizon) => {
                self.external_sequence_number.push(Some(to_bigint(
                    horizon.external_sequence_number,
                    "external sequence number",
                )?));
                self.received.push(Some(horizon.received.0));
                self.consent.push(Some(horizon.consent.0));
            }
            None => {
                self.external_sequence_number.push(None);
                self.received.push(None);
                self.consent.push(None);
            }
        }
        Ok(())
    }
}

/// Numbers the group's events, checks aggregate versions, and writes everything in one
/// transaction. Returns each request's outcome and the new lengths of what grew.
async fn write_group(
    writer: &mut Writer,
    schema: &str,
    group: &[Request],
) -> Result<GroupWritten, GroupError> {
    let aggregate_versions = read_aggregate_versions(writer, group).await?;
    let mut planner = Planner {
        writer,
        aggregate_versions,
        logs: HashMap::new(),
        streams: HashMap::new(),
        events: EventColumns::default(),
        aggregates: HashMap::new(),
        entries: EntryColumns::default(),
        processor_states: HashMap::new(),
        subscription_states: HashMap::new(),
        new_contexts: HashMap::new(),
        next_context_id: 0,
    };
    planner.next_context_id = planner.writer.next_context_id;
    let now = Timestamp::now();
    let outcomes: Vec<StoreResult<Outcome>> = group
        .iter()
        .map(|request| planner.plan(&request.work, now))
        .collect();
    let Planner {
        writer,
        logs,
        streams,
        events,
        aggregates,
        entries,
        processor_states,
        subscription_states,
        new_contexts,
        next_context_id,
        ..
    } = planner;
    if logs.is_empty() && streams.is_empty() {
        return Ok(GroupWritten {
            outcomes,
            aggregates,
            logs,
            streams,
            contexts: new_contexts,
            next_context_id,
        });
    }
    let (context_ids, context_texts): (Vec<i64>, Vec<&str>) = new_contexts
        .iter()
        .map(|(text, id)| (*id, text.as_str()))
        .unzip();

    let log_scopes: Vec<Uuid> = logs.keys().map(|scope| scope.0).collect();
    let log_lengths = logs
        .values()
        .map(|length| to_bigint(*length, "log length"))
        .collect::<StoreResult<Vec<i64>>>()
        .map_err(GroupError::Store)?;
    let (aggregate_roots, aggregate_sources, aggregate_versions) = {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for ((root, source), version) in &aggregates {
            columns.0.push(root.0);
            columns.1.push(source.0.as_str());
            columns
                .2
                .push(to_bigint(*version, "aggregate version").map_err(GroupError::Store)?);
        }
        columns
    };
    let (stream_scopes, stream_ids, stream_lengths) = {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for ((scope, stream), length) in &streams {
            columns.0.push(scope.0);
            columns.1.push(stream.0);
            columns
                .2
                .push(to_bigint(*length, "stream length").map_err(GroupError::Store)?);
        }
        columns
    };
    let (processor_kinds, processor_scopes, processor_ids, processor_states) = {
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, state) in &processor_states {
            columns.0.push(key.kind.as_str());
            columns.1.push(key.scope.0);
            columns.2.push(key.processor.0);
            columns.3.push(state.as_str());
        }
        columns
    };
    let subscription_columns = {
        let mut columns = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (key, state) in &subscription_states {
            columns.0.push(key.producer_microservice.0);
            columns.1.push(key.producer_tenant.0);
            columns.2.push(key.stream.0);
            columns.3.push(key.partition.as_str());
            columns.4.push(key.scope.0);
            columns.5.push(state.as_str());
        }
        columns
    };
    let payload = notification_payload(schema, &logs, &streams);

    let params: [&(dyn ToSql + Sync); 41] = [
        &events.scope,
        &events.sequence_number,
        &events.occurred,
        &events.event_source,
        &events.event_type,
        &events.generation,
        &events.public,
        &events.content,
        &events.context,
        &events.aggregate_root,
        &events.aggregate_version,
        &events.external_sequence_number,
        &events.received,
        &events.consent,
        &log_scopes,
        &log_lengths,
        &aggregate_roots,
        &aggregate_sources,
        &aggregate_versions,
        &entries.scope,
        &entries.stream,
        &entries.position,
        &entries.partition,
        &entries.sequence_number,
        &stream_scopes,
        &stream_ids,
        &stream_lengths,
        &processor_kinds,
        &processor_scopes,
        &processor_ids,
        &processor_states,
        &subscription_columns.0,
        &subscription_columns.1,
        &subscription_columns.2,
        &subscription_columns.3,
        &subscription_columns.4,
        &subscription_columns.5,
        &NOTIFY_CHANNEL,
        &payload,
        &context_ids,
        &context_texts,
    ];
    writer
        .client
        .execute(&writer.write_group, &params)
        .await
        .map_err(GroupError::Postgres)?;
    Ok(GroupWritten {
        outcomes,
        aggregates,
        logs,
        streams,
        contexts: new_contexts,
        next_context_id,
    })
}

/// The current versions of the aggregate root instances the group commits to.
async fn read_aggregate_versions(
    writer: &mut Writer,
    group: &[Request],
) -> Result<HashMap<(AggregateRootId, EventSourceId), AggregateRootVersion>, GroupError> {
    let mut wanted = HashSet::new();
    let mut versions = HashMap::new();
    for request in group {
        if let Work::CommitAggregate { events, .. } = &request.work {
            let key = (events.aggregate_root, events.event_source.clone());
            match writer.aggregate_versions.get(&key) {
                Some(version) => {
                    versions.insert(key, *version);
                }
                None => {
                    wanted.insert(key);
                }
            }
        }
    }
    if wanted.is_empty() {
        return Ok(versions);
    }
    let roots: Vec<Uuid> = wanted.iter().map(|(root, _)| root.0).collect();
    let sources: Vec<&str> = wanted.iter().map(|(_, source)| source.as_str()).collect();
    let rows = writer
        .client
        .query(&writer.select_aggregates, &[&roots, &sources])
        .await
        .map_err(GroupError::Postgres)?;
    for row in rows {
        let root: Uuid = row.try_get(0).map_err(GroupError::Postgres)?;
        let source: String = row.try_get(1).map_err(GroupError::Postgres)?;
        let version: i64 = row.try_get(2).map_err(GroupError::Postgres)?;
        versions.insert(
            (root.into(), EventSourceId(source)),
            from_bigint(version, "aggregate version").map_err(GroupError::Store)?,
        );
    }
    // What the database does not have is at version 0.
    for key in wanted {
        versions.entry(key).or_insert(0);
    }
    if writer.aggregate_versions.len() + versions.len() > REMEMBERED_AGGREGATES {
        writer.aggregate_versions.clear();
    }
    writer.aggregate_versions.extend(
        versions
            .iter()
            .map(|(key, version)| (key.clone(), *version)),
    );
    Ok(versions)
}

/// The stream entries one group writes, column by column.
#[derive(Default)]
struct EntryColumns {
    scope: Vec<Uuid>,
    stream: Vec<Uuid>,
    position: Vec<i64>,
    partition: Vec<String>,
    sequence_number: Vec<i64>,
}

/// Numbers the requests of one group in order, against what the group wrote before them.
struct Planner<'writer> {
    writer: &'writer mut Writer,
    aggregate_versions: HashMap<(AggregateRootId, EventSourceId), AggregateRootVersion>,
    /// The new lengths of the logs the group writes to.
    logs: HashMap<ScopeId, u64>,
    /// The new lengths of the streams the group appends to.
    streams: HashMap<(ScopeId, StreamId), u64>,
    events: EventColumns,
    /// The new versions of the aggregate root instances the group commits to.
    aggregates: HashMap<(AggregateRootId, EventSourceId), AggregateRootVersion>,
    entries: EntryColumns,
    processor_states: HashMap<ProcessorKey, String>,
    subscription_states: HashMap<SubscriptionKey, String>,
    /// The execution contexts the group stores, by their JSON text.
    new_contexts: HashMap<String, i64>,
    next_context_id: i64,
}

impl Planner<'_> {
    /// The id of an execution context: the one it was stored under, or a new one.
    fn context_id(&mut self, context: &ExecutionContext) -> StoreResult<i64> {
        let text = crate::rows::to_json(context)?;
        if let Some(id) = self
            .writer
            .context_ids
            .get(&text)
            .or_else(|| self.new_contexts.get(&text))
        {
            return Ok(*id);
        }
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.new_contexts.insert(text, id);
        Ok(id)
    }

    fn log_length(&self, scope: ScopeId) -> u64 {
        self.logs
            .get(&scope)
            .or_else(|| self.writer.log_lengths.get(&scope))
            .copied()
            .unwrap_or(0)
    }

    fn plan(&mut self, work: &Work, now: Timestamp) -> StoreResult<Outcome> {
        match work {
            Work::Commit { events, context } => {
                let context_id = self.context_id(context)?;
                let scope = ScopeId::DEFAULT;
                let first = self.log_length(scope);
                let committed: Vec<CommittedEvent> = events
                    .iter()
                    .zip(first..)
                    .map(|(event, sequence_number)| CommittedEvent {
                        sequence_number,
                        occurred: now,
                        event_source: event.event_source.clone(),
                        execution_context: context.clone(),
                        event_type: event.event_type,
                        public: event.public,
                        content: event.content.clone(),
                        aggregate: None,
                        event_horizon: None,
                    })
                    .collect();
                self.add_events(scope, &committed, |_| context_id)?;
                Ok(Outcome::Events(committed))
            }
            Work::CommitAggregate { events, context } => {
                let key = (events.aggregate_root, events.event_source.clone());
                let current = self
                    .aggregates
                    .get(&key)
                    .or_else(|| self.aggregate_versions.get(&key))
                    .copied()
                    .unwrap_or(0);
                if current != events.expected_version {
                    return Err(StoreError::AggregateConcurrencyConflict {
                        aggregate_root: events.aggregate_root,
                        event_source: events.event_source.clone(),
                        expected: events.expected_version,
                        current,
                    });
                }
                let context_id = self.context_id(context)?;
                let scope = ScopeId::DEFAULT;
                let first = self.log_length(scope);
                let committed: Vec<CommittedEvent> = events
                    .events
                    .iter()
                    .zip(first..)
                    .zip(current..)
                    .map(|((event, sequence_number), version)| CommittedEvent {
                        sequence_number,
                        occurred: now,
                        event_source: events.event_source.clone(),
                        execution_context: context.clone(),
                        event_type: event.event_type,
                        public: event.public,
                        content: event.content.clone(),
                        aggregate: Some(AggregateMetadata {
                            aggregate_root: events.aggregate_root,
                            version,
                        }),
                        event_horizon: None,
                    })
                    .collect();
                self.add_events(scope, &committed, |_| context_id)?;
                let version = current + committed.len() as u64;
                self.aggregates.insert(key, version);
                Ok(Outcome::Aggregate(CommittedAggregateEvents {
                    aggregate_root: events.aggregate_root,
                    event_source: events.event_source.clone(),
                    version,
                    events: committed,
                }))
            }
            Work::CommitExternal {
                subscription,
                events,
                state,
            } => {
                let scope = subscription.scope;
                let contexts = events
                    .iter()
                    .map(|external| self.context_id(&external.event.execution_context))
                    .collect::<StoreResult<Vec<i64>>>()?;
                let first = self.log_length(scope);
                let committed: Vec<CommittedEvent> = events
                    .iter()
                    .zip(first..)
                    .map(|(external, sequence_number)| CommittedEvent {
                        sequence_number,
                        event_horizon: Some(EventHorizonMetadata {
                            external_sequence_number: external.event.sequence_number,
                            received: external.received,
                            consent: external.consent,
                        }),
                        ..external.event.clone()
                    })
                    .collect();
                self.add_events(scope, &committed, |index| contexts[index])?;
                self.subscription_states
                    .insert(subscription.clone(), state.clone());
                Ok(Outcome::Events(committed))
            }
            Work::AppendToStream {
                scope,
                stream,
                entries,
                processor,
                state,
            } => {
                let key = (*scope, *stream);
                let first = self
                    .streams
                    .get(&key)
                    .or_else(|| self.writer.stream_lengths.get(&key))
                    .copied()
                    .unwrap_or(0);
                let log_length = self.log_length(*scope);
                if let Some(missing) = entries
                    .iter()
                    .find(|entry| entry.sequence_number >= log_length)
                {
                    return Err(StoreError::InvalidArgument(format!(
                        "a stream entry references event {} of scope {scope}, whose log has {} \
                         events",
                        missing.sequence_number, log_length
                    )));
                }
                let mut columns = EntryColumns::default();
                for (entry, position) in entries.iter().zip(first..) {
                    columns.scope.push(scope.0);
                    columns.stream.push(stream.0);
                    columns
                        .position
                        .push(to_bigint(position, "stream position")?);
                    columns.partition.push(entry.partition.0.clone());
                    columns
                        .sequence_number
                        .push(to_bigint(entry.sequence_number, "sequence number")?);
                }
                let all = &mut self.entries;
                all.scope.append(&mut columns.scope);
                all.stream.append(&mut columns.stream);
                all.position.append(&mut columns.position);
                all.partition.append(&mut columns.partition);
                all.sequence_number.append(&mut columns.sequence_number);
                let length = first + entries.len() as u64;
                self.streams.insert(key, length);
                self.processor_states.insert(*processor, state.clone());
                Ok(Outcome::Position(length))
            }
        }
    }

    /// Adds a request's events to the group; nothing is added when one of them cannot be.
    fn add_events(
        &mut self,
        scope: ScopeId,
        committed: &[CommittedEvent],
        context: impl Fn(usize) -> i64,
    ) -> StoreResult<()> {
        let mut columns = EventColumns::default();
        for (index, event) in committed.iter().enumerate() {
            columns.push(scope, event, context(index))?;
        }
        let events = &mut self.events;
        events.scope.append(&mut columns.scope);
        events.sequence_number.append(&mut columns.sequence_number);
        events.occurred.append(&mut columns.occurred);
        events.event_source.append(&mut columns.event_source);
        events.event_type.append(&mut columns.event_type);
        events.generation.append(&mut columns.generation);
        events.public.append(&mut columns.public);
        events.content.append(&mut columns.content);
        events.context.append(&mut columns.context);
        events.aggregate_root.append(&mut columns.aggregate_root);
        events
            .aggregate_version
            .append(&mut columns.aggregate_version);
        events
            .external_sequence_number
            .append(&mut columns.external_sequence_number);
        events.received.append(&mut columns.received);
        events.consent.append(&mut columns.consent);
        let length = self.log_length(scope) + committed.len() as u64;
        self.logs.insert(scope, length);
        Ok(())
    }
}
