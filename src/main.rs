//! `nexrtc`: the NexRTC Edge binary.
//!
//! * `nexrtc relay …` runs a TURN relay node; with `--controller` it also runs
//!   the edge agent in-process (registration, heartbeats, pushed secrets).
//! * `nexrtc agent …` runs the edge agent alone, beside another TURN server.
//! * `nexrtc controller …` runs the control plane: ICE-config API, admin API,
//!   relay registry (etcd, or an embedded store).
//! * `nexrtc dev` runs a whole network on loopback in one process (controller,
//!   relay with its agent, demo and status pages): see `dev.rs`.

#![forbid(unsafe_code)]

mod admin;
mod agent_relay;
mod config_reference;
mod dev;
mod node;
mod probe;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nexrtc_edge_agent::{AgentConfig, CoturnLoad, LogOnly, StunHealth};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "nexrtc",
    version,
    about = "NexRTC Edge: an open TURN relay network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TURN relay node (UDP, TCP and TLS; flags follow coturn's names).
    Relay(Box<RelayArgs>),
    /// Run the edge agent beside another TURN server (coturn): reports its load
    /// from its Prometheus endpoint (or only its health, with --turn-stun) and
    /// keeps it registered with the controller.
    Agent(Box<AgentArgs>),
    /// Run the controller: ICE-config API, admin API and relay registry (etcd,
    /// or an embedded in-memory store when no --etcd is given).
    Controller(Box<ControllerCommand>),
    /// Serve the relay zone over DNS (GeoDNS) as a process of its own: the controller's
    /// configuration and store, read only (no API, no signaling); /healthz, /readyz and
    /// /metrics over HTTP on --listen. Needs --dns-listen and --dns-zone.
    Dns(Box<DnsCommand>),
    /// Run a whole network on this machine for development: the controller (embedded
    /// store, 127.0.0.1:8080) with the demo page `/` and `/status`, and one relay with
    /// its edge agent (TURN 3478 UDP/TCP, TLS 5349 self-signed), all bootstrapped.
    Dev(Box<dev::DevArgs>),
    /// The controller's admin API: regions, relays (drain), tenants, secrets, keys,
    /// revocations (`--output json` for scripts).
    Admin(Box<admin::AdminArgs>),
    /// Measure this machine's RTT to every region's relays (STUN) and report it to the
    /// controller, which then ranks this network's clients by it (`--no-report`,
    /// `--stun host:port,…` to only measure).
    Probe(Box<probe::ProbeArgs>),
    /// Print the configuration reference (Markdown) or a default configuration
    /// file, generated from the code; `--write DIR` writes all three into the
    /// source tree at DIR.
    #[command(hide = true)]
    ConfigReference(config_reference::ReferenceArgs),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ControllerCommand {
    #[command(subcommand)]
    action: Option<ControllerAction>,
    #[command(flatten)]
    run: nexrtc_controller::ControllerArgs,
    /// Check the configuration as a start would (flags, --config file, TLS files,
    /// GeoIP database), print a one-line summary and exit: 0 when it is valid, 2
    /// when not. Listens on nothing and contacts no etcd.
    #[arg(long)]
    check_config: bool,
}

#[derive(clap::Args)]
struct DnsCommand {
    #[command(flatten)]
    run: nexrtc_controller::ControllerArgs,
    /// Check the configuration as a start would, print a one-line summary and exit: 0
    /// when it is valid, 2 when not.
    #[arg(long)]
    check_config: bool,
}

#[derive(Subcommand)]
enum ControllerAction {
    /// Write a first configuration with fresh API keys (admin, node, ice), a
    /// tenant and a region, to a new file of mode 0600 (never overwritten).
    Init(InitArgs),
}

#[derive(clap::Args)]
struct InitArgs {
    /// The file to create.
    #[arg(long, value_name = "FILE", default_value = "nexrtc-controller.toml")]
    out: std::path::PathBuf,
    /// The address the controller is to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The tenant to create (the ice key's).
    #[arg(long, value_name = "NAME", default_value = "acme")]
    tenant: String,
    /// The region to create.
    #[arg(long, value_name = "NAME", default_value = "eu-west")]
    region: String,
    /// The region's latitude.
    #[arg(
        long,
        value_name = "DEG",
        default_value_t = 53.35,
        allow_negative_numbers = true
    )]
    lat: f64,
    /// The region's longitude.
    #[arg(long, value_name = "DEG", default_value_t = -6.26, allow_negative_numbers = true)]
    lon: f64,
}

