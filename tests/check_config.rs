//! `nexrtc relay|controller|agent --check-config`: the promises of
//! docs/config-reference.md — exit 0 and a one-line summary without secrets for
//! a good configuration, exit 2 and the key (and the line of a file) for a bad
//! one, no socket bound and no controller or etcd contacted.

mod check;

use check::{cert_pair, dir, file, nexrtc, Output};

const RELAY_SECRET: &str = "relay-secret-9f8e7d6c5b4a";
const NONCE_SECRET: &str = "nonce-secret-0a1b2c3d4e5f6a7b";
const TOKEN: &str = "nxk_agenttoken0123456789abcdefghijklmnopqrstu";
const ADMIN_KEY: &str = "nxk_adminkey0123456789abcdefghijklmnopqrstuvw";
const TENANT_SECRET: &str = "tenant-secret-5e4d3c2b1a09";

fn ok(out: &Output, secrets: &[&str]) {
    assert_eq!(out.code, Some(0), "expected exit 0: {out:?}");
    assert_eq!(
        out.stdout.trim_end().lines().count(),
        1,
        "one-line summary expected: {out:?}"
    );
    assert!(out.stdout.contains("configuration OK"), "{out:?}");
    for s in secrets {
        assert!(!out.all().contains(s), "secret {s:?} printed: {out:?}");
    }
}

fn refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, Some(2), "expected exit 2: {out:?}");
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} not in stderr: {out:?}");
    }
}

fn relay(name: &str, text: &str) -> Output {
    let d = dir(name);
    let path = file(&d, "relay.toml", text);
    nexrtc(&["relay", "--config", &path, "--check-config"], &[])
}

fn relay_good() -> String {
    format!(
        "realm = \"turn.test\"\nstatic_auth_secret = \"{RELAY_SECRET}\"\nnonce_secret = \"{NONCE_SECRET}\"\n\
         relay_ip = \"192.0.2.1\"\n"
    )
}

#[test]
fn relay_good_config_prints_a_summary_without_secrets() {
    ok(
        &relay("relay-good", &relay_good()),
        &[RELAY_SECRET, NONCE_SECRET],
    );
}

#[test]
fn relay_secret_from_environment_is_not_printed() {
    let out = nexrtc(
        &[
            "relay",
            "--realm",
            "turn.test",
            "--relay-ip",
            "192.0.2.1",
            "--check-config",
        ],
        &[("NEXRTC_STATIC_AUTH_SECRET", RELAY_SECRET)],
    );
    ok(&out, &[RELAY_SECRET]);
}

#[test]
fn relay_unknown_key_names_key_and_line() {
    let out = relay(
        "relay-unknown",
        &format!("{}\nlistening_prot = 3478\n", relay_good()),
    );
    refused(&out, &["listening_prot", "line 6"]);
}

#[test]
fn relay_wrong_type_names_key_and_line() {
    let out = relay(
        "relay-type",
        &format!("{}listening_port = \"x\"\n", relay_good()),
    );
    refused(&out, &["listening_port", "line 5"]);
}

#[test]
fn relay_missing_realm_or_secret_is_refused() {
    let out = relay(
        "relay-norealm",
        &format!("static_auth_secret = \"{RELAY_SECRET}\"\n"),
    );
    refused(&out, &["realm"]);
    assert!(!out.all().contains(RELAY_SECRET), "{out:?}");
    let out = relay(
        "relay-nosecret",
        "realm = \"turn.test\"\nrelay_ip = \"192.0.2.1\"\n",
    );
    refused(&out, &["static_auth_secret"]);
}

#[test]
fn relay_example_secrets_are_refused() {
    let out = relay(
        "relay-example-nonce",
        &format!(
            "realm = \"turn.test\"\nrelay_ip = \"192.0.2.1\"\nstatic_auth_secret = \"{RELAY_SECRET}\"\n\
             nonce_secret = \"CHANGE-ME-to-16-or-more-random-characters\"\n"
        ),
    );
    refused(&out, &["nonce_secret", "CHANGE-ME"]);
    let out = relay(
        "relay-example-static",
        "realm = \"turn.test\"\nrelay_ip = \"192.0.2.1\"\nstatic_auth_secret = \"CHANGE-ME-please-1234\"\n",
    );
    refused(&out, &["static_auth_secret", "CHANGE-ME"]);
}

