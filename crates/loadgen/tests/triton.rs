//! End to end against a real NVIDIA Triton Inference Server (the
//! `nvidia-pytriton` wheel, serving `xtask/triton/serve.py`'s model): the
//! KServe v2 client's single and batched requests are verified, and
//! Triton's own statistics count exactly what the client sent.
//!
//! Triton lives in the venv `cargo xtask perf --server triton` makes
//! (`.venv-triton`, from `/usr/bin/python3.11`), or wherever
//! `TRITON_PYTHON` points. Without it the test says why it skipped; under
//! CI (`.ci/run` installs Triton first) that is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use loadgen::{ApiChoice, KServeOptions, LoadConfig};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Triton's interpreter, or why there is none.
fn triton_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("TRITON_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-triton/bin/python"));
    if !python.exists() {
        return Err(format!(
            "{} does not exist (make it with `cargo xtask perf --server triton` or xtask/triton/setup.sh)",
            python.display()
        ));
    }
    let imports = Command::new(&python)
        .args(["-c", "import pytriton"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !imports {
        return Err(format!("{} cannot import pytriton", python.display()));
    }
    Ok(python)
}

/// Triton, stopped (SIGTERM, then kill) when dropped.
struct Triton {
    child: Child,
    base_url: String,
}

impl Triton {
    fn start(python: &PathBuf, extra: &[&str]) -> Self {
        let mut child = Command::new(python)
            .arg(repo_root().join("xtask/triton/serve.py"))
            .args(["--http-port", "0", "--base-ms", "20", "--per-item-ms", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve.py starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("a first line");
        // Keep reading so Triton never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let base_url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve.py printed {line:?}"))
            .to_owned();
        Self { child, base_url }
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with our own child's pid and a valid signal.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_against_real_triton_verifies_outputs_and_statistics_count_requests() {
    let python = match triton_python() {
        Ok(python) => python,
        Err(why) => {
            common::skip(&format!("no Triton for the end-to-end test: {why}"));
            return;
        }
    };
    let triton = Triton::start(&python, &[]);
    for batch_size in [1, 4] {
        let dir = common::temp_dir("triton");
        let config = LoadConfig {
            api: ApiChoice::KServeV2(KServeOptions::default()),
            requests: Some(24),
            concurrency: 4,
            batch_size,
            batch_wait_ms: 50,
            server_stats_path: Some(dir.join("stats.json")),
            // The workflow's Triton model answers as the simulator does.
            verify: Some(true),
            ..common::config(&triton.base_url, &dir)
        };
        let summary = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (24, 0), "{summary:?}");
        assert!(summary.verified, "Triton's outputs are expected_output's");
        assert_eq!(summary.verified_rows, 24);
        assert_eq!(summary.server_stats_warning, None);
        let stats: model::kserve::ServerStatsDelta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap())
                .unwrap();
        let d = &stats.delta;
        assert_eq!(
            d.inference_stats.success.count, summary.http_requests,
            "{d:?}"
        );
        assert_eq!(d.inference_stats.fail.count, 0);
        assert_eq!(d.inference_count, 24, "Triton counts items: {d:?}");
        let executed: u64 = d
            .batch_stats
            .iter()
            .map(|b| b.batch_size * b.compute_infer.count)
            .sum();
        assert_eq!(executed, 24, "{d:?}");
        // Each execution sleeps (20 + 1 x batch) ms x jitter: the mean per
        // request must be at least the fixed part.
        let infer_ms = d.inference_stats.compute_infer.ns as f64
            / 1e6
            / d.inference_stats.compute_infer.count as f64;
        assert!(infer_ms >= 15.0, "{infer_ms} ms per execution");
    }
    drop(triton);

    // Statistics behind an access token (pytriton's default): the
    // Prometheus counters on the metrics port stand in for them.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
        .to_string();
    let triton = Triton::start(
        &python,
        &["--restrict-statistics", "--metrics-port", &metrics_port],
    );
    let dir = common::temp_dir("triton-metrics");
    let config = LoadConfig {
        api: ApiChoice::KServeV2(KServeOptions::default()),
        requests: Some(24),
        concurrency: 4,
        batch_size: 4,
        batch_wait_ms: 50,
        server_stats_path: Some(dir.join("stats.json")),
        server_metrics_url: Some(format!("http://127.0.0.1:{metrics_port}/metrics")),
        ..common::config(&triton.base_url, &dir)
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.succeeded, 24, "{summary:?}");
    assert_eq!(summary.server_stats_warning, None);
    let stats: model::kserve::ServerStatsDelta =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    assert!(stats.path.ends_with("/metrics"), "{}", stats.path);
    assert_eq!(
        stats.delta.inference_stats.success.count,
        summary.http_requests
    );
    assert_eq!(stats.delta.inference_count, 24);
    assert_eq!(stats.delta.execution_count, summary.http_requests);

    // A wrong input name is one error before any load, in Triton's words.
    let dir = common::temp_dir("triton-bad");
    let config = LoadConfig {
        api: ApiChoice::KServeV2(KServeOptions {
            input_name: Some("text".into()),
            ..KServeOptions::default()
        }),
        ..common::config(&triton.base_url, &dir)
    };
    let err = loadgen::prepare(config)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no input \"text\""), "{err}");
    let config = LoadConfig {
        api: ApiChoice::KServeV2(KServeOptions::default()),
        model: "no-such-model".into(),
        ..common::config(&triton.base_url, &dir)
    };
    let err = loadgen::prepare(config)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-model"), "{err}");
}
