//! The machine's limit for the relay benchmark: a UDP forwarder with no TURN
//! logic. Clients send ChannelData (4-byte header + payload) to the listening
//! port; the forwarder strips the header and sends the payload to the peer
//! bound to (client, channel); a peer's datagram gets the header added back
//! and goes to its client. Bindings come from a "fake TURN" message
//! (`turnbench::probe::bind_message`) instead of Allocate + ChannelBind.
//!
//! recvmmsg in, sendmmsg out, batches of `--batch`; `--threads N` runs N
//! workers, each with its own SO_REUSEPORT listening socket, its own relay
//! socket (all peers multiplexed on it) and its own tables. No allocation per
//! packet: datagrams are received at offset 4 into preallocated buffers so the
//! header is written in place.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use rustc_hash::FxHashMap;
use socket2::{Domain, Protocol, Socket, Type};
use turnbench::probe::{channel_header, parse_bind, BIND_ACK};
use turnbench::sys::{from_sockaddr, pin_current_thread, to_sockaddr, Batch, Epoll};

#[derive(Parser, Debug)]
#[command(about = "Raw recvmmsg/sendmmsg UDP forwarder: the relay benchmark's machine limit")]
struct Args {
    /// Client-side listening address.
    #[arg(long, default_value = "127.0.0.1:3480")]
    listen: SocketAddrV4,
    /// IP of the relay (peer-side) sockets.
    #[arg(long, default_value = "127.0.0.1")]
    relay_ip: Ipv4Addr,
    /// Worker threads, each with its own SO_REUSEPORT socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Datagrams per recvmmsg / sendmmsg.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Socket buffer size (bytes) asked for each socket.
    #[arg(long, default_value_t = 4 << 20)]
    sockbuf: usize,
    /// Send runs of datagrams to one destination as one UDP GSO message (as
    /// our relay does by default).
    #[arg(long)]
    gso: bool,
    /// Pin worker i to CPU (i mod nproc).
    #[arg(long)]
    pin: bool,
    /// Exit after this many seconds (bounds a forgotten process).
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

const HEADROOM: usize = 4;
const BUF: usize = 2048;
const LISTEN: u64 = 0;
const RELAY: u64 = 1;

fn key(a: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

#[derive(Default)]
struct Tables {
    /// (client, channel) → peer.
    to_peer: FxHashMap<(u64, u16), libc::sockaddr_in>,
    /// peer → (client, channel).
    to_client: FxHashMap<u64, (libc::sockaddr_in, u16)>,
}

#[derive(Default, Debug)]
struct Counts {
    to_peer: u64,
    to_client: u64,
    dropped: u64,
}

fn socket(addr: SocketAddrV4, reuse: bool, buf: usize) -> Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if reuse {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option on our own socket.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("SO_REUSEPORT");
        }
    }
    let _ = s.set_recv_buffer_size(buf);
    let _ = s.set_send_buffer_size(buf);
    s.bind(&SocketAddr::V4(addr).into())
        .with_context(|| format!("bind {addr}"))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn worker(
    listen: Socket,
    relay: Socket,
    batch: usize,
    gso: bool,
    stop: Arc<AtomicBool>,
) -> Result<Counts> {
    let lfd = listen.as_raw_fd();
    let rfd = relay.as_raw_fd();
    let mut ep = Epoll::new(4)?;
    ep.add(lfd, LISTEN)?;
    ep.add(rfd, RELAY)?;
    let mut rx = Batch::new(batch, BUF);
    let mut tx = Batch::new(batch, BUF);
    rx.gso = gso;
    tx.gso = gso;
    let mut t = Tables::default();
    let mut counts = Counts::default();
    let mut ready = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        ep.wait(100, &mut ready)?;
        for &tok in &ready {
            // Drain the socket a bounded number of batches, then look at the other.
            for _ in 0..16 {
                let n = if tok == LISTEN {
                    client_side(lfd, rfd, &mut rx, &mut tx, &mut t, &mut counts)?
                } else {
                    peer_side(rfd, lfd, &mut rx, &mut t, &mut counts)?
                };
                if n < batch {
                    break;
                }
            }
        }
    }
    Ok(counts)
}

