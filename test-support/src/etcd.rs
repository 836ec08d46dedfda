//! A real etcd for tests: Debian's `etcd` (package `etcd-server`, or `$ETCD_BIN`) on free
//! loopback ports, with its data in a directory of its own.
//!
//! etcd runs under a tiny `sh` watchdog whose stdin is a pipe from the test process. When
//! the test process goes away (even killed by nextest's timeout, or holding a `static`
//! etcd that is never dropped), the pipe closes and the watchdog kills etcd and removes
//! its directory, so no etcd outlives its test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::tools::require_tool;

/// How long etcd may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `$1` etcd, `$2` its directory, the rest its arguments. A line `keep` on stdin (see
/// [`Etcd::kill`]) keeps the directory; anything else, or end of file, removes it.
const WATCHDOG: &str = r#"bin=$1; root=$2; shift 2
"$bin" "$@" >"$root/etcd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$root/etcd.pid"
read -r cmd
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ "$cmd" != keep ]; then rm -rf "$root"; fi
"#;

/// One etcd process: stopped, and its directory removed, when dropped.
pub struct Etcd {
    bin: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health` and `/metrics` (etcd's `--listen-metrics-urls`).
    metrics_port: u16,
    tls: Option<ServerTls>,
    dir: PathBuf,
    process: Watchdog,
}

/// TLS on etcd's client port: its certificate and key (for 127.0.0.1), and the CA
/// whose client certificates it requires (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The watchdog of one etcd run, and the pipe to it.
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Tells the watchdog to kill etcd (`keep` keeps the directory), and reaps it.
    fn stop(&mut self, command: &[u8]) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(command);
        } // and end of file
        let _ = self.child.wait();
    }
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it is healthy. `None` (the test
    /// is skipped) when etcd is not installed outside CI; under `CI=true` that fails (see
    /// [`crate::tools`]). A lost race for a port is retried on new ones.
    pub fn start() -> Option<Etcd> {
        Etcd::start_with(None)
    }

    /// [`Etcd::start`] with TLS on the client port: `https://` endpoint, client
    /// certificates required.
    pub fn start_tls(tls: ServerTls) -> Option<Etcd> {
        Etcd::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls>) -> Option<Etcd> {
        let bin = match std::env::var_os("ETCD_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => require_tool("etcd", "etcd-server")?,
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut attempt = 1;
        loop {
            let dir = std::env::temp_dir().join(format!(
                "nexrtc-etcd-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let client_port = free_port();
            let mut peer_port = free_port();
            while peer_port == client_port {
                peer_port = free_port();
            }
            let mut metrics_port = free_port();
            while metrics_port == client_port || metrics_port == peer_port {
                metrics_port = free_port();
            }
            let mut etcd = Etcd {
                bin: bin.clone(),
                client_port,
                peer_port,
                metrics_port,
                process: Etcd::spawn(
                    &bin,
                    &dir,
                    [client_port, peer_port, metrics_port],
                    tls.as_ref(),
                ),
                tls: tls.clone(),
                dir,
            };
            match etcd.wait_ready() {
                Ok(()) => return Some(etcd),
                Err(e) if attempt < 3 => {
                    eprintln!("etcd start {attempt} failed, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Starts the watchdog and etcd (not waiting for it).
    fn spawn(bin: &Path, dir: &Path, ports: [u16; 3], tls: Option<&ServerTls>) -> Watchdog {
        let [client_port, peer_port, metrics_port] = ports;
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let metrics = format!("http://127.0.0.1:{metrics_port}");
        let mut tls_args = Vec::new();
        if let Some(t) = tls {
            tls_args.push("--cert-file".into());
            tls_args.push(t.cert.clone().into_os_string());
            tls_args.push("--key-file".into());
            tls_args.push(t.key.clone().into_os_string());
            tls_args.push("--trusted-ca-file".into());
            tls_args.push(t.client_ca.clone().into_os_string());
            tls_args.push("--client-cert-auth".into());
        }
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(bin)
            .arg(dir)
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(&tls_args)
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            // Shorter raft timing lowers etcd's minimum lease TTL from 2 s to 1 s.
            .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn etcd watchdog: {e}"));
        let stdin = watchdog.stdin.take();
        Watchdog {
            child: watchdog,
            stdin,
        }
    }

    /// The client URL, `http://127.0.0.1:<port>` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd with SIGKILL, keeping its data for [`Etcd::restart`].
    pub fn kill(&mut self) {
        self.process.stop(b"keep\n");
    }

    /// Starts etcd again, on the same ports and data, after [`Etcd::kill`]; waits until it
    /// is healthy.
    pub fn restart(&mut self) {
        self.process.stop(b"keep\n");
        let ports = [self.client_port, self.peer_port, self.metrics_port];
        self.process = Etcd::spawn(&self.bin, &self.dir, ports, self.tls.as_ref());
        if let Err(e) = self.wait_ready() {
            panic!("etcd restart: {e}");
        }
    }

    /// Freezes etcd (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws etcd after [`Etcd::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.join("etcd.pid")).expect("etcd.pid");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} etcd failed");
    }

    /// One sample (the line without labels) of etcd's Prometheus endpoint.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.metrics_addr(), "/metrics")
            .unwrap_or_else(|e| panic!("etcd /metrics: {e}"));
        body.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("metric {name} not found"))
    }

    /// The last `lines` lines of etcd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics_port))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, body)) = http_get(self.metrics_addr(), "/health") {
                if body.contains("true") {
                    return Ok(());
                }
            }
            let log = self.log_tail(40);
            if log.contains("address already in use") {
                self.process.stop(b"stop\n");
                return Err(format!("etcd lost a race for a port; its log:\n{log}"));
            }
            if let Ok(Some(status)) = self.process.child.try_wait() {
                return Err(format!(
                    "etcd exited before it was ready ({status}); its log:\n{log}"
                ));
            }
            if Instant::now() > deadline {
                self.process.stop(b"stop\n");
                return Err(format!(
                    "etcd not healthy after {READY_TIMEOUT:?}; its log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of etcd ({}) ----\n{}\n---- end of etcd ----",
                self.dir.display(),
                self.log_tail(40)
            );
        }
        self.process.stop(b"stop\n");
        // The watchdog removed it, unless etcd was killed and not restarted.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP/1.0 GET: the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}
