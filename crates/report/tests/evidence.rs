//! Evidence first: a Before that disagrees with its reproduction is a
//! warning at the top of the comparison, the slower input.py gets the
//! `python_client` finding with its numbers, and the diagnosis opens with
//! at most three lines.

mod common;

use model::log::read_log;
use report::{compare, CompareOptions, RunLog};

fn input_py(latencies: &[f64]) -> RunLog {
    let rows: Vec<(u64, f64, f64, u16, &str)> = latencies
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u64, 1_700_000_000_000.0 + 10.0 * i as f64, l, 200, ""))
        .collect();
    RunLog::new(
        "Before (input.py)",
        read_log(common::input_py_log(&rows).as_bytes()).unwrap(),
    )
}

fn loadgen(label: &str, latencies: &[f64]) -> RunLog {
    RunLog::new(
        label,
        read_log(common::loadgen_ok_log(latencies).as_bytes()).unwrap(),
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
fn against(before: &RunLog, after: &RunLog, reproduction: &RunLog) -> report::Comparison {
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
    let text = report::table::plain_text(&c);
    assert!(
        text.starts_with("WARNING: input.py and its Rust reproduction disagree"),
        "{text}"
    );
    assert!(report::markdown::render_markdown(&c).contains("> **WARNING:**"));
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
