//! OpenAI-compatible LLM endpoints (vLLM, TGI, llama.cpp's server, SGLang,
//! Triton's OpenAI frontend): `POST /v1/chat/completions` and
//! `POST /v1/completions`, streamed as server-sent events by default.
//!
//! A streamed answer is read as it arrives: the transport hands each
//! read's bytes with the read's time ([`crate::http1::Arrival`]) to a
//! [`StreamReader`], which feeds the [`SseParser`], so each event carries
//! the time of the read that completed it and no body is kept. Per logical request that gives the first content delta
//! (TTFT, measured by the engine from the intended start), every gap
//! between deltas (ITL) and the output tokens: the server's
//! `usage.completion_tokens` when it honours `stream_options.include_usage`
//! on a one-prompt request, else the content deltas counted.
//!
//! A completions `prompt` may be a list: client batching, one choice
//! `index` per prompt, interleaved in one stream. Chat has no such list.
//!
//! A stream whose events carry the server's write stamps (`: t=<ns>`)
//! also gives, per content delta, the client's own delay from the stamp to
//! its read, and the server's gaps between stamps ([`super::stamps`]); an
//! unstamped stream gives neither.
//!
//! Failures, as row errors: `truncated_stream` (the stream ended without
//! `[DONE]` or a finish reason for every choice, or the body was cut),
//! `bad_event` (an event that is not a chunk, or names a choice that was not
//! asked for), `stream_error` (the server put an error object in the stream),
//! `http_<status>: <the server's message>`, `bad_json` (a non-streamed body
//! that is not a completion) and `output_mismatch` (verification against the
//! simulator's deterministic answer, see [`model::output::answer_text`]).

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use model::log::TokensFrom;
use model::output::{answer_text, output_digest};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::sse::{EventRef, SseParser};
use super::stamps::{ResponseStamps, StampStats};
use super::{all_failed, no_verdict, Api, ApiError, Shape};
use crate::client::{HttpResponse, TransportError};
use crate::engine::{ms_between, LogicalRequest, RequestShape};
use crate::http1::{Arrival, BodyReader};
use crate::verify::{Checks, ItemVerdict, StreamedItem};

/// Which of the two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiEndpoint {
    /// `/v1/chat/completions`, `messages`.
    Chat,
    /// `/v1/completions`, `prompt` (a string, or a list for a batch).
    Completions,
}

impl OpenAiEndpoint {
    /// The path below the server's `/v1`.
    fn path(self) -> &'static str {
        match self {
            Self::Chat => "/chat/completions",
            Self::Completions => "/completions",
        }
    }
}

/// What the command line says of an OpenAI-compatible run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiOptions {
    /// Chat or completions.
    pub endpoint: OpenAiEndpoint,
    /// Stream the answer (the default); off: one JSON body, timed end to end.
    pub stream: bool,
    /// `max_tokens` to send.
    pub max_tokens: Option<u32>,
    /// Fields merged into every body last, so they win (e.g. `ignore_eos`).
    pub extra_body: Option<Map<String, Value>>,
}

impl OpenAiOptions {
    /// The name of the API on the command line.
    pub(crate) fn name(&self) -> &'static str {
        match self.endpoint {
            OpenAiEndpoint::Chat => "openai-chat",
            OpenAiEndpoint::Completions => "openai-completions",
        }
    }
}

/// Parses `--extra-body`: a JSON object.
pub fn parse_extra_body(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            // Keys the client sets itself and measures by: overriding them
            // would break what is measured (a `stream: false` answer read
            // as a stream fails every row) or what is sent.
            let owned = [
                ("stream", "--no-stream asks for whole answers"),
                (
                    "stream_options",
                    "the client asks for usage in the stream itself",
                ),
                ("model", "--model names the model"),
                ("messages", "--payloads gives the prompts"),
                ("prompt", "--payloads gives the prompts"),
            ];
            for (key, instead) in owned {
                if map.contains_key(key) {
                    return Err(format!(
                        "--extra-body may not set {key:?}: {instead}; it takes other fields such as temperature, ignore_eos or max_tokens"
                    ));
                }
            }
            Ok(map)
        }
        Ok(other) => Err(format!(
            "--extra-body must be a JSON object such as '{{\"ignore_eos\": true}}', not {other}"
        )),
        Err(e) => Err(format!("--extra-body is not JSON: {e}")),
    }
}

