//! The event stream (`GET /v1/relays/events`): server-sent events, `event: <name>` and one
//! `data: <json>` line.
//!
//! On every (re)connection the controller first sends the full current state — `secrets`,
//! then `revocations`, then `drain` if the node is draining — and afterwards each change,
//! again as full state (no deltas: a reconnect never misses anything). It sends `ping`
//! when the stream has been quiet for [`PING_INTERVAL`]; an agent that hears nothing for
//! three intervals reconnects (to any replica). Unknown events are skipped.

use std::fmt;
use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// The controller sends a `ping` event after this long without another event.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Event `secrets` (and the register answer's `tenants`): every tenant's secrets, full
/// state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub tenants: Vec<TenantSecrets>,
    /// The tenant that owns coturn-style `<expiry>:<user>` usernames (none: the only
    /// tenant, if there is one; the controller does not send it yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenant: Option<String>,
}

/// One tenant's secrets: one or two, newest first (relays accept each).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSecrets {
    pub name: String,
    pub secrets: Vec<String>,
    /// Cut live allocations when their username expires (not applied by the relay yet).
    /// The controller always sends it; the agent reads it as optional (absent: `false`).
    #[serde(default)]
    pub cut_at_expiry: bool,
}

impl fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log.
        write!(
            f,
            "TenantSecrets({}: {} secrets)",
            self.name,
            self.secrets.len()
        )
    }
}

/// Event `revocations`: every username refused now (full state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    pub revoked: Vec<Revocation>,
}

/// A TURN REST username refused until `until`: the controller's
/// `revoked/<tenant>/<username>` record, as stored and as sent to relays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// The controller always writes it; read as optional (absent: empty), as the agent
    /// always read it.
    #[serde(default)]
    pub tenant: String,
    pub username: String,
    /// The username's expiry (unix seconds); the record's lease ends then.
    pub until: u64,
    /// Unix seconds.
    #[serde(default)]
    pub revoked_at: u64,
}

/// Event `drain`: stop taking clients; exit when empty or at `deadline`. (A heartbeat
/// answer's `"state": "draining"` is the same order without deadline and alternate.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainOrder {
    /// Unix seconds; none: the relay's own `--drain-grace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// A healthy relay of the region (`host:port`) for 300 ALTERNATE-SERVER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
}

/// One event of the stream, by its SSE `event:` name. It serializes as its `data` (the
/// payload; `{}` for `ping`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    Secrets(Secrets),
    Revocations(Revocations),
    Drain(DrainOrder),
    Ping,
}

/// Why an SSE event could not be read as an [`Event`]; `E` is the data format's error.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventError<E> {
    /// An event this version does not know (skip it).
    Unknown(String),
    /// A known event whose data does not parse.
    Data { event: &'static str, source: E },
}

impl<E: fmt::Display> fmt::Display for EventError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Unknown(name) => write!(f, "unknown event {name:?}"),
            EventError::Data { event, source } => write!(f, "bad {event} event: {source}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for EventError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventError::Unknown(_) => None,
            EventError::Data { source, .. } => Some(source),
        }
    }
}

impl Event {
    pub const SECRETS: &'static str = "secrets";
    pub const REVOCATIONS: &'static str = "revocations";
    pub const DRAIN: &'static str = "drain";
    pub const PING: &'static str = "ping";

    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Secrets(_) => Event::SECRETS,
            Event::Revocations(_) => Event::REVOCATIONS,
            Event::Drain(_) => Event::DRAIN,
            Event::Ping => Event::PING,
        }
    }

    /// Reads an event from its SSE name and its `data` (any serde format; the stream's is
    /// JSON: `serde_json::Deserializer`, or a parsed `serde_json::Value`).
    pub fn read<'de, D: Deserializer<'de>>(
        name: &str,
        data: D,
    ) -> Result<Event, EventError<D::Error>> {
        fn payload<'de, T: DeserializeOwned, D: Deserializer<'de>>(
            event: &'static str,
            data: D,
        ) -> Result<T, EventError<D::Error>> {
            T::deserialize(data).map_err(|source| EventError::Data { event, source })
        }
        match name {
            Event::SECRETS => payload(Event::SECRETS, data).map(Event::Secrets),
            Event::REVOCATIONS => payload(Event::REVOCATIONS, data).map(Event::Revocations),
            Event::DRAIN => payload(Event::DRAIN, data).map(Event::Drain),
            Event::PING => {
                // Whatever a ping carries is ignored.
                let _: Result<IgnoredAny, _> = IgnoredAny::deserialize(data);
                Ok(Event::Ping)
            }
            other => Err(EventError::Unknown(other.to_owned())),
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Secrets(s) => s.serialize(serializer),
            Event::Revocations(r) => r.serialize(serializer),
            Event::Drain(d) => d.serialize(serializer),
            Event::Ping => serializer.serialize_map(Some(0))?.end(),
        }
    }
}
