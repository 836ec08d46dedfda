//! A relay that stops cleanly leaves the controller's registry when its process exits,
//! not when its heartbeats are missed or its lease ends: `nexrtc relay` drained by
//! SIGTERM, and the standalone `nexrtc agent` beside a TURN server stopped by SIGTERM.
//! Real processes on loopback, the controller on its embedded store.
//!
//! The controller here keeps a silent relay for its whole 30 s lease (`lease_only`), so
//! a relay still listed a second after its exit was not removed by a leave.

mod support;

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use support::*;

/// The lease, long enough that only a leave can explain a removal within a second.
const LEASE_TTL: u64 = 30;
/// How soon after the process exits the relay must be gone from the admin list (the
/// leave happens before the exit; the rest is polling slack).
const GONE_WITHIN: Duration = Duration::from_secs(1);

fn controller() -> Controller {
    Controller::start(
        &ControllerSetup::embedded(LEASE_TTL, 500)
            .lease_only()
            .offer_all()
            .region("eu-west", 53.35, -6.26),
    )
}

fn listed(controller: &Controller, id: &str) -> bool {
    controller.registered().iter().any(|r| r == id)
}

fn until_listed(controller: &Controller, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listed(controller, id) {
        assert!(Instant::now() < deadline, "{id} never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(process: &ChildGuard) {
    let sent = Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -TERM failed");
}

/// Sends SIGTERM, waits (bounded) for the exit, then asserts `id` is gone from
/// `GET /v1/admin/relays` within [`GONE_WITHIN`] of it. Returns the exit status.
fn stop_and_check_gone(controller: &Controller, process: &mut ChildGuard, id: &str) -> ExitStatus {
    sigterm(process);
    let status = process
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("{id} did not exit: {}", process.log_tail(20)));
    let exited = Instant::now();
    while listed(controller, id) {
        assert!(
            exited.elapsed() < GONE_WITHIN,
            "{id} still registered {:?} after its process exited: {}",
            exited.elapsed(),
            process.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "MEASURED: {id} gone from the admin list {:?} after its exit",
        exited.elapsed()
    );
    status
}

#[test]
fn a_stopped_relay_or_agent_leaves_the_registry_when_it_exits() {
    let controller = controller();
    let mut relay = controller.relay(slot::LEAVE, "eu-west", "r1");
    until_listed(&controller, "eu-west/r1");

    // The standalone agent, reporting the relay above as if it were coturn beside it
    // (health from STUN Binding).
    let turn = SocketAddr::from((relay.host, relay.port));
    let mut args = controller.agent_args(&[controller.url()], "eu-west", "side1");
    args.extend(["--advertise".to_owned(), format!("udp:{turn}")]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg("agent")
        .args(["--turn-stun", &turn.to_string()])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(&args)
        .env("RUST_LOG", "info");
    let mut agent = ChildGuard::spawn("nexrtc-agent-leave", &mut cmd);
    until_listed(&controller, "eu-west/side1");

    let status = stop_and_check_gone(&controller, &mut agent, "eu-west/side1");
    assert!(status.success(), "agent exit: {status:?}");
    assert!(
        listed(&controller, "eu-west/r1"),
        "the relay left with the agent"
    );

    // No allocations: SIGTERM drains at once and the relay exits.
    let status = stop_and_check_gone(&controller, &mut relay.process, "eu-west/r1");
    assert!(status.success(), "relay exit: {status:?}");
    // No relay left: the ICE API may answer 201 with none, or refuse; either way not r1.
    if let Some(answer) = controller.ice_servers_lenient() {
        assert!(!offers(&answer, relay.port), "still offered: {answer}");
    }
    assert!(
        relay
            .process
            .log_text()
            .contains("left the controller's registry"),
        "{}",
        relay.process.log_tail(20)
    );
}
