//! Relay ranking: [`Ranker::new`] once per snapshot change, [`Ranker::select`] per request.
//!
//! See the crate docs for the model. Everything here is deterministic given the random
//! source passed to [`Ranker::select`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::calibrate::{LatencyModel, Probe};
use crate::measured::{home_margin, valid_rtt, Client, MeasuredRtts};
use crate::region::{half_chord, unit_distance_km, LatLon, Region, RegionError, EARTH_RADIUS_KM};

/// Lifecycle state of a relay as registered with the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    Active,
    /// Registered but getting no new clients.
    Draining,
    /// Lease lost or reported dead.
    Dead,
}

/// What ranking needs to know about one relay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelayView {
    pub id: String,
    pub region: String,
    /// 0..1: the higher of allocations/capacity and CPU utilisation. Values above 1 count
    /// as overloaded; NaN counts as fully loaded.
    pub load: f64,
    pub state: RelayState,
    /// At capacity: takes no new allocations.
    pub full: bool,
}

impl RelayView {
    pub fn new(id: impl Into<String>, region: impl Into<String>, load: f64) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            load,
            state: RelayState::Active,
            full: false,
        }
    }
}

/// Tunables. Invalid values are replaced by the defaults (and reported as issues).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Weights {
    /// Penalty in ms for a region whose expected relay load is 1.0; quadratic in load.
    pub load_penalty_ms: f64,
    /// Relays at or above this load are not eligible (unless everything is: degraded).
    pub overload_threshold: f64,
    /// Regions returned per selection (best first, then failover).
    pub max_regions: usize,
    /// Relays returned per region. Every ICE server entry costs the client an allocation,
    /// so the default is one.
    pub relays_per_region: usize,
}

impl Weights {
    pub const DEFAULT: Weights = Weights {
        load_penalty_ms: 50.0,
        overload_threshold: 0.9,
        max_regions: 2,
        relays_per_region: 1,
    };

    /// Penalty in ms for a load (clamped to [0, 1]; NaN counts as 1).
    #[inline]
    pub fn penalty_ms(&self, load: f64) -> f64 {
        let l = if load.is_nan() {
            1.0
        } else {
            load.clamp(0.0, 1.0)
        };
        self.load_penalty_ms * l * l
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything the ranking depends on, as watched from the store.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub regions: Vec<Region>,
    pub relays: Vec<RelayView>,
    /// Measured region→region RTTs; may be empty.
    pub probes: Vec<Probe>,
    /// Where clients with an unknown location are assumed to be.
    pub default_region: Option<String>,
    pub weights: Weights,
}

/// Something in the snapshot that ranking ignored or repaired. The ranking still works;
/// the controller should log or count these.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SnapshotIssue {
    #[error("region ignored: {0}")]
    InvalidRegion(RegionError),
    #[error("region {0:?} defined twice; the first definition is used")]
    DuplicateRegion(String),
    #[error("relay {relay:?} names unknown region {region:?}; ignored")]
    UnknownRelayRegion { relay: String, region: String },
    #[error("relay id {0:?} appears twice; the first one is used")]
    DuplicateRelay(String),
    #[error("relay {relay:?} reports load {load}; treated as {used}")]
    InvalidLoad { relay: String, load: f64, used: f64 },
    #[error("default region {0:?} is unknown; clients without a location are ranked by load and multiplier only")]
    UnknownDefaultRegion(String),
    #[error("weights: {0}; default used")]
    InvalidWeight(&'static str),
}

/// A source of uniformly distributed `u64`s. Implemented for closures and [`SplitMix64`];
/// wrap any other generator in a closure (`|| rng.next_u64()`).
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, seedable; plenty for load spreading.
/// Not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Uniform index in `0..n` (Lemire's multiply-shift; bias < n / 2^64). `n > 0`.
#[inline]
fn uniform<R: RandomSource + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// One relay in a selection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelayChoice {
    pub id: Arc<str>,
    pub load: f64,
    /// The region's score with this relay's own load.
    pub score: f64,
}

