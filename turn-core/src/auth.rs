//! TURN REST API credentials (draft-uberti-behave-turn-rest, coturn's
//! `use-auth-secret`) and stateless nonces.
//!
//! username = `<expiry unix secs>:<tenant>:<user>` (or coturn's `<expiry>:<user>`
//! under the default tenant); password = base64(HMAC-SHA1(tenant secret, username)).
//! The long-term credential key is MD5(username ":" realm ":" password)
//! (RFC 8489 §9.2.2). Each tenant has one or two secrets (rotation); both are
//! always tried, in constant time.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::stats::AuthFailure;
use crate::stun::{long_term_key, Message};

/// Secrets of one tenant, newest first.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantSecrets {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        write!(f, "TenantSecrets({} secrets)", self.secrets.len())
    }
}

/// Why a set of credentials was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("tenant {0:?} has no secret")]
    NoSecrets(String),
    #[error("tenant {0:?} has more than two secrets (one active and one being rotated)")]
    TooManySecrets(String),
    #[error("tenant {0:?} has an empty secret")]
    EmptySecret(String),
    #[error("tenant name {0:?} is empty or contains ':'")]
    BadTenantName(String),
}

/// Every tenant's secrets: the relay's whole credential state, replaced as one
/// value when secrets change (from a file reload or pushed by the controller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    tenants: HashMap<String, TenantSecrets>,
    default_tenant: Option<String>,
}

/// A parsed TURN REST username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestUsername<'a> {
    pub expiry: u64,
    pub tenant: &'a str,
    pub user: &'a str,
}

/// Why a password given in clear was refused ([`Credentials::check_password`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("the username is not <expiry>:<tenant>:<user>")]
    BadUsername,
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("wrong password")]
    Wrong,
}

