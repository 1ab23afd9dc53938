//! Streaming statistics over the rows of a run ([`RowStats`]): counts,
//! error kinds, and the latency series (end to end, and TTFT, inter-token
//! gaps and TPOT once a row carries LLM timings).

use std::collections::BTreeMap;

use model::log::{LogRow, Phase};
use model::summary::{
    LatencyBucket, LlmSummary, OutputLengths, Percentiles, TurnTtft, WorkloadSummary,
};

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
    /// Warm-up rows seen (and left out of everything else).
    pub warmup_rows: u64,
    /// Open loop: send lateness of every row sent on the schedule.
    send_lag: Series,
    /// What LLM workload rows asked for and got.
    workload: WorkloadStats,
    /// The most values each series keeps exactly.
    limit: usize,
}

/// Turns whose TTFT the summary gives one by one.
const TURNS_BY_INDEX: usize = 100;
/// Values each turn's TTFT series keeps exactly.
const TURN_SERIES_LIMIT: usize = 100_000;

/// Sums over the rows of an LLM workload.
#[derive(Debug, Default)]
struct WorkloadStats {
    input_tokens: (u64, u64),
    prompt_tokens: (u64, u64),
    /// Successful rows with `max_tokens` and output tokens: count, sums
    /// of requested and received, and how many came short.
    output_rows: u64,
    requested: u64,
    received: u64,
    short: u64,
    sessions: u64,
    /// TTFT of successful turns, by turn index from 1.
    ttft_by_turn: Vec<Series>,
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
            warmup_rows: 0,
            send_lag: Series::with_limit(limit),
            workload: WorkloadStats::default(),
            limit,
        }
    }

    /// Adds one row; a warm-up row is only counted as one.
    pub(crate) fn record(&mut self, row: &LogRow) {
        if row.phase == Phase::Warmup {
            self.warmup_rows += 1;
            return;
        }
        if let Some(lag) = row.send_lag_ms {
            self.send_lag.record(lag);
        }
        self.record_workload(row);
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

    fn record_workload(&mut self, row: &LogRow) {
        let w = &mut self.workload;
        let add = |sum: &mut (u64, u64), value: u64| {
            sum.0 += value;
            sum.1 += 1;
        };
        if let Some(n) = row.input_tokens {
            add(&mut w.input_tokens, u64::from(n));
        }
        if let Some(n) = row.prompt_tokens {
            add(&mut w.prompt_tokens, n);
        }
        if row.turn == Some(1) {
            w.sessions += 1;
        }
        if !row.ok {
            return;
        }
        let llm = row.llm.as_ref();
        if let (Some(asked), Some(got)) = (row.max_tokens, llm.and_then(|l| l.output_tokens)) {
            w.output_rows += 1;
            w.requested += u64::from(asked);
            w.received += got;
            w.short += u64::from(got < u64::from(asked));
        }
        if let (Some(turn), Some(ttft)) = (row.turn, llm.and_then(|l| l.ttft_ms)) {
            let index = usize::try_from(turn).unwrap_or(usize::MAX);
            if (1..=TURNS_BY_INDEX).contains(&index) {
                while w.ttft_by_turn.len() < index {
                    w.ttft_by_turn
                        .push(Series::with_limit(TURN_SERIES_LIMIT.min(self.limit)));
                }
                w.ttft_by_turn[index - 1].record(ttft);
            }
        }
    }

    /// The open loop's send lateness (`None` when no row was sent on a
    /// schedule).
    pub(crate) fn send_lag_percentiles(&mut self) -> Option<Percentiles> {
        (self.send_lag.count() > 0).then(|| percentiles(&mut self.send_lag))
    }

    /// Fills in what the rows of an LLM workload asked for and got.
    pub(crate) fn fill_workload(&mut self, summary: &mut WorkloadSummary) {
        let w = &mut self.workload;
        let mean = |(sum, n): (u64, u64)| (n > 0).then(|| sum as f64 / n as f64);
        summary.input_tokens_mean = mean(w.input_tokens);
        summary.prompt_tokens_mean = mean(w.prompt_tokens);
        summary.output = (w.output_rows > 0).then(|| OutputLengths {
            rows: w.output_rows,
            requested_mean: w.requested as f64 / w.output_rows as f64,
            received_mean: w.received as f64 / w.output_rows as f64,
            short: w.short,
        });
        summary.sessions = (w.sessions > 0).then_some(w.sessions);
        summary.ttft_by_turn = w
            .ttft_by_turn
            .iter_mut()
            .zip(1u32..)
            .filter(|(series, _)| series.count() > 0)
            .map(|(series, turn)| TurnTtft {
                turn,
                count: series.count(),
                p50_ms: series.quantile_ms(0.50),
                p95_ms: series.quantile_ms(0.95),
            })
            .collect();
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
            // From the write stamps, which rows do not carry: the engine's
            // (`build_summary`).
            client_delay: None,
            server_itl: None,
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
