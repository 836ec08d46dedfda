//! Property tests for the STUN message codec and the ChannelData codec.
//!
//! Three properties per codec: (a) encode → parse round trip, (b) the encoder's
//! length bookkeeping matches what it writes / the framing recovers frames,
//! (c) arbitrary, mutated and truncated input never panics and never breaks the
//! parsers' invariants (through the fuzz harness, `fuzz/src/stun_parse.rs`).

#[path = "../../fuzz/src/stun_parse.rs"]
mod harness;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;
use turn_core::stun::{
    attr, channel_data_header, decode_address, decode_error_code, decode_u32, decode_xor_address,
    frame_len, is_channel_data, parse_channel_data, round_up_4, Class, IntegrityKind, Message,
    MessageBuilder, Method, ParseError, RawAttribute, TransactionId, CHANNEL_MAX, CHANNEL_MIN,
    HEADER_LEN,
};

// ---------------------------------------------------------------- strategies

/// An attribute as the test adds it, with what decoding it must give back.
#[derive(Debug, Clone)]
enum Attr {
    Raw(u16, Vec<u8>),
    XorAddress(u16, SocketAddr),
    Address(u16, SocketAddr),
    U32(u16, u32),
    ErrorCode(u16, String),
    Unknown(Vec<u16>),
}

impl Attr {
    fn typ(&self) -> u16 {
        match self {
            Attr::Raw(t, _) | Attr::XorAddress(t, _) | Attr::Address(t, _) | Attr::U32(t, _) => *t,
            Attr::ErrorCode(..) => attr::ERROR_CODE,
            Attr::Unknown(_) => attr::UNKNOWN_ATTRIBUTES,
        }
    }

    fn add_to(&self, b: &mut MessageBuilder) {
        match self {
            Attr::Raw(t, v) => b.attribute(*t, v),
            Attr::XorAddress(t, a) => b.xor_address(*t, *a),
            Attr::Address(t, a) => b.address(*t, *a),
            Attr::U32(t, v) => b.u32(*t, *v),
            Attr::ErrorCode(code, reason) => b.error_code(*code, reason),
            Attr::Unknown(types) => b.unknown_attributes(types),
        };
    }

    /// Asserts that `got` (from the parser) is this attribute.
    fn check(&self, got: &RawAttribute<'_>, txid: &TransactionId) -> Result<(), TestCaseError> {
        prop_assert_eq!(got.typ, self.typ());
        match self {
            Attr::Raw(_, v) => prop_assert_eq!(got.value, &v[..]),
            Attr::XorAddress(_, a) => prop_assert_eq!(decode_xor_address(got.value, txid), Ok(*a)),
            Attr::Address(_, a) => prop_assert_eq!(decode_address(got.value), Ok(*a)),
            Attr::U32(_, v) => prop_assert_eq!(decode_u32(got.value), Ok(*v)),
            Attr::ErrorCode(code, reason) => {
                prop_assert_eq!(decode_error_code(got.value), Ok((*code, reason.as_str())))
            }
            Attr::Unknown(types) => {
                let want: Vec<u8> = types.iter().flat_map(|t| t.to_be_bytes()).collect();
                prop_assert_eq!(got.value, &want[..]);
            }
        }
        Ok(())
    }
}

fn is_special(t: u16) -> bool {
    matches!(
        t,
        attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
    )
}

/// Any attribute type except the three with placement rules.
fn plain_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        any::<u16>(),
        // Bias towards real, known types.
        prop::sample::select(vec![
            attr::USERNAME,
            attr::REALM,
            attr::NONCE,
            attr::SOFTWARE,
            attr::LIFETIME,
            attr::DATA,
            attr::XOR_PEER_ADDRESS,
            attr::CHANNEL_NUMBER,
            attr::REQUESTED_TRANSPORT,
        ]),
    ]
    .prop_map(|t| if is_special(t) { t ^ 0x4000 } else { t })
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        }),
    ]
}

fn attribute() -> impl Strategy<Value = Attr> {
    prop_oneof![
        3 => (plain_type(), vec(any::<u8>(), 0..40)).prop_map(|(t, v)| Attr::Raw(t, v)),
        1 => (plain_type(), socket_addr()).prop_map(|(t, a)| Attr::XorAddress(t, a)),
        1 => (plain_type(), socket_addr()).prop_map(|(t, a)| Attr::Address(t, a)),
        1 => (plain_type(), any::<u32>()).prop_map(|(t, v)| Attr::U32(t, v)),
        1 => (300u16..700, ".{0,20}").prop_map(|(c, r)| Attr::ErrorCode(c, r)),
        1 => vec(any::<u16>(), 0..6).prop_map(Attr::Unknown),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error),
    ]
}

