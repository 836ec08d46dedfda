//! `nexrtc dev`: a whole NexRTC Edge network in one process on loopback, for trying it
//! out and for the browser tests.
//!
//! * The controller on its embedded store, plain HTTP on `--http` (127.0.0.1:8080):
//!   the whole API, the demo page `/`, the operator page `/status`, and the dev-only
//!   `POST /dev/session`.
//! * One relay (TURN UDP/TCP on `--turn-port`, TLS on `--tls-port` with a self-signed
//!   certificate made at start, the QUIC relay on UDP `--tls-port` (as 443 serves TLS and
//!   QUIC in production), loopback peers allowed, `/metrics` on `--relay-metrics`) with
//!   its edge agent in-process, registered as `local/dev-1`.
//! * GeoDNS for the zone `nexrtc.test` on `--dns` (UDP and TCP, 127.0.0.1:5300):
//!   `turn.nexrtc.test` names the relay, as the ICE API ranks it.
//! * Bootstrapped: region `local`, tenant `dev` (its `cors_origins`: this server's own
//!   origin, `http://<--http>` and `http://localhost:<port>`), an API key (scopes `ice`, `client_ip`;
//!   printed, or fixed with `--api-key` / `NEXRTC_API_KEY`), an admin key (printed) and
//!   the agent's node key (internal).
//!
//! Threads: the controller and the relay's control side (its operations HTTP, its
//! supervision and its agent: [`crate::node::RelayNode`], as in `nexrtc relay`) share this
//! process's multi-thread tokio runtime; the relay's workers are threads of their own.
//! On SIGINT/SIGTERM the controller stops serving and the relay drains for at most
//! [`DRAIN_GRACE_SECS`], then the process exits 0; a relay that stops on a failure ends
//! the process with exit 1.
//!
//! Metrics: every component has a registry of its own (`nexrtc_metrics::Registry`), as in
//! the separate processes. The controller's `/metrics` renders the controller's; the
//! relay's `/metrics` renders the relay's, into which the agent's registry is registered
//! (the agent's `nexrtc_agent_*` families follow the relay's own).
//!
//! `POST /dev/session?room=R` mints, for a fresh participant (or for `&participant=P`,
//! which the demo page uses to refresh its room token), the ICE servers
//! (`POST /v1/ice-servers`), a room token (`POST /v1/rooms/{room}/tokens`) and a client
//! token for the participant (`POST /v1/client-tokens`: the page measures the relays with
//! `/nexrtc-probe.js` and reports through the public API with it) with a key
//! of its own (scope `ice`, not printed), by calling the API router in-process: no key
//! reaches the browser, and the printed API key's rate limit is not spent by pages.
//! `/dev/session` is rate limited per client address ([`SESSION_RATE`]).
//! `GET /v1/status` is served without a key in dev mode (the dev admin key is added to
//! requests that carry none).
//!
//! Every request must name this machine in `Host`: `localhost` or a loopback address,
//! with any port; anything else gets 421 `forbidden_host` (JSON). A web page whose name
//! an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name, so it can read
//! neither `/v1/status` nor `/dev/session`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nexrtc_controller::api::error::ApiError;
use nexrtc_controller::api::extract::Query;
use nexrtc_controller::config::{Bootstrap, FileConfig};
use nexrtc_controller::credentials::{self, key_hash, new_api_key, random_b64, random_id};
use nexrtc_controller::model::{self, KeyRecord, RateLimit, Scope, KEYS};
use nexrtc_controller::ratelimit::RateLimiter;
use nexrtc_controller::{AppState, ControllerArgs, ControllerConfig};
use nexrtc_edge_agent::AgentConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::node::RelayNode;

/// The demo page (`web/demo.html`).
const DEMO_HTML: &str = include_str!("../web/demo.html");

/// The region, tenant and node `nexrtc dev` creates.
pub const REGION: &str = "local";
pub const TENANT: &str = "dev";
pub const NODE: &str = "dev-1";
/// The zone `nexrtc dev` serves over DNS (a reserved name, RFC 6761: never on the internet).
pub const DNS_ZONE: &str = "nexrtc.test";

