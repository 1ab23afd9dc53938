//! Builds a [`Comparison`] (the `comparison.json` document) from two runs.

use std::path::Path;

use model::log::{read_log_file, Log};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diagnosis::{diagnose, DiagnosisInput, Finding};
use crate::error::ReportError;
use crate::input_py::{reconcile_input_py, InputPyReconciliation};
use crate::slo::Judge;
use crate::summary::SideSummary;
use crate::verdict::{assess_quality, decide, sla_for, Quality, Sla, Verdict};

/// Version of the `comparison.json` layout; bumped only on breaking changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The SLA of the task: P95 <= 800 ms.
pub const DEFAULT_SLA_P95_MS: f64 = 800.0;

/// How far (percent) the Rust reproduction's P50 and P95 may stray from
/// `input.py`'s and still count as the same Before.
pub const REPRODUCTION_TOLERANCE_PCT: f64 = 10.0;

/// One run's log with the label the report gives it.
#[derive(Debug, Clone)]
pub struct RunLog {
    /// Label shown in tables and charts.
    pub label: String,
    /// Where the log came from, if a file.
    pub log_file: Option<String>,
    /// The rows.
    pub log: Log,
    /// The server's own statistics for this run (the difference of
    /// Triton's `/stats` before and after), when they were read.
    pub server_stats: Option<model::kserve::ModelStats>,
}

impl RunLog {
    /// Reads a log of either format; errors name the file, line and column.
    pub fn read(label: &str, path: &Path) -> Result<Self, ReportError> {
        let log = read_log_file(path).map_err(|source| ReportError::ReadLog {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            label: label.to_owned(),
            log_file: Some(path.display().to_string()),
            log,
            server_stats: None,
        })
    }

    /// Adds the server's statistics around the run, from the file `loadgen
    /// --server-stats` wrote.
    pub fn with_server_stats(mut self, path: &Path) -> Result<Self, ReportError> {
        self.server_stats = Some(read_server_stats(path)?);
        Ok(self)
    }

    /// Wraps a log already in memory.
    pub fn new(label: &str, log: Log) -> Self {
        Self {
            label: label.to_owned(),
            log_file: None,
            log,
            server_stats: None,
        }
    }

    fn summary(&self) -> Result<SideSummary, ReportError> {
        SideSummary::from_log(&self.label, self.log_file.as_deref(), &self.log)
    }
}

/// The statistics of one run from a `loadgen --server-stats` file (its
/// `delta`: the server's counters after the run less before it).
pub fn read_server_stats(path: &Path) -> Result<model::kserve::ModelStats, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ReportError::io(
            path,
            std::io::Error::new(
                e.kind(),
                format!("cannot read the server statistics file: {e}"),
            ),
        )
    })?;
    let stats: model::kserve::ServerStatsDelta = serde_json::from_str(&text).map_err(|e| {
        ReportError::InvalidOption(format!(
            "{}: not a server statistics file from loadgen --server-stats ({e})",
            path.display()
        ))
    })?;
    Ok(stats.delta)
}

