//! A store wrapper for outage tests, shared by the test binaries that need one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nexrtc_controller::store::{Backend, KeyValue, Lease, LeaseId, Listing, MemoryStore, Outcome};
use nexrtc_controller::store::{StoreError, Watch};
use tokio::sync::watch;

/// A MemoryStore behind a switch: while down, every call fails with `Unavailable` and open
/// watches end with it (as they do when etcd dies).
#[derive(Debug, Clone)]
pub struct Flaky {
    inner: MemoryStore,
    down: Arc<watch::Sender<bool>>,
}

impl Flaky {
    pub fn new(inner: MemoryStore) -> Flaky {
        Flaky {
            inner,
            down: Arc::new(watch::channel(false).0),
        }
    }

    /// Switches the store off (every call and open watch fails) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    fn check(&self) -> Result<(), StoreError> {
        match *self.down.borrow() {
            true => Err(StoreError::Unavailable("switched off".to_owned())),
            false => Ok(()),
        }
    }
}

impl Backend for Flaky {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.check()?;
        Backend::get(&self.inner, key).await
    }
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.check()?;
        Backend::list(&self.inner, prefix).await
    }
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        self.check()?;
        Backend::put(&self.inner, key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check()?;
        Backend::delete(&self.inner, key).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        self.check()?;
        Backend::create(&self.inner, key, value, lease).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        self.check()?;
        Backend::compare_and_swap(&self.inner, key, expected, value, lease).await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        self.check()?;
        Backend::grant_lease(&self.inner, ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check()?;
        Backend::keep_alive(&self.inner, lease).await
    }
    async fn time_to_live(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        self.check()?;
        Backend::time_to_live(&self.inner, lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check()?;
        Backend::revoke_lease(&self.inner, lease).await
    }
    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        self.check()?;
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