/// One region in a selection, with the terms of its score (for `?explain=1`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegionChoice {
    pub name: Arc<str>,
    /// Great-circle distance from the client (0 when the client's location is unknown and
    /// there is no default region).
    pub distance_km: f64,
    /// The RTT ranked by: the measured one, else `LatencyModel::estimate_ms(distance_km)`
    /// (or, for a measured network, from its anchor region; see [`crate::measured`]).
    pub estimated_rtt_ms: f64,
    /// What the client's network measured to this region, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_rtt_ms: Option<f64>,
    /// Subtracted from the RTT for the measured network's home region (hysteresis).
    #[serde(skip_serializing_if = "is_zero")]
    pub home_margin_ms: f64,
    pub multiplier: f64,
    /// Expected load of a power-of-two-choices pick in this region.
    pub load: f64,
    pub load_penalty_ms: f64,
    /// `(estimated_rtt_ms − home_margin_ms) · multiplier + load_penalty_ms`; lower is
    /// better.
    pub score: f64,
    pub relays: Vec<RelayChoice>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Region `i` as one client sees it.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    km: f64,
    rtt: f64,
    measured_rtt: Option<f64>,
    margin: f64,
    score: f64,
}

/// A network's measurements by region index (NaN: not measured).
struct Resolved {
    rtt: Vec<f64>,
    home: Option<usize>,
    /// Where unmeasured regions are estimated from.
    anchor: usize,
}

/// The answer: regions best first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Selection {
    pub regions: Vec<RegionChoice>,
    /// No relay was eligible; every active relay was considered instead.
    pub degraded: bool,
    /// The region hint named a healthy region and it was put first.
    pub hint_applied: bool,
    /// The client's network had measurements, and they ranked.
    pub measured: bool,
    /// The coordinates ranked from: the client's, else the default region's, else none.
    pub origin: Option<LatLon>,
}

#[derive(Debug)]
struct RegionEntry {
    name: Arc<str>,
    unit: [f64; 3],
    coords: LatLon,
    multiplier: f64,
    /// The pool (eligible relays, or all active ones when degraded), sorted by load.
    relays: Vec<(Arc<str>, f64)>,
    expected_load: f64,
    penalty_ms: f64,
}

/// Precomputed ranking state for one snapshot. Cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct Ranker {
    /// Valid regions, sorted by name.
    regions: Vec<RegionEntry>,
    by_name: HashMap<Arc<str>, usize>,
    /// Indices of regions with at least one relay in the pool.
    candidates: Vec<usize>,
    default_origin: Option<LatLon>,
    model: LatencyModel,
    weights: Weights,
    degraded: bool,
    issues: Vec<SnapshotIssue>,
}

impl Ranker {
    /// Validates and precomputes. Never fails: anything unusable is skipped and listed in
    /// [`Ranker::issues`].
    pub fn new(snapshot: &Snapshot) -> Ranker {
        let mut issues = Vec::new();
        let weights = sanitize_weights(snapshot.weights, &mut issues);

        let mut valid: Vec<&Region> = Vec::with_capacity(snapshot.regions.len());
        let mut seen: HashSet<&str> = HashSet::new();
        for r in &snapshot.regions {
            if let Err(e) = r.validate() {
                issues.push(SnapshotIssue::InvalidRegion(e));
            } else if !seen.insert(r.name.as_str()) {
                issues.push(SnapshotIssue::DuplicateRegion(r.name.clone()));
            } else {
                valid.push(r);
            }
        }
        valid.sort_by(|a, b| a.name.cmp(&b.name));
        let mut regions: Vec<RegionEntry> = valid
            .iter()
            .map(|r| RegionEntry {
                name: Arc::from(r.name.as_str()),
                unit: r.coords().unit_vector(),
                coords: r.coords(),
                multiplier: r.score_multiplier,
                relays: Vec::new(),
                expected_load: 0.0,
                penalty_ms: 0.0,
            })
            .collect();
        let by_name: HashMap<Arc<str>, usize> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();

        let model = LatencyModel::from_probes(
            &valid.iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
            &snapshot.probes,
        );

        // Relays: sanitize, dedupe, bucket by region.
        struct Cand<'a> {
            region: usize,
            id: &'a str,
            load: f64,
            eligible: bool,
        }
        let mut cands: Vec<Cand<'_>> = Vec::new();
        let mut ids: HashSet<&str> = HashSet::new();
        for r in &snapshot.relays {
            if !ids.insert(r.id.as_str()) {
                issues.push(SnapshotIssue::DuplicateRelay(r.id.clone()));
                continue;
            }
            let Some(&region) = by_name.get(r.region.as_str()) else {
                issues.push(SnapshotIssue::UnknownRelayRegion {
                    relay: r.id.clone(),
                    region: r.region.clone(),
                });
                continue;
            };
            if r.state != RelayState::Active {
                continue;
            }
            let load = if r.load.is_nan() {
                issues.push(SnapshotIssue::InvalidLoad {
                    relay: r.id.clone(),
                    load: r.load,
                    used: 1.0,
                });
                1.0
            } else if r.load < 0.0 {
                issues.push(SnapshotIssue::InvalidLoad {
                    relay: r.id.clone(),
                    load: r.load,
                    used: 0.0,
                });
                0.0
            } else {
                r.load
            };
            let eligible = !r.full && load < weights.overload_threshold;
            cands.push(Cand {
                region,
                id: r.id.as_str(),
                load,
                eligible,
            });
        }
        let degraded = !cands.iter().any(|c| c.eligible);
        for c in cands.iter().filter(|c| degraded || c.eligible) {
            regions[c.region].relays.push((Arc::from(c.id), c.load));
        }
        let mut candidates = Vec::new();
        for (i, r) in regions.iter_mut().enumerate() {
            if r.relays.is_empty() {
                continue;
            }
            r.relays
                .sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            r.expected_load = expected_p2c_load(&r.relays);
            r.penalty_ms = weights.penalty_ms(r.expected_load);
            candidates.push(i);
        }

