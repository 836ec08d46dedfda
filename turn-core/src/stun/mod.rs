//! STUN (RFC 8489) and TURN (RFC 8656) wire codec.
//!
//! Sans-IO and allocation-free on the receive side:
//!
//! * [`Message::parse`] validates a STUN message once and hands out borrowed
//!   views of its attributes ([`RawAttribute`]); the typed `decode_*` functions
//!   ([`decode_xor_address`], [`decode_u32`], ...) turn one attribute value into
//!   a Rust value.
//! * [`parse_channel_data`], [`is_channel_data`] and [`frame_len`] cover the
//!   TURN data path and stream framing (RFC 8656 §12).
//! * [`MessageBuilder`] encodes control-path messages (responses, Data
//!   indications) into one `Vec<u8>`, including MESSAGE-INTEGRITY(-SHA256) and
//!   FINGERPRINT.
//!
//! No function in this module panics on any input: every read of network bytes
//! is bounds-checked.

pub mod attr;
mod builder;
mod channel;
mod integrity;
mod message;

pub use attr::{
    decode_address, decode_address_family, decode_channel_number, decode_error_code,
    decode_even_port, decode_requested_transport, decode_reservation_token, decode_u32,
    decode_utf8, decode_xor_address,
};
pub use builder::MessageBuilder;
pub use channel::{
    channel_data_header, frame_len, is_channel_data, parse_channel_data, round_up_4, ChannelData,
    CHANNEL_BIND_MAX, CHANNEL_MAX, CHANNEL_MIN,
};
pub use integrity::{long_term_key, long_term_key_sha256, FINGERPRINT_XOR};
pub use message::{Attributes, IntegrityKind, Message, RawAttribute, UnknownAttributes};

/// The fixed value in bytes 4..8 of every STUN message (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Size of the STUN message header (RFC 8489 §5).
pub const HEADER_LEN: usize = 20;

/// The 96-bit transaction ID of a STUN message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// A STUN method: the 12-bit method number, without the class bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// RFC 8489 §18.2.
    pub const BINDING: Method = Method(0x001);
    /// RFC 8656 §17.
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// RFC 6062 (TURN TCP allocations).
    pub const CONNECT: Method = Method(0x00A);
    pub const CONNECTION_BIND: Method = Method(0x00B);
    pub const CONNECTION_ATTEMPT: Method = Method(0x00C);
}

/// The class of a STUN message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

impl Class {
    /// The two class bits C1 C0 as a number 0..=3.
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// Builds the 14-bit STUN message type from method and class.
///
/// RFC 8489 §5: the class bits are interleaved with the method bits —
/// `M11..M7 C1 M6..M4 C0 M3..M0`. Only the low 12 bits of `method` are used.
pub fn encode_type(method: Method, class: Class) -> u16 {
    let m = method.0 & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a STUN message type into method and class (inverse of [`encode_type`]).
///
/// The two most significant bits of `t` (always 0 in STUN) are ignored.
pub fn decode_type(t: u16) -> (Method, Class) {
    let t = t & 0x3FFF;
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let c = ((t >> 4) & 0b01) | ((t >> 7) & 0b10);
    (Method(m), Class::from_bits(c))
}

/// Why bytes were rejected by the parser or one of the `decode_*` functions.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the fixed-size part (20 for STUN, 4 for ChannelData).
    #[error("buffer too short")]
    TooShort,
    /// The first two bits of a STUN message are not `00`.
    #[error("not a STUN message")]
    NotStun,
    /// Bytes 4..8 are not the magic cookie 0x2112A442.
    #[error("bad magic cookie")]
    BadCookie,
    /// A length field disagrees with the buffer (or is not a multiple of 4 in a STUN header).
    #[error("length field does not match the buffer")]
    BadLength,
    /// An attribute TLV (with its padding) does not fit in the message.
    #[error("attribute runs past the end of the message")]
    BadAttribute,
    /// An attribute follows FINGERPRINT (RFC 8489 §14.7: it must be last).
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// An attribute value has the wrong size for its type.
    #[error("attribute value has the wrong size")]
    BadValueLength,
    /// An address attribute names a family other than 0x01 (IPv4) or 0x02 (IPv6).
    #[error("unknown address family")]
    BadAddressFamily,
    /// A text attribute is not valid UTF-8.
    #[error("attribute value is not valid UTF-8")]
    BadUtf8,
    /// ERROR-CODE class outside 3..=6 or number above 99 (RFC 8489 §14.8).
    #[error("invalid ERROR-CODE")]
    BadErrorCode,
    /// ChannelData channel number outside 0x4000..=0x7FFF (RFC 5766 §11).
    #[error("channel number out of range")]
    BadChannel,
    /// A stream frame starting with bits `10` or `11`: neither STUN nor ChannelData.
    #[error("neither a STUN message nor ChannelData")]
    UnknownFrame,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_known_values() {
        // RFC 8489 §5 / RFC 8656 §17 well-known wire values.
        let table = [
            (Method::BINDING, Class::Request, 0x0001),
            (Method::BINDING, Class::Success, 0x0101),
            (Method::BINDING, Class::Error, 0x0111),
            (Method::BINDING, Class::Indication, 0x0011),
            (Method::ALLOCATE, Class::Request, 0x0003),
            (Method::ALLOCATE, Class::Success, 0x0103),
            (Method::ALLOCATE, Class::Error, 0x0113),
            (Method::REFRESH, Class::Request, 0x0004),
            (Method::SEND, Class::Indication, 0x0016),
            (Method::DATA, Class::Indication, 0x0017),
            (Method::CREATE_PERMISSION, Class::Success, 0x0108),
            (Method::CHANNEL_BIND, Class::Error, 0x0119),
            (Method(0x0FFF), Class::Error, 0x3FFF),
        ];
        for (m, c, t) in table {
            assert_eq!(encode_type(m, c), t, "{m:?} {c:?}");
            assert_eq!(decode_type(t), (m, c), "{t:#06x}");
        }
    }

    #[test]
    fn message_type_roundtrip_all() {
        for m in 0..0x1000u16 {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let t = encode_type(Method(m), c);
                assert_eq!(t & 0xC000, 0);
                assert_eq!(decode_type(t), (Method(m), c));
            }
        }
        // Upper method bits are masked off.
        assert_eq!(encode_type(Method(0xF001), Class::Request), 0x0001);
    }
}
