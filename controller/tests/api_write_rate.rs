//! etcd's write rate under relay heartbeats, counted in etcd revisions (issue 4: "say what
//! the write rate is for N relays, and show it in a test that counts etcd revisions").
//!
//! A real etcd (the store tests' harness: Debian etcd-server on loopback, skipped with a
//! notice when absent outside CI), the controller's router on the etcd store with the
//! default lease TTL (5 s), heartbeat interval (1 s) and `load_refresh` (30 s), N relays
//! registered through `POST /v1/relays/register`, then heartbeat rounds every second in real
//! time. Every write that changes keys bumps etcd's revision by one; lease keep-alives do not.
//! The rules of `api/relays.rs` (`material()`) give the expected counts:
//!
//! * registration: one put per relay (exactly N revisions);
//! * steady load: a record is rewritten only when `now >= updated_at + load_refresh` (Unix
//!   seconds), so over a span of S whole seconds since registration each relay is rewritten
//!   at most `S / load_refresh` times — with the default 30 s and a span of a few seconds,
//!   zero; a second replica with `load_refresh = 2 s` shows the refresh writes themselves;
//! * a load fraction moved by ≥ 0.1: exactly one put; by less: none;
//! * a state change (`draining`): exactly one put, and none for the heartbeats after it.
//!
//! Each phase also checks that the revisions counted equal the heartbeats answered
//! `"written": true`. Only one test lives in this binary: etcd's revision is global, so a
//! parallel test on the shared etcd would add revisions.

mod api_common;
mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_common::{Req, NODE_KEY};
use axum::http::StatusCode;
use futures_util::future::join_all;
use nexrtc_controller::clock::Clock;
use nexrtc_controller::server::bootstrap;
use nexrtc_controller::store::{EtcdStore, MemoryStore, Store};
use nexrtc_controller::{router, AppState, Options};
use serde_json::{json, Value};

/// Relays in the fleet.
const N: usize = 50;
/// Steady heartbeat rounds (one per heartbeat interval).
const STEADY_ROUNDS: usize = 5;
/// Rounds through the replica with a short `load_refresh`.
const REFRESH_ROUNDS: usize = 6;
/// That replica's `load_refresh`.
const SHORT_REFRESH: Duration = Duration::from_secs(2);
const REGIONS: [&str; 4] = ["eu-west", "eu-central", "us-east", "ap-northeast"];

/// A replica on `store` with the controller's defaults (lease TTL 5 s, heartbeat 1 s,
/// `load_refresh` 30 s unless given) on the system clock, without missed-heartbeat removal.
async fn replica(store: Arc<dyn Store>, load_refresh: Option<Duration>) -> api_common::Harness {
    let defaults = Options::default();
    let options = Options {
        clock: Clock::System,
        load_refresh: load_refresh.unwrap_or(defaults.load_refresh),
        // Missed-heartbeat removal is `api_liveness.rs`'s subject; here a late heartbeat
        // round on a loaded test machine must not show up as a revocation.
        relay_miss_after: defaults.lease_ttl,
        ..defaults
    };
    let state = AppState::start(store, options).await;
    api_common::Harness {
        // Unused (the store is etcd); the harness wants one.
        store: MemoryStore::new(),
        app: router(state.clone()),
        state,
    }
}

