//! The protocol's JSON, spelled out: what the agent sends must be what the
//! controller's `api/relays.rs` accepts (it refuses unknown fields), and the
//! controller's answers (with fields the agent ignores) must parse.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use nexrtc_edge_agent::config::{addresses, parse_advertised};
use nexrtc_edge_agent::wire::*;
use serde_json::json;

fn load() -> LoadReport {
    LoadReport {
        allocations: 12,
        capacity: 1000,
        pps_in: 500,
        pps_out: 480,
        bps_in: 4_000_000,
        bps_out: 3_900_000,
        cpu: 0.25,
    }
}

#[test]
fn register_request_is_the_controllers_registration() {
    let advertised: Vec<_> = [
        "udp:203.0.113.5:3478",
        "tcp:203.0.113.5:3478",
        "tls:relay1.example.org:5349",
        "tls:relay1.example.org:443",
    ]
    .iter()
    .map(|a| parse_advertised(a).unwrap())
    .collect();
    let (addresses, transports) = addresses(&advertised);
    let request = RegisterRequest {
        node: "relay-1".into(),
        region: "eu-west".into(),
        addresses,
        transports,
        load: load(),
        state: RelayState::Active,
        version: "0.1.0".into(),
    };
    let expected = json!({
        "node": "relay-1",
        "region": "eu-west",
        "addresses": {
            "udp": {"host": "203.0.113.5", "port": 3478},
            "tcp": {"host": "203.0.113.5", "port": 3478},
            "tls": {"host": "relay1.example.org", "port": 5349},
            "tls_alt": {"host": "relay1.example.org", "port": 443}
        },
        "transports": ["udp", "tcp", "tls"],
        "load": {"allocations": 12, "capacity": 1000, "pps_in": 500, "pps_out": 480,
                 "bps_in": 4000000, "bps_out": 3900000, "cpu": 0.25},
        "state": "active",
        "version": "0.1.0"
    });
    assert_eq!(serde_json::to_value(&request).unwrap(), expected);
}

#[test]
fn heartbeat_is_the_controllers_heartbeat() {
    let beat = Heartbeat {
        region: "eu-west".into(),
        node: "relay-1".into(),
        lease: LeaseId("7587869312345678901".into()),
        load: load(),
        state: RelayState::Draining,
    };
    let v = serde_json::to_value(&beat).unwrap();
    assert_eq!(v["lease"], json!("7587869312345678901"));
    assert_eq!(v["state"], json!("draining"));
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["lease", "load", "node", "region", "state"]);
}

#[test]
fn controller_answers_parse() {
    // `Registered` of controller/src/api/relays.rs.
    let registered: RegisterResponse = serde_json::from_value(json!({
        "lease": "7587869312345678901",
        "lease_ttl_secs": 5,
        "heartbeat_interval_ms": 1000,
        "tenants": [{"name": "acme", "secrets": ["new", "old"], "cut_at_expiry": true}],
        "revoked": [{"tenant": "acme", "username": "1700000000:acme:eve", "until": 1700000000, "revoked_at": 1699990000}]
    }))
    .unwrap();
    assert_eq!(registered.lease.0, "7587869312345678901");
    assert_eq!(registered.tenants[0].secrets, ["new", "old"]);
    assert_eq!(registered.revoked[0].until, 1_700_000_000);
    assert!(registered.probe_targets.is_empty());

    // `HeartbeatAnswer`.
    let answer: HeartbeatResponse = serde_json::from_value(json!({
        "lease_ttl_secs": 5, "heartbeat_interval_ms": 1000, "state": "draining", "written": true
    }))
    .unwrap();
    assert_eq!(answer.state, Some(RelayState::Draining));
    assert_eq!(answer.probe_targets, None);

    let error: ErrorBody =
        serde_json::from_value(json!({"code": "lease_expired", "message": "register again"}))
            .unwrap();
    assert_eq!(error.code, LEASE_EXPIRED);
}

#[test]
fn events_round_trip_through_their_sse_text() {
    let events = [
        Event::Secrets(Secrets {
            tenants: vec![TenantSecrets {
                name: "acme".into(),
                secrets: vec!["s2".into(), "s1".into()],
                cut_at_expiry: false,
            }],
            default_tenant: None,
        }),
        Event::Revocations(Revocations {
            revoked: vec![Revoked {
                tenant: "acme".into(),
                username: "9:acme:eve".into(),
                until: 9,
                revoked_at: 1,
            }],
        }),
        Event::Drain(DrainOrder {
            deadline: Some(1_700_000_300),
            alternate: Some("198.51.100.7:3478".into()),
        }),
        Event::Ping,
    ];
    for e in &events {
        let data = e.data();
        assert!(!data.contains('\n'), "one data line: {data}");
        assert_eq!(&Event::parse(e.name(), &data).unwrap(), e);
    }
    assert_eq!(
        events[0].data(),
        r#"{"tenants":[{"name":"acme","secrets":["s2","s1"],"cut_at_expiry":false}]}"#
    );
    assert_eq!(
        events[2].data(),
        r#"{"deadline":1700000300,"alternate":"198.51.100.7:3478"}"#
    );
    assert!(matches!(
        Event::parse("later", "{}"),
        Err(EventError::Unknown(_))
    ));
    assert!(Event::parse("drain", "{").is_err());
}

#[test]
fn secrets_never_reach_debug_output() {
    let s = TenantSecrets {
        name: "acme".into(),
        secrets: vec!["hunter2".into()],
        cut_at_expiry: false,
    };
    let text = format!(
        "{:?}",
        Secrets {
            tenants: vec![s],
            default_tenant: None
        }
    );
    assert!(!text.contains("hunter2"), "{text}");
}
