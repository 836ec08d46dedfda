//! The signaling messages (see the table in the module docs of [`super`]). Pure: no I/O.
//!
//! Client messages are parsed into [`Inbound`]; the payload of `offer`, `answer` and
//! `candidate` is kept as the client's JSON object, so any fields pass through unchanged.
//! Server messages are serialized once into [`Utf8Bytes`] and cloned (a reference count)
//! for every recipient.

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Map, Value};

/// A message a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Asks for a fresh `welcome` (joining itself is implicit on connect).
    Join,
    Leave,
    Ping,
    /// A new room token for the same room and participant, extending the connection.
    Refresh {
        token: String,
    },
    /// `offer`, `answer` or `candidate` for one peer.
    Relay {
        kind: RelayKind,
        to: String,
        body: Map<String, Value>,
    },
}

/// The three message types forwarded to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    Offer,
    Answer,
    Candidate,
}

/// Every `type` a client sends (the metrics start each at 0).
pub const INBOUND_KINDS: [&str; 7] = [
    "join",
    "leave",
    "ping",
    "refresh",
    "offer",
    "answer",
    "candidate",
];

impl Inbound {
    /// The `type` (a bounded metrics label, one of [`INBOUND_KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Join => "join",
            Inbound::Leave => "leave",
            Inbound::Ping => "ping",
            Inbound::Refresh { .. } => "refresh",
            Inbound::Relay { kind, .. } => kind.as_str(),
        }
    }
}

impl RelayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayKind::Offer => "offer",
            RelayKind::Answer => "answer",
            RelayKind::Candidate => "candidate",
        }
    }
}

/// The `code` of an `error` message (stable: clients branch on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadMessage,
    UnknownPeer,
    MessageTooLarge,
    RateLimited,
    RoomFull,
    Replaced,
    /// The connection's token expired (the connection closes).
    TokenExpired,
    /// The connection's token was revoked (the connection closes).
    Revoked,
    /// A `refresh` token was refused; the connection keeps its current token.
    RefreshRefused,
    /// The room now lives on another replica (the replica set changed): reconnect to
    /// `location` (the connection closes with 4003).
    RoomMoved,
}

impl ErrorCode {
    /// Every code (the metrics start each at 0).
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadMessage,
        ErrorCode::UnknownPeer,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::RoomFull,
        ErrorCode::Replaced,
        ErrorCode::TokenExpired,
        ErrorCode::Revoked,
        ErrorCode::RefreshRefused,
        ErrorCode::RoomMoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Replaced => "replaced",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Revoked => "revoked",
            ErrorCode::RefreshRefused => "refresh_refused",
            ErrorCode::RoomMoved => "room_moved",
        }
    }
}

/// Parses one text frame. `Err` carries the `bad_message` explanation.
pub fn parse(text: &str) -> Result<Inbound, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut body) = value else {
        return Err("a message is a JSON object".to_owned());
    };
    let kind = match body.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err("a message needs a string \"type\"".to_owned()),
    };
    let relay = match kind {
        "join" => return Ok(Inbound::Join),
        "leave" => return Ok(Inbound::Leave),
        "ping" => return Ok(Inbound::Ping),
        "refresh" => {
            return match body.remove("token") {
                Some(Value::String(token)) if !token.is_empty() => Ok(Inbound::Refresh { token }),
                _ => Err("refresh needs a string \"token\" (a new room token)".to_owned()),
            }
        }
        "offer" => RelayKind::Offer,
        "answer" => RelayKind::Answer,
        "candidate" => RelayKind::Candidate,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(format!(
                "unknown type {shown:?} (join, leave, ping, refresh, offer, answer, candidate)"
            ));
        }
    };
    let to = match body.get("to") {
        Some(Value::String(to)) if !to.is_empty() => to.clone(),
        _ => return Err(format!("{} needs a string \"to\"", relay.as_str())),
    };
    // The server says who sent it; a client-supplied `from` is overwritten by `relayed`.
    body.remove("from");
    Ok(Inbound::Relay {
        kind: relay,
        to,
        body,
    })
}

