//! `nexrtc controller` configuration: flags ([`ControllerArgs`]) over a TOML file
//! ([`FileConfig`], unknown keys refused with their line), checked into a
//! [`ControllerConfig`].
//!
//! ```toml
//! listen = "0.0.0.0:443"
//! tls_cert = "/etc/nexrtc/controller.crt"
//! tls_key = "/etc/nexrtc/controller.key"
//! etcd_endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
//! geoip_db = "/var/lib/GeoIP/GeoLite2-City.mmdb"
//! default_region = "eu-west"
//! trusted_proxies = ["10.0.0.0/8"]
//! lease_ttl_secs = 5
//! heartbeat_interval_ms = 1000
//! relay_miss_after_ms = 2000   # silent this long: out of the answers (default 2 heartbeats)
//! advertise_url = "https://c1.example.net"   # where other replicas send signaling clients
//! signal_room_size = 50
//!
//! [rate_limit]
//! per_second = 100
//! burst = 200
//!
//! [http]                   # connection limits (defaults shown)
//! header_read_timeout_secs = 10    # a request head must arrive within this (slowloris)
//! idle_timeout_secs = 60           # no request in progress and no traffic (not SSE/WebSocket)
//! tls_handshake_timeout_secs = 10
//! max_connections = 4096           # lowered to fit the descriptor limit (RLIMIT_NOFILE)
//! max_connections_per_ip = 128     # per TCP peer; trusted_proxies are exempt
//!
//! [bootstrap]              # created at first start if absent (used by `nexrtc dev`)
//! admin_key = "nxk_…"
//! tenant = "dev"
//! [[bootstrap.regions]]
//! name = "local"
//! lat = 50.11
//! lon = 8.68
//! ```
//!
//! Plain HTTP is refused unless the listen address is loopback or `insecure_http = true`.
//! Every key is listed, with its default and meaning, in [`keys::KEYS`] (rendered into
//! `docs/config-reference.md` and the default file by `nexrtc config-reference`; its tests
//! hold it to what this parser accepts and applies); `nexrtc controller init` (`init.rs`)
//! writes a first file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use nexrtc_geo::{Region, Weights};
use serde::Deserialize;

use crate::app::Options;
use crate::clock::Clock;
use crate::http::HttpLimits;
use crate::model::{self, RateLimit};
use crate::signal::SignalOptions;
use crate::state::RankingOptions;
use crate::store::DEFAULT_PREFIX;

pub mod keys;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message names the line, the column and the key.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("`{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// `nexrtc controller` flags; each overrides the file's key of the same name.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ControllerArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    #[arg(long)]
    pub insecure_http: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// etcd client URL, repeatable [default: none = embedded in-memory store].
    #[arg(long = "etcd", value_name = "URL")]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate (PEM) that etcd's server certificates are checked against;
    /// with it the etcd endpoints must be https:// URLs.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd (with --etcd-key).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// GeoIP2/GeoLite2 City database.
    #[arg(long, value_name = "FILE")]
    pub geoip_db: Option<PathBuf>,
    /// Region assumed for clients GeoIP cannot place.
    #[arg(long, value_name = "REGION")]
    pub default_region: Option<String>,
    /// Proxy whose X-Forwarded-For is believed (IP or CIDR), repeatable.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<String>,
    /// Log JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Base URL of this replica as clients reach it (signaling redirects to it)
    /// [default: the listening address, http:// or https://].
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Most participants in one signaling room [default: 50].
    #[arg(long, value_name = "N")]
    pub signal_room_size: Option<usize>,
    /// Serve the relay zone over DNS here, UDP and TCP (GeoDNS; with --dns-zone).
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,
    /// The zone served over DNS (relays under turn.<zone>; with --dns-listen).
    #[arg(long, value_name = "ZONE")]
    pub dns_zone: Option<String>,
}

/// The file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub insecure_http: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub etcd_endpoints: Option<Vec<String>>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub key_prefix: Option<String>,
    pub lease_ttl_secs: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub relay_miss_after_ms: Option<u64>,
    pub load_refresh_secs: Option<u64>,
    pub usage_retention_days: Option<u64>,
    pub max_snapshot_age_secs: Option<u64>,
    pub startup_timeout_secs: Option<u64>,
    pub geoip_db: Option<PathBuf>,
    pub default_region: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub metrics_allow: Option<Vec<String>>,
    #[serde(default, deserialize_with = "rate_limit_file")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, deserialize_with = "weights_file")]
    pub weights: Option<Weights>,
    pub log_json: Option<bool>,
    pub advertise_url: Option<String>,
    pub signal_room_size: Option<usize>,
    pub dns_listen: Option<SocketAddr>,
    pub dns_zone: Option<String>,
    pub dns_ttl_secs: Option<u32>,
    pub dns_nameservers: Option<Vec<String>>,
    pub dns_hostmaster: Option<String>,
    pub dns_rate_limit: Option<f64>,
    pub dns_dnssec_key: Option<PathBuf>,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub bootstrap: Bootstrap,
}

