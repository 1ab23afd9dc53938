//! Judging one step: which rows count (intended start after the warm-up),
//! whether every objective holds on them (`stats::slo`'s evaluation, the
//! one the report makes of a log), and whether the answers kept pace.

use std::collections::BTreeMap;

use model::capacity::StepRecord;
use model::log::LogRow;
use stats::slo::{self, Metric, Series, Slo};
use stats::QuantileMethod;

use super::search::StepPlan;

/// A step keeps pace when its answers came at least this share of the rate
/// its counted requests were sent at.
///
/// Both rates are measured the way the open loop measures its send rate,
/// between the first and the last event: answers `(n - 1) / (last
/// completion - first completion)`, sends `(n - 1) / (last intended start -
/// first intended start)` (the offered rate for constant arrivals, the rate
/// actually drawn for Poisson ones). Their ratio is then `1 / (1 + growth)`
/// with `growth` the latency added over the step per second of it: a queue
/// that grows. Measuring the answers from the first *intended start*
/// instead would charge every step its own latency (`latency / step`), so
/// a server answering steadily in 650 ms would fail `p95<=800` with 20 s
/// steps at any rate.
pub(super) const ACHIEVED_SHARE: f64 = 0.97;

/// A judged step: its record and what the answer's statistics pool.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StepMeasurement {
    /// The curve entry.
    pub record: StepRecord,
    /// Latencies of successful counted requests, ms, ascending.
    pub latencies_ms: Vec<f64>,
    /// Successful counted requests that met every per-request objective.
    pub good: u64,
    /// From the first counted intended start to the last completion, s.
    pub window_s: f64,
}

/// Judges one step's rows: counts those whose intended start is at least
/// `plan.warmup` after the step's first, and checks `slos` on them.
pub(super) fn judge_step(plan: &StepPlan, rows: &[LogRow], slos: &[Slo]) -> StepMeasurement {
    let first_ms = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .reduce(f64::min)
        .unwrap_or(0.0);
    // A microsecond of slack: intended starts are sums of float gaps.
    let counted_from_ms = first_ms + plan.warmup.as_secs_f64() * 1000.0 - 1e-3;
    let counted: Vec<&LogRow> = rows
        .iter()
        .filter(|r| r.timestamp_ms >= counted_from_ms)
        .collect();
    let succeeded = counted.iter().filter(|r| r.ok).count() as u64;
    let failed = counted.len() as u64 - succeeded;
    let total = succeeded + failed;
    let error_rate = if total > 0 {
        failed as f64 / total as f64
    } else {
        0.0
    };
    let requests: Vec<slo::Request<'_>> = counted.iter().map(|r| request(r)).collect();
    let latencies_ms = slo::series_sorted(&requests, Series::E2e);
    let quantile = |q: f64| {
        (!latencies_ms.is_empty())
            .then(|| stats::quantile(&latencies_ms, q, QuantileMethod::Linear).ok())
            .flatten()
    };

    // Answered requests: everything but those never sent or cut off.
    let answered: Vec<&&LogRow> = counted
        .iter()
        .filter(|r| r.error != "dropped" && r.error != "interrupted")
        .collect();
    let completions = answered.iter().map(|r| r.timestamp_ms + r.latency_ms);
    let first_done_ms = completions.clone().reduce(f64::min);
    let last_done_ms = completions.reduce(f64::max);
    let rate_between = |n: usize, from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(a), Some(b)) if n >= 2 && b > a => (n - 1) as f64 / ((b - a) / 1000.0),
        _ => 0.0,
    };
    let achieved_rps = rate_between(answered.len(), first_done_ms, last_done_ms);
    let first_sent_ms = counted.iter().map(|r| r.timestamp_ms).reduce(f64::min);
    let last_sent_ms = counted.iter().map(|r| r.timestamp_ms).reduce(f64::max);
    let sent_rps = rate_between(counted.len(), first_sent_ms, last_sent_ms);
    let window_s = match (first_sent_ms, last_done_ms) {
        (Some(a), Some(b)) if b > a => (b - a) / 1000.0,
        _ => 0.0,
    };
    let good = slo::good_count(&requests, slos);

    let mut misses: Vec<String> = Vec::new();
    if total == 0 {
        misses.push("no counted requests".into());
    }
    for slo in slos {
        // Rates are per second of the step's window, from the first
        // counted intended start to the last completion.
        let measured = slo.measure(&requests, slos, Some(window_s));
        if !slo.holds(measured) {
            misses.push(match measured {
                Some(m) => format!("{slo} not met ({m:.3})"),
                None => format!("{slo} not met (nothing to measure)"),
            });
        }
    }
    let judges_errors = slos.iter().any(|s| s.metric == Metric::ErrorRate);
    if failed > 0 && !judges_errors {
        misses.push(format!(
            "{failed} failed ({}) and no error_rate objective allows any",
            error_kinds(&counted)
        ));
    }
    if total > 0 && achieved_rps < ACHIEVED_SHARE * sent_rps {
        misses.push(format!(
            "answers came at {achieved_rps:.2}/s, below {:.0}% of the {sent_rps:.2}/s sent",
            ACHIEVED_SHARE * 100.0
        ));
    }
    let sustainable = misses.is_empty();
    let reason = if sustainable {
        "every objective met".to_owned()
    } else {
        misses.join("; ")
    };
    StepMeasurement {
        record: StepRecord {
            phase: plan.phase,
            offered_rps: plan.offered_rps,
            achieved_rps,
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            succeeded,
            failed,
            error_rate,
            sustainable,
            reason,
        },
        latencies_ms,
        good,
        window_s,
    }
}

/// `http_503 3, timeout 1`: the commonest failure kinds first, at most three.
fn error_kinds(rows: &[&LogRow]) -> String {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.ok) {
        // `http_<status>` of some APIs carries the server's message after a
        // colon; the kind is what comes before it.
        let kind = row.error.split(':').next().unwrap_or("");
        *kinds
            .entry(if kind.is_empty() { "failed" } else { kind })
            .or_default() += 1;
    }
    let mut kinds: Vec<(&str, u64)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = kinds
        .iter()
        .take(3)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    shown.join(", ")
}

/// What the objectives read of a row (`stats::slo` evaluates them, as
/// `report` does on a log).
fn request(row: &LogRow) -> slo::Request<'_> {
    slo::Request {
        ok: row.ok,
        latency_ms: row.latency_ms,
        tokens: row.llm.as_ref().map(|t| slo::Tokens {
            ttft_ms: t.ttft_ms,
            tpot_ms: t.tpot_ms,
            itl_ms: &t.itl_ms,
        }),
    }
}
