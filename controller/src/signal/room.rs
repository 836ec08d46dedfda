//! [`Hub`]: the rooms of this replica and their members.
//!
//! Locks: a map of rooms (taken to join, to leave and to find a room) and one lock per
//! room (taken to deliver). Order: map, then room. Neither is held across an `.await`:
//! delivery is `try_send` on each member's bounded queue, and a member whose queue is full
//! is removed on the spot (its connection told to close, counted as a `slow_reader` drop,
//! `peer-left` delivered to the rest — which may drop others in turn, handled as a work
//! list, never recursion). A room is removed from the map when its last member leaves.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch};

use super::protocol::{self, ErrorCode};
use super::SignalOptions;
use crate::metrics::Metrics;

/// A room is per tenant: two tenants' rooms of the same name never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub tenant: String,
    pub room: String,
}

/// Why the server ended a connection (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its outgoing queue was full.
    SlowReader,
    /// Another connection with the same participant id took its place.
    Replaced,
    /// It kept sending faster than its rate limit.
    RateLimited,
    /// Nothing was read from it for the idle timeout.
    Idle,
    /// An unreadable frame (too large, bad framing).
    ProtocolError,
    /// The room was full when it connected.
    RoomFull,
    /// The server is shutting down.
    Shutdown,
    /// Its room token expired and was not refreshed.
    TokenExpired,
    /// Its room token was revoked.
    Revoked,
    /// The room now belongs to another replica.
    Moved,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SlowReader => "slow_reader",
            DropReason::Replaced => "replaced",
            DropReason::RateLimited => "rate_limited",
            DropReason::Idle => "idle",
            DropReason::ProtocolError => "protocol_error",
            DropReason::RoomFull => "room_full",
            DropReason::Shutdown => "shutdown",
            DropReason::TokenExpired => "token_expired",
            DropReason::Revoked => "revoked",
            DropReason::Moved => "moved",
        }
    }
}

/// How a connection ends: the close frame, and a last `error` message before it.
#[derive(Debug, Clone)]
pub struct Close {
    /// WebSocket close code (RFC 6455 section 7.4.1).
    pub code: u16,
    pub reason: &'static str,
    /// Sent before the close frame (bypassing the queue, which may be full).
    pub farewell: Option<Utf8Bytes>,
    /// `false`: the socket is not worth writing to any more (its reader is stuck).
    pub graceful: bool,
}

impl Close {
    /// The client left, or went away.
    pub fn normal() -> Close {
        Close {
            code: 1000,
            reason: "bye",
            farewell: None,
            graceful: true,
        }
    }

    /// Closed by the server for `reason`, with an `error` message first when `code` is set.
    pub fn dropped(reason: DropReason, error: Option<(ErrorCode, &str)>) -> Close {
        let code = match reason {
            DropReason::Shutdown | DropReason::Idle => 1001, // going away
            DropReason::ProtocolError => 1002,
            DropReason::Replaced => 4000,
            DropReason::TokenExpired => 4001,
            DropReason::Revoked => 4002,
            DropReason::Moved => 4003,
            _ => 1008, // policy violation
        };
        Close {
            code,
            reason: reason.as_str(),
            farewell: error.map(|(c, m)| protocol::error(c, m)),
            graceful: reason != DropReason::SlowReader,
        }
    }
}

/// One WebSocket connection as the rooms see it.
#[derive(Debug)]
pub struct Conn {
    /// Unique per replica: tells a replaced connection from its successor.
    pub id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    close: watch::Sender<Option<Close>>,
}

impl Conn {
    pub fn new(id: u64, tx: mpsc::Sender<Utf8Bytes>) -> Conn {
        Conn {
            id,
            tx,
            close: watch::channel(None).0,
        }
    }

    /// Queues `msg` without waiting; `false` when the queue is full (or the writer gone).
    pub fn offer(&self, msg: Utf8Bytes) -> bool {
        self.tx.try_send(msg).is_ok()
    }

    /// Orders the connection closed; the first order wins. `true` if this one did.
    pub fn close(&self, close: Close) -> bool {
        self.close.send_if_modified(|current| match current {
            None => {
                *current = Some(close);
                true
            }
            Some(_) => false,
        })
    }

    /// Notified when the connection is ordered closed.
    pub fn closed(&self) -> watch::Receiver<Option<Close>> {
        self.close.subscribe()
    }
}

type Members = HashMap<String, Arc<Conn>>;

/// One room's members by participant id.
#[derive(Debug)]
pub struct Room {
    name: String,
    members: Mutex<Members>,
    metrics: Metrics,
}

