//! `comparison.json`, the contract between `report compare` (which writes
//! it) and its readers: `report repeats`, `cargo xtask perf` (its
//! warnings, on the console), CI and the reader's own scripts.
//!
//! Every part is typed here, so the writer and every reader agree on each
//! key: a side's numbers ([`SideSummary`], computed by `report` from the
//! log's rows), the objectives judged ([`ObjectiveResult`]) and the
//! capacity searches ([`Capacity`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capacity::Capacity;
use crate::conditions::Conditions;
use crate::summary::{LlmSummary, ObjectiveResult};
use crate::whatif::{CandidateKind, Decision};

/// Version of the `comparison.json` layout; bumped only on breaking changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole `comparison.json` document (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The SLA and whether the After meets it.
    pub sla: Sla,
    /// The objectives given with `--sla`, judged on the After.
    pub slos: Vec<ObjectiveResult>,
    /// The overall verdict (SLA, failures, quality).
    pub verdict: Verdict,
    /// The Before run.
    pub before: SideSummary,
    /// The After run.
    pub after: SideSummary,
    /// After minus Before.
    pub delta: Delta,
    /// Same inputs, same outputs.
    pub quality: Quality,
    /// The Rust reproduction of the Before, when given.
    pub before_reproduction: Option<Reproduction>,
    /// `input.py`'s printed numbers next to ours, when given.
    pub input_py_stdout: Option<InputPyReconciliation>,
    /// Findings from measured data.
    pub diagnosis: Vec<Finding>,
    /// The caller's run conditions, plus `quantile_method`.
    pub conditions: Conditions,
    /// What the analysis (`report whatif`) chose for the After, why, and
    /// its numbers, when the After carried out one of its decisions.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// What the what-if engine predicted for the After, beside what it
    /// measured (when the After was the engine's candidate).
    #[serde(default)]
    pub prediction: Option<Prediction>,
    /// What the LLM what-if engine predicted for the After (TTFT, ITL,
    /// TPOT and e2e), beside what it measured (when the After carried out
    /// its decision).
    #[serde(default)]
    pub llm_prediction: Option<LlmPrediction>,
    /// Capacity under the SLA of the After's client, measured, with the
    /// engine's predicted capacity beside it.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// Capacity under the SLA of the client the engine predicted the most
    /// open-loop capacity for (the After's is chosen for the Before's
    /// closed loop), measured, with the prediction beside it.
    #[serde(default)]
    pub capacity_open_loop: Option<Capacity>,
    /// Warnings about the evidence (e.g. input.py and its reproduction
    /// disagree), shown first in every report and on the console.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The diagnosis's opening: at most three lines.
    #[serde(default)]
    pub summary: Vec<String>,
    /// Where the time goes, per run that carries server timings.
    #[serde(default)]
    pub breakdowns: Vec<Breakdown>,
}

impl Comparison {
    /// The capacity searches there are, each with its section heading: the
    /// After's client, then the client chosen for open-loop traffic.
    pub fn capacities(&self) -> Vec<(&Capacity, &'static str)> {
        let mut out = Vec::new();
        if let Some(c) = &self.capacity {
            out.push((c, "Capacity under the SLA"));
        }
        if let Some(c) = &self.capacity_open_loop {
            out.push((
                c,
                "Capacity under the SLA: the client for open-loop traffic",
            ));
        }
        out
    }
}

