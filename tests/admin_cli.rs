//! `nexrtc admin` against a real controller: regions, relays, tenants, keys; text and
//! JSON output; API errors with their code and exit 1; configuration errors exit 2.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{Controller, ControllerSetup};

fn admin(controller: &Controller, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg("admin")
        .args(args)
        .env("NEXRTC_CONTROLLER", controller.url())
        .env_remove("NEXRTC_ADMIN_KEY");
    if let Some(k) = key {
        cmd.env("NEXRTC_ADMIN_KEY", k);
    }
    cmd.output().expect("run nexrtc admin")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn regions_tenants_keys_and_relays_through_the_admin_api() {
    let c = Controller::start(&ControllerSetup::embedded(5, 500));
    let key = c.keys.admin_key.clone();
    let k = Some(key.as_str());

    // Regions: put (negative coordinates), get, list, delete.
    let out = admin(
        &c,
        k,
        &[
            "--output", "json", "regions", "put", "sa-east", "--lat", "-23.55", "--lon", "-46.63",
        ],
    );
    let region = json(&out);
    assert_eq!(region["name"], "sa-east");
    assert_eq!(region["lat"], -23.55);
    let (status, stored) = c.admin("GET", "/v1/admin/regions/sa-east", None);
    assert_eq!(status, 200, "the region is in the controller: {stored}");
    let out = admin(&c, k, &["regions", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("sa-east\tlat -23.55\tlon -46.63"),
        "{}",
        text(&out)
    );

    // Draining a region without relays drains none, and --wait returns at once.
    let out = admin(&c, k, &["relays", "drain", "sa-east", "--wait", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("draining: none"), "{}", text(&out));
    let out = admin(&c, k, &["--output", "json", "relays", "list"]);
    assert_eq!(json(&out), Value::Array(Vec::new()));

    let out = admin(&c, k, &["regions", "delete", "sa-east"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.admin("GET", "/v1/admin/regions/sa-east", None).0, 404);

    // An API error: its code and message, exit 1.
    let out = admin(&c, k, &["regions", "get", "sa-east"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not_found (HTTP 404)"),
        "{}",
        text(&out)
    );

    // Tenants and keys.
    let out = admin(&c, k, &["tenants", "list"]);
    assert!(text(&out).contains(support::TENANT), "{}", text(&out));
    let out = admin(&c, k, &["--output", "json", "tenants", "create", "globex"]);
    assert_eq!(json(&out)["name"], "globex");
    let out = admin(
        &c,
        k,
        &[
            "--output", "json", "keys", "create", "--scope", "ice", "--tenant", "globex", "--name",
            "app",
        ],
    );
    let created = json(&out);
    let id = created["id"].as_str().expect("key id").to_owned();
    let out = admin(&c, k, &["keys", "list"]);
    assert!(text(&out).contains(&id), "{}", text(&out));
    let out = admin(&c, k, &["keys", "delete", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&admin(&c, k, &["keys", "list"])).contains(&id));

    // The audit log of all that, newest first, from this machine (over real HTTP).
    let out = admin(&c, k, &["audit", "--limit", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = text(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains(&format!("DELETE /v1/admin/keys/{id}\t204")),
        "{lines:?}"
    );
    assert!(lines[1].contains("POST /v1/admin/keys\t201"), "{lines:?}");
    assert!(
        lines[2].contains("POST /v1/admin/tenants\t201"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.ends_with("from 127.0.0.1")),
        "{lines:?}"
    );
    let all = json(&admin(&c, k, &["--output", "json", "audit"]));
    let paths: Vec<&str> = (all.as_array().expect("entries").iter())
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"/v1/admin/regions/sa-east"), "{paths:?}");
    assert!(!all
        .to_string()
        .contains(created["key"].as_str().expect("key")));

    // Usage: none yet, then what a relay reported, per minute and in total.
    let out = admin(&c, k, &["tenants", "usage", "acme"]);
    assert_eq!(
        text(&out).trim(),
        "(no use in the window)",
        "{}",
        text(&out)
    );
    let out = admin(
        &c,
        k,
        &[
            "regions", "put", "sa-east", "--lat", "-23.5", "--lon", "-46.6",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ep = serde_json::json!({"host": "198.18.0.1", "port": 3478});
    let registration = serde_json::json!({"node": "n1", "region": "sa-east",
        "addresses": {"udp": ep}, "transports": ["udp"], "version": "test"});
    let (status, answer) = support::http_post(
        c.addr,
        "/v1/relays/register",
        &c.keys.node_key,
        &registration.to_string(),
    )
    .expect("register");
    assert_eq!(status, 201, "{answer}");
    let lease = serde_json::from_str::<Value>(&answer).expect("JSON")["lease"].clone();
    let minute = support::unix_now() / 60 * 60 - 60;
    let report = serde_json::json!({"region": "sa-east", "node": "n1", "lease": lease,
        "boot": "b1", "minutes": [{"minute": minute, "tenants": {"acme":
            {"allocation_ms": 30000, "bytes_to_peer": 1234, "bytes_to_client": 99}}}]});
    let (status, answer) = support::http_post(
        c.addr,
        "/v1/relays/usage",
        &c.keys.node_key,
        &report.to_string(),
    )
    .expect("usage");
    assert_eq!(status, 200, "{answer}");
    let out = admin(&c, k, &["tenants", "usage", "acme", "--region", "sa-east"]);
    let lines: Vec<String> = text(&out).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "start\tregion\tallocation_minutes\ttunnel_minutes\tbytes_to_peer\tbytes_to_client"
                .to_owned(),
            format!("{minute}\tsa-east\t0.5\t0.0\t1234\t99"),
            "total\tsa-east\t0.5\t0.0\t1234\t99".to_owned(),
        ]
    );
    let out = admin(&c, k, &["tenants", "usage", "acme", "--step", "90"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("invalid_request"), "{}", text(&out));
}

#[test]
fn keys_from_a_file_and_refusals() {
    let c = Controller::start(&ControllerSetup::embedded(5, 500));
    // A controller configuration as the key file: its [bootstrap] admin_key.
    let out = Command::new(env!("CARGO_BIN_EXE_nexrtc"))
        .args(["admin", "--controller", &c.url(), "--admin-key-file"])
        .arg(&c.config_file)
        .args(["regions", "list"])
        .env_remove("NEXRTC_ADMIN_KEY")
        .output()
        .expect("nexrtc admin");
    assert!(out.status.success(), "{}", text(&out));

    // No key: a configuration error, exit 2, naming the flags.
    let out = admin(&c, None, &["regions", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--admin-key"), "{}", text(&out));

    // A wrong key: the API's refusal, exit 1, and the key is not printed.
    let out = admin(
        &c,
        Some("nxk_not-a-key-of-this-controller-0000000"),
        &["regions", "list"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("HTTP 401"), "{}", text(&out));
    assert!(!text(&out).contains("nxk_not-a-key"), "{}", text(&out));

    // No controller there: said plainly, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let out = Command::new(env!("CARGO_BIN_EXE_nexrtc"))
        .args([
            "admin",
            "--controller",
            &format!("http://127.0.0.1:{port}"),
            "--admin-key",
            "nxk_x",
            "regions",
            "list",
        ])
        .output()
        .expect("nexrtc admin");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no answer from the controller"),
        "{}",
        text(&out)
    );
}
