//! The JSON records the controller keeps in the store (ARCHITECTURE.md, "Store layout").
//!
//! Keys are relative to the store's prefix (`/nexrtc/v1/` in etcd):
//!
//! | key | record | lifetime |
//! |---|---|---|
//! | `relays/<region>/<node>` | [`RelayRecord`] | under the relay's lease (TTL 5 s by default) |
//! | `regions/<region>` | [`nexrtc_geo::Region`] | until deleted |
//! | `tenants/<tenant>` | [`TenantRecord`] | until deleted |
//! | `keys/<sha256 hex of the key>` | [`KeyRecord`] | until deleted |
//! | `revoked/<tenant>/<username>` | [`Revocation`] | under a lease ending at the username's expiry |
//! | `room_revoked/<tenant>/<room>/<participant or *>` | [`RoomRevocation`] | under a lease of the longest room-token TTL |
//! | `probes/<from>/<to>` | [`ProbeRecord`] | until overwritten |
//! | `controllers/<replica id>` | [`ControllerRecord`] | under the replica's lease |
//!
//! Every record is JSON; unknown fields are ignored on read so that an older controller
//! replica keeps working beside a newer one during a rolling upgrade. Names used as key
//! segments (regions, nodes, tenants) are checked by [`validate_name`]: no `/`, no `:`.

use serde::{Deserialize, Serialize};

mod relay;
pub mod stored;

pub use nexrtc_geo::Region;
pub use nexrtc_wire::Revocation;
pub use relay::{Endpoint, Load, RelayAddresses, RelayRecord, RelayState, Transport};
pub use stored::{RecordError, Stored};

/// Key prefix of relay records (`relays/<region>/<node>`).
pub const RELAYS: &str = "relays/";
/// Key prefix of the region catalogue.
pub const REGIONS: &str = "regions/";
/// Key prefix of tenants.
pub const TENANTS: &str = "tenants/";
/// Key prefix of API keys (by SHA-256 hex of the key).
pub const KEYS: &str = "keys/";
/// Key prefix of revoked usernames.
pub const REVOKED: &str = "revoked/";
/// Key prefix of revoked room tokens (signaling; relays never see these).
pub const ROOM_REVOKED: &str = "room_revoked/";
/// Key prefix of the region-to-region probe matrix.
pub const PROBES: &str = "probes/";
/// Key prefix of client networks' measured RTTs (`client_probes/10.1.2.0/24`).
pub const CLIENT_PROBES: &str = "client_probes/";

/// Key prefix of the audit log (`audit/<unix ms, 20 digits>-<random>`, see `crate::audit`).
pub const AUDIT: &str = "audit/";

/// Key prefix of usage records (`usage/<tenant>/<minute>/<region>/<node>/<boot>`, see
/// `crate::usage`).
pub const USAGE: &str = "usage/";

/// Key prefix of live controller replicas (signaling routes rooms over them).
pub const CONTROLLERS: &str = "controllers/";

/// Longest node, tenant or region name.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a name used as a key segment and inside TURN usernames: 1..=63 characters of
/// `[a-z0-9_-]`, not starting or ending with `-` or `_`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let bad_edge = |c: char| c == '-' || c == '_';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars {
        return Err(format!(
            "{name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_'"
        ));
    }
    if name.starts_with(bad_edge) || name.ends_with(bad_edge) {
        return Err(format!("{name:?} must not start or end with '-' or '_'"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tenants and keys

/// One TURN REST secret of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Short random id, to retire it by.
    pub id: String,
    /// The shared secret (its UTF-8 bytes are the HMAC key, as in coturn's
    /// `static-auth-secret`).
    pub value: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// A token bucket: `per_second` tokens refilled per second, at most `burst` kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    pub fn validate(&self) -> Result<(), String> {
        match self.per_second.is_finite() && self.per_second > 0.0 && self.burst >= 1 {
            true => Ok(()),
            false => Err("rate limit needs per_second > 0 and burst >= 1".to_owned()),
        }
    }
}

/// Default credential lifetime when a request gives none.
pub const DEFAULT_TTL: u32 = 3600;
/// Default (and Twilio's) longest credential lifetime: 24 h.
pub const DEFAULT_MAX_TTL: u32 = 86_400;

fn default_ttl() -> u32 {
    DEFAULT_TTL
}

fn default_max_ttl() -> u32 {
    DEFAULT_MAX_TTL
}

/// What a tenant's callers may ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Credential lifetime when the request has no `ttl` (seconds).
    #[serde(default = "default_ttl")]
    pub default_ttl: u32,
    /// Longest credential lifetime; a larger `ttl` is refused with `invalid_ttl`.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
    /// Per-key request rate on the public API (`None`: the controller's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            rate_limit: None,
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_ttl == 0 || self.default_ttl == 0 || self.default_ttl > self.max_ttl {
            return Err("limits need 0 < default_ttl <= max_ttl".to_owned());
        }
        self.rate_limit.as_ref().map_or(Ok(()), RateLimit::validate)
    }
}

