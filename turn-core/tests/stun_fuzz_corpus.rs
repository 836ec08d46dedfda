//! Replays the `stun_parse` fuzz corpus (`fuzz/corpus/stun_parse/`) through the
//! fuzz harness itself, and checks what the named seed files must decode to.
//!
//! Files added by `cargo fuzz run` (hash names) are replayed too: a crash the
//! fuzzer found and that was fixed stays fixed once its input is committed.

#[path = "../../fuzz/src/stun_parse.rs"]
mod harness;

use std::fs;
use std::path::PathBuf;

use turn_core::stun::{
    attr, long_term_key, long_term_key_sha256, parse_channel_data, ChannelData, Message, ParseError,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/stun_parse")
}

fn seed(name: &str) -> Vec<u8> {
    fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

const LT_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";

#[test]
fn every_corpus_file_runs_through_the_harness() {
    let mut entries: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 10,
        "seed corpus has {} files",
        entries.len()
    );
    for path in entries {
        let data = fs::read(&path).expect("read corpus file");
        let result = std::panic::catch_unwind(|| harness::run(&data));
        assert!(result.is_ok(), "harness panicked on {}", path.display());
    }
}

#[test]
fn rfc_vector_seeds_parse_and_verify() {
    let short_term = harness::SHORT_TERM_KEY;
    for name in [
        "rfc5769-2.1-sample-request.bin",
        "rfc5769-2.2-ipv4-response.bin",
        "rfc5769-2.3-ipv6-response.bin",
    ] {
        let data = seed(name);
        let msg = Message::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(msg.verify_integrity(short_term), "{name}");
        assert_eq!(msg.fingerprint_ok(), Some(true), "{name}");
    }

    let data = seed("rfc5769-2.4-long-term-request.bin");
    let msg = Message::parse(&data).expect("2.4 parses");
    assert!(msg.verify_integrity(&long_term_key(LT_USERNAME, "example.org", "TheMatrIX")));

    let data = seed("rfc8489-b1-sha256-userhash-request.bin");
    let msg = Message::parse(&data).expect("B.1 parses");
    assert!(msg.verify_integrity(&long_term_key_sha256(
        LT_USERNAME,
        "example.org",
        "TheMatrIX"
    )));
}

#[test]
fn turn_seeds_parse() {
    // Made by an independent script (Python hmac/zlib), so this also
    // cross-checks MESSAGE-INTEGRITY and FINGERPRINT against another implementation.
    let data = seed("turn-allocate-request-long-term-fingerprint.bin");
    let msg = Message::parse(&data).expect("allocate parses");
    assert!(msg.verify_integrity(&long_term_key("user", "realm", "pass")));
    assert_eq!(msg.fingerprint_ok(), Some(true));
    assert!(msg.unknown_required(harness::KNOWN).is_empty());

    let data = seed("turn-channelbind-request-unknown-attr.bin");
    let msg = Message::parse(&data).expect("channelbind parses");
    assert_eq!(msg.unknown_required(harness::KNOWN).as_slice(), [0x0031]);
    let peer = msg.attribute(attr::XOR_PEER_ADDRESS).expect("peer");
    assert_eq!(
        turn_core::stun::decode_xor_address(peer.value, &msg.transaction_id()),
        Ok("192.0.2.15:49152".parse().expect("addr"))
    );
}

#[test]
fn channel_data_and_truncated_seeds() {
    assert_eq!(
        parse_channel_data(&seed("channeldata-0x4000-udp-unpadded.bin")),
        Ok(ChannelData {
            channel: 0x4000,
            payload: b"hello"
        })
    );
    assert_eq!(
        parse_channel_data(&seed("channeldata-0x4fff-stream-padded.bin")),
        Ok(ChannelData {
            channel: 0x4fff,
            payload: b"abc"
        })
    );
    assert_eq!(
        parse_channel_data(&seed("channeldata-truncated-payload.bin")),
        Err(ParseError::BadLength)
    );
    assert_eq!(
        Message::parse(&seed("truncated-header-10-bytes.bin")).err(),
        Some(ParseError::TooShort)
    );
    assert_eq!(
        Message::parse(&seed("truncated-request-60-bytes.bin")).err(),
        Some(ParseError::BadLength)
    );
}
