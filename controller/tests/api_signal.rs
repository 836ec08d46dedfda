//! Signaling on real loopback sockets, driven by a WebSocket client nobody here wrote
//! (tokio-tungstenite): room tokens, refusals before the upgrade, the message protocol,
//! presence, a full room's fan-out, limits, a stalled reader, the redirect between two
//! replicas sharing one store, the handshake's Origin, revocation, expiry and refresh.

mod api_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api_common::{test_bootstrap, ADMIN_KEY, ICE_KEY, NODE_KEY, NOW, TENANT};
use futures_util::{SinkExt as _, StreamExt as _};
use nexrtc_controller::credentials::{self, TokenClaims};
use nexrtc_controller::model::{self, RateLimit, TenantRecord};
use nexrtc_controller::server::bootstrap;
use nexrtc_controller::signal::{Owner, SignalOptions};
use nexrtc_controller::store::{MemoryStore, Store};
use nexrtc_controller::{router, AppState, Options};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any one expected message.
const WAIT: Duration = Duration::from_secs(15);

/// A controller replica serving on a loopback port.
struct Replica {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Replica {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn ws_url(&self, room: &str, token: &str) -> String {
        format!("ws://{}/v1/signal?room={room}&token={token}", self.addr)
    }

    /// Mints a room token with the ice key; returns the whole answer.
    async fn mint(&self, room: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/rooms/{room}/tokens");
        http(self.addr, "POST", &path, Some(ICE_KEY), Some(body)).await
    }

