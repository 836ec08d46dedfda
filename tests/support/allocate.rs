//! One TURN Allocate over UDP, written with turn-core's STUN codec: the
//! smallest client that tells "allocated" from "refused with code N" without
//! the minutes of retries a full client library would spend.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use turn_core::stun::{
    attr, decode_address, decode_error_code, decode_utf8, long_term_key, Class, Message,
    MessageBuilder, Method, TransactionId,
};

/// How an Allocate ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocateOutcome {
    /// Success (the allocation was released again with a Refresh of lifetime 0).
    Allocated,
    /// An error response: its code and ALTERNATE-SERVER, if any.
    Refused {
        code: u16,
        reason: String,
        alternate: Option<SocketAddr>,
    },
    /// No answer within the time limit.
    NoAnswer,
}

fn txid() -> TransactionId {
    let token = super::random_token("");
    let mut id = [0u8; 12];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&token[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    TransactionId(id)
}

/// Sends `request` (retransmitting a few times) and returns the answer's bytes.
fn exchange(sock: &UdpSocket, server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..5 {
        sock.send_to(request, server).ok()?;
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from == server && n >= 20 && buf[8..20] == request[8..20] {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

fn refused(msg: &Message<'_>) -> AllocateOutcome {
    let (code, reason) = msg
        .attribute(attr::ERROR_CODE)
        .and_then(|a| decode_error_code(a.value).ok())
        .map(|(c, r)| (c, r.to_owned()))
        .unwrap_or((0, String::new()));
    let alternate = msg
        .attribute(attr::ALTERNATE_SERVER)
        .and_then(|a| decode_address(a.value).ok());
    AllocateOutcome::Refused {
        code,
        reason,
        alternate,
    }
}

/// A UDP Allocate at `server` with long-term (REST) credentials: first
/// unauthenticated to learn realm and nonce, then authenticated.
pub fn try_allocate(server: SocketAddr, username: &str, password: &str) -> AllocateOutcome {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("read timeout");
    let udp = [17u8, 0, 0, 0];

    let mut first = MessageBuilder::new(Method::ALLOCATE, Class::Request, txid());
    first.attribute(attr::REQUESTED_TRANSPORT, &udp);
    let Some(answer) = exchange(&sock, server, &first.finish()) else {
        return AllocateOutcome::NoAnswer;
    };
    let msg = Message::parse(&answer).expect("a STUN answer");
    let (realm, nonce) = match (
        msg.class(),
        msg.attribute(attr::REALM),
        msg.attribute(attr::NONCE),
    ) {
        (Class::Error, Some(r), Some(n)) => (
            decode_utf8(r.value).expect("REALM").to_owned(),
            n.value.to_vec(),
        ),
        (Class::Error, _, _) => return refused(&msg),
        (class, _, _) => panic!("unauthenticated Allocate answered {class:?}"),
    };

    let key = long_term_key(username, &realm, password);
    let mut second = MessageBuilder::new(Method::ALLOCATE, Class::Request, txid());
    second
        .attribute(attr::REQUESTED_TRANSPORT, &udp)
        .long_term_credentials(username, &realm, &nonce, &key)
        .fingerprint();
    let Some(answer) = exchange(&sock, server, &second.finish()) else {
        return AllocateOutcome::NoAnswer;
    };
    let msg = Message::parse(&answer).expect("a STUN answer");
    match msg.class() {
        Class::Success => {
            // Release it: a Refresh with LIFETIME 0.
            let mut refresh = MessageBuilder::new(Method::REFRESH, Class::Request, txid());
            refresh
                .u32(attr::LIFETIME, 0)
                .long_term_credentials(username, &realm, &nonce, &key)
                .fingerprint();
            let _ = exchange(&sock, server, &refresh.finish());
            AllocateOutcome::Allocated
        }
        _ => refused(&msg),
    }
}
