//! The delay forwarder: IPv4 packets from each region's TUN device to the destination
//! region's, after half the plan's RTT plus jitter, with loss and cuts.
//!
//! ```text
//! reader thread per region: poll + read(tun_i) ─► parse the IPv4 destination 10.k.x.x
//!     ─► drop (cut, loss, full queue, not IPv4, unknown region) or
//!        due = max(now + rtt(i,k)/2 + N(0, jitter), previous due on link i→k)
//!     ─► min-heap by due (one lock, one condition variable)
//! scheduler thread (timer slack 1 ns): sleep until the earliest due ─► write(tun_k)
//!     ─► lateness = write time − due, in a 1 µs histogram
//! ```
//!
//! A link never reorders (the `max` above), as real paths rarely do. Everything is bounded:
//! [`LINK_QUEUE`] packets in flight per link, packets of at most [`MTU`] bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plan::Plan;

/// Packets in flight per (source, destination) link, at most.
pub const LINK_QUEUE: usize = 4096;
/// Largest packet carried (the TUN devices' MTU).
pub const MTU: usize = 1500;
/// Lateness histogram range: 1 µs buckets up to this, then one overflow bucket.
const HISTOGRAM_US: usize = 100_000;

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discard {
    Cut,
    Loss,
    QueueFull,
    NotIpv4,
    UnknownDestination,
}

struct Entry {
    due: Instant,
    seq: u64,
    dst: usize,
    bytes: Vec<u8>,
    link: (usize, usize),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Counters of one link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStats {
    pub forwarded: u64,
    pub cut: u64,
    pub lost: u64,
    pub queue_full: u64,
}

/// What the forwarder did (see [`Forwarder::stats`]).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// `links[i][j]`: packets from region i+1 to region j+1.
    pub links: Vec<Vec<LinkStats>>,
    /// Packets that were not IPv4, or too short to be.
    pub not_ipv4: u64,
    /// IPv4 packets to an address outside every region.
    pub unknown_destination: u64,
    /// Write time minus due time, µs.
    pub lateness_us: Lateness,
}

/// Percentiles of the lateness histogram (µs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lateness {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    rtt_ms: Vec<Vec<f64>>,
    jitter_ms: f64,
    loss: f64,
    cut: Vec<bool>,
    /// Last due time per link (FIFO).
    last_due: Vec<Vec<Option<Instant>>>,
    in_flight: Vec<Vec<usize>>,
    links: Vec<Vec<LinkStats>>,
    not_ipv4: u64,
    unknown_destination: u64,
    lateness: Vec<u64>,
    lateness_max: u64,
    rng: u64,
}

impl State {
    /// xorshift64*: jitter and loss need no more.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

struct Shared {
    tuns: Vec<File>,
    state: Mutex<State>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running forwarder; stops (and joins its threads) when dropped.
pub struct Forwarder {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// The destination region (0-based) of an IPv4 packet to 10.k.x.x, k in 1..=n.
fn destination(packet: &[u8], n: usize) -> Result<usize, Discard> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[0] & 0x0f < 5 {
        return Err(Discard::NotIpv4);
    }
    let (a, k) = (packet[16], usize::from(packet[17]));
    if a != 10 || k == 0 || k > n {
        return Err(Discard::UnknownDestination);
    }
    Ok(k - 1)
}

impl Forwarder {
    /// Starts forwarding between `tuns` (region i+1's device at index i) per `plan`.
    pub fn start(plan: &Plan, tuns: Vec<File>, seed: u64) -> Forwarder {
        let n = tuns.len();
        let state = State {
            heap: BinaryHeap::new(),
            seq: 0,
            rtt_ms: plan.rtt_ms.clone(),
            jitter_ms: plan.jitter_ms,
            loss: plan.loss,
            cut: vec![false; n],
            last_due: vec![vec![None; n]; n],
            in_flight: vec![vec![0; n]; n],
            links: vec![vec![LinkStats::default(); n]; n],
            not_ipv4: 0,
            unknown_destination: 0,
            lateness: vec![0; HISTOGRAM_US + 1],
            lateness_max: 0,
            rng: seed | 1,
        };
        let shared = Arc::new(Shared {
            tuns,
            state: Mutex::new(state),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for i in 0..n {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || read_loop(&shared, i)));
        }
        let scheduler = shared.clone();
        threads.push(std::thread::spawn(move || schedule_loop(&scheduler)));
        Forwarder { shared, threads }
    }

    /// Drops everything to and from region `i` (0-based) until [`Forwarder::heal`].
    pub fn cut(&self, i: usize, cut: bool) {
        if let Some(c) = self.shared.lock().cut.get_mut(i) {
            *c = cut;
        }
    }

    /// Sets the RTT between regions `i` and `j` (0-based), both ways.
    pub fn set_rtt(&self, i: usize, j: usize, ms: f64) {
        let mut s = self.shared.lock();
        if i < s.rtt_ms.len() && j < s.rtt_ms.len() && i != j && ms.is_finite() && ms >= 0.0 {
            s.rtt_ms[i][j] = ms;
            s.rtt_ms[j][i] = ms;
        }
    }

