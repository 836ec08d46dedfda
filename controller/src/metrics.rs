//! Prometheus metrics of the controller (crates `metrics` + `metrics-exporter-prometheus`).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `nexrtc_controller_requests_total` | counter | `route` (the matched path template), `status` |
//! | `nexrtc_controller_request_duration_seconds` | histogram | `route` |
//! | `nexrtc_controller_credentials_issued_total` | counter | `tenant` |
//! | `nexrtc_controller_client_tokens_issued_total` | counter | `tenant` |
//! | `nexrtc_controller_snapshot_age_seconds` | gauge | (none; −1 before the first load) |
//! | `nexrtc_controller_relays` | gauge | `region`, `state` (`active`, `draining`) |
//! | `nexrtc_controller_registrations_total` | counter | `outcome` |
//! | `nexrtc_controller_heartbeats_total` | counter | `outcome` (`kept`, `written`, `lease_expired`, `error`) |
//! | `nexrtc_controller_signal_rooms` | gauge | (none) rooms on this replica |
//! | `nexrtc_controller_signal_participants` | gauge | (none) connected participants on this replica |
//! | `nexrtc_controller_signal_messages_total` | counter | `type` (`offer`, `answer`, `candidate`, `ping`, `join`, `leave`) |
//! | `nexrtc_controller_signal_errors_total` | counter | `code` (the `error` messages sent) |
//! | `nexrtc_controller_http_connections` | gauge | (none) open HTTP(S) connections |
//! | `nexrtc_controller_http_connections_closed_total` | counter | `reason` (`refused`: over a cap with nothing idle to close; `evicted`: idle, closed to make room; `idle`: idle timeout) |
//! | `nexrtc_controller_signal_drops_total` | counter | `reason` (`slow_reader`, `replaced`, `rate_limited`, `idle`, `protocol_error`, `room_full`, `shutdown`) |
//!
//! Labels never carry usernames, keys or addresses (unbounded, and private). The recorder
//! is process-global (installed once, by the first [`install`]); `/metrics` renders it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::RelayRecord;

pub const REQUESTS: &str = "nexrtc_controller_requests_total";
pub const REQUEST_DURATION: &str = "nexrtc_controller_request_duration_seconds";
pub const CREDENTIALS_ISSUED: &str = "nexrtc_controller_credentials_issued_total";
pub const TOKENS_ISSUED: &str = "nexrtc_controller_client_tokens_issued_total";
pub const SNAPSHOT_AGE: &str = "nexrtc_controller_snapshot_age_seconds";
pub const RELAYS: &str = "nexrtc_controller_relays";
pub const REGISTRATIONS: &str = "nexrtc_controller_registrations_total";
pub const HEARTBEATS: &str = "nexrtc_controller_heartbeats_total";
pub const RELAYS_MISSED: &str = "nexrtc_controller_relays_missed_total";
pub const SIGNAL_ROOMS: &str = "nexrtc_controller_signal_rooms";
pub const SIGNAL_PARTICIPANTS: &str = "nexrtc_controller_signal_participants";
pub const SIGNAL_MESSAGES: &str = "nexrtc_controller_signal_messages_total";
pub const SIGNAL_ERRORS: &str = "nexrtc_controller_signal_errors_total";
pub const SIGNAL_DROPS: &str = "nexrtc_controller_signal_drops_total";
pub const HTTP_CONNECTIONS: &str = "nexrtc_controller_http_connections";
pub const HTTP_CLOSED: &str = "nexrtc_controller_http_connections_closed_total";

/// Latency buckets (seconds): the ICE answer should take well under a millisecond.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once; `None` if another recorder was installed first (then
/// `/metrics` renders nothing of ours).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(%e, "a metrics recorder was already installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "HTTP requests by route and status");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_counter!(CREDENTIALS_ISSUED, "TURN credentials issued by tenant");
    metrics::describe_counter!(TOKENS_ISSUED, "client tokens issued by tenant");
    metrics::describe_gauge!(
        SNAPSHOT_AGE,
        metrics::Unit::Seconds,
        "age of the in-memory store snapshot (0 while the watch is live, -1 before loading)"
    );
    metrics::describe_gauge!(RELAYS, "registered relays by region and state");
    metrics::describe_counter!(REGISTRATIONS, "relay registrations by outcome");
    metrics::describe_counter!(HEARTBEATS, "relay heartbeats by outcome");
    metrics::describe_counter!(
        RELAYS_MISSED,
        "relays removed by this replica after missing their heartbeats"
    );
    metrics::describe_gauge!(SIGNAL_ROOMS, "signaling rooms on this replica");
    metrics::describe_gauge!(
        SIGNAL_PARTICIPANTS,
        "signaling participants on this replica"
    );
    metrics::describe_counter!(SIGNAL_MESSAGES, "signaling messages received by type");
    metrics::describe_counter!(SIGNAL_ERRORS, "signaling error messages sent by code");
    metrics::describe_counter!(
        SIGNAL_DROPS,
        "signaling connections closed by the server by reason"
    );
    metrics::describe_gauge!(HTTP_CONNECTIONS, "open HTTP(S) connections");
    metrics::describe_counter!(
        HTTP_CLOSED,
        "HTTP(S) connections closed by the server's connection limits, by reason"
    );
}

