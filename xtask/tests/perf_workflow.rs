//! End-to-end runs of `cargo xtask perf` on a fast simulator profile, and its exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn comparison(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("comparison.json")).expect("comparison.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The placeholder profile scaled down tenfold (base 10 ms, 0.2 ms per item)
/// keeps the queueing story and runs in seconds.
const FAST: [&str; 3] = [
    "--skip-python",
    "--server-arg=--base-ms=10",
    "--server-arg=--per-item-ms=0.2",
];

#[test]
fn workflow_runs_end_to_end_and_gates_on_the_sla() {
    let out = temp_dir("e2e");
    let out_arg = out.to_string_lossy().into_owned();
    let mut args = vec!["perf", "--out", &out_arg];
    args.extend(FAST);
    let run = xtask(&args);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    for file in [
        "before.csv",
        "after.csv",
        "comparison.json",
        "comparison.csv",
        "report.md",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let c = comparison(&out);
    let before_p95 = c["before"]["p95_ms"].as_f64().unwrap();
    let after_p95 = c["after"]["p95_ms"].as_f64().unwrap();
    // 20 requests in flight on 2 workers of ~10 ms queue ~10 deep: ~100 ms.
    // Batches of 10 at ~12 ms with nothing queued: well under half of that.
    assert!(before_p95 > 60.0, "before P95 {before_p95}");
    assert!(
        after_p95 < before_p95 / 2.0,
        "after P95 {after_p95} vs before {before_p95}"
    );
    assert_eq!(c["after"]["total"], 400);
    assert_eq!(c["after"]["failed"], 0);
    assert_eq!(c["quality"]["identical_inputs"], true);
    assert_eq!(c["quality"]["mismatches"], 0);
    assert_eq!(c["conditions"]["quantile_method"], "linear");
    assert_eq!(c["verdict"]["met"], true);

    // Same run, an SLA the After cannot meet: exit 1, and the JSON says why.
    let strict = xtask(&[&args[..], &["--sla-p95-ms", "1"]].concat());
    assert_eq!(
        strict.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&strict.stdout)
    );
    assert_eq!(comparison(&out)["verdict"]["met"], false);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_flags_exit_2_with_a_message_that_says_what_is_allowed() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["perf", "--repeat", "0"],
            "--repeat must be between 1 and 20",
        ),
        (
            &["perf", "--sla-p95-ms", "-5"],
            "--sla-p95-ms must be a positive number",
        ),
        (
            &[
                "perf",
                "--url",
                "http://127.0.0.1:9/v1/infer",
                "--server-arg=--workers=2",
            ],
            "cannot be used with --url",
        ),
        (&["perf", "--no-such-flag"], "unexpected argument"),
    ];
    for (args, message) in cases {
        let run = xtask(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
