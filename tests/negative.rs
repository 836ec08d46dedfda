//! What a relay on the open internet must refuse, through the real binary:
//! bad and expired credentials, peers in blocked ranges, quota, garbage on the
//! wire, TCP clients that stall mid-frame. Each case checks the refusal the
//! client sees (or that the input was dropped), the counter that records it,
//! and that the relay still serves a well-behaved client afterwards.
//!
//! The well-behaved controls use Send indications (`-s`): these tests are
//! about refusals, not about channels, which `interop_coturn` covers.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::time::timeout;
use webrtc_turn::client::Client;
use webrtc_util::Conn;

const STEP: Duration = Duration::from_secs(10);

/// A webrtc-rs TURN client with an allocation on `relay`.
async fn allocate_webrtc_rs(relay: &Relay, user: &str) -> (Client, impl Conn) {
    let (username, password) = relay.credentials(user);
    let (client, _) = turn_client(relay, username, password).await;
    let relay_conn = timeout(STEP, client.allocate())
        .await
        .expect("allocate timed out")
        .expect("allocate");
    (client, relay_conn)
}

fn coturn_tools() -> bool {
    require_tool("turnutils_uclient", "coturn").is_some()
        && require_tool("turnutils_peer", "coturn").is_some()
}

/// A short clean uclient run (Send indications, no RTCP pair).
fn control_run(relay: &Relay, peer: &EchoPeer) {
    let mut u = Uclient::new(relay, peer).flag("-s").flag("-c");
    u.messages = 10;
    u.run_clean();
}

/// Runs uclient and expects it to fail (not merely time out) without relaying.
fn expect_refused(uclient: &Uclient, expect_in_output: &str) -> ToolRun {
    let run = uclient.run();
    let context = format!("command: {:?}\noutput:\n{}", uclient.command(), run.output);
    assert!(
        !run.timed_out,
        "uclient should have been refused, it hung\n{context}"
    );
    assert!(!run.success, "uclient should have been refused\n{context}");
    assert!(
        run.output.contains(expect_in_output),
        "expected {expect_in_output:?} in uclient's output\n{context}"
    );
    if let Some(report) = UclientReport::parse(&run.output) {
        assert_eq!(report.recv_msgs, 0, "nothing may be relayed\n{context}");
    }
    run
}

#[test]
fn wrong_password_is_refused_and_counted() {
    if !coturn_tools() {
        return;
    }
    let relay = Relay::start(RelayConfig::new(slot::WRONG_PASSWORD));
    let peer = EchoPeer::start();
    let mut bad = Uclient::new(&relay, &peer).flag("-s").flag("-c");
    bad.secret = Some("not-the-secret".to_owned());
    expect_refused(&bad, "Cannot complete Allocation");
    if relay.has_metrics() {
        relay.wait_metrics("auth_failures{reason=bad_integrity}", |m| {
            m.sum(
                "nexrtc_relay_auth_failures_total",
                &[("reason", "bad_integrity")],
            ) >= 1.0
        });
        let m = relay.metrics();
        assert_eq!(m.sum("nexrtc_relay_allocations_total", &[]), 0.0, "{}", m.0);
    }
    control_run(&relay, &peer);
}

#[test]
fn expired_username_is_refused_and_counted() {
    if !coturn_tools() {
        return;
    }
    let relay = Relay::start(RelayConfig::new(slot::EXPIRED));
    let peer = EchoPeer::start();

    // Control: the same plain -u/-w form with a future expiry works, so the
    // refusal below is about the expiry alone.
    let (username, password) = relay.credentials("carol");
    let mut good = Uclient::new(&relay, &peer).flag("-s").flag("-c");
    good.secret = None;
    good.username = username;
    good.password = Some(password);
    good.messages = 10;
    good.run_clean();

    let expired = format!("{}:carol", unix_now() - 60);
    let mut bad = good.clone();
    bad.password = Some(turn_core::auth::rest_password(
        relay.secret.as_bytes(),
        &expired,
    ));
    bad.username = expired;
    expect_refused(&bad, "Cannot complete Allocation");
    if relay.has_metrics() {
        relay.wait_metrics("auth_failures{reason=expired}", |m| {
            m.sum("nexrtc_relay_auth_failures_total", &[("reason", "expired")]) >= 1.0
        });
    }
}

