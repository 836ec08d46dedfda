//! The controller's only view of state: a small etcd-shaped key-value API.
//!
//! The controller holds an `Arc<dyn Store>`; two implementations exist and one conformance
//! suite (`controller/tests/store_conformance.rs`) runs against both:
//!
//! * [`MemoryStore`] — embedded, in-process, the single-machine default;
//! * [`EtcdStore`] — etcd v3 over gRPC (crate `etcd-client`), for replicated controllers.
//!
//! Implementations write against [`Backend`] (methods returning `impl Future`, so they can be
//! `async fn`); every `Backend` is automatically a [`Store`], its dyn-compatible twin with boxed
//! futures (the pattern of iroh-relay's `AccessControl` / `DynAccessControl`).
//!
//! # Keys
//! Keys are UTF-8 strings **relative to the store's prefix**: the caller writes
//! `relays/eu-west/n1`, the etcd store reads and writes `/nexrtc/v1/relays/eu-west/n1`
//! ([`EtcdConfig::prefix`], default [`DEFAULT_PREFIX`]) and strips the prefix again from
//! every key it returns. The memory store has no prefix (it is private to one process).
//! Values are opaque bytes; encoding (JSON) is the caller's business.
//!
//! # Guarantees (both implementations)
//! * **Revisions.** One global revision counter. Every successful write — a put, a delete
//!   that removed something, a transaction that wrote, a lease revocation or expiry that
//!   deleted keys — increments it by exactly one, however many keys it touched. Reads never
//!   increment it. Each [`KeyValue`] carries `create_revision` (revision of the write that
//!   created the key; kept across updates) and `mod_revision` (revision of its last write).
//!   An empty store is at revision 1 (etcd's convention).
//! * **List** returns every key under a prefix, sorted by key, **and** the store revision
//!   the list was read at: `watch(prefix, listing.revision + 1)` continues exactly after it.
//!   **Range** does the same for the keys from one key to another, at most a given number.
//! * **Transactions.** [`Store::create`] writes only if the key is absent (compare
//!   `create_revision == 0`); [`Store::compare_and_swap`] writes only if the key's
//!   `mod_revision` equals the expected one (`0` means "absent", so it behaves like `create`).
//!   On conflict nothing is written and the current value (if any) is returned.
//! * **Leases.** [`Store::grant_lease`] rounds the TTL up to whole seconds (minimum 1 s) and
//!   returns the TTL actually granted (etcd may raise it to its minimum, see below). Keys put
//!   with a lease are deleted, in one revision and with a `Delete` event each, when the lease
//!   expires (no keep-alive within the TTL) or is revoked. [`Store::keep_alive`] renews once; on an expired or unknown lease it fails with
//!   [`StoreError::LeaseNotFound`], as do puts attached to such a lease.
//!   [`Store::time_to_live`] reads, without renewing, an upper bound on the time a lease
//!   has left.
//! * **Watches.** [`Store::watch`]`(prefix, from)` yields every event under `prefix` with
//!   `mod_revision >= from` (replaying history first; `from == 0` means "from now"), in
//!   revision order; events of one revision arrive consecutively. The [`Watch`] stream ends
//!   after yielding one error: [`StoreError::Compacted`] when history needed by the watch is
//!   gone — `from` was older than the kept history (the memory store says so from `watch`
//!   itself, etcd as the stream's first item), or the watcher fell too far behind — and
//!   [`StoreError::Unavailable`] when the connection was lost. Either way the caller re-lists
//!   and watches again ([`WatchedMap`] does exactly that). Dropping the [`Watch`] cancels it.
//! * **Errors.** [`StoreError::Unavailable`] means "could not reach the store, try later";
//!   the controller keeps serving its last snapshot. Every etcd call is bounded by the
//!   request timeout: a dead etcd fails fast, it never hangs the caller.
//!
//! # Known differences
//! * etcd enforces a minimum lease TTL of `ceil(1.5 × election timeout)` (2 s with etcd's
//!   defaults; 1 s with `--election-timeout` ≤ 666 ms) and checks expiry every 500 ms, so a
//!   lease ends between TTL and TTL + ~0.5 s; the memory store expires at exactly TTL
//!   (tokio time, so tests can pause and advance it).
//! * A slow etcd watcher is buffered by etcd (and only loses history to compaction); a slow
//!   memory watcher that falls more than [`MemoryStore::with_limits`]'s `watch_buffer`
//!   events behind gets [`StoreError::Compacted`] rather than unbounded memory.
//! * etcd lease ids are cluster-assigned (random-looking); memory lease ids count from 1.

