//! Whether the store answers, measured directly.
//!
//! A snapshot's age says how stale the mirrored data may be, but a frozen etcd (stopped,
//! a hung disk, a lost quorum) can leave a watch open and silent for a while, so the age
//! stays 0 until HTTP/2 pings give up. So every [`PROBE_EVERY`] each replica reads one key
//! from the store (through etcd's leader and a quorum), bounded by the store's own request
//! timeout. [`StoreHealth::answer_age`] is the time since the store last answered;
//! `nexrtc_controller_store_answer_age_seconds` exports it,
//! `nexrtc_controller_store_probes_total{outcome}` counts the probes, and `/readyz` reports
//! it and turns not-ready when it passes `max_snapshot_age`, as for a broken watch. A probe
//! that fails or stalls is also store trouble for the missed-heartbeat check
//! ([`Liveness::trouble`]): no relay is removed while the store does not answer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::liveness::{Liveness, STALL};
use crate::metrics::Metrics;
use crate::store::Store;

/// How often each replica asks the store.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The key the probe reads (never written; reading a missing key costs etcd the same
/// quorum round as any other read).
const PROBE_KEY: &str = "store-health";

/// When the store last answered this replica's probe.
#[derive(Debug, Default)]
pub struct StoreHealth {
    answered: Mutex<Option<Instant>>,
}

impl StoreHealth {
    /// Time since the store last answered (`None` before the first answer).
    pub fn answer_age(&self) -> Option<Duration> {
        let at = *self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        at.map(|at| at.elapsed())
    }

    /// Starts probing `store` every [`PROBE_EVERY`]; a failed or slow probe is store
    /// trouble for `liveness`.
    pub fn spawn(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        liveness: Arc<Liveness>,
        metrics: Metrics,
    ) -> JoinHandle<()> {
        let health = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let asked = Instant::now();
                // The store bounds every call (etcd: its request timeout); this bounds a
                // store that would not.
                let answer = tokio::time::timeout(STALL * 4, store.get(PROBE_KEY)).await;
                let outcome = match answer {
                    Ok(Ok(_)) => {
                        *health
                            .answered
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                        "ok"
                    }
                    Ok(Err(_)) => "error",
                    Err(_) => "timeout",
                };
                if outcome != "ok" || asked.elapsed() >= STALL {
                    liveness.trouble();
                }
                metrics.store_probe(outcome);
            }
        })
    }
}
