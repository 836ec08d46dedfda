//! Per-key token buckets, in memory, per replica.
//!
//! With N replicas behind a load balancer a key gets up to N times its limit; that is the
//! price of keeping the request path free of store round trips (the limit protects the
//! controller and bounds abuse, it is not billing). Buckets live in 16 shards, each a
//! `Mutex<HashMap>` held for a few instructions; a shard that grows past
//! [`MAX_PER_SHARD`] forgets its full (idle) buckets, so memory stays bounded.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::RateLimit;

const SHARDS: usize = 16;
/// Buckets kept per shard before idle ones are dropped.
pub const MAX_PER_SHARD: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller (API key hash, or tenant and user of a client token; the
/// DNS server keys by client network and question).
#[derive(Debug)]
pub struct RateLimiter<K = String> {
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: RandomState,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// Takes one token from `key`'s bucket; `Err(wait)` when empty, `wait` being the time
    /// until a token is back.
    pub fn check<Q>(&self, key: &Q, limit: RateLimit) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let burst = f64::from(limit.burst.max(1));
        let rate = limit.per_second.max(f64::MIN_POSITIVE);
        if map.len() >= MAX_PER_SHARD && !map.contains_key(key) {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        // Look up before inserting: no key allocation on the common path.
        if !map.contains_key(key) {
            let full = Bucket {
                tokens: burst,
                at: now,
            };
            map.insert(key.to_owned(), full);
        }
        let Some(bucket) = map.get_mut(key) else {
            return Ok(());
        };
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill() {
        let rl = RateLimiter::default();
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        for _ in 0..3 {
            assert!(rl.check("k", limit).is_ok());
        }
        let wait = rl.check("k", limit).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(rl.check("other", limit).is_ok(), "buckets are per key");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(rl.check("k", limit).is_ok());
        assert!(rl.check("k", limit).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_forgotten() {
        let rl = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        for i in 0..(SHARDS * MAX_PER_SHARD * 2) {
            let _ = rl.check(&format!("k{i}"), limit);
            if i % 10_000 == 0 {
                tokio::time::advance(Duration::from_secs(2)).await;
            }
        }
        let total: usize = rl
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum();
        assert!(total <= SHARDS * MAX_PER_SHARD, "{total}");
    }
}
