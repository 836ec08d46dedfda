//! The dashboards and alerts against a real Prometheus scraping a running network: a
//! controller (GeoDNS on) with two regions, a relay in each registered through its agent,
//! traffic (ICE API calls, a coturn `uclient` call through one relay, DNS queries), and
//! Prometheus 2 (Debian's) scraping every component each second with the repository's
//! alert rules. Then every query of every panel and every template variable of every
//! dashboard in `monitoring/grafana/dashboards/` is evaluated through Prometheus' HTTP
//! API, and each must return at least one series; then one relay is killed and the
//! `NexrtcRelayDown` alert must fire for it (its `for` is 1 minute: the test waits).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const RATE_WINDOW: &str = "1m";

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/grafana/dashboards")
}

/// `GET` on Prometheus' API, the `data` of a `success` answer.
fn api(prometheus: SocketAddr, path_and_query: &str) -> Value {
    let (status, body) = http_get(prometheus, path_and_query).expect("prometheus");
    assert_eq!(status, 200, "{path_and_query}: {body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "success", "{path_and_query}: {body}");
    json["data"].clone()
}

fn encode(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A fresh directory for Prometheus' configuration and data.
fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("monitoring-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// How many series an instant query returns.
fn series(prometheus: SocketAddr, query: &str) -> usize {
    let data = api(
        prometheus,
        &format!("/api/v1/query?query={}", encode(query)),
    );
    data["result"].as_array().map_or(0, Vec::len)
}

/// Every panel of a dashboard, rows' panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

struct Network {
    controller: Controller,
    relays: Vec<(Relay, &'static str, &'static str)>,
}

fn network() -> Network {
    let controller = Controller::start(
        &ControllerSetup::embedded(5, 500)
            .region("eu-west", 53.35, -6.26)
            .region("eu-central", 50.11, 8.68)
            .with_dns(),
    );
    let relays = vec![
        (
            controller.relay(slot::MONITORING_A, "eu-west", "relay-a"),
            "eu-west",
            "relay-a",
        ),
        (
            controller.relay(slot::MONITORING_B, "eu-central", "relay-b"),
            "eu-central",
            "relay-b",
        ),
    ];
    for (relay, _, _) in &relays {
        controller.until("relay registered", Duration::from_secs(20), |a| {
            offers(a, relay.port)
        });
    }
    Network { controller, relays }
}

/// Prometheus with the repository's rules, scraping `net` every second: the controller
/// as job `nexrtc-controller`, the relays as `nexrtc-relay` with `region` and `node`
/// target labels (as `monitoring/prometheus/prometheus.yml` sets them).
fn prometheus(net: &Network, dir: &Path) -> (ChildGuard, SocketAddr) {
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/prometheus/alerts.yml");
    let mut relays = String::new();
    for (relay, region, node) in &net.relays {
        relays.push_str(&format!(
            "      - targets: [\"{}\"]\n        labels: {{region: \"{region}\", node: \"{node}\"}}\n",
            relay.metrics_addr
        ));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n\
         \x20 - job_name: nexrtc-controller\n    static_configs:\n      - targets: [\"{}\"]\n\
         \x20 - job_name: nexrtc-relay\n    static_configs:\n{relays}",
        rules.display(),
        net.controller.addr,
    );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).expect("prometheus.yml");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .arg("--log.level=warn");
    let mut process = ChildGuard::spawn("prometheus", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(web, "/-/ready"), Ok((200, _))) {
        assert!(
            process.exited().is_none(),
            "prometheus exited: {}",
            process.log_tail(20)
        );
        assert!(
            Instant::now() < deadline,
            "prometheus not ready: {}",
            process.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (process, web)
}

/// Until every target is up (bounded).
fn wait_up(prometheus: SocketAddr, targets: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while series(prometheus, "up == 1") < targets {
        assert!(Instant::now() < deadline, "targets not all up");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Traffic every panel has something to show for: ICE API calls, a relayed call, DNS.
fn traffic(net: &Network) {
    let answer = net.controller.ice_servers();
    let (username, password) = credentials(&answer);
    let peer = EchoPeer::start();
    let relay = &net.relays[0].0;
    // A clean call (every packet back) or the test fails here.
    Uclient::with_credentials(relay.port, &peer, &username, &password).run_clean();
    for _ in 0..5 {
        net.controller.ice_servers();
    }
    assert!(!net.controller.dig(&["turn.example.org", "A"]).is_empty());
}

/// A dashboard query with its template variables set: one region, one relay, one tenant.
fn resolve(expr: &str, net: &Network) -> String {
    let relay = &net.relays[0];
    expr.replace("$__rate_interval", RATE_WINDOW)
        .replace("$__interval", RATE_WINDOW)
        .replace("$region", relay.1)
        .replace("$instance", &relay.0.metrics_addr.to_string())
        .replace("$tenant", TENANT)
}

#[test]
fn every_dashboard_query_returns_data_and_a_killed_relay_fires_relay_down() {
    if require_tool("prometheus", "prometheus").is_none()
        || require_tool("turnutils_uclient", "coturn").is_none()
        || require_tool("dig", "bind9-dnsutils").is_none()
    {
        return;
    }
    let mut net = network();
    let dir = work_dir();
    let (_prometheus, web) = prometheus(&net, &dir);
    wait_up(web, 3);
    traffic(&net);
    // A few scrapes after the traffic, so rates over the window have two samples.
    std::thread::sleep(Duration::from_secs(4));

    let mut checked = 0;
    let mut empty = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("JSON");
        // Template variables: `label_values(metric, label)` must find the label.
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or("");
            let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
            else {
                continue;
            };
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            let q = format!("count by ({}) ({})", label.trim(), metric.trim());
            checked += 1;
            if series(web, &q) == 0 {
                empty.push(format!("{name}: variable {}: {query}", var["name"]));
            }
        }
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let q = resolve(expr, &net);
                checked += 1;
                if series(web, &q) == 0 {
                    empty.push(format!("{name}: panel {:?}: {q}", panel["title"]));
                }
            }
        }
    }
    eprintln!("{checked} dashboard queries evaluated against Prometheus");
    // The region load the capacity alert reads: both regions, light load.
    let load = api(
        web,
        &format!(
            "/api/v1/query?query={}",
            encode("nexrtc_controller_region_load")
        ),
    );
    let regions: Vec<(String, f64)> = (load["result"].as_array().into_iter().flatten())
        .map(|s| {
            let region = s["metric"]["region"].as_str().unwrap_or("").to_owned();
            let value = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            (region, value)
        })
        .collect();
    assert_eq!(regions.len(), 2, "{load}");
    assert!(
        regions.iter().all(|(_, v)| (0.0..0.8).contains(v)),
        "{regions:?}"
    );
    assert!(checked >= 40, "{checked} queries");
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // kill -9 of relay-b: its target goes down and, after the rule's `for` (1 min),
    // NexrtcRelayDown fires for it.
    let down = net.relays[1].0.metrics_addr.to_string();
    net.relays.truncate(1);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(100);
    loop {
        let alerts = api(web, "/api/v1/alerts");
        let firing = (alerts["alerts"].as_array().into_iter().flatten()).any(|a| {
            a["labels"]["alertname"] == "NexrtcRelayDown"
                && a["labels"]["instance"] == down.as_str()
                && a["state"] == "firing"
        });
        if firing {
            eprintln!(
                "NexrtcRelayDown fired {:?} after the kill",
                killed.elapsed()
            );
            assert!(
                killed.elapsed() >= Duration::from_secs(60),
                "before its `for`"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "NexrtcRelayDown never fired: {alerts}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(net);
}