/// One side (Before or After) of a comparison, computed exactly from the
/// run's log; keys are part of the stable `comparison.json` schema
/// (version 1). Percentiles and the mean, minimum and maximum are over the
/// successful rows, by numpy's linear method (`null` when none succeeded);
/// the duration spans every row, from the first start to the last response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideSummary {
    /// Human label, e.g. "Before (input.py)".
    pub label: String,
    /// Which tool wrote the log: `input.py` or `loadgen`.
    pub source: String,
    /// The log file the numbers come from, when read from a file: as
    /// given, and in the written `comparison.json` relative to its
    /// directory (older ones recorded it as given).
    pub log_file: Option<String>,
    /// Rows in the log.
    pub total: u64,
    /// Rows that succeeded.
    pub succeeded: u64,
    /// Rows that failed (`total - succeeded`).
    pub failed: u64,
    /// Median latency of successful rows, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of successful rows, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency of successful rows, ms.
    pub p99_ms: Option<f64>,
    /// Mean latency of successful rows, ms.
    pub mean_ms: Option<f64>,
    /// Fastest successful row, ms.
    pub min_ms: Option<f64>,
    /// Slowest successful row, ms.
    pub max_ms: Option<f64>,
    /// Successful requests per second of run time.
    pub throughput_rps: Option<f64>,
    /// First start to last response over all rows, seconds.
    pub duration_s: Option<f64>,
    /// Successful requests per second that met every per-request objective
    /// judged (absent when none was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_rps: Option<f64>,
    /// LLM metrics, for logs that carry them: the type of loadgen's
    /// summary's `llm`, so both say the same of the same rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmSummary>,
}

/// `comparison.json`: `sla`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// Always `"p95_ms"`: the SLA bounds the After's P95.
    pub metric: String,
    /// The bound, ms.
    pub threshold_ms: f64,
    /// After P95 <= threshold (false when the After has no successful row).
    pub met: bool,
}

/// `comparison.json`: `quality`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Both sides cover the same set of request ids, with the same row count.
    pub identical_inputs: bool,
    /// Every successful After row says in the log that its output was
    /// checked against the expected output (the `verified` column), there
    /// was at least one, and no row on either side failed the check.
    pub verified: bool,
    /// After rows whose output was checked and matched.
    #[serde(default)]
    pub after_verified: u64,
    /// Rows with `error == "output_mismatch"`, both sides together.
    pub mismatches: u64,
    /// Of those, in the Before.
    pub before_mismatches: u64,
    /// Of those, in the After.
    pub after_mismatches: u64,
    /// Request ids in the Before but not in the After.
    pub missing_in_after: u64,
    /// Request ids in the After but not in the Before.
    pub extra_in_after: u64,
    /// Requests successful on both sides whose output digests could be compared.
    pub digests_compared: u64,
    /// Of those, how many digests differ.
    pub digest_differences: u64,
    /// Which run's digests the After's were compared with: `before`, or
    /// `before_reproduction` when the Before logs no digests.
    pub digest_reference: String,
}

/// One check of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable id: `sla_p95`, `failed_budget`, `output_mismatches`,
    /// `identical_inputs`, `output_digests`, and `slo` for each `--sla`
    /// objective.
    pub id: String,
    /// Whether it passed.
    pub passed: bool,
    /// A sentence with the numbers.
    pub detail: String,
}

/// `comparison.json`: `verdict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Every check passed.
    pub met: bool,
    /// When not met: the failed checks' sentences; when met: all of them.
    pub reasons: Vec<String>,
    /// Allowed failed requests in the After.
    pub max_failed: u64,
    /// Every check, passed or not.
    pub checks: Vec<Check>,
}

/// One metric before and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// Before value.
    pub before: Option<f64>,
    /// After value.
    pub after: Option<f64>,
    /// `after - before`.
    pub diff: Option<f64>,
    /// `100 * (after - before) / before`; `null` when before is 0 or absent.
    pub pct: Option<f64>,
}

impl MetricDelta {
    /// The delta of one metric.
    pub fn new(before: Option<f64>, after: Option<f64>) -> Self {
        let diff = before.zip(after).map(|(b, a)| a - b);
        let pct = diff
            .zip(before)
            .and_then(|(d, b)| (b != 0.0).then(|| 100.0 * d / b));
        Self {
            before,
            after,
            diff,
            pct,
        }
    }
}

/// The rows after the fixed eleven, in `comparison.csv` order; each is
/// present when either side has a value.
pub const EXTRA_ROWS: [&str; 15] = [
    "goodput_rps",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p95_ms",
    "tpot_p99_ms",
    "e2e_p90_ms",
    "output_tokens_per_s",
];

