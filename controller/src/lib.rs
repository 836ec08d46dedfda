//! NexRTC controller: the control plane that turns a set of relays into one network.
//!
//! * [`store`] — the `Store` trait, its embedded and etcd implementations, and
//!   [`store::WatchedMap`], the in-memory snapshot the request path reads.
//! * [`model`] — the JSON records kept in the store (relays, regions, tenants, keys,
//!   revocations, probes).
//! * [`state`] — the mirrored snapshots and the precomputed relay ranking ([`state::View`]).
//! * [`api`] — the HTTP API: ICE-config (`POST /v1/ice-servers`), client tokens, admin,
//!   relay registration, OpenAPI, health and metrics. [`api::router`] builds it.
//! * [`liveness`] — missed-heartbeat detection: a silent relay leaves the answers after two
//!   heartbeat intervals rather than a lease TTL.
//! * [`credentials`] — API keys, client tokens, TURN REST credentials.
//! * [`config`] / [`server`] — `nexrtc controller`: TOML + flags, TLS, [`server::run`].
//! * [`signal`] — WebRTC signaling: WebSocket rooms, fan-out, replica routing
//!   (`GET /v1/signal`, `POST /v1/rooms/{room}/tokens` in [`api::signal`]).
//! * [`metrics`] — Prometheus names and recording.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod audit;
pub mod client_probes;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod dns;
pub mod http;
pub mod init;
pub mod liveness;
pub mod metrics;
pub mod model;
pub mod ratelimit;
pub mod server;
pub mod signal;
pub mod state;
pub mod store;
pub mod store_health;
pub mod usage;

pub use api::router;
pub use app::{AppState, Options};
pub use config::{ConfigError, ControllerArgs, ControllerConfig};
pub use server::{run, run_dns, run_on};
