//! The embedded SQLite backend of the event store: one database file per tenant.
//!
//! [`SqliteEventStore::open`] opens (or creates) a tenant's file and starts two threads: the
//! writer, which owns the only writing connection and commits concurrent requests in groups (one
//! transaction and one sync per group, see the `writer` module), and the checkpointer, which
//! keeps WAL checkpoints off the commit path (see the `checkpoint` module). Reads run on their
//! own connections on tokio's blocking threads, so they never wait for the writer and async code
//! never waits for the disk. A lock file beside the database (`<file>.lock`) keeps a second
//! store, in this process or another, from writing to the same file.
//!
//! Durability: an acknowledged commit of events (and of definitions and stream appends) has been
//! synced to disk (`synchronous=FULL` in WAL mode) and survives power loss. Processor states,
//! subscription states and read-model changes are written with weaker durability: a crash may
//! lose the last of them, so an event may be processed again, but never skipped.
//!
//! Dropping the store stops the writer after it has written every queued request; the drop
//! waits for that (and for a last checkpoint), so it may block for some milliseconds.

mod checkpoint;
mod codec;
mod reader;
mod schema;
mod watchers;
mod writer;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dolittle_store::{
    EventStore, ExternalEvent, LogFilter, LogPage, ProcessorKey, ProjectionDefinition,
    ReadModelChange, StoreDescription, StoreError, StoreResult, StreamDefinition, StreamEntry,
    StreamEvent, StreamProcessorState, SubscriptionKey, SubscriptionState,
    validate_aggregate_batch, validate_batch,
};
use dolittle_types::{
    AggregateRootId, AggregateRootInstance, CommittedAggregateEvents, CommittedEvent,
    EventLogSequenceNumber, EventProcessorId, EventSourceId, ExecutionContext, PartitionId,
    ScopeId, StreamId, StreamPosition, UncommittedAggregateEvents, UncommittedEvent,
};
use tokio::sync::{oneshot, watch};

pub use schema::SCHEMA_VERSION;

use reader::ReaderPool;
use watchers::Watchers;
use writer::{Durability, Lengths, Request, Writer};

/// A tenant's event store in one SQLite file.
pub struct SqliteEventStore {
    path: PathBuf,
    requests: Option<mpsc::Sender<Request>>,
    writer_thread: Option<JoinHandle<()>>,
    checkpointer_thread: Option<JoinHandle<()>>,
    readers: Arc<ReaderPool>,
    watchers: Arc<Watchers>,
    /// How many writes are waiting for their reply.
    writes_in_flight: AtomicUsize,
    /// Held for as long as the store is open; released last.
    _lock: File,
}