/// `comparison.json`: `delta`, one entry per numeric metric of a side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Rows.
    pub total: MetricDelta,
    /// Successful rows.
    pub succeeded: MetricDelta,
    /// Failed rows.
    pub failed: MetricDelta,
    /// P50, ms.
    pub p50_ms: MetricDelta,
    /// P95, ms.
    pub p95_ms: MetricDelta,
    /// P99, ms.
    pub p99_ms: MetricDelta,
    /// Mean, ms.
    pub mean_ms: MetricDelta,
    /// Min, ms.
    pub min_ms: MetricDelta,
    /// Max, ms.
    pub max_ms: MetricDelta,
    /// Successful requests per second.
    pub throughput_rps: MetricDelta,
    /// Run duration, s.
    pub duration_s: MetricDelta,
    /// Goodput and, for LLM runs, their metrics ([`EXTRA_ROWS`]), where
    /// either side has them.
    #[serde(flatten)]
    pub extra: BTreeMap<String, MetricDelta>,
}

impl Delta {
    /// `(metric name, delta)` in the fixed order of `comparison.csv`.
    pub fn rows(&self) -> Vec<(&'static str, &MetricDelta)> {
        let fixed = [
            ("total", &self.total),
            ("succeeded", &self.succeeded),
            ("failed", &self.failed),
            ("p50_ms", &self.p50_ms),
            ("p95_ms", &self.p95_ms),
            ("p99_ms", &self.p99_ms),
            ("mean_ms", &self.mean_ms),
            ("min_ms", &self.min_ms),
            ("max_ms", &self.max_ms),
            ("throughput_rps", &self.throughput_rps),
            ("duration_s", &self.duration_s),
        ];
        let extra = EXTRA_ROWS
            .iter()
            .filter_map(|name| self.extra.get(*name).map(|d| (*name, d)));
        fixed.into_iter().chain(extra).collect()
    }
}

/// How closely the Rust reproduction agrees with `input.py`'s own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Reproduction P50 / `input.py` P50.
    pub p50_ratio: Option<f64>,
    /// Reproduction P95 / `input.py` P95.
    pub p95_ratio: Option<f64>,
    /// Both ratios within `1 +- tolerance_pct / 100`.
    pub within_tolerance: bool,
    /// The tolerance, percent.
    pub tolerance_pct: f64,
}

/// `comparison.json`: `before_reproduction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reproduction {
    /// The reproduction's own numbers.
    pub summary: SideSummary,
    /// Its agreement with the Before.
    pub agreement: Agreement,
}

/// One diagnosis entry in `comparison.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id: `littles_law`, `latency_breakdown`, `server_parallelism`,
    /// `connection_setup`, `client_overhead`, `client_batch_wait`, `drift`,
    /// `service_floor`, `failures`, `llm_slot_wait` (time to first token
    /// against decode steps), `server_statistics` (from the server's own
    /// statistics), `python_client`, and across runs `batch_cost` (from
    /// `Server-Timing`) and `batch_cost_server_stats` (from the servers'
    /// statistics).
    pub id: String,
    /// Which run: `before`, `after`, `before_reproduction`, or `runs` for a
    /// finding drawn from several.
    pub side: String,
    /// The sentence a reader sees, numbers included.
    pub finding: String,
    /// The numbers of the sentence, as fields of the finding.
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

/// What `input.py` printed; a line it did not print stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputPyNumbers {
    /// `Total requests: N`.
    pub total: Option<u64>,
    /// `Succeeded: N`.
    pub succeeded: Option<u64>,
    /// `Failed: N`.
    pub failed: Option<u64>,
    /// `P50 latency: X ms`.
    pub p50_ms: Option<f64>,
    /// `P95 latency: X ms`.
    pub p95_ms: Option<f64>,
    /// `P99 latency: X ms`.
    pub p99_ms: Option<f64>,
}

