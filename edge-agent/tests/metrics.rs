//! The agent's metrics, read from its own registry (`AgentHandle::metrics`, what the
//! process serves), against the real controller: heartbeats, renewals, a replica
//! failover's stream reconnect, and probe RTTs by target region against a tiny STUN
//! responder.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harness::{Controller, Replica, TOKEN};
use nexrtc_edge_agent::{metric, spawn, AgentConfig, LoadError, LoadSource, LogOnly, Sample};
use turn_core::stun::{attr, Class, Message, MessageBuilder, Method};

struct Idle;

impl LoadSource for Idle {
    fn sample(&mut self) -> impl std::future::Future<Output = Result<Sample, LoadError>> + Send {
        std::future::ready(Ok(Sample::default()))
    }
}

/// Answers STUN Binding requests on 127.0.0.1 (turn-core's codec).
async fn stun_responder() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            if msg.method() != Method::BINDING || msg.class() != Class::Request {
                continue;
            }
            let mut answer =
                MessageBuilder::new(Method::BINDING, Class::Success, msg.transaction_id());
            answer.xor_address(attr::XOR_MAPPED_ADDRESS, from);
            let _ = socket.send_to(&answer.finish(), from).await;
        }
    });
    (addr, task)
}

/// Counter totals, gauge values and summary sample counts (`_count`), by (name, region
/// label), from one scrape of the agent's registry.
struct Seen(String);

impl Seen {
    fn get(&self, name: &str, region: &str) -> u64 {
        let count = format!("{name}_count");
        let mut total = 0.0;
        for line in self
            .0
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            let series_region = labels
                .split_once("region=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("", |(r, _)| r);
            let quantile = labels.contains("quantile=");
            if (metric == name || metric == count) && series_region == region && !quantile {
                total += value.parse::<f64>().unwrap();
            }
        }
        total as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_failover_and_probes_are_counted() {
    let (stun, _responder) = stun_responder().await;
    let controller = Controller::new(50, "s1").await;
    // The probe target the registration answer names.
    controller.put_relay("us-east", "r2", stun).await;
    let a = Replica::start(&controller).await;
    let b = Replica::start(&controller).await;
    let mut config = AgentConfig::new(vec![a.url.clone(), b.url.clone()], TOKEN, "eu-west");
    config.node = Some("relay-1".into());
    config.advertise =
        vec![nexrtc_edge_agent::config::parse_advertised("udp:127.0.0.1:3478").unwrap()];
    config.probe_interval = 1;
    config.probe_count = 3;
    let agent = spawn(config, Idle, Arc::new(LogOnly)).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !agent.status().stream_connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stream on A within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill().await;
    let mut seen;
    loop {
        seen = Seen(agent.metrics().render());
        if seen.get(metric::STREAM_RECONNECTS, "") >= 1
            && seen.get(metric::LEASE_RENEWALS, "") >= 3
            && seen.get(metric::PROBE_RTT, "us-east") >= 3
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s:\n{}",
            seen.0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let get = |name: &str, region: &str| seen.get(name, region);
    assert_eq!(get(metric::REGISTRATIONS, ""), 1);
    assert_eq!(get(metric::REGISTERED, ""), 1);
    assert!(get(metric::HEARTBEATS_SENT, "") >= get(metric::LEASE_RENEWALS, ""));
    assert_eq!(get(metric::PROBES_LOST, "us-east"), 0);
    assert!(get(metric::PROBES_SENT, "us-east") >= 3);
    assert_eq!(get(metric::REREGISTRATIONS, ""), 0);
}
