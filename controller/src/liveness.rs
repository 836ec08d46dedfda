//! Missed-heartbeat detection: a relay that stops heartbeating leaves the ICE answers
//! `miss_after` (two heartbeat intervals) after its last heartbeat, not a whole lease TTL
//! later.
//!
//! The relay's lease (TTL 5 s) is what keeps its record in the store, and any replica may
//! renew it. Waiting for the lease alone keeps a dead relay in the answers for up to the
//! TTL (plus etcd's 500 ms expiry tick). So each replica also remembers when it last
//! renewed each relay lease (at registration and at every heartbeat). Every tick, for each
//! lease it renewed more than `miss_after` ago, it asks the store how long the lease has
//! left ([`Store::time_to_live`], an upper bound):
//!
//! * `ttl − left ≥ miss_after`: nobody, on any replica, renewed it within `miss_after`. The
//!   relay is dead or cut off, and the replica revokes the lease, which deletes the record
//!   exactly as an expiry would (one revision, a `Delete` event every replica follows).
//! * otherwise it looks renewed: another replica renews it (the agent moved), or etcd
//!   extended it (every lease, by an election timeout, at a leader change). The replica
//!   reads it again at least [`LOOK_AGAIN`] later: not run down → renewed elsewhere, that
//!   replica watches it now, forget it; run down → only extended, keep watching (it is
//!   revoked as above once nobody has renewed it for `miss_after`). Two TTLs after its own
//!   last renewal the replica lets go either way.
//! * the lease is gone: forgotten.
//!
//! A miss must be the relay's, not the control plane's. A replica whose own store failed
//! or stalled a renewal or a check (see [`Renewing`], [`STALL`]) within the last
//! `miss_after` removes nothing: the heartbeats it missed may have been lost to its store,
//! and the lease's TTL decides instead. Nor is a lease checked while a heartbeat for it is
//! being renewed here (the relay is talking to this replica). So an etcd majority outage,
//! a controller's broken store connection or a leader election never removes a live relay
//! for missed writes; a dead relay is then removed by its lease (TTL 5 s).
//!
//! A relay that was only slow (or paused) gets `lease_expired` on its next heartbeat and
//! registers again at once. If the replica that was renewing a lease dies too, the lease's
//! own TTL is the backstop. Cost: one `time_to_live` read per relay that stops, nothing for
//! relays that keep heartbeating.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics::Metrics;
use crate::store::{LeaseId, Store, StoreError};

/// When this replica last renewed each relay lease, and the lease's TTL.
#[derive(Debug, Default)]
pub struct Liveness {
    renewed: Mutex<HashMap<i64, Renewal>>,
    /// Overdue leases that looked renewed: the first such reading, to compare a later one
    /// with (see [`LOOK_AGAIN`]).
    looked: Mutex<HashMap<i64, Look>>,
    /// Heartbeats being renewed here: lease → when each arrived.
    renewing: Mutex<HashMap<i64, Instant>>,
    /// When this replica's store last failed or stalled a renewal or a check.
    trouble: Mutex<Option<Instant>>,
    /// The trouble last logged as holding removals back.
    hold_logged: Mutex<Option<Instant>>,
}

/// A store call slower than this is trouble (see the module docs): a healthy etcd renews a
/// lease in one round trip to its leader, so a second is well past any region-to-region
/// round trip (the lab's longest planned RTT is under 300 ms, `lab/planet.toml`).
pub const STALL: Duration = Duration::from_secs(1);

/// A heartbeat's renewal under way at this replica ([`Liveness::renewing`]). Dropped without
/// [`Renewing::answered`] (the store failed, or the request was abandoned) or answered
/// after [`STALL`], it marks store trouble.
#[derive(Debug)]
#[must_use = "the renewal ends when this is dropped"]
pub struct Renewing<'a> {
    liveness: &'a Liveness,
    lease: i64,
    arrived: Instant,
    answered: bool,
}

impl Renewing<'_> {
    /// The store answered (renewed, or the lease is gone).
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Renewing<'_> {
    fn drop(&mut self) {
        let mut renewing = self.liveness.renewing_map();
        if renewing.get(&self.lease) == Some(&self.arrived) {
            renewing.remove(&self.lease);
        }
        drop(renewing);
        if !self.answered || self.arrived.elapsed() >= STALL {
            self.liveness.trouble();
        }
    }
}

/// An overdue lease's time-to-live that looked renewed, and when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    seen: Renewal,
    at: Instant,
    left: Duration,
}

