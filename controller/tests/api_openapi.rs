//! The OpenAPI document matches the router: the same (method, path) pairs, each routed.

mod api_common;

use std::collections::BTreeSet;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::api::{openapi, route_table};

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn documented() -> BTreeSet<(String, String)> {
    let doc = openapi::document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn document_and_router_list_the_same_routes() {
    let routed: BTreeSet<(String, String)> = route_table()
        .into_iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let documented = documented();
    let missing_from_doc: Vec<_> = routed.difference(&documented).collect();
    let not_routed: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing_from_doc.is_empty(),
        "routes without documentation: {missing_from_doc:?}"
    );
    assert!(
        not_routed.is_empty(),
        "documented but not routed: {not_routed:?}"
    );
}

#[test]
fn document_is_openapi_3_1_with_resolvable_refs() {
    let doc = openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
}

/// Every documented operation reaches a handler: not our 404 `not_found` fallback, not 405.
#[tokio::test(start_paused = true)]
async fn every_documented_operation_is_routed() {
    let h = Harness::start().await;
    for (method, path) in documented() {
        let concrete = path
            .replace("{tenant}", "acme")
            .replace("{region}", "eu-west")
            .replace("{node}", "n1")
            .replace("{id}", "x");
        let method: &'static str = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            other => panic!("unexpected method {other}"),
        };
        let r = h.call(Req::new(method, concrete.clone())).await;
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            !(r.status == StatusCode::NOT_FOUND
                && r.code() == "not_found"
                && r.text.contains("no such endpoint")),
            "{method} {concrete} fell through to the fallback"
        );
    }
    let r = h.call(Req::get("/v1/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, openapi::document());
}

/// Every `lease` property in the document is a string (decimal lease ids).
#[test]
fn lease_ids_are_strings_everywhere() {
    fn walk(v: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(lease) = map.get("properties").and_then(|p| p.get("lease")) {
                    assert_eq!(lease["type"], "string", "{at}: lease is {lease}");
                    found.push(at.to_owned());
                }
                for (k, child) in map {
                    walk(child, &format!("{at}/{k}"), found);
                }
            }
            serde_json::Value::Array(list) => {
                for (i, child) in list.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&openapi::document(), "", &mut found);
    // Registered, Heartbeat, Leave, Relay.
    assert!(found.len() >= 4, "{found:?}");
}

/// The edge agents' schemas name exactly the fields of the protocol's golden JSON
/// (`wire/tests/golden/`, which the shared `nexrtc_wire` types and the real routes are
/// checked against): the document cannot drift from the protocol either.
#[test]
fn agent_schemas_name_the_golden_fields() {
    let doc = openapi::document();
    let schemas = &doc["components"]["schemas"];
    for (schema, file) in [
        ("Registration", "registration.json"),
        ("Registered", "registered.json"),
        ("Heartbeat", "heartbeat.json"),
        ("HeartbeatAnswer", "heartbeat_answer.json"),
        ("Leave", "leave.json"),
        ("ProbeReport", "probe_report.json"),
    ] {
        let path = format!("{}/../wire/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("golden file");
        let golden: serde_json::Value = serde_json::from_str(&text).expect("json");
        let fields: BTreeSet<&String> = golden.as_object().expect("object").keys().collect();
        let documented: BTreeSet<&String> = schemas[schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema}"))
            .keys()
            .collect();
        assert_eq!(documented, fields, "{schema} vs {file}");
    }
}
