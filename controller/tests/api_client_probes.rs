//! Client latency probes: `POST /v1/client-probes/targets` and `POST /v1/client-probes`,
//! and how a network's reports change its ICE answers (over GeoIP), with bounded writes,
//! hysteresis and expiry.

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::client_probes::ClientProbeLimits;
use nexrtc_controller::store::Store;
use nexrtc_controller::Options;
use serde_json::{json, Value};

const TARGETS: &str = "/v1/client-probes/targets";
const REPORT: &str = "/v1/client-probes";
/// Placed in Frankfurt by the synthetic GeoIP database, as is all of 198.51.100.0/25.
const MISPLACED: &str = "198.51.100.20";
const MISPLACED_NEIGHBOUR: &str = "198.51.100.99";
const NETWORK: &str = "198.51.100.0/24";

fn regions(r: &Response) -> Vec<String> {
    let list = r.json["regions"].as_array().expect("regions");
    list.iter()
        .map(|v| v.as_str().expect("str").to_owned())
        .collect()
}

async fn report(h: &Harness, peer: &str, results: Value) -> Response {
    let req = Req::post(REPORT)
        .bearer(ICE_KEY)
        .peer(peer)
        .json(json!({ "results": results }));
    h.call(req).await
}

/// What a client in Ashburn whose addresses GeoIP places in Frankfurt measures.
fn from_ashburn(noise: f64) -> Value {
    json!([
        {"region": "us-east", "rtt_ms": 8.0 + noise},
        {"region": "eu-west", "rtt_ms": 75.0 + noise},
        {"region": "eu-central", "rtt_ms": 95.0 - noise},
        {"region": "ap-northeast", "rtt_ms": 160.0 + noise},
    ])
}

/// Waits until this replica has (or no longer has) the network's record.
async fn wait_record(h: &Harness, network: &str, present: bool) {
    let wait = h
        .state
        .snapshots
        .client_probes
        .wait_for(|s| s.get(network).is_some() == present);
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the snapshot follows the store");
}

async fn mod_revision(h: &Harness) -> Option<i64> {
    let kv = h.store.get(&format!("client_probes/{NETWORK}")).await;
    kv.expect("store").map(|kv| kv.mod_revision)
}

