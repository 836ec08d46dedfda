//! [`LoadSource`]: where a heartbeat's load comes from. [`RelayLoad`] reads the
//! in-process relay's live counters through [`RelayCounters`] (the `nexrtc`
//! binary implements it for the relay's monitor); [`crate::CoturnLoad`] scrapes
//! coturn.
//!
//! Rates are deltas of monotonic counters over the time between two samples
//! (the first sample reports 0). CPU comes from `/proc`: the relay process's
//! share of the whole host in-process, the host's busy share beside coturn.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use nexrtc_wire::{Load, RelayState, Usage};

use crate::usage::UsageSource;

/// Why no load could be read. The agent then skips the heartbeat: a relay
/// whose load cannot be read is not vouched for, and its lease runs out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("relay unhealthy: {0}")]
    Unhealthy(String),
    #[error("cannot scrape {url}: {reason}")]
    Scrape { url: String, reason: String },
    #[error("no STUN answer from {addr}: {reason}")]
    Stun {
        addr: std::net::SocketAddr,
        reason: String,
    },
}

/// One reading: the load, and whether the server drains on its own account
/// (an operator's `nexrtc relay drain`, a stopping process).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub load: Load,
    pub state: RelayState,
}

/// A source of load reports, sampled once per heartbeat.
pub trait LoadSource: Send + 'static {
    fn sample(&mut self) -> impl Future<Output = Result<Sample, LoadError>> + Send;

    /// The software version the controller shows for this relay (`version` of the
    /// registration), read after a successful `sample`.
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Where the relay's per-tenant running totals come from, if it counts them (usage
    /// metering; read once, at start).
    fn usage_source(&self) -> Option<UsageSource> {
        None
    }
}

/// Monotonic packet and byte counters, client side (in = from clients).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

/// Turns successive [`Totals`] into per-second rates.
#[derive(Debug, Default)]
pub struct Rates {
    prev: Option<(Instant, Totals)>,
}

impl Rates {
    /// `(pps_in, pps_out, bps_in, bps_out)` since the previous call, rounded.
    /// A counter that went backwards (the server restarted) counts as 0 this time.
    pub fn update(&mut self, now: Instant, t: Totals) -> (u64, u64, u64, u64) {
        let prev = self.prev.replace((now, t));
        let Some((then, p)) = prev else {
            return (0, 0, 0, 0);
        };
        let secs = now.saturating_duration_since(then).as_secs_f64();
        if secs <= 0.0 {
            return (0, 0, 0, 0);
        }
        // f64 → u64 casts saturate; rates are never negative here.
        let rate =
            |a: u64, b: u64, scale: f64| (scale * a.saturating_sub(b) as f64 / secs).round() as u64;
        (
            rate(t.packets_in, p.packets_in, 1.0),
            rate(t.packets_out, p.packets_out, 1.0),
            rate(t.bytes_in, p.bytes_in, 8.0),
            rate(t.bytes_out, p.bytes_out, 8.0),
        )
    }
}

/// CPU use from `/proc` (0 where there is no `/proc`).
#[derive(Debug)]
pub struct CpuMeter {
    process: bool,
    prev: Option<(u64, u64)>,
}

impl CpuMeter {
    /// This process's share of all the host's CPUs.
    pub fn process() -> CpuMeter {
        CpuMeter {
            process: true,
            prev: None,
        }
    }

    /// The host's busy share.
    pub fn host() -> CpuMeter {
        CpuMeter {
            process: false,
            prev: None,
        }
    }

    /// Use since the previous call, 0..=1 (0 on the first call).
    pub fn sample(&mut self) -> f64 {
        let Some((busy_host, total)) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_proc_stat(&s))
        else {
            return 0.0;
        };
        let busy = if self.process {
            match std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| parse_self_stat(&s))
            {
                Some(ticks) => ticks,
                None => return 0.0,
            }
        } else {
            busy_host
        };
        let Some((pb, pt)) = self.prev.replace((busy, total)) else {
            return 0.0;
        };
        let dt = total.saturating_sub(pt);
        if dt == 0 {
            return 0.0;
        }
        (busy.saturating_sub(pb) as f64 / dt as f64).clamp(0.0, 1.0)
    }
}

