//! `comparison.json.prediction`: what the what-if engine predicted for the
//! After it chose, beside what the After measured.
//!
//! The measured P95 gets a seeded bootstrap interval of its own, so a reader
//! sees both the prediction's uncertainty and the measurement's, and the
//! error is stated as a percentage of the measured value. The types are
//! `model::comparison`'s.

use model::comparison::{Prediction, Quantiles, RankedCandidate, SideSummary};
use model::whatif::{CandidateKind, EngineReport};
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
