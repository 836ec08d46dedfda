//! The store becomes unreachable: the controller keeps answering ICE requests from its last
//! snapshot, reports the snapshot's age in `/readyz` and metrics, refuses writes with 503
//! `store_unavailable`, and recovers by itself.

mod api_common;
mod flaky;

use std::sync::Arc;
use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use flaky::Flaky;
use nexrtc_controller::server::bootstrap;
use nexrtc_controller::store::{MemoryStore, Store};
use nexrtc_controller::{router, AppState};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn answers_from_the_last_snapshot_while_the_store_is_down() {
    let inner = MemoryStore::new();
    let store = Flaky::new(inner.clone());
    let b = test_bootstrap();
    bootstrap(&inner, &b, NOW).await.expect("bootstrap");
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let state = AppState::start(dyn_store, options()).await;
    let h = Harness {
        store: inner,
        state: state.clone(),
        app: router(state),
    };
    h.register_fleet().await;
    assert_eq!(h.call(Req::get("/readyz")).await.status, StatusCode::OK);

    store.set_down(true);
    let stale = h.state.snapshots.relays.wait_for(|s| !s.live);
    tokio::time::timeout(Duration::from_secs(5), stale)
        .await
        .expect("watch broke");

    // ICE answers go on from memory; writes cannot.
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .call(
            Req::post("/v1/admin/tenants")
                .bearer(ADMIN_KEY)
                .json(json!({"name": "beta"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    let hb = json!({"region": "eu-west", "node": "n1", "lease": "1"});
    let r = h
        .call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );

    // Ready while the snapshot is young, not ready once it is older than 30 s.
    assert_eq!(h.call(Req::get("/readyz")).await.status, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(31)).await;
    let r = h.call(Req::get("/readyz")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    let metrics = h.call(Req::get("/metrics")).await.text;
    let age_line = metrics
        .lines()
        .find(|l| l.starts_with("nexrtc_controller_snapshot_age_seconds "))
        .expect("age gauge");
    let age: f64 = age_line
        .rsplit(' ')
        .next()
        .expect("value")
        .parse()
        .expect("number");
    assert!(age >= 31.0, "{age_line}");
    assert_eq!(
        h.ice(json!({}), FRANKFURT_IP).await.status,
        StatusCode::CREATED
    );

    // Back: the maps re-list by themselves.
    store.set_down(false);
    let live = async {
        loop {
            if h.state.snapshot_age() == Some(Duration::ZERO) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), live)
        .await
        .expect("recovered");
    assert_eq!(h.call(Req::get("/readyz")).await.status, StatusCode::OK);
    let r = h
        .call(
            Req::post("/v1/admin/tenants")
                .bearer(ADMIN_KEY)
                .json(json!({"name": "beta"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
