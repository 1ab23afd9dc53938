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
