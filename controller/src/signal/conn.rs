//! One signaling connection after the upgrade: [`serve`].
//!
//! ```text
//!  socket ──read──► reader (this task): rate limit, size limit, idle timeout, parse,
//!                     │                   Room::relay / reply (try_send, never waits)
//!                     ▼
//!           bounded queue (SignalOptions::queue) ──► writer task ──write──► socket
//!                                                      (+ WebSocket ping every interval)
//! ```
//!
//! Either side ends the connection through [`Conn::close`] (first order wins): the reader
//! stops reading, the writer sends the farewell `error` and the close frame (bounded by
//! [`FAREWELL_TIMEOUT`]; skipped for a stuck reader) and drops the socket.
//!
//! The reader also keeps the connection's token ([`Credentials`]): it warns
//! (`token_expiring`) before the token expires, closes at its expiry (`token_expired`),
//! swaps it on `refresh`, and closes when the mirrored revocations cover it (`revoked`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::protocol::{self, ErrorCode, Inbound};
use super::room::{Close, Conn, DropReason, Hub, Room};
use super::{Grant, EXPIRY_WARNING};
use crate::clock::Clock;
use crate::model::{ControllerRecord, RateLimit, RoomRevocation};
use crate::store::Snapshot;

/// Time the farewell (last error and close frame) may take to write.
pub const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one `rate_limited` error per this interval (the refused messages themselves
/// must not flood the queue).
const RATE_ERROR_INTERVAL: Duration = Duration::from_secs(1);

/// Checks a `refresh` token exactly as at connect; `Err` explains the refusal.
pub type Verify = Box<dyn Fn(&str) -> Result<Grant, String> + Send + Sync>;

/// A connection's token and what keeps it honest.
pub struct Credentials {
    /// What the token it connected with grants.
    pub grant: Grant,
    pub verify: Verify,
    /// The mirrored room-token revocations (`room_revoked/`).
    pub revoked: watch::Receiver<Arc<Snapshot<RoomRevocation>>>,
    /// Turns the token's expiry into a timer deadline.
    pub clock: Clock,
    /// Changes whenever the set of live replicas does.
    pub replicas: watch::Receiver<Arc<Snapshot<ControllerRecord>>>,
    /// Where the room lives now: `None` here, else the URL to reconnect to.
    pub moved: Moved,
}

/// Where the connection's room lives now (`None`: this replica).
pub type Moved = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Serves one upgraded socket for `credentials.grant` until it ends.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    credentials: Credentials,
    shutdown: watch::Receiver<bool>,
) {
    let Credentials {
        grant,
        verify,
        revoked,
        clock,
        replicas,
        moved,
    } = credentials;
    let key = grant.key.clone();
    let me = grant.participant.clone();
    let options = hub.options().clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(options.queue.max(2));
    let conn = Arc::new(Conn::new(hub.next_id(), tx));
    let writer = tokio::spawn(write(sink, rx, conn.clone(), options.ping_interval));
    match hub.join(&key, &me, &conn) {
        Ok(room) => {
            let mut reader = Reader {
                hub: &hub,
                room: &room,
                me: &me,
                conn: &conn,
                verify: &verify,
                moved: &moved,
                clock,
                deadline: Instant::now(),
                warn_at: None,
                grant,
                bucket: Bucket::new(options.rate),
                // A burst's worth of refusals, refilled at a fifth of the rate.
                strikes: Bucket::new(RateLimit {
                    per_second: options.rate.per_second / 5.0,
                    burst: options.rate.burst,
                }),
                last_rate_error: None,
            };
            reader.set_grant(reader.grant.clone());
            reader.run(&mut stream, shutdown, revoked, replicas).await;
            hub.leave(&key, &me, conn.id);
        }
        Err(_full) => {
            hub.metrics().signal_drop(DropReason::RoomFull.as_str());
            let message = format!("room holds at most {} participants", options.room_size);
            conn.close(Close::dropped(
                DropReason::RoomFull,
                Some((ErrorCode::RoomFull, &message)),
            ));
        }
    }
    conn.close(Close::normal());
    let graceful = conn.closed().borrow().as_ref().is_some_and(|c| c.graceful);
    // The writer ends at the close order (after the farewell, itself bounded).
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT * 2, writer).await;
    if graceful {
        // The closing handshake (RFC 6455 section 7.1.1): read, discarding, until the
        // client's Close, so the TCP close does not reset a client whose last messages
        // were still unread (a reset would lose our farewell on its side).
        let drain = async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, drain).await;
    }
}

enum Admit {
    Yes,
    Refused,
    Closed,
}

