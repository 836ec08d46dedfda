//! `/v1/admin/regions…`, `/v1/admin/relays…`, `/v1/admin/revocations`.
//!
//! **Drain.** Draining rewrites the relay's record with `state: draining` (same lease,
//! compare-and-swap, so a concurrent heartbeat cannot undo it): the relay leaves every ICE
//! answer at the next view rebuild, and its agent learns the order at once from its event
//! stream (or from its next heartbeat answer). An optional body `{"deadline_secs": N}` sets
//! a deadline N seconds from now (1 s to 7 days) at which the relay exits even if clients
//! remain; without one the relay's own `--drain-grace` applies. Drain orders stick until
//! the relay registers again.
//!
//! **Revocation.** `POST /v1/admin/revocations {"username"}` stores
//! `revoked/<tenant>/<username>` under a lease ending at the username's expiry, so the
//! record disappears by itself when the credential would have expired anyway.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::check_name;
use crate::api::error::ApiError;
use crate::api::extract::{query_param, Admin, JsonBody, Path};
use crate::app::AppState;
use crate::credentials::parse_username;
use crate::model::stored::{list, read, update};
use crate::model::RecordError;
use crate::model::{self, Region, RelayRecord, RelayState, Revocation, TenantRecord};
use crate::model::{REGIONS, RELAYS, REVOKED, TENANTS};

/// etcd's longest lease (`MaxLeaseTTL`, 9e9 s ≈ 285 years).
const MAX_LEASE_SECS: u64 = 9_000_000_000;

/// `PUT /v1/admin/regions/{region}` body (the name comes from the path).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionBody {
    pub lat: f64,
    pub lon: f64,
    #[serde(default = "one")]
    pub score_multiplier: f64,
}

fn one() -> f64 {
    1.0
}

