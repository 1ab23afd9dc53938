//! Executes one HTTP request carrying one or more logical requests and turns
//! the outcome into one log row per logical request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use model::log::LogRow;
use model::wire::{to_json_bytes, BatchRequest, SingleRequest};

use crate::client::{HttpResponse, Transport};
use crate::verify::{judge, Checks, Shape};

/// One input to send, with the instant its latency is measured from.
#[derive(Debug, Clone)]
pub struct LogicalRequest {
    /// Index in the run; also picks the payload.
    pub request_id: u64,
    /// Model to name in the request.
    pub model: Arc<str>,
    /// The input text.
    pub input: String,
    /// Latency origin: the moment the request was issued (closed loop) or
    /// was due (open loop), before any batching wait or connection set-up.
    pub start: Instant,
}

/// Maps `Instant`s to wall-clock milliseconds through one anchor taken at
/// start-up, so timestamps are consistent with the monotonic latencies.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_wall_ms: f64,
}

impl Clock {
    /// Anchors now.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Self {
            anchor: Instant::now(),
            anchor_wall_ms: wall,
        }
    }

    /// Wall-clock ms since the Unix epoch at `at`.
    pub fn wall_ms(&self, at: Instant) -> f64 {
        if at >= self.anchor {
            self.anchor_wall_ms + (at - self.anchor).as_secs_f64() * 1000.0
        } else {
            self.anchor_wall_ms - (self.anchor - at).as_secs_f64() * 1000.0
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends requests and builds rows; shared by every worker.
pub struct Engine {
    transport: Transport,
    checks: Checks,
    clock: Clock,
    next_batch_id: AtomicU64,
    server_batch_items: AtomicU64,
    server_batch_responses: AtomicU64,
}

impl Engine {
    /// An engine over `transport`.
    pub fn new(transport: Transport, checks: Checks, clock: Clock) -> Self {
        Self {
            transport,
            checks,
            clock,
            next_batch_id: AtomicU64::new(0),
            server_batch_items: AtomicU64::new(0),
            server_batch_responses: AtomicU64::new(0),
        }
    }

    /// The clock rows are stamped with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Restarts batch ids and server statistics (after the warm-up).
    pub fn reset_counters(&self) {
        self.next_batch_id.store(0, Ordering::Relaxed);
        self.server_batch_items.store(0, Ordering::Relaxed);
        self.server_batch_responses.store(0, Ordering::Relaxed);
    }

    /// HTTP requests sent so far.
    pub fn http_requests(&self) -> u64 {
        self.next_batch_id.load(Ordering::Relaxed)
    }

    /// Mean `X-Batch-Size` over responses that carried it.
    pub fn server_batch_size_mean(&self) -> Option<f64> {
        let responses = self.server_batch_responses.load(Ordering::Relaxed);
        let items = self.server_batch_items.load(Ordering::Relaxed);
        (responses > 0).then(|| items as f64 / responses as f64)
    }

    /// Sends `items` (all naming the same model) as one HTTP request in
    /// `shape` and returns one row per item, in order.
    pub async fn execute(&self, items: &[LogicalRequest], shape: Shape) -> Vec<LogRow> {
        let batch_id = self.next_batch_id.fetch_add(1, Ordering::Relaxed);
        let Some(first) = items.first() else {
            return Vec::new();
        };
        let model = first.model.to_string();
        let body = match shape {
            Shape::Single => to_json_bytes(&SingleRequest {
                model: model.clone(),
                input: first.input.clone(),
            }),
            Shape::Batch => to_json_bytes(&BatchRequest {
                model: model.clone(),
                inputs: items.iter().map(|i| i.input.clone()).collect(),
            }),
        };
        let batch_size = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let base = |item: &LogicalRequest, finished_at: Instant| LogRow {
            request_id: item.request_id,
            timestamp_ms: self.clock.wall_ms(item.start),
            latency_ms: ms_between(item.start, finished_at),
            batch_id: Some(batch_id),
            batch_size: Some(batch_size),
            ..LogRow::default()
        };
        match self.transport.post(Bytes::from(body)).await {
            Ok(response) => self.rows_for(&response, items, shape, &model, base),
            Err(failure) => items
                .iter()
                .map(|item| LogRow {
                    error: failure.error.kind().to_owned(),
                    connect_ms: failure.connect_ms,
                    ..base(item, failure.finished_at)
                })
                .collect(),
        }
    }

    fn rows_for(
        &self,
        response: &HttpResponse,
        items: &[LogicalRequest],
        shape: Shape,
        model: &str,
        base: impl Fn(&LogicalRequest, Instant) -> LogRow,
    ) -> Vec<LogRow> {
        let facts = response.facts;
        if let Some(size) = facts.server_batch_size {
            self.server_batch_items
                .fetch_add(u64::from(size), Ordering::Relaxed);
            self.server_batch_responses.fetch_add(1, Ordering::Relaxed);
        }
        let inputs: Vec<&str> = items.iter().map(|i| i.input.as_str()).collect();
        let verdicts = judge(response, shape, model, &inputs, self.checks);
        items
            .iter()
            .zip(verdicts)
            .map(|(item, verdict)| LogRow {
                status_code: response.status.as_u16(),
                ok: verdict.error.is_empty(),
                error: verdict.error,
                connect_ms: Some(response.connect_ms),
                queue_ms: facts.queue_ms,
                service_ms: facts.service_ms,
                output_digest: verdict.output_digest,
                ..base(item, response.finished_at)
            })
            .collect()
    }

    /// A failed row for a request that never got a response of its own
    /// (`dropped` at the in-flight bound, `interrupted` by shutdown).
    pub fn unsent_row(&self, request_id: u64, start: Instant, error: &str) -> LogRow {
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
pub fn ms_between(start: Instant, end: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64() * 1000.0
}
