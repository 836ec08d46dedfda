//! [`Apply`]: what the agent does with pushed secrets, revocations and drain
//! orders. The in-process relay applies them live (the `nexrtc` binary
//! implements [`Apply`] for it, with [`credentials`] and [`drain_alternate`]);
//! beside coturn the agent only logs them ([`LogOnly`]).
//!
//! The agent calls these from its tasks, never concurrently for one kind of
//! event, and already reduces the controller's full-state events to changes:
//! [`Apply::revoke`] is called once per new revocation, [`Apply::drain`] once
//! per new order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use turn_core::auth::CredentialsError;
use turn_core::Credentials;

use nexrtc_wire::{DrainOrder, Revocations, Secrets};

/// Why pushed secrets were not applied (the relay keeps the ones it has).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("no tenant: refusing to replace the secrets with nothing")]
    NoTenants,
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("default tenant {0:?} is not among the tenants")]
    UnknownDefault(String),
}

/// Applies controller orders to a TURN server.
pub trait Apply: Send + Sync + 'static {
    /// Replaces every tenant's secrets. On error nothing changes.
    fn set_secrets(&self, secrets: &Secrets) -> Result<(), ApplyError>;
    /// Refuses `username` from now until `until_unix`.
    fn revoke(&self, username: &str, until_unix: u64);
    /// Starts draining: no new allocations, live ones continue.
    fn drain(&self, order: &DrainOrder);
}

impl<T: Apply + ?Sized> Apply for Arc<T> {
    fn set_secrets(&self, secrets: &Secrets) -> Result<(), ApplyError> {
        (**self).set_secrets(secrets)
    }
    fn revoke(&self, username: &str, until_unix: u64) {
        (**self).revoke(username, until_unix)
    }
    fn drain(&self, order: &DrainOrder) {
        (**self).drain(order)
    }
}

/// The relay's credential state for `secrets` (checked: one or two non-empty
/// secrets per tenant, newest first; a default tenant that exists). With no
/// default named and a single tenant, that tenant owns coturn-style
/// `<expiry>:<user>` names, so a one-tenant fleet accepts credentials minted
/// the coturn way with its secret.
pub fn credentials(secrets: &Secrets) -> Result<Credentials, ApplyError> {
    if secrets.tenants.is_empty() {
        return Err(ApplyError::NoTenants);
    }
    let mut creds = Credentials::new();
    for tenant in &secrets.tenants {
        let list = tenant
            .secrets
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        creds.insert_tenant(&tenant.name, list)?;
    }
    if let Some(d) = &secrets.default_tenant {
        if !secrets.tenants.iter().any(|t| &t.name == d) {
            return Err(ApplyError::UnknownDefault(d.clone()));
        }
        creds.set_default_tenant(d);
    } else if let [only] = secrets.tenants.as_slice() {
        creds.set_default_tenant(&only.name);
    }
    Ok(creds)
}

/// The ALTERNATE-SERVER a drain order names, as an address. It carries an
/// address, not a name (RFC 8489 §14.15): an alternate given as a host name
/// is logged and dropped (the relay then falls back to `--alternate-server`).
pub fn drain_alternate(order: &DrainOrder) -> Option<SocketAddr> {
    order.alternate.as_deref().and_then(|a| match a.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            tracing::warn!(
                alternate = a,
                "drain order's alternate is not IP:PORT; using --alternate-server"
            );
            None
        }
    })
}

/// Beside a TURN server the agent cannot reach (coturn): log what arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOnly;

impl Apply for LogOnly {
    fn set_secrets(&self, secrets: &Secrets) -> Result<(), ApplyError> {
        credentials(secrets)?;
        tracing::info!(
            tenants = secrets.tenants.len(),
            "secrets received (not applied: standalone agent)"
        );
        Ok(())
    }

    fn revoke(&self, username: &str, until_unix: u64) {
        tracing::info!(
            until_unix,
            "revocation received (not applied: standalone agent): {username}"
        );
    }

