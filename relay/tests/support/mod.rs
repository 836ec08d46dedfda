//! A relay on loopback and a minimal TURN client for the relay's own
//! integration tests.
#![allow(dead_code)] // each test binary uses its own part

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use turn_core::auth::rest_password;
use turn_core::stun::{
    self, attr, long_term_key, Class, Message, MessageBuilder, Method, TransactionId,
};

use nexrtc_relay::{Relay, RelayConfig, Settings};

pub const REALM: &str = "workers.test";
pub const SECRET: &str = "s3cret";

/// A counter of the relay's `/metrics` text, summed over its labels when
/// `labels` is empty, else the one line with exactly these labels.
pub fn metric(relay: &Relay, name: &str, labels: &str) -> u64 {
    let prefix = format!("{name}{labels} ");
    relay
        .monitor()
        .render_metrics()
        .lines()
        .filter_map(|l| {
            if labels.is_empty() {
                let rest = l.strip_prefix(name)?;
                let rest = rest
                    .strip_prefix('{')
                    .map_or(rest, |r| r.split_once("} ").map_or(r, |(_, v)| v));
                rest.trim().parse::<u64>().ok()
            } else {
                l.strip_prefix(&prefix)?.trim().parse::<u64>().ok()
            }
        })
        .sum()
}

/// A relay on free loopback ports (retried if another test took them first).
pub fn start(tweak: impl Fn(&mut Settings)) -> Relay {
    start_with(tweak)
}

/// [`start`], where `tweak` may also change the listening address and ports.
pub fn start_with(tweak: impl Fn(&mut Settings)) -> Relay {
    for _ in 0..20 {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        let port = probe.local_addr().expect("local address").port();
        drop(probe);
        let base = 20_000 + (port % 20_000);
        let mut s = Settings {
            realm: Some(REALM.into()),
            static_auth_secret: vec![SECRET.into()],
            listening_ip: vec!["127.0.0.1".parse().expect("IP")],
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
        let config = RelayConfig::build(s, [5; 32]).expect("test relay config");
        if let Ok(relay) = Relay::start(&config) {
            return relay;
        }
    }
    panic!("no free ports for the relay");
}

pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    username: String,
    key: [u8; 16],
    nonce: String,
    id: u8,
}

impl Client {
    pub fn new(server: SocketAddr, user: &str) -> Client {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        Client::with_username(server, &format!("{}:{user}", now + 3600))
    }

    /// A client with this whole TURN REST username (`<expiry>:<user>`).
    pub fn with_username(server: SocketAddr, username: &str) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("client socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let username = username.to_owned();
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

    pub fn request(&mut self, method: Method, f: impl Fn(&mut MessageBuilder)) -> Vec<u8> {
        self.id += 1;
        let mut b = MessageBuilder::new(method, Class::Request, TransactionId([self.id; 12]));
        f(&mut b);
        if !self.nonce.is_empty() {
            b.long_term_credentials(&self.username, REALM, self.nonce.as_bytes(), &self.key);
        }
        self.socket
            .send_to(&b.finish(), self.server)
            .expect("send to the relay");
        let mut buf = [0u8; 2048];
        let (n, _) = self
            .socket
            .recv_from(&mut buf)
            .expect("answer from the relay");
        buf[..n].to_vec()
    }

    pub fn code(answer: &[u8]) -> u16 {
        let msg = Message::parse(answer).expect("STUN answer");
        msg.attribute(attr::ERROR_CODE).map_or(200, |a| {
            stun::decode_error_code(a.value).expect("ERROR-CODE").0
        })
    }

    /// Allocate (after the 401 round trip): the answer's code and relayed address.
    pub fn allocate(&mut self) -> (u16, Option<SocketAddr>) {
        let transport = |b: &mut MessageBuilder| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        };
        if self.nonce.is_empty() {
            let answer = self.request(Method::ALLOCATE, transport);
            let msg = Message::parse(&answer).expect("STUN answer");
            assert_eq!(Client::code(&answer), 401);
            self.nonce =
                stun::decode_utf8(msg.attribute(attr::NONCE).expect("NONCE in the 401").value)
                    .expect("UTF-8 NONCE")
                    .to_owned();
        }
        let answer = self.request(Method::ALLOCATE, transport);
        let msg = Message::parse(&answer).expect("STUN answer");
        let relayed = msg.attribute(attr::XOR_RELAYED_ADDRESS).map(|a| {
            stun::decode_xor_address(a.value, &msg.transaction_id()).expect("XOR-RELAYED-ADDRESS")
        });
        (Client::code(&answer), relayed)
    }

    /// Refresh with `lifetime` seconds (0 deletes the allocation): the code.
    pub fn refresh(&mut self, lifetime: u32) -> u16 {
        let answer = self.request(Method::REFRESH, |b| {
            b.u32(attr::LIFETIME, lifetime);
        });
        Client::code(&answer)
    }

    /// The TURN REST username (`<expiry>:<user>`).
    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> u16 {
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