#[derive(clap::Args)]
struct RelayArgs {
    #[command(flatten)]
    settings: nexrtc_relay::Settings,
    /// With `--controller`: the in-process edge agent.
    #[command(flatten)]
    agent: Option<AgentConfig>,
    /// Check the configuration as a start would (flags, --config file, secrets
    /// file, TLS files, the agent's token file), print a one-line summary and
    /// exit: 0 when it is valid, 2 when not. Binds no socket, contacts no
    /// controller, starts no thread.
    #[arg(long)]
    check_config: bool,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The TURN server's Prometheus endpoint (coturn: `turnserver --prometheus`,
    /// port 9641): load from its allocations and traffic. Refused unless it serves
    /// coturn's metric families.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9641/metrics"
    )]
    turn_metrics: String,
    /// Instead of --turn-metrics, for a coturn without Prometheus (Debian's package):
    /// health only, from STUN Binding requests to its UDP listening address; the
    /// load reported is the host's CPU, allocations and traffic unknown (0).
    #[arg(long, value_name = "ADDR", conflicts_with = "turn_metrics")]
    turn_stun: Option<std::net::SocketAddr>,
    #[command(flatten)]
    agent: AgentConfig,
    /// Address of the agent's own /metrics (heartbeats, lease renewals, stream
    /// reconnects, probe RTTs).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9642")]
    metrics_listen: std::net::SocketAddr,
    /// Log JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Check the configuration as a start would (flags, token file, controller
    /// URLs, CA file), print a one-line summary and exit: 0 when it is valid, 2
    /// when not. Contacts nothing.
    #[arg(long)]
    check_config: bool,
}

/// Exit code of a refused configuration (the operator's to fix).
const EXIT_CONFIG: u8 = 2;
/// Exit code of a process that could not start or stopped on a failure.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Relay(args) => relay(*args),
        Command::Agent(args) => agent(*args),
        Command::Controller(args) => controller(*args),
        Command::Dns(args) => dns(*args),
        Command::Dev(args) => dev::dev(*args),
        Command::Admin(args) => admin::run(*args),
        Command::Probe(args) => probe::run(*args),
        Command::ConfigReference(args) => config_reference::run(args),
    }
}

fn controller(command: ControllerCommand) -> ExitCode {
    let args = match command.action {
        Some(ControllerAction::Init(init)) => return controller_init(init),
        None => command.run,
    };
    serve_controller_config("controller", args, command.check_config, |config| {
        Box::pin(nexrtc_controller::run(config, stop_signal()))
    })
}

fn dns(command: DnsCommand) -> ExitCode {
    serve_controller_config("dns", command.run, command.check_config, |config| {
        Box::pin(nexrtc_controller::run_dns(config, stop_signal()))
    })
}

