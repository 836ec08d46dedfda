//! The [`Relay`] handle: how the rest of the program (supervision, the
//! operations HTTP, and the edge agent through the binary's adapter) talks to
//! the data-plane workers. [`Relay::start`] returns once the workers run.
//!
//! Each worker gets [`Control`] messages over a channel plus a `mio::Waker`, so
//! the packet path never takes a lock: secrets, revocations and drain orders are
//! applied by the worker itself between event batches. Counts flow back through
//! atomics the handle reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nexrtc_quic::{Access, QuicConfig, QuicRelay, Stats as QuicStats};
use nexrtc_wire::Usage;
use turn_core::{AllocationLedger, Credentials};

pub use crate::clients::Bound;
use crate::clients::{bind_listeners, ConnsPerIp, Listener};
use crate::config::{RelayAddress, RelayConfig};
pub use crate::error::StartError;
use crate::metrics;
pub use crate::msg::Control;
use crate::relay_sockets::PortPools;
use crate::stats::{RequestTimes, Status, WorkerShared, WorkerStats};
use crate::sys::unix_now;
use crate::tls::{CertResolver, TlsError};
use crate::worker::{HostWide, Worker};
use crate::xdp::FastPath;

#[derive(Debug)]
pub(crate) struct Shared {
    pub draining: AtomicBool,
    /// Unix time by which a drain ordered from outside must end (0: none given).
    pub drain_deadline: AtomicU64,
    pub ready: AtomicBool,
    pub workers: Vec<Arc<WorkerShared>>,
    /// The QUIC relay's per-tenant traffic, when it runs.
    pub quic: Option<Arc<QuicStats>>,
    /// The TLS certificate (its expiry is a metric).
    pub certs: Option<Arc<CertResolver>>,
    pub request_times: RequestTimes,
    /// The XDP fast path, when `--xdp` attached it.
    pub fast: Option<Arc<Mutex<FastPath>>>,
}

/// A read-only view for the operations HTTP (cheap to clone).
#[derive(Debug, Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

/// A worker thread stuck for this long is reported unhealthy.
const STUCK_AFTER: Duration = Duration::from_secs(10);

impl Monitor {
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.shared
            .workers
            .iter()
            .map(|w| w.stats.clone())
            .collect()
    }

    pub fn status(&self) -> Status {
        Status {
            draining: self.shared.draining.load(Ordering::Relaxed),
            ready: self.is_ready(),
            workers_alive: self.workers_alive(),
            certificate_not_after: self.shared.certs.as_ref().and_then(|c| c.not_after()),
        }
    }

    /// Listening and not draining.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
            && !self.shared.draining.load(Ordering::Relaxed)
            && self.is_healthy()
    }

    /// Every worker thread runs and has turned its loop recently.
    pub fn is_healthy(&self) -> bool {
        let now = unix_now();
        self.shared.workers.iter().all(|w| {
            w.alive.load(Ordering::Relaxed)
                && now.saturating_sub(w.tick_unix.load(Ordering::Relaxed)) < STUCK_AFTER.as_secs()
        })
    }

    pub fn workers_alive(&self) -> usize {
        self.shared
            .workers
            .iter()
            .filter(|w| w.alive.load(Ordering::Relaxed))
            .count()
    }

    /// TURN allocations over all workers, and the QUIC relay's open tunnels.
    pub fn allocation_count(&self) -> usize {
        let tunnels = (self.shared.quic.as_ref()).map_or(0, |q| q.tunnels_active() as usize);
        (self.shared.workers.iter())
            .map(|w| w.allocations.load(Ordering::Relaxed))
            .sum::<usize>()
            + tunnels
    }

    /// The QUIC relay's traffic per tenant and transport (HTTP/3, or the HTTP/2
    /// fallback; see [`QuicStats::by_transport`]); empty without it.
    pub fn quic_traffic(&self) -> Vec<(String, &'static str, [u64; 6])> {
        let traffic = (self.shared.quic.as_ref()).map_or_else(Vec::new, |q| q.by_transport());
        (traffic.into_iter())
            .map(|(tenant, transport, v)| (tenant, transport.label(), v))
            .collect()
    }

    /// Each tenant's use since the relay started (usage metering's running totals): the
    /// time TURN allocations were alive, QUIC tunnels open, and the bytes relayed each way
    /// over every transport.
    pub fn usage(&self) -> BTreeMap<String, Usage> {
        let now = Instant::now();
        let mut out: BTreeMap<String, Usage> = BTreeMap::new();
        for w in &self.shared.workers {
            for t in w.stats.core.tenants() {
                let u = out.entry(t.tenant.clone()).or_default();
                for traffic in &t.by_transport {
                    u.allocation_ms += traffic.lifetimes.total_ms(now);
                    u.bytes_to_peer += traffic.to_peer.bytes.get();
                    u.bytes_to_client += traffic.to_client.bytes.get();
                }
            }
        }
        if let Some(q) = &self.shared.quic {
            for (tenant, [tunnel_ms, to_peer, to_client]) in q.usage(now) {
                let u = out.entry(tenant).or_default();
                u.tunnel_ms += tunnel_ms;
                u.bytes_to_peer += to_peer;
                u.bytes_to_client += to_client;
            }
        }
        out
    }

    /// The XDP program's outcomes, when the fast path is attached.
    pub fn xdp_outcomes(&self) -> Option<crate::xdp::Outcomes> {
        let fast = self.shared.fast.as_ref()?;
        Some(fast.lock().unwrap_or_else(|e| e.into_inner()).outcomes())
    }

    /// The registry of the request-duration histograms (a child of the relay's).
    pub fn request_times(&self) -> nexrtc_metrics::Registry {
        self.shared.request_times.registry().clone()
    }

    pub fn render_metrics(&self) -> String {
        metrics::render(&self.stats(), &self.quic_traffic(), self.status())
    }
}

