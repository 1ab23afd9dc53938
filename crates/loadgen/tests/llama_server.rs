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
        let out = common::loadgen(&[
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
