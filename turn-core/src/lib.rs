//! Sans-IO STUN (RFC 8489) and TURN (RFC 8656, RFC 6156) server core.
//!
//! This crate has no sockets, no clock and no async runtime: bytes and the time
//! are passed in, and every effect comes out as a value the I/O shell executes.
//! The compiler keeps it that way — nothing here depends on tokio or std::net I/O.
//!
//! # Driving a [`Server`]
//!
//! The shell owns the sockets and runs this loop (the order matters: a missed
//! `poll_*` call means a lost answer or a leaked relay socket, silently):
//!
//! 1. For each packet from a client (a UDP datagram, or one frame cut from a
//!    TCP/TLS stream with [`stun::frame_len`]): [`Server::handle_client`].
//!    If it returns [`ClientAction::Forward`], send that slice of the packet from
//!    the relay socket to the peer — the ChannelData hot path, no copy.
//! 2. For each datagram a relay socket receives from a peer, read it into a
//!    buffer that keeps 4 free bytes in front, then [`Server::handle_peer`]. On
//!    [`PeerAction::ToClient`] write the header into those 4 bytes and send
//!    header + payload (padded to 4 bytes on stream transports) to the client.
//! 3. Drain [`Server::poll_command`]: bind relay sockets ([`Command::BindRelay`],
//!    answered later with [`Server::relay_bound`]) and close freed ones.
//! 4. Drain [`Server::poll_transmit`]: control answers (responses, Data
//!    indications) to clients.
//! 5. Sleep until [`Server::poll_timeout`] (or the next packet); then call
//!    [`Server::handle_timeout`] and go to 3.
//!
//! When a TCP/TLS client connection closes, call [`Server::client_closed`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod filter;
pub mod net;
mod ratelimit;
pub mod server;
pub mod stats;
pub mod stun;

pub use auth::{Credentials, PasswordError, TenantSecrets};
pub use config::{AnswerBudget, ByteRate, Config, Quotas};
pub use filter::{HeldPorts, PeerFilter};
pub use net::{ClientSocket, Now, RelayHandle, Transport};
pub use ratelimit::TokenBucket;
pub use server::{
    AllocationLedger, AllocationRequestId, BindFailure, ClientAction, Command, Family, FastFlow,
    PeerAction, PortRequest, QuotaRefusal, RelayBinding, Server, Transmit,
};
pub use stats::Stats;
