//! [`MemoryStore`]: the embedded store, etcd's semantics in one process.
//!
//! One mutex guards the whole state (keys in a `BTreeMap`, leases, the revision counter and
//! a bounded event history); it is never held across an `.await`. Writers hand events to a
//! bounded `tokio::sync::broadcast` channel and never wait for watchers: a watcher more than
//! `watch_buffer` events behind gets [`StoreError::Compacted`] and re-lists. Lease expiry
//! runs on tokio time: a reaper task (spawned with the first lease, aborted when the last
//! handle to the store is dropped) wakes at the earliest deadline; every operation also
//! expires due leases first, so results never depend on the reaper's timing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ttl_secs, Backend};
use super::{KeyValue, Lease, LeaseId, Listing, Outcome, StoreError, Watch, WatchEvent};

/// Events kept for watches that start in the past.
const DEFAULT_HISTORY: usize = 10_000;
/// Events a watcher may fall behind before it is told to re-list.
const DEFAULT_WATCH_BUFFER: usize = 4_096;

/// The embedded in-memory store (cheap to clone: clones share the state).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    wake_reaper: Arc<Notify>,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let reaper = self
            .reaper
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = reaper.take() {
            task.abort();
        }
    }
}

struct State {
    revision: i64,
    kvs: BTreeMap<String, KeyValue>,
    leases: HashMap<i64, LeaseState>,
    next_lease: i64,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    /// Events up to this revision have left the history.
    compacted: i64,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

struct LeaseState {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

impl MemoryStore {
    /// An empty store (revision 1) with default history and watcher buffer sizes.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_HISTORY, DEFAULT_WATCH_BUFFER)
    }

    /// An empty store keeping `history` events for replay, letting a watcher fall at most
    /// `watch_buffer` events behind (both at least 1).
    pub fn with_limits(history: usize, watch_buffer: usize) -> Self {
        let (events, _) = broadcast::channel(watch_buffer.max(1));
        let state = State {
            revision: 1,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: 1,
            history: VecDeque::new(),
            history_limit: history.max(1),
            compacted: 0,
            events,
        };
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                wake_reaper: Arc::new(Notify::new()),
                reaper: Mutex::new(None),
            }),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// Number of live watch streams (for tests: a dropped [`Watch`] no longer counts).
    pub fn watchers(&self) -> usize {
        self.lock().events.receiver_count()
    }

    /// The state, with due leases expired.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.expire(Instant::now());
        state
    }

    fn start_reaper(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: leases still expire lazily on the next operation
        };
        let mut reaper = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if reaper.is_none() {
            let weak = Arc::downgrade(&self.inner);
            let wake = self.inner.wake_reaper.clone();
            *reaper = Some(runtime.spawn(reap(weak, wake)));
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MemoryStore")
            .field("revision", &state.revision)
            .field("keys", &state.kvs.len())
            .field("leases", &state.leases.len())
            .finish()
    }
}

/// Expires leases at their deadlines; holds only a weak reference between wake-ups.
async fn reap(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.expire(Instant::now());
            state.leases.values().map(|l| l.deadline).min()
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        let due: Vec<i64> = (self.leases.iter())
            .filter(|(_, lease)| lease.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.revoke(id);
        }
    }

    /// Removes the lease and its keys (one revision); `false` if there was no such lease.
    fn revoke(&mut self, id: i64) -> bool {
        let Some(lease) = self.leases.remove(&id) else {
            return false;
        };
        if !lease.keys.is_empty() {
            self.revision += 1;
            for key in lease.keys {
                self.kvs.remove(&key);
                let mod_revision = self.revision;
                self.emit(WatchEvent::Delete { key, mod_revision });
            }
        }
        true
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<(), StoreError> {
        match lease {
            Some(LeaseId(id)) if !self.leases.contains_key(&id) => Err(StoreError::LeaseNotFound),
            _ => Ok(()),
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> i64 {
        self.revision += 1;
        let revision = self.revision;
        let previous = self.kvs.get(key);
        let create_revision = previous.map_or(revision, |kv| kv.create_revision);
        if let Some(LeaseId(old)) = previous.and_then(|kv| kv.lease) {
            if let Some(old) = self.leases.get_mut(&old) {
                old.keys.remove(key);
            }
        }
        if let Some(new) = lease.and_then(|LeaseId(id)| self.leases.get_mut(&id)) {
            new.keys.insert(key.to_owned());
        }
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
            lease,
        };
        self.kvs.insert(key.to_owned(), kv.clone());
        self.emit(WatchEvent::Put(kv));
        revision
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(kv) = self.kvs.remove(key) else {
            return false;
        };
        if let Some(lease) = kv.lease.and_then(|LeaseId(id)| self.leases.get_mut(&id)) {
            lease.keys.remove(key);
        }
        self.revision += 1;
        let mod_revision = self.revision;
        self.emit(WatchEvent::Delete {
            key: kv.key,
            mod_revision,
        });
        true
    }

    fn emit(&mut self, event: WatchEvent) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        if self.history.len() > self.history_limit {
            // Drop whole revisions so a replay never starts in the middle of one.
            if let Some(oldest) = self.history.pop_front() {
                self.compacted = oldest.revision();
            }
            while self
                .history
                .front()
                .is_some_and(|e| e.revision() <= self.compacted)
            {
                self.history.pop_front();
            }
        }
        let _no_watchers = self.events.send(event);
    }
}

