//! TCP and TLS client connections: frame cutting (RFC 8656 §12.5: STUN messages
//! and ChannelData, padded to 4 bytes, back to back on the stream), bounded
//! write buffers and the timers that close stalled connections.
//!
//! Reads go into the worker's shared buffer; only the tail of a partial frame is
//! copied into the connection's own buffer, which is empty most of the time (a
//! connection costs no 64 KiB buffer while idle). Writes go straight to the
//! socket and are buffered only when the kernel pushes back; a client that
//! stops reading loses packets (counted) instead of stalling the worker.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use turn_core::stun::MAGIC_COOKIE;
use turn_core::ClientSocket;

/// Largest frame a stream may carry: a STUN message with a 16-bit length
/// (20 + 65535); ChannelData is at most 4 + 65535 + 3 padding.
pub(crate) const MAX_FRAME: usize = 20 + 0xFFFF;

/// Bytes queued for one client before packets to it are dropped.
pub(crate) const WRITE_LIMIT: usize = 256 * 1024;

/// A connection holding a partial frame (or a TLS handshake) for this long is closed.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that sent nothing and has no allocation for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the framing of a stream broke (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Neither a STUN message nor ChannelData.
    Garbage,
    /// Longer than [`MAX_FRAME`].
    TooLarge,
}

/// Calls `on_frame` for every complete frame at the start of `data`; returns how
/// many bytes were consumed (the rest is a partial frame).
pub(crate) fn cut_frames(
    data: &[u8],
    mut on_frame: impl FnMut(&[u8]),
) -> Result<usize, FrameError> {
    let mut pos = 0;
    loop {
        let rest = data.get(pos..).unwrap_or_default();
        // A STUN frame without the magic cookie means the stream is out of
        // sync (or is not TURN at all, e.g. TLS on the TCP port): stop early
        // instead of waiting for up to 64 KiB of a frame that is not one.
        if let Some(cookie) = rest.get(4..8) {
            if rest[0] >> 6 == 0 && cookie != MAGIC_COOKIE.to_be_bytes() {
                return Err(FrameError::Garbage);
            }
        }
        match turn_core::stun::frame_len(rest) {
            Ok(Some(len)) if len > MAX_FRAME => return Err(FrameError::TooLarge),
            Ok(Some(0)) => return Err(FrameError::Garbage),
            Ok(Some(len)) => match rest.get(..len) {
                Some(frame) => {
                    on_frame(frame);
                    pos += len;
                }
                None => return Ok(pos),
            },
            Ok(None) => return Ok(pos),
            Err(_) => return Err(FrameError::Garbage),
        }
    }
}

/// The outcome of one read.
pub(crate) enum ReadOutcome {
    /// `n` plaintext bytes at the start of the buffer.
    Data(usize),
    WouldBlock,
    /// Orderly close by the client.
    Closed,
    Failed(io::Error),
    /// TLS protocol error (a failed handshake, usually).
    Tls(rustls::Error),
    /// A TLS client offering ALPN `h2` (nothing read yet): for the HTTP/2 fallback.
    HandOff,
}

/// The outcome of queueing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    Sent,
    /// The client is not reading: the write buffer is full.
    Dropped,
    /// The connection is broken; close it.
    Failed,
}

/// One TCP or TLS client connection.
pub(crate) struct Conn {
    pub stream: mio::net::TcpStream,
    pub client: ClientSocket,
    tls: Option<Box<ServerConnection>>,
    /// The ClientHello is still to be looked at (peeked, not read) for ALPN `h2`.
    sniff: bool,
    /// The partial frame carried over from earlier reads.
    pub rbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    write_blocked: bool,
    pub opened: Instant,
    pub last_rx: Instant,
    /// Since when the connection holds a partial frame without completing one.
    pub partial_since: Option<Instant>,
    /// Since when the connection has no allocation (from its opening until
    /// an authenticated Allocate succeeds, and again once it ends).
    pub unallocated_since: Option<Instant>,
}

impl Conn {
    pub(crate) fn new(
        stream: mio::net::TcpStream,
        client: ClientSocket,
        tls: Option<ServerConnection>,
        now: Instant,
    ) -> Conn {
        Conn {
            stream,
            client,
            tls: tls.map(Box::new),
            sniff: false,
            rbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            write_blocked: false,
            opened: now,
            last_rx: now,
            partial_since: None,
            unallocated_since: Some(now),
        }
    }

