//! The DNS server's UDP side, by hand: the hot path.
//!
//! Written rather than taken from hickory-server because a measurement said so: under
//! dnsperf, hickory-server's UDP path (a tokio task per request, the request parsed into
//! owned structures, the response encoded afresh) spent 5.9 µs of CPU per query, three
//! times an authoritative server written for speed, with 45% of it in the kernel for one
//! `recvfrom` and one `sendto` per query and most of the rest in allocation, parsing and
//! task wake-ups (benches/RESULTS.md, "GeoDNS"). hickory-proto still parses every query that
//! is not in the cache and encodes every answer; TCP stays on hickory-server.
//!
//! - A few threads (one per CPU, at most 4) share the socket; each takes up to 32
//!   datagrams per `recvmmsg` and sends the answers with one `sendmmsg`.
//! - Each thread keeps the answers it made, keyed by the query's bytes after the message
//!   ID (name, type, flags, the OPT record with any client subnet) and the asker's client
//!   network (/24, /48): the same question from the same network gets the same answer, its
//!   ID and the case of its name patched in (resolvers randomize the case, 0x20, so the
//!   name is compared without it). An answer is kept at most [`CACHE_AGE`] and only for the registry view
//!   it was made from (a relay leaving the view leaves the answers at once); answers that
//!   hold for less than the asker's whole network (a GeoIP network longer than /24) are
//!   not kept.
//! - The response rate limit is checked first, for every datagram (see `super`).
//! - Bound to every address (0.0.0.0 or ::), each answer leaves from the address its
//!   query was sent to (IP_PKTINFO, through quinn-udp, one `sendmsg` per answer):
//!   resolvers drop answers from another address.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

use crate::client_probes::Network;
use crate::state::View;

use super::{Core, Limited};

