//! The HTTPS client to a list of controller replicas.
//!
//! Every call goes to the current replica. A connection error, a timeout, a
//! 5xx, 408 or 429, or an unreadable answer moves the client to the next
//! replica (for every later call too) and the call is retried there after a
//! backoff with full jitter, until its time budget is spent. Other 4xx answers
//! are the agent's own fault and are not retried; a heartbeat's 404
//! `lease_expired` becomes [`CallError::LeaseExpired`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng as _;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::sse::{SseDecoder, SseError, SseEvent};
use crate::tls::{self, TlsError, Trust};
use nexrtc_wire::{routes, ErrorBody, LEASE_EXPIRED};

/// One SSE event may be at most this large (the secrets of every tenant).
const MAX_EVENT: usize = 4 << 20;

/// Exponential backoff with full jitter: attempt `n` waits a uniformly random
/// time in `0..=min(cap, base · 2ⁿ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

/// How to reach the controllers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs of the replicas (`https://c1.example.org:8443/`), tried in turn.
    pub controllers: Vec<Url>,
    /// The node-scoped bearer token.
    pub token: String,
    pub trust: Trust,
    pub ca_file: Option<PathBuf>,
    /// One request's limit (connect included); the event stream uses it to connect.
    pub request_timeout: Duration,
    pub backoff: Backoff,
    /// The local address to connect from (a multi-homed host); `None`: the system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no controller URL given")]
    NoController,
    #[error("controller URL {0} is not http(s)")]
    BadScheme(Url),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The lease is gone: register again.
    #[error("lease expired")]
    LeaseExpired,
    /// The controller refused the request (not retried). A 401 (missing or
    /// invalid credentials) names the flag that holds them.
    #[error("refused with {status}: {code}: {message}{}", credentials_hint(*.status))]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// No replica answered within the call's budget.
    #[error("no controller answered ({attempts} attempts; last: {last})")]
    Unavailable { attempts: u32, last: String },
}

/// What to check when the controller refuses the node's credentials.
fn credentials_hint(status: u16) -> &'static str {
    if status == StatusCode::UNAUTHORIZED.as_u16() {
        " (check --node-token / NEXRTC_NODE_TOKEN: the node key the controller issued)"
    } else {
        ""
    }
}

/// The live event stream of one replica.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    decoder: SseDecoder,
    pending: VecDeque<SseEvent>,
    /// The replica serving the stream.
    pub controller: Url,
    /// Its index in the list, for [`ControllerClient::fail_over`].
    pub index: usize,
}

/// Why the event stream stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("nothing received for {0:?}")]
    Idle(Duration),
    #[error("stream broken: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Format(#[from] SseError),
}

impl EventStream {
    /// The next event; `Ok(None)` when the server closed the stream. Waits at
    /// most `idle` for bytes (pings included).
    pub async fn next(&mut self, idle: Duration) -> Result<Option<SseEvent>, StreamError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let chunk = tokio::time::timeout(idle, self.response.chunk())
                .await
                .map_err(|_| StreamError::Idle(idle))??;
            let Some(chunk) = chunk else { return Ok(None) };
            let mut out = Vec::new();
            self.decoder.feed(&chunk, &mut out)?;
            self.pending.extend(out);
        }
    }
}

/// The client (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct ControllerClient {
    http: reqwest::Client,
    bases: Vec<Url>,
    current: AtomicUsize,
    token: String,
    timeout: Duration,
    backoff: Backoff,
}

/// A failure worth retrying on another replica.
struct Transient(String);

