//! Prometheus metrics of the controller (a [`nexrtc_metrics::Registry`] per instance).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `nexrtc_controller_requests_total` | counter | `route` (the matched path template), `status` |
//! | `nexrtc_controller_request_duration_seconds` | histogram | `route` |
//! | `nexrtc_controller_credentials_issued_total` | counter | `tenant` |
//! | `nexrtc_controller_client_tokens_issued_total` | counter | `tenant` |
//! | `nexrtc_controller_snapshot_age_seconds` | gauge | (none; −1 before the first load) |
//! | `nexrtc_controller_store_answer_age_seconds` | gauge | (none; −1 before the first answer) time since the store last answered this replica's probe (`crate::store_health`) |
//! | `nexrtc_controller_store_probes_total` | counter | `outcome` (`ok`, `error`, `timeout`) |
//! | `nexrtc_controller_relays` | gauge | `region`, `state` (`active`, `draining`) |
//! | `nexrtc_controller_registrations_total` | counter | `outcome` |
//! | `nexrtc_controller_heartbeats_total` | counter | `outcome` (`kept`, `written`, `lease_expired`, `error`) |
//! | `nexrtc_controller_relay_leaves_total` | counter | `outcome` (`ok`, `lease_expired`, `error`) |
//! | `nexrtc_controller_client_probe_reports_total` | counter | `outcome` (`written`: the network's record was written; `kept`: counted, nothing material changed; `deferred`: changed, but the network was written less than 10 s ago or the replica's write budget was spent; `error`: the write failed) |
//! | `nexrtc_controller_client_probe_networks` | gauge | (none) client networks this replica aggregates (bounded) |
//! | `nexrtc_controller_signal_rooms` | gauge | (none) rooms on this replica |
//! | `nexrtc_controller_signal_participants` | gauge | (none) connected participants on this replica |
//! | `nexrtc_controller_signal_messages_total` | counter | `type` (`offer`, `answer`, `candidate`, `ping`, `join`, `leave`) |
//! | `nexrtc_controller_signal_errors_total` | counter | `code` (the `error` messages sent) |
//! | `nexrtc_controller_http_connections` | gauge | (none) open HTTP(S) connections |
//! | `nexrtc_controller_http_connections_closed_total` | counter | `reason` (`refused`: over a cap with nothing idle to close; `evicted`: idle, closed to make room; `idle`: idle timeout) |
//! | `nexrtc_controller_signal_drops_total` | counter | `reason` (`slow_reader`, `replaced`, `rate_limited`, `idle`, `protocol_error`, `room_full`, `shutdown`, `token_expired`, `revoked`, `moved`) |
//!
//! Labels never carry usernames, keys or addresses (unbounded, and private).
//!
//! Each controller instance ([`crate::AppState`]) owns one [`Metrics`], an
//! [`nexrtc_metrics::Registry`] of its own (so several controllers in one process never mix
//! their numbers); `/metrics` renders it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nexrtc_metrics::{Counter, Registry};

use crate::model::{RelayRecord, RelayState};

