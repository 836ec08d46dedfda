//! Load of a coturn node, scraped from its Prometheus endpoint (`--prometheus`,
//! port 9641), for an agent running standalone beside it.
//!
//! coturn's names (`src/apps/relay/prom_server.c`): the gauge
//! `turn_total_allocations{type=…}` and the counters `turn_total_traffic_rcvp`,
//! `…_rcvb`, `…_sentp`, `…_sentb` (client side: received from / sent to clients),
//! or their per-realm twins `turn_traffic_*{realm=…}` when the totals are
//! missing. coturn adds a session's traffic when the session ends, so its
//! rates lag; a missing metric counts as 0.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::{CpuMeter, LoadError, LoadSource, Rates, Sample, Totals};
use crate::wire::{LoadReport, RelayState};

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Reads the samples of a Prometheus text exposition (format 0.0.4), minimally:
/// comments and lines it cannot read are skipped, never an error.
pub fn parse_text(text: &str) -> Vec<PromSample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<PromSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(PromSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"}` → labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, rest) = s.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        s = &rest[1 + end + 1..];
    }
}

/// The sum of every series of `name` (`None` if there is none).
pub fn sum(samples: &[PromSample], name: &str) -> Option<f64> {
    let mut found = false;
    let total = samples
        .iter()
        .filter(|s| s.name == name)
        .inspect(|_| found = true)
        .map(|s| s.value)
        .sum();
    found.then_some(total)
}

/// coturn's allocations and client-side traffic counters.
pub fn coturn_totals(samples: &[PromSample]) -> (u64, Totals) {
    let counter = |what: &str| {
        sum(samples, &format!("turn_total_traffic_{what}"))
            .or_else(|| sum(samples, &format!("turn_traffic_{what}")))
            .unwrap_or(0.0)
            .max(0.0) as u64
    };
    let allocations = sum(samples, "turn_total_allocations")
        .unwrap_or(0.0)
        .max(0.0) as u64;
    let totals = Totals {
        packets_in: counter("rcvp"),
        bytes_in: counter("rcvb"),
        packets_out: counter("sentp"),
        bytes_out: counter("sentb"),
    };
    (allocations, totals)
}

/// Scrapes coturn's metrics once per heartbeat.
#[derive(Debug)]
pub struct CoturnLoad {
    http: reqwest::Client,
    url: String,
    capacity: u64,
    rates: Rates,
    cpu: CpuMeter,
}

impl CoturnLoad {
    /// `url`: coturn's metrics, e.g. `http://127.0.0.1:9641/metrics`.
    pub fn new(url: &str, capacity: u64) -> Result<CoturnLoad, crate::ClientError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::http_only_config()?)
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(CoturnLoad {
            http,
            url: url.to_owned(),
            capacity,
            rates: Rates::default(),
            cpu: CpuMeter::host(),
        })
    }

    async fn read(&mut self) -> Result<Sample, LoadError> {
        let scrape_err = |reason: String| LoadError::Scrape {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| scrape_err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(scrape_err(response.status().to_string()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| scrape_err(e.to_string()))?;
        let (allocations, totals) = coturn_totals(&parse_text(&text));
        let (pps_in, pps_out, bps_in, bps_out) = self.rates.update(Instant::now(), totals);
        let load = LoadReport {
            allocations,
            capacity: self.capacity,
            pps_in,
            pps_out,
            bps_in,
            bps_out,
            cpu: self.cpu.sample(),
        };
        // coturn has no drain state to read; the agent reports a drain it was ordered.
        Ok(Sample {
            load,
            state: RelayState::Active,
        })
    }
}

impl LoadSource for CoturnLoad {
    fn sample(&mut self) -> impl Future<Output = Result<Sample, LoadError>> + Send {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape coturn 4.6 serves (prometheus-client-c), trimmed.
    const COTURN: &str = r#"# HELP stun_binding_request Incoming STUN Binding requests
# TYPE stun_binding_request counter
stun_binding_request 12
# HELP turn_traffic_rcvp Represents finished sessions received packets
# TYPE turn_traffic_rcvp counter
turn_traffic_rcvp{realm="example.org"} 700
turn_traffic_rcvp{realm="other"} 300
# TYPE turn_total_traffic_rcvp counter
turn_total_traffic_rcvp 1000
turn_total_traffic_rcvb 120000
turn_total_traffic_sentp 900
# TYPE turn_total_allocations gauge
turn_total_allocations{type="UDP"} 3
turn_total_allocations{type="TCP"} 2
weird{a="x\"y",b="z\\"} 1 1700000000000
garbage line {
"#;

    #[test]
    fn parses_coturn_text() {
        let s = parse_text(COTURN);
        assert_eq!(sum(&s, "stun_binding_request"), Some(12.0));
        assert_eq!(sum(&s, "turn_traffic_rcvp"), Some(1000.0));
        let weird = s.iter().find(|x| x.name == "weird").unwrap();
        assert_eq!(
            weird.labels,
            vec![("a".into(), "x\"y".into()), ("b".into(), "z\\".into())]
        );
        let (allocations, t) = coturn_totals(&s);
        assert_eq!(allocations, 5);
        assert_eq!(
            t,
            Totals {
                packets_in: 1000,
                bytes_in: 120000,
                packets_out: 900,
                bytes_out: 0, // missing: 0
            }
        );
    }

    #[test]
    fn per_realm_counters_stand_in_for_missing_totals() {
        let s =
            parse_text("turn_traffic_sentb{realm=\"a\"} 10\nturn_traffic_sentb{realm=\"b\"} 5\n");
        assert_eq!(coturn_totals(&s).1.bytes_out, 15);
        assert_eq!(coturn_totals(&[]), (0, Totals::default()));
    }
}