impl ControllerClient {
    pub fn new(config: &ClientConfig) -> Result<ControllerClient, ClientError> {
        if config.controllers.is_empty() {
            return Err(ClientError::NoController);
        }
        let mut bases = Vec::new();
        for url in &config.controllers {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ClientError::BadScheme(url.clone()));
            }
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if url.scheme() == "http" && !loopback {
                tracing::warn!(controller = %url, "controller over plain HTTP: the node token and secrets travel in clear");
            }
            let mut base = url.clone();
            if !base.path().ends_with('/') {
                let path = format!("{}/", base.path());
                base.set_path(&path);
            }
            bases.push(base);
        }
        let tls = tls::client_config(&config.trust, config.ca_file.as_deref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.request_timeout)
            .local_address(config.local_address)
            .user_agent(concat!("nexrtc-edge-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ControllerClient {
            http,
            bases,
            current: AtomicUsize::new(0),
            token: config.token.clone(),
            timeout: config.request_timeout,
            backoff: config.backoff,
        })
    }

    /// The replica calls go to now.
    pub fn current(&self) -> &Url {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// POSTs `body` to `route` (one of [`routes`]) and reads the JSON answer, retrying over the
    /// replicas for up to `budget`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
        budget: Duration,
    ) -> Result<T, CallError> {
        let route = relative(route);
        let deadline = Instant::now() + budget;
        let mut attempt = 0u32;
        loop {
            let i = self.current.load(Ordering::Relaxed);
            let base = &self.bases[i % self.bases.len()];
            attempt += 1;
            let last = match self.post_once(base, route, body).await {
                Ok(Ok(bytes)) => match serde_json::from_slice(non_empty(&bytes)) {
                    Ok(t) => return Ok(t),
                    Err(e) => format!("{base}{route}: unreadable answer: {e}"),
                },
                Ok(Err(rejected)) => return Err(rejected),
                Err(Transient(why)) => why,
            };
            tracing::debug!(attempt, "controller call failed: {last}");
            self.fail_over(i);
            let wait = self.backoff.delay(attempt - 1);
            if Instant::now() + wait >= deadline || attempt >= 64 {
                return Err(CallError::Unavailable {
                    attempts: attempt,
                    last,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// [`post`](Self::post), hedged: if the current replica has not answered within
    /// `hedge_after`, the same request also goes once to the next replica, and the first
    /// answer wins (the client then stays with the replica that gave it). For idempotent
    /// calls whose lateness costs as much as their loss: a heartbeat that reaches the
    /// controllers after their miss window is too late even if it succeeds, so a replica
    /// that hangs (its store connection broke, its host is unreachable) must not hold it for
    /// a whole request timeout.
    pub async fn post_hedged<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
        budget: Duration,
        hedge_after: Duration,
    ) -> Result<T, CallError> {
        let first = self.post(route, body, budget);
        tokio::pin!(first);
        if self.bases.len() < 2 {
            return first.await;
        }
        tokio::select! {
            answer = &mut first => return answer,
            () = tokio::time::sleep(hedge_after) => {}
        }
        let slow = self.current.load(Ordering::Relaxed);
        let next = &self.bases[(slow + 1) % self.bases.len()];
        let hedge = self.post_once(next, relative(route), body);
        tokio::pin!(hedge);
        tokio::select! {
            answer = &mut first => answer,
            answer = &mut hedge => match answer {
                Ok(Ok(bytes)) => match serde_json::from_slice(non_empty(&bytes)) {
                    Ok(t) => {
                        tracing::debug!(slow = %self.bases[slow % self.bases.len()], "hedged call answered by the next replica");
                        self.fail_over(slow);
                        Ok(t)
                    }
                    Err(_) => first.await,
                },
                Ok(Err(rejected)) => Err(rejected),
                Err(_) => first.await,
            },
        }
    }

    async fn post_once<B: Serialize>(
        &self,
        base: &Url,
        route: &str,
        body: &B,
    ) -> Result<Result<Vec<u8>, CallError>, Transient> {
        let url = base
            .join(route)
            .map_err(|e| Transient(format!("{base}{route}: {}", chain(&e))))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| Transient(format!("{base}{route}: {}", chain(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Transient(format!("{base}{route}: {}", chain(&e))))?;
        if status.is_success() {
            return Ok(Ok(bytes.to_vec()));
        }
        if retryable(status) {
            return Err(Transient(format!("{base}{route}: {status}")));
        }
        let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            code: status.as_str().to_owned(),
            message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        });
        if status == StatusCode::NOT_FOUND && error.code == LEASE_EXPIRED {
            return Ok(Err(CallError::LeaseExpired));
        }
        Ok(Err(CallError::Rejected {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        }))
    }

    /// Opens the event stream on the current replica (one attempt; on a
    /// transient failure the next call goes to the next replica).
    pub async fn events(&self, region: &str, node: &str) -> Result<EventStream, CallError> {
        let i = self.current.load(Ordering::Relaxed);
        let base = self.bases[i % self.bases.len()].clone();
        let transient = |last: String| {
            self.fail_over(i);
            CallError::Unavailable { attempts: 1, last }
        };
        let mut url = base
            .join(relative(routes::EVENTS))
            .map_err(|e| transient(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair(routes::REGION_PARAM, region)
            .append_pair(routes::NODE_PARAM, node);
        let send = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send();
        let response = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(transient(format!("{base}: timed out"))),
            Ok(Err(e)) => return Err(transient(format!("{base}: {}", chain(&e)))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if retryable(status) {
            return Err(transient(format!("{base}: {status}")));
        }
        if !status.is_success() {
            return Err(CallError::Rejected {
                status: status.as_u16(),
                code: status.as_str().to_owned(),
                message: "event stream refused".to_owned(),
            });
        }
        Ok(EventStream {
            response,
            decoder: SseDecoder::new(MAX_EVENT),
            pending: VecDeque::new(),
            controller: base,
            index: i,
        })
    }

    /// Moves to the replica after `failed`, unless another call already did.
    pub fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.bases.len();
        if self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && self.bases.len() > 1
        {
            tracing::info!(from = %self.bases[failed % self.bases.len()], to = %self.bases[next], "switching controller replica");
        }
    }
}

/// An error and its causes on one line (reqwest's own text omits the cause:
/// "connection refused", "invalid peer certificate: UnknownIssuer").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A route of [`routes`] (an absolute path) relative to a base URL, so that a base URL
/// with a path prefix (`https://example.org/controller/`) keeps it.
fn relative(route: &str) -> &str {
    route.trim_start_matches('/')
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// An empty 2xx body reads as JSON `null` (for answers with nothing to say).
fn non_empty(bytes: &[u8]) -> &[u8] {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    }
}
