//! loadgen's run summary: the JSON `loadgen --json FILE` and `loadgen
//! --out-dir DIR` (as `DIR/summary.json`) write, `report merge` reads from
//! each shard and writes merged, and `xtask` reads back.
//!
//! One set of types for every writer and reader, so a field cannot mean
//! one thing to loadgen and another to the report. Keys that may be `null`
//! are still always written, and a reader refuses a file that lacks one
//! (a missing key means another writer, not "nothing measured"); the
//! `schema_version` is checked first ([`crate::contract`]).
//!
//! Every percentile is numpy's linear method over successful requests;
//! loadgen computes them exactly while a series fits in memory's bound and
//! says otherwise (`quantiles_exact`, `quantile_error`). A merged summary is
//! the same document with the merge's own keys (`percentiles_from`, `ids`,
//! `shards`, `slos`), which a single run leaves out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::contract::{self, Contract, ContractError};

/// Version of the summary's JSON. 2: `schema_version` itself, `llm.e2e`,
/// the LLM series' histograms and `min_ms`, and the merge's keys on the
/// same document.
pub const SCHEMA_VERSION: u32 = 2;

/// Buckets in `latency_buckets`, the text histogram (oha draws 11 lines).
pub const LATENCY_BUCKETS: usize = 11;

/// A key that must be present but may be `null`: serde reads a missing
/// `Option` as `None`, the silent default a contract must not have.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

fn exact_by_default() -> bool {
    true
}

