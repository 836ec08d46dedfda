//! A worker's side of the XDP fast path: the core's offers ([`Command::FlowUp`],
//! [`Command::FlowDown`], see `turn_core`'s `fast`) become flows in the kernel's tables,
//! and what the kernel relayed comes back into the tenant's counts (every sweep, and
//! when a flow is removed), so metrics, usage and quotas stay whole.
//!
//! Only what the program handles is installed: a client on a listener bound to a
//! specific address, a relay socket bound to one, and one address family throughout (a
//! client relayed to a peer of the other family, RFC 6156, stays in userspace, as does
//! a flow the table refuses when full).
//!
//! [`Command::FlowUp`]: turn_core::Command::FlowUp
//! [`Command::FlowDown`]: turn_core::Command::FlowDown

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use turn_core::{ClientSocket, FastFlow, Server};

use crate::relay_sockets::RelaySockets;
use crate::xdp::{FastPath, Flow, FlowCounts};

/// A flow this worker installed.
#[derive(Debug)]
pub(super) struct Installed {
    flow: Flow,
    tenant: String,
    /// The counts already handed to the core.
    seen: FlowCounts,
    /// When it was first installed (a snapshot of the counts older than that may hold a
    /// removed flow's counts under the same key).
    since: Instant,
}

/// This worker's flows in the kernel, by client and channel.
pub(super) type Flows = HashMap<(ClientSocket, u16), Installed>;

/// A specific address (the program rewrites packets to it), as IPv4 when it is an
/// IPv4-mapped one (a dual-stack socket's view of an IPv4 client).
fn specific(addr: SocketAddr) -> Option<SocketAddr> {
    let ip = addr.ip().to_canonical();
    (!ip.is_unspecified()).then_some(SocketAddr::new(ip, addr.port()))
}

/// Installs (or gives a new end to) the offered flow, if the program can relay it.
pub(super) fn up(fast: &mut FastPath, flows: &mut Flows, relays: &RelaySockets, offer: FastFlow) {
    let relay = relays
        .socket(offer.relay)
        .and_then(|s| s.local_addr().ok())
        .and_then(specific);
    let (Some(client), Some(listen), Some(relay), Some(peer)) = (
        specific(offer.client.remote),
        specific(offer.client.local),
        relay,
        specific(offer.peer),
    ) else {
        return;
    };
    if client.is_ipv4() != peer.is_ipv4() {
        return; // RFC 6156 translation between families: userspace's
    }
    let flow = Flow {
        client,
        listen,
        relay,
        peer,
        channel: offer.channel,
        expires: offer.expires,
    };
    match fast.install(&flow) {
        Ok(()) => {
            let key = (offer.client, offer.channel);
            let (seen, since) = flows.remove(&key).map_or_else(
                || (FlowCounts::default(), Instant::now()),
                |i| (i.seen, i.since),
            );
            let tenant = offer.tenant;
            flows.insert(
                key,
                Installed {
                    flow,
                    tenant,
                    seen,
                    since,
                },
            );
        }
        Err(e) => tracing::debug!("XDP flow not installed (relayed in userspace): {e}"),
    }
}

/// Removes the flow, handing its last counts to the core.
pub(super) fn down(
    fast: &mut FastPath,
    flows: &mut Flows,
    server: &Server,
    client: ClientSocket,
    channel: u16,
) {
    if let Some(installed) = flows.remove(&(client, channel)) {
        let last = fast.remove(&installed.flow);
        hand_over(server, &installed.tenant, installed.seen, last);
    }
}

/// Hands what every flow relayed since the last time to the core: from a snapshot of the
/// whole table (shared by the workers' sweeps, read without the fast path's lock), or
/// flow by flow where the kernel has no batched reads; summed per tenant first.
pub(super) fn collect(fast: &Mutex<FastPath>, flows: &mut Flows, server: &Server) {
    let lock = || fast.lock().unwrap_or_else(|e| e.into_inner());
    let reader = lock().counts_reader();
    let snapshot = reader.snapshot();
    let mut by_tenant: HashMap<String, (FlowCounts, FlowCounts)> = HashMap::new();
    let mut each = |installed: &mut Installed, now: FlowCounts| {
        // Counts only grow; a snapshot older than the last reading must not lower them.
        let now = FlowCounts {
            to_peer_packets: now.to_peer_packets.max(installed.seen.to_peer_packets),
            to_peer_bytes: now.to_peer_bytes.max(installed.seen.to_peer_bytes),
            to_client_packets: now.to_client_packets.max(installed.seen.to_client_packets),
            to_client_bytes: now.to_client_bytes.max(installed.seen.to_client_bytes),
        };
        let sum = match by_tenant.get_mut(installed.tenant.as_str()) {
            Some(sum) => sum,
            None => by_tenant.entry(installed.tenant.clone()).or_default(),
        };
        sum.0 = sum.0.plus(installed.seen);
        sum.1 = sum.1.plus(now);
        installed.seen = now;
    };
    match &snapshot {
        Some(s) => {
            for installed in flows.values_mut() {
                // A reading begun before this flow was installed may hold a removed
                // flow's counts under the same keys: the next sweep reads it.
                if s.taken < installed.since {
                    continue;
                }
                if let Some(now) = s.counts(&installed.flow) {
                    each(installed, now);
                }
            }
        }
        None => {
            let fast = lock();
            for installed in flows.values_mut() {
                let now = fast.counts(&installed.flow);
                each(installed, now);
            }
        }
    }
    for (tenant, (seen, now)) in &by_tenant {
        hand_over(server, tenant, *seen, *now);
    }
}

fn hand_over(server: &Server, tenant: &str, seen: FlowCounts, now: FlowCounts) {
    let to_peer = (
        now.to_peer_packets.saturating_sub(seen.to_peer_packets),
        now.to_peer_bytes.saturating_sub(seen.to_peer_bytes),
    );
    let to_client = (
        now.to_client_packets.saturating_sub(seen.to_client_packets),
        now.to_client_bytes.saturating_sub(seen.to_client_bytes),
    );
    if to_peer != (0, 0) || to_client != (0, 0) {
        server.fast_traffic(tenant, to_peer, to_client);
    }
}
