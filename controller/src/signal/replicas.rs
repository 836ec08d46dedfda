//! Which replica hosts a room: [`Replicas`].
//!
//! Every replica with an advertised URL keeps `controllers/<id>` ([`ControllerRecord`])
//! under a lease of its own (TTL `lease_ttl`, renewed every third of it; re-registered if
//! the lease is lost), like relays keep `relays/…`. Every replica mirrors `controllers/`
//! with a [`WatchedMap`] and assigns room (tenant, room) to the live replica with the
//! highest rendezvous weight, SHA-256(replica id ‖ 0 ‖ tenant ‖ 0 ‖ room) (highest random
//! weight hashing: all replicas agree without talking to each other, and a replica joining
//! or leaving moves only the rooms it wins or held). This replica always counts itself
//! live, so with one replica — or a store that never saw another — every room is local.
//!
//! Ownership is checked when a client connects (another owner: 307 `wrong_replica`) and
//! again by every connection whenever the set of replicas changes: the members of a room
//! that now belongs elsewhere are all told `room_moved` with the new owner's URL and
//! closed (4003), so the room moves whole instead of splitting; see ARCHITECTURE.md.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::credentials::random_id;
use crate::model::{self, ControllerRecord, CONTROLLERS};
use crate::store::{Decoder, LeaseId, Store, StoreError, WatchedMap, WatchedMapConfig};

/// Where a room lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Local,
    /// Another replica, by its advertised base URL.
    Remote(String),
}

/// This replica's registration and the live replica set (see the module docs).
pub struct Replicas {
    id: String,
    url: Option<String>,
    live: WatchedMap<ControllerRecord>,
    lease: Arc<Mutex<Option<LeaseId>>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("live", &self.live.snapshot().entries.len())
            .finish_non_exhaustive()
    }
}

impl Replicas {
    /// Starts mirroring `controllers/` and, with a `url`, registering this replica (inside
    /// a tokio runtime).
    pub fn start(
        store: &Arc<dyn Store>,
        url: Option<String>,
        lease_ttl: Duration,
        now_unix: u64,
    ) -> Replicas {
        let decode: Decoder<ControllerRecord> = Arc::new(model::decode::<ControllerRecord>);
        let live = WatchedMap::spawn(
            store.clone(),
            CONTROLLERS,
            decode,
            WatchedMapConfig::default(),
        );
        let id = random_id();
        let lease = Arc::new(Mutex::new(None));
        let task = url.as_ref().map(|url| {
            let record = ControllerRecord {
                url: url.clone(),
                started_at: now_unix,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let key = format!("{CONTROLLERS}{id}");
            tokio::spawn(register(
                store.clone(),
                key,
                record,
                lease_ttl,
                lease.clone(),
            ))
        });
        Replicas {
            id,
            url,
            live,
            lease,
            task,
        }
    }

    /// This replica's id (its key under `controllers/`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where (tenant, room) lives, per the replicas live now.
    pub fn owner(&self, tenant: &str, room: &str) -> Owner {
        let snapshot = self.live.snapshot();
        let mut best = (weight(&self.id, tenant, room), &self.id, None);
        for (id, record) in snapshot.entries.iter() {
            let w = weight(id, tenant, room);
            if (w, id) > (best.0, best.1) {
                best = (w, id, Some(record.url.as_str()));
            }
        }
        match best {
            (_, id, _) if *id == self.id => Owner::Local,
            (_, _, Some(url)) => Owner::Remote(url.trim_end_matches('/').to_owned()),
            _ => Owner::Local,
        }
    }

    /// Notified whenever the set of live replicas changes.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::watch::Receiver<Arc<crate::store::Snapshot<ControllerRecord>>> {
        self.live.subscribe()
    }

    /// Waits (bounded by `within`) until the number of registered replicas seen here
    /// satisfies `ready`; `false` on timeout.
    pub async fn wait_for_live(&self, ready: impl Fn(usize) -> bool, within: Duration) -> bool {
        let wait = self.live.wait_for(|s| ready(s.entries.len()));
        tokio::time::timeout(within, wait).await.is_ok()
    }

    /// Stops renewing and revokes the lease, so other replicas take this one's rooms at
    /// once (at shutdown).
    pub async fn deregister(&self, store: &dyn Store) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(lease) = lease {
            let _ = tokio::time::timeout(Duration::from_secs(2), store.revoke_lease(lease)).await;
        }
    }
}

/// The rendezvous weight of `replica` for (tenant, room).
pub fn weight(replica: &str, tenant: &str, room: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(replica.as_bytes());
    h.update([0]);
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(room.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Keeps `key` alive under a lease: grant, put, renew every third of the TTL; start over
/// when the lease is lost; back off while the store is unreachable.
async fn register(
    store: Arc<dyn Store>,
    key: String,
    record: ControllerRecord,
    ttl: Duration,
    current: Arc<Mutex<Option<LeaseId>>>,
) {
    let renew = (ttl / 3).max(Duration::from_millis(100));
    let value = model::encode(&record);
    loop {
        let granted = async {
            let lease = store.grant_lease(ttl).await?;
            store.put(&key, value.clone(), Some(lease.id)).await?;
            Ok::<_, StoreError>(lease)
        };
        let lease = match granted.await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register this controller replica; retrying");
                tokio::time::sleep(renew).await;
                continue;
            }
        };
        *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease.id);
        tracing::debug!(%key, "controller replica registered");
        loop {
            tokio::time::sleep(renew).await;
            match store.keep_alive(lease.id).await {
                Ok(_) => {}
                Err(StoreError::LeaseNotFound) => break,
                Err(e) => tracing::debug!(error = %e, "replica lease renewal failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_spread_rooms_and_are_stable() {
        assert_eq!(weight("a", "t", "r"), weight("a", "t", "r"));
        assert_ne!(weight("a", "t", "r"), weight("b", "t", "r"));
        assert_ne!(
            weight("a", "t1", "r"),
            weight("a", "t", "1r"),
            "separators count"
        );
        // Three replicas share 3,000 rooms roughly evenly.
        let replicas = ["r1", "r2", "r3"];
        let mut won = [0usize; 3];
        for room in 0..3000 {
            let room = room.to_string();
            let best = (0..3)
                .max_by_key(|&i| weight(replicas[i], "acme", &room))
                .expect("three");
            won[best] += 1;
        }
        assert!(won.iter().all(|&n| (800..1200).contains(&n)), "{won:?}");
    }
}
