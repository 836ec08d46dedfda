//! [`KEYS`]: every key of the controller's configuration file, with its default
//! and meaning, in one table. `nexrtc config-reference` renders it into
//! `docs/config-reference.md` and the default file
//! (`packaging/etc/nexrtc/controller.toml`); the tests below hold it to the
//! parser ([`super::FileConfig`]: the same keys, each default the one applied)
//! and to the flags ([`super::ControllerArgs`]: each flag is a key).

/// What a secret looks like in the default file: a value still containing it
/// is refused, so the example cannot end up as a real key.
pub const PLACEHOLDER: &str = "CHANGE-ME";

/// One key of the file. `name` is dotted below a table (`http.idle_timeout_secs`);
/// `[]` marks an array of tables (`bootstrap.regions[].name` is `name` in a
/// `[[bootstrap.regions]]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    pub name: &'static str,
    pub default: KeyDefault,
    pub help: &'static str,
}

/// A key's default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDefault {
    /// One value, as TOML.
    Value(&'static str),
    /// A default that is not one value, described; and an example TOML value.
    Described {
        text: &'static str,
        example: &'static str,
    },
    /// Not set unless given; an example TOML value.
    Unset { example: &'static str },
}

impl KeyDefault {
    /// The TOML value a file line shows: the default, else the example.
    pub fn toml(&self) -> &'static str {
        match *self {
            KeyDefault::Value(v) => v,
            KeyDefault::Described { example, .. } | KeyDefault::Unset { example } => example,
        }
    }
}

impl Key {
    /// The table the key is in (`""` at the top, `bootstrap.regions[]`), and its
    /// name in that table.
    pub fn table(&self) -> (&'static str, &'static str) {
        match self.name.rsplit_once('.') {
            Some((table, key)) => (table, key),
            None => ("", self.name),
        }
    }
}

use KeyDefault::{Described, Unset, Value};

const fn key(name: &'static str, default: KeyDefault, help: &'static str) -> Key {
    Key {
        name,
        default,
        help,
    }
}