/// How long apart two readings of a lease that looked renewed are compared. etcd reports
/// whole seconds, so readings a second or more apart tell a lease renewed meanwhile (its
/// time-to-live did not go down) from one that was only extended once — by an election
/// timeout at an etcd leader change — and runs down.
pub const LOOK_AGAIN: Duration = Duration::from_millis(1250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Renewal {
    at: Instant,
    ttl: Duration,
}

impl Liveness {
    /// This replica granted or renewed `lease` (TTL `ttl`) just now.
    pub fn renewed(&self, lease: LeaseId, ttl: Duration) {
        let at = Instant::now();
        self.map().insert(lease.0, Renewal { at, ttl });
    }

    /// A heartbeat for `lease` arrived: the lease is not checked until the returned guard
    /// is dropped, and a renewal that fails or stalls marks store trouble.
    pub fn renewing(&self, lease: LeaseId) -> Renewing<'_> {
        let arrived = Instant::now();
        self.renewing_map().insert(lease.0, arrived);
        Renewing {
            liveness: self,
            lease: lease.0,
            arrived,
            answered: false,
        }
    }

    /// This replica's store failed or stalled: no removals for the next `miss_after`.
    pub fn trouble(&self) {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// `true` once per episode of trouble (for one log line).
    fn first_hold(&self) -> bool {
        let trouble = *self.trouble.lock().unwrap_or_else(PoisonError::into_inner);
        let mut logged = self
            .hold_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first = *logged != trouble;
        *logged = trouble;
        first
    }

    fn troubled_within(&self, window: Duration) -> bool {
        let last = *self.trouble.lock().unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|at| at.elapsed() < window)
    }

    fn renewing_map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        self.renewing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_renewing(&self, lease: LeaseId) -> bool {
        self.renewing_map().contains_key(&lease.0)
    }

    /// `lease` is no longer this replica's to watch.
    pub fn forget(&self, lease: LeaseId) {
        self.map().remove(&lease.0);
        self.looks().remove(&lease.0);
    }

    /// Leases this replica watches.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Renewal>> {
        self.renewed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn overdue(&self, miss_after: Duration) -> Vec<(LeaseId, Renewal)> {
        let now = Instant::now();
        (self.map().iter())
            .filter(|(_, r)| now.saturating_duration_since(r.at) >= miss_after)
            .map(|(id, r)| (LeaseId(*id), *r))
            .collect()
    }

    /// Forgets `lease` unless it was renewed again since `seen`.
    fn forget_if(&self, lease: LeaseId, seen: Renewal) {
        let mut map = self.map();
        if map.get(&lease.0) == Some(&seen) {
            map.remove(&lease.0);
            self.looks().remove(&lease.0);
        }
    }

    /// A reading of an overdue lease that looked renewed: `true` once a reading at least
    /// [`LOOK_AGAIN`] later shows it did not run down (renewed elsewhere); `false` while
    /// that is not known yet, or when it ran down (extended, not renewed: keep watching,
    /// it is revoked once it has run down for `miss_after`). Gives up watching two TTLs
    /// after this replica's own last renewal.
    fn renewed_elsewhere(&self, lease: LeaseId, seen: Renewal, left: Duration) -> bool {
        if seen.at.elapsed() >= seen.ttl * 2 {
            self.looks().remove(&lease.0);
            return true;
        }
        let now = Instant::now();
        let mut looked = self.looks();
        if let Some(look) = looked.get(&lease.0).filter(|l| l.seen == seen) {
            if now.saturating_duration_since(look.at) < LOOK_AGAIN {
                return false;
            }
            if left >= look.left {
                looked.remove(&lease.0);
                return true;
            }
        }
        // The first reading, or one that ran down: compare the next with this one.
        let look = Look {
            seen,
            at: now,
            left,
        };
        looked.insert(lease.0, look);
        false
    }

    fn looks(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Look>> {
        self.looked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn still(&self, lease: LeaseId, seen: Renewal) -> bool {
        self.map().get(&lease.0) == Some(&seen)
    }

    /// Starts the detector: every `miss_after / 8` (50–250 ms) it checks the overdue leases.
    /// `miss_after` at or above the lease TTL leaves it all to the lease.
    /// Relays removed are counted in `metrics`.
    pub fn spawn(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        miss_after: Duration,
        metrics: Metrics,
    ) -> JoinHandle<()> {
        let liveness = Arc::clone(self);
        let period = (miss_after / 8).clamp(Duration::from_millis(50), Duration::from_millis(250));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                liveness.check(&*store, miss_after, &metrics).await;
            }
        })
    }

    async fn check(&self, store: &dyn Store, miss_after: Duration, metrics: &Metrics) {
        if self.troubled_within(miss_after) {
            // The misses may be this replica's store's: the leases decide.
            let overdue = self.overdue(miss_after).len();
            if overdue > 0 && self.first_hold() {
                tracing::info!(
                    overdue,
                    "store trouble: relays that missed heartbeats are left to their leases"
                );
            }
            return;
        }
        for (lease, seen) in self.overdue(miss_after) {
            if miss_after >= seen.ttl {
                self.forget_if(lease, seen); // the lease expires first anyway
                continue;
            }
            if self.is_renewing(lease) {
                continue;
            }
            let asked = Instant::now();
            let answer = store.time_to_live(lease).await;
            if asked.elapsed() >= STALL {
                self.trouble();
                return;
            }
            match answer {
                Ok(left) if seen.ttl.saturating_sub(left) >= miss_after => {
                    if !self.still(lease, seen) || self.is_renewing(lease) {
                        continue; // a heartbeat arrived meanwhile
                    }
                    match store.revoke_lease(lease).await {
                        Ok(()) => {
                            tracing::info!(
                                lease = lease.0,
                                silent_ms = seen.at.elapsed().as_millis() as u64,
                                "relay missed its heartbeats: removed"
                            );
                            metrics.relay_missed();
                            self.forget_if(lease, seen);
                        }
                        Err(StoreError::LeaseNotFound) => self.forget_if(lease, seen),
                        Err(e) => {
                            tracing::debug!(error = %e, "missed-heartbeat revoke failed");
                            self.trouble();
                            return;
                        }
                    }
                }
                Ok(left) => {
                    if self.renewed_elsewhere(lease, seen, left) {
                        // Renewed elsewhere: that replica watches it now.
                        self.forget_if(lease, seen);
                    }
                }
                Err(StoreError::LeaseNotFound) => self.forget_if(lease, seen),
                Err(e) => {
                    tracing::debug!(error = %e, "missed-heartbeat check failed");
                    self.trouble();
                    return;
                }
            }
        }
    }
}
