//! Client latency probes: the public API through which a client network tells the
//! controller how far it is from each region.
//!
//! A client (the `nexrtc probe` CLI, the `nexrtc-client` library, or the browser helper)
//! authenticates exactly as for `POST /v1/ice-servers` (an API key with the `ice` scope, or
//! a client token), asks for [`ProbeTargets`] (one relay's STUN address per region),
//! times a few STUN Binding requests to each, and sends the medians back as a
//! [`ClientProbeReport`]. The controller folds the reports of one client *network* (the
//! /24 of an IPv4 client, the /48 of an IPv6 one) into the RTTs it ranks regions by for
//! every client of that network ([`ClientProbeAnswer`] says which network it counted the
//! report for).
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/client-probes/targets` | `{}` or `{"client_ip": …}` (may be empty) | 200 [`ProbeTargets`] |
//! | `POST /v1/client-probes` | [`ClientProbeReport`] | 202 [`ClientProbeAnswer`] |

use serde::{Deserialize, Serialize};

/// The routes.
pub mod routes {
    /// `POST` (body empty, `{}` or `{"client_ip": …}`) → 200 [`super::ProbeTargets`].
    pub const CLIENT_PROBE_TARGETS: &str = "/v1/client-probes/targets";
    /// `POST` [`super::ClientProbeReport`] → 202 [`super::ClientProbeAnswer`].
    pub const CLIENT_PROBES: &str = "/v1/client-probes";
}

/// Most results one report may carry (and most targets an answer lists).
pub const MAX_CLIENT_PROBE_RESULTS: usize = 32;

/// One region's probe target: a relay that answers STUN Binding requests over UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProbeTarget {
    pub region: String,
    /// `host:port` (IPv6 in brackets), for STUN over UDP.
    pub stun: String,
    /// The same as an ICE server URL (`stun:host:port`), for `RTCPeerConnection`.
    pub url: String,
}

/// `POST /v1/client-probes/targets` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeTargets {
    /// One target per region with relays, nearest first (by the caller's location), at
    /// most [`MAX_CLIENT_PROBE_RESULTS`].
    pub targets: Vec<ClientProbeTarget>,
    /// The network the caller is counted in (`10.1.2.0/24`, `2001:db8:1::/48`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// One region's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProbeResult {
    pub region: String,
    /// Median round-trip time of the answered requests, in ms (0 < rtt ≤ 10,000).
    pub rtt_ms: f64,
}

/// `POST /v1/client-probes` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProbeReport {
    /// At most [`MAX_CLIENT_PROBE_RESULTS`], one per region; regions that did not answer
    /// are left out.
    pub results: Vec<ClientProbeResult>,
    /// The end client's address, for a server reporting on a client's behalf (API keys
    /// with the `client_ip` scope only, as for `POST /v1/ice-servers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
}

/// `POST /v1/client-probes` answer (202: counted; the ranking follows once the network's
/// record is written, see the controller's documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientProbeAnswer {
    /// The network the report was counted for.
    pub network: String,
    /// Results accepted (unknown regions are skipped).
    pub accepted: usize,
    /// The region this network is now steered to first, if its measurements name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}