pub const REQUESTS: &str = "nexrtc_controller_requests_total";
pub const REQUEST_DURATION: &str = "nexrtc_controller_request_duration_seconds";
pub const CREDENTIALS_ISSUED: &str = "nexrtc_controller_credentials_issued_total";
pub const TOKENS_ISSUED: &str = "nexrtc_controller_client_tokens_issued_total";
pub const SNAPSHOT_AGE: &str = "nexrtc_controller_snapshot_age_seconds";
pub const STORE_ANSWER_AGE: &str = "nexrtc_controller_store_answer_age_seconds";
pub const STORE_PROBES: &str = "nexrtc_controller_store_probes_total";
pub const RELAYS: &str = "nexrtc_controller_relays";
pub const REGION_LOAD: &str = "nexrtc_controller_region_load";
pub const REGISTRATIONS: &str = "nexrtc_controller_registrations_total";
pub const HEARTBEATS: &str = "nexrtc_controller_heartbeats_total";
pub const RELAYS_MISSED: &str = "nexrtc_controller_relays_missed_total";
pub const LEAVES: &str = "nexrtc_controller_relay_leaves_total";
pub const CLIENT_PROBE_REPORTS: &str = "nexrtc_controller_client_probe_reports_total";
pub const CLIENT_PROBE_NETWORKS: &str = "nexrtc_controller_client_probe_networks";
pub const SIGNAL_ROOMS: &str = "nexrtc_controller_signal_rooms";
pub const SIGNAL_PARTICIPANTS: &str = "nexrtc_controller_signal_participants";
pub const SIGNAL_MESSAGES: &str = "nexrtc_controller_signal_messages_total";
pub const SIGNAL_ERRORS: &str = "nexrtc_controller_signal_errors_total";
pub const SIGNAL_DROPS: &str = "nexrtc_controller_signal_drops_total";
pub const HTTP_CONNECTIONS: &str = "nexrtc_controller_http_connections";
pub const HTTP_CLOSED: &str = "nexrtc_controller_http_connections_closed_total";
pub const DNS_QUERIES: &str = "nexrtc_controller_dns_queries_total";
pub const DNS_RATE_LIMITED: &str = "nexrtc_controller_dns_rate_limited_total";
pub const DNS_MALFORMED: &str = "nexrtc_controller_dns_malformed_total";
pub const USAGE_REPORTS: &str = "nexrtc_controller_usage_reports_total";
pub const USAGE_VALUES: &str = "nexrtc_controller_usage_values_total";
pub const AUDIT_WRITE_FAILURES: &str = "nexrtc_controller_audit_write_failures_total";