    fn drain(&self, order: &DrainOrder) {
        tracing::warn!(
            deadline = ?order.deadline,
            "drain ordered (not applied: standalone agent)"
        );
    }
}

/// Turns full-state revocation lists into the new revocations to apply.
#[derive(Debug, Default)]
pub(crate) struct RevocationSet {
    /// username → until, as applied.
    applied: HashMap<String, u64>,
}

impl RevocationSet {
    /// The revocations of `list` not applied yet (or applied with an earlier
    /// `until`), still in force at `now`; forgets expired ones.
    pub(crate) fn changes(&mut self, list: &Revocations, now: u64) -> Vec<(String, u64)> {
        self.applied.retain(|_, until| *until > now);
        let mut out = Vec::new();
        for r in &list.revoked {
            if r.until <= now {
                continue;
            }
            let known = self.applied.get(&r.username).copied();
            if !matches!(known, Some(u) if u >= r.until) {
                self.applied.insert(r.username.clone(), r.until);
                out.push((r.username.clone(), r.until));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexrtc_wire::{Revocation, TenantSecrets};

    fn secrets(tenants: &[(&str, &[&str])], default: Option<&str>) -> Secrets {
        Secrets {
            tenants: tenants
                .iter()
                .map(|(n, s)| TenantSecrets {
                    name: n.to_string(),
                    secrets: s.iter().map(|x| x.to_string()).collect(),
                    cut_at_expiry: false,
                })
                .collect(),
            default_tenant: default.map(str::to_owned),
        }
    }

    #[test]
    fn credentials_are_checked() {
        let ok = credentials(&secrets(&[("acme", &["new", "old"])], Some("acme"))).unwrap();
        assert_eq!(ok.tenant_count(), 1);
        assert_eq!(ok.parse_username("9:bob").map(|u| u.tenant), Some("acme"));
        assert!(matches!(
            credentials(&secrets(&[], None)),
            Err(ApplyError::NoTenants)
        ));
        assert!(credentials(&secrets(&[("a", &["1", "2", "3"])], None)).is_err());
        assert!(credentials(&secrets(&[("a", &[""])], None)).is_err());
        assert!(credentials(&secrets(&[("a:b", &["x"])], None)).is_err());
        assert!(matches!(
            credentials(&secrets(&[("a", &["x"])], Some("b"))),
            Err(ApplyError::UnknownDefault(_))
        ));
        // One tenant and no default named: it owns coturn-style names.
        let one = credentials(&secrets(&[("acme", &["s"])], None)).unwrap();
        assert_eq!(one.parse_username("9:bob").map(|u| u.tenant), Some("acme"));
        // Several tenants and none named: coturn-style names belong to nobody.
        let two = credentials(&secrets(&[("a", &["x"]), ("b", &["y"])], None)).unwrap();
        assert_eq!(two.parse_username("9:bob").map(|u| u.tenant), None);
    }

    #[test]
    fn revocations_apply_once_and_expire() {
        let list = |v: &[(&str, u64)]| Revocations {
            revoked: v
                .iter()
                .map(|(u, t)| Revocation {
                    tenant: "acme".into(),
                    username: u.to_string(),
                    until: *t,
                    revoked_at: 0,
                })
                .collect(),
        };
        let mut set = RevocationSet::default();
        let first = set.changes(&list(&[("a", 200), ("old", 50)]), 100);
        assert_eq!(first, vec![("a".to_string(), 200)]);
        assert!(set.changes(&list(&[("a", 200)]), 101).is_empty());
        let more = set.changes(&list(&[("a", 300), ("b", 150)]), 102);
        assert_eq!(more, vec![("a".to_string(), 300), ("b".to_string(), 150)]);
        assert!(set.changes(&list(&[]), 400).is_empty());
        assert_eq!(set.applied.len(), 0);
    }
}
