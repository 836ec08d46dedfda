//! Which peers a client may reach through the relay.
//!
//! Safe by default: the relay refuses peers in loopback, private, link-local,
//! multicast, documentation and cloud-metadata ranges (eturnal's recommended
//! list), so a TURN allocation cannot be used to reach the operator's internal
//! network (coturn CVE-2020-26262 was a loopback bypass of exactly this).
//! The relay's own relayed addresses stay reachable so that two clients of one
//! relay can talk to each other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The peer filter. Order of decisions:
/// 1. always-blocked ranges (unspecified, 0/8, Teredo, 6to4) — no override;
/// 2. the relay's own relayed addresses (relay or external IP, relay port range) — allowed;
/// 3. `--allowed-peer-ip` — allowed;
/// 4. `--denied-peer-ip` and the default blocklist — denied (loopback only
///    unless `--allow-loopback-peers`);
/// 5. everything else — allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFilter {
    blocked: Vec<IpNet>,
    allow_loopback: bool,
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
    own_ips: Vec<IpAddr>,
    /// The relay port range; `None` until the shell says which it is.
    own_ports: Option<RangeInclusive<u16>>,
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
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
    ]
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
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
            own_ports: None,
        }
    }
}

impl PeerFilter {
    /// `--allow-loopback-peers`: permit 127.0.0.0/8 and ::1 (tests and dev only).
    pub fn allow_loopback(&mut self, yes: bool) {
        self.allow_loopback = yes;
    }

    /// `--allowed-peer-ip`: permit this range even if it is denied.
    pub fn allow(&mut self, net: IpNet) {
        self.allowed.push(net);
    }

    /// `--denied-peer-ip`: refuse this range too.
    pub fn deny(&mut self, net: IpNet) {
        self.denied.push(net);
    }

    /// The relay's own relayed addresses: any of `ips` on a port in `ports` is
    /// always a permitted peer (client-to-client relaying through one relay).
    pub fn own_relay_addresses(&mut self, ips: Vec<IpAddr>, ports: RangeInclusive<u16>) {
        self.own_ips = ips.into_iter().map(canonical).collect();
        self.own_ports = Some(ports);
    }

    /// Whether a permission for `ip` may be installed. Permissions are per IP
    /// (RFC 8656 §9), so the own-relay exception applies when the IP is ours;
    /// [`PeerFilter::check`] narrows it to the relay port range per packet.
    pub fn check_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.blocked.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.own_ips.contains(&ip) {
            return true;
        }
        self.general(ip)
    }

    /// Whether the relay may send to `peer`.
    pub fn check(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        if self.blocked.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.own_ips.contains(&ip)
            && self
                .own_ports
                .as_ref()
                .is_some_and(|p| p.contains(&peer.port()))
        {
            return true;
        }
        self.general(ip)
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
    fn own_relay_addresses_reachable_only_on_relay_ports() {
        let mut f = PeerFilter::default();
        f.own_relay_addresses(vec!["10.0.0.5".parse().expect("ip")], 49152..=65535);
        assert!(f.check(addr("10.0.0.5:50000")));
        assert!(
            !f.check(addr("10.0.0.5:22")),
            "other services on the relay host stay closed"
        );
        assert!(f.check_ip("10.0.0.5".parse().expect("ip")));
        assert!(!f.check_ip("10.0.0.6".parse().expect("ip")));
    }
}
