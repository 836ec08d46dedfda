//! Encoding STUN messages (control path only: one `Vec` per message).

use std::net::SocketAddr;

use super::attr::{
    xor_in_place, xor_mask, ERROR_CODE, FAMILY_IPV4, FAMILY_IPV6, FINGERPRINT, MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256, NONCE, REALM, UNKNOWN_ATTRIBUTES, USERNAME,
};
use super::integrity::{fingerprint, hmac_sha1, hmac_sha256};
use super::{encode_type, round_up_4, Class, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Largest value of the header length field: a u16 that is a multiple of 4.
const MAX_BODY: usize = 0xFFFC;

/// Builds a STUN message attribute by attribute.
///
/// The header length field is kept current after every call, so
/// [`MessageBuilder::len`] is always the final size and the integrity and
/// FINGERPRINT attributes can be computed over the bytes written so far.
/// Add attributes in wire order: MESSAGE-INTEGRITY, then
/// MESSAGE-INTEGRITY-SHA256, then FINGERPRINT last (RFC 8489 §14.5–§14.7).
///
/// An attribute that would push the message past the 64 KiB limit of the
/// length field is left out (no panic, no truncated attribute); the builder is
/// meant for server-made control messages, far below that size.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    txid: TransactionId,
}

impl MessageBuilder {
    pub fn new(method: Method, class: Class, txid: TransactionId) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&encode_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid.0);
        MessageBuilder { buf, txid }
    }

    /// The size of the encoded message so far, equal to `finish().len()`.
    #[allow(clippy::len_without_is_empty)] // never empty: the header is always there
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends an attribute with `value`, zero-padded to a multiple of 4 bytes.
    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.push_parts(typ, &[value])
    }

    /// Appends an XOR'd address attribute (XOR-MAPPED-ADDRESS, XOR-RELAYED-ADDRESS,
    /// XOR-PEER-ADDRESS; RFC 8489 §14.2) using this message's transaction ID.
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let mask = xor_mask(&self.txid);
        let port = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
        match addr {
            SocketAddr::V4(a) => {
                let mut ip = a.ip().octets();
                xor_in_place(&mut ip, &mask);
                self.push_parts(typ, &[&[0, FAMILY_IPV4], &port, &ip])
            }
            SocketAddr::V6(a) => {
                let mut ip = a.ip().octets();
                xor_in_place(&mut ip, &mask);
                self.push_parts(typ, &[&[0, FAMILY_IPV6], &port, &ip])
            }
        }
    }

    /// Appends a plain address attribute (ALTERNATE-SERVER, MAPPED-ADDRESS;
    /// RFC 8489 §14.1).
    pub fn address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let port = addr.port().to_be_bytes();
        match addr {
            SocketAddr::V4(a) => {
                self.push_parts(typ, &[&[0, FAMILY_IPV4], &port, &a.ip().octets()])
            }
            SocketAddr::V6(a) => {
                self.push_parts(typ, &[&[0, FAMILY_IPV6], &port, &a.ip().octets()])
            }
        }
    }

    /// Appends a 4-byte big-endian value (LIFETIME, ...).
    pub fn u32(&mut self, typ: u16, v: u32) -> &mut Self {
        self.push_parts(typ, &[&v.to_be_bytes()])
    }

    /// Appends ERROR-CODE (RFC 8489 §14.8). `code` must be 300..=699 (other
    /// values are encoded modulo the field widths); keep `reason` short (the RFC
    /// limit is 127 characters).
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let class = ((code / 100) & 0x07) as u8;
        let number = (code % 100) as u8;
        self.push_parts(ERROR_CODE, &[&[0, 0, class, number], reason.as_bytes()])
    }

    /// Appends UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the types (at most the first
    /// 64), 2 bytes each, zero-padded to 4 bytes (RFC 8489 dropped RFC 3489's
    /// repeat-the-last padding).
    pub fn unknown_attributes(&mut self, types: &[u16]) -> &mut Self {
        let mut value = [0u8; 2 * 64];
        let n = types.len().min(64);
        for (chunk, t) in value.chunks_exact_mut(2).zip(types.iter().take(n)) {
            chunk.copy_from_slice(&t.to_be_bytes());
        }
        self.push_parts(UNKNOWN_ATTRIBUTES, &[value.get(..2 * n).unwrap_or(&[])])
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message so far,
    /// with the header length already counting this attribute (RFC 8489 §14.5).
    pub fn message_integrity(&mut self, key: &[u8]) -> &mut Self {
        if let Some(len) = self.grow_length(20) {
            let mac = hmac_sha1(key, &[&self.buf]).unwrap_or([0; 20]);
            self.put(MESSAGE_INTEGRITY, len, &[&mac]);
        }
        self
    }

    /// Signs a request with long-term credentials (RFC 8489 §9.2.4): USERNAME,
    /// REALM and NONCE, then MESSAGE-INTEGRITY with `key`
    /// (`long_term_key(username, realm, password)`).
    pub fn long_term_credentials(
        &mut self,
        username: &str,
        realm: &str,
        nonce: &[u8],
        key: &[u8],
    ) -> &mut Self {
        self.attribute(USERNAME, username.as_bytes())
            .attribute(REALM, realm.as_bytes())
            .attribute(NONCE, nonce)
            .message_integrity(key)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256: the full 32-byte HMAC-SHA256 with `key`
    /// over the message so far, length adjusted likewise (RFC 8489 §14.6).
    pub fn message_integrity_sha256(&mut self, key: &[u8]) -> &mut Self {
        if let Some(len) = self.grow_length(32) {
            let mac = hmac_sha256(key, &[&self.buf]).unwrap_or([0; 32]);
            self.put(MESSAGE_INTEGRITY_SHA256, len, &[&mac]);
        }
        self
    }

    /// Appends FINGERPRINT: CRC-32 of the message so far XOR 0x5354554E
    /// (RFC 8489 §14.7). Must be the last attribute.
    pub fn fingerprint(&mut self) -> &mut Self {
        if let Some(len) = self.grow_length(4) {
            let crc = fingerprint(&self.buf);
            self.put(FINGERPRINT, len, &[&crc.to_be_bytes()]);
        }
        self
    }

    /// The encoded message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Sets the header length field to count one more attribute with a `len`-byte
    /// value (plus padding) and returns `len` as a u16; `None`, changing
    /// nothing, if the message would become too long. The caller then appends
    /// the attribute: the integrity and FINGERPRINT values are computed in
    /// between, over the bytes before the attribute (RFC 8489 §14.5–§14.7).
    fn grow_length(&mut self, len: usize) -> Option<u16> {
        let body = self.buf.len().saturating_sub(HEADER_LEN);
        let new_body = body.saturating_add(4).saturating_add(round_up_4(len));
        if new_body > MAX_BODY {
            return None;
        }
        let len16 = u16::try_from(len).ok()?;
        let new_body16 = u16::try_from(new_body).ok()?;
        self.buf
            .get_mut(2..4)?
            .copy_from_slice(&new_body16.to_be_bytes());
        Some(len16)
    }

    /// Appends the TLV for an attribute of `len` bytes already counted by
    /// `grow_length`, its value being the concatenation of `parts`, and the padding.
    fn put(&mut self, typ: u16, len: u16, parts: &[&[u8]]) {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        let len = usize::from(len);
        let padding = round_up_4(len).saturating_sub(len);
        self.buf.resize(self.buf.len() + padding, 0);
    }

    /// Appends an attribute whose value is the concatenation of `parts`, padded.
    fn push_parts(&mut self, typ: u16, parts: &[&[u8]]) -> &mut Self {
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        if let Some(len16) = self.grow_length(len) {
            self.put(typ, len16, parts);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::attr::{LIFETIME, SOFTWARE, XOR_RELAYED_ADDRESS};
    use super::super::{decode_error_code, decode_u32, decode_xor_address, Message};
    use super::*;

    const TXID: TransactionId = TransactionId([9; 12]);

    #[test]
    fn builds_parseable_message() {
        let relayed: SocketAddr = "[2001:db8::7]:50000".parse().expect("addr");
        let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Error, TXID);
        b.error_code(420, "Unknown Attribute")
            .unknown_attributes(&[0x0031, 0x0032, 0x0033])
            .xor_address(XOR_RELAYED_ADDRESS, relayed)
            .u32(LIFETIME, 600)
            .attribute(SOFTWARE, b"nexrtc")
            .fingerprint();
        let len = b.len();
        let bytes = b.finish();
        assert_eq!(bytes.len(), len);
        assert_eq!(&bytes[..2], &[0x01, 0x13]);

        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.method(), Method::ALLOCATE);
        assert_eq!(msg.class(), Class::Error);
        assert_eq!(msg.transaction_id(), TXID);
        let ec = msg.attribute(ERROR_CODE).expect("error code");
        assert_eq!(decode_error_code(ec.value), Ok((420, "Unknown Attribute")));
        let ua = msg
            .attribute(UNKNOWN_ATTRIBUTES)
            .expect("unknown attributes");
        assert_eq!(ua.value, &[0x00, 0x31, 0x00, 0x32, 0x00, 0x33]);
        let ra = msg.attribute(XOR_RELAYED_ADDRESS).expect("relayed");
        assert_eq!(decode_xor_address(ra.value, &TXID), Ok(relayed));
        let lt = msg.attribute(LIFETIME).expect("lifetime");
        assert_eq!(decode_u32(lt.value), Ok(600));
        assert_eq!(msg.fingerprint_ok(), Some(true));
    }

    #[test]
    fn oversize_attribute_is_dropped() {
        let mut b = MessageBuilder::new(Method::SEND, Class::Indication, TXID);
        b.attribute(0x0013, &vec![0xab; 0xFFF0]);
        let before = b.len();
        assert_eq!(before, HEADER_LEN + 4 + 0xFFF0);
        b.attribute(0x0013, &[1; 16]); // would exceed the length field
        b.attribute(0x0013, &vec![1; 0x1_0000]); // longer than a u16
        assert_eq!(b.len(), before);
        b.fingerprint(); // still fits: 0xFFF4 + 8 = 0xFFFC
        let bytes = b.finish();
        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.fingerprint_ok(), Some(true));
    }
}
