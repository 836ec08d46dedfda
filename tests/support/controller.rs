//! The real `nexrtc controller` as a process on loopback, on its embedded store
//! or on a real etcd, and relays whose in-process edge agent registers with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, http_call, http_get, http_post, random_token, temp_file, ChildGuard};
use super::{Etcd, Relay, RelayConfig};

/// How long a controller may take to answer 200 on `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The tenant the controller bootstraps.
pub const TENANT: &str = "acme";

/// What a controller is started with.
#[derive(Debug, Clone)]
pub struct ControllerSetup {
    pub lease_ttl_secs: u64,
    pub heartbeat_interval_ms: u64,
    /// `None`: the embedded in-memory store.
    pub etcd_endpoint: Option<String>,
    pub regions: Vec<(&'static str, f64, f64)>,
    /// Rank with `max_regions` and `relays_per_region` large enough that every
    /// ICE answer offers every eligible relay (instead of the best one of the
    /// best two regions).
    pub offer_all: bool,
    /// `relay_miss_after_ms`; `None`: the controller's default (two heartbeats).
    pub relay_miss_after_ms: Option<u64>,
    /// Serve the relay zone `example.org` over DNS on a free loopback port.
    pub dns: bool,
}

impl ControllerSetup {
    /// On the embedded store, no regions yet.
    pub fn embedded(lease_ttl_secs: u64, heartbeat_interval_ms: u64) -> ControllerSetup {
        ControllerSetup {
            lease_ttl_secs,
            heartbeat_interval_ms,
            etcd_endpoint: None,
            regions: Vec::new(),
            offer_all: false,
            relay_miss_after_ms: None,
            dns: false,
        }
    }

    /// On `etcd`, no regions yet.
    pub fn etcd(etcd: &Etcd, lease_ttl_secs: u64, heartbeat_interval_ms: u64) -> ControllerSetup {
        ControllerSetup {
            etcd_endpoint: Some(etcd.endpoint()),
            ..ControllerSetup::embedded(lease_ttl_secs, heartbeat_interval_ms)
        }
    }

    /// Relays leave only when their lease expires (no missed-heartbeat removal), for tests
    /// whose subject is not failure detection: a CPU-starved test run must not turn one
    /// late heartbeat into a relay leaving mid-test.
    pub fn lease_only(mut self) -> ControllerSetup {
        self.relay_miss_after_ms = Some(self.lease_ttl_secs * 1000);
        self
    }

    /// With GeoDNS for `example.org` ([`Controller::dig`] asks it).
    pub fn with_dns(mut self) -> ControllerSetup {
        self.dns = true;
        self
    }

    pub fn offer_all(mut self) -> ControllerSetup {
        self.offer_all = true;
        self
    }

    pub fn region(mut self, name: &'static str, lat: f64, lon: f64) -> ControllerSetup {
        self.regions.push((name, lat, lon));
        self
    }
}

/// The bootstrap keys and the tenant's first secret; replicas of one store
/// share them.
#[derive(Debug, Clone)]
pub struct ControllerKeys {
    pub admin_key: String,
    pub node_key: String,
    pub ice_key: String,
    pub tenant_secret: String,
}

fn api_key() -> String {
    format!("nxk_{}", random_token(""))
}

impl ControllerKeys {
    pub fn random() -> ControllerKeys {
        ControllerKeys {
            admin_key: api_key(),
            node_key: api_key(),
            ice_key: api_key(),
            tenant_secret: random_token("t"),
        }
    }
}

/// A running controller, killed when dropped.
pub struct Controller {
    pub addr: SocketAddr,
    pub setup: ControllerSetup,
    pub keys: ControllerKeys,
    pub config_file: PathBuf,
    pub process: ChildGuard,
    /// Its DNS server (UDP and TCP), when the setup asked for one.
    pub dns: Option<SocketAddr>,
}

impl Controller {
    /// A controller with fresh keys on a free port.
    pub fn start(setup: &ControllerSetup) -> Controller {
        Controller::start_with(setup, &ControllerKeys::random())
    }

    /// Another replica on the same store, with the same keys (on its own port).
    pub fn replica(&self) -> Controller {
        Controller::start_with(&self.setup, &self.keys)
    }

