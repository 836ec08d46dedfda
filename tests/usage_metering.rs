//! Usage metering end to end, on etcd: a controller and a relay whose agent reports usage;
//! a coturn `uclient` call of known size shows up in `GET /v1/admin/tenants/{t}/usage`
//! byte for byte as the relay counted it, with allocation time within the call's bounds;
//! then a relay killed with SIGKILL in the middle of a call loses nothing it had
//! reported, and the same relay started again (a new process) adds its traffic to what
//! was there — exactly, so nothing is lost or counted twice.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The tenant's usage over the last hour and the next minute.
fn usage(c: &Controller) -> Value {
    let now = unix_now();
    let path = format!(
        "/v1/admin/tenants/{TENANT}/usage?from={}&to={}",
        now - 3600,
        now + 60
    );
    let (status, answer) = c.admin("GET", &path, None);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// (allocation minutes, bytes to peers, bytes to clients) over every region.
fn totals(answer: &Value) -> (f64, u64, u64) {
    let rows = answer["totals"].as_array().expect("totals");
    let sum = |f: &str| {
        rows.iter()
            .map(|r| r[f].as_u64().expect("bytes"))
            .sum::<u64>()
    };
    let minutes = rows
        .iter()
        .map(|r| r["allocation_minutes"].as_f64().expect("minutes"));
    (minutes.sum(), sum("bytes_to_peer"), sum("bytes_to_client"))
}

/// The bytes the relay itself counted for the tenant, one way.
fn relayed(relay: &Relay, direction: &str) -> u64 {
    let labels = [("tenant", TENANT), ("direction", direction)];
    relay.metrics().sum("nexrtc_relay_bytes_total", &labels) as u64
}

/// Polls the usage API until `pred` holds on its totals (bounded: a report every 10 s).
fn wait_usage(c: &Controller, what: &str, pred: impl Fn((f64, u64, u64)) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = usage(c);
        if pred(totals(&answer)) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{what}: {answer}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn call(c: &Controller, relay: &Relay, peer: &EchoPeer, messages: u32) -> Uclient {
    let (username, password) = credentials(&c.ice_servers());
    let mut u = Uclient::with_credentials(relay.port, peer, &username, &password);
    u.messages = messages;
    u
}

#[test]
fn a_call_is_metered_and_a_killed_relay_loses_nothing_nor_counts_twice() {
    if require_tool("turnutils_uclient", "coturn").is_none() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let controller = Controller::start(
        &ControllerSetup::etcd(&etcd, 5, 500)
            .lease_only()
            .region("eu-west", 53.35, -6.26),
    );
    let mut relay = controller.relay(slot::USAGE, "eu-west", "relay-a");
    controller.until("relay registered", Duration::from_secs(20), |a| {
        offers(a, relay.port)
    });
    let peer = EchoPeer::start();

    // 1. A clean call of 100 messages of 120 bytes, echoed back.
    let started = Instant::now();
    let report = call(&controller, &relay, &peer, 100).run_clean();
    assert_eq!(report.recv_msgs, 100);
    let (to_peer, to_client) = (relayed(&relay, "to_peer"), relayed(&relay, "to_client"));
    assert_eq!(
        (to_peer, to_client),
        (12_000, 12_000),
        "the relay's own count"
    );
    let first = wait_usage(&controller, "the call metered", |(_, p, c)| {
        (p, c) == (to_peer, to_client)
    });
    let (minutes, _, _) = totals(&first);
    let seconds = minutes * 60.0;
    // Each allocation the call made (uclient makes two) lived at most since the call
    // started; together they lived at least while uclient sent (100 × 20 ms).
    let allocations = relay
        .metrics()
        .sum("nexrtc_relay_allocations_total", &[("tenant", TENANT)]);
    let bound = allocations * (started.elapsed().as_secs_f64() + 0.1);
    assert!(
        (2.0..=bound).contains(&seconds),
        "{seconds} s of allocation time, not within 2..{bound}: {first}"
    );
    eprintln!("call metered: {first}");

    // 2. A longer call, and the relay killed outright once part of it is reported.
    let long = call(&controller, &relay, &peer, 1500);
    let running = long.spawn();
    let reported = wait_usage(&controller, "part of the long call", |(_, p, _)| {
        p > to_peer
    });
    relay.process.kill();
    drop(running);
    let after = usage(&controller);
    for bucket in reported["buckets"].as_array().expect("buckets") {
        let same = (after["buckets"].as_array().expect("buckets").iter())
            .find(|b| b["start"] == bucket["start"] && b["region"] == bucket["region"])
            .unwrap_or_else(|| panic!("bucket {bucket} lost: {after}"));
        for field in ["bytes_to_peer", "bytes_to_client"] {
            assert!(
                same[field].as_u64() >= bucket[field].as_u64(),
                "{field} of {bucket} went down: {same}"
            );
        }
    }
    let (_, base_peer, base_client) = totals(&after);
    eprintln!("after the kill: {base_peer} B to peers, {base_client} B to clients");

    // 3. The relay again (a new process: counts from zero, a new boot) and a call.
    relay = controller.relay(slot::USAGE, "eu-west", "relay-a");
    controller.until("relay registered again", Duration::from_secs(20), |a| {
        offers(a, relay.port)
    });
    call(&controller, &relay, &peer, 100).run_clean();
    let (new_peer, new_client) = (relayed(&relay, "to_peer"), relayed(&relay, "to_client"));
    assert_eq!((new_peer, new_client), (12_000, 12_000));
    // Exactly the sum: the new process neither replaced (a loss) nor repeated (a double
    // count) what the killed one reported.
    let last = wait_usage(&controller, "the restarted relay's call", |(_, p, c)| {
        (p, c) == (base_peer + new_peer, base_client + new_client)
    });
    eprintln!("after the restart: {last}");
}
