//! What a reader must see first: warnings about the evidence itself, and a
//! summary of at most three lines before the detailed findings.
//!
//! A Before measured by `input.py` and its Rust reproduction run against
//! identical servers (same profile, same seed, fresh each). When they
//! disagree, the comparison still stands on the Before it names, but the
//! reader is told at the top of both reports and on the console, and when
//! `input.py` is the slower one the diagnosis names its client as where the
//! difference went: the servers' own queue and execution times are in the
//! reproduction's rows, and they do not change with the client.

use model::conditions::Conditions;

use crate::breakdown::Breakdown;
use crate::compare::{Comparison, Reproduction};
use crate::diagnosis::Finding;
use crate::summary::SideSummary;
use crate::table::fmt_opt;

/// `input.py` counts as slower than its reproduction when its P50 or P95
/// exceeds the reproduction's by more than this share (and 1 ms).
const SLOWER_SHARE: f64 = 0.02;

/// Warnings about the evidence, one sentence each.
pub fn warnings(before: &SideSummary, reproduction: Option<&Reproduction>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rep) = reproduction {
        let a = &rep.agreement;
        if !a.within_tolerance {
            out.push(format!(
                "input.py and its Rust reproduction disagree against identical servers: {} measured P50 {} ms / P95 {} ms, the reproduction P50 {} ms / P95 {} ms (ratios {} and {}, outside the {}% tolerance). The comparison uses {}; see the diagnosis for where the difference went.",
                before.label,
                fmt_opt(before.p50_ms, 1),
                fmt_opt(before.p95_ms, 1),
                fmt_opt(rep.summary.p50_ms, 1),
                fmt_opt(rep.summary.p95_ms, 1),
                fmt_opt(a.p50_ratio, 3),
                fmt_opt(a.p95_ratio, 3),
                a.tolerance_pct,
                before.label,
            ));
        }
    }
    out
}

/// The machine's load when a phase started, from `conditions.phases.NAME`,
/// as a clause ("load average 3.10 on 2 CPUs, 12.0% of CPU time stolen").
fn phase_load(conditions: &Conditions, phase: &str) -> Option<String> {
    let p = conditions.phases.get(phase)?;
    let load = p.loadavg_at_start?[0];
    let cpus = p.cpus?;
    let stolen = p
        .cpu_stolen_pct
        .map_or_else(String::new, |s| format!(", {s:.1}% of CPU time stolen"));
    Some(format!("load average {load:.2} on {cpus} CPUs{stolen}"))
}

/// input.py's process at or above this share of one core had no CPU to
/// spare; when it also completed fewer requests per second than its
/// reproduction (under [`PACE_SHARE`] of its rate), its one event loop,
/// not the server, set the run's pace.
const SATURATED_SHARE: f64 = 0.9;
const PACE_SHARE: f64 = 0.97;

/// What input.py's own process cost, from `conditions.phases.before_input_py`
/// (`client_cpu_s`, `client_wall_s`; written by the workflow): a clause for
/// the finding, and its values.
fn python_cpu(
    conditions: &Conditions,
    before: &SideSummary,
    rep: &SideSummary,
    values: &mut std::collections::BTreeMap<String, f64>,
) -> Option<String> {
    let phase = conditions.phases.get("before_input_py")?;
    let cpu_s = phase.client_cpu_s?;
    let wall_s = phase.client_wall_s?;
    if wall_s.is_nan() || wall_s <= 0.0 || before.total == 0 {
        return None;
    }
    let busy = cpu_s / wall_s;
    let per_request_ms = cpu_s * 1000.0 / before.total as f64;
    values.insert("input_py_cpu_s".to_owned(), cpu_s);
    values.insert("input_py_busy_pct".to_owned(), busy * 100.0);
    values.insert("input_py_cpu_per_request_ms".to_owned(), per_request_ms);
    let pace = match (before.throughput_rps, rep.throughput_rps) {
        (Some(py), Some(rs)) if busy >= SATURATED_SHARE && py < PACE_SHARE * rs => format!(
            "; that is a saturated thread: the Python client, not the server, set the pace ({py:.1} req/s against the reproduction's {rs:.1})"
        ),
        _ => String::new(),
    };
    Some(format!(
        " input.py's process used {cpu_s:.1} s of CPU in its {wall_s:.1} s ({:.0}% of one core, {per_request_ms:.1} ms per request){pace}.",
        busy * 100.0
    ))
}

