//! STUN/TURN requests: Binding (RFC 8489 §6.3), Allocate (RFC 8656 §7.2),
//! Refresh (§7.4), CreatePermission (§9.2), ChannelBind (§11.2), and the
//! long-term credential checks that precede them (RFC 8489 §9.2.4).

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::Authenticated;
use crate::net::{ClientSocket, Now};
use crate::ratelimit::TokenBucket;
use crate::stats::{AuthFailure, MethodLabel};
use crate::stun::{
    self, attr, Class, IntegrityKind, Message, MessageBuilder, Method, TransactionId,
    CHANNEL_BIND_MAX, CHANNEL_MAX, CHANNEL_MIN,
};

use super::allocation::Allocation;
use super::ledger;
use super::response::reason;
use super::{
    AllocationRequestId, BindFailure, Command, Family, PendingAllocate, PortRequest, RelayBinding,
    Server, Transmit,
};

/// Comprehension-required attributes this server understands in requests
/// (RFC 8489 §6.3.1: any other gets 420 Unknown Attribute). DONT-FRAGMENT is
/// deliberately absent: relay sockets do not set DF, so it is refused.
const KNOWN: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::REALM,
    attr::NONCE,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::RESERVATION_TOKEN,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
];

/// The longest USERNAME accepted, in bytes: RFC 5389 §15.3's limit (fewer
/// than 513), which also admits every RFC 8489 §14.3 username (fewer than 509).
const MAX_USERNAME_LEN: usize = 512;

/// UDP's protocol number in REQUESTED-TRANSPORT (RFC 8656 §14.7).
const PROTOCOL_UDP: u8 = 17;

/// Who asked, and how the answer must be signed.
#[derive(Debug, Clone)]
pub(super) struct Ctx {
    pub(super) client: ClientSocket,
    method: Method,
    txid: TransactionId,
    /// Answer with FINGERPRINT when the request had one.
    fingerprint: bool,
    /// Set once the request is authenticated: answers carry the same kind of
    /// MESSAGE-INTEGRITY with this key and are kept for retransmissions.
    integrity: Option<(IntegrityKind, [u8; 16])>,
}

impl Server {
    pub(super) fn handle_request(
        &mut self,
        from: ClientSocket,
        msg: &Message<'_>,
        method: Method,
        now: Now,
    ) {
        self.stats.request(MethodLabel::of(method)).inc();
        let mut ctx = Ctx {
            client: from,
            method,
            txid: msg.transaction_id(),
            fingerprint: msg.fingerprint_ok().is_some(),
            integrity: None,
        };
        match method {
            Method::BINDING => self.binding(&ctx, msg, now),
            Method::ALLOCATE
            | Method::REFRESH
            | Method::CREATE_PERMISSION
            | Method::CHANNEL_BIND => {
                if let Some(answer) = self.responses.get(from, ctx.txid) {
                    let data = answer.to_vec();
                    self.transmits.push_back(Transmit { to: from, data });
                    return;
                }
                if method == Method::ALLOCATE
                    && self
                        .pending
                        .values()
                        .any(|p| p.client == from && p.ctx.txid == ctx.txid)
                {
                    return; // a retransmission of an Allocate still being set up
                }
                let Some((kind, auth)) = self.authenticate(&ctx, msg, now) else {
                    return;
                };
                ctx.integrity = Some((kind, auth.key));
                let unknown = msg.unknown_required(KNOWN);
                if !unknown.is_empty() {
                    let mut b = self.builder(&ctx, Class::Error);
                    b.error_code(420, reason(420))
                        .unknown_attributes(unknown.as_slice());
                    return self.send(&ctx, b, 420, now);
                }
                match method {
                    Method::ALLOCATE => self.allocate(ctx, msg, auth, now),
                    Method::REFRESH => self.refresh(&ctx, msg, now),
                    Method::CREATE_PERMISSION => self.create_permission(&ctx, msg, now),
                    _ => self.channel_bind(&ctx, msg, now),
                }
            }
            // RFC 8489 §6.3.1: an unknown method in a request is a 400.
            _ => self.unauthenticated_error(&ctx, 400, false, now),
        }
    }

