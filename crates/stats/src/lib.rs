//! Statistics for latency data: quantiles, summaries, streaming histograms and confidence intervals.
//!
//! This crate is the shared numeric core of the latency-testing toolkit; the
//! load generator, report builder and other tools import it so that every
//! number they print is computed the same way.
//!
//! * [`quantile`] / [`sorted_finite`] — exact quantiles of a sample, with the
//!   [`QuantileMethod`]s of numpy and Python's `statistics` module reproduced
//!   to within floating-point rounding.
//! * [`Summary`] — count, min, max, mean, standard deviation and p50…p99.9 in
//!   one call.
//! * [`LatencyHistogram`] — bounded-memory HdrHistogram of whole nanoseconds
//!   with ≤ 0.1% relative error (for every latency from 1 µs up, loopback
//!   round trips included) that can be merged across threads and processes
//!   (via base64 V2); [`LatencyHistogram::quantile_linear_between_ms`]
//!   estimates numpy's linear quantile from its buckets, within half a bucket.
//! * [`bootstrap_quantile_ci`], [`bootstrap_quantile_diff_ci`] — seeded,
//!   reproducible percentile-bootstrap intervals for a quantile or for the
//!   change in a quantile between two runs; [`mean_ci`] — Student-t interval
//!   for the mean of a few repeats.
//! * [`slo`] — the grammar of service-level objectives (`p95<=800`,
//!   `error_rate<=0.01`, `ttft_p95<=500`, ...) and their one evaluation over
//!   requests ([`slo::Request`]), shared by the tools that judge runs.
//!
//! Functions never panic on bad data: NaN, infinities, empty inputs and
//! out-of-range parameters come back as a [`StatsError`] saying what was wrong.
//!
//! # Example
//!
//! ```
//! use stats::{bootstrap_quantile_ci, LatencyHistogram, QuantileMethod, Summary};
//!
//! let latencies_ms = [12.1, 9.8, 11.4, 10.2, 55.0, 10.9, 11.7, 10.0, 9.9, 13.3];
//!
//! // Exact statistics from all samples.
//! let summary = Summary::from_samples(&latencies_ms, QuantileMethod::Linear)?;
//! assert_eq!(summary.count, 10);
//! assert_eq!(summary.max, 55.0);
//! assert!((summary.p50 - 11.15).abs() < 1e-12);
//!
//! // How sure are we about the median? Same seed, same answer.
//! let ci = bootstrap_quantile_ci(&latencies_ms, 0.5, QuantileMethod::Linear, 1000, 0.95, 7)?;
//! assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
//!
//! // Streaming: record into a histogram, ship it as text, merge elsewhere.
//! let mut histogram = LatencyHistogram::new();
//! for &latency_ms in &latencies_ms {
//!     histogram.record_ms(latency_ms)?;
//! }
//! let shipped = histogram.to_base64_v2()?;
//! let mut merged = LatencyHistogram::from_base64_v2(&shipped)?;
//! merged.merge(&histogram)?;
//! assert_eq!(merged.count(), 20);
//! let p50_ms = merged.quantile_ms(0.5)?;
//! assert!((p50_ms - 10.9).abs() <= 10.9 * 0.001);
//! # Ok::<(), stats::StatsError>(())
//! ```

#![deny(missing_docs)]

mod bootstrap;
mod error;
mod histogram;
mod quantile;
mod rng;
pub mod slo;
mod student_t;
mod summary;

pub use bootstrap::{
    bootstrap_quantile_ci, bootstrap_quantile_diff_ci, mean_ci, ConfidenceInterval,
};
pub use error::StatsError;
pub use histogram::LatencyHistogram;
pub use quantile::{quantile, sorted_finite, QuantileMethod};
pub use rng::{Normals, SplitMix64};
pub use student_t::student_t_quantile;
pub use summary::Summary;
