//! The QUIC relay against an independent RFC 9298 client (aioquic, `masque_client.py`):
//! byte-exact echoes of every size 1..=1200 through a tunnel (as HTTP Datagrams and as
//! DATAGRAM capsules), many tunnels on one connection, and every refusal with its status
//! and Proxy-Status: no or wrong or expired or revoked credentials, a blocked target, a
//! malformed template, a draining relay. Real sockets on loopback; the client needs
//! python3 with aioquic (`pip install aioquic`), skipped with a notice outside CI.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nexrtc_quic::target::Names;
use nexrtc_quic::{Access, QuicConfig, QuicRelay};
use nexrtc_test_support::tools;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use turn_core::auth::rest_password;
use turn_core::{AllocationLedger, Credentials, Quotas};

const SECRET: &[u8] = b"quic-test-secret";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `username:password` of a TURN REST credential valid until `expiry`.
fn credential(expiry: u64, user: &str) -> String {
    let name = format!("{expiry}:acme:{user}");
    let password = rest_password(SECRET, &name);
    format!("{name}:{password}")
}

/// aioquic present (it is the client); the tools rule's notice (or failure in CI) if not.
fn client_available() -> bool {
    tools::python_module("aioquic", "pip install aioquic==1.7.2")
}

struct Proxy {
    relay: QuicRelay,
    ca: tempfile::TempPath,
    cert: CertificateDer<'static>,
}

fn tls() -> (Arc<rustls::ServerConfig>, String, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .unwrap();
    let der = generated.cert.der().clone();
    (Arc::new(config), generated.cert.pem(), der)
}

/// A proxy on loopback; without path MTU discovery its QUIC datagrams stay at the
/// 1200-byte floor, so the largest payloads take the capsule fallback every time.
fn proxy(allow_loopback: bool) -> Proxy {
    proxy_with(allow_loopback, |_| {})
}

fn proxy_with(allow_loopback: bool, adjust: impl FnOnce(&mut QuicConfig)) -> Proxy {
    let (tls, pem, cert) = tls();
    let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), tls, "quic.test");
    config.peer_filter.allow_loopback(allow_loopback);
    config.mtu_discovery = false;
    adjust(&mut config);
    let mut credentials = Credentials::new();
    credentials
        .insert_tenant("acme", vec![SECRET.to_vec()])
        .unwrap();
    let relay = QuicRelay::start(config, Access::new(Arc::new(credentials))).unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::write(&ca, pem).unwrap();
    Proxy { relay, ca, cert }
}

/// A UDP echo on loopback (a task of the test's runtime).
async fn echo() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Runs the client with `steps` against `proxy`; its report's steps.
async fn run(proxy: &Proxy, steps: Value) -> Vec<Value> {
    run_job(json!({
        "proxy": proxy.relay.local_addr().to_string(),
        "authority": format!("localhost:{}", proxy.relay.local_addr().port()),
        "ca": proxy.ca.to_str().unwrap(),
        "steps": steps,
    }))
    .await
}

/// Runs the client over HTTP/2 against `tls`, a TCP listener whose connections go to the
/// proxy's HTTP/2 fallback (as the relay's TLS port hands them over).
async fn run_h2(proxy: &Proxy, tls: SocketAddr, steps: Value) -> Vec<Value> {
    run_job(json!({
        "transport": "h2",
        "proxy": tls.to_string(),
        "authority": format!("localhost:{}", tls.port()),
        "ca": proxy.ca.to_str().unwrap(),
        "steps": steps,
    }))
    .await
}

