//! GeoIp on real MaxMind-format databases: MaxMind's City test databases and our
//! synthetic one (testdata/make_synthetic.py). Expected values were checked against the
//! files with the Python `maxminddb` reader.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nexrtc_geo::{GeoError, GeoIp, Location};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn open(name: &str) -> GeoIp {
    match GeoIp::open(testdata(name)) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP literal")
}

fn loc(g: &GeoIp, s: &str) -> Location {
    g.lookup(ip(s)).unwrap_or_else(|| panic!("{s} not found"))
}

fn assert_at(l: &Location, lat: f64, lon: f64, country: &str, continent: &str) {
    assert!(
        (l.lat - lat).abs() < 1e-6 && (l.lon - lon).abs() < 1e-6,
        "{l:?}"
    );
    assert_eq!(l.country.as_deref(), Some(country), "{l:?}");
    assert_eq!(l.continent.as_deref(), Some(continent), "{l:?}");
}

/// A unique scratch file path for this test process.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nexrtc-geo-{}-{name}", std::process::id()))
}

#[test]
fn maxmind_city_test_databases_known_entries() {
    for db in [
        "maxmind/GeoIP2-City-Test.mmdb",
        "maxmind/GeoLite2-City-Test.mmdb",
    ] {
        let g = open(db);
        assert!(g.database_type().contains("City"), "{}", g.database_type());
        // London, GB
        assert_at(&loc(&g, "81.2.69.142"), 51.5142, -0.0931, "GB", "EU");
        // Boxford, GB
        assert_at(&loc(&g, "2.125.160.216"), 51.75, -1.25, "GB", "EU");
        // Linköping, SE
        assert_at(&loc(&g, "89.160.20.112"), 58.4167, 15.6167, "SE", "EU");
        // Milton, WA, US
        assert_at(&loc(&g, "216.160.83.56"), 47.2513, -122.3149, "US", "NA");
        // Philippines (country-level coordinates)
        assert_at(&loc(&g, "202.196.224.0"), 13.0, 122.0, "PH", "AS");
        // IPv6: Japan
        assert_at(&loc(&g, "2001:218::"), 35.68536, 139.75309, "JP", "AS");
    }
}

#[test]
fn unknown_addresses_are_none() {
    let g = open("maxmind/GeoIP2-City-Test.mmdb");
    for s in ["1.1.1.1", "8.8.8.8", "127.0.0.1", "::1", "2606:4700::1111"] {
        assert_eq!(g.lookup(ip(s)), None, "{s}");
        assert!(matches!(g.try_lookup(ip(s)), Ok(None)), "{s}");
    }
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
    let g = open("maxmind/GeoIP2-City-Test.mmdb");
    assert_eq!(
        g.lookup(ip("::ffff:81.2.69.142")),
        g.lookup(ip("81.2.69.142"))
    );
    assert!(g.lookup(ip("::ffff:81.2.69.142")).is_some());
}

#[test]
fn synthetic_database_entries() {
    let g = open("synthetic-city.mmdb");
    assert_eq!(g.database_type(), "NexRTC-Synthetic-City");
    assert_eq!(g.build_epoch(), 1_735_689_600);
    let cases = [
        ("198.51.100.1", 50.1109, 8.6821, "DE", "EU"), // Frankfurt
        ("198.51.100.127", 50.1109, 8.6821, "DE", "EU"), // Frankfurt, last of /25
        ("198.51.100.128", 51.5072, -0.1276, "GB", "EU"), // London
        ("203.0.113.5", 35.6762, 139.6503, "JP", "AS"), // Tokyo
        ("203.0.113.200", 1.3521, 103.8198, "SG", "AS"), // Singapore
        ("192.0.2.44", 39.0438, -77.4874, "US", "NA"), // Ashburn
        ("198.18.3.4", -33.8688, 151.2093, "AU", "OC"), // Sydney
        ("2001:db8::1", -23.5505, -46.6333, "BR", "SA"), // São Paulo
        ("3fff:123::1", 35.6762, 139.6503, "JP", "AS"), // Tokyo (IPv6)
        ("::ffff:203.0.113.5", 35.6762, 139.6503, "JP", "AS"),
    ];
    for (addr, lat, lon, cc, cont) in cases {
        assert_at(&loc(&g, addr), lat, lon, cc, cont);
    }
    // Country-only record: no coordinates, so no location.
    assert_eq!(g.lookup(ip("198.19.0.1")), None);
    assert_eq!(g.lookup(ip("8.8.8.8")), None);
    assert_eq!(g.lookup(ip("2001:db9::1")), None);
}

