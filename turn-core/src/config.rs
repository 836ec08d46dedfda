//! Server configuration: lifetimes, quotas, rate limits. Plain data, validated by
//! the shell that reads the operator's file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::filter::PeerFilter;
use crate::server::AllocationLedger;

/// Everything the core needs to know that is not per-request.
#[derive(Debug, Clone)]
pub struct Config {
    /// REALM sent in 401 challenges and checked on requests (RFC 8489 §9.2).
    pub realm: String,
    /// SOFTWARE attribute on responses, if any.
    pub software: Option<String>,
    /// Allocation lifetime when the client asks for none (RFC 8656 §7.2: 600 s).
    pub default_lifetime: Duration,
    /// Longest allocation lifetime granted (3600 s).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656 §9: 300 s, not configurable by clients).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656 §12: 600 s).
    pub channel_lifetime: Duration,
    /// How long a nonce stays fresh before 438 Stale Nonce.
    pub nonce_lifetime: Duration,
    /// Address families the host can relay from (RFC 6156).
    pub relay_ipv4: bool,
    pub relay_ipv6: bool,
    /// Which peers clients may reach.
    pub peer_filter: PeerFilter,
    pub quotas: Quotas,
    /// Budget of the answers sent before authentication (401 and 438
    /// challenges, 400s, Binding answers), in bytes.
    pub unauthenticated: AnswerBudget,
    /// Where new clients are sent while draining (300 ALTERNATE-SERVER).
    pub alternate_server: Option<SocketAddr>,
    /// Key of the stateless nonces. Every worker (and every replica that must
    /// accept another's nonces) uses the same key.
    pub nonce_key: [u8; 32],
    /// Log client and peer addresses (otherwise they are redacted).
    pub log_addresses: bool,
    /// Refuse ChannelBind for channel numbers 0x5000–0x7FFF, as RFC 8656 §12 says
    /// (0x4000–0x4FFF only). Off by default: RFC 5766 allowed up to 0x7FFF, and
    /// clients still pick numbers there (coturn's test clients do), as coturn accepts.
    pub strict_channel_numbers: bool,
    /// The allocation counts behind [`Quotas`], given to every server of one
    /// relay process (one per worker) so the quotas hold over all of them.
    /// `None`: the server counts its own allocations alone.
    pub ledger: Option<Arc<AllocationLedger>>,
    /// Offer channels to the shell to relay itself (the XDP fast path): see
    /// [`Command::FlowUp`](crate::Command::FlowUp). Off by default.
    pub fast_path: bool,
}

/// Resource limits; 0 means unlimited. The defaults are safe for a public
/// relay: one user cannot take every port, and one allocation cannot grow
/// without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Live allocations per user (486 Allocation Quota Reached beyond).
    pub user_allocations: u32,
    /// Live allocations per tenant (486 beyond).
    pub tenant_allocations: u32,
    /// Live allocations on this server (508 Insufficient Capacity beyond).
    pub total_allocations: u32,
    /// Permissions per allocation (508 beyond).
    pub permissions_per_allocation: u32,
    /// Channels per allocation (508 beyond, RFC 8656 §12.2 and §18).
    pub channels_per_allocation: u32,
    /// Bandwidth cap of one allocation, each direction, in bytes per second;
    /// packets over it are dropped and counted.
    pub allocation_bytes_per_sec: u64,
}

/// A token bucket of bytes: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    pub per_second: u64,
    pub burst: u64,
}

impl ByteRate {
    /// `per_second`, with bursts of four seconds' worth (a one-off amount:
    /// what a flood gets out is bounded by the rate).
    pub const fn per_second(per_second: u64) -> ByteRate {
        ByteRate {
            per_second,
            burst: per_second.saturating_mul(4),
        }
    }
}

/// How many bytes a server may send before the client has authenticated.
///
/// A 401 challenge is about five times the size of the request that caused
/// it, so a spoofed source address could turn the relay into a reflection
/// amplifier. The answers are therefore budgeted in BYTES (whatever their
/// kind or size), per source IP and in total, rather than counted as
/// requests: a request count would also throttle the one 401 every new
/// allocation needs, which is what thousands of clients behind one NAT
/// address send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerBudget {
    /// To one source IP.
    pub per_source: ByteRate,
    /// To every source together (what a flood from many spoofed addresses
    /// can reflect at most).
    pub total: ByteRate,
}

impl AnswerBudget {
    /// 512 KiB/s to one source IP: about 4,000 challenges a second (a 401 is
    /// 110-140 bytes, with the realm), bursts of about 16,000, for the
    /// thousands of users of a carrier NAT.
    pub const DEFAULT_PER_SOURCE: u64 = 512 * 1024;
    /// 4 MiB/s to all sources together.
    pub const DEFAULT_TOTAL: u64 = 4 * 1024 * 1024;
}

impl AnswerBudget {
    /// This budget (a host's) split evenly over `workers` servers, each with
    /// its own limiter.
    pub fn shared_by(self, workers: usize) -> AnswerBudget {
        let n = workers.max(1) as u64;
        let part = |r: ByteRate| ByteRate {
            per_second: r.per_second.div_ceil(n),
            burst: r.burst.div_ceil(n),
        };
        AnswerBudget {
            per_source: part(self.per_source),
            total: part(self.total),
        }
    }
}

impl Default for AnswerBudget {
    fn default() -> Self {
        AnswerBudget {
            per_source: ByteRate::per_second(AnswerBudget::DEFAULT_PER_SOURCE),
            total: ByteRate::per_second(AnswerBudget::DEFAULT_TOTAL),
        }
    }
}

impl Quotas {
    /// A user's calls: an allocation per TURN URL of each peer connection,
    /// with room for several tabs and devices.
    pub const DEFAULT_USER_ALLOCATIONS: u32 = 64;
    /// About 140 MB of core state with multiplexed relay sockets (which no
    /// port range bounds); with one socket per allocation the ports run out
    /// first (16,384 per relay IP).
    pub const DEFAULT_TOTAL_ALLOCATIONS: u32 = 100_000;
    /// One channel per peer transport address: far more than ICE needs.
    pub const DEFAULT_CHANNELS_PER_ALLOCATION: u32 = 64;
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            user_allocations: Quotas::DEFAULT_USER_ALLOCATIONS,
            tenant_allocations: 0,
            total_allocations: Quotas::DEFAULT_TOTAL_ALLOCATIONS,
            permissions_per_allocation: 256,
            channels_per_allocation: Quotas::DEFAULT_CHANNELS_PER_ALLOCATION,
            allocation_bytes_per_sec: 0,
        }
    }
}

impl Config {
    /// RFC defaults and the safe peer filter; the shell overrides what the
    /// operator configured.
    pub fn new(realm: impl Into<String>, nonce_key: [u8; 32]) -> Config {
        Config {
            realm: realm.into(),
            software: Some(concat!("NexRTC ", env!("CARGO_PKG_VERSION")).to_owned()),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            relay_ipv4: true,
            relay_ipv6: false,
            peer_filter: PeerFilter::default(),
            quotas: Quotas::default(),
            unauthenticated: AnswerBudget::default(),
            alternate_server: None,
            nonce_key,
            log_addresses: false,
            strict_channel_numbers: false,
            ledger: None,
            fast_path: false,
        }
    }
}