/// Linear-method percentiles over the same rows, for the side-by-side view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinearPercentiles {
    /// P50, ms.
    pub p50_ms: Option<f64>,
    /// P95, ms.
    pub p95_ms: Option<f64>,
    /// P99, ms.
    pub p99_ms: Option<f64>,
}

/// `input.py`'s printed numbers next to ours (`comparison.json`: `input_py_stdout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputPyReconciliation {
    /// Parsed from the script's stdout.
    pub printed: InputPyNumbers,
    /// Recomputed from the Before log the way the script does it
    /// (`status_code == 200` rows, Exclusive method).
    pub recomputed_exclusive: InputPyNumbers,
    /// The same rows with the report's Linear method.
    pub recomputed_linear: LinearPercentiles,
    /// Allowed gap between printed and recomputed numbers, ms.
    pub tolerance_ms: f64,
    /// Every printed number matches its recomputation (counts exactly,
    /// percentiles within `tolerance_ms`), and at least the counts were printed.
    pub matches: bool,
    /// Printed numbers that did not match, one sentence each.
    pub mismatches: Vec<String>,
}

/// The parts of a latency, ms, in the order they are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    /// Waiting in the client's batcher for the batch to fill.
    pub batch_wait_ms: f64,
    /// TCP connect and TLS handshake.
    pub connect_ms: f64,
    /// Waiting in the server's queue (`Server-Timing: queue`).
    pub queue_ms: f64,
    /// Executing (`Server-Timing: infer`).
    pub execution_ms: f64,
    /// The rest: transfer, parsing, the client's scheduling.
    pub transfer_ms: f64,
}

impl Parts {
    /// Names of the parts, in drawing order.
    pub const NAMES: [&'static str; 5] = [
        "client wait and batching",
        "connect and TLS",
        "server queue",
        "execution",
        "transfer and client",
    ];

    /// The parts in drawing order.
    pub fn values(&self) -> [f64; 5] {
        [
            self.batch_wait_ms,
            self.connect_ms,
            self.queue_ms,
            self.execution_ms,
            self.transfer_ms,
        ]
    }

    /// Their sum, ms: the mean latency of the rows averaged.
    pub fn total_ms(&self) -> f64 {
        self.values().iter().sum()
    }

    /// The mean of each part over `rows`; `None` for no rows.
    pub fn mean(rows: &[Parts]) -> Option<Parts> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len() as f64;
        let sum = |f: fn(&Parts) -> f64| rows.iter().map(f).sum::<f64>() / n;
        Some(Parts {
            batch_wait_ms: sum(|p| p.batch_wait_ms),
            connect_ms: sum(|p| p.connect_ms),
            queue_ms: sum(|p| p.queue_ms),
            execution_ms: sum(|p| p.execution_ms),
            transfer_ms: sum(|p| p.transfer_ms),
        })
    }
}

/// A run's breakdown of where the time goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The run's label.
    pub label: String,
    /// Rows split.
    pub rows: usize,
    /// Mean of each part over every split row.
    pub mean: Parts,
    /// The P95 of the split rows' latency, ms.
    pub p95_ms: f64,
    /// Mean of each part over the rows at or above that P95.
    pub tail: Parts,
}

impl Breakdown {
    /// Headings of [`Breakdown::table_rows`].
    pub const HEADINGS: [&'static str; 7] = [
        "run",
        "client wait and batching (ms)",
        "connect and TLS (ms)",
        "server queue (ms)",
        "execution (ms)",
        "transfer and client (ms)",
        "total (ms)",
    ];

    /// One row per bar (mean, tail), for the reports: the label, then each
    /// part in ms and its share of the bar.
    pub fn table_rows(&self) -> Vec<[String; 7]> {
        [
            (format!("{}: mean", self.label), &self.mean),
            (
                format!("{}: slowest 5% (>= P95 {:.1} ms)", self.label, self.p95_ms),
                &self.tail,
            ),
        ]
        .into_iter()
        .map(|(name, parts)| {
            let total = parts.total_ms();
            let cell = |v: f64| {
                if total > 0.0 {
                    format!("{v:.1} ({:.0}%)", v / total * 100.0)
                } else {
                    format!("{v:.1}")
                }
            };
            let v = parts.values();
            [
                name,
                cell(v[0]),
                cell(v[1]),
                cell(v[2]),
                cell(v[3]),
                cell(v[4]),
                format!("{total:.1}"),
            ]
        })
        .collect()
    }
}

