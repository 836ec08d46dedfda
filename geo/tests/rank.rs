//! Ranking behaviour with clients located by the synthetic GeoIP database
//! (testdata/make_synthetic.py) and a six-region catalogue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use nexrtc_geo::{
    haversine_km, Client, GeoIp, LatLon, LatencyModel, MeasuredRtts, ModelSource, Probe, Ranker,
    Region, RelayState, RelayView, Selection, Snapshot, SplitMix64, Weights, HOME_MARGIN_MS,
};

const REGIONS: [(&str, f64, f64); 6] = [
    ("eu-west", 53.3498, -6.2603),       // Dublin
    ("eu-central", 50.1109, 8.6821),     // Frankfurt
    ("us-east", 39.0438, -77.4874),      // Ashburn, Virginia
    ("ap-northeast", 35.6762, 139.6503), // Tokyo
    ("ap-southeast", 1.3521, 103.8198),  // Singapore
    ("sa-east", -23.5505, -46.6333),     // São Paulo
];

// Client addresses from the synthetic database.
const FRANKFURT: &str = "198.51.100.1";
const LONDON: &str = "198.51.100.200";
const TOKYO: &str = "203.0.113.5";
const SINGAPORE: &str = "203.0.113.200";
const ASHBURN: &str = "192.0.2.1";
const SYDNEY: &str = "198.18.0.1";
const SAO_PAULO: &str = "2001:db8::1";
const TOKYO_V6: &str = "3fff::1";

