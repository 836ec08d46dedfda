//! QUIC variable-length integers (RFC 9000 §16) and capsules (RFC 9297 §3.2).
//!
//! A varint's two high bits give its length (1, 2, 4 or 8 bytes); values up to 2^62 − 1.
//! A capsule is `type (varint) ‖ length (varint) ‖ value`. Decoding never panics: a short
//! buffer is "need more", a value over its bound is an error.

/// The largest value a varint holds.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// The DATAGRAM capsule (RFC 9297 §3.5): an HTTP Datagram carried on the stream.
pub const DATAGRAM_CAPSULE: u64 = 0x00;

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
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = get_varint(&bytes);
            if let Ok(Some((capsule, taken))) = get_capsule(&bytes, 16) {
                prop_assert!(taken <= bytes.len());
                prop_assert!(capsule.value.len() <= 16);
            }
        }
    }
}