/// How long the relay drains at shutdown before it exits anyway.
const DRAIN_GRACE_SECS: u64 = 1;
/// How long startup waits for the relay's agent to register.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// A relay's record is rewritten at least this often (30 s outside dev mode).
const LOAD_REFRESH_SECS: u64 = 2;
/// Lifetime of the TURN credentials `/dev/session` mints (seconds).
const SESSION_TTL: u64 = 600;
/// `/dev/session` per client address: a page reloaded now and then, not a loop.
const SESSION_RATE: RateLimit = RateLimit {
    per_second: 2.0,
    burst: 20,
};

/// `nexrtc dev` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Controller HTTP: the API, the demo page and /status (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Relay TURN port, UDP and TCP.
    #[arg(long, value_name = "PORT", default_value_t = 3478)]
    pub turn_port: u16,
    /// Relay TURN-over-TLS port (self-signed certificate); the QUIC relay listens on the
    /// same number, UDP.
    #[arg(long, value_name = "PORT", default_value_t = 5349)]
    pub tls_port: u16,
    /// GeoDNS for the zone nexrtc.test (UDP and TCP; port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5300")]
    pub dns: SocketAddr,
    /// Relay /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9641")]
    pub relay_metrics: SocketAddr,
    /// Lowest relay port.
    #[arg(long, value_name = "PORT", default_value_t = 61000)]
    pub min_port: u16,
    /// Highest relay port.
    #[arg(long, value_name = "PORT", default_value_t = 65535)]
    pub max_port: u16,
    /// The dev tenant's API key (nxk_ and at least 32 characters) [default: random].
    #[arg(
        long,
        value_name = "KEY",
        env = "NEXRTC_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Lifetime of the room tokens `/dev/session` mints, in seconds (1 to 3600); the demo
    /// page refreshes its token on the open WebSocket before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub room_token_ttl: u64,
    /// Log JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// The keys of one dev run.
#[derive(Clone)]
struct Keys {
    api: String,
    admin: String,
    node: String,
    /// `/dev/session`'s own key (scope `ice`), never printed.
    session: String,
}

pub fn dev(args: DevArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let keys = Keys {
        api: args.api_key.clone().unwrap_or_else(new_api_key),
        admin: new_api_key(),
        node: new_api_key(),
        session: new_api_key(),
    };
    let configs = controller_config(&args, &keys).and_then(|c| Ok((c, relay_config(&args)?)));
    let (controller, relay) = match configs {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexrtc dev: invalid configuration: {e:#}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    super::init_logging(args.log_json);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args, keys, controller, relay)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("nexrtc dev: {e:#}");
            ExitCode::from(super::EXIT_FAILURE)
        }
    }
}

fn controller_config(args: &DevArgs, keys: &Keys) -> anyhow::Result<ControllerConfig> {
    anyhow::ensure!(
        args.http.ip().is_loopback(),
        "--http {}: nexrtc dev serves plain HTTP on loopback only",
        args.http
    );
    anyhow::ensure!(
        args.dns.ip().is_loopback(),
        "--dns {}: nexrtc dev serves DNS on loopback only",
        args.dns
    );
    let flags = ControllerArgs {
        listen: Some(args.http),
        default_region: Some(REGION.to_owned()),
        dns_listen: Some(args.dns),
        dns_zone: Some(DNS_ZONE.to_owned()),
        ..ControllerArgs::default()
    };
    let file = FileConfig {
        bootstrap: Bootstrap {
            admin_key: Some(keys.admin.clone()),
            node_key: Some(keys.node.clone()),
            ice_key: Some(keys.api.clone()),
            tenant: Some(TENANT.to_owned()),
            tenant_secret: Some(random_b64(32)),
            cors_origins: Vec::new(),
            regions: vec![nexrtc_geo_region()],
        },
        // The embedded store takes any write rate: keep relay records (and /status) fresh.
        load_refresh_secs: Some(LOAD_REFRESH_SECS),
        ..FileConfig::default()
    };
    ControllerConfig::build(flags, file).map_err(|e| match e {
        nexrtc_controller::ConfigError::Invalid {
            key: "bootstrap.ice_key",
            message,
        } => anyhow!("--api-key: {message}"),
        e => anyhow!(e),
    })
}

/// The origins of the pages served on `http`: the dev tenant allows exactly these (the
/// address as bound, and `localhost` for a loopback address).
fn page_origins(http: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{http}")];
    if http.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", http.port()));
    }
    origins
}

/// Region `local` (Frankfurt's coordinates; only one region, so they do not matter).
fn nexrtc_geo_region() -> nexrtc_controller::model::Region {
    nexrtc_controller::model::Region::new(REGION.to_owned(), 50.11, 8.68)
}

