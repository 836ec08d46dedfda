//! `nexrtc controller` under a low descriptor limit (`prlimit --nofile=256`), with its
//! default `[http]` limits: 300 idle sockets do not stop it from answering `/healthz`
//! (the connection cap fits under the descriptor limit and a new connection closes the
//! oldest idle one), over plain HTTP and over TLS.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const IDLE_SOCKETS: usize = 300;
const NOFILE: &str = "--nofile=256:256";

/// Starts the controller under the descriptor limit; `tls`: (cert, key).
fn start(tls: Option<(&Path, &Path)>) -> (ChildGuard, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut text = format!("listen = \"{addr}\"\n");
    if let Some((cert, key)) = tls {
        text.push_str(&format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    let config = temp_file("controller-limits-toml", &text);
    let mut cmd = Command::new("prlimit");
    cmd.arg(NOFILE)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nexrtc"))
        .arg("controller")
        .arg("--config")
        .arg(&config);
    (
        ChildGuard::spawn("nexrtc-controller-nofile", &mut cmd),
        addr,
    )
}

/// `/healthz` over plain HTTP, or over TLS with curl.
fn healthz(addr: SocketAddr, tls: bool) -> bool {
    if !tls {
        return matches!(http_get(addr, "/healthz"), Ok((200, _)));
    }
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://localhost:{}/healthz", addr.port()))
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())])
        .output();
    out.is_ok_and(|o| o.stdout == b"200")
}

/// Polls `/healthz` until it answers 200 (bounded).
fn answers_within(addr: SocketAddr, tls: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if healthz(addr, tls) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn idle_sockets_do_not_exhaust_descriptors(tls: bool) {
    if require_tool("prlimit", "util-linux").is_none()
        || (tls
            && (require_tool("openssl", "openssl").is_none()
                || require_tool("curl", "curl").is_none()))
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nexrtc-nofile-{}", random_token("")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if tls {
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(made.status.success(), "{made:?}");
    }
    let (mut process, addr) = start(tls.then_some((cert.as_path(), key.as_path())));
    assert!(
        answers_within(addr, tls, Duration::from_secs(30)),
        "controller did not start: {}",
        process.log_tail(30)
    );

    // More idle sockets than the process has descriptors.
    let idle: Vec<TcpStream> = (0..IDLE_SOCKETS)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(idle.len() > 256, "only {} sockets connected", idle.len());
    // Let the server accept what it can.
    std::thread::sleep(Duration::from_millis(500));

    // Well within the 10 s a TLS handshake or a request head may take: an idle socket
    // is closed to make room, not merely timed out.
    assert!(
        answers_within(addr, tls, Duration::from_secs(5)),
        "/healthz did not answer beside {} idle sockets: {}",
        idle.len(),
        process.log_tail(30)
    );
    assert!(process.exited().is_none(), "{}", process.log_tail(30));
    let log = process.log_text();
    assert!(
        log.contains("lowers max_connections"),
        "{}",
        process.log_tail(30)
    );
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_idle_sockets_do_not_exhaust_descriptors() {
    idle_sockets_do_not_exhaust_descriptors(false);
}

#[test]
fn tls_idle_sockets_do_not_exhaust_descriptors() {
    idle_sockets_do_not_exhaust_descriptors(true);
}
