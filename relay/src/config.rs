//! The checked relay configuration, built from [`Settings`] (flags over file).
//!
//! Parse, don't validate: once a [`RelayConfig`] exists, every address, port
//! range, CIDR and secret in it has been checked, and the errors name the key,
//! the file and (for file values) the line.

use std::fmt;
use std::io::{self, IsTerminal};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use turn_core::auth::CredentialsError;
use turn_core::PeerFilter;

pub use secrets::{CredentialSource, STATIC_TENANT};

use crate::settings::keys::PLACEHOLDER;
use crate::settings::{defaults, ExternalIp, Settings};
use crate::tls::{CertSource, TlsError};

mod secrets;

/// Largest `--udp-batch`: datagrams per `recvmmsg` / `sendmmsg` call.
pub(crate) const MAX_BATCH: usize = 128;

/// Where relay sockets of one family are bound, and what address is advertised
/// in XOR-RELAYED-ADDRESS (`--external-ip` behind 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// toml's message names the line, the column and the key.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{}: {message}", key_names(key))]
    Invalid { key: &'static str, message: String },
    #[error("{path}: {source}")]
    Credentials {
        path: String,
        source: CredentialsError,
    },
    #[error("cannot read random bytes from the OS: {0}")]
    Random(String),
}

/// The smallest answer budget accepted, bytes per second.
const MIN_ANSWER_BYTES: u64 = 1024;

fn key_names(key: &str) -> String {
    format!("`{key}` (--{})", key.replace('_', "-"))
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The TURN listeners (every IP gets every enabled port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub ips: Vec<IpAddr>,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    /// `--tls-listening-port` and the extra TLS port, if any.
    pub tls_ports: Vec<u16>,
}

/// A checked relay configuration.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The TURN core's configuration (realm, lifetimes, quotas, peer filter, nonce key).
    pub core: turn_core::Config,
    /// Where tenant secrets come from; re-read on SIGHUP.
    pub credentials: CredentialSource,
    pub listeners: Listeners,
    pub relay_v4: Option<RelayAddress>,
    pub relay_v6: Option<RelayAddress>,
    /// Further relay IPs (`--relay-ip` repeated): allocations are spread over
    /// all of them, round robin.
    pub relay_extra: Vec<RelayAddress>,
    pub ports: RangeInclusive<u16>,
    /// `None` when neither TLS nor QUIC listens.
    pub tls: Option<CertSource>,
    /// The QUIC relay's UDP address (`--quic-listen`), if it runs.
    pub quic_listen: Option<SocketAddr>,
    pub max_tcp_connections: usize,
    /// Most TCP and TLS connections from one client IP, over every worker.
    pub max_tcp_connections_per_ip: u32,
    /// A TCP or TLS connection without an allocation for this long is closed.
    pub tcp_auth_deadline: Duration,
    /// Data-plane workers (at least 1).
    pub relay_threads: usize,
    /// Shared relay sockets per worker and relay IP; `None`: one socket per
    /// allocation (the default).
    pub multiplex_sockets: Option<u16>,
    /// Send runs of datagrams to one destination as one UDP GSO send, where
    /// the kernel supports it (`--no-gso` turns it off).
    pub gso: bool,
    /// Datagrams per `recvmmsg` (1..=128).
    pub udp_batch: usize,
    /// Interfaces the XDP fast path attaches to (`--xdp`); empty: none.
    pub xdp: Vec<String>,
    pub drain_grace: Duration,
    pub metrics_listen: SocketAddr,
    pub log_json: bool,
    pub log_addresses: bool,
    /// The configuration file, if one was read.
    pub file: Option<PathBuf>,
}

impl RelayConfig {
    /// Reads `--config` (if given), merges the flags over it and checks the result.
    pub fn load(flags: Settings) -> Result<RelayConfig, ConfigError> {
        let file = flags.config.clone();
        let mut settings = match &file {
            Some(path) => flags.merge(parse_file(path)?),
            None => flags,
        };
        if settings.drain_grace.is_none() {
            let foreground = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
            settings.drain_grace = Some(default_drain_grace(foreground));
        }
        let mut config = RelayConfig::build(settings, random_key()?)?;
        config.file = file;
        Ok(config)
    }

