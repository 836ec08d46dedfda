//! Attribute type numbers and typed decoding of attribute values.
//!
//! Numbers from the IANA "STUN Attributes" registry: RFC 8489 §18.3 (STUN),
//! RFC 8656 §18 (TURN), RFC 8445 (ICE), RFC 5780 (NAT behaviour discovery),
//! RFC 6062 (TCP allocations), RFC 7635 (third-party authorization), RFC 8016
//! (mobility), RFC 7982 (transaction transmit counter).
//!
//! Types 0x0000–0x7FFF are comprehension-required, 0x8000–0xFFFF
//! comprehension-optional (RFC 8489 §14).
//!
//! Every `decode_*` function takes the attribute value without padding, as in
//! [`RawAttribute::value`](super::RawAttribute), and rejects any length other
//! than the one its attribute has.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{ParseError, TransactionId, MAGIC_COOKIE};

pub const MAPPED_ADDRESS: u16 = 0x0001;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001A;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
pub const USERHASH: u16 = 0x001E;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const RESERVATION_TOKEN: u16 = 0x0022;
pub const PRIORITY: u16 = 0x0024;
pub const USE_CANDIDATE: u16 = 0x0025;
pub const PADDING: u16 = 0x0026;
pub const RESPONSE_PORT: u16 = 0x0027;
pub const CONNECTION_ID: u16 = 0x002A;
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
pub const ICMP: u16 = 0x8004;
pub const SOFTWARE: u16 = 0x8022;
pub const ALTERNATE_SERVER: u16 = 0x8023;
pub const TRANSACTION_TRANSMIT_COUNTER: u16 = 0x8025;
pub const CACHE_TIMEOUT: u16 = 0x8027;
pub const FINGERPRINT: u16 = 0x8028;
pub const ICE_CONTROLLED: u16 = 0x8029;
pub const ICE_CONTROLLING: u16 = 0x802A;
pub const RESPONSE_ORIGIN: u16 = 0x802B;
pub const OTHER_ADDRESS: u16 = 0x802C;
pub const ORIGIN: u16 = 0x802F;

/// Address family byte of the address attributes (RFC 8489 §14.1) and of
/// REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.1, §18.11).
pub const FAMILY_IPV4: u8 = 0x01;
pub const FAMILY_IPV6: u8 = 0x02;

/// REQUESTED-TRANSPORT protocol number for UDP (RFC 8656 §18.7).
pub const TRANSPORT_UDP: u8 = 17;
/// REQUESTED-TRANSPORT protocol number for TCP (RFC 6062).
pub const TRANSPORT_TCP: u8 = 6;

/// Decodes a plain address attribute: MAPPED-ADDRESS (RFC 8489 §14.1),
/// ALTERNATE-SERVER, RESPONSE-ORIGIN, OTHER-ADDRESS.
///
/// Layout: 1 reserved byte (ignored), family, port, then 4 (IPv4) or 16 (IPv6)
/// address bytes; the value must be exactly 8 or 20 bytes.
pub fn decode_address(value: &[u8]) -> Result<SocketAddr, ParseError> {
    let (family, port, addr) = split_address(value)?;
    match family {
        FAMILY_IPV4 => {
            let a: [u8; 4] = addr.try_into().map_err(|_| ParseError::BadValueLength)?;
            Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        FAMILY_IPV6 => {
            let a: [u8; 16] = addr.try_into().map_err(|_| ParseError::BadValueLength)?;
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                0,
                0,
            )))
        }
        _ => Err(ParseError::BadAddressFamily),
    }
}

/// Decodes an XOR'd address attribute: XOR-MAPPED-ADDRESS (RFC 8489 §14.2),
/// XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS (RFC 8656 §18.3, §18.5).
///
/// The port is XOR'd with the top 16 bits of the magic cookie; an IPv4 address
/// with the magic cookie; an IPv6 address with the magic cookie followed by the
/// transaction ID.
pub fn decode_xor_address(value: &[u8], txid: &TransactionId) -> Result<SocketAddr, ParseError> {
    let (family, port, addr) = split_address(value)?;
    let port = port ^ (MAGIC_COOKIE >> 16) as u16;
    let mask = xor_mask(txid);
    match family {
        FAMILY_IPV4 => {
            let mut a: [u8; 4] = addr.try_into().map_err(|_| ParseError::BadValueLength)?;
            xor_in_place(&mut a, &mask);
            Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        FAMILY_IPV6 => {
            let mut a: [u8; 16] = addr.try_into().map_err(|_| ParseError::BadValueLength)?;
            xor_in_place(&mut a, &mask);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                0,
                0,
            )))
        }
        _ => Err(ParseError::BadAddressFamily),
    }
}

