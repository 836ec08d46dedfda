//! An allocation's permissions (by peer IP) and channels (by number and by
//! peer address), looked up on every packet.
//!
//! Almost every allocation has a handful of each, and scanning a few entries
//! of a vector is cheaper than hashing; but a client may bind all 4,096
//! channel numbers (RFC 8656 §12) and hundreds of permissions, and a linear
//! scan then makes every packet pay for all of them. So each table scans a
//! vector while it holds at most [`FEW`] entries and becomes hash maps (keyed
//! both ways for channels) when it grows past that: a lookup is constant-time
//! either way, and the common case costs what it did.

use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rustc_hash::FxHashMap;

/// Entries scanned linearly; one more and the table is hashed.
pub(crate) const FEW: usize = 8;

/// Permissions of one allocation: peer IP → expiry (RFC 8656 §9).
#[derive(Debug)]
pub(crate) enum Permissions {
    Few(Vec<(IpAddr, Instant)>),
    /// Boxed: the common allocation pays one word for the rare big table.
    Many(Box<FxHashMap<IpAddr, Instant>>),
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::Few(Vec::new())
    }
}

impl Permissions {
    /// Whether `ip` has a permission live at `now`.
    #[inline]
    pub(crate) fn is_live(&self, ip: IpAddr, now: Instant) -> bool {
        match self {
            Permissions::Few(v) => v.iter().any(|(p, e)| *p == ip && *e > now),
            Permissions::Many(m) => many_is_live(m, ip, now),
        }
    }

    #[inline]
    pub(crate) fn expiry(&self, ip: IpAddr) -> Option<Instant> {
        match self {
            Permissions::Few(v) => v.iter().find(|(p, _)| *p == ip).map(|(_, e)| *e),
            Permissions::Many(m) => m.get(&ip).copied(),
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.expiry(ip).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Permissions::Few(v) => v.len(),
            Permissions::Many(m) => m.len(),
        }
    }

    /// Installs `ip` or extends its expiry to `expires`; whether it is new.
    pub(crate) fn permit(&mut self, ip: IpAddr, expires: Instant) -> bool {
        match self {
            Permissions::Few(v) => {
                if let Some((_, e)) = v.iter_mut().find(|(p, _)| *p == ip) {
                    *e = (*e).max(expires);
                    return false;
                }
                if v.len() < FEW {
                    v.push((ip, expires));
                    return true;
                }
                let mut m: FxHashMap<IpAddr, Instant> = v.drain(..).collect();
                m.insert(ip, expires);
                *self = Permissions::Many(Box::new(m));
                true
            }
            Permissions::Many(m) => match m.entry(ip) {
                Entry::Occupied(mut e) => {
                    let e = e.get_mut();
                    *e = (*e).max(expires);
                    false
                }
                Entry::Vacant(e) => {
                    e.insert(expires);
                    true
                }
            },
        }
    }

    pub(crate) fn ips(&self) -> Vec<IpAddr> {
        match self {
            Permissions::Few(v) => v.iter().map(|(ip, _)| *ip).collect(),
            Permissions::Many(m) => m.keys().copied().collect(),
        }
    }

    /// Keeps the permissions for which `keep(ip, expiry)` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(IpAddr, Instant) -> bool) {
        match self {
            Permissions::Few(v) => v.retain(|(ip, e)| keep(*ip, *e)),
            Permissions::Many(m) => m.retain(|ip, e| keep(*ip, *e)),
        }
    }
}

/// A channel binding (RFC 8656 §12).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel {
    pub(crate) number: u16,
    pub(crate) peer: SocketAddr,
    pub(crate) expires: Instant,
    /// The peer is one of the relay's own addresses: every packet checks
    /// that the relay still holds its port (see `client_channel_data`).
    pub(crate) own: bool,
}

/// Channels of one allocation, by number (client → peer) and by peer
/// address (peer → client).
#[derive(Debug)]
pub(crate) enum Channels {
    Few(Vec<Channel>),
    /// Boxed: the common allocation pays one word for the rare big table.
    Many(Box<ManyChannels>),
}

#[derive(Debug, Default)]
pub(crate) struct ManyChannels {
    by_number: FxHashMap<u16, Channel>,
    /// The number currently bound to each peer address.
    by_peer: FxHashMap<SocketAddr, u16>,
}

