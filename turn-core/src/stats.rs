//! Counters the core keeps and the shell exports (the core never talks to a
//! telemetry library).
//!
//! Every counter has exactly one writer: the worker thread that owns the
//! [`Server`](crate::Server). Writers use a relaxed load + store (no locked
//! instruction on the packet path); any thread may read at scrape time, so the
//! exported numbers are live, never only updated when an allocation ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use crate::net::Transport;

/// A counter written by one thread and read by any.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// For gauges: subtracts `n` (saturating at zero).
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_sub(n),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Packets and bytes relayed in one direction.
#[derive(Debug, Default)]
pub struct Flow {
    pub packets: Counter,
    pub bytes: Counter,
}

impl Flow {
    #[inline]
    pub fn record(&self, bytes: usize) {
        self.packets.inc();
        self.bytes.add(bytes as u64);
    }
}

/// Traffic and allocations of one tenant over one client transport.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Client → peer (ChannelData and Send indications).
    pub to_peer: Flow,
    /// Peer → client (ChannelData and Data indications).
    pub to_client: Flow,
    /// Allocations created since start.
    pub allocations_total: Counter,
    /// Allocations alive now (a gauge).
    pub allocations_active: Counter,
    /// The allocations' time alive, for usage metering.
    pub lifetimes: Lifetimes,
}

/// Time alive summed over allocations (or tunnels), exact at any instant without
/// visiting the live ones: the lifetimes of those that ended, plus for each live one the
/// time since it started — kept as `ended + live × now − Σ starts of the live`, in
/// nanoseconds from a process-wide origin (signed: an instant may precede it; exact, so
/// a lifetime comes out to the nanosecond). Written when one starts or ends, never on
/// the packet path; read by usage metering. The three sums change together, so a
/// reader takes them under one (uncontended) lock rather than from separate atomics,
/// which it could see half-updated.
#[derive(Debug, Default)]
pub struct Lifetimes(Mutex<LifetimeSums>);

#[derive(Debug, Default)]
struct LifetimeSums {
    ended: i128,
    live: i128,
    live_started: i128,
}

impl Lifetimes {
    /// One started at `at`.
    pub fn start(&self, at: Instant) {
        let at = nanos(at);
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.live += 1;
        s.live_started += at;
    }

    /// The one that started at `started` ended at `at`.
    pub fn end(&self, started: Instant, at: Instant) {
        let (started, at) = (nanos(started), nanos(at));
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.live -= 1;
        s.live_started -= started;
        s.ended += (at - started).max(0);
    }

