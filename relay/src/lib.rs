//! The NexRTC relay node: I/O shells around the sans-IO TURN core (`turn-core`).
//!
//! # Map
//!
//! Imports run one way (`tests/module_graph.rs` checks it); from the top:
//!
//! * [`lifecycle`] — supervision of a running relay: [`Signals`] (SIGTERM /
//!   SIGINT drain with a countdown, a second signal exits, SIGHUP reload),
//!   worker death, [`supervise`] → [`Exit`]; [`ops`] — the operations HTTP
//!   (`/metrics`, `/healthz`, `/readyz`) served on the caller's runtime.
//!   A program composes its process from these on its own tokio runtime (the
//!   `nexrtc` binary does, adding its edge agent); nothing here owns a runtime.
//! * [`control`] — [`Relay`]: start the workers (non-blocking), push secrets,
//!   revocations and drain orders to them, read their counts ([`Monitor`]).
//!   The seam the edge agent's adapter in the binary uses.
//! * `worker` — the data plane: one std thread per worker running a mio event
//!   loop that owns one `turn_core::Server` and all its sockets (see its docs
//!   for why mio and not tokio); `worker/batch.rs` is the recvmmsg/sendmmsg
//!   path. Below it, its parts: `clients` (UDP/TCP/TLS listeners and
//!   connections, [`Bound`]), `relay_sockets` (relay sockets over the shared
//!   port pools), `stream` (framing of TCP/TLS, bounded write buffers),
//!   `port_pool` (ports, EVEN-PORT, reservations), `slab`.
//! * [`metrics`] — the Prometheus text of `/metrics`.
//! * [`config`] — the checked [`RelayConfig`] and the tenant secrets (its
//!   child `config/secrets.rs`), built from [`settings`] (`nexrtc relay` flags
//!   and the TOML file, one struct); [`tls`] — certificates from PEM files or
//!   self-signed, swapped on SIGHUP; `host` — interface addresses, ephemeral
//!   ports.
//! * Small modules shared by those above, importing nothing of the crate but
//!   `config` and `tls` (`error`): `token` (what a mio token names), `msg`
//!   ([`Control`], the orders to a worker), `stats` (the counts a worker
//!   publishes: [`WorkerStats`], [`ShellStats`], [`Status`]), `error`
//!   ([`StartError`], [`RunError`]), `sys` (clock, SO_REUSEPORT, a UDP send).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use nexrtc_relay::{RelayConfig, Settings};
//! let settings = Settings {
//!     realm: Some("example.org".into()),
//!     static_auth_secret: vec!["s3cret".into()],
//!     listening_ip: vec!["127.0.0.1".parse()?],
//!     ..Settings::default()
//! };
//! let config = RelayConfig::load(settings)?;
//! let relay = nexrtc_relay::Relay::start(&config)?;
//! relay.drain();
//! relay.shutdown();
//! # Ok(()) }
//! ```

// Tests may unwrap (the workspace denies `unwrap_used` elsewhere).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod clients;
pub mod config;
pub mod control;
mod error;
mod host;
pub mod lifecycle;
pub mod metrics;
mod msg;
pub mod ops;
mod port_pool;
mod relay_sockets;
pub mod settings;
mod slab;
mod stats;
mod stream;
mod sys;
pub mod tls;
mod token;
mod worker;
pub mod xdp;

pub use clients::Bound;
pub use config::{ConfigError, CredentialSource, Listeners, RelayAddress, RelayConfig};
pub use control::{Monitor, Relay};
pub use error::{RunError, StartError};
pub use lifecycle::{announce, supervise, Exit, Signals};
pub use msg::Control;
pub use ops::{OpsListener, OpsServer};
pub use settings::Settings;
pub use stats::{ShellStats, Status, WorkerStats};
pub use worker::gso_supported;