    fn binding(&mut self, ctx: &Ctx, msg: &Message<'_>, now: Now) {
        let unknown = msg.unknown_required(KNOWN);
        let mut b;
        let code;
        if unknown.is_empty() {
            b = self.builder(ctx, Class::Success);
            b.xor_address(attr::XOR_MAPPED_ADDRESS, ctx.client.remote);
            code = 0;
        } else {
            b = self.builder(ctx, Class::Error);
            b.error_code(420, reason(420))
                .unknown_attributes(unknown.as_slice());
            code = 420;
        }
        self.send_unauthenticated(ctx, b, code, now);
    }

    /// RFC 8489 §9.2.4. On failure the answer (401, 438 or 400) is already
    /// queued, rate limited per source.
    fn authenticate(
        &mut self,
        ctx: &Ctx,
        msg: &Message<'_>,
        now: Now,
    ) -> Option<(IntegrityKind, Authenticated)> {
        let Some(kind) = msg.integrity() else {
            self.stats
                .auth_failure(AuthFailure::MissingCredentials)
                .inc();
            self.unauthenticated_error(ctx, 401, true, now);
            return None;
        };
        let text = |typ| {
            msg.attribute(typ)
                .and_then(|a| stun::decode_utf8(a.value).ok())
        };
        let (Some(username), Some(realm), Some(nonce)) =
            (text(attr::USERNAME), text(attr::REALM), text(attr::NONCE))
        else {
            self.stats
                .auth_failure(AuthFailure::MissingCredentials)
                .inc();
            self.unauthenticated_error(ctx, 400, false, now);
            return None;
        };
        // RFC 8489 §14.3: a USERNAME is fewer than 509 bytes (RFC 5389 §15.3
        // allowed fewer than 513); a longer one is malformed: 400, before any
        // key derivation.
        if username.len() > MAX_USERNAME_LEN {
            self.stats.auth_failure(AuthFailure::BadUsername).inc();
            self.unauthenticated_error(ctx, 400, false, now);
            return None;
        }
        let ip = ctx.client.remote.ip();
        if !self.nonces.is_valid(nonce, ip, now.unix_secs) {
            self.stats.auth_failure(AuthFailure::BadNonce).inc();
            self.unauthenticated_error(ctx, 438, true, now);
            return None;
        }
        if realm != self.config.realm {
            self.stats.auth_failure(AuthFailure::WrongRealm).inc();
            self.unauthenticated_error(ctx, 401, true, now);
            return None;
        }
        let auth = match self.credentials.authenticate(msg, username, realm) {
            Ok(auth) => auth,
            Err(failure) => {
                self.stats.auth_failure(failure).inc();
                self.unauthenticated_error(ctx, 401, true, now);
                return None;
            }
        };
        if self
            .revoked
            .get(username)
            .is_some_and(|until| *until > now.unix_secs)
        {
            self.stats.auth_failure(AuthFailure::Revoked).inc();
            self.unauthenticated_error(ctx, 401, true, now);
            return None;
        }
        Some((kind, auth))
    }

