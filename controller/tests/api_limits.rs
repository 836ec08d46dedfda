//! Connection limits on real loopback sockets, plain HTTP and HTTPS: a slowloris client
//! and a silent socket are closed by the header-read and idle timeouts, the per-address
//! cap closes idle connections of one address while other clients (and that address's
//! new connections) are served, and long-lived connections (the agents' SSE stream, a
//! signaling WebSocket) are cut by neither.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrtc_controller::config::{
    Bootstrap, ControllerArgs, ControllerConfig, FileConfig, HttpFile,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

const NODE_KEY: &str = "nxk_node00000000000000000000000000000000000";
const ICE_KEY: &str = "nxk_ice000000000000000000000000000000000000";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A controller on a free loopback port, plain or TLS; connects from a chosen loopback
/// address.
struct Server {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(tls: bool, http: HttpFile) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut file = FileConfig {
            listen: Some(addr),
            http,
            bootstrap: Bootstrap {
                node_key: Some(NODE_KEY.into()),
                ice_key: Some(ICE_KEY.into()),
                tenant: Some("acme".into()),
                ..Bootstrap::default()
            },
            ..FileConfig::default()
        };
        let mut connector = None;
        if tls {
            let cert =
                rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
            let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            std::fs::write(&c, cert.cert.pem()).expect("write cert");
            std::fs::write(&k, cert.key_pair.serialize_pem()).expect("write key");
            file.tls_cert = Some(c);
            file.tls_key = Some(k);
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.cert.der().clone()).expect("root");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            connector = Some(tokio_rustls::TlsConnector::from(Arc::new(client)));
        }
        let config = ControllerConfig::build(ControllerArgs::default(), file).expect("config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            nexrtc_controller::run_on(config, listener, shutdown)
                .await
                .expect("run");
        });
        Server {
            addr,
            tls: connector,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// A TCP connection from `from` (a loopback address), not yet speaking TLS.
    async fn tcp_from(&self, from: [u8; 4]) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind client");
        socket.connect(self.addr).await.expect("connect")
    }

    /// A connection from `from`, through TLS when the server speaks it.
    async fn connect_from(&self, from: [u8; 4]) -> Box<dyn Stream> {
        let tcp = self.tcp_from(from).await;
        match &self.tls {
            None => Box::new(tcp),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let tls =
                    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                        .await
                        .expect("handshake in time")
                        .expect("handshake");
                Box::new(tls)
            }
        }
    }

    /// `GET path` from `from` on a new connection: the status.
    async fn get_from(&self, from: [u8; 4], path: &str) -> u16 {
        let mut s = self.connect_from(from).await;
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "GET {path}: no answer within 10 s");
        let text = String::from_utf8_lossy(&out);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: no status line in {text:?}"))
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("stops")
            .expect("joined");
    }
}

/// Whether the server closed `s` (EOF or reset) within `limit`, reading and discarding
/// whatever it sent.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn limits(header_secs: u64, idle_secs: u64, per_ip: usize) -> HttpFile {
    HttpFile {
        header_read_timeout_secs: Some(header_secs),
        idle_timeout_secs: Some(idle_secs),
        tls_handshake_timeout_secs: Some(2),
        max_connections: Some(1000),
        max_connections_per_ip: Some(per_ip),
    }
}