mod etcd;
mod memory;
mod types;
mod watched;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};
pub use memory::MemoryStore;
pub use types::{KeyValue, Lease, LeaseId, Listing, Outcome, StoreError, Watch, WatchEvent};
pub use watched::{Decoder, Snapshot, WatchedMap, WatchedMapConfig};

/// Key prefix of everything NexRTC keeps in etcd.
pub const DEFAULT_PREFIX: &str = "/nexrtc/v1/";

/// A store implementation, written with `async fn`s (see the module docs for the semantics).
///
/// Implement this; hold the result as `Arc<dyn Store>`.
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send;

    /// Every key under `prefix` (sorted by key) and the revision they were read at.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Every key from `start` (inclusive) to `end` (exclusive), sorted by key, at most
    /// `limit` of them (the first), and the revision they were read at.
    fn range(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Writes `key`, attached to `lease` if given; returns the write's revision.
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Deletes `key`; `true` if it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes `key` only if it does not exist (transaction on `create_revision == 0`).
    fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// Writes `key` only if its `mod_revision` is `expected` (`0`: only if absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// Grants a lease of (at least) `ttl`.
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Renews `lease` once (to its granted TTL), or fails with [`StoreError::LeaseNotFound`]
    /// if it expired.
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// An upper bound on the time `lease` has left if nobody renews it (etcd answers in
    /// whole seconds, rounded down, so its bound is that plus one second), or
    /// [`StoreError::LeaseNotFound`] if it is gone. Does not renew.
    fn time_to_live(
        &self,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Duration, StoreError>> + Send;

    /// Revokes `lease`, deleting every key attached to it.
    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Watches keys under `prefix` from revision `from` (inclusive; `0`: from now).
    fn watch(
        &self,
        prefix: &str,
        from: i64,
    ) -> impl Future<Output = Result<Watch, StoreError>> + Send;
}

/// The dyn-compatible twin of [`Backend`]: the controller's `Arc<dyn Store>`.
///
/// Every [`Backend`] implements it; see [`Backend`] for each method.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// See [`Backend::get`].
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>, StoreError>>;
    /// See [`Backend::list`].
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Listing, StoreError>>;
    /// See [`Backend::range`].
    fn range<'a>(
        &'a self,
        start: &'a str,
        end: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, StoreError>>;
    /// See [`Backend::put`].
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// See [`Backend::delete`].
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// See [`Backend::create`].
    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>>;
    /// See [`Backend::compare_and_swap`].
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>>;
    /// See [`Backend::grant_lease`].
    fn grant_lease(&self, ttl: Duration) -> BoxFuture<'_, Result<Lease, StoreError>>;
    /// See [`Backend::keep_alive`].
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`Backend::time_to_live`].
    fn time_to_live(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, StoreError>>;
    /// See [`Backend::revoke_lease`].
    fn revoke_lease(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`Backend::watch`].
    fn watch<'a>(&'a self, prefix: &'a str, from: i64) -> BoxFuture<'a, Result<Watch, StoreError>>;
}

impl<T: Backend> Store for T {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>, StoreError>> {
        Box::pin(Backend::get(self, key))
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Listing, StoreError>> {
        Box::pin(Backend::list(self, prefix))
    }
    fn range<'a>(
        &'a self,
        start: &'a str,
        end: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, StoreError>> {
        Box::pin(Backend::range(self, start, end, limit))
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(Backend::put(self, key, value, lease))
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Backend::delete(self, key))
    }
    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(Backend::create(self, key, value, lease))
    }
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(Backend::compare_and_swap(self, key, expected, value, lease))
    }
    fn grant_lease(&self, ttl: Duration) -> BoxFuture<'_, Result<Lease, StoreError>> {
        Box::pin(Backend::grant_lease(self, ttl))
    }
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Backend::keep_alive(self, lease))
    }
    fn time_to_live(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, StoreError>> {
        Box::pin(Backend::time_to_live(self, lease))
    }
    fn revoke_lease(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Backend::revoke_lease(self, lease))
    }
    fn watch<'a>(&'a self, prefix: &'a str, from: i64) -> BoxFuture<'a, Result<Watch, StoreError>> {
        Box::pin(Backend::watch(self, prefix, from))
    }
}

/// Rounds a requested lease TTL the way etcd does: whole seconds, rounded up, at least 1.
pub(crate) fn ttl_secs(ttl: Duration) -> i64 {
    let whole = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(whole.max(1)).unwrap_or(i64::MAX)
}
