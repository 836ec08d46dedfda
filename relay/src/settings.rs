//! What the operator wrote: `nexrtc relay` flags and the TOML file, one struct
//! for both. Flags reuse coturn's names where they mean the same; the file uses
//! the same names in snake_case (`listening_port = 3478`). Flags override the
//! file. [`crate::config::RelayConfig`] turns this into a checked configuration.
//! [`keys`] lists every key with its help and default, from the flags' metadata
//! (for the reference and the default file).

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

pub mod keys;

/// `nexrtc relay` options. Every field is optional so that a flag left out
/// falls back to the file, then to the default shown.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file (keys: these flags in snake_case); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on for TURN, repeatable [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub listening_ip: Vec<IpAddr>,
    /// UDP and TCP listening port [default: 3478].
    #[arg(long, value_name = "PORT")]
    pub listening_port: Option<u16>,
    /// TLS listening port [default: 5349].
    #[arg(long, value_name = "PORT")]
    pub tls_listening_port: Option<u16>,
    /// A second TLS port, e.g. 443 for clients behind strict firewalls; 0 = none [default: 0].
    #[arg(long, value_name = "PORT")]
    pub extra_tls_listening_port: Option<u16>,
    /// Do not listen on UDP.
    #[arg(long)]
    #[serde(default)]
    pub no_udp: bool,
    /// Do not listen on TCP.
    #[arg(long)]
    #[serde(default)]
    pub no_tcp: bool,
    /// Do not listen on TLS.
    #[arg(long)]
    #[serde(default)]
    pub no_tls: bool,
    /// Most concurrent TCP and TLS client connections [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_tcp_connections: Option<u32>,
    /// Most concurrent TCP and TLS client connections from one IP address
    /// [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_tcp_connections_per_ip: Option<u32>,
    /// Seconds a TCP or TLS connection may stay open without an allocation
    /// (before an authenticated Allocate succeeds, or after the allocation
    /// ends); Binding requests do not extend it [default: 10].
    #[arg(long, value_name = "SECS")]
    pub tcp_auth_deadline: Option<u64>,
    /// Data-plane worker threads, each with its own SO_REUSEPORT listeners,
    /// relay sockets and TURN state [default: the number of CPU cores].
    #[arg(long, value_name = "N")]
    pub relay_threads: Option<usize>,
    /// Multiplexed relay mode: allocations share a few relay sockets per worker
    /// and relay IP, and peers are told apart by their address (many more
    /// allocations per relay IP than one socket each allows).
    #[arg(long)]
    #[serde(default)]
    pub multiplex_peer: bool,
    /// Shared relay sockets per worker and relay IP in --multiplex-peer mode [default: 4].
    #[arg(long, value_name = "N")]
    pub multiplex_sockets: Option<u16>,
    /// Datagrams read per recvmmsg call on a UDP socket, 1 to 128 [default: 32].
    #[arg(long, value_name = "N")]
    pub udp_batch: Option<usize>,
    /// Send every UDP datagram on its own, never as one UDP GSO send of several
    /// datagrams to one destination (for NIC drivers with GSO bugs).
    #[arg(long)]
    #[serde(default)]
    pub no_gso: bool,
    /// Relay established UDP channels (IPv4 and IPv6) in the kernel with XDP on these
    /// interfaces (native mode where the driver has it, else generic), repeatable; needs
    /// root, a relay built with clang, forwarding on the interfaces
    /// (net.ipv4.conf.IFACE.forwarding=1, and net.ipv6.conf.IFACE.forwarding=1 for IPv6;
    /// drop forwarded traffic in the firewall), and specific listening and relay IPs.
    #[arg(long, value_name = "IFACE")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub xdp: Vec<String>,

    /// Address relay sockets are bound to; one IPv4 and/or one IPv6 (enables RFC 6156 IPv6
    /// relaying) [default: the listening IP, if there is one specific IP].
    #[arg(long, value_name = "IP")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub relay_ip: Vec<IpAddr>,
    /// Public address behind 1:1 NAT, advertised as the relayed address: PUBLIC or
    /// PUBLIC/PRIVATE (PRIVATE = the relay IP it stands for), repeatable.
    #[arg(long, value_name = "IP[/IP]")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub external_ip: Vec<ExternalIp>,
    /// Lowest relay port; the default is above Linux's ephemeral ports 32768-60999
    /// [default: 61000].
    #[arg(long, value_name = "PORT")]
    pub min_port: Option<u16>,
    /// Highest relay port [default: 65535].
    #[arg(long, value_name = "PORT")]
    pub max_port: Option<u16>,

    /// REALM of the long-term credentials (required).
    #[arg(long)]
    pub realm: Option<String>,
    /// TURN REST API shared secret of the default tenant; give it twice to rotate
    /// (newest first).
    #[arg(
        long,
        value_name = "SECRET",
        env = "NEXRTC_STATIC_AUTH_SECRET",
        hide_env_values = true
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub static_auth_secret: Vec<String>,
    /// TOML file of tenants and their secrets, re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Key of the stateless nonces, shared by relays that must accept each other's
    /// nonces [default: random at start].
    #[arg(
        long,
        value_name = "SECRET",
        env = "NEXRTC_NONCE_SECRET",
        hide_env_values = true
    )]
    pub nonce_secret: Option<String>,

    /// Allow peers on 127.0.0.0/8 and ::1 (tests only).
    #[arg(long)]
    #[serde(default)]
    pub allow_loopback_peers: bool,
    /// Refuse ChannelBind for channel numbers 0x5000-0x7FFF, as RFC 8656 says (0x4000-0x4FFF
    /// only); by default they are accepted, as RFC 5766 allowed (coturn's turnutils pick
    /// numbers there).
    #[arg(long)]
    #[serde(default)]
    pub strict_channel_numbers: bool,
    /// Refuse peers in this range: CIDR, IP or IP-IP, repeatable (added to the defaults).
    #[arg(long, value_name = "RANGE")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub denied_peer_ip: Vec<PeerRange>,
    /// Allow peers in this range even if denied: CIDR, IP or IP-IP, repeatable.
    #[arg(long, value_name = "RANGE")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub allowed_peer_ip: Vec<PeerRange>,

    /// Certificate chain PEM file for TLS [default: a self-signed certificate, for
    /// development only].
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key PEM file for TLS.
    #[arg(long, value_name = "FILE")]
    pub pkey: Option<PathBuf>,

    /// Live allocations per user, 486 beyond; 0 = unlimited [default: 64].
    #[arg(long, value_name = "N")]
    pub user_quota: Option<u32>,
    /// Live allocations per tenant, 486 beyond; 0 = unlimited [default: 0].
    #[arg(long, value_name = "N")]
    pub tenant_quota: Option<u32>,
    /// Live allocations on this relay, 508 beyond; 0 = unlimited [default: 100000].
    #[arg(long, value_name = "N")]
    pub total_quota: Option<u32>,
    /// Channels per allocation, 508 beyond; 0 = unlimited (up to the 16,384
    /// channel numbers) [default: 64].
    #[arg(long, value_name = "N")]
    pub channels_quota: Option<u32>,
    /// Bandwidth of one allocation in BYTES per second, each direction (as coturn's
    /// max-bps); 0 = unlimited [default: 0].
    #[arg(long, value_name = "BYTES")]
    pub max_bps: Option<u64>,
    /// Permissions per allocation [default: 256].
    #[arg(long, value_name = "N")]
    pub permissions_quota: Option<u32>,
    /// Bytes per second of answers to unauthenticated requests (401 and 438
    /// challenges, 400s, Binding answers) to one source IP, with bursts of
    /// four times that: the relay must not amplify floods from spoofed addresses,
    /// yet every new allocation of every client behind one NAT address needs a
    /// 401 (about 130 bytes) [default: 524288].
    #[arg(long, value_name = "BYTES")]
    pub unauthenticated_bytes_per_ip: Option<u64>,
    /// Bytes per second of answers to unauthenticated requests to all sources
    /// together, with bursts of four times that [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub unauthenticated_bytes_total: Option<u64>,
    /// Longest allocation lifetime granted, seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub max_allocate_lifetime: Option<u64>,
    /// Channel binding lifetime, seconds [default: 600].
    #[arg(long, value_name = "SECS")]
    pub channel_lifetime: Option<u64>,
    /// Permission lifetime, seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    pub permission_lifetime: Option<u64>,
    /// Nonce lifetime before 438 Stale Nonce, seconds [default: 600].
    #[arg(long, value_name = "SECS")]
    pub stale_nonce: Option<u64>,

    /// Serve the QUIC relay (RFC 9298 CONNECT-UDP over HTTP/3) on this UDP address
    /// (443 in production), with the relay's TLS certificate (cert and pkey; self-signed
    /// without them) and the same credentials and peer filter as TURN.
    #[arg(long, value_name = "ADDR")]
    pub quic_listen: Option<SocketAddr>,
    /// Where new clients are sent while draining (300 ALTERNATE-SERVER), IP:PORT.
    #[arg(long, value_name = "ADDR")]
    pub alternate_server: Option<SocketAddr>,
    /// Seconds to wait for allocations to end after SIGTERM/SIGINT [default: 30
    /// when run from a terminal (stdin or stderr is one), else 300].
    #[arg(long, value_name = "SECS")]
    pub drain_grace: Option<u64>,
    /// Address of /metrics, /healthz and /readyz [default: 127.0.0.1:9641].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log JSON lines.
    #[arg(long)]
    #[serde(default)]
    pub log_json: bool,
    /// Write client and peer IP addresses in logs (redacted otherwise).
    #[arg(long)]
    #[serde(default)]
    pub log_addresses: bool,
    /// Set by the program, not the operator: a controller pushes the secrets
    /// (through the edge agent), so none need to be configured here.
    #[arg(skip)]
    #[serde(skip)]
    pub secrets_pushed: bool,
}