/// `GET /v1/admin/regions`.
pub async fn list_regions(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<Region>>, ApiError> {
    let regions = list::<Region>(&*state.store, REGIONS).await?;
    Ok(Json(regions.into_iter().map(|(_, r)| r).collect()))
}

/// `GET /v1/admin/regions/{region}`.
pub async fn get_region(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<Region>, ApiError> {
    match read::<Region>(&*state.store, &format!("{REGIONS}{name}")).await? {
        Some(r) => Ok(Json(r.value)),
        None => Err(ApiError::not_found(format!(
            "region {name:?} does not exist"
        ))),
    }
}

/// `PUT /v1/admin/regions/{region}`: creates or replaces.
pub async fn put_region(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RegionBody>,
) -> Result<Json<Region>, ApiError> {
    let region =
        Region::new(name.clone(), body.lat, body.lon).with_multiplier(body.score_multiplier);
    region
        .validate()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    check_name("region", &name)?;
    let revision = state
        .store
        .put(&format!("{REGIONS}{name}"), model::encode(&region), None)
        .await?;
    state.await_regions(revision).await;
    Ok(Json(region))
}

/// `DELETE /v1/admin/regions/{region}`: its relays stay registered but are no longer
/// offered (ranking ignores relays of unknown regions).
pub async fn delete_region(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete(&format!("{REGIONS}{name}")).await? {
        return Err(ApiError::not_found(format!(
            "region {name:?} does not exist"
        )));
    }
    let wait = state.snapshots.wait_view(|v| !v.ranker.knows_region(&name));
    let _ = tokio::time::timeout(state.options.write_wait, wait).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A relay as listed.
#[derive(Debug, Serialize)]
pub struct RelayView {
    /// `<region>/<node>`: the id drain orders and ICE explanations use.
    pub id: String,
    #[serde(flatten)]
    pub record: RelayRecord,
    /// `load.fraction()`: the higher of allocations/capacity and CPU.
    pub load_fraction: f64,
}

/// `GET /v1/admin/relays[?region=…]`: from this replica's snapshot.
pub async fn list_relays(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Json<Vec<RelayView>> {
    let region = query_param(query.as_deref(), "region");
    let view = state.view();
    let mut relays: Vec<RelayView> = (view.relays.values())
        .filter(|r| region.is_none_or(|want| want == r.region))
        .map(|r| RelayView {
            id: format!("{}/{}", r.region, r.node),
            record: RelayRecord::clone(r),
            load_fraction: r.load.fraction(),
        })
        .collect();
    relays.sort_by(|a, b| {
        (&a.record.region, &a.record.node).cmp(&(&b.record.region, &b.record.node))
    });
    Json(relays)
}

/// The answer of a drain order.
#[derive(Debug, Serialize)]
pub struct Drained {
    /// `<region>/<node>` of each relay now draining.
    pub drained: Vec<String>,
}

/// Longest drain deadline an operator may set (7 days).
const MAX_DRAIN_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/admin/relays/…/drain` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    /// Seconds from now until the relay exits even with clients left.
    pub deadline_secs: Option<u64>,
}

impl DrainBody {
    /// The deadline in Unix seconds.
    fn deadline(&self, state: &AppState) -> Result<Option<u64>, ApiError> {
        match self.deadline_secs {
            None => Ok(None),
            Some(secs) if (1..=MAX_DRAIN_SECS).contains(&secs) => Ok(Some(state.unix_now() + secs)),
            Some(_) => Err(ApiError::invalid_request(format!(
                "deadline_secs must be from 1 to {MAX_DRAIN_SECS}"
            ))),
        }
    }
}

async fn drain_one(
    state: &AppState,
    region: &str,
    node: &str,
    deadline: Option<u64>,
) -> Result<i64, ApiError> {
    let key = RelayRecord::key(region, node);
    let (_, revision) = update(&*state.store, &key, |mut r: RelayRecord| {
        r.state = RelayState::Draining;
        if deadline.is_some() {
            r.drain_deadline = deadline;
        }
        Ok::<_, RecordError>(r)
    })
    .await?;
    Ok(revision)
}

/// `POST /v1/admin/relays/{region}/{node}/drain`.
pub async fn drain_relay(
    State(state): State<AppState>,
    _: Admin,
    Path((region, node)): Path<(String, String)>,
    JsonBody(body): JsonBody<DrainBody>,
) -> Result<Json<Drained>, ApiError> {
    let deadline = body.deadline(&state)?;
    let revision = drain_one(&state, &region, &node, deadline).await?;
    state.await_relays(revision).await;
    Ok(Json(Drained {
        drained: vec![format!("{region}/{node}")],
    }))
}

/// `POST /v1/admin/relays/{region}/drain`: every relay of the region.
pub async fn drain_region(
    State(state): State<AppState>,
    _: Admin,
    Path(region): Path<String>,
    JsonBody(body): JsonBody<DrainBody>,
) -> Result<Json<Drained>, ApiError> {
    let deadline = body.deadline(&state)?;
    let relays = list::<RelayRecord>(&*state.store, &format!("{RELAYS}{region}/")).await?;
    let mut drained = Vec::new();
    let mut last = 0;
    for (node, record) in relays {
        if record.state == RelayState::Draining && deadline.is_none() {
            drained.push(format!("{region}/{node}"));
            continue;
        }
        match drain_one(&state, &region, &node, deadline).await {
            Ok(revision) => {
                last = last.max(revision);
                drained.push(format!("{region}/{node}"));
            }
            // Its lease ended meanwhile: nothing left to drain.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    state.await_relays(last).await;
    Ok(Json(Drained { drained }))
}

/// `POST /v1/admin/revocations` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A TURN username `<expiry>:<tenant>:<user>`.
    pub username: String,
}

/// `GET /v1/admin/revocations`.
pub async fn list_revocations(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<Revocation>>, ApiError> {
    let revoked = list::<Revocation>(&*state.store, REVOKED).await?;
    Ok(Json(revoked.into_iter().map(|(_, r)| r).collect()))
}

/// `POST /v1/admin/revocations`: relays refuse the username until it expires.
pub async fn revoke(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<(StatusCode, Json<Revocation>), ApiError> {
    let bad = || ApiError::bad_request("invalid_username", "expected <expiry>:<tenant>:<user>");
    let parsed = parse_username(&body.username).ok_or_else(bad)?;
    if parsed.user.is_empty() || body.username.contains('/') || body.username.len() > 512 {
        return Err(bad());
    }
    if read::<TenantRecord>(&*state.store, &format!("{TENANTS}{}", parsed.tenant))
        .await?
        .is_none()
    {
        return Err(ApiError::unknown_tenant(parsed.tenant));
    }
    let now = state.unix_now();
    if parsed.expiry <= now {
        return Err(ApiError::bad_request(
            "already_expired",
            "this username has expired: relays refuse it already",
        ));
    }
    let record = Revocation {
        tenant: parsed.tenant.to_owned(),
        username: body.username.clone(),
        until: parsed.expiry,
        revoked_at: now,
    };
    let lease = state
        .store
        .grant_lease(Duration::from_secs(
            (parsed.expiry - now).min(MAX_LEASE_SECS),
        ))
        .await?;
    let key = model::revocation_key(parsed.tenant, &body.username);
    let revision = state
        .store
        .put(&key, model::encode(&record), Some(lease.id))
        .await?;
    let map = &state.snapshots.revoked;
    state.settle(map, |s| s.revision >= revision).await;
    Ok((StatusCode::CREATED, Json(record)))
}
