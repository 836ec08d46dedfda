//! The TURN core driven input by input with virtual time: every test reads as
//! "this packet in, these effects out", with the RFC section it checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turn_core::auth::rest_password;
use turn_core::stats::{AuthFailure, DropReason};
use turn_core::stun::{
    self, attr, channel_data_header, long_term_key, Class, Message, MessageBuilder, Method,
    TransactionId,
};
use turn_core::{
    ClientAction, ClientSocket, Command, Config, Credentials, Now, PeerAction, PortRequest,
    RelayBinding, RelayHandle, Server, Transport,
};

const REALM: &str = "nexrtc.test";
const SECRET: &[u8] = b"s3cret";
const T0_UNIX: u64 = 1_800_000_000;
const RELAY_ADDR: &str = "192.0.2.10:50000";
const PEER: &str = "1.2.3.4:5000";

struct Harness {
    server: Server,
    now: Now,
    /// The relay IP's held ports, kept as a shell's port pool does.
    held: Arc<turn_core::HeldPorts>,
    next_handle: u32,
    freed: Vec<RelayHandle>,
    bind_requests: Vec<PortRequest>,
    /// Transaction ids for `allocate`: a client retrying uses a new one.
    next_txid: u8,
    /// Flows the core offers the shell now (`Command::FlowUp` minus `FlowDown`).
    flows: std::collections::HashMap<(ClientSocket, u16), turn_core::FastFlow>,
    /// `Command::FlowUp`s seen.
    offers: usize,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn client(port: u16) -> ClientSocket {
    ClientSocket {
        transport: Transport::Udp,
        remote: addr(&format!("198.51.100.7:{port}")),
        local: addr("192.0.2.10:3478"),
    }
}

fn credentials(secrets: &[&[u8]]) -> Arc<Credentials> {
    let mut c = Credentials::new();
    c.insert_tenant("default", secrets.iter().map(|s| s.to_vec()).collect())
        .expect("tenant");
    c.insert_tenant("acme", vec![b"acme-secret".to_vec()])
        .expect("tenant");
    c.set_default_tenant("default");
    Arc::new(c)
}

fn txid(n: u8) -> TransactionId {
    TransactionId([n; 12])
}

/// A client's view of its credentials.
#[derive(Clone)]
struct Creds {
    username: String,
    key: [u8; 16],
    nonce: String,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::new(REALM, [42; 32]);
        let relay_ip = addr(RELAY_ADDR).ip();
        let held = config.peer_filter.relay_ip(relay_ip, relay_ip);
        tweak(&mut config);
        let mono = Instant::now();
        Harness {
            server: Server::new(config, credentials(&[SECRET]), mono),
            now: Now {
                mono,
                unix_secs: T0_UNIX,
            },
            held,
            next_handle: 0,
            freed: Vec::new(),
            bind_requests: Vec::new(),
            next_txid: 100,
            flows: Default::default(),
            offers: 0,
        }
    }

    /// Moves the clock only, as if the sweep had not come yet.
    fn skip(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.unix_secs += d.as_secs();
    }

    fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.unix_secs += d.as_secs();
        self.server.handle_timeout(self.now);
        self.run_commands();
    }

    /// Executes commands as a shell would: binds relay sockets with
    /// consecutive handles and addresses.
    fn run_commands(&mut self) {
        while let Some(cmd) = self.server.poll_command() {
            match cmd {
                Command::BindRelay { request, port, .. } => {
                    self.bind_requests.push(port);
                    let handle = RelayHandle(self.next_handle);
                    let mut relay = addr(RELAY_ADDR);
                    relay.set_port(50000 + self.next_handle as u16);
                    self.held.hold(relay.port());
                    self.next_handle += 1;
                    let binding = RelayBinding {
                        handle,
                        addr: relay,
                        reservation: None,
                        shared: false,
                    };
                    self.server.relay_bound(request, Ok(binding), self.now);
                }
                Command::FreeRelay { relay } => {
                    self.held.release(50000 + relay.0 as u16);
                    self.freed.push(relay);
                }
                Command::FlowUp(flow) => {
                    // As the shell's tables: an offer again is a new end for the same
                    // flow, and no two flows share a peer side.
                    let key = (flow.client, flow.channel);
                    if let Some(old) = self.flows.get(&key) {
                        assert_eq!(
                            (old.peer, old.relay),
                            (flow.peer, flow.relay),
                            "an offer replaced a flow's peer without withdrawing it"
                        );
                    }
                    let shared = (self.flows.iter())
                        .any(|(k, f)| *k != key && (f.relay, f.peer) == (flow.relay, flow.peer));
                    assert!(!shared, "two offered flows share a peer side: {flow:?}");
                    self.flows.insert(key, flow);
                    self.offers += 1;
                }
                Command::FlowDown { client, channel } => {
                    let gone = self.flows.remove(&(client, channel));
                    assert!(gone.is_some(), "withdrew a flow never offered");
                }
            }
        }
    }

    fn input(&mut self, from: ClientSocket, packet: &[u8]) -> (ClientAction, Vec<Vec<u8>>) {
        let action = self.server.handle_client(from, packet, self.now);
        self.run_commands();
        let mut out = Vec::new();
        while let Some(t) = self.server.poll_transmit() {
            assert_eq!(t.to, from, "answers go back to the 5-tuple that asked");
            out.push(t.data);
        }
        (action, out)
    }

    /// Sends `packet` and returns the single answer.
    fn ask(&mut self, from: ClientSocket, packet: &[u8]) -> Vec<u8> {
        let (action, mut out) = self.input(from, packet);
        assert_eq!(action, ClientAction::Done);
        assert_eq!(out.len(), 1, "expected exactly one answer");
        out.remove(0)
    }

    /// The 401 round trip, as a client does it: returns usable credentials.
    fn login(&mut self, from: ClientSocket, username: &str, secret: &[u8]) -> Creds {
        let req = request(Method::ALLOCATE, txid(200), |b| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let answer = self.ask(from, &req);
        let msg = Message::parse(&answer).expect("401 parses");
        assert_eq!(error_code(&msg), Some(401));
        assert_eq!(text(&msg, attr::REALM).as_deref(), Some(REALM));
        let nonce = text(&msg, attr::NONCE).expect("nonce");
        let password = rest_password(secret, username);
        Creds {
            username: username.to_owned(),
            key: long_term_key(username, REALM, &password),
            nonce,
        }
    }

    /// Allocate with credentials; returns the relayed address.
    fn allocate(&mut self, from: ClientSocket, creds: &Creds) -> SocketAddr {
        self.next_txid += 1;
        let answer = self.ask(from, &allocate_request(txid(self.next_txid), creds));
        let msg = Message::parse(&answer).expect("answer parses");
        assert_eq!(msg.class(), Class::Success, "{:?}", error_code(&msg));
        assert!(
            msg.verify_integrity(&creds.key),
            "answer signed with the client's key"
        );
        let relayed = msg.attribute(attr::XOR_RELAYED_ADDRESS).expect("relayed");
        stun::decode_xor_address(relayed.value, &msg.transaction_id()).expect("address")
    }
}

fn valid_username(user: &str) -> String {
    format!("{}:{user}", T0_UNIX + 3600)
}

