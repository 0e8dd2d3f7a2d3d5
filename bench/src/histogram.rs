//! Latencies of a long soak in bounded memory: a log-linear histogram (the idea of HDR
//! histograms) with 128 sub-buckets per power of two of microseconds. Any number of samples
//! takes the same 58 KiB, and a percentile read from it is at most 1/128 (0.8 %) above the
//! latency it stands for, never below. `run` keeps exact samples instead (see stats.rs); a soak
//! at concurrency 1000 for hours cannot.

use crate::stats::LatencySummary;
use std::time::Duration;

/// log2 of the sub-buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` have a bucket each; above, each power of two from `SUB` to 2^63 has
/// `SUB` buckets.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) & (SUB - 1);
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// The largest value that falls into bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let low = (SUB + i % SUB) << shift;
    low + ((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.sum_us += u128::from(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Nearest-rank percentile `p` (0 < p <= 100) in microseconds: the upper edge of the
    /// bucket holding the sample of rank ceil(p% x count), capped at the largest sample.
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        if self.count == 0 || !(p > 0.0 && p <= 100.0) {
            return None;
        }
        let rank = ((p * self.count as f64) / 100.0 - 1e-9).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    /// The same summary `run` reports, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1e3;
        let some = |v: u64| (self.count > 0).then(|| ms(v));
        LatencySummary {
            count: self.count,
            p50: self.percentile_us(50.0).map(ms),
            p90: self.percentile_us(90.0).map(ms),
            p99: self.percentile_us(99.0).map(ms),
            max: some(self.max_us),
            min: some(self.min_us),
            mean: (self.count > 0).then(|| self.sum_us as f64 / self.count as f64 / 1e3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut prev_high = None;
        for i in 0..BUCKETS {
            let high = bucket_high(i);
            if let Some(p) = prev_high {
                assert!(high > p, "bucket {i}");
            }
            assert_eq!(bucket_of(high), i, "the high edge of bucket {i} is in it");
            if i > 0 {
                assert_eq!(bucket_of(bucket_high(i - 1) + 1), i, "no gap before {i}");
            }
            prev_high = Some(high);
        }
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn relative_error_is_below_one_percent() {
        for v in [
            127u64,
            128,
            129,
            1000,
            12_345,
            999_999,
            3_600_000_000,
            1 << 50,
        ] {
            let high = bucket_high(bucket_of(v));
            assert!(high >= v);
            assert!((high - v) as f64 <= v as f64 / 128.0, "{v} -> {high}");
        }
    }

    #[test]
    fn percentiles_match_exact_ones_within_the_bucket_width() {
        let mut h = Histogram::default();
        // 1..=1000 ms.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        for (got, exact) in [(s.p50, 500.0), (s.p90, 900.0), (s.p99, 990.0)] {
            let got = got.unwrap();
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 128.0),
                "{got} vs {exact}"
            );
        }
        assert_eq!(s.max, Some(1000.0));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.mean, Some(500.5));
    }

    #[test]
    fn an_outlier_is_the_max_and_percentiles_never_pass_it() {
        let mut h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_micros(10));
        }
        h.record(Duration::from_secs(5));
        let s = h.summary();
        assert_eq!(s.p99, Some(0.01));
        assert_eq!(s.max, Some(5000.0));
        let mut one = Histogram::default();
        one.record(Duration::from_micros(1_000_001));
        assert_eq!(
            one.percentile_us(50.0),
            Some(1_000_001),
            "capped at the sample"
        );
    }

    #[test]
    fn empty_has_no_figures() {
        let s = Histogram::default().summary();
        assert_eq!(s.count, 0);
        assert_eq!((s.p50, s.max, s.min, s.mean), (None, None, None, None));
    }
}