    fn allocate(&mut self, ctx: Ctx, msg: &Message<'_>, auth: Authenticated, now: Now) {
        let username = msg
            .attribute(attr::USERNAME)
            .and_then(|a| stun::decode_utf8(a.value).ok())
            .unwrap_or_default()
            .to_owned();
        // RFC 8656 §7.2 step 2: one allocation per 5-tuple.
        if self.by_client.contains_key(&ctx.client)
            || self.pending.values().any(|p| p.client == ctx.client)
        {
            return self.error(&ctx, 437, now);
        }
        // TURN REST: the username carries its expiry (checked on Allocate).
        if auth.expiry <= now.unix_secs {
            self.stats.auth_failure(AuthFailure::Expired).inc();
            let unsigned = Ctx {
                integrity: None,
                ..ctx
            };
            return self.unauthenticated_error(&unsigned, 401, true, now);
        }
        let Some(transport) = msg.attribute(attr::REQUESTED_TRANSPORT) else {
            return self.error(&ctx, 400, now);
        };
        if transport.value.first() != Some(&PROTOCOL_UDP) {
            return self.error(&ctx, 442, now);
        }
        let even = msg.attribute(attr::EVEN_PORT);
        let token = msg.attribute(attr::RESERVATION_TOKEN);
        let family = msg.attribute(attr::REQUESTED_ADDRESS_FAMILY);
        let additional = msg.attribute(attr::ADDITIONAL_ADDRESS_FAMILY);
        if (token.is_some() && (even.is_some() || family.is_some()))
            || (family.is_some() && additional.is_some())
        {
            return self.error(&ctx, 400, now);
        }
        let family = match family.map(|a| a.value) {
            None => Family::V4,
            Some([0x01, ..]) => Family::V4,
            Some([0x02, ..]) => Family::V6,
            Some(_) => return self.error(&ctx, 440, now),
        };
        // ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2) asks for an IPv6 relay
        // address besides the IPv4 one. Dual allocations are not offered: the
        // IPv4 allocation succeeds with ADDRESS-ERROR-CODE 440 for IPv6.
        let additional_family_refused = match additional.map(|a| a.value) {
            None => false,
            Some([0x02, ..]) => true,
            Some(_) => return self.error(&ctx, 400, now),
        };
        let available = match family {
            Family::V4 => self.config.relay_ipv4,
            Family::V6 => self.config.relay_ipv6,
        };
        if !available {
            return self.error(&ctx, 440, now);
        }
        let port = match (even, token) {
            (Some(e), None) => PortRequest::Even {
                reserve_next: e.value.first().is_some_and(|b| b & 0x80 != 0),
            },
            (None, Some(t)) => match <[u8; 8]>::try_from(t.value) {
                Ok(token) => PortRequest::Reserved { token },
                Err(_) => return self.error(&ctx, 400, now),
            },
            _ => PortRequest::Any,
        };
        if self.draining {
            if let Some(alternate) = self.config.alternate_server {
                let mut b = self.builder(&ctx, Class::Error);
                b.error_code(300, reason(300))
                    .address(attr::ALTERNATE_SERVER, alternate);
                return self.send(&ctx, b, 300, now);
            }
            return self.error(&ctx, 508, now);
        }
        match self
            .ledger
            .try_acquire(&auth.tenant, &auth.user, &self.config.quotas)
        {
            Ok(()) => {}
            Err(ledger::QuotaRefusal::Total) => return self.error(&ctx, 508, now),
            Err(ledger::QuotaRefusal::UserOrTenant) => return self.error(&ctx, 486, now),
        }

        let lifetime = self.granted_lifetime(msg);
        let request = AllocationRequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(
            request,
            PendingAllocate {
                client: ctx.client,
                ctx,
                lifetime,
                username,
                tenant: auth.tenant,
                user: auth.user,
                additional_family_refused,
            },
        );
        self.commands.push_back(Command::BindRelay {
            request,
            family,
            port,
        });
    }

    pub(super) fn finish_allocate(
        &mut self,
        pending: PendingAllocate,
        result: Result<RelayBinding, BindFailure>,
        now: Now,
    ) {
        let ctx = pending.ctx;
        let binding = match result {
            Ok(binding) => binding,
            Err(_) => {
                self.release_quota(&pending.tenant, &pending.user);
                return self.error(&ctx, 508, now);
            }
        };
        let stats = self.stats.tenant(&pending.tenant);
        let traffic = stats.transport(ctx.client.transport);
        traffic.allocations_total.inc();
        traffic.allocations_active.inc();
        traffic.lifetimes.start(now.mono);
        let bps = self.config.quotas.allocation_bytes_per_sec;
        let budget = (bps != 0).then(|| TokenBucket::new(bps, bps.max(65_536), now.mono));
        self.insert_allocation(Allocation {
            client: ctx.client,
            relay: binding.handle,
            relay_addr: binding.addr,
            expires: now.mono + pending.lifetime,
            started: now.mono,
            username: pending.username,
            tenant: pending.tenant,
            user: pending.user,
            permissions: Default::default(),
            channels: Default::default(),
            stats,
            to_peer_budget: budget.clone(),
            to_client_budget: budget,
            shared: binding.shared,
            claims: Vec::new(),
        });
        let mut b = self.builder(&ctx, Class::Success);
        b.xor_address(attr::XOR_RELAYED_ADDRESS, binding.addr)
            .u32(attr::LIFETIME, pending.lifetime.as_secs() as u32)
            .xor_address(attr::XOR_MAPPED_ADDRESS, ctx.client.remote);
        if let Some(token) = binding.reservation {
            b.attribute(attr::RESERVATION_TOKEN, &token);
        }
        if pending.additional_family_refused {
            // ADDRESS-ERROR-CODE: family, reserved, class, number, reason.
            let mut value = vec![0x02, 0x00, 4, 40];
            value.extend_from_slice(reason(440).as_bytes());
            b.attribute(attr::ADDRESS_ERROR_CODE, &value);
        }
        self.send(&ctx, b, 0, now);
    }