#[test]
fn synthetic_database_decodes_as_geoip2_city() {
    let bytes = std::fs::read(testdata("synthetic-city.mmdb")).expect("read");
    let reader = maxminddb::Reader::from_source(bytes).expect("open");
    reader.verify().expect("verify");
    let res = reader.lookup(ip("198.51.100.200")).expect("lookup");
    let city = res
        .decode::<maxminddb::geoip2::City<'_>>()
        .expect("decode")
        .expect("record");
    assert_eq!(city.city.names.english, Some("London"));
    assert_eq!(city.country.iso_code, Some("GB"));
    assert_eq!(city.continent.code, Some("EU"));
    assert_eq!(city.location.latitude, Some(51.5072));
    assert_eq!(city.location.longitude, Some(-0.1276));
}

#[test]
fn from_bytes_matches_open() {
    let bytes = std::fs::read(testdata("synthetic-city.mmdb")).expect("read");
    let g = GeoIp::from_bytes(bytes).expect("from_bytes");
    assert_eq!(g.path(), Path::new(nexrtc_geo::geoip::IN_MEMORY));
    assert_eq!(
        g.lookup(ip("198.51.100.1")),
        open("synthetic-city.mmdb").lookup(ip("198.51.100.1"))
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let path = testdata("does-not-exist.mmdb");
    let err = GeoIp::open(&path).expect_err("missing file must fail");
    assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("does-not-exist.mmdb") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn corrupt_files_are_clear_errors_naming_the_path() {
    let good = std::fs::read(testdata("synthetic-city.mmdb")).expect("read");
    let mut tree_smashed = good.clone();
    // Overwrite the search tree's first nodes with pointers far past the data section.
    for b in tree_smashed.iter_mut().take(48) {
        *b = 0xFF;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.mmdb", Vec::new()),
        (
            "garbage.mmdb",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ),
        ("truncated.mmdb", good[..good.len() / 2].to_vec()),
        ("tree-smashed.mmdb", tree_smashed),
    ];
    for (name, bytes) in cases {
        let path = scratch(name);
        std::fs::write(&path, &bytes).expect("write scratch file");
        let res = GeoIp::open(&path);
        let _ = std::fs::remove_file(&path);
        let err = res.expect_err(name);
        assert!(matches!(err, GeoError::Invalid { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
        assert!(msg.contains("not a valid MaxMind DB"), "{name}: {msg}");
        // from_bytes fails the same way.
        assert!(GeoIp::from_bytes(bytes).is_err(), "{name}");
    }
}

#[test]
fn country_database_is_refused() {
    let path = testdata("maxmind/GeoLite2-Country-Test.mmdb");
    let err = GeoIp::open(&path).expect_err("Country DB must be refused");
    assert!(
        matches!(&err, GeoError::NotCity { database_type, .. } if database_type == "GeoLite2-Country"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("GeoLite2-Country-Test.mmdb"),
        "{err}"
    );
}

#[test]
fn lookups_never_panic_on_arbitrary_addresses() {
    let g = open("maxmind/GeoIP2-City-Test.mmdb");
    let s = open("synthetic-city.mmdb");
    let mut x: u64 = 0x1234_5678_9abc_def0;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v4 = IpAddr::from(((x >> 32) as u32).to_be_bytes());
        let v6 = IpAddr::from((u128::from(x) << 64 | u128::from(x.rotate_left(17))).to_be_bytes());
        for a in [v4, v6] {
            for db in [&g, &s] {
                if let Some(l) = db.lookup(a) {
                    assert!(l.coords().is_valid(), "{a}: {l:?}");
                }
            }
        }
    }
}
