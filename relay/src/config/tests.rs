use super::*;
use crate::settings::keys::{keys, KeyDefault};

const KEY: [u8; 32] = [9; 32];

fn base() -> Settings {
    Settings {
        realm: Some("test".into()),
        static_auth_secret: vec!["s3cret".into()],
        listening_ip: vec!["127.0.0.1".parse().unwrap()],
        ..Settings::default()
    }
}

fn build(s: Settings) -> Result<RelayConfig, ConfigError> {
    RelayConfig::build(s, KEY)
}

/// A file under the system temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("nexrtc-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_file(name: &str, text: &str) -> Result<RelayConfig, ConfigError> {
    let f = TempFile::new(name, text);
    let flags = Settings {
        config: Some(f.0.clone()),
        ..Settings::default()
    };
    RelayConfig::load(flags)
}

#[test]
fn defaults_from_one_listening_ip() {
    let c = build(base()).unwrap();
    assert_eq!(c.listeners.udp_port, Some(3478));
    assert_eq!(c.listeners.tcp_port, Some(3478));
    assert_eq!(c.listeners.tls_ports, vec![5349]);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(
        c.relay_v4,
        Some(RelayAddress {
            bind: ip,
            advertised: ip
        })
    );
    assert_eq!(c.relay_v6, None);
    assert_eq!(c.ports, 61000..=65535);
    assert_eq!(c.drain_grace, Duration::from_secs(300));
    assert!(c.core.relay_ipv4 && !c.core.relay_ipv6);
    assert_eq!(c.core.nonce_key, KEY);
    assert!(matches!(c.tls, Some(CertSource::SelfSigned { .. })));
    assert!(c
        .credentials
        .load()
        .unwrap()
        .parse_username("1:alice")
        .is_some());
}

#[test]
fn bad_type_names_file_key_and_line() {
    let err = load_file("type.toml", "realm = \"r\"\nlistening_port = \"abc\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(msg.contains("type.toml"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("listening_port"), "{msg}");
    assert!(msg.contains("expected u16"), "{msg}");
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let err = load_file("unknown.toml", "realm = \"r\"\n\nlisening_port = 3478\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown.toml"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("unknown field `lisening_port`"), "{msg}");
}

#[test]
fn bad_cidr_in_file_names_key_and_line() {
    let text = "realm = \"r\"\ndenied_peer_ip = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n";
    let msg = load_file("cidr.toml", text).unwrap_err().to_string();
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("denied_peer_ip"), "{msg}");
    assert!(msg.contains("10.0.0.0/40"), "{msg}");
}

#[test]
fn file_values_and_flag_overrides() {
    let f = TempFile::new(
        "ok.toml",
        "realm = \"file\"\nstatic_auth_secret = \"x\"\nlistening_ip = \"127.0.0.1\"\n\
         listening_port = 4000\nmin_port = 50000\nmax_port = 50100\nno_tls = true\n",
    );
    let flags = Settings {
        config: Some(f.0.clone()),
        listening_port: Some(4001),
        ..Settings::default()
    };
    let c = RelayConfig::load(flags).unwrap();
    assert_eq!(c.core.realm, "file");
    assert_eq!(c.listeners.udp_port, Some(4001));
    assert_eq!(c.ports, 50000..=50100);
    assert!(c.tls.is_none());
    assert_eq!(c.file.as_deref(), Some(f.0.as_path()));
}

#[test]
fn missing_file_is_named() {
    let flags = Settings {
        config: Some("/nonexistent/relay.toml".into()),
        ..Settings::default()
    };
    let msg = RelayConfig::load(flags).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/relay.toml"), "{msg}");
}

