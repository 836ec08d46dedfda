//! Relay sockets: one UDP socket per allocation, in a slab indexed by
//! [`RelayHandle`], with ports from a [`PortPool`] per address family.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Instant;

use mio::{Interest, Registry};
use socket2::{Domain, Protocol, Socket, Type};
use turn_core::{BindFailure, Family, PortRequest, RelayBinding, RelayHandle};

use crate::port_pool::PortPool;
use crate::slab::Slab;
use crate::worker::{token, TokenKind};

/// Where relay sockets of one family are bound, and what address is advertised
/// in XOR-RELAYED-ADDRESS (`--external-ip` behind 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

struct FamilyPool {
    addr: RelayAddress,
    pool: PortPool<std::net::UdpSocket>,
}

pub(crate) struct RelaySocket {
    pub socket: mio::net::UdpSocket,
    family: Family,
    port: u16,
}

/// Every relay socket of one worker.
pub(crate) struct RelaySockets {
    v4: Option<FamilyPool>,
    v6: Option<FamilyPool>,
    slab: Slab<RelaySocket>,
}

impl RelaySockets {
    pub(crate) fn new(
        v4: Option<RelayAddress>,
        v6: Option<RelayAddress>,
        ports: RangeInclusive<u16>,
    ) -> Self {
        let pool = |addr| FamilyPool {
            addr,
            pool: PortPool::new(ports.clone(), random_seed()),
        };
        RelaySockets {
            v4: v4.map(pool),
            v6: v6.map(pool),
            slab: Slab::new(),
        }
    }

    /// Binds (or takes from a reservation) a relay socket and registers it.
    pub(crate) fn bind(
        &mut self,
        family: Family,
        request: PortRequest,
        now: Instant,
        registry: &Registry,
    ) -> Result<RelayBinding, BindFailure> {
        let fp = match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
        .ok_or(BindFailure::Unsupported)?;
        let ip = fp.addr.bind;
        let acquired = fp.pool.acquire(request, now, &mut |port| {
            bind_udp(SocketAddr::new(ip, port))
        })?;
        let port = acquired.port;
        let advertised = SocketAddr::new(fp.addr.advertised, port);
        let socket = mio::net::UdpSocket::from_std(acquired.socket);
        let Some(index) = self.slab.insert(RelaySocket {
            socket,
            family,
            port,
        }) else {
            fp.pool.release(port);
            return Err(BindFailure::NoPorts);
        };
        let registered = match self.slab.get_mut(index) {
            Some(rs) => registry
                .register(
                    &mut rs.socket,
                    token(TokenKind::Relay, index),
                    Interest::READABLE,
                )
                .is_ok(),
            None => false,
        };
        if !registered {
            self.slab.remove(index);
            fp.pool.release(port);
            return Err(BindFailure::NoPorts);
        }
        Ok(RelayBinding {
            handle: RelayHandle(index),
            addr: advertised,
            reservation: acquired.reservation,
        })
    }

    /// Closes a relay socket and returns its port.
    pub(crate) fn free(&mut self, relay: RelayHandle, registry: &Registry) {
        let Some(mut rs) = self.slab.remove(relay.0) else {
            return;
        };
        let _ = registry.deregister(&mut rs.socket);
        let fp = match rs.family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        };
        if let Some(fp) = fp {
            fp.pool.release(rs.port);
        }
    }

    pub(crate) fn socket(&self, relay: RelayHandle) -> Option<&mio::net::UdpSocket> {
        self.slab.get(relay.0).map(|rs| &rs.socket)
    }

    /// Closes reserved sockets nobody claimed in time.
    pub(crate) fn expire(&mut self, now: Instant) {
        for fp in self.v4.iter_mut().chain(self.v6.iter_mut()) {
            fp.pool.expire(now);
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn reservations(&self) -> usize {
        self.v4
            .iter()
            .chain(self.v6.iter())
            .map(|fp| fp.pool.reservations())
            .sum()
    }
}

/// A nonblocking UDP socket bound to `addr` (IPv6 sockets are v6-only).
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

pub(crate) fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5EED);
        b = t.to_le_bytes();
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_real_sockets_on_loopback() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let poll = mio::Poll::new().unwrap();
        let addr = RelayAddress {
            bind: ip,
            advertised: "192.0.2.7".parse().unwrap(),
        };
        let mut sockets = RelaySockets::new(Some(addr), None, 40000..=60000);
        let now = Instant::now();
        let b = sockets
            .bind(Family::V4, PortRequest::Any, now, poll.registry())
            .unwrap();
        assert_eq!(b.addr.ip(), addr.advertised);
        let local = sockets.socket(b.handle).unwrap().local_addr().unwrap();
        assert_eq!(local, SocketAddr::new(ip, b.addr.port()));
        assert_eq!(
            sockets
                .bind(Family::V6, PortRequest::Any, now, poll.registry())
                .unwrap_err(),
            BindFailure::Unsupported
        );
        sockets.free(b.handle, poll.registry());
        assert_eq!(sockets.active(), 0);
        assert!(sockets.socket(b.handle).is_none());
    }
}
