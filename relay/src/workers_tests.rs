//! The relay as a whole on loopback: several workers on SO_REUSEPORT
//! listeners, host-wide quotas, and multiplexed relay sockets carrying
//! ChannelData both ways for many clients.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use turn_core::auth::rest_password;
use turn_core::stun::{
    self, attr, channel_data_header, long_term_key, Class, Message, MessageBuilder, Method,
    TransactionId,
};

use crate::{Relay, RelayConfig, Settings};

const REALM: &str = "workers.test";
const SECRET: &str = "s3cret";

/// A relay on free loopback ports (retried if another test took them first).
fn start(tweak: impl Fn(&mut Settings)) -> Relay {
    for _ in 0..20 {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let base = 20_000 + (port % 20_000);
        let mut s = Settings {
            realm: Some(REALM.into()),
            static_auth_secret: vec![SECRET.into()],
            listening_ip: vec!["127.0.0.1".parse().unwrap()],
            listening_port: Some(port),
            no_tcp: true,
            no_tls: true,
            allow_loopback_peers: true,
            min_port: Some(base),
            max_port: Some(base + 999),
            relay_threads: Some(2),
            ..Settings::default()
        };
        tweak(&mut s);
        let config = RelayConfig::build(s, [5; 32]).unwrap();
        if let Ok(relay) = Relay::start(&config) {
            return relay;
        }
    }
    panic!("no free ports for the relay");
}

struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    key: [u8; 16],
    nonce: String,
    id: u8,
}

impl Client {
    fn new(server: SocketAddr, user: &str) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let username = format!("{}:{user}", crate::control::unix_now() + 3600);
        let key = long_term_key(
            &username,
            REALM,
            &rest_password(SECRET.as_bytes(), &username),
        );
        Client {
            socket,
            server,
            username,
            key,
            nonce: String::new(),
            id: 0,
        }
    }

    fn request(&mut self, method: Method, f: impl Fn(&mut MessageBuilder)) -> Vec<u8> {
        self.id += 1;
        let mut b = MessageBuilder::new(method, Class::Request, TransactionId([self.id; 12]));
        f(&mut b);
        if !self.nonce.is_empty() {
            b.attribute(attr::USERNAME, self.username.as_bytes())
                .attribute(attr::REALM, REALM.as_bytes())
                .attribute(attr::NONCE, self.nonce.as_bytes())
                .message_integrity(&self.key);
        }
        self.socket.send_to(&b.finish(), self.server).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = self.socket.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn code(answer: &[u8]) -> u16 {
        let msg = Message::parse(answer).unwrap();
        msg.attribute(attr::ERROR_CODE)
            .map_or(200, |a| stun::decode_error_code(a.value).unwrap().0)
    }

    /// Allocate (after the 401 round trip): the answer's code and relayed address.
    fn allocate(&mut self) -> (u16, Option<SocketAddr>) {
        let transport = |b: &mut MessageBuilder| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        };
        if self.nonce.is_empty() {
            let answer = self.request(Method::ALLOCATE, transport);
            let msg = Message::parse(&answer).unwrap();
            assert_eq!(Client::code(&answer), 401);
            self.nonce = stun::decode_utf8(msg.attribute(attr::NONCE).unwrap().value)
                .unwrap()
                .to_owned();
        }
        let answer = self.request(Method::ALLOCATE, transport);
        let msg = Message::parse(&answer).unwrap();
        let relayed = msg
            .attribute(attr::XOR_RELAYED_ADDRESS)
            .map(|a| stun::decode_xor_address(a.value, &msg.transaction_id()).unwrap());
        (Client::code(&answer), relayed)
    }

    fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> u16 {
        let answer = self.request(Method::CHANNEL_BIND, |b| {
            b.attribute(
                attr::CHANNEL_NUMBER,
                &[(number >> 8) as u8, number as u8, 0, 0],
            )
            .xor_address(attr::XOR_PEER_ADDRESS, peer);
        });
        Client::code(&answer)
    }
}