#[test]
fn semantic_checks_name_the_key() {
    let cases: Vec<(Settings, &str)> = vec![
        (
            Settings {
                realm: None,
                ..base()
            },
            "`realm`",
        ),
        (
            Settings {
                min_port: Some(60000),
                max_port: Some(50000),
                ..base()
            },
            "`min_port`",
        ),
        (
            Settings {
                static_auth_secret: vec![],
                ..base()
            },
            "`static_auth_secret`",
        ),
        (
            Settings {
                static_auth_secret: vec!["a".into(), "b".into(), "c".into()],
                ..base()
            },
            "`static_auth_secret`",
        ),
        (
            Settings {
                static_auth_secret: vec![String::new()],
                ..base()
            },
            "`static_auth_secret`",
        ),
        (
            Settings {
                cert: Some("/c.pem".into()),
                ..base()
            },
            "`pkey`",
        ),
        (
            Settings {
                pkey: Some("/k.pem".into()),
                ..base()
            },
            "`cert`",
        ),
        (
            Settings {
                tls_listening_port: Some(3478),
                ..base()
            },
            "`tls_listening_port`",
        ),
        (
            Settings {
                nonce_secret: Some("short".into()),
                ..base()
            },
            "`nonce_secret`",
        ),
        (
            Settings {
                no_udp: true,
                no_tcp: true,
                no_tls: true,
                ..base()
            },
            "`no_udp`",
        ),
        (
            Settings {
                listening_ip: vec![],
                ..base()
            },
            "`relay_ip`",
        ),
        (
            Settings {
                relay_ip: vec!["0.0.0.0".parse().unwrap()],
                ..base()
            },
            "`relay_ip`",
        ),
        (
            Settings {
                relay_threads: Some(0),
                ..base()
            },
            "`relay_threads`",
        ),
        (
            Settings {
                udp_batch: Some(129),
                ..base()
            },
            "`udp_batch`",
        ),
        (
            Settings {
                udp_batch: Some(0),
                ..base()
            },
            "`udp_batch`",
        ),
        (
            Settings {
                channel_lifetime: Some(0),
                ..base()
            },
            "`channel_lifetime`",
        ),
    ];
    for (s, key) in cases {
        let msg = build(s).unwrap_err().to_string();
        assert!(msg.starts_with(key), "{key}: {msg}");
    }
}

#[test]
fn several_relay_ips_and_multiplexing() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let c = build(Settings {
        relay_ip: vec![ip("192.0.2.10"), ip("192.0.2.11"), ip("192.0.2.12")],
        external_ip: vec!["203.0.113.11/192.0.2.11".parse().unwrap()],
        multiplex_peer: true,
        relay_threads: Some(3),
        ..base()
    })
    .unwrap();
    let all: Vec<_> = c
        .relay_addresses()
        .map(|r| (r.bind, r.advertised))
        .collect();
    assert_eq!(
        all,
        [
            (ip("192.0.2.10"), ip("192.0.2.10")),
            (ip("192.0.2.11"), ip("203.0.113.11")),
            (ip("192.0.2.12"), ip("192.0.2.12")),
        ]
    );
    assert_eq!(c.multiplex_sockets, Some(4));
    assert_eq!(c.relay_threads, 3);
    let plain = build(base()).unwrap();
    assert_eq!(plain.multiplex_sockets, None);
    assert_eq!((plain.udp_batch, plain.gso), (32, true));
    assert!(plain.relay_threads >= 1);
}

#[test]
fn relay_address_derivation() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Wildcard listener + --relay-ip.
    let c = build(Settings {
        listening_ip: vec![],
        relay_ip: vec![ip("192.0.2.10"), ip("2001:db8::10")],
        ..base()
    })
    .unwrap();
    assert_eq!(c.relay_v4.unwrap().bind, ip("192.0.2.10"));
    assert_eq!(c.relay_v6.unwrap().advertised, ip("2001:db8::10"));
    assert!(c.core.relay_ipv6);
    // PUBLIC/PRIVATE: bind the private side, advertise the public one.
    let c = build(Settings {
        listening_ip: vec![],
        external_ip: vec!["203.0.113.5/10.0.0.5".parse().unwrap()],
        ..base()
    })
    .unwrap();
    let r = c.relay_v4.unwrap();
    assert_eq!((r.bind, r.advertised), (ip("10.0.0.5"), ip("203.0.113.5")));
    // Wildcard + plain external IP: bind the wildcard, advertise the public one.
    let c = build(Settings {
        listening_ip: vec![],
        external_ip: vec!["203.0.113.5".parse().unwrap()],
        ..base()
    })
    .unwrap();
    let r = c.relay_v4.unwrap();
    assert_eq!((r.bind, r.advertised), (ip("0.0.0.0"), ip("203.0.113.5")));
    // Own relay addresses stay reachable as peers although 203.0.113.0/24 is
    // in the default deny list (client-to-client through one relay), on the
    // ports the relay holds.
    let f = &c.core.peer_filter;
    f.held_ports(ip("0.0.0.0")).unwrap().hold(61000);
    assert!(f.check("203.0.113.5:61000".parse().unwrap()));
    assert!(!f.check("203.0.113.5:61001".parse().unwrap()));
}

