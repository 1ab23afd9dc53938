//! The baseline profile reproduces `input.py`: against two fresh simulators
//! with the same configuration, both runs keep the same throughput and their
//! P50 and P95 agree within 5%.
//!
//! What the comparison needs: the server, not the client, must be the
//! bottleneck. `input.py` builds a fresh `httpx.AsyncClient` (an SSL context
//! loaded with certifi's roots) for every request, on its one event-loop
//! thread: measured at 57 ms of CPU per request on the 2-vCPU development VM
//! (2026-12-02). Against the `placeholder` scenario (2 workers x 102 ms,
//! 19.6 req/s) that is more than a whole core, so Python itself throttles the
//! run (17.7 req/s) and its event-loop queue adds ~10% to its P95: a
//! property of the Python client, not a flaw of the reproduction, and what
//! `./run_tests`' evidence section reports. Here the server is the
//! `placeholder` scenario slowed to 4 workers x 402 ms (~10 req/s), which
//! keeps Python's thread near half busy even on that VM: measured
//! sequentially there, P50 2006.1 vs 2009.9 ms and P95 2133.7 vs 2132.3 ms.
//! The test checks that premise (the two throughputs within 5%) before it
//! compares percentiles, so a machine too slow for it fails saying why.
//! Skipped, with a message, when no Python with httpx is found; under CI that
//! is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use loadgen::{run, LoadConfig, Profile};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_with_httpx() -> Option<PathBuf> {
    let candidates = [
        repo_root().join(".venv/bin/python"),
        PathBuf::from("python3"),
    ];
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import httpx"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The `placeholder` scenario at about half its rate: 4 workers, 400 ms +
/// 2 ms per item, the same jitter and seed.
fn slow_placeholder() -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 4;
    config.service.base_ms = 400.0;
    stub_server::spawn(config).unwrap()
}

/// Completed requests per second over a log: from the first start to the
/// last response.
fn throughput_rps(path: &Path) -> f64 {
    let log = model::log::read_log_file(path).unwrap();
    let first_ms = log
        .rows
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(f64::INFINITY, f64::min);
    let last_ms = log
        .rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    log.rows.len() as f64 / ((last_ms - first_ms) / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_matches_input_py() {
    let Some(python) = python_with_httpx() else {
        common::skip("no Python with httpx (looked for .venv/bin/python and python3)");
        return;
    };
    let dir = common::temp_dir("input-py");
    let py_log = dir.join("input_py.csv");
    let rust_log = dir.join("loadgen.csv");

    // Both runs at once, each against its own fresh simulator, to halve the
    // test's wall time; neither run is CPU-bound on the Rust side.
    let py_server = slow_placeholder();
    let mut command = Command::new(&python);
    command
        .arg(repo_root().join("input.py"))
        .env("API_URL", py_server.url())
        .env("OUTPUT_CSV", &py_log);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    let python_run = tokio::task::spawn_blocking(move || command.output());

    let rust_server = slow_placeholder();
    let config = LoadConfig {
        url: rust_server.url(),
        log_path: Some(rust_log.clone()),
        ..LoadConfig::from_profile(Profile::Baseline)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    let output = python_run.await.unwrap().unwrap();
    assert!(
        output.status.success(),
        "input.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary.succeeded, 400, "{summary:?}");

    let (py_rps, rust_rps) = (throughput_rps(&py_log), throughput_rps(&rust_log));
    println!("throughput: input.py {py_rps:.2} req/s, loadgen baseline {rust_rps:.2} req/s");
    assert!(
        (py_rps - rust_rps).abs() <= 0.05 * rust_rps,
        "input.py ran at {py_rps:.2} req/s against the reproduction's {rust_rps:.2}: \
         the Python client, not the server, set the pace on this machine, so their \
         latencies cannot be compared"
    );
    let py = common::ok_latencies(&py_log);
    let rust = common::ok_latencies(&rust_log);
    assert_eq!((py.len(), rust.len()), (400, 400));
    for q in [0.50, 0.95] {
        let (p, r) = (common::percentile(&py, q), common::percentile(&rust, q));
        println!(
            "q{q}: input.py {p:.1} ms, loadgen baseline {r:.1} ms ({:+.1}%)",
            (r - p) / p * 100.0
        );
        assert!(
            (r - p).abs() <= 0.05 * p,
            "q{q}: input.py {p:.1} ms vs loadgen {r:.1} ms"
        );
    }
}
