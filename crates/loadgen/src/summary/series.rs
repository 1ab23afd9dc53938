//! One latency series: every value in a histogram, and every value kept
//! for exact percentiles while they fit in [`EXACT_SAMPLES_PER_SERIES`]
//! (bounded memory however long the run); and what a series reports
//! (percentiles, log-spaced buckets).

use model::summary::{LatencyBucket, Percentiles};
use stats::{LatencyHistogram, QuantileMethod};

/// Values kept per series for exact percentiles. A value is an `f64`, so
/// 2,000,000 of them take 16 MB; a streamed LLM run keeps four series
/// (e2e, TTFT, TPOT and every inter-token gap), at most 64 MB, sorted in
/// place at the end. Past the bound a series frees its values and its
/// percentiles come from its histogram (bounded memory however long the run).
pub(super) const EXACT_SAMPLES_PER_SERIES: usize = 2_000_000;

/// One latency series: exact while it fits in its bound, a histogram always
/// (for live progress, the text histogram, and merging shards).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Every value, in nanoseconds with 0.1% relative error: loopback
    /// latencies are tens of microseconds, where whole microseconds would
    /// be a few percent off.
    histogram: LatencyHistogram,
    /// Every value while there are at most `limit`; empty beyond.
    samples: Vec<f64>,
    /// Whether `samples` is in ascending order.
    sorted: bool,
    /// The most values `samples` keeps.
    limit: usize,
    /// Whether `samples` holds every value.
    exact: bool,
    count: u64,
    sum_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Default for Series {
    fn default() -> Self {
        Self::with_limit(EXACT_SAMPLES_PER_SERIES)
    }
}

impl Series {
    /// An empty series keeping up to `limit` values exactly.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self {
            histogram: LatencyHistogram::new(),
            samples: Vec::new(),
            sorted: true,
            limit,
            exact: true,
            count: 0,
            sum_ms: 0.0,
            min_ms: f64::INFINITY,
            max_ms: f64::NEG_INFINITY,
        }
    }

    /// Adds one value, ms. Values come from a monotonic clock, so they are
    /// finite and never negative; anything else is left out.
    pub(crate) fn record(&mut self, value_ms: f64) {
        if self.histogram.record_ms(value_ms).is_err() {
            return;
        }
        self.count += 1;
        self.sum_ms += value_ms;
        self.min_ms = self.min_ms.min(value_ms);
        self.max_ms = self.max_ms.max(value_ms);
        if !self.exact {
            return;
        }
        if self.samples.len() < self.limit {
            self.sorted = self.sorted && self.samples.last().is_none_or(|&last| last <= value_ms);
            self.samples.push(value_ms);
        } else {
            // Past the bound: the histogram alone, and the memory back.
            self.exact = false;
            self.samples = Vec::new();
        }
    }

    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Whether the percentiles are exact (every value was kept).
    pub(crate) fn exact(&self) -> bool {
        self.exact
    }

    /// Smallest value, ms (exact).
    pub(crate) fn min_ms(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min_ms)
    }

    /// Largest value, ms (exact).
    pub(crate) fn max_ms(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max_ms)
    }

    /// Mean, ms (exact).
    pub(crate) fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    /// The histogram of every value.
    pub(crate) fn histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }

    /// The `q` quantile, ms, by numpy's linear method: exact from every
    /// value while they fit, else from the histogram's buckets (within
    /// half a bucket, never outside the exact min and max). Sorts the kept
    /// values in place the first time after a record.
    pub(crate) fn quantile_ms(&mut self, q: f64) -> Option<f64> {
        if !self.exact {
            return self.live_quantile_ms(q);
        }
        if !self.sorted {
            self.samples.sort_unstable_by(f64::total_cmp);
            self.sorted = true;
        }
        stats::quantile(&self.samples, q, QuantileMethod::Linear).ok()
    }

    /// The `q` quantile, ms, by numpy's linear method from the histogram
    /// alone: what the live progress shows, cheap at any size.
    pub(crate) fn live_quantile_ms(&self, q: f64) -> Option<f64> {
        let (min, max) = (self.min_ms()?, self.max_ms()?);
        self.histogram.quantile_linear_between_ms(q, min, max).ok()
    }

    /// `None` while exact; else how far the percentiles may be off, with
    /// the bound on kept values that was passed.
    pub(crate) fn quantile_error(&self) -> Option<String> {
        (!self.exact).then(|| {
            format!(
                "more than {} values, the most kept for exact percentiles: {}",
                self.limit,
                LatencyHistogram::QUANTILE_ERROR
            )
        })
    }
}

/// The percentiles of a series (numpy's linear method); sorts its kept
/// values in place.
pub(crate) fn percentiles(series: &mut Series) -> Percentiles {
    Percentiles {
        count: series.count(),
        p50_ms: series.quantile_ms(0.50),
        p90_ms: series.quantile_ms(0.90),
        p95_ms: series.quantile_ms(0.95),
        p99_ms: series.quantile_ms(0.99),
        mean_ms: series.mean_ms(),
        min_ms: series.min_ms(),
        max_ms: series.max_ms(),
        quantiles_exact: series.exact(),
        quantile_error: series.quantile_error(),
    }
}

/// The successful latencies of `histogram` in `buckets` log-spaced
/// buckets from the exact `min_ms` to `max_ms`
/// ([`LatencyHistogram::log_buckets_ms`]): the summary's text histogram.
pub(super) fn latency_buckets(
    histogram: &LatencyHistogram,
    min_ms: f64,
    max_ms: f64,
    buckets: usize,
) -> Vec<LatencyBucket> {
    histogram
        .log_buckets_ms(min_ms, max_ms, buckets)
        .into_iter()
        .map(|(upper_ms, count)| LatencyBucket { upper_ms, count })
        .collect()
}
