//! Bad input: each case answers our JSON error with the right status and code, and
//! stores nothing (the memory store's revision does not move).

mod api_common;

use api_common::*;
use axum::http::StatusCode;
use serde_json::json;

/// Sends `req`, expects `status`/`code`, and checks the store was not written.
async fn expect(h: &Harness, req: Req, status: StatusCode, code: &str) -> Response {
    let before = h.store.revision();
    let r = h.call(req).await;
    assert_eq!((r.status, r.code()), (status, code), "{}", r.text);
    assert!(
        r.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "errors are JSON"
    );
    assert_eq!(h.store.revision(), before, "nothing stored for {code}");
    r
}

fn ice() -> Req {
    Req::post("/v1/ice-servers")
        .bearer(ICE_KEY)
        .peer(FRANKFURT_IP)
}

#[tokio::test(start_paused = true)]
async fn ice_servers_bad_input() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let bad = StatusCode::BAD_REQUEST;
    expect(&h, ice().raw("{\"ttl\": "), bad, "invalid_json").await;
    expect(&h, ice().raw("{\"ttl\": 60,}"), bad, "invalid_json").await;
    expect(&h, ice().raw("not json"), bad, "invalid_json").await;
    expect(&h, ice().json(json!({"tll": 60})), bad, "invalid_request").await;
    expect(&h, ice().json(json!({"user": 5})), bad, "invalid_request").await;
    expect(
        &h,
        ice().json(json!({"user": "a/b"})),
        bad,
        "invalid_request",
    )
    .await;
    for ttl in [
        json!(0),
        json!(-5),
        json!(86_401),
        json!(1.5),
        json!("60"),
        json!(1e30),
    ] {
        expect(&h, ice().json(json!({"ttl": ttl})), bad, "invalid_ttl").await;
    }
    expect(
        &h,
        ice().json(json!({"region": "mars-1"})),
        bad,
        "unknown_region",
    )
    .await;
    expect(
        &h,
        ice().json(json!({"client_ip": "999.1.1.1"})),
        bad,
        "invalid_client_ip",
    )
    .await;
    let huge = format!("{{\"user\": \"{}\"}}", "x".repeat(20_000));
    expect(
        &h,
        ice().raw(huge),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn credentials_are_checked_before_anything_else() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let unauth = StatusCode::UNAUTHORIZED;
    let anon = || {
        Req::post("/v1/ice-servers")
            .peer(FRANKFURT_IP)
            .raw("{bad json")
    };
    let r = expect(&h, anon(), unauth, "missing_credentials").await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    expect(
        &h,
        anon().header("authorization", "Basic YTpi"),
        unauth,
        "missing_credentials",
    )
    .await;
    expect(&h, anon().bearer("nxk_not-a-key"), unauth, "invalid_key").await;
    expect(&h, anon().bearer("something-else"), unauth, "invalid_key").await;
    expect(&h, anon().bearer("nxt_forged.token"), unauth, "invalid_key").await;
    // Right key, wrong scope.
    let node = Req::post("/v1/ice-servers")
        .bearer(NODE_KEY)
        .json(json!({}));
    expect(&h, node, StatusCode::FORBIDDEN, "forbidden_scope").await;
    let admin_with_ice_key = Req::get("/v1/admin/tenants").bearer(ICE_KEY);
    expect(
        &h,
        admin_with_ice_key,
        StatusCode::FORBIDDEN,
        "forbidden_scope",
    )
    .await;
    let register_with_admin = Req::post("/v1/relays/register")
        .bearer(ADMIN_KEY)
        .json(registration("eu-west", "x", "198.18.0.9"));
    expect(
        &h,
        register_with_admin,
        StatusCode::FORBIDDEN,
        "forbidden_scope",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn unknown_routes_and_methods_are_json() {
    let h = Harness::start().await;
    expect(&h, Req::get("/v1/nope"), StatusCode::NOT_FOUND, "not_found").await;
    let r = expect(
        &h,
        Req::get("/v1/ice-servers"),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    assert!(
        r.header("allow").is_some_and(|a| a.contains("POST")),
        "{:?}",
        r.headers
    );
    expect(
        &h,
        Req::new("DELETE", "/healthz"),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn admin_bad_input_stores_nothing() {
    let h = Harness::start().await;
    let admin = |m: &'static str, p: &str| Req::new(m, p).bearer(ADMIN_KEY);
    let bad = StatusCode::BAD_REQUEST;
    expect(
        &h,
        admin("POST", "/v1/admin/tenants").json(json!({"name": "Bad/Name"})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/tenants").json(json!({"name": "x", "cors_origins": ["*"]})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/tenants")
            .json(json!({"name": "x", "limits": {"default_ttl": 10, "max_ttl": 5}})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/tenants").json(json!({"name": "x", "secret": "short"})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/tenants").json(json!({"name": "acme"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/keys").json(json!({"scopes": ["ice"]})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/keys").json(json!({"scopes": []})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/keys").json(json!({"scopes": ["root"]})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/keys").json(json!({"tenant": "ghost", "scopes": ["ice"]})),
        bad,
        "unknown_tenant",
    )
    .await;
    expect(
        &h,
        admin("PUT", "/v1/admin/regions/eu-west").json(json!({"lat": 91, "lon": 0})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("PUT", "/v1/admin/regions/EU").json(json!({"lat": 1, "lon": 0})),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        admin("GET", "/v1/admin/tenants/ghost"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &h,
        admin("DELETE", "/v1/admin/keys/abc"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/relays/eu-west/ghost/drain"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/revocations").json(json!({"username": "alice"})),
        bad,
        "invalid_username",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/revocations")
            .json(json!({"username": format!("{}:ghost:bob", NOW + 60)})),
        bad,
        "unknown_tenant",
    )
    .await;
    expect(
        &h,
        admin("POST", "/v1/admin/revocations")
            .json(json!({"username": format!("{}:acme:bob", NOW - 1)})),
        bad,
        "already_expired",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn registration_bad_input_stores_nothing() {
    let h = Harness::start().await;
    let node = |body| Req::post("/v1/relays/register").bearer(NODE_KEY).json(body);
    let bad = StatusCode::BAD_REQUEST;
    expect(
        &h,
        node(registration("mars-1", "n1", "198.18.0.1")),
        bad,
        "unknown_region",
    )
    .await;
    expect(
        &h,
        node(registration("eu-west", "N/1", "198.18.0.1")),
        bad,
        "invalid_request",
    )
    .await;
    expect(
        &h,
        node(registration("eu-west", "n1", "bad host")),
        bad,
        "invalid_request",
    )
    .await;
    let mut no_address = registration("eu-west", "n1", "198.18.0.1");
    no_address["addresses"] = json!({});
    expect(&h, node(no_address), bad, "invalid_request").await;
    let mut only_quic = registration("eu-west", "n1", "198.18.0.1");
    only_quic["transports"] = json!(["quic"]);
    expect(&h, node(only_quic), bad, "invalid_request").await;
    let hb = json!({"region": "eu-west", "node": "n1", "lease": "12345"});
    let r = h
        .call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "lease_expired")
    );
    let hb = json!({"region": "eu-west", "node": "n1", "lease": "x"});
    expect(
        &h,
        Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb),
        bad,
        "invalid_request",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rate_limit_answers_429_with_retry_after() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let body =
        json!({"tenant": "acme", "scopes": ["ice"], "rate_limit": {"per_second": 0.5, "burst": 2}});
    let k = h
        .call(Req::post("/v1/admin/keys").bearer(ADMIN_KEY).json(body))
        .await;
    let key = k.json["key"].as_str().expect("key").to_owned();
    let req = || {
        Req::post("/v1/ice-servers")
            .bearer(&key)
            .peer(FRANKFURT_IP)
            .json(json!({}))
    };
    assert_eq!(h.call(req()).await.status, StatusCode::CREATED);
    assert_eq!(h.call(req()).await.status, StatusCode::CREATED);
    let r = expect(&h, req(), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(r.header("retry-after"), Some("2"));
    // Other keys are not affected.
    assert_eq!(
        h.ice(json!({}), FRANKFURT_IP).await.status,
        StatusCode::CREATED
    );
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    assert_eq!(h.call(req()).await.status, StatusCode::CREATED);
}

/// Whichever way a request is wrong, every route answers an error as JSON
/// `{"code", "message"}`: path parameters that are not UTF-8, malformed and repeated query
/// parameters, bad JSON bodies, a method the route does not take.
#[tokio::test(start_paused = true)]
async fn every_route_answers_errors_as_json() {
    let h = Harness::start().await;
    let table = nexrtc_controller::api::route_table();
    let key_for = |path: &str| match path {
        p if p.starts_with("/v1/admin/") => ADMIN_KEY,
        p if p.starts_with("/v1/relays/") => NODE_KEY,
        _ => ICE_KEY,
    };
    let fill = |path: &str, value: &str| {
        let mut out = String::new();
        let mut rest = path;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            out.push_str(value);
            let end = rest[start..].find('}').expect("closing brace") + start;
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    };
    let check = |what: String, r: &Response| {
        if r.status.is_client_error() || r.status.is_server_error() {
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{what}: {} {}",
                r.status,
                r.text
            );
            assert!(!r.code().is_empty(), "{what}: no code in {}", r.text);
            assert!(
                r.json["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: no message in {}",
                r.text
            );
        }
    };
    let mut bad_params = 0;
    for route in &table {
        let method: &'static str = Box::leak(route.method.as_str().to_owned().into_boxed_str());
        let key = key_for(route.path);

        // Path parameters that are not UTF-8 once decoded.
        if route.path.contains('{') {
            let path = fill(route.path, "%FF");
            let r = h.call(Req::new(method, path.clone()).bearer(key)).await;
            check(format!("{method} {path}"), &r);
            assert!(r.status.is_client_error(), "{method} {path}: {}", r.status);
            if route.path.starts_with("/v1/admin/") {
                assert_eq!(
                    (r.status, r.code()),
                    (StatusCode::BAD_REQUEST, "invalid_request"),
                    "{method} {path}: {}",
                    r.text
                );
                bad_params += 1;
            }
        }

        // Malformed and repeated query parameters.
        let path = format!(
            "{}?%FF=%FF&room=a&room=b&region=%FF&node=%FF&x",
            fill(route.path, "x")
        );
        let r = h.call(Req::new(method, path.clone()).bearer(key)).await;
        check(format!("{method} {path}"), &r);

        // A body that is not JSON (routes that read no body ignore it).
        if route.path != "/v1/relays/events" {
            let path = fill(route.path, "x");
            let r = h
                .call(Req::new(method, path.clone()).bearer(key).raw("{\"a\": "))
                .await;
            check(format!("{method} {path} with a bad body"), &r);
        }

        // A method the route does not take.
        let path = fill(route.path, "x");
        let r = h.call(Req::new("PATCH", path.clone()).bearer(key)).await;
        check(format!("PATCH {path}"), &r);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "PATCH {path}");
        assert_eq!(r.code(), "method_not_allowed");
    }
    assert!(
        bad_params >= 8,
        "{bad_params} admin routes with path parameters"
    );
    let r = h.call(Req::get("/v1/nope%FF")).await;
    check("GET /v1/nope%FF".to_owned(), &r);
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