/// Every key, top-level keys first, then each table, in the order of the default file.
pub const KEYS: &[Key] = &[
    key(
        "listen",
        Value("\"127.0.0.1:8080\""),
        "Address of the API, the pages and /metrics.",
    ),
    key(
        "tls_cert",
        Unset {
            example: "\"/etc/nexrtc/controller.crt\"",
        },
        "PEM certificate chain; with tls_key (both or neither). Without them the controller \
         serves plain HTTP, which is refused on a non-loopback listen address unless \
         insecure_http.",
    ),
    key(
        "tls_key",
        Unset {
            example: "\"/etc/nexrtc/controller.key\"",
        },
        "PEM private key of tls_cert.",
    ),
    key(
        "insecure_http",
        Value("false"),
        "Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy).",
    ),
    key(
        "etcd_endpoints",
        Value("[]"),
        "etcd client URLs (http://host:port, or https:// with etcd_ca). Empty: the embedded in-memory store (one \
         replica, state lost at exit).",
    ),
    key(
        "etcd_ca",
        Unset {
            example: "\"/etc/nexrtc/etcd-ca.crt\"",
        },
        "PEM CA certificate that etcd's server certificates are checked against. With it, \
         every etcd endpoint must be https://.",
    ),
    key(
        "etcd_cert",
        Unset {
            example: "\"/etc/nexrtc/etcd-client.crt\"",
        },
        "PEM client certificate presented to etcd (etcd's --client-cert-auth); with etcd_key.",
    ),
    key(
        "etcd_key",
        Unset {
            example: "\"/etc/nexrtc/etcd-client.key\"",
        },
        "PEM private key of etcd_cert.",
    ),
    key(
        "key_prefix",
        Value("\"/nexrtc/v1/\""),
        "Prefix of every etcd key; starts and ends with /.",
    ),
    key(
        "lease_ttl_secs",
        Value("5"),
        "A relay's registration lease: it ends this long after the last heartbeat.",
    ),
    key(
        "heartbeat_interval_ms",
        Value("1000"),
        "Heartbeat period the controller asks of agents; less than the lease TTL.",
    ),
    key(
        "relay_miss_after_ms",
        Described {
            text: "two heartbeat intervals",
            example: "2000",
        },
        "A relay silent this long is taken out of the answers (its lease is revoked); more \
         than heartbeat_interval_ms.",
    ),
    key(
        "load_refresh_secs",
        Value("30"),
        "A relay's record is rewritten at least this often even if its load did not change \
         materially.",
    ),
    key(
        "usage_retention_days",
        Value("7"),
        "Usage records (per tenant, minute and relay) older than this are deleted. About \
         2.5 MB in etcd per tenant active on a relay over 7 days; export (CSV) what bills \
         need for longer.",
    ),
    key(
        "max_snapshot_age_secs",
        Value("30"),
        "/readyz fails when this replica's copy of the store is older than this (etcd \
         unreachable).",
    ),
    key(
        "startup_timeout_secs",
        Value("30"),
        "How long start-up waits for the store's first snapshot.",
    ),
    key(
        "geoip_db",
        Unset {
            example: "\"/var/lib/GeoIP/GeoLite2-City.mmdb\"",
        },
        "GeoIP2 / GeoLite2 City database (.mmdb), to place clients; opened at start.",
    ),
    key(
        "default_region",
        Unset {
            example: "\"eu-west\"",
        },
        "Region assumed for a client GeoIP cannot place.",
    ),
    key(
        "trusted_proxies",
        Value("[]"),
        "IPs or CIDRs whose X-Forwarded-For is believed (your load balancers); they are also \
         exempt from http.max_connections_per_ip.",
    ),
    key(
        "metrics_allow",
        Value(
            "[\"127.0.0.0/8\", \"::1/128\", \"10.0.0.0/8\", \"172.16.0.0/12\", \
             \"192.168.0.0/16\", \"fc00::/7\"]",
        ),
        "IPs or CIDRs that may read /metrics.",
    ),
    key("log_json", Value("false"), "Log JSON lines."),
    key(
        "advertise_url",
        Described {
            text: "the listening address, http:// or https://",
            example: "\"https://c1.example.net\"",
        },
        "This replica's base URL as clients reach it (signaling redirects to the replica \
         owning a room): http(s)://host[:port]. Set it when there are several replicas.",
    ),
    key(
        "signal_room_size",
        Value("50"),
        "Most participants in one signaling room (1 to 1000).",
    ),
    key(
        "dns_listen",
        Unset {
            example: "\"0.0.0.0:53\"",
        },
        "Serve the relay zone over DNS on this address, UDP and TCP (GeoDNS: turn.<dns_zone> \
         answers with the relays the ICE API would hand the asker); needs dns_zone.",
    ),
    key(
        "dns_zone",
        Unset {
            example: "\"example.org\"",
        },
        "The zone served (its relays are under turn.<dns_zone>); needs dns_listen.",
    ),
    key(
        "dns_ttl_secs",
        Value("30"),
        "TTL of the DNS answers (1 to 3600): how long a dead relay may stay cached.",
    ),
    key(
        "dns_nameservers",
        Described {
            text: "ns.<dns_zone>",
            example: "[\"ns1.example.org\", \"ns2.example.org\"]",
        },
        "The zone's name servers (NS records; the first is the SOA's primary).",
    ),
    key(
        "dns_hostmaster",
        Described {
            text: "hostmaster.<dns_zone>",
            example: "\"hostmaster.example.org\"",
        },
        "The SOA's responsible mailbox, as a name.",
    ),
    key(
        "dns_rate_limit",
        Value("20.0"),
        "UDP DNS responses per second per source network (/24, /48), question and client \
         subnet (ECS), and 50 times that per source network in all; past either \
         every second one is sent truncated (TC, the client retries over TCP) and the rest \
         dropped, so the server cannot amplify spoofed traffic. 0 turns it off.",
    ),
    key(
        "dns_dnssec_key",
        Unset {
            example: "\"/etc/nexrtc/dnssec.pem\"",
        },
        "Sign the zone online with DNSSEC (ECDSA P-256, algorithm 13): a PEM file with the \
         PKCS#8 private key (openssl genpkey -algorithm EC -pkeyopt \
         ec_paramgen_curve:P-256), the same file on every replica. The DS record to publish \
         in the parent zone is logged at start and shown by /readyz. Unset: unsigned.",
    ),
    key(
        "rate_limit.per_second",
        Value("100.0"),
        "Rate limit (token bucket, per replica) of each API key, and of each client token's \
         user, on POST /v1/ice-servers and /v1/signal, unless the key or its tenant sets its \
         own: tokens per second. Give both keys of [rate_limit].",
    ),
    key(
        "rate_limit.burst",
        Value("200"),
        "Most tokens kept (the burst allowed).",
    ),
    key(
        "weights.load_penalty_ms",
        Value("50.0"),
        "Ranking: penalty in ms for a region whose expected relay load is 1.0 (quadratic in \
         load).",
    ),
    key(
        "weights.overload_threshold",
        Value("0.9"),
        "Relays at or above this load are not offered (unless all are).",
    ),
    key(
        "weights.max_regions",
        Value("2"),
        "Regions in one answer (the best, then failover).",
    ),
    key(
        "weights.relays_per_region",
        Value("1"),
        "Relays per region in one answer (each costs the client an allocation).",
    ),
    key(
        "http.header_read_timeout_secs",
        Value("10"),
        "A request head must arrive within this (slowloris); also bounds the wait between \
         keep-alive requests. 1 to 3600.",
    ),
    key(
        "http.idle_timeout_secs",
        Value("60"),
        "A connection with no request in progress and no traffic either way is closed (the \
         agents' event stream and signaling WebSockets are exempt). 1 to 3600.",
    ),
    key(
        "http.tls_handshake_timeout_secs",
        Value("10"),
        "A TLS handshake must finish within this. 1 to 3600.",
    ),
    key(
        "http.max_connections",
        Value("4096"),
        "Open connections in all, 1 to 1000000; lowered at start to fit the descriptor limit \
         (the soft RLIMIT_NOFILE is raised to the hard one, 64 descriptors kept free).",
    ),
    key(
        "http.max_connections_per_ip",
        Value("128"),
        "Open connections per TCP peer address, 1 to http.max_connections; trusted_proxies \
         are exempt.",
    ),
    key(
        "bootstrap.admin_key",
        Unset {
            example: "\"nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys\"",
        },
        "Created at start if absent: an API key with scope admin (the admin API, \
         /v1/status). API keys are nxk_ followed by at least 32 characters.",
    ),
    key(
        "bootstrap.node_key",
        Unset {
            example: "\"nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys\"",
        },
        "Created at start if absent: an API key with scope node, for relays' agents \
         (--node-token, or --node-token-file naming this file).",
    ),
    key(
        "bootstrap.ice_key",
        Unset {
            example: "\"nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys\"",
        },
        "Created at start if absent: an API key with scopes ice and client_ip for \
         bootstrap.tenant (your app server). Needs bootstrap.tenant.",
    ),
    key(
        "bootstrap.tenant",
        Unset {
            example: "\"acme\"",
        },
        "A tenant to create at start if absent.",
    ),
    key(
        "bootstrap.tenant_secret",
        Described {
            text: "random",
            example: "\"CHANGE-ME-16-or-more-characters\"",
        },
        "The tenant's first TURN secret, at least 16 characters.",
    ),
    key(
        "bootstrap.cors_origins",
        Value("[]"),
        "Browser origins allowed for the tenant ([\"https://app.example.org\"]).",
    ),
    key(
        "bootstrap.regions[].name",
        Unset {
            example: "\"eu-west\"",
        },
        "A region to create at start if absent (one [[bootstrap.regions]] table each): its \
         DNS-label name.",
    ),
    key(
        "bootstrap.regions[].lat",
        Unset { example: "53.35" },
        "The region site's latitude, degrees.",
    ),
    key(
        "bootstrap.regions[].lon",
        Unset { example: "-6.26" },
        "The region site's longitude, degrees.",
    ),
    key(
        "bootstrap.regions[].score_multiplier",
        Value("1.0"),
        "Ranking multiplier of the region's estimated RTT: above 1 makes it look farther.",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::Args as _;
    use nexrtc_test_support::serde_fields::struct_fields;

    use super::super::{
        Bootstrap, ControllerArgs, ControllerConfig, FileConfig, HttpFile, RateLimitFile,
        RegionFile, WeightsFile,
    };
    use super::*;

    /// The keys the parser accepts, tables expanded.
    fn parsed_keys() -> BTreeSet<String> {
        let tables = [
            ("http", struct_fields::<HttpFile>()),
            ("rate_limit", struct_fields::<RateLimitFile>()),
            ("weights", struct_fields::<WeightsFile>()),
            ("bootstrap", struct_fields::<Bootstrap>()),
            ("bootstrap.regions[]", struct_fields::<RegionFile>()),
        ];
        let mut out = BTreeSet::new();
        let mut pending = vec![("", struct_fields::<FileConfig>())];
        while let Some((prefix, fields)) = pending.pop() {
            for field in fields.expect("a struct") {
                let name = match prefix {
                    "" => (*field).to_owned(),
                    p => format!("{p}.{field}"),
                };
                let table = tables
                    .iter()
                    .find(|(t, _)| *t == name || t.strip_suffix("[]") == Some(name.as_str()));
                match table {
                    Some((t, f)) => pending.push((t, *f)),
                    None => {
                        out.insert(name);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_table_lists_exactly_the_keys_the_parser_accepts() {
        let listed: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_owned()).collect();
        assert_eq!(listed.len(), KEYS.len(), "a key listed twice");
        assert_eq!(listed, parsed_keys());
    }

    #[test]
    fn every_flag_is_a_key() {
        let command = ControllerArgs::augment_args(clap::Command::new("controller"));
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert!(
                id == "config" || KEYS.iter().any(|k| k.name == id),
                "--{} ({id}) is not in KEYS",
                arg.get_long().unwrap_or(id)
            );
        }
    }

    /// `keys` (with `key = value` TOML lines) as a file: tables in order.
    fn document(keys: &[(&str, &str)]) -> String {
        let mut text = String::new();
        let mut current = "";
        for (name, value) in keys {
            let key = KEYS.iter().find(|k| k.name == *name).expect("a key");
            let (table, leaf) = key.table();
            if table != current {
                match table.strip_suffix("[]") {
                    Some(array) => text.push_str(&format!("[[{array}]]\n")),
                    None => text.push_str(&format!("[{table}]\n")),
                }
                current = table;
            }
            text.push_str(&format!("{leaf} = {value}\n"));
        }
        text
    }

    fn built(text: &str) -> String {
        let file: FileConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let c = ControllerConfig::build(ControllerArgs::default(), file)
            .unwrap_or_else(|e| panic!("{text}\n{e}"));
        format!("{c:?}")
    }

    /// A region needs a name and coordinates for its default multiplier to be seen.
    const REGION: [(&str, &str); 3] = [
        ("bootstrap.regions[].name", "\"eu-west\""),
        ("bootstrap.regions[].lat", "53.35"),
        ("bootstrap.regions[].lon", "-6.26"),
    ];

    /// Each default in the table, written in the file, gives the configuration
    /// the controller builds without it (a table's keys are written together:
    /// `[rate_limit]` takes both or neither).
    #[test]
    fn value_defaults_are_the_defaults_applied() {
        let mut checked = 0;
        let mut tables: Vec<&str> = KEYS.iter().map(|k| k.table().0).collect();
        tables.dedup();
        for table in tables {
            let defaults: Vec<(&str, &str)> = KEYS
                .iter()
                .filter(|k| k.table().0 == table)
                .filter_map(|k| match k.default {
                    Value(v) => Some((k.name, v)),
                    _ => None,
                })
                .collect();
            let base: Vec<(&str, &str)> = match table {
                "bootstrap.regions[]" => REGION.to_vec(),
                _ => Vec::new(),
            };
            let singles: Vec<Vec<(&str, &str)>> = match table {
                "" => defaults.iter().map(|d| vec![*d]).collect(),
                _ => vec![defaults.clone()],
            };
            for set in singles {
                let with: Vec<(&str, &str)> = base.iter().chain(&set).copied().collect();
                assert_eq!(
                    built(&document(&with)),
                    built(&document(&base)),
                    "{set:?} are not the defaults applied"
                );
                checked += set.len();
            }
        }
        assert_eq!(
            checked,
            KEYS.iter()
                .filter(|k| matches!(k.default, Value(_)))
                .count()
        );
    }

    #[test]
    fn a_wrong_default_would_be_seen() {
        for (name, other) in [
            ("listen", "\"127.0.0.1:8081\""),
            ("http.max_connections", "4095"),
            ("weights.overload_threshold", "0.8"),
        ] {
            assert_ne!(built(&document(&[(name, other)])), built(""), "{name}");
        }
    }

    /// Every key at once, with its default or example, is a file the parser
    /// takes (the build checks files and secrets too: the binary's tests run
    /// the whole default file through `--check-config`).
    #[test]
    fn every_key_with_its_default_or_example_parses() {
        let all: Vec<(&str, &str)> = KEYS.iter().map(|k| (k.name, k.default.toml())).collect();
        let text = document(&all);
        let _: FileConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    }

    #[test]
    fn example_secrets_are_refused() {
        for name in [
            "bootstrap.admin_key",
            "bootstrap.node_key",
            "bootstrap.tenant_secret",
        ] {
            let key = KEYS.iter().find(|k| k.name == name).expect("key");
            let text = document(&[(name, key.default.toml())]);
            let file: FileConfig = toml::from_str(&text).expect("toml");
            let e = ControllerConfig::build(ControllerArgs::default(), file).expect_err(name);
            assert!(
                e.to_string().contains(name) && e.to_string().contains("example"),
                "{e}"
            );
        }
    }
}
