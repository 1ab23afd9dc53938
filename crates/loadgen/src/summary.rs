//! The run summary: counts, latency percentiles, error kinds, status
//! codes, connections and open-loop generator health, as JSON and as text
//! (in the manner of oha: percentiles, a text histogram of latencies, the
//! status codes).
//!
//! The JSON is [`model::summary::RunSummary`], the one type every reader
//! uses; this module fills it from the rows ([`RowStats`]) and prints it as
//! text ([`Text`]).
//!
//! Every percentile is numpy's default (`stats::QuantileMethod::Linear`),
//! the method `report` uses on the log, so the two tools print one P95 for
//! one run. While a series fits in [`EXACT_SAMPLES_PER_SERIES`] its
//! percentiles are exact, from every value; beyond it they come from the
//! series' histogram by the same method, within half a bucket
//! (`stats::LatencyHistogram::QUANTILE_ERROR`), and the summary says so.
//! Min, max and mean are always exact.

use std::collections::BTreeMap;
use std::fmt;

use model::log::LogRow;
pub use model::summary::{
    LatencyBucket, LlmSummary, Percentiles, Plan, RunSummary, ShardSummary, SCHEMA_VERSION,
};
use stats::{LatencyHistogram, QuantileMethod};

use crate::config::LoadConfig;

/// Values kept per series for exact percentiles. A value is an `f64`, so
/// 2,000,000 of them take 16 MB; a streamed LLM run keeps four series
/// (e2e, TTFT, TPOT and every inter-token gap), at most 64 MB, sorted in
/// place at the end. Past the bound a series frees its values and its
/// percentiles come from its histogram (bounded memory however long the run).
pub const EXACT_SAMPLES_PER_SERIES: usize = 2_000_000;

/// One latency series: exact while it fits in its bound, a histogram always
/// (for live progress, the text histogram, and merging shards).
#[derive(Debug, Clone)]
pub struct Series {
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
    pub fn with_limit(limit: usize) -> Self {
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
    pub fn record(&mut self, value_ms: f64) {
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
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the percentiles are exact (every value was kept).
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// Smallest value, ms (exact).
    pub fn min_ms(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min_ms)
    }

    /// Largest value, ms (exact).
    pub fn max_ms(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max_ms)
    }

    /// Mean, ms (exact).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    /// The histogram of every value.
    pub fn histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }

    /// The `q` quantile, ms, by numpy's linear method: exact from every
    /// value while they fit, else from the histogram's buckets (within
    /// half a bucket, never outside the exact min and max). Sorts the kept
    /// values in place the first time after a record.
    pub fn quantile_ms(&mut self, q: f64) -> Option<f64> {
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
    pub fn live_quantile_ms(&self, q: f64) -> Option<f64> {
        let (min, max) = (self.min_ms()?, self.max_ms()?);
        self.histogram.quantile_linear_between_ms(q, min, max).ok()
    }

    /// `None` while exact; else how far the percentiles may be off, with
    /// the bound on kept values that was passed.
    pub fn quantile_error(&self) -> Option<String> {
        (!self.exact).then(|| {
            format!(
                "more than {} values, the most kept for exact percentiles: {}",
                self.limit,
                LatencyHistogram::QUANTILE_ERROR
            )
        })
    }
}

