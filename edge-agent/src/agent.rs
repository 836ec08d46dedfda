//! The agent's tasks: [`spawn`] starts them, the returned [`AgentHandle`]
//! aborts them when dropped.
//!
//! * control: register → heartbeat every interval with the load sampled just
//!   before → on 404 `lease_expired` register again at once. A heartbeat that
//!   no replica acknowledges is counted and the next one goes out on time; one
//!   whose load cannot be read is skipped, so a dead relay's lease runs out.
//! * events: once registered, keep the event stream open (any replica,
//!   reconnecting with backoff) and apply what it carries.
//! * probes: every `--probe-interval`, probe the targets the controller named.
//!
//! When the relay stops cleanly, [`AgentHandle::leave`] stops the tasks and tells the
//! controller (`POST /v1/relays/leave` with the lease), so the relay leaves the ICE
//! answers at once instead of when its heartbeats are missed. It tries the replicas in
//! turn for at most [`LEAVE_TIMEOUT`]: a controller that is down delays the exit by no
//! more than that, and the lease's expiry removes the relay then.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde::de::IgnoredAny;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::apply::{Apply, RevocationSet};
use crate::client::{Backoff, CallError, ClientError, ControllerClient};
use crate::config::{clamp_interval, AgentConfig};
use crate::load::LoadSource;
use crate::metric;
use crate::probe::{probe_round, ProbeSettings};
use crate::usage::{Meter, UsageSource};
use nexrtc_metrics::Registry;
use nexrtc_wire::{
    routes, DrainOrder, Event, Heartbeat, HeartbeatAnswer, LeaseId, Leave, ProbeReport,
    ProbeTarget, Registered, Registration, RelayState, Revocations, Secrets, Transport,
};

/// The longest [`AgentHandle::leave`] waits for the controller, over all replicas.
pub const LEAVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What [`AgentHandle::leave`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The controller removed the relay.
    Removed,
    /// The agent held no lease (never registered, or had just lost it): nothing to remove.
    NotRegistered,
    /// The controller no longer knew the lease (removed already, or a newer registration of
    /// this node holds the record).
    AlreadyGone,
    /// No replica answered within [`LEAVE_TIMEOUT`], or one refused: the lease expires.
    Failed,
}

/// What the agent is doing, for the process's status page and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// The lease held now (`None` before registering and after losing it).
    pub lease: Option<LeaseId>,
    pub registrations: u64,
    pub heartbeats_ok: u64,
    pub heartbeats_failed: u64,
    pub stream_connected: bool,
    /// Events received (pings excluded).
    pub events: u64,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the agent needs a tokio runtime")]
    NoRuntime,
    #[error("no udp, tcp or tls address to advertise (--advertise)")]
    NoAddress,
}

