//! The one metrics mechanism of NexRTC Edge: a per-instance [`Registry`] that every
//! component (relay, controller, edge agent) records into and that its `/metrics`
//! endpoint renders as Prometheus text (format 0.0.4, [`CONTENT_TYPE`]).
//!
//! * **Per instance.** A `Registry` is a value, never a process-global recorder: each relay,
//!   controller and agent makes its own, so several of them in one process (the tests, and
//!   `nexrtc dev`) never mix their numbers.
//! * **Recorded values.** Counters, gauges and histograms are `metrics` handles registered
//!   explicitly with the registry ([`Registry::counter`], [`Registry::gauge`],
//!   [`Registry::histogram`]); the `metrics` macros and their global recorder are not used.
//! * **Read at scrape time.** A [`Collector`] fills a registry made for that one scrape:
//!   the relay sums its workers' single-writer counters there, so nothing on the packet path
//!   changes and nothing is left over from an earlier scrape.
//! * **Composition.** [`Registry::register`] adds another registry's families to this one's
//!   exposition (the relay's `/metrics` shows its in-process agent's metrics that way): each
//!   registry renders whole families of its own, so no text is filtered or spliced.
//!
//! # Why `metrics-exporter-prometheus` under it (and not `prometheus-client`)
//!
//! Operators' dashboards depend on every family's name, type, labels and HELP text, which
//! this exporter already produced for the controller and the agent. `prometheus-client`
//! could not keep them: it has no summary type (the agent's
//! `nexrtc_agent_probe_rtt_seconds` is a summary), its registry appends a full stop to every
//! HELP text, and its default encoder writes OpenMetrics (`# EOF`, counters' `TYPE` lines
//! without `_total`). Keeping the exporter and making its recorder per instance changes no
//! family; the relay, which rendered its text by hand, now renders through the same
//! exporter.
//!
//! # The format
//!
//! Prometheus text exposition 0.0.4, as the exporter writes it: per family `# HELP` (when
//! described) and `# TYPE` lines, then its samples, then an empty line; families in no
//! particular order; counters as integers, gauges as decimals (`1`, `0.5`, `-1`);
//! histograms as `_bucket{le=…}`, `_sum`, `_count`, and histograms without configured
//! buckets as summaries (`{quantile=…}`, `_sum`, `_count`). A family without a sample is
//! not written. Label values escape `"`, newlines and backslashes (a backslash already
//! followed by `\` or `"` is taken as an escape). No `# EOF`.

pub mod process;

use std::sync::{Arc, Mutex, PoisonError};

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

pub use metrics::{Counter, Gauge, Histogram};

/// The `Content-Type` of every `/metrics` answer: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Fills a registry at scrape time (see [`Registry::register_collector`]).
pub trait Collector: Send + Sync {
    /// Describes and sets this collector's families in `scrape`, a registry made for this
    /// one scrape.
    fn collect(&self, scrape: &Registry);
}

