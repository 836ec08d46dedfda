//! TLS to etcd: a real etcd serving its client port over TLS and requiring client
//! certificates (`--client-cert-auth`). The store works with the CA and a client
//! certificate; without the certificate, or trusting another CA, every call fails
//! within the request timeout instead of hanging.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nexrtc_controller::store::{EtcdConfig, EtcdStore, EtcdTls, Store, StoreError};
use nexrtc_test_support::etcd::ServerTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use support::Etcd;
use tokio::time::timeout;

/// A CA and what it signed, as PEM.
struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(sans).expect("params");
        p.extended_key_usages = vec![usage];
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "etcd",
        ),
        client: leaf(
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            "nexrtc-controller",
        ),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

async fn store(etcd: &Etcd, tls: EtcdTls) -> EtcdStore {
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: "/nexrtc-test/tls/".to_owned(),
        tls: Some(tls),
        ..EtcdConfig::default()
    };
    EtcdStore::connect(config).await.expect("etcd client")
}

/// A call that must fail (not hang): the handshake or the request is refused.
async fn refused(what: &str, store: &EtcdStore) {
    let result = timeout(Duration::from_secs(10), store.get("k"))
        .await
        .unwrap_or_else(|_| panic!("{what}: the call hung"));
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_a_client_certificate() {
    let dir = std::env::temp_dir().join(format!("nexrtc-etcd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ours = pki("ours");
    let tls = ServerTls {
        cert: write(&dir, "server.crt", &ours.server.0),
        key: write(&dir, "server.key", &ours.server.1),
        client_ca: write(&dir, "ca.crt", &ours.ca_pem),
    };
    let Some(etcd) = Etcd::start_tls(tls) else {
        return;
    };
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );

    let good = EtcdTls {
        ca_pem: ours.ca_pem.clone().into_bytes(),
        identity: Some((
            ours.client.0.clone().into_bytes(),
            ours.client.1.clone().into_bytes(),
        )),
    };
    let s = store(&etcd, good).await;
    s.put("k", b"over TLS".to_vec(), None).await.expect("put");
    let got = s.get("k").await.expect("get").expect("the key");
    assert_eq!(got.value, b"over TLS");
    assert!(
        !format!("{:?}", s).contains("PRIVATE KEY"),
        "the store's Debug holds no key"
    );

    // No client certificate: etcd refuses the handshake.
    let anonymous = EtcdTls {
        ca_pem: ours.ca_pem.clone().into_bytes(),
        identity: None,
    };
    refused(
        "without a client certificate",
        &store(&etcd, anonymous).await,
    )
    .await;

    // Trusting another CA: etcd's certificate is refused by the client.
    let theirs = pki("theirs");
    let wrong_ca = EtcdTls {
        ca_pem: theirs.ca_pem.into_bytes(),
        identity: Some((ours.client.0.into_bytes(), ours.client.1.into_bytes())),
    };
    refused("trusting another CA", &store(&etcd, wrong_ca).await).await;

    // A client certificate of another CA: etcd refuses it.
    let foreign_client = EtcdTls {
        ca_pem: ours.ca_pem.into_bytes(),
        identity: Some((theirs.client.0.into_bytes(), theirs.client.1.into_bytes())),
    };
    refused(
        "with a client certificate of another CA",
        &store(&etcd, foreign_client).await,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