/// The forwarded form of a relay message: the client's object with `from` set.
pub fn relayed(mut body: Map<String, Value>, from: &str) -> Utf8Bytes {
    body.insert("from".to_owned(), Value::String(from.to_owned()));
    Value::Object(body).to_string().into()
}

pub fn welcome<'a>(you: &str, peers: impl Iterator<Item = &'a str>, room: &str) -> Utf8Bytes {
    let mut peers: Vec<&str> = peers.collect();
    peers.sort_unstable();
    json!({"type": "welcome", "you": you, "peers": peers, "room": room})
        .to_string()
        .into()
}

pub fn peer_joined(id: &str) -> Utf8Bytes {
    json!({"type": "peer-joined", "id": id}).to_string().into()
}

pub fn peer_left(id: &str) -> Utf8Bytes {
    json!({"type": "peer-left", "id": id}).to_string().into()
}

pub fn pong() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"type":"pong"}"#)
}

/// Sent once, shortly before the connection's token expires: fetch a new one and `refresh`.
pub fn token_expiring(expires_in: u64) -> Utf8Bytes {
    json!({"type": "token_expiring", "expires_in": expires_in})
        .to_string()
        .into()
}

/// The answer to an accepted `refresh`.
pub fn refreshed(expires_in: u64) -> Utf8Bytes {
    json!({"type": "refreshed", "expires_in": expires_in})
        .to_string()
        .into()
}

/// `error` `room_moved` with the URL to reconnect to (`…/v1/signal?room=R`; add the token).
pub fn room_moved(location: &str) -> Utf8Bytes {
    let code = ErrorCode::RoomMoved.as_str();
    let message = "the room moved to another controller replica; reconnect to location";
    json!({"type": "error", "code": code, "message": message, "location": location})
        .to_string()
        .into()
}

pub fn error(code: ErrorCode, message: &str) -> Utf8Bytes {
    json!({"type": "error", "code": code.as_str(), "message": message})
        .to_string()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages_keep_their_payload_and_get_the_server_from() {
        let m = parse(r#"{"type":"offer","to":"bob","from":"mallory","sdp":{"x":[1,2]}}"#)
            .expect("parse");
        let Inbound::Relay { kind, to, body } = m else {
            panic!("not a relay: {m:?}");
        };
        assert_eq!((kind, to.as_str()), (RelayKind::Offer, "bob"));
        let out: Value = serde_json::from_str(&relayed(body, "alice")).expect("json");
        assert_eq!(
            out,
            json!({"type":"offer","to":"bob","from":"alice","sdp":{"x":[1,2]}})
        );
    }

    #[test]
    fn control_messages() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(Inbound::Ping));
        assert_eq!(parse(r#"{"type":"leave","extra":1}"#), Ok(Inbound::Leave));
        assert_eq!(parse(r#"{"type":"join"}"#), Ok(Inbound::Join));
        assert_eq!(
            parse(r#"{"type":"refresh","token":"nxt_x"}"#),
            Ok(Inbound::Refresh {
                token: "nxt_x".into()
            })
        );
    }

    #[test]
    fn malformed_messages_are_explained_not_panicked_on() {
        for bad in [
            "",
            "not json",
            "[1,2]",
            "\"offer\"",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"candidate","to":""}"#,
            r#"{"type":"answer","to":7}"#,
            r#"{"type":"dance","to":"bob"}"#,
            "{\"type\":\"offer\",\"to\":\"b\"",
            r#"{"type":"refresh"}"#,
            r#"{"type":"refresh","token":""}"#,
            r#"{"type":"refresh","token":5}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_messages() {
        let w: Value =
            serde_json::from_str(&welcome("al", ["zed", "bob"].into_iter(), "r")).expect("json");
        assert_eq!(
            w,
            json!({"type":"welcome","you":"al","peers":["bob","zed"],"room":"r"})
        );
        let e: Value = serde_json::from_str(&error(ErrorCode::RoomFull, "full")).expect("json");
        assert_eq!(
            e,
            json!({"type":"error","code":"room_full","message":"full"})
        );
        assert_eq!(&*pong(), r#"{"type":"pong"}"#);
    }
}