/// A message to build: header, attributes, optional integrity attributes
/// (with attributes after them that the parser must ignore), optional FINGERPRINT.
#[derive(Debug, Clone)]
struct Spec {
    method: Method,
    class: Class,
    txid: TransactionId,
    attrs: Vec<Attr>,
    mi: Option<Vec<u8>>,
    mi_sha256: Option<Vec<u8>>,
    ignored: Vec<Attr>,
    fingerprint: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0u16..0x1000, class(), any::<[u8; 12]>()),
        vec(attribute(), 0..12),
        proptest::option::of(vec(any::<u8>(), 0..40)),
        proptest::option::of(vec(any::<u8>(), 0..40)),
        vec(attribute(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |((m, class, txid), attrs, mi, mi_sha256, ignored, fingerprint)| Spec {
                method: Method(m),
                class,
                txid: TransactionId(txid),
                attrs,
                mi,
                mi_sha256,
                ignored,
                fingerprint,
            },
        )
}

/// What building a [`Spec`] produced.
struct Built {
    bytes: Vec<u8>,
    /// End offset of the last integrity attribute (0 without integrity).
    integrity_end: usize,
    /// The key `verify_integrity` must accept.
    key: Option<Vec<u8>>,
}

/// Builds `spec`, checking after every call that `len()` is the real length
/// and that the header length field agrees (property (b)).
fn build(spec: &Spec) -> Result<Built, TestCaseError> {
    let mut b = MessageBuilder::new(spec.method, spec.class, spec.txid);
    fn check_len(b: &MessageBuilder) -> Result<(), TestCaseError> {
        let bytes = b.clone().finish();
        prop_assert_eq!(b.len(), bytes.len());
        prop_assert_eq!(b.len() % 4, 0);
        let field = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        prop_assert_eq!(field + HEADER_LEN, bytes.len());
        Ok(())
    }
    check_len(&b)?;
    for a in &spec.attrs {
        let before = b.len();
        a.add_to(&mut b);
        check_len(&b)?;
        prop_assert!(b.len() > before);
    }
    let mut integrity_end = 0;
    if let Some(k) = &spec.mi {
        b.message_integrity(k);
        check_len(&b)?;
        integrity_end = b.len();
    }
    if let Some(k) = &spec.mi_sha256 {
        b.message_integrity_sha256(k);
        check_len(&b)?;
        integrity_end = b.len();
    }
    if integrity_end > 0 {
        for a in &spec.ignored {
            a.add_to(&mut b);
            check_len(&b)?;
        }
    }
    if spec.fingerprint {
        b.fingerprint();
        check_len(&b)?;
    }
    let len = b.len();
    let bytes = b.finish();
    prop_assert_eq!(len, bytes.len());
    let key = spec.mi_sha256.clone().or_else(|| spec.mi.clone());
    Ok(Built {
        bytes,
        integrity_end,
        key,
    })
}

// ---------------------------------------------------------------- STUN messages

