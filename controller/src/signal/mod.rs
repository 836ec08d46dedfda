//! WebRTC signaling: WebSocket rooms where browsers exchange SDP offers/answers and ICE
//! candidates (issue 6). The HTTP side — room tokens, the upgrade, replica redirects — is
//! `crate::api::signal`; this module is what happens after the upgrade.
//!
//! * [`protocol`] — the JSON messages (pure: text in, parsed message or error out; the
//!   server's messages built once and shared by every recipient).
//! * [`room`] — [`Hub`]: rooms keyed by (tenant, room), membership, fan-out. Fan-out never
//!   awaits a socket: each participant has a bounded outgoing queue and a participant whose
//!   queue is full is dropped (its peers get `peer-left`), so a slow or dead reader never
//!   blocks its room.
//! * [`conn`] — one connection: a reader (rate limit, size limit, idle timeout) and a
//!   writer task (queue → socket, WebSocket pings).
//! * [`replicas`] — each replica registers `controllers/<id>` under a lease; a room lives on
//!   the replica that rendezvous hashing of (tenant, room) picks among the live ones.
//!
//! # Protocol (JSON text frames, each with a `type`)
//!
//! | direction | message |
//! |---|---|
//! | server → client, on connect | `{"type":"welcome","you":"alice","peers":["bob"],"room":"r"}` |
//! | client → server → one peer | `{"type":"offer"\|"answer"\|"candidate","to":"bob",…}`, forwarded as is with `"from":"alice"` set by the server |
//! | client → server | `{"type":"ping"}` → `{"type":"pong"}`; `{"type":"leave"}` (then the server closes); `{"type":"join"}` → a fresh `welcome` |
//! | server → client | `{"type":"peer-joined","id":"bob"}`, `{"type":"peer-left","id":"bob"}` |
//! | client → server | `{"type":"refresh","token":"nxt_…"}`: a new room token for the same room and participant, checked exactly as at connect; → `{"type":"refreshed","expires_in":600}` (seconds), or `error` `refresh_refused` (the connection keeps its current token) |
//! | server → client | `{"type":"token_expiring","expires_in":30}`: once, 30 s before the token expires (half the remaining time for a shorter one): fetch a new token and `refresh` |
//! | server → client | `{"type":"error","code":"…","message":"…"}`: `bad_message`, `unknown_peer`, `message_too_large`, `rate_limited`, `room_full`, `replaced`, `token_expired`, `revoked`, `refresh_refused` |
//!
//! # Tokens during a connection
//!
//! A connection holds one room token at a time (the one it connected with, then the last
//! accepted `refresh`). When it expires the server sends `error` `token_expired` and
//! closes with code 4001; when it is revoked (`POST
//! /v1/admin/tenants/{tenant}/rooms/{room}/revocations`, seen through the store on every
//! replica) `error` `revoked` and close code 4002. Other close codes: 4000 `replaced`,
//! 1008 policy (room full, flooding), 1001 going away (idle, shutdown).

pub mod conn;
pub mod protocol;
pub mod replicas;
pub mod room;

use std::time::Duration;

use crate::model::RateLimit;

pub use replicas::{Owner, Replicas};
pub use room::{Hub, RoomKey};

use crate::model::RoomRevocation;
use crate::store::Snapshot;

/// What a verified room token grants a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: RoomKey,
    pub participant: String,
    /// Unix seconds (0 when the token does not say: any revocation covers it).
    pub issued_at: u64,
    /// Unix seconds; the connection closes then unless it refreshes its token.
    pub expires_at: u64,
}

impl Grant {
    /// Whether a revocation of the participant or of the whole room covers this token.
    pub fn is_revoked(&self, revoked: &Snapshot<RoomRevocation>) -> bool {
        [None, Some(self.participant.as_str())]
            .into_iter()
            .any(|who| {
                let path = RoomRevocation::path(&self.key.tenant, &self.key.room, who);
                revoked.get(&path).is_some_and(|r| r.covers(self.issued_at))
            })
    }
}

/// How long before its token expires a connection is told `token_expiring` (at most half
/// the time it has left when it got the token).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30);

/// Signaling limits and routing settings. [`SignalOptions::default`] is the documented
/// default of each field.
#[derive(Debug, Clone)]
pub struct SignalOptions {
    /// Most participants in one room (50); the next one gets `room_full`.
    pub room_size: usize,
    /// Largest message the protocol accepts (16 KiB); a larger one that could still be read
    /// gets `message_too_large` and the connection stays open.
    pub max_message: usize,
    /// Largest WebSocket message read at all (256 KiB); a larger one closes the connection.
    pub max_frame: usize,
    /// Outgoing queue per participant (256 messages); a participant whose queue is full is
    /// dropped.
    pub queue: usize,
    /// Messages per second a connection may send (50/s, burst 100); more get
    /// `rate_limited`, and a connection refused a burst's worth of messages faster than
    /// `rate.per_second / 5` per second is closed.
    pub rate: RateLimit,
    /// WebSocket ping interval (15 s).
    pub ping_interval: Duration,
    /// A connection nothing was read from for this long is dropped (45 s).
    pub idle_timeout: Duration,
    /// Base URL other replicas send this replica's rooms' clients to (`run` sets it to the
    /// listening address when not configured). `None`: not registered (in-process use).
    pub advertise_url: Option<String>,
}

impl Default for SignalOptions {
    fn default() -> Self {
        SignalOptions {
            room_size: 50,
            max_message: 16 * 1024,
            max_frame: 256 * 1024,
            queue: 256,
            rate: RateLimit {
                per_second: 50.0,
                burst: 100,
            },
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            advertise_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    fn snapshot(records: &[RoomRevocation]) -> Snapshot<RoomRevocation> {
        let entries = records.iter().map(|r| {
            let path = RoomRevocation::path(&r.tenant, &r.room, r.participant.as_deref());
            (path, Arc::new(r.clone()))
        });
        Snapshot {
            entries: Arc::new(entries.collect::<HashMap<_, _>>()),
            revision: 1,
            live: true,
            synced_at: None,
            error: None,
        }
    }

    fn grant(room: &str, participant: &str, issued_at: u64) -> Grant {
        Grant {
            key: RoomKey {
                tenant: "acme".into(),
                room: room.into(),
            },
            participant: participant.into(),
            issued_at,
            expires_at: issued_at + 600,
        }
    }

    #[test]
    fn revocations_cover_earlier_tokens_of_their_participant_or_room() {
        let revoke = |room: &str, participant: Option<&str>| RoomRevocation {
            tenant: "acme".into(),
            room: room.into(),
            participant: participant.map(str::to_owned),
            revoked_at: 1000,
            until: 4600,
        };
        let one = snapshot(&[revoke("r", Some("alice"))]);
        assert!(grant("r", "alice", 1000).is_revoked(&one), "same second");
        assert!(grant("r", "alice", 0).is_revoked(&one), "no iat");
        assert!(!grant("r", "alice", 1001).is_revoked(&one), "minted later");
        assert!(
            !grant("r", "bob", 900).is_revoked(&one),
            "another participant"
        );
        assert!(!grant("q", "alice", 900).is_revoked(&one), "another room");
        let room = snapshot(&[revoke("r", None)]);
        assert!(grant("r", "bob", 900).is_revoked(&room));
        assert!(!grant("r", "bob", 1001).is_revoked(&room));
        assert!(!grant("q", "bob", 900).is_revoked(&room));
        let mut other_tenant = grant("r", "bob", 900);
        other_tenant.key.tenant = "globex".into();
        assert!(!other_tenant.is_revoked(&room));
    }
}
