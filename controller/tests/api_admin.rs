//! The admin API (tenants, secrets, keys, regions, relays, revocations) and relay
//! registration/heartbeats.

mod api_common;

use std::time::Duration;

use api_common::*;
use axum::http::StatusCode;
use nexrtc_controller::credentials::key_hash;
use nexrtc_controller::store::Store;
use serde_json::{json, Value};

fn admin(method: &'static str, path: &str) -> Req {
    Req::new(method, path).bearer(ADMIN_KEY)
}

fn secrets(tenant: &Value) -> Vec<(String, String)> {
    let list = tenant["secrets"].as_array().expect("secrets");
    list.iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").into(),
                s["value"].as_str().expect("v").into(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn tenants_crud() {
    let h = Harness::start().await;
    let body = json!({"name": "beta", "limits": {"default_ttl": 600, "max_ttl": 1200},
                      "cors_origins": ["https://Beta.example"]});
    let r = h.call(admin("POST", "/v1/admin/tenants").json(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["cors_origins"], json!(["https://beta.example"]));
    assert_eq!(secrets(&r.json).len(), 1);
    assert!(
        r.json.get("token_key").is_none(),
        "the signing key is never shown"
    );

    let list = h.call(admin("GET", "/v1/admin/tenants")).await;
    let names: Vec<&str> = (list.json.as_array().expect("list").iter())
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["acme", "beta"]);

    let r = h
        .call(
            admin("PUT", "/v1/admin/tenants/beta")
                .json(json!({"limits": {"default_ttl": 60, "max_ttl": 120}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["limits"]["max_ttl"], 120);
    assert_eq!(
        r.json["cors_origins"],
        json!(["https://beta.example"]),
        "kept"
    );
    let r = h.call(admin("GET", "/v1/admin/tenants/beta")).await;
    assert_eq!(r.json["limits"]["default_ttl"], 60);

    assert_eq!(
        h.call(admin("DELETE", "/v1/admin/tenants/beta"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = h.call(admin("GET", "/v1/admin/tenants/beta")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(start_paused = true)]
async fn tenant_max_ttl_bounds_requests() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h
        .call(
            admin("PUT", "/v1/admin/tenants/acme")
                .json(json!({"limits": {"default_ttl": 60, "max_ttl": 120}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.ice(json!({}), FRANKFURT_IP).await.json["ttl"], 60);
    assert_eq!(
        h.ice(json!({"ttl": 120}), FRANKFURT_IP).await.status,
        StatusCode::CREATED
    );
    let r = h.ice(json!({"ttl": 121}), FRANKFURT_IP).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_ttl")
    );
}

#[tokio::test(start_paused = true)]
async fn secret_rotation_changes_which_secret_signs() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let password_matches = |r: &Response, secret: &str| {
        let username = r.json["username"].as_str().expect("username");
        r.json["password"] == turn_core::auth::rest_password(secret.as_bytes(), username)
    };
    assert!(password_matches(
        &h.ice(json!({}), FRANKFURT_IP).await,
        SECRET
    ));

    let r = h
        .call(
            admin("POST", "/v1/admin/tenants/acme/secrets")
                .json(json!({"value": "second-secret-0123456789"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let list = secrets(&r.json);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].1, "second-secret-0123456789", "newest first");
    assert_eq!(list[1].1, SECRET, "the previous one is kept for rotation");
    let answer = h.ice(json!({}), FRANKFURT_IP).await;
    assert!(password_matches(&answer, "second-secret-0123456789"));
    assert!(!password_matches(&answer, SECRET));

    // A third secret drops the oldest; random when no value is given.
    let r = h
        .call(admin("POST", "/v1/admin/tenants/acme/secrets"))
        .await;
    let list = secrets(&r.json);
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].1, "second-secret-0123456789");
    let newest = list[0].1.clone();
    assert!(password_matches(
        &h.ice(json!({}), FRANKFURT_IP).await,
        &newest
    ));

    // Retire the old one; the last one cannot be retired.
    let r = h
        .call(admin(
            "DELETE",
            &format!("/v1/admin/tenants/acme/secrets/{}", list[1].0),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(secrets(&r.json).len(), 1);
    let r = h
        .call(admin(
            "DELETE",
            &format!("/v1/admin/tenants/acme/secrets/{}", list[0].0),
        ))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "last_secret"));

    // Relays registering now get the current secrets.
    let reg = h
        .call(
            Req::post("/v1/relays/register")
                .bearer(NODE_KEY)
                .json(registration("eu-west", "n9", "198.18.9.1")),
        )
        .await;
    let tenants = reg.json["tenants"].as_array().expect("tenants");
    assert_eq!(tenants[0]["name"], "acme");
    assert_eq!(tenants[0]["secrets"], json!([newest]));
}

#[tokio::test(start_paused = true)]
async fn api_keys_are_shown_once_stored_hashed_and_deletable() {
    let h = Harness::start().await;
    h.register_fleet().await;
    let r = h
        .call(
            admin("POST", "/v1/admin/keys")
                .json(json!({"name": "backend", "tenant": "acme", "scopes": ["ice"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key = r.json["key"].as_str().expect("key").to_owned();
    let id = r.json["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with("nxk_") && key.len() == 47);
    assert_eq!(id, key_hash(&key));

    // Stored as its hash only.
    let stored = h
        .store
        .get(&format!("keys/{id}"))
        .await
        .expect("get")
        .expect("stored");
    assert!(!String::from_utf8_lossy(&stored.value).contains(&key));
    let list = h.call(admin("GET", "/v1/admin/keys")).await;
    assert!(!list.text.contains(&key));
    assert!(list
        .json
        .as_array()
        .expect("list")
        .iter()
        .any(|k| k["id"] == id.as_str()));

    let use_key = || {
        Req::post("/v1/ice-servers")
            .bearer(&key)
            .peer(FRANKFURT_IP)
            .json(json!({}))
    };
    assert_eq!(h.call(use_key()).await.status, StatusCode::CREATED);
    let r = h
        .call(admin("DELETE", &format!("/v1/admin/keys/{id}")))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.call(use_key()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );
}

#[tokio::test(start_paused = true)]
async fn regions_crud_feeds_the_ranking() {
    let h = Harness::start().await;
    let r = h
        .call(admin("PUT", "/v1/admin/regions/ap-south").json(json!({"lat": 1.35, "lon": 103.82})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["score_multiplier"], 1.0);
    h.register("ap-south", "n1", "198.18.5.1").await;
    h.register("eu-west", "n1", "198.18.0.1").await;
    // Singapore clients get the new region.
    let r = h.ice(json!({}), "203.0.113.200").await;
    assert_eq!(r.json["regions"][0], "ap-south");

    let list = h.call(admin("GET", "/v1/admin/regions")).await;
    assert_eq!(list.json.as_array().expect("list").len(), 5);
    assert_eq!(
        h.call(admin("GET", "/v1/admin/regions/ap-south"))
            .await
            .json["lat"],
        1.35
    );
    // Deleted: its relays are no longer offered, and hints to it are refused.
    assert_eq!(
        h.call(admin("DELETE", "/v1/admin/regions/ap-south"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = h.ice(json!({}), "203.0.113.200").await;
    assert_eq!(r.json["regions"], json!(["eu-west"]));
    let r = h.ice(json!({"region": "ap-south"}), "203.0.113.200").await;
    assert_eq!(r.code(), "unknown_region");
}

#[tokio::test(start_paused = true)]
async fn relays_list_and_drain_a_region() {
    let h = Harness::start().await;
    h.register_fleet().await;
    h.register("eu-central", "n2", "198.18.1.2").await;
    let r = h
        .call(admin("GET", "/v1/admin/relays?region=eu-central"))
        .await;
    let list = r.json.as_array().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["node"], "n1");
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["load_fraction"], 0.05);

    let r = h
        .call(admin("POST", "/v1/admin/relays/eu-central/drain"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["drained"], json!(["eu-central/n1", "eu-central/n2"]));
    let r = h.call(admin("GET", "/v1/admin/relays")).await;
    let states: Vec<(String, String)> = (r.json.as_array().expect("list").iter())
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["state"].as_str().expect("s").into(),
            )
        })
        .filter(|(id, _)| id.starts_with("eu-central"))
        .collect();
    assert!(states.iter().all(|(_, s)| s == "draining"), "{states:?}");
    let r = h.ice(json!({}), FRANKFURT_IP).await;
    assert_eq!(r.json["regions"], json!(["eu-west", "us-east"]));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_leases_write_only_material_changes_and_carry_drain_orders() {
    let h = Harness::start().await;
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    let hb = |load: Value, state: &str| {
        let body = json!({"region": "eu-west", "node": "n1", "lease": lease, "load": load, "state": state});
        Req::post("/v1/relays/heartbeat")
            .bearer(NODE_KEY)
            .json(body)
    };
    let same = json!({"allocations": 10, "capacity": 1000, "cpu": 0.05});
    let before = h.store.revision();
    let r = h.call(hb(same.clone(), "active")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["written"], false);
    assert_eq!(r.json["state"], "active");
    assert_eq!(r.json["lease_ttl_secs"], 60);
    assert_eq!(
        h.store.revision(),
        before,
        "an unchanged load is not written"
    );

    let busier = json!({"allocations": 500, "capacity": 1000, "cpu": 0.3});
    let r = h.call(hb(busier.clone(), "active")).await;
    assert_eq!(r.json["written"], true);
    assert_eq!(h.store.revision(), before + 1);
    let view = h.state.snapshots.wait_view(|v| {
        v.relays
            .get("eu-west/n1")
            .is_some_and(|r| r.load.allocations == 500)
    });
    tokio::time::timeout(Duration::from_secs(5), view)
        .await
        .expect("view");

    // The periodic refresh writes even an unchanged load.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        h.call(hb(busier.clone(), "active")).await.json["written"],
        true
    );

    // A drain order sticks and is told to the relay.
    let r = h
        .call(admin("POST", "/v1/admin/relays/eu-west/n1/drain"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.call(hb(busier, "active")).await;
    assert_eq!(r.json["state"], "draining");
    let stored = h
        .store
        .get("relays/eu-west/n1")
        .await
        .expect("get")
        .expect("record");
    assert!(String::from_utf8_lossy(&stored.value).contains("\"draining\""));

    // A registration moves the record to a new lease; the old lease is then refused.
    let new_lease = h.register("eu-west", "n1", "198.18.0.1").await;
    assert_ne!(new_lease, lease);
    let r = h.call(hb(json!({}), "active")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "lease_expired")
    );
}

#[tokio::test(start_paused = true)]
async fn revocations_are_stored_until_the_username_expires() {
    let h = Harness::start().await;
    let username = format!("{}:acme:alice", NOW + 120);
    let r = h
        .call(admin("POST", "/v1/admin/revocations").json(json!({"username": username})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["until"], NOW + 120);
    let key = format!("revoked/acme/{username}");
    let stored = h.store.get(&key).await.expect("get").expect("stored");
    assert!(stored.lease.is_some(), "under a lease");
    let list = h.call(admin("GET", "/v1/admin/revocations")).await;
    assert_eq!(list.json[0]["username"], username.as_str());
    // Relays registering now learn it.
    let reg = h
        .call(
            Req::post("/v1/relays/register")
                .bearer(NODE_KEY)
                .json(registration("eu-west", "n1", "198.18.0.1")),
        )
        .await;
    assert_eq!(reg.json["revoked"][0]["username"], username.as_str());

    tokio::time::advance(Duration::from_secs(121)).await;
    assert!(
        h.store.get(&key).await.expect("get").is_none(),
        "gone with the lease"
    );
}

/// Lease ids are decimal strings on the wire (etcd's exceed 2^53, where JSON numbers lose
/// precision in JavaScript and jq); records and heartbeats of the previous release, with
/// integers, are still read.
#[tokio::test(start_paused = true)]
async fn lease_ids_are_strings_on_the_wire() {
    const BIG: &str = "7587899319748079376";
    let h = Harness::start().await;
    // The registration answer carries its lease as a string, and a heartbeat with the
    // previous release's integer form renews it.
    let lease = h.register("eu-west", "n1", "198.18.0.1").await;
    let id: i64 = lease.parse().expect("decimal lease id");
    let hb = json!({"region": "eu-west", "node": "n1", "lease": id});
    let r = h
        .call(Req::post("/v1/relays/heartbeat").bearer(NODE_KEY).json(hb))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // A record stored by the previous release (integer lease above 2^53) is listed with
    // the exact id, as a string.
    let mut old = registration("us-east", "n9", "198.18.9.1");
    old["lease"] = serde_json::from_str(BIG).expect("integer");
    old["registered_at"] = json!(NOW);
    old["updated_at"] = json!(NOW);
    let bytes = serde_json::to_vec(&old).expect("json");
    assert!(String::from_utf8_lossy(&bytes).contains(&format!("\"lease\":{BIG}")));
    let rev = h
        .store
        .put("relays/us-east/n9", bytes, None)
        .await
        .expect("put");
    h.state.await_relays(rev).await;
    let list = h.call(admin("GET", "/v1/admin/relays")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let relays = list.json.as_array().expect("list");
    let n9 = relays
        .iter()
        .find(|r| r["node"] == "n9")
        .expect("n9 listed");
    assert_eq!(n9["lease"], json!(BIG), "{n9}");
    let n1 = relays
        .iter()
        .find(|r| r["node"] == "n1")
        .expect("n1 listed");
    assert_eq!(n1["lease"], json!(lease), "{n1}");
    assert!(
        list.text.contains(&format!("\"lease\":\"{BIG}\"")),
        "{}",
        list.text
    );
}
