//! The independent RFC 9298 client (aioquic, `quic/tests/masque_client.py`) against a
//! relay's QUIC listener.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::{json, Value};

/// Whether python3 with aioquic is here; the tools rule's notice (or failure in CI) if not.
pub fn quic_client_available() -> bool {
    nexrtc_test_support::tools::python_module("aioquic", "pip install aioquic==1.7.2")
}

/// Whether python3 with the h2 package (the HTTP/2 fallback's client) is here.
pub fn h2_client_available() -> bool {
    nexrtc_test_support::tools::python_module("h2", "pip install h2==4.4.1")
}

/// Runs the client's `steps` on one connection to `proxy` (a development certificate:
/// not verified); the report's steps.
pub fn masque(proxy: SocketAddr, steps: Value) -> Vec<Value> {
    masque_over("h3", proxy, steps)
}

/// [`masque`] over `transport`: `"h3"` (QUIC, to the relay's QUIC address) or `"h2"` (the
/// HTTP/2 fallback, to the relay's TLS port).
pub fn masque_over(transport: &str, proxy: SocketAddr, steps: Value) -> Vec<Value> {
    let job = json!({
        "transport": transport,
        "proxy": proxy.to_string(),
        "authority": proxy.to_string(),
        "ca": null,
        "steps": steps,
    });
    let file = super::temp_file("masque-job", &job.to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/quic/tests/masque_client.py");
    let out = super::run_ok(
        "the CONNECT-UDP client",
        Command::new("python3").arg(script).arg(&file),
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    report["steps"].as_array().expect("steps").clone()
}