fn relay_config(args: &DevArgs) -> anyhow::Result<nexrtc_relay::RelayConfig> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let settings = nexrtc_relay::Settings {
        listening_ip: vec![loopback],
        relay_ip: vec![loopback],
        listening_port: Some(args.turn_port),
        tls_listening_port: Some(args.tls_port),
        quic_listen: Some(SocketAddr::new(loopback, args.tls_port)),
        min_port: Some(args.min_port),
        max_port: Some(args.max_port),
        realm: Some("nexrtc.dev".to_owned()),
        allow_loopback_peers: true,
        metrics_listen: Some(args.relay_metrics),
        drain_grace: Some(DRAIN_GRACE_SECS),
        log_json: args.log_json,
        secrets_pushed: true,
        ..nexrtc_relay::Settings::default()
    };
    Ok(nexrtc_relay::RelayConfig::load(settings)?)
}

async fn run(
    args: DevArgs,
    keys: Keys,
    controller: ControllerConfig,
    relay_config: nexrtc_relay::RelayConfig,
) -> anyhow::Result<()> {
    // The controller first: the agent registers with it.
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen on {}", args.http))?;
    let http = listener.local_addr()?;
    // The pages are served from here; their WebSocket sends this Origin.
    let mut bootstrap = controller.bootstrap.clone();
    bootstrap.cors_origins = page_origins(http);
    let store: Arc<dyn nexrtc_controller::store::Store> =
        Arc::new(nexrtc_controller::store::MemoryStore::new());
    nexrtc_controller::server::bootstrap(&*store, &bootstrap, controller.options.clock.unix_now())
        .await?;
    let session_key = KeyRecord {
        name: "dev session".to_owned(),
        tenant: Some(TENANT.to_owned()),
        scopes: vec![Scope::Ice],
        rate_limit: None,
        created_at: controller.options.clock.unix_now(),
    };
    let session_key_id = format!("{KEYS}{}", key_hash(&keys.session));
    (store.create(&session_key_id, model::encode(&session_key), None)).await?;
    let state = tokio::time::timeout(
        controller.startup_timeout,
        AppState::start(store, controller.options.clone()),
    )
    .await
    .map_err(|_| anyhow!("the embedded store gave no snapshot"))?;
    let dns = match controller.dns.clone() {
        Some(settings) => Some(
            nexrtc_controller::dns::DnsServer::start(settings, state.clone())
                .await
                .with_context(|| format!("cannot serve DNS on --dns {}", args.dns))?,
        ),
        None => None,
    };
    let api = nexrtc_controller::router(state.clone());
    let app = (api
        .clone()
        .merge(dev_routes(api, keys.session.clone(), args.room_token_ttl)))
    .layer(middleware::map_request_with_state(
        Arc::new(keys.admin.clone()),
        public_status,
    ))
    .layer(middleware::from_fn(loopback_host));
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let closing = state.clone();
    let limits = controller.http.clone();
    let metrics = state.metrics.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
            closing.close();
        };
        nexrtc_controller::http::serve(listener, None, app, limits, metrics, shutdown).await;
    });

    // The relay and its agent, on this runtime (the workers are threads of their own).
    let controller_url: nexrtc_edge_agent::Url = format!("http://{http}/").parse()?;
    let mut agent = AgentConfig::new(vec![controller_url], &keys.node, REGION);
    agent.node = Some(NODE.to_owned());
    agent.probe_interval = 0;
    let node = match RelayNode::start(relay_config, Some(agent)).await {
        Ok(node) => node,
        Err(e) => {
            let _ = stop_http.send(());
            return Err(anyhow!("the relay could not start: {e}"));
        }
    };
    let registered = wait_registered(&state).await;
    print_banner(
        http,
        &args,
        &keys,
        node.bound(),
        node.quic_addr(),
        dns.as_ref().map(|d| d.local_addr()),
        registered,
    );

    // Until a stop signal, or until the relay ends: it drains on the same signal (and may
    // notice it first), or stops on a failure.
    // The controller stops first (below): the relay has no one to leave.
    let mut relay = tokio::spawn(node.without_leave().run());
    let ended = tokio::select! {
        () = super::stop_signal() => None,
        exit = &mut relay => Some(exit),
    };
    tracing::info!(
        "stopping: controller, then the relay (drains for {DRAIN_GRACE_SECS} s at most)"
    );
    let _ = stop_http.send(());
    if tokio::time::timeout(Duration::from_secs(11), server)
        .await
        .is_err()
    {
        tracing::warn!("controller HTTP connections still open after 11 s");
    }
    state.close();
    drop(state);
    let exit = match ended {
        Some(exit) => exit,
        None => relay.await,
    };
    match exit {
        Ok(exit) if exit.is_clean() => Ok(()),
        Ok(exit) => Err(anyhow!("the relay stopped: {exit:?}")),
        Err(_) => Err(anyhow!("the relay's supervision panicked")),
    }
}

