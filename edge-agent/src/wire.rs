//! The agent ↔ controller protocol: JSON bodies and pushed events.
//!
//! Register and heartbeat match the controller's `api/relays.rs` field for
//! field (it refuses unknown fields there); the event stream, the probe report
//! and `probe_targets` are this crate's proposal for the controller to serve.
//! Every call carries `Authorization: Bearer <API key with the node scope>`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/relays/register` | [`RegisterRequest`] | 201 [`RegisterResponse`] |
//! | `POST /v1/relays/heartbeat` | [`Heartbeat`] | 200 [`HeartbeatResponse`]; 404 [`ErrorBody`] `lease_expired` → register again |
//! | `POST /v1/relays/probes` | [`ProbeReport`] | 204 (any 2xx) |
//! | `GET /v1/relays/events?region=R&node=N` | — | 200 `text/event-stream` of [`Event`]s |
//!
//! Errors are `{"code": "…", "message": "…"}` ([`ErrorBody`]) with the right status,
//! as everywhere in the API. Fields added later must be optional (`#[serde(default)]`)
//! so that agents and controllers of neighbouring versions understand each other;
//! unknown fields are ignored, unknown events are skipped.
//!
//! # The event stream
//!
//! Server-sent events (`event: <name>` + one `data: <json>` line). On every
//! (re)connection the controller first sends the full current state — `secrets`,
//! then `revocations`, then `drain` if the node is draining — and afterwards each
//! change, again as full state (no deltas: a reconnect never misses anything).
//! It sends `ping` at least every [`PING_INTERVAL_SECS`]; an agent that hears
//! nothing for three intervals reconnects (to any replica).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The controller sends a `ping` event at least this often (seconds).
pub const PING_INTERVAL_SECS: u64 = 10;

/// The `code` of the 404 a heartbeat gets when its lease is gone.
pub const LEASE_EXPIRED: &str = "lease_expired";

/// Routes, relative to a controller base URL.
pub mod routes {
    pub const REGISTER: &str = "v1/relays/register";
    pub const HEARTBEAT: &str = "v1/relays/heartbeat";
    pub const PROBES: &str = "v1/relays/probes";
    /// Query: `?region=R&node=N`.
    pub const EVENTS: &str = "v1/relays/events";
}

/// A lease id: etcd's, as a decimal string (it does not fit a JavaScript number).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub String);

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseId({})", self.0)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// The relay vocabulary is shared with the controller's records: one definition.
pub use nexrtc_wire::{Endpoint, RelayAddresses, RelayState, Transport};
/// The relay's load over the last heartbeat interval. Directions are the
/// client's side of the relay, as coturn counts them: `in` = received from
/// clients (towards peers), `out` = sent to clients; rates in bits per second.
pub type LoadReport = nexrtc_wire::Load;

/// `POST /v1/relays/register`: the relay record (the controller refuses
/// unknown fields here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub node: String,
    pub region: String,
    pub addresses: RelayAddresses,
    /// Each listed transport needs its address (`quic` excepted).
    pub transports: Vec<Transport>,
    #[serde(default)]
    pub load: LoadReport,
    #[serde(default)]
    pub state: RelayState,
    /// Relay software version.
    #[serde(default)]
    pub version: String,
}

/// The answer to a registration (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub lease: LeaseId,
    /// The lease's TTL: after this long without a heartbeat the relay is gone.
    #[serde(default)]
    pub lease_ttl_secs: u64,
    /// How often to heartbeat (0: keep the agent's own setting).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// Every tenant's secrets, so the relay serves before the stream connects.
    #[serde(default)]
    pub tenants: Vec<TenantSecrets>,
    /// The usernames refused now.
    #[serde(default)]
    pub revoked: Vec<Revoked>,
    /// Relays to probe (a few of every other region). Proposed; absent = none.
    #[serde(default)]
    pub probe_targets: Vec<ProbeTarget>,
}

/// `POST /v1/relays/heartbeat`: renews the lease and reports load (the
/// controller refuses unknown fields here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub region: String,
    pub node: String,
    pub lease: LeaseId,
    #[serde(default)]
    pub load: LoadReport,
    #[serde(default)]
    pub state: RelayState,
}

