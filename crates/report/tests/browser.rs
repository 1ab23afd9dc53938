//! report.html in a real browser: headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs) loads the page from disk, renders it to a PNG,
//! and dumps the DOM it built. The page must load without a console error,
//! fetch nothing, and every chart must hold drawn marks.
//!
//! Without a browser the test says why and passes; with `CI` set it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use model::capacity::{CapacityReport, Phase, StepRecord, Stopped};

/// The browser: `$CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A report with every chart: logs with server timings on both sides and a
/// capacity search.
fn write_report(dir: &Path) -> PathBuf {
    let before: Vec<f64> = (0..60).map(|i| 900.0 + f64::from(i % 13) * 20.0).collect();
    let after: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 11) * 5.0).collect();
    let before_log = common::write(dir, "before.csv", &common::loadgen_ok_log(&before));
    let after_log = common::write(dir, "after.csv", &common::loadgen_ok_log(&after));
    // What `loadgen capacity --json` writes, through its own type.
    let step = |offered_rps: f64, p95: f64, sustainable: bool| StepRecord {
        phase: Phase::Bracket,
        offered_rps,
        achieved_rps: offered_rps,
        p50_ms: Some(p95 * 0.8),
        p95_ms: Some(p95),
        p99_ms: Some(p95 * 1.1),
        succeeded: 100,
        failed: 0,
        error_rate: 0.0,
        sustainable,
        reason: "test".into(),
    };
    let capacity = dir.join("capacity.json");
    CapacityReport {
        schema_version: model::capacity::SCHEMA_VERSION,
        sla: vec!["p95<=800".into()],
        max_rate_rps: Some(10.0),
        p95_at_max_ms: Some(150.0),
        p95_interval_ms: Some([140.0, 160.0]),
        goodput_rps: Some(9.9),
        curve: vec![
            step(5.0, 120.0, true),
            step(10.0, 150.0, true),
            step(20.0, 1900.0, false),
        ],
        step_duration_s: 10.0,
        warmup_s: 2.0,
        warmup_requests: None,
        precision: 0.05,
        repeats: 3,
        elapsed_s: 60.0,
        bounded_by_time: false,
        stopped: Stopped::Converged,
    }
    .write_json(&capacity)
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("compare")
        .arg("--before")
        .arg(&before_log)
        .arg("--after")
        .arg(&after_log)
        .arg("--capacity")
        .arg(&capacity)
        .arg("--capacity-open-loop")
        .arg(&capacity)
        .arg("--out-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    dir.join("report.html")
}

#[test]
fn report_html_renders_in_chromium_with_every_chart_drawn() {
    let Some(browser) = chromium() else {
        let why = "no Chromium found (set CHROMIUM or install Debian's `chromium`)";
        assert!(std::env::var_os("CI").is_none(), "{why}; CI must have one");
        eprintln!("skipped: {why}");
        return;
    };
    let dir = common::temp_dir("browser");
    let html = write_report(&dir);
    let url = format!("file://{}", html.display());
    let png = dir.join("report.png");
    let profile = dir.join("profile");
    let run = |extra: &[String]| {
        Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,6000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let shot = run(&[format!("--screenshot={}", png.display())]);
    assert!(shot.status.success(), "{shot:?}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    // A blank 1280x6000 page compresses to a few KB; drawn charts do not.
    assert!(size > 40_000, "screenshot of {size} bytes: nothing drawn?");

    let dump = run(&["--dump-dom".to_owned()]);
    assert!(dump.status.success(), "{dump:?}");
    let stderr =
        String::from_utf8_lossy(&dump.stderr).into_owned() + &String::from_utf8_lossy(&shot.stderr);
    let console_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console_errors.is_empty(), "console: {console_errors:#?}");
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dom.contains("Before/After latency report"),
        "page not loaded"
    );
    assert!(
        !dom.contains("src=\"http") && !dom.contains("href=\"http"),
        "the page fetches from the network"
    );
    // Every chart (one <svg> each) holds drawn data marks.
    let charts: Vec<&str> = dom.split("<svg").skip(1).collect();
    assert!(charts.len() >= 7, "{} charts", charts.len());
    assert!(
        dom.contains("Capacity under the SLA: the client for open-loop traffic"),
        "no open-loop capacity section"
    );
    for (i, chart) in charts.iter().enumerate() {
        let body = chart.split("</svg>").next().unwrap_or("");
        let title = body
            .split("<text")
            .nth(1)
            .and_then(|t| t.split('>').nth(1))
            .and_then(|t| t.split('<').next())
            .unwrap_or("?");
        assert!(
            body.matches("class=\"mark\"").count() > 0,
            "chart {i} ({title}) drew no mark"
        );
    }
}
