//! No heap allocation per packet on the ChannelData path in either
//! direction, through the whole relay (listener, core, relay sockets, the
//! batched and coalesced sends): a counting global allocator sees the relay
//! relay tens of thousands of datagrams while allocating almost nothing.
//!
//! Its own test binary: the counter is process-wide, so no other test may run
//! beside it.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::{start, Client};
use turn_core::stun::channel_data_header;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BURST: usize = 16;
const SIZE: usize = 200;

/// `rounds` bursts per session: each client sends BURST ChannelData to its
/// peer, the peer echoes them, the client reads them back. Buffers are on
/// the stack: the test thread itself allocates nothing here.
fn exchange(sessions: &[(Client, UdpSocket, u16)], rounds: usize) -> u64 {
    let mut relayed = 0;
    let mut cd = [0u8; 4 + SIZE];
    let mut buf = [0u8; 2048];
    for round in 0..rounds {
        for (c, peer, channel) in sessions {
            cd[..4].copy_from_slice(&channel_data_header(*channel, SIZE as u16));
            for i in 0..BURST {
                cd[4] = (round % 256) as u8;
                cd[5] = i as u8;
                c.socket.send_to(&cd, c.server).expect("client send");
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
                let (n, _) = c
                    .socket
                    .recv_from(&mut buf)
                    .expect("datagram at the client");
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
        let mut c = Client::new(server, &format!("steady{i}"));
        assert_eq!(c.allocate().0, 200);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(c.channel_bind(0x4000 + i, peer.local_addr().unwrap()), 200);
        sessions.push((c, peer, 0x4000 + i));
    }
    // Warm up: the first packets may grow tables and queues to their size.
    exchange(&sessions, 20);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let relayed = exchange(&sessions, 400);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
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
