//! Distributed load through the binary: shards of one command line, each
//! a process with its own `JOB_COMPLETION_INDEX` (as a Kubernetes Indexed
//! Job runs them), together do what one generator would; `--start-at`
//! anchors the open-loop schedule; `--out-dir` holds the log and the
//! summary with `shard`, `plan` and `latency_histogram`. Every server is an
//! in-process simulator on loopback.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

fn loadgen() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.env_remove("JOB_COMPLETION_INDEX");
    command
}

/// A wall-clock time `offset_ms` from now (negative: in the past), on a
/// whole millisecond: as Unix seconds text, and as Unix ms.
fn start_at(offset_ms: i64) -> (String, f64) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at_ms = now_ms + offset_ms;
    (
        format!("{}.{:03}", at_ms / 1000, at_ms % 1000),
        at_ms as f64,
    )
}

/// Unix ms as RFC 3339 in UTC+01:00, e.g. `2025-12-02T11:00:00.250+01:00`.
fn rfc3339_plus_one_hour(unix_ms: f64) -> String {
    let local_ms = unix_ms as i64 + 3_600_000;
    let (days, ms_of_day) = (
        local_ms.div_euclid(86_400_000),
        local_ms.rem_euclid(86_400_000),
    );
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+01:00",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms_of_day % 1000
    )
}