/// The running agent. Dropping it stops every task of the agent (without telling the
/// controller: see [`AgentHandle::leave`]).
pub struct AgentHandle {
    tasks: Vec<JoinHandle<()>>,
    status: watch::Receiver<AgentStatus>,
    metrics: Registry,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// This agent's metrics (`nexrtc_agent_*`), to serve or to compose into another
    /// registry.
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// The relay is stopping cleanly: stops the agent's tasks (no registration or
    /// heartbeat goes out after this) and asks the controller to remove the relay now,
    /// trying the replicas in turn for at most [`LEAVE_TIMEOUT`].
    pub async fn leave(self) -> Left {
        for t in &self.tasks {
            t.abort();
        }
        let Some(lease) = self.status.borrow().lease else {
            tracing::info!("leaving: not registered, nothing to remove");
            return Left::NotRegistered;
        };
        let shared = &self.shared;
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        // The last usage first (at most half the time allowed), while the lease holds.
        if let Some(source) = &shared.usage {
            crate::usage::sample(shared, source);
            let half = LEAVE_TIMEOUT / 2;
            if tokio::time::timeout(half, crate::usage::report(shared, half))
                .await
                .is_err()
            {
                tracing::warn!("the last usage report did not finish within {half:?}");
            }
        }
        let body = Leave {
            region: shared.config.region.clone(),
            node: shared.node.clone(),
            lease,
        };
        let left_for_leave = deadline.saturating_duration_since(Instant::now());
        let call = shared
            .client
            .post::<_, IgnoredAny>(routes::LEAVE, &body, left_for_leave);
        let left = match tokio::time::timeout(left_for_leave, call).await {
            Ok(Ok(_)) => {
                tracing::info!(%lease, "left the controller's registry");
                Left::Removed
            }
            Ok(Err(CallError::LeaseExpired)) => {
                tracing::info!(%lease, "leaving: the controller had no record of this lease");
                Left::AlreadyGone
            }
            Ok(Err(e)) => {
                tracing::warn!("could not leave (the lease expires instead): {e}");
                Left::Failed
            }
            Err(_) => {
                tracing::warn!(
                    "could not leave within {LEAVE_TIMEOUT:?} (the lease expires instead)"
                );
                Left::Failed
            }
        };
        let outcome = match left {
            Left::Removed => "ok",
            Left::AlreadyGone => "lease_expired",
            _ => "failed",
        };
        shared
            .metrics
            .counter(metric::LEAVES, &[("outcome", outcome)])
            .increment(1);
        shared.status.send_modify(|s| s.lease = None);
        left
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct Shared {
    pub(crate) client: ControllerClient,
    pub(crate) config: AgentConfig,
    pub(crate) node: String,
    pub(crate) backoff: Backoff,
    pub(crate) apply: Box<dyn Apply>,
    pub(crate) status: watch::Sender<AgentStatus>,
    pub(crate) targets: watch::Sender<Vec<ProbeTarget>>,
    pub(crate) revocations: Mutex<RevocationSet>,
    pub(crate) drain: Mutex<Option<DrainOrder>>,
    pub(crate) metrics: Registry,
    /// The relay's per-tenant running totals, when it counts them (usage metering).
    pub(crate) usage: Option<UsageSource>,
    pub(crate) meter: Mutex<Meter>,
}

/// Starts the agent on the current tokio runtime.
pub fn spawn<L: LoadSource, A: Apply>(
    config: AgentConfig,
    load: L,
    apply: A,
) -> Result<AgentHandle, AgentError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| AgentError::NoRuntime)?;
    // The controller refuses a relay clients cannot reach: fail now, not in a retry loop.
    if !config.addresses().1.iter().any(|t| *t != Transport::Quic) {
        return Err(AgentError::NoAddress);
    }
    let client_config = config.client();
    let usage = load.usage_source();
    let shared = Arc::new(Shared {
        client: ControllerClient::new(&client_config)?,
        node: config.node_name(),
        backoff: client_config.backoff,
        config,
        apply: Box::new(apply),
        status: watch::Sender::new(AgentStatus::default()),
        targets: watch::Sender::new(Vec::new()),
        revocations: Mutex::new(RevocationSet::default()),
        drain: Mutex::new(None),
        metrics: metric::registry(),
        usage,
        meter: Mutex::new(Meter::new()),
    });
    let status = shared.status.subscribe();
    let mut tasks = vec![
        runtime.spawn(control_loop(shared.clone(), load)),
        runtime.spawn(crate::events::events_loop(shared.clone())),
    ];
    if shared.config.probe_interval > 0 {
        tasks.push(runtime.spawn(probe_loop(shared.clone())));
    }
    if let Some(source) = shared.usage.clone() {
        tasks.push(runtime.spawn(crate::usage::usage_loop(shared.clone(), source)));
    }
    let metrics = shared.metrics.clone();
    Ok(AgentHandle {
        tasks,
        status,
        metrics,
        shared,
    })
}

async fn control_loop<L: LoadSource>(shared: Arc<Shared>, mut load: L) {
    loop {
        let (period, ttl) = register(&shared, &mut load).await;
        heartbeat(&shared, &mut load, period, ttl).await;
        shared
            .metrics
            .counter(metric::REREGISTRATIONS, &[])
            .increment(1);
        shared.metrics.gauge(metric::REGISTERED, &[]).set(0.0);
        shared.status.send_modify(|s| s.lease = None);
    }
}