        let default_origin = match &snapshot.default_region {
            None => None,
            Some(name) => match by_name.get(name.as_str()) {
                Some(&i) => Some(regions[i].coords),
                None => {
                    issues.push(SnapshotIssue::UnknownDefaultRegion(name.clone()));
                    None
                }
            },
        };

        Ranker {
            regions,
            by_name,
            candidates,
            default_origin,
            model,
            weights,
            degraded,
            issues,
        }
    }

    /// Ranks regions for a client and picks relays. The client's `location` comes from
    /// GeoIP (`None` or invalid coordinates mean "unknown": the default region's
    /// coordinates are used); when its network has measurements (`client.measured`), they
    /// rank instead (see [`crate::measured`]). `hint` puts that region first if it has
    /// relays to offer.
    pub fn select<R: RandomSource + ?Sized>(
        &self,
        client: Client<'_>,
        hint: Option<&str>,
        rng: &mut R,
    ) -> Selection {
        let origin = self.origin(client.location);
        let unit = origin.map(|o| o.unit_vector());
        let measured = self.resolve(client.measured);
        let want = self.weights.max_regions;

        let hinted = hint
            .and_then(|h| self.by_name.get(h).copied())
            .filter(|&i| !self.regions[i].relays.is_empty());

        // Best `want` regions by score; O(candidates · want) with `want` small.
        let mut best: Vec<(f64, Estimate, usize)> = Vec::with_capacity(want + 1);
        if let Some(h) = hinted {
            best.push((
                f64::NEG_INFINITY,
                self.estimate(h, unit.as_ref(), measured.as_ref()),
                h,
            ));
        }
        for &i in &self.candidates {
            if Some(i) == hinted {
                continue;
            }
            let r = &self.regions[i];
            if measured.is_none() && best.len() == want {
                // Cheap lower bound first (no asin): most regions stop here. Valid because
                // ms_per_km ≥ 0 and multiplier > 0, so the score grows with distance.
                let h = unit.as_ref().map_or(0.0, |u| half_chord(u, &r.unit));
                let km_lower = 2.0 * EARTH_RADIUS_KM * h;
                let lower = self.model.estimate_ms(km_lower) * r.multiplier + r.penalty_ms;
                if best.last().is_some_and(|b| lower >= b.0) {
                    continue;
                }
            }
            let e = self.estimate(i, unit.as_ref(), measured.as_ref());
            let score = e.score;
            if best.len() == want && best.last().is_some_and(|b| score >= b.0) {
                continue;
            }
            let pos = best.partition_point(|b| b.0 <= score);
            best.insert(pos, (score, e, i));
            best.truncate(want);
        }

        let regions = best
            .into_iter()
            .map(|(_, e, i)| {
                let mut choice = self.region_choice(i, &e);
                choice.relays = self.pick_relays(i, &e, rng);
                choice
            })
            .collect();
        Selection {
            regions,
            degraded: self.degraded,
            hint_applied: hinted.is_some(),
            measured: measured.is_some(),
            origin,
        }
    }

    /// Every region that has relays to offer, best first, each with all its pool relays
    /// (least loaded first) and their scores: the full picture behind [`Ranker::select`]
    /// for `?explain=1`. Not for the hot path.
    pub fn explain(&self, client: Client<'_>) -> Vec<RegionChoice> {
        let unit = self.origin(client.location).map(|o| o.unit_vector());
        let measured = self.resolve(client.measured);
        let mut all: Vec<RegionChoice> = self
            .candidates
            .iter()
            .map(|&i| {
                let e = self.estimate(i, unit.as_ref(), measured.as_ref());
                let mut c = self.region_choice(i, &e);
                let r = &self.regions[i];
                c.relays = r
                    .relays
                    .iter()
                    .map(|(id, load)| self.relay_choice(r, &e, id, *load))
                    .collect();
                c
            })
            .collect();
        all.sort_by(|a, b| {
            a.score
                .total_cmp(&b.score)
                .then_with(|| a.name.cmp(&b.name))
        });
        all
    }

    /// True when no relay was eligible and every active relay is being offered.
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    pub fn model(&self) -> &LatencyModel {
        &self.model
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn issues(&self) -> &[SnapshotIssue] {
        &self.issues
    }

    /// Whether `name` is a valid region of the catalogue (healthy or not).
    pub fn knows_region(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Number of regions with relays to offer.
    pub fn healthy_regions(&self) -> usize {
        self.candidates.len()
    }

    fn origin(&self, location: Option<LatLon>) -> Option<LatLon> {
        location.filter(LatLon::is_valid).or(self.default_origin)
    }

    /// A network's measurements as region indices (known regions, valid RTTs), with the
    /// anchor for unmeasured regions; `None` when nothing usable was measured.
    fn resolve(&self, measured: Option<&MeasuredRtts>) -> Option<Resolved> {
        let m = measured?;
        let mut rtt = vec![f64::NAN; self.regions.len()];
        let mut lowest: Option<usize> = None;
        for (name, &v) in &m.rtt_ms {
            let Some(&i) = self.by_name.get(name.as_str()) else {
                continue;
            };
            if !valid_rtt(v) {
                continue;
            }
            rtt[i] = v;
            if lowest.is_none_or(|l| v < rtt[l]) {
                lowest = Some(i);
            }
        }
        let home = (m.home.as_deref())
            .and_then(|h| self.by_name.get(h).copied())
            .filter(|&i| !rtt[i].is_nan());
        let anchor = home.or(lowest)?;
        Some(Resolved { rtt, home, anchor })
    }

    /// Region `i`'s RTT estimate and score for a client at `unit` (or measured).
    #[inline]
    fn estimate(&self, i: usize, unit: Option<&[f64; 3]>, measured: Option<&Resolved>) -> Estimate {
        let r = &self.regions[i];
        let km = unit.map_or(0.0, |u| unit_distance_km(u, &r.unit));
        let (rtt, measured_rtt, margin) = match measured {
            None => (self.model.estimate_ms(km), None, 0.0),
            Some(m) if !m.rtt[i].is_nan() => {
                let margin = if m.home == Some(i) {
                    home_margin(m.rtt[i])
                } else {
                    0.0
                };
                (m.rtt[i], Some(m.rtt[i]), margin)
            }
            Some(m) => {
                let a = &self.regions[m.anchor];
                let hop = unit_distance_km(&a.unit, &r.unit);
                (m.rtt[m.anchor] + self.model.estimate_ms(hop), None, 0.0)
            }
        };
        Estimate {
            km,
            rtt,
            measured_rtt,
            score: (rtt - margin) * r.multiplier + r.penalty_ms,
            margin,
        }
    }

    fn region_choice(&self, i: usize, e: &Estimate) -> RegionChoice {
        let r = &self.regions[i];
        RegionChoice {
            name: r.name.clone(),
            distance_km: e.km,
            estimated_rtt_ms: e.rtt,
            measured_rtt_ms: e.measured_rtt,
            home_margin_ms: e.margin,
            multiplier: r.multiplier,
            load: r.expected_load,
            load_penalty_ms: r.penalty_ms,
            score: e.score,
            relays: Vec::new(),
        }
    }

    fn relay_choice(&self, r: &RegionEntry, e: &Estimate, id: &Arc<str>, load: f64) -> RelayChoice {
        RelayChoice {
            id: id.clone(),
            load,
            score: (e.rtt - e.margin) * r.multiplier + self.weights.penalty_ms(load),
        }
    }

    /// Power-of-two-choices, without replacement, `relays_per_region` times.
    fn pick_relays<R: RandomSource + ?Sized>(
        &self,
        i: usize,
        e: &Estimate,
        rng: &mut R,
    ) -> Vec<RelayChoice> {
        let r = &self.regions[i];
        let pool = &r.relays;
        let k = self.weights.relays_per_region;
        if pool.len() <= k {
            return pool
                .iter()
                .map(|(id, load)| self.relay_choice(r, e, id, *load))
                .collect();
        }
        // `taken` holds pool indices already picked, kept sorted.
        let mut taken: Vec<usize> = Vec::with_capacity(k);
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let left = pool.len() - taken.len(); // ≥ 2 because pool.len() > k
            let a = uniform(rng, left);
            let mut b = uniform(rng, left - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth_free(&taken, a), nth_free(&taken, b));
            // Less loaded wins; on a tie the first draw (random) wins.
            let pick = if pool[b].1 < pool[a].1 { b } else { a };
            let pos = taken.partition_point(|&t| t < pick);
            taken.insert(pos, pick);
            let (id, load) = &pool[pick];
            out.push(self.relay_choice(r, e, id, *load));
        }
        out
    }
}

