//! Streaming, mergeable, bounded-memory latency histogram with at most 0.1% relative error.
//!
//! It counts nanoseconds: a load generator on loopback sees latencies of
//! 20-100 us, where whole microseconds alone would be a 1-5% error.

use std::io::Cursor;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::{DecodeError, Engine as _};
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

use crate::quantile::{check_quantile_level, lerp};
use crate::StatsError;

/// Three significant digits: every bucket is at most 1/1024 of its value wide.
const SIGNIFICANT_DIGITS: u8 = 3;

const NANOS_PER_MILLI: f64 = 1_000_000.0;

const NANOS_PER_MICRO: u64 = 1_000;

/// Half a nanosecond in milliseconds: the most rounding to whole
/// nanoseconds moves a latency.
const HALF_NANO_MS: f64 = 0.5e-6;

/// A latency histogram that records whole nanoseconds.
///
/// Memory stays bounded (about 200 KiB for a range up to a minute) however
/// many values are recorded, and the range grows automatically. Reported
/// values are the midpoint of the bucket a value fell into, so they are
/// within 0.05% of the recorded nanoseconds. Latencies given in milliseconds
/// are rounded to the nearest nanosecond first (at most 0.5 ns more), so the
/// total stays within 0.1% for every latency from 1 µs up, loopback
/// round trips included. Values up to 2048 ns are kept exactly.
///
/// Histograms from different threads or processes can be combined with
/// [`LatencyHistogram::merge`], also after a trip through
/// [`LatencyHistogram::to_base64_v2`].
///
/// The statistics accessors return `None` / an error for an empty histogram
/// rather than a made-up zero.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// Creates an empty histogram.
    pub fn new() -> Self {
        // Creation can only fail for a precision outside 0..=5.
        let mut histogram = Histogram::new(SIGNIFICANT_DIGITS)
            .expect("3 significant digits is a valid hdrhistogram precision");
        histogram.auto(true);
        LatencyHistogram { histogram }
    }

    /// Records one latency given in milliseconds (rounded to whole nanoseconds).
    ///
    /// # Errors
    ///
    /// [`StatsError::InvalidLatency`] for NaN, infinite, negative, or
    /// absurdly large (over `u64::MAX` ns, about 584 years) values.
    // Inlined: called once per sample on hot paths in other crates, where
    // a cross-crate call per value cost ~50% over hdrhistogram itself.
    #[inline]
    pub fn record_ms(&mut self, latency_ms: f64) -> Result<(), StatsError> {
        let latency_ns = latency_ms * NANOS_PER_MILLI;
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast lossless;
        // NaN fails both comparisons.
        if !(latency_ns >= 0.0 && latency_ns < u64::MAX as f64) {
            return Err(StatsError::InvalidLatency { latency_ms });
        }
        // Rounds half up: the same as `round()` for non-negative values, and
        // an add instead of a libm call per sample.
        self.record_ns((latency_ns + 0.5) as u64);
        Ok(())
    }

    /// Records one latency given in whole microseconds. Values beyond
    /// `u64::MAX` ns (about 584 years) are clamped to it.
    #[inline]
    pub fn record_us(&mut self, latency_us: u64) {
        self.record_ns(latency_us.saturating_mul(NANOS_PER_MICRO));
    }

    /// Records one latency given in whole nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, latency_ns: u64) {
        // With auto-resize, recording only fails if the counts array would not
        // fit in usize (32-bit targets with values near u64::MAX); clamping to
        // the largest trackable value there beats losing the sample. The
        // retry lives out of line so the hot path stays as small as a bare
        // `record`.
        if self.histogram.record(latency_ns).is_err() {
            self.record_clamped(latency_ns);
        }
    }

    #[cold]
    #[inline(never)]
    fn record_clamped(&mut self, latency_ns: u64) {
        self.histogram.saturating_record(latency_ns);
    }

    /// Number of recorded latencies.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The `q`-quantile in milliseconds: the smallest recorded latency such
    /// that a fraction `q` of all latencies is at or below it (nearest rank),
    /// reported as its bucket midpoint.
    ///
    /// # Errors
    ///
    /// [`StatsError::InvalidQuantileLevel`] if `q` is NaN or outside `[0, 1]`,
    /// [`StatsError::EmptyHistogram`] if nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Result<f64, StatsError> {
        check_quantile_level(q)?;
        if self.histogram.is_empty() {
            return Err(StatsError::EmptyHistogram);
        }
        Ok(self.bucket_midpoint_ms(self.histogram.value_at_quantile(q)))
    }

    /// The `q`-quantile in milliseconds by numpy's default method
    /// ([`crate::QuantileMethod::Linear`]), estimated from the buckets:
    /// with `n` latencies, `h = q·(n−1)`, `k = ⌊h⌋`, the `k`-th and
    /// `(k+1)`-th smallest (0-based) are read from the buckets they fell
    /// into and interpolated by `h − k`, as numpy interpolates the samples.
    ///
    /// `min_ms` and `max_ms` are the exact extremes, kept beside the
    /// histogram by the caller: they stand for the smallest and the largest
    /// order statistic, and the result is clamped to them, so no quantile
    /// lies outside the data. The only error left is the bucket resolution:
    /// see [`LatencyHistogram::QUANTILE_ERROR`] and
    /// [`LatencyHistogram::quantile_error_bound_ms`].
    ///
    /// # Errors
    ///
    /// [`StatsError::InvalidQuantileLevel`] if `q` is NaN or outside `[0, 1]`,
    /// [`StatsError::EmptyHistogram`] if nothing was recorded, and
    /// [`StatsError::InvalidExtremes`] unless `min_ms <= max_ms`, both finite.
    pub fn quantile_linear_between_ms(
        &self,
        q: f64,
        min_ms: f64,
        max_ms: f64,
    ) -> Result<f64, StatsError> {
        check_quantile_level(q)?;
        if self.histogram.is_empty() {
            return Err(StatsError::EmptyHistogram);
        }
        if !(min_ms.is_finite() && max_ms.is_finite() && min_ms <= max_ms) {
            return Err(StatsError::InvalidExtremes { min_ms, max_ms });
        }
        let last = self.histogram.len() - 1;
        let position = q * last as f64;
        // `as u64` saturates and position <= last, so the min only guards rounding.
        let lower = (position.floor() as u64).min(last);
        let upper = (lower + 1).min(last);
        let [lower_ms, upper_ms] = self.order_statistics_ms([lower, upper]);
        let exact_or = |rank: u64, from_bucket_ms: f64| match rank {
            0 => min_ms,
            r if r == last => max_ms,
            _ => from_bucket_ms,
        };
        let value = lerp(
            exact_or(lower, lower_ms),
            exact_or(upper, upper_ms),
            position - lower as f64,
        );
        Ok(value.clamp(min_ms, max_ms))
    }

    /// [`LatencyHistogram::quantile_linear_between_ms`] with the extremes
    /// the buckets know (their midpoints), for a histogram whose exact
    /// minimum and maximum were not kept.
    ///
    /// # Errors
    ///
    /// As [`LatencyHistogram::quantile_linear_between_ms`].
    pub fn quantile_linear_ms(&self, q: f64) -> Result<f64, StatsError> {
        match (self.min_ms(), self.max_ms()) {
            (Some(min_ms), Some(max_ms)) => self.quantile_linear_between_ms(q, min_ms, max_ms),
            _ => {
                check_quantile_level(q)?;
                Err(StatsError::EmptyHistogram)
            }
        }
    }

    /// What [`LatencyHistogram::quantile_linear_between_ms`] may be off by,
    /// in words, for a report to print beside its numbers.
    pub const QUANTILE_ERROR: &'static str = "numpy's linear method over the histogram's buckets: \
         within 1/2048 (0.049%) of the exact value plus 0.5 ns (half a bucket of 3 significant \
         digits, and the rounding to whole nanoseconds), never outside the exact min and max";

    /// The most [`LatencyHistogram::quantile_linear_between_ms`] can differ
    /// from numpy's linear quantile of the recorded latencies when that is
    /// `exact_ms`: half a bucket, at most 1/2048 of the value, plus 0.5 ns
    /// of rounding to whole nanoseconds.
    ///
    /// Why it holds: each order statistic is reported as its bucket's
    /// midpoint, within half a bucket of its true value; a bucket is at most
    /// 1/1024 as wide as its lowest value (values under 2048 ns have a
    /// bucket each, so are exact); interpolating between two values each
    /// within that relative error gives a value within it of the
    /// interpolation of the true ones; the exact extremes and the clamp only
    /// bring it closer.
    pub fn quantile_error_bound_ms(exact_ms: f64) -> f64 {
        // Half a bucket of the rounded value, whose rounding is 0.5 ns.
        (exact_ms.abs() + HALF_NANO_MS) / 2048.0 + HALF_NANO_MS
    }

    /// The values, in ms (bucket midpoints), of the latencies at two
    /// 0-based ranks in ascending order, `ranks[0] <= ranks[1] < count`, in
    /// one pass over the buckets.
    fn order_statistics_ms(&self, ranks: [u64; 2]) -> [f64; 2] {
        let mut found = [0.0; 2];
        let mut next = 0;
        let mut below = 0u64;
        for bucket in self.histogram.iter_recorded() {
            below += bucket.count_at_value();
            while next < ranks.len() && ranks[next] < below {
                found[next] = self.bucket_midpoint_ms(bucket.value_iterated_to());
                next += 1;
            }
            if next == ranks.len() {
                break;
            }
        }
        found
    }

    /// Smallest recorded latency in milliseconds (bucket midpoint), or `None`
    /// if nothing was recorded. Equals `quantile_ms(0.0)`.
    pub fn min_ms(&self) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.bucket_midpoint_ms(self.histogram.min()))
    }

    /// Largest recorded latency in milliseconds (bucket midpoint), or `None`
    /// if nothing was recorded. Equals `quantile_ms(1.0)`.
    pub fn max_ms(&self) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.bucket_midpoint_ms(self.histogram.max()))
    }

    /// Mean latency in milliseconds computed from bucket midpoints, or `None`
    /// if nothing was recorded.
    pub fn mean_ms(&self) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.histogram.mean() / NANOS_PER_MILLI)
    }

    /// Every distinct recorded value as (its bucket midpoint in ms, how many
    /// latencies fell in that bucket), ascending: what a text or chart
    /// histogram of the run needs, without exposing the buckets' layout.
    fn recorded_ms(&self) -> Vec<(f64, u64)> {
        self.histogram
            .iter_recorded()
            .map(|v| {
                (
                    self.bucket_midpoint_ms(v.value_iterated_to()),
                    v.count_at_value(),
                )
            })
            .collect()
    }

    /// The latencies in `buckets` log-spaced buckets from `min_ms` to
    /// `max_ms` (the exact extremes, kept beside the histogram), as
    /// `(upper bound ms, count)`: bucket `i` holds the latencies above the
    /// previous bound (the fastest included in the first) up to its own,
    /// the last bound being `max_ms`. Log spacing, because latencies are
    /// skewed: with equal widths one slow outlier puts nearly every request
    /// in the first bucket, and the tail's shape disappears. When every
    /// latency is the same (or `min_ms` is not above zero) there is one
    /// bucket.
    pub fn log_buckets_ms(&self, min_ms: f64, max_ms: f64, buckets: usize) -> Vec<(f64, u64)> {
        let buckets = if min_ms > 0.0 && max_ms > min_ms {
            buckets.max(1)
        } else {
            1
        };
        // Bounds min * ratio^i for i in 1..=buckets; the last is max.
        let ratio = (max_ms / min_ms).powf(1.0 / buckets as f64);
        let mut out: Vec<(f64, u64)> = (1..=buckets)
            .map(|i| {
                let upper_ms = if i == buckets {
                    max_ms
                } else {
                    min_ms * ratio.powi(i32::try_from(i).unwrap_or(i32::MAX))
                };
                (upper_ms, 0)
            })
            .collect();
        // Bucket midpoints, as the percentiles report values.
        for (ms, count) in self.recorded_ms() {
            let index = if buckets == 1 {
                0
            } else {
                // Bucket i holds (bound i-1, bound i]: ceil(log_ratio(ms/min)) - 1.
                let position = ((ms / min_ms).ln() / ratio.ln()).ceil() - 1.0;
                position.clamp(0.0, (buckets - 1) as f64) as usize
            };
            if let Some(bucket) = out.get_mut(index) {
                bucket.1 += count;
            }
        }
        out
    }

    /// Adds every latency recorded in `other` to `self`, exactly as if they
    /// had been recorded here.
    ///
    /// # Errors
    ///
    /// [`StatsError::HistogramMerge`] if hdrhistogram cannot grow to hold
    /// `other`'s range (not expected on 64-bit targets).
    pub fn merge(&mut self, other: &LatencyHistogram) -> Result<(), StatsError> {
        self.histogram
            .add(&other.histogram)
            .map_err(StatsError::HistogramMerge)
    }

    /// Encodes the histogram losslessly in the HdrHistogram V2 format
    /// (uncompressed), as base64 text suitable for JSON or log lines.
    ///
    /// # Errors
    ///
    /// [`StatsError::HistogramEncode`] if hdrhistogram fails to encode it.
    pub fn to_base64_v2(&self) -> Result<String, StatsError> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.histogram, &mut bytes)
            .map_err(StatsError::HistogramEncode)?;
        Ok(BASE64.encode(&bytes))
    }

    /// Decodes a histogram produced by [`LatencyHistogram::to_base64_v2`]
    /// (or any HdrHistogram V2 encoder recording nanoseconds with at least
    /// 3 significant digits). The format carries no unit: a histogram of
    /// microseconds would decode as values 1000 times too small.
    ///
    /// # Errors
    ///
    /// [`StatsError::InvalidBase64`], [`StatsError::HistogramDecode`] or
    /// [`StatsError::TrailingHistogramBytes`] for corrupt input, and
    /// [`StatsError::IncompatibleHistogram`] for a coarser histogram.
    pub fn from_base64_v2(encoded: &str) -> Result<Self, StatsError> {
        let bytes = decode_base64(encoded)?;
        let mut reader = Cursor::new(bytes.as_slice());
        let mut histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut reader)
            .map_err(StatsError::HistogramDecode)?;
        let consumed = usize::try_from(reader.position()).unwrap_or(usize::MAX);
        let trailing_bytes = bytes.len().saturating_sub(consumed);
        if trailing_bytes > 0 {
            return Err(StatsError::TrailingHistogramBytes { trailing_bytes });
        }
        if histogram.sigfig() < SIGNIFICANT_DIGITS || histogram.low() > 1 {
            return Err(StatsError::IncompatibleHistogram {
                significant_digits: histogram.sigfig(),
                lowest_discernible_ns: histogram.low(),
            });
        }
        histogram.auto(true);
        Ok(LatencyHistogram { histogram })
    }

    fn bucket_midpoint_ms(&self, value_ns: u64) -> f64 {
        self.histogram.median_equivalent(value_ns) as f64 / NANOS_PER_MILLI
    }
}