macro_rules! merge_fields {
    ($flags:ident, $file:ident;
     options: $($o:ident),*;
     lists: $($v:ident),*;
     switches: $($b:ident),*) => {
        Settings {
            config: $flags.config,
            $($o: $flags.$o.or($file.$o),)*
            $($v: if $flags.$v.is_empty() { $file.$v } else { $flags.$v },)*
            $($b: $flags.$b || $file.$b,)*
        }
    };
}

impl Settings {
    /// Flags (`self`) over file values; a list given as flags replaces the file's.
    pub fn merge(self, file: Settings) -> Settings {
        let flags = self;
        merge_fields!(flags, file;
            options: listening_port, tls_listening_port, extra_tls_listening_port,
                max_tcp_connections, max_tcp_connections_per_ip, tcp_auth_deadline, relay_threads, multiplex_sockets, udp_batch, min_port, max_port, realm, secrets_file, nonce_secret,
                cert, pkey, user_quota, tenant_quota, total_quota, channels_quota, max_bps, permissions_quota,
                unauthenticated_bytes_per_ip, unauthenticated_bytes_total,
                max_allocate_lifetime, channel_lifetime, permission_lifetime, stale_nonce,
                alternate_server, drain_grace, metrics_listen, quic_listen;
            lists: listening_ip, relay_ip, external_ip, static_auth_secret, denied_peer_ip,
                allowed_peer_ip, xdp;
            switches: multiplex_peer, no_gso, no_udp, no_tcp, no_tls, allow_loopback_peers, log_json, log_addresses,
                secrets_pushed, strict_channel_numbers)
    }
}

