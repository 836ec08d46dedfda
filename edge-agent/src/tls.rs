//! TLS for the controller connection: rustls on the ring provider (never
//! aws-lc), the platform's roots plus an optional CA file, and — only when the
//! operator says so by name — no verification at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {0} holds no PEM certificate")]
    EmptyCa(PathBuf),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How the controller's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The platform's root certificates, plus those of `ca_file` if given
    /// (dev controllers use a self-signed certificate: pass it as the CA file).
    #[default]
    Verify,
    /// Accept any certificate. Anyone on the path can then read the node token
    /// and the tenant secrets: for throwaway test setups only.
    DangerAcceptInvalidCerts,
}

/// The rustls client configuration for the controller connection.
pub fn client_config(trust: &Trust, ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Verify => {
            let extra = match ca_file {
                Some(path) => read_certs(path)?,
                None => Vec::new(),
            };
            Arc::new(rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra, provider,
            )?)
        }
        Trust::DangerAcceptInvalidCerts => {
            tracing::warn!(
                "TLS certificate verification of the controller is OFF \
                 (--danger-accept-invalid-certs): the node token and tenant secrets are exposed"
            );
            Arc::new(FixedVerdict {
                provider,
                accept: true,
            })
        }
    };
    let mut config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// For plain-HTTP clients (a local metrics endpoint): any TLS handshake fails.
pub(crate) fn http_only_config() -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(FixedVerdict {
        provider: provider.clone(),
        accept: false,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |source| TlsError::ReadCa {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::EmptyCa(path.to_owned()));
    }
    Ok(certs)
}

/// Accepts any certificate (`accept`, checking handshake signatures so the
/// peer at least holds the presented key) or none.
#[derive(Debug)]
struct FixedVerdict {
    provider: Arc<CryptoProvider>,
    accept: bool,
}

impl ServerCertVerifier for FixedVerdict {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.accept {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("TLS is not used here".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
