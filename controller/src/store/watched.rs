//! [`WatchedMap`]: a prefix of the store mirrored in memory, so requests never touch the store.
//!
//! A background task lists the prefix, then watches from the listing's revision + 1 and
//! applies every event, publishing an immutable [`Snapshot`] after each batch. Readers take
//! the current snapshot (`Arc` clone under a read lock: cheap, consistent, never blocked by
//! the store). When the store fails (`Unavailable`) the last snapshot keeps being served,
//! marked not live, while the task retries list + watch with jittered exponential backoff;
//! when history is lost (`Compacted`) it re-lists at once. It recovers by itself when the
//! store comes back. Dropping the `WatchedMap` aborts the task.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Store, StoreError, WatchEvent};

/// Turns a value's bytes (and its key, relative to the watched prefix) into a `T`.
pub type Decoder<T> = Arc<dyn Fn(&str, &[u8]) -> Result<T, String> + Send + Sync>;

/// Retry pacing of a [`WatchedMap`].
#[derive(Debug, Clone)]
pub struct WatchedMapConfig {
    /// First retry delay after a failure.
    pub min_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
}

impl Default for WatchedMapConfig {
    fn default() -> Self {
        WatchedMapConfig {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The mirrored prefix at one revision.
pub struct Snapshot<T> {
    /// Decoded values by key, relative to the watched prefix.
    pub entries: Arc<HashMap<String, Arc<T>>>,
    /// The store revision the entries reflect (0 before the first list).
    pub revision: i64,
    /// `true` while the watch is running: the entries follow the store.
    pub live: bool,
    /// When the entries were last known to equal the store: the last successful list, or,
    /// once the watch broke, the moment it broke. `None` until the first list succeeds.
    pub synced_at: Option<Instant>,
    /// The last error, while not live.
    pub error: Option<String>,
}

impl<T> Snapshot<T> {
    /// `true` once the first list succeeded (for `/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.synced_at.is_some()
    }

    /// How stale the entries may be: zero while live, the time since the watch broke
    /// otherwise, `None` if never loaded.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        match self.live {
            true => Some(Duration::ZERO),
            false => self.synced_at.map(|at| now.saturating_duration_since(at)),
        }
    }

    /// The value under `key` (relative to the watched prefix).
    pub fn get(&self, key: &str) -> Option<&Arc<T>> {
        self.entries.get(key)
    }
}

impl<T> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("entries", &self.entries.len())
            .field("revision", &self.revision)
            .field("live", &self.live)
            .field("synced_at", &self.synced_at)
            .field("error", &self.error)
            .finish()
    }
}

/// A prefix of the store mirrored in memory (see the module docs).
pub struct WatchedMap<T> {
    snapshots: watch::Receiver<Arc<Snapshot<T>>>,
    task: JoinHandle<()>,
}

impl<T> Drop for WatchedMap<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> fmt::Debug for WatchedMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WatchedMap")
            .field(&*self.snapshots.borrow())
            .finish()
    }
}

impl WatchedMap<Vec<u8>> {
    /// Mirrors `prefix` with raw byte values.
    pub fn raw(store: Arc<dyn Store>, prefix: impl Into<String>) -> Self {
        let decode: Decoder<Vec<u8>> = Arc::new(|_: &str, bytes: &[u8]| Ok(bytes.to_vec()));
        Self::spawn(store, prefix, decode, WatchedMapConfig::default())
    }
}

impl<T: Send + Sync + 'static> WatchedMap<T> {
    /// Starts mirroring `prefix` (must be called inside a tokio runtime). Values that fail
    /// to decode are left out (and logged).
    pub fn spawn(
        store: Arc<dyn Store>,
        prefix: impl Into<String>,
        decode: Decoder<T>,
        config: WatchedMapConfig,
    ) -> Self {
        let empty = Snapshot {
            entries: Arc::default(),
            revision: 0,
            live: false,
            synced_at: None,
            error: None,
        };
        let (tx, snapshots) = watch::channel(Arc::new(empty));
        let mirror = Mirror {
            store,
            prefix: prefix.into(),
            decode,
            tx,
            entries: HashMap::new(),
        };
        let task = tokio::spawn(mirror.run(config));
        WatchedMap { snapshots, task }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot<T>> {
        self.snapshots.borrow().clone()
    }

    /// A receiver notified at every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot<T>>> {
        self.snapshots.clone()
    }

    /// Waits until a snapshot satisfies `ready` and returns it.
    pub async fn wait_for(&self, mut ready: impl FnMut(&Snapshot<T>) -> bool) -> Arc<Snapshot<T>> {
        let mut rx = self.snapshots.clone();
        let found = match rx.wait_for(|snapshot| ready(snapshot)).await {
            Ok(snapshot) => Some(snapshot.clone()),
            // The task never drops its sender before being aborted with `self`.
            Err(_) => None,
        };
        found.unwrap_or_else(|| self.snapshot())
    }
}