impl SqliteEventStore {
    /// Opens the store in a file, creating the file (and its folder) when missing and migrating
    /// an older schema. Blocks while it does so.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|error| {
                StoreError::Unavailable(format!("cannot create {}: {error}", folder.display()))
            })?;
        }
        let lock = lock_file(&path)?;
        let mut connection = schema::open_writer(&path)?;
        schema::migrate(&mut connection)?;
        let lengths = Lengths::load(&connection)?;
        let watchers = Arc::new(Watchers::new(lengths.logs(), lengths.streams()));
        let checkpointer_connection = schema::open_checkpointer(&path)?;
        let commits = Arc::new(AtomicU64::new(0));
        let (checkpointer_stop, checkpointer_stopped) = mpsc::channel();
        let writer = Writer::new(
            connection,
            lengths,
            Arc::clone(&watchers),
            Arc::clone(&commits),
            checkpointer_stop,
        )?;
        let (requests, request_receiver) = mpsc::channel();
        let spawn_failed = |error: std::io::Error| {
            StoreError::Unavailable(format!("cannot start an event store thread: {error}"))
        };
        let writer_thread = std::thread::Builder::new()
            .name("dolittle-sqlite-writer".to_owned())
            .spawn(move || writer.run(request_receiver))
            .map_err(spawn_failed)?;
        let checkpointer_thread = std::thread::Builder::new()
            .name("dolittle-sqlite-checkpointer".to_owned())
            .spawn(move || checkpoint::run(checkpointer_connection, commits, checkpointer_stopped))
            .map_err(spawn_failed)?;
        tracing::debug!(path = %path.display(), "opened the event store");
        Ok(Self {
            writes_in_flight: AtomicUsize::new(0),
            readers: Arc::new(ReaderPool::new(path.clone())),
            path,
            requests: Some(requests),
            writer_thread: Some(writer_thread),
            checkpointer_thread: Some(checkpointer_thread),
            watchers,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends a write to the writer thread and awaits its reply.
    async fn write<T, F>(&self, durability: Durability, operation: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> StoreResult<T> + Send + 'static,
    {
        let (reply, mut receiver) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or_else(writer_stopped)?;
        let _in_flight = InFlight::enter(&self.writes_in_flight);
        requests
            .send(Request::new(durability, reply, operation))
            .map_err(|_| writer_stopped())?;
        if lone_writes_look()
            && let Some(result) = self.look_for_lone_reply(&mut receiver).await
        {
            return result;
        }
        receiver.await.map_err(|_| writer_stopped())?
    }

    /// Looks for the reply to a write for up to [`LONE_WRITE_WAIT`], as long as no other write
    /// is in flight; `None` when it did not come in that time.
    async fn look_for_lone_reply<T>(
        &self,
        receiver: &mut oneshot::Receiver<StoreResult<T>>,
    ) -> Option<StoreResult<T>> {
        let started = Instant::now();
        while self.writes_in_flight.load(Ordering::Relaxed) == 1
            && started.elapsed() < LONE_WRITE_WAIT
        {
            match receiver.try_recv() {
                Ok(result) => return Some(result),
                Err(oneshot::error::TryRecvError::Closed) => return Some(Err(writer_stopped())),
                Err(oneshot::error::TryRecvError::Empty) => {
                    // Lets the writer thread run first should it share this processor, then
                    // the other tasks of this thread.
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
            }
        }
        None
    }
}

/// How long a write that is the only one in flight looks for its reply between the other tasks
/// of its thread, instead of waiting to be woken.
///
/// Waking a waiting task sends its thread through the scheduler, and for a lone committer that
/// was about a fifth of each durable commit: in a single-committer program, 1-event commits went
/// from about 5,900/s to 7,300/s, as fast as plain SQLite on the same disk, and 100-event
/// commits gained about a quarter. Writes that overlap never look: threads that look would take
/// the processors from the writer thread (with 8 concurrent committers, looking made commits a
/// third slower). Each look also yields the thread to the operating system, so that a writer
/// thread on the same processor runs first; without that, some runs were slower than not looking
/// at all. A store on one processor never looks. Past this time a write waits as any other
/// does: a durable commit rarely takes longer unless the disk is slow, and then looking gains
/// nothing.
const LONE_WRITE_WAIT: Duration = Duration::from_micros(500);

/// Whether lone writes look for their reply: only with two processors or more. Asked once per
/// process, as finding out reads the process's CPU limits from files.
fn lone_writes_look() -> bool {
    static LOOK: OnceLock<bool> = OnceLock::new();
    *LOOK.get_or_init(|| {
        std::thread::available_parallelism().is_ok_and(|processors| processors.get() >= 2)
    })
}

/// Counts a write as in flight until it is dropped, whether the write finished or its caller
/// gave up on it.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the event store's writer has stopped".to_owned())
}

/// Takes the lock that makes this store the only writer of its file.
fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", lock_path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::ConcurrentWriter(format!(
            "{} is open in another event store",
            path.display()
        ))),
        Err(TryLockError::Error(error)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {error}",
            lock_path.display()
        ))),
    }
}

