//! Signaling over HTTP: `POST /v1/rooms/{room}/tokens` mints room tokens, `GET /v1/signal`
//! checks one and upgrades to the WebSocket served by [`crate::signal::conn`].
//!
//! **Room tokens** are client tokens ([`crate::credentials`]) with a room claim, signed
//! with the tenant's `token_key`: minted by an app backend with an API key (scope `ice`)
//! for one participant of one room, `ttl` 1..=3600 s (default 600).
//!
//! **The upgrade** is refused before switching protocols, with the usual JSON errors:
//! browsers cannot set headers on a WebSocket, so the token comes in the `token` query
//! parameter (`Authorization: Bearer` works too). 400 `invalid_room`; 401
//! `missing_credentials`, `invalid_token`, `expired_token`, `revoked`; 403 `wrong_room`
//! (the token is for another room), `forbidden_origin` (the handshake's `Origin` is not
//! in the tenant's `cors_origins`: [`super::cors::check_origin`], as on the HTTP API);
//! 307 `wrong_replica` with `Location` (and `location` in the body) when another replica
//! hosts the room; 426 `upgrade_required` for a plain GET.
//!
//! **After the upgrade** the connection keeps its token honest ([`conn::Credentials`]):
//! it closes when the token expires unless the client sent `refresh` with a new token,
//! which [`verify`] checks exactly as at connect (with the handshake's `Origin`), and
//! when a revocation covers it.

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cors;
use super::error::ApiError;
use super::extract::{parse_json, BodyBytes, Caller, Credential};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::credentials::{self, TokenClaims, TokenError};
use crate::credentials::{DEFAULT_ROOM_TOKEN_TTL, MAX_ROOM_NAME_LEN, MAX_ROOM_TOKEN_TTL};
use crate::model::Scope;
use crate::signal::{conn, Grant, Owner, RoomKey};

/// Path of the signaling endpoint.
pub const SIGNAL_PATH: &str = "/v1/signal";

/// `POST /v1/rooms/{room}/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomTokenRequest {
    /// Participant id (default: a random id).
    pub participant: Option<String>,
    /// Seconds, 1..=3600 (default 600).
    pub ttl: Option<Value>,
}

/// `POST /v1/rooms/{room}/tokens` answer.
#[derive(Debug, Serialize)]
pub struct RoomTokenResponse {
    pub token: String,
    pub room: String,
    pub participant: String,
    pub ttl: u64,
    pub expires_at: String,
    /// Where to open the WebSocket: a path on this replica, or an absolute URL when
    /// another replica hosts the room. Resolve against the API's base URL, switch the
    /// scheme to ws(s), and add `&token=…`.
    pub signal_url: String,
}

fn invalid_name(code: &'static str, what: &str) -> ApiError {
    ApiError::bad_request(
        code,
        format!("{what} must be 1 to {MAX_ROOM_NAME_LEN} characters of A-Z, a-z, 0-9 and _ . -"),
    )
}