    /// Checks merged settings; `random_nonce_key` is used unless `nonce_secret` is set.
    pub fn build(s: Settings, random_nonce_key: [u8; 32]) -> Result<RelayConfig, ConfigError> {
        let realm = s.realm.clone().unwrap_or_default();
        if realm.trim().is_empty() {
            return Err(invalid(
                "realm",
                "required (the REALM of the TURN credentials)",
            ));
        }
        let nonce_key = match &s.nonce_secret {
            Some(secret) if secret.len() < 16 => {
                return Err(invalid("nonce_secret", "must be at least 16 characters"))
            }
            Some(secret) if secret.contains(PLACEHOLDER) => {
                return Err(invalid("nonce_secret", placeholder()))
            }
            Some(secret) => nonce_key_from(secret),
            None => random_nonce_key,
        };

        let listeners = listeners(&s)?;
        let (min_port, max_port) = (
            s.min_port.unwrap_or(defaults::MIN_PORT),
            s.max_port.unwrap_or(defaults::MAX_PORT),
        );
        if min_port == 0 || min_port > max_port {
            return Err(invalid(
                "min_port",
                format!("need 0 < min_port <= max_port, got {min_port}..{max_port}"),
            ));
        }
        let ports = min_port..=max_port;
        let (relay_v4, relay_v6) = relay_addresses(&s)?;
        let relay_extra = extra_relay_addresses(&s, relay_v4, relay_v6);

        let mut filter = PeerFilter::default();
        filter.allow_loopback(s.allow_loopback_peers);
        for net in s.denied_peer_ip.iter().flat_map(|r| r.0.iter()) {
            filter.deny(*net);
        }
        for net in s.allowed_peer_ip.iter().flat_map(|r| r.0.iter()) {
            filter.allow(*net);
        }
        // The relay's own addresses: peers there only on ports it holds.
        for r in [relay_v4, relay_v6].iter().flatten().chain(&relay_extra) {
            filter.relay_ip(r.bind, r.advertised);
        }
        filter.own_addresses(listeners.ips.iter().copied());
        filter.own_addresses(s.external_ip.iter().map(|e| e.public));
        let wildcard = listeners
            .ips
            .iter()
            .chain([relay_v4, relay_v6].iter().flatten().map(|r| &r.bind))
            .any(IpAddr::is_unspecified);
        if wildcard {
            filter.own_addresses(crate::host::interface_addresses());
        }

        let mut core = turn_core::Config::new(realm, nonce_key);
        core.relay_ipv4 = relay_v4.is_some();
        core.relay_ipv6 = relay_v6.is_some();
        core.peer_filter = filter;
        core.alternate_server = s.alternate_server;
        core.log_addresses = s.log_addresses;
        core.strict_channel_numbers = s.strict_channel_numbers;
        let q = &mut core.quotas;
        q.user_allocations = s.user_quota.unwrap_or(q.user_allocations);
        q.tenant_allocations = s.tenant_quota.unwrap_or(q.tenant_allocations);
        q.total_allocations = s.total_quota.unwrap_or(q.total_allocations);
        q.allocation_bytes_per_sec = s.max_bps.unwrap_or(q.allocation_bytes_per_sec);
        q.permissions_per_allocation = s.permissions_quota.unwrap_or(q.permissions_per_allocation);
        q.channels_per_allocation = s.channels_quota.unwrap_or(q.channels_per_allocation);
        // Below 1 KiB/s even a handful of 401s would be refused.
        let answer_bytes = |key, v: Option<u64>, default: u64| match v {
            Some(v) if v < MIN_ANSWER_BYTES => Err(invalid(
                key,
                format!("must be at least {MIN_ANSWER_BYTES} bytes per second, got {v}"),
            )),
            v => Ok(turn_core::ByteRate::per_second(v.unwrap_or(default))),
        };
        core.unauthenticated = turn_core::AnswerBudget {
            per_source: answer_bytes(
                "unauthenticated_bytes_per_ip",
                s.unauthenticated_bytes_per_ip,
                turn_core::AnswerBudget::DEFAULT_PER_SOURCE,
            )?,
            total: answer_bytes(
                "unauthenticated_bytes_total",
                s.unauthenticated_bytes_total,
                turn_core::AnswerBudget::DEFAULT_TOTAL,
            )?,
        };
        let secs = |key, v: Option<u64>, default: Duration| match v {
            Some(0) => Err(invalid(key, "must be at least 1 second")),
            Some(v) => Ok(Duration::from_secs(v)),
            None => Ok(default),
        };
        core.max_lifetime = secs(
            "max_allocate_lifetime",
            s.max_allocate_lifetime,
            core.max_lifetime,
        )?;
        core.default_lifetime = core.default_lifetime.min(core.max_lifetime);
        core.channel_lifetime = secs(
            "channel_lifetime",
            s.channel_lifetime,
            core.channel_lifetime,
        )?;
        core.permission_lifetime = secs(
            "permission_lifetime",
            s.permission_lifetime,
            core.permission_lifetime,
        )?;
        core.nonce_lifetime = secs("stale_nonce", s.stale_nonce, core.nonce_lifetime)?;

        let no_tls = listeners.tls_ports.is_empty() && s.quic_listen.is_none();
        let tls = match (&s.cert, &s.pkey, no_tls) {
            (_, _, true) => None,
            (Some(cert), Some(key), false) => Some(CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None, false) => Some(CertSource::SelfSigned {
                names: self_signed_names(&listeners, relay_v4, relay_v6),
            }),
            (Some(_), None, false) => return Err(invalid("pkey", "--cert needs --pkey")),
            (None, Some(_), false) => return Err(invalid("cert", "--pkey needs --cert")),
        };

        if s.static_auth_secret.iter().any(|v| v.contains(PLACEHOLDER)) {
            return Err(invalid("static_auth_secret", placeholder()));
        }
        let credentials = CredentialSource {
            static_secrets: s.static_auth_secret.clone(),
            file: s.secrets_file.clone(),
            pushed: s.secrets_pushed,
        };
        credentials.load()?;

        Ok(RelayConfig {
            core,
            credentials,
            listeners,
            relay_v4,
            relay_v6,
            relay_extra,
            ports,
            tls,
            quic_listen: s.quic_listen,
            max_tcp_connections: s
                .max_tcp_connections
                .unwrap_or(defaults::MAX_TCP_CONNECTIONS) as usize,
            max_tcp_connections_per_ip: match s.max_tcp_connections_per_ip {
                Some(0) => return Err(invalid("max_tcp_connections_per_ip", "must be at least 1")),
                n => n.unwrap_or(defaults::MAX_TCP_CONNECTIONS_PER_IP),
            },
            tcp_auth_deadline: secs(
                "tcp_auth_deadline",
                s.tcp_auth_deadline,
                Duration::from_secs(defaults::TCP_AUTH_DEADLINE_SECS),
            )?,
            relay_threads: match s.relay_threads {
                Some(0) => return Err(invalid("relay_threads", "must be at least 1")),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            multiplex_sockets: match (s.multiplex_peer, s.multiplex_sockets) {
                (_, Some(0)) => return Err(invalid("multiplex_sockets", "must be at least 1")),
                (true, n) => Some(n.unwrap_or(defaults::MULTIPLEX_SOCKETS)),
                (false, _) => None,
            },
            gso: !s.no_gso,
            xdp: s.xdp.clone(),
            udp_batch: match s.udp_batch {
                Some(n) if !(1..=MAX_BATCH).contains(&n) => {
                    return Err(invalid("udp_batch", "must be 1 to 128"))
                }
                n => n.unwrap_or(defaults::UDP_BATCH),
            },
            drain_grace: Duration::from_secs(s.drain_grace.unwrap_or(defaults::DRAIN_GRACE_SECS)),
            metrics_listen: s.metrics_listen.unwrap_or(defaults::METRICS_LISTEN),
            log_json: s.log_json,
            log_addresses: s.log_addresses,
            file: None,
        })
    }
}

impl RelayConfig {
    /// The checks of a start that need no socket, beyond those of [`RelayConfig::load`]
    /// (which read the secrets): the TLS certificate and key files parse and
    /// match. Not checked: that the addresses are this host's and the ports free.
    pub fn check_files(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(source @ CertSource::Files { .. }) => crate::tls::check(source),
            _ => Ok(()),
        }
    }

