//! `nexrtc dev` as a process on loopback: the whole network (controller, relay with its
//! agent, demo and status pages) on ports found free, stopped when dropped.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, http_get, random_token, slot_ports, ChildGuard, Metrics};

/// How long `nexrtc dev` may take until its relay is registered.
const DEV_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `nexrtc dev`.
pub struct DevNetwork {
    pub http: SocketAddr,
    pub turn_port: u16,
    pub tls_port: u16,
    pub relay_metrics: SocketAddr,
    /// Its GeoDNS (zone `nexrtc.test`), UDP and TCP.
    pub dns: SocketAddr,
    pub api_key: String,
    pub process: ChildGuard,
}

impl DevNetwork {
    /// Starts on free ports, relaying from the ports of `slot`; a lost race for a port
    /// is retried on others.
    pub fn start(slot: u16) -> DevNetwork {
        DevNetwork::start_with(slot, &[])
    }

    /// [`DevNetwork::start`] with more `nexrtc dev` flags.
    pub fn start_with(slot: u16, flags: &[&str]) -> DevNetwork {
        let mut attempt = 1;
        loop {
            match DevNetwork::try_start(slot, flags) {
                Ok(dev) => return dev,
                Err(e) if attempt < 3 && e.contains("in use") => {
                    eprintln!("nexrtc dev start {attempt} lost a port race, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_start(slot: u16, flags: &[&str]) -> Result<DevNetwork, String> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let turn_port = free_port();
        let mut tls_port = free_port();
        while tls_port == turn_port {
            tls_port = free_port();
        }
        let relay_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (min_port, max_port) = slot_ports(slot);
        let api_key = format!("nxk_{}", random_token(""));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
        cmd.arg("dev")
            .args(["--http", &http.to_string()])
            .args(["--turn-port", &turn_port.to_string()])
            .args(["--tls-port", &tls_port.to_string()])
            .args(["--relay-metrics", &relay_metrics.to_string()])
            .args(["--dns", &dns.to_string()])
            .args(["--min-port", &min_port.to_string()])
            .args(["--max-port", &max_port.to_string()])
            .args(flags)
            .env("NEXRTC_API_KEY", &api_key);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let process = ChildGuard::spawn("nexrtc-dev", &mut cmd);
        let mut dev = DevNetwork {
            http,
            turn_port,
            tls_port,
            relay_metrics,
            dns,
            api_key,
            process,
        };
        dev.wait_ready()?;
        Ok(dev)
    }

    /// Until `GET /v1/status` (public in dev mode) lists the relay.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEV_READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.exited() {
                return Err(format!(
                    "nexrtc dev exited before it was ready ({status}): {}",
                    self.process.log_tail(40)
                ));
            }
            if let Ok((200, body)) = http_get(self.http, "/v1/status") {
                let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if status["relays"].as_array().is_some_and(|r| !r.is_empty()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nexrtc dev not ready after {DEV_READY_TIMEOUT:?}: {}",
                    self.process.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The relay's `/metrics`.
    pub fn relay_metrics(&self) -> Metrics {
        match http_get(self.relay_metrics, "/metrics") {
            Ok((200, body)) => Metrics(body),
            other => panic!("relay /metrics: {other:?}"),
        }
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.process.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.process.wait_exit(limit)
    }
}
