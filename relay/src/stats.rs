//! The counts a worker publishes and the control side reads: the shell's
//! counters beside the core's ([`ShellStats`], [`WorkerStats`]), the worker's
//! liveness and allocation count ([`WorkerShared`]), and the relay's
//! [`Status`]. Single writer (the worker), read at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use turn_core::stats::{Counter, MethodLabel};
use turn_core::Stats;

/// Counters the shell keeps beside the core's (one writer: the worker).
#[derive(Debug, Default)]
pub struct ShellStats {
    /// TCP and TLS client connections open now, by transport.
    pub connections_active: [Counter; 3],
    /// Client connections accepted since start, by transport.
    pub connections_total: [Counter; 3],
    /// Connections refused because `--max-tcp-connections` were open.
    pub connections_rejected: Counter,
    /// Connections refused because `--max-tcp-connections-per-ip` of their
    /// client IP were open.
    pub connections_rejected_per_ip: Counter,
    /// Connections closed after `--tcp-auth-deadline` without an allocation.
    pub connections_unauthenticated: Counter,
    pub tls_handshake_failures: Counter,
    /// `sendmmsg` calls of the UDP data path.
    pub udp_send_calls: Counter,
    /// Datagrams sent as extra segments of a UDP GSO send.
    pub udp_gso_coalesced: Counter,
    /// Relay sockets bound now (set by the worker every loop).
    pub relay_sockets: AtomicU64,
    /// Ports held for RESERVATION-TOKENs now.
    pub reservations: AtomicU64,
}

/// The counters of one worker.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub core: Arc<Stats>,
    pub shell: Arc<ShellStats>,
}

/// What the exporter reads besides counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub draining: bool,
    pub ready: bool,
    pub workers_alive: usize,
    /// When the TLS certificate in use expires (unix seconds), with TLS or QUIC on.
    pub certificate_not_after: Option<i64>,
}

/// A worker's side of the shared state.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub alive: AtomicBool,
    pub allocations: AtomicUsize,
    /// Unix seconds of the worker's last loop turn (it turns at least once a second).
    pub tick_unix: AtomicU64,
    pub stats: WorkerStats,
}

/// `nexrtc_relay_request_duration_seconds{method}`: how long the relay takes to answer a
/// STUN/TURN request, from the request reaching its worker to its answer queued (over UDP
/// an Allocate's relay socket bind included; the batch's send is not). Only requests are
/// timed (two clock reads each), never ChannelData or indications.
pub const REQUEST_DURATION: &str = "nexrtc_relay_request_duration_seconds";

/// Bucket bounds of [`REQUEST_DURATION`], seconds: 5 µs to 100 ms.
const REQUEST_BUCKETS: &[f64] = &[
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1,
];

/// The request-duration histograms of one relay, one per method, shared by its workers
/// (recording is lock-free); their registry is a child of the relay's.
#[derive(Clone)]
pub struct RequestTimes {
    registry: nexrtc_metrics::Registry,
    by_method: Arc<[nexrtc_metrics::Histogram]>,
}

impl std::fmt::Debug for RequestTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTimes").finish_non_exhaustive()
    }
}

impl Default for RequestTimes {
    fn default() -> Self {
        let registry = nexrtc_metrics::Registry::with_buckets(REQUEST_DURATION, REQUEST_BUCKETS);
        registry.describe(
            REQUEST_DURATION,
            "Time to answer a STUN/TURN request, from reaching its worker to the answer queued, by method.",
        );
        let by_method = (MethodLabel::ALL.iter())
            .map(|m| registry.histogram(REQUEST_DURATION, &[("method", m.as_str())]))
            .collect();
        RequestTimes {
            registry,
            by_method,
        }
    }
}

impl RequestTimes {
    pub fn record(&self, method: MethodLabel, took: std::time::Duration) {
        if let Some(h) = self.by_method.get(method.index()) {
            h.record(took.as_secs_f64());
        }
    }

    /// The registry the histograms are in.
    pub fn registry(&self) -> &nexrtc_metrics::Registry {
        &self.registry
    }
}
