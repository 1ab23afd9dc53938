//! `report merge` end to end: four hand-made shard directories (rows
//! written with `model::log::LogWriter`, summaries with histograms made by
//! `stats::LatencyHistogram` from the same rows), merged through the
//! binary, every number checked against values computed here from the rows.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model::log::{LlmTiming, LogRow, LogWriter, TokensFrom};
use model::summary::{LlmSummary, Percentiles, Plan, RunSummary, ShardSummary, SCHEMA_VERSION};
use serde_json::{json, Value};
use stats::LatencyHistogram;

const COUNT: u64 = 4;
const REQUESTS: u64 = 1000;
const START_AT_MS: f64 = 1_764_669_600_000.0;
/// 200 requests/s, one schedule split round-robin over the shards.
const GAP_MS: f64 = 5.0;

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_report"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole run's rows: latencies 100.00..109.99 ms in 0.01 ms steps (a
/// permutation over the ids), a slow tail every 50th id at 700 ms and up
/// (0.05 ms apart), and failures (`http_503` every 97th, `timeout` every
/// 211th). Adjacent successful latencies are within 0.01% of each other,
/// so a nearest-rank histogram percentile lies within 0.1% of Linear's.
fn run_rows() -> Vec<LogRow> {
    (0..REQUESTS)
        .map(|id| {
            let shard = id % COUNT;
            // Each shard's clock is a little off: 0.25 ms per index.
            let timestamp_ms = START_AT_MS + id as f64 * GAP_MS + 0.25 * shard as f64;
            let (latency_ms, status_code, error) = if id % 97 == 13 {
                (3.0, 503, "http_503")
            } else if id % 211 == 7 {
                (10_000.0, 0, "timeout")
            } else if id % 50 == 0 {
                (700.0 + 0.05 * (id / 50) as f64, 200, "")
            } else {
                ((10_000 + (id * 7919) % 1000) as f64 / 100.0, 200, "")
            };
            LogRow {
                request_id: id,
                timestamp_ms,
                latency_ms,
                status_code,
                error: error.to_owned(),
                ok: error.is_empty(),
                batch_id: Some(id),
                batch_size: Some(1),
                ..LogRow::default()
            }
        })
        .collect()
}

fn typed_plan() -> Plan {
    Plan {
        url: "http://10.0.0.7:8000/v1/infer".into(),
        api: "simulator".into(),
        mode: "open".into(),
        rate_rps: Some(200.0),
        arrival: Some("constant".into()),
        seed: Some(42),
        concurrency: None,
        requests: None,
        duration_s: Some(5.0),
        batch_size: 1,
        batch_wait_ms: 0,
        connection: "pooled".into(),
        http2: false,
        profile: None,
    }
}

fn plan() -> Value {
    json!({
        "url": "http://10.0.0.7:8000/v1/infer", "api": "simulator", "mode": "open",
        "rate_rps": 200.0, "arrival": "constant", "seed": 42, "concurrency": null,
        "requests": null, "duration_s": 5.0, "batch_size": 1, "batch_wait_ms": 0,
        "connection": "pooled", "http2": false, "profile": null
    })
}

/// What loadgen writes for one shard's rows, through loadgen's own type.
fn shard_summary(index: u64, rows: &[LogRow]) -> Value {
    let mut histogram = LatencyHistogram::new();
    let mut errors = BTreeMap::new();
    let ok: Vec<f64> = rows.iter().filter(|r| r.ok).map(|r| r.latency_ms).collect();
    for row in rows {
        if row.ok {
            histogram.record_ms(row.latency_ms).unwrap();
        } else {
            *errors.entry(row.error.clone()).or_insert(0u64) += 1;
        }
    }
    let start = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(f64::INFINITY, f64::min);
    let last_send = rows.iter().map(|r| r.timestamp_ms).fold(0.0, f64::max);
    let end = rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .fold(0.0, f64::max);
    let duration_s = (end - start) / 1000.0;
    let q = |p| Some(histogram.quantile_ms(p).unwrap());
    let summary = RunSummary {
        schema_version: SCHEMA_VERSION,
        total: rows.len() as u64,
        succeeded: ok.len() as u64,
        failed: (rows.len() - ok.len()) as u64,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        mean_ms: Some(ok.iter().sum::<f64>() / ok.len() as f64),
        min_ms: Some(ok.iter().copied().fold(f64::INFINITY, f64::min)),
        max_ms: Some(ok.iter().copied().fold(0.0, f64::max)),
        throughput_rps: ok.len() as f64 / duration_s,
        duration_s,
        errors,
        mode: "open".into(),
        url: "http://10.0.0.7:8000/v1/infer".into(),
        api: "simulator".into(),
        achieved_rate_rps: Some((rows.len() - 1) as f64 / ((last_send - start) / 1000.0)),
        dropped: Some(0),
        target_rate_rps: Some(200.0 / COUNT as f64),
        latency_histogram: Some(histogram.to_base64_v2().unwrap()),
        shard: Some(ShardSummary {
            index: index as u32,
            count: COUNT as u32,
            start_at_unix_ms: Some(START_AT_MS),
            start_skew_ms: Some(start - START_AT_MS),
        }),
        plan: typed_plan(),
        retries: rows.iter().map(|r| u64::from(r.retries)).sum(),
        verified_rows: rows.iter().filter(|r| r.verified).count() as u64,
        llm: llm_summary(rows),
        ..RunSummary::default()
    };
    serde_json::to_value(summary).unwrap()
}