/// The request path for a URL path: a path that already ends in the
/// endpoint is used as it is, one ending in `/v1` gets the endpoint, any
/// other (`/` included) is a base that gets `/v1` and the endpoint.
pub(crate) fn request_path(url_path: &str, endpoint: OpenAiEndpoint) -> String {
    let path = url_path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    if path.ends_with(&format!("/v1{}", endpoint.path())) {
        path.to_owned()
    } else if path.ends_with("/v1") {
        format!("{path}{}", endpoint.path())
    } else {
        format!("{path}/v1{}", endpoint.path())
    }
}

/// An OpenAI-compatible endpoint, set up for one run.
#[derive(Debug)]
pub(crate) struct OpenAiApi {
    options: OpenAiOptions,
    path: String,
    /// The `max_tokens` and `ignore_eos` the bodies carry (extra body
    /// included), which the expected answers depend on.
    max_tokens: Option<usize>,
    /// `max_tokens` of `--extra-body`, which wins over a request's own.
    extra_max_tokens: Option<usize>,
    ignore_eos: bool,
    /// What the write stamps of the run's streams measured, added to by
    /// each stream's reader as it reads.
    stamps: Arc<StampStats>,
}

impl OpenAiApi {
    /// Sets the API up for requests to `url_path` carrying `batch_size`
    /// logical requests each.
    pub(crate) fn new(
        options: OpenAiOptions,
        url_path: &str,
        batch_size: usize,
    ) -> Result<Self, ApiError> {
        if batch_size > 1 && options.endpoint == OpenAiEndpoint::Chat {
            return Err(ApiError::OpenAi(
                "openai-chat sends one conversation per request; for --batch-size > 1 use \
                 --api openai-completions, whose prompt may be a list"
                    .into(),
            ));
        }
        let extra = options.extra_body.as_ref();
        let extra_max_tokens = match extra.and_then(|e| e.get("max_tokens")) {
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        ApiError::OpenAi(format!(
                            "--extra-body max_tokens must be a positive integer, not {value}"
                        ))
                    })?,
            ),
            None => None,
        };
        let max_tokens = extra_max_tokens.or(options.max_tokens.map(|n| n as usize));
        let ignore_eos = match extra.and_then(|e| e.get("ignore_eos")) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ApiError::OpenAi(format!(
                    "--extra-body ignore_eos must be true or false, not {other}"
                )))
            }
        };
        if extra.is_some_and(|e| e.contains_key("n")) {
            return Err(ApiError::OpenAi(
                "--extra-body n is not supported: each choice is one logical request".into(),
            ));
        }
        Ok(Self {
            path: request_path(url_path, options.endpoint),
            options,
            max_tokens,
            extra_max_tokens,
            ignore_eos,
            stamps: Arc::new(StampStats::new()),
        })
    }

    /// A body for `model` and `prompt`; `shape` is the request's own
    /// `max_tokens` and `min_tokens` (a batch has the run's).
    fn body(&self, model: &str, prompt: Value, shape: RequestShape) -> Vec<u8> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(model.to_owned()));
        match self.options.endpoint {
            OpenAiEndpoint::Chat => body.insert("messages".into(), prompt),
            OpenAiEndpoint::Completions => body.insert("prompt".into(), prompt),
        };
        if let Some(n) = shape.max_tokens.or(self.options.max_tokens) {
            body.insert("max_tokens".into(), Value::from(n));
        }
        if let Some(n) = shape.min_tokens {
            // vLLM's and llama.cpp's ways to make the answer as long as
            // asked: both are sent, each server reads its own.
            body.insert("min_tokens".into(), Value::from(n));
            body.insert("ignore_eos".into(), Value::Bool(true));
        }
        body.insert("stream".into(), Value::Bool(self.options.stream));
        if self.options.stream {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        if let Some(extra) = &self.options.extra_body {
            for (key, value) in extra {
                body.insert(key.clone(), value.clone());
            }
        }
        // A map of JSON values always serialises.
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }

    fn prompt(&self, item: &LogicalRequest) -> Value {
        match self.options.endpoint {
            OpenAiEndpoint::Chat => match &item.messages {
                Some(messages) => serde_json::from_str(messages).unwrap_or(Value::Null),
                None => serde_json::json!([{"role": "user", "content": item.input}]),
            },
            OpenAiEndpoint::Completions => Value::String(item.input.clone()),
        }
    }

    fn judge(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        if !response.status.is_success() {
            return all_failed(items.len(), &http_error(response));
        }
        let answers = if self.options.stream {
            read_stream(response, items.len(), &self.stamps)
        } else {
            read_whole(&response.body, items.len())
        };
        let answers = match answers {
            Ok(answers) => answers,
            Err(kind) => return all_failed(items.len(), kind),
        };
        items
            .iter()
            .zip(answers)
            .map(|(item, answer)| self.verdict(item, answer, checks))
            .collect()
    }

    fn verdict(&self, item: &LogicalRequest, answer: Answer, checks: Checks) -> ItemVerdict {
        // The request's own max_tokens, unless --extra-body set one for all.
        let max_tokens = match (self.extra_max_tokens, item.shape.max_tokens) {
            (Some(n), _) => Some(n),
            (None, Some(n)) => usize::try_from(n).ok(),
            (None, None) => self.max_tokens,
        };
        let ignore_eos = self.ignore_eos || item.shape.min_tokens.is_some();
        let matches = !checks.verify
            || answer.text == answer_text(&item.model, &item.input, max_tokens, ignore_eos).0;
        let (output_tokens, tokens_from) = match (answer.usage_tokens, self.options.stream) {
            (Some(n), _) => (Some(n), Some(TokensFrom::Usage)),
            (None, true) => (Some(answer.deltas), Some(TokensFrom::Counted)),
            (None, false) => (None, None),
        };
        ItemVerdict {
            error: if matches {
                String::new()
            } else {
                "output_mismatch".into()
            },
            verified: checks.verify && matches,
            output_digest: checks
                .digests
                .then(|| output_digest(answer.text.as_bytes())),
            stream: Some(StreamedItem {
                first_token_at: answer.first_token_at,
                itl_ms: answer.itl_ms,
                output_tokens,
                tokens_from,
                prompt_tokens: answer.usage_prompt_tokens,
                answer: item.shape.keep_answer.then_some(answer.text),
            }),
        }
    }
}