/// Everything a run measured. The first keys match a side of the report's
/// `comparison.json`; percentiles are over successful requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Logical requests issued (logged rows).
    pub total: u64,
    /// Requests that succeeded (2xx, well-formed, verified).
    pub succeeded: u64,
    /// Requests that failed; `succeeded + failed == total`.
    pub failed: u64,
    /// Median latency, ms.
    #[serde(deserialize_with = "nullable")]
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    #[serde(deserialize_with = "nullable")]
    pub p90_ms: Option<f64>,
    /// 95th percentile, ms.
    #[serde(deserialize_with = "nullable")]
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    #[serde(deserialize_with = "nullable")]
    pub p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    #[serde(deserialize_with = "nullable")]
    pub p99_9_ms: Option<f64>,
    /// Whether the percentiles are exact, from every successful latency
    /// (numpy's linear method, as `report` computes them from the log).
    pub quantiles_exact: bool,
    /// How far the percentiles may be off when not exact (`None` when exact).
    #[serde(deserialize_with = "nullable")]
    pub quantile_error: Option<String>,
    /// Mean latency, ms (exact).
    #[serde(deserialize_with = "nullable")]
    pub mean_ms: Option<f64>,
    /// Fastest success, ms (exact).
    #[serde(deserialize_with = "nullable")]
    pub min_ms: Option<f64>,
    /// Slowest success, ms (exact).
    #[serde(deserialize_with = "nullable")]
    pub max_ms: Option<f64>,
    /// Successful latencies in [`LATENCY_BUCKETS`] log-spaced buckets from
    /// `min_ms` to `max_ms` (empty without a success): the summary's text
    /// histogram.
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
    #[serde(deserialize_with = "nullable")]
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
    #[serde(deserialize_with = "nullable")]
    pub server_batch_size_mean: Option<f64>,
    /// Whether outputs were checked against the simulator's expected
    /// outputs (`--api simulator` by default, `--verify` elsewhere).
    pub verified: bool,
    /// Rows whose output was checked and matched (the log's `verified`).
    pub verified_rows: u64,
    /// Open loop: target rate, requests/s.
    #[serde(deserialize_with = "nullable")]
    pub target_rate_rps: Option<f64>,
    /// Open loop: achieved send rate, requests/s.
    #[serde(deserialize_with = "nullable")]
    pub achieved_rate_rps: Option<f64>,
    /// Open loop: sends more than 2 ms behind schedule.
    #[serde(deserialize_with = "nullable")]
    pub late_sends: Option<u64>,
    /// Open loop: sends dropped at the in-flight bound (also failed rows
    /// with error `dropped`).
    #[serde(deserialize_with = "nullable")]
    pub dropped: Option<u64>,
    /// Open loop: largest lag behind schedule, ms.
    #[serde(deserialize_with = "nullable")]
    pub max_send_lag_ms: Option<f64>,
    /// Open loop: set when the generator could not keep its rate.
    #[serde(deserialize_with = "nullable")]
    pub rate_warning: Option<String>,
    /// Open loop: schedule adherence, the send lateness (actual minus
    /// intended send, ms) over every send on the schedule (dropped ones
    /// included). Defaulted: a summary written before this key existed
    /// still reads.
    #[serde(default)]
    pub send_lag: Option<Percentiles>,
    /// Warm-up rows logged (`phase` = `warmup`), left out of every other
    /// number here.
    #[serde(default)]
    pub warmup_rows: u64,
    /// LLM workloads (drawn token lengths, shared prefixes, conversations,
    /// traces, datasets): what was sent and what came back.
    #[serde(default)]
    pub workload: Option<WorkloadSummary>,
    /// Whether a shutdown signal cut the run short.
    pub interrupted: bool,
    /// Target URL.
    pub url: String,
    /// The addresses the host resolved to, in the order they are tried.
    pub resolved: Vec<String>,
    /// Request format (`simulator`, `template`, ...).
    pub api: String,
    /// HTTP version and transport, e.g. `HTTP/1.1 over TLS`.
    pub protocol: String,
    /// How server certificates were checked (https only), e.g.
    /// `verified against 146 platform roots + 1 from --cacert` or
    /// `NOT verified (--insecure)`.
    #[serde(deserialize_with = "nullable")]
    pub tls_verification: Option<String>,
    /// What rustls said of the first failed TLS handshake, if one failed.
    #[serde(deserialize_with = "nullable")]
    pub tls_first_failure: Option<String>,
    /// Set when `--server-stats` could not read or write the statistics
    /// after the run.
    #[serde(deserialize_with = "nullable")]
    pub server_stats_warning: Option<String>,
    /// Default model name.
    pub model: String,
    /// TTFT, ITL, TPOT and tokens, for LLM APIs.
    #[serde(deserialize_with = "nullable")]
    pub llm: Option<LlmSummary>,
    /// Which part of a split load this run was (`--shard`); `None` when
    /// the run was the whole load (and in a merged summary).
    #[serde(deserialize_with = "nullable")]
    pub shard: Option<ShardSummary>,
    /// The load as asked for on the command line, the same for every shard
    /// of one job (`report merge` compares them).
    pub plan: Plan,
    /// The successful latencies, HdrHistogram V2 in base64
    /// (`stats::LatencyHistogram::from_base64_v2` reads it), so shards
    /// merge exactly.
    #[serde(deserialize_with = "nullable")]
    pub latency_histogram: Option<String>,
    /// Merged summaries: `rows` (every percentile exact, from the union of
    /// the shards' rows) or `histogram` (from the merged histograms, within
    /// `quantile_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentiles_from: Option<String>,
    /// Merged summaries with rows: the request ids over all shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<RequestIds>,
    /// Merged summaries: the shards merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<MergedShards>,
    /// Merged summaries: each `--sla`, judged on the merged result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slos: Option<Vec<ObjectiveResult>>,
}

impl Contract for RunSummary {
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;
    const WHAT: &'static str = "a loadgen run summary (loadgen --json, --out-dir)";
}

impl RunSummary {
    /// The summary as pretty JSON, with a final newline: what
    /// [`RunSummary::write_json`] writes and `--output-format json` prints.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        contract::to_json(self)
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = self.to_json().map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }

    /// Parses a summary read from `path` (named in every error); a file of
    /// another `schema_version` is refused.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ContractError> {
        contract::parse(text, path)
    }

    /// Reads the summary at `path`.
    pub fn read(path: &Path) -> Result<Self, ContractError> {
        contract::read(path)
    }
}