/// Streaming statistics over rows: memory stays bounded (see
/// [`EXACT_SAMPLES_PER_SERIES`]) however long the run.
pub struct RowStats {
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
pub struct LlmStats {
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

/// The percentiles of a series (numpy's linear method); sorts its kept
/// values in place.
pub fn percentiles(series: &mut Series) -> Percentiles {
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
    pub fn new() -> Self {
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
    pub fn record(&mut self, row: &LogRow) {
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

    /// The latencies of successful requests.
    pub fn latency(&self) -> &Series {
        &self.latency
    }

    /// The latencies of successful requests, to take final percentiles
    /// from ([`Series::quantile_ms`] sorts in place).
    pub fn latency_mut(&mut self) -> &mut Series {
        &mut self.latency
    }

    /// Latency at quantile `q` of successful requests so far, ms, from the
    /// histogram (numpy's linear method within half a bucket): for live
    /// progress; the summary's come from [`Series::quantile_ms`].
    pub fn live_quantile_ms(&self, q: f64) -> Option<f64> {
        self.latency.live_quantile_ms(q)
    }

    /// Mean latency of successful requests, ms.
    pub fn mean_ms(&self) -> Option<f64> {
        self.latency.mean_ms()
    }

    /// Fastest success, ms.
    pub fn min_ms(&self) -> Option<f64> {
        self.latency.min_ms()
    }

    /// Slowest success, ms.
    pub fn max_ms(&self) -> Option<f64> {
        self.latency.max_ms()
    }

    /// The histogram of successful latencies, HdrHistogram V2 in base64
    /// (`None` only if hdrhistogram fails to encode it).
    pub fn latency_histogram_base64(&self) -> Option<String> {
        self.latency.histogram().to_base64_v2().ok()
    }

    /// The successful latencies in `buckets` log-spaced buckets from the
    /// fastest to the slowest (empty when none succeeded).
    pub fn latency_buckets(&self, buckets: usize) -> Vec<LatencyBucket> {
        match (self.min_ms(), self.max_ms()) {
            (Some(min), Some(max)) => latency_buckets(self.latency.histogram(), min, max, buckets),
            _ => Vec::new(),
        }
    }

    /// What the LLM series measured over a run of `duration_s`, once a
    /// row carried LLM timings: the percentiles of each (sorting the kept
    /// values), e2e among them, and each series' histogram so that runs
    /// merge.
    pub fn llm_summary(&mut self, duration_s: f64) -> Option<LlmSummary> {
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
    pub fn llm_progress(&self, q: f64) -> Option<(u64, Option<f64>)> {
        self.llm
            .as_ref()
            .map(|llm| (llm.output_tokens, llm.ttft.live_quantile_ms(q)))
    }
}

/// Lines in the summary's text histogram.
pub const HISTOGRAM_BUCKETS: usize = model::summary::LATENCY_BUCKETS;

/// The successful latencies of `histogram` in `buckets` log-spaced
/// buckets from the exact `min_ms` to `max_ms`
/// ([`LatencyHistogram::log_buckets_ms`]): the summary's text histogram.
pub fn latency_buckets(
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

impl Default for RowStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The plan of `config`: the whole load it asks for.
pub fn plan_of(config: &LoadConfig) -> Plan {
    let open = config.open_loop.as_ref();
    Plan {
        url: config.url.clone(),
        api: config.api.name().to_owned(),
        mode: if open.is_some() { "open" } else { "closed" }.to_owned(),
        rate_rps: open.map(|o| o.rate_rps),
        arrival: open.map(|o| o.arrival.name().to_owned()),
        seed: open
            .filter(|o| o.arrival == crate::config::Arrival::Poisson)
            .map(|o| o.seed),
        concurrency: open.is_none().then_some(config.concurrency),
        requests: config.requests,
        duration_s: config.duration.map(|d| d.as_secs_f64()),
        batch_size: config.batch_size,
        batch_wait_ms: config.batch_wait_ms,
        connection: config.connection.name().to_owned(),
        http2: config.http2,
        profile: config.profile.map(|p| p.name().to_owned()),
    }
}

/// Widest bar of the text histogram, in characters.
const HISTOGRAM_BAR_CHARS: u64 = 40;

/// The text histogram, a line a bucket: `  12.30 ms [  812] |■■■■`, bars
/// scaled to the fullest bucket. A bucket with any latency gets at least
/// one mark, so a single slow request (the tail) stays visible.
fn write_histogram(f: &mut fmt::Formatter<'_>, buckets: &[LatencyBucket]) -> fmt::Result {
    // As many decimals as the smallest bound needs for three significant
    // digits: `0.052`, `1.25`, `132`, never `1112.528`.
    let smallest = buckets.first().map_or(0.0, |b| b.upper_ms);
    let decimals = match smallest {
        s if s < 1.0 => 3,
        s if s < 10.0 => 2,
        s if s < 100.0 => 1,
        _ => 0,
    };
    let labels: Vec<String> = buckets
        .iter()
        .map(|b| format!("{:.decimals$}", b.upper_ms))
        .collect();
    let label_width = labels.iter().map(String::len).max().unwrap_or(0);
    let fullest = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let count_width = fullest.to_string().len();
    for (label, bucket) in labels.iter().zip(buckets) {
        let marks = if bucket.count == 0 || fullest == 0 {
            0
        } else {
            (bucket.count * HISTOGRAM_BAR_CHARS / fullest).max(1)
        };
        let bar = "■".repeat(usize::try_from(marks).unwrap_or(0));
        writeln!(
            f,
            "  {label:>label_width$} ms [{:>count_width$}] |{bar}",
            bucket.count
        )?;
    }
    Ok(())
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

/// A summary as loadgen prints it: `print!("{}", Text(&summary))`.
pub struct Text<'a>(pub &'a RunSummary);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.0;
        let profile = summary.profile.as_deref().unwrap_or("custom");
        writeln!(
            f,
            "loadgen: {} loop, profile {profile}, api {}, {}, {} connections, batch size {} (wait {} ms), {}",
            summary.mode,
            summary.api,
            summary.protocol,
            summary.connection,
            summary.batch_size,
            summary.batch_wait_ms,
            if summary.verified {
                "outputs verified"
            } else {
                "outputs not verified"
            },
        )?;
        if let Some(tls) = &summary.tls_verification {
            writeln!(f, "TLS: server certificate {tls}")?;
        }
        if let Some(shard) = &summary.shard {
            write!(f, "Shard {}/{}", shard.index, shard.count)?;
            match shard.start_skew_ms {
                Some(skew) => writeln!(f, ", started {skew:.1} ms after --start-at")?,
                None => writeln!(f)?,
            }
        }
        writeln!(f, "Total requests: {}", summary.total)?;
        writeln!(f, "Succeeded: {}", summary.succeeded)?;
        writeln!(f, "Failed: {}", summary.failed)?;
        for (kind, count) in &summary.errors {
            writeln!(f, "  {kind}: {count}")?;
        }
        if let Some(why) = &summary.tls_first_failure {
            writeln!(f, "  first TLS handshake failure: {why}")?;
        }
        writeln!(f, "P50 latency: {}", ms(summary.p50_ms))?;
        writeln!(f, "P90 latency: {}", ms(summary.p90_ms))?;
        writeln!(f, "P95 latency: {}", ms(summary.p95_ms))?;
        writeln!(f, "P99 latency: {}", ms(summary.p99_ms))?;
        writeln!(f, "P99.9 latency: {}", ms(summary.p99_9_ms))?;
        writeln!(f, "Max latency: {}", ms(summary.max_ms))?;
        if let Some(error) = &summary.quantile_error {
            writeln!(f, "Percentiles not exact: {error}")?;
        }
        writeln!(
            f,
            "Mean {} / min {} / max {}",
            ms(summary.mean_ms),
            ms(summary.min_ms),
            ms(summary.max_ms)
        )?;
        writeln!(
            f,
            "Throughput: {:.1} req/s over {:.2} s ({} HTTP requests)",
            summary.throughput_rps, summary.duration_s, summary.http_requests
        )?;
        writeln!(f, "Connections opened: {}", summary.connections_opened)?;
        if summary.retries > 0 {
            writeln!(
                f,
                "Retries: {} (sent again on a new connection: the server had closed the kept-alive one)",
                summary.retries
            )?;
        }
        if let Some(llm) = &summary.llm {
            for (name, p) in [("TTFT", &llm.ttft), ("ITL", &llm.itl), ("TPOT", &llm.tpot)] {
                writeln!(
                    f,
                    "{name}: P50 {} / P90 {} / P95 {} / P99 {} / max {} ({} samples)",
                    ms(p.p50_ms),
                    ms(p.p90_ms),
                    ms(p.p95_ms),
                    ms(p.p99_ms),
                    ms(p.max_ms),
                    p.count
                )?;
                if let Some(error) = &p.quantile_error {
                    writeln!(f, "  {name} percentiles not exact: {error}")?;
                }
            }
            let from = match llm.tokens_from.as_str() {
                "usage" => "from the server's usage",
                "counted" => "counted from the streamed deltas (no usage sent)",
                "mixed" => "from usage where sent, else counted",
                _ => "unknown",
            };
            let rate = llm
                .output_tokens_per_s
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1}"));
            writeln!(
                f,
                "Output tokens: {} ({rate} tokens/s; {from})",
                llm.output_tokens
            )?;
        }
        if let (Some(target), Some(achieved)) = (summary.target_rate_rps, summary.achieved_rate_rps)
        {
            writeln!(
                f,
                "Rate: target {target:.1} req/s, achieved {achieved:.1} req/s, {} late sends, {} dropped, max lag {:.2} ms",
                summary.late_sends.unwrap_or(0),
                summary.dropped.unwrap_or(0),
                summary.max_send_lag_ms.unwrap_or(0.0)
            )?;
        }
        if !summary.latency_buckets.is_empty() {
            writeln!(
                f,
                "Latency histogram (successful requests; log-spaced, each line up to its bound):"
            )?;
            write_histogram(f, &summary.latency_buckets)?;
        }
        if !summary.status_codes.is_empty() {
            writeln!(f, "Status code distribution:")?;
            for (code, count) in &summary.status_codes {
                let noun = if *count == 1 { "response" } else { "responses" };
                writeln!(f, "  [{code}] {count} {noun}")?;
            }
        }
        if let Some(warning) = &summary.rate_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if let Some(warning) = &summary.server_stats_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if summary.interrupted {
            writeln!(f, "Interrupted: the run was cut short; counts are partial.")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Arrival, OpenLoop, Profile};

    #[test]
    fn the_plan_is_the_whole_load_as_asked() {
        let mut config = LoadConfig::from_profile(Profile::Baseline);
        config.url = "http://10.0.0.1:8000/v1/infer".into();
        config.open_loop = Some(OpenLoop {
            rate_rps: 100.0,
            arrival: Arrival::Poisson,
            seed: 42,
            max_in_flight: 1000,
        });
        config.shard = Some(crate::Shard { index: 2, count: 4 });
        config.duration = Some(std::time::Duration::from_secs(5));
        let json = serde_json::to_value(plan_of(&config)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "url": "http://10.0.0.1:8000/v1/infer", "api": "simulator", "mode": "open",
                "rate_rps": 100.0, "arrival": "poisson", "seed": 42, "concurrency": null,
                "requests": 400, "duration_s": 5.0, "batch_size": 1, "batch_wait_ms": 0,
                "connection": "per-request", "http2": false, "profile": "baseline"
            })
        );
        // Another shard of the same job: the same plan.
        config.shard = Some(crate::Shard { index: 0, count: 4 });
        assert_eq!(serde_json::to_value(plan_of(&config)).unwrap(), json);
        let closed = plan_of(&LoadConfig {
            concurrency: 8,
            shard: Some(crate::Shard { index: 1, count: 4 }),
            ..LoadConfig::default()
        });
        assert_eq!(
            (
                closed.mode.as_str(),
                closed.concurrency,
                closed.rate_rps,
                closed.arrival,
                closed.seed
            ),
            ("closed", Some(8), None, None, None)
        );
        assert_eq!((closed.requests, closed.profile), (Some(400), None));
        let constant = plan_of(&LoadConfig {
            open_loop: Some(OpenLoop {
                rate_rps: 5.0,
                arrival: Arrival::Constant,
                seed: 42,
                max_in_flight: 1000,
            }),
            ..LoadConfig::default()
        });
        assert_eq!(
            (constant.arrival.as_deref(), constant.seed),
            (Some("constant"), None)
        );
    }

    /// A summary as a run of 1000 requests might leave it.
    fn hand_made() -> RunSummary {
        let config = LoadConfig::from_profile(Profile::Baseline);
        RunSummary {
            schema_version: SCHEMA_VERSION,
            total: 1000,
            succeeded: 997,
            failed: 3,
            p50_ms: Some(1.5),
            p90_ms: Some(3.25),
            p95_ms: Some(4.0),
            p99_ms: Some(9.5),
            p99_9_ms: Some(20.125),
            quantiles_exact: true,
            quantile_error: None,
            mean_ms: Some(2.0),
            min_ms: Some(0.5),
            max_ms: Some(25.0),
            latency_buckets: [(1.0, 400), (2.5, 500), (6.0, 0), (10.0, 96), (25.0, 1)]
                .into_iter()
                .map(|(upper_ms, count)| LatencyBucket { upper_ms, count })
                .collect(),
            throughput_rps: 498.5,
            duration_s: 2.0,
            errors: BTreeMap::from([("http_503".to_owned(), 2), ("timeout".to_owned(), 1)]),
            status_codes: BTreeMap::from([(200, 997), (503, 2), (429, 1)]),
            connections_opened: 20,
            retries: 0,
            mode: "closed".into(),
            profile: Some("baseline".into()),
            connection: "per-request".into(),
            http2: false,
            batch_size: 1,
            batch_wait_ms: 0,
            concurrency: 20,
            client_threads: 2,
            busy_poll_us: 0,
            http_requests: 1000,
            server_batch_size_mean: None,
            verified: true,
            verified_rows: 9,
            target_rate_rps: None,
            achieved_rate_rps: None,
            late_sends: None,
            dropped: None,
            max_send_lag_ms: None,
            rate_warning: None,
            interrupted: false,
            url: "http://127.0.0.1:8000/v1/infer".into(),
            resolved: vec!["127.0.0.1:8000".into()],
            api: "simulator".into(),
            protocol: "HTTP/1.1".into(),
            tls_verification: None,
            tls_first_failure: None,
            server_stats_warning: None,
            model: "m".into(),
            llm: None,
            shard: None,
            plan: plan_of(&config),
            latency_histogram: None,
            ..RunSummary::default()
        }
    }

    #[test]
    fn the_text_summary_has_percentiles_a_histogram_and_status_codes() {
        let text = Text(&hand_made()).to_string();
        let expected = "\
loadgen: closed loop, profile baseline, api simulator, HTTP/1.1, per-request connections, batch size 1 (wait 0 ms), outputs verified
Total requests: 1000
Succeeded: 997
Failed: 3
  http_503: 2
  timeout: 1
P50 latency: 1.50 ms
P90 latency: 3.25 ms
P95 latency: 4.00 ms
P99 latency: 9.50 ms
P99.9 latency: 20.12 ms
Max latency: 25.00 ms
Mean 2.00 ms / min 0.50 ms / max 25.00 ms
Throughput: 498.5 req/s over 2.00 s (1000 HTTP requests)
Connections opened: 20
Latency histogram (successful requests; log-spaced, each line up to its bound):
   1.00 ms [400] |■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
   2.50 ms [500] |■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
   6.00 ms [  0] |
  10.00 ms [ 96] |■■■■■■■
  25.00 ms [  1] |■
Status code distribution:
  [200] 997 responses
  [429] 1 response
  [503] 2 responses
";
        assert_eq!(text, expected);
        // No success: no histogram; no response: no status codes.
        let empty = Text(&RunSummary {
            latency_buckets: Vec::new(),
            status_codes: BTreeMap::new(),
            ..hand_made()
        })
        .to_string();
        assert!(!empty.contains("histogram") && !empty.contains("Status code"));
    }

    #[test]
    fn the_json_has_the_new_keys() {
        let json: serde_json::Value =
            serde_json::from_str(&hand_made().to_json().unwrap()).unwrap();
        assert_eq!(json["p99_9_ms"], 20.125);
        assert_eq!(
            json["status_codes"],
            serde_json::json!({"200": 997, "429": 1, "503": 2})
        );
        assert_eq!(json["connections_opened"], 20);
        assert_eq!(
            json["latency_buckets"][0],
            serde_json::json!({"upper_ms": 1.0, "count": 400})
        );
    }

    #[test]
    fn the_text_histogram_holds_every_success_from_min_to_max() {
        // The buckets themselves are `stats::LatencyHistogram::log_buckets_ms`'s
        // (tested there); here: they reach the summary as its JSON's buckets.
        let stats = stats_of(&e2e_rows(), EXACT_SAMPLES_PER_SERIES);
        let buckets = stats.latency_buckets(HISTOGRAM_BUCKETS);
        assert_eq!(buckets.len(), HISTOGRAM_BUCKETS);
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 18);
        assert_eq!(buckets.last().map(|b| b.upper_ms), Some(121.453));
        assert!(RowStats::new()
            .latency_buckets(HISTOGRAM_BUCKETS)
            .is_empty());
    }