    /// One line saying what a start would run, without secrets.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("realm {:?}", self.core.realm),
            format!("TURN on {}", self.listeners),
        ];
        let relays: Vec<String> = self
            .relay_addresses()
            .map(|r| match r.advertised == r.bind {
                true => r.bind.to_string(),
                false => format!("{} (bound to {})", r.advertised, r.bind),
            })
            .collect();
        parts.push(format!(
            "relay {} ports {}-{}",
            relays.join(","),
            self.ports.start(),
            self.ports.end()
        ));
        parts.push(match &self.tls {
            None => "TLS off".to_owned(),
            Some(CertSource::Files { cert, .. }) => format!("TLS certificate {}", cert.display()),
            Some(CertSource::SelfSigned { .. }) => "TLS self-signed (development only)".to_owned(),
        });
        parts.push(self.credentials.summary());
        parts.push(format!("{} workers", self.relay_threads));
        if let Some(n) = self.multiplex_sockets {
            parts.push(format!("multiplexed ({n} sockets per worker and relay IP)"));
        }
        parts.push(format!("metrics on {}", self.metrics_listen));
        parts.push(format!("drain grace {}s", self.drain_grace.as_secs()));
        parts.join("; ")
    }

    /// Every relay IP: the primary IPv4 and IPv6 ones, then the extra ones.
    pub fn relay_addresses(&self) -> impl Iterator<Item = RelayAddress> + '_ {
        self.relay_v4
            .iter()
            .chain(self.relay_v6.iter())
            .chain(self.relay_extra.iter())
            .copied()
    }
}

