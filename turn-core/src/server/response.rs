//! Building answers, and replaying them for retransmitted requests.
//!
//! Over UDP a client retransmits a request whose answer was lost, with the same
//! transaction id. Answering it again from scratch would be wrong for Allocate
//! (the allocation exists now: 437) and for Refresh with lifetime 0 (it is gone:
//! 437), so authenticated answers are kept for the retransmission window
//! (RFC 8489 §6.3: 39.5 s with the default RTO) and sent again byte for byte.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::net::ClientSocket;
use crate::stun::TransactionId;

/// RFC 8489 §6.2.1: the last retransmission of a request is sent 39.5 s after
/// the first with the default RTO of 500 ms.
const RETRANSMIT_WINDOW: Duration = Duration::from_secs(40);
/// Upper bound of kept answers (about 150 bytes each).
const CAPACITY: usize = 65_536;

type Key = (ClientSocket, TransactionId);

#[derive(Default)]
pub(super) struct ResponseCache {
    answers: FxHashMap<Key, Vec<u8>>,
    /// Insertion order with expiry; entries expire in that same order.
    order: VecDeque<(Instant, Key)>,
}

impl ResponseCache {
    pub(super) fn get(&self, client: ClientSocket, txid: TransactionId) -> Option<&[u8]> {
        self.answers.get(&(client, txid)).map(Vec::as_slice)
    }

    pub(super) fn insert(
        &mut self,
        client: ClientSocket,
        txid: TransactionId,
        answer: Vec<u8>,
        now: Instant,
    ) {
        if self.answers.len() >= CAPACITY {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
        if self.answers.insert((client, txid), answer).is_none() {
            self.order
                .push_back((now + RETRANSMIT_WINDOW, (client, txid)));
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((expires, key)) = self.order.front() {
            if *expires > now {
                break;
            }
            self.answers.remove(key);
            self.order.pop_front();
        }
    }
}

/// Standard reason phrases (RFC 8489 §14.8, RFC 8656 §18).
pub(super) fn reason(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthenticated",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}