/// One series as loadgen states it: exact count, mean and extremes, its
/// histogram; the percentiles here are nearest-rank (the merge reads only
/// the histogram, the count, mean and extremes).
fn series_of(values: &[f64]) -> (Percentiles, String) {
    let mut histogram = LatencyHistogram::new();
    for v in values {
        histogram.record_ms(*v).unwrap();
    }
    let q = |p| histogram.quantile_ms(p).ok();
    let numbers = Percentiles {
        count: values.len() as u64,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        mean_ms: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        min_ms: values.iter().copied().reduce(f64::min),
        max_ms: values.iter().copied().reduce(f64::max),
        quantiles_exact: true,
        quantile_error: None,
    };
    (numbers, histogram.to_base64_v2().unwrap())
}

/// The LLM part of a shard's summary, when its rows carry LLM timings:
/// the successful rows' TTFT, TPOT and every gap, as loadgen keeps them.
fn llm_summary(rows: &[LogRow]) -> Option<LlmSummary> {
    let timings: Vec<&LlmTiming> = rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.llm.as_ref())
        .collect();
    if timings.is_empty() {
        return None;
    }
    let ttft: Vec<f64> = timings.iter().filter_map(|t| t.ttft_ms).collect();
    let tpot: Vec<f64> = timings.iter().filter_map(|t| t.tpot_ms).collect();
    let itl: Vec<f64> = timings.iter().flat_map(|t| t.itl_ms.clone()).collect();
    let ok: Vec<f64> = rows.iter().filter(|r| r.ok).map(|r| r.latency_ms).collect();
    let ((ttft, ttft_h), (itl, itl_h), (tpot, tpot_h)) =
        (series_of(&ttft), series_of(&itl), series_of(&tpot));
    Some(LlmSummary {
        ttft,
        itl,
        tpot,
        e2e: series_of(&ok).0,
        output_tokens: timings.iter().filter_map(|t| t.output_tokens).sum(),
        output_tokens_per_s: Some(1.0),
        tokens_from: "usage".into(),
        ttft_histogram: Some(ttft_h),
        itl_histogram: Some(itl_h),
        tpot_histogram: Some(tpot_h),
        client_delay: None,
        server_itl: None,
    })
}

fn write_log(path: &Path, rows: &[LogRow]) {
    let llm = rows.iter().any(|r| r.llm.is_some());
    let mut writer = LogWriter::create(path, llm).unwrap();
    for row in rows {
        writer.write_row(row).unwrap();
    }
    writer.flush().unwrap();
}

/// Four shard directories under `root` (`shard-0` ..); returns them.
fn build_shards(root: &Path) -> Vec<PathBuf> {
    build_shards_of(root, &run_rows())
}

/// Four shard directories of `rows` (split by id) under `root`.
fn build_shards_of(root: &Path, rows: &[LogRow]) -> Vec<PathBuf> {
    (0..COUNT)
        .map(|index| {
            let dir = root.join(format!("shard-{index}"));
            fs::create_dir_all(&dir).unwrap();
            let mine: Vec<LogRow> = rows
                .iter()
                .filter(|r| r.request_id % COUNT == index)
                .cloned()
                .collect();
            write_log(&dir.join("log.csv"), &mine);
            let summary = serde_json::to_string_pretty(&shard_summary(index, &mine)).unwrap();
            fs::write(dir.join("summary.json"), summary).unwrap();
            dir
        })
        .collect()
}

/// A change to a summary.json, for the error cases.
type Edit = fn(&mut Value);

fn edit_summary(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("summary.json");
    let mut value: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
}