#[test]
fn quotas_hold_across_workers() {
    let relay = start(|s| s.user_quota = Some(3));
    let server = relay.bound()[0].addr;
    // Six 5-tuples of one user: the kernel spreads them over both workers,
    // and still only three allocations are granted.
    let codes: Vec<u16> = (0..6)
        .map(|_| Client::new(server, "alice").allocate().0)
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 486).count(), 3, "{codes:?}");
    assert_eq!(relay.allocation_count(), 3);
}

#[test]
fn multiplexed_relay_sockets_carry_channel_data_both_ways() {
    let relay = start(|s| {
        s.multiplex_peer = true;
        s.multiplex_sockets = Some(1);
    });
    let server = relay.bound()[0].addr;
    let mut sessions = Vec::new();
    for i in 0..8u16 {
        let mut c = Client::new(server, &format!("user{i}"));
        let (code, relayed) = c.allocate();
        assert_eq!(code, 200);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(c.channel_bind(0x4000 + i, peer.local_addr().unwrap()), 200);
        sessions.push((c, peer, relayed.unwrap(), 0x4000 + i));
    }
    // One shared socket per worker: eight allocations on at most two ports.
    let mut ports: Vec<u16> = sessions.iter().map(|s| s.2.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(ports.len() <= 2, "{ports:?}");
    for (i, (c, peer, relayed, channel)) in sessions.iter().enumerate() {
        let mut cd = channel_data_header(*channel, 5).to_vec();
        cd.extend_from_slice(format!("to-p{i}").as_bytes());
        c.socket.send_to(&cd, c.server).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("to-p{i}").as_bytes());
        assert_eq!(
            from.port(),
            relayed.port(),
            "sent from the shared relayed port"
        );
        // The peer answers to the address it saw: routed by its own address
        // back to the one client that bound it.
        peer.send_to(format!("to-c{i}").as_bytes(), from).unwrap();
        let (n, _) = c.socket.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..4], &channel_data_header(*channel, 5));
        assert_eq!(&buf[4..n], format!("to-c{i}").as_bytes());
    }
    assert_eq!(relay.allocation_count(), 8);
}

/// A burst of ChannelData to one peer, and the peer's burst back, arrive
/// whole and in order through the queued, sorted and (where the kernel
/// allows) GSO-coalesced sends; the coalescing shows in the metrics.
#[test]
fn bursts_arrive_in_order_through_batched_and_coalesced_sends() {
    let relay = start(|_| {});
    let server = relay.bound()[0].addr;
    let mut c = Client::new(server, "burst");
    let (code, relayed) = c.allocate();
    assert_eq!(code, 200);
    let relayed = relayed.unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(c.channel_bind(0x4001, peer.local_addr().unwrap()), 200);
    let payload = |round: usize, i: usize| -> Vec<u8> {
        let mut p = vec![(i % 251) as u8; 300];
        p[..8].copy_from_slice(&((round * 1000 + i) as u64).to_be_bytes());
        p
    };
    let coalesced = || {
        relay
            .monitor()
            .render_metrics()
            .lines()
            .find_map(|l| l.strip_prefix("nexrtc_relay_udp_gso_coalesced_total "))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .expect("the coalescing counter is exported")
    };
    const BURST: usize = 32;
    // Bounded: a burst coalesces once the worker finds several datagrams
    // queued, which a few rounds make all but certain.
    for round in 0..40 {
        for i in 0..BURST {
            let mut cd = channel_data_header(0x4001, 300).to_vec();
            cd.extend_from_slice(&payload(round, i));
            c.socket.send_to(&cd, server).unwrap();
        }
        let mut buf = [0u8; 2048];
        for i in 0..BURST {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(from, relayed);
            assert_eq!(
                &buf[..n],
                &payload(round, i)[..],
                "round {round}, datagram {i}"
            );
        }
        for i in 0..BURST {
            peer.send_to(&payload(round, i), relayed).unwrap();
        }
        for i in 0..BURST {
            let (n, _) = c.socket.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..4], &channel_data_header(0x4001, 300));
            assert_eq!(
                &buf[4..n],
                &payload(round, i)[..],
                "round {round}, back {i}"
            );
        }
        if round >= 4 && coalesced() > 0 {
            break;
        }
    }
    if crate::worker::batch::gso_supported() {
        assert!(coalesced() > 0, "no burst left as one GSO send");
    }
}
