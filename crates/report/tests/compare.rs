//! Library-level tests of the comparison: hand-computed percentiles, the SLA
//! boundary, failure and quality gates, empty logs, reproduction agreement.

mod common;

use model::log::read_log;
use report::{compare, CompareOptions, RunLog};

fn run(label: &str, csv: &str) -> RunLog {
    RunLog::new(label, read_log(csv.as_bytes()).unwrap())
}

fn options(sla: f64) -> CompareOptions {
    CompareOptions {
        sla_p95_ms: sla,
        ..CompareOptions::default()
    }
}

/// After latencies 40, 80, ..., 840 (21 rows). Linear: h = (21 - 1) * 0.95 = 19
/// exactly, so P95 = x[19] = 40 * 20 = 800 ms. P50: h = 10 -> x[10] = 440.
/// P99: h = 19.8 -> 800 + 0.8 * 40 = 832.
fn after_at_800() -> RunLog {
    let latencies: Vec<f64> = (1..=21).map(|i| 40.0 * i as f64).collect();
    run("After", &common::loadgen_ok_log(&latencies))
}

fn before_slow() -> RunLog {
    let latencies: Vec<f64> = (1..=21).map(|i| 100.0 * i as f64).collect();
    run("Before", &common::loadgen_ok_log(&latencies))
}

#[test]
fn p95_exactly_at_the_threshold_meets_the_sla() {
    let c = compare(&before_slow(), &after_at_800(), None, &options(800.0)).unwrap();
    assert!((c.after.p50_ms.unwrap() - 440.0).abs() < 1e-9);
    assert_eq!(c.after.p95_ms, Some(800.0));
    assert!((c.after.p99_ms.unwrap() - 832.0).abs() < 1e-9);
    assert!(c.sla.met, "P95 == threshold must meet a <= SLA");
    assert!(c.verdict.met, "{:?}", c.verdict.reasons);
    // Just below the measured P95, the same data fails.
    let c = compare(&before_slow(), &after_at_800(), None, &options(799.99)).unwrap();
    assert!(!c.sla.met && !c.verdict.met);
    assert!(
        c.verdict.reasons[0].contains("800.0 ms > SLA 799.99 ms"),
        "{:?}",
        c.verdict.reasons
    );
}

#[test]
fn failed_rows_are_counted_and_excluded_from_percentiles() {
    // Successful: 100, 200, 300, 400 -> Linear P50: h = 1.5 -> 250; P95: h = 2.85 -> 385;
    // P99: h = 2.97 -> 397. The 503 and the timeout (status 0) are failures.
    let before = common::input_py_log(&[
        (0, 0.0, 100.0, 200, ""),
        (1, 1.0, 200.0, 200, ""),
        (2, 2.0, 9000.0, 503, ""),
        (3, 3.0, 300.0, 200, ""),
        (4, 4.0, 30000.0, 0, "ReadTimeout"),
        (5, 5.0, 400.0, 200, ""),
    ]);
    let after = common::input_py_log(&[
        (0, 0.0, 10.0, 200, ""),
        (1, 1.0, 20.0, 200, ""),
        (2, 2.0, 30.0, 200, ""),
        (3, 3.0, 40.0, 200, ""),
        (4, 4.0, 50.0, 500, ""),
        (5, 5.0, 60.0, 200, ""),
    ]);
    let c = compare(&run("B", &before), &run("A", &after), None, &options(800.0)).unwrap();
    assert_eq!(
        (c.before.total, c.before.succeeded, c.before.failed),
        (6, 4, 2)
    );
    assert!((c.before.p50_ms.unwrap() - 250.0).abs() < 1e-9);
    assert!((c.before.p95_ms.unwrap() - 385.0).abs() < 1e-9);
    assert!((c.before.p99_ms.unwrap() - 397.0).abs() < 1e-9);
    assert_eq!(c.before.max_ms, Some(400.0));
    // Duration: last end 4 + 30000 ms, first start 0 -> 30.004 s.
    assert!((c.before.duration_s.unwrap() - 30.004).abs() < 1e-9);
    // After: one failure with the default budget of 0 fails the verdict, SLA met.
    assert_eq!(c.after.failed, 1);
    assert!(c.sla.met);
    assert!(!c.verdict.met);
    assert!(c
        .verdict
        .reasons
        .iter()
        .any(|r| r.contains("failed requests: 1 of 6 (0 allowed)")));
    let relaxed = CompareOptions {
        max_failed: 1,
        ..options(800.0)
    };
    let c = compare(&run("B", &before), &run("A", &after), None, &relaxed).unwrap();
    assert!(c.verdict.met, "{:?}", c.verdict.reasons);
    assert_eq!(c.delta.failed.diff, Some(-1.0));
    assert_eq!(c.delta.failed.pct, Some(-50.0));
}

