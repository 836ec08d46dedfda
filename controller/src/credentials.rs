//! Secrets the controller mints and checks: API keys, client tokens, TURN REST credentials.
//!
//! * **API keys** are `nxk_` + base64url(32 random bytes). Only SHA-256 (hex) of the whole
//!   key string is stored (`keys/<hex>`); the key is shown once, when created.
//! * **Client tokens** let a browser fetch ICE servers without holding an API key. An app
//!   backend mints one with `POST /v1/client-tokens`; it is
//!   `nxt_` + base64url(payload) + `.` + base64url(tag), where payload is the JSON
//!   `{"v":1,"t":tenant,"u":user,"exp":unix,"iat":unix}` and tag = HMAC-SHA256(tenant's `token_key`,
//!   `"nexrtc-client-token-v1." ‖ base64url(payload)`). The per-tenant `token_key` is
//!   32 random bytes stored in the tenant record (so every replica verifies tokens with
//!   no shared master key in the config, and deleting the tenant voids its tokens). Tokens
//!   live at most [`MAX_TOKEN_TTL`] (10 min, default 5) and only work on
//!   `POST /v1/ice-servers`, for their one user.
//! * **Room tokens** are the same token with one more claim, `"r": room` (minted by
//!   `POST /v1/rooms/{room}/tokens`, up to [`MAX_ROOM_TOKEN_TTL`]): the user is the
//!   participant id, and the token only opens `GET /v1/signal` for that room. One format,
//!   one key, one verifier; a token with a room is refused by the ICE API and a token
//!   without one by signaling.
//! * **TURN credentials** are the TURN REST API convention: username `<expiry>:<tenant>:<user>`, password
//!   [`turn_core::auth::rest_password`] with the tenant's newest secret, exactly what the
//!   relay verifies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of API keys.
pub const KEY_PREFIX: &str = "nxk_";
/// Prefix of client tokens.
pub const TOKEN_PREFIX: &str = "nxt_";
/// Longest client-token lifetime (seconds).
pub const MAX_TOKEN_TTL: u64 = 600;
/// Client-token lifetime when the request gives none (seconds).
pub const DEFAULT_TOKEN_TTL: u64 = 300;
/// Longest room-token lifetime (seconds).
pub const MAX_ROOM_TOKEN_TTL: u64 = 3600;
/// Room-token lifetime when the request gives none (seconds).
pub const DEFAULT_ROOM_TOKEN_TTL: u64 = 600;
/// Longest room name or participant id.
pub const MAX_ROOM_NAME_LEN: usize = 64;
/// Longest `user` part of a TURN username.
pub const MAX_USER_LEN: usize = 128;

const TOKEN_CONTEXT: &[u8] = b"nexrtc-client-token-v1.";

/// `n` random bytes, base64url without padding.
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A short random id (16 hex digits): default user ids, secret ids.
pub fn random_id() -> String {
    format!("{:016x}", rand::rng().next_u64())
}

/// A new API key (shown once).
pub fn new_api_key() -> String {
    format!("{KEY_PREFIX}{}", random_b64(32))
}

/// SHA-256 hex of an API key: its id and its store key.
pub fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Checks the `user` part of a username: 1..=128 of `[A-Za-z0-9._@+=-]` (no `:` or `/`,
/// so usernames split unambiguously and can be store key segments).
pub fn validate_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+=-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "user must be 1 to {MAX_USER_LEN} characters of A-Z, a-z, 0-9 and . _ @ + = -"
        )),
    }
}

/// Checks a room name or participant id: 1..=64 of `[A-Za-z0-9_.-]` (URL-safe as is).
pub fn validate_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_NAME_LEN
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// TURN REST credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub expiry: u64,
}

/// Mints `<expiry>:<tenant>:<user>` signed with `secret`.
pub fn turn_credentials(secret: &str, tenant: &str, user: &str, expiry: u64) -> TurnCredentials {
    let username = format!("{expiry}:{tenant}:{user}");
    let password = turn_core::auth::rest_password(secret.as_bytes(), &username);
    TurnCredentials {
        username,
        password,
        expiry,
    }
}

/// A parsed TURN REST username of our form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Username<'a> {
    pub expiry: u64,
    pub tenant: &'a str,
    pub user: &'a str,
}

/// Splits `<expiry>:<tenant>:<user>`.
pub fn parse_username(username: &str) -> Option<Username<'_>> {
    let mut parts = username.splitn(3, ':');
    let expiry = parts.next()?.parse().ok()?;
    let tenant = parts.next()?;
    let user = parts.next()?;
    Some(Username {
        expiry,
        tenant,
        user,
    })
}

