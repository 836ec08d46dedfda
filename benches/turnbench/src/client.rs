//! The TURN client side of the bench: request encoding with long-term
//! credentials (RFC 8489 §9.2) and TURN REST usernames, and an epoll-driven
//! engine that runs many clients' Allocate → (CreatePermission → ChannelBind)
//! exchanges concurrently, each client on its own UDP socket (its own 5-tuple).

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use turn_core::stun::{attr, Class, Message, MessageBuilder, Method, TransactionId};

use crate::sys::Epoll;

/// TURN REST credentials: username `<expiry>:<user>`, password
/// base64(HMAC-SHA1(secret, username)) — what both our relay
/// (`--static-auth-secret`) and coturn (`use-auth-secret`) accept.
#[derive(Clone)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

impl Creds {
    pub fn rest(secret: &str, user: &str, ttl_secs: u64) -> Creds {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let username = format!("{}:{}", now + ttl_secs, user);
        let password = turn_core::auth::rest_password(secret.as_bytes(), &username);
        Creds { username, password }
    }
}

/// The realm and nonce learnt from a 401 (or 438) answer, and the key derived
/// from them (RFC 8489 §9.2.2, MD5 algorithm).
#[derive(Clone)]
pub struct Auth {
    pub realm: String,
    pub nonce: Vec<u8>,
    pub key: [u8; 16],
}

/// Client IP number `i` in 127.1.0.1 … (skipping .0 and .255 host parts).
pub fn client_ip(i: usize) -> std::net::Ipv4Addr {
    let hi = i / 254;
    let lo = (i % 254) + 1;
    std::net::Ipv4Addr::new(
        127,
        1 + ((hi >> 8) & 0x7f) as u8,
        (hi & 0xff) as u8,
        lo as u8,
    )
}

/// A UDP socket bound to `ip:0` with the given buffer sizes.
pub fn udp_socket(
    ip: std::net::Ipv4Addr,
    buf_bytes: usize,
    nonblocking: bool,
) -> Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if buf_bytes > 0 {
        let _ = s.set_recv_buffer_size(buf_bytes);
        let _ = s.set_send_buffer_size(buf_bytes);
    }
    s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())
        .with_context(|| format!("bind {ip}:0"))?;
    s.set_nonblocking(nonblocking)?;
    Ok(s.into())
}

fn txid(seq: u64) -> TransactionId {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&seq.to_be_bytes());
    t[8..].copy_from_slice(&(std::process::id()).to_be_bytes());
    TransactionId(t)
}

fn with_auth(mut b: MessageBuilder, creds: &Creds, auth: &Auth) -> Vec<u8> {
    b.long_term_credentials(&creds.username, &auth.realm, &auth.nonce, &auth.key)
        .fingerprint();
    b.finish()
}

/// Allocate request, without credentials when `auth` is None (the first
/// request, answered 401 with REALM and NONCE: RFC 8656 §7.2, RFC 8489 §9.2.3).
pub fn allocate(t: TransactionId, creds: &Creds, auth: Option<&Auth>) -> Vec<u8> {
    let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, t);
    b.attribute(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    match auth {
        Some(a) => with_auth(b, creds, a),
        None => {
            b.fingerprint();
            b.finish()
        }
    }
}

pub fn create_permission(
    t: TransactionId,
    peer: SocketAddr,
    creds: &Creds,
    auth: &Auth,
) -> Vec<u8> {
    let mut b = MessageBuilder::new(Method::CREATE_PERMISSION, Class::Request, t);
    b.xor_address(attr::XOR_PEER_ADDRESS, peer);
    with_auth(b, creds, auth)
}

pub fn channel_bind(
    t: TransactionId,
    channel: u16,
    peer: SocketAddr,
    creds: &Creds,
    auth: &Auth,
) -> Vec<u8> {
    let mut b = MessageBuilder::new(Method::CHANNEL_BIND, Class::Request, t);
    let c = channel.to_be_bytes();
    b.attribute(attr::CHANNEL_NUMBER, &[c[0], c[1], 0, 0]);
    b.xor_address(attr::XOR_PEER_ADDRESS, peer);
    with_auth(b, creds, auth)
}