/// One line of the text histogram: the successful latencies above the
/// previous bucket's bound (the fastest included in the first) up to
/// `upper_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatencyBucket {
    /// Upper bound, ms.
    pub upper_ms: f64,
    /// Latencies in the bucket.
    pub count: u64,
}

/// A series' percentiles, ms (`null`s when it is empty), by numpy's
/// linear method.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    #[serde(deserialize_with = "nullable")]
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p90_ms: Option<f64>,
    /// 95th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p99_ms: Option<f64>,
    /// Mean (exact).
    #[serde(deserialize_with = "nullable")]
    pub mean_ms: Option<f64>,
    /// Smallest (exact). Defaulted: a `comparison.json` written before
    /// this key existed still reads.
    #[serde(default)]
    pub min_ms: Option<f64>,
    /// Largest (exact).
    #[serde(deserialize_with = "nullable")]
    pub max_ms: Option<f64>,
    /// Whether the percentiles are exact, from every value (defaulted to
    /// `true` as [`Percentiles::min_ms`] is).
    #[serde(default = "exact_by_default")]
    pub quantiles_exact: bool,
    /// How far they may be off when not exact (`None` when exact).
    #[serde(default)]
    pub quantile_error: Option<String>,
}

/// What a streamed LLM run measured, by the method `report` uses on the
/// log. loadgen's summary and a side of `comparison.json`
/// ([`crate::comparison::SideSummary`]) both carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmSummary {
    /// Time to first token, successful requests.
    pub ttft: Percentiles,
    /// Inter-token latency, every gap of successful requests.
    pub itl: Percentiles,
    /// Time per output token, successful requests with two tokens or more.
    pub tpot: Percentiles,
    /// End-to-end latency, successful requests.
    pub e2e: Percentiles,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Output tokens per second of run (`None` without a duration).
    #[serde(deserialize_with = "nullable")]
    pub output_tokens_per_s: Option<f64>,
    /// Where the counts came from: `usage`, `counted`, `mixed` or `none`.
    pub tokens_from: String,
    /// The TTFT histogram, HdrHistogram V2 in base64 (to merge runs);
    /// absent where the numbers come from rows alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_histogram: Option<String>,
    /// The ITL histogram, as `ttft_histogram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_histogram: Option<String>,
    /// The TPOT histogram, as `ttft_histogram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_histogram: Option<String>,
    /// Client delay: per content delta, from the server's write stamp
    /// (`: t=<ns>` before the event) to the client's read of it, ms, over
    /// the same machine's wall clock. Absent when the stream carried no
    /// stamps (and from a merge, which has no stamps to read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_delay: Option<Percentiles>,
    /// The server's own inter-token gaps, between consecutive write stamps
    /// of an answer, ms: server lateness against its schedule shows here
    /// (a gap longer than the schedule's), not in `client_delay`. Absent
    /// as `client_delay` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_itl: Option<Percentiles>,
}

/// What an LLM workload sent and what came back, over the measured rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadSummary {
    /// Where prompts came from (a tokenizer file and whether lengths are
    /// exact, common words, payloads, a dataset).
    pub prompts: String,
    /// Whether every synthetic prompt has exactly its asked length in
    /// tokens (a `--tokenizer` was given).
    pub exact_lengths: bool,
    /// Mean prompt length asked for, tokens (rows that asked one).
    pub input_tokens_mean: Option<f64>,
    /// Mean `usage.prompt_tokens` the server counted (rows that have it).
    pub prompt_tokens_mean: Option<f64>,
    /// Requested against received output tokens (successful rows that
    /// sent `max_tokens` and know their output tokens).
    pub output: Option<OutputLengths>,
    /// Conversations: sessions started (rows of turn 1).
    pub sessions: Option<u64>,
    /// Conversations: TTFT by turn (successful streamed rows).
    pub ttft_by_turn: Vec<TurnTtft>,
    /// Trace replay: what was read and replayed.
    pub trace: Option<TraceSummary>,
    /// `--stages`, as given.
    pub stages: Option<String>,
}