/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;
/// A receive buffer: any UDP datagram, or several the kernel coalesced (GRO).
const SLOT: usize = 1 << 16;
/// How long a kept answer is served (client-probe measurements and load move the ranking
/// between views too).
pub(super) const CACHE_AGE: Duration = Duration::from_secs(1);
/// Answers kept per thread; past it the thread starts over (memory stays bounded).
const CACHE_ENTRIES: usize = 16_384;
/// How often a waiting thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The serving threads (they stop when this is dropped).
pub(super) struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    pub(super) fn start(socket: UdpSocket, core: Arc<Core>) -> io::Result<Threads> {
        socket.set_nonblocking(true)?;
        // Bursts wait in the kernel rather than being dropped (best effort: capped by
        // net.core.rmem_max).
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (socket, core, stop) = (socket.clone(), core.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || Worker::new(core).serve(&socket, &stop))?;
            handles.push(handle);
        }
        Ok(Threads { stop, handles })
    }

    /// Stops the threads and waits for them (at most [`POLL`]).
    pub(super) fn join(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An answer made before.
struct Kept {
    network: Network,
    /// The query's bytes after its ID.
    query: Box<[u8]>,
    /// The answer's bytes (its ID is the asker's).
    answer: Box<[u8]>,
    at: Instant,
    counter: nexrtc_metrics::Counter,
}

struct Worker {
    core: Arc<Core>,
    hasher: RandomState,
    kept: HashMap<u64, Kept>,
    view: Arc<View>,
}

impl Worker {
    fn new(core: Arc<Core>) -> Worker {
        let view = core.state.view();
        Worker {
            core,
            hasher: RandomState::new(),
            kept: HashMap::new(),
            view,
        }
    }

    fn serve(mut self, socket: &UdpSocket, stop: &AtomicBool) {
        let mut batch = match Batch::new(socket) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "DNS UDP socket unusable");
                return;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let n = match batch.recv(socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "DNS UDP receive failed");
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            let view = self.core.state.view();
            if !Arc::ptr_eq(&view, &self.view) {
                self.kept.clear();
                self.view = view;
            }
            let now = Instant::now();
            for i in 0..n {
                let mut out = batch.buffer();
                let (query, src) = batch.received(i);
                if self.answer(query, src, now, &mut out) {
                    batch.queue(i, out);
                } else {
                    batch.out.push(out);
                }
            }
            batch.send(socket);
        }
    }

    /// Writes the answer to `query` into `out`; `false`: nothing is sent.
    fn answer(&mut self, query: &[u8], src: SocketAddr, now: Instant, out: &mut Vec<u8>) -> bool {
        if query.len() < 12 {
            self.core.state.metrics.dns_malformed();
            return false;
        }
        let network = Network::of(src.ip());
        // Resolvers randomize the case of the name they ask (0x20, against spoofing): the
        // key takes the name without its case, and a kept answer gets the asker's case
        // back. Only one-question queries with a plain name are kept.
        let name_end = question_name_end(query);
        let key = {
            let mut h = self.hasher.build_hasher();
            network.hash(&mut h);
            let name = name_end.unwrap_or(2);
            // Header flags and the name (at most 10 + 255 bytes), lowercased in one write.
            let mut lower = [0u8; 265];
            let head = &mut lower[..name - 2];
            head.copy_from_slice(&query[2..name]);
            head.make_ascii_lowercase();
            h.write(head);
            h.write(&query[name..]);
            h.finish()
        };
        match self.core.limited(src.ip(), key) {
            None => {}
            Some(Limited::Drop) => return false,
            Some(Limited::Slip) => {
                return super::slip(query).is_some_and(|bytes| {
                    out.extend_from_slice(&bytes);
                    true
                });
            }
        }
        // The same question: the name without its case, every other byte exactly.
        let same = |k: &Kept, end: usize| {
            let (name, rest) = query[2..].split_at(end - 2);
            k.query.len() == query.len() - 2
                && k.query[..end - 2].eq_ignore_ascii_case(name)
                && k.query[end - 2..] == *rest
        };
        let kept = name_end.and_then(|end| {
            let k = self.kept.get(&key)?;
            (k.network == network && same(k, end) && now.duration_since(k.at) < CACHE_AGE)
                .then_some((k, end))
        });
        if let Some((kept, end)) = kept {
            out.extend_from_slice(&kept.answer);
            // The asker's ID and its question's case (later owner names point at it).
            out[..2].copy_from_slice(&query[..2]);
            out[12..end].copy_from_slice(&query[12..end]);
            kept.counter.increment(1);
            return true;
        }
        let Some(reply) = self.core.reply_udp(query, src.ip()) else {
            return false;
        };
        reply.counter.increment(1);
        out.extend_from_slice(&reply.bytes);
        if reply.cacheable && name_end.is_some() {
            if self.kept.len() >= CACHE_ENTRIES {
                self.kept.clear();
            }
            let kept = Kept {
                network,
                query: query[2..].into(),
                answer: reply.bytes.into_boxed_slice(),
                at: now,
                counter: reply.counter,
            };
            self.kept.insert(key, kept);
        }
        true
    }
}

/// The end of a query's question name (the offset after its root label), when the query
/// has exactly one question and its name is plain labels (no compression pointer).
fn question_name_end(query: &[u8]) -> Option<usize> {
    if query.get(4..6)? != [0, 1] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        match len {
            0 => return Some(i + 1),
            1..=63 => i += 1 + len,
            _ => return None,
        }
    }
}

/// The buffers of one `recvmmsg` and one `sendmmsg` (quinn-udp receives, rustix sends:
/// the system calls without unsafe code here).
struct Batch {
    state: quinn_udp::UdpSocketState,
    buffers: Vec<u8>,
    meta: [quinn_udp::RecvMeta; BATCH],
    /// The datagrams received: (offset in `buffers`, length, source, the address it was
    /// sent to).
    received: Vec<(usize, usize, SocketAddr, Option<IpAddr>)>,
    /// Answer buffers (reused), where each goes and from which address.
    out: Vec<Vec<u8>>,
    queued: Vec<(Vec<u8>, SocketAddr, Option<IpAddr>)>,
    /// Bound to every address (0.0.0.0, ::): each answer must leave from the address its
    /// query came to, or resolvers drop it; sent one by one with that source (IP_PKTINFO).
    any_address: bool,
}

