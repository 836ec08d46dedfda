//! A store wrapper for outage tests, shared by the test binaries that need one.
#![allow(dead_code)] // each test binary uses some of the switches

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nexrtc_controller::store::{Backend, KeyValue, Lease, LeaseId, Listing, MemoryStore, Outcome};
use nexrtc_controller::store::{StoreError, Watch};
use tokio::sync::watch;

/// A MemoryStore behind switches: while down, every call fails with `Unavailable` and open
/// watches end with it (as they do when etcd dies); while frozen, every call hangs (30 s,
/// then `Unavailable`) and open watches stay open and silent (etcd stopped with SIGSTOP);
/// while renewals stall, only `keep_alive` hangs (a replica whose etcd connection broke
/// under a renewal).
#[derive(Debug, Clone)]
pub struct Flaky {
    inner: MemoryStore,
    down: Arc<watch::Sender<bool>>,
    frozen: Arc<AtomicBool>,
    stall_renewals: Arc<AtomicBool>,
}

/// How long a frozen or stalled call hangs before it fails.
const HANG: Duration = Duration::from_secs(30);

impl Flaky {
    pub fn new(inner: MemoryStore) -> Flaky {
        Flaky {
            inner,
            down: Arc::new(watch::channel(false).0),
            frozen: Arc::new(AtomicBool::new(false)),
            stall_renewals: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Freezes the store (every call hangs, open watches fall silent) or thaws it.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    /// Makes `keep_alive` hang (or not).
    pub fn set_stall_renewals(&self, stall: bool) {
        self.stall_renewals.store(stall, Ordering::Relaxed);
    }

    /// Switches the store off (every call and open watch fails) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.hang_if(false).await
    }

    async fn hang_if(&self, stalled: bool) -> Result<(), StoreError> {
        if *self.down.borrow() {
            return Err(StoreError::Unavailable("switched off".to_owned()));
        }
        if stalled || self.frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(HANG).await;
            return Err(StoreError::Unavailable("timed out".to_owned()));
        }
        Ok(())
    }
}

impl Backend for Flaky {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.check().await?;
        Backend::get(&self.inner, key).await
    }
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.check().await?;
        Backend::list(&self.inner, prefix).await
    }
    async fn range(&self, start: &str, end: &str, limit: usize) -> Result<Listing, StoreError> {
        self.check().await?;
        Backend::range(&self.inner, start, end, limit).await
    }
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        self.check().await?;
        Backend::put(&self.inner, key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check().await?;
        Backend::delete(&self.inner, key).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        self.check().await?;
        Backend::create(&self.inner, key, value, lease).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        self.check().await?;
        Backend::compare_and_swap(&self.inner, key, expected, value, lease).await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        self.check().await?;
        Backend::grant_lease(&self.inner, ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.hang_if(self.stall_renewals.load(Ordering::Relaxed))
            .await?;
        Backend::keep_alive(&self.inner, lease).await
    }
    async fn time_to_live(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        self.check().await?;
        Backend::time_to_live(&self.inner, lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check().await?;
        Backend::revoke_lease(&self.inner, lease).await
    }
    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        self.check().await?;
        let events = Backend::watch(&self.inner, prefix, from).await?;
        let mut down = self.down.subscribe();
        let cut = async move {
            let _ = down.wait_for(|down| *down).await;
        };
        let lost = futures_util::stream::once(async {
            Err(StoreError::Unavailable("connection lost".to_owned()))
        });
        Ok(Watch::new(events.take_until(cut).chain(lost)))
    }
}
