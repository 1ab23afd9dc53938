//! An LLM server simulator behind the OpenAI-compatible API
//! (`POST /v1/chat/completions`, `POST /v1/completions`), with continuous
//! batching as vLLM schedules it.
//!
//! One step loop runs every sequence. A step admits waiting sequences while
//! fewer than `max_num_seqs` run, and spends a budget of
//! `max_batched_tokens` tokens: one per running sequence that decodes, the
//! rest on prompt tokens of sequences still prefilling (chunked prefill,
//! oldest first). It costs `step_base_ms + step_per_seq_ms x running +
//! prefill_per_token_ms x prefilled tokens`, honoured by the precise timer;
//! at its end every sequence whose prompt is done emits one token, so a
//! sequence's first token comes at the end of the step that finished its
//! prompt, and the time to first token grows with the queue for a slot.
//!
//! Tokens are the words of `model::output::expected_output(model, prompt)`
//! (the first as it is, the others with their leading space), so a client
//! can verify a streamed answer; `max_tokens` cuts it (`finish_reason`
//! `length`, else `stop`), and with vLLM's `ignore_eos` the answer goes on,
//! repeated, to exactly `max_tokens`. Streams are server-sent events in OpenAI's chunk
//! format ending in `data: [DONE]`, with a `usage` chunk when the request
//! asks `stream_options.include_usage`; without `stream` the whole answer
//! comes as one JSON body with `usage`. A completions `prompt` may be a
//! list: one sequence, and one choice `index`, per prompt.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::faults::FaultBody;
use crate::http::json;
use crate::timer::PreciseTimer;

/// The step loop's cost model and limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmConfig {
    /// Most sequences running at once (vLLM's `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Fixed cost of one step, ms.
    pub step_base_ms: f64,
    /// Cost per running sequence in a step, ms.
    pub step_per_seq_ms: f64,
    /// Cost per prompt token prefilled in a step, ms.
    pub prefill_per_token_ms: f64,
    /// Tokens one step may process (decodes plus prefill chunks).
    pub max_batched_tokens: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 8,
            step_base_ms: 20.0,
            step_per_seq_ms: 0.5,
            prefill_per_token_ms: 0.05,
            max_batched_tokens: 2048,
        }
    }
}

/// What a sequence's receiver gets.
enum Emit {
    Token(String),
    Done,
}

struct Sequence {
    prompt_tokens: usize,
    prefilled: usize,
    tokens: Vec<String>,
    emitted: usize,
    tx: mpsc::UnboundedSender<Emit>,
}

/// Handle to the step loop.
pub(crate) struct LlmEngine {
    submit: mpsc::UnboundedSender<Sequence>,
    /// Sequences running now, for `/metrics`.
    pub(crate) running: Arc<AtomicUsize>,
    /// Sequences waiting for a slot, for `/metrics`.
    pub(crate) waiting: Arc<AtomicUsize>,
}

impl LlmEngine {
    /// Starts the step loop on the current runtime.
    pub(crate) fn start(config: LlmConfig) -> std::io::Result<Self> {
        let (submit, incoming) = mpsc::unbounded_channel();
        let running = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        let timer = PreciseTimer::start()?;
        tokio::spawn(step_loop(
            config,
            incoming,
            timer,
            running.clone(),
            waiting.clone(),
        ));
        Ok(Self {
            submit,
            running,
            waiting,
        })
    }

    fn enqueue(&self, prompt: &str, tokens: Vec<String>) -> mpsc::UnboundedReceiver<Emit> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sequence = Sequence {
            // At least one token: an empty prompt still needs a prefill.
            prompt_tokens: prompt.split_whitespace().count().max(1),
            prefilled: 0,
            tokens,
            emitted: 0,
            tx,
        };
        // A closed loop means the server is going away; the receiver then
        // ends at once and the client sees a cut stream.
        let _ = self.submit.send(sequence);
        rx
    }
}

