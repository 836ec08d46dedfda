//! One data-plane worker: a std thread running a mio event loop that owns one
//! `turn_core::Server` and every socket it needs (client listeners, TCP/TLS
//! connections, relay sockets).
//!
//! # Why mio and not tokio here
//!
//! * One thread owns the core and all its sockets, so the packet path takes no
//!   lock and shares nothing: the core is `&mut`, the counters single-writer.
//! * Readiness costs O(ready sockets), not O(sockets): 10 000 idle allocations
//!   cost nothing per turn; there is no task, no waker and no channel per
//!   allocation (the webrtc-rs `turn` server's task per allocation and global
//!   mutex is what we avoid).
//! * The core's driving order (packets → commands → transmits → timeout) is
//!   exactly one loop turn, written once, in [`Worker::run`].
//!
//! Sockets are edge-triggered and read until `WouldBlock`; a socket still
//! readable after its per-turn budget is revisited next turn (fairness under
//! floods). UDP sockets are read and written in `recvmmsg`/`sendmmsg` batches
//! (`batch`) whose slots keep 4 bytes in front of the payload, so the
//! ChannelData header of a peer packet is written in place and no packet is
//! copied or allocated on the ChannelData path in either direction (on TCP a
//! frame is copied only when the kernel pushes back and it must wait in the
//! connection's queue; TLS encrypts into rustls' buffers).
//!
//! A relay runs N workers (`--relay-threads`), each with its own SO_REUSEPORT
//! listeners; they share only the port pools, the quota ledger and the
//! connection counts per client IP ([`HostWide`]), all taken
//! on Allocate and when an allocation ends, never per packet.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use rustls::ServerConfig;
use turn_core::net::Redacted;
use turn_core::stats::DropReason;
use turn_core::{AllocationLedger, Command, Credentials, Now, Server};

use crate::clients::{Clients, CloseReason, ConnsPerIp, Listener};
use crate::config::RelayConfig;
use crate::msg::Control;
use crate::relay_sockets::{PortPools, RelaySockets};
use crate::stats::{ShellStats, WorkerShared, WorkerStats};
use crate::sys::unix_now;
use crate::token::{decode, token, TokenKind};

pub(crate) mod batch;
pub use batch::gso_supported;
mod datapath;
mod fast;

/// Bytes kept free in front of every received payload for the ChannelData header.
pub(crate) const HEADROOM: usize = 4;
/// Largest UDP payload (IPv6 jumbograms aside) plus padding room for streams.
const BUF_LEN: usize = HEADROOM + 65536 + 4;
/// Datagrams read from one socket per loop turn before others get a turn.
const UDP_BUDGET: usize = 256;
/// Reads (of up to 64 KiB) from one connection per loop turn.
const STREAM_BUDGET: usize = 16;
/// The loop turns at least this often (timers, health tick).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The time, read once per event batch.
fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix_secs: unix_now(),
    }
}

pub(crate) struct Worker {
    index: usize,
    poll: Poll,
    waker: Arc<Waker>,
    tx: mpsc::Sender<Control>,
    rx: mpsc::Receiver<Control>,
    server: Server,
    clients: Clients,
    relays: RelaySockets,
    /// The stream receive buffer: `HEADROOM` free bytes, then the payload.
    buf: Box<[u8]>,
    /// Receive slots and send queue of the UDP sockets.
    batch: batch::Batch,
    shared: Arc<WorkerShared>,
    shell: Arc<ShellStats>,
    request_times: crate::stats::RequestTimes,
    /// The XDP fast path and the flows this worker installed in it.
    fast: Option<Arc<std::sync::Mutex<crate::xdp::FastPath>>>,
    flows: fast::Flows,
    /// Tokens whose socket may still have data (budget ran out).
    again: Vec<Token>,
    next_sweep: Instant,
    shutdown: bool,
}

/// What the workers of one relay share: host-wide state taken on Allocate,
/// when an allocation ends and when a connection opens or closes, never per
/// packet.
#[derive(Clone)]
pub(crate) struct HostWide {
    pub pools: PortPools,
    pub ledger: Arc<AllocationLedger>,
    pub conns_per_ip: ConnsPerIp,
    /// Where TLS clients that ask for ALPN `h2` go (the QUIC relay's HTTP/2 fallback).
    pub h2: Option<nexrtc_quic::H2Sink>,
    /// Request-duration histograms.
    pub request_times: crate::stats::RequestTimes,
    /// The XDP fast path, when attached: the workers install and remove its flows.
    pub fast: Option<Arc<std::sync::Mutex<crate::xdp::FastPath>>>,
}

