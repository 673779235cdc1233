//! Checkpoints, kept off the commit path: the writer never checkpoints (automatic checkpoints
//! are off); this thread copies the WAL into the database file at quiet moments, and at least
//! every [`MAX_DELAY`] while writes keep coming, with PASSIVE checkpoints that never block the
//! writer or the readers. Once a checkpoint has caught up, the writer's next transaction starts
//! the WAL over from its beginning, so the WAL stays small.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How long without a commit makes a quiet moment.
const QUIET: Duration = Duration::from_millis(50);
/// The longest a checkpoint waits for a quiet moment.
const MAX_DELAY: Duration = Duration::from_millis(200);

/// Runs until the writer is gone, then checkpoints one last time.
pub(crate) fn run(connection: Connection, commits: Receiver<()>) {
    while commits.recv().is_ok() {
        let first = Instant::now();
        let mut writer_gone = false;
        loop {
            match commits.recv_timeout(QUIET) {
                Ok(()) if first.elapsed() >= MAX_DELAY => break,
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    writer_gone = true;
                    break;
                }
            }
        }
        checkpoint(&connection);
        if writer_gone {
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