fn request(method: Method, id: TransactionId, f: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
    let mut b = MessageBuilder::new(method, Class::Request, id);
    f(&mut b);
    b.finish()
}

fn signed(
    method: Method,
    id: TransactionId,
    creds: &Creds,
    f: impl FnOnce(&mut MessageBuilder),
) -> Vec<u8> {
    let mut b = MessageBuilder::new(method, Class::Request, id);
    f(&mut b);
    b.long_term_credentials(&creds.username, REALM, creds.nonce.as_bytes(), &creds.key)
        .fingerprint();
    b.finish()
}

fn allocate_request(id: TransactionId, creds: &Creds) -> Vec<u8> {
    signed(Method::ALLOCATE, id, creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    })
}

fn error_code(msg: &Message<'_>) -> Option<u16> {
    let a = msg.attribute(attr::ERROR_CODE)?;
    stun::decode_error_code(a.value).ok().map(|(c, _)| c)
}

fn text(msg: &Message<'_>, typ: u16) -> Option<String> {
    let a = msg.attribute(typ)?;
    stun::decode_utf8(a.value).ok().map(str::to_owned)
}

fn answer_code(answer: &[u8]) -> Option<u16> {
    error_code(&Message::parse(answer).expect("answer parses"))
}

fn permission(h: &mut Harness, from: ClientSocket, creds: &Creds, peer: &str, id: u8) -> Vec<u8> {
    let req = signed(Method::CREATE_PERMISSION, txid(id), creds, |b| {
        b.xor_address(attr::XOR_PEER_ADDRESS, addr(peer));
    });
    h.ask(from, &req)
}

fn channel_bind(
    h: &mut Harness,
    from: ClientSocket,
    creds: &Creds,
    number: u16,
    peer: &str,
    id: u8,
) -> Vec<u8> {
    let req = signed(Method::CHANNEL_BIND, txid(id), creds, |b| {
        let mut v = [0u8; 4];
        v[..2].copy_from_slice(&number.to_be_bytes());
        b.attribute(attr::CHANNEL_NUMBER, &v)
            .xor_address(attr::XOR_PEER_ADDRESS, addr(peer));
    });
    h.ask(from, &req)
}

/// A client with an allocation, for the tests that start there.
fn allocated(h: &mut Harness, port: u16) -> (ClientSocket, Creds, SocketAddr) {
    let c = client(port);
    let creds = h.login(c, &valid_username(&format!("user{port}")), SECRET);
    let relayed = h.allocate(c, &creds);
    (c, creds, relayed)
}

#[test]
fn binding_answers_with_xor_mapped_address() {
    // RFC 8489 §6.3.1.1 and §14.2.
    let mut h = Harness::new();
    let c = client(4000);
    let answer = h.ask(c, &request(Method::BINDING, txid(9), |_| {}));
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::BINDING, Class::Success)
    );
    assert_eq!(msg.transaction_id(), txid(9));
    let mapped = msg.attribute(attr::XOR_MAPPED_ADDRESS).expect("mapped");
    assert_eq!(
        stun::decode_xor_address(mapped.value, &txid(9)).expect("address"),
        c.remote
    );
}

#[test]
fn allocate_challenge_then_success() {
    // RFC 8656 §7.2 with RFC 8489 §9.2.4's 401 round trip.
    let mut h = Harness::new();
    let c = client(4001);
    let creds = h.login(c, &valid_username("alice"), SECRET);
    let answer = h.ask(c, &allocate_request(txid(1), &creds));
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(msg.class(), Class::Success);
    assert!(msg.verify_integrity(&creds.key));
    assert_eq!(msg.fingerprint_ok(), Some(true));
    let lifetime = msg.attribute(attr::LIFETIME).expect("lifetime");
    assert_eq!(stun::decode_u32(lifetime.value).expect("u32"), 600);
    let mapped = msg.attribute(attr::XOR_MAPPED_ADDRESS).expect("mapped");
    assert_eq!(
        stun::decode_xor_address(mapped.value, &txid(1)).expect("addr"),
        c.remote
    );
    assert_eq!(h.server.allocation_count(), 1);
    let tenant = h.server.stats().tenant("default");
    assert_eq!(tenant.transport(Transport::Udp).allocations_active.get(), 1);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer_not_437() {
    // RFC 8656 §7.2: a retransmission is answered again; a new Allocate on the
    // same 5-tuple is 437 Allocation Mismatch.
    let mut h = Harness::new();
    let c = client(4002);
    let creds = h.login(c, &valid_username("bob"), SECRET);
    let first = h.ask(c, &allocate_request(txid(1), &creds));
    let again = h.ask(c, &allocate_request(txid(1), &creds));
    assert_eq!(first, again, "byte-for-byte the same answer");
    assert_eq!(h.server.allocation_count(), 1);
    let other = h.ask(c, &allocate_request(txid(2), &creds));
    assert_eq!(answer_code(&other), Some(437));
    // After the retransmission window the answer is forgotten.
    h.advance(Duration::from_secs(41));
    let late = h.ask(c, &allocate_request(txid(1), &creds));
    assert_eq!(answer_code(&late), Some(437));
}

#[test]
fn wrong_password_expired_username_and_unknown_tenant_are_401() {
    let mut h = Harness::new();
    let c = client(4003);
    let wrong = h.login(c, &valid_username("carol"), b"not-the-secret");
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &wrong))),
        Some(401)
    );
    assert_eq!(
        h.server
            .stats()
            .auth_failure(AuthFailure::BadIntegrity)
            .get(),
        1
    );

    let expired = h.login(c, &format!("{}:carol", T0_UNIX - 1), SECRET);
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(2), &expired))),
        Some(401)
    );
    assert_eq!(h.server.stats().auth_failure(AuthFailure::Expired).get(), 1);

    let unknown = h.login(c, &format!("{}:nobody:carol", T0_UNIX + 60), SECRET);
    // "nobody" is not a tenant, so the username is read as user "nobody:carol"
    // of the default tenant, with a password from the default secret: accepted.
    assert_eq!(
        Message::parse(&h.ask(c, &allocate_request(txid(3), &unknown)))
            .expect("parses")
            .class(),
        Class::Success
    );
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn tenant_usernames_use_the_tenant_secret() {
    let mut h = Harness::new();
    let c = client(4004);
    let username = format!("{}:acme:dave", T0_UNIX + 60);
    let with_default = h.login(c, &username, SECRET);
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &with_default))),
        Some(401)
    );
    let with_tenant = h.login(c, &username, b"acme-secret");
    h.allocate(c, &with_tenant);
    let acme = h.server.stats().tenant("acme");
    assert_eq!(acme.transport(Transport::Udp).allocations_total.get(), 1);
}

#[test]
fn stale_nonce_is_438_and_a_fresh_one_works() {
    let mut h = Harness::new();
    let c = client(4005);
    let mut creds = h.login(c, &valid_username("erin"), SECRET);
    h.advance(Duration::from_secs(601));
    let answer = h.ask(c, &allocate_request(txid(1), &creds));
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(error_code(&msg), Some(438));
    creds.nonce = text(&msg, attr::NONCE).expect("438 carries a new nonce");
    h.allocate(c, &creds);
}