/// Registers (retrying for ever); returns the heartbeat period and lease TTL.
async fn register<L: LoadSource>(shared: &Shared, load: &mut L) -> (Duration, Duration) {
    let budget = shared.client_budget();
    let mut attempt = 0u32;
    loop {
        match load.sample().await {
            Err(e) => tracing::warn!("not registering: {e}"),
            Ok(sample) => {
                let (addresses, transports) = shared.config.addresses();
                let request = Registration {
                    node: shared.node.clone(),
                    region: shared.config.region.clone(),
                    addresses,
                    transports,
                    load: sample.load,
                    state: shared.state(sample.state),
                    version: load.version(),
                };
                let answer =
                    shared
                        .client
                        .post::<_, Registered>(routes::REGISTER, &request, budget);
                match answer.await {
                    Ok(r) => return shared.registered(r),
                    Err(e) => tracing::warn!("registration failed: {e}"),
                }
            }
        }
        tokio::time::sleep(shared.backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Heartbeats until the lease is reported gone.
async fn heartbeat<L: LoadSource>(
    shared: &Shared,
    load: &mut L,
    mut period: Duration,
    mut ttl: Duration,
) {
    let ticker = |period| {
        let mut t = tokio::time::interval_at(Instant::now() + period, period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let mut tick = ticker(period);
    let Some(lease) = shared.status.borrow().lease else {
        return;
    };
    loop {
        tick.tick().await;
        let sample = match load.sample().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("heartbeat skipped: {e}");
                shared
                    .metrics
                    .counter(metric::HEARTBEATS_SKIPPED, &[])
                    .increment(1);
                continue;
            }
        };
        shared
            .metrics
            .counter(metric::HEARTBEATS_SENT, &[])
            .increment(1);
        let beat = Heartbeat {
            region: shared.config.region.clone(),
            node: shared.node.clone(),
            lease,
            load: sample.load,
            state: shared.state(sample.state),
        };
        // Keep trying until the lease would have run out anyway; a replica slower than half
        // a period is hedged on the next, so the lease is renewed within the controllers'
        // miss window (two periods) even when the current replica hangs.
        let budget = ttl.saturating_sub(period).max(shared.client_budget());
        match shared
            .client
            .post_hedged::<_, HeartbeatAnswer>(routes::HEARTBEAT, &beat, budget, period / 2)
            .await
        {
            Ok(answer) => {
                shared
                    .metrics
                    .counter(metric::LEASE_RENEWALS, &[])
                    .increment(1);
                shared.status.send_modify(|s| s.heartbeats_ok += 1);
                if let Some(ms) = answer.heartbeat_interval_ms {
                    let new = clamp_interval(Duration::from_millis(ms));
                    if new != period {
                        period = new;
                        tick = ticker(period);
                    }
                }
                if let Some(secs) = answer.lease_ttl_secs.filter(|s| *s > 0) {
                    ttl = Duration::from_secs(secs);
                }
                if let Some(targets) = answer.probe_targets {
                    shared.targets.send_if_modified(|t| replace(t, targets));
                }
                if answer.state == Some(RelayState::Draining) {
                    shared.drain_ordered(None);
                }
            }
            Err(CallError::LeaseExpired) => {
                tracing::warn!(%lease, "lease expired: registering again");
                return;
            }
            Err(e) => {
                tracing::warn!("heartbeat failed: {e}");
                shared
                    .metrics
                    .counter(metric::HEARTBEATS_FAILED, &[])
                    .increment(1);
                shared.status.send_modify(|s| s.heartbeats_failed += 1);
            }
        }
    }
}

fn replace<T: PartialEq>(slot: &mut T, new: T) -> bool {
    let changed = *slot != new;
    *slot = new;
    changed
}

impl Shared {
    /// Budget of a call that is not a heartbeat: one try per replica.
    pub(crate) fn client_budget(&self) -> Duration {
        let replicas = self.config.controllers.len().max(1) as u32;
        self.config
            .client()
            .request_timeout
            .saturating_mul(replicas + 1)
    }

    fn registered(&self, r: Registered) -> (Duration, Duration) {
        tracing::info!(lease = %r.lease, controller = %self.client.current(), "registered");
        self.metrics
            .counter(metric::REGISTRATIONS, &[])
            .increment(1);
        self.metrics.gauge(metric::REGISTERED, &[]).set(1.0);
        self.apply_event(&Event::Secrets(Secrets {
            tenants: r.tenants,
            default_tenant: None,
        }));
        self.apply_event(&Event::Revocations(Revocations { revoked: r.revoked }));
        self.targets
            .send_if_modified(|t| replace(t, r.probe_targets));
        let period = if r.heartbeat_interval_ms > 0 {
            clamp_interval(Duration::from_millis(r.heartbeat_interval_ms))
        } else {
            self.config.heartbeat_interval()
        };
        let ttl = match r.lease_ttl_secs {
            0 => period * 5,
            secs => Duration::from_secs(secs),
        };
        self.status.send_modify(|s| {
            s.lease = Some(r.lease);
            s.registrations += 1;
        });
        (period, ttl)
    }

    /// The state to report: draining once ordered, whatever the server says.
    fn state(&self, reported: RelayState) -> RelayState {
        let ordered = self
            .drain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if ordered {
            RelayState::Draining
        } else {
            reported
        }
    }
}

async fn probe_loop(shared: Arc<Shared>) {
    let every = Duration::from_secs(shared.config.probe_interval);
    let first = rand::rng().random_range(Duration::ZERO..=every);
    let mut tick = tokio::time::interval_at(Instant::now() + first, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let settings = ProbeSettings {
        count: shared.config.probe_count.max(1),
        ..ProbeSettings::default()
    };
    let targets = shared.targets.subscribe();
    loop {
        tick.tick().await;
        let list = others(&targets.borrow(), &shared.config.region, &shared.node);
        if list.is_empty() {
            continue;
        }
        let report = ProbeReport {
            from_region: shared.config.region.clone(),
            from_node: shared.node.clone(),
            results: probe_round(&list, settings, &shared.metrics).await,
        };
        let sent = shared
            .client
            .post::<_, IgnoredAny>(routes::PROBES, &report, shared.client_budget())
            .await;
        if let Err(e) = sent {
            tracing::warn!("probe report not delivered: {e}");
        }
    }
}

/// The targets that are not this relay itself (never probed, whatever the controller says).
fn others(targets: &[ProbeTarget], region: &str, node: &str) -> Vec<ProbeTarget> {
    (targets.iter())
        .filter(|t| !(t.region == region && t.node == node))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_itself_is_never_a_probe_target() {
        let target = |region: &str, node: &str| ProbeTarget {
            region: region.into(),
            node: node.into(),
            stun: "127.0.0.1:3478".into(),
        };
        let named = [
            target("us-east", "r7"),
            target("eu-west", "relay-1"),
            target("eu-west", "relay-2"),
        ];
        assert_eq!(
            others(&named, "eu-west", "relay-1"),
            [target("us-east", "r7"), target("eu-west", "relay-2")]
        );
    }
}
