//! The stream processor: the loop that feeds a scope's event log, one event at a time and in
//! order, to an event processor for one tenant (concepts §3).
//!
//! It catches up from the stored position, then follows live commits through the store's
//! watch (no sleep-polling). It never skips an event: an unpartitioned processor halts at a
//! failing event and retries it when the processor asks; a partitioned one parks only the
//! failing partition, goes on with the others, and catches the parked one up when a retry
//! succeeds. State is saved after each batch, so a crash re-delivers at most one batch and
//! never skips (at-least-once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dolittle_store::{
    FailingPartition, LogFilter, ProcessingFailure, ProcessorKey, SharedEventStore, StoreError,
    StreamProcessorState,
};
use dolittle_types::{CommittedEvent, PartitionId, TenantId, Timestamp};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::reverse_calls::CallError;

/// How many events are read (and processed before the state is saved) at a time.
const BATCH_SIZE: usize = 100;
/// The longest a processor sleeps without looking at its source again (protocol.md §3.3).
const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// How far a processor may advance over events that its filter drops before it saves its
/// position, so that a restart does not scan them again.
const UNSAVED_SKIP_LIMIT: u64 = 10_000;
/// How many partitions of a partitioned processor are processed at once. Order within a
/// partition is kept; different partitions are independent (concepts §3).
const PARTITIONS_IN_FLIGHT: usize = 64;
/// How long to wait before trying again after the store failed.
const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What a previous attempt at the same event said, sent with a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryState {
    pub reason: String,
    /// Attempts so far minus one: 0 on the first retry.
    pub retry_count: u32,
}

/// The result of processing one event.
#[derive(Debug)]
pub enum Outcome<Output> {
    Succeeded(Output),
    /// Failed; retry after the duration, or never when it is `None`.
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// What a stream processor drives: an event handler, a filter or a projection.
#[async_trait]
pub trait EventProcessor: Send + Sync + 'static {
    /// What processing an event produces, committed with the state after each batch.
    type Output: Send + Sync;

    fn key(&self) -> ProcessorKey;
    fn tenant(&self) -> TenantId;
    fn partitioned(&self) -> bool;
    /// Which events of the scope's log the processor sees.
    fn source_filter(&self) -> LogFilter;
    /// The partition an event belongs to.
    fn partition_of(&self, event: &CommittedEvent) -> PartitionId;
    /// Which events of the log belong to one partition (for catching a parked one up).
    fn partition_filter(&self, partition: &PartitionId) -> LogFilter;

    /// Processes one event. `pending` holds the outputs of this batch not yet committed.
    async fn process(
        &self,
        event: &CommittedEvent,
        partition: &PartitionId,
        retry: Option<RetryState>,
        pending: &[Self::Output],
    ) -> Result<Outcome<Self::Output>, CallError>;

    /// Saves the outputs of a batch and the state, atomically. When it fails, the stream
    /// processor keeps the outputs and offers them again with the next commit.
    async fn commit(
        &self,
        outputs: &[Self::Output],
        state: &StreamProcessorState,
    ) -> Result<(), StoreError>;

    /// Prepares the processor for an operator's replay from `from`, once the replay is known to
    /// be valid for its state and before that state is reset. A processor whose outputs build on
    /// earlier ones (a projection) starts them afresh here, or refuses a replay it cannot do.
    /// Most processors need nothing.
    async fn before_replay(&self, _from: u64) -> Result<(), ReplayError> {
        Ok(())
    }
}

/// Why a stream processor stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Its token was cancelled (the head disconnected, or the Runtime shuts down).
    Cancelled,
    /// The head went away in the middle of a call.
    Disconnected,
}

/// What an operator can ask of a running stream processor.
#[derive(Debug)]
pub enum Command {
    /// Process again from a position, all partitions or one.
    Replay {
        from: u64,
        partition: Option<PartitionId>,
        done: oneshot::Sender<Result<(), ReplayError>>,
    },
}

/// Why a replay is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "cannot replay from position {requested}: it is past the processor's current position \
         {current}"
    )]
    PastCurrentPosition { requested: u64, current: u64 },
    #[error("cannot replay one partition of an unpartitioned processor")]
    NotPartitioned,
    #[error("the replayed state could not be saved: {0}")]
    NotSaved(String),
    #[error("cannot replay from position {0}: a projection is rebuilt from the start")]
    OnlyFromTheStart(u64),
}