struct Reader<'a> {
    hub: &'a Hub,
    room: &'a Room,
    me: &'a str,
    conn: &'a Conn,
    verify: &'a Verify,
    moved: &'a Moved,
    clock: Clock,
    /// The token held now.
    grant: Grant,
    /// When it expires.
    deadline: Instant,
    /// When to send `token_expiring` (`None` once sent).
    warn_at: Option<Instant>,
    bucket: Bucket,
    strikes: Bucket,
    last_rate_error: Option<Instant>,
}

impl Reader<'_> {
    async fn run(
        mut self,
        stream: &mut SplitStream<WebSocket>,
        mut shutdown: watch::Receiver<bool>,
        mut revoked: watch::Receiver<Arc<Snapshot<RoomRevocation>>>,
        mut replicas: watch::Receiver<Arc<Snapshot<ControllerRecord>>>,
    ) {
        let idle = self.hub.options().idle_timeout;
        let mut idle_at = Instant::now() + idle;
        let mut closed = self.conn.closed();
        let mut watching = true;
        let mut watching_replicas = true;
        // A revocation written between the check at connect and the join counts too.
        if self.grant.is_revoked(&revoked.borrow_and_update()) {
            self.drop_for(DropReason::Revoked);
            return;
        }
        loop {
            let next = tokio::select! {
                biased;
                _ = closed.wait_for(Option::is_some) => return,
                _ = shutdown.wait_for(|s| *s) => {
                    self.drop_for(DropReason::Shutdown);
                    return;
                }
                changed = revoked.changed(), if watching => {
                    // `Err`: the mirror is gone (the server is stopping).
                    watching = changed.is_ok();
                    if watching && self.grant.is_revoked(&revoked.borrow_and_update()) {
                        self.drop_for(DropReason::Revoked);
                        return;
                    }
                    continue;
                }
                changed = replicas.changed(), if watching_replicas => {
                    // A replica came or went: a room that now belongs elsewhere moves
                    // there whole (every member is told where), so it is never split.
                    watching_replicas = changed.is_ok();
                    if let Some(location) = (self.moved)() {
                        self.move_to(&location);
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.drop_for(DropReason::TokenExpired);
                    return;
                }
                _ = tokio::time::sleep_until(self.warn_at.unwrap_or(self.deadline)),
                    if self.warn_at.is_some() => {
                    self.warn_at = None;
                    let warning = protocol::token_expiring(self.expires_in());
                    self.room.reply(self.me, self.conn, warning);
                    continue;
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    self.drop_for(DropReason::Idle);
                    return;
                }
                next = stream.next() => next,
            };
            idle_at = Instant::now() + idle;
            let message = match next {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "signaling connection read error");
                    self.drop_for(DropReason::ProtocolError);
                    return;
                }
                Some(Ok(message)) => message,
            };
            let text = match message {
                Message::Text(text) => Some(text),
                Message::Binary(_) => None,
                // tungstenite answers pings itself; any frame counts as a sign of life.
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return,
            };
            match self.admit() {
                Admit::Yes => {}
                Admit::Refused => continue,
                Admit::Closed => return,
            }
            let Some(text) = text else {
                self.error(
                    ErrorCode::BadMessage,
                    "binary frames are not part of the protocol",
                );
                continue;
            };
            if !self.handle(text) {
                return;
            }
        }
    }

    /// The rate limit: a refused message gets (at most once a second) `rate_limited`; a
    /// connection refused a burst's worth of messages in a row is closed.
    fn admit(&mut self) -> Admit {
        let now = Instant::now();
        if self.bucket.take(now) {
            return Admit::Yes;
        }
        if !self.strikes.take(now) {
            self.drop_for(DropReason::RateLimited);
            return Admit::Closed;
        }
        let due = self
            .last_rate_error
            .is_none_or(|at| now.duration_since(at) >= RATE_ERROR_INTERVAL);
        if due {
            self.last_rate_error = Some(now);
            self.error(ErrorCode::RateLimited, "too many messages; slow down");
        }
        Admit::Refused
    }

    /// One text message; `false` when the connection ends (`leave`).
    fn handle(&mut self, text: Utf8Bytes) -> bool {
        let limit = self.hub.options().max_message;
        if text.len() > limit {
            let message = format!("messages are limited to {limit} bytes");
            self.error(ErrorCode::MessageTooLarge, &message);
            return true;
        }
        let inbound = match protocol::parse(&text) {
            Ok(m) => m,
            Err(why) => {
                self.error(ErrorCode::BadMessage, &why);
                return true;
            }
        };
        self.hub.metrics().signal_message(inbound.kind());
        match inbound {
            Inbound::Ping => self.room.reply(self.me, self.conn, protocol::pong()),
            Inbound::Join => {
                let welcome = self.room.welcome(self.me);
                self.room.reply(self.me, self.conn, welcome);
            }
            Inbound::Leave => {
                self.conn.close(Close::normal());
                return false;
            }
            Inbound::Refresh { token } => match (self.verify)(&token) {
                Ok(grant) if grant.key == self.grant.key && grant.participant == self.me => {
                    self.set_grant(grant);
                    let answer = protocol::refreshed(self.expires_in());
                    self.room.reply(self.me, self.conn, answer);
                }
                Ok(_) => self.error(
                    ErrorCode::RefreshRefused,
                    "this room token is for another participant",
                ),
                Err(why) => self.error(ErrorCode::RefreshRefused, &why),
            },
            Inbound::Relay { to, body, .. } => {
                if to == self.me {
                    self.error(ErrorCode::BadMessage, "\"to\" is yourself");
                    return true;
                }
                let msg = protocol::relayed(body, self.me);
                if self.room.relay(self.me, self.conn.id, &to, msg).is_err() {
                    let shown: String = to.chars().take(64).collect();
                    self.error(
                        ErrorCode::UnknownPeer,
                        &format!("{shown:?} is not in this room"),
                    );
                }
            }
        }
        true
    }

    /// Holds `grant` from now on: its expiry is the connection's deadline, and the warning
    /// comes [`EXPIRY_WARNING`] before it (at most half the time left).
    fn set_grant(&mut self, grant: Grant) {
        let now = Instant::now();
        self.deadline = self.clock.instant_at(grant.expires_at);
        let lead = EXPIRY_WARNING.min(self.deadline.saturating_duration_since(now) / 2);
        self.warn_at = Some(self.deadline - lead);
        self.grant = grant;
    }

    /// Whole seconds (rounded up) until the token expires.
    fn expires_in(&self) -> u64 {
        let left = self.deadline.saturating_duration_since(Instant::now());
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    fn error(&self, code: ErrorCode, message: &str) {
        self.hub.metrics().signal_error(code.as_str());
        self.room
            .reply(self.me, self.conn, protocol::error(code, message));
    }

    /// Closes the connection with `room_moved` and where to reconnect.
    fn move_to(&self, location: &str) {
        let mut close = Close::dropped(DropReason::Moved, None);
        close.farewell = Some(protocol::room_moved(location));
        self.conn.close(close);
        self.hub
            .kick(self.room, self.me, self.conn, DropReason::Moved);
    }

    fn drop_for(&self, reason: DropReason) {
        let error = match reason {
            DropReason::RateLimited => Some((ErrorCode::RateLimited, "too many messages")),
            DropReason::TokenExpired => Some((
                ErrorCode::TokenExpired,
                "the room token expired; refresh it when told token_expiring",
            )),
            DropReason::Revoked => Some((ErrorCode::Revoked, "the room token was revoked")),
            _ => None,
        };
        self.conn.close(Close::dropped(reason, error));
        // Counted once, by the removal (a connection already replaced or dropped was
        // counted then).
        self.hub.kick(self.room, self.me, self.conn, reason);
    }
}

