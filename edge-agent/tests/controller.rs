//! The agent against the real controller on 127.0.0.1 (`harness`): registration,
//! heartbeats, replica failover, lease expiry, pushed events, the leave on a clean stop. Waits are "eventually
//! within N s"; nothing asserts an upper bound on time.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Controller, Replica, TOKEN};
use nexrtc_edge_agent::{
    spawn, AgentConfig, Apply, ApplyError, Left, LoadError, LoadSource, Sample, LEAVE_TIMEOUT,
};
use nexrtc_wire::*;

/// A load that never changes.
struct FixedLoad(Load);

impl LoadSource for FixedLoad {
    fn sample(&mut self) -> impl Future<Output = Result<Sample, LoadError>> + Send {
        std::future::ready(Ok(Sample {
            load: self.0,
            state: RelayState::Active,
        }))
    }
}

fn load() -> FixedLoad {
    FixedLoad(Load {
        allocations: 7,
        capacity: 100,
        pps_in: 15,
        cpu: 0.25,
        ..Load::default()
    })
}

/// Records what it is asked to apply.
#[derive(Default)]
struct Recorder {
    secrets: Mutex<Vec<Secrets>>,
    revoked: Mutex<Vec<(String, u64)>>,
    drains: Mutex<Vec<DrainOrder>>,
}

impl Apply for Recorder {
    fn set_secrets(&self, secrets: &Secrets) -> Result<(), ApplyError> {
        nexrtc_edge_agent::apply::credentials(secrets)?;
        self.secrets.lock().unwrap().push(secrets.clone());
        Ok(())
    }
    fn revoke(&self, username: &str, until_unix: u64) {
        self.revoked
            .lock()
            .unwrap()
            .push((username.to_owned(), until_unix));
    }
    fn drain(&self, order: &DrainOrder) {
        self.drains.lock().unwrap().push(order.clone());
    }
}

fn config(replicas: &[&Replica]) -> AgentConfig {
    let mut c = AgentConfig::new(
        replicas.iter().map(|r| r.url.clone()).collect(),
        TOKEN,
        "eu-west",
    );
    c.node = Some("relay-1".into());
    c.advertise = vec![nexrtc_edge_agent::config::parse_advertised("udp:127.0.0.1:3478").unwrap()];
    c.probe_interval = 0;
    c.controller_timeout_ms = 1000;
    c
}

