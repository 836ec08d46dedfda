//! Zero-copy STUN message parsing (RFC 8489 §5, §14).

use subtle::ConstantTimeEq;

use super::attr::{FINGERPRINT, MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256};
use super::integrity::{fingerprint, hmac_sha1, hmac_sha256};
use super::{decode_type, Class, Method, ParseError, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// One attribute as it appears on the wire: its type and its value without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// Which message-integrity attribute a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY: HMAC-SHA1, 20 bytes (RFC 8489 §14.5).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, 32 bytes (RFC 8489 §14.6).
    Sha256,
}

/// A parsed, well-formed STUN message borrowing the packet it came from.
///
/// Parsing walks the attributes once to validate them and remembers where the
/// integrity and FINGERPRINT attributes are; everything else is read lazily
/// from the borrowed bytes. Nothing is allocated.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    /// The integrity attribute [`Message::verify_integrity`] checks: its kind
    /// and the offset of its TLV header.
    integrity: Option<(IntegrityKind, usize)>,
    /// Offset of the FINGERPRINT TLV header (always the last attribute).
    fingerprint: Option<usize>,
}

impl<'a> Message<'a> {
    /// Parses and validates a whole STUN message (one UDP datagram, or one frame
    /// cut from a stream with [`frame_len`](super::frame_len)).
    ///
    /// Checks, in this order: at least 20 bytes ([`ParseError::TooShort`]); the
    /// first two bits are 0 ([`ParseError::NotStun`]); the magic cookie
    /// ([`ParseError::BadCookie`]); the length field is a multiple of 4 and
    /// equals `buf.len() - 20` ([`ParseError::BadLength`]); every attribute,
    /// including its padding, lies inside the message ([`ParseError::BadAttribute`]);
    /// nothing follows a FINGERPRINT attribute ([`ParseError::FingerprintNotLast`]).
    ///
    /// Attribute values are not interpreted here: an unknown or malformed value
    /// is for the caller (420 / 400 responses).
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let header: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(ParseError::TooShort)?;
        if header[0] & 0xC0 != 0 {
            return Err(ParseError::NotStun);
        }
        if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
            return Err(ParseError::BadCookie);
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len % 4 != 0 || Some(len) != buf.len().checked_sub(HEADER_LEN) {
            return Err(ParseError::BadLength);
        }