    fn refresh(&mut self, ctx: &Ctx, msg: &Message<'_>, now: Now) {
        let Some(&slot) = self.by_client.get(&ctx.client) else {
            return self.error(ctx, 437, now);
        };
        let Some(alloc) = self.allocations.get(slot as usize).and_then(Option::as_ref) else {
            return self.error(ctx, 437, now);
        };
        if !same_user(msg, alloc) {
            return self.error(ctx, 441, now);
        }
        let family_mismatch = match msg
            .attribute(attr::REQUESTED_ADDRESS_FAMILY)
            .map(|a| a.value)
        {
            None => false,
            Some([0x01, ..]) => Family::of(&alloc.relay_addr) != Family::V4,
            Some([0x02, ..]) => Family::of(&alloc.relay_addr) != Family::V6,
            Some(_) => true,
        };
        if family_mismatch {
            return self.error(ctx, 443, now);
        }
        // RFC 8656 §8.2: a Refresh grants as an Allocate does (§7.2); 0 deletes.
        let lifetime = if self.requested_lifetime(msg) == Some(Duration::ZERO) {
            self.delete_allocation(slot, now.mono);
            Duration::ZERO
        } else {
            self.granted_lifetime(msg)
        };
        if let Some(alloc) = self
            .allocations
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
        {
            alloc.expires = now.mono + lifetime;
        }
        if lifetime != Duration::ZERO {
            self.offer_flows(slot, now.mono);
        }
        let mut b = self.builder(ctx, Class::Success);
        b.u32(attr::LIFETIME, lifetime.as_secs() as u32);
        self.send(ctx, b, 0, now);
    }

    fn create_permission(&mut self, ctx: &Ctx, msg: &Message<'_>, now: Now) {
        let mut peers: Vec<IpAddr> = Vec::new();
        for a in msg.attributes().filter(|a| a.typ == attr::XOR_PEER_ADDRESS) {
            match stun::decode_xor_address(a.value, &ctx.txid) {
                Ok(peer) => peers.push(peer.ip()),
                Err(_) => return self.error(ctx, 400, now),
            }
        }
        let Some(alloc) = self.allocation_of(&ctx.client) else {
            return self.error(ctx, 437, now);
        };
        if !same_user(msg, alloc) {
            return self.error(ctx, 441, now);
        }
        if peers.is_empty() {
            return self.error(ctx, 400, now);
        }
        let relay_v4 = alloc.relay_addr.is_ipv4();
        if peers.iter().any(|ip| ip.is_ipv4() != relay_v4) {
            return self.error(ctx, 443, now);
        }
        if !peers.iter().all(|ip| self.config.peer_filter.check_ip(*ip)) {
            return self.error(ctx, 403, now);
        }
        let quota = self.config.quotas.permissions_per_allocation;
        if alloc.permission_quota_exceeded(&peers, quota) {
            return self.error(ctx, 508, now);
        }
        let expires = now.mono + self.config.permission_lifetime;
        let stats = self.stats.clone();
        let slot = self.by_client.get(&ctx.client).copied();
        let mut new = Vec::new();
        if let Some(alloc) = self.allocation_of_mut(&ctx.client) {
            for ip in peers {
                if alloc.permit(ip, expires, &stats) && alloc.shared {
                    new.push((alloc.relay, ip));
                }
            }
        }
        for (relay, ip) in new {
            if let Some(slot) = slot {
                self.permitted(slot, relay, ip);
            }
        }
        if let Some(slot) = slot {
            self.offer_flows(slot, now.mono);
        }
        let b = self.builder(ctx, Class::Success);
        self.send(ctx, b, 0, now);
    }