/// `--relay-ip` beyond the first of each family; each is advertised as the
/// `--external-ip PUBLIC/PRIVATE` naming it, else as itself.
fn extra_relay_addresses(
    s: &Settings,
    v4: Option<RelayAddress>,
    v6: Option<RelayAddress>,
) -> Vec<RelayAddress> {
    let primary: Vec<IpAddr> = [v4, v6].iter().flatten().map(|r| r.bind).collect();
    let mut out: Vec<RelayAddress> = Vec::new();
    for ip in &s.relay_ip {
        if primary.contains(ip) || out.iter().any(|r| r.bind == *ip) {
            continue;
        }
        let advertised = s
            .external_ip
            .iter()
            .find(|e| e.private == Some(*ip))
            .map_or(*ip, |e| e.public);
        out.push(RelayAddress {
            bind: *ip,
            advertised,
        });
    }
    out
}

/// A relay started from a terminal is stopped by a person waiting for it: a
/// short grace. Under a service manager (no terminal) SIGTERM waits the long
/// one, for calls to end.
pub(crate) fn default_drain_grace(foreground: bool) -> u64 {
    if foreground {
        defaults::FOREGROUND_DRAIN_GRACE_SECS
    } else {
        defaults::DRAIN_GRACE_SECS
    }
}

pub(crate) fn parse_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn listeners(s: &Settings) -> Result<Listeners, ConfigError> {
    let ips = if s.listening_ip.is_empty() {
        vec![defaults::LISTENING_IP]
    } else {
        s.listening_ip.clone()
    };
    let port = s.listening_port.unwrap_or(defaults::LISTENING_PORT);
    let tls_port = s.tls_listening_port.unwrap_or(defaults::TLS_LISTENING_PORT);
    let extra = s.extra_tls_listening_port.unwrap_or(0);
    if port == 0 {
        return Err(invalid("listening_port", "must not be 0"));
    }
    let mut tls_ports = Vec::new();
    if !s.no_tls {
        if tls_port == 0 {
            return Err(invalid(
                "tls_listening_port",
                "must not be 0 (use --no-tls)",
            ));
        }
        if !s.no_tcp && tls_port == port {
            return Err(invalid(
                "tls_listening_port",
                format!("{tls_port} is also the TCP port"),
            ));
        }
        tls_ports.push(tls_port);
        if extra != 0 {
            if extra == tls_port || (!s.no_tcp && extra == port) {
                return Err(invalid(
                    "extra_tls_listening_port",
                    format!("{extra} is already used"),
                ));
            }
            tls_ports.push(extra);
        }
    }
    let l = Listeners {
        ips,
        udp_port: (!s.no_udp).then_some(port),
        tcp_port: (!s.no_tcp).then_some(port),
        tls_ports,
    };
    if l.udp_port.is_none() && l.tcp_port.is_none() && l.tls_ports.is_empty() {
        return Err(invalid("no_udp", "every transport is disabled"));
    }
    Ok(l)
}

