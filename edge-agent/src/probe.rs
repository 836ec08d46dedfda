//! Latency probes: STUN Binding requests over UDP to a few relays of every
//! other region; the median RTT and the loss go to the controller.
//!
//! One round every `interval` (first one after a random part of it, so a
//! fleet restarted at once does not probe in step). Each target gets `count`
//! requests, spaced `spacing` ± 50 %, from its own connected socket; answers
//! are matched by transaction id, late ones (after `timeout` past the last
//! request) count as lost. At most [`MAX_TARGETS`] targets per round, so one
//! round sends at most `MAX_TARGETS × count` packets over about
//! `count × spacing + timeout`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng as _;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;
use turn_core::stun::{Class, Message, MessageBuilder, Method, TransactionId};

use nexrtc_metrics::Registry;
use nexrtc_wire::{ProbeResult, ProbeTarget};

/// Targets probed per round, at most.
pub const MAX_TARGETS: usize = 32;

/// How one round probes a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Requests per target.
    pub count: u32,
    /// Mean time between two requests to one target.
    pub spacing: Duration,
    /// How long to wait for answers after the last request.
    pub timeout: Duration,
    /// The local address to probe from (a multi-homed host); `None`: the system's choice.
    pub bind: Option<std::net::IpAddr>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            count: 5,
            spacing: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            bind: None,
        }
    }
}

/// What the probes to one address measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    pub sent: u32,
    /// Round-trip times of the answered requests.
    pub rtts: Vec<Duration>,
}

impl ProbeStats {
    /// Share of requests unanswered (1 when none could be sent).
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - self.rtts.len() as f64 / f64::from(self.sent)
    }

    pub fn median(&self) -> Option<Duration> {
        let mut v = self.rtts.clone();
        v.sort_unstable();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
        }
    }
}

/// Probes one address (UDP, STUN Binding).
pub async fn probe_addr(addr: SocketAddr, settings: ProbeSettings) -> ProbeStats {
    let mut stats = ProbeStats::default();
    let local: SocketAddr = match settings.bind {
        Some(ip) => (ip, 0).into(),
        None if addr.is_ipv4() => ([0, 0, 0, 0], 0).into(),
        None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("probe: cannot bind a UDP socket: {e}");
            return stats;
        }
    };
    if let Err(e) = socket.connect(addr).await {
        tracing::debug!("probe: cannot reach {addr}: {e}");
        return stats;
    }
    let mut outstanding: HashMap<[u8; 12], Instant> = HashMap::new();
    let mut buf = [0u8; 1500];
    for i in 0..settings.count {
        let txid: [u8; 12] = rand::rng().random();
        let mut request = MessageBuilder::new(Method::BINDING, Class::Request, TransactionId(txid));
        request.fingerprint();
        let sent_at = Instant::now();
        // An error (e.g. ICMP port unreachable on a connected socket) is a lost probe.
        let _ = socket.send(&request.finish()).await;
        stats.sent += 1;
        outstanding.insert(txid, sent_at);
        let wait = if i + 1 == settings.count {
            settings.timeout
        } else {
            jittered(settings.spacing)
        };
        let until = sent_at + wait;
        while let Ok(received) = tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
            let Ok(n) = received else { continue };
            if let Some(rtt) = match_answer(&buf[..n], &mut outstanding) {
                stats.rtts.push(rtt);
            }
            if i + 1 == settings.count && outstanding.is_empty() {
                break;
            }
        }
    }
    stats
}

/// `spacing` ± 50 %.
fn jittered(spacing: Duration) -> Duration {
    let ms = u64::try_from(spacing.as_millis())
        .unwrap_or(u64::MAX)
        .max(2);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms + ms / 2))
}

/// A Binding success answering an outstanding request: its RTT.
fn match_answer(bytes: &[u8], outstanding: &mut HashMap<[u8; 12], Instant>) -> Option<Duration> {
    let msg = Message::parse(bytes).ok()?;
    if msg.method() != Method::BINDING || msg.class() != Class::Success {
        return None;
    }
    let sent = outstanding.remove(&msg.transaction_id().0)?;
    Some(sent.elapsed())
}