#[test]
fn output_mismatch_fails_the_verdict_even_when_p95_is_fine() {
    let mut after = common::loadgen_ok_log(&[10.0, 20.0, 30.0]);
    after.push_str("3,1700000000030,25,200,output_mismatch,false,3,1,0,0,12,,false\n");
    let before = common::loadgen_ok_log(&[100.0, 200.0, 300.0, 400.0]);
    let c = compare(&run("B", &before), &run("A", &after), None, &options(800.0)).unwrap();
    assert!(c.sla.met);
    assert_eq!(c.quality.mismatches, 1);
    assert_eq!(c.quality.after_mismatches, 1);
    assert!(!c.quality.verified);
    assert!(!c.verdict.met);
    let failed: Vec<&str> = c
        .verdict
        .checks
        .iter()
        .filter(|k| !k.passed)
        .map(|k| k.id.as_str())
        .collect();
    // The mismatch is also a failed row, so both gates trip.
    assert_eq!(failed, ["failed_budget", "output_mismatches"]);
}

#[test]
fn an_after_that_only_digested_outputs_is_not_verified() {
    // The log's `verified` column is the record: what the conditions or
    // the summary claim does not count.
    let before = common::loadgen_ok_log(&[100.0, 200.0]);
    let quality = |after: &str| {
        compare(&run("B", &before), &run("A", after), None, &options(800.0))
            .unwrap()
            .quality
    };
    let verified = quality(&common::loadgen_log(&[10.0, 20.0], true));
    assert!(verified.verified);
    assert_eq!(verified.after_verified, 2);
    let digested = quality(&common::loadgen_log(&[10.0, 20.0], false));
    assert!(!digested.verified);
    assert_eq!(digested.after_verified, 0);
    // A log written before the column existed verified nothing it can show.
    let old = common::loadgen_ok_log(&[10.0, 20.0])
        .replace(",verified\n", "\n")
        .replace(",true\n", "\n");
    assert!(!quality(&old).verified);
    // One unverified row among verified ones: not every output was checked.
    let mut mixed = common::loadgen_log(&[10.0, 20.0], true);
    mixed.push_str("2,1700000000020,30,200,,true,2,1,0,0,15,d2,false\n");
    let mixed = quality(&mixed);
    assert!(!mixed.verified);
    assert_eq!(mixed.after_verified, 2);
}

#[test]
fn different_request_ids_are_not_identical_inputs() {
    let before = common::input_py_log(&[(0, 0.0, 100.0, 200, ""), (1, 1.0, 100.0, 200, "")]);
    let after = common::input_py_log(&[(0, 0.0, 10.0, 200, ""), (7, 1.0, 10.0, 200, "")]);
    let c = compare(&run("B", &before), &run("A", &after), None, &options(800.0)).unwrap();
    assert!(!c.quality.identical_inputs);
    assert_eq!(
        (c.quality.missing_in_after, c.quality.extra_in_after),
        (1, 1)
    );
    assert!(!c.verdict.met);
    // Same ids, but the After ran one of them twice: not the same load either.
    let after = common::input_py_log(&[
        (0, 0.0, 10.0, 200, ""),
        (1, 1.0, 10.0, 200, ""),
        (1, 2.0, 10.0, 200, ""),
    ]);
    let c = compare(&run("B", &before), &run("A", &after), None, &options(800.0)).unwrap();
    assert!(!c.quality.identical_inputs);
}

#[test]
fn differing_output_digests_fail_the_verdict() {
    let before = common::loadgen_ok_log(&[100.0, 200.0]);
    let after = common::loadgen_ok_log(&[10.0, 20.0]).replace(",d1,", ",zz,");
    let c = compare(&run("B", &before), &run("A", &after), None, &options(800.0)).unwrap();
    assert_eq!(
        (c.quality.digests_compared, c.quality.digest_differences),
        (2, 1)
    );
    assert!(!c.verdict.met);
}

