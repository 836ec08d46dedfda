//! A real etcd for the controller's tests (`nexrtc_test_support::etcd`: Debian's
//! `etcd-server` on free loopback ports, gone with the test process; a missing etcd fails
//! under `CI=true` and skips the test loudly otherwise), and `EtcdStore`s on it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use nexrtc_controller::store::{EtcdConfig, EtcdStore};
pub use nexrtc_test_support::etcd::Etcd;

/// The etcd shared by every test of this binary (started on first use, never dropped: its
/// watchdog stops it when the process ends), or `None` to skip.
pub async fn shared_etcd() -> Option<&'static Etcd> {
    static SHARED: OnceLock<Option<Etcd>> = OnceLock::new();
    tokio::task::spawn_blocking(|| SHARED.get_or_init(Etcd::start).as_ref())
        .await
        .expect("start etcd")
}

/// A store on the shared etcd under a prefix of its own, so parallel tests do not meet.
pub async fn etcd_store(test: &str) -> Option<EtcdStore> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let etcd = shared_etcd().await?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some(
        store_for(
            etcd,
            &format!("/nexrtc-test/{}-{n}/{test}/", std::process::id()),
        )
        .await,
    )
}

pub async fn store_for(etcd: &Etcd, prefix: &str) -> EtcdStore {
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.to_owned(),
        ..EtcdConfig::default()
    };
    EtcdStore::connect(config).await.expect("etcd client")
}
