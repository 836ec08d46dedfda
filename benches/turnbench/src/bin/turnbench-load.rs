//! Load generator of the relay benchmark (issue 5). Three modes, each printing
//! one JSON object on stdout:
//!
//! * `relay`: K clients, each on its own UDP socket (its own 5-tuple), allocate
//!   with the 401 round trip, CreatePermission + ChannelBind to a peer socket of
//!   their own, then send ChannelData at an offered rate (or closed-loop with a
//!   window per client); the peers echo every datagram back through the relay.
//!   Measures sent / received per leg, loss, Mbit/s, round-trip latency, and the
//!   server process's CPU time over the run. `--target fake` drives the raw
//!   forwarder (a binding message instead of TURN), `--target direct` sends to
//!   the peers with no relay at all (the latency baseline).
//! * `alloc`: Allocate throughput (401 round trip + authenticated Allocate per
//!   client), in rounds; each round's allocations are deleted (Refresh 0)
//!   outside the measured time.
//! * `hold`: hold N allocations and report the server's RSS and open files per
//!   allocation.
//!
//! Every datagram is sent on its own (sendmmsg of individual datagrams on one
//! client socket, never GSO): real clients do not batch segments.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use turnbench::client::{client_ip, udp_socket, Client, Creds, Engine, EngineStats};
use turnbench::hist::Histogram;
use turnbench::probe::{channel_header, read_probe, write_probe, CHANNEL, PROBE_LEN};
use turnbench::setup::{set_up, PeerSockets, Target};
use turnbench::sys::{
    now_ns, pin_current_thread, proc_cpu_secs, proc_fd_count, proc_rss_bytes, raise_nofile,
    to_sockaddr, Batch, Epoll,
};

#[derive(Parser)]
#[command(
    about = "TURN relay load generator (ChannelData round trips, Allocate rate, held allocations)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// ChannelData round trips client → relay → peer → relay → client.
    Relay(RelayArgs),
    /// Allocations per second (401 round trip + authenticated Allocate).
    Alloc(AllocArgs),
    /// Hold many allocations; report the server's memory per allocation.
    Hold(HoldArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The TURN server (or raw forwarder) address.
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    /// TURN REST shared secret.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// User part of the `<expiry>:<user>` username.
    #[arg(long, default_value = "bench")]
    user: String,
    /// PID of the server process: its CPU time and RSS are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clients per client IP (127.1.0.1, 127.1.0.2, …); our relay rate-limits
    /// unauthenticated answers per source IP.
    #[arg(long, default_value_t = 8)]
    per_ip: usize,
    /// First client-IP number to use (so consecutive runs use fresh IPs).
    #[arg(long, default_value_t = 0)]
    ip_offset: usize,
    /// Client IPs from this one up (`--per-ip` clients each) instead of 127.1.x.y.
    #[arg(long)]
    client_ip: Option<Ipv4Addr>,
    /// Allocations set up concurrently.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Args)]
struct RelayArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum, default_value = "turn")]
    target: Target,
    /// Number of clients (each its own socket, allocation and peer socket).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// IP of the peer sockets.
    #[arg(long, default_value = "127.0.0.2")]
    peer_ip: Ipv4Addr,
    /// Network namespace of the peer sockets (default: this one).
    #[arg(long)]
    peer_netns: Option<String>,
    /// Application payload bytes per datagram (≥ 24).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Offered round trips per second over all clients (0 = as fast as the
    /// window allows, or as fast as possible without a window).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Closed loop: at most this many packets in flight per client (0 = open loop).
    #[arg(long, default_value_t = 0)]
    window: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Most packets sent (bounds the run whatever the rate).
    #[arg(long, default_value_t = 50_000_000)]
    count: u64,
    /// Packets per sendmmsg on one client socket.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Seconds at the start whose packets are left out of the latency figures.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Seconds to wait for stragglers after the last send.
    #[arg(long, default_value_t = 0.3)]
    drain: f64,
    /// Socket buffer size asked for each socket.
    #[arg(long, default_value_t = 1 << 20)]
    sockbuf: usize,
    /// CPUs the generator's threads may run on (e.g. 0 or 0,1); empty = any.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
}

#[derive(Args)]
struct AllocArgs {
    #[command(flatten)]
    common: Common,
    /// Allocations to make in total.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Allocations per round (live at once; below the server's port range).
    #[arg(long, default_value_t = 10_000)]
    round: usize,
    /// Stop starting rounds after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Allocations to hold (their client sockets are closed once allocated).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seconds to wait after the last allocation before reading RSS again
    /// (cached answers and timers of the setup expire meanwhile).
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    max_seconds: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Relay(a) => relay(a),
        Mode::Alloc(a) => alloc(a),
        Mode::Hold(a) => hold(a),
    }
}

