//! The in-memory picture every request is answered from.
//!
//! [`Snapshots`] mirrors eight store prefixes with [`WatchedMap`]s (relays, regions,
//! tenants, keys, revocations, room-token revocations, probes, client probes). A background task rebuilds a [`View`] — the relay records
//! plus a precomputed [`nexrtc_geo::Ranker`] — whenever relays, regions or probes change,
//! and publishes it behind a `tokio::sync::watch` (an `Arc` clone under a read lock to
//! take). So `POST /v1/ice-servers` never touches the store: it reads the key and tenant
//! from their snapshots (one hash lookup each) and asks the current `View`'s ranker
//! (O(healthy regions), see `nexrtc_geo`). Rebuilds coalesce: at most one per
//! [`MIN_REBUILD_INTERVAL`] (50 ms), changes meanwhile folded into the next one, so a fleet
//! of 5,000 relays costs ≤ 20 rebuilds/s (`Ranker::new` is O(relays · log relays)).
//!
//! When the store is unreachable the maps keep their last entries and report an age
//! ([`Snapshots::age`]); the controller keeps answering from them, and `/readyz` fails
//! once the age passes the configured bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nexrtc_geo::{Probe, Ranker, RelayView, Weights};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::model::{self, ClientProbeRecord, KeyRecord, ProbeRecord, Region, RelayRecord};
use crate::model::{RelayState, Revocation, CLIENT_PROBES};
use crate::model::{RoomRevocation, TenantRecord, ROOM_REVOKED};
use crate::model::{KEYS, PROBES, REGIONS, RELAYS, REVOKED, TENANTS};
use crate::store::{Decoder, Snapshot, Store, WatchedMap, WatchedMapConfig};

/// What ranking is configured with (besides the store's contents).
#[derive(Debug, Clone)]
pub struct RankingOptions {
    /// Where clients without a GeoIP location are assumed to be.
    pub default_region: Option<String>,
    pub weights: Weights,
    /// Probes older than this are ignored.
    pub probe_max_age: Duration,
}

impl Default for RankingOptions {
    fn default() -> Self {
        RankingOptions {
            default_region: None,
            weights: Weights::DEFAULT,
            probe_max_age: Duration::from_secs(600),
        }
    }
}

/// Relays and the ranking over them, at one point in time.
#[derive(Debug)]
pub struct View {
    pub ranker: Ranker,
    /// Relay records by id (`<region>/<node>`, their key under `relays/`).
    pub relays: Arc<HashMap<String, Arc<RelayRecord>>>,
    /// Store revisions of the relay, region and probe snapshots this view was built from.
    pub relays_revision: i64,
    pub regions_revision: i64,
    pub probes_revision: i64,
}

impl View {
    /// Builds the ranking input from the snapshots (relays dropped from ranking when their
    /// key and record disagree on the region).
    pub fn build(
        relays: &Snapshot<RelayRecord>,
        regions: &Snapshot<Region>,
        probes: &Snapshot<ProbeRecord>,
        options: &RankingOptions,
        now_unix: u64,
    ) -> View {
        let mut relay_views: Vec<RelayView> = Vec::with_capacity(relays.entries.len());
        for (id, r) in relays.entries.iter() {
            if id.split_once('/').map(|(region, _)| region) != Some(r.region.as_str()) {
                continue;
            }
            let state = match r.state {
                RelayState::Active => nexrtc_geo::RelayState::Active,
                RelayState::Draining => nexrtc_geo::RelayState::Draining,
            };
            relay_views.push(RelayView {
                id: id.clone(),
                region: r.region.clone(),
                load: r.load.fraction(),
                state,
                full: r.load.is_full(),
            });
        }
        let max_age = options.probe_max_age.as_secs();
        let fresh_probes = (probes.entries.iter())
            .filter(|(_, p)| p.measured_at.saturating_add(max_age) >= now_unix && p.loss < 1.0)
            .filter_map(|(k, p)| {
                let (from, to) = k.split_once('/')?;
                Some(Probe::new(from, to, p.rtt_ms))
            })
            .collect();
        let snapshot = nexrtc_geo::Snapshot {
            regions: regions.entries.values().map(|r| Region::clone(r)).collect(),
            relays: relay_views,
            probes: fresh_probes,
            default_region: options.default_region.clone(),
            weights: options.weights,
        };
        View {
            ranker: Ranker::new(&snapshot),
            relays: relays.entries.clone(),
            relays_revision: relays.revision,
            regions_revision: regions.revision,
            probes_revision: probes.revision,
        }
    }
}

/// The mirrored store and the current [`View`] (see the module docs).
pub struct Snapshots {
    pub relays: WatchedMap<RelayRecord>,
    pub regions: WatchedMap<Region>,
    pub tenants: WatchedMap<TenantRecord>,
    pub keys: WatchedMap<KeyRecord>,
    pub revoked: WatchedMap<Revocation>,
    pub room_revoked: WatchedMap<RoomRevocation>,
    pub probes: WatchedMap<ProbeRecord>,
    /// Client networks' measured RTTs (read per ICE request; not part of the view).
    pub client_probes: WatchedMap<ClientProbeRecord>,
    view: watch::Receiver<Arc<View>>,
    task: JoinHandle<()>,
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("relays", &self.relays.snapshot())
            .field("regions", &self.regions.snapshot())
            .finish_non_exhaustive()
    }
}

