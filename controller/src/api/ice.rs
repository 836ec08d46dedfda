//! `POST /v1/ice-servers` and `POST /v1/client-tokens`: the public API.
//!
//! Answered from memory: the key and tenant come from their snapshots, the relays from the
//! current [`crate::state::View`]'s ranker; nothing here touches the store.
//!
//! **TTL.** `ttl` (seconds) defaults to the tenant's `default_ttl` (3600) and must be an
//! integer in `1..=max_ttl` (86400 by default); anything else is 400 `invalid_ttl` rather
//! than silently clamped, so a caller never holds credentials shorter-lived than it asked
//! for without knowing.

use std::net::IpAddr;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cors;
use super::error::ApiError;
use super::extract::{authenticate, parse_json, BodyBytes, Caller, ClientAddr, Credential};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::credentials::{self, TokenClaims, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
use crate::model::{Scope, TenantRecord};

/// The request body (every field optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceRequest {
    /// Credential lifetime in seconds.
    pub ttl: Option<Value>,
    /// The user part of the TURN username (default: a random id).
    pub user: Option<String>,
    /// Put this region first if it has relays.
    pub region: Option<String>,
    /// The end client's address (only for keys with the `client_ip` scope).
    pub client_ip: Option<String>,
}

/// One `RTCIceServer`.
#[derive(Debug, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The 201 answer: `iceServers` for `RTCPeerConnection`, plus the draft-uberti fields.
#[derive(Debug, Serialize)]
pub struct IceResponse {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    pub ttl: u64,
    pub expires_at: String,
    pub regions: Vec<String>,
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    /// The QUIC relays of the same selection, in the same order, as RFC 9298 URI templates
    /// for a CONNECT-UDP client (`Proxy-Authorization: Basic base64(username:password)`);
    /// absent when none offers one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_udp: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Value>,
}

/// `POST /v1/ice-servers`.
pub async fn ice_servers(
    State(state): State<AppState>,
    addr: ClientAddr,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Response {
    let caller = match authenticate(&headers, &state) {
        Ok(c) => c,
        Err(e) => {
            let mut response = e.into_response();
            cors::decorate(&state, &mut response, &headers, None);
            return response;
        }
    };
    let mut response = match issue(&state, &caller, addr, query.as_deref(), &body) {
        Ok(answer) => {
            let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
            (StatusCode::CREATED, no_store, Json(answer)).into_response()
        }
        Err(e) => e.into_response(),
    };
    cors::decorate(&state, &mut response, &headers, caller.tenant.as_deref());
    response
}

/// The end client's address and where it came from: `client_ip` from the body (keys with
/// the `client_ip` scope only), else the request's peer (or its `X-Forwarded-For` client
/// behind a trusted proxy).
pub(super) fn client_address(
    caller: &Caller,
    addr: ClientAddr,
    client_ip: Option<&str>,
) -> Result<(Option<IpAddr>, &'static str), ApiError> {
    Ok(match client_ip {
        Some(ip) => {
            caller.require(Scope::ClientIp)?;
            let ip: IpAddr = ip.trim().parse().map_err(|_| {
                ApiError::bad_request("invalid_client_ip", format!("{ip:?} is not an IP address"))
            })?;
            (Some(ip.to_canonical()), "client_ip")
        }
        None if addr.forwarded => (addr.ip, "forwarded"),
        None => (addr.ip, if addr.ip.is_some() { "peer" } else { "unknown" }),
    })
}

/// Checks the rate limit of an authenticated caller.
pub(super) fn rate_limit(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let (bucket, limit) = caller.rate_limit(state.options.default_rate_limit);
    state
        .limiter
        .check(&bucket, limit)
        .map_err(ApiError::rate_limited)
}

fn wants_explain(query: Option<&str>) -> bool {
    let pairs = query.unwrap_or("").split('&');
    pairs
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .any(|(k, v)| k == "explain" && matches!(v, "1" | "true" | ""))
}

fn ttl_of(requested: Option<&Value>, tenant: &TenantRecord) -> Result<u64, ApiError> {
    let max = u64::from(tenant.limits.max_ttl);
    match requested {
        None => Ok(u64::from(tenant.limits.default_ttl).min(max)),
        Some(v) => v.as_u64().filter(|t| (1..=max).contains(t)).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_ttl",
                format!("ttl must be an integer number of seconds from 1 to {max}"),
            )
        }),
    }
}

