//! Usage metering, the agent's half (the wire format and its guarantees are in
//! [`nexrtc_wire::usage`]): every second the relay's running per-tenant totals are read
//! and what they grew by goes into the bucket of the current minute ([`Meter`]); every
//! [`REPORT_INTERVAL`] the buckets not yet stored, and the one still filling, are sent
//! (`POST /v1/relays/usage`, in reports of at most [`MAX_REPORT_VALUES`] values). A bucket
//! whose minute had ended when it was sent is forgotten once the controller stored it;
//! until then it stays, so a controller that is away loses nothing (up to [`MAX_KEPT`]
//! minutes, the oldest dropped and counted past that). A relay that stops cleanly sends
//! a last report before it leaves ([`crate::AgentHandle::leave`]); one killed outright
//! loses at most what it counted since its last report.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use nexrtc_wire::usage::{MAX_REPORT_VALUES, REPORT_INTERVAL};
use nexrtc_wire::{routes, Usage, UsageAnswer, UsageMinute, UsageReport};
use rand::Rng as _;
use tokio::time::MissedTickBehavior;

use crate::agent::Shared;
use crate::client::CallError;
use crate::events::unix_now;
use crate::metric;

/// Each tenant's running totals since the relay started.
pub type UsageSource = Arc<dyn Fn() -> BTreeMap<String, Usage> + Send + Sync>;

/// Minutes of buckets kept at most while the controller cannot take them (a day).
pub const MAX_KEPT: usize = 1440;

