//! The whole network across six emulated regions (`nexrtc-lab`: network namespaces joined
//! by a delay forwarder with the RTTs of lab/planet.toml): a 3-member etcd cluster and 3
//! controller replicas in us-east, eu-west and ap-northeast, 2 relays in every region, and
//! 3 clients per region — one placed right by GeoIP, one on a subnet GeoIP places on
//! another continent (tests/lab/lab-city.mmdb), one behind a NAT.
//!
//! * Selection quality: for every client the truth is its RTT to each of the 12 relays,
//!   measured by STUN from its own namespace and address (`nexrtc probe --stun`); its ICE
//!   answer's first relay is compared with the best. Before client probes the misplaced
//!   clients get a far relay; after each client ran `nexrtc probe` (measure and report),
//!   every client's first relay is the best one (within 2 ms), p95 excess ≤ 10 ms.
//! * Failover: a region cut off (every packet to and from it dropped) leaves every
//!   controller's answers, clients are steered to the next region, and it comes back
//!   after healing; the timeline is printed.
//!
//! Needs root, util-linux, iproute2, nftables, curl and etcd (etcd-server): under
//! `CI=true` a missing one fails the test, otherwise it is skipped with a notice. The
//! timings asserted are generous bounds, not performance claims (see benches/).

mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrtc_lab::{spawn_in, Echo, Keys, Lab, Network, NetworkConfig, Ns, Plan};
use serde_json::Value;
use support::*;

/// The API key of the lab's tenant (scopes ice, client_ip): `Keys::default()`'s.
fn ice_key() -> String {
    Keys::default().ice
}

fn available() -> bool {
    if let Err((what, install)) = nexrtc_lab::prerequisites() {
        missing(&what, &install);
        return false;
    }
    require_tool("curl", "curl").is_some() && require_tool("etcd", "etcd-server").is_some()
}

/// One client: its region, namespace kind and source address.
#[derive(Debug, Clone)]
struct Client {
    region: String,
    kind: &'static str,
    /// The address it binds (`None`: the NAT namespace's only address).
    bind: Option<Ipv4Addr>,
}

impl Client {
    fn name(&self) -> String {
        match self.bind {
            Some(ip) => format!("{}/{}@{ip}", self.region, self.kind),
            None => format!("{}/{}", self.region, self.kind),
        }
    }
}

/// The network in the lab (`nexrtc_lab::Network`) and what the tests ask of it.
struct World {
    lab: Lab,
    plan: Plan,
    net: Network,
}

fn k(plan: &Plan, region: &str) -> u8 {
    plan.index(region).expect("region in the plan")
}

impl World {
    fn start(tag: &str) -> World {
        let plan = Plan::builtin();
        let lab = Lab::start(&plan).expect("lab");
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-{tag}-{}", random_token("")));
        let mut config = NetworkConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_nexrtc")), dir);
        config.geoip = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab-city.mmdb"));
        let net = Network::start(&lab, config).unwrap_or_else(|e| panic!("{e}"));
        World { lab, plan, net }
    }

    fn ns(&self, region: &str) -> &Ns {
        self.lab.region_ns(region).expect("region namespace")
    }

    fn kill(&mut self, name: &str) {
        self.net.kill(name).unwrap_or_else(|e| panic!("{e}"));
    }

