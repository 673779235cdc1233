//! The lengths of logs and streams that readers await, published by the writer thread after
//! each transaction commits (never before: a woken reader must find the events).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use dolittle_types::{ScopeId, StreamId};
use tokio::sync::watch;

#[derive(Default)]
pub(crate) struct Watchers {
    logs: Mutex<HashMap<ScopeId, watch::Sender<u64>>>,
    streams: Mutex<HashMap<(ScopeId, StreamId), watch::Sender<u64>>>,
}

impl Watchers {
    /// Watchers that start at the lengths found when the store was opened. A log or stream
    /// missing here is empty.
    pub(crate) fn new(
        logs: impl IntoIterator<Item = (ScopeId, u64)>,
        streams: impl IntoIterator<Item = ((ScopeId, StreamId), u64)>,
    ) -> Self {
        Self {
            logs: Mutex::new(
                logs.into_iter()
                    .map(|(scope, length)| (scope, watch::Sender::new(length)))
                    .collect(),
            ),
            streams: Mutex::new(
                streams
                    .into_iter()
                    .map(|(key, length)| (key, watch::Sender::new(length)))
                    .collect(),
            ),
        }
    }

    pub(crate) fn log(&self, scope: ScopeId) -> watch::Receiver<u64> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry(scope)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    pub(crate) fn stream(&self, scope: ScopeId, stream: StreamId) -> watch::Receiver<u64> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams
            .entry((scope, stream))
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    pub(crate) fn publish_log(&self, scope: ScopeId, length: u64) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        publish(
            logs.entry(scope).or_insert_with(|| watch::Sender::new(0)),
            length,
        );
    }

    pub(crate) fn publish_stream(&self, scope: ScopeId, stream: StreamId, length: u64) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        publish(
            streams
                .entry((scope, stream))
                .or_insert_with(|| watch::Sender::new(0)),
            length,
        );
    }
}

/// Lengths only grow; a stale publication never moves a watcher back.
fn publish(sender: &watch::Sender<u64>, length: u64) {
    sender.send_if_modified(|current| {
        if length > *current {
            *current = length;
            true
        } else {
            false
        }
    });
}