/// Events applied before a snapshot is published, at most.
const MAX_BATCH: usize = 1024;

struct Mirror<T> {
    store: Arc<dyn Store>,
    prefix: String,
    decode: Decoder<T>,
    tx: watch::Sender<Arc<Snapshot<T>>>,
    entries: HashMap<String, Arc<T>>,
}

impl<T: Send + Sync + 'static> Mirror<T> {
    async fn run(mut self, config: WatchedMapConfig) {
        let mut delay = config.min_backoff;
        loop {
            let error = match self.sync().await {
                Ok(never) => match never {},
                Err(error) => error,
            };
            if let StoreError::Compacted { .. } = error {
                tracing::info!(prefix = %self.prefix, "watch lost its history; re-listing");
                continue;
            }
            if self.tx.borrow().live {
                delay = config.min_backoff; // this round listed: the store was reachable
            }
            tracing::warn!(prefix = %self.prefix, %error, ?delay, "store sync failed; serving the last snapshot");
            self.mark_stale(&error);
            let jitter = rand::rng().random_range(0.8..1.2);
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            delay = (delay * 2).min(config.max_backoff);
        }
    }

    /// Lists, then follows the watch until it fails.
    async fn sync(&mut self) -> Result<std::convert::Infallible, StoreError> {
        let listing = self.store.list(&self.prefix).await?;
        self.entries.clear();
        for kv in listing.kvs {
            let key = self.relative(&kv.key);
            self.insert(key, &kv.value);
        }
        let mut revision = listing.revision;
        self.publish(revision, Some(Instant::now()));
        let mut watch = self.store.watch(&self.prefix, revision + 1).await?;
        loop {
            let mut next = watch.next().await;
            let mut applied = 0;
            loop {
                match next {
                    Some(Ok(event)) => revision = self.apply(event),
                    Some(Err(error)) => {
                        self.publish_if(applied > 0, revision);
                        return Err(error);
                    }
                    None => {
                        self.publish_if(applied > 0, revision);
                        return Err(StoreError::Unavailable("watch ended".to_owned()));
                    }
                }
                applied += 1;
                match watch.next().now_or_never() {
                    Some(more) if applied < MAX_BATCH => next = more,
                    _ => break,
                }
            }
            self.publish_if(true, revision);
        }
    }

    fn relative(&self, key: &str) -> String {
        key.strip_prefix(self.prefix.as_str())
            .unwrap_or(key)
            .to_owned()
    }

    fn insert(&mut self, key: String, bytes: &[u8]) {
        match (self.decode)(&key, bytes) {
            Ok(value) => {
                self.entries.insert(key, Arc::new(value));
            }
            Err(error) => {
                tracing::warn!(prefix = %self.prefix, %key, %error, "undecodable value left out");
                self.entries.remove(&key);
            }
        }
    }

    fn apply(&mut self, event: WatchEvent) -> i64 {
        let revision = event.revision();
        match event {
            WatchEvent::Put(kv) => {
                let key = self.relative(&kv.key);
                self.insert(key, &kv.value);
            }
            WatchEvent::Delete { key, .. } => {
                let key = self.relative(&key);
                self.entries.remove(&key);
            }
        }
        revision
    }

    fn publish_if(&self, changed: bool, revision: i64) {
        if changed {
            let synced_at = self.tx.borrow().synced_at;
            self.publish(revision, synced_at);
        }
    }

    fn publish(&self, revision: i64, synced_at: Option<Instant>) {
        self.tx.send_replace(Arc::new(Snapshot {
            entries: Arc::new(self.entries.clone()),
            revision,
            live: true,
            synced_at,
            error: None,
        }));
    }

    fn mark_stale(&self, error: &StoreError) {
        let old = self.tx.borrow().clone();
        let synced_at = match old.live {
            true => Some(Instant::now()),
            false => old.synced_at,
        };
        self.tx.send_replace(Arc::new(Snapshot {
            entries: old.entries.clone(),
            revision: old.revision,
            live: false,
            synced_at,
            error: Some(error.to_string()),
        }));
    }
}