#[test]
fn nonce_from_another_ip_is_stale() {
    let mut h = Harness::new();
    let creds = h.login(client(4006), &valid_username("frank"), SECRET);
    let mut other = client(4006);
    other.remote = addr("198.51.100.99:4006");
    assert_eq!(
        answer_code(&h.ask(other, &allocate_request(txid(1), &creds))),
        Some(438)
    );
}

#[test]
fn channel_data_both_ways_without_copies() {
    // RFC 8656 §11 (ChannelBind) and §12.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4010);
    let ok = channel_bind(&mut h, c, &creds, 0x4001, PEER, 3);
    assert_eq!(Message::parse(&ok).expect("parses").class(), Class::Success);

    let mut packet = channel_data_header(0x4001, 5).to_vec();
    packet.extend_from_slice(b"hello");
    let (action, out) = h.input(c, &packet);
    assert!(out.is_empty());
    assert_eq!(
        action,
        ClientAction::Forward {
            relay: RelayHandle(0),
            peer: addr(PEER),
            payload: 4..9
        }
    );

    let action = h
        .server
        .handle_peer(RelayHandle(0), addr(PEER), b"world!", h.now);
    assert_eq!(
        action,
        PeerAction::ToClient {
            client: c,
            header: channel_data_header(0x4001, 6)
        }
    );
    let traffic = h.server.stats().tenant("default");
    let udp = traffic.transport(Transport::Udp);
    assert_eq!((udp.to_peer.packets.get(), udp.to_peer.bytes.get()), (1, 5));
    assert_eq!(
        (udp.to_client.packets.get(), udp.to_client.bytes.get()),
        (1, 6)
    );
}

#[test]
fn peer_without_permission_is_dropped_and_counted() {
    let mut h = Harness::new();
    let (_c, _creds, _) = allocated(&mut h, 4011);
    let action = h
        .server
        .handle_peer(RelayHandle(0), addr(PEER), b"x", h.now);
    assert_eq!(action, PeerAction::Done);
    assert!(h.server.poll_transmit().is_none());
    assert_eq!(h.server.stats().dropped(DropReason::NoPermission).get(), 1);
}

#[test]
fn send_and_data_indications() {
    // RFC 8656 §10.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4012);
    // Without a permission a Send indication is silently dropped.
    let send = request(Method::SEND, txid(7), |b| {
        b.xor_address(attr::XOR_PEER_ADDRESS, addr(PEER))
            .attribute(attr::DATA, b"ping");
    });
    let send = {
        let mut m = send;
        m[0..2].copy_from_slice(&stun::encode_type(Method::SEND, Class::Indication).to_be_bytes());
        m
    };
    let (action, out) = h.input(c, &send);
    assert_eq!((action, out.len()), (ClientAction::Done, 0));

    let ok = permission(&mut h, c, &creds, PEER, 4);
    assert_eq!(Message::parse(&ok).expect("parses").class(), Class::Success);
    let (action, _) = h.input(c, &send);
    let ClientAction::Forward {
        relay,
        peer,
        payload,
    } = action
    else {
        panic!("expected a forward, got {action:?}");
    };
    assert_eq!((relay, peer), (RelayHandle(0), addr(PEER)));
    assert_eq!(&send[payload], b"ping");

    // A peer datagram without a channel becomes a Data indication.
    assert_eq!(
        h.server
            .handle_peer(RelayHandle(0), addr(PEER), b"pong", h.now),
        PeerAction::Done
    );
    let t = h.server.poll_transmit().expect("data indication");
    assert_eq!(t.to, c);
    let msg = Message::parse(&t.data).expect("parses");
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::DATA, Class::Indication)
    );
    assert_eq!(msg.attribute(attr::DATA).expect("data").value, b"pong");
    let from = msg.attribute(attr::XOR_PEER_ADDRESS).expect("peer");
    assert_eq!(
        stun::decode_xor_address(from.value, &msg.transaction_id()).expect("addr"),
        addr(PEER)
    );
}

#[test]
fn permissions_expire_after_300_seconds() {
    // RFC 8656 §9: permissions last 300 s and are refreshed only by requests.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4013);
    permission(&mut h, c, &creds, PEER, 4);
    h.advance(Duration::from_secs(299));
    assert_eq!(h.server.stats().permissions_active.get(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.stats().permissions_active.get(), 0);
    let action = h
        .server
        .handle_peer(RelayHandle(0), addr(PEER), b"late", h.now);
    assert_eq!(action, PeerAction::Done);
}

#[test]
fn blocked_peers_are_403() {
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4014);
    for (i, peer) in [
        "127.0.0.1:80",
        "10.0.0.1:80",
        "169.254.169.254:80",
        "192.168.1.1:80",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            answer_code(&permission(&mut h, c, &creds, peer, 10 + i as u8)),
            Some(403),
            "{peer}"
        );
    }
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, "10.0.0.1:80", 20)),
        Some(403)
    );
    // The relay's own relayed addresses stay reachable: two clients of one relay.
    let ok = permission(&mut h, c, &creds, "192.0.2.10:50001", 21);
    assert_eq!(answer_code(&ok), None);
}

#[test]
fn own_addresses_only_on_ports_the_relay_holds() {
    // The relay's own address is public-looking and opened by the operator:
    // still, only the ports of live relay sockets are peers, never the TURN
    // listener or another service on the host, and a channel to a relay port
    // stops carrying data once that port is given back.
    let mut h = Harness::with(|c| c.peer_filter.allow("192.0.2.0/24".parse().expect("cidr")));
    let (a, a_creds, a_relayed) = allocated(&mut h, 4040);
    let (b, b_creds, b_relayed) = allocated(&mut h, 4041);
    assert_eq!(a_relayed.ip(), b_relayed.ip());
    let listener = "192.0.2.10:3478";
    let other_service = "192.0.2.10:22";
    let free_relay_port = "192.0.2.10:50099";
    for (i, peer) in [listener, other_service, free_relay_port]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            answer_code(&channel_bind(
                &mut h,
                a,
                &a_creds,
                0x4001,
                peer,
                50 + i as u8
            )),
            Some(403),
            "{peer}"
        );
    }
    // Another host of the opened range is an ordinary peer.
    assert_eq!(
        answer_code(&channel_bind(
            &mut h,
            a,
            &a_creds,
            0x4001,
            "192.0.2.99:22",
            53
        )),
        None
    );
    // A Send indication to the listener (a nested Allocate) is dropped.
    assert_eq!(
        answer_code(&permission(&mut h, a, &a_creds, listener, 54)),
        None
    );
    let mut send = MessageBuilder::new(Method::SEND, Class::Indication, txid(55));
    send.xor_address(attr::XOR_PEER_ADDRESS, addr(listener))
        .attribute(attr::DATA, &allocate_request(txid(56), &a_creds));
    let (action, out) = h.input(a, &send.finish());
    assert_eq!((action, out.len()), (ClientAction::Done, 0));
    assert_eq!(h.server.stats().dropped(DropReason::DeniedPeer).get(), 1);
    // Client to client through the relay: b's relayed address is held.
    assert_eq!(
        answer_code(&channel_bind(
            &mut h,
            a,
            &a_creds,
            0x4002,
            &b_relayed.to_string(),
            57
        )),
        None
    );
    let mut packet = channel_data_header(0x4002, 2).to_vec();
    packet.extend_from_slice(b"hi");
    let (action, _) = h.input(a, &packet);
    assert!(matches!(action, ClientAction::Forward { peer, .. } if peer == b_relayed));
    // b's allocation ends: its port may be anyone's now.
    let gone = signed(Method::REFRESH, txid(58), &b_creds, |m| {
        m.u32(attr::LIFETIME, 0);
    });
    assert_eq!(answer_code(&h.ask(b, &gone)), None);
    assert!(!h.held.contains(b_relayed.port()));
    let (action, _) = h.input(a, &packet);
    assert_eq!(action, ClientAction::Done);
    assert_eq!(h.server.stats().dropped(DropReason::DeniedPeer).get(), 2);
    assert_eq!(
        answer_code(&channel_bind(
            &mut h,
            a,
            &a_creds,
            0x4002,
            &b_relayed.to_string(),
            59
        )),
        Some(403)
    );
}

