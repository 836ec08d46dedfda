//! The admin API (keys with the `admin` scope): tenants and their secrets, API keys,
//! regions, relays (list, drain), revocations of TURN usernames and of room tokens.
//!
//! Admin calls are rare, so they read and write the store directly (with compare-and-swap
//! for read-modify-write), then wait briefly until this replica's snapshot shows the write,
//! so that the caller's next request on the same replica sees it.

pub mod fleet;
pub mod keys;
pub mod rooms;
pub mod tenants;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use crate::model;
use crate::store::{LeaseId, Outcome, Store};

/// How often a read-modify-write is retried when another writer got in between.
const CAS_ATTEMPTS: usize = 5;

/// A record as read from the store.
#[derive(Debug)]
pub struct Stored<T> {
    pub value: T,
    pub mod_revision: i64,
    pub lease: Option<LeaseId>,
}

/// Reads and decodes `key`.
pub async fn read<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Stored<T>>, ApiError> {
    let Some(kv) = store.get(key).await? else {
        return Ok(None);
    };
    let value = model::decode(key, &kv.value)
        .map_err(|e| ApiError::internal(format!("stored record {key} is unreadable: {e}")))?;
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
) -> Result<Vec<(String, T)>, ApiError> {
    let listing = store.list(prefix).await?;
    let records = listing.kvs.into_iter().filter_map(|kv| {
        let rest = kv.key.strip_prefix(prefix).unwrap_or(&kv.key).to_owned();
        model::decode(&kv.key, &kv.value).ok().map(|v| (rest, v))
    });
    Ok(records.collect())
}

/// Read-modify-write of `key` under compare-and-swap (keeping its lease); 404 if absent.
/// Returns the new value and the revision of the write.
pub async fn update<T, F>(store: &dyn Store, key: &str, mut change: F) -> Result<(T, i64), ApiError>
where
    T: DeserializeOwned + Serialize,
    F: FnMut(T) -> Result<T, ApiError>,
{
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = read::<T>(store, key).await? else {
            return Err(ApiError::not_found(format!("{key} does not exist")));
        };
        let new = change(current.value)?;
        let bytes = model::encode(&new);
        match store
            .compare_and_swap(key, current.mod_revision, bytes, current.lease)
            .await?
        {
            Outcome::Written { revision } => return Ok((new, revision)),
            Outcome::Conflict { .. } => continue,
        }
    }
    Err(ApiError::conflict(
        "conflict",
        format!("{key} is being changed concurrently; retry"),
    ))
}

/// Writes `key` only if absent; 409 `conflict` otherwise. Returns the write's revision.
pub async fn create<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
) -> Result<i64, ApiError> {
    match store.create(key, model::encode(value), None).await? {
        Outcome::Written { revision } => Ok(revision),
        Outcome::Conflict { .. } => Err(ApiError::conflict(
            "conflict",
            format!("{key} already exists"),
        )),
    }
}

/// Checks a name from a path or body (400 `invalid_request`).
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    model::validate_name(name).map_err(|e| ApiError::invalid_request(format!("{what}: {e}")))
}
