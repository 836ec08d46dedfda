//! NexRTC multi-region lab: this machine as a small planet.
//!
//! ```text
//!   region 1 netns (us-east)            region 3 netns (eu-west)        …  region 6
//!   lab0 10.1.0.1/16 + hosts' /32s      lab0 10.3.0.1/16 + hosts' /32s
//!   route 10.0.0.0/8 dev lab0           route 10.0.0.0/8 dev lab0
//!      │  (TUN; its fd is held here)        │
//!      └──────────── forwarder (threads of the lab process) ───────────┘
//!                delay rtt(i,j)/2 + jitter each way, loss, cuts
//!
//!   NAT client netns of region k: veth 192.168.k.2/24, default via 192.168.k.1 (region k),
//!   which source-NATs 192.168.k.0/24 to 10.k.3.1 (nftables, in region k's namespace) on
//!   the way out and to the region's own hosts alike
//! ```
//!
//! * **Addresses.** Region k (1-based, in the plan's order) owns 10.k.0.0/16. Several
//!   "hosts" share a region's namespace with addresses of their own
//!   ([`Lab::add_address`]): e.g. etcd 10.k.0.10, a controller 10.k.0.20, relays
//!   10.k.1.1 and 10.k.1.2, clients 10.k.2.x. Traffic inside a region stays in its
//!   namespace (0 ms); traffic between regions crosses the forwarder.
//! * **Delay.** The kernel here has no netem, so delay is emulated in user space: the
//!   forwarder ([`forward`]) reads each region's TUN device, holds every IPv4 packet for
//!   half the plan's RTT plus zero-mean normal jitter (the plan's `jitter_ms`, never
//!   reordering a link), drops the plan's `loss`, and writes it to the destination
//!   region's TUN. Its accuracy is measured, not assumed: [`Lab::stats`] has the
//!   histogram of write time minus due time, and `nexrtc-lab rtt` prints measured against
//!   planned RTT for every pair.
//! * **Namespaces vanish with the lab.** No `ip netns add` (named namespaces outlive a
//!   killed process): each namespace is held by a `sleep` started with `unshare --net`
//!   under `PR_SET_PDEATHSIG=SIGKILL`, and the TUN devices are created from threads that
//!   entered the namespaces, their file descriptors held by this process. When the lab
//!   process ends — dropped, or killed with SIGKILL — the descriptors close (the TUN
//!   devices go), the holders die with their parent, and the namespaces, their veths and
//!   nftables rules go with them. PDEATHSIG fires when the *thread* that started a child
//!   ends: create the [`Lab`] on a thread that lives as long as it (a test's thread, or
//!   `main`), and start processes in it from such a thread too ([`Lab::command`]).
//! * Needs root, `unshare` and `nsenter` (util-linux), `ip` (iproute2), `nft` (nftables),
//!   `/dev/net/tun`.

pub mod echo;
pub mod forward;
pub mod network;
pub mod plan;
pub mod rtt;

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use echo::Echo;
pub use forward::{Forwarder, Lateness, LinkStats, Stats};
pub use network::{Keys, Network, NetworkConfig};
pub use plan::{Plan, PlanError, Region};
pub use rtt::{measure_rtts, PairRtt};

/// The TUN device's name in every region namespace.
pub const TUN: &str = "lab0";

/// Why the lab could not start or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// What the lab needs that this machine lacks: `Err((what, how to get it))` for the first
/// missing piece (root; `unshare`, `nsenter`; `ip`; `nft`; `sysctl`; `/dev/net/tun`).
pub fn prerequisites() -> Result<(), (String, String)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err((
            "root".into(),
            "run as root (network namespaces, TUN devices)".into(),
        ));
    }
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    for (program, package) in [
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("sysctl", "procps"),
    ] {
        if !on_path(program) {
            return Err((program.into(), format!("apt-get install {package}")));
        }
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(("/dev/net/tun".into(), "a kernel with TUN devices".into()));
    }
    Ok(())
}

/// A network namespace of the lab, held by a process.
#[derive(Debug)]
pub struct Ns {
    name: String,
    holder: Child,
}

