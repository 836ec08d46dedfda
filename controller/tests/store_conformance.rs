//! One conformance suite, every case run against both stores:
//! `memory::<case>` on a fresh `MemoryStore` with paused tokio time, and `etcd::<case>`
//! on a real etcd shared by this binary (each case under a key prefix of its own).

mod cases;
mod support;

use std::sync::Arc;
use std::time::Duration;

use cases::Ctx;
use nexrtc_controller::store::MemoryStore;

fn memory_ctx() -> Ctx {
    let store = MemoryStore::new();
    let probe = store.clone();
    Ctx {
        store: Arc::new(store),
        ttl: Duration::from_secs(1),
        slack: Duration::ZERO,
        watchers: Some(Box::new(move || probe.watchers())),
    }
}

async fn etcd_ctx(test: &str) -> Option<Ctx> {
    let store = support::etcd_store(test).await?;
    Some(Ctx {
        store: Arc::new(store),
        // 2 s rather than etcd's 1 s minimum: keep-alives every TTL / 2 must still land in
        // time on a CPU-starved test machine.
        ttl: Duration::from_secs(2),
        // etcd's lessor checks expiry every 500 ms and revokes through raft.
        slack: Duration::from_millis(1500),
        watchers: None, // counted in etcd_faults.rs, on an etcd of its own
    })
}

macro_rules! conformance {
    ($($case:path => $name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    $case(memory_ctx()).await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(ctx) = etcd_ctx(stringify!($name)).await else { return };
                    tokio::time::timeout(Duration::from_secs(30), $case(ctx))
                        .await
                        .expect("case took over 30 s");
                }
            )*
        }
    };
}

conformance! {
    cases::revisions_and_metadata => revisions_and_metadata,
    cases::list_returns_revision_and_only_prefix => list_returns_revision_and_only_prefix,
    cases::range_is_half_open_sorted_and_limited => range_is_half_open_sorted_and_limited,
    cases::create_if_absent => create_if_absent,
    cases::compare_and_swap => compare_and_swap,
    cases::delete_reports_existence => delete_reports_existence,
    cases::lease_expiry_deletes_and_notifies => lease_expiry_deletes_and_notifies,
    cases::keep_alive_extends => keep_alive_extends,
    cases::lease_not_found => lease_not_found,
    cases::time_to_live_bounds => time_to_live_bounds,
    cases::revoke_deletes_attached_keys => revoke_deletes_attached_keys,
    cases::watch_replays_from_revision => watch_replays_from_revision,
    cases::watch_sees_prefix_only => watch_sees_prefix_only,
    cases::dropping_a_watch_stops_it => dropping_a_watch_stops_it,
    cases::concurrent_cas_loses_no_update => concurrent_cas_loses_no_update,
    cases::watched::watched_map_follows_store => watched_map_follows_store,
    cases::watched::watched_map_drops_expired_lease => watched_map_drops_expired_lease,
}