/// Requested against received output tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutputLengths {
    /// Rows compared.
    pub rows: u64,
    /// Mean `max_tokens` asked.
    pub requested_mean: f64,
    /// Mean output tokens received.
    pub received_mean: f64,
    /// Rows whose answer had fewer tokens than asked.
    pub short: u64,
}

/// TTFT of one turn index of the conversations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnTtft {
    /// The turn, from 1.
    pub turn: u32,
    /// Successful streamed turns of this index.
    pub count: u64,
    /// Median TTFT, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
}

/// A replayed trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceSummary {
    /// The file.
    pub file: String,
    /// `mooncake`, `azure` or `burstgpt`.
    pub format: String,
    /// Rows in the file.
    pub rows: u64,
    /// Rows in the window (`--trace-start`, `--trace-duration`) that were
    /// replayed or due when the run stopped.
    pub in_window: u64,
    /// BurstGPT rows of requests that failed in production, not replayed.
    pub failed_rows_skipped: u64,
    /// `--trace-speedup`.
    pub speedup: f64,
    /// The window's span on the replay's clock, s.
    pub span_s: f64,
}

/// A shard's place in a split load and when it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardSummary {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in the load.
    pub count: u32,
    /// `--start-at`, ms since the Unix epoch; `None` without it.
    #[serde(deserialize_with = "nullable")]
    pub start_at_unix_ms: Option<f64>,
    /// Actual start minus `--start-at`, ms (positive: late); `None` without
    /// `--start-at` or when stopped before the start.
    #[serde(deserialize_with = "nullable")]
    pub start_skew_ms: Option<f64>,
}

/// The load a command line asks for, as a whole: totals, not a shard's part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Target URL, as given.
    pub url: String,
    /// Request format.
    pub api: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: the whole load's rate, requests/s.
    #[serde(deserialize_with = "nullable")]
    pub rate_rps: Option<f64>,
    /// Open loop: `constant` or `poisson`.
    #[serde(deserialize_with = "nullable")]
    pub arrival: Option<String>,
    /// Poisson arrivals: the seed of the process (constant arrivals draw
    /// nothing, so `None`).
    #[serde(deserialize_with = "nullable")]
    pub seed: Option<u64>,
    /// Closed loop: the workers of the whole load (`-c`).
    #[serde(deserialize_with = "nullable")]
    pub concurrency: Option<usize>,
    /// The whole load's `-n`.
    #[serde(deserialize_with = "nullable")]
    pub requests: Option<u64>,
    /// `-z`, s.
    #[serde(deserialize_with = "nullable")]
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
    #[serde(deserialize_with = "nullable")]
    pub profile: Option<String>,
}

/// Request ids over a merge's rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestIds {
    /// Distinct ids.
    pub unique: u64,
    /// Rows whose id an earlier row already had (0 when shards did not overlap).
    pub duplicates: u64,
    /// Ids between `min` and `max` that no shard logged.
    pub missing: u64,
    /// Smallest id (`null` without rows).
    pub min: Option<u64>,
    /// Largest id.
    pub max: Option<u64>,
}

/// The shards a merged summary was made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MergedShards {
    /// How many shards were merged.
    pub count: u64,
    /// Each shard, by index.
    pub per_shard: Vec<MergedShard>,
}

/// One shard of a merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MergedShard {
    /// The directory given.
    pub dir: String,
    /// `shard.index`.
    pub index: u32,
    /// The shard's rows.
    pub total: u64,
    /// The shard's successes.
    pub succeeded: u64,
    /// How late the shard started after `start_at`, ms (`null` without it).
    pub start_skew_ms: Option<f64>,
    /// Whether the shard shipped its `log.csv`.
    pub log_csv: bool,
}

/// An objective judged on a run (the report's `--sla`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectiveResult {
    /// The expression.
    pub expression: String,
    /// `<=`, `<`, `>=` or `>`, as written.
    pub op: String,
    /// The bound.
    pub threshold: f64,
    /// The run's value (`None`: nothing to measure, e.g. no successful
    /// request for a latency).
    pub measured: Option<f64>,
    /// Whether the objective holds (never when nothing was measured).
    pub met: bool,
}

