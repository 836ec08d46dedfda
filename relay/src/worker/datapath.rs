//! The packet paths of a [`Worker`]: client datagrams, peer datagrams, and
//! frames cut from TCP/TLS streams, each handed to the core and, on the
//! ChannelData hot path, sent on at once from the shared receive buffer.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use turn_core::stats::{DropReason, MethodLabel};
use turn_core::{ClientAction, ClientSocket, Now, PeerAction, RelayHandle, Server, Transport};

use super::{Worker, HEADROOM, STREAM_BUDGET, UDP_BUDGET};
use crate::clients::CloseReason;
use crate::relay_sockets::RelaySockets;
use crate::stream::{cut_frames, FrameError, ReadOutcome};
use crate::sys::udp_send;
use crate::token::{token, TokenKind};

impl Worker {
    /// Client datagrams on listener `index`, a `recvmmsg` batch at a time.
    /// ChannelData and Send payloads are queued (they leave when the loop
    /// turn ends, `Worker::flush`); a control message lets the core act at
    /// once (bind or free relay sockets, answer).
    pub(super) fn udp_readable(&mut self, index: u32, now: Now) {
        for _ in 0..UDP_BUDGET.div_ceil(self.batch.size()) {
            let Some(l) = self.clients.udp.get(index as usize) else {
                return;
            };
            let (fd, local) = (l.socket.as_raw_fd(), l.local);
            let got = match self.batch.recv(fd) {
                Ok(got) => got,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => continue,
                    _ => {
                        tracing::warn!(error = %e, "UDP receive failed");
                        return;
                    }
                },
            };
            let full = got.len() == self.batch.size();
            for i in got {
                let Some((remote, _)) = self.batch.meta(i) else {
                    self.server.stats().dropped(DropReason::Malformed).inc();
                    continue;
                };
                let from = ClientSocket {
                    transport: Transport::Udp,
                    remote,
                    local,
                };
                let Worker {
                    server,
                    relays,
                    batch,
                    ..
                } = self;
                let packet = batch.payload(i);
                let request = MethodLabel::of_request(packet).map(|m| (m, Instant::now()));
                match server.handle_client(from, packet, now) {
                    ClientAction::Forward {
                        relay,
                        peer,
                        payload,
                    } => match relays.socket(relay) {
                        Some(socket) if payload.end <= packet.len() => {
                            let fd = socket.as_raw_fd();
                            batch.queue(fd, i, HEADROOM + payload.start, payload.len(), peer);
                        }
                        _ => server.stats().dropped(DropReason::SendFailed).inc(),
                    },
                    ClientAction::Done => self.drive_core(now),
                }
                if let Some((method, at)) = request {
                    self.request_times.record(method, at.elapsed());
                }
            }
            self.drive_core(now);
            if !full {
                // Fewer than asked for: the socket is empty (edge-triggered
                // readiness re-arms on the next datagram).
                return;
            }
        }
        self.again.push(token(TokenKind::Udp, index));
    }

    /// Peer datagrams on relay socket `index`, a `recvmmsg` batch at a time;
    /// ChannelData to UDP clients is queued on their listener, so the datagrams
    /// of every relay socket read in one turn leave in one `sendmmsg`.
    pub(super) fn relay_readable(&mut self, index: u32, now: Now) {
        let relay = RelayHandle(index);
        for _ in 0..UDP_BUDGET.div_ceil(self.batch.size()) {
            let Some(socket) = self.relays.socket(relay) else {
                return;
            };
            let got = match self.batch.recv(socket.as_raw_fd()) {
                Ok(got) => got,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => continue,
                    _ => {
                        tracing::warn!(error = %e, "relay receive failed");
                        return;
                    }
                },
            };
            let full = got.len() == self.batch.size();
            for i in got {
                let Some((peer, len)) = self.batch.meta(i) else {
                    self.server.stats().dropped(DropReason::FrameTooLarge).inc();
                    continue;
                };
                let action = self
                    .server
                    .handle_peer(relay, peer, self.batch.payload(i), now);
                let PeerAction::ToClient { client, header } = action else {
                    continue;
                };
                // ChannelData in place: header into the headroom, zero padding
                // after the payload on streams (RFC 8656 §12.5).
                let slot = self.batch.slot_mut(i);
                slot[..HEADROOM].copy_from_slice(&header);
                let len = HEADROOM + len;
                if client.transport.is_stream() {
                    let padded = (len + 3) & !3;
                    slot[len..padded].fill(0);
                    self.clients
                        .deliver(client, &slot[..padded], self.server.stats());
                    continue;
                }
                match self.clients.udp.iter().find(|l| l.local == client.local) {
                    Some(l) => {
                        let fd = l.socket.as_raw_fd();
                        self.batch.queue(fd, i, 0, len, client.remote);
                    }
                    None => self.server.stats().dropped(DropReason::SendFailed).inc(),
                }
            }
            self.drive_core(now);
            if !full {
                return;
            }
        }
        self.again.push(token(TokenKind::Relay, index));
    }

    /// Sends the queued datagrams; counts what the kernel refused. Called at
    /// the end of every loop turn and before a relay socket is closed.
    pub(super) fn flush(&mut self) {
        let sent = self.batch.flush();
        if sent.failed > 0 {
            self.server
                .stats()
                .dropped(DropReason::SendFailed)
                .add(sent.failed);
        }
        self.shell.udp_send_calls.add(sent.calls);
        self.shell.udp_gso_coalesced.add(sent.coalesced);
    }

    /// Readiness of client connection `index`.
    pub(super) fn conn_event(&mut self, index: u32, writable: bool, now: Now) {
        if writable {
            self.clients.writable(index);
        }
        for _ in 0..STREAM_BUDGET {
            let Some(conn) = self.clients.conns.get_mut(index) else {
                return;
            };
            match conn.read(&mut self.buf[HEADROOM..]) {
                ReadOutcome::Data(n) => {
                    conn.last_rx = now.mono;
                    self.stream_data(index, n, now);
                }
                ReadOutcome::WouldBlock => {
                    // Handshake records and anything the frames queued.
                    self.clients.writable(index);
                    return;
                }
                ReadOutcome::Closed => {
                    return self.clients.schedule_close(index, CloseReason::Client)
                }
                ReadOutcome::Failed(e) => {
                    tracing::debug!(error = %e, "connection read failed");
                    return self.clients.schedule_close(index, CloseReason::Error);
                }
                ReadOutcome::HandOff => {
                    return self.clients.hand_off(index, self.poll.registry());
                }
                ReadOutcome::Tls(e) => {
                    if conn.is_handshaking() {
                        self.shell.tls_handshake_failures.inc();
                    }
                    tracing::debug!(error = %e, "TLS error");
                    return self.clients.schedule_close(index, CloseReason::Error);
                }
            }
        }
        self.again.push(token(TokenKind::Conn, index));
    }

    /// `n` plaintext bytes of connection `index` are in the receive buffer:
    /// hand every complete frame to the core, keep the partial tail.
    fn stream_data(&mut self, index: u32, n: usize, now: Now) {
        let Worker {
            server,
            relays,
            clients,
            buf,
            request_times,
            ..
        } = self;
        let Some(conn) = clients.conns.get_mut(index) else {
            return;
        };
        let client = conn.client;
        let mut frames = 0usize;
        let mut on_frame = |frame: &[u8]| {
            frames += 1;
            let request = MethodLabel::of_request(frame).map(|m| (m, Instant::now()));
            let action = server.handle_client(client, frame, now);
            forward(relays, server, action, frame);
            if let Some((method, at)) = request {
                request_times.record(method, at.elapsed());
            }
        };
        let data = &buf[HEADROOM..HEADROOM + n];
        let result = if conn.rbuf.is_empty() {
            // The common case: whole frames straight from the shared buffer.
            cut_frames(data, &mut on_frame).map(|used| {
                conn.rbuf.extend_from_slice(&data[used..]);
            })
        } else {
            let mut rbuf = std::mem::take(&mut conn.rbuf);
            rbuf.extend_from_slice(data);
            let r = cut_frames(&rbuf, &mut on_frame).map(|used| {
                rbuf.drain(..used);
            });
            if rbuf.capacity() > 128 * 1024 && rbuf.len() < 16 * 1024 {
                rbuf.shrink_to(16 * 1024);
            }
            conn.rbuf = rbuf;
            r
        };
        match result {
            Ok(()) if conn.rbuf.is_empty() => conn.partial_since = None,
            Ok(()) => {
                if frames > 0 || conn.partial_since.is_none() {
                    conn.partial_since = Some(now.mono);
                }
            }
            Err(FrameError::Garbage) => clients.schedule_close(index, CloseReason::Garbage),
            Err(FrameError::TooLarge) => clients.schedule_close(index, CloseReason::TooLarge),
        }
    }
}

/// The ChannelData / Send hot path: `packet[payload]` from a relay socket to a peer.
fn forward(relays: &RelaySockets, server: &Server, action: ClientAction, packet: &[u8]) {
    let ClientAction::Forward {
        relay,
        peer,
        payload,
    } = action
    else {
        return;
    };
    let sent = match (relays.socket(relay), packet.get(payload)) {
        (Some(socket), Some(data)) => udp_send(socket, data, peer),
        _ => false,
    };
    if !sent {
        server.stats().dropped(DropReason::SendFailed).inc();
    }
}
