//! The HTTP/2 fallback: CONNECT-UDP over TLS/TCP for networks that block UDP (RFC 8441
//! Extended CONNECT, RFC 9298 §3.3, RFC 9297 capsules), on the relay's TURN-over-TLS port.
//!
//! The relay's TLS listener is the TURN workers' (mio). A worker looks at each new TLS
//! connection's ClientHello before its handshake ([`sniff`], on bytes it peeked, so
//! nothing is consumed): a client offering ALPN `h2` is handed here as a plain TCP socket
//! ([`H2Sink`]); every other client (TURN over TLS offers no ALPN, or `stun.turn`) stays
//! with the worker. Here the TLS handshake runs with tokio-rustls (the relay's certificate
//! resolver, ALPN `h2`), then the h2 server with Extended CONNECT enabled. A request is
//! checked and opened by the same code as over HTTP/3 ([`crate::server`]), with the same
//! credentials, quotas, peer filter and bound UDP; its datagrams travel as DATAGRAM
//! capsules on the stream both ways (HTTP/2 has no datagrams). A drain sends GOAWAY.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::sync::mpsc;

use crate::server::{accepted, open, run, Down, Shared, Up};
use crate::stats::Transport;

/// How long a handed-off client may take for its TLS handshake and HTTP/2 preface.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handed over but not yet taken: past this, new ones are refused (closed).
const QUEUE: usize = 1024;

/// What a ClientHello asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Not all of the ClientHello is here yet.
    NeedMore,
    /// ALPN `h2` is offered: an HTTP/2 client.
    H2,
    /// Anything else (no ALPN, other protocols, or not a ClientHello at all): TURN's.
    Other,
}

/// Reads the ClientHello at the start of `bytes` (the first bytes of a TLS connection).
pub fn sniff(bytes: &[u8]) -> Sniff {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => return Sniff::Other,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(None) => Sniff::NeedMore,
        Ok(Some(hello)) => {
            let h2 = (hello.client_hello().alpn()).is_some_and(|mut p| p.any(|p| p == b"h2"));
            if h2 {
                Sniff::H2
            } else {
                Sniff::Other
            }
        }
        Err(_) => Sniff::Other,
    }
}

/// Where TLS connections that asked for `h2` go (a TURN worker holds a clone).
#[derive(Debug, Clone)]
pub struct H2Sink(mpsc::Sender<std::net::TcpStream>);

impl H2Sink {
    /// Hands a connection over (its ClientHello unread); `false` if the queue is full
    /// (the connection is then dropped, i.e. closed).
    pub fn hand_off(&self, stream: std::net::TcpStream) -> bool {
        self.0.try_send(stream).is_ok()
    }
}

/// Starts the fallback's accept task; the sink for the workers.
pub(crate) fn start(tls: &rustls::ServerConfig, shared: Arc<Shared>) -> H2Sink {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (tx, mut rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        while let Some(stream) = rx.recv().await {
            tokio::spawn(connection(stream, acceptor.clone(), Arc::clone(&shared)));
        }
    });
    H2Sink(tx)
}

async fn connection(
    stream: std::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    let remote = stream.peer_addr().ok();
    let setup = async {
        stream.set_nonblocking(true)?;
        let tcp = tokio::net::TcpStream::from_std(stream)?;
        let tls = acceptor.accept(tcp).await?;
        h2::server::Builder::new()
            .enable_connect_protocol()
            .max_concurrent_streams(shared.max_tunnels_per_connection)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(std::io::Error::other)
    };
    let mut conn = match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return debug(remote, &e),
        Err(_) => return debug(remote, &"setup timed out"),
    };
    let mut drain = shared.draining.subscribe();
    let mut goaway_sent = false;
    loop {
        if !goaway_sent && *drain.borrow_and_update() {
            goaway_sent = true;
            conn.graceful_shutdown();
        }
        // The connection's I/O runs while it is polled here: until every stream ends.
        let next = tokio::select! {
            next = conn.accept() => next,
            changed = drain.changed(), if !goaway_sent => {
                goaway_sent |= changed.is_err();
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                tokio::spawn(tunnel(request, respond, Arc::clone(&shared)));
            }
            Some(Err(e)) => return debug(remote, &e),
            None => return,
        }
    }
}

fn debug(remote: Option<SocketAddr>, e: &dyn std::fmt::Display) {
    tracing::debug!(?remote, error = %e, "HTTP/2 CONNECT-UDP connection ended");
}

async fn tunnel(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let protocol = request.extensions().get::<h2::ext::Protocol>();
    let connect_udp = request.method() == Method::CONNECT
        && protocol.is_some_and(|p| p.as_str() == "connect-udp");
    let tunnel = match open(&request, connect_udp, Transport::H2, &shared).await {
        Ok(tunnel) => tunnel,
        Err(refusal) => {
            shared.request(refusal.outcome);
            let _ = respond.send_response(refusal.response(&shared.realm), true);
            return;
        }
    };
    let Ok(mut send) = respond.send_response(accepted(&tunnel), false) else {
        return;
    };
    shared.request("ok");
    let mut recv = request.into_body();
    match run(&tunnel, Down::H2(&mut send), Up::H2(&mut recv), &shared).await {
        Some(_) => send.send_reset(h2::Reason::PROTOCOL_ERROR),
        None => {
            let _ = send.send_data(Bytes::new(), true);
        }
    }
}

/// Sends `data` on a stream once the client's flow-control window has room for it (a
/// client that stops reading stalls its own tunnel, whose socket then drops, as UDP
/// does); `false` if the stream is gone.
pub(crate) async fn send(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> bool {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let room = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(room)) => room,
            _ => return false,
        };
        if room == 0 {
            continue;
        }
        let chunk = data.split_to(room.min(data.len()));
        if stream.send_data(chunk, false).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real client's first flight (its ClientHello), offering `alpn`.
    fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore::empty();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| unreachable!("{e}"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from("relay.example.org")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        out
    }

    #[test]
    fn client_hellos_are_told_apart_by_alpn() {
        assert_eq!(sniff(&client_hello(&[b"h2", b"http/1.1"])), Sniff::H2);
        assert_eq!(sniff(&client_hello(&[b"http/1.1", b"h2"])), Sniff::H2);
        // TURN over TLS: no ALPN, or RFC 7443's.
        assert_eq!(sniff(&client_hello(&[])), Sniff::Other);
        assert_eq!(sniff(&client_hello(&[b"stun.turn"])), Sniff::Other);
        // Part of a ClientHello: wait; not TLS at all: the worker's own path.
        let hello = client_hello(&[b"h2"]);
        for cut in [1, 5, 40, hello.len() - 1] {
            assert_eq!(sniff(&hello[..cut]), Sniff::NeedMore, "cut at {cut}");
        }
        assert_eq!(
            sniff(b"\x00\x01\x00\x00\x21\x12\xa4\x42garbage"),
            Sniff::Other
        );
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n\r\n"), Sniff::Other);
    }
}