#[test]
fn loopback_peer_is_forbidden_by_default() {
    if !coturn_tools() {
        return;
    }
    // No --allow-loopback-peers: 127.0.0.0/8 is in the default blocklist. The
    // peer is 127.0.0.2, not the relay's own address 127.0.0.1 (which stays
    // reachable for client-to-client relaying; see the next test).
    let relay = Relay::start(RelayConfig::new(slot::BLOCKED_PEER).deny_loopback_peers());
    let peer = EchoPeer::start();
    let mut u = Uclient::new(&relay, &peer).flag("-s").flag("-c");
    u.peer_ip = "127.0.0.2".to_owned();
    expect_refused(&u, "403");
    if relay.has_metrics() {
        relay.wait_metrics("a 403 answer", |m| {
            m.sum("nexrtc_relay_error_responses_total", &[("code", "403")]) >= 1.0
        });
        let m = relay.metrics();
        assert_eq!(
            m.sum("nexrtc_relay_packets_total", &[("direction", "to_peer")]),
            0.0,
            "nothing may reach a forbidden peer\n{}",
            m.0
        );
    }
}

/// The relay's own address (here 127.0.0.1) stays a valid peer so two clients
/// of one relay can talk, but only its relay ports: a service on another port
/// of the relay host must stay unreachable through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_host_services_are_not_reachable_as_peers() {
    // With its QUIC relay on: a bound CONNECT-UDP tunnel is held to the same rule.
    let quic = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let mut config = RelayConfig::new(slot::RELAY_HOST_PEER).deny_loopback_peers();
    if backend() == Backend::Nexrtc {
        config = config.arg("--quic-listen").arg(&quic.to_string());
    }
    let relay = tokio::task::spawn_blocking(|| Arc::new(Relay::start(config)))
        .await
        .expect("start relay");
    // A "service" on the relay's host, outside the relay port range.
    let service = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind service");
    let service_addr = service.local_addr().expect("service addr");
    let (client, relay_conn) = allocate_webrtc_rs(&relay, "erin").await;

    let sent = timeout(STEP, relay_conn.send_to(b"knock knock", service_addr))
        .await
        .expect("send timed out");
    match sent {
        // Refused outright (403 on CreatePermission): fine.
        Err(e) => eprintln!("refused at CreatePermission: {e}"),
        // Or permitted by IP (the relay's own) and dropped at the port: counted.
        Ok(_) => {
            if relay.has_metrics() {
                let r = Arc::clone(&relay);
                tokio::task::spawn_blocking(move || {
                    r.wait_metrics("a denied_peer drop", |m| {
                        m.sum(
                            "nexrtc_relay_dropped_packets_total",
                            &[("reason", "denied_peer")],
                        ) >= 1.0
                    });
                })
                .await
                .expect("metrics check");
            }
        }
    }
    if backend() == Backend::Nexrtc && quic_client_available() {
        bound_tunnel_reaches_relay_ports_only(&relay, quic, service_addr, &relay_conn).await;
    }
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(500), service.recv_from(&mut buf))
            .await
            .is_err(),
        "a packet reached a non-relay port of the relay host"
    );
    client.close().await.expect("close");
}

/// A bound tunnel (Connect-UDP-Bind) on the relay's QUIC listener, loopback peers denied:
/// its port comes from the relay range, a TURN allocation of the same relay and it reach
/// each other (as two WebRTC peers would: each is on a port the relay holds), and the
/// host's service stays out of reach (refused as a compressed context, dropped per
/// datagram as an uncompressed one).
async fn bound_tunnel_reaches_relay_ports_only(
    relay: &Relay,
    quic: std::net::SocketAddr,
    service: std::net::SocketAddr,
    turn: &impl Conn,
) {
    let relayed = turn.local_addr().expect("relayed address");
    let (username, password) = relay.credentials("quin");
    let script = serde_json::json!([
        {"assign": 2, "peer": null},
        {"send": 2, "peer": service.to_string(), "size": 10},
        {"assign": 4, "peer": service.to_string()},
        {"send": 2, "peer": relayed.to_string(), "size": 300},
        {"receive": 1, "within": 5},
    ]);
    let steps = serde_json::json!([{"target": "*", "bind": true,
        "auth": format!("{username}:{password}"), "script": script}]);
    let client = tokio::task::spawn_blocking(move || masque(quic, steps));
    // The TURN side answers what the tunnel sent, to where it came from.
    let mut buf = [0u8; 1500];
    let (n, from) = timeout(Duration::from_secs(10), turn.recv_from(&mut buf))
        .await
        .expect("the tunnel's datagram reached the allocation")
        .expect("recv");
    assert_eq!(n, 300);
    turn.send_to(&buf[..n], from).await.expect("answer");
    let steps = client.await.expect("the CONNECT-UDP client");
    let tunnel = &steps[0]["tunnels"][0];
    let public: std::net::SocketAddr = (tunnel["headers"]["proxy-public-address"].as_str())
        .expect("Proxy-Public-Address")
        .trim_matches('"')
        .parse()
        .expect("an address");
    assert_eq!(public, from, "{tunnel}");
    assert!((relay.min_port..=relay.max_port).contains(&public.port()));
    let results = &tunnel["echo"];
    assert_eq!(results[0], "ack", "{tunnel}");
    assert_eq!(results[2], "close", "{tunnel}");
    assert_eq!(
        results[4],
        serde_json::json!([{"context": 2, "peer": relayed.to_string(), "size": 300, "intact": true}])
    );
}

