//! The agent's metrics through the `metrics` facade (a debugging recorder
//! stands in for the process's exporter), against the real controller:
//! heartbeats, renewals, a replica failover's stream reconnect, and probe RTTs
//! by target region against a tiny STUN responder. One test: the recorder is
//! process-global.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harness::{Controller, Replica, TOKEN};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
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

/// Counter totals, gauge maxima and histogram sample counts, by (name, region
/// label). The recorder consumes every value on snapshot: they add up here.
#[derive(Default)]
struct Seen(HashMap<(String, String), u64>);

impl Seen {
    fn update(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let region = key
                .key()
                .labels()
                .find(|l| l.key() == "region")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let slot = self
                .0
                .entry((key.key().name().to_owned(), region))
                .or_default();
            match value {
                DebugValue::Counter(c) => *slot += c,
                DebugValue::Gauge(g) => *slot = (*slot).max(g.into_inner() as u64),
                DebugValue::Histogram(h) => *slot += h.len() as u64,
            }
        }
    }

    fn get(&self, name: &str, region: &str) -> u64 {
        self.0
            .get(&(name.to_owned(), region.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_failover_and_probes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    metric::describe();

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
    let mut seen = Seen::default();
    loop {
        seen.update(&snapshotter);
        if seen.get(metric::STREAM_RECONNECTS, "") >= 1
            && seen.get(metric::LEASE_RENEWALS, "") >= 3
            && seen.get(metric::PROBE_RTT, "us-east") >= 3
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {:?}",
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
