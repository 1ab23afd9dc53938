//! Builds a [`Comparison`] (the `comparison.json` document,
//! `model::comparison`) from two runs.

use std::path::Path;

use model::capacity::Capacity;
use model::comparison::{
    Agreement, Comparison, Delta, MetricDelta, Reproduction, SideSummary, EXTRA_ROWS,
    SCHEMA_VERSION,
};
use model::conditions::Conditions;
use model::log::{read_log_file, Log};
use model::summary::{ObjectiveResult, Percentiles};
use model::whatif::{CandidateKind, DecisionRole, WhatifReport};
use stats::slo::Slo;

use crate::diagnosis::{diagnose, DiagnosisInput};
use crate::error::ReportError;
use crate::input_py::reconcile_input_py;
use crate::slo::Judge;
use crate::summary::summary_of_log;
use crate::verdict::{assess_quality, decide, sla_for};

/// The SLA of the task: P95 <= 800 ms.
pub(crate) const DEFAULT_SLA_P95_MS: f64 = 800.0;

/// How far (percent) the Rust reproduction's P50 and P95 may stray from
/// `input.py`'s and still count as the same Before.
pub(crate) const REPRODUCTION_TOLERANCE_PCT: f64 = 10.0;

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
        summary_of_log(&self.label, self.log_file.as_deref(), &self.log)
    }
}

/// The statistics of one run from a `loadgen --server-stats` file (its
/// `delta`: the server's counters after the run less before it).
pub(crate) fn read_server_stats(path: &Path) -> Result<model::kserve::ModelStats, ReportError> {
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
    /// The run's conditions (`conditions.json`), copied into `conditions`.
    /// `concurrency` feeds the Little's-law finding; `phases` holds each
    /// phase's load (and `before_input_py.client_cpu_s`/`client_wall_s`,
    /// what input.py's process cost).
    pub conditions: Conditions,
    /// What `input.py` printed, to reconcile with the Before log.
    pub input_py_stdout: Option<String>,
    /// Objectives beyond the SLA, each a check of the verdict on the After.
    pub slos: Vec<Slo>,
    /// The analysis (`whatif.json`) whose decision the After carried out:
    /// `decision` (what, why, the numbers), and `prediction` (predicted
    /// beside measured) when the After is the engine's candidate.
    pub whatif: Option<WhatifReport>,
    /// Which of its decisions the After carried out.
    pub decision: DecisionRole,
    /// A capacity search of the After's client (`loadgen capacity`).
    pub capacity: Option<Capacity>,
    /// A capacity search of the client the engine predicts the most
    /// open-loop capacity for (`whatif.predicted_capacity_rps.best`).
    pub capacity_open_loop: Option<Capacity>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            sla_p95_ms: DEFAULT_SLA_P95_MS,
            max_failed: 0,
            conditions: Conditions::default(),
            input_py_stdout: None,
            slos: Vec::new(),
            whatif: None,
            decision: DecisionRole::After,
            capacity: None,
            capacity_open_loop: None,
        }
    }
}

/// The value of extra row `name` on one side.
fn extra_value(side: &SideSummary, name: &str) -> Option<f64> {
    if name == "goodput_rps" {
        return side.goodput_rps;
    }
    let llm = side.llm.as_ref()?;
    let pick = |d: &Percentiles, q: &str| match q {
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

/// After minus Before for every metric.
pub(crate) fn delta_between(before: &SideSummary, after: &SideSummary) -> Delta {
    let count = |v: u64| Some(v as f64);
    let d = MetricDelta::new;
    Delta {
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
    // The report computes every percentile with the Linear method,
    // whatever the caller wrote.
    let mut conditions = options.conditions.clone();
    conditions.quantile_method = Some("linear".to_owned());
    let mut before_summary = before.summary()?;
    let mut after_summary = after.summary()?;
    // Goodput against the objectives given, else the SLA as one.
    let objectives = if options.slos.is_empty() {
        vec![Slo::e2e_quantile(0.95, threshold)]
    } else {
        options.slos.clone()
    };
    before_summary.goodput_rps = crate::slo::goodput_rps(&objectives, &before.log.rows);
    after_summary.goodput_rps = crate::slo::goodput_rps(&objectives, &after.log.rows);
    let quality = assess_quality(&before.log, &after.log, reproduction.map(|r| &r.log));
    let sla = sla_for(&after_summary, threshold);
    let slos: Vec<ObjectiveResult> = options
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
            configured_concurrency: conditions.concurrency.map(|c| c as f64),
        }));
        if let Some(stats) = &run.server_stats {
            diagnosis.extend(crate::diagnosis::server_statistics(side, summary, stats));
        }
    }
    diagnosis.extend(batch_cost);
    diagnosis.extend(batch_cost_from_stats);

    let mut breakdowns: Vec<model::comparison::Breakdown> = Vec::new();
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

    let decision = options
        .whatif
        .as_ref()
        .and_then(|whatif| whatif.decision(options.decision))
        .cloned();
    // The prediction is the engine's, for the client change it proposed.
    let engine = options
        .whatif
        .as_ref()
        .filter(|_| options.decision == DecisionRole::After)
        .filter(|_| {
            decision
                .as_ref()
                .is_some_and(|d| d.kind == CandidateKind::Client)
        })
        .and_then(|whatif| whatif.engine.as_ref());
    let prediction = engine.and_then(|whatif| {
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
        .and_then(|w| w.engine.as_ref())
        .and_then(|e| e.predicted_capacity_rps.best.as_ref());
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
        delta: delta_between(&before_summary, &after_summary),
        before: before_summary,
        after: after_summary,
        quality,
        before_reproduction,
        input_py_stdout,
        diagnosis,
        conditions,
        decision,
        prediction,
        llm_prediction: None,
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
