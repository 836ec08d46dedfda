//! The NexRTC edge agent: connects one relay to the controller.
//!
//! It registers the relay, heartbeats its live load every second over HTTPS
//! to any controller replica (moving to the next when one fails), keeps a
//! server-sent event stream open for tenant secrets, revocations and drain
//! orders and applies them to the relay without a restart, and measures the
//! latency to other regions' relays with STUN Binding probes.
//!
//! # Map
//!
//! * The protocol — routes, JSON bodies, events, constants — is the
//!   `nexrtc-wire` crate (re-exported as [`wire`]), which the controller's
//!   routes use too; the agent's tests run it against the real controller.
//! * [`client`] — HTTPS to a list of replicas: failover, backoff with full
//!   jitter, the event stream; [`tls`] — rustls on ring, CA file, the
//!   dangerous no-verification option; `sse` — the event-stream decoder.
//! * [`agent`] — [`spawn`] and its tasks (control, probes; `events`: the
//!   stream), torn down with the [`AgentHandle`].
//! * [`load`] — [`LoadSource`] and [`RelayLoad`] (the in-process relay's
//!   counters, read through [`RelayCounters`]); [`coturn`] — [`CoturnLoad`] (coturn's Prometheus endpoint) and
//!   [`StunHealth`] (STUN Binding health only, for a coturn without Prometheus).
//! * [`apply`] — [`Apply`]: the relay applies pushed state, [`LogOnly`] logs it.
//!
//! The agent does not depend on the relay crate: a program running both
//! (the `nexrtc` binary) implements [`Apply`] and [`RelayCounters`] for it.
//! * [`probe`] — latency probes; [`metric`] — metric names and the agent's registry.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use nexrtc_edge_agent::{spawn, AgentConfig, LogOnly, StunHealth};
//! let mut config = AgentConfig::new(vec!["https://controller.example.org/".parse()?], "token", "eu-west");
//! config.advertise = vec![nexrtc_edge_agent::config::parse_advertised("udp:203.0.113.5:3478")?];
//! let health = StunHealth::new("127.0.0.1:3478".parse()?);
//! let agent = spawn(config, health, LogOnly)?;
//! // … the agent runs until `agent` is dropped.
//! # drop(agent); Ok(()) }
//! ```

// Tests may unwrap (the workspace denies it elsewhere).
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![forbid(unsafe_code)]

pub mod agent;
pub mod apply;
pub mod client;
pub mod client_probe;
pub mod config;
pub mod coturn;
mod events;
pub mod load;
pub mod metric;
pub mod probe;
mod sse;
pub mod tls;
pub mod usage;

pub use agent::{spawn, AgentError, AgentHandle, AgentStatus, Left, LEAVE_TIMEOUT};
pub use apply::{credentials, drain_alternate, Apply, ApplyError, LogOnly};
pub use client::{CallError, ClientError, ControllerClient};
pub use config::AgentConfig;
pub use coturn::{CoturnLoad, StunHealth};
pub use load::{LoadError, LoadSource, RelayCounters, RelayLoad, Sample, Totals};
/// The protocol crate, which this crate's API speaks ([`Apply`] takes its [`wire::Secrets`]
/// and [`wire::DrainOrder`]): programs that embed the agent name its types through it.
pub use nexrtc_wire as wire;
pub use reqwest::Url;
pub use sse::{SseDecoder, SseError, SseEvent};
pub use usage::{Meter, UsageSource};
