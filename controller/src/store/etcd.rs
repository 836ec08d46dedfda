//! [`EtcdStore`]: the [`Store`](super::Store) API over etcd v3 (crate `etcd-client`).
//!
//! Every call is bounded by [`EtcdConfig::request_timeout`] on top of the gRPC channel's
//! connect timeout, so a dead or partitioned etcd yields [`StoreError::Unavailable`] quickly
//! instead of hanging the caller. The channel reconnects by itself: once etcd is back, the
//! next call works again (a watch that broke must be re-established by the caller, which
//! sees it end with `Unavailable`). HTTP/2 keep-alive pings detect a silently dead connection
//! under a long-lived watch.
//!
//! Mapping: `get`/`list` are linearizable ranges; `create` and `compare_and_swap` are one
//! txn each (compare `create_revision == 0` / `mod_revision == expected`, then put, else get);
//! `keep_alive` opens a keep-alive stream and sends one request (an answer with TTL 0 means
//! the lease is gone); `time_to_live` reads a lease's remaining TTL without renewing it; watches use `start_revision` with a prefix
//! range, and a response with `compact_revision` set (or a cancellation) ends the stream
//! with [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions,
};
use etcd_client::{PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream};
use tonic::Code;

use super::{ttl_secs, Backend, DEFAULT_PREFIX};
use super::{KeyValue, Lease, LeaseId, Listing, Outcome, StoreError, Watch, WatchEvent};

/// Largest gRPC response accepted (a full listing of thousands of relay records).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://10.0.0.1:2379`; requests are balanced over them.
    pub endpoints: Vec<String>,
    /// Prefix prepended to every key (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on every request (including the start of a watch).
    pub request_timeout: Duration,
    /// HTTP/2 ping interval (a missing answer within the same time drops the connection).
    pub keep_alive_interval: Duration,
    /// TLS to etcd (`https://` endpoints); `None`: plain HTTP/2.
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd, as PEM: the CA that signed etcd's server certificates, and the client
/// certificate chain and key presented to etcd when it requires one.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for EtcdTls {
    // Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(2),
            tls: None,
        }
    }
}

/// The etcd-backed store (cheap to clone).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Sets up the client. Does not need etcd to be up: connections are made on demand, so a
    /// controller can start (and serve nothing yet) while etcd is still coming up.
    pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(config.keep_alive_interval, config.keep_alive_interval)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let options = match &config.tls {
            None => options,
            Some(tls) => {
                let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some((cert, key)) = &tls.identity {
                    t = t.identity(Identity::from_pem(cert, key));
                }
                options.with_tls(t)
            }
        };
        let connect = Client::connect(&config.endpoints, Some(options));
        let client = call(config.request_timeout, "connect", connect).await?;
        Ok(EtcdStore {
            client,
            prefix: config.prefix,
            timeout: config.request_timeout,
        })
    }

    /// One read, to learn at start whether etcd answers at all.
    pub async fn check_reachable(&self) -> Result<(), StoreError> {
        let prefix = self.prefix.clone();
        self.resend("get", || {
            let (mut kv, prefix) = (self.kv(), prefix.clone());
            async move { kv.get(prefix, None).await }
        })
        .await
        .map(drop)
    }

    /// The underlying client, for what the [`Store`](super::Store) API does not cover
    /// (compaction, maintenance). Its keys are absolute: add [`EtcdStore::prefix`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The prefix of every key this store touches.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        call(self.timeout, what, request).await
    }

    /// [`EtcdStore::call`] for a request that can be built again: when the member the
    /// client chose refused the connection (it died; the client keeps it in its
    /// rotation until it notices), the request certainly never reached etcd, so it is
    /// sent again — the client picks another member — within the same time limit. Any
    /// other failure (a timeout, "leader changed") may have been applied and is not
    /// resent.
    async fn resend<T, Fut>(
        &self,
        what: &str,
        mut request: impl FnMut() -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut resent = 0;
        loop {
            match tokio::time::timeout_at(deadline, request()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) if resent < MAX_RESENDS && never_sent(&e) => {
                    resent += 1;
                    tracing::debug!(what, error = %causes(&e), "an etcd member refused the connection: sending again");
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
                Ok(Err(e)) => return Err(map_error(e)),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "etcd {what} timed out after {:?}",
                        self.timeout
                    )))
                }
            }
        }
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        convert(&self.prefix, kv)
    }

    /// The keys a range read answered, and the revision it was read at.
    fn listing(&self, response: &etcd_client::GetResponse) -> Result<Listing, StoreError> {
        let kvs = (response.kvs().iter())
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing {
            kvs,
            revision: revision(response.header())?,
        })
    }
}

