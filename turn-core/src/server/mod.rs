//! The TURN server state machine (RFC 8656 over RFC 8489), sans-IO.
//!
//! See the crate docs for how the shell drives it. Requests live in
//! `requests.rs`; this file holds the state, the data paths and the polls.

mod allocation;
mod fast;
mod ledger;
mod mux;
mod requests;
mod response;
mod table;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::auth::{Credentials, Nonces};
use crate::config::Config;
use crate::net::{ClientSocket, Now, RelayHandle};
use crate::ratelimit::AnswerLimiter;
use crate::stats::{DropReason, MethodLabel, Stats};
use crate::stun::{
    self, attr, channel_data_header, is_channel_data, parse_channel_data, Class, Message, Method,
    TransactionId,
};

use allocation::Allocation;
pub use fast::FastFlow;
pub use ledger::{AllocationLedger, QuotaRefusal};
use response::ResponseCache;

/// Identifies an Allocate waiting for its relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocationRequestId(pub u64);

/// Address family of a relayed transport address (RFC 6156).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// Which port the relay socket should have (EVEN-PORT and RESERVATION-TOKEN,
/// RFC 8656 §14.6, §14.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    Any,
    /// An even port; with `reserve_next`, also hold port + 1 and return a token.
    Even {
        reserve_next: bool,
    },
    /// The port held under this token by an earlier `Even { reserve_next: true }`.
    Reserved {
        token: [u8; 8],
    },
}

/// What the shell bound for an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayBinding {
    pub handle: RelayHandle,
    /// The relayed transport address clients and peers see (the external IP, if
    /// one is configured).
    pub addr: SocketAddr,
    /// Token for port + 1 when the request was `Even { reserve_next: true }`.
    pub reservation: Option<[u8; 8]>,
    /// The socket is shared by many allocations (multiplexed relaying, see
    /// the `mux` docs): peers are told apart by address, and the core never
    /// asks to free it.
    pub shared: bool,
}

/// Why the shell could not bind a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    NoPorts,
    UnknownToken,
    Unsupported,
}

/// Effects other than sending to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Bind a relay socket; answer with [`Server::relay_bound`].
    BindRelay {
        request: AllocationRequestId,
        family: Family,
        port: PortRequest,
    },
    /// The allocation is gone: close its relay socket.
    FreeRelay { relay: RelayHandle },
    /// The shell may relay this channel itself until its `expires` (see `fast`); an
    /// offer for a flow already offered replaces it.
    FlowUp(FastFlow),
    /// The shell must stop relaying channel `channel` of `client` itself (see `fast`).
    FlowDown { client: ClientSocket, channel: u16 },
}

/// A control-path message to a client (a response or a Data indication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: ClientSocket,
    pub data: Vec<u8>,
}

/// What to do with a client packet after [`Server::handle_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Send `packet[payload]` from relay socket `relay` to `peer`.
    Forward {
        relay: RelayHandle,
        peer: SocketAddr,
        payload: Range<usize>,
    },
    /// Nothing to forward (answers, if any, wait in [`Server::poll_transmit`]).
    Done,
}

/// What to do with a peer datagram after [`Server::handle_peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    /// Write `header` into the 4 bytes before the payload and send both to
    /// `client` (padded with zeros to a multiple of 4 on stream transports).
    ToClient {
        client: ClientSocket,
        header: [u8; 4],
    },
    /// Nothing to send now (a Data indication, if any, waits in `poll_transmit`).
    Done,
}

/// An Allocate waiting for the shell to bind its relay socket.
struct PendingAllocate {
    client: ClientSocket,
    ctx: requests::Ctx,
    lifetime: Duration,
    username: String,
    tenant: String,
    user: String,
    additional_family_refused: bool,
}

/// How often expired allocations, permissions and channels are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The TURN server of one worker. See the crate docs for the driving loop.
pub struct Server {
    config: Config,
    credentials: Arc<Credentials>,
    nonces: Nonces,
    /// Revoked usernames and the unix time until which they stay refused.
    revoked: FxHashMap<String, u64>,
    stats: Arc<Stats>,

    allocations: Vec<Option<Allocation>>,
    free_slots: Vec<u32>,
    by_client: FxHashMap<ClientSocket, u32>,
    by_relay: FxHashMap<RelayHandle, u32>,
    /// Routes of shared relay sockets.
    mux: mux::Mux,
    /// Some allocation has ever used a shared socket.
    multiplexed: bool,
    pending: FxHashMap<AllocationRequestId, PendingAllocate>,
    next_request: u64,
    /// Live (and pending) allocations per tenant, per (tenant, user) and in
    /// total, for quotas: shared with the other workers' servers.
    ledger: Arc<AllocationLedger>,

