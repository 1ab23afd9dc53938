//! The binary: helpful messages and exit code 2 for bad flags, 0 when every
//! request succeeded, 1 when some failed, and the JSON summary's keys.

mod common;

use common::loadgen;

use std::time::Duration;

#[test]
fn bad_flags_exit_2_with_a_helpful_message() {
    // Every case is refused before a connection is opened; none names an
    // address off this machine.
    let cases: [(&[&str], &str); 10] = [
        (&["-c", "0"], "concurrency must be 1..="),
        (&["--rate", "-1"], "more than 0"),
        (&["-z", "5x"], "unknown unit"),
        (
            &["--url", "ftp://127.0.0.1/v1/infer"],
            "use http:// or https://",
        ),
        (
            &["--url", "127.0.0.1:8000"],
            "absolute http:// or https:// URL",
        ),
        (&["--insecure"], "apply to https://"),
        (
            &[
                "--url",
                "https://127.0.0.1:9/x",
                "--cacert",
                "/nonexistent/ca.pem",
            ],
            "--cacert /nonexistent/ca.pem",
        ),
        (&["--api", "template"], "needs --body-template"),
        (&["--batch-size", "0"], "batch size must be 1..="),
        (&["-H", "no colon"], "Name: value"),
    ];
    for (args, needle) in cases {
        let out = loadgen(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn exit_codes_follow_the_outcome_and_json_has_the_keys() {
    let server = common::spawn(common::Behavior::Ok {
        service: Duration::from_millis(1),
    });
    let dir = common::temp_dir("cli");
    let json = dir.join("summary.json");
    let csv = dir.join("log.csv");
    let url = server.url();
    let out = loadgen(&[
        "--url",
        &url,
        "-n",
        "30",
        "-c",
        "3",
        "-o",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("P95 latency"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
        "throughput_rps",
        "duration_s",
        "errors",
        "mode",
        "connection",
        "batch_size",
        "interrupted",
    ] {
        assert!(summary.get(key).is_some(), "missing {key}: {summary}");
    }
    assert_eq!(summary["total"], 30);
    assert_eq!(model::log::read_log_file(&csv).unwrap().rows.len(), 30);

    let out = loadgen(&["--url", &common::dead_url(), "-n", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("connect_refused"));
}

#[path = "../../../xtask/src/cli_check.rs"]
mod cli_check;

/// clap's own checks of the definition, and every flag of a run and of
/// `capacity` parsed at least once through the derive type: a flag whose
/// definition and type disagree (`--input-shape` once panicked "Mismatch
/// between definition and access") fails here, not in a user's hands.
#[test]
fn every_flag_parses() {
    use clap::{CommandFactory, Parser};
    use loadgen::cli::Cli;
    let samples: &[&[&str]] = &[
        &[
            "--url",
            "http://127.0.0.1:9/v1/infer",
            "--api",
            "simulator",
            "--no-verify",
        ],
        &[
            "--api",
            "openai-chat",
            "--no-stream",
            "--max-tokens",
            "8",
            "--extra-body",
            "{\"temperature\": 0}",
            "--verify",
        ],
        &[
            "--api",
            "template",
            "--body-template",
            "t.json",
            "--expect-json-path",
            "outputs",
        ],
        &[
            "--api",
            "kserve-v2",
            "--model",
            "toy",
            "--input-name",
            "INPUT",
            "--input-datatype",
            "FP32",
            "--input-shape",
            "4",
            "--output-name",
            "OUTPUT",
            "--server-stats",
            "s.json",
            "--server-metrics-url",
            "http://127.0.0.1:8002/metrics",
        ],
        &[
            "--method",
            "put",
            "--cacert",
            "ca.pem",
            "-k",
            "--tls-resume",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--profile",
            "optimized",
            "--connection",
            "pooled",
            "--http2",
            "--batch-size",
            "4",
            "--batch-wait-ms",
            "5",
            "-H",
            "X-A: b",
            "--payloads",
            "p.jsonl",
            "--timeout",
            "5s",
            "-q",
        ],
        &[
            "-c",
            "4",
            "-n",
            "10",
            "-z",
            "2s",
            "-o",
            "x.csv",
            "--json",
            "x.json",
            "--warmup",
            "5",
            "--threads",
            "2",
            "--busy-poll-us",
            "50",
        ],
        &[
            "--rate",
            "5",
            "--arrival",
            "poisson",
            "--seed",
            "7",
            "--max-in-flight",
            "9",
            "--shard",
            "0/2",
            "--start-at",
            "2026-12-02T10:00:00Z",
            "--out-dir",
            "d",
            "--output-format",
            "json",
        ],
        &[
            "capacity",
            "--json",
            "c.json",
            "--sla",
            "p95<=800",
            "--step-duration",
            "2s",
            "--warmup",
            "1s",
            "--start-rate",
            "2",
            "--max-rate",
            "50",
            "--precision",
            "0.1",
            "--repeats",
            "2",
            "--time-limit",
            "1m",
            "--arrival",
            "poisson",
            "--seed",
            "3",
            "--max-in-flight",
            "100",
        ],
        &[
            "capacity",
            "--json",
            "c.json",
            "--url",
            "http://127.0.0.1:9",
            "--api",
            "kserve-v2",
            "--input-name",
            "INPUT",
            "--input-datatype",
            "BYTES",
            "--input-shape",
            "1",
            "--output-name",
            "OUTPUT",
            "--model",
            "toy",
            "--method",
            "post",
            "--timeout",
            "1s",
            "-q",
            "--no-verify",
            "--no-stream",
            "--max-tokens",
            "3",
            "--extra-body",
            "{}",
            "--body-template",
            "t.json",
            "--expect-json-path",
            "a",
            "--cacert",
            "ca.pem",
            "-k",
            "--tls-resume",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--profile",
            "baseline",
            "--connection",
            "per-request",
            "--http2",
            "--batch-size",
            "2",
            "--batch-wait-ms",
            "1",
            "-H",
            "X: y",
            "--payloads",
            "p.jsonl",
        ],
        &["capacity", "--json", "c.json", "--verify"],
        // The flags of a run that capacity refuses with a reason.
        &[
            "capacity",
            "--json",
            "c.json",
            "-n",
            "5",
            "-z",
            "1s",
            "--rate",
            "3",
            "-c",
            "2",
            "-o",
            "x",
            "--threads",
            "2",
            "--busy-poll-us",
            "5",
            "--server-stats",
            "s",
        ],
    ];
    cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

/// Values that parse but do nothing where they are given, or would break
/// what is measured, are refused before any request, and every message
/// says what is allowed.
#[test]
fn flags_that_would_do_nothing_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rate", "5", "-c", "4", "-n", "10"],
            "-c only sizes a --warmup",
        ),
        (
            &["--batch-wait-ms", "5"],
            "with a batch size of 1 every request leaves at once",
        ),
        (
            &["--rate", "5", "-n", "5", "--busy-poll-us", "50"],
            "--threads and --busy-poll-us apply to the closed loop",
        ),
        (
            &["--http2", "--threads", "2"],
            "--threads and --busy-poll-us apply to the closed loop",
        ),
        (
            &[
                "--api",
                "openai-chat",
                "--extra-body",
                "{\"stream\": false}",
            ],
            "--extra-body may not set \"stream\": --no-stream",
        ),
        (
            &["--api", "openai-chat", "--no-verify"],
            "--no-verify applies to --api simulator",
        ),
        (&["--verify", "--no-verify"], "cannot be used with"),
        (
            &["--max-tokens", "99999999999", "--api", "openai-chat"],
            "99999999999 is out of range; --max-tokens must be 1..=1000000",
        ),
        (
            &["-c", "-1"],
            "-1 is out of range; concurrency must be 1..=10000",
        ),
        (
            &["--rate", "5", "-n", "5", "--seed", "abc"],
            "\"abc\" is not a whole number; the seed must be 0..=",
        ),
        (&["--warmup", "-5"], "the warm-up is a request count"),
        (
            &["--warmup", "5x"],
            "the warm-up is a request count (e.g. 50) or a duration",
        ),
        (
            &["--start-at", "2020-01-01T00:00:00Z"],
            "in the past; give a time from now",
        ),
        (
            &["--json", "/nonexistent/dir/x.json"],
            "--json /nonexistent/dir/x.json: the directory /nonexistent/dir does not exist",
        ),
        (
            &["-o", "same.csv", "--json", "same.csv"],
            "-o/--out and --json both name same.csv",
        ),
        (
            &["capacity", "--json", "/nonexistent/dir/c.json"],
            "the directory /nonexistent/dir does not exist",
        ),
        (
            &[
                "--api",
                "kserve-v2",
                "--server-stats",
                "/nonexistent/dir/s.json",
            ],
            "--server-stats /nonexistent/dir/s.json: the directory",
        ),
    ];
    for (args, needle) in cases {
        let out = loadgen(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_port_is_a_usage_error_before_any_request() {
    for url in [
        "http://127.0.0.1:99999/v1/infer",
        "http://127.0.0.1:65536/v1/infer",
        "http://127.0.0.1:abc/v1/infer",
        "http://127.0.0.1:/v1",
    ] {
        let out = loadgen(&["--url", url, "-n", "3"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("the port must be 1..=65535"),
            "{url}: {stderr}"
        );
        // Not silently the scheme's default port: nothing was sent.
        assert!(!stderr.contains(":80"), "{url}: {stderr}");
        assert!(out.stdout.is_empty(), "{url}");
    }
}
