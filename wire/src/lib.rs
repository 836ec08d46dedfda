//! The agent↔controller protocol, declared once: the controller's routes
//! (`controller/src/api/relays.rs`, `api/agent.rs`) and the edge agent both use these
//! types, and `wire/tests/golden.rs` (with `wire/tests/golden/*.json`) plus the
//! controller's `tests/api_agent.rs` feed the same JSON to both, so the two
//! sides cannot drift apart. serde only.
//!
//! * The relay vocabulary (this module): where a relay listens, what it carries, its
//!   state and its load. The controller also stores these in `relays/<region>/<node>`.
//! * [`agent`] — the routes ([`routes`]), request bodies and answers, [`ErrorBody`] and
//!   the error code the agent reacts to ([`LEASE_EXPIRED`]).
//! * [`event`] — the event stream's payloads ([`Secrets`], [`Revocations`],
//!   [`DrainOrder`]), [`Event`] and [`PING_INTERVAL`].
//! * [`client`] — the public client-probe API (clients, not agents: authenticated like
//!   `POST /v1/ice-servers`).
//! * [`usage`] — usage metering's per-minute reports.
//! * [`lease`] — lease ids: decimal strings on the wire, integers still read.
//!
//! Every call carries `Authorization: Bearer <API key with the node scope>`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/relays/register` | [`Registration`] | 201 [`Registered`] |
//! | `POST /v1/relays/heartbeat` | [`Heartbeat`] | 200 [`HeartbeatAnswer`]; 404 [`ErrorBody`] `lease_expired` → register again |
//! | `POST /v1/relays/leave` | [`Leave`] | 204; 404 [`ErrorBody`] `lease_expired` → nothing removed (gone already, or a newer lease holds the record) |
//! | `POST /v1/relays/probes` | [`ProbeReport`] | 204 |
//! | `POST /v1/relays/usage` | [`UsageReport`] | 200 [`UsageAnswer`]; 404 [`ErrorBody`] `lease_expired` → kept, sent again once registered |
//! | `GET /v1/relays/events?region=R&node=N` | — | 200 `text/event-stream` of [`Event`]s |
//!
//! Errors are `{"code": "…", "message": "…"}` ([`ErrorBody`]) with the right status, as
//! everywhere in the API. Fields added later must be optional (`#[serde(default)]`) so that
//! agents and controllers of neighbouring versions understand each other. Where the two
//! sides once read a field differently (required on one side, optional on the other), the
//! shared type reads it as optional and says so: it accepts what either side sends.

#![forbid(unsafe_code)]

pub mod agent;
pub mod client;
pub mod event;
pub mod lease;
pub mod usage;

pub use agent::{
    routes, ErrorBody, Heartbeat, HeartbeatAnswer, Leave, ProbeReport, ProbeResult, ProbeTarget,
    Registered, Registration, LEASE_EXPIRED,
};
pub use client::{
    ClientProbeAnswer, ClientProbeReport, ClientProbeResult, ClientProbeTarget, ProbeTargets,
    MAX_CLIENT_PROBE_RESULTS,
};
pub use event::{
    DrainOrder, Event, EventError, Revocation, Revocations, Secrets, TenantSecrets, PING_INTERVAL,
};
pub use lease::LeaseId;
pub use usage::{Usage, UsageAnswer, UsageMinute, UsageReport};

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A relay's public listener: a DNS name or an IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// DNS name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port` as used in ICE URLs: IPv6 literals in brackets (RFC 7065 §3.1).
    pub fn uri_authority(&self) -> String {
        match self.host.parse::<Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{}", self.port),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }

    /// A non-zero port and a host that is an IP literal or a DNS name.
    pub fn validate(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("port must not be 0".to_owned());
        }
        if self.host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        let dns_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self.host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        match dns_ok {
            true => Ok(()),
            false => Err(format!(
                "{:?} is neither an IP address nor a DNS name",
                self.host
            )),
        }
    }
}

/// Where clients reach a relay, per transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAddresses {
    /// TURN over UDP (and STUN): `turn:h:p?transport=udp`, `stun:h:p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Endpoint>,
    /// TURN over TCP: `turn:h:p?transport=tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Endpoint>,
    /// TURN over TLS: `turns:h:p?transport=tcp` (5349 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Endpoint>,
    /// A second TLS listener, usually port 443 for clients behind strict firewalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_alt: Option<Endpoint>,
    /// The QUIC relay (RFC 9298 CONNECT-UDP over HTTP/3, UDP; 443 by default):
    /// `https://h:p/.well-known/masque/udp/{target_host}/{target_port}/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<Endpoint>,
}

/// A transport a relay offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// RFC 9298 CONNECT-UDP (no TURN URL; listed for clients that speak it).
    Quic,
}

/// A relay's lifecycle state as stored. (Dead relays have no record: their lease ended.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    #[default]
    Active,
    /// Registered, gets no new clients (an admin's drain order, or the relay is stopping).
    Draining,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Active => "active",
            RelayState::Draining => "draining",
        }
    }
}

/// A relay's load as reported in registrations and heartbeats. Directions are the
/// client's side of the relay, as coturn counts them: `in` = received from clients
/// (towards peers), `out` = sent to clients; rates in bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Load {
    /// Live allocations.
    pub allocations: u64,
    /// Most allocations it takes (0: unknown, only CPU counts).
    pub capacity: u64,
    pub pps_in: u64,
    pub pps_out: u64,
    pub bps_in: u64,
    pub bps_out: u64,
    /// CPU utilisation, 0..1.
    pub cpu: f64,
}

impl Load {
    /// 0..1 (may exceed 1): the higher of allocations/capacity and CPU.
    pub fn fraction(&self) -> f64 {
        let allocs = match self.capacity {
            0 => 0.0,
            cap => self.allocations as f64 / cap as f64,
        };
        let cpu = if self.cpu.is_finite() {
            self.cpu.max(0.0)
        } else {
            1.0
        };
        allocs.max(cpu)
    }

    /// At capacity: takes no new allocations.
    pub fn is_full(&self) -> bool {
        self.capacity > 0 && self.allocations >= self.capacity
    }
}