    fn channel_bind(&mut self, ctx: &Ctx, msg: &Message<'_>, now: Now) {
        let number = msg
            .attribute(attr::CHANNEL_NUMBER)
            .and_then(|a| stun::decode_channel_number(a.value).ok());
        let peer = msg
            .attribute(attr::XOR_PEER_ADDRESS)
            .and_then(|a| stun::decode_xor_address(a.value, &ctx.txid).ok());
        let Some(alloc) = self.allocation_of(&ctx.client) else {
            return self.error(ctx, 437, now);
        };
        if !same_user(msg, alloc) {
            return self.error(ctx, 441, now);
        }
        let (Some(number), Some(peer)) = (number, peer) else {
            return self.error(ctx, 400, now);
        };
        // RFC 8656 §12.2: a number outside 0x4000–0x4FFF is a 400; up to
        // 0x7FFF is accepted unless `strict_channel_numbers`, as RFC 5766 §11.2
        // allowed and clients still use.
        let max = if self.config.strict_channel_numbers {
            CHANNEL_BIND_MAX
        } else {
            CHANNEL_MAX
        };
        if !(CHANNEL_MIN..=max).contains(&number) {
            return self.error(ctx, 400, now);
        }
        if peer.is_ipv4() != alloc.relay_addr.is_ipv4() {
            return self.error(ctx, 443, now);
        }
        if !self.config.peer_filter.check(peer) {
            return self.error(ctx, 403, now);
        }
        if alloc.channel_conflict(number, peer, now.mono) {
            return self.error(ctx, 400, now);
        }
        // A shared relayed address: the peer address must not be another
        // allocation's (see `mux`), or its answers could not be routed.
        if alloc.shared && !self.claim_peer(&ctx.client, peer) {
            return self.error(ctx, 403, now);
        }
        let Some(alloc) = self.allocation_of(&ctx.client) else {
            return self.error(ctx, 437, now);
        };
        let quota = self.config.quotas.permissions_per_allocation;
        if alloc.permission_quota_exceeded(&[peer.ip()], quota) {
            return self.error(ctx, 508, now);
        }
        // RFC 8656 §12.2: a valid request the server cannot fulfil "due to
        // some capacity limit" gets 508 (Insufficient Capacity); 486 is for
        // allocations only (§18). Refreshing a bound channel is always allowed.
        let channels = self.config.quotas.channels_per_allocation;
        if channels != 0
            && alloc.channels.len() >= channels as usize
            && !alloc.channels.contains(number)
        {
            return self.error(ctx, 508, now);
        }
        let channel_expires = now.mono + self.config.channel_lifetime;
        let permission_expires = now.mono + self.config.permission_lifetime;
        let stats = self.stats.clone();
        let own = self.config.peer_filter.is_own(peer.ip());
        if let Some(alloc) = self.allocation_of_mut(&ctx.client) {
            alloc.bind_channel(number, peer, own, channel_expires, &stats);
            // RFC 8656 §11.2: binding a channel installs or refreshes the
            // permission for the peer's IP.
            let new = alloc.permit(peer.ip(), permission_expires, &stats);
            let relay = alloc.relay;
            if new && alloc.shared {
                if let Some(&slot) = self.by_client.get(&ctx.client) {
                    self.permitted(slot, relay, peer.ip());
                }
            }
        }
        if let Some(&slot) = self.by_client.get(&ctx.client) {
            self.offer_flows(slot, now.mono);
        }
        let b = self.builder(ctx, Class::Success);
        self.send(ctx, b, 0, now);
    }

