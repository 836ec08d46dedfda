//! `nexrtc-lab`: the multi-region lab by hand.
//!
//! * `nexrtc-lab up [--plan FILE] [--network NEXRTC [--geoip FILE] [--dir DIR]]` builds
//!   the lab (and, with `--network`, the NexRTC network in it: `nexrtc_lab::network`) and
//!   holds it until Ctrl-C or SIGTERM, printing how to enter each namespace; commands on
//!   standard input: `cut REGION`, `heal REGION`, `rtt A B MS`, `stats`.
//! * `nexrtc-lab rtt [--count N] [--json]` builds it, measures the RTT of every pair of
//!   regions against the plan, prints the forwarder's lateness, and tears it down.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nexrtc_lab::{measure_rtts, Lab, Network, NetworkConfig, Plan};

#[derive(Parser)]
#[command(
    name = "nexrtc-lab",
    about = "NexRTC multi-region lab in network namespaces"
)]
struct Cli {
    /// The plan (default: the committed lab/planet.toml).
    #[arg(long, global = true, value_name = "FILE")]
    plan: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab and hold it until Ctrl-C (commands on stdin: cut, heal, rtt, stats).
    Up {
        /// Also start the NexRTC network in it (3 etcd members and controllers, 2 relays
        /// per region) with this `nexrtc` binary.
        #[arg(long, value_name = "NEXRTC")]
        network: Option<PathBuf>,
        /// The controllers' GeoIP database (e.g. tests/lab/lab-city.mmdb).
        #[arg(long, value_name = "FILE", requires = "network")]
        geoip: Option<PathBuf>,
        /// Where the network's data, configuration and logs go.
        #[arg(long, value_name = "DIR", default_value = "/tmp/nexrtc-lab")]
        dir: PathBuf,
    },
    /// Measure every pair's RTT against the plan, then tear down.
    Rtt {
        #[arg(long, default_value_t = 20)]
        count: u32,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match &cli.plan {
        Some(path) => match Plan::load(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("nexrtc-lab: {e}");
                return ExitCode::from(2);
            }
        },
        None => Plan::builtin(),
    };
    let lab = match Lab::start(&plan) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("nexrtc-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Cmd::Up {
            network,
            geoip,
            dir,
        } => {
            let _net = match network {
                None => None,
                Some(nexrtc) => {
                    let mut config = NetworkConfig::new(nexrtc, dir);
                    config.geoip = geoip;
                    match Network::start(&lab, config) {
                        Ok(net) => {
                            describe_network(&net);
                            Some(net)
                        }
                        Err(e) => {
                            eprintln!("nexrtc-lab: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            };
            up(&lab)
        }
        Cmd::Rtt { count, json } => rtt(&lab, count, json),
    }
}

fn describe_network(net: &Network) {
    let keys = net.keys();
    println!("network up: controllers (plain HTTP, inside the lab):");
    for (region, url) in net.controllers() {
        println!("  {region:<16} {url}");
    }
    println!(
        "  admin key {}  ice key {}  tenant {}",
        keys.admin, keys.ice, keys.tenant
    );
    println!("  processes: {}", net.processes().join(", "));
}

fn up(lab: &Lab) -> ExitCode {
    println!(
        "lab up ({} regions); enter a namespace with:",
        lab.plan().regions.len()
    );
    for (name, prefix) in lab.describe() {
        println!("  {name:<16} {prefix} <command>");
    }
    println!("ready");
    // Ends at EOF or on a signal (the default action kills the process; the namespaces
    // go with it, see the crate docs).
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let done = match words.as_slice() {
            ["cut", region] => lab.cut(region, true).map(|_| "cut".to_owned()),
            ["heal", region] => lab.cut(region, false).map(|_| "healed".to_owned()),
            ["rtt", a, b, ms] => match ms.parse::<f64>() {
                Ok(ms) => lab.set_rtt(a, b, ms).map(|_| "set".to_owned()),
                Err(_) => Ok(format!("not a number of ms: {ms}")),
            },
            ["stats"] => Ok(serde_json::to_string(&lab.stats()).unwrap_or_default()),
            [] => continue,
            _ => Ok("commands: cut REGION, heal REGION, rtt A B MS, stats".to_owned()),
        };
        match done {
            Ok(text) => println!("{text}"),
            Err(e) => println!("error: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn rtt(lab: &Lab, count: u32, json: bool) -> ExitCode {
    let pairs = match measure_rtts(lab, count.clamp(1, 1000)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("nexrtc-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stats = lab.stats();
    if json {
        let doc = serde_json::json!({"pairs": pairs, "lateness_us": stats.map(|s| s.lateness_us)});
        println!("{doc}");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<14} {:<14} {:>8} {:>8} {:>7} {:>8}",
        "FROM", "TO", "PLAN ms", "MEDIAN", "ERROR", "ANSWERED"
    );
    for p in &pairs {
        let median = p.median_ms.map_or("-".to_owned(), |m| format!("{m:.2}"));
        let error = p
            .median_ms
            .map_or("-".to_owned(), |m| format!("{:+.2}", m - p.planned_ms));
        println!(
            "{:<14} {:<14} {:>8.1} {:>8} {:>7} {:>5}/{}",
            p.from, p.to, p.planned_ms, median, error, p.answered, p.sent
        );
    }
    if let Some(s) = stats {
        let l = s.lateness_us;
        println!(
            "forwarder lateness (write − due) over {} packets: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            l.count, l.p50, l.p90, l.p99, l.max
        );
    }
    ExitCode::SUCCESS
}
