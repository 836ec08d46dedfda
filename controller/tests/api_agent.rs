//! The edge agent's channels: the event stream (secrets, revocations, drain, ping), probe
//! reports, probe targets in the registration answer, and the leave of a relay that stops.

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::body::{Body, BodyDataStream};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use nexrtc_controller::store::Store;
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// Reads server-sent events from a response body.
struct Events {
    body: BodyDataStream,
    buf: String,
}

impl Events {
    async fn open(h: &Harness, query: &str, key: &str) -> Result<Events, (StatusCode, String)> {
        let mut req = Request::get(format!("/v1/relays/events{query}"))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(
            "127.0.0.1:1".parse::<std::net::SocketAddr>().expect("addr"),
        ));
        let response = h.app.clone().oneshot(req).await.expect("infallible");
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .expect("body");
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .expect("content type");
        assert_eq!(content_type, "text/event-stream");
        Ok(Events {
            body: response.into_body().into_data_stream(),
            buf: String::new(),
        })
    }

    /// The next event (name, data); `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() && name == "message" {
                    continue; // a comment
                }
                return Some((name, serde_json::from_str(&data).expect("json data")));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.body.next())
                .await
                .expect("an event in time")?
                .expect("body chunk");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event that is not a `ping`.
    async fn next_change(&mut self) -> (String, Value) {
        loop {
            let (name, data) = self.next().await.expect("stream open");
            if name != "ping" {
                return (name, data);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn event_stream_sends_full_state_then_changes() {
    let h = Harness::start().await;
    h.register("eu-west", "n1", "198.18.0.1").await;
    h.register("eu-west", "n2", "198.18.0.2").await;
    let mut events = Events::open(&h, "?region=eu-west&node=n1", NODE_KEY)
        .await
        .expect("open");

    let (name, data) = events.next_change().await;
    assert_eq!(name, "secrets");
    assert_eq!(data["tenants"][0]["name"], "acme");
    assert_eq!(data["tenants"][0]["secrets"], json!([SECRET]));
    let (name, data) = events.next_change().await;
    assert_eq!(
        (name.as_str(), &data),
        ("revocations", &json!({"revoked": []}))
    );

    // Quiet: a ping within the interval.
    let (name, _) = events.next().await.expect("ping");
    assert_eq!(name, "ping");

    let admin = |m: &'static str, p: &str| Req::new(m, p).bearer(ADMIN_KEY);
    let r = h
        .call(admin("POST", "/v1/admin/tenants/acme/secrets"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (name, data) = events.next_change().await;
    assert_eq!(name, "secrets");
    assert_eq!(
        data["tenants"][0]["secrets"]
            .as_array()
            .expect("list")
            .len(),
        2
    );

    let username = format!("{}:acme:alice", NOW + 600);
    let r = h
        .call(admin("POST", "/v1/admin/revocations").json(json!({"username": username})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (name, data) = events.next_change().await;
    assert_eq!(name, "revocations");
    assert_eq!(data["revoked"][0]["username"], username.as_str());
    assert_eq!(data["revoked"][0]["until"], NOW + 600);

    let r = h
        .call(admin("POST", "/v1/admin/relays/eu-west/n1/drain").json(json!({"deadline_secs": 0})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .call(
            admin("POST", "/v1/admin/relays/eu-west/n1/drain").json(json!({"deadline_secs": 600})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (name, data) = events.next_change().await;
    assert_eq!(name, "drain");
    assert_eq!(data["alternate"], "198.18.0.2:3478");
    let deadline = data["deadline"].as_u64().expect("a deadline");
    assert!(
        (NOW + 600..NOW + 700).contains(&deadline),
        "deadline {deadline} is not 600 s after the order"
    );

    // A reconnect gets the full state again, drain included.
    let mut again = Events::open(&h, "?region=eu-west&node=n1", NODE_KEY)
        .await
        .expect("open");
    let names: Vec<String> = [
        again.next_change().await.0,
        again.next_change().await.0,
        again.next_change().await.0,
    ]
    .into();
    assert_eq!(names, ["secrets", "revocations", "drain"]);

    // Shutdown ends the streams (so a graceful shutdown does not wait for them).
    h.state.close();
    while let Some((name, _)) = events.next().await {
        assert_eq!(name, "ping", "nothing but pings before the end");
    }
}

#[tokio::test(start_paused = true)]
async fn event_stream_needs_a_node_key_and_a_relay_name() {
    let h = Harness::start().await;
    let err = Events::open(&h, "?region=eu-west&node=n1", ICE_KEY)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.0, StatusCode::FORBIDDEN, "{}", err.1);
    let err = Events::open(&h, "?region=eu-west", NODE_KEY)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.0, StatusCode::BAD_REQUEST, "{}", err.1);
    assert!(err.1.contains("invalid_request"));
}

#[tokio::test(start_paused = true)]
async fn probe_reports_are_stored_per_region_pair_at_a_bounded_rate() {
    let h = Harness::start().await;
    let report = json!({"from_region": "eu-west", "from_node": "n1", "results": [
        {"to_region": "eu-central", "to_node": "n1", "rtt_ms": 10.0, "loss": 0.0, "samples": 5},
        {"to_region": "eu-central", "to_node": "n2", "rtt_ms": 14.0, "loss": 0.2, "samples": 5},
        {"to_region": "us-east", "to_node": "n1", "rtt_ms": 80.0, "loss": 0.0, "samples": 5},
        {"to_region": "ap-northeast", "to_node": "n1", "rtt_ms": null, "loss": 1.0, "samples": 5},
        {"to_region": "eu-west", "to_node": "n2", "rtt_ms": 1.0, "loss": 0.0, "samples": 5}
    ]});
    let post = || {
        Req::post("/v1/relays/probes")
            .bearer(NODE_KEY)
            .json(report.clone())
    };
    assert_eq!(h.call(post()).await.status, StatusCode::NO_CONTENT);
    let read = |key: &'static str| {
        let store = h.store.clone();
        async move {
            let kv = store.get(key).await.expect("get")?;
            Some(serde_json::from_slice::<Value>(&kv.value).expect("json"))
        }
    };
    let eu = read("probes/eu-west/eu-central").await.expect("stored");
    assert_eq!(eu["rtt_ms"], 14.0);
    assert!((eu["loss"].as_f64().expect("loss") - 0.1).abs() < 1e-9);
    assert_eq!(eu["measured_at"], NOW);
    assert_eq!(
        read("probes/eu-west/us-east").await.expect("stored")["rtt_ms"],
        80.0
    );
    assert_eq!(
        read("probes/eu-west/ap-northeast").await.expect("stored")["loss"],
        1.0
    );
    assert!(
        read("probes/eu-west/eu-west").await.is_none(),
        "same-region probes are not stored"
    );

    // Wait for the snapshot, then: a second report within the refresh interval writes nothing.
    let probes = &h.state.snapshots.probes;
    tokio::time::timeout(
        Duration::from_secs(5),
        probes.wait_for(|s| s.entries.len() == 3),
    )
    .await
    .expect("snapshot");
    let before = h.store.revision();
    assert_eq!(h.call(post()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.store.revision(), before);
    tokio::time::advance(Duration::from_secs(301)).await;
    assert_eq!(h.call(post()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.store.revision(), before + 3);

    let bad = json!({"from_region": "EU/W", "from_node": "n1", "results": []});
    let r = h
        .call(Req::post("/v1/relays/probes").bearer(NODE_KEY).json(bad))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test(start_paused = true)]
async fn registration_lists_probe_targets_in_other_regions() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h
        .call(
            Req::post("/v1/relays/register")
                .bearer(NODE_KEY)
                .json(registration("eu-west", "n2", "198.18.0.2")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let targets = r.json["probe_targets"].as_array().expect("targets");
    let mut got: Vec<(String, String)> = targets
        .iter()
        .map(|t| {
            (
                t["region"].as_str().expect("r").into(),
                t["stun"].as_str().expect("s").into(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("ap-northeast".to_owned(), "198.18.3.1:3478".to_owned()),
            ("eu-central".to_owned(), "198.18.1.1:3478".to_owned()),
            ("us-east".to_owned(), "198.18.2.1:3478".to_owned()),
        ]
    );
}

/// A file of the protocol's golden JSON (`wire/tests/golden/`).
fn golden(name: &str) -> Value {
    let path = format!("{}/../wire/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `actual` has the shape of `golden`: the same keys at every level, values of the same
/// JSON type (`null` stands for any), arrays' elements shaped like the golden's first.
fn assert_same_shape(at: &str, golden: &Value, actual: &Value) {
    match (golden, actual) {
        (Value::Object(g), Value::Object(a)) => {
            let (gk, ak): (Vec<_>, Vec<_>) = (g.keys().collect(), a.keys().collect());
            assert_eq!(gk, ak, "keys of {at}");
            for (k, v) in g {
                assert_same_shape(&format!("{at}.{k}"), v, &a[k]);
            }
        }
        (Value::Array(g), Value::Array(a)) => {
            assert!(!a.is_empty(), "{at} is empty: nothing to compare");
            for (i, v) in a.iter().enumerate() {
                assert_same_shape(&format!("{at}[{i}]"), &g[0], v);
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => panic!("{at}: {actual} is not shaped like {golden}"),
    }
}

/// The golden requests of `wire/tests/golden/` go to the real routes, and every answer and
/// event has the golden shape, and reads into the shared type and back unchanged: the
/// controller and the agent (which sends and reads the same files) cannot drift apart.
#[tokio::test(start_paused = true)]
async fn golden_protocol_json_goes_through_the_real_routes() {
    use nexrtc_wire::{routes, Event, Registered};

    let h = Harness::start().await;
    // Something in every list of the answers: a probe target, a revoked username, and a
    // second relay of the region (the drain order's alternate).
    h.register("us-east", "relay-7", "198.18.1.7").await;
    h.register("eu-west", "relay-2", "198.18.0.2").await;
    let admin = |m: &'static str, p: &str| Req::new(m, p).bearer(ADMIN_KEY);
    let username = format!("{}:acme:eve", NOW + 600);
    let r = h
        .call(admin("POST", "/v1/admin/revocations").json(json!({"username": username})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let r = h
        .call(
            Req::post(routes::REGISTER)
                .bearer(NODE_KEY)
                .json(golden("registration.json")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_same_shape("registered", &golden("registered.json"), &r.json);
    let typed: Registered = serde_json::from_value(r.json.clone()).expect("Registered");
    assert_eq!(serde_json::to_value(&typed).expect("json"), r.json);
    let lease = r.json["lease"].clone();

    let mut beat = golden("heartbeat.json");
    beat["lease"] = lease.clone();
    let r = h.node(routes::HEARTBEAT, beat.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let answer = golden("heartbeat_answer.json");
    assert_same_shape("heartbeat answer", &answer, &r.json);
    let typed: nexrtc_wire::HeartbeatAnswer =
        serde_json::from_value(r.json.clone()).expect("answer");
    assert_eq!(serde_json::to_value(&typed).expect("json"), r.json);

    // The previous release's form: an integer lease, no load or state.
    let mut old = golden("heartbeat_integer_lease.json");
    let id: i64 = lease
        .as_str()
        .expect("a string lease")
        .parse()
        .expect("decimal");
    old["lease"] = json!(id);
    let r = h.node(routes::HEARTBEAT, old).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    beat["lease"] = json!((id + 1000).to_string());
    let r = h.node(routes::HEARTBEAT, beat).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.json, golden("error_lease_expired.json"));

    let r = h
        .call(
            Req::post(routes::PROBES)
                .bearer(NODE_KEY)
                .json(golden("probe_report.json")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // The events: the golden heartbeat said `draining`, so the stream's state has all three.
    let r = h
        .call(
            admin("POST", "/v1/admin/relays/eu-west/relay-1/drain")
                .json(json!({"deadline_secs": 600})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut events = Events::open(&h, "?region=eu-west&node=relay-1", NODE_KEY)
        .await
        .expect("open");
    for (name, file) in [
        (Event::SECRETS, "event_secrets.json"),
        (Event::REVOCATIONS, "event_revocations.json"),
        (Event::DRAIN, "event_drain.json"),
    ] {
        let (got, data) = events.next_change().await;
        assert_eq!(got, name);
        assert_same_shape(name, &golden(file), &data);
        let event = Event::read(name, &data).expect("a known event");
        assert_eq!(serde_json::to_value(&event).expect("json"), data);
    }
    let (name, data) = events.next().await.expect("ping");
    assert_eq!(name, Event::PING);
    assert_eq!(data, golden("event_ping.json"));
    drop(events);

    // The relay stops: the golden leave (with the lease it holds) removes it.
    let mut leave = golden("leave.json");
    leave["lease"] = lease;
    let r = h.node(routes::LEAVE, leave.clone()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(!h.state.view().relays.contains_key("eu-west/relay-1"));
    // Said twice (tried on another replica): the lease is gone, in the golden error shape.
    let r = h.node(routes::LEAVE, leave).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.json, golden("error_lease_expired.json"));
}

fn leave(region: &str, node: &str, lease: &str) -> Value {
    json!({"region": region, "node": node, "lease": lease})
}

/// `eu-central/n1` (198.18.1.1) is in the ICE answer a Frankfurt client gets.
async fn in_ice_answer(h: &Harness, host: &str) -> bool {
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.text.contains(host)
}

#[tokio::test(start_paused = true)]
async fn a_leaving_relay_is_removed_from_the_registry_and_the_ice_answers_at_once() {
    let h = Harness::start().await;
    h.register("eu-west", "n1", "198.18.0.1").await;
    let lease = h.register("eu-central", "n1", "198.18.1.1").await;
    assert!(in_ice_answer(&h, "198.18.1.1").await);

    let r = h
        .node(
            nexrtc_wire::routes::LEAVE,
            leave("eu-central", "n1", &lease),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty(), "{}", r.text);
    // Gone now (the harness's leases last 60 s and it never misses heartbeats): from this
    // replica's view, the admin list, the store, and the next ICE answer.
    assert!(!h.state.view().relays.contains_key("eu-central/n1"));
    let list = h.call(Req::get("/v1/admin/relays").bearer(ADMIN_KEY)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(!list.text.contains("198.18.1.1"), "{}", list.text);
    assert!(list.text.contains("198.18.0.1"), "{}", list.text);
    let stored = h
        .store
        .get(&nexrtc_controller::model::RelayRecord::key(
            "eu-central",
            "n1",
        ))
        .await
        .expect("store");
    assert!(stored.is_none(), "{stored:?}");
    assert!(!in_ice_answer(&h, "198.18.1.1").await);
    // Its lease ended with it: a late heartbeat is told to register again.
    let beat = json!({"region": "eu-central", "node": "n1", "lease": lease});
    let r = h.node(nexrtc_wire::routes::HEARTBEAT, beat).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.code(), "lease_expired");
}

#[tokio::test(start_paused = true)]
async fn a_leave_with_another_lease_removes_nothing() {
    let h = Harness::start().await;
    let old = h.register("eu-central", "n1", "198.18.1.1").await;
    // The node restarted and registered again: the record moved to a newer lease.
    let new = h.register("eu-central", "n1", "198.18.1.1").await;
    assert_ne!(old, new);
    let unknown: i64 = new.parse::<i64>().expect("decimal") + 1000;
    for (stale, why) in [
        (old.clone(), "an older registration's"),
        (unknown.to_string(), "an unknown"),
    ] {
        let r = h
            .node(
                nexrtc_wire::routes::LEAVE,
                leave("eu-central", "n1", &stale),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{why} lease: {}", r.text);
        assert_eq!(r.code(), nexrtc_wire::LEASE_EXPIRED, "{why} lease");
        assert!(
            h.state.view().relays.contains_key("eu-central/n1"),
            "{why} lease removed the relay"
        );
        assert!(in_ice_answer(&h, "198.18.1.1").await, "{why} lease");
    }
    // The newer lease still renews.
    let beat = json!({"region": "eu-central", "node": "n1", "lease": new});
    let r = h.node(nexrtc_wire::routes::HEARTBEAT, beat).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // And a leave of a relay that never registered removes nothing either.
    let r = h
        .node(nexrtc_wire::routes::LEAVE, leave("eu-west", "nobody", &new))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(h.state.view().relays.contains_key("eu-central/n1"));
}

#[tokio::test(start_paused = true)]
async fn a_leave_needs_a_node_key_and_a_well_formed_body() {
    let h = Harness::start().await;
    let lease = h.register("eu-central", "n1", "198.18.1.1").await;
    let body = leave("eu-central", "n1", &lease);
    let r = h
        .call(Req::post(nexrtc_wire::routes::LEAVE).json(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    assert!(!r.code().is_empty(), "{}", r.text);
    let r = h
        .call(
            Req::post(nexrtc_wire::routes::LEAVE)
                .bearer(ICE_KEY)
                .json(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let mut extra = body.clone();
    extra["surprise"] = json!(true);
    let r = h.node(nexrtc_wire::routes::LEAVE, extra).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(h.state.view().relays.contains_key("eu-central/n1"));
}
