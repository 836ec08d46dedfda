//! Usage metering: relays' per-tenant, per-minute buckets (`POST /v1/relays/usage`, see
//! [`nexrtc_wire::usage`]) stored under `usage/`, and read back per tenant with
//! `GET /v1/admin/tenants/{t}/usage`.
//!
//! # Storage
//! One record per tenant, minute and relay process:
//! `usage/<tenant>/<minute, 12 digits>/<region>/<node>/<boot>`, its value the minute's
//! [`Usage`] as JSON. Keys sort by tenant, then time, so a tenant's window is one range
//! read. A record is merged, never blindly overwritten: the stored value becomes the
//! field-by-field larger of what it held and what the relay sent ([`merge`], a
//! compare-and-swap on the record's revision). A bucket only grows while its minute lasts,
//! so a report sent twice, or a late duplicate arriving after a newer report through
//! another replica, changes nothing; the relay's `boot` keeps a restarted relay's buckets
//! apart from those of its previous run. Together: nothing reported is lost or counted
//! twice, whichever replica a report reaches and however often.
//!
//! **Write rate.** An agent reports every [`REPORT_INTERVAL`]; each report writes only
//! the buckets that grew: at most one write per tenant active on the relay per report,
//! plus one when its minute closes, so about 7 writes per minute per active tenant and
//! relay, whatever the traffic.
//!
//! **Retention.** Records older than `usage_retention_days` (7 by default) are deleted by
//! a sweep every [`SWEEP_EVERY`], at most [`SWEEP_BATCH`] per tenant and sweep. Each record
//! is about 250 bytes in etcd: 1,440 a day per tenant active on a relay, ~2.5 MB per such
//! pair over 7 days. Bills covering longer spans are exported (CSV) before they age out.
//!
//! [`REPORT_INTERVAL`]: nexrtc_wire::usage::REPORT_INTERVAL

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt as _};
use nexrtc_wire::usage::UsageReport;
use nexrtc_wire::Usage;
use serde::Serialize;

use crate::app::AppState;
use crate::model::{self, USAGE};
use crate::store::{Outcome, Store, StoreError};

/// How often the retention sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Records deleted at most per tenant and sweep.
pub const SWEEP_BATCH: usize = 5_000;
/// Buckets at most in one answer of [`query`] (minutes × regions).
pub const MAX_ROWS: usize = 20_000;
/// Records read at most for one answer of [`query`].
pub const MAX_RECORDS: usize = 500_000;
/// Records per read of [`query`]: about 5 MB at ~250 bytes a record, far under the
/// store's 64 MiB message limit (500,000 in one answer would not be).
const PAGE: usize = 20_000;
/// A bucket further in the future than this (relay clock ahead) is refused.
const MAX_AHEAD_SECS: u64 = 120;
/// Store writes in flight at once for one report.
const PARALLEL_WRITES: usize = 16;
/// Compare-and-swap attempts on one record before giving up.
const CAS_ATTEMPTS: usize = 5;

/// What was done with a report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Bucket values written.
    pub written: u64,
    /// Bucket values the store held in full already.
    pub unchanged: u64,
    /// Bucket values refused: unknown tenant name, minute out of range.
    pub refused: u64,
}

/// The record key of one bucket.
pub fn key(tenant: &str, minute: u64, region: &str, node: &str, boot: &str) -> String {
    format!("{USAGE}{tenant}/{minute:012}/{region}/{node}/{boot}")
}

/// Checks what a report as a whole names (its size is bounded by the request body limit,
/// 16 KiB); bucket values are checked one by one when stored.
pub fn validate(report: &UsageReport) -> Result<(), String> {
    model::validate_name(&report.region).map_err(|e| format!("region: {e}"))?;
    model::validate_name(&report.node).map_err(|e| format!("node: {e}"))?;
    let boot_ok = (1..=32).contains(&report.boot.len())
        && report.boot.bytes().all(|b| b.is_ascii_alphanumeric());
    if !boot_ok {
        return Err("boot: 1 to 32 letters and digits".into());
    }
    Ok(())
}

