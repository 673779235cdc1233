//! The management API: HTTP + JSON for the people who run a microservice, on an endpoint of its
//! own (default port 51052), with the web dashboard at `/` and an OpenAPI document at
//! `/api/openapi.json`.
//!
//! Everything it reads goes through the store traits and the processor registry, so that it
//! never holds a lock that a commit waits for. Bound to loopback it is open; bound to any other
//! address the configuration requires a bearer token, and every `/api` request without the right
//! one gets 401 and nothing else. Errors carry the failure ids of the gRPC side
//! ([`crate::failures`]) so that scripts can tell a refusal from an infrastructure failure.

mod data;
mod processors;
pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dolittle_store::StoreError;
use dolittle_types::{Timestamp, Uuid};
use serde::Serialize;

use crate::RuntimeContext;
use crate::failures;
use crate::tenants::TenantError;

/// Something asked for that does not exist: a processor, an aggregate, a read model.
pub const NOT_FOUND: Uuid = Uuid::from_u128(0x9c2f4e61_0b7d_4a35_8e19_5d3a7f1c2b04);
/// An operation the Runtime refused in its current state (a replay past the position).
pub const REFUSED: Uuid = Uuid::from_u128(0x4b8e1d27_93a6_4f0c_b5d2_7e6a9c3f1d58);

/// The OpenAPI document, written by hand beside this file.
const OPENAPI: &str = include_str!("openapi.json");
/// The dashboard: one page with a small script over the JSON API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// An error of the management API: an HTTP status and a Dolittle failure (id and reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ManagementError {
    pub status: StatusCode,
    pub id: Uuid,
    pub reason: String,
}

impl ManagementError {
    pub fn new(status: StatusCode, id: Uuid, reason: impl Into<String>) -> Self {
        Self {
            status,
            id,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            failures::INVALID_REQUEST,
            format!("invalid request: {reason}"),
        )
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, NOT_FOUND, reason)
    }
}

impl From<StoreError> for ManagementError {
    fn from(error: StoreError) -> Self {
        let failure = failures::store_failure(&error);
        let id = failure
            .id
            .as_ref()
            .and_then(|id| <[u8; 16]>::try_from(id.value.as_slice()).ok())
            .map(Uuid::from_bytes_le)
            .unwrap_or(failures::INVALID_REQUEST);
        let status = match error {
            StoreError::EmptyBatch
            | StoreError::InvalidContent { .. }
            | StoreError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            StoreError::AggregateConcurrencyConflict { .. } => StatusCode::CONFLICT,
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::NewerSchema { .. }
            | StoreError::ConcurrentWriter(_)
            | StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, id, failure.reason)
    }
}

impl From<TenantError> for ManagementError {
    fn from(error: TenantError) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            failures::UNKNOWN_TENANT,
            error.to_string(),
        )
    }
}

#[derive(Serialize)]
struct FailureBody<'a> {
    failure: FailureView<'a>,
}

#[derive(Serialize)]
struct FailureView<'a> {
    id: String,
    reason: &'a str,
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        let body = FailureBody {
            failure: FailureView {
                id: self.id.hyphenated().to_string(),
                reason: &self.reason,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<axum::Json<T>, ManagementError>;

/// The routes of the management endpoint.
pub fn router(context: RuntimeContext) -> Router {
    let token = context
        .config
        .management_token
        .as_ref()
        .map(|token| Arc::new(format!("Bearer {}", token.0)));
    let api = Router::new()
        .route("/api/runtime", get(data::runtime))
        .route("/api/tenants", get(data::tenants))
        .route("/api/processors", get(processors::list_all))
        .route("/api/event-handlers", get(processors::list_event_handlers))
        .route(
            "/api/event-handlers/{id}",
            get(processors::get_event_handler),
        )
        .route(
            "/api/event-handlers/{id}/replay",
            post(processors::replay_event_handler),
        )
        .route("/api/filters", get(processors::list_filters))
        .route("/api/filters/{id}", get(processors::get_filter))
        .route("/api/projections", get(processors::list_projections))
        .route("/api/projections/{id}", get(processors::get_projection))
        .route(
            "/api/projections/{id}/replay",
            post(processors::replay_projection),
        )
        .route("/api/tenants/{tenant}/events", get(data::events))
        .route("/api/tenants/{tenant}/event-types", get(data::event_types))
        .route("/api/tenants/{tenant}/streams/{stream}", get(data::stream))
        .route("/api/tenants/{tenant}/aggregates", get(data::aggregates))
        .route(
            "/api/tenants/{tenant}/aggregates/{aggregate_root}/{event_source}",
            get(data::aggregate_events),
        )
        .route(
            "/api/tenants/{tenant}/projections/{projection}/read-models",
            get(data::read_models),
        )
        .route(
            "/api/tenants/{tenant}/subscriptions",
            get(data::subscriptions),
        )
        .route("/api/event-horizon/consents", get(data::consents))
        .fallback(|| async {
            ManagementError::not_found("there is no such management API endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(token, authorize))
        .with_state(context);
    Router::new()
        .route("/", get(dashboard))
        .route("/api/openapi.json", get(openapi))
        .merge(api)
}

/// Lets a request through when no token is configured or it carries the right one; otherwise
/// answers 401 and nothing else.
async fn authorize(
    State(token): State<Option<Arc<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_equal(given, expected.as_bytes()) {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Bearer")
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::UNAUTHORIZED.into_response());
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so that timing tells nothing of the token.
fn constant_time_equal(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.replace("{{VERSION}}", env!("CARGO_PKG_VERSION")),
    )
        .into_response()
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// The query string of a request as a map of decoded names and values.
pub(crate) struct QueryParameters(BTreeMap<String, String>);

impl QueryParameters {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut values = BTreeMap::new();
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            values.insert(percent_decode(name), percent_decode(value));
        }
        Self(values)
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// A value parsed with `FromStr`, or a 400 naming the parameter.
    pub(crate) fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ManagementError> {
        self.text(name)
            .map(|text| {
                text.parse::<T>().map_err(|_| {
                    ManagementError::invalid(format!("{name} {text:?} cannot be read"))
                })
            })
            .transpose()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParameters {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    Err(_) => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A timestamp as RFC 3339 in UTC with microseconds, as operators and browsers read it.
pub(crate) fn rfc3339(timestamp: Timestamp) -> String {
    let micros = timestamp.unix_micros();
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(Timestamp(951_782_400_000_000)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let query = QueryParameters::parse(Some("event_source=a%20b%2Fc&from=3&empty="));
        assert_eq!(query.text("event_source"), Some("a b/c"));
        assert_eq!(query.parsed::<u64>("from"), Ok(Some(3)));
        assert_eq!(query.text("empty"), None);
        assert!(query.parsed::<u64>("event_source").is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_equal(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_equal(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_equal(b"Bearer abcd", b"Bearer abc"));
        assert!(!constant_time_equal(b"", b"Bearer abc"));
    }
}
