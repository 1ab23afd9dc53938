//! Malformed and hostile logs given to the `report` binary: every one ends
//! in exit 2 with a message naming the file and what is wrong, or in a
//! verdict (0/1) with complete, parseable reports; never a panic, never
//! markup injected into the HTML, never a temporary file left behind.

mod common;

use std::path::Path;
use std::process::Command;

const HEADER: &str = "request_id,timestamp_ms,latency_ms,status_code,error";

fn compare(dir: &Path, after: &[u8]) -> (Option<i32>, String) {
    let good = dir.join("good.csv");
    std::fs::write(&good, format!("{HEADER}\n0,0,100,200,\n1,10,120,200,\n")).unwrap();
    let after_path = dir.join("after.csv");
    std::fs::write(&after_path, after).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("compare")
        .arg("--before")
        .arg(&good)
        .arg("--after")
        .arg(&after_path)
        .arg("--out-dir")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_logs_exit_2_with_what_is_wrong() {
    let cases: [(&str, Vec<u8>, &[&str]); 7] = [
        ("empty", Vec::new(), &["after.csv: the file is empty"]),
        (
            "missing-column",
            b"request_id,latency_ms\n0,5\n".to_vec(),
            &["no `timestamp_ms` column"],
        ),
        (
            "nan",
            format!("{HEADER}\n0,0,NaN,200,\n").into_bytes(),
            &["line 2", "latency_ms", "finite, non-negative"],
        ),
        (
            "negative",
            format!("{HEADER}\n0,0,-5,200,\n").into_bytes(),
            &["line 2", "latency_ms"],
        ),
        (
            "short-row",
            format!("{HEADER}\n0,0,100,200\n").into_bytes(),
            &["after.csv: line 2: 4 fields, the header has 5"],
        ),
        (
            "not-utf8",
            [HEADER.as_bytes(), b"\n0,0,100,200,\xff\xfe\n"].concat(),
            &["after.csv: line 2, column `error`: not UTF-8 text"],
        ),
        (
            "bad-status",
            format!("{HEADER}\n0,0,100,99999,\n").into_bytes(),
            &["status_code", "HTTP status"],
        ),
    ];
    for (name, bytes, needles) in cases {
        let dir = common::temp_dir(&format!("hostile-{name}"));
        let (code, stderr) = compare(&dir, &bytes);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("after.csv"), "{name}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{name}: {stderr}");
        }
        // Plain words, not the CSV parser's debug output.
        assert!(
            !stderr.contains("Position") && !stderr.contains('{'),
            "{name}: {stderr}"
        );
        assert!(!dir.join("out/comparison.json").exists(), "{name}");
    }
}

#[test]
fn hostile_but_parseable_logs_give_a_verdict_and_safe_reports() {
    // The Before is two good rows (100 and 120 ms); each After has one
    // verdict only: the SLA is met by the BOM-prefixed copy of the Before
    // and missed by everything else (no rows, a failed request, a P95 of
    // 1e308 ms, a duplicated and a missing id).
    let cases: [(&str, String, i32); 6] = [
        ("header-only", format!("{HEADER}\n"), 1),
        (
            "bom",
            format!("\u{feff}{HEADER}\n0,0,100,200,\n1,10,120,200,\n"),
            0,
        ),
        (
            "markup",
            format!("{HEADER}\n0,0,100,500,<script>alert(1)</script>\n1,10,120,200,\n"),
            1,
        ),
        (
            "formula",
            format!("{HEADER}\n0,0,100,500,=cmd|' /C calc'!A0\n1,10,120,200,\n"),
            1,
        ),
        (
            "huge",
            format!("{HEADER}\n0,0,1e308,200,\n1,10,1e308,200,\n"),
            1,
        ),
        (
            "duplicate-ids",
            format!("{HEADER}\n0,0,100,200,\n0,10,120,200,\n"),
            1,
        ),
    ];
    for (name, text, verdict) in cases {
        let dir = common::temp_dir(&format!("hostile-{name}"));
        let (code, stderr) = compare(&dir, text.as_bytes());
        assert_eq!(code, Some(verdict), "{name}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("out/comparison.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["schema_version"], 1, "{name}");
        let html = std::fs::read_to_string(dir.join("out/report.html")).unwrap();
        assert!(!html.contains("<script>alert"), "{name}: markup escaped");
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !report::REPORT_FILES.contains(&n.as_str()))
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
        assert_eq!(json["verdict"]["met"], verdict == 0, "{name}");
    }
}

/// `report summary` of a loadgen log with a short line 26: the file, the
/// line and the counts, nothing else.
#[test]
fn a_short_line_in_a_loadgen_log_is_named_by_file_line_and_field_counts() {
    let dir = common::temp_dir("hostile-short-line");
    let header = model::log::LOADGEN_COLUMNS.join(",");
    let mut text = format!("{header}\n");
    for id in 0..24 {
        text.push_str(&format!(
            "{id},{id},5.0,200,,true,{id},1,,,,,d{id},false,0\n"
        ));
    }
    text.push_str("24,24,5.0,200,,true,24\n");
    let path = common::write(&dir, "before.csv", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("summary")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "report: error: {}: line 26: 7 fields, the header has {}",
            path.display(),
            model::log::LOADGEN_COLUMNS.len()
        )
    );
}
