//! Checkpoints, kept off the commit path: the writer never checkpoints on its own schedule
//! (automatic checkpoints are off); this thread copies the WAL into the database file at quiet
//! moments, and at least every [`MAX_DELAY`] while writes keep coming, with PASSIVE checkpoints
//! that never block the writer or the readers. Once a checkpoint has caught up, the writer's
//! next transaction starts the WAL over from its beginning, so the WAL stays small (the writer
//! finishes the job itself when the WAL grows long anyway, see [`crate::writer`]).
//!
//! The thread looks at the writer's commit counter every [`QUIET`] instead of being woken by
//! every commit, which would cost a thread switch per commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How long without a commit makes a quiet moment.
const QUIET: Duration = Duration::from_millis(50);
/// The longest a checkpoint waits for a quiet moment.
const MAX_DELAY: Duration = Duration::from_millis(200);

/// Runs until `stop` is closed (when the writer is gone), then checkpoints one last time.
pub(crate) fn run(connection: Connection, commits: Arc<AtomicU64>, stop: Receiver<()>) {
    let mut seen = commits.load(Ordering::Relaxed);
    let mut checkpointed = seen;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let stopping = !matches!(stop.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
        let now = commits.load(Ordering::Relaxed);
        let quiet = now == seen;
        seen = now;
        if now != checkpointed && waiting_since.is_none() {
            waiting_since = Some(Instant::now());
        }
        if let Some(since) = waiting_since
            && (quiet || stopping || since.elapsed() >= MAX_DELAY)
        {
            checkpoint(&connection);
            checkpointed = now;
            waiting_since = None;
        }
        if stopping {
            break;
        }
    }
}

fn checkpoint(connection: &Connection) {
    let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
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
                "checkpointed the WAL"
            );
        }
        Err(error) => tracing::warn!(%error, "a WAL checkpoint failed"),
    }
}
