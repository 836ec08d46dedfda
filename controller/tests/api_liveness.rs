//! Missed-heartbeat detection (`controller/src/liveness.rs`): a silent relay leaves the
//! answers after `relay_miss_after` (2 s), well before its 5 s lease would expire, and a
//! replica never removes a relay that another replica keeps renewing. Virtual time.

mod api_common;
mod flaky;

use std::sync::Arc;
use std::time::Duration;

use api_common::{options, Harness, Req, NODE_KEY};
use axum::http::StatusCode;
use flaky::Flaky;
use nexrtc_controller::store::Store;
use nexrtc_controller::Options;
use serde_json::json;
use tokio::time::Instant;

/// The controller's defaults for liveness: lease 5 s, heartbeat 1 s, removal after 2 s.
fn liveness_options() -> Options {
    let defaults = Options::default();
    Options {
        lease_ttl: defaults.lease_ttl,
        heartbeat_interval: defaults.heartbeat_interval,
        relay_miss_after: defaults.relay_miss_after,
        ..options()
    }
}

fn heartbeat(node: &str, lease: &str) -> Req {
    let body = json!({"region": "eu-west", "node": node, "lease": lease,
                      "load": {"allocations": 10, "capacity": 1000, "cpu": 0.05}});
    Req::post("/v1/relays/heartbeat")
        .bearer(NODE_KEY)
        .json(body)
}

fn listed(h: &Harness, node: &str) -> bool {
    h.state
        .view()
        .relays
        .contains_key(&format!("eu-west/{node}"))
}

#[tokio::test(start_paused = true)]
async fn a_silent_relay_leaves_after_two_heartbeats_not_the_lease_ttl() {
    let h = Harness::with(liveness_options()).await;
    assert_eq!(h.state.options.lease_ttl, Duration::from_secs(5));
    assert_eq!(h.state.options.relay_miss_after, Duration::from_secs(2));
    let silent = h.register("eu-west", "n1", "198.18.0.1").await;
    let alive = h.register("eu-west", "n2", "198.18.0.2").await;
    let start = Instant::now();
    let mut gone_after = None;
    // n2 heartbeats every second for 8 s (longer than the lease TTL); n1 says nothing.
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed().as_millis() % 1000 < 100 {
            let r = h.call(heartbeat("n2", &alive)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        if gone_after.is_none() && !listed(&h, "n1") {
            gone_after = Some(start.elapsed());
        }
        assert!(listed(&h, "n2"), "a heartbeating relay was removed");
    }
    let gone_after = gone_after.expect("the silent relay was never removed");
    assert!(
        gone_after >= Duration::from_secs(2) && gone_after < Duration::from_millis(2600),
        "removed {gone_after:?} after its last heartbeat; want 2 s plus at most one check"
    );
    // The silent relay learns it on its next heartbeat, and registers again.
    let r = h.call(heartbeat("n1", &silent)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.code(), "lease_expired");
    h.register("eu-west", "n1", "198.18.0.1").await;
    assert!(listed(&h, "n1"));
}

#[tokio::test(start_paused = true)]
async fn a_relay_renewed_through_another_replica_is_left_alone() {
    let a = Harness::with(liveness_options()).await;
    let b = second_replica(&a).await;
    // Registered through A, then heartbeating only through B (the agent moved).
    let lease = a.register("eu-west", "n1", "198.18.0.1").await;
    assert_eq!(a.state.liveness.len(), 1);
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = b.call(heartbeat("n1", &lease)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            listed(&a, "n1") && listed(&b, "n1"),
            "the relay was removed"
        );
    }
    // A saw B's renewals in the lease and stopped watching it; B watches it now.
    assert_eq!(a.state.liveness.len(), 0);
    assert_eq!(b.state.liveness.len(), 1);
    // When the relay falls silent, B removes it.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(!listed(&a, "n1") && !listed(&b, "n1"));
}

