//! The relay process: start the workers and the operations HTTP, then react to
//! signals until the relay has drained.
//!
//! * SIGTERM / SIGINT: drain. New Allocates get 300 ALTERNATE-SERVER (with
//!   `--alternate-server`) or 508; existing allocations keep relaying; the
//!   process exits when none is left or after `--drain-grace` (30 s when
//!   started from a terminal, else 300 s), logging a countdown every few
//!   seconds meanwhile. A second SIGTERM / SIGINT (Ctrl-C) exits at once.
//! * SIGHUP: re-read the TLS certificate and the secrets (the `--secrets-file`
//!   and the static secrets); a failed reload keeps what was loaded before.
//!   Nothing else of the configuration is reloaded.
//!
//! * A drain ordered from outside (the edge agent applying a controller's
//!   order) is handled like SIGTERM: the grace period starts, and the process
//!   exits when the relay is empty.
//!
//! The control side runs on a one-thread tokio runtime; the data plane never
//! touches it (see [`crate::worker`]). A program embedding the relay (the
//! `nexrtc` binary with its edge agent) adds to it with [`run_with`].

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::config::RelayConfig;
use crate::control::{Relay, StartError};
use crate::metrics;

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
}

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr} for metrics: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the control runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start {what}: {message}")]
    Attach { what: &'static str, message: String },
}

/// What a program embedding the relay adds to it once it listens (the edge
/// agent): kept until the relay exits.
pub struct Extension {
    /// What the extension is, for errors and logs.
    pub name: &'static str,
    /// Kept alive while the relay runs, dropped (stopping the extension's
    /// tasks) before the relay stops.
    pub guard: Box<dyn std::any::Any + Send>,
    /// The extension's own metrics, registered into the relay's registry: `/metrics`
    /// shows its families after the relay's.
    pub metrics: Option<nexrtc_metrics::Registry>,
    /// The extension supplies the secrets (a controller pushes them): SIGHUP
    /// then reloads only the certificate.
    pub owns_secrets: bool,
}

/// Why an extension could not start.
pub type AttachError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the relay until it has drained (blocks the calling thread).
pub fn run(config: RelayConfig) -> Result<Exit, RunError> {
    run_with(config, |_| Ok(None))
}

/// [`run`], with `attach` called once the relay listens, inside the control
/// runtime (so it may spawn tokio tasks), to start an [`Extension`].
pub fn run_with(
    config: RelayConfig,
    attach: impl FnOnce(&Arc<Relay>) -> Result<Option<Extension>, AttachError>,
) -> Result<Exit, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve(config, attach))
}

async fn serve(
    config: RelayConfig,
    attach: impl FnOnce(&Arc<Relay>) -> Result<Option<Extension>, AttachError>,
) -> Result<Exit, RunError> {
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let addr = config.metrics_listen;
    let http = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Metrics { addr, source })?;
    let http_addr = http.local_addr().unwrap_or(addr);

    let relay = Arc::new(Relay::start(&config)?);
    let extension = attach(&relay).map_err(|e| RunError::Attach {
        what: "the relay's extension",
        message: e.to_string(),
    })?;
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
    tracing::info!(addr = %http_addr, "operations HTTP: /metrics /healthz /readyz");

    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = metrics::registry(relay.monitor());
    if let Some(extra) = extension.as_ref().and_then(|e| e.metrics.clone()) {
        registry.register(extra);
    }
    let app = metrics::router(relay.monitor(), registry);
    let reload_secrets = !extension.as_ref().is_some_and(|e| e.owns_secrets);
    let http_task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(http, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "operations HTTP failed");
        }
    });

    let exit = watch(
        &relay,
        &config,
        reload_secrets,
        &mut term,
        &mut int,
        &mut hup,
    )
    .await;
    match exit {
        Exit::Drained => tracing::info!("drained; exiting"),
        Exit::GraceElapsed { allocations } => {
            tracing::warn!(allocations, "drain grace elapsed; exiting")
        }
        Exit::Forced { allocations } => tracing::warn!(allocations, "second stop signal; exiting"),
        Exit::WorkerStopped => tracing::error!("a worker thread stopped; exiting"),
    }
    let _ = stop_http.send(());
    drop(extension);
    // The extension's tasks held clones of the relay; whichever is dropped
    // last stops the workers (Relay's Drop joins them).
    drop(relay);
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    Ok(exit)
}

/// How often the drain countdown is logged.
const COUNTDOWN_EVERY: Duration = Duration::from_secs(5);

async fn watch(
    relay: &Relay,
    config: &RelayConfig,
    reload_secrets: bool,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
    hup: &mut tokio::signal::unix::Signal,
) -> Exit {
    let monitor = relay.monitor();
    let workers = monitor.workers_alive();
    let mut deadline: Option<Instant> = None;
    let mut next_countdown = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let stop = tokio::select! {
            _ = term.recv() => Some("SIGTERM"),
            _ = int.recv() => Some("SIGINT"),
            _ = hup.recv() => {
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
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                grace = grace.min(Duration::from_secs(until.saturating_sub(now)));
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