/// Knobs of a comparison.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// SLA bound on the After's P95, ms (finite, > 0).
    pub sla_p95_ms: f64,
    /// Failed After requests allowed by the verdict.
    pub max_failed: u64,
    /// Free-form run conditions (profile, concurrency, requests, machine...),
    /// a JSON object copied into `conditions`. A `concurrency` key (or
    /// `before_concurrency`/`after_concurrency`, or `before.concurrency`)
    /// feeds the Little's-law finding; `phases` holds
    /// each phase's load (and `before_input_py.client_cpu_s`/`client_wall_s`,
    /// what input.py's process cost).
    pub conditions: Value,
    /// What `input.py` printed, to reconcile with the Before log.
    pub input_py_stdout: Option<String>,
    /// Objectives beyond the SLA, each a check of the verdict on the After.
    pub slos: Vec<crate::slo::Slo>,
    /// The what-if engine's report whose candidate the After ran, for
    /// `prediction` (predicted beside measured).
    pub whatif: Option<crate::whatif::WhatifReport>,
    /// A capacity search of the After's client (`loadgen capacity`).
    pub capacity: Option<crate::capacity::Capacity>,
    /// A capacity search of the client the engine predicts the most
    /// open-loop capacity for (`whatif.predicted_capacity_rps.best`).
    pub capacity_open_loop: Option<crate::capacity::Capacity>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            sla_p95_ms: DEFAULT_SLA_P95_MS,
            max_failed: 0,
            conditions: Value::Null,
            input_py_stdout: None,
            slos: Vec::new(),
            whatif: None,
            capacity: None,
            capacity_open_loop: None,
        }
    }
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
    fn new(before: Option<f64>, after: Option<f64>) -> Self {
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
    pub extra: std::collections::BTreeMap<String, MetricDelta>,
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

/// The value of extra row `name` on one side.
fn extra_value(side: &SideSummary, name: &str) -> Option<f64> {
    if name == "goodput_rps" {
        return side.goodput_rps;
    }
    let llm = side.llm.as_ref()?;
    let pick = |d: &crate::summary::Distribution, q: &str| match q {
        "p50_ms" => d.p50_ms,
        "p90_ms" => d.p90_ms,
        "p95_ms" => d.p95_ms,
        "p99_ms" => d.p99_ms,
        _ => None,
    };
    match name.split_once('_')? {
        ("ttft", q) => pick(&llm.ttft, q),
        ("itl", q) => pick(&llm.itl, q),
        ("tpot", q) => pick(&llm.tpot, q),
        ("e2e", q) => pick(&llm.e2e, q),
        ("output", _) => llm.output_tokens_per_s,
        _ => None,
    }
}

impl Delta {
    /// After minus Before for every metric.
    pub fn between(before: &SideSummary, after: &SideSummary) -> Self {
        let count = |v: u64| Some(v as f64);
        let d = MetricDelta::new;
        Self {
            total: d(count(before.total), count(after.total)),
            succeeded: d(count(before.succeeded), count(after.succeeded)),
            failed: d(count(before.failed), count(after.failed)),
            p50_ms: d(before.p50_ms, after.p50_ms),
            p95_ms: d(before.p95_ms, after.p95_ms),
            p99_ms: d(before.p99_ms, after.p99_ms),
            mean_ms: d(before.mean_ms, after.mean_ms),
            min_ms: d(before.min_ms, after.min_ms),
            max_ms: d(before.max_ms, after.max_ms),
            throughput_rps: d(before.throughput_rps, after.throughput_rps),
            duration_s: d(before.duration_s, after.duration_s),
            extra: EXTRA_ROWS
                .iter()
                .filter_map(|name| {
                    let (b, a) = (extra_value(before, name), extra_value(after, name));
                    (b.is_some() || a.is_some()).then(|| ((*name).to_owned(), d(b, a)))
                })
                .collect(),
        }
    }

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

/// The whole `comparison.json` document (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The SLA and whether the After meets it.
    pub sla: Sla,
    /// The objectives given with `--sla`, judged on the After.
    pub slos: Vec<crate::slo::SloResult>,
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
    pub conditions: Value,
    /// What the what-if engine predicted for the After, beside what it
    /// measured (when the After was the engine's candidate).
    #[serde(default)]
    pub prediction: Option<crate::prediction::Prediction>,
    /// Capacity under the SLA of the After's client, measured, with the
    /// engine's predicted capacity beside it.
    #[serde(default)]
    pub capacity: Option<crate::capacity::Capacity>,
    /// Capacity under the SLA of the client the engine predicted the most
    /// open-loop capacity for (the After's is chosen for the Before's
    /// closed loop), measured, with the prediction beside it.
    #[serde(default)]
    pub capacity_open_loop: Option<crate::capacity::Capacity>,
    /// Warnings about the evidence (e.g. input.py and its reproduction
    /// disagree), shown first in every report and on the console.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The diagnosis's opening: at most three lines.
    #[serde(default)]
    pub summary: Vec<String>,
    /// Where the time goes, per run that carries server timings.
    #[serde(default)]
    pub breakdowns: Vec<crate::breakdown::Breakdown>,
}

impl Comparison {
    /// The capacity searches there are, each with its section heading: the
    /// After's client, then the client chosen for open-loop traffic.
    pub fn capacities(&self) -> Vec<(&crate::capacity::Capacity, &'static str)> {
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

/// Compares `before` with `after` (and optionally the reproduction of the Before).
pub fn compare(
    before: &RunLog,
    after: &RunLog,
    reproduction: Option<&RunLog>,
    options: &CompareOptions,
) -> Result<Comparison, ReportError> {
    let threshold = options.sla_p95_ms;
    if !(threshold.is_finite() && threshold > 0.0) {
        return Err(ReportError::InvalidOption(format!(
            "the SLA threshold must be a finite number of ms above 0, got {threshold}; pass e.g. --sla-p95-ms 800"
        )));
    }
    let conditions = normalise_conditions(&options.conditions)?;
    let mut before_summary = before.summary()?;
    let mut after_summary = after.summary()?;
    // Goodput against the objectives given, else the SLA as one.
    let objectives = if options.slos.is_empty() {
        vec![crate::slo::Slo::e2e_quantile(0.95, threshold)]
    } else {
        options.slos.clone()
    };
    before_summary.goodput_rps = crate::slo::goodput_rps(&objectives, &before.log.rows);
    after_summary.goodput_rps = crate::slo::goodput_rps(&objectives, &after.log.rows);
    let quality = assess_quality(&before.log, &after.log, reproduction.map(|r| &r.log));
    let sla = sla_for(&after_summary, threshold);
    let slos: Vec<crate::slo::SloResult> = options
        .slos
        .iter()
        .map(|slo| slo.judge(&after_summary, &after.log, &options.slos))
        .collect();
    let verdict = decide(
        &sla,
        &before_summary,
        &after_summary,
        &quality,
        options.max_failed,
        &slos,
    );

    let before_reproduction = match reproduction {
        Some(run) => Some(reproduction_of(&before_summary, run.summary()?)),
        None => None,
    };
    let input_py_stdout = match &options.input_py_stdout {
        Some(text) => Some(reconcile_input_py(text, &before.log.rows)?),
        None => None,
    };

    let mut diagnosis = Vec::new();
    let mut sides = vec![
        ("before", before, &before_summary),
        ("after", after, &after_summary),
    ];
    if let (Some(run), Some(rep)) = (reproduction, &before_reproduction) {
        sides.insert(1, ("before_reproduction", run, &rep.summary));
    }
    let logs: Vec<&Log> = sides.iter().map(|(_, run, _)| &run.log).collect();
    let batch_cost = crate::diagnosis::batch_cost(&logs);
    let server_stats: Vec<&model::kserve::ModelStats> = sides
        .iter()
        .filter_map(|(_, run, _)| run.server_stats.as_ref())
        .collect();
    let batch_cost_from_stats = crate::diagnosis::batch_cost_from_stats(&server_stats);
    for (side, run, summary) in sides {
        diagnosis.extend(diagnose(&DiagnosisInput {
            side,
            log: &run.log,
            summary,
            configured_concurrency: configured_concurrency(&conditions, side),
        }));
        if let Some(stats) = &run.server_stats {
            diagnosis.extend(crate::diagnosis::server_statistics(side, summary, stats));
        }
    }
    diagnosis.extend(batch_cost);
    diagnosis.extend(batch_cost_from_stats);

    let mut breakdowns: Vec<crate::breakdown::Breakdown> = Vec::new();
    for (label, log) in [(&before.label, &before.log)]
        .into_iter()
        .chain(reproduction.map(|r| (&r.label, &r.log)))
        .chain([(&after.label, &after.log)])
    {
        breakdowns.extend(crate::breakdown::breakdown(label, log));
    }
    let warnings = crate::evidence::warnings(&before_summary, before_reproduction.as_ref());
    if let (Some(rep), Some(run)) = (&before_reproduction, reproduction) {
        let rep_breakdown = breakdowns.iter().find(|b| b.label == run.label);
        diagnosis.extend(crate::evidence::python_client(
            &before_summary,
            rep,
            rep_breakdown,
            &conditions,
        ));
    }

    let prediction = options.whatif.as_ref().and_then(|whatif| {
        let after_ms: Vec<f64> = after
            .log
            .rows
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.latency_ms)
            .collect();
        crate::prediction::prediction(whatif, &after_summary, &after_ms)
    });
    let capacity = options.capacity.clone().map(|mut capacity| {
        if capacity.predicted_max_rate_rps.is_none() {
            capacity.predicted_max_rate_rps =
                prediction.as_ref().and_then(|p| p.predicted_capacity_rps);
        }
        if capacity.client.is_none() {
            capacity.client = prediction.as_ref().map(|p| p.candidate.clone());
        }
        capacity
    });
    let best = options
        .whatif
        .as_ref()
        .and_then(|w| w.predicted_capacity_rps.best.as_ref());
    let capacity_open_loop = options.capacity_open_loop.clone().map(|mut capacity| {
        if let Some(best) = best {
            capacity
                .predicted_max_rate_rps
                .get_or_insert(best.max_rate_rps);
            capacity.client.get_or_insert_with(|| best.label.clone());
        }
        capacity
    });

    let mut comparison = Comparison {
        schema_version: SCHEMA_VERSION,
        sla,
        slos,
        verdict,
        delta: Delta::between(&before_summary, &after_summary),
        before: before_summary,
        after: after_summary,
        quality,
        before_reproduction,
        input_py_stdout,
        diagnosis,
        conditions,
        prediction,
        capacity,
        capacity_open_loop,
        warnings,
        summary: Vec::new(),
        breakdowns,
    };
    comparison.summary = crate::evidence::summary_lines(&comparison);
    Ok(comparison)
}

fn reproduction_of(before: &SideSummary, summary: SideSummary) -> Reproduction {
    let ratio = |ours: Option<f64>, theirs: Option<f64>| {
        ours.zip(theirs)
            .and_then(|(o, t)| (t > 0.0).then_some(o / t))
    };
    let p50_ratio = ratio(summary.p50_ms, before.p50_ms);
    let p95_ratio = ratio(summary.p95_ms, before.p95_ms);
    let within =
        |r: Option<f64>| r.is_some_and(|r| (r - 1.0).abs() * 100.0 <= REPRODUCTION_TOLERANCE_PCT);
    Reproduction {
        agreement: Agreement {
            p50_ratio,
            p95_ratio,
            within_tolerance: within(p50_ratio) && within(p95_ratio),
            tolerance_pct: REPRODUCTION_TOLERANCE_PCT,
        },
        summary,
    }
}

/// The caller's conditions as an object, with `quantile_method` set (the
/// report computes every percentile with it, whatever the caller wrote).
fn normalise_conditions(conditions: &Value) -> Result<Value, ReportError> {
    let mut map = match conditions {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            return Err(ReportError::InvalidOption(format!(
                "conditions must be a JSON object like {{\"profile\": \"placeholder\", \"concurrency\": 20}}, got {other}"
            )))
        }
    };
    map.insert("quantile_method".to_owned(), Value::from("linear"));
    Ok(Value::Object(map))
}

/// `conditions.<side>.concurrency`, `conditions.<side>_concurrency`, then
/// `conditions.concurrency`; the reproduction falls back to the Before's.
fn configured_concurrency(conditions: &Value, side: &str) -> Option<f64> {
    let lookup = |side: &str| {
        conditions
            .get(side)
            .and_then(|s| s.get("concurrency"))
            .or_else(|| conditions.get(format!("{side}_concurrency")))
            .and_then(Value::as_f64)
    };
    lookup(side)
        .or_else(|| {
            (side == "before_reproduction")
                .then(|| lookup("before"))
                .flatten()
        })
        .or_else(|| conditions.get("concurrency").and_then(Value::as_f64))
}