        let mut integrity_sha1 = None;
        let mut integrity_sha256 = None;
        let mut fingerprint = None;
        let mut scope = Scope::default();
        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            let (attr, next) = read_tlv(buf, pos).ok_or(ParseError::BadAttribute)?;
            if fingerprint.is_some() {
                return Err(ParseError::FingerprintNotLast);
            }
            if scope.admit(attr.typ) {
                match attr.typ {
                    MESSAGE_INTEGRITY => integrity_sha1 = Some(pos),
                    MESSAGE_INTEGRITY_SHA256 => integrity_sha256 = Some(pos),
                    FINGERPRINT => fingerprint = Some(pos),
                    _ => {}
                }
            }
            pos = next;
        }
        // Prefer MESSAGE-INTEGRITY-SHA256 when both are present (see `verify_integrity`).
        let integrity = integrity_sha256
            .map(|p| (IntegrityKind::Sha256, p))
            .or(integrity_sha1.map(|p| (IntegrityKind::Sha1, p)));
        Ok(Message {
            buf,
            integrity,
            fingerprint,
        })
    }

    /// The method from the message type.
    pub fn method(&self) -> Method {
        decode_type(self.message_type()).0
    }

    /// The class from the message type.
    pub fn class(&self) -> Class {
        decode_type(self.message_type()).1
    }

    /// The raw 14-bit message type.
    pub fn message_type(&self) -> u16 {
        u16::from_be_bytes([self.byte(0), self.byte(1)])
    }

    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        if let Some(src) = self.buf.get(8..HEADER_LEN) {
            id.copy_from_slice(src);
        }
        TransactionId(id)
    }

    /// The whole message as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The attributes in wire order, without those the receiver must ignore:
    /// after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
    /// count, after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT (RFC 8489 §14.5,
    /// §14.6). Duplicates are returned as they appear.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf,
            pos: HEADER_LEN,
            scope: Scope::default(),
        }
    }

    /// The first attribute of type `typ` (among those [`Message::attributes`] yields).
    pub fn attribute(&self, typ: u16) -> Option<RawAttribute<'a>> {
        self.attributes().find(|a| a.typ == typ)
    }

    /// The comprehension-required attribute types (0x0000–0x7FFF) present in the
    /// message and not listed in `known`, deduplicated, in wire order, for a 420
    /// response with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1, §14.9). At most
    /// [`UnknownAttributes::CAPACITY`] types are kept; the rest are dropped.
    pub fn unknown_required(&self, known: &[u16]) -> UnknownAttributes {
        let mut out = UnknownAttributes::default();
        for a in self.attributes() {
            if a.typ < 0x8000 && !known.contains(&a.typ) {
                out.push(a.typ);
            }
        }
        out
    }

    /// Which integrity attribute [`Message::verify_integrity`] would check:
    /// MESSAGE-INTEGRITY-SHA256 if the message has one that is not ignored,
    /// else MESSAGE-INTEGRITY, else `None`.
    pub fn integrity(&self) -> Option<IntegrityKind> {
        self.integrity.map(|(k, _)| k)
    }

    /// Verifies the message's integrity attribute with `key` (the password for
    /// short-term credentials, [`long_term_key`](super::long_term_key) for
    /// long-term ones).
    ///
    /// The HMAC covers the message up to the attribute, with the header length
    /// field set as if the attribute ended the message (RFC 8489 §14.5, §14.6);
    /// it is fed the adjusted 20-byte header and then the attributes, without
    /// copying the message. The comparison runs in constant time.
    ///
    /// When a message carries both attributes, only MESSAGE-INTEGRITY-SHA256 is
    /// checked: it is the stronger HMAC, it is keyed with the same key, and it
    /// covers the MESSAGE-INTEGRITY before it. Its value must be the full 32
    /// bytes (truncation is only allowed where a STUN usage says so, RFC 8489
    /// §14.6, and TURN does not). A MESSAGE-INTEGRITY value must be exactly 20
    /// bytes.
    ///
    /// Returns `false` when there is no integrity attribute.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some((kind, offset)) = self.integrity else {
            return false;
        };
        let Some((attr, end)) = read_tlv(self.buf, offset) else {
            return false;
        };
        let (Some(head), Some(attrs_before)) = (self.buf.get(..2), self.buf.get(4..offset)) else {
            return false;
        };
        // Length field as if the integrity attribute were the last one. The
        // attribute ends at `offset + 4 + len` (padding is 0 for 20/32 bytes).
        let Some(adjusted) = end
            .checked_sub(HEADER_LEN)
            .and_then(|l| u16::try_from(l).ok())
        else {
            return false;
        };
        let adjusted = adjusted.to_be_bytes();
        let parts: [&[u8]; 3] = [head, &adjusted, attrs_before];
        match kind {
            IntegrityKind::Sha1 => {
                attr.value.len() == 20
                    && hmac_sha1(key, &parts).is_some_and(|mac| bool::from(mac.ct_eq(attr.value)))
            }
            IntegrityKind::Sha256 => {
                attr.value.len() == 32
                    && hmac_sha256(key, &parts).is_some_and(|mac| bool::from(mac.ct_eq(attr.value)))
            }
        }
    }

    /// `None` without FINGERPRINT; otherwise whether its value is the CRC-32 of
    /// the message before it XOR 0x5354554E (RFC 8489 §14.7). A value that is
    /// not 4 bytes long counts as wrong.
    pub fn fingerprint_ok(&self) -> Option<bool> {
        let offset = self.fingerprint?;
        let ok = match (read_tlv(self.buf, offset), self.buf.get(..offset)) {
            (Some((attr, _)), Some(before)) => {
                attr.value == fingerprint(before).to_be_bytes().as_slice()
            }
            _ => false,
        };
        Some(ok)
    }

    fn byte(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }
}

/// Iterator over a message's attributes; see [`Message::attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    pos: usize,
    scope: Scope,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        while self.pos < self.buf.len() {
            let (attr, next) = read_tlv(self.buf, self.pos)?;
            self.pos = next;
            if self.scope.admit(attr.typ) {
                return Some(attr);
            }
        }
        None
    }
}

/// Tracks which attributes still count while walking a message (RFC 8489
/// §14.5, §14.6: attributes after an integrity attribute are ignored, except
/// MESSAGE-INTEGRITY-SHA256 after MESSAGE-INTEGRITY, and FINGERPRINT).
#[derive(Debug, Clone, Copy, Default)]
enum Scope {
    #[default]
    Open,
    AfterSha1,
    AfterSha256,
}

