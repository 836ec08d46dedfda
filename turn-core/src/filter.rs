//! Which peers a client may reach through the relay.
//!
//! Safe by default: the relay refuses peers in loopback, private, link-local,
//! multicast, documentation and cloud-metadata ranges (eturnal's recommended
//! list, plus the IPv6 spellings of IPv4 addresses and deprecated site-local),
//! so a TURN allocation cannot be used to reach the operator's internal
//! network (coturn CVE-2020-26262 was a loopback bypass of exactly this).
//!
//! The relay's own addresses (relay, listening and advertised IPs, and the
//! host's interface addresses when it listens on a wildcard) are judged apart,
//! whatever range they are in: a peer there is reachable only on a port the
//! relay itself holds right now (an allocation's relay socket, a shared
//! multiplexed socket or a reserved port), so two clients of one relay can talk
//! to each other, but the TURN listener and every other service on the host
//! stay closed. Which ports are held is a [`HeldPorts`] bitmap per relay IP,
//! written by the shell's port pool and read here without a lock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The ports the relay holds on one relay IP, shared by every worker: set by
/// the port pool when it hands a port out, cleared when the port is given
/// back. 8 KiB; reads are one relaxed atomic load.
pub struct HeldPorts {
    bits: Box<[AtomicU64]>,
}

impl HeldPorts {
    pub fn new() -> HeldPorts {
        HeldPorts {
            bits: (0..1024).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn word(&self, port: u16) -> (&AtomicU64, u64) {
        // 1024 words of 64 bits cover every u16: the index is always in range.
        let word = &self.bits[usize::from(port >> 6)];
        (word, 1u64 << (port & 63))
    }

    /// The relay now has a socket on `port`.
    pub fn hold(&self, port: u16) {
        let (word, bit) = self.word(port);
        word.fetch_or(bit, Ordering::Relaxed);
    }

    /// The relay closed its socket on `port`.
    pub fn release(&self, port: u16) {
        let (word, bit) = self.word(port);
        word.fetch_and(!bit, Ordering::Relaxed);
    }

    pub fn contains(&self, port: u16) -> bool {
        let (word, bit) = self.word(port);
        word.load(Ordering::Relaxed) & bit != 0
    }

    /// How many ports are held.
    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for HeldPorts {
    fn default() -> Self {
        HeldPorts::new()
    }
}

impl std::fmt::Debug for HeldPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldPorts")
            .field("held", &self.len())
            .finish()
    }
}

/// One relay IP: where its sockets are bound, what is advertised, which ports
/// it holds.
#[derive(Debug, Clone)]
struct OwnRelay {
    bind: IpAddr,
    advertised: IpAddr,
    held: Arc<HeldPorts>,
}

impl OwnRelay {
    /// Whether a datagram to `ip` reaches this relay IP's sockets: its bind or
    /// advertised address, or any address of the family when bound to the
    /// wildcard.
    fn serves(&self, ip: IpAddr) -> bool {
        self.bind == ip
            || self.advertised == ip
            || (self.bind.is_unspecified() && self.bind.is_ipv4() == ip.is_ipv4())
    }
}

/// The peer filter. Order of decisions (on the address with IPv4-mapped IPv6
/// addresses read as IPv4):
/// 1. always-blocked ranges (unspecified, 0/8, Teredo, 6to4) — no override;
/// 2. the relay's own addresses — allowed only on a port the relay holds
///    ([`HeldPorts`]); no operator allow list opens them (only
///    `--allow-loopback-peers` for loopback ones, a test and dev setting);
/// 3. `--allowed-peer-ip` — allowed;
/// 4. `--denied-peer-ip` and the default blocklist — denied (loopback only
///    unless `--allow-loopback-peers`);
/// 5. everything else — allowed.
///
/// An IPv6 address that embeds an IPv4 one (NAT64 64:ff9b::/96 and
/// 64:ff9b:1::/48, SIIT ::ffff:0:0:0/96, IPv4-compatible ::/96) must pass both
/// as itself (those ranges are denied by default) and as the IPv4 address, so
/// an allow list for IPv6 never opens a private IPv4 network through a
/// translator.
#[derive(Debug, Clone)]
pub struct PeerFilter {
    blocked: Vec<IpNet>,
    allow_loopback: bool,
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
    /// Every address of the relay (relay, listening, advertised, interface IPs).
    own_ips: Vec<IpAddr>,
    /// The relay IPs and the ports they hold.
    relays: Vec<OwnRelay>,
}

fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    // Prefix lengths below are literals <= 32; `new` cannot fail for them.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len).unwrap_or_default())
}

