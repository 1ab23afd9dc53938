//! Quantile estimation on sorted samples, matching numpy and Python's `statistics` module.

use std::fmt;
use std::str::FromStr;

use crate::StatsError;

/// How a quantile that falls between two samples is estimated.
///
/// The methods reproduce well-known reference implementations so that numbers
/// produced by this crate can be checked against numpy or Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantileMethod {
    /// Hyndman–Fan type 7, numpy's default `np.quantile(x, q)`: position
    /// `h = q·(n−1)` (0-based), linearly interpolated between neighbours.
    Linear,
    /// Hyndman–Fan type 6 exactly as Python's `statistics.quantiles` (its
    /// default method) computes it: `h = q·(n+1)` (1-based), `j = ⌊h⌋` clamped
    /// to `[1, n−1]`, value `x[j−1] + (h−j)·(x[j]−x[j−1])`.
    ///
    /// Because of that clamp the result may lie *outside* the data for small
    /// samples or extreme `q` (e.g. the quartiles of `[1, 2]` are
    /// `0.75, 1.5, 2.25`); this is deliberate, to agree with Python. A single
    /// sample is returned unchanged.
    Exclusive,
    /// Python's `statistics.quantiles(method="inclusive")`; the same formula as
    /// [`QuantileMethod::Linear`].
    Inclusive,
    /// The smallest sample such that at least a fraction `q` of the samples is
    /// less than or equal to it: rank `⌈q·n⌉` clamped to `[1, n]`. Never
    /// interpolates, so the result is always an observed value.
    NearestRank,
}

impl QuantileMethod {
    /// Every method, in declaration order (handy for help texts and tests).
    const ALL: [QuantileMethod; 4] = [
        QuantileMethod::Linear,
        QuantileMethod::Exclusive,
        QuantileMethod::Inclusive,
        QuantileMethod::NearestRank,
    ];

    /// The name accepted by [`FromStr`]: `"linear"`, `"exclusive"`,
    /// `"inclusive"` or `"nearest-rank"`.
    fn as_str(&self) -> &'static str {
        match self {
            QuantileMethod::Linear => "linear",
            QuantileMethod::Exclusive => "exclusive",
            QuantileMethod::Inclusive => "inclusive",
            QuantileMethod::NearestRank => "nearest-rank",
        }
    }
}

impl fmt::Display for QuantileMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuantileMethod {
    type Err = StatsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        QuantileMethod::ALL
            .into_iter()
            .find(|method| method.as_str() == name)
            .ok_or_else(|| StatsError::UnknownQuantileMethod {
                name: name.to_owned(),
            })
    }
}

/// Estimates the `q`-quantile of samples that are **already sorted ascending**.
///
/// Sorting is left to the caller so that many quantiles of one data set cost a
/// single sort; use [`sorted_finite`] to prepare raw samples. Unsorted input
/// gives meaningless results (checked only in debug builds).
///
/// # Errors
///
/// [`StatsError::InvalidQuantileLevel`] if `q` is NaN or outside `[0, 1]`,
/// [`StatsError::EmptyInput`] if there are no samples, and
/// [`StatsError::NonFiniteSample`] if any sample is NaN or infinite.
///
/// # Examples
///
/// ```
/// use stats::{quantile, QuantileMethod};
///
/// let sorted_ms = [1.0, 2.0, 3.0, 4.0];
/// assert_eq!(quantile(&sorted_ms, 0.5, QuantileMethod::Linear)?, 2.5);
/// assert_eq!(quantile(&sorted_ms, 0.5, QuantileMethod::NearestRank)?, 2.0);
/// # Ok::<(), stats::StatsError>(())
/// ```
pub fn quantile(sorted_samples: &[f64], q: f64, method: QuantileMethod) -> Result<f64, StatsError> {
    check_quantile_level(q)?;
    if sorted_samples.is_empty() {
        return Err(StatsError::EmptyInput);
    }
    if let Some((index, &value)) = sorted_samples
        .iter()
        .enumerate()
        .find(|(_, value)| !value.is_finite())
    {
        return Err(StatsError::NonFiniteSample { index, value });
    }
    debug_assert!(
        sorted_samples.is_sorted(),
        "quantile() requires samples sorted ascending"
    );
    Ok(quantile_of_valid(sorted_samples, q, method))
}

