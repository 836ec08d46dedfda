//! `nexrtc dev` without a browser: one process serves the controller API, the pages and
//! a relay whose agent registered; what `/dev/session` mints works on that relay; the
//! relay's and the controller's `/metrics` both work with one metrics recorder in the
//! process; the dev tenant lets its own pages (and only them) open the signaling
//! WebSocket; `/dev/session` is rate limited per address without touching the API key's
//! budget; only requests for localhost or a loopback address are served (DNS rebinding);
//! SIGTERM stops everything with exit code 0.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn json_of(answer: std::io::Result<(u16, String)>, what: &str) -> (u16, Value) {
    let (status, body) = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    (status, value)
}

/// The status code of a WebSocket handshake for `path` sent with `Origin: origin`.
fn handshake_status(addr: SocketAddr, path: &str, origin: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && s.read(&mut byte).expect("read") == 1 {
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    let status = line.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

/// `method path` with `Host: host` (HTTP/1.0, no body): `(status, body)`.
fn with_host(addr: SocketAddr, method: &str, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (
        status.unwrap_or_else(|| panic!("no status in {head:?}")),
        body.to_owned(),
    )
}

#[test]
fn dev_runs_the_whole_network_in_one_process() {
    let mut dev = DevNetwork::start(slot::DEV_MODE);

    // The status JSON is public in dev mode and shows the one relay with its addresses.
    let (status, report) = json_of(http_get(dev.http, "/v1/status"), "GET /v1/status");
    assert_eq!(status, 200, "{report}");
    let relays = report["relays"].as_array().expect("relays");
    assert_eq!(relays.len(), 1, "{report}");
    let relay = &relays[0];
    assert_eq!(relay["id"], "local/dev-1");
    assert_eq!(relay["state"], "active");
    assert_eq!(relay["health"], "ok");
    assert_eq!(relay["region_known"], true);
    assert_eq!(relay["addresses"]["udp"]["port"], dev.turn_port);
    assert_eq!(relay["addresses"]["tls"]["port"], dev.tls_port);
    assert_eq!(report["regions"][0]["name"], "local");
    assert_eq!(report["regions"][0]["active"], 1);

    // A wrong key is still refused: dev mode only fills in a missing one.
    let (status, body) = json_of(
        http_call(
            dev.http,
            "GET",
            "/v1/status",
            Some("nxk_wrongwrongwrongwrongwrongwrongwrong"),
            None,
        ),
        "GET /v1/status with a wrong key",
    );
    assert_eq!(status, 401, "{body}");

    // The pages.
    for (path, marker) in [("/", "RTCPeerConnection"), ("/status", "/v1/status")] {
        let (status, html) = http_get(dev.http, path).expect(path);
        assert_eq!(status, 200, "{path}");
        assert!(html.contains(marker), "{path} does not mention {marker}");
    }

    // The API key works on the ICE API, as the printed curl line does.
    let (status, ice) = json_of(
        http_post(
            dev.http,
            "/v1/ice-servers",
            &dev.api_key,
            &json!({"user": "alice"}).to_string(),
        ),
        "POST /v1/ice-servers",
    );
    assert_eq!(status, 201, "{ice}");
    assert!(offers(&ice, dev.turn_port), "{ice}");

    // The same credentials open a CONNECT-UDP tunnel on the QUIC relay (UDP --tls-port).
    if quic_client_available() {
        let echo = std::net::UdpSocket::bind("127.0.0.1:0").expect("echo");
        let target = echo.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        });
        let (username, password) = credentials(&ice);
        let quic = SocketAddr::from(([127, 0, 0, 1], dev.tls_port));
        let steps = masque(
            quic,
            json!([{"target": target.to_string(), "auth": format!("{username}:{password}"),
                    "sizes": [5, 500]}]),
        );
        let tunnel = &steps[0]["tunnels"][0];
        assert_eq!(tunnel["headers"][":status"], "200", "{tunnel}");
        assert_eq!(tunnel["echo"], json!({"same": 2, "differ": 0, "lost": 0}));
    }

    // GeoDNS names the relay (its UDP listener, in the ranking's order).
    if require_tool("dig", "bind9-dnsutils").is_some() {
        let dig = |args: &[&str]| {
            let out = std::process::Command::new("dig")
                .args(["@127.0.0.1", "-p", &dev.dns.port().to_string(), "+short"])
                .args(args)
                .output()
                .expect("dig");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(dig(&["turn.nexrtc.test", "A"]), "127.0.0.1");
        assert_eq!(
            dig(&["_turn._udp.turn.nexrtc.test", "SRV"]),
            format!("0 1 {} dev-1.local.turn.nexrtc.test.", dev.turn_port)
        );
    }

    // /dev/session mints TURN credentials for a fresh participant (no key in the
    // request); they allocate on the relay.
    let (status, session) = json_of(
        http_call(dev.http, "POST", "/dev/session?room=dev-mode", None, None),
        "POST /dev/session",
    );
    assert_eq!(status, 200, "{session}");
    let participant = session["participant"].as_str().expect("participant");
    assert!(participant.starts_with("guest-"), "{session}");
    // ... and a room token for the signaling WebSocket.
    let token = &session["token"];
    assert!(
        token["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("nxt_")),
        "{session}"
    );
    assert_eq!(token["participant"], participant, "{session}");
    assert_eq!(token["room"], "dev-mode", "{session}");
    assert!(
        token["signal_url"]
            .as_str()
            .is_some_and(|u| u.contains("/v1/signal?room=dev-mode")),
        "{session}"
    );
    let (username, password) = credentials(&session["ice"]);
    assert!(
        username.ends_with(&format!(":dev:{participant}")),
        "{username}"
    );
    let relay_addr = SocketAddr::from(([127, 0, 0, 1], dev.turn_port));
    assert_eq!(
        try_allocate(relay_addr, &username, &password),
        AllocateOutcome::Allocated
    );
    // The demo page's WebSocket comes from this server's own origin, which the dev
    // tenant allows; a page elsewhere holding the token is refused before the upgrade.
    let signal = format!(
        "/v1/signal?room=dev-mode&token={}",
        token["token"].as_str().expect("token")
    );
    let own = format!("http://{}", dev.http);
    let by_name = format!("http://localhost:{}", dev.http.port());
    assert_eq!(
        handshake_status(dev.http, &signal, "https://evil.example"),
        403
    );
    assert_eq!(handshake_status(dev.http, &signal, &own), 101);
    assert_eq!(handshake_status(dev.http, &signal, &by_name), 101);
    // A page refreshing its room token asks for the participant it already is.
    let (status, again) = json_of(
        http_call(
            dev.http,
            "POST",
            &format!("/dev/session?room=dev-mode&participant={participant}"),
            None,
            None,
        ),
        "POST /dev/session for the same participant",
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["token"]["participant"], participant, "{again}");
    let (status, bad) = json_of(
        http_call(
            dev.http,
            "POST",
            "/dev/session?room=r&participant=a%2Fb",
            None,
            None,
        ),
        "POST /dev/session with a bad participant",
    );
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, bad) = json_of(
        http_call(dev.http, "POST", "/dev/session?room=a%2Fb", None, None),
        "POST /dev/session with a bad room",
    );
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["code"], "invalid_request");
    let (status, bad) = json_of(
        http_call(dev.http, "POST", "/dev/session?room=a&room=b", None, None),
        "POST /dev/session with a repeated room",
    );
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["code"], "invalid_request");

    // /dev/session has a per-address limit of its own: a page calling it in a loop is
    // refused (JSON 429) while the printed API key keeps its whole budget.
    let mut limited = None;
    for _ in 0..60 {
        match json_of(
            http_call(dev.http, "POST", "/dev/session?room=loop", None, None),
            "POST /dev/session in a loop",
        ) {
            (200, _) => {}
            (429, body) => {
                limited = Some(body);
                break;
            }
            (status, body) => panic!("POST /dev/session: {status} {body}"),
        }
    }
    let limited = limited.expect("60 sessions in a row from one address were all served");
    assert_eq!(limited["code"], "rate_limited", "{limited}");
    for _ in 0..5 {
        let (status, ice) = json_of(
            http_post(
                dev.http,
                "/v1/ice-servers",
                &dev.api_key,
                &json!({"user": "alice"}).to_string(),
            ),
            "POST /v1/ice-servers after /dev/session was limited",
        );
        assert_eq!(status, 201, "{ice}");
    }

    // DNS rebinding: a page under another name re-pointed at 127.0.0.1 sends its own name
    // as Host, and is refused everything (JSON 421); this machine's names are served.
    for host in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.nip.io",
        "10.0.0.1",
    ] {
        for (method, path) in [
            ("GET", "/v1/status"),
            ("GET", "/"),
            ("POST", "/dev/session"),
        ] {
            let (status, body) = with_host(dev.http, method, path, host);
            assert_eq!(status, 421, "{method} {path} Host {host}: {body}");
            let body: Value = serde_json::from_str(&body).expect("JSON error");
            assert_eq!(body["code"], "forbidden_host", "{body}");
        }
    }
    let port = dev.http.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, body) = with_host(dev.http, "GET", "/v1/status", &host);
        assert_eq!(status, 200, "Host {host}: {body}");
    }

    // Both /metrics work: the relay's own counters plus the agent's lines, and the
    // controller's.
    let relay_metrics = dev.relay_metrics();
    assert!(
        relay_metrics.sum("nexrtc_relay_allocations_total", &[("tenant", "dev")]) >= 1.0,
        "{}",
        relay_metrics.0
    );
    assert_eq!(
        relay_metrics.sum("nexrtc_agent_registered", &[]),
        1.0,
        "{}",
        relay_metrics.0
    );
    assert!(
        !relay_metrics.has("nexrtc_controller_requests_total"),
        "{}",
        relay_metrics.0
    );
    let (status, text) = http_get(dev.http, "/metrics").expect("controller /metrics");
    assert_eq!(status, 200);
    let controller_metrics = Metrics(text);
    assert!(
        controller_metrics.sum(
            "nexrtc_controller_credentials_issued_total",
            &[("tenant", "dev")]
        ) >= 2.0,
        "{}",
        controller_metrics.0
    );

    // SIGTERM: everything stops, exit code 0.
    let exit = dev
        .stop(Duration::from_secs(15))
        .expect("nexrtc dev exits after SIGTERM");
    assert!(exit.success(), "{exit}: {}", dev.process.log_tail(30));
    let log = dev.process.log_text();
    assert!(log.contains("API key"), "the banner names the API key");
    assert!(
        log.contains(&format!("quic 127.0.0.1:{}", dev.tls_port)),
        "the banner names the QUIC relay"
    );
    assert!(
        log.contains(&format!("GeoDNS       {}", dev.dns)),
        "the banner names the DNS server"
    );
    assert!(
        log.contains("curl -s -X POST"),
        "the banner has the curl line"
    );
}

