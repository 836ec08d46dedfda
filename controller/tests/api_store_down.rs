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
use nexrtc_controller::store::MemoryStore;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn answers_from_the_last_snapshot_while_the_store_is_down() {
    let inner = MemoryStore::new();
    let store = Flaky::new(inner.clone());
    let b = test_bootstrap();
    bootstrap(&inner, &b, NOW).await.expect("bootstrap");
    let h = Harness::over(Arc::new(store.clone()), inner, options()).await;
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

/// A gauge's value in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> f64 {
    let line = (metrics.lines())
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[tokio::test(start_paused = true)]
async fn a_frozen_store_shows_in_the_answer_age_though_the_snapshot_looks_live() {
    let inner = MemoryStore::new();
    let store = Flaky::new(inner.clone());
    bootstrap(&inner, &test_bootstrap(), NOW)
        .await
        .expect("bootstrap");
    let h = Harness::over(Arc::new(store.clone()), inner, options()).await;
    h.register_fleet().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = h.call(Req::get("/metrics")).await.text;
    assert!(gauge(&metrics, "nexrtc_controller_store_answer_age_seconds") <= 1.0);
    let r = h.call(Req::get("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["store_answer_age_seconds"].as_f64().expect("age") <= 1.0);

    // Frozen (as etcd under SIGSTOP): calls hang, the open watches stay open and silent,
    // so the snapshot still looks live. The answer age tells.
    store.set_frozen(true);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let metrics = h.call(Req::get("/metrics")).await.text;
    assert_eq!(
        gauge(&metrics, "nexrtc_controller_snapshot_age_seconds"),
        0.0
    );
    let silent = gauge(&metrics, "nexrtc_controller_store_answer_age_seconds");
    assert!((19.0..=21.0).contains(&silent), "answer age {silent}");
    assert!(metrics.contains("nexrtc_controller_store_probes_total{outcome=\"ok\"}"));
    // Still ready within max_snapshot_age (30 s); not ready after it, naming the store.
    assert_eq!(h.call(Req::get("/readyz")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let r = h.call(Req::get("/readyz")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    assert!(r.text.contains("has not answered"), "{}", r.text);
    // ICE answers go on from the snapshot.
    assert_eq!(
        h.ice(json!({}), FRANKFURT_IP).await.status,
        StatusCode::CREATED
    );

    // Thawed: the next probe answers (a hung probe gives up within 4 s).
    store.set_frozen(false);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let metrics = h.call(Req::get("/metrics")).await.text;
    assert!(gauge(&metrics, "nexrtc_controller_store_answer_age_seconds") <= 1.0);
    assert!(metrics.contains("nexrtc_controller_store_probes_total{outcome=\"timeout\"}"));
    assert_eq!(h.call(Req::get("/readyz")).await.status, StatusCode::OK);
}
