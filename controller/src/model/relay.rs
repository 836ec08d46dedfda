//! Relay records: `relays/<region>/<node>`.
use serde::{Deserialize, Serialize};

use super::RELAYS;

pub use nexrtc_wire::{Endpoint, Load, RelayAddresses, RelayState, Transport};

/// `relays/<region>/<node>`: one registered relay, under its lease: the fields of its
/// registration ([`nexrtc_wire::Registration`]) and what the controller adds. Declared apart
/// from the registration on purpose: a stored record ignores fields it does not know (a
/// newer replica may have written them during a rolling upgrade), a registration refuses
/// them.
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
    /// The lease the record lives under (a decimal string in JSON; see
    /// [`nexrtc_wire::lease`]).
    #[serde(with = "nexrtc_wire::lease")]
    pub lease: i64,
    /// A drain order's deadline (Unix seconds): the relay exits then even if clients remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<u64>,
}

impl RelayRecord {
    /// `<region>/<node>`: the relay's id in the ranking and its key under `relays/`.
    pub fn id(&self) -> String {
        RelayRecord::id_of(&self.region, &self.node)
    }

    /// The id of relay `node` in `region`.
    pub fn id_of(region: &str, node: &str) -> String {
        format!("{region}/{node}")
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

    /// The QUIC relay's RFC 9298 URI template (CONNECT-UDP over HTTP/3), if it offers one.
    pub fn connect_udp_template(&self) -> Option<String> {
        let e = (self.addresses.quic.as_ref()).filter(|_| self.offers(Transport::Quic))?;
        Some(format!(
            "https://{}/.well-known/masque/udp/{{target_host}}/{{target_port}}/",
            e.uri_authority()
        ))
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
                quic: ep("2001:db8::1", 443),
            },
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            load: Load::default(),
            state: RelayState::Active,
            version: "0.1.0".into(),
            registered_at: 1,
            updated_at: 1,
            lease: 7,
            drain_deadline: None,
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
        // The QUIC relay only when offered.
        assert_eq!(r.connect_udp_template(), None);
        r.transports.push(Transport::Quic);
        assert_eq!(
            r.connect_udp_template().as_deref(),
            Some("https://[2001:db8::1]:443/.well-known/masque/udp/{target_host}/{target_port}/")
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