/// Stores a relay's report, [`validate`]d already: each bucket value is merged into its
/// record; values for a minute out of range (past the retention, or ahead of this
/// replica's clock by more than two minutes) or a tenant name that cannot be one are
/// refused and counted, the rest stored.
pub async fn store_report(state: &AppState, report: &UsageReport) -> Result<Stored, StoreError> {
    let now = state.unix_now();
    let oldest = now.saturating_sub(state.options.usage_retention.as_secs());
    let mut stored = Stored::default();
    let mut writes = Vec::new();
    for m in &report.minutes {
        let in_range = m.minute % 60 == 0 && m.minute >= oldest && m.minute <= now + MAX_AHEAD_SECS;
        for (tenant, usage) in &m.tenants {
            if !in_range || model::validate_name(tenant).is_err() {
                stored.refused += 1;
                continue;
            }
            if usage.is_zero() {
                continue;
            }
            let key = key(tenant, m.minute, &report.region, &report.node, &report.boot);
            writes.push((tenant.as_str(), key, *usage));
        }
    }
    let store = &*state.store;
    // The futures are made first: a closure in the stream's type would keep the
    // handler's future from being `Send` (a higher-ranked lifetime axum cannot name).
    let merges: Vec<_> = (writes.iter())
        .map(|(_, key, usage)| merge(store, key, usage))
        .collect();
    let results: Vec<Result<bool, StoreError>> = stream::iter(merges)
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    for r in results {
        match r? {
            true => stored.written += 1,
            false => stored.unchanged += 1,
        }
    }
    Ok(stored)
}

/// Makes the record at `key` hold at least `usage`, field by field; `true` if it wrote.
pub async fn merge(store: &dyn Store, key: &str, usage: &Usage) -> Result<bool, StoreError> {
    // A conflict answers with the record as it is now: one read, then one per write.
    let mut current = store.get(key).await?;
    for _ in 0..CAS_ATTEMPTS {
        let (expected, merged) = match &current {
            Some(kv) => {
                // A record that does not read (written by hand?) is replaced.
                let held: Usage = serde_json::from_slice(&kv.value).unwrap_or_default();
                if held.covers(usage) {
                    return Ok(false);
                }
                (kv.mod_revision, held.max(usage))
            }
            None => (0, *usage),
        };
        let value = serde_json::to_vec(&merged).map_err(|e| StoreError::Other(e.to_string()))?;
        match store.compare_and_swap(key, expected, value, None).await? {
            Outcome::Written { .. } => return Ok(true),
            Outcome::Conflict { current: now } => current = now,
        }
    }
    Err(StoreError::Other(format!(
        "usage record {key}: still contended after {CAS_ATTEMPTS} attempts"
    )))
}

/// A window of one tenant's usage.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Unix seconds, inclusive, a multiple of 60.
    pub from: u64,
    /// Unix seconds, exclusive, a multiple of 60.
    pub to: u64,
    /// Bucket width in seconds, a multiple of 60.
    pub step: u64,
}

/// One bucket of the answer: a region's use over `[start, start + step)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub start: u64,
    pub region: String,
    pub allocation_minutes: f64,
    pub tunnel_minutes: f64,
    pub bytes_to_peer: u64,
    pub bytes_to_client: u64,
}

impl Row {
    fn new(start: u64, region: &str, u: &Usage) -> Row {
        // Minutes to the millisecond's precision, as decimals that print exactly enough.
        let minutes = |ms: u64| (ms as f64 / 60.0).round() / 1000.0;
        Row {
            start,
            region: region.to_owned(),
            allocation_minutes: minutes(u.allocation_ms),
            tunnel_minutes: minutes(u.tunnel_ms),
            bytes_to_peer: u.bytes_to_peer,
            bytes_to_client: u.bytes_to_client,
        }
    }
}

/// The answer of [`query`].
#[derive(Debug, Clone, Serialize)]
pub struct UsageAnswer {
    pub tenant: String,
    pub from: u64,
    pub to: u64,
    pub step: u64,
    /// Buckets with any use, by start then region (buckets without use are left out).
    pub buckets: Vec<Row>,
    /// The whole window, per region (`start` is `from`).
    pub totals: Vec<Row>,
}

