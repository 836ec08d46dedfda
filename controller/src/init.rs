//! `nexrtc controller init`: a first controller configuration with fresh keys.
//!
//! The file holds the `[bootstrap]` API keys in clear, so it is created with mode
//! 0600 and never overwritten. The other processes of one machine read their key
//! from it (`nexrtc relay --node-token-file FILE` reads `[bootstrap] node_key`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::credentials::new_api_key;

/// What `init` writes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The address the controller listens on.
    pub listen: std::net::SocketAddr,
    /// The tenant `[bootstrap]` creates (the ice key's).
    pub tenant: String,
    /// The region `[bootstrap]` creates: name, latitude, longitude.
    pub region: (String, f64, f64),
    /// Browser origins allowed for the tenant.
    pub cors_origins: Vec<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            tenant: "acme".to_owned(),
            region: ("eu-west".to_owned(), 53.35, -6.26),
            cors_origins: vec!["http://localhost:3000".to_owned()],
        }
    }
}

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("{0} exists: not overwriting it (remove it, or give another --out)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] crate::ConfigError),
}

/// The configuration text, with three fresh API keys. It passes the same checks
/// as a file given to `--config`.
pub fn config_text(o: &InitOptions) -> Result<String, InitError> {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let origins: Vec<String> = o.cors_origins.iter().map(|s| quote(s)).collect();
    let (region, lat, lon) = &o.region;
    let text = format!(
        "# NexRTC controller configuration, written by `nexrtc controller init`.\n\
         # It holds API keys in clear: keep it private (mode 0600).\n\
         # Every key is described in docs/configuration.md.\n\
         listen = {listen}\n\
         \n\
         # Created at the first start if absent.\n\
         [bootstrap]\n\
         admin_key = {admin}\n\
         node_key = {node}\n\
         ice_key = {ice}\n\
         tenant = {tenant}\n\
         cors_origins = [{origins}]\n\
         \n\
         [[bootstrap.regions]]\n\
         name = {region}\n\
         lat = {lat:?}\n\
         lon = {lon:?}\n",
        listen = quote(&o.listen.to_string()),
        admin = quote(&new_api_key()),
        node = quote(&new_api_key()),
        ice = quote(&new_api_key()),
        tenant = quote(&o.tenant),
        origins = origins.join(", "),
        region = quote(region),
    );
    // Refuse to write what the controller would refuse to start with.
    let file: crate::config::FileConfig =
        toml::from_str(&text).map_err(|source| crate::ConfigError::Parse {
            path: PathBuf::from("(generated)"),
            source,
        })?;
    crate::ControllerConfig::build(crate::ControllerArgs::default(), file)?;
    Ok(text)
}

/// Writes a new configuration to `path` (mode 0600), refusing to overwrite.
pub fn write_config(path: &Path, o: &InitOptions) -> Result<(), InitError> {
    let text = config_text(o)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(path.to_owned()),
            _ => InitError::Write {
                path: path.to_owned(),
                source,
            },
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| InitError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_valid_private_config_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        write_config(&path, &InitOptions::default()).expect("written");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = crate::ControllerConfig::load(crate::ControllerArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("the controller accepts it");
        let b = &config.bootstrap;
        let keys = [&b.admin_key, &b.node_key, &b.ice_key].map(|k| k.clone().expect("key"));
        assert!(keys.iter().all(|k| k.starts_with("nxk_") && k.len() >= 36));
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
        assert_eq!(b.tenant.as_deref(), Some("acme"));
        assert_eq!(b.regions.first().map(|r| r.name.as_str()), Some("eu-west"));

        let before = std::fs::read(&path).expect("read");
        let e = write_config(&path, &InitOptions::default()).expect_err("exists");
        assert!(matches!(e, InitError::Exists(_)), "{e}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "left as it was"
        );
    }

    #[test]
    fn fresh_keys_each_time_and_bad_input_is_refused() {
        let a = config_text(&InitOptions::default()).expect("text");
        let b = config_text(&InitOptions::default()).expect("text");
        assert_ne!(a, b);
        let bad = InitOptions {
            tenant: "no spaces".to_owned(),
            ..InitOptions::default()
        };
        let e = config_text(&bad).expect_err("bad tenant");
        assert!(e.to_string().contains("bootstrap.tenant"), "{e}");
    }
}
