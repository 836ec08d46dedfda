//! The QUIC listener: one task per connection (h3 over quinn), one per tunnel.
//!
//! A connection's HTTP Datagrams are read once, by the connection's datagram task, and
//! handed to the tunnel whose request stream they name (the Quarter Stream ID, RFC 9297
//! §2.1); a tunnel's UDP socket is connected to its target, so what it receives is from
//! the target alone (RFC 9298 §5: the proxy relays only the target's datagrams). Capsules
//! on the request stream (RFC 9297 §3) are read too: DATAGRAM capsules are relayed like
//! datagrams, others skipped; the stream's end (or reset) ends the tunnel.
//!
//! Refusals follow RFC 9298 §3 and RFC 9209: 400 for a request that is not CONNECT-UDP
//! or names a malformed target, 407 with `Proxy-Authenticate` for missing or bad
//! credentials, 403 `destination_ip_prohibited` for a target the peer filter refuses,
//! 429 (the user's or tenant's quota; 503 when the relay is full) `connection_limit_reached`,
//! 502 `dns_error`, 503 `proxy_internal_response` while draining; each with a
//! `Proxy-Status` header naming the error. A tunnel counts in the TURN workers' quota
//! ledger as an allocation, and its bandwidth cap is an allocation's.
//! 0-RTT is refused: a CONNECT replayed by an attacker would open a tunnel.
//!
//! A request with `Connect-UDP-Bind: ?1` opens a bound tunnel instead ([`crate::bound`]):
//! sockets on the relay's public addresses, unconnected, and the client's compression
//! capsules deciding which peers it talks to. A datagram or capsule against the rules
//! aborts the request stream (H3_DATAGRAM_ERROR, H3_MESSAGE_ERROR).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use http::{Method, Response, StatusCode};
use nexrtc_metrics::{Counter, Registry};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use turn_core::{AllocationLedger, PeerFilter, QuotaRefusal, Quotas, TokenBucket};

use crate::access::{Access, User};
use crate::bound::{Contexts, EphemeralPorts, RelayPorts, Route};
use crate::codec::{
    get_capsule, get_varint, put_address, put_capsule, put_varint, Compression, DATAGRAM_CAPSULE,
};
use crate::stats::{Stats, TenantTraffic, Transport};
use crate::target::{parse_bound_path, parse_path, resolve, Names, TargetError};

/// What the listener needs.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// The UDP address to listen on.
    pub listen: SocketAddr,
    /// The relay's TLS configuration (its certificate resolver, so a reload applies); the
    /// listener sets ALPN `h3` and turns early data off on its own copy.
    pub tls: Arc<rustls::ServerConfig>,
    /// Which targets may be reached (the TURN relay's filter and its operator overrides).
    pub peer_filter: PeerFilter,
    /// The realm named in `Proxy-Authenticate`.
    pub realm: String,
    /// Tunnels (request streams) one connection may have open at once.
    pub max_tunnels_per_connection: u32,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Path MTU discovery (on by default): QUIC datagrams grow past 1200 bytes where the
    /// path carries them. Off, payloads over ~1150 bytes always go as capsules.
    pub mtu_discovery: bool,
    /// The quotas' counts, shared with the TURN workers: a tunnel counts as an allocation
    /// of its user and tenant.
    pub ledger: Arc<AllocationLedger>,
    /// Per-user, per-tenant and total allocations, and each tunnel's bandwidth cap
    /// (`allocation_bytes_per_sec`, each direction), as for TURN allocations.
    pub quotas: Quotas,
    /// Where the per-tenant traffic is counted (the relay's metrics read it).
    pub stats: Arc<Stats>,
    /// How target names resolve (`None`: the system's configuration, see [`Names`]).
    pub names: Option<Names>,
    /// Where bound tunnels' sockets come from (`None`: OS-chosen ports on the listening
    /// address, see [`EphemeralPorts`]).
    pub ports: Option<Arc<dyn RelayPorts>>,
}

impl QuicConfig {
    /// The defaults for `listen`, `tls` and `realm`: 64 tunnels per connection, 30 s idle,
    /// the default peer filter.
    pub fn new(listen: SocketAddr, tls: Arc<rustls::ServerConfig>, realm: &str) -> QuicConfig {
        QuicConfig {
            listen,
            tls,
            peer_filter: PeerFilter::default(),
            realm: realm.to_owned(),
            max_tunnels_per_connection: 64,
            idle_timeout: Duration::from_secs(30),
            mtu_discovery: true,
            ledger: Arc::new(AllocationLedger::new()),
            quotas: Quotas::default(),
            stats: Arc::default(),
            names: None,
            ports: None,
        }
    }
}

/// Why the listener did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    #[error("the TLS configuration cannot serve QUIC: {0}")]
    Tls(String),
    #[error("cannot listen on UDP {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The running QUIC relay.