impl Api for OpenAiApi {
    fn name(&self) -> &'static str {
        self.options.name()
    }

    fn can_verify(&self) -> bool {
        true
    }

    fn single_body(&self, item: &LogicalRequest) -> Vec<u8> {
        self.body(&item.model, self.prompt(item), item.shape)
    }

    fn batch_body(&self, items: &[LogicalRequest]) -> Vec<u8> {
        let model = items.first().map_or("", |i| &*i.model);
        let prompts = items
            .iter()
            .map(|i| Value::String(i.input.clone()))
            .collect();
        self.body(model, Value::Array(prompts), RequestShape::default())
    }

    fn needs_body(&self, _shape: Shape, _checks: Checks) -> bool {
        // A streamed answer goes to its reader instead (an error's body is
        // read whole all the same).
        !self.options.stream
    }

    fn body_reader(&self, items: usize) -> Option<Box<dyn BodyReader>> {
        self.options.stream.then(|| {
            Box::new(StreamReader::new(items, Arc::clone(&self.stamps))) as Box<dyn BodyReader>
        })
    }

    fn token_metrics(&self) -> bool {
        true
    }

    fn judge_single(
        &self,
        response: &mut HttpResponse,
        item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict {
        self.judge(response, std::slice::from_ref(item), checks)
            .pop()
            .unwrap_or_else(no_verdict)
    }

    fn judge_batch(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        self.judge(response, items, checks)
    }

    fn failure_kind(&self, error: TransportError) -> &'static str {
        match error {
            // A cut event stream, however it was framed.
            TransportError::TruncatedBody if self.options.stream => "truncated_stream",
            other => other.kind(),
        }
    }

    fn request_path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn stamps(&self) -> Option<&StampStats> {
        Some(&self.stamps)
    }
}