/// P50/P95/P99 and the P95's interval, ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// P50, ms.
    pub p50_ms: Option<f64>,
    /// P95, ms.
    pub p95_ms: Option<f64>,
    /// P99, ms.
    pub p99_ms: Option<f64>,
    /// 95% interval of the P95, ms.
    pub p95_interval_ms: Option<[f64; 2]>,
}

/// A candidate as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCandidate {
    /// Rank by predicted P95.
    pub rank: usize,
    /// In words.
    pub label: String,
    /// `baseline`, `client` or `server`.
    pub kind: CandidateKind,
    /// Predicted P95, ms.
    pub p95_ms: f64,
    /// Its 95% interval, ms.
    pub p95_interval_ms: [f64; 2],
    /// Whether the interval's upper end keeps the SLA with the margin.
    pub meets_sla_with_margin: bool,
}

/// `comparison.json.prediction`: what the what-if engine predicted for the
/// After it chose, beside what the After measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The candidate run as the After.
    pub candidate: String,
    /// Its loadgen flags.
    pub loadgen_args: Vec<String>,
    /// Whether the engine chose it (false: the best there was, though it
    /// does not keep the SLA with the margin).
    pub chosen: bool,
    /// What the engine predicted.
    pub predicted: Quantiles,
    /// What the After measured.
    pub measured: Quantiles,
    /// (predicted - measured) / measured P95, percent.
    pub p95_error_pct: Option<f64>,
    /// Whether the measured P95 lies in the predicted interval.
    pub measured_within_interval: Option<bool>,
    /// The engine's conclusion.
    pub conclusion: String,
    /// The fitted model in one line.
    pub fit: String,
    /// The best client candidates and every server change, ranked.
    pub ranked: Vec<RankedCandidate>,
    /// The engine's predicted capacity of the chosen client, req/s.
    pub predicted_capacity_rps: Option<f64>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn interval(v: Option<[f64; 2]>) -> String {
    v.map_or_else(|| "-".to_owned(), |[lo, hi]| format!("{lo:.1} to {hi:.1}"))
}

