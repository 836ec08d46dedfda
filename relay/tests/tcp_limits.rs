//! TCP connections are a scarce resource: one client IP may hold only
//! `--max-tcp-connections-per-ip` of them, and a connection that has not
//! allocated (an authenticated Allocate) by `--tcp-auth-deadline` is closed,
//! however many Binding requests it sends.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{metric, start, REALM, SECRET};
use turn_core::auth::rest_password;
use turn_core::stun::{
    self, attr, long_term_key, Class, Message, MessageBuilder, Method, TransactionId,
};

fn tcp_server(relay: &nexrtc_relay::Relay) -> SocketAddr {
    relay
        .bound()
        .iter()
        .find(|b| b.transport == turn_core::Transport::Tcp)
        .expect("a TCP listener")
        .addr
}

fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().expect("address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&server.into()).expect("connect");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn binding(id: u8) -> Vec<u8> {
    MessageBuilder::new(Method::BINDING, Class::Request, TransactionId([id; 12])).finish()
}

/// Reads one STUN frame; `None` when the relay closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 20];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("no answer and no close within the timeout")
        }
        Err(_) => return None,
    }
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    let mut frame = head.to_vec();
    frame.extend(body);
    Some(frame)
}

/// Whether the relay answers a Binding on `s` (else it closed it).
fn answers(s: &mut TcpStream, id: u8) -> bool {
    if s.write_all(&binding(id)).is_err() {
        return false;
    }
    read_frame(s).is_some()
}

#[test]
fn one_ip_cannot_hold_every_connection() {
    let relay = start(|s| {
        s.no_tcp = false;
        s.max_tcp_connections_per_ip = Some(3);
    });
    let server = tcp_server(&relay);
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect_from("127.0.0.1", server)).collect();
    let open: Vec<bool> = conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| answers(c, i as u8))
        .collect();
    assert_eq!(open.iter().filter(|o| **o).count(), 3, "{open:?}");
    assert_eq!(
        metric(
            &relay,
            "nexrtc_relay_tcp_connections_rejected_per_ip_total",
            ""
        ),
        2
    );
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", server);
    assert!(answers(&mut other, 9));
    // A slot freed is a slot to take again.
    let first = open.iter().position(|o| *o).expect("an open connection");
    drop(conns.remove(first));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect_from("127.0.0.1", server);
        if answers(&mut c, 10) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Allocates over `s` with the 401 round trip; the answer's code.
fn allocate_over_tcp(s: &mut TcpStream) -> u16 {
    let transport = |b: &mut MessageBuilder| {
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    };
    let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TransactionId([1; 12]));
    transport(&mut b);
    s.write_all(&b.finish()).expect("send");
    let answer = read_frame(s).expect("a 401");
    let msg = Message::parse(&answer).expect("STUN");
    let nonce = msg.attribute(attr::NONCE).expect("NONCE").value.to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let username = format!("{}:tcp-user", now + 3600);
    let key = long_term_key(
        &username,
        REALM,
        &rest_password(SECRET.as_bytes(), &username),
    );
    let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TransactionId([2; 12]));
    transport(&mut b);
    b.long_term_credentials(&username, REALM, &nonce, &key);
    s.write_all(&b.finish()).expect("send");
    let answer = read_frame(s).expect("an answer");
    let msg = Message::parse(&answer).expect("STUN");
    msg.attribute(attr::ERROR_CODE)
        .map_or(200, |a| stun::decode_error_code(a.value).expect("code").0)
}

#[test]
fn a_connection_without_an_allocation_is_closed_at_the_deadline() {
    let relay = start(|s| {
        s.no_tcp = false;
        s.tcp_auth_deadline = Some(1);
    });
    let server = tcp_server(&relay);
    let mut allocated = connect_from("127.0.0.1", server);
    assert_eq!(allocate_over_tcp(&mut allocated), 200);
    // Bindings every 200 ms do not keep a connection alive.
    let mut idler = connect_from("127.0.0.1", server);
    let opened = Instant::now();
    let mut id = 0u8;
    while answers(&mut idler, id) {
        id = id.wrapping_add(1);
        assert!(
            opened.elapsed() < Duration::from_secs(10),
            "still open after 10 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(opened.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        metric(
            &relay,
            "nexrtc_relay_tcp_connections_unauthenticated_total",
            ""
        ),
        1
    );
    // The connection that allocated outlived the deadline.
    assert!(answers(&mut allocated, 200));
}
