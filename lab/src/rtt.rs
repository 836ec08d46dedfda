//! Measured RTT between every pair of regions: a UDP echo in each region (10.k.0.1:7007),
//! `count` timestamped probes from each region to every other, 20 ms apart, each answered
//! within 2 s or counted lost.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{in_ns, Echo, Lab, LabError};

const ECHO_PORT: u16 = 7007;

/// One ordered pair's result.
#[derive(Debug, Clone, Serialize)]
pub struct PairRtt {
    pub from: String,
    pub to: String,
    pub planned_ms: f64,
    /// Median of the answered probes (`None`: none answered).
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub sent: u32,
    pub answered: u32,
}

/// Measures every ordered pair (see the module docs); the echo servers stop afterwards.
pub fn measure_rtts(lab: &Lab, count: u32) -> Result<Vec<PairRtt>, LabError> {
    let plan = lab.plan().clone();
    let n = plan.regions.len();
    let io = |what: String| move |e: std::io::Error| LabError::Io { what, source: e };
    // Echo servers.
    let mut echoes = Vec::new();
    for (i, r) in plan.regions.iter().enumerate() {
        let addr = SocketAddr::from(([10, (i + 1) as u8, 0, 1], ECHO_PORT));
        echoes.push(Echo::start(lab.region_ns(&r.name)?, addr)?);
    }
    // One prober per source region, its destinations in turn.
    let mut probers = Vec::new();
    for i in 0..n {
        let name = plan.regions[i].name.clone();
        let socket = in_ns(lab.region_ns(&name)?, || UdpSocket::bind(("0.0.0.0", 0)))?
            .map_err(io(format!("probe socket in {name}")))?;
        let plan = plan.clone();
        probers.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            for j in (0..n).filter(|&j| j != i) {
                let to = SocketAddr::from(([10, (j + 1) as u8, 0, 1], ECHO_PORT));
                out.push(probe(
                    &socket,
                    to,
                    count,
                    &plan.regions[i].name,
                    &plan.regions[j].name,
                    plan.rtt_ms[i][j],
                ));
            }
            out
        }));
    }
    let mut results = Vec::new();
    for p in probers {
        results.extend(p.join().unwrap_or_default());
    }
    drop(echoes);
    Ok(results)
}

fn probe(
    socket: &UdpSocket,
    to: SocketAddr,
    count: u32,
    from: &str,
    name: &str,
    planned: f64,
) -> PairRtt {
    let mut rtts: Vec<f64> = Vec::new();
    let mut buf = [0u8; 64];
    for seq in 0..count {
        let sent = Instant::now();
        let payload = seq.to_be_bytes();
        if socket.send_to(&payload, to).is_err() {
            continue;
        }
        let deadline = sent + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match socket.recv_from(&mut buf) {
                Ok((4, from_addr)) if from_addr == to && buf[..4] == payload => {
                    rtts.push(sent.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Ok(_) => continue, // a late answer to an earlier probe
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    rtts.sort_by(f64::total_cmp);
    let median = match rtts.len() {
        0 => None,
        n if n % 2 == 1 => Some(rtts[n / 2]),
        n => Some((rtts[n / 2 - 1] + rtts[n / 2]) / 2.0),
    };
    PairRtt {
        from: from.to_owned(),
        to: name.to_owned(),
        planned_ms: planned,
        median_ms: median,
        min_ms: rtts.first().copied(),
        max_ms: rtts.last().copied(),
        sent: count,
        answered: rtts.len() as u32,
    }
}