/// Why a window cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `tenant`'s use over `window`, per region (only `region` when given).
pub async fn query(
    state: &AppState,
    tenant: &str,
    window: Window,
    region: Option<&str>,
) -> Result<UsageAnswer, QueryError> {
    let Window { from, to, step } = window;
    let start = key(tenant, from, "", "", "");
    let end = key(tenant, to, "", "", "");
    let end = end.trim_end_matches('/');
    let prefix = format!("{USAGE}{tenant}/");
    let mut buckets: BTreeMap<(u64, String), Usage> = BTreeMap::new();
    let mut totals: BTreeMap<String, Usage> = BTreeMap::new();
    let start = start.trim_end_matches('/');
    let read = read_pages(&*state.store, start, end, PAGE, MAX_RECORDS, |kv| {
        let Some((minute, reg, usage)) = parse_record(&kv.key, &kv.value, &prefix) else {
            return;
        };
        if region.is_some_and(|r| r != reg) || !(from..to).contains(&minute) {
            return;
        }
        let bucket = from + (minute - from) / step * step;
        buckets
            .entry((bucket, reg.to_owned()))
            .or_default()
            .add(&usage);
        totals.entry(reg.to_owned()).or_default().add(&usage);
    })
    .await?;
    if read.is_none() {
        return Err(QueryError::Invalid(format!(
            "the window holds more than {MAX_RECORDS} records: ask for a shorter one"
        )));
    }
    if buckets.len() > MAX_ROWS {
        return Err(QueryError::Invalid(format!(
            "more than {MAX_ROWS} buckets: ask for a larger step or a shorter window"
        )));
    }
    Ok(UsageAnswer {
        tenant: tenant.to_owned(),
        from,
        to,
        step,
        buckets: (buckets.iter())
            .map(|((start, reg), u)| Row::new(*start, reg, u))
            .collect(),
        totals: (totals.iter())
            .map(|(reg, u)| Row::new(from, reg, u))
            .collect(),
    })
}

/// Hands every record from `start` to `end` to `each`, read `page` at a time (each
/// answer well under the store's message limit), each page starting just after the last
/// key of the one before; how many, or `None` once more than `max` (then stops).
async fn read_pages(
    store: &dyn Store,
    start: &str,
    end: &str,
    page: usize,
    max: usize,
    mut each: impl FnMut(&crate::store::KeyValue),
) -> Result<Option<usize>, StoreError> {
    let mut next = start.to_owned();
    let mut read = 0usize;
    loop {
        let listing = store.range(&next, end, page).await?;
        read += listing.kvs.len();
        if read > max {
            return Ok(None);
        }
        listing.kvs.iter().for_each(&mut each);
        match listing.kvs.last() {
            Some(last) if listing.kvs.len() == page => next = format!("{}\0", last.key),
            _ => return Ok(Some(read)),
        }
    }
}

/// A record's minute, region and usage, from its key
/// (`<prefix><minute>/<region>/<node>/<boot>`) and value.
fn parse_record<'a>(key: &'a str, value: &[u8], prefix: &str) -> Option<(u64, &'a str, Usage)> {
    let mut parts = key.strip_prefix(prefix)?.split('/');
    let minute = parts.next()?.parse().ok()?;
    let region = parts.next()?;
    Some((minute, region, serde_json::from_slice(value).ok()?))
}

/// The answer as CSV: a header line, then one line per bucket.
pub fn csv(answer: &UsageAnswer) -> String {
    let mut out = String::from(
        "start,region,allocation_minutes,tunnel_minutes,bytes_to_peer,bytes_to_client\n",
    );
    for r in &answer.buckets {
        // Region names are [a-z0-9_-]: nothing to quote.
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            r.start,
            r.region,
            r.allocation_minutes,
            r.tunnel_minutes,
            r.bytes_to_peer,
            r.bytes_to_client
        ));
    }
    out
}