    /// Looks at a TLS client's ClientHello before its handshake (see [`Conn::read`]).
    pub(crate) fn sniffing(mut self, yes: bool) -> Conn {
        self.sniff = yes && self.tls.is_some();
        self
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Reads plaintext into `buf` (decrypting for TLS).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let Some(tls) = self.tls.as_mut() else {
            loop {
                return match self.stream.read(buf) {
                    Ok(0) => ReadOutcome::Closed,
                    Ok(n) => ReadOutcome::Data(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => ReadOutcome::Failed(e),
                };
            }
        };
        if self.sniff {
            // Peeked, not read: a client handed over starts its handshake afresh there.
            let n = match self.stream.peek(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(_) => 0,
            };
            match nexrtc_quic::sniff(&buf[..n]) {
                // More of the ClientHello is on its way (edge-triggered: its arrival wakes
                // the connection again); a full buffer is not a ClientHello worth waiting for.
                nexrtc_quic::Sniff::NeedMore if n > 0 && n < buf.len() => {
                    return ReadOutcome::WouldBlock
                }
                nexrtc_quic::Sniff::H2 => return ReadOutcome::HandOff,
                _ => self.sniff = false,
            }
        }
        loop {
            match tls.reader().read(buf) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => return ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
            match tls.read_tls(&mut self.stream) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // Try to tell the client why (the alert is queued by rustls).
                let _ = tls.write_tls(&mut self.stream);
                return ReadOutcome::Tls(e);
            }
        }
    }

    /// Bytes waiting to be written (ours, not the kernel's).
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Sends one whole frame, or queues it; a frame that would push the queue
    /// past [`WRITE_LIMIT`] is dropped whole (the stream stays in sync).
    pub(crate) fn send(&mut self, frame: &[u8]) -> SendOutcome {
        if self.pending() + frame.len() > WRITE_LIMIT {
            return SendOutcome::Dropped;
        }
        if self.pending() > 0 || self.write_blocked {
            self.out.extend_from_slice(frame);
            if self.write_blocked {
                return SendOutcome::Sent;
            }
            return match self.flush() {
                Ok(()) => SendOutcome::Sent,
                Err(_) => SendOutcome::Failed,
            };
        }
        // Nothing queued: write straight from the caller's buffer (no copy on
        // plain TCP) and queue only what the kernel did not take.
        let mut written = 0;
        let result = match self.tls.as_mut() {
            None => write_plain(&mut self.stream, frame, &mut written),
            Some(tls) => write_tls(tls, &mut self.stream, frame, &mut written),
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
            Err(_) => return SendOutcome::Failed,
        }
        self.out
            .extend_from_slice(frame.get(written..).unwrap_or_default());
        SendOutcome::Sent
    }

    /// The socket became writable again.
    pub(crate) fn writable(&mut self) -> io::Result<()> {
        self.write_blocked = false;
        self.flush()
    }

    /// Writes what is queued until the kernel pushes back.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let result = match self.tls.as_mut() {
            None => write_plain(&mut self.stream, &self.out, &mut self.out_pos),
            Some(tls) => write_tls(tls, &mut self.stream, &self.out, &mut self.out_pos),
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
            Err(e) => return Err(e),
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 64 * 1024 {
                self.out.shrink_to(16 * 1024);
            }
        } else if self.out_pos > self.out.len() / 2 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Best effort close_notify before the socket is dropped.
    pub(crate) fn close(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut self.stream);
        }
    }
}

