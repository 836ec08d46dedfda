//! Micro timing of ranking at the ICE API's target scale: 200 regions, 5,000 relays.
//!
//!     cargo bench -p nexrtc-geo --bench select
//!
//! Reports the cost of `Ranker::new` (once per snapshot change) and of `Ranker::select`
//! (once per request) on one core. Without `--bench` (e.g. `cargo test --all-targets`) it
//! runs a few iterations only, as a smoke test.

use std::hint::black_box;
use std::time::Instant;

use nexrtc_geo::{
    Client, LatLon, Probe, RandomSource, Ranker, Region, RelayView, Snapshot, SplitMix64,
};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (builds, selects) = if full { (50, 1_000_000) } else { (1, 1_000) };

    let mut rng = SplitMix64::new(2024);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let regions: Vec<Region> = (0..200)
        .map(|i| {
            Region::new(
                format!("region-{i}"),
                unit() * 140.0 - 60.0,
                unit() * 360.0 - 180.0,
            )
        })
        .collect();
    let relays: Vec<RelayView> = (0..5_000)
        .map(|i| RelayView::new(format!("relay-{i}"), format!("region-{}", i % 200), unit()))
        .collect();
    let probes: Vec<Probe> = (0..400)
        .map(|i| {
            Probe::new(
                format!("region-{}", i % 200),
                format!("region-{}", (i * 7 + 3) % 200),
                20.0 + 150.0 * unit(),
            )
        })
        .collect();
    let snap = Snapshot {
        regions,
        relays,
        probes,
        default_region: Some("region-0".into()),
        ..Snapshot::default()
    };

    let t = Instant::now();
    let mut ranker = Ranker::new(&snap);
    for _ in 1..builds {
        ranker = black_box(Ranker::new(black_box(&snap)));
    }
    let build = t.elapsed() / builds;

    let clients: Vec<LatLon> = (0..1024)
        .map(|_| LatLon::new(unit() * 140.0 - 60.0, unit() * 360.0 - 180.0))
        .collect();
    let mut rng = SplitMix64::new(1);
    let t = Instant::now();
    let mut regions_out = 0usize;
    for i in 0..selects {
        let s = ranker.select(Client::at(Some(clients[i % clients.len()])), None, &mut rng);
        regions_out += black_box(s).regions.len();
    }
    let per = t.elapsed() / selects as u32;
    println!(
        "geo select: 200 regions, 5000 relays: Ranker::new {build:?}; select {per:?}/request \
         ({:.0} selections/s on one core); {} regions returned",
        1.0 / per.as_secs_f64().max(1e-12),
        regions_out
    );
}