/// `POST /v1/rooms/{room}/tokens`.
pub async fn room_tokens(
    State(state): State<AppState>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
    caller: Caller,
    BodyBytes(body): BodyBytes,
) -> Result<(StatusCode, Json<RoomTokenResponse>), ApiError> {
    if !matches!(caller.credential, Credential::Key { .. }) {
        return Err(ApiError::forbidden_scope("ice (API key)"));
    }
    caller.require(Scope::Ice)?;
    let tenant = caller.tenant()?.clone();
    let (bucket, limit) = caller.rate_limit(state.options.default_rate_limit);
    (state.limiter.check(&bucket, limit)).map_err(ApiError::rate_limited)?;
    let room = match room {
        Ok(Path(room)) if credentials::validate_room_name(&room) => room,
        _ => return Err(invalid_name("invalid_room", "room")),
    };
    let req: RoomTokenRequest = parse_json(&body)?;
    let participant = req.participant.unwrap_or_else(credentials::random_id);
    if !credentials::validate_room_name(&participant) {
        return Err(invalid_name("invalid_participant", "participant"));
    }
    let ttl = match &req.ttl {
        None => DEFAULT_ROOM_TOKEN_TTL,
        Some(v) => (v.as_u64())
            .filter(|t| (1..=MAX_ROOM_TOKEN_TTL).contains(t))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_ttl",
                    format!(
                        "ttl must be an integer number of seconds from 1 to {MAX_ROOM_TOKEN_TTL}"
                    ),
                )
            })?,
    };
    let now = state.unix_now();
    let exp = now + ttl;
    let claims = TokenClaims {
        v: 1,
        t: tenant.name.clone(),
        u: participant.clone(),
        r: Some(room.clone()),
        exp,
        iat: Some(now),
    };
    let token = credentials::sign_token(&tenant.token_key, &claims)
        .ok_or_else(|| ApiError::internal("tenant token key is corrupt"))?;
    state.metrics.token_issued(&tenant.name);
    let path = format!("{SIGNAL_PATH}?room={room}");
    let signal_url = match state.replicas.owner(&tenant.name, &room) {
        Owner::Local => path,
        Owner::Remote(base) => format!("{base}{path}"),
    };
    Ok((
        StatusCode::CREATED,
        Json(RoomTokenResponse {
            token,
            room,
            participant,
            ttl,
            expires_at: rfc3339(exp),
            signal_url,
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct SignalQuery {
    room: Option<String>,
    token: Option<String>,
}

/// `GET /v1/signal?room=R&token=T`.
pub async fn signal(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match admit(&state, &uri, &headers) {
        Ok(Admitted::Here(grant)) => {
            let Ok(upgrade) = upgrade else {
                return ApiError::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "upgrade_required",
                    "GET /v1/signal is a WebSocket endpoint (Upgrade: websocket)",
                )
                .into_response();
            };
            let hub = state.rooms.clone();
            let shutdown = state.closing();
            let max = hub.options().max_frame;
            let credentials = credentials_of(&state, grant, &headers);
            upgrade
                .max_message_size(max)
                .max_frame_size(max)
                .on_upgrade(move |socket| conn::serve(socket, hub, credentials, shutdown))
        }
        Ok(Admitted::Elsewhere(location)) => wrong_replica(location),
        Err(e) => e.into_response(),
    }
}

enum Admitted {
    Here(Grant),
    /// The URL of the replica hosting the room (with the same query).
    Elsewhere(String),
}

fn admit(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<Admitted, ApiError> {
    let Query(query) = Query::<SignalQuery>::try_from_uri(uri).unwrap_or_default();
    let room = (query.room)
        .filter(|r| credentials::validate_room_name(r))
        .ok_or_else(|| invalid_name("invalid_room", "room (query parameter)"))?;
    let token = query.token.or_else(|| bearer(headers)).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_credentials",
            "send the room token as ?token=… or Authorization: Bearer",
        )
    })?;
    let grant = verify(state, &token, &room, headers)?;
    if let Owner::Remote(base) = state.replicas.owner(&grant.key.tenant, &room) {
        let query = uri.query().unwrap_or_default();
        return Ok(Admitted::Elsewhere(format!("{base}{SIGNAL_PATH}?{query}")));
    }
    Ok(Admitted::Here(grant))
}

/// The checks of a room token for `room`, at connect and at every `refresh`: signature and
/// expiry under its tenant's key, the handshake's `Origin` against the tenant's list, the
/// room claim, and the revocations.
pub fn verify(
    state: &AppState,
    token: &str,
    room: &str,
    headers: &HeaderMap,
) -> Result<Grant, ApiError> {
    let invalid = |m: &str| ApiError::unauthorized("invalid_token", m);
    let claims = credentials::token_claims(token).map_err(|e| invalid(&e.to_string()))?;
    let tenants = state.snapshots.tenants.snapshot();
    let tenant =
        (tenants.get(&claims.t)).ok_or_else(|| invalid(&TokenError::UnknownTenant.to_string()))?;
    let claims = match credentials::verify_token(token, &tenant.token_key, state.unix_now()) {
        Ok(claims) => claims,
        Err(TokenError::Expired) => {
            return Err(ApiError::unauthorized(
                "expired_token",
                "the room token expired; mint a new one",
            ))
        }
        Err(e) => return Err(invalid(&e.to_string())),
    };
    cors::check_origin(headers, tenant)?;
    let Some(token_room) = claims.r else {
        return Err(invalid(
            "not a room token (mint one with POST /v1/rooms/{room}/tokens)",
        ));
    };
    if token_room != room {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_room",
            "this room token is for another room",
        ));
    }
    let grant = Grant {
        key: RoomKey {
            tenant: claims.t,
            room: token_room,
        },
        participant: claims.u,
        issued_at: claims.iat.unwrap_or(0),
        expires_at: claims.exp,
    };
    if grant.is_revoked(&state.snapshots.room_revoked.snapshot()) {
        return Err(ApiError::unauthorized(
            "revoked",
            "this room token was revoked",
        ));
    }
    Ok(grant)
}

/// What the connection keeps: its grant, and [`verify`] for `refresh` with the same room
/// and the handshake's `Origin`.
fn credentials_of(state: &AppState, grant: Grant, headers: &HeaderMap) -> conn::Credentials {
    let mut origin = HeaderMap::new();
    for value in headers.get_all(header::ORIGIN) {
        origin.append(header::ORIGIN, value.clone());
    }
    let (owner, key) = (state.clone(), grant.key.clone());
    let moved: conn::Moved = Box::new(move || match owner.replicas.owner(&key.tenant, &key.room) {
        Owner::Local => None,
        Owner::Remote(base) => Some(format!("{base}{SIGNAL_PATH}?room={}", key.room)),
    });
    let (checker, room) = (state.clone(), grant.key.room.clone());
    let verify: conn::Verify = Box::new(move |token| {
        verify(&checker, token, &room, &origin).map_err(|e| format!("{}: {}", e.code, e.message))
    });
    conn::Credentials {
        grant,
        verify,
        revoked: state.snapshots.room_revoked.subscribe(),
        clock: state.options.clock,
        replicas: state.replicas.subscribe(),
        moved,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// 307 to the replica hosting the room (clients that cannot follow it read `location`).
fn wrong_replica(location: String) -> Response {
    let body = json!({
        "code": "wrong_replica",
        "message": "another controller replica hosts this room; connect there",
        "location": location,
    });
    let mut response = (StatusCode::TEMPORARY_REDIRECT, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