/// Queue → socket, plus pings, until the close order; then the farewell.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    conn: Arc<Conn>,
    ping_interval: Duration,
) {
    let mut closed = conn.closed();
    let start = Instant::now() + ping_interval;
    let mut ping = tokio::time::interval_at(start, ping_interval.max(Duration::from_millis(10)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            _ = closed.wait_for(Option::is_some) => break,
            next = rx.recv() => match next {
                Some(text) => Message::Text(text),
                None => break,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        let sent = tokio::select! {
            biased;
            _ = closed.wait_for(Option::is_some) => break,
            sent = sink.send(message) => sent,
        };
        if sent.is_err() {
            conn.close(Close::normal()); // the peer is gone
            return;
        }
    }
    let close = conn.closed().borrow().clone();
    let Some(close) = close.filter(|c| c.graceful) else {
        return; // a stuck reader: drop the socket without writing to it
    };
    let farewell = async {
        if let Some(text) = close.farewell {
            sink.send(Message::Text(text)).await?;
        }
        let frame = CloseFrame {
            code: close.code,
            reason: Utf8Bytes::from_static(close.reason),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, farewell).await;
}

/// A token bucket owned by one connection (no lock).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    limit: RateLimit,
}

impl Bucket {
    fn new(limit: RateLimit) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst.max(1)),
            at: Instant::now(),
            limit,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let burst = f64::from(self.limit.burst.max(1));
        let refill = now.duration_since(self.at).as_secs_f64() * self.limit.per_second.max(0.0);
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_the_burst_then_the_rate() {
        let mut b = Bucket::new(RateLimit {
            per_second: 50.0,
            burst: 100,
        });
        let now = Instant::now();
        assert_eq!((0..150).filter(|_| b.take(now)).count(), 100);
        let later = now + Duration::from_millis(100);
        assert_eq!((0..150).filter(|_| b.take(later)).count(), 5);
    }
}
