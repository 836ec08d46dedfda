//! Batched UDP I/O: `recvmmsg` fills up to `--udp-batch` receive slots in one
//! system call, and queued datagrams leave with one `sendmmsg` per socket.
//!
//! Sending is deferred: the worker flushes once per event-loop turn (or when
//! the slots run out), so the datagrams that the relay sockets made ready in
//! one turn leave their client listener in one `sendmmsg` rather than one per
//! relay socket. The queue is ordered by socket before sending; datagrams on
//! one socket keep their order.
//!
//! Every slot keeps [`HEADROOM`] free bytes in front of its payload, so a peer
//! datagram becomes ChannelData by writing the 4-byte header in place, and a
//! client's ChannelData is forwarded from a sub-slice of its slot: nothing is
//! copied or allocated per packet. The slots, headers and address arrays are
//! allocated once per worker.
//!
//! Why libc and not quinn-udp: quinn-udp sends one `Transmit` (one
//! destination, optionally GSO segments) per call — no `sendmmsg` across many
//! destinations, which is our fan-out case — and its GRO receive packs a
//! 5-tuple's datagrams back to back in one buffer, leaving no headroom in
//! front of each for the in-place ChannelData header. Its ECN and
//! destination-address control messages are of no use to a TURN relay.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::RawFd;

use super::HEADROOM;

/// Most datagrams per `recvmmsg` that `--udp-batch` may ask for.
pub const MAX_BATCH: usize = crate::config::MAX_BATCH;
/// The largest UDP payload (IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65536;
/// One slot: headroom, payload, and padding room for stream transports.
pub(crate) const SLOT: usize = HEADROOM + MAX_DATAGRAM + 4;

/// Most datagrams in one GSO message (the kernel's UDP_MAX_SEGMENTS is 64
/// on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Largest datagram sent as a GSO segment: one that fits a 1500-byte MTU
/// over IPv6. Larger ones (rare in media) go one per message, as the kernel
/// refuses segments above the route's MTU.
const GSO_MAX_SEGMENT: usize = 1500 - 40 - 8;
/// Most payload bytes in one GSO message (one IP packet's worth).
const GSO_MAX_BYTES: usize = 65_000;

/// One datagram waiting to be sent: `slot[range]` from `fd` to `to`.
#[derive(Clone, Copy)]
struct Out {
    fd: RawFd,
    /// The destination (`to` as the kernel wants it): sorts and compares
    /// datagrams to one destination.
    peer: SocketAddr,
    /// Queue order, to keep a socket's datagrams in order when sorting.
    seq: u32,
    slot: usize,
    start: usize,
    len: usize,
    to: libc::sockaddr_in6,
    to_len: libc::socklen_t,
}

/// What a `flush` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// `sendmmsg` calls.
    pub calls: u64,
    /// Datagrams that left inside a GSO message beyond its first one (the
    /// sends GSO saved).
    pub coalesced: u64,
    /// Datagrams the kernel refused.
    pub failed: u64,
}