fn geo() -> GeoIp {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/synthetic-city.mmdb");
    match GeoIp::open(&p) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

fn client(g: &GeoIp, addr: &str) -> Option<LatLon> {
    let ip: IpAddr = addr.parse().expect("IP literal");
    g.lookup(ip).map(|l| l.coords())
}

fn catalogue() -> Vec<Region> {
    REGIONS
        .iter()
        .map(|&(n, lat, lon)| Region::new(n, lat, lon))
        .collect()
}

/// `per_region` active relays in every region, named `<region>-<i>`, all at `load`.
fn relays(per_region: usize, load: f64) -> Vec<RelayView> {
    REGIONS
        .iter()
        .flat_map(|&(n, _, _)| {
            (0..per_region).map(move |i| RelayView::new(format!("{n}-{i}"), n, load))
        })
        .collect()
}

fn snapshot(relays: Vec<RelayView>) -> Snapshot {
    Snapshot {
        regions: catalogue(),
        relays,
        probes: Vec::new(),
        default_region: Some("us-east".into()),
        weights: Weights::default(),
    }
}

fn names(s: &Selection) -> Vec<&str> {
    s.regions.iter().map(|r| &*r.name).collect()
}

fn select(r: &Ranker, at: Option<LatLon>, hint: Option<&str>, seed: u64) -> Selection {
    r.select(Client::at(at), hint, &mut SplitMix64::new(seed))
}

fn set_state(relays: &mut [RelayView], region: &str, state: RelayState) {
    for r in relays.iter_mut().filter(|r| r.region == region) {
        r.state = state;
    }
}

#[test]
fn european_clients_get_european_relays_then_a_second_region() {
    let g = geo();
    let r = Ranker::new(&snapshot(relays(3, 0.2)));
    assert!(r.issues().is_empty(), "{:?}", r.issues());
    let s = select(&r, client(&g, FRANKFURT), None, 1);
    assert_eq!(names(&s), ["eu-central", "eu-west"]);
    assert!(!s.degraded);
    for rc in &s.regions {
        assert_eq!(rc.relays.len(), 1);
        assert!(rc.relays[0].id.starts_with(&*rc.name), "{rc:?}");
    }
    // London is nearer Dublin (≈ 460 km) than Frankfurt (≈ 640 km).
    let s = select(&r, client(&g, LONDON), None, 1);
    assert_eq!(names(&s), ["eu-west", "eu-central"]);
    assert!(s.regions[0].estimated_rtt_ms < s.regions[1].estimated_rtt_ms);
}

#[test]
fn asian_clients_get_asian_relays() {
    let g = geo();
    let r = Ranker::new(&snapshot(relays(3, 0.2)));
    assert_eq!(
        names(&select(&r, client(&g, TOKYO), None, 1)),
        ["ap-northeast", "ap-southeast"]
    );
    assert_eq!(
        names(&select(&r, client(&g, TOKYO_V6), None, 1)),
        ["ap-northeast", "ap-southeast"]
    );
    assert_eq!(
        names(&select(&r, client(&g, SINGAPORE), None, 1)),
        ["ap-southeast", "ap-northeast"]
    );
    // Sydney: Singapore ≈ 6,300 km, Tokyo ≈ 7,800 km.
    assert_eq!(
        names(&select(&r, client(&g, SYDNEY), None, 1)),
        ["ap-southeast", "ap-northeast"]
    );
}

#[test]
fn americas() {
    let g = geo();
    let r = Ranker::new(&snapshot(relays(3, 0.2)));
    assert_eq!(
        names(&select(&r, client(&g, ASHBURN), None, 1)),
        ["us-east", "eu-west"]
    );
    assert_eq!(
        names(&select(&r, client(&g, SAO_PAULO), None, 1)),
        ["sa-east", "us-east"]
    );
}

#[test]
fn dead_region_moves_clients_to_the_next_nearest() {
    let g = geo();
    let mut rl = relays(3, 0.2);
    set_state(&mut rl, "eu-central", RelayState::Dead);
    let r = Ranker::new(&snapshot(rl.clone()));
    assert_eq!(
        names(&select(&r, client(&g, FRANKFURT), None, 1)),
        ["eu-west", "us-east"]
    );
    // Both European regions gone: the US is next, then South America (≈ 9,800 km from
    // Frankfurt, ≈ 9,350 km to Tokyo... Tokyo is nearer).
    set_state(&mut rl, "eu-west", RelayState::Dead);
    let r = Ranker::new(&snapshot(rl.clone()));
    let s = select(&r, client(&g, FRANKFURT), None, 1);
    assert_eq!(names(&s)[0], "us-east");
    let fra = LatLon::new(50.1109, 8.6821);
    let tyo = haversine_km(fra, LatLon::new(35.6762, 139.6503));
    let gru = haversine_km(fra, LatLon::new(-23.5505, -46.6333));
    let expected_second = if tyo < gru { "ap-northeast" } else { "sa-east" };
    assert_eq!(names(&s)[1], expected_second);
    // Asian clients are unaffected.
    assert_eq!(
        names(&select(&r, client(&g, TOKYO), None, 1)),
        ["ap-northeast", "ap-southeast"]
    );
    // One dead relay in a region does not move anyone.
    let mut rl = relays(3, 0.2);
    rl[3].state = RelayState::Dead; // eu-central-0
    let r = Ranker::new(&snapshot(rl));
    for seed in 0..200 {
        let s = select(&r, client(&g, FRANKFURT), None, seed);
        assert_eq!(names(&s)[0], "eu-central");
        assert_ne!(&*s.regions[0].relays[0].id, "eu-central-0");
    }
}

#[test]
fn draining_relays_are_never_chosen() {
    let g = geo();
    let mut rl = relays(4, 0.5);
    // Draining relays report zero load (no new clients): they would win every choice.
    for r in rl
        .iter_mut()
        .filter(|r| r.id.ends_with("-0") || r.id.ends_with("-1"))
    {
        r.state = RelayState::Draining;
        r.load = 0.0;
    }
    let r = Ranker::new(&snapshot(rl.clone()));
    for seed in 0..500 {
        let s = select(&r, client(&g, FRANKFURT), None, seed);
        for rc in &s.regions {
            for relay in &rc.relays {
                assert!(
                    relay.id.ends_with("-2") || relay.id.ends_with("-3"),
                    "{relay:?}"
                );
            }
        }
    }
    // A fully draining region is skipped.
    set_state(&mut rl, "eu-central", RelayState::Draining);
    let r = Ranker::new(&snapshot(rl));
    assert_eq!(
        names(&select(&r, client(&g, FRANKFURT), None, 1)),
        ["eu-west", "us-east"]
    );
}

#[test]
fn full_and_overloaded_relays_are_skipped() {
    let g = geo();
    let mut rl = relays(3, 0.3);
    // eu-central-0 is full, eu-central-1 above the 0.9 threshold.
    rl[3].full = true;
    rl[3].load = 0.1;
    rl[4].load = 0.95;
    let r = Ranker::new(&snapshot(rl.clone()));
    for seed in 0..200 {
        let s = select(&r, client(&g, FRANKFURT), None, seed);
        assert_eq!(&*s.regions[0].relays[0].id, "eu-central-2");
    }
    // All of eu-central full: region skipped.
    for r in rl.iter_mut().filter(|r| r.region == "eu-central") {
        r.full = true;
    }
    let r = Ranker::new(&snapshot(rl));
    assert_eq!(
        names(&select(&r, client(&g, FRANKFURT), None, 1)),
        ["eu-west", "us-east"]
    );
    assert!(!r.degraded());
}

#[test]
fn everything_loaded_degrades_to_all_live_relays() {
    let g = geo();
    let mut rl = relays(2, 0.95);
    for r in rl.iter_mut().filter(|r| r.id.ends_with("-1")) {
        r.full = true;
        r.load = 0.5;
    }
    rl[0].state = RelayState::Dead; // eu-west-0
    rl[2].state = RelayState::Draining; // eu-central-0
    let r = Ranker::new(&snapshot(rl.clone()));
    assert!(r.degraded());
    let s = select(&r, client(&g, FRANKFURT), None, 1);
    assert!(s.degraded);
    assert_eq!(names(&s), ["eu-central", "eu-west"]);
    // Every live (active) relay is considered, full or loaded; dead and draining are not.
    let considered: Vec<String> = r
        .explain(Client::at(client(&g, FRANKFURT)))
        .iter()
        .flat_map(|rc| rc.relays.iter().map(|x| x.id.to_string()))
        .collect();
    let mut expected: Vec<String> = rl
        .iter()
        .filter(|x| x.state == RelayState::Active)
        .map(|x| x.id.clone())
        .collect();
    let mut got = considered.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(r.healthy_regions(), 6);
    // One relay with headroom anywhere ends the degradation.
    rl[11].full = false; // sa-east-1, load 0.5
    let r = Ranker::new(&snapshot(rl));
    assert!(!r.degraded());
    let s = select(&r, client(&g, FRANKFURT), None, 1);
    assert_eq!(names(&s), ["sa-east"]);
    assert!(!s.degraded);
}

#[test]
fn no_live_relays_gives_an_empty_degraded_selection() {
    let mut rl = relays(1, 0.1);
    for r in &mut rl {
        r.state = RelayState::Dead;
    }
    let r = Ranker::new(&snapshot(rl));
    let s = select(&r, Some(LatLon::new(50.0, 8.0)), Some("eu-west"), 1);
    assert!(s.regions.is_empty());
    assert!(s.degraded);
    assert!(!s.hint_applied);
}

#[test]
fn hint_is_respected_when_healthy() {
    let g = geo();
    let mut rl = relays(2, 0.2);
    set_state(&mut rl, "sa-east", RelayState::Dead);
    let r = Ranker::new(&snapshot(rl));
    let s = select(&r, client(&g, FRANKFURT), Some("ap-northeast"), 1);
    assert_eq!(names(&s), ["ap-northeast", "eu-central"]);
    assert!(s.hint_applied);
    // Hinting the region that would win anyway keeps the usual failover.
    let s = select(&r, client(&g, FRANKFURT), Some("eu-central"), 1);
    assert_eq!(names(&s), ["eu-central", "eu-west"]);
    assert!(s.hint_applied);
    // Dead or unknown hints are ignored.
    for hint in ["sa-east", "mars-1", ""] {
        let s = select(&r, client(&g, FRANKFURT), Some(hint), 1);
        assert_eq!(names(&s), ["eu-central", "eu-west"], "{hint}");
        assert!(!s.hint_applied);
    }
    assert!(r.knows_region("sa-east"));
    assert!(!r.knows_region("mars-1"));
}

#[test]
fn load_penalty_shifts_traffic_between_equally_distant_regions() {
    let regions = vec![
        Region::new("west", 0.0, -10.0),
        Region::new("east", 0.0, 10.0),
    ];
    let mk = |west: f64, east: f64| Snapshot {
        regions: regions.clone(),
        relays: vec![
            RelayView::new("w", "west", west),
            RelayView::new("e", "east", east),
        ],
        ..Snapshot::default()
    };
    let mid = Some(LatLon::new(0.0, 0.0));
    let s = select(&Ranker::new(&mk(0.2, 0.2)), mid, None, 1);
    assert!((s.regions[0].estimated_rtt_ms - s.regions[1].estimated_rtt_ms).abs() < 1e-9);
    assert_eq!(
        names(&select(&Ranker::new(&mk(0.7, 0.2)), mid, None, 1)),
        ["east", "west"]
    );
    assert_eq!(
        names(&select(&Ranker::new(&mk(0.2, 0.7)), mid, None, 1)),
        ["west", "east"]
    );
    let s = select(&Ranker::new(&mk(0.2, 0.7)), mid, None, 1);
    assert!(
        (s.regions[1].load_penalty_ms - 50.0 * 0.49).abs() < 1e-9,
        "{s:?}"
    );

    // Real geography: a London client prefers Dublin, but not when Dublin is busy and
    // Frankfurt is idle (≈ 170 km farther ≈ 2.3 ms, against a 36 ms penalty).
    let g = geo();
    let mut rl = relays(2, 0.1);
    for r in rl.iter_mut().filter(|r| r.region == "eu-west") {
        r.load = 0.85;
    }
    let r = Ranker::new(&snapshot(rl));
    assert_eq!(
        names(&select(&r, client(&g, LONDON), None, 1)),
        ["eu-central", "eu-west"]
    );
    // ...but load never sends it across the Atlantic while Europe has room.
    assert_ne!(
        names(&select(&r, client(&g, LONDON), None, 1))[1],
        "us-east"
    );
}

#[test]
fn score_multiplier_steers() {
    let g = geo();
    let mut snap = snapshot(relays(2, 0.2));
    // Frankfurt → eu-central ≈ 5 ms, → eu-west ≈ 19 ms. Make eu-central look 5× as far
    // (an expensive site): Frankfurt clients go to Dublin first.
    for r in snap.regions.iter_mut().filter(|r| r.name == "eu-central") {
        r.score_multiplier = 5.0;
    }
    let r = Ranker::new(&snap);
    let s = select(&r, client(&g, FRANKFURT), None, 1);
    assert_eq!(names(&s), ["eu-west", "eu-central"]);
    assert_eq!(s.regions[1].multiplier, 5.0);
    // The estimate itself is unchanged; only the score carries the multiplier.
    assert!(
        (s.regions[1].score - (5.0 * s.regions[1].estimated_rtt_ms + s.regions[1].load_penalty_ms))
            .abs()
            < 1e-9
    );
}

/// Probes that follow `a + b·km` between every pair of catalogue regions.
fn line_probes(a: f64, b: f64) -> Vec<Probe> {
    let cat = catalogue();
    let mut out = Vec::new();
    for x in &cat {
        for y in &cat {
            if x.name < y.name {
                out.push(Probe::new(
                    &x.name,
                    &y.name,
                    a + b * haversine_km(x.coords(), y.coords()),
                ));
            }
        }
    }
    out
}

#[test]
fn probe_calibration_moves_estimates_in_the_documented_direction() {
    let g = geo();
    let at = client(&g, FRANKFURT);
    let rtt_to = |probes: Vec<Probe>, region: &str| {
        let mut snap = snapshot(relays(1, 0.2));
        snap.probes = probes;
        let r = Ranker::new(&snap);
        let e = r.explain(Client::at(at));
        let rc = e
            .iter()
            .find(|c| &*c.name == region)
            .expect("region")
            .clone();
        (rc.estimated_rtt_ms, *r.model())
    };
    let (default_rtt, m) = rtt_to(Vec::new(), "us-east");
    assert_eq!(m, LatencyModel::DEFAULT);
    // Slower than the default line: estimates rise.
    let (slow_rtt, m) = rtt_to(line_probes(10.0, 0.02), "us-east");
    assert_eq!(m.source, ModelSource::Fitted { pairs: 15 });
    assert!(
        (m.ms_per_km - 0.02).abs() < 1e-9 && (m.intercept_ms - 10.0).abs() < 1e-6,
        "{m:?}"
    );
    assert!(slow_rtt > default_rtt + 30.0, "{slow_rtt} vs {default_rtt}");
    // Faster (but not faster than light in fibre): estimates fall.
    let (fast_rtt, m) = rtt_to(line_probes(1.0, 0.011), "us-east");
    assert!(fast_rtt < default_rtt - 10.0, "{fast_rtt} vs {default_rtt}");
    assert!((m.ms_per_km - 0.011).abs() < 1e-9);
    // Physically impossible probes (faster than light in fibre) are clamped to the floor.
    let (_, m) = rtt_to(line_probes(0.0, 0.002), "us-east");
    assert_eq!(m.ms_per_km, LatencyModel::MIN_MS_PER_KM);
    // Two probes are not enough to fit: default.
    let (rtt, m) = rtt_to(
        line_probes(10.0, 0.02).into_iter().take(2).collect(),
        "us-east",
    );
    assert_eq!(m, LatencyModel::DEFAULT);
    assert_eq!(rtt, default_rtt);
}

#[test]
fn steeper_measured_latency_makes_distance_outweigh_load() {
    let g = geo();
    let at = client(&g, FRANKFURT);
    let mut rl = relays(1, 0.0);
    rl.iter_mut()
        .filter(|r| r.region == "eu-central")
        .for_each(|r| r.load = 0.85); // penalty ≈ 36 ms
    let mut snap = snapshot(rl);
    // Default model: Dublin is ≈ 1,090 km ≈ 14 ms away: load wins, go to Dublin.
    assert_eq!(
        names(&select(&Ranker::new(&snap), at, None, 1))[0],
        "eu-west"
    );
    // Measured paths are much slower per km (0.05 ms/km): Dublin ≈ 55 ms: stay local.
    snap.probes = line_probes(5.0, 0.05);
    assert_eq!(
        names(&select(&Ranker::new(&snap), at, None, 1))[0],
        "eu-central"
    );
}

#[test]
fn power_of_two_choices_spreads_equal_loads() {
    let regions = vec![Region::new("r", 10.0, 10.0)];
    let relays: Vec<RelayView> = (0..10)
        .map(|i| RelayView::new(format!("n{i}"), "r", 0.3))
        .collect();
    let r = Ranker::new(&Snapshot {
        regions,
        relays,
        ..Snapshot::default()
    });
    let mut rng = SplitMix64::new(42);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        let s = r.select(Client::at(None), None, &mut rng);
        *counts
            .entry(s.regions[0].relays[0].id.to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 10, "{counts:?}");
    let max = counts.values().max().copied().unwrap_or(0);
    // Expected 100 each; no relay above 15 %.
    assert!(max <= 150, "{counts:?}");
}

#[test]
fn power_of_two_choices_prefers_less_loaded_without_herding() {
    let regions = vec![Region::new("r", 10.0, 10.0)];
    let loads = [0.1, 0.2, 0.3, 0.4];
    let relays: Vec<RelayView> = loads
        .iter()
        .enumerate()
        .map(|(i, &l)| RelayView::new(format!("n{i}"), "r", l))
        .collect();
    let r = Ranker::new(&Snapshot {
        regions,
        relays,
        ..Snapshot::default()
    });
    let mut rng = SplitMix64::new(7);
    let mut counts = [0u32; 4];
    for _ in 0..1000 {
        let s = r.select(Client::at(None), None, &mut rng);
        let id = &s.regions[0].relays[0].id;
        let i: usize = id[1..].parse().expect("id");
        counts[i] += 1;
    }
    // Theory: 3/6, 2/6, 1/6, 0 (the most loaded of four is never the lesser of a pair).
    assert!(
        counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3],
        "{counts:?}"
    );
    assert_eq!(counts[3], 0);
    assert!((400..=600).contains(&counts[0]), "{counts:?}");
    // Not herding: the least loaded relay does not get everything.
    assert!(counts[1] + counts[2] >= 350, "{counts:?}");
    // The region's load is what p2c lands on: (3·0.1 + 2·0.2 + 1·0.3) / 6.
    let e = r.explain(Client::at(None));
    assert!((e[0].load - 1.0 / 6.0).abs() < 1e-12, "{e:?}");
}

