//! Traffic source of the XDP benchmark: packets that circulate through a relay at
//! its own pace, with a generator that costs next to nothing.
//!
//! Sets up K clients (TURN Allocate + CreatePermission + ChannelBind to a peer
//! address of their own, the raw forwarder's binding, or nothing for a routed
//! path), attaches the reflector (`bpf/reflect.c`) to the client's and the peer's
//! interfaces, and injects a window of packets per client once. From then on the
//! reflectors send every relayed packet straight back in the driver (XDP_TX), so
//! the only work per packet outside the relay is one tiny XDP program run, not a
//! socket's receive and send: the machine's whole CPU time over the run is, but
//! for that, the relay's (kernel stack and softirq included, wherever the kernel
//! ran them). Prints one JSON object: relayed packets and their rate over the
//! measured window, CPU time per mode summed over all CPUs (/proc/stat), the
//! server process's CPU, and, in a second window with the kernel's BPF run-time
//! statistics on, each XDP program's run time per run.
//!
//! Bounded: the reflectors stop after `--budget` packets per CPU or when told to
//! (then drop what circulates), and the run ends after warm-up + both windows.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{loaded_programs, Xdp, XdpMode};
use aya::Ebpf;
use clap::Parser;
use turnbench::client::{udp_socket, Creds};
use turnbench::probe::{channel_header, CHANNEL};
use turnbench::setup::{set_up, PeerSockets, Target};
use turnbench::sys::{cpu_times, in_netns, proc_cpu_secs, raise_nofile};

#[derive(Parser)]
#[command(about = "Packets circulating through a relay between two XDP reflectors")]
struct Args {
    /// The relay's (or forwarder's) client-facing address.
    #[arg(long)]
    server: SocketAddrV4,
    #[arg(long, value_enum, default_value = "turn")]
    target: Target,
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    #[arg(long, default_value = "bench")]
    user: String,
    /// Clients (each its own socket, allocation and peer address).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// First client IP; clients use it and the next ones, `--per-ip` clients each.
    #[arg(long)]
    client_ip: Ipv4Addr,
    #[arg(long, default_value_t = 8)]
    per_ip: usize,
    /// IP of the peer sockets.
    #[arg(long)]
    peer_ip: Ipv4Addr,
    /// Network namespace of the peer sockets and interface (default: this one).
    #[arg(long)]
    peer_netns: Option<String>,
    /// The reflector object (clang -target bpf of benches/turnbench/bpf/reflect.c).
    #[arg(long)]
    reflector: String,
    /// Interface the clients reach the relay by (in this namespace).
    #[arg(long)]
    client_if: String,
    /// Interface the peers reach the relay by (in `--peer-netns`).
    #[arg(long)]
    peer_if: String,
    /// Packets injected per client (in flight for the whole run).
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Payload bytes of each packet (after the ChannelData header).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Seconds after the injection before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured (BPF statistics off).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds measured again with the kernel's BPF run-time statistics on.
    #[arg(long, default_value_t = 2.0)]
    stats_duration: f64,
    /// Most packets each reflector reflects per CPU.
    #[arg(long, default_value_t = 500_000_000)]
    budget: u64,
    /// PID of the server process (its CPU time over the window).
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.payload == 0 || a.payload > 1400 {
        bail!("--payload must be within 1..=1400");
    }
    let k = a.clients.max(1);
    raise_nofile((2 * k + 1024) as u64);
    let peer_ns = a.peer_netns.as_deref();

    let clients: Vec<UdpSocket> = (0..k)
        .map(|i| {
            let ip = u32::from(a.client_ip) + (i / a.per_ip.max(1)) as u32;
            udp_socket(Ipv4Addr::from(ip), 1 << 20, true)
        })
        .collect::<Result<_>>()?;
    // Peer sockets only hold their ports: the reflector answers before the stack.
    let creds = Creds::rest(&a.secret, &a.user, 3600);
    let mut ready = set_up(
        a.target,
        a.server,
        &creds,
        64,
        clients,
        PeerSockets {
            ip: a.peer_ip,
            netns: peer_ns,
            buf: 0,
        },
    )?;

