//! `--server-metrics-url URL --server-metrics FILE`: the server's
//! Prometheus metrics scraped through a run on the log's clock. Against
//! stub-server's LLM routes (which expose vLLM's names) the counters'
//! increase over the run equals what the client counted; a URL that cannot
//! be reached or answers something else is a warning and the run goes on;
//! the flags are checked before any request.

mod common;

use model::server_metrics::{Role, ServerMetrics};

/// A stub-server whose LLM routes run 2 slots at 4 ms a step: 6 streams in
/// flight keep 4 waiting.
fn llm_server() -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.llm = stub_server::LlmConfig {
        max_num_seqs: 2,
        step_base_ms: 4.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        ..stub_server::LlmConfig::default()
    };
    stub_server::spawn(config).unwrap()
}

fn s(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// Runs loadgen's OpenAI completions (40 requests, 6 at a time, 8 tokens
/// each) against `server` with `extra` flags; returns its output.
fn run(
    server: &stub_server::RunningServer,
    dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let url = format!("http://{}", server.addr);
    let csv = dir.join("log.csv");
    let json = dir.join("summary.json");
    let mut args = vec![
        "--url",
        &url,
        "--api",
        "openai-completions",
        "--max-tokens",
        "8",
        "-n",
        "40",
        "-c",
        "6",
        "--timeout",
        "10s",
        "-o",
        s(&csv),
        "--json",
        s(&json),
        "-q",
    ];
    args.extend_from_slice(extra);
    common::loadgen(&args)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn counters_over_the_run_equal_the_clients_counts() {
    let server = llm_server();
    let dir = common::temp_dir("server-metrics");
    let file = dir.join("server_metrics.json");
    let metrics_url = format!("http://{}/metrics", server.addr);
    let out = run(
        &server,
        &dir,
        &[
            "--server-metrics-url",
            &metrics_url,
            "--server-metrics",
            s(&file),
            "--server-metrics-interval",
            "100ms",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("WARNING"), "{}", text(&out));
    assert!(stderr.contains("vLLM names"), "{}", text(&out));

    let rows = model::log::read_log_file(&dir.join("log.csv"))
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().all(|r| r.ok), "{rows:?}");
    let metrics = ServerMetrics::read(&file).unwrap();
    assert_eq!(metrics.url, metrics_url);
    assert_eq!(metrics.interval_ms, 100.0);

    // Counters: the last scrape less the first.
    let delta = |name: &str| {
        let series = metrics.series_of(name);
        assert!(series.len() >= 2, "{name}: {series:?}");
        series.last().unwrap().1 - series.first().unwrap().1
    };
    assert_eq!(delta("vllm:request_success_total"), 40.0);
    let output_tokens: u64 = rows
        .iter()
        .map(|r| r.llm.as_ref().unwrap().output_tokens.unwrap())
        .sum();
    assert_eq!(output_tokens, 40 * 8);
    assert_eq!(delta("vllm:generation_tokens_total"), output_tokens as f64);
    let prompt_tokens: u64 = rows.iter().map(|r| r.prompt_tokens.unwrap()).sum();
    assert_eq!(delta("vllm:prompt_tokens_total"), prompt_tokens as f64);
    // Histograms, differenced: one observation per request.
    for role in [
        Role::Ttft,
        Role::QueueTime,
        Role::PrefillTime,
        Role::DecodeTime,
    ] {
        let h = metrics.histogram_delta(role).unwrap();
        assert_eq!(h.count, 40.0, "{role:?}");
        assert_eq!(
            h.buckets.last().unwrap(),
            &(f64::INFINITY, 40.0),
            "{role:?}"
        );
    }
    assert_eq!(metrics.delta(Role::Preemptions), Some(0.0));
    // Gauges over time: never more running than the slots, and with 6
    // streams on 2 slots some scrape saw a queue.
    assert_eq!(metrics.max(Role::Running), Some(2.0));
    assert!(
        metrics.max(Role::Waiting).unwrap() >= 1.0,
        "{:?}",
        metrics.series(Role::Waiting)
    );

    // One clock: the first scrape before the first request left, the last
    // after the last response came.
    let series = metrics.series(Role::Running);
    let first_start = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .reduce(f64::min)
        .unwrap();
    let last_end = rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .reduce(f64::max)
        .unwrap();
    assert!(
        series.first().unwrap().0 <= first_start,
        "{series:?} vs {first_start}"
    );
    assert!(
        series.last().unwrap().0 >= last_end,
        "{series:?} vs {last_end}"
    );
    assert!(series.len() >= 3, "{series:?}");
}

#[test]
fn an_unreachable_or_wrong_metrics_url_is_a_warning_and_the_run_goes_on() {
    let server = llm_server();
    let dead = common::dead_url().replace("/v1/infer", "/metrics");
    let not_prometheus = format!("http://{}/healthz", server.addr);
    let missing = format!("http://{}/no-metrics-here", server.addr);
    for (url, says) in [
        (dead.as_str(), "GET failed"),
        (not_prometheus.as_str(), "not Prometheus text"),
        (missing.as_str(), "answered 404"),
    ] {
        let dir = common::temp_dir("server-metrics-bad");
        let file = dir.join("m.json");
        let out = run(
            &server,
            &dir,
            &["--server-metrics-url", url, "--server-metrics", s(&file)],
        );
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("WARNING: server metrics") && stderr.contains(says),
            "{url}: {}",
            text(&out)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["succeeded"], 40, "{url}");
        // The file is still written, with nothing in it.
        let metrics = ServerMetrics::read(&file).unwrap();
        assert!(metrics.samples.is_empty(), "{url}");
    }
}

#[test]
fn the_flags_are_checked_before_any_request() {
    let server = llm_server();
    let dir = common::temp_dir("server-metrics-flags");
    let metrics_url = format!("http://{}/metrics", server.addr);
    let file = dir.join("m.json");
    for (flags, says) in [
        (
            vec!["--server-metrics-url", metrics_url.as_str()],
            "--server-metrics-url needs --server-metrics FILE",
        ),
        (
            vec![
                "--server-metrics-url",
                metrics_url.as_str(),
                "--server-metrics",
                s(&file),
                "--server-metrics-interval",
                "5ms",
            ],
            "at least 100ms and at most 10m",
        ),
        (
            vec![
                "--server-metrics-url",
                "ftp://127.0.0.1/metrics",
                "--server-metrics",
                s(&file),
            ],
            "allowed: an http:// or https:// URL",
        ),
    ] {
        let out = run(&server, &dir, &flags);
        assert_ne!(out.status.code(), Some(0), "{flags:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{flags:?}: {}",
            text(&out)
        );
        assert!(!dir.join("log.csv").exists(), "{flags:?}: nothing was sent");
    }
}
