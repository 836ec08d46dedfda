//! Relay registration and heartbeats (keys with the `node` scope: edge agents). The bodies
//! and answers are the shared protocol types of `nexrtc_wire` ([`Registration`],
//! [`Registered`], [`Heartbeat`], [`HeartbeatAnswer`]); the edge agent uses the same ones.
//!
//! * `POST /v1/relays/register` grants a lease (TTL `lease_ttl`, 5 s by default) and puts
//!   `relays/<region>/<node>` under it. The answer carries the lease id (a decimal string:
//!   etcd lease ids do not fit a JavaScript number), the heartbeat interval, every tenant's
//!   secrets and the current revocations, so a relay can serve as soon as it registered.
//!   Registering again (a restarted relay) moves the record to the new lease and revokes
//!   the old one.
//!   The answer also lists probe targets ([`super::agent::probe_targets`]).
//! * `POST /v1/relays/heartbeat` renews the lease through whichever replica receives it
//!   (etcd holds leases, not replicas, so losing a replica loses no relays). A lease that
//!   is gone answers 404 `lease_expired`: the agent registers again.
//! * `POST /v1/relays/leave` ([`Leave`]): a relay that stops cleanly (drained, drain grace
//!   passed, second signal) asks to be removed at once instead of when its heartbeats are
//!   missed. If `relays/<region>/<node>` still holds the given lease, the lease is revoked —
//!   which deletes the record exactly as an expiry would — and the answer (204) waits
//!   (bounded by `write_wait`) until this replica's view no longer lists the relay, so the
//!   next ICE answer and admin list from it leave it out. A lease the record does not hold
//!   (an older registration of the same node, or a record gone already) removes nothing
//!   and answers 404 `lease_expired`.
//! * A relay silent for `relay_miss_after` (two heartbeats) is removed by the replica that
//!   renewed it last, without waiting for the lease TTL ([`crate::liveness`]).
//!
//! **Write rate.** A heartbeat always renews the lease (a lease keep-alive, which etcd
//! serves in its lessor without a raft write), but rewrites the record only when the load
//! changed materially — the load fraction moved by ≥ 0.1, capacity or fullness changed, or
//! the state changed — or when the stored record is older than `load_refresh` (30 s). With
//! 5,000 relays heartbeating every second that is ~170 record writes/s in steady state
//! instead of 5,000/s, and every replica's ranking rebuild follows those writes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexrtc_wire::{
    Heartbeat, HeartbeatAnswer, Leave, Registered, Registration, TenantSecrets, UsageAnswer,
    UsageReport,
};

use super::agent::probe_targets;
use super::error::ApiError;
use super::extract::{JsonBody, Node};
use crate::app::AppState;
use crate::model::stored::{read, update};
use crate::model::{self, Load, RelayRecord, RelayState, Revocation};
use crate::model::{TenantRecord, Transport};
use crate::store::{LeaseId, Snapshot, StoreError};

/// Smallest load-fraction change that is written through.
const MATERIAL_LOAD_CHANGE: f64 = 0.1;

fn validate(r: &Registration) -> Result<(), ApiError> {
    let bad = ApiError::invalid_request;
    model::validate_name(&r.node).map_err(|e| bad(format!("node: {e}")))?;
    nexrtc_geo::validate_region_name(&r.region).map_err(|e| bad(format!("region: {e}")))?;
    let a = &r.addresses;
    for (name, ep) in [
        ("udp", &a.udp),
        ("tcp", &a.tcp),
        ("tls", &a.tls),
        ("tls_alt", &a.tls_alt),
        ("quic", &a.quic),
    ] {
        if let Some(ep) = ep {
            ep.validate()
                .map_err(|e| bad(format!("addresses.{name}: {e}")))?;
        }
    }
    for t in &r.transports {
        let has = match t {
            Transport::Udp => a.udp.is_some(),
            Transport::Tcp => a.tcp.is_some(),
            Transport::Tls => a.tls.is_some() || a.tls_alt.is_some(),
            Transport::Quic => a.quic.is_some(),
        };
        if !has {
            return Err(bad(format!("transport {t:?} has no address")));
        }
    }
    if !r.transports.iter().any(|t| *t != Transport::Quic) {
        return Err(ApiError::invalid_request(
            "a relay needs at least one of the udp, tcp and tls transports",
        ));
    }
    Ok(())
}

