//! Server configuration: lifetimes, quotas, rate limits. Plain data, validated by
//! the shell that reads the operator's file.

use std::net::SocketAddr;
use std::time::Duration;

use crate::filter::PeerFilter;

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
    /// Rate limit of unauthenticated answers (401 challenges, Binding) per source IP.
    pub unauthenticated_rate: RateLimit,
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
}

/// Resource limits; 0 means unlimited.
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
    /// Bandwidth cap of one allocation, each direction, in bytes per second;
    /// packets over it are dropped and counted.
    pub allocation_bytes_per_sec: u64,
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            user_allocations: 0,
            tenant_allocations: 0,
            total_allocations: 0,
            permissions_per_allocation: 256,
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
            unauthenticated_rate: RateLimit {
                per_second: 20,
                burst: 40,
            },
            alternate_server: None,
            nonce_key,
            log_addresses: false,
            strict_channel_numbers: false,
        }
    }
}
