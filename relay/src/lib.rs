//! The NexRTC relay node: I/O shells around the sans-IO TURN core (`turn-core`).
//!
//! # Map
//!
//! * [`settings`] — `nexrtc relay` flags and the TOML file (one struct);
//!   [`config`] — the checked [`RelayConfig`] and the tenant secrets.
//! * [`control`] — [`Relay`]: start the workers, push secrets, revocations and
//!   drain orders to them, read their counts. The seam the edge agent uses.
//! * `worker` — the data plane: one std thread per worker running a mio event
//!   loop that owns one `turn_core::Server` and all its sockets (see its docs
//!   for why mio and not tokio). `clients` (UDP/TCP/TLS listeners and
//!   connections), `stream` (framing of TCP/TLS, bounded write buffers),
//!   `relay_sockets` (port pool, EVEN-PORT and reservations) are its parts.
//! * [`tls`] — certificates from PEM files or self-signed, swapped on SIGHUP.
//! * [`metrics`] — `/metrics` (Prometheus text), `/healthz`, `/readyz`.
//! * [`run`] — the process: signals, drain, reload (tokio, control side only).
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

// Tests may unwrap (the workspace denies it elsewhere); see the report on clippy.toml.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod clients;
pub mod config;
pub mod control;
mod host;
mod lifecycle;
pub mod metrics;
mod port_pool;
mod relay_sockets;
mod secrets;
pub mod settings;
mod slab;
mod stream;
pub mod tls;
mod worker;

pub use config::{ConfigError, CredentialSource, Listeners, RelayConfig};
pub use control::{Bound, Control, Monitor, Relay, StartError};
pub use lifecycle::{run, run_with, AttachError, Exit, Extension, RunError};
pub use relay_sockets::RelayAddress;
pub use settings::Settings;
pub use worker::gso_supported;