/// Probes every `host:port` of `stun` at once, each from its own socket (names resolved
/// within 2 s; one that does not resolve is all loss); the stats in the same order.
pub async fn measure(stun: &[String], settings: ProbeSettings) -> Vec<ProbeStats> {
    let mut set = JoinSet::new();
    for (i, stun) in stun.iter().enumerate() {
        let stun = stun.clone();
        set.spawn(async move {
            let resolved = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host(stun.clone()),
            )
            .await;
            let addr = match resolved {
                Ok(Ok(mut addrs)) => addrs.next(),
                _ => None,
            };
            let stats = match addr {
                Some(addr) => probe_addr(addr, settings).await,
                None => {
                    tracing::debug!("probe: cannot resolve {stun}");
                    ProbeStats::default()
                }
            };
            (i, stats)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(result) = joined {
            done.push(result);
        }
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, stats)| stats).collect()
}

/// One round over `targets` (at most [`MAX_TARGETS`], all at once), counted in `metrics`.
pub async fn probe_round(
    targets: &[ProbeTarget],
    settings: ProbeSettings,
    metrics: &Registry,
) -> Vec<ProbeResult> {
    let targets = &targets[..targets.len().min(MAX_TARGETS)];
    let stun: Vec<String> = targets.iter().map(|t| t.stun.clone()).collect();
    let stats = measure(&stun, settings).await;
    targets
        .iter()
        .zip(stats)
        .map(|(target, stats)| {
            record_metrics(metrics, &target.region, &stats);
            ProbeResult {
                to_region: target.region.clone(),
                to_node: target.node.clone(),
                rtt_ms: stats.median().map(|d| d.as_secs_f64() * 1000.0),
                loss: stats.loss(),
                samples: stats.sent,
            }
        })
        .collect()
}

fn record_metrics(metrics: &Registry, region: &str, stats: &ProbeStats) {
    let labels = [("region", region)];
    let histogram = metrics.histogram(crate::metric::PROBE_RTT, &labels);
    for rtt in &stats.rtts {
        histogram.record(rtt.as_secs_f64());
    }
    (metrics.counter(crate::metric::PROBES_SENT, &labels)).increment(u64::from(stats.sent));
    let lost = u64::from(stats.sent).saturating_sub(stats.rtts.len() as u64);
    metrics
        .counter(crate::metric::PROBES_LOST, &labels)
        .increment(lost);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_loss() {
        let ms = Duration::from_millis;
        let s = ProbeStats {
            sent: 5,
            rtts: vec![ms(30), ms(10), ms(20), ms(40)],
        };
        assert_eq!(s.median(), Some(ms(25)));
        assert!((s.loss() - 0.2).abs() < 1e-9);
        let odd = ProbeStats {
            sent: 3,
            rtts: vec![ms(9), ms(1), ms(5)],
        };
        assert_eq!(odd.median(), Some(ms(5)));
        assert_eq!(ProbeStats::default().loss(), 1.0);
        assert_eq!(ProbeStats::default().median(), None);
    }

    #[test]
    fn only_outstanding_binding_successes_match() {
        let txid = [7u8; 12];
        let mut outstanding = HashMap::from([(txid, Instant::now())]);
        let answer =
            MessageBuilder::new(Method::BINDING, Class::Success, TransactionId(txid)).finish();
        let other =
            MessageBuilder::new(Method::BINDING, Class::Success, TransactionId([8; 12])).finish();
        let error =
            MessageBuilder::new(Method::BINDING, Class::Error, TransactionId(txid)).finish();
        assert!(match_answer(&other, &mut outstanding).is_none());
        assert!(match_answer(&error, &mut outstanding).is_none());
        assert!(match_answer(b"junk", &mut outstanding).is_none());
        assert!(match_answer(&answer, &mut outstanding).is_some());
        // A duplicate answer is not counted twice.
        assert!(match_answer(&answer, &mut outstanding).is_none());
    }
}
