//! Bound UDP (draft-ietf-masque-connect-udp-listen): one tunnel sends to and receives
//! from any permitted peer, as a TURN allocation does.
//!
//! A request carrying `Connect-UDP-Bind: ?1` gets sockets on the relay's public
//! addresses (one per address family the relay serves, from the same port pool as TURN
//! relay sockets, so the firewall's relay port range and the peer filter's held ports
//! cover them), named in the `Proxy-Public-Address` response header (§5). What a datagram
//! means is set by its Context ID (§3):
//!
//! * 0: the URI's target, as in RFC 9298, when the request named one; with the `*`
//!   target, a datagram with Context ID 0 aborts the stream.
//! * an uncompressed context (the client's COMPRESSION_ASSIGN with IP version 0, one at a
//!   time): each datagram starts with the peer's address ([`crate::codec::get_address`]),
//!   which the peer filter checks per datagram (Security Considerations).
//! * a compressed context (COMPRESSION_ASSIGN with an address, checked once when
//!   registered): only the UDP payload.
//!
//! What a peer sends back goes out under its compressed context if it has one, else
//! under the uncompressed context with its address, else (the URI's target) under 0;
//! a peer with none of these is dropped, so a client that never opens the uncompressed
//! context hears only the peers it named (§6.1). The relay never registers contexts of
//! its own. Open contexts are bounded per tunnel, and so are registrations over its life
//! (the IDs of closed contexts are kept to refuse their reuse).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::codec::Compression;

/// Contexts one tunnel may have open at once.
pub const MAX_OPEN: usize = 256;
/// Registrations over a tunnel's life (each ID is remembered while the tunnel lives).
pub const MAX_REGISTRATIONS: usize = 4096;

/// A client's COMPRESSION_* capsule that breaks the draft's rules (§3: a repeated,
/// odd, or zero Context ID, a second uncompressed context, a second context for one
/// address, an ACK for a context the relay never assigned): the stream is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a compression capsule against the bound-UDP rules")]
pub struct Malformed;

/// Where a client's datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this peer, the payload after the first `skip` bytes (the address prefix of an
    /// uncompressed datagram).
    To(SocketAddr, usize),
    /// An unknown or closed context: dropped silently (§3.3).
    Unknown,
    /// The uncompressed datagram's address is malformed.
    Malformed,
    /// Context ID 0 without a URI target: the stream is aborted (§3).
    Abort,
}

/// The Context IDs of one bound tunnel.
#[derive(Debug, Default)]
pub struct Contexts {
    /// The URI's target, if the request named one (Context ID 0 means it).
    target: Option<SocketAddr>,
    uncompressed: Option<u64>,
    compressed: HashMap<u64, SocketAddr>,
    by_peer: HashMap<SocketAddr, u64>,
    /// Every ID registered so far (an ID is never reused, §3.3).
    used: HashSet<u64>,
}

impl Contexts {
    pub fn new(target: Option<SocketAddr>) -> Contexts {
        Contexts {
            target,
            ..Contexts::default()
        }
    }

    /// A client's compression capsule; what to answer (ACK or CLOSE, or nothing). `allowed`
    /// says whether the relay may exchange datagrams with a peer (the peer filter, and an
    /// address family the tunnel has a socket for).
    pub fn apply(
        &mut self,
        capsule: Compression,
        allowed: impl Fn(SocketAddr) -> bool,
    ) -> Result<Option<Compression>, Malformed> {
        match capsule {
            Compression::Assign { context, peer } => {
                // Clients allocate even IDs (RFC 9298 §4); 0 is parsed out as malformed.
                if context % 2 == 1 || self.used.contains(&context) {
                    return Err(Malformed);
                }
                match peer {
                    None if self.uncompressed.is_some() => return Err(Malformed),
                    Some(p) if self.by_peer.contains_key(&p) => return Err(Malformed),
                    _ => {}
                }
                let close = Some(Compression::Close { context });
                if self.used.len() >= MAX_REGISTRATIONS {
                    return Ok(close);
                }
                self.used.insert(context);
                let open = self.compressed.len() + usize::from(self.uncompressed.is_some());
                if open >= MAX_OPEN {
                    return Ok(close);
                }
                match peer {
                    None => self.uncompressed = Some(context),
                    Some(p) if allowed(p) => {
                        self.compressed.insert(context, p);
                        self.by_peer.insert(p, context);
                    }
                    Some(_) => return Ok(close),
                }
                Ok(Some(Compression::Ack { context }))
            }
            // The relay assigns no contexts, so there is nothing to acknowledge.
            Compression::Ack { .. } => Err(Malformed),
            Compression::Close { context } => {
                if self.uncompressed == Some(context) {
                    self.uncompressed = None;
                } else if let Some(peer) = self.compressed.remove(&context) {
                    self.by_peer.remove(&peer);
                }
                Ok(None)
            }
        }
    }

