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
