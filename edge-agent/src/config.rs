//! [`AgentConfig`]: the agent's flags, shared by `nexrtc relay` (in-process
//! agent) and `nexrtc agent` (standalone beside another TURN server).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::client::{Backoff, ClientConfig};
use crate::tls::Trust;
use nexrtc_wire::{Endpoint, RelayAddresses, Transport};

/// The agent's settings. Flatten it into a command (`#[command(flatten)]`,
/// as `Option<AgentConfig>` where the agent is optional): the controller URLs,
/// the token and the region are then required together.
// clap treats the fields of a flattened `Option<AgentConfig>` as required even
// when none is given (clap-rs/clap#5092): they are optional one by one and
// required together through the group.
#[derive(Debug, Clone, clap::Args)]
// The token comes from --node-token or --node-token-file (group `node_key`, one of them).
#[group(id = "agent", multiple = true, requires_all = ["controllers", "node_key", "region"])]
pub struct AgentConfig {
    /// Controller base URL; repeat (or separate with commas) for replicas.
    #[arg(
        long = "controller",
        value_name = "URL",
        env = "NEXRTC_CONTROLLER",
        value_delimiter = ',',
        required = false
    )]
    pub controllers: Vec<Url>,

    /// This node's bearer token for the controller.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "NEXRTC_NODE_TOKEN",
        hide_env_values = true,
        required = false,
        group = "node_key",
        default_value = "",
        hide_default_value = true
    )]
    pub node_token: String,

    /// Read the token from FILE instead: a file holding the token, or the controller
    /// configuration `nexrtc controller init` wrote (its `[bootstrap] node_key`).
    #[arg(long, value_name = "FILE", required = false, group = "node_key")]
    pub node_token_file: Option<PathBuf>,

    /// The region this relay serves (e.g. eu-west).
    #[arg(long, value_name = "NAME", env = "NEXRTC_REGION", required = false)]
    pub region: String,

    /// Node name, unique within the region: 1-63 of a-z 0-9 - _ [default:
    /// the host name, lowercased, other characters turned into '-'].
    #[arg(long, value_name = "NAME", env = "NEXRTC_NODE")]
    pub node: Option<String>,

    /// A public address clients use, `TRANSPORT:HOST:PORT` with TRANSPORT one of
    /// udp, tcp, tls, quic (e.g. `tls:relay1.example.org:443`; IPv6 in
    /// brackets); repeatable. A second tls address is the alternate TLS port.
    /// The udp address is also where other agents' latency probes go.
    #[arg(long = "advertise", value_name = "T:HOST:PORT", value_parser = parse_advertised)]
    pub advertise: Vec<Advertised>,

    /// Allocations this relay should carry (0: no limit reported).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub capacity: u64,

    /// PEM CA certificate(s) to trust for the controller, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub controller_ca_file: Option<PathBuf>,

    /// DANGEROUS: accept any controller certificate (the token and the tenant
    /// secrets are then readable by anyone on the path). Throwaway test setups only.
    #[arg(long)]
    pub danger_accept_invalid_controller_certs: bool,

    /// Heartbeat period until the controller says otherwise.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub heartbeat_interval_ms: u64,

    /// Limit of one controller request.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub controller_timeout_ms: u64,

    /// Seconds between two rounds of latency probes (0: no probes).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub probe_interval: u64,

    /// STUN Binding requests per target and round.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub probe_count: u32,
}

impl AgentConfig {
    /// A configuration with the defaults of the flags.
    pub fn new(controllers: Vec<Url>, node_token: &str, region: &str) -> AgentConfig {
        AgentConfig {
            controllers,
            node_token: node_token.to_owned(),
            node_token_file: None,
            region: region.to_owned(),
            node: None,
            advertise: Vec::new(),
            capacity: 0,
            controller_ca_file: None,
            danger_accept_invalid_controller_certs: false,
            heartbeat_interval_ms: 1000,
            controller_timeout_ms: 2000,
            probe_interval: 10,
            probe_count: 5,
        }
    }