/// Decodes canonical padded standard base64: the `base64` crate's
/// standard engine accepts nothing else (no missing or extra padding, no
/// stray bits before it), so corrupt text fails loudly instead of decoding
/// to other bytes.
fn decode_base64(text: &str) -> Result<Vec<u8>, StatsError> {
    if !text.len().is_multiple_of(4) {
        return Err(StatsError::InvalidBase64 {
            position: text.len(),
            reason: "length is not a multiple of 4",
        });
    }
    BASE64.decode(text).map_err(|error| {
        let (position, reason) = match error {
            DecodeError::InvalidByte(position, b'=') => (position, "misplaced padding"),
            DecodeError::InvalidByte(position, _) => (position, "not a base64 character"),
            DecodeError::InvalidLastSymbol(position, _) => {
                (position, "non-zero bits before padding")
            }
            DecodeError::InvalidLength(symbols) => (
                symbols.saturating_sub(1),
                "a lone character in the last group",
            ),
            DecodeError::InvalidPadding => (
                text.find('=').unwrap_or(text.len()),
                "padding missing or not canonical",
            ),
        };
        StatsError::InvalidBase64 { position, reason }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_largest_values_clamped_to_u64_nanoseconds() {
        let mut histogram = LatencyHistogram::new();
        histogram.record_us(u64::MAX);
        histogram.record_us(1);
        assert_eq!(histogram.count(), 2);
        let max_ms = histogram.max_ms().unwrap();
        assert!(
            (max_ms / (u64::MAX as f64 / NANOS_PER_MILLI) - 1.0).abs() < 1e-3,
            "{max_ms}"
        );
        assert_eq!(histogram.min_ms(), Some(0.001));
    }

    #[test]
    fn buckets_are_log_spaced_from_min_to_max_and_count_every_latency() {
        let mut histogram = LatencyHistogram::new();
        // 1 and 1024 ms, and 1.5 times each power of two between: away
        // from the bounds, which the histogram knows to 0.1% only.
        histogram.record_ms(1.0).unwrap();
        histogram.record_ms(1024.0).unwrap();
        for i in 0..10 {
            histogram.record_ms(1.5 * f64::from(1u32 << i)).unwrap();
        }
        let buckets = histogram.log_buckets_ms(1.0, 1024.0, 10);
        assert_eq!(buckets.len(), 10);
        // Bounds 2, 4, ... 1024; the first bucket holds the fastest too.
        for (i, (bound, _)) in buckets.iter().enumerate() {
            let want = f64::from(2u32 << i);
            assert!((bound - want).abs() < 1e-9 * want, "{buckets:?}");
        }
        let counts: Vec<u64> = buckets.iter().map(|b| b.1).collect();
        assert_eq!(counts, [2, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        // All alike: one bucket with everything.
        let mut same = LatencyHistogram::new();
        for _ in 0..5 {
            same.record_ms(3.0).unwrap();
        }
        assert_eq!(same.log_buckets_ms(3.0, 3.0, 11), [(3.0, 5)]);
    }

    #[test]
    fn malformed_base64_is_named_where_it_goes_wrong() {
        // RFC 4648's vectors still decode (the crate's own tests cover the rest).
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode_base64(encoded).unwrap(), plain.as_bytes());
            assert_eq!(BASE64.encode(plain), encoded);
        }
        let cases = [
            ("Zg=", 3, "length is not a multiple of 4"),
            ("Zm9vY", 5, "length is not a multiple of 4"),
            ("not base64!", 11, "length is not a multiple of 4"),
            ("Zg==Zg==", 2, "misplaced padding"),
            ("Zm8=Zm8=", 3, "misplaced padding"),
            ("Z===", 1, "misplaced padding"),
            ("Zm9v====", 4, "misplaced padding"),
            ("A=B=", 1, "misplaced padding"),
            ("=Zm9", 0, "misplaced padding"),
            ("Zm9*", 3, "not a base64 character"),
            ("Zm 9vZg=", 2, "not a base64 character"),
            ("Zh==", 1, "non-zero bits before padding"),
            ("Zm9=", 2, "non-zero bits before padding"),
        ];
        for (text, position, reason) in cases {
            match LatencyHistogram::from_base64_v2(text) {
                Err(StatsError::InvalidBase64 {
                    position: p,
                    reason: r,
                }) => assert_eq!((p, r), (position, reason), "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}
