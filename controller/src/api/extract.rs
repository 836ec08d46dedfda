//! Request extractors that fail with our JSON errors: [`JsonBody`], [`Path`], [`Query`],
//! [`Caller`] (Bearer authentication) and [`ClientAddr`] (the client's IP,
//! X-Forwarded-For only behind trusted proxies). Handlers use these, never axum's own
//! `Path`/`Query`/`Json` extractors, whose rejections are plain text.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::credentials::{self, TokenClaims, TokenError, KEY_PREFIX, TOKEN_PREFIX};
use crate::model::{KeyRecord, RateLimit, Scope, TenantRecord};

/// Largest request body accepted (413 `body_too_large` above).
pub const BODY_LIMIT: usize = 16 * 1024;

/// A JSON body. An empty body reads as `{}`. Syntax errors are 400 `invalid_json`, a body
/// of the wrong shape (unknown field, wrong type) 400 `invalid_request`, and a body over
/// [`BODY_LIMIT`] 413 `body_too_large` — never axum's plain-text rejections.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The raw body, for handlers that authenticate before parsing (same limit and errors as
/// [`JsonBody`]).
#[derive(Debug, Clone)]
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::body_too_large(BODY_LIMIT),
                _ => ApiError::invalid_json(rejection.body_text()),
            })
    }
}

/// Parses a request body (see [`JsonBody`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = match bytes.iter().all(u8::is_ascii_whitespace) {
        true => b"{}",
        false => bytes,
    };
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid_request(e.to_string()),
        _ => ApiError::invalid_json(e.to_string()),
    })
}

/// Path parameters. A parameter that is not UTF-8 once percent-decoded (`%FF`) or does
/// not parse is 400 `invalid_request` (axum's rejection is plain text).
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| match rejection.status() {
                StatusCode::BAD_REQUEST => {
                    ApiError::invalid_request(format!("path: {}", rejection.body_text()))
                }
                // A route without the parameters the handler wants: our bug, not the
                // client's.
                _ => ApiError::internal(rejection.body_text()),
            })
    }
}

/// A query string deserialized into `T` (`serde_urlencoded`, as axum's `Query`). A
/// malformed or repeated parameter is 400 `invalid_request`.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                ApiError::invalid_request(format!("query: {}", rejection.body_text()))
            })
    }
}

/// The value of `name` in a query string (no percent-decoding: the values read this way
/// are names of `[a-z0-9_-]`).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    (query?.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API key: its id (SHA-256 hex) and record.
    Key { id: String, record: Arc<KeyRecord> },
    /// A client token: good for `POST /v1/ice-servers` only, for one user.
    Token(TokenClaims),
}

/// An authenticated caller (`Authorization: Bearer <api key | client token>`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub credential: Credential,
    /// The caller's tenant (always set for client tokens and ice-scoped keys).
    pub tenant: Option<Arc<TenantRecord>>,
}

impl Caller {
    /// Whether the caller holds `scope` (client tokens hold only `ice`).
    pub fn has(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::Key { record, .. } => record.has(scope),
            Credential::Token(_) => scope == Scope::Ice,
        }
    }

    /// 403 `forbidden_scope` unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match self.has(scope) {
            true => Ok(()),
            false => Err(ApiError::forbidden_scope(scope_name(scope))),
        }
    }

    /// The caller's tenant, required (ice-scoped keys always have one).
    pub fn tenant(&self) -> Result<&Arc<TenantRecord>, ApiError> {
        self.tenant
            .as_ref()
            .ok_or_else(|| ApiError::forbidden_scope(scope_name(Scope::Ice)))
    }

    /// The rate-limit bucket and its limit: per key, or per tenant and user for tokens.
    pub fn rate_limit(&self, default: RateLimit) -> (String, RateLimit) {
        let tenant_limit = self.tenant.as_ref().and_then(|t| t.limits.rate_limit);
        match &self.credential {
            Credential::Key { id, record } => (
                format!("k:{id}"),
                record.rate_limit.or(tenant_limit).unwrap_or(default),
            ),
            Credential::Token(c) => (
                format!("t:{}:{}", c.t, c.u),
                tenant_limit.unwrap_or(default),
            ),
        }
    }
}

pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Ice => "ice",
        Scope::ClientIp => "client_ip",
        Scope::Admin => "admin",
        Scope::Node => "node",
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(&parts.headers, state)
    }
}

/// Reads the Bearer credential and resolves it against the key and tenant snapshots; a
/// tenant's credential sent with an `Origin` must come from one of the tenant's
/// `cors_origins` ([`super::cors::check_origin`]).
pub fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Caller, ApiError> {
    let caller = resolve(headers, state)?;
    if let Some(tenant) = &caller.tenant {
        super::cors::check_origin(headers, tenant)?;
    }
    Ok(caller)
}