impl Drop for SqliteEventStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop; the checkpointer
        // stops when the writer is gone.
        self.requests = None;
        for thread in [self.writer_thread.take(), self.checkpointer_thread.take()]
            .into_iter()
            .flatten()
        {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "an event store thread panicked");
            }
        }
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    fn describe(&self) -> StoreDescription {
        StoreDescription {
            backend: "sqlite".to_owned(),
            location: self.path.display().to_string(),
        }
    }

    async fn commit(
        &self,
        events: Vec<UncommittedEvent>,
        context: &ExecutionContext,
    ) -> StoreResult<Vec<CommittedEvent>> {
        validate_batch(&events)?;
        let context = context.clone();
        self.write(Durability::Full, move |writer| {
            writer.commit(events, &context)
        })
        .await
    }

    async fn commit_aggregate(
        &self,
        events: UncommittedAggregateEvents,
        context: &ExecutionContext,
    ) -> StoreResult<CommittedAggregateEvents> {
        validate_aggregate_batch(&events)?;
        let context = context.clone();
        self.write(Durability::Full, move |writer| {
            writer.commit_aggregate(events, &context)
        })
        .await
    }

    async fn read_log(
        &self,
        scope: ScopeId,
        from: EventLogSequenceNumber,
        limit: usize,
        filter: &LogFilter,
    ) -> StoreResult<LogPage> {
        let filter = filter.clone();
        self.readers
            .run(move |reader| reader.read_log(scope, from, limit, &filter))
            .await
    }

    fn watch_log(&self, scope: ScopeId) -> watch::Receiver<EventLogSequenceNumber> {
        self.watchers.log(scope)
    }

    async fn fetch_aggregate(
        &self,
        aggregate_root: AggregateRootId,
        event_source: &EventSourceId,
    ) -> StoreResult<CommittedAggregateEvents> {
        let event_source = event_source.clone();
        self.readers
            .run(move |reader| reader.fetch_aggregate(aggregate_root, &event_source))
            .await
    }

    async fn list_aggregates(
        &self,
        aggregate_root: Option<AggregateRootId>,
    ) -> StoreResult<Vec<AggregateRootInstance>> {
        self.readers
            .run(move |reader| reader.list_aggregates(aggregate_root))
            .await
    }

    async fn get_stream_definition(
        &self,
        scope: ScopeId,
        stream: StreamId,
    ) -> StoreResult<Option<StreamDefinition>> {
        self.readers
            .run(move |reader| reader.get_stream_definition(scope, stream))
            .await
    }

    async fn put_stream_definition(
        &self,
        scope: ScopeId,
        definition: &StreamDefinition,
    ) -> StoreResult<()> {
        let definition = definition.clone();
        self.write(Durability::Full, move |writer| {
            writer.put_stream_definition(scope, &definition)
        })
        .await
    }

    async fn list_stream_definitions(&self) -> StoreResult<Vec<(ScopeId, StreamDefinition)>> {
        self.readers
            .run(|reader| reader.list_stream_definitions())
            .await
    }

    async fn append_to_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        entries: Vec<StreamEntry>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<StreamPosition> {
        let (processor, state) = (*processor, state.clone());
        // Full durability: a public stream's entries are served to other microservices, whose
        // positions must never point at entries that a crash could renumber.
        self.write(Durability::Full, move |writer| {
            writer.append_to_stream(scope, stream, entries, &processor, &state)
        })
        .await
    }

    async fn read_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
        from: StreamPosition,
        partition: Option<&PartitionId>,
        limit: usize,
    ) -> StoreResult<Vec<StreamEvent>> {
        let partition = partition.cloned();
        self.readers
            .run(move |reader| reader.read_stream(scope, stream, from, partition.as_ref(), limit))
            .await
    }

    fn watch_stream(&self, scope: ScopeId, stream: StreamId) -> watch::Receiver<StreamPosition> {
        self.watchers.stream(scope, stream)
    }

    async fn get_processor_state(
        &self,
        key: &ProcessorKey,
    ) -> StoreResult<Option<StreamProcessorState>> {
        let key = *key;
        self.readers
            .run(move |reader| reader.get_processor_state(&key))
            .await
    }

    /// Written with relaxed durability: see the crate documentation.
    async fn save_processor_state(
        &self,
        key: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let (key, state) = (*key, state.clone());
        self.write(Durability::Relaxed, move |writer| {
            writer.save_processor_state(&key, &state)
        })
        .await
    }

    async fn list_processor_states(
        &self,
    ) -> StoreResult<Vec<(ProcessorKey, StreamProcessorState)>> {
        self.readers
            .run(|reader| reader.list_processor_states())
            .await
    }

    async fn get_projection_definition(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Option<ProjectionDefinition>> {
        self.readers
            .run(move |reader| reader.get_projection_definition(scope, projection))
            .await
    }

    async fn put_projection_definition(
        &self,
        definition: &ProjectionDefinition,
    ) -> StoreResult<()> {
        let definition = definition.clone();
        self.write(Durability::Full, move |writer| {
            writer.put_projection_definition(&definition)
        })
        .await
    }

    async fn list_projection_definitions(&self) -> StoreResult<Vec<ProjectionDefinition>> {
        self.readers
            .run(|reader| reader.list_projection_definitions())
            .await
    }

    async fn get_read_model(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        key: &str,
    ) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.readers
            .run(move |reader| reader.get_read_model(scope, projection, &key))
            .await
    }

    async fn get_read_models(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<Vec<(String, String)>> {
        self.readers
            .run(move |reader| reader.get_read_models(scope, projection))
            .await
    }

    /// Written with relaxed durability: read models are rebuilt from events, and a lost change
    /// goes together with the projection position saved with it.
    async fn apply_read_model_changes(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
        changes: Vec<ReadModelChange>,
        processor: &ProcessorKey,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let (processor, state) = (*processor, state.clone());
        self.write(Durability::Relaxed, move |writer| {
            writer.apply_read_model_changes(scope, projection, changes, &processor, &state)
        })
        .await
    }

    async fn promote_projection_rebuild(
        &self,
        rebuilt: EventProcessorId,
        definition: &ProjectionDefinition,
        state: &StreamProcessorState,
    ) -> StoreResult<()> {
        let (definition, state) = (definition.clone(), state.clone());
        self.write(Durability::Full, move |writer| {
            writer.promote_projection_rebuild(rebuilt, &definition, &state)
        })
        .await
    }

    async fn drop_projection(
        &self,
        scope: ScopeId,
        projection: EventProcessorId,
    ) -> StoreResult<()> {
        self.write(Durability::Full, move |writer| {
            writer.drop_projection(scope, projection)
        })
        .await
    }

    async fn commit_external(
        &self,
        subscription: &SubscriptionKey,
        events: Vec<ExternalEvent>,
        state: &SubscriptionState,
    ) -> StoreResult<Vec<CommittedEvent>> {
        let (subscription, state) = (subscription.clone(), state.clone());
        self.write(Durability::Full, move |writer| {
            writer.commit_external(&subscription, events, &state)
        })
        .await
    }

    async fn get_subscription_state(
        &self,
        subscription: &SubscriptionKey,
    ) -> StoreResult<Option<SubscriptionState>> {
        let subscription = subscription.clone();
        self.readers
            .run(move |reader| reader.get_subscription_state(&subscription))
            .await
    }

    /// Written with relaxed durability: the position saved with received events is durable;
    /// a lost later save only makes the subscription ask again for what it already has.
    async fn save_subscription_state(
        &self,
        subscription: &SubscriptionKey,
        state: &SubscriptionState,
    ) -> StoreResult<()> {
        let (subscription, state) = (subscription.clone(), state.clone());
        self.write(Durability::Relaxed, move |writer| {
            writer.save_subscription_state(&subscription, &state)
        })
        .await
    }

    async fn list_subscription_states(
        &self,
    ) -> StoreResult<Vec<(SubscriptionKey, SubscriptionState)>> {
        self.readers
            .run(|reader| reader.list_subscription_states())
            .await
    }
}

