//! Executes one HTTP request (or gRPC call) carrying one or more logical
//! requests and turns the outcome into one log row per logical request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use model::log::{LlmTiming, LogRow};

use crate::api::{Api, Shape as BodyShape};
use crate::client::{HttpFailure, HttpResponse, ServerFacts, Transport};
use crate::grpc::KServeGrpc;
use crate::http1::ResponseUse;
use crate::verify::{Checks, ItemVerdict};

/// One input to send, with the instant its latency is measured from.
#[derive(Debug, Clone)]
pub(crate) struct LogicalRequest {
    /// Index in the run; also picks the payload.
    pub request_id: u64,
    /// Model to name in the request.
    pub model: Arc<str>,
    /// The input text (for a chat payload with its own `messages`, their
    /// contents joined by newlines: what its answer is derived from).
    pub input: String,
    /// A chat payload's own `messages` array (or a conversation's
    /// history), as JSON text.
    pub messages: Option<Arc<str>>,
    /// Latency origin: the moment the request was issued (closed loop) or
    /// was due (open loop), before any batching wait or connection set-up.
    pub start: Instant,
    /// What the row says of it beyond its timing.
    pub shape: RequestShape,
}

/// What a request asked for beyond its prompt, and where it stands in
/// the run; copied to its row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RequestShape {
    /// The prompt length asked for, tokens.
    pub input_tokens: Option<u32>,
    /// `max_tokens` to send (`None`: the run's, if any).
    pub max_tokens: Option<u32>,
    /// `min_tokens` to send, with `ignore_eos`.
    pub min_tokens: Option<u32>,
    /// A conversation's session and turn (from 1).
    pub session: Option<(u64, u32)>,
    /// Open loop: how late it was handed to the engine, ms.
    pub send_lag_ms: Option<f64>,
    /// Hand the answer's text back (a conversation's next turn needs it).
    pub keep_answer: bool,
}

/// Maps `Instant`s to wall-clock milliseconds through one anchor taken at
/// start-up, so timestamps are consistent with the monotonic latencies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    anchor: Instant,
    anchor_wall: SystemTime,
    anchor_wall_ms: f64,
}

impl Clock {
    /// Anchors now.
    pub(crate) fn new() -> Self {
        let anchor_wall = SystemTime::now();
        let wall = anchor_wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Self {
            anchor: Instant::now(),
            anchor_wall,
            anchor_wall_ms: wall,
        }
    }

    /// Wall-clock ms since the Unix epoch at `at`.
    pub(crate) fn wall_ms(&self, at: Instant) -> f64 {
        if at >= self.anchor {
            self.anchor_wall_ms + (at - self.anchor).as_secs_f64() * 1000.0
        } else {
            self.anchor_wall_ms - (self.anchor - at).as_secs_f64() * 1000.0
        }
    }

