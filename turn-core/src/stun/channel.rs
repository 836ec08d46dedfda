//! TURN ChannelData messages and stream framing (RFC 8656 §12).
//!
//! ChannelData is the data-path format: a 4-byte header (channel number,
//! payload length) and the payload. On UDP the datagram may carry padding
//! after the payload; on TCP/TLS the payload is always padded to a multiple of
//! 4 bytes (RFC 8656 §12.5), and the padding is not counted in the length.

use super::{ParseError, HEADER_LEN};

/// Lowest valid channel number (RFC 8656 §12).
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number of the ChannelData framing: any message whose first
/// two bits are `01` (RFC 5766's range 0x4000–0x7FFF) is parsed as
/// ChannelData. Which numbers a client may bind is the server's rule,
/// [`CHANNEL_BIND_MAX`].
pub const CHANNEL_MAX: u16 = 0x7FFF;
/// Highest channel number a client may bind: RFC 8656 §12 allows
/// 0x4000–0x4FFF and reserves 0x5000–0xFFFF, so that the first byte of
/// ChannelData (64–79) stays apart from the other protocols that share a port
/// (RFC 7983; RFC 9443 gives 80–127 to QUIC). RFC 5766 allowed up to 0x7FFF,
/// and clients still pick numbers there (coturn's test clients do): they are
/// accepted unless `Config::strict_channel_numbers` is set.
pub const CHANNEL_BIND_MAX: u16 = 0x4FFF;

/// A parsed ChannelData message borrowing the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub payload: &'a [u8],
}

/// `n` rounded up to a multiple of 4 (saturating near `usize::MAX`).
pub const fn round_up_4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Parses a ChannelData message (RFC 8656 §12.4).
///
/// The channel number must be in [`CHANNEL_MIN`]..=[`CHANNEL_MAX`]
/// ([`ParseError::BadChannel`], which includes every packet whose first two
/// bits are not `01`), and the declared length must fit in the buffer after
/// the header ([`ParseError::BadLength`]). Bytes after the payload are padding
/// and are ignored. Allocation-free.
pub fn parse_channel_data(buf: &[u8]) -> Result<ChannelData<'_>, ParseError> {
    let (header, rest) = buf.split_at_checked(4).ok_or(ParseError::TooShort)?;
    let [c0, c1, l0, l1]: [u8; 4] = header.try_into().map_err(|_| ParseError::TooShort)?;
    let channel = u16::from_be_bytes([c0, c1]);
    if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
        return Err(ParseError::BadChannel);
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let payload = rest.get(..len).ok_or(ParseError::BadLength)?;
    Ok(ChannelData { channel, payload })
}

/// The 4-byte ChannelData header for `len` bytes of payload on `channel`.
pub fn channel_data_header(channel: u16, len: u16) -> [u8; 4] {
    let [c0, c1] = channel.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    [c0, c1, l0, l1]
}

/// Whether the packet starts with the bits `01` of ChannelData, rather than the
/// `00` of STUN (RFC 8656 §12). Looks at the first byte only; `false` for an
/// empty buffer. [`parse_channel_data`] does the full check.
pub fn is_channel_data(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| b >> 6 == 0b01)
}

/// Framing on stream transports (RFC 8656 §10, §12.5): the total size of the
/// frame that starts at `prefix[0]`.
///
/// * `Ok(None)`: fewer than 4 bytes available, read more.
/// * STUN (first bits `00`): 20 + the header length field. The message itself
///   (cookie, length a multiple of 4, ...) is checked by
///   [`Message::parse`](super::Message::parse) once the frame is complete.
/// * ChannelData (first bits `01`): 4 + the length rounded up to 4, since
///   ChannelData over TCP/TLS is always padded.
/// * `Err(ParseError::UnknownFrame)` for first bits `10` / `11`: the stream is
///   out of sync and should be closed.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some([b0, _, l0, l1]) = prefix.first_chunk::<4>().copied() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    match b0 >> 6 {
        0b00 => Ok(Some(HEADER_LEN + len)),
        0b01 => Ok(Some(4 + round_up_4(len))),
        _ => Err(ParseError::UnknownFrame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_cases() {
        assert_eq!(frame_len(&[]), Ok(None));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00]), Ok(None));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00]), Ok(None));
        // STUN: header + length.
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x00]), Ok(Some(20)));
        assert_eq!(frame_len(&[0x01, 0x01, 0x00, 0x58, 0x21]), Ok(Some(108)));
        assert_eq!(frame_len(&[0x00, 0x01, 0xff, 0xfc]), Ok(Some(20 + 0xfffc)));
        // ChannelData: header + length padded to 4.
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x00]), Ok(Some(4)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x01]), Ok(Some(8)));
        assert_eq!(frame_len(&[0x4f, 0xff, 0x00, 0x04]), Ok(Some(8)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x05]), Ok(Some(12)));
        assert_eq!(frame_len(&[0x7f, 0xff, 0xff, 0xff]), Ok(Some(4 + 0x1_0000)));
        // Neither.
        assert_eq!(frame_len(&[0x80, 0, 0, 0]), Err(ParseError::UnknownFrame));
        assert_eq!(frame_len(&[0xc0, 0, 0, 0]), Err(ParseError::UnknownFrame));
    }

    #[test]
    fn channel_data_cases() {
        assert_eq!(
            parse_channel_data(&[0x40, 0x00, 0x00]),
            Err(ParseError::TooShort)
        );
        assert_eq!(
            parse_channel_data(&[0x40, 0x00, 0x00, 0x00]),
            Ok(ChannelData {
                channel: 0x4000,
                payload: &[]
            })
        );
        assert_eq!(
            parse_channel_data(&[0x4f, 0xff, 0x00, 0x02, 7, 8, 0, 0]),
            Ok(ChannelData {
                channel: 0x4fff,
                payload: &[7, 8]
            })
        );
        assert_eq!(
            parse_channel_data(&[0x40, 0x00, 0x00, 0x03, 1, 2]),
            Err(ParseError::BadLength)
        );
        assert_eq!(
            parse_channel_data(&[0x7f, 0xff, 0x00, 0x00]),
            Ok(ChannelData {
                channel: 0x7fff,
                payload: &[]
            })
        );
        assert_eq!(
            parse_channel_data(&[0x80, 0x00, 0x00, 0x00]),
            Err(ParseError::BadChannel)
        );
        assert_eq!(
            parse_channel_data(&[0x3f, 0xff, 0x00, 0x00]),
            Err(ParseError::BadChannel)
        );
        assert_eq!(
            parse_channel_data(&[0x00, 0x01, 0x00, 0x00]),
            Err(ParseError::BadChannel)
        );
        assert_eq!(channel_data_header(0x4001, 300), [0x40, 0x01, 0x01, 0x2c]);
        assert!(is_channel_data(&[0x40]));
        assert!(is_channel_data(&[0x7f, 0]));
        assert!(!is_channel_data(&[0x00, 0x01]));
        assert!(!is_channel_data(&[0x80]));
        assert!(!is_channel_data(&[]));
        assert_eq!(round_up_4(0), 0);
        assert_eq!(round_up_4(5), 8);
        assert_eq!(round_up_4(8), 8);
    }
}