impl Scope {
    /// Whether an attribute of type `typ` at this point counts; advances the state.
    fn admit(&mut self, typ: u16) -> bool {
        let counts = match self {
            Scope::Open => true,
            Scope::AfterSha1 => typ == MESSAGE_INTEGRITY_SHA256 || typ == FINGERPRINT,
            Scope::AfterSha256 => typ == FINGERPRINT,
        };
        if counts {
            match typ {
                MESSAGE_INTEGRITY => *self = Scope::AfterSha1,
                MESSAGE_INTEGRITY_SHA256 => *self = Scope::AfterSha256,
                _ => {}
            }
        }
        counts
    }
}

/// Reads the TLV at `pos`: the attribute and the offset after its padding.
/// `None` if the header, the value or the padding would run past `buf`.
fn read_tlv(buf: &[u8], pos: usize) -> Option<(RawAttribute<'_>, usize)> {
    let start = pos.checked_add(4)?;
    let [t0, t1, l0, l1]: [u8; 4] = buf.get(pos..start)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let value = buf.get(start..start.checked_add(len)?)?;
    let next = start.checked_add(super::round_up_4(len))?;
    if next > buf.len() {
        return None;
    }
    Some((
        RawAttribute {
            typ: u16::from_be_bytes([t0, t1]),
            value,
        },
        next,
    ))
}

/// Up to [`UnknownAttributes::CAPACITY`] attribute types, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnknownAttributes {
    types: [u16; UnknownAttributes::CAPACITY],
    len: usize,
}

impl UnknownAttributes {
    /// How many types are kept; a 420 response listing this many is plenty.
    pub const CAPACITY: usize = 8;

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_slice(&self) -> &[u16] {
        self.types.get(..self.len).unwrap_or(&[])
    }

