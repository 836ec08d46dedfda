//! The browser end to end: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser/`) opens the `nexrtc dev` demo page twice in one
//! room; the pages call each other with relay-only ICE over one TURN transport (UDP, TCP,
//! TLS), chat over the data channel both ways and send fake-camera video. The node script
//! checks the call in the pages (see `tests/browser/call.js`); this test checks that the
//! relay's `/metrics` counted at least the bytes the browsers sent, on that transport, and
//! that each page measured the relay with `/nexrtc-probe.js` and reported it.
//!
//! Needs `chromium`, `node` and `npm ci` in `tests/browser/` (.ci/run does all three);
//! outside CI a missing one skips the test loudly. Screenshots of the demo page mid-call
//! and of `/status` go to `target/e2e-screenshots/`.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Bound of one node run (it bounds each of its own steps at 30 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The Chromium binary: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether Chromium, node and the npm packages are there: outside CI a missing one
/// skips the test loudly, under `CI=true` it fails it (`nexrtc_test_support::tools`).
fn browser_available() -> bool {
    if !chromium().is_file() {
        missing(
            &format!("{}", chromium().display()),
            "apt-get install chromium, or set $CHROMIUM",
        );
        return false;
    }
    if require_tool("node", "nodejs npm").is_none() {
        return false;
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        missing(
            "tests/browser/node_modules",
            "run `npm ci` in tests/browser",
        );
        return false;
    }
    true
}

fn screenshot_dir() -> PathBuf {
    // target/e2e-screenshots, beside the tmp dir cargo gives integration tests.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("e2e-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/e2e-screenshots"))
}

