//! End-to-end tests of the `report` binary: exit codes, files written, the
//! JSON re-derived independently from the log CSVs, and HTML escaping.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_report"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Before (input.py format) with a failure and an After (loadgen format).
fn fixture(dir: &Path, after_latencies: &[f64]) -> (String, String) {
    let mut rows = Vec::new();
    for i in 0..40u64 {
        // Deterministic but unordered latencies: 900 .. 1290 ms, row 13 failed.
        let lat = 900.0 + ((i * 37) % 40) as f64 * 10.0 + 0.125;
        let (status, err) = if i == 13 {
            (0, "ReadTimeout")
        } else {
            (200, "")
        };
        rows.push((i, 1_700_000_000_000.0 + 50.0 * i as f64, lat, status, err));
    }
    let before = common::write(dir, "before.csv", &common::input_py_log(&rows));
    let after = common::write(dir, "after.csv", &common::loadgen_ok_log(after_latencies));
    (before.display().to_string(), after.display().to_string())
}

fn fast_after() -> Vec<f64> {
    (0..40)
        .map(|i| 100.0 + ((i * 7) % 40) as f64 * 3.5)
        .collect()
}

/// numpy's default percentile, written independently of the crate.
fn numpy_linear(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Re-derives a side's numbers from its CSV with the csv crate directly.
fn check_side_against_csv(side: &Value, path: &str) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (ts_i, lat_i, st_i, err_i, ok_i) = (
        col("timestamp_ms").unwrap(),
        col("latency_ms").unwrap(),
        col("status_code").unwrap(),
        col("error").unwrap(),
        col("ok"),
    );
    let (mut ok, mut total, mut start, mut end) = (Vec::new(), 0u64, f64::MAX, f64::MIN);
    for rec in reader.records() {
        let rec = rec.unwrap();
        let ts: f64 = rec[ts_i].parse().unwrap();
        let lat: f64 = rec[lat_i].parse().unwrap();
        let status: u16 = rec[st_i].parse().unwrap();
        let success = match ok_i {
            Some(i) => &rec[i] == "true",
            None => (200..300).contains(&status) && rec[err_i].is_empty(),
        };
        total += 1;
        start = start.min(ts);
        end = end.max(ts + lat);
        if success {
            ok.push(lat);
        }
    }
    ok.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let close = |key: &str, want: f64| {
        let got = side[key].as_f64().unwrap_or(f64::NAN);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{key}: json {got}, recomputed {want}"
        );
    };
    assert_eq!(side["total"].as_u64(), Some(total));
    assert_eq!(side["succeeded"].as_u64(), Some(ok.len() as u64));
    assert_eq!(side["failed"].as_u64(), Some(total - ok.len() as u64));
    close("p50_ms", numpy_linear(&ok, 0.50));
    close("p95_ms", numpy_linear(&ok, 0.95));
    close("p99_ms", numpy_linear(&ok, 0.99));
    close("mean_ms", ok.iter().sum::<f64>() / ok.len() as f64);
    close("min_ms", ok[0]);
    close("max_ms", ok[ok.len() - 1]);
    let duration = (end - start) / 1000.0;
    close("duration_s", duration);
    close("throughput_rps", ok.len() as f64 / duration);
}

#[test]
fn met_verdict_exits_0_and_the_json_rederives_from_the_csvs() {
    let dir = common::temp_dir("met");
    let (before, after) = fixture(&dir, &fast_after());
    let out_dir = dir.join("out");
    let conditions = common::write(
        &dir,
        "conditions.json",
        r#"{"profile":"placeholder","concurrency":20}"#,
    );
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--conditions",
        conditions.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("P95 latency (ms)") && stdout.contains("SLA P95 <= 800 ms is MET"),
        "{stdout}"
    );

    let json: Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["sla"]["metric"], "p95_ms");
    assert_eq!(json["sla"]["threshold_ms"], 800.0);
    assert_eq!(json["verdict"]["met"], true);
    assert_eq!(json["before"]["source"], "input.py");
    assert_eq!(json["after"]["source"], "loadgen");
    assert_eq!(json["conditions"]["quantile_method"], "linear");
    check_side_against_csv(&json["before"], &before);
    check_side_against_csv(&json["after"], &after);
    // Every diagnosis entry has an id, a sentence and numbers as fields.
    for f in json["diagnosis"].as_array().unwrap() {
        assert!(
            f["id"].is_string()
                && f["finding"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .any(|c| c.is_ascii_digit())
        );
    }

    // comparison.csv agrees with comparison.json, row by row.
    let csv_text = fs::read_to_string(out_dir.join("comparison.csv")).unwrap();
    let mut lines = csv_text.lines();
    assert_eq!(lines.next(), Some("metric,before,after,delta,delta_pct"));
    let mut metrics = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (b, a, d) = (
            cells[1].parse::<f64>().unwrap(),
            cells[2].parse::<f64>().unwrap(),
            cells[3].parse::<f64>().unwrap(),
        );
        // serde_json's default float parser may be off by an ulp, hence the tolerance.
        let near = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(1.0);
        assert!(
            near(json["before"][cells[0]].as_f64().unwrap(), b),
            "{line}"
        );
        assert!(near(json["after"][cells[0]].as_f64().unwrap(), a), "{line}");
        assert!((d - (a - b)).abs() < 1e-9, "{line}");
        if b != 0.0 {
            assert!(
                (cells[4].parse::<f64>().unwrap() - 100.0 * (a - b) / b).abs() < 1e-9,
                "{line}"
            );
        }
        metrics.push(cells[0].to_owned());
    }
    assert_eq!(
        metrics,
        [
            "total",
            "succeeded",
            "failed",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "mean_ms",
            "min_ms",
            "max_ms",
            "throughput_rps",
            "duration_s",
            // Against the SLA as the one objective: no LLM columns here.
            "goodput_rps"
        ]
    );

    let md = fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(md.contains("SLA P95 <= 800 ms is MET"));
    let html = fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Latency CDF"));
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no external resources"
    );
    assert!(!html.contains("<script"), "no script needed");
    // Atomic writes leave no temp files behind.
    let mut names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "comparison.csv",
            "comparison.json",
            "report.html",
            "report.md"
        ]
    );
}