/// `[http]`: connection limits and timeouts (see [`HttpLimits`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

/// Records created at first start when absent (idempotent; safe with many replicas).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// An API key (`nxk_…`) with scope `admin`.
    pub admin_key: Option<String>,
    /// An API key with scope `node`, for edge agents.
    pub node_key: Option<String>,
    /// An API key with scopes `ice` and `client_ip` for `tenant`.
    pub ice_key: Option<String>,
    /// A tenant to create.
    pub tenant: Option<String>,
    /// Its first TURN secret (random if absent).
    pub tenant_secret: Option<String>,
    /// Its allowed browser origins.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Regions to create.
    #[serde(default, deserialize_with = "regions_file")]
    pub regions: Vec<Region>,
}

// The file's shapes of records the API also reads: the file refuses unknown keys
// (with their line), the API's JSON stays lenient.

/// `[rate_limit]`: both keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    per_second: f64,
    burst: u32,
}

/// `[weights]`: each key optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WeightsFile {
    load_penalty_ms: f64,
    overload_threshold: f64,
    max_regions: usize,
    relays_per_region: usize,
}

impl Default for WeightsFile {
    fn default() -> Self {
        let w = Weights::DEFAULT;
        WeightsFile {
            load_penalty_ms: w.load_penalty_ms,
            overload_threshold: w.overload_threshold,
            max_regions: w.max_regions,
            relays_per_region: w.relays_per_region,
        }
    }
}

/// `[[bootstrap.regions]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    name: String,
    lat: f64,
    lon: f64,
    score_multiplier: Option<f64>,
}

fn rate_limit_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RateLimit>, D::Error> {
    let r = RateLimitFile::deserialize(d)?;
    Ok(Some(RateLimit {
        per_second: r.per_second,
        burst: r.burst,
    }))
}

fn weights_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Weights>, D::Error> {
    let w = WeightsFile::deserialize(d)?;
    Ok(Some(Weights {
        load_penalty_ms: w.load_penalty_ms,
        overload_threshold: w.overload_threshold,
        max_regions: w.max_regions,
        relays_per_region: w.relays_per_region,
    }))
}

fn regions_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Region>, D::Error> {
    let list = Vec::<RegionFile>::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(|r| {
            let mut region = Region::new(r.name, r.lat, r.lon);
            if let Some(m) = r.score_multiplier {
                region.score_multiplier = m;
            }
            region
        })
        .collect())
}

/// TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS to etcd: the CA its server certificates are checked against, and the client
/// certificate and key presented to it (etcd's `--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub identity: Option<TlsFiles>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    /// `None`: plain HTTP (loopback or `insecure_http`).
    pub tls: Option<TlsFiles>,
    /// Empty: the embedded in-memory store.
    pub etcd_endpoints: Vec<String>,
    /// `None`: plain HTTP/2 to etcd.
    pub etcd_tls: Option<EtcdTlsFiles>,
    pub key_prefix: String,
    pub geoip_db: Option<PathBuf>,
    /// How long startup waits for the store's first snapshot.
    pub startup_timeout: Duration,
    pub log_json: bool,
    pub bootstrap: Bootstrap,
    /// Connection limits and timeouts.
    pub http: HttpLimits,
    /// Everything the API itself uses (GeoIP is opened by `run`).
    pub options: Options,
    /// The DNS server (`None`: no DNS).
    pub dns: Option<crate::dns::DnsSettings>,
}