/// Refresh with LIFETIME 0: deletes the allocation (RFC 8656 §7.3).
pub fn refresh_zero(t: TransactionId, creds: &Creds, auth: &Auth) -> Vec<u8> {
    let mut b = MessageBuilder::new(Method::REFRESH, Class::Request, t);
    b.u32(attr::LIFETIME, 0);
    with_auth(b, creds, auth)
}

/// What a response says, as far as the engine cares.
pub enum Answer {
    Success {
        relayed: Option<SocketAddr>,
    },
    /// 401 or 438: retry with these realm and nonce.
    Challenge {
        realm: String,
        nonce: Vec<u8>,
    },
    Error(u16),
}

pub fn parse_answer(buf: &[u8]) -> Option<(TransactionId, Answer)> {
    let m = Message::parse(buf).ok()?;
    let t = m.transaction_id();
    match m.class() {
        Class::Success => {
            let relayed = m
                .attribute(attr::XOR_RELAYED_ADDRESS)
                .and_then(|a| turn_core::stun::decode_xor_address(a.value, &t).ok());
            Some((t, Answer::Success { relayed }))
        }
        Class::Error => {
            let code = m
                .attribute(attr::ERROR_CODE)
                .and_then(|a| turn_core::stun::decode_error_code(a.value).ok())
                .map(|(c, _)| c)
                .unwrap_or(0);
            if code == 401 || code == 438 {
                let realm = m
                    .attribute(attr::REALM)
                    .and_then(|a| std::str::from_utf8(a.value).ok())
                    .map(str::to_owned);
                let nonce = m.attribute(attr::NONCE).map(|a| a.value.to_vec());
                if let (Some(realm), Some(nonce)) = (realm, nonce) {
                    return Some((t, Answer::Challenge { realm, nonce }));
                }
            }
            Some((t, Answer::Error(code)))
        }
        _ => None,
    }
}

/// Where one client is in its exchange.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Unauthenticated Allocate sent, 401 expected.
    Challenge,
    Allocate,
    Permission,
    Bind,
    Release,
    Done,
    Failed,
}

/// One client of the engine: its socket and what it learnt.
pub struct Client {
    pub sock: UdpSocket,
    pub relayed: Option<SocketAddr>,
    pub auth: Option<Auth>,
    /// Peer to permit and bind a channel to after the Allocate.
    pub peer: Option<SocketAddr>,
    pub channel: u16,
    step: Step,
    txid: TransactionId,
    msg: Vec<u8>,
    sent_at: Instant,
    /// When its first request went out (for the time to allocate).
    started: Instant,
    tries: u32,
    challenges: u32,
}

impl Client {
    pub fn ok(&self) -> bool {
        self.step == Step::Done
    }
}

/// Counters of one engine run.
#[derive(Default, Debug, Clone)]
pub struct EngineStats {
    pub requests: u64,
    pub retransmits: u64,
    pub challenges: u64,
    pub errors: u64,
    pub failed: u64,
    pub done: u64,
    /// Microseconds from the first request to the success, per client done
    /// (allocation runs, not releases).
    pub latencies_us: Vec<u64>,
}

impl EngineStats {
    /// The `q` quantile (0..=1) of `latencies_us`, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let mut v = self.latencies_us.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v.get(i).map(|us| *us as f64 / 1000.0)
    }
}

impl std::ops::AddAssign<&EngineStats> for EngineStats {
    fn add_assign(&mut self, o: &EngineStats) {
        self.requests += o.requests;
        self.retransmits += o.retransmits;
        self.challenges += o.challenges;
        self.errors += o.errors;
        self.failed += o.failed;
        self.done += o.done;
        self.latencies_us.extend_from_slice(&o.latencies_us);
    }
}

