//! HTTPS to a controller with a self-signed certificate: trusted through the
//! CA file, refused without it, accepted only with the dangerous flag.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Controller, Replica, TOKEN};
use nexrtc_edge_agent::client::{Backoff, ClientConfig};
use nexrtc_edge_agent::tls::Trust;
use nexrtc_edge_agent::{CallError, ControllerClient};
use nexrtc_wire::{
    routes, Endpoint, Load, Registered, Registration, RelayAddresses, RelayState, Transport,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed certificate for 127.0.0.1 and its PEM file.
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem_file: std::path::PathBuf,
}

impl Cert {
    fn new() -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let pem_file = std::env::temp_dir().join(format!(
            "nexrtc-agent-ca-{}-{:?}.pem",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&pem_file, ck.cert.pem()).unwrap();
        Cert {
            der: ck.cert.der().clone(),
            key: ck.key_pair.serialize_der(),
            pem_file,
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.der.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone().into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

fn client(
    url: &nexrtc_edge_agent::Url,
    trust: Trust,
    ca: Option<&std::path::Path>,
) -> ControllerClient {
    ControllerClient::new(&ClientConfig {
        controllers: vec![url.clone()],
        token: TOKEN.into(),
        trust,
        ca_file: ca.map(|p| p.to_owned()),
        request_timeout: Duration::from_secs(2),
        backoff: Backoff::default(),
        local_address: None,
    })
    .unwrap()
}

fn request() -> Registration {
    Registration {
        node: "n1".into(),
        region: "eu-west".into(),
        addresses: RelayAddresses {
            udp: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 3478,
            }),
            ..RelayAddresses::default()
        },
        transports: vec![Transport::Udp],
        load: Load::default(),
        state: RelayState::Active,
        version: String::new(),
    }
}

async fn register(c: &ControllerClient) -> Result<Registered, CallError> {
    c.post(routes::REGISTER, &request(), Duration::from_millis(500))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_controller_is_trusted_only_through_the_ca_file() {
    let cert = Cert::new();
    let controller = Controller::new(100, "s1").await;
    let replica = Replica::start_with(&controller, Some(cert.acceptor())).await;
    assert_eq!(replica.url.scheme(), "https");

    let trusted = client(&replica.url, Trust::Verify, Some(&cert.pem_file));
    let answer = register(&trusted).await.unwrap();
    assert_eq!(
        Some(answer.lease.0),
        controller.lease("eu-west", "n1").await,
        "the lease the relay's record lives under"
    );

    let untrusted = client(&replica.url, Trust::Verify, None);
    match register(&untrusted).await {
        Err(CallError::Unavailable { last, .. }) => {
            assert!(last.contains("certificate"), "{last}")
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }

    let dangerous = client(&replica.url, Trust::DangerAcceptInvalidCerts, None);
    assert!(register(&dangerous).await.is_ok());
    assert_eq!(replica.log.registrations(), 2);
}

#[test]
fn a_bad_ca_file_is_an_error_at_start() {
    let url: nexrtc_edge_agent::Url = "https://127.0.0.1:1/".parse().unwrap();
    let missing = std::path::Path::new("/nonexistent/ca.pem");
    let err = ControllerClient::new(&ClientConfig {
        controllers: vec![url],
        token: TOKEN.into(),
        trust: Trust::Verify,
        ca_file: Some(missing.to_owned()),
        request_timeout: Duration::from_secs(2),
        backoff: Backoff::default(),
        local_address: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