/// Decodes a 32-bit unsigned value (LIFETIME, PRIORITY, CACHE-TIMEOUT, ...):
/// exactly 4 bytes, network order.
pub fn decode_u32(value: &[u8]) -> Result<u32, ParseError> {
    let b: [u8; 4] = value.try_into().map_err(|_| ParseError::BadValueLength)?;
    Ok(u32::from_be_bytes(b))
}

/// Decodes a UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE,
/// ALTERNATE-DOMAIN).
///
/// Only UTF-8 validity is checked. The size limits of RFC 8489 §14.3, §14.9,
/// §14.10, §14.14 (e.g. USERNAME < 513 bytes, REALM/NONCE < 128 characters)
/// are left to the caller, which knows the attribute.
pub fn decode_utf8(value: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(value).map_err(|_| ParseError::BadUtf8)
}

/// Decodes ERROR-CODE (RFC 8489 §14.8) into the code (300–699) and the reason
/// phrase.
///
/// Layout: 21 reserved bits (ignored), 3-bit class (3..=6), 8-bit number
/// (0..=99), then the UTF-8 reason phrase.
pub fn decode_error_code(value: &[u8]) -> Result<(u16, &str), ParseError> {
    let (head, reason) = value
        .split_at_checked(4)
        .ok_or(ParseError::BadValueLength)?;
    let [_, _, class, number]: [u8; 4] = head.try_into().map_err(|_| ParseError::BadValueLength)?;
    let class = class & 0x07;
    if !(3..=6).contains(&class) || number > 99 {
        return Err(ParseError::BadErrorCode);
    }
    let reason = decode_utf8(reason)?;
    Ok((u16::from(class) * 100 + u16::from(number), reason))
}

/// Decodes CHANNEL-NUMBER (RFC 8656 §18.1): a 16-bit number followed by 16
/// RFFU bits (ignored). Exactly 4 bytes.
///
/// The number is returned as sent: a ChannelBind with a number outside
/// [`CHANNEL_MIN`](super::CHANNEL_MIN)..=[`CHANNEL_MAX`](super::CHANNEL_MAX)
/// must be answered with 400 by the server (RFC 8656 §11.2).
pub fn decode_channel_number(value: &[u8]) -> Result<u16, ParseError> {
    let [a, b, _, _]: [u8; 4] = value.try_into().map_err(|_| ParseError::BadValueLength)?;
    Ok(u16::from_be_bytes([a, b]))
}

/// Decodes REQUESTED-TRANSPORT (RFC 8656 §18.7): the IANA protocol number
/// (17 = UDP) followed by 3 RFFU bytes (ignored). Exactly 4 bytes.
pub fn decode_requested_transport(value: &[u8]) -> Result<u8, ParseError> {
    let [proto, _, _, _]: [u8; 4] = value.try_into().map_err(|_| ParseError::BadValueLength)?;
    Ok(proto)
}

/// Decodes REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656
/// §18.1, §18.11): the family byte ([`FAMILY_IPV4`] or [`FAMILY_IPV6`], not
/// checked here — the server answers other values with 440) and 3 reserved
/// bytes. Exactly 4 bytes.
pub fn decode_address_family(value: &[u8]) -> Result<u8, ParseError> {
    let [family, _, _, _]: [u8; 4] = value.try_into().map_err(|_| ParseError::BadValueLength)?;
    Ok(family)
}

/// Decodes EVEN-PORT (RFC 8656 §18.8): one byte whose top bit R asks for the
/// next-higher port to be reserved. Returns R.
///
/// The value is 1 byte; up to 4 are accepted, for senders that count the
/// padding in the length.
pub fn decode_even_port(value: &[u8]) -> Result<bool, ParseError> {
    match value {
        [flags, ..] if value.len() <= 4 => Ok(flags & 0x80 != 0),
        _ => Err(ParseError::BadValueLength),
    }
}

/// Decodes RESERVATION-TOKEN (RFC 8656 §18.9): exactly 8 opaque bytes.
pub fn decode_reservation_token(value: &[u8]) -> Result<[u8; 8], ParseError> {
    value.try_into().map_err(|_| ParseError::BadValueLength)
}

