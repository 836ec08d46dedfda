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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use http::{Method, Response, StatusCode};
use nexrtc_metrics::{Counter, Registry};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use turn_core::{AllocationLedger, PeerFilter, QuotaRefusal, Quotas, TokenBucket};

use crate::access::{Access, User};
use crate::codec::{get_capsule, get_varint, put_capsule, put_varint, DATAGRAM_CAPSULE};
use crate::stats::{Stats, TenantTraffic};
use crate::target::{parse_path, resolve, Names, TargetError};

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
}

#[derive(Debug)]
struct Shared {
    access: Arc<Access>,
    filter: PeerFilter,
    realm: String,
    draining: AtomicBool,
    metrics: Registry,
    counts: Counts,
    ledger: Arc<AllocationLedger>,
    quotas: Quotas,
    stats: Arc<Stats>,
    names: Names,
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
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::UnknownContext,
        DropReason::UnknownStream,
        DropReason::Socket,
        DropReason::Bandwidth,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownContext => "unknown_context",
            DropReason::UnknownStream => "unknown_stream",
            DropReason::Socket => "socket",
            DropReason::Bandwidth => "bandwidth",
        }
    }
}

pub const HANDSHAKES: &str = "nexrtc_relay_quic_handshakes_total";
pub const REQUESTS: &str = "nexrtc_relay_quic_requests_total";
pub const DROPPED: &str = "nexrtc_relay_quic_datagrams_dropped_total";
pub const AS_CAPSULES: &str = "nexrtc_relay_quic_datagrams_as_capsules_total";

impl Shared {
    /// One datagram dropped (on the packet path: a cached counter, no registry lookup).
    fn drop_datagram(&self, reason: DropReason) {
        self.counts.dropped[reason as usize].increment(1);
    }