    /// Reads `--node-token-file` into `node_token`, then refuses an empty token: the
    /// controller would only answer 401 after the relay started, so it is refused at
    /// start, naming the flag.
    pub fn load_node_token_file(&mut self) -> Result<(), String> {
        self.read_node_token_file()?;
        if self.node_token.trim().is_empty() {
            return Err(
                "--node-token is empty: give the node key the controller issued \
                 (--node-token, NEXRTC_NODE_TOKEN or --node-token-file)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn read_node_token_file(&mut self) -> Result<(), String> {
        let Some(path) = &self.node_token_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--node-token-file {}: {e}", path.display()))?;
        self.node_token = token_from_file(&text).ok_or_else(|| {
            format!(
                "--node-token-file {}: no token in it (expected the token alone, or a \
                 controller configuration with [bootstrap] node_key)",
                path.display()
            )
        })?;
        Ok(())
    }

    /// The checks of [`crate::spawn`] that need no network: an address to
    /// advertise, the controller URLs and the CA file. The token file is read
    /// by [`AgentConfig::load_node_token_file`].
    pub fn check(&self) -> Result<(), crate::AgentError> {
        if !self.addresses().1.iter().any(|t| *t != Transport::Quic) {
            return Err(crate::AgentError::NoAddress);
        }
        crate::ControllerClient::new(&self.client())?;
        Ok(())
    }

    /// One line of what the agent would do, without the token.
    pub fn summary(&self) -> String {
        let controllers: Vec<&str> = self.controllers.iter().map(|u| u.as_str()).collect();
        let advertised: Vec<String> = self
            .advertise
            .iter()
            .map(|a| {
                let t = format!("{:?}", a.transport).to_ascii_lowercase();
                format!("{t}:{}", host_port(&a.endpoint.host, a.endpoint.port))
            })
            .collect();
        let mut line = format!(
            "controller {}; region {}; node {}; advertised {}",
            controllers.join(","),
            self.region,
            self.node_name(),
            advertised.join(",")
        );
        if let Some(ca) = &self.controller_ca_file {
            line.push_str(&format!("; controller CA {}", ca.display()));
        }
        if self.danger_accept_invalid_controller_certs {
            line.push_str("; controller certificate NOT verified");
        }
        line
    }

    /// The node name: `--node`, else the host name made a valid name, else `node`.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node {
            return n.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| node_name_from(&h))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_owned())
    }

    /// The advertised addresses as the controller stores them.
    pub fn addresses(&self) -> (RelayAddresses, Vec<Transport>) {
        addresses(&self.advertise)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        clamp_interval(Duration::from_millis(self.heartbeat_interval_ms))
    }

    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            controllers: self.controllers.clone(),
            token: self.node_token.clone(),
            trust: if self.danger_accept_invalid_controller_certs {
                Trust::DangerAcceptInvalidCerts
            } else {
                Trust::Verify
            },
            ca_file: self.controller_ca_file.clone(),
            request_timeout: Duration::from_millis(self.controller_timeout_ms.max(100)),
            backoff: Backoff::default(),
            local_address: None,
        }
    }
}