/// Where relay sockets are bound and what is advertised, per family. The bound
/// IP comes from `--relay-ip`, else the private side of `--external-ip
/// PUBLIC/PRIVATE`, else the one specific listening IP of that family, else the
/// wildcard (only when an external IP is advertised for it).
fn relay_addresses(
    s: &Settings,
) -> Result<(Option<RelayAddress>, Option<RelayAddress>), ConfigError> {
    let family = |v4: bool| -> Result<Option<RelayAddress>, ConfigError> {
        let of = |ip: &&IpAddr| ip.is_ipv4() == v4;
        let relay: Vec<&IpAddr> = s.relay_ip.iter().filter(of).collect();
        if relay.iter().any(|ip| ip.is_unspecified()) {
            return Err(invalid(
                "relay_ip",
                "must be a specific address, not a wildcard",
            ));
        }
        let externals: Vec<&ExternalIp> = s
            .external_ip
            .iter()
            .filter(|e| e.public.is_ipv4() == v4)
            .collect();
        let specific: Vec<&IpAddr> = s
            .listening_ip
            .iter()
            .filter(of)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let bind = relay
            .first()
            .map(|ip| **ip)
            .or_else(|| externals.iter().find_map(|e| e.private))
            .or_else(|| (specific.len() == 1).then(|| *specific[0]))
            .or_else(|| {
                (!externals.is_empty()).then_some(if v4 {
                    defaults::LISTENING_IP
                } else {
                    defaults::UNSPECIFIED_V6
                })
            });
        let Some(bind) = bind else { return Ok(None) };
        let advertised = externals
            .iter()
            .find(|e| e.private == Some(bind))
            .or_else(|| externals.iter().find(|e| e.private.is_none()))
            .map_or(bind, |e| e.public);
        Ok(Some(RelayAddress { bind, advertised }))
    };
    let (v4, v6) = (family(true)?, family(false)?);
    if v4.is_none() && v6.is_none() {
        return Err(invalid(
            "relay_ip",
            "cannot tell which address to relay from: set --relay-ip (and --external-ip \
             behind NAT), or listen on one specific --listening-ip",
        ));
    }
    Ok((v4, v6))
}

fn self_signed_names(
    l: &Listeners,
    v4: Option<RelayAddress>,
    v6: Option<RelayAddress>,
) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    let ips = l
        .ips
        .iter()
        .copied()
        .chain([v4, v6].into_iter().flatten().map(|r| r.advertised));
    for ip in ips.filter(|ip| !ip.is_unspecified()) {
        let s = ip.to_string();
        if !names.contains(&s) {
            names.push(s);
        }
    }
    names
}

/// The error of a secret left as the default file's example.
fn placeholder() -> String {
    format!("still the example of the default configuration file ({PLACEHOLDER}…): set a secret of your own")
}

fn nonce_key_from(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"nexrtc relay nonce key v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn random_key() -> Result<[u8; 32], ConfigError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| ConfigError::Random(e.to_string()))?;
    Ok(key)
}

impl fmt::Display for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips: Vec<String> = self.ips.iter().map(|ip| ip.to_string()).collect();
        write!(f, "{}", ips.join(","))?;
        if let Some(p) = self.udp_port {
            write!(f, " udp:{p}")?;
        }
        if let Some(p) = self.tcp_port {
            write!(f, " tcp:{p}")?;
        }
        for p in &self.tls_ports {
            write!(f, " tls:{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