    /// Adds `typ` unless it is already listed or the list is full.
    fn push(&mut self, typ: u16) {
        if self.as_slice().contains(&typ) {
            return;
        }
        if let Some(slot) = self.types.get_mut(self.len) {
            *slot = typ;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::attr::{NONCE, REALM, SOFTWARE, USERNAME};
    use super::super::MessageBuilder;
    use super::*;

    const TXID: TransactionId = TransactionId([7; 12]);

    fn header(len: u16) -> Vec<u8> {
        let mut v = vec![0x00, 0x01];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        v.extend_from_slice(&[1; 12]);
        v
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Message::parse(&[]).err(), Some(ParseError::TooShort));
        assert_eq!(
            Message::parse(&header(0)[..19]).err(),
            Some(ParseError::TooShort)
        );
        assert!(Message::parse(&header(0)).is_ok());

        let mut m = header(0);
        m[0] = 0x40;
        assert_eq!(Message::parse(&m).err(), Some(ParseError::NotStun));
        let mut m = header(0);
        m[4] = 0x22;
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadCookie));
        // Length not a multiple of 4, and length != buffer.
        let mut m = header(2);
        m.extend_from_slice(&[0, 0]);
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadLength));
        let mut m = header(8);
        m.extend_from_slice(&[0; 4]);
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadLength));
        // Attribute value longer than the message.
        let mut m = header(8);
        m.extend_from_slice(&[0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd']);
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadAttribute));
        // Value fits but its padding does not: 4 + 5 bytes of value needs 12.
        let mut m = header(8);
        m.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        assert!(Message::parse(&m).is_ok());
        // Trailing bytes after the declared length.
        let mut m = header(0);
        m.extend_from_slice(&[0; 4]);
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadLength));
    }

    #[test]
    fn fingerprint_must_be_last() {
        let mut m = header(16);
        m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
        m.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        assert_eq!(
            Message::parse(&m).err(),
            Some(ParseError::FingerprintNotLast)
        );
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TXID);
        b.attribute(USERNAME, b"alice").message_integrity(b"key");
        // A man in the middle appends attributes after MESSAGE-INTEGRITY.
        b.attribute(REALM, b"evil").attribute(0x0077, b"x");
        b.message_integrity_sha256(b"key")
            .attribute(NONCE, b"n")
            .fingerprint();
        let bytes = b.finish();
        let msg = Message::parse(&bytes).expect("parses");

        let types: Vec<u16> = msg.attributes().map(|a| a.typ).collect();
        assert_eq!(
            types,
            [
                USERNAME,
                MESSAGE_INTEGRITY,
                MESSAGE_INTEGRITY_SHA256,
                FINGERPRINT
            ]
        );
        assert!(msg.attribute(REALM).is_none());
        assert!(msg.attribute(NONCE).is_none());
        // 0x0077 after MI is ignored; MI and MI-SHA256 are comprehension-required
        // types like any other, so a caller lists them as known.
        let known = [USERNAME, MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256];
        assert!(msg.unknown_required(&known).is_empty());
        assert_eq!(
            msg.unknown_required(&[USERNAME]).as_slice(),
            [MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256]
        );
        assert_eq!(msg.integrity(), Some(IntegrityKind::Sha256));
        assert!(msg.verify_integrity(b"key"));
        assert!(!msg.verify_integrity(b"kez"));
        assert_eq!(msg.fingerprint_ok(), Some(true));
    }

    #[test]
    fn sha1_integrity_ignores_later_attributes_but_covers_earlier() {
        let mut b = MessageBuilder::new(Method::REFRESH, Class::Request, TXID);
        b.attribute(SOFTWARE, b"x").message_integrity(b"pw");
        let mut bytes = b.finish();
        // Append an unknown comprehension-required attribute after MI by hand,
        // fixing the header length: MI still verifies (length is adjusted), and
        // the attribute is ignored.
        bytes.extend_from_slice(&[0x00, 0x77, 0x00, 0x00]);
        let len = u16::try_from(bytes.len() - HEADER_LEN).expect("small");
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.integrity(), Some(IntegrityKind::Sha1));
        assert!(msg.verify_integrity(b"pw"));
        assert!(msg.unknown_required(&[MESSAGE_INTEGRITY]).is_empty());
        assert_eq!(msg.attributes().count(), 2);

        // Changing a byte before MI breaks it.
        bytes[HEADER_LEN + 4] ^= 1;
        let msg = Message::parse(&bytes).expect("parses");
        assert!(!msg.verify_integrity(b"pw"));
    }

    #[test]
    fn second_integrity_attribute_is_ignored() {
        // MI-SHA256 first: a later MI is ignored and SHA256 is what is checked.
        let mut b = MessageBuilder::new(Method::BINDING, Class::Request, TXID);
        b.message_integrity_sha256(b"k").message_integrity(b"other");
        let bytes = b.finish();
        let msg = Message::parse(&bytes).expect("parses");
        assert_eq!(msg.integrity(), Some(IntegrityKind::Sha256));
        assert!(msg.verify_integrity(b"k"));
        assert_eq!(msg.attributes().count(), 1);
    }

    #[test]
    fn no_integrity_no_fingerprint() {
        let m = header(0);
        let msg = Message::parse(&m).expect("parses");
        assert_eq!(msg.integrity(), None);
        assert!(!msg.verify_integrity(b""));
        assert_eq!(msg.fingerprint_ok(), None);
    }

    #[test]
    fn wrong_size_integrity_values_do_not_verify() {
        for (typ, len) in [(MESSAGE_INTEGRITY, 16usize), (MESSAGE_INTEGRITY_SHA256, 20)] {
            let mut b = MessageBuilder::new(Method::BINDING, Class::Request, TXID);
            b.attribute(typ, &vec![0; len]);
            let bytes = b.finish();
            let msg = Message::parse(&bytes).expect("parses");
            assert!(msg.integrity().is_some());
            assert!(!msg.verify_integrity(b"k"));
        }
        let mut b = MessageBuilder::new(Method::BINDING, Class::Request, TXID);
        b.attribute(FINGERPRINT, &[0; 8]);
        let bytes = b.finish();
        assert_eq!(
            Message::parse(&bytes).expect("parses").fingerprint_ok(),
            Some(false)
        );
    }

    #[test]
    fn unknown_required_dedup_and_capacity() {
        let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TXID);
        b.attribute(0x0030, b"")
            .attribute(0x8030, b"")
            .attribute(0x0030, b"");
        b.attribute(USERNAME, b"u");
        for t in 0x0040..0x0050 {
            b.attribute(t, b"");
        }
        let bytes = b.finish();
        let msg = Message::parse(&bytes).expect("parses");
        let unknown = msg.unknown_required(&[USERNAME]);
        assert_eq!(unknown.len(), UnknownAttributes::CAPACITY);
        assert_eq!(
            unknown.as_slice(),
            [0x0030, 0x0040, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046]
        );
        // Comprehension-optional types never count.
        assert!(!unknown.as_slice().contains(&0x8030));
    }
}