#[test]
fn peer_filter_from_flags() {
    let c = build(Settings {
        allow_loopback_peers: true,
        denied_peer_ip: vec!["198.51.100.0/24".parse().unwrap()],
        allowed_peer_ip: vec!["10.1.0.0/16".parse().unwrap()],
        ..base()
    })
    .unwrap();
    let f = &c.core.peer_filter;
    assert!(f.check("127.0.0.1:9".parse().unwrap()));
    assert!(!f.check("198.51.100.7:9".parse().unwrap()));
    assert!(f.check("10.1.2.3:9".parse().unwrap()));
    let c = build(base()).unwrap();
    assert!(!c.core.peer_filter.check("127.0.0.1:9".parse().unwrap()));
}

#[test]
fn own_addresses_are_peers_only_on_held_relay_ports() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let peer = |s: &str| s.parse::<SocketAddr>().unwrap();
    // Relay IP, a second listening IP and the advertised IP, all in ranges
    // the operator opened: only held relay ports are peers.
    let c = build(Settings {
        listening_ip: vec![ip("198.18.0.2")],
        relay_ip: vec![ip("198.18.0.1")],
        external_ip: vec!["203.0.113.9/198.18.0.1".parse().unwrap()],
        allowed_peer_ip: vec![
            "198.18.0.0/15".parse().unwrap(),
            "203.0.113.0/24".parse().unwrap(),
        ],
        ..base()
    })
    .unwrap();
    let f = &c.core.peer_filter;
    let held = f.held_ports(ip("198.18.0.1")).unwrap();
    held.hold(61000);
    for (p, ok) in [
        ("198.18.0.1:61000", true),
        ("203.0.113.9:61000", true),
        ("198.18.0.1:3478", false),
        ("198.18.0.1:61001", false),
        ("203.0.113.9:3478", false),
        ("198.18.0.2:3478", false),
        ("198.18.0.2:61000", false),
        ("198.18.0.3:3478", true),
    ] {
        assert_eq!(f.check(peer(p)), ok, "{p}");
    }
    // Listening on the wildcard: every interface address of the host is own.
    let c = build(Settings {
        listening_ip: vec![],
        external_ip: vec!["203.0.113.5".parse().unwrap()],
        allowed_peer_ip: vec!["0.0.0.0/1".parse().unwrap(), "128.0.0.0/1".parse().unwrap()],
        ..base()
    })
    .unwrap();
    let f = &c.core.peer_filter;
    let held = f.held_ports(ip("0.0.0.0")).unwrap();
    held.hold(65000);
    let host: Vec<IpAddr> = crate::host::interface_addresses()
        .into_iter()
        .filter(|a| a.is_ipv4() && !a.is_loopback())
        .collect();
    for a in host.iter().chain([ip("203.0.113.5")].iter()) {
        assert!(!f.check(SocketAddr::new(*a, 3478)), "{a}:3478");
        assert!(f.check(SocketAddr::new(*a, 65000)), "{a}:65000");
    }
}

#[test]
fn channel_numbers_follow_rfc_5766_unless_strict() {
    assert!(!build(base()).unwrap().core.strict_channel_numbers);
    let c = build(Settings {
        strict_channel_numbers: true,
        ..base()
    })
    .unwrap();
    assert!(c.core.strict_channel_numbers);
}

#[test]
fn quotas_and_lifetimes() {
    let c = build(Settings {
        user_quota: Some(3),
        total_quota: Some(1000),
        max_bps: Some(125_000),
        max_allocate_lifetime: Some(300),
        alternate_server: Some("192.0.2.1:3478".parse().unwrap()),
        nonce_secret: Some("0123456789abcdef".into()),
        ..base()
    })
    .unwrap();
    assert_eq!(c.core.quotas.user_allocations, 3);
    assert_eq!(c.core.quotas.total_allocations, 1000);
    assert_eq!(c.core.quotas.allocation_bytes_per_sec, 125_000);
    assert_eq!(c.core.max_lifetime, Duration::from_secs(300));
    assert_eq!(c.core.default_lifetime, Duration::from_secs(300));
    assert!(c.core.alternate_server.is_some());
    assert_ne!(c.core.nonce_key, KEY);
    assert_eq!(c.core.nonce_key, nonce_key_from("0123456789abcdef"));
}