fn v6(segments: [u16; 8], len: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new(Ipv6Addr::new(a, b, c, d, e, f, g, h), len).unwrap_or_default())
}

/// Never relayed to, whatever the operator allows: the unspecified addresses and
/// tunnelling prefixes that embed other addresses.
fn always_blocked() -> Vec<IpNet> {
    vec![
        v4(0, 0, 0, 0, 8),
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), // Teredo
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4
    ]
}

/// eturnal's recommended blocklist (its `src/eturnal_yaml.erl`), without loopback,
/// which is handled by `allow_loopback`.
fn default_denied() -> Vec<IpNet> {
    vec![
        v4(10, 0, 0, 0, 8),
        v4(100, 64, 0, 0, 10),
        v4(169, 254, 0, 0, 16), // link-local, incl. 169.254.169.254 cloud metadata
        v4(172, 16, 0, 0, 12),
        v4(192, 168, 0, 0, 16),
        v4(192, 0, 0, 0, 24),
        v4(192, 0, 2, 0, 24),
        v4(192, 88, 99, 0, 24),
        v4(198, 18, 0, 0, 15),
        v4(198, 51, 100, 0, 24),
        v4(203, 0, 113, 0, 24),
        v4(224, 0, 0, 0, 4),
        v4(240, 0, 0, 0, 4),
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), // NAT64 well-known prefix (RFC 6052)
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), // NAT64 local use (RFC 8215)
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),         // IPv4-compatible (RFC 4291 §2.5.5.1)
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),    // IPv4-mapped (also read as IPv4)
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),    // SIIT IPv4-translated (RFC 7915)
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // site-local (deprecated, RFC 3879)
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
    ]
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// The IPv4 address an IPv6 address stands for through a translator, in the
/// last 32 bits (RFC 6052 §2.2, the /96 format; the well-known prefix allows
/// only that one): NAT64 64:ff9b::/96 and 64:ff9b:1::/48 (RFC 8215), SIIT
/// ::ffff:0:a.b.c.d (RFC 7915), IPv4-compatible ::a.b.c.d (RFC 4291
/// §2.5.5.1; not :: and ::1, which are judged as themselves).
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let translated = matches!(s, [0x64, 0xff9b, 0, 0, 0, 0, _, _])
        || matches!(s, [0x64, 0xff9b, 1, ..])
        || matches!(s, [0, 0, 0, 0, 0xffff, 0, _, _])
        || (matches!(s, [0, 0, 0, 0, 0, 0, _, _]) && !matches!(s, [.., 0, 0 | 1]));
    let [.., a, b, c, d] = v6.octets();
    translated.then_some(Ipv4Addr::new(a, b, c, d))
}

/// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl Default for PeerFilter {
    fn default() -> Self {
        PeerFilter {
            blocked: always_blocked(),
            allow_loopback: false,
            allowed: Vec::new(),
            denied: default_denied(),
            own_ips: Vec::new(),
            relays: Vec::new(),
        }
    }
}

impl PeerFilter {
    /// `--allow-loopback-peers`: permit 127.0.0.0/8 and ::1 (tests and dev only;
    /// this also opens the relay's own loopback addresses on every port).
    pub fn allow_loopback(&mut self, yes: bool) {
        self.allow_loopback = yes;
    }

    /// `--allowed-peer-ip`: permit this range even if it is denied (never
    /// the relay's own addresses beyond the ports it holds).
    pub fn allow(&mut self, net: IpNet) {
        self.allowed.push(net);
    }

    /// `--denied-peer-ip`: refuse this range too.
    pub fn deny(&mut self, net: IpNet) {
        self.denied.push(net);
    }

    /// Addresses the relay owns or listens on (listening IPs, the host's
    /// interface addresses): peers there are reachable only on ports a relay
    /// IP serving them holds. Unspecified addresses are ignored.
    pub fn own_addresses(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        for ip in ips.into_iter().map(canonical) {
            if !ip.is_unspecified() && !self.own_ips.contains(&ip) {
                self.own_ips.push(ip);
            }
        }
    }

    /// A relay IP: sockets bound on `bind`, advertised as `advertised`. Both
    /// become own addresses. Returns the set of ports held on it, which the
    /// shell's port pool keeps up to date (the same set for the same `bind`).
    pub fn relay_ip(&mut self, bind: IpAddr, advertised: IpAddr) -> Arc<HeldPorts> {
        let (bind, advertised) = (canonical(bind), canonical(advertised));
        self.own_addresses([bind, advertised]);
        if let Some(r) = self
            .relays
            .iter()
            .find(|r| r.bind == bind && r.advertised == advertised)
        {
            return r.held.clone();
        }
        let held = Arc::new(HeldPorts::new());
        self.relays.push(OwnRelay {
            bind,
            advertised,
            held: held.clone(),
        });
        held
    }

