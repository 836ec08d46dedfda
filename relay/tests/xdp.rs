//! The XDP fast path's program in the kernel, in network namespaces the test makes:
//!
//! ```text
//!  client ns            relay ns                    peer ns
//!  c0 10.77.1.2 ── r0 10.77.1.1   r1 10.77.2.1 ── p0 10.77.2.2
//!     fd77:1::2       fd77:1::1      fd77:2::1       fd77:2::2
//! ```
//!
//! The program is attached to r0 and r1 (and, so that veth delivers redirected frames in
//! native mode, to c0 and p0, where it finds no flows and passes everything). Nothing
//! listens in the relay namespace: whatever reaches a peer or a client there went through
//! the program. A flow installed from userspace relays ChannelData to the peer as plain
//! UDP and the peer's datagrams back as ChannelData, with per-flow counts that match;
//! padding is stripped; ChannelData whose length disagrees with its datagram, or on a
//! channel without a flow, is passed to the kernel, not relayed; once the flow is removed
//! nothing more is relayed; over IPv6 the receivers' kernels verify every UDP checksum the
//! program updated. The relay itself with `--xdp`: channels go to the kernel over IPv4 and
//! IPv6 and leave it on deletion, revocation, permission expiry and exit; capped
//! allocations and clients relayed across families stay in userspace; coturn's uclient
//! and webrtc-rs's client relay through it without loss. Needs root and a relay built
//! with clang.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nexrtc_relay::xdp::{FastPath, Flow, FlowCounts};
use nexrtc_test_support::tools::{missing, require_tool};

/// A network namespace (`ip netns`), deleted on drop.
struct Netns(String);

impl Netns {
    fn new(role: &str) -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nx-xdp-{role}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(format!("/run/netns/{}", self.0)).unwrap();
        std::thread::spawn(move || {
            // SAFETY: a valid namespace file descriptor; setns affects this thread only.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", &ns.0, "-o", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "link/ether");
    words
        .next()
        .unwrap_or_else(|| panic!("no MAC in {text}"))
        .to_owned()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn channel_data(channel: u16, payload: &[u8], padding: usize) -> Vec<u8> {
    let mut out = channel.to_be_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0u8, padding));
    out
}

/// The next datagram within 500 ms, with its sender.
fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

fn bound(ns: &Netns, at: SocketAddr) -> UdpSocket {
    let socket = ns.run(move || UdpSocket::bind(at).unwrap());
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
}

/// The three namespaces, linked as the module docs draw, with IPv4 forwarding on the
/// relay's interfaces and its neighbour entries in place.
fn topology() -> (Netns, Netns, Netns) {
    let (client, relay, peer) = (Netns::new("c"), Netns::new("r"), Netns::new("p"));
    ip(&[
        "link", "add", "c0", "netns", &client.0, "type", "veth", "peer", "name", "r0", "netns",
        &relay.0,
    ]);
    ip(&[
        "link", "add", "p0", "netns", &peer.0, "type", "veth", "peer", "name", "r1", "netns",
        &relay.0,
    ]);
    for (ns, dev, cidr) in [
        (&client, "c0", "10.77.1.2/24"),
        (&relay, "r0", "10.77.1.1/24"),
        (&relay, "r1", "10.77.2.1/24"),
        (&peer, "p0", "10.77.2.2/24"),
    ] {
        ns.ip(&["addr", "add", cidr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    for (ns, dev, cidr) in [
        (&client, "c0", "fd77:1::2/64"),
        (&relay, "r0", "fd77:1::1/64"),
        (&relay, "r1", "fd77:2::1/64"),
        (&peer, "p0", "fd77:2::2/64"),
    ] {
        ns.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
    }
    // The kernel's route lookup from XDP wants forwarding on the interfaces.
    for dev in ["r0", "r1"] {
        for key in [
            format!("net.ipv4.conf.{dev}.forwarding=1"),
            format!("net.ipv6.conf.{dev}.forwarding=1"),
        ] {
            let ok = Command::new("ip")
                .args(["netns", "exec", &relay.0, "sysctl", "-q", "-w", &key])
                .status()
                .unwrap();
            assert!(ok.success(), "{key}");
        }
    }
    // The relay's neighbour entries (the program passes packets it has none for; the
    // clients and peers find the relay by ARP as usual).
    for (ns, dev, ip_addr, via) in [
        (&client, "c0", "10.77.1.2", "r0"),
        (&peer, "p0", "10.77.2.2", "r1"),
        (&client, "c0", "fd77:1::2", "r0"),
        (&peer, "p0", "fd77:2::2", "r1"),
    ] {
        let mac = mac_of(ns, dev);
        relay.ip(&[
            "neigh",
            "replace",
            ip_addr,
            "lladdr",
            &mac,
            "dev",
            via,
            "nud",
            "permanent",
        ]);
    }

    // The senders complete their UDP checksums themselves (`ethtool -K … tx off`): the
    // program updates an IPv6 datagram's checksum from the one it arrived with, complete
    // on anything from a wire, but only partial from a socket on the same host over veth.
    tx_checksum_off(&client, "c0");
    tx_checksum_off(&peer, "p0");

    (client, relay, peer)
}

/// Transmit checksum offload off on `dev` in `ns` (what `ethtool -K dev tx off` does).
fn tx_checksum_off(ns: &Netns, dev: &'static str) {
    ns.run(move || {
        const SIOCETHTOOL: libc::c_ulong = 0x8946;
        const ETHTOOL_STXCSUM: u32 = 0x17;
        // struct ethtool_value { cmd, data }: data 0 turns it off.
        let mut value = [ETHTOOL_STXCSUM, 0u32];
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (to, from) in request.ifr_name.iter_mut().zip(dev.bytes()) {
            *to = from as libc::c_char;
        }
        request.ifr_ifru.ifru_data = value.as_mut_ptr().cast();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: a valid socket, a request naming the device and pointing at `value`,
        // both alive for the call.
        let done = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut request) };
        assert_eq!(done, 0, "{dev}: {}", std::io::Error::last_os_error());
    })
}

/// The program on the client's and the peer's interfaces too: there it finds no flows
/// and passes everything, but veth delivers frames redirected to it in native mode only
/// to an interface with an XDP program.
fn receivers(client: &Netns, peer: &Netns) -> (FastPath, FastPath) {
    (
        client.run(|| FastPath::attach(&["c0".into()]).unwrap()),
        peer.run(|| FastPath::attach(&["p0".into()]).unwrap()),
    )
}

/// Whether this machine can run these tests (root, a relay built with the program, `ip`).
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing("root (network namespaces, XDP)", "run the tests as root");
        return false;
    }
    if !nexrtc_relay::xdp::built() {
        missing(
            "the XDP program (the relay was built without clang)",
            "apt-get install clang libbpf-dev, then rebuild",
        );
        return false;
    }
    require_tool("ip", "iproute2").is_some()
}

