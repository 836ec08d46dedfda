//! The network as users meet it, every part a real process on loopback: a
//! controller (embedded store), relays that register through their in-process
//! edge agent, an app server asking the ICE-config API for credentials, and
//! coturn's client using them — against our relay and against coturn itself.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The controller's lease TTL in these tests (seconds).
const LEASE_TTL: u64 = 2;

struct Controller {
    addr: SocketAddr,
    node_key: String,
    ice_key: String,
    tenant_secret: String,
    _process: ChildGuard,
}

fn api_key() -> String {
    format!("nxk_{}", random_token(""))
}

impl Controller {
    fn start() -> Controller {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (admin_key, node_key, ice_key) = (api_key(), api_key(), api_key());
        let tenant_secret = random_token("t");
        let config = format!(
            r#"
listen = "{addr}"
lease_ttl_secs = {LEASE_TTL}
heartbeat_interval_ms = 500

[bootstrap]
admin_key = "{admin_key}"
node_key = "{node_key}"
ice_key = "{ice_key}"
tenant = "acme"
tenant_secret = "{tenant_secret}"

[[bootstrap.regions]]
name = "eu-west"
lat = 53.35
lon = -6.26

[[bootstrap.regions]]
name = "eu-central"
lat = 50.11
lon = 8.68
"#
        );
        let file = temp_file("controller-toml", &config);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
        cmd.arg("controller").arg("--config").arg(&file);
        let mut process = ChildGuard::spawn("nexrtc-controller", &mut cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(addr, "/readyz"), Ok((200, _))) {
            assert!(
                process.exited().is_none(),
                "controller exited: {}",
                process.log_tail(40)
            );
            assert!(
                Instant::now() < deadline,
                "controller not ready: {}",
                process.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Controller {
            addr,
            node_key,
            ice_key,
            tenant_secret,
            _process: process,
        }
    }

    /// A relay in `region` whose agent registers with this controller.
    fn relay(&self, slot: u16, region: &str, node: &str) -> Relay {
        Relay::start(
            RelayConfig::new(slot)
                .arg("--controller")
                .arg(&format!("http://{}", self.addr))
                .arg("--node-token")
                .arg(&self.node_key)
                .arg("--region")
                .arg(region)
                .arg("--node")
                .arg(node)
                .arg("--probe-interval")
                .arg("0"),
        )
    }

    /// Polls the ICE API until `pred` holds; returns the answer and how long it took.
    fn until(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let answer = self.ice_servers_lenient();
            if let Some(a) = answer.filter(|a| pred(a)) {
                return (a, start.elapsed());
            }
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `POST /v1/ice-servers` as an app server does; `None` unless 201.
    fn ice_servers_lenient(&self) -> Option<Value> {
        let body = json!({"ttl": 600, "user": "alice"}).to_string();
        match http_post(self.addr, "/v1/ice-servers", &self.ice_key, &body) {
            Ok((201, text)) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }
}

/// Whether an ICE answer offers the relay listening on `port`.
fn offers(answer: &Value, port: u16) -> bool {
    let needle = format!("127.0.0.1:{port}");
    answer["iceServers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["urls"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .any(|u| u.contains(&needle))
}

fn credentials(answer: &Value) -> (String, String) {
    let username = answer["username"].as_str().expect("username").to_owned();
    let password = answer["password"].as_str().expect("password").to_owned();
    (username, password)
}

/// uclient with explicit long-term credentials (what a browser would hold).
fn uclient_with(server_port: u16, peer: &EchoPeer, username: &str, password: &str) -> Uclient {
    Uclient {
        flags: vec!["-c"],
        messages: 20,
        clients: 1,
        length: 120,
        interval_ms: 20,
        username: username.to_owned(),
        password: Some(password.to_owned()),
        secret: None,
        peer_ip: "127.0.0.1".to_owned(),
        peer_port: peer.port,
        server_port,
    }
}

#[test]
fn ice_api_credentials_relay_through_our_relay_and_through_coturn() {
    if !require_tool("turnutils_uclient") || !require_tool("turnserver") {
        return;
    }
    let controller = Controller::start();
    let relay = controller.relay(slot::NETWORK_ICE, "eu-west", "relay-a");
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
    let min = 61_000 + slot::NETWORK_COTURN * 100;
    let mut cmd = Command::new("turnserver");
    cmd.args([
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file",
        "stdout",
    ])
    .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
    .args(["--listening-port", &port.to_string()])
    .args([
        "--min-port",
        &min.to_string(),
        "--max-port",
        &(min + 99).to_string(),
    ])
    .args(["--realm", "coturn.test", "--use-auth-secret"])
    .args(["--static-auth-secret", &controller.tenant_secret])
    .arg("--allow-loopback-peers")
    .args(["--pidfile", &temp_file("coturn-pid", "").to_string_lossy()])
    .args(["--userdb", &temp_file("coturn-db", "").to_string_lossy()]);
    let _coturn = ChildGuard::spawn("coturn-turnserver", &mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "coturn did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = uclient_with(port, &peer, &username, &password).run_clean();
    assert!(report.recv_msgs > 0);
}

#[test]
fn a_killed_relay_leaves_the_ice_answers_and_a_new_one_enters() {
    let controller = Controller::start();
    let a = controller.relay(slot::NETWORK_KILL_A, "eu-west", "relay-a");
    let b = controller.relay(slot::NETWORK_KILL_B, "eu-central", "relay-b");
    controller.until("both relays registered", Duration::from_secs(20), |ans| {
        offers(ans, a.port) && offers(ans, b.port)
    });

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

    let c = controller.relay(slot::NETWORK_KILL_C, "eu-west", "relay-c");
    let (_, took) = controller.until("new relay offered", Duration::from_secs(20), |ans| {
        offers(ans, c.port)
    });
    eprintln!("a new relay entered the ICE answers {took:?} after it was ready");
}