async fn run_job(job: Value) -> Vec<Value> {
    let file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::write(&file, job.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/masque_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["steps"].as_array().unwrap().clone()
}

/// Polls `done` every 50 ms for up to 10 s; panics with `state()` if it never holds.
async fn eventually(what: &str, done: impl Fn() -> bool, state: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {}",
            state()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn status(tunnel: &Value) -> &str {
    tunnel["headers"][":status"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_size_echoes_byte_exact_as_datagrams_and_as_capsules() {
    if !client_available() {
        return;
    }
    let proxy = proxy(true);
    let peer = echo().await;
    let auth = credential(unix_now() + 600, "alice");
    let sizes: Vec<usize> = (1..=1200).collect();
    let steps = run(
        &proxy,
        json!([
            {"target": peer.to_string(), "auth": auth, "sizes": sizes},
            {"target": peer.to_string(), "auth": auth, "sizes": [1, 100, 1200], "capsules": true},
        ]),
    )
    .await;
    let datagrams = &steps[0]["tunnels"][0];
    assert_eq!(status(datagrams), "200", "{datagrams}");
    assert_eq!(datagrams["headers"]["capsule-protocol"], "?1");
    assert_eq!(
        datagrams["echo"],
        json!({"same": 1200, "differ": 0, "lost": 0})
    );
    let capsules = &steps[1]["tunnels"][0];
    assert_eq!(capsules["echo"], json!({"same": 3, "differ": 0, "lost": 0}));

    let metrics = proxy.relay.registry().render();
    for line in [
        "nexrtc_relay_quic_requests_total{outcome=\"ok\"} 2",
        "nexrtc_relay_quic_handshakes_total{outcome=\"ok\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    // The payloads too large for the proxy's 1200-byte packets came back as capsules.
    let fallback: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nexrtc_relay_quic_datagrams_as_capsules_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        (20.0..=100.0).contains(&fallback),
        "{fallback} payloads as capsules"
    );
    // Tenant acme's traffic, as the relay's families show it: 1,203 payloads each way,
    // two tunnels, none open once the client is gone.
    let bytes = (sizes.iter().sum::<usize>() + 1301) as u64;
    let want = [1203, bytes, 1203, bytes, 2, 0];
    let acme = || proxy.relay.stats().snapshot();
    eventually(
        "acme's counts",
        || acme() == [("acme".to_owned(), want)],
        || format!("{:?}, want {want:?}", acme()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tunnels_share_one_connection() {
    if !client_available() {
        return;
    }
    let proxy = proxy(true);
    let peers = [echo().await, echo().await];
    let auth = credential(unix_now() + 600, "bob");
    let sizes: Vec<usize> = (1..=40).map(|i| i * 30).collect();
    let steps = run(
        &proxy,
        json!([
            {"target": peers[0].to_string(), "auth": auth, "tunnels": 20, "sizes": sizes},
            {"target": peers[1].to_string(), "auth": auth, "tunnels": 20, "sizes": sizes},
        ]),
    )
    .await;
    for step in &steps {
        let tunnels = step["tunnels"].as_array().unwrap();
        assert_eq!(tunnels.len(), 20);
        for t in tunnels {
            assert_eq!(status(t), "200", "{t}");
            assert_eq!(t["echo"], json!({"same": 40, "differ": 0, "lost": 0}));
        }
    }
    let metrics = proxy.relay.registry().render();
    assert!(metrics.contains("nexrtc_relay_quic_handshakes_total{outcome=\"ok\"} 1"));
    assert!(metrics.contains("nexrtc_relay_quic_requests_total{outcome=\"ok\"} 40"));
    assert_eq!(
        proxy.relay.stats().snapshot()[0].1[4],
        40,
        "tunnels counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_status_and_proxy_status() {
    if !client_available() {
        return;
    }
    let blocking = proxy(false);
    let peer = echo().await;
    let now = unix_now();
    let good = credential(now + 600, "carol");
    let revoked = credential(now + 600, "mallory");
    let name = revoked.rsplit_once(':').unwrap().0.to_owned();
    blocking.relay.access().revoke(&name, now + 60, now);
    let wrong = format!(
        "{}:{}",
        good.rsplit_once(':').unwrap().0,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let steps = run(
        &blocking,
        json!([
            {"target": peer.to_string(), "auth": null},
            {"target": peer.to_string(), "auth": wrong},
            {"target": peer.to_string(), "auth": credential(now - 1, "carol")},
            {"target": peer.to_string(), "auth": revoked},
            // Loopback without the operator's opt-in; private; cloud metadata.
            {"target": peer.to_string(), "auth": good},
            {"target": "10.0.0.1:53", "auth": good},
            {"target": "169.254.169.254:80", "auth": good},
            {"target": "[::1]:53", "auth": good},
            {"target": "/.well-known/masque/udp/10.0.0.1/0/", "auth": good},
            {"target": "/.well-known/masque/udp/a%zz/53/", "auth": good},
            {"target": "/somewhere/else", "auth": good},
        ]),
    )
    .await;
    let first = |i: usize| steps[i]["tunnels"][0].clone();
    for i in 0..4 {
        let t = first(i);
        assert_eq!(status(&t), "407", "step {i}: {t}");
        assert_eq!(
            t["headers"]["proxy-authenticate"],
            "Basic realm=\"quic.test\""
        );
    }
    for i in 4..8 {
        let t = first(i);
        assert_eq!(status(&t), "403", "step {i}: {t}");
        assert_eq!(
            t["headers"]["proxy-status"],
            "nexrtc; error=destination_ip_prohibited"
        );
    }
    for i in 8..11 {
        let t = first(i);
        assert_eq!(status(&t), "400", "step {i}: {t}");
        assert_eq!(
            t["headers"]["proxy-status"],
            "nexrtc; error=http_request_error"
        );
    }
    let metrics = blocking.relay.registry().render();
    for line in [
        "nexrtc_relay_quic_requests_total{outcome=\"unauthorized\"} 4",
        "nexrtc_relay_quic_requests_total{outcome=\"forbidden\"} 4",
        "nexrtc_relay_quic_requests_total{outcome=\"bad_request\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(!metrics.contains("nexrtc_relay_quic_requests_total{outcome=\"ok\"}"));

    // Draining: new tunnels are refused with 503.
    blocking.relay.drain();
    let steps = run(&blocking, json!([{"target": "8.8.8.8:53", "auth": good}])).await;
    let t = &steps[0]["tunnels"][0];
    assert_eq!(status(t), "503", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_count_in_the_turn_quota_ledger() {
    if !client_available() {
        return;
    }
    let ledger = Arc::new(AllocationLedger::new());
    let quotas = Quotas {
        user_allocations: 2,
        ..Quotas::default()
    };
    // dave already holds a TURN allocation on this relay.
    ledger.try_acquire("acme", "dave", &quotas).unwrap();
    let proxy = proxy_with(true, |c| {
        c.ledger = ledger.clone();
        c.quotas = quotas;
    });
    let peer = echo().await;
    let now = unix_now();
    let steps = run(
        &proxy,
        json!([
            {"target": peer.to_string(), "auth": credential(now + 600, "dave"), "tunnels": 2},
            {"target": peer.to_string(), "auth": credential(now + 600, "erin"), "tunnels": 2},
        ]),
    )
    .await;
    let dave = steps[0]["tunnels"].as_array().unwrap();
    assert_eq!(status(&dave[0]), "200");
    assert_eq!(status(&dave[1]), "429", "{}", dave[1]);
    assert_eq!(
        dave[1]["headers"]["proxy-status"],
        "nexrtc; error=connection_limit_reached"
    );
    for t in steps[1]["tunnels"].as_array().unwrap() {
        assert_eq!(status(t), "200", "erin's own quota: {t}");
    }
    // The client is gone: its tunnels gave their places back; dave's TURN one stays.
    eventually(
        "the ledger back to dave's TURN allocation",
        || ledger.total() == 1,
        || format!("{} counted", ledger.total()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_over_its_bandwidth_cap_drops_the_excess() {
    if !client_available() {
        return;
    }
    // 1,000 B/s with a 64 KiB burst, as a TURN allocation's cap.
    let proxy = proxy_with(true, |c| c.quotas.allocation_bytes_per_sec = 1_000);
    let peer = echo().await;
    let sizes = vec![1_000; 100];
    let steps = run(
        &proxy,
        json!([{"target": peer.to_string(), "auth": credential(unix_now() + 600, "fay"),
                "sizes": sizes, "burst": true}]),
    )
    .await;
    let got = &steps[0]["tunnels"][0]["echo"];
    let received = got["received"].as_u64().unwrap();
    // 65,536 bytes of burst are 65 payloads, and a few more refilled over the test.
    assert!((60..=70).contains(&received), "{got}");
    let metrics = proxy.relay.registry().render();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("nexrtc_relay_quic_datagrams_dropped_total{reason=\"bandwidth\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no bandwidth drops in\n{metrics}"));
    assert_eq!(dropped as u64 + received, 100, "{metrics}");
}

/// A DNS server on loopback for two names: `echo.test` → 127.0.0.1, `evil.test` →
/// 10.0.0.1 (A records; other types get an empty answer). Enough of RFC 1035 §4.1 for a
/// stub resolver's queries.
async fn dns() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let query = &buf[..n];
            // The question: labels up to the root, then QTYPE and QCLASS.
            let mut end = 12;
            let mut name = Vec::new();
            while end < n && query[end] != 0 {
                let len = query[end] as usize;
                name.push(String::from_utf8_lossy(&query[end + 1..end + 1 + len]).to_lowercase());
                end += 1 + len;
            }
            let question = &query[12..end + 5];
            let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
            let ip = match name.first().map(String::as_str) {
                Some("echo") => Some([127, 0, 0, 1]),
                Some("evil") => Some([10, 0, 0, 1]),
                _ => None,
            };
            let answer = ip.filter(|_| qtype == 1);
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&query[..2]);
            out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
            out.extend_from_slice(question);
            if let Some(ip) = answer {
                out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                out.extend_from_slice(&ip);
            }
            let _ = socket.send_to(&out, from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_and_the_filter_judges_what_they_resolve_to() {
    if !client_available() {
        return;
    }
    let server = dns().await;
    let proxy = proxy_with(true, |c| c.names = Some(Names::with_server(server)));
    let peer = echo().await;
    let auth = credential(unix_now() + 600, "gus");
    let steps = run(
        &proxy,
        json!([
            {"target": format!("echo.test:{}", peer.port()), "auth": auth, "sizes": [10, 100]},
            {"target": "evil.test:53", "auth": auth},
            {"target": "nowhere.test:53", "auth": auth},
        ]),
    )
    .await;
    let named = &steps[0]["tunnels"][0];
    assert_eq!(status(named), "200", "{named}");
    assert_eq!(named["echo"], json!({"same": 2, "differ": 0, "lost": 0}));
    // A public-looking name that resolves to a private address is that address.
    let evil = &steps[1]["tunnels"][0];
    assert_eq!(status(evil), "403", "{evil}");
    assert_eq!(
        evil["headers"]["proxy-status"],
        "nexrtc; error=destination_ip_prohibited"
    );
    let nowhere = &steps[2]["tunnels"][0];
    assert_eq!(status(nowhere), "502", "{nowhere}");
    assert_eq!(
        nowhere["headers"]["proxy-status"],
        "nexrtc; error=dns_error"
    );
}

/// Churn, as real clients bring it: many short sessions, one after another, from one
/// address (every client here is behind the same loopback "NAT"), each opening tunnels
/// that end when its connection does. Nothing may stay counted: the quota ledger and the
/// open-tunnel count return to zero after every session, and the totals add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_opened_and_closed_in_churn_leave_nothing_counted() {
    if !client_available() {
        return;
    }
    let ledger = Arc::new(AllocationLedger::new());
    let proxy = proxy_with(true, |c| c.ledger = ledger.clone());
    let peer = echo().await;
    let now = unix_now();
    for session in 0..12 {
        let user = format!("churn{}", session % 4);
        let steps = run(
            &proxy,
            json!([{"target": peer.to_string(), "auth": credential(now + 600, &user),
                    "tunnels": 5, "sizes": [64, 64]}]),
        )
        .await;
        for t in steps[0]["tunnels"].as_array().unwrap() {
            assert_eq!(t["echo"], json!({"same": 2, "differ": 0, "lost": 0}), "{t}");
        }
        eventually(
            "every place given back",
            || ledger.total() == 0,
            || format!("session {session}: {} still counted", ledger.total()),
        )
        .await;
    }
    let acme = proxy.relay.stats().snapshot();
    assert_eq!(acme.len(), 1, "{acme:?}");
    let v = acme[0].1;
    assert_eq!((v[0], v[2], v[4], v[5]), (120, 120, 60, 0), "{acme:?}");
}

/// A peer that answers from another address: what arrives on its first socket is sent
/// back to the sender from its second. Returns both addresses.
async fn forwarder() -> (SocketAddr, SocketAddr) {
    let first = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let second = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addrs = (first.local_addr().unwrap(), second.local_addr().unwrap());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = first.recv_from(&mut buf).await {
            let _ = second.send_to(&buf[..n], from).await;
        }
    });
    addrs
}

fn dropped(proxy: &Proxy, reason: &str) -> u64 {
    let metrics = proxy.relay.registry().render();
    let prefix = format!("nexrtc_relay_quic_datagrams_dropped_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn received(context: u64, size: usize) -> Value {
    json!([{"context": context, "size": size, "intact": true}])
}

fn received_from(context: u64, peer: SocketAddr, size: usize) -> Value {
    json!([{"context": context, "peer": peer.to_string(), "size": size, "intact": true}])
}

/// Bound UDP (draft-ietf-masque-connect-udp-listen): one tunnel with the `*` target talks
/// to a peer under a compressed context and to any peer under the uncompressed one, hears
/// a peer it never sent to while the uncompressed context is open and not after it is
/// closed, and reports its public address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_tunnel_talks_to_any_permitted_peer() {
    if !client_available() {
        return;
    }
    let proxy = proxy(true);
    let (a, b) = (echo().await, echo().await);
    let (knock, answer) = forwarder().await;
    let auth = credential(unix_now() + 600, "bea");
    let script = json!([
        {"assign": 2, "peer": null},
        {"assign": 4, "peer": a.to_string()},
        {"send": 4, "size": 100},
        {"receive": 1},
        // 1,200 bytes and the peer's address: over the proxy's 1,200-byte datagrams, so
        // they come back as a DATAGRAM capsule.
        {"send": 2, "peer": b.to_string(), "size": 1200},
        {"receive": 1},
        {"send": 4, "size": 10, "capsule": true},
        {"receive": 1},
        // A peer the client never sent to answers (from its second address).
        {"send": 2, "peer": knock.to_string(), "size": 50},
        {"receive": 1},
        // Without the uncompressed context, only named peers are heard. (The ACK of the
        // next registration says the CLOSE before it was read: a datagram sent earlier
        // could overtake the capsule, and be relayed, as the draft allows.)
        {"close": 2},
        {"assign": 6, "peer": knock.to_string()},
        {"send": 2, "peer": b.to_string(), "size": 20},
        {"send": 6, "size": 30},
        {"receive": 1, "within": 1},
        {"send": 4, "size": 40},
        {"receive": 1},
    ]);
    let steps = run(
        &proxy,
        json!([{"target": "*", "bind": true, "auth": auth, "script": script}]),
    )
    .await;
    let tunnel = &steps[0]["tunnels"][0];
    assert_eq!(status(tunnel), "200", "{tunnel}");
    assert_eq!(tunnel["headers"]["connect-udp-bind"], "?1", "{tunnel}");
    let public = tunnel["headers"]["proxy-public-address"].as_str().unwrap();
    let public: SocketAddr = public.trim_matches('"').parse().unwrap();
    assert_eq!(public.ip(), proxy.relay.local_addr().ip());
    assert_ne!(public.port(), proxy.relay.local_addr().port());
    let r = &tunnel["echo"];
    assert_eq!(r[0], "ack", "{r}");
    assert_eq!(r[1], "ack", "{r}");
    assert_eq!(r[3], received(4, 100), "{r}");
    assert_eq!(r[5], received_from(2, b, 1200), "{r}");
    assert_eq!(r[7], received(4, 10), "{r}");
    assert_eq!(r[9], received_from(2, answer, 50), "{r}");
    assert_eq!(r[11], "ack", "{r}");
    assert_eq!(r[14], json!([]), "{r}");
    assert_eq!(r[16], received(4, 40), "{r}");
    // The datagram under the closed context and the unnamed peer's answer were dropped.
    assert!(dropped(&proxy, "unknown_context") >= 1);
    assert!(dropped(&proxy, "unsolicited") >= 1);
    // One tunnel in the tenant's counts, none open once the client is gone.
    let acme = || proxy.relay.stats().snapshot();
    eventually(
        "the bound tunnel closed",
        || acme().first().is_some_and(|(_, v)| v[4] == 1 && v[5] == 0),
        || format!("{:?}", acme()),
    )
    .await;
}

/// A bound tunnel that names a target: Context ID 0 is that target, as in RFC 9298,
/// beside the contexts the client registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_tunnel_with_a_target_keeps_context_zero_for_it() {
    if !client_available() {
        return;
    }
    let proxy = proxy(true);
    let (a, b) = (echo().await, echo().await);
    let script = json!([
        {"send": 0, "size": 64},
        {"receive": 1},
        {"assign": 2, "peer": b.to_string()},
        {"send": 2, "size": 65},
        {"receive": 1},
    ]);
    let auth = credential(unix_now() + 600, "cyd");
    let steps = run(
        &proxy,
        json!([{"target": a.to_string(), "bind": true, "auth": auth, "script": script}]),
    )
    .await;
    let tunnel = &steps[0]["tunnels"][0];
    assert_eq!(tunnel["headers"]["connect-udp-bind"], "?1", "{tunnel}");
    let r = &tunnel["echo"];
    assert_eq!(r[1], received(0, 64), "{r}");
    assert_eq!(r[2], "ack", "{r}");
    assert_eq!(r[4], received(2, 65), "{r}");
}

/// What the draft forbids: Context ID 0 with the `*` target, an odd (the proxy's) Context
/// ID, a second uncompressed context, an ACK for nothing the proxy assigned, a malformed
/// ASSIGN (each aborts the stream with its error code); a target the filter refuses or of a
/// family the relay does not serve (refused with CLOSE, and dropped per datagram when
/// named in an uncompressed one); half a `*` template, or `*` without the bind header (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_tunnels_refuse_what_the_draft_forbids() {
    if !client_available() {
        return;
    }
    let proxy = proxy(true);
    let auth = credential(unix_now() + 600, "dee");
    let bound =
        |script: Value| json!({"target": "*", "bind": true, "auth": auth, "script": script});
    const DATAGRAM_ERROR: u64 = 0x33;
    const MESSAGE_ERROR: u64 = 0x10e;
    let steps = run(
        &proxy,
        json!([
            bound(json!([{"send": 0, "size": 5}, {"await_reset": 3}])),
            bound(json!([{"assign": 3, "peer": null}, {"await_reset": 3}])),
            bound(json!([{"assign": 2, "peer": null}, {"assign": 4, "peer": null}, {"await_reset": 3}])),
            bound(json!([{"raw": "120102"}, {"await_reset": 3}])),
            bound(json!([{"raw": "11020205"}, {"await_reset": 3}])),
            bound(json!([
                {"assign": 2, "peer": "10.0.0.1:9"},
                {"assign": 4, "peer": "169.254.169.254:80"},
                {"assign": 6, "peer": "[2001:db8::1]:9"},
                {"assign": 8, "peer": null},
                {"send": 8, "peer": "10.0.0.1:9", "size": 5},
                {"send": 8, "peer": "[2001:db8::1]:9", "size": 5},
                {"await_reset": 1},
            ])),
            {"target": "/.well-known/masque/udp/%2A/443/", "bind": true, "auth": auth},
            {"target": "/.well-known/masque/udp/127.0.0.1/%2A/", "bind": true, "auth": auth},
            {"target": "*", "auth": auth},
        ]),
    )
    .await;
    let results = |i: usize| steps[i]["tunnels"][0]["echo"].clone();
    assert_eq!(
        results(0)[1],
        json!({"reset": DATAGRAM_ERROR}),
        "{}",
        steps[0]
    );
    assert_eq!(
        results(1)[1],
        json!({"reset": MESSAGE_ERROR}),
        "{}",
        steps[1]
    );
    assert_eq!(results(2)[0], "ack");
    assert_eq!(
        results(2)[2],
        json!({"reset": MESSAGE_ERROR}),
        "{}",
        steps[2]
    );
    assert_eq!(
        results(3)[1],
        json!({"reset": MESSAGE_ERROR}),
        "{}",
        steps[3]
    );
    assert_eq!(
        results(4)[1],
        json!({"reset": MESSAGE_ERROR}),
        "{}",
        steps[4]
    );
    let refused = results(5);
    assert_eq!(
        refused.as_array().unwrap()[..4],
        [json!("close"), json!("close"), json!("close"), json!("ack")],
        "{refused}"
    );
    assert_eq!(
        refused[6],
        json!({"reset": null}),
        "the tunnel stays: {refused}"
    );
    assert_eq!(dropped(&proxy, "forbidden"), 2);
    for step in &steps[6..=8] {
        assert_eq!(status(&step["tunnels"][0]), "400", "{step}");
    }
}

/// An HTTP/3 client of the proxy (quinn and h3, the proxy's certificate as its root): the
/// endpoint, the QUIC connection and its request sender.
async fn h3_client(
    proxy: &Proxy,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(proxy.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = (endpoint
        .connect(proxy.relay.local_addr(), "localhost")
        .unwrap())
    .await
    .unwrap();
    let (mut driver, requests) = h3::client::builder()
        .enable_extended_connect(true)
        .enable_datagram(true)
        .build::<_, _, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    (endpoint, conn, requests)
}

fn connect_udp(proxy: &Proxy, target: SocketAddr, auth: &str) -> http::Request<()> {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(auth);
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!(
            "https://localhost:{}/.well-known/masque/udp/{}/{}/",
            proxy.relay.local_addr().port(),
            target.ip(),
            target.port()
        ))
        .extension(h3::ext::Protocol::CONNECT_UDP)
        .header("capsule-protocol", "?1")
        .header("proxy-authorization", format!("Basic {auth}"))
        .body(())
        .unwrap()
}

/// A drain sends every connection an HTTP/3 GOAWAY: the client opens no more requests
/// there (h3's client refuses them once it has the GOAWAY), while the tunnel it has keeps
/// relaying; stopping the relay (the drain's deadline) closes the connection with
/// H3_NO_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_sends_goaway_and_open_tunnels_run_until_the_relay_stops() {
    let proxy = proxy(true);
    let peer = echo().await;
    let auth = credential(unix_now() + 600, "gus");
    let (_endpoint, conn, mut requests) = h3_client(&proxy).await;
    let mut stream = requests
        .send_request(connect_udp(&proxy, peer, &auth))
        .await
        .unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    let quarter = stream.id().into_inner() / 4;
    let echoes = |payload: &'static [u8]| {
        let conn = conn.clone();
        async move {
            let mut datagram = vec![quarter as u8, 0];
            datagram.extend_from_slice(payload);
            conn.send_datagram(datagram.clone().into()).unwrap();
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_datagram());
            got.await.unwrap().unwrap() == datagram
        }
    };
    assert!(quarter < 64);
    assert!(echoes(b"before the drain").await);

    proxy.relay.drain();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match requests
            .send_request(connect_udp(&proxy, peer, &auth))
            .await
        {
            Err(e) => {
                eprintln!("after the GOAWAY: {e}");
                break;
            }
            // Sent before the GOAWAY arrived: refused with 503, or reset with
            // H3_REQUEST_REJECTED if past the GOAWAY's stream id (RFC 9114 §5.2).
            Ok(mut refused) => match refused.recv_response().await {
                Ok(response) => assert_eq!(response.status(), 503),
                Err(e) => assert!(format!("{e:?}").contains("H3_REQUEST_REJECTED"), "{e:?}"),
            },
        }
        assert!(tokio::time::Instant::now() < deadline, "no GOAWAY");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(echoes(b"after the GOAWAY").await);

    let closed = conn.closed();
    drop(proxy);
    match closed.await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0x100));
        }
        other => panic!("closed with {other}"),
    }
}

/// A TCP listener on loopback whose connections go to the proxy's HTTP/2 fallback, as
/// the relay's TLS listener hands over the clients that offer ALPN `h2`.
async fn h2_port(proxy: &Proxy) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = proxy.relay.h2_sink();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            assert!(sink.hand_off(stream.into_std().unwrap()));
        }
    });
    addr
}

