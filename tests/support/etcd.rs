//! A real etcd for the whole-system tests: Debian's `etcd` (package
//! etcd-server) started on free loopback ports, one per test.
//!
//! Adapted from the controller crate's harness (`controller/tests/support`):
//! etcd runs under a tiny `sh` watchdog whose stdin is a pipe from the test
//! process. When the test process goes away (even killed by nextest's
//! timeout), the pipe closes and the watchdog kills etcd and removes its data,
//! so no etcd outlives its test.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get, in_ci, random_token};

/// How long etcd may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

const WATCHDOG: &str = r#"bin=$1; root=$2; shift 2
"$bin" "$@" >"$root/etcd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$root/etcd.pid"
read -r cmd
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$root/data"
"#;

/// The etcd binary (`$ETCD_BIN` or `etcd` on the PATH), or `None` after a loud
/// notice when it is missing outside CI. In CI (`CI=true`) a missing etcd fails.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("ETCD_BIN").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if in_ci() {
            panic!("etcd is not installed, and CI is set: install Debian's etcd-server");
        }
        eprintln!();
        eprintln!("######################################################################");
        eprintln!("## SKIPPED: etcd is not installed (Debian: apt-get install etcd-server).");
        eprintln!("## This test did NOT run. In CI (CI=true) a missing etcd fails instead.");
        eprintln!("######################################################################");
    }
    found
}

/// One etcd process, killed (and its data removed) when dropped.
pub struct Etcd {
    pub client_port: u16,
    pub root: PathBuf,
    watchdog: Child,
    stdin: Option<ChildStdin>,
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it is healthy; `None`
    /// (test skipped) when etcd is not installed outside CI. A lost race for a
    /// port is retried on new ones.
    pub fn start() -> Option<Etcd> {
        let bin = etcd_binary()?;
        let mut attempt = 1;
        loop {
            match Etcd::try_start(&bin) {
                Ok(etcd) => return Some(etcd),
                Err(e) if attempt < 3 => {
                    eprintln!("etcd start {attempt} failed, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_start(bin: &Path) -> Result<Etcd, String> {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("etcd")
            .join(random_token("e"));
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(bin)
            .arg(&root)
            .args(["--name", "default", "--data-dir"])
            .arg(root.join("data"))
            .args(["--listen-client-urls", &client])
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
            .map_err(|e| format!("spawn etcd watchdog: {e}"))?;
        let stdin = watchdog.stdin.take();
        let mut etcd = Etcd {
            client_port,
            root,
            watchdog,
            stdin,
        };
        etcd.wait_ready()?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.root.join("etcd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, body)) = http_get(addr, "/health") {
                if body.contains("true") {
                    return Ok(());
                }
            }
            let log = self.log_tail(40);
            if log.contains("address already in use") {
                return Err(format!("etcd lost a race for a port; its log:\n{log}"));
            }
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                return Err(format!(
                    "etcd exited before it was ready ({status}); its log:\n{}",
                    self.log_tail(40)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd not healthy after {READY_TIMEOUT:?}; its log:\n{}",
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        } // and EOF: the watchdog kills etcd
        let _ = self.watchdog.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of etcd ({}) ----\n{}\n---- end of etcd ----",
                self.root.display(),
                self.log_tail(40)
            );
        }
    }
}
