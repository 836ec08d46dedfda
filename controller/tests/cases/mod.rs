//! The Store conformance cases: each takes a [`Ctx`] and must pass on every implementation.
#![allow(dead_code)]

pub mod watched;

use std::sync::Arc;
use std::time::Duration;

use nexrtc_controller::store::{
    Lease, LeaseId, Listing, Outcome, Store, StoreError, Watch, WatchEvent,
};

/// What a case gets: the store and its timing.
pub struct Ctx {
    pub store: Arc<dyn Store>,
    /// Lease TTL the cases request (etcd may grant more: cases use the granted TTL).
    pub ttl: Duration,
    /// How late after its TTL a lease may be expired (etcd checks every 500 ms).
    pub slack: Duration,
    /// Counts live watches, where the implementation can tell.
    pub watchers: Option<Box<dyn Fn() -> usize + Send + Sync>>,
}

pub async fn next_event(watch: &mut Watch, within: Duration) -> WatchEvent {
    match tokio::time::timeout(within, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(other) => panic!("watch ended: {other:?}"),
        Err(_) => panic!("no watch event within {within:?}"),
    }
}

pub async fn no_event(watch: &mut Watch, within: Duration) {
    if let Ok(event) = tokio::time::timeout(within, watch.next()).await {
        panic!("unexpected watch event: {event:?}");
    }
}

fn put_of(event: WatchEvent) -> (String, Vec<u8>, i64) {
    match event {
        WatchEvent::Put(kv) => (kv.key, kv.value, kv.mod_revision),
        other => panic!("expected a put, got {other:?}"),
    }
}

fn delete_of(event: WatchEvent) -> (String, i64) {
    match event {
        WatchEvent::Delete { key, mod_revision } => (key, mod_revision),
        other => panic!("expected a delete, got {other:?}"),
    }
}

pub const SHORT: Duration = Duration::from_secs(3);

pub async fn revisions_and_metadata(ctx: Ctx) {
    let s = &ctx.store;
    let start = s.list("").await.expect("list").revision;
    let r1 = s.put("a", b"1".to_vec(), None).await.expect("put");
    let r2 = s.put("b", b"2".to_vec(), None).await.expect("put");
    let r3 = s.put("a", b"3".to_vec(), None).await.expect("put");
    assert!(start < r1 && r1 < r2 && r2 < r3, "{start} {r1} {r2} {r3}");
    let a = s.get("a").await.expect("get").expect("a exists");
    assert_eq!((a.key.as_str(), a.value.as_slice()), ("a", &b"3"[..]));
    assert_eq!((a.create_revision, a.mod_revision, a.lease), (r1, r3, None));
    assert!(s.get("missing").await.expect("get").is_none());
    let reads = s.list("").await.expect("list").revision;
    assert!(reads >= r3);
}

pub async fn list_returns_revision_and_only_prefix(ctx: Ctx) {
    let s = &ctx.store;
    for key in ["p/b", "p/a", "p/c/d", "px", "q/a"] {
        s.put(key, key.as_bytes().to_vec(), None)
            .await
            .expect("put");
    }
    let last = s.put("p/e", b"e".to_vec(), None).await.expect("put");
    let listing = s.list("p/").await.expect("list");
    let keys: Vec<_> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["p/a", "p/b", "p/c/d", "p/e"]);
    assert!(listing.revision >= last);
    assert!(s.list("nothing/").await.expect("list").kvs.is_empty());
}

pub async fn range_is_half_open_sorted_and_limited(ctx: Ctx) {
    let s = &ctx.store;
    for key in ["r/3", "r/1", "r/2", "r/20", "r/4", "s/1"] {
        s.put(key, key.as_bytes().to_vec(), None)
            .await
            .expect("put");
    }
    let keys = |l: &Listing| l.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let all = s.range("r/2", "r/4", 100).await.expect("range");
    assert_eq!(keys(&all), ["r/2", "r/20", "r/3"]);
    assert_eq!(all.kvs[0].value, b"r/2");
    let first = s.range("r/", "r0", 2).await.expect("range");
    assert_eq!(keys(&first), ["r/1", "r/2"]);
    assert!(first.revision >= all.revision);
    for (start, end, limit) in [("r/4", "r/2", 10), ("r/2", "r/2", 10), ("r/1", "r/9", 0)] {
        let none = s.range(start, end, limit).await.expect("range");
        assert!(none.kvs.is_empty(), "{start}..{end} limit {limit}");
        assert!(none.revision >= all.revision);
    }
}