pub(crate) struct Batch {
    /// Datagrams per `recvmmsg`.
    size: usize,
    /// Receive slots: two receives' worth, so a turn's queued datagrams can
    /// wait in their slots while the next socket is read.
    slots: usize,
    /// `slots` slots of `SLOT` bytes.
    bufs: Box<[u8]>,
    lens: Vec<usize>,
    from: Vec<libc::sockaddr_in6>,
    from_len: Vec<libc::socklen_t>,
    truncated: Vec<bool>,
    /// Slots `..used` hold datagrams received since the queue was last empty.
    used: usize,
    out: Vec<Out>,
    /// Since the last `flush`: what was sent and refused.
    sent: Flushed,
    /// Coalesce runs to one destination into GSO messages.
    gso: bool,
    /// Scratch for the system calls (rebuilt per call: they hold pointers):
    /// headers, their iovecs, their GSO control messages, and the first
    /// queued datagram of each header.
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<[u64; 4]>,
    first: Vec<usize>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are scratch, rewritten before
// every system call to point into this same `Batch`; nothing else reads them.
unsafe impl Send for Batch {}

impl Batch {
    /// `size` datagrams per `recvmmsg` (1..=`MAX_BATCH`); `gso`: coalesce
    /// datagrams to one destination into UDP GSO sends (the caller checked
    /// [`gso_supported`]).
    pub(crate) fn new(size: usize, gso: bool) -> Batch {
        let size = size.clamp(1, MAX_BATCH);
        let slots = 2 * size;
        // SAFETY: all-zero is a valid value of these plain C structs.
        let (sa, hdr, iov) = unsafe {
            (
                zeroed::<libc::sockaddr_in6>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::iovec>(),
            )
        };
        Batch {
            size,
            slots,
            bufs: vec![0u8; slots * SLOT].into_boxed_slice(),
            lens: vec![0; slots],
            from: vec![sa; slots],
            from_len: vec![0; slots],
            truncated: vec![false; slots],
            used: 0,
            out: Vec::with_capacity(slots),
            sent: Flushed::default(),
            gso,
            hdrs: vec![hdr; slots],
            iovs: vec![iov; slots],
            ctrl: vec![[0; 4]; slots],
            first: vec![0; slots],
        }
    }