/// Waits (bounded) until the relay's agent has registered; whether it did.
async fn wait_registered(state: &AppState) -> bool {
    let id = format!("{REGION}/{NODE}");
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if state.view().relays.contains_key(&id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("the relay has not registered with the controller yet");
    false
}

/// Dev mode serves `GET /v1/status` without a key: requests that carry none get the dev
/// admin key.
async fn public_status(State(admin_key): State<Arc<String>>, mut request: Request) -> Request {
    if request.uri().path() == "/v1/status"
        && request.method() == Method::GET
        && !request.headers().contains_key(header::AUTHORIZATION)
    {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {admin_key}")) {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
    }
    request
}

/// Refuses requests whose `Host` (or HTTP/2 authority) is not `localhost` or a loopback
/// address, with any port: 421 `forbidden_host`.
async fn loopback_host(request: Request, next: Next) -> Response {
    let host = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    };
    if host.is_some_and(is_loopback_host) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "forbidden_host",
        "nexrtc dev answers only requests for localhost or a loopback address (Host header)",
    )
    .into_response()
}

/// `localhost`, `127.x.y.z` or `[::1]`, each with an optional `:port`.
fn is_loopback_host(host: &str) -> bool {
    let port_ok = |port: &str| port.is_empty() || port.parse::<u16>().is_ok();
    if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => "",
            p => match p.strip_prefix(':') {
                Some(port) if !port.is_empty() => port,
                _ => return false,
            },
        };
        return port_ok(port) && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) if !port.is_empty() => (name, port),
        Some(_) => return false,
        None => (host, ""),
    };
    port_ok(port)
        && (name.eq_ignore_ascii_case("localhost")
            || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()))
}

#[derive(Clone)]
struct DevState {
    /// Lifetime of the room tokens minted (`--room-token-ttl`).
    room_token_ttl: u64,
    api: Router,
    /// `/dev/session`'s key.
    api_key: Arc<String>,
    /// `/dev/session` per client address.
    limiter: Arc<RateLimiter>,
}

fn dev_routes(api: Router, session_key: String, room_token_ttl: u64) -> Router {
    let state = DevState {
        room_token_ttl,
        api,
        api_key: Arc::new(session_key),
        limiter: Arc::new(RateLimiter::default()),
    };
    Router::new()
        .route("/", get(demo_page))
        .route("/dev/session", post(session))
        .with_state(state)
}