#[test]
fn dev_refuses_a_malformed_api_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexrtc"))
        .args(["dev", "--api-key", "short"])
        .output()
        .expect("run nexrtc dev");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--api-key"), "{stderr}");
}

#[test]
fn status_needs_an_admin_key_outside_dev_mode() {
    let controller =
        Controller::start(&ControllerSetup::embedded(5, 1000).region("eu-west", 53.35, -6.26));
    let relay = controller.relay(slot::DEV_MODE_STATUS, "eu-west", "r1");
    let (status, body) = http_get(controller.addr, "/v1/status").expect("GET /v1/status");
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_call(
        controller.addr,
        "GET",
        "/v1/status",
        Some(&controller.keys.ice_key),
        None,
    )
    .expect("GET /v1/status with an ice key");
    assert_eq!(status, 403, "{body}");
    let (status, report) = controller.admin("GET", "/v1/status", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["regions"][0]["name"], "eu-west");
    // The relay appears once its agent registered (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, report) = controller.admin("GET", "/v1/status", None);
        if let Some(r) = report["relays"].as_array().and_then(|r| r.first()) {
            assert_eq!(r["id"], "eu-west/r1", "{report}");
            assert_eq!(r["addresses"]["udp"]["port"], relay.port, "{report}");
            assert_eq!(report["regions"][0]["relays"], 1, "{report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay never listed: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The page itself is public (it holds no data).
    let (status, html) = http_get(controller.addr, "/status").expect("GET /status");
    assert_eq!(status, 200);
    assert!(html.contains("<title>NexRTC Edge"), "{html}");
    // `/` and /dev/session exist only in dev mode.
    let (status, _) = http_call(controller.addr, "POST", "/dev/session?room=x", None, None)
        .expect("POST /dev/session");
    assert_eq!(status, 404);
}
