//! Usage metering through the API: relays' per-minute reports (`POST /v1/relays/usage`)
//! are merged so that a report sent twice, or overtaken by a later one, counts once; a
//! restarted relay (a new boot) adds to, never replaces, what it reported before; reports
//! from a relay without its lease, or that are malformed, are refused with codes; the
//! admin API answers per region in buckets of any whole-minute step, in JSON and CSV;
//! retention deletes what is older.

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::usage;
use serde_json::{json, Value};

const M0: u64 = NOW / 60 * 60; // a minute's start

fn report(region: &str, lease: &str, boot: &str, minutes: Value) -> Value {
    json!({"region": region, "node": "n1", "lease": lease, "boot": boot, "minutes": minutes})
}

fn minute(m: u64, tenants: Value) -> Value {
    json!({"minute": m, "tenants": tenants})
}

fn u(alloc_ms: u64, to_peer: u64, to_client: u64) -> Value {
    json!({"allocation_ms": alloc_ms, "bytes_to_peer": to_peer, "bytes_to_client": to_client})
}

async fn usage_of(h: &Harness, tenant: &str, query: &str) -> Value {
    let r = h
        .call(Req::get(format!("/v1/admin/tenants/{tenant}/usage{query}")).bearer(ADMIN_KEY))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

fn total(answer: &Value, region: &str, field: &str) -> f64 {
    (answer["totals"].as_array().expect("totals").iter())
        .find(|t| t["region"] == region)
        .map_or(0.0, |t| t[field].as_f64().expect("number"))
}

#[tokio::test(start_paused = true)]
async fn reports_merge_idempotently_and_restarts_add_up() {
    let h = Harness::start().await;
    let eu = h.register("eu-west", "n1", "198.18.0.1").await;
    let us = h.register("us-east", "n1", "198.18.2.1").await;

    // The first minute as it fills: 10 s in, then 20 s in; the second report again.
    let early = report(
        "eu-west",
        &eu,
        "b00t1",
        json!([minute(M0, json!({"acme": u(10_000, 100, 200)}))]),
    );
    let later = report(
        "eu-west",
        &eu,
        "b00t1",
        json!([minute(M0, json!({"acme": u(20_000, 150, 260)}))]),
    );
    for body in [&early, &later, &later] {
        let r = h.node("/v1/relays/usage", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // The early report arriving late (a slow replica) changes nothing.
    let r = h.node("/v1/relays/usage", early.clone()).await;
    assert_eq!(
        (r.status, r.json["written"].as_u64()),
        (StatusCode::OK, Some(0))
    );

    // The relay restarts mid-minute (a new boot, counting from zero) and reports the rest
    // of that minute and the next; another region's relay reports too.
    let r = h
        .node(
            "/v1/relays/usage",
            report(
                "eu-west",
                &eu,
                "b00t2",
                json!([
                    minute(M0, json!({"acme": u(5_000, 7, 9)})),
                    minute(
                        M0 + 60,
                        json!({"acme": u(60_000, 1000, 2000), "beta": u(1, 1, 1)})
                    )
                ]),
            ),
        )
        .await;
    assert_eq!(
        (r.status, r.json["written"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let r = h
        .node(
            "/v1/relays/usage",
            report(
                "us-east",
                &us,
                "c0ffee",
                json!([minute(M0 + 60, json!({"acme": u(30_000, 5, 5)}))]),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let from = M0;
    let to = M0 + 120;
    let a = usage_of(&h, "acme", &format!("?from={from}&to={to}")).await;
    assert_eq!(a["step"], 60);
    let rows = a["buckets"].as_array().expect("buckets");
    assert_eq!(rows.len(), 3, "{a}");
    assert_eq!(
        rows[0],
        json!({"start": M0, "region": "eu-west", "allocation_minutes": 0.417, "tunnel_minutes": 0.0, "bytes_to_peer": 157, "bytes_to_client": 269})
    );
    assert_eq!(rows[1]["region"], "eu-west");
    assert_eq!(rows[1]["bytes_to_peer"], 1000);
    assert_eq!(rows[2]["region"], "us-east");
    assert_eq!(total(&a, "eu-west", "bytes_to_client"), 2269.0);
    assert_eq!(total(&a, "eu-west", "allocation_minutes"), 1.417);

    // A two-minute step sums the minutes; a region filter keeps one region.
    let b = usage_of(
        &h,
        "acme",
        &format!("?from={from}&to={to}&step=120&region=eu-west"),
    )
    .await;
    assert_eq!(b["buckets"].as_array().expect("buckets").len(), 1);
    assert_eq!(b["buckets"][0]["bytes_to_peer"], 1157);
    // The window's edges: the second minute alone.
    let c = usage_of(&h, "acme", &format!("?from={}&to={to}", M0 + 60)).await;
    assert_eq!(total(&c, "eu-west", "bytes_to_peer"), 1000.0);
    assert_eq!(total(&c, "us-east", "bytes_to_peer"), 5.0);

    // CSV, by parameter or by Accept.
    let r = h
        .call(
            Req::get(format!(
                "/v1/admin/tenants/acme/usage?from={from}&to={to}&format=csv"
            ))
            .bearer(ADMIN_KEY),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(
        lines[0],
        "start,region,allocation_minutes,tunnel_minutes,bytes_to_peer,bytes_to_client"
    );
    assert_eq!(lines[1], format!("{M0},eu-west,0.417,0,157,269"));
    assert_eq!(lines.len(), 4);
    let r = h
        .call(
            Req::get(format!("/v1/admin/tenants/acme/usage?from={from}&to={to}"))
                .bearer(ADMIN_KEY)
                .header("accept", "text/csv"),
        )
        .await;
    assert_eq!(r.text.lines().count(), 4);

    // A tenant that never existed but has usage (a relay's static secret) is answered.
    let beta = usage_of(&h, "beta", &format!("?from={from}&to={to}")).await;
    assert_eq!(total(&beta, "eu-west", "bytes_to_peer"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn bad_reports_and_queries_are_refused_with_codes() {
    let h = Harness::start().await;
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    let ok = |m: u64| {
        report(
            "eu-west",
            &lease,
            "b00t",
            json!([minute(m, json!({"acme": u(1, 1, 1)}))]),
        )
    };

    // Without the relay's lease: 404 lease_expired (the agent keeps the buckets).
    let r = h
        .node(
            "/v1/relays/usage",
            report("eu-west", "999", "b00t", json!([])),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "lease_expired")
    );
    let r = h
        .node(
            "/v1/relays/usage",
            report("eu-west", &lease, "b00t", json!([]))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("node".into(), json!("n2"));
                    Value::Object(o)
                })
                .expect("object"),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "lease_expired")
    );
    // Malformed: a bad boot, a bad region name, not JSON, wrong types.
    for body in [
        report("eu-west", &lease, "not/hex", json!([])),
        report("Eu West", &lease, "b00t", json!([])),
        json!({"region": "eu-west"}),
        report(
            "eu-west",
            &lease,
            "b00t",
            json!([{"minute": "soon", "tenants": {}}]),
        ),
    ] {
        let r = h.node("/v1/relays/usage", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            !r.code().is_empty() && r.json["message"].is_string(),
            "{}",
            r.text
        );
    }
    // Without the node scope: refused.
    let r = h
        .call(Req::post("/v1/relays/usage").bearer(ICE_KEY).json(ok(M0)))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // Values out of range are refused one by one, the rest stored: a minute in the
    // future, one not on a minute, one past the retention, a tenant name that is none.
    let body = report(
        "eu-west",
        &lease,
        "b00t",
        json!([
            minute(M0 - 8 * 86_400, json!({"acme": u(1, 1, 1)})),
            minute(M0 + 30, json!({"acme": u(1, 1, 1)})),
            minute(M0, json!({"acme": u(1, 2, 3), "Not A Tenant": u(1, 1, 1)})),
            minute(M0 + 3600, json!({"acme": u(1, 1, 1)})),
        ]),
    );
    let r = h.node("/v1/relays/usage", body).await;
    assert_eq!(
        (r.status, r.json["written"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{}",
        r.text
    );
    let metrics = h.call(Req::get("/metrics").peer("127.0.0.1")).await.text;
    assert!(
        metrics.contains("nexrtc_controller_usage_values_total{result=\"refused\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nexrtc_controller_usage_reports_total{outcome=\"lease_expired\"} 2"),
        "{metrics}"
    );

    // Queries: only with an admin key; bad windows, steps, formats and names refused.
    let r = h
        .call(Req::get("/v1/admin/tenants/acme/usage").bearer(ICE_KEY))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for q in [
        format!("?from={M0}&to={M0}"),
        format!("?from={}&to={M0}", M0 + 60),
        format!("?from=0&to={M0}"),
        "?step=90".to_owned(),
        "?step=0".to_owned(),
        "?format=xml".to_owned(),
        "?region=Not%20A%20Region".to_owned(),
        "?from=yesterday".to_owned(),
        "?colour=blue".to_owned(),
    ] {
        let r = h
            .call(Req::get(format!("/v1/admin/tenants/acme/usage{q}")).bearer(ADMIN_KEY))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert_eq!(r.code(), "invalid_request", "{q}: {}", r.text);
    }
    let r = h
        .call(Req::get("/v1/admin/tenants/nobody/usage").bearer(ADMIN_KEY))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "unknown_tenant")
    );
    // A tenant without usage in the window: an empty answer.
    let a = usage_of(&h, TENANT, &format!("?from={}&to={}", M0 + 600, M0 + 660)).await;
    assert_eq!(a["buckets"], json!([]));
    assert_eq!(a["totals"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_what_is_older() {
    let mut options = options();
    options.usage_retention = Duration::from_secs(120);
    let h = Harness::with(options).await;
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    let body = report(
        "eu-west",
        &lease,
        "b00t",
        json!([
            minute(M0, json!({"acme": u(1, 1, 1), "gone": u(1, 1, 1)})),
            minute(M0 + 60, json!({"acme": u(1, 1, 1)}))
        ]),
    );
    let r = h.node("/v1/relays/usage", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(usage::sweep(&h.state).await.expect("sweep"), 0);
    // Once the first minute has ended longer than the retention ago, it goes.
    tokio::time::advance(Duration::from_secs(200)).await;
    assert_eq!(
        usage::sweep(&h.state).await.expect("sweep"),
        2,
        "acme's and gone's first minute"
    );
    let left = h.state.store.list("usage/").await.expect("list");
    let keys: Vec<&str> = left.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [format!("usage/acme/{:012}/eu-west/n1/b00t", M0 + 60)]
    );
}