#[test]
fn relay_tls_files_missing_or_mismatched_are_named() {
    let d = dir("relay-tls");
    let (cert, key) = cert_pair(&d, "a.test");
    let (_, other_key) = cert_pair(&d, "b.test");
    let base = relay_good();
    let good = file(
        &d,
        "good.toml",
        &format!("{base}cert = \"{cert}\"\npkey = \"{key}\"\n"),
    );
    ok(
        &nexrtc(&["relay", "--config", &good, "--check-config"], &[]),
        &[RELAY_SECRET],
    );
    let missing = d.join("absent.crt");
    let missing = missing.to_str().unwrap();
    let bad = file(
        &d,
        "missing.toml",
        &format!("{base}cert = \"{missing}\"\npkey = \"{key}\"\n"),
    );
    refused(
        &nexrtc(&["relay", "--config", &bad, "--check-config"], &[]),
        &["absent.crt"],
    );
    let bad = file(
        &d,
        "mismatch.toml",
        &format!("{base}cert = \"{cert}\"\npkey = \"{other_key}\"\n"),
    );
    let out = nexrtc(&["relay", "--config", &bad, "--check-config"], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.to_lowercase().contains("match"), "{out:?}");
}

#[test]
fn relay_check_binds_no_socket_and_does_not_check_relay_ip() {
    // The listening port is taken by this test: a check that bound it would fail.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tls_port = taken_tcp.local_addr().unwrap().port();
    let text = format!(
        "{}listening_ip = \"127.0.0.1\"\nlistening_port = {port}\ntls_listening_port = {tls_port}\n\
         metrics_listen = \"127.0.0.1:{tls_port}\"\n",
        relay_good().replace("192.0.2.1", "192.0.2.77")
    );
    ok(&relay("relay-nobind", &text), &[RELAY_SECRET]);
    drop((taken, taken_tcp));
}

#[test]
fn relay_with_agent_contacts_no_controller() {
    let closed = closed_port();
    let out = nexrtc(
        &[
            "relay",
            "--realm",
            "turn.test",
            "--relay-ip",
            "192.0.2.1",
            "--controller",
            &format!("http://127.0.0.1:{closed}"),
            "--node-token",
            TOKEN,
            "--region",
            "eu-west",
            "--check-config",
        ],
        &[],
    );
    ok(&out, &[TOKEN]);
    assert!(out.stdout.contains("edge agent"), "{out:?}");
}

#[test]
fn shipped_relay_file_with_only_the_required_keys_passes() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/etc/nexrtc/relay.toml"
    ))
    .unwrap();
    ok(
        &relay("relay-shipped", &format!("{shipped}\n{}", relay_good())),
        &[RELAY_SECRET],
    );
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn controller(name: &str, text: &str) -> Output {
    let d = dir(name);
    let path = file(&d, "controller.toml", text);
    nexrtc(&["controller", "--config", &path, "--check-config"], &[])
}

#[test]
fn controller_good_config_contacts_no_etcd_and_hides_keys() {
    let closed = closed_port();
    let text = format!(
        "etcd_endpoints = [\"http://127.0.0.1:{closed}\"]\n[weights]\nmax_regions = 3\n\
         [bootstrap]\nadmin_key = \"{ADMIN_KEY}\"\ntenant = \"acme\"\ntenant_secret = \"{TENANT_SECRET}\"\n\
         [[bootstrap.regions]]\nname = \"eu-west\"\nlat = 53.35\nlon = -6.26\n"
    );
    let out = controller("controller-good", &text);
    ok(&out, &[ADMIN_KEY, TENANT_SECRET]);
}