#[test]
fn several_relays_per_region_are_distinct() {
    let mut snap = snapshot(relays(5, 0.3));
    snap.weights.relays_per_region = 3;
    snap.weights.max_regions = 3;
    let r = Ranker::new(&snap);
    for seed in 0..300 {
        let s = select(&r, Some(LatLon::new(48.0, 2.0)), None, seed);
        assert_eq!(s.regions.len(), 3);
        for rc in &s.regions {
            assert_eq!(rc.relays.len(), 3);
            let mut ids: Vec<&str> = rc.relays.iter().map(|x| &*x.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 3, "{rc:?}");
        }
    }
    // Fewer relays than asked: all of them, least loaded first.
    let mut snap = snapshot(vec![
        RelayView::new("a", "eu-west", 0.5),
        RelayView::new("b", "eu-west", 0.1),
    ]);
    snap.weights.relays_per_region = 3;
    let s = select(&Ranker::new(&snap), None, None, 1);
    let ids: Vec<&str> = s.regions[0].relays.iter().map(|x| &*x.id).collect();
    assert_eq!(ids, ["b", "a"]);
}

#[test]
fn unknown_location_uses_the_default_region() {
    let r = Ranker::new(&snapshot(relays(1, 0.2)));
    let s = select(&r, None, None, 1);
    assert_eq!(names(&s), ["us-east", "eu-west"]);
    assert_eq!(s.origin, Some(LatLon::new(39.0438, -77.4874)));
    assert_eq!(s.regions[0].distance_km, 0.0);
    // Invalid coordinates count as unknown.
    let s = select(&r, Some(LatLon::new(f64::NAN, 500.0)), None, 1);
    assert_eq!(names(&s)[0], "us-east");
    // No default region: distance plays no part, load and multiplier decide.
    let mut snap = snapshot(relays(1, 0.2));
    snap.default_region = None;
    snap.relays
        .iter_mut()
        .filter(|r| r.region == "ap-southeast")
        .for_each(|r| r.load = 0.0);
    let s = select(&Ranker::new(&snap), None, None, 1);
    assert_eq!(s.origin, None);
    assert_eq!(names(&s)[0], "ap-southeast");
}

