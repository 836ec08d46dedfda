//! QUIC variable-length integers (RFC 9000 §16), capsules (RFC 9297 §3.2), and bound
//! UDP's compression capsules and address prefix (draft-ietf-masque-connect-udp-listen).
//!
//! A varint's two high bits give its length (1, 2, 4 or 8 bytes); values up to 2^62 − 1.
//! A capsule is `type (varint) ‖ length (varint) ‖ value`. Decoding never panics: a short
//! buffer is "need more", a value over its bound is an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The largest value a varint holds.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// The DATAGRAM capsule (RFC 9297 §3.5): an HTTP Datagram carried on the stream.
pub const DATAGRAM_CAPSULE: u64 = 0x00;

/// COMPRESSION_ASSIGN: registers a Context ID (bound UDP §3.1).
pub const COMPRESSION_ASSIGN: u64 = 0x11;
/// COMPRESSION_ACK: a registration accepted (§3.2).
pub const COMPRESSION_ACK: u64 = 0x12;
/// COMPRESSION_CLOSE: a registration refused or ended (§3.3).
pub const COMPRESSION_CLOSE: u64 = 0x13;

/// How many bytes `value` takes as a varint (`None` over [`VARINT_MAX`]).
pub fn varint_len(value: u64) -> Option<usize> {
    match value {
        0..=63 => Some(1),
        64..=16_383 => Some(2),
        16_384..=1_073_741_823 => Some(4),
        1_073_741_824..=VARINT_MAX => Some(8),
        _ => None,
    }
}

/// Appends `value` as a varint; `false` (nothing written) over [`VARINT_MAX`].
pub fn put_varint(out: &mut Vec<u8>, value: u64) -> bool {
    match varint_len(value) {
        Some(1) => out.push(value as u8),
        Some(2) => out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes()),
        Some(4) => out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes()),
        Some(_) => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
        None => return false,
    }
    true
}

/// Reads a varint from the front of `buf`: the value and the bytes it took, or `None` if
/// `buf` is too short.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

/// One capsule, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capsule<'a> {
    pub kind: u64,
    pub value: &'a [u8],
}

/// Why a capsule stream is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapsuleError {
    #[error("capsule of {0} bytes, over the {1}-byte limit")]
    TooLong(u64, usize),
}

/// Reads the capsule at the front of `buf`: `Ok(Some((capsule, bytes taken)))`,
/// `Ok(None)` if more bytes are needed, or an error if its length is over `max` (the
/// stream is then closed: a peer that announces more than it may send is not waited for).
pub fn get_capsule(buf: &[u8], max: usize) -> Result<Option<(Capsule<'_>, usize)>, CapsuleError> {
    let Some((kind, a)) = get_varint(buf) else {
        return Ok(None);
    };
    let Some((len, b)) = get_varint(&buf[a..]) else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(CapsuleError::TooLong(len, max));
    }
    let start = a + b;
    let end = start + len as usize;
    match buf.get(start..end) {
        Some(value) => Ok(Some((Capsule { kind, value }, end))),
        None => Ok(None),
    }
}

/// Appends a capsule; `false` (nothing written) if `kind` is over [`VARINT_MAX`].
pub fn put_capsule(out: &mut Vec<u8>, kind: u64, value: &[u8]) -> bool {
    if varint_len(kind).is_none() {
        return false;
    }
    put_varint(out, kind);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
    true
}

/// A bound-UDP compression capsule (draft-ietf-masque-connect-udp-listen §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Registers `context`: for one peer address (compressed: the datagrams carry only the
    /// UDP payload), or for none (uncompressed: each datagram starts with the peer's
    /// address, see [`get_address`]).
    Assign {
        context: u64,
        peer: Option<SocketAddr>,
    },
    Ack {
        context: u64,
    },
    Close {
        context: u64,
    },
}

/// Why a compression capsule is malformed (the stream is then aborted, RFC 9297 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    #[error("Context ID 0 is RFC 9298's own")]
    ZeroContext,
    #[error("IP version {0} (0, 4 or 6)")]
    IpVersion(u8),
    #[error("the capsule ends early")]
    Truncated,
    #[error("bytes after the capsule's fields")]
    Trailing,
}

impl Compression {
    /// Reads a compression capsule's value; `None` for other capsule types.
    pub fn parse(kind: u64, value: &[u8]) -> Option<Result<Compression, CompressionError>> {
        if !(COMPRESSION_ASSIGN..=COMPRESSION_CLOSE).contains(&kind) {
            return None;
        }
        Some(Compression::parse_known(kind, value))
    }

    fn parse_known(kind: u64, value: &[u8]) -> Result<Compression, CompressionError> {
        let (context, n) = get_varint(value).ok_or(CompressionError::Truncated)?;
        if context == 0 {
            return Err(CompressionError::ZeroContext);
        }
        let rest = &value[n..];
        let (c, used) = match kind {
            COMPRESSION_ASSIGN => match rest.first() {
                None => return Err(CompressionError::Truncated),
                Some(0) => (
                    Compression::Assign {
                        context,
                        peer: None,
                    },
                    1,
                ),
                Some(_) => {
                    let (peer, used) = get_address(rest)?;
                    let peer = Some(peer);
                    (Compression::Assign { context, peer }, used)
                }
            },
            COMPRESSION_ACK => (Compression::Ack { context }, 0),
            _ => (Compression::Close { context }, 0),
        };
        if rest.len() > used {
            return Err(CompressionError::Trailing);
        }
        Ok(c)
    }

