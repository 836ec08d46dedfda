//! The operator loop of `terraform/examples/local`, end to end: Terraform applies
//! the region module with nodes that are `nexrtc relay` processes on loopback
//! addresses, against a real controller. One node relays a call; three nodes are
//! all offered right after the apply; scaling in while a call runs on a removed
//! node keeps the call whole and removes the node only after it drained; destroy
//! removes the region. The steps are timed and printed.
//!
//! Needs `terraform` (skipped loudly without it, also under CI) and coturn's
//! client tools.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const REGION: &str = "tf-local";
const TERRAFORM: &str = "Terraform >= 1.6 from HashiCorp's releases";
/// Third octet of the nodes' loopback addresses, 127.0.SUBNET.N.
const SUBNET: u8 = 77;
/// How long a removed node may serve its allocations.
const DRAIN_GRACE: u64 = 20;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform/examples/local")
}

/// The example's working state, outside the source tree, and the relay
/// processes to kill should the test fail half way.
struct Workspace {
    dir: PathBuf,
    vars: Vec<String>,
}

impl Workspace {
    fn new(controller: &Controller, turn_port: u16, metrics_port: u16) -> Workspace {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("terraform-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("work dir");
        let vars = [
            ("nexrtc", env!("CARGO_BIN_EXE_nexrtc").to_owned()),
            ("controller_url", controller.url()),
            ("admin_key", controller.keys.admin_key.clone()),
            ("node_token", controller.keys.node_key.clone()),
            ("region", REGION.to_owned()),
            ("subnet", SUBNET.to_string()),
            ("turn_port", turn_port.to_string()),
            ("metrics_port", metrics_port.to_string()),
            ("drain_grace", DRAIN_GRACE.to_string()),
            (
                "work_dir",
                dir.join("nodes").to_str().expect("test setup").to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
        let ws = Workspace { dir, vars };
        ws.terraform(&["init", "-backend=false", "-input=false"]);
        ws
    }

    /// Runs `terraform ARGS` in the example with this workspace's data and state;
    /// returns how long it took.
    fn terraform(&self, args: &[&str]) -> Duration {
        let started = Instant::now();
        let run = terraform(&example_dir(), &self.dir.join(".terraform"), args);
        let took = started.elapsed();
        assert!(
            run.success,
            "terraform {args:?} failed:\n{}\nnode logs:\n{}",
            run.output,
            self.node_logs()
        );
        took
    }

    /// `terraform apply` with `node_count` nodes; how long it took.
    fn apply(&self, node_count: usize) -> Duration {
        let count = format!("node_count={node_count}");
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
        args.push("-state");
        let state = self.state();
        args.push(&state);
        for v in self.vars.iter().chain([&count]) {
            args.extend(["-var", v]);
        }
        self.terraform(&args)
    }

    fn destroy(&self) -> Duration {
        let mut args = vec!["destroy", "-auto-approve", "-input=false", "-no-color"];
        args.push("-state");
        let state = self.state();
        args.push(&state);
        for v in &self.vars {
            args.extend(["-var", v]);
        }
        self.terraform(&args)
    }

    fn state(&self) -> String {
        self.dir
            .join("terraform.tfstate")
            .to_str()
            .expect("test setup")
            .to_owned()
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(REGION).join(node)
    }

    fn node_pids(&self) -> Vec<(String, i32)> {
        let Ok(nodes) = std::fs::read_dir(self.dir.join("nodes").join(REGION)) else {
            return Vec::new();
        };
        nodes
            .flatten()
            .filter_map(|e| {
                let pid = std::fs::read_to_string(e.path().join("pid")).ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    pid.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    fn node_logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=3 {
            let node = format!("relay{n}");
            if let Ok(log) = std::fs::read_to_string(self.node_dir(&node).join("relay.log")) {
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                out.push_str(&format!("--- {node}\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // A failed test leaves no relay running.
        for (_, pid) in self.node_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn node_ip(n: u8) -> String {
    format!("127.0.{SUBNET}.{n}")
}

/// Whether an ICE answer offers node `n` (its UDP TURN URL).
fn offers_node(answer: &Value, n: u8, port: u16) -> bool {
    let url = format!("turn:{}:{port}?transport=udp", node_ip(n));
    answer["iceServers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["urls"].as_array().into_iter().flatten())
        .any(|u| u.as_str() == Some(&url))
}

fn region_nodes(controller: &Controller) -> Vec<String> {
    let mut nodes: Vec<String> = controller
        .registered()
        .into_iter()
        .filter_map(|r| r.strip_prefix(&format!("{REGION}/")).map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

/// Active allocations of node `n`, from its own metrics.
fn allocations(n: u8, metrics_port: u16) -> u64 {
    let addr = format!("{}:{metrics_port}", node_ip(n))
        .parse()
        .expect("test setup");
    let Ok((200, text)) = http_get(addr, "/metrics") else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("nexrtc_relay_allocations_active{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn terraform_adds_scales_drains_and_removes_a_local_region() {
    if optional_tool("terraform", TERRAFORM).is_none() {
        return;
    }
    if require_tool("turnutils_uclient", "coturn").is_none()
        || require_tool("turnutils_peer", "coturn").is_none()
    {
        return;
    }
    let controller = Controller::start(&ControllerSetup::embedded(5, 500).offer_all());
    let (turn_port, metrics_port) = (free_port(), free_port());
    let ws = Workspace::new(&controller, turn_port, metrics_port);
    let peer = EchoPeer::start();
    let mut steps = Steps(Vec::new());

    // 1 node: the region and its node are in the controller when apply returns,
    // and a call relays through the node with credentials from the ICE API.
    let took = ws.apply(1);
    steps.push(("apply node_count=1".into(), took));
    assert_eq!(region_nodes(&controller), ["relay1"]);
    let (status, region) = controller.admin("GET", &format!("/v1/admin/regions/{REGION}"), None);
    assert_eq!(status, 200, "the region is registered: {region}");
    assert_eq!(region["lat"], 53.35);
    let answer = controller.ice_servers();
    assert!(
        offers_node(&answer, 1, turn_port),
        "relay1 offered: {answer}"
    );
    let (user, pass) = credentials(&answer);
    let started = Instant::now();
    Uclient::with_credentials(turn_port, &peer, &user, &pass)
        .server(&node_ip(1))
        .run_clean();
    steps.push((
        "a call through relay1 (uclient, 0 loss)".into(),
        started.elapsed(),
    ));

    // 3 nodes: all three are offered within 2 s of the apply returning.
    let took = ws.apply(3);
    steps.push(("apply node_count=3".into(), took));
    let (_, offered_after) =
        controller.until("all three nodes offered", Duration::from_secs(2), |a| {
            (1..=3).all(|n| offers_node(a, n, turn_port))
        });
    steps.push((
        "all 3 in the ICE answers after apply returned".into(),
        offered_after,
    ));
    assert_eq!(region_nodes(&controller), ["relay1", "relay2", "relay3"]);
    let idempotent = ws.apply(3);
    steps.push(("apply node_count=3 again (no change)".into(), idempotent));
    let pids_before: Vec<(String, i32)> = ws.node_pids();
    assert_eq!(pids_before.len(), 3, "{pids_before:?}");

    // A call on relay3, then scale in to 1 while it runs: relay2 and relay3 drain.
    // The call keeps every packet, the apply returns only once relay3 has exited,
    // and then the removed nodes are gone from the controller.
    let answer = controller.ice_servers();
    let (user, pass) = credentials(&answer);
    let mut call = Uclient::with_credentials(turn_port, &peer, &user, &pass).server(&node_ip(3));
    call.messages = 300; // 6 s of packets at 20 ms, ending well before the drain grace
    let running = call.spawn();
    let waited = Instant::now();
    while allocations(3, metrics_port) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the call never allocated on relay3:\n{}",
            ws.node_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let scale_in = Instant::now();
    let mut running = running;
    let (took, left_answers, call_running_then) = std::thread::scope(|s| {
        let apply = s.spawn(|| ws.apply(1));
        // While the apply waits for the drain, the draining nodes leave the answers.
        let (_, left) = controller.until(
            "relay2 and relay3 out of the ICE answers",
            Duration::from_secs(5),
            |a| offers_node(a, 1, turn_port) && !(2..=3).any(|n| offers_node(a, n, turn_port)),
        );
        let call_running = running.exited().is_none();
        (apply.join().expect("apply"), left, call_running)
    });
    steps.push((
        "draining nodes out of the ICE answers after the scale-in began".into(),
        left_answers,
    ));
    assert!(
        call_running_then,
        "the call ended before the draining node left the answers: the test shows nothing"
    );
    steps.push((
        "apply node_count=1 with a call on relay3 (returns after the drain)".into(),
        took,
    ));
    let call_ended = running.exited().is_some();
    let run = call.finish(running, Duration::from_secs(60));
    let report = call.check_clean(&run);
    assert!(
        call_ended,
        "the apply returned while the call on the drained node was still running ({:?} after it started)",
        scale_in.elapsed()
    );
    assert_eq!(report.sent_msgs, report.recv_msgs);
    for (node, pid) in &pids_before {
        let expect_alive = node == "relay1";
        assert_eq!(alive(*pid), expect_alive, "{node} (pid {pid}) running");
    }
    // An exited node leaves the registry when its heartbeats stop (missed heartbeats,
    // at the latest its 5 s lease).
    let exited = Instant::now();
    while region_nodes(&controller) != ["relay1"] {
        assert!(
            exited.elapsed() < Duration::from_secs(8),
            "removed nodes still registered: {:?}",
            region_nodes(&controller)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    steps.push((
        "removed nodes out of the registry after apply returned".into(),
        exited.elapsed(),
    ));
    let answer = controller.ice_servers();
    assert!(offers_node(&answer, 1, turn_port) && !offers_node(&answer, 3, turn_port));
    let relay3_log =
        std::fs::read_to_string(ws.node_dir("relay3").join("relay.log")).expect("test setup");
    assert!(
        relay3_log.to_lowercase().contains("drain"),
        "relay3 drained before it exited:\n{relay3_log}"
    );

    // destroy: every node stops and the region leaves the controller.
    let took = ws.destroy();
    steps.push(("destroy".into(), took));
    let destroyed = Instant::now();
    while !region_nodes(&controller).is_empty() {
        assert!(
            destroyed.elapsed() < Duration::from_secs(8),
            "nodes still registered after destroy: {:?}",
            region_nodes(&controller)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    steps.push((
        "the last node out of the registry after destroy returned".into(),
        destroyed.elapsed(),
    ));
    let (status, _) = controller.admin("GET", &format!("/v1/admin/regions/{REGION}"), None);
    assert_eq!(status, 404, "the region was removed");
    for (node, pid) in &pids_before {
        assert!(
            !alive(*pid),
            "{node} (pid {pid}) still running after destroy"
        );
    }

    steps.print();
}

/// The timed steps, each printed as it completes and all of them at the end.
struct Steps(Vec<(String, Duration)>);

impl Steps {
    fn push(&mut self, (step, took): (String, Duration)) {
        eprintln!("step: {:>8.2} s  {step}", took.as_secs_f64());
        self.0.push((step, took));
    }

    fn print(&self) {
        println!("terraform/examples/local, step timings:");
        for (step, took) in &self.0 {
            println!("  {:>8.2} s  {step}", took.as_secs_f64());
        }
    }
}
