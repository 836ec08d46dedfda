//! Small system helpers shared by the worker's parts: the wall clock, the
//! SO_REUSEPORT option, and a plain UDP send.

use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::Socket;

/// Seconds since the unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SO_REUSEPORT (Linux ≥ 3.9), set directly so no socket2 feature is needed.
pub(crate) fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends one datagram (retrying on EINTR); `false` if it failed.
#[inline]
pub(crate) fn udp_send(socket: &mio::net::UdpSocket, data: &[u8], to: SocketAddr) -> bool {
    loop {
        match socket.send_to(data, to) {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Ends the BPF link with kernel id `id` at once (BPF_LINK_GET_FD_BY_ID, then
/// BPF_LINK_DETACH, Linux ≥ 5.9), however many file descriptors of it are still open:
/// aya ends a link only by closing its descriptor. Written here because aya 0.14 has
/// no call for it.
pub(crate) fn bpf_link_detach(id: u32) -> io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    const BPF_LINK_DETACH: libc::c_long = 34;
    // `union bpf_attr`: both commands read one u32 at its start; the rest stays zero.
    let mut attr = [0u32; 32];
    attr[0] = id;
    let size = std::mem::size_of_val(&attr);
    // SAFETY: the bpf syscall reads `size` bytes of `attr`, which lives for the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_GET_FD_BY_ID, attr.as_ptr(), size) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    attr[0] = std::os::fd::AsRawFd::as_raw_fd(&fd) as u32;
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, attr.as_ptr(), size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every entry of the BPF hash map `fd` (keys of `key_size` bytes, values of `value_size`,
/// which for a per-CPU map is every possible CPU's value, each rounded up to 8 bytes),
/// read `batch` entries per call (BPF_MAP_LOOKUP_BATCH, Linux ≥ 5.6): a few calls for the
/// whole map instead of one per key. Returns the keys and the values, each packed one
/// after the other. Written here because aya 0.14 has no batch operations.
pub(crate) fn bpf_map_dump(
    fd: std::os::fd::BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    batch: u32,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use std::os::fd::AsRawFd;
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    // `union bpf_attr`'s `batch` member.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let mut keys = vec![0u8; key_size * batch as usize];
    let mut values = vec![0u8; value_size * batch as usize];
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    // The kernel's position in the map between calls (opaque; a bucket index).
    let (mut position, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::addr_of!(position) as u64
            },
            out_batch: std::ptr::addr_of_mut!(next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: batch,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the kernel reads `attr` and writes at most `count` keys and values into
        // the buffers it points at, sized for `batch` of each, and the position into
        // `next`; all of them outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        // The kernel says how many entries it wrote, also on the last call (ENOENT).
        let got = (attr.count.min(batch)) as usize;
        if error
            .as_ref()
            .is_none_or(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            all_keys.extend_from_slice(&keys[..got * key_size]);
            all_values.extend_from_slice(&values[..got * value_size]);
        }
        match error {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok((all_keys, all_values)),
            Some(e) => return Err(e),
        }
        position = next;
        first = false;
    }
}