#[test]
fn sla_missed_exits_1() {
    let dir = common::temp_dir("missed");
    let slow: Vec<f64> = fast_after().iter().map(|l| l * 10.0).collect();
    let (before, after) = fixture(&dir, &slow);
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("NOT MET"), "{stdout}");
    let json: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("out/comparison.json")).unwrap())
            .unwrap();
    assert_eq!(json["verdict"]["met"], false);
}

#[test]
fn objectives_beyond_the_sla_each_gate_the_verdict_with_their_value() {
    let dir = common::temp_dir("slo");
    let after_latencies = fast_after();
    let (before, after) = fixture(&dir, &after_latencies);
    let mut sorted = after_latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = numpy_linear(&sorted, 0.99);
    let run = |slos: &[&str]| {
        let mut args = vec!["compare", "--before", &before, "--after", &after];
        for slo in slos {
            args.extend(["--sla", slo]);
        }
        let out_dir = dir.join("out");
        args.extend(["--out-dir", out_dir.to_str().unwrap()]);
        let out = report(&args);
        let json: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("out/comparison.json")).unwrap())
                .unwrap();
        (out.status.code(), json)
    };
    // Both hold: the After's P99 against numpy's, no failed request.
    let p99_bound = format!("p99<={}", p99 + 0.001);
    let (code, json) = run(&[&p99_bound, "error_rate<=0"]);
    assert_eq!(code, Some(0), "{json}");
    let measured = json["slos"][0]["measured"].as_f64().unwrap();
    assert!((measured - p99).abs() < 1e-9, "{measured} vs numpy {p99}");
    assert_eq!(json["slos"][1]["measured"], 0.0);
    // A bound just under the measured P99 fails the verdict, and says so.
    let too_tight = format!("p99<{}", p99 - 0.001);
    let (code, json) = run(&[&too_tight]);
    assert_eq!(code, Some(1));
    assert_eq!(json["verdict"]["met"], false);
    let reasons = json["verdict"]["reasons"].to_string();
    assert!(
        reasons.contains(&format!("SLO {too_tight}: After measured"))
            && reasons.contains("NOT met"),
        "{reasons}"
    );
    // A bad expression is exit 2 naming its bad part.
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--sla",
        "p95=800",
        "--out-dir",
        "x",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no comparison"), "{stderr}");
}

#[test]
fn malformed_log_exits_2_naming_file_line_and_column() {
    let dir = common::temp_dir("malformed");
    let (before, _) = fixture(&dir, &fast_after());
    let bad = common::write(
        &dir,
        "bad.csv",
        &format!("{}0,1,2,200,\n1,1,abc,200,\n", common::INPUT_PY_HEADER),
    );
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        bad.to_str().unwrap(),
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.csv") && stderr.contains("line 3") && stderr.contains("latency_ms"),
        "{stderr}"
    );
    assert!(!dir.join("out").exists(), "nothing written on error");
    let missing = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        "/nonexistent/x.csv",
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).1.contains("/nonexistent/x.csv"));
}

#[test]
fn bad_flags_exit_2_with_advice() {
    let dir = common::temp_dir("flags");
    let (before, after) = fixture(&dir, &fast_after());
    let out_dir = dir.join("out");
    for sla in ["0", "-5", "NaN", "inf"] {
        let flag = format!("--sla-p95-ms={sla}");
        let out = report(&[
            "compare",
            "--before",
            &before,
            "--after",
            &after,
            &flag,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "--sla-p95-ms {sla}");
        assert!(text(&out).1.contains("--sla-p95-ms"), "{}", text(&out).1);
    }
    // An out-dir that is a file cannot be created.
    let file = common::write(&dir, "not-a-dir", "x");
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--out-dir",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a directory"));
    let conditions = common::write(&dir, "c.json", "{not json");
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--conditions",
        conditions.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--conditions"));
    let out = report(&["compare", "--before", &before]);
    assert_eq!(out.status.code(), Some(2), "missing required flags");
}