/// How relays treat the tenant's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Relays end live allocations when their username expires (not only new Allocates).
    pub cut_at_expiry: bool,
}

/// `tenants/<tenant>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// One or two, newest first: the newest signs, relays accept both (rotation).
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub limits: Limits,
    /// Browser origins allowed to call `POST /v1/ice-servers` (exact `scheme://host[:port]`).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub policy: Policy,
    /// Signing key of this tenant's client tokens (base64url of 32 random bytes),
    /// generated with the tenant; never shown by the API.
    pub token_key: String,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
}

/// Most secrets a tenant holds at once: the signing one and the one being retired.
pub const MAX_SECRETS: usize = 2;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/ice-servers`, `POST /v1/client-tokens` for its tenant.
    Ice,
    /// May pass `client_ip` to `POST /v1/ice-servers` (server-side callers).
    ClientIp,
    /// The admin API, and `?explain=1`.
    Admin,
    /// Relay registration and heartbeats; receives every tenant's secrets.
    Node,
}

/// `keys/<sha256 hex of the key>`: an API key (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Operator's label.
    #[serde(default)]
    pub name: String,
    /// Required for `ice` / `client_ip` keys; admin and node keys are global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    /// Overrides the tenant's rate limit for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
}

impl KeyRecord {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

// ---------------------------------------------------------------------------------------
// Revocations and probes

/// `revoked/<tenant>/<username>`: relays refuse this username until `until`. The record is
/// the protocol's [`Revocation`] (relays receive it as stored); its key is
/// [`revocation_key`].
pub fn revocation_key(tenant: &str, username: &str) -> String {
    format!("{REVOKED}{tenant}/{username}")
}

/// `room_revoked/<tenant>/<room>/<participant>` (`*` for the whole room): room tokens of
/// that participant (or of anyone in the room) issued at or before `revoked_at` are
/// refused, and connections holding one are closed. Tokens issued later are not affected
/// (the application decides whom it mints for). The record lives under a lease of the
/// longest room-token TTL, after which every token it covers has expired anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRevocation {
    pub tenant: String,
    pub room: String,
    /// `None`: every participant of the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// Unix seconds; tokens issued at or before this second are revoked.
    pub revoked_at: u64,
    /// Unix seconds when the record expires (every token it covers has expired by then).
    pub until: u64,
}

impl RoomRevocation {
    /// The participant segment meaning "the whole room" (not a valid participant id).
    pub const WHOLE_ROOM: &'static str = "*";

    /// The key relative to [`ROOM_REVOKED`].
    pub fn path(tenant: &str, room: &str, participant: Option<&str>) -> String {
        let who = participant.unwrap_or(Self::WHOLE_ROOM);
        format!("{tenant}/{room}/{who}")
    }

    /// The store key.
    pub fn key(tenant: &str, room: &str, participant: Option<&str>) -> String {
        format!("{ROOM_REVOKED}{}", Self::path(tenant, room, participant))
    }

    /// Whether a token issued at `issued_at` (Unix seconds) is revoked by this record.
    pub fn covers(&self, issued_at: u64) -> bool {
        issued_at <= self.revoked_at
    }
}

/// `probes/<from>/<to>`: a measured RTT between two regions' relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub rtt_ms: f64,
    /// Fraction of probes lost, 0..1.
    #[serde(default)]
    pub loss: f64,
    /// Unix seconds.
    pub measured_at: u64,
}

/// `client_probes/<network>`: what a client network (an IPv4 /24, an IPv6 /48) measured
/// to each region, under a lease (see `crate::client_probes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientProbeRecord {
    #[serde(flatten)]
    pub measured: nexrtc_geo::MeasuredRtts,
    /// Reports folded into it on the replica that wrote it.
    #[serde(default)]
    pub reports: u64,
    /// Unix seconds.
    pub measured_at: u64,
}

/// `controllers/<replica id>`: a live controller replica, under its own lease (renewed by
/// the replica itself); signaling assigns each room to one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    /// Base URL other replicas redirect signaling clients to (`https://c1.example:443`).
    pub url: String,
    /// Unix seconds.
    #[serde(default)]
    pub started_at: u64,
    #[serde(default)]
    pub version: String,
}

/// Decodes a JSON record (for [`crate::store::WatchedMap`]).
pub fn decode<T: serde::de::DeserializeOwned>(_key: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Encodes a record for the store.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs to a Vec cannot fail (no maps with non-string keys).
    serde_json::to_vec(record).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("acme_1").is_ok());
        for bad in ["", "a/b", "a:b", "A", "-a", "a_", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_defaults() {
        let t: TenantRecord = serde_json::from_str(
            r#"{"name":"acme","secrets":[{"id":"a","value":"s","created_at":1}],"token_key":"k"}"#,
        )
        .expect("tenant");
        assert_eq!(t.limits, Limits::default());
        assert_eq!(t.limits.default_ttl, 3600);
        assert_eq!(t.limits.max_ttl, 86_400);
        let back: TenantRecord = decode("", &encode(&t)).expect("decode");
        assert_eq!(back, t);
    }
}
