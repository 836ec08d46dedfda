//! Flows the shell may relay without the core: the XDP fast path's contract.
//!
//! With [`Config::fast_path`](crate::Config::fast_path) on, the core offers each channel it
//! would relay unchanged and without a per-packet decision ([`Command::FlowUp`]): a UDP
//! client, a relay socket of the allocation's own (not shared), a peer that is not one of
//! the relay's own addresses, no bandwidth cap. An offer carries the instant it ends — the
//! earliest of the channel's, its peer permission's and the allocation's expiry — and is
//! made again whenever a request moves one of them (ChannelBind, CreatePermission,
//! Refresh). The core withdraws it ([`Command::FlowDown`]) when the allocation ends
//! (deleted, expired, revoked, its connection closed) and, at the sweep, once its end has
//! passed; the shell must not relay a flow past its `expires` in the meantime (the kernel
//! program checks it per packet). What the shell relays itself it hands back with
//! [`Server::fast_traffic`], so the tenant's counts stay whole.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Command, Server};
use crate::net::{ClientSocket, RelayHandle, Transport};

/// A channel the shell may relay itself until `expires` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastFlow {
    pub client: ClientSocket,
    pub relay: RelayHandle,
    /// The allocation's relayed address.
    pub relay_addr: SocketAddr,
    pub peer: SocketAddr,
    pub channel: u16,
    pub tenant: String,
    pub expires: Instant,
}

impl Server {
    /// Offers every flow of allocation `slot` live at `now` (again: the shell updates it).
    pub(super) fn offer_flows(&mut self, slot: u32, now: Instant) {
        if !self.config.fast_path {
            return;
        }
        let Some(alloc) = self.allocations.get(slot as usize).and_then(Option::as_ref) else {
            return;
        };
        let eligible = alloc.client.transport == Transport::Udp
            && !alloc.shared
            && alloc.to_peer_budget.is_none();
        if !eligible {
            return;
        }
        // Offers that have ended (their channel, permission or allocation expired, the
        // sweep not come yet) are withdrawn first: the client may already bind the
        // number to another peer, or the peer to another number (RFC 8656 §12 asks the
        // client to wait, not the server), and the new flow must not meet the old one's
        // entries in the shell's tables.
        let client = alloc.client;
        let ended: Vec<u16> = (alloc.channels.iter())
            .map(|c| c.number)
            .filter(|n| self.offered.get(&(client, *n)).is_some_and(|e| *e <= now))
            .collect();
        self.withdraw_flows_of(client, &ended);
        let Some(alloc) = self.allocations.get(slot as usize).and_then(Option::as_ref) else {
            return;
        };
        for ch in alloc.channels.iter().filter(|c| !c.own) {
            let Some(permitted) = alloc.permissions.expiry(ch.peer.ip()) else {
                continue;
            };
            let expires = ch.expires.min(permitted).min(alloc.expires);
            if expires <= now {
                continue;
            }
            if self.offered.insert((alloc.client, ch.number), expires) == Some(expires) {
                continue; // offered already, with this end
            }
            self.commands.push_back(Command::FlowUp(FastFlow {
                client: alloc.client,
                relay: alloc.relay,
                relay_addr: alloc.relay_addr,
                peer: ch.peer,
                channel: ch.number,
                tenant: alloc.tenant.clone(),
                expires,
            }));
        }
    }

    /// Withdraws the offered flows of `client` (its allocation ended).
    pub(super) fn withdraw_flows_of(&mut self, client: ClientSocket, channels: &[u16]) {
        for &channel in channels {
            if self.offered.remove(&(client, channel)).is_some() {
                self.commands
                    .push_back(Command::FlowDown { client, channel });
            }
        }
    }

    /// Withdraws the offered flows whose end has passed at `now` (the sweep).
    pub(super) fn withdraw_ended_flows(&mut self, now: Instant) {
        let mut ended = Vec::new();
        self.offered.retain(|key, expires| {
            let keep = *expires > now;
            if !keep {
                ended.push(*key);
            }
            keep
        });
        for (client, channel) in ended {
            self.commands
                .push_back(Command::FlowDown { client, channel });
        }
    }

    /// Flows offered now (live or waiting for the sweep to withdraw them).
    pub fn offered_flows(&self) -> usize {
        self.offered.len()
    }

    /// Adds what the shell relayed itself for `tenant` over UDP to the tenant's counts:
    /// packets and payload bytes to peers and to clients.
    pub fn fast_traffic(&self, tenant: &str, to_peer: (u64, u64), to_client: (u64, u64)) {
        let stats = self.stats.tenant(tenant);
        let traffic = stats.transport(Transport::Udp);
        traffic.to_peer.packets.add(to_peer.0);
        traffic.to_peer.bytes.add(to_peer.1);
        traffic.to_client.packets.add(to_client.0);
        traffic.to_client.bytes.add(to_client.1);
    }
}