impl Room {
    fn new(name: &str, metrics: Metrics) -> Room {
        Room {
            name: name.to_owned(),
            members: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of members now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `conn` is (still) the member `me`.
    fn is_member(members: &Members, me: &str, conn: u64) -> bool {
        members.get(me).is_some_and(|c| c.id == conn)
    }

    /// `msg` from `from` to `to`; [`UnknownPeer`] if `to` is not in the room (a `from`
    /// that is no longer a member is being closed: its message is dropped silently).
    pub fn relay(
        &self,
        from: &str,
        conn: u64,
        to: &str,
        msg: Utf8Bytes,
    ) -> Result<(), UnknownPeer> {
        let mut members = self.lock();
        if !Self::is_member(&members, from, conn) {
            return Ok(()); // being closed: drop silently
        }
        let Some(target) = members.get(to) else {
            return Err(UnknownPeer);
        };
        if !target.offer(msg) {
            let victim = to.to_owned();
            drop_members(
                &mut members,
                vec![victim],
                DropReason::SlowReader,
                &self.metrics,
            );
        }
        Ok(())
    }

    /// Queues `msg` for the member `me` itself (a reply); drops it if its queue is full.
    pub fn reply(&self, me: &str, conn: &Conn, msg: Utf8Bytes) {
        if conn.offer(msg) {
            return;
        }
        let mut members = self.lock();
        if Self::is_member(&members, me, conn.id) {
            let victims = vec![me.to_owned()];
            drop_members(&mut members, victims, DropReason::SlowReader, &self.metrics);
        } else {
            conn.close(Close::dropped(DropReason::SlowReader, None));
        }
    }

    /// A fresh `welcome` for `me`.
    pub fn welcome(&self, me: &str) -> Utf8Bytes {
        let members = self.lock();
        let peers = members.keys().map(String::as_str).filter(|p| *p != me);
        protocol::welcome(me, peers, &self.name)
    }
}

/// Delivers `msg` to every member but `except`, dropping members whose queue is full.
fn broadcast(members: &mut Members, except: Option<&str>, msg: Utf8Bytes, metrics: &Metrics) {
    let mut pending = VecDeque::from([(except.map(str::to_owned), msg)]);
    while let Some((except, msg)) = pending.pop_front() {
        let mut victims = Vec::new();
        for (id, conn) in members.iter() {
            if except.as_deref() != Some(id.as_str()) && !conn.offer(msg.clone()) {
                victims.push(id.clone());
            }
        }
        for id in victims {
            if let Some(conn) = members.remove(&id) {
                conn.close(Close::dropped(DropReason::SlowReader, None));
                metrics.signal_drop(DropReason::SlowReader.as_str());
                metrics.signal_participants(-1.0);
                pending.push_back((None, protocol::peer_left(&id)));
            }
        }
    }
}

/// Removes `victims` (closing them for `reason`) and tells the rest.
fn drop_members(
    members: &mut Members,
    victims: Vec<String>,
    reason: DropReason,
    metrics: &Metrics,
) {
    for id in victims {
        if let Some(conn) = members.remove(&id) {
            conn.close(Close::dropped(reason, None));
            metrics.signal_drop(reason.as_str());
            metrics.signal_participants(-1.0);
            // A member moving with its room to another replica is not leaving the call:
            // the others are moving too, and meet it again there.
            if reason != DropReason::Moved {
                broadcast(members, None, protocol::peer_left(&id), metrics);
            }
        }
    }
}

/// The addressee of a message is not in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownPeer;

/// Refused: the room has `room_size` members already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFull;

/// The rooms of this replica (see the module docs).
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<RoomKey, Arc<Room>>>,
    options: SignalOptions,
    next_id: AtomicU64,
    metrics: Metrics,
}

impl Hub {
    /// Rooms, members and drops are counted in `metrics` (the controller's).
    pub fn new(options: SignalOptions, metrics: Metrics) -> Hub {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            options,
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// The controller's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn options(&self) -> &SignalOptions {
        &self.options
    }

    /// A connection id unique on this replica.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomKey, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rooms on this replica now.
    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Members of one room now (0 if it does not exist).
    pub fn members(&self, key: &RoomKey) -> usize {
        self.rooms().get(key).map_or(0, |r| r.len())
    }

    /// Adds `conn` as `me`: queues its `welcome` first, then tells the others
    /// `peer-joined`. A member with the same id is replaced (told `replaced` and closed;
    /// the others see it leave, then join again).
    pub fn join(&self, key: &RoomKey, me: &str, conn: &Arc<Conn>) -> Result<Arc<Room>, RoomFull> {
        let mut rooms = self.rooms();
        let room = rooms
            .entry(key.clone())
            .or_insert_with(|| {
                self.metrics.signal_rooms(1.0);
                Arc::new(Room::new(&key.room, self.metrics.clone()))
            })
            .clone();
        let mut members = room.lock();
        let taken = members.contains_key(me);
        if !taken && members.len() >= self.options.room_size.max(1) {
            return Err(RoomFull);
        }
        if let Some(old) = members.remove(me) {
            old.close(Close::dropped(
                DropReason::Replaced,
                Some((
                    ErrorCode::Replaced,
                    "another connection joined with this participant id",
                )),
            ));
            self.metrics.signal_drop(DropReason::Replaced.as_str());
            self.metrics.signal_participants(-1.0);
            broadcast(&mut members, None, protocol::peer_left(me), &self.metrics);
        }
        let peers = members.keys().map(String::as_str);
        // The queue is new and empty: the welcome always fits.
        conn.offer(protocol::welcome(me, peers, &key.room));
        broadcast(&mut members, None, protocol::peer_joined(me), &self.metrics);
        members.insert(me.to_owned(), conn.clone());
        self.metrics.signal_participants(1.0);
        drop(members);
        Ok(room)
    }

