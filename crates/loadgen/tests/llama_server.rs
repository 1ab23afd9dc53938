//! The OpenAI client against llama.cpp's own C++ server, `llama-server`
//! (continuous batching over `-np` slots), serving a tiny random-weight
//! model written here; nothing is downloaded. Without the binary
//! (`xtask/llama/build_server.sh`) the tests say so and skip; under CI they
//! fail.
//!
//! Its quirks matter to a client: it answers a streamed request with
//! `Keep-Alive: timeout=5, max=100` and then closes the connection; its
//! random model never ends an answer, so every answer runs to `max_tokens`.

mod common;

use std::time::Duration;

use common::llama_server;
use loadgen::{ApiChoice, LoadConfig, OpenAiEndpoint, OpenAiOptions};

#[test]
fn pooled_streamed_requests_all_succeed_against_llama_server() {
    let dir = common::temp_dir("llama-server");
    let Some(server) =
        llama_server::start(&dir, &["-np", "2", "--metrics", "-c", "1024", "-t", "1"])
    else {
        return;
    };
    let url = server.base_url();
    for concurrency in ["6", "2"] {
        let json = dir.join(format!("summary-c{concurrency}.json"));
        let csv = dir.join(format!("log-c{concurrency}.csv"));
        let metrics = dir.join(format!("metrics-c{concurrency}.json"));
        let metrics_url = format!("{url}/metrics");
        let out = common::loadgen(&[
            "--server-metrics-url",
            &metrics_url,
            "--server-metrics",
            metrics.to_str().unwrap(),
            "--server-metrics-interval",
            "100ms",
            "--url",
            &url,
            "--api",
            "openai-chat",
            "--max-tokens",
            "8",
            // Default flags otherwise: a real model's answers are digested,
            // not checked against the simulator's (which would fail them).
            "--connection",
            "pooled",
            "-n",
            "30",
            "-c",
            concurrency,
            "--timeout",
            "60s",
            "-o",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "-c {concurrency}: {stdout}\n{}\nserver:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(
            (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
            (Some(30), Some(0)),
            "-c {concurrency}: {stdout}"
        );
        let rows = model::log::read_log_file(&csv).unwrap().rows;
        let retries: u64 = rows.iter().map(|r| u64::from(r.retries)).sum();
        assert_eq!(summary["retries"].as_u64(), Some(retries));
        // Streamed answers, timed token by token, digested, not verified.
        assert!(rows.iter().all(|r| r.ok
            && !r.verified
            && r.output_digest.is_some()
            && r.llm.as_ref().is_some_and(|l| l.ttft_ms.is_some())));
        assert_eq!(summary["verified"].as_bool(), Some(false));
        // Its own /metrics, scraped through the run: the tokens it counts
        // are the client's, and never more than its 2 slots busy.
        let metrics = model::server_metrics::ServerMetrics::read(&metrics).unwrap();
        let series = metrics.series_of("llamacpp:tokens_predicted_total");
        let predicted = series.last().unwrap().1 - series.first().unwrap().1;
        let tokens: u64 = rows
            .iter()
            .map(|r| r.llm.as_ref().unwrap().output_tokens.unwrap())
            .sum();
        assert_eq!(predicted, tokens as f64, "-c {concurrency}");
        let running = metrics.max(model::server_metrics::Role::Running).unwrap();
        assert!(running <= 2.0, "-c {concurrency}: {running}");
    }
}

fn config(url: &str, dir: &std::path::Path, endpoint: OpenAiEndpoint, stream: bool) -> LoadConfig {
    LoadConfig {
        api: ApiChoice::OpenAi(OpenAiOptions {
            endpoint,
            stream,
            max_tokens: Some(16),
            extra_body: None,
        }),
        model: "tiny-llama".into(),
        requests: Some(6),
        concurrency: 2,
        timeout: Duration::from_secs(60),
        ..common::config(url, dir)
    }
}

/// Chat and completions, streamed and whole: every answer timed token by
/// token, its tokens counted from the stream or taken from `usage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_completions_stream_from_llama_server() {
    let dir = common::temp_dir("llama-server-api");
    let Some(server) = llama_server::start(&dir, &["-np", "2", "-c", "1024", "-t", "1"]) else {
        return;
    };
    for endpoint in [OpenAiEndpoint::Chat, OpenAiEndpoint::Completions] {
        let run_dir = common::temp_dir("llama-server-run");
        let config = config(&server.base_url(), &run_dir, endpoint, true);
        let summary = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!(
            (summary.succeeded, summary.failed),
            (6, 0),
            "{endpoint:?}: {summary:?}\n{}",
            server.log()
        );
        let rows = model::log::read_log_file(&run_dir.join("log.csv"))
            .unwrap()
            .rows;
        for row in rows {
            let llm = row.llm.unwrap();
            let tokens = llm.output_tokens.unwrap();
            // The answer never ends before max_tokens, and the server
            // honours stream_options.include_usage.
            assert_eq!(
                (tokens, llm.tokens_from),
                (16, Some(model::log::TokensFrom::Usage)),
                "{endpoint:?}: {llm:?}"
            );
            let ttft = llm.ttft_ms.unwrap();
            assert!(
                ttft > 0.0 && ttft <= row.latency_ms,
                "{endpoint:?}: {ttft} of {}",
                row.latency_ms
            );
            // One content delta per token: a gap between every two.
            assert_eq!(llm.itl_ms.len(), 15, "{endpoint:?}: {llm:?}");
        }
    }
    // Not streamed: end to end only, tokens from usage.
    let run_dir = common::temp_dir("llama-server-whole");
    let config = config(&server.base_url(), &run_dir, OpenAiEndpoint::Chat, false);
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (6, 0), "{summary:?}");
    let rows = model::log::read_log_file(&run_dir.join("log.csv"))
        .unwrap()
        .rows;
    for row in rows {
        let llm = row.llm.unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(16), Some(model::log::TokensFrom::Usage))
        );
        assert_eq!(llm.ttft_ms, None);
    }
}

