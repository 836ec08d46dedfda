//! Batched UDP I/O: `recvmmsg` fills up to [`BATCH`] receive slots in one
//! system call, and the datagrams a batch produces leave with one `sendmmsg`
//! per run of consecutive datagrams on the same socket.
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
use std::os::fd::RawFd;

use super::HEADROOM;

/// Datagrams per `recvmmsg` / `sendmmsg`.
pub(crate) const BATCH: usize = 32;
/// The largest UDP payload (IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65536;
/// One slot: headroom, payload, and padding room for stream transports.
pub(crate) const SLOT: usize = HEADROOM + MAX_DATAGRAM + 4;

/// One datagram waiting to be sent: `slot[range]` from `fd` to `to`.
#[derive(Clone, Copy)]
struct Out {
    fd: RawFd,
    slot: usize,
    start: usize,
    len: usize,
    to: libc::sockaddr_in6,
    to_len: libc::socklen_t,
}

pub(crate) struct Batch {
    /// `BATCH` slots of `SLOT` bytes.
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    from: [libc::sockaddr_in6; BATCH],
    from_len: [libc::socklen_t; BATCH],
    truncated: [bool; BATCH],
    out: Vec<Out>,
    /// Scratch for the system calls (rebuilt per call: they hold pointers).
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are scratch, rewritten before
// every system call to point into this same `Batch`; nothing else reads them.
unsafe impl Send for Batch {}

impl Batch {
    pub(crate) fn new() -> Batch {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let (sa, hdr, iov) = unsafe {
            (
                zeroed::<libc::sockaddr_in6>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::iovec>(),
            )
        };
        Batch {
            bufs: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            from: [sa; BATCH],
            from_len: [0; BATCH],
            truncated: [false; BATCH],
            out: Vec::with_capacity(BATCH),
            hdrs: vec![hdr; BATCH],
            iovs: vec![iov; BATCH],
        }
    }

    /// Receives up to `BATCH` datagrams on `fd` (nonblocking); `Ok(0)` never
    /// happens: no datagram is `WouldBlock`.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: slot i lies inside `bufs` (BATCH * SLOT bytes).
            let payload = unsafe { base.add(i * SLOT + HEADROOM) };
            self.iovs[i] = libc::iovec {
                iov_base: payload.cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.hdrs[i];
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
            // SAFETY: BATCH headers, each pointing at its own live iovec,
            // address and slot for the duration of the call.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
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
        for i in 0..n {
            let h = &self.hdrs[i];
            self.lens[i] = h.msg_len as usize;
            self.from_len[i] = h.msg_hdr.msg_namelen;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
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
        let (to, to_len) = to_sockaddr(to);
        self.out.push(Out {
            fd,
            slot: i,
            start,
            len,
            to,
            to_len,
        });
    }

    /// Sends everything queued: one `sendmmsg` per run of datagrams on one
    /// socket. Returns how many could not be sent (the socket buffer was full,
    /// or the destination refused); they are dropped, as UDP may.
    pub(crate) fn flush(&mut self) -> u64 {
        let mut failed = 0;
        let mut start = 0;
        while start < self.out.len() {
            let fd = self.out[start].fd;
            let mut end = start + 1;
            // One run: the same socket, at most BATCH datagrams (the scratch size).
            while end < self.out.len() && self.out[end].fd == fd && end - start < BATCH {
                end += 1;
            }
            failed += self.send_run(start, end);
            start = end;
        }
        self.out.clear();
        failed
    }

    fn send_run(&mut self, start: usize, end: usize) -> u64 {
        let base = self.bufs.as_mut_ptr();
        let count = end - start;
        for k in 0..count {
            let o = &mut self.out[start + k];
            // SAFETY: start + len lies inside slot `o.slot` (checked by callers
            // taking the range from the slot they filled).
            let p = unsafe { base.add(o.slot * SLOT + o.start) };
            self.iovs[k] = libc::iovec {
                iov_base: p.cast(),
                iov_len: o.len,
            };
            let h = &mut self.hdrs[k];
            h.msg_hdr.msg_name = (&mut o.to as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = o.to_len;
            h.msg_hdr.msg_iov = &mut self.iovs[k];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let fd = self.out[start].fd;
        let mut failed = 0;
        let mut done = 0;
        while done < count {
            // SAFETY: headers done..count point at live iovecs, addresses and
            // slots for the duration of the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (count - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                done += rc as usize;
                continue;
            }
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // This datagram failed (full buffer, or an ICMP error reported
            // for its destination): drop it and go on with the rest.
            failed += 1;
            done += 1;
        }
        failed
    }
}

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
        let mut batch = Batch::new();
        assert_eq!(
            batch.recv(a.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..5u8 {
            b.send_to(&[i; 10], a.local_addr().unwrap()).unwrap();
        }
        // Loopback delivers synchronously: all five are queued now.
        let n = batch.recv(a.as_raw_fd()).unwrap();
        assert_eq!(n, 5);
        for i in 0..n {
            let (from, len) = batch.meta(i).unwrap();
            assert_eq!((from, len), (b.local_addr().unwrap(), 10));
            assert_eq!(batch.payload(i), &[i as u8; 10]);
            // Echo back with a header written into the headroom.
            batch.slot_mut(i)[..HEADROOM].copy_from_slice(&[0x40, 0, 0, 10]);
            batch.queue(a.as_raw_fd(), i, 0, HEADROOM + len, from);
        }
        assert_eq!(batch.flush(), 0);
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
    fn runs_longer_than_a_batch_are_split() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = Batch::new();
        batch.slot_mut(0)[HEADROOM..HEADROOM + 3].copy_from_slice(b"abc");
        let to = b.local_addr().unwrap();
        for _ in 0..BATCH + 8 {
            batch.queue(a.as_raw_fd(), 0, HEADROOM, 3, to);
        }
        assert_eq!(batch.flush(), 0);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for _ in 0..BATCH + 8 {
            let mut buf = [0u8; 8];
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"abc"[..], a.local_addr().unwrap()));
        }
    }
}