pub async fn create_if_absent(ctx: Ctx) {
    let s = &ctx.store;
    let Outcome::Written { revision } = s.create("k", b"v1".to_vec(), None).await.expect("create")
    else {
        panic!("create on an absent key must write");
    };
    match s.create("k", b"v2".to_vec(), None).await.expect("create") {
        Outcome::Conflict { current: Some(kv) } => {
            assert_eq!(
                (kv.value.as_slice(), kv.mod_revision),
                (&b"v1"[..], revision)
            );
        }
        other => panic!("second create must conflict: {other:?}"),
    }
    assert!(s.delete("k").await.expect("delete"));
    assert!(s
        .create("k", b"v3".to_vec(), None)
        .await
        .expect("create")
        .is_written());
    let kv = s.get("k").await.expect("get").expect("k");
    assert_eq!(kv.value, b"v3");
    assert!(
        kv.create_revision > revision,
        "re-created key gets a new create_revision"
    );
}

pub async fn compare_and_swap(ctx: Ctx) {
    let s = &ctx.store;
    // expected 0 = "absent": behaves as create.
    let Outcome::Written { revision: r1 } = s
        .compare_and_swap("c", 0, b"1".to_vec(), None)
        .await
        .expect("cas")
    else {
        panic!("cas(0) on an absent key must write");
    };
    match s
        .compare_and_swap("c", 0, b"x".to_vec(), None)
        .await
        .expect("cas")
    {
        Outcome::Conflict { current: Some(kv) } => assert_eq!(kv.mod_revision, r1),
        other => panic!("cas(0) on a present key must conflict: {other:?}"),
    }
    match s
        .compare_and_swap("c", r1 + 1000, b"x".to_vec(), None)
        .await
        .expect("cas")
    {
        Outcome::Conflict { current: Some(kv) } => assert_eq!(kv.value, b"1"),
        other => panic!("stale cas must conflict: {other:?}"),
    }
    let Outcome::Written { revision: r2 } = s
        .compare_and_swap("c", r1, b"2".to_vec(), None)
        .await
        .expect("cas")
    else {
        panic!("cas with the current mod_revision must write");
    };
    assert!(r2 > r1);
    let kv = s.get("c").await.expect("get").expect("c");
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.create_revision),
        (&b"2"[..], r2, r1)
    );
    match s
        .compare_and_swap("gone", 5, b"x".to_vec(), None)
        .await
        .expect("cas")
    {
        Outcome::Conflict { current: None } => {}
        other => panic!("cas on an absent key with expected != 0 must conflict: {other:?}"),
    }
    assert!(s.get("gone").await.expect("get").is_none());
}

pub async fn delete_reports_existence(ctx: Ctx) {
    let s = &ctx.store;
    s.put("d", b"1".to_vec(), None).await.expect("put");
    let before = s.list("").await.expect("list").revision;
    assert!(s.delete("d").await.expect("delete"));
    assert!(s.get("d").await.expect("get").is_none());
    assert!(!s.delete("d").await.expect("delete"));
    assert!(s.list("").await.expect("list").revision > before);
}

async fn lease(ctx: &Ctx) -> Lease {
    let lease = ctx.store.grant_lease(ctx.ttl).await.expect("grant");
    assert!(
        lease.ttl >= ctx.ttl,
        "granted {:?} < requested {:?}",
        lease.ttl,
        ctx.ttl
    );
    assert!(lease.ttl.subsec_nanos() == 0, "whole seconds");
    lease
}

pub async fn lease_expiry_deletes_and_notifies(ctx: Ctx) {
    let s = &ctx.store;
    let lease = lease(&ctx).await;
    s.put("l/one", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    s.put("l/two", b"2".to_vec(), Some(lease.id))
        .await
        .expect("put");
    let r = s.put("l/free", b"3".to_vec(), None).await.expect("put");
    assert_eq!(
        s.get("l/one").await.expect("get").expect("one").lease,
        Some(lease.id)
    );
    let mut watch = s.watch("l/", r + 1).await.expect("watch");
    let within = lease.ttl + ctx.slack + SHORT;
    let first = next_event(&mut watch, within).await;
    let second = next_event(&mut watch, SHORT).await;
    let (k1, rev1) = delete_of(first);
    let (k2, rev2) = delete_of(second);
    let mut keys = [k1.as_str(), k2.as_str()];
    keys.sort_unstable();
    assert_eq!(keys, ["l/one", "l/two"]);
    assert_eq!(rev1, rev2, "one expiry = one revision");
    let left: Vec<_> = s
        .list("l/")
        .await
        .expect("list")
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, ["l/free"]);
    assert_eq!(s.keep_alive(lease.id).await, Err(StoreError::LeaseNotFound));
}