#[derive(Debug)]
pub struct QuicRelay {
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    h2: crate::h2::H2Sink,
}

#[derive(Debug)]
pub(crate) struct Shared {
    access: Arc<Access>,
    filter: PeerFilter,
    pub(crate) realm: String,
    /// Set once by [`QuicRelay::drain`]; every connection watches it to send its GOAWAY.
    pub(crate) draining: tokio::sync::watch::Sender<bool>,
    metrics: Registry,
    counts: Counts,
    ledger: Arc<AllocationLedger>,
    quotas: Quotas,
    stats: Arc<Stats>,
    names: Names,
    ports: Arc<dyn RelayPorts>,
    /// Tunnels one connection may have open at once (HTTP/2's stream limit; QUIC's is in
    /// its transport configuration).
    pub(crate) max_tunnels_per_connection: u32,
}

/// Handles of the families touched per datagram (a registry lookup per packet is not).
#[derive(Debug)]
struct Counts {
    as_capsules: Counter,
    dropped: [Counter; DropReason::ALL.len()],
}

/// Why a datagram was dropped (the `reason` label of [`DROPPED`]).
#[derive(Debug, Clone, Copy)]
enum DropReason {
    Malformed,
    UnknownContext,
    UnknownStream,
    Socket,
    Bandwidth,
    /// To or from a peer the filter refuses (a bound tunnel's uncompressed datagram).
    Forbidden,
    /// From a peer no context of a bound tunnel names.
    Unsolicited,
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::UnknownContext,
        DropReason::UnknownStream,
        DropReason::Socket,
        DropReason::Bandwidth,
        DropReason::Forbidden,
        DropReason::Unsolicited,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownContext => "unknown_context",
            DropReason::UnknownStream => "unknown_stream",
            DropReason::Socket => "socket",
            DropReason::Bandwidth => "bandwidth",
            DropReason::Forbidden => "forbidden",
            DropReason::Unsolicited => "unsolicited",
        }
    }
}

/// HTTP/3's "no error" application code (RFC 9114 §8.1), for a graceful close.
const H3_NO_ERROR: u32 = 0x100;

pub const HANDSHAKES: &str = "nexrtc_relay_quic_handshakes_total";
pub const REQUESTS: &str = "nexrtc_relay_quic_requests_total";
pub const DROPPED: &str = "nexrtc_relay_quic_datagrams_dropped_total";
pub const AS_CAPSULES: &str = "nexrtc_relay_quic_datagrams_as_capsules_total";

impl Shared {
    /// One datagram dropped (on the packet path: a cached counter, no registry lookup).
    fn drop_datagram(&self, reason: DropReason) {
        self.counts.dropped[reason as usize].increment(1);
    }

    pub(crate) fn request(&self, outcome: &'static str) {
        self.metrics
            .counter(REQUESTS, &[("outcome", outcome)])
            .increment(1);
    }
}

impl QuicRelay {
    /// Binds `config.listen` and serves (inside a tokio runtime).
    pub fn start(config: QuicConfig, access: Arc<Access>) -> Result<QuicRelay, QuicError> {
        let mut tls = (*config.tls).clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        tls.max_early_data_size = 0;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(config.max_tunnels_per_connection.into())
            // The client's control stream and its two QPACK streams, with room to spare.
            .max_concurrent_uni_streams(8u32.into())
            .max_idle_timeout(config.idle_timeout.try_into().ok())
            .datagram_receive_buffer_size(Some(1 << 20));
        if !config.mtu_discovery {
            transport.mtu_discovery_config(None);
        }
        server.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::server(server, config.listen)
            .map_err(|e| QuicError::Bind(config.listen, e))?;
        let local = endpoint
            .local_addr()
            .map_err(|e| QuicError::Bind(config.listen, e))?;
        let metrics = Registry::new();
        describe(&metrics);
        let ports = config.ports.unwrap_or_else(|| {
            let ip = config.listen.ip();
            Arc::new(EphemeralPorts {
                addresses: vec![(ip, ip)],
            })
        });
        let counts = Counts {
            as_capsules: metrics.counter(AS_CAPSULES, &[]),
            dropped: DropReason::ALL.map(|d| metrics.counter(DROPPED, &[("reason", d.label())])),
        };
        let shared = Arc::new(Shared {
            access,
            filter: config.peer_filter,
            realm: config.realm,
            draining: tokio::sync::watch::Sender::new(false),
            metrics,
            counts,
            ledger: config.ledger,
            quotas: config.quotas,
            stats: config.stats,
            names: config.names.unwrap_or_else(Names::system),
            ports,
            max_tunnels_per_connection: config.max_tunnels_per_connection,
        });
        let h2 = crate::h2::start(&config.tls, Arc::clone(&shared));
        let task = tokio::spawn(accept(endpoint.clone(), Arc::clone(&shared)));
        tracing::info!(addr = %local, "QUIC relay listening (CONNECT-UDP over HTTP/3)");
        Ok(QuicRelay {
            endpoint,
            local,
            shared,
            task,
            h2,
        })
    }

