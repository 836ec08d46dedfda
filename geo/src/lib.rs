//! NexRTC geo: where is the client, and which relays should it get?
//!
//! Pure code: no tokio, no network, no clock. The controller owns I/O and time; this crate
//! turns data into decisions.
//!
//! * [`GeoIp`] ([`geoip`]) reads a MaxMind DB City database (GeoIP2/GeoLite2 City or any
//!   database with the same record shape) and maps an IP address to a [`Location`].
//! * [`Region`] ([`region`]) is one entry of the operator's region catalogue: a name, its
//!   coordinates and a score multiplier for steering.
//! * [`LatencyModel`] ([`calibrate`]) turns great-circle distance into an RTT estimate,
//!   fitted to the measured region-to-region probe matrix when there is one.
//! * [`MeasuredRtts`] ([`measured`]) is what a client network measured to regions (client
//!   latency probes); when a network has measurements they rank instead of its GeoIP
//!   location, with hysteresis.
//! * [`Ranker`] ([`rank`]) precomputes per-region aggregates once per snapshot change and
//!   then answers [`Ranker::select`] per request: best region first, a second region for
//!   failover, power-of-two-choices inside each region.
//!
//! # The model
//!
//! For a client at `c` (from GeoIP; when unknown, the default region's coordinates) and a
//! region `r` with at least one eligible relay:
//!
//! ```text
//! d(c, r)        = haversine great-circle distance, Earth radius 6371.0088 km (mean radius)
//! rtt(d)         = a + b·d                                        (LatencyModel)
//! load(r)        = E[load of the relay power-of-two-choices picks in r]
//!                = Σ_i l_(i) · (n−1−i) / C(n, 2)   over eligible loads sorted ascending
//!                  (l_(0) when n = 1)
//! penalty(l)     = P · min(max(l, 0), 1)²                         (P = load_penalty_ms)
//! score(c, r)    = rtt(d(c, r)) · m_r + penalty(load(r))          (m_r = score_multiplier)
//! ```
//!
//! Lower is better. Regions are sorted by score (ties by name); the first `max_regions`
//! (default 2) are returned, so a client gets a failover region whenever two regions are
//! healthy. A valid region hint moves that region to the front.
//!
//! **Latency constants.** Light in fibre travels about 200 km per ms (refractive index
//! ≈ 1.47), so a round trip costs at least 0.010 ms per km of great-circle distance. Real
//! paths are longer than the great circle: [`LatencyModel::DEFAULT`] uses a 1.3× routing
//! inflation, `b = 0.013 ms/km`, plus `a = 5 ms` for access networks, queueing and
//! processing at both ends. (Frankfurt–Ashburn ≈ 6,600 km → 91 ms; Tokyo–Singapore
//! ≈ 5,300 km → 74 ms; both close to typical public measurements.) With ≥ 3 measured region
//! pairs the line is refitted by least squares to the probes, with `b` kept within
//! [0.010, 0.100] ms/km (never faster than light in fibre) and `a` within [0, 100] ms.
//!
//! **Load penalty.** Quadratic so that lightly loaded relays barely matter (load 0.3 costs
//! 4.5 ms with the default `P = 50 ms`) while pressure grows as a region nears capacity
//! (0.9 costs 40.5 ms): traffic moves between nearby regions (Dublin/Frankfurt are ≈ 14 ms
//! apart in this model) well before it would cross an ocean (Europe/US-East ≈ 75+ ms).
//! The region's load is the *expected* load of the relay a client will actually get under
//! power-of-two-choices, not the best relay's load: one idle relay in a region of busy ones
//! does not make the region look idle.
//!
//! **Eligibility.** A relay is eligible when it is `Active`, not `full` and its load is
//! below `overload_threshold` (default 0.9). Draining and dead relays are never returned.
//! If no relay anywhere is eligible, the selection *degrades* (like LiveKit's sysload
//! fallback): every `Active` relay is considered, full or loaded, and
//! [`Selection::degraded`] is set, rather than answering with nothing.
//!
//! **Within a region** relays are picked by power-of-two-choices: draw two distinct relays
//! uniformly at random, keep the less loaded (the first drawn on a tie). Unlike "always the
//! least loaded", this does not send every request between two heartbeats to the same
//! relay (herding), and it still keeps the maximum load close to the mean.
//!
//! **Cost.** [`Ranker::new`] is O(relays · log relays) once per snapshot change.
//! [`Ranker::select`] is O(healthy regions) distance evaluations on precomputed unit
//! vectors (one `sqrt` each; the `asin` only for regions whose cheap lower bound can still
//! make the top `max_regions`) plus O(`relays_per_region`) random draws: no work per relay
//! on the request path. About 2 µs per request with 200 regions and 5,000 relays on this
//! project's machine (`cargo bench -p nexrtc-geo --bench select`).

#![forbid(unsafe_code)]

pub mod calibrate;
pub mod geoip;
pub mod measured;
pub mod rank;
pub mod region;

pub use calibrate::{LatencyModel, ModelSource, Probe};
pub use geoip::{GeoError, GeoIp, Location};
pub use measured::{Client, MeasuredRtts, HOME_MARGIN_MS};
pub use rank::{
    RandomSource, Ranker, RegionChoice, RelayChoice, RelayState, RelayView, Selection, Snapshot,
    SnapshotIssue, SplitMix64, Weights,
};
pub use region::{haversine_km, validate_region_name, LatLon, Region, RegionError};