    /// Appends the whole capsule.
    pub fn put(&self, out: &mut Vec<u8>) {
        let mut value = Vec::with_capacity(28);
        let kind = match *self {
            Compression::Assign { context, peer } => {
                put_varint(&mut value, context);
                match peer {
                    Some(peer) => put_address(&mut value, peer),
                    None => value.push(0),
                }
                COMPRESSION_ASSIGN
            }
            Compression::Ack { context } => {
                put_varint(&mut value, context);
                COMPRESSION_ACK
            }
            Compression::Close { context } => {
                put_varint(&mut value, context);
                COMPRESSION_CLOSE
            }
        };
        put_capsule(out, kind, &value);
    }
}

/// Reads `IP Version (8) ‖ IP Address (32 or 128) ‖ UDP Port (16)` from the front of
/// `buf` (the start of an uncompressed bound datagram, and an ASSIGN's target): the
/// address and the bytes it took.
pub fn get_address(buf: &[u8]) -> Result<(SocketAddr, usize), CompressionError> {
    let version = *buf.first().ok_or(CompressionError::Truncated)?;
    let len = match version {
        4 => 4,
        6 => 16,
        v => return Err(CompressionError::IpVersion(v)),
    };
    let field = buf.get(1..1 + len + 2).ok_or(CompressionError::Truncated)?;
    let (ip, port) = field.split_at(len);
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(ip).map_err(|_| CompressionError::Truncated)?,
        )),
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok((SocketAddr::new(ip, port), 1 + len + 2))
}

/// Appends `addr` as [`get_address`] reads it.
pub fn put_address(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc9000_examples() {
        // RFC 9000 §A.1.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(get_varint(bytes), Some((value, bytes.len())));
            let mut out = Vec::new();
            assert!(put_varint(&mut out, value));
            assert_eq!(out, bytes);
        }
        // A two-byte encoding of 37 decodes too (§A.1: not minimal, still valid).
        assert_eq!(get_varint(&[0x40, 0x25]), Some((37, 2)));
        assert!(!put_varint(&mut Vec::new(), VARINT_MAX + 1));
    }

    proptest! {
        #[test]
        fn varints_round_trip(value in 0..=VARINT_MAX, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            prop_assert!(put_varint(&mut out, value));
            let len = out.len();
            prop_assert_eq!(Some(len), varint_len(value));
            out.extend_from_slice(&tail);
            prop_assert_eq!(get_varint(&out), Some((value, len)));
            // Every strict prefix asks for more.
            for cut in 0..len {
                prop_assert_eq!(get_varint(&out[..cut]), None);
            }
        }

        #[test]
        fn capsules_round_trip(kind in 0..=VARINT_MAX, value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            prop_assert!(put_capsule(&mut out, kind, &value));
            let got = get_capsule(&out, 1500).expect("within the limit").expect("whole");
            prop_assert_eq!(got, (Capsule { kind, value: &value }, out.len()));
            for cut in 0..out.len() {
                prop_assert_eq!(get_capsule(&out[..cut], 1500), Ok(None));
            }
        }

        #[test]
        fn compression_capsules_round_trip(
            kind in 0..3u8,
            context in 1..=VARINT_MAX,
            peer in proptest::option::of(any::<(IpAddr, u16)>()),
        ) {
            // The wire carries the address and port (no IPv6 flow label or scope).
            let peer = peer.map(SocketAddr::from);
            let c = match kind {
                0 => Compression::Assign { context, peer },
                1 => Compression::Ack { context },
                _ => Compression::Close { context },
            };
            let mut out = Vec::new();
            c.put(&mut out);
            let (capsule, taken) = get_capsule(&out, 64).expect("small").expect("whole");
            prop_assert_eq!(taken, out.len());
            prop_assert_eq!(Compression::parse(capsule.kind, capsule.value), Some(Ok(c)));
            // Every strict prefix of the value is truncated; one more byte is trailing.
            for cut in 0..capsule.value.len() {
                let got = Compression::parse(capsule.kind, &capsule.value[..cut]);
                prop_assert_eq!(got, Some(Err(CompressionError::Truncated)));
            }
            let mut longer = capsule.value.to_vec();
            longer.push(0);
            prop_assert_eq!(
                Compression::parse(capsule.kind, &longer),
                Some(Err(CompressionError::Trailing))
            );
        }

        #[test]
        fn addresses_round_trip(addr in any::<(IpAddr, u16)>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let addr = SocketAddr::from(addr);
            let mut out = Vec::new();
            put_address(&mut out, addr);
            let len = out.len();
            out.extend_from_slice(&payload);
            prop_assert_eq!(get_address(&out), Ok((addr, len)));
            prop_assert_eq!(&out[len..], &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = get_varint(&bytes);
            let _ = get_address(&bytes);
            for kind in COMPRESSION_ASSIGN..=COMPRESSION_CLOSE {
                // What parses re-encodes to a capsule that parses the same.
                if let Some(Ok(c)) = Compression::parse(kind, &bytes) {
                    let mut out = Vec::new();
                    c.put(&mut out);
                    let (capsule, _) = get_capsule(&out, 64).expect("small").expect("whole");
                    prop_assert_eq!(Compression::parse(capsule.kind, capsule.value), Some(Ok(c)));
                }
            }
            if let Ok(Some((capsule, taken))) = get_capsule(&bytes, 16) {
                prop_assert!(taken <= bytes.len());
                prop_assert!(capsule.value.len() <= 16);
            }
        }
    }
}
