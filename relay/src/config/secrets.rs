//! Tenant secrets (TURN REST API, coturn-compatible): `--static-auth-secret`
//! for the default tenant and/or a secrets file, re-read on SIGHUP. Each tenant
//! has one or two secrets (newest first) so secrets rotate without downtime.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use turn_core::Credentials;

use super::{invalid, parse_file, ConfigError};

/// The tenant that `--static-auth-secret` configures.
pub const STATIC_TENANT: &str = "default";

/// Tenant secrets: `--static-auth-secret` (tenant [`STATIC_TENANT`]) and/or the
/// secrets file:
///
/// ```toml
/// default_tenant = "acme"          # owns coturn-style "<expiry>:<user>" names
/// [tenants.acme]
/// secrets = ["newest", "previous"] # one or two, newest first
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSource {
    pub static_secrets: Vec<String>,
    pub file: Option<PathBuf>,
    /// A controller supplies the secrets: starting with none is allowed (every
    /// Allocate gets 401 until the first push, about one heartbeat).
    pub pushed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    default_tenant: Option<String>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    secrets: SecretList,
}

/// One or two non-empty secrets (checked while parsing, so errors get a line).
struct SecretList(Vec<String>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        match SecretList::from_str_list(v) {
            Ok(l) => Ok(l),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

impl SecretList {
    fn from_str_list(v: Vec<String>) -> Result<SecretList, &'static str> {
        if v.is_empty() || v.len() > 2 {
            return Err("need one or two secrets (newest first)");
        }
        if v.iter().any(|s| s.is_empty()) {
            return Err("a secret is empty");
        }
        Ok(SecretList(v))
    }
}

impl CredentialSource {
    /// Where the secrets come from and how many tenants they make, without the secrets.
    pub fn summary(&self) -> String {
        if self.pushed {
            return "secrets pushed by the controller".to_owned();
        }
        let mut from = Vec::new();
        if !self.static_secrets.is_empty() {
            from.push(format!("--static-auth-secret (tenant {STATIC_TENANT})"));
        }
        if let Some(path) = &self.file {
            from.push(path.display().to_string());
        }
        match self.load() {
            Ok(c) => format!("{} tenants from {}", c.tenant_count(), from.join(" and ")),
            Err(e) => format!("secrets from {}: {e}", from.join(" and ")),
        }
    }

    /// Reads the secrets (again). Called at start and on SIGHUP.
    pub fn load(&self) -> Result<Credentials, ConfigError> {
        let mut creds = Credentials::new();
        let mut default = None;
        if !self.static_secrets.is_empty() {
            SecretList::from_str_list(self.static_secrets.clone())
                .map_err(|m| invalid("static_auth_secret", m))?;
            let secrets = self
                .static_secrets
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();
            creds
                .insert_tenant(STATIC_TENANT, secrets)
                .map_err(|source| ConfigError::Credentials {
                    path: "--static-auth-secret".into(),
                    source,
                })?;
            default = Some(STATIC_TENANT.to_owned());
        }
        if let Some(path) = &self.file {
            let file: SecretsFile = parse_file(path)?;
            let place = |source| ConfigError::Credentials {
                path: path.display().to_string(),
                source,
            };
            let names: Vec<String> = file.tenants.keys().cloned().collect();
            for (tenant, entry) in file.tenants {
                if !self.static_secrets.is_empty() && tenant == STATIC_TENANT {
                    return Err(invalid(
                        "secrets_file",
                        format!(
                            "{}: tenant {STATIC_TENANT:?} is --static-auth-secret's",
                            path.display()
                        ),
                    ));
                }
                let secrets = entry
                    .secrets
                    .0
                    .into_iter()
                    .map(String::into_bytes)
                    .collect();
                creds.insert_tenant(&tenant, secrets).map_err(place)?;
            }
            if let Some(d) = file.default_tenant {
                if !names.contains(&d) {
                    return Err(invalid(
                        "secrets_file",
                        format!("{}: default_tenant {d:?} is not a tenant", path.display()),
                    ));
                }
                default = Some(d);
            }
        }
        if creds.tenant_count() == 0 && !self.pushed {
            return Err(invalid(
                "static_auth_secret",
                "no credentials: set --static-auth-secret or --secrets-file",
            ));
        }
        if let Some(d) = default {
            creds.set_default_tenant(&d);
        }
        Ok(creds)
    }
}
