//! Thin wrappers over the Linux calls the bench needs: epoll, recvmmsg /
//! sendmmsg on IPv4 UDP sockets, the monotonic clock, /proc readings, CPU
//! affinity and the open-file limit. Everything here is IPv4 loopback only.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// Nanoseconds of CLOCK_MONOTONIC (the same clock in every process, so a
/// timestamp written by one thread is read by another).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A level-triggered epoll instance; each fd is registered with a `u64` token.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call.
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is valid for the call (ignored by EPOLL_CTL_DEL on new kernels).
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns the tokens of the ready fds.
    pub fn wait(&mut self, timeout_ms: i32, out: &mut Vec<u64>) -> io::Result<()> {
        out.clear();
        // SAFETY: the events buffer is valid for `len` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        for ev in self.events.iter().take(n as usize) {
            out.push(ev.u64);
        }
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

pub fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

pub fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
        u16::from_be(s.sin_port),
    )
}

/// A batch of datagram slots for recvmmsg / sendmmsg: `n` buffers of `size`
/// bytes, each with an address and a length. The kernel structures are rebuilt
/// before every call (cheap, and nothing self-referential is kept).
pub struct Batch {
    pub bufs: Vec<Vec<u8>>,
    /// For a receive: bytes received into slot i (after `offset`). For a send:
    /// bytes to send from slot i (after `offset`).
    pub lens: Vec<usize>,
    pub addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Send runs to one destination as one UDP GSO message (the raw
    /// forwarder's `--gso`; never the load generator: real clients don't).
    pub gso: bool,
    order: Vec<usize>,
    ctrl: Vec<[u64; 4]>,
}

impl Batch {
    pub fn new(n: usize, size: usize) -> Batch {
        let zero_addr = to_sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        Batch {
            bufs: (0..n).map(|_| vec![0u8; size]).collect(),
            lens: vec![0; n],
            addrs: vec![zero_addr; n],
            iovs: Vec::with_capacity(n),
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            gso: false,
            order: Vec::with_capacity(n),
            ctrl: vec![[0; 4]; n],
        }
    }

