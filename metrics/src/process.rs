//! The process's own families, read from `/proc/self` at each scrape: CPU time, memory,
//! descriptors, threads, start time — under the names Prometheus' client libraries use
//! (`process_*`), so the usual process dashboards and alerts work unchanged.
//!
//! Read by hand: the process-metrics crates record into the global `metrics` recorder,
//! which this crate does not use (registries are per instance), and the fields needed are
//! a few numbers of `/proc/self/stat`, `/proc/self/fd` and `/proc/stat`.
//! `process_cpu_seconds_total` is exported as a gauge: the exporter writes counters as
//! integers, and CPU seconds need their fraction (`rate()` works on it the same).

use std::sync::Arc;

use crate::{Collector, Registry};

/// Adds the process families to each scrape of a registry (register it once per
/// `/metrics` endpoint, on the registry that endpoint renders).
pub fn collector() -> Arc<dyn Collector> {
    Arc::new(Process)
}

struct Process;

/// What `/proc/self/stat` says, in its units.
#[derive(Debug, PartialEq)]
struct Stat {
    /// User and system time, in clock ticks.
    cpu_ticks: u64,
    threads: u64,
    /// Start, in clock ticks after boot.
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/<pid>/stat` (fields after the command name, which is in parentheses and
/// may hold spaces and parentheses itself).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); fields are numbered from 1 in proc(5).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time (`btime` of `/proc/stat`), in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    (proc_stat.lines())
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl Collector for Process {
    fn collect(&self, scrape: &Registry) {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t))
        else {
            return;
        };
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as f64;
        let set = |name: &'static str, help: &'static str, value: f64| {
            scrape.describe(name, help);
            scrape.gauge(name, &[]).set(value);
        };
        set(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            stat.cpu_ticks as f64 / ticks,
        );
        set(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            stat.resident_pages as f64 * page,
        );
        set(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stat.virtual_bytes as f64,
        );
        set(
            "process_threads",
            "Number of OS threads in the process.",
            stat.threads as f64,
        );
        if let Some(boot) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| boot_time(&t))
        {
            set(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.start_ticks as f64 / ticks,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            set(
                "process_open_fds",
                "Number of open file descriptors.",
                fds.count() as f64,
            );
        }
        if let Ok(limit) = std::fs::read_to_string("/proc/self/limits") {
            let max = (limit.lines())
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok());
            if let Some(max) = max {
                set(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    max,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_command_with_spaces_and_parentheses() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 7 0 \
                    1234 567890 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                cpu_ticks: 175,
                threads: 7,
                start_ticks: 1234,
                virtual_bytes: 567_890,
                resident_pages: 321,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_described() {
        let r = Registry::new();
        r.register_collector(collector());
        let text = r.render();
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_threads",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ] {
            let value = (text.lines())
                .find_map(|l| l.strip_prefix(&format!("{family} ")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{family} in {text}"));
            assert!(value >= 0.0, "{family} {value}");
        }
        let fds = |t: &str| -> f64 {
            (t.lines())
                .find_map(|l| l.strip_prefix("process_open_fds "))
                .unwrap()
                .parse()
                .unwrap()
        };
        // Opening a file shows.
        let before = fds(&r.render());
        let _held = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(fds(&r.render()) >= before + 1.0);
    }
}
