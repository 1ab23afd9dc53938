//! The client's own delay, measured against the server's write stamps.
//!
//! A server that stamps each SSE event with the wall-clock time it wrote
//! it (`: t=<Unix ns>`, stub-server `--sse-stamps`) lets the client tell
//! its own share of a token's time from the server's: per content delta,
//! the gap from the stamp to the read that brought the delta
//! ([`crate::http1::Arrival::unix_ns`]) is the client delay: the kernel's
//! loopback hand-over, the wait for the client's runtime to poll the
//! socket, and the read itself. Both ends read the same machine's wall
//! clock, so no offset enters; only a clock stepped between the two
//! readings could make a read come before its stamp, and such a pair is
//! left out.
//!
//! The gaps between consecutive stamps of one answer are the server's own
//! inter-token times (`server_itl`): when the machine stalls both
//! processes at once, the stall shows there, as server lateness against
//! its schedule, and not as client delay.
//!
//! Memory stays bounded: every value goes into a histogram (a [`Series`]
//! that keeps no values), never a list per token; percentiles come from
//! its buckets, within the histogram's stated error.

use std::sync::Mutex;

use model::summary::Percentiles;
use stats::LatencyHistogram;

use crate::summary::{percentiles, Series};

/// What one streamed response's stamps measured, before it is added to
/// the run's [`StampStats`] (one lock for many tokens).
#[derive(Debug, Default)]
pub(crate) struct ResponseStamps {
    /// Client delay per stamped content delta, ns.
    pub client_delay_ns: Vec<u64>,
    /// Gaps between consecutive stamped content deltas of a choice, ns.
    pub server_itl_ns: Vec<u64>,
}

impl ResponseStamps {
    /// Notes a content delta stamped `stamp_ns` and read at `read_ns`
    /// (both Unix ns), after the choice's previous stamp `previous_ns`.
    pub(crate) fn token(&mut self, stamp_ns: u64, read_ns: Option<u64>, previous_ns: Option<u64>) {
        if let Some(delay) = read_ns.and_then(|read| read.checked_sub(stamp_ns)) {
            self.client_delay_ns.push(delay);
        }
        if let Some(gap) = previous_ns.and_then(|previous| stamp_ns.checked_sub(previous)) {
            self.server_itl_ns.push(gap);
        }
    }

    /// How many values wait to be added.
    pub(crate) fn len(&self) -> usize {
        self.client_delay_ns.len() + self.server_itl_ns.len()
    }

    /// Adds the values to `stats` and forgets them.
    pub(crate) fn flush_into(&mut self, stats: &StampStats) {
        stats.add(self);
        self.client_delay_ns.clear();
        self.server_itl_ns.clear();
    }
}

/// The run's client delays and server gaps, from every stamped response.
#[derive(Debug)]
pub(crate) struct StampStats {
    inner: Mutex<Pair>,
}

#[derive(Debug)]
struct Pair {
    client_delay: Series,
    server_itl: Series,
}

impl Pair {
    fn new() -> Self {
        // A limit of 0: histograms only.
        Self {
            client_delay: Series::with_limit(0),
            server_itl: Series::with_limit(0),
        }
    }
}

/// What the summary reports of the stamps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StampPercentiles {
    /// From each stamp to the client's read of its delta, ms.
    pub client_delay: Percentiles,
    /// Between consecutive stamps of an answer, ms.
    pub server_itl: Percentiles,
}

impl Default for StampStats {
    fn default() -> Self {
        Self::new()
    }
}

impl StampStats {
    /// No stamps yet.
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Pair::new()),
        }
    }

    /// Adds one response's stamps.
    pub(crate) fn add(&self, response: &ResponseStamps) {
        if response.client_delay_ns.is_empty() && response.server_itl_ns.is_empty() {
            return;
        }
        // A poisoned lock only means another thread panicked mid-record:
        // the histograms are still whole values.
        let mut pair = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &ns in &response.client_delay_ns {
            pair.client_delay.record(ns as f64 / 1e6);
        }
        for &ns in &response.server_itl_ns {
            pair.server_itl.record(ns as f64 / 1e6);
        }
    }

    /// Forgets everything (after the warm-up).
    pub(crate) fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Pair::new();
    }

    /// The percentiles, `None` when no delta carried a stamp.
    pub(crate) fn percentiles(&self) -> Option<StampPercentiles> {
        let mut pair = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if pair.client_delay.count() == 0 && pair.server_itl.count() == 0 {
            return None;
        }
        let from_histogram = |series: &mut Series| Percentiles {
            quantile_error: (series.count() > 0).then(|| {
                format!(
                    "from a histogram, no values kept: {}",
                    LatencyHistogram::QUANTILE_ERROR
                )
            }),
            ..percentiles(series)
        };
        Some(StampPercentiles {
            client_delay: from_histogram(&mut pair.client_delay),
            server_itl: from_histogram(&mut pair.server_itl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_and_gaps_from_stamps_and_reads() {
        let mut one = ResponseStamps::default();
        // First token: a delay, no gap yet.
        one.token(1_000_000, Some(1_150_000), None);
        // A read before its stamp (a stepped clock) is left out; the gap
        // still counts. An unknown read time gives no delay.
        one.token(21_000_000, Some(20_999_000), Some(1_000_000));
        one.token(41_000_000, None, Some(21_000_000));
        assert_eq!(one.client_delay_ns, vec![150_000]);
        assert_eq!(one.server_itl_ns, vec![20_000_000, 20_000_000]);
        let stats = StampStats::new();
        assert_eq!(stats.percentiles(), None);
        stats.add(&one);
        let got = stats.percentiles().unwrap();
        assert_eq!(got.client_delay.count, 1);
        assert_eq!(got.client_delay.max_ms, Some(0.15));
        assert_eq!(got.server_itl.count, 2);
        assert_eq!(got.server_itl.min_ms, Some(20.0));
        assert!(!got.client_delay.quantiles_exact);
        stats.reset();
        assert_eq!(stats.percentiles(), None);
    }
}
