//! Latency percentiles, computed exactly over all samples (no sketches: a run has at most a few
//! thousand files).

use serde::{Deserialize, Serialize};

/// Summary of a set of latencies in milliseconds. Percentiles use the nearest-rank method:
/// the p-th percentile is the smallest sample with at least p% of the samples at or below it,
/// so every reported figure is a latency that was actually observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub mean: Option<f64>,
}

/// The nearest-rank percentile `p` (0 < p <= 100) of samples sorted ascending.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len();
    // ceil(p/100 * n) computed in integers where possible so that e.g. p=90, n=10 gives rank
    // 9 and not 10 through floating-point error.
    let rank = ((p * n as f64) / 100.0 - 1e-9).ceil().max(1.0) as usize;
    Some(sorted[rank.min(n) - 1])
}

impl LatencySummary {
    pub fn from_samples(samples: &[f64]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let mean = (count > 0).then(|| sorted.iter().sum::<f64>() / count as f64);
        LatencySummary {
            count: count as u64,
            p50: nearest_rank(&sorted, 50.0),
            p90: nearest_rank(&sorted, 90.0),
            p99: nearest_rank(&sorted, 99.0),
            max: sorted.last().copied(),
            min: sorted.first().copied(),
            mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_percentiles() {
        let s = LatencySummary::from_samples(&[]);
        assert_eq!(s.count, 0);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max, s.mean),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let s = LatencySummary::from_samples(&[12.5]);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max, s.min),
            (Some(12.5), Some(12.5), Some(12.5), Some(12.5), Some(12.5))
        );
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        // Unsorted input with samples 1..=100.
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = LatencySummary::from_samples(&samples);
        assert_eq!(s.p50, Some(50.0));
        assert_eq!(s.p90, Some(90.0));
        assert_eq!(s.p99, Some(99.0));
        assert_eq!(s.max, Some(100.0));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.mean, Some(50.5));
    }

    #[test]
    fn nearest_rank_on_small_sets() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 50.0), Some(5.0));
        assert_eq!(nearest_rank(&ten, 90.0), Some(9.0));
        assert_eq!(nearest_rank(&ten, 99.0), Some(10.0));
        assert_eq!(nearest_rank(&ten, 100.0), Some(10.0));
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(nearest_rank(&four, 50.0), Some(2.0));
        assert_eq!(nearest_rank(&four, 51.0), Some(3.0));
        assert_eq!(nearest_rank(&four, 0.0), None);
        assert_eq!(nearest_rank(&four, 101.0), None);
    }

    #[test]
    fn one_outlier_shows_in_p99_of_a_hundred_only_as_max() {
        let mut samples = vec![10.0; 99];
        samples.push(5000.0);
        let s = LatencySummary::from_samples(&samples);
        assert_eq!(s.p99, Some(10.0));
        assert_eq!(s.max, Some(5000.0));
        samples.push(6000.0);
        let s = LatencySummary::from_samples(&samples);
        assert_eq!(s.p99, Some(5000.0), "two outliers in 101 samples reach p99");
    }

    #[test]
    fn non_finite_samples_are_ignored() {
        let s = LatencySummary::from_samples(&[f64::NAN, 3.0, f64::INFINITY]);
        assert_eq!(s.count, 1);
        assert_eq!(s.max, Some(3.0));
    }
}
