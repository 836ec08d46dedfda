//! Our relay driven by the webrtc-rs `turn` crate's client (the TURN client of
//! webrtc-rs): allocate with REST credentials, learn the mapped address,
//! create a permission, relay to a UDP echo peer and get every echo back intact.
//! The client sends its first packets as Send indications and switches to
//! ChannelData once its ChannelBind succeeds, so both paths are exercised.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::net::UdpSocket;
use tokio::time::timeout;
use webrtc_util::Conn;

const STEP: Duration = Duration::from_secs(10);

/// Aborts the task when dropped, so no task outlives its test.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A UDP echo peer on 127.0.0.1 recording who sent to it.
async fn echo_peer() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>, AbortOnDrop) {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind echo peer");
    let addr = sock.local_addr().expect("echo peer address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_task = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if let Ok(mut s) = seen_in_task.lock() {
                s.push(from);
            }
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, seen, AbortOnDrop(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_client_allocates_permits_and_relays() {
    let relay = tokio::task::spawn_blocking(|| Relay::start(RelayConfig::new(slot::WEBRTC_RS)))
        .await
        .expect("start relay");
    let (peer_addr, peer_saw, _peer_task) = echo_peer().await;
    let (username, password) = relay.credentials("webrtc-rs");
    let (client, local) = turn_client(&relay, username, password).await;

    let mapped = timeout(STEP, client.send_binding_request())
        .await
        .expect("binding request timed out")
        .expect("binding request failed");
    assert_eq!(
        mapped, local,
        "XOR-MAPPED-ADDRESS is the client's own address on loopback"
    );

    let relay_conn = timeout(STEP, client.allocate())
        .await
        .expect("allocate timed out")
        .expect("allocate failed");
    let relayed = relay_conn.local_addr().expect("relayed address");
    assert_eq!(
        relayed.ip().to_string(),
        "127.0.0.1",
        "relayed address {relayed}"
    );
    assert!(
        (relay.min_port..=relay.max_port).contains(&relayed.port()),
        "relayed port {} outside --min-port/--max-port {}..={}",
        relayed.port(),
        relay.min_port,
        relay.max_port
    );

    const ROUNDS: usize = 30;
    let tag = random_token("");
    let mut buf = vec![0u8; 2048];
    for i in 0..ROUNDS {
        // Varied lengths, including ones that are not a multiple of 4
        // (ChannelData padding), and content unique to this round.
        let mut payload = format!("round {i} of {tag} ").into_bytes();
        payload.resize(payload.len() + (i * 37) % 300, b'a' + (i % 26) as u8);
        timeout(STEP, relay_conn.send_to(&payload, peer_addr))
            .await
            .expect("send timed out")
            .expect("send through the relay failed");
        let (n, from) = timeout(STEP, relay_conn.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no echo for round {i}"))
            .expect("receive through the relay failed");
        assert_eq!(
            from, peer_addr,
            "echo of round {i} attributed to the wrong peer"
        );
        assert_eq!(&buf[..n], &payload[..], "echo of round {i} altered");
        // Give the client's background ChannelBind time to finish, so later
        // rounds travel as ChannelData.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    {
        let saw = peer_saw.lock().expect("peer record");
        assert_eq!(saw.len(), ROUNDS, "packets that reached the peer");
        assert!(
            saw.iter().all(|a| *a == relayed),
            "the peer must see only the relayed address {relayed}, saw {saw:?}"
        );
    }

    if relay.has_metrics() {
        let relay = Arc::new(relay);
        let r = Arc::clone(&relay);
        tokio::task::spawn_blocking(move || {
            r.wait_metrics("30 packets each way, a ChannelBind, Send indications", |m| {
                m.sum("nexrtc_relay_packets_total", &[("direction", "to_peer")]) >= ROUNDS as f64
                    && m.sum("nexrtc_relay_packets_total", &[("direction", "to_client")])
                        >= ROUNDS as f64
                    // The first packet goes as a Send indication, the later ones
                    // as ChannelData once the client's ChannelBind succeeded.
                    && m.sum("nexrtc_relay_requests_total", &[("method", "channel_bind")]) >= 1.0
                    && m.sum("nexrtc_relay_requests_total", &[("method", "send")]) >= 1.0
            });
        })
        .await
        .expect("metrics check");
    }

    relay_conn
        .close()
        .await
        .expect("close relay conn (Refresh lifetime 0)");
    client.close().await.expect("close client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_client_rejected_with_wrong_password() {
    let relay = tokio::task::spawn_blocking(|| {
        Relay::start(RelayConfig::new(slot::WEBRTC_RS_WRONG_PASSWORD))
    })
    .await
    .expect("start relay");
    let (username, _) = relay.credentials("mallory");
    let wrong = turn_core::auth::rest_password(b"not the secret", &username);
    let (client, _) = turn_client(&relay, username, wrong).await;
    let result = timeout(Duration::from_secs(30), client.allocate())
        .await
        .expect("allocate neither succeeded nor failed in 30 s");
    assert!(
        result.is_err(),
        "allocation with a wrong password must fail"
    );
    client.close().await.expect("close client");

    if relay.has_metrics() {
        tokio::task::spawn_blocking(move || {
            relay.wait_metrics("an auth failure", |m| {
                m.sum("nexrtc_relay_auth_failures_total", &[]) >= 1.0
            });
        })
        .await
        .expect("metrics check");
    }
}
