//! Values passed through the [`Store`](super::Store) API.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{BoxStream, Stream, StreamExt};

/// One key and its value, with etcd's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (kept across updates).
    pub create_revision: i64,
    /// Revision of the key's last write.
    pub mod_revision: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// The result of [`Store::list`](super::Store::list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Every key under the prefix, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// The store revision the listing was read at; watch from `revision + 1` to continue.
    pub revision: i64,
}

/// The result of a conditional write ([`create`](super::Store::create),
/// [`compare_and_swap`](super::Store::compare_and_swap)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The condition held and the value was written at `revision`.
    Written {
        /// Revision of the write (the key's new `mod_revision`).
        revision: i64,
    },
    /// The condition failed; nothing was written. `current` is the key as it is now.
    Conflict {
        /// The current value, `None` if the key is absent.
        current: Option<KeyValue>,
    },
}

impl Outcome {
    /// `true` for [`Outcome::Written`].
    pub fn is_written(&self) -> bool {
        matches!(self, Outcome::Written { .. })
    }
}

/// A lease id, as etcd numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id, to attach keys and keep it alive.
    pub id: LeaseId,
    /// The TTL actually granted (whole seconds; may exceed the request).
    pub ttl: Duration,
}

/// A change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was written; the value as of that write.
    Put(KeyValue),
    /// The key was deleted (explicitly, or by its lease's expiry or revocation).
    Delete {
        /// The deleted key, relative to the store's prefix.
        key: String,
        /// Revision of the deletion.
        mod_revision: i64,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the write that caused the event.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A live watch: a stream of events. Ends after its first error; dropping it cancels it.
pub struct Watch {
    inner: BoxStream<'static, Result<WatchEvent, StoreError>>,
}

impl Watch {
    /// Wraps a stream of events (for implementations and wrappers of [`Store`](super::Store));
    /// the watch is fused after the stream's first error.
    pub fn new(
        stream: impl Stream<Item = Result<WatchEvent, StoreError>> + Send + 'static,
    ) -> Self {
        let mut failed = false;
        let inner = stream
            .take_while(move |item| {
                let go = !failed;
                failed |= item.is_err();
                futures_util::future::ready(go)
            })
            .boxed();
        Watch { inner }
    }

    /// The next event; `Some(Err(_))` at most once, then `None`.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        self.inner.next().await
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached in time (connection refused or lost, timeout, no
    /// leader). Retry later; meanwhile serve the last snapshot.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The history a watch needed is gone (compacted, or the watcher fell too far behind):
    /// list again and watch from the listing's revision + 1.
    #[error("store history compacted (oldest revision still available: {revision})")]
    Compacted {
        /// The oldest revision a watch may still start from (0 if not known).
        revision: i64,
    },
    /// The lease does not exist: it expired, was revoked, or was never granted.
    #[error("lease not found (expired or revoked)")]
    LeaseNotFound,
    /// Anything else (a bug, a non-UTF-8 key, a rejected request).
    #[error("store error: {0}")]
    Other(String),
}