    responses: ResponseCache,
    unauthenticated: AnswerLimiter,
    transmits: VecDeque<Transmit>,
    commands: VecDeque<Command>,
    /// Flows offered to the shell and when each ends (see `fast`).
    offered: FxHashMap<(ClientSocket, u16), Instant>,
    next_sweep: Option<Instant>,
    draining: bool,
    rng: u64,
}

impl Server {
    pub fn new(config: Config, credentials: Arc<Credentials>, now: Instant) -> Server {
        let nonces = Nonces::new(config.nonce_key);
        let unauthenticated = AnswerLimiter::new(config.unauthenticated, now);
        // Seed for Data indication transaction ids (RFC 8489 §5: unpredictable
        // enough that an off-path attacker cannot guess them).
        let rng = config
            .nonce_key
            .chunks(8)
            .fold(0x9E37_79B9_7F4A_7C15u64, |acc, c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                acc.rotate_left(17) ^ u64::from_le_bytes(b)
            })
            | 1;
        let ledger = config.ledger.clone().unwrap_or_default();
        Server {
            config,
            credentials,
            nonces,
            revoked: FxHashMap::default(),
            stats: Arc::new(Stats::default()),
            allocations: Vec::new(),
            free_slots: Vec::new(),
            by_client: FxHashMap::default(),
            by_relay: FxHashMap::default(),
            mux: mux::Mux::default(),
            multiplexed: false,
            pending: FxHashMap::default(),
            next_request: 0,
            ledger,
            responses: ResponseCache::default(),
            unauthenticated,
            transmits: VecDeque::new(),
            commands: VecDeque::new(),
            offered: FxHashMap::default(),
            next_sweep: None,
            draining: false,
            rng,
        }
    }

    /// Handles one packet from a client: a UDP datagram, or one frame of a TCP
    /// or TLS stream (cut with [`stun::frame_len`]).
    pub fn handle_client(&mut self, from: ClientSocket, packet: &[u8], now: Now) -> ClientAction {
        if is_channel_data(packet) {
            return self.client_channel_data(from, packet, now.mono);
        }
        let msg = match Message::parse(packet) {
            Ok(msg) => msg,
            Err(_) => {
                self.count_drop(DropReason::Malformed);
                return ClientAction::Done;
            }
        };
        if msg.fingerprint_ok() == Some(false) {
            self.count_drop(DropReason::BadFingerprint);
            return ClientAction::Done;
        }
        self.arm_sweep(now.mono);
        match (msg.class(), msg.method()) {
            (Class::Indication, Method::SEND) => {
                self.stats.request(MethodLabel::Send).inc();
                self.send_indication(from, &msg, packet, now.mono)
            }
            (Class::Request, method) => {
                self.handle_request(from, &msg, method, now);
                ClientAction::Done
            }
            // Binding indications are keep-alives (RFC 8489 §6.3.2): no answer.
            (Class::Indication, Method::BINDING) => ClientAction::Done,
            _ => {
                self.count_drop(DropReason::UnexpectedMessage);
                ClientAction::Done
            }
        }
    }

    /// Client → peer over a channel: the hot path. No allocation, no lock.
    #[inline]
    fn client_channel_data(
        &mut self,
        from: ClientSocket,
        packet: &[u8],
        now: Instant,
    ) -> ClientAction {
        let Ok(data) = parse_channel_data(packet) else {
            self.count_drop(DropReason::Malformed);
            return ClientAction::Done;
        };
        let Some(alloc) = self
            .by_client
            .get(&from)
            .and_then(|&slot| self.allocations.get_mut(slot as usize))
            .and_then(Option::as_mut)
        else {
            return self.drop_client(DropReason::NoAllocation);
        };
        let Some(channel) = alloc.channel(data.channel, now) else {
            return self.drop_client(DropReason::NoChannel);
        };
        let peer = channel.peer;
        // A channel to one of the relay's own addresses was checked at
        // ChannelBind against the ports the relay held then; the port may
        // have been released since (and taken by another process), so it is
        // checked again here. Other peers cost one flag test.
        if channel.own && !self.config.peer_filter.check(peer) {
            return self.drop_client(DropReason::DeniedPeer);
        }
        if !alloc.has_permission(peer.ip(), now) {
            return self.drop_client(DropReason::NoPermission);
        }
        let len = data.payload.len();
        if let Some(budget) = alloc.to_peer_budget.as_mut() {
            if !budget.take(len as u64, now) {
                return self.drop_client(DropReason::BandwidthExceeded);
            }
        }
        alloc.traffic().to_peer.record(len);
        ClientAction::Forward {
            relay: alloc.relay,
            peer,
            payload: 4..4 + len,
        }
    }

    /// A Send indication (RFC 8656 §11.2): never answered; dropped if anything
    /// is wrong.
    fn send_indication(
        &mut self,
        from: ClientSocket,
        msg: &Message<'_>,
        packet: &[u8],
        now: Instant,
    ) -> ClientAction {
        let txid = msg.transaction_id();
        let peer = msg
            .attribute(attr::XOR_PEER_ADDRESS)
            .and_then(|a| stun::decode_xor_address(a.value, &txid).ok());
        let data = msg.attribute(attr::DATA);
        let (Some(peer), Some(data)) = (peer, data) else {
            return self.drop_client(DropReason::Malformed);
        };
        // The DATA value is a sub-slice of `packet`: forward it in place.
        let start = data.value.as_ptr() as usize - packet.as_ptr() as usize;
        let len = data.value.len();
        let filter_ok = self.config.peer_filter.check(peer);
        let Some(alloc) = self.allocation_of_mut(&from) else {
            return self.drop_client(DropReason::NoAllocation);
        };
        if Family::of(&peer) != Family::of(&alloc.relay_addr) || !filter_ok {
            return self.drop_client(DropReason::DeniedPeer);
        }
        if !alloc.has_permission(peer.ip(), now) {
            return self.drop_client(DropReason::NoPermission);
        }
        if alloc.shared && !self.claim_peer(&from, peer) {
            return self.drop_client(DropReason::PeerTaken);
        }
        let Some(alloc) = self.allocation_of_mut(&from) else {
            return self.drop_client(DropReason::NoAllocation);
        };
        if let Some(budget) = alloc.to_peer_budget.as_mut() {
            if !budget.take(len as u64, now) {
                return self.drop_client(DropReason::BandwidthExceeded);
            }
        }
        alloc.traffic().to_peer.record(len);
        ClientAction::Forward {
            relay: alloc.relay,
            peer,
            payload: start..start + len,
        }
    }

    /// Handles a datagram that relay socket `relay` received from `peer`.
    /// Over a channel this is the hot path: the answer is a 4-byte header for
    /// the shell to write in front of the payload it already holds.
    #[inline]
    pub fn handle_peer(
        &mut self,
        relay: RelayHandle,
        peer: SocketAddr,
        payload: &[u8],
        now: Now,
    ) -> PeerAction {
        let now = now.mono;
        let slot = match self.by_relay.get(&relay) {
            Some(&slot) => slot,
            None if self.multiplexed => match self.mux.route(relay, peer) {
                mux::Route::To(slot) => slot,
                mux::Route::Nobody => {
                    self.count_drop(DropReason::NoPermission);
                    return PeerAction::Done;
                }
                mux::Route::Ambiguous => {
                    self.count_drop(DropReason::AmbiguousPeer);
                    return PeerAction::Done;
                }
            },
            None => {
                self.count_drop(DropReason::NoAllocation);
                return PeerAction::Done;
            }
        };
        let Some(alloc) = self
            .allocations
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
        else {
            self.count_drop(DropReason::NoAllocation);
            return PeerAction::Done;
        };
        // RFC 8656 §10.3: data from a peer without a permission is dropped.
        if !alloc.has_permission(peer.ip(), now) {
            self.count_drop(DropReason::NoPermission);
            return PeerAction::Done;
        }
        let len = payload.len();
        if let Some(budget) = alloc.to_client_budget.as_mut() {
            if !budget.take(len as u64, now) {
                self.count_drop(DropReason::BandwidthExceeded);
                return PeerAction::Done;
            }
        }
        let client = alloc.client;
        if let Some(channel) = alloc.channel_of(peer, now) {
            if len > usize::from(u16::MAX) {
                self.count_drop(DropReason::FrameTooLarge);
                return PeerAction::Done;
            }
            alloc.traffic().to_client.record(len);
            return PeerAction::ToClient {
                client,
                header: channel_data_header(channel, len as u16),
            };
        }
        // No channel: a Data indication (RFC 8656 §11.3), built on the control path.
        if len > usize::from(u16::MAX) - 64 {
            self.count_drop(DropReason::FrameTooLarge);
            return PeerAction::Done;
        }
        alloc.traffic().to_client.record(len);
        let txid = self.random_txid();
        let mut b = stun::MessageBuilder::new(Method::DATA, Class::Indication, txid);
        b.xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attribute(attr::DATA, payload);
        self.transmits.push_back(Transmit {
            to: client,
            data: b.finish(),
        });
        PeerAction::Done
    }

    /// The shell's answer to [`Command::BindRelay`].
    pub fn relay_bound(
        &mut self,
        request: AllocationRequestId,
        result: Result<RelayBinding, BindFailure>,
        now: Now,
    ) {
        let Some(pending) = self.pending.remove(&request) else {
            // The client went away meanwhile: give the socket back.
            if let Ok(binding) = result {
                self.commands.push_back(Command::FreeRelay {
                    relay: binding.handle,
                });
            }
            return;
        };
        self.finish_allocate(pending, result, now);
    }

    /// A TCP or TLS client connection closed: its allocation goes with it
    /// (RFC 8656 §3.1).
    pub fn client_closed(&mut self, client: ClientSocket, now: Now) {
        if let Some(&slot) = self.by_client.get(&client) {
            self.delete_allocation(slot, now.mono);
        }
        let gone: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                self.release_quota(&p.tenant, &p.user);
            }
        }
    }

    /// Expires allocations, permissions and channels, and forgets stale state.
    pub fn handle_timeout(&mut self, now: Now) {
        let mono = now.mono;
        if self.next_sweep.is_some_and(|t| t > mono) {
            return;
        }
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        let mut unpermit = Vec::new();
        for (slot, alloc) in self.allocations.iter_mut().enumerate() {
            let Some(alloc) = alloc else { continue };
            if alloc.expires <= mono {
                expired.push((slot as u32, alloc.expires));
            } else {
                alloc.expire(mono, &self.stats, &mut gone);
                for ip in gone.drain(..) {
                    unpermit.push((alloc.relay, ip, slot as u32));
                }
            }
        }
        for (relay, ip, slot) in unpermit {
            // This allocation no longer permits `ip`, so any match is another.
            let others = &self.allocations;
            self.mux
                .unpermit(relay, ip, slot, || find_permitting(others, relay, ip, slot));
        }
        // An expired allocation ended when its lifetime ran out, not at this sweep.
        for (slot, ended) in expired {
            self.delete_allocation(slot, ended);
        }
        self.withdraw_ended_flows(mono);
        self.responses.expire(mono);
        self.unauthenticated.prune(mono);
        self.revoked.retain(|_, until| *until > now.unix_secs);
        self.next_sweep = None;
        self.arm_sweep(mono);
    }

    /// When [`Server::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Replaces every tenant's secrets at once (file reload or controller push).
    /// Takes effect for the next request; live allocations are kept.
    pub fn set_credentials(&mut self, credentials: Arc<Credentials>) {
        self.credentials = credentials;
    }

    /// Refuses `username` (a full REST username) until `until_unix`, and
    /// ends its live allocations now: their relay sockets are freed (see
    /// [`Server::poll_command`]), their quotas released, and packets on them
    /// dropped from here on (counted in `allocations_revoked`). Its requests
    /// get 401, so it cannot allocate again.
    pub fn revoke(&mut self, username: &str, until_unix: u64, now: Instant) {
        self.revoked.insert(username.to_owned(), until_unix);
        let revoked: Vec<u32> = self
            .allocations
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_some_and(|a| a.username == username))
            .map(|(slot, _)| slot as u32)
            .collect();
        for slot in revoked {
            self.delete_allocation(slot, now);
            self.stats.allocations_revoked.inc();
        }
        // An Allocate waiting for its relay socket: the socket is given back
        // when it comes (`relay_bound` finds no pending request).
        let pending: Vec<AllocationRequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.username == username)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            if let Some(p) = self.pending.remove(&id) {
                self.release_quota(&p.tenant, &p.user);
            }
        }
    }

    /// Stops accepting allocations: new Allocates get 300 ALTERNATE-SERVER
    /// (RFC 8489 §10) to `alternate`, or to the configured alternate when
    /// `None`, and 508 when there is neither. Live allocations keep running.
    pub fn start_drain(&mut self, alternate: Option<SocketAddr>) {
        self.draining = true;
        if alternate.is_some() {
            self.config.alternate_server = alternate;
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether `client` has an allocation (or one being set up).
    pub fn has_allocation(&self, client: &ClientSocket) -> bool {
        self.by_client.contains_key(client) || self.pending.values().any(|p| p.client == *client)
    }

    pub fn allocation_count(&self) -> usize {
        self.by_client.len()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- internals shared with requests.rs ----

    #[inline]
    fn allocation_of_mut(&mut self, client: &ClientSocket) -> Option<&mut Allocation> {
        let slot = *self.by_client.get(client)?;
        self.allocations.get_mut(slot as usize)?.as_mut()
    }

    fn allocation_of(&self, client: &ClientSocket) -> Option<&Allocation> {
        let slot = *self.by_client.get(client)?;
        self.allocations.get(slot as usize)?.as_ref()
    }

    #[inline]
    fn count_drop(&self, reason: DropReason) {
        self.stats.dropped(reason).inc();
    }

    #[inline]
    fn drop_client(&self, reason: DropReason) -> ClientAction {
        self.count_drop(reason);
        ClientAction::Done
    }

    fn arm_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
    }

    fn insert_allocation(&mut self, alloc: Allocation) -> u32 {
        let client = alloc.client;
        let relay = alloc.relay;
        let shared = alloc.shared;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.allocations[slot as usize] = Some(alloc);
                slot
            }
            None => {
                self.allocations.push(Some(alloc));
                (self.allocations.len() - 1) as u32
            }
        };
        self.by_client.insert(client, slot);
        if shared {
            self.multiplexed = true;
        } else {
            self.by_relay.insert(relay, slot);
        }
        slot
    }

    /// Deletes the allocation in `slot`, which ended at `at`.
    fn delete_allocation(&mut self, slot: u32, at: Instant) {
        let Some(alloc) = self
            .allocations
            .get_mut(slot as usize)
            .and_then(Option::take)
        else {
            return;
        };
        self.free_slots.push(slot);
        self.by_client.remove(&alloc.client);
        if !self.offered.is_empty() {
            let channels: Vec<u16> = alloc.channels.iter().map(|c| c.number).collect();
            self.withdraw_flows_of(alloc.client, &channels);
        }
        alloc.release(&self.stats, at);
        self.release_quota(&alloc.tenant, &alloc.user);
        if alloc.shared {
            let relay = alloc.relay;
            for ip in alloc.permissions.ips() {
                let others = &self.allocations;
                self.mux
                    .unpermit(relay, ip, slot, || find_permitting(others, relay, ip, slot));
            }
            for peer in &alloc.claims {
                self.mux.unclaim(relay, *peer, slot);
            }
        } else {
            self.by_relay.remove(&alloc.relay);
            self.commands
                .push_back(Command::FreeRelay { relay: alloc.relay });
        }
    }

    /// Shared socket: claims `peer` for `client`'s allocation (see `mux`);
    /// `false` when another allocation on the socket holds it.
    fn claim_peer(&mut self, client: &ClientSocket, peer: SocketAddr) -> bool {
        let Some(&slot) = self.by_client.get(client) else {
            return false;
        };
        let Some(alloc) = self
            .allocations
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
        else {
            return false;
        };
        match self.mux.claimant(alloc.relay, peer) {
            Some(s) => s == slot,
            None => {
                if alloc.claims.len() < mux::MAX_CLAIMS {
                    alloc.claims.push(peer);
                    self.mux.claim(alloc.relay, peer, slot);
                }
                true
            }
        }
    }

    /// A new permission of allocation `slot` for `ip` (shared sockets route by it).
    fn permitted(&mut self, slot: u32, relay: RelayHandle, ip: std::net::IpAddr) {
        self.mux.permit(relay, ip, slot);
    }

    /// Routing entries of shared sockets: (claimed peer addresses, peer IPs).
    pub fn multiplex_routes(&self) -> (usize, usize) {
        self.mux.len()
    }

    fn release_quota(&mut self, tenant: &str, user: &str) {
        self.ledger.release(tenant, user);
    }

    fn random_txid(&mut self) -> TransactionId {
        let mut id = [0u8; 12];
        for chunk in id.chunks_mut(4) {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let v = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            chunk.copy_from_slice(&v.to_le_bytes()[..4]);
        }
        TransactionId(id)
    }
}

/// An allocation other than `except` on shared socket `relay` that permits `ip`.
fn find_permitting(
    allocations: &[Option<Allocation>],
    relay: RelayHandle,
    ip: std::net::IpAddr,
    except: u32,
) -> Option<u32> {
    allocations.iter().enumerate().find_map(|(i, a)| {
        let a = a.as_ref()?;
        (i as u32 != except && a.shared && a.relay == relay && a.permissions.contains(ip))
            .then_some(i as u32)
    })
}