/// What a client token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub v: u8,
    /// Tenant.
    pub t: String,
    /// User (the participant id in a room token).
    pub u: String,
    /// Room (room tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds (room-token revocations cover tokens issued up to a
    /// moment; a token without it counts as issued at 0, i.e. before any revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Why a client token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("malformed client token")]
    Malformed,
    #[error("client token for unknown tenant")]
    UnknownTenant,
    #[error("client token signature is invalid")]
    BadSignature,
    #[error("client token expired")]
    Expired,
}

fn token_tag(token_key: &str, payload_b64: &str) -> Option<Hmac<Sha256>> {
    let key = URL_SAFE_NO_PAD.decode(token_key).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(TOKEN_CONTEXT);
    mac.update(payload_b64.as_bytes());
    Some(mac)
}

/// Signs a client token; `None` if `token_key` is not base64url.
pub fn sign_token(token_key: &str, claims: &TokenClaims) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
    let tag = token_tag(token_key, &payload)?.finalize().into_bytes();
    Some(format!(
        "{TOKEN_PREFIX}{payload}.{}",
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Reads a token's claims without checking them (to find the tenant's key).
pub fn token_claims(token: &str) -> Result<TokenClaims, TokenError> {
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    let (payload, _) = body.split_once('.').ok_or(TokenError::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    match claims.v {
        1 => Ok(claims),
        _ => Err(TokenError::Malformed),
    }
}

/// Verifies a token's signature (constant time) and expiry against `now`.
pub fn verify_token(token: &str, token_key: &str, now: u64) -> Result<TokenClaims, TokenError> {
    let claims = token_claims(token)?;
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    let (payload, tag) = body.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    let mac = token_tag(token_key, payload).ok_or(TokenError::BadSignature)?;
    mac.verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    match claims.exp > now {
        true => Ok(claims),
        false => Err(TokenError::Expired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes() {
        let k = new_api_key();
        assert!(k.starts_with("nxk_"));
        assert_eq!(k.len(), 4 + 43);
        assert_ne!(k, new_api_key());
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn credentials_match_turn_core() {
        let c = turn_credentials("s3cret", "acme", "alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:acme:alice");
        assert_eq!(
            c.password,
            turn_core::auth::rest_password(b"s3cret", "1700000000:acme:alice")
        );
        let u = parse_username(&c.username).expect("parse");
        assert_eq!(
            (u.expiry, u.tenant, u.user),
            (1_700_000_000, "acme", "alice")
        );
    }

    #[test]
    fn user_validation() {
        assert!(validate_user("alice@example.com").is_ok());
        for bad in ["", "a:b", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_sign_verify_expire_and_resist_tampering() {
        let key = random_b64(32);
        let claims = TokenClaims {
            v: 1,
            t: "acme".into(),
            u: "alice".into(),
            r: None,
            exp: 1000,
            iat: Some(900),
        };
        let token = sign_token(&key, &claims).expect("sign");
        assert_eq!(verify_token(&token, &key, 999), Ok(claims.clone()));
        assert_eq!(verify_token(&token, &key, 1000), Err(TokenError::Expired));
        let other = random_b64(32);
        assert_eq!(
            verify_token(&token, &other, 1),
            Err(TokenError::BadSignature)
        );
        // Swap in another payload under the old tag.
        let forged_claims = TokenClaims {
            u: "mallory".into(),
            ..claims
        };
        let forged = sign_token(&other, &forged_claims).expect("sign");
        let tag = token.split_once('.').expect("dot").1;
        let spliced = format!("{}.{tag}", forged.split_once('.').expect("dot").0);
        assert_eq!(
            verify_token(&spliced, &key, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_token("nxt_garbage", &key, 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn room_tokens_carry_their_room_under_the_same_signature() {
        let key = random_b64(32);
        let claims = TokenClaims {
            v: 1,
            t: "acme".into(),
            u: "alice".into(),
            r: Some("standup".into()),
            exp: 1000,
            iat: None,
        };
        let token = sign_token(&key, &claims).expect("sign");
        assert_eq!(verify_token(&token, &key, 1), Ok(claims));
        // A plain client token has no room claim on the wire.
        let plain = TokenClaims {
            r: None,
            ..token_claims(&token).expect("claims")
        };
        let json = serde_json::to_string(&plain).expect("json");
        assert!(!json.contains("\"r\""), "{json}");
    }

    #[test]
    fn room_names() {
        for ok in ["a", "Team.Standup_2-b", &"x".repeat(64)] {
            assert!(validate_room_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a:b", "é", &"x".repeat(65)] {
            assert!(!validate_room_name(bad), "{bad}");
        }
    }
}
