//! TCP connections are a scarce resource: one client IP may hold only
//! `--max-tcp-connections-per-ip` of them, and a connection that has not
//! allocated (an authenticated Allocate) by `--tcp-auth-deadline` is closed,
//! however many Binding requests it sends.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nexrtc_test_support::turn::{rest_credentials, NoAnswer, TurnClient};
use support::{metric, start, SECRET};

fn tcp_server(relay: &nexrtc_relay::Relay) -> SocketAddr {
    relay
        .bound()
        .iter()
        .find(|b| b.transport == turn_core::Transport::Tcp)
        .expect("a TCP listener")
        .addr
}

/// A TCP client of `server` from the address `source` (no answer within 5 s fails).
fn connect_from(source: &str, server: SocketAddr) -> TurnClient {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().expect("address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    let (username, password) = rest_credentials(SECRET, "tcp-user");
    let timeout = Duration::from_secs(5);
    TurnClient::over_tcp(stream, &username, &password).with_timeouts(timeout, timeout)
}

/// Whether the relay answers a Binding on `c` (else it closed it).
fn answers(c: &mut TurnClient) -> bool {
    match c.binding() {
        Ok(_) => true,
        Err(NoAnswer::Closed) => false,
        Err(NoAnswer::Timeout) => panic!("no answer and no close within the timeout"),
    }
}

#[test]
fn one_ip_cannot_hold_every_connection() {
    let relay = start(|s| {
        s.no_tcp = false;
        s.max_tcp_connections_per_ip = Some(3);
    });
    let server = tcp_server(&relay);
    let mut conns: Vec<TurnClient> = (0..5).map(|_| connect_from("127.0.0.1", server)).collect();
    let open: Vec<bool> = conns.iter_mut().map(answers).collect();
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
    assert!(answers(&mut other));
    // A slot freed is a slot to take again.
    let first = open.iter().position(|o| *o).expect("an open connection");
    drop(conns.remove(first));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect_from("127.0.0.1", server);
        if answers(&mut c) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_connection_without_an_allocation_is_closed_at_the_deadline() {
    let relay = start(|s| {
        s.no_tcp = false;
        s.tcp_auth_deadline = Some(1);
    });
    let server = tcp_server(&relay);
    let mut allocated = connect_from("127.0.0.1", server);
    assert_eq!(allocated.allocate().code(), 200);
    // Bindings every 200 ms do not keep a connection alive.
    let mut idler = connect_from("127.0.0.1", server);
    let opened = Instant::now();
    while answers(&mut idler) {
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
    assert!(answers(&mut allocated));
}
