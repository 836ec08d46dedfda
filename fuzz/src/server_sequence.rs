//! Runs an arbitrary byte string as a sequence of server inputs: raw client
//! packets, correctly signed requests with arbitrary parameters, ChannelData,
//! peer datagrams, time jumps, closed connections, secret rotation and drain.
//! Shared by the `server_sequence` fuzz target and turn-core's corpus replay
//! test (`turn-core/tests/fuzz_corpus_sequence.rs`), and
//! checks invariants a shell relies on after every step.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turn_core::auth::rest_password;
use turn_core::stun::{
    self, attr, channel_data_header, long_term_key, Class, Message, MessageBuilder, Method,
    TransactionId,
};
use turn_core::{
    BindFailure, ClientAction, ClientSocket, Command, Config, Credentials, Now, PeerAction,
    RelayBinding, RelayHandle, Server, Transport,
};

const REALM: &str = "fuzz";

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn credentials(secret: &[u8]) -> Arc<Credentials> {
    let mut c = Credentials::new();
    let _ = c.insert_tenant("t", vec![secret.to_vec()]);
    c.set_default_tenant("t");
    Arc::new(c)
}

/// What a run reached, so a corpus can be checked to cover the data path.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reached {
    pub allocations: usize,
    pub forwards: usize,
    pub to_client: usize,
}