fn write_plain(stream: &mut mio::net::TcpStream, out: &[u8], pos: &mut usize) -> io::Result<()> {
    while let Some(rest) = out.get(*pos..).filter(|r| !r.is_empty()) {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Feeds plaintext to rustls only when its TLS output is drained, so memory per
/// connection stays bounded by our own queue (rustls holds about one chunk).
fn write_tls(
    tls: &mut ServerConnection,
    stream: &mut mio::net::TcpStream,
    out: &[u8],
    pos: &mut usize,
) -> io::Result<()> {
    const CHUNK: usize = 16 * 1024;
    loop {
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let rest = out.get(*pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(());
        }
        let chunk = &rest[..rest.len().min(CHUNK)];
        let n = tls.writer().write(chunk)?;
        if n == 0 {
            // Handshake not done and rustls' plaintext buffer is full: wait.
            return Ok(());
        }
        *pos += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request() -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m
    }

    fn channel_data(len: u16) -> Vec<u8> {
        let mut m = vec![0x40, 0x00];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(vec![0xAB; len as usize]);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn cut(data: &[u8]) -> (Result<usize, FrameError>, Vec<Vec<u8>>) {
        let mut frames = Vec::new();
        let r = cut_frames(data, |f| frames.push(f.to_vec()));
        (r, frames)
    }

    #[test]
    fn whole_frames_back_to_back() {
        let mut s = binding_request();
        s.extend(channel_data(5));
        s.extend(channel_data(8));
        let (r, frames) = cut(&s);
        assert_eq!(r, Ok(s.len()));
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], binding_request());
        assert_eq!(frames[1].len(), 12, "ChannelData padded to 4");
        assert_eq!(frames[2].len(), 12);
    }

    #[test]
    fn partial_input_byte_by_byte() {
        let mut s = binding_request();
        s.extend(channel_data(3));
        s.extend(binding_request());
        // Feed the stream one byte at a time, carrying the rest like Conn does.
        let mut carried = Vec::new();
        let mut frames = Vec::new();
        for b in &s {
            carried.push(*b);
            let used = cut_frames(&carried, |f| frames.push(f.to_vec())).unwrap();
            carried.drain(..used);
        }
        assert!(carried.is_empty());
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1], channel_data(3));
    }

    #[test]
    fn split_inside_a_frame() {
        let mut s = binding_request();
        s.extend(channel_data(100));
        let (r, frames) = cut(&s[..30]);
        assert_eq!(r, Ok(20));
        assert_eq!(frames.len(), 1);
        let (r, frames) = cut(&s[20..21]);
        assert_eq!(r, Ok(0));
        assert!(frames.is_empty());
    }

    #[test]
    fn garbage_breaks_the_stream() {
        let mut s = binding_request();
        s.extend_from_slice(&[0xC0, 0, 0, 0]);
        let (r, frames) = cut(&s);
        assert_eq!(r, Err(FrameError::Garbage));
        assert_eq!(frames.len(), 1, "frames before the garbage are delivered");
        // A TLS ClientHello on the TCP port: first bits 00 but no magic cookie.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        assert_eq!(cut(&hello).0, Err(FrameError::Garbage));
        // Fewer than 8 bytes of it: cannot tell yet.
        assert_eq!(cut(&hello[..6]).0, Ok(0));
    }

    /// A client that stops reading: frames are dropped whole once the queue is
    /// full, and everything queued arrives intact once it reads again.
    #[test]
    fn slow_reader_drops_whole_frames_then_catches_up() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, remote) = listener.accept().unwrap();
        server_side.set_nonblocking(true).unwrap();
        let stream = mio::net::TcpStream::from_std(server_side);
        let client = ClientSocket {
            transport: turn_core::Transport::Tcp,
            remote,
            local: listener.local_addr().unwrap(),
        };
        let mut conn = Conn::new(stream, client, None, Instant::now());

        let frame = channel_data(996); // 1000 bytes on the wire
        let mut sent = 0usize;
        let mut dropped = false;
        for _ in 0..100_000 {
            match conn.send(&frame) {
                SendOutcome::Sent => sent += 1,
                SendOutcome::Dropped => {
                    dropped = true;
                    break;
                }
                SendOutcome::Failed => panic!("send failed"),
            }
        }
        assert!(dropped, "the queue never filled");
        assert!(conn.pending() <= WRITE_LIMIT);

        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..1_000_000 {
            if got.len() == sent * frame.len() {
                break;
            }
            match peer.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable().unwrap(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), sent * frame.len());
        assert_eq!(conn.pending(), 0);
        let (r, frames) = cut(&got);
        assert_eq!(r, Ok(got.len()));
        assert_eq!(frames.len(), sent);
        assert!(frames.iter().all(|f| *f == frame));
    }
}