/// Splits an address value into family, port and address bytes (length not
/// yet checked against the family).
fn split_address(value: &[u8]) -> Result<(u8, u16, &[u8]), ParseError> {
    let (head, addr) = value
        .split_at_checked(4)
        .ok_or(ParseError::BadValueLength)?;
    let [_, family, p0, p1]: [u8; 4] = head.try_into().map_err(|_| ParseError::BadValueLength)?;
    Ok((family, u16::from_be_bytes([p0, p1]), addr))
}

/// The 16-byte XOR mask for addresses: magic cookie then transaction ID.
pub(crate) fn xor_mask(txid: &TransactionId) -> [u8; 16] {
    let mut mask = [0u8; 16];
    for (m, b) in mask
        .iter_mut()
        .zip(MAGIC_COOKIE.to_be_bytes().iter().chain(txid.0.iter()))
    {
        *m = *b;
    }
    mask
}

/// XORs `bytes` with the start of `mask`.
pub(crate) fn xor_in_place(bytes: &mut [u8], mask: &[u8; 16]) {
    for (b, m) in bytes.iter_mut().zip(mask.iter()) {
        *b ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXID: TransactionId = TransactionId([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    #[test]
    fn xor_address_ipv4_rfc5769() {
        let v = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        let a = decode_xor_address(&v, &TXID).expect("valid");
        assert_eq!(a, "192.0.2.1:32853".parse::<SocketAddr>().expect("addr"));
    }

    #[test]
    fn address_lengths_and_families() {
        assert_eq!(decode_address(&[]), Err(ParseError::BadValueLength));
        assert_eq!(
            decode_address(&[0, 1, 0, 80]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(
            decode_address(&[0, 1, 0, 80, 1, 2, 3]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(
            decode_address(&[0, 1, 0, 80, 1, 2, 3, 4, 0]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(
            decode_address(&[0, 3, 0, 80, 1, 2, 3, 4]),
            Err(ParseError::BadAddressFamily)
        );
        assert_eq!(
            decode_address(&[0xff, 1, 0, 80, 1, 2, 3, 4]),
            Ok("1.2.3.4:80".parse().expect("addr"))
        );
        let mut v6 = vec![0, 2, 0x12, 0x34];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(decode_address(&v6), Ok("[::1]:4660".parse().expect("addr")));
        assert_eq!(
            decode_xor_address(&v6[..8], &TXID),
            Err(ParseError::BadValueLength)
        );
    }

    #[test]
    fn error_code() {
        let mut v = vec![0, 0, 4, 1];
        v.extend_from_slice(b"Unauthorized");
        assert_eq!(decode_error_code(&v), Ok((401, "Unauthorized")));
        // Reserved bits above the class are ignored.
        assert_eq!(decode_error_code(&[0xff, 0xff, 0xfd, 20]), Ok((520, "")));
        assert_eq!(
            decode_error_code(&[0, 0, 2, 0]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 7, 0]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4, 100]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4, 0, 0xff]),
            Err(ParseError::BadUtf8)
        );
    }

    #[test]
    fn small_values() {
        assert_eq!(decode_u32(&[0, 0, 0x02, 0x58]), Ok(600));
        assert_eq!(decode_u32(&[0, 0, 2]), Err(ParseError::BadValueLength));
        assert_eq!(decode_u32(&[0; 5]), Err(ParseError::BadValueLength));
        assert_eq!(decode_channel_number(&[0x40, 0x01, 0xff, 0xff]), Ok(0x4001));
        assert_eq!(
            decode_channel_number(&[0x40, 0x01]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(
            decode_requested_transport(&[17, 0, 0, 0]),
            Ok(TRANSPORT_UDP)
        );
        assert_eq!(
            decode_requested_transport(&[17]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(decode_address_family(&[2, 0, 0, 0]), Ok(FAMILY_IPV6));
        assert_eq!(decode_even_port(&[0x80]), Ok(true));
        assert_eq!(decode_even_port(&[0x7f]), Ok(false));
        assert_eq!(decode_even_port(&[0x80, 0, 0, 0]), Ok(true));
        assert_eq!(decode_even_port(&[]), Err(ParseError::BadValueLength));
        assert_eq!(
            decode_even_port(&[0x80; 5]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(decode_reservation_token(&[1; 8]), Ok([1; 8]));
        assert_eq!(
            decode_reservation_token(&[1; 4]),
            Err(ParseError::BadValueLength)
        );
        assert_eq!(decode_utf8(b"ok"), Ok("ok"));
        assert_eq!(decode_utf8(&[0xc3]), Err(ParseError::BadUtf8));
    }
}
