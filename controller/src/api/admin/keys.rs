//! `/v1/admin/keys…`: API keys. A key is shown once, when created; the store keeps only
//! its SHA-256 (hex), which is also its id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::extract::{Admin, JsonBody, Path};
use crate::app::AppState;
use crate::credentials::{key_hash, new_api_key};
use crate::model::stored::{create, list};
use crate::model::{KeyRecord, RateLimit, Scope, KEYS, TENANTS};

/// A key as listed (without the key itself).
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// SHA-256 hex of the key.
    pub id: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// The answer to a creation: the only time the key is shown.
#[derive(Debug, Serialize)]
pub struct NewKey {
    pub key: String,
    pub id: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// `POST /v1/admin/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub name: String,
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    pub rate_limit: Option<RateLimit>,
}

/// Checks scopes and tenant of a key about to be created.
pub async fn check_key(state: &AppState, key: &KeyRecord) -> Result<(), ApiError> {
    if key.scopes.is_empty() {
        return Err(ApiError::invalid_request("a key needs at least one scope"));
    }
    if key.has(Scope::ClientIp) && !key.has(Scope::Ice) {
        return Err(ApiError::invalid_request("scope client_ip needs scope ice"));
    }
    if let Some(limit) = &key.rate_limit {
        limit.validate().map_err(ApiError::invalid_request)?;
    }
    match &key.tenant {
        None if key.has(Scope::Ice) => Err(ApiError::invalid_request(
            "a key with scope ice needs a tenant",
        )),
        None => Ok(()),
        Some(t) => match state.store.get(&format!("{TENANTS}{t}")).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::unknown_tenant(t)),
        },
    }
}

/// `GET /v1/admin/keys`.
pub async fn list_keys(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = list::<KeyRecord>(&*state.store, KEYS).await?;
    let views = keys.into_iter().map(|(id, record)| KeyView { id, record });
    Ok(Json(views.collect()))
}

/// `POST /v1/admin/keys`: returns the new key, once.
pub async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let mut scopes = body.scopes;
    scopes.sort();
    scopes.dedup();
    let record = KeyRecord {
        name: body.name,
        tenant: body.tenant,
        scopes,
        rate_limit: body.rate_limit,
        created_at: state.unix_now(),
    };
    check_key(&state, &record).await?;
    let key = new_api_key();
    let id = key_hash(&key);
    let revision = create(&*state.store, &format!("{KEYS}{id}"), &record).await?;
    let map = &state.snapshots.keys;
    state.settle(map, |s| s.revision >= revision).await;
    Ok((StatusCode::CREATED, Json(NewKey { key, id, record })))
}

/// `DELETE /v1/admin/keys/{id}`: the key stops working at once on this replica, within a
/// watch round trip on the others.
pub async fn delete_key(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(format!("key {id:?} does not exist")));
    }
    if !state.store.delete(&format!("{KEYS}{id}")).await? {
        return Err(ApiError::not_found(format!("key {id:?} does not exist")));
    }
    let map = &state.snapshots.keys;
    state.settle(map, |s| s.get(&id).is_none()).await;
    Ok(StatusCode::NO_CONTENT)
}
