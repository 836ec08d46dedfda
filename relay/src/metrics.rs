//! The relay's families of `GET /metrics` ([`collect`], [`render`]), from every worker's
//! counters at scrape time; the routes and the relay's registry are in [`crate::ops`].
//!
//! The core and the shell only bump single-writer atomics; nothing here runs on
//! the packet path. At each scrape the collector of the relay's registry
//! ([`crate::ops::registry`]) sums them into a registry made for that scrape
//! ([`nexrtc_metrics`], the mechanism every component uses); another registry (the
//! in-process edge agent's) is registered into the relay's, so its families follow the
//! relay's own. Names are `nexrtc_relay_<what>_<unit>` (`_total`
//! for counters); labels are tenant, transport, direction, method, code and reason,
//! never a username or an address (their number is unbounded).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use nexrtc_metrics::Registry;
use turn_core::stats::{AuthFailure, Counter, DropReason, MethodLabel, ERROR_CODES};
use turn_core::Transport;

pub use crate::stats::{ShellStats, Status, WorkerStats};

/// Per tenant and transport (`quic`, or `h2` for the HTTP/2 fallback), the QUIC relay's
/// `[to_peer packets, to_peer bytes, to_client packets, to_client bytes, tunnels total,
/// tunnels active]` (`Monitor::quic_traffic`).
pub type QuicTraffic = [(String, &'static str, [u64; 6])];

/// The relay's own families alone, as `/metrics` shows them.
pub fn render(workers: &[WorkerStats], quic: &QuicTraffic, status: Status) -> String {
    let scrape = Registry::new();
    collect(workers, quic, status, &scrape);
    scrape.render()
}

/// Describes and sets the relay's families in `out`: sums over `workers`, the QUIC
/// relay's traffic (`transport="quic"` or `"h2"`, a tunnel counted as an allocation), and
/// `status`.
pub fn collect(workers: &[WorkerStats], quic: &QuicTraffic, status: Status, out: &Registry) {
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| workers.iter().map(f).sum::<u64>();
    let counter = |name: &'static str, labels: &[(&'static str, &str)], v: u64| {
        out.counter(name, labels).absolute(v);
    };
    let gauge = |name: &'static str, labels: &[(&'static str, &str)], v: u64| {
        out.gauge(name, labels).set(v as f64);
    };

    // tenant -> transport -> [to_peer packets, to_peer bytes, to_client packets,
    // to_client bytes, allocations total, allocations active]
    let mut tenants: BTreeMap<String, [[u64; 6]; 3]> = BTreeMap::new();
    for w in workers {
        for t in w.core.tenants() {
            let entry = tenants.entry(t.tenant.clone()).or_default();
            for tr in Transport::ALL {
                let x = t.transport(tr);
                let v = [
                    x.to_peer.packets.get(),
                    x.to_peer.bytes.get(),
                    x.to_client.packets.get(),
                    x.to_client.bytes.get(),
                    x.allocations_total.get(),
                    x.allocations_active.get(),
                ];
                let slot = &mut entry[tr as usize];
                for (s, v) in slot.iter_mut().zip(v) {
                    *s += v;
                }
            }
        }
    }
    out.describe(ALLOCATIONS_ACTIVE, "Allocations alive now.");
    out.describe(ALLOCATIONS_TOTAL, "Allocations created.");
    out.describe(PACKETS, "Packets relayed.");
    out.describe(BYTES, "Payload bytes relayed.");
    for (tenant, by_tr) in &tenants {
        for tr in Transport::ALL {
            let v = &by_tr[tr as usize];
            let labels = [("tenant", tenant.as_str()), ("transport", tr.as_str())];
            gauge(ALLOCATIONS_ACTIVE, &labels, v[5]);
            counter(ALLOCATIONS_TOTAL, &labels, v[4]);
            for (dir, off) in [("to_peer", 0), ("to_client", 2)] {
                let labels = [
                    ("tenant", tenant.as_str()),
                    ("transport", tr.as_str()),
                    ("direction", dir),
                ];
                counter(PACKETS, &labels, v[off]);
                counter(BYTES, &labels, v[1 + off]);
            }
        }
    }
    for (tenant, transport, v) in quic {
        let labels = [("tenant", tenant.as_str()), ("transport", *transport)];
        gauge(ALLOCATIONS_ACTIVE, &labels, v[5]);
        counter(ALLOCATIONS_TOTAL, &labels, v[4]);
        for (dir, off) in [("to_peer", 0), ("to_client", 2)] {
            let labels = [
                ("tenant", tenant.as_str()),
                ("transport", *transport),
                ("direction", dir),
            ];
            counter(PACKETS, &labels, v[off]);
            counter(BYTES, &labels, v[1 + off]);
        }
    }

    let name = "nexrtc_relay_requests_total";
    out.describe(name, "STUN/TURN requests received, by method.");
    for m in MethodLabel::ALL {
        let v = sum(&|w| w.core.request(*m).get());
        counter(name, &[("method", m.as_str())], v);
    }
    let name = "nexrtc_relay_error_responses_total";
    out.describe(name, "Error responses sent, by STUN error code.");
    for code in ERROR_CODES {
        let v = sum(&|w| w.core.error(code).map_or(0, Counter::get));
        counter(name, &[("code", &code.to_string())], v);
    }
    let name = "nexrtc_relay_auth_failures_total";
    out.describe(name, "Requests that failed authentication, by reason.");
    for r in AuthFailure::ALL {
        let v = sum(&|w| w.core.auth_failure(*r).get());
        counter(name, &[("reason", r.as_str())], v);
    }
    let name = "nexrtc_relay_dropped_packets_total";
    out.describe(name, "Packets dropped without an answer, by reason.");
    for r in DropReason::ALL {
        let v = sum(&|w| w.core.dropped(*r).get());
        counter(name, &[("reason", r.as_str())], v);
    }

    let gauges: [(&'static str, &'static str, u64); 4] = [
        (
            "nexrtc_relay_permissions_active",
            "Permissions installed now.",
            sum(&|w| w.core.permissions_active.get()),
        ),
        (
            "nexrtc_relay_channels_active",
            "Channels bound now.",
            sum(&|w| w.core.channels_active.get()),
        ),
        (
            "nexrtc_relay_relay_sockets_active",
            "Relay sockets bound now.",
            sum(&|w| w.shell.relay_sockets.load(Ordering::Relaxed)),
        ),
        (
            "nexrtc_relay_port_reservations_active",
            "Ports held for RESERVATION-TOKENs now.",
            sum(&|w| w.shell.reservations.load(Ordering::Relaxed)),
        ),
    ];
    for (name, help, v) in gauges {
        out.describe(name, help);
        gauge(name, &[], v);
    }

    let (active, total) = (
        "nexrtc_relay_tcp_connections_active",
        "nexrtc_relay_tcp_connections_total",
    );
    out.describe(active, "TCP/TLS client connections open now.");
    out.describe(total, "TCP/TLS client connections accepted.");
    for tr in [Transport::Tcp, Transport::Tls] {
        let labels = [("transport", tr.as_str())];
        let i = tr as usize;
        gauge(
            active,
            &labels,
            sum(&|w| w.shell.connections_active[i].get()),
        );
        counter(total, &labels, sum(&|w| w.shell.connections_total[i].get()));
    }
    let counters: [(&'static str, &'static str, u64); 7] = [
        (
            "nexrtc_relay_allocations_revoked_total",
            "Allocations ended at once because their username was revoked.",
            sum(&|w| w.core.allocations_revoked.get()),
        ),
        (
            "nexrtc_relay_tcp_connections_rejected_total",
            "Client connections refused at --max-tcp-connections.",
            sum(&|w| w.shell.connections_rejected.get()),
        ),
        (
            "nexrtc_relay_tcp_connections_rejected_per_ip_total",
            "Client connections refused at --max-tcp-connections-per-ip.",
            sum(&|w| w.shell.connections_rejected_per_ip.get()),
        ),
        (
            "nexrtc_relay_tcp_connections_unauthenticated_total",
            "Client connections closed at --tcp-auth-deadline without an allocation.",
            sum(&|w| w.shell.connections_unauthenticated.get()),
        ),
        (
            "nexrtc_relay_tls_handshake_failures_total",
            "Failed TLS handshakes.",
            sum(&|w| w.shell.tls_handshake_failures.get()),
        ),
        (
            "nexrtc_relay_udp_send_calls_total",
            "sendmmsg calls of the UDP data path (each sends one or more datagrams).",
            sum(&|w| w.shell.udp_send_calls.get()),
        ),
        (
            "nexrtc_relay_udp_gso_coalesced_total",
            "Datagrams that left as extra segments of one UDP GSO send to their destination.",
            sum(&|w| w.shell.udp_gso_coalesced.get()),
        ),
    ];
    for (name, help, v) in counters {
        out.describe(name, help);
        counter(name, &[], v);
    }

    let status_gauges: [(&'static str, &'static str, u64); 3] = [
        (
            "nexrtc_relay_draining",
            "1 while draining (no new allocations).",
            status.draining.into(),
        ),
        (
            "nexrtc_relay_ready",
            "1 when listening and not draining.",
            status.ready.into(),
        ),
        (
            "nexrtc_relay_workers_alive",
            "Worker threads running.",
            status.workers_alive as u64,
        ),
    ];
    for (name, help, v) in status_gauges {
        out.describe(name, help);
        gauge(name, &[], v);
    }
    if let Some(not_after) = status.certificate_not_after {
        let name = "nexrtc_relay_tls_certificate_expiry_timestamp_seconds";
        out.describe(
            name,
            "When the TLS certificate in use (TURN over TLS, QUIC) expires, unix seconds.",
        );
        out.gauge(name, &[]).set(not_after as f64);
    }
    let name = "nexrtc_relay_build_info";
    out.describe(name, "Always 1; the version is a label.");
    gauge(name, &[("version", env!("CARGO_PKG_VERSION"))], 1);
}