/// Runs `tests/browser/call.js` (with more environment `env`); its one JSON line of
/// results.
fn run_call(dev: &DevNetwork, transport: &str, env: &[(&str, &str)]) -> Value {
    let room = format!("e2e-{transport}-{}", &random_token("")[..8]);
    let stderr_log = std::env::temp_dir().join(format!("nexrtc-call-{room}.log"));
    let mut child = Command::new("node")
        .arg("call.js")
        .current_dir(browser_dir())
        .env("BASE_URL", dev.base_url())
        .env("TRANSPORT", transport)
        .env("ROOM", &room)
        .env("SCREENSHOT_DIR", screenshot_dir())
        .env("CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).expect("log file"))
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "call.js did not finish within {CALL_TIMEOUT:?}: {}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let stderr = std::fs::read_to_string(&stderr_log).unwrap_or_default();
    assert!(
        status.success(),
        "call.js failed ({status}):\n{stderr}\n---- nexrtc dev ----\n{}",
        dev.process.log_tail(40)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("call.js printed no result: {stdout}\n{stderr}"));
    serde_json::from_str(line).expect("call.js result is JSON")
}

fn browser_call(slot: u16, transport: &str) {
    browser_call_with(slot, transport, &[]);
}

fn browser_call_with(slot: u16, transport: &str, env: &[(&str, &str)]) {
    if !browser_available() {
        return;
    }
    let mut dev = DevNetwork::start(slot);
    let relayed = |m: &Metrics, direction: &str| {
        m.sum(
            "nexrtc_relay_bytes_total",
            &[
                ("tenant", "dev"),
                ("transport", transport),
                ("direction", direction),
            ],
        )
    };
    let before = dev.relay_metrics();
    let result = run_call(&dev, transport, env);
    eprintln!("call.js: {result}");

    // What the pages saw (call.js already refused anything else).
    assert_eq!(result["transport"], transport);
    for pair in result["pairs"].as_array().expect("pairs") {
        assert_eq!(pair["local"]["type"], "relay", "{pair}");
        assert_eq!(pair["local"]["relayProtocol"], transport, "{pair}");
        let url = pair["local"]["url"].as_str().unwrap_or_default();
        let port = if transport == "tls" {
            dev.tls_port
        } else {
            dev.turn_port
        };
        assert!(
            url.contains(&format!("127.0.0.1:{port}")),
            "relay URL {url}"
        );
    }

    if env.contains(&("SIGNAL_DROP", "1")) {
        assert_eq!(result["signal_reconnects"], 1, "{result}");
    }

    // Each page measured the relay with the browser probe (srflx through
    // RTCPeerConnection) and reported it for the loopback network.
    for probe in result["probes"].as_array().expect("probes") {
        assert!(probe["error"].is_null(), "{probe}");
        let results = probe["results"].as_array().expect("probe results");
        assert_eq!(results.len(), 1, "{probe}");
        let rtt = results[0]["rtt_ms"].as_f64().expect("rtt_ms");
        assert!(rtt > 0.0 && rtt < 3000.0, "{probe}");
        assert_eq!(probe["answer"]["network"], "127.0.0.0/24", "{probe}");
        assert_eq!(probe["answer"]["accepted"], 1, "{probe}");
    }

    // The relay carried it: every byte the browsers' transports sent (DTLS, SCTP with
    // the chat, SRTP with the video) went to the peer through an allocation on this
    // transport, so its counter grew by at least as much.
    let after = dev.relay_metrics();
    let to_peer = relayed(&after, "to_peer") - relayed(&before, "to_peer");
    let to_client = relayed(&after, "to_client") - relayed(&before, "to_client");
    let sent = result["bytes_sent_total"]
        .as_f64()
        .expect("bytes_sent_total");
    let chat = 2.0 * result["chat_bytes_each_way"].as_f64().expect("chat bytes");
    eprintln!(
        "{transport}: browsers sent {sent} bytes ({chat} of chat); the relay counted \
         {to_peer} to peers, {to_client} to clients"
    );
    assert!(
        sent >= chat,
        "the transports sent less than the chat: {result}"
    );
    assert!(
        to_peer >= sent,
        "relay to_peer bytes grew by {to_peer}, the browsers sent {sent}"
    );
    assert!(
        to_client >= chat,
        "relay to_client bytes grew by {to_client}"
    );

    let exit = dev
        .stop(Duration::from_secs(15))
        .expect("nexrtc dev exits after SIGTERM");
    assert!(exit.success(), "{exit}: {}", dev.process.log_tail(30));
}

/// Over UDP, page a also loses its signaling WebSocket mid-call: it reconnects and
/// rejoins, and the call (chat both ways) goes on (call.js, `SIGNAL_DROP`).
#[test]
fn browsers_call_through_the_relay_over_udp() {
    browser_call_with(slot::DEV_BROWSER_UDP, "udp", &[("SIGNAL_DROP", "1")]);
}

#[test]
fn browsers_call_through_the_relay_over_tcp() {
    browser_call(slot::DEV_BROWSER_TCP, "tcp");
}

#[test]
fn browsers_call_through_the_relay_over_tls() {
    browser_call(slot::DEV_BROWSER_TLS, "tls");
}

/// A call longer than its room tokens' lifetime (3 s here) keeps its signaling: each page
/// is told `token_expiring`, fetches a new token for the same participant and sends
/// `refresh` on the open WebSocket (call.js checks the sockets stay open and no
/// `token_expired` arrives).
#[test]
fn signaling_outlives_the_room_tokens_through_refreshes() {
    if !browser_available() {
        return;
    }
    let mut dev = DevNetwork::start_with(slot::DEV_BROWSER_REFRESH, &["--room-token-ttl", "3"]);
    let result = run_call(&dev, "udp", &[("TOKEN_REFRESHES", "3")]);
    eprintln!("call.js: {result}");
    let refreshes = result["token_refreshes"]
        .as_array()
        .expect("token_refreshes");
    assert_eq!(refreshes.len(), 2, "{result}");
    for n in refreshes {
        assert!(n.as_u64().is_some_and(|n| n >= 3), "{result}");
    }
    let exit = dev
        .stop(Duration::from_secs(15))
        .expect("nexrtc dev exits after SIGTERM");
    assert!(exit.success(), "{exit}: {}", dev.process.log_tail(30));
}

/// TURN over TLS with the dev relay's self-signed certificate, in a browser that checks
/// certificates: ICE fails with candidate error 701, and the demo page says why and how
/// to fix it instead of staying at "calling".
#[test]
fn the_demo_page_explains_a_refused_relay_certificate() {
    if !browser_available() {
        return;
    }
    let mut dev = DevNetwork::start(slot::DEV_BROWSER_CERT_HINT);
    let result = run_call(
        &dev,
        "tls",
        &[("EXPECT_HINT", "--ignore-certificate-errors")],
    );
    eprintln!("call.js: {result}");
    let hints = result["hints"].as_array().expect("hints");
    assert!(
        hints.iter().any(|h| h
            .as_str()
            .is_some_and(|h| h.contains("701") && h.contains("&transport=udp"))),
        "{result}"
    );
    let exit = dev
        .stop(Duration::from_secs(15))
        .expect("nexrtc dev exits after SIGTERM");
    assert!(exit.success(), "{exit}: {}", dev.process.log_tail(30));
}
