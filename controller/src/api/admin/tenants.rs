//! `/v1/admin/tenants…`: tenants, their limits, CORS origins, policy and TURN secrets.
//!
//! **Rotation.** A tenant holds one or two secrets, newest first; the newest signs new
//! credentials and relays accept both. `POST …/secrets` adds a new newest secret and keeps
//! only the one it replaces (an older third one is dropped); once every credential signed
//! with the old secret has expired (the tenant's `max_ttl`), `DELETE …/secrets/{id}`
//! retires it. The last secret cannot be deleted (409 `last_secret`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::check_name;
use crate::api::cors::normalize_origin;
use crate::api::error::ApiError;
use crate::api::extract::{Admin, JsonBody, Path, Query};
use crate::app::AppState;
use crate::credentials::{random_b64, random_id};
use crate::model::stored::{create, list, read, update};
use crate::model::RecordError;
use crate::model::{Limits, Policy, Secret, TenantRecord, MAX_SECRETS, TENANTS};

/// Shortest secret accepted from an operator.
const MIN_SECRET_LEN: usize = 16;

/// A tenant as the admin API shows it (the token-signing key is never shown).
#[derive(Debug, Serialize)]
pub struct TenantView {
    pub name: String,
    pub secrets: Vec<Secret>,
    pub limits: Limits,
    pub cors_origins: Vec<String>,
    pub policy: Policy,
    pub created_at: u64,
}

impl From<TenantRecord> for TenantView {
    fn from(t: TenantRecord) -> Self {
        TenantView {
            name: t.name,
            secrets: t.secrets,
            limits: t.limits,
            cors_origins: t.cors_origins,
            policy: t.policy,
            created_at: t.created_at,
        }
    }
}

/// `POST /v1/admin/tenants` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The first secret (e.g. an existing coturn `static-auth-secret`); random if absent.
    pub secret: Option<String>,
}

/// `PUT /v1/admin/tenants/{tenant}` body: fields left out keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub limits: Option<Limits>,
    pub cors_origins: Option<Vec<String>>,
    pub policy: Option<Policy>,
}

/// `POST /v1/admin/tenants/{tenant}/secrets` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    /// The new secret; random if absent.
    pub value: Option<String>,
}

fn key(name: &str) -> String {
    format!("{TENANTS}{name}")
}

fn secret(value: Option<String>, now: u64) -> Result<Secret, ApiError> {
    let value = match value {
        None => random_b64(32),
        Some(v) if v.len() < MIN_SECRET_LEN || v.chars().any(char::is_control) => {
            return Err(ApiError::invalid_request(format!(
                "a secret needs at least {MIN_SECRET_LEN} characters and no control characters"
            )))
        }
        Some(v) => v,
    };
    Ok(Secret {
        id: random_id(),
        value,
        created_at: now,
    })
}

fn origins(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    list.iter()
        .map(|o| normalize_origin(o).map_err(ApiError::invalid_request))
        .collect()
}

fn check_limits(limits: &Limits) -> Result<(), ApiError> {
    limits.validate().map_err(ApiError::invalid_request)
}

/// Waits until this replica's tenant snapshot has the write.
async fn settle(state: &AppState, revision: i64) {
    let map = &state.snapshots.tenants;
    state.settle(map, |s| s.revision >= revision).await;
}

/// `GET /v1/admin/tenants`.
pub async fn list_tenants(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    let tenants = list::<TenantRecord>(&*state.store, TENANTS).await?;
    Ok(Json(tenants.into_iter().map(|(_, t)| t.into()).collect()))
}

/// `POST /v1/admin/tenants`.
pub async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    check_name("tenant", &body.name)?;
    let limits = body.limits.unwrap_or_default();
    check_limits(&limits)?;
    let now = state.unix_now();
    let record = TenantRecord {
        name: body.name.clone(),
        secrets: vec![secret(body.secret, now)?],
        limits,
        cors_origins: origins(body.cors_origins)?,
        policy: body.policy.unwrap_or_default(),
        token_key: random_b64(32),
        created_at: now,
    };
    let revision = create(&*state.store, &key(&body.name), &record).await?;
    settle(&state, revision).await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// `GET /v1/admin/tenants/{tenant}`.
pub async fn get_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    match read::<TenantRecord>(&*state.store, &key(&name)).await? {
        Some(t) => Ok(Json(t.value.into())),
        None => Err(ApiError::not_found(format!(
            "tenant {name:?} does not exist"
        ))),
    }
}

