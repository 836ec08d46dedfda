//! A relay node as one process: the relay, its operations HTTP, its
//! supervision (signals, drain, reload, worker death) and, with a controller,
//! the edge agent, all on the caller's tokio runtime. `nexrtc relay` runs one
//! on a one-thread runtime; `nexrtc dev` runs one beside its controller.
//!
//! The agent does not depend on the relay crate: [`AttachedRelay`] (the
//! agent's `Apply`) and [`RelayMonitor`] (its `RelayCounters`) adapt the
//! relay to it (`src/agent_relay.rs`), and [`RelayNode::start`] is the one
//! place that attaches an agent to a relay.

use std::sync::Arc;

use nexrtc_edge_agent::config::Advertised;
use nexrtc_edge_agent::wire::{Endpoint, Transport};
use nexrtc_edge_agent::{AgentConfig, AgentHandle, RelayLoad};
use nexrtc_relay::{Bound, Exit, OpsListener, OpsServer, Relay, RelayConfig, Signals};

pub use crate::agent_relay::{AttachedRelay, RelayMonitor};

/// A relay node running on the current tokio runtime.
pub struct RelayNode {
    config: RelayConfig,
    relay: Arc<Relay>,
    signals: Signals,
    ops: OpsServer,
    agent: Option<AgentHandle>,
    /// Whether a clean exit tells the controller the relay is leaving.
    leave: bool,
}

/// Why a relay node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Relay(#[from] nexrtc_relay::RunError),
    #[error("cannot start the edge agent: {0}")]
    Agent(#[from] nexrtc_edge_agent::AgentError),
}

impl From<nexrtc_relay::StartError> for NodeError {
    fn from(e: nexrtc_relay::StartError) -> NodeError {
        NodeError::Relay(e.into())
    }
}

impl RelayNode {
    /// Installs the signal handlers, binds the operations listener, starts the
    /// relay's workers and (with `agent`) the edge agent, and serves the
    /// operations HTTP, the agent's registry composed into the relay's `/metrics`.
    pub async fn start(
        config: RelayConfig,
        agent: Option<AgentConfig>,
    ) -> Result<RelayNode, NodeError> {
        let signals = Signals::install()?;
        let ops = OpsListener::bind(config.metrics_listen).await?;
        let relay = Arc::new(Relay::start(&config)?);
        let agent = match agent {
            Some(mut agent) => {
                if agent.advertise.is_empty() {
                    agent.advertise = relay_advertised(&config);
                }
                let load = RelayLoad::new(RelayMonitor(relay.monitor()), agent.capacity);
                Some(nexrtc_edge_agent::spawn(
                    agent,
                    load,
                    AttachedRelay(relay.clone()),
                )?)
            }
            None => None,
        };
        nexrtc_relay::announce(&relay, &config);
        let quic_metrics = relay.quic().map(|(_, registry)| registry);
        let agent_metrics = agent.as_ref().map(|a| a.metrics().clone());
        let ops = ops.serve(
            relay.monitor(),
            quic_metrics.into_iter().chain(agent_metrics),
        );
        Ok(RelayNode {
            config,
            relay,
            signals,
            ops,
            agent,
            leave: true,
        })
    }

    /// No leave at the exit: for a process whose controller stops before its relay
    /// (`nexrtc dev`), where the leave would only wait for a controller that is gone.
    pub fn without_leave(mut self) -> RelayNode {
        self.leave = false;
        self
    }

    /// The QUIC relay's UDP address, when it runs.
    pub fn quic_addr(&self) -> Option<std::net::SocketAddr> {
        self.relay.quic().map(|(addr, _)| addr)
    }

    /// The sockets the relay listens on.
    pub fn bound(&self) -> &[Bound] {
        self.relay.bound()
    }

    /// Supervises the relay until it exits (see [`nexrtc_relay::supervise`]),
    /// then stops the operations HTTP and the agent and stops the workers.
    /// On a clean exit (drained, drain grace passed, second signal) the agent
    /// first tells the controller the relay is leaving, so it is gone from the
    /// registry and the ICE answers when the process exits (bounded by
    /// [`nexrtc_edge_agent::LEAVE_TIMEOUT`]; failing that, its lease expires).
    /// A worker that died takes no such step: the supervisor restarts the
    /// process and the lease runs out meanwhile.
    pub async fn run(mut self) -> Exit {
        let exit = nexrtc_relay::supervise(&self.relay, &self.config, &mut self.signals).await;
        let ops_stopped = self.ops.stop();
        // The agent's tasks hold clones of the relay: whichever is dropped
        // last stops the workers (Relay's Drop joins them).
        if let Some(agent) = self.agent.take() {
            if exit.is_clean() && self.leave {
                agent.leave().await;
            }
        }
        drop(self.relay);
        ops_stopped.await;
        exit
    }
}

/// The addresses of a relay started from `config`, for when none are
/// advertised: its advertised relay address (or listening address) with each
/// listening port. Empty when the relay listens on the wildcard address only
/// and has no external IP.
pub fn relay_advertised(config: &RelayConfig) -> Vec<Advertised> {
    let advertised = [config.relay_v4, config.relay_v6]
        .into_iter()
        .flatten()
        .map(|r| r.advertised)
        .chain(config.listeners.ips.iter().copied())
        .find(|ip| !ip.is_unspecified());
    let Some(ip) = advertised else {
        return Vec::new();
    };
    let host = ip.to_string();
    let l = &config.listeners;
    let mut out = Vec::new();
    let mut add = |transport, port| {
        out.push(Advertised {
            transport,
            endpoint: Endpoint {
                host: host.clone(),
                port,
            },
        })
    };
    if let Some(p) = l.udp_port {
        add(Transport::Udp, p);
    }
    if let Some(p) = l.tcp_port {
        add(Transport::Tcp, p);
    }
    for p in &l.tls_ports {
        add(Transport::Tls, *p);
    }
    if let Some(quic) = config.quic_listen {
        add(Transport::Quic, quic.port());
    }
    out
}