proptest! {
    /// (a) Whatever the builder writes parses back to the same header and attributes,
    /// integrity verifies with the right key, FINGERPRINT checks out, and the
    /// attributes after an integrity attribute are not returned.
    #[test]
    fn message_round_trip(spec in spec()) {
        let built = build(&spec)?;
        let msg = Message::parse(&built.bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(msg.method(), spec.method);
        prop_assert_eq!(msg.class(), spec.class);
        prop_assert_eq!(msg.transaction_id(), spec.txid);
        prop_assert_eq!(msg.bytes(), &built.bytes[..]);

        let got: Vec<RawAttribute<'_>> = msg.attributes().collect();
        let mut expected_types: Vec<u16> = spec.attrs.iter().map(Attr::typ).collect();
        if spec.mi.is_some() { expected_types.push(attr::MESSAGE_INTEGRITY); }
        if spec.mi_sha256.is_some() { expected_types.push(attr::MESSAGE_INTEGRITY_SHA256); }
        if spec.fingerprint { expected_types.push(attr::FINGERPRINT); }
        let got_types: Vec<u16> = got.iter().map(|a| a.typ).collect();
        prop_assert_eq!(&got_types, &expected_types);
        for (want, have) in spec.attrs.iter().zip(&got) {
            want.check(have, &spec.txid)?;
        }
        // attribute(t) is the first one of type t.
        for a in &spec.attrs {
            let first = spec.attrs.iter().position(|x| x.typ() == a.typ()).unwrap_or(0);
            prop_assert_eq!(msg.attribute(a.typ()), Some(got[first]));
        }
        // unknown_required: the comprehension-required types, deduplicated, at most 8.
        let mut want_unknown: Vec<u16> = Vec::new();
        for t in &expected_types {
            if *t < 0x8000 && !want_unknown.contains(t) && want_unknown.len() < 8 {
                want_unknown.push(*t);
            }
        }
        let unknown = msg.unknown_required(&[]);
        prop_assert_eq!(unknown.as_slice(), &want_unknown[..]);
        let all_known: Vec<u16> = expected_types.clone();
        prop_assert!(msg.unknown_required(&all_known).is_empty());

        let kind = match (&spec.mi, &spec.mi_sha256) {
            (_, Some(_)) => Some(IntegrityKind::Sha256),
            (Some(_), None) => Some(IntegrityKind::Sha1),
            (None, None) => None,
        };
        prop_assert_eq!(msg.integrity(), kind);
        match &built.key {
            Some(key) => {
                prop_assert!(msg.verify_integrity(key));
                // (Appending a zero byte would not do: HMAC zero-pads short keys.)
                let mut wrong = key.clone();
                wrong.push(1);
                prop_assert!(!msg.verify_integrity(&wrong));
            }
            None => prop_assert!(!msg.verify_integrity(b"")),
        }
        prop_assert_eq!(msg.fingerprint_ok(), spec.fingerprint.then_some(true));
        prop_assert_eq!(frame_len(&built.bytes), Ok(Some(built.bytes.len())));
        prop_assert!(!is_channel_data(&built.bytes));
    }

    /// (b) `len()` before `finish()` is the encoded length, at every step
    /// (checked inside `build`), and the header length field matches it.
    #[test]
    fn builder_len_matches_encoding(spec in spec()) {
        let built = build(&spec)?;
        let declared = usize::from(u16::from_be_bytes([built.bytes[2], built.bytes[3]]));
        prop_assert_eq!(declared + HEADER_LEN, built.bytes.len());
    }

    /// (c) Flipping a byte never panics; a flip inside the bytes covered by the
    /// integrity attribute is always detected, and FINGERPRINT catches every flip.
    #[test]
    fn flipped_message_never_panics_and_is_detected(
        spec in spec(),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let built = build(&spec)?;
        let mut bytes = built.bytes.clone();
        let i = index.index(bytes.len());
        bytes[i] ^= mask;
        harness::run(&bytes);
        if let Ok(msg) = Message::parse(&bytes) {
            if let Some(key) = &built.key {
                if i < built.integrity_end {
                    prop_assert!(!msg.verify_integrity(key), "flip at {} not detected", i);
                }
            }
            if spec.fingerprint {
                prop_assert_ne!(msg.fingerprint_ok(), Some(true));
            }
        }
    }

    /// (c) Truncating never panics; with the length field patched to match, the
    /// truncated message either fails to parse or lost its integrity.
    #[test]
    fn truncated_message_never_panics(spec in spec(), cut in any::<prop::sample::Index>()) {
        let built = build(&spec)?;
        let n = cut.index(built.bytes.len());
        let truncated = &built.bytes[..n];
        harness::run(truncated);
        prop_assert!(Message::parse(truncated).is_err());

        if n >= HEADER_LEN {
            let mut patched = truncated.to_vec();
            let len = u16::try_from(n - HEADER_LEN).unwrap_or(u16::MAX);
            patched[2..4].copy_from_slice(&len.to_be_bytes());
            harness::run(&patched);
            if let (Ok(msg), Some(key)) = (Message::parse(&patched), &built.key) {
                if n < built.integrity_end {
                    prop_assert!(!msg.verify_integrity(key));
                }
            }
        }
    }

    /// (c) Arbitrary bytes never panic any parser or decoder.
    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..300)) {
        harness::run(&data);
    }

    /// (c) Arbitrary bytes behind a valid header (so the attribute walk and the
    /// integrity code are reached) never panic.
    #[test]
    fn random_attributes_never_panic(
        typ in 0u16..0x4000,
        txid in any::<[u8; 12]>(),
        words in vec(any::<[u8; 4]>(), 0..60),
        known in vec(any::<u16>(), 0..10),
        key in vec(any::<u8>(), 0..40),
    ) {
        let mut data = Vec::with_capacity(HEADER_LEN + 4 * words.len());
        data.extend_from_slice(&typ.to_be_bytes());
        data.extend_from_slice(&u16::try_from(4 * words.len()).unwrap_or(0).to_be_bytes());
        data.extend_from_slice(&turn_core::stun::MAGIC_COOKIE.to_be_bytes());
        data.extend_from_slice(&txid);
        for w in &words {
            data.extend_from_slice(w);
        }
        harness::run(&data);
        if let Ok(msg) = Message::parse(&data) {
            let _ = msg.unknown_required(&known);
            let _ = msg.verify_integrity(&key);
            let _ = msg.fingerprint_ok();
        }
    }
}

