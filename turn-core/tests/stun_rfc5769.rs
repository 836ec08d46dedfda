//! RFC 5769 STUN test vectors, and RFC 8489 Appendix B.1
//! (MESSAGE-INTEGRITY-SHA256 with USERHASH), through the turn-core codec.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use turn_core::stun::{
    attr, decode_u32, decode_utf8, decode_xor_address, long_term_key, long_term_key_sha256, Class,
    IntegrityKind, Message, MessageBuilder, Method, TransactionId,
};

/// Hex with whitespace and `#` comments to the end of the line.
fn h(s: &str) -> Vec<u8> {
    let digits: String = s
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).expect("test vector hex")
}

/// RFC 5769 §2.1 Sample Request.
fn sample_request() -> Vec<u8> {
    h("
        00 01 00 58   # Request type and message length
        21 12 a4 42   # Magic cookie
        b7 e7 a7 01   # }
        bc 34 d6 86   # }  Transaction ID
        fa 87 df ae   # }
        80 22 00 10   # SOFTWARE attribute header
        53 54 55 4e   # }
        20 74 65 73   # }  User-agent...
        74 20 63 6c   # }  ...name
        69 65 6e 74   # }
        00 24 00 04   # PRIORITY attribute header
        6e 00 01 ff   # ICE priority value
        80 29 00 08   # ICE-CONTROLLED attribute header
        93 2f f9 b1   # }  Pseudo-random tie breaker...
        51 26 3b 36   # }   ...for ICE control
        00 06 00 09   # USERNAME attribute header
        65 76 74 6a   # }
        3a 68 36 76   # }  Username (9 bytes) and padding (3 bytes)
        59 20 20 20   # }
        00 08 00 14   # MESSAGE-INTEGRITY attribute header
        9a ea a7 0c   # }
        bf d8 cb 56   # }
        78 1e f2 b5   # }  HMAC-SHA1 fingerprint
        b2 d3 f2 49   # }
        c1 b5 71 a2   # }
        80 28 00 04   # FINGERPRINT attribute header
        e5 7a 3b cf   # CRC32 fingerprint
    ")
}

/// RFC 5769 §2.2 Sample IPv4 Response.
fn sample_ipv4_response() -> Vec<u8> {
    h("
        01 01 00 3c   # Response type and message length
        21 12 a4 42   # Magic cookie
        b7 e7 a7 01   # }
        bc 34 d6 86   # }  Transaction ID
        fa 87 df ae   # }
        80 22 00 0b   # SOFTWARE attribute header
        74 65 73 74   # }
        20 76 65 63   # }  UTF-8 server name
        74 6f 72 20   # }
        00 20 00 08   # XOR-MAPPED-ADDRESS attribute header
        00 01 a1 47   # Address family (IPv4) and xor'd mapped port number
        e1 12 a6 43   # Xor'd mapped IPv4 address
        00 08 00 14   # MESSAGE-INTEGRITY attribute header
        2b 91 f5 99   # }
        fd 9e 90 c3   # }
        8c 74 89 f9   # }  HMAC-SHA1 fingerprint
        2a f9 ba 53   # }
        f0 6b e7 d7   # }
        80 28 00 04   # FINGERPRINT attribute header
        c0 7d 4c 96   # CRC32 fingerprint
    ")
}

/// RFC 5769 §2.3 Sample IPv6 Response.
fn sample_ipv6_response() -> Vec<u8> {
    h("
        01 01 00 48   # Response type and message length
        21 12 a4 42   # Magic cookie
        b7 e7 a7 01   # }
        bc 34 d6 86   # }  Transaction ID
        fa 87 df ae   # }
        80 22 00 0b   # SOFTWARE attribute header
        74 65 73 74   # }
        20 76 65 63   # }  UTF-8 server name
        74 6f 72 20   # }
        00 20 00 14   # XOR-MAPPED-ADDRESS attribute header
        00 02 a1 47   # Address family (IPv6) and xor'd mapped port number
        01 13 a9 fa   # }
        a5 d3 f1 79   # }  Xor'd mapped IPv6 address
        bc 25 f4 b5   # }
        be d2 b9 d9   # }
        00 08 00 14   # MESSAGE-INTEGRITY attribute header
        a3 82 95 4e   # }
        4b e6 7b f1   # }
        17 84 c9 7c   # }  HMAC-SHA1 fingerprint
        82 92 c2 75   # }
        bf e3 ed 41   # }
        80 28 00 04   # FINGERPRINT attribute header
        c8 fb 0b 4c   # CRC32 fingerprint
    ")
}

/// RFC 5769 §2.4 Sample Request with Long-Term Authentication.
fn sample_long_term_request() -> Vec<u8> {
    h("
        00 01 00 60   # Request type and message length
        21 12 a4 42   # Magic cookie
        78 ad 34 33   # }
        c6 ad 72 c0   # }  Transaction ID
        29 da 41 2e   # }
        00 06 00 12   # USERNAME attribute header
        e3 83 9e e3   # }
        83 88 e3 83   # }
        aa e3 83 83   # }  Username value (18 bytes) and padding (2 bytes)
        e3 82 af e3   # }
        82 b9 00 00   # }
        00 15 00 1c   # NONCE attribute header
        66 2f 2f 34   # }
        39 39 6b 39   # }
        35 34 64 36   # }
        4f 4c 33 34   # }  Nonce value
        6f 4c 39 46   # }
        53 54 76 79   # }
        36 34 73 41   # }
        00 14 00 0b   # REALM attribute header
        65 78 61 6d   # }
        70 6c 65 2e   # }  Realm value (11 bytes) and padding (1 byte)
        6f 72 67 00   # }
        00 08 00 14   # MESSAGE-INTEGRITY attribute header
        f6 70 24 65   # }
        6d d6 4a 3e   # }
        02 b8 e0 71   # }  HMAC-SHA1 fingerprint
        2e 85 c9 a2   # }
        8c a8 96 66   # }
    ")
}

/// RFC 8489 Appendix B.1: long-term authentication with USERHASH,
/// PASSWORD-ALGORITHM SHA-256 and MESSAGE-INTEGRITY-SHA256.
fn sample_sha256_request() -> Vec<u8> {
    h("
        00 01 00 90   # Request type and message length
        21 12 a4 42   # Magic cookie
        78 ad 34 33   # }
        c6 ad 72 c0   # }  Transaction ID
        29 da 41 2e   # }
        00 1e 00 20   # USERHASH attribute header
        4a 3c f3 8f   # }
        ef 69 92 bd   # }
        a9 52 c6 78   # }
        04 17 da 0f   # }  Userhash value (32 bytes)
        24 81 94 15   # }
        56 9e 60 b2   # }
        05 c4 6e 41   # }
        40 7f 17 04   # }
        00 15 00 29   # NONCE attribute header
        6f 62 4d 61   # }
        74 4a 6f 73   # }
        32 41 41 41   # }
        43 66 2f 2f   # }
        34 39 39 6b   # }  Nonce value and padding (3 bytes)
        39 35 34 64   # }
        36 4f 4c 33   # }
        34 6f 4c 39   # }
        46 53 54 76   # }
        79 36 34 73   # }
        41 00 00 00   # }
        00 14 00 0b   # REALM attribute header
        65 78 61 6d   # }
        70 6c 65 2e   # }  Realm value (11 bytes) and padding (1 byte)
        6f 72 67 00   # }
        00 1d 00 04   # PASSWORD-ALGORITHM attribute header
        00 02 00 00   # PASSWORD-ALGORITHM value (4 bytes)
        00 1c 00 20   # MESSAGE-INTEGRITY-SHA256 attribute header
        b5 c7 bf 00   # }
        5b 6c 52 a2   # }
        1c 51 c5 e8   # }
        92 f8 19 24   # }  HMAC-SHA256 value
        13 62 96 cb   # }
        92 7c 43 14   # }
        93 09 27 8c   # }
        c6 51 8e 65   # }
    ")
}

const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const RFC5769_TXID: TransactionId = TransactionId([
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
]);
const LONG_TERM_TXID: TransactionId = TransactionId([
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
]);
/// "マトリックス" (RFC 5769 §2.4, RFC 8489 B.1), unchanged by SASLprep/OpaqueString.
const LT_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const LT_REALM: &str = "example.org";
/// "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
const LT_PASSWORD: &str = "TheMatrIX";

fn types(msg: &Message<'_>) -> Vec<u16> {
    msg.attributes().map(|a| a.typ).collect()
}

fn utf8_attr<'a>(msg: &Message<'a>, typ: u16) -> &'a str {
    let a = msg.attribute(typ).expect("attribute present");
    decode_utf8(a.value).expect("utf-8")
}

/// Flips every bit of `bytes` in turn and checks that no flipped message both
/// parses and verifies with `key`, except flips after the end of the integrity
/// attribute (`covered`), and that FINGERPRINT (if any) catches every flip.
fn assert_every_bit_flip_detected(bytes: &[u8], key: &[u8], covered: usize, has_fingerprint: bool) {
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.to_vec();
            m[i] ^= 1 << bit;
            let Ok(msg) = Message::parse(&m) else {
                continue;
            };
            if i < covered {
                assert!(
                    !msg.verify_integrity(key),
                    "flip of byte {i} bit {bit} not detected"
                );
            } else {
                // Outside the HMAC: integrity still holds, FINGERPRINT must not.
                assert!(msg.verify_integrity(key), "byte {i} bit {bit}");
            }
            if has_fingerprint {
                assert_ne!(msg.fingerprint_ok(), Some(true), "byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn rfc5769_2_1_sample_request() {
    let bytes = sample_request();
    assert_eq!(bytes.len(), 108);
    let msg = Message::parse(&bytes).expect("RFC 5769 §2.1 parses");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), RFC5769_TXID);
    assert_eq!(msg.bytes(), &bytes[..]);
    assert_eq!(
        types(&msg),
        [
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(utf8_attr(&msg, attr::SOFTWARE), "STUN test client");
    assert_eq!(utf8_attr(&msg, attr::USERNAME), "evtj:h6vY");
    let priority = msg.attribute(attr::PRIORITY).expect("PRIORITY");
    assert_eq!(decode_u32(priority.value), Ok(0x6e00_01ff));
    let controlled = msg.attribute(attr::ICE_CONTROLLED).expect("ICE-CONTROLLED");
    assert_eq!(
        controlled.value,
        [0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36]
    );
    // PRIORITY (0x0024) is comprehension-required; ICE-CONTROLLED is optional.
    let unknown = msg.unknown_required(&[attr::USERNAME, attr::MESSAGE_INTEGRITY]);
    assert_eq!(unknown.as_slice(), [attr::PRIORITY]);

    assert_eq!(msg.integrity(), Some(IntegrityKind::Sha1));
    assert!(msg.verify_integrity(SHORT_TERM_PASSWORD.as_bytes()));
    assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"));
    assert!(!msg.verify_integrity(b""));
    assert_eq!(msg.fingerprint_ok(), Some(true));

    assert_every_bit_flip_detected(&bytes, SHORT_TERM_PASSWORD.as_bytes(), 100, true);
}

#[test]
fn rfc5769_2_2_ipv4_response() {
    let bytes = sample_ipv4_response();
    let msg = Message::parse(&bytes).expect("RFC 5769 §2.2 parses");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Success);
    assert_eq!(msg.transaction_id(), RFC5769_TXID);
    assert_eq!(
        types(&msg),
        [
            attr::SOFTWARE,
            attr::XOR_MAPPED_ADDRESS,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(utf8_attr(&msg, attr::SOFTWARE), "test vector");
    let xma = msg
        .attribute(attr::XOR_MAPPED_ADDRESS)
        .expect("XOR-MAPPED-ADDRESS");
    let expected: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
    assert_eq!(
        decode_xor_address(xma.value, &msg.transaction_id()),
        Ok(expected)
    );
    assert!(msg.verify_integrity(SHORT_TERM_PASSWORD.as_bytes()));
    assert!(!msg.verify_integrity(b"wrong"));
    assert_eq!(msg.fingerprint_ok(), Some(true));

    // The builder encodes the same attribute bytes.
    let mut b = MessageBuilder::new(Method::BINDING, Class::Success, RFC5769_TXID);
    b.xor_address(attr::XOR_MAPPED_ADDRESS, expected);
    assert_eq!(&b.finish()[20..], &bytes[36..48]);

    assert_every_bit_flip_detected(&bytes, SHORT_TERM_PASSWORD.as_bytes(), 72, true);
}

#[test]
fn rfc5769_2_3_ipv6_response() {
    let bytes = sample_ipv6_response();
    let msg = Message::parse(&bytes).expect("RFC 5769 §2.3 parses");
    assert_eq!(msg.class(), Class::Success);
    assert_eq!(
        types(&msg),
        [
            attr::SOFTWARE,
            attr::XOR_MAPPED_ADDRESS,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    let xma = msg
        .attribute(attr::XOR_MAPPED_ADDRESS)
        .expect("XOR-MAPPED-ADDRESS");
    let expected: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .expect("addr");
    assert_eq!(
        decode_xor_address(xma.value, &msg.transaction_id()),
        Ok(expected)
    );
    assert!(msg.verify_integrity(SHORT_TERM_PASSWORD.as_bytes()));
    assert_eq!(msg.fingerprint_ok(), Some(true));

    let mut b = MessageBuilder::new(Method::BINDING, Class::Success, RFC5769_TXID);
    b.xor_address(attr::XOR_MAPPED_ADDRESS, expected);
    assert_eq!(&b.finish()[20..], &bytes[36..60]);

    assert_every_bit_flip_detected(&bytes, SHORT_TERM_PASSWORD.as_bytes(), 84, true);
}

#[test]
fn rfc5769_2_4_long_term_request() {
    let bytes = sample_long_term_request();
    let msg = Message::parse(&bytes).expect("RFC 5769 §2.4 parses");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), LONG_TERM_TXID);
    assert_eq!(
        types(&msg),
        [
            attr::USERNAME,
            attr::NONCE,
            attr::REALM,
            attr::MESSAGE_INTEGRITY
        ]
    );
    assert_eq!(utf8_attr(&msg, attr::USERNAME), LT_USERNAME);
    assert_eq!(utf8_attr(&msg, attr::NONCE), "f//499k954d6OL34oL9FSTvy64sA");
    assert_eq!(utf8_attr(&msg, attr::REALM), LT_REALM);
    assert_eq!(msg.fingerprint_ok(), None);

    let key = long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD);
    assert!(msg.verify_integrity(&key));
    assert!(!msg.verify_integrity(&long_term_key(LT_USERNAME, LT_REALM, "TheMatrix")));
    assert!(!msg.verify_integrity(LT_PASSWORD.as_bytes()));

    // All padding in this vector is zero, so the builder reproduces it exactly.
    let mut b = MessageBuilder::new(Method::BINDING, Class::Request, LONG_TERM_TXID);
    b.attribute(attr::USERNAME, LT_USERNAME.as_bytes())
        .attribute(attr::NONCE, b"f//499k954d6OL34oL9FSTvy64sA")
        .attribute(attr::REALM, LT_REALM.as_bytes())
        .message_integrity(&key);
    assert_eq!(b.len(), bytes.len());
    assert_eq!(b.finish(), bytes);

    assert_every_bit_flip_detected(&bytes, &key, bytes.len(), false);
}

#[test]
fn rfc8489_b1_sha256_userhash_request() {
    let bytes = sample_sha256_request();
    let msg = Message::parse(&bytes).expect("RFC 8489 B.1 parses");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), LONG_TERM_TXID);
    assert_eq!(
        types(&msg),
        [
            attr::USERHASH,
            attr::NONCE,
            attr::REALM,
            attr::PASSWORD_ALGORITHM,
            attr::MESSAGE_INTEGRITY_SHA256
        ]
    );
    // USERHASH = SHA-256(username ":" realm) (RFC 8489 §14.4).
    let userhash = msg.attribute(attr::USERHASH).expect("USERHASH");
    let expected: [u8; 32] = Sha256::digest(format!("{LT_USERNAME}:{LT_REALM}")).into();
    assert_eq!(userhash.value, expected);
    assert_eq!(
        utf8_attr(&msg, attr::NONCE),
        "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    );
    assert_eq!(utf8_attr(&msg, attr::REALM), LT_REALM);
    let algorithm = msg
        .attribute(attr::PASSWORD_ALGORITHM)
        .expect("PASSWORD-ALGORITHM");
    assert_eq!(algorithm.value, [0x00, 0x02, 0x00, 0x00]); // SHA-256, no parameters

    assert_eq!(msg.integrity(), Some(IntegrityKind::Sha256));
    let key = long_term_key_sha256(LT_USERNAME, LT_REALM, LT_PASSWORD);
    assert!(msg.verify_integrity(&key));
    // The MD5 key (the other password algorithm) must not verify.
    assert!(!msg.verify_integrity(&long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD)));

    let mut b = MessageBuilder::new(Method::BINDING, Class::Request, LONG_TERM_TXID);
    b.attribute(attr::USERHASH, &expected)
        .attribute(attr::NONCE, b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA")
        .attribute(attr::REALM, LT_REALM.as_bytes())
        .attribute(attr::PASSWORD_ALGORITHM, &[0x00, 0x02, 0x00, 0x00])
        .message_integrity_sha256(&key);
    assert_eq!(b.len(), bytes.len());
    assert_eq!(b.finish(), bytes);

    assert_every_bit_flip_detected(&bytes, &key, bytes.len(), false);
}

#[test]
fn rfc5769_builder_round_trip_short_term() {
    // Rebuild §2.1's content with the builder (zero padding instead of the
    // RFC's spaces, so a different MAC) and check it verifies.
    let mut b = MessageBuilder::new(Method::BINDING, Class::Request, RFC5769_TXID);
    b.attribute(attr::SOFTWARE, b"STUN test client")
        .u32(attr::PRIORITY, 0x6e00_01ff)
        .attribute(
            attr::ICE_CONTROLLED,
            &[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36],
        )
        .attribute(attr::USERNAME, b"evtj:h6vY")
        .message_integrity(SHORT_TERM_PASSWORD.as_bytes())
        .fingerprint();
    let built = b.finish();
    let rfc = sample_request();
    assert_eq!(built.len(), rfc.len());
    // Identical up to the USERNAME padding.
    assert_eq!(&built[..73], &rfc[..73]);
    let msg = Message::parse(&built).expect("parses");
    assert!(msg.verify_integrity(SHORT_TERM_PASSWORD.as_bytes()));
    assert_eq!(msg.fingerprint_ok(), Some(true));
}