fn issue(
    state: &AppState,
    caller: &Caller,
    addr: ClientAddr,
    query: Option<&str>,
    body: &[u8],
) -> Result<IceResponse, ApiError> {
    caller.require(Scope::Ice)?;
    let tenant = caller.tenant()?;
    rate_limit(state, caller)?;
    let req: IceRequest = parse_json(body)?;
    let explain = wants_explain(query);
    if explain {
        caller.require(Scope::Admin)?;
    }
    let ttl = ttl_of(req.ttl.as_ref(), tenant)?;
    let user = match (&caller.credential, req.user) {
        (Credential::Token(claims), Some(u)) if u != claims.u => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_scope",
                "this client token is for another user",
            ))
        }
        (Credential::Token(claims), _) => claims.u.clone(),
        (Credential::Key { .. }, Some(u)) => u,
        (Credential::Key { .. }, None) => credentials::random_id(),
    };
    credentials::validate_user(&user).map_err(ApiError::invalid_request)?;
    let view = state.view();
    if let Some(region) = &req.region {
        if !view.ranker.knows_region(region) {
            return Err(ApiError::unknown_region(region));
        }
    }
    let (client_ip, source) = client_address(caller, addr, req.client_ip.as_deref())?;
    let placed = state.place(client_ip);
    let (location, network, client) = (placed.location(), placed.network, placed.client());
    let selection = placed.select(&view, req.region.as_deref());

    let secret = tenant
        .secrets
        .first()
        .ok_or_else(|| ApiError::internal("tenant has no secret"))?;
    let expiry = state.unix_now() + ttl;
    let creds = credentials::turn_credentials(&secret.value, &tenant.name, &user, expiry);

    let mut ice_servers = Vec::new();
    let mut uris = Vec::new();
    let mut connect_udp = Vec::new();
    let mut regions = Vec::new();
    let mut stun = None;
    for region in &selection.regions {
        for choice in &region.relays {
            let Some(relay) = view.relays.get(&*choice.id) else {
                continue;
            };
            let urls = relay.turn_urls();
            if urls.is_empty() {
                continue;
            }
            stun = stun.or_else(|| relay.stun_url());
            if !regions.iter().any(|r: &String| **r == *region.name) {
                regions.push(region.name.to_string());
            }
            uris.extend(urls.iter().cloned());
            connect_udp.extend(relay.connect_udp_template());
            ice_servers.push(IceServer {
                urls,
                username: Some(creds.username.clone()),
                credential: Some(creds.password.clone()),
            });
        }
    }
    if ice_servers.is_empty() {
        return Err(ApiError::no_relays());
    }
    if let Some(stun) = stun {
        ice_servers.insert(
            0,
            IceServer {
                urls: vec![stun],
                username: None,
                credential: None,
            },
        );
    }
    state.metrics.credentials_issued(&tenant.name);
    let explain = explain.then(|| {
        json!({
            "client": {
                "source": source,
                "location": location,
                "network": network.map(|n| n.to_string()),
                "measured": client.measured,
            },
            "origin": selection.origin,
            "degraded": selection.degraded,
            "hint_applied": selection.hint_applied,
            "selection": selection.regions,
            "ranking": view.ranker.explain(client),
            "model": view.ranker.model(),
            "issues": view.ranker.issues().iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        })
    });
    Ok(IceResponse {
        ice_servers,
        ttl,
        expires_at: rfc3339(expiry),
        regions,
        username: creds.username,
        password: creds.password,
        uris,
        connect_udp,
        explain,
    })
}

/// `POST /v1/client-tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub user: String,
    /// Seconds, 1..=600 (default 300).
    pub ttl: Option<Value>,
}

/// `POST /v1/client-tokens` answer.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub user: String,
    pub ttl: u64,
    pub expires_at: String,
}

/// `POST /v1/client-tokens`: an app backend (API key with scope `ice`) mints a token a
/// browser presents to `POST /v1/ice-servers` for one user.
pub async fn client_tokens(
    State(state): State<AppState>,
    caller: Caller,
    BodyBytes(body): BodyBytes,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    if !matches!(caller.credential, Credential::Key { .. }) {
        return Err(ApiError::forbidden_scope("ice (API key)"));
    }
    caller.require(Scope::Ice)?;
    let tenant = caller.tenant()?.clone();
    rate_limit(&state, &caller)?;
    let req: TokenRequest = parse_json(&body)?;
    credentials::validate_user(&req.user).map_err(ApiError::invalid_request)?;
    let ttl = match &req.ttl {
        None => DEFAULT_TOKEN_TTL,
        Some(v) => (v.as_u64())
            .filter(|t| (1..=MAX_TOKEN_TTL).contains(t))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_ttl",
                    format!("ttl must be an integer number of seconds from 1 to {MAX_TOKEN_TTL}"),
                )
            })?,
    };
    let now = state.unix_now();
    let exp = now + ttl;
    let claims = TokenClaims {
        v: 1,
        t: tenant.name.clone(),
        u: req.user.clone(),
        r: None,
        exp,
        iat: Some(now),
    };
    let token = credentials::sign_token(&tenant.token_key, &claims)
        .ok_or_else(|| ApiError::internal("tenant token key is corrupt"))?;
    state.metrics.token_issued(&tenant.name);
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            user: req.user,
            ttl,
            expires_at: rfc3339(exp),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_flag() {
        assert!(wants_explain(Some("explain=1")));
        assert!(wants_explain(Some("a=b&explain=true")));
        assert!(wants_explain(Some("explain")));
        assert!(!wants_explain(Some("explain=0")));
        assert!(!wants_explain(None));
    }
}
