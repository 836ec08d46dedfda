//! `POST /v1/ice-servers`: answer shape, credentials the relay accepts, geo-aware selection,
//! client address handling, and relays leaving answers (dead, draining).

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::clock::rfc3339;
use nexrtc_controller::store::{LeaseId, Store};
use nexrtc_controller::Options;
use serde_json::{json, Value};

fn regions(r: &Response) -> Vec<String> {
    let list = r.json["regions"].as_array().expect("regions");
    list.iter()
        .map(|v| v.as_str().expect("str").to_owned())
        .collect()
}

fn urls(server: &Value) -> Vec<String> {
    let list = server["urls"].as_array().expect("urls");
    list.iter()
        .map(|v| v.as_str().expect("str").to_owned())
        .collect()
}

/// Waits until relay `id` is (or is not) in this replica's view.
async fn wait_relay(h: &Harness, id: &str, present: bool) {
    let wait = h
        .state
        .snapshots
        .wait_view(|v| v.relays.contains_key(id) == present);
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("view follows the store");
}

#[tokio::test(start_paused = true)]
async fn answer_is_ready_for_rtcpeerconnection_and_the_relay_accepts_it() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h.ice(json!({"user": "alice"}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // Frankfurt: eu-central (its own city) first, then eu-west for failover.
    assert_eq!(regions(&r), ["eu-central", "eu-west"]);
    let expiry = NOW + 3600;
    let username = format!("{expiry}:acme:alice");
    assert_eq!(r.json["username"], username);
    assert_eq!(r.json["ttl"], 3600);
    assert_eq!(r.json["expires_at"], rfc3339(expiry));
    let password = turn_core::auth::rest_password(SECRET.as_bytes(), &username);
    assert_eq!(r.json["password"], password);

    let servers = r.json["iceServers"].as_array().expect("iceServers");
    assert_eq!(
        servers.len(),
        3,
        "one STUN entry and one TURN entry per chosen relay"
    );
    assert_eq!(urls(&servers[0]), ["stun:198.18.1.1:3478"]);
    assert!(servers[0].get("username").is_none());
    assert_eq!(
        urls(&servers[1]),
        [
            "turn:198.18.1.1:3478?transport=udp",
            "turn:198.18.1.1:3478?transport=tcp",
            "turns:198.18.1.1:5349?transport=tcp",
        ]
    );
    assert_eq!(urls(&servers[2])[0], "turn:198.18.0.1:3478?transport=udp");
    for s in &servers[1..] {
        assert_eq!(s["username"], username);
        assert_eq!(s["credential"], password);
    }
    let uris = r.json["uris"].as_array().expect("uris");
    assert_eq!(uris.len(), 6);

    // The relay's own parser reads the username as tenant acme, user alice.
    let mut creds = turn_core::auth::Credentials::new();
    creds
        .insert_tenant("acme", vec![SECRET.as_bytes().to_vec()])
        .expect("tenant");
    let parsed = creds.parse_username(&username).expect("parses");
    assert_eq!(
        (parsed.expiry, parsed.tenant, parsed.user),
        (expiry, "acme", "alice")
    );
}

#[tokio::test(start_paused = true)]
async fn default_user_is_random_and_ttl_is_honoured() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let a = h.ice(json!({"ttl": 60}), FRANKFURT_IP).await;
    let b = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(a.json["ttl"], 60);
    let (ua, ub) = (
        a.json["username"].as_str().expect("u"),
        b.json["username"].as_str().expect("u"),
    );
    assert!(ua.starts_with(&format!("{}:acme:", NOW + 60)), "{ua}");
    assert_ne!(
        ua.rsplit(':').next(),
        ub.rsplit(':').next(),
        "random users differ"
    );
}

