//! `--junit FILE` of `report compare` and `report repeats`, read the way a
//! CI reads it: by junitparser (a JUnit reader written apart from this
//! project) after validation against the JUnit XSD that Jenkins documents
//! (`tests/data/junit-10.xsd`), both in `<repo>/.venv-tools`
//! (`xtask/tools/setup.sh`; skipped without it, failing under CI). The
//! counts and each case's outcome are checked against the verdict that
//! `comparison.json` states; the files written beside are validated
//! against their published schemas (`docs/schemas/`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_report"))
        .args(args)
        .output()
        .unwrap()
}

/// A loadgen log: `latencies` succeed, then `failed` rows answered 503.
fn log_with_failures(latencies: &[f64], failed: usize) -> String {
    let mut log = common::loadgen_ok_log(latencies);
    for k in 0..failed {
        let id = latencies.len() + k;
        log.push_str(&format!(
            "{id},{},5.0,503,http_503,false,{id},1,0,0,,,false\n",
            1_700_000_000_000.0 + 10.0 * id as f64
        ));
    }
    log
}

/// `report compare --junit`, with the objectives given; returns the
/// exit code and the output directory's `comparison.json`.
fn compare(dir: &Path, before: &str, after: &str, after_label: &str) -> (Option<i32>, Value) {
    let before = common::write(dir, "before.csv", before);
    let after = common::write(dir, "after.csv", after);
    let out_dir = dir.join("out");
    let junit = dir.join("ci/junit.xml");
    let out = report(&[
        "compare".as_ref(),
        "--before".as_ref(),
        before.as_os_str(),
        "--after".as_ref(),
        after.as_os_str(),
        "--after-label".as_ref(),
        after_label.as_ref(),
        "--sla".as_ref(),
        "p99<=1000".as_ref(),
        "--sla".as_ref(),
        "error_rate<=0.01".as_ref(),
        "--out-dir".as_ref(),
        out_dir.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(out_dir.join("comparison.json")).unwrap();
    (out.status.code(), serde_json::from_str(&text).unwrap())
}

/// Each case read by junitparser is the check `comparison.json` lists at
/// its place: same name, failed exactly when the check did not pass.
fn assert_cases_follow_the_verdict(suite: &Value, comparison: &Value) {
    let checks = comparison["verdict"]["checks"].as_array().unwrap();
    let cases = suite["cases"].as_array().unwrap();
    assert_eq!(cases.len(), checks.len(), "{suite:#}");
    let mut slos = comparison["slos"].as_array().unwrap().iter();
    for (case, check) in cases.iter().zip(checks) {
        let name = match check["id"].as_str().unwrap() {
            "slo" => format!(
                "slo {}",
                slos.next().unwrap()["expression"].as_str().unwrap()
            ),
            id => id.to_owned(),
        };
        assert_eq!(case["name"], name.as_str());
        let passed = check["passed"].as_bool().unwrap();
        let expected = if passed { "passed" } else { "failure" };
        assert_eq!(case["result"], expected, "{case:#}");
        let said = if passed {
            case["system_out"].as_str().unwrap().to_owned()
        } else {
            let message = case["message"].as_str().unwrap();
            let text = case["text"].as_str().unwrap();
            assert!(text.starts_with(message), "{case:#}");
            text.to_owned()
        };
        // What was measured against what, and the verdict's own sentence.
        assert!(
            said.contains("measured ") && said.contains(", threshold "),
            "{said}"
        );
        assert!(said.contains(check["detail"].as_str().unwrap()), "{said}");
    }
}

/// The number after `measured ` in a case's message.
fn measured(case: &Value) -> f64 {
    let text = case["message"]
        .as_str()
        .or(case["system_out"].as_str())
        .unwrap();
    let after = text.split("measured ").nth(1).unwrap();
    after.split([' ', ',']).next().unwrap().parse().unwrap()
}

/// The suite's `before_log` and `after_log`, taken from `junit_dir` (the
/// JUnit file's directory), are the logs `comparison.json` names.
fn assert_logs_lead_to_files(suite: &Value, junit_dir: &Path) {
    for key in ["before_log", "after_log"] {
        let log = suite["properties"][key].as_str().unwrap();
        assert!(Path::new(log).is_relative(), "{key}: {log}");
        let path = junit_dir.join(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(common::LOADGEN_HEADER),
            "{}",
            path.display()
        );
    }
}

fn case<'a>(suite: &'a Value, name: &str) -> &'a Value {
    suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}: {suite:#}"))
}

fn fast() -> Vec<f64> {
    (0..20).map(|i| 90.0 + f64::from(i)).collect()
}

