//! A fixed-bucket latency histogram: 1 µs buckets up to 100 ms, one overflow
//! bucket above. Recording is an index and an increment.

const BUCKETS: usize = 100_000;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    overflow: u64,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            overflow: 0,
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        let us = (ns / 1000) as usize;
        match self.counts.get_mut(us) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.overflow += other.overflow;
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value in µs below which `q` (0..=1) of the samples lie, at the
    /// middle of its 1 µs bucket; `None` without samples. Samples in the
    /// overflow bucket report the maximum seen.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (us, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(us as f64 + 0.5);
            }
        }
        Some(self.max_ns as f64 / 1000.0)
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_ns as f64 / self.total as f64 / 1000.0)
    }

    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(us * 1000 + 10);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile_us(0.5), Some(500.5));
        assert_eq!(h.quantile_us(0.99), Some(990.5));
        assert_eq!(h.quantile_us(1.0), Some(1000.5));
        let mean = h.mean_us().unwrap();
        assert!((mean - 500.51).abs() < 0.01, "{mean}");
    }

    #[test]
    fn overflow_reports_the_maximum_and_merge_adds() {
        let mut a = Histogram::new();
        a.record(5_000);
        let mut b = Histogram::new();
        b.record(500_000_000); // 500 ms, past the last bucket
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile_us(0.5), Some(5.5));
        assert_eq!(a.quantile_us(1.0), Some(500_000.0));
        assert!(Histogram::new().quantile_us(0.5).is_none());
    }
}