async fn step_loop(
    config: LlmConfig,
    mut incoming: mpsc::UnboundedReceiver<Sequence>,
    timer: PreciseTimer,
    running_gauge: Arc<AtomicUsize>,
    waiting_gauge: Arc<AtomicUsize>,
) {
    let mut waiting: VecDeque<Sequence> = VecDeque::new();
    let mut running: Vec<Sequence> = Vec::new();
    loop {
        if running.is_empty() && waiting.is_empty() {
            match incoming.recv().await {
                Some(sequence) => waiting.push_back(sequence),
                None => return,
            }
        }
        while let Ok(sequence) = incoming.try_recv() {
            waiting.push_back(sequence);
        }
        // Clients that left free their slots before the step.
        running.retain(|s| !s.tx.is_closed());
        waiting.retain(|s| !s.tx.is_closed());
        while running.len() < config.max_num_seqs {
            match waiting.pop_front() {
                Some(sequence) => running.push(sequence),
                None => break,
            }
        }
        running_gauge.store(running.len(), Ordering::Relaxed);
        waiting_gauge.store(waiting.len(), Ordering::Relaxed);
        if running.is_empty() {
            continue;
        }
        // Decodes first (one token each), then prefill chunks, oldest first.
        let decoding = running
            .iter()
            .filter(|s| s.prefilled == s.prompt_tokens)
            .count();
        let mut budget = config.max_batched_tokens.saturating_sub(decoding);
        let mut prefill_tokens = 0;
        for sequence in running.iter_mut().filter(|s| s.prefilled < s.prompt_tokens) {
            let chunk = (sequence.prompt_tokens - sequence.prefilled).min(budget);
            sequence.prefilled += chunk;
            prefill_tokens += chunk;
            budget -= chunk;
        }
        let step_ms = config.step_base_ms
            + config.step_per_seq_ms * running.len() as f64
            + config.prefill_per_token_ms * prefill_tokens as f64;
        let started = Instant::now();
        timer
            .sleep_until(started + Duration::from_secs_f64(step_ms.max(0.0) / 1000.0))
            .await;
        for sequence in running
            .iter_mut()
            .filter(|s| s.prefilled == s.prompt_tokens)
        {
            if let Some(token) = sequence.tokens.get(sequence.emitted) {
                let _ = sequence.tx.send(Emit::Token(token.clone()));
                sequence.emitted += 1;
            }
        }
        let (finished, still): (Vec<Sequence>, Vec<Sequence>) = running
            .into_iter()
            .partition(|s| s.prefilled == s.prompt_tokens && s.emitted == s.tokens.len());
        running = still;
        // The gauges drop before a finished answer ends: a client that has
        // read `[DONE]` and then reads /metrics sees its sequence gone,
        // also when it was the last one and the loop goes idle.
        running_gauge.store(running.len(), Ordering::Relaxed);
        waiting_gauge.store(waiting.len(), Ordering::Relaxed);
        for sequence in finished {
            let _ = sequence.tx.send(Emit::Done);
        }
    }
}

/// `messages[].content` of a chat request.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields of a chat or completions request this server reads; others
/// (temperature, `ignore_eos`, ...) are accepted and ignored.
#[derive(Debug, Deserialize)]
struct LlmRequest {
    model: String,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<Prompt>,
    #[serde(default)]
    max_tokens: Option<usize>,
    /// vLLM's extension: generate `max_tokens` whatever the answer's end.
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

/// Most tokens one answer may ask for (with `ignore_eos` an answer is as
/// long as asked).
const MAX_TOKENS: usize = 65_536;

/// Which endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

fn openai_error(status: StatusCode, message: String) -> Response<FaultBody> {
    json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error"}})
            .to_string()
            .into_bytes(),
    )
}