impl Prediction {
    /// Headings of [`Prediction::rows`].
    pub const HEADINGS: [&'static str; 3] = ["", "predicted", "measured"];

    /// Predicted beside measured, one row per statistic, for the reports.
    pub fn rows(&self) -> Vec<[String; 3]> {
        let (p, m) = (&self.predicted, &self.measured);
        vec![
            ["P50 (ms)".into(), ms(p.p50_ms), ms(m.p50_ms)],
            ["P95 (ms)".into(), ms(p.p95_ms), ms(m.p95_ms)],
            [
                "P95 95% interval (ms)".into(),
                interval(p.p95_interval_ms),
                interval(m.p95_interval_ms),
            ],
            ["P99 (ms)".into(), ms(p.p99_ms), ms(m.p99_ms)],
        ]
    }

    /// Headings of [`Prediction::ranked_rows`].
    pub const RANKED_HEADINGS: [&'static str; 5] = [
        "rank",
        "candidate",
        "who changes",
        "predicted P95 (ms) [95% interval]",
        "keeps the SLA with margin",
    ];

    /// The ranked candidates, for the reports.
    pub fn ranked_rows(&self) -> Vec<[String; 5]> {
        self.ranked
            .iter()
            .map(|c| {
                [
                    c.rank.to_string(),
                    c.label.clone(),
                    match c.kind {
                        CandidateKind::Baseline => "nobody (as measured)",
                        CandidateKind::Client => "client",
                        CandidateKind::Server => "server (a server change)",
                    }
                    .to_owned(),
                    format!(
                        "{:.1} [{:.1}, {:.1}]",
                        c.p95_ms, c.p95_interval_ms[0], c.p95_interval_ms[1]
                    ),
                    if c.meets_sla_with_margin { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect()
    }

    /// The outcome in one sentence.
    pub fn sentence(&self) -> String {
        let error = self
            .p95_error_pct
            .map_or_else(String::new, |e| format!(", an error of {e:+.1}%"));
        let inside = match self.measured_within_interval {
            Some(true) => ", inside the predicted interval",
            Some(false) => ", outside the predicted interval",
            None => "",
        };
        format!(
            "The what-if engine {} {}: predicted P95 {} ms, measured {} ms{error}{inside}.",
            if self.chosen {
                "chose"
            } else {
                "found nothing that keeps the SLA with its margin; the After ran its best candidate,"
            },
            self.candidate,
            ms(self.predicted.p95_ms),
            ms(self.measured.p95_ms),
        )
    }
}

/// `comparison.json.llm_prediction`: what the LLM what-if engine predicted
/// for the After it chose, beside what the After measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmPrediction {
    /// The candidate run as the After.
    pub candidate: String,
    /// Who changed something.
    pub kind: CandidateKind,
    /// Whether the engine chose it (false: the best there was, though it
    /// does not keep every objective with the margin).
    pub chosen: bool,
    /// Predicted beside measured, one row per statistic.
    pub rows: Vec<LlmPredictedRow>,
    /// The engine's conclusion.
    pub conclusion: String,
    /// The fitted step model in one line.
    pub fit: String,
    /// Every candidate, ranked.
    pub ranked: Vec<LlmRankedCandidate>,
}

/// One statistic of the After, predicted and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmPredictedRow {
    /// `ttft_p95`, `itl_p99`, ... (series and quantile).
    pub metric: String,
    /// Predicted, ms.
    pub predicted_ms: f64,
    /// Its 95% interval, ms.
    pub interval_ms: [f64; 2],
    /// Measured, ms (`None` when the After measured none).
    pub measured_ms: Option<f64>,
    /// (predicted - measured) / measured, percent.
    pub error_pct: Option<f64>,
    /// Whether the measurement lies in the interval.
    pub within_interval: Option<bool>,
}

/// One LLM candidate in the ranked table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRankedCandidate {
    /// Rank by predicted score.
    pub rank: usize,
    /// In words.
    pub label: String,
    /// `baseline`, `client` or `server`.
    pub kind: CandidateKind,
    /// Predicted TTFT P95, ms.
    pub ttft_p95_ms: f64,
    /// Predicted ITL P99, ms.
    pub itl_p99_ms: f64,
    /// Predicted e2e P95, ms.
    pub e2e_p95_ms: f64,
    /// Whether every objective is kept with the margin.
    pub meets_objectives_with_margin: bool,
    /// Whether it can be run as things stand.
    pub runnable: bool,
}

impl LlmPrediction {
    /// Headings of [`LlmPrediction::table`].
    pub const HEADINGS: [&'static str; 5] = [
        "",
        "predicted (ms)",
        "95% interval (ms)",
        "measured (ms)",
        "error",
    ];

    /// Predicted beside measured, for the reports.
    pub fn table(&self) -> Vec<[String; 5]> {
        self.rows
            .iter()
            .map(|r| {
                let (series, q) = r.metric.split_once('_').unwrap_or((&r.metric, ""));
                [
                    format!("{} {}", series.to_uppercase(), q.to_uppercase()),
                    format!("{:.1}", r.predicted_ms),
                    format!("{:.1} to {:.1}", r.interval_ms[0], r.interval_ms[1]),
                    ms(r.measured_ms),
                    r.error_pct.map_or_else(
                        || "-".to_owned(),
                        |e| {
                            format!(
                                "{e:+.1}%{}",
                                if r.within_interval == Some(true) {
                                    " (inside)"
                                } else {
                                    ""
                                }
                            )
                        },
                    ),
                ]
            })
            .collect()
    }

    /// Headings of [`LlmPrediction::ranked_rows`].
    pub const RANKED_HEADINGS: [&'static str; 7] = [
        "rank",
        "candidate",
        "who changes",
        "TTFT P95 (ms)",
        "ITL P99 (ms)",
        "e2e P95 (ms)",
        "keeps the objectives with margin",
    ];

    /// The ranked candidates, for the reports.
    pub fn ranked_rows(&self) -> Vec<[String; 7]> {
        self.ranked
            .iter()
            .map(|c| {
                [
                    c.rank.to_string(),
                    c.label.clone(),
                    match c.kind {
                        CandidateKind::Baseline => "nobody (as measured)",
                        CandidateKind::Client => "client",
                        CandidateKind::Server => "server (a server change)",
                    }
                    .to_owned(),
                    format!("{:.1}", c.ttft_p95_ms),
                    format!("{:.1}", c.itl_p99_ms),
                    format!("{:.1}", c.e2e_p95_ms),
                    match (c.meets_objectives_with_margin, c.runnable) {
                        (true, true) => "yes",
                        (true, false) => "yes, cannot be run yet",
                        (false, _) => "no",
                    }
                    .to_owned(),
                ]
            })
            .collect()
    }

    /// The outcome in one sentence: TTFT P95 and ITL P99, predicted and
    /// measured.
    pub fn sentence(&self) -> String {
        let quote = |metric: &str, name: &str| {
            self.rows.iter().find(|r| r.metric == metric).map(|r| {
                format!(
                    "{name} predicted {:.1} ms, measured {}{}",
                    r.predicted_ms,
                    ms(r.measured_ms),
                    r.error_pct
                        .map_or_else(String::new, |e| format!(" ({e:+.1}%)"))
                )
            })
        };
        let parts: Vec<String> = [quote("ttft_p95", "TTFT P95"), quote("itl_p99", "ITL P99")]
            .into_iter()
            .flatten()
            .collect();
        format!(
            "The LLM what-if engine {} {}: {}.",
            if self.chosen {
                "chose"
            } else {
                "found nothing that keeps every objective with its margin; the After ran its best candidate,"
            },
            self.candidate,
            parts.join("; ")
        )
    }
}

/// The sentence the reports give a [`Decision`]: who changes what, and why.
pub fn decision_sentence(decision: &Decision) -> String {
    let who = match decision.kind {
        CandidateKind::Server => "a server change",
        CandidateKind::Client => "a client change",
        CandidateKind::Baseline => "no change",
    };
    format!(
        "Chosen by the analysis, {who}: {}. Why: {}.",
        decision.label,
        decision.reason.trim_end_matches('.')
    )
}

/// Headings of [`decision_rows`].
pub const DECISION_HEADINGS: [&str; 2] = ["number", "value"];

/// The numbers behind a [`Decision`], one row each, for the reports.
pub fn decision_rows(decision: &Decision) -> Vec<[String; 2]> {
    decision
        .numbers
        .iter()
        .map(|(name, value)| {
            let shown = if value.fract() == 0.0 && value.abs() < 1e15 {
                format!("{value:.0}")
            } else {
                format!("{value:.3}")
            };
            [name.clone(), shown]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_is_after_minus_before_and_its_share() {
        let d = MetricDelta::new(Some(200.0), Some(50.0));
        assert_eq!((d.diff, d.pct), (Some(-150.0), Some(-75.0)));
        let none = MetricDelta::new(Some(0.0), Some(5.0));
        assert_eq!((none.diff, none.pct), (Some(5.0), None));
    }

    #[test]
    fn parts_average_and_add_up() {
        let p = |x: f64| Parts {
            batch_wait_ms: x,
            connect_ms: 1.0,
            queue_ms: 2.0,
            execution_ms: 3.0,
            transfer_ms: 4.0,
        };
        let mean = Parts::mean(&[p(0.0), p(2.0)]).unwrap();
        assert_eq!(mean.batch_wait_ms, 1.0);
        assert_eq!(mean.total_ms(), 11.0);
        assert_eq!(Parts::mean(&[]), None);
    }
}
