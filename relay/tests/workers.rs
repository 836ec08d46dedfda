//! The relay as a whole on loopback: several workers on SO_REUSEPORT
//! listeners, host-wide quotas, multiplexed relay sockets carrying
//! ChannelData both ways for many clients, and bursts through the batched,
//! GSO-coalesced sends.

mod support;

use support::{channel_session, client, start, Relayed};

#[test]
fn quotas_hold_across_workers() {
    let relay = start(|s| s.user_quota = Some(3));
    let server = relay.bound()[0].addr;
    // Six 5-tuples of one user: the kernel spreads them over both workers,
    // and still only three allocations are granted.
    let codes: Vec<u16> = (0..6)
        .map(|_| client(server, "alice").allocate().code())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 486).count(), 3, "{codes:?}");
    assert_eq!(relay.allocation_count(), 3);
}

#[test]
fn multiplexed_relay_sockets_carry_channel_data_both_ways() {
    let relay = start(|s| {
        s.multiplex_peer = true;
        s.multiplex_sockets = Some(1);
    });
    let server = relay.bound()[0].addr;
    let mut sessions = Vec::new();
    for i in 0..8u16 {
        let (c, peer, relayed) = channel_session(server, &format!("user{i}"), 0x4000 + i);
        sessions.push((c, peer, relayed, 0x4000 + i));
    }
    // One shared socket per worker: eight allocations on at most two ports.
    let mut ports: Vec<u16> = sessions.iter().map(|s| s.2.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(ports.len() <= 2, "{ports:?}");
    for (i, (c, peer, relayed, channel)) in sessions.iter_mut().enumerate() {
        c.send_channel_data(*channel, format!("to-p{i}").as_bytes());
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("to-p{i}").as_bytes());
        assert_eq!(
            from.port(),
            relayed.port(),
            "sent from the shared relayed port"
        );
        // The peer answers to the address it saw: routed by its own address
        // back to the one client that bound it.
        peer.send_to(format!("to-c{i}").as_bytes(), from).unwrap();
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Channel {
                channel: *channel,
                data: format!("to-c{i}").into_bytes()
            })
        );
    }
    assert_eq!(relay.allocation_count(), 8);
}

/// A burst of ChannelData to one peer, and the peer's burst back, arrive
/// whole and in order through the queued, sorted and (where the kernel
/// allows) GSO-coalesced sends; the coalescing shows in the metrics.
#[test]
fn bursts_arrive_in_order_through_batched_and_coalesced_sends() {
    let relay = start(|_| {});
    let server = relay.bound()[0].addr;
    let (mut c, peer, relayed) = channel_session(server, "burst", 0x4001);
    let payload = |round: usize, i: usize| -> Vec<u8> {
        let mut p = vec![(i % 251) as u8; 300];
        p[..8].copy_from_slice(&((round * 1000 + i) as u64).to_be_bytes());
        p
    };
    let coalesced = || {
        relay
            .monitor()
            .render_metrics()
            .lines()
            .find_map(|l| l.strip_prefix("nexrtc_relay_udp_gso_coalesced_total "))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .expect("the coalescing counter is exported")
    };
    const BURST: usize = 32;
    // Bounded: a burst coalesces once the worker finds several datagrams
    // queued, which a few rounds make all but certain.
    for round in 0..40 {
        for i in 0..BURST {
            c.send_channel_data(0x4001, &payload(round, i));
        }
        let mut buf = [0u8; 2048];
        for i in 0..BURST {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(from, relayed);
            assert_eq!(
                &buf[..n],
                &payload(round, i)[..],
                "round {round}, datagram {i}"
            );
        }
        for i in 0..BURST {
            peer.send_to(&payload(round, i), relayed).unwrap();
        }
        for i in 0..BURST {
            assert_eq!(
                c.recv_relayed(),
                Some(Relayed::Channel {
                    channel: 0x4001,
                    data: payload(round, i)
                }),
                "round {round}, back {i}"
            );
        }
        if round >= 4 && coalesced() > 0 {
            break;
        }
    }
    if nexrtc_relay::gso_supported() {
        assert!(coalesced() > 0, "no burst left as one GSO send");
    }
}
