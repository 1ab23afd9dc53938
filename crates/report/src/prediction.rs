//! `comparison.json.prediction`: what the what-if engine predicted for the
//! After it chose, beside what the After measured; and
//! `comparison.json.llm_prediction`, the same for the LLM engine (TTFT,
//! ITL, TPOT and e2e at P50, P95 and P99).
//!
//! The measured P95 gets a seeded bootstrap interval of its own, so a reader
//! sees both the prediction's uncertainty and the measurement's, and the
//! error is stated as a percentage of the measured value. The types are
//! `model::comparison`'s.

use model::comparison::{
    LlmPredictedRow, LlmPrediction, LlmRankedCandidate, Prediction, Quantiles, RankedCandidate,
    SideSummary,
};
use model::summary::Percentiles;
use model::whatif::{CandidateKind, Decision, EngineReport, LlmEngineReport, PredictedSeries};
use stats::QuantileMethod;

/// Resamples of the measured P95's interval.
const RESAMPLES: usize = 2000;
/// Its seed: the same log always gives the same interval.
const SEED: u64 = 0x5eed;

/// Client rows listed beside the server changes.
const RANKED_CLIENT_ROWS: usize = 8;

/// The prediction for the After the engine proposed, beside its measurement
/// (`after_ms`: the After's successful latencies).
pub(crate) fn prediction(
    whatif: &EngineReport,
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

/// The LLM engine's prediction for the After that carried out `decision`
/// (the candidate of the same label), beside what the After measured;
/// `None` when the engine has no such candidate.
pub(crate) fn llm_prediction(
    engine: &LlmEngineReport,
    decision: &Decision,
    after: &SideSummary,
) -> Option<LlmPrediction> {
    let candidate = engine
        .candidates
        .iter()
        .find(|c| c.label == decision.label)?;
    let measured = after.llm.as_ref();
    let mut rows = Vec::new();
    let series: [(&str, &PredictedSeries, Option<&Percentiles>); 4] = [
        ("ttft", &candidate.ttft, measured.map(|m| &m.ttft)),
        ("itl", &candidate.itl, measured.map(|m| &m.itl)),
        ("tpot", &candidate.tpot, measured.map(|m| &m.tpot)),
        ("e2e", &candidate.e2e, measured.map(|m| &m.e2e)),
    ];
    for (name, predicted, measured) in series {
        for (q, value, interval, got) in [
            (
                "p50",
                predicted.p50_ms,
                predicted.p50_interval_ms,
                measured.and_then(|m| m.p50_ms),
            ),
            (
                "p95",
                predicted.p95_ms,
                predicted.p95_interval_ms,
                measured.and_then(|m| m.p95_ms),
            ),
            (
                "p99",
                predicted.p99_ms,
                predicted.p99_interval_ms,
                measured.and_then(|m| m.p99_ms),
            ),
        ] {
            rows.push(LlmPredictedRow {
                metric: format!("{name}_{q}"),
                predicted_ms: value,
                interval_ms: interval,
                measured_ms: got,
                error_pct: got.filter(|m| *m > 0.0).map(|m| (value - m) / m * 100.0),
                within_interval: got.map(|m| interval[0] <= m && m <= interval[1]),
            });
        }
    }
    let f = &engine.fit;
    Some(LlmPrediction {
        candidate: candidate.label.clone(),
        kind: candidate.kind,
        chosen: engine.chosen.as_ref().is_some_and(|c| c.label == candidate.label),
        rows,
        conclusion: engine.conclusion.clone(),
        fit: format!(
            "step = {}, x lognormal(sigma {:.3}); client {} ms; {} slots ({}); fitted on {} steps and {} first tokens",
            crate::whatif::llm::step_terms(f),
            f.sigma.value,
            crate::whatif::llm::est(&f.client_overhead_ms, 2),
            f.server.max_num_seqs,
            f.slots_from,
            f.steps,
            f.first_token_steps,
        ) + &f
            .caveats
            .iter()
            .map(|c| format!("; caveat: {c}"))
            .collect::<String>(),
        ranked: engine
            .candidates
            .iter()
            .map(|c| LlmRankedCandidate {
                rank: c.rank,
                label: c.label.clone(),
                kind: c.kind,
                ttft_p95_ms: c.ttft.p95_ms,
                itl_p99_ms: c.itl.p99_ms,
                e2e_p95_ms: c.e2e.p95_ms,
                meets_objectives_with_margin: c.meets_objectives_with_margin,
                runnable: c.runnable,
            })
            .collect(),
    })
}
