//! No heap allocation per packet on the ChannelData path in either
//! direction, through the whole relay (listener, core, relay sockets, the
//! batched and coalesced sends): a counting global allocator sees the relay
//! relay tens of thousands of datagrams while allocating almost nothing.
//!
//! Its own test binary: the counter is process-wide, so no other test may run
//! beside it.

mod support;

use std::net::UdpSocket;

use nexrtc_test_support::alloc::{CountingAllocator, Scope};
use support::{channel_session, start, TurnClient};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const BURST: usize = 16;
const SIZE: usize = 200;

/// `rounds` bursts per session: each client sends BURST ChannelData to its
/// peer, the peer echoes them, the client reads them back. Buffers are on
/// the stack: the test thread itself allocates nothing here.
fn exchange(sessions: &mut [(TurnClient, UdpSocket, u16)], rounds: usize) -> u64 {
    let mut relayed = 0;
    let mut payload = [0u8; SIZE];
    let mut buf = [0u8; 2048];
    for round in 0..rounds {
        for (c, peer, channel) in sessions.iter_mut() {
            for i in 0..BURST {
                payload[0] = (round % 256) as u8;
                payload[1] = i as u8;
                c.send_channel_data(*channel, &payload);
            }
            let mut from = None;
            for i in 0..BURST {
                let (n, f) = peer.recv_from(&mut buf).expect("datagram at the peer");
                assert!(n == SIZE && buf[0] == (round % 256) as u8 && buf[1] == i as u8);
                from = Some(f);
            }
            let relayed_addr = from.expect("a burst reached the peer");
            for _ in 0..BURST {
                peer.send_to(&buf[..SIZE], relayed_addr).expect("peer send");
            }
            for _ in 0..BURST {
                let n = c.recv(&mut buf).expect("datagram at the client");
                assert_eq!(n, 4 + SIZE);
            }
            relayed += 2 * BURST as u64;
        }
    }
    relayed
}

#[test]
fn relaying_channel_data_allocates_nothing_per_packet() {
    let relay = start(|_| {});
    let server = relay.bound()[0].addr;
    let mut sessions = Vec::new();
    for i in 0..4u16 {
        let (c, peer, _) = channel_session(server, &format!("steady{i}"), 0x4000 + i);
        sessions.push((c, peer, 0x4000 + i));
    }
    // Warm up: the first packets may grow tables and queues to their size.
    exchange(&mut sessions, 20);
    let scope = Scope::start();
    let relayed = exchange(&mut sessions, 400);
    let allocations = scope.allocations();
    eprintln!(
        "{relayed} datagrams relayed, {allocations} heap allocations in the process meanwhile"
    );
    // Timers (the once-a-second sweep) may allocate a little; one allocation
    // per packet would be tens of thousands.
    assert!(
        allocations * 1000 < relayed,
        "{allocations} allocations for {relayed} relayed datagrams"
    );
}
