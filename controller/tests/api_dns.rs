//! GeoDNS against independent clients: dnspython (`dns_client.py`) and `dig`. The
//! controller is the API tests' harness (four regions, one relay each, the synthetic
//! GeoIP database); its DNS server listens on loopback, UDP and TCP.
//!
//! Answers for clients in different places (by EDNS Client Subnet) match the ICE API's
//! ranking for the same address; the ECS scope says which network an answer is for;
//! region, node and SRV names; NXDOMAIN and NODATA with the SOA; refusals (out of zone,
//! AXFR); RFC 8482's minimal ANY; a drained region leaving the answers and moving the
//! serial; malformed packets dropped with the server still answering. The clients need
//! python3 with dnspython and dig (bind9-dnsutils), skipped with a notice outside CI.

mod api_common;

use api_common::*;
use hickory_proto::rr::Name;
use nexrtc_controller::dns::dnssec::Signing;
use nexrtc_controller::dns::zone::Zone;
use nexrtc_controller::dns::{DnsServer, DnsSettings};
use nexrtc_test_support::tools;
use serde_json::{json, Value};

fn clients_available() -> bool {
    tools::python_module("dns", "pip install dnspython==2.8.0")
        && tools::require_tool("dig", "bind9-dnsutils").is_some()
}

fn zone() -> Zone {
    let name = |n: &str| Name::from_ascii(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    Zone {
        apex: name("example.org."),
        ttl: 30,
        nameservers: vec![name("ns1.example.org."), name("ns2.example.org.")],
        hostmaster: name("hostmaster.example.org."),
    }
}

async fn dns(h: &Harness) -> DnsServer {
    dns_limited(h, 0.0).await
}

/// A DNS server with `rate_limit` UDP responses per second per client and question.
async fn dns_limited(h: &Harness, rate_limit: f64) -> DnsServer {
    let settings = DnsSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        zone: zone(),
        rate_limit,
        dnssec: None,
    };
    DnsServer::start(settings, h.state.clone())
        .await
        .expect("DNS server")
}

/// The harness with one relay per region and a DNS server over it (`None` without the
/// clients).
async fn fleet() -> Option<(Harness, DnsServer)> {
    if !clients_available() {
        return None;
    }
    let h = Harness::start().await;
    h.register_fleet().await;
    let server = dns(&h).await;
    Some((h, server))
}

/// Asks every query of `queries` with dnspython; one report each.
async fn ask(server: &DnsServer, queries: Value) -> Vec<Value> {
    let job = json!({
        "server": server.local_addr().ip().to_string(),
        "port": server.local_addr().port(),
        "zone": "example.org.",
        "queries": queries,
    });
    let file = tempfile::NamedTempFile::new()
        .expect("temp")
        .into_temp_path();
    std::fs::write(&file, job.to_string()).expect("job");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dns_client.py");
    let path = file.to_path_buf();
    let run = move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(path)
            .output()
    };
    let out = tokio::task::spawn_blocking(run)
        .await
        .expect("task")
        .expect("python3");
    assert!(
        out.status.success(),
        "dns_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    report["answers"].as_array().expect("answers").clone()
}

fn query(name: &str, rtype: &str, subnet: Option<&str>) -> Value {
    json!({"name": name, "type": rtype, "subnet": subnet, "tcp": false})
}

/// The record data of an answer section's records of type `rtype`, in order.
fn data(records: &Value, rtype: &str) -> Vec<String> {
    (records.as_array().expect("records").iter())
        .filter(|r| r[1] == rtype)
        .map(|r| r[3].as_str().expect("text").to_owned())
        .collect()
}

