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
