//! `POST /v1/admin/tenants/{tenant}/rooms/{room}/revocations`: revoke room tokens.
//!
//! Body `{"participant": "bob"}` revokes that participant's tokens for the room; an empty
//! body (or `{}`) every token of the room. "Revoked" means issued at or before now: the
//! record `room_revoked/<tenant>/<room>/<participant or *>` ([`RoomRevocation`]) lives
//! under a lease of the longest room-token TTL ([`MAX_ROOM_TOKEN_TTL`]), after which every
//! token it covers has expired anyway. Every replica mirrors the prefix: a covered token is
//! refused at connect (401 `revoked`), and live connections holding one are closed at once
//! (`error` `revoked`, close code 4002) on whichever replica serves them. Tokens minted
//! after the revocation work: the application decides whom it mints for.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::check_name;
use crate::api::error::ApiError;
use crate::api::extract::{Admin, JsonBody, Path};
use crate::app::AppState;
use crate::credentials::{validate_room_name, MAX_ROOM_NAME_LEN, MAX_ROOM_TOKEN_TTL};
use crate::model::stored::read;
use crate::model::{self, RoomRevocation, TenantRecord, TENANTS};

/// The request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRevokeBody {
    /// Only this participant's tokens (default: everyone's in the room).
    pub participant: Option<String>,
}

fn invalid_name(code: &'static str, what: &str) -> ApiError {
    ApiError::bad_request(
        code,
        format!("{what} must be 1 to {MAX_ROOM_NAME_LEN} characters of A-Z, a-z, 0-9 and _ . -"),
    )
}

/// `POST /v1/admin/tenants/{tenant}/rooms/{room}/revocations`.
pub async fn revoke_room_tokens(
    State(state): State<AppState>,
    _: Admin,
    Path((tenant, room)): Path<(String, String)>,
    JsonBody(body): JsonBody<RoomRevokeBody>,
) -> Result<(StatusCode, Json<RoomRevocation>), ApiError> {
    check_name("tenant", &tenant)?;
    if !validate_room_name(&room) {
        return Err(invalid_name("invalid_room", "room"));
    }
    if let Some(p) = &body.participant {
        if !validate_room_name(p) {
            return Err(invalid_name("invalid_participant", "participant"));
        }
    }
    let tenant_key = format!("{TENANTS}{tenant}");
    if read::<TenantRecord>(&*state.store, &tenant_key)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "tenant {tenant:?} does not exist"
        )));
    }
    let now = state.unix_now();
    let record = RoomRevocation {
        tenant: tenant.clone(),
        room: room.clone(),
        participant: body.participant.clone(),
        revoked_at: now,
        until: now + MAX_ROOM_TOKEN_TTL,
    };
    let lease = (state.store)
        .grant_lease(Duration::from_secs(MAX_ROOM_TOKEN_TTL))
        .await?;
    let key = RoomRevocation::key(&tenant, &room, body.participant.as_deref());
    let revision = (state.store)
        .put(&key, model::encode(&record), Some(lease.id))
        .await?;
    let map = &state.snapshots.room_revoked;
    state.settle(map, |s| s.revision >= revision).await;
    Ok((StatusCode::CREATED, Json(record)))
}
