//! coturn: its `turnserver` command line, its client tools (`turnutils_peer` as
//! an echo peer, `turnutils_uclient` runs and the totals they print), and a
//! bounded runner for any client tool.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_udp_port, slot_ports, temp_file, ChildGuard, Relay};

/// coturn's `turnserver` on `host:port` with TURN REST credentials
/// (`--use-auth-secret`), the relay ports of `slot` (see `slot`), no TLS, no
/// CLI, logging to stdout; the caller adds its own flags and spawns it.
pub fn turnserver(host: &str, port: u16, slot: u16, realm: &str, secret: &str) -> Command {
    let (min_port, max_port) = slot_ports(slot);
    let mut cmd = Command::new("turnserver");
    cmd.args([
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file",
        "stdout",
    ])
    .args(["--listening-ip", host, "--relay-ip", host])
    .args(["--listening-port", &port.to_string()])
    .args(["--min-port", &min_port.to_string()])
    .args(["--max-port", &max_port.to_string()])
    .args(["--realm", realm, "--use-auth-secret"])
    .args(["--static-auth-secret", secret])
    .args(["--pidfile", &temp_file("coturn-pid", "").to_string_lossy()])
    .args(["--userdb", &temp_file("coturn-db", "").to_string_lossy()]);
    cmd
}

/// coturn's `turnutils_peer`: a UDP echo peer on 127.0.0.1 (or another
/// loopback address).
pub struct EchoPeer {
    pub ip: &'static str,
    pub port: u16,
    pub process: ChildGuard,
}

impl EchoPeer {
    /// Starts the peer on a free port of 127.0.0.1 (again on another one if it
    /// loses a race for the port) and waits until it echoes.
    pub fn start() -> EchoPeer {
        EchoPeer::start_on("127.0.0.1")
    }

