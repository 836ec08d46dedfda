//! The audit log: every admin mutation that succeeded is recorded with who, what (the
//! resource before and after, secrets redacted), when and from where; refused and
//! unauthenticated calls write nothing; `GET /v1/admin/audit` is admin-only, newest
//! first, with `since` and `limit`; retention keeps the newest entries.

mod api_common;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::credentials::key_hash;
use serde_json::{json, Value};

fn admin(method: &'static str, path: &str) -> Req {
    Req::new(method, path).bearer(ADMIN_KEY).peer("192.0.2.44")
}

async fn audit(h: &Harness, query: &str) -> Vec<Value> {
    let r = h
        .call(Req::get(format!("/v1/admin/audit{query}")).bearer(ADMIN_KEY))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json.as_array().expect("entries").clone()
}

#[tokio::test(start_paused = true)]
async fn admin_mutations_are_recorded_with_who_what_when_and_where() {
    let h = Harness::start().await;
    h.register_fleet().await;
    assert!(
        audit(&h, "").await.is_empty(),
        "registration is not an admin call"
    );

    // A tenant created, a secret added, the region moved, a relay drained, a key made.
    let r = h
        .call(admin("POST", "/v1/admin/tenants").json(json!({"name": "beta"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first_secret = r.json["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_owned();
    tokio::time::advance(std::time::Duration::from_millis(5)).await;
    let r = h
        .call(admin("POST", "/v1/admin/tenants/beta/secrets").json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let new_secret = r.json["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_owned();
    tokio::time::advance(std::time::Duration::from_millis(5)).await;
    let r = h
        .call(admin("PUT", "/v1/admin/regions/eu-west").json(json!({"lat": 53.0, "lon": -6.0})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokio::time::advance(std::time::Duration::from_millis(5)).await;
    let r = h
        .call(admin("POST", "/v1/admin/relays/eu-west/n1/drain"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokio::time::advance(std::time::Duration::from_millis(5)).await;
    let r = h
        .call(admin("POST", "/v1/admin/keys").json(json!({"name": "ci", "scopes": ["admin"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let new_key = r.json["key"].as_str().expect("key").to_owned();

    // Refused or unauthenticated calls write nothing.
    let bad = h
        .call(admin("POST", "/v1/admin/tenants").json(json!({"name": "Not A Name"})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let anon = h
        .call(Req::new("DELETE", "/v1/admin/tenants/beta").peer("203.0.113.9"))
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let ice = h
        .call(Req::new("DELETE", "/v1/admin/tenants/beta").bearer(ICE_KEY))
        .await;
    assert_eq!(ice.status, StatusCode::FORBIDDEN);

    let entries = audit(&h, "").await;
    let paths: Vec<(&str, &str)> = (entries.iter())
        .map(|e| (e["method"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/v1/admin/keys"),
            ("POST", "/v1/admin/relays/eu-west/n1/drain"),
            ("PUT", "/v1/admin/regions/eu-west"),
            ("POST", "/v1/admin/tenants/beta/secrets"),
            ("POST", "/v1/admin/tenants"),
        ],
        "newest first"
    );
    for e in &entries {
        assert_eq!(e["key_id"], key_hash(ADMIN_KEY).as_str(), "{e}");
        assert_eq!(e["from"], "192.0.2.44", "{e}");
        assert!(e["at_ms"].as_u64().unwrap() >= NOW * 1000, "{e}");
        assert!(
            e["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s)),
            "{e}"
        );
    }
    // Before and after: the region's coordinates, the relay's state, the secrets' ids.
    let region = &entries[2];
    assert_eq!(region["before"]["lat"], 53.35, "{region}");
    assert_eq!(region["after"]["lat"], 53.0, "{region}");
    let drain = &entries[1];
    assert_eq!(drain["before"]["state"], "active", "{drain}");
    assert_eq!(drain["after"]["state"], "draining", "{drain}");
    let secrets = &entries[3];
    assert_eq!(
        secrets["before"]["secrets"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        secrets["after"]["secrets"].as_array().map(Vec::len),
        Some(2)
    );
    // No secret, token key or API key in the log.
    let text = serde_json::to_string(&entries).unwrap();
    for secret in [
        first_secret.as_str(),
        new_secret.as_str(),
        new_key.as_str(),
        ADMIN_KEY,
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log: {text}");
    }
    assert!(text.contains("[redacted]"));

    // since and limit; admin only.
    let newest = entries[0]["at_ms"].as_u64().unwrap();
    assert_eq!(audit(&h, "?limit=2").await.len(), 2);
    let later = audit(&h, &format!("?since={}", newest / 1000 + 1)).await;
    assert!(later.is_empty(), "{later:?}");
    let r = h.call(Req::get("/v1/admin/audit").bearer(ICE_KEY)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h.call(admin("GET", "/v1/admin/audit?limit=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_request");
}

#[tokio::test(start_paused = true)]
async fn retention_keeps_the_newest_entries() {
    let h = Harness::start().await;
    for i in 0..12 {
        let r = h
            .call(admin("PUT", "/v1/admin/regions/eu-west").json(json!({"lat": i, "lon": 0})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(audit(&h, "").await.len(), 12);
    let deleted = nexrtc_controller::audit::prune(&h.state, 5, h.state.unix_now_ms())
        .await
        .expect("prune");
    assert_eq!(deleted, 7);
    let kept = audit(&h, "").await;
    let lats: Vec<f64> = kept
        .iter()
        .map(|e| e["after"]["lat"].as_f64().unwrap())
        .collect();
    assert_eq!(lats, [11.0, 10.0, 9.0, 8.0, 7.0]);
    // Entries older than the retention age go too.
    let far = h.state.unix_now_ms() + nexrtc_controller::audit::MAX_AGE.as_millis() as u64 + 1;
    let deleted = nexrtc_controller::audit::prune(&h.state, 1000, far)
        .await
        .expect("prune");
    assert_eq!(deleted, 5);
    assert!(audit(&h, "").await.is_empty());
}
