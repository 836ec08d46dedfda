//! The multi-region lab's GeoIP database (`tests/lab/lab-city.mmdb`, made by
//! `tests/lab/make_geoip.py`): each region's 10.k.0.0/16 at its city, except 10.k.9.0/24,
//! deliberately placed on another continent (the mis-geolocated clients).

use std::net::IpAddr;
use std::path::Path;

use nexrtc_geo::{haversine_km, GeoIp, LatLon};

/// (index, region, latitude, longitude): lab/planet.toml's order; make_geoip.py's table.
const REGIONS: [(u8, &str, f64, f64); 6] = [
    (1, "us-east", 39.0438, -77.4874),
    (2, "us-west", 45.8399, -119.7006),
    (3, "eu-west", 53.3498, -6.2603),
    (4, "eu-central", 50.1109, 8.6821),
    (5, "ap-northeast", 35.6762, 139.6503),
    (6, "sa-east", -23.5505, -46.6333),
];
const MISPLACED: [(u8, u8); 6] = [(1, 5), (2, 4), (3, 6), (4, 2), (5, 3), (6, 1)];

fn at(g: &GeoIp, ip: &str) -> LatLon {
    let ip: IpAddr = ip.parse().expect("ip");
    g.lookup(ip)
        .unwrap_or_else(|| panic!("{ip} has no record"))
        .coords()
}

fn near(a: LatLon, lat: f64, lon: f64) -> bool {
    haversine_km(a, LatLon::new(lat, lon)) < 1.0
}

#[test]
fn every_region_and_its_misplaced_subnet() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab-city.mmdb");
    let g = GeoIp::open(&path).expect("lab database");
    for (k, name, lat, lon) in REGIONS {
        for host in ["0.10", "1.1", "2.7", "3.1", "255.254"] {
            let c = at(&g, &format!("10.{k}.{host}"));
            assert!(
                near(c, lat, lon),
                "10.{k}.{host} should be in {name}: {c:?}"
            );
        }
        let (_, wrong) = MISPLACED
            .iter()
            .find(|(i, _)| *i == k)
            .copied()
            .expect("listed");
        let (_, wrong_name, wlat, wlon) = REGIONS[usize::from(wrong) - 1];
        let c = at(&g, &format!("10.{k}.9.1"));
        assert!(
            near(c, wlat, wlon),
            "10.{k}.9.1 (in {name}) should be placed in {wrong_name}: {c:?}"
        );
    }
    assert!(g.lookup("10.7.0.1".parse().expect("ip")).is_none());
}
