//! `nexrtc agent` beside coturn: the load source refuses what is not coturn's
//! metrics (our relay's `/metrics`, which shares coturn's default port 9641, any
//! non-Prometheus text, a closed port) with a sentence saying which; and
//! `--turn-stun` keeps Debian's `turnserver` (built without Prometheus)
//! registered from STUN Binding answers, with coturn's version.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use nexrtc_edge_agent::{CoturnLoad, LoadSource, StunHealth};
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The error of one sample of `source` (which must fail).
fn sample_error(source: &mut impl LoadSource) -> String {
    match runtime().block_on(source.sample()) {
        Ok(s) => panic!("expected a refusal, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// An HTTP server on loopback answering every request with `body` (200, text/plain).
fn plain_http(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn what_is_not_coturns_metrics_is_refused_with_a_reason() {
    // Our relay's /metrics: Prometheus text, but not coturn's.
    let relay = Relay::start(RelayConfig::new(slot::COTURN_AGENT));
    let url = format!("http://{}/metrics", relay.metrics_addr);
    let mut load = CoturnLoad::new(&url, 0).expect("client");
    let e = sample_error(&mut load);
    assert!(
        e.contains("this is a NexRTC relay's /metrics, not coturn's"),
        "{e}"
    );

    let html = plain_http("<html><body>It works!</body></html>\n");
    let mut load = CoturnLoad::new(&format!("http://{html}/metrics"), 0).expect("client");
    let e = sample_error(&mut load);
    assert!(e.contains("not Prometheus text"), "{e}");

    let other = plain_http("# TYPE node_load1 gauge\nnode_load1 0.5\n");
    let mut load = CoturnLoad::new(&format!("http://{other}/metrics"), 0).expect("client");
    let e = sample_error(&mut load);
    assert!(e.contains("without coturn's metric families"), "{e}");

    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut load = CoturnLoad::new(&format!("http://{closed}/metrics"), 0).expect("client");
    let e = sample_error(&mut load);
    assert!(e.contains("connection refused"), "{e}");

    let mut stun = StunHealth::new(SocketAddr::from(([127, 0, 0, 1], free_udp_port())));
    let e = sample_error(&mut stun);
    assert!(e.contains("no STUN answer"), "{e}");

    // The whole agent, as the README's user ran it: it says why and does not register.
    let controller =
        Controller::start(&ControllerSetup::embedded(5, 500).region("eu-west", 53.35, -6.26));
    let mut args = controller.agent_args(&[controller.url()], "eu-west", "coturn1");
    args.extend(["--advertise".to_owned(), "udp:127.0.0.1:3479".to_owned()]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg("agent")
        .args(["--turn-metrics", &url])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(&args)
        .env("RUST_LOG", "info");
    let agent = ChildGuard::spawn("nexrtc-agent-wrong-metrics", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.log_text().contains("not coturn's") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            agent.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(controller.registered().is_empty(), "registered anyway");
    let log = agent.log_text();
    assert!(!log.contains('\x1b'), "colour codes in a log file: {log}");
}

#[test]
fn turn_stun_keeps_debians_turnserver_registered_with_its_version() {
    if require_tool("turnserver", "coturn").is_none() {
        return;
    }
    let controller = Controller::start(
        &ControllerSetup::embedded(3, 500)
            .lease_only()
            .region("eu-west", 53.35, -6.26),
    );
    let port = free_port();
    let secret = &controller.keys.tenant_secret;
    let mut cmd = turnserver("127.0.0.1", port, slot::COTURN_STUN, "coturn.test", secret);
    let mut coturn = ChildGuard::spawn("coturn-turnserver", &mut cmd);
    let coturn_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut args = controller.agent_args(&[controller.url()], "eu-west", "coturn1");
    args.extend(["--advertise".to_owned(), format!("udp:{coturn_addr}")]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg("agent")
        .args(["--turn-stun", &coturn_addr.to_string()])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(&args)
        .env("RUST_LOG", "info");
    let agent = ChildGuard::spawn("nexrtc-agent-stun", &mut cmd);

    let (answer, _) = controller.until("coturn registered", Duration::from_secs(30), |a| {
        offers(a, port)
    });
    assert_eq!(answer["regions"][0], "eu-west");
    let (status, report) = controller.admin("GET", "/v1/status", None);
    assert_eq!(status, 200, "{report}");
    let relay = report["relays"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["node"] == "coturn1"))
        .unwrap_or_else(|| panic!("coturn1 in {report}"))
        .clone();
    let version = relay["version"].as_str().unwrap_or_default();
    // Debian's turnserver names itself in SOFTWARE: "Coturn-4.6.1 'Gorst'".
    assert!(version.starts_with("Coturn-"), "{version}");
    assert!(version.contains("(agent "), "{version}");
    assert_eq!(relay["load"]["allocations"], 0, "allocations unknown: 0");
    assert_eq!(relay["load"]["capacity"], 0, "capacity unknown: 0");

    // coturn gone: no more STUN answers, heartbeats stop, it leaves the answers.
    coturn.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while controller
        .registered()
        .contains(&"eu-west/coturn1".to_owned())
    {
        assert!(Instant::now() < deadline, "stopped coturn still registered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        agent.log_text().contains("no STUN answer"),
        "{}",
        agent.log_tail(20)
    );
}
