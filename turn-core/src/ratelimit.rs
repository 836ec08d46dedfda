//! Token buckets with the time passed in.

use std::net::IpAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::config::{AnswerBudget, ByteRate};

/// A token bucket of `rate` tokens per second holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` tokens if there are enough.
    #[inline]
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        if !elapsed.is_zero() {
            let refill = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
            if refill > 0 {
                self.tokens = self.tokens.saturating_add(refill).min(self.burst);
                self.last = now;
            }
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Returns `n` tokens taken by a [`TokenBucket::take`] that was not used.
    fn give_back(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_add(n).min(self.burst);
    }

    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000;
        u128::from(self.tokens) + refill >= u128::from(self.burst)
    }
}

/// The budget of answers sent without authentication (see
/// [`AnswerBudget`]), so that the relay cannot be used as a reflection
/// amplifier: bytes per source IP and bytes in total. The table of sources is
/// bounded: full buckets are forgotten on `prune`, and when the table is full,
/// new sources share one overflow bucket.
#[derive(Debug)]
pub(crate) struct AnswerLimiter {
    per_source: ByteRate,
    buckets: FxHashMap<IpAddr, TokenBucket>,
    overflow: TokenBucket,
    total: TokenBucket,
    capacity: usize,
}

impl AnswerLimiter {
    pub(crate) fn new(budget: AnswerBudget, now: Instant) -> Self {
        let per_source = budget.per_source;
        AnswerLimiter {
            per_source,
            buckets: FxHashMap::default(),
            overflow: TokenBucket::new(
                per_source.per_second.saturating_mul(16),
                per_source.burst.saturating_mul(16),
                now,
            ),
            total: TokenBucket::new(budget.total.per_second, budget.total.burst, now),
            capacity: 65_536,
        }
    }

    /// Takes `bytes` from the budget of `ip` and from the total; `false`
    /// (nothing taken) when either is short.
    pub(crate) fn allow(&mut self, ip: IpAddr, bytes: u64, now: Instant) -> bool {
        if !self.total.take(bytes, now) {
            return false;
        }
        let ok = if let Some(bucket) = self.buckets.get_mut(&ip) {
            bucket.take(bytes, now)
        } else if self.buckets.len() >= self.capacity {
            self.overflow.take(bytes, now)
        } else {
            let mut bucket =
                TokenBucket::new(self.per_source.per_second, self.per_source.burst, now);
            let ok = bucket.take(bytes, now);
            self.buckets.insert(ip, bucket);
            ok
        };
        if !ok {
            self.total.give_back(bytes);
        }
        ok
    }

    /// Forgets sources whose bucket has refilled (they behave as new ones).
    pub(crate) fn prune(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full_at(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_with_virtual_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert!((0..5).all(|_| b.take(1, t0)));
        assert!(!b.take(1, t0));
        assert!(b.take(1, t0 + Duration::from_millis(100)));
        assert!(!b.take(1, t0 + Duration::from_millis(100)));
        // Never more than the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| b.take(1, later)));
        assert!(!b.take(1, later));
    }

    fn budget(per_source: u64, total: u64) -> AnswerBudget {
        AnswerBudget {
            per_source: ByteRate {
                per_second: per_source,
                burst: per_source,
            },
            total: ByteRate {
                per_second: total,
                burst: total,
            },
        }
    }

    #[test]
    fn sources_are_limited_separately_and_pruned() {
        let t0 = Instant::now();
        let mut l = AnswerLimiter::new(budget(200, 10_000), t0);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(l.allow(a, 100, t0) && l.allow(a, 100, t0));
        assert!(!l.allow(a, 1, t0));
        assert!(l.allow(b, 150, t0));
        // Bytes, not answers: b has 50 left, enough for a small one only.
        assert!(!l.allow(b, 60, t0));
        assert!(l.allow(b, 50, t0));
        l.prune(t0 + Duration::from_secs(10));
        assert!(l.buckets.is_empty());
    }

    #[test]
    fn the_total_caps_every_source_together() {
        let t0 = Instant::now();
        let mut l = AnswerLimiter::new(budget(1_000, 2_500), t0);
        let ips: Vec<IpAddr> = (1..=5u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let sent: u64 = ips
            .iter()
            .map(|ip| (0..10).filter(|_| l.allow(*ip, 100, t0)).count() as u64 * 100)
            .sum();
        assert_eq!(sent, 2_500);
        // A source refused by its own bucket does not use up the total.
        let mut l = AnswerLimiter::new(budget(100, 1_000), t0);
        assert!(l.allow(ips[0], 100, t0));
        assert!((0..20).all(|_| !l.allow(ips[0], 100, t0)));
        assert!((1..5).all(|i| l.allow(ips[i], 100, t0)));
    }
}