/// `http_<status>: <message>`, the message from OpenAI's error object
/// (`{"error": {"message"}}`, or `{"error": "..."}`, or `{"detail"}` as
/// some servers send), on one line and at most 200 characters.
fn http_error(response: &HttpResponse) -> String {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Object { message: String },
        Text(String),
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<ErrorField>,
        detail: Option<Value>,
        message: Option<String>,
    }
    let status = response.status.as_u16();
    let message = match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(ErrorBody {
            error: Some(ErrorField::Object { message } | ErrorField::Text(message)),
            ..
        }) => message,
        Ok(ErrorBody {
            detail: Some(detail),
            ..
        }) => match detail {
            Value::String(text) => text,
            other => other.to_string(),
        },
        Ok(ErrorBody {
            message: Some(message),
            ..
        }) => message,
        _ => String::from_utf8_lossy(&response.body).into_owned(),
    };
    let one_line: String = message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if one_line.is_empty() {
        format!("http_{status}")
    } else {
        format!("http_{status}: {one_line}")
    }
}

/// What came back for one choice.
#[derive(Debug, Default)]
struct Answer {
    text: String,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
    itl_ms: Vec<f64>,
    deltas: u64,
    finished: bool,
    usage_tokens: Option<u64>,
    usage_prompt_tokens: Option<u64>,
    /// The write stamp of the last content delta, Unix ns.
    last_stamp_ns: Option<u64>,
}

/// One streamed chunk, as far as it is read. Its text borrows from the
/// event where JSON has no escape in it, and the fields only tested for
/// presence are skipped unread: this runs once per token.
#[derive(Debug, Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
    usage: Option<Usage>,
    error: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: usize,
    /// Chat: `delta.content`.
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    /// Completions: `text`.
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    finish_reason: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    completion_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
}

/// Reads a streamed answer of `n` choices as its bytes arrive (the
/// transport's [`BodyReader`]): each event is parsed and timed by the read
/// that completed it, and only the answers' text and timings are kept.
/// The first malformed event ends the reading; the rest is ignored.
///
/// The write stamps' measures go to the run's [`StampStats`] as they are
/// read, [`STAMPS_PER_LOCK`] values at a time: a read is a read whatever
/// becomes of its answer, and adding an answer's values only at its end
/// made 1,000 answers that end together stall the other streams' reads.
#[derive(Debug)]
struct StreamReader {
    parser: SseParser,
    answers: Vec<Answer>,
    stamps: ResponseStamps,
    stamp_stats: Arc<StampStats>,
    usage: Option<Usage>,
    done: bool,
    error: Option<&'static str>,
}

/// Stamped values a reader keeps before it adds them to the run's.
const STAMPS_PER_LOCK: usize = 64;

impl StreamReader {
    fn new(n: usize, stamp_stats: Arc<StampStats>) -> Self {
        Self {
            parser: SseParser::new(),
            answers: (0..n).map(|_| Answer::default()).collect(),
            stamps: ResponseStamps::default(),
            stamp_stats,
            usage: None,
            done: false,
            error: None,
        }
    }

