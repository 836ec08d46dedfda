//! Who may open a tunnel: the network's TURN REST credentials, given as
//! `Proxy-Authorization: Basic base64(username:password)` (RFC 7617, RFC 9110 §11.7.1).
//!
//! The username is the TURN REST one (`<expiry>:<tenant>:<user>`) and so contains colons;
//! the password (base64 of an HMAC) never does, so the pair splits at the *last* colon.
//! The check is the TURN one ([`Credentials::check_password`]: every secret of the tenant,
//! constant time), then the expiry against the clock and the revocations pushed by the
//! controller. The credentials and revocations are replaced live, as the TURN workers'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use turn_core::{Credentials, PasswordError};

/// The relay's current credentials and revocations, shared by every connection.
#[derive(Debug)]
pub struct Access {
    credentials: RwLock<Arc<Credentials>>,
    /// Username → refused until (unix seconds).
    revoked: Mutex<HashMap<String, u64>>,
}

/// A user let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub tenant: String,
    pub user: String,
    pub expiry: u64,
}

/// Why a request was refused (all 407 with `Proxy-Authenticate`, RFC 9110 §11.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no Proxy-Authorization")]
    Missing,
    #[error("Proxy-Authorization is not Basic base64(username:password)")]
    Malformed,
    #[error("the credentials are wrong")]
    Wrong,
    #[error("the credentials expired")]
    Expired,
    #[error("the credentials were revoked")]
    Revoked,
}

impl Denied {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Malformed => "malformed",
            Denied::Wrong => "wrong",
            Denied::Expired => "expired",
            Denied::Revoked => "revoked",
        }
    }
}

impl Access {
    pub fn new(credentials: Arc<Credentials>) -> Arc<Access> {
        Arc::new(Access {
            credentials: RwLock::new(credentials),
            revoked: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces every tenant's secrets (new tunnels only; open ones keep running, as TURN
    /// allocations do).
    pub fn set_credentials(&self, credentials: Arc<Credentials>) {
        *self
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner) = credentials;
    }

    /// Refuses `username` until `until_unix` (entries past it are dropped on the next one).
    pub fn revoke(&self, username: &str, until_unix: u64, now_unix: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        revoked.retain(|_, until| *until > now_unix);
        revoked.insert(username.to_owned(), until_unix);
    }

    /// Checks a `Proxy-Authorization` value at `now_unix`.
    pub fn check(&self, header: Option<&[u8]>, now_unix: u64) -> Result<User, Denied> {
        let header = header.ok_or(Denied::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| Denied::Malformed)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(Denied::Malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Denied::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| Denied::Malformed)?;
        let pair = String::from_utf8(decoded).map_err(|_| Denied::Malformed)?;
        let (username, password) = pair.rsplit_once(':').ok_or(Denied::Malformed)?;
        let credentials = Arc::clone(
            &self
                .credentials
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let parsed = credentials
            .check_password(username, password)
            .map_err(|e| match e {
                PasswordError::BadUsername => Denied::Malformed,
                _ => Denied::Wrong,
            })?;
        if parsed.expiry < now_unix {
            return Err(Denied::Expired);
        }
        let revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        if revoked.get(username).is_some_and(|until| *until > now_unix) {
            return Err(Denied::Revoked);
        }
        Ok(User {
            tenant: parsed.tenant.to_owned(),
            user: parsed.user.to_owned(),
            expiry: parsed.expiry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turn_core::auth::rest_password;

    fn basic(username: &str, password: &str) -> Vec<u8> {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        format!("Basic {token}").into_bytes()
    }

    fn access() -> Arc<Access> {
        let mut c = Credentials::new();
        c.insert_tenant("acme", vec![b"s3cret".to_vec()]).unwrap();
        Access::new(Arc::new(c))
    }

    #[test]
    fn turn_rest_credentials_let_in_until_expiry_or_revocation() {
        let a = access();
        let name = "2000:acme:alice";
        let good = basic(name, &rest_password(b"s3cret", name));
        let user = a.check(Some(&good), 1000).expect("let in");
        assert_eq!(
            (user.tenant.as_str(), user.user.as_str(), user.expiry),
            ("acme", "alice", 2000)
        );
        assert_eq!(a.check(Some(&good), 2001), Err(Denied::Expired));
        a.revoke(name, 1500, 1000);
        assert_eq!(a.check(Some(&good), 1200), Err(Denied::Revoked));
        assert!(a.check(Some(&good), 1600).is_ok(), "the revocation ended");
        // Rotated away: the old password no longer works.
        let mut rotated = Credentials::new();
        rotated
            .insert_tenant("acme", vec![b"next".to_vec()])
            .unwrap();
        a.set_credentials(Arc::new(rotated));
        assert_eq!(a.check(Some(&good), 1000), Err(Denied::Wrong));
    }

    #[test]
    fn malformed_headers_are_refused_not_panicked_on() {
        let a = access();
        assert_eq!(a.check(None, 0), Err(Denied::Missing));
        for bad in [
            &b""[..],
            b"Basic",
            b"Bearer abc",
            b"Basic !!!",
            b"Basic YWJj",
            b"\xff\xfe",
            b"Basic  ",
        ] {
            assert_eq!(a.check(Some(bad), 0), Err(Denied::Malformed), "{bad:?}");
        }
        assert_eq!(
            a.check(Some(&basic("2000:acme:alice", "nope")), 0),
            Err(Denied::Wrong)
        );
        assert_eq!(
            a.check(Some(&basic("alice", "nope")), 0),
            Err(Denied::Malformed)
        );
    }
}