#[test]
fn selection_is_deterministic_for_a_seed() {
    let mut rl = relays(8, 0.0);
    for (i, r) in rl.iter_mut().enumerate() {
        r.load = (i % 7) as f64 / 10.0;
    }
    let r = Ranker::new(&snapshot(rl));
    let at = Some(LatLon::new(45.0, 5.0));
    assert_eq!(select(&r, at, None, 99), select(&r, at, None, 99));
}

#[test]
fn bad_snapshot_entries_are_reported_not_fatal() {
    let mut snap = snapshot(relays(1, 0.2));
    snap.regions.push(Region::new("eu-west", 0.0, 0.0)); // duplicate
    snap.regions.push(Region::new("Bad_Name", 0.0, 0.0));
    snap.relays
        .push(RelayView::new("eu-west-0", "eu-west", 0.0)); // duplicate id
    snap.relays.push(RelayView::new("x", "nowhere", 0.0));
    snap.relays.push(RelayView::new("nan", "eu-west", f64::NAN));
    snap.default_region = Some("atlantis".into());
    snap.weights.max_regions = 0;
    let r = Ranker::new(&snap);
    assert_eq!(r.issues().len(), 7, "{:?}", r.issues());
    assert_eq!(r.weights().max_regions, 2);
    let s = select(&r, Some(LatLon::new(53.0, -6.0)), None, 1);
    assert_eq!(names(&s), ["eu-west", "eu-central"]);
    // The NaN-load relay counts as fully loaded, so it is not eligible.
    for seed in 0..100 {
        let s = select(&r, Some(LatLon::new(53.0, -6.0)), None, seed);
        assert_eq!(&*s.regions[0].relays[0].id, "eu-west-0");
    }
    for issue in r.issues() {
        assert!(!issue.to_string().is_empty());
    }
}