#[test]
fn channels_are_relayed_in_the_kernel_both_ways_while_their_flow_is_installed() {
    if !can_run() {
        return;
    }
    let (client, relay, peer) = topology();

    let mut fast = relay.run(|| FastPath::attach(&["r0".into(), "r1".into()]).unwrap());
    let modes: Vec<&str> = fast.attached().iter().map(|(_, m)| *m).collect();
    eprintln!("attached: {:?}", fast.attached());
    assert_eq!(modes.len(), 2);
    let _receivers = receivers(&client, &peer);

    let flow = Flow {
        client: addr("10.77.1.2:40000"),
        listen: addr("10.77.1.1:3478"),
        relay: addr("10.77.2.1:50000"),
        peer: addr("10.77.2.2:6000"),
        channel: 0x4001,
        expires: Instant::now() + Duration::from_secs(60),
    };
    let c = bound(&client, flow.client);
    let p = bound(&peer, flow.peer);
    let listen = flow.listen;
    let relayed = flow.relay;

    // Before the flow: nothing is relayed (nothing listens in the relay namespace).
    c.send_to(&channel_data(0x4001, b"early", 0), listen)
        .unwrap();
    assert_eq!(recv(&p), None);
    assert!(fast.outcomes().no_flow >= 1);

    fast.install(&flow).unwrap();
    let mut expect = FlowCounts::default();
    for i in 0..100usize {
        let payload = vec![i as u8; 20 + i * 7];
        c.send_to(&channel_data(0x4001, &payload, 0), listen)
            .unwrap();
        let (got, from) =
            recv(&p).unwrap_or_else(|| panic!("not relayed to the peer: {:?}", fast.outcomes()));
        assert_eq!((got.as_slice(), from), (payload.as_slice(), relayed));
        expect.to_peer_packets += 1;
        expect.to_peer_bytes += payload.len() as u64;

        let back = vec![!(i as u8); 10 + i * 5];
        p.send_to(&back, relayed).unwrap();
        let (got, from) =
            recv(&c).unwrap_or_else(|| panic!("not relayed to the client: {:?}", fast.outcomes()));
        assert_eq!(from, listen);
        assert_eq!(
            got,
            channel_data(0x4001, &back, 0),
            "ChannelData to the client"
        );
        expect.to_client_packets += 1;
        expect.to_client_bytes += back.len() as u64;
    }
    // Padding (allowed over UDP) is not relayed.
    c.send_to(&channel_data(0x4001, b"padded", 2), listen)
        .unwrap();
    assert_eq!(recv(&p).map(|(d, _)| d), Some(b"padded".to_vec()));
    expect.to_peer_packets += 1;
    expect.to_peer_bytes += 6;
    assert_eq!(fast.counts(&flow), expect);
    // The whole table read at once (batched) says the same.
    let snapshot = fast.counts_reader().snapshot().expect("batched reads");
    assert_eq!(snapshot.counts(&flow), Some(expect));

    // A length longer than the datagram, or 4 bytes of padding, or another channel: passed
    // to the kernel, not relayed.
    let outcomes = fast.outcomes();
    let mut long = channel_data(0x4001, b"short", 0);
    long[3] = 50;
    c.send_to(&long, listen).unwrap();
    c.send_to(&channel_data(0x4001, b"pad", 4), listen).unwrap();
    c.send_to(&channel_data(0x4002, b"other", 0), listen)
        .unwrap();
    assert_eq!(recv(&p), None);
    let after = fast.outcomes();
    assert_eq!(after.malformed - outcomes.malformed, 2, "{after:?}");
    assert_eq!(after.no_flow - outcomes.no_flow, 1, "{after:?}");
    assert_eq!(fast.counts(&flow), expect, "nothing of that was counted");
    assert_eq!(after.to_peer, expect.to_peer_packets);
    assert_eq!(after.to_client, expect.to_client_packets);

    // A flow whose end has passed is not relayed, though still installed.
    let mut ending = flow;
    ending.expires = Instant::now() + Duration::from_millis(300);
    fast.install(&ending).unwrap();
    c.send_to(&channel_data(0x4001, b"in time", 0), listen)
        .unwrap();
    assert_eq!(recv(&p).map(|(d, _)| d), Some(b"in time".to_vec()));
    std::thread::sleep(Duration::from_millis(400));
    let before = fast.outcomes().expired;
    c.send_to(&channel_data(0x4001, b"too late", 0), listen)
        .unwrap();
    p.send_to(b"too late", relayed).unwrap();
    assert_eq!(recv(&p), None);
    assert_eq!(recv(&c), None);
    assert_eq!(fast.outcomes().expired - before, 2);
    expect.to_peer_packets += 1;
    expect.to_peer_bytes += 7;
    assert_eq!(fast.counts(&flow), expect, "a new expiry keeps the counts");

    // Removed: the counts come back, and nothing more is relayed either way.
    assert_eq!(fast.remove(&flow), expect);
    c.send_to(&channel_data(0x4001, b"late", 0), listen)
        .unwrap();
    p.send_to(b"late", relayed).unwrap();
    assert_eq!(recv(&p), None);
    assert_eq!(recv(&c), None);
    assert_eq!(fast.counts(&flow), FlowCounts::default());
}

