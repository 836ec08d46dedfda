//! The admin API (keys with the `admin` scope): tenants and their secrets, API keys,
//! regions, relays (list, drain), revocations of TURN usernames and of room tokens.
//!
//! Admin calls are rare, so they read and write the store directly (typed, through
//! [`crate::model::stored`], with compare-and-swap for read-modify-write), then wait briefly until this replica's snapshot shows the write,
//! so that the caller's next request on the same replica sees it.

pub mod audit;
pub mod fleet;
pub mod keys;
pub mod rooms;
pub mod tenants;

use super::error::ApiError;
use crate::model;

/// Checks a name from a path or body (400 `invalid_request`).
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    model::validate_name(name).map_err(|e| ApiError::invalid_request(format!("{what}: {e}")))
}