/// Every tenant's secrets, sorted by tenant.
pub(crate) fn tenant_secrets(tenants: &Snapshot<TenantRecord>) -> Vec<TenantSecrets> {
    let mut out: Vec<TenantSecrets> = (tenants.entries.values())
        .map(|t| TenantSecrets {
            name: t.name.clone(),
            secrets: t.secrets.iter().map(|s| s.value.clone()).collect(),
            cut_at_expiry: t.policy.cut_at_expiry,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn lease_ttl_secs(state: &AppState) -> u64 {
    state.options.lease_ttl.as_secs().max(1)
}

fn heartbeat_ms(state: &AppState) -> u64 {
    u64::try_from(state.options.heartbeat_interval.as_millis()).unwrap_or(u64::MAX)
}

/// `POST /v1/relays/register`.
pub async fn register(
    State(state): State<AppState>,
    _: Node,
    JsonBody(body): JsonBody<Registration>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    validate(&body)?;
    if !state
        .snapshots
        .regions
        .snapshot()
        .entries
        .contains_key(&body.region)
    {
        return Err(ApiError::unknown_region(&body.region));
    }
    let key = RelayRecord::key(&body.region, &body.node);
    let previous = read::<RelayRecord>(&*state.store, &key).await?;
    let lease = state.store.grant_lease(state.options.lease_ttl).await?;
    let now = state.unix_now();
    let record = RelayRecord {
        node: body.node,
        region: body.region,
        addresses: body.addresses,
        transports: body.transports,
        load: body.load,
        state: body.state,
        version: body.version,
        registered_at: now,
        updated_at: now,
        lease: lease.id.0,
        drain_deadline: None,
    };
    let (record_region, record_node) = (record.region.clone(), record.node.clone());
    let revision = state
        .store
        .put(&key, model::encode(&record), Some(lease.id))
        .await?;
    state.liveness.renewed(lease.id, lease.ttl);
    if let Some(old) = previous.and_then(|p| p.lease).filter(|l| *l != lease.id) {
        // The record moved to the new lease; the old one holds nothing of ours now.
        state.liveness.forget(old);
        match state.store.revoke_lease(old).await {
            Ok(()) | Err(StoreError::LeaseNotFound) => {}
            Err(e) => tracing::warn!(error = %e, "could not revoke a relay's previous lease"),
        }
    }
    state.metrics.registration("ok");
    state.await_relays(revision).await;
    let revoked = state.snapshots.revoked.snapshot();
    let mut revoked: Vec<Revocation> = revoked
        .entries
        .values()
        .map(|r| Revocation::clone(r))
        .collect();
    revoked.sort_by(|a, b| a.username.cmp(&b.username));
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            lease: nexrtc_wire::LeaseId(lease.id.0),
            lease_ttl_secs: lease.ttl.as_secs(),
            heartbeat_interval_ms: heartbeat_ms(&state),
            tenants: tenant_secrets(&state.snapshots.tenants.snapshot()),
            revoked,
            probe_targets: probe_targets(&state.view(), &record_region, &record_node),
        }),
    ))
}

/// `POST /v1/relays/usage`: stores the report's buckets ([`crate::usage`]) from a relay
/// that holds its registration; 404 `lease_expired` otherwise (the agent keeps the buckets
/// and sends them once registered again).
pub async fn usage(
    State(state): State<AppState>,
    _: Node,
    JsonBody(body): JsonBody<UsageReport>,
) -> Result<Json<UsageAnswer>, ApiError> {
    if let Err(m) = crate::usage::validate(&body) {
        state.metrics.usage_report("invalid");
        return Err(ApiError::invalid_request(m));
    }
    let id = format!("{}/{}", body.region, body.node);
    let holds = match state.view().relays.get(&id) {
        Some(r) => r.lease == body.lease.0,
        // Registered through another replica a moment ago?
        None => {
            let key = RelayRecord::key(&body.region, &body.node);
            let found = read::<RelayRecord>(&*state.store, &key).await;
            found?.is_some_and(|r| r.value.lease == body.lease.0)
        }
    };
    if !holds {
        state.metrics.usage_report(nexrtc_wire::LEASE_EXPIRED);
        return Err(lease_expired());
    }
    match crate::usage::store_report(&state, &body).await {
        Ok(stored) => {
            state.metrics.usage_report("ok");
            state.metrics.usage_values(&stored);
            Ok(Json(UsageAnswer {
                written: stored.written,
            }))
        }
        Err(e) => {
            state.metrics.usage_report("error");
            Err(e.into())
        }
    }
}

fn lease_expired() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        nexrtc_wire::LEASE_EXPIRED,
        "the relay's lease is gone; register again",
    )
}

/// Whether a heartbeat must be written through (see the module docs).
fn material(old: &RelayRecord, load: &Load, state: RelayState, now: u64, refresh: u64) -> bool {
    old.state != state
        || (old.load.fraction() - load.fraction()).abs() >= MATERIAL_LOAD_CHANGE
        || old.load.capacity != load.capacity
        || old.load.is_full() != load.is_full()
        || now >= old.updated_at.saturating_add(refresh)
}

