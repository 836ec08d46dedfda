//! The target of a CONNECT-UDP request: the URI template's variables (RFC 9298 §2), and
//! the address it resolves to, checked by the relay's peer filter.
//!
//! The relay's template is `https://{authority}/.well-known/masque/udp/{target_host}/{target_port}/`
//! (the default of RFC 9298 §2). `target_host` is an IP address or a DNS name, percent-
//! encoded where needed (an IPv6 address's colons are `%3A`, §2.1); `target_port` a
//! decimal port, 1–65535. The peer filter applies to the *resolved* addresses (so a name
//! resolving to a private address is as blocked as that address, whatever it was called).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

use turn_core::PeerFilter;

/// The path every UDP proxying request names.
pub const PATH_PREFIX: &str = "/.well-known/masque/udp/";

/// How long a name may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A request's target, as named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a request's target was refused; each maps to a status and a Proxy-Status error
/// (RFC 9209 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the path is not {PATH_PREFIX}{{target_host}}/{{target_port}}/")]
    BadPath,
    #[error("bad target host")]
    BadHost,
    #[error("bad target port")]
    BadPort,
    #[error("the target name did not resolve: {0}")]
    Dns(String),
    #[error("the target address is not allowed")]
    Prohibited,
}

impl TargetError {
    /// The HTTP status and the RFC 9209 Proxy-Status error.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            TargetError::BadPath | TargetError::BadHost | TargetError::BadPort => {
                (400, "http_request_error")
            }
            TargetError::Dns(_) => (502, "dns_error"),
            TargetError::Prohibited => (403, "destination_ip_prohibited"),
        }
    }
}

/// Reads the target from a request's path (query strings are not part of the template).
pub fn parse_path(path: &str) -> Result<Target, TargetError> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix(PATH_PREFIX).ok_or(TargetError::BadPath)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.split_once('/').ok_or(TargetError::BadPath)?;
    if port.contains('/') || host.is_empty() {
        return Err(TargetError::BadPath);
    }
    let host = percent_decode(host).ok_or(TargetError::BadHost)?;
    let port: u16 = match port.parse() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(TargetError::BadPort),
    };
    let host = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => Host::Ip(ip),
        Err(_) if is_dns_name(&host) => Host::Name(host.to_ascii_lowercase()),
        Err(_) => return Err(TargetError::BadHost),
    };
    Ok(Target { host, port })
}

/// Reads a bound-UDP request's target (draft-ietf-masque-connect-udp-listen §2): `None`
/// when both variables are `*` (percent-encoded `%2A`, or bare), a target as
/// [`parse_path`] reads it otherwise; one `*` without the other is malformed (400).
pub fn parse_bound_path(path: &str) -> Result<Option<Target>, TargetError> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix(PATH_PREFIX).ok_or(TargetError::BadPath)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.split_once('/').ok_or(TargetError::BadPath)?;
    let star = |v: &str| v == "*" || v.eq_ignore_ascii_case("%2a");
    match (star(host), star(port)) {
        (true, true) => Ok(None),
        (false, false) => parse_path(path).map(Some),
        _ => Err(TargetError::BadPath),
    }
}

/// A DNS name: labels of letters, digits, '-' and '_', 1–63 bytes each, 253 in all.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Target names, resolved by hickory-resolver with the system's configuration
/// (`/etc/resolv.conf`, `/etc/hosts`), answers cached by their TTL; each lookup bounded by
/// [`RESOLVE_TIMEOUT`].
#[derive(Clone)]
pub struct Names(Option<Arc<TokioResolver>>);

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Names(system)"
        } else {
            "Names(none)"
        })
    }
}

impl Names {
    /// The system's resolver; without a usable configuration, names do not resolve (502
    /// `dns_error`) and IP targets still work.
    pub fn system() -> Names {
        match Resolver::builder_tokio().and_then(|b| b.build()) {
            Ok(resolver) => Names(Some(Arc::new(resolver))),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: CONNECT-UDP targets must be IP addresses");
                Names(None)
            }
        }
    }

    /// A resolver asking the one server at `server` over UDP (a local resolver; tests).
    pub fn with_server(server: SocketAddr) -> Names {
        let mut ns = NameServerConfig::udp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let built = Resolver::builder_with_config(config, TokioRuntimeProvider::default()).build();
        Names(built.ok().map(Arc::new))
    }

    async fn lookup(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let Some(resolver) = &self.0 else {
            return Err(TargetError::Dns("no resolver configured".into()));
        };
        // A fully qualified name: no search domains appended to a client's target.
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        match tokio::time::timeout(RESOLVE_TIMEOUT, resolver.lookup_ip(fqdn.as_str())).await {
            Ok(Ok(found)) => Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Ok(Err(e)) => Err(TargetError::Dns(e.to_string())),
            Err(_) => Err(TargetError::Dns("timed out".into())),
        }
    }
}