    /// The held ports of the relay IP bound on `bind` (see [`PeerFilter::relay_ip`]).
    pub fn held_ports(&self, bind: IpAddr) -> Option<Arc<HeldPorts>> {
        let bind = canonical(bind);
        self.relays
            .iter()
            .find(|r| r.bind == bind)
            .map(|r| r.held.clone())
    }

    /// Whether `ip` is one of the relay's own addresses (directly or embedded
    /// in a translated IPv6 address): sending there needs
    /// [`PeerFilter::check`] again whenever the port may have changed hands.
    pub fn is_own(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.own_ips.contains(&ip)
            || embedded_ipv4(ip).is_some_and(|v4| self.own_ips.contains(&IpAddr::V4(v4)))
    }

    /// Whether a permission for `ip` may be installed. Permissions are per IP
    /// (RFC 8656 §9), so an own address may get one; [`PeerFilter::check`]
    /// narrows it to held ports for every Send and ChannelBind.
    pub fn check_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.blocked.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.own_ips.contains(&ip) {
            return true;
        }
        self.general(ip) && embedded_ipv4(ip).is_none_or(|v4| self.check_ip(IpAddr::V4(v4)))
    }

    /// Whether the relay may send to `peer`.
    pub fn check(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        if self.blocked.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.own_ips.contains(&ip) {
            return self.holds(ip, peer.port()) || (self.allow_loopback && is_loopback(ip));
        }
        self.general(ip)
            && embedded_ipv4(ip)
                .is_none_or(|v4| self.check(SocketAddr::new(IpAddr::V4(v4), peer.port())))
    }

    /// Whether a relay IP that receives datagrams sent to `ip` holds `port`.
    fn holds(&self, ip: IpAddr, port: u16) -> bool {
        self.relays
            .iter()
            .any(|r| r.serves(ip) && r.held.contains(port))
    }

    fn general(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        if is_loopback(ip) {
            return self.allow_loopback;
        }
        !self.denied.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn defaults_refuse_internal_ranges() {
        let f = PeerFilter::default();
        for denied in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "[2001::1]:80",
        ] {
            assert!(!f.check(addr(denied)), "{denied} should be denied");
        }
        for allowed in ["8.8.8.8:53", "1.1.1.1:3478", "[2606:4700::1111]:443"] {
            assert!(f.check(addr(allowed)), "{allowed} should be allowed");
        }
    }

    #[test]
    fn operator_overrides() {
        let mut f = PeerFilter::default();
        f.allow_loopback(true);
        f.allow("10.0.0.0/16".parse().expect("cidr"));
        f.deny("8.8.8.0/24".parse().expect("cidr"));
        assert!(f.check(addr("127.0.0.1:5000")));
        assert!(f.check(addr("10.0.5.5:5000")));
        assert!(!f.check(addr("10.1.5.5:5000")));
        assert!(!f.check(addr("8.8.8.8:53")));
        // Always-blocked ranges cannot be opened.
        f.allow("0.0.0.0/0".parse().expect("cidr"));
        assert!(!f.check(addr("0.1.2.3:80")));
    }

    #[test]
    fn own_addresses_reachable_only_on_held_ports() {
        // A relay on a public address, the range opened by the operator too:
        // the relay's own addresses stay closed but for the ports it holds.
        let mut f = PeerFilter::default();
        f.allow("198.18.0.0/15".parse().expect("cidr"));
        let held = f.relay_ip(
            "198.18.0.1".parse().expect("ip"),
            "198.18.0.1".parse().expect("ip"),
        );
        f.own_addresses(["198.18.0.2".parse().expect("ip")]);
        held.hold(61000);
        assert!(f.check(addr("198.18.0.1:61000")), "a held relay port");
        assert!(!f.check(addr("198.18.0.1:61001")), "a free relay port");
        assert!(!f.check(addr("198.18.0.1:3478")), "the TURN listener");
        assert!(!f.check(addr("198.18.0.1:22")), "another service");
        assert!(
            !f.check(addr("198.18.0.2:61000")),
            "a listening IP with no relay sockets"
        );
        assert!(
            f.check(addr("198.18.0.3:3478")),
            "another host of the allowed range"
        );
        assert!(f.check(addr("[::ffff:198.18.0.1]:61000")));
        assert!(!f.check(addr("[::ffff:198.18.0.1]:3478")));
        // Permissions are per IP: an own address may get one.
        assert!(f.check_ip("198.18.0.1".parse().expect("ip")));
        assert!(f.is_own("198.18.0.2".parse().expect("ip")));
        held.release(61000);
        assert!(!f.check(addr("198.18.0.1:61000")), "released");
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn wildcard_and_advertised_relay_ips() {
        let mut f = PeerFilter::default();
        let held = f.relay_ip(
            "0.0.0.0".parse().expect("ip"),
            "203.0.113.5".parse().expect("ip"),
        );
        // A wildcard relay socket answers on every interface address.
        f.own_addresses(["8.8.4.4".parse().expect("ip")]);
        held.hold(65535);
        assert!(f.check(addr("203.0.113.5:65535")));
        assert!(f.check(addr("8.8.4.4:65535")));
        assert!(!f.check(addr("8.8.4.4:53")));
        assert!(!f.check(addr("203.0.113.5:3478")));
        assert!(Arc::ptr_eq(
            &held,
            &f.held_ports("0.0.0.0".parse().expect("ip")).expect("held")
        ));
    }

    #[test]
    fn loopback_own_addresses_follow_allow_loopback() {
        let mut f = PeerFilter::default();
        let held = f.relay_ip(
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.1".parse().expect("ip"),
        );
        held.hold(50000);
        assert!(f.check(addr("127.0.0.1:50000")));
        assert!(!f.check(addr("127.0.0.1:3478")));
        f.allow_loopback(true);
        assert!(f.check(addr("127.0.0.1:3478")));
    }

    #[test]
    fn ipv6_spellings_of_ipv4_and_site_local_are_refused() {
        let f = PeerFilter::default();
        for denied in [
            "[64:ff9b::808:808]:53",   // NAT64 of 8.8.8.8 (RFC 6052)
            "[64:ff9b:1::808:808]:53", // local-use NAT64 (RFC 8215)
            "[::808:808]:53",          // IPv4-compatible
            "[::ffff:0:808:808]:53",   // SIIT
            "[::ffff:10.0.0.1]:53",    // IPv4-mapped, judged as 10.0.0.1
            "[fec0::1]:53",            // site-local
        ] {
            assert!(!f.check(addr(denied)), "{denied} should be denied");
            assert!(!f.check_ip(addr(denied).ip()), "{denied} should be denied");
        }
        // IPv4-mapped is the IPv4 address itself: a public one is a peer.
        assert!(f.check(addr("[::ffff:8.8.8.8]:53")));
    }

    #[test]
    fn translated_ipv6_is_judged_by_its_ipv4_too() {
        let mut f = PeerFilter::default();
        for net in ["64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96"] {
            f.allow(net.parse().expect("cidr"));
        }
        f.allow("192.0.2.0/24".parse().expect("cidr"));
        for (peer, ok) in [
            ("[64:ff9b::808:808]:53", true),    // 8.8.8.8
            ("[64:ff9b::a00:1]:53", false),     // 10.0.0.1
            ("[64:ff9b::7f00:1]:53", false),    // 127.0.0.1
            ("[64:ff9b::a9fe:a9fe]:80", false), // 169.254.169.254
            ("[64:ff9b:1::a00:1]:53", false),   // 10.0.0.1
            ("[64:ff9b:1::c000:201]:53", true), // 192.0.2.1, allowed as IPv4
            ("[::a00:1]:53", false),            // 10.0.0.1
            ("[::ffff:0:a00:1]:53", false),     // 10.0.0.1
            ("[::ffff:0:808:808]:53", true),    // 8.8.8.8
            ("[64:ff9b::1:203]:53", false),     // 0.1.2.3, always blocked
        ] {
            assert_eq!(f.check(addr(peer)), ok, "{peer}");
            assert_eq!(f.check_ip(addr(peer).ip()), ok, "{peer}");
        }
        // The relay's own IPv4 address through a translator: held ports only.
        let held = f.relay_ip(
            "8.8.8.8".parse().expect("ip"),
            "8.8.8.8".parse().expect("ip"),
        );
        held.hold(61000);
        assert!(f.check(addr("[64:ff9b::808:808]:61000")));
        assert!(!f.check(addr("[64:ff9b::808:808]:3478")));
        assert!(f.is_own("64:ff9b::808:808".parse().expect("ip")));
    }
}
