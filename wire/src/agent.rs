//! The agent's calls: routes, request bodies and answers, and the error codes it reacts to.
//!
//! Requests the controller checks strictly (`deny_unknown_fields`: a misspelt field is a
//! 400, not silently dropped) are [`Registration`], [`Heartbeat`] and [`Leave`]. Answers are read
//! leniently by the agent: every field that an older or newer controller might leave out has
//! a default, and unknown fields are ignored.

use serde::{Deserialize, Serialize};

use crate::event::{Revocation, TenantSecrets};
use crate::lease::LeaseId;
use crate::{Load, RelayAddresses, RelayState, Transport};

/// The agent's routes (absolute paths; a client joins them to its base URL without the
/// leading `/`, so that a base URL with a path prefix keeps it).
pub mod routes {
    /// `POST`: [`super::Registration`] → 201 [`super::Registered`].
    pub const REGISTER: &str = "/v1/relays/register";
    /// `POST`: [`super::Heartbeat`] → 200 [`super::HeartbeatAnswer`]; 404
    /// [`super::LEASE_EXPIRED`] → register again.
    pub const HEARTBEAT: &str = "/v1/relays/heartbeat";
    /// `POST`: [`super::Leave`] → 204: the relay's record and lease are gone; 404
    /// [`super::LEASE_EXPIRED`] → nothing to remove (gone already, or the record holds a
    /// newer lease, which stays).
    pub const LEAVE: &str = "/v1/relays/leave";
    /// `POST`: [`super::ProbeReport`] → 204.
    pub const PROBES: &str = "/v1/relays/probes";
    /// `POST`: [`crate::UsageReport`] → 200 [`crate::UsageAnswer`]; 404
    /// [`super::LEASE_EXPIRED`] → keep the buckets and send them once registered again.
    pub const USAGE: &str = "/v1/relays/usage";
    /// `GET ?region=R&node=N`: `text/event-stream` of [`crate::Event`]s.
    pub const EVENTS: &str = "/v1/relays/events";
    /// The query parameters of [`EVENTS`].
    pub const REGION_PARAM: &str = "region";
    pub const NODE_PARAM: &str = "node";
}

/// The `code` of the 404 a heartbeat gets when its lease is gone: the agent registers again.
pub const LEASE_EXPIRED: &str = "lease_expired";

/// `POST /v1/relays/register` body: a relay record without lease and timestamps. The
/// controller refuses unknown fields here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub node: String,
    pub region: String,
    pub addresses: RelayAddresses,
    /// Each listed transport needs its address (`quic` excepted).
    pub transports: Vec<Transport>,
    /// The relay's load now. Directions are the client's side of the relay, as coturn
    /// counts them: `in` = received from clients, `out` = sent to clients.
    #[serde(default)]
    pub load: Load,
    #[serde(default)]
    pub state: RelayState,
    /// Relay software version.
    #[serde(default)]
    pub version: String,
}

/// `POST /v1/relays/register` answer (201). The controller always sends every field; the
/// agent reads each of them as optional (absent: `0` / empty), which is what it accepted
/// before the two sides shared this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub lease: LeaseId,
    /// The lease's TTL: after this long without a heartbeat the relay is gone.
    #[serde(default)]
    pub lease_ttl_secs: u64,
    /// How often to heartbeat (0: keep the agent's own setting).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// Every tenant's secrets, so the relay serves before the event stream connects.
    #[serde(default)]
    pub tenants: Vec<TenantSecrets>,
    /// The usernames refused now.
    #[serde(default)]
    pub revoked: Vec<Revocation>,
    /// Relays of other regions to send latency probes to.
    #[serde(default)]
    pub probe_targets: Vec<ProbeTarget>,
}

/// `POST /v1/relays/heartbeat` body: renews the lease and reports load. The controller
/// refuses unknown fields here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub region: String,
    pub node: String,
    /// A decimal string (a JSON integer is accepted too; see [`crate::lease`]).
    pub lease: LeaseId,
    #[serde(default)]
    pub load: Load,
    /// What the relay reports (a drain order from the admin API overrides `active`).
    #[serde(default)]
    pub state: RelayState,
}

/// `POST /v1/relays/heartbeat` answer. The controller sends the first four fields; each is
/// optional for the agent (absent: its setting stays as it is), as the agent always read
/// them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
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
    /// New probe targets, when they changed (not sent by the controller yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_targets: Option<Vec<ProbeTarget>>,
}

/// `POST /v1/relays/leave` body: the relay stops, cleanly, and asks to be removed now
/// rather than when its heartbeats are missed. The controller removes the record only if
/// it still holds `lease` (a leave from an older registration of the same node removes
/// nothing), and refuses unknown fields here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    pub region: String,
    pub node: String,
    /// A decimal string (a JSON integer is accepted too; see [`crate::lease`]).
    pub lease: LeaseId,
}

/// A relay to send latency probes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeTarget {
    pub region: String,
    pub node: String,
    /// `host:port` answering STUN Binding requests over UDP (its `addresses.udp`; IPv6 in
    /// brackets).
    pub stun: String,
}

/// `POST /v1/relays/probes` body: one round of probes.
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
    /// Probes sent. The agent always sends it; the controller reads it as optional
    /// (absent: 0), as it always did.
    #[serde(default)]
    pub samples: u32,
}

/// The JSON body of every error answer of the API: a stable `code` to branch on and a
/// `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}