/// A peer address range: `CIDR`, a single IP, or coturn's `IP-IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRange(pub Vec<IpNet>);

impl FromStr for PeerRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(PeerRange(vec![net.trunc()]));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(PeerRange(vec![IpNet::from(ip)]));
        }
        let bad = || format!("{s:?} is not a CIDR, an IP address or a range IP-IP");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>());
        let nets: Vec<IpNet> = match (a, b) {
            (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(b))) if a <= b => {
                Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect()
            }
            (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(b))) if a <= b => {
                Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect()
            }
            _ => return Err(bad()),
        };
        Ok(PeerRange(nets))
    }
}

/// `--external-ip PUBLIC[/PRIVATE]` (coturn's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalIp {
    pub public: IpAddr,
    pub private: Option<IpAddr>,
}

impl FromStr for ExternalIp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not IP or PUBLIC-IP/PRIVATE-IP");
        let (public, private) = match s.split_once('/') {
            Some((p, q)) => (p, Some(q)),
            None => (s, None),
        };
        let public: IpAddr = public.trim().parse().map_err(|_| bad())?;
        let private = match private {
            Some(q) => Some(q.trim().parse::<IpAddr>().map_err(|_| bad())?),
            None => None,
        };
        if public.is_unspecified() || private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
            return Err(bad());
        }
        Ok(ExternalIp { public, private })
    }
}

/// Accepts `key = "one"` as well as `key = ["one", "two"]` in the file.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T> Visitor<'de> for OneOrMany<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            v.parse().map(|x| vec![x]).map_err(E::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s.parse().map_err(de::Error::custom)?);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany(PhantomData))
}

/// The defaults the help text promises.
pub(crate) mod defaults {
    use super::*;