impl ControllerConfig {
    /// Reads `--config` if given, merges the flags over it and checks the result.
    pub fn load(args: ControllerArgs) -> Result<ControllerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => parse_file(path)?,
            None => FileConfig::default(),
        };
        Self::build(args, file)
    }

    /// Merges and checks (flags win).
    pub fn build(args: ControllerArgs, file: FileConfig) -> Result<ControllerConfig, ConfigError> {
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let insecure = args.insecure_http || file.insecure_http.unwrap_or(false);
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(invalid("tls_cert", "tls_cert and tls_key go together")),
        };
        if tls.is_none() && !listen.ip().is_loopback() && !insecure {
            return Err(invalid(
                "listen",
                format!(
                    "{listen} is not loopback: set tls_cert and tls_key, or insecure_http = true \
                     behind a TLS-terminating proxy"
                ),
            ));
        }
        let etcd_endpoints = match args.etcd_endpoints.is_empty() {
            false => args.etcd_endpoints,
            true => file.etcd_endpoints.unwrap_or_default(),
        };
        for e in &etcd_endpoints {
            check_etcd_endpoint(e)?;
        }
        let etcd_tls = etcd_tls(
            &etcd_endpoints,
            args.etcd_ca.or(file.etcd_ca),
            args.etcd_cert.or(file.etcd_cert),
            args.etcd_key.or(file.etcd_key),
        )?;
        let key_prefix = file.key_prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if !key_prefix.starts_with('/') || !key_prefix.ends_with('/') {
            return Err(invalid("key_prefix", "must start and end with '/'"));
        }
        let lease_ttl = Duration::from_secs(file.lease_ttl_secs.unwrap_or(5));
        let heartbeat = Duration::from_millis(file.heartbeat_interval_ms.unwrap_or(1000));
        if lease_ttl.is_zero() || heartbeat.is_zero() || heartbeat >= lease_ttl {
            return Err(invalid(
                "heartbeat_interval_ms",
                "need 0 < heartbeat interval < lease TTL (lease_ttl_secs)",
            ));
        }
        // Two heartbeat intervals by default: one late heartbeat is not a dead relay.
        let miss_after = match file.relay_miss_after_ms {
            Some(ms) => Duration::from_millis(ms),
            None => heartbeat * 2,
        };
        if miss_after <= heartbeat {
            return Err(invalid(
                "relay_miss_after_ms",
                "must be longer than the heartbeat interval (heartbeat_interval_ms)",
            ));
        }
        let default_region = args.default_region.or(file.default_region);
        if let Some(region) = &default_region {
            nexrtc_geo::validate_region_name(region)
                .map_err(|e| invalid("default_region", e.to_string()))?;
        }
        let trusted = match args.trusted_proxies.is_empty() {
            false => args.trusted_proxies,
            true => file.trusted_proxies.unwrap_or_default(),
        };
        let defaults = Options::default();
        let rate_limit = file.rate_limit.unwrap_or(defaults.default_rate_limit);
        rate_limit
            .validate()
            .map_err(|e| invalid("rate_limit", e))?;
        check_bootstrap(&file.bootstrap)?;
        let advertise_url = match args.advertise_url.or(file.advertise_url) {
            Some(url) => Some(check_url(&url)?),
            None => None,
        };
        let room_size = args
            .signal_room_size
            .or(file.signal_room_size)
            .unwrap_or(defaults.signal.room_size);
        if !(1..=MAX_ROOM_SIZE).contains(&room_size) {
            return Err(invalid(
                "signal_room_size",
                format!("must be 1 to {MAX_ROOM_SIZE}"),
            ));
        }
        let trusted_proxies = nets("trusted_proxies", &trusted)?;
        let http = http_limits(&file.http, &trusted_proxies)?;
        let dns = dns_config(
            args.dns_listen.or(file.dns_listen),
            args.dns_zone.or(file.dns_zone),
            file.dns_ttl_secs,
            file.dns_nameservers,
            file.dns_hostmaster,
            file.dns_rate_limit,
            file.dns_dnssec_key,
        )?;
        let options = Options {
            trusted_proxies,
            lease_ttl,
            heartbeat_interval: heartbeat,
            relay_miss_after: miss_after,
            load_refresh: Duration::from_secs(file.load_refresh_secs.unwrap_or(30).max(1)),
            usage_retention: match file.usage_retention_days {
                Some(0) => return Err(invalid("usage_retention_days", "must be at least 1")),
                Some(days) => Duration::from_secs(days.min(3660) * 86_400),
                None => defaults.usage_retention,
            },
            default_rate_limit: rate_limit,
            max_snapshot_age: Duration::from_secs(file.max_snapshot_age_secs.unwrap_or(30)),
            metrics_allow: match &file.metrics_allow {
                Some(list) => nets("metrics_allow", list)?,
                None => defaults.metrics_allow,
            },
            write_wait: defaults.write_wait,
            ranking: RankingOptions {
                default_region,
                weights: check_weights(file.weights.unwrap_or_default())?,
                ..RankingOptions::default()
            },
            geoip: None,
            clock: Clock::System,
            signal: SignalOptions {
                room_size,
                advertise_url,
                ..defaults.signal
            },
            client_probes: defaults.client_probes,
        };
        Ok(ControllerConfig {
            listen,
            tls,
            etcd_endpoints,
            etcd_tls,
            key_prefix,
            geoip_db: args.geoip_db.or(file.geoip_db),
            startup_timeout: Duration::from_secs(file.startup_timeout_secs.unwrap_or(30)),
            log_json: args.log_json || file.log_json.unwrap_or(false),
            bootstrap: file.bootstrap,
            http,
            options,
            dns,
        })
    }
}

/// A DNS name (`key` names the setting in an error).
fn dns_name(key: &'static str, name: &str) -> Result<hickory_proto::rr::Name, ConfigError> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let parsed = hickory_proto::rr::Name::from_ascii(&fqdn)
        .map_err(|e| invalid(key, format!("{name:?} is not a DNS name: {e}")))?;
    if parsed.is_root() {
        return Err(invalid(key, "the root is not a zone this server can serve"));
    }
    Ok(parsed.to_lowercase())
}

