//! Client latency probes: each replica folds the reports of a client *network* (the /24
//! of an IPv4 client, the /48 of an IPv6 one) into per-region medians and publishes them,
//! when they changed materially, as `client_probes/<network>`; every replica ranks that
//! network's clients by them (`POST /v1/ice-servers`, through [`nexrtc_geo::Client`]).
//!
//! ```text
//! report ──► Network::of(client ip) ──► LRU of networks (≤ max_networks per replica)
//!              └─ per region: the last SAMPLES RTTs ──► medians ──► MeasuredRtts (home kept
//!                 by the hysteresis rule of nexrtc_geo::measured)
//!   written to client_probes/<network> when: no record yet, it differs materially from
//!   the published one, or the published one is older than REFRESH; and at most once per
//!   MIN_WRITE_INTERVAL per network, within the replica's write budget (token bucket)
//! ```
//!
//! **Bounds.** Memory: at most `max_networks` networks per replica (least recently
//! reported evicted), `SAMPLES` RTTs per region, [`MAX_CLIENT_PROBE_RESULTS`] regions per
//! report. Store writes: at most `writes_per_sec` per replica (burst twice that) and one
//! per network per [`MIN_WRITE_INTERVAL`]; a report over budget is counted (`deferred`) and
//! the next one writes. Store size: records live under a lease of `ttl` that the replica
//! replaces every `ttl / 2`, so a network nobody reports from disappears between `ttl / 2`
//! and `ttl` after its last write, and the records alive are at most
//! `replicas × writes_per_sec × ttl`.
//!
//! **Several replicas.** Each aggregates the reports it receives. One that meets a network
//! it has no samples for starts from the published medians (one sample per region), so
//! replicas converge on the published record rather than overwrite each other.
//!
//! **Trust.** Reports are authenticated like ICE requests (an API key with the `ice` scope
//! or a client token), rate-limited with them, and counted for the network the request
//! comes from (`client_ip` only with that scope). A client can only skew its own network,
//! and the median of the last [`SAMPLES`] reports per region limits how far one client
//! can move it when others report too.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lru::LruCache;
use nexrtc_geo::MeasuredRtts;
use nexrtc_wire::MAX_CLIENT_PROBE_RESULTS;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::model::{self, ClientProbeRecord, CLIENT_PROBES};
use crate::store::{LeaseId, Store, StoreError};

/// RTTs kept per network and region (their median is published).
pub const SAMPLES: usize = 8;
/// Shortest time between two writes of one network's record.
pub const MIN_WRITE_INTERVAL: u64 = 10;
/// A record older than this is written again at the next report, even unchanged.
pub const REFRESH: u64 = 1800;