/// Polls `check` every 10 ms until it holds; panics after `secs`.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_then_heartbeats_at_the_interval() {
    let controller = Controller::new(50, "s1").await;
    let a = Replica::start(&controller).await;
    let agent = spawn(config(&[&a]), load(), Arc::new(Recorder::default())).unwrap();

    eventually(10, "6 heartbeats", || a.log.heartbeats() >= 6).await;
    assert_eq!(a.log.registrations(), 1);
    let reg = a.log.registrations.lock().unwrap()[0].clone();
    assert_eq!(
        (reg.region.as_str(), reg.node.as_str()),
        ("eu-west", "relay-1")
    );
    let udp = reg.addresses.udp.clone().unwrap();
    assert_eq!((udp.host.as_str(), udp.port), ("127.0.0.1", 3478));
    assert_eq!(reg.transports, [Transport::Udp]);
    assert_eq!(reg.state, RelayState::Active);
    assert_eq!(reg.load.allocations, 7);

    // The lease the controller granted is the one the agent holds and renews.
    let lease = LeaseId(controller.lease("eu-west", "relay-1").await.unwrap());
    let beats = a.log.heartbeats.lock().unwrap().clone();
    assert!(beats
        .iter()
        .all(|(_, h)| h.lease == lease && h.load.cpu == 0.25));
    // The controller's 50 ms, clamped to the agent's floor of 100 ms: 5 gaps take at
    // least ~250 ms.
    let span = beats[5].0 - beats[0].0;
    assert!(
        span >= Duration::from_millis(200),
        "heartbeats too fast: {span:?}"
    );
    let status = agent.status();
    assert_eq!(status.registrations, 1);
    assert_eq!(status.lease, Some(lease));
    assert!(status.heartbeats_ok >= 5);

    // Dropping the handle stops the agent.
    drop(agent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = a.log.heartbeats();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.log.heartbeats(),
        after_drop,
        "heartbeats after the handle was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_to_the_next_replica_without_registering_again() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let b = Replica::start(&controller).await;
    let agent = spawn(config(&[&a, &b]), load(), Arc::new(Recorder::default())).unwrap();

    eventually(10, "3 heartbeats on A", || a.log.heartbeats() >= 3).await;
    eventually(10, "event stream on A", || a.log.stream_opens() == 1).await;
    assert_eq!(b.log.heartbeats(), 0);
    let granted = agent.status().lease.unwrap();
    a.kill().await;

    eventually(10, "3 heartbeats on B", || b.log.heartbeats() >= 3).await;
    eventually(10, "event stream on B", || b.log.stream_opens() >= 1).await;
    // Same lease: B renews what A granted; nobody registered again.
    assert_eq!(b.log.registrations(), 0);
    assert_eq!(b.log.last_heartbeat().unwrap().lease, granted);
    // B logs a heartbeat before the agent reads its answer: wait for the agent's count.
    eventually(10, "6 heartbeats answered", || {
        agent.status().heartbeats_ok >= 6
    })
    .await;
    assert_eq!(agent.status().registrations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_replica_is_hedged_long_before_the_request_timeout() {
    let controller = Controller::new(200, "s1").await;
    let a = Replica::start(&controller).await;
    let b = Replica::start(&controller).await;
    let mut cfg = config(&[&a, &b]);
    // Without hedging, a hanging replica would hold each heartbeat for 30 s.
    cfg.controller_timeout_ms = 30_000;
    let agent = spawn(cfg, load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "3 heartbeats on A", || a.log.heartbeats() >= 3).await;
    let granted = agent.status().lease.unwrap();

    // A's store connection hangs: its heartbeats are held, never answered.
    a.faults
        .hang_heartbeats
        .store(true, std::sync::atomic::Ordering::Relaxed);
    eventually(10, "a heartbeat held by A", || {
        a.log.hung.load(std::sync::atomic::Ordering::Relaxed) >= 1
    })
    .await;
    // The same heartbeat went to B after half a period, and the agent stays with B.
    eventually(10, "5 heartbeats on B", || b.log.heartbeats() >= 5).await;
    assert_eq!(
        a.log.hung.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the agent kept sending to the hanging replica"
    );
    assert_eq!(b.log.last_heartbeat().unwrap().lease, granted);
    assert_eq!(b.log.registrations(), 0);
    assert_eq!(agent.status().registrations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_means_registering_again_at_once() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let agent = spawn(config(&[&a]), load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "2 heartbeats", || a.log.heartbeats() >= 2).await;
    let first = agent.status().lease.unwrap();

    let before = a.log.heartbeats();
    controller.expire("eu-west", "relay-1").await;
    eventually(10, "a second registration", || a.log.registrations() == 2).await;
    eventually(10, "heartbeats on the new lease", || {
        let held = agent.status().lease;
        held.is_some_and(|l| l != first)
            && a.log
                .last_heartbeat()
                .is_some_and(|h| Some(h.lease) == held)
    })
    .await;
    assert_eq!(agent.status().registrations, 2);
    // The agent registered again on the first 404: at most the heartbeat in
    // flight at expiry and the refused one carried the old lease afterwards.
    let old = a
        .log
        .heartbeats
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, h)| h.lease == first)
        .count();
    assert!(
        old <= before + 2,
        "{old} heartbeats on the expired lease (had {before})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_events_are_applied_once() {
    // Heartbeats a minute apart: the drain order below reaches the agent through the
    // stream alone, not through a heartbeat answer first.
    let controller = Controller::new(60_000, "s1").await;
    let a = Replica::start(&controller).await;
    let rec = Arc::new(Recorder::default());
    let agent = spawn(config(&[&a]), load(), rec.clone()).unwrap();
    // The register answer's secrets, then the stream's initial state.
    eventually(10, "stream open", || agent.status().stream_connected).await;
    eventually(10, "initial secrets", || {
        rec.secrets.lock().unwrap().len() >= 2
    })
    .await;

    controller.set_secrets("acme", &["s2"]).await;
    eventually(10, "new secret", || {
        rec.secrets
            .lock()
            .unwrap()
            .last()
            .map(|s| s.tenants[0].secrets.clone())
            == Some(vec!["s2".to_owned()])
    })
    .await;

    let far = 4_000_000_000;
    controller.revoke("acme", "1:acme:mallory", far).await;
    eventually(10, "mallory revoked", || {
        rec.revoked.lock().unwrap().len() == 1
    })
    .await;
    a.faults.inject("from-the-future", "{\"x\":1}");
    a.faults.inject(Event::SECRETS, "not json");
    controller.revoke("acme", "1:acme:eve", far).await;
    // A second relay of the region: the drain order's alternate.
    controller
        .put_relay("eu-west", "relay-2", "127.0.0.2:3478".parse().unwrap())
        .await;
    let drain = DrainOrder {
        deadline: Some(far),
        alternate: Some("127.0.0.2:3478".into()),
    };
    controller.drain("eu-west", "relay-1", Some(far)).await;
    controller.drain("eu-west", "relay-1", Some(far)).await;
    a.faults.inject(Event::PING, "{}");
    eventually(10, "drain", || !rec.drains.lock().unwrap().is_empty()).await;
    // A marker after everything: once it is applied, nothing else is in flight.
    controller.set_secrets("acme", &["s3"]).await;
    eventually(10, "marker", || {
        rec.secrets.lock().unwrap().last().unwrap().tenants[0].secrets[0] == "s3"
    })
    .await;

    assert_eq!(
        *rec.revoked.lock().unwrap(),
        vec![
            ("1:acme:mallory".to_owned(), far),
            ("1:acme:eve".to_owned(), far)
        ]
    );
    assert_eq!(*rec.drains.lock().unwrap(), vec![drain]);
    // The malformed secrets event changed nothing; the stream stayed up.
    assert_eq!(a.log.stream_opens(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_retried_with_backoff_not_hammered() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let mut c = config(&[&a]);
    c.node_token = "wrong".into();
    let agent = spawn(c, load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "two refused attempts", || a.log.unauthorized() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Full-jitter backoff from 100 ms: a handful of tries in this time, not hundreds.
    let tries = a.log.unauthorized();
    assert!(tries < 30, "{tries} tries");
    assert_eq!(agent.status().registrations, 0);
    assert_eq!(a.log.registrations(), 0);
}

#[tokio::test]
async fn an_agent_without_an_address_does_not_start() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let mut c = config(&[&a]);
    c.advertise = vec![nexrtc_edge_agent::config::parse_advertised("quic:127.0.0.1:443").unwrap()];
    let err = spawn(c, load(), Arc::new(Recorder::default())).unwrap_err();
    assert!(
        matches!(err, nexrtc_edge_agent::AgentError::NoAddress),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_down_then_one_comes_back() {
    // A port nobody listens on (the kernel's pick, released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let controller = Controller::new(100, "s1").await;
    let b = Replica::start(&controller).await;
    let mut c = config(&[&b]);
    c.controllers
        .insert(0, format!("http://{dead}/").parse().unwrap());
    let agent = spawn(c, load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "registered on B", || b.log.registrations() == 1).await;
    eventually(10, "heartbeats on B", || b.log.heartbeats() >= 2).await;
    assert_eq!(agent.status().registrations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_heartbeat_answer_is_a_drain_order() {
    let controller = Controller::new(50, "s1").await;
    let a = Replica::start(&controller).await;
    // No event stream: the order can only come with a heartbeat answer.
    a.faults
        .no_events
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let rec = Arc::new(Recorder::default());
    let _agent = spawn(config(&[&a]), load(), rec.clone()).unwrap();
    eventually(10, "heartbeats", || a.log.heartbeats() >= 2).await;
    assert!(rec.drains.lock().unwrap().is_empty());

    controller.drain("eu-west", "relay-1", None).await;
    eventually(10, "drain applied", || {
        !rec.drains.lock().unwrap().is_empty()
    })
    .await;
    eventually(10, "heartbeats report draining", || {
        a.log
            .last_heartbeat()
            .is_some_and(|h| h.state == RelayState::Draining)
    })
    .await;
    let n = a.log.heartbeats();
    eventually(10, "more heartbeats", || a.log.heartbeats() >= n + 3).await;
    // Applied once, without deadline or alternate (the answer carries neither).
    assert_eq!(*rec.drains.lock().unwrap(), vec![DrainOrder::default()]);
    assert_eq!(a.log.stream_opens(), 0);
}

/// The controller's 401 (missing or invalid credentials) comes back as an
/// error whose text — the agent's log line — names the flag to fix.
#[tokio::test]
async fn a_refused_token_names_the_flag() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let mut c = config(&[&a]);
    c.node_token = "wrong".into();
    let client = nexrtc_edge_agent::ControllerClient::new(&c.client()).unwrap();
    let err = client
        .post::<_, serde_json::Value>(
            routes::REGISTER,
            &serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            nexrtc_edge_agent::CallError::Rejected { status: 401, .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--node-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_once_and_the_relay_is_gone() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    let agent = spawn(config(&[&a]), load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "2 heartbeats", || a.log.heartbeats() >= 2).await;
    let granted = agent.status().lease.unwrap();
    assert!(a.log.leaves().is_empty(), "left while running");

    assert_eq!(agent.leave().await, Left::Removed);
    let leaves = a.log.leaves();
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    let (status, leave) = &leaves[0];
    assert_eq!(*status, axum::http::StatusCode::NO_CONTENT);
    assert_eq!(
        (leave.region.as_str(), leave.node.as_str(), leave.lease),
        ("eu-west", "relay-1", granted)
    );
    // The controller has no record of it any more, and nothing of the agent follows.
    assert_eq!(controller.lease("eu-west", "relay-1").await, None);
    let (beats, registrations) = (a.log.heartbeats(), a.log.registrations());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.log.heartbeats(), beats, "heartbeats after leaving");
    assert_eq!(
        a.log.registrations(),
        registrations,
        "registered again after leaving"
    );
    assert_eq!(a.log.leaves().len(), 1);
}

/// An unreachable controller delays the exit by at most [`LEAVE_TIMEOUT`] (plus scheduling):
/// the stop is bounded, the lease's expiry removes the relay later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_no_replica_answers_gives_up_within_its_bound() {
    let controller = Controller::new(100, "s1").await;
    let a = Replica::start(&controller).await;
    // A second "replica" that accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(&[&a]);
    c.controllers.push(
        format!("http://{}/", hole.local_addr().unwrap())
            .parse()
            .unwrap(),
    );
    let agent = spawn(c, load(), Arc::new(Recorder::default())).unwrap();
    eventually(10, "2 heartbeats", || a.log.heartbeats() >= 2).await;
    a.kill().await;

    let start = std::time::Instant::now();
    assert_eq!(agent.leave().await, Left::Failed);
    let took = start.elapsed();
    assert!(
        took < LEAVE_TIMEOUT + Duration::from_millis(500),
        "leaving took {took:?}"
    );
    // Its record stays until the lease runs out.
    assert!(controller.lease("eu-west", "relay-1").await.is_some());
}
