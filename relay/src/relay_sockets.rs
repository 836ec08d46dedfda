//! Relay sockets: one UDP socket per allocation, in a slab indexed by
//! [`RelayHandle`], with ports from a [`PortPool`] per address family.

use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use mio::{Interest, Registry};
use socket2::{Domain, Protocol, Socket, Type};
use turn_core::{BindFailure, Family, PeerFilter, PortRequest, RelayBinding, RelayHandle};

use crate::config::RelayAddress;
use crate::port_pool::PortPool;
use crate::slab::Slab;
use crate::token::{token, TokenKind};

/// The port pool of one relay IP, shared by every worker: taken on Allocate
/// and when an allocation ends (never on the packet path), so a port, an
/// EVEN-PORT pair and a RESERVATION-TOKEN mean the same on every worker (a
/// token may come back from another client 5-tuple, hashed to another worker).
type SharedPool = Arc<Mutex<PortPool<std::net::UdpSocket>>>;

fn lock(pool: &SharedPool) -> MutexGuard<'_, PortPool<std::net::UdpSocket>> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every relay IP of the host with its port pool (cheap to clone: one per worker).
#[derive(Clone)]
pub(crate) struct PortPools {
    ips: Vec<(RelayAddress, SharedPool)>,
}

impl PortPools {
    /// Each pool publishes the ports it holds in the peer filter's set for
    /// its relay IP (see [`PeerFilter::relay_ip`]), so peers reach the
    /// relay's own addresses only on live relay sockets.
    pub(crate) fn new(
        addrs: &[RelayAddress],
        ports: RangeInclusive<u16>,
        filter: &PeerFilter,
    ) -> PortPools {
        PortPools {
            ips: addrs
                .iter()
                .map(|a| {
                    let held = filter.held_ports(a.bind).unwrap_or_default();
                    let pool = PortPool::new(ports.clone(), random_seed()).publishing(held);
                    (*a, Arc::new(Mutex::new(pool)))
                })
                .collect(),
        }
    }
}

impl std::fmt::Debug for PortPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<_> = self.ips.iter().map(|(a, _)| a.bind).collect();
        f.debug_struct("PortPools").field("ips", &addrs).finish()
    }
}

/// Bound QUIC tunnels take their sockets from the same pools as allocations: a port in
/// the relay range, on the first relay IP of the family, published as held so peers
/// (TURN clients of this relay among them) may reach it.
impl nexrtc_quic::RelayPorts for PortPools {
    fn bind(&self, v6: bool) -> Option<io::Result<(std::net::UdpSocket, SocketAddr)>> {
        let (addr, pool) = self.ips.iter().find(|(a, _)| a.bind.is_ipv6() == v6)?;
        let acquired = lock(pool).acquire(PortRequest::Any, Instant::now(), &mut |port| {
            bind_udp(SocketAddr::new(addr.bind, port))
        });
        Some(match acquired {
            Ok(a) => Ok((a.socket, SocketAddr::new(addr.advertised, a.port))),
            Err(failure) => Err(io::Error::other(format!("no relay port: {failure:?}"))),
        })
    }

    fn release(&self, local: SocketAddr) {
        if let Some((_, pool)) = self.ips.iter().find(|(a, _)| a.bind == local.ip()) {
            lock(pool).release(local.port());
        }
    }
}

struct FamilyPool {
    addr: RelayAddress,
    pool: SharedPool,
    /// `--multiplex-peer`: the shared sockets of this IP (slab indices).
    shared: Vec<u32>,
}

pub(crate) struct RelaySocket {
    pub socket: mio::net::UdpSocket,
    family: Family,
    /// Which `FamilyPool` of the family.
    ip: usize,
    port: u16,
    shared: bool,
}

/// Every relay socket of one worker.
pub(crate) struct RelaySockets {
    v4: Vec<FamilyPool>,
    v6: Vec<FamilyPool>,
    slab: Slab<RelaySocket>,
    /// Round robin over IPs (and shared sockets) for new allocations.
    next: usize,
    multiplexed: bool,
}

