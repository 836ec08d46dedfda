//! One allocation: its relayed address, permissions and channels (RFC 8656 §2.2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::net::{ClientSocket, RelayHandle};
use crate::ratelimit::TokenBucket;
use crate::stats::{Stats, TenantStats, Traffic};

pub(crate) use super::table::{Channel, Channels, Permissions};

#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) client: ClientSocket,
    pub(crate) relay: RelayHandle,
    pub(crate) relay_addr: SocketAddr,
    pub(crate) expires: Instant,
    /// When it was created (usage metering counts its time alive).
    pub(crate) started: Instant,
    /// The full REST username that created it; later requests must use the same
    /// (RFC 8656 §5: otherwise 441 Wrong Credentials).
    pub(crate) username: String,
    pub(crate) tenant: String,
    pub(crate) user: String,
    /// Permissions by peer IP (RFC 8656 §9) and channels by number and by
    /// peer address: constant-time lookups however many (see `table`).
    pub(crate) permissions: Permissions,
    pub(crate) channels: Channels,
    pub(crate) stats: Arc<TenantStats>,
    /// Bandwidth caps, one per direction, when the operator set one.
    pub(crate) to_peer_budget: Option<TokenBucket>,
    pub(crate) to_client_budget: Option<TokenBucket>,
    /// The relay socket is shared with other allocations (`--multiplex-peer`).
    pub(crate) shared: bool,
    /// Shared socket only: peer addresses this allocation claimed (see `mux`).
    pub(crate) claims: Vec<SocketAddr>,
}

impl Allocation {
    #[inline]
    pub(crate) fn traffic(&self) -> &Traffic {
        self.stats.transport(self.client.transport)
    }

    #[inline]
    pub(crate) fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.is_live(ip, now)
    }

    #[inline]
    pub(crate) fn channel(&self, number: u16, now: Instant) -> Option<&Channel> {
        self.channels.by_number(number, now)
    }

    #[inline]
    pub(crate) fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels.by_peer(peer, now).map(|c| c.number)
    }

    /// Installs or refreshes the permission for `ip`. Returns whether it is new.
    pub(crate) fn permit(&mut self, ip: IpAddr, expires: Instant, stats: &Stats) -> bool {
        let new = self.permissions.permit(ip, expires);
        if new {
            stats.permissions_active.inc();
        }
        new
    }

    /// Whether a new permission for `ip` would exceed `quota` (0 = unlimited).
    pub(crate) fn permission_quota_exceeded(&self, ips: &[IpAddr], quota: u32) -> bool {
        if quota == 0 {
            return false;
        }
        let new = ips
            .iter()
            .enumerate()
            .filter(|(i, ip)| !self.permissions.contains(**ip) && !ips[..*i].contains(ip))
            .count();
        self.permissions.len() + new > quota as usize
    }

    /// Checks the channel-bind rules of RFC 8656 §12.2: the number may not be
    /// bound to another peer, nor the peer to another number.
    pub(crate) fn channel_conflict(&self, number: u16, peer: SocketAddr, now: Instant) -> bool {
        self.channel(number, now).is_some_and(|c| c.peer != peer)
            || self.channel_of(peer, now).is_some_and(|n| n != number)
    }

    pub(crate) fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        own: bool,
        expires: Instant,
        stats: &Stats,
    ) {
        let channel = Channel {
            number,
            peer,
            expires,
            own,
        };
        if self.channels.bind(channel) {
            stats.channels_active.inc();
        }
    }

    /// Drops expired permissions and channels (RFC 8656 §9, §12: they are not
    /// refreshed by traffic, only by requests).
    /// The IPs of expired permissions are added to `gone` on shared sockets.
    pub(crate) fn expire(&mut self, now: Instant, stats: &Stats, gone: &mut Vec<IpAddr>) {
        let before = self.permissions.len();
        let shared = self.shared;
        self.permissions.retain(|ip, expires| {
            let keep = expires > now;
            if !keep && shared {
                gone.push(ip);
            }
            keep
        });
        stats
            .permissions_active
            .sub((before - self.permissions.len()) as u64);
        let before = self.channels.len();
        self.channels.retain(|c| c.expires > now);
        stats
            .channels_active
            .sub((before - self.channels.len()) as u64);
    }

    /// Releases the gauges this allocation holds; it ended at `at`.
    pub(crate) fn release(&self, stats: &Stats, at: Instant) {
        stats.permissions_active.sub(self.permissions.len() as u64);
        stats.channels_active.sub(self.channels.len() as u64);
        let traffic = self.traffic();
        traffic.allocations_active.sub(1);
        traffic.lifetimes.end(self.started, at);
    }
}