    /// Where a client's datagram with `context` and `rest` (what follows the Context ID)
    /// goes. The peer filter is the caller's (for an uncompressed datagram's address).
    pub fn route(&self, context: u64, rest: &[u8]) -> Route {
        if context == 0 {
            return self.target.map_or(Route::Abort, |t| Route::To(t, 0));
        }
        if self.uncompressed == Some(context) {
            return match crate::codec::get_address(rest) {
                Ok((peer, n)) => Route::To(peer, n),
                Err(_) => Route::Malformed,
            };
        }
        self.compressed
            .get(&context)
            .map_or(Route::Unknown, |&peer| Route::To(peer, 0))
    }

    /// The context a datagram from `peer` goes to the client under, and whether it carries
    /// the peer's address (uncompressed); `None`: nobody asked for this peer.
    pub fn inbound(&self, peer: SocketAddr) -> Option<(u64, bool)> {
        if let Some(&context) = self.by_peer.get(&peer) {
            return Some((context, false));
        }
        if let Some(context) = self.uncompressed {
            return Some((context, true));
        }
        (self.target == Some(peer)).then_some((0, false))
    }
}

/// Where bound tunnels' sockets come from: a relay address of each family, a port from the
/// relay's pool (the TURN relay's, when the QUIC relay runs in `nexrtc relay`), given back
/// when the tunnel ends.
pub trait RelayPorts: Send + Sync + std::fmt::Debug {
    /// A nonblocking socket on a relay address of the family (`v6`) and the public
    /// address it is reached at; `None` if the relay has no address of that family.
    fn bind(&self, v6: bool) -> Option<io::Result<(std::net::UdpSocket, SocketAddr)>>;
    /// The socket bound at `local` is closed: its port goes back to the pool.
    fn release(&self, local: SocketAddr);
}

/// Ports the OS picks on given addresses (no pool): for a QUIC relay on its own.
#[derive(Debug, Clone)]
pub struct EphemeralPorts {
    /// `(bind, public)` addresses.
    pub addresses: Vec<(IpAddr, IpAddr)>,
}

