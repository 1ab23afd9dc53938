//! `report repeats`: the interleaved proof read back from pairs' reports,
//! checked against values worked by hand (numpy's default quantile).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Writes one pair: its logs, and its reports through `report compare`
/// with `conditions.server_seed = seed`; returns the pair's directory.
fn pair(root: &Path, name: &str, seed: u64, before: &[f64], after: &[f64]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let before_log = common::write(&dir, "before.csv", &common::loadgen_ok_log(before));
    let after_log = common::write(&dir, "after.csv", &common::loadgen_ok_log(after));
    let conditions = common::write(
        &dir,
        "conditions.json",
        &format!(r#"{{"server_seed": {seed}}}"#),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("compare")
        .arg("--before")
        .arg(&before_log)
        .arg("--after")
        .arg(&after_log)
        .arg("--conditions")
        .arg(&conditions)
        .args(["--sla-p95-ms", "40"])
        .arg("--out-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    dir
}

fn repeats(out_dir: &Path, pairs: &[PathBuf]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("repeats")
        .arg("--out-dir")
        .arg(out_dir)
        .args(pairs)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pooled_p95_difference_seeds_and_verdict() {
    let root = common::temp_dir("repeats");
    // Before: 1..=100 ms split over two pairs; After: half of each.
    let before_a: Vec<f64> = (1..=50).map(f64::from).collect();
    let before_b: Vec<f64> = (51..=100).map(f64::from).collect();
    let half = |v: &[f64]| v.iter().map(|x| x / 2.0).collect::<Vec<f64>>();
    let a = pair(&root, "p1", 42, &before_a, &half(&before_a));
    let b = pair(&root, "p2", 43, &before_b, &half(&before_b));
    let (code, stdout, stderr) = repeats(&root, &[a, b]);
    // Pair 2's After P95 is 49.75 ms > 40: not met, so the proof fails.
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("repeats.json")).unwrap()).unwrap();
    assert_eq!(json["pairs"], 2);
    assert_eq!(json["met_count"], 1);
    assert_eq!(json["met_every_pair"], false);
    assert_eq!(json["rows"][0]["seed"], 42);
    assert_eq!(json["rows"][1]["seed"], 43);
    assert_eq!(json["rows"][0]["met"], true);
    // Linear P95 of 1..=100: 1 + 0.95 * 99 = 95.05; of its halves 47.525.
    let diff = &json["diff_p95_ms"];
    assert!((diff["estimate"].as_f64().unwrap() - (47.525 - 95.05)).abs() < 1e-9);
    let (lower, upper) = (
        diff["lower"].as_f64().unwrap(),
        diff["upper"].as_f64().unwrap(),
    );
    assert!(lower < -47.525 && -47.525 < upper, "{diff}");
    assert!((json["before_p95_ms"]["estimate"].as_f64().unwrap() - 95.05).abs() < 1e-9);
    // Pair 1: Linear P95 of 1..=50 is 1 + 0.95 * 49 = 47.55.
    assert!((json["rows"][0]["before_p95_ms"].as_f64().unwrap() - 47.55).abs() < 1e-9);
    assert!(
        stdout.contains("1 of 2 pairs met the verdict (seeds 42, 43): FAIL"),
        "{stdout}"
    );
    assert!(root.join("repeats.md").exists());
}

#[test]
fn every_pair_met_passes_and_a_missing_pair_is_an_error() {
    let root = common::temp_dir("repeats-pass");
    let fast: Vec<f64> = (1..=20).map(f64::from).collect();
    let a = pair(&root, "p1", 7, &[100.0; 20], &fast);
    let b = pair(&root, "p2", 8, &[110.0; 20], &fast);
    let (code, stdout, _) = repeats(&root, &[a.clone(), b]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("2 of 2 pairs met the verdict (seeds 7, 8): PASS"),
        "{stdout}"
    );

    let (code, _, stderr) = repeats(&root, &[a, root.join("nowhere")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nowhere"), "{stderr}");
}