    /// Where the relay's TLS listener hands connections that ask for ALPN `h2` (the
    /// HTTP/2 fallback, see [`crate::h2`]).
    pub fn h2_sink(&self) -> crate::h2::H2Sink {
        self.h2.clone()
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's metrics (register them into the relay's registry).
    pub fn registry(&self) -> Registry {
        self.shared.metrics.clone()
    }

    /// Per-tenant traffic.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Credentials and revocations, replaced live.
    pub fn access(&self) -> &Arc<Access> {
        &self.shared.access
    }

    /// New tunnels are refused with 503, and every connection gets an HTTP/3 GOAWAY
    /// (RFC 9114 §5.2) so its client opens no more requests here; open tunnels run on
    /// until they end or the relay stops (the drain's deadline), which closes their
    /// connections with H3_NO_ERROR.
    pub fn drain(&self) {
        self.shared.draining.send_replace(true);
    }

    /// Closes every connection and stops listening, then waits for the closes to be sent.
    pub async fn shutdown(self) {
        let endpoint = self.endpoint.clone();
        drop(self);
        endpoint.wait_idle().await;
    }
}

impl Drop for QuicRelay {
    /// Closes every connection (H3_NO_ERROR) and stops listening.
    fn drop(&mut self) {
        self.endpoint.close(H3_NO_ERROR.into(), b"shutting down");
        self.task.abort();
    }
}

fn describe(m: &Registry) {
    m.describe(HANDSHAKES, "QUIC handshakes, by outcome (ok, failed)");
    m.describe(
        REQUESTS,
        "CONNECT-UDP requests, by outcome (ok, bad_request, unauthorized, quota, forbidden, dns_error, unavailable, socket_error)",
    );
    m.describe(
        DROPPED,
        "HTTP Datagrams dropped, by reason (malformed, unknown_context, unknown_stream, socket, bandwidth, forbidden, unsolicited)",
    );
    m.describe(
        AS_CAPSULES,
        "UDP payloads sent to the client as DATAGRAM capsules: too large for a QUIC datagram on the path",
    );
}

async fn accept(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "QUIC handshake failed");
                    handshake(&shared, "failed");
                    return;
                }
            };
            handshake(&shared, "ok");
            connection(conn, shared).await;
        });
    }
}

fn handshake(shared: &Shared, outcome: &'static str) {
    shared
        .metrics
        .counter(HANDSHAKES, &[("outcome", outcome)])
        .increment(1);
}

/// Open tunnels of one connection, by request stream id.
type Tunnels = Arc<Mutex<HashMap<u64, Arc<Tunnel>>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open tunnel: its sockets, its bandwidth budgets and its place in the quota ledger
/// (given back when the tunnel is dropped).
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// Unextended: one socket, connected to the target. Bound: one per address family,
    /// on the relay's public addresses, with its local address.
    sockets: Vec<(UdpSocket, SocketAddr)>,
    /// A bound tunnel's contexts (`None`: an unextended tunnel).
    bound: Option<Mutex<Contexts>>,
    /// A bound tunnel's public addresses (`Proxy-Public-Address`).
    public: Vec<SocketAddr>,
    /// Woken when a datagram breaks the bound-UDP rules: the stream is aborted.
    abort: tokio::sync::Notify,
    to_peer: Option<Mutex<TokenBucket>>,
    to_client: Option<Mutex<TokenBucket>>,
    /// The tenant's counts.
    traffic: Arc<TenantTraffic>,
    /// When it opened (usage metering counts its time open).
    started: std::time::Instant,
    /// Held for its `Drop`: the ledger's count ends with the tunnel.
    _seat: Seat,
    /// Held for its `Drop` (after `sockets` are closed): the bound ports go back.
    _lease: Option<Lease>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.traffic.tunnels_active.fetch_sub(1, Ordering::Relaxed);
        (self.traffic.lifetimes).end(self.started, std::time::Instant::now());
    }
}

impl Tunnel {
    /// Whether `bytes` more fit the direction's cap (none: no cap).
    fn within(budget: Option<&Mutex<TokenBucket>>, bytes: usize) -> bool {
        budget.is_none_or(|b| lock(b).take(bytes as u64, std::time::Instant::now()))
    }

    /// A bound tunnel's socket for `peer`'s address family.
    fn socket_for(&self, peer: SocketAddr) -> Option<&UdpSocket> {
        (self.sockets.iter())
            .find(|(_, local)| local.is_ipv4() == peer.is_ipv4())
            .map(|(s, _)| s)
    }
}