fn cpu_of(pid: Option<u32>) -> Option<f64> {
    pid.and_then(|p| proc_cpu_secs(p).ok())
}

fn opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "null".into(),
    }
}

fn engine_json(s: &EngineStats) -> String {
    format!(
        "{{\"requests\":{},\"retransmits\":{},\"challenges\":{},\"errors\":{},\"failed\":{},\"done\":{}}}",
        s.requests, s.retransmits, s.challenges, s.errors, s.failed, s.done
    )
}

/// Non-blocking client sockets for clients `first..first+n` on their IPs.
fn client_sockets(
    common: &Common,
    first: usize,
    n: usize,
    sockbuf: usize,
) -> Result<Vec<UdpSocket>> {
    (first..first + n)
        .map(|k| {
            let i = common.ip_offset + k / common.per_ip.max(1);
            let ip = match common.client_ip {
                Some(base) => Ipv4Addr::from(u32::from(base) + i as u32),
                None => client_ip(i),
            };
            udp_socket(ip, sockbuf, true)
        })
        .collect()
}

/// Clients `first..first+n` on their IPs, to allocate with nothing else to set up.
fn bare_clients(common: &Common, first: usize, n: usize) -> Result<Vec<Client>> {
    Ok(client_sockets(common, first, n, 0)?
        .into_iter()
        .map(|s| Engine::new_client(s, None, 0))
        .collect())
}

/// A TURN exchange engine for the common server and concurrency.
fn engine(common: &Common, creds: Creds, deadline: Instant) -> Engine {
    Engine::new(common.server, creds, common.concurrency, deadline)
}

// ---------------------------------------------------------------- relay mode

struct Shared {
    stop: AtomicBool,
    /// Round trips received per client (the window's feedback).
    received: Vec<AtomicU64>,
}

#[derive(Default)]
struct RxResult {
    packets: u64,
    bytes: u64,
    bad: u64,
    hist: Histogram,
}

