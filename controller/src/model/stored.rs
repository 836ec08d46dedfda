//! Typed access to the records of [`crate::store`]: read, list, create and read-modify-write
//! under compare-and-swap, decoding and encoding the JSON records of this module.
//!
//! Errors are [`RecordError`]s, which say what went wrong in the store's terms; the HTTP
//! API turns them into its JSON errors (`api/error.rs`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model;
use crate::store::{LeaseId, Outcome, Store, StoreError};

/// How often a read-modify-write is retried when another writer got in between.
const CAS_ATTEMPTS: usize = 5;

/// A record as read from the store.
#[derive(Debug)]
pub struct Stored<T> {
    pub value: T,
    pub mod_revision: i64,
    pub lease: Option<LeaseId>,
}

/// Why a typed store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record at `key` does not decode as its type.
    #[error("stored record {key} is unreadable: {reason}")]
    Unreadable { key: String, reason: String },
    /// [`update`] of a key that is absent.
    #[error("{0} does not exist")]
    Absent(String),
    /// [`create`] of a key that exists.
    #[error("{0} already exists")]
    Exists(String),
    /// [`update`] lost every compare-and-swap to other writers.
    #[error("{0} is being changed concurrently; retry")]
    Contended(String),
}

/// Reads and decodes `key`.
pub async fn read<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Stored<T>>, RecordError> {
    let Some(kv) = store.get(key).await? else {
        return Ok(None);
    };
    let value = model::decode(key, &kv.value).map_err(|reason| RecordError::Unreadable {
        key: key.to_owned(),
        reason,
    })?;
    Ok(Some(Stored {
        value,
        mod_revision: kv.mod_revision,
        lease: kv.lease,
    }))
}

/// Every record under `prefix`, with its key relative to the prefix; unreadable records
/// are skipped.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, T)>, RecordError> {
    let listing = store.list(prefix).await?;
    let records = listing.kvs.into_iter().filter_map(|kv| {
        let rest = kv.key.strip_prefix(prefix).unwrap_or(&kv.key).to_owned();
        model::decode(&kv.key, &kv.value).ok().map(|v| (rest, v))
    });
    Ok(records.collect())
}

/// Read-modify-write of `key` under compare-and-swap (keeping its lease):
/// [`RecordError::Absent`] if absent; `change` may refuse with its own error. Returns the
/// new value and the revision of the write.
pub async fn update<T, E, F>(store: &dyn Store, key: &str, mut change: F) -> Result<(T, i64), E>
where
    T: DeserializeOwned + Serialize,
    E: From<RecordError>,
    F: FnMut(T) -> Result<T, E>,
{
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = read::<T>(store, key).await? else {
            return Err(RecordError::Absent(key.to_owned()).into());
        };
        let new = change(current.value)?;
        let bytes = model::encode(&new);
        let outcome = store
            .compare_and_swap(key, current.mod_revision, bytes, current.lease)
            .await
            .map_err(RecordError::from)?;
        match outcome {
            Outcome::Written { revision } => return Ok((new, revision)),
            Outcome::Conflict { .. } => continue,
        }
    }
    Err(RecordError::Contended(key.to_owned()).into())
}

/// Writes `key` only if absent ([`RecordError::Exists`] otherwise). Returns the write's
/// revision.
pub async fn create<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
) -> Result<i64, RecordError> {
    match store.create(key, model::encode(value), None).await? {
        Outcome::Written { revision } => Ok(revision),
        Outcome::Conflict { .. } => Err(RecordError::Exists(key.to_owned())),
    }
}