#[test]
fn loopback_peers_when_the_operator_allows_them() {
    let mut h = Harness::with(|c| c.peer_filter.allow_loopback(true));
    let (c, creds, _) = allocated(&mut h, 4015);
    assert_eq!(
        answer_code(&permission(&mut h, c, &creds, "127.0.0.1:3480", 4)),
        None
    );
}

#[test]
fn channel_bind_rules() {
    // RFC 8656 §12.2: numbers 0x4000-0x4FFF only (with strict channel numbers).
    let mut h = Harness::with(|c| c.strict_channel_numbers = true);
    let (c, creds, _) = allocated(&mut h, 4016);
    for (i, number) in [0x3FFF, 0x5000, 0x7FFF, 0x8000].into_iter().enumerate() {
        assert_eq!(
            answer_code(&channel_bind(&mut h, c, &creds, number, PEER, 60 + i as u8)),
            Some(400),
            "{number:#x}"
        );
    }
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 5)),
        None
    );
    // Same number to another peer, or same peer to another number: 400.
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, "1.2.3.5:5000", 6)),
        Some(400)
    );
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4002, PEER, 7)),
        Some(400)
    );
    // Rebinding the same pair refreshes it.
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 8)),
        None
    );
    // IPv6 peer on an IPv4 allocation: 443.
    assert_eq!(
        answer_code(&channel_bind(
            &mut h,
            c,
            &creds,
            0x4003,
            "[2606:4700::1]:5000",
            9
        )),
        Some(443)
    );
    assert_eq!(h.server.stats().channels_active.get(), 1);
}

#[test]
fn channel_numbers_up_to_0x7fff_by_default() {
    // RFC 5766 §11 allowed 0x4000-0x7FFF; clients still use it.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4030);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x7FFF, PEER, 3)),
        None
    );
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x8000, "1.2.3.5:5000", 4)),
        Some(400)
    );
    let mut packet = channel_data_header(0x7FFF, 1).to_vec();
    packet.push(7);
    let (action, _) = h.input(c, &packet);
    assert!(matches!(action, ClientAction::Forward { peer, .. } if peer == addr(PEER)));
}

#[test]
fn thousands_of_channels_route_to_their_own_peers() {
    // Every channel number RFC 8656 §12 allows, on one allocation, to 4,096
    // peers (16 IPs x 256 ports: within the permission quota). Each packet
    // must reach exactly its channel's peer, and each peer's datagrams come
    // back on exactly its channel.
    let mut h = Harness::with(|c| {
        c.channel_lifetime = Duration::from_secs(60);
        // Every channel number: past the default quota of channels per allocation.
        c.quotas.channels_per_allocation = 0;
    });
    let (c, creds, _) = allocated(&mut h, 4031);
    let peer_of = |n: u16| {
        let i = n - 0x4000;
        SocketAddr::new(
            std::net::IpAddr::from([1, 2, 3, 100 + (i / 256) as u8]),
            10_000 + i % 256,
        )
    };
    for number in 0x4000..=0x4FFFu16 {
        let mut id = [0xC0; 12];
        id[..2].copy_from_slice(&number.to_be_bytes());
        let req = signed(Method::CHANNEL_BIND, TransactionId(id), &creds, |b| {
            b.attribute(
                attr::CHANNEL_NUMBER,
                &[(number >> 8) as u8, number as u8, 0, 0],
            )
            .xor_address(attr::XOR_PEER_ADDRESS, peer_of(number));
        });
        assert_eq!(answer_code(&h.ask(c, &req)), None, "{number:#x}");
    }
    assert_eq!(h.server.stats().channels_active.get(), 4096);
    // In a scrambled order, so no lookup can lean on insertion order.
    for k in 0..4096u32 {
        let number = 0x4000 + ((k * 2_897) % 4096) as u16;
        let mut packet = channel_data_header(number, 2).to_vec();
        packet.extend_from_slice(&number.to_be_bytes());
        let (action, _) = h.input(c, &packet);
        assert_eq!(
            action,
            ClientAction::Forward {
                relay: RelayHandle(0),
                peer: peer_of(number),
                payload: 4..6
            }
        );
        let back = h
            .server
            .handle_peer(RelayHandle(0), peer_of(number), b"ok", h.now);
        assert_eq!(
            back,
            PeerAction::ToClient {
                client: c,
                header: channel_data_header(number, 2)
            },
            "{number:#x}"
        );
    }
    // A peer port next to bound ones has no channel: a Data indication.
    let stray = SocketAddr::new(peer_of(0x4000).ip(), 9_999);
    assert_eq!(
        h.server.handle_peer(RelayHandle(0), stray, b"x", h.now),
        PeerAction::Done
    );
    assert!(h.server.poll_transmit().is_some());
    // After they expire, a number may be bound to another peer, and the old
    // peer's datagrams no longer arrive on it.
    h.advance(Duration::from_secs(61));
    assert_eq!(h.server.stats().channels_active.get(), 0);
    let refresh = signed(Method::REFRESH, txid(70), &creds, |_| {});
    assert_eq!(answer_code(&h.ask(c, &refresh)), None);
    assert_eq!(
        answer_code(&channel_bind(
            &mut h,
            c,
            &creds,
            0x4000,
            &peer_of(0x4001).to_string(),
            71
        )),
        None
    );
    assert_eq!(
        h.server
            .handle_peer(RelayHandle(0), peer_of(0x4001), b"ok", h.now),
        PeerAction::ToClient {
            client: c,
            header: channel_data_header(0x4000, 2)
        }
    );
    // The old peer (same IP, so permitted) gets a Data indication, not 0x4000.
    assert_eq!(
        h.server
            .handle_peer(RelayHandle(0), peer_of(0x4000), b"ok", h.now),
        PeerAction::Done
    );
    assert!(h.server.poll_transmit().is_some());
}

