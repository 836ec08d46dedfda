//! Load generator for the QUIC relay (RFC 9298 CONNECT-UDP over HTTP/3). Three modes,
//! each printing one JSON object on stdout:
//!
//! * `relay`: C connections × T tunnels, each tunnel to a UDP echo peer of this process;
//!   closed loop with a window of datagrams in flight per tunnel, for a duration.
//!   Datagram round trips client → relay → peer → relay → client; measures round trips,
//!   loss, latency, and the server process's CPU time over the run.
//! * `handshakes`: N connections, K at a time, each a full QUIC + TLS 1.3 handshake, the
//!   HTTP/3 setup and one CONNECT-UDP request answered 200, then closed: handshakes per
//!   second and server CPU per handshake.
//! * `hold`: hold C × T idle tunnels; the server's RSS per tunnel.
//!
//! The client does not verify the relay's certificate (the relay runs with its
//! development certificate on loopback); it is a benchmark tool, never a client to ship.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use turnbench::client::Creds;
use turnbench::hist::Histogram;
use turnbench::sys::{now_ns, pin_current_thread, proc_cpu_secs, proc_rss_bytes, raise_nofile};

#[derive(Parser)]
#[command(about = "QUIC relay (CONNECT-UDP) load generator")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Datagram round trips through tunnels, closed loop.
    Relay(RelayArgs),
    /// Connections (handshake + one CONNECT-UDP) per second.
    Handshakes(HandshakeArgs),
    /// Hold idle tunnels; report the server's memory per tunnel.
    Hold(HoldArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The QUIC relay's UDP address.
    #[arg(long)]
    server: SocketAddr,
    /// TURN REST shared secret.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// PID of the server process: its CPU time and RSS are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// CPUs to pin this process's threads to (e.g. `0`).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Hard limit on the run.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
}

#[derive(Args)]
struct RelayArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Tunnels per connection.
    #[arg(long, default_value_t = 8)]
    tunnels: usize,
    /// Datagrams in flight per tunnel.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// UDP payload bytes (at least 16: a tunnel index and a timestamp).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
}

#[derive(Args)]
struct HandshakeArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 64)]
    tunnels: usize,
    /// Seconds to let the server settle before reading its RSS.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

fn main() -> Result<()> {
    raise_nofile(65_536);
    let cli = Cli::parse();
    let common = match &cli.mode {
        Mode::Relay(a) => &a.common,
        Mode::Handshakes(a) => &a.common,
        Mode::Hold(a) => &a.common,
    };
    let cpus = common.cpus.clone();
    let limit = Duration::from_secs(common.max_seconds);
    // One thread: the generator's cost stays on its own CPU when pinned.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if !cpus.is_empty() {
        pin_current_thread(&cpus)?;
    }
    rt.block_on(async move {
        let run = async {
            match cli.mode {
                Mode::Relay(a) => relay(a).await,
                Mode::Handshakes(a) => handshakes(a).await,
                Mode::Hold(a) => hold(a).await,
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => bail!("the run took over {limit:?}"),
        }
    })
}

/// Accepts any certificate: the relay's development certificate on loopback.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn endpoint() -> Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(4 << 20));
    client.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

type Requests = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 connection: the QUIC connection and its request sender (the h3 driver
/// runs in a task of its own).
async fn connect(
    endpoint: &quinn::Endpoint,
    server: SocketAddr,
) -> Result<(quinn::Connection, Requests)> {
    let conn = endpoint.connect(server, "localhost")?.await?;
    let (mut driver, requests) = h3::client::builder()
        .enable_extended_connect(true)
        .enable_datagram(true)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok((conn, requests))
}

/// Opens a CONNECT-UDP tunnel to `target`; its request stream.
async fn tunnel(
    requests: &mut Requests,
    server: SocketAddr,
    target: SocketAddr,
    creds: &Creds,
) -> Result<Stream> {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!(
            "https://localhost:{}/.well-known/masque/udp/{}/{}/",
            server.port(),
            target.ip(),
            target.port()
        ))
        .extension(h3::ext::Protocol::CONNECT_UDP)
        .header("capsule-protocol", "?1")
        .header("proxy-authorization", format!("Basic {auth}"))
        .body(())?;
    let mut stream = requests.send_request(request).await?;
    let response = stream.recv_response().await?;
    if response.status() != http::StatusCode::OK {
        bail!("CONNECT-UDP answered {}", response.status());
    }
    Ok(stream)
}

/// A UDP echo on loopback, on its own thread, until `stop`.
fn echo_peer(stop: Arc<AtomicBool>) -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.2:0").context("echo peer")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    Ok(addr)
}

