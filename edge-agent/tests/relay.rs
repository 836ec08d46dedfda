//! The agent with a real `nexrtc_relay::Relay` and the real controller on
//! 127.0.0.1: pushed secrets and revocations change what the relay accepts (checked with real Allocate
//! requests over UDP); probes measure the relay's RTT and a dead port's loss.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

/// The relay behind the agent's seams exactly as the `nexrtc` binary adapts it
/// (the agent does not depend on the relay crate).
#[path = "../../src/agent_relay.rs"]
mod agent_relay;
mod harness;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use agent_relay::{AttachedRelay, RelayMonitor};
use harness::{Controller, Replica, TOKEN};
use nexrtc_edge_agent::probe::{probe_addr, ProbeSettings};
use nexrtc_edge_agent::{spawn, AgentConfig, AgentHandle, RelayLoad};
use nexrtc_relay::{Relay, RelayConfig, Settings};
use nexrtc_test_support::turn::TurnClient;
use nexrtc_wire::RelayState;
use turn_core::auth::rest_password;

const REALM: &str = "agent-test";

/// A relay on a free loopback UDP port, relaying on `ports` (distinct per
/// test: above the kernel's ephemeral range and apart from tests/ at the root).
fn start_relay(ports: (u16, u16)) -> (Arc<Relay>, SocketAddr) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = Settings {
        realm: Some(REALM.into()),
        static_auth_secret: vec!["old-static-secret".into()],
        listening_ip: vec!["127.0.0.1".parse().unwrap()],
        listening_port: Some(port),
        no_tcp: true,
        no_tls: true,
        min_port: Some(ports.0),
        max_port: Some(ports.1),
        ..Settings::default()
    };
    let relay = Relay::start(&RelayConfig::load(settings).unwrap()).unwrap();
    let addr = relay.bound()[0].addr;
    (Arc::new(relay), addr)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A TURN Allocate over UDP from a fresh socket (401 challenge, then the
/// authenticated request). `Ok(relayed address)` or `Err(error code)`.
fn allocate(relay: SocketAddr, username: &str, password: &str) -> Result<SocketAddr, u16> {
    let answer = TurnClient::udp(relay, username, password)
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .allocate();
    answer.relayed().ok_or_else(|| answer.code())
}

/// Allocates in a blocking thread.
async fn try_allocate(relay: SocketAddr, username: &str, secret: &str) -> Result<SocketAddr, u16> {
    let (u, p) = (
        username.to_owned(),
        rest_password(secret.as_bytes(), username),
    );
    tokio::task::spawn_blocking(move || allocate(relay, &u, &p))
        .await
        .unwrap()
}

async fn eventually_allocates(relay: SocketAddr, username: &str, secret: &str, want_ok: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = try_allocate(relay, username, secret).await;
        if got.is_ok() == want_ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "allocate still {got:?}"
        );
        // Slower than the relay's unauthenticated rate limit (20/s per source).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn agent_config(replica: &Replica, relay: SocketAddr) -> AgentConfig {
    let mut c = AgentConfig::new(vec![replica.url.clone()], TOKEN, "eu-west");
    c.node = Some("relay-1".into());
    let udp = format!("udp:{relay}");
    c.advertise = vec![nexrtc_edge_agent::config::parse_advertised(&udp).unwrap()];
    c.probe_interval = 0;
    c
}