/// The relay hosts of an ICE answer, in its order (each relay once).
fn ice_hosts(answer: &Value) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for uri in answer["uris"].as_array().expect("uris") {
        let uri = uri.as_str().expect("uri");
        let rest = uri.split_once(':').expect("scheme").1;
        let host = rest.rsplit_once(':').expect("port").0.to_owned();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_answers_follow_the_ice_ranking_for_each_client_network() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    let places = [FRANKFURT_IP, LONDON_IP, TOKYO_IP, ASHBURN_IP];
    let queries: Vec<Value> = (places.iter())
        .map(|ip| query("turn.example.org.", "A", Some(&format!("{ip}/32"))))
        .collect();
    let answers = ask(&server, json!(queries)).await;
    let mut firsts = Vec::new();
    for (ip, answer) in places.iter().zip(&answers) {
        let ice = h.ice(json!({"client_ip": ip}), PROXY_IP).await;
        assert_eq!(ice.status, 201, "{}", ice.text);
        let want = ice_hosts(&ice.json);
        assert_eq!(data(&answer["answer"], "A"), want, "{ip}: {answer}");
        assert_eq!(answer["rcode"], "NOERROR");
        assert_eq!(answer["aa"], true);
        assert!(answer["answer"][0][2] == 30, "TTL: {answer}");
        // Scoped to the network the ranking treats alike: the synthetic database's /25s
        // (Frankfurt, London, Tokyo) and /24 (Ashburn), within the /24 of client probes.
        let scope = if *ip == ASHBURN_IP { 24 } else { 25 };
        assert_eq!(
            answer["ecs"],
            json!({"address": ip, "source": 32, "scope": scope}),
            "{answer}"
        );
        firsts.push(want[0].clone());
    }
    // A resolver sending only London's /24 gets the answer for that /24's first address
    // (Frankfurt's half), scoped to the /25 it holds for: it must ask again with more
    // of the address for the other half (RFC 7871 §7.2.1).
    let coarse = ask(
        &server,
        json!([query(
            "turn.example.org.",
            "A",
            Some(&format!("{LONDON_IP}/24"))
        )]),
    )
    .await;
    let frankfurt = h.ice(json!({"client_ip": FRANKFURT_IP}), PROXY_IP).await;
    assert_eq!(data(&coarse[0]["answer"], "A"), ice_hosts(&frankfurt.json));
    assert_eq!(
        coarse[0]["ecs"],
        json!({"address": "198.51.100.0", "source": 24, "scope": 25})
    );
    // Four places, four different nearest relays.
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 4, "{firsts:?}");

    // Without ECS, the resolver's own address ranks (loopback: unknown place), as the
    // ICE API ranks the same address; over TCP too.
    let ice = h.ice(json!({"client_ip": "127.0.0.1"}), PROXY_IP).await;
    let mut tcp = query("turn.example.org.", "A", None);
    tcp["tcp"] = json!(true);
    let answers = ask(&server, json!([query("turn.example.org.", "A", None), tcp])).await;
    for answer in &answers {
        assert_eq!(
            data(&answer["answer"], "A"),
            ice_hosts(&ice.json),
            "{answer}"
        );
        assert_eq!(answer["ecs"], Value::Null);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_records_and_refusals() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    let frankfurt = Some("198.51.100.10/24");
    let answers = ask(
        &server,
        json!([
            query("eu-west.turn.example.org.", "A", frankfurt),
            query("n1.eu-central.turn.example.org.", "A", None),
            query("nowhere.turn.example.org.", "A", None),
            query("n9.eu-west.turn.example.org.", "A", None),
            query("turn.example.org.", "AAAA", None),
            query("_turn._udp.turn.example.org.", "SRV", frankfurt),
            query("_turns._tcp.turn.example.org.", "SRV", frankfurt),
            query("example.org.", "SOA", None),
            query("example.org.", "NS", None),
            query("turn.example.org.", "ANY", None),
            query("relay.other.org.", "A", None),
            query("a.b.c.turn.example.org.", "A", None),
            query("N1.EU-Central.Turn.Example.ORG.", "A", None),
        ]),
    )
    .await;
    // A region's relays: the same for every client (scope 0).
    assert_eq!(data(&answers[0]["answer"], "A"), ["198.18.0.1"]);
    assert_eq!(answers[0]["ecs"]["scope"], 0, "{}", answers[0]);
    assert_eq!(data(&answers[1]["answer"], "A"), ["198.18.1.1"]);
    // Names are case-insensitive (RFC 4343).
    assert_eq!(data(&answers[12]["answer"], "A"), ["198.18.1.1"]);
    // Unknown names: NXDOMAIN with the SOA for negative caching.
    for i in [2, 3, 11] {
        assert_eq!(answers[i]["rcode"], "NXDOMAIN", "{}", answers[i]);
        assert_eq!(
            data(&answers[i]["authority"], "SOA").len(),
            1,
            "{}",
            answers[i]
        );
    }
    // NODATA: the name exists, no AAAA (the relays have IPv4 addresses only).
    assert_eq!(answers[4]["rcode"], "NOERROR");
    assert!(data(&answers[4]["answer"], "AAAA").is_empty());
    assert_eq!(data(&answers[4]["authority"], "SOA").len(), 1);
    // SRV (RFC 5928): the ranked relays' names and ports, best first, addresses added.
    let srv = data(&answers[5]["answer"], "SRV");
    assert_eq!(
        srv[0], "0 1 3478 n1.eu-central.turn.example.org.",
        "{srv:?}"
    );
    assert!(data(&answers[5]["additional"], "A").contains(&"198.18.1.1".to_owned()));
    assert_eq!(answers[5]["ecs"]["scope"], 25);
    assert_eq!(
        data(&answers[6]["answer"], "SRV")[0],
        "0 1 5349 n1.eu-central.turn.example.org."
    );
    // The apex.
    let soa = data(&answers[7]["answer"], "SOA");
    assert!(
        soa[0].starts_with("ns1.example.org. hostmaster.example.org. "),
        "{soa:?}"
    );
    assert_eq!(
        data(&answers[8]["answer"], "NS"),
        ["ns1.example.org.", "ns2.example.org."]
    );
    // ANY: RFC 8482's one synthesized record.
    assert_eq!(data(&answers[9]["answer"], "HINFO"), ["\"RFC8482\" \"\""]);
    // Not this server's zone.
    assert_eq!(answers[10]["rcode"], "REFUSED");
    let metrics = h.state.metrics.render();
    for line in [
        "nexrtc_controller_dns_queries_total{type=\"SRV\",rcode=\"noerror\",ecs=\"yes\"} 2",
        "nexrtc_controller_dns_queries_total{type=\"A\",rcode=\"nxdomain\",ecs=\"no\"} 3",
        "nexrtc_controller_dns_queries_total{type=\"A\",rcode=\"refused\",ecs=\"no\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    // dig, over TCP with a client subnet; and a zone transfer, refused.
    let port = server.local_addr().port().to_string();
    let dig = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=3", "+tries=1"])
            .args(args)
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tokyo = dig(&[
        "+tcp",
        "+short",
        "+subnet=203.0.113.10/24",
        "turn.example.org",
        "A",
    ]);
    assert_eq!(tokyo.lines().next(), Some("198.18.3.1"), "{tokyo}");
    let axfr = dig(&["example.org", "AXFR"]);
    assert!(axfr.contains("Transfer failed"), "{axfr}");

    // Malformed datagrams are dropped; the server answers on.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    for bytes in [
        &b"\x00"[..],
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0u8; 700],
    ] {
        junk.send_to(bytes, server.local_addr()).expect("send");
    }
    let again = dig(&["+short", "n1.us-east.turn.example.org", "A"]);
    assert_eq!(again.trim(), "198.18.2.1");
    // Counted: the two that cannot be read (the zeroes are a header asking nothing,
    // answered FORMERR).
    let metrics = h.state.metrics.render();
    assert!(
        metrics.contains("nexrtc_controller_dns_malformed_total 2"),
        "{metrics}"
    );
    server.shutdown().await;
}

