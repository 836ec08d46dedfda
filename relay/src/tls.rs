//! TLS certificates: loaded from PEM files (or self-signed for development) and
//! swapped on reload without touching live connections.
//!
//! Every worker's `rustls::ServerConfig` resolves its certificate through one
//! shared [`CertResolver`]; [`CertResolver::reload`] swaps the certified key
//! behind a lock that only handshakes read, so new handshakes get the new
//! certificate while established connections keep their sessions.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in the file")]
    NoKey { path: PathBuf },
    #[error("{path}: private key unusable or not matching the certificate: {source}")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `--cert` (chain, leaf first) and `--pkey` PEM files, re-read on reload.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated at start for these names (development only; never reloaded).
    SelfSigned { names: Vec<String> },
}

/// The certificate every TLS listener presents, swappable at run time.
pub struct CertResolver {
    source: CertSource,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CertResolver {
    pub fn new(source: CertSource) -> Result<Arc<CertResolver>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(&source, &provider)?;
        Ok(Arc::new(CertResolver {
            source,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    pub fn source(&self) -> &CertSource {
        &self.source
    }

    /// When the certificate in use expires (its leaf's notAfter, unix seconds); `None` if
    /// it cannot be read (it was accepted by rustls, so this does not happen in practice).
    pub fn not_after(&self) -> Option<i64> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        let leaf = current.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// Re-reads the PEM files: `Ok(false)` for a self-signed certificate (kept).
    /// On error the old certificate stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if let CertSource::SelfSigned { .. } = self.source {
            return Ok(false);
        }
        let key = Arc::new(load(&self.source, &self.provider)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(true)
    }

    /// The rustls configuration of the TLS listeners (TLS 1.2 and 1.3, ring).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Loads `source` as a start does (files read, key matching the certificate)
/// and drops it.
pub fn check(source: &CertSource) -> Result<(), TlsError> {
    CertResolver::new(source.clone())?.server_config().map(drop)
}

fn load(source: &CertSource, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    match source {
        CertSource::Files { cert, key } => {
            let chain = read_certs(cert)?;
            let der = read_key(key)?;
            CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::BadKey {
                path: key.clone(),
                source,
            })
        }
        CertSource::SelfSigned { names } => {
            let generated = rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
            let chain = vec![generated.cert.der().clone()];
            let der =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
            CertifiedKey::from_der(chain, der, provider).map_err(TlsError::Config)
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let g = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, g.cert.pem()).unwrap();
        std::fs::write(&key, g.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn leaf(r: &CertResolver) -> Vec<u8> {
        r.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn reload_swaps_and_failed_reload_keeps_old() {
        let dir = std::env::temp_dir().join(format!("nexrtc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = write_pair(&dir, "one.test");
        let r = CertResolver::new(CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        r.server_config().unwrap();
        let first = leaf(&r);

        // A new pair on disk: reload picks it up.
        let (c2, k2) = write_pair(&dir, "two.test");
        std::fs::copy(&c2, &cert).unwrap();
        std::fs::copy(&k2, &key).unwrap();
        assert!(r.reload().unwrap());
        let second = leaf(&r);
        assert_ne!(first, second);

        // A broken key file: reload fails, the old certificate stays.
        std::fs::write(&key, "not a key").unwrap();
        let err = r.reload().unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        assert_eq!(leaf(&r), second);

        // A key of another certificate is refused.
        let (_, k3) = write_pair(&dir, "three.test");
        std::fs::copy(&k3, &key).unwrap();
        assert!(matches!(r.reload().unwrap_err(), TlsError::BadKey { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_expiry_in_use_is_read_and_follows_a_reload() {
        let dir = std::env::temp_dir().join(format!("nexrtc-tls-exp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |year: i32| {
            let mut params = rcgen::CertificateParams::new(vec!["relay.test".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.join("relay.crt"), cert.pem()).unwrap();
            std::fs::write(dir.join("relay.key"), key.serialize_pem()).unwrap();
        };
        write(2030);
        let r = CertResolver::new(CertSource::Files {
            cert: dir.join("relay.crt"),
            key: dir.join("relay.key"),
        })
        .unwrap();
        assert_eq!(r.not_after(), Some(1_893_456_000)); // 2030-01-01T00:00:00Z
        write(2031);
        assert!(r.reload().unwrap());
        assert_eq!(r.not_after(), Some(1_924_992_000)); // 2031-01-01T00:00:00Z
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_signed_for_ip_and_name() {
        let r = CertResolver::new(CertSource::SelfSigned {
            names: vec!["localhost".into(), "127.0.0.1".into()],
        })
        .unwrap();
        assert!(!r.reload().unwrap(), "self-signed certificates are kept");
        assert!(!leaf(&r).is_empty());
    }
}