    /// Datagrams per `recvmmsg`: a receive of fewer found the socket empty.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Receives up to `size` datagrams on `fd` (nonblocking) into free
    /// slots and returns their indices; no datagram is `WouldBlock`. Sends
    /// what is queued first when too few slots are free.
    ///
    /// Must not be called while the slots of an earlier receive are still
    /// being read (they stay valid until the next `recv`).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<Range<usize>> {
        if self.out.is_empty() {
            self.used = 0;
        } else if self.slots - self.used < self.size {
            self.send_queued();
            self.used = 0;
        }
        let first = self.used;
        let base = self.bufs.as_mut_ptr();
        for i in first..first + self.size {
            // SAFETY: slot i < slots lies inside `bufs` (slots * SLOT bytes).
            let payload = unsafe { base.add(i * SLOT + HEADROOM) };
            self.iovs[i] = libc::iovec {
                iov_base: payload.cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.hdrs[i - first];
            h.msg_hdr.msg_name = (&mut self.from[i] as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let n = loop {
            // SAFETY: `size` headers, each pointing at its own live iovec,
            // address and slot for the duration of the call.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    self.size as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        for k in 0..n {
            let (h, i) = (&self.hdrs[k], first + k);
            self.lens[i] = h.msg_len as usize;
            self.from_len[i] = h.msg_hdr.msg_namelen;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.used = first + n;
        Ok(first..first + n)
    }

    /// Datagram `i` of the last `recv`: its sender and length, or `None` when
    /// it was truncated or its address is not IP.
    pub(crate) fn meta(&self, i: usize) -> Option<(SocketAddr, usize)> {
        if self.truncated[i] {
            return None;
        }
        let from = from_sockaddr(&self.from[i], self.from_len[i])?;
        Some((from, self.lens[i]))
    }

    /// The payload of datagram `i` (after the headroom).
    pub(crate) fn payload(&self, i: usize) -> &[u8] {
        let start = i * SLOT + HEADROOM;
        &self.bufs[start..start + self.lens[i]]
    }

    /// The whole slot `i`, headroom included (to write the header and padding).
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * SLOT..(i + 1) * SLOT]
    }

    /// Queues `slot[start..start + len]` of slot `i` to be sent from `fd` to `to`.
    pub(crate) fn queue(&mut self, fd: RawFd, i: usize, start: usize, len: usize, to: SocketAddr) {
        let peer = to;
        let (to, to_len) = to_sockaddr(to);
        self.out.push(Out {
            fd,
            peer,
            seq: self.out.len() as u32,
            slot: i,
            start,
            len,
            to,
            to_len,
        });
    }

    /// Sends everything queued: one `sendmmsg` per socket. Returns what was
    /// sent since the last call, and how many datagrams could not be sent
    /// (the socket buffer was full, or the destination refused); those are
    /// dropped, as UDP may.
    ///
    /// Callers flush before a socket with queued datagrams is closed: a queued
    /// datagram names its socket by file descriptor.
    pub(crate) fn flush(&mut self) -> Flushed {
        self.send_queued();
        std::mem::take(&mut self.sent)
    }

    fn send_queued(&mut self) {
        // By socket, then destination, then queue order: `seq` is unique, so
        // the unstable (allocation-free) sort keeps each flow in order, and a
        // destination's datagrams end up next to each other for GSO.
        self.out.sort_unstable_by_key(|o| (o.fd, o.peer, o.seq));
        let mut start = 0;
        while start < self.out.len() {
            let fd = self.out[start].fd;
            let mut end = start + 1;
            // One run: the same socket, at most `slots` datagrams (the scratch size).
            while end < self.out.len() && self.out[end].fd == fd && end - start < self.slots {
                end += 1;
            }
            self.send_run(start, end);
            start = end;
        }
        self.out.clear();
    }

    /// Sends `out[start..end]` (one socket) with `sendmmsg`: one message per
    /// datagram, or with GSO one message per run of datagrams to the same
    /// destination whose sizes are equal (the last may be shorter).
    fn send_run(&mut self, start: usize, end: usize) {
        let base = self.bufs.as_mut_ptr();
        let mut msgs = 0;
        let mut k = start;
        while k < end {
            let seg = self.out[k].len;
            let mut j = k + 1;
            if self.gso && (1..=GSO_MAX_SEGMENT).contains(&seg) {
                let mut total = seg;
                while j < end
                    && j - k < GSO_MAX_SEGMENTS
                    && self.out[j].peer == self.out[k].peer
                    && (1..=seg).contains(&self.out[j].len)
                    && total + self.out[j].len <= GSO_MAX_BYTES
                {
                    total += self.out[j].len;
                    j += 1;
                    if self.out[j - 1].len < seg {
                        break; // only the last segment may be shorter
                    }
                }
            }
            for (n, o) in self.out[k..j].iter().enumerate() {
                // SAFETY: start + len lies inside slot `o.slot` (checked by
                // callers taking the range from the slot they filled).
                let p = unsafe { base.add(o.slot * SLOT + o.start) };
                self.iovs[k - start + n] = libc::iovec {
                    iov_base: p.cast(),
                    iov_len: o.len,
                };
            }
            let h = &mut self.hdrs[msgs];
            h.msg_hdr.msg_name = (&mut self.out[k].to as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = self.out[k].to_len;
            h.msg_hdr.msg_iov = &mut self.iovs[k - start];
            h.msg_hdr.msg_iovlen = j - k;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            if j - k > 1 {
                // SAFETY: `ctrl[msgs]` is 8-byte aligned and CMSG_SPACE(2)
                // (24) <= 32 bytes long; the header points at it.
                unsafe {
                    h.msg_hdr.msg_control = self.ctrl[msgs].as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                }
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            self.first[msgs] = k;
            msgs += 1;
            k = j;
        }
        let fd = self.out[start].fd;
        let mut done = 0;
        while done < msgs {
            // SAFETY: headers done..msgs point at live iovecs, control
            // buffers, addresses and slots for the duration of the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (msgs - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            self.sent.calls += 1;
            if rc > 0 {
                let sent = rc as usize;
                let upto = if done + sent < msgs {
                    self.first[done + sent]
                } else {
                    end
                };
                self.sent.coalesced += (upto - self.first[done]) as u64 - sent as u64;
                done += sent;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let first = self.first[done];
            let last = if done + 1 < msgs {
                self.first[done + 1]
            } else {
                end
            };
            if last - first > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                // The route's device cannot segment (EIO) or the segment
                // exceeds its MTU (EINVAL): no more GSO on this worker; send
                // the rest one datagram per message.
                tracing::info!(error = %e, "UDP GSO refused by the kernel; sending datagrams one by one");
                self.gso = false;
                return self.send_run(first, end);
            }
            // This message failed (full buffer, or an ICMP error reported
            // for its destination): drop its datagrams and go on.
            self.sent.failed += (last - first) as u64;
            done += 1;
        }
    }
}

/// Kernel support for UDP GSO (`UDP_SEGMENT`, Linux 4.18): the option is
/// accepted on a UDP socket. Workers coalesce with GSO only where this holds
/// (and `--no-gso` is not given).
pub fn gso_supported() -> bool {
    // Probed once per process: every worker asks at start.
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0") else {
            return false;
        };
        let size: libc::c_int = 1200;
        // SAFETY: a valid socket and a c_int option value of the right length.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    })
}

// The two conversions below are written by hand rather than through
// socket2's `SockAddr`: they run once per datagram in each direction on the
// recvmmsg/sendmmsg path, straight on the batch's sockaddr_in6 slots, where a
// `SockAddr` would copy each address through a 128-byte sockaddr_storage.
fn from_sockaddr(sa: &libc::sockaddr_in6, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(sa.sin6_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in here; sockaddr_in6 is larger.
            let v4: &libc::sockaddr_in =
                unsafe { &*(sa as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sa.sin6_port),
                sa.sin6_flowinfo,
                sa.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut out: libc::sockaddr_in6 = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_in6 (16 <= 28 bytes).
            unsafe {
                std::ptr::write((&mut out as *mut libc::sockaddr_in6).cast(), v4);
            }
            (out, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            (out, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: usize = 32;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for a in ["192.0.2.1:3478", "[2001:db8::1]:49152"] {
            let a: SocketAddr = a.parse().unwrap();
            let (sa, len) = to_sockaddr(a);
            assert_eq!(from_sockaddr(&sa, len), Some(a));
        }
    }

    #[test]
    fn receives_and_sends_batches_on_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        let mut batch = Batch::new(BATCH, false);
        assert_eq!(
            batch.recv(a.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..5u8 {
            b.send_to(&[i; 10], a.local_addr().unwrap()).unwrap();
        }
        // Loopback delivers synchronously: all five are queued now.
        let got = batch.recv(a.as_raw_fd()).unwrap();
        assert_eq!(got, 0..5);
        for i in got {
            let (from, len) = batch.meta(i).unwrap();
            assert_eq!((from, len), (b.local_addr().unwrap(), 10));
            assert_eq!(batch.payload(i), &[i as u8; 10]);
            // Echo back with a header written into the headroom.
            batch.slot_mut(i)[..HEADROOM].copy_from_slice(&[0x40, 0, 0, 10]);
            batch.queue(a.as_raw_fd(), i, 0, HEADROOM + len, from);
        }
        assert_eq!(batch.flush().failed, 0);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for i in 0..5u8 {
            let mut buf = [0u8; 64];
            let (len, _) = b.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..4], &[0x40, 0, 0, 10]);
            assert_eq!(&buf[4..len], &[i; 10]);
        }
    }

    #[test]
    fn runs_longer_than_the_scratch_are_split() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = Batch::new(BATCH, false);
        batch.slot_mut(0)[HEADROOM..HEADROOM + 3].copy_from_slice(b"abc");
        let to = b.local_addr().unwrap();
        for _ in 0..2 * BATCH + 8 {
            batch.queue(a.as_raw_fd(), 0, HEADROOM, 3, to);
        }
        assert_eq!(batch.flush().failed, 0);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for _ in 0..2 * BATCH + 8 {
            let mut buf = [0u8; 8];
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"abc"[..], a.local_addr().unwrap()));
        }
    }

    /// Queued datagrams wait in their slots while the next socket is read,
    /// leave grouped by socket in queue order, and the slots are reused once
    /// the queue is empty.
    #[test]
    fn queued_datagrams_survive_later_receives_and_leave_by_socket() {
        let recv_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let recv_b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let out_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let out_b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&recv_a, &recv_b] {
            s.set_nonblocking(true).unwrap();
        }
        let mut batch = Batch::new(BATCH, false);
        let to = sink.local_addr().unwrap();
        // Three rounds of receives, each from both sockets, queued crosswise
        // (a's datagrams leave on out_b and the other way round), flushed once.
        let mut expect_from_a = Vec::new();
        let mut expect_from_b = Vec::new();
        for round in 0..3u8 {
            for (k, (rx, tx)) in [(&recv_a, &out_b), (&recv_b, &out_a)]
                .into_iter()
                .enumerate()
            {
                for j in 0..BATCH as u8 {
                    let tag = [round, k as u8, j];
                    sender.send_to(&tag, rx.local_addr().unwrap()).unwrap();
                }
                let got = batch.recv(rx.as_raw_fd()).unwrap();
                assert_eq!(got.len(), BATCH);
                for i in got {
                    batch.queue(tx.as_raw_fd(), i, HEADROOM, 3, to);
                    let tag = batch.payload(i).to_vec();
                    if k == 0 {
                        expect_from_b.push(tag)
                    } else {
                        expect_from_a.push(tag)
                    }
                }
            }
        }
        assert_eq!(batch.flush().failed, 0);
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        for _ in 0..6 * BATCH {
            let mut buf = [0u8; 8];
            let (n, from) = sink.recv_from(&mut buf).unwrap();
            if from == out_a.local_addr().unwrap() {
                from_a.push(buf[..n].to_vec());
            } else {
                from_b.push(buf[..n].to_vec());
            }
        }
        assert_eq!(from_a, expect_from_a);
        assert_eq!(from_b, expect_from_b);
        // Queue empty: the next receive starts at slot 0 again.
        sender
            .send_to(b"xyz", recv_a.local_addr().unwrap())
            .unwrap();
        assert_eq!(batch.recv(recv_a.as_raw_fd()).unwrap(), 0..1);
    }

