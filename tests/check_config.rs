//! `--check-config`: a configuration is checked as a start would check it, without a
//! socket, an etcd or a controller; exit 0 with a one-line summary that holds no
//! secret, or exit 2 with the error a start would print (the key, and the line in
//! a file).

mod check;

use std::net::{TcpListener, UdpSocket};

use check::{cert_pair, dir, file, geoip_db, nexrtc, Output};

const SECRET: &str = "check-config-secret-0451";

fn relay_check(args: &[&str]) -> Output {
    let mut all = vec!["relay"];
    all.extend_from_slice(args);
    all.push("--check-config");
    nexrtc(&all, &[])
}

fn assert_refused(out: &Output, words: &[&str]) {
    assert_eq!(out.code, Some(2), "refused with exit 2: {out:?}");
    let text = out.all();
    for w in words {
        assert!(text.contains(w), "the error names {w:?}: {text}");
    }
    assert!(!out.stdout.contains("configuration OK"), "{out:?}");
}

#[test]
fn a_good_relay_configuration_checks_without_binding_its_ports() {
    // Hold the relay's UDP and TCP port: a start would fail on them, a check must
    // not even try.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = udp.local_addr().expect("test setup").port();
    let _tcp = TcpListener::bind(("127.0.0.1", port)).ok();
    let d = dir("relay-good");
    let (cert, key) = cert_pair(&d, "turn.example.org");
    let config = file(
        &d,
        "relay.toml",
        &format!(
            "realm = \"example.org\"\nstatic_auth_secret = \"{SECRET}\"\n\
             listening_ip = \"127.0.0.1\"\nlistening_port = {port}\nrelay_ip = \"127.0.0.1\"\n\
             cert = {cert:?}\npkey = {key:?}\nnonce_secret = \"nonce-key-of-this-test\"\n"
        ),
    );
    let out = relay_check(&["--config", &config]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = out.stdout.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.starts_with("nexrtc relay: configuration OK:"),
        "{line}"
    );
    assert!(line.contains("\"example.org\""), "{line}");
    assert!(line.contains(&cert), "names the certificate: {line}");
    let all = out.all();
    assert!(!all.contains(SECRET), "secret printed: {all}");
    assert!(
        !all.contains("nonce-key-of-this-test"),
        "nonce key printed: {all}"
    );
}

#[test]
fn an_unknown_or_mistyped_relay_key_is_named_with_its_line() {
    let d = dir("relay-bad-key");
    let unknown = file(
        &d,
        "unknown.toml",
        &format!(
            "realm = \"example.org\"\nstatic_auth_secret = \"{SECRET}\"\nlistening_prot = 3478\n"
        ),
    );
    assert_refused(
        &relay_check(&["--config", &unknown]),
        &["listening_prot", "line 3"],
    );

    let mistyped = file(
        &d,
        "mistyped.toml",
        &format!(
            "realm = \"example.org\"\nmax_port = \"lots\"\nstatic_auth_secret = \"{SECRET}\"\n"
        ),
    );
    let out = relay_check(&["--config", &mistyped]);
    assert_refused(&out, &["max_port", "line 2"]);
    assert!(!out.all().contains(SECRET), "secret printed: {out:?}");
}

#[test]
fn a_relay_without_a_realm_or_a_secret_or_with_the_example_secret_is_refused() {
    let out = relay_check(&[
        "--static-auth-secret",
        SECRET,
        "--listening-ip",
        "127.0.0.1",
    ]);
    assert_refused(&out, &["realm"]);
    let out = relay_check(&["--realm", "example.org", "--listening-ip", "127.0.0.1"]);
    assert_refused(&out, &["secret"]);
    // The default file's examples must be replaced.
    let out = relay_check(&[
        "--realm",
        "example.org",
        "--static-auth-secret",
        SECRET,
        "--listening-ip",
        "127.0.0.1",
        "--nonce-secret",
        "CHANGE-ME-to-16-or-more-random-characters",
    ]);
    assert_refused(&out, &["nonce_secret", "CHANGE-ME"]);
    let out = relay_check(&[
        "--realm",
        "example.org",
        "--listening-ip",
        "127.0.0.1",
        "--static-auth-secret",
        "CHANGE-ME-please",
    ]);
    assert_refused(&out, &["static_auth_secret"]);
}

#[test]
fn missing_or_mismatched_tls_files_are_named() {
    let d = dir("relay-tls");
    let (cert, _key) = cert_pair(&d, "a.example.org");
    let (_cert_b, key_b) = cert_pair(&d, "b.example.org");
    let base = [
        "--realm",
        "example.org",
        "--static-auth-secret",
        SECRET,
        "--listening-ip",
        "127.0.0.1",
    ];
    let missing = d.join("absent.crt");
    let missing = missing.to_str().expect("test setup");
    let mut args = base.to_vec();
    args.extend(["--cert", missing, "--pkey", &key_b]);
    assert_refused(&relay_check(&args), &["absent.crt"]);

    let mut args = base.to_vec();
    args.extend(["--cert", &cert, "--pkey", &key_b]);
    let out = relay_check(&args);
    assert_eq!(
        out.code,
        Some(2),
        "a key that is not the certificate's: {out:?}"
    );
}

