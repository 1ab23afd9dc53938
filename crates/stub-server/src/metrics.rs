//! Counters and histograms of the simulator, rendered as Prometheus text.
//!
//! Hand-written exposition format keeps the dependency list short; the
//! histograms use fixed buckets chosen to span the built-in profiles.
//!
//! The LLM routes ([`LlmMetrics`]) also report under vLLM's names, types,
//! labels (`model_name`, the first of `--models`, and `engine="0"`) and
//! buckets, so dashboards and tools made for vLLM read the simulator as
//! they read vLLM:
//!
//! - gauges `vllm:num_requests_running`, `vllm:num_requests_waiting`,
//!   `vllm:kv_cache_usage_perc` (the fraction of `--kv-cache-tokens`
//!   blocks held by running sequences; 0 when the capacity is unlimited,
//!   which is never full) and its older name `vllm:gpu_cache_usage_perc`;
//! - counters `vllm:num_preemptions_total`,
//!   `vllm:prefix_cache_queries_total` and `vllm:prefix_cache_hits_total`
//!   (in tokens, as vLLM counts them: at each admission with the prefix
//!   cache on, the tokens to compute and those found cached),
//!   `vllm:prompt_tokens_total` (a sequence's whole prompt, cached part
//!   included, once, at its first token), `vllm:generation_tokens_total`,
//!   `vllm:request_success_total{finished_reason="stop|length|abort"}`;
//! - histograms `vllm:request_queue_time_seconds` (arrival to first
//!   admission), `vllm:request_prefill_time_seconds` (first admission to
//!   first token), `vllm:request_decode_time_seconds` (first token to
//!   last), `vllm:e2e_request_latency_seconds` (arrival to last token),
//!   observed when a sequence ends with its answer;
//!   `vllm:time_to_first_token_seconds` at each first token, and
//!   `vllm:inter_token_latency_seconds` at each later token (the gap
//!   since the one before), also under its older name
//!   `vllm:time_per_output_token_seconds`.
//!
//! Times are the step loop's: a token's time is the end of the step that
//! made it. Gauges read 0 when nothing runs or waits. The older
//! `stub_llm_running_sequences` and `stub_llm_waiting_sequences` stay.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bucket upper bounds of the batch-size histogram, in items.
const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Bucket upper bounds of the time histograms, in seconds.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A cumulative histogram with fixed buckets.
struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    /// Non-cumulative count per bucket; the last slot is `+Inf`.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                counts: vec![0; bounds.len() + 1],
                ..HistogramState::default()
            }),
        }
    }

    fn observe_n(&self, value: f64, times: u64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = state.counts.get_mut(slot) {
            *c += times;
        }
        state.count += times;
        state.sum += value * times as f64;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        self.render_labelled(out, name, help, "");
    }

    /// Renders with `labels` (`key="value",...`, already escaped) on every
    /// sample, before `le`.
    fn render_labelled(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let (before_le, braced) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&state.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{before_le}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{before_le}le=\"+Inf\"}} {}",
            state.count
        );
        let _ = writeln!(out, "{name}_sum{braced} {}", state.sum);
        let _ = writeln!(out, "{name}_count{braced} {}", state.count);
    }
}