/// Client → peer: strip the header, look up the peer, forward.
fn client_side(
    lfd: i32,
    rfd: i32,
    rx: &mut Batch,
    tx: &mut Batch,
    t: &mut Tables,
    counts: &mut Counts,
) -> Result<usize> {
    let n = rx.recv(lfd, 0)?;
    let mut out = 0;
    for i in 0..n {
        let len = rx.lens[i];
        let from = from_sockaddr(&rx.addrs[i]);
        let pkt = &rx.bufs[i][..len];
        if let Some((channel, peer)) = parse_bind(pkt) {
            let client = rx.addrs[i];
            t.to_peer.insert((key(from), channel), to_sockaddr(peer));
            t.to_client.insert(key(peer), (client, channel));
            // SAFETY: sendto with a valid buffer and address.
            unsafe {
                libc::sendto(
                    lfd,
                    BIND_ACK.as_ptr().cast(),
                    BIND_ACK.len(),
                    0,
                    (&rx.addrs[i] as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            continue;
        }
        if len < HEADROOM {
            counts.dropped += 1;
            continue;
        }
        let channel = u16::from_be_bytes([pkt[0], pkt[1]]);
        let dlen = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
        let Some(peer) = t.to_peer.get(&(key(from), channel)) else {
            counts.dropped += 1;
            continue;
        };
        if dlen > len - HEADROOM {
            counts.dropped += 1;
            continue;
        }
        // Swap buffers instead of copying: the tx slot takes the packet and
        // sends it from offset 4 (past the header).
        std::mem::swap(&mut rx.bufs[i], &mut tx.bufs[out]);
        tx.lens[out] = dlen;
        tx.addrs[out] = *peer;
        out += 1;
    }
    if out > 0 {
        tx.send(rfd, out, HEADROOM)?;
        counts.to_peer += out as u64;
    }
    Ok(n)
}

/// Peer → client: receive at offset 4, write the header in place, forward.
fn peer_side(
    rfd: i32,
    lfd: i32,
    rx: &mut Batch,
    t: &mut Tables,
    counts: &mut Counts,
) -> Result<usize> {
    let n = rx.recv(rfd, HEADROOM)?;
    let mut out = 0;
    for i in 0..n {
        let len = rx.lens[i];
        let from = from_sockaddr(&rx.addrs[i]);
        let Some(&(client, channel)) = t.to_client.get(&key(from)) else {
            counts.dropped += 1;
            continue;
        };
        if out != i {
            rx.bufs.swap(out, i);
        }
        rx.bufs[out][..HEADROOM].copy_from_slice(&channel_header(channel, len));
        rx.lens[out] = len + HEADROOM;
        rx.addrs[out] = client;
        out += 1;
    }
    if out > 0 {
        rx.send(lfd, out, 0)?;
        counts.to_client += out as u64;
    }
    Ok(n)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = args.threads.max(1);
    let batch = args.batch.clamp(1, 1024);
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // Stop on SIGTERM/SIGINT (blocked in every thread, taken by sigtimedwait
    // below) or after max_seconds.
    // SAFETY: plain signal mask manipulation on a local, zeroed set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // All listening sockets exist before any traffic: SO_REUSEPORT hashes a
    // client's 5-tuple over the sockets present.
    let mut socks = Vec::new();
    for _ in 0..threads {
        let l = socket(args.listen, true, args.sockbuf)?;
        let r = socket(SocketAddrV4::new(args.relay_ip, 0), false, args.sockbuf)?;
        socks.push((l, r));
    }
    let mut handles = Vec::new();
    for (i, (l, r)) in socks.into_iter().enumerate() {
        let stop = stop.clone();
        let pin = args.pin;
        handles.push(std::thread::spawn(move || {
            if pin {
                let _ = pin_current_thread(&[i % ncpu]);
            }
            worker(l, r, batch, args.gso, stop)
        }));
    }
    eprintln!("turnbench-rawfwd: {} worker(s) on {}", threads, args.listen);
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ts = libc::timespec {
            tv_sec: left.as_secs().min(1) as libc::time_t,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timeout.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if sig > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Counts::default();
    for h in handles {
        if let Ok(Ok(c)) = h.join() {
            total.to_peer += c.to_peer;
            total.to_client += c.to_client;
            total.dropped += c.dropped;
        }
    }
    eprintln!(
        "turnbench-rawfwd: to_peer {} to_client {} dropped {}",
        total.to_peer, total.to_client, total.dropped
    );
    Ok(())
}