#[test]
fn the_shipped_relay_file_with_a_realm_and_a_secret_checks() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/etc/nexrtc/relay.toml"
    );
    let out = relay_check(&[
        "--config",
        shipped,
        "--realm",
        "example.org",
        "--static-auth-secret",
        SECRET,
        "--listening-ip",
        "127.0.0.1",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn the_relays_agent_settings_are_checked_without_contacting_the_controller() {
    // A controller URL on a closed port: a check must not try it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("test setup")
        .local_addr()
        .expect("test setup");
    let d = dir("relay-agent");
    let token = file(&d, "node.token", "nxk_nodekeyofthistest0123456789\n");
    let url = format!("http://{closed}");
    let base = [
        "--realm",
        "example.org",
        "--static-auth-secret",
        SECRET,
        "--listening-ip",
        "127.0.0.1",
        "--controller",
        &url,
        "--region",
        "eu-west",
        "--node",
        "relay1",
    ];
    let mut args = base.to_vec();
    args.extend(["--node-token-file", &token]);
    let out = relay_check(&args);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("edge agent"), "{out:?}");
    assert!(
        !out.all().contains("nodekeyofthistest"),
        "token printed: {out:?}"
    );

    let empty = file(&d, "empty.token", "\n");
    let mut args = base.to_vec();
    args.extend(["--node-token-file", &empty]);
    assert_refused(&relay_check(&args), &["empty.token"]);
}

#[test]
fn the_standalone_agent_checks_and_refuses() {
    let d = dir("agent");
    let token = file(&d, "node.token", "nxk_nodekeyofthistest0123456789\n");
    let out = nexrtc(
        &[
            "agent",
            "--controller",
            "http://127.0.0.1:9",
            "--node-token-file",
            &token,
            "--region",
            "eu-west",
            "--node",
            "coturn1",
            "--advertise",
            "udp:127.0.0.1:3478",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("nexrtc agent: configuration OK:"),
        "{out:?}"
    );
    assert!(
        !out.all().contains("nodekeyofthistest"),
        "token printed: {out:?}"
    );

    let out = nexrtc(&["agent", "--check-config"], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.all().contains("required"),
        "names what is missing: {out:?}"
    );
}

fn controller_check(text: &str, name: &str) -> Output {
    let d = dir(name);
    let path = file(&d, "controller.toml", text);
    nexrtc(&["controller", "--config", &path, "--check-config"], &[])
}

const CONTROLLER_KEYS: &str = "[bootstrap]\n\
    admin_key = \"nxk_adminkeyofthistest0123456789abcdefgh\"\n\
    node_key = \"nxk_nodekeyofthistest01234567890abcdefgh\"\n\
    ice_key = \"nxk_icekeyofthistest012345678901abcdefgh\"\n\
    tenant = \"acme\"\n\
    tenant_secret = \"tenantkeyofthistest-0123\"\n";

#[test]
fn a_good_controller_configuration_checks_without_etcd() {
    // An etcd that is not there: a check must not wait for it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("test setup")
        .local_addr()
        .expect("test setup");
    let d = dir("controller-good");
    let (cert, key) = cert_pair(&d, "api.example.org");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n\
         etcd_endpoints = [\"http://{closed}\"]\ngeoip_db = {:?}\n\n[weights]\nmax_regions = 3\n\n\
         {CONTROLLER_KEYS}\n[[bootstrap.regions]]\nname = \"eu-west\"\nlat = 53.35\nlon = -6.26\n",
        geoip_db()
    );
    let out = controller_check(&text, "controller-good-run");
    assert_eq!(out.code, Some(0), "{text}\n{out:?}");
    assert!(
        out.stdout
            .starts_with("nexrtc controller: configuration OK:"),
        "{out:?}"
    );
    assert_eq!(out.stdout.trim().lines().count(), 1, "{out:?}");
    assert!(
        !out.all().contains("keyofthistest"),
        "a key printed: {out:?}"
    );
}

#[test]
fn controller_mistakes_are_named_with_their_table_and_line() {
    let out = controller_check(
        &format!("insecure_http = true\n\n[weights]\nmax_region = 3\n\n{CONTROLLER_KEYS}"),
        "controller-unknown",
    );
    assert_refused(&out, &["max_region", "line 4"]);

    let out = controller_check(
        &format!("insecure_http = true\n{CONTROLLER_KEYS}\n[[bootstrap.regions]]\nname = \"eu-west\"\nlat = \"north\"\nlon = -6.26\n"),
        "controller-mistyped",
    );
    assert_refused(&out, &["lat"]);

    let out = controller_check(
        &format!(
            "insecure_http = true\netcd_endpoints = [\"etcd.example:2379:1\"]\n{CONTROLLER_KEYS}"
        ),
        "controller-etcd-url",
    );
    assert_refused(&out, &["etcd_endpoints"]);

    let example = CONTROLLER_KEYS.replacen(
        "nxk_adminkeyofthistest0123456789abcdefgh",
        "nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys",
        1,
    );
    let out = controller_check(
        &format!("insecure_http = true\n{example}"),
        "controller-example",
    );
    assert_refused(&out, &["admin_key", "nexrtc controller init"]);
}