fn map<T>(store: &Arc<dyn Store>, prefix: &str) -> WatchedMap<T>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let decode: Decoder<T> = Arc::new(model::decode::<T>);
    WatchedMap::spawn(store.clone(), prefix, decode, WatchedMapConfig::default())
}

impl Snapshots {
    /// Starts mirroring (inside a tokio runtime). Nothing is loaded yet: see
    /// [`Snapshots::loaded`].
    /// [`Metrics::set_relays`] follows every view.
    pub fn start(
        store: &Arc<dyn Store>,
        options: RankingOptions,
        clock: Clock,
        metrics: Metrics,
    ) -> Snapshots {
        let relays: WatchedMap<RelayRecord> = map(store, RELAYS);
        let regions: WatchedMap<Region> = map(store, REGIONS);
        let probes: WatchedMap<ProbeRecord> = map(store, PROBES);
        let first = View::build(
            &relays.snapshot(),
            &regions.snapshot(),
            &probes.snapshot(),
            &options,
            clock.unix_now(),
        );
        let (tx, view) = watch::channel(Arc::new(first));
        let inputs = (relays.subscribe(), regions.subscribe(), probes.subscribe());
        let task = tokio::spawn(rebuild(inputs, tx, options, clock, metrics));
        Snapshots {
            relays,
            regions,
            tenants: map(store, TENANTS),
            keys: map(store, KEYS),
            revoked: map(store, REVOKED),
            room_revoked: map(store, ROOM_REVOKED),
            probes,
            client_probes: map(store, CLIENT_PROBES),
            view,
            task,
        }
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// A receiver notified at every new view.
    pub fn subscribe_view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Waits until every prefix has been listed once and the view reflects it.
    pub async fn loaded(&self) {
        self.relays.wait_for(|s| s.is_loaded()).await;
        self.regions.wait_for(|s| s.is_loaded()).await;
        self.tenants.wait_for(|s| s.is_loaded()).await;
        self.keys.wait_for(|s| s.is_loaded()).await;
        self.revoked.wait_for(|s| s.is_loaded()).await;
        self.room_revoked.wait_for(|s| s.is_loaded()).await;
        self.probes.wait_for(|s| s.is_loaded()).await;
        self.client_probes.wait_for(|s| s.is_loaded()).await;
        let (r, g, p) = (
            self.relays.snapshot().revision,
            self.regions.snapshot().revision,
            self.probes.snapshot().revision,
        );
        self.wait_view(|v| {
            v.relays_revision >= r && v.regions_revision >= g && v.probes_revision >= p
        })
        .await;
    }

    /// Waits until the view satisfies `ready` (returns it either way when the rebuild task
    /// is gone).
    pub async fn wait_view(&self, mut ready: impl FnMut(&View) -> bool) -> Arc<View> {
        let mut rx = self.view.clone();
        let found = rx.wait_for(|v| ready(v)).await.map(|v| v.clone()).ok();
        found.unwrap_or_else(|| self.view())
    }

    /// How stale the picture may be: the largest age of the mirrored prefixes; `None`
    /// until all were loaded once.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        let ages = [
            self.relays.snapshot().age(now),
            self.regions.snapshot().age(now),
            self.tenants.snapshot().age(now),
            self.keys.snapshot().age(now),
            self.revoked.snapshot().age(now),
            self.room_revoked.snapshot().age(now),
            self.probes.snapshot().age(now),
            self.client_probes.snapshot().age(now),
        ];
        ages.into_iter()
            .try_fold(Duration::ZERO, |max, age| age.map(|a| a.max(max)))
    }
}

/// Shortest time between two view rebuilds: a relay change reaches ICE answers within
/// this plus the watch latency.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(50);

type Inputs = (
    watch::Receiver<Arc<Snapshot<RelayRecord>>>,
    watch::Receiver<Arc<Snapshot<Region>>>,
    watch::Receiver<Arc<Snapshot<ProbeRecord>>>,
);

/// Rebuilds the view at every change of its inputs; ends when the maps are dropped.
async fn rebuild(
    (mut relays, mut regions, mut probes): Inputs,
    tx: watch::Sender<Arc<View>>,
    options: RankingOptions,
    clock: Clock,
    metrics: Metrics,
) {
    loop {
        let (r, g, p) = (
            relays.borrow_and_update().clone(),
            regions.borrow_and_update().clone(),
            probes.borrow_and_update().clone(),
        );
        let view = View::build(&r, &g, &p, &options, clock.unix_now());
        for issue in view.ranker.issues() {
            tracing::debug!(%issue, "ranking input");
        }
        metrics.set_relays(&view.relays);
        tx.send_replace(Arc::new(view));
        // Coalesce bursts (thousands of heartbeat writes per second in a big fleet): at most
        // one rebuild per interval; changes meanwhile are folded into the next one.
        tokio::time::sleep(MIN_REBUILD_INTERVAL).await;
        let changed = tokio::select! {
            c = relays.changed() => c,
            c = regions.changed() => c,
            c = probes.changed() => c,
        };
        if changed.is_err() {
            return;
        }
    }
}
