//! Starting and stopping `nexrtc relay`: what the operator sees when the
//! configuration cannot work, and how long a stop takes.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{free_port, ChildGuard};

fn relay_cmd(extra: &[&str]) -> Command {
    let port = free_port().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexrtc"));
    cmd.args([
        "relay",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        &port,
    ])
    .args(["--realm", "start.test", "--static-auth-secret", "s3cret"])
    .args(["--no-tls", "--metrics-listen", "127.0.0.1:0"])
    .args(extra);
    cmd
}

/// A relay IP that is on none of this host's interfaces (TEST-NET-1: binding
/// fails locally, nothing is sent) must stop the start, naming the address
/// and the fix, rather than start "healthy" and refuse every Allocate.
#[test]
fn a_relay_ip_not_on_this_host_refuses_to_start() {
    for extra in [&[][..], &["--multiplex-peer"][..]] {
        let mut args = vec!["--relay-ip", "192.0.2.55"];
        args.extend_from_slice(extra);
        let mut relay = ChildGuard::spawn("relay", &mut relay_cmd(&args));
        let status = relay
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{extra:?}: the relay started: {}", relay.log_tail(20)));
        assert_eq!(status.code(), Some(1), "{extra:?}");
        let log = relay.log_text();
        assert!(
            log.contains("relay IP 192.0.2.55 is not an address of this host")
                && log.contains("--external-ip"),
            "{extra:?}: {log}"
        );
    }
}
