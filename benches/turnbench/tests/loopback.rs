//! The two binaries end to end on loopback, bounded: the load generator drives
//! the raw forwarder in its "fake TURN" mode, and the direct (no relay) path.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bench test")
        .local_addr()
        .expect("bench test")
        .port()
}

/// Value of a numeric field of the generator's one-line JSON answer.
fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} missing in {json}"))
        + key.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).expect("bench test");
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{name} not a number in {json}"))
}

fn load(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_turnbench-load"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("bench test");
    assert!(out.status.success(), "turnbench-load {args:?} failed");
    String::from_utf8(out.stdout).expect("bench test")
}

#[test]
fn generator_drives_the_raw_forwarder_both_ways() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let fwd = Kill(
        Command::new(env!("CARGO_BIN_EXE_turnbench-rawfwd"))
            .args(["--listen", &listen, "--threads", "2", "--max-seconds", "60"])
            .stderr(Stdio::null())
            .spawn()
            .expect("bench test"),
    );
    let pid = fwd.0.id().to_string();
    // The forwarder is up once its port is taken.
    let deadline = Instant::now() + Duration::from_secs(20);
    while UdpSocket::bind(&listen).is_ok() {
        assert!(Instant::now() < deadline, "forwarder did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let json = load(&[
        "relay",
        "--target",
        "fake",
        "--server",
        &listen,
        "--server-pid",
        &pid,
        "--clients",
        "4",
        "--payload",
        "100",
        "--rate",
        "2000",
        "--duration",
        "0.5",
        "--drain",
        "2",
    ]);
    let sent = field(&json, "sent");
    let peer = field(&json, "peer_received");
    let received = field(&json, "received");
    assert!(sent > 0.0, "{json}");
    assert!(peer > 0.0 && peer <= sent, "{json}");
    assert!(received > 0.0 && received <= peer, "{json}");
    assert_eq!(field(&json, "bad"), 0.0, "{json}");
    assert_eq!(field(&json, "relayed"), peer + received, "{json}");
    assert!(field(&json, "rtt_p50_us") > 0.0, "{json}");
    assert!(field(&json, "server_cpu_secs") >= 0.0, "{json}");
}

#[test]
fn direct_path_needs_no_relay() {
    let json = load(&[
        "relay",
        "--target",
        "direct",
        "--clients",
        "2",
        "--payload",
        "1000",
        "--rate",
        "1000",
        "--duration",
        "0.3",
        "--drain",
        "2",
    ]);
    assert!(field(&json, "sent") > 0.0, "{json}");
    assert!(field(&json, "received") > 0.0, "{json}");
    assert_eq!(field(&json, "bad"), 0.0, "{json}");
    assert!(json.contains("\"server_cpu_secs\":null"), "{json}");
}