#[test]
fn explain_serializes_for_the_api() {
    let g = geo();
    let r = Ranker::new(&snapshot(relays(2, 0.2)));
    let s = select(&r, client(&g, TOKYO), None, 3);
    let json = serde_json::to_value(&s).expect("serialize");
    assert_eq!(json["regions"][0]["name"], "ap-northeast");
    assert!(json["regions"][0]["score"].is_number());
    assert!(json["regions"][0]["relays"][0]["id"].is_string());
    assert_eq!(json["degraded"], false);
}

fn measured(pairs: &[(&str, f64)], previous: Option<&str>) -> MeasuredRtts {
    MeasuredRtts::new(
        pairs.iter().map(|&(r, v)| (r.to_string(), v)).collect(),
        previous,
    )
}

fn select_measured(r: &Ranker, at: Option<LatLon>, m: &MeasuredRtts) -> Selection {
    r.select(
        Client::at(at).measured(Some(m)),
        None,
        &mut SplitMix64::new(1),
    )
}

/// A network GeoIP places in Frankfurt that measured São Paulo and Ashburn nearest (a
/// mis-located subnet): its measurements rank, not the database.
#[test]
fn measurements_outrank_a_wrong_geoip_location() {
    let g = geo();
    let r = Ranker::new(&snapshot(relays(2, 0.2)));
    let at = client(&g, FRANKFURT);
    assert_eq!(names(&select(&r, at, None, 1)), ["eu-central", "eu-west"]);
    let m = measured(
        &[
            ("sa-east", 4.0),
            ("us-east", 118.0),
            ("eu-central", 205.0),
            ("eu-west", 180.0),
        ],
        None,
    );
    let s = select_measured(&r, at, &m);
    assert!(s.measured);
    assert_eq!(names(&s), ["sa-east", "us-east"]);
    assert_eq!(s.regions[0].measured_rtt_ms, Some(4.0));
    assert_eq!(s.regions[0].estimated_rtt_ms, 4.0);
    // explain ranks every region the same way; unmeasured ones are estimated from the
    // anchor (sa-east): never ahead of it.
    let e = r.explain(Client::at(at).measured(Some(&m)));
    assert_eq!(&*e[0].name, "sa-east");
    let tokyo = e
        .iter()
        .find(|c| &*c.name == "ap-northeast")
        .expect("listed");
    assert_eq!(tokyo.measured_rtt_ms, None);
    assert!(tokyo.estimated_rtt_ms > 4.0 + 200.0, "{tokyo:?}");
}

