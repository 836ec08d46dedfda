//! Replays the `masque_parse` fuzz corpus (`fuzz/corpus/masque_parse/`) through the fuzz
//! harness itself, and checks what the named seeds must decode to. Files the fuzzer adds
//! (hash names) are replayed too: a crash found and fixed stays fixed once committed.

#[path = "../../fuzz/src/masque_parse.rs"]
mod harness;

use std::fs;
use std::path::PathBuf;

use nexrtc_quic::codec::{get_address, get_capsule, Capsule, CapsuleError, Compression};
use nexrtc_quic::target::{parse_path, Host, TargetError};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/masque_parse")
}

fn seed(name: &str) -> Vec<u8> {
    fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

#[test]
fn every_corpus_file_runs_through_the_harness() {
    let mut files: Vec<PathBuf> = (fs::read_dir(corpus_dir()).expect("corpus directory"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{} seeds", files.len());
    for path in files {
        harness::run(&fs::read(&path).expect("seed"));
    }
}

#[test]
fn named_seeds_decode_as_named() {
    let three = seed("three_capsules");
    let mut kinds = Vec::new();
    let mut at = 0;
    while let Ok(Some((Capsule { kind, value }, n))) = get_capsule(&three[at..], 1500) {
        kinds.push((kind, value.len()));
        at += n;
    }
    assert_eq!(kinds, [(0, 4), (0x17, 2), (0, 3)]);
    assert_eq!(
        get_capsule(&seed("capsule_over_limit"), 1500),
        Err(CapsuleError::TooLong(4096, 1500))
    );
    assert_eq!(get_capsule(&seed("truncated_varint"), 1500), Ok(None));
    let text = |name| String::from_utf8(seed(name)).expect("text");
    let t = parse_path(&text("ipv6_target")).expect("target");
    assert_eq!(
        (t.host, t.port),
        (Host::Ip("2001:db8::1".parse().unwrap()), 443)
    );
    assert_eq!(parse_path(&text("port_zero")), Err(TargetError::BadPort));
    assert_eq!(parse_path(&text("bad_percent")), Err(TargetError::BadHost));
    // Bound UDP's capsules and address prefix.
    let compression = |bytes: &[u8]| {
        let mut got = Vec::new();
        let mut at = 0;
        while let Ok(Some((Capsule { kind, value }, n))) = get_capsule(&bytes[at..], 1500) {
            got.push(Compression::parse(kind, value).expect("a compression capsule"));
            at += n;
        }
        got
    };
    let peer = Some("127.0.0.1:5000".parse().unwrap());
    assert_eq!(
        compression(&seed("compression_assign")),
        [Ok(Compression::Assign { context: 2, peer })]
    );
    assert_eq!(
        compression(&seed("compression_three")),
        [
            Ok(Compression::Assign {
                context: 4,
                peer: None
            }),
            Ok(Compression::Ack { context: 4 }),
            Ok(Compression::Close { context: 4 }),
        ]
    );
    assert_eq!(
        get_address(&seed("bound_address_v6")),
        Ok(("[2001:db8::1]:5000".parse().unwrap(), 19))
    );
}
