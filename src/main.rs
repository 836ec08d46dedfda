//! `nexrtc`: the NexRTC Edge binary. `nexrtc relay …` runs a TURN relay node.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    Relay(Box<nexrtc_relay::Settings>),
}

/// Exit code of a refused configuration (the operator's to fix).
const EXIT_CONFIG: u8 = 2;
/// Exit code of a relay that could not start or stopped on a failure.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Relay(settings) => relay(*settings),
    }
}

fn relay(settings: nexrtc_relay::Settings) -> ExitCode {
    let config = match nexrtc_relay::RelayConfig::load(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexrtc relay: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(config.log_json);
    match run(config) {
        Ok(exit) if exit.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            // Logs go to stderr: one line, with the cause (errors carry their source's text).
            tracing::error!("nexrtc relay: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(config: nexrtc_relay::RelayConfig) -> anyhow::Result<nexrtc_relay::Exit> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), realm = %config.core.realm, "starting relay");
    // RunError's messages already include their causes: no context chain to print.
    Ok(nexrtc_relay::run(config)?)
}

/// `RUST_LOG` filters (default `info`); `--log-json` writes JSON lines.
fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