fn relay(a: RelayArgs) -> Result<()> {
    if a.payload < PROBE_LEN || a.payload > 1400 {
        bail!("--payload must be within {PROBE_LEN}..=1400");
    }
    let k = a.clients.max(1);
    raise_nofile((4 * k + 1024) as u64);
    let server = match a.common.server {
        SocketAddr::V4(s) => s,
        SocketAddr::V6(_) => bail!("IPv4 only"),
    };
    let clients = client_sockets(&a.common, 0, k, a.sockbuf)?;
    let creds = Creds::rest(&a.common.secret, &a.common.user, 3600);
    let mut ready = set_up(
        a.target,
        server,
        &creds,
        a.common.concurrency,
        clients,
        PeerSockets {
            ip: a.peer_ip,
            netns: a.peer_netns.as_deref(),
            buf: a.sockbuf,
        },
    )?;
    let (setup_stats, setup_secs) = (ready.stats.clone(), ready.secs);
    let clients = std::mem::take(&mut ready.clients);
    let peers = std::mem::take(&mut ready.peers);
    let peer_addrs = ready.peer_addrs.clone();

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        received: (0..k).map(|_| AtomicU64::new(0)).collect(),
    });
    let header = a.target != Target::Direct;
    let start_ns = now_ns();
    let warm_ns = start_ns + (a.warmup * 1e9) as u64;

    // Peer echo thread: every datagram goes back to where it came from.
    let peer_thread = {
        let shared = shared.clone();
        let cpus = a.cpus.clone();
        std::thread::spawn(move || -> Result<(u64, u64)> {
            let _ = pin_current_thread(&cpus);
            let (mut n, mut bytes) = (0u64, 0u64);
            each_batch(&peers, &shared.stop, |fd, got, b| {
                n += got as u64;
                bytes += b.lens[..got].iter().map(|&l| l as u64).sum::<u64>();
                b.send(fd, got, 0)?;
                Ok(())
            })?;
            Ok((n, bytes))
        })
    };

    // Client receive thread.
    let rx_socks: Vec<UdpSocket> = clients
        .iter()
        .map(|c| c.try_clone())
        .collect::<std::io::Result<_>>()?;
    let rx_thread = {
        let shared = shared.clone();
        let cpus = a.cpus.clone();
        let payload = a.payload;
        std::thread::spawn(move || -> Result<RxResult> {
            let _ = pin_current_thread(&cpus);
            let mut r = RxResult::default();
            let off = if header { 4 } else { 0 };
            each_batch(&rx_socks, &shared.stop, |_, got, b| {
                let now = now_ns();
                for i in 0..got {
                    let pkt = &b.bufs[i][..b.lens[i]];
                    let ok_header =
                        !header || (pkt.len() >= 4 && pkt[..4] == channel_header(CHANNEL, payload));
                    match (ok_header, pkt.get(off..).and_then(read_probe)) {
                        (true, Some((_seq, sent, client))) if pkt.len() == off + payload => {
                            r.packets += 1;
                            r.bytes += payload as u64;
                            if sent >= warm_ns {
                                r.hist.record(now.saturating_sub(sent));
                            }
                            if let Some(c) = shared.received.get(client as usize) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => r.bad += 1,
                    }
                }
                Ok(())
            })?;
            Ok(r)
        })
    };

    let _ = pin_current_thread(&a.cpus);
    let cpu0 = cpu_of(a.common.server_pid);
    let self0 = proc_cpu_secs(std::process::id()).ok();
    let t0 = Instant::now();
    let sent = send_loop(&a, &clients, server, &peer_addrs, &shared)?;
    let send_secs = t0.elapsed().as_secs_f64();
    // Drain: wait for the echoes of the last packets (bounded).
    let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
    let total_sent: u64 = sent.iter().sum();
    while Instant::now() < drain_until {
        let got: u64 = shared
            .received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        if got >= total_sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_of(a.common.server_pid);
    let self1 = proc_cpu_secs(std::process::id()).ok();
    shared.stop.store(true, Ordering::Relaxed);
    let (peer_rx, _peer_bytes) = peer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("peer thread panicked"))??;
    let rx = rx_thread
        .join()
        .map_err(|_| anyhow::anyhow!("receive thread panicked"))??;
    // Outside the measured time.
    ready.release(server, &creds, a.common.concurrency);

    let server_cpu = match (cpu0, cpu1) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let gen_cpu = match (self0, self1) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    // Packets the server forwarded: client → peer legs plus peer → client legs.
    let relayed = peer_rx + rx.packets;
    let relayed_pps = relayed as f64 / send_secs;
    let mbps = relayed as f64 * a.payload as f64 * 8.0 / send_secs / 1e6;
    let loss = if total_sent > 0 {
        1.0 - rx.packets as f64 / total_sent as f64
    } else {
        0.0
    };
    let per_cpu = server_cpu.filter(|c| *c > 0.0).map(|c| relayed as f64 / c);
    let h = &rx.hist;
    println!(
        "{{\"mode\":\"relay\",\"target\":\"{}\",\"clients\":{},\"payload\":{},\"rate\":{},\"window\":{},\
\"setup_secs\":{:.3},\"setup\":{},\"send_secs\":{:.3},\"wall_secs\":{:.3},\"sent\":{},\"peer_received\":{},\
\"received\":{},\"bad\":{},\"relayed\":{},\"relayed_pps\":{:.0},\"round_trips_per_sec\":{:.0},\"mbps\":{:.1},\
\"loss\":{:.6},\"server_cpu_secs\":{},\"relayed_per_cpu_sec\":{},\"generator_cpu_secs\":{},\
\"latency_samples\":{},\"rtt_p50_us\":{},\"rtt_p90_us\":{},\"rtt_p99_us\":{},\"rtt_mean_us\":{},\"rtt_max_us\":{:.1}}}",
        a.target.name(),
        k,
        a.payload,
        a.rate,
        a.window,
        setup_secs,
        engine_json(&setup_stats),
        send_secs,
        wall,
        total_sent,
        peer_rx,
        rx.packets,
        rx.bad,
        relayed,
        relayed_pps,
        rx.packets as f64 / send_secs,
        mbps,
        loss,
        opt(server_cpu),
        opt(per_cpu),
        opt(gen_cpu),
        h.count(),
        opt(h.quantile_us(0.5)),
        opt(h.quantile_us(0.9)),
        opt(h.quantile_us(0.99)),
        opt(h.mean_us()),
        h.max_us(),
    );
    Ok(())
}

