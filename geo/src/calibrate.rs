//! Distance → RTT, calibrated by measured region-to-region probes.
//!
//! The model is a line, `rtt_ms = a + b · km`, where `km` is the great-circle distance.
//!
//! * Default ([`LatencyModel::DEFAULT`]): `a = 5 ms`, `b = 0.013 ms/km`. Light in fibre
//!   covers ≈ 200 km/ms, so a round trip needs ≥ 0.010 ms per km of great-circle distance;
//!   real routes are longer than the great circle, taken as 1.3× (→ 0.013 ms/km); `a`
//!   covers access networks, queueing and processing at both ends.
//! * Fitted ([`LatencyModel::from_probes`]): each unordered region pair's probes are
//!   reduced to their median RTT (so a pair probed a thousand times weighs as much as one
//!   probed once, and a spike does not move it); with at least [`LatencyModel::MIN_PAIRS`]
//!   pairs spanning distances at least [`LatencyModel::MIN_SPREAD_KM`] apart, `a` and `b`
//!   are the ordinary least-squares line through (distance, median RTT). `b` is then kept
//!   between [`LatencyModel::MIN_MS_PER_KM`] (0.010: never faster than light in fibre) and
//!   [`LatencyModel::MAX_MS_PER_KM`] (0.100) (when clamped, `a` is refitted as the mean
//!   residual), and `a` between 0 and [`LatencyModel::MAX_INTERCEPT_MS`] (100 ms).
//!
//! Direction: the estimates follow the measurements. If the probes are slower than the
//! default line (congested or roundabout paths) every estimate rises, and distance weighs
//! more against the load penalty, so clients are less willing to be sent far away; if
//! they are faster, estimates fall and load can move clients farther.
//!
//! Probes older than the caller's freshness window should be filtered out by the caller
//! (this crate has no clock).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::region::{haversine_km, LatLon, Region};

/// One measured RTT between two regions' relays (`probes/<from>/<to>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub rtt_ms: f64,
}

impl Probe {
    pub fn new(from: impl Into<String>, to: impl Into<String>, rtt_ms: f64) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            rtt_ms,
        }
    }
}

/// Where a [`LatencyModel`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelSource {
    /// The documented default constants (too few usable probes).
    Default,
    /// Fitted to this many region pairs.
    Fitted { pairs: usize },
}