/// UDP packets the connections sent and received (QUIC packs several datagrams in one
/// packet when they queue together).
fn udp_packets(conns: &[quinn::Connection]) -> (u64, u64) {
    conns.iter().fold((0, 0), |(tx, rx), c| {
        let s = c.stats();
        (tx + s.udp_tx.datagrams, rx + s.udp_rx.datagrams)
    })
}

fn cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(|p| proc_cpu_secs(p).ok())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| format!("{v:.6}"))
}

/// The datagram a tunnel sends: Quarter Stream ID, Context ID 0, then the payload (its
/// tunnel's index and the send time first).
fn datagram(quarter: &[u8], index: u32, payload: usize) -> Bytes {
    let mut d = Vec::with_capacity(quarter.len() + 1 + payload);
    d.extend_from_slice(quarter);
    d.push(0);
    d.extend_from_slice(&index.to_be_bytes());
    d.extend_from_slice(&now_ns().to_be_bytes());
    d.resize(quarter.len() + 1 + payload, 0);
    Bytes::from(d)
}

fn quarter_varint(stream_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    nexrtc_quic::codec::put_varint(&mut out, stream_id / 4);
    out
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
    measuring: AtomicBool,
    done: AtomicBool,
}

async fn relay(a: RelayArgs) -> Result<()> {
    if a.payload < 12 {
        bail!("--payload must be at least 12 bytes");
    }
    let creds = Creds::rest(&a.common.secret, "bench", 3600);
    let stop = Arc::new(AtomicBool::new(false));
    let peer = echo_peer(Arc::clone(&stop))?;
    let endpoint = endpoint()?;
    let counts = Arc::new(Counts::default());
    let mut drivers = Vec::new();
    // Streams and request senders stay open until the run ends.
    let (mut keep, mut senders, mut conns) = (Vec::new(), Vec::new(), Vec::new());
    let setup = Instant::now();
    for _ in 0..a.connections {
        let (conn, mut requests) = connect(&endpoint, a.common.server).await?;
        let mut quarters = Vec::new();
        for _ in 0..a.tunnels {
            let stream = tunnel(&mut requests, a.common.server, peer, &creds).await?;
            quarters.push(quarter_varint(stream.id().into_inner()));
            keep.push(stream);
        }
        senders.push(requests);
        conns.push(conn.clone());
        drivers.push(tokio::spawn(drive(
            conn,
            quarters,
            a.window,
            a.payload,
            Arc::clone(&counts),
        )));
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent0, recv0) = (
        counts.sent.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
    );
    let cpu0 = cpu(a.common.server_pid);
    let udp0 = udp_packets(&conns);
    counts.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let elapsed = start.elapsed().as_secs_f64();
    counts.measuring.store(false, Ordering::Relaxed);
    let cpu1 = cpu(a.common.server_pid);
    let udp1 = udp_packets(&conns);
    let sent = counts.sent.load(Ordering::Relaxed) - sent0;
    let received = counts.received.load(Ordering::Relaxed) - recv0;
    counts.done.store(true, Ordering::Relaxed);
    let mut hist = Histogram::new();
    for d in drivers {
        hist.merge(&d.await?);
    }
    stop.store(true, Ordering::Relaxed);
    drop((keep, senders, conns));
    endpoint.close(0x100u32.into(), b"done");
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let round_trips = received as f64 / elapsed;
    // Two relay traversals per round trip, as the TURN benchmark counts them.
    let per_cpu = server_cpu.map(|c| 2.0 * received as f64 / c);
    println!(
        "{{\"mode\":\"relay\",\"tunnels\":{},\"window\":{},\"payload\":{},\"setup_secs\":{setup_secs:.3},\
         \"elapsed\":{elapsed:.3},\"sent\":{sent},\"received\":{received},\"round_trips_per_sec\":{round_trips:.1},\
         \"relayed_per_sec\":{:.1},\"mbit\":{:.1},\"loss\":{:.6},\"server_cpu_secs\":{},\"relayed_per_cpu_sec\":{},\
         \"rtt_p50_us\":{},\"rtt_p99_us\":{},\"client_udp_tx\":{},\"client_udp_rx\":{}}}",
        a.connections * a.tunnels,
        a.window,
        a.payload,
        2.0 * round_trips,
        2.0 * round_trips * a.payload as f64 * 8.0 / 1e6,
        1.0 - received as f64 / sent.max(1) as f64,
        opt(server_cpu),
        opt(per_cpu),
        opt(hist.quantile_us(0.5)),
        opt(hist.quantile_us(0.99)),
        udp1.0 - udp0.0,
        udp1.1 - udp0.1,
    );
    Ok(())
}

