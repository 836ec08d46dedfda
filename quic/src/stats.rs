//! Per-tenant traffic of the QUIC relay, kept as atomics the relay's metrics read at
//! scrape time: the relay's own families (`nexrtc_relay_packets_total`,
//! `nexrtc_relay_bytes_total`, `nexrtc_relay_allocations_{total,active}`) show them with
//! `transport="quic"`, a tunnel counting as an allocation, and the relay's allocation count
//! (its load, and what a drain waits for) includes open tunnels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One tenant's counts.
#[derive(Debug, Default)]
pub struct TenantTraffic {
    pub to_peer_packets: AtomicU64,
    pub to_peer_bytes: AtomicU64,
    pub to_client_packets: AtomicU64,
    pub to_client_bytes: AtomicU64,
    pub tunnels_total: AtomicU64,
    pub tunnels_active: AtomicU64,
    /// The tunnels' time open, for usage metering.
    pub lifetimes: turn_core::stats::Lifetimes,
}

impl TenantTraffic {
    pub(crate) fn to_peer(&self, bytes: usize) {
        self.to_peer_packets.fetch_add(1, Ordering::Relaxed);
        self.to_peer_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn to_client(&self, bytes: usize) {
        self.to_client_packets.fetch_add(1, Ordering::Relaxed);
        self.to_client_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Which transport a tunnel came over (the `transport` label of the relay's families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// HTTP/3 over QUIC.
    Quic,
    /// The HTTP/2 fallback on the relay's TLS port.
    H2,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::H2 => "h2",
        }
    }
}

/// Every tenant's counts per transport (tenants come from the credentials: few, bounded
/// by them).
#[derive(Debug, Default)]
pub struct Stats {
    tenants: Mutex<HashMap<(String, Transport), Arc<TenantTraffic>>>,
}

impl Stats {
    pub(crate) fn tenant(&self, tenant: &str, transport: Transport) -> Arc<TenantTraffic> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(tenants.entry((tenant.to_owned(), transport)).or_default())
    }

    /// Per tenant and transport, sorted: `[to_peer packets, to_peer bytes, to_client
    /// packets, to_client bytes, tunnels total, tunnels active]` (the order of the relay's
    /// own sums).
    pub fn by_transport(&self) -> Vec<(String, Transport, [u64; 6])> {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, Transport, [u64; 6])> = (tenants.iter())
            .map(|((name, transport), t)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let v = [
                    get(&t.to_peer_packets),
                    get(&t.to_peer_bytes),
                    get(&t.to_client_packets),
                    get(&t.to_client_bytes),
                    get(&t.tunnels_total),
                    get(&t.tunnels_active),
                ];
                (name.clone(), *transport, v)
            })
            .collect();
        out.sort();
        out
    }

    /// Per tenant (unsorted, a tenant once per transport): milliseconds of tunnels open up
    /// to `now`, bytes to peers, bytes to clients (usage metering's running totals).
    pub fn usage(&self, now: std::time::Instant) -> Vec<(String, [u64; 3])> {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        (tenants.iter())
            .map(|((name, _), t)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let v = [
                    t.lifetimes.total_ms(now),
                    get(&t.to_peer_bytes),
                    get(&t.to_client_bytes),
                ];
                (name.clone(), v)
            })
            .collect()
    }

    /// [`Stats::by_transport`] summed over the transports, per tenant.
    pub fn snapshot(&self) -> Vec<(String, [u64; 6])> {
        let mut out: Vec<(String, [u64; 6])> = Vec::new();
        for (tenant, _, v) in self.by_transport() {
            match out.last_mut() {
                Some((t, sum)) if *t == tenant => {
                    for (s, x) in sum.iter_mut().zip(v) {
                        *s += x;
                    }
                }
                _ => out.push((tenant, v)),
            }
        }
        out
    }

    /// Tunnels open now, over every tenant.
    pub fn tunnels_active(&self) -> u64 {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        (tenants.values())
            .map(|t| t.tunnels_active.load(Ordering::Relaxed))
            .sum()
    }
}