impl Default for Channels {
    fn default() -> Self {
        Channels::Few(Vec::new())
    }
}

impl Channels {
    /// The binding of `number` live at `now`.
    #[inline]
    pub(crate) fn by_number(&self, number: u16, now: Instant) -> Option<&Channel> {
        match self {
            Channels::Few(v) => v.iter().find(|c| c.number == number && c.expires > now),
            Channels::Many(m) => m.by_number(number).filter(|c| c.expires > now),
        }
    }

    /// The binding to `peer` that is live at `now`.
    #[inline]
    pub(crate) fn by_peer(&self, peer: SocketAddr, now: Instant) -> Option<&Channel> {
        match self {
            Channels::Few(v) => v.iter().find(|c| c.peer == peer && c.expires > now),
            Channels::Many(m) => m.by_peer(peer, now),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Channels::Few(v) => v.len(),
            Channels::Many(m) => m.by_number.len(),
        }
    }

    /// Whether `number` is bound, live or not yet swept.
    pub(crate) fn contains(&self, number: u16) -> bool {
        match self {
            Channels::Few(v) => v.iter().any(|c| c.number == number),
            Channels::Many(m) => m.by_number.contains_key(&number),
        }
    }

    /// Binds `channel.number` to `channel.peer`, replacing what the number
    /// was bound to; whether the number is new.
    pub(crate) fn bind(&mut self, channel: Channel) -> bool {
        match self {
            Channels::Few(v) => {
                if let Some(c) = v.iter_mut().find(|c| c.number == channel.number) {
                    *c = channel;
                    return false;
                }
                if v.len() < FEW {
                    v.push(channel);
                    return true;
                }
                let mut many = Channels::Many(Box::default());
                for c in v.drain(..) {
                    many.bind(c);
                }
                many.bind(channel);
                *self = many;
                true
            }
            Channels::Many(m) => {
                let old = m.by_number.insert(channel.number, channel);
                if let Some(old) = old.filter(|old| old.peer != channel.peer) {
                    forget_peer(&mut m.by_peer, old.peer, old.number);
                }
                // The peer may still be named by an expired binding of
                // another number: the newest binding wins.
                m.by_peer.insert(channel.peer, channel.number);
                old.is_none()
            }
        }
    }

    /// Every binding, live or not yet swept.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = &Channel> + '_> {
        match self {
            Channels::Few(v) => Box::new(v.iter()),
            Channels::Many(m) => Box::new(m.by_number.values()),
        }
    }

    /// Keeps the channels for which `keep` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Channel) -> bool) {
        match self {
            Channels::Few(v) => v.retain(|c| keep(c)),
            Channels::Many(m) => {
                let ManyChannels { by_number, by_peer } = &mut **m;
                by_number.retain(|_, c| {
                    let k = keep(c);
                    if !k {
                        forget_peer(by_peer, c.peer, c.number);
                    }
                    k
                })
            }
        }
    }
}

// The big tables' lookups stay out of line, so the packet path of the common
// small ones is inlined and stays short (callgrind, `channeldata_icount`:
// with them inline, each direction cost 10 to 25 instructions more).
#[cold]
#[inline(never)]
fn many_is_live(m: &FxHashMap<IpAddr, Instant>, ip: IpAddr, now: Instant) -> bool {
    m.get(&ip).is_some_and(|e| *e > now)
}

impl ManyChannels {
    #[cold]
    #[inline(never)]
    fn by_number(&self, number: u16) -> Option<&Channel> {
        self.by_number.get(&number)
    }

    #[cold]
    #[inline(never)]
    fn by_peer(&self, peer: SocketAddr, now: Instant) -> Option<&Channel> {
        self.by_peer
            .get(&peer)
            .and_then(|n| self.by_number.get(n))
            .filter(|c| c.expires > now)
    }
}

/// Removes `peer`'s entry if it still names channel `number`.
fn forget_peer(by_peer: &mut FxHashMap<SocketAddr, u16>, peer: SocketAddr, number: u16) {
    if by_peer.get(&peer) == Some(&number) {
        by_peer.remove(&peer);
    }
}