/// A tunnel counted in the quota ledger as an allocation of its user.
#[derive(Debug)]
struct Seat {
    ledger: Arc<AllocationLedger>,
    user: User,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.ledger.release(&self.user.tenant, &self.user.user);
    }
}

/// A bound tunnel's ports, given back to the pool when it ends.
#[derive(Debug)]
struct Lease {
    ports: Arc<dyn RelayPorts>,
    locals: Vec<SocketAddr>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        for local in &self.locals {
            self.ports.release(*local);
        }
    }
}

async fn connection(conn: quinn::Connection, shared: Arc<Shared>) {
    let built = h3::server::builder()
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_field_section_size(16 << 10)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/3 setup failed");
            return;
        }
    };
    let tunnels: Tunnels = Arc::default();
    let datagrams = tokio::spawn(datagrams(
        conn.clone(),
        Arc::clone(&tunnels),
        Arc::clone(&shared),
    ));
    let mut drain = shared.draining.subscribe();
    let mut goaway_sent = false;
    loop {
        if !goaway_sent && *drain.borrow_and_update() {
            goaway_sent = true;
            if let Err(e) = h3.shutdown(0).await {
                tracing::debug!(error = %e, "GOAWAY not sent");
            }
        }
        let accepted = tokio::select! {
            accepted = h3.accept() => accepted,
            changed = drain.changed(), if !goaway_sent => {
                goaway_sent |= changed.is_err();
                continue;
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                let (conn, tunnels, shared) =
                    (conn.clone(), Arc::clone(&tunnels), Arc::clone(&shared));
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((request, stream)) => {
                            tunnel(request, stream, conn, tunnels, shared).await
                        }
                        Err(e) => tracing::debug!(error = %e, "unreadable request"),
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 connection ended");
                break;
            }
        }
    }
    // After a GOAWAY the tunnels still open keep their datagrams until they end or the
    // connection closes.
    while !lock(&tunnels).is_empty() {
        tokio::select! {
            _ = conn.closed() => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    datagrams.abort();
}

/// The connection's HTTP Datagrams, to their tunnels' targets.
async fn datagrams(conn: quinn::Connection, tunnels: Tunnels, shared: Arc<Shared>) {
    while let Ok(datagram) = conn.read_datagram().await {
        let Some((quarter, a)) = get_varint(&datagram) else {
            shared.drop_datagram(DropReason::Malformed);
            continue;
        };
        let tunnel = lock(&tunnels).get(&(quarter * 4)).cloned();
        match tunnel {
            Some(tunnel) => {
                if to_peer(&shared, &tunnel, &datagram[a..]).is_err() {
                    tunnel.abort.notify_one();
                }
            }
            None => shared.drop_datagram(DropReason::UnknownStream),
        }
    }
}

/// Why a tunnel's stream is aborted (each transport resets it with its own code).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Abort {
    /// A datagram against the rules (HTTP/3: H3_DATAGRAM_ERROR).
    Datagram,
    /// A malformed capsule (HTTP/3: H3_MESSAGE_ERROR).
    Malformed,
}

impl Abort {
    fn h3(self) -> h3::error::Code {
        match self {
            Abort::Datagram => h3::error::Code::H3_DATAGRAM_ERROR,
            Abort::Malformed => h3::error::Code::H3_MESSAGE_ERROR,
        }
    }
}

/// One HTTP Datagram payload (Context ID, then what it means) to its peer. Unknown
/// contexts are dropped (RFC 9298 §4); in a bound tunnel, what a Context ID means is
/// [`Contexts::route`]'s.
fn to_peer(shared: &Shared, tunnel: &Tunnel, payload: &[u8]) -> Result<(), Abort> {
    match send_to_peer(shared, tunnel, payload) {
        Ok(()) => Ok(()),
        Err(Fault::Drop(reason)) => {
            shared.drop_datagram(reason);
            Ok(())
        }
        Err(Fault::Abort(abort)) => Err(abort),
    }
}

/// What became of a datagram that was not sent.
enum Fault {
    Drop(DropReason),
    Abort(Abort),
}