/// The HTTP/2 fallback (RFC 8441 Extended CONNECT, datagrams as capsules) with the h2
/// package's client: every size 1..=1200 byte-exact, bound UDP with two peers, the same
/// refusals as over HTTP/3, and its traffic counted as transport "h2".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_fallback_relays_like_http3() {
    if !client_available() || !tools::python_module("h2", "pip install h2==4.4.1") {
        return;
    }
    let proxy = proxy(true);
    let tls = h2_port(&proxy).await;
    let (a, b) = (echo().await, echo().await);
    let auth = credential(unix_now() + 600, "hal");
    let sizes: Vec<usize> = (1..=1200).collect();
    let script = json!([
        {"assign": 2, "peer": null},
        {"assign": 4, "peer": a.to_string()},
        {"send": 2, "peer": b.to_string(), "size": 1200},
        {"receive": 1},
        {"send": 4, "size": 99},
        {"receive": 1},
        {"raw": "120102"},
        {"await_reset": 3},
    ]);
    let steps = run_h2(
        &proxy,
        tls,
        json!([
            {"target": a.to_string(), "auth": auth, "sizes": sizes},
            {"target": "*", "bind": true, "auth": auth, "script": script},
            {"target": a.to_string()},
            {"target": "10.0.0.1:9", "auth": auth},
            {"target": "*", "auth": auth},
        ]),
    )
    .await;
    let echoed = &steps[0]["tunnels"][0];
    assert_eq!(status(echoed), "200", "{echoed}");
    assert_eq!(
        echoed["echo"],
        json!({"same": 1200, "differ": 0, "lost": 0})
    );
    let bound = &steps[1]["tunnels"][0];
    assert_eq!(bound["headers"]["connect-udp-bind"], "?1", "{bound}");
    let r = &bound["echo"];
    assert_eq!(r[0], "ack", "{r}");
    assert_eq!(r[3], received_from(2, b, 1200), "{r}");
    assert_eq!(r[5], received(4, 99), "{r}");
    // An ACK from the client is malformed: the stream is reset (PROTOCOL_ERROR).
    assert_eq!(r[7], json!({"reset": 1}), "{r}");
    let refused = |i: usize| steps[i]["tunnels"][0]["headers"].clone();
    assert_eq!(refused(2)[":status"], "407");
    assert_eq!(refused(3)[":status"], "403");
    assert_eq!(
        refused(3)["proxy-status"],
        "nexrtc; error=destination_ip_prohibited"
    );
    assert_eq!(refused(4)[":status"], "400");
    // Counted as transport "h2": two tunnels, none open once the client is gone.
    let h2 = || {
        (proxy.relay.stats().by_transport().into_iter())
            .find(|(_, t, _)| *t == nexrtc_quic::Transport::H2)
            .map(|(_, _, v)| v)
    };
    eventually(
        "the h2 tunnels counted and closed",
        || h2().is_some_and(|v| v[4] == 2 && v[5] == 0 && v[0] >= 1202),
        || format!("{:?}", h2()),
    )
    .await;
}
