//! What the agent builds from its configuration is the protocol's golden registration
//! (`wire/tests/golden/registration.json`), which the controller's tests send to its real
//! route. The shared types themselves are checked against every golden file in
//! `wire/tests/golden.rs`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use nexrtc_edge_agent::config::{addresses, parse_advertised};
use nexrtc_wire::*;

fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/../wire/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_agents_registration_is_the_golden_one() {
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
    let request = Registration {
        node: "relay-1".into(),
        region: "eu-west".into(),
        addresses,
        transports,
        load: Load {
            allocations: 12,
            capacity: 1000,
            pps_in: 500,
            pps_out: 480,
            bps_in: 4_000_000,
            bps_out: 3_900_000,
            cpu: 0.25,
        },
        state: RelayState::Active,
        version: "0.1.0".into(),
    };
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        golden("registration.json")
    );
}
