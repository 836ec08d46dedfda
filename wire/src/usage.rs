//! Usage metering: what a relay reports of each tenant's use, in one-minute buckets
//! (`POST /v1/relays/usage`).
//!
//! A relay counts, per tenant and since it started, the time its TURN allocations and
//! QUIC tunnels were alive and the bytes it relayed each way. Its agent turns those
//! running totals into one-minute buckets (each bucket: what happened in that minute of
//! Unix time) and reports the buckets not yet acknowledged, together with the one still
//! filling, every [`REPORT_INTERVAL`]. A bucket only grows while its minute lasts, and a
//! report is idempotent: the controller keeps, per value, the larger of what it holds and
//! what it is sent, so a report sent twice, or overtaken by a later one, counts once.
//! Each bucket is stored under the relay's `boot` (a random id drawn at start): a relay
//! that restarts begins new buckets beside the old ones rather than overwriting them, so
//! nothing it reported before is lost or counted twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lease::LeaseId;

/// How often an agent reports usage (and so the most a relay killed outright loses).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The most bucket values (one tenant's use in one minute) one report carries: with the
/// longest names and counts, such a report stays under the controller's 16 KiB request
/// body limit (checked by `the_largest_report_fits_the_body_limit`). An agent with more
/// to say sends several reports.
pub const MAX_REPORT_VALUES: usize = 48;

/// One tenant's use over some time (a bucket, or a relay's running total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Milliseconds of TURN allocations alive, summed over the allocations.
    #[serde(default)]
    pub allocation_ms: u64,
    /// Milliseconds of QUIC (or HTTP/2) tunnels open, summed over the tunnels.
    #[serde(default)]
    pub tunnel_ms: u64,
    /// Payload bytes relayed from clients to peers.
    #[serde(default)]
    pub bytes_to_peer: u64,
    /// Payload bytes relayed from peers to clients.
    #[serde(default)]
    pub bytes_to_client: u64,
}

impl Usage {
    /// Field by field, `self` minus `earlier` (0 where it went down).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            allocation_ms: self.allocation_ms.saturating_sub(earlier.allocation_ms),
            tunnel_ms: self.tunnel_ms.saturating_sub(earlier.tunnel_ms),
            bytes_to_peer: self.bytes_to_peer.saturating_sub(earlier.bytes_to_peer),
            bytes_to_client: self.bytes_to_client.saturating_sub(earlier.bytes_to_client),
        }
    }

    /// Field by field, the sum.
    pub fn add(&mut self, other: &Usage) {
        self.allocation_ms = self.allocation_ms.saturating_add(other.allocation_ms);
        self.tunnel_ms = self.tunnel_ms.saturating_add(other.tunnel_ms);
        self.bytes_to_peer = self.bytes_to_peer.saturating_add(other.bytes_to_peer);
        self.bytes_to_client = self.bytes_to_client.saturating_add(other.bytes_to_client);
    }

    /// Field by field, the larger.
    pub fn max(&self, other: &Usage) -> Usage {
        Usage {
            allocation_ms: self.allocation_ms.max(other.allocation_ms),
            tunnel_ms: self.tunnel_ms.max(other.tunnel_ms),
            bytes_to_peer: self.bytes_to_peer.max(other.bytes_to_peer),
            bytes_to_client: self.bytes_to_client.max(other.bytes_to_client),
        }
    }

    /// Every field is at least `other`'s.
    pub fn covers(&self, other: &Usage) -> bool {
        self.max(other) == *self
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// One minute's use on one relay, per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageMinute {
    /// The minute's start, Unix seconds (a multiple of 60).
    pub minute: u64,
    pub tenants: BTreeMap<String, Usage>,
}

/// `POST /v1/relays/usage` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub region: String,
    pub node: String,
    /// A decimal string (a JSON integer is accepted too; see [`crate::lease`]).
    pub lease: LeaseId,
    /// The relay process's random id, drawn at start (16 hex digits).
    pub boot: String,
    /// Oldest first; [`MAX_REPORT_VALUES`] tenant values at most over all of them.
    pub minutes: Vec<UsageMinute>,
}

/// `POST /v1/relays/usage` answer: the buckets are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAnswer {
    /// Bucket values written (those the store already held in full are not).
    #[serde(default)]
    pub written: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest report an agent sends — [`MAX_REPORT_VALUES`] values each in a minute
    /// of its own, names at the controller's 63-character limit, a 32-character boot,
    /// every count at its maximum — fits the controller's 16 KiB request body limit.
    #[test]
    fn the_largest_report_fits_the_body_limit() {
        let name = |c: char| std::iter::repeat_n(c, 63).collect::<String>();
        let full = Usage {
            allocation_ms: u64::MAX,
            tunnel_ms: u64::MAX,
            bytes_to_peer: u64::MAX,
            bytes_to_client: u64::MAX,
        };
        let report = UsageReport {
            region: name('r'),
            node: name('n'),
            lease: LeaseId(i64::MAX),
            boot: "f".repeat(32),
            minutes: (0..MAX_REPORT_VALUES as u64)
                .map(|i| UsageMinute {
                    minute: u64::MAX - i * 60,
                    tenants: [(name('t'), full)].into_iter().collect(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&report).unwrap().len();
        assert!(bytes < 16 * 1024, "{bytes} bytes");
    }

    #[test]
    fn arithmetic() {
        let a = Usage {
            allocation_ms: 10,
            tunnel_ms: 0,
            bytes_to_peer: 5,
            bytes_to_client: 7,
        };
        let b = Usage {
            allocation_ms: 4,
            tunnel_ms: 3,
            bytes_to_peer: 9,
            bytes_to_client: 7,
        };
        assert_eq!(
            a.since(&b),
            Usage {
                allocation_ms: 6,
                tunnel_ms: 0,
                bytes_to_peer: 0,
                bytes_to_client: 0
            }
        );
        let m = a.max(&b);
        assert!(m.covers(&a) && m.covers(&b) && !a.covers(&b));
        let mut s = a;
        s.add(&b);
        assert_eq!(s.bytes_to_peer, 14);
        assert!(Usage::default().is_zero() && !s.is_zero());
    }
}