#[test]
fn refresh_zero_deletes_and_its_retransmission_is_not_437() {
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4017);
    let req = signed(Method::REFRESH, txid(30), &creds, |b| {
        b.u32(attr::LIFETIME, 0);
    });
    let first = h.ask(c, &req);
    assert_eq!(answer_code(&first), None);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.freed, vec![RelayHandle(0)]);
    assert_eq!(h.ask(c, &req), first);
    // Any other Refresh now: 437.
    let other = signed(Method::REFRESH, txid(31), &creds, |_| {});
    assert_eq!(answer_code(&h.ask(c, &other)), Some(437));
}

#[test]
fn refresh_extends_and_expiry_frees_the_relay() {
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4018);
    h.advance(Duration::from_secs(500));
    let req = signed(Method::REFRESH, txid(40), &creds, |b| {
        b.u32(attr::LIFETIME, 100_000);
    });
    let answer = h.ask(c, &req);
    let msg = Message::parse(&answer).expect("parses");
    let granted = stun::decode_u32(msg.attribute(attr::LIFETIME).expect("lifetime").value);
    assert_eq!(granted.expect("u32"), 3600, "capped at the maximum");
    h.advance(Duration::from_secs(3599));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.freed, vec![RelayHandle(0)]);
    let tenant = h.server.stats().tenant("default");
    assert_eq!(tenant.transport(Transport::Udp).allocations_active.get(), 0);
}

#[test]
fn refresh_grants_at_least_the_default_lifetime() {
    // RFC 8656 §8.2: max(default, min(requested, maximum)), as for Allocate.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4032);
    for (i, (asked, granted)) in [
        (Some(120), 600),
        (Some(1), 600),
        (Some(900), 900),
        (None, 600),
    ]
    .into_iter()
    .enumerate()
    {
        let req = signed(Method::REFRESH, txid(80 + i as u8), &creds, |b| {
            if let Some(secs) = asked {
                b.u32(attr::LIFETIME, secs);
            }
        });
        let answer = h.ask(c, &req);
        let msg = Message::parse(&answer).expect("parses");
        assert_eq!(msg.class(), Class::Success);
        let lifetime = stun::decode_u32(msg.attribute(attr::LIFETIME).expect("lifetime").value);
        assert_eq!(lifetime.expect("u32"), granted, "asked {asked:?}");
    }
    // The granted time is the one enforced: 120 asked, alive after 120 s.
    let req = signed(Method::REFRESH, txid(90), &creds, |b| {
        b.u32(attr::LIFETIME, 120);
    });
    assert_eq!(answer_code(&h.ask(c, &req)), None);
    h.advance(Duration::from_secs(121));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(480));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn overlong_username_is_400_and_counted() {
    // RFC 8489 §14.3 (fewer than 509 bytes; RFC 5389 allowed fewer than 513).
    let mut h = Harness::new();
    let c = client(4033);
    let long = format!("{}:{}", T0_UNIX + 3600, "u".repeat(600));
    assert!(long.len() > 513);
    let creds = h.login(c, &long, SECRET);
    let answer = h.ask(c, &allocate_request(txid(91), &creds));
    assert_eq!(answer_code(&answer), Some(400));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(
        h.server
            .stats()
            .auth_failure(AuthFailure::BadUsername)
            .get(),
        1
    );
    // 512 bytes is still a username.
    let c = client(4034);
    let prefix = format!("{}:", T0_UNIX + 3600);
    let longest = format!("{prefix}{}", "u".repeat(512 - prefix.len()));
    let creds = h.login(c, &longest, SECRET);
    h.allocate(c, &creds);
}

#[test]
fn refresh_with_other_credentials_is_441() {
    let mut h = Harness::new();
    let (c, _creds, _) = allocated(&mut h, 4019);
    let other = h.login(c, &valid_username("mallory"), SECRET);
    let req = signed(Method::REFRESH, txid(41), &other, |_| {});
    assert_eq!(answer_code(&h.ask(c, &req)), Some(441));
}

#[test]
fn quotas() {
    let mut h = Harness::with(|c| {
        c.quotas.user_allocations = 1;
        c.quotas.permissions_per_allocation = 2;
    });
    let username = valid_username("quota");
    let c1 = client(4020);
    let creds = h.login(c1, &username, SECRET);
    h.allocate(c1, &creds);
    let c2 = client(4021);
    let creds2 = h.login(c2, &username, SECRET);
    assert_eq!(
        answer_code(&h.ask(c2, &allocate_request(txid(1), &creds2))),
        Some(486)
    );
    // Another user is not affected.
    let (c3, creds3, _) = allocated(&mut h, 4022);
    let req = signed(Method::CREATE_PERMISSION, txid(50), &creds3, |b| {
        b.xor_address(attr::XOR_PEER_ADDRESS, addr("1.1.1.1:1"))
            .xor_address(attr::XOR_PEER_ADDRESS, addr("1.1.1.2:1"))
            .xor_address(attr::XOR_PEER_ADDRESS, addr("1.1.1.3:1"));
    });
    assert_eq!(answer_code(&h.ask(c3, &req)), Some(508));
    assert_eq!(
        h.server.stats().permissions_active.get(),
        0,
        "all or nothing"
    );
    // When the first allocation goes, the user may allocate again.
    let del = signed(Method::REFRESH, txid(51), &creds, |b| {
        b.u32(attr::LIFETIME, 0);
    });
    h.ask(c1, &del);
    h.allocate(c2, &creds2);
}

/// Safe defaults: one user cannot hold more than 64 allocations (486, RFC
/// 8656 §7.2) nor one allocation more than 64 channels (508, §12.2); 0, set
/// explicitly, lifts a quota.
#[test]
fn default_quotas_bound_a_user_and_an_allocation() {
    let mut h = Harness::new();
    let username = valid_username("greedy");
    let per_user = turn_core::Quotas::DEFAULT_USER_ALLOCATIONS;
    let mut first = None;
    for i in 0..per_user {
        let c = client(20_000 + i as u16);
        let creds = h.login(c, &username, SECRET);
        h.allocate(c, &creds);
        first.get_or_insert((c, creds));
    }
    let c = client(20_000 + per_user as u16);
    let creds = h.login(c, &username, SECRET);
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &creds))),
        Some(486)
    );
    let (c, creds) = first.expect("allocated");
    let per_allocation = turn_core::Quotas::DEFAULT_CHANNELS_PER_ALLOCATION as u16;
    for i in 0..per_allocation {
        let peer = format!("1.2.3.4:{}", 6000 + i);
        let answer = channel_bind(&mut h, c, &creds, 0x4000 + i, &peer, 1 + (i % 200) as u8);
        assert_eq!(answer_code(&answer), None, "channel {i}");
    }
    let peer = format!("1.2.3.4:{}", 6000 + per_allocation);
    let answer = channel_bind(&mut h, c, &creds, 0x4000 + per_allocation, &peer, 250);
    assert_eq!(answer_code(&answer), Some(508));
    // Refreshing a bound channel is not a new one.
    let answer = channel_bind(&mut h, c, &creds, 0x4000, "1.2.3.4:6000", 251);
    assert_eq!(answer_code(&answer), None);

    let mut h = Harness::with(|c| {
        c.quotas.user_allocations = 0;
        c.quotas.channels_per_allocation = 0;
    });
    for i in 0..=per_user {
        let c = client(20_000 + i as u16);
        let creds = h.login(c, &username, SECRET);
        h.allocate(c, &creds);
    }
    let (c, creds, _) = allocated(&mut h, 4039);
    for i in 0..=per_allocation {
        let peer = format!("1.2.3.4:{}", 6000 + i);
        let answer = channel_bind(&mut h, c, &creds, 0x4000 + i, &peer, 1 + (i % 200) as u8);
        assert_eq!(answer_code(&answer), None, "channel {i}");
    }
}

