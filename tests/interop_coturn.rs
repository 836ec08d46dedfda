//! Our relay driven by coturn's client tools (Debian package `coturn`):
//! `turnutils_uclient` relaying through us to `turnutils_peer`, and
//! `turnutils_stunclient`. Nothing here was written against our code: if these
//! pass, a coturn user can point their tools at us.
//!
//! uclient checks what comes back: every echo must have the length it sent, the
//! channel it bound and the next sequence number (it prints ERROR lines
//! otherwise, which fail the test), and it counts what never came back.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Runs one uclient scenario against a fresh relay and checks the relay's own
/// counters moved with the traffic.
fn uclient_scenario(slot: u16, flags: &[&'static str], clients: u32, messages: u32) {
    if require_tool("turnutils_uclient", "coturn").is_none()
        || require_tool("turnutils_peer", "coturn").is_none()
    {
        return;
    }
    let mut config = RelayConfig::new(slot);
    if flags.contains(&"-S") && backend() == Backend::Nexrtc {
        // With the QUIC relay on, the TLS listener looks at each ClientHello for the
        // HTTP/2 fallback first: TURN over TLS must not notice.
        let quic = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        config = config.arg("--quic-listen").arg(&quic.to_string());
    }
    let relay = Relay::start(config);
    let peer = EchoPeer::start();
    let mut uclient = Uclient::new(&relay, &peer);
    for f in flags {
        uclient = uclient.flag(f);
    }
    if flags.contains(&"-S") {
        uclient.server_port = relay.tls_port;
    }
    uclient.clients = clients;
    uclient.messages = messages;
    let report = uclient.run_clean();

    if relay.has_metrics() {
        let transport = if flags.contains(&"-S") {
            "tls"
        } else if flags.contains(&"-t") {
            "tcp"
        } else {
            "udp"
        };
        let sent = report.sent_msgs as f64;
        let bytes = report.sent_bytes as f64;
        let m = relay.wait_metrics("relayed packets in both directions", |m| {
            let count = |metric: &str, direction: &str| {
                m.sum(
                    metric,
                    &[("transport", transport), ("direction", direction)],
                )
            };
            count("nexrtc_relay_packets_total", "to_peer") >= sent
                && count("nexrtc_relay_packets_total", "to_client") >= sent
                && count("nexrtc_relay_bytes_total", "to_peer") >= bytes
                && count("nexrtc_relay_bytes_total", "to_client") >= bytes
        });
        let allocations = m.sum("nexrtc_relay_allocations_total", &[]);
        assert!(
            allocations >= uclient.sessions() as f64,
            "allocations counted: {allocations}, sessions: {}\n{}",
            uclient.sessions(),
            m.0
        );
        // The mode asked for is the one that ran: Send indications with -s,
        // channels (one ChannelBind per session at least) without.
        let (method, floor) = if flags.contains(&"-s") {
            ("send", sent)
        } else {
            ("channel_bind", uclient.sessions() as f64)
        };
        let requests = m.sum("nexrtc_relay_requests_total", &[("method", method)]);
        assert!(
            requests >= floor,
            "{method} requests: {requests} < {floor}\n{}",
            m.0
        );
        // Each request counted was timed, over every transport (Send is an indication).
        let timed_methods: &[&str] = match method {
            "send" => &["allocate"],
            _ => &["allocate", "channel_bind"],
        };
        for &method in timed_methods {
            let labels = [("method", method)];
            let counted = m.sum("nexrtc_relay_requests_total", &labels);
            let timed = m.sum("nexrtc_relay_request_duration_seconds_count", &labels);
            // Requests that fail to parse are timed but not counted: at least as many.
            assert!(
                counted > 0.0 && timed >= counted,
                "{method}: {counted} counted, {timed} timed\n{}",
                m.0
            );
        }
    }
}

#[test]
fn uclient_udp_channel_with_rtcp_pairs() {
    // Default uclient: an RTP allocation with EVEN-PORT (R bit) and an RTCP one
    // taking the RESERVATION-TOKEN; data as ChannelData.
    uclient_scenario(slot::UDP_CHANNEL, &[], 2, 30);
}

#[test]
fn uclient_udp_channel_no_rtcp() {
    uclient_scenario(slot::UDP_CHANNEL_NO_RTCP, &["-c"], 2, 30);
}

#[test]
fn uclient_udp_send_indications() {
    uclient_scenario(slot::UDP_SEND, &["-s"], 2, 30);
}

#[test]
fn uclient_tcp_channel() {
    uclient_scenario(slot::TCP_CHANNEL, &["-t"], 2, 30);
}

#[test]
fn uclient_tcp_send_indications() {
    uclient_scenario(slot::TCP_SEND, &["-t", "-s"], 2, 30);
}

#[test]
fn uclient_tls_channel() {
    if backend() == Backend::Coturn {
        eprintln!("SKIPPED against coturn: the harness starts it without a certificate");
        return;
    }
    // -S over -t is TLS (over UDP it would be DTLS); our self-signed development
    // certificate is accepted because uclient verifies nothing without -E.
    // uclient 4.6 picks a random OpenSSL context per attempt, TLS 1.0 and 1.1
    // among them, which rustls refuses; it retries (up to 32 times) until a
    // TLS 1.2/1.3 context is drawn.
    uclient_scenario(slot::TLS, &["-t", "-S"], 2, 30);
}

#[test]
fn uclient_many_clients_at_once() {
    // 8 sessions (4 RTP/RTCP pairs) at 50 packets/s each, 400 packets each way.
    uclient_scenario(slot::MANY_CLIENTS, &[], 8, 50);
}

#[test]
fn stunclient_learns_its_mapped_address() {
    if require_tool("turnutils_stunclient", "coturn").is_none() {
        return;
    }
    let relay = Relay::start(RelayConfig::new(slot::STUNCLIENT));
    let mut cmd = Command::new("turnutils_stunclient");
    cmd.args(["-p", &relay.port.to_string(), "127.0.0.1"]);
    let run = run_tool("turnutils_stunclient", &mut cmd, Duration::from_secs(20));
    assert!(!run.timed_out, "stunclient got no answer:\n{}", run.output);
    assert!(
        run.success,
        "stunclient failed ({:?}):\n{}",
        run.code, run.output
    );
    // "0: : IPv4. UDP reflexive addr: 127.0.0.1:48244"
    let mapped = run
        .output
        .lines()
        .find_map(|l| {
            l.split_once("UDP reflexive addr: ")
                .map(|(_, a)| a.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no reflexive address printed:\n{}", run.output));
    let addr: std::net::SocketAddr = mapped
        .parse()
        .unwrap_or_else(|e| panic!("bad address {mapped:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "mapped address: {addr}");
    assert_ne!(addr.port(), 0, "mapped address: {addr}");
    assert_ne!(
        addr.port(),
        relay.port,
        "mapped address is the client's, not the relay's"
    );
}

#[test]
fn tenants_from_the_secrets_file() {
    if require_tool("turnutils_uclient", "coturn").is_none()
        || require_tool("turnutils_peer", "coturn").is_none()
    {
        return;
    }
    if backend() == Backend::Coturn {
        eprintln!("SKIPPED against coturn: tenants are ours");
        return;
    }
    let newest = random_token("new");
    let previous = random_token("old");
    let secrets = temp_file(
        "secrets.toml",
        &format!("[tenants.acme]\nsecrets = [\"{newest}\", \"{previous}\"]\n"),
    );
    let relay = Relay::start(
        RelayConfig::new(slot::TENANTS)
            .arg("--secrets-file")
            .arg(&secrets.to_string_lossy()),
    );
    let peer = EchoPeer::start();
    let username = format!("{}:acme:bob", unix_now() + 3600);
    let mut u = Uclient::new(&relay, &peer).flag("-s").flag("-c");
    u.secret = None;
    u.username = username.clone();
    u.messages = 10;

    // Both secrets of a rotation are accepted.
    for secret in [&newest, &previous] {
        u.password = Some(turn_core::auth::rest_password(secret.as_bytes(), &username));
        u.run_clean();
    }
    relay.wait_metrics("traffic counted under tenant acme", |m| {
        m.sum(
            "nexrtc_relay_packets_total",
            &[("tenant", "acme"), ("direction", "to_peer")],
        ) >= 20.0
            && m.sum("nexrtc_relay_allocations_total", &[("tenant", "acme")]) >= 2.0
    });

    // "<expiry>:nosuch:bob" names no configured tenant, so it is user
    // "nosuch:bob" of the default tenant (coturn's usernames may contain ':'):
    // acme's secret does not sign it...
    let other = format!("{}:nosuch:bob", unix_now() + 3600);
    let mut bad = u.clone();
    bad.password = Some(turn_core::auth::rest_password(newest.as_bytes(), &other));
    bad.username = other.clone();
    let run = bad.run();
    assert!(
        !run.success && !run.timed_out,
        "acme's secret signed another tenant's name:\n{}",
        run.output
    );
    relay.wait_metrics("auth_failures{reason=bad_integrity}", |m| {
        m.sum(
            "nexrtc_relay_auth_failures_total",
            &[("reason", "bad_integrity")],
        ) >= 1.0
    });
    // ...the default tenant's (--static-auth-secret) does.
    let mut default_user = bad.clone();
    default_user.password = Some(turn_core::auth::rest_password(
        relay.secret.as_bytes(),
        &other,
    ));
    default_user.run_clean();
    relay.wait_metrics("traffic counted under the default tenant", |m| {
        m.sum(
            "nexrtc_relay_packets_total",
            &[("tenant", "default"), ("direction", "to_peer")],
        ) >= 10.0
    });
}

// The harness's own parsers, on coturn 4.6's real output.

#[test]
fn harness_parses_uclient_summary() {
    let out = "\
1: : start_mclient: msz=2, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0, tot_recv_bytes ~ 0
5: : start_mclient: tot_send_msgs=40, tot_recv_msgs=39
5: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 3900
5: : Total transmit time is 5
5: : Total lost packets 1 (2.500000%), total send dropped 0 (0.000000%)
";
    let r = UclientReport::parse(out).expect("parsed");
    assert_eq!(
        (r.sent_msgs, r.recv_msgs, r.sent_bytes, r.recv_bytes),
        (40, 39, 4000, 3900)
    );
    assert_eq!((r.lost, r.send_dropped), (1, 0));
    assert!(r.errors.is_empty());
    assert!(UclientReport::parse("0: : ERROR: Cannot complete Allocation").is_none());
}

#[test]
fn harness_sums_prometheus_samples() {
    let m = Metrics(
        "# TYPE x counter\n\
         nexrtc_relay_packets_total{tenant=\"default\",transport=\"udp\",direction=\"to_peer\"} 5\n\
         nexrtc_relay_packets_total{tenant=\"default\",transport=\"tcp\",direction=\"to_peer\"} 2\n\
         nexrtc_relay_packets_total{tenant=\"a,b\\\"c\",transport=\"udp\",direction=\"to_client\"} 7\n\
         nexrtc_relay_allocations_total 3\n"
            .to_owned(),
    );
    assert_eq!(
        m.sum("nexrtc_relay_packets_total", &[("direction", "to_peer")]),
        7.0
    );
    assert_eq!(
        m.sum("nexrtc_relay_packets_total", &[("tenant", "a,b\"c")]),
        7.0
    );
    assert_eq!(m.sum("nexrtc_relay_allocations_total", &[]), 3.0);
    assert!(m.has("nexrtc_relay_allocations_total"));
    assert!(!m.has("nexrtc_relay_allocations"));
}