impl Backend for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.lock();
        let kvs = (state.kvs.range(prefix.to_owned()..))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing {
            kvs,
            revision: state.revision,
        })
    }

    async fn range(&self, start: &str, end: &str, limit: usize) -> Result<Listing, StoreError> {
        let state = self.lock();
        let kvs = match start < end {
            true => (state
                .kvs
                .range::<str, _>((Bound::Included(start), Bound::Excluded(end))))
            .take(limit)
            .map(|(_, kv)| kv.clone())
            .collect(),
            false => Vec::new(),
        };
        Ok(Listing {
            kvs,
            revision: state.revision,
        })
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        let mut state = self.lock();
        state.check_lease(lease)?;
        Ok(state.write(key, value, lease))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove(key))
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        let mut state = self.lock();
        if let Some(current) = state.kvs.get(key) {
            return Ok(Outcome::Conflict {
                current: Some(current.clone()),
            });
        }
        state.check_lease(lease)?;
        Ok(Outcome::Written {
            revision: state.write(key, value, lease),
        })
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        let mut state = self.lock();
        let current = state.kvs.get(key);
        if current.map_or(0, |kv| kv.mod_revision) != expected {
            return Ok(Outcome::Conflict {
                current: current.cloned(),
            });
        }
        state.check_lease(lease)?;
        Ok(Outcome::Written {
            revision: state.write(key, value, lease),
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let ttl = Duration::from_secs(ttl_secs(ttl).unsigned_abs());
        let id = {
            let mut state = self.lock();
            let id = state.next_lease;
            state.next_lease += 1;
            let lease = LeaseState {
                ttl,
                deadline: Instant::now() + ttl,
                keys: BTreeSet::new(),
            };
            state.leases.insert(id, lease);
            id
        };
        self.start_reaper();
        self.inner.wake_reaper.notify_one();
        Ok(Lease {
            id: LeaseId(id),
            ttl,
        })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut state = self.lock();
        let lease = state
            .leases
            .get_mut(&lease.0)
            .ok_or(StoreError::LeaseNotFound)?;
        lease.deadline = Instant::now() + lease.ttl;
        Ok(())
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let state = self.lock();
        let lease = state
            .leases
            .get(&lease.0)
            .ok_or(StoreError::LeaseNotFound)?;
        Ok(lease.deadline.saturating_duration_since(Instant::now()))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        match self.lock().revoke(lease.0) {
            true => Ok(()),
            false => Err(StoreError::LeaseNotFound),
        }
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        let state = self.lock();
        let from = if from <= 0 { state.revision + 1 } else { from };
        if from <= state.compacted {
            return Err(StoreError::Compacted {
                revision: state.compacted + 1,
            });
        }
        let replay: VecDeque<Arc<WatchEvent>> = (state.history.iter())
            .filter(|e| e.revision() >= from && e.key().starts_with(prefix))
            .cloned()
            .collect();
        // Subscribing under the lock: no event is missed or seen twice.
        let live = state.events.subscribe();
        drop(state);
        let watch = MemoryWatch {
            replay,
            live,
            prefix: prefix.to_owned(),
            from,
        };
        Ok(Watch::new(futures_util::stream::unfold(
            watch,
            MemoryWatch::next,
        )))
    }
}

struct MemoryWatch {
    replay: VecDeque<Arc<WatchEvent>>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    from: i64,
}

impl MemoryWatch {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        if let Some(event) = self.replay.pop_front() {
            return Some((Ok(WatchEvent::clone(&event)), self));
        }
        loop {
            match self.live.recv().await {
                Ok(event)
                    if event.revision() >= self.from && event.key().starts_with(&self.prefix) =>
                {
                    return Some((Ok(WatchEvent::clone(&event)), self));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "memory store watcher fell behind; it must re-list");
                    return Some((Err(StoreError::Compacted { revision: 0 }), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