/// The DNS server's settings: both `dns_listen` and `dns_zone`, or neither.
fn dns_config(
    listen: Option<SocketAddr>,
    zone: Option<String>,
    ttl: Option<u32>,
    nameservers: Option<Vec<String>>,
    hostmaster: Option<String>,
    rate_limit: Option<f64>,
    dnssec_key: Option<PathBuf>,
) -> Result<Option<crate::dns::DnsSettings>, ConfigError> {
    let (listen, zone) = match (listen, zone) {
        (Some(listen), Some(zone)) => (listen, zone),
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(invalid("dns_zone", "dns_listen needs dns_zone")),
        (None, Some(_)) => return Err(invalid("dns_listen", "dns_zone needs dns_listen")),
    };
    let apex = dns_name("dns_zone", &zone)?;
    let ttl = ttl.unwrap_or(30);
    if !(1..=3600).contains(&ttl) {
        return Err(invalid("dns_ttl_secs", "must be 1 to 3600 seconds"));
    }
    let under = |label: &str| {
        apex.prepend_label(label)
            .map_err(|e| invalid("dns_zone", e.to_string()))
    };
    let nameservers = match nameservers {
        Some(list) if list.is_empty() => {
            return Err(invalid("dns_nameservers", "name at least one server"))
        }
        Some(list) => (list.iter())
            .map(|n| dns_name("dns_nameservers", n))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![under("ns")?],
    };
    let hostmaster = match hostmaster {
        Some(h) => dns_name("dns_hostmaster", &h)?,
        None => under("hostmaster")?,
    };
    let rate_limit = rate_limit.unwrap_or(20.0);
    if !(rate_limit.is_finite() && (0.0..=1e6).contains(&rate_limit)) {
        return Err(invalid(
            "dns_rate_limit",
            "must be 0 (off) to 1000000 per second",
        ));
    }
    let dnssec = match dnssec_key {
        Some(path) => Some(std::sync::Arc::new(
            crate::dns::dnssec::Signing::load(&path, &apex)
                .map_err(|e| invalid("dns_dnssec_key", e))?,
        )),
        None => None,
    };
    Ok(Some(crate::dns::DnsSettings {
        dnssec,
        listen,
        zone: crate::dns::zone::Zone {
            apex,
            ttl,
            nameservers,
            hostmaster,
        },
        rate_limit,
    }))
}

impl ControllerConfig {
    /// One line saying what a start would run, without keys or secrets.
    pub fn summary(&self) -> String {
        let mut parts = vec![match &self.tls {
            Some(t) => format!(
                "HTTPS on {} (certificate {})",
                self.listen,
                t.cert.display()
            ),
            None => format!("plain HTTP on {}", self.listen),
        }];
        parts.push(match self.etcd_endpoints.is_empty() {
            true => "embedded in-memory store (one replica, state lost at exit)".to_owned(),
            false => format!(
                "etcd {} (prefix {}{})",
                self.etcd_endpoints.join(","),
                self.key_prefix,
                match &self.etcd_tls {
                    None => String::new(),
                    Some(t) => format!(
                        "; TLS, CA {}{}",
                        t.ca.display(),
                        match &t.identity {
                            Some(id) => format!(", client certificate {}", id.cert.display()),
                            None => String::new(),
                        }
                    ),
                }
            ),
        });
        let o = &self.options;
        parts.push(format!(
            "lease {}s, heartbeat {}ms, relay missed after {}ms",
            o.lease_ttl.as_secs(),
            o.heartbeat_interval.as_millis(),
            o.relay_miss_after.as_millis()
        ));
        if let Some(db) = &self.geoip_db {
            parts.push(format!("GeoIP {}", db.display()));
        }
        if let Some(region) = &o.ranking.default_region {
            parts.push(format!("default region {region}"));
        }
        if let Some(dns) = &self.dns {
            parts.push(format!(
                "DNS for turn.{} on {} (UDP and TCP, TTL {}s{})",
                dns.zone.apex,
                dns.listen,
                dns.zone.ttl,
                if dns.dnssec.is_some() { ", signed" } else { "" }
            ));
        }
        if !o.trusted_proxies.is_empty() {
            parts.push(format!("{} trusted proxies", o.trusted_proxies.len()));
        }
        if let Some(url) = &o.signal.advertise_url {
            parts.push(format!("advertised as {url}"));
        }
        let b = &self.bootstrap;
        let mut boot: Vec<String> = [
            (b.admin_key.is_some(), "admin key"),
            (b.node_key.is_some(), "node key"),
            (b.ice_key.is_some(), "ice key"),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, what)| what.to_owned())
        .collect();
        if let Some(t) = &b.tenant {
            boot.push(format!("tenant {t}"));
        }
        if !b.regions.is_empty() {
            let names: Vec<&str> = b.regions.iter().map(|r| r.name.as_str()).collect();
            boot.push(format!("regions {}", names.join(",")));
        }
        if !boot.is_empty() {
            parts.push(format!("bootstrap {}", boot.join(", ")));
        }
        parts.join("; ")
    }
}