async fn call<T>(
    timeout: Duration,
    what: &str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd {what} timed out after {timeout:?}"
        ))),
    }
}

/// How often one request is sent again after refused connections (one per dead member
/// of a 5-member cluster, and one more).
const MAX_RESENDS: u32 = 3;

/// Pause before sending again, so the client sees the refused connection first.
const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// Whether the request certainly never reached etcd: the connection to the member was
/// refused (an `io::Error` of kind `ConnectionRefused` in the error's causes, or its
/// words where the transport only kept the text).
fn never_sent(error: &etcd_client::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = e.source();
    }
    causes(error).contains("Connection refused")
}

/// Sorts etcd-client errors into what the caller can act on.
fn map_error(error: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match error {
        E::GRpcStatus(status) => match status.code() {
            Code::NotFound if status.message().contains("lease not found") => {
                StoreError::LeaseNotFound
            }
            Code::OutOfRange if status.message().contains("compacted") => {
                StoreError::Compacted { revision: 0 }
            }
            // Connection refused/reset, no leader, server-side timeouts; `Unknown` is what a
            // stream torn down by a dying server looks like.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown => StoreError::Unavailable(causes(&status)),
            _ => StoreError::Other(status.to_string()),
        },
        E::LeaseKeepAliveError(message) if message.contains("lease not found") => {
            StoreError::LeaseNotFound
        }
        E::TransportError(_)
        | E::IoError(_)
        | E::WatchError(_)
        | E::LeaseKeepAliveError(_)
        | E::EndpointError(_) => StoreError::Unavailable(causes(&error)),
        other => StoreError::Other(other.to_string()),
    }
}

/// An error and its causes in words, outermost first, each once: "tcp connect error:
/// Connection refused (os error 111)" rather than tonic's debug dump of the chain.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = match e.downcast_ref::<tonic::Status>() {
            Some(status) => status.message().to_owned(),
            None => e.to_string(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn strip(prefix: &str, key: &[u8]) -> Result<String, StoreError> {
    let relative = key
        .strip_prefix(prefix.as_bytes())
        .ok_or_else(|| StoreError::Other(format!("etcd returned a key outside {prefix:?}")))?;
    String::from_utf8(relative.to_vec())
        .map_err(|_| StoreError::Other(format!("non-UTF-8 key under {prefix:?}")))
}

fn convert(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: strip(prefix, kv.key())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Other("etcd response without header".to_owned()))
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|LeaseId(id)| PutOptions::new().with_lease(id))
}

impl EtcdStore {
    /// One txn: if `compare` holds put `value`, else read the key back.
    async fn put_if(
        &self,
        key: &str,
        compare: Compare,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(full.clone(), value, put_options(lease))])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .resend("txn", || {
                let (mut kv, txn) = (self.kv(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(Outcome::Written {
                revision: revision(response.header())?,
            });
        }
        let mut current = None;
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                current = get.kvs().first().map(|kv| self.key_value(kv)).transpose()?;
            }
        }
        Ok(Outcome::Conflict { current })
    }
}

