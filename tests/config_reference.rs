//! The configuration reference and the default configuration files are generated
//! from the code (`nexrtc config-reference`): the committed ones must be what the
//! code renders now, and every default they show must be accepted by a start.

mod check;

use std::path::Path;

use check::{dir, file, nexrtc};

const REGENERATE: &str = "cargo run -p nexrtc -- config-reference --write .";

fn committed(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rendered(format: &str) -> String {
    let out = nexrtc(&["config-reference", "--format", format], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "config-reference --format {format}: {out:?}"
    );
    out.stdout
}

#[test]
fn the_committed_reference_and_default_files_are_what_the_code_renders() {
    for (format, path) in [
        ("markdown", "docs/config-reference.md"),
        ("relay-toml", "packaging/etc/nexrtc/relay.toml"),
        ("controller-toml", "packaging/etc/nexrtc/controller.toml"),
    ] {
        let (now, file) = (rendered(format), committed(path));
        if now != file {
            let line = now
                .lines()
                .zip(file.lines())
                .position(|(a, b)| a != b)
                .map_or(now.lines().count().min(file.lines().count()), |i| i);
            panic!(
                "{path} is stale (first difference at line {}); regenerate it with `{REGENERATE}`",
                line + 1
            );
        }
    }
}

/// `--write DIR` writes the same three files (what the regenerate command does).
#[test]
fn write_puts_the_three_files_under_the_given_root() {
    let root = dir("reference-write");
    let out = nexrtc(
        &[
            "config-reference",
            "--write",
            root.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    for (format, path) in [
        ("markdown", "docs/config-reference.md"),
        ("relay-toml", "packaging/etc/nexrtc/relay.toml"),
        ("controller-toml", "packaging/etc/nexrtc/controller.toml"),
    ] {
        let written = std::fs::read_to_string(root.join(path)).expect(path);
        assert_eq!(written, rendered(format), "{path}");
    }
}

/// The relay's flags as `--help` lists them, in snake_case (the file's keys).
fn help_flags(command: &str) -> Vec<String> {
    let help = nexrtc(&[command, "--help"], &[]).stdout;
    let mut flags: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|t| t.starts_with("--")))
        .map(|t| t.trim_start_matches("--").trim_end_matches(','))
        .map(|t| t.split('=').next().unwrap_or(t).replace('-', "_"))
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_relay_key_is_in_the_reference_and_the_default_file() {
    let reference = committed("docs/config-reference.md");
    let default_file = committed("packaging/etc/nexrtc/relay.toml");
    let flags = help_flags("relay");
    assert!(flags.len() > 30, "relay --help lists its flags: {flags:?}");
    // Flags that are not keys of a relay's file: the command's own switches and the
    // in-process edge agent's (flags and environment, documented with the agent;
    // the standalone agent's --metrics-listen and --log-json are relay keys too).
    let agent = help_flags("agent");
    let not_keys: Vec<&str> = ["help", "version", "config", "check_config"]
        .into_iter()
        .chain(
            agent
                .iter()
                .map(String::as_str)
                .filter(|f| !["metrics_listen", "log_json"].contains(f)),
        )
        .collect();
    assert!(not_keys.contains(&"node_token_file"), "{agent:?}");
    let mut missing = Vec::new();
    for flag in flags.iter().filter(|f| !not_keys.contains(&f.as_str())) {
        if !reference.contains(&format!("`{flag}`")) {
            missing.push(format!("{flag} (reference)"));
        }
        if !default_file.contains(&format!("\n#{flag} = ")) {
            missing.push(format!("{flag} (relay.toml)"));
        }
    }
    assert!(
        missing.is_empty(),
        "relay flags missing from the generated files: {missing:?}"
    );
}

/// Every `#key = value` line of a default file, uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ')) =>
            {
                rest.to_owned()
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_relay_default_file_with_every_key_uncommented_checks() {
    let d = dir("reference-relay-defaults");
    let (cert, key) = check::cert_pair(&d, "relay.example.org");
    let text = uncommented(&committed("packaging/etc/nexrtc/relay.toml"))
        // The examples that must be the operator's own: a relay address of this
        // host, a secret, and files that exist here.
        .replace("[\"192.0.2.10\"]", "[\"127.0.0.1\"]")
        .replace("\"0.0.0.0\"", "\"127.0.0.1\"")
        .replace(
            "CHANGE-ME-to-16-or-more-random-characters",
            "a-nonce-key-of-this-test-only",
        )
        .replace(
            "static_auth_secret = []",
            "static_auth_secret = [\"test-secret-1\"]",
        )
        .replace("\"/etc/nexrtc/relay.crt\"", &format!("{cert:?}"))
        .replace("\"/etc/nexrtc/relay.key\"", &format!("{key:?}"))
        .replace(
            "secrets_file = \"/etc/nexrtc/secrets.toml\"",
            "#secrets_file: none here",
        );
    assert!(!text.contains("\n#listening_port"), "uncommented: {text}");
    let path = file(&d, "relay.toml", &text);
    let out = nexrtc(&["relay", "--config", &path, "--check-config"], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "the default relay.toml, uncommented:\n{text}\n{}",
        out.all()
    );
    assert!(out.stdout.contains("configuration OK"), "{out:?}");
    assert!(
        !out.all().contains("test-secret-1"),
        "secret printed: {out:?}"
    );
}

#[test]
fn the_controller_default_file_with_every_key_uncommented_checks() {
    let d = dir("reference-controller-defaults");
    let (cert, key) = check::cert_pair(&d, "controller.example.org");
    let mut text = uncommented(&committed("packaging/etc/nexrtc/controller.toml"))
        .replace("\"/etc/nexrtc/controller.crt\"", &format!("{cert:?}"))
        .replace("\"/etc/nexrtc/controller.key\"", &format!("{key:?}"))
        .replace(
            "\"/var/lib/GeoIP/GeoLite2-City.mmdb\"",
            &format!("{:?}", check::geoip_db()),
        )
        .replace(
            "CHANGE-ME-16-or-more-characters",
            "tenant-secret-of-this-test",
        );
    for (i, name) in ["admin", "node", "ice"].iter().enumerate() {
        text = text.replacen(
            "nxk_CHANGE-ME-run-nexrtc-controller-init-for-fresh-keys",
            &format!("nxk_{name}{i}keyofthistestonly0123456789abcdef"),
            1,
        );
    }
    let path = file(&d, "controller.toml", &text);
    let out = nexrtc(&["controller", "--config", &path, "--check-config"], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "the default controller.toml, uncommented:\n{text}\n{}",
        out.all()
    );
    assert!(out.stdout.contains("configuration OK"), "{out:?}");
    assert!(
        !out.all().contains("keyofthistestonly"),
        "a key printed: {out:?}"
    );
}