/// Changes a processor's state so that it processes again from `from`, in every partition or
/// in one. Used on running processors and on the stored state of idle ones alike.
pub fn apply_replay(
    state: &mut StreamProcessorState,
    from: u64,
    partition: Option<&PartitionId>,
) -> Result<(), ReplayError> {
    if from > state.position {
        return Err(ReplayError::PastCurrentPosition {
            requested: from,
            current: state.position,
        });
    }
    let now = Timestamp::now();
    match partition {
        None => {
            state.position = from;
            state.failure = None;
            // Partitions parked before `from` stay parked and are caught up as before; the
            // others are met again by the main pass.
            state
                .failing_partitions
                .retain(|_, failing| failing.position < from);
        }
        Some(_) if !state.partitioned => return Err(ReplayError::NotPartitioned),
        Some(partition) => {
            // A replayed partition is caught up like a parked one, from `from` to the main
            // position; with no attempts, no retry state is sent.
            let replay =
                state
                    .failing_partitions
                    .entry(partition.clone())
                    .or_insert(FailingPartition {
                        position: from,
                        reason: format!("replaying from position {from}"),
                        attempts: 0,
                        retry_time: Some(now),
                        last_failed: now,
                    });
            replay.position = replay.position.min(from);
            replay.retry_time = Some(now);
        }
    }
    Ok(())
}

/// Drives one processor for one tenant until cancelled.
pub struct StreamProcessor<P: EventProcessor> {
    processor: Arc<P>,
    store: SharedEventStore,
    state: StreamProcessorState,
    saved_position: u64,
    pending: Vec<P::Output>,
    log: watch::Receiver<u64>,
    cancelled: CancellationToken,
    /// Shows the current state to whoever watches (metrics, management).
    published: watch::Sender<StreamProcessorState>,
    commands: mpsc::Receiver<Command>,
}

/// The handles of a started stream processor: its live state and its command channel.
pub struct ProcessorHandles {
    pub state: watch::Receiver<StreamProcessorState>,
    pub commands: mpsc::Sender<Command>,
}

impl<P: EventProcessor> StreamProcessor<P> {
    /// Loads the stored state (or starts at 0) and prepares to run.
    pub async fn start(
        processor: Arc<P>,
        store: SharedEventStore,
        cancelled: CancellationToken,
    ) -> Result<(Self, ProcessorHandles), StoreError> {
        let key = processor.key();
        let mut state = store.get_processor_state(&key).await?.unwrap_or_default();
        state.partitioned = processor.partitioned();
        // A failure the head said never to retry is retried once by a new registration: the
        // head's code may have been fixed since.
        if let Some(failure) = state
            .failure
            .as_mut()
            .filter(|failure| failure.retry_time.is_none())
        {
            failure.retry_time = Some(Timestamp::now());
        }
        for partition in state.failing_partitions.values_mut() {
            partition.retry_time.get_or_insert_with(Timestamp::now);
        }
        let log = store.watch_log(key.scope);
        let (published, watcher) = watch::channel(state.clone());
        let (command_sender, commands) = mpsc::channel(8);
        let saved_position = state.position;
        Ok((
            Self {
                processor,
                store,
                state,
                saved_position,
                pending: Vec::new(),
                log,
                cancelled,
                published,
                commands,
            },
            ProcessorHandles {
                state: watcher,
                commands: command_sender,
            },
        ))
    }

    /// Runs until cancelled or the head disconnects.
    pub async fn run(mut self) -> Stopped {
        let result = self.run_until_stopped().await;
        // Whatever was processed and not yet saved is saved now, so a reconnecting head does
        // not see it again.
        if !self.pending.is_empty() || self.state.position != self.saved_position {
            let _ = self.save().await;
        }
        result
    }

    async fn run_until_stopped(&mut self) -> Stopped {
        loop {
            if self.cancelled.is_cancelled() {
                return Stopped::Cancelled;
            }
            while let Ok(command) = self.commands.try_recv() {
                self.handle(command).await;
            }
            let step = if self.state.failure.is_some() {
                self.retry_halted_event().await
            } else {
                self.process_next_batch().await
            };
            let step = match step {
                Ok(step) => step,
                Err(Interrupted::Disconnected) => return Stopped::Disconnected,
                Err(Interrupted::Store(error)) => {
                    tracing::warn!(processor = ?self.processor.key(), tenant = %self.processor.tenant(), %error, "stream processor could not reach its store; retrying");
                    if self.sleep(STORE_RETRY_DELAY).await.is_err() {
                        return Stopped::Cancelled;
                    }
                    continue;
                }
            };
            if let Err(interrupted) = self.retry_due_partitions().await {
                match interrupted {
                    Interrupted::Disconnected => return Stopped::Disconnected,
                    Interrupted::Store(error) => {
                        tracing::warn!(%error, "stream processor could not reach its store; retrying");
                    }
                }
            }
            if step == Step::Idle {
                match self.wait_for_work().await {
                    Wake::Work => {}
                    Wake::Command(command) => self.handle(command).await,
                    Wake::Cancelled => return Stopped::Cancelled,
                }
            }
        }
    }