/// The agent of `relay` (at `addr`), as `nexrtc relay --controller` runs it.
fn spawn_agent(replica: &Replica, relay: &Arc<Relay>, addr: SocketAddr) -> AgentHandle {
    spawn(
        agent_config(replica, addr),
        RelayLoad::new(RelayMonitor(relay.monitor()), 1000),
        AttachedRelay(relay.clone()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_secrets_and_revocations_reach_the_relay() {
    let (relay, addr) = start_relay((63500, 63599));
    let exp = unix_now() + 600;
    let alice = format!("{exp}:acme:alice");
    // Before the agent: the static secret works, the controller's does not.
    assert!(
        try_allocate(addr, &format!("{exp}:bob"), "old-static-secret")
            .await
            .is_ok()
    );
    assert_eq!(try_allocate(addr, &alice, "pushed-1").await, Err(401));

    let controller = Controller::new(100, "pushed-1").await;
    let replica = Replica::start(&controller).await;
    let agent = spawn_agent(&replica, &relay, addr);

    // The register answer's secret is accepted; the static one is replaced.
    eventually_allocates(addr, &alice, "pushed-1", true).await;
    assert_eq!(
        try_allocate(addr, &format!("{exp}:carol"), "old-static-secret").await,
        Err(401)
    );

    // Rotation pushed over the stream: new first, old still valid, then old retired.
    eventually(|| agent.status().stream_connected).await;
    controller
        .set_secrets("acme", &["pushed-2", "pushed-1"])
        .await;
    eventually_allocates(addr, &format!("{exp}:acme:dave"), "pushed-2", true).await;
    assert!(try_allocate(addr, &format!("{exp}:acme:erin"), "pushed-1")
        .await
        .is_ok());
    controller.set_secrets("acme", &["pushed-2"]).await;
    eventually_allocates(addr, &format!("{exp}:acme:frank"), "pushed-1", false).await;

    // A revoked username is refused on its next request.
    let mallory = format!("{exp}:acme:mallory");
    assert!(try_allocate(addr, &mallory, "pushed-2").await.is_ok());
    controller.revoke("acme", &mallory, exp).await;
    eventually_allocates(addr, &mallory, "pushed-2", false).await;
    assert_eq!(try_allocate(addr, &mallory, "pushed-2").await, Err(401));

    // Heartbeats carry the relay's live allocations.
    eventually(|| {
        replica
            .log
            .last_heartbeat()
            .is_some_and(|h| h.load.allocations >= 4)
    })
    .await;
    let hb = replica.log.last_heartbeat().unwrap();
    assert_eq!((hb.load.capacity, hb.state), (1000, RelayState::Active));

    // A drain order drains the relay, and the heartbeats say so.
    controller.drain("eu-west", "relay-1", Some(exp)).await;
    eventually(|| relay.is_draining()).await;
    eventually(|| {
        replica
            .log
            .last_heartbeat()
            .is_some_and(|h| h.state == RelayState::Draining)
    })
    .await;
    drop(agent);
}

async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quick() -> ProbeSettings {
    ProbeSettings {
        count: 5,
        spacing: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        bind: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_measure_rtt_and_loss() {
    let (_relay, addr) = start_relay((63600, 63609));
    let live = probe_addr(addr, quick()).await;
    assert_eq!((live.sent, live.rtts.len(), live.loss()), (5, 5, 0.0));
    assert!(live.median().unwrap() > Duration::ZERO);

    let dead_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = probe_addr(dead_port, quick()).await;
    assert_eq!((dead.sent, dead.loss(), dead.median()), (5, 1.0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_probes_its_targets_and_reports() {
    let (relay, addr) = start_relay((63610, 63619));
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let controller = Controller::new(100, "s").await;
    // The targets the registration answer names (relays of other regions); the agent's
    // own region is never among them (the agent skips itself anyway: a unit test in
    // `agent.rs`).
    controller.put_relay("us-east", "r7", addr).await;
    controller.put_relay("ap-south", "r9", dead).await;
    let replica = Replica::start(&controller).await;
    let mut config = agent_config(&replica, addr);
    config.probe_interval = 1;
    config.probe_count = 3;
    let load = RelayLoad::new(RelayMonitor(relay.monitor()), 0);
    let _agent = spawn(config, load, AttachedRelay(relay.clone())).unwrap();

    eventually(|| !replica.log.probes.lock().unwrap().is_empty()).await;
    let report = replica.log.probes.lock().unwrap()[0].clone();
    assert_eq!(
        (report.from_region.as_str(), report.from_node.as_str()),
        ("eu-west", "relay-1")
    );
    assert_eq!(report.results.len(), 2, "{report:?}");
    let to = |region: &str| {
        (report.results.iter())
            .find(|r| r.to_region == region)
            .unwrap_or_else(|| panic!("no result for {region}: {report:?}"))
    };
    let live = to("us-east");
    assert_eq!(
        (live.to_region.as_str(), live.samples, live.loss),
        ("us-east", 3, 0.0)
    );
    assert!(live.rtt_ms.unwrap() > 0.0);
    let lost = to("ap-south");
    assert_eq!(
        (lost.to_node.as_str(), lost.loss, lost.rtt_ms),
        ("r9", 1.0, None)
    );
}

/// A relay that stops cleanly sends its last usage before it leaves: the allocation's
/// time and the minute it was in reach the store at once, not at the next report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_reports_the_last_usage_before_leaving() {
    use nexrtc_controller::store::Store as _;
    let (relay, addr) = start_relay((63700, 63799));
    let controller = Controller::new(100, "usage-secret").await;
    let replica = Replica::start(&controller).await;
    let agent = spawn_agent(&replica, &relay, addr);
    let exp = unix_now() + 600;
    eventually_allocates(addr, &format!("{exp}:acme:alice"), "usage-secret", true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = controller.store.list("usage/").await.unwrap();
    assert!(before.kvs.is_empty(), "no report within the first 10 s");

    agent.leave().await;
    let after = controller.store.list("usage/acme/").await.unwrap();
    assert_eq!(after.kvs.len(), 1, "{:?}", after.kvs);
    let key = &after.kvs[0].key;
    assert!(key.contains("/eu-west/relay-1/"), "{key}");
    let usage: nexrtc_wire::Usage = serde_json::from_slice(&after.kvs[0].value).unwrap();
    // The allocation was alive at least the 300 ms slept; no traffic was relayed.
    assert!(usage.allocation_ms >= 300, "{usage:?}");
    assert_eq!((usage.bytes_to_peer, usage.bytes_to_client), (0, 0));
    assert_eq!(replica.log.leaves().len(), 1);
}
