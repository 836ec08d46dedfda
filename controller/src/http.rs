//! [`serve`]: the controller's HTTP(S) accept loop, shared by `nexrtc controller` and
//! `nexrtc dev`, with the limits that keep it answering under abuse ([`HttpLimits`]).
//!
//! * hyper-util's auto (HTTP/1 + HTTP/2) builder, with upgrades (WebSocket signaling),
//!   each connection tagged with its peer address (`ConnectInfo`).
//! * **Header-read timeout** (HTTP/1): a request head must arrive whole within
//!   `header_read_timeout` of the connection becoming ready for it (slowloris); hyper
//!   closes the connection otherwise.
//! * **Idle timeout**: a connection with no request in progress and no byte read or written
//!   for `idle_timeout` is closed (idle keep-alive, HTTP/2 connections without streams, a
//!   socket that never sends anything). Long-lived connections are exempt: a response
//!   still streaming (the agents' SSE stream `/v1/relays/events`) and upgraded ones
//!   (signaling WebSockets, which have their own pings and idle drop).
//! * **TLS handshake timeout** (`tls_handshake_timeout`).
//! * **Connection caps**: at most `max_connections` in all, clamped to what the descriptor
//!   limit allows (the soft `RLIMIT_NOFILE` is raised to the hard one at start, and
//!   [`FD_RESERVE`] descriptors stay free for the store, logs and the like), and at most
//!   `max_connections_per_ip` from one peer address (peers in `trusted_proxies` are exempt:
//!   every client behind them shares their address). A connection over a cap makes room
//!   by closing the oldest idle connection in that scope (the same address, or any); when
//!   there is none it is closed at once. The client address after X-Forwarded-For is not
//!   known at accept time, so the caps use the TCP peer.
//! * **Accept errors** (out of descriptors, …) close the oldest idle connection and back
//!   off (10 ms doubling to 1 s) instead of spinning or stopping.
//!
//! On shutdown the listener closes and open connections get up to 10 s to finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// Time open connections get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors kept free of HTTP connections (store connections, files, the listener).
pub const FD_RESERVE: u64 = 64;
/// Accept-error back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connection limits and timeouts (`[http]` in the controller's TOML). The defaults are
/// [`HttpLimits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this (10 s).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no traffic is closed after this (60 s).
    pub idle_timeout: Duration,
    /// A TLS handshake must finish within this (10 s).
    pub tls_handshake_timeout: Duration,
    /// Connections open at once (4096; fewer when the descriptor limit is lower).
    pub max_connections: usize,
    /// Connections open at once from one peer address (128).
    pub max_connections_per_ip: usize,
    /// Peers the per-address cap does not apply to (the controller's `trusted_proxies`).
    pub exempt: Vec<IpNet>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 128,
            exempt: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) under `limits` until `shutdown`
/// completes, then gives open connections `DRAIN_TIMEOUT` (10 s) to finish. Connection
/// counts go to `metrics` (the controller's).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = fd_budget(limits.max_connections);
    if max < limits.max_connections {
        tracing::warn!(
            max_connections = max,
            configured = limits.max_connections,
            "the descriptor limit (RLIMIT_NOFILE) lowers max_connections"
        );
    }
    let table = Arc::new(Table::new(max, &limits, metrics.clone()));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut backoff = BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: free one if an idle connection holds it,
                // and back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; backing off {backoff:?}");
                table.evict_idle(None);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let Some(conn) = table.admit(peer.ip().to_canonical()) else {
            metrics.http_closed("refused");
            tracing::debug!(%peer, "connection refused: connection cap reached");
            continue; // dropping `tcp` closes it
        };
        let task = Connection {
            conn,
            peer,
            app: app.clone(),
            builder: builder.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(task.run(tcp, watcher));
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

/// Raises the soft descriptor limit to the hard one and returns `wanted` clamped to what
/// it leaves for HTTP connections.
fn fd_budget(wanted: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(soft) = limit.current else {
        return wanted; // unlimited
    };
    let budget = match soft > 2 * FD_RESERVE {
        true => soft - FD_RESERVE,
        false => soft / 2,
    };
    wanted.min(usize::try_from(budget).unwrap_or(usize::MAX).max(1))
}

/// One accepted connection and what it needs to be served.
struct Connection {
    conn: Arc<Conn>,
    peer: SocketAddr,
    app: Router,
    builder: Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    metrics: Metrics,
}

impl Connection {
    async fn run(self, tcp: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let Connection {
            conn,
            peer,
            app,
            builder,
            tls,
            limits,
            metrics,
        } = self;
        let io = Tracked {
            inner: tcp,
            conn: Arc::clone(&conn),
        };
        let service = {
            let conn = Arc::clone(&conn);
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let busy = Busy::enter(Arc::clone(&conn));
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await?;
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        busy.0.long_lived.store(true, Ordering::Relaxed);
                    }
                    Ok::<_, std::convert::Infallible>(
                        response.map(|inner| Body::new(BusyBody { inner, _busy: busy })),
                    )
                }
            })
        };
        let serve = async {
            match tls {
                None => {
                    let http = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    watcher.watch(http.into_owned()).await
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(io);
                    let stream =
                        match tokio::time::timeout(limits.tls_handshake_timeout, handshake).await {
                            Ok(Ok(stream)) => stream,
                            _ => return Ok(()),
                        };
                    let http =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(http.into_owned()).await
                }
            }
        };
        tokio::pin!(serve);
        loop {
            let deadline = conn.idle_deadline(limits.idle_timeout);
            tokio::select! {
                ended = &mut serve => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = conn.close.notified() => return,
                () = tokio::time::sleep_until(deadline) => {
                    if conn.idle_for() >= limits.idle_timeout && conn.evictable() {
                        metrics.http_closed("idle");
                        return; // dropping the connection closes it
                    }
                }
            }
        }
    }
}