    /// Processes the next batch of the source; `Idle` when there was nothing to process.
    async fn process_next_batch(&mut self) -> Result<Step, Interrupted> {
        let key = self.processor.key();
        let page = self
            .store
            .read_log(
                key.scope,
                self.state.position,
                BATCH_SIZE,
                &self.processor.source_filter(),
            )
            .await?;
        if page.events.is_empty() {
            self.state.position = self.state.position.max(page.next);
            if self.state.position - self.saved_position >= UNSAVED_SKIP_LIMIT {
                self.save().await?;
            }
            return Ok(Step::Idle);
        }
        if self.state.partitioned {
            self.process_partitions(&page.events).await?;
        } else {
            for event in &page.events {
                let partition = self.processor.partition_of(event);
                match self.process(event, &partition, None).await? {
                    None => {
                        self.state.position = event.sequence_number + 1;
                        self.state.last_successfully_processed = Some(Timestamp::now());
                    }
                    Some((reason, retry_after)) => {
                        let now = Timestamp::now();
                        self.state.position = event.sequence_number;
                        self.state.failure = Some(ProcessingFailure {
                            reason,
                            attempts: 1,
                            retry_time: retry_after.map(|delay| now.after(delay)),
                            last_failed: now,
                        });
                        self.save().await?;
                        return Ok(Step::Worked);
                    }
                }
            }
        }
        if page.events.len() < BATCH_SIZE {
            self.state.position = self.state.position.max(page.next);
        }
        self.save().await?;
        Ok(Step::Worked)
    }

    /// Processes a batch of a partitioned source: several partitions at once, each in order.
    /// A partition that fails is parked at its failing event and the rest of its events in
    /// the batch wait for its catch-up; the other partitions go on.
    async fn process_partitions(&mut self, events: &[CommittedEvent]) -> Result<(), Interrupted> {
        let mut partitions: Vec<PartitionId> = Vec::new();
        let mut groups: HashMap<PartitionId, Vec<&CommittedEvent>> = HashMap::new();
        for event in events {
            let partition = self.processor.partition_of(event);
            if self.state.failing_partitions.contains_key(&partition) {
                continue;
            }
            groups
                .entry(partition)
                .or_insert_with_key(|partition| {
                    partitions.push(partition.clone());
                    Vec::new()
                })
                .push(event);
        }
        let work = futures::stream::iter(partitions.into_iter().map(|partition| {
            let events = groups.remove(&partition).unwrap_or_default();
            let processor = self.processor.clone();
            async move {
                let mut outputs = Vec::new();
                for event in events {
                    match processor.process(event, &partition, None, &[]).await {
                        Ok(Outcome::Succeeded(output)) => outputs.push(output),
                        Ok(Outcome::Failed {
                            reason,
                            retry_after,
                        }) => {
                            let end =
                                PartitionEnd::Failed(event.sequence_number, reason, retry_after);
                            return (partition, outputs, end);
                        }
                        Err(CallError::Disconnected) => {
                            return (
                                partition,
                                outputs,
                                PartitionEnd::Interrupted(event.sequence_number),
                            );
                        }
                    }
                }
                (partition, outputs, PartitionEnd::Completed)
            }
        }))
        .buffer_unordered(PARTITIONS_IN_FLIGHT)
        .collect::<Vec<_>>();
        // The calls end by themselves when the head goes away, so every partition reports how
        // far it got: nothing that was handled is sent again after a reconnect.
        let results = work.await;
        let now = Timestamp::now();
        let mut interrupted = false;
        for (partition, outputs, end) in results {
            self.pending.extend(outputs);
            let parked = match end {
                PartitionEnd::Completed => continue,
                PartitionEnd::Failed(sequence_number, reason, retry_after) => {
                    tracing::info!(processor = ?self.processor.key(), tenant = %self.processor.tenant(), sequence_number, %partition, %reason, "processing failed; partition parked");
                    FailingPartition {
                        position: sequence_number,
                        reason,
                        attempts: 1,
                        retry_time: retry_after.map(|delay| now.after(delay)),
                        last_failed: now,
                    }
                }
                PartitionEnd::Interrupted(sequence_number) => {
                    interrupted = true;
                    // Parked without an attempt: caught up first thing when processing resumes.
                    FailingPartition {
                        position: sequence_number,
                        reason: "not yet processed when the head disconnected".to_owned(),
                        attempts: 0,
                        retry_time: Some(now),
                        last_failed: now,
                    }
                }
            };
            self.state.failing_partitions.insert(partition, parked);
        }
        if let Some(last) = events.last() {
            self.state.position = last.sequence_number + 1;
        }
        self.state.last_successfully_processed = Some(now);
        if interrupted {
            return Err(Interrupted::Disconnected);
        }
        Ok(())
    }