/// `PUT /v1/admin/tenants/{tenant}`.
pub async fn update_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<Json<TenantView>, ApiError> {
    if let Some(limits) = &body.limits {
        check_limits(limits)?;
    }
    let cors = body.cors_origins.map(origins).transpose()?;
    let (record, revision) = update(&*state.store, &key(&name), |mut t: TenantRecord| {
        if let Some(limits) = &body.limits {
            t.limits = limits.clone();
        }
        if let Some(cors) = &cors {
            t.cors_origins = cors.clone();
        }
        if let Some(policy) = &body.policy {
            t.policy = policy.clone();
        }
        Ok::<_, RecordError>(t)
    })
    .await?;
    settle(&state, revision).await;
    Ok(Json(record.into()))
}

/// `DELETE /v1/admin/tenants/{tenant}`: the tenant's keys and client tokens stop working
/// at once (their tenant is gone); credentials already issued work until relays learn it.
pub async fn delete_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete(&key(&name)).await? {
        return Err(ApiError::not_found(format!(
            "tenant {name:?} does not exist"
        )));
    }
    let map = &state.snapshots.tenants;
    state.settle(map, |s| s.get(&name).is_none()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/tenants/{tenant}/secrets`: rotation (see the module docs).
pub async fn add_secret(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewSecret>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let new = secret(body.value, state.unix_now())?;
    let (record, revision) = update(&*state.store, &key(&name), |mut t: TenantRecord| {
        t.secrets.insert(0, new.clone());
        t.secrets.truncate(MAX_SECRETS);
        Ok::<_, RecordError>(t)
    })
    .await?;
    settle(&state, revision).await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// `DELETE /v1/admin/tenants/{tenant}/secrets/{id}`.
pub async fn delete_secret(
    State(state): State<AppState>,
    _: Admin,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<TenantView>, ApiError> {
    let (record, revision) = update(&*state.store, &key(&name), |mut t: TenantRecord| {
        if !t.secrets.iter().any(|s| s.id == id) {
            return Err(ApiError::not_found(format!("secret {id:?} does not exist")));
        }
        if t.secrets.len() == 1 {
            return Err(ApiError::conflict(
                "last_secret",
                "a tenant needs one secret; add a new one before retiring this one",
            ));
        }
        t.secrets.retain(|s| s.id != id);
        Ok(t)
    })
    .await?;
    settle(&state, revision).await;
    Ok(Json(record.into()))
}

/// The query of `GET /v1/admin/tenants/{tenant}/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Unix seconds (rounded down to the minute); default: an hour before `to`.
    from: Option<u64>,
    /// Unix seconds, exclusive (rounded up to the minute); default: now.
    to: Option<u64>,
    /// Bucket width in seconds, a multiple of 60 (default 60).
    step: Option<u64>,
    /// Only this region.
    region: Option<String>,
    /// `json` (default) or `csv` (as is `Accept: text/csv`).
    format: Option<String>,
}

/// The longest window one usage query covers.
const MAX_USAGE_WINDOW: u64 = 31 * 86_400;

/// `GET /v1/admin/tenants/{tenant}/usage?from&to&step&region&format`: the tenant's use
/// (allocation and tunnel minutes, bytes each way) per region in `step`-wide buckets, as
/// JSON or CSV ([`crate::usage`]). Usage outlives a deleted tenant; a name with neither a
/// tenant nor any usage in the window is 400 `unknown_tenant`.
pub async fn tenant_usage(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    Query(q): Query<UsageQuery>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    check_name("tenant", &name)?;
    let bad = |m: &str| ApiError::invalid_request(m);
    let now = state.unix_now();
    let to = q.to.unwrap_or(now).div_ceil(60) * 60;
    let from = q.from.unwrap_or(to.saturating_sub(3600)) / 60 * 60;
    let step = q.step.unwrap_or(60);
    if from >= to {
        return Err(bad("from must be before to"));
    }
    if to - from > MAX_USAGE_WINDOW {
        return Err(bad(&format!(
            "the window is at most {} days",
            MAX_USAGE_WINDOW / 86_400
        )));
    }
    if step == 0 || step % 60 != 0 {
        return Err(bad("step: a positive multiple of 60 seconds"));
    }
    if let Some(region) = &q.region {
        check_name("region", region)?;
    }
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        None => (headers.get(axum::http::header::ACCEPT))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
        Some(other) => return Err(bad(&format!("format {other:?}: json or csv"))),
    };
    let window = crate::usage::Window { from, to, step };
    let answer = crate::usage::query(&state, &name, window, q.region.as_deref())
        .await
        .map_err(|e| match e {
            crate::usage::QueryError::Invalid(m) => bad(&m),
            crate::usage::QueryError::Store(e) => e.into(),
        })?;
    let known = state
        .snapshots
        .tenants
        .snapshot()
        .entries
        .contains_key(&name);
    if !known && answer.buckets.is_empty() {
        return Err(ApiError::unknown_tenant(&name));
    }
    if csv {
        let headers = [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")];
        return Ok((headers, crate::usage::csv(&answer)).into_response());
    }
    Ok(Json(answer).into_response())
}