/// UDP checksum errors the kernel of `ns` counted (IPv6), from its /proc.
fn udp6_checksum_errors(ns: &Netns) -> u64 {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap());
    text.lines()
        .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// Over IPv6 the program keeps the mandatory UDP checksum right (updated for the new
/// addresses, ports, length, the ChannelData header and its padding): the receivers'
/// kernels check it and take every datagram, payloads of every length modulo 4, padded
/// or not, both ways; nothing is counted as a checksum error.
#[test]
fn ipv6_channels_are_relayed_in_the_kernel_with_their_checksums_right() {
    if !can_run() {
        return;
    }
    let (client, relay, peer) = topology();
    let mut fast = relay.run(|| FastPath::attach(&["r0".into(), "r1".into()]).unwrap());
    let _receivers = receivers(&client, &peer);
    let flow = Flow {
        client: addr("[fd77:1::2]:40000"),
        listen: addr("[fd77:1::1]:3478"),
        relay: addr("[fd77:2::1]:50000"),
        peer: addr("[fd77:2::2]:6000"),
        channel: 0x4abc,
        expires: Instant::now() + Duration::from_secs(60),
    };
    let c = bound(&client, flow.client);
    let p = bound(&peer, flow.peer);
    let errors = (udp6_checksum_errors(&client), udp6_checksum_errors(&peer));
    fast.install(&flow).unwrap();
    let mut expect = FlowCounts::default();
    for i in 0..64usize {
        // Lengths 1..=64 (every remainder modulo 4), content varying per byte; every
        // other datagram padded to a multiple of 4 with non-zero padding bytes.
        let payload: Vec<u8> = (0..=i).map(|j| (i * 31 + j * 7 + 1) as u8).collect();
        let mut datagram = channel_data(0x4abc, &payload, 0);
        if i % 2 == 1 {
            let pad = (4 - payload.len() % 4) % 4;
            datagram.extend(std::iter::repeat_n(0xa5u8, pad));
        }
        c.send_to(&datagram, flow.listen).unwrap();
        let (got, from) = recv(&p).unwrap_or_else(|| {
            panic!(
                "{i}: not relayed to the peer: {:?}, checksum errors {}",
                fast.outcomes(),
                udp6_checksum_errors(&peer)
            )
        });
        assert_eq!(
            (got.as_slice(), from),
            (payload.as_slice(), flow.relay),
            "{i}"
        );
        expect.to_peer_packets += 1;
        expect.to_peer_bytes += payload.len() as u64;

        let back: Vec<u8> = payload.iter().map(|b| !b).chain([i as u8]).collect();
        p.send_to(&back, flow.relay).unwrap();
        let (got, from) = recv(&c)
            .unwrap_or_else(|| panic!("{i}: not relayed to the client: {:?}", fast.outcomes()));
        assert_eq!(
            (got, from),
            (channel_data(0x4abc, &back, 0), flow.listen),
            "{i}"
        );
        expect.to_client_packets += 1;
        expect.to_client_bytes += back.len() as u64;
    }
    assert_eq!(fast.counts(&flow), expect);
    let outcomes = fast.outcomes();
    assert_eq!(
        (outcomes.to_peer, outcomes.to_client),
        (64, 64),
        "{outcomes:?}"
    );
    assert_eq!(
        (udp6_checksum_errors(&client), udp6_checksum_errors(&peer)),
        errors,
        "checksum errors"
    );

    // A flow mixing families is refused (the program relays within one).
    let mut mixed = flow;
    mixed.peer = addr("10.77.2.2:6000");
    assert!(fast.install(&mixed).is_err());

    // Removed: nothing more is relayed.
    assert_eq!(fast.remove(&flow), expect);
    c.send_to(&channel_data(0x4abc, b"late", 0), flow.listen)
        .unwrap();
    p.send_to(b"late", flow.relay).unwrap();
    assert_eq!(recv(&p), None);
    assert_eq!(recv(&c), None);
}