/// Runs TURN exchanges for many clients at once, at most `concurrency` in flight.
pub struct Engine {
    pub server: SocketAddr,
    pub creds: Creds,
    pub concurrency: usize,
    pub rto: Duration,
    pub max_tries: u32,
    pub deadline: Instant,
    seq: u64,
}

impl Engine {
    pub fn new(server: SocketAddr, creds: Creds, concurrency: usize, deadline: Instant) -> Engine {
        Engine {
            server,
            creds,
            concurrency: concurrency.max(1),
            rto: Duration::from_millis(500),
            max_tries: 7,
            deadline,
            seq: 1,
        }
    }

    fn next_txid(&mut self) -> TransactionId {
        self.seq += 1;
        txid(self.seq)
    }

    pub fn new_client(sock: UdpSocket, peer: Option<SocketAddr>, channel: u16) -> Client {
        Client {
            sock,
            relayed: None,
            auth: None,
            peer,
            channel,
            step: Step::Challenge,
            txid: txid(0),
            msg: Vec::new(),
            sent_at: Instant::now(),
            started: Instant::now(),
            tries: 0,
            challenges: 0,
        }
    }

    fn send(&mut self, c: &mut Client, step: Step, stats: &mut EngineStats) {
        c.step = step;
        c.txid = self.next_txid();
        let creds = &self.creds;
        c.msg = match (step, &c.auth) {
            (Step::Challenge, _) => allocate(c.txid, creds, None),
            (Step::Allocate, Some(a)) => allocate(c.txid, creds, Some(a)),
            (Step::Permission, Some(a)) => match c.peer {
                Some(p) => create_permission(c.txid, p, creds, a),
                None => Vec::new(),
            },
            (Step::Bind, Some(a)) => match c.peer {
                Some(p) => channel_bind(c.txid, c.channel, p, creds, a),
                None => Vec::new(),
            },
            (Step::Release, Some(a)) => refresh_zero(c.txid, creds, a),
            _ => Vec::new(),
        };
        if c.msg.is_empty() {
            c.step = Step::Failed;
            return;
        }
        c.tries = 1;
        c.sent_at = Instant::now();
        stats.requests += 1;
        let _ = c.sock.send_to(&c.msg, self.server);
    }

    /// Moves `c` on after a success answer.
    fn advance(&mut self, c: &mut Client, stats: &mut EngineStats) {
        let next = match c.step {
            Step::Allocate if c.peer.is_some() => Step::Permission,
            Step::Permission => Step::Bind,
            _ => Step::Done,
        };
        if next == Step::Done {
            c.step = Step::Done;
            stats.done += 1;
            stats
                .latencies_us
                .push(c.started.elapsed().as_micros() as u64);
        } else {
            self.send(c, next, stats);
        }
    }

