//! Wall-clock time for credential expiries, replaceable in tests.
//!
//! Expiries are Unix seconds, so the controller needs the wall clock; tests run on tokio's
//! paused time and need expiries to follow it. [`Clock::Virtual`] counts Unix time from a
//! fixed start along `tokio::time::Instant`, so `tokio::time::advance` moves both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where Unix time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// `start_unix` at `start`, then following tokio's clock (paused in tests).
    Virtual { start_unix: u64, start: Instant },
}

impl Clock {
    /// A virtual clock reading `unix` now.
    pub fn starting_at(unix: u64) -> Clock {
        Clock::Virtual {
            start_unix: unix,
            start: Instant::now(),
        }
    }

    /// Unix seconds now.
    pub fn unix_now(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Clock::Virtual { start_unix, start } => start_unix + start.elapsed().as_secs(),
        }
    }

    /// Unix milliseconds now.
    pub fn unix_now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Clock::Virtual { start_unix, start } => {
                start_unix * 1000 + start.elapsed().as_millis() as u64
            }
        }
    }

    /// The `tokio::time::Instant` at which [`Clock::unix_now`] reaches `unix` (about now
    /// if it already has): the deadline of an expiry, for timers.
    pub fn instant_at(&self, unix: u64) -> Instant {
        match self {
            Clock::System => {
                let at = UNIX_EPOCH + Duration::from_secs(unix);
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                Instant::now() + left
            }
            Clock::Virtual { start_unix, start } => {
                *start + Duration::from_secs(unix.saturating_sub(*start_unix))
            }
        }
    }
}

/// RFC 3339 UTC timestamp (`2024-05-01T12:00:00Z`) of Unix seconds.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_follows_tokio_time() {
        let c = Clock::starting_at(1000);
        assert_eq!(c.unix_now(), 1000);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(c.unix_now(), 1061);
    }

    #[tokio::test(start_paused = true)]
    async fn instants_of_unix_times() {
        let c = Clock::starting_at(1000);
        let t0 = Instant::now();
        assert_eq!(c.instant_at(1010), t0 + Duration::from_secs(10));
        assert_eq!(c.instant_at(900), t0, "the past is now");
        let s = Clock::System;
        let at = s.instant_at(s.unix_now() + 5);
        let now = Instant::now();
        assert!(at > now + Duration::from_secs(4) && at <= now + Duration::from_secs(5));
    }
}