/// The open connections: counts per peer address, and who is idle.
struct Table {
    max: usize,
    per_ip: usize,
    exempt: Vec<IpNet>,
    epoch: Instant,
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    metrics: Metrics,
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn new(max: usize, limits: &HttpLimits, metrics: Metrics) -> Table {
        Table {
            max: max.max(1),
            per_ip: limits.max_connections_per_ip.max(1),
            exempt: limits.exempt.clone(),
            epoch: Instant::now(),
            inner: Mutex::new(TableInner {
                metrics,
                ..TableInner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection from `ip`, closing an idle one to make room when a cap is
    /// reached; `None` when there is no room.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Arc<Conn>> {
        let mut inner = self.lock();
        let exempt = self.exempt.iter().any(|net| net.contains(&ip));
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if !exempt && from_ip >= self.per_ip && !Self::evict_locked(&mut inner, Some(ip)) {
            return None;
        }
        if inner.conns.len() >= self.max && !Self::evict_locked(&mut inner, None) {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState {
            id,
            ip,
            epoch: self.epoch,
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            long_lived: AtomicBool::new(false),
            close: Notify::new(),
        });
        state.touch();
        inner.conns.insert(id, Arc::clone(&state));
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        inner.metrics.http_connections(1.0);
        Some(Arc::new(Conn {
            state,
            table: Arc::clone(self),
        }))
    }

    /// Closes the idle connection (of `ip`, or any) that has been quiet longest.
    fn evict_idle(&self, ip: Option<IpAddr>) -> bool {
        Self::evict_locked(&mut self.lock(), ip)
    }

    fn evict_locked(inner: &mut TableInner, ip: Option<IpAddr>) -> bool {
        let victim = (inner.conns.values())
            .filter(|c| ip.is_none_or(|ip| c.ip == ip) && c.evictable())
            .min_by_key(|c| c.last.load(Ordering::Relaxed))
            .map(Arc::clone);
        let Some(victim) = victim else {
            return false;
        };
        // Forgotten now so the newcomer takes its place; its task closes the socket.
        Self::forget(inner, victim.id, victim.ip);
        victim.close.notify_one();
        inner.metrics.http_closed("evicted");
        true
    }

    fn forget(inner: &mut TableInner, id: u64, ip: IpAddr) {
        if inner.conns.remove(&id).is_none() {
            return;
        }
        if let Some(n) = inner.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&ip);
            }
        }
        inner.metrics.http_connections(-1.0);
    }
}

/// An admitted connection. It leaves the table when the last reference (the connection
/// task, its socket — which an upgraded connection takes along) is dropped.
struct Conn {
    state: Arc<ConnState>,
    table: Arc<Table>,
}

impl std::ops::Deref for Conn {
    type Target = ConnState;
    fn deref(&self) -> &ConnState {
        &self.state
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        Table::forget(&mut self.table.lock(), self.state.id, self.state.ip);
    }
}

/// One open connection's bookkeeping, shared with the table.
struct ConnState {
    id: u64,
    ip: IpAddr,
    epoch: Instant,
    /// Milliseconds since `epoch` at the last byte read or written.
    last: AtomicU64,
    /// Requests whose response has not been sent completely.
    busy: AtomicUsize,
    /// Upgraded (WebSocket): no idle timeout, never evicted.
    long_lived: AtomicBool,
    close: Notify,
}

impl ConnState {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.millis(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last.load(Ordering::Relaxed);
        Duration::from_millis(self.millis().saturating_sub(last))
    }

    /// When the idle timeout would end this connection if nothing happens meanwhile.
    fn idle_deadline(&self, timeout: Duration) -> Instant {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch + last + timeout
    }

    /// Idle: no request in progress, not upgraded.
    fn evictable(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && !self.long_lived.load(Ordering::Relaxed)
    }
}

/// A request in progress on a connection, until its response body is sent or dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request [`Busy`] while it streams.
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that records when a byte last went through it.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, per_ip: usize) -> Arc<Table> {
        let limits = HttpLimits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            exempt: vec!["10.0.0.0/8".parse().expect("net")],
            ..HttpLimits::default()
        };
        Arc::new(Table::new(max, &limits, Metrics::new()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test]
    async fn caps_evict_the_oldest_idle_connection_in_scope() {
        let t = table(4, 2);
        let a1 = t.admit(ip("192.0.2.1")).expect("a1");
        let a2 = t.admit(ip("192.0.2.1")).expect("a2");
        // a1 is busy: a third connection from that address replaces idle a2.
        let _busy = Busy::enter(Arc::clone(&a1));
        let a3 = t.admit(ip("192.0.2.1")).expect("a3 replaces a2");
        assert_eq!(t.lock().per_ip.get(&ip("192.0.2.1")), Some(&2));
        drop(a2); // its task ends: nothing counted twice
        assert_eq!(t.lock().conns.len(), 2);
        // Everything from that address busy or long-lived: refused.
        a3.long_lived.store(true, Ordering::Relaxed);
        assert!(t.admit(ip("192.0.2.1")).is_none());
        // Trusted proxies are exempt from the per-address cap, not from the total.
        let p1 = t.admit(ip("10.0.0.1")).expect("p1");
        let _p1_busy = Busy::enter(Arc::clone(&p1));
        let p2 = t.admit(ip("10.0.0.1")).expect("p2");
        let _p2_busy = Busy::enter(Arc::clone(&p2));
        assert!(t.admit(ip("10.0.0.1")).is_none(), "total cap, nothing idle");
        drop(_p2_busy);
        assert!(t.admit(ip("198.51.100.1")).is_some(), "idle p2 makes room");
    }
}
