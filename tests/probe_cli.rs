//! `nexrtc probe` against `nexrtc dev`: it asks the controller for targets, measures the
//! relay with STUN, reports, and the controller counts the report for the loopback
//! network; `--stun` measures without a controller; a bad key or no key is a clear error.
//! (The ranking that follows a report is tested in the controller's
//! `tests/api_client_probes.rs`.)

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn probe(args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg("probe").args(args).env_remove("NEXRTC_API_KEY");
    if let Some(key) = key {
        cmd.env("NEXRTC_API_KEY", key);
    }
    cmd.output().expect("run nexrtc probe")
}

/// `nexrtc probe ARGS --output json`, which must succeed: its JSON.
fn probe_json(args: &[&str], key: Option<&str>) -> Value {
    let out = probe(&[args, &["--output", "json"]].concat(), key);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

#[test]
fn probe_measures_the_relays_and_reports_for_its_network() {
    // STUN Binding only: no allocation uses the slot's relay ports.
    let dev = DevNetwork::start(slot::DEV_MODE_STATUS);
    let base = dev.base_url();
    let doc = probe_json(
        &["--controller", &base, "--spacing-ms", "20"],
        Some(&dev.api_key),
    );
    assert_eq!(doc["network"], "127.0.0.0/24", "{doc}");
    assert_eq!(doc["reported"], true);
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{doc}");
    let r = &results[0];
    assert_eq!(r["stun"], format!("127.0.0.1:{}", dev.turn_port));
    assert_eq!(r["sent"], 5);
    assert!(
        r["rtt_ms"].as_f64().is_some_and(|v| v > 0.0 && v < 1000.0),
        "{doc}"
    );
    assert_eq!(doc["home"], r["region"]);

    let (status, text) = http_get(dev.http, "/metrics").expect("controller metrics");
    assert_eq!(status, 200);
    let m = Metrics(text.clone());
    assert_eq!(
        m.sum(
            "nexrtc_controller_client_probe_reports_total",
            &[("outcome", "written")]
        ),
        1.0,
        "{text}"
    );

    // --bind: measured and reported from another address, counted for its network.
    let doc = probe_json(
        &["--controller", &base, "--bind", "127.0.1.9"],
        Some(&dev.api_key),
    );
    assert_eq!(doc["network"], "127.0.1.0/24", "{doc}");
    assert!(doc["results"][0]["rtt_ms"].as_f64().is_some(), "{doc}");

    // --no-report measures only.
    let out = probe(&["--controller", &base, "--no-report"], Some(&dev.api_key));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not reported"), "{text}");

    // --stun needs no controller.
    let stun = format!("relay=127.0.0.1:{}", dev.turn_port);
    let doc = probe_json(&["--stun", &stun, "--count", "3"], None);
    assert_eq!(doc["reported"], false);
    assert_eq!(doc["results"][0]["region"], "relay");
    assert_eq!(doc["results"][0]["sent"], 3);
    assert!(doc["results"][0]["rtt_ms"].as_f64().is_some(), "{doc}");

    // Refusals.
    let out = probe(&["--controller", &base], Some("nxk_wrong"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_key"), "{err}");
    let out = probe(&["--controller", &base], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-key"));
}
