//! What a mio [`Token`] of a worker points at: the low 3 bits are the kind of
//! socket, the rest its index in the worker's tables.

use mio::{Interest, Token};

/// The kind of socket a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Waker = 0,
    Udp = 1,
    StreamListener = 2,
    Conn = 3,
    Relay = 4,
}

const KIND_BITS: usize = 3;

pub(crate) fn token(kind: TokenKind, index: u32) -> Token {
    Token(((index as usize) << KIND_BITS) | kind as usize)
}

pub(crate) fn decode(t: Token) -> (Option<TokenKind>, u32) {
    let kind = match t.0 & ((1 << KIND_BITS) - 1) {
        0 => Some(TokenKind::Waker),
        1 => Some(TokenKind::Udp),
        2 => Some(TokenKind::StreamListener),
        3 => Some(TokenKind::Conn),
        4 => Some(TokenKind::Relay),
        _ => None,
    };
    (kind, (t.0 >> KIND_BITS) as u32)
}

/// `Interest` of client connections: both, edge-triggered.
pub(crate) const CONN_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (kind, index) in [
            (TokenKind::Relay, 0),
            (TokenKind::Conn, 12345),
            (TokenKind::Udp, 7),
        ] {
            let (k, i) = decode(token(kind, index));
            assert_eq!((k, i), (Some(kind), index));
        }
        assert_eq!(token(TokenKind::Waker, 0), Token(0));
    }
}
