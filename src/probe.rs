//! `nexrtc probe`: measure this machine's RTT to every region's relays (STUN Binding over
//! UDP) and report it to the controller, which then ranks this network's clients (its /24
//! or /48) by it instead of by GeoIP. `--no-report` only measures; `--stun` measures given
//! addresses without a controller. The library behind it is
//! `nexrtc_edge_agent::client_probe`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use nexrtc_edge_agent::client::{Backoff, ClientConfig};
use nexrtc_edge_agent::client_probe::{self, Measurement};
use nexrtc_edge_agent::probe::{measure, ProbeSettings};
use nexrtc_edge_agent::wire::ClientProbeAnswer;
use nexrtc_edge_agent::{ControllerClient, Url};
use serde_json::json;

/// Exit code of a refused configuration (as the other commands).
const EXIT_CONFIG: u8 = 2;

#[derive(Args)]
pub struct ProbeArgs {
    /// Controller base URL(s), comma-separated (tried in turn).
    #[arg(
        long,
        value_name = "URL",
        env = "NEXRTC_CONTROLLER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    controller: Vec<Url>,
    /// An API key with the `ice` scope, or a client token.
    #[arg(
        long,
        value_name = "KEY",
        env = "NEXRTC_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Measure these STUN servers (`host:port` or `name=host:port`, comma-separated)
    /// instead of the controller's targets; nothing is reported.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    stun: Vec<String>,
    /// Measure the controller's targets but do not report.
    #[arg(long)]
    no_report: bool,
    /// Binding requests per target.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    count: u32,
    /// Mean time between two requests to one target, in ms.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    spacing_ms: u64,
    /// The local address to measure and report from (a multi-homed host: the controller
    /// counts the report for this address's network).
    #[arg(long, value_name = "IP")]
    bind: Option<std::net::IpAddr>,
    /// PEM CA certificate(s) to trust for the controller, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// How to print the results.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A table for people.
    Text,
    /// One JSON object.
    Json,
}

pub fn run(args: ProbeArgs) -> ExitCode {
    let settings = ProbeSettings {
        count: args.count,
        spacing: Duration::from_millis(args.spacing_ms),
        bind: args.bind,
        ..ProbeSettings::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nexrtc probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.stun.is_empty() {
        let named: Vec<(String, String)> = (args.stun.iter())
            .map(|s| match s.split_once('=') {
                Some((name, addr)) => (name.to_owned(), addr.to_owned()),
                None => (s.clone(), s.clone()),
            })
            .collect();
        let addrs: Vec<String> = named.iter().map(|(_, a)| a.clone()).collect();
        let stats = runtime.block_on(measure(&addrs, settings));
        let measurements: Vec<Measurement> = (named.into_iter().zip(stats))
            .map(|((region, stun), stats)| Measurement {
                region,
                stun,
                stats,
            })
            .collect();
        print(&measurements, None, None, args.output);
        return ExitCode::SUCCESS;
    }
    let Some(key) = args.api_key.clone().filter(|k| !k.trim().is_empty()) else {
        eprintln!("nexrtc probe: --api-key (or NEXRTC_API_KEY) is required to ask the controller; --stun measures without one");
        return ExitCode::from(EXIT_CONFIG);
    };
    let client = match ControllerClient::new(&ClientConfig {
        controllers: args.controller.clone(),
        token: key,
        trust: Default::default(),
        ca_file: args.ca_file.clone(),
        request_timeout: Duration::from_secs(5),
        backoff: Backoff::default(),
        local_address: args.bind,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexrtc probe: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let outcome = runtime.block_on(async {
        let targets = client_probe::targets(&client).await?;
        let measurements = client_probe::measure_targets(&targets.targets, settings).await;
        let answer = match args.no_report {
            true => None,
            false => {
                let results = client_probe::results(&measurements);
                Some(client_probe::report(&client, results).await?)
            }
        };
        Ok::<_, nexrtc_edge_agent::CallError>((targets.network, measurements, answer))
    });
    match outcome {
        Ok((network, measurements, answer)) => {
            print(
                &measurements,
                network.as_deref(),
                answer.as_ref(),
                args.output,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nexrtc probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn print(
    measurements: &[Measurement],
    network: Option<&str>,
    answer: Option<&ClientProbeAnswer>,
    output: Output,
) {
    let network = answer.map(|a| a.network.as_str()).or(network);
    let home = answer.and_then(|a| a.home.as_deref());
    match output {
        Output::Json => {
            let results: Vec<_> = (measurements.iter())
                .map(|m| {
                    json!({
                        "region": m.region,
                        "stun": m.stun,
                        "rtt_ms": m.stats.median().map(ms),
                        "min_ms": m.stats.rtts.iter().min().copied().map(ms),
                        "loss": m.stats.loss(),
                        "sent": m.stats.sent,
                    })
                })
                .collect();
            let doc = json!({
                "network": network,
                "reported": answer.is_some(),
                "home": home,
                "results": results,
            });
            println!("{doc}");
        }
        Output::Text => {
            println!(
                "{:<16} {:<28} {:>10} {:>6}",
                "REGION", "STUN", "RTT ms", "LOSS"
            );
            for m in measurements {
                let rtt = m
                    .stats
                    .median()
                    .map_or("-".to_owned(), |d| format!("{:.2}", ms(d)));
                let loss = format!("{:.0}%", m.stats.loss() * 100.0);
                println!("{:<16} {:<28} {:>10} {:>6}", m.region, m.stun, rtt, loss);
            }
            match (answer, network) {
                (Some(a), _) => println!(
                    "reported for {} ({} results); home region: {}",
                    a.network,
                    a.accepted,
                    a.home.as_deref().unwrap_or("none")
                ),
                (None, Some(n)) => println!("network {n}; not reported"),
                (None, None) => {}
            }
        }
    }
}
