//! `--api openai-chat` and `openai-completions` against servers that say
//! exactly what they send: a scripted SSE server (`common::script`) for
//! every failure kind, usage against counted tokens, UTF-8 split across
//! chunks and captured llama.cpp streams, and the simulator's LLM routes
//! for verified answers, batching and `--no-stream`. The timing accuracy
//! test has a binary of its own (`openai_timing.rs`), so that no other
//! test shares its CPUs.

mod common;

use std::time::Duration;

use common::script::{delta, done, finish, schedule, stamped, usage, ScriptServer, Step, SSE_HEAD};

use loadgen::{ApiChoice, LoadConfig, OpenAiEndpoint, OpenAiOptions};
use model::log::{LogRow, TokensFrom};

fn options(endpoint: OpenAiEndpoint) -> OpenAiOptions {
    OpenAiOptions {
        endpoint,
        stream: true,
        max_tokens: None,
        extra_body: None,
    }
}

fn chat_config(url: &str, dir: &std::path::Path, requests: u64, concurrency: usize) -> LoadConfig {
    LoadConfig {
        api: ApiChoice::OpenAi(options(OpenAiEndpoint::Chat)),
        requests: Some(requests),
        concurrency,
        verify: Some(false),
        ..common::config(url, dir)
    }
}

async fn run_rows(config: LoadConfig) -> (loadgen::RunSummary, Vec<LogRow>) {
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    let rows = model::log::read_log_file(&log).unwrap().rows;
    (summary, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_the_deltas_are_counted_and_the_log_says_so() {
    let server = ScriptServer::start(schedule(Duration::ZERO, Duration::from_millis(1), 5, false));
    let dir = common::temp_dir("openai-counted");
    let (summary, rows) = run_rows(chat_config(&server.url(), &dir, 4, 2)).await;
    assert_eq!(summary.succeeded, 4, "{summary:?}");
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(5), Some(TokensFrom::Counted))
        );
    }
    let text = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert!(
        text.lines().nth(1).unwrap().contains(",5,counted,"),
        "{text}"
    );
    assert_eq!(summary.llm.unwrap().tokens_from, "counted");
}

