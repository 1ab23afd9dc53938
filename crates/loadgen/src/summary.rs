//! The run summary: counts, latency percentiles from a streaming histogram,
//! error kinds, status codes, connections and open-loop generator health,
//! as JSON and as text (in the manner of oha: percentiles, a text histogram
//! of latencies, the status codes).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use model::log::LogRow;
use serde::Serialize;
use stats::LatencyHistogram;

use crate::config::LoadConfig;

/// Streaming statistics over rows: memory does not grow with the run.
pub struct RowStats {
    /// Successful latencies, kept in nanoseconds with 0.1% relative error:
    /// loopback latencies are tens of microseconds, where whole
    /// microseconds would be a few percent off.
    latency: LatencyHistogram,
    sum_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// Rows seen.
    pub total: u64,
    /// Rows with `ok`.
    pub succeeded: u64,
    /// Failed rows by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Re-sends on a new connection, over all rows.
    pub retries: u64,
    /// LLM timings of successful rows, once a row carried them.
    pub llm: Option<LlmStats>,
}

/// Streaming LLM statistics: every inter-token gap goes into a histogram,
/// so memory stays bounded however long the run.
#[derive(Debug, Clone, Default)]
pub struct LlmStats {
    /// Time to first token.
    pub ttft: LatencyHistogram,
    /// Every gap between tokens.
    pub itl: LatencyHistogram,
    /// Time per output token.
    pub tpot: LatencyHistogram,
    /// Output tokens.
    pub output_tokens: u64,
    /// Rows whose count came from `usage`.
    pub tokens_from_usage: u64,
    /// Rows whose count was counted.
    pub tokens_counted: u64,
}

/// A series' percentiles, ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

impl Percentiles {
    /// The percentiles a histogram holds.
    pub fn of(histogram: &LatencyHistogram) -> Self {
        let q = |q| histogram.quantile_ms(q).ok();
        Self {
            count: histogram.count(),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            mean_ms: histogram.mean_ms(),
            max_ms: histogram.max_ms(),
        }
    }
}

/// What a streamed LLM run measured (percentiles within the histogram's
/// 0.1%; `report` computes them exactly from the log).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmRunSummary {
    /// Time to first token.
    pub ttft: Percentiles,
    /// Inter-token latency, over every gap.
    pub itl: Percentiles,
    /// Time per output token.
    pub tpot: Percentiles,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Output tokens per second of run.
    pub output_tokens_per_s: f64,
    /// `usage`, `counted`, `mixed` or `none`.
    pub tokens_from: String,
    /// The ITL histogram, HdrHistogram V2 in base64 (to merge runs).
    pub itl_histogram: Option<String>,
}

impl LlmStats {
    /// The summary over a run of `duration_s`.
    pub fn summary(&self, duration_s: f64) -> LlmRunSummary {
        LlmRunSummary {
            ttft: Percentiles::of(&self.ttft),
            itl: Percentiles::of(&self.itl),
            tpot: Percentiles::of(&self.tpot),
            output_tokens: self.output_tokens,
            output_tokens_per_s: if duration_s > 0.0 {
                self.output_tokens as f64 / duration_s
            } else {
                0.0
            },
            tokens_from: match (self.tokens_from_usage, self.tokens_counted) {
                (0, 0) => "none",
                (_, 0) => "usage",
                (0, _) => "counted",
                _ => "mixed",
            }
            .to_owned(),
            itl_histogram: self.itl.to_base64_v2().ok(),
        }
    }
}

