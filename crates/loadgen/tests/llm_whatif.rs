//! The LLM what-if engine against a real run: stub-server's LLM routes
//! with known step costs, loadgen's Before and probe over loopback, its
//! `/metrics` scraped through the Before, then `report whatif --scenario
//! llm` and `report compare` (the library) on what they wrote. The fitted
//! step costs must be stub-server's own, the slots must come from its
//! metrics, and the diagnosis must split the time to first token by its
//! histograms.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use loadgen::{ApiChoice, LoadConfig, OpenAiEndpoint, OpenAiOptions, PayloadSource};
use model::server_metrics::{MetricSample, ServerMetrics};
use model::whatif::{CandidateKind, ServerSetting};
use stub_server::ServerConfig;

/// The simulator's step costs: what the fit must find.
const STEP_BASE_MS: f64 = 20.0;
const STEP_PER_SEQ_MS: f64 = 2.0;
const PREFILL_PER_TOKEN_MS: f64 = 0.1;
const SLOTS: usize = 4;

fn server() -> stub_server::RunningServer {
    let mut config = ServerConfig::profile("llm-slots").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.llm.max_num_seqs = SLOTS;
    config.llm.step_base_ms = STEP_BASE_MS;
    config.llm.step_per_seq_ms = STEP_PER_SEQ_MS;
    config.llm.prefill_per_token_ms = PREFILL_PER_TOKEN_MS;
    config.llm.max_batched_tokens = 2048;
    stub_server::spawn(config).unwrap()
}

