//! Multiplexed relaying: many allocations share one relay socket (one relayed
//! transport address), and a datagram from a peer is routed to its allocation
//! by the peer's address.
//!
//! # The rule
//!
//! RFC 8656 §9 makes permissions per peer IP, and on an own socket per
//! allocation that is enough to route. On a shared socket two allocations may
//! permit the same IP, so the server also learns peer *transport* addresses:
//!
//! 1. A peer address a client has addressed through the shared socket (a
//!    ChannelBind, or a Send indication) is *claimed* by that allocation for
//!    its lifetime. Datagrams from a claimed address go to the claimant.
//! 2. Otherwise a datagram goes to the one allocation on that socket that
//!    permits the peer's IP, if exactly one does.
//! 3. Otherwise it is dropped and counted (`ambiguous_peer`): several
//!    allocations permit that IP and none has addressed this port yet (ICE
//!    retransmits its checks, so the client's own check to the peer settles it).
//!
//! A peer address can be claimed by only one allocation per shared socket:
//! the peer could not tell two of them apart either, since it sees the same
//! relayed address. A second allocation's ChannelBind to a claimed address
//! gets 403 Forbidden and its Send indications to it are dropped
//! (`peer_taken`). With S shared sockets per worker and relay IP, at most
//! S × IPs × workers allocations of one host can reach one given peer
//! transport address (e.g. one SFU port) — more sockets or relay IPs raise it.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::net::RelayHandle;

/// Claimed peer addresses an allocation keeps at most (more are still sent
/// to, but answers are routed by IP only).
pub(crate) const MAX_CLAIMS: usize = 32;

/// No known allocation in `Mux::ips` (the one stored has gone).
const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Mux {
    /// Peer transport addresses claimed per shared socket (rule 1).
    claims: FxHashMap<(RelayHandle, SocketAddr), u32>,
    /// Per shared socket and peer IP: an allocation permitting it, and how
    /// many do (rule 2 routes only when that is 1).
    ips: FxHashMap<(RelayHandle, IpAddr), (u32, u32)>,
}

/// Where a peer datagram on a shared socket goes.
pub(crate) enum Route {
    To(u32),
    Nobody,
    Ambiguous,
}

impl Mux {
    #[inline]
    pub(crate) fn route(&self, relay: RelayHandle, peer: SocketAddr) -> Route {
        if let Some(&slot) = self.claims.get(&(relay, peer)) {
            return Route::To(slot);
        }
        match self.ips.get(&(relay, peer.ip())) {
            Some(&(slot, 1)) if slot != UNKNOWN => Route::To(slot),
            Some(_) => Route::Ambiguous,
            None => Route::Nobody,
        }
    }

    /// Who has claimed `peer` on `relay`, if anyone.
    pub(crate) fn claimant(&self, relay: RelayHandle, peer: SocketAddr) -> Option<u32> {
        self.claims.get(&(relay, peer)).copied()
    }

    pub(crate) fn claim(&mut self, relay: RelayHandle, peer: SocketAddr, slot: u32) {
        self.claims.entry((relay, peer)).or_insert(slot);
    }

    pub(crate) fn unclaim(&mut self, relay: RelayHandle, peer: SocketAddr, slot: u32) {
        if self.claims.get(&(relay, peer)) == Some(&slot) {
            self.claims.remove(&(relay, peer));
        }
    }

    /// Allocation `slot` now permits `ip` (a new permission).
    pub(crate) fn permit(&mut self, relay: RelayHandle, ip: IpAddr, slot: u32) {
        let e = self.ips.entry((relay, ip)).or_insert((slot, 0));
        e.1 += 1;
    }

    /// Allocation `slot` no longer permits `ip`. When one permitting
    /// allocation is left, `remaining` finds it (rare: only after a conflict).
    pub(crate) fn unpermit(
        &mut self,
        relay: RelayHandle,
        ip: IpAddr,
        slot: u32,
        remaining: impl FnOnce() -> Option<u32>,
    ) {
        let key = (relay, ip);
        let Some(e) = self.ips.get_mut(&key) else {
            return;
        };
        e.1 = e.1.saturating_sub(1);
        if e.0 == slot {
            e.0 = UNKNOWN;
        }
        if e.1 == 0 {
            self.ips.remove(&key);
        } else if e.1 == 1 && e.0 == UNKNOWN {
            match remaining() {
                Some(other) => e.0 = other,
                None => {
                    self.ips.remove(&key);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> (usize, usize) {
        (self.claims.len(), self.ips.len())
    }
}