/// The exposition text (`None` without our recorder).
pub fn render() -> Option<String> {
    let handle = install()?;
    Some(handle.render())
}

/// Drains histogram buffers; call every few seconds.
pub fn upkeep() {
    if let Some(handle) = install() {
        handle.run_upkeep();
    }
}

/// One answered request.
pub fn request(route: &str, status: u16, elapsed: Duration) {
    let route = route.to_owned();
    counter!(REQUESTS, "route" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!(REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

pub fn credentials_issued(tenant: &str) {
    counter!(CREDENTIALS_ISSUED, "tenant" => tenant.to_owned()).increment(1);
}

pub fn token_issued(tenant: &str) {
    counter!(TOKENS_ISSUED, "tenant" => tenant.to_owned()).increment(1);
}

pub fn registration(outcome: &'static str) {
    counter!(REGISTRATIONS, "outcome" => outcome).increment(1);
}

pub fn heartbeat(outcome: &'static str) {
    counter!(HEARTBEATS, "outcome" => outcome).increment(1);
}

pub fn relay_missed() {
    counter!(RELAYS_MISSED).increment(1);
}

/// Rooms created (+1) or removed (−1). Gauges move by increments, so several controllers
/// in one process (tests) add up instead of overwriting each other.
pub fn signal_rooms(delta: f64) {
    gauge!(SIGNAL_ROOMS).increment(delta);
}

/// Participants joined (+1) or gone (−1).
pub fn signal_participants(delta: f64) {
    gauge!(SIGNAL_PARTICIPANTS).increment(delta);
}

/// A valid client message of `kind` (a protocol type: bounded).
pub fn signal_message(kind: &'static str) {
    counter!(SIGNAL_MESSAGES, "type" => kind).increment(1);
}

/// An `error` message sent with `code`.
pub fn signal_error(code: &'static str) {
    counter!(SIGNAL_ERRORS, "code" => code).increment(1);
}

/// A connection closed by the server for `reason`.
pub fn signal_drop(reason: &'static str) {
    counter!(SIGNAL_DROPS, "reason" => reason).increment(1);
}

/// An HTTP connection admitted (+1) or gone (−1).
pub fn http_connections(delta: f64) {
    gauge!(HTTP_CONNECTIONS).increment(delta);
}

/// An HTTP connection closed by a limit (`refused`, `evicted`, `idle`).
pub fn http_closed(reason: &'static str) {
    counter!(HTTP_CLOSED, "reason" => reason).increment(1);
}

/// Snapshot age; `None` (never loaded) is exported as −1.
pub fn set_snapshot_age(age: Option<Duration>) {
    gauge!(SNAPSHOT_AGE).set(age.map_or(-1.0, |a| a.as_secs_f64()));
}

/// Label pairs set last time, so regions that vanished go to 0 rather than linger.
static RELAY_LABELS: Mutex<BTreeSet<(String, &'static str)>> = Mutex::new(BTreeSet::new());

/// Relay counts by region and state, from a relay snapshot.
pub fn set_relays(relays: &HashMap<String, Arc<RelayRecord>>) {
    let mut counts: HashMap<(String, &'static str), u64> = HashMap::new();
    for r in relays.values() {
        *counts
            .entry((r.region.clone(), r.state.as_str()))
            .or_default() += 1;
    }
    let mut seen = RELAY_LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    for (region, state) in seen.iter() {
        if !counts.contains_key(&(region.clone(), *state)) {
            gauge!(RELAYS, "region" => region.clone(), "state" => *state).set(0.0);
        }
    }
    for ((region, state), n) in &counts {
        gauge!(RELAYS, "region" => region.clone(), "state" => *state).set(*n as f64);
        seen.insert((region.clone(), state));
    }
}
