//! Harness of the whole-system tests: start the real `nexrtc relay` binary on
//! loopback, run coturn's client tools against it, read its `/metrics`. The
//! parts every test crate shares (etcd, the missing-tool rule, the TURN client)
//! come from `nexrtc_test_support`.
//!
//! Every test gets its own relay on ports it found free, so the tests run in
//! parallel (nextest runs each in its own process). Every wait is bounded.
//! Processes are owned by guards whose `Drop` kills them, so a failing test
//! leaves nothing running.
//!
//! `NEXRTC_TEST_RELAY=coturn` runs the same tests against coturn's
//! `turnserver` instead (no metrics, no TLS, no tenants): a test that passes
//! there and fails against ours points at our relay, not at the test. Three
//! negative tests fail against coturn 4.6 by design: it answers a Binding whose
//! attribute overruns the message, keeps a TCP connection sending garbage open,
//! and `--allowed-peer-ip` does not lift its loopback ban.

#![allow(dead_code, unused_imports)] // each test file uses a different part of this module

mod allocate;
mod controller;
mod coturn;
mod dev;
mod metrics;
mod quic;
mod terraform;
mod webrtc;

pub use allocate::*;
pub use controller::*;
pub use coturn::*;
pub use dev::*;
pub use metrics::*;
pub use quic::*;
pub use terraform::*;
pub use webrtc::*;