// ---------------------------------------------------------------- ChannelData

fn channel() -> impl Strategy<Value = u16> {
    CHANNEL_MIN..=CHANNEL_MAX
}

/// One frame of a TCP/TLS stream: a STUN message or padded ChannelData.
fn stream_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (channel(), vec(any::<u8>(), 0..100)).prop_map(|(c, payload)| {
            let len = u16::try_from(payload.len()).unwrap_or(0);
            let mut f = channel_data_header(c, len).to_vec();
            f.extend_from_slice(&payload);
            f.resize(4 + round_up_4(payload.len()), 0);
            f
        }),
        (any::<[u8; 12]>(), vec(attribute(), 0..4)).prop_map(|(txid, attrs)| {
            let mut b = MessageBuilder::new(Method::SEND, Class::Indication, TransactionId(txid));
            for a in &attrs {
                a.add_to(&mut b);
            }
            b.finish()
        }),
    ]
}

proptest! {
    /// (a) Header + payload (+ any trailing padding, as UDP allows) parses back.
    #[test]
    fn channel_data_round_trip(
        c in channel(),
        payload in vec(any::<u8>(), 0..300),
        padding in vec(any::<u8>(), 0..4),
    ) {
        let len = u16::try_from(payload.len()).unwrap_or(0);
        let mut buf = channel_data_header(c, len).to_vec();
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&padding);
        prop_assert!(is_channel_data(&buf));
        let cd = parse_channel_data(&buf).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(cd.channel, c);
        prop_assert_eq!(cd.payload, &payload[..]);
        prop_assert_eq!(frame_len(&buf), Ok(Some(4 + round_up_4(payload.len()))));
        prop_assert!(Message::parse(&buf).is_err());
        harness::run(&buf);
    }

    /// (b) Framing: a stream of STUN messages and padded ChannelData, delivered
    /// in arbitrary chunks, is cut by `frame_len` into exactly the frames sent.
    #[test]
    fn stream_framing_recovers_frames(
        frames in vec(stream_frame(), 1..8),
        chunk in 1usize..64,
    ) {
        let stream: Vec<u8> = frames.concat();
        let mut pending: Vec<u8> = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            while let Some(n) = frame_len(&pending).map_err(|e| TestCaseError::fail(format!("{e}")))? {
                if pending.len() < n {
                    break;
                }
                let frame: Vec<u8> = pending.drain(..n).collect();
                if is_channel_data(&frame) {
                    prop_assert!(parse_channel_data(&frame).is_ok());
                } else {
                    prop_assert!(Message::parse(&frame).is_ok());
                }
                out.push(frame);
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(out, frames);
    }

    /// (c) Random, flipped and truncated ChannelData never panics; what parses
    /// obeys the range and length rules, and a truncated payload is rejected.
    #[test]
    fn channel_data_mutations_never_panic(
        c in channel(),
        payload in vec(any::<u8>(), 1..100),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        random in vec(any::<u8>(), 0..64),
    ) {
        let len = u16::try_from(payload.len()).unwrap_or(0);
        let mut buf = channel_data_header(c, len).to_vec();
        buf.extend_from_slice(&payload);

        // Truncated: every prefix shorter than header + payload is rejected.
        for n in 0..buf.len() {
            let want = if n < 4 { ParseError::TooShort } else { ParseError::BadLength };
            prop_assert_eq!(parse_channel_data(&buf[..n]), Err(want));
            harness::run(&buf[..n]);
        }
        // Flipped.
        let i = index.index(buf.len());
        buf[i] ^= mask;
        harness::run(&buf);
        match parse_channel_data(&buf) {
            Ok(cd) => {
                prop_assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
                prop_assert!(cd.payload.len() + 4 <= buf.len());
            }
            Err(e) => prop_assert!(matches!(e, ParseError::BadChannel | ParseError::BadLength)),
        }
        // Random.
        harness::run(&random);
        if let Ok(cd) = parse_channel_data(&random) {
            prop_assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
        }
    }
}
