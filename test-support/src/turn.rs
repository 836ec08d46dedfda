//! A blocking TURN client for tests, over UDP or TCP, written with `turn-core`'s STUN
//! codec: Allocate (with the 401 round that learns realm and nonce), Refresh,
//! CreatePermission, ChannelBind, Send indications and ChannelData out, Data indications
//! and ChannelData in.
//!
//! Requests are signed with long-term credentials (RFC 8489 §9.2) once a 401 gave the
//! realm and nonce. Over UDP a request is retransmitted every RTO until the time limit
//! ([`TurnClient::with_timeouts`]; 500 ms and 10 s unless set); over TCP it is sent once.
//! Anything else the server sends while a request waits for its answer (ChannelData, Data
//! indications) is kept for [`TurnClient::recv`] and [`TurnClient::recv_relayed`].

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use turn_core::auth::rest_password;
use turn_core::stun::{
    attr, channel_data_header, decode_address, decode_error_code, decode_utf8, decode_xor_address,
    frame_len, long_term_key, parse_channel_data, Class, Message, MessageBuilder, Method,
    TransactionId, HEADER_LEN,
};

/// The longest ChannelData payload [`TurnClient::send_channel_data`] sends (it builds the
/// message on the stack, so that sending allocates nothing).
pub const MAX_CHANNEL_PAYLOAD: usize = 4096;

/// TURN REST credentials `(username, password)` for `user`, valid for an hour: username
/// `<expiry>:<user>`, password `base64(HMAC-SHA1(secret, username))`.
pub fn rest_credentials(secret: &str, user: &str) -> (String, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let username = format!("{}:{user}", now + 3600);
    let password = rest_password(secret.as_bytes(), &username);
    (username, password)
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Nothing within the time limit.
    Timeout,
    /// The server closed the TCP connection (or reset it).
    Closed,
}

/// A STUN response (success or error) to one of our requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer(Vec<u8>);

impl Answer {
    /// The parsed message.
    pub fn message(&self) -> Message<'_> {
        // Checked when the answer was received.
        Message::parse(&self.0).expect("an answer parsed when received")
    }

    /// 200 for a success; an error's ERROR-CODE (0 when it has none).
    pub fn code(&self) -> u16 {
        let msg = self.message();
        if msg.class() == Class::Success {
            return 200;
        }
        msg.attribute(attr::ERROR_CODE)
            .and_then(|a| decode_error_code(a.value).ok())
            .map_or(0, |(code, _)| code)
    }

    /// An error's reason phrase (empty for a success).
    pub fn reason(&self) -> String {
        self.message()
            .attribute(attr::ERROR_CODE)
            .and_then(|a| decode_error_code(a.value).ok())
            .map(|(_, reason)| reason.to_owned())
            .unwrap_or_default()
    }

    /// XOR-RELAYED-ADDRESS of an Allocate success.
    pub fn relayed(&self) -> Option<SocketAddr> {
        let msg = self.message();
        msg.attribute(attr::XOR_RELAYED_ADDRESS).map(|a| {
            decode_xor_address(a.value, &msg.transaction_id()).expect("XOR-RELAYED-ADDRESS")
        })
    }

    /// ALTERNATE-SERVER of an error (300 Try Alternate).
    pub fn alternate(&self) -> Option<SocketAddr> {
        self.message()
            .attribute(attr::ALTERNATE_SERVER)
            .map(|a| decode_address(a.value).expect("ALTERNATE-SERVER"))
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let msg = self.message();
        write!(f, "{:?} {:?} {}", msg.method(), msg.class(), self.code())?;
        let reason = self.reason();
        if !reason.is_empty() {
            write!(f, " {reason:?}")?;
        }
        Ok(())
    }
}

/// Data the relay passed on from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// ChannelData on a bound channel.
    Channel { channel: u16, data: Vec<u8> },
    /// A Data indication from a permitted peer.
    Data { peer: SocketAddr, data: Vec<u8> },
}

enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Realm and nonce from a 401, and the key derived with them.
struct Auth {
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
}

/// One TURN client: one 5-tuple, one username. Every wait is bounded; I/O errors other
/// than timeouts panic (this is a test client).
pub struct TurnClient {
    link: Link,
    server: SocketAddr,
    username: String,
    password: String,
    auth: Option<Auth>,
    rto: Duration,
    timeout: Duration,
    txid_salt: u32,
    next_txid: Cell<u64>,
    /// Frames from the server read while waiting for an answer.
    pending: VecDeque<Vec<u8>>,
}