/// `POST /v1/relays/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    _: Node,
    JsonBody(body): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let lease = LeaseId(body.lease.0);
    let renewing = state.liveness.renewing(lease);
    match state.store.keep_alive(lease).await {
        Ok(()) => {
            renewing.answered();
            state.liveness.renewed(lease, state.options.lease_ttl);
        }
        Err(StoreError::LeaseNotFound) => {
            renewing.answered();
            state.liveness.forget(lease);
            state.metrics.heartbeat(nexrtc_wire::LEASE_EXPIRED);
            return Err(lease_expired());
        }
        Err(e) => {
            state.metrics.heartbeat("error");
            return Err(e.into());
        }
    }
    let key = RelayRecord::key(&body.region, &body.node);
    let id = format!("{}/{}", body.region, body.node);
    let known = state.view().relays.get(&id).cloned();
    let current = match known {
        Some(r) => r,
        // Not in this replica's snapshot yet (registered through another replica a moment
        // ago): ask the store.
        None => match read::<RelayRecord>(&*state.store, &key).await? {
            Some(r) => r.value.into(),
            None => {
                state.metrics.heartbeat(nexrtc_wire::LEASE_EXPIRED);
                return Err(lease_expired());
            }
        },
    };
    if current.lease != lease.0 {
        state.liveness.forget(lease);
        state.metrics.heartbeat(nexrtc_wire::LEASE_EXPIRED);
        return Err(lease_expired());
    }
    let wanted = match current.state {
        RelayState::Draining => RelayState::Draining,
        RelayState::Active => body.state,
    };
    let now = state.unix_now();
    let refresh = state.options.load_refresh.as_secs();
    let mut written = false;
    let mut answer_state = wanted;
    if material(&current, &body.load, wanted, now, refresh) {
        let written_record = update(&*state.store, &key, |mut r: RelayRecord| {
            if r.lease != lease.0 {
                return Err(lease_expired());
            }
            r.load = body.load;
            if r.state == RelayState::Active {
                r.state = body.state;
            }
            r.updated_at = now;
            Ok(r)
        })
        .await;
        match written_record {
            Ok((record, _)) => {
                written = true;
                answer_state = record.state;
            }
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                state.metrics.heartbeat(nexrtc_wire::LEASE_EXPIRED);
                return Err(lease_expired());
            }
            Err(e) => {
                state.metrics.heartbeat("error");
                return Err(e);
            }
        }
    }
    state
        .metrics
        .heartbeat(if written { "written" } else { "kept" });
    Ok(Json(HeartbeatAnswer {
        lease_ttl_secs: Some(lease_ttl_secs(&state)),
        heartbeat_interval_ms: Some(heartbeat_ms(&state)),
        state: Some(answer_state),
        written: Some(written),
        probe_targets: None,
    }))
}

/// `POST /v1/relays/leave`: 204 once the relay is removed; 404 `lease_expired` when the
/// record does not hold the lease (nothing is removed).
pub async fn leave(
    State(state): State<AppState>,
    _: Node,
    JsonBody(body): JsonBody<Leave>,
) -> Result<StatusCode, ApiError> {
    let bad = ApiError::invalid_request;
    model::validate_name(&body.node).map_err(|e| bad(format!("node: {e}")))?;
    model::validate_name(&body.region).map_err(|e| bad(format!("region: {e}")))?;
    let lease = LeaseId(body.lease.0);
    let key = RelayRecord::key(&body.region, &body.node);
    // The store, not this replica's view: the record may have moved to a newer lease
    // through another replica a moment ago.
    let current = match read::<RelayRecord>(&*state.store, &key).await {
        Ok(found) => found,
        Err(e) => {
            state.metrics.leave("error");
            return Err(e.into());
        }
    };
    if current.as_ref().and_then(|r| r.lease) != Some(lease) {
        state.metrics.leave(nexrtc_wire::LEASE_EXPIRED);
        return Err(lease_expired());
    }
    // Revoking deletes only the keys attached to this lease: if the node registered again
    // meanwhile, its new record (on its new lease) stays.
    match state.store.revoke_lease(lease).await {
        Ok(()) => {}
        Err(StoreError::LeaseNotFound) => {
            state.liveness.forget(lease);
            state.metrics.leave(nexrtc_wire::LEASE_EXPIRED);
            return Err(lease_expired());
        }
        Err(e) => {
            state.metrics.leave("error");
            return Err(e.into());
        }
    }
    state.liveness.forget(lease);
    state.metrics.leave("ok");
    tracing::info!(region = %body.region, node = %body.node, "relay left");
    let id = format!("{}/{}", body.region, body.node);
    let gone = state
        .snapshots
        .wait_view(|v| v.relays.get(&id).is_none_or(|r| r.lease != lease.0));
    let _ = tokio::time::timeout(state.options.write_wait, gone).await;
    Ok(StatusCode::NO_CONTENT)
}