/// Everything `/metrics` reports.
pub(crate) struct Metrics {
    requests_by_status: Mutex<BTreeMap<u16, u64>>,
    items_total: AtomicU64,
    batches_total: AtomicU64,
    batch_size: Histogram,
    queue_wait_seconds: Histogram,
    service_time_seconds: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            requests_by_status: Mutex::new(BTreeMap::new()),
            items_total: AtomicU64::new(0),
            batches_total: AtomicU64::new(0),
            batch_size: Histogram::new(&BATCH_SIZE_BUCKETS),
            queue_wait_seconds: Histogram::new(&SECONDS_BUCKETS),
            service_time_seconds: Histogram::new(&SECONDS_BUCKETS),
        }
    }

    /// One HTTP response sent, of any path.
    pub(crate) fn observe_response(&self, status: u16) {
        let mut by_status = self
            .requests_by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *by_status.entry(status).or_insert(0) += 1;
    }

    /// `items` items waited `wait_ms` in the queue before their batch started.
    pub(crate) fn observe_queue_wait(&self, wait_ms: f64, items: usize) {
        self.queue_wait_seconds
            .observe_n(wait_ms / 1000.0, items as u64);
    }

    /// One batch of `items` items executed in `service_ms`.
    pub(crate) fn observe_batch(&self, items: usize, service_ms: f64) {
        self.items_total.fetch_add(items as u64, Ordering::Relaxed);
        self.batches_total.fetch_add(1, Ordering::Relaxed);
        self.batch_size.observe_n(items as f64, 1);
        self.service_time_seconds.observe_n(service_ms / 1000.0, 1);
    }

    /// The Prometheus text exposition, given the current queue depth.
    pub(crate) fn render(&self, queue_depth_items: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP stub_requests_total HTTP responses sent, by status code.\n");
        out.push_str("# TYPE stub_requests_total counter\n");
        for (status, count) in self
            .requests_by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "stub_requests_total{{code=\"{status}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP stub_items_total Items executed.\n# TYPE stub_items_total counter\nstub_items_total {}",
            self.items_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP stub_batches_total Batches executed.\n# TYPE stub_batches_total counter\nstub_batches_total {}",
            self.batches_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP stub_queue_depth_items Items waiting in the queue now.\n# TYPE stub_queue_depth_items gauge\nstub_queue_depth_items {queue_depth_items}"
        );
        self.batch_size.render(
            &mut out,
            "stub_batch_size_items",
            "Items per executed batch.",
        );
        self.queue_wait_seconds.render(
            &mut out,
            "stub_queue_wait_seconds",
            "Time items waited from enqueue to the start of their batch.",
        );
        self.service_time_seconds.render(
            &mut out,
            "stub_service_time_seconds",
            "Observed execution time of each batch.",
        );
        out
    }
}

/// Bucket upper bounds of `vllm:time_to_first_token_seconds`, as vLLM's.
const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// Bucket upper bounds of `vllm:inter_token_latency_seconds`, as vLLM's.
const ITL_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// Bucket upper bounds of vLLM's per-request phase histograms (queue,
/// prefill, decode, end to end), seconds.
const REQUEST_BUCKETS: [f64; 21] = [
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// How a sequence ended, vLLM's `finished_reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// The answer ended.
    Stop,
    /// `max_tokens` cut it.
    Length,
    /// The client left before its end.
    Abort,
}

/// The times of one finished sequence, in seconds (its queue time is
/// observed at its first admission).
pub(crate) struct SequenceTimes {
    /// First admission to first token.
    pub(crate) prefill_s: f64,
    /// First token to last.
    pub(crate) decode_s: f64,
    /// Arrival to last token.
    pub(crate) e2e_s: f64,
}

