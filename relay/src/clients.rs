//! The client side of a worker: UDP listeners, TCP/TLS listeners and the slab
//! of client connections, and delivery of packets to any client.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::{Interest, Registry};
use rustls::{ServerConfig, ServerConnection};
use socket2::{Domain, Protocol, Socket, Type};
use turn_core::stats::DropReason;
use turn_core::{ClientSocket, Stats, Transport};

use crate::config::{Listeners, RelayConfig};
use crate::error::StartError;
use crate::slab::Slab;
use crate::stats::ShellStats;
use crate::stream::{Conn, SendOutcome, IDLE_TIMEOUT, STALL_TIMEOUT};
use crate::sys::{set_reuse_port, udp_send};
use crate::token::{token, TokenKind, CONN_INTEREST};

/// One socket the relay listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A bound listener, before it is handed to a worker.
#[derive(Debug)]
pub(crate) enum Listener {
    Udp(std::net::UdpSocket, SocketAddr),
    Stream(std::net::TcpListener, SocketAddr, Transport),
}

impl Listener {
    pub(crate) fn bound(&self) -> Bound {
        match self {
            Listener::Udp(_, addr) => Bound {
                transport: Transport::Udp,
                addr: *addr,
            },
            Listener::Stream(_, addr, transport) => Bound {
                transport: *transport,
                addr: *addr,
            },
        }
    }
}

/// Binds every configured listener (UDP, TCP, TLS on every listening IP), one
/// set per worker. With several workers every set shares the same addresses
/// through SO_REUSEPORT: the kernel hashes a UDP 5-tuple to one worker, and a
/// TCP connection lives on the worker whose listener accepted it.
pub(crate) fn bind_listeners(
    l: &Listeners,
    workers: usize,
) -> Result<Vec<Vec<Listener>>, StartError> {
    let workers = workers.max(1);
    let shared = workers > 1;
    let mut sets: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for ip in &l.ips {
        if let Some(port) = l.udp_port {
            let addr = SocketAddr::new(*ip, port);
            let err = |source| StartError::Bind {
                transport: "udp",
                addr,
                source,
            };
            // SO_REUSEPORT would let a second relay on the same port silently
            // take half the traffic: check first that nobody holds the port.
            let addr = if shared {
                probe(addr, false).map_err(err)?
            } else {
                addr
            };
            for set in &mut sets {
                let socket = bind_udp_listener(addr, shared).map_err(err)?;
                let local = socket.local_addr().map_err(err)?;
                set.push(Listener::Udp(socket, local));
            }
        }
        let stream_ports = l.tcp_port.map(|p| (p, Transport::Tcp)).into_iter();
        let tls_ports = l.tls_ports.iter().map(|p| (*p, Transport::Tls));
        for (port, transport) in stream_ports.chain(tls_ports) {
            let addr = SocketAddr::new(*ip, port);
            let err = |source| StartError::Bind {
                transport: transport.as_str(),
                addr,
                source,
            };
            let addr = if shared {
                probe(addr, true).map_err(err)?
            } else {
                addr
            };
            for set in &mut sets {
                let listener = bind_tcp(addr, shared).map_err(err)?;
                let local = listener.local_addr().map_err(err)?;
                set.push(Listener::Stream(listener, local, transport));
            }
        }
    }
    Ok(sets)
}

/// Binds `addr` without SO_REUSEPORT and lets go: fails if another socket
/// holds it; returns the address with the port the OS chose for port 0.
fn probe(addr: SocketAddr, stream: bool) -> io::Result<SocketAddr> {
    let ty = if stream { Type::STREAM } else { Type::DGRAM };
    let protocol = if stream { Protocol::TCP } else { Protocol::UDP };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if stream {
        socket.set_reuse_address(true)?;
    }
    socket.bind(&addr.into())?;
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

fn bind_udp_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.set_nonblocking(true)?;
    // Bigger receive buffers ride out bursts; the kernel caps this at
    // net.core.rmem_max, so failure is not an error.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Restart without waiting for TIME_WAIT. SO_REUSEPORT only between our own
    // workers (see `probe`): a second relay on the same port fails loudly.
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub(crate) struct UdpListener {
    pub socket: mio::net::UdpSocket,
    pub local: SocketAddr,
}

struct StreamListener {
    socket: mio::net::TcpListener,
    local: SocketAddr,
    transport: Transport,
    /// Accepting failed (out of file descriptors): retry on the next sweep.
    retry: bool,
}

/// Why a client connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Client,
    Error,
    Garbage,
    TooLarge,
    Stalled,
    Idle,
    /// No allocation by `--tcp-auth-deadline`.
    Unauthenticated,
}

/// Open TCP and TLS connections per client IP over every worker, so that
/// one address cannot hold every connection slot. Taken when a connection is
/// accepted and when it closes, never per packet.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnsPerIp(Arc<Mutex<HashMap<IpAddr, u32>>>);