async fn slowloris_and_silent_sockets_are_closed(tls: bool) {
    let server = Server::start(tls, limits(1, 2, 100)).await;
    // A request head trickling in a byte at a time never completes: closed once the
    // header-read timeout (1 s) passes, although bytes keep arriving.
    let mut slow = server.connect_from([127, 0, 0, 1]).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if slow.write_all(b"x").await.is_err()
            || closed_within(&mut slow, Duration::from_millis(250)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slowloris head was still open after 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A socket that never sends a byte (no TLS handshake either): closed by the idle or
    // handshake timeout.
    let mut silent = server.tcp_from([127, 0, 0, 1]).await;
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)).await,
        "silent socket kept"
    );

    // An idle keep-alive connection after a request: closed too.
    let mut kept = server.connect_from([127, 0, 0, 1]).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut kept, Duration::from_secs(6)).await,
        "idle keep-alive kept"
    );

    // The agents' event stream is silent between pings (10 s) but is a response in
    // progress: the idle timeout (2 s) does not cut it.
    let mut sse = server.connect_from([127, 0, 0, 1]).await;
    let req = format!(
        "GET /v1/relays/events?region=r&node=n HTTP/1.1\r\nhost: localhost\r\n\
         authorization: Bearer {NODE_KEY}\r\n\r\n"
    );
    sse.write_all(req.as_bytes()).await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(10), sse.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        !closed_within(&mut sse, Duration::from_secs(5)).await,
        "SSE stream cut"
    );

    assert_eq!(server.get_from([127, 0, 0, 1], "/healthz").await, 200);
    drop(sse);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_slowloris_and_silent_sockets_are_closed() {
    slowloris_and_silent_sockets_are_closed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_slowloris_and_silent_sockets_are_closed() {
    slowloris_and_silent_sockets_are_closed(true).await;
}

async fn one_address_cannot_hold_every_connection(tls: bool) {
    // Long timeouts: only the cap closes connections here.
    let server = Server::start(tls, limits(60, 120, 4)).await;
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut s = server.connect_from([127, 0, 0, 1]).await;
        // A partial head: the connection is in use by nobody yet.
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    // The per-address cap (4) closed the oldest idle ones to admit the newer.
    let mut open = 0;
    for s in &mut held {
        if !closed_within(s, Duration::from_millis(300)).await {
            open += 1;
        }
    }
    assert!(
        open <= 4,
        "{open} connections of one address still open (cap 4)"
    );
    // Another address is served at once, and so is a new connection of the capped one.
    assert_eq!(server.get_from([127, 0, 0, 2], "/healthz").await, 200);
    assert_eq!(server.get_from([127, 0, 0, 1], "/healthz").await, 200);

    // A response in progress (the SSE stream) is never what is closed to make room.
    let mut sse = server.connect_from([127, 0, 0, 3]).await;
    let req = format!(
        "GET /v1/relays/events?region=r&node=n HTTP/1.1\r\nhost: localhost\r\n\
         authorization: Bearer {NODE_KEY}\r\n\r\n"
    );
    sse.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), sse.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    for _ in 0..8 {
        let mut s = server.connect_from([127, 0, 0, 3]).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    assert!(
        !closed_within(&mut sse, Duration::from_secs(1)).await,
        "SSE stream evicted"
    );
    assert_eq!(server.get_from([127, 0, 0, 3], "/healthz").await, 200);
    drop((held, sse));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_one_address_cannot_hold_every_connection() {
    one_address_cannot_hold_every_connection(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_one_address_cannot_hold_every_connection() {
    one_address_cannot_hold_every_connection(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_websocket_is_neither_timed_out_nor_evicted() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let server = Server::start(false, limits(1, 1, 2)).await;
    // A room token, on a connection of its own.
    let mut s = server.connect_from([127, 0, 0, 1]).await;
    let body = r#"{"participant":"alice"}"#;
    let req = format!(
        "POST /v1/rooms/room1/tokens HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         authorization: Bearer {ICE_KEY}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    let json = text.split_once("\r\n\r\n").expect("head").1;
    let minted: serde_json::Value = serde_json::from_str(json).expect("token answer");
    let token = minted["token"].as_str().expect("token");

    let url = format!("ws://{}/v1/signal?room=room1&token={token}", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let welcome = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("welcome in time")
        .expect("a message")
        .expect("welcome");
    assert!(
        welcome.to_text().expect("text").contains("welcome"),
        "{welcome:?}"
    );

    // Quiet for three idle timeouts (the server pings every 15 s), then more connections
    // from the same address than its cap (2) allows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut others = Vec::new();
    for _ in 0..6 {
        let mut s = server.connect_from([127, 0, 0, 1]).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        others.push(s);
    }
    ws.send(Message::text(r#"{"type":"ping"}"#))
        .await
        .expect("the WebSocket is still open");
    let pong = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("pong in time")
        .expect("a message")
        .expect("pong");
    assert!(pong.to_text().expect("text").contains("pong"), "{pong:?}");
    drop((ws, others));
    server.stop().await;
}