#[test]
fn drain_grace_is_short_in_a_terminal() {
    assert_eq!(default_drain_grace(true), 30);
    assert_eq!(default_drain_grace(false), 300);
    let c = build(base()).unwrap();
    assert_eq!(c.drain_grace, Duration::from_secs(300));
}

#[test]
fn safe_quota_defaults_and_explicit_unlimited() {
    let c = build(base()).unwrap();
    let q = c.core.quotas;
    assert_eq!(q.user_allocations, 64);
    assert_eq!(q.channels_per_allocation, 64);
    assert_eq!(q.total_allocations, 100_000);
    let c = build(Settings {
        user_quota: Some(0),
        channels_quota: Some(0),
        total_quota: Some(0),
        ..base()
    })
    .unwrap();
    let q = c.core.quotas;
    assert_eq!(
        (
            q.user_allocations,
            q.channels_per_allocation,
            q.total_allocations
        ),
        (0, 0, 0)
    );
}

#[test]
fn unauthenticated_answer_budget() {
    let c = build(base()).unwrap();
    assert_eq!(c.core.unauthenticated, turn_core::AnswerBudget::default());
    let c = load_file(
        "budget.toml",
        "realm = \"r\"\nstatic_auth_secret = \"s\"\nlistening_ip = \"127.0.0.1\"\n\
         unauthenticated_bytes_per_ip = 2000000\nunauthenticated_bytes_total = 9000000\n",
    )
    .unwrap();
    let b = c.core.unauthenticated;
    assert_eq!(
        (b.per_source.per_second, b.per_source.burst),
        (2_000_000, 8_000_000)
    );
    assert_eq!(b.total.per_second, 9_000_000);
    for (s, key) in [
        (
            Settings {
                unauthenticated_bytes_per_ip: Some(100),
                ..base()
            },
            "`unauthenticated_bytes_per_ip` (--unauthenticated-bytes-per-ip)",
        ),
        (
            Settings {
                unauthenticated_bytes_total: Some(0),
                ..base()
            },
            "`unauthenticated_bytes_total` (--unauthenticated-bytes-total)",
        ),
    ] {
        let e = build(s).unwrap_err().to_string();
        assert!(e.starts_with(key), "{e}");
    }
}

#[test]
fn secrets_file() {
    let f = TempFile::new(
        "secrets.toml",
        "default_tenant = \"acme\"\n[tenants.acme]\nsecrets = [\"new\", \"old\"]\n\
         [tenants.beta]\nsecrets = [\"b\"]\n",
    );
    let src = CredentialSource {
        static_secrets: vec![],
        file: Some(f.0.clone()),
        pushed: false,
    };
    let creds = src.load().unwrap();
    assert_eq!(creds.tenant_count(), 2);
    assert_eq!(creds.parse_username("1:alice").unwrap().tenant, "acme");
    assert_eq!(creds.parse_username("1:beta:bob").unwrap().tenant, "beta");

    let f = TempFile::new(
        "secrets3.toml",
        "[tenants.acme]\nsecrets = [\"a\", \"b\", \"c\"]\n",
    );
    let src = CredentialSource {
        static_secrets: vec![],
        file: Some(f.0.clone()),
        pushed: false,
    };
    let msg = src.load().unwrap_err().to_string();
    assert!(
        msg.contains("line 2") && msg.contains("one or two secrets"),
        "{msg}"
    );

    let f = TempFile::new(
        "secrets-bad-default.toml",
        "default_tenant = \"x\"\n[tenants.a]\nsecrets = [\"a\"]\n",
    );
    let src = CredentialSource {
        static_secrets: vec![],
        file: Some(f.0.clone()),
        pushed: false,
    };
    let msg = src.load().unwrap_err().to_string();
    assert!(msg.contains("default_tenant \"x\""), "{msg}");

    let f = TempFile::new(
        "secrets-bad-name.toml",
        "[tenants.\"a:b\"]\nsecrets = [\"a\"]\n",
    );
    let src = CredentialSource {
        static_secrets: vec![],
        file: Some(f.0.clone()),
        pushed: false,
    };
    assert!(matches!(
        src.load().unwrap_err(),
        ConfigError::Credentials { .. }
    ));
}

