//! [`run`]: `nexrtc controller` — store, bootstrap, snapshot, HTTP(S) listener.
//!
//! HTTP and HTTPS (tokio-rustls, ring provider, ALPN h2 + http/1.1) are served by
//! [`crate::http::serve`] with the connection limits and timeouts of `[http]`.

use std::future::Future;
use std::io::BufReader;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use nexrtc_geo::GeoIp;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::app::AppState;
use crate::config::{Bootstrap, ControllerConfig, EtcdTlsFiles, TlsFiles};
use crate::credentials::{key_hash, random_b64, random_id};
use crate::model::{self, KeyRecord, Limits, Policy, Scope, Secret, TenantRecord};
use crate::model::{KEYS, REGIONS, TENANTS};
use crate::store::{EtcdConfig, EtcdStore, EtcdTls, MemoryStore, Store};

/// Runs the controller on `config.listen` until `shutdown` completes.
pub async fn run(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    run_on(config, listener, shutdown).await
}

/// Like [`run`] on a listener the caller bound (e.g. to port 0, to learn the address);
/// `config.listen` is ignored.
pub async fn run_on(
    config: ControllerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve(config, listener, shutdown, Role::Controller).await
}

/// `nexrtc dns`: the relay zone's DNS server as a process of its own, from the same
/// configuration and store as the controller: it reads the registry and answers DNS, and
/// on `listen` serves only `/healthz`, `/readyz` and `/metrics`. It writes nothing to the
/// store (no bootstrap, no signaling registration; it renews no relay lease, so it never
/// removes one). `dns_listen` and `dns_zone` must be set.
pub async fn run_dns(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.dns.is_none() {
        return Err(anyhow!(
            "nothing to serve: set dns_listen and dns_zone (--dns-listen, --dns-zone)"
        ));
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(config, listener, shutdown, Role::Dns).await
}

/// What a process serves from the controller's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The API, signaling, and DNS when configured.
    Controller,
    /// DNS, with health and metrics over HTTP.
    Dns,
}

async fn serve(
    config: ControllerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    role: Role,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut options = config.options.clone();
    if role == Role::Controller && options.signal.advertise_url.is_none() {
        // Reachable by other replicas only when the listener is: multi-replica
        // deployments set `advertise_url`.
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        options.signal.advertise_url = Some(format!("{scheme}://{}", listener.local_addr()?));
    }
    if let Some(path) = &config.geoip_db {
        options.geoip = Some(Arc::new(GeoIp::open(path)?));
    }
    let acceptor = match &config.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let store: Arc<dyn Store> = match config.etcd_endpoints.is_empty() {
        true => {
            tracing::info!("no etcd endpoints: using the embedded in-memory store");
            Arc::new(MemoryStore::new())
        }
        false => {
            let etcd = EtcdConfig {
                endpoints: config.etcd_endpoints.clone(),
                prefix: config.key_prefix.clone(),
                tls: config.etcd_tls.as_ref().map(etcd_tls).transpose()?,
                ..EtcdConfig::default()
            };
            let list = config.etcd_endpoints.join(",");
            let unreachable = |e: crate::store::StoreError| match e {
                crate::store::StoreError::Unavailable(reason) => anyhow!(
                    "cannot reach etcd at {list}: {reason}; is etcd running? (--etcd {list})"
                ),
                other => anyhow!("etcd at {list}: {other}"),
            };
            let etcd = EtcdStore::connect(etcd).await.map_err(unreachable)?;
            etcd.check_reachable().await.map_err(unreachable)?;
            Arc::new(etcd)
        }
    };
    if role == Role::Dns {
        // Not a signaling replica: it registers nowhere.
        options.signal.advertise_url = None;
    }
    let startup = async {
        if role == Role::Controller {
            bootstrap(&*store, &config.bootstrap, options.clock.unix_now()).await?;
        }
        Ok::<_, anyhow::Error>(AppState::start(store.clone(), options).await)
    };
    let state = tokio::time::timeout(config.startup_timeout, startup)
        .await
        .map_err(|_| {
            anyhow!(
                "the store gave no snapshot within {:?}",
                config.startup_timeout
            )
        })??;
    let dns = match &config.dns {
        Some(settings) => Some(
            crate::dns::DnsServer::start(settings.clone(), state.clone())
                .await
                .with_context(|| format!("cannot serve DNS on {}", settings.listen))?,
        ),
        None => None,
    };
    // The DNS process writes nothing; the controller deletes usage past its retention.
    let sweeper = (role == Role::Controller).then(|| crate::usage::spawn_sweeper(state.clone()));
    let app = match role {
        Role::Controller => crate::api::router(state.clone()),
        Role::Dns => crate::api::ops_router(state.clone()),
    };
    let state_for_exit = state.clone();
    let shutdown = async move {
        shutdown.await;
        state.close();
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = acceptor.is_some(),
        "{} listening",
        match role {
            Role::Controller => "controller",
            Role::Dns => "DNS server (health and metrics)",
        }
    );
    let metrics = state_for_exit.metrics.clone();
    crate::http::serve(
        listener,
        acceptor,
        app,
        config.http.clone(),
        metrics,
        shutdown,
    )
    .await;
    if let Some(dns) = dns {
        dns.shutdown().await;
    }
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    // Other replicas take this one's rooms at once rather than after the lease TTL.
    state_for_exit
        .replicas
        .deregister(&*state_for_exit.store)
        .await;
    Ok(())
}

