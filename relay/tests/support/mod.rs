//! A relay on loopback, and clients of it (the shared test TURN client with
//! this relay's realm and secret), for the relay's own integration tests.
#![allow(dead_code, unused_imports)] // each test binary uses its own part

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nexrtc_test_support::turn::rest_credentials;
pub use nexrtc_test_support::turn::{Relayed, TurnClient};
use turn_core::auth::rest_password;

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

/// How long a client of these tests waits for an answer (it does not retransmit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the test relay for `user`, with REST credentials valid for an hour.
pub fn client(server: SocketAddr, user: &str) -> TurnClient {
    let (username, _) = rest_credentials(SECRET, user);
    client_as(server, &username)
}

/// A client of the test relay with this whole TURN REST username (`<expiry>:<user>`).
pub fn client_as(server: SocketAddr, username: &str) -> TurnClient {
    let password = rest_password(SECRET.as_bytes(), username);
    TurnClient::udp(server, username, &password).with_timeouts(ANSWER_TIMEOUT, ANSWER_TIMEOUT)
}

/// A client of `user` with an allocation, and a peer (a UDP socket on 127.0.0.1
/// that waits up to 10 s) bound to `channel`: the client, the peer and the
/// relayed address.
pub fn channel_session(
    server: SocketAddr,
    user: &str,
    channel: u16,
) -> (TurnClient, UdpSocket, SocketAddr) {
    let mut c = client(server, user);
    let allocated = c.allocate();
    assert_eq!(allocated.code(), 200, "{user}: {allocated:?}");
    let relayed = allocated.relayed().expect("XOR-RELAYED-ADDRESS");
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    peer.set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("read timeout");
    let bound = c.channel_bind(channel, peer.local_addr().expect("peer address"));
    assert_eq!(bound.code(), 200, "{user}: {bound:?}");
    (c, peer, relayed)
}
