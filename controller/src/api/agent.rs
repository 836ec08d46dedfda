//! The edge agent's other two channels (the protocol of `nexrtc_wire`: [`Event`] and its
//! payloads, [`ProbeReport`], [`ProbeTarget`]), with node-scoped keys:
//!
//! * `GET /v1/relays/events?region=R&node=N` — server-sent events. On every connection
//!   the full current state first (`secrets`, then `revocations`, then `drain` if the node
//!   is draining), then each change, again as full state; `ping` when the stream has been
//!   quiet for [`PING_INTERVAL`]. Built from the watched snapshots: no store reads, and
//!   every replica serves the same stream. Streams end when the server shuts down.
//! * `POST /v1/relays/probes` — a round of latency probes; each region pair is stored at
//!   `probes/<from>/<to>` (median RTT of the answered targets, mean loss) at most once
//!   per [`PROBE_REFRESH`], which bounds the writes to (regions² / 300 s) whatever the
//!   fleet size.
//! * [`probe_targets`] — up to [`TARGETS_PER_REGION`] relays of every other region, sent
//!   in the registration answer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use nexrtc_wire::{
    routes, DrainOrder, Event, ProbeReport, ProbeTarget, Revocations, Secrets, PING_INTERVAL,
};
use tokio::sync::watch;

use super::error::ApiError;
use super::extract::{query_param, JsonBody, Node};
use super::relays::tenant_secrets;
use crate::app::AppState;
use crate::model::{self, ProbeRecord, RelayState, Revocation, TenantRecord, Transport, PROBES};
use crate::state::View;
use crate::store::Snapshot;

/// A region pair's probe record is rewritten at most this often.
pub const PROBE_REFRESH: u64 = 300;
/// Probe targets per other region.
pub const TARGETS_PER_REGION: usize = 2;
/// Most probe results accepted in one report.
const MAX_RESULTS: usize = 4096;

/// Up to [`TARGETS_PER_REGION`] active UDP relays of every region but `region`, chosen by
/// a hash of (`node`, target) so that agents spread their probes over a region's relays.
pub fn probe_targets(view: &View, region: &str, node: &str) -> Vec<ProbeTarget> {
    let mut by_region: BTreeMap<&str, Vec<(u64, ProbeTarget)>> = BTreeMap::new();
    for r in view.relays.values() {
        let Some(udp) = r.addresses.udp.as_ref() else {
            continue;
        };
        if r.region == region
            || r.state != RelayState::Active
            || !r.transports.contains(&Transport::Udp)
        {
            continue;
        }
        let mut h = DefaultHasher::new();
        (region, node, &r.region, &r.node).hash(&mut h);
        let target = ProbeTarget {
            region: r.region.clone(),
            node: r.node.clone(),
            stun: udp.uri_authority(),
        };
        by_region
            .entry(&r.region)
            .or_default()
            .push((h.finish(), target));
    }
    let mut out = Vec::new();
    for (_, mut list) in by_region {
        list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.node.cmp(&b.1.node)));
        out.extend(list.into_iter().take(TARGETS_PER_REGION).map(|(_, t)| t));
    }
    out
}