/// Deletes records older than the retention, at most [`SWEEP_BATCH`] per tenant; returns
/// how many.
pub async fn sweep(state: &AppState) -> Result<usize, StoreError> {
    let cutoff = state
        .unix_now()
        .saturating_sub(state.options.usage_retention.as_secs());
    let tenants = tenants_with_usage(&*state.store).await?;
    let mut deleted = 0;
    for tenant in tenants {
        let start = format!("{USAGE}{tenant}/");
        let end = key(&tenant, cutoff - cutoff % 60, "", "", "");
        let old = state
            .store
            .range(&start, end.trim_end_matches('/'), SWEEP_BATCH)
            .await?;
        for kv in &old.kvs {
            // Another replica's sweep may have taken it first.
            if state.store.delete(&kv.key).await? {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Every tenant with usage records (deleted tenants' too: usage outlives them), found in
/// the store itself, one single-key read per tenant, each just past the records of the
/// one before (`usage/<t>0` sorts after every `usage/<t>/…` and before the next tenant's:
/// tenant names hold no character between '/' and '0').
async fn tenants_with_usage(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    let end = format!("{}0", USAGE.trim_end_matches('/'));
    let mut next = USAGE.to_owned();
    let mut tenants = Vec::new();
    loop {
        let listing = store.range(&next, &end, 1).await?;
        let Some(tenant) = (listing.kvs.first())
            .and_then(|kv| kv.key.strip_prefix(USAGE))
            .and_then(|rest| rest.split('/').next())
        else {
            return Ok(tenants);
        };
        next = format!("{USAGE}{tenant}0");
        tenants.push(tenant.to_owned());
    }
}

/// Runs [`sweep`] every [`SWEEP_EVERY`] (the first a minute after start).
pub fn spawn_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            match sweep(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(records = n, "usage records past retention deleted"),
                Err(e) => tracing::warn!("usage retention sweep failed: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_tenant_with_usage_is_found_in_the_store() {
        use crate::store::MemoryStore;
        let memory = MemoryStore::new();
        let store: &dyn Store = &memory;
        assert!(tenants_with_usage(store).await.unwrap().is_empty());
        // Names that sort around each other's records ('-' and '_' either side of '/').
        for tenant in ["acme", "acme-2", "acme0", "acme_b", "b"] {
            for minute in [0u64, 60] {
                let k = key(tenant, minute, "eu", "n1", "00");
                store.put(&k, b"{}".to_vec(), None).await.unwrap();
            }
        }
        store.put("tenants/zz", b"{}".to_vec(), None).await.unwrap();
        let mut found = tenants_with_usage(store).await.unwrap();
        found.sort();
        assert_eq!(found, ["acme", "acme-2", "acme0", "acme_b", "b"]);
    }

    #[tokio::test]
    async fn pages_read_every_record_once_and_stop_past_the_bound() {
        use crate::store::MemoryStore;
        let memory = MemoryStore::new();
        let store: &dyn Store = &memory;
        for minute in 0..10u64 {
            for node in ["a", "b"] {
                let k = key("acme", minute * 60, "eu", node, "00");
                store.put(&k, b"{}".to_vec(), None).await.unwrap();
            }
        }
        store
            .put("usage/acme0", b"{}".to_vec(), None)
            .await
            .unwrap(); // past `end`
        let (start, end) = (key("acme", 0, "", "", ""), key("acme", 600, "", "", ""));
        let (start, end) = (start.trim_end_matches('/'), end.trim_end_matches('/'));
        for page in [1, 3, 7, 20, 21, 100] {
            let mut seen = Vec::new();
            let read = read_pages(store, start, end, page, 1_000, |kv| {
                seen.push(kv.key.clone())
            })
            .await
            .unwrap();
            assert_eq!(read, Some(20), "page {page}");
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, seen, "page {page}: in order, each once");
            assert_eq!(seen.len(), 20);
        }
        let read = read_pages(store, start, end, 3, 19, |_| {}).await.unwrap();
        assert_eq!(read, None, "more than the bound");
    }

    #[test]
    fn keys_sort_by_tenant_then_time() {
        let a = key("acme", 60, "eu", "n1", "ab");
        let b = key("acme", 120, "ap", "n0", "00");
        let c = key("acme-2", 0, "eu", "n1", "ab");
        assert!(a < b, "{a} {b}");
        assert_eq!(a, "usage/acme/000000000060/eu/n1/ab");
        // A window's bounds: every record of the minutes [60, 120) and none other.
        let (start, end) = (key("acme", 60, "", "", ""), key("acme", 120, "", "", ""));
        let (start, end) = (start.trim_end_matches('/'), end.trim_end_matches('/'));
        assert!(start <= a.as_str() && a.as_str() < end && b.as_str() >= end);
        // Another tenant whose name starts alike is outside every window of this one.
        let (all_start, all_end) = (
            key("acme", 0, "", "", ""),
            key("acme", u64::MAX, "", "", ""),
        );
        assert!(!(all_start.as_str()..all_end.as_str()).contains(&c.as_str()));
    }

    #[test]
    fn rows_and_csv() {
        let u = Usage {
            allocation_ms: 90_000,
            tunnel_ms: 1,
            bytes_to_peer: 5,
            bytes_to_client: 6,
        };
        let row = Row::new(60, "eu", &u);
        assert_eq!((row.allocation_minutes, row.tunnel_minutes), (1.5, 0.0));
        let answer = UsageAnswer {
            tenant: "acme".into(),
            from: 60,
            to: 180,
            step: 60,
            buckets: vec![row.clone()],
            totals: vec![row],
        };
        assert_eq!(
            csv(&answer),
            "start,region,allocation_minutes,tunnel_minutes,bytes_to_peer,bytes_to_client\n\
             60,eu,1.5,0,5,6\n"
        );
    }
}
