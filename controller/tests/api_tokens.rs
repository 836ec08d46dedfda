//! Client tokens (browsers never hold API keys) and per-tenant CORS.

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use serde_json::json;

async fn mint(h: &Harness, body: serde_json::Value) -> Response {
    h.call(Req::post("/v1/client-tokens").bearer(ICE_KEY).json(body))
        .await
}

fn ice_with(token: &str) -> Req {
    Req::post("/v1/ice-servers").bearer(token).peer(LONDON_IP)
}

#[tokio::test(start_paused = true)]
async fn token_fetches_ice_servers_for_its_user_until_it_expires() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let t = mint(&h, json!({"user": "alice"})).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    assert_eq!(t.json["ttl"], 300, "default 5 minutes");
    let token = t.json["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("nxt_"));

    let r = h.call(ice_with(&token).json(json!({"ttl": 600}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["username"], format!("{}:acme:alice", NOW + 600));
    assert_eq!(r.json["regions"][0], "eu-west");

    // Only for its own user, and never with client_ip or explain.
    let r = h
        .call(ice_with(&token).json(json!({"user": "mallory"})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
    let r = h
        .call(ice_with(&token).json(json!({"client_ip": TOKYO_IP})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
    let r = h
        .call(
            Req::post("/v1/ice-servers?explain=1")
                .bearer(&token)
                .json(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );

    // Expired after its TTL.
    tokio::time::advance(Duration::from_secs(301)).await;
    let r = h.call(ice_with(&token).json(json!({}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "expired_token")
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_are_useless_elsewhere_and_tamper_evident() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let t = mint(&h, json!({"user": "alice", "ttl": 600})).await;
    assert_eq!(t.json["ttl"], 600);
    let token = t.json["token"].as_str().expect("token").to_owned();

    for (method, path) in [("GET", "/v1/admin/tenants"), ("GET", "/v1/admin/keys")] {
        let r = h.call(Req::new(method, path).bearer(&token)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden_scope"),
            "{path}"
        );
    }
    let r = h
        .call(
            Req::post("/v1/client-tokens")
                .bearer(&token)
                .json(json!({"user": "bob"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
    let hb = json!({"region": "eu-west", "node": "n1", "lease": "1"});
    let r = h
        .call(Req::post("/v1/relays/heartbeat").bearer(&token).json(hb))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );

    // Flip one character of the signature.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("utf8");
    let r = h.call(ice_with(&forged).json(json!({}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );

    // Deleting the tenant voids its tokens.
    let r = h
        .call(Req::new("DELETE", "/v1/admin/tenants/acme").bearer(ADMIN_KEY))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.call(ice_with(&token).json(json!({}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );
}

#[tokio::test(start_paused = true)]
async fn token_requests_are_checked() {
    let h = Harness::start().await;
    for body in [
        json!({"user": "alice", "ttl": 601}),
        json!({"user": "alice", "ttl": 0}),
    ] {
        let r = mint(&h, body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_ttl")
        );
    }
    let r = mint(&h, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = mint(&h, json!({"user": "a:b"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = h
        .call(
            Req::post("/v1/client-tokens")
                .bearer(NODE_KEY)
                .json(json!({"user": "a"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_scope")
    );
}

#[tokio::test(start_paused = true)]
async fn cors_only_for_the_tenants_origins() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let allowed = "https://app.acme.example";
    let other = "https://evil.example";
    let preflight = |origin: &str| {
        Req::new("OPTIONS", "/v1/ice-servers")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
    };
    let r = h.call(preflight(allowed)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("access-control-allow-origin"), Some(allowed));
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|v| v.contains("authorization")));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = h.call(preflight(other)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin")
    );
    assert_eq!(r.header("access-control-allow-origin"), None);

    let token = mint(&h, json!({"user": "alice"})).await.json["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = h
        .call(ice_with(&token).header("origin", allowed).json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("access-control-allow-origin"), Some(allowed));
    assert_eq!(r.header("vary"), Some("Origin"));
    // A foreign origin is refused, not merely left without the CORS header: nothing is
    // minted for it.
    let r = h
        .call(ice_with(&token).header("origin", other).json(json!({})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin"),
        "{}",
        r.text
    );
    assert!(r.json["message"].is_string(), "{}", r.text);
    assert_eq!(r.json.get("iceServers"), None, "{}", r.text);
    assert_eq!(r.json.get("password"), None, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Origins compare case-insensitively; `null` (sandboxed frames) is no listed origin.
    let r = h
        .call(
            ice_with(&token)
                .header("origin", "https://APP.acme.example")
                .json(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .call(ice_with(&token).header("origin", "null").json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // No Origin (a server, curl): served.
    let r = h.call(ice_with(&token).json(json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Another tenant's origin is not ours: a tenant "beta" allowing evil.example does not
    // open acme's answers to it.
    let beta = json!({"name": "beta", "cors_origins": [other]});
    let created = h
        .call(Req::post("/v1/admin/tenants").bearer(ADMIN_KEY).json(beta))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        h.call(preflight(other)).await.status,
        StatusCode::NO_CONTENT
    );
    let r = h
        .call(ice_with(&token).header("origin", other).json(json!({})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin")
    );
    assert_eq!(r.json.get("iceServers"), None, "{}", r.text);
    // Error answers for an allowed origin are readable by the page too.
    let r = h
        .call(
            ice_with(&token)
                .header("origin", allowed)
                .json(json!({"ttl": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("access-control-allow-origin"), Some(allowed));
}

#[tokio::test(start_paused = true)]
async fn api_keys_sent_by_a_browser_are_held_to_the_tenants_origins() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let allowed = "https://app.acme.example";
    let other = "https://evil.example";
    let ice = |origin: Option<&str>| {
        let r = Req::post("/v1/ice-servers")
            .bearer(ICE_KEY)
            .peer(LONDON_IP)
            .json(json!({}));
        match origin {
            Some(o) => r.header("origin", o),
            None => r,
        }
    };
    // A server sends no Origin.
    assert_eq!(h.call(ice(None)).await.status, StatusCode::CREATED);
    assert_eq!(h.call(ice(Some(allowed))).await.status, StatusCode::CREATED);
    let r = h.call(ice(Some(other))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin"),
        "{}",
        r.text
    );
    assert_eq!(r.json.get("password"), None);
    // The same rule guards the token endpoints: a page elsewhere cannot mint tokens with a
    // leaked key.
    let r = h
        .call(
            Req::post("/v1/client-tokens")
                .bearer(ICE_KEY)
                .header("origin", other)
                .json(json!({"user": "alice"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin")
    );
    assert_eq!(r.json.get("token"), None);
    let r = h
        .call(
            Req::post("/v1/rooms/standup/tokens")
                .bearer(ICE_KEY)
                .header("origin", other)
                .json(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_origin")
    );
    let r = h
        .call(
            Req::post("/v1/client-tokens")
                .bearer(ICE_KEY)
                .json(json!({"user": "alice"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Global keys have no tenant and no list: the admin API is not a browser API.
    let r = h
        .call(
            Req::get("/v1/admin/tenants")
                .bearer(ADMIN_KEY)
                .header("origin", other),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
