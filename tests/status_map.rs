//! The status page's world map in headless Chromium, against a real controller: four
//! regions (one all healthy, one with a draining relay, one whose only relay is full, one
//! without relays), relays registered and probe reports sent through the edge agents' API;
//! the map must colour each region by its health, draw each relay, and join the measured
//! region pairs with their round-trip times (the lower of the two directions). The
//! The usage chart below it must show the tenant's reported minutes and bytes. The
//! screenshot is left in target/e2e-screenshots/status-map.png (docs/status-map.png is one).
//! Needs `chromium`, `node` and `npm ci` in `tests/browser/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use support::*;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[test]
fn the_map_shows_regions_by_health_relays_and_the_mesh() {
    if require_tool("chromium", "chromium").is_none()
        || require_tool("node", "nodejs npm").is_none()
    {
        return;
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        missing("playwright-core", "cd tests/browser && npm ci");
        return;
    }
    let c = Controller::start(
        &ControllerSetup::embedded(60, 500)
            .lease_only()
            .region("eu-west", 53.35, -6.26)
            .region("us-east", 39.04, -77.49)
            .region("ap-northeast", 35.68, 139.69)
            .region("sa-east", -23.55, -46.63),
    );
    let register = |region: &str, node: &str, allocations: u64| {
        let ep = |port: u16| json!({"host": "198.18.0.1", "port": port});
        let body = json!({
            "node": node, "region": region,
            "addresses": {"udp": ep(3478), "tcp": ep(3478), "tls": ep(5349)},
            "transports": ["udp", "tcp", "tls"],
            "load": {"allocations": allocations, "capacity": 100, "cpu": 0.1},
            "version": "test"
        });
        let (status, text) = http_post(
            c.addr,
            "/v1/relays/register",
            &c.keys.node_key,
            &body.to_string(),
        )
        .expect("register");
        assert_eq!(status, 201, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        answer["lease"].as_str().expect("lease").to_owned()
    };
    let lease = register("eu-west", "n1", 10);
    register("eu-west", "n2", 20);
    register("us-east", "n1", 5);
    register("us-east", "n2", 5);
    register("ap-northeast", "n1", 100);
    let (status, text) = c.admin(
        "POST",
        "/v1/admin/relays/us-east/n2/drain",
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{text}");
    let probe = |from: &str, results: serde_json::Value| {
        let body = json!({"from_region": from, "from_node": "n1", "results": results});
        let (status, text) = http_post(
            c.addr,
            "/v1/relays/probes",
            &c.keys.node_key,
            &body.to_string(),
        )
        .expect("probes");
        assert!((200..300).contains(&status), "{status} {text}");
    };
    probe(
        "eu-west",
        json!([{"to_region": "us-east", "to_node": "n1", "rtt_ms": 71.6, "loss": 0.0, "samples": 5},
               {"to_region": "ap-northeast", "to_node": "n1", "rtt_ms": 212.0, "loss": 0.0, "samples": 5}]),
    );
    probe(
        "us-east",
        json!([{"to_region": "eu-west", "to_node": "n1", "rtt_ms": 69.2, "loss": 0.0, "samples": 5}]),
    );
    // Usage of the tenant in three of the last minutes, as a relay's agent reports it.
    let now_minute = unix_now() / 60 * 60;
    let minutes: Vec<_> = [1, 2, 4]
        .iter()
        .map(|ago| {
            let u = json!({"allocation_ms": 90_000 * ago, "bytes_to_peer": 1_000_000 * ago,
                           "bytes_to_client": 500_000 * ago});
            json!({"minute": now_minute - 60 * ago, "tenants": {TENANT: u}})
        })
        .collect();
    let body = json!({"region": "eu-west", "node": "n1", "lease": lease, "boot": "abc",
                      "minutes": minutes});
    let (status, text) = http_post(
        c.addr,
        "/v1/relays/usage",
        &c.keys.node_key,
        &body.to_string(),
    )
    .expect("usage");
    assert_eq!(status, 200, "{text}");
    let expect = json!({
        "regions": {"ap-northeast": "some", "eu-west": "ok", "sa-east": "none", "us-east": "some"},
        "relays": 5,
        "links": 2,
        "rtts": ["212 ms", "69 ms"],
        "usage": {"tenant": TENANT, "bytes": 1_500_000 * 7, "minutes": 3},
    });
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("e2e-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/e2e-screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let out = Command::new("node")
        .arg("status_map.js")
        .current_dir(browser_dir())
        .env("BASE_URL", c.url())
        .env("ADMIN_KEY", &c.keys.admin_key)
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOT", shots.join("status-map.png"))
        .env("CHROMIUM", "/usr/bin/chromium")
        .stdin(Stdio::null())
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "status_map.js: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