/// The checks of [`run`] that need no socket (no listener, no etcd): the GeoIP
/// database opens, the TLS certificate and key parse and match.
pub fn check_files(config: &ControllerConfig) -> anyhow::Result<()> {
    if let Some(path) = &config.geoip_db {
        GeoIp::open(path)?;
    }
    if let Some(files) = &config.tls {
        tls_acceptor(files)?;
    }
    if let Some(files) = &config.etcd_tls {
        etcd_tls(files)?;
    }
    Ok(())
}

/// Reads and checks the PEM files of TLS to etcd.
pub fn etcd_tls(files: &EtcdTlsFiles) -> anyhow::Result<EtcdTls> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("etcd TLS: cannot read {}", path.display()))
    };
    let certificates = |path: &std::path::Path, pem: &[u8]| -> anyhow::Result<()> {
        let certs = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("etcd TLS: {}: bad PEM", path.display()))?;
        match certs.is_empty() {
            true => Err(anyhow!("etcd TLS: {}: no certificate", path.display())),
            false => Ok(()),
        }
    };
    let ca_pem = read(&files.ca)?;
    certificates(&files.ca, &ca_pem)?;
    let identity = match &files.identity {
        None => None,
        Some(id) => {
            let cert = read(&id.cert)?;
            certificates(&id.cert, &cert)?;
            let key = read(&id.key)?;
            rustls_pemfile::private_key(&mut &key[..])
                .with_context(|| format!("etcd TLS: {}: bad PEM", id.key.display()))?
                .ok_or_else(|| anyhow!("etcd TLS: {}: no private key", id.key.display()))?;
            Some((cert, key))
        }
    };
    Ok(EtcdTls { ca_pem, identity })
}

pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let open = |path: &std::path::Path| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .with_context(|| format!("cannot read {}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", files.cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate", files.cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut open(&files.key)?)
        .with_context(|| format!("{}: bad PEM", files.key.display()))?
        .ok_or_else(|| anyhow!("{}: no private key", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Creates the bootstrap records that do not exist yet (see [`Bootstrap`]).
pub async fn bootstrap(store: &dyn Store, b: &Bootstrap, now: u64) -> anyhow::Result<()> {
    for region in &b.regions {
        let key = format!("{REGIONS}{}", region.name);
        store.create(&key, model::encode(region), None).await?;
    }
    if let Some(name) = &b.tenant {
        let origins = b.cors_origins.iter();
        let tenant = TenantRecord {
            name: name.clone(),
            secrets: vec![Secret {
                id: random_id(),
                value: b.tenant_secret.clone().unwrap_or_else(|| random_b64(32)),
                created_at: now,
            }],
            limits: Limits::default(),
            cors_origins: origins
                .filter_map(|o| crate::api::cors::normalize_origin(o).ok())
                .collect(),
            policy: Policy::default(),
            token_key: random_b64(32),
            created_at: now,
        };
        let created = store
            .create(&format!("{TENANTS}{name}"), model::encode(&tenant), None)
            .await?;
        if created.is_written() {
            tracing::info!(tenant = %name, "bootstrap tenant created");
        }
    }
    let keys = [
        (&b.admin_key, "bootstrap admin", vec![Scope::Admin], None),
        (&b.node_key, "bootstrap node", vec![Scope::Node], None),
        (
            &b.ice_key,
            "bootstrap ice",
            vec![Scope::Ice, Scope::ClientIp],
            b.tenant.clone(),
        ),
    ];
    for (key, name, scopes, tenant) in keys {
        let Some(key) = key else { continue };
        let record = KeyRecord {
            name: name.to_owned(),
            tenant,
            scopes,
            rate_limit: None,
            created_at: now,
        };
        let store_key = format!("{KEYS}{}", key_hash(key));
        store
            .create(&store_key, model::encode(&record), None)
            .await?;
    }
    Ok(())
}