    // The reflectors: one program, attached on both sides.
    let object = std::fs::read(&a.reflector).with_context(|| a.reflector.clone())?;
    let mut ebpf = Ebpf::load(&object).context("loading the reflector")?;
    let program: &mut Xdp = ebpf
        .program_mut("reflect")
        .context("no program reflect")?
        .try_into()?;
    program.load()?;
    program
        .attach(&a.client_if, XdpMode::Driver)
        .with_context(|| format!("attach to {}", a.client_if))?;
    in_netns(peer_ns, || program.attach(&a.peer_if, XdpMode::Driver))?
        .with_context(|| format!("attach to {}", a.peer_if))?;
    let mut limits: Array<MapData, u64> =
        Array::try_from(ebpf.take_map("limits").context("no map limits")?)?;
    let counts: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("counts").context("no map counts")?)?;
    limits.set(0, a.budget, 0)?;
    limits.set(1, 0, 0)?;
    let reflected = |index: u32| -> Result<u64> { Ok(counts.get(&index, 0)?.iter().sum()) };

    // Inject.
    let mut packet = Vec::with_capacity(a.payload + 4);
    if a.target != Target::Direct {
        packet.extend_from_slice(&channel_header(CHANNEL, a.payload));
    }
    packet.extend(std::iter::repeat_n(0xABu8, a.payload));
    for (c, p) in ready.clients.iter().zip(&ready.peer_addrs) {
        let to = if a.target == Target::Direct {
            *p
        } else {
            a.server
        };
        for _ in 0..a.window {
            c.send_to(&packet, to)?;
        }
    }
    std::thread::sleep(Duration::from_secs_f64(a.warmup));

    // Window 1: rate and CPU, no BPF statistics.
    let (n0, cpu0, srv0, t0) = (
        reflected(0)?,
        cpu_times()?,
        a.server_pid.and_then(|p| proc_cpu_secs(p).ok()),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    let (n1, cpu1, srv1, secs) = (
        reflected(0)?,
        cpu_times()?,
        a.server_pid.and_then(|p| proc_cpu_secs(p).ok()),
        t0.elapsed().as_secs_f64(),
    );

    // Window 2: each program's run time per run.
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF statistics")?;
    let runs0 = program_runs()?;
    let m0 = reflected(0)?;
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.stats_duration));
    let runs1 = program_runs()?;
    let m1 = reflected(0)?;
    let stats_secs = t1.elapsed().as_secs_f64();
    drop(stats);

    // Stop: the reflectors drop what still circulates.
    limits.set(1, 1, 0)?;
    std::thread::sleep(Duration::from_millis(200));
    let dropped = reflected(1)?;
    drop(ebpf);

    ready.release(a.server, &creds, 64);

    let relayed = n1 - n0;
    let mut modes = [0f64; 4];
    let mut per_cpu = Vec::new();
    for (x, y) in cpu0.iter().zip(&cpu1) {
        let d: Vec<f64> = (0..4).map(|i| y[i] - x[i]).collect();
        for i in 0..4 {
            modes[i] += d[i];
        }
        per_cpu.push(format!("{:.3}", d[0] + d[1] + d[2]));
    }
    let busy = modes[0] + modes[1] + modes[2];
    let server_cpu = match (srv0, srv1) {
        (Some(x), Some(y)) => format!("{:.3}", y - x),
        _ => "null".into(),
    };
    let mut programs = Vec::new();
    for (name, (t1, c1)) in &runs1 {
        let (t0, c0) = runs0.get(name).copied().unwrap_or((0, 0));
        programs.push(format!(
            "\"{name}\":{{\"runs\":{},\"run_ns\":{}}}",
            c1 - c0,
            t1 - t0
        ));
    }
    println!(
        "{{\"target\":\"{}\",\"clients\":{k},\"window\":{},\"payload\":{},\"setup_requests\":{},\
\"secs\":{secs:.3},\"relayed\":{relayed},\"relayed_pps\":{:.0},\
\"cpu\":{{\"user\":{:.3},\"system\":{:.3},\"softirq\":{:.3},\"idle\":{:.3},\"busy\":{busy:.3},\"per_cpu_busy\":[{}]}},\
\"relayed_per_busy_cpu_sec\":{:.0},\"server_cpu_secs\":{server_cpu},\
\"stats_secs\":{stats_secs:.3},\"stats_relayed\":{},\"programs\":{{{}}},\"dropped_at_stop\":{dropped}}}",
        a.target.name(),
        a.window,
        a.payload,
        ready.stats.requests,
        relayed as f64 / secs,
        modes[0],
        modes[1],
        modes[2],
        modes[3],
        per_cpu.join(","),
        if busy > 0.0 { relayed as f64 / busy } else { 0.0 },
        m1 - m0,
        programs.join(","),
    );
    Ok(())
}

/// Run time (ns) and run count of every loaded XDP program of the benchmark's
/// (the relay's `relay_channels`, the reflector, `pass`), summed by name.
fn program_runs() -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let mut out = std::collections::BTreeMap::new();
    for info in loaded_programs() {
        let info = info?;
        let Some(name) = info.name_as_str() else {
            continue;
        };
        if !matches!(name, "relay_channels" | "reflect" | "pass") {
            continue;
        }
        let e = out.entry(name.to_owned()).or_insert((0u64, 0u64));
        e.0 += info.run_time().as_nanos() as u64;
        e.1 += info.run_count();
    }
    Ok(out)
}