/// A client network: an IPv4 /24 or an IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn of(ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network {
                    base: IpAddr::V4(Ipv4Addr::new(a, b, c, 0)),
                    prefix: 24,
                }
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Network {
                    base: IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0)),
                    prefix: 48,
                }
            }
        }
    }

    /// Its prefix length (24 for IPv4, 48 for IPv6).
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// The store key (`client_probes/10.1.2.0/24`).
    pub fn key(&self) -> String {
        format!("{CLIENT_PROBES}{self}")
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Tunables (the defaults suit production; tests shorten the lease).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientProbeLimits {
    /// Networks aggregated in memory per replica.
    pub max_networks: usize,
    /// Record writes per second per replica (bursts of twice this).
    pub writes_per_sec: f64,
    /// Lease of the records (see the module docs).
    pub ttl: Duration,
}

impl Default for ClientProbeLimits {
    fn default() -> Self {
        ClientProbeLimits {
            max_networks: 65_536,
            writes_per_sec: 20.0,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The network's measurements after this report.
    pub measured: MeasuredRtts,
    /// `written`, `kept` or `deferred` (see the metrics).
    pub outcome: &'static str,
}

#[derive(Debug, Default)]
struct Samples {
    by_region: BTreeMap<String, VecDeque<f64>>,
    reports: u64,
    /// Unix seconds of this replica's last write of the network.
    written_at: Option<u64>,
}

impl Samples {
    fn medians(&self) -> BTreeMap<String, f64> {
        (self.by_region.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(region, v)| {
                let mut sorted: Vec<f64> = v.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                let n = sorted.len();
                let median = if n % 2 == 1 {
                    sorted[n / 2]
                } else {
                    (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
                };
                (region.clone(), median)
            })
            .collect()
    }
}

#[derive(Debug)]
struct Inner {
    networks: LruCache<Network, Samples>,
    /// Write budget: tokens and when they were last topped up.
    tokens: f64,
    topped_at: Instant,
    /// The lease new records go under, and when it was granted.
    lease: Option<(LeaseId, Instant)>,
}

/// One replica's aggregation (see the module docs).
#[derive(Debug)]
pub struct ClientProbes {
    limits: ClientProbeLimits,
    inner: Mutex<Inner>,
    /// Serializes lease grants (a report that needs a new lease waits for one grant).
    granting: tokio::sync::Mutex<()>,
}

impl ClientProbes {
    pub fn new(limits: ClientProbeLimits) -> ClientProbes {
        let cap = NonZeroUsize::new(limits.max_networks.max(1)).unwrap_or(NonZeroUsize::MIN);
        ClientProbes {
            limits,
            inner: Mutex::new(Inner {
                networks: LruCache::new(cap),
                tokens: 2.0 * limits.writes_per_sec,
                topped_at: Instant::now(),
                lease: None,
            }),
            granting: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds one report (`results`: region → RTT ms, already validated) of `network` in,
    /// given the record published for it, and writes the record when due.
    pub async fn report(
        &self,
        store: &Arc<dyn Store>,
        metrics: &Metrics,
        network: Network,
        results: &BTreeMap<String, f64>,
        published: Option<&ClientProbeRecord>,
        now_unix: u64,
    ) -> Result<Folded, StoreError> {
        let (record, due) = {
            let mut inner = self.lock();
            let samples = inner.networks.get_or_insert_mut(network, || {
                // Start from what is published, so replicas converge on one record.
                let mut s = Samples::default();
                for (region, &rtt) in published.map(|p| &p.measured.rtt_ms).into_iter().flatten() {
                    s.by_region.insert(region.clone(), VecDeque::from([rtt]));
                }
                s
            });
            for (region, &rtt) in results.iter().take(MAX_CLIENT_PROBE_RESULTS) {
                let q = samples.by_region.entry(region.clone()).or_default();
                if q.len() == SAMPLES {
                    q.pop_front();
                }
                q.push_back(rtt);
            }
            samples.reports += 1;
            let previous_home = published.and_then(|p| p.measured.home.as_deref());
            let measured = MeasuredRtts::new(samples.medians(), previous_home);
            let changed = match published {
                None => true,
                Some(p) => {
                    measured.differs_materially(&p.measured)
                        || p.measured_at.saturating_add(REFRESH) <= now_unix
                }
            };
            let recent = samples
                .written_at
                .is_some_and(|w| w.saturating_add(MIN_WRITE_INTERVAL) > now_unix);
            let reports = samples.reports;
            let allowed = changed && !recent && Self::spend(&mut inner, self.limits.writes_per_sec);
            if allowed {
                if let Some(s) = inner.networks.peek_mut(&network) {
                    s.written_at = Some(now_unix);
                }
            }
            metrics.client_probe_networks(inner.networks.len());
            let record = ClientProbeRecord {
                measured,
                reports,
                measured_at: now_unix,
            };
            let outcome = match (changed, allowed) {
                (false, _) => "kept",
                (true, false) => "deferred",
                (true, true) => "written",
            };
            (record, outcome)
        };
        if due == "written" {
            let lease = self.lease(store).await?;
            let key = network.key();
            if let Err(e) = store.put(&key, model::encode(&record), Some(lease)).await {
                // The lease may be gone (an etcd restored from a snapshot): grant anew next time.
                self.lock().lease.take_if(|(id, _)| *id == lease);
                return Err(e);
            }
        }
        Ok(Folded {
            measured: record.measured,
            outcome: due,
        })
    }

    /// Takes one write from the budget, if there is one.
    fn spend(inner: &mut Inner, per_sec: f64) -> bool {
        let now = Instant::now();
        let burst = 2.0 * per_sec;
        let elapsed = now.duration_since(inner.topped_at).as_secs_f64();
        inner.tokens = (inner.tokens + elapsed * per_sec).min(burst);
        inner.topped_at = now;
        if inner.tokens >= 1.0 {
            inner.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The lease for a new write: the current one while younger than half the TTL, else
    /// a new one (the old one then expires with the records only it holds).
    async fn lease(&self, store: &Arc<dyn Store>) -> Result<LeaseId, StoreError> {
        let fresh = |inner: &Inner| {
            inner
                .lease
                .filter(|(_, at)| at.elapsed() < self.limits.ttl / 2)
                .map(|(id, _)| id)
        };
        if let Some(id) = fresh(&self.lock()) {
            return Ok(id);
        }
        let _one = self.granting.lock().await;
        if let Some(id) = fresh(&self.lock()) {
            return Ok(id);
        }
        let lease = store.grant_lease(self.limits.ttl).await?;
        self.lock().lease = Some((lease.id, Instant::now()));
        Ok(lease.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Network::of("10.3.2.77".parse().expect("ip"));
        assert_eq!(n.to_string(), "10.3.2.0/24");
        assert_eq!(n.key(), "client_probes/10.3.2.0/24");
        let mapped = Network::of("::ffff:10.3.2.9".parse().expect("ip"));
        assert_eq!(mapped, n);
        let v6 = Network::of("2001:db8:1:2:3::9".parse().expect("ip"));
        assert_eq!(v6.to_string(), "2001:db8:1::/48");
    }

    #[test]
    fn medians_of_samples() {
        let mut s = Samples::default();
        s.by_region
            .insert("a".into(), VecDeque::from([3.0, 1.0, 2.0]));
        s.by_region.insert("b".into(), VecDeque::from([4.0, 1.0]));
        s.by_region.insert("c".into(), VecDeque::new());
        let m = s.medians();
        assert_eq!(m.get("a"), Some(&2.0));
        assert_eq!(m.get("b"), Some(&2.5));
        assert_eq!(m.get("c"), None);
    }
}