    /// 18 successful latencies with a slow tail (and a failure, left out),
    /// as a short run leaves them.
    const LATENCIES_MS: [f64; 18] = [
        101.203, 98.447, 103.918, 99.731, 100.052, 97.866, 102.415, 104.377, 98.990, 100.601,
        99.118, 103.062, 101.774, 97.532, 112.004, 100.337, 121.453, 99.865,
    ];

    /// LLM timings of six streamed requests: TTFT, the gaps, TPOT.
    fn llm_rows() -> Vec<LogRow> {
        let ttft_ms = [20.511, 22.014, 19.873, 35.902, 21.337, 20.004];
        let gaps_ms: [&[f64]; 6] = [
            &[5.1, 5.3, 9.8],
            &[5.0, 5.2],
            &[5.4, 30.1, 5.2, 5.1],
            &[5.3],
            &[5.2, 5.2, 5.6],
            &[6.0, 5.9],
        ];
        let tpot_ms = [5.5, 5.1, 11.4, 5.3, 5.33, 5.95];
        (0..6)
            .map(|i| LogRow {
                request_id: i as u64,
                timestamp_ms: i as f64,
                latency_ms: ttft_ms[i] + gaps_ms[i].iter().sum::<f64>(),
                status_code: 200,
                ok: true,
                llm: Some(model::log::LlmTiming {
                    ttft_ms: Some(ttft_ms[i]),
                    tpot_ms: Some(tpot_ms[i]),
                    output_tokens: Some(gaps_ms[i].len() as u64 + 1),
                    tokens_from: Some(model::log::TokensFrom::Usage),
                    itl_ms: gaps_ms[i].to_vec(),
                }),
                ..LogRow::default()
            })
            .collect()
    }