#[test]
fn example_secrets_of_the_default_file_are_refused() {
    let mut s = base();
    s.nonce_secret = Some("CHANGE-ME-to-16-or-more-random-characters".into());
    let e = build(s).unwrap_err().to_string();
    assert!(e.contains("`nonce_secret`") && e.contains("example"), "{e}");
    let mut s = base();
    s.static_auth_secret = vec!["CHANGE-ME".into()];
    let e = build(s).unwrap_err().to_string();
    assert!(e.contains("`static_auth_secret`"), "{e}");
}

#[test]
fn the_summary_says_what_runs_and_no_secret() {
    let mut s = base();
    s.nonce_secret = Some("nonce-secret-of-sixteen".into());
    s.no_tls = true;
    let c = build(s).unwrap();
    let line = c.summary();
    assert!(!line.contains('\n'), "{line}");
    for part in [
        "realm \"test\"",
        "127.0.0.1 udp:3478 tcp:3478",
        "relay 127.0.0.1 ports 61000-65535",
        "TLS off",
        "1 tenants from --static-auth-secret",
        "metrics on 127.0.0.1:9641",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(
        !line.contains("s3cret") && !line.contains("nonce-secret"),
        "{line}"
    );
    let c = build(base()).unwrap();
    assert!(c.summary().contains("TLS self-signed"), "{}", c.summary());
}

#[test]
fn check_files_loads_the_certificate_and_its_key() {
    let pair = |name: &str| {
        let g = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (
            TempFile::new(&format!("{name}.crt"), &g.cert.pem()),
            TempFile::new(&format!("{name}.key"), &g.key_pair.serialize_pem()),
        )
    };
    let (cert, key) = pair("check-one.test");
    let (_, other_key) = pair("check-two.test");
    let with = |cert: &TempFile, key: &TempFile| {
        let mut s = base();
        s.cert = Some(cert.0.clone());
        s.pkey = Some(key.0.clone());
        build(s).unwrap()
    };
    with(&cert, &key).check_files().unwrap();
    let e = with(&cert, &other_key)
        .check_files()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not matching the certificate"), "{e}");
    let e = with(&key, &key).check_files().unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
    // Self-signed: generated at start, nothing to check.
    build(base()).unwrap().check_files().unwrap();
}

// The documented defaults of the keys (crate::settings::keys) held to the
// configuration they build.

fn settings_file(text: &str) -> Settings {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// What every test configuration has (a relay needs a realm, secrets and
/// an address to relay from).
const KEYS_BASE: &str =
    "realm = \"test\"\nstatic_auth_secret = \"s3cret\"\nrelay_ip = \"192.0.2.10\"\n";

fn built_from(text: &str) -> String {
    let c =
        RelayConfig::build(settings_file(text), [7; 32]).unwrap_or_else(|e| panic!("{text}: {e}"));
    format!("{c:?}")
}

/// Each documented default, written in the file, gives the relay the
/// relay gets without it: a default changed in the code without its help
/// (or the reverse) fails here.
#[test]
fn value_defaults_are_the_defaults_applied() {
    let base = built_from(KEYS_BASE);
    let mut checked = 0;
    for key in keys() {
        let KeyDefault::Value(value) = &key.default else {
            continue;
        };
        if !key.in_file || KEYS_BASE.contains(&format!("{} =", key.name)) {
            continue;
        }
        let text = format!("{KEYS_BASE}{} = {value}\n", key.name);
        assert_eq!(
            built_from(&text),
            base,
            "{}: the default {value} is not applied",
            key.name
        );
        checked += 1;
    }
    assert!(checked > 30, "only {checked} defaults checked");
}

/// A wrong default in the help is caught: the check above compares the
/// whole configuration.
#[test]
fn a_wrong_default_would_be_seen() {
    assert_ne!(
        built_from(KEYS_BASE),
        built_from(&format!("{KEYS_BASE}listening_port = 3479\n"))
    );
    assert_ne!(
        built_from(KEYS_BASE),
        built_from(&format!("{KEYS_BASE}min_port = 61001\n"))
    );
}
