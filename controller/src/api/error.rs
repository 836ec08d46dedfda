//! [`ApiError`]: every error answer is JSON `{"code": "...", "message": "..."}`
//! ([`nexrtc_wire::ErrorBody`], which the edge agent reads).
//!
//! Codes are stable (clients branch on them); messages are for people.
//!
//! | status | codes |
//! |---|---|
//! | 307 | `wrong_replica` (signaling: with `Location` and `location`) |
//! | 400 | `invalid_json`, `invalid_request` (also bad path parameters and query strings), `invalid_ttl`, `unknown_region`, `unknown_tenant`, `invalid_client_ip`, `already_expired`, `invalid_room`, `invalid_participant` |
//! | 401 | `missing_credentials`, `invalid_key`, `expired_token`, `invalid_token`, `revoked` |
//! | 403 | `forbidden_scope`, `forbidden_origin`, `forbidden`, `wrong_room` |
//! | 404 | `not_found`, `lease_expired` |
//! | 405 | `method_not_allowed` |
//! | 409 | `conflict`, `last_secret` |
//! | 413 | `body_too_large` |
//! | 421 | `forbidden_host` (`nexrtc dev` only: `Host` is not localhost or a loopback address) |
//! | 426 | `upgrade_required` (a plain GET of the WebSocket endpoint) |
//! | 429 | `rate_limited` (with `Retry-After`) |
//! | 500 | `internal` |
//! | 503 | `no_relays`, `store_unavailable`, `not_ready` |

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nexrtc_wire::ErrorBody;

use crate::model::RecordError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::bad_request("invalid_json", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::bad_request("invalid_request", message)
    }

    pub fn unknown_region(region: &str) -> Self {
        Self::bad_request(
            "unknown_region",
            format!("region {region:?} is not in the catalogue"),
        )
    }

    pub fn unknown_tenant(tenant: &str) -> Self {
        Self::bad_request(
            "unknown_tenant",
            format!("tenant {tenant:?} does not exist"),
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_scope",
            format!("this credential lacks the {scope:?} scope"),
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn rate_limited(wait: Duration) -> Self {
        // Whole seconds, at least 1 (Retry-After has no fractions).
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError {
            retry_after: Some(secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this key; retry later",
            )
        }
    }

    pub fn no_relays() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_relays",
            "no relay is available right now",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the state store is unreachable; retry later",
            ),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal("state store error")
            }
        }
    }
}

/// A typed store operation's error as the API answers it: 404 `not_found` (an update of
/// an absent record), 409 `conflict` (a create of an existing one, or an update that kept
/// losing its compare-and-swap), 500 `internal` (an unreadable record), or the store's.
impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Store(e) => e.into(),
            RecordError::Unreadable { .. } => ApiError::internal(e.to_string()),
            RecordError::Absent(_) => ApiError::not_found(e.to_string()),
            RecordError::Exists(_) | RecordError::Contended(_) => {
                ApiError::conflict("conflict", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
