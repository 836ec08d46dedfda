//! The operations HTTP: `GET /metrics` (Prometheus text of the relay's [`registry`]),
//! `GET /healthz`, `GET /readyz`. A program serves it on its own tokio
//! runtime: [`OpsListener::bind`] first (a busy port stops the start before
//! the workers run), then [`OpsListener::serve`] once the relay runs, and
//! [`OpsServer::stop`] when it exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nexrtc_metrics::{Collector, Registry, CONTENT_TYPE};

use crate::control::Monitor;
use crate::error::RunError;
use crate::metrics;

/// The bound operations listener (`--metrics-listen`), not serving yet.
#[derive(Debug)]
pub struct OpsListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl OpsListener {
    /// Binds `addr` (inside a tokio runtime).
    pub async fn bind(addr: SocketAddr) -> Result<OpsListener, RunError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(OpsListener { listener, addr })
    }

    /// The address listened on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves [`router`] on a task of the current runtime until
    /// [`OpsServer::stop`]; `extra` (the QUIC relay's and the edge agent's registries) are
    /// registered into the relay's, so `/metrics` shows their families after the relay's.
    pub fn serve(self, monitor: Monitor, extra: impl IntoIterator<Item = Registry>) -> OpsServer {
        tracing::info!(addr = %self.addr, "operations HTTP: /metrics /healthz /readyz");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let registry = registry(monitor.clone());
        for extra in extra {
            registry.register(extra);
        }
        let app = router(monitor, registry);
        let listener = self.listener;
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "operations HTTP failed");
            }
        });
        OpsServer { stop, task }
    }
}

/// The operations HTTP being served.
#[derive(Debug)]
pub struct OpsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl OpsServer {
    /// Stops accepting now; the future waits (2 s at most) for open requests.
    pub fn stop(self) -> impl Future<Output = ()> {
        let _ = self.stop.send(());
        let task = self.task;
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

/// The relay's families, read from the workers' counters at each scrape.
struct RelayCollector {
    monitor: Monitor,
}

impl Collector for RelayCollector {
    fn collect(&self, scrape: &Registry) {
        let m = &self.monitor;
        metrics::collect(&m.stats(), &m.quic_traffic(), m.status(), scrape);
        if let Some(o) = m.xdp_outcomes() {
            let name = "nexrtc_relay_xdp_packets_total";
            scrape.describe(
                name,
                "Packets the XDP program saw, by outcome: relayed to a peer or a client in the kernel, or passed to userspace (no flow, no route, malformed, expired).",
            );
            for (outcome, n) in [
                ("to_peer", o.to_peer),
                ("to_client", o.to_client),
                ("no_flow", o.no_flow),
                ("no_route", o.no_route),
                ("malformed", o.malformed),
                ("expired", o.expired),
            ] {
                scrape.counter(name, &[("outcome", outcome)]).absolute(n);
            }
        }
    }
}

/// The relay's registry: its own families (read at each scrape), then what is registered
/// into it (the in-process edge agent's registry, see [`OpsListener::serve`]).
pub fn registry(monitor: Monitor) -> Registry {
    let registry = Registry::new();
    registry.register(monitor.request_times());
    registry.register_collector(Arc::new(RelayCollector { monitor }));
    registry.register_collector(nexrtc_metrics::process::collector());
    registry
}

#[derive(Clone)]
struct Ops {
    monitor: Monitor,
    registry: Registry,
}

/// The routes of the operations listener; `/metrics` renders `registry` (the relay's,
/// [`registry`]).
pub fn router(monitor: Monitor, registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Ops { monitor, registry })
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let body = ops.registry.render();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn healthz(State(Ops { monitor: m, .. }): State<Ops>) -> Response {
    if m.is_healthy() {
        (StatusCode::OK, "ok").into_response()
    } else {
        problem("unhealthy", "a worker thread has stopped or is stuck")
    }
}

async fn readyz(State(Ops { monitor: m, .. }): State<Ops>) -> Response {
    let s = m.status();
    if s.draining {
        problem("draining", "the relay is draining: no new allocations")
    } else if !m.is_healthy() {
        problem("unhealthy", "a worker thread has stopped or is stuck")
    } else if !s.ready {
        problem("starting", "the relay is not listening yet")
    } else {
        (StatusCode::OK, "ok").into_response()
    }
}

fn problem(code: &str, message: &str) -> Response {
    // Both strings are ours (no escaping needed); no serde_json for one line.
    let body = format!("{{\"code\":\"{code}\",\"message\":\"{message}\"}}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