/// A lease that looks renewed when this replica checks it — renewed once elsewhere, or
/// extended by etcd at a leader change — and then runs down: the replica reads it again,
/// sees it run down, and removes the relay once nobody has renewed it for two heartbeats,
/// instead of letting go and leaving it to the lease's expiry (5 s).
#[tokio::test(start_paused = true)]
async fn a_lease_that_only_looked_renewed_is_still_removed_early() {
    let h = Harness::with(liveness_options()).await;
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.call(heartbeat("n1", &lease)).await.status, StatusCode::OK);
    // The relay dies. 1.5 s later its lease is renewed once, not through this replica.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = nexrtc_controller::store::LeaseId(lease.parse().expect("lease id"));
    Store::keep_alive(&h.store, id).await.expect("renewed once");
    let renewed = Instant::now();
    let mut gone_after = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !listed(&h, "n1") {
            gone_after = Some(renewed.elapsed());
            break;
        }
    }
    let gone_after = gone_after.expect("removed before the lease expired");
    assert!(gone_after < Duration::from_millis(3500), "{gone_after:?}");
}

/// The agent moved from A to B; B dies, and the agent is silent for 2.5 s while it fails
/// over (its request to B times out) before it heartbeats through A again: A, which saw
/// B's renewals and let go, does not remove the live relay meanwhile.
#[tokio::test(start_paused = true)]
async fn a_relay_failing_over_from_a_dead_replica_is_not_removed() {
    let a = Harness::with(liveness_options()).await;
    let b = second_replica(&a).await;
    let lease = a.register("eu-west", "n1", "198.18.0.1").await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = b.call(heartbeat("n1", &lease)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    drop(b); // B's detector stops with it
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(listed(&a, "n1"), "the failing-over relay was removed");
    }
    let r = a.call(heartbeat("n1", &lease)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(listed(&a, "n1"));
}

/// A second replica on `a`'s store.
async fn second_replica(a: &Harness) -> Harness {
    let store: Arc<dyn Store> = Arc::new(a.store.clone());
    Harness::over(store, a.store.clone(), liveness_options()).await
}

/// A harness whose replica's store stalls renewals on demand.
async fn stalling_replica() -> (Harness, Flaky) {
    let base = Harness::with(liveness_options()).await;
    let stalling = Flaky::new(base.store.clone());
    let store: Arc<dyn Store> = Arc::new(stalling.clone());
    let h = Harness::over(store, base.store.clone(), liveness_options()).await;
    (h, stalling)
}

#[tokio::test(start_paused = true)]
async fn a_renewal_lost_to_the_replicas_own_store_removes_no_relay() {
    let (h, store) = stalling_replica().await;
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = h.call(heartbeat("n1", &lease)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The store connection breaks: the next heartbeat hangs, and the agent gives up on it
    // after 1.8 s. Nothing renewed the lease for 2.8 s, longer than the miss window, but the
    // misses were the replica's.
    store.set_stall_renewals(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hung =
        tokio::time::timeout(Duration::from_millis(1800), h.call(heartbeat("n1", &lease))).await;
    assert!(hung.is_err(), "the stalled heartbeat answered");
    assert!(
        listed(&h, "n1"),
        "removed while its heartbeat was in flight"
    );
    store.set_stall_renewals(false);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            listed(&h, "n1"),
            "removed for the replica's own store trouble"
        );
    }
    // The agent's next heartbeat renews it; the relay stays.
    let r = h.call(heartbeat("n1", &lease)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = h.call(heartbeat("n1", &lease)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(listed(&h, "n1"));
    }
}

#[tokio::test(start_paused = true)]
async fn after_store_trouble_a_silent_relay_is_still_removed() {
    let (h, store) = stalling_replica().await;
    h.register("eu-west", "n1", "198.18.0.1").await;
    let lease = h.register("eu-west", "n2", "198.18.0.2").await;
    store.set_stall_renewals(true);
    let hung = tokio::time::timeout(Duration::from_secs(1), h.call(heartbeat("n2", &lease))).await;
    assert!(hung.is_err());
    store.set_stall_renewals(false);
    // Both fall silent. The trouble holds removals back for one miss window, after which
    // the detector removes them, before their leases (5 s) would.
    let start = Instant::now();
    while listed(&h, "n1") || listed(&h, "n2") {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(10), "never removed");
    }
    let gone = start.elapsed();
    assert!(
        gone >= Duration::from_secs(2) && gone < Duration::from_millis(3500),
        "removed {gone:?} after the trouble; want one miss window plus a check"
    );
}