    async fn token(&self, room: &str, participant: &str) -> String {
        let (status, body) = self.mint(room, json!({"participant": participant})).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Connects `participant` to `room`; returns the socket and its welcome.
    async fn join(&self, room: &str, participant: &str) -> (Ws, Value) {
        let token = self.token(room, participant).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_url(room, &token))
            .await
            .expect("connect");
        let welcome = recv(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["you"], participant);
        assert_eq!(welcome["room"], room);
        (ws, welcome)
    }
}

async fn seeded_store() -> MemoryStore {
    let store = MemoryStore::new();
    bootstrap(&store, &test_bootstrap(), NOW)
        .await
        .expect("bootstrap");
    store
}

/// Starts a replica over `store` (system clock: tokens expire in real time).
async fn start(store: &MemoryStore, signal: SignalOptions) -> Replica {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let options = Options {
        signal: SignalOptions {
            advertise_url: Some(format!("http://{addr}")),
            ..signal
        },
        ..Options::default()
    };
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let state = AppState::start(dyn_store, options).await;
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let closing = state.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
            closing.close();
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Replica {
        addr,
        state,
        stop: Some(stop),
    }
}

/// One HTTP/1.1 request (Connection: close); (status, JSON body or Null).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body) = http_text(addr, method, path, bearer, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn http_text(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(b) = bearer {
        req.push_str(&format!("authorization: Bearer {b}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let status = head.split(' ').nth(1).expect("status");
    (status.parse().expect("status code"), body.to_owned())
}

/// The next text message (pings and pongs skipped), within [`WAIT`].
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("readable");
        match next {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the text messages seen before.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time");
        match next {
            Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(frame))) => {
                return (seen, frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return (seen, None),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// A connection the server refused before upgrading: (status, Location, JSON body).
async fn refused(
    request: impl tungstenite::client::IntoClientRequest + Unpin,
) -> (u16, Option<String>, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => {
            let location = (response.headers().get("location"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (response.status().as_u16(), location, json)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
    }
}

async fn tenant_key(store: &MemoryStore) -> String {
    let kv = Store::get(store, &format!("tenants/{TENANT}"))
        .await
        .expect("get")
        .expect("tenant");
    let tenant: TenantRecord = model::decode("", &kv.value).expect("tenant record");
    tenant.token_key
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_tokens_are_minted_by_ice_keys_and_carry_tenant_room_and_participant() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;

    let (status, body) = c
        .mint("Stand.up_1-a", json!({"participant": "alice", "ttl": 120}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["room"], "Stand.up_1-a");
    assert_eq!(body["participant"], "alice");
    assert_eq!(body["signal_url"], "/v1/signal?room=Stand.up_1-a");
    assert_eq!(body["ttl"], 120);
    assert!(body["expires_at"]
        .as_str()
        .expect("expires_at")
        .ends_with('Z'));
    let token = body["token"].as_str().expect("token");
    let claims = credentials::token_claims(token).expect("claims");
    assert_eq!(
        (claims.t.as_str(), claims.u.as_str(), claims.r.as_deref()),
        (TENANT, "alice", Some("Stand.up_1-a"))
    );
    let exp = claims.exp;
    assert!(
        (now_unix() + 110..=now_unix() + 130).contains(&exp),
        "{exp}"
    );
    // Signed with the tenant's token key: the one signing mechanism of client tokens.
    let key = tenant_key(&store).await;
    assert!(credentials::verify_token(token, &key, now_unix()).is_ok());

    // Defaults: a random participant id, 600 s.
    let (status, body) = c.mint("r1", json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ttl"], 600);
    let random = body["participant"].as_str().expect("participant");
    assert!(credentials::validate_room_name(random), "{random}");

    // Names and lifetimes are checked.
    for room in ["a%20b", "caf%C3%A9", "a:b", &"x".repeat(65)] {
        let (status, body) = c.mint(room, json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_room")),
            "{room}"
        );
    }
    for participant in ["", "a b", "a/b", &"p".repeat(65)] {
        let (status, body) = c.mint("r1", json!({"participant": participant})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_participant")),
            "{participant:?}"
        );
    }
    for ttl in [json!(0), json!(3601), json!("60"), json!(1.5)] {
        let (status, body) = c.mint("r1", json!({"ttl": ttl})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_ttl")),
            "{ttl}"
        );
    }
    let (status, body) = c.mint("r1", json!({"user": "x"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // Only API keys with the ice scope.
    let path = "/v1/rooms/r1/tokens";
    let (status, body) = http(c.addr, "POST", path, None, Some(json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_credentials"))
    );
    for key in [ADMIN_KEY, NODE_KEY] {
        let (status, body) = http(c.addr, "POST", path, Some(key), Some(json!({}))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden_scope"))
        );
    }
    let (status, client) = http(
        c.addr,
        "POST",
        "/v1/client-tokens",
        Some(ICE_KEY),
        Some(json!({"user": "alice"})),
    )
    .await;
    assert_eq!(status, 201);
    let client_token = client["token"].as_str().expect("token");
    let (status, body) = http(c.addr, "POST", path, Some(client_token), Some(json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    // …and a room token is no client token for the ICE API.
    let (status, body) = http(
        c.addr,
        "POST",
        "/v1/ice-servers",
        Some(token),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_key")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_is_refused_with_json_for_bad_tokens() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let key = tenant_key(&store).await;
    let sign = |room: Option<&str>, exp: u64| {
        let claims = TokenClaims {
            v: 1,
            t: TENANT.into(),
            u: "alice".into(),
            r: room.map(str::to_owned),
            exp,
            iat: None,
        };
        credentials::sign_token(&key, &claims).expect("sign")
    };
    let base = format!("ws://{}/v1/signal", c.addr);

    let cases = [
        (format!("{base}?room=r1"), 401, "missing_credentials"),
        (
            format!("{base}?room=r1&token=nxt_garbage"),
            401,
            "invalid_token",
        ),
        (
            format!("{base}?room=r1&token=nxk_notatoken"),
            401,
            "invalid_token",
        ),
        (
            format!("{base}?room=r1&token={}", sign(Some("r1"), now_unix() - 1)),
            401,
            "expired_token",
        ),
        (
            format!("{base}?room=r1&token={}", sign(None, now_unix() + 60)),
            401,
            "invalid_token",
        ),
        (
            format!("{base}?room=r1&token={}", sign(Some("r2"), now_unix() + 60)),
            403,
            "wrong_room",
        ),
        (
            format!("{base}?token={}", sign(Some("r1"), now_unix() + 60)),
            400,
            "invalid_room",
        ),
        (
            format!(
                "{base}?room=a%2Fb&token={}",
                sign(Some("r1"), now_unix() + 60)
            ),
            400,
            "invalid_room",
        ),
    ];
    for (url, status, code) in cases {
        let (got, _, body) = refused(url.as_str()).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{url}");
        assert!(body["message"].is_string());
    }
    // A token signed with another key.
    let forged = {
        let claims = TokenClaims {
            v: 1,
            t: TENANT.into(),
            u: "alice".into(),
            r: Some("r1".into()),
            exp: now_unix() + 60,
            iat: None,
        };
        credentials::sign_token(&credentials::random_b64(32), &claims).expect("sign")
    };
    let (got, _, body) = refused(format!("{base}?room=r1&token={forged}").as_str()).await;
    assert_eq!((got, body["code"].as_str()), (401, Some("invalid_token")));

    // Authorization: Bearer works as well as ?token=.
    let good = sign(Some("r1"), now_unix() + 60);
    let mut request = format!("{base}?room=r1")
        .into_client_request()
        .expect("request");
    let value = format!("Bearer {good}").parse().expect("header");
    request.headers_mut().insert("authorization", value);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(recv(&mut ws).await["type"], "welcome");

    // A plain GET is told to upgrade.
    let path = format!("/v1/signal?room=r1&token={good}");
    let (status, body) = http(c.addr, "GET", &path, None, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (426, Some("upgrade_required"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_negotiate_through_the_room() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let (mut alice, welcome) = c.join("call", "alice").await;
    assert_eq!(welcome["peers"], json!([]));
    let (mut bob, welcome) = c.join("call", "bob").await;
    assert_eq!(welcome["peers"], json!(["alice"]));
    assert_eq!(
        recv(&mut alice).await,
        json!({"type": "peer-joined", "id": "bob"})
    );

    // The payload passes through untouched; `from` is the server's word, not the client's.
    let sdp = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    send(
        &mut alice,
        json!({"type": "offer", "to": "bob", "from": "mallory", "sdp": sdp}),
    )
    .await;
    let got = recv(&mut bob).await;
    assert_eq!(
        got,
        json!({"type": "offer", "to": "bob", "from": "alice", "sdp": sdp})
    );
    send(
        &mut bob,
        json!({"type": "answer", "to": "alice", "sdp": {"type": "answer", "sdp": "v=0"}}),
    )
    .await;
    let got = recv(&mut alice).await;
    assert_eq!(
        (got["type"].as_str(), got["from"].as_str()),
        (Some("answer"), Some("bob"))
    );
    assert_eq!(got["sdp"]["sdp"], "v=0");
    let candidate = json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    send(
        &mut alice,
        json!({"type": "candidate", "to": "bob", "candidate": candidate}),
    )
    .await;
    send(
        &mut bob,
        json!({"type": "candidate", "to": "alice", "candidate": null}),
    )
    .await;
    let got = recv(&mut bob).await;
    assert_eq!(
        (got["from"].as_str(), &got["candidate"]),
        (Some("alice"), &candidate)
    );
    let got = recv(&mut alice).await;
    assert_eq!(
        (got["type"].as_str(), got["from"].as_str()),
        (Some("candidate"), Some("bob"))
    );

    // Ping, an unknown peer, a fresh welcome.
    send(&mut alice, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut alice).await, json!({"type": "pong"}));
    send(
        &mut alice,
        json!({"type": "offer", "to": "carol", "sdp": {}}),
    )
    .await;
    let err = recv(&mut alice).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("unknown_peer"))
    );
    send(&mut alice, json!({"type": "join"})).await;
    let again = recv(&mut alice).await;
    assert_eq!(
        (again["type"].as_str(), &again["peers"]),
        (Some("welcome"), &json!(["bob"]))
    );

    // A second connection as alice replaces the first: bob sees her leave and come back.
    let (mut alice2, welcome) = c.join("call", "alice").await;
    assert_eq!(welcome["peers"], json!(["bob"]));
    let (seen, code) = until_closed(&mut alice).await;
    assert_eq!(
        seen.last().map(|m| m["code"].clone()),
        Some(json!("replaced")),
        "{seen:?}"
    );
    assert_eq!(code, Some(4000));
    assert_eq!(
        recv(&mut bob).await,
        json!({"type": "peer-left", "id": "alice"})
    );
    assert_eq!(
        recv(&mut bob).await,
        json!({"type": "peer-joined", "id": "alice"})
    );
    send(&mut bob, json!({"type": "offer", "to": "alice", "sdp": {}})).await;
    assert_eq!(recv(&mut alice2).await["from"], "bob");

    // Leave: the others are told, the server closes normally.
    send(&mut bob, json!({"type": "leave"})).await;
    let (_, code) = until_closed(&mut bob).await;
    assert_eq!(code, Some(1000));
    assert_eq!(
        recv(&mut alice2).await,
        json!({"type": "peer-left", "id": "bob"})
    );
    // Vanishing without a word is a leave too, and the empty room is gone.
    let (carol, _) = c.join("call", "carol").await;
    assert_eq!(
        recv(&mut alice2).await,
        json!({"type": "peer-joined", "id": "carol"})
    );
    drop(carol);
    assert_eq!(
        recv(&mut alice2).await,
        json!({"type": "peer-left", "id": "carol"})
    );
    drop(alice2);
    let rooms = &c.state.rooms;
    for _ in 0..200 {
        if rooms.room_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rooms.room_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_fifty_fans_out_exactly_once_and_refuses_the_fifty_first() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let ids: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    let mut sockets = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (ws, welcome) = c.join("big", id).await;
        assert_eq!(welcome["peers"].as_array().expect("peers").len(), i);
        sockets.push(ws);
    }
    // Presence: participant i saw exactly the 49 − i who came after it.
    for (i, ws) in sockets.iter_mut().enumerate() {
        for later in &ids[i + 1..] {
            assert_eq!(recv(ws).await, json!({"type": "peer-joined", "id": later}));
        }
    }
    // The 51st is refused inside the protocol (browsers cannot read HTTP refusals).
    let token = c.token("big", "late").await;
    let (mut late, _) = tokio_tungstenite::connect_async(c.ws_url("big", &token))
        .await
        .expect("connect");
    let (seen, code) = until_closed(&mut late).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0]["type"].as_str(), seen[0]["code"].as_str()),
        (Some("error"), Some("room_full"))
    );
    assert_eq!(code, Some(1008));
    assert_eq!(c.state.rooms.members(&key("big")), 50);

    // Everyone sends one message to each of the 49 others: 2,450 messages.
    let started = std::time::Instant::now();
    for (i, ws) in sockets.iter_mut().enumerate() {
        for (j, to) in ids.iter().enumerate() {
            if i != j {
                send(
                    ws,
                    json!({"type": "candidate", "to": to, "candidate": {"n": i}}),
                )
                .await;
            }
        }
    }
    // Each receives exactly one from every other participant (a ping marks the end: the
    // pong comes after everything already queued for it … once the others' messages are in).
    for (j, ws) in sockets.iter_mut().enumerate() {
        let mut from = BTreeSet::new();
        for _ in 0..49 {
            let m = recv(ws).await;
            assert_eq!(m["type"], "candidate", "{m}");
            let sender = m["from"].as_str().expect("from").to_owned();
            assert_eq!(
                m["candidate"]["n"],
                ids.iter().position(|x| *x == sender).expect("known sender")
            );
            assert_eq!(m["to"], ids[j]);
            assert!(from.insert(sender), "duplicate");
        }
        assert_eq!(from.len(), 49);
        assert!(!from.contains(&ids[j]));
        send(ws, json!({"type": "ping"})).await;
        assert_eq!(
            recv(ws).await,
            json!({"type": "pong"}),
            "nothing extra for {}",
            ids[j]
        );
    }
    println!(
        "2,450 directed messages in a room of 50 delivered and checked in {:?}",
        started.elapsed()
    );
    // One leaves: the 49 others hear it exactly once.
    let gone = sockets.remove(0);
    drop(gone);
    for ws in sockets.iter_mut() {
        assert_eq!(recv(ws).await, json!({"type": "peer-left", "id": "p00"}));
        send(ws, json!({"type": "ping"})).await;
        assert_eq!(recv(ws).await, json!({"type": "pong"}));
    }
}

fn key(room: &str) -> nexrtc_controller::signal::RoomKey {
    nexrtc_controller::signal::RoomKey {
        tenant: TENANT.into(),
        room: room.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_messages_get_errors_and_the_room_keeps_working() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let (mut alice, _) = c.join("r", "alice").await;
    let (mut bob, _) = c.join("r", "bob").await;
    assert_eq!(recv(&mut alice).await["type"], "peer-joined");

    let big = "x".repeat(20 * 1024);
    send(
        &mut alice,
        json!({"type": "offer", "to": "bob", "sdp": big}),
    )
    .await;
    let err = recv(&mut alice).await;
    assert_eq!(err["code"], "message_too_large", "{err}");
    let bad: [Message; 7] = [
        Message::text("not json"),
        Message::text("[1,2,3]"),
        Message::text(r#"{"to":"bob"}"#),
        Message::text(r#"{"type":"offer","sdp":{}}"#),
        Message::text(r#"{"type":"launch","to":"bob"}"#),
        Message::text(r#"{"type":"offer","to":"alice"}"#),
        Message::binary(vec![1u8, 2, 3]),
    ];
    for m in bad {
        let shown = format!("{m:?}");
        alice.send(m).await.expect("send");
        let err = recv(&mut alice).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("bad_message")),
            "{shown}"
        );
        assert!(err["message"].is_string());
    }
    // The connection and the room still work, and bob saw none of it.
    send(
        &mut alice,
        json!({"type": "offer", "to": "bob", "sdp": "ok"}),
    )
    .await;
    let got = recv(&mut bob).await;
    assert_eq!(
        (got["type"].as_str(), got["sdp"].as_str()),
        (Some("offer"), Some("ok"))
    );

    // A message too large to read at all (over 256 KiB) closes only that connection.
    let (mut carol, _) = c.join("r", "carol").await;
    assert_eq!(recv(&mut alice).await["id"], "carol");
    assert_eq!(recv(&mut bob).await["id"], "carol");
    let _ = carol.send(Message::text("y".repeat(300 * 1024))).await;
    let _ = until_closed(&mut carol).await;
    assert_eq!(
        recv(&mut alice).await,
        json!({"type": "peer-left", "id": "carol"})
    );
    assert_eq!(
        recv(&mut bob).await,
        json!({"type": "peer-left", "id": "carol"})
    );
    send(
        &mut bob,
        json!({"type": "answer", "to": "alice", "sdp": "still here"}),
    )
    .await;
    assert_eq!(recv(&mut alice).await["sdp"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_flooding_is_refused_then_closed() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let (mut alice, _) = c.join("r", "alice").await;
    let (mut bob, _) = c.join("r", "bob").await;
    let _ = recv(&mut alice).await; // peer-joined bob
                                    // 50/s, burst 100: far more than that in a tight loop (bounded: 2,000 messages).
    let mut errors = Vec::new();
    let mut delivered = 0;
    for _ in 0..2000 {
        if bob
            .send(Message::text(
                r#"{"type":"candidate","to":"alice","candidate":null}"#,
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let (seen, code) = until_closed(&mut bob).await;
    errors.extend(seen.iter().filter(|m| m["type"] == "error").cloned());
    assert!(
        errors.iter().all(|e| e["code"] == "rate_limited"),
        "{errors:?}"
    );
    assert!(!errors.is_empty());
    assert_eq!(code, Some(1008), "closed for policy");
    // Alice got the burst (and whatever refilled meanwhile), then bob left.
    loop {
        let m = recv(&mut alice).await;
        match m["type"].as_str() {
            Some("candidate") => delivered += 1,
            Some("peer-left") => break,
            _ => panic!("{m}"),
        }
    }
    assert!((100..2000).contains(&delivered), "{delivered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_is_dropped_and_the_others_get_everything() {
    let store = seeded_store().await;
    // No rate limit worth the name here: the point is the outgoing queue.
    let signal = SignalOptions {
        rate: RateLimit {
            per_second: 1e6,
            burst: 1_000_000,
        },
        ..SignalOptions::default()
    };
    let c = start(&store, signal).await;
    let (a, _) = c.join("flood", "a").await;
    let (b, _) = c.join("flood", "b").await;
    // The stalled participant: a small receive buffer (no autotuning), never read.
    let token = c.token("flood", "stalled").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(c.addr).await.expect("connect");
    let (stalled, _) =
        tokio_tungstenite::client_async(c.ws_url("flood", &token), MaybeTlsStream::Plain(tcp))
            .await
            .expect("handshake");

    let (mut a_tx, a_rx) = a.split();
    let (mut b_tx, b_rx) = b.split();
    let stalled_gone = Arc::new(AtomicBool::new(false));
    // Each reader collects the other's sequence numbers until the other's "done".
    let reader = |mut rx: futures_util::stream::SplitStream<Ws>,
                  gone: Arc<AtomicBool>,
                  count: Arc<AtomicU64>| {
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut saw_left = false;
            loop {
                let next = tokio::time::timeout(Duration::from_secs(60), rx.next())
                    .await
                    .expect("traffic in time")
                    .expect("open")
                    .expect("readable");
                let Message::Text(t) = next else { continue };
                let m: Value = serde_json::from_str(&t).expect("json");
                match (m["type"].as_str(), m["done"].as_bool()) {
                    (Some("peer-left"), _) => {
                        assert_eq!(m["id"], "stalled");
                        saw_left = true;
                        gone.store(true, Ordering::SeqCst);
                    }
                    (Some("candidate"), Some(true)) => return (seqs, saw_left),
                    (Some("candidate"), _) => {
                        seqs.push(m["seq"].as_u64().expect("seq"));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    (Some("peer-joined"), _) => {}
                    // Offers to the stalled participant still in flight when it was dropped.
                    (Some("error"), _) if m["code"] == "unknown_peer" => {
                        assert!(saw_left, "unknown_peer before peer-left: {m}");
                    }
                    _ => panic!("unexpected {m}"),
                }
            }
        })
    };
    let (a_count, b_count) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let a_reader = reader(a_rx, stalled_gone.clone(), a_count.clone());
    let b_reader = reader(b_rx, stalled_gone.clone(), b_count.clone());
    // a and b read everything sent to them, but on a loaded machine their reader tasks may
    // lag the senders; the senders wait for them every 8 rounds, so a and b never have more
    // than 8 messages outstanding and only the participant that does not read at all fills
    // its queue.
    let caught_up = |n: u64| {
        let (a_count, b_count) = (a_count.clone(), b_count.clone());
        async move {
            let wait = async {
                while a_count.load(Ordering::SeqCst) < n || b_count.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(60), wait)
                .await
                .expect("a and b keep receiving");
        }
    };

    let payload = "z".repeat(15 * 1024);
    let mut rounds = 0u64;
    while rounds < 2000 && !stalled_gone.load(Ordering::SeqCst) {
        let to_stalled = json!({"type": "offer", "to": "stalled", "sdp": payload}).to_string();
        a_tx.send(Message::text(to_stalled.clone()))
            .await
            .expect("a send");
        b_tx.send(Message::text(to_stalled)).await.expect("b send");
        let to_b = json!({"type": "candidate", "to": "b", "seq": rounds, "pad": payload});
        let to_a = json!({"type": "candidate", "to": "a", "seq": rounds, "pad": payload});
        a_tx.send(Message::text(to_b.to_string()))
            .await
            .expect("a send");
        b_tx.send(Message::text(to_a.to_string()))
            .await
            .expect("b send");
        rounds += 1;
        if rounds.is_multiple_of(8) {
            caught_up(rounds).await;
        }
    }
    assert!(
        stalled_gone.load(Ordering::SeqCst),
        "not dropped after {rounds} rounds"
    );
    a_tx.send(Message::text(
        json!({"type": "candidate", "to": "b", "done": true}).to_string(),
    ))
    .await
    .expect("send");
    b_tx.send(Message::text(
        json!({"type": "candidate", "to": "a", "done": true}).to_string(),
    ))
    .await
    .expect("send");
    let (a_seqs, a_left) = a_reader.await.expect("a reader");
    let (b_seqs, b_left) = b_reader.await.expect("b reader");
    let all: Vec<u64> = (0..rounds).collect();
    assert_eq!(a_seqs, all, "a got every message of b, in order");
    assert_eq!(b_seqs, all, "b got every message of a, in order");
    assert!(a_left && b_left);
    assert_eq!(c.state.rooms.members(&key("flood")), 2);
    drop(stalled);
    println!("stalled participant dropped after {rounds} rounds of 15 KiB messages");

    let (status, text) = http_text(c.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("nexrtc_controller_signal_drops_total{reason=\"slow_reader\"}"),
        "{text}"
    );
    for name in [
        "nexrtc_controller_signal_rooms",
        "nexrtc_controller_signal_participants",
        "nexrtc_controller_signal_messages_total{type=\"offer\"}",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_live_on_one_replica_and_the_others_redirect_there() {
    let store = seeded_store().await;
    let one = start(&store, SignalOptions::default()).await;
    let two = start(&store, SignalOptions::default()).await;
    for r in [&one, &two] {
        assert!(
            r.state.replicas.wait_for_live(|n| n == 2, WAIT).await,
            "both registered"
        );
    }
    // Both replicas agree on every room's owner.
    let mut remote_room = None;
    let mut local_room = None;
    for i in 0..64 {
        let room = format!("room{i}");
        let (a, b) = (
            one.state.replicas.owner(TENANT, &room),
            two.state.replicas.owner(TENANT, &room),
        );
        match (&a, &b) {
            (Owner::Local, Owner::Remote(url)) => {
                assert_eq!(*url, one.url());
                local_room.get_or_insert(room);
            }
            (Owner::Remote(url), Owner::Local) => {
                assert_eq!(*url, two.url());
                remote_room.get_or_insert(room);
            }
            _ => panic!("{room}: {a:?} / {b:?}"),
        }
    }
    let (remote, local) = (
        remote_room.expect("a room of replica two"),
        local_room.expect("a room of replica one"),
    );

    // Minting on replica one names replica two for its rooms.
    let (status, body) = one.mint(&remote, json!({"participant": "alice"})).await;
    assert_eq!(status, 201);
    assert_eq!(
        body["signal_url"],
        format!("{}/v1/signal?room={remote}", two.url())
    );
    let token = body["token"].as_str().expect("token").to_owned();

    // Connecting to the wrong replica: 307 with Location and the JSON body.
    let (status, location, body) = refused(one.ws_url(&remote, &token).as_str()).await;
    assert_eq!(status, 307);
    assert_eq!(body["code"], "wrong_replica");
    let expected = format!("{}/v1/signal?room={remote}&token={token}", two.url());
    assert_eq!(location.as_deref(), Some(expected.as_str()));
    assert_eq!(body["location"], expected);
    // Following it works, and a peer arriving via the other replica meets alice there.
    let (mut alice, _) = tokio_tungstenite::connect_async(expected.replacen("http://", "ws://", 1))
        .await
        .expect("connect to the owner");
    assert_eq!(recv(&mut alice).await["type"], "welcome");
    let (mut bob, welcome) = two.join(&remote, "bob").await;
    assert_eq!(welcome["peers"], json!(["alice"]));
    assert_eq!(
        recv(&mut alice).await,
        json!({"type": "peer-joined", "id": "bob"})
    );
    send(
        &mut bob,
        json!({"type": "offer", "to": "alice", "sdp": "x"}),
    )
    .await;
    assert_eq!(recv(&mut alice).await["from"], "bob");
    // Replica one's own rooms are served by it.
    let (_carol, _) = one.join(&local, "carol").await;

    // Replica two leaves: its lease is revoked and replica one takes every room.
    two.state.replicas.deregister(&store).await;
    assert!(
        one.state.replicas.wait_for_live(|n| n == 1, WAIT).await,
        "replica two gone from the live set"
    );
    assert_eq!(one.state.replicas.owner(TENANT, &remote), Owner::Local);
    let (_dave, _) = one.join(&remote, "dave").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_while_one_answering_pings_stays() {
    let store = seeded_store().await;
    let signal = SignalOptions {
        // Fifteen ping intervals of slack: only a stall of 1.5 s on a loaded machine would
        // drop the answering connection.
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(1500),
        ..SignalOptions::default()
    };
    let c = start(&store, signal).await;
    let (mut alive, _) = c.join("idle", "alive").await;
    let (silent, _) = c.join("idle", "silent").await;
    assert_eq!(recv(&mut alive).await["id"], "silent");
    // `alive` only reads (its client answers the server's pings while reading); `silent`
    // is never polled, so it sends nothing at all, not even pongs.
    let mut pings = 0;
    let mut left = false;
    while pings < 30 || !left {
        let next = tokio::time::timeout(WAIT, alive.next())
            .await
            .expect("traffic in time")
            .expect("open")
            .expect("readable");
        match next {
            Message::Ping(_) => pings += 1,
            Message::Text(t) => {
                let m: Value = serde_json::from_str(&t).expect("json");
                assert_eq!(m, json!({"type": "peer-left", "id": "silent"}));
                left = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Thirty pings (two idle timeouts) later, the reading one is still in the room.
    send(&mut alive, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut alive).await, json!({"type": "pong"}));
    assert_eq!(c.state.rooms.members(&key("idle")), 1);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_the_same_name_in_two_tenants_never_meet() {
    const GLOBEX_KEY: &str = "nxk_globex00000000000000000000000000000000";
    let store = seeded_store().await;
    let globex = nexrtc_controller::config::Bootstrap {
        ice_key: Some(GLOBEX_KEY.into()),
        tenant: Some("globex".into()),
        ..nexrtc_controller::config::Bootstrap::default()
    };
    bootstrap(&store, &globex, NOW)
        .await
        .expect("second tenant");
    let c = start(&store, SignalOptions::default()).await;
    let (mut alice, _) = c.join("lobby", "alice").await;
    let (status, body) = http(
        c.addr,
        "POST",
        "/v1/rooms/lobby/tokens",
        Some(GLOBEX_KEY),
        Some(json!({"participant": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token");
    let (mut bob, _) = tokio_tungstenite::connect_async(c.ws_url("lobby", token))
        .await
        .expect("connect");
    let welcome = recv(&mut bob).await;
    assert_eq!(
        welcome["peers"],
        json!([]),
        "acme's alice is not in globex's lobby"
    );
    send(&mut bob, json!({"type": "offer", "to": "alice", "sdp": {}})).await;
    assert_eq!(recv(&mut bob).await["code"], "unknown_peer");
    // Alice heard nothing of bob: her next message is the answer to her own ping.
    send(&mut alice, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut alice).await, json!({"type": "pong"}));
    assert_eq!(c.state.rooms.room_count(), 2);
}

/// `run_on` (the real server: advertise URL from the listener, lease, shutdown): open
/// signaling connections are closed with 1001 at shutdown instead of holding it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_signaling_connections_with_going_away() {
    use nexrtc_controller::config::{ControllerArgs, ControllerConfig, FileConfig};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let file = FileConfig {
        listen: Some(addr),
        bootstrap: test_bootstrap(),
        ..FileConfig::default()
    };
    let config = ControllerConfig::build(ControllerArgs::default(), file).expect("config");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        nexrtc_controller::run_on(config, listener, shutdown).await
    });
    let path = "/v1/rooms/r/tokens";
    let body = json!({"participant": "alice"});
    let mut minted = (0, Value::Null);
    for _ in 0..200 {
        minted = http(addr, "POST", path, Some(ICE_KEY), Some(body.clone())).await;
        if minted.0 == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(minted.0, 201, "{}", minted.1);
    let token = minted.1["token"].as_str().expect("token");
    let url = format!("ws://{addr}/v1/signal?room=r&token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(recv(&mut ws).await["type"], "welcome");

    stop.send(()).expect("stop");
    let (_, code) = until_closed(&mut ws).await;
    assert_eq!(code, Some(1001));
    let ended = tokio::time::timeout(WAIT, server)
        .await
        .expect("server stops in time");
    ended.expect("task").expect("run_on");
}

/// A WebSocket request to `url` with an `Origin` header, as a browser sends it.
fn with_origin(url: &str, origin: &str) -> tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("request");
    let value = origin.parse().expect("header");
    request.headers_mut().insert("origin", value);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_origin_must_be_one_of_the_tenants() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let token = c.token("r1", "alice").await;
    let url = c.ws_url("r1", &token);
    // A page elsewhere holding a leaked token is refused before the upgrade.
    let (status, _, body) = refused(with_origin(&url, "https://evil.example")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden_origin")),
        "{body}"
    );
    assert!(body["message"].is_string());
    assert_eq!(c.state.rooms.members(&key("r1")), 0);
    // The tenant's own page is let in, and so is a client that sends no Origin.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(with_origin(&url, "https://app.acme.example"))
            .await
            .expect("connect from an allowed origin");
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    let (mut other, _) =
        tokio_tungstenite::connect_async(c.ws_url("r1", &c.token("r1", "bob").await))
            .await
            .expect("connect without Origin");
    assert_eq!(recv(&mut other).await["type"], "welcome");
}

/// `POST /v1/admin/tenants/{tenant}/rooms/{room}/revocations` through `via`.
async fn revoke(via: &Replica, room: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/admin/tenants/{TENANT}/rooms/{room}/revocations");
    http(via.addr, "POST", &path, Some(ADMIN_KEY), Some(body)).await
}

/// Sleeps until the Unix second after `t` (tokens minted then postdate a revocation at `t`).
async fn after_second(t: u64) {
    while now_unix() <= t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_close_live_connections_on_the_replica_holding_them_and_refuse_the_tokens() {
    let store = seeded_store().await;
    let one = start(&store, SignalOptions::default()).await;
    let two = start(&store, SignalOptions::default()).await;
    for r in [&one, &two] {
        assert!(
            r.state.replicas.wait_for_live(|n| n == 2, WAIT).await,
            "both registered"
        );
    }
    // A room hosted by replica two; the revocations go through replica one.
    let room = (0..64)
        .map(|i| format!("room{i}"))
        .find(|r| one.state.replicas.owner(TENANT, r) != Owner::Local)
        .expect("a room of replica two");
    let alice_token = two.token(&room, "alice").await;
    let (mut alice, _) = tokio_tungstenite::connect_async(two.ws_url(&room, &alice_token))
        .await
        .expect("connect");
    assert_eq!(recv(&mut alice).await["type"], "welcome");
    let (mut bob, _) = two.join(&room, "bob").await;
    assert_eq!(recv(&mut alice).await["type"], "peer-joined");

    // Refusals: admin only, existing tenant, valid names, nothing unknown in the body.
    let path = format!("/v1/admin/tenants/{TENANT}/rooms/{room}/revocations");
    let (status, body) = http(one.addr, "POST", &path, Some(ICE_KEY), Some(json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    let (status, body) = http(
        one.addr,
        "POST",
        &format!("/v1/admin/tenants/nobody/rooms/{room}/revocations"),
        Some(ADMIN_KEY),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = revoke(&one, &room, json!({"participant": "a b"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_participant"))
    );
    let (status, body) = revoke(&one, &room, json!({"who": "alice"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(
        two.state.rooms.members(&key(&room)),
        2,
        "nothing revoked yet"
    );

    // Revoking alice closes her connection on replica two at once; bob stays.
    let (status, record) = revoke(&one, &room, json!({"participant": "alice"})).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["participant"], "alice");
    assert_eq!(record["tenant"], TENANT);
    let revoked_at = record["revoked_at"].as_u64().expect("revoked_at");
    assert_eq!(record["until"].as_u64(), Some(revoked_at + 3600));
    let (seen, code) = until_closed(&mut alice).await;
    assert_eq!(code, Some(4002), "{seen:?}");
    assert_eq!(
        seen.last().map(|m| &m["code"]),
        Some(&json!("revoked")),
        "{seen:?}"
    );
    assert_eq!(
        recv(&mut bob).await,
        json!({"type": "peer-left", "id": "alice"})
    );
    send(&mut bob, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut bob).await, json!({"type": "pong"}));
    // The record lives under a lease of the longest room-token TTL.
    let kv = Store::get(&store, &format!("room_revoked/{TENANT}/{room}/alice"))
        .await
        .expect("get")
        .expect("stored");
    assert!(kv.lease.is_some(), "under a lease");

    // Her token is refused at connect, on either replica; a token minted afterwards works.
    let (status, _, body) = refused(two.ws_url(&room, &alice_token).as_str()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("revoked")),
        "{body}"
    );
    let (status, _, body) = refused(one.ws_url(&room, &alice_token).as_str()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("revoked")),
        "{body}"
    );
    after_second(revoked_at).await;
    let (mut alice, _) = two.join(&room, "alice").await;

    // Revoking the whole room closes everyone in it.
    let (status, record) = revoke(&one, &room, json!({})).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record.get("participant"), None);
    for ws in [&mut alice, &mut bob] {
        let (seen, code) = until_closed(ws).await;
        assert_eq!(code, Some(4002), "{seen:?}");
        assert!(seen.iter().any(|m| m["code"] == "revoked"), "{seen:?}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while two.state.rooms.members(&key(&room)) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "room emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_warned_then_closed_when_its_token_expires() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let (status, minted) = c
        .mint("r1", json!({"participant": "alice", "ttl": 2}))
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().expect("token");
    let (mut alice, _) = tokio_tungstenite::connect_async(c.ws_url("r1", token))
        .await
        .expect("connect");
    assert_eq!(recv(&mut alice).await["type"], "welcome");
    let (mut bob, _) = c.join("r1", "bob").await;
    assert_eq!(recv(&mut alice).await["type"], "peer-joined");
    let warning = recv(&mut alice).await;
    assert_eq!(warning["type"], "token_expiring", "{warning}");
    let left = warning["expires_in"].as_u64().expect("expires_in");
    assert!((1..=2).contains(&left), "{warning}");
    let (seen, code) = until_closed(&mut alice).await;
    assert_eq!(code, Some(4001), "{seen:?}");
    assert_eq!(
        seen.last().map(|m| &m["code"]),
        Some(&json!("token_expired")),
        "{seen:?}"
    );
    assert_eq!(
        recv(&mut bob).await,
        json!({"type": "peer-left", "id": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_extends_a_connection_with_a_token_checked_as_at_connect() {
    let store = seeded_store().await;
    let c = start(&store, SignalOptions::default()).await;
    let (status, minted) = c
        .mint("r1", json!({"participant": "alice", "ttl": 2}))
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().expect("token");
    let (mut alice, _) = tokio_tungstenite::connect_async(c.ws_url("r1", token))
        .await
        .expect("connect");
    assert_eq!(recv(&mut alice).await["type"], "welcome");
    assert_eq!(recv(&mut alice).await["type"], "token_expiring");

    // Tokens for another participant or room, a client token, garbage: refused, and
    // the connection keeps its current token.
    let bob = c.token("r1", "bob").await;
    let elsewhere = c.token("r2", "alice").await;
    let (_, client) = http(
        c.addr,
        "POST",
        "/v1/client-tokens",
        Some(ICE_KEY),
        Some(json!({"user": "alice"})),
    )
    .await;
    let client = client["token"].as_str().expect("client token").to_owned();
    for bad in [bob.as_str(), &elsewhere, &client, "nxt_garbage"] {
        send(&mut alice, json!({"type": "refresh", "token": bad})).await;
        let answer = recv(&mut alice).await;
        assert_eq!(answer["code"], "refresh_refused", "{bad}: {answer}");
    }
    send(&mut alice, json!({"type": "refresh"})).await;
    assert_eq!(recv(&mut alice).await["code"], "bad_message");

    // A fresh token for the same room and participant extends the connection.
    let (_, fresh) = c
        .mint("r1", json!({"participant": "alice", "ttl": 60}))
        .await;
    let fresh = fresh["token"].as_str().expect("token");
    send(&mut alice, json!({"type": "refresh", "token": fresh})).await;
    let answer = recv(&mut alice).await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    let left = answer["expires_in"].as_u64().expect("expires_in");
    assert!((59..=60).contains(&left), "{answer}");
    // Past the first token's expiry, the connection is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send(&mut alice, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut alice).await, json!({"type": "pong"}));
}

/// Connects with `token` to `url` (`…/v1/signal?room=R`) and reads the welcome; `None`
/// when refused (another replica's room, or a replica that is gone).
async fn try_join(url: &str, token: &str) -> Option<(Ws, Value)> {
    let url = format!("{url}&token={token}").replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let welcome = recv(&mut ws).await;
    (welcome["type"] == "welcome").then_some((ws, welcome))
}

/// A second replica joins: every room it now wins moves to it whole — each member is
/// told `room_moved` with the new owner's URL and closed with 4003 — and the members
/// meet again there; rooms that stay are untouched. Then that replica dies without
/// deregistering: its members reconnect (with backoff, as the demo page does) and meet
/// again on the survivor once the dead replica's lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_move_whole_when_the_replicas_change() {
    let store = seeded_store().await;
    let one = start(&store, SignalOptions::default()).await;
    assert!(one.state.replicas.wait_for_live(|n| n == 1, WAIT).await);
    let rooms: Vec<String> = (0..8).map(|i| format!("moving{i}")).collect();
    let mut members = Vec::new();
    for room in &rooms {
        let (alice, _) = one.join(room, "alice").await;
        let (bob, welcome) = one.join(room, "bob").await;
        assert_eq!(welcome["peers"], json!(["alice"]));
        members.push((room.clone(), alice, bob));
    }

    let two = start(&store, SignalOptions::default()).await;
    for r in [&one, &two] {
        assert!(r.state.replicas.wait_for_live(|n| n == 2, WAIT).await);
    }
    let mut moved = Vec::new();
    for (room, mut alice, mut bob) in members {
        match one.state.replicas.owner(TENANT, &room) {
            Owner::Local => {
                // Still here: the room works (bob's offer reaches alice, past presence).
                send(
                    &mut bob,
                    json!({"type": "offer", "to": "alice", "sdp": "x"}),
                )
                .await;
                loop {
                    let m = recv(&mut alice).await;
                    if m["type"] == "offer" {
                        assert_eq!(m["from"], "bob");
                        break;
                    }
                }
            }
            Owner::Remote(url) => {
                let location = format!("{url}/v1/signal?room={room}");
                for ws in [&mut alice, &mut bob] {
                    let (seen, code) = until_closed(ws).await;
                    let last = seen.last().cloned().unwrap_or(Value::Null);
                    assert_eq!(last["code"], "room_moved", "{seen:?}");
                    assert!(
                        seen.iter().all(|m| m["type"] != "peer-left"),
                        "moving is not leaving: {seen:?}"
                    );
                    assert_eq!(last["location"], location);
                    assert_eq!(code, Some(4003));
                }
                moved.push((room, location));
            }
        }
    }
    assert!(!moved.is_empty(), "replica two wins some of 8 rooms");
    let mut kept = Vec::new();
    for (room, location) in &moved {
        let (alice, _) = try_join(location, &two.token(room, "alice").await)
            .await
            .expect("alice joins on the new owner");
        let (bob, welcome) = try_join(location, &two.token(room, "bob").await)
            .await
            .expect("bob joins on the new owner");
        assert_eq!(
            welcome["peers"],
            json!(["alice"]),
            "the room is whole again"
        );
        kept.push((room.clone(), alice, bob));
    }

    // Replica two dies (no deregistration: its lease runs out).
    let died = std::time::Instant::now();
    drop(two);
    for (room, alice, bob) in kept {
        for mut ws in [alice, bob] {
            let (_, code) = until_closed(&mut ws).await;
            assert_ne!(code, Some(4003), "{room}");
        }
        // Reconnect as a client would: a fresh token names the owner; retry with backoff.
        let mut rejoined = Vec::new();
        for who in ["alice", "bob"] {
            let mut delay = Duration::from_millis(100);
            let mut joined = None;
            for _ in 0..30 {
                let (status, body) = one.mint(&room, json!({"participant": who})).await;
                assert_eq!(status, 201, "{body}");
                let url = body["signal_url"].as_str().expect("signal_url");
                let url = if url.starts_with('/') {
                    format!("{}{url}", one.url())
                } else {
                    url.to_owned()
                };
                let token = body["token"].as_str().expect("token");
                if let Some(j) = try_join(&url, token).await {
                    joined = Some(j);
                    break;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            rejoined.push(joined.unwrap_or_else(|| panic!("{who} rejoins {room}")));
        }
        assert_eq!(rejoined[1].1["peers"], json!(["alice"]), "{room} is whole");
    }
    eprintln!(
        "{} rooms rejoined on the surviving replica {:?} after the other died (lease 5 s)",
        moved.len(),
        died.elapsed()
    );
}