    fn read(&mut self, bytes: &[u8], arrival: &Arrival) -> Result<(), &'static str> {
        let mut failed = None;
        let pushed = self.parser.push(bytes, |event| {
            let step = if self.done {
                // Nothing may follow [DONE].
                Err("bad_event")
            } else {
                on_event(event, arrival, &mut self.answers, &mut self.stamps)
            };
            match step {
                Ok(Step::Done) => self.done = true,
                Ok(Step::Usage(counts)) => self.usage = Some(counts),
                Ok(Step::More) => {}
                Err(kind) => {
                    failed = Some(kind);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(kind) = failed {
            return Err(kind);
        }
        pushed.map_err(|_| "bad_event")?;
        if self.stamps.len() >= STAMPS_PER_LOCK {
            self.stamps.flush_into(&self.stamp_stats);
        }
        Ok(())
    }

    /// The answers, once the body has ended.
    fn finish(mut self) -> Result<Vec<Answer>, &'static str> {
        self.stamps.flush_into(&self.stamp_stats);
        if let Some(kind) = self.error {
            return Err(kind);
        }
        let mut answers = self.answers;
        if !self.done && !answers.iter().all(|a| a.finished) {
            return Err("truncated_stream");
        }
        // Usage counts the whole request: it is one item's only when the
        // request carried one.
        if let (Some(usage), [answer]) = (self.usage, answers.as_mut_slice()) {
            answer.usage_tokens = usage.completion_tokens;
            answer.usage_prompt_tokens = usage.prompt_tokens;
        }
        Ok(answers)
    }
}

impl BodyReader for StreamReader {
    fn push(&mut self, bytes: &[u8], arrival: &Arrival) {
        if self.error.is_none() {
            if let Err(kind) = self.read(bytes, arrival) {
                self.error = Some(kind);
            }
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The streamed answer of `n` choices from the reader the transport fed,
/// or, for a body that came another way (whole, as in tests), from the
/// body, every event then timed at the response's end.
fn read_stream(
    response: &mut HttpResponse,
    n: usize,
    stamp_stats: &Arc<StampStats>,
) -> Result<Vec<Answer>, &'static str> {
    let reader = match response.reader.take().map(BodyReader::into_any) {
        Some(any) => match any.downcast::<StreamReader>() {
            Ok(reader) if reader.answers.len() == n => *reader,
            // Another API's reader, or one for another request: a defect.
            _ => return Err("bad_event"),
        },
        None => {
            let mut reader = StreamReader::new(n, Arc::clone(stamp_stats));
            let whole = Arrival {
                body_len: response.body.len(),
                at: response.finished_at,
                unix_ns: None,
            };
            reader.push(&response.body, &whole);
            reader
        }
    };
    reader.finish()
}

enum Step {
    More,
    Usage(Usage),
    Done,
}

fn on_event(
    event: EventRef<'_>,
    arrival: &Arrival,
    answers: &mut [Answer],
    stamps: &mut ResponseStamps,
) -> Result<Step, &'static str> {
    let at = arrival.at;
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Step::Done);
    }
    if event.event == Some("error") {
        return Err("stream_error");
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|_| "bad_event")?;
    if chunk.error.is_some() {
        return Err("stream_error");
    }
    for choice in chunk.choices {
        let answer = answers.get_mut(choice.index).ok_or("bad_event")?;
        let content = choice
            .delta
            .and_then(|d| d.content)
            .or(choice.text)
            .unwrap_or_default();
        if !content.is_empty() {
            match answer.last_token_at {
                None => answer.first_token_at = Some(at),
                Some(last) => answer.itl_ms.push(ms_between(last, at)),
            }
            answer.last_token_at = Some(at);
            if let Some(stamp) = event.stamp_ns {
                stamps.token(stamp, arrival.unix_ns, answer.last_stamp_ns);
                answer.last_stamp_ns = Some(stamp);
            }
            answer.deltas += 1;
            answer.text.push_str(&content);
        }
        if choice.finish_reason.is_some() {
            answer.finished = true;
        }
    }
    Ok(match chunk.usage {
        Some(usage) if usage.completion_tokens.is_some() => Step::Usage(usage),
        _ => Step::More,
    })
}

/// Reads a non-streamed completion of `n` choices.
fn read_whole(body: &[u8], n: usize) -> Result<Vec<Answer>, &'static str> {
    #[derive(Deserialize)]
    struct Whole<'a> {
        #[serde(borrow)]
        choices: Vec<WholeChoice<'a>>,
        usage: Option<Usage>,
    }
    #[derive(Deserialize)]
    struct WholeChoice<'a> {
        #[serde(default)]
        index: usize,
        #[serde(borrow)]
        message: Option<Delta<'a>>,
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    }
    let whole: Whole = serde_json::from_slice(body).map_err(|_| "bad_json")?;
    let mut answers: Vec<Answer> = (0..n).map(|_| Answer::default()).collect();
    let mut seen = vec![false; n];
    for choice in whole.choices {
        let answer = answers.get_mut(choice.index).ok_or("bad_json")?;
        seen[choice.index] = true;
        answer.text = choice
            .message
            .and_then(|m| m.content)
            .or(choice.text)
            .unwrap_or_default()
            .into_owned();
    }
    if seen.contains(&false) {
        return Err("bad_json");
    }
    if let (Some(usage), [answer]) = (whole.usage, answers.as_mut_slice()) {
        answer.usage_tokens = usage.completion_tokens;
        answer.usage_prompt_tokens = usage.prompt_tokens;
    }
    Ok(answers)
}

/// Builds the API for `options` (the one place [`super::build`] calls).
pub(crate) fn build(
    options: &OpenAiOptions,
    url_path: &str,
    batch_size: usize,
) -> Result<Arc<dyn Api>, ApiError> {
    Ok(Arc::new(OpenAiApi::new(
        options.clone(),
        url_path,
        batch_size,
    )?))
}