pub use nexrtc_test_support::etcd::Etcd;
pub use nexrtc_test_support::free_port;
pub use nexrtc_test_support::tools::{missing, optional_tool, require_tool};
pub use nexrtc_test_support::turn::{rest_credentials, Answer, NoAnswer, Relayed, TurnClient};

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a relay may take to answer 200 on `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Relay port ranges, one per test, so that parallel tests never compete for
/// relay ports. They lie above Linux's ephemeral range (32768–60999), where the
/// kernel does not pick ports for other sockets. Keep the numbers distinct.
pub mod slot {
    pub const UDP_CHANNEL: u16 = 0;
    pub const UDP_CHANNEL_NO_RTCP: u16 = 1;
    pub const UDP_SEND: u16 = 2;
    pub const TCP_CHANNEL: u16 = 3;
    pub const TCP_SEND: u16 = 4;
    pub const TLS: u16 = 5;
    pub const MANY_CLIENTS: u16 = 6;
    pub const STUNCLIENT: u16 = 7;
    pub const WEBRTC_RS: u16 = 8;
    pub const WRONG_PASSWORD: u16 = 9;
    pub const EXPIRED: u16 = 10;
    pub const BLOCKED_PEER: u16 = 11;
    pub const GARBAGE: u16 = 12;
    pub const TCP_STALL: u16 = 13;
    pub const ALLOWED_PEER_IP: u16 = 14;
    pub const WEBRTC_RS_WRONG_PASSWORD: u16 = 15;
    pub const QUOTA: u16 = 16;
    pub const STALE_NONCE: u16 = 17;
    pub const RELAY_HOST_PEER: u16 = 18;
    pub const TENANTS: u16 = 19;
    pub const NETWORK_ICE: u16 = 20;
    pub const NETWORK_COTURN: u16 = 21;
    pub const NETWORK_KILL_A: u16 = 22;
    pub const NETWORK_KILL_B: u16 = 23;
    pub const NETWORK_KILL_C: u16 = 24;
    pub const FAILOVER_EU: u16 = 25;
    pub const FAILOVER_US: u16 = 26;
    pub const FAILOVER_AP: u16 = 27;
    pub const FAILOVER_NEW: u16 = 28;
    pub const REPLICAS: u16 = 29;
    pub const ROTATION: u16 = 30;
    pub const DRAIN_A: u16 = 31;
    pub const DRAIN_B: u16 = 32;
    pub const DRAIN_DEADLINE: u16 = 33;
    pub const DEV_MODE: u16 = 34;
    pub const DEV_BROWSER_UDP: u16 = 35;
    pub const DEV_BROWSER_TCP: u16 = 36;
    pub const DEV_BROWSER_TLS: u16 = 37;
    pub const DEV_MODE_STATUS: u16 = 38;
    pub const DEV_BROWSER_REFRESH: u16 = 39;
    pub const DEV_BROWSER_CERT_HINT: u16 = 40;
    pub const LEAVE: u16 = 41;
    pub const COTURN_STUN: u16 = 42;
    pub const CONTROLLER_INIT: u16 = 43;
    pub const COTURN_AGENT: u16 = 44;
    /// The relay installed from the Debian package (tests/package.rs): 65500-65535.
    pub const PACKAGE: u16 = 45;
    // From here on below the ephemeral range (see `slot_ports`).
    pub const DNS_PROCESS: u16 = 46;
    pub const MONITORING_A: u16 = 47;
    pub const MONITORING_B: u16 = 48;
    pub const USAGE: u16 = 49;
}

const SLOT_BASE: u16 = 61_000;
const SLOT_WIDTH: u16 = 100;
/// Slots past [`slot::PACKAGE`] lie below Linux's ephemeral range, from here up to 32767.
const LOW_SLOT_BASE: u16 = 30_000;

/// The relay port range (first, last) of `slot`: 100 ports, above the ephemeral range
/// (61000–65535) for the first 46 slots, below it (30000–32767) for the next.
pub fn slot_ports(slot: u16) -> (u16, u16) {
    let min = match slot.checked_sub(slot::PACKAGE + 1) {
        None => SLOT_BASE + slot * SLOT_WIDTH,
        Some(low) => LOW_SLOT_BASE + low * SLOT_WIDTH,
    };
    assert!(
        slot <= slot::PACKAGE || min + SLOT_WIDTH <= 32_768,
        "slot {slot} out of range"
    );
    (min, min.saturating_add(SLOT_WIDTH - 1))
}

/// Which TURN server the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Our `nexrtc relay`.
    Nexrtc,
    /// coturn's `turnserver`, as a reference for the tests themselves.
    Coturn,
}

pub fn backend() -> Backend {
    match std::env::var("NEXRTC_TEST_RELAY").as_deref() {
        Ok("coturn") => Backend::Coturn,
        _ => Backend::Nexrtc,
    }
}

/// A random lowercase token, for realms, secrets and user names.
pub fn random_token(prefix: &str) -> String {
    let mut s = String::from(prefix);
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let _ = write!(s, "{:016x}", h.finish());
    }
    s
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A UDP port free on 127.0.0.1 right now.
pub fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    sock.local_addr().expect("local_addr").port()
}

/// Writes `contents` to a fresh file under the target directory.
/// Runs `cmd` to its end and returns its output; panics naming `what`, with its stdout and
/// stderr, if it fails.
pub fn run_ok(what: &str, cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn temp_file(what: &str, contents: &str) -> PathBuf {
    let path = log_path(what);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// Log files live under the target directory, one per process started.
fn log_path(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{what}-{}.log", random_token("")))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process killed when dropped.
pub struct ChildGuard {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let log = log_path(name);
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to end by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n---- end of {} ----",
                self.name,
                self.log.display(),
                self.log_tail(60),
                self.name
            );
        }
    }
}

/// How to start a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub slot: u16,
    /// The loopback address it listens and relays on (127.0.0.1 unless set).
    pub host: std::net::Ipv4Addr,
    pub allow_loopback_peers: bool,
    pub tls: bool,
    pub extra_args: Vec<String>,
}

impl RelayConfig {
    pub fn new(slot: u16) -> RelayConfig {
        RelayConfig {
            slot,
            host: std::net::Ipv4Addr::LOCALHOST,
            allow_loopback_peers: true,
            tls: true,
            extra_args: Vec::new(),
        }
    }

    /// Listen and relay on another loopback address (127.0.0.x), as a separate host would.
    pub fn host(mut self, host: std::net::Ipv4Addr) -> RelayConfig {
        assert!(host.is_loopback(), "tests stay on loopback");
        self.host = host;
        self
    }

    pub fn deny_loopback_peers(mut self) -> RelayConfig {
        self.allow_loopback_peers = false;
        self
    }

    pub fn arg(mut self, arg: &str) -> RelayConfig {
        self.extra_args.push(arg.to_owned());
        self
    }
}

/// A running relay on a loopback address, stopped when dropped.
pub struct Relay {
    pub backend: Backend,
    pub host: std::net::Ipv4Addr,
    pub port: u16,
    pub tls_port: u16,
    pub metrics_addr: SocketAddr,
    pub realm: String,
    pub secret: String,
    pub min_port: u16,
    pub max_port: u16,
    pub process: ChildGuard,
}

impl Relay {
    /// Starts a relay and waits until it is ready. The ports are the kernel's
    /// free picks of a moment ago; if another process took one meanwhile, the
    /// relay exits with "Address already in use" and is started again on new ones.
    pub fn start(config: RelayConfig) -> Relay {
        let mut attempt = 1;
        loop {
            match Relay::try_start(&config) {
                Ok(relay) => return relay,
                Err(e) if attempt < 3 && e.contains("in use") => {
                    eprintln!("relay start {attempt} lost a port race, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_start(config: &RelayConfig) -> Result<Relay, String> {
        let backend = backend();
        let realm = format!("{}.test", random_token("r"));
        let secret = random_token("s");
        let port = free_port();
        let mut tls_port = free_port();
        while tls_port == port {
            tls_port = free_port();
        }
        let metrics_port = free_port();
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        let (min_port, max_port) = slot_ports(config.slot);

        let host = config.host.to_string();
        let process = match backend {
            Backend::Nexrtc => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
                cmd.arg("relay")
                    .args(["--listening-ip", &host, "--relay-ip", &host])
                    .args(["--listening-port", &port.to_string()])
                    .args(["--min-port", &min_port.to_string()])
                    .args(["--max-port", &max_port.to_string()])
                    .args(["--realm", &realm, "--static-auth-secret", &secret])
                    .args(["--metrics-listen", &metrics_addr.to_string()]);
                if config.tls {
                    cmd.args(["--tls-listening-port", &tls_port.to_string()]);
                } else {
                    cmd.arg("--no-tls");
                }
                if config.allow_loopback_peers {
                    cmd.arg("--allow-loopback-peers");
                }
                cmd.args(&config.extra_args);
                if std::env::var_os("RUST_LOG").is_none() {
                    cmd.env("RUST_LOG", "info");
                }
                ChildGuard::spawn("nexrtc-relay", &mut cmd)
            }
            Backend::Coturn => {
                let mut cmd = turnserver(&host, port, config.slot, &realm, &secret);
                if config.allow_loopback_peers {
                    cmd.arg("--allow-loopback-peers");
                }
                cmd.args(&config.extra_args);
                ChildGuard::spawn("coturn-turnserver", &mut cmd)
            }
        };
        let mut relay = Relay {
            backend,
            host: config.host,
            port,
            tls_port,
            metrics_addr,
            realm,
            secret,
            min_port,
            max_port,
            process,
        };
        relay.wait_ready()?;
        Ok(relay)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.port))
    }

    pub fn has_metrics(&self) -> bool {
        self.backend == Backend::Nexrtc
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.exited() {
                return Err(format!(
                    "relay exited before it was ready ({status}); its log:\n{}",
                    self.process.log_tail(60)
                ));
            }
            let ready = match self.backend {
                Backend::Nexrtc => {
                    matches!(http_get(self.metrics_addr, "/readyz"), Ok((200, _)))
                }
                // coturn has no health endpoint: wait until its TCP listener answers.
                Backend::Coturn => {
                    TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
                }
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "relay not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.process.log_tail(60)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// REST credentials `(username, password)` valid for an hour.
    pub fn credentials(&self, user: &str) -> (String, String) {
        let username = format!("{}:{user}", unix_now() + 3600);
        let password = turn_core::auth::rest_password(self.secret.as_bytes(), &username);
        (username, password)
    }

    /// A scrape of `/metrics`. Panics if the relay does not answer.
    pub fn metrics(&self) -> Metrics {
        assert!(self.has_metrics(), "{:?} has no metrics", self.backend);
        match http_get(self.metrics_addr, "/metrics") {
            Ok((200, body)) => Metrics(body),
            Ok((status, body)) => panic!("/metrics answered {status}: {body}"),
            Err(e) => panic!("/metrics unreachable: {e}"),
        }
    }

    /// Waits (bounded) until `check` holds for a fresh scrape; panics with the
    /// last scrape otherwise. Counters are live, but a packet may still be in
    /// flight when a client tool exits.
    pub fn wait_metrics(&self, what: &str, check: impl Fn(&Metrics) -> bool) -> Metrics {
        self.wait_metrics_for(what, Duration::from_secs(10), check)
    }

    /// [`Relay::wait_metrics`] with another bound.
    pub fn wait_metrics_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.metrics();
            if check(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("metrics never showed {what}; last scrape:\n{}", m.0);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The relay process is still running (it did not crash on what the test sent).
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.process.exited() {
            panic!(
                "relay died ({status}); its log:\n{}",
                self.process.log_tail(60)
            );
        }
    }
}
