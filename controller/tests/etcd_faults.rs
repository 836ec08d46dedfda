//! EtcdStore under faults, each test with an etcd of its own: etcd killed (calls fail fast
//! with `Unavailable`, snapshots keep being served) and restarted on the same port and data
//! (the same client works again, the snapshot recovers by itself); etcd frozen (SIGSTOP:
//! connections stay open but nothing answers, so only timeouts and HTTP/2 pings save the
//! caller); compaction; dropped watches cancelled in etcd.

mod cases;
mod support;

use std::sync::Arc;
use std::time::Duration;

use cases::watched::{contents, map_of, numbers, wait_for};
use nexrtc_controller::store::{EtcdStore, Store, StoreError, WatchedMap, WatchedMapConfig};
use support::{store_for, Etcd};
use tokio::time::{timeout, Instant};

/// Longest a call may take against a dead etcd: the 2 s request timeout plus scheduling.
const FAIL_FAST: Duration = Duration::from_secs(3);

async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let start = Instant::now();
    let result = timeout(Duration::from_secs(10), call)
        .await
        .expect("call hung");
    let took = start.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
    assert!(took <= FAIL_FAST, "{what} took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_fails_fast_then_recovers() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store_for(&etcd, "/nexrtc-test/faults/").await);
    store
        .put("relays/a", b"1".to_vec(), None)
        .await
        .expect("put");
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    let config = WatchedMapConfig {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    };
    let map = WatchedMap::spawn(store.clone(), "relays/", numbers(), config);
    wait_for(&map, Duration::from_secs(5), "load", |s| s.is_loaded()).await;
    let mut watch = store.watch("relays/", 0).await.expect("watch");

    etcd.kill();
    let killed = Instant::now();
    match timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("watch hung")
    {
        Some(Err(StoreError::Unavailable(_))) => {}
        other => panic!("an open watch must end with Unavailable: {other:?}"),
    }
    eprintln!("open watch ended {:?} after the kill", killed.elapsed());
    assert_unavailable("get", store.get("relays/a")).await;
    assert_unavailable("list", store.list("relays/")).await;
    assert_unavailable("put", store.put("relays/x", b"1".to_vec(), None)).await;
    assert_unavailable("delete", store.delete("relays/a")).await;
    assert_unavailable("create", store.create("relays/x", b"1".to_vec(), None)).await;
    assert_unavailable(
        "cas",
        store.compare_and_swap("relays/x", 0, b"1".to_vec(), None),
    )
    .await;
    assert_unavailable("grant", store.grant_lease(Duration::from_secs(5))).await;
    assert_unavailable("keep-alive", store.keep_alive(lease.id)).await;
    assert_unavailable("revoke", store.revoke_lease(lease.id)).await;
    assert_unavailable("watch", store.watch("relays/", 0)).await;
    // A client created while etcd is down connects lazily and fails fast too.
    let late = store_for(&etcd, "/nexrtc-test/faults/").await;
    assert_unavailable("late client get", Store::get(&late, "relays/a")).await;

    let stale = wait_for(&map, Duration::from_secs(5), "stale", |s| !s.live).await;
    assert_eq!(
        contents(&stale),
        map_of(&[("a", 1)]),
        "last snapshot still served"
    );

    let restarted = Instant::now();
    etcd.restart(); // same ports, same data
    let deadline = restarted + Duration::from_secs(20);
    while store.put("relays/b", b"2".to_vec(), None).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the old client never worked again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "old client worked again {:?} after the restart",
        restarted.elapsed()
    );
    assert!(Store::get(&late, "relays/a")
        .await
        .expect("late client")
        .is_some());
    assert!(
        store.keep_alive(lease.id).await.is_ok(),
        "leases survive a restart"
    );
    let want = map_of(&[("a", 1), ("b", 2)]);
    let back = wait_for(&map, Duration::from_secs(10), "recovery", |s| {
        s.live && contents(s) == want
    })
    .await;
    eprintln!(
        "snapshot live again {:?} after the restart",
        restarted.elapsed()
    );
    assert!(back.error.is_none());
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_frozen_times_out_then_recovers() {
    let Some(etcd) = Etcd::start() else { return };
    let store: Arc<dyn Store> = Arc::new(store_for(&etcd, "/nexrtc-test/frozen/").await);
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    let mut watch = store.watch("", 0).await.expect("watch");

    etcd.pause(); // SIGSTOP
    let frozen = Instant::now();
    assert_unavailable("get", store.get("a")).await;
    assert_unavailable("put", store.put("a", b"1".to_vec(), None)).await;
    assert_unavailable("keep-alive", store.keep_alive(lease.id)).await;
    assert_unavailable("watch", store.watch("", 0)).await;
    // The open watch notices through HTTP/2 keep-alive pings (2 s interval, 2 s timeout).
    match timeout(Duration::from_secs(15), watch.next())
        .await
        .expect("watch hung")
    {
        Some(Err(StoreError::Unavailable(_))) => {}
        other => panic!("a watch on a frozen etcd must end with Unavailable: {other:?}"),
    }
    eprintln!(
        "watch on a frozen etcd ended {:?} after the freeze",
        frozen.elapsed()
    );

    etcd.resume(); // SIGCONT
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(20);
    while store.put("a", b"2".to_vec(), None).await.is_err() {
        assert!(Instant::now() < deadline, "the client never worked again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("client worked again {:?} after the thaw", thawed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_ends_watch_with_compacted() {
    let Some(etcd) = Etcd::start() else { return };
    let store = store_for(&etcd, "/nexrtc-test/compact/").await;
    let first = Store::put(&store, "k", b"1".to_vec(), None)
        .await
        .expect("put");
    let mut last = first;
    for i in 2..6u8 {
        last = Store::put(&store, "k", vec![i], None).await.expect("put");
    }
    store.client().compact(last, None).await.expect("compact");
    // etcd confirms the watch, then cancels it with the compaction revision.
    let compacted = match Store::watch(&store, "", first).await {
        Err(error) => error,
        Ok(mut watch) => match watch.next().await {
            Some(Err(error)) => error,
            other => panic!("expected an error, got {other:?}"),
        },
    };
    assert_eq!(compacted, StoreError::Compacted { revision: last });
    let mut watch = Store::watch(&store, "", last)
        .await
        .expect("from the compaction point");
    let event = watch.next().await.expect("event").expect("ok");
    assert_eq!(event.revision(), last);
    let dyn_store: Arc<dyn Store> = Arc::new(store);
    let map = WatchedMap::spawn(dyn_store, "", numbers(), WatchedMapConfig::default());
    wait_for(&map, Duration::from_secs(5), "load after compaction", |s| {
        s.live
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cancels_a_dropped_watch() {
    const GAUGE: &str = "etcd_debugging_mvcc_watcher_total";
    let Some(etcd) = Etcd::start() else { return };
    let store: EtcdStore = store_for(&etcd, "/nexrtc-test/drop/").await;
    let before = etcd.metric(GAUGE);
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(Store::watch(&store, "w/", 0).await.expect("watch"));
    }
    assert_eq!(etcd.metric(GAUGE), before + 3.0);
    drop(watches);
    let deadline = Instant::now() + Duration::from_secs(5);
    while etcd.metric(GAUGE) != before {
        assert!(
            Instant::now() < deadline,
            "dropped watches still registered in etcd"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
