//! WatchedMap cases, run on every store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nexrtc_controller::store::{Decoder, Snapshot, WatchedMap, WatchedMapConfig};

use super::{Ctx, SHORT};

pub fn numbers() -> Decoder<u32> {
    Arc::new(|_key: &str, bytes: &[u8]| {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        text.parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())
    })
}

pub fn contents(snapshot: &Snapshot<u32>) -> BTreeMap<String, u32> {
    snapshot
        .entries
        .iter()
        .map(|(k, v)| (k.clone(), **v))
        .collect()
}

pub fn map_of(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub async fn wait_for(
    map: &WatchedMap<u32>,
    within: Duration,
    what: &str,
    ready: impl FnMut(&Snapshot<u32>) -> bool,
) -> Arc<Snapshot<u32>> {
    match tokio::time::timeout(within, map.wait_for(ready)).await {
        Ok(snapshot) => snapshot,
        Err(_) => panic!(
            "{what}: not reached within {within:?}; have {:?}",
            map.snapshot()
        ),
    }
}

pub async fn watched_map_follows_store(ctx: Ctx) {
    let s = &ctx.store;
    s.put("relays/eu/a", b"1".to_vec(), None)
        .await
        .expect("put");
    s.put("relays/eu/b", b"not a number".to_vec(), None)
        .await
        .expect("put");
    s.put("regions/eu", b"9".to_vec(), None).await.expect("put");
    let map = WatchedMap::spawn(s.clone(), "relays/", numbers(), WatchedMapConfig::default());
    let first = wait_for(&map, SHORT, "first load", |snap| snap.is_loaded()).await;
    assert!(first.live);
    assert_eq!(first.age(tokio::time::Instant::now()), Some(Duration::ZERO));
    assert_eq!(
        contents(&first),
        map_of(&[("eu/a", 1)]),
        "undecodable value left out"
    );
    assert_eq!(first.get("eu/a").map(|v| **v), Some(1));

    s.put("relays/us/c", b"3".to_vec(), None)
        .await
        .expect("put");
    s.delete("relays/eu/a").await.expect("delete");
    s.put("regions/us", b"8".to_vec(), None).await.expect("put");
    let last = s
        .put("relays/eu/b", b"2".to_vec(), None)
        .await
        .expect("put");
    let want = map_of(&[("eu/b", 2), ("us/c", 3)]);
    let snap = wait_for(&map, SHORT, "updates", |snap| contents(snap) == want).await;
    assert_eq!(snap.revision, last);
    assert!(snap.live && snap.error.is_none());
}

pub async fn watched_map_drops_expired_lease(ctx: Ctx) {
    let s = &ctx.store;
    let lease = s.grant_lease(ctx.ttl).await.expect("grant");
    s.put("relays/eu/dead", b"1".to_vec(), Some(lease.id))
        .await
        .expect("put");
    s.put("relays/eu/alive", b"2".to_vec(), None)
        .await
        .expect("put");
    let map = WatchedMap::spawn(s.clone(), "relays/", numbers(), WatchedMapConfig::default());
    wait_for(&map, SHORT, "load", |snap| snap.entries.len() == 2).await;
    let start = tokio::time::Instant::now();
    let within = lease.ttl + ctx.slack + SHORT;
    let snap = wait_for(&map, within, "expiry", |snap| snap.entries.len() == 1).await;
    assert_eq!(contents(&snap), map_of(&[("eu/alive", 2)]));
    let took = start.elapsed();
    assert!(
        took <= lease.ttl + ctx.slack,
        "lease-bound entry left after {took:?}"
    );
    eprintln!(
        "lease-bound entry left the snapshot {took:?} after the put (TTL {:?})",
        lease.ttl
    );
}