/// Token-exact prompts against the real server: with the tiny GGUF's own
/// vocabulary as a tokenizer.json (`xtask/llama/make_tokenizer.py`, run
/// with the tools' Python), every one of 100 requests of drawn lengths
/// (uniform 16 to 200 tokens, not streamed) has `usage.prompt_tokens` equal
/// to its asked length plus one constant: the chat template's fixed
/// tokens (BOS and `<|user|>\n ... \n<|assistant|>\n`), the same for all.
#[test]
fn prompt_tokens_are_the_asked_length_plus_the_templates_fixed_tokens() {
    let dir = common::temp_dir("llama-exact");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-tools/bin/python");
    if !python.exists() {
        common::skip(&format!(
            "{} is missing; run xtask/tools/setup.sh (its tokenizers package writes the tokenizer.json)",
            python.display()
        ));
        return;
    }
    let tokenizer = dir.join("tokenizer.json");
    let made = std::process::Command::new(&python)
        .arg(root.join("xtask/llama/make_tokenizer.py"))
        .arg(&tokenizer)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let Some(server) = llama_server::start(&dir, &["-np", "2", "-c", "2048", "-t", "1"]) else {
        return;
    };
    let csv = dir.join("log.csv");
    let out = common::loadgen(&[
        "--url",
        &server.base_url(),
        "--api",
        "openai-chat",
        "--no-stream",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--input-tokens",
        "uniform:16,200",
        "--output-tokens",
        "4",
        "-n",
        "100",
        "-c",
        "2",
        "--timeout",
        "60s",
        "-o",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let rows = model::log::read_log_file(&csv).unwrap().rows;
    assert_eq!(rows.len(), 100);
    let overheads: std::collections::BTreeSet<i64> = rows
        .iter()
        .map(|r| r.prompt_tokens.unwrap() as i64 - i64::from(r.input_tokens.unwrap()))
        .collect();
    let lengths: std::collections::BTreeSet<u32> =
        rows.iter().map(|r| r.input_tokens.unwrap()).collect();
    assert!(lengths.len() > 50, "the lengths vary: {lengths:?}");
    // Measured with this GGUF's template: " w1 ... wn" counts n + 26.
    assert_eq!(
        overheads,
        [26].into_iter().collect(),
        "usage.prompt_tokens minus the asked length, over 100 requests"
    );
    eprintln!(
        "llama-server: 100 prompts of {}..{} tokens, usage.prompt_tokens = asked + {:?}",
        lengths.first().unwrap(),
        lengths.last().unwrap(),
        overheads
    );
}
