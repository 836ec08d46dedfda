//! `nexrtc dns`: the relay zone served by a process of its own, on the controller's etcd
//! and configuration. It answers from the registry as the controller does (a relay that
//! registers through the controller is named; one that is killed leaves), serves only
//! health and metrics over HTTP, and writes nothing to the store: it is not a signaling
//! replica.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// etcd's count of keys under the controllers' prefix (the signaling replicas), through
/// its JSON gateway. Keys are base64: `/nexrtc/v1/controllers/` up to `…controllers0`.
fn replicas(etcd: &Etcd) -> u64 {
    let addr: SocketAddr = (etcd.endpoint().trim_start_matches("http://"))
        .parse()
        .expect("etcd address");
    let body = r#"{"key": "L25leHJ0Yy92MS9jb250cm9sbGVycy8=",
                   "range_end": "L25leHJ0Yy92MS9jb250cm9sbGVyczA=", "count_only": true}"#;
    let (status, text) = http_call(addr, "POST", "/v3/kv/range", None, Some(body)).expect("etcd");
    assert_eq!(status, 200, "{text}");
    let json: Value = serde_json::from_str(&text).expect("JSON");
    // The gateway leaves a zero count out and writes 64-bit numbers as strings.
    (json["count"].as_str()).map_or(0, |n| n.parse().expect("count"))
}

/// Asks `dns` until `pred` holds for the answer (at most `limit`).
fn dig_until(
    dns: &Controller,
    args: &[&str],
    limit: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let answer = dns.dig(args);
        if pred(&answer) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dns_process_answers_from_the_store_and_writes_nothing() {
    if require_tool("dig", "bind9-dnsutils").is_none() {
        return;
    }
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let setup = ControllerSetup::etcd(&etcd, 2, 500).region("eu-west", 53.35, -6.26);
    let controller = Controller::start(&setup);
    assert_eq!(replicas(&etcd), 1, "the controller is a signaling replica");
    let dns = controller.dns_process();

    let relay = controller.relay(slot::DNS_PROCESS, "eu-west", "relay-a");
    controller.until("relay registered", Duration::from_secs(20), |a| {
        offers(a, relay.port)
    });
    let name = "relay-a.eu-west.turn.example.org";
    let named = dig_until(&dns, &[name, "A"], Duration::from_secs(5), |a| {
        a == ["127.0.0.1"]
    });
    assert_eq!(named, ["127.0.0.1"]);
    let srv = dns.dig(&["_turn._udp.turn.example.org", "SRV"]);
    assert_eq!(srv, [format!("0 1 {} {name}.", relay.port)]);

    // HTTP: health and metrics only.
    let (status, ready) = http_get(dns.addr, "/readyz").expect("readyz");
    assert_eq!(status, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(ready["dns"]["listen"], dns.dns.expect("dns").to_string());
    let (status, metrics) = http_get(dns.addr, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("nexrtc_controller_dns_queries_total{type=\"A\",rcode=\"noerror\""),
        "{metrics}"
    );
    let (status, body) =
        http_post(dns.addr, "/v1/ice-servers", &controller.keys.ice_key, "{}").expect("post");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"code\""), "{body}");
    // Not a signaling replica: the store still holds one.
    assert_eq!(replicas(&etcd), 1);

    // kill -9 of the relay: it leaves the DNS process's answers with its lease.
    let port = relay.port;
    drop(relay);
    let gone = dig_until(
        &dns,
        &[name, "A"],
        Duration::from_secs(10),
        <[String]>::is_empty,
    );
    assert!(gone.is_empty(), "{gone:?}");
    let srv = dns.dig(&["_turn._udp.turn.example.org", "SRV"]);
    assert!(
        !srv.iter().any(|l| l.contains(&port.to_string())),
        "{srv:?}"
    );
}
