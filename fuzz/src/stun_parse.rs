//! The `stun_parse` fuzz harness: every receive-side entry point of the
//! turn-core STUN/TURN codec on one input, with the invariants that must hold
//! whenever a parser accepts it.
//!
//! Shared by `fuzz_targets/stun_parse.rs` and, through `#[path]`, by
//! turn-core's `stun_fuzz_corpus` and `stun_proptest` tests, so the seed corpus
//! and the property tests replay exactly what the fuzzer runs. It only names
//! `turn_core::stun` paths so that it compiles in both crates.

use turn_core::stun::{
    attr, decode_address, decode_address_family, decode_channel_number, decode_error_code,
    decode_even_port, decode_requested_transport, decode_reservation_token, decode_u32,
    decode_utf8, decode_xor_address, frame_len, is_channel_data, long_term_key, parse_channel_data,
    round_up_4, IntegrityKind, Message, MessageBuilder, TransactionId, CHANNEL_MAX, CHANNEL_MIN,
    HEADER_LEN,
};

/// Short-term key of RFC 5769 §2.1–2.3, so seeds from those vectors reach the
/// successful-verification path.
pub const SHORT_TERM_KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// Attribute types a TURN server understands (for `unknown_required`).
pub const KNOWN: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::ERROR_CODE,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::RESERVATION_TOKEN,
    attr::USERHASH,
    attr::PASSWORD_ALGORITHM,
];

/// Feeds `data` to every parser; panics only if an invariant is broken.
pub fn run(data: &[u8]) {
    let frame = frame_len(data);
    match data.first_chunk::<4>() {
        None => assert_eq!(frame, Ok(None)),
        Some(h) if h[0] >> 6 >= 2 => assert!(frame.is_err()),
        Some(_) => assert!(matches!(frame, Ok(Some(n)) if n >= 4)),
    }

    if let Ok(cd) = parse_channel_data(data) {
        assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
        assert!(cd.payload.len() + 4 <= data.len());
        assert!(is_channel_data(data));
        assert_eq!(frame, Ok(Some(4 + round_up_4(cd.payload.len()))));
    }

    if let Ok(msg) = Message::parse(data) {
        check_message(data, &msg);
    }
}

fn check_message(data: &[u8], msg: &Message<'_>) {
    assert!(!is_channel_data(data));
    assert_eq!(frame_len(data), Ok(Some(data.len())));
    assert_eq!(msg.bytes().len(), data.len());
    let txid = msg.transaction_id();
    let _ = (msg.method(), msg.class());

    let mut has_integrity = false;
    let mut last = None;
    let mut rebuilt = MessageBuilder::new(msg.method(), msg.class(), txid);
    for a in msg.attributes() {
        assert_eq!(msg.attribute(a.typ).map(|first| first.typ), Some(a.typ));
        has_integrity |=
            a.typ == attr::MESSAGE_INTEGRITY || a.typ == attr::MESSAGE_INTEGRITY_SHA256;
        last = Some(a.typ);
        decode_all(a.typ, a.value, &txid);
        rebuilt.attribute(a.typ, a.value);
    }
    assert_eq!(msg.integrity().is_some(), has_integrity);
    assert_eq!(
        msg.fingerprint_ok().is_some(),
        last == Some(attr::FINGERPRINT)
    );

    let unknown = msg.unknown_required(KNOWN);
    assert!(unknown
        .as_slice()
        .iter()
        .all(|t| *t < 0x8000 && !KNOWN.contains(t)));

    let ok_short = msg.verify_integrity(SHORT_TERM_KEY);
    let key = long_term_key("user", "realm", "pass");
    let ok_long = msg.verify_integrity(&key);
    if ok_short || ok_long {
        assert!(matches!(
            msg.integrity(),
            Some(IntegrityKind::Sha1 | IntegrityKind::Sha256)
        ));
    }
    let _ = msg.fingerprint_ok();

    // Re-encoding the attributes that count gives a message with the same ones.
    let len = rebuilt.len();
    let bytes = rebuilt.finish();
    assert_eq!(bytes.len(), len);
    assert!(bytes.len() <= data.len());
    let again = Message::parse(&bytes);
    assert!(
        again.is_ok(),
        "re-encoded message does not parse: {again:?}"
    );
    if let Ok(again) = again {
        assert!(again.attributes().eq(msg.attributes()));
        assert_eq!(again.transaction_id(), txid);
        assert_eq!(again.method(), msg.method());
        assert_eq!(again.class(), msg.class());
    }
}

/// Runs every value decoder on `value` (whatever the type says, for coverage)
/// and checks what they accept.
fn decode_all(typ: u16, value: &[u8], txid: &TransactionId) {
    if let Ok(addr) = decode_xor_address(value, txid) {
        assert!(value.len() == 8 || value.len() == 20);
        let mut b = MessageBuilder::new(
            turn_core::stun::Method::BINDING,
            turn_core::stun::Class::Success,
            *txid,
        );
        b.xor_address(typ, addr);
        let bytes = b.finish();
        let back = bytes
            .get(HEADER_LEN + 4..)
            .map(|v| decode_xor_address(v, txid));
        assert_eq!(back, Some(Ok(addr)));
    }
    if let Ok(addr) = decode_address(value) {
        assert!(value.len() == 8 || value.len() == 20);
        assert_eq!(addr.is_ipv4(), value.len() == 8);
    }
    if decode_u32(value).is_ok() {
        assert_eq!(value.len(), 4);
    }
    if let Ok(s) = decode_utf8(value) {
        assert_eq!(s.len(), value.len());
    }
    if let Ok((code, reason)) = decode_error_code(value) {
        assert!((300..=699).contains(&code));
        assert_eq!(reason.len() + 4, value.len());
    }
    if decode_channel_number(value).is_ok() {
        assert_eq!(value.len(), 4);
    }
    let _ = decode_requested_transport(value);
    let _ = decode_address_family(value);
    let _ = decode_even_port(value);
    let _ = decode_reservation_token(value);
}