/// The `n`th pool index not in `taken` (sorted).
fn nth_free(taken: &[usize], n: usize) -> usize {
    let mut idx = n;
    for &t in taken {
        if t <= idx {
            idx += 1;
        } else {
            break;
        }
    }
    idx
}

/// Expected load of the relay power-of-two-choices picks from `sorted` (ascending):
/// the minimum of a uniformly random distinct pair is the `i`th smallest with probability
/// `(n−1−i) / C(n,2)`.
fn expected_p2c_load(sorted: &[(Arc<str>, f64)]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        1 => sorted[0].1,
        _ => {
            let pairs = (n * (n - 1) / 2) as f64;
            sorted
                .iter()
                .enumerate()
                .map(|(i, (_, l))| l.min(1.0) * (n - 1 - i) as f64)
                .sum::<f64>()
                / pairs
        }
    }
}

fn sanitize_weights(w: Weights, issues: &mut Vec<SnapshotIssue>) -> Weights {
    let d = Weights::DEFAULT;
    let mut out = w;
    if !(w.load_penalty_ms.is_finite() && w.load_penalty_ms >= 0.0) {
        issues.push(SnapshotIssue::InvalidWeight(
            "load_penalty_ms must be finite and >= 0",
        ));
        out.load_penalty_ms = d.load_penalty_ms;
    }
    if !(w.overload_threshold.is_finite() && w.overload_threshold > 0.0) {
        issues.push(SnapshotIssue::InvalidWeight(
            "overload_threshold must be finite and > 0",
        ));
        out.overload_threshold = d.overload_threshold;
    }
    if w.max_regions == 0 {
        issues.push(SnapshotIssue::InvalidWeight("max_regions must be >= 1"));
        out.max_regions = d.max_regions;
    }
    if w.relays_per_region == 0 {
        issues.push(SnapshotIssue::InvalidWeight(
            "relays_per_region must be >= 1",
        ));
        out.relays_per_region = d.relays_per_region;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(loads: &[f64]) -> Vec<(Arc<str>, f64)> {
        loads.iter().map(|&l| (Arc::from("x"), l)).collect()
    }

    #[test]
    fn expected_p2c_load_matches_enumeration() {
        let loads = [0.1, 0.2, 0.5, 0.8];
        let mut sum = 0.0;
        let mut count = 0.0;
        for i in 0..loads.len() {
            for j in (i + 1)..loads.len() {
                sum += f64::min(loads[i], loads[j]);
                count += 1.0;
            }
        }
        let e = expected_p2c_load(&pool(&loads));
        assert!((e - sum / count).abs() < 1e-12, "{e}");
        assert_eq!(expected_p2c_load(&pool(&[0.7])), 0.7);
    }

    #[test]
    fn nth_free_skips_taken() {
        assert_eq!(nth_free(&[], 3), 3);
        assert_eq!(nth_free(&[0, 1], 0), 2);
        assert_eq!(nth_free(&[1, 3], 1), 2);
        assert_eq!(nth_free(&[1, 3], 2), 4);
    }

    #[test]
    fn uniform_stays_in_range_and_covers() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[uniform(&mut rng, 5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        let mut max = || u64::MAX;
        assert_eq!(uniform(&mut max, 5), 4);
    }

    #[test]
    fn shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Ranker>();
        send_sync::<crate::GeoIp>();
    }

    #[test]
    fn penalty_shape() {
        let w = Weights::DEFAULT;
        assert_eq!(w.penalty_ms(0.0), 0.0);
        assert_eq!(w.penalty_ms(1.0), 50.0);
        assert_eq!(w.penalty_ms(2.0), 50.0);
        assert_eq!(w.penalty_ms(f64::NAN), 50.0);
        assert!((w.penalty_ms(0.5) - 12.5).abs() < 1e-12);
    }
}
