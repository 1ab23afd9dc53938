//! loadgen's own summary against `report summary` of the log it wrote, and
//! numpy's formula over that log: one method (numpy's linear) everywhere,
//! so a short run and a streamed LLM run print one P95, not two. And the
//! files the binary writes read back through the one type
//! (`model::summary::RunSummary`) every reader uses.

mod common;

use std::time::Duration;

use loadgen::{ApiChoice, LoadConfig, OpenAiEndpoint, OpenAiOptions, RunSummary, SummaryText};
use model::log::read_log_file;
use model::summary::Percentiles;

/// The log rounds each value to 0.001 ms; loadgen keeps what it measured.
const LOG_ROUNDING_MS: f64 = 0.0005 + 1e-9;

fn agree(what: &str, ours: Option<f64>, theirs: Option<f64>) {
    match (ours, theirs) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= LOG_ROUNDING_MS,
            "{what}: loadgen {a} vs report {b}"
        ),
        _ => panic!("{what}: loadgen {ours:?} vs report {theirs:?}"),
    }
}

async fn run(config: LoadConfig) -> (RunSummary, model::log::Log) {
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    (summary, read_log_file(&log).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_runs_percentiles_equal_report_summary_of_its_log() {
    // A few ms each with a 30% spread: 18 rows whose neighbours differ by
    // far more than the log's rounding.
    let mut server = stub_server::ServerConfig::profile("placeholder").unwrap();
    server.bind = "127.0.0.1:0".parse().unwrap();
    server.workers = 4;
    server.service.base_ms = 3.0;
    server.service.per_item_ms = 0.0;
    server.service.jitter = 0.3;
    let server = stub_server::spawn(server).unwrap();
    let dir = common::temp_dir("summary-e2e");
    let config = LoadConfig {
        requests: Some(18),
        concurrency: 2,
        progress: false,
        ..common::config(&server.url(), &dir)
    };
    let (summary, log) = run(config).await;
    assert_eq!((summary.succeeded, summary.failed), (18, 0), "{summary:?}");
    let report = report::summary_of_log("t", None, &log).unwrap();
    agree("p50", summary.p50_ms, report.p50_ms);
    agree("p95", summary.p95_ms, report.p95_ms);
    agree("p99", summary.p99_ms, report.p99_ms);
    agree("max", summary.max_ms, report.max_ms);
    agree("min", summary.min_ms, report.min_ms);
    // P90 and P99.9, which `report summary` does not print: numpy's formula.
    let sorted = common::ok_latencies(&dir.join("log.csv"));
    agree(
        "p90",
        summary.p90_ms,
        Some(common::percentile(&sorted, 0.90)),
    );
    agree(
        "p99.9",
        summary.p99_9_ms,
        Some(common::percentile(&sorted, 0.999)),
    );
    assert!(summary.quantiles_exact && summary.quantile_error.is_none());
    let json: serde_json::Value = serde_json::from_str(&summary.to_json().unwrap()).unwrap();
    assert_eq!(json["quantiles_exact"], true);
    assert!(!SummaryText(&summary).to_string().contains("not exact"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_runs_ttft_itl_and_tpot_equal_report_summary_of_its_log() {
    let server = common::simulator("llm-slots");
    let dir = common::temp_dir("summary-llm");
    let config = LoadConfig {
        api: ApiChoice::OpenAi(OpenAiOptions {
            endpoint: OpenAiEndpoint::Chat,
            stream: true,
            max_tokens: Some(12),
            extra_body: None,
        }),
        requests: Some(12),
        concurrency: 6,
        verify: Some(false),
        progress: false,
        timeout: Duration::from_secs(10),
        ..common::config(&format!("http://{}", server.addr), &dir)
    };
    let (summary, log) = run(config).await;
    assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
    let ours = summary.llm.as_ref().unwrap();
    let theirs = report::summary_of_log("t", None, &log)
        .unwrap()
        .llm
        .unwrap();
    let series: [(&str, &Percentiles, &Percentiles); 3] = [
        ("ttft", &ours.ttft, &theirs.ttft),
        ("itl", &ours.itl, &theirs.itl),
        ("tpot", &ours.tpot, &theirs.tpot),
    ];
    for (name, a, b) in series {
        assert_eq!(a.count, b.count, "{name}");
        assert!(a.count >= 12, "{name}: {}", a.count);
        agree(&format!("{name} p50"), a.p50_ms, b.p50_ms);
        agree(&format!("{name} p90"), a.p90_ms, b.p90_ms);
        agree(&format!("{name} p95"), a.p95_ms, b.p95_ms);
        agree(&format!("{name} p99"), a.p99_ms, b.p99_ms);
        agree(&format!("{name} max"), a.max_ms, b.max_ms);
        assert!(a.quantiles_exact, "{name}");
    }
    // And e2e, as for any run.
    agree("e2e p95", summary.p95_ms, theirs.e2e.p95_ms);
    agree("e2e max", summary.max_ms, theirs.e2e.max_ms);
}

/// What the binary writes with `--json` and `--out-dir`, and prints with
/// `--output-format json`, is one document that `model`'s type reads
/// back: the LLM series with their histograms, each holding its series.
#[test]
fn the_binarys_summaries_read_back_through_the_model_type() {
    let server = common::simulator("llm-slots");
    let dir = common::temp_dir("summary-files");
    let url = format!("http://{}", server.addr);
    let load = [
        "--url",
        url.as_str(),
        "--api",
        "openai-chat",
        "--max-tokens",
        "6",
        "-n",
        "8",
        "-c",
        "4",
        "-q",
    ];
    let json = dir.join("run.json");
    let mut args = load.to_vec();
    args.extend(["--json", json.to_str().unwrap(), "--output-format", "json"]);
    let out = common::loadgen(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let file = RunSummary::read(&json).unwrap();
    let printed =
        RunSummary::parse(&String::from_utf8_lossy(&out.stdout), "stdout".as_ref()).unwrap();
    assert_eq!(printed, file);
    assert_eq!(file.schema_version, model::summary::SCHEMA_VERSION);
    assert_eq!((file.total, file.succeeded), (8, 8));
    let llm = file.llm.as_ref().expect("a streamed run has LLM numbers");
    for (name, numbers, encoded) in [
        ("ttft", &llm.ttft, &llm.ttft_histogram),
        ("itl", &llm.itl, &llm.itl_histogram),
        ("tpot", &llm.tpot, &llm.tpot_histogram),
    ] {
        let histogram = stats::LatencyHistogram::from_base64_v2(encoded.as_ref().unwrap()).unwrap();
        assert_eq!(histogram.count(), numbers.count, "{name}");
        assert!(
            numbers.count > 0 && numbers.min_ms <= numbers.max_ms,
            "{name}"
        );
    }
    assert_eq!(llm.e2e.count, file.succeeded);
    assert_eq!((llm.e2e.p95_ms, llm.e2e.max_ms), (file.p95_ms, file.max_ms));

    let out_dir = dir.join("out");
    let mut args = load.to_vec();
    args.extend(["--out-dir", out_dir.to_str().unwrap()]);
    let out = common::loadgen(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = RunSummary::read(&out_dir.join("summary.json")).unwrap();
    assert_eq!(file.total, 8);
    assert!(file.latency_histogram.is_some() && file.llm.is_some());
    // Not a shard: a merge refuses it, naming the file.
    let err = report::merge::merge(std::slice::from_ref(&out_dir), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a shard"), "{err}");
}
