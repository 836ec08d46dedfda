//! The audit log: every admin mutation that succeeded (POST, PUT, PATCH or DELETE under
//! `/v1/admin/`, answered 2xx), recorded append-only in the store under `audit/`, and read
//! with `GET /v1/admin/audit`.
//!
//! An entry says who (the admin key's id and name), what (method, path, status, the
//! resource before and after), when (Unix milliseconds) and from where (the client
//! address, X-Forwarded-For from trusted proxies included). The resource is read from this
//! replica's snapshot before the handler runs and again after it (admin writes wait until
//! their own replica's snapshot has them); a path that names no single resource (creating
//! a tenant or a key, a revocation) records the answer's body as "after". Secrets never
//! enter the log: tenant secret values, token keys, passwords and whole API keys are
//! replaced by `"[redacted]"` ([`redact`]).
//!
//! Entries are created, never changed (`create` of a fresh key: `audit/<ms>-<random>`, so
//! keys sort by time); retention is bounded: past [`KEEP`] entries, or older than
//! [`MAX_AGE`], the oldest are deleted (checked on every 64th write and bounded per pass).
//! Unauthenticated or refused calls write nothing, so the log cannot be flooded from
//! outside; a failed audit write is logged and counted
//! (`nexrtc_controller_audit_write_failures_total`), the admin call's answer stands.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::model::{RelayRecord, AUDIT};
use crate::store::StoreError;

/// Entries kept at most.
pub const KEEP: usize = 10_000;
/// Entries older than this are deleted.
pub const MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// A resource or body larger than this (bytes of JSON) is recorded as its size only.
const MAX_VALUE: usize = 16 << 10;

/// One recorded admin mutation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The admin key's id (the hash `GET /v1/admin/keys` lists) and its name.
    pub key_id: String,
    #[serde(default)]
    pub key_name: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The client's address, when known.
    #[serde(default)]
    pub from: Option<String>,
    /// The resource before and after (`null`: absent, or the path names none).
    pub before: Value,
    pub after: Value,
}

/// Writes since start (every 64th prunes).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Appends `entry` (redacted, bounded in size).
pub async fn record(state: &AppState, mut entry: AuditEntry) -> Result<(), StoreError> {
    entry.before = bounded(redact(entry.before));
    entry.after = bounded(redact(entry.after));
    let key = format!(
        "{AUDIT}{:020}-{}",
        entry.at_ms,
        crate::credentials::random_id()
    );
    let value = serde_json::to_vec(&entry).map_err(|e| StoreError::Other(e.to_string()))?;
    state.store.create(&key, value, None).await?;
    if WRITES.fetch_add(1, Ordering::Relaxed).is_multiple_of(64) {
        prune(state, KEEP, entry.at_ms).await?;
    }
    Ok(())
}

/// Entries newest first: those at or after `since_ms`, at most `limit`.
pub async fn list(
    state: &AppState,
    since_ms: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let listing = state.store.list(AUDIT).await?;
    let mut out: Vec<AuditEntry> = (listing.kvs.iter().rev())
        .filter_map(|kv| serde_json::from_slice::<AuditEntry>(&kv.value).ok())
        .take_while(|e| e.at_ms >= since_ms)
        .take(limit)
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
    Ok(out)
}

/// Deletes entries past the newest `keep`, and those older than [`MAX_AGE`] at `now_ms`.
pub async fn prune(state: &AppState, keep: usize, now_ms: u64) -> Result<usize, StoreError> {
    let listing = state.store.list(AUDIT).await?;
    let oldest_kept = now_ms.saturating_sub(MAX_AGE.as_millis() as u64);
    let excess = listing.kvs.len().saturating_sub(keep);
    let mut deleted = 0;
    for (i, kv) in listing.kvs.iter().enumerate() {
        // Keys sort by time: `audit/<20-digit ms>-…`.
        let at_ms = (kv.key.strip_prefix(AUDIT))
            .and_then(|k| k.get(..20))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(0);
        if i >= excess && at_ms >= oldest_kept {
            break;
        }
        state.store.delete(&kv.key).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// The resource `path` names, from this replica's snapshot (`null` if none or absent).
pub fn resource(state: &AppState, path: &str) -> Value {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let snaps = &state.snapshots;
    let json = |v: Option<serde_json::Result<Value>>| v.and_then(Result::ok).unwrap_or(Value::Null);
    match parts.as_slice() {
        ["v1", "admin", "tenants", tenant, ..] => json(
            (snaps.tenants.snapshot().entries.get(*tenant)).map(|t| serde_json::to_value(&**t)),
        ),
        ["v1", "admin", "keys", id] => {
            json((snaps.keys.snapshot().entries.get(*id)).map(|k| serde_json::to_value(&**k)))
        }
        ["v1", "admin", "regions", region] => json(
            (snaps.regions.snapshot().entries.get(*region)).map(|r| serde_json::to_value(&**r)),
        ),
        ["v1", "admin", "relays", region, node, "drain"] => {
            let relays = snaps.relays.snapshot();
            let id = RelayRecord::id_of(region, node);
            json(relays.entries.get(&id).map(|r| serde_json::to_value(&**r)))
        }
        ["v1", "admin", "relays", region, "drain"] => {
            let relays = snaps.relays.snapshot();
            let mut in_region: Vec<&RelayRecord> = (relays.entries.values())
                .filter(|r| r.region == *region)
                .map(|r| &**r)
                .collect();
            in_region.sort_by(|a, b| a.node.cmp(&b.node));
            json(Some(serde_json::to_value(in_region)))
        }
        _ => Value::Null,
    }
}

/// Field names whose string values are secrets.
const SECRET_FIELDS: [&str; 6] = ["value", "secret", "token_key", "password", "key", "api_key"];

/// `value` with every secret replaced by `"[redacted]"`: the string values of
/// [`SECRET_FIELDS`] and any string that is an API key or a client token.
pub fn redact(value: Value) -> Value {
    const REDACTED: &str = "[redacted]";
    match value {
        Value::String(s) if s.starts_with("nxk_") || s.starts_with("nxt_") => REDACTED.into(),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let secret = SECRET_FIELDS.contains(&k.as_str()) && v.is_string();
                    (k, if secret { REDACTED.into() } else { redact(v) })
                })
                .collect(),
        ),
        other => other,
    }
}

fn bounded(value: Value) -> Value {
    let size = value.to_string().len();
    if size > MAX_VALUE {
        serde_json::json!({ "omitted_bytes": size })
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = json!({
            "name": "acme",
            "token_key": "c2VjcmV0",
            "secrets": [{"id": "s1", "value": "hunter2hunter2hunter2", "created_at": 5}],
            "key": "nxk_abcdef",
            "note": "nxt_token",
            "limits": {"max_allocations": 10},
            "scopes": ["admin"]
        });
        let r = redact(v);
        assert_eq!(
            r,
            json!({
                "name": "acme",
                "token_key": "[redacted]",
                "secrets": [{"id": "s1", "value": "[redacted]", "created_at": 5}],
                "key": "[redacted]",
                "note": "[redacted]",
                "limits": {"max_allocations": 10},
                "scopes": ["admin"]
            })
        );
        assert!(!r.to_string().contains("hunter2"));
    }

    #[test]
    fn large_values_are_recorded_by_size() {
        let big = json!({"x": "a".repeat(MAX_VALUE)});
        assert_eq!(bounded(big)["omitted_bytes"], MAX_VALUE + 8);
        assert_eq!(bounded(json!({"x": 1})), json!({"x": 1}));
    }
}