/// Reads and parses a TOML file (errors name the key and the line).
pub fn parse_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Largest connection timeout (seconds).
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Largest `http.max_connections`.
pub const MAX_CONNECTIONS: usize = 1_000_000;

fn http_limits(file: &HttpFile, trusted: &[IpNet]) -> Result<HttpLimits, ConfigError> {
    let defaults = HttpLimits::default();
    let secs = |key: &'static str, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        Some(_) => Err(invalid(key, format!("must be 1 to {MAX_TIMEOUT_SECS}"))),
    };
    let max = file.max_connections.unwrap_or(defaults.max_connections);
    if !(1..=MAX_CONNECTIONS).contains(&max) {
        return Err(invalid(
            "http.max_connections",
            format!("must be 1 to {MAX_CONNECTIONS}"),
        ));
    }
    let per_ip = (file.max_connections_per_ip)
        .unwrap_or(defaults.max_connections_per_ip)
        .min(max);
    if per_ip == 0 || file.max_connections_per_ip.is_some_and(|n| n > max) {
        return Err(invalid(
            "http.max_connections_per_ip",
            "must be 1 to http.max_connections",
        ));
    }
    Ok(HttpLimits {
        header_read_timeout: secs(
            "http.header_read_timeout_secs",
            file.header_read_timeout_secs,
            defaults.header_read_timeout,
        )?,
        idle_timeout: secs(
            "http.idle_timeout_secs",
            file.idle_timeout_secs,
            defaults.idle_timeout,
        )?,
        tls_handshake_timeout: secs(
            "http.tls_handshake_timeout_secs",
            file.tls_handshake_timeout_secs,
            defaults.tls_handshake_timeout,
        )?,
        max_connections: max,
        max_connections_per_ip: per_ip,
        exempt: trusted.to_vec(),
    })
}

/// Largest `signal_room_size` (a message fans out to every other participant).
pub const MAX_ROOM_SIZE: usize = 1000;

/// `http(s)://host[:port]`, without a trailing slash.
fn check_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let rest = (url.strip_prefix("https://"))
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or("");
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(invalid(
            "advertise_url",
            format!("{url:?} is not http(s)://host[:port]"),
        ));
    }
    Ok(url.to_owned())
}

/// `host:port` or `http(s)://host:port` (etcd's client URLs).
fn check_etcd_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let url = match endpoint.contains("://") {
        true => endpoint.to_owned(),
        false => format!("http://{endpoint}"),
    };
    let ok = url.parse::<hyper::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.authority().is_some_and(|a| !a.host().is_empty())
            && matches!(u.path(), "" | "/")
    });
    match ok {
        true => Ok(()),
        false => Err(invalid(
            "etcd_endpoints",
            format!("{endpoint:?} is not an etcd client URL (http://host:port)"),
        )),
    }
}

/// TLS to etcd: all https:// endpoints and a CA, or none; a client certificate and
/// its key together.
fn etcd_tls(
    endpoints: &[String],
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<EtcdTlsFiles>, ConfigError> {
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("etcd_key", "etcd_cert needs etcd_key")),
        (None, Some(_)) => return Err(invalid("etcd_cert", "etcd_key needs etcd_cert")),
    };
    match ca {
        None if https > 0 => Err(invalid(
            "etcd_ca",
            "https:// etcd endpoints need etcd_ca, the CA that signed etcd's certificates",
        )),
        None if identity.is_some() => Err(invalid(
            "etcd_ca",
            "etcd_cert and etcd_key are used over TLS: set etcd_ca and https:// endpoints",
        )),
        None => Ok(None),
        Some(_) if endpoints.is_empty() => Err(invalid(
            "etcd_ca",
            "TLS to etcd without etcd_endpoints (the embedded store has no etcd)",
        )),
        Some(_) if https != endpoints.len() => Err(invalid(
            "etcd_endpoints",
            "with etcd_ca every endpoint must be an https:// URL",
        )),
        Some(ca) => Ok(Some(EtcdTlsFiles { ca, identity })),
    }
}

/// CIDRs or bare IPs.
fn nets(key: &'static str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(key, format!("{s:?} is not an IP address or CIDR")))
        })
        .collect()
}

/// Refuses the weights the ranking would replace by its defaults.
fn check_weights(w: Weights) -> Result<Weights, ConfigError> {
    if !(w.load_penalty_ms.is_finite() && w.load_penalty_ms >= 0.0) {
        return Err(invalid(
            "weights.load_penalty_ms",
            "must be finite and >= 0",
        ));
    }
    if !(w.overload_threshold.is_finite() && w.overload_threshold > 0.0) {
        return Err(invalid(
            "weights.overload_threshold",
            "must be finite and > 0",
        ));
    }
    if w.max_regions == 0 {
        return Err(invalid("weights.max_regions", "must be at least 1"));
    }
    if w.relays_per_region == 0 {
        return Err(invalid("weights.relays_per_region", "must be at least 1"));
    }
    Ok(w)
}