/// Until `stop`: waits for any of `socks` to be readable and hands each
/// received batch (its socket, the count, the slots) to `on_batch`; a socket
/// is read at most 8 batches per wakeup.
fn each_batch(
    socks: &[UdpSocket],
    stop: &AtomicBool,
    mut on_batch: impl FnMut(i32, usize, &mut Batch) -> Result<()>,
) -> Result<()> {
    let mut ep = Epoll::new(256)?;
    for (i, s) in socks.iter().enumerate() {
        ep.add(s.as_raw_fd(), i as u64)?;
    }
    let mut b = Batch::new(32, 2048);
    let mut ready = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        ep.wait(20, &mut ready)?;
        for &t in &ready {
            let Some(s) = socks.get(t as usize) else {
                continue;
            };
            let fd = s.as_raw_fd();
            for _ in 0..8 {
                let got = b.recv(fd, 0)?;
                if got == 0 {
                    break;
                }
                on_batch(fd, got, &mut b)?;
                if got < b.capacity() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Sends until duration or count, paced to `rate` (round trips per second over
/// all clients) or by the window; returns packets sent per client.
fn send_loop(
    a: &RelayArgs,
    clients: &[UdpSocket],
    server: SocketAddrV4,
    peers: &[SocketAddrV4],
    shared: &Shared,
) -> Result<Vec<u64>> {
    let k = clients.len();
    let batch = a.batch.clamp(1, 64);
    let mut b = Batch::new(batch, a.payload + 4);
    let off = if a.target == Target::Direct { 0 } else { 4 };
    for buf in b.bufs.iter_mut() {
        buf[..4].copy_from_slice(&channel_header(CHANNEL, a.payload));
    }
    let mut sent = vec![0u64; k];
    // Window bookkeeping: packets given up as lost per client, and when the
    // client last made progress.
    let mut forgiven = vec![0u64; k];
    let mut last_seen = vec![0u64; k];
    let mut stalled_since = vec![Instant::now(); k];
    let start = Instant::now();
    let dur = Duration::from_secs_f64(a.duration);
    let mut total = 0u64;
    let mut seq = 0u64;
    let mut c = 0usize;
    let mut blocked_round = 0usize;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= dur || total >= a.count {
            break;
        }
        let mut n = batch.min((a.count - total) as usize);
        if a.rate > 0 {
            let due = (a.rate as f64 * elapsed.as_secs_f64()) as u64;
            if total + n as u64 > due + batch as u64 {
                let ahead = (total + n as u64 - due) as f64 / a.rate as f64;
                std::thread::sleep(Duration::from_secs_f64(ahead.min(0.002)));
                continue;
            }
        }
        if a.window > 0 {
            let got = shared.received[c].load(Ordering::Relaxed);
            let inflight = sent[c].saturating_sub(got + forgiven[c]);
            if got != last_seen[c] {
                last_seen[c] = got;
                stalled_since[c] = Instant::now();
            }
            if inflight + n as u64 > a.window {
                if stalled_since[c].elapsed() > Duration::from_millis(50) {
                    // Nothing back for 50 ms: what is in flight is lost.
                    forgiven[c] += inflight;
                    stalled_since[c] = Instant::now();
                } else {
                    let room = a.window.saturating_sub(inflight) as usize;
                    if room == 0 {
                        c = (c + 1) % k;
                        blocked_round += 1;
                        if blocked_round >= k {
                            blocked_round = 0;
                            std::thread::yield_now();
                        }
                        continue;
                    }
                    n = n.min(room);
                }
            }
            blocked_round = 0;
        }
        let dest = if a.target == Target::Direct {
            peers[c]
        } else {
            server
        };
        let now = now_ns();
        for i in 0..n {
            seq += 1;
            write_probe(&mut b.bufs[i][off..], seq, now, c as u32);
            b.lens[i] = off + a.payload;
            b.addrs[i] = to_sockaddr(dest);
        }
        b.send(clients[c].as_raw_fd(), n, 0)?;
        sent[c] += n as u64;
        total += n as u64;
        c = (c + 1) % k;
    }
    Ok(sent)
}

// ---------------------------------------------------------------- alloc mode

fn alloc(a: AllocArgs) -> Result<()> {
    let round = a.round.max(1);
    raise_nofile((round + 4096) as u64);
    let creds = Creds::rest(&a.common.secret, &a.common.user, 3600);
    let started = Instant::now();
    let mut made = 0usize;
    let mut alloc_secs = 0.0;
    let mut alloc_cpu = 0.0;
    let mut cpu_known = a.common.server_pid.is_some();
    let mut total = EngineStats::default();
    let mut rounds = 0;
    let mut next_client = 0usize;
    while made < a.count && started.elapsed().as_secs_f64() < a.max_seconds {
        let n = round.min(a.count - made);
        let mut cs = bare_clients(&a.common, next_client, n)?;
        next_client += n;
        let mut e = engine(
            &a.common,
            creds.clone(),
            Instant::now() + Duration::from_secs(60),
        );
        let c0 = cpu_of(a.common.server_pid);
        let t0 = Instant::now();
        let st = e.run(&mut cs, false)?;
        alloc_secs += t0.elapsed().as_secs_f64();
        match (c0, cpu_of(a.common.server_pid)) {
            (Some(x), Some(y)) => alloc_cpu += y - x,
            _ => cpu_known = false,
        }
        made += st.done as usize;
        total += &st;
        rounds += 1;
        // Release outside the measured time.
        let mut r = engine(
            &a.common,
            creds.clone(),
            Instant::now() + Duration::from_secs(60),
        );
        let _ = r.run(&mut cs, true)?;
        drop(cs);
        if st.done == 0 {
            break;
        }
    }
    let per_sec = made as f64 / alloc_secs.max(1e-9);
    let cpu = cpu_known.then_some(alloc_cpu);
    let us_per = cpu.filter(|_| made > 0).map(|c| c * 1e6 / made as f64);
    let per_cpu_sec = cpu.filter(|c| *c > 0.0).map(|c| made as f64 / c);
    println!(
        "{{\"mode\":\"alloc\",\"allocations\":{},\"rounds\":{},\"alloc_secs\":{:.3},\"allocs_per_sec\":{:.0},\
\"server_cpu_secs\":{},\"cpu_us_per_alloc\":{},\"allocs_per_cpu_sec\":{},\"alloc_p50_ms\":{},\
\"alloc_p99_ms\":{},\"engine\":{}}}",
        made,
        rounds,
        alloc_secs,
        per_sec,
        opt(cpu),
        opt(us_per),
        opt(per_cpu_sec),
        opt(total.latency_ms(0.5)),
        opt(total.latency_ms(0.99)),
        engine_json(&total)
    );
    Ok(())
}

// ----------------------------------------------------------------- hold mode

fn hold(a: HoldArgs) -> Result<()> {
    let pid = a.common.server_pid.context("hold needs --server-pid")?;
    // A UDP allocation outlives its client socket (the server cannot tell it
    // closed), so clients are made in chunks whose sockets are closed once
    // allocated: the open-file limit bounds a chunk, not the count. A chunk
    // is a whole number of client IPs and no IP is used twice, so no 5-tuple
    // comes back.
    let per_ip = a.common.per_ip.max(1);
    let chunk = (4096 / per_ip).max(1) * per_ip;
    raise_nofile((chunk + 1024) as u64);
    let creds = Creds::rest(&a.common.secret, &a.common.user, 3600);
    let rss0 = proc_rss_bytes(pid)?;
    let fd0 = proc_fd_count(pid).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs_f64(a.max_seconds);
    let t0 = Instant::now();
    let mut st = EngineStats::default();
    let mut held = 0usize;
    let mut first = 0usize;
    while first < a.count && Instant::now() < deadline {
        let n = chunk.min(a.count - first);
        let mut cs = bare_clients(&a.common, first, n)?;
        first += n;
        let mut e = engine(&a.common, creds.clone(), deadline);
        let s = e.run(&mut cs, false)?;
        held += cs.iter().filter(|c| c.ok()).count();
        st += &s;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss1 = proc_rss_bytes(pid)?;
    let fd1 = proc_fd_count(pid).unwrap_or(0);
    if a.settle > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.settle));
    }
    let rss2 = proc_rss_bytes(pid)?;
    let per = |r: u64| {
        if held == 0 {
            None
        } else {
            Some((r as f64 - rss0 as f64) / held as f64)
        }
    };
    println!(
        "{{\"mode\":\"hold\",\"asked\":{},\"held\":{},\"secs\":{:.3},\"rss_before\":{},\"rss_after\":{},\
\"rss_settled\":{},\"settle_secs\":{:.1},\"bytes_per_alloc\":{},\"bytes_per_alloc_settled\":{},\
\"fds_before\":{},\"fds_after\":{},\"engine\":{}}}",
        a.count,
        held,
        secs,
        rss0,
        rss1,
        rss2,
        a.settle,
        opt(per(rss1)),
        opt(per(rss2)),
        fd0,
        fd1,
        engine_json(&st)
    );
    Ok(())
}
