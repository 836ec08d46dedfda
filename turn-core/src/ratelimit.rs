//! Token buckets with the time passed in.

use std::net::IpAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::config::RateLimit;

/// A token bucket of `rate` tokens per second holding at most `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` tokens if there are enough.
    #[inline]
    pub(crate) fn take(&mut self, n: u64, now: Instant) -> bool {
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

    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000;
        u128::from(self.tokens) + refill >= u128::from(self.burst)
    }
}

/// Per-source-IP limiter for answers sent without authentication, so that the
/// relay cannot be used as a reflection amplifier. The table is bounded: full
/// buckets are forgotten on `prune`, and when the table is full, new sources
/// share one overflow bucket.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    limit: RateLimit,
    buckets: FxHashMap<IpAddr, TokenBucket>,
    overflow: TokenBucket,
    capacity: usize,
}

impl SourceLimiter {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        let burst = u64::from(limit.burst.max(1));
        SourceLimiter {
            limit,
            buckets: FxHashMap::default(),
            overflow: TokenBucket::new(u64::from(limit.per_second) * 16, burst * 16, now),
            capacity: 65_536,
        }
    }

    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.limit.per_second == 0 {
            return true;
        }
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            return bucket.take(1, now);
        }
        if self.buckets.len() >= self.capacity {
            return self.overflow.take(1, now);
        }
        let mut bucket = TokenBucket::new(
            u64::from(self.limit.per_second),
            u64::from(self.limit.burst.max(1)),
            now,
        );
        let ok = bucket.take(1, now);
        self.buckets.insert(ip, bucket);
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

    #[test]
    fn sources_are_limited_separately_and_pruned() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(
            RateLimit {
                per_second: 1,
                burst: 2,
            },
            t0,
        );
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(l.allow(a, t0) && l.allow(a, t0));
        assert!(!l.allow(a, t0));
        assert!(l.allow(b, t0));
        l.prune(t0 + Duration::from_secs(10));
        assert!(l.buckets.is_empty());
    }
}