impl RelaySockets {
    /// One socket per allocation, or with `multiplex` shared sockets per relay
    /// IP, bound now (and kept for the worker's life).
    pub(crate) fn new(
        pools: &PortPools,
        multiplex: Option<u16>,
        now: Instant,
        registry: &Registry,
    ) -> io::Result<Self> {
        let mut rs = RelaySockets {
            v4: Vec::new(),
            v6: Vec::new(),
            slab: Slab::new(),
            next: 0,
            multiplexed: multiplex.is_some(),
        };
        for (addr, pool) in &pools.ips {
            let fp = FamilyPool {
                addr: *addr,
                pool: pool.clone(),
                shared: Vec::new(),
            };
            if addr.bind.is_ipv4() {
                rs.v4.push(fp);
            } else {
                rs.v6.push(fp);
            }
        }
        for family in [Family::V4, Family::V6] {
            let count = rs.family(family).len();
            for ip in 0..count {
                for _ in 0..multiplex.unwrap_or(0) {
                    let b = rs
                        .bind_on(family, ip, PortRequest::Any, now, registry, true)
                        .map_err(|f| io::Error::other(format!("shared relay socket: {f:?}")))?;
                    rs.family_mut(family)[ip].shared.push(b.handle.0);
                }
            }
        }
        Ok(rs)
    }

