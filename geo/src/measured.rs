//! What a client network measured: round-trip times to regions, reported by its clients'
//! latency probes, and the *home* region the network is kept on.
//!
//! GeoIP places a client by its address, which is sometimes wrong (a VPN, a mobile
//! carrier's gateway, a stale database entry) and never knows the real path. A network
//! with measurements is ranked by them instead:
//!
//! ```text
//! rtt(r) = measured(r)                                  when r was measured
//!        = measured(a) + model(distance(a, r))          otherwise, a = the anchor region
//!                                                        (home, else the lowest measured)
//! score(r) = (rtt(r) − margin·[r = home]) · m_r + penalty(load(r))
//! margin = min(HOME_MARGIN_MS, rtt(home) / 3)
//! ```
//!
//! **Hysteresis.** The home region ranks as if it were [`HOME_MARGIN_MS`] closer than
//! measured (a third of its RTT at most), and [`MeasuredRtts::choose_home`] moves the home
//! only to a region measured better by more than that margin. So two regions a few ms
//! apart, measured with a little noise, do not swap places from one report to the next;
//! the cost is at most the margin of excess RTT. (Load still moves clients: the penalty
//! is added after the margin.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::region::LatLon;

/// The home region's advantage in ranking, in ms (at most a third of its RTT).
pub const HOME_MARGIN_MS: f64 = 5.0;

/// The largest RTT taken as a measurement, in ms; anything above is not one.
pub const MAX_MEASURED_RTT_MS: f64 = 10_000.0;

/// One client network's measurements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasuredRtts {
    /// Region → RTT in ms (the median of recent reports).
    pub rtt_ms: BTreeMap<String, f64>,
    /// The region the network is steered to first (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}

/// Whether `rtt` (ms) can be a measurement.
pub fn valid_rtt(rtt: f64) -> bool {
    rtt.is_finite() && rtt > 0.0 && rtt <= MAX_MEASURED_RTT_MS
}

/// The home margin for a home region measured at `rtt` ms.
pub fn home_margin(rtt: f64) -> f64 {
    HOME_MARGIN_MS.min(rtt / 3.0)
}

impl MeasuredRtts {
    /// The home after new measurements `rtt_ms`: `previous` stays while it is measured and
    /// no region beats it by more than the margin; otherwise the lowest RTT (ties by name).
    /// `None` when nothing valid was measured.
    pub fn choose_home(rtt_ms: &BTreeMap<String, f64>, previous: Option<&str>) -> Option<String> {
        let best = rtt_ms
            .iter()
            .filter(|(_, &v)| valid_rtt(v))
            .min_by(|a, b| a.1.total_cmp(b.1).then_with(|| a.0.cmp(b.0)))?;
        if let Some((name, &held)) = previous.and_then(|p| rtt_ms.get_key_value(p)) {
            if valid_rtt(held) && *best.1 >= held - home_margin(held) {
                return Some(name.clone());
            }
        }
        Some(best.0.clone())
    }

    /// Builds the record for new measurements, keeping `previous`'s home by the rule of
    /// [`MeasuredRtts::choose_home`]. Invalid RTTs are left out.
    pub fn new(rtt_ms: BTreeMap<String, f64>, previous: Option<&str>) -> MeasuredRtts {
        let rtt_ms: BTreeMap<String, f64> =
            rtt_ms.into_iter().filter(|(_, v)| valid_rtt(*v)).collect();
        let home = Self::choose_home(&rtt_ms, previous);
        MeasuredRtts { rtt_ms, home }
    }

    /// Whether `self` differs enough from `published` to be worth writing again: another
    /// home, another set of regions, or a region's RTT moved by more than the home margin
    /// and 10 % of it (smaller moves are noise for ranking purposes).
    pub fn differs_materially(&self, published: &MeasuredRtts) -> bool {
        if self.home != published.home
            || self.rtt_ms.len() != published.rtt_ms.len()
            || !self.rtt_ms.keys().eq(published.rtt_ms.keys())
        {
            return true;
        }
        self.rtt_ms.iter().any(|(region, &now)| {
            published.rtt_ms.get(region).is_none_or(|&then| {
                let moved = (now - then).abs();
                moved.is_nan() || moved > HOME_MARGIN_MS.max(0.1 * then)
            })
        })
    }
}

/// Who is asking for relays: where GeoIP places the client, and what its network
/// measured, if anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    pub location: Option<LatLon>,
    pub measured: Option<&'a MeasuredRtts>,
}

impl<'a> Client<'a> {
    /// A client known only by its location (`None`: unknown).
    pub fn at(location: Option<LatLon>) -> Client<'static> {
        Client {
            location,
            measured: None,
        }
    }

    /// This client with its network's measurements.
    pub fn measured(self, measured: Option<&'a MeasuredRtts>) -> Client<'a> {
        Client {
            location: self.location,
            measured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtts(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(r, v)| (r.to_string(), v)).collect()
    }

    #[test]
    fn home_is_the_lowest_until_another_beats_it_by_the_margin() {
        let m = rtts(&[("a", 30.0), ("b", 27.0), ("c", 90.0)]);
        assert_eq!(MeasuredRtts::choose_home(&m, None).as_deref(), Some("b"));
        // b is 3 ms better than a: within the margin, a stays.
        assert_eq!(
            MeasuredRtts::choose_home(&m, Some("a")).as_deref(),
            Some("a")
        );
        let m = rtts(&[("a", 30.0), ("b", 24.0)]);
        assert_eq!(
            MeasuredRtts::choose_home(&m, Some("a")).as_deref(),
            Some("b")
        );
        // A previous home that is no longer measured is replaced.
        assert_eq!(
            MeasuredRtts::choose_home(&m, Some("z")).as_deref(),
            Some("b")
        );
        // Small RTTs: the margin is a third of the home's.
        let m = rtts(&[("a", 3.0), ("b", 1.5)]);
        assert_eq!(
            MeasuredRtts::choose_home(&m, Some("a")).as_deref(),
            Some("b")
        );
        let m = rtts(&[("a", 3.0), ("b", 2.5)]);
        assert_eq!(
            MeasuredRtts::choose_home(&m, Some("a")).as_deref(),
            Some("a")
        );
        assert_eq!(MeasuredRtts::choose_home(&rtts(&[]), Some("a")), None);
    }

    #[test]
    fn invalid_rtts_are_left_out() {
        let m = MeasuredRtts::new(
            rtts(&[
                ("a", f64::NAN),
                ("b", -1.0),
                ("c", 0.0),
                ("d", 2e4),
                ("e", 40.0),
            ]),
            Some("a"),
        );
        assert_eq!(m.rtt_ms, rtts(&[("e", 40.0)]));
        assert_eq!(m.home.as_deref(), Some("e"));
    }

    #[test]
    fn material_changes() {
        let old = MeasuredRtts::new(rtts(&[("a", 30.0), ("b", 80.0)]), None);
        let noise = MeasuredRtts::new(rtts(&[("a", 33.0), ("b", 86.0)]), Some("a"));
        assert!(!noise.differs_materially(&old));
        let moved = MeasuredRtts::new(rtts(&[("a", 40.0), ("b", 80.0)]), Some("a"));
        assert!(moved.differs_materially(&old));
        let more = MeasuredRtts::new(rtts(&[("a", 30.0), ("b", 80.0), ("c", 99.0)]), Some("a"));
        assert!(more.differs_materially(&old));
        let rehomed = MeasuredRtts::new(rtts(&[("a", 30.0), ("b", 20.0)]), Some("a"));
        assert!(rehomed.differs_materially(&old));
    }
}
