//! MemoryStore-only behaviour (bounded history and watcher buffers, exact expiry on paused
//! time) and WatchedMap recovery, driven deterministically through a store wrapper that can
//! be switched "down".

mod cases;
mod flaky;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cases::watched::{contents, map_of, numbers, wait_for};
use flaky::Flaky;
use nexrtc_controller::store::{
    Backend, MemoryStore, Store, StoreError, WatchedMap, WatchedMapConfig,
};
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn watch_older_than_history_is_compacted() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_limits(4, 64));
    let mut revisions = Vec::new();
    for i in 0..10u8 {
        revisions.push(store.put("h/k", vec![i], None).await.expect("put"));
    }
    let oldest = match store.watch("h/", revisions[0]).await {
        Err(StoreError::Compacted { revision }) => revision,
        other => panic!("expected Compacted, got {other:?}"),
    };
    assert_eq!(oldest, revisions[6], "the last 4 revisions are kept");
    let mut watch = store
        .watch("h/", oldest)
        .await
        .expect("watch from the oldest kept");
    for expected in &revisions[6..] {
        let event = watch.next().await.expect("event").expect("ok");
        assert_eq!(event.revision(), *expected);
    }
}

#[tokio::test(start_paused = true)]
async fn slow_watcher_is_told_to_relist() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_limits(1000, 4));
    let mut watch = store.watch("", 0).await.expect("watch");
    for i in 0..20u8 {
        store.put("k", vec![i], None).await.expect("put"); // writers never wait for watchers
    }
    assert!(matches!(
        watch.next().await,
        Some(Err(StoreError::Compacted { .. }))
    ));
    assert!(watch.next().await.is_none(), "a watch ends after its error");
}

#[tokio::test(start_paused = true)]
async fn watch_ends_when_the_store_is_gone() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut watch = store.watch("", 0).await.expect("watch");
    drop(store);
    assert!(watch.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn lease_expires_exactly_at_ttl() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let lease = store
        .grant_lease(Duration::from_millis(1500))
        .await
        .expect("grant");
    assert_eq!(
        lease.ttl,
        Duration::from_secs(2),
        "rounded up to whole seconds, as etcd does"
    );
    store
        .put("k", b"v".to_vec(), Some(lease.id))
        .await
        .expect("put");
    sleep(Duration::from_millis(1999)).await;
    assert!(store.get("k").await.expect("get").is_some());
    sleep(Duration::from_millis(1)).await;
    assert!(store.get("k").await.expect("get").is_none());
}

#[tokio::test(start_paused = true)]
async fn watched_map_recovers_from_falling_behind() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_limits(1000, 8));
    let map = WatchedMap::spawn(store.clone(), "n/", numbers(), WatchedMapConfig::default());
    wait_for(&map, Duration::from_secs(1), "load", |s| s.is_loaded()).await;
    // On this single-threaded runtime the mirror cannot run between these puts: it lags.
    for i in 0..100u32 {
        store
            .put(&format!("n/{i:03}"), i.to_string().into_bytes(), None)
            .await
            .expect("put");
    }
    let snap = wait_for(&map, Duration::from_secs(1), "catch up", |s| {
        s.entries.len() == 100
    })
    .await;
    assert!(snap.live);
    assert_eq!(
        snap.get("n/042").map(|v| **v),
        None,
        "keys are relative to the prefix"
    );
    assert_eq!(snap.get("042").map(|v| **v), Some(42));
}

#[tokio::test(start_paused = true)]
async fn watched_map_serves_last_snapshot_while_store_is_down() {
    let inner = MemoryStore::new();
    let flaky = Arc::new(Flaky::new(inner.clone()));
    let store: Arc<dyn Store> = flaky.clone();
    store
        .put("relays/a", b"1".to_vec(), None)
        .await
        .expect("put");
    let config = WatchedMapConfig {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };
    let map = WatchedMap::spawn(store.clone(), "relays/", numbers(), config);
    wait_for(&map, Duration::from_secs(1), "load", |s| s.is_loaded()).await;

    flaky.set_down(true);
    let went_down = Instant::now();
    let stale = wait_for(&map, Duration::from_secs(1), "stale", |s| !s.live).await;
    assert_eq!(
        contents(&stale),
        map_of(&[("a", 1)]),
        "the last snapshot is still served"
    );
    assert!(stale
        .error
        .as_deref()
        .is_some_and(|e| e.contains("unavailable")));
    // Meanwhile the world changes (another replica wrote to a reachable etcd member).
    Backend::put(&inner, "relays/b", b"2".to_vec(), None)
        .await
        .expect("put");
    sleep(Duration::from_secs(30)).await;
    let snap = map.snapshot();
    assert!(!snap.live);
    let age = snap.age(Instant::now()).expect("loaded");
    assert!(
        age >= Duration::from_secs(30) && age <= went_down.elapsed(),
        "age {age:?}"
    );
    assert_eq!(contents(&snap), map_of(&[("a", 1)]));

    flaky.set_down(false);
    let want: BTreeMap<String, u32> = map_of(&[("a", 1), ("b", 2)]);
    // Backoff is capped at 2 s (± 20 % jitter): back within 3 s.
    let back = wait_for(&map, Duration::from_secs(3), "recovery", |s| {
        s.live && contents(s) == want
    });
    let back = back.await;
    assert_eq!(back.age(Instant::now()), Some(Duration::ZERO));
    assert!(back.error.is_none());
}