/// One component instance's metrics. Cloning shares the registry.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
    children: Mutex<Vec<Registry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry; its histograms are rendered as summaries.
    pub fn new() -> Registry {
        Registry::from_builder(PrometheusBuilder::new())
    }

    /// An empty registry whose histogram `name` has these bucket bounds (other histograms
    /// are rendered as summaries).
    pub fn with_buckets(name: &str, buckets: &[f64]) -> Registry {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            // Only an empty list is refused: then no buckets, as without this call.
            .unwrap_or_else(|_| PrometheusBuilder::new());
        Registry::from_builder(builder)
    }

    fn from_builder(builder: PrometheusBuilder) -> Registry {
        Registry(Arc::new(Inner {
            recorder: builder.build_recorder(),
            collectors: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        }))
    }

    /// The HELP text of family `name` (the first description of a name stays).
    pub fn describe(&self, name: &'static str, help: &'static str) {
        // One description table for every type: the exporter keys it by name.
        self.0
            .recorder
            .describe_counter(name.into(), None, help.into());
    }

    /// The counter `name{labels}` (registered on first use).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.0
            .recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name{labels}` (registered on first use).
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.0
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name{labels}` (registered on first use).
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.0
            .recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Adds a collector: at each [`render`](Registry::render) it fills a fresh registry whose
    /// families are written first.
    pub fn register_collector(&self, collector: Arc<dyn Collector>) {
        lock(&self.0.collectors).push(collector);
    }

    /// Adds `other`'s families to this registry's exposition, after its own. `other` must
    /// not contain this registry.
    pub fn register(&self, other: Registry) {
        lock(&self.0.children).push(other);
    }

    /// The exposition: the collectors' families, this registry's, then the registered
    /// registries'.
    pub fn render(&self) -> String {
        let collectors = lock(&self.0.collectors).clone();
        let mut out = String::new();
        if !collectors.is_empty() {
            let scrape = Registry::new();
            for c in &collectors {
                c.collect(&scrape);
            }
            out.push_str(&scrape.render());
        }
        out.push_str(&self.0.recorder.handle().render());
        let children = lock(&self.0.children).clone();
        for child in &children {
            out.push_str(&child.render());
        }
        out
    }

    /// Folds recorded histogram samples into their distributions; call every few seconds
    /// where histograms are recorded often ([`render`](Registry::render) does it too).
    pub fn run_upkeep(&self) {
        self.0.recorder.handle().run_upkeep();
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn instances_do_not_mix() {
        let (a, b) = (Registry::new(), Registry::new());
        a.describe("x_total", "Things.");
        a.counter("x_total", &[("tenant", "t")]).increment(2);
        b.counter("x_total", &[("tenant", "t")]).increment(5);
        let text = a.render();
        assert_eq!(line(&text, "x_total{"), Some("x_total{tenant=\"t\"} 2"));
        assert!(text.contains("# HELP x_total Things.\n# TYPE x_total counter\n"));
        assert_eq!(
            line(&b.render(), "x_total{"),
            Some("x_total{tenant=\"t\"} 5")
        );
    }

    struct Fixed(u64);

    impl Collector for Fixed {
        fn collect(&self, scrape: &Registry) {
            scrape.describe("y", "A gauge.");
            scrape.gauge("y", &[]).set(self.0 as f64);
            scrape.counter("z_total", &[]).absolute(self.0);
        }
    }

    #[test]
    fn collectors_fill_each_scrape_afresh_and_registries_compose() {
        let relay = Registry::new();
        relay.register_collector(Arc::new(Fixed(3)));
        let agent = Registry::new();
        agent.gauge("agent_up", &[]).set(1.0);
        relay.register(agent.clone());
        for _ in 0..2 {
            let text = relay.render();
            assert_eq!(line(&text, "y "), Some("y 3"), "{text}");
            assert_eq!(line(&text, "z_total "), Some("z_total 3"), "{text}");
            assert_eq!(line(&text, "agent_up "), Some("agent_up 1"), "{text}");
            assert_eq!(text.matches("# TYPE y gauge").count(), 1, "{text}");
        }
        assert!(!agent.render().contains("z_total"));
    }

    #[test]
    fn histograms_are_summaries_unless_given_buckets() {
        let plain = Registry::new();
        plain.histogram("rtt_seconds", &[]).record(0.5);
        let text = plain.render();
        assert!(text.contains("# TYPE rtt_seconds summary\n"), "{text}");
        assert!(text.contains("rtt_seconds_count 1\n"), "{text}");

        let bucketed = Registry::with_buckets("d_seconds", &[0.1, 1.0]);
        bucketed
            .histogram("d_seconds", &[("route", "/")])
            .record(0.5);
        let text = bucketed.render();
        assert!(text.contains("# TYPE d_seconds histogram\n"), "{text}");
        assert!(
            text.contains("d_seconds_bucket{route=\"/\",le=\"1\"} 1\n"),
            "{text}"
        );
    }
}
