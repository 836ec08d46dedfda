//! `GET /v1/status` (admin): the fleet at a glance — regions, and every registered relay
//! with its state, load and addresses — read from this replica's snapshots (no store
//! read). `GET /status`: a page for operators that polls it (plain HTML and a small
//! dependency-free script, `controller/web/`, embedded at build time; no build step).
//!
//! Health as reported here: a relay has a record only while its lease is alive (its
//! agent heartbeats), so every listed relay is alive; `health` then says whether it
//! takes new clients (`ok`), is at capacity (`full`) or is `draining`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nexrtc_wire::{Load, RelayAddresses, Transport};
use serde::Serialize;

use super::error::ApiError;
use super::extract::Admin;
use crate::app::AppState;
use crate::model::RelayState;

/// The operator page (`controller/web/status.html`).
pub const STATUS_HTML: &str = include_str!("../../web/status.html");

/// The whole answer of `GET /v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Unix seconds at which the report was made.
    pub generated_at: u64,
    /// Age of this replica's snapshot (0 while the watch is live; `null` before loading).
    pub snapshot_age_seconds: Option<f64>,
    pub regions: Vec<RegionStatus>,
    /// Sorted by region, then node.
    pub relays: Vec<RelayStatus>,
    /// The relay mesh: round-trip times measured between regions' relays (edge agents'
    /// probes), by source and destination region.
    pub mesh: Vec<MeshLink>,
}

/// One measured region pair.
#[derive(Debug, Clone, Serialize)]
pub struct MeshLink {
    pub from: String,
    pub to: String,
    pub rtt_ms: f64,
    /// Fraction of probes lost, 0..1.
    pub loss: f64,
    /// Unix seconds.
    pub measured_at: u64,
}

/// One region and how many of its relays are in each state.
#[derive(Debug, Clone, Serialize)]
pub struct RegionStatus {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub score_multiplier: f64,
    pub relays: usize,
    pub active: usize,
    pub draining: usize,
    /// Allocations across the region's relays.
    pub allocations: u64,
}

/// One registered relay.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// `<region>/<node>`.
    pub id: String,
    pub region: String,
    pub node: String,
    pub state: RelayState,
    /// `ok`, `full` or `draining`.
    pub health: &'static str,
    /// 0..1 (may exceed 1): what ranking uses.
    pub load_fraction: f64,
    pub load: Load,
    pub addresses: RelayAddresses,
    pub transports: Vec<Transport>,
    pub version: String,
    pub registered_at: u64,
    pub updated_at: u64,
    /// Whether the relay's region exists (relays of unknown regions are never offered).
    pub region_known: bool,
}

/// Builds the report from the current snapshots.
pub fn report(state: &AppState) -> StatusReport {
    let view = state.view();
    let regions_snapshot = state.snapshots.regions.snapshot();
    let mut relays: Vec<RelayStatus> = view
        .relays
        .iter()
        .map(|(id, r)| RelayStatus {
            id: id.clone(),
            region: r.region.clone(),
            node: r.node.clone(),
            state: r.state,
            health: match (r.state, r.load.is_full()) {
                (RelayState::Draining, _) => "draining",
                (RelayState::Active, true) => "full",
                (RelayState::Active, false) => "ok",
            },
            load_fraction: r.load.fraction(),
            load: r.load,
            addresses: r.addresses.clone(),
            transports: r.transports.clone(),
            version: r.version.clone(),
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            region_known: regions_snapshot.entries.contains_key(&r.region),
        })
        .collect();
    relays.sort_by(|a, b| a.id.cmp(&b.id));
    let mut regions: Vec<RegionStatus> = regions_snapshot
        .entries
        .values()
        .map(|region| {
            let mine = relays.iter().filter(|r| r.region == region.name);
            let (mut n, mut active, mut draining, mut allocations) = (0, 0, 0, 0);
            for r in mine {
                n += 1;
                allocations += r.load.allocations;
                match r.state {
                    RelayState::Active => active += 1,
                    RelayState::Draining => draining += 1,
                }
            }
            RegionStatus {
                name: region.name.clone(),
                lat: region.lat,
                lon: region.lon,
                score_multiplier: region.score_multiplier,
                relays: n,
                active,
                draining,
                allocations,
            }
        })
        .collect();
    regions.sort_by(|a, b| a.name.cmp(&b.name));
    let probes = state.snapshots.probes.snapshot();
    let mut mesh: Vec<MeshLink> = (probes.entries.iter())
        .filter_map(|(key, p)| {
            let (from, to) = key.split_once('/')?;
            Some(MeshLink {
                from: from.to_owned(),
                to: to.to_owned(),
                rtt_ms: p.rtt_ms,
                loss: p.loss,
                measured_at: p.measured_at,
            })
        })
        .collect();
    mesh.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    StatusReport {
        generated_at: state.unix_now(),
        snapshot_age_seconds: state.snapshot_age().map(|a| a.as_secs_f64()),
        regions,
        relays,
        mesh,
    }
}

/// `GET /v1/status` (scope `admin`).
pub async fn status(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<StatusReport>, ApiError> {
    Ok(Json(report(&state)))
}

/// `GET /status`: the operator page (public; the data it polls needs an admin key).
pub async fn page() -> Response {
    let content_type = HeaderValue::from_static("text/html; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], PAGE.as_str()).into_response()
}

/// The land of the world map (Natural Earth, public domain; see the file's comment).
pub const LAND_SVG: &str = include_str!("../../web/land.svg");

/// The page with the map's land in place.
static PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| STATUS_HTML.replace("<!--land-->", LAND_SVG));

#[cfg(test)]
mod tests {
    /// The page says what its numbers mean: load, multiplier and version.
    #[test]
    fn the_page_explains_load_multiplier_and_version() {
        let page = super::STATUS_HTML;
        assert!(page.contains(r#"id="legend""#));
        assert!(page.contains("allocations ÷ capacity"));
        assert!(page.contains("round-trip time is multiplied by"));
        assert!(page.contains("agent x.y (coturn)"));
    }
}