/// Response rate limiting: a burst of one question from one client network gets about a
/// second's worth of answers; past it every second response is truncated (the client
/// may retry over TCP) and the rest dropped. TCP and other questions are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_rate_limited_over_udp_only() {
    if !clients_available() {
        return;
    }
    let h = Harness::start().await;
    h.register_fleet().await;
    let server = dns_limited(&h, 10.0).await;
    let mut tcp = query("turn.example.org.", "A", None);
    tcp["tcp"] = json!(true);
    let answers = ask(
        &server,
        json!([
            {"name": "turn.example.org.", "type": "A", "burst": 200},
            tcp,
            query("eu-west.turn.example.org.", "A", None),
        ]),
    )
    .await;
    let b = &answers[0];
    let count = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k} in {b}"));
    // The bucket's 10, and the few refilled while the burst arrives.
    assert!((10..=25).contains(&count("whole")), "{b}");
    assert!((85..=95).contains(&count("truncated")), "{b}");
    assert!((85..=95).contains(&count("missing")), "{b}");
    // TCP is not limited (it cannot be spoofed); another question has its own budget.
    assert_eq!(data(&answers[1]["answer"], "A").len(), 2, "{}", answers[1]);
    assert_eq!(data(&answers[2]["answer"], "A"), ["198.18.0.1"]);
    let metrics = h.state.metrics.render();
    let counted = |action: &str| -> u64 {
        let prefix = format!("nexrtc_controller_dns_rate_limited_total{{action=\"{action}\"}} ");
        (metrics.lines())
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    assert_eq!(counted("slipped"), count("truncated"), "{metrics}");
    assert_eq!(counted("dropped"), count("missing"), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_region_leaves_the_answers_and_the_serial_moves() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    let frankfurt = Some("198.51.100.10/24");
    // Asked again and again, so every serving thread has the answer kept (answers are
    // kept for a second, for one registry view).
    let again = || std::iter::repeat_n(query("turn.example.org.", "A", frankfurt), 12);
    let before = ask(
        &server,
        json!([query("example.org.", "SOA", None)]
            .into_iter()
            .chain(again())
            .collect::<Vec<_>>()),
    )
    .await;
    for answer in &before[1..] {
        assert_eq!(data(&answer["answer"], "A")[0], "198.18.1.1");
    }
    let r = h
        .call(Req::post("/v1/admin/relays/eu-central/drain").bearer(ADMIN_KEY))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = ask(
        &server,
        json!([
            query("turn.example.org.", "A", frankfurt),
            query("example.org.", "SOA", None),
            query("n1.eu-central.turn.example.org.", "A", None),
            query("eu-central.turn.example.org.", "A", None),
        ]
        .into_iter()
        .chain(again())
        .collect::<Vec<_>>()),
    )
    .await;
    let now = data(&after[0]["answer"], "A");
    assert!(!now.contains(&"198.18.1.1".to_owned()), "{now:?}");
    for answer in &after[4..] {
        assert_eq!(data(&answer["answer"], "A"), now, "{answer}");
    }
    let ice = h.ice(json!({"client_ip": FRANKFURT_IP}), PROXY_IP).await;
    assert_eq!(now, ice_hosts(&ice.json));
    let serial = |soa: &Value| -> u64 {
        let text = &data(&soa["answer"], "SOA")[0];
        text.split(' ')
            .nth(2)
            .expect("serial")
            .parse()
            .expect("number")
    };
    assert!(
        serial(&after[1]) > serial(&before[0]),
        "{after:?} {before:?}"
    );
    // /readyz names the DNS server and the serial its answers are at.
    let ready = h.call(Req::get("/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let dns_status = &ready.json["dns"];
    assert_eq!(dns_status["listen"], server.local_addr().to_string());
    assert_eq!(dns_status["zone"], "example.org.");
    assert_eq!(dns_status["serial"].as_u64(), Some(serial(&after[1])));
    assert_eq!(after[2]["rcode"], "NXDOMAIN");
    // The region still exists, with no relay to offer: NODATA.
    assert_eq!(after[3]["rcode"], "NOERROR");
    assert!(data(&after[3]["answer"], "A").is_empty());
    server.shutdown().await;
}

/// Every replica serves the zone from its own view of the one store: two replicas give
/// the same answers, serial included, once both have read the same revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_the_same_zone() {
    let Some((h, first)) = fleet().await else {
        return;
    };
    let store: std::sync::Arc<dyn nexrtc_controller::store::Store> =
        std::sync::Arc::new(h.store.clone());
    let other = Harness::over(store, h.store.clone(), options()).await;
    let second = dns(&other).await;
    let questions = json!([
        query("example.org.", "SOA", None),
        query("turn.example.org.", "A", Some("203.0.113.10/32")),
        query(
            "_turns._tcp.turn.example.org.",
            "SRV",
            Some("192.0.2.10/32")
        ),
        query("ap-northeast.turn.example.org.", "A", None),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (a, b) = (
            ask(&first, questions.clone()).await,
            ask(&second, questions.clone()).await,
        );
        if a == b {
            assert_eq!(data(&a[1]["answer"], "A")[0], "198.18.3.1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}\n{b:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    first.shutdown().await;
    second.shutdown().await;
}

/// An answer too large for the client's UDP size is truncated (TC) with what fits, and
/// complete over TCP: a region with 60 relays, asked without EDNS (512 bytes) and with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_are_whole_over_tcp() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    for i in 2..=61 {
        h.register("eu-west", &format!("n{i}"), &format!("198.18.0.{i}"))
            .await;
    }
    let port = server.local_addr().port().to_string();
    let dig = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=3", "+tries=1", "+ignore"])
            .args(args)
            .args(["eu-west.turn.example.org", "A"])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = dig(&["+noedns"]);
    assert!(plain.contains(" tc"), "{plain}");
    let count = |text: &str| text.lines().filter(|l| l.contains("\tA\t")).count();
    assert!(count(&plain) < 61, "{plain}");
    let tcp = dig(&["+tcp"]);
    assert!(!tcp.contains(" tc"), "{tcp}");
    assert_eq!(count(&tcp), 61, "{tcp}");
    server.shutdown().await;
}

/// IPv6: a relay with an IPv6 address answers AAAA (and not A), and a client subnet of
/// IPv6 is located and scoped by its /48 (the client-probe network; the synthetic
/// database's 2001:db8::/32 is coarser).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_relays_and_ipv6_clients() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    let located = ask(
        &server,
        json!([query("turn.example.org.", "A", Some("2001:db8:1:2::/56"))]),
    )
    .await;
    let ice = h
        .ice(json!({"client_ip": "2001:db8:1:2::1"}), PROXY_IP)
        .await;
    assert_eq!(data(&located[0]["answer"], "A"), ice_hosts(&ice.json));
    assert_eq!(located[0]["ecs"]["scope"], 48, "{}", located[0]);
    h.register("us-east", "v6", "2001:db8:77::5").await;
    let answers = ask(
        &server,
        json!([
            query("v6.us-east.turn.example.org.", "AAAA", None),
            query("v6.us-east.turn.example.org.", "A", None),
        ]),
    )
    .await;
    assert_eq!(data(&answers[0]["answer"], "AAAA"), ["2001:db8:77::5"]);
    assert_eq!(answers[1]["rcode"], "NOERROR");
    assert!(
        data(&answers[1]["answer"], "A").is_empty(),
        "{}",
        answers[1]
    );
    server.shutdown().await;
}

/// A busy resolver: one address asks the same name for many client networks (ECS), as a
/// public resolver does for its users' /24s, each once per TTL. 300 subnets at once from
/// one source are 300 different answers, not a flood of one: all answered whole. The
/// source's total stays bounded (50 times the per-answer rate), so spoofed queries that
/// vary the subnet cannot lift the cap on what reaches a victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_asking_for_many_client_networks_is_not_limited_as_one() {
    if !clients_available() {
        return;
    }
    let h = Harness::start().await;
    h.register_fleet().await;
    let server = dns_limited(&h, 10.0).await;
    let subnets = |n: usize, first: usize| -> Value {
        json!({"name": "turn.example.org.", "type": "A", "burst": n,
               "subnets": (first..first + n).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect::<Vec<_>>()})
    };
    let answers = ask(&server, json!([subnets(300, 0)])).await;
    assert_eq!(answers[0]["whole"], 300, "{}", answers[0]);
    // 1,000 more distinct subnets at once: past the source's total of 500 per second.
    let answers = ask(&server, json!([subnets(1000, 300)])).await;
    // The 500 of the bucket plus what refills while the burst is served (500 a second:
    // a loaded machine may take most of a second), and far from all 1,000.
    let whole = answers[0]["whole"].as_u64().expect("whole");
    assert!((150..=900).contains(&whole), "{}", answers[0]);
    server.shutdown().await;
}

/// DNSSEC, signed online: BIND's `delv`, with the zone's DNSKEY as its trust anchor, fully
/// validates the nearest relays, SRV, a relay's name, the SOA and NS, and the compact
/// denials (RFC 9824) of a name that does not exist and of a type a name does not have;
/// with another key as the anchor nothing validates. dnspython verifies every RRset's
/// signature in answers ranked per client subnet (ECS), and sees no signature without
/// the DO bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zone_validates() {
    if !clients_available() || tools::require_tool("delv", "bind9-dnsutils").is_none() {
        return;
    }
    let h = Harness::start().await;
    h.register_fleet().await;
    let dir = tempfile::tempdir().expect("dir");
    let pem = |name: &str| {
        let path = dir.path().join(name);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        std::fs::write(&path, key.serialize_pem()).expect("write");
        path
    };
    let signing = Signing::load(&pem("zone.pem"), &zone().apex).expect("zone key");
    let ds = signing.ds().to_owned();
    let settings = DnsSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        zone: zone(),
        rate_limit: 0.0,
        dnssec: Some(std::sync::Arc::new(signing)),
    };
    let server = DnsServer::start(settings, h.state.clone())
        .await
        .expect("DNS server");
    let port = server.local_addr().port().to_string();
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(["@127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect(program);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text + &String::from_utf8_lossy(&out.stderr)
    };

    // The trust anchor: the DNSKEY the server serves, which is the key it was given.
    let dnskey = run("dig", &["+short", "+time=3", "example.org", "DNSKEY"]);
    let anchor = |dnskey: &str, file: &str| {
        let mut fields = dnskey.split_whitespace();
        let head: Vec<&str> = fields.by_ref().take(3).collect();
        assert_eq!(head, ["257", "3", "13"], "{dnskey}");
        let key: String = fields.collect();
        let path = dir.path().join(file);
        let text =
            format!("trust-anchors {{\n  example.org. static-key 257 3 13 \"{key}\";\n}};\n");
        std::fs::write(&path, text).expect("anchor");
        path.to_string_lossy().into_owned()
    };
    let good = anchor(&dnskey, "good.conf");
    let ready = h.call(Req::get("/readyz")).await;
    assert_eq!(ready.json["dns"]["dnssec_ds"], ds.as_str());
    assert!(ds.starts_with("example.org. IN DS "), "{ds}");

    let delv = |anchor: &str, name: &str, rtype: &str| {
        run(
            "delv",
            &["-a", anchor, "+root=example.org", "+tcp", name, rtype],
        )
    };
    for (name, rtype, expect) in [
        ("turn.example.org", "A", "IN\tA\t198.18."),
        ("_turns._tcp.turn.example.org", "SRV", " 5349 n1."),
        ("n1.us-east.turn.example.org", "A", "198.18.2.1"),
        ("example.org", "SOA", "hostmaster.example.org."),
        ("example.org", "NS", "ns2.example.org."),
    ] {
        let out = delv(&good, name, rtype);
        assert!(out.contains("; fully validated"), "{name} {rtype}: {out}");
        assert!(out.contains(expect), "{name} {rtype}: {out}");
    }
    for (name, rtype) in [
        ("nope.turn.example.org", "A"),
        ("n1.us-east.turn.example.org", "AAAA"),
        ("example.org", "A"),
    ] {
        let out = delv(&good, name, rtype);
        assert!(
            out.contains("; negative response, fully validated"),
            "{name} {rtype}: {out}"
        );
    }
    // Another key as the anchor: nothing validates.
    let other = Signing::load(&pem("other.pem"), &zone().apex).expect("key");
    let other_key = other.dnskey(30).data.to_string();
    let bad = anchor(&other_key, "bad.conf");
    let out = delv(&bad, "turn.example.org", "A");
    assert!(!out.contains("fully validated"), "{out}");
    assert!(out.contains("resolution failed"), "{out}");

    // dnspython, with client subnets: every RRset signed, the signature verifying.
    let signed = |name: &str, rtype: &str, subnet: Option<&str>| {
        let mut q = query(name, rtype, subnet);
        q["dnssec"] = json!(true);
        q
    };
    let answers = ask(
        &server,
        json!([
            signed("turn.example.org.", "A", Some("198.51.100.10/24")),
            signed("turn.example.org.", "A", Some("203.0.113.10/24")),
            signed(
                "_turn._udp.turn.example.org.",
                "SRV",
                Some("198.51.100.10/24")
            ),
            signed("nope.turn.example.org.", "A", None),
            signed("n1.us-east.turn.example.org.", "AAAA", None),
            query("turn.example.org.", "A", Some("198.51.100.10/24")),
        ]),
    )
    .await;
    let hosts = |a: &Value| data(&a["answer"], "A");
    assert_eq!(hosts(&answers[0])[0], "198.18.1.1", "{}", answers[0]);
    assert_eq!(hosts(&answers[1])[0], "198.18.3.1", "{}", answers[1]);
    for a in &answers[..5] {
        assert_eq!(a["unsigned"], json!([]), "{a}");
        assert!(!a["signed"].as_array().expect("signed").is_empty(), "{a}");
    }
    assert_eq!(answers[0]["ecs"]["scope"], 25, "{}", answers[0]);
    // Compact denial: NOERROR, an NSEC at the name to its immediate successor (NXNAME,
    // type 128, is TYPE128 to dnspython).
    let nsec = |a: &Value| data(&a["authority"], "NSEC");
    assert_eq!(answers[3]["rcode"], "NOERROR");
    assert_eq!(
        nsec(&answers[3]),
        ["\\000.nope.turn.example.org. RRSIG NSEC TYPE128"],
        "{}",
        answers[3]
    );
    assert_eq!(
        nsec(&answers[4]),
        ["\\000.n1.us-east.turn.example.org. A RRSIG NSEC"],
        "{}",
        answers[4]
    );
    // No DO bit, no signatures.
    let plain = &answers[5];
    assert!(data(&plain["answer"], "RRSIG").is_empty(), "{plain}");
    assert_eq!(hosts(plain), hosts(&answers[0]));
    server.shutdown().await;
}