impl Batch {
    fn new(socket: &UdpSocket) -> io::Result<Batch> {
        Ok(Batch {
            state: quinn_udp::UdpSocketState::new(socket.into())?,
            any_address: socket.local_addr()?.ip().is_unspecified(),
            buffers: vec![0; BATCH * SLOT],
            meta: [quinn_udp::RecvMeta::default(); BATCH],
            received: Vec::with_capacity(BATCH),
            out: Vec::with_capacity(BATCH),
            queued: Vec::with_capacity(BATCH),
        })
    }

    /// Waits up to [`POLL`] for datagrams and takes those there are (up to [`BATCH`]
    /// buffers; datagrams the kernel coalesced (GRO) are split by their stride).
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let n = loop {
            let mut slices: Vec<IoSliceMut<'_>> =
                self.buffers.chunks_mut(SLOT).map(IoSliceMut::new).collect();
            match self.state.recv(socket.into(), &mut slices, &mut self.meta) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(socket, PollFlags::IN)];
                    let timeout = Timespec::try_from(POLL).unwrap_or_default();
                    rustix::event::poll(&mut fds, Some(&timeout))?;
                    if fds[0].revents().is_empty() {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        };
        for (i, meta) in self.meta.iter().take(n).enumerate() {
            let stride = meta.stride.max(1);
            let mut offset = 0;
            while offset < meta.len {
                let len = stride.min(meta.len - offset);
                self.received
                    .push((i * SLOT + offset, len, meta.addr, meta.dst_ip));
                offset += len;
            }
        }
        Ok(self.received.len())
    }

    /// The `i`th datagram received and its source.
    fn received(&self, i: usize) -> (&[u8], SocketAddr) {
        let (offset, len, src, _) = self.received[i];
        (&self.buffers[offset..offset + len], src)
    }

    /// An empty answer buffer.
    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.out.pop().unwrap_or_else(|| Vec::with_capacity(1232));
        b.clear();
        b
    }

    /// Queues the answer to the `i`th datagram.
    fn queue(&mut self, i: usize, answer: Vec<u8>) {
        let (_, _, to, from) = self.received[i];
        self.queued.push((answer, to, from));
    }

    /// Sends the queued answers (a destination the kernel refuses loses its answer only).
    fn send(&mut self, socket: &UdpSocket) {
        if self.any_address {
            for (answer, to, from) in &self.queued {
                let transmit = quinn_udp::Transmit {
                    destination: *to,
                    ecn: None,
                    contents: answer,
                    segment_size: None,
                    src_ip: *from,
                };
                if let Err(e) = self.state.send(socket.into(), &transmit) {
                    tracing::debug!(error = %e, "DNS answer not sent");
                }
            }
            self.out.extend(self.queued.drain(..).map(|(b, _, _)| b));
            return;
        }
        let addresses: Vec<SocketAddrAny> =
            self.queued.iter().map(|(_, to, _)| to.as_any()).collect();
        let slices: Vec<[IoSlice<'_>; 1]> = self
            .queued
            .iter()
            .map(|(b, _, _)| [IoSlice::new(b)])
            .collect();
        // No ancillary data; each header borrows an empty buffer of its own.
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..self.queued.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut done = 0;
        while done < self.queued.len() {
            let mut headers: Vec<MMsgHdr<'_>> = (addresses[done..].iter().zip(&slices[done..]))
                .zip(controls[done..].iter_mut())
                .map(|((to, iov), control)| MMsgHdr::new_with_addr(to, iov, control))
                .collect();
            match rustix::net::sendmmsg(socket, &mut headers, SendFlags::empty()) {
                Ok(sent) if sent > 0 => done += sent,
                Err(rustix::io::Errno::INTR) => {}
                result => {
                    // The first unsent answer is the one the kernel refused: skip it.
                    tracing::debug!(?result, "DNS answer not sent");
                    done += 1;
                }
            }
        }
        drop(slices);
        self.out.extend(self.queued.drain(..).map(|(b, _, _)| b));
    }
}