#[test]
fn allowed_peer_ip_overrides_the_blocklist() {
    if !coturn_tools() {
        return;
    }
    // The peer is on another loopback address than the relay's own: those
    // are peers only on the relay's live ports, whatever the allow list says
    // (`relay_host_services_are_not_reachable_as_peers`).
    let relay = Relay::start(
        RelayConfig::new(slot::ALLOWED_PEER_IP)
            .deny_loopback_peers()
            .arg("--allowed-peer-ip")
            .arg("127.0.0.5"),
    );
    let peer = EchoPeer::start_on("127.0.0.5");
    control_run(&relay, &peer);
}

#[test]
fn user_quota_refuses_allocations_beyond_it() {
    if !coturn_tools() {
        return;
    }
    // uclient makes a throwaway "probe" allocation before each real one and
    // leaves it to expire, so one client holds two allocations (coturn counts
    // the same way).
    let relay = Relay::start(RelayConfig::new(slot::QUOTA).arg("--user-quota").arg("2"));
    let peer = EchoPeer::start();
    // Two allocations for one user: within quota.
    let mut one = Uclient::new(&relay, &peer).flag("-s").flag("-c");
    one.username = "quota-one".to_owned();
    one.messages = 10;
    one.run_clean();
    // Four for another user: refused with 486.
    let mut two = one.clone();
    two.username = "quota-two".to_owned();
    two.clients = 2;
    expect_refused(&two, "486");
    if relay.has_metrics() {
        relay.wait_metrics("a 486 answer", |m| {
            m.sum("nexrtc_relay_error_responses_total", &[("code", "486")]) >= 1.0
        });
    }
}

/// A STUN Binding request (RFC 8489 §5: type 0x0001, length 0, magic cookie).
fn binding_request(tid: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[tid; 12]);
    m
}

/// Sends a Binding request from `sock` and waits (bounded) for a success answer.
fn binding_answered(sock: &UdpSocket, relay: &Relay) -> bool {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    for attempt in 0..10u8 {
        let req = binding_request(0x50 + attempt);
        sock.send_to(&req, relay.addr()).expect("send binding");
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            // 0x0101 = Binding success; the transaction id must be ours.
            if n >= 20 && buf[0..2] == [0x01, 0x01] && buf[8..20] == req[8..20] {
                return true;
            }
        }
    }
    false
}

/// Datagrams no TURN server can make sense of. Each is malformed STUN or
/// ChannelData, or neither (first two bits 0b10/0b11).
fn garbage_datagrams() -> Vec<Vec<u8>> {
    let mut out = vec![
        vec![0x00],                               // one byte
        binding_request(1)[..10].to_vec(),        // STUN header cut in half
        vec![0xff; 64],                           // neither STUN nor ChannelData
        vec![0x80, 0x01, 0x00, 0x00, 0xde, 0xad], // neither, short
        vec![0x40, 0x00, 0x00, 0x64, 1, 2, 3],    // ChannelData claiming 100 bytes, has 3
        vec![0x40, 0x00],                         // ChannelData header cut in half
    ];
    // STUN header claiming 100 bytes of attributes that are not there.
    let mut long = binding_request(2);
    long[2..4].copy_from_slice(&100u16.to_be_bytes());
    out.push(long);
    // An attribute whose length runs past the end of the message.
    let mut overrun = binding_request(3);
    overrun[2..4].copy_from_slice(&8u16.to_be_bytes());
    overrun.extend_from_slice(&[0x00, 0x06, 0x00, 0xc8, b'a', b'b', b'c', b'd']);
    out.push(overrun);
    // A message length that is not a multiple of 4.
    let mut odd = binding_request(4);
    odd[2..4].copy_from_slice(&3u16.to_be_bytes());
    odd.extend_from_slice(&[1, 2, 3]);
    out.push(odd);
    out
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    if !coturn_tools() {
        return;
    }
    let mut relay = Relay::start(RelayConfig::new(slot::GARBAGE));
    let peer = EchoPeer::start();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let garbage = garbage_datagrams();
    // Few enough that the relay's socket buffer holds them all on a busy machine.
    const ROUNDS: usize = 5;
    for _ in 0..ROUNDS {
        for d in &garbage {
            sock.send_to(d, relay.addr()).expect("send garbage");
        }
    }
    // Nothing comes back for garbage (no amplification, no error answers)...
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    if let Ok((n, _)) = sock.recv_from(&mut buf) {
        panic!(
            "the relay answered garbage with {n} bytes: {:02x?}",
            &buf[..n]
        );
    }
    relay.assert_alive();
    // ...the very same source is still served...
    assert!(
        binding_answered(&sock, &relay),
        "Binding unanswered after garbage"
    );
    // ...and so are others, end to end.
    control_run(&relay, &peer);
    if relay.has_metrics() {
        let sent = (garbage.len() * ROUNDS) as f64;
        relay.wait_metrics("every garbage datagram dropped as malformed", |m| {
            m.sum(
                "nexrtc_relay_dropped_packets_total",
                &[("reason", "malformed")],
            ) >= sent
        });
    }
}