    /// [`EchoPeer::start`] on loopback address `ip`.
    pub fn start_on(ip: &'static str) -> EchoPeer {
        assert!(ip.starts_with("127."), "tests stay on loopback");
        let mut attempt = 1;
        loop {
            let port = free_udp_port();
            let mut cmd = Command::new("turnutils_peer");
            cmd.args(["-L", ip, "-p", &port.to_string()]);
            let process = ChildGuard::spawn("turnutils_peer", &mut cmd);
            let mut peer = EchoPeer { ip, port, process };
            match peer.wait_echoing() {
                Ok(()) => return peer,
                Err(e) if attempt < 3 => {
                    eprintln!("turnutils_peer start {attempt} failed, retrying: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Sends probes until one comes back (bounded).
    fn wait_echoing(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return Err(format!(
                    "turnutils_peer exited ({status}): {}",
                    self.process.log_tail(20)
                ));
            }
            let _ = sock.send_to(b"probe", (self.ip, self.port));
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if &buf[..n] == b"probe" {
                    return Ok(());
                }
            }
        }
        Err(format!("turnutils_peer on port {} never echoed", self.port))
    }
}

/// Output of a finished client tool.
#[derive(Debug)]
pub struct ToolRun {
    pub success: bool,
    pub code: Option<i32>,
    pub timed_out: bool,
    pub output: String,
}

/// Runs `cmd` to completion or kills it at `limit`; stdout and stderr together.
pub fn run_tool(name: &str, cmd: &mut Command, limit: Duration) -> ToolRun {
    let mut guard = ChildGuard::spawn(name, cmd);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.exited() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop_quietly(&mut guard);
    let output = std::fs::read_to_string(&guard.log).unwrap_or_default();
    ToolRun {
        success: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        timed_out: status.is_none(),
        output,
    }
}

fn drop_quietly(guard: &mut ChildGuard) {
    let _ = guard.child.kill();
    let _ = guard.child.wait();
}

/// A `turnutils_uclient` invocation.
#[derive(Debug, Clone)]
pub struct Uclient {
    pub flags: Vec<&'static str>,
    pub messages: u32,
    pub clients: u32,
    pub length: u32,
    pub interval_ms: u32,
    pub username: String,
    pub password: Option<String>,
    pub secret: Option<String>,
    pub peer_ip: String,
    pub peer_port: u16,
    pub server_port: u16,
    /// The server's loopback address (127.0.0.1 unless set).
    pub server_ip: String,
}

impl Uclient {
    /// REST-secret mode (`-W`): uclient makes a username valid for a day.
    pub fn new(relay: &Relay, peer: &EchoPeer) -> Uclient {
        Uclient {
            flags: Vec::new(),
            messages: 20,
            clients: 1,
            length: 120,
            interval_ms: 20,
            username: "alice".to_owned(),
            password: None,
            secret: Some(relay.secret.clone()),
            peer_ip: peer.ip.to_owned(),
            peer_port: peer.port,
            server_port: relay.port,
            server_ip: relay.host.to_string(),
        }
    }

    /// Explicit long-term credentials (what a browser holds after asking the
    /// ICE API), without RTCP (`-c`), against the server on 127.0.0.1:`server_port`.
    pub fn with_credentials(
        server_port: u16,
        peer: &EchoPeer,
        username: &str,
        password: &str,
    ) -> Uclient {
        Uclient {
            flags: vec!["-c"],
            messages: 20,
            clients: 1,
            length: 120,
            interval_ms: 20,
            username: username.to_owned(),
            password: Some(password.to_owned()),
            secret: None,
            peer_ip: peer.ip.to_owned(),
            peer_port: peer.port,
            server_port,
            server_ip: "127.0.0.1".to_owned(),
        }
    }

    /// The server on loopback address `ip` instead of 127.0.0.1.
    pub fn server(mut self, ip: &str) -> Uclient {
        self.server_ip = ip.to_owned();
        self
    }

    pub fn flag(mut self, f: &'static str) -> Uclient {
        self.flags.push(f);
        self
    }

    pub fn no_rtcp(&self) -> bool {
        self.flags.contains(&"-c")
    }

    /// Sessions uclient opens: without `-c` each client is an RTP+RTCP pair and
    /// the count is rounded up to even.
    pub fn sessions(&self) -> u64 {
        let m = u64::from(self.clients);
        if self.no_rtcp() {
            m
        } else {
            m + (m & 1)
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("turnutils_uclient");
        cmd.args(&self.flags);
        match (&self.secret, &self.password) {
            (Some(secret), _) => cmd.args(["-W", secret]),
            (None, Some(password)) => cmd.args(["-w", password]),
            (None, None) => &mut cmd,
        };
        cmd.args(["-u", &self.username])
            .args(["-e", &self.peer_ip, "-r", &self.peer_port.to_string()])
            .args(["-p", &self.server_port.to_string()])
            .args(["-n", &self.messages.to_string()])
            .args(["-m", &self.clients.to_string()])
            .args(["-l", &self.length.to_string()])
            .args(["-z", &self.interval_ms.to_string()])
            .arg(&self.server_ip);
        cmd
    }

    pub fn run(&self) -> ToolRun {
        // uclient waits 1–6 s before sending, then sends for n × z ms and waits for
        // stragglers; 60 s is far beyond what a healthy run needs.
        run_tool(
            "turnutils_uclient",
            &mut self.command(),
            Duration::from_secs(60),
        )
    }

    /// Starts the run in the background; [`Uclient::finish`] collects it.
    pub fn spawn(&self) -> ChildGuard {
        ChildGuard::spawn("turnutils_uclient", &mut self.command())
    }

    /// Waits (bounded) for a run started with [`Uclient::spawn`] to end.
    pub fn finish(&self, mut guard: ChildGuard, limit: Duration) -> ToolRun {
        let status = guard.wait_exit(limit);
        guard.kill();
        ToolRun {
            success: status.is_some_and(|s| s.success()),
            code: status.and_then(|s| s.code()),
            timed_out: status.is_none(),
            output: guard.log_text(),
        }
    }

    /// Runs and asserts a clean run: every message sent came back, the tool saw
    /// no malformed echo (wrong length, channel or method), nothing dropped.
    pub fn run_clean(&self) -> UclientReport {
        let run = self.run();
        self.check_clean(&run)
    }

    /// Asserts that `run` (of this invocation) was clean; see [`Uclient::run_clean`].
    pub fn check_clean(&self, run: &ToolRun) -> UclientReport {
        let report = UclientReport::parse(&run.output);
        let context = || format!("command: {:?}\noutput:\n{}", self.command(), run.output);
        assert!(
            !run.timed_out,
            "uclient did not finish in time\n{}",
            context()
        );
        assert!(
            run.success,
            "uclient failed ({:?})\n{}",
            run.code,
            context()
        );
        let Some(report) = report else {
            panic!("uclient printed no summary\n{}", context());
        };
        let expected = self.sessions() * u64::from(self.messages);
        assert_eq!(report.sent_msgs, expected, "messages sent\n{}", context());
        assert_eq!(
            report.recv_msgs,
            report.sent_msgs,
            "messages echoed\n{}",
            context()
        );
        assert_eq!(
            report.sent_bytes,
            expected * u64::from(self.length),
            "bytes sent\n{}",
            context()
        );
        assert_eq!(
            report.recv_bytes,
            report.sent_bytes,
            "bytes echoed\n{}",
            context()
        );
        assert_eq!(report.lost, 0, "lost packets\n{}", context());
        assert_eq!(report.send_dropped, 0, "send dropped\n{}", context());
        assert!(
            report.errors.is_empty(),
            "uclient reported errors\n{}",
            context()
        );
        report
    }
}

/// The totals `turnutils_uclient` prints at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UclientReport {
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub lost: u64,
    pub send_dropped: u64,
    /// Lines with "ERROR" (malformed echo, wrong channel, failed requests).
    pub errors: Vec<String>,
}

impl UclientReport {
    /// Parses the final summary (coturn 4.6):
    /// ```text
    /// 5: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
    /// 5: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 4000
    /// 5: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
    /// ```
    /// The periodic progress lines (with `msz=`) are skipped.
    pub fn parse(output: &str) -> Option<UclientReport> {
        let mut msgs = None;
        let mut bytes = None;
        let mut loss = None;
        let mut errors = Vec::new();
        for line in output.lines() {
            if line.contains("ERROR") {
                errors.push(line.to_owned());
            }
            if line.contains("msz=") {
                continue;
            }
            if let (Some(s), Some(r)) = (
                number_after(line, "tot_send_msgs="),
                number_after(line, "tot_recv_msgs="),
            ) {
                msgs = Some((s, r));
            }
            if let (Some(s), Some(r)) = (
                number_after(line, "tot_send_bytes ~ "),
                number_after(line, "tot_recv_bytes ~ "),
            ) {
                bytes = Some((s, r));
            }
            if let (Some(l), Some(d)) = (
                number_after(line, "Total lost packets "),
                number_after(line, "total send dropped "),
            ) {
                loss = Some((l, d));
            }
        }
        let ((sent_msgs, recv_msgs), (sent_bytes, recv_bytes), (lost, send_dropped)) =
            (msgs?, bytes?, loss?);
        Some(UclientReport {
            sent_msgs,
            recv_msgs,
            sent_bytes,
            recv_bytes,
            lost,
            send_dropped,
            errors,
        })
    }
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
