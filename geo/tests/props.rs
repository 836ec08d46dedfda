//! Property tests: select never panics, never offers dead or draining relays, offers each
//! region at most once, and keeps its promises about failover and degradation.

use std::collections::{HashMap, HashSet};

use nexrtc_geo::{Client, LatencyModel};
use nexrtc_geo::{
    LatLon, Probe, Ranker, Region, RelayState, RelayView, Snapshot, SplitMix64, Weights,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Fixed seed: CI runs the same cases every time. Set `NEXRTC_GEO_PROPTEST_SEED` to explore.
fn config(cases: u32) -> ProptestConfig {
    let seed = std::env::var("NEXRTC_GEO_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e65_7872_7463);
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

const NAMES: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -200.0..200.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-0.0f64),
    ]
}

fn region() -> impl Strategy<Value = Region> {
    (
        prop_oneof![9 => proptest::sample::select(&NAMES[..]).prop_map(str::to_owned), 1 => "[A-Za-z_-]{0,4}"],
        -95.0..95.0f64,
        -185.0..185.0f64,
        prop_oneof![8 => 0.1..3.0f64, 1 => Just(0.0), 1 => any_f64()],
    )
        .prop_map(|(n, lat, lon, m)| Region::new(n, lat, lon).with_multiplier(m))
}

fn relay() -> impl Strategy<Value = RelayView> {
    (
        "[a-f]{1,2}",
        prop_oneof![9 => proptest::sample::select(&NAMES[..]).prop_map(str::to_owned), 1 => Just("zz".to_owned())],
        prop_oneof![8 => 0.0..1.2f64, 1 => any_f64()],
        prop_oneof![Just(RelayState::Active), Just(RelayState::Draining), Just(RelayState::Dead)],
        any::<bool>(),
    )
        .prop_map(|(id, region, load, state, full)| RelayView { id, region, load, state, full })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        proptest::collection::vec(region(), 0..10),
        proptest::collection::vec(relay(), 0..60),
        proptest::collection::vec(
            (
                proptest::sample::select(&NAMES[..]),
                proptest::sample::select(&NAMES[..]),
                any_f64(),
            ),
            0..12,
        ),
        proptest::option::of(proptest::sample::select(&NAMES[..])),
        (any_f64(), any_f64(), 0usize..4, 0usize..4),
    )
        .prop_map(
            |(regions, relays, probes, default_region, (p, t, mr, rr))| Snapshot {
                regions,
                relays,
                probes: probes
                    .into_iter()
                    .map(|(a, b, rtt)| Probe::new(a, b, rtt))
                    .collect(),
                default_region: default_region.map(str::to_owned),
                weights: Weights {
                    load_penalty_ms: p,
                    overload_threshold: t,
                    max_regions: mr,
                    relays_per_region: rr,
                },
            },
        )
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn select_is_safe(
        snap in snapshot(),
        loc in proptest::option::of((any_f64(), any_f64())),
        hint in proptest::option::of(prop_oneof![proptest::sample::select(&NAMES[..]).prop_map(str::to_owned), "[a-z]{0,3}"]),
        seed in any::<u64>(),
    ) {
        let r = Ranker::new(&snap);
        let w = *r.weights();
        let loc = loc.map(|(lat, lon)| LatLon::new(lat, lon));
        let s = r.select(Client::at(loc), hint.as_deref(), &mut SplitMix64::new(seed));

        // The first definition of each relay id wins (later duplicates are ignored).
        let mut by_id: HashMap<&str, &RelayView> = HashMap::new();
        for rv in &snap.relays {
            by_id.entry(rv.id.as_str()).or_insert(rv);
        }
        let mut seen_regions = HashSet::new();
        prop_assert!(s.regions.len() <= w.max_regions);
        for rc in &s.regions {
            prop_assert!(seen_regions.insert(rc.name.clone()), "region twice: {}", rc.name);
            prop_assert!(!rc.relays.is_empty());
            prop_assert!(rc.relays.len() <= w.relays_per_region);
            prop_assert!(rc.score.is_finite() && rc.estimated_rtt_ms.is_finite(), "{rc:?}");
            let mut ids = HashSet::new();
            for x in &rc.relays {
                let rv = by_id.get(&*x.id).copied();
                prop_assert!(rv.is_some(), "unknown relay {}", x.id);
                let rv = rv.expect("checked");
                prop_assert_eq!(rv.state, RelayState::Active, "offered a {:?} relay", rv.state);
                prop_assert_eq!(rv.region.as_str(), &*rc.name);
                prop_assert!(ids.insert(x.id.clone()), "relay twice");
                if !s.degraded {
                    // NaN loads count as fully loaded, negative ones as idle.
                    let load = if rv.load.is_nan() { 1.0 } else { rv.load.max(0.0) };
                    prop_assert!(!rv.full && load < w.overload_threshold, "ineligible {rv:?}");
                }
            }
        }
        // Failover: at least two regions whenever two have relays to offer.
        prop_assert_eq!(s.regions.len(), r.healthy_regions().min(w.max_regions));
        // Degraded exactly when no relay in a valid region is eligible.
        prop_assert_eq!(s.degraded, r.degraded());
        if let Some(h) = hint.as_deref() {
            let healthy = r.explain(Client::at(loc)).iter().any(|c| &*c.name == h);
            prop_assert_eq!(s.hint_applied, healthy);
            if s.hint_applied {
                prop_assert_eq!(&*s.regions[0].name, h);
            }
        }
        // Without a hint, select's pruned search agrees with the full ranking.
        if !s.hint_applied {
            let full: Vec<_> = r.explain(Client::at(loc)).into_iter().map(|c| c.name).take(w.max_regions).collect();
            let got: Vec<_> = s.regions.iter().map(|c| c.name.clone()).collect();
            prop_assert_eq!(got, full);
        }
        // Apart from a hinted first region, regions come best first.
        let skip = usize::from(s.hint_applied);
        for pair in s.regions[skip..].windows(2) {
            prop_assert!(pair[0].score <= pair[1].score, "{:?}", pair);
        }
    }

    #[test]
    fn fitted_models_stay_physical(points in proptest::collection::vec((any_f64(), any_f64()), 0..20)) {
        let m = LatencyModel::fit(&points);
        prop_assert!(m.ms_per_km >= LatencyModel::MIN_MS_PER_KM && m.ms_per_km <= LatencyModel::MAX_MS_PER_KM, "{m:?}");
        prop_assert!(m.intercept_ms >= 0.0 && m.intercept_ms <= LatencyModel::MAX_INTERCEPT_MS, "{m:?}");
    }
}
