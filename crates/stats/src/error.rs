//! The single error type returned by every fallible function in this crate.

use hdrhistogram::serialization::{DeserializeError, V2SerializeError};
use hdrhistogram::AdditionError;

/// Everything that can go wrong when computing statistics.
///
/// Messages say what was wrong with the input so that command-line tools can
/// show them to users unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// No samples were given where at least one is required.
    #[error("no samples given: at least one sample is required")]
    EmptyInput,

    /// A sample was NaN or infinite.
    #[error("sample at index {index} is {value}, but samples must be finite numbers")]
    NonFiniteSample {
        /// Position of the offending sample in the input slice.
        index: usize,
        /// The offending value (NaN, inf or -inf).
        value: f64,
    },

    /// A quantile level was NaN or outside `[0, 1]`.
    #[error("quantile level must be a number within [0, 1], got {q}")]
    InvalidQuantileLevel {
        /// The rejected level.
        q: f64,
    },

    /// A quantile method name was not recognised.
    #[error(
        "unknown quantile method {name:?}: expected one of \"linear\", \"exclusive\", \"inclusive\", \"nearest-rank\""
    )]
    UnknownQuantileMethod {
        /// The rejected name.
        name: String,
    },

    /// A latency could not be recorded in a histogram.
    #[error(
        "latency must be a finite, non-negative number of milliseconds that fits in u64 microseconds, got {latency_ms}"
    )]
    InvalidLatency {
        /// The rejected latency in milliseconds.
        latency_ms: f64,
    },

    /// The exact extremes given with a histogram are not two finite
    /// numbers with `min_ms <= max_ms`.
    #[error(
        "the exact minimum and maximum must be finite with min <= max, got min {min_ms} ms and max {max_ms} ms"
    )]
    InvalidExtremes {
        /// The rejected minimum, ms.
        min_ms: f64,
        /// The rejected maximum, ms.
        max_ms: f64,
    },

    /// A statistic was requested from a histogram with no recorded values.
    #[error("histogram is empty: record at least one latency first")]
    EmptyHistogram,

    /// hdrhistogram refused to add one histogram to another.
    #[error("could not merge histograms")]
    HistogramMerge(#[source] AdditionError),

    /// hdrhistogram could not encode a histogram.
    #[error("could not encode histogram in the V2 format")]
    HistogramEncode(#[source] V2SerializeError),

    /// Bytes did not hold a valid V2-encoded histogram.
    #[error("could not decode a V2 histogram")]
    HistogramDecode(#[source] DeserializeError),

    /// A decoded histogram was followed by bytes that belong to no histogram.
    #[error("encoded histogram is followed by {trailing_bytes} unexpected bytes")]
    TrailingHistogramBytes {
        /// How many bytes were left over.
        trailing_bytes: usize,
    },

    /// A decoded histogram is coarser than the ones this crate creates, so
    /// merging it would silently break the 0.1% error bound.
    #[error(
        "decoded histogram has {significant_digits} significant digits and a lowest discernible \
         value of {lowest_discernible_ns} ns; need at least 3 digits and 1 ns"
    )]
    IncompatibleHistogram {
        /// Precision of the decoded histogram.
        significant_digits: u8,
        /// Smallest distinguishable value of the decoded histogram, in nanoseconds.
        lowest_discernible_ns: u64,
    },

    /// Text was not valid padded standard base64.
    #[error("invalid base64 at character {position}: {reason}")]
    InvalidBase64 {
        /// Index of the first offending character.
        position: usize,
        /// What was wrong there.
        reason: &'static str,
    },

    /// A bootstrap was asked for zero resamples.
    #[error("bootstrap needs at least 1 resample, got {resamples}")]
    InvalidResamples {
        /// The rejected count.
        resamples: usize,
    },

    /// A confidence level was not strictly between 0 and 1.
    #[error("confidence level must be strictly between 0 and 1 (e.g. 0.95), got {confidence}")]
    InvalidConfidence {
        /// The rejected level.
        confidence: f64,
    },

    /// Fewer values were given than the statistic needs.
    #[error("need at least {needed} values, got {got}")]
    TooFewValues {
        /// Minimum number of values.
        needed: usize,
        /// Number of values given.
        got: usize,
    },

    /// A probability was not strictly between 0 and 1.
    #[error("probability must be strictly between 0 and 1, got {p}")]
    InvalidProbability {
        /// The rejected probability.
        p: f64,
    },

    /// Degrees of freedom were not a finite positive number.
    #[error("degrees of freedom must be a finite positive number, got {df}")]
    InvalidDegreesOfFreedom {
        /// The rejected degrees of freedom.
        df: f64,
    },
}
