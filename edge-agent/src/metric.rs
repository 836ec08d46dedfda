//! The agent's metrics: names, and [`registry`], the registry each agent records into
//! ([`crate::AgentHandle::metrics`]; the process serves it on a `/metrics` of its own, or
//! composes it into the relay's).
//!
//! `nexrtc_agent_<what>_<unit>`, `_total` for counters; labels never carry a
//! username or an address.

use nexrtc_metrics::Registry;

/// Heartbeats started (one per interval, whatever the retries).
pub const HEARTBEATS_SENT: &str = "nexrtc_agent_heartbeats_sent_total";
/// Heartbeats no replica acknowledged in time.
pub const HEARTBEATS_FAILED: &str = "nexrtc_agent_heartbeats_failed_total";
/// Heartbeats skipped because the load could not be read (relay unhealthy,
/// coturn's metrics unreachable): the lease is left to run out.
pub const HEARTBEATS_SKIPPED: &str = "nexrtc_agent_heartbeats_skipped_total";
/// Heartbeats acknowledged: the lease was renewed.
pub const LEASE_RENEWALS: &str = "nexrtc_agent_lease_renewals_total";
/// Successful registrations, the first one included.
pub const REGISTRATIONS: &str = "nexrtc_agent_registrations_total";
/// Registrations after a lost lease (404 `lease_expired`).
pub const REREGISTRATIONS: &str = "nexrtc_agent_reregistrations_total";
/// Event-stream connections after the first.
pub const STREAM_RECONNECTS: &str = "nexrtc_agent_stream_reconnects_total";
/// Events received, label `event`.
pub const EVENTS: &str = "nexrtc_agent_events_total";
/// Events the relay refused (bad secrets), label `event`.
pub const APPLY_FAILURES: &str = "nexrtc_agent_apply_failures_total";
/// Probe round trips, seconds, label `region` (the target's).
pub const PROBE_RTT: &str = "nexrtc_agent_probe_rtt_seconds";
/// Probes sent, label `region`.
pub const PROBES_SENT: &str = "nexrtc_agent_probes_sent_total";
/// Probes unanswered, label `region`.
pub const PROBES_LOST: &str = "nexrtc_agent_probes_lost_total";
/// Leaves on a clean stop, label `outcome` (`ok`, `lease_expired`: the controller knew
/// the lease no more, `failed`: no replica answered in time).
pub const LEAVES: &str = "nexrtc_agent_leaves_total";
/// Usage reports, label `outcome` (`ok`, `lease_expired`, `failed`).
pub const USAGE_REPORTS: &str = "nexrtc_agent_usage_reports_total";
/// Minutes of usage dropped because the controller could not take them for a day.
pub const USAGE_MINUTES_DROPPED: &str = "nexrtc_agent_usage_minutes_dropped_total";
/// 1 while the agent holds a lease, else 0.
pub const REGISTERED: &str = "nexrtc_agent_registered";

/// A new registry with the agent's descriptions (one per agent: agents never share).
pub fn registry() -> Registry {
    let r = Registry::new();
    r.describe(HEARTBEATS_SENT, "Heartbeats started");
    r.describe(
        HEARTBEATS_FAILED,
        "Heartbeats no controller replica acknowledged in time",
    );
    r.describe(
        HEARTBEATS_SKIPPED,
        "Heartbeats skipped: the relay's load could not be read",
    );
    r.describe(LEASE_RENEWALS, "Heartbeats acknowledged (lease renewed)");
    r.describe(REGISTRATIONS, "Registrations with the controller");
    r.describe(REREGISTRATIONS, "Registrations after the lease expired");
    r.describe(STREAM_RECONNECTS, "Event stream reconnections");
    r.describe(EVENTS, "Events received from the controller, by event");
    r.describe(APPLY_FAILURES, "Events the relay could not apply, by event");
    r.describe(
        USAGE_REPORTS,
        "Usage reports sent to the controller, by outcome",
    );
    r.describe(
        USAGE_MINUTES_DROPPED,
        "Minutes of usage dropped: the controller could not take them for a day",
    );
    r.describe(PROBE_RTT, "Latency probe round-trip time, by target region");
    r.describe(PROBES_SENT, "Latency probes sent, by target region");
    r.describe(PROBES_LOST, "Latency probes unanswered, by target region");
    r.describe(REGISTERED, "1 while the agent holds a lease");
    r.describe(
        LEAVES,
        "Leaves sent to the controller on a clean stop, by outcome",
    );
    r
}
