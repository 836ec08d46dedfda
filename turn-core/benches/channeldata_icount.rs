//! Instructions per ChannelData packet through `Server`, client → peer and
//! peer → client, counted by valgrind's callgrind so that a regression shows
//! as a number that does not depend on the machine's load.
//!
//! `cargo bench -p turn-core --bench channeldata_icount` builds this with the
//! bench profile and runs it; it then runs itself under
//! `valgrind --tool=callgrind --toggle-collect=<one direction's loop>` once
//! per direction and prints instructions per packet, with one channel and
//! with 4,096 channels on the allocation (the last one bound is measured).
//! Without valgrind it prints the wall-clock time per packet only.

use std::hint::black_box;
use std::net::SocketAddr;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Instant;

use turn_core::auth::rest_password;
use turn_core::stun::{
    self, attr, long_term_key, Class, Message, MessageBuilder, Method, TransactionId,
};
use turn_core::{
    ClientAction, ClientSocket, Command, Config, Credentials, Now, PeerAction, RelayBinding,
    RelayHandle, Server, Transport,
};

const PACKETS: u32 = 200_000;
const REALM: &str = "bench";
const PAYLOAD: usize = 100;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Setup {
    server: Server,
    now: Now,
    client: ClientSocket,
    /// The channel measured (the last one bound) and its peer.
    channel: u16,
    peer: SocketAddr,
    relay: RelayHandle,
}

fn ask(server: &mut Server, now: Now, from: ClientSocket, packet: &[u8]) -> Vec<u8> {
    server.handle_client(from, packet, now);
    while let Some(cmd) = server.poll_command() {
        if let Command::BindRelay { request, .. } = cmd {
            let binding = RelayBinding {
                handle: RelayHandle(7),
                addr: addr("192.0.2.10:50000"),
                reservation: None,
                shared: false,
            };
            server.relay_bound(request, Ok(binding), now);
        }
    }
    server.poll_transmit().expect("answer").data
}

/// The peer of the `i`th channel: 256 ports on each of 16 IPs (within the
/// default permission quota); the first is 1.2.3.4:5000.
fn peer_of(i: u16) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::from([1, 2, 3, 4 + (i / 256) as u8]),
        5000 + i % 256,
    )
}

/// One allocation with `channels` channels to as many peers, as a real
/// client builds it.
fn setup(channels: u16) -> Setup {
    let mut creds = Credentials::new();
    creds
        .insert_tenant("default", vec![b"secret".to_vec()])
        .expect("tenant");
    creds.set_default_tenant("default");
    let mono = Instant::now();
    let now = Now {
        mono,
        unix_secs: 1_800_000_000,
    };
    let mut server = Server::new(Config::new(REALM, [1; 32]), Arc::new(creds), mono);
    let client = ClientSocket {
        transport: Transport::Udp,
        remote: addr("198.51.100.7:40000"),
        local: addr("192.0.2.10:3478"),
    };
    let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TransactionId([1; 12]));
    b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let challenge = ask(&mut server, now, client, &b.finish());
    let msg = Message::parse(&challenge).expect("401");
    let nonce = stun::decode_utf8(msg.attribute(attr::NONCE).expect("nonce").value)
        .expect("nonce")
        .to_owned();
    let username = "1800003600:bench".to_owned();
    let key = long_term_key(&username, REALM, &rest_password(b"secret", &username));
    let signed = |method, id: u16, f: &dyn Fn(&mut MessageBuilder)| {
        let mut txid = [0xB0; 12];
        txid[..2].copy_from_slice(&id.to_be_bytes());
        let mut b = MessageBuilder::new(method, Class::Request, TransactionId(txid));
        f(&mut b);
        b.long_term_credentials(&username, REALM, nonce.as_bytes(), &key);
        b.finish()
    };
    let alloc = signed(Method::ALLOCATE, 2, &|b| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    let answer = ask(&mut server, now, client, &alloc);
    assert_eq!(
        Message::parse(&answer).expect("answer").class(),
        Class::Success
    );
    for i in 0..channels {
        let number = 0x4000 + i;
        let bind = signed(Method::CHANNEL_BIND, 3 + i, &|b| {
            b.attribute(
                attr::CHANNEL_NUMBER,
                &[(number >> 8) as u8, number as u8, 0, 0],
            )
            .xor_address(attr::XOR_PEER_ADDRESS, peer_of(i));
        });
        let answer = ask(&mut server, now, client, &bind);
        assert_eq!(
            Message::parse(&answer).expect("answer").class(),
            Class::Success
        );
    }
    Setup {
        server,
        now,
        client,
        channel: 0x4000 + channels - 1,
        peer: peer_of(channels - 1),
        relay: RelayHandle(7),
    }
}

#[inline(never)]
fn client_to_peer(s: &mut Setup, packet: &[u8], n: u32) -> u32 {
    let mut forwarded = 0;
    for _ in 0..n {
        if let ClientAction::Forward { .. } =
            s.server.handle_client(s.client, black_box(packet), s.now)
        {
            forwarded += 1;
        }
    }
    forwarded
}

#[inline(never)]
fn peer_to_client(s: &mut Setup, payload: &[u8], n: u32) -> u32 {
    let mut sent = 0;
    for _ in 0..n {
        if let PeerAction::ToClient { .. } =
            s.server
                .handle_peer(s.relay, s.peer, black_box(payload), s.now)
        {
            sent += 1;
        }
    }
    sent
}

/// `direction` is `client` or `peer`, then `-N` for N channels.
fn run(direction: &str) {
    let (side, channels) = direction.split_once('-').unwrap_or((direction, "1"));
    let mut s = setup(channels.parse().expect("channel count"));
    let mut packet = s.channel.to_be_bytes().to_vec();
    packet.extend_from_slice(&[0x00, PAYLOAD as u8]);
    packet.extend_from_slice(&[0xab; PAYLOAD]);
    let payload = vec![0xcd; PAYLOAD];
    let t = Instant::now();
    let done = match side {
        "client" => client_to_peer(&mut s, &packet, PACKETS),
        _ => peer_to_client(&mut s, &payload, PACKETS),
    };
    assert_eq!(done, PACKETS, "every packet takes the ChannelData path");
    let ns = t.elapsed().as_nanos() as f64 / f64::from(PACKETS);
    println!("{direction}: {ns:.1} ns per packet (wall clock)");
}

/// Runs this binary under callgrind, counting only `function`; returns Ir.
fn callgrind(function: &str, direction: &str) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!("channeldata-icount-{direction}.out"));
    let status = Process::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect=*{function}*"))
        .arg(&exe)
        .env("ICOUNT_CHILD", direction)
        .output()
        .ok()?;
    if !status.status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    if let Ok(direction) = std::env::var("ICOUNT_CHILD") {
        return run(&direction);
    }
    // `cargo bench` passes `--bench`; nothing else is expected.
    run("client");
    run("peer");
    run("client-4096");
    run("peer-4096");
    for (function, direction, label) in [
        ("client_to_peer", "client", "client -> peer"),
        ("peer_to_client", "peer", "peer -> client"),
        (
            "client_to_peer",
            "client-4096",
            "client -> peer, 4,096 channels",
        ),
        (
            "peer_to_client",
            "peer-4096",
            "peer -> client, 4,096 channels",
        ),
    ] {
        match callgrind(function, direction) {
            Some(ir) => println!(
                "{label}: {:.0} instructions per ChannelData packet ({PAYLOAD} B payload, callgrind, {PACKETS} packets)",
                ir as f64 / f64::from(PACKETS)
            ),
            None => println!("{label}: valgrind not available; instruction count skipped"),
        }
    }
}