    fn family(&self, family: Family) -> &[FamilyPool] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn family_mut(&mut self, family: Family) -> &mut Vec<FamilyPool> {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    /// A relayed address for a new allocation: a new socket, or in multiplexed
    /// mode one of the shared sockets (round robin over IPs and sockets).
    pub(crate) fn bind(
        &mut self,
        family: Family,
        request: PortRequest,
        now: Instant,
        registry: &Registry,
    ) -> Result<RelayBinding, BindFailure> {
        let ips = self.family(family).len();
        if ips == 0 {
            return Err(BindFailure::Unsupported);
        }
        self.next = self.next.wrapping_add(1);
        if self.multiplexed {
            return self.pick_shared(family, request);
        }
        if let PortRequest::Reserved { .. } = request {
            // The token names a port of one IP: ask each.
            for ip in 0..ips {
                match self.bind_on(family, ip, request, now, registry, false) {
                    Err(BindFailure::UnknownToken) => continue,
                    other => return other,
                }
            }
            return Err(BindFailure::UnknownToken);
        }
        let mut last = BindFailure::NoPorts;
        for k in 0..ips {
            let ip = (self.next + k) % ips;
            match self.bind_on(family, ip, request, now, registry, false) {
                Ok(b) => return Ok(b),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Multiplexed mode: EVEN-PORT gets an even shared port; a reservation of
    /// port + 1 cannot be honoured on shared ports (508, RFC 8656 §7.2 lets
    /// the server refuse what it cannot reserve).
    fn pick_shared(
        &mut self,
        family: Family,
        request: PortRequest,
    ) -> Result<RelayBinding, BindFailure> {
        let fps = self.family(family);
        let total: usize = fps.iter().map(|f| f.shared.len()).sum();
        if total == 0 {
            return Err(BindFailure::NoPorts);
        }
        let want_even = match request {
            PortRequest::Any => false,
            PortRequest::Even {
                reserve_next: false,
            } => true,
            PortRequest::Even { reserve_next: true } => return Err(BindFailure::NoPorts),
            PortRequest::Reserved { .. } => return Err(BindFailure::UnknownToken),
        };
        for k in 0..total {
            let mut i = (self.next + k) % total;
            let Some(fp) = fps.iter().find(|f| {
                if i < f.shared.len() {
                    true
                } else {
                    i -= f.shared.len();
                    false
                }
            }) else {
                break;
            };
            let index = fp.shared[i];
            let Some(rs) = self.slab.get(index) else {
                continue;
            };
            if want_even && rs.port % 2 != 0 {
                continue;
            }
            return Ok(RelayBinding {
                handle: RelayHandle(index),
                addr: SocketAddr::new(fp.addr.advertised, rs.port),
                reservation: None,
                shared: true,
            });
        }
        Err(BindFailure::NoPorts)
    }

    /// Binds (or takes from a reservation) a socket on relay IP `ip` and registers it.
    fn bind_on(
        &mut self,
        family: Family,
        ip: usize,
        request: PortRequest,
        now: Instant,
        registry: &Registry,
        shared: bool,
    ) -> Result<RelayBinding, BindFailure> {
        let fp = self
            .family(family)
            .get(ip)
            .ok_or(BindFailure::Unsupported)?;
        let (addr, pool) = (fp.addr, fp.pool.clone());
        let acquired = lock(&pool).acquire(request, now, &mut |port| {
            bind_udp(SocketAddr::new(addr.bind, port))
        })?;
        let port = acquired.port;
        if shared {
            // Many allocations' traffic on one socket: room for bursts.
            let s = socket2::SockRef::from(&acquired.socket);
            let _ = s.set_recv_buffer_size(4 << 20);
            let _ = s.set_send_buffer_size(4 << 20);
        }
        let advertised = SocketAddr::new(addr.advertised, port);
        let socket = mio::net::UdpSocket::from_std(acquired.socket);
        let Some(index) = self.slab.insert(RelaySocket {
            socket,
            family,
            ip,
            port,
            shared,
        }) else {
            lock(&pool).release(port);
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
            lock(&pool).release(port);
            return Err(BindFailure::NoPorts);
        }
        Ok(RelayBinding {
            handle: RelayHandle(index),
            addr: advertised,
            reservation: acquired.reservation,
            shared,
        })
    }

    /// Closes a relay socket and returns its port (shared sockets stay).
    pub(crate) fn free(&mut self, relay: RelayHandle, registry: &Registry) {
        if self.slab.get(relay.0).is_none_or(|rs| rs.shared) {
            return;
        }
        let Some(mut rs) = self.slab.remove(relay.0) else {
            return;
        };
        let _ = registry.deregister(&mut rs.socket);
        if let Some(fp) = self.family(rs.family).get(rs.ip) {
            lock(&fp.pool).release(rs.port);
        }
    }

    pub(crate) fn socket(&self, relay: RelayHandle) -> Option<&mio::net::UdpSocket> {
        self.slab.get(relay.0).map(|rs| &rs.socket)
    }

    /// Closes reserved sockets nobody claimed in time (every worker sweeps
    /// the shared pools; the first to see an expiry does it).
    pub(crate) fn expire(&mut self, now: Instant) {
        for fp in self.v4.iter().chain(self.v6.iter()) {
            lock(&fp.pool).expire(now);
        }
    }

    /// Relay sockets this worker has open (shared ones included).
    pub(crate) fn active(&self) -> usize {
        self.slab.len()
    }

    /// Ports held under a RESERVATION-TOKEN, over the whole host.
    pub(crate) fn reservations(&self) -> usize {
        self.v4
            .iter()
            .chain(self.v6.iter())
            .map(|fp| lock(&fp.pool).reservations())
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
    use std::net::IpAddr;

    #[test]
    fn binds_real_sockets_on_loopback() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let poll = mio::Poll::new().unwrap();
        let addr = RelayAddress {
            bind: ip,
            advertised: "192.0.2.7".parse().unwrap(),
        };
        let now = Instant::now();
        let mut filter = PeerFilter::default();
        let held = filter.relay_ip(addr.bind, addr.advertised);
        let pools = PortPools::new(&[addr], 40000..=60000, &filter);
        let mut sockets = RelaySockets::new(&pools, None, now, poll.registry()).unwrap();
        let b = sockets
            .bind(Family::V4, PortRequest::Any, now, poll.registry())
            .unwrap();
        assert_eq!(b.addr.ip(), addr.advertised);
        let local = sockets.socket(b.handle).unwrap().local_addr().unwrap();
        assert_eq!(local, SocketAddr::new(ip, b.addr.port()));
        assert!(held.contains(b.addr.port()));
        assert!(filter.check(b.addr), "the relayed address is a peer");
        assert_eq!(
            sockets
                .bind(Family::V6, PortRequest::Any, now, poll.registry())
                .unwrap_err(),
            BindFailure::Unsupported
        );
        sockets.free(b.handle, poll.registry());
        assert_eq!(sockets.active(), 0);
        assert!(!filter.check(b.addr), "not once it is closed");
        assert!(sockets.socket(b.handle).is_none());
    }
}