/// Bound to every address (0.0.0.0), the server answers from the address each query was
/// sent to: dig asks 127.0.0.2 (the kernel would answer a loopback client from 127.0.0.1,
/// which dig refuses as "reply from unexpected source"), over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_leave_from_the_address_asked_when_bound_to_all() {
    if !clients_available() {
        return;
    }
    let h = Harness::start().await;
    h.register_fleet().await;
    let settings = DnsSettings {
        listen: "0.0.0.0:0".parse().expect("addr"),
        zone: zone(),
        rate_limit: 0.0,
        dnssec: None,
    };
    let server = DnsServer::start(settings, h.state.clone())
        .await
        .expect("DNS server");
    let port = server.local_addr().port().to_string();
    for address in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let out = std::process::Command::new("dig")
            .args([&format!("@{address}"), "-p", &port])
            .args(["+time=2", "+tries=1", "+notcp"])
            .args(["n1.eu-west.turn.example.org", "A"])
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("unexpected source"), "{address}: {text}");
        assert!(text.contains("status: NOERROR"), "{address}: {text}");
        assert!(text.contains("198.18.0.1"), "{address}: {text}");
    }
    server.shutdown().await;
}

/// Resolvers randomize the case of the names they ask (0x20) and drop answers whose case
/// differs: asked again and again in ever other case, every answer (kept or made afresh)
/// names the relay in exactly the asker's case, with the same addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_the_askers_case_of_the_name() {
    let Some((h, server)) = fleet().await else {
        return;
    };
    let frankfurt = Some("198.51.100.10/24");
    let cases = [
        "turn.example.org.",
        "TuRn.ExAmPlE.oRg.",
        "tURN.eXAMPLE.ORG.",
    ];
    let queries: Vec<Value> = (0..8)
        .flat_map(|_| cases.iter().map(|n| query(n, "A", frankfurt)))
        .collect();
    let answers = ask(&server, json!(queries)).await;
    let expected = data(&answers[0]["answer"], "A");
    assert_eq!(expected.len(), 2, "{}", answers[0]);
    for (i, a) in answers.iter().enumerate() {
        let asked = cases[i % cases.len()];
        for record in a["answer"].as_array().expect("answer") {
            assert_eq!(record[0], asked, "answer {i}: {a}");
        }
        assert_eq!(data(&a["answer"], "A"), expected, "answer {i}: {a}");
    }
    drop(h);
    server.shutdown().await;
}
