//! Two controller replicas on one real etcd (the store tests' harness: Debian etcd-server
//! on loopback, skipped with a notice when absent outside CI): a relay registered through
//! one replica is kept alive by heartbeats through the other, even after the first is
//! gone; a relay whose lease is no longer kept alive leaves both replicas' ICE answers.

mod api_common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use api_common::{Req, FRANKFURT_IP, NODE_KEY};
use axum::http::StatusCode;
use nexrtc_controller::clock::Clock;
use nexrtc_controller::server::bootstrap;
use nexrtc_controller::store::{MemoryStore, Store};
use nexrtc_controller::{router, AppState, Options};
use serde_json::json;
use tokio::time::Instant;

async fn replica(store: Arc<dyn Store>) -> api_common::Harness {
    let options = Options {
        lease_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        clock: Clock::System,
        ..api_common::options()
    };
    let state = AppState::start(store, options).await;
    api_common::Harness {
        // Unused by these tests (the store is etcd); the harness wants one.
        store: MemoryStore::new(),
        app: router(state.clone()),
        state,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_live_in_etcd_not_in_replicas() {
    let Some(a_store) = support::etcd_store("api-replicas").await else {
        return;
    };
    let prefix = a_store.prefix().to_owned();
    let etcd = support::shared_etcd().await.expect("etcd");
    let b_store = support::store_for(etcd, &prefix).await;
    let b = api_common::test_bootstrap();
    bootstrap(&a_store, &b, 1).await.expect("bootstrap");
    let a = replica(Arc::new(a_store)).await;
    let b = replica(Arc::new(b_store)).await;

    let lease = a.register("eu-west", "n1", "198.18.0.1").await;
    a.register("eu-central", "n1", "198.18.1.1").await;
    let seen = b.state.snapshots.wait_view(|v| v.relays.len() == 2);
    tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("replica b sees both");
    drop(a); // replica a is gone; its relays are not

    let started = Instant::now();
    let gone = b
        .state
        .snapshots
        .wait_view(|v| !v.relays.contains_key("eu-central/n1"));
    tokio::pin!(gone);
    let mut beats = 0;
    let left_after = loop {
        tokio::select! {
            _ = &mut gone => break started.elapsed(),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let hb = json!({"region": "eu-west", "node": "n1", "lease": lease,
                                "load": {"allocations": 10, "capacity": 1000, "cpu": 0.05}});
                let r = b.call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb)).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                beats += 1;
                assert!(beats < 40, "the unkept lease never expired");
            }
        }
    };
    eprintln!("unkept relay left the view {left_after:?} after replica a stopped (TTL 2 s)");

    // Keep beating past another TTL: the kept relay stays.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hb = json!({"region": "eu-west", "node": "n1", "lease": lease});
        let r = b
            .call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = b.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["regions"], json!(["eu-west"]));
}
