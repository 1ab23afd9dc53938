//! The OpenAI-compatible LLM routes: streamed tokens on the step loop's
//! schedule, verified text, usage, sequences waiting for a slot, and
//! OpenAI-style errors.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use model::output::answer_tokens;
use serde_json::{json, Value};
use stub_server::LlmConfig;

fn llm_server(config: LlmConfig) -> stub_server::RunningServer {
    let mut c = common::config();
    c.llm = config;
    start(c)
}

/// Streams one request; returns each SSE event's data with the ms since the
/// request was sent at which its frame arrived.
async fn stream(c: &HttpClient, url: &str, body: Value) -> Vec<(f64, String)> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let t0 = Instant::now();
    let response = c.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut events = Vec::new();
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let at = t0.elapsed().as_secs_f64() * 1000.0;
        if let Ok(data) = frame.unwrap().into_data() {
            pending.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let data = event.trim_end().strip_prefix("data: ").unwrap().to_owned();
                events.push((at, data));
            }
        }
    }
    assert!(
        pending.is_empty(),
        "a partial event at the end: {pending:?}"
    );
    events
}

fn content(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    v["choices"][0]["delta"]["content"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chat_answer_follows_the_step_schedule() {
    let _timing = timing_lock().await;
    let server = llm_server(LlmConfig {
        max_num_seqs: 4,
        step_base_ms: 20.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 1.0,
        max_batched_tokens: 2048,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/chat/completions", base_url(&server));
    let prompt = "one two three four five six seven eight nine ten";
    let events = stream(
        &c,
        &url,
        json!({"model": "example-model", "messages": [{"role": "user", "content": prompt}], "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let expected = answer_tokens("example-model", prompt);
    let tokens: Vec<(f64, String)> = events
        .iter()
        .filter_map(|(at, d)| content(d).map(|t| (*at, t)))
        .collect();
    assert_eq!(
        tokens.iter().map(|t| t.1.clone()).collect::<Vec<_>>(),
        expected
    );
    // The first token ends the prefill step: 20 ms + 10 tokens x 1 ms.
    assert!(
        (tokens[0].0 - 30.0).abs() < 8.0,
        "first token at {} ms",
        tokens[0].0
    );
    // Then one token per 20 ms step.
    let gaps: Vec<f64> = tokens.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((mean - 20.0).abs() < 2.0, "mean gap {mean} ms");
    let n = events.len();
    let finish: Value = serde_json::from_str(&events[n - 3].1).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&events[n - 2].1).unwrap();
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": expected.len(), "total_tokens": 10 + expected.len()})
    );
    assert_eq!(events[n - 1].1, "[DONE]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_without_a_slot_waits_for_one() {
    let _timing = timing_lock().await;
    let server = llm_server(LlmConfig {
        max_num_seqs: 1,
        step_base_ms: 10.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        max_batched_tokens: 2048,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/completions", base_url(&server));
    let body =
        |p: &str| json!({"model": "example-model", "prompt": p, "max_tokens": 5, "stream": true});
    let (first, second) = tokio::join!(stream(&c, &url, body("a")), stream(&c, &url, body("b")));
    let first_token = |events: &[(f64, String)]| events[0].0;
    let (early, late) = if first_token(&first) < first_token(&second) {
        (first, second)
    } else {
        (second, first)
    };
    // 5 tokens of 10 ms for the one that ran first, then the other's turn.
    assert!(
        first_token(&late) >= first_token(&early) + 45.0,
        "{} vs {}",
        first_token(&late),
        first_token(&early)
    );
    let text = |events: &[(f64, String)]| -> Vec<String> {
        events
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .collect()
    };
    assert_eq!(text(&early).len(), 5);
    let finish: Value = serde_json::from_str(&late[late.len() - 2].1).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn a_prompt_list_gets_one_choice_each_without_streaming_and_errors_are_openais() {
    let server = llm_server(LlmConfig {
        step_base_ms: 1.0,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/completions", base_url(&server));
    let reply = post(
        &c,
        &url,
        json!({"model": "example-model", "prompt": ["x y", "z"], "max_tokens": 3}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json();
    for (index, prompt) in ["x y", "z"].iter().enumerate() {
        assert_eq!(
            v["choices"][index]["text"],
            answer_tokens("example-model", prompt)[..3].concat()
        );
        assert_eq!(v["choices"][index]["finish_reason"], "length");
    }
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9})
    );
    let reply = post(
        &c,
        &url,
        json!({"model": "gpt-9", "prompt": "x"}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json()["error"]["message"],
        "The model `gpt-9` does not exist."
    );
    let chat = format!("{}/v1/chat/completions", base_url(&server));
    let reply = post(
        &c,
        &chat,
        json!({"model": "example-model", "messages": []}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    let reply = post(&c, &chat, "{not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// The LLM gauges of `GET /metrics`: (running, waiting).
async fn llm_gauges(c: &HttpClient, server: &stub_server::RunningServer) -> (u64, u64) {
    let text =
        String::from_utf8_lossy(&get(c, &format!("{}/metrics", base_url(server))).await.body)
            .into_owned();
    let gauge = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        gauge("stub_llm_running_sequences"),
        gauge("stub_llm_waiting_sequences"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequence_gauges_are_zero_once_every_stream_has_ended() {
    // No timing is asserted, but the streams would load the timed tests.
    let _timing = timing_lock().await;
    let server = llm_server(LlmConfig {
        max_num_seqs: 3,
        step_base_ms: 2.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        max_batched_tokens: 2048,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/chat/completions", base_url(&server));
    // Seven streams for three slots: some wait, all finish.
    let streams: Vec<_> = (0..7)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            let body = json!({"model": "example-model", "messages": [{"role": "user", "content": format!("prompt {i}")}], "max_tokens": 4 + i, "stream": true});
            tokio::spawn(async move { stream(&c, &url, body).await })
        })
        .collect();
    for events in streams {
        assert_eq!(events.await.unwrap().last().unwrap().1, "[DONE]");
    }
    // Every answer has ended: nothing runs or waits, read at once.
    assert_eq!(llm_gauges(&c, &server).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_frees_its_slot_in_the_gauge() {
    // No timing is asserted, but the streams would load the timed tests.
    let _timing = timing_lock().await;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server = llm_server(LlmConfig {
        max_num_seqs: 4,
        step_base_ms: 5.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        max_batched_tokens: 2048,
        ..LlmConfig::default()
    });
    let c = client();
    // Two answers of 2,000 tokens (10 s each), read up to their first
    // token, then the connections closed.
    let body = json!({"model": "example-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2000, "ignore_eos": true, "stream": true}).to_string();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        while !line.starts_with("data: ") {
            line.clear();
            assert!(
                reader.read_line(&mut line).await.unwrap() > 0,
                "closed early"
            );
        }
        readers.push(reader);
    }
    assert_eq!(llm_gauges(&c, &server).await, (2, 0));
    drop(readers);
    // The server learns of the close only when it next writes a token, so
    // the gauge is polled, for at most 5 s (the answers would last 10 s).
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let gauges = llm_gauges(&c, &server).await;
        if gauges == (0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still {gauges:?} after 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The sum of the samples of `name` (any labels) in the text of `/metrics`.
fn sample(text: &str, name: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .collect();
    assert!(!found.is_empty(), "no {name} in\n{text}");
    found.iter().sum()
}

async fn metrics_text(c: &HttpClient, server: &stub_server::RunningServer) -> String {
    String::from_utf8_lossy(&get(c, &format!("{}/metrics", base_url(server))).await.body)
        .into_owned()
}

/// `n` words `{stem}0 {stem}1 ...`.
fn words(stem: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{stem}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_prefix_is_prefilled_once_and_the_first_token_comes_sooner() {
    let _timing = timing_lock().await;
    let server = llm_server(LlmConfig {
        step_base_ms: 5.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 5.0,
        kv_block_tokens: 16,
        prefix_cache_blocks: 64,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/completions", base_url(&server));
    let shared = words("shared", 64);
    let body = |rest: &str| json!({"model": "example-model", "prompt": format!("{shared} {rest}"), "max_tokens": 2, "stream": true});
    // 100 tokens prefilled: 5 ms + 500 ms before the first token.
    let first = stream(&c, &url, body(&words("first", 36))).await;
    // Its 64-token prefix is cached: 36 tokens, 5 ms + 180 ms.
    let second = stream(&c, &url, body(&words("second", 36))).await;
    let (ttft_first, ttft_second) = (first[0].0, second[0].0);
    assert!(ttft_first >= 500.0, "first token at {ttft_first} ms");
    assert!(
        ttft_second < ttft_first - 150.0,
        "the cached prefix saved too little: {ttft_second} vs {ttft_first} ms"
    );
    let text = metrics_text(&c, &server).await;
    assert_eq!(sample(&text, "vllm:prefix_cache_queries_total"), 200.0);
    assert_eq!(sample(&text, "vllm:prefix_cache_hits_total"), 64.0);
    assert_eq!(sample(&text, "vllm:prompt_tokens_total"), 200.0);
}

/// A word-level tokenizer.json in `dir` whose pre-tokenizer splits
/// punctuation from words, so its counts differ from whitespace words.
fn write_tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let vocab = ["[UNK]", "hello", "world", ",", "!"]
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace));
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path, false).unwrap();
    path
}

#[tokio::test]
async fn with_a_tokenizer_usage_counts_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tokenizer(dir.path());
    let reference = tokenizers::Tokenizer::from_file(&path).unwrap();
    let count = |text: &str| reference.encode(text, false).unwrap().len();
    let server = llm_server(LlmConfig {
        step_base_ms: 1.0,
        tokenizer: Some(stub_server::PromptTokenizer::from_file(&path).unwrap()),
        ..LlmConfig::default()
    });
    let c = client();
    let prompt = "hello, world! hello world";
    // 6 tokens under the tokenizer, 4 whitespace words.
    assert_eq!(count(prompt), 6);
    let reply = post(
        &c,
        &format!("{}/v1/completions", base_url(&server)),
        json!({"model": "example-model", "prompt": prompt, "max_tokens": 2}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["usage"]["prompt_tokens"], count(prompt));
    // A chat prompt is its contents joined with newlines, no template.
    let reply = post(
        &c,
        &format!("{}/v1/chat/completions", base_url(&server)),
        json!({"model": "example-model", "messages": [{"role": "system", "content": "hello, world!"}, {"role": "user", "content": "world"}], "max_tokens": 2}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json()["usage"]["prompt_tokens"],
        count("hello, world!\nworld")
    );
    let text = metrics_text(&c, &server).await;
    assert_eq!(
        sample(&text, "vllm:prompt_tokens_total"),
        (count(prompt) + count("hello, world!\nworld")) as f64
    );
    // A file that is not there, or not a tokenizer, is refused by name.
    let missing = stub_server::PromptTokenizer::from_file(&dir.path().join("none.json"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("--tokenizer") && missing.contains("no such file"),
        "{missing}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    let invalid = stub_server::PromptTokenizer::from_file(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        invalid.contains("not a Hugging Face tokenizer.json"),
        "{invalid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preempted_sequence_is_recomputed_and_its_stream_still_has_every_token_in_order() {
    // No timing is asserted, but the streams would load the timed tests.
    let _timing = timing_lock().await;
    // 12 blocks of 4 tokens. Each sequence (8 prompt tokens, 30 answer
    // tokens) needs up to 10 blocks alone: two cannot both finish without
    // one being preempted.
    let server = llm_server(LlmConfig {
        step_base_ms: 2.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        kv_block_tokens: 4,
        kv_cache_tokens: 48,
        ..LlmConfig::default()
    });
    let c = client();
    let url = format!("{}/v1/completions", base_url(&server));
    let prompts = [words("left", 8), words("right", 8)];
    // One request, two prompts: both sequences arrive together.
    let events = stream(
        &c,
        &url,
        json!({"model": "example-model", "prompt": prompts, "max_tokens": 30, "ignore_eos": true, "stream": true}),
    )
    .await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    for (index, prompt) in prompts.iter().enumerate() {
        let all = answer_tokens("example-model", prompt);
        let expected: Vec<String> = (0..30)
            .map(|k| model::output::answer_token(&all, k))
            .collect();
        let got: Vec<String> = events
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v["choices"][0]["index"] == index)
            .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(got, expected, "prompt {index}");
    }
    let text = metrics_text(&c, &server).await;
    assert!(
        sample(&text, "vllm:num_preemptions_total") >= 1.0,
        "no preemption:\n{text}"
    );
    assert_eq!(sample(&text, "vllm:generation_tokens_total"), 60.0);
    assert_eq!(sample(&text, "vllm:prompt_tokens_total"), 16.0);
    assert_eq!(sample(&text, "vllm:kv_cache_usage_perc"), 0.0);
    // A request that could never fit alone is refused, not run.
    let reply = post(
        &c,
        &url,
        json!({"model": "example-model", "prompt": prompts[0], "max_tokens": 60, "ignore_eos": true}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("--kv-cache-tokens"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_metrics_count_what_the_clients_saw() {
    let _timing = timing_lock().await;
    let server = llm_server(LlmConfig {
        max_num_seqs: 1,
        step_base_ms: 10.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        ..LlmConfig::default()
    });
    let c = client();
    let completions = format!("{}/v1/completions", base_url(&server));
    let chat = format!("{}/v1/chat/completions", base_url(&server));
    // Three prompts in one request and two chats, one slot: they run one
    // after another, and at least two of the three prompts, which arrive
    // together, wait a whole answer (4 steps of 10 ms or more) each.
    let list = stream(
        &c,
        &completions,
        json!({"model": "example-model", "prompt": ["a b c", "d e", "f"], "max_tokens": 4, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let chat_body = |content: &str, max_tokens: usize| json!({"model": "example-model", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": true, "stream_options": {"include_usage": true}});
    let chat_one = stream(&c, &chat, chat_body("one two three four", 5));
    let chat_two = stream(&c, &chat, chat_body("five", 3));
    let (list, chat_one, chat_two) = tokio::join!(list, chat_one, chat_two);
    let mut prompt_tokens = 0.0;
    let mut completion_tokens = 0.0;
    let mut tokens_seen = Vec::new();
    for events in [&list, &chat_one, &chat_two] {
        let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
        prompt_tokens += usage["usage"]["prompt_tokens"].as_f64().unwrap();
        completion_tokens += usage["usage"]["completion_tokens"].as_f64().unwrap();
        // Tokens per choice.
        let mut per_choice = std::collections::BTreeMap::<u64, usize>::new();
        for v in events
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        {
            let choice = &v["choices"][0];
            let token = choice["text"]
                .as_str()
                .or(choice["delta"]["content"].as_str());
            if token.is_some_and(|t| !t.is_empty()) {
                *per_choice
                    .entry(choice["index"].as_u64().unwrap())
                    .or_default() += 1;
            }
        }
        tokens_seen.extend(per_choice.into_values());
    }
    assert_eq!(tokens_seen.len(), 5, "five sequences");
    let total_seen: usize = tokens_seen.iter().sum();
    assert_eq!(completion_tokens, total_seen as f64);
    let text = metrics_text(&c, &server).await;
    assert_eq!(sample(&text, "vllm:request_success_total"), 5.0);
    assert_eq!(sample(&text, "vllm:prompt_tokens_total"), prompt_tokens);
    assert_eq!(
        sample(&text, "vllm:generation_tokens_total"),
        completion_tokens
    );
    for name in [
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
    ] {
        assert_eq!(sample(&text, &format!("{name}_count")), 5.0, "{name}");
        let infinite =
            format!("{name}_bucket{{model_name=\"example-model\",engine=\"0\",le=\"+Inf\"}} 5\n");
        assert!(text.contains(&infinite), "no {infinite:?} in\n{text}");
    }
    // One gap per token after the first.
    let gaps = (total_seen - tokens_seen.len()) as f64;
    assert_eq!(
        sample(&text, "vllm:inter_token_latency_seconds_count"),
        gaps
    );
    assert_eq!(
        sample(&text, "vllm:time_per_output_token_seconds_count"),
        gaps
    );
    let queued = sample(&text, "vllm:request_queue_time_seconds_sum");
    assert!(queued >= 0.08, "queue time {queued} s");
    assert!(
        text.contains("vllm:num_requests_running{model_name=\"example-model\",engine=\"0\"} 0\n")
    );
    assert_eq!(sample(&text, "vllm:num_requests_waiting"), 0.0);
    assert_eq!(sample(&text, "vllm:num_preemptions_total"), 0.0);
    assert_eq!(sample(&text, "vllm:kv_cache_usage_perc"), 0.0);
}

/// The whole body of a streamed request, as text.
async fn raw_stream(c: &HttpClient, url: &str, body: Value) -> String {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = c.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn sse_stamps_precede_every_event_with_the_time_it_was_written() {
    let body = json!({"model": "example-model", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}});
    let stamped = llm_server(LlmConfig {
        step_base_ms: 1.0,
        sse_stamps: true,
        ..LlmConfig::default()
    });
    let c = client();
    let before = unix_ns();
    let text = raw_stream(
        &c,
        &format!("{}/v1/chat/completions", base_url(&stamped)),
        body.clone(),
    )
    .await;
    let after = unix_ns();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(events.len() >= 4, "{text}");
    let mut last = 0u128;
    for event in &events {
        let lines: Vec<&str> = event.lines().collect();
        assert_eq!(lines.len(), 2, "one stamp, one data line: {event:?}");
        let stamp: u128 = lines[0]
            .strip_prefix(": t=")
            .unwrap_or_else(|| panic!("no stamp first: {event:?}"))
            .parse()
            .unwrap();
        assert!(lines[1].starts_with("data: "), "{event:?}");
        assert!(stamp >= last, "stamps went back: {stamp} after {last}");
        let second = 1_000_000_000;
        assert!(
            stamp + second >= before && stamp <= after + second,
            "stamp {stamp} not within a second of [{before}, {after}]"
        );
        last = stamp;
    }
    assert_eq!(*events.last().unwrap(), format!(": t={last}\ndata: [DONE]"));
    // Without the flag: data lines alone.
    let plain = llm_server(LlmConfig {
        step_base_ms: 1.0,
        ..LlmConfig::default()
    });
    let text = raw_stream(
        &c,
        &format!("{}/v1/chat/completions", base_url(&plain)),
        body,
    )
    .await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.is_empty() || l.starts_with("data: ")),
        "{text}"
    );
}