struct WorkerHandle {
    tx: mpsc::Sender<Control>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

/// The running relay: its workers, their listeners and the certificate resolver.
/// Dropping it shuts the workers down and joins them.
pub struct Relay {
    workers: Vec<WorkerHandle>,
    shared: Arc<Shared>,
    bound: Vec<Bound>,
    certs: Option<Arc<CertResolver>>,
    /// The QUIC relay (`--quic-listen`): same certificate, credentials, revocations, peer
    /// filter and drain as the TURN workers.
    quic: Option<QuicRelay>,
}

impl Relay {
    /// Binds every listener (errors here are the operator's: port in use,
    /// address not on this host) and starts the workers.
    pub fn start(config: &RelayConfig) -> Result<Relay, StartError> {
        for r in config.relay_addresses() {
            check_relay_ip(r.bind)?;
        }
        let certs = config.tls.clone().map(CertResolver::new).transpose()?;
        let tls_config = certs.as_ref().map(|c| c.server_config()).transpose()?;
        let workers = config.relay_threads.max(1);
        let sets = bind_listeners(&config.listeners, workers)?;
        let bound = sets
            .first()
            .map(|set| set.iter().map(Listener::bound).collect())
            .unwrap_or_default();
        let credentials = Arc::new(config.credentials.load()?);
        crate::host::warn_if_ephemeral(&config.ports);
        // Host-wide: ports (EVEN-PORT, RESERVATION-TOKEN) and quota counts.
        let addrs: Vec<RelayAddress> = config.relay_addresses().collect();
        let pools = PortPools::new(&addrs, config.ports.clone(), &config.core.peer_filter);
        let ledger = Arc::new(AllocationLedger::new());
        // The QUIC relay (and its HTTP/2 fallback, whose connections the workers' TLS
        // listeners hand over) starts before the workers are built.
        let quic_stats = config.quic_listen.map(|_| Arc::new(QuicStats::default()));
        let quic = match (config.quic_listen, &tls_config) {
            (Some(listen), Some(tls)) => {
                let mut q = QuicConfig::new(listen, tls.clone(), &config.core.realm);
                q.peer_filter = config.core.peer_filter.clone();
                q.ledger = ledger.clone();
                q.quotas = config.core.quotas;
                q.stats = quic_stats.clone().unwrap_or_default();
                q.ports = Some(Arc::new(pools.clone()));
                Some(QuicRelay::start(q, Access::new(credentials.clone()))?)
            }
            _ => None,
        };
        // The XDP fast path: attached before the workers, who install its flows.
        let fast = match (config.xdp.is_empty(), crate::xdp::built()) {
            (true, _) => None,
            (false, false) => {
                tracing::warn!(
                    "--xdp asked for, but this relay was built without the XDP program (no \
                     clang at build time): relaying in userspace only"
                );
                None
            }
            (false, true) => Some(Arc::new(Mutex::new(FastPath::attach(&config.xdp)?))),
        };
        let host = HostWide {
            pools,
            ledger,
            conns_per_ip: ConnsPerIp::default(),
            h2: quic.as_ref().map(QuicRelay::h2_sink),
            request_times: RequestTimes::default(),
            fast: fast.clone(),
        };

        let mut built = Vec::with_capacity(workers);
        for (index, listeners) in sets.into_iter().enumerate() {
            let w = Worker::new(
                index,
                config,
                credentials.clone(),
                listeners,
                tls_config.clone(),
                &host,
            )
            .map_err(StartError::Worker)?;
            built.push(w);
        }
        let shared = Arc::new(Shared {
            draining: AtomicBool::new(false),
            drain_deadline: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            workers: built.iter().map(|(_, s)| s.clone()).collect(),
            quic: quic_stats,
            certs: certs.clone(),
            request_times: host.request_times.clone(),
            fast,
        });
        let mut relay = Relay {
            workers: Vec::with_capacity(workers),
            shared,
            bound,
            certs,
            quic,
        };
        for (worker, _) in built {
            // On failure, dropping `relay` stops the workers already started.
            let (tx, waker, thread) = worker.spawn().map_err(StartError::Worker)?;
            relay.workers.push(WorkerHandle {
                tx,
                waker,
                thread: Some(thread),
            });
        }
        relay.shared.ready.store(true, Ordering::Relaxed);
        Ok(relay)
    }