    /// The instant this clock stamps with the wall-clock time `at` (the
    /// inverse of [`Clock::wall_ms`]), or `None` where the monotonic clock
    /// cannot go that far back.
    pub(crate) fn instant_at(&self, at: SystemTime) -> Option<Instant> {
        match at.duration_since(self.anchor_wall) {
            Ok(ahead) => self.anchor.checked_add(ahead),
            Err(behind) => self.anchor.checked_sub(behind.duration()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The HTTP request a row's logical request travelled in.
#[derive(Debug, Clone, Copy)]
struct SentBatch {
    id: u64,
    size: u32,
}

/// What carries the engine's requests.
// One per run, never moved on the load path: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    /// HTTP requests whose bodies `api` writes and whose responses it
    /// judges.
    Http {
        api: Arc<dyn Api>,
        transport: Transport,
    },
    /// KServe v2 gRPC calls.
    Grpc(Arc<KServeGrpc>),
}

/// What a row needs of an exchange that was answered, whatever carried it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    /// HTTP status (200 for a gRPC call that ended OK).
    pub status_code: u16,
    /// What the server said of its queue, execution and batch.
    pub facts: ServerFacts,
    /// When the answer was complete.
    pub finished_at: Instant,
    /// TCP connect, ms (0 on a reused connection).
    pub connect_ms: f64,
    /// TLS handshake, ms (0 on a reused connection; `None` without TLS).
    pub tls_ms: Option<f64>,
    /// Times the request went out again on a new connection.
    pub retries: u32,
}

impl Answer {
    fn of(response: &HttpResponse) -> Self {
        Self {
            status_code: response.status.as_u16(),
            facts: response.facts,
            finished_at: response.finished_at,
            connect_ms: response.connect_ms,
            tls_ms: response.tls_ms,
            retries: response.retries,
        }
    }
}

/// What a row needs of an exchange that failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The row's error.
    pub error: String,
    /// When the failure was observed.
    pub finished_at: Instant,
    /// TCP connect time, when a connection was opened.
    pub connect_ms: Option<f64>,
    /// TLS handshake time, when one was attempted.
    pub tls_ms: Option<f64>,
    /// Times the request went out again before it failed.
    pub retries: u32,
}

/// Sends requests and builds rows; shared by every worker.
pub(crate) struct Engine {
    link: Link,
    checks: Checks,
    clock: Clock,
    next_batch_id: AtomicU64,
    server_batch_items: AtomicU64,
    server_batch_responses: AtomicU64,
    /// HTTP responses by status code, indexed by the code itself
    /// (`http::StatusCode` is always below 1000). A fixed array of atomics
    /// rather than a map behind a lock: counting a response is one relaxed
    /// add, like the batch id above, with no lock for the shards to share.
    status_counts: Box<[AtomicU64]>,
}

/// Slots of [`Engine`]'s status counts: every three-digit code.
const STATUS_SLOTS: usize = 1000;

impl Engine {
    /// An engine sending over `link`.
    pub(crate) fn new(link: Link, checks: Checks, clock: Clock) -> Self {
        Self {
            link,
            checks,
            clock,
            next_batch_id: AtomicU64::new(0),
            server_batch_items: AtomicU64::new(0),
            server_batch_responses: AtomicU64::new(0),
            status_counts: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The clock rows are stamped with.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Restarts batch ids and server statistics (after the warm-up).
    pub(crate) fn reset_counters(&self) {
        if let Some(stamps) = self.stamps() {
            stamps.reset();
        }
        self.next_batch_id.store(0, Ordering::Relaxed);
        self.server_batch_items.store(0, Ordering::Relaxed);
        self.server_batch_responses.store(0, Ordering::Relaxed);
        for count in self.status_counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
        match &self.link {
            Link::Http { transport, .. } => transport.reset_connections_opened(),
            Link::Grpc(grpc) => grpc.reset_connections_opened(),
        }
    }

    /// HTTP responses received so far, by status code (codes never seen
    /// are absent).
    pub(crate) fn status_codes(&self) -> BTreeMap<u16, u64> {
        (0u16..)
            .zip(self.status_counts.iter())
            .map(|(code, count)| (code, count.load(Ordering::Relaxed)))
            .filter(|&(_, count)| count > 0)
            .collect()
    }

    /// TCP connections the run's transport has opened so far.
    pub(crate) fn connections_opened(&self) -> u64 {
        match &self.link {
            Link::Http { transport, .. } => transport.connections_opened(),
            Link::Grpc(grpc) => grpc.connections_opened(),
        }
    }

    /// Whether the API's rows carry LLM timings (TTFT, tokens).
    pub(crate) fn token_metrics(&self) -> bool {
        match &self.link {
            Link::Http { api, .. } => api.token_metrics(),
            Link::Grpc(grpc) => grpc.token_metrics(),
        }
    }

    /// What the server's write stamps measured so far (`None` when no
    /// streamed delta carried one).
    pub(crate) fn stamp_percentiles(&self) -> Option<crate::api::stamps::StampPercentiles> {
        self.stamps().and_then(|s| s.percentiles())
    }

    /// The write stamps an SSE API reads (gRPC streams carry none).
    fn stamps(&self) -> Option<&crate::api::stamps::StampStats> {
        match &self.link {
            Link::Http { api, .. } => api.stamps(),
            Link::Grpc(_) => None,
        }
    }

    /// HTTP requests sent so far.
    pub(crate) fn http_requests(&self) -> u64 {
        self.next_batch_id.load(Ordering::Relaxed)
    }

    /// Mean `X-Batch-Size` over responses that carried it.
    pub(crate) fn server_batch_size_mean(&self) -> Option<f64> {
        let responses = self.server_batch_responses.load(Ordering::Relaxed);
        let items = self.server_batch_items.load(Ordering::Relaxed);
        (responses > 0).then(|| items as f64 / responses as f64)
    }

    /// Sends one logical request as a single-input HTTP request and returns
    /// its row. The load path: no vector is built on the way.
    pub(crate) async fn execute_single(&self, item: &LogicalRequest) -> LogRow {
        self.execute_for_answer(item).await.0
    }

    /// As [`Engine::execute_single`], and the answer's text when the
    /// request asked for it back (`shape.keep_answer`) and it succeeded.
    /// Only HTTP APIs hand an answer back: conversations are refused with
    /// gRPC before the run starts.
    pub(crate) async fn execute_for_answer(
        &self,
        item: &LogicalRequest,
    ) -> (LogRow, Option<String>) {
        let (api, transport) = match &self.link {
            Link::Http { api, transport } => (api, transport),
            Link::Grpc(grpc) => {
                let mut rows = self.call(grpc, std::slice::from_ref(item)).await;
                let row = rows
                    .pop()
                    .unwrap_or_else(|| self.unsent_item_row(item, "no_response"));
                return (row, None);
            }
        };
        let body = api.single_body(item);
        let (batch, outcome) = self
            .send((&**api, transport), body, BodyShape::Single, 1)
            .await;
        match outcome {
            Ok(mut response) => {
                let mut verdict = api.judge_single(&mut response, item, self.checks);
                let answer = verdict.stream.as_mut().and_then(|s| s.answer.take());
                let row = self.response_row(item, batch, &Answer::of(&response), verdict);
                (row, answer)
            }
            Err(failure) => (
                self.failure_row(item, batch, &self.http_failure(&failure)),
                None,
            ),
        }
    }

    /// Sends `items` (all naming the first one's model) as one batch
    /// request and returns one row per item, in order.
    pub(crate) async fn execute_batch(&self, items: &[LogicalRequest]) -> Vec<LogRow> {
        if items.is_empty() {
            return Vec::new();
        }
        let (api, transport) = match &self.link {
            Link::Http { api, transport } => (api, transport),
            Link::Grpc(grpc) => return self.call(grpc, items).await,
        };
        let body = api.batch_body(items);
        let (batch, outcome) = self
            .send((&**api, transport), body, BodyShape::Batch, items.len())
            .await;
        match outcome {
            Ok(mut response) => {
                let verdicts = api.judge_batch(&mut response, items, self.checks);
                let answer = Answer::of(&response);
                items
                    .iter()
                    .zip(verdicts)
                    .map(|(item, verdict)| self.response_row(item, batch, &answer, verdict))
                    .collect()
            }
            Err(failure) => {
                let failure = self.http_failure(&failure);
                items
                    .iter()
                    .map(|item| self.failure_row(item, batch, &failure))
                    .collect()
            }
        }
    }

    /// The next batch id, for a request carrying `items` inputs.
    fn next_batch(&self, items: usize) -> SentBatch {
        SentBatch {
            id: self.next_batch_id.fetch_add(1, Ordering::Relaxed),
            size: u32::try_from(items).unwrap_or(u32::MAX),
        }
    }

    /// Counts an answer's status code and what the server said about its
    /// batch.
    fn count_answer(&self, status_code: u16, facts: &ServerFacts) {
        if let Some(count) = self.status_counts.get(usize::from(status_code)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(size) = facts.server_batch_size {
            self.server_batch_items
                .fetch_add(u64::from(size), Ordering::Relaxed);
            self.server_batch_responses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Posts `body` carrying `items` inputs in `shape`; counts what the
    /// server said about its batch.
    async fn send(
        &self,
        (api, transport): (&dyn Api, &Transport),
        body: Vec<u8>,
        shape: BodyShape,
        items: usize,
    ) -> (SentBatch, Result<HttpResponse, HttpFailure>) {
        let batch = self.next_batch(items);
        let wanted = ResponseUse {
            body: api.needs_body(shape, self.checks),
            server_timing: self.checks.server_timing(),
        };
        let reader = api.body_reader(items);
        let outcome = transport.post(Bytes::from(body), wanted, reader).await;
        if let Ok(response) = &outcome {
            self.count_answer(response.status.as_u16(), &response.facts);
        }
        (batch, outcome)
    }

    /// One gRPC call carrying `items`, and a row for each.
    async fn call(&self, grpc: &KServeGrpc, items: &[LogicalRequest]) -> Vec<LogRow> {
        let batch = self.next_batch(items.len());
        match grpc.call(items, self.checks).await {
            Ok((answer, verdicts)) => {
                self.count_answer(answer.status_code, &answer.facts);
                items
                    .iter()
                    .zip(verdicts)
                    .map(|(item, verdict)| self.response_row(item, batch, &answer, verdict))
                    .collect()
            }
            Err(failure) => items
                .iter()
                .map(|item| self.failure_row(item, batch, &failure))
                .collect(),
        }
    }

    /// A failed HTTP exchange as a row sees it, its kind the API's word.
    fn http_failure(&self, failure: &HttpFailure) -> Failure {
        let error = match &self.link {
            Link::Http { api, .. } => api.failure_kind(failure.error),
            Link::Grpc(_) => failure.error.kind(),
        };
        Failure {
            error: error.to_owned(),
            finished_at: failure.finished_at,
            connect_ms: failure.connect_ms,
            tls_ms: failure.tls_ms,
            retries: failure.retries,
        }
    }

    fn response_row(
        &self,
        item: &LogicalRequest,
        batch: SentBatch,
        response: &Answer,
        verdict: ItemVerdict,
    ) -> LogRow {
        let facts = response.facts;
        let latency_ms = ms_between(item.start, response.finished_at);
        let llm = verdict.stream.map(|streamed| {
            let ttft_ms = streamed.first_token_at.map(|at| ms_between(item.start, at));
            let tpot_ms = match (ttft_ms, streamed.output_tokens) {
                (Some(ttft), Some(tokens)) if tokens >= 2 => {
                    Some((latency_ms - ttft).max(0.0) / (tokens - 1) as f64)
                }
                _ => None,
            };
            (
                LlmTiming {
                    ttft_ms,
                    tpot_ms,
                    output_tokens: streamed.output_tokens,
                    tokens_from: streamed.tokens_from,
                    itl_ms: streamed.itl_ms,
                },
                streamed.prompt_tokens,
            )
        });
        let (llm, prompt_tokens) = match llm {
            Some((timing, prompt_tokens)) => (Some(timing), prompt_tokens),
            None => (None, None),
        };
        LogRow {
            status_code: response.status_code,
            ok: verdict.error.is_empty(),
            error: verdict.error,
            connect_ms: Some(response.connect_ms),
            tls_ms: response.tls_ms,
            retries: response.retries,
            queue_ms: facts.queue_ms,
            service_ms: facts.service_ms,
            output_digest: verdict.output_digest,
            verified: verdict.verified,
            llm,
            prompt_tokens,
            ..self.base_row(item, batch, response.finished_at)
        }
    }

    fn failure_row(&self, item: &LogicalRequest, batch: SentBatch, failure: &Failure) -> LogRow {
        LogRow {
            error: failure.error.clone(),
            connect_ms: failure.connect_ms,
            tls_ms: failure.tls_ms,
            retries: failure.retries,
            ..self.base_row(item, batch, failure.finished_at)
        }
    }

    fn base_row(&self, item: &LogicalRequest, batch: SentBatch, finished_at: Instant) -> LogRow {
        LogRow {
            batch_id: Some(batch.id),
            batch_size: Some(batch.size),
            ..self.shaped_row(item, finished_at)
        }
    }

    /// A row of `item` up to `end`: its id, times and shape, nothing sent.
    fn shaped_row(&self, item: &LogicalRequest, end: Instant) -> LogRow {
        let shape = item.shape;
        LogRow {
            request_id: item.request_id,
            timestamp_ms: self.clock.wall_ms(item.start),
            latency_ms: ms_between(item.start, end),
            send_lag_ms: shape.send_lag_ms,
            input_tokens: shape.input_tokens,
            max_tokens: shape.max_tokens,
            session_id: shape.session.map(|(session, _)| session),
            turn: shape.session.map(|(_, turn)| turn),
            ..LogRow::default()
        }
    }

    /// A failed row for `item`, which never got a response of its own
    /// (`dropped` at the in-flight bound, `interrupted` by shutdown).
    pub(crate) fn unsent_item_row(&self, item: &LogicalRequest, error: &str) -> LogRow {
        LogRow {
            error: error.to_owned(),
            ..self.shaped_row(item, Instant::now())
        }
    }

    /// As [`Engine::unsent_item_row`], from the parts of a request that
    /// has gone to be sent.
    pub(crate) fn unsent_shaped_row(
        &self,
        request_id: u64,
        start: Instant,
        shape: RequestShape,
        error: &str,
    ) -> LogRow {
        LogRow {
            send_lag_ms: shape.send_lag_ms,
            input_tokens: shape.input_tokens,
            max_tokens: shape.max_tokens,
            session_id: shape.session.map(|(session, _)| session),
            turn: shape.session.map(|(_, turn)| turn),
            ..self.unsent_row(request_id, start, error)
        }
    }

    /// A failed row for a request that never got a response of its own
    /// (`dropped` at the in-flight bound, `interrupted` by shutdown).
    pub(crate) fn unsent_row(&self, request_id: u64, start: Instant, error: &str) -> LogRow {
        LogRow {
            request_id,
            timestamp_ms: self.clock.wall_ms(start),
            latency_ms: ms_between(start, Instant::now()),
            error: error.to_owned(),
            ..LogRow::default()
        }
    }
}

/// Milliseconds from `start` to `end` (0 if `end` is earlier).
pub(crate) fn ms_between(start: Instant, end: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wall_clock_time_maps_to_the_instant_stamped_with_it() {
        let clock = Clock::new();
        let wall_ms =
            |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0;
        let now = SystemTime::now();
        for at in [
            now + Duration::from_millis(1500),
            now - Duration::from_secs(2),
            now,
        ] {
            let instant = clock.instant_at(at).unwrap();
            assert!((clock.wall_ms(instant) - wall_ms(at)).abs() < 0.001);
            let later = instant + Duration::from_millis(5);
            assert!((clock.wall_ms(later) - wall_ms(at) - 5.0).abs() < 0.001);
        }
    }
}
