//! Tenancy: one event store per configured tenant, opened at start-up, and the one place that
//! answers "which store serves this tenant". A tenant that is not configured gets an error
//! naming it, never another tenant's store.

use std::collections::BTreeMap;
use std::sync::Arc;

use dolittle_store::{SharedEventStore, StoreError};
use dolittle_types::TenantId;

use crate::config::EventStoreConfig;

/// Why a tenant's store could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} is not configured in this Runtime (see tenants.json)")]
    Unknown(TenantId),
}

/// Why the stores could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the event store of tenant {tenant} ({location}): {source}")]
pub struct OpenError {
    pub tenant: TenantId,
    pub location: String,
    #[source]
    pub source: StoreError,
}

/// The configured tenants and their stores.
#[derive(Clone)]
pub struct Tenants {
    stores: Arc<BTreeMap<TenantId, SharedEventStore>>,
}

impl Tenants {
    /// Opens every tenant's store.
    pub async fn open(
        configuration: &BTreeMap<TenantId, EventStoreConfig>,
    ) -> Result<Self, OpenError> {
        // Stores open side by side: with many tenants, start-up is bounded by the slowest
        // store rather than by their sum.
        let opened =
            futures::future::try_join_all(configuration.iter().map(|(tenant, store)| async move {
                let opened = open_store(store).await.map_err(|source| OpenError {
                    tenant: *tenant,
                    location: describe(store),
                    source,
                })?;
                tracing::info!(%tenant, store = %describe(store), "opened event store");
                Ok::<_, OpenError>((*tenant, opened))
            }))
            .await?;
        let stores: BTreeMap<TenantId, SharedEventStore> = opened.into_iter().collect();
        Ok(Self {
            stores: Arc::new(stores),
        })
    }

    /// Tenants backed by stores that were opened elsewhere (tests, in-process use).
    pub fn from_stores(stores: BTreeMap<TenantId, SharedEventStore>) -> Self {
        Self {
            stores: Arc::new(stores),
        }
    }

    pub fn store(&self, tenant: TenantId) -> Result<&SharedEventStore, TenantError> {
        self.stores.get(&tenant).ok_or(TenantError::Unknown(tenant))
    }

    /// Every tenant with its store, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (TenantId, &SharedEventStore)> {
        self.stores.iter().map(|(tenant, store)| (*tenant, store))
    }

    pub fn ids(&self) -> Vec<TenantId> {
        self.stores.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.stores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }
}

async fn open_store(config: &EventStoreConfig) -> Result<SharedEventStore, StoreError> {
    match config {
        EventStoreConfig::Embedded { path } => {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder).map_err(|error| {
                    StoreError::Unavailable(format!(
                        "cannot create folder {}: {error}",
                        folder.display()
                    ))
                })?;
            }
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || {
                dolittle_store_sqlite::SqliteEventStore::open(&path)
            })
            .await
            .map_err(|error| StoreError::Internal(error.to_string()))??;
            Ok(Arc::new(store))
        }
        EventStoreConfig::Postgres {
            connection_string,
            schema,
            max_connections,
        } => {
            let store = dolittle_store_postgres::PostgresEventStore::connect(
                dolittle_store_postgres::PostgresConfig {
                    connection_string: connection_string.clone(),
                    schema: schema.clone(),
                    max_connections: *max_connections as usize,
                },
            )
            .await?;
            Ok(Arc::new(store))
        }
    }
}

/// Where a store lives, without secrets (a PostgreSQL password is never shown).
pub fn describe(config: &EventStoreConfig) -> String {
    match config {
        EventStoreConfig::Embedded { path } => format!("embedded {}", path.display()),
        EventStoreConfig::Postgres {
            connection_string,
            schema,
            ..
        } => {
            format!(
                "postgres {} schema {schema}",
                redact_password(connection_string)
            )
        }
    }
}

fn redact_password(connection_string: &str) -> String {
    // URL form: postgres://user:password@host/db
    if let Some((scheme, rest)) = connection_string.split_once("://") {
        if let Some((credentials, host)) = rest.split_once('@') {
            let user = credentials.split(':').next().unwrap_or_default();
            return format!("{scheme}://{user}@{host}");
        }
        return connection_string.to_owned();
    }
    // key=value form
    connection_string
        .split_whitespace()
        .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact_password("postgres://me:secret@db:5432/x"),
            "postgres://me@db:5432/x"
        );
        assert_eq!(
            redact_password("host=db password=secret user=me"),
            "host=db user=me"
        );
        assert_eq!(redact_password("postgres://me@db/x"), "postgres://me@db/x");
    }
}