fn check_api_key(key: &'static str, value: &Option<String>) -> Result<(), ConfigError> {
    match value {
        Some(k) if !k.starts_with(crate::credentials::KEY_PREFIX) || k.len() < 36 => Err(invalid(
            key,
            "API keys are nxk_ followed by at least 32 characters (e.g. 32 random bytes, base64url)",
        )),
        Some(k) if k.contains(keys::PLACEHOLDER) => Err(invalid(key, placeholder())),
        _ => Ok(()),
    }
}

/// The error of a secret left as the default file's example.
fn placeholder() -> String {
    format!(
        "still the example of the default configuration file ({}…): `nexrtc controller init` \
         writes fresh keys",
        keys::PLACEHOLDER
    )
}

fn check_bootstrap(b: &Bootstrap) -> Result<(), ConfigError> {
    check_api_key("bootstrap.admin_key", &b.admin_key)?;
    check_api_key("bootstrap.node_key", &b.node_key)?;
    check_api_key("bootstrap.ice_key", &b.ice_key)?;
    if let Some(t) = &b.tenant {
        model::validate_name(t).map_err(|e| invalid("bootstrap.tenant", e))?;
    }
    if b.ice_key.is_some() && b.tenant.is_none() {
        return Err(invalid("bootstrap.ice_key", "needs bootstrap.tenant"));
    }
    if b.tenant_secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err(invalid(
            "bootstrap.tenant_secret",
            "needs at least 16 characters",
        ));
    }
    if b.tenant_secret
        .as_ref()
        .is_some_and(|s| s.contains(keys::PLACEHOLDER))
    {
        return Err(invalid("bootstrap.tenant_secret", placeholder()));
    }
    for o in &b.cors_origins {
        crate::api::cors::normalize_origin(o).map_err(|e| invalid("bootstrap.cors_origins", e))?;
    }
    for r in &b.regions {
        r.validate()
            .map_err(|e| invalid("bootstrap.regions", e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_are_loopback_http() {
        let c = ControllerConfig::build(ControllerArgs::default(), FileConfig::default())
            .expect("config");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert!(c.tls.is_none());
        assert!(c.etcd_endpoints.is_empty());
        assert_eq!(c.key_prefix, "/nexrtc/v1/");
        assert_eq!(c.options.lease_ttl, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e = file("listen = \"127.0.0.1:1\"\nlistn = 3\n").expect_err("unknown");
        let text = e.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("listn"), "{text}");
    }

    #[test]
    fn plain_http_only_on_loopback_or_when_asked() {
        let f = file("listen = \"0.0.0.0:8080\"").expect("toml");
        let e = ControllerConfig::build(ControllerArgs::default(), f).expect_err("refused");
        assert!(e.to_string().contains("`listen`"), "{e}");
        let f = file("listen = \"0.0.0.0:8080\"\ninsecure_http = true").expect("toml");
        assert!(ControllerConfig::build(ControllerArgs::default(), f).is_ok());
        let f = file("listen = \"0.0.0.0:8443\"\ntls_cert = \"c\"").expect("toml");
        assert!(ControllerConfig::build(ControllerArgs::default(), f).is_err());
    }

    #[test]
    fn flags_override_file_and_values_are_checked() {
        let f =
            file("trusted_proxies = [\"10.0.0.0/8\"]\ndefault_region = \"eu-west\"").expect("toml");
        let args = ControllerArgs {
            trusted_proxies: vec!["192.0.2.1".into()],
            ..ControllerArgs::default()
        };
        let c = ControllerConfig::build(args, f).expect("config");
        assert_eq!(
            c.options.trusted_proxies,
            vec!["192.0.2.1/32".parse::<IpNet>().expect("net")]
        );
        assert_eq!(c.options.ranking.default_region.as_deref(), Some("eu-west"));

        let f = file("trusted_proxies = [\"nope\"]").expect("toml");
        let e = ControllerConfig::build(ControllerArgs::default(), f).expect_err("bad cidr");
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let f = file("[bootstrap]\nadmin_key = \"short\"").expect("toml");
        assert!(ControllerConfig::build(ControllerArgs::default(), f).is_err());
        let f = file("lease_ttl_secs = 1\nheartbeat_interval_ms = 1000").expect("toml");
        assert!(ControllerConfig::build(ControllerArgs::default(), f).is_err());
    }

    #[test]
    fn the_dns_zone_has_defaults_and_bad_values_name_their_key() {
        let build = |text: &str| {
            ControllerConfig::build(ControllerArgs::default(), file(text).expect("toml"))
        };
        let c =
            build("dns_listen = \"127.0.0.1:5353\"\ndns_zone = \"Example.ORG\"").expect("config");
        let dns = c.dns.expect("dns");
        let zone = dns.zone;
        assert_eq!(dns.listen, SocketAddr::from(([127, 0, 0, 1], 5353)));
        assert_eq!(dns.rate_limit, 20.0);
        assert_eq!(zone.apex.to_string(), "example.org.");
        assert_eq!(zone.ttl, 30);
        assert_eq!(zone.nameservers[0].to_string(), "ns.example.org.");
        assert_eq!(zone.hostmaster.to_string(), "hostmaster.example.org.");
        for (text, key) in [
            ("dns_listen = \"127.0.0.1:53\"", "`dns_zone`"),
            ("dns_zone = \"example.org\"", "`dns_listen`"),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"exa mple.org\"",
                "`dns_zone`",
            ),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \".\"",
                "`dns_zone`",
            ),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"e.org\"\ndns_ttl_secs = 0",
                "`dns_ttl_secs`",
            ),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"e.org\"\ndns_nameservers = []",
                "`dns_nameservers`",
            ),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"e.org\"\ndns_rate_limit = -1.0",
                "`dns_rate_limit`",
            ),
            (
                "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"e.org\"\ndns_dnssec_key = \"/nonexistent\"",
                "`dns_dnssec_key`",
            ),
            (
                // A file that holds no key (this source file).
                concat!(
                    "dns_listen = \"127.0.0.1:53\"\ndns_zone = \"e.org\"\ndns_dnssec_key = \"",
                    env!("CARGO_MANIFEST_DIR"),
                    "/src/config.rs",
                    "\""
                ),
                "`dns_dnssec_key`",
            ),
        ] {
            let e = build(text).expect_err(text);
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn http_limits_have_defaults_and_bad_values_name_their_key() {
        let c = ControllerConfig::build(ControllerArgs::default(), FileConfig::default())
            .expect("config");
        assert_eq!(c.http, HttpLimits::default());
        let f = file(
            "trusted_proxies = [\"10.0.0.0/8\"]\n[http]\nheader_read_timeout_secs = 2\n\
             idle_timeout_secs = 5\nmax_connections = 50\nmax_connections_per_ip = 5",
        )
        .expect("toml");
        let c = ControllerConfig::build(ControllerArgs::default(), f).expect("config");
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(5));
        assert_eq!(
            (c.http.max_connections, c.http.max_connections_per_ip),
            (50, 5)
        );
        assert_eq!(c.http.exempt, c.options.trusted_proxies);
        for (bad, key) in [
            (
                "[http]\nheader_read_timeout_secs = 0",
                "`http.header_read_timeout_secs`",
            ),
            (
                "[http]\nidle_timeout_secs = 86400",
                "`http.idle_timeout_secs`",
            ),
            (
                "[http]\ntls_handshake_timeout_secs = 0",
                "`http.tls_handshake_timeout_secs`",
            ),
            ("[http]\nmax_connections = 0", "`http.max_connections`"),
            (
                "[http]\nmax_connections = 10\nmax_connections_per_ip = 11",
                "`http.max_connections_per_ip`",
            ),
            (
                "[http]\nmax_connections_per_ip = 0",
                "`http.max_connections_per_ip`",
            ),
        ] {
            let f = file(bad).expect("toml");
            let e = ControllerConfig::build(ControllerArgs::default(), f).expect_err(bad);
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        let e = file("[http]\nidle_timeout = 5").expect_err("unknown key");
        assert!(e.to_string().contains("idle_timeout"), "{e}");
    }

    #[test]
    fn signaling_settings() {
        let c = ControllerConfig::build(ControllerArgs::default(), FileConfig::default())
            .expect("config");
        assert_eq!(c.options.signal.room_size, 50);
        assert_eq!(c.options.signal.advertise_url, None);
        let f = file("signal_room_size = 8\nadvertise_url = \"https://c1.example:8443/\"")
            .expect("toml");
        let args = ControllerArgs {
            signal_room_size: Some(4),
            ..ControllerArgs::default()
        };
        let c = ControllerConfig::build(args, f).expect("config");
        assert_eq!(c.options.signal.room_size, 4);
        let url = c.options.signal.advertise_url.as_deref();
        assert_eq!(url, Some("https://c1.example:8443"));
        for bad in [
            "signal_room_size = 0",
            "advertise_url = \"ftp://x\"",
            "advertise_url = \"http://x/path\"",
        ] {
            let f = file(bad).expect("toml");
            assert!(
                ControllerConfig::build(ControllerArgs::default(), f).is_err(),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod file_tables {
    use super::*;

    fn build(text: &str) -> Result<ControllerConfig, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        ControllerConfig::build(ControllerArgs::default(), file).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_keys_of_every_table_name_key_and_line() {
        for (text, key, line) in [
            (
                "[rate_limit]\nper_second = 1.0\nburst = 2\nbrust = 3",
                "brust",
                "line 4",
            ),
            ("[weights]\nmax_region = 3", "max_region", "line 2"),
            (
                "[[bootstrap.regions]]\nname = \"x\"\nlat = 1.0\nlon = 2.0\nscore = 1.0",
                "score",
                "line 5",
            ),
        ] {
            let e = build(text).expect_err(text);
            assert!(e.contains(key) && e.contains(line), "{text}: {e}");
        }
    }

    #[test]
    fn tables_are_read() {
        let c = build(
            "[rate_limit]\nper_second = 7.5\nburst = 9\n[weights]\nmax_regions = 3\n\
             [[bootstrap.regions]]\nname = \"x\"\nlat = 1.0\nlon = 2.0\nscore_multiplier = 1.5",
        )
        .expect("config");
        assert_eq!(c.options.default_rate_limit.burst, 9);
        assert_eq!(c.options.ranking.weights.max_regions, 3);
        assert_eq!(c.options.ranking.weights.relays_per_region, 1);
        assert_eq!(c.bootstrap.regions[0].score_multiplier, 1.5);
        assert_eq!(
            build("[[bootstrap.regions]]\nname = \"x\"\nlat = 1.0\nlon = 2.0")
                .expect("config")
                .bootstrap
                .regions[0]
                .score_multiplier,
            1.0
        );
    }

    #[test]
    fn weights_the_ranking_would_replace_are_refused() {
        for (text, key) in [
            (
                "[weights]\nload_penalty_ms = -1.0",
                "weights.load_penalty_ms",
            ),
            (
                "[weights]\noverload_threshold = 0.0",
                "weights.overload_threshold",
            ),
            ("[weights]\nmax_regions = 0", "weights.max_regions"),
            (
                "[weights]\nrelays_per_region = 0",
                "weights.relays_per_region",
            ),
        ] {
            let e = build(text).expect_err(text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_summary_names_no_key() {
        let c = build(
            "etcd_endpoints = [\"http://10.0.0.1:2379\"]\ndefault_region = \"eu-west\"\n\
             [bootstrap]\nadmin_key = \"nxk_0123456789abcdef0123456789abcdef\"\n\
             tenant = \"acme\"\ntenant_secret = \"tenant-secret-of-16\"",
        )
        .expect("config");
        let line = c.summary();
        for part in [
            "plain HTTP on 127.0.0.1:8080",
            "etcd http://10.0.0.1:2379 (prefix /nexrtc/v1/)",
            "default region eu-west",
            "bootstrap admin key, tenant acme",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
        assert!(
            !line.contains("nxk_") && !line.contains("tenant-secret"),
            "{line}"
        );
    }

    #[test]
    fn etcd_endpoints_are_client_urls() {
        for good in ["http://10.0.0.1:2379", "10.0.0.1:2379"] {
            build(&format!("etcd_endpoints = [{good:?}]")).expect(good);
        }
        build("etcd_endpoints = [\"https://etcd.example:2379/\"]\netcd_ca = \"/ca.pem\"")
            .expect("https with a CA");
        for bad in ["ftp://x:1", "http://", "http://x:2379/path", "a b"] {
            let e = build(&format!("etcd_endpoints = [{bad:?}]")).expect_err(bad);
            assert!(e.contains("`etcd_endpoints`"), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_to_etcd_is_all_or_nothing() {
        let https = "etcd_endpoints = [\"https://e1:2379\", \"https://e2:2379\"]\n";
        let e = build(https).expect_err("https without a CA");
        assert!(e.contains("`etcd_ca`"), "{e}");
        let mixed = "etcd_endpoints = [\"https://e1:2379\", \"http://e2:2379\"]\netcd_ca = \"/ca\"";
        let e = build(mixed).expect_err("a plain endpoint with a CA");
        assert!(
            e.contains("`etcd_endpoints`") && e.contains("https://"),
            "{e}"
        );
        let e =
            build(&format!("{https}etcd_ca = \"/ca\"\netcd_cert = \"/c\"")).expect_err("no key");
        assert!(e.contains("`etcd_key`"), "{e}");
        let e = build("etcd_ca = \"/ca\"").expect_err("no etcd");
        assert!(e.contains("`etcd_ca`"), "{e}");
        let e =
            build("etcd_endpoints = [\"http://e1:2379\"]\netcd_cert = \"/c\"\netcd_key = \"/k\"")
                .expect_err("a client certificate over plain HTTP");
        assert!(e.contains("`etcd_ca`"), "{e}");
        let c = build(&format!(
            "{https}etcd_ca = \"/ca\"\netcd_cert = \"/c\"\netcd_key = \"/k\""
        ))
        .expect("TLS with a client certificate");
        let tls = c.etcd_tls.as_ref().expect("TLS");
        assert_eq!(tls.ca, PathBuf::from("/ca"));
        assert_eq!(
            tls.identity.as_ref().map(|i| i.key.clone()),
            Some(PathBuf::from("/k"))
        );
        assert!(
            c.summary().contains("TLS, CA /ca, client certificate /c"),
            "{}",
            c.summary()
        );
    }
}