fn slow() -> Vec<f64> {
    (0..20).map(|i| 900.0 + 20.0 * f64::from(i)).collect()
}

#[test]
fn a_met_verdict_is_one_suite_whose_every_check_passed() {
    let dir = common::temp_dir("junit-met");
    let (code, comparison) = compare(
        &dir,
        &common::loadgen_ok_log(&slow()),
        &common::loadgen_ok_log(&fast()),
        "After",
    );
    assert_eq!(code, Some(0));
    let Some(read) = common::check_junit(&dir.join("ci/junit.xml")) else {
        return;
    };
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    // sla_p95, failed_budget, output_mismatches, identical_inputs,
    // output_digests and the two objectives.
    let counts = serde_json::json!({"tests": 7, "failures": 0, "errors": 0});
    assert_eq!(read["stated"], counts);
    assert_eq!(read["counted"]["tests"], 7);
    assert_eq!(read["counted"]["failures"], 0);
    let suites = read["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 1);
    let suite = &suites[0];
    assert_eq!(suite["name"], "Before vs After");
    assert_eq!(suite["properties"]["verdict"], "met");
    // The logs, named from the JUnit file's directory (`ci/`).
    assert_eq!(suite["properties"]["before_log"], "../before.csv");
    assert_logs_lead_to_files(suite, &dir.join("ci"));
    assert_cases_follow_the_verdict(suite, &comparison);
    let p95 = case(suite, "sla_p95");
    assert!(
        p95["system_out"]
            .as_str()
            .unwrap()
            .contains(", threshold <= 800 ms (passed)"),
        "{p95:#}"
    );
    let after_p95 = comparison["after"]["p95_ms"].as_f64().unwrap();
    assert!((measured(p95) - after_p95).abs() < 5e-4, "{p95:#}");

    let out = dir.join("out");
    assert!(common::validate_against_schema(
        "comparison.schema.json",
        &[&out.join("comparison.json")]
    ));
    common::validate_against_schema(
        "comparison-csv-row.schema.json",
        &[&out.join("comparison.csv")],
    );
    common::validate_against_schema(
        "log-row.schema.json",
        &[&dir.join("before.csv"), &dir.join("after.csv")],
    );
}

#[test]
fn each_failed_check_is_a_failure_saying_what_was_measured_against_what() {
    let dir = common::temp_dir("junit-not-met");
    let (code, comparison) = compare(
        &dir,
        &log_with_failures(&slow(), 1),
        &log_with_failures(&slow(), 1),
        "After",
    );
    assert_eq!(code, Some(1));
    let Some(read) = common::check_junit(&dir.join("ci/junit.xml")) else {
        return;
    };
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    let failed = comparison["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .count();
    // The P95, the failure budget and both objectives.
    assert_eq!(failed, 4);
    assert_eq!(
        read["stated"],
        serde_json::json!({"tests": 7, "failures": 4, "errors": 0})
    );
    assert_eq!(read["counted"]["failures"], 4);
    let suite = &read["suites"][0];
    assert_eq!(suite["tests"], 7);
    assert_eq!(suite["failures"], 4);
    assert_eq!(suite["properties"]["verdict"], "not met");
    assert_cases_follow_the_verdict(suite, &comparison);

    let p95 = case(suite, "sla_p95");
    let message = p95["message"].as_str().unwrap();
    assert!(
        message.starts_with("the After's P95 latency: measured "),
        "{message}"
    );
    assert!(
        message.ends_with(" ms, threshold <= 800 ms (FAILED)"),
        "{message}"
    );
    let after_p95 = comparison["after"]["p95_ms"].as_f64().unwrap();
    assert!((measured(p95) - after_p95).abs() < 5e-4, "{message}");

    let budget = case(suite, "failed_budget");
    assert_eq!(
        budget["message"],
        "the After's failed requests: measured 1 requests, threshold <= 0 requests (FAILED)"
    );
    let error_rate = case(suite, "slo error_rate<=0.01");
    assert_eq!(error_rate["result"], "failure");
    // One failed of 21 rows.
    assert!((measured(error_rate) - 1.0 / 21.0).abs() < 5e-4);
    assert!(
        error_rate["message"]
            .as_str()
            .unwrap()
            .contains(", threshold <= 0.01 (FAILED)"),
        "{error_rate:#}"
    );
    let p99 = case(suite, "slo p99<=1000");
    assert!(
        p99["message"]
            .as_str()
            .unwrap()
            .contains(" ms, threshold <= 1000 ms (FAILED)"),
        "{p99:#}"
    );
    // The checks that held are passed cases with their numbers.
    let mismatches = case(suite, "output_mismatches");
    assert_eq!(mismatches["result"], "passed");
    assert!(mismatches["system_out"]
        .as_str()
        .unwrap()
        .contains("measured 0 requests, threshold <= 0 requests (passed)"));

    common::validate_against_schema(
        "comparison.schema.json",
        &[&dir.join("out/comparison.json")],
    );
}

#[test]
fn a_label_with_markup_and_control_characters_still_gives_valid_xml() {
    let dir = common::temp_dir("junit-label");
    let label = "A <b> & \"c\" 'd'\u{1}";
    compare(
        &dir,
        &common::loadgen_ok_log(&slow()),
        &common::loadgen_ok_log(&fast()),
        label,
    );
    let Some(read) = common::check_junit(&dir.join("ci/junit.xml")) else {
        return;
    };
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    assert_eq!(
        read["suites"][0]["name"],
        "Before vs A <b> & \"c\" 'd'\u{FFFD}"
    );
    assert_eq!(
        read["suites"][0]["properties"]["after"],
        "A <b> & \"c\" 'd'\u{FFFD}"
    );
}

#[test]
fn a_junit_path_that_is_a_directory_is_refused_before_any_report() {
    let dir = common::temp_dir("junit-dir");
    let before = common::write(&dir, "b.csv", &common::loadgen_ok_log(&fast()));
    let out_dir = dir.join("out");
    let out = report(&[
        "compare".as_ref(),
        "--before".as_ref(),
        before.as_os_str(),
        "--after".as_ref(),
        before.as_os_str(),
        "--out-dir".as_ref(),
        out_dir.as_os_str(),
        "--junit".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a directory; give a file path such as results/junit.xml"),
        "{stderr}"
    );
    assert!(!out_dir.exists());
}

/// One pair's directory with its reports (`report compare`, P95 SLA 800).
fn pair(root: &Path, name: &str, seed: u64, after: &[f64]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let before = common::write(&dir, "before.csv", &common::loadgen_ok_log(&slow()));
    let after = common::write(&dir, "after.csv", &common::loadgen_ok_log(after));
    let conditions = common::write(
        &dir,
        "conditions.json",
        &format!(r#"{{"server_seed": {seed}}}"#),
    );
    let out = report(&[
        "compare".as_ref(),
        "--before".as_ref(),
        before.as_os_str(),
        "--after".as_ref(),
        after.as_os_str(),
        "--conditions".as_ref(),
        conditions.as_os_str(),
        "--out-dir".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    dir
}

#[test]
fn repeats_write_one_suite_per_pair_and_one_for_the_proof() {
    let root = common::temp_dir("junit-repeats");
    let pairs = [
        pair(&root, "p1", 42, &fast()),
        pair(&root, "p2", 43, &slow()),
    ];
    let junit = root.join("junit.xml");
    let out_dir = root.join("proof");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "repeats".as_ref(),
        "--out-dir".as_ref(),
        out_dir.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
    ];
    args.extend(pairs.iter().map(|p| p.as_os_str()));
    let out = report(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(read) = common::check_junit(&junit) else {
        return;
    };
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    let suites = read["suites"].as_array().unwrap();
    let names: Vec<&str> = suites.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pair 1 (seed 42): Before vs After",
            "pair 2 (seed 43): Before vs After",
            "interleaved proof"
        ]
    );
    for (suite, dir) in suites.iter().zip(&pairs) {
        let text = std::fs::read_to_string(dir.join("comparison.json")).unwrap();
        assert_cases_follow_the_verdict(suite, &serde_json::from_str(&text).unwrap());
        assert_logs_lead_to_files(suite, &root);
    }
    // Each pair's logs, named from the JUnit file's directory, not the
    // pair's (where its comparison.json names them).
    assert_eq!(suites[1]["properties"]["after_log"], "p2/after.csv");
    // Pair 2 misses only the P95 SLA; the proof fails with it.
    assert_eq!(suites[1]["failures"], 1);
    assert_eq!(case(&suites[1], "sla_p95")["classname"], "pair_2.verdict");
    let proof = case(&suites[2], "every_pair_met");
    assert_eq!(
        proof["message"],
        "pairs whose verdict was not met: measured 1 pairs, threshold <= 0 pairs (FAILED)"
    );
    assert_eq!(
        read["stated"],
        serde_json::json!({"tests": 11, "failures": 2, "errors": 0})
    );
    assert_eq!(read["counted"]["failures"], 2);

    common::validate_against_schema("repeats.schema.json", &[&out_dir.join("repeats.json")]);
}
