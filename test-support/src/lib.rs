//! What the workspace's tests share (a dev-dependency only, never shipped):
//!
//! * [`tools`]: the one rule for an external program a test needs (etcd, coturn's
//!   `turnutils_*` and `turnserver`, chromium, node): under `CI=true` a missing one fails
//!   the test, naming it and its Debian package; otherwise the test is skipped with a loud
//!   notice on stderr.
//! * [`etcd`]: a real `etcd` on free loopback ports in a directory of its own, stopped (and
//!   its data removed) when dropped or when the test process dies.
//! * [`alloc`]: a counting global allocator, declared by a test binary in one line, and
//!   [`alloc::Scope`] to read what a stretch of code allocated.
//! * [`turn`]: a blocking TURN client over UDP or TCP (Allocate with the 401 round,
//!   Refresh, CreatePermission, ChannelBind, Send and Data indications, ChannelData both
//!   ways), with timeouts and retransmission.
//! * [`serde_fields`]: the field names a serde struct accepts (configuration keys lists
//!   are checked against them).
//!
//! [`alloc`] uses only `std`, so the tests of `turn-core` (which this crate depends on)
//! include it as a module of their own instead of depending on this crate.

pub mod alloc;
pub mod etcd;
pub mod serde_fields;
pub mod tools;
pub mod turn;

use std::net::{TcpListener, UdpSocket};

/// A port free for both UDP and TCP on 127.0.0.1 right now (the kernel's pick).
///
/// Another process may take it before it is used: callers that bind it later retry on a
/// lost race.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else { continue };
        if UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free loopback port found");
}
