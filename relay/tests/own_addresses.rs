//! A relay on a public-looking address, in a network namespace this test
//! creates (a veth pair with 198.18.0.1/15 and 198.18.0.2/15, the range
//! opened with `--allowed-peer-ip`): clients cannot reach the relay's TURN
//! listener (a nested Allocate), another service on its address, or a relay
//! port nobody holds; they can reach another client's relayed address and
//! the other host address.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use nexrtc_test_support::tools;
use support::{client, start_with, Relayed};

/// A network namespace, deleted when dropped.
struct Netns(String);

impl Netns {
    /// `None` (outside CI, see `tools::missing`) when namespaces cannot be made here.
    fn create() -> Option<Netns> {
        let name = format!("nexrtc-own-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            tools::missing(
                "a network namespace (`ip netns add` failed)",
                "run as root, with apt-get install iproute2",
            );
            return None;
        }
        let ns = Netns(name);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            vec!["addr", "add", "198.18.0.1/15", "dev", "v0"],
            vec!["addr", "add", "198.18.0.2/15", "dev", "v1"],
            vec!["link", "set", "v0", "up"],
            vec!["link", "set", "v1", "up"],
        ] {
            let mut full = vec!["-n", ns.0.as_str()];
            full.extend(args);
            assert!(ip(&full), "ip {full:?}");
        }
        Some(ns)
    }

    /// Moves the calling thread into the namespace (threads it starts
    /// afterwards, such as the relay's workers, are in it too).
    fn enter(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("netns file");
        // SAFETY: setns on an open namespace descriptor affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn receives(socket: &UdpSocket, what: &[u8]) -> bool {
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => &buf[..n] == what,
        Err(_) => false,
    }
}

#[test]
fn a_relay_on_a_public_address_does_not_relay_to_itself_or_its_host() {
    let Some(ns) = Netns::create() else { return };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                inside_the_namespace();
            })
            .join()
            .expect("test thread");
    });
}

fn inside_the_namespace() {
    let relay_ip: std::net::IpAddr = "198.18.0.1".parse().expect("ip");
    let relay = start_with(|s| {
        s.listening_ip = vec![relay_ip];
        s.listening_port = Some(3478);
        s.allow_loopback_peers = false;
        s.allowed_peer_ip = vec!["198.18.0.0/15".parse().expect("range")];
        // The default relay port range.
        s.min_port = None;
        s.max_port = None;
    });
    let server = relay.bound()[0].addr;
    assert_eq!(server, SocketAddr::new(relay_ip, 3478));
    let timeout = Some(Duration::from_millis(500));
    // Another UDP service on the relay's address, and one on the other host address.
    let service = UdpSocket::bind("198.18.0.1:5353").expect("service");
    service.set_read_timeout(timeout).expect("timeout");
    let neighbour = UdpSocket::bind("198.18.0.2:5353").expect("neighbour");
    neighbour.set_read_timeout(timeout).expect("timeout");

    let mut a = client(server, "alice");
    let mut b = client(server, "bob");
    let (ok_a, ok_b) = (a.allocate(), b.allocate());
    assert_eq!((ok_a.code(), ok_b.code()), (200, 200));
    let (relayed_a, relayed_b) = (
        ok_a.relayed().expect("relayed"),
        ok_b.relayed().expect("relayed"),
    );
    assert_eq!(relayed_b.ip(), relay_ip);
    assert!(relayed_b.port() >= 61000, "{relayed_b}");
    let unheld = (61000..=65535)
        .find(|p| *p != relayed_a.port() && *p != relayed_b.port())
        .expect("a free relay port");

    // The TURN listener (a nested Allocate), another service, a relay port
    // nobody holds: 403.
    for (i, peer) in [
        server,
        service.local_addr().expect("addr"),
        SocketAddr::new(relay_ip, unheld),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            a.channel_bind(0x4000 + i as u16, peer).code(),
            403,
            "{peer}"
        );
    }
    // A Send indication to the service is dropped; to the neighbour it arrives.
    let permit = a.create_permission(&[
        service.local_addr().expect("addr"),
        neighbour.local_addr().expect("addr"),
    ]);
    assert_eq!(permit.code(), 200);
    a.send_indication(service.local_addr().expect("addr"), b"to-service");
    a.send_indication(neighbour.local_addr().expect("addr"), b"to-neighbour");
    assert!(receives(&neighbour, b"to-neighbour"));
    assert!(
        !receives(&service, b"to-service"),
        "the host's service got a datagram"
    );

    // Client to client through the relay: b's relayed address is held.
    assert_eq!(a.channel_bind(0x4010, relayed_b).code(), 200);
    assert_eq!(b.create_permission(&[relayed_a]).code(), 200);
    a.send_channel_data(0x4010, b"hello");
    let got = b.recv_relayed().expect("Data indication for b");
    assert!(
        matches!(&got, Relayed::Data { data, .. } if data == b"hello"),
        "b got a's data: {got:?}"
    );
}