/// One connection's closed loop: `window` datagrams in flight per tunnel; each echo
/// sends the next. A tunnel silent for 200 ms (its datagrams lost) gets a new window.
async fn drive(
    conn: quinn::Connection,
    quarters: Vec<Vec<u8>>,
    window: usize,
    payload: usize,
    counts: Arc<Counts>,
) -> Histogram {
    let mut hist = Histogram::new();
    let mut last = vec![Instant::now(); quarters.len()];
    let send = |i: usize| {
        conn.send_datagram(datagram(&quarters[i], i as u32, payload))
            .is_ok()
    };
    for i in 0..quarters.len() {
        for _ in 0..window {
            if send(i) {
                counts.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            got = conn.read_datagram() => {
                let Ok(d) = got else { return hist };
                // Quarter Stream ID, Context ID 0, then index and timestamp.
                let Some((_, n)) = nexrtc_quic::codec::get_varint(&d) else { continue };
                let body = &d[n + 1..];
                if body.len() < 12 {
                    continue;
                }
                let index = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&body[4..12]);
                if counts.measuring.load(Ordering::Relaxed) {
                    hist.record(now_ns().saturating_sub(u64::from_be_bytes(ts)));
                }
                counts.received.fetch_add(1, Ordering::Relaxed);
                if index < quarters.len() {
                    last[index] = Instant::now();
                    if send(index) {
                        counts.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = tick.tick() => {
                if counts.done.load(Ordering::Relaxed) {
                    return hist;
                }
                for (i, at) in last.iter_mut().enumerate() {
                    if at.elapsed() > Duration::from_millis(200) {
                        *at = Instant::now();
                        for _ in 0..window {
                            if send(i) {
                                counts.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn handshakes(a: HandshakeArgs) -> Result<()> {
    let creds = Arc::new(Creds::rest(&a.common.secret, "bench", 3600));
    let stop = Arc::new(AtomicBool::new(false));
    let peer = echo_peer(Arc::clone(&stop))?;
    let endpoint = endpoint()?;
    let cpu0 = cpu(a.common.server_pid);
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (endpoint, next, failed, creds) = (
            endpoint.clone(),
            Arc::clone(&next),
            Arc::clone(&failed),
            Arc::clone(&creds),
        );
        let (server, count) = (a.common.server, a.count as u64);
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let one = async {
                    let (conn, mut requests) = connect(&endpoint, server).await?;
                    let stream = tunnel(&mut requests, server, peer, &creds).await?;
                    drop(stream);
                    conn.close(0x100u32.into(), b"done");
                    anyhow::Ok(())
                };
                if one.await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = cpu(a.common.server_pid);
    stop.store(true, Ordering::Relaxed);
    endpoint.wait_idle().await;
    let failed = failed.load(Ordering::Relaxed);
    let done = a.count as u64 - failed;
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    println!(
        "{{\"mode\":\"handshakes\",\"count\":{},\"failed\":{failed},\"elapsed\":{elapsed:.3},\
         \"per_sec\":{:.1},\"server_cpu_secs\":{},\"per_cpu_sec\":{},\"cpu_us_each\":{}}}",
        a.count,
        done as f64 / elapsed,
        opt(server_cpu),
        opt(server_cpu.map(|c| done as f64 / c)),
        opt(server_cpu.map(|c| c * 1e6 / done.max(1) as f64)),
    );
    Ok(())
}

async fn hold(a: HoldArgs) -> Result<()> {
    let Some(pid) = a.common.server_pid else {
        bail!("hold needs --server-pid");
    };
    let creds = Creds::rest(&a.common.secret, "bench", 3600);
    let stop = Arc::new(AtomicBool::new(false));
    let peer = echo_peer(Arc::clone(&stop))?;
    let endpoint = endpoint()?;
    let rss0 = proc_rss_bytes(pid)?;
    let (mut held, mut senders, mut conns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.connections {
        let (conn, mut requests) = connect(&endpoint, a.common.server).await?;
        for _ in 0..a.tunnels {
            held.push(tunnel(&mut requests, a.common.server, peer, &creds).await?);
        }
        senders.push(requests);
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss1 = proc_rss_bytes(pid)?;
    let tunnels = a.connections * a.tunnels;
    println!(
        "{{\"mode\":\"hold\",\"connections\":{},\"tunnels\":{tunnels},\"rss_before\":{rss0},\"rss_after\":{rss1},\
         \"bytes_per_tunnel\":{:.0}}}",
        a.connections,
        (rss1.saturating_sub(rss0)) as f64 / tunnels as f64,
    );
    stop.store(true, Ordering::Relaxed);
    drop((held, senders, conns));
    endpoint.close(0x100u32.into(), b"done");
    Ok(())
}