const ALLOCATIONS_ACTIVE: &str = "nexrtc_relay_allocations_active";
const ALLOCATIONS_TOTAL: &str = "nexrtc_relay_allocations_total";
const PACKETS: &str = "nexrtc_relay_packets_total";
const BYTES: &str = "nexrtc_relay_bytes_total";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use turn_core::Stats;

    fn worker() -> WorkerStats {
        WorkerStats {
            core: Arc::new(Stats::default()),
            shell: Arc::new(ShellStats::default()),
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
    }

    #[test]
    fn sums_workers_and_formats() {
        let (a, b) = (worker(), worker());
        let ta = a.core.tenant("acme");
        ta.transport(Transport::Udp).to_peer.record(100);
        ta.transport(Transport::Udp).allocations_active.inc();
        b.core
            .tenant("acme")
            .transport(Transport::Udp)
            .to_peer
            .record(50);
        b.core
            .tenant("beta")
            .transport(Transport::Tls)
            .to_client
            .record(7);
        a.core.dropped(DropReason::NoPermission).add(3);
        b.core.dropped(DropReason::NoPermission).inc();
        a.core.error(401).unwrap().inc();
        a.core.auth_failure(AuthFailure::Expired).inc();
        a.shell.connections_active[Transport::Tls as usize].add(2);
        let status = Status {
            draining: true,
            ready: false,
            workers_alive: 2,
            certificate_not_after: Some(1_900_000_000),
        };
        let quic = [
            ("acme".to_owned(), "quic", [4, 400, 3, 300, 2, 1]),
            ("acme".to_owned(), "h2", [7, 700, 6, 600, 5, 3]),
        ];
        let text = render(&[a, b], &quic, status);
        // The QUIC relay's tunnels in the same families, as transport "quic".
        for want in [
            "nexrtc_relay_packets_total{tenant=\"acme\",transport=\"quic\",direction=\"to_peer\"} 4",
            "nexrtc_relay_bytes_total{tenant=\"acme\",transport=\"quic\",direction=\"to_client\"} 300",
            "nexrtc_relay_allocations_total{tenant=\"acme\",transport=\"quic\"} 2",
            "nexrtc_relay_allocations_active{tenant=\"acme\",transport=\"quic\"} 1",
            // And the HTTP/2 fallback's, as transport "h2".
            "nexrtc_relay_packets_total{tenant=\"acme\",transport=\"h2\",direction=\"to_peer\"} 7",
            "nexrtc_relay_allocations_active{tenant=\"acme\",transport=\"h2\"} 3",
        ] {
            assert!(text.contains(&format!("{want}\n")), "{want} not in\n{text}");
        }

        assert_eq!(
            line(&text, "nexrtc_relay_packets_total{tenant=\"acme\",transport=\"udp\",direction=\"to_peer\"}"),
            "nexrtc_relay_packets_total{tenant=\"acme\",transport=\"udp\",direction=\"to_peer\"} 2"
        );
        assert!(text.contains(
            "nexrtc_relay_bytes_total{tenant=\"acme\",transport=\"udp\",direction=\"to_peer\"} 150\n"
        ));
        assert!(text.contains(
            "nexrtc_relay_bytes_total{tenant=\"beta\",transport=\"tls\",direction=\"to_client\"} 7\n"
        ));
        assert!(
            text.contains("nexrtc_relay_allocations_active{tenant=\"acme\",transport=\"udp\"} 1\n")
        );
        assert!(text.contains("nexrtc_relay_dropped_packets_total{reason=\"no_permission\"} 4\n"));
        assert!(text.contains("nexrtc_relay_error_responses_total{code=\"401\"} 1\n"));
        assert!(text.contains("nexrtc_relay_auth_failures_total{reason=\"expired\"} 1\n"));
        assert!(text.contains("nexrtc_relay_tcp_connections_active{transport=\"tls\"} 2\n"));
        assert!(text.contains("nexrtc_relay_draining 1\n"));
        assert!(text.contains("nexrtc_relay_workers_alive 2\n"));
        assert!(text.contains("nexrtc_relay_tls_certificate_expiry_timestamp_seconds 1900000000\n"));
        assert!(text.contains("# TYPE nexrtc_relay_packets_total counter\n"));
        assert!(text.contains("# TYPE nexrtc_relay_allocations_active gauge\n"));
    }

    #[test]
    fn every_family_has_help_and_type_once_and_counters_end_in_total() {
        let w = worker();
        w.core.tenant("t");
        let text = render(
            &[w],
            &[],
            Status {
                draining: false,
                ready: true,
                workers_alive: 1,
                certificate_not_after: None,
            },
        );
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = l.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(seen.insert(name.to_owned()), "duplicate family {name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(name.starts_with("nexrtc_relay_"));
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let family = l.split(['{', ' ']).next().unwrap();
            assert!(seen.contains(family), "sample {l} without TYPE");
            assert!(l.rsplit(' ').next().unwrap().parse::<u64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let w = worker();
        w.core
            .tenant("we\"ird\\ten\nant")
            .transport(Transport::Tcp)
            .to_peer
            .record(1);
        let text = render(
            &[w],
            &[],
            Status {
                draining: false,
                ready: true,
                workers_alive: 1,
                certificate_not_after: None,
            },
        );
        assert!(text.contains("tenant=\"we\\\"ird\\\\ten\\nant\""), "{text}");
    }
}
