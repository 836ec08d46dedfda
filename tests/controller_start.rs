//! Starting a controller as a newcomer does: `nexrtc controller init` writes a
//! configuration the controller starts with, whose keys work (the node key, read by
//! a relay with `--node-token-file`, registers a relay; the ice key gets ICE
//! servers; the admin key lists relays); an etcd that is not there is one sentence.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::*;

/// `name = "value"` of a TOML line.
fn toml_string(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .to_owned()
}

fn init(out: &std::path::Path, listen: SocketAddr) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nexrtc"))
        .args(["controller", "init", "--out"])
        .arg(out)
        .args(["--listen", &listen.to_string()])
        .output()
        .expect("run nexrtc controller init")
}

#[test]
fn init_writes_a_config_whose_keys_work_and_never_overwrites_it() {
    let dir = std::env::temp_dir().join(format!("nexrtc-init-{}", random_token("")));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("nexrtc-controller.toml");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));

    let out = init(&path, addr);
    assert!(out.status.success(), "init: {out:?}");
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the file holds keys: private");
    let text = std::fs::read_to_string(&path).expect("read");
    let keys = ControllerKeys {
        admin_key: toml_string(&text, "admin_key"),
        node_key: toml_string(&text, "node_key"),
        ice_key: toml_string(&text, "ice_key"),
        tenant_secret: String::new(), // random, not in the file
    };

    // A second init refuses and leaves the file as it was.
    let again = init(&path, addr);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    let setup = ControllerSetup::embedded(5, 1000);
    let controller = Controller::start_from_file(addr, path.clone(), keys, setup);

    // A relay takes its node key from the same file.
    let mut config = RelayConfig::new(slot::CONTROLLER_INIT);
    config.extra_args.extend(
        [
            "--controller",
            &controller.url(),
            "--node-token-file",
            &path.to_string_lossy(),
            "--region",
            "eu-west",
            "--node",
            "relay1",
            "--probe-interval",
            "0",
        ]
        .map(str::to_owned),
    );
    let relay = Relay::start(config);
    let (answer, _) = controller.until("relay registered", Duration::from_secs(20), |a| {
        offers(a, relay.port)
    });
    let (username, _) = credentials(&answer);
    assert!(username.contains(":acme:alice"), "{username}");
    assert_eq!(controller.registered(), vec!["eu-west/relay1".to_owned()]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unreachable_etcd_is_one_sentence_at_start() {
    let endpoint = format!("http://127.0.0.1:{}", free_port()); // nothing listens
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.args(["controller", "--listen", &listen, "--etcd", &endpoint]);
    let mut controller = ChildGuard::spawn("nexrtc-controller-no-etcd", &mut cmd);
    let status = controller
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("still running: {}", controller.log_tail(10)));
    assert!(!status.success());
    let log = controller.log_text();
    let want = format!("cannot reach etcd at {endpoint}: ");
    assert!(log.contains(&want), "{log}");
    assert!(log.contains("is etcd running? (--etcd "), "{log}");
    assert!(log.to_lowercase().contains("connection refused"), "{log}");
    assert!(!log.contains("tonic::"), "no debug dump: {log}");
}
