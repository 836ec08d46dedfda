//! `POST /v1/client-probes/targets` and `POST /v1/client-probes`: clients measure their
//! RTT to each region and report it (the protocol of [`nexrtc_wire::client`]; the
//! aggregation is [`crate::client_probes`]).
//!
//! Authenticated, rate-limited and CORS-checked exactly like `POST /v1/ice-servers`, and
//! counted for the same client address (`client_ip` only for keys with that scope).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nexrtc_geo::measured::valid_rtt;
use nexrtc_geo::Client;
use nexrtc_wire::{
    ClientProbeAnswer, ClientProbeReport, ClientProbeTarget, ProbeTargets, MAX_CLIENT_PROBE_RESULTS,
};
use serde::Deserialize;

use super::cors;
use super::error::ApiError;
use super::extract::{authenticate, parse_json, BodyBytes, Caller, ClientAddr};
use super::ice::{client_address, rate_limit};
use crate::app::AppState;
use crate::client_probes::Network;
use crate::model::{Scope, Transport};

/// The browser helper (`controller/web/nexrtc-probe.js`): `nexrtcProbe({baseUrl, token})`
/// measures every region with STUN through `RTCPeerConnection` and reports.
pub const PROBE_JS: &str = include_str!("../../web/nexrtc-probe.js");

/// `GET /nexrtc-probe.js`: the browser helper (public, cacheable for an hour, usable
/// from any origin: `Cross-Origin-Resource-Policy: cross-origin`).
pub async fn probe_js() -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ),
    ];
    (headers, PROBE_JS).into_response()
}

/// `POST /v1/client-probes/targets` body (may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsRequest {
    /// The end client's address (keys with the `client_ip` scope only).
    pub client_ip: Option<String>,
}

/// Authenticates the caller, answers with `answer(caller)` (`ok` on success), and adds
/// the CORS headers, as the ICE endpoint does.
async fn authenticated<T: serde::Serialize>(
    state: &AppState,
    headers: &HeaderMap,
    ok: StatusCode,
    answer: impl AsyncFnOnce(&Caller) -> Result<T, ApiError>,
) -> Response {
    let (mut response, tenant) = match authenticate(headers, state) {
        Err(e) => (e.into_response(), None),
        Ok(caller) => {
            let response = match answer(&caller).await {
                Ok(a) => (ok, Json(a)).into_response(),
                Err(e) => e.into_response(),
            };
            (response, caller.tenant)
        }
    };
    cors::decorate(state, &mut response, headers, tenant.as_deref());
    response
}

fn admitted(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    caller.require(Scope::Ice)?;
    caller.tenant()?;
    rate_limit(state, caller)
}

/// `POST /v1/client-probes/targets`: one relay per region with relays, nearest first.
pub async fn targets(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Response {
    let answer = async |caller: &Caller| probe_targets(&state, caller, addr, &body);
    authenticated(&state, &headers, StatusCode::OK, answer).await
}

fn probe_targets(
    state: &AppState,
    caller: &Caller,
    addr: ClientAddr,
    body: &[u8],
) -> Result<ProbeTargets, ApiError> {
    admitted(state, caller)?;
    let req: TargetsRequest = parse_json(body)?;
    let (ip, _) = client_address(caller, addr, req.client_ip.as_deref())?;
    let location = ip.and_then(|ip| state.locate(ip));
    let view = state.view();
    let mut targets = Vec::new();
    for region in view.ranker.explain(Client::at(location)) {
        // The pool is least loaded first; any of its relays measures the region.
        let udp = (region.relays.iter())
            .filter_map(|c| view.relays.get(&*c.id))
            .filter(|r| r.transports.contains(&Transport::Udp))
            .find_map(|r| r.addresses.udp.as_ref());
        if let Some(udp) = udp {
            let stun = udp.uri_authority();
            targets.push(ClientProbeTarget {
                region: region.name.to_string(),
                url: format!("stun:{stun}"),
                stun,
            });
        }
        if targets.len() == MAX_CLIENT_PROBE_RESULTS {
            break;
        }
    }
    Ok(ProbeTargets {
        targets,
        network: ip.map(|ip| Network::of(ip).to_string()),
    })
}

/// `POST /v1/client-probes`: 202 with the network the report was counted for.
pub async fn report(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Response {
    let answer = async |caller: &Caller| fold(&state, caller, addr, &body).await;
    authenticated(&state, &headers, StatusCode::ACCEPTED, answer).await
}

async fn fold(
    state: &AppState,
    caller: &Caller,
    addr: ClientAddr,
    body: &[u8],
) -> Result<ClientProbeAnswer, ApiError> {
    admitted(state, caller)?;
    let req: ClientProbeReport = parse_json(body)?;
    let (ip, _) = client_address(caller, addr, req.client_ip.as_deref())?;
    let ip = ip.ok_or_else(|| {
        ApiError::invalid_request("the client's address is unknown; send client_ip")
    })?;
    let results = validate(state, &req)?;
    let network = Network::of(ip);
    let mut answer = ClientProbeAnswer {
        network: network.to_string(),
        accepted: results.len(),
        home: None,
    };
    if results.is_empty() {
        return Ok(answer);
    }
    let published = state.snapshots.client_probes.snapshot();
    let published = published.get(&answer.network).map(|p| &**p);
    let folded = (state.client_probes)
        .report(
            &state.store,
            &state.metrics,
            network,
            &results,
            published,
            state.unix_now(),
        )
        .await;
    match folded {
        Ok(f) => {
            state.metrics.client_probe_report(f.outcome);
            answer.home = f.measured.home;
            Ok(answer)
        }
        Err(e) => {
            state.metrics.client_probe_report("error");
            Err(ApiError::from(e))
        }
    }
}

/// Results by region: every RTT valid, no region twice, at most
/// [`MAX_CLIENT_PROBE_RESULTS`]; regions outside the catalogue are skipped.
fn validate(state: &AppState, req: &ClientProbeReport) -> Result<BTreeMap<String, f64>, ApiError> {
    if req.results.len() > MAX_CLIENT_PROBE_RESULTS {
        return Err(ApiError::invalid_request(format!(
            "at most {MAX_CLIENT_PROBE_RESULTS} results"
        )));
    }
    let view = state.view();
    let mut results = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in &req.results {
        if !valid_rtt(r.rtt_ms) {
            return Err(ApiError::bad_request(
                "invalid_rtt",
                format!(
                    "rtt_ms of {:?} must be a number of milliseconds above 0 and at most 10000",
                    r.region
                ),
            ));
        }
        if !seen.insert(r.region.as_str()) {
            return Err(ApiError::invalid_request(format!(
                "region {:?} appears twice",
                r.region
            )));
        }
        if view.ranker.knows_region(&r.region) {
            results.insert(r.region.clone(), r.rtt_ms);
        }
    }
    Ok(results)
}