/// `/proc/stat`'s aggregate `cpu` line: (busy, total) in clock ticks over all CPUs.
pub(crate) fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest is in user)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// `/proc/self/stat`: utime + stime in clock ticks.
pub(crate) fn parse_self_stat(text: &str) -> Option<u64> {
    // The command name may hold spaces and ')': the fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// What [`RelayLoad`] reads from a relay running in the same process. The
/// agent does not depend on the relay: the program that runs both (the
/// `nexrtc` binary) implements this for the relay's monitor.
pub trait RelayCounters: Send + Sync + 'static {
    /// Every worker runs and has turned its loop recently.
    fn is_healthy(&self) -> bool;
    /// Worker threads running.
    fn workers_alive(&self) -> usize;
    /// Live allocations over all workers.
    fn allocation_count(&self) -> usize;
    /// The relay takes no new allocations.
    fn is_draining(&self) -> bool;
    /// Packets and bytes relayed since start, over every worker, tenant and
    /// transport (in: from clients to peers; out: back to clients).
    fn traffic(&self) -> Totals;
    /// Each tenant's use since start (usage metering); none by default.
    fn usage(&self) -> BTreeMap<String, Usage> {
        BTreeMap::new()
    }
}

/// The in-process relay's load, from its workers' counters.
#[derive(Debug)]
pub struct RelayLoad<C> {
    monitor: Arc<C>,
    capacity: u64,
    rates: Rates,
    cpu: CpuMeter,
}

impl<C: RelayCounters> RelayLoad<C> {
    /// `capacity`: allocations this relay should carry (0: not reported).
    pub fn new(monitor: C, capacity: u64) -> RelayLoad<C> {
        RelayLoad {
            monitor: Arc::new(monitor),
            capacity,
            rates: Rates::default(),
            cpu: CpuMeter::process(),
        }
    }

    fn read(&mut self) -> Result<Sample, LoadError> {
        if !self.monitor.is_healthy() {
            return Err(LoadError::Unhealthy(format!(
                "{} worker(s) alive, or one is stuck",
                self.monitor.workers_alive()
            )));
        }
        let (pps_in, pps_out, bps_in, bps_out) =
            self.rates.update(Instant::now(), self.monitor.traffic());
        let load = Load {
            allocations: self.monitor.allocation_count() as u64,
            capacity: self.capacity,
            pps_in,
            pps_out,
            bps_in,
            bps_out,
            cpu: self.cpu.sample(),
        };
        let state = if self.monitor.is_draining() {
            RelayState::Draining
        } else {
            RelayState::Active
        };
        Ok(Sample { load, state })
    }
}

impl<C: RelayCounters> LoadSource for RelayLoad<C> {
    fn sample(&mut self) -> impl Future<Output = Result<Sample, LoadError>> + Send {
        std::future::ready(self.read())
    }

    fn usage_source(&self) -> Option<UsageSource> {
        let monitor = Arc::clone(&self.monitor);
        Some(Arc::new(move || monitor.usage()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_deltas_per_second() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let a = Totals {
            packets_in: 100,
            bytes_in: 1000,
            packets_out: 50,
            bytes_out: 500,
        };
        assert_eq!(r.update(t0, a), (0, 0, 0, 0));
        let b = Totals {
            packets_in: 300,
            bytes_in: 3000,
            packets_out: 50,
            bytes_out: 400, // went backwards: 0
        };
        let (pi, po, bi, bo) = r.update(t0 + Duration::from_secs(2), b);
        assert_eq!((pi, po, bi, bo), (100, 0, 8000, 0));
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_proc_stat(stat), Some((161, 981)));
        let me = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20 0 4";
        assert_eq!(parse_self_stat(me), Some(100));
        assert_eq!(parse_self_stat("garbage"), None);
        if std::path::Path::new("/proc/self/stat").exists() {
            let mut m = CpuMeter::process();
            assert_eq!(m.sample(), 0.0);
            let v = m.sample();
            assert!((0.0..=1.0).contains(&v), "{v}");
        }
    }
}
