//! Failover, measured with real processes on loopback: a real etcd, real
//! `nexrtc controller` processes on it, `nexrtc relay` processes whose
//! in-process edge agents register and heartbeat, an app server asking the
//! ICE API for credentials, and coturn's `turnutils_uclient` relaying through
//! them while the network changes under it.
//!
//! Timings are asserted only against generous bounds (the machine may be
//! busy); the measured figures are printed (`--no-capture` shows them).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The controller's default lease TTL (seconds) and heartbeat period.
const LEASE_TTL: u64 = 5;
const HEARTBEAT_MS: u64 = 1000;

/// How much later than the TTL a dead relay may leave the answers before the
/// test calls it a failure (the target is TTL + 1 s; the figure is printed).
const MARGIN: Duration = Duration::from_secs(10);

/// Longest allocation lifetime on the relay drained under traffic.
const DRAIN_LIFETIME: Duration = Duration::from_secs(20);

const AGENT_REREGISTRATIONS: &str = "nexrtc_agent_reregistrations_total";
const AGENT_HEARTBEATS: &str = "nexrtc_agent_heartbeats_sent_total";
const CONTROLLER_HEARTBEATS: &str = "nexrtc_controller_heartbeats_total";

fn coturn_tools() -> bool {
    require_tool("turnutils_uclient", "coturn").is_some()
        && require_tool("turnutils_peer", "coturn").is_some()
}

fn three_regions(etcd: &Etcd) -> ControllerSetup {
    ControllerSetup::etcd(etcd, LEASE_TTL, HEARTBEAT_MS)
        .offer_all()
        .region("eu-west", 53.35, -6.26)
        .region("us-east", 38.90, -77.04)
        .region("ap-northeast", 35.68, 139.69)
}

/// A controller on `etcd` with one region, eu-west, offering every relay; relays leave only
/// when their lease expires (the tests using it are not about failure detection).
fn eu_west(etcd: &Etcd) -> Controller {
    Controller::start(
        &ControllerSetup::etcd(etcd, LEASE_TTL, HEARTBEAT_MS)
            .lease_only()
            .offer_all()
            .region("eu-west", 53.35, -6.26),
    )
}

