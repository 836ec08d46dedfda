//! The names of the sockets and the time the core is driven with: a client is
//! its [`ClientSocket`] (the 5-tuple), a relay socket the shell's
//! [`RelayHandle`]; a peer is its plain `SocketAddr`, always passed beside the
//! relay socket it was seen on, so it cannot be mistaken for a client.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// The transport a client reached the relay over (RFC 8656 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Stream transports carry ChannelData padded to 4 bytes (RFC 8656 §12.5).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The client side of a TURN session: the "5-tuple" of RFC 8656 §2 (transport,
/// client address, server address). One allocation exists per `ClientSocket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientSocket {
    pub transport: Transport,
    /// The client's address as seen by the relay (its server-reflexive address).
    pub remote: SocketAddr,
    /// The relay's listening address the client talks to.
    pub local: SocketAddr,
}

/// The shell's name for one relay socket (a relayed transport address). The shell
/// chooses it when it binds the socket; the core only hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayHandle(pub u32);

/// The time, passed in by the shell: the core never reads a clock.
///
/// `mono` drives every lifetime and rate; `unix_secs` is only compared with the
/// expiry inside TURN REST usernames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub unix_secs: u64,
}

/// Formats an address for logs: redacted unless the operator asked for addresses.
pub struct Redacted<'a>(pub &'a SocketAddr, pub bool);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(f, "{}", self.0)
        } else if self.0.is_ipv4() {
            f.write_str("<ipv4>")
        } else {
            f.write_str("<ipv6>")
        }
    }
}