    fn e2e_rows() -> Vec<LogRow> {
        let mut rows: Vec<LogRow> = LATENCIES_MS
            .iter()
            .enumerate()
            .map(|(i, &latency_ms)| LogRow {
                request_id: i as u64,
                timestamp_ms: i as f64 * 10.0,
                latency_ms,
                status_code: 200,
                ok: true,
                ..LogRow::default()
            })
            .collect();
        rows.push(LogRow {
            request_id: 18,
            latency_ms: 5000.0,
            error: "timeout".into(),
            ..LogRow::default()
        });
        rows
    }

    fn stats_of(rows: &[LogRow], limit: usize) -> RowStats {
        let mut stats = RowStats::with_limit(limit);
        for row in rows {
            stats.record(row);
        }
        stats
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-9 * b)
    }

    /// The percentiles equal `report summary`'s on the same rows, bit for
    /// bit, and numpy's (values from `numpy.quantile(x, q)`, numpy 2.4).
    #[test]
    fn percentiles_equal_report_and_numpy_on_the_same_rows() {
        let rows = e2e_rows();
        let mut stats = stats_of(&rows, EXACT_SAMPLES_PER_SERIES);
        let report = report::summary_of_rows("t", "loadgen", &rows).unwrap();
        let latency = stats.latency_mut();
        assert!(latency.exact() && latency.quantile_error().is_none());
        assert_eq!(latency.quantile_ms(0.50), report.p50_ms);
        assert_eq!(latency.quantile_ms(0.95), report.p95_ms);
        assert_eq!(latency.quantile_ms(0.99), report.p99_ms);
        assert_eq!(latency.max_ms(), report.max_ms);
        assert_eq!(latency.min_ms(), report.min_ms);
        for (q, numpy) in [
            (0.5, 100.469),
            (0.9, 106.66510000000001),
            (0.95, 113.42134999999999),
            (0.99, 119.84666999999999),
        ] {
            assert!(close(latency.quantile_ms(q), numpy), "q={q}");
        }
        assert_eq!(latency.max_ms(), Some(121.453));

        // The LLM series: report's LLM summary of the same rows, and numpy.
        let rows = llm_rows();
        let mut stats = stats_of(&rows, EXACT_SAMPLES_PER_SERIES);
        let ours = stats.llm_summary(1.0).unwrap();
        let theirs = report::summary_of_rows("t", "loadgen", &rows)
            .unwrap()
            .llm
            .unwrap();
        for (name, ours, theirs) in [
            ("ttft", &ours.ttft, &theirs.ttft),
            ("itl", &ours.itl, &theirs.itl),
            ("tpot", &ours.tpot, &theirs.tpot),
        ] {
            let pairs = [
                (ours.min_ms, theirs.min_ms),
                (ours.p50_ms, theirs.p50_ms),
                (ours.p90_ms, theirs.p90_ms),
                (ours.p95_ms, theirs.p95_ms),
                (ours.p99_ms, theirs.p99_ms),
                (ours.max_ms, theirs.max_ms),
            ];
            for (k, (a, b)) in pairs.into_iter().enumerate() {
                assert_eq!(a, b, "{name} #{k}");
            }
            assert_eq!(ours.count, theirs.count, "{name}");
            assert!(ours.quantiles_exact && ours.quantile_error.is_none());
        }
        let numpy = [
            (
                &ours.ttft,
                [20.924, 28.958, 32.43, 35.207600000000006],
                35.902,
            ),
            (
                &ours.itl,
                [5.3, 8.28, 15.88999999999998, 27.25799999999999],
                30.1,
            ),
            (
                &ours.tpot,
                [5.415, 8.675, 10.0375, 11.127500000000001],
                11.4,
            ),
        ];
        for (p, [p50, p90, p95, p99], max) in numpy {
            assert!(close(p.p50_ms, p50) && close(p.p90_ms, p90), "{p:?}");
            assert!(close(p.p95_ms, p95) && close(p.p99_ms, p99), "{p:?}");
            assert_eq!(p.max_ms, Some(max));
        }
    }