/// The token of a `--node-token-file`: `[bootstrap] node_key` of a controller
/// configuration, else the file's one line.
fn token_from_file(text: &str) -> Option<String> {
    if let Ok(table) = text.parse::<toml::Table>() {
        let key = table.get("bootstrap")?.get("node_key")?.as_str()?;
        return Some(key.to_owned()).filter(|k| !k.is_empty());
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let token = lines.next()?;
    (lines.next().is_none() && !token.contains(char::is_whitespace)).then(|| token.to_owned())
}

/// Heartbeat periods outside 100 ms ..= 60 s are taken as the nearest bound.
pub(crate) fn clamp_interval(d: Duration) -> Duration {
    d.clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// `host:port`, with brackets around an IPv6 address.
pub fn host_port(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A host name as a controller node name: lowercase `a-z 0-9 -`, at most 63.
fn node_name_from(host: &str) -> String {
    let name: String = host
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    name.trim_matches('-').to_owned()
}

/// One `--advertise` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub transport: Transport,
    pub endpoint: Endpoint,
}

/// The controller's shape of a list of addresses: the first of each
/// transport (a second TLS one as `tls_alt`), and the transports offered.
pub fn addresses(list: &[Advertised]) -> (RelayAddresses, Vec<Transport>) {
    let mut a = RelayAddresses::default();
    for ad in list {
        let e = Some(ad.endpoint.clone());
        match ad.transport {
            Transport::Udp if a.udp.is_none() => a.udp = e,
            Transport::Tcp if a.tcp.is_none() => a.tcp = e,
            Transport::Tls if a.tls.is_none() => a.tls = e,
            Transport::Tls if a.tls_alt.is_none() => a.tls_alt = e,
            Transport::Quic if a.quic.is_none() => a.quic = e,
            _ => {}
        }
    }
    let quic = a.quic.is_some();
    let mut transports = Vec::new();
    for (t, has) in [
        (Transport::Udp, a.udp.is_some()),
        (Transport::Tcp, a.tcp.is_some()),
        (Transport::Tls, a.tls.is_some()),
        (Transport::Quic, quic),
    ] {
        if has {
            transports.push(t);
        }
    }
    (a, transports)
}

/// Parses `TRANSPORT:HOST:PORT` (`udp:203.0.113.5:3478`, `tls:[2001:db8::1]:443`).
pub fn parse_advertised(s: &str) -> Result<Advertised, String> {
    let (transport, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected TRANSPORT:HOST:PORT"))?;
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "quic" => Transport::Quic,
        other => return Err(format!("unknown transport {other:?} (udp, tcp, tls, quic)")),
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected TRANSPORT:HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: bad port"))?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
        Some(_) => return Err(format!("{s:?}: bad IPv6 address")),
        None if host.is_empty() || host.contains(':') => {
            return Err(format!("{s:?}: bad host (IPv6 goes in brackets)"))
        }
        None => host,
    };
    Ok(Advertised {
        transport,
        endpoint: Endpoint {
            host: host.to_owned(),
            port,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_summary_without_the_token() {
        let url = |u: &str| Url::parse(u).unwrap();
        let mut c = AgentConfig::new(
            vec![url("https://c1.example:8443")],
            "nxk_token-value",
            "eu-west",
        );
        c.node = Some("relay-1".into());
        assert!(matches!(c.check(), Err(crate::AgentError::NoAddress)));
        c.advertise = vec![parse_advertised("udp:203.0.113.5:3478").unwrap()];
        c.check().unwrap();
        let line = c.summary();
        assert_eq!(
            line,
            "controller https://c1.example:8443/; region eu-west; node relay-1; advertised udp:203.0.113.5:3478"
        );
        assert!(!line.contains("token-value"));
        c.controllers = vec![url("ftp://c1.example")];
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("not http(s)"), "{e}");
        c.controllers = vec![url("https://c1.example")];
        c.controller_ca_file = Some("/nonexistent/ca.pem".into());
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn endpoints_parse() {
        let a = parse_advertised("tls:relay1.example.org:443").unwrap();
        assert_eq!(
            (a.transport, a.endpoint.host.as_str(), a.endpoint.port),
            (Transport::Tls, "relay1.example.org", 443)
        );
        let b = parse_advertised("UDP:[2001:db8::1]:3478").unwrap();
        assert_eq!(
            (b.transport, b.endpoint.host.as_str()),
            (Transport::Udp, "2001:db8::1")
        );
        assert_eq!(
            host_port(&b.endpoint.host, b.endpoint.port),
            "[2001:db8::1]:3478"
        );
        let c = parse_advertised("tls:relay1.example.org:5349").unwrap();
        let q = parse_advertised("quic:relay1.example.org:443").unwrap();
        let (addrs, transports) = addresses(&[a.clone(), b.clone(), c, q]);
        assert_eq!(addrs.udp, Some(b.endpoint));
        assert_eq!(addrs.tls, Some(a.endpoint));
        assert_eq!(addrs.tls_alt.map(|e| e.port), Some(5349));
        assert_eq!(
            transports,
            [Transport::Udp, Transport::Tls, Transport::Quic]
        );
        assert_eq!(node_name_from("Relay_1.EU.example\n"), "relay-1-eu-example");
        for bad in [
            "udp",
            "sctp:a:1",
            "udp:a:x",
            "udp::1",
            "udp:2001:db8::1:3478",
        ] {
            assert!(parse_advertised(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_token_file_is_a_token_or_a_controller_config() {
        let dir = std::env::temp_dir().join(format!("nexrtc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bare = dir.join("token");
        std::fs::write(&bare, "nxk_abc\n").unwrap();
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            "listen = \"127.0.0.1:8080\"\n[bootstrap]\nadmin_key = \"nxk_admin\"\nnode_key = \"nxk_node\"\n",
        )
        .unwrap();
        let no_key = dir.join("other.toml");
        std::fs::write(&no_key, "listen = \"127.0.0.1:8080\"\n").unwrap();
        let mut a = AgentConfig::new(Vec::new(), "", "r");
        for (path, want) in [(&bare, "nxk_abc"), (&config, "nxk_node")] {
            a.node_token_file = Some(path.clone());
            a.load_node_token_file().unwrap();
            assert_eq!(a.node_token, want);
        }
        for bad in [no_key, dir.join("missing")] {
            a.node_token_file = Some(bad.clone());
            let e = a.load_node_token_file().unwrap_err();
            assert!(e.contains("--node-token-file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();

        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentConfig,
        }
        let base = [
            "x",
            "--controller",
            "http://127.0.0.1:8080",
            "--region",
            "r",
        ];
        let with = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied()).map(|c| c.agent)
        };
        let a = with(&["--node-token-file", "c.toml"]).unwrap();
        assert_eq!(a.node_token_file, Some(PathBuf::from("c.toml")));
        assert!(with(&["--node-token", "t", "--node-token-file", "c.toml"]).is_err());
        assert!(with(&[]).is_err(), "a token is required");
    }

    #[test]
    fn flags_parse_with_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentConfig,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--controller",
            "https://a.example:8443,https://b.example:8443",
            "--node-token",
            "t",
            "--region",
            "eu-west",
            "--advertise",
            "udp:203.0.113.5:3478",
        ])
        .unwrap();
        assert_eq!(cli.agent.controllers.len(), 2);
        assert_eq!(cli.agent.heartbeat_interval(), Duration::from_secs(1));
        assert_eq!(cli.agent.addresses().1, [Transport::Udp]);
        assert_eq!(cli.agent.probe_count, 5);
    }

    #[test]
    fn an_empty_node_token_is_refused_naming_the_flag() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentConfig,
        }
        for token in ["", "  "] {
            let mut args = vec!["x", "--controller", "https://a.example:8443"];
            args.extend(["--node-token", token]);
            args.extend(["--region", "eu-west"]);
            let mut cli = Cli::try_parse_from(args).expect("parsed");
            let text = cli.agent.load_node_token_file().expect_err("refused");
            assert!(text.contains("--node-token"), "{text}");
            assert!(text.contains("empty"), "{text}");
        }
    }
}
