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

#[test]
fn a_pair_given_twice_is_refused_however_spelled() {
    let root = common::temp_dir("repeats-twice");
    let fast: Vec<f64> = (1..=20).map(f64::from).collect();
    let a = pair(&root, "p1", 7, &[100.0; 20], &fast);
    let b = pair(&root, "p2", 8, &[110.0; 20], &fast);
    let same_a = root.join("p2").join("..").join("p1");
    for pairs in [
        vec![a.clone(), a.clone()],
        vec![a.clone(), b.clone(), same_a.clone()],
    ] {
        let (code, stdout, stderr) = repeats(&root, &pairs);
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(
            stderr.contains("is given twice") && stderr.contains("give each pair's directory once"),
            "{stderr}"
        );
        assert!(!root.join("repeats.json").exists(), "nothing is written");
    }
    let (code, stdout, _) = repeats(&root, &[a, b]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("2 of 2 pairs met"), "{stdout}");
}

/// `report compare` run from `root` with paths relative to it, the logs of
/// one pair outside the pair's directory; then the whole results directory
/// copied elsewhere, the original removed, and `report repeats` run from
/// a directory holding other logs under the same relative names.
#[test]
fn a_results_directory_copied_elsewhere_reads_its_own_logs_from_any_cwd() {
    let root = common::temp_dir("repeats-moved");
    let results = root.join("results");
    for sub in ["p1", "p2", "logs2"] {
        std::fs::create_dir_all(results.join(sub)).unwrap();
    }
    let before_a: Vec<f64> = (1..=50).map(f64::from).collect();
    let before_b: Vec<f64> = (51..=100).map(f64::from).collect();
    let half = |v: &[f64]| v.iter().map(|x| x / 2.0).collect::<Vec<f64>>();
    let write_log = |rel: &str, values: &[f64]| {
        std::fs::write(results.join(rel), common::loadgen_ok_log(values)).unwrap();
    };
    write_log("p1/before.csv", &before_a);
    write_log("p1/after.csv", &half(&before_a));
    write_log("logs2/before.csv", &before_b);
    write_log("logs2/after.csv", &half(&before_b));
    for (out, before, after) in [
        (
            "results/p1",
            "results/p1/before.csv",
            "results/p1/after.csv",
        ),
        (
            "results/p2",
            "results/logs2/before.csv",
            "results/logs2/after.csv",
        ),
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_report"))
            .current_dir(&*root)
            .args(["compare", "--before", before, "--after", after])
            .args(["--sla-p95-ms", "40", "--out-dir", out])
            .output()
            .unwrap();
        assert!(matches!(status.status.code(), Some(0 | 1)), "{status:?}");
    }
    let comparison: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("p2/comparison.json")).unwrap())
            .unwrap();
    assert_eq!(comparison["before"]["log_file"], "../logs2/before.csv");

    // Copy results/ elsewhere and remove the original.
    let elsewhere = common::temp_dir("repeats-moved-copy");
    let copied = elsewhere.join("copied");
    copy_dir(&results, &copied);
    std::fs::remove_dir_all(&results).unwrap();
    // Another directory, with other logs under the names the comparisons
    // were given (results/p1/before.csv ...): they must not be read.
    let decoy = common::temp_dir("repeats-moved-decoy");
    for rel in [
        "results/p1/before.csv",
        "results/p1/after.csv",
        "results/logs2/before.csv",
        "results/logs2/after.csv",
    ] {
        let path = decoy.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, common::loadgen_ok_log(&[1000.0; 5])).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .current_dir(&*decoy)
        .arg("repeats")
        .arg("--out-dir")
        .arg(&copied)
        .arg(copied.join("p1"))
        .arg(copied.join("p2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(copied.join("repeats.json")).unwrap())
            .unwrap();
    // The pooled rows are the pairs' own: Linear P95 of 1..=100 is 95.05.
    let before = json["before_p95_ms"]["estimate"].as_f64().unwrap();
    assert!((before - 95.05).abs() < 1e-9, "{before}");
    let after = json["after_p95_ms"]["estimate"].as_f64().unwrap();
    assert!((after - 47.525).abs() < 1e-9, "{after}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
