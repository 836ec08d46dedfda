//! Shared harness of the `api_*` tests: a controller over a fresh `MemoryStore`, driven
//! in-process with `tower::ServiceExt::oneshot`, on a virtual clock (tokio paused time).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use nexrtc_controller::clock::Clock;
use nexrtc_controller::config::Bootstrap;
use nexrtc_controller::model::Region;
use nexrtc_controller::server::bootstrap;
use nexrtc_controller::store::{MemoryStore, Store};
use nexrtc_controller::{router, AppState, Options};
use nexrtc_geo::GeoIp;
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// Unix time when each test starts.
pub const NOW: u64 = 1_700_000_000;
pub const ADMIN_KEY: &str = "nxk_admin0000000000000000000000000000000000";
pub const NODE_KEY: &str = "nxk_node00000000000000000000000000000000000";
pub const ICE_KEY: &str = "nxk_ice000000000000000000000000000000000000";
pub const TENANT: &str = "acme";
pub const SECRET: &str = "acme-secret-0123456789";

/// Addresses of the synthetic GeoIP database (geo/testdata/README.md).
pub const FRANKFURT_IP: &str = "198.51.100.10";
pub const LONDON_IP: &str = "198.51.100.200";
pub const TOKYO_IP: &str = "203.0.113.10";
pub const ASHBURN_IP: &str = "192.0.2.10";
/// A trusted proxy (in `trusted_proxies` of [`options`]).
pub const PROXY_IP: &str = "10.1.2.3";

pub fn geoip() -> Arc<GeoIp> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../geo/testdata/synthetic-city.mmdb"
    );
    Arc::new(GeoIp::open(path).expect("synthetic GeoIP database"))
}

/// Options of the harness: virtual clock, 60 s leases and no missed-heartbeat removal
/// (registered relays stay while tests skip time), trusted proxies 10/8, GeoIP.
pub fn options() -> Options {
    Options {
        clock: Clock::starting_at(NOW),
        lease_ttl: Duration::from_secs(60),
        relay_miss_after: Duration::from_secs(60),
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
        geoip: Some(geoip()),
        ..Options::default()
    }
}

/// The tenant, keys and regions every API test starts from.
pub fn test_bootstrap() -> Bootstrap {
    Bootstrap {
        admin_key: Some(ADMIN_KEY.into()),
        node_key: Some(NODE_KEY.into()),
        ice_key: Some(ICE_KEY.into()),
        tenant: Some(TENANT.into()),
        tenant_secret: Some(SECRET.into()),
        cors_origins: vec!["https://app.acme.example".into()],
        regions: regions(),
    }
}

pub fn regions() -> Vec<Region> {
    vec![
        Region::new("eu-west", 53.35, -6.26),       // Dublin
        Region::new("eu-central", 50.11, 8.68),     // Frankfurt
        Region::new("us-east", 39.04, -77.49),      // Ashburn
        Region::new("ap-northeast", 35.68, 139.69), // Tokyo
    ]
}

pub struct Harness {
    pub store: MemoryStore,
    pub state: AppState,
    pub app: Router,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Response {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to send.
pub struct Req {
    method: &'static str,
    path: String,
    bearer: Option<String>,
    body: Option<Vec<u8>>,
    peer: Option<SocketAddr>,
    headers: Vec<(String, String)>,
}

impl Req {
    pub fn new(method: &'static str, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            bearer: None,
            body: None,
            peer: None,
            headers: Vec::new(),
        }
    }
    pub fn get(path: impl Into<String>) -> Req {
        Self::new("GET", path)
    }
    pub fn post(path: impl Into<String>) -> Req {
        Self::new("POST", path)
    }
    pub fn bearer(mut self, key: &str) -> Req {
        self.bearer = Some(key.to_owned());
        self
    }
    pub fn json(mut self, body: Value) -> Req {
        self.body = Some(serde_json::to_vec(&body).expect("json"));
        self
    }
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }
    /// The TCP peer address (IP; port 40000).
    pub fn peer(mut self, ip: &str) -> Req {
        self.peer = Some(SocketAddr::new(ip.parse().expect("ip"), 40000));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl Harness {
    /// A controller with tenant `acme` (secret [`SECRET`]), the four [`regions`], and the
    /// admin, node and ice keys.
    pub async fn start() -> Harness {
        Self::with(options()).await
    }

    pub async fn with(options: Options) -> Harness {
        let store = MemoryStore::new();
        let b = test_bootstrap();
        bootstrap(&store, &b, NOW).await.expect("bootstrap");
        let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
        let state = AppState::start(dyn_store, options).await;
        let app = router(state.clone());
        Harness { store, state, app }
    }

    /// A replica over `store` (a second replica on a harness's store, or a wrapper of it);
    /// `memory` is the memory store underneath, for the helpers that write to it directly.
    pub async fn over(store: Arc<dyn Store>, memory: MemoryStore, options: Options) -> Harness {
        let state = AppState::start(store, options).await;
        let app = router(state.clone());
        Harness {
            store: memory,
            state,
            app,
        }
    }

    pub async fn call(&self, req: Req) -> Response {
        let mut builder = Request::builder().method(req.method).uri(&req.path);
        if let Some(key) = &req.bearer {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        if req.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let mut request = builder
            .body(Body::from(req.body.unwrap_or_default()))
            .expect("request");
        if let Some(peer) = req.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            json,
            text,
        }
    }

    /// `POST route` with the node key and a JSON body: an edge agent's call.
    pub async fn node(&self, route: &str, body: Value) -> Response {
        self.call(Req::post(route).bearer(NODE_KEY).json(body))
            .await
    }

    /// `POST /v1/ice-servers` with the ice key from `peer`.
    pub async fn ice(&self, body: Value, peer: &str) -> Response {
        let req = Req::post("/v1/ice-servers")
            .bearer(ICE_KEY)
            .peer(peer)
            .json(body);
        self.call(req).await
    }

    /// A new API key of tenant `acme` with `scopes`.
    pub async fn key(&self, scopes: &[&str]) -> String {
        let k = self
            .call(
                Req::post("/v1/admin/keys")
                    .bearer(ADMIN_KEY)
                    .json(json!({"tenant": TENANT, "scopes": scopes})),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{}", k.text);
        k.json["key"].as_str().expect("key").to_owned()
    }

    /// Registers relay `node` in `region` at `host` (UDP/TCP 3478, TLS 5349); returns the lease.
    pub async fn register(&self, region: &str, node: &str, host: &str) -> String {
        let r = self
            .call(
                Req::post("/v1/relays/register")
                    .bearer(NODE_KEY)
                    .json(registration(region, node, host)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["lease"].as_str().expect("lease").to_owned()
    }

    /// One relay `n1` in each of the four regions, at 198.18.<i>.1.
    pub async fn register_fleet(&self) {
        for (i, region) in ["eu-west", "eu-central", "us-east", "ap-northeast"]
            .iter()
            .enumerate()
        {
            self.register(region, "n1", &format!("198.18.{i}.1")).await;
        }
    }
}

pub fn registration(region: &str, node: &str, host: &str) -> Value {
    let ep = |port: u16| json!({"host": host, "port": port});
    json!({
        "node": node,
        "region": region,
        "addresses": {"udp": ep(3478), "tcp": ep(3478), "tls": ep(5349)},
        "transports": ["udp", "tcp", "tls"],
        "load": {"allocations": 10, "capacity": 1000, "cpu": 0.05},
        "version": "test"
    })
}