fn send_to_peer(shared: &Shared, tunnel: &Tunnel, payload: &[u8]) -> Result<(), Fault> {
    let (context, n) = get_varint(payload).ok_or(Fault::Drop(DropReason::Malformed))?;
    let rest = &payload[n..];
    let (peer, udp) = match &tunnel.bound {
        None if context == 0 => (None, rest),
        None => return Err(Fault::Drop(DropReason::UnknownContext)),
        Some(contexts) => match lock(contexts).route(context, rest) {
            Route::To(peer, skip) => (Some(peer), &rest[skip..]),
            Route::Unknown => return Err(Fault::Drop(DropReason::UnknownContext)),
            Route::Malformed => return Err(Fault::Drop(DropReason::Malformed)),
            Route::Abort => return Err(Fault::Abort(Abort::Datagram)),
        },
    };
    // Checked per datagram: an uncompressed datagram names any address, and a relay
    // address is reachable only on ports the relay holds right now.
    let socket = match peer {
        None => tunnel.sockets.first().map(|(s, _)| s),
        Some(p) if shared.filter.check(p) => tunnel.socket_for(p),
        Some(_) => None,
    };
    let socket = socket.ok_or(Fault::Drop(DropReason::Forbidden))?;
    if !Tunnel::within(tunnel.to_peer.as_ref(), udp.len()) {
        return Err(Fault::Drop(DropReason::Bandwidth));
    }
    match peer {
        None => socket.try_send(udp),
        Some(p) => socket.try_send_to(udp, p),
    }
    .map_err(|_| Fault::Drop(DropReason::Socket))?;
    tunnel.traffic.to_peer(udp.len());
    Ok(())
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type SendHalf = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Compression answers (ACK, CLOSE) waiting for the stream: more than this and the
/// client is not reading, so the stream is aborted (bound UDP, Security Considerations).
const MAX_PENDING_ANSWERS: usize = 64;

async fn tunnel(
    request: http::Request<()>,
    mut stream: Stream,
    conn: quinn::Connection,
    tunnels: Tunnels,
    shared: Arc<Shared>,
) {
    let protocol = request.extensions().get::<h3::ext::Protocol>().copied();
    let connect_udp = protocol == Some(h3::ext::Protocol::CONNECT_UDP);
    let tunnel = match open(&request, connect_udp, Transport::Quic, &shared).await {
        Ok(tunnel) => Arc::new(tunnel),
        Err(refusal) => {
            shared.request(refusal.outcome);
            let _ = stream.send_response(refusal.response(&shared.realm)).await;
            let _ = stream.finish().await;
            return;
        }
    };
    let id = stream.id().into_inner();
    lock(&tunnels).insert(id, Arc::clone(&tunnel));
    if stream.send_response(accepted(&tunnel)).await.is_ok() {
        shared.request("ok");
        let (mut send, mut recv) = stream.split();
        let mut quarter = Vec::with_capacity(8);
        put_varint(&mut quarter, id / 4);
        let down = Down::H3 {
            conn: &conn,
            stream: &mut send,
            quarter,
        };
        if let Some(abort) = run(&tunnel, down, Up::H3(&mut recv), &shared).await {
            send.stop_stream(abort.h3());
            recv.stop_sending(abort.h3());
        }
    }
    lock(&tunnels).remove(&id);
}

/// The 200 answer that opens a tunnel (with bound UDP's headers for a bound one).
pub(crate) fn accepted(tunnel: &Tunnel) -> Response<()> {
    let mut ok = Response::builder()
        .status(StatusCode::OK)
        .header("capsule-protocol", "?1");
    if tunnel.bound.is_some() {
        ok = ok
            .header("connect-udp-bind", "?1")
            .header("proxy-public-address", tunnel_public(tunnel));
    }
    ok.body(()).unwrap_or_default()
}

/// A tunnel's traffic until either side ends it: the peers' datagrams to the client
/// ([`to_client`]), the client's capsules ([`capsules`]; its HTTP/3 datagrams arrive
/// through the connection's datagram task), or a datagram against the rules. `Some` if
/// the stream is to be aborted.
pub(crate) async fn run(
    tunnel: &Tunnel,
    down: Down<'_>,
    up: Up<'_>,
    shared: &Shared,
) -> Option<Abort> {
    let (answers, mut pending) = tokio::sync::mpsc::channel(MAX_PENDING_ANSWERS);
    tokio::select! {
        () = to_client(tunnel, down, shared, &mut pending) => None,
        end = capsules(up, tunnel, shared, &answers) => end.err(),
        () = tunnel.abort.notified() => Some(Abort::Datagram),
    }
}

/// How a tunnel's datagrams and capsules reach the client.
pub(crate) enum Down<'a> {
    /// HTTP/3: QUIC datagrams prefixed with the Quarter Stream ID, capsules on the stream.
    H3 {
        conn: &'a quinn::Connection,
        stream: &'a mut SendHalf,
        quarter: Vec<u8>,
    },
    /// HTTP/2: everything as capsules on the stream (RFC 9297 §3.5).
    H2(&'a mut h2::SendStream<Bytes>),
}

impl Down<'_> {
    /// What goes before a datagram's Context ID.
    fn prefix(&self) -> &[u8] {
        match self {
            Down::H3 { quarter, .. } => quarter,
            Down::H2(_) => &[],
        }
    }

    /// Bytes on the request stream; `false` if it is gone.
    async fn stream(&mut self, data: Bytes) -> bool {
        match self {
            Down::H3 { stream, .. } => stream.send_data(data).await.is_ok(),
            Down::H2(stream) => crate::h2::send(stream, data).await,
        }
    }

    /// One HTTP Datagram (`prefix ‖ Context ID ‖ …`): a QUIC datagram where one fits,
    /// else a DATAGRAM capsule on the stream. `false` if the client is gone.
    async fn datagram(&mut self, datagram: Bytes, shared: &Shared) -> bool {
        let prefix = self.prefix().len();
        if let Down::H3 { conn, .. } = self {
            match conn.send_datagram(datagram.clone()) {
                Ok(()) => return true,
                Err(quinn::SendDatagramError::TooLarge) => shared.counts.as_capsules.increment(1),
                Err(_) => return false, // the connection is gone, or never took datagrams
            }
        }
        let mut capsule = Vec::with_capacity(datagram.len() + 12);
        put_capsule(&mut capsule, DATAGRAM_CAPSULE, &datagram[prefix..]);
        self.stream(Bytes::from(capsule)).await
    }
}