    pub const LISTENING_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    pub const LISTENING_PORT: u16 = 3478;
    pub const TLS_LISTENING_PORT: u16 = 5349;
    /// Above the Linux default ephemeral range (net.ipv4.ip_local_port_range
    /// 32768-60999), so a relay port given back never becomes another
    /// process's outgoing socket: 4,536 ports per relay IP (README,
    /// "Relay ports").
    pub const MIN_PORT: u16 = 61000;
    pub const MAX_PORT: u16 = 65535;
    pub const MAX_TCP_CONNECTIONS: u32 = 10_000;
    /// A tenth of the host's connections: one address cannot hold them all,
    /// while a NAT's users still get many.
    pub const MAX_TCP_CONNECTIONS_PER_IP: u32 = 1_000;
    /// Time for a TLS handshake, the 401 round trip and the Allocate, with room to spare.
    pub const TCP_AUTH_DEADLINE_SECS: u64 = 10;
    /// Few shared sockets keep the recvmmsg/sendmmsg batches full (more datagrams per
    /// syscall); more sockets let more allocations of one host talk to the same peer
    /// address (the multiplexing limit). benches/RESULTS.md has the sweep.
    pub const MULTIPLEX_SOCKETS: u16 = 4;
    /// Datagrams per recvmmsg; benches/RESULTS.md has the sweep.
    pub const UDP_BATCH: usize = 32;
    pub const DRAIN_GRACE_SECS: u64 = 300;
    /// When stdin or stderr is a terminal.
    pub const FOREGROUND_DRAIN_GRACE_SECS: u64 = 30;
    pub const METRICS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9641);
    pub const UNSPECIFIED_V6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    fn flags(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("relay").chain(args.iter().copied()))
            .unwrap()
            .s
    }

    #[test]
    fn peer_ranges() {
        let r: PeerRange = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.0, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let r: PeerRange = "192.0.2.1".parse().unwrap();
        assert_eq!(r.0, vec!["192.0.2.1/32".parse::<IpNet>().unwrap()]);
        let r: PeerRange = "10.0.0.0-10.0.1.255".parse().unwrap();
        assert_eq!(r.0, vec!["10.0.0.0/23".parse::<IpNet>().unwrap()]);
        let r: PeerRange = "::1".parse().unwrap();
        assert_eq!(r.0, vec!["::1/128".parse::<IpNet>().unwrap()]);
        for bad in [
            "10.0.0.0/33",
            "nope",
            "10.0.0.5-10.0.0.1",
            "10.0.0.1-::1",
            "",
        ] {
            let e = bad.parse::<PeerRange>().unwrap_err();
            assert!(e.contains("not a CIDR"), "{bad}: {e}");
        }
    }

    #[test]
    fn external_ips() {
        let e: ExternalIp = "203.0.113.5".parse().unwrap();
        assert_eq!(
            (e.public, e.private),
            ("203.0.113.5".parse().unwrap(), None)
        );
        let e: ExternalIp = "203.0.113.5/10.0.0.5".parse().unwrap();
        assert_eq!(e.private, Some("10.0.0.5".parse().unwrap()));
        assert!("203.0.113.5/::1".parse::<ExternalIp>().is_err());
        assert!("0.0.0.0".parse::<ExternalIp>().is_err());
    }

    #[test]
    fn flags_override_file() {
        let file: Settings = toml::from_str(
            r#"
            listening_port = 4000
            realm = "file.example"
            listening_ip = "127.0.0.1"
            relay_ip = ["127.0.0.1", "::1"]
            denied_peer_ip = ["10.0.0.0/8", "192.0.2.0-192.0.2.1"]
            no_tls = true
            "#,
        )
        .unwrap();
        assert_eq!(file.relay_ip.len(), 2);
        assert_eq!(file.denied_peer_ip[1].0.len(), 1);
        let s = flags(&["--listening-port", "5000", "--relay-ip", "127.0.0.2"]).merge(file);
        assert_eq!(s.listening_port, Some(5000));
        assert_eq!(s.realm.as_deref(), Some("file.example"));
        assert_eq!(s.relay_ip, vec!["127.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.listening_ip, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(s.no_tls);
    }

    #[test]
    fn repeatable_flags() {
        let s = flags(&[
            "--static-auth-secret",
            "new",
            "--static-auth-secret",
            "old",
            "--denied-peer-ip",
            "198.51.100.0/24",
            "--external-ip",
            "203.0.113.9/127.0.0.1",
        ]);
        assert_eq!(s.static_auth_secret, vec!["new", "old"]);
        assert_eq!(s.denied_peer_ip.len(), 1);
        assert_eq!(s.external_ip.len(), 1);
        let bad = Cli::try_parse_from(["relay", "--denied-peer-ip", "300.1.1.1/8"]);
        let msg = bad.err().unwrap().to_string();
        assert!(msg.contains("--denied-peer-ip"), "{msg}");
    }
}
