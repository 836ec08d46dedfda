//! docs/config-reference.md and the default configuration files are what
//! `nexrtc config-reference` renders from the code, name every key, and show
//! only valid defaults.

mod check;

use check::{dir, file, nexrtc};

const FILES: [&str; 3] = [
    "docs/config-reference.md",
    "packaging/etc/nexrtc/relay.toml",
    "packaging/etc/nexrtc/controller.toml",
];

fn committed(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn committed_files_are_what_the_code_renders() {
    let d = dir("reference");
    let out = nexrtc(&["config-reference", "--write", d.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut stale = Vec::new();
    for f in FILES {
        let rendered = std::fs::read_to_string(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        if rendered != committed(f) {
            stale.push(f);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} stale: regenerate with `cargo run -p nexrtc -- config-reference --write .`"
    );
}

#[test]
fn every_relay_flag_and_controller_key_is_in_the_reference() {
    let reference = committed("docs/config-reference.md");
    let help = nexrtc(&["relay", "--help"], &[]);
    assert_eq!(help.code, Some(0), "{help:?}");
    let mut flags = 0;
    for word in help.stdout.split_whitespace() {
        let flag = word.trim_end_matches(',');
        if !flag.starts_with("--") || flag.len() < 3 || flag == "--help" || flag == "--version" {
            continue;
        }
        let flag = flag.split(['=', '<', '[']).next().unwrap();
        flags += 1;
        assert!(
            reference.contains(&format!("`{flag}")),
            "{flag} not in docs/config-reference.md"
        );
    }
    assert!(flags > 40, "too few relay flags found in --help: {flags}");
    let controller = committed("packaging/etc/nexrtc/controller.toml");
    let mut keys = 0;
    for line in controller.lines() {
        let Some(key) = line
            .strip_prefix('#')
            .and_then(|l| l.split_once(" = "))
            .map(|(k, _)| k)
        else {
            continue;
        };
        if key.contains(' ') {
            continue;
        }
        keys += 1;
        assert!(
            reference.contains(&format!("`{key}`")),
            "controller key {key} not in the reference"
        );
    }
    assert!(keys > 35, "too few controller keys: {keys}");
    for source in ["controller/src/config/keys.rs"] {
        let text = committed(source);
        for chunk in text.split("key: \"").skip(1) {
            let key = chunk.split('"').next().unwrap();
            let last = key.rsplit('.').next().unwrap();
            assert!(
                reference.contains(&format!("`{last}`")),
                "{key} of {source} not in the reference"
            );
        }
    }
}

/// The default file with every `#key = value` line uncommented.
fn uncommented(path: &str) -> String {
    committed(path)
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn defaults_shown_in_the_relay_file_are_valid() {
    let d = dir("relay-defaults");
    let text = uncommented("packaging/etc/nexrtc/relay.toml")
        .replace(
            "nonce_secret = \"CHANGE-ME-to-16-or-more-random-characters\"",
            "nonce_secret = \"a-real-nonce-secret-0123456789\"",
        )
        .replace(
            "static_auth_secret = []",
            "static_auth_secret = [\"a-real-secret-0123\"]",
        );
    // Files the defaults name that are not on a test machine.
    let (cert, key) = check::cert_pair(&d, "relay.test");
    let secrets = file(&d, "secrets.toml", "");
    let text = text
        .lines()
        .map(|l| {
            let k = l.split(" = ").next().unwrap_or("");
            match k {
                "cert" => format!("cert = \"{cert}\""),
                "pkey" => format!("pkey = \"{key}\""),
                "secrets_file" => format!("secrets_file = \"{secrets}\""),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = file(&d, "relay.toml", &text);
    let out = nexrtc(&["relay", "--config", &path, "--check-config"], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "uncommented relay.toml refused: {out:?}\n{text}"
    );
}

#[test]
fn defaults_shown_in_the_controller_file_are_valid() {
    let d = dir("controller-defaults");
    let (cert, key) = check::cert_pair(&d, "controller.test");
    let text = uncommented("packaging/etc/nexrtc/controller.toml")
        .replace(
            "CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys",
            "realkey0123456789abcdefghijklmnopqrstuv",
        )
        .replace(
            "CHANGE-ME-16-or-more-characters",
            "a-real-tenant-secret-0123",
        );
    let text = text
        .lines()
        .map(|l| match l.split(" = ").next().unwrap_or("") {
            "tls_cert" => format!("tls_cert = \"{cert}\""),
            "tls_key" => format!("tls_key = \"{key}\""),
            "geoip_db" => format!("geoip_db = \"{}\"", check::geoip_db()),
            // TLS to etcd needs an etcd (never contacted by the check) and PEM files.
            "etcd_endpoints" => "etcd_endpoints = [\"https://127.0.0.1:9\"]".to_owned(),
            "etcd_ca" | "etcd_cert" => {
                format!("{} = \"{cert}\"", l.split(" = ").next().unwrap_or(""))
            }
            "etcd_key" => format!("etcd_key = \"{key}\""),
            // The certificate's key is an ECDSA P-256 PKCS#8 key, as a zone key is.
            "dns_dnssec_key" => format!("dns_dnssec_key = \"{key}\""),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = file(&d, "controller.toml", &text);
    let out = nexrtc(&["controller", "--config", &path, "--check-config"], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "uncommented controller.toml refused: {out:?}\n{text}"
    );
}