pub async fn keep_alive_extends(ctx: Ctx) {
    let s = &ctx.store;
    let lease = lease(&ctx).await;
    s.put("ka", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    for _ in 0..4 {
        tokio::time::sleep(lease.ttl / 2).await;
        s.keep_alive(lease.id).await.expect("keep-alive");
    }
    // 2 × TTL have passed: only the keep-alives kept the key.
    assert!(s.get("ka").await.expect("get").is_some());
    let mut watch = s.watch("ka", 0).await.expect("watch");
    let (key, _) = delete_of(next_event(&mut watch, lease.ttl + ctx.slack + SHORT).await);
    assert_eq!(key, "ka");
}

/// `time_to_live` is an upper bound on the time left (etcd's whole seconds: at most 1 s
/// above it), falls as time passes without renewing, and rises again on a keep-alive.
pub async fn time_to_live_bounds(ctx: Ctx) {
    let s = &ctx.store;
    let lease = lease(&ctx).await;
    let granted = tokio::time::Instant::now();
    let half = lease.ttl / 2;
    tokio::time::sleep(half).await;
    let left = s.time_to_live(lease.id).await.expect("time to live");
    let real_left = lease.ttl.saturating_sub(granted.elapsed());
    assert!(
        left >= real_left,
        "{left:?} is below the real {real_left:?}"
    );
    assert!(
        left <= lease.ttl - half + Duration::from_secs(1),
        "{left:?} did not fall from {:?} after {half:?}",
        lease.ttl
    );
    // Reading did not renew; a keep-alive does.
    s.keep_alive(lease.id).await.expect("keep-alive");
    let renewed = s.time_to_live(lease.id).await.expect("time to live");
    assert!(
        renewed + Duration::from_millis(500) >= lease.ttl,
        "{renewed:?} after a keep-alive of a {:?} lease",
        lease.ttl
    );
    assert_eq!(
        s.time_to_live(LeaseId(0x7eed_beef)).await,
        Err(StoreError::LeaseNotFound)
    );
    s.revoke_lease(lease.id).await.expect("revoke");
    assert_eq!(
        s.time_to_live(lease.id).await,
        Err(StoreError::LeaseNotFound)
    );
}

pub async fn lease_not_found(ctx: Ctx) {
    let s = &ctx.store;
    let unknown = LeaseId(0x7eed_beef);
    assert_eq!(s.keep_alive(unknown).await, Err(StoreError::LeaseNotFound));
    assert_eq!(
        s.revoke_lease(unknown).await,
        Err(StoreError::LeaseNotFound)
    );
    assert_eq!(
        s.put("x", b"1".to_vec(), Some(unknown)).await,
        Err(StoreError::LeaseNotFound)
    );
    let create = s.create("y", b"1".to_vec(), Some(unknown)).await;
    assert_eq!(create, Err(StoreError::LeaseNotFound));
    assert!(s.get("x").await.expect("get").is_none());
    assert!(s.get("y").await.expect("get").is_none());
    // An expired lease is gone too.
    let lease = lease(&ctx).await;
    s.put("z", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    let mut watch = s.watch("z", 0).await.expect("watch");
    delete_of(next_event(&mut watch, lease.ttl + ctx.slack + SHORT).await);
    assert_eq!(s.keep_alive(lease.id).await, Err(StoreError::LeaseNotFound));
    assert_eq!(
        s.put("z", b"2".to_vec(), Some(lease.id)).await,
        Err(StoreError::LeaseNotFound)
    );
}

pub async fn revoke_deletes_attached_keys(ctx: Ctx) {
    let s = &ctx.store;
    let lease = s.grant_lease(Duration::from_secs(60)).await.expect("grant");
    s.put("r/a", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    s.put("r/b", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    s.put("r/c", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    // Re-put without the lease detaches r/c.
    let r = s.put("r/c", b"2".to_vec(), None).await.expect("put");
    let mut watch = s.watch("r/", r + 1).await.expect("watch");
    s.revoke_lease(lease.id).await.expect("revoke");
    let e1 = next_event(&mut watch, SHORT).await;
    let e2 = next_event(&mut watch, SHORT).await;
    assert_eq!(
        delete_of(e1).1,
        delete_of(e2).1,
        "one revocation = one revision"
    );
    let left: Vec<_> = s
        .list("r/")
        .await
        .expect("list")
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, ["r/c"]);
    assert_eq!(
        s.revoke_lease(lease.id).await,
        Err(StoreError::LeaseNotFound)
    );
    assert_eq!(s.keep_alive(lease.id).await, Err(StoreError::LeaseNotFound));
}

pub async fn watch_replays_from_revision(ctx: Ctx) {
    let s = &ctx.store;
    s.put("w/a", b"1".to_vec(), None).await.expect("put");
    let r2 = s.put("w/a", b"2".to_vec(), None).await.expect("put");
    s.put("w/b", b"x".to_vec(), None).await.expect("put");
    assert!(s.delete("w/a").await.expect("delete"));
    let mut watch = s.watch("w/", r2).await.expect("watch");
    let (key, value, rev) = put_of(next_event(&mut watch, SHORT).await);
    assert_eq!((key, value, rev), ("w/a".to_owned(), b"2".to_vec(), r2));
    let (key, _, _) = put_of(next_event(&mut watch, SHORT).await);
    assert_eq!(key, "w/b");
    let (key, deleted_at) = delete_of(next_event(&mut watch, SHORT).await);
    assert_eq!(key, "w/a");
    // Then live events.
    let r5 = s.put("w/c", b"live".to_vec(), None).await.expect("put");
    assert!(r5 > deleted_at);
    assert_eq!(
        put_of(next_event(&mut watch, SHORT).await),
        ("w/c".to_owned(), b"live".to_vec(), r5)
    );
    // From a listing's revision + 1: nothing old again.
    let listing = s.list("w/").await.expect("list");
    let mut after = s.watch("w/", listing.revision + 1).await.expect("watch");
    no_event(&mut after, Duration::from_millis(300)).await;
}

pub async fn watch_sees_prefix_only(ctx: Ctx) {
    let s = &ctx.store;
    let mut watch = s.watch("pre/", 0).await.expect("watch");
    s.put("pre", b"no".to_vec(), None).await.expect("put");
    s.put("prefix", b"no".to_vec(), None).await.expect("put");
    s.put("other/pre/x", b"no".to_vec(), None)
        .await
        .expect("put");
    let r = s.put("pre/x", b"yes".to_vec(), None).await.expect("put");
    s.delete("prefix").await.expect("delete");
    s.delete("pre/x").await.expect("delete");
    assert_eq!(
        put_of(next_event(&mut watch, SHORT).await),
        ("pre/x".to_owned(), b"yes".to_vec(), r)
    );
    assert_eq!(delete_of(next_event(&mut watch, SHORT).await).0, "pre/x");
    no_event(&mut watch, Duration::from_millis(300)).await;
}

pub async fn dropping_a_watch_stops_it(ctx: Ctx) {
    let s = &ctx.store;
    let count = || ctx.watchers.as_ref().map(|count| count());
    let before = count();
    let mut watch = s.watch("drop/", 0).await.expect("watch");
    s.put("drop/a", b"1".to_vec(), None).await.expect("put");
    next_event(&mut watch, SHORT).await;
    if let Some(before) = before {
        assert_eq!(count(), Some(before + 1));
    }
    drop(watch);
    if let Some(before) = before {
        assert_eq!(count(), Some(before));
    }
    // Writers are unaffected by the dropped watcher.
    for i in 0..50 {
        s.put("drop/a", vec![i], None).await.expect("put");
    }
}

pub async fn concurrent_cas_loses_no_update(ctx: Ctx) {
    const WRITERS: u64 = 6;
    const EACH: u64 = 15;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let s = ctx.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..EACH {
                loop {
                    let current = s.get("counter").await.expect("get");
                    let (n, expected) = match &current {
                        Some(kv) => (decode(&kv.value), kv.mod_revision),
                        None => (0, 0),
                    };
                    let next = (n + 1).to_string().into_bytes();
                    match s
                        .compare_and_swap("counter", expected, next, None)
                        .await
                        .expect("cas")
                    {
                        Outcome::Written { .. } => break,
                        Outcome::Conflict { .. } => conflicts += 1,
                    }
                    tokio::task::yield_now().await;
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let kv = ctx
        .store
        .get("counter")
        .await
        .expect("get")
        .expect("counter");
    assert_eq!(decode(&kv.value), WRITERS * EACH);
}

fn decode(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .expect("utf8")
        .parse()
        .expect("number")
}
