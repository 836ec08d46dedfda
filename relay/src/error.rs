//! [`StartError`]: why the relay could not start (binding listeners, relay
//! IPs, certificates, secrets, worker threads).

use std::net::{IpAddr, SocketAddr};

use crate::config::ConfigError;
use crate::tls::TlsError;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A relay IP the host cannot bind: every Allocate would fail (508).
    #[error(
        "relay IP {ip} is not an address of this host (bind: {source}); give an address of \
         one of its interfaces (--relay-ip), and --external-ip for the public one behind NAT"
    )]
    RelayIpNotLocal { ip: IpAddr, source: std::io::Error },
    #[error("cannot bind a relay socket on {ip}: {source}")]
    RelayIp { ip: IpAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot start a worker: {0}")]
    Worker(std::io::Error),
    #[error("cannot start the QUIC relay: {0}")]
    Quic(#[from] nexrtc_quic::QuicError),
    #[error("XDP fast path (--xdp): {0}")]
    Xdp(#[from] crate::xdp::XdpError),
}

/// Why the relay process could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr} for metrics: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}
