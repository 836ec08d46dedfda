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
