//! [`AppState`]: what every handler shares — the store, its mirrored [`Snapshots`], GeoIP,
//! the rate limiter, the clock and the settings.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use nexrtc_geo::{GeoIp, LatLon};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client_probes::{ClientProbeLimits, ClientProbes};
use crate::clock::Clock;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::model::RateLimit;
use crate::ratelimit::RateLimiter;
use crate::signal::{Hub, Replicas, SignalOptions};
use crate::state::{RankingOptions, Snapshots, View};
use crate::store::{Snapshot, Store, WatchedMap};
use crate::store_health::StoreHealth;

/// Everything about the API that is not in the store. [`Options::default`] is the
/// documented default of each field.
#[derive(Debug, Clone)]
pub struct Options {
    /// Peers whose `X-Forwarded-For` is believed (load balancers, CDN edges). Empty: the
    /// TCP peer is always the client.
    pub trusted_proxies: Vec<IpNet>,
    /// TTL of relay leases (5 s).
    pub lease_ttl: Duration,
    /// Heartbeat interval told to relays (1 s).
    pub heartbeat_interval: Duration,
    /// A relay whose lease nobody renewed for this long is removed without waiting for the
    /// lease to expire (2 s: two heartbeat intervals; see [`crate::liveness`]).
    pub relay_miss_after: Duration,
    /// A relay record is rewritten at least this often even if its load did not change
    /// materially (30 s).
    pub load_refresh: Duration,
    /// Rate limit of keys whose key record and tenant set none (100/s, burst 200).
    pub default_rate_limit: RateLimit,
    /// `/readyz` fails when the snapshot is older than this (30 s).
    pub max_snapshot_age: Duration,
    /// Who may read `/metrics` (loopback and private ranges by default).
    pub metrics_allow: Vec<IpNet>,
    /// How long an admin write waits to see itself in this replica's snapshot (2 s).
    pub write_wait: Duration,
    /// Region choice and ranking weights.
    pub ranking: RankingOptions,
    pub geoip: Option<Arc<GeoIp>>,
    pub clock: Clock,
    /// Signaling limits and this replica's advertised URL.
    pub signal: SignalOptions,
    /// Bounds of the client-probe aggregation.
    pub client_probes: ClientProbeLimits,
    /// Usage records older than this are deleted (7 days).
    pub usage_retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let nets = [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ];
        Options {
            trusted_proxies: Vec::new(),
            lease_ttl: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            relay_miss_after: Duration::from_secs(2),
            load_refresh: Duration::from_secs(30),
            default_rate_limit: RateLimit {
                per_second: 100.0,
                burst: 200,
            },
            max_snapshot_age: Duration::from_secs(30),
            metrics_allow: nets.iter().filter_map(|n| n.parse().ok()).collect(),
            write_wait: Duration::from_secs(2),
            ranking: RankingOptions::default(),
            geoip: None,
            clock: Clock::System,
            signal: SignalOptions::default(),
            client_probes: ClientProbeLimits::default(),
            usage_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The shared state of the HTTP handlers (cheap to clone).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Arc<dyn Store>,
    pub snapshots: Snapshots,
    pub options: Options,
    pub limiter: RateLimiter,
    /// When this replica last renewed each relay lease (missed-heartbeat detection).
    pub liveness: Arc<Liveness>,
    /// Whether the store answers (`crate::store_health`).
    pub store_health: Arc<StoreHealth>,
    /// Signaling rooms hosted here.
    pub rooms: Arc<Hub>,
    /// This replica's registration and the live replicas (signaling routes rooms over them).
    pub replicas: Replicas,
    /// This controller's metrics (`/metrics`).
    pub metrics: Metrics,
    /// Client probe reports received here (`crate::client_probes`).
    pub client_probes: ClientProbes,
    /// The DNS server of this replica, once it listens (`/readyz` reports it).
    pub dns: std::sync::OnceLock<crate::dns::DnsStatus>,
    /// `true` once the server is shutting down: long-lived streams end.
    closing: watch::Sender<bool>,
    upkeep: JoinHandle<()>,
    detector: JoinHandle<()>,
    prober: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.upkeep.abort();
        self.detector.abort();
        self.prober.abort();
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Starts mirroring the store and waits for the first complete snapshot (inside a tokio
    /// runtime). While the store is unreachable this waits; `run` bounds it.
    pub async fn start(store: Arc<dyn Store>, options: Options) -> AppState {
        let metrics = Metrics::new();
        let snapshots = Snapshots::start(
            &store,
            options.ranking.clone(),
            options.clock,
            metrics.clone(),
        );
        let upkeep = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    metrics.upkeep();
                }
            }
        });
        let liveness = Arc::new(Liveness::default());
        let detector = liveness.spawn(
            Arc::clone(&store),
            options.relay_miss_after,
            metrics.clone(),
        );
        let store_health = Arc::new(StoreHealth::default());
        let prober = store_health.spawn(Arc::clone(&store), Arc::clone(&liveness), metrics.clone());
        let replicas = Replicas::start(
            &store,
            options.signal.advertise_url.clone(),
            options.lease_ttl,
            options.clock.unix_now(),
        );
        let state = AppState(Arc::new(Inner {
            store,
            snapshots,
            rooms: Arc::new(Hub::new(options.signal.clone(), metrics.clone())),
            client_probes: ClientProbes::new(options.client_probes),
            metrics,
            replicas,
            options,
            limiter: RateLimiter::default(),
            liveness,
            store_health,
            dns: std::sync::OnceLock::new(),
            closing: watch::channel(false).0,
            upkeep,
            detector,
            prober,
        }));
        state.snapshots.loaded().await;
        state
    }

    /// Ends long-lived streams (the relay event streams, signaling connections), so a
    /// graceful shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` at [`AppState::close`].
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Unix seconds now.
    pub fn unix_now(&self) -> u64 {
        self.options.clock.unix_now()
    }

    /// Unix milliseconds now, on the same clock.
    pub fn unix_now_ms(&self) -> u64 {
        self.options.clock.unix_now_ms()
    }

    /// The current relay view.
    pub fn view(&self) -> Arc<View> {
        self.snapshots.view()
    }

    /// Where an address is, per GeoIP (`None` without a database or without a record).
    pub fn locate(&self, ip: IpAddr) -> Option<LatLon> {
        self.geolocate(ip).map(|l| l.coords())
    }

    /// The GeoIP record of `ip` (with the prefix of the database network it is in).
    pub fn geolocate(&self, ip: IpAddr) -> Option<nexrtc_geo::Location> {
        self.options.geoip.as_ref()?.lookup(ip)
    }

    /// What the ranking knows of a client at `ip`: its GeoIP record and its network's
    /// latency measurements (the ICE API and the DNS answers rank from the same).
    pub fn place(&self, ip: Option<IpAddr>) -> Placed {
        let geo = ip.and_then(|ip| self.geolocate(ip));
        let network = ip.map(crate::client_probes::Network::of);
        let measured = network.and_then(|n| {
            let probes = self.snapshots.client_probes.snapshot();
            probes.get(&n.to_string()).cloned()
        });
        Placed {
            geo,
            network,
            measured,
        }
    }

    /// Snapshot age now (`None` before the first load).
    pub fn snapshot_age(&self) -> Option<Duration> {
        self.snapshots.age(tokio::time::Instant::now())
    }

    /// Waits (bounded by `write_wait`) until this replica's view includes relay writes up
    /// to `revision`.
    pub async fn await_relays(&self, revision: i64) {
        let wait = self.snapshots.wait_view(|v| v.relays_revision >= revision);
        let _ = tokio::time::timeout(self.options.write_wait, wait).await;
    }

    /// Waits (bounded) until the view includes region writes up to `revision`.
    pub async fn await_regions(&self, revision: i64) {
        let wait = self.snapshots.wait_view(|v| v.regions_revision >= revision);
        let _ = tokio::time::timeout(self.options.write_wait, wait).await;
    }

    /// Waits (bounded by `write_wait`) until `map`'s snapshot satisfies `ready`: an admin
    /// write is visible to the next request on this replica.
    pub async fn settle<T: Send + Sync + 'static>(
        &self,
        map: &WatchedMap<T>,
        ready: impl FnMut(&Snapshot<T>) -> bool,
    ) {
        let _ = tokio::time::timeout(self.options.write_wait, map.wait_for(ready)).await;
    }
}

/// A client as the ranking sees it ([`AppState::place`]).
#[derive(Debug, Clone)]
pub struct Placed {
    pub geo: Option<nexrtc_geo::Location>,
    pub network: Option<crate::client_probes::Network>,
    pub measured: Option<Arc<crate::model::ClientProbeRecord>>,
}

impl Placed {
    pub fn location(&self) -> Option<LatLon> {
        self.geo.as_ref().map(|l| l.coords())
    }

    pub fn client(&self) -> nexrtc_geo::Client<'_> {
        let measured = self.measured.as_deref().map(|r| &r.measured);
        nexrtc_geo::Client::at(self.location()).measured(measured)
    }

    /// The ranking's selection for this client (`hint`: a region to put first).
    pub fn select(&self, view: &crate::state::View, hint: Option<&str>) -> nexrtc_geo::Selection {
        let mut rng = rand::rng();
        let mut random = || rand::Rng::random::<u64>(&mut rng);
        view.ranker.select(self.client(), hint, &mut random)
    }
}
