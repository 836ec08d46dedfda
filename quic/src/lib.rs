//! The QUIC relay of a NexRTC node: UDP proxying over HTTP/3 (RFC 9298 CONNECT-UDP, the
//! standard MASQUE proxy), so any RFC 9298 client relays UDP through the same edge network
//! as TURN clients, with the same short-lived credentials and the same peer filter.
//!
//! * [`server`]: the listener ([`QuicRelay`]): quinn (rustls with ring, ALPN `h3`) and h3
//!   with Extended CONNECT (RFC 9220) and HTTP Datagrams (RFC 9297) enabled. A request
//!   `CONNECT :protocol=connect-udp` to `/.well-known/masque/udp/{host}/{port}/`
//!   ([`target`]) with `Proxy-Authorization: Basic` TURN REST credentials ([`access`])
//!   opens a tunnel: a UDP socket connected to the target, its datagrams carried as HTTP
//!   Datagrams with Context ID 0 (RFC 9298 §5) on the request's stream.
//! * [`bound`]: bound UDP (`Connect-UDP-Bind: ?1`, draft-ietf-masque-connect-udp-listen):
//!   one tunnel on the relay's public addresses talks to any permitted peer, as a TURN
//!   allocation does, with the client's compression capsules saying which.
//! * [`codec`]: QUIC variable-length integers (RFC 9000 §16), capsules (RFC 9297 §3.2) and
//!   bound UDP's compression capsules, written by hand because h3 exports none of them.
//!
//! * [`h2`]: the HTTP/2 fallback (RFC 8441 Extended CONNECT) on the relay's TLS port, for
//!   networks that block UDP: the TURN workers hand over TLS clients that offer ALPN `h2`.
//!
//! Tunnels count in the TURN workers' quota ledger and carry an allocation's bandwidth
//! cap.

pub mod access;
pub mod bound;
pub mod codec;
pub mod h2;
pub mod server;
pub mod stats;
pub mod target;

pub use access::{Access, Denied};
pub use bound::{EphemeralPorts, RelayPorts};
pub use h2::{sniff, H2Sink, Sniff};
pub use server::{QuicConfig, QuicError, QuicRelay};
pub use stats::{Stats, Transport};