impl RowStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            latency: LatencyHistogram::new(),
            sum_ms: 0.0,
            min_ms: f64::INFINITY,
            max_ms: 0.0,
            total: 0,
            succeeded: 0,
            errors: BTreeMap::new(),
            retries: 0,
            llm: None,
        }
    }

    /// Adds one row.
    pub fn record(&mut self, row: &LogRow) {
        self.total += 1;
        self.retries += u64::from(row.retries);
        if row.ok {
            self.succeeded += 1;
            // Latencies come from a monotonic clock, so they are finite and
            // never negative; only such values would be refused.
            let _ = self.latency.record_ms(row.latency_ms);
            self.sum_ms += row.latency_ms;
            self.min_ms = self.min_ms.min(row.latency_ms);
            self.max_ms = self.max_ms.max(row.latency_ms);
            if let Some(timing) = &row.llm {
                let llm = self.llm.get_or_insert_with(LlmStats::default);
                // Monotonic-clock values: finite and never negative.
                if let Some(ttft) = timing.ttft_ms {
                    let _ = llm.ttft.record_ms(ttft);
                }
                if let Some(tpot) = timing.tpot_ms {
                    let _ = llm.tpot.record_ms(tpot);
                }
                for gap in &timing.itl_ms {
                    let _ = llm.itl.record_ms(*gap);
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

    /// Latency at quantile `q` of successful requests, ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile_ms(q).ok()
    }

    /// Mean latency of successful requests, ms.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.succeeded > 0).then(|| self.sum_ms / self.succeeded as f64)
    }

    /// Fastest success, ms.
    pub fn min_ms(&self) -> Option<f64> {
        (self.succeeded > 0).then_some(self.min_ms)
    }

    /// Slowest success, ms.
    pub fn max_ms(&self) -> Option<f64> {
        (self.succeeded > 0).then_some(self.max_ms)
    }

    /// The histogram of successful latencies, HdrHistogram V2 in base64
    /// (`None` only if hdrhistogram fails to encode it).
    pub fn latency_histogram_base64(&self) -> Option<String> {
        self.latency.to_base64_v2().ok()
    }

    /// The successful latencies in `buckets` log-spaced buckets from the
    /// fastest to the slowest (empty when none succeeded).
    pub fn latency_buckets(&self, buckets: usize) -> Vec<LatencyBucket> {
        match (self.min_ms(), self.max_ms()) {
            (Some(min), Some(max)) => latency_buckets(&self.latency, min, max, buckets),
            _ => Vec::new(),
        }
    }

    /// Output tokens so far and the TTFT at quantile `q`, ms, once a row
    /// carried LLM timings.
    pub fn llm_progress(&self, q: f64) -> Option<(u64, Option<f64>)> {
        self.llm
            .as_ref()
            .map(|llm| (llm.output_tokens, llm.ttft.quantile_ms(q).ok()))
    }
}

/// Lines in the summary's text histogram (oha draws 11).
pub const HISTOGRAM_BUCKETS: usize = 11;

/// One line of the text histogram: the successful latencies above the
/// previous bucket's bound (the fastest included in the first) up to
/// `upper_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyBucket {
    /// Upper bound, ms.
    pub upper_ms: f64,
    /// Latencies in the bucket.
    pub count: u64,
}

/// Splits the latencies of `histogram` into `buckets` log-spaced buckets
/// from `min_ms` to `max_ms`. Log spacing,
/// because latencies are skewed: with equal widths one slow outlier puts
/// nearly every request in the first line, and the tail's shape, what this
/// tool is for, disappears. When every latency is the same there is one
/// bucket.
pub fn latency_buckets(
    histogram: &LatencyHistogram,
    min_ms: f64,
    max_ms: f64,
    buckets: usize,
) -> Vec<LatencyBucket> {
    let buckets = if min_ms > 0.0 && max_ms > min_ms {
        buckets.max(1)
    } else {
        1
    };
    // Bounds min * ratio^i for i in 1..=buckets; the last is max.
    let ratio = (max_ms / min_ms).powf(1.0 / buckets as f64);
    let mut out: Vec<LatencyBucket> = (1..=buckets)
        .map(|i| LatencyBucket {
            upper_ms: if i == buckets {
                max_ms
            } else {
                min_ms * ratio.powi(i32::try_from(i).unwrap_or(i32::MAX))
            },
            count: 0,
        })
        .collect();
    // Bucket midpoints, as the percentiles report values.
    for (ms, count) in histogram.recorded_ms() {
        let index = if buckets == 1 {
            0
        } else {
            // Bucket i holds (bound i-1, bound i]: ceil(log_ratio(ms/min)) - 1.
            let position = ((ms / min_ms).ln() / ratio.ln()).ceil() - 1.0;
            position.clamp(0.0, (buckets - 1) as f64) as usize
        };
        if let Some(bucket) = out.get_mut(index) {
            bucket.count += count;
        }
    }
    out
}

