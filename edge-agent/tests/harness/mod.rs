//! The real controller for the agent's tests: `nexrtc_controller::router` on its
//! in-memory store, served on 127.0.0.1. Replicas share one [`Controller`] (its store
//! holds leases, tenants, revocations and relay records the way etcd does for real
//! replicas); [`Replica::kill`] drops a replica's listener and every open connection at
//! once, like a crashed process.
//!
//! In front of each replica's router sits a thin recorder ([`Log`]: what the replica was
//! sent, read with the shared `nexrtc_wire` types) and the faults the real controller
//! cannot produce on its own ([`Faults`]: an event stream refused, raw SSE frames injected).

#![allow(dead_code)] // each test file uses a different part of this module

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use nexrtc_controller::config::Bootstrap;
use nexrtc_controller::model::stored::{read, update};
use nexrtc_controller::model::{
    self, Endpoint, Load, RecordError, Region, RelayAddresses, RelayRecord, RelayState, Revocation,
    Secret, TenantRecord, Transport, REVOKED, TENANTS,
};
use nexrtc_controller::store::{LeaseId, MemoryStore, Store};
use nexrtc_controller::{AppState, Options};
use nexrtc_wire::{routes, Heartbeat, Leave, ProbeReport, Registration};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

/// The node-scoped API key the agents use.
pub const TOKEN: &str = "nxk_node00000000000000000000000000000000000";
/// The tenant every controller starts with.
pub const TENANT: &str = "acme";
/// Regions of the catalogue.
pub const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What every replica sees: the controller's store (the "etcd" of the tests).
pub struct Controller {
    pub store: MemoryStore,
    options: Options,
}

impl Controller {
    /// A controller telling agents to heartbeat every `heartbeat_ms`, with tenant
    /// [`TENANT`] holding `secret`, the [`REGIONS`] and the node key [`TOKEN`]. Leases
    /// last a minute (at least three heartbeats) and no relay is dropped for missed
    /// heartbeats in that time: only a test ends a lease.
    pub async fn new(heartbeat_ms: u64, secret: &str) -> Controller {
        let store = MemoryStore::new();
        let bootstrap = Bootstrap {
            admin_key: None,
            node_key: Some(TOKEN.into()),
            ice_key: None,
            tenant: Some(TENANT.into()),
            tenant_secret: Some(secret.into()),
            cors_origins: Vec::new(),
            regions: REGIONS
                .iter()
                .map(|name| Region::new(*name, 0.0, 0.0))
                .collect(),
        };
        nexrtc_controller::server::bootstrap(&store, &bootstrap, unix_now())
            .await
            .expect("bootstrap");
        let heartbeat = Duration::from_millis(heartbeat_ms);
        let lease = (heartbeat * 3).max(Duration::from_secs(60));
        let options = Options {
            heartbeat_interval: heartbeat,
            lease_ttl: lease,
            relay_miss_after: lease,
            ..Options::default()
        };
        Controller { store, options }
    }

    fn dyn_store(&self) -> &dyn Store {
        &self.store
    }

    /// Replaces the tenant's secrets (newest first), as a rotation through the admin API
    /// on any replica would.
    pub async fn set_secrets(&self, tenant: &str, secrets: &[&str]) {
        let key = format!("{TENANTS}{tenant}");
        update(self.dyn_store(), &key, |mut t: TenantRecord| {
            t.secrets = (secrets.iter().enumerate())
                .map(|(i, s)| Secret {
                    id: format!("s{i}"),
                    value: (*s).to_owned(),
                    created_at: unix_now(),
                })
                .collect();
            Ok::<_, RecordError>(t)
        })
        .await
        .expect("tenant updated");
    }

    /// Revokes `username` of `tenant` until `until`.
    pub async fn revoke(&self, tenant: &str, username: &str, until: u64) {
        let record = Revocation {
            tenant: tenant.to_owned(),
            username: username.to_owned(),
            until,
            revoked_at: 0,
        };
        let key = model::revocation_key(tenant, username);
        self.store
            .put(&key, model::encode(&record), None)
            .await
            .expect("revocation stored");
        assert!(key.starts_with(REVOKED));
    }