/// The outcome of a successful authentication.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) key: [u8; 16],
    pub(crate) expiry: u64,
    pub(crate) tenant: String,
    pub(crate) user: String,
}

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `tenant` with one or two secrets, newest first.
    pub fn insert_tenant(
        &mut self,
        tenant: &str,
        secrets: Vec<Vec<u8>>,
    ) -> Result<(), CredentialsError> {
        if tenant.is_empty() || tenant.contains(':') {
            return Err(CredentialsError::BadTenantName(tenant.to_owned()));
        }
        match secrets.len() {
            0 => return Err(CredentialsError::NoSecrets(tenant.to_owned())),
            1 | 2 => {}
            _ => return Err(CredentialsError::TooManySecrets(tenant.to_owned())),
        }
        if secrets.iter().any(|s| s.is_empty()) {
            return Err(CredentialsError::EmptySecret(tenant.to_owned()));
        }
        self.tenants
            .insert(tenant.to_owned(), TenantSecrets { secrets });
        Ok(())
    }

    /// Usernames of coturn's form `<expiry>:<user>` belong to `tenant`.
    pub fn set_default_tenant(&mut self, tenant: &str) {
        self.default_tenant = Some(tenant.to_owned());
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Splits a REST username. `<expiry>:<a>:<rest>` is read as tenant `a` when
    /// `a` is a known tenant, otherwise as user `a:<rest>` of the default tenant,
    /// so coturn usernames whose user part contains ':' keep working. A bare
    /// `<expiry>` (what coturn's own client sends without `-u`) is an empty user
    /// of the default tenant, as coturn accepts it.
    pub fn parse_username<'a>(&'a self, username: &'a str) -> Option<RestUsername<'a>> {
        let (expiry, rest) = username.split_once(':').unwrap_or((username, ""));
        let expiry: u64 = expiry.parse().ok()?;
        if let Some((tenant, user)) = rest.split_once(':') {
            if self.tenants.contains_key(tenant) {
                return Some(RestUsername {
                    expiry,
                    tenant,
                    user,
                });
            }
        }
        Some(RestUsername {
            expiry,
            tenant: self.default_tenant.as_deref()?,
            user: rest,
        })
    }

    /// Checks a TURN REST password given in clear (an HTTP proxy's Basic credentials: the
    /// QUIC relay): it must be base64(HMAC-SHA1(secret, `username`)) for one of the
    /// username's tenant's secrets. Every secret is tried and compared in constant time.
    /// The expiry is the caller's to check against its clock.
    pub fn check_password<'a>(
        &'a self,
        username: &'a str,
        password: &str,
    ) -> Result<RestUsername<'a>, PasswordError> {
        let parsed = self
            .parse_username(username)
            .ok_or(PasswordError::BadUsername)?;
        let tenant = self
            .tenants
            .get(parsed.tenant)
            .ok_or(PasswordError::UnknownTenant)?;
        let mut found = subtle::Choice::from(0);
        for secret in &tenant.secrets {
            found |= rest_password(secret, username)
                .as_bytes()
                .ct_eq(password.as_bytes());
        }
        match bool::from(found) {
            true => Ok(parsed),
            false => Err(PasswordError::Wrong),
        }
    }

    /// Verifies the request's MESSAGE-INTEGRITY against every secret of the
    /// username's tenant. All secrets are tried whatever the outcome, and the
    /// matching key is selected without branching on secret data.
    pub(crate) fn authenticate(
        &self,
        msg: &Message<'_>,
        username: &str,
        realm: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let parsed = self
            .parse_username(username)
            .ok_or(AuthFailure::BadUsername)?;
        let tenant = self
            .tenants
            .get(parsed.tenant)
            .ok_or(AuthFailure::UnknownTenant)?;
        let mut found = subtle::Choice::from(0);
        let mut key = [0u8; 16];
        for secret in &tenant.secrets {
            let candidate = long_term_key(username, realm, &rest_password(secret, username));
            let ok = subtle::Choice::from(u8::from(msg.verify_integrity(&candidate)));
            for (k, c) in key.iter_mut().zip(candidate.iter()) {
                k.conditional_assign(c, ok);
            }
            found |= ok;
        }
        if !bool::from(found) {
            return Err(AuthFailure::BadIntegrity);
        }
        Ok(Authenticated {
            key,
            expiry: parsed.expiry,
            tenant: parsed.tenant.to_owned(),
            user: parsed.user.to_owned(),
        })
    }
}

/// The TURN REST password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Stateless nonces: `<expiry as 16 hex digits><20 hex digits of
/// HMAC-SHA256(key, expiry ‖ client IP)>`. Any worker or replica with the same
/// key validates them; nothing is stored per client.
pub(crate) struct Nonces {
    key: [u8; 32],
}

const NONCE_LEN: usize = 36;