/// The answer to a heartbeat. Absent fields leave the agent's settings as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// The state the controller wants: `draining` is a drain order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RelayState>,
    /// Whether the controller rewrote the stored record (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<bool>,
    /// New probe targets, when they changed. Proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_targets: Option<Vec<ProbeTarget>>,
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A relay to send latency probes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeTarget {
    pub region: String,
    pub node: String,
    /// `host:port` answering STUN Binding requests over UDP (its `addresses.udp`).
    pub stun: String,
}

/// `POST /v1/relays/probes`: one round of probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub from_region: String,
    pub from_node: String,
    pub results: Vec<ProbeResult>,
}

/// The outcome of the probes to one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub to_region: String,
    pub to_node: String,
    /// Median round-trip time of the answered probes; `null` when all were lost.
    pub rtt_ms: Option<f64>,
    /// Share of probes unanswered, 0..=1.
    pub loss: f64,
    /// Probes sent.
    pub samples: u32,
}

/// Event `secrets` (and the register answer's `tenants`): every tenant's
/// secrets, full state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub tenants: Vec<TenantSecrets>,
    /// The tenant that owns coturn-style `<expiry>:<user>` usernames (none: such
    /// usernames are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenant: Option<String>,
}

/// One tenant's secrets: one or two, newest first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSecrets {
    pub name: String,
    pub secrets: Vec<String>,
    /// Cut live allocations when their username expires (not applied by the relay yet).
    #[serde(default)]
    pub cut_at_expiry: bool,
}

impl fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log.
        write!(
            f,
            "TenantSecrets({}: {} secrets)",
            self.name,
            self.secrets.len()
        )
    }
}

/// Event `revocations`: every username refused now (full state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    pub revoked: Vec<Revoked>,
}

/// A TURN REST username refused until `until` (unix seconds, its expiry); the
/// controller's `revoked/<tenant>/<username>` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revoked {
    #[serde(default)]
    pub tenant: String,
    pub username: String,
    pub until: u64,
    #[serde(default)]
    pub revoked_at: u64,
}

/// Event `drain`: stop taking clients; exit when empty or at `deadline`.
/// (A heartbeat answer's `"state": "draining"` is the same order without
/// deadline and alternate.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainOrder {
    /// Unix seconds; none: the relay's own `--drain-grace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// A healthy relay of the region (`host:port`) for 300 ALTERNATE-SERVER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
}

/// One event of the stream, by its SSE `event:` name.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    Secrets(Secrets),
    Revocations(Revocations),
    Drain(DrainOrder),
    Ping,
}

/// Why an SSE event could not be read as an [`Event`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("unknown event {0:?}")]
    Unknown(String),
    #[error("bad {event} event: {source}")]
    Json {
        event: &'static str,
        source: serde_json::Error,
    },
}

impl Event {
    pub const SECRETS: &'static str = "secrets";
    pub const REVOCATIONS: &'static str = "revocations";
    pub const DRAIN: &'static str = "drain";
    pub const PING: &'static str = "ping";

    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Secrets(_) => Event::SECRETS,
            Event::Revocations(_) => Event::REVOCATIONS,
            Event::Drain(_) => Event::DRAIN,
            Event::Ping => Event::PING,
        }
    }

    /// Reads an event from its SSE name and `data`.
    pub fn parse(name: &str, data: &str) -> Result<Event, EventError> {
        fn json<T: serde::de::DeserializeOwned>(
            event: &'static str,
            data: &str,
        ) -> Result<T, EventError> {
            serde_json::from_str(data).map_err(|source| EventError::Json { event, source })
        }
        match name {
            Event::SECRETS => json(Event::SECRETS, data).map(Event::Secrets),
            Event::REVOCATIONS => json(Event::REVOCATIONS, data).map(Event::Revocations),
            Event::DRAIN => json(Event::DRAIN, data).map(Event::Drain),
            Event::PING => Ok(Event::Ping),
            other => Err(EventError::Unknown(other.to_owned())),
        }
    }

    /// The SSE `data` (one line of JSON; `{}` for `ping`).
    pub fn data(&self) -> String {
        let json = match self {
            Event::Secrets(s) => serde_json::to_string(s),
            Event::Revocations(r) => serde_json::to_string(r),
            Event::Drain(d) => serde_json::to_string(d),
            Event::Ping => Ok("{}".to_owned()),
        };
        // Serializing these plain structs (string keys, finite numbers) cannot fail.
        json.unwrap_or_else(|_| "{}".to_owned())
    }
}