impl Default for RowStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a run measured. The first keys match a side of the report's
/// `comparison.json`; percentiles are over successful requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Logical requests issued (logged rows).
    pub total: u64,
    /// Requests that succeeded (2xx, well-formed, verified).
    pub succeeded: u64,
    /// Requests that failed; `succeeded + failed == total`.
    pub failed: u64,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    pub p99_9_ms: Option<f64>,
    /// Mean latency, ms.
    pub mean_ms: Option<f64>,
    /// Fastest success, ms.
    pub min_ms: Option<f64>,
    /// Slowest success, ms.
    pub max_ms: Option<f64>,
    /// Successful latencies in [`HISTOGRAM_BUCKETS`] log-spaced buckets
    /// from `min_ms` to `max_ms` (empty without a success): the summary's
    /// text histogram.
    pub latency_buckets: Vec<LatencyBucket>,
    /// Successful requests per second over the run.
    pub throughput_rps: f64,
    /// From the first send to the last response, s (warm-up excluded).
    pub duration_s: f64,
    /// Failed requests by error kind.
    pub errors: BTreeMap<String, u64>,
    /// HTTP responses by status code (in JSON the codes are the keys, as
    /// strings: `{"200": 400}`). Requests that got no response (refused,
    /// timed out, reset) are only in `errors`; a batch is one response.
    pub status_codes: BTreeMap<u16, u64>,
    /// TCP connections opened during the measured run (those the warm-up
    /// opened and the run reused are not counted).
    pub connections_opened: u64,
    /// Requests sent again on a new connection because the kept-alive one
    /// they went out on was found closed (the sum of the log's `retries`;
    /// a re-sent batch counts once per request it carried).
    pub retries: u64,
    /// `closed` or `open`.
    pub mode: String,
    /// Profile name, if one was used.
    pub profile: Option<String>,
    /// `per-request` or `pooled`.
    pub connection: String,
    /// Whether HTTP/2 was used.
    pub http2: bool,
    /// Client batch size (logical requests per HTTP request, at most).
    pub batch_size: usize,
    /// Client batch wait, ms.
    pub batch_wait_ms: u64,
    /// Closed-loop workers.
    pub concurrency: usize,
    /// Client threads with their own runtime and connections; 0 when the
    /// run used one shared runtime (open loop, HTTP/2 or batching).
    pub client_threads: usize,
    /// Busy-poll window of the client threads, us; 0 when off or when no
    /// client threads ran.
    pub busy_poll_us: u64,
    /// HTTP requests sent (batches).
    pub http_requests: u64,
    /// Mean `X-Batch-Size` the server reported (its executed batch size).
    pub server_batch_size_mean: Option<f64>,
    /// Whether outputs were verified.
    pub verified: bool,
    /// Open loop: target rate, requests/s.
    pub target_rate_rps: Option<f64>,
    /// Open loop: achieved send rate, requests/s.
    pub achieved_rate_rps: Option<f64>,
    /// Open loop: sends more than 2 ms behind schedule.
    pub late_sends: Option<u64>,
    /// Open loop: sends dropped at the in-flight bound (also failed rows
    /// with error `dropped`).
    pub dropped: Option<u64>,
    /// Open loop: largest lag behind schedule, ms.
    pub max_send_lag_ms: Option<f64>,
    /// Open loop: set when the generator could not keep its rate.
    pub rate_warning: Option<String>,
    /// Whether a shutdown signal cut the run short.
    pub interrupted: bool,
    /// Target URL.
    pub url: String,
    /// The addresses the host resolved to, in the order they are tried.
    pub resolved: Vec<String>,
    /// Request format (`simulator`, `template`).
    pub api: String,
    /// HTTP version and transport, e.g. `HTTP/1.1 over TLS`.
    pub protocol: String,
    /// How server certificates were checked (https only), e.g.
    /// `verified against 146 platform roots + 1 from --cacert` or
    /// `NOT verified (--insecure)`.
    pub tls_verification: Option<String>,
    /// What rustls said of the first failed TLS handshake, if one failed.
    pub tls_first_failure: Option<String>,
    /// Set when `--server-stats` could not read or write the statistics
    /// after the run.
    pub server_stats_warning: Option<String>,
    /// Default model name.
    pub model: String,
    /// TTFT, ITL, TPOT and tokens, for LLM APIs.
    pub llm: Option<LlmRunSummary>,
    /// Which part of a split load this run was (`--shard`); `None` when
    /// the run was the whole load.
    pub shard: Option<ShardSummary>,
    /// The load as asked for on the command line, the same for every shard
    /// of one job (`report merge` compares them).
    pub plan: Plan,
    /// The successful latencies, HdrHistogram V2 in base64
    /// ([`stats::LatencyHistogram::from_base64_v2`] reads it), so shards
    /// merge exactly.
    pub latency_histogram: Option<String>,
}

