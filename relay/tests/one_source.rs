//! Many clients behind one NAT address: every new allocation needs a 401
//! challenge first, and the budget of unauthenticated answers is counted in
//! bytes, sized for a big NAT, so they all get one; a flood from one address
//! is still cut once it exceeds that budget.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{client, metric, start};
use turn_core::stun::{attr, Class, MessageBuilder, Method, TransactionId};

const THREADS: usize = 8;
const PER_THREAD: usize = 300;

#[test]
fn thousands_of_allocations_from_one_address_all_succeed() {
    // Default settings (the test relay only narrows the ports and listeners).
    let relay = start(|_| {});
    let server = relay.bound()[0].addr;
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    // Every client its own port on 127.0.0.1, as behind a NAT,
                    // and its own 401 round trip.
                    let mut c = client(server, &format!("nat{t}-{i}"));
                    let allocated = c.allocate();
                    assert_eq!(allocated.code(), 200, "client {t}/{i}");
                    assert!(allocated.relayed().is_some());
                    // Give the relay port back (the test relay has 1,000).
                    assert_eq!(c.refresh(0).code(), 200, "client {t}/{i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let made = THREADS * PER_THREAD;
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{made} allocations took {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &relay,
            "nexrtc_relay_dropped_packets_total",
            "{reason=\"rate_limited\"}"
        ),
        0
    );

    // A flood of unauthenticated Allocates from one socket: each would get a
    // 401 about five times its size. Far more than the byte budget allows.
    let flood = UdpSocket::bind("127.0.0.1:0").expect("socket");
    flood
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    const FLOOD: u32 = 30_000;
    let flood_started = Instant::now();
    for i in 0..FLOOD {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let mut b = MessageBuilder::new(Method::ALLOCATE, Class::Request, TransactionId(id));
        b.attribute(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        // A full socket buffer only means fewer requests reach the relay.
        let _ = flood.send_to(&b.finish(), server);
        if i % 1000 == 999 {
            // Keep the relay's receive buffer from overflowing.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut answers = 0u64;
    let mut bytes = 0u64;
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = flood.recv_from(&mut buf) {
        answers += 1;
        bytes += n as u64;
    }
    let limited = metric(
        &relay,
        "nexrtc_relay_dropped_packets_total",
        "{reason=\"rate_limited\"}",
    );
    assert!(limited > 0, "nothing was cut ({answers} answers)");
    assert!(answers < u64::from(FLOOD), "{answers} answers");
    // At most the burst plus the refill while the flood lasted (one second
    // more for the answers still in flight).
    let budget = turn_core::AnswerBudget::default().per_source;
    let secs = flood_started.elapsed().as_secs() + 1;
    assert!(
        bytes <= budget.burst + secs * budget.per_second,
        "{bytes} bytes answered in {secs} s"
    );
}