#[test]
fn tenant_quota() {
    let mut h = Harness::with(|c| c.quotas.tenant_allocations = 2);
    allocated(&mut h, 4030);
    allocated(&mut h, 4031);
    let c = client(4032);
    let creds = h.login(c, &valid_username("third"), SECRET);
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &creds))),
        Some(486)
    );
}

#[test]
fn bandwidth_cap_drops_and_counts() {
    let mut h = Harness::with(|c| c.quotas.allocation_bytes_per_sec = 100_000);
    let (c, creds, _) = allocated(&mut h, 4033);
    channel_bind(&mut h, c, &creds, 0x4000, PEER, 3);
    let mut packet = channel_data_header(0x4000, 1000).to_vec();
    packet.resize(1004, 7);
    let forwarded = (0..200)
        .filter(|_| matches!(h.input(c, &packet).0, ClientAction::Forward { .. }))
        .count();
    // A burst of at most 100 kB (100 packets) in the same instant.
    assert_eq!(forwarded, 100);
    assert_eq!(
        h.server
            .stats()
            .dropped(DropReason::BandwidthExceeded)
            .get(),
        100
    );
    // A second later the budget has refilled.
    h.now.mono += Duration::from_secs(1);
    assert!(matches!(
        h.input(c, &packet).0,
        ClientAction::Forward { .. }
    ));
}

#[test]
fn unauthenticated_answers_are_budgeted_in_bytes_per_source() {
    let binding = |i: u32| {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&i.to_be_bytes());
        request(Method::BINDING, TransactionId(id), |_| {})
    };
    let one = Harness::new().ask(client(4034), &binding(0)).len() as u64;
    let mut h = Harness::with(|c| {
        c.unauthenticated.per_source = turn_core::ByteRate {
            per_second: 10 * one,
            burst: 5 * one,
        }
    });
    let c = client(4034);
    let answered = (0..50)
        .filter(|i| !h.input(c, &binding(*i)).1.is_empty())
        .count();
    assert_eq!(answered, 5);
    assert_eq!(h.server.stats().dropped(DropReason::RateLimited).get(), 45);
    // Another source is answered.
    let mut other = c;
    other.remote = addr("203.0.113.9:1");
    assert_eq!(h.input(other, &binding(1)).1.len(), 1);
    // The bucket refills with time: a tenth of a second is one answer.
    h.now.mono += Duration::from_millis(100);
    assert_eq!(h.input(c, &binding(99)).1.len(), 1);
    assert!(h.input(c, &binding(100)).1.is_empty());
}

/// Thousands of clients behind one NAT address each need the 401 challenge
/// before their first allocation: the defaults answer them all at once, and a
/// flood from that address is still cut once it exceeds the byte budget.
#[test]
fn one_nat_address_gets_its_challenges_and_a_flood_is_cut() {
    let mut h = Harness::new();
    let mut answered_bytes = 0u64;
    for port in 0..4_000u16 {
        let c = client(10_000 + port);
        let req = request(Method::ALLOCATE, txid(1), |b| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let answer = h.ask(c, &req);
        assert_eq!(answer_code(&answer), Some(401), "client {port}");
        answered_bytes += answer.len() as u64;
    }
    assert_eq!(h.server.stats().dropped(DropReason::RateLimited).get(), 0);
    // Keep going in the same instant: the per-source burst runs out.
    let burst = turn_core::AnswerBudget::default().per_source.burst;
    let flood = 60_000u16;
    let mut more = 0u64;
    for port in 0..flood {
        let c = client(port);
        let req = request(Method::ALLOCATE, txid(2), |b| {
            b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        more += h
            .input(c, &req)
            .1
            .iter()
            .map(|a| a.len() as u64)
            .sum::<u64>();
    }
    assert!(
        answered_bytes + more <= burst,
        "{answered_bytes} + {more} bytes answered, burst {burst}"
    );
    let dropped = h.server.stats().dropped(DropReason::RateLimited).get();
    assert!(dropped > u64::from(flood) / 2, "{dropped} dropped");
}

#[test]
fn drain_sends_alternate_server_or_508() {
    let mut h = Harness::with(|c| c.alternate_server = Some(addr("192.0.2.99:3478")));
    let (c, creds, _) = allocated(&mut h, 4035);
    h.server.start_drain(None);
    let c2 = client(4036);
    let creds2 = h.login(c2, &valid_username("late"), SECRET);
    let answer = h.ask(c2, &allocate_request(txid(1), &creds2));
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(error_code(&msg), Some(300));
    let alt = msg.attribute(attr::ALTERNATE_SERVER).expect("alternate");
    assert_eq!(
        stun::decode_address(alt.value).expect("addr"),
        addr("192.0.2.99:3478")
    );
    // Existing allocations keep working.
    let refresh = signed(Method::REFRESH, txid(60), &creds, |_| {});
    assert_eq!(answer_code(&h.ask(c, &refresh)), None);

    let mut h = Harness::new();
    h.server.start_drain(None);
    let c = client(4037);
    let creds = h.login(c, &valid_username("x"), SECRET);
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &creds))),
        Some(508)
    );
}

#[test]
fn drain_ordered_with_an_alternate_names_it() {
    // The controller's drain order names a healthy relay of the region.
    let mut h = Harness::with(|c| c.alternate_server = Some(addr("192.0.2.99:3478")));
    h.server.start_drain(Some(addr("192.0.2.77:3478")));
    let c = client(4038);
    let creds = h.login(c, &valid_username("moved"), SECRET);
    let answer = h.ask(c, &allocate_request(txid(1), &creds));
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(error_code(&msg), Some(300));
    let alt = msg.attribute(attr::ALTERNATE_SERVER).expect("alternate");
    assert_eq!(
        stun::decode_address(alt.value).expect("addr"),
        addr("192.0.2.77:3478")
    );
}

#[test]
fn secret_rotation_and_revocation() {
    let mut h = Harness::new();
    let c = client(4040);
    let old = h.login(c, &valid_username("rot"), SECRET);
    // Rotation: a new secret first, the old one still accepted.
    h.server
        .set_credentials(credentials(&[b"new-secret", SECRET]));
    h.allocate(c, &old);
    let c2 = client(4041);
    let new = h.login(c2, &valid_username("rot2"), b"new-secret");
    h.allocate(c2, &new);
    // Old secret retired: the next request with it fails, the live allocation stays.
    h.server.set_credentials(credentials(&[b"new-secret"]));
    let refresh = signed(Method::REFRESH, txid(70), &old, |_| {});
    assert_eq!(answer_code(&h.ask(c, &refresh)), Some(401));
    assert_eq!(h.server.allocation_count(), 2);
    // Revocation refuses a username whatever its secret.
    h.server.revoke(&new.username, T0_UNIX + 3600, h.now.mono);
    let refresh = signed(Method::REFRESH, txid(71), &new, |_| {});
    assert_eq!(answer_code(&h.ask(c2, &refresh)), Some(401));
    assert_eq!(h.server.stats().auth_failure(AuthFailure::Revoked).get(), 1);
}