    /// Like `build` for a send with GSO: slots ordered by destination (then
    /// slot), a run to one destination of equal lengths (the last may be
    /// shorter, at most 64) becomes one header. Returns the header count.
    fn build_gso(&mut self, count: usize, offset: usize) -> usize {
        let key =
            |a: &libc::sockaddr_in| (u64::from(a.sin_addr.s_addr) << 16) | u64::from(a.sin_port);
        self.order.clear();
        self.order.extend(0..count);
        let addrs = &self.addrs;
        self.order.sort_unstable_by_key(|&i| (key(&addrs[i]), i));
        self.iovs.clear();
        for &i in &self.order {
            let buf = &mut self.bufs[i];
            self.iovs.push(libc::iovec {
                // SAFETY: offset < buf.len() (checked by callers through the len).
                iov_base: unsafe { buf.as_mut_ptr().add(offset.min(buf.len())) }.cast(),
                iov_len: self.lens[i],
            });
        }
        let mut msgs = 0;
        let mut k = 0;
        while k < count {
            let first = self.order[k];
            let seg = self.lens[first];
            let mut j = k + 1;
            while j < count && j - k < 64 {
                let i = self.order[j];
                if key(&self.addrs[i]) != key(&self.addrs[first])
                    || self.lens[i] > seg
                    || self.lens[i] == 0
                {
                    break;
                }
                j += 1;
                if self.lens[i] < seg {
                    break;
                }
            }
            let h = &mut self.hdrs[msgs];
            h.msg_hdr.msg_name = (&mut self.addrs[first] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_hdr.msg_iov = &mut self.iovs[k];
            h.msg_hdr.msg_iovlen = j - k;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            if j - k > 1 {
                // SAFETY: ctrl[msgs] is 8-byte aligned and 32 >= CMSG_SPACE(2) bytes.
                unsafe {
                    h.msg_hdr.msg_control = self.ctrl[msgs].as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                }
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            msgs += 1;
            k = j;
        }
        msgs
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Points the kernel headers at slots `0..count`, data starting `offset`
    /// bytes into each buffer; `len_of(i)` is the iovec length.
    fn build(&mut self, count: usize, offset: usize, send: bool) {
        self.iovs.clear();
        for i in 0..count {
            let buf = &mut self.bufs[i];
            let len = if send {
                self.lens[i]
            } else {
                buf.len().saturating_sub(offset)
            };
            self.iovs.push(libc::iovec {
                // SAFETY: offset < buf.len() (checked by callers through the len).
                iov_base: unsafe { buf.as_mut_ptr().add(offset.min(buf.len())) }.cast(),
                iov_len: len,
            });
        }
        for i in 0..count {
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// recvmmsg without blocking into slots, data at `offset` in each buffer.
    /// Returns how many datagrams arrived (0 when none is waiting).
    pub fn recv(&mut self, fd: RawFd, offset: usize) -> io::Result<usize> {
        let n = self.capacity();
        self.build(n, offset, false);
        // SAFETY: headers point into buffers owned by self, valid for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        let r = r as usize;
        for i in 0..r {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(r)
    }

    /// sendmmsg of slots `0..count` (lengths in `lens`, addresses in `addrs`,
    /// data at `offset`). Retries until all are handed to the kernel or an
    /// error other than EAGAIN/EINTR; returns how many were sent.
    pub fn send(&mut self, fd: RawFd, count: usize, offset: usize) -> io::Result<usize> {
        let sent = count.min(self.capacity());
        let count = if self.gso {
            self.build_gso(sent, offset)
        } else {
            self.build(sent, offset, true);
            sent
        };
        let mut done = 0;
        let mut spins = 0u32;
        while done < count {
            // SAFETY: headers point into buffers owned by self, valid for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (count - done) as u32,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock if spins < 1000 => {
                        spins += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    // A refused or unreachable destination (ICMP from loopback)
                    // or a full buffer: skip that datagram, it counts as lost.
                    _ => {
                        done += 1;
                        continue;
                    }
                }
            }
            done += r as usize;
        }
        Ok(sent)
    }
}

/// CPU time (user + system, all threads) of process `pid`, in seconds.
pub fn proc_cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("bad /proc stat field"))
    };
    let ticks = get(11)? + get(12)?;
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn proc_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|_| io::Error::other("bad VmRSS"))?;
            return Ok(kb * 1024);
        }
    }
    Err(io::Error::other("no VmRSS"))
}

/// Number of open file descriptors of `pid`.
pub fn proc_fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Raises this process's open-file limit to `n` (soft and hard; raising the
/// hard limit needs CAP_SYS_RESOURCE, otherwise the soft limit goes to the hard one).
pub fn raise_nofile(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let want = libc::rlimit {
        rlim_cur: n,
        rlim_max: n.max(lim.rlim_max),
    };
    // SAFETY: valid in-pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return n;
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: valid in-pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
    lim.rlim_max
}

/// Pins the calling thread to the given CPUs (no-op for an empty list).
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET only writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `f` with the calling thread in the network namespace `name` (as made by
/// `ip netns add`, under /var/run/netns), then puts the thread back: sockets made
/// in `f` stay in that namespace. `None` runs `f` where the thread is.
pub fn in_netns<T>(name: Option<&str>, f: impl FnOnce() -> T) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let Some(name) = name else {
        return Ok(f());
    };
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    let target = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns on a namespace file this thread holds open.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let out = f();
    // SAFETY: as above.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// Clock ticks per CPU from /proc/stat: (user + nice, system, irq + softirq,
/// idle + iowait) for each `cpuN` line, in seconds.
pub fn cpu_times() -> io::Result<Vec<[f64; 4]>> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = Vec::new();
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some(cpu) if cpu.starts_with("cpu") && cpu.len() > 3 => {}
            _ => continue,
        }
        let v: Vec<f64> = f.map(|x| x.parse().unwrap_or(0.0) / hz).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
        // user nice system idle iowait irq softirq steal
        out.push([at(0) + at(1), at(2), at(5) + at(6), at(3) + at(4)]);
    }
    Ok(out)
}
