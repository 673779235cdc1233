//! Turns PostgreSQL client errors into [`StoreError`]s, keeping "the server cannot be reached"
//! (which the Runtime reports as the event store being unavailable) apart from everything else.

use std::error::Error as _;

use dolittle_store::StoreError;
use tokio_postgres::error::SqlState;

/// Whether an error means that the server, or the connection to it, is gone.
pub(crate) fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        // Class 08 is "connection exception"; 57P01..57P03 are the server shutting down or not
        // yet accepting connections; 53300 is "too many connections".
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether an error is a violation of a unique constraint.
pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The store error for a client error.
pub(crate) fn store_error(error: tokio_postgres::Error) -> StoreError {
    let text = describe(&error);
    if is_unavailable(&error) {
        StoreError::Unavailable(format!("postgresql: {text}"))
    } else {
        StoreError::Internal(format!("postgresql: {text}"))
    }
}

/// A client error with the server's message, which the error's own text leaves out.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db_error) => {
            let mut text = format!("{} ({})", db_error.message(), db_error.code().code());
            if let Some(detail) = db_error.detail() {
                text.push_str(&format!(": {detail}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// The store error for a value read from the database that does not make sense.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected data in the database: {what}"))
}

/// Converts a count or position to PostgreSQL's `bigint`.
pub(crate) fn to_bigint(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidArgument(format!("{what} is too large")))
}

/// Converts a `bigint` read from the database to a count or position.
pub(crate) fn from_bigint(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what} {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigints_refuse_what_does_not_fit() {
        assert_eq!(to_bigint(5, "position"), Ok(5));
        assert!(matches!(
            to_bigint(u64::MAX, "position"),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            from_bigint(-1, "position"),
            Err(StoreError::Internal(_))
        ));
    }
}