async fn demo_page() -> Response {
    let content_type = HeaderValue::from_static("text/html; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], DEMO_HTML).into_response()
}

#[derive(Debug, Deserialize)]
struct SessionQuery {
    room: Option<String>,
    /// To refresh: the participant the page already is (default: a fresh one).
    participant: Option<String>,
}

/// `POST /dev/session?room=R[&participant=P]`: ICE servers and a room token for a fresh
/// participant, or for `P` (a page refreshing its room token before it expires).
async fn session(State(dev): State<DevState>, mut parts: Parts) -> Response {
    // The peer is the client: dev mode trusts no proxy.
    let peer = (parts.extensions.get::<ConnectInfo<SocketAddr>>()).map(|c| c.0.ip());
    let bucket = format!(
        "session:{}",
        peer.map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default()
    );
    if let Err(wait) = dev.limiter.check(&bucket, SESSION_RATE) {
        let limited = ApiError::rate_limited(wait);
        return ApiError {
            message: "too many sessions from this address; retry later".to_owned(),
            ..limited
        }
        .into_response();
    }
    let q = match Query::<SessionQuery>::from_request_parts(&mut parts, &()).await {
        Ok(Query(q)) => q,
        Err(e) => return e.into_response(),
    };
    let room = q.room.unwrap_or_else(|| "demo".to_owned());
    // The signaling service's own rule, checked before anything is minted.
    if !credentials::validate_room_name(&room) {
        return ApiError::invalid_request("room: 1-64 characters of A-Z a-z 0-9 . - _")
            .into_response();
    }
    let participant = match q.participant {
        Some(p) if credentials::validate_room_name(&p) => p,
        Some(_) => {
            return ApiError::invalid_request("participant: 1-64 characters of A-Z a-z 0-9 . - _")
                .into_response()
        }
        None => format!("guest-{}", &random_id()[..8]),
    };
    let ice_body = json!({"user": participant, "ttl": SESSION_TTL});
    let ice = match call(&dev, "/v1/ice-servers", &ice_body).await {
        Ok((StatusCode::CREATED, ice)) => ice,
        Ok((status, body)) => return (status, Json(body)).into_response(),
        Err(e) => return internal(e),
    };
    let token_body = json!({"participant": participant, "ttl": dev.room_token_ttl});
    let token = match call(&dev, &format!("/v1/rooms/{room}/tokens"), &token_body).await {
        Ok((StatusCode::CREATED, token)) => token,
        Ok((status, body)) => return (status, Json(body)).into_response(),
        Err(e) => return internal(e),
    };
    // A client token for the participant: what a browser presents to the public API
    // itself (the demo page measures the relays with /nexrtc-probe.js and reports).
    let client_body = json!({"user": participant});
    let client_token = match call(&dev, "/v1/client-tokens", &client_body).await {
        Ok((StatusCode::CREATED, token)) => token,
        Ok((status, body)) => return (status, Json(body)).into_response(),
        Err(e) => return internal(e),
    };
    Json(json!({
        "room": room,
        "participant": participant,
        "ice": ice,
        "token": token,
        "client_token": client_token,
    }))
    .into_response()
}

fn internal(e: anyhow::Error) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response()
}

/// A POST to the API router in-process, with `/dev/session`'s key.
async fn call(dev: &DevState, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", dev.api_key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let response = dev.api.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn print_banner(
    http: SocketAddr,
    args: &DevArgs,
    keys: &Keys,
    bound: &[nexrtc_relay::Bound],
    quic: Option<SocketAddr>,
    dns: Option<SocketAddr>,
    registered: bool,
) {
    let dns = dns.map_or_else(String::new, |d| {
        format!(
            "\x20 GeoDNS       {d} (UDP and TCP): dig @{} -p {} turn.{DNS_ZONE}\n",
            d.ip(),
            d.port()
        )
    });
    let listening: Vec<String> = (bound.iter())
        .map(|b| format!("{} {}", b.transport.as_str(), b.addr))
        .chain(quic.map(|q| format!("quic {q} (RFC 9298 CONNECT-UDP, the same credentials)")))
        .collect();
    let curl = format!(
        "curl -s -X POST http://{http}/v1/ice-servers -H 'Authorization: Bearer {}' \
         -H 'Content-Type: application/json' -d '{{\"user\":\"alice\"}}'",
        keys.api
    );
    let registration = match registered {
        true => "registered",
        false => "NOT registered yet",
    };
    println!(
        "\nnexrtc dev: a NexRTC Edge network on this machine (development only)\n\n\
         \x20 controller   http://{http}  (embedded store; API: /v1/openapi.json)\n\
         \x20 demo page    http://{http}/?room=demo  (open it in two tabs; &transport=udp|tcp|tls)\n\
         \x20 status page  http://{http}/status\n\
         \x20 relay        {REGION}/{NODE}, {registration}: {}\n\
         \x20              self-signed TLS certificate, loopback peers allowed, relay ports {}-{}\n\
         \x20 relay ops    http://{}/metrics\n\
         {dns}\
         \x20 tenant       {TENANT}\n\
         \x20 API key      {}  (scopes ice, client_ip; fix it with --api-key or NEXRTC_API_KEY)\n\
         \x20 admin key    {}\n\n\
         ICE servers with TURN credentials:\n  {curl}\n\n\
         Ctrl-C stops everything.\n",
        listening.join(", "),
        args.min_port,
        args.max_port,
        args.relay_metrics,
        keys.api,
        keys.admin,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass() {
        for good in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "[::2]:8080",
            "[::1]8080",
            "localhost:",
            "localhost:99999",
            "::1",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