    fn request(&self, outcome: &'static str) {
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
        let counts = Counts {
            as_capsules: metrics.counter(AS_CAPSULES, &[]),
            dropped: DropReason::ALL.map(|d| metrics.counter(DROPPED, &[("reason", d.label())])),
        };
        let shared = Arc::new(Shared {
            access,
            filter: config.peer_filter,
            realm: config.realm,
            draining: AtomicBool::new(false),
            metrics,
            counts,
            ledger: config.ledger,
            quotas: config.quotas,
            stats: config.stats,
            names: config.names.unwrap_or_else(Names::system),
        });
        let task = tokio::spawn(accept(endpoint.clone(), Arc::clone(&shared)));
        tracing::info!(addr = %local, "QUIC relay listening (CONNECT-UDP over HTTP/3)");
        Ok(QuicRelay {
            endpoint,
            local,
            shared,
            task,
        })
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

    /// New tunnels are refused with 503; open ones run on.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
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
        self.endpoint.close(0u32.into(), b"shutting down");
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
        "HTTP Datagrams dropped, by reason (malformed, unknown_context, unknown_stream, socket, bandwidth)",
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

/// One open tunnel: its socket (connected to the target), its bandwidth budgets and its
/// place in the quota ledger (given back when the tunnel is dropped).
#[derive(Debug)]
struct Tunnel {
    socket: UdpSocket,
    to_peer: Option<Mutex<TokenBucket>>,
    to_client: Option<Mutex<TokenBucket>>,
    /// The tenant's counts.
    traffic: Arc<TenantTraffic>,
    /// Held for its `Drop`: the ledger's count ends with the tunnel.
    _seat: Seat,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.traffic.tunnels_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tunnel {
    /// Whether `bytes` more fit the direction's cap (none: no cap).
    fn within(budget: Option<&Mutex<TokenBucket>>, bytes: usize) -> bool {
        budget.is_none_or(|b| {
            let mut b = b.lock().unwrap_or_else(PoisonError::into_inner);
            b.take(bytes as u64, std::time::Instant::now())
        })
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
    loop {
        match h3.accept().await {
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
    datagrams.abort();
}

/// The connection's HTTP Datagrams, to their tunnels' targets.
async fn datagrams(conn: quinn::Connection, tunnels: Tunnels, shared: Arc<Shared>) {
    while let Ok(datagram) = conn.read_datagram().await {
        let Some((quarter, a)) = get_varint(&datagram) else {
            shared.drop_datagram(DropReason::Malformed);
            continue;
        };
        let tunnel = tunnels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(quarter * 4))
            .cloned();
        match tunnel {
            Some(tunnel) => to_peer(&shared, &tunnel, &datagram[a..]),
            None => shared.drop_datagram(DropReason::UnknownStream),
        }
    }
}

/// One HTTP Datagram payload (Context ID, then the UDP payload for Context ID 0) to the
/// target. Unknown contexts are dropped (RFC 9298 §4).
fn to_peer(shared: &Shared, tunnel: &Tunnel, payload: &[u8]) {
    let Some((context, n)) = get_varint(payload) else {
        shared.drop_datagram(DropReason::Malformed);
        return;
    };
    if context != 0 {
        shared.drop_datagram(DropReason::UnknownContext);
        return;
    }
    let udp = &payload[n..];
    if !Tunnel::within(tunnel.to_peer.as_ref(), udp.len()) {
        shared.drop_datagram(DropReason::Bandwidth);
        return;
    }
    match tunnel.socket.try_send(udp) {
        Ok(_) => tunnel.traffic.to_peer(udp.len()),
        Err(_) => shared.drop_datagram(DropReason::Socket),
    }
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn tunnel(
    request: http::Request<()>,
    mut stream: Stream,
    conn: quinn::Connection,
    tunnels: Tunnels,
    shared: Arc<Shared>,
) {
    let tunnel = match open(&request, &shared).await {
        Ok(tunnel) => Arc::new(tunnel),
        Err(refusal) => {
            shared.request(refusal.outcome);
            let _ = stream.send_response(refusal.response(&shared.realm)).await;
            let _ = stream.finish().await;
            return;
        }
    };
    let id = stream.id().into_inner();
    tunnels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, Arc::clone(&tunnel));
    let ok = Response::builder()
        .status(StatusCode::OK)
        .header("capsule-protocol", "?1")
        .body(())
        .unwrap_or_default();
    if stream.send_response(ok).await.is_ok() {
        shared.request("ok");
        let (send, recv) = stream.split();
        tokio::select! {
            () = to_client(&tunnel, &conn, send, id, &shared) => {}
            () = capsules(recv, &tunnel, &shared) => {}
        }
    }
    tunnels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
}

/// The target's datagrams to the client, as HTTP Datagrams with Context ID 0; one too
/// large for the path's QUIC datagrams (a 1200-byte payload on a 1280-byte MTU) goes as a
/// DATAGRAM capsule on the request stream instead (RFC 9297 §3.5), so no size is lost.
async fn to_client(
    tunnel: &Tunnel,
    conn: &quinn::Connection,
    mut stream: h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    id: u64,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 65_535];
    let mut header = Vec::with_capacity(9);
    put_varint(&mut header, id / 4);
    put_varint(&mut header, 0);
    loop {
        let n = match tunnel.socket.recv(&mut buf).await {
            Ok(n) => n,
            // ICMP errors (port unreachable) surface here on a connected socket: the
            // tunnel stays; the client's next datagram may find the target listening.
            Err(_) => continue,
        };
        if !Tunnel::within(tunnel.to_client.as_ref(), n) {
            shared.drop_datagram(DropReason::Bandwidth);
            continue;
        }
        let mut datagram = Vec::with_capacity(header.len() + n);
        datagram.extend_from_slice(&header);
        datagram.extend_from_slice(&buf[..n]);
        match conn.send_datagram(Bytes::from(datagram)) {
            Ok(()) => {}
            Err(quinn::SendDatagramError::TooLarge) => {
                let mut capsule = Vec::with_capacity(n + 12);
                let mut body = Vec::with_capacity(n + 1);
                put_varint(&mut body, 0);
                body.extend_from_slice(&buf[..n]);
                put_capsule(&mut capsule, DATAGRAM_CAPSULE, &body);
                if stream.send_data(Bytes::from(capsule)).await.is_err() {
                    return;
                }
                shared.counts.as_capsules.increment(1);
            }
            Err(_) => return, // the connection is gone, or never took datagrams
        }
        tunnel.traffic.to_client(n);
    }
}

/// The largest capsule read from a request stream (a DATAGRAM capsule's UDP payload).
const MAX_CAPSULE: usize = 65_535 + 16;

/// The request stream's capsules until it ends: DATAGRAM capsules to the target, others
/// skipped (RFC 9297 §3.2). A malformed or oversized capsule ends the tunnel.
async fn capsules(
    mut recv: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
    tunnel: &Tunnel,
    shared: &Shared,
) {
    let mut pending: Vec<u8> = Vec::new();
    while let Ok(Some(mut chunk)) = recv.recv_data().await {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            pending.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
        let mut taken = 0;
        loop {
            match get_capsule(&pending[taken..], MAX_CAPSULE) {
                Ok(Some((capsule, n))) => {
                    if capsule.kind == DATAGRAM_CAPSULE {
                        to_peer(shared, tunnel, capsule.value);
                    }
                    taken += n;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        pending.drain(..taken);
    }
}

/// A refused request: its status, Proxy-Status error and metrics outcome.
struct Refusal {
    status: StatusCode,
    error: Option<&'static str>,
    outcome: &'static str,
    authenticate: bool,
}

impl Refusal {
    fn response(&self, realm: &str) -> Response<()> {
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

/// Checks a request and opens its tunnel's socket, connected to the target.
async fn open(request: &http::Request<()>, shared: &Shared) -> Result<Tunnel, Refusal> {
    let protocol = request.extensions().get::<h3::ext::Protocol>().copied();
    if request.method() != Method::CONNECT || protocol != Some(h3::ext::Protocol::CONNECT_UDP) {
        return Err(Refusal::bad_request());
    }
    if shared.draining.load(Ordering::Relaxed) {
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: Some("proxy_internal_response"),
            outcome: "unavailable",
            authenticate: false,
        });
    }
    let target = parse_path(request.uri().path()).map_err(Refusal::from)?;
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
    let target = resolve(&target, &shared.filter, &shared.names)
        .await
        .map_err(Refusal::from)?;
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket_error = |_| Refusal {
        status: StatusCode::BAD_GATEWAY,
        error: Some("destination_unavailable"),
        outcome: "socket_error",
        authenticate: false,
    };
    let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
    socket.connect(target).await.map_err(socket_error)?;
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
    let traffic = shared.stats.tenant(&seat.user.tenant);
    traffic.tunnels_total.fetch_add(1, Ordering::Relaxed);
    traffic.tunnels_active.fetch_add(1, Ordering::Relaxed);
    Ok(Tunnel {
        socket,
        to_peer: budget(),
        to_client: budget(),
        traffic,
        _seat: seat,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