/// A shard's place in a split load and when it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardSummary {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in the load.
    pub count: u32,
    /// `--start-at`, ms since the Unix epoch; `None` without it.
    pub start_at_unix_ms: Option<f64>,
    /// Actual start minus `--start-at`, ms (positive: late); `None` without
    /// `--start-at` or when stopped before the start.
    pub start_skew_ms: Option<f64>,
}

/// The load a command line asks for, as a whole: totals, not a shard's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Target URL, as given.
    pub url: String,
    /// Request format.
    pub api: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: the whole load's rate, requests/s.
    pub rate_rps: Option<f64>,
    /// Open loop: `constant` or `poisson`.
    pub arrival: Option<String>,
    /// Poisson arrivals: the seed of the process (constant arrivals draw
    /// nothing, so `None`).
    pub seed: Option<u64>,
    /// Closed loop: the workers of the whole load (`-c`).
    pub concurrency: Option<usize>,
    /// The whole load's `-n`.
    pub requests: Option<u64>,
    /// `-z`, s.
    pub duration_s: Option<f64>,
    /// Client batch size.
    pub batch_size: usize,
    /// Client batch wait, ms.
    pub batch_wait_ms: u64,
    /// `per-request` or `pooled`.
    pub connection: String,
    /// Whether HTTP/2 was used.
    pub http2: bool,
    /// Profile name, if one was used.
    pub profile: Option<String>,
}

