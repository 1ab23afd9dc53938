//! `comparison.json.prediction`: what the what-if engine predicted for the
//! After it chose, beside what the After measured.
//!
//! The measured P95 gets a seeded bootstrap interval of its own, so a reader
//! sees both the prediction's uncertainty and the measurement's, and the
//! error is stated as a percentage of the measured value.

use serde::{Deserialize, Serialize};
use stats::QuantileMethod;

use crate::summary::SideSummary;
use crate::whatif::{CandidateKind, CandidateRow, WhatifReport};

/// Resamples of the measured P95's interval.
const RESAMPLES: usize = 2000;
/// Its seed: the same log always gives the same interval.
const SEED: u64 = 0x5eed;

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

/// `comparison.json.prediction`.
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

/// Client rows listed beside the server changes.
const RANKED_CLIENT_ROWS: usize = 8;

impl WhatifReport {
    /// The candidate the workflow runs as the After: the chosen one, else
    /// the client-side one with the lowest predicted P95.
    pub fn after(&self) -> Option<&CandidateRow> {
        self.chosen.as_ref().or_else(|| {
            self.candidates
                .iter()
                .find(|c| c.kind == CandidateKind::Client)
        })
    }
}

/// The prediction for the After the engine proposed, beside its measurement
/// (`after_ms`: the After's successful latencies).
pub fn prediction(
    whatif: &WhatifReport,
    after: &SideSummary,
    after_ms: &[f64],
) -> Option<Prediction> {
    let candidate = whatif.after()?;
    let measured_interval = stats::bootstrap_quantile_ci(
        after_ms,
        0.95,
        QuantileMethod::Linear,
        RESAMPLES,
        0.95,
        SEED,
    )
    .ok()
    .map(|ci| [ci.lower, ci.upper]);
    let [lo, hi] = candidate.p95_interval_ms;
    let ranked = whatif
        .candidates
        .iter()
        .filter(|c| c.kind == CandidateKind::Client)
        .take(RANKED_CLIENT_ROWS)
        .chain(
            whatif
                .candidates
                .iter()
                .filter(|c| c.kind != CandidateKind::Client),
        )
        .map(|c| RankedCandidate {
            rank: c.rank,
            label: c.label.clone(),
            kind: c.kind,
            p95_ms: c.p95_ms,
            p95_interval_ms: c.p95_interval_ms,
            meets_sla_with_margin: c.meets_sla_with_margin,
        })
        .collect();
    let fit = &whatif.fit;
    Some(Prediction {
        candidate: candidate.label.clone(),
        loadgen_args: candidate.loadgen_args.clone(),
        chosen: whatif.chosen.is_some(),
        predicted: Quantiles {
            p50_ms: Some(candidate.p50_ms),
            p95_ms: Some(candidate.p95_ms),
            p99_ms: Some(candidate.p99_ms),
            p95_interval_ms: Some(candidate.p95_interval_ms),
        },
        measured: Quantiles {
            p50_ms: after.p50_ms,
            p95_ms: after.p95_ms,
            p99_ms: after.p99_ms,
            p95_interval_ms: measured_interval,
        },
        p95_error_pct: after
            .p95_ms
            .filter(|m| *m > 0.0)
            .map(|m| (candidate.p95_ms - m) / m * 100.0),
        measured_within_interval: after.p95_ms.map(|m| lo <= m && m <= hi),
        conclusion: whatif.conclusion.clone(),
        fit: format!(
            "execution = ({:.2} ms [{:.2}, {:.2}] + {:.3} ms [{:.3}, {:.3}] x batch) x lognormal(sigma {:.3} [{:.3}, {:.3}]), {} executing at once, fitted on {} executions at batch sizes {:?}",
            fit.base_ms.value,
            fit.base_ms.lo,
            fit.base_ms.hi,
            fit.per_item_ms.value,
            fit.per_item_ms.lo,
            fit.per_item_ms.hi,
            fit.sigma.value,
            fit.sigma.lo,
            fit.sigma.hi,
            fit.workers,
            fit.executions,
            fit.batch_sizes
        ),
        ranked,
        predicted_capacity_rps: whatif.predicted_capacity_rps.chosen,
    })
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
