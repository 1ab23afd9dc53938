//! Confidence intervals: seeded percentile bootstrap for quantiles and Student-t intervals for means.

use serde::{Deserialize, Serialize};

use crate::quantile::{check_quantile_level, quantile_of_valid, sorted_finite};
use crate::rng::SplitMix64;
use crate::summary::mean_and_stddev;
use crate::{student_t_quantile, QuantileMethod, StatsError};

/// A point estimate with a two-sided confidence interval, in the unit of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// The statistic computed on the data as given.
    pub estimate: f64,
    /// Lower end of the interval.
    pub lower: f64,
    /// Upper end of the interval.
    pub upper: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
}

/// Percentile-bootstrap confidence interval for the `q`-quantile of `samples`.
///
/// Draws `resamples` samples of the same size with replacement, computes the
/// quantile of each with `method`, and takes the `(1−c)/2` and `(1+c)/2`
/// linear quantiles of those estimates. `estimate` is the quantile of the
/// original samples. The same `seed` (and inputs) always gives the same
/// interval, on every platform and crate version; the order of `samples`
/// does not matter.
///
/// # Errors
///
/// [`StatsError::EmptyInput`], [`StatsError::NonFiniteSample`],
/// [`StatsError::InvalidQuantileLevel`], [`StatsError::InvalidResamples`]
/// (for 0) and [`StatsError::InvalidConfidence`] (outside `(0, 1)`).
///
/// # Examples
///
/// ```
/// use stats::{bootstrap_quantile_ci, QuantileMethod};
///
/// let latencies_ms: Vec<f64> = (1..=200).map(f64::from).collect();
/// let ci = bootstrap_quantile_ci(&latencies_ms, 0.5, QuantileMethod::Linear, 500, 0.95, 42)?;
/// assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
/// # Ok::<(), stats::StatsError>(())
/// ```
pub fn bootstrap_quantile_ci(
    samples: &[f64],
    q: f64,
    method: QuantileMethod,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<ConfidenceInterval, StatsError> {
    check_bootstrap_parameters(q, resamples, confidence)?;
    let sorted = sorted_nonempty(samples)?;
    let estimate = quantile_of_valid(&sorted, q, method);
    let mut rng = SplitMix64::new(seed);
    let mut resampler = Resampler::new(sorted.len());
    let estimates = (0..resamples)
        .map(|_| quantile_of_valid(resampler.resample(&sorted, &mut rng), q, method))
        .collect();
    Ok(percentile_interval(estimate, estimates, confidence))
}

/// Percentile-bootstrap confidence interval for the change in the
/// `q`-quantile from `before` to `after` (`after − before`; positive means
/// slower after).
///
/// Each side is resampled independently (from one seeded stream: `before`
/// first, then `after`, in every round), so the two sets need not be the same
/// size or paired. Determinism and errors are as for [`bootstrap_quantile_ci`],
/// with [`StatsError::EmptyInput`] if either side is empty.
pub fn bootstrap_quantile_diff_ci(
    before: &[f64],
    after: &[f64],
    q: f64,
    method: QuantileMethod,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<ConfidenceInterval, StatsError> {
    check_bootstrap_parameters(q, resamples, confidence)?;
    let before = sorted_nonempty(before)?;
    let after = sorted_nonempty(after)?;
    let estimate = quantile_of_valid(&after, q, method) - quantile_of_valid(&before, q, method);
    let mut rng = SplitMix64::new(seed);
    let mut before_resampler = Resampler::new(before.len());
    let mut after_resampler = Resampler::new(after.len());
    let estimates = (0..resamples)
        .map(|_| {
            let before_q =
                quantile_of_valid(before_resampler.resample(&before, &mut rng), q, method);
            let after_q = quantile_of_valid(after_resampler.resample(&after, &mut rng), q, method);
            after_q - before_q
        })
        .collect();
    Ok(percentile_interval(estimate, estimates, confidence))
}

/// Student-t confidence interval for the mean of a handful of repeated
/// measurements (e.g. the p99 of each of five benchmark runs):
/// `mean ± t((1+c)/2, n−1) · s/√n` with `s` the sample standard deviation.
///
/// # Errors
///
/// [`StatsError::TooFewValues`] for fewer than two values,
/// [`StatsError::NonFiniteSample`] and [`StatsError::InvalidConfidence`].
///
/// # Examples
///
/// ```
/// let ci = stats::mean_ci(&[10.0, 12.0, 11.0], 0.95)?;
/// assert_eq!(ci.estimate, 11.0);
/// // t(0.975, 2) = 4.3027, standard error = 1/√3.
/// assert!((ci.upper - (11.0 + 4.302652730 / 3f64.sqrt())).abs() < 1e-8);
/// # Ok::<(), stats::StatsError>(())
/// ```
pub fn mean_ci(values: &[f64], confidence: f64) -> Result<ConfidenceInterval, StatsError> {
    check_confidence(confidence)?;
    if values.len() < 2 {
        return Err(StatsError::TooFewValues {
            needed: 2,
            got: values.len(),
        });
    }
    let values = sorted_finite(values)?;
    let (mean, stddev) = mean_and_stddev(&values);
    let count = values.len() as f64;
    let t = student_t_quantile(0.5 + 0.5 * confidence, count - 1.0)?;
    let half_width = t * stddev / count.sqrt();
    Ok(ConfidenceInterval {
        estimate: mean,
        lower: mean - half_width,
        upper: mean + half_width,
        confidence,
    })
}

/// Draws bootstrap resamples of a sorted sample, reusing its buffers.
struct Resampler {
    draws_per_index: Vec<usize>,
    resample: Vec<f64>,
}

impl Resampler {
    fn new(len: usize) -> Self {
        Resampler {
            draws_per_index: vec![0; len],
            resample: Vec::with_capacity(len),
        }
    }

    /// Returns a resample of `sorted` (drawn with replacement, same size),
    /// itself sorted.
    ///
    /// Counting how often each index is drawn and expanding the counts in
    /// index order yields the resample already sorted: O(n) instead of the
    /// O(n log n) of sorting it, which dominates bootstrap cost otherwise.
    fn resample<'a>(&'a mut self, sorted: &[f64], rng: &mut SplitMix64) -> &'a [f64] {
        self.draws_per_index.fill(0);
        for _ in 0..sorted.len() {
            self.draws_per_index[rng.index_below(sorted.len())] += 1;
        }
        self.resample.clear();
        for (&value, &draws) in sorted.iter().zip(&self.draws_per_index) {
            self.resample.extend(std::iter::repeat_n(value, draws));
        }
        &self.resample
    }
}

fn sorted_nonempty(samples: &[f64]) -> Result<Vec<f64>, StatsError> {
    let sorted = sorted_finite(samples)?;
    if sorted.is_empty() {
        return Err(StatsError::EmptyInput);
    }
    Ok(sorted)
}

fn check_bootstrap_parameters(q: f64, resamples: usize, confidence: f64) -> Result<(), StatsError> {
    check_quantile_level(q)?;
    if resamples == 0 {
        return Err(StatsError::InvalidResamples { resamples });
    }
    check_confidence(confidence)
}

fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidConfidence { confidence })
    }
}

fn percentile_interval(
    estimate: f64,
    mut estimates: Vec<f64>,
    confidence: f64,
) -> ConfidenceInterval {
    estimates.sort_unstable_by(f64::total_cmp);
    let tail = 0.5 * (1.0 - confidence);
    ConfidenceInterval {
        estimate,
        lower: quantile_of_valid(&estimates, tail, QuantileMethod::Linear),
        upper: quantile_of_valid(&estimates, 1.0 - tail, QuantileMethod::Linear),
        confidence,
    }
}
