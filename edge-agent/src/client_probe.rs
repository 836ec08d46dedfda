//! Client latency probes, as a library: what `nexrtc probe` does, for apps written in
//! Rust. Ask the controller where to measure ([`targets`]: one relay per region), time
//! STUN Binding requests to each ([`measure_targets`]), and report the medians
//! ([`report`]); [`probe_and_report`] does all three. The controller then ranks every
//! client of this network (its /24 or /48) by these RTTs (see the controller's
//! `client_probes` module and `nexrtc_geo::measured`).
//!
//! Credentials are the ones `POST /v1/ice-servers` takes: an API key with the `ice` scope
//! or a client token, as the [`ControllerClient`]'s bearer token.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use nexrtc_edge_agent::client::{Backoff, ClientConfig};
//! use nexrtc_edge_agent::client_probe::probe_and_report;
//! use nexrtc_edge_agent::probe::ProbeSettings;
//! use nexrtc_edge_agent::{ControllerClient, Url};
//!
//! let client = ControllerClient::new(&ClientConfig {
//!     controllers: vec![Url::parse("https://controller.example.net")?],
//!     token: "nxk_…".into(),
//!     trust: Default::default(),
//!     ca_file: None,
//!     request_timeout: Duration::from_secs(5),
//!     backoff: Backoff::default(),
//!     local_address: None,
//! })?;
//! let outcome = probe_and_report(&client, ProbeSettings::default()).await?;
//! for m in &outcome.measurements {
//!     println!("{} {:?}", m.region, m.stats.median());
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use nexrtc_wire::client::routes;
use nexrtc_wire::{
    ClientProbeAnswer, ClientProbeReport, ClientProbeResult, ClientProbeTarget, ProbeTargets,
    MAX_CLIENT_PROBE_RESULTS,
};

use crate::client::{CallError, ControllerClient};
use crate::probe::{measure, ProbeSettings, ProbeStats};

/// How long one controller call may take, retries over replicas included.
const CALL_BUDGET: Duration = Duration::from_secs(10);

/// One region's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub region: String,
    /// The `host:port` probed.
    pub stun: String,
    pub stats: ProbeStats,
}

/// What [`probe_and_report`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub measurements: Vec<Measurement>,
    /// The controller's answer to the report (the network it counted, its home region).
    pub answer: ClientProbeAnswer,
}

/// Where to measure: one relay per region, nearest first (by this client's location).
pub async fn targets(client: &ControllerClient) -> Result<ProbeTargets, CallError> {
    let body = serde_json::json!({});
    client
        .post(routes::CLIENT_PROBE_TARGETS, &body, CALL_BUDGET)
        .await
}

/// Probes every target at once (at most [`MAX_CLIENT_PROBE_RESULTS`]).
pub async fn measure_targets(
    targets: &[ClientProbeTarget],
    settings: ProbeSettings,
) -> Vec<Measurement> {
    let targets = &targets[..targets.len().min(MAX_CLIENT_PROBE_RESULTS)];
    let stun: Vec<String> = targets.iter().map(|t| t.stun.clone()).collect();
    let stats = measure(&stun, settings).await;
    targets
        .iter()
        .zip(stats)
        .map(|(t, stats)| Measurement {
            region: t.region.clone(),
            stun: t.stun.clone(),
            stats,
        })
        .collect()
}

/// The report's results: the median RTT of each region that answered at all.
pub fn results(measurements: &[Measurement]) -> Vec<ClientProbeResult> {
    measurements
        .iter()
        .filter_map(|m| {
            let rtt = m.stats.median()?;
            Some(ClientProbeResult {
                region: m.region.clone(),
                // A loopback answer can take under a microsecond; the API wants > 0.
                rtt_ms: (rtt.as_secs_f64() * 1000.0).max(0.001),
            })
        })
        .collect()
}

/// Sends the results.
pub async fn report(
    client: &ControllerClient,
    results: Vec<ClientProbeResult>,
) -> Result<ClientProbeAnswer, CallError> {
    let body = ClientProbeReport {
        results,
        client_ip: None,
    };
    client.post(routes::CLIENT_PROBES, &body, CALL_BUDGET).await
}

/// Targets, measurements, report.
pub async fn probe_and_report(
    client: &ControllerClient,
    settings: ProbeSettings,
) -> Result<Outcome, CallError> {
    let targets = targets(client).await?;
    let measurements = measure_targets(&targets.targets, settings).await;
    let answer = report(client, results(&measurements)).await?;
    Ok(Outcome {
        measurements,
        answer,
    })
}