    pub fn stats(&self) -> Stats {
        let s = self.shared.lock();
        let count: u64 = s.lateness.iter().sum();
        let quantile = |q: f64| -> u64 {
            let target = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (us, &c) in s.lateness.iter().enumerate() {
                seen += c;
                if seen >= target {
                    return us as u64;
                }
            }
            s.lateness_max
        };
        Stats {
            links: s.links.clone(),
            not_ipv4: s.not_ipv4,
            unknown_destination: s.unknown_destination,
            lateness_us: Lateness {
                count,
                p50: quantile(0.5),
                p90: quantile(0.9),
                p99: quantile(0.99),
                max: s.lateness_max,
            },
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_loop(shared: &Shared, src: usize) {
    let n = shared.tuns.len();
    let mut tun = &shared.tuns[src];
    let fd = tun.as_raw_fd();
    let mut buf = vec![0u8; MTU + 64];
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let len = match tun.read(&mut buf) {
            Ok(0) => continue,
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let packet = &buf[..len];
        let now = Instant::now();
        let mut s = shared.lock();
        let dst = match destination(packet, n) {
            Ok(dst) => dst,
            Err(Discard::NotIpv4) => {
                s.not_ipv4 += 1;
                continue;
            }
            Err(_) => {
                s.unknown_destination += 1;
                continue;
            }
        };
        let why = if s.cut[src] || s.cut[dst] {
            Some(Discard::Cut)
        } else if s.loss > 0.0 && s.unit() < s.loss {
            Some(Discard::Loss)
        } else if s.in_flight[src][dst] >= LINK_QUEUE {
            Some(Discard::QueueFull)
        } else {
            None
        };
        let link = &mut s.links[src][dst];
        match why {
            Some(Discard::Cut) => {
                link.cut += 1;
                continue;
            }
            Some(Discard::Loss) => {
                link.lost += 1;
                continue;
            }
            Some(_) => {
                link.queue_full += 1;
                continue;
            }
            None => {}
        }
        let jitter = if s.jitter_ms > 0.0 {
            s.normal() * s.jitter_ms
        } else {
            0.0
        };
        let one_way_ms = (s.rtt_ms[src][dst] / 2.0 + jitter).max(0.0);
        let mut due = now + Duration::from_secs_f64(one_way_ms / 1000.0);
        if let Some(last) = s.last_due[src][dst] {
            due = due.max(last);
        }
        s.last_due[src][dst] = Some(due);
        s.in_flight[src][dst] += 1;
        s.seq += 1;
        let entry = Entry {
            due,
            seq: s.seq,
            dst,
            bytes: packet.to_vec(),
            link: (src, dst),
        };
        s.heap.push(Reverse(entry));
        drop(s);
        shared.wake.notify_one();
    }
}

fn schedule_loop(shared: &Shared) {
    // SAFETY: prctl with integer arguments only; sets this thread's timer slack to 1 ns
    // so that sleeps end close to their deadline (the default slack is 50 µs).
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut due_now: Vec<Entry> = Vec::new();
    let mut s = shared.lock();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        while s.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            if let Some(Reverse(e)) = s.heap.pop() {
                s.in_flight[e.link.0][e.link.1] -= 1;
                due_now.push(e);
            }
        }
        if due_now.is_empty() {
            let wait = match s.heap.peek() {
                Some(Reverse(e)) => e.due.saturating_duration_since(now),
                None => Duration::from_millis(100),
            };
            s = shared
                .wake
                .wait_timeout(s, wait.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        drop(s);
        let mut written = Vec::with_capacity(due_now.len());
        for e in due_now.drain(..) {
            let mut tun = &shared.tuns[e.dst];
            let ok = tun.write(&e.bytes).is_ok();
            let late = Instant::now().saturating_duration_since(e.due);
            written.push((e.link, ok, late));
        }
        s = shared.lock();
        for ((src, dst), ok, late) in written {
            if ok {
                s.links[src][dst].forwarded += 1;
            }
            let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            let bucket = usize::try_from(us)
                .unwrap_or(HISTOGRAM_US)
                .min(HISTOGRAM_US);
            s.lateness[bucket] += 1;
            s.lateness_max = s.lateness_max.max(us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&[10, 3, 1, 1]);
        assert_eq!(destination(&p, 6), Ok(2));
        p[17] = 7;
        assert_eq!(destination(&p, 6), Err(Discard::UnknownDestination));
        p[16] = 192;
        assert_eq!(destination(&p, 6), Err(Discard::UnknownDestination));
        assert_eq!(destination(&p[..19], 6), Err(Discard::NotIpv4));
        p[0] = 0x60;
        assert_eq!(destination(&p, 6), Err(Discard::NotIpv4));
        assert_eq!(destination(&[], 6), Err(Discard::NotIpv4));
    }
}