#[tokio::test(start_paused = true)]
async fn targets_are_one_stun_address_per_region_nearest_first() {
    let h = Harness::start().await;
    h.register_fleet().await;
    // Two relays in eu-central: still one target for it.
    h.register("eu-central", "n2", "198.18.1.2").await;
    let r = h
        .call(Req::post(TARGETS).bearer(ICE_KEY).peer(FRANKFURT_IP))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["network"], "198.51.100.0/24");
    let targets = r.json["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["region"].as_str())
        .collect();
    assert_eq!(names, ["eu-central", "eu-west", "us-east", "ap-northeast"]);
    let us = &targets[2];
    assert_eq!(us["stun"], "198.18.2.1:3478");
    assert_eq!(us["url"], "stun:198.18.2.1:3478");

    // The same rules as the ICE endpoint.
    let r = h.call(Req::post(TARGETS).peer(FRANKFURT_IP)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = h
        .call(Req::post(TARGETS).bearer(NODE_KEY).peer(FRANKFURT_IP))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = h
        .call(
            Req::post(TARGETS)
                .bearer(ICE_KEY)
                .peer(FRANKFURT_IP)
                .json(json!({"x": 1})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = h
        .call(
            Req::post(TARGETS)
                .bearer(ICE_KEY)
                .peer(FRANKFURT_IP)
                .json(json!({"client_ip": "192.0.2.1"})),
        )
        .await;
    // A server with the client_ip scope asks on a client's behalf.
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["network"], "192.0.2.0/24");
    assert_eq!(r.json["targets"][0]["region"], "us-east");
}

/// GeoIP places the network in Frankfurt; its clients measure Ashburn nearest. After
/// one report every client of the network (not only the reporter) is steered to
/// us-east first; other networks keep their GeoIP ranking.
#[tokio::test(start_paused = true)]
async fn a_misplaced_network_is_steered_by_its_measurements() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let before = h.ice(json!({}), MISPLACED_NEIGHBOUR).await;
    assert_eq!(regions(&before), ["eu-central", "eu-west"]);

    let r = report(&h, MISPLACED, from_ashburn(0.0)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["network"], NETWORK);
    assert_eq!(r.json["accepted"], 4);
    assert_eq!(r.json["home"], "us-east");
    wait_record(&h, NETWORK, true).await;

    let after = h.ice(json!({}), MISPLACED_NEIGHBOUR).await;
    assert_eq!(regions(&after), ["us-east", "eu-west"], "{}", after.text);
    let elsewhere = h.ice(json!({}), TOKYO_IP).await;
    assert_eq!(regions(&elsewhere)[0], "ap-northeast");

    // explain shows what ranked.
    let key = &h.key(&["ice", "admin"]).await;
    let explained = h
        .call(
            Req::post("/v1/ice-servers?explain=1")
                .bearer(key)
                .peer(MISPLACED_NEIGHBOUR)
                .json(json!({})),
        )
        .await;
    let e = &explained.json["explain"];
    assert_eq!(e["client"]["network"], NETWORK, "{}", explained.text);
    assert_eq!(e["client"]["measured"]["home"], "us-east");
    assert_eq!(e["selection"][0]["measured_rtt_ms"], 8.0);
}

#[tokio::test(start_paused = true)]
async fn bad_reports_are_refused_with_codes_and_change_nothing() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let cases = [
        (
            json!([{"region": "us-east", "rtt_ms": -1.0}]),
            "invalid_rtt",
        ),
        (json!([{"region": "us-east", "rtt_ms": 0}]), "invalid_rtt"),
        (
            json!([{"region": "us-east", "rtt_ms": 20000}]),
            "invalid_rtt",
        ),
        (
            json!([{"region": "us-east", "rtt_ms": "fast"}]),
            "invalid_request",
        ),
        (
            json!([{"region": "us-east", "rtt_ms": 5}, {"region": "us-east", "rtt_ms": 6}]),
            "invalid_request",
        ),
        (
            json!([{"region": "us-east", "rtt_ms": 5, "extra": 1}]),
            "invalid_request",
        ),
        (
            Value::Array(
                (0..33)
                    .map(|i| json!({"region": format!("r{i}"), "rtt_ms": 5}))
                    .collect(),
            ),
            "invalid_request",
        ),
    ];
    for (results, code) in cases {
        let r = report(&h, MISPLACED, results.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{results}: {}", r.text);
        assert_eq!(r.code(), code, "{results}: {}", r.text);
    }
    let r = h
        .call(
            Req::post(REPORT)
                .bearer(ICE_KEY)
                .peer(MISPLACED)
                .raw("{not json"),
        )
        .await;
    assert_eq!(r.code(), "invalid_json");
    // client_ip needs its scope.
    let key = &h.key(&["ice"]).await;
    let r = h
        .call(
            Req::post(REPORT)
                .bearer(key)
                .peer(MISPLACED)
                .json(json!({"results": [], "client_ip": "192.0.2.1"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
    // Regions outside the catalogue are skipped, not an error.
    let r = report(&h, MISPLACED, json!([{"region": "mars-1", "rtt_ms": 3}])).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["accepted"], 0);
    assert_eq!(mod_revision(&h).await, None, "nothing was written");
}

/// Noise does not rewrite the record (or move the home); a material change does, but not
/// twice within 10 s; every outcome is counted.
#[tokio::test(start_paused = true)]
async fn writes_follow_material_changes_only() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = report(&h, MISPLACED, from_ashburn(0.0)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let first = mod_revision(&h).await.expect("written");
    for i in 0..20 {
        let noise = f64::from(i % 5) * 0.7;
        let r = report(&h, MISPLACED_NEIGHBOUR, from_ashburn(noise)).await;
        assert_eq!(r.json["home"], "us-east");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(mod_revision(&h).await, Some(first), "noise is not written");

    // eu-west's clients moved: now eu-west is 20 ms away and us-east 70 (the network was
    // renumbered). Reports are medians of the last 8, so it takes a few.
    let moved = json!([
        {"region": "us-east", "rtt_ms": 70.0},
        {"region": "eu-west", "rtt_ms": 20.0},
        {"region": "eu-central", "rtt_ms": 40.0},
    ]);
    let mut homes = Vec::new();
    for _ in 0..8 {
        let r = report(&h, MISPLACED, moved.clone()).await;
        homes.push(r.json["home"].as_str().unwrap_or("").to_owned());
    }
    let second = mod_revision(&h).await.expect("written");
    assert!(second > first, "a material change is written");
    assert_eq!(
        homes.last().map(String::as_str),
        Some("eu-west"),
        "{homes:?}"
    );
    // Within 10 s of that write, further changes wait.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(mod_revision(&h).await, Some(second));
    let metrics = h.state.metrics.render();
    for outcome in ["written", "kept", "deferred"] {
        let line = format!("nexrtc_controller_client_probe_reports_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{outcome} missing:\n{metrics}");
    }
    // Ten seconds after the last write, the next report writes what it has.
    tokio::time::advance(Duration::from_secs(9)).await;
    report(&h, MISPLACED, moved.clone()).await;
    assert!(mod_revision(&h).await > Some(second));
    let wait = (h.state.snapshots.client_probes).wait_for(|s| {
        s.get(NETWORK)
            .is_some_and(|r| r.measured.home.as_deref() == Some("eu-west"))
    });
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the snapshot follows the store");
    let r = h.ice(json!({}), MISPLACED).await;
    assert_eq!(regions(&r)[0], "eu-west", "{}", r.text);
}

/// Records live under a lease: a network nobody reports from disappears, and its clients
/// are ranked by GeoIP again.
#[tokio::test(start_paused = true)]
async fn a_silent_network_is_forgotten() {
    let h = Harness::with(Options {
        client_probes: ClientProbeLimits {
            ttl: Duration::from_secs(60),
            ..ClientProbeLimits::default()
        },
        ..options()
    })
    .await;
    h.register_fleet().await;
    report(&h, MISPLACED, from_ashburn(0.0)).await;
    wait_record(&h, NETWORK, true).await;
    // Keep the relays registered while time passes (their leases are 60 s too).
    for _ in 0..14 {
        tokio::time::advance(Duration::from_secs(5)).await;
        for (i, region) in ["eu-west", "eu-central", "us-east", "ap-northeast"]
            .iter()
            .enumerate()
        {
            h.register(region, "n1", &format!("198.18.{i}.1")).await;
        }
    }
    wait_record(&h, NETWORK, false).await;
    let r = h.ice(json!({}), MISPLACED_NEIGHBOUR).await;
    assert_eq!(regions(&r), ["eu-central", "eu-west"], "{}", r.text);
}

/// Options for traffic shapes: a rate limit no single test caller reaches, and small
/// aggregation bounds so that the test reaches them.
fn busy_options(max_networks: usize, writes_per_sec: f64) -> Options {
    Options {
        default_rate_limit: nexrtc_controller::model::RateLimit {
            per_second: 100_000.0,
            burst: 100_000,
        },
        client_probes: ClientProbeLimits {
            max_networks,
            writes_per_sec,
            ..ClientProbeLimits::default()
        },
        ..options()
    }
}

/// A deterministic spread in ±`amp` ms (no two neighbours alike).
fn noise(i: u32, amp: f64) -> f64 {
    let x = (i.wrapping_mul(2_654_435_761) >> 8) % 1000;
    (f64::from(x) / 999.0 * 2.0 - 1.0) * amp
}

/// Many users behind one NAT address (one network) report, each with ±3 ms of noise of
/// its own: one record, written a few times at most (not per report), its medians close
/// to the truth and its home steady.
#[tokio::test(start_paused = true)]
async fn many_users_behind_one_nat_address_make_one_steady_record() {
    let h = Harness::with(busy_options(65_536, 20.0)).await;
    h.register_fleet().await;
    let mut homes = std::collections::BTreeSet::new();
    let mut revisions = std::collections::BTreeSet::new();
    for i in 0..500u32 {
        let n = |base: f64, k: u32| base + noise(i * 4 + k, 3.0);
        let results = json!([
            {"region": "us-east", "rtt_ms": n(8.0, 0).max(0.5)},
            {"region": "eu-west", "rtt_ms": n(75.0, 1)},
            {"region": "eu-central", "rtt_ms": n(95.0, 2)},
            {"region": "ap-northeast", "rtt_ms": n(160.0, 3)},
        ]);
        let r = report(&h, MISPLACED, results).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        homes.insert(r.json["home"].as_str().unwrap_or("").to_owned());
        let kv = h
            .store
            .get(&format!("client_probes/{NETWORK}"))
            .await
            .expect("store");
        revisions.insert(kv.expect("written from the first report").mod_revision);
        if i % 50 == 0 {
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
    assert_eq!(homes.len(), 1, "the home never moved: {homes:?}");
    let kv = h
        .store
        .get(&format!("client_probes/{NETWORK}"))
        .await
        .expect("store");
    let kv = kv.expect("written");
    // The first record comes from one report (one user's noise); the median of later
    // ones may move past the 5 ms threshold once. Not once per report.
    assert!(
        revisions.len() <= 3,
        "{} writes for 500 reports",
        revisions.len()
    );
    let record: Value = serde_json::from_slice(&kv.value).expect("record");
    for (region, truth) in [
        ("us-east", 8.0),
        ("eu-west", 75.0),
        ("eu-central", 95.0),
        ("ap-northeast", 160.0),
    ] {
        let got = record["rtt_ms"][region].as_f64().expect("measured");
        assert!(
            (got - truth).abs() <= 3.0,
            "{region}: {got} ms vs {truth} ms"
        );
    }
}

/// Thousands of networks report at once: this replica keeps at most `max_networks` of
/// them, writes at most its budget (no time passes: the burst, twice the rate), and
/// counts every report it did not write as deferred; ICE answers keep working.
#[tokio::test(start_paused = true)]
async fn thousands_of_networks_stay_within_the_memory_and_write_bounds() {
    let h = Harness::with(busy_options(1000, 20.0)).await;
    h.register_fleet().await;
    let reports = 3000u32;
    for i in 0..reports {
        let peer = format!("203.{}.{}.7", (i / 250) % 250, i % 250);
        let r = report(
            &h,
            &peer,
            json!([{"region": "eu-west", "rtt_ms": 20.0 + noise(i, 5.0)}]),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
    let listing = Store::list(&h.store, "client_probes/").await.expect("list");
    assert!(
        listing.kvs.len() <= 40,
        "{} records written; the budget is a burst of 40",
        listing.kvs.len()
    );
    let m = h.state.metrics.render();
    let value = |line: &str| -> f64 {
        (m.lines())
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let written = value("nexrtc_controller_client_probe_reports_total{outcome=\"written\"}");
    let deferred = value("nexrtc_controller_client_probe_reports_total{outcome=\"deferred\"}");
    assert_eq!(written as usize, listing.kvs.len(), "{m}");
    assert_eq!(written + deferred, f64::from(reports), "{m}");
    assert!(
        value("nexrtc_controller_client_probe_networks") <= 1000.0,
        "{m}"
    );
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
