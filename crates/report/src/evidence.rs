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

use model::comparison::{Breakdown, Comparison, Finding, Reproduction, SideSummary};
use model::conditions::Conditions;

use crate::table::fmt_opt;

/// `input.py` counts as slower than its reproduction when its P50 or P95
/// exceeds the reproduction's by more than this share (and 1 ms).
const SLOWER_SHARE: f64 = 0.02;

/// Warnings about the evidence, one sentence each.
pub(crate) fn warnings(before: &SideSummary, reproduction: Option<&Reproduction>) -> Vec<String> {
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
pub(crate) fn python_client(
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
pub(crate) fn summary_lines(c: &Comparison) -> Vec<String> {
    let mut lines = Vec::new();
    let sla = c.sla.threshold_ms;
    let dominant = |b: &Breakdown| {
        let parts = b.mean.values();
        let total = b.mean.total_ms();
        parts
            .iter()
            .zip(model::comparison::Parts::NAMES)
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

/// Evidence first: a Before that disagrees with its reproduction is a
/// warning at the top of the comparison, the slower input.py gets the
/// `python_client` finding with its numbers, and the diagnosis opens with
/// at most three lines.
#[cfg(test)]
mod tests {
    use model::log::read_log;

    use super::*;
    use crate::compare::{compare, CompareOptions, RunLog};

    /// An input.py log: (request_id, timestamp_ms, latency_ms, status, error).
    fn input_py_log(rows: &[(u64, f64, f64, u16, &str)]) -> String {
        let mut s = "request_id,timestamp_ms,latency_ms,status_code,error\n".to_owned();
        for (id, ts, lat, status, err) in rows {
            s.push_str(&format!("{id},{ts},{lat},{status},{err}\n"));
        }
        s
    }

    /// A loadgen log of successful, verified rows with the given latencies
    /// (ids 0..n, 10 ms apart), queue 0, service = latency / 2, batch 1.
    fn loadgen_ok_log(latencies: &[f64]) -> String {
        let mut s = "request_id,timestamp_ms,latency_ms,status_code,error,ok,batch_id,batch_size,connect_ms,queue_ms,service_ms,output_digest,verified\n".to_owned();
        for (i, lat) in latencies.iter().enumerate() {
            s.push_str(&format!(
                "{i},{},{lat},200,,true,{i},1,0,0,{},d{i},true\n",
                1_700_000_000_000.0 + 10.0 * i as f64,
                lat / 2.0
            ));
        }
        s
    }

    fn input_py(latencies: &[f64]) -> RunLog {
        let rows: Vec<(u64, f64, f64, u16, &str)> = latencies
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u64, 1_700_000_000_000.0 + 10.0 * i as f64, l, 200, ""))
            .collect();
        RunLog::new(
            "Before (input.py)",
            read_log(input_py_log(&rows).as_bytes()).unwrap(),
        )
    }

    fn loadgen(label: &str, latencies: &[f64]) -> RunLog {
        RunLog::new(
            label,
            read_log(loadgen_ok_log(latencies).as_bytes()).unwrap(),
        )
    }

    /// 1000, 1001, ..., 1019 ms, then `tail` for the last one.
    fn latencies(tail: f64) -> Vec<f64> {
        let mut v: Vec<f64> = (0..20).map(|i| 1000.0 + f64::from(i)).collect();
        v[19] = tail;
        v
    }

    /// The comparison of `before` and `after`, with `reproduction` beside the
    /// Before, under the default options.
    fn against(before: &RunLog, after: &RunLog, reproduction: &RunLog) -> Comparison {
        compare(
            before,
            after,
            Some(reproduction),
            &CompareOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_slower_input_py_is_a_warning_and_a_python_client_finding() {
        // input.py's tail 1600 ms against the reproduction's 1019 ms: Linear
        // P95 of input.py = 1018 + 0.05 * (1600 - 1018) = 1047.1 ms; of the
        // reproduction 1018.05 ms (2.9% apart, over the finding's 2%); both
        // P50 1009.5 ms.
        let before = input_py(&latencies(1600.0));
        let reproduction = loadgen("Before (Rust reproduction)", &latencies(1019.0));
        let after = loadgen("After", &[100.0; 20]);
        let c = against(&before, &after, &reproduction);
        let finding = c
            .diagnosis
            .iter()
            .find(|f| f.id == "python_client")
            .expect("the python_client finding");
        assert!((finding.values["input_py_p95_ms"] - 1047.1).abs() < 1e-9);
        assert!((finding.values["reproduction_p95_ms"] - 1018.05).abs() < 1e-9);
        assert!((finding.values["python_client_p95_extra_ms"] - 29.05).abs() < 1e-9);
        assert!(
            finding.finding.contains("Python client"),
            "{}",
            finding.finding
        );
        // Within the reproduction's 10% tolerance: no warning.
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // A tail far out: the P95s are 10% or more apart: the warning.
        let before = input_py(&latencies(4000.0));
        let c = against(&before, &after, &reproduction);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("disagree"), "{}", c.warnings[0]);
        let text = crate::table::plain_text(&c);
        assert!(
            text.starts_with("WARNING: input.py and its Rust reproduction disagree"),
            "{text}"
        );
        assert!(crate::markdown::render_markdown(&c).contains("> **WARNING:**"));
    }

    #[test]
    fn the_finding_weighs_input_py_own_cpu() {
        let before = input_py(&latencies(1600.0));
        let reproduction = loadgen("Before (Rust reproduction)", &latencies(1019.0));
        let after = loadgen("After", &[100.0; 20]);
        let finding = |cpu_s: f64| {
            let options = CompareOptions {
                conditions: model::conditions::Conditions::from_json(
                    &serde_json::json!({
                        "phases": {"before_input_py": {"client_cpu_s": cpu_s, "client_wall_s": 2.0}}
                    })
                    .to_string(),
                )
                .unwrap(),
                ..CompareOptions::default()
            };
            compare(&before, &after, Some(&reproduction), &options)
                .unwrap()
                .diagnosis
                .into_iter()
                .find(|f| f.id == "python_client")
                .expect("the python_client finding")
        };
        // 1.9 s of CPU in 2 s over 20 requests: 95% busy, 95 ms each, and
        // fewer requests per second than the reproduction (20 over 1.79 s, from
        // the first start at 0 to the last end at 190 + 1600 ms, against 20 over
        // 1.209 s): saturated, and the pace was Python's.
        let busy = finding(1.9);
        assert!((busy.values["input_py_busy_pct"] - 95.0).abs() < 1e-9);
        assert!((busy.values["input_py_cpu_per_request_ms"] - 95.0).abs() < 1e-9);
        assert!(
            busy.finding
                .contains("1.9 s of CPU in its 2.0 s (95% of one core, 95.0 ms per request)")
                && busy.finding.contains(
                    "not the server, set the pace (11.2 req/s against the reproduction's 16.5)"
                ),
            "{}",
            busy.finding
        );
        // Half a core: the numbers, and no claim about the pace.
        let half = finding(1.0);
        assert!((half.values["input_py_busy_pct"] - 50.0).abs() < 1e-9);
        assert!(
            half.finding
                .contains("(50% of one core, 50.0 ms per request).")
                && !half.finding.contains("set the pace"),
            "{}",
            half.finding
        );
    }

    #[test]
    fn a_difference_under_two_percent_is_no_finding() {
        // P95 1037.1 ms against 1018.05 ms: 1.9% apart.
        let before = input_py(&latencies(1400.0));
        let reproduction = loadgen("Before (Rust reproduction)", &latencies(1019.0));
        let after = loadgen("After", &[100.0; 20]);
        let c = against(&before, &after, &reproduction);
        assert!(!c.diagnosis.iter().any(|f| f.id == "python_client"));
    }

    #[test]
    fn agreeing_runs_have_no_warning_nor_finding_and_three_opening_lines() {
        let before = input_py(&latencies(1019.0));
        let reproduction = loadgen("Before (Rust reproduction)", &latencies(1019.0));
        let after = loadgen("After", &[100.0; 20]);
        let c = against(&before, &after, &reproduction);
        assert!(c.warnings.is_empty());
        assert!(!c.diagnosis.iter().any(|f| f.id == "python_client"));
        assert_eq!(c.summary.len(), 3, "{:?}", c.summary);
        // The fixture's rows: queue 0, execution half the latency.
        assert!(
            c.summary[0].starts_with("Before: P95 1018.0 ms"),
            "{:?}",
            c.summary
        );
        assert!(
            c.summary[1].starts_with("After: P95 100.0 ms (meets the SLA)"),
            "{:?}",
            c.summary
        );
        assert!(
            c.summary[2].contains("20 of 20 After outputs verified"),
            "{:?}",
            c.summary
        );
    }
}