type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// `nexrtc controller` and `nexrtc dns`: load the configuration, check it or run `serve`.
fn serve_controller_config(
    name: &str,
    args: nexrtc_controller::ControllerArgs,
    check_config: bool,
    serve: impl FnOnce(nexrtc_controller::ControllerConfig) -> Serving,
) -> ExitCode {
    let config = match nexrtc_controller::ControllerConfig::load(args) {
        Ok(c) if name == "dns" && c.dns.is_none() => {
            eprintln!(
                "nexrtc dns: invalid configuration: set dns_listen and dns_zone (--dns-listen, --dns-zone)"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexrtc {name}: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(config.log_json);
    if check_config {
        if let Err(e) = nexrtc_controller::server::check_files(&config) {
            eprintln!("nexrtc {name}: invalid configuration: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
        println!("nexrtc {name}: configuration OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(serve(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("nexrtc {name}: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn controller_init(args: InitArgs) -> ExitCode {
    use nexrtc_controller::init::{write_config, InitError, InitOptions};
    let options = InitOptions {
        listen: args.listen,
        tenant: args.tenant,
        region: (args.region, args.lat, args.lon),
        ..InitOptions::default()
    };
    match write_config(&args.out, &options) {
        Ok(()) => {
            let out = args.out.display();
            println!(
                "wrote {out} (mode 0600): admin, node and ice keys, tenant {:?}, region {:?}",
                options.tenant, options.region.0
            );
            println!("start the controller: nexrtc controller --config {out}");
            println!("start a relay:        nexrtc relay --controller http://{} --node-token-file {out} --region {} …", options.listen, options.region.0);
            ExitCode::SUCCESS
        }
        Err(e @ (InitError::Exists(_) | InitError::Invalid(_))) => {
            eprintln!("nexrtc controller init: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("nexrtc controller init: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn relay(mut args: RelayArgs) -> ExitCode {
    // With a controller, the tenant secrets come from it.
    args.settings.secrets_pushed = args.agent.is_some();
    if let Some(Err(e)) = args.agent.as_mut().map(AgentConfig::load_node_token_file) {
        eprintln!("nexrtc relay: invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let config = match nexrtc_relay::RelayConfig::load(args.settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexrtc relay: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(config.log_json);
    if args.check_config {
        return relay_check(&config, args.agent);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), realm = %config.core.realm, "starting relay");
    let agent = args.agent;
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))
        .and_then(|runtime| {
            runtime.block_on(async move {
                // The agent's registry is composed into the relay's /metrics.
                let node = node::RelayNode::start(config, agent)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(node.run().await)
            })
        });
    match result {
        Ok(exit) if exit.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            // Logs go to stderr: one line, with the cause (errors carry their source's text).
            tracing::error!("nexrtc relay: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `nexrtc relay --check-config`: what a start checks before its first socket.
fn relay_check(config: &nexrtc_relay::RelayConfig, agent: Option<AgentConfig>) -> ExitCode {
    let refused = |e: &dyn std::fmt::Display| {
        eprintln!("nexrtc relay: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    };
    if let Err(e) = config.check_files() {
        return refused(&e);
    }
    let mut line = config.summary();
    if let Some(mut agent) = agent {
        if agent.advertise.is_empty() {
            agent.advertise = node::relay_advertised(config);
        }
        if let Err(e) = agent.check() {
            return refused(&format!("cannot start the edge agent: {e}"));
        }
        line.push_str(&format!("; edge agent: {}", agent.summary()));
    }
    println!("nexrtc relay: configuration OK: {line}");
    ExitCode::SUCCESS
}

fn agent(mut args: AgentArgs) -> ExitCode {
    init_logging(args.log_json);
    if let Err(e) = args.agent.load_node_token_file() {
        eprintln!("nexrtc agent: invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.check_config {
        let checked = match args.agent.controllers.is_empty() {
            true => Err("--controller, --node-token and --region are required".to_owned()),
            false => args.agent.check().map_err(|e| e.to_string()),
        };
        if let Err(e) = checked {
            eprintln!("nexrtc agent: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        let load = match args.turn_stun {
            Some(addr) => format!("health from STUN Binding to {addr}"),
            None => format!("load from {}", args.turn_metrics),
        };
        println!(
            "nexrtc agent: configuration OK: {}; {load}; metrics on {}",
            args.agent.summary(),
            args.metrics_listen
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("nexrtc agent: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        anyhow::ensure!(
            !args.agent.controllers.is_empty(),
            "--controller, --node-token and --region are required"
        );
        let listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
        let handle = match args.turn_stun {
            Some(addr) => {
                tracing::info!(turn_stun = %addr, metrics = %args.metrics_listen, "edge agent running: health from STUN Binding, load unknown");
                nexrtc_edge_agent::spawn(args.agent, StunHealth::new(addr), LogOnly)?
            }
            None => {
                let load = CoturnLoad::new(&args.turn_metrics, args.agent.capacity)?;
                tracing::info!(turn_metrics = %args.turn_metrics, metrics = %args.metrics_listen, "edge agent running");
                nexrtc_edge_agent::spawn(args.agent, load, LogOnly)?
            }
        };
        // The agent's families and this process's.
        let registry = nexrtc_metrics::Registry::new();
        registry.register_collector(nexrtc_metrics::process::collector());
        registry.register(handle.metrics().clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { registry.render() }
            }),
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal())
            .await?;
        // Stopped on purpose (SIGTERM/SIGINT): the relay beside us is going away,
        // so it leaves the controller's registry now rather than when its lease ends.
        handle.leave().await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("nexrtc agent: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Whether logs are coloured: on a terminal, unless `NO_COLOR` is set (no-color.org).
fn colour(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

/// `RUST_LOG` filters (default `info`); `--log-json` writes JSON lines. Logs go
/// to stderr, in colour only when it is a terminal and `NO_COLOR` is unset or
/// empty (no escape codes in a log file or a pipe).
fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(super::colour(true, false));
        assert!(!super::colour(false, false), "a file or a pipe");
        assert!(!super::colour(true, true), "NO_COLOR");
    }
}