    /// Another relay, active, answering STUN at `udp` (a probe target, or a drain
    /// order's alternate). Its record has no lease: it stays.
    pub async fn put_relay(&self, region: &str, node: &str, udp: SocketAddr) {
        let record = RelayRecord {
            node: node.to_owned(),
            region: region.to_owned(),
            addresses: RelayAddresses {
                udp: Some(Endpoint {
                    host: udp.ip().to_string(),
                    port: udp.port(),
                }),
                ..RelayAddresses::default()
            },
            transports: vec![Transport::Udp],
            load: Load::default(),
            state: RelayState::Active,
            version: String::new(),
            registered_at: unix_now(),
            updated_at: unix_now(),
            lease: 0,
            drain_deadline: None,
        };
        self.store
            .put(
                &RelayRecord::key(region, node),
                model::encode(&record),
                None,
            )
            .await
            .expect("relay stored");
    }

    /// A drain order for a registered relay, as `POST /v1/admin/relays/{region}/{node}/drain`
    /// gives it.
    pub async fn drain(&self, region: &str, node: &str, deadline: Option<u64>) {
        let key = RelayRecord::key(region, node);
        update(self.dyn_store(), &key, |mut r: RelayRecord| {
            r.state = RelayState::Draining;
            r.drain_deadline = deadline;
            Ok::<_, RecordError>(r)
        })
        .await
        .expect("relay drained");
    }

    /// The lease of a registered relay.
    pub async fn lease(&self, region: &str, node: &str) -> Option<i64> {
        let key = RelayRecord::key(region, node);
        let record = read::<RelayRecord>(self.dyn_store(), &key)
            .await
            .expect("store");
        record.map(|r| r.value.lease)
    }

    /// Ends a registered relay's lease now (as if etcd had lost it): its record goes, and
    /// its next heartbeat answers 404 `lease_expired`.
    pub async fn expire(&self, region: &str, node: &str) {
        let lease = self.lease(region, node).await.expect("a registered relay");
        self.store
            .revoke_lease(LeaseId(lease))
            .await
            .expect("lease revoked");
    }
}

/// What one replica was sent (requests it answered; with a refused token, only counted).
#[derive(Default)]
pub struct Log {
    /// Registrations it accepted.
    pub registrations: Mutex<Vec<Registration>>,
    /// Heartbeats with an accepted token, when they arrived (whatever the answer).
    pub heartbeats: Mutex<Vec<(Instant, Heartbeat)>>,
    /// Probe reports it accepted.
    pub probes: Mutex<Vec<ProbeReport>>,
    /// Leaves with an accepted token, and the status each was answered with.
    pub leaves: Mutex<Vec<(StatusCode, Leave)>>,
    /// Event streams it opened.
    pub stream_opens: AtomicUsize,
    /// Requests it refused with 401.
    pub unauthorized: AtomicUsize,
    /// Heartbeats it held without answering ([`Faults::hang_heartbeats`]).
    pub hung: AtomicUsize,
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
    pub fn leaves(&self) -> Vec<(StatusCode, Leave)> {
        self.leaves.lock().unwrap().clone()
    }
    pub fn stream_opens(&self) -> usize {
        self.stream_opens.load(Ordering::Relaxed)
    }
    pub fn unauthorized(&self) -> usize {
        self.unauthorized.load(Ordering::Relaxed)
    }
}

/// Faults of one replica that the real controller does not produce by itself.
pub struct Faults {
    /// Refuse the event stream with 503, as a replica whose stream endpoint is down.
    pub no_events: AtomicBool,
    /// Hold heartbeats without answering, as a replica whose store connection hangs.
    pub hang_heartbeats: AtomicBool,
    inject: broadcast::Sender<Bytes>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            no_events: AtomicBool::new(false),
            hang_heartbeats: AtomicBool::new(false),
            inject: broadcast::channel(64).0,
        }
    }
}