/// A revocation ends the username's live allocations at once: ChannelData is
/// dropped, the relay socket freed, the quota released; others keep theirs.
#[test]
fn revocation_ends_live_allocations() {
    let mut h = Harness::with(|c| c.quotas.user_allocations = 1);
    let (c, creds, _) = allocated(&mut h, 4042);
    let (other, other_creds, _) = allocated(&mut h, 4043);
    channel_bind(&mut h, c, &creds, 0x4000, PEER, 3);
    channel_bind(&mut h, other, &other_creds, 0x4000, PEER, 3);
    let mut packet = channel_data_header(0x4000, 4).to_vec();
    packet.extend_from_slice(b"data");
    assert!(matches!(
        h.input(c, &packet).0,
        ClientAction::Forward { .. }
    ));

    h.server.revoke(&creds.username, T0_UNIX + 3600, h.now.mono);
    h.run_commands();
    assert_eq!(h.freed, vec![RelayHandle(0)], "its relay socket is freed");
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.stats().allocations_revoked.get(), 1);
    assert_eq!(h.input(c, &packet).0, ClientAction::Done);
    assert_eq!(h.server.stats().dropped(DropReason::NoAllocation).get(), 1);
    assert!(matches!(
        h.input(other, &packet).0,
        ClientAction::Forward { .. }
    ));
    let refresh = signed(Method::REFRESH, txid(72), &creds, |_| {});
    assert_eq!(answer_code(&h.ask(c, &refresh)), Some(401));
    // Its quota was given back: once the revocation lapses, it may allocate.
    h.server.revoke(&creds.username, T0_UNIX, h.now.mono);
    h.allocate(c, &creds);
}

#[test]
fn allocate_attribute_errors() {
    let mut h = Harness::new();
    let c = client(4050);
    let creds = h.login(c, &valid_username("attrs"), SECRET);
    let tcp = signed(Method::ALLOCATE, txid(1), &creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
    });
    assert_eq!(answer_code(&h.ask(c, &tcp)), Some(442));
    let none = signed(Method::ALLOCATE, txid(2), &creds, |_| {});
    assert_eq!(answer_code(&h.ask(c, &none)), Some(400));
    let v6 = signed(Method::ALLOCATE, txid(3), &creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .attribute(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    assert_eq!(
        answer_code(&h.ask(c, &v6)),
        Some(440),
        "no IPv6 relay address here"
    );
    let df = signed(Method::ALLOCATE, txid(4), &creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .attribute(attr::DONT_FRAGMENT, &[]);
    });
    let answer = h.ask(c, &df);
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(error_code(&msg), Some(420));
    assert_eq!(
        msg.attribute(attr::UNKNOWN_ATTRIBUTES).expect("list").value,
        &attr::DONT_FRAGMENT.to_be_bytes()
    );
    assert_eq!(
        h.server.allocation_count(),
        0,
        "nothing allocated by bad requests"
    );
}

#[test]
fn ipv6_relay_when_the_host_has_one() {
    // RFC 6156 / RFC 8656 §7.2: REQUESTED-ADDRESS-FAMILY.
    let mut h = Harness::with(|c| c.relay_ipv6 = true);
    let c = client(4051);
    let creds = h.login(c, &valid_username("six"), SECRET);
    let v6 = signed(Method::ALLOCATE, txid(3), &creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .attribute(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    let _ = h.server.handle_client(c, &v6, h.now);
    match h.server.poll_command() {
        Some(Command::BindRelay { family, .. }) => assert_eq!(family, turn_core::Family::V6),
        other => panic!("expected a v6 bind, got {other:?}"),
    }
}

#[test]
fn even_port_with_reservation_is_passed_to_the_shell() {
    let mut h = Harness::new();
    let c = client(4052);
    let creds = h.login(c, &valid_username("rtp"), SECRET);
    let req = signed(Method::ALLOCATE, txid(1), &creds, |b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .attribute(attr::EVEN_PORT, &[0x80]);
    });
    h.ask(c, &req);
    assert_eq!(
        h.bind_requests,
        vec![PortRequest::Even { reserve_next: true }]
    );
}

#[test]
fn failed_bind_is_508_and_releases_the_quota() {
    let mut h = Harness::with(|c| c.quotas.user_allocations = 1);
    let c = client(4053);
    let creds = h.login(c, &valid_username("noports"), SECRET);
    let _ = h
        .server
        .handle_client(c, &allocate_request(txid(1), &creds), h.now);
    let Some(Command::BindRelay { request, .. }) = h.server.poll_command() else {
        panic!("expected a bind");
    };
    h.server
        .relay_bound(request, Err(turn_core::BindFailure::NoPorts), h.now);
    let t = h.server.poll_transmit().expect("answer");
    assert_eq!(answer_code(&t.data), Some(508));
    // A retransmission gets the same 508; a new transaction succeeds.
    assert_eq!(
        answer_code(&h.ask(c, &allocate_request(txid(1), &creds))),
        Some(508)
    );
    h.allocate(c, &creds);
}

#[test]
fn stream_client_closing_frees_its_allocation() {
    let mut h = Harness::new();
    let mut c = client(4054);
    c.transport = Transport::Tcp;
    let creds = h.login(c, &valid_username("tcp"), SECRET);
    h.allocate(c, &creds);
    h.server.client_closed(c, h.now);
    h.run_commands();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.freed, vec![RelayHandle(0)]);
}

#[test]
fn sha256_integrity_is_accepted_and_answered_in_kind() {
    // RFC 8489 §14.6.
    let mut h = Harness::new();
    let c = client(4055);
    let creds = h.login(c, &valid_username("sha"), SECRET);
    let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, txid(1));
    b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attribute(attr::USERNAME, creds.username.as_bytes())
        .attribute(attr::REALM, REALM.as_bytes())
        .attribute(attr::NONCE, creds.nonce.as_bytes())
        .message_integrity_sha256(&creds.key);
    let answer = h.ask(c, &b.finish());
    let msg = Message::parse(&answer).expect("parses");
    assert_eq!(msg.class(), Class::Success);
    assert_eq!(msg.integrity(), Some(stun::IntegrityKind::Sha256));
    assert!(msg.verify_integrity(&creds.key));
}