    fn restart(&mut self, name: &str) {
        self.net
            .restart(&self.lab, name)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Controller URLs by control region.
    fn controllers(&self) -> &BTreeMap<String, String> {
        self.net.controllers()
    }

    /// Controllers nearest `region` first.
    fn controllers_from(&self, region: &str) -> Vec<String> {
        self.net.controllers_from(&self.lab, region)
    }

    /// Runs curl in `region`'s namespace (or the NAT namespace), bound to `bind`; its
    /// output when it succeeded.
    fn curl(&self, region: &str, client: Option<&Client>, args: &[&str]) -> Option<String> {
        let ns = match client {
            Some(c) if c.kind == "nat" => self.lab.nat_ns(&c.region).expect("nat ns"),
            Some(c) => self.ns(&c.region),
            None => self.ns(region),
        };
        let mut cmd = self.lab.command(ns, "curl");
        cmd.args(["--max-time", "5"]);
        if let Some(ip) = client.and_then(|c| c.bind) {
            cmd.args(["--interface", &ip.to_string()]);
        }
        let out = cmd.args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Relay ids registered, as controller `control` sees them.
    fn relays(&self, control: &str) -> Option<Vec<String>> {
        self.net.relays(&self.lab, control)
    }

    /// Polls `ok` every 200 ms until it holds or `limit` passes (then panics).
    fn wait(&self, what: &str, limit: Duration, ok: impl Fn(&World) -> bool) -> Duration {
        let start = Instant::now();
        while !ok(self) {
            if start.elapsed() > limit {
                panic!("{what}: not within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        start.elapsed()
    }

    /// Per region: `NEXRTC_LAB_CLIENTS` (default 1) clients GeoIP places right
    /// (10.k.2.i), as many on the misplaced subnet (10.k.9.i), and the NAT client.
    fn clients(&self) -> Vec<Client> {
        let per_kind: u8 = std::env::var("NEXRTC_LAB_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=50).contains(n))
            .unwrap_or(1);
        let mut out = Vec::new();
        for r in &self.plan.regions {
            let n = k(&self.plan, &r.name);
            for i in 1..=per_kind {
                out.push(Client {
                    region: r.name.clone(),
                    kind: "local",
                    bind: Some(Ipv4Addr::new(10, n, 2, i)),
                });
                out.push(Client {
                    region: r.name.clone(),
                    kind: "misplaced",
                    bind: Some(Ipv4Addr::new(10, n, 9, i)),
                });
            }
            out.push(Client {
                region: r.name.clone(),
                kind: "nat",
                bind: None,
            });
        }
        for c in &out {
            if let Some(ip) = c.bind {
                self.lab.add_address(&c.region, ip).expect("client address");
            }
        }
        out
    }

    /// `nexrtc probe` run as `client` (its namespace and address).
    fn probe(&self, client: &Client, args: &[String]) -> Value {
        let ns = match client.kind {
            "nat" => self.lab.nat_ns(&client.region).expect("nat ns"),
            _ => self.ns(&client.region),
        };
        let mut cmd = self.lab.command(ns, env!("CARGO_BIN_EXE_nexrtc"));
        cmd.arg("probe").args(args).args([
            "--output",
            "json",
            "--count",
            "5",
            "--spacing-ms",
            "30",
        ]);
        if let Some(ip) = client.bind {
            cmd.args(["--bind", &ip.to_string()]);
        }
        let out = cmd.output().expect("nexrtc probe");
        assert!(
            out.status.success(),
            "{}: {}",
            client.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("probe JSON")
    }

    /// The RTT (ms) from `client` to every relay host.
    fn truth(&self, client: &Client) -> BTreeMap<String, f64> {
        let stun: Vec<String> = (1..=6u8)
            .flat_map(|n| (1..=2u8).map(move |i| format!("10.{n}.1.{i}:3478")))
            .collect();
        let doc = self.probe(client, &["--stun".to_owned(), stun.join(",")]);
        let mut out = BTreeMap::new();
        for r in doc["results"].as_array().expect("results") {
            if let (Some(host), Some(rtt)) = (r["stun"].as_str(), r["rtt_ms"].as_f64()) {
                out.insert(host.trim_end_matches(":3478").to_owned(), rtt);
            }
        }
        out
    }

    /// The controller a client in `region` asks (the nearest).
    fn controller_for(&self, region: &str) -> String {
        self.controllers_from(region).remove(0)
    }

    /// The hosts of the relays of `client`'s ICE answer, in order, and its regions.
    /// `POST /v1/ice-servers` as `client`, to the controller nearest it: the body.
    fn ice_text(&self, client: &Client) -> Option<String> {
        let url = format!("{}/v1/ice-servers", self.controller_for(&client.region));
        let auth = format!("Authorization: Bearer {}", ice_key());
        let json = "Content-Type: application/json";
        let args = [
            "-sf", "-X", "POST", &url, "-H", &auth, "-H", json, "-d", "{}",
        ];
        self.curl(&client.region, Some(client), &args)
    }

    fn ice(&self, client: &Client) -> (Vec<String>, Vec<String>) {
        let text = self
            .ice_text(client)
            .unwrap_or_else(|| panic!("{}: no ICE answer", client.name()));
        let v: Value = serde_json::from_str(&text).expect("ICE JSON");
        let hosts = (v["iceServers"].as_array().into_iter().flatten())
            .filter(|s| s["username"].is_string())
            .filter_map(|s| s["urls"][0].as_str())
            .filter_map(|u| {
                u.strip_prefix("turn:")?
                    .split(':')
                    .next()
                    .map(str::to_owned)
            })
            .collect();
        let regions = (v["regions"].as_array().into_iter().flatten())
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        (hosts, regions)
    }
}

/// How good the first relays are: the fraction optimal (within 2 ms of the best), the
/// excess RTT's p50 and p95, a line per client, and the per-client records (JSON).
struct Quality {
    optimal: f64,
    p50: f64,
    p95: f64,
    lines: Vec<String>,
    records: Vec<Value>,
}

fn quality(
    world: &World,
    clients: &[Client],
    truth: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Quality {
    let mut excess = Vec::new();
    let mut optimal = 0;
    let mut lines = Vec::new();
    let mut records = Vec::new();
    for c in clients {
        let rtts = &truth[&c.name()];
        let best = rtts.values().copied().fold(f64::INFINITY, f64::min);
        let (hosts, regions) = world.ice(c);
        let first = hosts
            .first()
            .unwrap_or_else(|| panic!("{}: no relay", c.name()));
        let got = rtts.get(first).copied().unwrap_or(f64::INFINITY);
        let e = got - best;
        if e <= 2.0 {
            optimal += 1;
        }
        lines.push(format!(
            "{:<36} first {first:<10} ({got:>6.1} ms) best {best:>6.1} ms  excess {e:>6.1} ms  regions {regions:?}",
            c.name()
        ));
        records.push(serde_json::json!({
            "client": c.name(), "region": c.region, "kind": c.kind,
            "first": first, "first_rtt_ms": got, "best_rtt_ms": best, "excess_ms": e,
            "regions": regions,
        }));
        excess.push(e);
    }
    excess.sort_by(f64::total_cmp);
    let at = |q: f64| excess[((excess.len() as f64 - 1.0) * q).round() as usize];
    Quality {
        optimal: optimal as f64 / clients.len() as f64,
        p50: at(0.5),
        p95: at(0.95),
        lines,
        records,
    }
}

/// Writes `value` to `$NEXRTC_LAB_RESULTS/<name>.json` when that is set (benches/lab.py).
fn save(name: &str, value: &Value) {
    if let Some(dir) = std::env::var_os("NEXRTC_LAB_RESULTS") {
        let path = Path::new(&dir).join(format!("{name}.json"));
        std::fs::write(&path, value.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn client_probes_fix_selection_for_misplaced_networks() {
    if !available() {
        return;
    }
    let world = World::start("select");
    let clients = world.clients();
    let truth: BTreeMap<String, BTreeMap<String, f64>> =
        clients.iter().map(|c| (c.name(), world.truth(c))).collect();
    for (name, rtts) in &truth {
        assert_eq!(rtts.len(), 12, "{name} measured every relay: {rtts:?}");
    }

    let before = quality(&world, &clients, &truth);
    eprintln!(
        "before client probes: {:.0}% optimal, excess p50 {:.1} ms, p95 {:.1} ms\n{}",
        before.optimal * 100.0,
        before.p50,
        before.p95,
        before.lines.join("\n")
    );
    // GeoIP sends the misplaced networks to another continent; it places the others right.
    for r in &before.records {
        let far = r["excess_ms"].as_f64().unwrap_or(0.0) > 50.0;
        assert_eq!(far, r["kind"] == "misplaced", "{r}");
    }

    // Every client measures and reports.
    for c in &clients {
        let url = world.controller_for(&c.region);
        let doc = world.probe(
            c,
            &[
                "--controller".to_owned(),
                url,
                "--api-key".to_owned(),
                ice_key(),
            ],
        );
        assert_eq!(doc["reported"], true, "{}: {doc}", c.name());
        assert_eq!(
            doc["home"],
            Value::String(c.region.clone()),
            "{}: {doc}",
            c.name()
        );
    }
    // The records reach every replica (watch), then the answers follow.
    let misplaced: Vec<&Client> = clients.iter().filter(|c| c.kind == "misplaced").collect();
    let steered = world.wait(
        "misplaced clients steered home",
        Duration::from_secs(15),
        |w| {
            misplaced.iter().all(|c| {
                let (hosts, _) = w.ice(c);
                hosts
                    .first()
                    .is_some_and(|h| h.starts_with(&format!("10.{}.", k(&w.plan, &c.region))))
            })
        },
    );
    let after = quality(&world, &clients, &truth);
    eprintln!(
        "after client probes ({:.1} s to reach every answer): {:.0}% optimal, excess p50 {:.1} ms, p95 {:.1} ms\n{}",
        steered.as_secs_f64(),
        after.optimal * 100.0,
        after.p50,
        after.p95,
        after.lines.join("\n")
    );
    assert!(after.optimal >= 0.95, "{}", after.optimal);
    assert!(after.p95 <= 10.0, "p95 excess {} ms", after.p95);
    let stats = world.lab.stats().expect("stats");
    eprintln!("forwarder lateness: {:?}", stats.lateness_us);
    save(
        "selection",
        &serde_json::json!({
            "before": before.records, "after": after.records, "truth": truth,
            "steered_s": steered.as_secs_f64(), "lateness_us": stats.lateness_us,
        }),
    );
}

#[test]
fn a_region_cut_off_leaves_the_answers_and_returns_when_healed() {
    if !available() {
        return;
    }
    let world = World::start("cut");
    let clients = world.clients();
    let eu_west = clients
        .iter()
        .find(|c| c.region == "eu-west" && c.kind == "local")
        .expect("client");
    let (_, regions) = world.ice(eu_west);
    assert_eq!(
        regions,
        ["eu-west", "eu-central"],
        "GeoIP: home, then the nearest"
    );

    let cut = Instant::now();
    world.lab.cut("eu-central", true).expect("cut");
    let gone = world.wait(
        "eu-central out of every controller",
        Duration::from_secs(20),
        |w| {
            w.controllers().keys().all(|c| {
                w.relays(c).is_some_and(|r| {
                    r.len() == 10 && !r.iter().any(|id| id.starts_with("eu-central/"))
                })
            })
        },
    );
    let (_, regions) = world.ice(eu_west);
    assert_eq!(regions[0], "eu-west");
    assert!(!regions.contains(&"eu-central".to_owned()), "{regions:?}");
    let steered = regions.get(1).cloned();

    world.lab.cut("eu-central", false).expect("heal");
    let healed = Instant::now();
    let back = world.wait(
        "eu-central back on every controller",
        Duration::from_secs(30),
        |w| {
            w.controllers()
                .keys()
                .all(|c| w.relays(c).is_some_and(|r| r.len() == 12))
        },
    );
    let (_, regions) = world.ice(eu_west);
    assert_eq!(regions, ["eu-west", "eu-central"]);
    save(
        "cut",
        &serde_json::json!({
            "region": "eu-central", "gone_s": gone.as_secs_f64(), "back_s": back.as_secs_f64(),
            "second_region_meanwhile": steered,
        }),
    );
    eprintln!(
        "eu-central cut: out of every controller's registry {:.1} s after the cut (second region for eu-west clients: {steered:?}); back {:.1} s after healing ({:.1} s of outage in all)",
        gone.as_secs_f64(),
        back.as_secs_f64(),
        (healed - cut).as_secs_f64() + back.as_secs_f64()
    );
}

/// Whether a client in `region` gets an answer with relays from the nearest controller.
fn answers(world: &World, client: &Client) -> bool {
    world.ice_text(client).is_some_and(|t| t.contains("turn:"))
}

/// Over `span`, every 250 ms: every client gets an answer and every controller lists
/// `relays` relays. The first failure panics naming what failed.
fn steady(world: &World, clients: &[&Client], relays: usize, span: Duration, what: &str) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        for c in clients {
            assert!(answers(world, c), "{what}: {} got no relays", c.name());
        }
        for control in world.controllers().keys() {
            if let Some(listed) = world.relays(control) {
                assert_eq!(
                    listed.len(),
                    relays,
                    "{what}: controller {control} lists {listed:?}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The control plane under failures, each with its timeline: one etcd member lost
/// changes nothing; with the etcd majority lost the controllers keep answering from
/// their snapshots and no relay is removed for missed writes, and everything converges
/// after recovery; a controller killed moves its agents and answers continue; a relay
/// killed leaves the answers.
#[test]
fn control_plane_failures_keep_the_answers_coming() {
    if !available() {
        return;
    }
    let mut world = World::start("failures");
    let clients = world.clients();
    let some: Vec<&Client> = (clients.iter())
        .filter(|c| {
            c.kind == "local" && ["us-west", "eu-central", "sa-east"].contains(&c.region.as_str())
        })
        .collect();
    let mut timeline = Vec::new();

    // One etcd member (ap-northeast) lost: nothing changes.
    world.kill("etcd-ap-northeast");
    steady(
        &world,
        &some,
        12,
        Duration::from_secs(6),
        "one etcd member down",
    );
    timeline.push(
        "etcd member ap-northeast down: 6 s of answers from every controller, 12 relays listed"
            .to_owned(),
    );

    // The majority lost (us-east too): answers continue from the snapshots; no relay is
    // removed while no write can succeed.
    world.kill("etcd-us-east");
    let lost = Instant::now();
    steady(
        &world,
        &some,
        12,
        Duration::from_secs(8),
        "etcd majority down",
    );
    timeline.push("etcd majority down: 8 s of answers from snapshots, no relay removed".to_owned());
    world.restart("etcd-us-east");
    world.restart("etcd-ap-northeast");
    let converged = world.wait(
        "every controller ready and listing 12 relays again",
        Duration::from_secs(60),
        |w| {
            w.controllers().iter().all(|(region, url)| {
                let ready = w
                    .curl(
                        region,
                        None,
                        &["-sf", "-o", "/dev/null", &format!("{url}/readyz")],
                    )
                    .is_some();
                ready && w.relays(region).is_some_and(|r| r.len() == 12)
            })
        },
    );
    let majority_lost = lost.elapsed() - converged;
    timeline.push(format!(
        "etcd majority back {:.1} s after it was lost: controllers ready with 12 relays {:.1} s later",
        majority_lost.as_secs_f64(),
        converged.as_secs_f64()
    ));
    // Writes work again: a relay's lease is renewed (nothing expires over a few TTLs).
    steady(&world, &some, 12, Duration::from_secs(6), "after recovery");

    // A controller replica (eu-west) killed: its agents move to the next replica; the
    // others keep answering and listing every relay.
    world.kill("controller-eu-west");
    let survivors: Vec<&Client> = some
        .iter()
        .copied()
        .filter(|c| world.controller_for(&c.region) != world.controllers()["eu-west"])
        .collect();
    world.net.forget_controller("eu-west");
    steady(
        &world,
        &survivors,
        12,
        Duration::from_secs(10),
        "controller eu-west down",
    );
    timeline.push(
        "controller eu-west killed: 10 s of answers from the other two, 12 relays listed"
            .to_owned(),
    );

    // A relay killed mid-call: the call (ChannelData to a peer in eu-west, echoed back)
    // notices the silence, asks for ICE servers again and moves to the next relay, as an
    // ICE restart would; the killed relay leaves every registry.
    let (tx, rx) = std::sync::mpsc::channel();
    let peer: SocketAddr = "10.3.0.1:9300".parse().expect("addr");
    let echo = Echo::start(world.ns("eu-west"), peer).expect("echo");
    let controller: SocketAddr = "10.1.0.20:8080".parse().expect("addr");
    let call = spawn_in(world.ns("sa-east"), move || {
        let local = "10.6.2.1".parse().expect("ip");
        call_with_failover(controller, local, peer, &tx)
    })
    .expect("call");
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the call starts");
    let CallEvent::Relaying(host) = first;
    std::thread::sleep(Duration::from_secs(2));
    let i = host.rsplit('.').next().expect("host").to_owned();
    world.kill(&format!("relay-sa-east-{i}"));
    let node = format!("sa-east/r{i}");
    let gone = world.wait(
        "the killed relay out of every registry",
        Duration::from_secs(20),
        |w| {
            w.controllers().keys().all(|c| {
                w.relays(c)
                    .is_some_and(|r| r.len() == 11 && !r.contains(&node))
            })
        },
    );
    let outcome = call.join().expect("call thread").expect("in the namespace");
    assert!(!echo.stop().is_empty(), "the peer echoed the call");
    let (moved_to, gap) = outcome.unwrap_or_else(|e| panic!("the call did not recover: {e}"));
    assert_ne!(moved_to, host, "the call moved to another relay");
    assert!(gap < Duration::from_secs(15), "media gap {gap:?}");
    timeline.push(format!(
        "relay {node} killed mid-call: the call moved to {moved_to} after a {:.1} s media gap; \
         the relay was out of every registry {:.1} s after the kill",
        gap.as_secs_f64(),
        gone.as_secs_f64()
    ));
    eprintln!("timeline:\n  {}", timeline.join("\n  "));
    save(
        "failures",
        &serde_json::json!({
            "timeline": timeline, "majority_lost_s": majority_lost.as_secs_f64(),
            "converged_s": converged.as_secs_f64(), "relay_gone_s": gone.as_secs_f64(),
            "media_gap_s": gap.as_secs_f64(), "moved_to": moved_to,
        }),
    );
}

#[derive(Debug)]
enum CallEvent {
    /// Relaying through this relay host.
    Relaying(String),
}

/// `POST /v1/ice-servers` from this thread's namespace: (relay hosts in order, username,
/// password).
fn ice_from(controller: SocketAddr) -> Option<(Vec<String>, String, String)> {
    let (_, v) = post_json(&[controller], "/v1/ice-servers", "{}")?;
    let turn = |s: &Value| -> Option<String> {
        let url = s["urls"][0].as_str()?.strip_prefix("turn:")?;
        url.split(':').next().map(str::to_owned)
    };
    let hosts = v["iceServers"]
        .as_array()?
        .iter()
        .filter_map(turn)
        .collect();
    let user = v["username"].as_str()?.to_owned();
    Some((hosts, user, v["password"].as_str()?.to_owned()))
}

/// A call from `local`: allocate on the answer's first relay that answers, relay
/// ChannelData to `peer` every 20 ms, and when nothing has come back for 1 s ask again
/// and move (as an ICE restart would). Ends after 40 echoes through a second relay:
/// (that relay, the media gap), or an error after 30 s.
fn call_with_failover(
    controller: SocketAddr,
    local: std::net::IpAddr,
    peer: SocketAddr,
    events: &std::sync::mpsc::Sender<CallEvent>,
) -> Result<(String, Duration), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_relay: Option<String> = None;
    let mut last_echo: Option<Instant> = None;
    let mut gap = None;
    while Instant::now() < deadline {
        let (hosts, user, pass) = ice_from(controller).ok_or("no ICE answer")?;
        let mut relaying = None;
        for host in hosts {
            let ip: std::net::IpAddr = host.parse().map_err(|_| format!("bad host {host}"))?;
            let socket = UdpSocket::bind((local, 0)).map_err(|e| e.to_string())?;
            let mut client = TurnClient::over_udp(socket, SocketAddr::new(ip, 3478), &user, &pass)
                .with_timeouts(Duration::from_millis(200), Duration::from_secs(1));
            if client.try_allocate().is_ok_and(|a| a.relayed().is_some()) {
                relaying = Some((host, client));
                break;
            }
        }
        let Some((host, mut client)) = relaying else {
            continue;
        };
        client.create_permission(&[peer]);
        client.channel_bind(0x4000, peer);
        let mut client =
            client.with_timeouts(Duration::from_millis(200), Duration::from_millis(20));
        if first_relay.is_none() {
            first_relay = Some(host.clone());
            let _ = events.send(CallEvent::Relaying(host.clone()));
        }
        let moved = first_relay.as_ref() != Some(&host);
        let mut echoes = 0;
        let mut heard = Instant::now();
        loop {
            client.send_channel_data(0x4000, b"media");
            if client.recv_relayed().is_some() {
                let now = Instant::now();
                if moved && gap.is_none() {
                    gap = last_echo.map(|last| now - last);
                }
                last_echo = Some(now);
                heard = now;
                echoes += 1;
                if moved && echoes >= 40 {
                    return Ok((host, gap.unwrap_or_default()));
                }
            }
            if heard.elapsed() > Duration::from_secs(1) || Instant::now() > deadline {
                break; // silence: ask again
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err("no second relay within 30 s".to_owned())
}

/// A `POST` with the ICE key from this thread's namespace to the first controller of
/// `controllers` that answers: that controller and the JSON body.
fn post_json(controllers: &[SocketAddr], path: &str, body: &str) -> Option<(SocketAddr, Value)> {
    for controller in controllers {
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {controller}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            ice_key(),
            body.len()
        );
        let Ok(mut stream) = TcpStream::connect_timeout(controller, Duration::from_secs(2)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut text = String::new();
        if stream.write_all(request.as_bytes()).is_err()
            || stream.read_to_string(&mut text).is_err()
        {
            continue;
        }
        if let Some(v) = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
        {
            return Some((*controller, v));
        }
    }
    None
}

/// What a signaling participant saw.
#[derive(Debug, Clone)]
enum Seen {
    /// Joined (or rejoined) on this replica URL, with the other participant present.
    Together { replica: String, at: Instant },
}

/// A participant of `room` with the demo page's reconnect rule: a fresh token (whose
/// signal_url names the room's current owner) from the nearest controller that answers,
/// then the WebSocket; after a close, again with backoff (0.25 s doubling to 2 s). Each
/// time it is in the room together with `other`, it says so. Runs until `stop`.
fn participant(
    controllers: Vec<SocketAddr>,
    room: &'static str,
    me: &'static str,
    other: &'static str,
    stop: Arc<AtomicBool>,
    seen: std::sync::mpsc::Sender<Seen>,
) {
    use tungstenite::Message;
    // Bounded even if the test forgets to stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = || !stop.load(Ordering::Relaxed) && Instant::now() < deadline;
    let mut backoff = Duration::from_millis(250);
    while running() {
        let body = format!("{{\"participant\": \"{me}\"}}");
        let token = post_json(&controllers, &format!("/v1/rooms/{room}/tokens"), &body);
        let Some((minted_by, token)) = token else {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        let signal = token["signal_url"].as_str().unwrap_or_default();
        let base = match signal.strip_prefix('/') {
            // A path: the replica that minted it hosts the room.
            Some(_) => format!("http://{minted_by}{signal}"),
            None => signal.to_owned(),
        };
        let replica = base.split("/v1/").next().unwrap_or_default().to_owned();
        let url = format!(
            "{base}&token={}",
            token["token"].as_str().unwrap_or_default()
        )
        .replacen("http://", "ws://", 1);
        let Ok((mut ws, _)) = tungstenite::connect(url.as_str()) else {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        }
        backoff = Duration::from_millis(250);
        while running() {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    let together = (v["type"] == "welcome"
                        && v["peers"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(|x| x == other)))
                        || (v["type"] == "peer-joined" && v["id"] == other);
                    if together {
                        let at = Instant::now();
                        let _ = seen.send(Seen::Together {
                            replica: replica.clone(),
                            at,
                        });
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break, // closed: reconnect
            }
        }
    }
}

/// Signaling across regions survives the replica hosting the room: its two participants
/// (us-west, eu-central) reconnect as the demo page does and are together again on
/// another replica; the time to rejoin is printed.
#[test]
fn a_room_rejoins_on_another_replica_when_its_controller_dies() {
    if !available() {
        return;
    }
    let mut world = World::start("signal");
    let addr = |url: &String| -> SocketAddr {
        url.trim_start_matches("http://")
            .parse()
            .expect("controller address")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (region, me, other) in [("us-west", "ana", "ben"), ("eu-central", "ben", "ana")] {
        let controllers: Vec<SocketAddr> =
            world.controllers_from(region).iter().map(addr).collect();
        let (tx, stop) = (tx.clone(), stop.clone());
        threads.push(
            spawn_in(world.ns(region), move || {
                participant(controllers, "lab-room", me, other, stop, tx)
            })
            .expect("participant"),
        );
    }
    // Both together on the owner.
    let mut owner = None;
    let start = Instant::now();
    let mut together = 0;
    while together < 1 && start.elapsed() < Duration::from_secs(30) {
        if let Ok(Seen::Together { replica, .. }) = rx.recv_timeout(Duration::from_secs(1)) {
            owner = Some(replica);
            together += 1;
        }
    }
    let owner = owner.expect("the participants meet");
    let dead = (world.controllers().iter())
        .find(|(_, url)| **url == owner)
        .map(|(region, _)| region.clone())
        .expect("the owner is a controller");
    world.kill(&format!("controller-{dead}"));
    let killed = Instant::now();
    let mut again = None;
    while again.is_none() && killed.elapsed() < Duration::from_secs(40) {
        if let Ok(Seen::Together { replica, at }) = rx.recv_timeout(Duration::from_secs(1)) {
            if replica != owner {
                again = Some((replica, at - killed));
            }
        }
    }
    let (replica, rejoin) = again.expect("together again on another replica");
    eprintln!(
        "room lab-room: its controller ({dead}) killed; the participants (us-west, eu-central) \
         were together again on {replica} {:.1} s later",
        rejoin.as_secs_f64()
    );
    save(
        "signaling",
        &serde_json::json!({"dead": dead, "new_owner": replica, "rejoin_s": rejoin.as_secs_f64()}),
    );
    assert!(rejoin < Duration::from_secs(30), "{rejoin:?}");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
}