/// Answers an OpenAI-compatible request on `engine`.
pub(crate) async fn handle(
    engine: &LlmEngine,
    models: &[String],
    endpoint: Endpoint,
    body: &[u8],
) -> Response<FaultBody> {
    let request: LlmRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    if !models.contains(&request.model) {
        return openai_error(
            StatusCode::NOT_FOUND,
            format!("The model `{}` does not exist.", request.model),
        );
    }
    let prompts: Vec<String> = match (endpoint, &request.messages, &request.prompt) {
        (Endpoint::Chat, Some(messages), _) if !messages.is_empty() => vec![messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")],
        (Endpoint::Completions, _, Some(Prompt::One(p))) => vec![p.clone()],
        (Endpoint::Completions, _, Some(Prompt::Many(ps))) if !ps.is_empty() && ps.len() <= 256 => {
            ps.clone()
        }
        (Endpoint::Chat, ..) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "`messages` must be a non-empty list".into(),
            )
        }
        (Endpoint::Completions, ..) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "`prompt` must be a string or a list of 1 to 256 strings".into(),
            )
        }
    };
    if let Some(n) = request.max_tokens.filter(|n| !(1..=MAX_TOKENS).contains(n)) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            format!("`max_tokens` is {n}; allowed: 1 to {MAX_TOKENS}"),
        );
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let mut choices = Vec::new();
    for prompt in &prompts {
        let all = model::output::answer_tokens(&request.model, prompt);
        let limit = model::output::answer_length(all.len(), request.max_tokens, request.ignore_eos);
        let finish =
            if request.max_tokens == Some(limit) && (request.ignore_eos || limit < all.len()) {
                "length"
            } else {
                "stop"
            };
        let tokens: Vec<String> = (0..limit)
            .map(|k| model::output::answer_token(&all, k))
            .collect();
        let prompt_tokens = prompt.split_whitespace().count().max(1);
        let rx = engine.enqueue(prompt, tokens.clone());
        choices.push((rx, finish, prompt_tokens, tokens.len()));
    }
    let object = match endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Completions => "text_completion",
    };
    let usage = json!({
        "prompt_tokens": choices.iter().map(|c| c.2).sum::<usize>(),
        "completion_tokens": choices.iter().map(|c| c.3).sum::<usize>(),
        "total_tokens": choices.iter().map(|c| c.2 + c.3).sum::<usize>(),
    });
    if !request.stream {
        let mut out = Vec::new();
        for (index, (mut rx, finish, ..)) in choices.into_iter().enumerate() {
            let mut text = String::new();
            while let Some(emit) = rx.recv().await {
                match emit {
                    Emit::Token(t) => text.push_str(&t),
                    Emit::Done => break,
                }
            }
            out.push(match endpoint {
                Endpoint::Chat => json!({"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish}),
                Endpoint::Completions => json!({"index": index, "text": text, "finish_reason": finish}),
            });
        }
        let body = json!({"id": "cmpl-stub", "object": object, "model": request.model, "choices": out, "usage": usage});
        return json(StatusCode::OK, body.to_string().into_bytes());
    }
    // Stream: every choice's tokens as they come, in one event stream.
    let (events, body) = mpsc::unbounded_channel::<Bytes>();
    let model = request.model.clone();
    tokio::spawn(async move {
        let chunk_object = format!("{object}.chunk");
        let frame = |value: serde_json::Value| Bytes::from(format!("data: {value}\n\n"));
        let mut merged = mpsc::unbounded_channel::<(usize, Option<String>)>();
        let mut finishes = Vec::new();
        for (index, (mut rx, finish, ..)) in choices.into_iter().enumerate() {
            finishes.push(finish);
            let tx = merged.0.clone();
            tokio::spawn(async move {
                while let Some(emit) = rx.recv().await {
                    match emit {
                        Emit::Token(t) => {
                            if tx.send((index, Some(t))).is_err() {
                                return;
                            }
                        }
                        Emit::Done => {
                            let _ = tx.send((index, None));
                            return;
                        }
                    }
                }
            });
        }
        drop(merged.0);
        let mut open = finishes.len();
        while let Some((index, token)) = merged.1.recv().await {
            let choice = match (endpoint, &token) {
                (Endpoint::Chat, Some(t)) => {
                    json!({"index": index, "delta": {"content": t}, "finish_reason": null})
                }
                (Endpoint::Completions, Some(t)) => {
                    json!({"index": index, "text": t, "finish_reason": null})
                }
                (Endpoint::Chat, None) => {
                    json!({"index": index, "delta": {}, "finish_reason": finishes[index]})
                }
                (Endpoint::Completions, None) => {
                    json!({"index": index, "text": "", "finish_reason": finishes[index]})
                }
            };
            let chunk = json!({"id": "cmpl-stub", "object": chunk_object, "model": model, "choices": [choice]});
            if events.send(frame(chunk)).is_err() {
                return; // the client left
            }
            if token.is_none() {
                open -= 1;
                if open == 0 {
                    break;
                }
            }
        }
        if open > 0 {
            return; // the server went away mid-answer: the stream ends cut
        }
        if include_usage {
            let chunk = json!({"id": "cmpl-stub", "object": chunk_object, "model": model, "choices": [], "usage": usage});
            let _ = events.send(frame(chunk));
        }
        let _ = events.send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    let mut response = Response::new(FaultBody::Stream(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}