#[test]
fn controller_listen_port_in_use_still_checks() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    ok(
        &controller(
            "controller-nobind",
            &format!("listen = \"127.0.0.1:{port}\"\n"),
        ),
        &[],
    );
    drop(taken);
}

#[test]
fn controller_unknown_key_and_wrong_type_name_key_and_line() {
    refused(
        &controller(
            "controller-unknown",
            "listen = \"127.0.0.1:8080\"\n[weights]\nmax_region = 3\n",
        ),
        &["max_region", "line 3"],
    );
    refused(
        &controller("controller-type", "\nsignal_room_size = \"many\"\n"),
        &["signal_room_size", "line 2"],
    );
}

#[test]
fn controller_bootstrap_regions_weights_and_etcd_are_checked() {
    refused(
        &controller(
            "controller-region",
            "[[bootstrap.regions]]\nname = \"Not A Label\"\nlat = 1.0\nlon = 2.0\n",
        ),
        &["bootstrap.regions"],
    );
    refused(
        &controller(
            "controller-region-lat",
            "[[bootstrap.regions]]\nname = \"eu-west\"\nlat = 123.0\nlon = 2.0\n",
        ),
        &["bootstrap.regions"],
    );
    refused(
        &controller(
            "controller-weights",
            "[weights]\noverload_threshold = 0.0\n",
        ),
        &["weights.overload_threshold"],
    );
    refused(
        &controller("controller-weights2", "[weights]\nmax_regions = 0\n"),
        &["weights.max_regions"],
    );
    refused(
        &controller(
            "controller-etcd",
            "etcd_endpoints = [\"ftp://etcd.test:2379\"]\n",
        ),
        &["etcd_endpoints"],
    );
}

#[test]
fn controller_example_keys_are_refused() {
    refused(
        &controller(
            "controller-example",
            "[bootstrap]\nadmin_key = \"nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys\"\n",
        ),
        &["bootstrap.admin_key", "CHANGE-ME"],
    );
    refused(
        &controller(
            "controller-example-secret",
            "[bootstrap]\ntenant = \"acme\"\ntenant_secret = \"CHANGE-ME-16-or-more-characters\"\n",
        ),
        &["bootstrap.tenant_secret"],
    );
}

#[test]
fn controller_tls_files_missing_or_mismatched_are_named() {
    let d = dir("controller-tls");
    let (cert, key) = cert_pair(&d, "c.test");
    let (_, other_key) = cert_pair(&d, "d.test");
    let run = |name: &str, c: &str, k: &str| {
        let path = file(
            &d,
            name,
            &format!("tls_cert = \"{c}\"\ntls_key = \"{k}\"\n"),
        );
        nexrtc(&["controller", "--config", &path, "--check-config"], &[])
    };
    ok(&run("good.toml", &cert, &key), &[]);
    let absent = d.join("absent.key");
    refused(
        &run("missing.toml", &cert, absent.to_str().unwrap()),
        &["absent.key"],
    );
    refused(&run("mismatch.toml", &cert, &other_key), &["do not match"]);
    let path = file(&d, "half.toml", &format!("tls_cert = \"{cert}\"\n"));
    refused(
        &nexrtc(&["controller", "--config", &path, "--check-config"], &[]),
        &["tls_key"],
    );
}

#[test]
fn shipped_controller_file_passes() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/etc/nexrtc/controller.toml"
    ))
    .unwrap();
    ok(&controller("controller-shipped", &shipped), &[]);
}

#[test]
fn agent_good_flags_contact_nothing_and_hide_the_token() {
    let closed = closed_port();
    let out = nexrtc(
        &[
            "agent",
            "--controller",
            &format!("http://127.0.0.1:{closed}"),
            "--node-token",
            TOKEN,
            "--region",
            "eu-west",
            "--advertise",
            "udp:192.0.2.5:3478",
            "--turn-metrics",
            &format!("http://127.0.0.1:{closed}/metrics"),
            "--check-config",
        ],
        &[],
    );
    ok(&out, &[TOKEN]);
}