#[cfg(test)]
mod tests {
    use dolittle_store::conformance::{execution_context, numbered_events};

    use super::*;

    /// A write whose caller gave up on it while it looked for its reply is no longer counted in
    /// flight (else no later lone write would look again), and it was written all the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_given_up_on_is_no_longer_in_flight_and_stands() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let store = SqliteEventStore::open(folder.path().join("tenant.db")).expect("opening");
        let context = execution_context();
        let given_up = tokio::time::timeout(
            Duration::ZERO,
            store.commit(numbered_events("given-up", 0, 1), &context),
        )
        .await;
        assert_eq!(store.writes_in_flight.load(Ordering::Relaxed), 0);
        let mut length = store.watch_log(ScopeId::DEFAULT);
        tokio::time::timeout(
            Duration::from_secs(10),
            length.wait_for(|length| *length >= 1),
        )
        .await
        .expect("the given-up write is committed within 10 s")
        .expect("the store is open");
        let next = store
            .commit(numbered_events("next", 0, 1), &context)
            .await
            .expect("committing after the given-up write");
        assert_eq!(next[0].sequence_number, 1);
        if let Ok(acknowledged) = given_up {
            // The reply came before the timeout looked: the same write, acknowledged.
            assert_eq!(acknowledged.expect("committing")[0].sequence_number, 0);
        }
    }
}