    /// Removes `conn` (if it is still the member `me`), tells the others `peer-left`, and
    /// removes the room once empty. Every connection calls this when it ends.
    pub fn leave(&self, key: &RoomKey, me: &str, conn: u64) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get(key).cloned() else {
            return;
        };
        let mut members = room.lock();
        if Room::is_member(&members, me, conn) {
            members.remove(me);
            self.metrics.signal_participants(-1.0);
            broadcast(&mut members, None, protocol::peer_left(me), &self.metrics);
        }
        if members.is_empty() {
            drop(members);
            rooms.remove(key);
            self.metrics.signal_rooms(-1.0);
        }
    }

    /// Drops the member `me` (if `conn` still is it) for `reason`, telling the others.
    pub fn kick(&self, room: &Room, me: &str, conn: &Conn, reason: DropReason) {
        let mut members = room.lock();
        if Room::is_member(&members, me, conn.id) {
            drop_members(&mut members, vec![me.to_owned()], reason, &self.metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RoomKey {
        RoomKey {
            tenant: "acme".into(),
            room: "r".into(),
        }
    }

    fn conn(hub: &Hub, queue: usize) -> (Arc<Conn>, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(queue);
        (Arc::new(Conn::new(hub.next_id(), tx)), rx)
    }

    fn drain(rx: &mut mpsc::Receiver<Utf8Bytes>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m.to_string());
        }
        out
    }

    #[test]
    fn a_full_queue_drops_that_member_only() {
        let hub = Hub::new(SignalOptions::default(), Metrics::new());
        let (a, mut ra) = conn(&hub, 16);
        let (b, mut rb) = conn(&hub, 2);
        let (c, mut rc) = conn(&hub, 16);
        let room = hub.join(&key(), "a", &a).expect("join");
        hub.join(&key(), "b", &b).expect("join"); // b's queue: welcome
        hub.join(&key(), "c", &c).expect("join"); // b's queue: welcome, peer-joined c: full
        drain(&mut ra);
        drain(&mut rc);
        room.relay("a", a.id, "b", "x".into())
            .expect("b is a member");
        assert!(b.closed().borrow().is_some(), "b was dropped");
        assert_eq!(room.len(), 2);
        let left = serde_json::json!({"type": "peer-left", "id": "b"});
        for rx in [&mut ra, &mut rc] {
            let got: Vec<serde_json::Value> = (drain(rx).iter())
                .map(|m| serde_json::from_str(m).expect("json"))
                .collect();
            assert_eq!(got, vec![left.clone()]);
        }
        assert_eq!(drain(&mut rb).len(), 2, "nothing after the drop");
        assert!(room.relay("a", a.id, "b", "y".into()).is_err(), "b is gone");
        hub.leave(&key(), "b", b.id);
        hub.leave(&key(), "a", a.id);
        hub.leave(&key(), "c", c.id);
        assert_eq!(hub.room_count(), 0);
    }

    #[test]
    fn same_id_replaces_and_room_size_is_enforced() {
        let options = SignalOptions {
            room_size: 2,
            ..SignalOptions::default()
        };
        let hub = Hub::new(options, Metrics::new());
        let (a1, _ra1) = conn(&hub, 16);
        let (a2, _ra2) = conn(&hub, 16);
        let (b, mut rb) = conn(&hub, 16);
        let (c, _rc) = conn(&hub, 16);
        hub.join(&key(), "a", &a1).expect("join");
        hub.join(&key(), "b", &b).expect("join");
        assert_eq!(hub.join(&key(), "c", &c).err(), Some(RoomFull));
        hub.join(&key(), "a", &a2).expect("a replaces a");
        let close = a1.closed().borrow().clone().expect("a1 closed");
        assert_eq!(close.reason, "replaced");
        assert!(close.farewell.expect("error").contains("\"replaced\""));
        let seen = drain(&mut rb);
        assert_eq!(seen.len(), 3, "{seen:?}"); // welcome, peer-left a, peer-joined a
        assert!(seen[1].contains("peer-left") && seen[2].contains("peer-joined"));
        // The replaced connection's leave does not remove its successor.
        hub.leave(&key(), "a", a1.id);
        assert_eq!(hub.members(&key()), 2);
    }
}