/// `count` prompts of `words` whitespace words (the simulator's tokens),
/// each starting with a word of its own.
fn payloads(dir: &Path, words: usize, count: usize) -> PathBuf {
    let path = dir.join(format!("p{words}.jsonl"));
    let lines: Vec<String> = (0..count)
        .map(|i| {
            let text: Vec<String> = std::iter::once(format!("q{i}"))
                .chain((1..words).map(|w| format!("w{}", (w * 7 + i) % 50)))
                .collect();
            serde_json::json!({"input": text.join(" ")}).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A streamed closed loop of `concurrency` over `requests`, answers of
/// exactly `tokens` tokens, logged at `out`.
async fn run(
    url: &str,
    out: &Path,
    payloads: &Path,
    concurrency: usize,
    requests: u64,
    tokens: u32,
) {
    let mut extra = serde_json::Map::new();
    extra.insert("ignore_eos".into(), serde_json::Value::Bool(true));
    let config = LoadConfig {
        api: ApiChoice::OpenAi(OpenAiOptions {
            endpoint: OpenAiEndpoint::Chat,
            stream: true,
            max_tokens: Some(tokens),
            extra_body: Some(extra),
        }),
        requests: Some(requests),
        concurrency,
        payloads: PayloadSource::File(payloads.to_owned()),
        verify: Some(false),
        timeout: Duration::from_secs(30),
        log_path: Some(out.to_owned()),
        ..common::config(url, out.parent().unwrap())
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
}

/// One scrape of `/metrics` as samples at the client's clock.
fn scrape(addr: SocketAddr) -> Vec<MetricSample> {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return Vec::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let t_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    body.lines()
        .filter(|l| l.starts_with("vllm:"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(MetricSample {
                t_ms,
                name: name.to_owned(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_recovers_the_simulators_step_costs_and_reads_its_metrics() {
    let server = server();
    let url = format!("http://{}", server.addr);
    let dir = common::temp_dir("llm-whatif");
    let before = dir.join("before.csv");
    let prompts = payloads(&dir, 24, 16);
    // The Before, its metrics scraped every 100 ms by a thread of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (stop, addr) = (stop.clone(), server.addr);
        std::thread::spawn(move || {
            let mut samples = scrape(addr);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                samples.extend(scrape(addr));
            }
            samples.extend(scrape(addr));
            samples
        })
    };
    run(&url, &before, &prompts, 2 * SLOTS, 40, 10).await;
    stop.store(true, Ordering::Relaxed);
    let samples = scraper.join().unwrap();
    let metrics = ServerMetrics {
        schema_version: model::server_metrics::SCHEMA_VERSION,
        url: format!("{url}/metrics"),
        interval_ms: 100.0,
        samples,
    };
    let metrics_path = dir.join("before_metrics.json");
    std::fs::write(&metrics_path, metrics.to_json().unwrap()).unwrap();
    // The probe: one request at a time at two prompt lengths.
    let mut probes = Vec::new();
    for words in [16, 512] {
        let out = dir.join(format!("probe_p{words}.csv"));
        run(&url, &out, &payloads(&dir, words, 4), 1, 4, 6).await;
        probes.push(out);
    }
    let json = dir.join("whatif.json");
    let options = report::whatif::Options {
        scenario: report::whatif::Scenario::Llm,
        server: report::whatif::ServerKind::Any,
        llm_server: report::whatif::KnownServer {
            max_num_seqs: None,
            max_batched_tokens: Some(2048),
            chunked_prefill: true,
            kv_cache_tokens: None,
            kv_block_tokens: 16,
            prefix_cache_blocks: 0,
            replicas: 1,
            pass_tokens: None,
        },
        prompt_tokens: Some(24),
        probe_prompt_tokens: vec![16, 512],
        before_metrics: Some(metrics_path.clone()),
        // First tokens alone: a slot for every stream is the fix.
        slos: vec!["ttft_p95<=300".parse().unwrap()],
        // A runner that changes the slots only (a second replica would
        // predict better still).
        server_changes: report::whatif::ServerChanges {
            slots: true,
            batched_tokens: false,
            chunked_prefill: false,
            replicas: false,
        },
        before: before.clone(),
        probes,
        before_stats: None,
        probe_stats: Vec::new(),
        concurrency: None,
        rate_rps: None,
        poisson: false,
        requests: None,
        sla_p95_ms: 2000.0,
        margin: 0.2,
        max_batch: None,
        server_dynamic_batching: false,
        refits: 10,
        seed: 1,
        json: json.clone(),
    };
    let report = tokio::task::spawn_blocking(move || report::whatif::run(&options))
        .await
        .unwrap()
        .unwrap();
    let llm = report.llm.expect("the LLM engine's report");
    let fit = &llm.fit;
    // The simulator's own costs, give or take its own work in a step
    // (a timer's wake-up, the tokens it sends): within 10%.
    for (name, e, truth) in [
        ("base", fit.step_base_ms, STEP_BASE_MS),
        ("per sequence", fit.step_per_seq_ms, STEP_PER_SEQ_MS),
        ("prefill", fit.prefill_per_token_ms, PREFILL_PER_TOKEN_MS),
    ] {
        assert!(e.lo <= e.value && e.value <= e.hi, "{name}: {e:?}");
        assert!(
            (e.value - truth).abs() <= 0.1 * truth,
            "{name}: fitted {e:?}, the simulator's {truth}"
        );
    }
    // The slots from the server's running gauge.
    assert_eq!(fit.server.max_num_seqs, SLOTS as u32);
    assert!(
        fit.slots_from.contains("vllm:num_requests_running"),
        "{}",
        fit.slots_from
    );
    // Twice the slots in flight: the After gives every stream a slot.
    let after = report.after.expect("a decision");
    let ranked: Vec<(&str, f64)> = llm
        .candidates
        .iter()
        .map(|c| (c.label.as_str(), c.score))
        .collect();
    assert_eq!(after.kind, CandidateKind::Server);
    assert_eq!(
        after.server_setting,
        Some(ServerSetting::MaxNumSeqs {
            max_num_seqs: 2 * SLOTS as u32
        }),
        "{ranked:?}"
    );

    // The diagnosis splits the Before's first-token time by the server's
    // histograms: most of it waited for a slot.
    let before_run = report::RunLog::read("Before", &before)
        .unwrap()
        .with_server_metrics(&metrics_path)
        .unwrap();
    let c = report::compare(
        &before_run,
        &before_run,
        None,
        &report::CompareOptions::default(),
    )
    .unwrap();
    let find = |c: &model::comparison::Comparison, id: &str| {
        c.diagnosis
            .iter()
            .find(|f| f.id == id && f.side == "before")
            .unwrap_or_else(|| panic!("no {id} in {:?}", c.diagnosis))
            .clone()
    };
    // The client's own numbers, read from the log here.
    let rows = model::log::read_log_file(&before).unwrap().rows;
    let ttft: Vec<f64> = rows
        .iter()
        .map(|r| r.llm.as_ref().unwrap().ttft_ms.unwrap())
        .collect();
    let mean_ttft_ms = ttft.iter().sum::<f64>() / ttft.len() as f64;
    let split = find(&c, "llm_ttft_split");
    assert!(
        split.finding.contains("the server's histograms"),
        "{}",
        split.finding
    );
    assert!(
        (split.values["mean_ttft_ms"] - mean_ttft_ms).abs() < 0.5,
        "{split:?} against the log's {mean_ttft_ms}"
    );
    assert!(split.values["wait_pct"] > 50.0, "{split:?}");
    // Without the metrics the rows alone split it the same way: the
    // server's queue histogram and the client's steps agree.
    let rows_only = report::RunLog::read("Before", &before).unwrap();
    let c_rows = report::compare(
        &rows_only,
        &rows_only,
        None,
        &report::CompareOptions::default(),
    )
    .unwrap();
    let from_rows = find(&c_rows, "llm_ttft_split");
    assert!(
        !from_rows.finding.contains("histograms"),
        "{}",
        from_rows.finding
    );
    assert!(
        (from_rows.values["mean_wait_ms"] - split.values["mean_wait_ms"]).abs()
            <= 0.1 * mean_ttft_ms,
        "rows {from_rows:?}, histograms {split:?}"
    );
    let saturation = find(&c, "llm_slot_saturation");
    assert_eq!(saturation.values["slots"], SLOTS as f64);
    assert!(
        saturation
            .finding
            .contains(&format!("ran {SLOTS} sequences (")),
        "{saturation:?}"
    );
    // Twice the slots in flight: the slots are full whenever a step runs,
    // and Little's law counts about the eight streams in the system.
    assert!(saturation.values["saturated_pct"] > 50.0, "{saturation:?}");
    let in_system = saturation.values["mean_in_system"];
    assert!((6.5..=8.05).contains(&in_system), "{saturation:?}");
    // A step of four sequences: 20 + 4 x 2 ms, give or take the timer.
    let itl = find(&c, "llm_itl_tail");
    let step_ms = STEP_BASE_MS + SLOTS as f64 * STEP_PER_SEQ_MS;
    assert!(
        (itl.values["itl_p50_ms"] - step_ms).abs() <= 0.1 * step_ms,
        "{itl:?} against a step of {step_ms} ms"
    );
    // Every answer is ten tokens: no spread to blame.
    let spread = find(&c, "llm_output_spread");
    assert_eq!(spread.values["output_tokens_p50"], 10.0);
    assert_eq!(spread.values["output_tokens_p95"], 10.0);
    let prefix = c
        .diagnosis
        .iter()
        .find(|f| f.id == "llm_prefix_cache")
        .expect("the prefix cache's counters");
    assert_eq!(prefix.values["prefix_queries_tokens"], 0.0);
}