    /// Runs to one destination leave as one GSO message each, and arrive as
    /// the separate datagrams they were, in order; without GSO the same queue
    /// is one message per datagram in the same single `sendmmsg`.
    #[test]
    fn runs_to_one_destination_leave_as_gso_segments() {
        if !gso_supported() {
            eprintln!("skipped: this kernel has no UDP GSO");
            return;
        }
        for gso in [true, false] {
            let out = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut batch = Batch::new(BATCH, gso);
            // Slot i holds 100 bytes of i; a gets 10 of them plus a short
            // last one (slot 10), b gets 3, queued interleaved with a's.
            for i in 0..14 {
                batch.slot_mut(i)[HEADROOM..HEADROOM + 100].fill(i as u8);
            }
            let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            for i in 0..10 {
                batch.queue(out.as_raw_fd(), i, HEADROOM, 100, to_a);
                if i % 4 == 0 {
                    batch.queue(out.as_raw_fd(), 11 + i / 4, HEADROOM, 100, to_b);
                }
            }
            batch.queue(out.as_raw_fd(), 10, HEADROOM, 40, to_a);
            let sent = batch.flush();
            let coalesced = if gso { 10 + 2 } else { 0 };
            assert_eq!((sent.calls, sent.coalesced, sent.failed), (1, coalesced, 0));
            for (sock, want) in [
                (
                    &a,
                    (0..11)
                        .map(|i| (i as u8, if i == 10 { 40 } else { 100 }))
                        .collect::<Vec<_>>(),
                ),
                (&b, (11..14).map(|i| (i as u8, 100)).collect()),
            ] {
                sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                for (fill, len) in want {
                    let mut buf = [0u8; 2048];
                    let (n, from) = sock.recv_from(&mut buf).unwrap();
                    assert_eq!(from, out.local_addr().unwrap());
                    assert_eq!(&buf[..n], &vec![fill; len][..], "gso {gso}");
                }
            }
        }
    }
}