impl TurnClient {
    /// A client on a fresh UDP socket on loopback (127.0.0.1 or ::1, as `server`).
    pub fn udp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = UdpSocket::bind(local).expect("bind the client's UDP socket");
        TurnClient::new(Link::Udp(socket), server, username, password)
    }

    /// A client on a UDP socket the test bound itself (a chosen source address, or a
    /// socket made in another network namespace).
    pub fn over_udp(
        socket: UdpSocket,
        server: SocketAddr,
        username: &str,
        password: &str,
    ) -> TurnClient {
        TurnClient::new(Link::Udp(socket), server, username, password)
    }

    /// A client on a new TCP connection to `server`.
    pub fn tcp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {server}: {e}"));
        TurnClient::over_tcp(stream, username, password)
    }

    /// A client on a TCP connection the test opened itself (from a chosen source, say).
    pub fn over_tcp(stream: TcpStream, username: &str, password: &str) -> TurnClient {
        let server = stream.peer_addr().expect("a connected stream");
        TurnClient::new(Link::Tcp(stream), server, username, password)
    }

    fn new(link: Link, server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        TurnClient {
            link,
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            auth: None,
            rto: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            txid_salt: h.finish() as u32,
            next_txid: Cell::new(0),
            pending: VecDeque::new(),
        }
    }

    /// Retransmit every `rto` (UDP; `rto` ≥ `timeout` means never) and give up after
    /// `timeout`, which also bounds every receive.
    pub fn with_timeouts(mut self, rto: Duration, timeout: Duration) -> TurnClient {
        self.rto = rto;
        self.timeout = timeout;
        self
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The client's own address (its side of the 5-tuple).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.link {
            Link::Udp(s) => s.local_addr(),
            Link::Tcp(s) => s.local_addr(),
        }
        .expect("local address")
    }

    /// The TURN username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Allocate a UDP relayed address, first unauthenticated to learn realm and nonce
    /// (the 401), then signed. Panics when unanswered.
    pub fn allocate(&mut self) -> Answer {
        self.try_allocate()
            .unwrap_or_else(|e| panic!("Allocate at {}: {e:?}", self.server))
    }

    /// [`TurnClient::allocate`], telling an unanswered request from an answer. An error
    /// to the first, unauthenticated request that carries no realm and nonce is the
    /// answer; a success to it panics (the server must authenticate).
    pub fn try_allocate(&mut self) -> Result<Answer, NoAnswer> {
        self.try_allocate_family(false)
    }

    /// Allocate an IPv6 relayed address (REQUESTED-ADDRESS-FAMILY, RFC 6156 §4.1).
    /// Panics when unanswered.
    pub fn allocate_ipv6(&mut self) -> Answer {
        self.try_allocate_family(true)
            .unwrap_or_else(|e| panic!("Allocate at {}: {e:?}", self.server))
    }

    fn try_allocate_family(&mut self, ipv6: bool) -> Result<Answer, NoAnswer> {
        let transport = |b: &mut MessageBuilder| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            if ipv6 {
                b.attribute(attr::REQUESTED_ADDRESS_FAMILY, &[0x02, 0, 0, 0]);
            }
        };
        if self.auth.is_none() {
            let first = self.exchange(Method::ALLOCATE, &transport, false)?;
            let msg = first.message();
            match (
                msg.class(),
                msg.attribute(attr::REALM),
                msg.attribute(attr::NONCE),
            ) {
                (Class::Error, Some(realm), Some(nonce)) => {
                    let realm = decode_utf8(realm.value).expect("UTF-8 REALM").to_owned();
                    let key = long_term_key(&self.username, &realm, &self.password);
                    self.auth = Some(Auth {
                        realm,
                        nonce: nonce.value.to_vec(),
                        key,
                    });
                }
                (Class::Error, _, _) => return Ok(first),
                (class, _, _) => panic!("an unauthenticated Allocate was answered {class:?}"),
            }
        }
        self.exchange(Method::ALLOCATE, &transport, true)
    }

    /// Refresh with LIFETIME `lifetime` seconds (0 deletes the allocation).
    pub fn refresh(&mut self, lifetime: u32) -> Answer {
        self.request(Method::REFRESH, |b| {
            b.u32(attr::LIFETIME, lifetime);
        })
    }

    /// CreatePermission for the IPs of `peers` (one request).
    pub fn create_permission(&mut self, peers: &[SocketAddr]) -> Answer {
        self.request(Method::CREATE_PERMISSION, |b| {
            for peer in peers {
                b.xor_address(attr::XOR_PEER_ADDRESS, *peer);
            }
        })
    }

    /// ChannelBind `channel` to `peer`.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Answer {
        let [c0, c1] = channel.to_be_bytes();
        self.request(Method::CHANNEL_BIND, |b| {
            b.attribute(attr::CHANNEL_NUMBER, &[c0, c1, 0, 0])
                .xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
    }

    /// A Binding request, never signed.
    pub fn binding(&mut self) -> Result<Answer, NoAnswer> {
        self.exchange(Method::BINDING, &|_| {}, false)
    }

    /// A request of `method` with the attributes `attributes` adds, signed once the realm
    /// and nonce are known. Panics when unanswered.
    pub fn request(&mut self, method: Method, attributes: impl Fn(&mut MessageBuilder)) -> Answer {
        self.try_request(method, attributes)
            .unwrap_or_else(|e| panic!("{method:?} at {}: {e:?}", self.server))
    }

    /// [`TurnClient::request`], telling an unanswered request from an answer.
    pub fn try_request(
        &mut self,
        method: Method,
        attributes: impl Fn(&mut MessageBuilder),
    ) -> Result<Answer, NoAnswer> {
        self.exchange(method, &attributes, true)
    }

    /// A Send indication: `data` for `peer`.
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let mut b = MessageBuilder::new(Method::SEND, Class::Indication, self.txid());
        b.xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attribute(attr::DATA, data)
            .fingerprint();
        self.send(&b.finish());
    }

    /// ChannelData on `channel` (padded to 4 bytes over TCP). Allocates nothing.
    pub fn send_channel_data(&self, channel: u16, data: &[u8]) {
        assert!(
            data.len() <= MAX_CHANNEL_PAYLOAD,
            "ChannelData payload too long"
        );
        let mut frame = [0u8; 4 + MAX_CHANNEL_PAYLOAD + 3];
        frame[..4].copy_from_slice(&channel_data_header(channel, data.len() as u16));
        frame[4..4 + data.len()].copy_from_slice(data);
        let len = match self.link {
            Link::Udp(_) => 4 + data.len(),
            Link::Tcp(_) => 4 + data.len().next_multiple_of(4),
        };
        self.send(&frame[..len]);
    }

    /// The next datagram (UDP) or frame (TCP) from the server into `buf`: its length, or
    /// `None` when nothing came within the time limit (or the server closed TCP). Allocates
    /// nothing unless a frame kept while waiting for an answer is returned.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some(frame) = self.pending.pop_front() {
            buf[..frame.len()].copy_from_slice(&frame);
            return Some(frame.len());
        }
        let deadline = Instant::now() + self.timeout;
        self.read_frame(buf, deadline).ok()
    }

    /// The next ChannelData or Data indication from the server (other frames are
    /// skipped), or `None` when none came within the time limit.
    pub fn recv_relayed(&mut self) -> Option<Relayed> {
        let mut buf = vec![0u8; 65_536 + HEADER_LEN];
        let deadline = Instant::now() + self.timeout;
        loop {
            let n = match self.pending.pop_front() {
                Some(frame) => {
                    buf[..frame.len()].copy_from_slice(&frame);
                    frame.len()
                }
                None => self.read_frame(&mut buf, deadline).ok()?,
            };
            if let Some(relayed) = parse_relayed(&buf[..n]) {
                return Some(relayed);
            }
        }
    }

    fn txid(&self) -> TransactionId {
        self.next_txid.set(self.next_txid.get() + 1);
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&self.txid_salt.to_be_bytes());
        id[4..].copy_from_slice(&self.next_txid.get().to_be_bytes());
        TransactionId(id)
    }

    /// Sends a request and waits for its answer, retransmitting over UDP.
    fn exchange(
        &mut self,
        method: Method,
        attributes: &dyn Fn(&mut MessageBuilder),
        sign: bool,
    ) -> Result<Answer, NoAnswer> {
        let txid = self.txid();
        let mut b = MessageBuilder::new(method, Class::Request, txid);
        attributes(&mut b);
        if let (true, Some(auth)) = (sign, &self.auth) {
            b.long_term_credentials(&self.username, &auth.realm, &auth.nonce, &auth.key);
        }
        b.fingerprint();
        let request = b.finish();
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 65_536 + HEADER_LEN];
        loop {
            if !self.send(&request) {
                return Err(NoAnswer::Closed);
            }
            let resend = match self.link {
                Link::Udp(_) => (Instant::now() + self.rto).min(deadline),
                Link::Tcp(_) => deadline,
            };
            loop {
                match self.read_frame(&mut buf, resend) {
                    Ok(n) if is_answer_to(&buf[..n], txid) => {
                        return Ok(Answer(buf[..n].to_vec()));
                    }
                    Ok(n) => self.pending.push_back(buf[..n].to_vec()),
                    Err(NoAnswer::Timeout) => break,
                    Err(NoAnswer::Closed) => return Err(NoAnswer::Closed),
                }
            }
            if Instant::now() >= deadline {
                return Err(NoAnswer::Timeout);
            }
        }
    }

    /// Sends one datagram or frame; `false` when the TCP connection is gone.
    fn send(&self, bytes: &[u8]) -> bool {
        match &self.link {
            Link::Udp(s) => {
                // A full socket buffer only loses the datagram, as on a network.
                let _ = s.send_to(bytes, self.server);
                true
            }
            Link::Tcp(s) => {
                let mut s: &TcpStream = s;
                s.write_all(bytes).is_ok()
            }
        }
    }

    /// Reads one datagram from the server (others are ignored) or one TCP frame into
    /// `buf`, waiting until `deadline`.
    fn read_frame(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, NoAnswer> {
        match &mut self.link {
            Link::Udp(s) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(NoAnswer::Timeout);
                }
                s.set_read_timeout(Some(left)).expect("read timeout");
                match s.recv_from(buf) {
                    Ok((n, from)) if from == self.server => return Ok(n),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Err(NoAnswer::Timeout)
                    }
                    // An ICMP error reported late, say: as if the datagram was lost.
                    Err(_) => std::thread::sleep(left.min(Duration::from_millis(10))),
                }
            },
            Link::Tcp(s) => {
                let read = |s: &mut TcpStream, into: &mut [u8]| -> Result<(), NoAnswer> {
                    let left = deadline.saturating_duration_since(Instant::now());
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .expect("read timeout");
                    s.read_exact(into).map_err(|e| match e.kind() {
                        ErrorKind::WouldBlock | ErrorKind::TimedOut => NoAnswer::Timeout,
                        _ => NoAnswer::Closed,
                    })
                };
                read(s, &mut buf[..4])?;
                let len = match frame_len(&buf[..4]) {
                    Ok(Some(len)) => len,
                    _ => panic!(
                        "the server sent neither STUN nor ChannelData: {:02x?}",
                        &buf[..4]
                    ),
                };
                read(s, &mut buf[4..len])?;
                Ok(len)
            }
        }
    }
}

/// Whether `frame` is a response (success or error) with transaction ID `txid`.
fn is_answer_to(frame: &[u8], txid: TransactionId) -> bool {
    Message::parse(frame).is_ok_and(|m| {
        m.transaction_id() == txid && matches!(m.class(), Class::Success | Class::Error)
    })
}

/// A ChannelData message or Data indication, decoded.
fn parse_relayed(frame: &[u8]) -> Option<Relayed> {
    if let Ok(cd) = parse_channel_data(frame) {
        return Some(Relayed::Channel {
            channel: cd.channel,
            data: cd.payload.to_vec(),
        });
    }
    let msg = Message::parse(frame).ok()?;
    if (msg.method(), msg.class()) != (Method::DATA, Class::Indication) {
        return None;
    }
    let peer = msg.attribute(attr::XOR_PEER_ADDRESS)?;
    let peer = decode_xor_address(peer.value, &msg.transaction_id()).ok()?;
    let data = msg.attribute(attr::DATA)?.value.to_vec();
    Some(Relayed::Data { peer, data })
}