/// The LLM step loop's state and history, under vLLM's metric names.
///
/// The step loop writes, `/metrics` reads. A "request" here is one
/// sequence: a completions `prompt` list counts one per prompt, as vLLM's
/// server submits each prompt to its engine as its own request.
pub(crate) struct LlmMetrics {
    /// The labels of every `vllm:` sample, escaped.
    labels: String,
    /// KV capacity in blocks; `None`: unlimited.
    kv_capacity_blocks: Option<usize>,
    running: AtomicUsize,
    waiting: AtomicUsize,
    kv_used_blocks: AtomicUsize,
    preemptions: AtomicU64,
    prefix_queries_tokens: AtomicU64,
    prefix_hits_tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    /// Finished sequences by [`FinishReason`]: stop, length, abort.
    finished: [AtomicU64; 3],
    queue_time: Histogram,
    prefill_time: Histogram,
    decode_time: Histogram,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
    e2e_latency: Histogram,
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl LlmMetrics {
    /// Metrics labelled `model_name` (vLLM's served model name) and engine
    /// 0, for a KV cache of `kv_capacity_blocks` blocks (`None`: unlimited).
    pub(crate) fn new(model_name: &str, kv_capacity_blocks: Option<usize>) -> Self {
        Self {
            labels: format!("model_name=\"{}\",engine=\"0\"", escape_label(model_name)),
            kv_capacity_blocks,
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            kv_used_blocks: AtomicUsize::new(0),
            preemptions: AtomicU64::new(0),
            prefix_queries_tokens: AtomicU64::new(0),
            prefix_hits_tokens: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            finished: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            queue_time: Histogram::new(&REQUEST_BUCKETS),
            prefill_time: Histogram::new(&REQUEST_BUCKETS),
            decode_time: Histogram::new(&REQUEST_BUCKETS),
            time_to_first_token: Histogram::new(&TTFT_BUCKETS),
            inter_token_latency: Histogram::new(&ITL_BUCKETS),
            e2e_latency: Histogram::new(&REQUEST_BUCKETS),
        }
    }

    /// Sequences running and waiting now, and the KV blocks they hold.
    pub(crate) fn set_occupancy(&self, running: usize, waiting: usize, kv_used_blocks: usize) {
        self.running.store(running, Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
        self.kv_used_blocks.store(kv_used_blocks, Ordering::Relaxed);
    }

    /// One running sequence sent back to wait, its KV blocks freed.
    pub(crate) fn observe_preemption(&self) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// A sequence admitted with the prefix cache on: `queried` tokens
    /// looked up, the leading `hit` of them found.
    pub(crate) fn observe_prefix_lookup(&self, queried: usize, hit: usize) {
        self.prefix_queries_tokens
            .fetch_add(queried as u64, Ordering::Relaxed);
        self.prefix_hits_tokens
            .fetch_add(hit as u64, Ordering::Relaxed);
    }

    /// A sequence's first admission, `queue_s` after its arrival.
    pub(crate) fn observe_queue_time(&self, queue_s: f64) {
        self.queue_time.observe_n(queue_s, 1);
    }

    /// One token emitted: the sequence's first (its prompt of
    /// `prompt_tokens` now counted, `since_arrival_s` its time to first
    /// token) or a later one (`since_arrival_s` unused, `gap_s` the time
    /// since the one before).
    pub(crate) fn observe_token(&self, first: Option<(usize, f64)>, gap_s: Option<f64>) {
        self.generation_tokens.fetch_add(1, Ordering::Relaxed);
        if let Some((prompt_tokens, ttft_s)) = first {
            self.prompt_tokens
                .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
            self.time_to_first_token.observe_n(ttft_s, 1);
        }
        if let Some(gap_s) = gap_s {
            self.inter_token_latency.observe_n(gap_s, 1);
        }
    }

    /// A sequence ended; `times` when it ended with its answer (an aborted
    /// one is counted, not timed).
    pub(crate) fn observe_finished(&self, reason: FinishReason, times: Option<SequenceTimes>) {
        self.finished[reason as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(t) = times {
            self.prefill_time.observe_n(t.prefill_s, 1);
            self.decode_time.observe_n(t.decode_s, 1);
            self.e2e_latency.observe_n(t.e2e_s, 1);
        }
    }

    /// Appends the LLM metrics to `out`: the `stub_llm_*` gauges and
    /// vLLM's.
    pub(crate) fn render(&self, out: &mut String) {
        let labels = &self.labels;
        let running = self.running.load(Ordering::Relaxed);
        let waiting = self.waiting.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP stub_llm_running_sequences Sequences in the LLM step loop now.\n# TYPE stub_llm_running_sequences gauge\nstub_llm_running_sequences {running}\n# HELP stub_llm_waiting_sequences Sequences waiting for a slot.\n# TYPE stub_llm_waiting_sequences gauge\nstub_llm_waiting_sequences {waiting}"
        );
        let mut gauge = |name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}"
            );
        };
        gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            running.to_string(),
        );
        gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            waiting.to_string(),
        );
        // Unlimited capacity is never full: 0.
        let usage = match self.kv_capacity_blocks {
            Some(capacity) if capacity > 0 => {
                self.kv_used_blocks.load(Ordering::Relaxed) as f64 / capacity as f64
            }
            _ => 0.0,
        };
        gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            usage.to_string(),
        );
        gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
            usage.to_string(),
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {value}"
            );
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.",
            load(&self.preemptions),
        );
        counter(
            "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            load(&self.prefix_queries_tokens),
        );
        counter(
            "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            load(&self.prefix_hits_tokens),
        );
        counter(
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
            load(&self.prompt_tokens),
        );
        counter(
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            load(&self.generation_tokens),
        );
        let _ = writeln!(
            out,
            "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter"
        );
        for (reason, count) in ["stop", "length", "abort"].iter().zip(&self.finished) {
            let _ = writeln!(
                out,
                "vllm:request_success_total{{{labels},finished_reason=\"{reason}\"}} {}",
                load(count)
            );
        }
        let histograms: [(&Histogram, &str, &str); 7] = [
            (
                &self.queue_time,
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
            ),
            (
                &self.prefill_time,
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
            ),
            (
                &self.decode_time,
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
            ),
            (
                &self.time_to_first_token,
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
            ),
            (
                &self.inter_token_latency,
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
            ),
            // vLLM's older name of the same observations (each gap).
            (
                &self.inter_token_latency,
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
            ),
            (
                &self.e2e_latency,
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
            ),
        ];
        for (histogram, name, help) in histograms {
            histogram.render_labelled(out, name, help, labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_and_counters() {
        let m = Metrics::new();
        m.observe_response(200);
        m.observe_response(200);
        m.observe_response(503);
        m.observe_batch(3, 102.0);
        m.observe_batch(1, 100.0);
        m.observe_queue_wait(5.0, 4);
        let text = m.render(7);
        assert!(
            text.contains("stub_requests_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("stub_requests_total{code=\"503\"} 1\n"));
        assert!(text.contains("stub_items_total 4\n"));
        assert!(text.contains("stub_batches_total 2\n"));
        assert!(text.contains("stub_queue_depth_items 7\n"));
        assert!(text.contains("stub_batch_size_items_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("stub_batch_size_items_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("stub_batch_size_items_count 2\n"));
        assert!(text.contains("stub_queue_wait_seconds_count 4\n"));
        assert!(text.contains("stub_service_time_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("stub_service_time_seconds_bucket{le=\"0.25\"} 2\n"));
    }

    #[test]
    fn llm_metrics_carry_vllm_names_and_escaped_labels() {
        let m = LlmMetrics::new("a\"b", Some(10));
        m.set_occupancy(2, 3, 4);
        m.observe_queue_time(0.4);
        m.observe_token(Some((7, 0.05)), None);
        m.observe_token(None, Some(0.02));
        m.observe_finished(
            FinishReason::Length,
            Some(SequenceTimes {
                prefill_s: 0.1,
                decode_s: 0.02,
                e2e_s: 0.52,
            }),
        );
        m.observe_finished(FinishReason::Abort, None);
        let mut text = String::new();
        m.render(&mut text);
        let labels = "model_name=\"a\\\"b\",engine=\"0\"";
        for line in [
            format!("vllm:num_requests_running{{{labels}}} 2"),
            format!("vllm:num_requests_waiting{{{labels}}} 3"),
            format!("vllm:kv_cache_usage_perc{{{labels}}} 0.4"),
            format!("vllm:gpu_cache_usage_perc{{{labels}}} 0.4"),
            format!("vllm:prompt_tokens_total{{{labels}}} 7"),
            format!("vllm:generation_tokens_total{{{labels}}} 2"),
            format!("vllm:request_success_total{{{labels},finished_reason=\"length\"}} 1"),
            format!("vllm:request_success_total{{{labels},finished_reason=\"abort\"}} 1"),
            format!("vllm:request_queue_time_seconds_bucket{{{labels},le=\"0.3\"}} 0"),
            format!("vllm:request_queue_time_seconds_bucket{{{labels},le=\"0.5\"}} 1"),
            format!("vllm:time_to_first_token_seconds_bucket{{{labels},le=\"0.06\"}} 1"),
            format!("vllm:inter_token_latency_seconds_bucket{{{labels},le=\"0.025\"}} 1"),
            format!("vllm:e2e_request_latency_seconds_count{{{labels}}} 1"),
            "# TYPE vllm:num_preemptions_total counter".to_owned(),
            "# TYPE vllm:request_decode_time_seconds histogram".to_owned(),
            "stub_llm_running_sequences 2".to_owned(),
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "no {line:?} in\n{text}"
            );
        }
        // Unlimited capacity reads 0.
        let mut text = String::new();
        LlmMetrics::new("m", None).render(&mut text);
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0\n"));
    }
}
