//! Keys, HMACs and the CRC-32 used by MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256
//! and FINGERPRINT (RFC 8489 §9.2.2, §14.5–§14.7).
//!
//! The HMAC and CRC helpers take the message as a list of slices so a receiver
//! can feed the length-adjusted header and the rest of the message without
//! copying it.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// FINGERPRINT is the CRC-32 of the message XOR this value ("STUN", RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Long-term credential key for the MD5 password algorithm (the default, and the
/// only one RFC 5389 clients know): `MD5(username ":" realm ":" password)`
/// (RFC 8489 §9.2.2).
///
/// The inputs are used as given: OpaqueString/SASLprep processing, if wanted, is
/// the caller's job.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Long-term credential key for PASSWORD-ALGORITHM SHA-256 (0x0002):
/// `SHA-256(username ":" realm ":" password)` (RFC 8489 §9.2.2, §18.5.1.2).
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// HMAC-SHA1 of the concatenation of `parts`.
///
/// `None` only if the HMAC rejected the key, which HMAC never does (any key
/// length is valid); callers still handle it instead of unwrapping.
pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 20]> {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

/// HMAC-SHA256 of the concatenation of `parts` (see [`hmac_sha1`] for `None`).
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

/// The FINGERPRINT value for a message whose bytes before the FINGERPRINT
/// attribute are `bytes` (its header length already counting FINGERPRINT).
pub(crate) fn fingerprint(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_key_rfc5769_2_4() {
        // MD5("<username>:example.org:TheMatrIX") for the RFC 5769 §2.4 user.
        let key = long_term_key(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            "example.org",
            "TheMatrIX",
        );
        let mut h = Md5::new();
        h.update(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}:example.org:TheMatrIX".as_bytes(),
        );
        let expect: [u8; 16] = h.finalize().into();
        assert_eq!(key, expect);
    }

    #[test]
    fn hmac_parts_equal_whole() {
        let whole = hmac_sha1(b"k", &[b"hello world"]);
        let parts = hmac_sha1(b"k", &[b"hello", b" ", b"world"]);
        assert!(whole.is_some());
        assert_eq!(whole, parts);
        assert_eq!(
            hmac_sha256(b"k", &[b"ab"]),
            hmac_sha256(b"k", &[b"a", b"b"])
        );
        // RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            mac.map(|m| m[..4].to_vec()),
            Some(vec![0x5b, 0xdc, 0xc1, 0x46])
        );
    }
}