/// `GET /v1/relays/events?region=R&node=N`.
pub async fn events(
    State(state): State<AppState>,
    _: Node,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let param = |name: &str| {
        let value = query_param(query.as_deref(), name).ok_or_else(|| {
            ApiError::invalid_request(format!("query parameter {name} is required"))
        })?;
        model::validate_name(value)
            .map_err(|e| ApiError::invalid_request(format!("{name}: {e}")))?;
        Ok::<_, ApiError>(value.to_owned())
    };
    let (region, node) = (param(routes::REGION_PARAM)?, param(routes::NODE_PARAM)?);
    let feed = Feed {
        id: format!("{region}/{node}"),
        tenants: state.snapshots.tenants.subscribe(),
        revoked: state.snapshots.revoked.subscribe(),
        view: state.snapshots.subscribe_view(),
        closing: state.closing(),
        sent_secrets: None,
        sent_revoked: None,
        draining: false,
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    let ping = sse::Event::default()
        .event(Event::PING)
        .data(data(&Event::Ping));
    let keep_alive = KeepAlive::new().interval(PING_INTERVAL).event(ping);
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// One agent's event stream: the last state sent, and the snapshots to follow.
struct Feed {
    id: String,
    tenants: watch::Receiver<Arc<Snapshot<TenantRecord>>>,
    revoked: watch::Receiver<Arc<Snapshot<Revocation>>>,
    view: watch::Receiver<Arc<View>>,
    closing: watch::Receiver<bool>,
    sent_secrets: Option<String>,
    sent_revoked: Option<String>,
    draining: bool,
    pending: VecDeque<sse::Event>,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, Feed)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if *self.closing.borrow() {
                return None;
            }
            self.refresh();
            if !self.pending.is_empty() {
                continue;
            }
            let alive = tokio::select! {
                r = self.tenants.changed() => r.is_ok(),
                r = self.revoked.changed() => r.is_ok(),
                r = self.view.changed() => r.is_ok(),
                _ = self.closing.wait_for(|closing| *closing) => false,
            };
            if !alive {
                return None;
            }
        }
    }

    /// Queues what changed since the last events (everything, the first time).
    fn refresh(&mut self) {
        let tenants = self.tenants.borrow_and_update().clone();
        let secrets = data(&Event::Secrets(Secrets {
            tenants: tenant_secrets(&tenants),
            default_tenant: None,
        }));
        if self.sent_secrets.as_ref() != Some(&secrets) {
            self.push(Event::SECRETS, &secrets);
            self.sent_secrets = Some(secrets);
        }
        let revoked = self.revoked.borrow_and_update().clone();
        let mut list: Vec<Revocation> = revoked.entries.values().map(|r| (**r).clone()).collect();
        list.sort_by(|a, b| a.username.cmp(&b.username));
        let revocations = data(&Event::Revocations(Revocations { revoked: list }));
        if self.sent_revoked.as_ref() != Some(&revocations) {
            self.push(Event::REVOCATIONS, &revocations);
            self.sent_revoked = Some(revocations);
        }
        let view = self.view.borrow_and_update().clone();
        match view.relays.get(&self.id) {
            Some(r) if r.state == RelayState::Draining && !self.draining => {
                self.draining = true;
                let order = DrainOrder {
                    deadline: r.drain_deadline,
                    alternate: alternate(&view, &r.region, &self.id),
                };
                self.push(Event::DRAIN, &data(&Event::Drain(order)));
            }
            Some(r) if r.state == RelayState::Draining => {}
            Some(_) => self.draining = false,
            None => {}
        }
    }

    fn push(&mut self, name: &'static str, data: &str) {
        self.pending
            .push_back(sse::Event::default().event(name).data(data));
    }
}

/// An event's `data`: one line of JSON with its keys in sorted order (through a
/// `serde_json::Value`), as the stream has always sent it.
fn data(event: &Event) -> String {
    // Serializing these plain structs (string keys, finite numbers) cannot fail.
    serde_json::to_value(event)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "{}".to_owned())
}

/// An active relay of `region` other than `id`, as `host:port` for 300 ALTERNATE-SERVER.
fn alternate(view: &View, region: &str, id: &str) -> Option<String> {
    let mut candidates: Vec<(&String, String)> = (view.relays.iter())
        .filter(|(other, r)| *other != id && r.region == region && r.state == RelayState::Active)
        .filter_map(|(other, r)| Some((other, r.addresses.udp.as_ref()?.uri_authority())))
        .collect();
    candidates.sort();
    candidates.into_iter().next().map(|(_, addr)| addr)
}

/// `POST /v1/relays/probes`: 204.
pub async fn probes(
    State(state): State<AppState>,
    _: Node,
    JsonBody(report): JsonBody<ProbeReport>,
) -> Result<StatusCode, ApiError> {
    model::validate_name(&report.from_region).map_err(ApiError::invalid_request)?;
    model::validate_name(&report.from_node).map_err(ApiError::invalid_request)?;
    if report.results.len() > MAX_RESULTS {
        return Err(ApiError::invalid_request(format!(
            "at most {MAX_RESULTS} results"
        )));
    }
    let mut pairs: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in &report.results {
        if r.to_region == report.from_region || model::validate_name(&r.to_region).is_err() {
            continue;
        }
        let (rtts, losses) = pairs.entry(&r.to_region).or_default();
        if let Some(rtt) = r
            .rtt_ms
            .filter(|v| v.is_finite() && (0.0..60_000.0).contains(v))
        {
            rtts.push(rtt);
        }
        losses.push(if r.loss.is_finite() {
            r.loss.clamp(0.0, 1.0)
        } else {
            1.0
        });
    }
    let now = state.unix_now();
    let known = state.snapshots.probes.snapshot();
    for (to, (mut rtts, losses)) in pairs {
        let id = format!("{}/{to}", report.from_region);
        if known
            .get(&id)
            .is_some_and(|p| p.measured_at.saturating_add(PROBE_REFRESH) > now)
        {
            continue;
        }
        rtts.sort_by(f64::total_cmp);
        let record = ProbeRecord {
            rtt_ms: rtts.get(rtts.len() / 2).copied().unwrap_or(0.0),
            loss: match rtts.is_empty() {
                true => 1.0,
                false => losses.iter().sum::<f64>() / losses.len() as f64,
            },
            measured_at: now,
        };
        state
            .store
            .put(&format!("{PROBES}{id}"), model::encode(&record), None)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