#[test]
fn digests_are_compared_with_the_reproduction_when_input_py_logs_none() {
    let before = common::input_py_log(&[(0, 0.0, 900.0, 200, ""), (1, 1.0, 950.0, 200, "")]);
    let reproduction = common::loadgen_ok_log(&[900.0, 950.0]);
    let after = common::loadgen_ok_log(&[10.0, 20.0]);
    let c = compare(
        &run("B", &before),
        &run("A", &after),
        Some(&run("R", &reproduction)),
        &options(800.0),
    )
    .unwrap();
    assert_eq!(c.quality.digest_reference, "before_reproduction");
    assert_eq!(
        (c.quality.digests_compared, c.quality.digest_differences),
        (2, 0)
    );
    assert!(c.verdict.met, "{:?}", c.verdict.reasons);

    let corrupted = after.replace(",d1,", ",zz,");
    let c = compare(
        &run("B", &before),
        &run("A", &corrupted),
        Some(&run("R", &reproduction)),
        &options(800.0),
    )
    .unwrap();
    assert_eq!(c.quality.digest_differences, 1);
    assert!(!c.verdict.met);
}

#[test]
fn an_empty_after_log_gives_nulls_and_a_clear_verdict() {
    let before = common::loadgen_ok_log(&[100.0, 200.0]);
    let c = compare(
        &run("B", &before),
        &run("A", common::LOADGEN_HEADER),
        None,
        &options(800.0),
    )
    .unwrap();
    assert_eq!(c.after.total, 0);
    assert_eq!(
        (c.after.p95_ms, c.after.throughput_rps, c.after.duration_s),
        (None, None, None)
    );
    assert!(!c.sla.met && !c.verdict.met);
    assert!(
        c.verdict
            .reasons
            .iter()
            .any(|r| r.contains("no successful request")),
        "{:?}",
        c.verdict.reasons
    );
    let json = serde_json::to_value(&c).unwrap();
    assert!(json["after"]["p95_ms"].is_null());
    assert!(json["delta"]["p95_ms"]["diff"].is_null());
    // Both empty: still no panic.
    let c = compare(
        &run("B", common::INPUT_PY_HEADER),
        &run("A", common::INPUT_PY_HEADER),
        None,
        &options(800.0),
    )
    .unwrap();
    assert!(!c.verdict.met);
}

#[test]
fn reproduction_agreement_uses_ratios_and_a_ten_percent_tolerance() {
    // Before (input.py) latencies 100..=2100; reproduction 5% slower on every row:
    // every Linear percentile scales by exactly 1.05.
    let before_lat: Vec<f64> = (1..=21).map(|i| 100.0 * i as f64).collect();
    let rows: Vec<(u64, f64, f64, u16, &str)> = before_lat
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64, i as f64, *l, 200, ""))
        .collect();
    let before = run("Before", &common::input_py_log(&rows));
    let near: Vec<f64> = before_lat.iter().map(|l| l * 1.05).collect();
    let c = compare(
        &before,
        &after_at_800(),
        Some(&run("Repro", &common::loadgen_ok_log(&near))),
        &options(800.0),
    )
    .unwrap();
    let rep = c.before_reproduction.as_ref().unwrap();
    assert!((rep.agreement.p95_ratio.unwrap() - 1.05).abs() < 1e-9);
    assert!(rep.agreement.within_tolerance);
    assert_eq!(rep.agreement.tolerance_pct, 10.0);
    let far: Vec<f64> = before_lat.iter().map(|l| l * 1.2).collect();
    let c = compare(
        &before,
        &after_at_800(),
        Some(&run("Repro", &common::loadgen_ok_log(&far))),
        &options(800.0),
    )
    .unwrap();
    assert!(!c.before_reproduction.unwrap().agreement.within_tolerance);
    // Findings are labelled per side, the reproduction included.
    assert!(c.diagnosis.iter().any(|f| f.side == "before_reproduction"));
}

#[test]
fn conditions_must_be_an_object_and_gain_the_quantile_method() {
    let mut opts = options(800.0);
    opts.conditions = model::conditions::Conditions::from_json(
        r#"{"server_profile": "placeholder", "concurrency": 20}"#,
    )
    .unwrap();
    let c = compare(&before_slow(), &after_at_800(), None, &opts).unwrap();
    assert_eq!(c.conditions.quantile_method.as_deref(), Some("linear"));
    assert_eq!(c.conditions.concurrency, Some(20));
    let little = c.diagnosis.iter().find(|f| f.id == "littles_law").unwrap();
    assert_eq!(little.values["configured_concurrency"], 20.0);
    // Conditions are an object: anything else is refused when read.
    assert!(model::conditions::Conditions::from_json("[1, 2]").is_err());
    assert!(compare(&before_slow(), &after_at_800(), None, &options(f64::NAN)).is_err());
    assert!(compare(&before_slow(), &after_at_800(), None, &options(0.0)).is_err());
}