impl Worker {
    /// Builds worker `index` around already bound listeners (errors are the
    /// caller's to report before any thread starts).
    pub(crate) fn new(
        index: usize,
        config: &RelayConfig,
        credentials: Arc<Credentials>,
        listeners: Vec<Listener>,
        tls: Option<Arc<ServerConfig>>,
        host: &HostWide,
    ) -> io::Result<(Worker, Arc<WorkerShared>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token(TokenKind::Waker, 0))?);
        let start = Instant::now();
        // The answer budget is the host's: each worker takes its share.
        let mut core = config.core.clone();
        core.unauthenticated = core.unauthenticated.shared_by(config.relay_threads);
        // The quotas are the host's: every worker counts in one ledger.
        core.ledger = Some(host.ledger.clone());
        // The core offers flows only when there is a fast path to put them in.
        core.fast_path = host.fast.is_some();
        let server = Server::new(core, credentials, start);
        let shell = Arc::new(ShellStats::default());
        let clients = Clients::new(
            config,
            listeners,
            tls,
            host.h2.clone(),
            shell.clone(),
            host.conns_per_ip.clone(),
            poll.registry(),
        )?;
        let relays = RelaySockets::new(
            &host.pools,
            config.multiplex_sockets,
            start,
            poll.registry(),
        )?;
        let shared = Arc::new(WorkerShared {
            alive: true.into(),
            allocations: 0.into(),
            tick_unix: unix_now().into(),
            stats: WorkerStats {
                core: server.stats().clone(),
                shell: shell.clone(),
            },
        });
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            index,
            poll,
            waker,
            tx,
            rx,
            server,
            clients,
            relays,
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            batch: batch::Batch::new(config.udp_batch, config.gso && batch::gso_supported()),
            shared: shared.clone(),
            shell,
            request_times: host.request_times.clone(),
            fast: host.fast.clone(),
            flows: fast::Flows::new(),
            again: Vec::new(),
            next_sweep: start + MAX_SLEEP,
            shutdown: false,
        };
        Ok((worker, shared))
    }

    /// Starts the thread; returns the control channel and its waker.
    pub(crate) fn spawn(self) -> io::Result<(mpsc::Sender<Control>, Arc<Waker>, JoinHandle<()>)> {
        let (tx, waker) = (self.tx.clone(), self.waker.clone());
        let thread = std::thread::Builder::new()
            .name(format!("relay-worker-{}", self.index))
            .spawn(move || self.run())?;
        Ok((tx, waker, thread))
    }

    fn run(mut self) {
        // Marks the worker dead however the thread ends (even by a panic).
        struct Alive(Arc<WorkerShared>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.alive.store(false, Ordering::Relaxed);
            }
        }
        let _alive = Alive(self.shared.clone());
        let mut events = Events::with_capacity(1024);
        tracing::debug!(worker = self.index, "worker started");
        while !self.shutdown {
            let timeout = if self.again.is_empty() {
                self.sleep_for(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.index, error = %e, "event loop failed");
                break;
            }
            let now = now();
            let again = std::mem::take(&mut self.again);
            for event in events.iter() {
                self.dispatch(event.token(), event.is_writable(), now);
            }
            for t in again {
                self.dispatch(t, false, now);
            }
            self.flush();
            self.timers(now);
            self.drive_core(now);
            self.publish(now);
        }
        self.clients.close_all();
        tracing::debug!(worker = self.index, "worker stopped");
    }

    fn sleep_for(&self, now: Instant) -> Duration {
        let mut wake = self.next_sweep;
        if let Some(t) = self.server.poll_timeout() {
            wake = wake.min(t);
        }
        wake.saturating_duration_since(now).min(MAX_SLEEP)
    }

    fn dispatch(&mut self, t: Token, writable: bool, now: Now) {
        let (kind, index) = decode(t);
        match kind {
            Some(TokenKind::Waker) => self.controls(),
            Some(TokenKind::Udp) => self.udp_readable(index, now),
            Some(TokenKind::StreamListener) => {
                let drained = self.clients.accept(index, now.mono, self.poll.registry());
                if !drained {
                    self.again.push(t);
                }
            }
            Some(TokenKind::Conn) => self.conn_event(index, writable, now),
            Some(TokenKind::Relay) => self.relay_readable(index, now),
            None => {}
        }
        self.drive_core(now);
    }

    fn controls(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(Control::SetCredentials(c)) => self.server.set_credentials(c),
                Ok(Control::Revoke {
                    username,
                    until_unix,
                }) => self.server.revoke(&username, until_unix, Instant::now()),
                Ok(Control::Drain { alternate }) => self.server.start_drain(alternate),
                Ok(Control::Shutdown) => self.shutdown = true,
                Err(mpsc::TryRecvError::Empty) => return,
                // `tx` lives in `self`, so this cannot happen; stop if it does.
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.shutdown = true;
                    return;
                }
            }
        }
    }

    /// Runs the core's effects until none is left: commands (bind and free relay
    /// sockets), transmits (answers to clients), and connection closes (which
    /// may free allocations).
    fn drive_core(&mut self, now: Now) {
        loop {
            let mut busy = false;
            while let Some(cmd) = self.server.poll_command() {
                busy = true;
                match cmd {
                    Command::BindRelay {
                        request,
                        family,
                        port,
                    } => {
                        let result = self
                            .relays
                            .bind(family, port, now.mono, self.poll.registry());
                        if let Err(e) = &result {
                            tracing::debug!(?family, ?port, failure = ?e, "relay bind failed");
                        }
                        self.server.relay_bound(request, result, now);
                    }
                    Command::FreeRelay { relay } => {
                        // Queued datagrams name their socket by descriptor.
                        self.flush();
                        self.relays.free(relay, self.poll.registry());
                    }
                    Command::FlowUp(offer) => {
                        if let Some(fast) = &self.fast {
                            let mut fast = fast.lock().unwrap_or_else(|e| e.into_inner());
                            fast::up(&mut fast, &mut self.flows, &self.relays, offer);
                        }
                    }
                    Command::FlowDown { client, channel } => {
                        if let Some(fast) = &self.fast {
                            let mut fast = fast.lock().unwrap_or_else(|e| e.into_inner());
                            fast::down(&mut fast, &mut self.flows, &self.server, client, channel);
                        }
                    }
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                busy = true;
                self.clients.deliver(t.to, &t.data, self.server.stats());
            }
            for (conn, reason) in self.clients.take_closes() {
                busy = true;
                if let Some(client) = self.clients.close(conn, reason, self.poll.registry()) {
                    self.count_close(reason);
                    tracing::debug!(
                        client = %Redacted(&client.remote, self.server.config().log_addresses),
                        transport = client.transport.as_str(),
                        ?reason,
                        "connection closed"
                    );
                    self.server.client_closed(client, now);
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn count_close(&self, reason: CloseReason) {
        let stats = self.server.stats();
        match reason {
            CloseReason::Stalled | CloseReason::Idle => {
                stats.dropped(DropReason::StreamStalled).inc()
            }
            CloseReason::Garbage => stats.dropped(DropReason::Malformed).inc(),
            CloseReason::TooLarge => stats.dropped(DropReason::FrameTooLarge).inc(),
            CloseReason::Unauthenticated => self.shell.connections_unauthenticated.inc(),
            CloseReason::Client | CloseReason::Error => {}
        }
    }

    fn timers(&mut self, now: Now) {
        if self.server.poll_timeout().is_some_and(|t| t <= now.mono) {
            self.server.handle_timeout(now);
        }
        if now.mono >= self.next_sweep {
            self.next_sweep = now.mono + MAX_SLEEP;
            self.clients.sweep(now.mono, &self.server);
            self.relays.expire(now.mono);
            if let Some(fast) = &self.fast {
                fast::collect(fast, &mut self.flows, &self.server);
            }
            self.clients.retry_accepts(now.mono, self.poll.registry());
            // Reservations live in the host-wide pools: one worker reports them.
            if self.index == 0 {
                self.shell
                    .reservations
                    .store(self.relays.reservations() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Publishes the counts other threads read.
    fn publish(&self, now: Now) {
        let s = &self.shared;
        s.allocations
            .store(self.server.allocation_count(), Ordering::Relaxed);
        s.tick_unix.store(now.unix_secs, Ordering::Relaxed);
        self.shell
            .relay_sockets
            .store(self.relays.active() as u64, Ordering::Relaxed);
    }
}