fn merge(out: &Path, extra: &[&str], dirs: &[PathBuf]) -> Output {
    let mut args = vec!["merge", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    report(&args)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// numpy's default percentile, written independently of the crates.
fn numpy_linear(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

const PERCENTILES: [(&str, f64); 5] = [
    ("p50_ms", 0.50),
    ("p90_ms", 0.90),
    ("p95_ms", 0.95),
    ("p99_ms", 0.99),
    ("p99_9_ms", 0.999),
];

fn successful_sorted() -> Vec<f64> {
    let mut ok: Vec<f64> = run_rows()
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.latency_ms)
        .collect();
    ok.sort_by(f64::total_cmp);
    ok
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

#[test]
fn rows_merge_sums_counts_and_gives_exact_linear_percentiles() {
    let root = common::temp_dir("merge-rows");
    let dirs = build_shards(&root);
    let out_dir = root.join("merged");
    let out = merge(&out_dir, &["--sla", "p95<=800"], &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("SLO p95<=800: measured"),
        "{}",
        stdout(&out)
    );

    let s = read_json(&out_dir.join("summary.json"));
    let rows = run_rows();
    let failed_503 = rows.iter().filter(|r| r.error == "http_503").count() as u64;
    let failed_timeout = rows.iter().filter(|r| r.error == "timeout").count() as u64;
    assert_eq!(s["total"], REQUESTS);
    assert_eq!(s["failed"], failed_503 + failed_timeout);
    assert_eq!(s["succeeded"], REQUESTS - failed_503 - failed_timeout);
    assert_eq!(s["errors"]["http_503"], failed_503);
    assert_eq!(s["errors"]["timeout"], failed_timeout);
    assert_eq!(s["percentiles_from"], "rows");
    assert_eq!(
        (&s["quantiles_exact"], &s["quantile_error"]),
        (&json!(true), &Value::Null)
    );
    assert_eq!(s["schema_version"], SCHEMA_VERSION);

    let ok = successful_sorted();
    for (key, q) in PERCENTILES {
        let expected = numpy_linear(&ok, q);
        assert!(
            (f(&s, key) - expected).abs() < 1e-9,
            "{key}: {} vs {expected}",
            s[key]
        );
    }
    let mean = ok.iter().sum::<f64>() / ok.len() as f64;
    assert!((f(&s, "mean_ms") - mean).abs() < 1e-9);
    assert_eq!(
        (f(&s, "min_ms"), f(&s, "max_ms")),
        (ok[0], ok[ok.len() - 1])
    );
    // First start (id 0 at START_AT) to the last response: a timeout row
    // (id 851 ends at +4255.75 + 10000 ms) outlasts the last send.
    let end = rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .fold(0.0, f64::max);
    let duration_s = (end - START_AT_MS) / 1000.0;
    assert!((f(&s, "duration_s") - duration_s).abs() < 1e-9);
    assert!((f(&s, "throughput_rps") - ok.len() as f64 / duration_s).abs() < 1e-9);
    // Sends: all 1000, from id 0 to id 999 (which shard 3 sent 0.75 ms late).
    let span_s = (999.0 * GAP_MS + 0.75) / 1000.0;
    assert!((f(&s, "achieved_rate_rps") - 999.0 / span_s).abs() < 1e-9);

    assert_eq!(
        s["ids"],
        json!({"unique": REQUESTS, "duplicates": 0, "missing": 0, "min": 0, "max": REQUESTS - 1})
    );
    assert_eq!(s["shards"]["count"], COUNT);
    let per_shard = s["shards"]["per_shard"].as_array().unwrap();
    for (index, entry) in per_shard.iter().enumerate() {
        assert_eq!(entry["index"], index as u64);
        assert_eq!(entry["total"], REQUESTS / COUNT);
        assert_eq!(entry["dir"], dirs[index].display().to_string());
        assert_eq!(entry["log_csv"], true);
        // Shard i's first id is i: i * 5 ms of schedule plus its 0.25 ms per index.
        assert!((f(entry, "start_skew_ms") - index as f64 * (GAP_MS + 0.25)).abs() < 1e-6);
    }
    assert_eq!(s["plan"], plan());
    assert_eq!(
        (&s["mode"], &s["api"]),
        (&json!("open"), &json!("simulator"))
    );
    assert_eq!(s["slos"][0]["met"], true);

    // The merged log: every row once, by timestamp then id.
    let log = model::log::read_log_file(&out_dir.join("log.csv")).unwrap();
    assert_eq!(log.rows.len() as u64, REQUESTS);
    assert!(log
        .rows
        .windows(2)
        .all(|w| (w[0].timestamp_ms, w[0].request_id) <= (w[1].timestamp_ms, w[1].request_id)));
    let mut ids: Vec<u64> = log.rows.iter().map(|r| r.request_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..REQUESTS).collect::<Vec<_>>());
}

#[test]
fn merged_numbers_equal_report_summary_of_the_concatenated_csv() {
    let root = common::temp_dir("merge-concat");
    let dirs = build_shards(&root);
    // The shards' CSVs one after another, one header.
    let mut concatenated = String::new();
    for (k, dir) in dirs.iter().enumerate() {
        let text = fs::read_to_string(dir.join("log.csv")).unwrap();
        let skip = if k == 0 {
            0
        } else {
            text.find('\n').unwrap() + 1
        };
        concatenated.push_str(&text[skip..]);
    }
    let csv = common::write(&root, "concatenated.csv", &concatenated);
    let single = report(&["summary", csv.to_str().unwrap()]);
    assert_eq!(single.status.code(), Some(0), "{}", stderr(&single));
    let single: Value = serde_json::from_slice(&single.stdout).unwrap();

    let out_dir = root.join("merged");
    let out = merge(&out_dir, &[], &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged = read_json(&out_dir.join("summary.json"));
    for key in [
        "total",
        "succeeded",
        "failed",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "mean_ms",
        "min_ms",
        "max_ms",
        "duration_s",
        "throughput_rps",
    ] {
        assert_eq!(merged[key], single[key], "{key}");
    }
    // And the merged log.csv summarises to the same numbers again.
    let again = report(&["summary", out_dir.join("log.csv").to_str().unwrap()]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    for key in ["total", "p50_ms", "p95_ms", "p99_ms", "duration_s"] {
        assert_eq!(again[key], single[key], "{key}");
    }
}

#[test]
fn without_every_csv_percentiles_come_from_the_merged_histogram_within_the_stated_bound() {
    let root = common::temp_dir("merge-histogram");
    let dirs = build_shards(&root);
    let out_dir = root.join("merged");
    // A rows merge first, then one shard without its CSV: no stale log stays.
    assert_eq!(merge(&out_dir, &[], &dirs).status.code(), Some(0));
    let exact = read_json(&out_dir.join("summary.json"));
    fs::remove_file(dirs[2].join("log.csv")).unwrap();

    let out = merge(
        &out_dir,
        &["--sla", "p99<=800", "--sla", "ttft_p95<=500"],
        &dirs,
    );
    // The TTFT objective needs rows: nothing to measure, not met.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "SLO ttft_p95<=500: nothing to measure without every shard's log.csv (NOT met)"
        ),
        "{}",
        stdout(&out)
    );
    let s = read_json(&out_dir.join("summary.json"));
    assert_eq!(s["percentiles_from"], "histogram");
    assert_eq!(s["quantile_error"], report::merge::histogram_error());
    assert_eq!(s["quantiles_exact"], false);
    assert!(s.get("ids").is_none());
    assert!(!out_dir.join("log.csv").exists());
    assert_eq!(s["shards"]["per_shard"][2]["log_csv"], false);
    assert_eq!(
        (&s["total"], &s["failed"]),
        (&exact["total"], &exact["failed"])
    );
    assert_eq!(s["errors"], exact["errors"]);

    let ok = successful_sorted();
    for (key, q) in PERCENTILES {
        let expected = numpy_linear(&ok, q);
        let bound = LatencyHistogram::quantile_error_bound_ms(expected);
        assert!(
            (f(&s, key) - expected).abs() <= bound + 1e-9,
            "{key}: {} vs exact {expected} (bound {bound})",
            s[key]
        );
    }
    // Mean, min and max stay exact: loadgen keeps them exactly per shard.
    for key in ["mean_ms", "min_ms", "max_ms"] {
        assert!((f(&s, key) - f(&exact, key)).abs() < 1e-9, "{key}");
    }
    // Start + skew + duration of each shard spans the same time as the rows.
    assert!((f(&s, "duration_s") - f(&exact, "duration_s")).abs() < 1e-9);
    assert!((f(&s, "throughput_rps") - f(&exact, "throughput_rps")).abs() < 1e-6);
    let rate = f(&s, "achieved_rate_rps");
    assert!(
        (rate - f(&exact, "achieved_rate_rps")).abs() < 1e-6,
        "{rate}"
    );
    assert_eq!(s["slos"][0]["met"], true);
    assert!((f(&s["slos"][0], "measured") - f(&s, "p99_ms")).abs() < 1e-12);

    // Without any CSV too, and an objective on the histogram alone holds.
    for dir in &dirs {
        let _ = fs::remove_file(dir.join("log.csv"));
    }
    let out = merge(&out_dir, &["--sla", "p95<=800"], &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let none = read_json(&out_dir.join("summary.json"));
    assert_eq!(none["p95_ms"], s["p95_ms"]);
}

#[test]
fn a_missing_shard_is_an_error_naming_its_index() {
    let root = common::temp_dir("merge-missing");
    let dirs = build_shards(&root);
    let out = merge(&root.join("merged"), &[], &dirs[..3]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`shard.count` 4 but 3 directories"), "{err}");
    assert!(err.contains("missing shard index 3"), "{err}");
    assert!(!root.join("merged").exists(), "nothing is written on error");
}

#[test]
fn a_duplicate_index_names_both_dirs() {
    let root = common::temp_dir("merge-duplicate");
    let dirs = build_shards(&root);
    edit_summary(&dirs[3], |v| v["shard"]["index"] = json!(1));
    let out = merge(&root.join("merged"), &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("shard index 1 appears twice"), "{err}");
    for dir in [&dirs[1], &dirs[3]] {
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
}

#[test]
fn a_different_url_or_rate_names_the_dir_and_the_field() {
    let root = common::temp_dir("merge-plan");
    let dirs = build_shards(&root);
    edit_summary(&dirs[2], |v| {
        v["plan"]["url"] = json!("http://10.0.0.8:8000/v1/infer")
    });
    let out = merge(&root.join("merged"), &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&dirs[2].display().to_string()), "{err}");
    assert!(
        err.contains("`plan.url` is \"http://10.0.0.8:8000/v1/infer\""),
        "{err}"
    );

    edit_summary(&dirs[2], |v| v["plan"] = plan());
    edit_summary(&dirs[1], |v| v["plan"]["rate_rps"] = json!(150.0));
    let out = merge(&root.join("merged"), &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&dirs[1].display().to_string()), "{err}");
    assert!(err.contains("`plan.rate_rps` is 150.0"), "{err}");
    assert!(err.contains("has 200.0"), "{err}");
}

#[test]
fn unsharded_or_incomplete_summaries_are_errors_naming_file_and_field() {
    let root = common::temp_dir("merge-fields");
    let dirs = build_shards(&root);
    let summary = dirs[0].join("summary.json").display().to_string();
    let cases: [(&str, Edit); 4] = [
        ("not a shard", |v| v["shard"] = Value::Null),
        ("missing field `latency_histogram`", |v| {
            v.as_object_mut().unwrap().remove("latency_histogram");
        }),
        ("shard: missing field `count`", |v| {
            v["shard"].as_object_mut().unwrap().remove("count");
        }),
        ("plan: missing field `api`", |v| {
            v["plan"].as_object_mut().unwrap().remove("api");
        }),
    ];
    for (expected, edit) in cases {
        let before = fs::read_to_string(dirs[0].join("summary.json")).unwrap();
        edit_summary(&dirs[0], edit);
        let out = merge(&root.join("merged"), &[], &dirs);
        assert_eq!(out.status.code(), Some(2), "{expected}");
        let err = stderr(&out);
        assert!(
            err.contains(&summary) && err.contains(expected),
            "{expected}: {err}"
        );
        fs::write(dirs[0].join("summary.json"), before).unwrap();
    }
    // A log that disagrees with its summary is refused, not merged.
    let log = dirs[1].join("log.csv");
    let text = fs::read_to_string(&log).unwrap();
    fs::write(&log, &text[..text.trim_end().rfind('\n').unwrap() + 1]).unwrap();
    let out = merge(&root.join("merged"), &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("249 rows but"), "{}", stderr(&out));
    // And the output may not be a shard's own directory.
    fs::write(&log, text).unwrap();
    let out = merge(&dirs[0], &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is the shard directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failing_sla_exits_1_with_its_measured_value() {
    let root = common::temp_dir("merge-sla");
    let dirs = build_shards(&root);
    let out_dir = root.join("merged");
    let out = merge(&out_dir, &["--sla", "p95<=800", "--sla", "p99<=500"], &dirs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = read_json(&out_dir.join("summary.json"));
    let p99 = f(&s, "p99_ms");
    assert!(p99 > 700.0, "the slow tail sets P99: {p99}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("SLO p99<=500: measured {p99:.3} (NOT met)")),
        "{text}"
    );
    assert!(text.contains("SLO p95<=800: measured"), "{text}");
    assert_eq!(s["slos"][1]["met"], false);
    assert_eq!(f(&s["slos"][1], "measured"), p99);
}

#[test]
fn overlapping_shards_are_reported_and_exit_1() {
    let root = common::temp_dir("merge-overlap");
    let dirs = build_shards(&root);
    // Shard 1 logged shard 0's ids: the two ran the same part of the schedule.
    let log = dirs[1].join("log.csv");
    let mut rows = model::log::read_log_file(&log).unwrap().rows;
    for row in &mut rows {
        row.request_id -= 1;
    }
    write_log(&log, &rows);
    let out_dir = root.join("merged");
    let out = merge(&out_dir, &[], &dirs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("OVERLAP: 250 rows"),
        "{}",
        stdout(&out)
    );
    let s = read_json(&out_dir.join("summary.json"));
    assert_eq!(s["ids"]["duplicates"], 250);
    assert_eq!(s["ids"]["unique"], 750);
    assert_eq!(
        s["ids"]["missing"], 250,
        "ids 1, 5, ..., 997 were never sent"
    );

    // The library says the same.
    let merged = report::merge::merge(&dirs, &[]).unwrap();
    assert!(!merged.met());
    assert_eq!(merged.summary.ids.unwrap().duplicates, 250);
}

/// `--junit`: one suite, a case per objective and one for the ids, read
/// by junitparser and valid against the JUnit XSD; the merged summary
/// and log (the tool's own outputs) are valid against their published
/// schemas.
#[test]
fn junit_has_a_case_per_objective_and_for_the_ids_and_the_outputs_match_their_schemas() {
    let root = common::temp_dir("merge-junit");
    let dirs = build_shards(&root);
    let out_dir = root.join("merged");
    let junit = root.join("ci/junit.xml");
    let junit_arg = junit.to_string_lossy().into_owned();
    let out = merge(
        &out_dir,
        &[
            "--sla", "p95<=800", "--sla", "p99<=500", "--junit", &junit_arg,
        ],
        &dirs,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = read_json(&out_dir.join("summary.json"));
    let Some(read) = common::check_junit(&junit) else {
        return;
    };
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    assert_eq!(
        read["stated"],
        serde_json::json!({"tests": 3, "failures": 1, "errors": 0})
    );
    assert_eq!(read["counted"]["failures"], 1);
    let suite = &read["suites"][0];
    assert_eq!(suite["name"], "merge of 4 shards");
    let cases = suite["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["slo p95<=800", "slo p99<=500", "unique_request_ids"]
    );
    assert_eq!(cases[0]["result"], "passed");
    assert_eq!(cases[2]["result"], "passed");
    assert_eq!(cases[1]["result"], "failure");
    let p99 = f(&s, "p99_ms");
    let message = cases[1]["message"].as_str().unwrap();
    let shown: f64 = message
        .split("measured ")
        .nth(1)
        .and_then(|m| m.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((shown - p99).abs() < 5e-4, "{message} vs {p99}");
    assert!(
        message.ends_with(" ms, threshold <= 500 ms (FAILED)"),
        "{message}"
    );

    common::validate_against_schema("run-summary.schema.json", &[&out_dir.join("summary.json")]);
    common::validate_against_schema("log-row.schema.json", &[&out_dir.join("log.csv")]);
}

/// 190 latencies: a dense body and a sparse tail up to 7.587 ms, whose
/// bucket's midpoint (7.58784 ms) lies above it. Nearest-rank values from
/// the histogram are a whole sample off here (P99 7.2 against numpy's
/// 6.66) and P99.9 was above the max.
fn sparse_tail_rows() -> Vec<LogRow> {
    let tail = [6.1, 6.658, 7.2, 7.587];
    (0..190u64)
        .map(|id| {
            let latency_ms = match id {
                // The tail spread over the shards (ids 40, 91, 142, 189).
                40 => tail[0],
                91 => tail[1],
                142 => tail[2],
                189 => tail[3],
                _ => 5.0 + (id * 37 % 186) as f64 * 0.001,
            };
            LogRow {
                request_id: id,
                timestamp_ms: START_AT_MS + id as f64 * GAP_MS + 0.25 * (id % COUNT) as f64,
                latency_ms,
                status_code: 200,
                ok: true,
                batch_id: Some(id),
                batch_size: Some(1),
                ..LogRow::default()
            }
        })
        .collect()
}

#[test]
fn histogram_percentiles_are_numpys_within_the_stated_bound_and_never_past_the_extremes() {
    let root = common::temp_dir("merge-sparse-tail");
    let rows = sparse_tail_rows();
    let dirs = build_shards_of(&root, &rows);
    for dir in &dirs {
        fs::remove_file(dir.join("log.csv")).unwrap();
    }
    let out_dir = root.join("merged");
    let out = merge(&out_dir, &["--sla", "p99<=7"], &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = read_json(&out_dir.join("summary.json"));
    assert_eq!(s["percentiles_from"], "histogram");
    let error = s["quantile_error"].as_str().unwrap();
    assert!(
        error.contains("within 1/2048 (0.049%) of the exact value plus 0.5 ns")
            && error.contains("never outside the exact min and max"),
        "{error}"
    );
    assert!(
        stdout(&out).contains(&format!("Percentiles from the merged histograms, {error}:")),
        "{}",
        stdout(&out)
    );
    // numpy over the union of the rows.
    let mut ok: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
    ok.sort_by(f64::total_cmp);
    let (min, max) = (ok[0], ok[ok.len() - 1]);
    assert_eq!((f(&s, "min_ms"), f(&s, "max_ms")), (min, max));
    for (key, q) in PERCENTILES {
        let expected = numpy_linear(&ok, q);
        let value = f(&s, key);
        let bound = LatencyHistogram::quantile_error_bound_ms(expected);
        assert!(
            (value - expected).abs() <= bound + 1e-9,
            "{key}: {value} vs numpy {expected} (bound {bound:e})"
        );
        assert!(
            min <= value && value <= max,
            "{key}: {value} outside [{min}, {max}]"
        );
    }
    // The objective is judged on the same number.
    assert_eq!(f(&s["slos"][0], "measured"), f(&s, "p99_ms"));
    assert_eq!(s["slos"][0]["met"], true);
}

#[test]
fn without_start_at_the_error_names_the_shard_whose_log_is_missing() {
    let root = common::temp_dir("merge-which-log");
    let dirs = build_shards(&root);
    for dir in &dirs {
        edit_summary(dir, |v| v["shard"]["start_at_unix_ms"] = Value::Null);
    }
    for missing in [0, 2, 3] {
        let log = dirs[missing].join("log.csv");
        let text = fs::read_to_string(&log).unwrap();
        fs::remove_file(&log).unwrap();
        // The missing one first, last, and in the middle of the arguments.
        let mut orders = vec![dirs.clone(), dirs.iter().rev().cloned().collect()];
        let mut rotated = dirs.clone();
        rotated.rotate_left(missing);
        orders.push(rotated);
        for order in orders {
            let out = merge(&root.join("merged"), &[], &order);
            assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{} is absent", log.display())),
                "shard {missing}: {err}"
            );
            for (index, dir) in dirs.iter().enumerate() {
                if index != missing {
                    let other = dir.join("log.csv").display().to_string();
                    assert!(
                        !err.contains(&other),
                        "shard {missing} blamed {other}: {err}"
                    );
                }
            }
            assert!(err.contains("--start-at"), "{err}");
        }
        fs::write(&log, text).unwrap();
    }
}

/// A streamed run: TTFT, TPOT (none for a one-token answer) and gaps that
/// differ per request, a few failures, some retries, the verified rows.
fn llm_rows() -> Vec<LogRow> {
    (0..REQUESTS)
        .map(|id| {
            let ok = id % 53 != 7;
            let gaps: Vec<f64> = (0..id % 4)
                .map(|k| 4.9 + ((id * (k + 3)) % 29) as f64 * 0.07)
                .collect();
            let ttft_ms = 20.0 + ((id * 37) % 100) as f64 * 0.173;
            LogRow {
                request_id: id,
                timestamp_ms: START_AT_MS + id as f64 * GAP_MS + 0.25 * (id % COUNT) as f64,
                latency_ms: ttft_ms + gaps.iter().sum::<f64>(),
                status_code: if ok { 200 } else { 503 },
                error: if ok { String::new() } else { "http_503".into() },
                ok,
                verified: ok,
                retries: u32::from(id % 7 == 0),
                llm: Some(LlmTiming {
                    ttft_ms: Some(ttft_ms),
                    tpot_ms: (!gaps.is_empty()).then_some(5.0 + (id % 13) as f64 * 0.11),
                    output_tokens: Some(gaps.len() as u64 + 1),
                    tokens_from: Some(TokensFrom::Usage),
                    itl_ms: gaps,
                }),
                ..LogRow::default()
            }
        })
        .collect()
}

/// The values of one LLM series in a row's timings.
type Pick = fn(&LlmTiming) -> Vec<f64>;

/// The successful rows' values of one LLM series, ascending.
fn llm_sorted(rows: &[LogRow], pick: Pick) -> Vec<f64> {
    let mut values: Vec<f64> = rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.llm.as_ref())
        .flat_map(pick)
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

#[test]
fn without_rows_the_llm_series_merge_from_their_histograms_within_the_stated_bound() {
    let root = common::temp_dir("merge-llm");
    let rows = llm_rows();
    let dirs = build_shards_of(&root, &rows);
    for dir in &dirs {
        fs::remove_file(dir.join("log.csv")).unwrap();
    }
    let out_dir = root.join("merged");
    let out = merge(
        &out_dir,
        &["--sla", "ttft_p95<=100", "--sla", "itl_max<=10"],
        &dirs,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = read_json(&out_dir.join("summary.json"));
    assert_eq!(s["percentiles_from"], "histogram");
    // Summed over the shards.
    let retries: u64 = rows.iter().map(|r| u64::from(r.retries)).sum();
    assert!(retries > 0);
    assert_eq!(s["retries"], retries);
    assert_eq!(
        s["verified_rows"],
        rows.iter().filter(|r| r.verified).count() as u64
    );
    let llm = &s["llm"];
    let tokens: u64 = rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.llm.as_ref()?.output_tokens)
        .sum();
    assert_eq!(
        (&llm["output_tokens"], &llm["tokens_from"]),
        (&json!(tokens), &json!("usage"))
    );
    let series: [(&str, Pick); 3] = [
        ("ttft", |t| t.ttft_ms.into_iter().collect()),
        ("itl", |t| t.itl_ms.clone()),
        ("tpot", |t| t.tpot_ms.into_iter().collect()),
    ];
    for (name, pick) in series {
        let exact = llm_sorted(&rows, pick);
        let merged = &llm[name];
        assert_eq!(merged["count"], exact.len() as u64, "{name}");
        assert_eq!(merged["quantiles_exact"], false, "{name}");
        assert_eq!(
            merged["quantile_error"],
            report::merge::histogram_error(),
            "{name}"
        );
        let (min, max) = (exact[0], exact[exact.len() - 1]);
        assert_eq!(
            (f(merged, "min_ms"), f(merged, "max_ms")),
            (min, max),
            "{name}"
        );
        let mean = exact.iter().sum::<f64>() / exact.len() as f64;
        assert!((f(merged, "mean_ms") - mean).abs() < 1e-9, "{name}");
        for (key, q) in &PERCENTILES[..4] {
            let expected = numpy_linear(&exact, *q);
            let value = f(merged, key);
            let bound = LatencyHistogram::quantile_error_bound_ms(expected);
            assert!(
                (value - expected).abs() <= bound + 1e-9,
                "{name} {key}: {value} vs numpy {expected} (bound {bound:e})"
            );
            assert!(min <= value && value <= max, "{name} {key}: {value}");
        }
        // The merged histogram ships on, holding every value.
        let encoded = llm[format!("{name}_histogram")].as_str().unwrap();
        let histogram = LatencyHistogram::from_base64_v2(encoded).unwrap();
        assert_eq!(histogram.count(), exact.len() as u64, "{name}");
    }
    // e2e is the merged summary's own.
    assert_eq!(llm["e2e"]["p95_ms"], s["p95_ms"]);
    // The LLM objectives are judged on the same numbers.
    assert_eq!(f(&s["slos"][0], "measured"), f(&llm["ttft"], "p95_ms"));
    assert_eq!(f(&s["slos"][1], "measured"), f(&llm["itl"], "max_ms"));
    assert!(stdout(&out).contains("TTFT: P50"), "{}", stdout(&out));
}

#[test]
fn with_rows_the_llm_series_are_report_summarys_of_the_union_and_the_histograms_ship_on() {
    let root = common::temp_dir("merge-llm-rows");
    let rows = llm_rows();
    let dirs = build_shards_of(&root, &rows);
    let out_dir = root.join("merged");
    let out = merge(&out_dir, &[], &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged: RunSummary = RunSummary::read(&out_dir.join("summary.json")).unwrap();
    assert_eq!(merged.percentiles_from.as_deref(), Some("rows"));
    // The rows as the shards logged them (the CSV rounds to 0.001 ms).
    let logged: Vec<LogRow> = dirs
        .iter()
        .flat_map(|d| model::log::read_log_file(&d.join("log.csv")).unwrap().rows)
        .collect();
    let exact = report::summary_of_rows("union", "loadgen", &logged)
        .unwrap()
        .llm
        .unwrap();
    let llm = merged.llm.unwrap();
    for (name, a, b) in [
        ("ttft", &llm.ttft, &exact.ttft),
        ("itl", &llm.itl, &exact.itl),
        ("tpot", &llm.tpot, &exact.tpot),
        ("e2e", &llm.e2e, &exact.e2e),
    ] {
        assert_eq!(a, b, "{name}");
        assert!(a.quantiles_exact, "{name}");
    }
    for encoded in [&llm.ttft_histogram, &llm.itl_histogram, &llm.tpot_histogram] {
        assert!(LatencyHistogram::from_base64_v2(encoded.as_ref().unwrap()).is_ok());
    }
    assert_eq!(
        merged.retries,
        rows.iter().map(|r| u64::from(r.retries)).sum::<u64>()
    );
}

#[test]
fn a_summary_of_another_version_is_refused_naming_the_file() {
    let root = common::temp_dir("merge-version");
    let dirs = build_shards(&root);
    edit_summary(&dirs[1], |v| v["schema_version"] = json!(1));
    let out = merge(&root.join("merged"), &[], &dirs);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = dirs[1].join("summary.json").display().to_string();
    assert!(
        err.contains(&format!("{file}: `schema_version` is 1")),
        "{err}"
    );
    edit_summary(&dirs[1], |v| {
        v.as_object_mut().unwrap().remove("schema_version");
    });
    let err = stderr(&merge(&root.join("merged"), &[], &dirs));
    assert!(
        err.contains(&format!("{file}: no `schema_version`")),
        "{err}"
    );
}
