//! A mock controller: the agent-facing routes of `nexrtc_edge_agent::wire`
//! on 127.0.0.1, recording what it receives. Replicas share one [`Store`]
//! (leases, secrets, the event feed) the way controller replicas share etcd;
//! [`Replica::kill`] drops its listener and every open connection at once,
//! like a crashed process.

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseFrame, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use nexrtc_edge_agent::wire::*;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

pub const TOKEN: &str = "node-token-1";

/// What every replica sees: the "etcd" of the mock.
pub struct Store {
    pub heartbeat_interval_ms: u64,
    pub lease_ttl_secs: u64,
    /// Heartbeat answers say `"state": "draining"` (the controller's drain order).
    pub draining: std::sync::atomic::AtomicBool,
    leases: Mutex<HashSet<String>>,
    next_lease: AtomicUsize,
    pub secrets: Mutex<Secrets>,
    pub revocations: Mutex<Revocations>,
    pub probe_targets: Mutex<Vec<ProbeTarget>>,
    feed: broadcast::Sender<(String, String)>,
}

impl Store {
    pub fn new(heartbeat_interval_ms: u64, secrets: Secrets) -> Arc<Store> {
        Arc::new(Store {
            heartbeat_interval_ms,
            lease_ttl_secs: 5,
            draining: Default::default(),
            leases: Mutex::new(HashSet::new()),
            next_lease: AtomicUsize::new(1),
            secrets: Mutex::new(secrets),
            revocations: Mutex::new(Revocations::default()),
            probe_targets: Mutex::new(Vec::new()),
            feed: broadcast::channel(64).0,
        })
    }

    /// Every lease expires (as if etcd had lost them).
    pub fn expire_all(&self) {
        self.leases.lock().unwrap().clear();
    }

    /// Pushes `event` to every open stream (and keeps secrets/revocations as state).
    pub fn push(&self, event: &Event) {
        match event {
            Event::Secrets(s) => *self.secrets.lock().unwrap() = s.clone(),
            Event::Revocations(r) => *self.revocations.lock().unwrap() = r.clone(),
            _ => {}
        }
        self.push_raw(event.name(), &event.data());
    }

    pub fn push_raw(&self, name: &str, data: &str) {
        let _ = self.feed.send((name.to_owned(), data.to_owned()));
    }
}

/// What one replica received.
#[derive(Default)]
pub struct Log {
    pub registrations: Mutex<Vec<RegisterRequest>>,
    pub heartbeats: Mutex<Vec<(Instant, Heartbeat)>>,
    pub probes: Mutex<Vec<ProbeReport>>,
    pub stream_opens: AtomicUsize,
    pub unauthorized: AtomicUsize,
}

impl Log {
    pub fn registrations(&self) -> usize {
        self.registrations.lock().unwrap().len()
    }
    pub fn heartbeats(&self) -> usize {
        self.heartbeats.lock().unwrap().len()
    }
    pub fn last_heartbeat(&self) -> Option<Heartbeat> {
        self.heartbeats
            .lock()
            .unwrap()
            .last()
            .map(|(_, h)| h.clone())
    }
}

#[derive(Clone)]
struct App {
    store: Arc<Store>,
    log: Arc<Log>,
}