/// The home region keeps first place against a region measured a little better, and
/// loses it to one measured better by more than the margin.
#[test]
fn the_home_region_holds_within_the_margin() {
    let r = Ranker::new(&snapshot(relays(2, 0.2)));
    let m = measured(&[("eu-west", 30.0), ("eu-central", 33.0)], None);
    assert_eq!(m.home.as_deref(), Some("eu-west"));
    // A later report: eu-central now 2 ms better. The home holds, in ranking too.
    let m2 = measured(
        &[("eu-west", 30.0), ("eu-central", 28.0)],
        m.home.as_deref(),
    );
    assert_eq!(m2.home.as_deref(), Some("eu-west"));
    let s = select_measured(&r, None, &m2);
    assert_eq!(names(&s), ["eu-west", "eu-central"]);
    assert_eq!(s.regions[0].home_margin_ms, HOME_MARGIN_MS);
    // 10 ms better: it moves.
    let m3 = measured(
        &[("eu-west", 30.0), ("eu-central", 20.0)],
        m2.home.as_deref(),
    );
    assert_eq!(m3.home.as_deref(), Some("eu-central"));
    assert_eq!(
        names(&select_measured(&r, None, &m3)),
        ["eu-central", "eu-west"]
    );
}

/// Measured regions without relays drop out (failover goes to the next measured one);
/// measurements naming no known region fall back to GeoIP; load still counts.
#[test]
fn measured_ranking_fails_over_and_still_sees_load() {
    let g = geo();
    let mut rs = relays(2, 0.2);
    let m = measured(
        &[("us-east", 10.0), ("eu-west", 70.0), ("eu-central", 92.0)],
        None,
    );
    set_state(&mut rs, "us-east", RelayState::Dead);
    let r = Ranker::new(&snapshot(rs.clone()));
    assert_eq!(
        names(&select_measured(&r, None, &m)),
        ["eu-west", "eu-central"]
    );

    let unknown = measured(&[("mars-1", 3.0)], None);
    let at = client(&g, TOKYO);
    let s = select_measured(&r, at, &unknown);
    assert!(!s.measured);
    assert_eq!(names(&s), names(&select(&r, at, None, 1)));

    // eu-west nearly full: its penalty (40.5 ms at 0.9) outweighs 22 ms of RTT.
    let mut rs = relays(2, 0.2);
    for relay in rs.iter_mut().filter(|r| r.region == "eu-west") {
        relay.load = 0.89;
    }
    let r = Ranker::new(&snapshot(rs));
    let m = measured(&[("eu-west", 70.0), ("eu-central", 92.0)], None);
    assert_eq!(names(&select_measured(&r, None, &m))[0], "eu-central");
}
