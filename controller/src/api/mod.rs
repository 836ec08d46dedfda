//! The controller's HTTP API (axum 0.8).
//!
//! Every route is registered through one table ([`route_table`]), which is also what the
//! OpenAPI document ([`openapi::document`]) is checked against in tests, so the two cannot
//! drift apart. Unknown paths answer 404 `not_found`, known paths with another method 405
//! `method_not_allowed`, both in the JSON error shape of [`error::ApiError`]; so do bad
//! path parameters, query strings and bodies (handlers read them through
//! [`extract`]'s `Path`, `Query` and `JsonBody`, never axum's plain-text rejections).
//! Bodies are limited to [`extract::BODY_LIMIT`] (16 KiB).
//!
//! | route | who |
//! |---|---|
//! | `POST /v1/ice-servers`, `OPTIONS /v1/ice-servers` | API key (`ice`) or client token; CORS, `Origin` checked |
//! | `POST /v1/client-tokens` | API key (`ice`) |
//! | `POST /v1/client-probes/targets`, `POST /v1/client-probes` (and `OPTIONS`) | API key (`ice`) or client token; CORS, `Origin` checked |
//! | `POST /v1/rooms/{room}/tokens` | API key (`ice`) |
//! | `GET /v1/signal` (WebSocket) | room token (`?token=` or Bearer); `Origin` checked |
//! | `/v1/admin/…` | API key (`admin`) |
//! | `POST /v1/relays/register`, `…/heartbeat`, `…/leave`, `…/probes`, `GET /v1/relays/events` | API key (`node`) |
//! | `GET /v1/status` | API key (`admin`) |
//! | `GET /v1/openapi.json`, `/healthz`, `/readyz`, `/status` (the page), `/nexrtc-probe.js` (the browser probe) | anyone |
//! | `GET /metrics` | peers in `metrics_allow` |

pub mod admin;
pub mod agent;
pub mod client_probes;
pub mod cors;
pub mod error;
pub mod extract;
pub mod ice;
pub mod openapi;
pub mod ops;
pub mod relays;
pub mod signal;
pub mod status;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;
use nexrtc_wire::client::routes as client_routes;
use nexrtc_wire::routes;
use tokio::time::Instant;

use crate::app::AppState;
use admin::{audit, fleet, keys, rooms, tenants};
use error::ApiError;

/// One registered route: method and path template (axum's and OpenAPI's `{param}` syntax).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

struct Routes {
    router: Router<AppState>,
    table: Vec<Route>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            return self; // only standard methods are used below
        };
        self.router = self.router.route(path, on(filter, handler));
        self.table.push(Route { method, path });
        self
    }
}

fn routes() -> Routes {
    let r = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    let (get, post, put, delete, options) = (
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    );
    r.add(post.clone(), "/v1/ice-servers", ice::ice_servers)
        .add(options.clone(), "/v1/ice-servers", cors::preflight)
        .add(post.clone(), "/v1/client-tokens", ice::client_tokens)
        // Client latency probes.
        .add(
            post.clone(),
            client_routes::CLIENT_PROBE_TARGETS,
            client_probes::targets,
        )
        .add(
            options.clone(),
            client_routes::CLIENT_PROBE_TARGETS,
            cors::preflight,
        )
        .add(
            post.clone(),
            client_routes::CLIENT_PROBES,
            client_probes::report,
        )
        .add(
            options.clone(),
            client_routes::CLIENT_PROBES,
            cors::preflight,
        )
        // Signaling.
        .add(post.clone(), "/v1/rooms/{room}/tokens", signal::room_tokens)
        .add(get.clone(), signal::SIGNAL_PATH, signal::signal)
        // Tenants and secrets.
        .add(get.clone(), "/v1/admin/tenants", tenants::list_tenants)
        .add(post.clone(), "/v1/admin/tenants", tenants::create_tenant)
        .add(
            get.clone(),
            "/v1/admin/tenants/{tenant}",
            tenants::get_tenant,
        )
        .add(
            put.clone(),
            "/v1/admin/tenants/{tenant}",
            tenants::update_tenant,
        )
        .add(
            delete.clone(),
            "/v1/admin/tenants/{tenant}",
            tenants::delete_tenant,
        )
        .add(
            post.clone(),
            "/v1/admin/tenants/{tenant}/secrets",
            tenants::add_secret,
        )
        .add(
            delete.clone(),
            "/v1/admin/tenants/{tenant}/secrets/{id}",
            tenants::delete_secret,
        )
        .add(
            post.clone(),
            "/v1/admin/tenants/{tenant}/rooms/{room}/revocations",
            rooms::revoke_room_tokens,
        )
        // API keys.
        .add(get.clone(), "/v1/admin/keys", keys::list_keys)
        .add(post.clone(), "/v1/admin/keys", keys::create_key)
        .add(delete.clone(), "/v1/admin/keys/{id}", keys::delete_key)
        // Regions, relays, revocations.
        .add(get.clone(), "/v1/admin/regions", fleet::list_regions)
        .add(get.clone(), "/v1/admin/regions/{region}", fleet::get_region)
        .add(put, "/v1/admin/regions/{region}", fleet::put_region)
        .add(delete, "/v1/admin/regions/{region}", fleet::delete_region)
        .add(get.clone(), "/v1/admin/relays", fleet::list_relays)
        .add(
            post.clone(),
            "/v1/admin/relays/{region}/drain",
            fleet::drain_region,
        )
        .add(
            post.clone(),
            "/v1/admin/relays/{region}/{node}/drain",
            fleet::drain_relay,
        )
        .add(
            get.clone(),
            "/v1/admin/revocations",
            fleet::list_revocations,
        )
        .add(post.clone(), "/v1/admin/revocations", fleet::revoke)
        .add(get.clone(), "/v1/admin/audit", audit::list_audit)
        .add(
            get.clone(),
            "/v1/admin/tenants/{tenant}/usage",
            tenants::tenant_usage,
        )
        // Edge agents.
        .add(post.clone(), routes::REGISTER, relays::register)
        .add(post.clone(), routes::HEARTBEAT, relays::heartbeat)
        .add(post.clone(), routes::LEAVE, relays::leave)
        .add(post.clone(), routes::PROBES, agent::probes)
        .add(post, routes::USAGE, relays::usage)
        .add(get.clone(), routes::EVENTS, agent::events)
        // Operations.
        .add(get.clone(), "/v1/status", status::status)
        .add(get.clone(), "/status", status::page)
        .add(get.clone(), "/nexrtc-probe.js", client_probes::probe_js)
        .add(get.clone(), "/v1/openapi.json", ops::openapi)
        .add(get.clone(), "/healthz", ops::healthz)
        .add(get.clone(), "/readyz", ops::readyz)
        .add(get, "/metrics", ops::metrics)
}

/// Every route the router serves.
pub fn route_table() -> Vec<Route> {
    routes().table
}

/// The API router (state included), ready for `axum::serve` or `tower::ServiceExt::oneshot`.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so handlers see the
/// client's address; without it (in-process calls) the client address is unknown.
pub fn router(state: AppState) -> Router {
    routes()
        .router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::audited,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Only the operations routes (`/healthz`, `/readyz`, `/metrics`): what `nexrtc dns`
/// serves over HTTP.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(ops::healthz))
        .route("/readyz", axum::routing::get(ops::readyz))
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method; see /v1/openapi.json",
    )
}

/// Counts and times every request by route template and status.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let start = Instant::now();
    let response = next.run(request).await;
    (state.metrics).request(&route, response.status().as_u16(), start.elapsed());
    response
}