impl ConnsPerIp {
    /// Counts one more connection of `ip` unless it has `max` open.
    fn try_acquire(&self, ip: IpAddr, max: u32) -> bool {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

pub(crate) struct Clients {
    pub udp: Vec<UdpListener>,
    listeners: Vec<StreamListener>,
    pub conns: Slab<Conn>,
    by_client: HashMap<ClientSocket, u32>,
    closes: Vec<(u32, CloseReason)>,
    tls: Option<Arc<ServerConfig>>,
    /// TLS clients offering ALPN `h2` are handed here (see [`nexrtc_quic::h2`]).
    h2: Option<nexrtc_quic::H2Sink>,
    shell: Arc<ShellStats>,
    max_conns: usize,
    per_ip: ConnsPerIp,
    max_per_ip: u32,
    /// A connection without an allocation for this long is closed, whatever
    /// it sends (Binding requests included).
    auth_deadline: Duration,
    /// A connection with an allocation that sends nothing for this long has
    /// none any more: every allocation needs a Refresh within its lifetime.
    idle_allocated: Duration,
}

impl Clients {
    pub(crate) fn new(
        config: &RelayConfig,
        listeners: Vec<Listener>,
        tls: Option<Arc<ServerConfig>>,
        h2: Option<nexrtc_quic::H2Sink>,
        shell: Arc<ShellStats>,
        per_ip: ConnsPerIp,
        registry: &Registry,
    ) -> io::Result<Clients> {
        let mut c = Clients {
            udp: Vec::new(),
            listeners: Vec::new(),
            conns: Slab::new(),
            by_client: HashMap::new(),
            closes: Vec::new(),
            tls,
            h2,
            shell,
            // The limit is the host's: each worker takes its share.
            max_conns: config
                .max_tcp_connections
                .div_ceil(config.relay_threads.max(1)),
            per_ip,
            max_per_ip: config.max_tcp_connections_per_ip,
            auth_deadline: config.tcp_auth_deadline,
            idle_allocated: config.core.max_lifetime + IDLE_TIMEOUT,
        };
        for l in listeners {
            match l {
                Listener::Udp(socket, local) => {
                    let mut socket = mio::net::UdpSocket::from_std(socket);
                    let t = token(TokenKind::Udp, c.udp.len() as u32);
                    registry.register(&mut socket, t, Interest::READABLE)?;
                    c.udp.push(UdpListener { socket, local });
                }
                Listener::Stream(socket, local, transport) => {
                    let mut socket = mio::net::TcpListener::from_std(socket);
                    let t = token(TokenKind::StreamListener, c.listeners.len() as u32);
                    registry.register(&mut socket, t, Interest::READABLE)?;
                    c.listeners.push(StreamListener {
                        socket,
                        local,
                        transport,
                        retry: false,
                    });
                }
            }
        }
        Ok(c)
    }

    /// Accepts pending connections on listener `index`; `false` when the budget
    /// ran out before the backlog did.
    pub(crate) fn accept(&mut self, index: u32, now: Instant, registry: &Registry) -> bool {
        for _ in 0..64 {
            let Some(l) = self.listeners.get_mut(index as usize) else {
                return true;
            };
            let (stream, remote) = match l.socket.accept() {
                Ok(x) => x,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return true,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        // EMFILE and friends: edge-triggered, so no new event
                        // would come for this backlog; retry from the sweep.
                        if !std::mem::replace(&mut l.retry, true) {
                            tracing::warn!(error = %e, "cannot accept connections");
                        }
                        return true;
                    }
                },
            };
            l.retry = false;
            let transport = l.transport;
            if self.conns.len() >= self.max_conns {
                self.shell.connections_rejected.inc();
                continue;
            }
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(l.local);
            let tls = match (transport, &self.tls) {
                (Transport::Tls, Some(cfg)) => match ServerConnection::new(cfg.clone()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a TLS session");
                        continue;
                    }
                },
                _ => None,
            };
            let client = ClientSocket {
                transport,
                remote,
                local,
            };
            if !self.per_ip.try_acquire(remote.ip(), self.max_per_ip) {
                self.shell.connections_rejected_per_ip.inc();
                continue;
            }
            // With the HTTP/2 fallback on, a TLS client's ClientHello is looked at first.
            let sniff = tls.is_some() && self.h2.is_some();
            let Some(index) = self
                .conns
                .insert(Conn::new(stream, client, tls, now).sniffing(sniff))
            else {
                self.per_ip.release(remote.ip());
                continue;
            };
            let t = token(TokenKind::Conn, index);
            let registered = self
                .conns
                .get_mut(index)
                .map(|c| registry.register(&mut c.stream, t, CONN_INTEREST));
            if !matches!(registered, Some(Ok(()))) {
                self.conns.remove(index);
                self.per_ip.release(remote.ip());
                continue;
            }
            self.by_client.insert(client, index);
            self.shell.connections_active[transport as usize].inc();
            self.shell.connections_total[transport as usize].inc();
        }
        false
    }

    pub(crate) fn retry_accepts(&mut self, now: Instant, registry: &Registry) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].retry {
                self.accept(i as u32, now, registry);
            }
        }
    }

    /// Sends one packet to a client over the socket or connection it uses.
    pub(crate) fn deliver(&mut self, client: ClientSocket, data: &[u8], stats: &Stats) {
        let sent = match client.transport {
            Transport::Udp => match self.udp.iter().find(|l| l.local == client.local) {
                Some(l) => udp_send(&l.socket, data, client.remote),
                None => false,
            },
            Transport::Tcp | Transport::Tls => match self.conn_of(&client) {
                Some((index, conn)) => match conn.send(data) {
                    SendOutcome::Sent => true,
                    SendOutcome::Dropped => false,
                    SendOutcome::Failed => {
                        self.schedule_close(index, CloseReason::Error);
                        false
                    }
                },
                None => false,
            },
        };
        if !sent {
            stats.dropped(DropReason::SendFailed).inc();
        }
    }

    fn conn_of(&mut self, client: &ClientSocket) -> Option<(u32, &mut Conn)> {
        let index = *self.by_client.get(client)?;
        self.conns.get_mut(index).map(|c| (index, c))
    }

    pub(crate) fn writable(&mut self, index: u32) {
        if let Some(conn) = self.conns.get_mut(index) {
            if conn.writable().is_err() {
                self.schedule_close(index, CloseReason::Error);
            }
        }
    }

    pub(crate) fn schedule_close(&mut self, index: u32, reason: CloseReason) {
        self.closes.push((index, reason));
    }

    pub(crate) fn take_closes(&mut self) -> Vec<(u32, CloseReason)> {
        std::mem::take(&mut self.closes)
    }

    /// Hands connection `index` (a TLS client that offered ALPN `h2`, its ClientHello
    /// still unread) to the QUIC relay's HTTP/2 fallback: it leaves this worker as a
    /// plain TCP socket and stops counting here.
    pub(crate) fn hand_off(&mut self, index: u32, registry: &Registry) {
        let Some(mut conn) = self.conns.remove(index) else {
            return;
        };
        let _ = registry.deregister(&mut conn.stream);
        if self.by_client.get(&conn.client) == Some(&index) {
            self.by_client.remove(&conn.client);
        }
        self.shell.connections_active[conn.client.transport as usize].sub(1);
        self.per_ip.release(conn.client.remote.ip());
        let stream = std::net::TcpStream::from(conn.stream);
        if !self.h2.as_ref().is_some_and(|h2| h2.hand_off(stream)) {
            self.shell.connections_rejected.inc();
        }
    }

    /// Closes connection `index`; returns its client if it was open.
    pub(crate) fn close(
        &mut self,
        index: u32,
        reason: CloseReason,
        registry: &Registry,
    ) -> Option<ClientSocket> {
        let mut conn = self.conns.remove(index)?;
        if !matches!(reason, CloseReason::Error | CloseReason::Client) {
            conn.close();
        }
        let _ = registry.deregister(&mut conn.stream);
        if self.by_client.get(&conn.client) == Some(&index) {
            self.by_client.remove(&conn.client);
        }
        self.shell.connections_active[conn.client.transport as usize].sub(1);
        self.per_ip.release(conn.client.remote.ip());
        Some(conn.client)
    }

    /// Schedules closes of stalled, idle and unauthenticated connections
    /// (once a second). A connection whose client holds an allocation (the
    /// core says) may stay quiet longer: its allocation keeps it alive with
    /// Refreshes. One without an allocation (not yet, or no longer: deleted,
    /// expired, revoked) is closed at the auth deadline: an allocation needs
    /// an authenticated Allocate, so only a client with valid credentials
    /// keeps a connection.
    pub(crate) fn sweep(&mut self, now: Instant, server: &turn_core::Server) {
        let mut closes = Vec::new();
        for index in self.conns.indices().collect::<Vec<_>>() {
            let Some(c) = self.conns.get_mut(index) else {
                continue;
            };
            let allocated = server.has_allocation(&c.client);
            if allocated {
                c.unallocated_since = None;
            } else {
                c.unallocated_since.get_or_insert(now);
            }
            let stalled = c
                .partial_since
                .is_some_and(|t| now.duration_since(t) >= STALL_TIMEOUT)
                || (c.is_handshaking() && now.duration_since(c.opened) >= STALL_TIMEOUT);
            let idle_limit = if allocated {
                self.idle_allocated
            } else {
                IDLE_TIMEOUT
            };
            if stalled {
                closes.push((index, CloseReason::Stalled));
            } else if c
                .unallocated_since
                .is_some_and(|t| now.duration_since(t) >= self.auth_deadline)
            {
                closes.push((index, CloseReason::Unauthenticated));
            } else if now.duration_since(c.last_rx) >= idle_limit {
                closes.push((index, CloseReason::Idle));
            }
        }
        self.closes.extend(closes);
    }

    /// At shutdown: close_notify to TLS clients, then drop everything.
    pub(crate) fn close_all(&mut self) {
        for index in self.conns.indices().collect::<Vec<_>>() {
            if let Some(mut c) = self.conns.remove(index) {
                c.close();
                self.per_ip.release(c.client.remote.ip());
            }
        }
    }
}