    /// Past the bound: percentiles from the histogram by the same method,
    /// within the stated error, never past the exact extremes, and the
    /// summary says so in JSON and text.
    #[test]
    fn past_the_bound_percentiles_come_from_the_histogram_and_say_so() {
        let rows = e2e_rows();
        let mut stats = stats_of(&rows, 10);
        let sorted = stats::sorted_finite(&LATENCIES_MS).unwrap();
        let latency = stats.latency_mut();
        assert!(!latency.exact());
        let error = latency.quantile_error().unwrap();
        assert!(error.starts_with("more than 10 values"), "{error}");
        assert!(error.contains("1/2048"), "{error}");
        for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = stats::quantile(&sorted, q, QuantileMethod::Linear).unwrap();
            let value = latency.quantile_ms(q).unwrap();
            let bound = LatencyHistogram::quantile_error_bound_ms(exact);
            assert!(
                (value - exact).abs() <= bound + 1e-12,
                "q={q}: {value} vs {exact}"
            );
            assert!((97.532..=121.453).contains(&value), "q={q}: {value}");
        }
        // Min, max and mean stay exact.
        assert_eq!(latency.max_ms(), Some(121.453));
        assert_eq!(latency.min_ms(), Some(97.532));
        let mean = LATENCIES_MS.iter().sum::<f64>() / 18.0;
        assert!((latency.mean_ms().unwrap() - mean).abs() < 1e-9);