/// When `input.py` is slower than its reproduction against identical
/// servers, the difference is its client's: a finding with the numbers.
pub fn python_client(
    before: &SideSummary,
    reproduction: &Reproduction,
    reproduction_breakdown: Option<&Breakdown>,
    conditions: &Conditions,
) -> Option<Finding> {
    let rep = &reproduction.summary;
    let (py_p50, py_p95) = (before.p50_ms?, before.p95_ms?);
    let (rs_p50, rs_p95) = (rep.p50_ms?, rep.p95_ms?);
    let slower = |py: f64, rs: f64| py - rs > 1.0 && py > rs * (1.0 + SLOWER_SHARE);
    if !(slower(py_p50, rs_p50) || slower(py_p95, rs_p95)) {
        return None;
    }
    let server = reproduction_breakdown.map_or_else(String::new, |b| {
        format!(
            "; the servers' own share is in the reproduction's rows (mean queue {:.1} ms + execution {:.1} ms per request) and does not depend on the client",
            b.mean.queue_ms, b.mean.execution_ms
        )
    });
    let load = match (
        phase_load(conditions, "before_input_py"),
        phase_load(conditions, "before"),
    ) {
        (Some(py), Some(rs)) => {
            format!(" Machine at input.py's start: {py}; at the reproduction's: {rs}.")
        }
        (Some(py), None) => format!(" Machine at input.py's start: {py}."),
        _ => String::new(),
    };
    let mut values = std::collections::BTreeMap::new();
    values.insert("input_py_p50_ms".to_owned(), py_p50);
    values.insert("input_py_p95_ms".to_owned(), py_p95);
    values.insert("reproduction_p50_ms".to_owned(), rs_p50);
    values.insert("reproduction_p95_ms".to_owned(), rs_p95);
    values.insert("python_client_p50_extra_ms".to_owned(), py_p50 - rs_p50);
    values.insert("python_client_p95_extra_ms".to_owned(), py_p95 - rs_p95);
    let cpu = python_cpu(conditions, before, rep, &mut values).unwrap_or_default();
    Some(Finding {
        id: "python_client".to_owned(),
        side: "before".to_owned(),
        finding: format!(
            "{}: against identical servers (same profile and seed, fresh each), input.py's P95 is {py_p95:.1} ms and its Rust reproduction's {rs_p95:.1} ms ({:+.1} ms, {:+.1}%), P50 {py_p50:.1} against {rs_p50:.1} ms ({:+.1} ms): the difference is spent in the Python client (httpx, a new client and connection per request, one event loop){server}.{cpu}{load}",
            before.label,
            py_p95 - rs_p95,
            (py_p95 - rs_p95) / rs_p95 * 100.0,
            py_p50 - rs_p50,
        ),
        values,
    })
}

/// The diagnosis's opening: at most three lines, the Before's cause, the
/// After's result, and what backs it.
pub fn summary_lines(c: &Comparison) -> Vec<String> {
    let mut lines = Vec::new();
    let sla = c.sla.threshold_ms;
    let dominant = |b: &Breakdown| {
        let parts = b.mean.values();
        let total = b.mean.total_ms();
        parts
            .iter()
            .zip(crate::breakdown::Parts::NAMES)
            .max_by(|a, b| a.0.total_cmp(b.0))
            .map(|(v, name)| {
                format!(
                    "{name} is {:.0}% of its mean latency ({v:.1} of {total:.1} ms)",
                    if total > 0.0 { v / total * 100.0 } else { 0.0 }
                )
            })
    };
    let before_parts = c
        .breakdowns
        .iter()
        .find(|b| b.label == c.before.label)
        .or_else(|| {
            c.before_reproduction
                .as_ref()
                .and_then(|r| c.breakdowns.iter().find(|b| b.label == r.summary.label))
        });
    lines.push(format!(
        "Before: P95 {} ms against the SLA's {sla} ms{}.",
        fmt_opt(c.before.p95_ms, 1),
        before_parts
            .and_then(dominant)
            .map_or_else(String::new, |d| format!("; {d}"))
    ));
    let after_parts = c.breakdowns.iter().find(|b| b.label == c.after.label);
    lines.push(format!(
        "After: P95 {} ms ({}){}.",
        fmt_opt(c.after.p95_ms, 1),
        if c.sla.met {
            "meets the SLA"
        } else {
            "does NOT meet the SLA"
        },
        after_parts
            .and_then(dominant)
            .map_or_else(String::new, |d| format!("; {d}"))
    ));
    let mut third = Vec::new();
    if let Some(p) = &c.prediction {
        third.push(format!(
            "predicted {} ms by the what-if engine ({})",
            fmt_opt(p.predicted.p95_ms, 1),
            p.p95_error_pct
                .map_or_else(|| "no error".to_owned(), |e| format!("{e:+.1}% off"))
        ));
    }
    // What the log's rows say was checked: against a user's endpoint the
    // client compares digests instead (it does not know the answers).
    third.push(if c.quality.after_verified > 0 {
        format!(
            "{} of {} After outputs verified, {} mismatches",
            c.quality.after_verified, c.after.total, c.quality.after_mismatches
        )
    } else {
        format!(
            "outputs not verified (digests compared: {}, differing: {})",
            c.quality.digests_compared, c.quality.digest_differences
        )
    });
    if !c.warnings.is_empty() {
        third.push(format!(
            "{} warning{} above",
            c.warnings.len(),
            if c.warnings.len() == 1 { "" } else { "s" }
        ));
    }
    let mut line = third.join("; ");
    if let Some(first) = line.get(..1) {
        line = first.to_uppercase() + &line[1..];
    }
    lines.push(line + ".");
    lines
}
