//! A small pool of connections for everything that does not go through the appender: reads,
//! processor states, definitions and read models.
//!
//! Connections are opened on demand, up to `max_connections` at once, and each keeps its own
//! cache of prepared statements. A connection that saw the server go away is thrown away, and
//! so are the idle ones (they went away too), so that the pool reconnects by itself once the
//! server is back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dolittle_store::StoreError;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls, Statement};

use crate::error::{is_unavailable, store_error};

/// How long opening a connection may take before the store reports itself unavailable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Quotes an identifier for SQL text.
pub(crate) fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Opens a connection whose `search_path` is the store's schema, and drives it on a task.
pub(crate) async fn open_client(
    config: &tokio_postgres::Config,
    schema: &str,
) -> Result<Client, StoreError> {
    let connecting = config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| StoreError::Unavailable("connecting to postgresql timed out".to_owned()))?
        .map_err(store_error)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgresql connection ended");
        }
    });
    client
        .batch_execute(&format!("SET search_path TO {}", quote_identifier(schema)))
        .await
        .map_err(store_error)?;
    Ok(client)
}

/// A connection and its prepared statements.
pub(crate) struct Connection {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
        }
    }

    /// The prepared statement for a SQL text, prepared on first use.
    pub(crate) async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(store_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

pub(crate) struct Pool {
    config: tokio_postgres::Config,
    schema: String,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Pool {
    pub(crate) fn new(config: tokio_postgres::Config, schema: String, size: usize) -> Self {
        Self {
            config,
            schema,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// A connection: an idle one that is still open, or a new one.
    pub(crate) async fn get(&self) -> Result<PooledConnection<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Internal("the connection pool is closed".to_owned()))?;
        let reused = loop {
            let candidate = self.lock_idle().pop();
            match candidate {
                Some(connection) if connection.client.is_closed() => continue,
                other => break other,
            }
        };
        let connection = match reused {
            Some(connection) => connection,
            None => Connection::new(open_client(&self.config, &self.schema).await?),
        };
        Ok(PooledConnection {
            pool: self,
            connection: Some(connection),
            broken: false,
            _permit: permit,
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The vector stays consistent even if a holder panicked: it is only pushed and popped.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection lent by the pool; it goes back when dropped, unless it broke.
pub(crate) struct PooledConnection<'pool> {
    pool: &'pool Pool,
    /// Always `Some` until the connection is given back in `drop`.
    connection: Option<Connection>,
    broken: bool,
    _permit: SemaphorePermit<'pool>,
}

impl PooledConnection<'_> {
    pub(crate) fn get(&mut self) -> &mut Connection {
        match self.connection.as_mut() {
            Some(connection) => connection,
            // The option is only emptied in `drop`.
            None => unreachable!("a pooled connection is used after it was given back"),
        }
    }

    /// Turns a client error into a store error, and when it says the server went away,
    /// throws this connection and the idle ones away so that the next use reconnects.
    pub(crate) fn fail(&mut self, error: tokio_postgres::Error) -> StoreError {
        if is_unavailable(&error) {
            self.broken = true;
            self.pool.lock_idle().clear();
        }
        store_error(error)
    }

    /// Like [`PooledConnection::fail`] for errors that are already store errors.
    pub(crate) fn fail_store(&mut self, error: StoreError) -> StoreError {
        if matches!(error, StoreError::Unavailable(_)) {
            self.broken = true;
            self.pool.lock_idle().clear();
        }
        error
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && !self.broken
            && !connection.client.is_closed()
        {
            self.pool.lock_idle().push(connection);
        }
    }
}