impl Faults {
    /// Sends one SSE event, as given, on every open event stream of the replica (between
    /// the controller's events): unknown names, malformed data, pings on demand.
    pub fn inject(&self, name: &str, data: &str) {
        let frame = format!("event: {name}\ndata: {data}\n\n");
        let _ = self.inject.send(Bytes::from(frame));
    }
}

#[derive(Clone)]
struct Front {
    log: Arc<Log>,
    faults: Arc<Faults>,
}

/// Records what the router is sent and answers, and applies the faults.
async fn front(State(front): State<Front>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let path = request.uri().path().to_owned();
    if path == routes::EVENTS && front.faults.no_events.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "no event stream here").into_response();
    }
    if path == routes::HEARTBEAT && front.faults.hang_heartbeats.load(Ordering::Relaxed) {
        front.log.hung.fetch_add(1, Ordering::Relaxed);
        std::future::pending::<()>().await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let injected = front.faults.inject.subscribe();
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let status = response.status();
    let log = &front.log;
    if status == StatusCode::UNAUTHORIZED {
        log.unauthorized.fetch_add(1, Ordering::Relaxed);
        return response;
    }
    match path.as_str() {
        routes::REGISTER if status == StatusCode::CREATED => {
            let r = serde_json::from_slice(&body).expect("a registration");
            log.registrations.lock().unwrap().push(r);
        }
        routes::HEARTBEAT => {
            if let Ok(h) = serde_json::from_slice(&body) {
                log.heartbeats.lock().unwrap().push((arrived, h));
            }
        }
        routes::LEAVE => {
            if let Ok(l) = serde_json::from_slice(&body) {
                log.leaves.lock().unwrap().push((status, l));
            }
        }
        routes::PROBES if status.is_success() => {
            let p = serde_json::from_slice(&body).expect("a probe report");
            log.probes.lock().unwrap().push(p);
        }
        routes::EVENTS if status == StatusCode::OK => {
            log.stream_opens.fetch_add(1, Ordering::Relaxed);
            let (parts, body) = response.into_parts();
            let extra = stream::unfold(injected, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(frame) => return Some((Ok::<_, Infallible>(frame), rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            let real = body
                .into_data_stream()
                .map(|chunk| chunk.map_err(axum::Error::new));
            let merged = stream::select(real, extra.map(|f| f.map_err(axum::Error::new)));
            return Response::from_parts(parts, Body::from_stream(merged));
        }
        _ => {}
    }
    response
}

/// One running replica.
pub struct Replica {
    pub url: nexrtc_edge_agent::Url,
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    pub faults: Arc<Faults>,
    pub state: AppState,
    task: JoinHandle<()>,
}

impl Replica {
    /// Serves plain HTTP on 127.0.0.1.
    pub async fn start(controller: &Controller) -> Replica {
        Replica::start_with(controller, None).await
    }

    /// Serves HTTPS with `tls` when given.
    pub async fn start_with(
        controller: &Controller,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Replica {
        let store: Arc<dyn Store> = Arc::new(controller.store.clone());
        let state = AppState::start(store, controller.options.clone()).await;
        let log = Arc::new(Log::default());
        let faults = Arc::new(Faults::default());
        let front_state = Front {
            log: log.clone(),
            faults: faults.clone(),
        };
        let app = nexrtc_controller::router(state.clone())
            .layer(middleware::from_fn_with_state(front_state, front));
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
                        let Ok((tcp, peer)) = accepted else { continue };
                        let app = app.clone().map_request(move |mut r: Request<_>| {
                            r.extensions_mut().insert(ConnectInfo(peer));
                            r
                        });
                        let service = TowerToHyperService::new(app);
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
            faults,
            state,
            task,
        }
    }

    /// Stops the replica at once: listener and every connection.
    pub async fn kill(&self) {
        self.task.abort();
        self.state.close();
        // Wait until the aborted task (and with it every connection) is gone.
        while !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
        self.state.close();
    }
}