/// etcd's current revision: the header revision of a read (reads do not bump it).
async fn revision(store: &EtcdStore) -> i64 {
    Store::list(store, "revision-probe/")
        .await
        .expect("etcd read")
        .revision
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

struct Relay {
    region: &'static str,
    node: String,
    lease: String,
}

impl Relay {
    fn id(&self) -> String {
        format!("{}/{}", self.region, self.node)
    }
}

/// What a heartbeat carries.
#[derive(Clone, Copy)]
struct Beat {
    allocations: u64,
    state: &'static str,
}

const STEADY: Beat = Beat {
    allocations: 100, // 100 / 1000 = 0.1 of capacity (cpu 0.05 is lower)
    state: "active",
};

fn registration(region: &str, node: &str, i: usize) -> Value {
    let host = format!("198.18.{}.{}", i / 200, 1 + i % 200);
    let ep = |port: u16| json!({"host": host, "port": port});
    json!({
        "node": node,
        "region": region,
        "addresses": {"udp": ep(3478), "tcp": ep(3478), "tls": ep(5349)},
        "transports": ["udp", "tcp", "tls"],
        "load": {"allocations": STEADY.allocations, "capacity": 1000, "cpu": 0.05},
        "version": "test"
    })
}

/// One heartbeat per relay, all at once; `beat(i)` says what relay `i` reports. Returns
/// how many answers said `"written": true`.
async fn round(h: &api_common::Harness, fleet: &[Relay], beat: impl Fn(usize) -> Beat) -> usize {
    let calls = fleet.iter().enumerate().map(|(i, r)| {
        let b = beat(i);
        let body = json!({
            "region": r.region, "node": r.node, "lease": r.lease, "state": b.state,
            "load": {"allocations": b.allocations, "capacity": 1000, "cpu": 0.05},
        });
        h.call(
            Req::post("/v1/relays/heartbeat")
                .bearer(NODE_KEY)
                .json(body),
        )
    });
    let answers = join_all(calls).await;
    let mut written = 0;
    for (r, a) in fleet.iter().zip(&answers) {
        assert_eq!(
            a.status,
            StatusCode::OK,
            "heartbeat of {}: {}",
            r.id(),
            a.text
        );
        if a.json["written"] == json!(true) {
            written += 1;
        }
    }
    written
}

/// Runs `rounds` heartbeat rounds, each one heartbeat interval (real time) after the
/// previous, the first one interval from now; returns the `written: true` answers.
async fn rounds(
    h: &api_common::Harness,
    fleet: &[Relay],
    rounds: usize,
    beat: impl Fn(usize, usize) -> Beat,
) -> usize {
    let period = h.state.options.heartbeat_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = 0;
    for k in 0..rounds {
        tick.tick().await;
        written += round(h, fleet, |i| beat(k, i)).await;
    }
    written
}

/// Waits (bounded) until `h`'s view shows relay `id` with `allocations` and `state`.
async fn view_shows(h: &api_common::Harness, id: &str, allocations: u64, state: &str) {
    let seen = h.state.snapshots.wait_view(|v| {
        v.relays
            .get(id)
            .is_some_and(|r| r.load.allocations == allocations && r.state.as_str() == state)
    });
    tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .unwrap_or_else(|_| panic!("the view never showed {id} with {allocations} allocations"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_write_only_material_changes_and_refreshes() {
    let Some(store) = support::etcd_store("write-rate").await else {
        return;
    };
    let prefix = store.prefix().to_owned();
    let etcd = support::shared_etcd().await.expect("etcd");
    let b_store = support::store_for(etcd, &prefix).await;
    let b = api_common::test_bootstrap();
    bootstrap(&store, &b, unix_now()).await.expect("bootstrap");
    let a = replica(Arc::new(store.clone()), None).await;
    let refresh = a.state.options.load_refresh.as_secs();
    assert_eq!(refresh, 30, "the default load_refresh");
    assert_eq!(a.state.options.lease_ttl, Duration::from_secs(5));
    assert_eq!(a.state.options.heartbeat_interval, Duration::from_secs(1));

    // --- Registration: one put per relay.
    let rev_start = revision(&store).await;
    let registered_at = unix_now(); // no record's updated_at is older than this
    let a_ref = &a;
    let calls = (0..N).map(|i| {
        let region = REGIONS[i % REGIONS.len()];
        let node = format!("n{i:03}");
        let body = registration(region, &node, i);
        async move {
            let r = a_ref
                .call(Req::post("/v1/relays/register").bearer(NODE_KEY).json(body))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            let lease = r.json["lease"].as_str().expect("lease").to_owned();
            Relay {
                region,
                node,
                lease,
            }
        }
    });
    let fleet: Vec<Relay> = join_all(calls).await;
    let rev_registered = revision(&store).await;
    eprintln!(
        "registration of {N} relays: {} revisions",
        rev_registered - rev_start
    );
    assert_eq!(
        rev_registered - rev_start,
        N as i64,
        "one put per registration"
    );

    // --- Steady load through replica a (load_refresh 30 s).
    let started = tokio::time::Instant::now();
    let written = rounds(&a, &fleet, STEADY_ROUNDS, |_, _| STEADY).await;
    let elapsed = started.elapsed();
    let rev_steady = revision(&store).await;
    let last_beat = unix_now();
    let steady = rev_steady - rev_registered;
    // A relay's record is rewritten when `now >= updated_at + refresh`; updated_at is at
    // least `registered_at`, so over this span each relay is refreshed at most
    // span / refresh times (0 while the span is under 30 s).
    let span = last_beat - registered_at;
    let bound = (N as u64 * (span / refresh)) as i64;
    let beats = (N * STEADY_ROUNDS) as f64;
    eprintln!(
        "steady: {N} relays x {STEADY_ROUNDS} rounds = {beats} heartbeats in {elapsed:?}: \
         {steady} revisions ({:.4} per relay per second; bound from load_refresh {refresh} s \
         over a {span} s span: {bound}); {:.1} heartbeats/s, each a lease keep-alive",
        steady as f64 / N as f64 / elapsed.as_secs_f64(),
        beats / elapsed.as_secs_f64(),
    );
    assert!(
        steady <= bound,
        "steady heartbeats caused {steady} revisions (bound {bound})"
    );
    assert_eq!(
        steady, written as i64,
        "revisions = heartbeats answered written"
    );

    // --- A material load change of one relay (0.1 → 0.3): exactly one put, then nothing
    // while it stays; a change below 0.1 (0.1 → 0.15) of another relay: no put.
    let (moved, nudged) = (0, 1);
    let beat = |i: usize| match i {
        _ if i == moved => Beat {
            allocations: 300,
            state: "active",
        },
        _ if i == nudged => Beat {
            allocations: 150,
            state: "active",
        },
        _ => STEADY,
    };
    let written = round(&a, &fleet, beat).await;
    view_shows(&a, &fleet[moved].id(), 300, "active").await;
    let written = written + rounds(&a, &fleet, 2, |_, i| beat(i)).await;
    let rev_load = revision(&store).await;
    eprintln!(
        "one relay's load 0.1 -> 0.3 (and another's 0.1 -> 0.15), 3 rounds: {} revisions",
        rev_load - rev_steady
    );
    // Still inside the first 30 s, so no refresh can add to the count (checked below).
    assert_eq!(
        rev_load - rev_steady,
        1,
        "a material load change: exactly one put"
    );
    assert_eq!(rev_load - rev_steady, written as i64);

    // --- A state change (active → draining) of one relay: exactly one put, and none for
    // the draining heartbeats after it.
    let drained = 2;
    let beat = |i: usize| match i {
        _ if i == drained => Beat {
            allocations: STEADY.allocations,
            state: "draining",
        },
        _ if i == moved => Beat {
            allocations: 300,
            state: "active",
        },
        _ if i == nudged => Beat {
            allocations: 150,
            state: "active",
        },
        _ => STEADY,
    };
    let written = round(&a, &fleet, beat).await;
    view_shows(&a, &fleet[drained].id(), STEADY.allocations, "draining").await;
    let written = written + rounds(&a, &fleet, 2, |_, i| beat(i)).await;
    let rev_state = revision(&store).await;
    eprintln!(
        "one relay active -> draining, 3 rounds: {} revisions",
        rev_state - rev_load
    );
    assert!(
        unix_now() - registered_at < refresh,
        "the run took too long for the 30 s refresh to stay out of the counts"
    );
    assert_eq!(rev_state - rev_load, 1, "a state change: exactly one put");
    assert_eq!(rev_state - rev_load, written as i64);

    // --- The refresh itself: a second replica on the same etcd with load_refresh 2 s.
    // Heartbeats through it keep the leases (they live in etcd) and rewrite each record
    // once its stored `updated_at` is 2 s old: per relay at most span / 2 over the span
    // since registration, i.e. about N / 2 per second for the whole fleet.
    let b = replica(Arc::new(b_store), Some(SHORT_REFRESH)).await;
    let seen = b.state.snapshots.wait_view(|v| v.relays.len() == N);
    tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("replica b sees the fleet");
    let rev_before = revision(&store).await;
    let phase_start = unix_now();
    let started = tokio::time::Instant::now();
    let written = rounds(&b, &fleet, REFRESH_ROUNDS, |_, i| beat(i)).await;
    let elapsed = started.elapsed();
    let rev_after = revision(&store).await;
    let phase_end = unix_now();
    let short = SHORT_REFRESH.as_secs();
    // A relay's writes in this phase fall on Unix seconds w1 < w2 < … with
    // w1 >= phase_start, w(k+1) >= w(k) + short and wk <= phase_end, so each relay is
    // written at most 1 + (phase_end - phase_start) / short times.
    let bound = (N as u64 * (1 + (phase_end - phase_start) / short)) as i64;
    let refreshed = rev_after - rev_before;
    eprintln!(
        "load_refresh {short} s: {N} relays x {REFRESH_ROUNDS} rounds in {elapsed:?}: \
         {refreshed} revisions = {:.3} per relay per second (bound from the rule over a \
         {} s phase: {bound})",
        refreshed as f64 / N as f64 / elapsed.as_secs_f64(),
        phase_end - phase_start,
    );
    assert_eq!(
        refreshed, written as i64,
        "revisions = heartbeats answered written"
    );
    assert!(
        refreshed <= bound,
        "{refreshed} refresh writes > bound {bound}"
    );
    // Every record is at least 2 s old when this phase starts (its last write was in an
    // earlier phase, at least two heartbeat intervals ago), so each relay is written in its
    // first heartbeat here.
    assert!(
        refreshed >= N as i64,
        "each relay refreshed at least once in {elapsed:?}: {refreshed} writes"
    );
}