    /// Milliseconds alive (rounded down), summed over every one that started, up to
    /// `now`.
    pub fn total_ms(&self, now: Instant) -> u64 {
        let now = nanos(now);
        let s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let total = s.ended + (s.live * now - s.live_started).max(0);
        u64::try_from(total / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// Nanoseconds from the process-wide origin (the first call) to `at`, negative before it.
fn nanos(at: Instant) -> i128 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    match at.checked_duration_since(origin) {
        Some(after) => after.as_nanos() as i128,
        None => -(origin.duration_since(at).as_nanos() as i128),
    }
}

/// The counters of one tenant, one [`Traffic`] per client transport.
#[derive(Debug)]
pub struct TenantStats {
    pub tenant: String,
    pub by_transport: [Traffic; 3],
}

impl TenantStats {
    pub fn transport(&self, t: Transport) -> &Traffic {
        &self.by_transport[t.index()]
    }
}

macro_rules! reasons {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

reasons! {
    /// Why a packet was dropped without an answer.
    DropReason {
        Malformed => "malformed",
        RateLimited => "rate_limited",
        NoAllocation => "no_allocation",
        NoPermission => "no_permission",
        NoChannel => "no_channel",
        BandwidthExceeded => "bandwidth_exceeded",
        UnexpectedMessage => "unexpected_message",
        BadFingerprint => "bad_fingerprint",
        DeniedPeer => "denied_peer",
        StreamStalled => "stream_stalled",
        FrameTooLarge => "frame_too_large",
        SendFailed => "send_failed",
        AmbiguousPeer => "ambiguous_peer",
        PeerTaken => "peer_taken",
    }
}

reasons! {
    /// Why a request failed authentication.
    AuthFailure {
        MissingCredentials => "missing_credentials",
        BadNonce => "stale_nonce",
        UnknownTenant => "unknown_tenant",
        BadUsername => "bad_username",
        Expired => "expired",
        Revoked => "revoked",
        BadIntegrity => "bad_integrity",
        WrongRealm => "wrong_realm",
        WrongUser => "wrong_user",
    }
}

reasons! {
    /// STUN/TURN methods, for request counters.
    MethodLabel {
        Binding => "binding",
        Allocate => "allocate",
        Refresh => "refresh",
        CreatePermission => "create_permission",
        ChannelBind => "channel_bind",
        Send => "send",
        Other => "other",
    }
}

impl MethodLabel {
    /// The label of a request method (`Send` is an indication; unknown ones are `Other`).
    pub fn of(method: crate::stun::Method) -> MethodLabel {
        use crate::stun::Method;
        match method {
            Method::BINDING => MethodLabel::Binding,
            Method::ALLOCATE => MethodLabel::Allocate,
            Method::REFRESH => MethodLabel::Refresh,
            Method::CREATE_PERMISSION => MethodLabel::CreatePermission,
            Method::CHANNEL_BIND => MethodLabel::ChannelBind,
            _ => MethodLabel::Other,
        }
    }

    /// The method of `packet` if it looks like a STUN request (a request's type and the
    /// magic cookie; nothing else is checked): what a shell times as a request.
    pub fn of_request(packet: &[u8]) -> Option<MethodLabel> {
        let header = packet.get(..8)?;
        // Called for every client datagram: ChannelData (first bits 01) leaves on the
        // first byte, before the cookie is compared.
        if header[0] & 0xC0 != 0 || header[4..8] != crate::stun::MAGIC_COOKIE.to_be_bytes() {
            return None;
        }
        let (method, class) = crate::stun::decode_type(u16::from_be_bytes([header[0], header[1]]));
        (class == crate::stun::Class::Request).then(|| MethodLabel::of(method))
    }

    /// This label's index in [`MethodLabel::ALL`].
    pub fn index(self) -> usize {
        MethodLabel::ALL
            .iter()
            .position(|m| *m == self)
            .unwrap_or(0)
    }
}

/// The error codes the relay answers with (RFC 8489 §14.8, RFC 8656 §18).
pub const ERROR_CODES: [u16; 14] = [
    300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 500, 508,
];

/// All counters of one worker.
#[derive(Debug)]
pub struct Stats {
    tenants: Mutex<Vec<Arc<TenantStats>>>,
    drops: Vec<Counter>,
    auth_failures: Vec<Counter>,
    requests: Vec<Counter>,
    errors: Vec<Counter>,
    /// Permissions installed now (a gauge).
    pub permissions_active: Counter,
    /// Channels bound now (a gauge).
    pub channels_active: Counter,
    /// Allocations ended because their username was revoked.
    pub allocations_revoked: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        let counters = |n: usize| (0..n).map(|_| Counter::default()).collect();
        Stats {
            tenants: Mutex::new(Vec::new()),
            drops: counters(DropReason::ALL.len()),
            auth_failures: counters(AuthFailure::ALL.len()),
            requests: counters(MethodLabel::ALL.len()),
            errors: counters(ERROR_CODES.len()),
            permissions_active: Counter::default(),
            channels_active: Counter::default(),
            allocations_revoked: Counter::default(),
        }
    }
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> &Counter {
        &self.drops[reason as usize]
    }

    pub fn auth_failure(&self, reason: AuthFailure) -> &Counter {
        &self.auth_failures[reason as usize]
    }

    pub fn request(&self, method: MethodLabel) -> &Counter {
        &self.requests[method as usize]
    }

    /// The counter of error responses with `code`, or `None` for a code the
    /// relay never sends.
    pub fn error(&self, code: u16) -> Option<&Counter> {
        ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .map(|i| &self.errors[i])
    }

    /// The counters of `tenant`, created on first use (control path only).
    pub fn tenant(&self, tenant: &str) -> Arc<TenantStats> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tenants.iter().find(|t| t.tenant == tenant) {
            return t.clone();
        }
        let t = Arc::new(TenantStats {
            tenant: tenant.to_owned(),
            by_transport: Default::default(),
        });
        tenants.push(t.clone());
        t
    }

    /// Every tenant seen so far (for the exporter).
    pub fn tenants(&self) -> Vec<Arc<TenantStats>> {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Churn, as a busy relay sees it: thousands of allocations of every length starting
    /// and ending interleaved (some ended before others start, some still alive), read at
    /// many instants; the running sum must equal the brute-force sum of each one's time
    /// alive up to that instant, to the millisecond.
    #[test]
    fn lifetimes_stay_exact_under_churn() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let lifetimes = Lifetimes::default();
        // (start, end) in ms; a cheap generator, no dependency.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let spans: Vec<(u64, u64)> = (0..5_000)
            .map(|_| {
                let start = next() % 600_000;
                (start, start + 1 + next() % 120_000)
            })
            .collect();
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, (s, e)) in spans.iter().enumerate() {
            events.push((*s, true, i));
            events.push((*e, false, i));
        }
        events.sort();
        let mut checked = 0;
        for (k, (t, starts, i)) in events.iter().enumerate() {
            match starts {
                true => lifetimes.start(at(*t)),
                false => lifetimes.end(at(spans[*i].0), at(*t)),
            }
            if k % 97 == 0 {
                let expected: u64 = (spans.iter())
                    .filter(|(s, _)| s <= t)
                    .map(|(s, e)| (*e).min(*t) - s)
                    .sum();
                assert_eq!(lifetimes.total_ms(at(*t)), expected, "at {t} ms");
                checked += 1;
            }
        }
        assert!(checked > 100);
        let all: u64 = spans.iter().map(|(s, e)| e - s).sum();
        assert_eq!(lifetimes.total_ms(at(10_000_000)), all);
    }
}