/// Copies `samples`, checks that every one is finite and sorts the copy
/// ascending, ready for [`quantile`]. An empty input gives an empty vector.
///
/// # Errors
///
/// [`StatsError::NonFiniteSample`] naming the index of the first NaN or
/// infinite sample.
pub fn sorted_finite(samples: &[f64]) -> Result<Vec<f64>, StatsError> {
    if let Some((index, &value)) = samples
        .iter()
        .enumerate()
        .find(|(_, value)| !value.is_finite())
    {
        return Err(StatsError::NonFiniteSample { index, value });
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    Ok(sorted)
}

/// Rejects quantile levels that are NaN or outside `[0, 1]`.
pub(crate) fn check_quantile_level(q: f64) -> Result<(), StatsError> {
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(StatsError::InvalidQuantileLevel { q })
    }
}

/// [`quantile`] without validation, for callers that have already checked
/// `q`, non-emptiness, finiteness and order (e.g. once before thousands of
/// bootstrap resamples).
pub(crate) fn quantile_of_valid(sorted: &[f64], q: f64, method: QuantileMethod) -> f64 {
    let n = sorted.len();
    debug_assert!(n > 0 && (0.0..=1.0).contains(&q));
    if n == 1 {
        return sorted[0];
    }
    match method {
        QuantileMethod::Linear | QuantileMethod::Inclusive => {
            let position = q * (n - 1) as f64;
            // `as usize` saturates and position <= n-1, so the min only guards rounding.
            let lower = (position.floor() as usize).min(n - 1);
            let upper = (lower + 1).min(n - 1);
            lerp(sorted[lower], sorted[upper], position - lower as f64)
        }
        QuantileMethod::Exclusive => {
            let position = q * (n + 1) as f64;
            let j = (position.floor() as usize).clamp(1, n - 1);
            // After clamping, `position - j` may be negative or exceed 1: that is
            // Python's extrapolation, reproduced on purpose.
            let fraction = position - j as f64;
            sorted[j - 1] + fraction * (sorted[j] - sorted[j - 1])
        }
        QuantileMethod::NearestRank => {
            let rank = ceil_forgiving_rounding(q * n as f64).clamp(1, n);
            sorted[rank - 1]
        }
    }
}

/// Linear interpolation written the way numpy does it, so that `t == 1`
/// returns `b` exactly and results agree with numpy to the last bit or two.
pub(crate) fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let difference = b - a;
    if t >= 0.5 {
        b - difference * (1.0 - t)
    } else {
        a + difference * t
    }
}

/// `⌈x⌉` for a non-negative `x`, except that values within a few ulps of an
/// integer count as that integer. Levels such as 0.07 are not representable,
/// so `0.07 * 100.0` is `7.000000000000001`; a plain ceil would pick rank 8
/// when the caller plainly meant the 7th of 100.
fn ceil_forgiving_rounding(x: f64) -> usize {
    let nearest = x.round();
    let snapped = if (x - nearest).abs() <= 4.0 * f64::EPSILON * nearest {
        nearest
    } else {
        x.ceil()
    };
    snapped as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_not_fooled_by_unrepresentable_levels() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        for percent in 1..=100 {
            let q = f64::from(percent) / 100.0;
            let value = quantile_of_valid(&sorted, q, QuantileMethod::NearestRank);
            assert_eq!(value, f64::from(percent), "q = {q}");
        }
    }

    #[test]
    fn method_names_round_trip() {
        for method in QuantileMethod::ALL {
            assert_eq!(method.as_str().parse::<QuantileMethod>().unwrap(), method);
            assert_eq!(method.to_string(), method.as_str());
        }
    }
}