/// Latency buckets (seconds): the ICE answer should take well under a millisecond.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// One controller's metrics (cheap to clone: clones share them).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Label pairs of [`RELAYS`] set last time, so regions that vanished go to 0 rather
    /// than linger.
    relay_labels: Arc<Mutex<BTreeSet<(String, &'static str)>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A new, empty set of the controller's families.
    pub fn new() -> Metrics {
        let registry = Registry::with_buckets(REQUEST_DURATION, BUCKETS);
        registry.register_collector(nexrtc_metrics::process::collector());
        describe(&registry);
        // Zero before the first event, so dashboards and alerts see 0 rather than nothing.
        registry.gauge(SIGNAL_ROOMS, &[]).set(0.0);
        registry.gauge(SIGNAL_PARTICIPANTS, &[]).set(0.0);
        registry.counter(RELAYS_MISSED, &[]).increment(0);
        registry.counter(AUDIT_WRITE_FAILURES, &[]).increment(0);
        for result in ["written", "unchanged", "refused"] {
            (registry.counter(USAGE_VALUES, &[("result", result)])).increment(0);
        }
        for kind in crate::signal::protocol::INBOUND_KINDS {
            registry
                .counter(SIGNAL_MESSAGES, &[("type", kind)])
                .increment(0);
        }
        for code in crate::signal::protocol::ErrorCode::ALL {
            (registry.counter(SIGNAL_ERRORS, &[("code", code.as_str())])).increment(0);
        }
        Metrics {
            registry,
            relay_labels: Arc::default(),
        }
    }

    /// The registry (to compose it into another exposition).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.registry.render()
    }

    /// Drains histogram buffers; call every few seconds.
    pub fn upkeep(&self) {
        self.registry.run_upkeep();
    }

    /// One answered request.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let r = &self.registry;
        r.counter(REQUESTS, &[("route", route), ("status", &status)])
            .increment(1);
        r.histogram(REQUEST_DURATION, &[("route", route)])
            .record(elapsed.as_secs_f64());
    }

    pub fn credentials_issued(&self, tenant: &str) {
        self.count(CREDENTIALS_ISSUED, "tenant", tenant);
    }

    pub fn token_issued(&self, tenant: &str) {
        self.count(TOKENS_ISSUED, "tenant", tenant);
    }

    pub fn registration(&self, outcome: &'static str) {
        self.count(REGISTRATIONS, "outcome", outcome);
    }

    pub fn heartbeat(&self, outcome: &'static str) {
        self.count(HEARTBEATS, "outcome", outcome);
    }

    pub fn leave(&self, outcome: &'static str) {
        self.count(LEAVES, "outcome", outcome);
    }

    /// One usage report, by outcome.
    pub fn usage_report(&self, outcome: &'static str) {
        self.count(USAGE_REPORTS, "outcome", outcome);
    }

    /// What a stored usage report's bucket values came to.
    pub fn usage_values(&self, stored: &crate::usage::Stored) {
        for (result, n) in [
            ("written", stored.written),
            ("unchanged", stored.unchanged),
            ("refused", stored.refused),
        ] {
            (self.registry)
                .counter(USAGE_VALUES, &[("result", result)])
                .increment(n);
        }
    }

    /// One client-probe report, by what it led to.
    pub fn client_probe_report(&self, outcome: &'static str) {
        self.count(CLIENT_PROBE_REPORTS, "outcome", outcome);
    }

    /// Client networks aggregated in memory.
    pub fn client_probe_networks(&self, n: usize) {
        (self.registry)
            .gauge(CLIENT_PROBE_NETWORKS, &[])
            .set(n as f64);
    }

    pub fn relay_missed(&self) {
        self.registry.counter(RELAYS_MISSED, &[]).increment(1);
    }

    /// Rooms created (+1) or removed (−1).
    pub fn signal_rooms(&self, delta: f64) {
        self.registry.gauge(SIGNAL_ROOMS, &[]).increment(delta);
    }

    /// Participants joined (+1) or gone (−1).
    pub fn signal_participants(&self, delta: f64) {
        self.registry
            .gauge(SIGNAL_PARTICIPANTS, &[])
            .increment(delta);
    }

    /// A valid client message of `kind` (a protocol type: bounded).
    pub fn signal_message(&self, kind: &'static str) {
        self.count(SIGNAL_MESSAGES, "type", kind);
    }

    /// An `error` message sent with `code`.
    pub fn signal_error(&self, code: &'static str) {
        self.count(SIGNAL_ERRORS, "code", code);
    }

    /// A connection closed by the server for `reason`.
    pub fn signal_drop(&self, reason: &'static str) {
        self.count(SIGNAL_DROPS, "reason", reason);
    }

    /// An HTTP connection admitted (+1) or gone (−1).
    pub fn http_connections(&self, delta: f64) {
        self.registry.gauge(HTTP_CONNECTIONS, &[]).increment(delta);
    }

    /// An HTTP connection closed by a limit (`refused`, `evicted`, `idle`).
    pub fn http_closed(&self, reason: &'static str) {
        self.count(HTTP_CLOSED, "reason", reason);
    }

    /// Snapshot age; `None` (never loaded) is exported as −1.
    pub fn set_snapshot_age(&self, age: Option<Duration>) {
        (self.registry.gauge(SNAPSHOT_AGE, &[])).set(age.map_or(-1.0, |a| a.as_secs_f64()));
    }

    /// Time since the store last answered; `None` (never) is exported as −1.
    pub fn set_store_answer_age(&self, age: Option<Duration>) {
        (self.registry.gauge(STORE_ANSWER_AGE, &[])).set(age.map_or(-1.0, |a| a.as_secs_f64()));
    }

    /// One store probe (`ok`, `error`, `timeout`).
    pub fn store_probe(&self, outcome: &'static str) {
        self.count(STORE_PROBES, "outcome", outcome);
    }

    /// Relay counts by region and state, from a relay snapshot.
    pub fn set_relays(&self, relays: &HashMap<String, Arc<RelayRecord>>) {
        let mut counts: HashMap<(String, &'static str), u64> = HashMap::new();
        for r in relays.values() {
            *counts
                .entry((r.region.clone(), r.state.as_str()))
                .or_default() += 1;
        }
        let gauge = |region: &str, state: &str| {
            self.registry
                .gauge(RELAYS, &[("region", region), ("state", state)])
        };
        let mut seen = (self.relay_labels.lock()).unwrap_or_else(PoisonError::into_inner);
        for (region, state) in seen.iter() {
            if !counts.contains_key(&(region.clone(), *state)) {
                gauge(region, state).set(0.0);
            }
        }
        for ((region, state), n) in &counts {
            gauge(region, state).set(*n as f64);
            seen.insert((region.clone(), state));
        }
        // Each region's load: the mean load fraction of its active relays (0 without any).
        let mut load: HashMap<&str, (f64, u64)> = HashMap::new();
        for (region, _) in seen.iter() {
            load.entry(region.as_str()).or_default();
        }
        for r in relays.values().filter(|r| r.state == RelayState::Active) {
            let entry = load.entry(r.region.as_str()).or_default();
            entry.0 += r.load.fraction();
            entry.1 += 1;
        }
        for (region, (sum, n)) in load {
            let mean = if n == 0 { 0.0 } else { sum / n as f64 };
            self.registry
                .gauge(REGION_LOAD, &[("region", region)])
                .set(mean);
        }
    }

    /// One DNS query answered: its type, the answer's rcode, and whether it carried an
    /// EDNS Client Subnet the ranking used.
    pub fn dns_queries(&self, qtype: &str, rcode: &str, ecs: bool) -> Counter {
        let ecs = if ecs { "yes" } else { "no" };
        let labels = [("type", qtype), ("rcode", rcode), ("ecs", ecs)];
        self.registry.counter(DNS_QUERIES, &labels)
    }

    /// An admin mutation whose audit entry could not be written.
    pub fn audit_write_failed(&self) {
        self.registry
            .counter(AUDIT_WRITE_FAILURES, &[])
            .increment(1);
    }

    /// A DNS message that could not be read (dropped unanswered).
    pub fn dns_malformed(&self) {
        self.registry.counter(DNS_MALFORMED, &[]).increment(1);
    }

    /// A UDP response past the DNS rate limit: `slipped` (sent truncated) or `dropped`.
    pub fn dns_rate_limited(&self, action: &'static str) {
        self.count(DNS_RATE_LIMITED, "action", action);
    }

    fn count(&self, name: &'static str, label: &'static str, value: &str) {
        self.registry.counter(name, &[(label, value)]).increment(1);
    }
}