        let summary = stats_of(&llm_rows(), 10).llm_summary(1.0).unwrap();
        // 15 gaps are past a bound of 10; 6 TTFTs are not.
        assert!(summary.ttft.quantiles_exact);
        assert!(!summary.itl.quantiles_exact);
        assert_eq!(summary.itl.max_ms, Some(30.1));

        let text = RunSummary {
            quantiles_exact: false,
            quantile_error: Some(error.clone()),
            llm: Some(summary),
            ..hand_made()
        };
        let json: serde_json::Value = serde_json::from_str(&text.to_json().unwrap()).unwrap();
        assert_eq!(json["quantiles_exact"], false);
        assert_eq!(json["quantile_error"], error.as_str());
        assert_eq!(json["llm"]["itl"]["quantiles_exact"], false);
        assert_eq!(
            json["llm"]["ttft"]["quantile_error"],
            serde_json::Value::Null
        );
        let text = Text(&text).to_string();
        assert!(
            text.contains(&format!("Percentiles not exact: {error}")),
            "{text}"
        );
        assert!(
            text.contains("  ITL percentiles not exact: more than 10 values"),
            "{text}"
        );
        assert!(!text.contains("TTFT percentiles not exact"), "{text}");
    }

    #[test]
    fn the_latency_histogram_round_trips() {
        let mut stats = RowStats::new();
        for (i, latency_ms) in [1.5, 2.5, 40.0].into_iter().enumerate() {
            stats.record(&LogRow {
                request_id: i as u64,
                latency_ms,
                ok: i != 1,
                error: if i == 1 {
                    "timeout".into()
                } else {
                    String::new()
                },
                ..LogRow::default()
            });
        }
        let encoded = stats.latency_histogram_base64().unwrap();
        let decoded = LatencyHistogram::from_base64_v2(&encoded).unwrap();
        assert_eq!(decoded.count(), 2);
        assert!((decoded.max_ms().unwrap() - 40.0).abs() < 0.05);
    }
}