/// The TURN credentials of an ICE answer that offers every relay of `relays`, once the
/// first of them accepts them (its agent has received the tenant's secret).
fn accepted_credentials(controller: &Controller, relays: &[&Relay]) -> (String, String) {
    let (answer, _) = controller.until("relays offered", Duration::from_secs(20), |ans| {
        relays.iter().all(|r| offers(ans, r.port))
    });
    let (user, pass) = credentials(&answer);
    allocate_until(
        relays[0],
        &user,
        &pass,
        "credentials accepted",
        Duration::from_secs(15),
        |o| *o == AllocateOutcome::Allocated,
    );
    (user, pass)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The agent in `relay` never found its lease expired (it never had to register again).
fn assert_never_reregistered(relay: &Relay, name: &str) {
    let m = relay.metrics();
    assert!(
        m.has(AGENT_HEARTBEATS),
        "{name}: the agent's metrics are missing:\n{}",
        m.0
    );
    assert_eq!(
        m.sum(AGENT_REREGISTRATIONS, &[]),
        0.0,
        "{name}: its lease expired and the agent registered again"
    );
}

/// Polls until an Allocate with `(username, password)` at `relay` ends as `want`
/// says; returns the outcome and how long it took.
fn allocate_until(
    relay: &Relay,
    username: &str,
    password: &str,
    what: &str,
    limit: Duration,
    want: impl Fn(&AllocateOutcome) -> bool,
) -> (AllocateOutcome, Duration) {
    let start = Instant::now();
    loop {
        let outcome = try_allocate(relay.addr(), username, password);
        if want(&outcome) {
            return (outcome, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; last Allocate: {outcome:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A long uclient run: `messages` × 20 ms of traffic, no RTCP, one client.
fn long_run(
    relay: &Relay,
    peer: &EchoPeer,
    username: &str,
    password: &str,
    messages: u32,
) -> Uclient {
    let mut u = Uclient::with_credentials(relay.port, peer, username, password);
    u.messages = messages;
    u.interval_ms = 20;
    u
}

/// Waits (bounded) until `relay` has relayed packets of the tenant to a peer.
fn wait_traffic(relay: &Relay) {
    relay.wait_metrics_for(
        "relayed traffic of the tenant",
        Duration::from_secs(20),
        |m| {
            m.sum(
                "nexrtc_relay_packets_total",
                &[("tenant", TENANT), ("direction", "to_peer")],
            ) > 0.0
        },
    );
}

#[test]
fn dead_relay_leaves_every_answer_new_one_enters_controller_restart_loses_none() {
    let Some(etcd) = Etcd::start() else { return };
    let mut controller = Controller::start(&three_regions(&etcd));
    // Three hosts: 127.0.0.2, .3 and .4.
    let on = |slot, octet| RelayConfig::new(slot).host(Ipv4Addr::new(127, 0, 0, octet));
    let url = [controller.url()];
    let eu = controller.relay_with(on(slot::FAILOVER_EU, 2), &url, "eu-west", "eu-1");
    let us = controller.relay_with(on(slot::FAILOVER_US, 3), &url, "us-east", "us-1");
    let ap = controller.relay_with(on(slot::FAILOVER_AP, 4), &url, "ap-northeast", "ap-1");
    let (answer, took) = controller.until("three relays offered", Duration::from_secs(20), |a| {
        offers(a, eu.port) && offers(a, us.port) && offers(a, ap.port)
    });
    eprintln!(
        "three relays offered {took:?} after the last was ready; regions {}",
        answer["regions"]
    );

    // kill -9: no deregistration; the lease has to run out.
    let gone_port = eu.port;
    let mut eu = eu;
    eu.process.kill();
    let (answer, took) = controller.until(
        "killed relay gone from the ICE answers",
        Duration::from_secs(LEASE_TTL) + MARGIN,
        |a| !offers(a, gone_port),
    );
    eprintln!(
        "MEASURED: kill -9 → gone from every ICE answer after {took:?} (lease TTL {LEASE_TTL} s, heartbeat {HEARTBEAT_MS} ms, removal after two missed heartbeats)"
    );
    assert!(
        offers(&answer, us.port) && offers(&answer, ap.port),
        "{answer}"
    );
    assert_eq!(
        sorted(controller.registered()),
        ["ap-northeast/ap-1", "us-east/us-1"],
        "the registry after the kill"
    );

    // A new relay: the killed one's replacement in its region.
    let eu2 = controller.relay_with(on(slot::FAILOVER_NEW, 5), &url, "eu-west", "eu-2");
    let (_, took) = controller.until("new relay offered", Duration::from_secs(20), |a| {
        offers(a, eu2.port)
    });
    eprintln!("MEASURED: a new relay entered the ICE answers {took:?} after it was ready");
    let live = ["ap-northeast/ap-1", "eu-west/eu-2", "us-east/us-1"];
    assert_eq!(sorted(controller.registered()), live);

    // Restart the controller process on the same etcd and port.
    let took = controller.restart();
    eprintln!("MEASURED: controller killed and restarted, ready again after {took:?}");
    // Past a whole TTL every relay is still registered and offered: the
    // agents kept their leases alive through the new process.
    let watch_until = Instant::now() + Duration::from_secs(LEASE_TTL + 2);
    let mut polls = 0;
    while Instant::now() < watch_until {
        let answer = controller.ice_servers();
        for (port, name) in [(eu2.port, "eu-2"), (us.port, "us-1"), (ap.port, "ap-1")] {
            assert!(
                offers(&answer, port),
                "{name} missing after the controller restart: {answer}"
            );
        }
        assert_eq!(
            sorted(controller.registered()),
            live,
            "registry after the restart"
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("after the restart: {polls} polls over {LEASE_TTL}+2 s, every relay in every answer");
    let controller_heartbeats = controller.metrics().sum(CONTROLLER_HEARTBEATS, &[]);
    assert!(
        controller_heartbeats > 0.0,
        "the new controller process got no heartbeats"
    );
    for (relay, name) in [(&eu2, "eu-2"), (&us, "us-1"), (&ap, "ap-1")] {
        assert_never_reregistered(relay, name);
    }
}

#[test]
fn agent_moves_to_the_second_replica_and_its_lease_never_expires() {
    let Some(etcd) = Etcd::start() else { return };
    let setup = ControllerSetup::etcd(&etcd, LEASE_TTL, HEARTBEAT_MS)
        .lease_only()
        .region("eu-west", 53.35, -6.26);
    let mut a = Controller::start(&setup);
    let b = a.replica();
    let relay = a.relay_with(
        RelayConfig::new(slot::REPLICAS),
        &[a.url(), b.url()],
        "eu-west",
        "r1",
    );
    b.until(
        "relay offered by replica B",
        Duration::from_secs(20),
        |ans| offers(ans, relay.port),
    );
    // The agent talks to the first replica.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.metrics().sum(CONTROLLER_HEARTBEATS, &[]) < 2.0 {
        assert!(Instant::now() < deadline, "replica A got no heartbeats");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b_before = b.metrics().sum(CONTROLLER_HEARTBEATS, &[]);

    // Stop replica A (kill -9) and watch B's answers every 100 ms, across the
    // switch and for well over a TTL after it.
    a.kill();
    let killed = Instant::now();
    let mut moved: Option<Duration> = None;
    let (mut polls, mut worst) = (0u32, Duration::ZERO);
    while killed.elapsed() < Duration::from_secs(2 * LEASE_TTL + 2) {
        let asked = Instant::now();
        let answer = b.ice_servers();
        worst = worst.max(asked.elapsed());
        polls += 1;
        assert!(
            offers(&answer, relay.port),
            "the relay left replica B's ICE answer {:?} after replica A was killed: {answer}",
            killed.elapsed()
        );
        if moved.is_none() && b.metrics().sum(CONTROLLER_HEARTBEATS, &[]) > b_before {
            moved = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let moved = moved.unwrap_or_else(|| panic!("the agent never heartbeated to replica B"));
    eprintln!(
        "MEASURED: agent's first heartbeat to replica B {moved:?} after replica A was killed; \
         relay present in all {polls} answers of B over {:?} (slowest answer {worst:?})",
        killed.elapsed()
    );
    assert_never_reregistered(&relay, "r1");
    assert_eq!(b.registered(), ["eu-west/r1"]);
}

#[test]
fn secret_rotation_under_live_traffic_loses_nothing_and_retires_the_old_secret() {
    if !coturn_tools() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let controller = eu_west(&etcd);
    let relay = controller.relay(slot::ROTATION, "eu-west", "rot-1");
    let peer = EchoPeer::start();
    // Accepted: the agent has pushed the tenant's secret into the relay.
    let (old_user, old_pass) = accepted_credentials(&controller, &[&relay]);
    let old_secret = controller.keys.tenant_secret.clone();
    assert_eq!(
        old_pass,
        turn_core::auth::rest_password(old_secret.as_bytes(), &old_user),
        "the first credentials are signed with the bootstrap secret"
    );

    // ~10 s of traffic relayed the whole time.
    let long = long_run(&relay, &peer, &old_user, &old_pass, 500);
    let running = long.spawn();
    let mut running = Some(running);
    wait_traffic(&relay);

    let tenant_path = format!("/v1/admin/tenants/{TENANT}");
    let (status, tenant) = controller.admin("GET", &tenant_path, None);
    assert_eq!(status, 200, "{tenant}");
    let old_id = tenant["secrets"][0]["id"]
        .as_str()
        .expect("secret id")
        .to_owned();
    assert_eq!(tenant["secrets"][0]["value"], old_secret.as_str());

    // Add a new secret: new credentials are signed with it.
    let (status, tenant) =
        controller.admin("POST", &format!("{tenant_path}/secrets"), Some(&json!({})));
    assert_eq!(status, 201, "{tenant}");
    let new_secret = tenant["secrets"][0]["value"]
        .as_str()
        .expect("new secret")
        .to_owned();
    let new_id = tenant["secrets"][0]["id"]
        .as_str()
        .expect("new id")
        .to_owned();
    assert_ne!(new_id, old_id);
    let (new_user, new_pass) = credentials(&controller.ice_servers());
    assert_eq!(
        new_pass,
        turn_core::auth::rest_password(new_secret.as_bytes(), &new_user),
        "new credentials are signed with the new secret"
    );
    let (_, took) = allocate_until(
        &relay,
        &new_user,
        &new_pass,
        "new credentials accepted",
        Duration::from_secs(10),
        |o| *o == AllocateOutcome::Allocated,
    );
    eprintln!(
        "MEASURED: credentials of the new secret accepted by the relay {took:?} after it was added"
    );

    // Retire the old secret.
    let (status, tenant) =
        controller.admin("DELETE", &format!("{tenant_path}/secrets/{old_id}"), None);
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(
        tenant["secrets"].as_array().map(Vec::len),
        Some(1),
        "{tenant}"
    );
    let retired = Instant::now();
    if let Some(guard) = running.as_mut() {
        assert!(
            guard.exited().is_none(),
            "the long run ended before the old secret was retired: not live traffic any more\n{}",
            guard.log_text()
        );
    }
    let (outcome, took) = allocate_until(
        &relay,
        &old_user,
        &old_pass,
        "old credentials refused",
        Duration::from_secs(10),
        |o| matches!(o, AllocateOutcome::Refused { code: 401, .. }),
    );
    eprintln!("MEASURED: credentials of the retired secret refused ({outcome:?}) {took:?} after the retirement");

    // A fresh uclient with the old credentials is refused; one with the new works.
    let mut stale = Uclient::with_credentials(relay.port, &peer, &old_user, &old_pass);
    stale.messages = 5;
    let run = stale.run();
    assert!(
        !run.timed_out && !run.success,
        "old credentials must fail:\n{}",
        run.output
    );
    assert!(
        run.output.contains("Cannot complete Allocation"),
        "{}",
        run.output
    );
    let fresh = Uclient::with_credentials(relay.port, &peer, &new_user, &new_pass);
    fresh.run_clean();

    // The long run, on the old secret's allocation, lost nothing.
    let long_guard = running.take().expect("long run");
    let run = long.finish(long_guard, Duration::from_secs(60));
    let ended_after = retired.elapsed();
    let report = long.check_clean(&run);
    eprintln!(
        "MEASURED: the long run ({} messages) was relaying when the old secret was retired, \
         ended {ended_after:?} later and echoed {}/{} with {} lost",
        long.messages, report.recv_msgs, report.sent_msgs, report.lost
    );
}

#[test]
fn drain_under_live_traffic_keeps_the_call_sends_new_clients_elsewhere_and_exits_empty() {
    if !coturn_tools() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let controller = eu_west(&etcd);
    // turnutils_uclient releases the allocation that carried its traffic
    // (Refresh, lifetime 0) but leaves its second one to expire (coturn's own
    // turnserver shows the same); a short lifetime on A makes that one end
    // within the test, so A can be seen to exit once empty.
    let mut a = controller.relay_with(
        RelayConfig::new(slot::DRAIN_A)
            .arg("--max-allocate-lifetime")
            .arg(&DRAIN_LIFETIME.as_secs().to_string()),
        &[controller.url()],
        "eu-west",
        "a",
    );
    let b = controller.relay(slot::DRAIN_B, "eu-west", "b");
    let peer = EchoPeer::start();
    let (user, pass) = accepted_credentials(&controller, &[&a, &b]);

    let long = long_run(&a, &peer, &user, &pass, 400);
    let running = long.spawn();
    wait_traffic(&a);

    let (status, drained) =
        controller.admin("POST", "/v1/admin/relays/eu-west/a/drain", Some(&json!({})));
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["drained"], json!(["eu-west/a"]));
    let ordered = Instant::now();
    let (_, took) = controller.until(
        "drained relay gone from the answers",
        Duration::from_secs(5),
        |ans| !offers(ans, a.port) && offers(ans, b.port),
    );
    eprintln!("MEASURED: drained relay left the ICE answers {took:?} after the drain order");
    for _ in 0..10 {
        let ans = controller.ice_servers();
        assert!(
            !offers(&ans, a.port) && offers(&ans, b.port),
            "only B may be offered: {ans}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // New Allocates on A are sent elsewhere (300 ALTERNATE-SERVER) or refused (508).
    let (outcome, took) = allocate_until(
        &a,
        &user,
        &pass,
        "new Allocate on A refused",
        Duration::from_secs(10),
        |o| {
            matches!(
                o,
                AllocateOutcome::Refused {
                    code: 300 | 508,
                    ..
                }
            )
        },
    );
    eprintln!("MEASURED: a new Allocate on the drained relay answered {outcome:?} {took:?} after the drain order");
    if let AllocateOutcome::Refused {
        code: 300,
        alternate,
        ..
    } = &outcome
    {
        assert_eq!(
            *alternate,
            Some(b.addr()),
            "ALTERNATE-SERVER should point at B"
        );
    }
    let mut refused = Uclient::with_credentials(a.port, &peer, &user, &pass);
    refused.messages = 5;
    let run = refused.run();
    assert!(
        !run.timed_out,
        "uclient against the drained relay hung:\n{}",
        run.output
    );
    if run.success {
        // uclient followed ALTERNATE-SERVER: a clean run, and through B.
        refused.check_clean(&run);
        assert!(
            b.metrics().sum("nexrtc_relay_allocations_total", &[]) > 0.0,
            "uclient succeeded against drained A, but not through B:\n{}",
            run.output
        );
        eprintln!("MEASURED: a new uclient against drained A followed ALTERNATE-SERVER to B and relayed cleanly");
    } else {
        eprintln!(
            "MEASURED: a new uclient against drained A was refused:\n{}",
            run.output
                .lines()
                .filter(|l| l.contains("rror") || l.contains("300") || l.contains("508"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // The call on A keeps flowing until it ends.
    let run = long.finish(running, Duration::from_secs(60));
    let report = long.check_clean(&run);
    eprintln!(
        "MEASURED: the live run on the drained relay echoed {}/{} with {} lost ({:?} after the drain order)",
        report.recv_msgs,
        report.sent_msgs,
        report.lost,
        ordered.elapsed()
    );

    // Once its allocations have ended (the call's at once, uclient's idle one
    // at the end of its lifetime) A exits by itself, cleanly.
    let ended = Instant::now();
    let limit = DRAIN_LIFETIME + Duration::from_secs(15);
    let status = a.process.wait_exit(limit);
    let log = a.process.log_text();
    let status = status.unwrap_or_else(|| {
        panic!("drained relay A did not exit within {limit:?} after its client ended:\n{log}")
    });
    eprintln!(
        "MEASURED: drained relay exited ({status}) {:?} after its client ended ({:?} after the drain order; allocation lifetime {DRAIN_LIFETIME:?})",
        ended.elapsed(),
        ordered.elapsed()
    );
    assert!(
        status.success(),
        "drained relay exited with {status}:\n{log}"
    );
    assert!(
        log.contains("drained; exiting"),
        "relay A did not exit because it was empty:\n{log}"
    );
    let ans = controller.ice_servers();
    assert!(!offers(&ans, a.port) && offers(&ans, b.port), "{ans}");
}

#[test]
fn a_region_drained_with_a_deadline_exits_at_it_with_clients_left() {
    if !coturn_tools() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let controller = eu_west(&etcd);
    let mut relay = controller.relay(slot::DRAIN_DEADLINE, "eu-west", "d");
    let (user, pass) = accepted_credentials(&controller, &[&relay]);
    // A call that would last 30 s, far beyond the deadline.
    let peer = EchoPeer::start();
    let long = long_run(&relay, &peer, &user, &pass, 1500);
    let running = long.spawn();
    wait_traffic(&relay);

    let (status, drained) = controller.admin(
        "POST",
        "/v1/admin/relays/eu-west/drain",
        Some(&json!({"deadline_secs": 3})),
    );
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["drained"], json!(["eu-west/d"]));
    let ordered = Instant::now();
    let exit = relay.process.wait_exit(Duration::from_secs(20));
    let log = relay.process.log_text();
    assert!(
        exit.is_some(),
        "the relay did not exit within 20 s of a 3 s drain deadline:\n{log}"
    );
    eprintln!(
        "MEASURED: relay drained with a 3 s deadline exited {:?} after the order, its call still running",
        ordered.elapsed()
    );
    // The relay says "drained; exiting" when it empties first; this line means it left
    // at the deadline with allocations remaining.
    assert!(
        log.contains("drain grace elapsed"),
        "the relay should have left at the deadline with its client still allocated:\n{log}"
    );
    drop(running); // the cut call's client (killed on drop)
}