#[tokio::test(start_paused = true)]
async fn quic_relays_are_named_as_connect_udp_templates_in_ranking_order() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        r.json.get("connect_udp").is_none(),
        "no QUIC relay, no field"
    );
    // eu-central's relay registers again, now serving QUIC too; a claim of QUIC without
    // its address is refused.
    let mut reg = registration("eu-central", "n1", "198.18.1.1");
    reg["addresses"]["quic"] = json!({"host": "198.18.1.1", "port": 443});
    reg["transports"] = json!(["udp", "tcp", "tls", "quic"]);
    let ok = h
        .call(Req::post("/v1/relays/register").bearer(NODE_KEY).json(reg))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let mut bad = registration("eu-west", "n2", "198.18.0.2");
    bad["transports"] = json!(["udp", "quic"]);
    let r = h
        .call(Req::post("/v1/relays/register").bearer(NODE_KEY).json(bad))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{}",
        r.text
    );
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(
        r.json["connect_udp"],
        json!(["https://198.18.1.1:443/.well-known/masque/udp/{target_host}/{target_port}/"])
    );
}

#[tokio::test(start_paused = true)]
async fn clients_get_their_nearest_regions() {
    let h = Harness::start().await;
    h.register_fleet().await;
    for (ip, first) in [
        (FRANKFURT_IP, "eu-central"),
        (LONDON_IP, "eu-west"),
        (TOKYO_IP, "ap-northeast"),
        (ASHBURN_IP, "us-east"),
    ] {
        let r = h.ice(json!({}), ip).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let got = regions(&r);
        assert_eq!(got[0], first, "{ip}");
        assert_eq!(got.len(), 2, "a failover region too");
    }
    // An address GeoIP does not know: the default region's neighbourhood (none set: any two).
    let r = h.ice(json!({}), "127.0.0.1").await;
    assert_eq!(regions(&r).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let h = Harness::start().await;
    h.register_fleet().await;
    // Behind our proxy: the right-most untrusted entry (London) is the client; the client
    // may have prepended anything (Tokyo) — ignored.
    let req = Req::post("/v1/ice-servers")
        .bearer(ICE_KEY)
        .peer(PROXY_IP)
        .header("x-forwarded-for", &format!("{TOKYO_IP}, {LONDON_IP}"))
        .json(json!({}));
    assert_eq!(regions(&h.call(req).await)[0], "eu-west");

    // Forged by a client connecting directly from Tokyo: ignored.
    let req = Req::post("/v1/ice-servers")
        .bearer(ICE_KEY)
        .peer(TOKYO_IP)
        .header("x-forwarded-for", LONDON_IP)
        .json(json!({}));
    assert_eq!(regions(&h.call(req).await)[0], "ap-northeast");
}

#[tokio::test(start_paused = true)]
async fn server_side_callers_pass_client_ip_with_the_scope() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h.ice(json!({"client_ip": TOKYO_IP}), FRANKFURT_IP).await;
    assert_eq!(regions(&r)[0], "ap-northeast");

    // A key without the client_ip scope may not.
    let k = h
        .call(
            Req::post("/v1/admin/keys")
                .bearer(ADMIN_KEY)
                .json(json!({"tenant": "acme", "scopes": ["ice"]})),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{}", k.text);
    let key = k.json["key"].as_str().expect("key");
    let req = Req::post("/v1/ice-servers")
        .bearer(key)
        .peer(FRANKFURT_IP)
        .json(json!({"client_ip": TOKYO_IP}));
    let r = h.call(req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
}

#[tokio::test(start_paused = true)]
async fn region_hint_goes_first() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h.ice(json!({"region": "ap-northeast"}), FRANKFURT_IP).await;
    assert_eq!(regions(&r), ["ap-northeast", "eu-central"]);
}

#[tokio::test(start_paused = true)]
async fn revoked_lease_leaves_the_next_answer() {
    let h = Harness::start().await;
    h.register("eu-west", "n1", "198.18.0.1").await;
    let lease = h.register("eu-central", "n1", "198.18.1.1").await;
    assert_eq!(
        regions(&h.ice(json!({}), FRANKFURT_IP).await),
        ["eu-central", "eu-west"]
    );

    h.store
        .revoke_lease(LeaseId(lease.parse().expect("lease")))
        .await
        .expect("revoke");
    wait_relay(&h, "eu-central/n1", false).await;
    assert_eq!(regions(&h.ice(json!({}), FRANKFURT_IP).await), ["eu-west"]);
}

#[tokio::test(start_paused = true)]
async fn relay_without_heartbeats_expires_with_its_lease() {
    let h = Harness::with(Options {
        lease_ttl: Duration::from_secs(5),
        ..options()
    })
    .await;
    let kept = h.register("eu-west", "n1", "198.18.0.1").await;
    h.register("eu-central", "n1", "198.18.1.1").await;
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(2)).await;
        let hb = json!({"region": "eu-west", "node": "n1", "lease": kept, "load": {"allocations": 10, "capacity": 1000}});
        let r = h
            .call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // 6 s without a heartbeat: eu-central's 5 s lease is gone, eu-west's is alive.
    wait_relay(&h, "eu-central/n1", false).await;
    assert_eq!(regions(&h.ice(json!({}), FRANKFURT_IP).await), ["eu-west"]);
}

