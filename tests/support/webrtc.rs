//! The webrtc-rs `turn` client, set up against one of our relays.

use std::net::SocketAddr;
use std::sync::Arc;

use webrtc_turn::client::{Client, ClientConfig};

use super::Relay;

pub async fn turn_client(
    relay: &Relay,
    username: String,
    password: String,
) -> (Client, SocketAddr) {
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind client socket");
    let local = conn.local_addr().expect("client address");
    let server = relay.addr().to_string();
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username,
        password,
        realm: relay.realm.clone(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .expect("create webrtc-rs TURN client");
    client.listen().await.expect("client listen");
    (client, local)
}