/// Where a tunnel's request stream (its capsules) is read from.
pub(crate) enum Up<'a> {
    H3(&'a mut RecvHalf),
    H2(&'a mut h2::RecvStream),
}

impl Up<'_> {
    /// The next bytes of the stream; `None` at its end (or reset).
    async fn next(&mut self) -> Option<Bytes> {
        match self {
            Up::H3(recv) => match recv.recv_data().await {
                Ok(Some(mut chunk)) => Some(chunk.copy_to_bytes(chunk.remaining())),
                _ => None,
            },
            Up::H2(recv) => {
                let data = recv.data().await?.ok()?;
                // Read is read: the window opens again for the client.
                let _ = recv.flow_control().release_capacity(data.len());
                Some(data)
            }
        }
    }
}

/// The `Proxy-Public-Address` value (bound UDP §5, a List of Strings):
/// `"192.0.2.1:5000", "[2001:db8::1]:5000"`.
fn tunnel_public(tunnel: &Tunnel) -> String {
    (tunnel.public.iter())
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

thread_local! {
    /// Where a tunnel's socket is read into: one per runtime thread, not one per tunnel
    /// (a 64 KiB buffer per idle tunnel would be most of its memory). What is read is
    /// copied into the datagram being built before the next await.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 65_535]);
}

/// Reads a datagram from whichever of `sockets` has one, and hands its payload and
/// sender to `take` (without awaiting in between, so the payload can stay in
/// [`SCRATCH`]).
async fn recv_any<R>(
    sockets: &[(UdpSocket, SocketAddr)],
    mut take: impl FnMut(&[u8], SocketAddr) -> R,
) -> std::io::Result<R> {
    loop {
        let ready = std::future::poll_fn(|cx| {
            for (i, (socket, _)) in sockets.iter().enumerate() {
                if let std::task::Poll::Ready(r) = socket.poll_recv_ready(cx) {
                    return std::task::Poll::Ready(r.map(|()| i));
                }
            }
            std::task::Poll::Pending
        })
        .await?;
        let got = SCRATCH.with_borrow_mut(|buf| {
            (sockets[ready].0.try_recv_from(buf)).map(|(n, from)| take(&buf[..n], from))
        });
        match got {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            got => return got,
        }
    }
}

/// The peers' datagrams to the client, as HTTP Datagrams (Context ID 0, or a bound
/// tunnel's context for the peer, [`Contexts::inbound`]); one too large for the path's
/// QUIC datagrams (a 1200-byte payload on a 1280-byte MTU) goes as a DATAGRAM capsule on
/// the request stream instead (RFC 9297 §3.5), so no size is lost. Compression answers
/// go on the stream between them.
async fn to_client(
    tunnel: &Tunnel,
    mut down: Down<'_>,
    shared: &Shared,
    answers: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    loop {
        let prefix = down.prefix();
        let datagram = tokio::select! {
            got = recv_any(&tunnel.sockets, |payload, from| {
                from_peer(tunnel, shared, prefix, payload, from)
            }) => match got {
                Ok(Some(datagram)) => datagram,
                Ok(None) => continue,
                // ICMP errors (port unreachable) surface here on a connected socket: the
                // tunnel stays; the client's next datagram may find the target listening.
                Err(_) => continue,
            },
            Some(answer) = answers.recv() => {
                if !down.stream(Bytes::from(answer)).await {
                    return;
                }
                continue;
            }
        };
        let (datagram, n) = datagram;
        if !down.datagram(datagram, shared).await {
            return;
        }
        tunnel.traffic.to_client(n);
    }
}

/// A peer's payload as the HTTP Datagram for the client — `prefix` (HTTP/3: the Quarter
/// Stream ID) ‖ Context ID ‖ [the peer's address] ‖ payload — and the payload's size;
/// `None` if it is dropped.
fn from_peer(
    tunnel: &Tunnel,
    shared: &Shared,
    quarter: &[u8],
    payload: &[u8],
    from: SocketAddr,
) -> Option<(Bytes, usize)> {
    let (context, with_address) = match &tunnel.bound {
        None => (0, false),
        Some(contexts) => match lock(contexts).inbound(from) {
            Some(route) => route,
            None => {
                shared.drop_datagram(DropReason::Unsolicited);
                return None;
            }
        },
    };
    // A sender the filter refuses is not heard (a TURN allocation could not give it a
    // permission either).
    if with_address && !shared.filter.check_ip(from.ip()) {
        shared.drop_datagram(DropReason::Forbidden);
        return None;
    }
    if !Tunnel::within(tunnel.to_client.as_ref(), payload.len()) {
        shared.drop_datagram(DropReason::Bandwidth);
        return None;
    }
    let mut datagram = Vec::with_capacity(quarter.len() + 8 + 19 + payload.len());
    datagram.extend_from_slice(quarter);
    put_varint(&mut datagram, context);
    if with_address {
        put_address(&mut datagram, from);
    }
    datagram.extend_from_slice(payload);
    Some((Bytes::from(datagram), payload.len()))
}

/// The largest capsule read from a request stream (a DATAGRAM capsule's UDP payload).
const MAX_CAPSULE: usize = 65_535 + 16;

/// The request stream's capsules until it ends (`Ok`) or breaks the rules (`Err`):
/// DATAGRAM capsules to the peer, a bound tunnel's compression capsules to its contexts
/// (answered through `answers`), others skipped (RFC 9297 §3.2).
async fn capsules(
    mut up: Up<'_>,
    tunnel: &Tunnel,
    shared: &Shared,
    answers: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(), Abort> {
    let malformed = Abort::Malformed;
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = up.next().await {
        pending.extend_from_slice(&chunk);
        let mut taken = 0;
        loop {
            let (capsule, n) = match get_capsule(&pending[taken..], MAX_CAPSULE) {
                Ok(Some(got)) => got,
                Ok(None) => break,
                Err(_) => return Err(malformed),
            };
            taken += n;
            if capsule.kind == DATAGRAM_CAPSULE {
                to_peer(shared, tunnel, capsule.value)?;
                continue;
            }
            let (Some(contexts), Some(parsed)) = (
                &tunnel.bound,
                Compression::parse(capsule.kind, capsule.value),
            ) else {
                continue;
            };
            let allowed = |p: SocketAddr| shared.filter.check(p) && tunnel.socket_for(p).is_some();
            let answer = parsed
                .ok()
                .and_then(|c| lock(contexts).apply(c, allowed).ok())
                .ok_or(malformed)?;
            if let Some(answer) = answer {
                let mut out = Vec::with_capacity(12);
                answer.put(&mut out);
                answers.try_send(out).map_err(|_| malformed)?;
            }
        }
        pending.drain(..taken);
    }
    Ok(())
}

/// A refused request: its status, Proxy-Status error and metrics outcome.
pub(crate) struct Refusal {
    status: StatusCode,
    error: Option<&'static str>,
    pub(crate) outcome: &'static str,
    authenticate: bool,
}

impl Refusal {
    pub(crate) fn response(&self, realm: &str) -> Response<()> {
        let mut r = Response::builder().status(self.status);
        if let Some(error) = self.error {
            r = r.header("proxy-status", format!("nexrtc; error={error}"));
        }
        if self.authenticate {
            r = r.header(
                "proxy-authenticate",
                format!("Basic realm=\"{}\"", realm.replace(['"', '\\'], "")),
            );
        }
        r.body(()).unwrap_or_default()
    }

    fn bad_request() -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            error: Some("http_request_error"),
            outcome: "bad_request",
            authenticate: false,
        }
    }
}

