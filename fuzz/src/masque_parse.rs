//! The QUIC relay's parsers on arbitrary bytes: a capsule stream (RFC 9297 §3.2) read the
//! way a tunnel reads its request stream, an HTTP Datagram's Quarter Stream ID and Context
//! ID, bound UDP's compression capsules and address prefix, the CONNECT-UDP template's
//! target (RFC 9298 §2, and the bound `*` form), and a `Proxy-Authorization` value.
//! Checks that nothing panics and that every length stays within the input.

use std::sync::{Arc, OnceLock};

use nexrtc_quic::codec::{
    get_address, get_capsule, get_varint, put_address, put_varint, varint_len, Compression,
};
use nexrtc_quic::target::{parse_bound_path, parse_path};
use nexrtc_quic::Access;
use turn_core::Credentials;

/// The largest capsule a tunnel reads in these runs.
const MAX: usize = 1500;

fn access() -> &'static Arc<Access> {
    static ACCESS: OnceLock<Arc<Access>> = OnceLock::new();
    ACCESS.get_or_init(|| {
        let mut c = Credentials::new();
        let _ = c.insert_tenant("acme", vec![b"fuzz-secret".to_vec()]);
        Access::new(Arc::new(c))
    })
}

pub fn run(data: &[u8]) {
    // A capsule stream, as many capsules as there are.
    let mut at = 0;
    while at < data.len() {
        match get_capsule(&data[at..], MAX) {
            Ok(Some((capsule, n))) => {
                assert!(
                    n > 0 && at + n <= data.len(),
                    "capsule length past the input"
                );
                assert!(capsule.value.len() <= MAX);
                // A compression capsule that parses re-encodes to one that parses the same.
                if let Some(Ok(c)) = Compression::parse(capsule.kind, capsule.value) {
                    let mut out = Vec::new();
                    c.put(&mut out);
                    let again = get_capsule(&out, MAX).ok().flatten().map(|(k, _)| k);
                    let again = again.and_then(|k| Compression::parse(k.kind, k.value));
                    assert_eq!(again, Some(Ok(c)));
                }
                at += n;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // An HTTP Datagram: Quarter Stream ID, Context ID; a varint re-encodes to its length.
    if let Some((quarter, a)) = get_varint(data) {
        assert!(a <= data.len());
        let mut out = Vec::new();
        assert!(put_varint(&mut out, quarter));
        assert_eq!(Some(out.len()), varint_len(quarter));
        if let Some((_, b)) = get_varint(&data[a..]) {
            assert!(a + b <= data.len());
        }
    }
    // An uncompressed bound datagram's address prefix.
    if let Ok((addr, n)) = get_address(data) {
        let mut out = Vec::new();
        put_address(&mut out, addr);
        assert_eq!(out[..], data[..n]);
    }
    // The template's variables and the credentials, as text and as bytes.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(target) = parse_path(text) {
            assert_ne!(target.port, 0);
        }
        let _ = parse_path(&format!("/.well-known/masque/udp/{text}"));
        let _ = parse_bound_path(&format!("/.well-known/masque/udp/{text}"));
    }
    let _ = access().check(Some(data), 1_700_000_000);
}