/// Runs `data`; panics only if the server breaks an invariant (or panics itself).
pub fn run(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let mut input = Bytes(data);
    let t0 = Instant::now();
    let mut now = Now {
        mono: t0,
        unix_secs: 1_800_000_000,
    };
    let mut config = Config::new(REALM, [1; 32]);
    config.quotas.user_allocations = 3;
    config.quotas.permissions_per_allocation = 4;
    // Inputs of even length cap bandwidth (no flow is then offered to the shell), odd
    // ones do not (decided without reading a byte, so the corpus reads as before).
    config.quotas.allocation_bytes_per_sec = match data.len() % 2 {
        0 => 10_000,
        _ => 0,
    };
    config.fast_path = true;
    config.peer_filter.allow_loopback(true);
    let mut server = Server::new(config, credentials(b"secret"), t0);
    let clients = [
        (Transport::Udp, "127.0.0.1:1001"),
        (Transport::Udp, "127.0.0.2:1002"),
        (Transport::Tcp, "127.0.0.1:1003"),
        (Transport::Tls, "[::1]:1004"),
    ]
    .map(|(transport, remote)| ClientSocket {
        transport,
        remote: remote.parse().unwrap_or_else(|_| unreachable!()),
        local: "127.0.0.1:3478".parse().unwrap_or_else(|_| unreachable!()),
    });
    let peers: [SocketAddr; 3] = ["127.0.0.9:9", "8.8.8.8:53", "10.0.0.1:1"]
        .map(|p| p.parse().unwrap_or_else(|_| unreachable!()));
    let username = format!("{}:user", now.unix_secs + 3600);
    let key = long_term_key(&username, REALM, &rest_password(b"secret", &username));
    let mut nonce = String::new();
    let mut bound: HashSet<RelayHandle> = HashSet::new();
    // Flows the core offers now, as a shell would hold them.
    let mut offered = std::collections::HashMap::new();
    let mut next_handle = 0u32;
    let mut txid = 0u8;
    let mut buf = Vec::with_capacity(2048);

    while let Some(op) = input.byte() {
        let who = clients[usize::from(input.byte().unwrap_or(0)) % clients.len()];
        match op % 9 {
            0 => {
                let len = usize::from(input.byte().unwrap_or(0)) * 2;
                let packet = input.take(len).to_vec();
                reached.forwards +=
                    check_forward(server.handle_client(who, &packet, now), packet.len());
            }
            1 | 2 => {
                txid = txid.wrapping_add(1);
                let method = [
                    Method::ALLOCATE,
                    Method::REFRESH,
                    Method::CREATE_PERMISSION,
                    Method::CHANNEL_BIND,
                    Method::BINDING,
                ][usize::from(input.byte().unwrap_or(0)) % 5];
                let arg = input.byte().unwrap_or(0);
                let peer = peers[usize::from(arg) % peers.len()];
                let mut b = MessageBuilder::new(method, Class::Request, TransactionId([txid; 12]));
                match method {
                    Method::ALLOCATE => {
                        b.attribute(attr::REQUESTED_TRANSPORT, &[17 + (arg & 1), 0, 0, 0]);
                        if arg & 2 != 0 {
                            b.attribute(attr::EVEN_PORT, &[arg & 0x80]);
                        }
                    }
                    Method::REFRESH => {
                        b.u32(attr::LIFETIME, u32::from(arg) * 30);
                    }
                    Method::CREATE_PERMISSION => {
                        b.xor_address(attr::XOR_PEER_ADDRESS, peer);
                    }
                    Method::CHANNEL_BIND => {
                        let number = 0x3FF0u16 + u16::from(arg % 32);
                        let mut v = [0u8; 4];
                        v[..2].copy_from_slice(&number.to_be_bytes());
                        b.attribute(attr::CHANNEL_NUMBER, &v)
                            .xor_address(attr::XOR_PEER_ADDRESS, peer);
                    }
                    _ => {}
                }
                b.attribute(attr::USERNAME, username.as_bytes())
                    .attribute(attr::REALM, REALM.as_bytes())
                    .attribute(attr::NONCE, nonce.as_bytes());
                if op % 9 == 1 {
                    b.message_integrity(&key);
                } else {
                    b.message_integrity_sha256(&key).fingerprint();
                }
                let mut packet = b.finish();
                if arg & 0x40 != 0 {
                    // Corrupt one byte of an otherwise valid request.
                    let at = usize::from(input.byte().unwrap_or(0)) % packet.len();
                    packet[at] ^= input.byte().unwrap_or(1) | 1;
                }
                reached.forwards +=
                    check_forward(server.handle_client(who, &packet, now), packet.len());
            }
            3 => {
                let channel = 0x4000u16 + u16::from(input.byte().unwrap_or(0) % 8);
                let len = usize::from(input.byte().unwrap_or(0));
                buf.clear();
                buf.extend_from_slice(&channel_data_header(channel, len as u16));
                buf.extend_from_slice(input.take(len));
                reached.forwards += check_forward(server.handle_client(who, &buf, now), buf.len());
            }
            4 => {
                let handle = RelayHandle(u32::from(input.byte().unwrap_or(0)) % (next_handle + 1));
                let peer = peers[usize::from(input.byte().unwrap_or(0)) % peers.len()];
                let len = usize::from(input.byte().unwrap_or(0));
                let payload = input.take(len).to_vec();
                match server.handle_peer(handle, peer, &payload, now) {
                    PeerAction::ToClient { header, .. } => {
                        assert!(bound.contains(&handle), "data from an unbound relay");
                        let declared = u16::from_be_bytes([header[2], header[3]]);
                        assert_eq!(usize::from(declared), payload.len());
                        reached.to_client += 1;
                    }
                    PeerAction::Done => {}
                }
            }
            5 => {
                let secs = u64::from(input.byte().unwrap_or(0)) * 5;
                now.mono += Duration::from_secs(secs);
                now.unix_secs += secs;
                server.handle_timeout(now);
            }
            6 => server.client_closed(who, now),
            7 => match input.byte().unwrap_or(0) % 4 {
                0 => server.start_drain(None),
                1 => server.set_credentials(credentials(b"other")),
                2 => server.set_credentials(credentials(b"secret")),
                _ => server.revoke(&username, now.unix_secs + 10, now.mono),
            },
            _ => {
                if let Some(t) = server.poll_timeout() {
                    assert!(t >= t0, "timeouts are in the future of the start");
                }
            }
        }
        // Execute effects as a shell would, checking what a shell relies on.
        let fail_binds = input.byte().unwrap_or(0) == 0xFF;
        while let Some(cmd) = server.poll_command() {
            match cmd {
                Command::BindRelay { request, .. } => {
                    let result = if fail_binds {
                        Err(BindFailure::NoPorts)
                    } else {
                        let handle = RelayHandle(next_handle);
                        next_handle += 1;
                        bound.insert(handle);
                        Ok(RelayBinding {
                            handle,
                            addr: SocketAddr::from(([127, 0, 0, 1], 50_000 + handle.0 as u16)),
                            reservation: None,
                            shared: false,
                        })
                    };
                    server.relay_bound(request, result, now);
                }
                Command::FreeRelay { relay } => {
                    assert!(
                        bound.remove(&relay),
                        "freed a relay twice or one never bound"
                    );
                }
                Command::FlowUp(flow) => {
                    assert!(flow.expires > now.mono, "a flow offered already ended");
                    assert!(bound.contains(&flow.relay), "a flow on a relay never bound");
                    // As the shell's tables: an offer again only moves a flow's end,
                    // and no two flows share a peer side.
                    let key = (flow.client, flow.channel);
                    let side = (flow.relay, flow.peer);
                    if let Some((old, _)) = offered.get(&key) {
                        assert_eq!(*old, side, "an offer replaced a flow's peer");
                    }
                    assert!(
                        !offered.iter().any(|(k, (s, _))| *k != key && *s == side),
                        "two offered flows share a peer side"
                    );
                    offered.insert(key, (side, flow.expires));
                }
                Command::FlowDown { client, channel } => {
                    assert!(
                        offered.remove(&(client, channel)).is_some(),
                        "withdrew a flow never offered, or twice"
                    );
                }
            }
        }
        assert_eq!(
            offered.len(),
            server.offered_flows(),
            "the shell's flows and the core's"
        );
        while let Some(t) = server.poll_transmit() {
            let msg = Message::parse(&t.data).expect("every answer is a valid STUN message");
            if let Some(n) = msg.attribute(attr::NONCE) {
                if let Ok(n) = stun::decode_utf8(n.value) {
                    nonce = n.to_owned();
                }
            }
        }
        assert!(
            server.allocation_count() <= bound.len(),
            "an allocation without a relay"
        );
        reached.allocations = reached.allocations.max(server.allocation_count());
    }
    reached
}

fn check_forward(action: ClientAction, len: usize) -> usize {
    match action {
        ClientAction::Forward { payload, .. } => {
            assert!(
                payload.start <= payload.end && payload.end <= len,
                "forward slice out of bounds"
            );
            1
        }
        ClientAction::Done => 0,
    }
}
