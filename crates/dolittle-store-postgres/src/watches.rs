//! The lengths of a store's logs and streams as `watch` channels, and the listener that keeps
//! them current from other processes' commits through LISTEN/NOTIFY.
//!
//! The store's own appender advances the channels right after each group commit. Every group
//! commit (ours or another process's) also sends ONE notification on [`NOTIFY_CHANNEL`] whose
//! payload names the schema and the new lengths, so that readers in other processes wake up
//! without polling. Lengths only ever grow, so applying a notification twice, or late, is
//! harmless. After (re)connecting, the listener re-reads every length, so that nothing
//! committed while it was away is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dolittle_types::{EventLogSequenceNumber, ScopeId, StreamId, StreamPosition, Uuid};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::error::from_bigint;
use crate::pool::{CONNECT_TIMEOUT, quote_identifier};

/// The notification channel of every store (the payload's first line names the schema).
pub(crate) const NOTIFY_CHANNEL: &str = "dolittle_event_store";
/// A notification payload must stay under 8000 bytes; past this, it asks for a re-read.
const MAX_PAYLOAD: usize = 7000;

#[derive(Default)]
pub(crate) struct Watches {
    logs: Mutex<HashMap<ScopeId, watch::Sender<EventLogSequenceNumber>>>,
    streams: Mutex<HashMap<(ScopeId, StreamId), watch::Sender<StreamPosition>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent if a holder panicked: every change is a single insert or send.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises a channel's value to `length` unless it is already there.
fn raise(sender: &watch::Sender<u64>, length: u64) {
    sender.send_if_modified(|current| {
        if length > *current {
            *current = length;
            true
        } else {
            false
        }
    });
}

impl Watches {
    pub(crate) fn watch_log(&self, scope: ScopeId) -> watch::Receiver<EventLogSequenceNumber> {
        lock(&self.logs)
            .entry(scope)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub(crate) fn watch_stream(
        &self,
        scope: ScopeId,
        stream: StreamId,
    ) -> watch::Receiver<StreamPosition> {
        lock(&self.streams)
            .entry((scope, stream))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The length of a log as far as this store knows: every event below it is committed.
    pub(crate) fn known_log_length(&self, scope: ScopeId) -> Option<EventLogSequenceNumber> {
        lock(&self.logs).get(&scope).map(|sender| *sender.borrow())
    }

    /// The length of a stream as far as this store knows: every entry below it is committed.
    pub(crate) fn known_stream_length(
        &self,
        scope: ScopeId,
        stream: StreamId,
    ) -> Option<StreamPosition> {
        lock(&self.streams)
            .get(&(scope, stream))
            .map(|sender| *sender.borrow())
    }

    pub(crate) fn advance_log(&self, scope: ScopeId, length: EventLogSequenceNumber) {
        let mut logs = lock(&self.logs);
        match logs.get(&scope) {
            Some(sender) => raise(sender, length),
            None => {
                logs.insert(scope, watch::channel(length).0);
            }
        }
    }

    pub(crate) fn advance_stream(&self, scope: ScopeId, stream: StreamId, length: StreamPosition) {
        let mut streams = lock(&self.streams);
        match streams.get(&(scope, stream)) {
            Some(sender) => raise(sender, length),
            None => {
                streams.insert((scope, stream), watch::channel(length).0);
            }
        }
    }

    /// Re-reads every length from the database.
    pub(crate) async fn refresh(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let (logs, streams) = futures::try_join!(
            client.query("SELECT scope, length FROM log_lengths", &[]),
            client.query("SELECT scope, stream, length FROM stream_lengths", &[]),
        )?;
        for row in logs {
            let scope: Uuid = row.try_get(0)?;
            let length: i64 = row.try_get(1)?;
            if let Ok(length) = from_bigint(length, "log length") {
                self.advance_log(scope.into(), length);
            }
        }
        for row in streams {
            let scope: Uuid = row.try_get(0)?;
            let stream: Uuid = row.try_get(1)?;
            let length: i64 = row.try_get(2)?;
            if let Ok(length) = from_bigint(length, "stream length") {
                self.advance_stream(scope.into(), stream.into(), length);
            }
        }
        Ok(())
    }

    /// Applies a notification's payload; returns false when the payload asks for a re-read.
    fn apply(&self, lines: std::str::Lines<'_>) -> bool {
        for line in lines {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("l"), Some(scope), Some(length), None) => {
                    if let (Ok(scope), Ok(length)) = (scope.parse(), length.parse()) {
                        self.advance_log(scope, length);
                    }
                }
                (Some("s"), Some(scope), Some(stream), Some(length)) => {
                    if let (Ok(scope), Ok(stream), Ok(length)) =
                        (scope.parse(), stream.parse(), length.parse())
                    {
                        self.advance_stream(scope, stream, length);
                    }
                }
                _ => return false,
            }
        }
        true
    }
}

/// The payload of the one notification of a group commit.
pub(crate) fn notification_payload(
    schema: &str,
    logs: &HashMap<ScopeId, u64>,
    streams: &HashMap<(ScopeId, StreamId), u64>,
) -> String {
    let mut payload = String::from(schema);
    for (scope, length) in logs {
        payload.push_str(&format!("\nl {scope} {length}"));
    }
    for ((scope, stream), length) in streams {
        payload.push_str(&format!("\ns {scope} {stream} {length}"));
    }
    if payload.len() > MAX_PAYLOAD {
        payload = format!("{schema}\n*");
    }
    payload
}

/// Listens for notifications until `shutdown` changes or is dropped, reconnecting whenever the
/// connection is lost.
pub(crate) async fn listen(
    watches: Arc<Watches>,
    config: tokio_postgres::Config,
    schema: String,
    mut shutdown: watch::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            outcome = listen_once(&watches, &config, &schema) => {
                match outcome {
                    Ok(()) => backoff = Duration::from_millis(50),
                    Err(error) => {
                        tracing::debug!(%error, schema, "event store listener disconnected");
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's worth of listening; returns when the connection ends.
async fn listen_once(
    watches: &Watches,
    config: &tokio_postgres::Config,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await {
            Ok(connected) => connected?,
            Err(_) => return Ok(()),
        };
    let (sender, mut notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages =
            futures::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender.send(notification).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "event store listener connection failed");
                    return;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!(
                "SET search_path TO {}; LISTEN {NOTIFY_CHANNEL}",
                quote_identifier(schema)
            ))
            .await?;
        // Listening first, then reading, so that no commit falls between the two.
        watches.refresh(&client).await?;
        while let Some(notification) = notifications.recv().await {
            let mut lines = notification.payload().lines();
            if lines.next() != Some(schema) {
                continue;
            }
            if !watches.apply(lines) {
                watches.refresh(&client).await?;
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_the_new_lengths() {
        let watches = Watches::default();
        let scope = ScopeId::new_random();
        let stream = StreamId::new_random();
        let receiver = watches.watch_log(scope);
        let stream_receiver = watches.watch_stream(scope, stream);
        let payload = notification_payload(
            "tenant",
            &HashMap::from([(scope, 7)]),
            &HashMap::from([((scope, stream), 3)]),
        );
        let mut lines = payload.lines();
        assert_eq!(lines.next(), Some("tenant"));
        assert!(watches.apply(lines));
        assert_eq!(*receiver.borrow(), 7);
        assert_eq!(*stream_receiver.borrow(), 3);
    }

    #[test]
    fn lengths_never_go_back() {
        let watches = Watches::default();
        let receiver = watches.watch_log(ScopeId::DEFAULT);
        watches.advance_log(ScopeId::DEFAULT, 10);
        watches.advance_log(ScopeId::DEFAULT, 4);
        assert_eq!(*receiver.borrow(), 10);
    }

    #[test]
    fn a_payload_too_long_asks_for_a_re_read() {
        let logs = (0..500).map(|_| (ScopeId::new_random(), 1)).collect();
        let payload = notification_payload("tenant", &logs, &HashMap::new());
        assert_eq!(payload, "tenant\n*");
        let mut lines = payload.lines();
        lines.next();
        assert!(!Watches::default().apply(lines));
    }
}