/// Arbitrary datagrams, over IPv4 and IPv6, both ways, against installed flows: the
/// program relays exactly what the relay would (a client's well-formed ChannelData on the
/// flow's channel, stripped; every peer datagram, framed) and passes everything else, in
/// order, without disturbing the flows; the kernel and the verifier stay unmoved.
#[test]
fn arbitrary_datagrams_are_relayed_exactly_when_the_relay_would() {
    if !can_run() {
        return;
    }
    let (client, relay, peer) = topology();
    let mut fast = relay.run(|| FastPath::attach(&["r0".into(), "r1".into()]).unwrap());
    let _receivers = receivers(&client, &peer);
    // xorshift64*: reproducible, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for (c_at, l_at, r_at, p_at) in [
        (
            "10.77.1.2:41000",
            "10.77.1.1:3478",
            "10.77.2.1:51000",
            "10.77.2.2:7000",
        ),
        (
            "[fd77:1::2]:41000",
            "[fd77:1::1]:3478",
            "[fd77:2::1]:51000",
            "[fd77:2::2]:7000",
        ),
    ] {
        let flow = Flow {
            client: addr(c_at),
            listen: addr(l_at),
            relay: addr(r_at),
            peer: addr(p_at),
            channel: 0x4123,
            expires: Instant::now() + Duration::from_secs(60),
        };
        fast.install(&flow).unwrap();
        let c = bound(&client, flow.client);
        let p = bound(&peer, flow.peer);
        for socket in [&c, &p] {
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let mut expect = FlowCounts::default();
        for round in 0..20 {
            let (mut to_peer, mut to_client) = (Vec::new(), Vec::new());
            for _ in 0..50 {
                let len = (next() % 1400) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len >= 4 && next() % 2 == 0 {
                    // Looks like ChannelData on the flow's channel, any length field.
                    d[..2].copy_from_slice(&0x4123u16.to_be_bytes());
                    let field = match next() % 3 {
                        0 => len - 4,                                         // exact
                        1 => (len - 4).saturating_sub((next() % 5) as usize), // padded 0-4
                        _ => (next() % 1500) as usize,                        // anything
                    };
                    d[2..4].copy_from_slice(&(field as u16).to_be_bytes());
                }
                c.send_to(&d, flow.listen).unwrap();
                // What the relay would send on: well-formed ChannelData on this channel.
                if d.len() >= 4 && d[..2] == 0x4123u16.to_be_bytes() {
                    let field = u16::from_be_bytes([d[2], d[3]]) as usize;
                    let carried = d.len() - 4;
                    if field <= carried && carried - field <= 3 {
                        to_peer.push(d[4..4 + field].to_vec());
                    }
                }
                let back: Vec<u8> = (0..(next() % 1400) as usize)
                    .map(|_| next() as u8)
                    .collect();
                p.send_to(&back, flow.relay).unwrap();
                to_client.push(channel_data(0x4123, &back, 0));
            }
            let mut got_peer = Vec::new();
            while let Some((d, from)) = recv(&p) {
                assert_eq!(from, flow.relay);
                got_peer.push(d);
            }
            let mut got_client = Vec::new();
            while let Some((d, from)) = recv(&c) {
                assert_eq!(from, flow.listen);
                got_client.push(d);
            }
            assert_eq!(got_peer, to_peer, "{c_at}, round {round}: to the peer");
            assert_eq!(
                got_client, to_client,
                "{c_at}, round {round}: to the client"
            );
            expect.to_peer_packets += to_peer.len() as u64;
            expect.to_peer_bytes += to_peer.iter().map(|d| d.len() as u64).sum::<u64>();
            expect.to_client_packets += to_client.len() as u64;
            // Payload bytes: without the 4-byte ChannelData header.
            expect.to_client_bytes += to_client.iter().map(|d| d.len() as u64 - 4).sum::<u64>();
        }
        // The flow still relays, and its counts are those of what was relayed.
        c.send_to(&channel_data(0x4123, b"still", 0), flow.listen)
            .unwrap();
        assert_eq!(recv(&p), Some((b"still".to_vec(), flow.relay)));
        expect.to_peer_packets += 1;
        expect.to_peer_bytes += 5;
        assert_eq!(fast.remove(&flow), expect, "{c_at}");
    }
}

const SECRET: &str = "xdp-secret-0123456789";

/// The relay in `ns` with `--xdp r0,r1`, its settings changed by `change`.
fn start_relay(
    ns: &Netns,
    change: impl FnOnce(&mut nexrtc_relay::Settings) + Send + 'static,
) -> nexrtc_relay::Relay {
    use nexrtc_relay::settings::PeerRange;
    use nexrtc_relay::{Relay, RelayConfig, Settings};
    ns.run(move || {
        let mut settings = Settings {
            realm: Some("xdp.test".into()),
            static_auth_secret: vec![SECRET.into()],
            listening_ip: vec!["10.77.1.1".parse().unwrap(), "fd77:1::1".parse().unwrap()],
            listening_port: Some(3478),
            relay_ip: vec!["10.77.2.1".parse().unwrap(), "fd77:2::1".parse().unwrap()],
            min_port: Some(50_000),
            max_port: Some(50_099),
            no_tcp: true,
            no_tls: true,
            allowed_peer_ip: vec![
                "10.77.2.0/24".parse::<PeerRange>().unwrap(),
                "fd77:2::/64".parse::<PeerRange>().unwrap(),
            ],
            xdp: vec!["r0".into(), "r1".into()],
            relay_threads: Some(1),
            ..Settings::default()
        };
        change(&mut settings);
        Relay::start(&RelayConfig::load(settings).unwrap()).unwrap()
    })
}

/// What a test of the relay itself starts from: the namespaces, the relay with `--xdp` in
/// the middle (its settings changed by `change`), its monitor, and the receivers' programs.
struct Rig {
    client: Netns,
    _relay_ns: Netns,
    peer: Netns,
    relay: nexrtc_relay::Relay,
    monitor: nexrtc_relay::Monitor,
    _receivers: (FastPath, FastPath),
}

/// `None` where this machine cannot run these tests (see [`can_run`]).
fn rig(change: impl FnOnce(&mut nexrtc_relay::Settings) + Send + 'static) -> Option<Rig> {
    if !can_run() {
        return None;
    }
    let (client, relay_ns, peer) = topology();
    let relay = start_relay(&relay_ns, change);
    let monitor = relay.monitor();
    let receivers = receivers(&client, &peer);
    Some(Rig {
        client,
        _relay_ns: relay_ns,
        peer,
        relay,
        monitor,
        _receivers: receivers,
    })
}