impl Backend for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let full = self.full(key);
        let response = self
            .resend("get", || {
                let (mut kv, full) = (self.kv(), full.clone());
                async move { kv.get(full, None).await }
            })
            .await?;
        response
            .kvs()
            .first()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let full = self.full(prefix);
        let response = self
            .resend("list", || {
                let (mut kv, full) = (self.kv(), full.clone());
                async move { kv.get(full, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        self.listing(&response)
    }

    async fn range(&self, start: &str, end: &str, limit: usize) -> Result<Listing, StoreError> {
        // etcd reads a reversed range as "from start to the end of the keyspace", and a
        // limit of 0 as none; ours are empty (asked as a count of one key, for the revision).
        let empty = start >= end || limit == 0;
        let (full, end) = (self.full(start), self.full(end));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let response = self
            .resend("range", || {
                let (mut kv, full, end) = (self.kv(), full.clone(), end.clone());
                let options = match empty {
                    true => GetOptions::new().with_count_only(),
                    false => GetOptions::new().with_range(end).with_limit(limit),
                };
                async move { kv.get(full, Some(options)).await }
            })
            .await?;
        self.listing(&response)
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        let full = self.full(key);
        let answer = self
            .resend("put", || {
                let (mut kv, full, value) = (self.kv(), full.clone(), value.clone());
                async move { kv.put(full, value, put_options(lease)).await }
            })
            .await?;
        revision(answer.header())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let full = self.full(key);
        let response = self
            .resend("delete", || {
                let (mut kv, full) = (self.kv(), full.clone());
                async move { kv.delete(full, None).await }
            })
            .await?;
        Ok(response.deleted() > 0)
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        let compare = Compare::create_revision(self.full(key), CompareOp::Equal, 0);
        self.put_if(key, compare, value, lease).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Outcome, StoreError> {
        let compare = Compare::mod_revision(self.full(key), CompareOp::Equal, expected);
        self.put_if(key, compare, value, lease).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let response = self
            .resend("lease grant", || {
                let mut leases = self.client.lease_client();
                async move { leases.grant(ttl_secs(ttl), None).await }
            })
            .await?;
        if !response.error().is_empty() {
            return Err(StoreError::Other(format!(
                "lease grant: {}",
                response.error()
            )));
        }
        let ttl = Duration::from_secs(response.ttl().unsigned_abs());
        Ok(Lease {
            id: LeaseId(response.id()),
            ttl,
        })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        // etcd-client's `keep_alive` opens the stream, renews once and reads the answer,
        // failing with "lease not found" when its TTL is 0: one renewal per call.
        // (`map_error` turns that into `LeaseNotFound`.)
        self.resend("lease keep-alive", || {
            let mut leases = self.client.lease_client();
            async move { leases.keep_alive(lease.0).await }
        })
        .await
        .map(drop)
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let answer = self
            .resend("lease time-to-live", || {
                let mut leases = self.client.lease_client();
                async move { leases.time_to_live(lease.0, None).await }
            })
            .await?;
        // etcd: "the lease will expire in under TTL+1 seconds"; -1 when it is gone.
        match u64::try_from(answer.ttl()) {
            Ok(secs) => Ok(Duration::from_secs(secs + 1)),
            Err(_) => Err(StoreError::LeaseNotFound),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.resend("lease revoke", || {
            let mut leases = self.client.lease_client();
            async move { leases.revoke(lease.0).await }
        })
        .await?;
        Ok(())
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        let mut watches = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from.max(0));
        let key = self.full(prefix);
        let start = async move {
            let mut stream = watches.watch(key, Some(options)).await?;
            let created = stream.message().await?;
            Ok((stream, created))
        };
        let (stream, created) = self.call("watch", start).await?;
        let mut watch = EtcdWatch {
            stream,
            pending: VecDeque::new(),
            prefix: self.prefix.clone(),
        };
        match created {
            Some(response) => watch.absorb(response)?,
            None => return Err(StoreError::Unavailable("watch stream closed".to_owned())),
        }
        Ok(Watch::new(futures_util::stream::unfold(
            watch,
            EtcdWatch::next,
        )))
    }
}

/// A running etcd watch; dropping it resets the gRPC stream, which cancels it in etcd.
struct EtcdWatch {
    stream: WatchStream,
    pending: VecDeque<WatchEvent>,
    prefix: String,
}

impl EtcdWatch {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            let result = match self.stream.message().await {
                Ok(Some(response)) => self.absorb(response),
                Ok(None) => Err(StoreError::Unavailable("etcd ended the watch".to_owned())),
                Err(error) => Err(map_error(error)),
            };
            if let Err(error) = result {
                return Some((Err(error), self));
            }
        }
    }

    /// Queues a response's events, or says why the watch is over.
    fn absorb(&mut self, response: etcd_client::WatchResponse) -> Result<(), StoreError> {
        if response.compact_revision() > 0 {
            return Err(StoreError::Compacted {
                revision: response.compact_revision(),
            });
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            return Err(match reason.contains("compacted") {
                true => StoreError::Compacted { revision: 0 },
                false => StoreError::Unavailable(format!("etcd canceled the watch: {reason}")),
            });
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            self.pending.push_back(match event.event_type() {
                EventType::Put => WatchEvent::Put(convert(&self.prefix, kv)?),
                EventType::Delete => WatchEvent::Delete {
                    key: strip(&self.prefix, kv.key())?,
                    mod_revision: kv.mod_revision(),
                },
            });
        }
        Ok(())
    }
}
