//! Browser origins: the one origin rule ([`check_origin`]) and CORS for
//! `POST /v1/ice-servers`, the one endpoint browsers call over HTTP (with a client token).
//!
//! **The rule.** A request that carries `Origin` (browsers send it on every cross-origin
//! request and on every WebSocket handshake) is served only when that origin is in the
//! `cors_origins` of the tenant its credential belongs to (exact match of
//! `scheme://host[:port]`, case-insensitive); otherwise it is refused with 403
//! `forbidden_origin` before anything is minted. It applies to every tenant credential —
//! client tokens, room tokens (`GET /v1/signal`, checked before the upgrade) and tenant
//! API keys (a server sends none, but a key pasted into a page is held to the same list).
//! A request without `Origin` (a server, curl) is not refused for lacking one. CORS
//! headers alone would not do: they only stop a page from *reading* an answer after the
//! credentials were issued. Global keys (admin, node) have no tenant and no list.
//!
//! **CORS headers.** An answer carries `Access-Control-Allow-Origin: <origin>` only when
//! the request's `Origin` is in the authenticated tenant's `cors_origins`. Never `*`,
//! never `Access-Control-Allow-Credentials` (the token travels in `Authorization`, not in
//! cookies). A preflight carries no credential, so it is accepted when *some* tenant
//! allows the origin; the real request is then checked against its own tenant. Errors
//! before authentication (401) carry the header on the same any-tenant rule, so the page
//! can read why it failed.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::model::TenantRecord;

/// Preflight cache lifetime told to browsers (seconds).
const MAX_AGE: u32 = 600;

/// Checks and normalises an origin for a tenant's list: `http(s)://host[:port]`, no path.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let lower = origin.trim().to_ascii_lowercase();
    let rest = (lower.strip_prefix("https://"))
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("origin {origin:?} must start with https:// or http://"))?;
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    match ok {
        true => Ok(lower),
        false => Err(format!(
            "origin {origin:?} must be scheme://host[:port] (no path, no '*')"
        )),
    }
}

/// 403 `forbidden_origin`.
fn forbidden_origin(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message)
}

/// The origin rule (see the module docs): `Ok` when the request has no `Origin`, or
/// exactly one that `tenant` lists; 403 `forbidden_origin` otherwise.
pub fn check_origin(headers: &HeaderMap, tenant: &TenantRecord) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let Some(value) = values.next() else {
        return Ok(());
    };
    let origin = value.to_str().ok().map(str::to_ascii_lowercase);
    let allowed =
        values.next().is_none() && origin.is_some_and(|o| tenant.cors_origins.contains(&o));
    match allowed {
        true => Ok(()),
        false => Err(forbidden_origin(
            "this origin is not in the tenant's cors_origins",
        )),
    }
}

fn request_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    Some(origin.to_ascii_lowercase())
}

fn any_tenant_allows(state: &AppState, origin: &str) -> bool {
    let tenants = state.snapshots.tenants.snapshot();
    let allowed = tenants
        .entries
        .values()
        .any(|t| t.cors_origins.iter().any(|o| o == origin));
    allowed
}

/// Adds the CORS headers to an ice-servers answer: checked against `tenant` when the
/// caller authenticated, against every tenant otherwise.
pub fn decorate(
    state: &AppState,
    response: &mut Response,
    headers: &HeaderMap,
    tenant: Option<&TenantRecord>,
) {
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = request_origin(headers) else {
        return;
    };
    let allowed = match tenant {
        Some(t) => t.cors_origins.contains(&origin),
        None => any_tenant_allows(state, &origin),
    };
    if !allowed {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
}

/// `OPTIONS /v1/ice-servers`: the CORS preflight.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let allow = [(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"))];
    let Some(origin) = request_origin(&headers) else {
        return (StatusCode::NO_CONTENT, allow).into_response();
    };
    let method_ok = match headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        None => true,
        Some(m) => m.as_bytes() == Method::POST.as_str().as_bytes(),
    };
    if !method_ok || !any_tenant_allows(&state, &origin) {
        return forbidden_origin("this origin is not allowed by any tenant's cors_origins")
            .into_response();
    }
    let Ok(origin) = HeaderValue::from_str(&origin) else {
        return ApiError::invalid_request("bad Origin header").into_response();
    };
    let headers = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        ),
        (header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE)),
        (header::VARY, HeaderValue::from_static("Origin")),
    ];
    (StatusCode::NO_CONTENT, headers).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            normalize_origin("https://App.Example.com").as_deref(),
            Ok("https://app.example.com")
        );
        assert!(normalize_origin("http://localhost:5173").is_ok());
        for bad in [
            "*",
            "https://a.com/",
            "https://a.com/path",
            "ftp://a.com",
            "https://*.a.com",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }
}