#[test]
fn agent_token_file_is_read_and_bad_settings_are_refused() {
    let d = dir("agent");
    let token = file(&d, "token", &format!("{TOKEN}\n"));
    let args = |extra: &[&str]| {
        let mut a = vec![
            "agent",
            "--controller",
            "http://127.0.0.1:9",
            "--region",
            "eu-west",
            "--advertise",
            "udp:192.0.2.5:3478",
        ];
        a.extend_from_slice(extra);
        a.push("--check-config");
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        nexrtc(&a, &[])
    };
    ok(&run(&["--node-token-file", &token]), &[TOKEN]);
    let absent = d.join("absent-token");
    refused(
        &run(&["--node-token-file", absent.to_str().unwrap()]),
        &["absent-token"],
    );
    let out = run(&[]);
    assert_eq!(out.code, Some(2), "missing token must be refused: {out:?}");
    assert!(out.stderr.contains("token"), "{out:?}");
    let out = nexrtc(&["agent", "--check-config"], &[]);
    refused(&out, &["region"]);
}

#[test]
fn agent_controller_url_and_ca_file_are_checked() {
    let d = dir("agent-ca");
    let (ca, _) = cert_pair(&d, "ca.test");
    let absent = d.join("absent-ca.pem");
    let run = |controller: &str, ca: &str| {
        nexrtc(
            &[
                "agent",
                "--controller",
                controller,
                "--node-token",
                TOKEN,
                "--region",
                "eu-west",
                "--advertise",
                "udp:192.0.2.5:3478",
                "--controller-ca-file",
                ca,
                "--check-config",
            ],
            &[],
        )
    };
    ok(&run("https://127.0.0.1:9", &ca), &[TOKEN]);
    refused(
        &run("https://127.0.0.1:9", absent.to_str().unwrap()),
        &["absent-ca.pem"],
    );
    let out = run("ftp://127.0.0.1:9", &ca);
    refused(&out, &["ftp"]);
    assert!(!out.all().contains(TOKEN), "{out:?}");
}

#[test]
fn relay_secrets_file_and_controller_geoip_database_are_read() {
    let d = dir("files-read");
    let absent = d.join("absent-secrets.toml");
    let text = format!(
        "realm = \"turn.test\"\nrelay_ip = \"192.0.2.1\"\nsecrets_file = \"{}\"\n",
        absent.display()
    );
    refused(
        &relay("relay-secrets-absent", &text),
        &["absent-secrets.toml"],
    );
    let absent = d.join("absent-city.mmdb");
    let text = format!("geoip_db = \"{}\"\n", absent.display());
    refused(
        &controller("controller-geoip-absent", &text),
        &["absent-city.mmdb"],
    );
    let text = format!("geoip_db = \"{}\"\n", check::geoip_db());
    ok(&controller("controller-geoip", &text), &[]);
}

#[test]
fn controller_etcd_tls_files_are_read() {
    let d = dir("controller-etcd-tls");
    let (cert, key) = cert_pair(&d, "etcd-client.test");
    let closed = closed_port();
    let run = |name: &str, ca: &str, k: &str| {
        let path = file(
            &d,
            name,
            &format!(
                "etcd_endpoints = [\"https://127.0.0.1:{closed}\"]\netcd_ca = \"{ca}\"\n\
                 etcd_cert = \"{cert}\"\netcd_key = \"{k}\"\n"
            ),
        );
        nexrtc(&["controller", "--config", &path, "--check-config"], &[])
    };
    let out = run("good.toml", &cert, &key);
    ok(&out, &[]);
    assert!(out.stdout.contains("TLS, CA"), "{out:?}");
    let absent = d.join("absent-ca.crt");
    refused(
        &run("missing.toml", absent.to_str().unwrap(), &key),
        &["absent-ca.crt"],
    );
    // A key file that holds no key (a certificate instead).
    refused(&run("nokey.toml", &cert, &cert), &["no private key"]);
}
