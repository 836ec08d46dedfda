//! Supervision of a running relay: signals, drain, reload, worker death. A
//! program composes the process from pieces on its own tokio runtime
//! ([`Signals::install`], [`crate::ops::OpsListener`], [`Relay::start`],
//! [`announce`], [`supervise`]); the `nexrtc` binary does, with or without its
//! edge agent.
//!
//! * SIGTERM / SIGINT: drain. New Allocates get 300 ALTERNATE-SERVER (with
//!   `--alternate-server`) or 508; existing allocations keep relaying; the
//!   process exits when none is left or after `--drain-grace` (30 s when
//!   started from a terminal, else 300 s), logging a countdown every few
//!   seconds meanwhile. A second SIGTERM / SIGINT (Ctrl-C) exits at once.
//! * SIGHUP: re-read the TLS certificate and the secrets (the `--secrets-file`
//!   and the static secrets; not when a controller pushes them); a failed
//!   reload keeps what was loaded before. Nothing else of the configuration
//!   is reloaded.
//! * A drain ordered from outside (the edge agent applying a controller's
//!   order) is handled like SIGTERM: the grace period starts, and the process
//!   exits when the relay is empty.
//! * A worker thread that stops ends the supervision ([`Exit::WorkerStopped`]).
//!
//! Only the control side runs on tokio; the data plane never touches it (see
//! the `worker` module).

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use crate::config::RelayConfig;
use crate::control::Relay;
use crate::error::RunError;
use crate::sys::unix_now;

/// How the relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// Drained: no allocation left.
    Drained,
    /// `--drain-grace` passed with allocations still alive.
    GraceElapsed { allocations: usize },
    /// A second stop signal during the drain.
    Forced { allocations: usize },
    /// A worker thread stopped on its own (a bug): the supervisor should restart us.
    WorkerStopped,
}

impl Exit {
    /// A planned end (exit code 0) rather than a failure.
    pub fn is_clean(self) -> bool {
        !matches!(self, Exit::WorkerStopped)
    }

    /// Logs how the relay ended.
    fn log(self) {
        match self {
            Exit::Drained => tracing::info!("drained; exiting"),
            Exit::GraceElapsed { allocations } => {
                tracing::warn!(allocations, "drain grace elapsed; exiting")
            }
            Exit::Forced { allocations } => {
                tracing::warn!(allocations, "second stop signal; exiting")
            }
            Exit::WorkerStopped => tracing::error!("a worker thread stopped; exiting"),
        }
    }
}

/// The signal handlers [`supervise`] reacts to: SIGTERM, SIGINT, SIGHUP.
/// Installed inside a tokio runtime, before the relay starts (a signal
/// arriving meanwhile is kept for it).
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, RunError> {
        let kind = |k| signal(k).map_err(RunError::Signals);
        Ok(Signals {
            term: kind(SignalKind::terminate())?,
            int: kind(SignalKind::interrupt())?,
            hup: kind(SignalKind::hangup())?,
        })
    }
}

/// Logs what a started relay listens on and relays from.
pub fn announce(relay: &Relay, config: &RelayConfig) {
    for b in relay.bound() {
        tracing::info!(transport = b.transport.as_str(), addr = %b.addr, "listening");
    }
    for r in config.relay_addresses() {
        tracing::info!(
            bind = %r.bind,
            advertised = %r.advertised,
            ports = %format!("{}-{}", config.ports.start(), config.ports.end()),
            "relaying"
        );
    }
    if let Some(crate::tls::CertSource::SelfSigned { names }) = &config.tls {
        tracing::warn!(
            ?names,
            "TLS uses a self-signed certificate (development only): set --cert and --pkey"
        );
    }
}

/// Watches the relay until it should exit: drains on SIGTERM / SIGINT or on
/// an order from outside, exits on a second signal, when drained, when the
/// grace runs out or when a worker stops; reloads on SIGHUP (the secrets
/// only when no controller pushes them). Logs the exit and returns it; the
/// caller then stops what it composed around the relay and drops it.
pub async fn supervise(relay: &Relay, config: &RelayConfig, signals: &mut Signals) -> Exit {
    let exit = watch(relay, config, signals).await;
    exit.log();
    exit
}

/// How often the drain countdown is logged.
const COUNTDOWN_EVERY: Duration = Duration::from_secs(5);

async fn watch(relay: &Relay, config: &RelayConfig, signals: &mut Signals) -> Exit {
    // With a controller the secrets are its own: SIGHUP reloads only the certificate.
    let reload_secrets = !config.credentials.pushed;
    let monitor = relay.monitor();
    let workers = monitor.workers_alive();
    let mut deadline: Option<Instant> = None;
    let mut next_countdown = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let stop = tokio::select! {
            _ = signals.term.recv() => Some("SIGTERM"),
            _ = signals.int.recv() => Some("SIGINT"),
            _ = signals.hup.recv() => {
                reload(relay, config, reload_secrets);
                None
            }
            _ = tick.tick() => None,
        };
        if let Some(signal) = stop {
            if deadline.is_some() {
                return Exit::Forced {
                    allocations: relay.allocation_count(),
                };
            }
            relay.drain();
            deadline = Some(Instant::now() + config.drain_grace);
            tracing::info!(
                signal,
                allocations = relay.allocation_count(),
                grace_secs = config.drain_grace.as_secs(),
                "draining: no new allocations; send the signal again to exit now"
            );
        }
        if deadline.is_none() && relay.is_draining() {
            // Drain ordered from outside (the controller, through the agent):
            // the grace period, or the order's deadline when that is sooner.
            let mut grace = config.drain_grace;
            if let Some(until) = relay.drain_deadline() {
                grace = grace.min(Duration::from_secs(until.saturating_sub(unix_now())));
            }
            deadline = Some(Instant::now() + grace);
            tracing::info!(
                allocations = relay.allocation_count(),
                grace_secs = grace.as_secs(),
                "draining on the controller's order"
            );
        }
        if monitor.workers_alive() < workers {
            return Exit::WorkerStopped;
        }
        if let Some(d) = deadline {
            let allocations = relay.allocation_count();
            if allocations == 0 {
                return Exit::Drained;
            }
            let now = Instant::now();
            if now >= d {
                return Exit::GraceElapsed { allocations };
            }
            if now >= next_countdown {
                next_countdown = now + COUNTDOWN_EVERY;
                let left = d.saturating_duration_since(now).as_secs_f64().ceil();
                tracing::info!(
                    "draining: {allocations} allocation{} left, exit in {left:.0} s; \
                     Ctrl-C (SIGINT or SIGTERM) again to stop now",
                    if allocations == 1 { "" } else { "s" }
                );
            }
        }
    }
}

fn reload(relay: &Relay, config: &RelayConfig, secrets: bool) {
    match relay.reload_tls() {
        Ok(true) => tracing::info!("TLS certificate reloaded"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one"),
    }
    if !secrets {
        return;
    }
    match config.credentials.load() {
        Ok(c) => {
            let tenants = c.tenant_count();
            relay.set_credentials(Arc::new(c));
            tracing::info!(tenants, "secrets reloaded");
        }
        Err(e) => tracing::error!(error = %e, "secrets reload failed; keeping the old ones"),
    }
}