#[tokio::test(start_paused = true)]
async fn draining_relays_get_no_new_clients() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h
        .call(Req::post("/v1/admin/relays/eu-central/n1/drain").bearer(ADMIN_KEY))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["drained"], json!(["eu-central/n1"]));
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(regions(&r), ["eu-west", "us-east"]);
}

#[tokio::test(start_paused = true)]
async fn no_relay_at_all_is_503() {
    let h = Harness::start().await;
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "no_relays")
    );
}

#[tokio::test(start_paused = true)]
async fn loaded_fleet_degrades_rather_than_fails() {
    let h = Harness::start().await;
    let mut body = registration("eu-west", "n1", "198.18.0.1");
    body["load"] = json!({"allocations": 990, "capacity": 1000});
    let r = h
        .call(Req::post("/v1/relays/register").bearer(NODE_KEY).json(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(regions(&r), ["eu-west"]);
}

#[tokio::test(start_paused = true)]
async fn ipv6_hosts_are_bracketed() {
    let h = Harness::start().await;
    h.register("eu-west", "v6", "2001:db8::7").await;
    let r = h.ice(json!({}), LONDON_IP).await;
    let servers = r.json["iceServers"].as_array().expect("servers");
    assert_eq!(urls(&servers[0]), ["stun:[2001:db8::7]:3478"]);
    assert_eq!(
        urls(&servers[1])[0],
        "turn:[2001:db8::7]:3478?transport=udp"
    );
}

#[tokio::test(start_paused = true)]
async fn explain_needs_an_admin_key() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let req = Req::post("/v1/ice-servers?explain=1")
        .bearer(ICE_KEY)
        .peer(FRANKFURT_IP)
        .json(json!({}));
    let r = h.call(req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );

    let k = h
        .call(
            Req::post("/v1/admin/keys")
                .bearer(ADMIN_KEY)
                .json(json!({"tenant": "acme", "scopes": ["ice", "admin"]})),
        )
        .await;
    let key = k.json["key"].as_str().expect("key");
    let req = Req::post("/v1/ice-servers?explain=1")
        .bearer(key)
        .peer(FRANKFURT_IP)
        .json(json!({}));
    let r = h.call(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let explain = &r.json["explain"];
    assert_eq!(explain["client"]["source"], "peer");
    let ranking = explain["ranking"].as_array().expect("ranking");
    assert_eq!(ranking.len(), 4, "every healthy region is scored");
    assert_eq!(ranking[0]["name"], "eu-central");
    assert!(
        ranking[0]["score"].as_f64().expect("score") < ranking[3]["score"].as_f64().expect("score")
    );
    // Without ?explain the field is absent.
    let r = h
        .call(
            Req::post("/v1/ice-servers")
                .bearer(key)
                .peer(FRANKFURT_IP)
                .json(json!({})),
        )
        .await;
    assert!(r.json.get("explain").is_none());
}
