//! The SSE client against a real OpenAI-compatible server: llama.cpp's
//! (`llama-cpp-python[server]`, set up by `xtask/llama/setup.sh`) serving a
//! tiny random-weight model written here with the `gguf` package. Nothing
//! is downloaded. Without the venv the test says so and skips (under CI it
//! fails: CI installs it).
//!
//! What this server does that ours does not (xtask/llama/NOTES.md): it
//! ignores `stream_options.include_usage`, so tokens are counted from the
//! deltas; it sends a role-only first delta and empty deltas; its random
//! model never ends an answer, so every answer runs to `max_tokens`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loadgen::api::openai::{Endpoint, OpenAiOptions};
use loadgen::{ApiChoice, LoadConfig};
use model::log::TokensFrom;

/// The llama.cpp server, killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts the server on a free loopback port with a fresh tiny model in
/// `dir`, and waits for uvicorn's `Uvicorn running on` line.
fn start(dir: &std::path::Path) -> Option<LlamaServer> {
    let python = root().join(".venv-llama/bin/python");
    if !python.exists() {
        common::skip(&format!(
            "{} is missing; run xtask/llama/setup.sh (compiles llama.cpp, about 7 minutes on 2 cores)",
            python.display()
        ));
        return None;
    }
    let model = dir.join("tiny-llama.gguf");
    let made = Command::new(&python)
        .arg(root().join("xtask/llama/make_gguf.py"))
        .arg(&model)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "make_gguf.py failed");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut child = Command::new("bash")
        .arg(root().join("xtask/llama/serve.sh"))
        .arg(port.to_string())
        .arg(&model)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Uvicorn running on") {
                let _ = tx.send(());
            }
        }
    });
    let server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    rx.recv_timeout(Duration::from_secs(120))
        .expect("llama.cpp's server did not start within 120 s");
    Some(server)
}

fn config(url: &str, dir: &std::path::Path, endpoint: Endpoint, stream: bool) -> LoadConfig {
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
        // A random model's answers are not the simulator's.
        verify: Some(false),
        timeout: Duration::from_secs(60),
        ..common::config(url, dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_completions_stream_from_a_real_llama_cpp_server() {
    let dir = common::temp_dir("llama-cpp");
    let Some(server) = start(&dir) else { return };
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        let run_dir = common::temp_dir("llama-cpp-run");
        let config = config(&server.url, &run_dir, endpoint, true);
        let summary = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!(
            (summary.succeeded, summary.failed),
            (6, 0),
            "{endpoint:?}: {summary:?}"
        );
        let rows = model::log::read_log_file(&run_dir.join("log.csv"))
            .unwrap()
            .rows;
        for row in rows {
            let llm = row.llm.unwrap();
            // No usage in its streams: the deltas are counted; a token that
            // decodes to nothing sends an empty delta, which is no token.
            assert_eq!(llm.tokens_from, Some(TokensFrom::Counted), "{endpoint:?}");
            let tokens = llm.output_tokens.unwrap();
            assert!((1..=16).contains(&tokens), "{endpoint:?}: {tokens} tokens");
            assert_eq!(llm.itl_ms.len() as u64, tokens - 1);
            let ttft = llm.ttft_ms.unwrap();
            assert!(
                ttft > 0.0 && ttft <= row.latency_ms,
                "{endpoint:?}: {ttft} of {}",
                row.latency_ms
            );
        }
    }
    // Not streamed: its usage is exact, 16 tokens (the answer never ends).
    let run_dir = common::temp_dir("llama-cpp-whole");
    let config = config(&server.url, &run_dir, Endpoint::Chat, false);
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (6, 0), "{summary:?}");
    let rows = model::log::read_log_file(&run_dir.join("log.csv"))
        .unwrap()
        .rows;
    for row in rows {
        let llm = row.llm.unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(16), Some(TokensFrom::Usage))
        );
    }
}
