//! Relay records: `relays/<region>/<node>`.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::RELAYS;

/// A relay's public listener: a DNS name or an IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// DNS name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port` as used in ICE URLs: IPv6 literals in brackets (RFC 7065 §3.1).
    pub fn uri_authority(&self) -> String {
        match self.host.parse::<Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{}", self.port),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }

    /// A non-zero port and a host that is an IP literal or a DNS name.
    pub fn validate(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("port must not be 0".to_owned());
        }
        if self.host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        let dns_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self.host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        match dns_ok {
            true => Ok(()),
            false => Err(format!(
                "{:?} is neither an IP address nor a DNS name",
                self.host
            )),
        }
    }
}

/// Where clients reach a relay, per transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAddresses {
    /// TURN over UDP (and STUN): `turn:h:p?transport=udp`, `stun:h:p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Endpoint>,
    /// TURN over TCP: `turn:h:p?transport=tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Endpoint>,
    /// TURN over TLS: `turns:h:p?transport=tcp` (5349 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Endpoint>,
    /// A second TLS listener, usually port 443 for clients behind strict firewalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_alt: Option<Endpoint>,
}

/// A transport a relay offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// RFC 9298 CONNECT-UDP (no TURN URL; listed for clients that speak it).
    Quic,
}

/// A relay's lifecycle state as stored. (Dead relays have no record: their lease ended.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    #[default]
    Active,
    /// Registered, gets no new clients (an admin's drain order, or the relay is stopping).
    Draining,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Active => "active",
            RelayState::Draining => "draining",
        }
    }
}

/// A relay's load as reported in heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Load {
    /// Live allocations.
    pub allocations: u64,
    /// Most allocations it takes (0: unknown, only CPU counts).
    pub capacity: u64,
    pub pps_in: u64,
    pub pps_out: u64,
    pub bps_in: u64,
    pub bps_out: u64,
    /// CPU utilisation, 0..1.
    pub cpu: f64,
}

impl Load {
    /// 0..1 (may exceed 1): the higher of allocations/capacity and CPU.
    pub fn fraction(&self) -> f64 {
        let allocs = match self.capacity {
            0 => 0.0,
            cap => self.allocations as f64 / cap as f64,
        };
        let cpu = if self.cpu.is_finite() {
            self.cpu.max(0.0)
        } else {
            1.0
        };
        allocs.max(cpu)
    }

    /// At capacity: takes no new allocations.
    pub fn is_full(&self) -> bool {
        self.capacity > 0 && self.allocations >= self.capacity
    }
}

/// `relays/<region>/<node>`: one registered relay, under its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayRecord {
    pub node: String,
    pub region: String,
    pub addresses: RelayAddresses,
    pub transports: Vec<Transport>,
    #[serde(default)]
    pub load: Load,
    #[serde(default)]
    pub state: RelayState,
    /// Relay software version.
    #[serde(default)]
    pub version: String,
    /// Unix seconds of the registration.
    #[serde(default)]
    pub registered_at: u64,
    /// Unix seconds of the last write of this record.
    #[serde(default)]
    pub updated_at: u64,
    /// The lease the record lives under.
    pub lease: i64,
}

impl RelayRecord {
    /// `<region>/<node>`: the relay's id in the ranking and its key under `relays/`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.region, self.node)
    }

    /// The store key.
    pub fn key(region: &str, node: &str) -> String {
        format!("{RELAYS}{region}/{node}")
    }

    fn offers(&self, t: Transport) -> bool {
        self.transports.contains(&t)
    }

    /// `stun:` URL (from the UDP listener), if any.
    pub fn stun_url(&self) -> Option<String> {
        let udp = self
            .addresses
            .udp
            .as_ref()
            .filter(|_| self.offers(Transport::Udp))?;
        Some(format!("stun:{}", udp.uri_authority()))
    }

    /// TURN URLs in preference order: UDP, TCP, TLS, TLS on the second port.
    pub fn turn_urls(&self) -> Vec<String> {
        let a = &self.addresses;
        let mut urls = Vec::with_capacity(4);
        if let Some(e) = a.udp.as_ref().filter(|_| self.offers(Transport::Udp)) {
            urls.push(format!("turn:{}?transport=udp", e.uri_authority()));
        }
        if let Some(e) = a.tcp.as_ref().filter(|_| self.offers(Transport::Tcp)) {
            urls.push(format!("turn:{}?transport=tcp", e.uri_authority()));
        }
        if self.offers(Transport::Tls) {
            for e in [&a.tls, &a.tls_alt].into_iter().flatten() {
                urls.push(format!("turns:{}?transport=tcp", e.uri_authority()));
            }
        }
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> RelayRecord {
        let ep = |host: &str, port| {
            Some(Endpoint {
                host: host.to_owned(),
                port,
            })
        };
        RelayRecord {
            node: "n1".into(),
            region: "eu-west".into(),
            addresses: RelayAddresses {
                udp: ep("2001:db8::1", 3478),
                tcp: ep("2001:db8::1", 3478),
                tls: ep("relay.example.com", 5349),
                tls_alt: ep("relay.example.com", 443),
            },
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            load: Load::default(),
            state: RelayState::Active,
            version: "0.1.0".into(),
            registered_at: 1,
            updated_at: 1,
            lease: 7,
        }
    }
    #[test]
    fn urls_bracket_ipv6_and_follow_transports() {
        let mut r = relay();
        assert_eq!(r.stun_url().as_deref(), Some("stun:[2001:db8::1]:3478"));
        assert_eq!(
            r.turn_urls(),
            [
                "turn:[2001:db8::1]:3478?transport=udp",
                "turn:[2001:db8::1]:3478?transport=tcp",
                "turns:relay.example.com:5349?transport=tcp",
                "turns:relay.example.com:443?transport=tcp",
            ]
        );
        r.transports = vec![Transport::Tcp];
        assert_eq!(r.stun_url(), None);
        assert_eq!(r.turn_urls(), ["turn:[2001:db8::1]:3478?transport=tcp"]);
    }

    #[test]
    fn endpoints_and_round_trip() {
        let ep = |h: &str, p| Endpoint {
            host: h.into(),
            port: p,
        };
        assert!(ep("198.51.100.1", 3478).validate().is_ok());
        assert!(ep("turn.example.com", 3478).validate().is_ok());
        assert!(ep("turn.example.com", 0).validate().is_err());
        assert!(ep("a b", 1).validate().is_err());
        assert!(ep("a/b", 1).validate().is_err());
        let r = relay();
        let back: RelayRecord =
            super::super::decode("", &super::super::encode(&r)).expect("decode");
        assert_eq!(back, r);
    }

    #[test]
    fn load_fraction() {
        let l = Load {
            allocations: 50,
            capacity: 100,
            cpu: 0.2,
            ..Load::default()
        };
        assert_eq!(l.fraction(), 0.5);
        assert!(!l.is_full());
        let l = Load {
            cpu: f64::NAN,
            ..Load::default()
        };
        assert_eq!(l.fraction(), 1.0);
    }
}
