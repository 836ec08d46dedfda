//! A real etcd for tests: Debian's `etcd-server` started on free loopback ports.
//!
//! etcd runs under a tiny `sh` watchdog whose stdin is a pipe from the test process: when the
//! test process exits (even killed), the pipe closes and the watchdog kills etcd and removes
//! its data, so a static, never-dropped etcd shared by a test binary does not outlive it.
//! Missing etcd: with `CI=true` the tests fail, otherwise they are skipped with a loud notice.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nexrtc_controller::store::{EtcdConfig, EtcdStore, Store};
use tokio::sync::OnceCell;

const WATCHDOG: &str = r#"bin=$1; root=$2; rm=$3; shift 3
"$bin" "$@" >"$root/etcd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$root/etcd.pid"
read -r cmd
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ "$cmd" != keep ] && [ "$rm" = 1 ]; then rm -rf "$root"; fi
"#;

/// The etcd binary, or `None` (after a loud notice) when absent outside CI.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("ETCD_BIN").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("etcd not found (install Debian etcd-server) and CI=true: etcd tests must run");
        }
        // Straight to stderr: the test harness captures `eprintln!`.
        let notice =
            "\n*** SKIPPING etcd tests: no etcd binary (apt-get install etcd-server) ***\n";
        let _ = std::io::stderr().write_all(notice.as_bytes());
    }
    found
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// One etcd process (see the module docs).
pub struct Etcd {
    pub client_port: u16,
    pub peer_port: u16,
    pub root: PathBuf,
    watchdog: Child,
    stdin: Option<ChildStdin>,
}

impl Etcd {
    /// Starts etcd with its data under `root` (created), on the given ports; `remove` makes
    /// the watchdog delete `root` when the test process goes away.
    pub fn start(bin: &Path, root: &Path, client_port: u16, peer_port: u16, remove: bool) -> Self {
        std::fs::create_dir_all(root).expect("create etcd root");
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data = root.join("data");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(bin)
            .arg(root)
            .arg(if remove { "1" } else { "0" })
            .args(["--name", "default", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            // Shorter raft timing lowers etcd's minimum lease TTL from 2 s to 1 s.
            .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn etcd watchdog");
        let stdin = watchdog.stdin.take();
        Etcd {
            client_port,
            peer_port,
            root: root.to_owned(),
            watchdog,
            stdin,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd with SIGKILL, keeping its data for a restart.
    pub fn kill(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.watchdog.wait();
    }

    /// Sends a signal (`STOP`, `CONT`) to the etcd process.
    pub fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.root.join("etcd.pid")).expect("etcd.pid");
        let status = Command::new("sh")
            .args(["-c", "kill -\"$1\" \"$2\"", "sh", signal, pid.trim()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits (bounded) until etcd answers requests.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let config = EtcdConfig {
                endpoints: vec![self.endpoint()],
                request_timeout: Duration::from_millis(500),
                connect_timeout: Duration::from_millis(500),
                ..EtcdConfig::default()
            };
            if let Ok(store) = EtcdStore::connect(config).await {
                if Store::get(&store, "ready-probe").await.is_ok() {
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.root.join("etcd.log")).unwrap_or_default();
                panic!("etcd did not become ready within 20 s; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads one gauge/counter from etcd's Prometheus endpoint.
    pub async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.client_port))
            .await
            .expect("connect to etcd metrics");
        let request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send metrics request");
        let mut body = String::new();
        stream
            .read_to_string(&mut body)
            .await
            .expect("read metrics");
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
}

impl Drop for Etcd {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the watchdog kills etcd
        let _ = self.watchdog.wait();
    }
}

static SHARED: OnceCell<Option<Etcd>> = OnceCell::const_new();

/// The etcd shared by every test of this binary (started on first use), or `None` to skip.
pub async fn shared_etcd() -> Option<&'static Etcd> {
    let etcd = SHARED
        .get_or_init(|| async {
            let bin = etcd_binary()?;
            let root = std::env::temp_dir().join(format!("nexrtc-etcd-{}", std::process::id()));
            let etcd = Etcd::start(&bin, &root, free_port(), free_port(), true);
            etcd.wait_ready().await;
            Some(etcd)
        })
        .await;
    etcd.as_ref()
}

/// A store on the shared etcd under a prefix of its own, so parallel tests do not meet.
pub async fn etcd_store(test: &str) -> Option<EtcdStore> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let etcd = shared_etcd().await?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some(
        store_for(
            etcd,
            &format!("/nexrtc-test/{}-{n}/{test}/", std::process::id()),
        )
        .await,
    )
}

pub async fn store_for(etcd: &Etcd, prefix: &str) -> EtcdStore {
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.to_owned(),
        ..EtcdConfig::default()
    };
    EtcdStore::connect(config).await.expect("etcd client")
}