fn describe(r: &Registry) {
    r.describe(REQUESTS, "HTTP requests by route and status");
    r.describe(REQUEST_DURATION, "HTTP request latency by route");
    r.describe(CREDENTIALS_ISSUED, "TURN credentials issued by tenant");
    r.describe(
        DNS_QUERIES,
        "DNS queries answered, by type, rcode and use of EDNS Client Subnet",
    );
    r.describe(
        DNS_RATE_LIMITED,
        "UDP DNS responses past the rate limit, by action (slipped: sent truncated; dropped)",
    );
    r.describe(
        DNS_MALFORMED,
        "DNS messages that could not be read (dropped)",
    );
    r.describe(USAGE_REPORTS, "relay usage reports by outcome");
    r.describe(
        USAGE_VALUES,
        "usage bucket values received (one tenant's use in one minute on one relay), by result: written, unchanged (held in full already), refused (minute out of range, bad tenant name)",
    );
    r.describe(
        AUDIT_WRITE_FAILURES,
        "admin mutations whose audit log entry could not be written to the store",
    );
    r.describe(TOKENS_ISSUED, "client tokens issued by tenant");
    r.describe(
        SNAPSHOT_AGE,
        "age of the in-memory store snapshot (0 while the watch is live, -1 before loading)",
    );
    r.describe(RELAYS, "registered relays by region and state");
    r.describe(
        REGION_LOAD,
        "mean load fraction (0..1, the higher of allocations/capacity and CPU) of the region's active relays",
    );
    r.describe(REGISTRATIONS, "relay registrations by outcome");
    r.describe(HEARTBEATS, "relay heartbeats by outcome");
    r.describe(
        LEAVES,
        "relays that announced they were stopping, by outcome",
    );
    r.describe(
        RELAYS_MISSED,
        "relays removed by this replica after missing their heartbeats",
    );
    r.describe(
        CLIENT_PROBE_REPORTS,
        "client latency-probe reports by outcome",
    );
    r.describe(
        CLIENT_PROBE_NETWORKS,
        "client networks whose probe reports this replica aggregates",
    );
    r.describe(SIGNAL_ROOMS, "signaling rooms on this replica");
    r.describe(
        SIGNAL_PARTICIPANTS,
        "signaling participants on this replica",
    );
    r.describe(SIGNAL_MESSAGES, "signaling messages received by type");
    r.describe(SIGNAL_ERRORS, "signaling error messages sent by code");
    r.describe(
        SIGNAL_DROPS,
        "signaling connections closed by the server by reason",
    );
    r.describe(HTTP_CONNECTIONS, "open HTTP(S) connections");
    r.describe(
        HTTP_CLOSED,
        "HTTP(S) connections closed by the server's connection limits, by reason",
    );
}