/// One running replica.
pub struct Replica {
    pub url: nexrtc_edge_agent::Url,
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Replica {
    /// Serves plain HTTP on 127.0.0.1.
    pub async fn start(store: Arc<Store>) -> Replica {
        Replica::start_with(store, None).await
    }

    /// Serves HTTPS with `tls` when given.
    pub async fn start_with(store: Arc<Store>, tls: Option<tokio_rustls::TlsAcceptor>) -> Replica {
        let log = Arc::new(Log::default());
        let app = Router::new()
            .route("/v1/relays/register", post(register))
            .route("/v1/relays/heartbeat", post(heartbeat))
            .route("/v1/relays/probes", post(probes))
            .route("/v1/relays/events", get(events))
            .with_state(App {
                store,
                log: log.clone(),
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}/").parse().unwrap();
        let task = tokio::spawn(async move {
            // Dropping this set (when the task is aborted) aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let service = TowerToHyperService::new(app.clone());
                        let tls = tls.clone();
                        conns.spawn(async move {
                            let builder = auto::Builder::new(TokioExecutor::new());
                            match tls {
                                None => { let _ = builder.serve_connection(TokioIo::new(tcp), service).await; }
                                Some(acceptor) => {
                                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Replica {
            url,
            addr,
            log,
            task,
        }
    }

    /// Stops the replica at once: listener and every connection.
    pub async fn kill(&self) {
        self.task.abort();
        // Wait until the aborted task (and with it every connection) is gone.
        while !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `Some(401 answer)` unless the request carries the node token.
fn refused(app: &App, headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if ok {
        return None;
    }
    app.log.unauthorized.fetch_add(1, Ordering::Relaxed);
    Some(error(StatusCode::UNAUTHORIZED, "unauthorized"))
}

fn error(status: StatusCode, code: &str) -> Response {
    let body = ErrorBody {
        code: code.to_owned(),
        message: format!("mock: {code}"),
    };
    (status, Json(body)).into_response()
}

/// Like the controller (`deny_unknown_fields`, integer rates): `Err(400)`
/// for a body with a field it does not know.
fn strict<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
    allowed: &[&str],
) -> Result<T, Box<Response>> {
    let load_fields = [
        "allocations",
        "capacity",
        "pps_in",
        "pps_out",
        "bps_in",
        "bps_out",
        "cpu",
    ];
    let object = body.as_object().cloned().unwrap_or_default();
    let mut bad: Vec<String> = object
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect();
    if let Some(load) = object.get("load").and_then(|l| l.as_object()) {
        for (k, v) in load {
            if !load_fields.contains(&k.as_str()) || (k != "cpu" && !v.is_u64()) {
                bad.push(format!("load.{k}"));
            }
        }
    }
    if !bad.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("unknown_fields:{}", bad.join(",")),
        )));
    }
    serde_json::from_value(body)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "invalid_json")))
}

async fn register(
    State(app): State<App>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let allowed = [
        "node",
        "region",
        "addresses",
        "transports",
        "load",
        "state",
        "version",
    ];
    let req: RegisterRequest = match strict(body, &allowed) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    app.log.registrations.lock().unwrap().push(req);
    let s = &app.store;
    let lease = format!("lease-{}", s.next_lease.fetch_add(1, Ordering::Relaxed));
    s.leases.lock().unwrap().insert(lease.clone());
    let answer = RegisterResponse {
        lease: LeaseId(lease),
        lease_ttl_secs: s.lease_ttl_secs,
        heartbeat_interval_ms: s.heartbeat_interval_ms,
        tenants: s.secrets.lock().unwrap().tenants.clone(),
        revoked: s.revocations.lock().unwrap().revoked.clone(),
        probe_targets: s.probe_targets.lock().unwrap().clone(),
    };
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn heartbeat(
    State(app): State<App>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let hb: Heartbeat = match strict(body, &["region", "node", "lease", "load", "state"]) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let alive = app.store.leases.lock().unwrap().contains(&hb.lease.0);
    app.log
        .heartbeats
        .lock()
        .unwrap()
        .push((Instant::now(), hb));
    if !alive {
        return error(StatusCode::NOT_FOUND, LEASE_EXPIRED);
    }
    let draining = app.store.draining.load(Ordering::Relaxed);
    // The controller's answer, field for field.
    Json(serde_json::json!({
        "lease_ttl_secs": app.store.lease_ttl_secs,
        "heartbeat_interval_ms": app.store.heartbeat_interval_ms,
        "state": if draining { "draining" } else { "active" },
        "written": false,
    }))
    .into_response()
}

async fn probes(
    State(app): State<App>,
    headers: HeaderMap,
    Json(report): Json<ProbeReport>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    app.log.probes.lock().unwrap().push(report);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
struct Who {
    region: String,
    node: String,
}

async fn events(State(app): State<App>, headers: HeaderMap, Query(who): Query<Who>) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    assert!(!who.region.is_empty() && !who.node.is_empty());
    app.log.stream_opens.fetch_add(1, Ordering::Relaxed);
    // Subscribe before reading the state, so no change falls in between.
    let rx = app.store.feed.subscribe();
    let first = vec![
        Event::Secrets(app.store.secrets.lock().unwrap().clone()),
        Event::Revocations(app.store.revocations.lock().unwrap().clone()),
    ]
    .into_iter()
    .map(|e| (e.name().to_owned(), e.data()));
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let frames: std::pin::Pin<Box<dyn Stream<Item = Result<SseFrame, Infallible>> + Send>> =
        Box::pin(
            stream::iter(first)
                .chain(live)
                .map(|(name, data)| Ok(SseFrame::default().event(name).data(data))),
        );
    Sse::new(frames).into_response()
}