/// As a comparison's verdict says it: the objective is judged on the After.
impl fmt::Display for ObjectiveResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.met { "met" } else { "NOT met" };
        match self.measured {
            Some(m) => write!(
                f,
                "SLO {}: After measured {m:.3} ({verdict})",
                self.expression
            ),
            None => write!(
                f,
                "SLO {}: nothing to measure in the After ({verdict})",
                self.expression
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> RunSummary {
        RunSummary {
            schema_version: SCHEMA_VERSION,
            total: 3,
            succeeded: 2,
            failed: 1,
            p50_ms: Some(1.5),
            status_codes: BTreeMap::from([(200, 2), (503, 1)]),
            llm: Some(LlmSummary {
                itl_histogram: Some("HISTFAAAAA==".into()),
                ..LlmSummary::default()
            }),
            ..RunSummary::default()
        }
    }

    #[test]
    fn a_summary_round_trips_and_leaves_the_merge_keys_out() {
        let json = summary().to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["schema_version"], SCHEMA_VERSION);
        assert_eq!(
            value["status_codes"],
            serde_json::json!({"200": 2, "503": 1})
        );
        assert_eq!(value["p90_ms"], serde_json::Value::Null);
        for key in ["percentiles_from", "ids", "shards", "slos"] {
            assert!(value.get(key).is_none(), "{key}");
        }
        assert!(value["llm"].get("ttft_histogram").is_none());
        let back = RunSummary::parse(&json, Path::new("s.json")).unwrap();
        assert_eq!(back, summary());
    }

    #[test]
    fn another_version_or_a_missing_key_is_refused_naming_the_file() {
        let mut value = serde_json::to_value(summary()).unwrap();
        value["schema_version"] = 1.into();
        let err = RunSummary::parse(&value.to_string(), Path::new("/r/summary.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/r/summary.json: `schema_version` is 1"),
            "{text}"
        );
        assert!(text.contains("reads a loadgen run summary"), "{text}");
        assert!(text.contains("of version 2 only"), "{text}");
        value.as_object_mut().unwrap().remove("schema_version");
        let err = RunSummary::parse(&value.to_string(), Path::new("s.json")).unwrap_err();
        assert!(
            err.to_string().contains("s.json: no `schema_version`"),
            "{err}"
        );
        // A key that may be null must still be there.
        let mut value = serde_json::to_value(summary()).unwrap();
        value.as_object_mut().unwrap().remove("p95_ms");
        let err = RunSummary::parse(&value.to_string(), Path::new("s.json")).unwrap_err();
        assert!(err.to_string().contains("missing field `p95_ms`"), "{err}");
        let err = RunSummary::parse("{", Path::new("s.json")).unwrap_err();
        assert!(err.to_string().starts_with("s.json: not JSON"), "{err}");
    }

    #[test]
    fn percentiles_of_an_older_comparison_still_read() {
        let old = r#"{"count": 2, "p50_ms": 1.0, "p90_ms": 1.5, "p95_ms": 1.7,
            "p99_ms": 1.9, "mean_ms": 1.2, "max_ms": 2.0}"#;
        let p: Percentiles = serde_json::from_str(old).unwrap();
        assert!(p.quantiles_exact && p.quantile_error.is_none() && p.min_ms.is_none());
    }

    #[test]
    fn an_objective_reads_as_the_verdict_says_it() {
        let mut r = ObjectiveResult {
            expression: "p95<=800".into(),
            op: "<=".into(),
            threshold: 800.0,
            measured: Some(12.34567),
            met: true,
        };
        assert_eq!(r.to_string(), "SLO p95<=800: After measured 12.346 (met)");
        r.measured = None;
        r.met = false;
        assert_eq!(
            r.to_string(),
            "SLO p95<=800: nothing to measure in the After (NOT met)"
        );
    }
}