impl From<TargetError> for Refusal {
    fn from(e: TargetError) -> Refusal {
        let (status, error) = e.status();
        Refusal {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            error: Some(error),
            outcome: match status {
                403 => "forbidden",
                502 => "dns_error",
                _ => "bad_request",
            },
            authenticate: false,
        }
    }
}

/// Whether the request asks for bound UDP: one `Connect-UDP-Bind` field whose value is
/// the Boolean true (`?1`, parameters ignored); anything else is as if absent (§4).
fn wants_bind(headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all("connect-udp-bind").iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().is_ok_and(|v| {
            let v = v.trim();
            v == "?1" || v.starts_with("?1;")
        }),
        _ => false,
    }
}

/// Checks a request and opens its tunnel: a socket connected to the target, or for
/// bound UDP sockets on the relay's public addresses.
///
/// `connect_udp`: the request's `:protocol` is `connect-udp` (each transport has its own
/// type for it).
pub(crate) async fn open<B>(
    request: &http::Request<B>,
    connect_udp: bool,
    transport: Transport,
    shared: &Shared,
) -> Result<Tunnel, Refusal> {
    if request.method() != Method::CONNECT || !connect_udp {
        return Err(Refusal::bad_request());
    }
    if *shared.draining.borrow() {
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: Some("proxy_internal_response"),
            outcome: "unavailable",
            authenticate: false,
        });
    }
    let bind = wants_bind(request.headers());
    let target = if bind {
        parse_bound_path(request.uri().path())
    } else {
        parse_path(request.uri().path()).map(Some)
    }
    .map_err(Refusal::from)?;
    let credentials = request
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    let user = match shared.access.check(credentials, unix_now()) {
        Ok(user) => user,
        Err(denied) => {
            tracing::debug!(reason = denied.label(), "CONNECT-UDP refused: {denied}");
            return Err(Refusal {
                status: StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                error: None,
                outcome: "unauthorized",
                authenticate: true,
            });
        }
    };
    let seat = match (shared.ledger).try_acquire(&user.tenant, &user.user, &shared.quotas) {
        Ok(()) => Seat {
            ledger: Arc::clone(&shared.ledger),
            user,
        },
        Err(refusal) => {
            return Err(Refusal {
                status: match refusal {
                    QuotaRefusal::Total => StatusCode::SERVICE_UNAVAILABLE,
                    QuotaRefusal::UserOrTenant => StatusCode::TOO_MANY_REQUESTS,
                },
                error: Some("connection_limit_reached"),
                outcome: "quota",
                authenticate: false,
            })
        }
    };
    let target = match target {
        Some(t) => Some(
            resolve(&t, &shared.filter, &shared.names)
                .await
                .map_err(Refusal::from)?,
        ),
        None => None,
    };
    let socket_error = |_| Refusal {
        status: StatusCode::BAD_GATEWAY,
        error: Some("destination_unavailable"),
        outcome: "socket_error",
        authenticate: false,
    };
    let (sockets, public, lease) = match target {
        Some(target) if !bind => {
            let local: SocketAddr = match target {
                SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
            socket.connect(target).await.map_err(socket_error)?;
            (vec![(socket, local)], Vec::new(), None)
        }
        _ => bind_public(&shared.ports, target).map_err(socket_error)?,
    };
    let bps = shared.quotas.allocation_bytes_per_sec;
    // The TURN allocation's budget: the rate, with a burst of a second's worth (64 KiB
    // at least).
    let budget = || {
        (bps != 0).then(|| {
            Mutex::new(TokenBucket::new(
                bps,
                bps.max(65_536),
                std::time::Instant::now(),
            ))
        })
    };
    let traffic = shared.stats.tenant(&seat.user.tenant, transport);
    traffic.tunnels_total.fetch_add(1, Ordering::Relaxed);
    traffic.tunnels_active.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    traffic.lifetimes.start(started);
    Ok(Tunnel {
        sockets,
        bound: bind.then(|| Mutex::new(Contexts::new(target))),
        public,
        abort: tokio::sync::Notify::new(),
        to_peer: budget(),
        to_client: budget(),
        traffic,
        started,
        _seat: seat,
        _lease: lease,
    })
}

/// A bound tunnel's sockets: one per address family the relay serves (at least the
/// family of the URI's target, when it names one), and their public addresses.
#[allow(clippy::type_complexity)]
fn bind_public(
    ports: &Arc<dyn RelayPorts>,
    target: Option<SocketAddr>,
) -> std::io::Result<(Vec<(UdpSocket, SocketAddr)>, Vec<SocketAddr>, Option<Lease>)> {
    let mut lease = Lease {
        ports: Arc::clone(ports),
        locals: Vec::new(),
    };
    let (mut sockets, mut public) = (Vec::new(), Vec::new());
    for v6 in [false, true] {
        let Some(bound) = ports.bind(v6) else {
            continue;
        };
        let (socket, reached_at) = bound?;
        let local = socket.local_addr()?;
        lease.locals.push(local);
        sockets.push((UdpSocket::from_std(socket)?, local));
        public.push(reached_at);
    }
    let serves = |t: SocketAddr| sockets.iter().any(|(_, l)| l.is_ipv4() == t.is_ipv4());
    if sockets.is_empty() || target.is_some_and(|t| !serves(t)) {
        return Err(std::io::Error::other("no relay address of the family"));
    }
    Ok((sockets, public, Some(lease)))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
