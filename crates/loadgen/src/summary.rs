//! The run summary: counts, latency percentiles from a streaming histogram,
//! error kinds and open-loop generator health, as JSON and as text.

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
            llm: None,
        }
    }

    /// Adds one row.
    pub fn record(&mut self, row: &LogRow) {
        self.total += 1;
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
    /// Mean latency, ms.
    pub mean_ms: Option<f64>,
    /// Fastest success, ms.
    pub min_ms: Option<f64>,
    /// Slowest success, ms.
    pub max_ms: Option<f64>,
    /// Successful requests per second over the run.
    pub throughput_rps: f64,
    /// From the first send to the last response, s (warm-up excluded).
    pub duration_s: f64,
    /// Failed requests by error kind.
    pub errors: BTreeMap<String, u64>,
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
    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")
    }
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
        writeln!(f, "P95 latency: {}", ms(self.p95_ms))?;
        writeln!(f, "P99 latency: {}", ms(self.p99_ms))?;
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
