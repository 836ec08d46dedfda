//! `run` on real loopback sockets: plain HTTP and HTTPS (rustls), the TCP peer address as
//! the client address, X-Forwarded-For only from trusted proxies, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nexrtc_controller::config::{Bootstrap, ControllerArgs, ControllerConfig, FileConfig};
use nexrtc_controller::model::Region;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const ADMIN_KEY: &str = "nxk_admin0000000000000000000000000000000000";
const NODE_KEY: &str = "nxk_node00000000000000000000000000000000000";
const ICE_KEY: &str = "nxk_ice000000000000000000000000000000000000";
const TOKYO_IP: &str = "203.0.113.10";

/// A listener on a free loopback port (bound here, so no other process can take it).
async fn loopback() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

fn file_config(listen: SocketAddr, trusted: &[&str]) -> FileConfig {
    FileConfig {
        listen: Some(listen),
        geoip_db: Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../geo/testdata/synthetic-city.mmdb"
            )
            .into(),
        ),
        default_region: Some("eu-west".into()),
        trusted_proxies: Some(trusted.iter().map(|s| s.to_string()).collect()),
        bootstrap: Bootstrap {
            admin_key: Some(ADMIN_KEY.into()),
            node_key: Some(NODE_KEY.into()),
            ice_key: Some(ICE_KEY.into()),
            tenant: Some("acme".into()),
            tenant_secret: Some("acme-secret-0123456789".into()),
            cors_origins: vec![],
            regions: vec![
                Region::new("eu-west", 53.35, -6.26),
                Region::new("ap-northeast", 35.68, 139.69),
            ],
        },
        ..FileConfig::default()
    }
}

/// Starts `run_on`; connections queue on the bound listener until it serves them. The
/// sender stops it.
fn start(
    config: ControllerConfig,
    listener: tokio::net::TcpListener,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        nexrtc_controller::run_on(config, listener, shutdown)
            .await
            .expect("run");
    });
    (stop, task)
}

/// One HTTP/1.1 request over `stream` (Connection: close); returns (status, body).
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let status = head
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    (status, body.to_owned())
}

async fn plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String) {
    http(
        TcpStream::connect(addr).await.expect("connect"),
        method,
        path,
        headers,
        body,
    )
    .await
}

fn registration(region: &str, host: &str) -> Value {
    let ep = json!({"host": host, "port": 3478});
    json!({"node": "n1", "region": region, "addresses": {"udp": ep, "tcp": ep}, "transports": ["udp", "tcp"]})
}

async fn first_region(addr: SocketAddr, xff: &str) -> String {
    let auth = format!("Bearer {ICE_KEY}");
    let headers = [("authorization", auth.as_str()), ("x-forwarded-for", xff)];
    let (status, body) = plain(addr, "POST", "/v1/ice-servers", &headers, Some(json!({}))).await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["regions"][0].as_str().expect("region").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_loopback_uses_the_peer_address() {
    let (listener, listen) = loopback().await;
    let config = ControllerConfig::build(ControllerArgs::default(), file_config(listen, &[]))
        .expect("config");
    let (stop, task) = start(config, listener);

    assert_eq!(plain(listen, "GET", "/healthz", &[], None).await.0, 200);
    let (status, body) = plain(listen, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 200, "{body}");
    let node = format!("Bearer {NODE_KEY}");
    for (region, host) in [("eu-west", "198.18.0.1"), ("ap-northeast", "198.18.3.1")] {
        let (status, body) = plain(
            listen,
            "POST",
            "/v1/relays/register",
            &[("authorization", &node)],
            Some(registration(region, host)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // The peer (127.0.0.1, not in GeoIP: default region eu-west) is the client; a forged
    // X-Forwarded-For claiming Tokyo is ignored because no proxy is trusted.
    assert_eq!(first_region(listen, TOKYO_IP).await, "eu-west");

    let (status, metrics) = plain(listen, "GET", "/metrics", &[], None).await;
    assert_eq!(status, 200);
    for name in [
        "nexrtc_controller_requests_total",
        "nexrtc_controller_request_duration_seconds_bucket",
        "nexrtc_controller_credentials_issued_total",
        "nexrtc_controller_snapshot_age_seconds",
        "nexrtc_controller_relays",
        "nexrtc_controller_registrations_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(metrics.contains("route=\"/v1/ice-servers\""), "{metrics}");
    assert!(metrics.contains("tenant=\"acme\""), "{metrics}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("stops")
        .expect("joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");

    let (listener, listen) = loopback().await;
    let mut file = file_config(listen, &["127.0.0.1"]);
    file.tls_cert = Some(cert_path);
    file.tls_key = Some(key_path);
    let config = ControllerConfig::build(ControllerArgs::default(), file).expect("config");
    let (stop, task) = start(config, listener);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = || async {
        let tcp = TcpStream::connect(listen).await.expect("connect");
        connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake")
    };

    assert_eq!(http(tls().await, "GET", "/healthz", &[], None).await.0, 200);
    let node = format!("Bearer {NODE_KEY}");
    for (region, host) in [("eu-west", "198.18.0.1"), ("ap-northeast", "198.18.3.1")] {
        let (status, body) = http(
            tls().await,
            "POST",
            "/v1/relays/register",
            &[("authorization", &node)],
            Some(registration(region, host)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // 127.0.0.1 is a trusted proxy here: the forwarded client (Tokyo) is believed.
    let auth = format!("Bearer {ICE_KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-forwarded-for", TOKYO_IP),
    ];
    let (status, body) = http(
        tls().await,
        "POST",
        "/v1/ice-servers",
        &headers,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["regions"][0], "ap-northeast");

    // Plain HTTP to the TLS port gets no answer.
    let mut tcp = TcpStream::connect(listen).await.expect("connect");
    let _ = tcp
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("stops")
        .expect("joined");
}

#[tokio::test]
async fn missing_geoip_database_is_a_startup_error() {
    let (listener, listen) = loopback().await;
    let mut file = file_config(listen, &[]);
    file.geoip_db = Some("/nonexistent/City.mmdb".into());
    let config = ControllerConfig::build(ControllerArgs::default(), file).expect("config");
    let err = nexrtc_controller::run_on(config, listener, async {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("/nonexistent/City.mmdb"), "{err}");
}
