//! Streaming statistics over the rows of a run ([`RowStats`]): counts,
//! error kinds, and the latency series (end to end, and TTFT, inter-token
//! gaps and TPOT once a row carries LLM timings).

use std::collections::BTreeMap;

use model::log::LogRow;
use model::summary::{LatencyBucket, LlmSummary};

use super::series::{latency_buckets, percentiles, Series, EXACT_SAMPLES_PER_SERIES};

/// Streaming statistics over rows: memory stays bounded (see
/// [`EXACT_SAMPLES_PER_SERIES`]) however long the run.
pub(crate) struct RowStats {
    /// Latencies of successful rows.
    latency: Series,
    /// Rows seen.
    pub total: u64,
    /// Rows with `ok`.
    pub succeeded: u64,
    /// Rows whose output was checked against its expected output.
    pub verified: u64,
    /// Failed rows by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Re-sends on a new connection, over all rows.
    pub retries: u64,
    /// LLM timings of successful rows, once a row carried them.
    pub llm: Option<LlmStats>,
    /// The most values each series keeps exactly.
    limit: usize,
}

/// Streaming LLM statistics, a [`Series`] each.
#[derive(Debug, Clone)]
pub(crate) struct LlmStats {
    /// Time to first token.
    pub ttft: Series,
    /// Every gap between tokens.
    pub itl: Series,
    /// Time per output token.
    pub tpot: Series,
    /// Output tokens.
    pub output_tokens: u64,
    /// Rows whose count came from `usage`.
    pub tokens_from_usage: u64,
    /// Rows whose count was counted.
    pub tokens_counted: u64,
}

impl LlmStats {
    fn with_limit(limit: usize) -> Self {
        Self {
            ttft: Series::with_limit(limit),
            itl: Series::with_limit(limit),
            tpot: Series::with_limit(limit),
            output_tokens: 0,
            tokens_from_usage: 0,
            tokens_counted: 0,
        }
    }
}

impl Default for LlmStats {
    fn default() -> Self {
        Self::with_limit(EXACT_SAMPLES_PER_SERIES)
    }
}

impl LlmStats {
    /// Where the token counts came from: `usage`, `counted`, `mixed` or `none`.
    fn tokens_from(&self) -> &'static str {
        match (self.tokens_from_usage, self.tokens_counted) {
            (0, 0) => "none",
            (_, 0) => "usage",
            (0, _) => "counted",
            _ => "mixed",
        }
    }
}

impl RowStats {
    /// Empty statistics.
    pub(crate) fn new() -> Self {
        Self::with_limit(EXACT_SAMPLES_PER_SERIES)
    }

    /// Empty statistics keeping up to `limit` values per series exactly.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self {
            latency: Series::with_limit(limit),
            total: 0,
            succeeded: 0,
            verified: 0,
            errors: BTreeMap::new(),
            retries: 0,
            llm: None,
            limit,
        }
    }

    /// Adds one row.
    pub(crate) fn record(&mut self, row: &LogRow) {
        self.total += 1;
        self.verified += u64::from(row.verified);
        self.retries += u64::from(row.retries);
        if row.ok {
            self.succeeded += 1;
            self.latency.record(row.latency_ms);
            if let Some(timing) = &row.llm {
                let limit = self.limit;
                let llm = self.llm.get_or_insert_with(|| LlmStats::with_limit(limit));
                if let Some(ttft) = timing.ttft_ms {
                    llm.ttft.record(ttft);
                }
                if let Some(tpot) = timing.tpot_ms {
                    llm.tpot.record(tpot);
                }
                for gap in &timing.itl_ms {
                    llm.itl.record(*gap);
                }
                llm.output_tokens += timing.output_tokens.unwrap_or(0);
                match timing.tokens_from {
                    Some(model::log::TokensFrom::Usage) => llm.tokens_from_usage += 1,
                    Some(model::log::TokensFrom::Counted) => llm.tokens_counted += 1,
                    None => {}
                }
            }
        } else {
            let kind = if row.error.is_empty() {
                "unknown"
            } else {
                row.error.as_str()
            };
            *self.errors.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// The latencies of successful requests, to take final percentiles
    /// from ([`Series::quantile_ms`] sorts in place).
    pub(crate) fn latency_mut(&mut self) -> &mut Series {
        &mut self.latency
    }

    /// Latency at quantile `q` of successful requests so far, ms, from the
    /// histogram (numpy's linear method within half a bucket): for live
    /// progress; the summary's come from [`Series::quantile_ms`].
    pub(crate) fn live_quantile_ms(&self, q: f64) -> Option<f64> {
        self.latency.live_quantile_ms(q)
    }

    /// Mean latency of successful requests, ms.
    pub(crate) fn mean_ms(&self) -> Option<f64> {
        self.latency.mean_ms()
    }

    /// Fastest success, ms.
    pub(crate) fn min_ms(&self) -> Option<f64> {
        self.latency.min_ms()
    }

    /// Slowest success, ms.
    pub(crate) fn max_ms(&self) -> Option<f64> {
        self.latency.max_ms()
    }

    /// The histogram of successful latencies, HdrHistogram V2 in base64
    /// (`None` only if hdrhistogram fails to encode it).
    pub(crate) fn latency_histogram_base64(&self) -> Option<String> {
        self.latency.histogram().to_base64_v2().ok()
    }

    /// The successful latencies in `buckets` log-spaced buckets from the
    /// fastest to the slowest (empty when none succeeded).
    pub(crate) fn latency_buckets(&self, buckets: usize) -> Vec<LatencyBucket> {
        match (self.min_ms(), self.max_ms()) {
            (Some(min), Some(max)) => latency_buckets(self.latency.histogram(), min, max, buckets),
            _ => Vec::new(),
        }
    }

    /// What the LLM series measured over a run of `duration_s`, once a
    /// row carried LLM timings: the percentiles of each (sorting the kept
    /// values), e2e among them, and each series' histogram so that runs
    /// merge.
    pub(crate) fn llm_summary(&mut self, duration_s: f64) -> Option<LlmSummary> {
        let e2e = percentiles(&mut self.latency);
        let llm = self.llm.as_mut()?;
        let encoded = |series: &Series| series.histogram().to_base64_v2().ok();
        Some(LlmSummary {
            ttft: percentiles(&mut llm.ttft),
            itl: percentiles(&mut llm.itl),
            tpot: percentiles(&mut llm.tpot),
            e2e,
            output_tokens: llm.output_tokens,
            output_tokens_per_s: (duration_s > 0.0).then(|| llm.output_tokens as f64 / duration_s),
            tokens_from: llm.tokens_from().to_owned(),
            ttft_histogram: encoded(&llm.ttft),
            itl_histogram: encoded(&llm.itl),
            tpot_histogram: encoded(&llm.tpot),
        })
    }

    /// Output tokens so far and the TTFT at quantile `q`, ms (live, from
    /// the histogram), once a row carried LLM timings.
    pub(crate) fn llm_progress(&self, q: f64) -> Option<(u64, Option<f64>)> {
        self.llm
            .as_ref()
            .map(|llm| (llm.output_tokens, llm.ttft.live_quantile_ms(q)))
    }
}

impl Default for RowStats {
    fn default() -> Self {
        Self::new()
    }
}