fn resolve(headers: &HeaderMap, state: &AppState) -> Result<Caller, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "missing_credentials",
            "send Authorization: Bearer <API key or client token>",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?.trim();
    let (scheme, bearer) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let bearer = bearer.trim();
    let invalid = |m: &str| ApiError::unauthorized("invalid_key", m);
    let tenants = state.snapshots.tenants.snapshot();
    if bearer.starts_with(KEY_PREFIX) {
        let id = credentials::key_hash(bearer);
        let keys = state.snapshots.keys.snapshot();
        let record = keys
            .get(&id)
            .cloned()
            .ok_or_else(|| invalid("unknown API key"))?;
        let tenant = match &record.tenant {
            None => None,
            Some(t) => Some(
                (tenants.get(t).cloned()).ok_or_else(|| invalid("the key's tenant was deleted"))?,
            ),
        };
        return Ok(Caller {
            credential: Credential::Key { id, record },
            tenant,
        });
    }
    if bearer.starts_with(TOKEN_PREFIX) {
        let claims = credentials::token_claims(bearer).map_err(|e| invalid(&e.to_string()))?;
        let tenant = tenants
            .get(&claims.t)
            .cloned()
            .ok_or_else(|| invalid(&TokenError::UnknownTenant.to_string()))?;
        let now = state.unix_now();
        return match credentials::verify_token(bearer, &tenant.token_key, now) {
            Ok(claims) if claims.r.is_some() => Err(invalid(
                "a room token only opens GET /v1/signal; use a client token here",
            )),
            Ok(claims) => Ok(Caller {
                credential: Credential::Token(claims),
                tenant: Some(tenant),
            }),
            Err(TokenError::Expired) => Err(ApiError::unauthorized(
                "expired_token",
                "the client token expired; mint a new one",
            )),
            Err(e) => Err(invalid(&e.to_string())),
        };
    }
    Err(invalid("not an API key (nxk_…) or client token (nxt_…)"))
}

/// A caller with the `admin` scope (403 `forbidden_scope` otherwise).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(&parts.headers, state)?;
        caller.require(Scope::Admin)?;
        Ok(Admin(caller))
    }
}

/// A caller with the `node` scope: a relay's edge agent.
#[derive(Debug, Clone)]
pub struct Node(pub Caller);

impl FromRequestParts<AppState> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(&parts.headers, state)?;
        caller.require(Scope::Node)?;
        Ok(Node(caller))
    }
}

/// Where the client is connecting from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The TCP peer (absent when the router is called in-process).
    pub peer: Option<IpAddr>,
    /// The client: the peer, or the right-most untrusted X-Forwarded-For entry when the
    /// peer is a trusted proxy.
    pub ip: Option<IpAddr>,
    /// `true` when `ip` came from X-Forwarded-For.
    pub forwarded: bool,
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = (parts.extensions.get::<ConnectInfo<SocketAddr>>())
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        Ok(client_addr(
            peer,
            &parts.headers,
            &state.options.trusted_proxies,
        ))
    }
}

/// X-Forwarded-For is believed only when the peer is in `trusted`: then the client is the
/// right-most entry that is not itself a trusted proxy (entries left of it could be
/// forged by the client). A malformed entry ends the walk at the peer.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let plain = ClientAddr {
        peer,
        ip: peer,
        forwarded: false,
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !peer.as_ref().is_some_and(is_trusted) {
        return plain;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return plain;
        };
        hops.extend(value.split(',').map(str::trim).filter(|h| !h.is_empty()));
    }
    let mut leftmost = None;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return plain;
        };
        if !is_trusted(&ip) {
            return ClientAddr {
                peer,
                ip: Some(ip),
                forwarded: true,
            };
        }
        leftmost = Some(ip);
    }
    match leftmost {
        Some(ip) => ClientAddr {
            peer,
            ip: Some(ip),
            forwarded: true,
        },
        None => plain,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let forged = xff(&["198.51.100.7"]);
        let untrusted = client_addr(Some(ip("203.0.113.9")), &forged, &trusted);
        assert_eq!(untrusted.ip, Some(ip("203.0.113.9")));
        assert!(!untrusted.forwarded);

        // Client-supplied junk on the left is skipped: the right-most untrusted hop wins.
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.0.0.2"]);
        let a = client_addr(Some(ip("10.0.0.1")), &h, &trusted);
        assert_eq!((a.ip, a.forwarded), (Some(ip("198.51.100.7")), true));

        let h = xff(&["[2001:db8::5]:443"]);
        let a = client_addr(Some(ip("10.0.0.1")), &h, &trusted);
        assert_eq!(a.ip, Some(ip("2001:db8::5")));

        let h = xff(&["not-an-ip"]);
        let a = client_addr(Some(ip("10.0.0.1")), &h, &trusted);
        assert_eq!((a.ip, a.forwarded), (Some(ip("10.0.0.1")), false));

        let a = client_addr(None, &forged, &trusted);
        assert_eq!(a.ip, None);
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct B {
            #[allow(dead_code)]
            a: Option<u32>,
        }
        assert!(parse_json::<B>(b"").is_ok());
        assert_eq!(
            parse_json::<B>(b"{").map_err(|e| e.code).err(),
            Some("invalid_json")
        );
        assert_eq!(
            parse_json::<B>(br#"{"b":1}"#).map_err(|e| e.code).err(),
            Some("invalid_request")
        );
    }
}