impl Nonces {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Nonces { key }
    }

    fn tag(&self, expiry: u64, ip: IpAddr) -> [u8; 10] {
        let mut out = [0u8; 10];
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return out;
        };
        mac.update(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let full = mac.finalize().into_bytes();
        out.copy_from_slice(&full[..10]);
        out
    }

    pub(crate) fn issue(&self, ip: IpAddr, expiry_unix: u64) -> String {
        let mut s = format!("{expiry_unix:016x}");
        for b in self.tag(expiry_unix, ip) {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Whether `nonce` was issued by us for `ip` and is still fresh at `now_unix`.
    pub(crate) fn is_valid(&self, nonce: &str, ip: IpAddr, now_unix: u64) -> bool {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return false;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return false;
        };
        let mut tag = [0u8; 10];
        for (i, t) in tag.iter_mut().enumerate() {
            let Ok(b) = u8::from_str_radix(&nonce[16 + 2 * i..18 + 2 * i], 16) else {
                return false;
            };
            *t = b;
        }
        let genuine: bool = self.tag(expiry, ip).ct_eq(&tag).into();
        genuine && expiry > now_unix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_coturn() {
        // coturn: base64(hmac-sha1(static-auth-secret, username)); checked
        // against `echo -n 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`.
        assert_eq!(
            rest_password(b"s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn usernames_with_and_without_tenant() {
        let mut c = Credentials::new();
        c.insert_tenant("acme", vec![b"a".to_vec()])
            .expect("tenant");
        c.insert_tenant("default", vec![b"d".to_vec()])
            .expect("tenant");
        c.set_default_tenant("default");
        let u = c.parse_username("100:acme:bob").expect("parse");
        assert_eq!((u.expiry, u.tenant, u.user), (100, "acme", "bob"));
        let u = c.parse_username("100:bob").expect("parse");
        assert_eq!((u.tenant, u.user), ("default", "bob"));
        let u = c.parse_username("100:bob:laptop").expect("parse");
        assert_eq!((u.tenant, u.user), ("default", "bob:laptop"));
        let u = c.parse_username("100").expect("bare expiry");
        assert_eq!((u.expiry, u.tenant, u.user), (100, "default", ""));
        assert!(c.parse_username("soon:bob").is_none());
        assert!(c.parse_username("bob").is_none());
        assert!(c.parse_username("").is_none());
    }

    #[test]
    fn passwords_in_clear_are_checked_against_every_secret() {
        let mut c = Credentials::new();
        c.insert_tenant("acme", vec![b"new".to_vec(), b"old".to_vec()])
            .expect("tenant");
        let name = "100:acme:bob";
        for secret in [&b"new"[..], b"old"] {
            let u = c
                .check_password(name, &rest_password(secret, name))
                .expect("either secret");
            assert_eq!((u.expiry, u.tenant, u.user), (100, "acme", "bob"));
        }
        let wrong = rest_password(b"other", name);
        assert_eq!(c.check_password(name, &wrong), Err(PasswordError::Wrong));
        assert_eq!(c.check_password(name, ""), Err(PasswordError::Wrong));
        // The password of another username does not carry over.
        let bobs = rest_password(b"new", name);
        assert_eq!(
            c.check_password("100:acme:eve", &bobs),
            Err(PasswordError::Wrong)
        );
        // No such tenant, and no default tenant to read it as a user of.
        assert_eq!(
            c.check_password("100:nobody:bob", &bobs),
            Err(PasswordError::BadUsername)
        );
        assert_eq!(
            c.check_password("bob", &bobs),
            Err(PasswordError::BadUsername)
        );
    }

    #[test]
    fn tenant_secret_rules() {
        let mut c = Credentials::new();
        assert!(c.insert_tenant("t", vec![]).is_err());
        assert!(c
            .insert_tenant("t", vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()])
            .is_err());
        assert!(c.insert_tenant("t", vec![Vec::new()]).is_err());
        assert!(c.insert_tenant("a:b", vec![b"1".to_vec()]).is_err());
        assert!(c
            .insert_tenant("t", vec![b"1".to_vec(), b"2".to_vec()])
            .is_ok());
        assert_eq!(format!("{:?}", c.tenants["t"]), "TenantSecrets(2 secrets)");
    }

    #[test]
    fn nonces_are_bound_to_ip_and_expire() {
        let n = Nonces::new([7; 32]);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let nonce = n.issue(ip, 1000);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert!(n.is_valid(&nonce, ip, 999));
        assert!(!n.is_valid(&nonce, ip, 1000), "stale at expiry");
        assert!(!n.is_valid(&nonce, other, 999), "bound to the client IP");
        assert!(
            !Nonces::new([8; 32]).is_valid(&nonce, ip, 999),
            "bound to the key"
        );
        let forged = format!("{:016x}{}", 5000u64, &nonce[16..]);
        assert!(!n.is_valid(&forged, ip, 999), "expiry is authenticated");
        assert!(!n.is_valid("garbage", ip, 0));
        assert!(!n.is_valid("é".repeat(18).as_str(), ip, 0));
    }
}