    /// Allocates (and binds, when a client has a peer) every client (sockets
    /// must be non-blocking); with
    /// `release`, instead deletes the allocations of clients that hold one.
    /// Returns when every client is done or failed, or at the deadline.
    pub fn run(&mut self, clients: &mut [Client], release: bool) -> Result<EngineStats> {
        let mut stats = EngineStats::default();
        let mut ep = Epoll::new(1024)?;
        let mut next = 0usize;
        let mut in_flight: Vec<usize> = Vec::with_capacity(self.concurrency);
        let mut ready = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            while in_flight.len() < self.concurrency && next < clients.len() {
                let i = next;
                next += 1;
                let c = &mut clients[i];
                if release {
                    if c.step != Step::Done || c.auth.is_none() {
                        continue;
                    }
                    ep.add(c.sock.as_raw_fd(), i as u64)?;
                    c.challenges = 0;
                    self.send(c, Step::Release, &mut stats);
                } else {
                    ep.add(c.sock.as_raw_fd(), i as u64)?;
                    // Every client pays the 401 round trip: a nonce learnt by
                    // another client of the same IP is not reused.
                    c.started = Instant::now();
                    self.send(c, Step::Challenge, &mut stats);
                }
                in_flight.push(i);
            }
            if in_flight.is_empty() {
                break;
            }
            if Instant::now() > self.deadline {
                for &i in &in_flight {
                    clients[i].step = Step::Failed;
                    stats.failed += 1;
                }
                break;
            }
            ep.wait(20, &mut ready)?;
            for &tok in &ready {
                let i = tok as usize;
                let Some(c) = clients.get_mut(i) else {
                    continue;
                };
                while let Ok((n, _from)) = c.sock.recv_from(&mut buf) {
                    let Some((t, answer)) = parse_answer(&buf[..n]) else {
                        continue;
                    };
                    if t != c.txid {
                        continue; // an answer to an earlier retransmission
                    }
                    match answer {
                        Answer::Challenge { realm, nonce } => {
                            stats.challenges += 1;
                            c.challenges += 1;
                            // A second 401 on an authenticated request means wrong
                            // credentials; a 438 (stale nonce) is retried once.
                            if c.challenges <= 2 {
                                let key = turn_core::stun::long_term_key(
                                    &self.creds.username,
                                    &realm,
                                    &self.creds.password,
                                );
                                c.auth = Some(Auth { realm, nonce, key });
                                let step = if c.step == Step::Challenge {
                                    Step::Allocate
                                } else {
                                    c.step
                                };
                                self.send(c, step, &mut stats);
                            } else {
                                c.step = Step::Failed;
                            }
                        }
                        Answer::Success { relayed } => {
                            if c.step == Step::Allocate {
                                c.relayed = relayed;
                            }
                            if c.step == Step::Release {
                                c.step = Step::Done;
                                stats.done += 1;
                            } else if c.step == Step::Challenge {
                                // A server that does not challenge: allocated as is.
                                c.relayed = relayed;
                                c.step = Step::Done;
                                stats.done += 1;
                            } else {
                                self.advance(c, &mut stats);
                            }
                        }
                        Answer::Error(code) => {
                            stats.errors += 1;
                            if std::env::var_os("TURNBENCH_DEBUG").is_some() {
                                eprintln!("client {i}: error {code} at {:?}", c.step);
                            }
                            c.step = Step::Failed;
                        }
                    }
                    if matches!(c.step, Step::Done | Step::Failed) {
                        break;
                    }
                }
            }
            // Retransmissions (RFC 8489 §6.2.1, simplified: fixed RTO).
            let now = Instant::now();
            let mut k = 0;
            while k < in_flight.len() {
                let i = in_flight[k];
                let c = &mut clients[i];
                let finished = matches!(c.step, Step::Done | Step::Failed);
                if !finished && now.duration_since(c.sent_at) > self.rto {
                    if c.tries >= self.max_tries {
                        c.step = Step::Failed;
                    } else {
                        c.tries += 1;
                        c.sent_at = now;
                        stats.retransmits += 1;
                        let _ = c.sock.send_to(&c.msg, self.server);
                    }
                }
                if matches!(c.step, Step::Done | Step::Failed) {
                    if c.step == Step::Failed {
                        stats.failed += 1;
                    }
                    let _ = ep.remove(c.sock.as_raw_fd());
                    in_flight.swap_remove(k);
                } else {
                    k += 1;
                }
            }
        }
        Ok(stats)
    }
}

/// Blocking helper for one client: Allocate with the 401 round trip, then
/// CreatePermission and ChannelBind to `peer`. Used by tests and small setups.
pub fn setup_one(
    server: SocketAddr,
    creds: &Creds,
    sock: UdpSocket,
    peer: SocketAddr,
    channel: u16,
) -> Result<Client> {
    let mut e = Engine::new(
        server,
        creds.clone(),
        1,
        Instant::now() + Duration::from_secs(10),
    );
    let mut cs = vec![Engine::new_client(sock, Some(peer), channel)];
    let st = e.run(&mut cs, false)?;
    let Some(c) = cs.pop() else {
        bail!("no client")
    };
    if !c.ok() {
        bail!("TURN setup failed: {st:?}");
    }
    Ok(c)
}