    /// The sockets listened on (with the ports the OS chose for port 0).
    pub fn bound(&self) -> &[Bound] {
        &self.bound
    }

    /// The QUIC relay's UDP address and metrics, when it runs.
    pub fn quic(&self) -> Option<(std::net::SocketAddr, nexrtc_metrics::Registry)> {
        self.quic.as_ref().map(|q| (q.local_addr(), q.registry()))
    }

    pub fn monitor(&self) -> Monitor {
        Monitor {
            shared: self.shared.clone(),
        }
    }

    /// Replaces every tenant's secrets on every worker (no connection is dropped).
    pub fn set_credentials(&self, credentials: Arc<Credentials>) {
        if let Some(q) = &self.quic {
            q.access().set_credentials(credentials.clone());
        }
        self.broadcast(Control::SetCredentials(credentials));
    }

    /// Refuses `username` (the whole TURN REST username) until `until_unix`.
    pub fn revoke(&self, username: &str, until_unix: u64) {
        if let Some(q) = &self.quic {
            q.access().revoke(username, until_unix, unix_now());
        }
        self.broadcast(Control::Revoke {
            username: username.to_owned(),
            until_unix,
        });
    }

    /// Stops taking new allocations; existing ones run until they end. New
    /// Allocates are sent to `--alternate-server` (300) if one is configured.
    pub fn drain(&self) {
        self.drain_to(None, None);
    }

    /// [`Relay::drain`], sending new Allocates to `alternate` (a healthy relay
    /// the controller named) rather than the configured alternate, and ending
    /// by `deadline_unix` at the latest (when sooner than `--drain-grace`).
    pub fn drain_to(&self, alternate: Option<std::net::SocketAddr>, deadline_unix: Option<u64>) {
        if let Some(d) = deadline_unix {
            self.shared.drain_deadline.store(d, Ordering::Relaxed);
        }
        self.shared.draining.store(true, Ordering::Relaxed);
        if let Some(q) = &self.quic {
            q.drain();
        }
        self.broadcast(Control::Drain { alternate });
    }

    /// The deadline of a drain ordered from outside, if it gave one.
    pub fn drain_deadline(&self) -> Option<u64> {
        match self.shared.drain_deadline.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Live allocations over all workers.
    pub fn allocation_count(&self) -> usize {
        self.monitor().allocation_count()
    }

    /// Re-reads the certificate files; new handshakes use the new certificate,
    /// established connections keep theirs. `Ok(false)`: nothing to reload (no
    /// TLS, or a self-signed certificate). On error the old certificate stays.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        match &self.certs {
            Some(c) => c.reload(),
            None => Ok(false),
        }
    }

    /// Stops every worker and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.ready.store(false, Ordering::Relaxed);
        self.broadcast(Control::Shutdown);
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    tracing::error!("a relay worker panicked");
                }
            }
        }
        // Nothing may be relayed once the relay is gone: the program leaves the
        // interfaces now, whoever still holds the monitor.
        if let Some(fast) = &self.shared.fast {
            fast.lock().unwrap_or_else(|e| e.into_inner()).detach();
        }
    }

    fn broadcast(&self, control: Control) {
        for w in &self.workers {
            // A worker that is gone has nothing left to apply this to.
            if w.tx.send(control.clone()).is_ok() {
                let _ = w.waker.wake();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds (and drops) a UDP socket on `ip`: a relay IP that is not on this
/// host would otherwise start "healthy" and refuse every Allocate. No packet
/// is sent.
fn check_relay_ip(ip: IpAddr) -> Result<(), StartError> {
    match UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => Ok(()),
        Err(source) if source.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Err(StartError::RelayIpNotLocal { ip, source })
        }
        Err(source) => Err(StartError::RelayIp { ip, source }),
    }
}
