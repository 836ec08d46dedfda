//! `GET /v1/admin/audit`, and the layer that records every admin mutation
//! ([`crate::audit`]).

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::extract::{authenticate, Admin, ClientAddr, Credential, Query};
use crate::app::AppState;
use crate::audit::{self, AuditEntry};
use crate::model::Scope;

/// Largest answer body read to record it (admin answers are far smaller).
const BODY_LIMIT: usize = 4 << 20;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Unix seconds: entries at or after it (default: all kept).
    #[serde(default)]
    since: u64,
    /// Most entries returned, newest first (default 100, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/admin/audit?since=&limit=`: the newest entries first.
pub async fn list_audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_request("limit: 1 to 1000"));
    }
    let entries = audit::list(&state, q.since.saturating_mul(1000), limit).await?;
    Ok(Json(entries))
}

/// Records admin mutations that succeed (see [`crate::audit`]); every other request passes
/// untouched.
pub async fn audited(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mutation = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && request.uri().path().starts_with("/v1/admin/");
    // Only an admin key's calls: others are refused by the handler and write nothing here.
    let key = mutation
        .then(|| authenticate(request.headers(), &state).ok())
        .flatten()
        .filter(|c| c.require(Scope::Admin).is_ok())
        .and_then(|c| match c.credential {
            Credential::Key { id, record } => Some((id, record.name.clone())),
            Credential::Token(_) => None,
        });
    let Some((key_id, key_name)) = key else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let from = (ClientAddr::from_request_parts(&mut parts, &state)
        .await
        .ok())
    .and_then(|a| a.ip)
    .map(|ip| ip.to_string());
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let before = audit::resource(&state, &path);
    let response = next.run(Request::from_parts(parts, body)).await;
    if !response.status().is_success() {
        return response;
    }
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    // The resource as it is now; for a path that names none (a creation), the answer.
    let after = match audit::resource(&state, &path) {
        Value::Null if method != "DELETE" => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        resource => resource,
    };
    let entry = AuditEntry {
        at_ms: state.unix_now_ms(),
        key_id,
        key_name,
        method,
        path,
        status,
        from,
        before,
        after,
    };
    if let Err(e) = audit::record(&state, entry).await {
        tracing::warn!(error = %e, "audit log entry not written");
        state.metrics.audit_write_failed();
    }
    Response::from_parts(parts, Body::from(bytes))
}