impl Plan {
    /// The plan of `config`.
    pub fn of(config: &LoadConfig) -> Self {
        let open = config.open_loop.as_ref();
        Self {
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
}

impl RunSummary {
    /// The summary as pretty JSON, with a final newline: what
    /// [`RunSummary::write_json`] writes and `--output-format json` prints.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self).map(|json| json + "\n")
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = self.to_json().map_err(std::io::Error::other)?;
        std::fs::write(path, json)
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

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profile = self.profile.as_deref().unwrap_or("custom");
        writeln!(
            f,
            "loadgen: {} loop, profile {profile}, api {}, {}, {} connections, batch size {} (wait {} ms), {}",
            self.mode,
            self.api,
            self.protocol,
            self.connection,
            self.batch_size,
            self.batch_wait_ms,
            if self.verified {
                "outputs verified"
            } else {
                "outputs not verified"
            },
        )?;
        if let Some(tls) = &self.tls_verification {
            writeln!(f, "TLS: server certificate {tls}")?;
        }
        if let Some(shard) = &self.shard {
            write!(f, "Shard {}/{}", shard.index, shard.count)?;
            match shard.start_skew_ms {
                Some(skew) => writeln!(f, ", started {skew:.1} ms after --start-at")?,
                None => writeln!(f)?,
            }
        }
        writeln!(f, "Total requests: {}", self.total)?;
        writeln!(f, "Succeeded: {}", self.succeeded)?;
        writeln!(f, "Failed: {}", self.failed)?;
        for (kind, count) in &self.errors {
            writeln!(f, "  {kind}: {count}")?;
        }
        if let Some(why) = &self.tls_first_failure {
            writeln!(f, "  first TLS handshake failure: {why}")?;
        }
        writeln!(f, "P50 latency: {}", ms(self.p50_ms))?;
        writeln!(f, "P90 latency: {}", ms(self.p90_ms))?;
        writeln!(f, "P95 latency: {}", ms(self.p95_ms))?;
        writeln!(f, "P99 latency: {}", ms(self.p99_ms))?;
        writeln!(f, "P99.9 latency: {}", ms(self.p99_9_ms))?;
        writeln!(f, "Max latency: {}", ms(self.max_ms))?;
        writeln!(
            f,
            "Mean {} / min {} / max {}",
            ms(self.mean_ms),
            ms(self.min_ms),
            ms(self.max_ms)
        )?;
        writeln!(
            f,
            "Throughput: {:.1} req/s over {:.2} s ({} HTTP requests)",
            self.throughput_rps, self.duration_s, self.http_requests
        )?;
        writeln!(f, "Connections opened: {}", self.connections_opened)?;
        if self.retries > 0 {
            writeln!(
                f,
                "Retries: {} (sent again on a new connection: the server had closed the kept-alive one)",
                self.retries
            )?;
        }
        if let Some(llm) = &self.llm {
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
            }
            let from = match llm.tokens_from.as_str() {
                "usage" => "from the server's usage",
                "counted" => "counted from the streamed deltas (no usage sent)",
                "mixed" => "from usage where sent, else counted",
                _ => "unknown",
            };
            writeln!(
                f,
                "Output tokens: {} ({:.1} tokens/s; {from})",
                llm.output_tokens, llm.output_tokens_per_s
            )?;
        }
        if let (Some(target), Some(achieved)) = (self.target_rate_rps, self.achieved_rate_rps) {
            writeln!(
                f,
                "Rate: target {target:.1} req/s, achieved {achieved:.1} req/s, {} late sends, {} dropped, max lag {:.2} ms",
                self.late_sends.unwrap_or(0),
                self.dropped.unwrap_or(0),
                self.max_send_lag_ms.unwrap_or(0.0)
            )?;
        }
        if !self.latency_buckets.is_empty() {
            writeln!(
                f,
                "Latency histogram (successful requests; log-spaced, each line up to its bound):"
            )?;
            write_histogram(f, &self.latency_buckets)?;
        }
        if !self.status_codes.is_empty() {
            writeln!(f, "Status code distribution:")?;
            for (code, count) in &self.status_codes {
                let noun = if *count == 1 { "response" } else { "responses" };
                writeln!(f, "  [{code}] {count} {noun}")?;
            }
        }
        if let Some(warning) = &self.rate_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if let Some(warning) = &self.server_stats_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if self.interrupted {
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
        let json = serde_json::to_value(Plan::of(&config)).unwrap();
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
        assert_eq!(serde_json::to_value(Plan::of(&config)).unwrap(), json);
        let closed = Plan::of(&LoadConfig {
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
        let constant = Plan::of(&LoadConfig {
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
            total: 1000,
            succeeded: 997,
            failed: 3,
            p50_ms: Some(1.5),
            p90_ms: Some(3.25),
            p95_ms: Some(4.0),
            p99_ms: Some(9.5),
            p99_9_ms: Some(20.125),
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
            plan: Plan::of(&config),
            latency_histogram: None,
        }
    }

    #[test]
    fn the_text_summary_has_percentiles_a_histogram_and_status_codes() {
        let text = hand_made().to_string();
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
        let empty = RunSummary {
            latency_buckets: Vec::new(),
            status_codes: BTreeMap::new(),
            ..hand_made()
        }
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
    fn buckets_are_log_spaced_from_min_to_max_and_count_every_latency() {
        let mut histogram = LatencyHistogram::new();
        // 1 and 1024 ms, and 1.5 times each power of two between: away
        // from the bounds, which the histogram knows to 0.1% only.
        histogram.record_ms(1.0).unwrap();
        histogram.record_ms(1024.0).unwrap();
        for i in 0..10 {
            histogram.record_ms(1.5 * f64::from(1u32 << i)).unwrap();
        }
        let buckets = latency_buckets(&histogram, 1.0, 1024.0, 10);
        assert_eq!(buckets.len(), 10);
        // Bounds 2, 4, ... 1024; the first bucket holds the fastest too.
        let bounds: Vec<f64> = buckets.iter().map(|b| b.upper_ms).collect();
        for (i, bound) in bounds.iter().enumerate() {
            let want = f64::from(2u32 << i);
            assert!((bound - want).abs() < 1e-9 * want, "{bounds:?}");
        }
        let counts: Vec<u64> = buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        // All alike: one bucket with everything.
        let mut same = LatencyHistogram::new();
        for _ in 0..5 {
            same.record_ms(3.0).unwrap();
        }
        let one = latency_buckets(&same, 3.0, 3.0, 11);
        assert_eq!(
            one,
            [LatencyBucket {
                upper_ms: 3.0,
                count: 5
            }]
        );
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