/// `rtt_ms = intercept_ms + ms_per_km · km`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    pub intercept_ms: f64,
    pub ms_per_km: f64,
    pub source: ModelSource,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl LatencyModel {
    /// Access, queueing and processing at both ends.
    pub const DEFAULT_INTERCEPT_MS: f64 = 5.0;
    /// 0.010 ms/km (RTT in fibre at ≈ 200 km/ms) × 1.3 routing inflation.
    pub const DEFAULT_MS_PER_KM: f64 = 0.013;
    /// Light in fibre, round trip: no fit may claim faster.
    pub const MIN_MS_PER_KM: f64 = 0.010;
    /// 10× light in fibre: anything slower is measurement trouble, not distance.
    pub const MAX_MS_PER_KM: f64 = 0.100;
    pub const MAX_INTERCEPT_MS: f64 = 100.0;
    /// Fewest distinct region pairs to fit a line to.
    pub const MIN_PAIRS: usize = 3;
    /// The pairs' distances must span at least this much for the slope to mean anything.
    pub const MIN_SPREAD_KM: f64 = 500.0;

    pub const DEFAULT: LatencyModel = LatencyModel {
        intercept_ms: Self::DEFAULT_INTERCEPT_MS,
        ms_per_km: Self::DEFAULT_MS_PER_KM,
        source: ModelSource::Default,
    };

    /// Estimated RTT in ms for a great-circle distance in km.
    #[inline]
    pub fn estimate_ms(&self, km: f64) -> f64 {
        self.intercept_ms + self.ms_per_km * km
    }

    /// Fits the model to probes between catalogue regions. Probes naming unknown regions,
    /// or with a non-finite or negative RTT, are ignored.
    pub fn from_probes(regions: &[Region], probes: &[Probe]) -> LatencyModel {
        let coords: HashMap<&str, LatLon> = regions
            .iter()
            .filter(|r| r.coords().is_valid())
            .map(|r| (r.name.as_str(), r.coords()))
            .collect();
        let mut pairs: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
        for p in probes {
            if !(p.rtt_ms.is_finite() && p.rtt_ms >= 0.0) {
                continue;
            }
            if !(coords.contains_key(p.from.as_str()) && coords.contains_key(p.to.as_str())) {
                continue;
            }
            let key = if p.from <= p.to {
                (p.from.as_str(), p.to.as_str())
            } else {
                (p.to.as_str(), p.from.as_str())
            };
            pairs.entry(key).or_default().push(p.rtt_ms);
        }
        let mut points: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
        for ((a, b), mut rtts) in pairs {
            let (Some(&ca), Some(&cb)) = (coords.get(a), coords.get(b)) else {
                continue;
            };
            points.push((haversine_km(ca, cb), median(&mut rtts)));
        }
        Self::fit(&points)
    }

    /// Fits the model to `(km, rtt_ms)` points, one per region pair (see the module docs);
    /// falls back to [`LatencyModel::DEFAULT`] when they cannot support a fit.
    pub fn fit(points: &[(f64, f64)]) -> LatencyModel {
        let points: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && *x >= 0.0 && y.is_finite() && *y >= 0.0)
            .collect();
        if points.len() < Self::MIN_PAIRS {
            return Self::DEFAULT;
        }
        let (min_x, max_x) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| {
                (lo.min(*x), hi.max(*x))
            });
        if max_x - min_x < Self::MIN_SPREAD_KM {
            return Self::DEFAULT;
        }
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, y) in &points {
            sxy += (x - mean_x) * (y - mean_y);
            sxx += (x - mean_x) * (x - mean_x);
        }
        // sxx > 0 is guaranteed by the spread check.
        let slope = sxy / sxx;
        let clamped = slope.clamp(Self::MIN_MS_PER_KM, Self::MAX_MS_PER_KM);
        let intercept = (mean_y - clamped * mean_x).clamp(0.0, Self::MAX_INTERCEPT_MS);
        LatencyModel {
            intercept_ms: intercept,
            ms_per_km: clamped,
            source: ModelSource::Fitted {
                pairs: points.len(),
            },
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn default_constants() {
        let m = LatencyModel::DEFAULT;
        assert_eq!(m.estimate_ms(0.0), 5.0);
        assert!(approx(m.estimate_ms(1000.0), 18.0, 1e-9));
        assert_eq!(m.source, ModelSource::Default);
    }

    #[test]
    fn fit_recovers_a_line() {
        let pts: Vec<(f64, f64)> = [100.0, 1000.0, 5000.0, 9000.0]
            .iter()
            .map(|&x| (x, 8.0 + 0.02 * x))
            .collect();
        let m = LatencyModel::fit(&pts);
        assert!(approx(m.intercept_ms, 8.0, 1e-9), "{m:?}");
        assert!(approx(m.ms_per_km, 0.02, 1e-12), "{m:?}");
        assert_eq!(m.source, ModelSource::Fitted { pairs: 4 });
    }

    #[test]
    fn too_few_or_degenerate_points_fall_back() {
        assert_eq!(
            LatencyModel::fit(&[(100.0, 10.0), (2000.0, 40.0)]),
            LatencyModel::DEFAULT
        );
        // Three pairs but all at about the same distance: no slope information.
        assert_eq!(
            LatencyModel::fit(&[(1000.0, 10.0), (1100.0, 40.0), (1200.0, 20.0)]),
            LatencyModel::DEFAULT
        );
        assert_eq!(
            LatencyModel::fit(&[(f64::NAN, 1.0), (1.0, f64::INFINITY), (-5.0, 3.0)]),
            LatencyModel::DEFAULT
        );
    }

    #[test]
    fn slope_never_faster_than_fibre() {
        // Measured RTTs that decrease with distance: nonsense, clamp to the fibre floor.
        let m = LatencyModel::fit(&[(0.0, 100.0), (5000.0, 50.0), (10000.0, 10.0)]);
        assert_eq!(m.ms_per_km, LatencyModel::MIN_MS_PER_KM);
        assert!(m.intercept_ms >= 0.0 && m.intercept_ms <= LatencyModel::MAX_INTERCEPT_MS);
    }

    #[test]
    fn from_probes_uses_median_per_pair_and_ignores_unknown() {
        let regions = vec![
            Region::new("a", 0.0, 0.0),
            Region::new("b", 0.0, 10.0),  // ≈ 1,112 km from a
            Region::new("c", 0.0, 50.0),  // ≈ 5,560 km from a
            Region::new("d", 0.0, 100.0), // ≈ 11,120 km from a
        ];
        let line = |km: f64| 10.0 + 0.02 * km;
        let d = |x: &str, y: &str| {
            let rx = regions.iter().find(|r| r.name == x).map(Region::coords);
            let ry = regions.iter().find(|r| r.name == y).map(Region::coords);
            match (rx, ry) {
                (Some(p), Some(q)) => haversine_km(p, q),
                _ => f64::NAN,
            }
        };
        let mut probes = vec![
            Probe::new("a", "b", line(d("a", "b"))),
            Probe::new("b", "a", line(d("a", "b"))),
            Probe::new("a", "b", 5000.0), // a spike: the median ignores it
            Probe::new("a", "c", line(d("a", "c"))),
            Probe::new("d", "a", line(d("a", "d"))),
            Probe::new("a", "nowhere", 1.0),
            Probe::new("a", "c", f64::NAN),
        ];
        let m = LatencyModel::from_probes(&regions, &probes);
        assert_eq!(m.source, ModelSource::Fitted { pairs: 3 });
        assert!(approx(m.intercept_ms, 10.0, 1e-6), "{m:?}");
        assert!(approx(m.ms_per_km, 0.02, 1e-9), "{m:?}");
        probes.truncate(3);
        assert_eq!(
            LatencyModel::from_probes(&regions, &probes),
            LatencyModel::DEFAULT
        );
    }
}