impl Ns {
    /// `/proc/<holder>/ns/net`.
    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// The holder's pid (for `ip link set … netns PID` and `nsenter -t PID -n`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `PR_SET_PDEATHSIG = SIGKILL` for a child about to exec.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn new_ns(name: &str) -> Result<Ns, LabError> {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "sleep", "infinity"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let holder = cmd.spawn().map_err(io("unshare --net (util-linux)"))?;
    let ns = Ns {
        name: name.to_owned(),
        holder,
    };
    // The namespace exists once the holder has exec'd sleep (unshare first).
    let deadline = Instant::now() + Duration::from_secs(5);
    let own = std::fs::read_link("/proc/self/ns/net").map_err(io("/proc/self/ns/net"))?;
    loop {
        match std::fs::read_link(ns.path()) {
            Ok(link) if link != own => return Ok(ns),
            _ if Instant::now() > deadline => {
                return Err(LabError::Failed(format!(
                    "namespace {name}: unshare did not start"
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Runs `f` on a new thread that entered `ns`'s network namespace: sockets and TUN devices
/// it creates belong to that namespace (and may be used from any thread afterwards).
pub fn in_ns<T: Send + 'static>(
    ns: &Ns,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    match spawn_in(ns, f)?.join() {
        Ok(result) => result.map_err(io(format!("setns {}", ns.path()))),
        Err(_) => Err(LabError::Failed(
            "the closure run in the namespace panicked".into(),
        )),
    }
}

/// [`in_ns`] without waiting: the thread's handle (its result is `Err` if it could not
/// enter the namespace).
pub fn spawn_in<T: Send + 'static>(
    ns: &Ns,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<std::io::Result<T>>, LabError> {
    let path = ns.path();
    let file = File::open(&path).map_err(io(path))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: a valid namespace file descriptor; setns affects this thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    }))
}

/// A TUN device named [`TUN`] created in the calling thread's namespace.
fn create_tun() -> std::io::Result<File> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        pad: [0; 22],
    };
    req.name[..TUN.len()].copy_from_slice(TUN.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which IfReq lays out (name,
    // then the flags at the start of the union, padded to its size).
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tun)
}

/// Runs a setup command inside `ns`; its failure names the command and what it printed.
fn run(ns: &Ns, program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let mut cmd = command_in(ns, program);
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .map_err(io(format!("{program} (in {})", ns.name)))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        pipe.write_all(text.as_bytes())
            .map_err(io(format!("{program} stdin")))?;
    }
    let out = child.wait_with_output().map_err(io(program.to_owned()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Failed(format!(
        "in {}: {program} {}: {}",
        ns.name,
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `nsenter --net=<ns> -- program`, dying with its parent thread.
fn command_in(ns: &Ns, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path()))
        .arg("--")
        .arg(program);
    die_with_parent(&mut cmd);
    cmd
}

/// The running lab (see the crate docs). Dropping it stops the forwarder and kills the
/// namespaces' holders; processes started with [`Lab::command`] are the caller's to stop
/// (they die with the process at the latest).
pub struct Lab {
    plan: Plan,
    regions: Vec<Ns>,
    nats: Vec<Ns>,
    forwarder: Option<Forwarder>,
}

impl Lab {
    /// Builds the namespaces, TUN devices, routes and NAT, and starts the forwarder.
    pub fn start(plan: &Plan) -> Result<Lab, LabError> {
        let mut regions = Vec::new();
        let mut nats = Vec::new();
        let mut tuns = Vec::new();
        for (i, region) in plan.regions.iter().enumerate() {
            let k = i + 1;
            let ns = new_ns(&region.name)?;
            let tun =
                in_ns(&ns, create_tun)?.map_err(io(format!("TUN device in {}", region.name)))?;
            let net = format!("10.{k}.0.1/16");
            run(&ns, "ip", &["link", "set", "lo", "up"], None)?;
            run(&ns, "ip", &["addr", "add", &net, "dev", TUN], None)?;
            run(&ns, "ip", &["link", "set", TUN, "mtu", "1500", "up"], None)?;
            run(&ns, "ip", &["route", "add", "10.0.0.0/8", "dev", TUN], None)?;
            run(
                &ns,
                "sysctl",
                &["-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                None,
            )?;

            // The NAT client namespace behind the region.
            let nat = new_ns(&format!("{}-nat", region.name))?;
            let (inside, outside) = ("nat0", "nat");
            let pid = nat.pid().to_string();
            run(
                &ns,
                "ip",
                &[
                    "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", &pid,
                ],
                None,
            )?;
            run(
                &ns,
                "ip",
                &["addr", "add", &format!("192.168.{k}.1/24"), "dev", outside],
                None,
            )?;
            run(&ns, "ip", &["link", "set", outside, "up"], None)?;
            run(&nat, "ip", &["link", "set", "lo", "up"], None)?;
            run(
                &nat,
                "ip",
                &["addr", "add", &format!("192.168.{k}.2/24"), "dev", inside],
                None,
            )?;
            run(&nat, "ip", &["link", "set", inside, "up"], None)?;
            run(
                &nat,
                "ip",
                &["route", "add", "default", "via", &format!("192.168.{k}.1")],
                None,
            )?;
            run(
                &nat,
                "sysctl",
                &["-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                None,
            )?;
            run(
                &ns,
                "ip",
                &["addr", "add", &format!("10.{k}.3.1/32"), "dev", TUN],
                None,
            )?;
            run(&ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)?;
            // Source NAT on the way out of the region (postrouting) and to the region's own
            // hosts (input: locally delivered packets never pass postrouting), so every
            // host sees the NAT client as 10.k.3.1, as a real NAT's public address.
            let rules = format!(
                "table ip lab {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat;\n    \
                 ip saddr 192.168.{k}.0/24 oifname \"{TUN}\" snat to 10.{k}.3.1\n  }}\n  \
                 chain input {{\n    type nat hook input priority 100;\n    \
                 ip saddr 192.168.{k}.0/24 snat to 10.{k}.3.1\n  }}\n}}\n"
            );
            run(&ns, "nft", &["-f", "-"], Some(&rules))?;
            regions.push(ns);
            nats.push(nat);
            tuns.push(tun);
        }
        let seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let forwarder = Forwarder::start(plan, tuns, seed ^ 0x9E37_79B9_7F4A_7C15);
        Ok(Lab {
            plan: plan.clone(),
            regions,
            nats,
            forwarder: Some(forwarder),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn index(&self, region: &str) -> Result<usize, LabError> {
        (self.plan.regions.iter())
            .position(|r| r.name == region)
            .ok_or_else(|| LabError::UnknownRegion(region.to_owned()))
    }

    /// Region `region`'s namespace.
    pub fn region_ns(&self, region: &str) -> Result<&Ns, LabError> {
        Ok(&self.regions[self.index(region)?])
    }

    /// The NAT client namespace behind `region` (its traffic leaves as 10.k.3.1).
    pub fn nat_ns(&self, region: &str) -> Result<&Ns, LabError> {
        Ok(&self.nats[self.index(region)?])
    }

    /// Adds `addr` (in the region's 10.k.0.0/16) to the region's namespace, as a host.
    pub fn add_address(&self, region: &str, addr: Ipv4Addr) -> Result<(), LabError> {
        let i = self.index(region)?;
        let o = addr.octets();
        if o[0] != 10 || usize::from(o[1]) != i + 1 {
            return Err(LabError::Failed(format!(
                "{addr} is not in {region}'s 10.{}.0.0/16",
                i + 1
            )));
        }
        run(
            &self.regions[i],
            "ip",
            &["addr", "add", &format!("{addr}/32"), "dev", TUN],
            None,
        )
    }

    /// `program` to run inside `ns` (through `nsenter`), killed with this process.
    pub fn command(&self, ns: &Ns, program: &str) -> Command {
        command_in(ns, program)
    }

    /// Cuts `region` off (every packet to or from it is dropped), or heals it.
    pub fn cut(&self, region: &str, cut: bool) -> Result<(), LabError> {
        let i = self.index(region)?;
        if let Some(f) = &self.forwarder {
            f.cut(i, cut);
        }
        Ok(())
    }

    /// Changes the RTT between two regions (ms), both ways.
    pub fn set_rtt(&self, a: &str, b: &str, ms: f64) -> Result<(), LabError> {
        let (i, j) = (self.index(a)?, self.index(b)?);
        if let Some(f) = &self.forwarder {
            f.set_rtt(i, j, ms);
        }
        Ok(())
    }

    /// What the forwarder did so far.
    pub fn stats(&self) -> Option<Stats> {
        self.forwarder.as_ref().map(Forwarder::stats)
    }

    /// `nsenter` prefixes for using the namespaces by hand.
    pub fn describe(&self) -> Vec<(String, String)> {
        (self.regions.iter().chain(&self.nats))
            .map(|ns| (ns.name.clone(), format!("nsenter --net={} --", ns.path())))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The TUN descriptors first (the devices go), then the namespaces' holders.
        self.forwarder = None;
        for ns in self.regions.iter_mut().chain(self.nats.iter_mut()) {
            let _ = ns.holder.kill();
            let _ = ns.holder.wait();
        }
    }
}
