//! The golden JSON of `tests/golden/` read into the shared types and written back: nothing
//! is lost, renamed or added on either side. The controller's `tests/api_agent.rs`
//! sends the same files to its real routes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use nexrtc_wire::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Reads `name` as `T` and writes it back: the same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let json: Value = serde_json::from_str(&golden(name)).unwrap();
    let typed: T = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), json, "{name}");
    typed
}

#[test]
fn registration_and_its_answer() {
    let r: Registration = round_trip("registration.json");
    assert_eq!((r.region.as_str(), r.node.as_str()), ("eu-west", "relay-1"));
    assert_eq!(
        r.transports,
        [Transport::Udp, Transport::Tcp, Transport::Tls]
    );
    assert_eq!(r.addresses.tls_alt.unwrap().port, 443);
    assert_eq!(r.load.cpu, 0.25);

    let a: Registered = round_trip("registered.json");
    assert_eq!(a.lease, LeaseId(7_587_869_312_345_678_901));
    assert_eq!(a.tenants[0].secrets, ["new", "old"]);
    assert_eq!(a.revoked[0].until, 1_700_000_000);
    assert_eq!(a.probe_targets[0].stun, "[2001:db8::7]:3478");
}

#[test]
fn heartbeat_and_its_answers() {
    let h: Heartbeat = round_trip("heartbeat.json");
    assert_eq!(h.lease, LeaseId(7_587_869_312_345_678_901));
    assert_eq!(h.state, RelayState::Draining);

    let a: HeartbeatAnswer = round_trip("heartbeat_answer.json");
    assert_eq!(a.state, Some(RelayState::Draining));
    assert_eq!(a.probe_targets, None);

    let e: ErrorBody = round_trip("error_lease_expired.json");
    assert_eq!(e.code, LEASE_EXPIRED);
}

#[test]
fn leave() {
    let l: Leave = round_trip("leave.json");
    assert_eq!((l.region.as_str(), l.node.as_str()), ("eu-west", "relay-1"));
    assert_eq!(l.lease, LeaseId(7_587_869_312_345_678_901));
    assert_eq!(routes::LEAVE, "/v1/relays/leave");
}

#[test]
fn a_previous_release_heartbeat_is_read_and_written_in_the_current_form() {
    let h: Heartbeat = serde_json::from_str(&golden("heartbeat_integer_lease.json")).unwrap();
    assert_eq!(h.lease, LeaseId(7_587_869_312_345_678_901));
    assert_eq!((h.load, h.state), (Load::default(), RelayState::Active));
    let v = serde_json::to_value(&h).unwrap();
    assert_eq!(v["lease"], "7587869312345678901");
}

#[test]
fn probe_report() {
    let p: ProbeReport = round_trip("probe_report.json");
    assert_eq!(p.results[1].rtt_ms, None);
    assert_eq!(p.results[0].samples, 5);
}

#[test]
fn requests_the_controller_checks_strictly_refuse_unknown_fields() {
    for name in ["registration.json", "heartbeat.json", "leave.json"] {
        let mut v: Value = serde_json::from_str(&golden(name)).unwrap();
        v["surprise"] = Value::Bool(true);
        let strict = match name {
            "registration.json" => serde_json::from_value::<Registration>(v).is_err(),
            "leave.json" => serde_json::from_value::<Leave>(v).is_err(),
            _ => serde_json::from_value::<Heartbeat>(v).is_err(),
        };
        assert!(strict, "{name}");
    }
    // Answers ignore what they do not know (a newer controller).
    let mut v: Value = serde_json::from_str(&golden("heartbeat_answer.json")).unwrap();
    v["later"] = Value::Bool(true);
    assert!(serde_json::from_value::<HeartbeatAnswer>(v).is_ok());
}

/// The stream's `data` lines, byte for byte (keys sorted, as the controller writes them).
#[test]
fn events_read_and_write_their_data() {
    for (name, file) in [
        (Event::SECRETS, "event_secrets.json"),
        (Event::REVOCATIONS, "event_revocations.json"),
        (Event::DRAIN, "event_drain.json"),
        (Event::PING, "event_ping.json"),
    ] {
        let text = golden(file);
        let text = text.trim();
        let event = Event::read(name, &mut serde_json::Deserializer::from_str(text)).unwrap();
        assert_eq!(event.name(), name);
        let data = serde_json::to_value(&event).unwrap().to_string();
        assert_eq!(data, text, "{file}");
    }
    let drain = Event::read(
        Event::DRAIN,
        &mut serde_json::Deserializer::from_str(golden("event_drain.json").trim()),
    )
    .unwrap();
    assert_eq!(
        drain,
        Event::Drain(DrainOrder {
            deadline: Some(1_700_000_300),
            alternate: Some("198.51.100.7:3478".into()),
        })
    );
    let unknown = Event::read("later", &mut serde_json::Deserializer::from_str("{}"));
    assert!(matches!(unknown, Err(EventError::Unknown(n)) if n == "later"));
    let bad = Event::read(Event::DRAIN, &mut serde_json::Deserializer::from_str("{"));
    assert!(matches!(bad, Err(EventError::Data { event: "drain", .. })));
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