/// Waits (bounded) until the relay closes `stream`; returns whether it did.
fn closed_by_relay(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // e.g. an error answer before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

#[test]
fn tcp_garbage_and_stalled_partial_frames_are_closed() {
    if !coturn_tools() {
        return;
    }
    let mut relay = Relay::start(RelayConfig::new(slot::TCP_STALL));
    let peer = EchoPeer::start();

    // A client that sends half a STUN header and then nothing...
    let mut half_header = TcpStream::connect(relay.addr()).expect("connect");
    half_header
        .write_all(&binding_request(7)[..10])
        .expect("write");
    // ...and one that promises 100 bytes of attributes and sends 8.
    let mut half_body = TcpStream::connect(relay.addr()).expect("connect");
    let mut frame = binding_request(8);
    frame[2..4].copy_from_slice(&100u16.to_be_bytes());
    frame.extend_from_slice(&[0u8; 8]);
    half_body.write_all(&frame).expect("write");
    // A TCP client that sends bytes that are neither STUN nor ChannelData.
    let mut garbage = TcpStream::connect(relay.addr()).expect("connect");
    garbage.write_all(&[0xff; 32]).expect("write");

    // Others are served meanwhile, over TCP too.
    let mut tcp = Uclient::new(&relay, &peer).flag("-t").flag("-s").flag("-c");
    tcp.messages = 10;
    tcp.run_clean();

    assert!(
        closed_by_relay(&mut garbage, Duration::from_secs(10)),
        "a TCP connection sending garbage must be closed"
    );
    // The relay closes partial frames that stall (about 10 s); give it 30.
    assert!(
        closed_by_relay(&mut half_header, Duration::from_secs(30)),
        "a stalled half STUN header must be closed"
    );
    assert!(
        closed_by_relay(&mut half_body, Duration::from_secs(30)),
        "a stalled half STUN body must be closed"
    );
    relay.assert_alive();
    if relay.has_metrics() {
        relay.wait_metrics("stalled and garbage streams counted", |m| {
            m.sum(
                "nexrtc_relay_dropped_packets_total",
                &[("reason", "stream_stalled")],
            ) >= 2.0
                && m.sum(
                    "nexrtc_relay_dropped_packets_total",
                    &[("reason", "malformed")],
                ) >= 1.0
        });
    }
    control_run(&relay, &peer);
}

/// A nonce past its lifetime gets 438 Stale Nonce with a fresh nonce, and a
/// client that retries with it carries on (RFC 8489 §9.2.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_nonce_is_renewed_with_438() {
    let relay = tokio::task::spawn_blocking(|| {
        Relay::start(
            RelayConfig::new(slot::STALE_NONCE)
                .arg("--stale-nonce")
                .arg("2"),
        )
    })
    .await
    .expect("start relay");
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo addr");

    let (client, relay_conn) = allocate_webrtc_rs(&relay, "dave").await;

    // Let the nonce go stale, then need a new permission (an authenticated request).
    tokio::time::sleep(Duration::from_secs(3)).await;
    timeout(
        STEP,
        relay_conn.send_to(b"after the nonce expired", echo_addr),
    )
    .await
    .expect("send timed out")
    .expect("CreatePermission after 438 and retry");
    let mut buf = [0u8; 256];
    let (n, from) = timeout(STEP, echo.recv_from(&mut buf))
        .await
        .expect("the packet never reached the peer")
        .expect("peer recv");
    assert_eq!(&buf[..n], b"after the nonce expired");
    assert_eq!(from, relay_conn.local_addr().expect("relayed addr"));

    if relay.has_metrics() {
        tokio::task::spawn_blocking(move || {
            relay.wait_metrics("a 438 answer", |m| {
                m.sum("nexrtc_relay_error_responses_total", &[("code", "438")]) >= 1.0
            });
        })
        .await
        .expect("metrics check");
    }
    client.close().await.expect("close");
}