#[test]
fn hostile_error_text_is_escaped_in_html_and_markdown() {
    let dir = common::temp_dir("hostile");
    let hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let before = common::write(
        &dir,
        "before.csv",
        &common::input_py_log(&[
            (0, 0.0, 900.0, 200, ""),
            (1, 1.0, 950.0, 0, &format!("\"{hostile}\"")),
        ]),
    );
    let after = common::write(
        &dir,
        "after.csv",
        &common::input_py_log(&[(0, 0.0, 90.0, 200, ""), (1, 1.0, 95.0, 200, "")]),
    );
    let label = "<b>Before</b>";
    let out = report(&[
        "compare",
        "--before",
        before.to_str().unwrap(),
        "--after",
        after.to_str().unwrap(),
        "--before-label",
        label,
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let html = fs::read_to_string(dir.join("out/report.html")).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img") && !html.contains("<b>"),
        "unescaped markup in HTML"
    );
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "the error is shown as text"
    );
    assert!(html.contains("&lt;b&gt;Before&lt;/b&gt;"));
    let md = fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(
        !md.contains("<script") && !md.contains("<img"),
        "unescaped markup in Markdown"
    );
}

#[test]
fn input_py_stdout_and_reproduction_are_reconciled() {
    let dir = common::temp_dir("inputpy");
    // Before: status-200 latencies 10, 20, ..., 200 (20 rows). Python's
    // statistics.quantiles(n=100), m = 21: P50 = (100*50 + 110*50)/100 = 105;
    // P95: j = 1995 // 100 = 19, delta 95 -> (190*5 + 200*95)/100 = 199.5;
    // P99: j = 2079 // 100 = 20 -> clamped to 19, delta 179 -> (190*-79 + 200*179)/100 = 207.9.
    let rows: Vec<(u64, f64, f64, u16, &str)> = (1..=20)
        .map(|i| (i, i as f64, 10.0 * i as f64, 200, ""))
        .collect();
    let before = common::write(&dir, "before.csv", &common::input_py_log(&rows));
    let after = common::write(
        &dir,
        "after.csv",
        &common::input_py_log(
            &rows
                .iter()
                .map(|r| (r.0, r.1, r.2 / 2.0, 200, ""))
                .collect::<Vec<_>>(),
        ),
    );
    let repro_lat: Vec<f64> = (1..=20).map(|i| 10.2 * i as f64).collect();
    let repro = common::write(&dir, "repro.csv", &common::loadgen_ok_log(&repro_lat));
    let stdout = common::write(&dir, "stdout.txt", "Total requests: 20\nSucceeded: 20\nFailed: 0\nP50 latency: 105.00 ms\nP95 latency: 199.50 ms\nP99 latency: 207.90 ms\nLog written to latency_log.csv\n");
    let out = report(&[
        "compare",
        "--before",
        before.to_str().unwrap(),
        "--after",
        after.to_str().unwrap(),
        "--reproduction",
        repro.to_str().unwrap(),
        "--input-py-stdout",
        stdout.to_str().unwrap(),
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("out/comparison.json")).unwrap())
            .unwrap();
    let py = &json["input_py_stdout"];
    assert_eq!(py["matches"], true, "{py}");
    assert!((py["recomputed_exclusive"]["p99_ms"].as_f64().unwrap() - 207.9).abs() < 1e-9);
    assert_eq!(py["printed"]["p95_ms"], 199.5);
    let agreement = &json["before_reproduction"]["agreement"];
    assert!(
        (agreement["p95_ratio"].as_f64().unwrap() - 1.02).abs() < 1e-9,
        "{agreement}"
    );
    assert_eq!(agreement["within_tolerance"], true);
    let md = fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("| P95 (ms) | 199.50 | 199.500 |"), "{md}");
    // One wording of the reproduction in both reports, markup aside.
    let html = fs::read_to_string(dir.join("out/report.html")).unwrap();
    let sentence = |text: &str| {
        let start = text
            .find("The reproduction (")
            .expect("reproduction paragraph");
        let end = start + text[start..].find("agrees").expect("its verdict");
        text[start..end].replace("**", "").replace("<strong>", "")
    };
    assert_eq!(sentence(&md), sentence(&html));
}

#[test]
fn summary_prints_one_side_as_json() {
    let dir = common::temp_dir("summary");
    let (before, _) = fixture(&dir, &fast_after());
    let out = report(&["summary", &before]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_side_against_csv(&json, &before);
    let out = report(&["summary", "/nonexistent.csv"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Every file under `dir`, recursively, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn writes_only_its_four_files_and_only_inside_the_out_dir() {
    let dir = common::temp_dir("containment");
    let (before, after) = fixture(&dir, &fast_after());
    // A label that looks like a path must stay a label.
    let out = report(&[
        "compare",
        "--before",
        &before,
        "--after",
        &after,
        "--after-label",
        "../../escape",
        "--out-dir",
        &dir.join("out").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(
        files_under(&dir),
        [
            "after.csv",
            "before.csv",
            "out/comparison.csv",
            "out/comparison.json",
            "out/report.html",
            "out/report.md",
        ]
    );
}
