//! The counts a worker publishes and the control side reads: the shell's
//! counters beside the core's ([`ShellStats`], [`WorkerStats`]), the worker's
//! liveness and allocation count ([`WorkerShared`]), and the relay's
//! [`Status`]. Single writer (the worker), read at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use turn_core::stats::Counter;
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
