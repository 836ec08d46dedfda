//! Load of a coturn node, for an agent running standalone beside it: scraped
//! from its Prometheus endpoint ([`CoturnLoad`], coturn's `--prometheus`, port
//! 9641), or, for a coturn built without Prometheus (Debian's package), only its
//! health from STUN Binding requests to its listening port ([`StunHealth`]).
//!
//! A scrape must be coturn's: an endpoint that refuses the connection, answers
//! something that is not Prometheus text, or Prometheus text without coturn's
//! families (a NexRTC relay's `/metrics`, also on port 9641 by default) is an
//! error that says which, and the agent does not register.
//!
//! coturn's names (`src/apps/relay/prom_server.c`): the gauge
//! `turn_total_allocations{type=…}` and the counters `turn_total_traffic_rcvp`,
//! `…_rcvb`, `…_sentp`, `…_sentb` (client side: received from / sent to clients),
//! or their per-realm twins `turn_traffic_*{realm=…}` when the totals are
//! missing. coturn adds a session's traffic when the session ends, so its
//! rates lag; a missing metric counts as 0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::{CpuMeter, LoadError, LoadSource, Rates, Sample, Totals};
use nexrtc_wire::{Load, RelayState};

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

/// The metric families of a text exposition: sample names and the names of
/// `# HELP` / `# TYPE` lines (a family with no series yet has only those).
fn families(text: &str, samples: &[PromSample]) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix('#')?.trim_start();
            let rest = rest
                .strip_prefix("HELP ")
                .or_else(|| rest.strip_prefix("TYPE "))?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .chain(samples.iter().map(|s| s.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Checks that a scrape is coturn's metrics and reads its samples; the error
/// says what it is instead.
pub fn coturn_samples(text: &str) -> Result<Vec<PromSample>, String> {
    let samples = parse_text(text);
    let families = families(text, &samples);
    if families.iter().any(|f| f.starts_with("nexrtc_")) {
        return Err(
            "this is a NexRTC relay's /metrics, not coturn's (both use port 9641 by \
             default): point --turn-metrics at coturn's Prometheus endpoint \
             (turnserver --prometheus --prometheus-port PORT)"
                .to_owned(),
        );
    }
    if families.is_empty() {
        let start: String = text.trim_start().chars().take(40).collect();
        return Err(format!(
            "not Prometheus text (it starts with {start:?}): is this coturn's \
             --prometheus endpoint?"
        ));
    }
    // coturn's families (src/apps/relay/prom_server.c): turn_total_allocations,
    // turn_traffic_*, turn_total_traffic_*, stun_binding_*.
    if !families
        .iter()
        .any(|f| f.starts_with("turn_") || f.starts_with("stun_"))
    {
        let some: Vec<&str> = families.iter().take(3).map(String::as_str).collect();
        return Err(format!(
            "Prometheus text without coturn's metric families (turn_total_allocations, \
             turn_traffic_*; it has {}): is this coturn's --prometheus endpoint?",
            some.join(", ")
        ));
    }
    Ok(samples)
}

/// A failed HTTP request in words: "connection refused" rather than a debug dump.
fn request_error(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connection refused: nothing listens there; is coturn running with \
                        --prometheus?"
                    .to_owned();
            }
        }
        source = err.source();
    }
    if e.is_timeout() {
        return "no answer within 2 s".to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
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
            .map_err(|e| scrape_err(request_error(&e)))?;
        if !response.status().is_success() {
            return Err(scrape_err(format!("HTTP {}", response.status())));
        }
        let text = response
            .text()
            .await
            .map_err(|e| scrape_err(request_error(&e)))?;
        let samples = coturn_samples(&text).map_err(scrape_err)?;
        let (allocations, totals) = coturn_totals(&samples);
        let (pps_in, pps_out, bps_in, bps_out) = self.rates.update(Instant::now(), totals);
        let load = Load {
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

    fn version(&self) -> String {
        format!("agent {} (coturn)", env!("CARGO_PKG_VERSION"))
    }
}

/// The health of a TURN server from STUN Binding requests to its listening
/// port, for a coturn without Prometheus. The load is unknown: heartbeats carry
/// the host's CPU only (allocations, traffic and capacity 0, which the
/// controller reads as "unknown": only CPU counts). A server that does not
/// answer is not vouched for: the heartbeat is skipped and the lease runs out.
#[derive(Debug)]
pub struct StunHealth {
    addr: SocketAddr,
    cpu: CpuMeter,
    /// The SOFTWARE attribute of its last answer (coturn: `Coturn-4.6.1 'Gorst'`).
    software: Option<String>,
}

/// Binding requests per health check; each waits this long for its answer.
const STUN_TRIES: u32 = 3;
const STUN_WAIT: Duration = Duration::from_millis(500);

impl StunHealth {
    /// `addr`: the server's UDP listening address, e.g. `127.0.0.1:3478`.
    pub fn new(addr: SocketAddr) -> StunHealth {
        StunHealth {
            addr,
            cpu: CpuMeter::host(),
            software: None,
        }
    }

    async fn read(&mut self) -> Result<Sample, LoadError> {
        let software = binding(self.addr).await.map_err(|reason| LoadError::Stun {
            addr: self.addr,
            reason,
        })?;
        self.software = software;
        Ok(Sample {
            load: Load {
                cpu: self.cpu.sample(),
                ..Load::default()
            },
            state: RelayState::Active,
        })
    }
}

/// One STUN Binding transaction over UDP (RFC 8489 section 6.2.1: retransmitted
/// while unanswered): the SOFTWARE of the success response.
async fn binding(addr: SocketAddr) -> Result<Option<String>, String> {
    use rand::Rng;
    use turn_core::stun::{attr, Class, Message, MessageBuilder, Method, TransactionId};
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
    socket.connect(addr).await.map_err(|e| e.to_string())?;
    let txid: [u8; 12] = rand::rng().random();
    let mut request = MessageBuilder::new(Method::BINDING, Class::Request, TransactionId(txid));
    request.fingerprint();
    let request = request.finish();
    let mut buf = [0u8; 1500];
    let mut refused = false;
    for _ in 0..STUN_TRIES {
        if socket.send(&request).await.is_err() {
            refused = true;
        }
        let until = Instant::now() + STUN_WAIT;
        while let Ok(received) = tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
            let n = match received {
                Ok(n) => n,
                // ICMP port unreachable, reported on the connected socket.
                Err(_) => {
                    refused = true;
                    continue;
                }
            };
            let Ok(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            if msg.method() != Method::BINDING || msg.transaction_id().0 != txid {
                continue;
            }
            if msg.class() != Class::Success {
                return Err("a STUN error response to a Binding request".to_owned());
            }
            let software = msg
                .attribute(attr::SOFTWARE)
                .and_then(|a| attr::decode_utf8(a.value).ok())
                .map(str::to_owned);
            return Ok(software);
        }
    }
    Err(if refused {
        "port unreachable: is the TURN server listening there (UDP)?".to_owned()
    } else {
        format!(
            "no answer to {STUN_TRIES} Binding requests in {} ms",
            (STUN_WAIT * STUN_TRIES).as_millis()
        )
    })
}

impl LoadSource for StunHealth {
    fn sample(&mut self) -> impl Future<Output = Result<Sample, LoadError>> + Send {
        self.read()
    }

    fn version(&self) -> String {
        let agent = env!("CARGO_PKG_VERSION");
        match &self.software {
            Some(s) => format!("{s} (agent {agent})"),
            None => format!("agent {agent} (coturn)"),
        }
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
    fn only_coturn_text_is_taken() {
        assert_eq!(
            coturn_samples(COTURN).map(|s| s.len()),
            Ok(parse_text(COTURN).len())
        );
        // Families with no series yet still mark coturn's endpoint.
        let fresh = "# HELP turn_total_allocations x\n# TYPE turn_total_allocations gauge\n";
        assert_eq!(coturn_samples(fresh), Ok(Vec::new()));
        let ours =
            "# TYPE nexrtc_relay_allocations_active gauge\nnexrtc_relay_allocations_active 0\n";
        let e = coturn_samples(ours).unwrap_err();
        assert!(e.contains("NexRTC relay's /metrics, not coturn's"), "{e}");
        let e = coturn_samples("<html>hello</html>").unwrap_err();
        assert!(e.contains("not Prometheus text"), "{e}");
        let e = coturn_samples("node_cpu_seconds_total 1\n").unwrap_err();
        assert!(e.contains("without coturn's metric families"), "{e}");
    }

    #[test]
    fn per_realm_counters_stand_in_for_missing_totals() {
        let s =
            parse_text("turn_traffic_sentb{realm=\"a\"} 10\nturn_traffic_sentb{realm=\"b\"} 5\n");
        assert_eq!(coturn_totals(&s).1.bytes_out, 15);
        assert_eq!(coturn_totals(&[]), (0, Totals::default()));
    }
}
