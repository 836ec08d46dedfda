//! Revoking a username cuts it off at once: its live allocations end on every
//! worker (relay sockets freed, quotas released, counted), not only its next
//! request.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{client, client_as, metric, start};

#[test]
fn revoking_a_username_ends_its_allocations_at_once() {
    let relay = start(|s| s.user_quota = Some(4));
    let server = relay.bound()[0].addr;
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    // Two allocations of the revoked user (on either worker), one of another.
    let first = client(server, "mallory");
    let username = first.username().to_owned();
    let mut victims = vec![first, client_as(server, &username)];
    let mut bystander = client(server, "alice");
    for c in victims.iter_mut().chain(std::iter::once(&mut bystander)) {
        assert_eq!(c.allocate().code(), 200);
        assert_eq!(
            c.channel_bind(0x4000, peer.local_addr().expect("addr"))
                .code(),
            200
        );
        c.send_channel_data(0x4000, b"before");
        let mut buf = [0u8; 64];
        let (n, _) = peer
            .recv_from(&mut buf)
            .expect("relayed before the revocation");
        assert_eq!(&buf[..n], b"before");
    }
    assert_eq!(relay.allocation_count(), 3);

    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    relay.revoke(&username, until);
    // The control message reaches every worker within a loop turn.
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.allocation_count() != 1 {
        assert!(Instant::now() < deadline, "allocations still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        metric(&relay, "nexrtc_relay_allocations_revoked_total", ""),
        2
    );
    for c in &victims {
        for _ in 0..10 {
            c.send_channel_data(0x4000, b"after");
        }
    }
    let mut buf = [0u8; 64];
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "ChannelData still relayed after the revocation"
    );
    // The allocation is gone and the username refused.
    for c in &mut victims {
        let code = c.refresh(600).code();
        assert!(code == 401 || code == 437, "Refresh answered {code}");
    }
    // The other user relays on.
    bystander.send_channel_data(0x4000, b"still");
    let (n, _) = peer.recv_from(&mut buf).expect("the other user relays");
    assert_eq!(&buf[..n], b"still");
}