/// The address to relay to: the target's first resolved address the peer filter allows.
/// A name whose every address is blocked is [`TargetError::Prohibited`], as is a blocked
/// IP address.
pub async fn resolve(
    target: &Target,
    filter: &PeerFilter,
    names: &Names,
) -> Result<SocketAddr, TargetError> {
    let candidates: Vec<SocketAddr> = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) => names.lookup(name, target.port).await?,
    };
    if candidates.is_empty() {
        return Err(TargetError::Dns("no address".into()));
    }
    candidates
        .into_iter()
        .find(|a| filter.check(*a))
        .ok_or(TargetError::Prohibited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> Target {
        parse_path(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn template_variables() {
        let t = ok("/.well-known/masque/udp/192.0.2.6/443/");
        assert_eq!(
            t,
            Target {
                host: Host::Ip("192.0.2.6".parse().unwrap()),
                port: 443
            }
        );
        let t = ok("/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/");
        assert_eq!(t.host, Host::Ip("2001:db8::42".parse().unwrap()));
        let t = ok("/.well-known/masque/udp/Example.COM/8443");
        assert_eq!(
            t,
            Target {
                host: Host::Name("example.com".into()),
                port: 8443
            }
        );
        let t = ok("/.well-known/masque/udp/%5B2001%3Adb8%3A%3A1%5D/9/?x=1");
        assert_eq!(t.host, Host::Ip("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn malformed_targets_are_refused_with_a_reason() {
        for (path, want) in [
            ("/", TargetError::BadPath),
            ("/.well-known/masque/udp/", TargetError::BadPath),
            ("/.well-known/masque/udp/host/", TargetError::BadPath),
            ("/.well-known/masque/udp/a/1/extra/", TargetError::BadPath),
            ("/.well-known/masque/ip/a/1/", TargetError::BadPath),
            ("/.well-known/masque/udp/a/0/", TargetError::BadPort),
            ("/.well-known/masque/udp/a/65536/", TargetError::BadPort),
            ("/.well-known/masque/udp/a/+80/", TargetError::BadPort),
            ("/.well-known/masque/udp/a%zz/80/", TargetError::BadHost),
            ("/.well-known/masque/udp/a%2Fb/80/", TargetError::BadHost),
            ("/.well-known/masque/udp/bad host/80/", TargetError::BadHost),
            ("/.well-known/masque/udp/%/80/", TargetError::BadHost),
        ] {
            assert_eq!(parse_path(path), Err(want), "{path}");
        }
    }

    #[tokio::test]
    async fn the_filter_applies_to_resolved_addresses() {
        let filter = PeerFilter::default();
        let names = Names::system();
        for blocked in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.1"] {
            let t = Target {
                host: Host::Ip(blocked.parse().unwrap()),
                port: 53,
            };
            assert_eq!(
                resolve(&t, &filter, &names).await,
                Err(TargetError::Prohibited),
                "{blocked}"
            );
        }
        // A name that resolves to loopback is loopback.
        let t = Target {
            host: Host::Name("localhost".into()),
            port: 53,
        };
        assert_eq!(
            resolve(&t, &filter, &names).await,
            Err(TargetError::Prohibited)
        );
        let mut open = PeerFilter::default();
        open.allow_loopback(true);
        let got = resolve(&t, &open, &names).await.expect("allowed");
        assert!(got.ip().is_loopback() && got.port() == 53);
        // A public address passes (resolving sends nothing to it).
        let public = Target {
            host: Host::Ip("8.8.8.8".parse().unwrap()),
            port: 53,
        };
        assert_eq!(
            resolve(&public, &filter, &names).await,
            Ok("8.8.8.8:53".parse().unwrap())
        );
    }
}