    /// The lifetime granted for a request's LIFETIME (RFC 8656 §7.2):
    /// max(default, min(requested, maximum)), the default when absent.
    fn granted_lifetime(&self, msg: &Message<'_>) -> Duration {
        let (default, max) = (self.config.default_lifetime, self.config.max_lifetime);
        self.requested_lifetime(msg)
            .map_or(default, |l| l.min(max).max(default))
    }

    fn requested_lifetime(&self, msg: &Message<'_>) -> Option<Duration> {
        msg.attribute(attr::LIFETIME)
            .and_then(|a| stun::decode_u32(a.value).ok())
            .map(|s| Duration::from_secs(u64::from(s)))
    }

    // ---- answers ----

    fn builder(&self, ctx: &Ctx, class: Class) -> MessageBuilder {
        let mut b = MessageBuilder::new(ctx.method, class, ctx.txid);
        if let Some(software) = &self.config.software {
            b.attribute(attr::SOFTWARE, software.as_bytes());
        }
        b
    }

    /// An error answer to an authenticated request (signed, kept for
    /// retransmissions).
    fn error(&mut self, ctx: &Ctx, code: u16, now: Now) {
        let mut b = self.builder(ctx, Class::Error);
        b.error_code(code, reason(code));
        self.send(ctx, b, code, now);
    }

    /// An answer sent before (or instead of) authentication: 400, 401 or 438,
    /// with REALM and a fresh NONCE when `challenge`.
    fn unauthenticated_error(&mut self, ctx: &Ctx, code: u16, challenge: bool, now: Now) {
        let mut b = self.builder(ctx, Class::Error);
        b.error_code(code, reason(code));
        if challenge {
            let expiry = now.unix_secs + self.config.nonce_lifetime.as_secs();
            let nonce = self.nonces.issue(ctx.client.remote.ip(), expiry);
            b.attribute(attr::REALM, self.config.realm.as_bytes())
                .attribute(attr::NONCE, nonce.as_bytes());
        }
        self.send_unauthenticated(ctx, b, code, now);
    }

    /// Queues an answer to an unauthenticated request if the byte budget of
    /// its source IP and the total budget allow (see [`crate::AnswerBudget`]:
    /// the relay must not amplify floods from spoofed addresses); otherwise
    /// drops it, counted as `rate_limited`. Never kept for retransmissions.
    fn send_unauthenticated(&mut self, ctx: &Ctx, mut b: MessageBuilder, code: u16, now: Now) {
        if ctx.fingerprint {
            b.fingerprint();
        }
        let data = b.finish();
        let ip = ctx.client.remote.ip();
        if !self.unauthenticated.allow(ip, data.len() as u64, now.mono) {
            return self.count_drop(crate::stats::DropReason::RateLimited);
        }
        if code != 0 {
            if let Some(counter) = self.stats.error(code) {
                counter.inc();
            }
        }
        self.transmits.push_back(Transmit {
            to: ctx.client,
            data,
        });
    }

    /// Signs (when authenticated), fingerprints (when the request had one),
    /// queues, and keeps authenticated answers for retransmissions.
    fn send(&mut self, ctx: &Ctx, mut b: MessageBuilder, code: u16, now: Now) {
        if code != 0 {
            if let Some(counter) = self.stats.error(code) {
                counter.inc();
            }
        }
        if let Some((kind, key)) = &ctx.integrity {
            match kind {
                IntegrityKind::Sha1 => b.message_integrity(key),
                IntegrityKind::Sha256 => b.message_integrity_sha256(key),
            };
        }
        if ctx.fingerprint {
            b.fingerprint();
        }
        let data = b.finish();
        if ctx.integrity.is_some() {
            self.responses
                .insert(ctx.client, ctx.txid, data.clone(), now.mono);
        }
        self.transmits.push_back(Transmit {
            to: ctx.client,
            data,
        });
    }
}

/// RFC 8656 §5: requests on an allocation must use the credentials that created it.
fn same_user(msg: &Message<'_>, alloc: &Allocation) -> bool {
    msg.attribute(attr::USERNAME)
        .and_then(|a| stun::decode_utf8(a.value).ok())
        == Some(alloc.username.as_str())
}