/// Runs `count` shards of `args` at once, shard `i` in `dirs[i]`, its
/// index from `JOB_COMPLETION_INDEX` when `from_env`, else on the command
/// line (`--shard i/count`).
fn run_shards(args: &[String], count: u32, from_env: bool, root: &Path) -> Vec<Output> {
    let children: Vec<_> = (0..count)
        .map(|index| {
            let mut command = loadgen();
            command
                .args(args)
                .arg("--out-dir")
                .arg(root.join(format!("shard-{index}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if from_env {
                command
                    .args(["--shard", &count.to_string()])
                    .env("JOB_COMPLETION_INDEX", index.to_string());
            } else {
                command.args(["--shard", &format!("{index}/{count}")]);
            }
            command.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect()
}

fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows(dir: &Path) -> Vec<model::log::LogRow> {
    model::log::read_log_file(&dir.join("log.csv"))
        .unwrap()
        .rows
}

/// The summary's histogram holds exactly its successes.
fn check_histogram(summary: &Value) {
    let encoded = summary["latency_histogram"].as_str().unwrap();
    let histogram = stats::LatencyHistogram::from_base64_v2(encoded).unwrap();
    assert_eq!(Some(histogram.count()), summary["succeeded"].as_u64());
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn open_loop_shards_are_the_single_schedule() {
    let server = common::simulator("zero-cost");
    let root = common::temp_dir("shards-open");
    let url = format!("http://{}/v1/infer", server.addr);
    // Far enough ahead for four processes to start on a busy machine; a
    // shard that starts late would not change the intended starts below.
    let (at_text, at_ms) = start_at(1500);
    let args = strings(&[
        "--url",
        &url,
        "--rate",
        "200",
        "-n",
        "200",
        "--start-at",
        &at_text,
        "--timeout",
        "5s",
        "-q",
    ]);
    let outputs = run_shards(&args, 4, true, &root);
    let mut ids = Vec::new();
    let mut plans = Vec::new();
    for (index, out) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {index}: {stderr}");
        let dir = root.join(format!("shard-{index}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["log.csv", "summary.json"]);
        for row in rows(&dir) {
            assert_eq!(row.request_id % 4, index as u64, "{row:?}");
            assert!(row.ok, "{row:?}");
            // The intended start: --start-at + id / R, whichever process
            // sent it (3 decimals in the CSV).
            let intended_ms = at_ms + row.request_id as f64 * 5.0;
            assert!(
                (row.timestamp_ms - intended_ms).abs() < 0.002,
                "id {}: {} vs {intended_ms}",
                row.request_id,
                row.timestamp_ms
            );
            ids.push(row.request_id);
        }
        let s = summary(&dir);
        assert_eq!(
            (s["total"].as_u64(), s["succeeded"].as_u64()),
            (Some(50), Some(50))
        );
        assert_eq!(s["target_rate_rps"].as_f64(), Some(50.0));
        let shard = &s["shard"];
        assert_eq!(shard["index"].as_u64(), Some(index as u64));
        assert_eq!(shard["count"].as_u64(), Some(4));
        assert_eq!(shard["start_at_unix_ms"].as_f64(), Some(at_ms));
        let skew_ms = shard["start_skew_ms"].as_f64().unwrap();
        assert!(skew_ms >= 0.0, "{skew_ms}");
        assert_eq!(shard.as_object().unwrap().len(), 4, "{shard}");
        check_histogram(&s);
        plans.push(s["plan"].clone());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert_eq!(
        plans[0],
        json!({
            "url": url, "api": "simulator", "mode": "open", "rate_rps": 200.0,
            "arrival": "constant", "seed": null, "concurrency": null, "requests": 200,
            "duration_s": null, "batch_size": 1, "batch_wait_ms": 0,
            "connection": "pooled", "http2": false, "profile": null
        })
    );
    assert!(plans.iter().all(|p| *p == plans[0]), "{plans:?}");
}

#[test]
fn closed_loop_shards_split_the_workers_and_the_ids() {
    let server = common::simulator("zero-cost");
    let root = common::temp_dir("shards-closed");
    let url = format!("http://{}/v1/infer", server.addr);
    let (_, at_ms) = start_at(1500);
    let at_text = rfc3339_plus_one_hour(at_ms);
    let args = strings(&[
        "--url",
        &url,
        "-c",
        "8",
        "-n",
        "100",
        "--start-at",
        &at_text,
        "--timeout",
        "5s",
        "--warmup",
        "4",
        "-q",
    ]);
    let outputs = run_shards(&args, 4, false, &root);
    let mut ids = Vec::new();
    for (index, out) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {index}: {stderr}");
        let dir = root.join(format!("shard-{index}"));
        let own: Vec<u64> = rows(&dir).iter().map(|r| r.request_id).collect();
        // Ids index, index + 4, ... below 100; the warm-up is not logged.
        let mut sorted = own.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (index as u64..100).step_by(4).collect::<Vec<_>>());
        ids.extend(own);
        let s = summary(&dir);
        assert_eq!(s["total"].as_u64(), Some(25));
        assert_eq!(
            s["concurrency"].as_u64(),
            Some(2),
            "8 workers over 4 shards"
        );
        assert_eq!(s["shard"]["start_at_unix_ms"].as_f64(), Some(at_ms));
        assert!(s["shard"]["start_skew_ms"].as_f64().is_some());
        let plan = &s["plan"];
        assert_eq!(
            (
                plan["mode"].as_str(),
                plan["concurrency"].as_u64(),
                plan["requests"].as_u64()
            ),
            (Some("closed"), Some(8), Some(100))
        );
        assert!(plan["rate_rps"].is_null() && plan["arrival"].is_null());
        check_histogram(&s);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());

    // With -z each shard strides its ids however many it gets to send.
    let root = common::temp_dir("shards-closed-z");
    let args = strings(&["--url", &url, "-c", "3", "-z", "300ms", "-q"]);
    for (index, out) in run_shards(&args, 2, true, &root).iter().enumerate() {
        assert_eq!(out.status.code(), Some(0));
        let dir = root.join(format!("shard-{index}"));
        let mut own: Vec<u64> = rows(&dir).iter().map(|r| r.request_id).collect();
        own.sort_unstable();
        assert!(!own.is_empty());
        let expected: Vec<u64> = (0..own.len() as u64)
            .map(|j| j * 2 + index as u64)
            .collect();
        assert_eq!(own, expected);
        let s = summary(&dir);
        // -c 3 over 2 shards: 2 and 1.
        assert_eq!(s["concurrency"].as_u64(), Some(2 - index as u64));
        assert!(s["shard"]["start_at_unix_ms"].is_null() && s["shard"]["start_skew_ms"].is_null());
        assert_eq!(s["plan"]["duration_s"].as_f64(), Some(0.3));
        assert!(s["plan"]["requests"].is_null());
    }
}

#[test]
fn a_late_shard_pays_its_lateness_in_latency() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("shards-late");
    let url = format!("http://{}/v1/infer", server.addr);
    // 700 ms in the past: within the second a scheduler may take to start
    // a shard (a start further back is refused before any request).
    let (at_text, at_ms) = start_at(-700);
    let out = loadgen()
        .args(["--url", &url, "--rate", "200", "-n", "40", "--shard", "0/1"])
        .args(["--start-at", &at_text, "-q", "--out-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("WARNING: started"), "{stderr}");
    assert!(
        stderr.contains("ms after --start-at; its latencies include that lateness"),
        "{stderr}"
    );
    let s = summary(&dir);
    let skew_ms = s["shard"]["start_skew_ms"].as_f64().unwrap();
    // 700 ms, plus the time the process took to start.
    assert!((700.0..6000.0).contains(&skew_ms), "{skew_ms}");
    assert_eq!(s["shard"]["start_at_unix_ms"].as_f64(), Some(at_ms));
    let rows = rows(&dir);
    assert_eq!(rows.len(), 40);
    for row in &rows {
        // Every send was due within 200 ms of --start-at and went out after
        // the start, so its latency holds the rest of the lateness.
        assert!(
            row.latency_ms >= skew_ms - row.request_id as f64 * 5.0 - 0.01,
            "{row:?} skew {skew_ms}"
        );
        assert!((row.timestamp_ms - (at_ms + row.request_id as f64 * 5.0)).abs() < 0.002);
    }
    assert!(s["p50_ms"].as_f64().unwrap() >= skew_ms - 200.0, "{s}");
    assert!(s["rate_warning"].is_string(), "late sends are reported");
    check_histogram(&s);
}

#[test]
fn an_unsharded_summary_has_the_plan_and_the_histogram() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("shards-none");
    let url = format!("http://{}/v1/infer", server.addr);
    let json_path = dir.join("run.json");
    let out = loadgen()
        .args(["--url", &url, "-c", "2", "-n", "20", "-q", "--json"])
        .arg(&json_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(s["shard"].is_null());
    assert_eq!(s["plan"]["concurrency"].as_u64(), Some(2));
    assert_eq!(s["plan"]["requests"].as_u64(), Some(20));
    // The keys that were there before are still there.
    for key in [
        "total",
        "succeeded",
        "failed",
        "p50_ms",
        "p95_ms",
        "throughput_rps",
        "duration_s",
        "mode",
    ] {
        assert!(s.get(key).is_some(), "{key}");
    }
    check_histogram(&s);
    assert_eq!(s["succeeded"].as_u64(), Some(20));
}

#[test]
fn bad_distributed_flags_exit_2_naming_the_flag() {
    let dir = common::temp_dir("shards-flags");
    let out_dir = dir.join("out");
    let out_dir = out_dir.to_str().unwrap();
    let cases: [(&[&str], &str); 10] = [
        (&["--shard", "x"], "--shard takes INDEX/COUNT"),
        (&["--shard", "0/0"], "the shard count must be 1..=1024"),
        (&["--shard", "2000"], "the shard count must be 1..=1024"),
        (
            &["--shard", "4"],
            "--shard 4 takes the index from JOB_COMPLETION_INDEX",
        ),
        (
            &["--shard", "4/4"],
            "the index must be below the count, 0..=3",
        ),
        (
            &["-c", "2", "--shard", "1/4"],
            "-c 2 --shard 1/4: the closed loop splits -c across the shards",
        ),
        (&["--start-at", "10:00"], "--start-at takes RFC 3339"),
        (
            &["--start-at", "2025-02-30T10:00:00Z"],
            "day 30 is not 1..=28",
        ),
        (&["--start-at", "2999-12-02T10:00:00Z"], "--start-at is"),
        (
            &["--out-dir", out_dir, "-o", "log.csv"],
            "--out-dir writes DIR/log.csv",
        ),
    ];
    for (args, needle) in cases {
        // None of these opens a connection: the default URL is never used.
        let out = loadgen().args(args).arg("-q").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = loadgen()
        .args(["--shard", "4", "--rate", "5", "-n", "8"])
        .env("JOB_COMPLETION_INDEX", "four")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("JOB_COMPLETION_INDEX=\"four\" is not a whole number"),
        "{stderr}"
    );
    // A refused command line creates no --out-dir.
    assert!(!Path::new(out_dir).exists());
}

/// A start more than a day ahead is a mistake, and a test never waits a day.
#[test]
fn a_start_more_than_a_day_ahead_is_refused() {
    let (at_text, _) = start_at(Duration::from_secs(25 * 3600).as_millis() as i64);
    let out = loadgen()
        .args(["--start-at", &at_text, "-q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it may be at most 24 h ahead"), "{stderr}");
}

/// `cargo xtask distributed` in small: one generator, then three shards of
/// the same command line, merged by `report merge`'s library: the union of
/// ids is the single run's, the merged percentiles are those of the
/// concatenated rows, and the merged rate is the target within 1%.
#[test]
fn merged_shards_match_one_generator() {
    let server = common::simulator("zero-cost");
    let root = common::temp_dir("shards-merge");
    let url = format!("http://{}/v1/infer", server.addr);
    let load = strings(&["--url", &url, "--rate", "150", "-n", "150", "-q"]);
    let single_dir = root.join("single");
    let single = loadgen()
        .args(&load)
        .arg("--out-dir")
        .arg(&single_dir)
        .output()
        .unwrap();
    assert_eq!(single.status.code(), Some(0), "{single:?}");

    let (at_text, _) = start_at(1500);
    let mut args = load.clone();
    args.extend(strings(&["--start-at", &at_text]));
    for (index, out) in run_shards(&args, 3, true, &root).iter().enumerate() {
        assert_eq!(out.status.code(), Some(0), "shard {index}: {out:?}");
    }
    let dirs: Vec<_> = (0..3).map(|i| root.join(format!("shard-{i}"))).collect();
    let merged = report::merge::merge(&dirs, &[]).unwrap();

    let mut single_ids: Vec<u64> = rows(&single_dir).iter().map(|r| r.request_id).collect();
    let log = merged.log.as_ref().expect("every shard had its log");
    let mut merged_ids: Vec<u64> = log.rows.iter().map(|r| r.request_id).collect();
    single_ids.sort_unstable();
    merged_ids.sort_unstable();
    assert_eq!(merged_ids, single_ids);
    assert_eq!(merged_ids, (0..150).collect::<Vec<u64>>());

    // The merged numbers are those of the shards' rows put together.
    let concatenated = model::log::Log {
        format: model::log::LogFormat::Loadgen,
        rows: dirs.iter().flat_map(|d| rows(d)).collect(),
    };
    let exact = report::summary_of_log("concatenated", None, &concatenated).unwrap();
    let s = &merged.summary;
    assert_eq!(s.percentiles_from.as_deref(), Some("rows"));
    assert_eq!(
        (s.p50_ms, s.p95_ms, s.p99_ms),
        (exact.p50_ms, exact.p95_ms, exact.p99_ms)
    );
    assert_eq!((s.total, s.failed), (150, 0));
    assert_eq!(s.status_codes.get(&200), Some(&150));
    let opened: u64 = dirs
        .iter()
        .map(|d| summary(d)["connections_opened"].as_u64().unwrap())
        .sum();
    assert_eq!(s.connections_opened, opened);
    let rate = s.achieved_rate_rps.unwrap();
    assert!((rate - 150.0).abs() / 150.0 <= 0.01, "merged rate {rate}");
}

/// Shards of a streamed run merged without their logs: TTFT, ITL and TPOT
/// come from the shards' merged histograms, within the stated bound of
/// numpy over the rows the shards logged (plus the log's rounding), and the
/// output tokens, retries and verified rows add up.
#[test]
fn llm_shards_merge_without_rows_within_the_stated_bound() {
    let server = common::simulator("llm-slots");
    let root = common::temp_dir("shards-llm");
    let url = format!("http://{}", server.addr);
    let (at_text, _) = start_at(1500);
    let args = strings(&[
        "--url",
        &url,
        "--api",
        "openai-chat",
        "--max-tokens",
        "6",
        "-n",
        "24",
        "-c",
        "4",
        "--start-at",
        &at_text,
        "-q",
    ]);
    for (index, out) in run_shards(&args, 2, true, &root).iter().enumerate() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {index}: {stderr}");
    }
    let dirs: Vec<_> = (0..2).map(|i| root.join(format!("shard-{i}"))).collect();
    let logged: Vec<model::log::LogRow> = dirs.iter().flat_map(|d| rows(d)).collect();
    for dir in &dirs {
        std::fs::remove_file(dir.join("log.csv")).unwrap();
    }
    let merged = report::merge::merge(&dirs, &["ttft_p99<=60000".parse().unwrap()]).unwrap();
    let s = &merged.summary;
    assert_eq!(s.percentiles_from.as_deref(), Some("histogram"));
    assert_eq!((s.total, s.succeeded), (24, 24));
    assert_eq!(
        s.verified_rows,
        logged.iter().filter(|r| r.verified).count() as u64
    );
    assert_eq!(
        s.retries,
        logged.iter().map(|r| u64::from(r.retries)).sum::<u64>()
    );
    let llm = s.llm.as_ref().expect("the LLM series merge without rows");
    let timings: Vec<&model::log::LlmTiming> =
        logged.iter().filter_map(|r| r.llm.as_ref()).collect();
    assert_eq!(
        llm.output_tokens,
        timings.iter().filter_map(|t| t.output_tokens).sum::<u64>()
    );
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let series = [
        (
            "ttft",
            &llm.ttft,
            sorted(timings.iter().filter_map(|t| t.ttft_ms).collect()),
        ),
        (
            "tpot",
            &llm.tpot,
            sorted(timings.iter().filter_map(|t| t.tpot_ms).collect()),
        ),
        (
            "itl",
            &llm.itl,
            sorted(timings.iter().flat_map(|t| t.itl_ms.clone()).collect()),
        ),
    ];
    // The log rounds each value to 0.001 ms; loadgen keeps what it measured.
    let rounding = 0.0005 + 1e-9;
    for (name, numbers, exact) in series {
        assert_eq!(numbers.count, exact.len() as u64, "{name}");
        assert!(!numbers.quantiles_exact, "{name}");
        let (min, max) = (exact[0], exact[exact.len() - 1]);
        assert!((numbers.min_ms.unwrap() - min).abs() <= rounding, "{name}");
        assert!((numbers.max_ms.unwrap() - max).abs() <= rounding, "{name}");
        for (value, q) in [
            (numbers.p50_ms, 0.5),
            (numbers.p90_ms, 0.9),
            (numbers.p95_ms, 0.95),
            (numbers.p99_ms, 0.99),
        ] {
            let expected = common::percentile(&exact, q);
            let bound = stats::LatencyHistogram::quantile_error_bound_ms(expected) + rounding;
            let value = value.unwrap();
            assert!(
                (value - expected).abs() <= bound,
                "{name} q={q}: {value} vs numpy {expected} (bound {bound:e})"
            );
        }
    }
    let ttft = s.slos.as_ref().unwrap()[0].clone();
    assert_eq!((ttft.measured, ttft.met), (llm.ttft.p99_ms, true));
}
