//! What travels in a data packet, and the raw forwarder's binding message.
//!
//! Payload (at least [`PROBE_LEN`] bytes, the rest zero):
//! `seq: u64 | sent_ns: u64 (CLOCK_MONOTONIC) | client: u32 | magic: u32`.
//! The client leg carries it after a 4-byte ChannelData header
//! (RFC 8656 §12.4: channel number, length); the peer leg carries it bare.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

pub const PROBE_LEN: usize = 24;
pub const PROBE_MAGIC: u32 = 0x7462_6e63; // "tbnc"

/// Channel number every bench client binds (channels are per allocation).
pub const CHANNEL: u16 = 0x4000;

pub fn write_probe(buf: &mut [u8], seq: u64, sent_ns: u64, client: u32) {
    if buf.len() < PROBE_LEN {
        return;
    }
    buf[0..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&sent_ns.to_be_bytes());
    buf[16..20].copy_from_slice(&client.to_be_bytes());
    buf[20..24].copy_from_slice(&PROBE_MAGIC.to_be_bytes());
}

/// (seq, sent_ns, client) of a payload, if it is one of ours.
pub fn read_probe(buf: &[u8]) -> Option<(u64, u64, u32)> {
    let p = buf.get(..PROBE_LEN)?;
    let magic = u32::from_be_bytes(p[20..24].try_into().ok()?);
    if magic != PROBE_MAGIC {
        return None;
    }
    Some((
        u64::from_be_bytes(p[0..8].try_into().ok()?),
        u64::from_be_bytes(p[8..16].try_into().ok()?),
        u32::from_be_bytes(p[16..20].try_into().ok()?),
    ))
}

/// ChannelData header (RFC 8656 §12.4).
pub fn channel_header(channel: u16, len: usize) -> [u8; 4] {
    let c = channel.to_be_bytes();
    let l = (len as u16).to_be_bytes();
    [c[0], c[1], l[0], l[1]]
}

/// "Fake TURN" binding for the raw forwarder, sent by a client in place of
/// Allocate + ChannelBind: `"NXFB" | channel: u16 | peer IPv4: 4 | peer port: u16`.
/// The forwarder answers `"NXFA"` to the sender.
pub const BIND_MAGIC: &[u8; 4] = b"NXFB";
pub const BIND_ACK: &[u8; 4] = b"NXFA";
pub const BIND_LEN: usize = 12;

pub fn bind_message(channel: u16, peer: SocketAddrV4) -> [u8; BIND_LEN] {
    let mut m = [0u8; BIND_LEN];
    m[0..4].copy_from_slice(BIND_MAGIC);
    m[4..6].copy_from_slice(&channel.to_be_bytes());
    m[6..10].copy_from_slice(&peer.ip().octets());
    m[10..12].copy_from_slice(&peer.port().to_be_bytes());
    m
}

pub fn parse_bind(buf: &[u8]) -> Option<(u16, SocketAddrV4)> {
    if buf.len() != BIND_LEN || &buf[0..4] != BIND_MAGIC {
        return None;
    }
    let channel = u16::from_be_bytes([buf[4], buf[5]]);
    let ip = Ipv4Addr::new(buf[6], buf[7], buf[8], buf[9]);
    let port = u16::from_be_bytes([buf[10], buf[11]]);
    Some((channel, SocketAddrV4::new(ip, port)))
}

/// The raw forwarder's binding, sent from `c` and retried until acknowledged.
pub fn fake_bind(c: &UdpSocket, server: SocketAddrV4, peer: SocketAddrV4) -> anyhow::Result<()> {
    let m = bind_message(CHANNEL, peer);
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        c.send_to(&m, server)?;
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match c.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == BIND_ACK => return Ok(()),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    anyhow::bail!("no binding acknowledgement from {server}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trip_and_foreign_bytes() {
        let mut b = [0u8; 100];
        write_probe(&mut b, 7, 123_456_789, 3);
        assert_eq!(read_probe(&b), Some((7, 123_456_789, 3)));
        assert_eq!(read_probe(&[0u8; 100]), None);
        assert_eq!(read_probe(&b[..10]), None);
    }

    #[test]
    fn bind_round_trip() {
        let peer: SocketAddrV4 = "127.0.0.2:4567".parse().unwrap();
        let m = bind_message(0x4001, peer);
        assert_eq!(parse_bind(&m), Some((0x4001, peer)));
        assert_eq!(parse_bind(&m[..11]), None);
        assert_eq!(channel_header(0x4000, 100), [0x40, 0, 0, 100]);
    }
}
