//! The network as users meet it, every part a real process on loopback: a
//! controller (embedded store), relays that register through their in-process
//! edge agent, an app server asking the ICE-config API for credentials, and
//! coturn's client using them — against our relay and against coturn itself.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The controller's lease TTL in these tests (seconds).
const LEASE_TTL: u64 = 2;

/// A controller on its embedded store with two regions, serving `example.org` over DNS.
fn controller() -> Controller {
    Controller::start(
        &ControllerSetup::embedded(LEASE_TTL, 500)
            .region("eu-west", 53.35, -6.26)
            .region("eu-central", 50.11, 8.68)
            .with_dns(),
    )
}

/// The ports of the relays `_turn._udp.turn.example.org` names (SRV: priority, weight,
/// port, target).
fn srv_ports(controller: &Controller) -> Vec<String> {
    let srv = controller.dig(&["_turn._udp.turn.example.org", "SRV"]);
    (srv.iter())
        .filter_map(|line| line.split(' ').nth(2).map(str::to_owned))
        .collect()
}

/// uclient with explicit long-term credentials (what a browser would hold).
fn uclient_with(server_port: u16, peer: &EchoPeer, username: &str, password: &str) -> Uclient {
    Uclient::with_credentials(server_port, peer, username, password)
}

#[test]
fn ice_api_credentials_relay_through_our_relay_and_through_coturn() {
    if require_tool("turnutils_uclient", "coturn").is_none()
        || require_tool("turnserver", "coturn").is_none()
    {
        return;
    }
    let controller = controller();
    let quic = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let config = RelayConfig::new(slot::NETWORK_ICE)
        .arg("--quic-listen")
        .arg(&quic.to_string());
    let relay = controller.relay_with(config, &[controller.url()], "eu-west", "relay-a");
    let (answer, _) = controller.until("relay registered", Duration::from_secs(20), |a| {
        offers(a, relay.port)
    });
    assert_eq!(answer["regions"][0], "eu-west");
    let (username, password) = credentials(&answer);
    assert!(username.contains(":acme:alice"), "{username}");

    // Our relay took the tenant's secret from the controller (its own
    // --static-auth-secret was replaced by the pushed one).
    let peer = EchoPeer::start();
    let report = uclient_with(relay.port, &peer, &username, &password).run_clean();
    assert!(report.recv_msgs > 0);
    let m = relay.metrics();
    assert!(
        m.sum(
            "nexrtc_relay_packets_total",
            &[("tenant", "acme"), ("direction", "to_peer")]
        ) > 0.0
    );

    // coturn with use-auth-secret and the tenant's secret accepts them too.
    let port = free_port();
    let secret = &controller.keys.tenant_secret;
    let mut cmd = turnserver(
        "127.0.0.1",
        port,
        slot::NETWORK_COTURN,
        "coturn.test",
        secret,
    );
    cmd.arg("--allow-loopback-peers");
    let _coturn = ChildGuard::spawn("coturn-turnserver", &mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "coturn did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = uclient_with(port, &peer, &username, &password).run_clean();
    assert!(report.recv_msgs > 0);

    // The same credentials open a CONNECT-UDP tunnel on the relay's QUIC listener.
    if !quic_client_available() {
        return;
    }
    // The answer names it as an RFC 9298 URI template; expanded, it is the request path.
    let template = answer["connect_udp"][0]
        .as_str()
        .expect("a CONNECT-UDP template");
    let prefix = format!("https://{quic}");
    assert_eq!(
        template,
        format!("{prefix}/.well-known/masque/udp/{{target_host}}/{{target_port}}/")
    );
    let target = template
        .trim_start_matches(&prefix)
        .replace("{target_host}", peer.ip)
        .replace("{target_port}", &peer.port.to_string());
    let auth = format!("{username}:{password}");
    let steps = masque(
        quic,
        json!([{"target": target, "auth": auth, "sizes": [1, 200, 1200]}]),
    );
    let tunnel = &steps[0]["tunnels"][0];
    assert_eq!(tunnel["headers"][":status"], "200", "{tunnel}");
    assert_eq!(tunnel["echo"], json!({"same": 3, "differ": 0, "lost": 0}));
    let m = relay.metrics();
    assert_eq!(
        m.sum("nexrtc_relay_quic_requests_total", &[("outcome", "ok")]),
        1.0
    );
    // In the relay's own families, as transport "quic": a tunnel counts as an allocation.
    let acme_quic = [("tenant", "acme"), ("transport", "quic")];
    let to_peer = [acme_quic[0], acme_quic[1], ("direction", "to_peer")];
    assert_eq!(m.sum("nexrtc_relay_packets_total", &to_peer), 3.0);
    assert_eq!(m.sum("nexrtc_relay_allocations_total", &acme_quic), 1.0);
    // The same credentials through the HTTP/2 fallback on the relay's TLS port (for
    // networks that block UDP): the TLS listener hands the client offering ALPN h2 over.
    if h2_client_available() {
        let tls = SocketAddr::from(([127, 0, 0, 1], relay.tls_port));
        let steps = masque_over(
            "h2",
            tls,
            json!([{"target": target, "auth": auth, "sizes": [1, 200, 1200]}]),
        );
        let tunnel = &steps[0]["tunnels"][0];
        assert_eq!(tunnel["headers"][":status"], "200", "{tunnel}");
        assert_eq!(tunnel["echo"], json!({"same": 3, "differ": 0, "lost": 0}));
        let acme_h2 = [("tenant", "acme"), ("transport", "h2")];
        let m = relay.metrics();
        assert_eq!(m.sum("nexrtc_relay_allocations_total", &acme_h2), 1.0);
    }

    // Revoked through the admin API: the controller pushes it, new tunnels are refused.
    let (status, _) = controller.admin(
        "POST",
        "/v1/admin/revocations",
        Some(&json!({"username": username})),
    );
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let steps = masque(quic, json!([{"target": target, "auth": auth}]));
        if steps[0]["tunnels"][0]["headers"][":status"] == "407" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the QUIC relay"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_relay_leaves_the_ice_answers_and_a_new_one_enters() {
    let controller = controller();
    let a = controller.relay(slot::NETWORK_KILL_A, "eu-west", "relay-a");
    let b = controller.relay(slot::NETWORK_KILL_B, "eu-central", "relay-b");
    controller.until("both relays registered", Duration::from_secs(20), |ans| {
        offers(ans, a.port) && offers(ans, b.port)
    });

    // The DNS answers name both (GeoDNS serves from the same registry view).
    let dns = require_tool("dig", "bind9-dnsutils").is_some();
    if dns {
        let ports = srv_ports(&controller);
        assert!(
            ports.contains(&a.port.to_string()) && ports.contains(&b.port.to_string()),
            "{ports:?}"
        );
        let node = controller.dig(&["relay-a.eu-west.turn.example.org", "A"]);
        assert_eq!(node, ["127.0.0.1"]);
    }

    // kill -9: no deregistration, the lease has to run out.
    let gone_port = a.port;
    drop(a);
    let (answer, took) = controller.until(
        "killed relay gone",
        Duration::from_secs(LEASE_TTL + 10),
        |ans| !offers(ans, gone_port),
    );
    eprintln!("killed relay left the ICE answers after {took:?} (lease TTL {LEASE_TTL} s)");
    assert!(offers(&answer, b.port), "the live relay is still offered");
    if dns {
        // Out of the DNS answers by the time it is out of the ICE answers.
        let ports = srv_ports(&controller);
        assert!(!ports.contains(&gone_port.to_string()), "{ports:?}");
        assert!(ports.contains(&b.port.to_string()), "{ports:?}");
        assert!(controller
            .dig(&["relay-a.eu-west.turn.example.org", "A"])
            .is_empty());
    }

    let c = controller.relay(slot::NETWORK_KILL_C, "eu-west", "relay-c");
    let (_, took) = controller.until("new relay offered", Duration::from_secs(20), |ans| {
        offers(ans, c.port)
    });
    eprintln!("a new relay entered the ICE answers {took:?} after it was ready");
    if dns {
        assert!(srv_ports(&controller).contains(&c.port.to_string()));
        assert_eq!(
            controller.dig(&["relay-c.eu-west.turn.example.org", "A"]),
            ["127.0.0.1"]
        );
    }
}