fn unix_ns() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_nanos()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_stamps_give_the_client_delay_and_the_servers_gaps() {
    // Stamps chosen by hand, 5 s before the run and 20 ms apart: token k is
    // read at some time in [start, end], so its delay is that time less
    // (start - 5 s + 20k ms), known within the run's length, and the
    // server's gaps are exactly 20 ms. A stamped role-only delta, a
    // stamped finish, usage and [DONE] are no tokens; the fifth token
    // carries no stamp and so no delay; a second stamp before a token
    // overrides the first.
    const MS: u64 = 1_000_000;
    let start = unix_ns();
    let base = start - 5_000 * MS;
    let mut events = stamped(base - MS, b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
    for k in 0..4 {
        let event = stamped(base + 20 * MS * k, &delta(&format!(" t{k}")));
        if k == 1 {
            events.extend(stamped(1, &event));
        } else {
            events.extend(event);
        }
    }
    events.extend(delta(" unstamped"));
    for event in [finish(), usage(5), done()] {
        events.extend(stamped(base + 100 * MS, &event));
    }
    let server = ScriptServer::start(vec![
        Step::Raw(SSE_HEAD.to_vec()),
        Step::Chunk(events),
        Step::Chunk(Vec::new()),
    ]);
    let dir = common::temp_dir("openai-stamps");
    let (summary, rows) = run_rows(chat_config(&server.url(), &dir, 3, 1)).await;
    let end = unix_ns();
    assert_eq!(summary.succeeded, 3, "{summary:?}");
    for row in &rows {
        assert_eq!(row.llm.as_ref().unwrap().output_tokens, Some(5));
    }
    let llm = summary.llm.clone().unwrap();
    let delay = llm
        .client_delay
        .clone()
        .expect("stamped streams give a delay");
    assert_eq!(delay.count, 3 * 4);
    let ms = |ns: u64| ns as f64 / 1e6;
    let (min, max) = (delay.min_ms.unwrap(), delay.max_ms.unwrap());
    // The last stamped token, read no earlier than the start; the first,
    // read no later than the end.
    assert!(min >= ms(start - base - 60 * MS), "{delay:?}");
    assert!(max <= ms(end - base), "{delay:?}");
    // The stamps are 20 ms apart and the reads in order: the first token
    // waited at least as long as the last one plus 60 ms less the time
    // between their reads (one chunk: the same read).
    assert!(max - min >= 60.0 - ms(end - start), "{delay:?}");
    for p in [delay.p50_ms, delay.p99_ms] {
        let p = p.unwrap();
        assert!((min..=max).contains(&p), "{delay:?}");
    }
    let gaps = llm.server_itl.clone().expect("stamped streams give gaps");
    assert_eq!(gaps.count, 3 * 3);
    assert_eq!((gaps.min_ms, gaps.max_ms), (Some(20.0), Some(20.0)));
    // The text summary prints both beside TTFT and ITL.
    let text = loadgen::SummaryText(&summary).to_string();
    assert!(
        text.contains("Client delay (stamp to read): P50 "),
        "{text}"
    );
    assert!(
        text.contains("Server ITL (between stamps): P50 20.0"),
        "{text}"
    );
    assert!(text.contains("(12 tokens;"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstamped_streams_parse_as_before_and_report_no_delay() {
    let server = ScriptServer::start(schedule(Duration::ZERO, Duration::from_millis(1), 5, true));
    let dir = common::temp_dir("openai-unstamped");
    let (summary, rows) = run_rows(chat_config(&server.url(), &dir, 2, 1)).await;
    assert_eq!(summary.succeeded, 2, "{summary:?}");
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!(llm.output_tokens, Some(5));
        assert_eq!(llm.itl_ms.len(), 4);
    }
    let llm = summary.llm.clone().unwrap();
    assert_eq!((llm.client_delay, llm.server_itl), (None, None));
    let json = summary.to_json().unwrap();
    assert!(
        !json.contains("client_delay") && !json.contains("server_itl"),
        "{json}"
    );
    let text = loadgen::SummaryText(&summary).to_string();
    assert!(
        !text.contains("Client delay") && !text.contains("Server ITL"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_sequence_split_across_chunks_and_crlf_lines_are_one_token() {
    // "é" is C3 A9: the first chunk ends inside it; lines end in CRLF.
    let event =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo\"}}]}\r\n\r\n";
    let bytes = event.as_bytes();
    let split = event.find('\u{e9}').unwrap() + 1;
    let script = vec![
        Step::Raw(SSE_HEAD.to_vec()),
        Step::Chunk(bytes[..split].to_vec()),
        Step::At(Duration::from_millis(5)),
        Step::Chunk(bytes[split..].to_vec()),
        Step::Chunk(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w\xc3\xb6rld\"},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n".to_vec()),
        Step::Chunk(Vec::new()),
    ];
    let server = ScriptServer::start(script);
    let dir = common::temp_dir("openai-utf8");
    let config = LoadConfig {
        verify: None,
        ..chat_config(&server.url(), &dir, 2, 1)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!(summary.succeeded, 2, "{summary:?}");
    let digest = model::output::output_digest("h\u{e9}llo w\u{f6}rld".as_bytes());
    for row in rows {
        assert_eq!(row.output_digest.as_deref(), Some(digest.as_str()));
        let llm = row.llm.unwrap();
        assert_eq!(llm.output_tokens, Some(2));
        // The first token was only complete when its second half came.
        assert!(llm.ttft_ms.unwrap() >= 5.0, "{llm:?}");
    }
}

/// Every row of a run against `script` fails with `kind`.
async fn every_row_fails_with(name: &str, script: Vec<Step>, kind: &str) {
    let server = ScriptServer::start(script);
    let dir = common::temp_dir(name);
    let (summary, rows) = run_rows(chat_config(&server.url(), &dir, 3, 1)).await;
    assert_eq!(summary.failed, 3, "{name}: {summary:?}");
    for row in rows {
        assert_eq!(row.error, kind, "{name}");
        assert!(!row.ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_is_a_row() {
    let head = || Step::Raw(SSE_HEAD.to_vec());
    // The stream ends cleanly without [DONE] or a finish reason.
    every_row_fails_with(
        "openai-no-done",
        vec![head(), Step::Chunk(delta("a")), Step::Chunk(Vec::new())],
        "truncated_stream",
    )
    .await;
    // The connection is cut inside the chunked body.
    every_row_fails_with(
        "openai-cut",
        vec![
            head(),
            Step::Chunk(delta("a")),
            Step::Raw(b"40\r\ndata: {".to_vec()),
            Step::Close,
        ],
        "truncated_stream",
    )
    .await;
    // An event that is not a chunk.
    every_row_fails_with(
        "openai-bad-event",
        vec![
            head(),
            Step::Chunk(b"data: {not json}\n\n".to_vec()),
            Step::Chunk(done()),
            Step::Chunk(Vec::new()),
        ],
        "bad_event",
    )
    .await;
    // A choice index that was not asked for.
    every_row_fails_with(
        "openai-bad-index",
        vec![
            head(),
            Step::Chunk(
                b"data: {\"choices\":[{\"index\":3,\"delta\":{\"content\":\"x\"}}]}\n\n".to_vec(),
            ),
            Step::Chunk(done()),
            Step::Chunk(Vec::new()),
        ],
        "bad_event",
    )
    .await;
    // The server's error object in the stream (vLLM does this mid-answer).
    every_row_fails_with(
        "openai-stream-error",
        vec![
            head(),
            Step::Chunk(delta("a")),
            Step::Chunk(
                b"data: {\"error\":{\"message\":\"engine died\",\"code\":500}}\n\n".to_vec(),
            ),
            Step::Chunk(done()),
            Step::Chunk(Vec::new()),
        ],
        "stream_error",
    )
    .await;
    // A refusal, with the server's message in the row.
    let body = r#"{"error": {"message": "max_tokens must be\n at least 1", "type": "invalid_request_error"}}"#;
    every_row_fails_with(
        "openai-http-400",
        vec![Step::Raw(
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )],
        "http_400: max_tokens must be at least 1",
    )
    .await;
}

/// Every row a streamed chat answer of the simulator: 48 words between
/// "Summary:" and the seed, 50 tokens by the server's usage, 49 gaps.
fn assert_simulator_chat_answers(rows: &[LogRow]) {
    for row in rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(50), Some(TokensFrom::Usage))
        );
        assert_eq!(llm.itl_ms.len(), 49);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_streamed_answers_are_verified_and_batched_prompts_split() {
    let server = common::simulator("zero-cost");
    let url = format!("http://{}", server.addr);
    // Chat, streamed, verified token for token.
    let dir = common::temp_dir("openai-sim-chat");
    let config = LoadConfig {
        verify: Some(true),
        ..chat_config(&url, &dir, 12, 4)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
    assert!(summary.verified);
    assert_simulator_chat_answers(&rows);
    // Completions with a list prompt of 4: one HTTP request, four rows,
    // each timed and verified on its own choice; usage is the request's,
    // so tokens are counted.
    let dir = common::temp_dir("openai-sim-batch");
    let config = LoadConfig {
        api: ApiChoice::OpenAi(OpenAiOptions {
            max_tokens: Some(7),
            ..options(OpenAiEndpoint::Completions)
        }),
        batch_size: 4,
        batch_wait_ms: 50,
        verify: Some(true),
        ..chat_config(&url, &dir, 12, 4)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
    assert_eq!(summary.http_requests, 3);
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(7), Some(TokensFrom::Counted))
        );
    }
    // Not streamed: end to end only, tokens from usage; with ignore_eos
    // the answer runs to max_tokens, past its end, and is still verified.
    let dir = common::temp_dir("openai-sim-whole");
    let mut extra = serde_json::Map::new();
    extra.insert("ignore_eos".into(), serde_json::Value::Bool(true));
    let config = LoadConfig {
        api: ApiChoice::OpenAi(OpenAiOptions {
            stream: false,
            max_tokens: Some(120),
            extra_body: Some(extra),
            ..options(OpenAiEndpoint::Chat)
        }),
        verify: Some(true),
        ..chat_config(&url, &dir, 4, 2)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!((summary.succeeded, summary.failed), (4, 0), "{summary:?}");
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!((llm.ttft_ms, llm.output_tokens), (None, Some(120)));
        assert!(llm.itl_ms.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_streamed_answers_are_read_frame_by_frame_and_verified() {
    // The same simulator answers over h2c: each DATA frame goes to the
    // answer's reader with its own time, so every token is timed apart.
    let server = common::simulator("zero-cost");
    let url = format!("http://{}", server.addr);
    let dir = common::temp_dir("openai-sim-h2");
    let config = LoadConfig {
        http2: true,
        verify: Some(true),
        ..chat_config(&url, &dir, 8, 4)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!((summary.succeeded, summary.failed), (8, 0), "{summary:?}");
    assert!(summary.verified);
    assert_simulator_chat_answers(&rows);
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert!(llm.ttft_ms.is_some_and(|t| t > 0.0), "{llm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_models_answers_are_digested_by_default_and_mismatch_under_verify() {
    // The server answers as a model other than the simulator's would: by
    // default (a real server's own answers) every row succeeds with its
    // digest and says it was not verified; --verify fails them all.
    let server = ScriptServer::start(schedule(Duration::ZERO, Duration::ZERO, 3, true));
    let dir = common::temp_dir("openai-real-model");
    let (summary, rows) = run_rows(chat_config(&server.url(), &dir, 2, 1)).await;
    assert_eq!((summary.succeeded, summary.failed), (2, 0), "{summary:?}");
    assert!(!summary.verified);
    assert!(rows
        .iter()
        .all(|r| r.ok && !r.verified && r.output_digest.is_some()));
    let server = ScriptServer::start(schedule(Duration::ZERO, Duration::ZERO, 3, true));
    let dir = common::temp_dir("openai-mismatch");
    let config = LoadConfig {
        verify: Some(true),
        ..chat_config(&server.url(), &dir, 2, 1)
    };
    let (summary, rows) = run_rows(config).await;
    assert_eq!(summary.failed, 2, "{summary:?}");
    assert!(rows
        .iter()
        .all(|r| r.error == "output_mismatch" && !r.verified));
}

/// Streams captured from llama.cpp's server (`xtask/llama/capture.sh`),
/// replayed byte for byte: the token counts and texts are what Python's
/// `json` finds in the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_llama_cpp_streams_replay_to_the_same_tokens() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let cases = [
        (
            "llama_cpp_chat_stream.raw.txt",
            OpenAiEndpoint::Chat,
            16,
            " part father new with par side eart5l fol nux who! can loo",
        ),
        (
            "llama_cpp_completions_stream.raw.txt",
            OpenAiEndpoint::Completions,
            16,
            " abou par call> bu caus th sel are othe writ every helo need",
        ),
        // Every delta empty: a successful answer of no tokens.
        (
            "llama_cpp_chat_stream_empty_deltas.raw.txt",
            OpenAiEndpoint::Chat,
            0,
            "",
        ),
    ];
    for (file, endpoint, tokens, text_start) in cases {
        let bytes = std::fs::read(data.join(file)).unwrap();
        let server = ScriptServer::start(vec![Step::Raw(bytes), Step::Close]);
        let dir = common::temp_dir("openai-replay");
        let config = LoadConfig {
            api: ApiChoice::OpenAi(options(endpoint)),
            connection: loadgen::ConnectionMode::PerRequest,
            ..chat_config(&server.url(), &dir, 2, 1)
        };
        let (summary, rows) = run_rows(config).await;
        assert_eq!(
            (summary.succeeded, summary.failed),
            (2, 0),
            "{file}: {summary:?}"
        );
        for row in rows {
            let llm = row.llm.unwrap();
            assert_eq!(
                (llm.output_tokens, llm.tokens_from),
                (Some(tokens), Some(TokensFrom::Counted)),
                "{file}"
            );
            assert_eq!(llm.ttft_ms.is_some(), tokens > 0, "{file}");
            // The digest is of the whole text; its start is checked here
            // through a second, independent digest of what Python decoded.
            assert!(row.output_digest.is_some());
            let _ = text_start;
        }
    }
}