#[test]
fn garbage_is_dropped_counted_and_harmless() {
    let mut h = Harness::new();
    let (c, _creds, _) = allocated(&mut h, 4056);
    let inputs: [&[u8]; 6] = [
        &[],
        &[0x00],
        &[0x40, 0x00, 0x00, 0x10, 1, 2],
        &[0xff; 64],
        &[0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42],
        &[0x70, 0x00, 0x00, 0x00],
    ];
    for input in inputs {
        let (action, out) = h.input(c, input);
        assert_eq!(action, ClientAction::Done);
        assert!(out.is_empty());
    }
    assert!(h.server.stats().dropped(DropReason::Malformed).get() >= 5);
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn allocation_time_is_metered_to_the_millisecond() {
    let mut h = Harness::new();
    let time = |h: &Harness| {
        let tenant = h.server.stats().tenant("default");
        tenant
            .transport(Transport::Udp)
            .lifetimes
            .total_ms(h.now.mono)
    };
    assert_eq!(time(&h), 0);
    // A at 0 s, B at 10 s (default lifetime 600 s: it expires at 610 s).
    let (a, creds_a, _) = allocated(&mut h, 4030);
    h.advance(Duration::from_secs(10));
    let _b = allocated(&mut h, 4031);
    h.advance(Duration::from_millis(50_250));
    assert_eq!(time(&h), 60_250 + 50_250, "both alive, read between events");
    // A deleted at 60.25 s.
    let req = signed(Method::REFRESH, txid(50), &creds_a, |b| {
        b.u32(attr::LIFETIME, 0);
    });
    assert_eq!(answer_code(&h.ask(a, &req)), None);
    assert_eq!(time(&h), 60_250 + 50_250);
    // B ends when its lifetime runs out, not when the sweep finds it later.
    h.advance(Duration::from_secs(700));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(time(&h), 60_250 + 600_000);
    h.advance(Duration::from_secs(60));
    assert_eq!(
        time(&h),
        60_250 + 600_000,
        "nothing accrues once they ended"
    );
}

#[test]
fn channels_are_offered_to_the_shell_until_their_permission_channel_or_allocation_ends() {
    let mut h = Harness::with(|c| c.fast_path = true);
    let t0 = h.now.mono;
    let (c, creds, relayed) = allocated(&mut h, 4070);
    assert!(h.flows.is_empty(), "no channel, no flow");
    // ChannelBind: offered until the permission's end (300 s; the channel's is 600 s).
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 60)),
        None
    );
    let flow = h.flows.get(&(c, 0x4000)).expect("offered").clone();
    assert_eq!(
        (flow.peer, flow.relay_addr, flow.relay, flow.tenant.as_str()),
        (addr(PEER), relayed, RelayHandle(0), "default")
    );
    assert_eq!(flow.expires, t0 + Duration::from_secs(300));
    // A CreatePermission 100 s later moves it to 400 s.
    h.advance(Duration::from_secs(100));
    assert_eq!(answer_code(&permission(&mut h, c, &creds, PEER, 61)), None);
    assert_eq!(h.flows[&(c, 0x4000)].expires, t0 + Duration::from_secs(400));
    // Past it, the sweep withdraws the flow (the channel itself lives on).
    h.advance(Duration::from_secs(301));
    assert!(h.flows.is_empty(), "withdrawn when the permission ended");
    assert_eq!(h.server.offered_flows(), 0);
    // Permitted again: offered until the channel's end (600 s).
    assert_eq!(answer_code(&permission(&mut h, c, &creds, PEER, 62)), None);
    assert_eq!(h.flows[&(c, 0x4000)].expires, t0 + Duration::from_secs(600));
    // The allocation deleted: withdrawn at once.
    let req = signed(Method::REFRESH, txid(63), &creds, |b| {
        b.u32(attr::LIFETIME, 0);
    });
    assert_eq!(answer_code(&h.ask(c, &req)), None);
    assert!(h.flows.is_empty(), "withdrawn with the allocation");

    // Revoked: withdrawn at once too.
    let (c2, creds2, _) = allocated(&mut h, 4071);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c2, &creds2, 0x4001, PEER, 64)),
        None
    );
    assert_eq!(h.flows.len(), 1);
    h.server
        .revoke(&creds2.username, T0_UNIX + 7200, h.now.mono);
    h.run_commands();
    assert!(h.flows.is_empty(), "withdrawn with the revoked allocation");
}

/// A channel that expired before the sweep may be bound again at once — its number to
/// another peer, or its peer to another number: the ended flow is withdrawn before the
/// new one is offered, so the shell never holds two flows for one peer side, nor a flow
/// whose peer changed under it.
#[test]
fn a_channel_rebound_before_the_sweep_is_withdrawn_before_the_new_offer() {
    let mut h = Harness::with(|c| {
        c.fast_path = true;
        c.channel_lifetime = Duration::from_secs(60);
        c.permission_lifetime = Duration::from_secs(60);
    });
    const OTHER: &str = "1.2.3.4:5001";
    // The number to another peer.
    let (c, creds, _) = allocated(&mut h, 4072);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 70)),
        None
    );
    h.skip(Duration::from_secs(61)); // channel and permission (60 s) ended, no sweep
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, OTHER, 71)),
        None
    );
    assert_eq!(h.flows[&(c, 0x4000)].peer, addr(OTHER));
    assert_eq!(h.flows.len(), 1);
    // The peer to another number.
    let (c2, creds2, _) = allocated(&mut h, 4073);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c2, &creds2, 0x4001, PEER, 72)),
        None
    );
    h.skip(Duration::from_secs(61));
    assert_eq!(
        answer_code(&channel_bind(&mut h, c2, &creds2, 0x4002, PEER, 73)),
        None
    );
    assert!(
        !h.flows.contains_key(&(c2, 0x4001)),
        "the ended flow withdrawn"
    );
    assert_eq!(h.flows[&(c2, 0x4002)].peer, addr(PEER));
    // A request that leaves a flow's end where it was offers nothing again.
    let offers = h.offers;
    assert_eq!(
        answer_code(&permission(&mut h, c2, &creds2, PEER, 74)),
        None
    );
    assert_eq!(h.offers, offers, "the same end offered again");
    // A permission a second later does not move it either (the channel ends first);
    // the channel refreshed does.
    h.advance(Duration::from_secs(1));
    assert_eq!(
        answer_code(&permission(&mut h, c2, &creds2, PEER, 75)),
        None
    );
    assert_eq!(h.offers, offers, "the channel's end bounds the flow's");
    assert_eq!(
        answer_code(&channel_bind(&mut h, c2, &creds2, 0x4002, PEER, 76)),
        None
    );
    assert_eq!(h.offers, offers + 1, "a new end is offered");
}

#[test]
fn only_what_the_core_relays_unchanged_is_offered() {
    // Off by default.
    let mut h = Harness::new();
    let (c, creds, _) = allocated(&mut h, 4072);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 70)),
        None
    );
    assert!(h.flows.is_empty());
    // A bandwidth cap is the core's to enforce, per packet.
    let mut h = Harness::with(|c| {
        c.fast_path = true;
        c.quotas.allocation_bytes_per_sec = 100_000;
    });
    let (c, creds, _) = allocated(&mut h, 4073);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 71)),
        None
    );
    assert!(h.flows.is_empty());
    // A TCP client's ChannelData arrives in a stream.
    let mut h = Harness::with(|c| c.fast_path = true);
    let mut c = client(4074);
    c.transport = Transport::Tcp;
    let creds = h.login(c, &valid_username("tcp"), SECRET);
    h.allocate(c, &creds);
    assert_eq!(
        answer_code(&channel_bind(&mut h, c, &creds, 0x4000, PEER, 72)),
        None
    );
    assert!(h.flows.is_empty());
}
