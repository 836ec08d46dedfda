//! The bench's TURN client messages, fed to our own sans-IO core: the 401
//! round trip, Allocate, CreatePermission, ChannelBind, ChannelData and
//! Refresh 0 are all understood the way the load generator expects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use turn_core::stun::{Message, TransactionId};
use turn_core::{
    ClientAction, ClientSocket, Command, Config, Credentials, Now, RelayBinding, RelayHandle,
    Server, Transport,
};
use turnbench::client::{
    allocate, channel_bind, create_permission, parse_answer, refresh_zero, Answer, Auth, Creds,
};
use turnbench::probe::{channel_header, CHANNEL};

const SECRET: &str = "bench-secret";

struct Core {
    server: Server,
    now: Now,
    freed: Vec<RelayHandle>,
}

impl Core {
    fn new() -> Core {
        let mut config = Config::new("bench", [7; 32]);
        config.peer_filter.allow_loopback(true);
        let mut creds = Credentials::new();
        creds
            .insert_tenant("default", vec![SECRET.as_bytes().to_vec()])
            .expect("bench test");
        creds.set_default_tenant("default");
        let mono = Instant::now();
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("bench test")
            .as_secs();
        Core {
            server: Server::new(config, Arc::new(creds), mono),
            now: Now { mono, unix_secs },
            freed: Vec::new(),
        }
    }

    /// One request in, the single answer out (relay sockets bound on demand).
    fn ask(&mut self, from: ClientSocket, packet: &[u8]) -> Vec<u8> {
        let action = self.server.handle_client(from, packet, self.now);
        assert_eq!(action, ClientAction::Done);
        while let Some(cmd) = self.server.poll_command() {
            match cmd {
                Command::BindRelay { request, .. } => {
                    let binding = RelayBinding {
                        handle: RelayHandle(1),
                        addr: "127.0.0.1:50001".parse().expect("bench test"),
                        reservation: None,
                        shared: false,
                    };
                    self.server.relay_bound(request, Ok(binding), self.now);
                }
                Command::FreeRelay { relay } => self.freed.push(relay),
                Command::FlowUp(_) | Command::FlowDown { .. } => {}
            }
        }
        let t = self.server.poll_transmit().expect("an answer");
        assert!(self.server.poll_transmit().is_none(), "one answer only");
        t.data
    }
}

fn client() -> ClientSocket {
    ClientSocket {
        transport: Transport::Udp,
        remote: "127.1.0.1:40000".parse().expect("bench test"),
        local: "127.0.0.1:3478".parse().expect("bench test"),
    }
}

fn txid(n: u8) -> TransactionId {
    TransactionId([n; 12])
}

#[test]
fn allocate_bind_relay_and_release_against_the_core() {
    let mut core = Core::new();
    let creds = Creds::rest(SECRET, "bench", 3600);
    assert!(creds.username.ends_with(":bench"));

    // 1. Unauthenticated Allocate: 401 with REALM and NONCE (RFC 8656 §7.2).
    let answer = core.ask(client(), &allocate(txid(1), &creds, None));
    let (t, a) = parse_answer(&answer).expect("parses");
    assert_eq!(t, txid(1));
    let Answer::Challenge { realm, nonce } = a else {
        panic!("expected a 401")
    };
    assert_eq!(realm, "bench");
    let key = turn_core::stun::long_term_key(&creds.username, &realm, &creds.password);
    let auth = Auth { realm, nonce, key };

    // 2. Authenticated Allocate: success with the relayed address.
    let answer = core.ask(client(), &allocate(txid(2), &creds, Some(&auth)));
    assert!(Message::parse(&answer)
        .expect("bench test")
        .verify_integrity(&key));
    match parse_answer(&answer) {
        Some((t, Answer::Success { relayed })) => {
            assert_eq!(t, txid(2));
            assert_eq!(
                relayed,
                Some("127.0.0.1:50001".parse().expect("bench test"))
            );
        }
        _ => panic!("Allocate refused"),
    }

    // 3. CreatePermission and ChannelBind to the peer.
    let peer: SocketAddr = "127.0.0.2:6000".parse().expect("bench test");
    let answer = core.ask(client(), &create_permission(txid(3), peer, &creds, &auth));
    assert!(matches!(
        parse_answer(&answer),
        Some((_, Answer::Success { .. }))
    ));
    let answer = core.ask(
        client(),
        &channel_bind(txid(4), CHANNEL, peer, &creds, &auth),
    );
    assert!(matches!(
        parse_answer(&answer),
        Some((_, Answer::Success { .. }))
    ));

    // 4. A ChannelData packet as the load generator sends it goes to the peer.
    let mut pkt = channel_header(CHANNEL, 100).to_vec();
    pkt.extend_from_slice(&[0xAB; 100]);
    match core.server.handle_client(client(), &pkt, core.now) {
        ClientAction::Forward {
            relay,
            peer: to,
            payload,
        } => {
            assert_eq!(relay, RelayHandle(1));
            assert_eq!(to, peer);
            assert_eq!(payload, 4..104);
        }
        other => panic!("not forwarded: {other:?}"),
    }

    // 5. Refresh with LIFETIME 0 deletes the allocation and frees its socket.
    let answer = core.ask(client(), &refresh_zero(txid(5), &creds, &auth));
    assert!(matches!(
        parse_answer(&answer),
        Some((_, Answer::Success { .. }))
    ));
    assert_eq!(core.freed, vec![RelayHandle(1)]);
    assert!(!core.server.has_allocation(&client()));
}

#[test]
fn wrong_secret_is_a_second_challenge_and_garbage_is_no_answer() {
    let mut core = Core::new();
    let creds = Creds::rest("not-the-secret", "bench", 3600);
    let answer = core.ask(client(), &allocate(txid(1), &creds, None));
    let Some((_, Answer::Challenge { realm, nonce })) = parse_answer(&answer) else {
        panic!("expected a 401")
    };
    let key = turn_core::stun::long_term_key(&creds.username, &realm, &creds.password);
    let auth = Auth { realm, nonce, key };
    let answer = core.ask(client(), &allocate(txid(2), &creds, Some(&auth)));
    assert!(matches!(
        parse_answer(&answer),
        Some((_, Answer::Challenge { .. }))
    ));
    assert!(parse_answer(&[0u8; 7]).is_none());
    assert!(parse_answer(&channel_header(CHANNEL, 4)).is_none());
}