/// How often the running totals are read (the precision of a minute's edges).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Per-minute buckets not yet stored by the controller.
#[derive(Debug)]
pub struct Meter {
    boot: String,
    /// The running totals at the last reading.
    last: BTreeMap<String, Usage>,
    /// The latest minute a reading went to: a clock stepped back does not reopen an
    /// earlier (maybe stored and forgotten) minute.
    minute: u64,
    buckets: BTreeMap<u64, BTreeMap<String, Usage>>,
    /// Minutes dropped past [`MAX_KEPT`].
    pub dropped: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

impl Meter {
    /// A meter for a relay that started now, with running totals at zero.
    pub fn new() -> Meter {
        Meter {
            boot: format!("{:016x}", rand::rng().random::<u64>()),
            last: BTreeMap::new(),
            minute: 0,
            buckets: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// This relay process's id.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// Adds what `totals` grew by since the last reading to the minute of `unix_secs`.
    pub fn sample(&mut self, unix_secs: u64, totals: BTreeMap<String, Usage>) {
        self.minute = self.minute.max(unix_secs / 60 * 60);
        for (tenant, now) in totals {
            let grew = now.since(self.last.get(&tenant).unwrap_or(&Usage::default()));
            if !grew.is_zero() {
                let bucket = self.buckets.entry(self.minute).or_default();
                bucket.entry(tenant.clone()).or_default().add(&grew);
            }
            self.last.insert(tenant, now);
        }
        while self.buckets.len() > MAX_KEPT {
            self.buckets.pop_first();
            self.dropped += 1;
        }
    }

    /// The minute readings go to now.
    pub fn minute(&self) -> u64 {
        self.minute
    }

    /// The buckets to send, oldest first, in reports of at most [`MAX_REPORT_VALUES`]
    /// values.
    pub fn pending(&self) -> Vec<Vec<UsageMinute>> {
        let mut reports: Vec<Vec<UsageMinute>> = Vec::new();
        let mut values = MAX_REPORT_VALUES; // full: start a new report
        for (minute, tenants) in &self.buckets {
            for (tenant, usage) in tenants {
                if values == MAX_REPORT_VALUES {
                    reports.push(Vec::new());
                    values = 0;
                }
                let report = reports.last_mut().expect("pushed above");
                if report.last().is_none_or(|m| m.minute != *minute) {
                    report.push(UsageMinute {
                        minute: *minute,
                        tenants: BTreeMap::new(),
                    });
                }
                let m = report.last_mut().expect("pushed above");
                m.tenants.insert(tenant.clone(), *usage);
                values += 1;
            }
        }
        reports
    }

    /// The controller stored `sent`: forgets its values of minutes that had ended before
    /// `open` (the minute readings went to when it was sent; later readings only go there
    /// or later, so those values were final).
    pub fn stored(&mut self, sent: &[UsageMinute], open: u64) {
        for m in sent.iter().filter(|m| m.minute < open) {
            if let Some(bucket) = self.buckets.get_mut(&m.minute) {
                for tenant in m.tenants.keys() {
                    bucket.remove(tenant);
                }
                if bucket.is_empty() {
                    self.buckets.remove(&m.minute);
                }
            }
        }
    }
}

/// Reads `source` into the meter now.
pub(crate) fn sample(shared: &Shared, source: &UsageSource) {
    let totals = source();
    let mut meter = shared.meter.lock().unwrap_or_else(PoisonError::into_inner);
    let dropped = meter.dropped;
    meter.sample(unix_now(), totals);
    let newly = meter.dropped - dropped;
    drop(meter);
    if newly > 0 {
        (shared.metrics)
            .counter(metric::USAGE_MINUTES_DROPPED, &[])
            .increment(newly);
    }
}

/// Sends what the meter holds, report after report, within `budget` each; stops at the
/// first failure (what is left goes next time). `true` if everything was stored.
pub(crate) async fn report(shared: &Shared, budget: Duration) -> bool {
    let Some(lease) = shared.status.borrow().lease else {
        return false;
    };
    let (reports, open, boot) = {
        let meter = shared.meter.lock().unwrap_or_else(PoisonError::into_inner);
        (meter.pending(), meter.minute(), meter.boot().to_owned())
    };
    for minutes in reports {
        let body = UsageReport {
            region: shared.config.region.clone(),
            node: shared.node.clone(),
            lease,
            boot: boot.clone(),
            minutes,
        };
        let outcome = match (shared.client)
            .post::<_, UsageAnswer>(routes::USAGE, &body, budget)
            .await
        {
            Ok(_) => {
                let mut meter = shared.meter.lock().unwrap_or_else(PoisonError::into_inner);
                meter.stored(&body.minutes, open);
                "ok"
            }
            Err(CallError::LeaseExpired) => "lease_expired",
            Err(e) => {
                tracing::warn!("usage report failed (kept for the next one): {e}");
                "failed"
            }
        };
        (shared.metrics)
            .counter(metric::USAGE_REPORTS, &[("outcome", outcome)])
            .increment(1);
        if outcome != "ok" {
            return false;
        }
    }
    true
}

/// Reads the totals every second and reports every [`REPORT_INTERVAL`].
pub(crate) async fn usage_loop(shared: Arc<Shared>, source: UsageSource) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut since_report = Duration::ZERO;
    loop {
        tick.tick().await;
        sample(&shared, &source);
        since_report += SAMPLE_EVERY;
        if since_report >= REPORT_INTERVAL {
            since_report = Duration::ZERO;
            report(&shared, shared.client_budget()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(v: &[(&str, u64)]) -> BTreeMap<String, Usage> {
        (v.iter())
            .map(|(t, b)| {
                let u = Usage {
                    allocation_ms: b * 10,
                    bytes_to_peer: *b,
                    ..Usage::default()
                };
                (t.to_string(), u)
            })
            .collect()
    }

    #[test]
    fn growth_goes_to_the_minute_it_was_read_in() {
        let mut m = Meter::new();
        assert_eq!(m.boot().len(), 16);
        m.sample(600, totals(&[("a", 5)]));
        m.sample(630, totals(&[("a", 8), ("b", 1)]));
        m.sample(660, totals(&[("a", 8), ("b", 4)]));
        // A clock stepped back: still the latest minute.
        m.sample(650, totals(&[("a", 9), ("b", 4)]));
        let reports = m.pending();
        assert_eq!(reports.len(), 1);
        let minutes = &reports[0];
        assert_eq!(minutes.len(), 2);
        assert_eq!((minutes[0].minute, minutes[1].minute), (600, 660));
        assert_eq!(minutes[0].tenants["a"].bytes_to_peer, 8);
        assert_eq!(minutes[0].tenants["a"].allocation_ms, 80);
        assert_eq!(minutes[0].tenants["b"].bytes_to_peer, 1);
        assert_eq!(minutes[1].tenants["a"].bytes_to_peer, 1);
        assert_eq!(minutes[1].tenants["b"].bytes_to_peer, 3);
        // Stored while minute 660 was open: 600 is forgotten, 660 kept and still grows.
        m.stored(minutes, 660);
        m.sample(670, totals(&[("a", 12), ("b", 4)]));
        let left = m.pending();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].len(), 1);
        assert_eq!(left[0][0].minute, 660);
        assert_eq!(left[0][0].tenants["a"].bytes_to_peer, 4);
    }

    #[test]
    fn reports_are_bounded_and_buckets_kept_are_too() {
        let mut m = Meter::new();
        let many: Vec<(String, u64)> = (0..MAX_REPORT_VALUES + 5)
            .map(|i| (format!("t{i}"), 1))
            .collect();
        let refs: Vec<(&str, u64)> = many.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        m.sample(60, totals(&refs));
        let reports = m.pending();
        assert_eq!(reports.len(), 2);
        let count = |r: &Vec<UsageMinute>| r.iter().map(|m| m.tenants.len()).sum::<usize>();
        assert_eq!(count(&reports[0]), MAX_REPORT_VALUES);
        assert_eq!(count(&reports[1]), 5);
        let mut m = Meter::new();
        for i in 0..(MAX_KEPT as u64 + 3) {
            m.sample(i * 60, totals(&[("a", i + 1)]));
        }
        assert_eq!(m.dropped, 3);
        assert_eq!(m.buckets.len(), MAX_KEPT);
    }
}
