//! One-call descriptive summary (count, extremes, mean, spread, tail percentiles) of latency samples.

use serde::{Deserialize, Serialize};

use crate::quantile::{quantile_of_valid, sorted_finite};
use crate::{QuantileMethod, StatsError};

/// Descriptive statistics of a set of samples.
///
/// All fields except `count` are in the unit of the samples (usually
/// milliseconds). Percentiles use the [`QuantileMethod`] passed to
/// [`Summary::from_samples`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divides by `n − 1`, like Python's
    /// `statistics.stdev`); 0 for a single sample.
    pub stddev: f64,
    /// 50th percentile (median).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Summary {
    /// Summarises `samples`, which may be in any order.
    ///
    /// # Errors
    ///
    /// [`StatsError::EmptyInput`] for no samples and
    /// [`StatsError::NonFiniteSample`] if any sample is NaN or infinite.
    ///
    /// # Examples
    ///
    /// ```
    /// use stats::{QuantileMethod, Summary};
    ///
    /// let summary = Summary::from_samples(&[3.0, 1.0, 2.0], QuantileMethod::Linear)?;
    /// assert_eq!((summary.count, summary.min, summary.max), (3, 1.0, 3.0));
    /// assert_eq!((summary.mean, summary.stddev, summary.p50), (2.0, 1.0, 2.0));
    /// # Ok::<(), stats::StatsError>(())
    /// ```
    pub fn from_samples(samples: &[f64], method: QuantileMethod) -> Result<Summary, StatsError> {
        let sorted = sorted_finite(samples)?;
        let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
            return Err(StatsError::EmptyInput);
        };
        let (mean, stddev) = mean_and_stddev(&sorted);
        let percentile = |q: f64| quantile_of_valid(&sorted, q, method);
        Ok(Summary {
            count: sorted.len() as u64,
            min,
            max,
            mean,
            stddev,
            p50: percentile(0.5),
            p90: percentile(0.9),
            p95: percentile(0.95),
            p99: percentile(0.99),
            p999: percentile(0.999),
        })
    }
}

/// Mean and sample standard deviation (`n − 1`) of finite, non-empty values;
/// the deviation is 0 for a single value.
///
/// Uses compensated sums and the corrected two-pass formula because latency
/// data mixes tiny and huge values and reference tools (Python's `statistics`)
/// compute these exactly.
pub(crate) fn mean_and_stddev(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = compensated_sum(values.iter().copied()) / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let deviation_sum = compensated_sum(values.iter().map(|value| value - mean));
    let squared_sum = compensated_sum(values.iter().map(|value| (value - mean).powi(2)));
    // The second term removes the rounding error left in `mean`.
    let variance = (squared_sum - deviation_sum * deviation_sum / n) / (n - 1.0);
    (mean, variance.max(0.0).sqrt())
}

/// Neumaier's compensated summation: keeps the error independent of the
/// number of terms, unlike a naive running sum.
fn compensated_sum(values: impl Iterator<Item = f64>) -> f64 {
    let mut sum = 0.0_f64;
    let mut compensation = 0.0_f64;
    for value in values {
        let next = sum + value;
        compensation += if sum.abs() >= value.abs() {
            (sum - next) + value
        } else {
            (value - next) + sum
        };
        sum = next;
    }
    sum + compensation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let values = [1e16, 1.0, -1e16];
        assert_eq!(compensated_sum(values.into_iter()), 1.0);
    }
}