/// Waits (≤ 5 s) until the tenant's bytes each way, counted back from the kernel, are
/// `bytes`, then checks they stay so over more than a sweep (a count handed back twice
/// would show after).
fn usage_comes_to(monitor: &nexrtc_relay::Monitor, bytes: (u64, u64)) {
    let now = || {
        let usage = monitor.usage();
        let u = usage.values().next().copied().unwrap_or_default();
        (u.bytes_to_peer, u.bytes_to_client)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while now() != bytes {
        assert!(
            Instant::now() < deadline,
            "bytes each way {:?}, relayed {bytes:?}",
            now()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(now(), bytes, "the counts moved after they were whole");
}

/// A TURN client of `user` in `ns`, allocated, with channel 0x4000 bound to the peer;
/// its relayed address.
fn turn_client(ns: &Netns, user: &str) -> (nexrtc_test_support::turn::TurnClient, SocketAddr) {
    use nexrtc_test_support::turn::{rest_credentials, TurnClient};
    let (username, password) = rest_credentials(SECRET, user);
    let socket = ns.run(|| UdpSocket::bind("10.77.1.2:0").unwrap());
    let server: SocketAddr = "10.77.1.1:3478".parse().unwrap();
    let mut turn = TurnClient::over_udp(socket, server, &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_millis(800));
    let relayed = turn.allocate().relayed().expect("relayed address");
    let peer: SocketAddr = "10.77.2.2:6000".parse().unwrap();
    assert_eq!(turn.channel_bind(0x4000, peer).code(), 200);
    (turn, relayed)
}

/// The relay itself with `--xdp` on its two interfaces: a TURN client's channel is
/// relayed by the kernel both ways (every packet, counted back into the tenant's bytes
/// exactly), and once the allocation is deleted nothing more is relayed either way.
#[test]
fn the_relay_puts_bound_channels_in_the_kernel_and_takes_them_out_at_once() {
    use nexrtc_test_support::turn::Relayed;

    let Some(r) = rig(|_| {}) else {
        return;
    };
    let p = bound(&r.peer, addr("10.77.2.2:6000"));
    let (mut turn, relayed) = turn_client(&r.client, "alice");

    let (mut to_peer, mut to_client) = (0u64, 0u64);
    for i in 0..50usize {
        let payload = vec![i as u8; 30 + i];
        turn.send_channel_data(0x4000, &payload);
        let (got, from) = recv(&p).expect("relayed to the peer");
        assert_eq!((got.as_slice(), from), (payload.as_slice(), relayed));
        to_peer += payload.len() as u64;
        let back = vec![0x41; 20 + i]; // begins like ChannelData: still the peer's
        p.send_to(&back, relayed).unwrap();
        match turn.recv_relayed() {
            Some(Relayed::Channel { channel, data }) => {
                assert_eq!((channel, data), (0x4000, back.clone()))
            }
            other => panic!("not relayed to the client: {other:?}"),
        }
        to_client += back.len() as u64;
    }
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!(
        (xdp.to_peer, xdp.to_client),
        (50, 50),
        "all in the kernel: {xdp:?}"
    );
    // The kernel's counts reach the tenant's within a sweep (a second).
    usage_comes_to(&r.monitor, (to_peer, to_client));

    // The allocation deleted: nothing more is relayed, either way.
    assert_eq!(turn.refresh(0).code(), 200);
    turn.send_channel_data(0x4000, b"after");
    p.send_to(b"after", relayed).unwrap();
    assert_eq!(recv(&p), None, "relayed after the deletion");
    assert!(turn.recv_relayed().is_none(), "relayed after the deletion");
    let after = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!((after.to_peer, after.to_client), (50, 50));
    assert!(after.no_flow >= xdp.no_flow + 2, "{after:?}");

    // A revoked username's channel leaves the kernel with its allocation.
    let (bob, bob_relayed) = turn_client(&r.client, "bob");
    bob.send_channel_data(0x4000, b"bob");
    assert_eq!(recv(&p), Some((b"bob".to_vec(), bob_relayed)));
    assert_eq!(r.monitor.xdp_outcomes().expect("attached").to_peer, 51);
    r.relay.revoke(bob.username(), unix_now() + 3600);
    std::thread::sleep(Duration::from_millis(300)); // the workers apply it between turns
    bob.send_channel_data(0x4000, b"revoked");
    p.send_to(b"revoked", bob_relayed).unwrap();
    assert_eq!(recv(&p), None, "relayed after the revocation");
    assert_eq!(r.monitor.xdp_outcomes().expect("attached").to_peer, 51);

    // Draining, the relay takes no new allocations while the established ones go on, in
    // the kernel as before; the relay gone (a drain ends in an exit), the program goes
    // with it.
    let (carol, carol_relayed) = turn_client(&r.client, "carol");
    carol.send_channel_data(0x4000, b"carol");
    assert_eq!(recv(&p), Some((b"carol".to_vec(), carol_relayed)));
    r.relay.drain();
    std::thread::sleep(Duration::from_millis(300)); // the workers apply it between turns
    carol.send_channel_data(0x4000, b"draining");
    assert_eq!(recv(&p), Some((b"draining".to_vec(), carol_relayed)));
    assert_eq!(r.monitor.xdp_outcomes().expect("attached").to_peer, 53);
    drop(r.relay);
    carol.send_channel_data(0x4000, b"after exit");
    assert_eq!(recv(&p), None, "relayed after the relay exited");
}

/// The relay with `--xdp` over IPv6: a client on the relay's IPv6 listener with an IPv6
/// relayed address (RFC 6156) has its channel relayed by the kernel both ways, counted
/// into the tenant's bytes; once the allocation is deleted nothing more is relayed. A
/// client whose peer is of the other family stays in userspace, relayed as before.
#[test]
fn the_relay_puts_ipv6_channels_in_the_kernel() {
    use nexrtc_test_support::turn::{rest_credentials, Relayed, TurnClient};

    let Some(r) = rig(|_| {}) else {
        return;
    };
    let peer_addr = addr("[fd77:2::2]:6000");
    let p = bound(&r.peer, peer_addr);
    let (username, password) = rest_credentials(SECRET, "six");
    let socket = r.client.run(|| UdpSocket::bind("[fd77:1::2]:0").unwrap());
    let mut turn = TurnClient::over_udp(socket, addr("[fd77:1::1]:3478"), &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_millis(800));
    let relayed = turn.allocate_ipv6().relayed().expect("relayed address");
    assert_eq!(
        relayed.ip(),
        "fd77:2::1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(turn.channel_bind(0x4000, peer_addr).code(), 200);

    let mut bytes = (0u64, 0u64);
    for i in 0..50usize {
        let payload = vec![i as u8 ^ 0x5a; 1 + i * 3];
        turn.send_channel_data(0x4000, &payload);
        assert_eq!(recv(&p), Some((payload.clone(), relayed)), "{i}");
        bytes.0 += payload.len() as u64;
        let back = vec![!(i as u8); 2 + i];
        p.send_to(&back, relayed).unwrap();
        match turn.recv_relayed() {
            Some(Relayed::Channel { channel, data }) => {
                assert_eq!((channel, data), (0x4000, back.clone()))
            }
            other => panic!("{i}: not relayed to the client: {other:?}"),
        }
        bytes.1 += back.len() as u64;
    }
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!(
        (xdp.to_peer, xdp.to_client),
        (50, 50),
        "all in the kernel: {xdp:?}"
    );
    usage_comes_to(&r.monitor, bytes);

    // Deleted: nothing more relayed, either way.
    assert_eq!(turn.refresh(0).code(), 200);
    turn.send_channel_data(0x4000, b"after");
    p.send_to(b"after", relayed).unwrap();
    assert_eq!(recv(&p), None, "relayed after the deletion");
    assert!(turn.recv_relayed().is_none(), "relayed after the deletion");
    assert_eq!(r.monitor.xdp_outcomes().expect("attached").to_peer, 50);

    // An IPv4 client with an IPv6 relayed address (the families differ): userspace relays.
    let (username, password) = rest_credentials(SECRET, "four-to-six");
    let socket = r.client.run(|| UdpSocket::bind("10.77.1.2:0").unwrap());
    let mut mixed = TurnClient::over_udp(socket, addr("10.77.1.1:3478"), &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_millis(800));
    let mixed_relayed = mixed.allocate_ipv6().relayed().expect("relayed address");
    assert_eq!(mixed.channel_bind(0x4001, peer_addr).code(), 200);
    mixed.send_channel_data(0x4001, b"translated");
    assert_eq!(recv(&p), Some((b"translated".to_vec(), mixed_relayed)));
    assert_eq!(
        r.monitor.xdp_outcomes().expect("attached").to_peer,
        50,
        "not in the kernel"
    );
}

/// An allocation with a bandwidth cap (`--max-bps`) needs a decision per packet, so its
/// channels stay in userspace under `--xdp`, and the cap holds: of a burst far above it,
/// the peer gets no more than the bucket's burst plus its rate over the time taken.
#[test]
fn a_capped_allocation_stays_in_userspace_and_its_cap_holds() {
    let Some(r) = rig(|s| s.max_bps = Some(10_000)) else {
        return;
    };
    let p = bound(&r.peer, addr("10.77.2.2:6000"));
    let (turn, _relayed) = turn_client(&r.client, "capped");
    let started = Instant::now();
    let payload = [0x42u8; 1000];
    for _ in 0..300 {
        turn.send_channel_data(0x4000, &payload);
    }
    let mut got = 0usize;
    while let Some((data, _)) = recv(&p) {
        got += data.len();
    }
    // The bucket holds max(rate, 65,536) bytes; the receive loop ends 500 ms after the
    // last datagram.
    let allowed = 65_536 + (10_000.0 * started.elapsed().as_secs_f64()) as usize;
    assert!(
        got >= 60_000,
        "the burst the cap allows was relayed: {got} B"
    );
    assert!(
        got <= allowed,
        "{got} B relayed, the cap allows {allowed} B"
    );
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!(
        xdp.to_peer, 0,
        "a capped channel was relayed in the kernel: {xdp:?}"
    );
}

/// A flow whose permission ends is not relayed by the kernel past that end (checked per
/// packet, before the sweep withdraws it).
#[test]
fn a_channel_leaves_the_kernel_when_its_permission_ends() {
    let Some(r) = rig(|s| s.permission_lifetime = Some(2)) else {
        return;
    };
    let p = bound(&r.peer, addr("10.77.2.2:6000"));
    let (turn, relayed) = turn_client(&r.client, "dave");
    turn.send_channel_data(0x4000, b"in time");
    assert_eq!(recv(&p), Some((b"in time".to_vec(), relayed)));
    let before = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!(before.to_peer, 1);
    std::thread::sleep(Duration::from_millis(2300));
    turn.send_channel_data(0x4000, b"too late");
    assert_eq!(recv(&p), None, "relayed past the permission's end");
    let after = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!(after.to_peer, 1);
    assert!(
        after.expired + after.no_flow > before.expired + before.no_flow,
        "{after:?}"
    );
}

/// A call held past its permission's lifetime by refreshing it (CreatePermission every
/// second, permissions lasting 2 s) stays in the kernel the whole time: each refresh gives
/// the flow its new end, so no packet of the call falls to userspace as expired.
#[test]
fn refreshed_permissions_keep_a_call_in_the_kernel() {
    let Some(r) = rig(|s| s.permission_lifetime = Some(2)) else {
        return;
    };
    let peer_addr = addr("10.77.2.2:6000");
    let p = bound(&r.peer, peer_addr);
    let (mut turn, relayed) = turn_client(&r.client, "held");
    let started = Instant::now();
    let mut sent = 0u64;
    let mut refreshed = Instant::now();
    // 6 s: three times the permission's lifetime.
    while started.elapsed() < Duration::from_secs(6) {
        if refreshed.elapsed() >= Duration::from_secs(1) {
            assert_eq!(turn.create_permission(&[peer_addr]).code(), 200);
            refreshed = Instant::now();
        }
        let payload = format!("held {sent}").into_bytes();
        turn.send_channel_data(0x4000, &payload);
        assert_eq!(recv(&p), Some((payload, relayed)), "packet {sent}");
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!((xdp.to_peer, xdp.expired), (sent, 0), "{xdp:?}");
}

/// A thousand low-rate calls at once from ONE address (as behind a NAT: a port each),
/// spread over two workers, with the relay's default limits: every packet of every call
/// is relayed in the kernel both ways, and the tenant's bytes come out exact, summed from
/// every flow's counts.
#[test]
fn many_calls_through_the_kernel_are_counted_exactly() {
    use nexrtc_test_support::turn::Relayed;

    let Some(r) = rig(|s| {
        s.relay_threads = Some(2);
        s.max_port = Some(51_099);
    }) else {
        return;
    };
    let echo = Echo::start(&r.peer);
    let mut calls: Vec<_> = (0..1000)
        .map(|i| turn_client(&r.client, &format!("many-{i}")))
        .collect();
    let mut bytes = 0u64;
    for round in 0..3usize {
        for (i, (turn, _)) in calls.iter_mut().enumerate() {
            let payload = vec![(i + round) as u8; 20 + (i + round) % 50];
            turn.send_channel_data(0x4000, &payload);
            match turn.recv_relayed() {
                Some(Relayed::Channel { channel, data }) => {
                    assert_eq!((channel, data), (0x4000, payload.clone()), "call {i}")
                }
                other => panic!("call {i}, round {round}: {other:?}"),
            }
            bytes += payload.len() as u64;
        }
    }
    drop(echo);
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!((xdp.to_peer, xdp.to_client), (3000, 3000), "{xdp:?}");
    usage_comes_to(&r.monitor, (bytes, bytes));
}

/// Allocate / release churn on one 5-tuple: forty times, the same client socket
/// allocates, binds the same channel, relays both ways in the kernel, and deletes — so
/// each new flow reuses the last one's keys in the kernel's tables, across the workers'
/// sweeps. Every packet is relayed, nothing after a deletion, and the tenant's bytes are
/// exact: no flow's counts are handed back twice.
#[test]
fn allocate_release_churn_on_one_five_tuple_is_counted_exactly() {
    use nexrtc_test_support::turn::{rest_credentials, Relayed, TurnClient};

    let Some(r) = rig(|s| s.relay_threads = Some(2)) else {
        return;
    };
    let peer_addr = addr("10.77.2.2:6000");
    let p = bound(&r.peer, peer_addr);
    // Short waits for what must not come (each cycle checks one).
    p.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (username, password) = rest_credentials(SECRET, "churn");
    let socket = r.client.run(|| UdpSocket::bind("10.77.1.2:0").unwrap());
    let mut turn = TurnClient::over_udp(socket, addr("10.77.1.1:3478"), &username, &password)
        .with_timeouts(Duration::from_millis(200), Duration::from_millis(800));
    let mut bytes = (0u64, 0u64);
    let mut packets = 0u64;
    for cycle in 0..40usize {
        let relayed = turn.allocate().relayed().expect("relayed address");
        assert_eq!(turn.channel_bind(0x4000, peer_addr).code(), 200);
        for i in 0..(1 + cycle % 5) {
            let payload = vec![cycle as u8; 10 + i];
            turn.send_channel_data(0x4000, &payload);
            assert_eq!(recv(&p), Some((payload.clone(), relayed)), "cycle {cycle}");
            let back = vec![!(cycle as u8); 5 + cycle % 7];
            p.send_to(&back, relayed).unwrap();
            match turn.recv_relayed() {
                Some(Relayed::Channel { channel, data }) => {
                    assert_eq!((channel, data), (0x4000, back.clone()))
                }
                other => panic!("cycle {cycle}: {other:?}"),
            }
            bytes.0 += payload.len() as u64;
            bytes.1 += back.len() as u64;
            packets += 1;
        }
        // Spread the cycles over several sweeps (one a second) and snapshots (250 ms).
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(turn.refresh(0).code(), 200);
        turn.send_channel_data(0x4000, b"after");
        assert_eq!(recv(&p), None, "cycle {cycle}: relayed after the deletion");
    }
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert_eq!((xdp.to_peer, xdp.to_client), (packets, packets), "{xdp:?}");
    usage_comes_to(&r.monitor, bytes);
}

/// coturn's `turnutils_uclient` (an independent TURN client) through the relay with
/// `--xdp` and two workers sharing the program's tables: every message comes back, and
/// the channels' data went through the kernel.
#[test]
fn uclient_relays_through_the_kernel_without_loss() {
    if require_tool("turnutils_uclient", "coturn").is_none() {
        return;
    }
    let Some(r) = rig(|s| s.relay_threads = Some(2)) else {
        return;
    };
    let echo = Echo::start(&r.peer);
    let out = Command::new("ip")
        .args(["netns", "exec", &r.client.0, "turnutils_uclient", "-c"])
        .args(["-W", SECRET, "-u", "uclient"])
        .args(["-e", "10.77.2.2", "-r", "6000", "-p", "3478"])
        .args(["-n", "200", "-m", "2", "-l", "120", "-z", "5"])
        .arg("10.77.1.1")
        .output()
        .unwrap();
    drop(echo);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("tot_send_msgs=400, tot_recv_msgs=400"),
        "{text}"
    );
    assert!(text.contains("Total lost packets 0 "), "{text}");
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    // uclient sends its first messages as it binds its channels; the rest are ChannelData
    // on bound channels, relayed in the kernel both ways.
    assert!(xdp.to_peer >= 300 && xdp.to_client >= 300, "{xdp:?}");
}

/// A UDP echo peer at 10.77.2.2:6000 in the peer namespace, for at most 60 s; stopped
/// when dropped.
struct Echo {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(peer: &Netns) -> Echo {
        use std::sync::atomic::{AtomicBool, Ordering};
        let socket = bound(peer, addr("10.77.2.2:6000"));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// webrtc-rs's TURN client (what Rust WebRTC applications relay with) through the relay
/// with `--xdp`: two clients, 200 messages each to an echo peer, stop-and-wait, every echo
/// back intact (none lost, or the wait times out); once a client's ChannelBind is done
/// (it sends its first messages as Send indications meanwhile), the kernel relays its
/// messages both ways.
#[test]
fn webrtc_rs_clients_relay_through_the_kernel_without_loss() {
    let Some(r) = rig(|_| {}) else {
        return;
    };
    let echo = Echo::start(&r.peer);
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| r.client.run(|| UdpSocket::bind("10.77.1.2:0").unwrap()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let calls: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, socket)| tokio::spawn(webrtc_rs_call(socket, i)))
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    });
    drop(echo);
    let xdp = r.monitor.xdp_outcomes().expect("attached");
    assert!(xdp.to_peer >= 300 && xdp.to_client >= 300, "{xdp:?}");
    drop(r.relay);
}

/// One webrtc-rs client's call: allocate, then 200 messages to the echo peer and back.
async fn webrtc_rs_call(socket: UdpSocket, i: usize) {
    use std::sync::Arc;
    use webrtc_turn::client::{Client, ClientConfig};
    use webrtc_util::Conn;

    socket.set_nonblocking(true).unwrap();
    let conn = tokio::net::UdpSocket::from_std(socket).unwrap();
    let (username, password) =
        nexrtc_test_support::turn::rest_credentials(SECRET, &format!("webrtc-{i}"));
    let client = Client::new(ClientConfig {
        stun_serv_addr: "10.77.1.1:3478".into(),
        turn_serv_addr: "10.77.1.1:3478".into(),
        username,
        password,
        realm: "xdp.test".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let relayed = client.allocate().await.unwrap();
    let peer: SocketAddr = "10.77.2.2:6000".parse().unwrap();
    let mut buf = vec![0u8; 2048];
    for n in 0..200usize {
        let mut payload = format!("client {i} message {n} ").into_bytes();
        payload.resize(payload.len() + (n * 13) % 200, b'a' + (n % 26) as u8);
        relayed.send_to(&payload, peer).await.unwrap();
        let (len, from) = tokio::time::timeout(Duration::from_secs(2), relayed.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("client {i}: message {n} lost"))
            .unwrap();
        assert_eq!(
            (from, &buf[..len]),
            (peer, &payload[..]),
            "client {i}, message {n}"
        );
        if n < 10 {
            // The client binds its channel in the background after the first send.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    relayed.close().await.unwrap();
    client.close().await.unwrap();
}

/// The flow tables are bounded (65,536 flows each way): once full, one more flow is
/// refused — it stays with userspace, its packets passed to the kernel — while the flows
/// installed keep being relayed.
#[test]
fn a_full_flow_table_refuses_the_next_flow_and_keeps_the_others() {
    if !can_run() {
        return;
    }
    let (client, relay, peer) = topology();
    let mut fast = relay.run(|| FastPath::attach(&["r0".into(), "r1".into()]).unwrap());
    let _receivers = receivers(&client, &peer);
    let flow = |port: u16, channel: u16| Flow {
        client: SocketAddr::new("10.77.1.2".parse().unwrap(), port),
        listen: addr("10.77.1.1:3478"),
        relay: SocketAddr::new("10.77.2.1".parse().unwrap(), 50_000 + (channel - 0x4000)),
        peer: addr("10.77.2.2:6000"),
        channel,
        expires: Instant::now() + Duration::from_secs(60),
    };
    // 16 client ports × 4,096 channels = 65,536 flows; a relayed port per channel and a
    // peer port per client port keep the peer-side keys distinct too.
    let mut installed = 0u32;
    for port in 40_000..40_016u16 {
        for channel in 0x4000..0x5000u16 {
            let mut f = flow(port, channel);
            f.peer.set_port(6_000 + (port - 40_000));
            fast.install(&f)
                .unwrap_or_else(|e| panic!("flow {installed}: {e}"));
            installed += 1;
        }
    }
    assert_eq!(installed, 65_536);
    let mut extra = flow(40_100, 0x4000);
    extra.relay.set_port(60_000);
    assert!(fast.install(&extra).is_err(), "a 65,537th flow was taken");

    // The refused flow's packets pass to the kernel; an installed one is relayed.
    let c = bound(&client, extra.client);
    let p = bound(&peer, addr("10.77.2.2:6000"));
    let listen = extra.listen;
    let before = fast.outcomes();
    c.send_to(&channel_data(0x4000, b"refused", 0), listen)
        .unwrap();
    assert_eq!(recv(&p), None);
    assert_eq!(fast.outcomes().no_flow, before.no_flow + 1);
    let kept = flow(40_000, 0x4000);
    let c0 = bound(&client, kept.client);
    c0.send_to(&channel_data(0x4000, b"kept", 0), listen)
        .unwrap();
    let relayed = kept.relay;
    assert_eq!(recv(&p), Some((b"kept".to_vec(), relayed)));

    // One batched read of the full table holds every flow, with what each relayed.
    let snapshot = fast.counts_reader().snapshot().expect("batched reads");
    for port in 40_000..40_016u16 {
        for channel in 0x4000..0x5000u16 {
            let mut f = flow(port, channel);
            f.peer.set_port(6_000 + (port - 40_000));
            let expect = if (port, channel) == (40_000, 0x4000) {
                FlowCounts {
                    to_peer_packets: 1,
                    to_peer_bytes: 4,
                    ..FlowCounts::default()
                }
            } else {
                FlowCounts::default()
            };
            assert_eq!(snapshot.counts(&f), Some(expect), "{port} {channel:#x}");
        }
    }
    assert_eq!(snapshot.counts(&extra), None, "the refused flow");
}