impl RelayPorts for EphemeralPorts {
    fn bind(&self, v6: bool) -> Option<io::Result<(std::net::UdpSocket, SocketAddr)>> {
        let &(bind, public) = self.addresses.iter().find(|(b, _)| b.is_ipv6() == v6)?;
        Some((|| {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))?;
            socket.set_nonblocking(true)?;
            let port = socket.local_addr()?.port();
            Ok((socket, SocketAddr::new(public, port)))
        })())
    }

    fn release(&self, _: SocketAddr) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| unreachable!("test address {s}"))
    }

    const ANY: fn(SocketAddr) -> bool = |_| true;

    #[test]
    fn registrations_follow_the_drafts_rules() {
        let mut c = Contexts::new(None);
        let (a, b) = (addr("192.0.2.1:5000"), addr("192.0.2.2:5000"));
        let assign = |context, peer| Compression::Assign { context, peer };
        // Uncompressed, then compressed: acknowledged.
        assert_eq!(
            c.apply(assign(2, None), ANY),
            Ok(Some(Compression::Ack { context: 2 }))
        );
        assert_eq!(
            c.apply(assign(4, Some(a)), ANY),
            Ok(Some(Compression::Ack { context: 4 }))
        );
        // Odd (the relay's), repeated, a second uncompressed, a second for one peer, an
        // ACK for nothing the relay assigned: malformed.
        assert_eq!(c.apply(assign(7, Some(b)), ANY), Err(Malformed));
        assert_eq!(c.apply(assign(4, Some(b)), ANY), Err(Malformed));
        assert_eq!(c.apply(assign(6, None), ANY), Err(Malformed));
        assert_eq!(c.apply(assign(6, Some(a)), ANY), Err(Malformed));
        assert_eq!(
            c.apply(Compression::Ack { context: 4 }, ANY),
            Err(Malformed)
        );
        // A peer the filter refuses: closed, and its ID used up.
        let refused = c.apply(assign(8, Some(b)), |p| p != b);
        assert_eq!(refused, Ok(Some(Compression::Close { context: 8 })));
        assert_eq!(
            c.apply(assign(8, Some(addr("192.0.2.3:1"))), ANY),
            Err(Malformed)
        );
        // Closing the uncompressed context: another may open, the old ID may not.
        assert_eq!(c.apply(Compression::Close { context: 2 }, ANY), Ok(None));
        assert_eq!(c.apply(assign(2, None), ANY), Err(Malformed));
        assert_eq!(
            c.apply(assign(10, None), ANY),
            Ok(Some(Compression::Ack { context: 10 }))
        );
    }

    #[test]
    fn datagrams_route_by_context() {
        let target = addr("192.0.2.9:443");
        let peer = addr("198.51.100.7:6000");
        let mut c = Contexts::new(Some(target));
        c.apply(
            Compression::Assign {
                context: 2,
                peer: None,
            },
            ANY,
        )
        .ok();
        c.apply(
            Compression::Assign {
                context: 4,
                peer: Some(peer),
            },
            ANY,
        )
        .ok();
        assert_eq!(c.route(0, b"x"), Route::To(target, 0));
        assert_eq!(c.route(4, b"x"), Route::To(peer, 0));
        let mut uncompressed = Vec::new();
        crate::codec::put_address(&mut uncompressed, addr("203.0.113.5:9"));
        uncompressed.extend_from_slice(b"payload");
        assert_eq!(
            c.route(2, &uncompressed),
            Route::To(addr("203.0.113.5:9"), 7)
        );
        assert_eq!(c.route(2, &[5, 1, 2]), Route::Malformed);
        assert_eq!(c.route(6, b"x"), Route::Unknown);
        // Back to the client: the peer's own context, else the uncompressed one.
        assert_eq!(c.inbound(peer), Some((4, false)));
        assert_eq!(c.inbound(addr("203.0.113.5:9")), Some((2, true)));
        // With the uncompressed context closed, only named peers (and the target) are heard.
        c.apply(Compression::Close { context: 2 }, ANY).ok();
        assert_eq!(c.inbound(addr("203.0.113.5:9")), None);
        assert_eq!(c.inbound(target), Some((0, false)));
        assert_eq!(Contexts::new(None).route(0, b"x"), Route::Abort);
    }

    #[test]
    fn registrations_are_bounded() {
        let mut c = Contexts::new(None);
        let peer = |i: u64| SocketAddr::from(([198, 51, 100, 1], i as u16 + 1));
        for i in 0..MAX_OPEN as u64 {
            let got = c.apply(
                Compression::Assign {
                    context: 2 * (i + 1),
                    peer: Some(peer(i)),
                },
                ANY,
            );
            assert!(matches!(got, Ok(Some(Compression::Ack { .. }))));
        }
        let over = 2 * (MAX_OPEN as u64 + 1);
        let got = c.apply(
            Compression::Assign {
                context: over,
                peer: Some(peer(9999)),
            },
            ANY,
        );
        assert_eq!(got, Ok(Some(Compression::Close { context: over })));
        // Open and close until the lifetime bound: then every registration is refused.
        let mut next = over + 2;
        while c.used.len() < MAX_REGISTRATIONS {
            c.apply(Compression::Close { context: 2 }, ANY).ok();
            c.compressed.clear();
            c.by_peer.clear();
            c.apply(
                Compression::Assign {
                    context: next,
                    peer: None,
                },
                ANY,
            )
            .ok();
            c.apply(Compression::Close { context: next }, ANY).ok();
            next += 2;
        }
        let got = c.apply(
            Compression::Assign {
                context: next,
                peer: None,
            },
            ANY,
        );
        assert_eq!(got, Ok(Some(Compression::Close { context: next })));
        assert!(c.used.len() <= MAX_REGISTRATIONS);
    }
}
