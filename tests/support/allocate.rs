//! One TURN Allocate over UDP with the shared test client: tells "allocated" from
//! "refused with code N" from "no answer" within about two seconds, without the
//! minutes of retries a full client library would spend.

use std::net::SocketAddr;
use std::time::Duration;

use turn_core::stun::{attr, Method};

use super::TurnClient;

/// How an Allocate ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocateOutcome {
    /// Success (the allocation was released again with a Refresh of lifetime 0).
    Allocated,
    /// An error response: its code and ALTERNATE-SERVER, if any.
    Refused {
        code: u16,
        reason: String,
        alternate: Option<SocketAddr>,
    },
    /// No answer within the time limit.
    NoAnswer,
}

/// A UDP Allocate at `server` with long-term (REST) credentials: first
/// unauthenticated to learn realm and nonce, then authenticated. Each request
/// is sent up to five times, 400 ms apart.
pub fn try_allocate(server: SocketAddr, username: &str, password: &str) -> AllocateOutcome {
    let mut client = TurnClient::udp(server, username, password)
        .with_timeouts(Duration::from_millis(400), Duration::from_secs(2));
    let Ok(answer) = client.try_allocate() else {
        return AllocateOutcome::NoAnswer;
    };
    if answer.code() == 200 {
        // Release it: a Refresh with LIFETIME 0.
        let _ = client.try_request(Method::REFRESH, |b| {
            b.u32(attr::LIFETIME, 0);
        });
        return AllocateOutcome::Allocated;
    }
    AllocateOutcome::Refused {
        code: answer.code(),
        reason: answer.reason(),
        alternate: answer.alternate(),
    }
}
