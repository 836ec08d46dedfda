//! Starting and stopping `nexrtc relay`: what the operator sees when the
//! configuration cannot work, and how long a stop takes.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, rest_credentials, ChildGuard, TurnClient};

const SECRET: &str = "s3cret";

fn relay_cmd(extra: &[&str]) -> Command {
    relay_cmd_on(free_port(), extra)
}

fn relay_cmd_on(port: u16, extra: &[&str]) -> Command {
    let port = port.to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.args([
        "relay",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        &port,
    ])
    .args(["--realm", "start.test", "--static-auth-secret", SECRET])
    .args(["--no-tls", "--metrics-listen", "127.0.0.1:0"])
    .args(extra);
    cmd
}

/// A relay IP that is on none of this host's interfaces (TEST-NET-1: binding
/// fails locally, nothing is sent) must stop the start, naming the address
/// and the fix, rather than start "healthy" and refuse every Allocate.
#[test]
fn a_relay_ip_not_on_this_host_refuses_to_start() {
    for extra in [&[][..], &["--multiplex-peer"][..]] {
        let mut args = vec!["--relay-ip", "192.0.2.55"];
        args.extend_from_slice(extra);
        let mut relay = ChildGuard::spawn("relay", &mut relay_cmd(&args));
        let status = relay
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{extra:?}: the relay started: {}", relay.log_tail(20)));
        assert_eq!(status.code(), Some(1), "{extra:?}");
        let log = relay.log_text();
        assert!(
            log.contains("relay IP 192.0.2.55 is not an address of this host")
                && log.contains("--external-ip"),
            "{extra:?}: {log}"
        );
    }
}

/// A client that allocates (with the 401 round trip) and holds the allocation;
/// it retransmits every 200 ms for up to 20 s, as the relay may still be starting.
fn allocate(server: SocketAddr) -> TurnClient {
    let (username, password) = rest_credentials(SECRET, "held");
    let mut client = TurnClient::udp(server, &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_secs(20));
    assert_eq!(client.allocate().code(), 200, "Allocate refused");
    client
}

fn signal(relay: &ChildGuard, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &relay.pid().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name}");
}

/// Ctrl-C drains (the allocation held keeps the relay up, with a countdown
/// on stderr saying how to stop now); a second Ctrl-C stops it at once.
#[test]
fn a_second_sigint_stops_a_draining_relay_at_once() {
    let port = free_port();
    let mut relay = ChildGuard::spawn(
        "relay",
        &mut relay_cmd_on(port, &["--relay-ip", "127.0.0.1", "--no-tcp"]),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let _held = allocate(server);

    signal(&relay, "INT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !relay.log_text().contains("1 allocation left, exit in") {
        assert!(
            Instant::now() < deadline,
            "no countdown: {}",
            relay.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(relay.log_text().contains("again to stop now"));
    assert!(relay.exited().is_none(), "stopped with an allocation held");

    let asked = Instant::now();
    signal(&relay, "INT");
    let status = relay
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after the second SIGINT"));
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

/// An empty node token (flag or environment) is refused before anything
/// starts, naming the flag; the controller would only answer 401 later.
#[test]
fn an_empty_node_token_is_refused_at_start() {
    let agent = ["--controller", "http://127.0.0.1:9", "--region", "r"];
    let mut flag = relay_cmd(&agent);
    flag.args(["--node-token", ""]);
    let mut env = relay_cmd(&agent);
    env.env("NEXRTC_NODE_TOKEN", "");
    let mut standalone = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    standalone
        .arg("agent")
        .args(agent)
        .env("NEXRTC_NODE_TOKEN", "");
    for (what, mut cmd) in [("flag", flag), ("env", env), ("agent", standalone)] {
        let mut p = ChildGuard::spawn("relay", &mut cmd);
        let status = p
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{what}: started: {}", p.log_tail(20)));
        assert_eq!(status.code(), Some(2), "{what}: {}", p.log_text());
        let log = p.log_text();
        assert!(
            log.contains("--node-token") && log.contains("empty"),
            "{what}: {log}"
        );
    }
}