    /// Carries out an operator's command between batches.
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Replay {
                from,
                partition,
                done,
            } => {
                let mut state = self.state.clone();
                let mut result = apply_replay(&mut state, from, partition.as_ref());
                if result.is_ok() {
                    result = self.processor.before_replay(from).await;
                }
                if result.is_ok() {
                    self.state = state;
                    if let Err(error) = self.save().await {
                        let message = match error {
                            Interrupted::Store(error) => error.to_string(),
                            Interrupted::Disconnected => "the head disconnected".to_owned(),
                        };
                        let _ = done.send(Err(ReplayError::NotSaved(message)));
                        return;
                    }
                    tracing::info!(processor = ?self.processor.key(), tenant = %self.processor.tenant(), from, partition = ?partition, "replaying");
                }
                let _ = done.send(result);
            }
        }
    }

    /// Retries the event an unpartitioned processor halted at, when its retry time has come.
    async fn retry_halted_event(&mut self) -> Result<Step, Interrupted> {
        let Some(failure) = self.state.failure.clone() else {
            return Ok(Step::Worked);
        };
        if failure
            .retry_time
            .is_none_or(|time| time > Timestamp::now())
        {
            return Ok(Step::Idle);
        }
        let key = self.processor.key();
        let page = self
            .store
            .read_log(
                key.scope,
                self.state.position,
                1,
                &self.processor.source_filter(),
            )
            .await?;
        let Some(event) = page.events.first() else {
            // The event is gone from the source (it cannot be, the log is append-only), so
            // there is nothing to retry.
            self.state.failure = None;
            return Ok(Step::Worked);
        };
        let partition = self.processor.partition_of(event);
        let retry = RetryState {
            reason: failure.reason.clone(),
            retry_count: failure.attempts.saturating_sub(1),
        };
        match self.process(event, &partition, Some(retry)).await? {
            None => {
                self.state.failure = None;
                self.state.position = event.sequence_number + 1;
                self.state.last_successfully_processed = Some(Timestamp::now());
            }
            Some((reason, retry_after)) => {
                let now = Timestamp::now();
                self.state.position = event.sequence_number;
                self.state.failure = Some(ProcessingFailure {
                    reason,
                    attempts: failure.attempts.saturating_add(1),
                    retry_time: retry_after.map(|delay| now.after(delay)),
                    last_failed: now,
                });
            }
        }
        self.save().await?;
        Ok(Step::Worked)
    }

    /// Catches up every parked partition whose retry time has come.
    async fn retry_due_partitions(&mut self) -> Result<(), Interrupted> {
        let now = Timestamp::now();
        let due: Vec<PartitionId> = self
            .state
            .failing_partitions
            .iter()
            .filter(|(_, failing)| failing.retry_time.is_some_and(|time| time <= now))
            .map(|(partition, _)| partition.clone())
            .collect();
        for partition in due {
            self.catch_up_partition(&partition).await?;
        }
        Ok(())
    }

    async fn catch_up_partition(&mut self, partition: &PartitionId) -> Result<(), Interrupted> {
        let key = self.processor.key();
        let filter = self.processor.partition_filter(partition);
        let mut first = true;
        loop {
            let Some(failing) = self.state.failing_partitions.get(partition).cloned() else {
                return Ok(());
            };
            let page = self
                .store
                .read_log(key.scope, failing.position, BATCH_SIZE, &filter)
                .await?;
            let events: Vec<&CommittedEvent> = page
                .events
                .iter()
                .filter(|event| event.sequence_number < self.state.position)
                .collect();
            if events.is_empty() {
                self.state.failing_partitions.remove(partition);
                self.save().await?;
                return Ok(());
            }
            for event in events {
                let retry = (first && failing.attempts > 0).then(|| RetryState {
                    reason: failing.reason.clone(),
                    retry_count: failing.attempts - 1,
                });
                first = false;
                match self.process(event, partition, retry).await? {
                    None => {
                        if let Some(parked) = self.state.failing_partitions.get_mut(partition) {
                            parked.position = event.sequence_number + 1;
                        }
                        self.state.last_successfully_processed = Some(Timestamp::now());
                    }
                    Some((reason, retry_after)) => {
                        let now = Timestamp::now();
                        let same_event = event.sequence_number == failing.position;
                        self.state.failing_partitions.insert(
                            partition.clone(),
                            FailingPartition {
                                position: event.sequence_number,
                                reason,
                                attempts: if same_event {
                                    failing.attempts.saturating_add(1)
                                } else {
                                    1
                                },
                                retry_time: retry_after.map(|delay| now.after(delay)),
                                last_failed: now,
                            },
                        );
                        self.save().await?;
                        return Ok(());
                    }
                }
            }
            self.save().await?;
        }
    }

    /// Processes one event; `Some((reason, retry_after))` when it failed.
    async fn process(
        &mut self,
        event: &CommittedEvent,
        partition: &PartitionId,
        retry: Option<RetryState>,
    ) -> Result<Option<(String, Option<Duration>)>, Interrupted> {
        let outcome = tokio::select! {
            outcome = self.processor.process(event, partition, retry, &self.pending) => outcome,
            () = self.cancelled.cancelled() => Err(CallError::Disconnected),
        };
        match outcome.map_err(|_| Interrupted::Disconnected)? {
            Outcome::Succeeded(output) => {
                self.pending.push(output);
                Ok(None)
            }
            Outcome::Failed {
                reason,
                retry_after,
            } => {
                tracing::info!(processor = ?self.processor.key(), tenant = %self.processor.tenant(), sequence_number = event.sequence_number, %partition, %reason, "processing failed");
                Ok(Some((reason, retry_after)))
            }
        }
    }

    async fn save(&mut self) -> Result<(), Interrupted> {
        self.processor.commit(&self.pending, &self.state).await?;
        self.pending.clear();
        self.saved_position = self.state.position;
        self.published.send_replace(self.state.clone());
        Ok(())
    }

    /// Waits for new events, the next retry time, a command, or cancellation.
    async fn wait_for_work(&mut self) -> Wake {
        let now = Timestamp::now();
        let next_retry = self
            .state
            .failing_partitions
            .values()
            .filter_map(|failing| failing.retry_time)
            .chain(
                self.state
                    .failure
                    .as_ref()
                    .and_then(|failure| failure.retry_time),
            )
            .min();
        let wait = next_retry
            .map(|time| {
                Duration::from_micros(
                    time.unix_micros().saturating_sub(now.unix_micros()).max(0) as u64
                )
            })
            .unwrap_or(LONGEST_WAIT)
            .min(LONGEST_WAIT);
        let halted = self.state.failure.is_some();
        let position = self.state.position;
        let log = &mut self.log;
        let grown = async {
            if halted {
                // A halted processor waits for its retry time, not for new events.
                std::future::pending::<()>().await;
            }
            if log.wait_for(|length| *length > position).await.is_err() {
                // The store is gone; only the timer or cancellation can end this wait.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = grown => Wake::Work,
            () = tokio::time::sleep(wait) => Wake::Work,
            Some(command) = self.commands.recv() => Wake::Command(command),
            () = self.cancelled.cancelled() => Wake::Cancelled,
        }
    }

    async fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.cancelled.cancelled() => Err(Cancelled),
        }
    }
}

/// How far one partition of a batch got.
enum PartitionEnd {
    Completed,
    /// Failed at this sequence number, with the head's reason and retry wish.
    Failed(u64, String, Option<Duration>),
    /// The head went away before this sequence number was processed.
    Interrupted(u64),
}

enum Wake {
    Work,
    Command(Command),
    Cancelled,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Worked,
    Idle,
}

struct Cancelled;

enum Interrupted {
    Disconnected,
    Store(StoreError),
}

impl From<StoreError> for Interrupted {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}
