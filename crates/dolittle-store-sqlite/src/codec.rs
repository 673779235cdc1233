//! How domain values become SQLite values and back: GUIDs as 16-byte blobs, times as
//! microseconds, small documents (states, definitions, execution contexts) as JSON text, and the
//! mapping of SQLite failures onto [`StoreError`].

use dolittle_store::StoreError;
use dolittle_types::{ExecutionContext, Uuid};
use rusqlite::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) type Guid = [u8; 16];

pub(crate) fn guid(value: impl Into<Uuid>) -> Guid {
    value.into().into_bytes()
}

pub(crate) fn uuid(bytes: Guid) -> Uuid {
    Uuid::from_bytes(bytes)
}

/// Maps a SQLite failure: the disk, the file or a lock being unavailable is an infrastructure
/// failure the caller may retry; anything else is a fault of the store.
pub(crate) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Internal(error.to_string()),
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Internal(format!("cannot encode a stored document: {error}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Internal(format!("a stored document is corrupt: {error}")))
}

/// The part of an execution context that many events share, stored once: everything but the
/// correlation, which every event row carries itself.
pub(crate) fn shared_context_body(context: &ExecutionContext) -> Result<String, StoreError> {
    let mut shared = context.clone();
    shared.correlation = Default::default();
    to_json(&shared)
}

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidArgument(format!("{what} {value} is too large to store")))
}

pub(crate) fn to_u64(value: i64, what: &str) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("{what} {value} is negative")))
}

pub(crate) fn corrupt(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, message.into())
}
