//! The lab itself: measured RTTs match the plan, cuts cut and heal, the NAT client
//! namespace leaves as 10.k.3.1, stray packets are counted, and nothing is left behind —
//! neither when the lab is dropped nor when its process is killed with SIGKILL.
//!
//! Needs root, util-linux (`unshare`, `nsenter`), iproute2 and nftables: under `CI=true`
//! a missing one fails the test, otherwise it is skipped with a notice.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nexrtc_lab::{in_ns, measure_rtts, Echo, Lab, Plan};
use nexrtc_test_support::tools::missing;

fn available() -> bool {
    match nexrtc_lab::prerequisites() {
        Ok(()) => true,
        Err((what, install)) => {
            missing(&what, &install);
            false
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn measured_rtts_follow_the_plan() {
    if !available() {
        return;
    }
    let lab = Lab::start(&Plan::builtin()).expect("lab");
    let pairs = measure_rtts(&lab, 9).expect("measured");
    assert_eq!(pairs.len(), 30);
    for p in &pairs {
        let median = p
            .median_ms
            .unwrap_or_else(|| panic!("{p:?}: nothing answered"));
        let bound = (p.planned_ms * 0.05).max(3.0);
        assert!(
            (median - p.planned_ms).abs() <= bound,
            "{} → {}: measured {median:.2} ms, planned {} ms",
            p.from,
            p.to,
            p.planned_ms
        );
    }
    let stats = lab.stats().expect("stats");
    eprintln!("lateness: {:?}", stats.lateness_us);
    assert!(
        stats.lateness_us.count >= 2 * 30 * 8,
        "{:?}",
        stats.lateness_us
    );
}

/// A UDP echo in `region` at `addr`; the socket lives in the region's namespace.
/// Whether a datagram from `socket` to `to` is echoed within 1 s.
fn answered(socket: &UdpSocket, to: SocketAddr) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        if socket.send_to(b"ping", to).is_ok() && socket.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

#[test]
fn cuts_heal_nat_leaves_as_its_public_address_and_strays_are_counted() {
    if !available() {
        return;
    }
    let lab = Lab::start(&Plan::builtin()).expect("lab");
    let server: SocketAddr = "10.3.0.1:9000".parse().expect("addr");
    let echoes = Echo::start(lab.region_ns("eu-west").expect("ns"), server).expect("echo");

    let us = in_ns(lab.region_ns("us-east").expect("ns"), || {
        UdpSocket::bind("0.0.0.0:0")
    })
    .expect("in ns")
    .expect("bind");
    assert!(answered(&us, server), "eu-west answers before the cut");
    lab.cut("eu-west", true).expect("cut");
    assert!(!answered(&us, server), "eu-west is cut off");
    lab.cut("eu-west", false).expect("heal");
    assert!(answered(&us, server), "eu-west answers after healing");

    // The NAT client of sa-east reaches eu-west as 10.6.3.1.
    let nat = in_ns(lab.nat_ns("sa-east").expect("ns"), || {
        UdpSocket::bind("0.0.0.0:0")
    })
    .expect("in ns")
    .expect("bind");
    assert!(answered(&nat, server), "the NAT client reaches eu-west");

    // Within its own region too, the NAT client is seen as 10.6.3.1.
    let local: SocketAddr = "10.6.0.1:9001".parse().expect("addr");
    let local_echo = Echo::start(lab.region_ns("sa-east").expect("ns"), local).expect("echo");
    assert!(
        answered(&nat, local),
        "the NAT client reaches its own region"
    );
    let seen_locally = local_echo.stop();
    assert!(
        seen_locally
            .iter()
            .all(|a| a.ip().to_string() == "10.6.3.1")
            && !seen_locally.is_empty(),
        "{seen_locally:?}"
    );

    // A packet to 10.7.0.1 (no such region) is counted, not forwarded.
    let before = lab.stats().expect("stats").unknown_destination;
    let _ = us.send_to(b"stray", "10.7.0.1:9").map(|_| ());
    let deadline = Instant::now() + Duration::from_secs(2);
    while lab.stats().expect("stats").unknown_destination == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = lab.stats().expect("stats");
    assert!(stats.unknown_destination > before, "{stats:?}");
    assert!(
        stats.links[0][2].cut > 0,
        "the cut dropped us-east → eu-west packets"
    );

    let seen = echoes.stop();
    assert!(
        seen.iter().any(|a| a.ip().to_string() == "10.6.3.1"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|a| !a.ip().to_string().starts_with("192.168.")),
        "{seen:?}"
    );
}

/// The holders' pids printed by `nexrtc-lab up`.
fn holders(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.split("--net=/proc/").nth(1))
        .filter_map(|rest| rest.split('/').next()?.parse().ok())
        .collect()
}

#[test]
fn nothing_is_left_after_drop_or_sigkill() {
    if !available() {
        return;
    }
    // Dropped.
    let lab = Lab::start(&Plan::builtin()).expect("lab");
    let pids: Vec<u32> = holders(
        &lab.describe()
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>(),
    );
    assert_eq!(pids.len(), 12);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(lab);
    assert!(pids.iter().all(|&p| !alive(p)), "holders gone after drop");

    // Killed.
    let mut up = Command::new(env!("CARGO_BIN_EXE_nexrtc-lab"))
        .arg("up")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nexrtc-lab up");
    let mut lines = Vec::new();
    let mut out = BufReader::new(up.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).expect("read") == 0 || Instant::now() > deadline {
            panic!("nexrtc-lab up did not get ready: {lines:?}");
        }
        if line.trim() == "ready" {
            break;
        }
        lines.push(line);
    }
    let pids = holders(&lines);
    assert_eq!(pids.len(), 12, "{lines:?}");
    assert!(pids.iter().all(|&p| alive(p)));
    // SAFETY: kill with a pid we started; SIGKILL cannot be caught.
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGKILL) };
    let _ = up.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "holders gone after SIGKILL"
    );
    // No lab device reached this namespace.
    let links = Command::new("ip")
        .args(["-br", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("lab0") && !links.contains("nat0"),
        "{links}"
    );
}
