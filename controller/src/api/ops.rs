//! `/healthz`, `/readyz`, `/metrics`, `/v1/openapi.json`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ClientAddr;
use super::openapi;
use crate::app::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 once the snapshot is loaded and younger than `max_snapshot_age`
/// and the store answered within that time; 503 `not_ready` otherwise (never loaded, or the
/// store unreachable or silent for too long). Both ages are in the answer.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let age = state.snapshot_age();
    let answered = state.store_health.answer_age();
    state.metrics.set_snapshot_age(age);
    state.metrics.set_store_answer_age(answered);
    let max = state.options.max_snapshot_age;
    let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let Some(age) = age else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store snapshot is not loaded yet",
        )
        .into_response();
    };
    if age > max {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "the store snapshot is {:.1} s old (limit {} s): the store is unreachable",
                age.as_secs_f64(),
                max.as_secs()
            ),
        )
        .into_response();
    }
    // The first probe runs at start; until it answers, the loaded snapshot speaks for the
    // store.
    if let Some(silent) = answered.filter(|a| *a > max) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "the store has not answered for {:.1} s (limit {} s)",
                silent.as_secs_f64(),
                max.as_secs()
            ),
        )
        .into_response();
    }
    let mut ready = json!({
        "status": "ready",
        "snapshot_age_seconds": age.as_secs_f64(),
        "store_answer_age_seconds": seconds(answered),
    });
    // The DNS server answers from the same snapshot: ready with it, and its serial says
    // which registry revision its answers are from.
    if let Some(dns) = state.dns.get() {
        ready["dns"] = json!({
            "listen": dns.listen.to_string(),
            "zone": dns.zone.apex.to_string(),
            "serial": crate::dns::zone::Zone::serial(&state.view()),
            "dnssec_ds": dns.ds,
        });
    }
    Json(ready).into_response()
}

/// `GET /metrics`: Prometheus text, for peers in `metrics_allow` (and in-process calls).
pub async fn metrics(State(state): State<AppState>, addr: ClientAddr) -> Response {
    if let Some(ip) = addr.peer {
        if !state.options.metrics_allow.iter().any(|n| n.contains(&ip)) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "metrics are served to allowed networks only",
            )
            .into_response();
        }
    }
    state.metrics.set_snapshot_age(state.snapshot_age());
    state
        .metrics
        .set_store_answer_age(state.store_health.answer_age());
    let body = state.metrics.render();
    let content_type = HeaderValue::from_static(nexrtc_metrics::CONTENT_TYPE);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(openapi::document())
}