    /// Starts on a free port; a lost race for the port is retried on another.
    pub fn start_with(setup: &ControllerSetup, keys: &ControllerKeys) -> Controller {
        let mut attempt = 1;
        loop {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let dns = setup
                .dns
                .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let config_file = temp_file("controller-toml", &config_text(addr, dns, setup, keys));
            let mut process = spawn(&config_file);
            match wait_ready(addr, &mut process) {
                Ok(()) => {
                    return Controller {
                        addr,
                        setup: setup.clone(),
                        keys: keys.clone(),
                        config_file,
                        process,
                        dns,
                    }
                }
                Err(e) if attempt < 3 && e.contains("in use") => {
                    eprintln!("controller start {attempt} lost a port race, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A controller started from a configuration file someone else wrote (listening
    /// on `addr`, with `keys` in its `[bootstrap]`), until it is ready.
    pub fn start_from_file(
        addr: SocketAddr,
        config_file: PathBuf,
        keys: ControllerKeys,
        setup: ControllerSetup,
    ) -> Controller {
        let mut process = spawn(&config_file);
        if let Err(e) = wait_ready(addr, &mut process) {
            panic!("{e}");
        }
        Controller {
            addr,
            setup,
            keys,
            config_file,
            process,
            dns: None,
        }
    }

    /// `nexrtc dns` on this controller's store and configuration (its own HTTP and DNS
    /// ports), until its `/readyz` answers 200: a [`Controller`] whose API is only
    /// health and metrics.
    pub fn dns_process(&self) -> Controller {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config_file = temp_file(
            "dns-toml",
            &config_text(addr, Some(dns), &self.setup, &self.keys),
        );
        let mut process = spawn_as("dns", &config_file);
        if let Err(e) = wait_ready(addr, &mut process) {
            panic!("{e}");
        }
        Controller {
            addr,
            setup: self.setup.clone(),
            keys: self.keys.clone(),
            config_file,
            process,
            dns: Some(dns),
        }
    }

    /// `dig +short` at its DNS server (the zone is `example.org`): the answer's lines.
    pub fn dig(&self, args: &[&str]) -> Vec<String> {
        let dns = self.dns.expect("a controller started with_dns()");
        let out = Command::new("dig")
            .args([
                format!("@{}", dns.ip()),
                "-p".into(),
                dns.port().to_string(),
            ])
            .args(["+short", "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `http://127.0.0.1:PORT`, as agents are given it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// kill -9 (no goodbye to anyone).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// kill -9, then a new process with the same configuration (same store,
    /// same port) until it is ready. Returns how long the new one took to be ready.
    pub fn restart(&mut self) -> Duration {
        self.kill();
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let mut process = spawn(&self.config_file);
            match wait_ready(self.addr, &mut process) {
                Ok(()) => {
                    self.process = process;
                    return started.elapsed();
                }
                // The old socket may linger a moment; the port is ours to retake.
                Err(e) if attempt < 10 && e.contains("in use") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("restarted controller: {e}"),
            }
        }
    }

    /// Agent flags for a relay registering with `controllers` as `region`/`node`.
    pub fn agent_args(&self, controllers: &[String], region: &str, node: &str) -> Vec<String> {
        vec![
            "--controller".to_owned(),
            controllers.join(","),
            "--node-token".to_owned(),
            self.keys.node_key.clone(),
            "--region".to_owned(),
            region.to_owned(),
            "--node".to_owned(),
            node.to_owned(),
            "--probe-interval".to_owned(),
            "0".to_owned(),
        ]
    }

    /// A relay in `region` whose agent registers with this controller.
    pub fn relay(&self, slot: u16, region: &str, node: &str) -> Relay {
        self.relay_with(RelayConfig::new(slot), &[self.url()], region, node)
    }

    /// A relay started from `config` whose agent talks to `controllers` in turn.
    pub fn relay_with(
        &self,
        mut config: RelayConfig,
        controllers: &[String],
        region: &str,
        node: &str,
    ) -> Relay {
        config
            .extra_args
            .extend(self.agent_args(controllers, region, node));
        Relay::start(config)
    }

    /// Polls the ICE API until `pred` holds; returns the answer and how long it took.
    pub fn until(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let start = Instant::now();
        let mut last = None;
        loop {
            let answer = self.ice_servers_lenient();
            if let Some(a) = answer.as_ref().filter(|a| pred(a)) {
                return (a.clone(), start.elapsed());
            }
            if answer.is_some() {
                last = answer;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; last answer: {last:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `POST /v1/ice-servers` as an app server does; `None` unless 201.
    pub fn ice_servers_lenient(&self) -> Option<Value> {
        let body = json!({"ttl": 600, "user": "alice"}).to_string();
        match http_post(self.addr, "/v1/ice-servers", &self.keys.ice_key, &body) {
            Ok((201, text)) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }

    /// `POST /v1/ice-servers`, which must answer 201.
    pub fn ice_servers(&self) -> Value {
        let body = json!({"ttl": 600, "user": "alice"}).to_string();
        match http_post(self.addr, "/v1/ice-servers", &self.keys.ice_key, &body) {
            Ok((201, text)) => serde_json::from_str(&text).expect("ICE answer is JSON"),
            other => panic!("POST /v1/ice-servers: {other:?}"),
        }
    }

    /// An admin API call: `(status, JSON body or Null)`.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let (status, answer) = http_call(
            self.addr,
            method,
            path,
            Some(&self.keys.admin_key),
            text.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
    }

    /// `<region>/<node>` of every relay in `GET /v1/admin/relays`.
    pub fn registered(&self) -> Vec<String> {
        let (status, list) = self.admin("GET", "/v1/admin/relays", None);
        assert_eq!(status, 200, "GET /v1/admin/relays: {list}");
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// `/metrics` of the controller (Prometheus text).
    pub fn metrics(&self) -> super::Metrics {
        match http_get(self.addr, "/metrics") {
            Ok((200, body)) => super::Metrics(body),
            other => panic!("controller /metrics: {other:?}"),
        }
    }
}

fn config_text(
    addr: SocketAddr,
    dns: Option<SocketAddr>,
    setup: &ControllerSetup,
    keys: &ControllerKeys,
) -> String {
    let mut text = format!(
        "listen = \"{addr}\"\nlease_ttl_secs = {}\nheartbeat_interval_ms = {}\n",
        setup.lease_ttl_secs, setup.heartbeat_interval_ms
    );
    if let Some(dns) = dns {
        text.push_str(&format!(
            "dns_listen = \"{dns}\"\ndns_zone = \"example.org\"\n"
        ));
    }
    if let Some(ms) = setup.relay_miss_after_ms {
        text.push_str(&format!("relay_miss_after_ms = {ms}\n"));
    }
    if let Some(endpoint) = &setup.etcd_endpoint {
        text.push_str(&format!("etcd_endpoints = [\"{endpoint}\"]\n"));
    }
    if setup.offer_all {
        text.push_str("\n[weights]\nmax_regions = 16\nrelays_per_region = 16\n");
    }
    text.push_str(&format!(
        "\n[bootstrap]\nadmin_key = \"{}\"\nnode_key = \"{}\"\nice_key = \"{}\"\n\
         tenant = \"{TENANT}\"\ntenant_secret = \"{}\"\n",
        keys.admin_key, keys.node_key, keys.ice_key, keys.tenant_secret
    ));
    for (name, lat, lon) in &setup.regions {
        text.push_str(&format!(
            "\n[[bootstrap.regions]]\nname = \"{name}\"\nlat = {lat}\nlon = {lon}\n"
        ));
    }
    text
}

fn spawn(config_file: &PathBuf) -> ChildGuard {
    spawn_as("controller", config_file)
}

/// `nexrtc <command> --config <file>` (`controller` or `dns`).
fn spawn_as(command: &str, config_file: &PathBuf) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.arg(command).arg("--config").arg(config_file);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    ChildGuard::spawn(&format!("nexrtc-{command}"), &mut cmd)
}

fn wait_ready(addr: SocketAddr, process: &mut ChildGuard) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if matches!(http_get(addr, "/readyz"), Ok((200, _))) {
            return Ok(());
        }
        if let Some(status) = process.exited() {
            return Err(format!(
                "controller exited before it was ready ({status}): {}",
                process.log_tail(40)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "controller not ready after {READY_TIMEOUT:?}: {}",
                process.log_tail(40)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an ICE answer offers the relay listening on `port` (on any address: ports are
/// unique among the tests' relays).
pub fn offers(answer: &Value, port: u16) -> bool {
    let needle = format!(":{port}?");
    answer["iceServers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["urls"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .any(|u| u.contains(&needle))
}

/// The TURN `(username, password)` of an ICE answer.
pub fn credentials(answer: &Value) -> (String, String) {
    let username = answer["username"].as_str().expect("username").to_owned();
    let password = answer["password"].as_str().expect("password").to_owned();
    (username, password)
}
