//! Live Prometheus metrics of a run (`--metrics-listen`): counters,
//! histograms and gauges a scrape reads while the load runs.
//!
//! Off the request path by construction: every row already goes to the
//! collector thread, which records it here (one writer, relaxed atomics no
//! other thread contends for), so a request pays nothing for the counters
//! and histograms. The in-flight gauge is the one thing a request touches:
//! one relaxed add when it goes out and one when it is back.
//!
//! Hand-rolled rather than `prometheus-client`: that crate's histogram
//! takes a lock on every observation, and the exposition format of a
//! dozen families is a few lines of text; the simulator's `/metrics`
//! (stub-server) is written the same way.
//!
//! Families ([`FAMILIES`]), each with the run's labels (`shard` for a
//! `--shard` run, `step` for a capacity search's step):
//!
//! - `loadgen_requests_total` (counter): measured requests logged, failed
//!   ones included (the summary's `total`);
//! - `loadgen_errors_total{kind}` (counter): failed requests by error kind
//!   (the summary's `errors`);
//! - `loadgen_prompt_tokens_total`, `loadgen_output_tokens_total`
//!   (counters, LLM APIs): tokens of successful requests as the server
//!   reported or loadgen counted them;
//! - `loadgen_request_latency_seconds` (histogram): latency of successful
//!   requests, from the intended start in the open loop;
//! - `loadgen_ttft_seconds`, `loadgen_itl_seconds` (histograms, LLM APIs):
//!   time to first token and every gap between later tokens of successful
//!   streamed requests;
//! - `loadgen_send_lateness_seconds` (histogram, open loop): how late each
//!   send left against its schedule;
//! - `loadgen_in_flight_requests` (gauge): requests sent and not yet back.
//!
//! Rows reach the collector when they complete, so a request is counted
//! (and its lateness seen) when it ends; warm-up rows are left out, as they
//! are from every statistic.

mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use model::log::{LogRow, Phase};

use crate::distributed::Shard;

pub use server::{MetricsError, MetricsServer};

/// Bucket upper bounds of the request latency and TTFT histograms,
/// seconds: about 1.5x apart from 5 ms to 2 minutes, so a quantile read
/// from them is within a third of its value across everything from a small
/// model's answer to a long generation.
pub const LATENCY_BUCKETS_S: [f64; 26] = [
    0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5,
    2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];

/// Bucket upper bounds of the inter-token latency histogram, seconds:
/// finer at the 5-100 ms where decoding steps fall.
pub const ITL_BUCKETS_S: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
];

/// Bucket upper bounds of the send lateness histogram, seconds: a healthy
/// schedule keeps to about 0.1 ms, so the buckets start there.
pub const LATENESS_BUCKETS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One metric family: its name, type and help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The name; a histogram's series add `_bucket`, `_sum`, `_count`.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
}

const REQUESTS: Family = Family {
    name: "loadgen_requests_total",
    kind: "counter",
    help: "Measured requests logged, failed ones included.",
};
const ERRORS: Family = Family {
    name: "loadgen_errors_total",
    kind: "counter",
    help: "Failed requests by error kind.",
};
const PROMPT_TOKENS: Family = Family {
    name: "loadgen_prompt_tokens_total",
    kind: "counter",
    help: "Prompt tokens of successful requests (as the server reported them).",
};
const OUTPUT_TOKENS: Family = Family {
    name: "loadgen_output_tokens_total",
    kind: "counter",
    help: "Output tokens of successful requests.",
};
const LATENCY: Family = Family {
    name: "loadgen_request_latency_seconds",
    kind: "histogram",
    help: "Latency of successful requests (open loop: from the intended start).",
};
const TTFT: Family = Family {
    name: "loadgen_ttft_seconds",
    kind: "histogram",
    help: "Time to first token of successful streamed requests.",
};
const ITL: Family = Family {
    name: "loadgen_itl_seconds",
    kind: "histogram",
    help: "Gaps between consecutive tokens after the first, of successful streamed requests.",
};
const LATENESS: Family = Family {
    name: "loadgen_send_lateness_seconds",
    kind: "histogram",
    help: "How late each open-loop send left against its schedule.",
};
const IN_FLIGHT: Family = Family {
    name: "loadgen_in_flight_requests",
    kind: "gauge",
    help: "Requests sent and not yet back.",
};

/// Every family loadgen exports, in the order a scrape lists them.
pub const FAMILIES: [Family; 9] = [
    REQUESTS,
    ERRORS,
    PROMPT_TOKENS,
    OUTPUT_TOKENS,
    LATENCY,
    TTFT,
    ITL,
    LATENESS,
    IN_FLIGHT,
];

/// A cumulative histogram with fixed buckets, written by one thread.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative count per bucket; the last slot is `+Inf`.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum of the observations, nanoseconds (an integer so it can be an
    /// atomic; 584 years of latency fit).
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe_ms(&self, value_ms: f64) {
        if !value_ms.is_finite() {
            return;
        }
        let value_s = value_ms.max(0.0) / 1000.0;
        // `le` is inclusive: the first bound at or above the value.
        let slot = self.bounds.partition_point(|&bound| bound < value_s);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((value_ms.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum_s = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum_s}", braces(labels));
        // The count equals the +Inf bucket, as the format requires, even
        // when a row is recorded between the two loads above.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// The metrics of one run (one capacity step), with its labels.
#[derive(Debug)]
pub(crate) struct RunMetrics {
    /// `shard="0",step="3"`, or empty.
    labels: String,
    /// Whether the LLM families (tokens, TTFT, ITL) apply.
    llm: bool,
    /// Whether the run is open loop (send lateness applies).
    open_loop: bool,
    requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    prompt_tokens: AtomicU64,
    output_tokens: AtomicU64,
    latency: Histogram,
    ttft: Histogram,
    itl: Histogram,
    lateness: Histogram,
    in_flight: AtomicI64,
}

impl RunMetrics {
    /// Records one logged row (the collector's thread); warm-up rows are
    /// left out as from every statistic.
    pub(crate) fn record(&self, row: &LogRow) {
        if row.phase == Phase::Warmup {
            return;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(lag_ms) = row.send_lag_ms {
            self.lateness.observe_ms(lag_ms);
        }
        if !row.ok {
            let kind = if row.error.is_empty() {
                "unknown"
            } else {
                row.error.as_str()
            };
            // Locked by this thread and a scrape only, never by a request.
            if let Ok(mut errors) = self.errors.lock() {
                match errors.get_mut(kind) {
                    Some(count) => *count += 1,
                    None => {
                        errors.insert(kind.to_owned(), 1);
                    }
                }
            }
            return;
        }
        self.latency.observe_ms(row.latency_ms);
        if let Some(prompt) = row.prompt_tokens {
            self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        }
        if let Some(timing) = &row.llm {
            if let Some(ttft_ms) = timing.ttft_ms {
                self.ttft.observe_ms(ttft_ms);
            }
            for gap_ms in &timing.itl_ms {
                self.itl.observe_ms(*gap_ms);
            }
            self.output_tokens
                .fetch_add(timing.output_tokens.unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Counts a request in flight until the guard is dropped (also when
    /// an abort cancels the request's future).
    pub(crate) fn in_flight(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }
}

/// A request in flight; see [`RunMetrics::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<RunMetrics>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every run the process has made, for the scrape to list.
#[derive(Debug, Default)]
struct Registry {
    /// Locked when a run starts and when a scrape reads, never per request.
    runs: Mutex<Vec<Arc<RunMetrics>>>,
}

/// A handle on the exported metrics, given to a run through
/// [`crate::LoadConfig::metrics`]. Each run made with it adds its own
/// series (labelled with `step` when made through [`Metrics::for_step`]);
/// earlier runs' series stay, so counters never go backwards.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// A capacity step's index and offered rate, requests/s.
    step: Option<(u32, f64)>,
}

impl PartialEq for Metrics {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry) && self.step == other.step
    }
}

impl Metrics {
    /// A registry with no runs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same registry, the runs made with it labelled with a capacity
    /// step: `step="N"` (from 0) and `offered_rps` (its rate).
    pub fn for_step(&self, step: u32, offered_rps: f64) -> Self {
        Self {
            registry: self.registry.clone(),
            step: Some((step, offered_rps)),
        }
    }

    /// Registers a run's series (zero until its rows come).
    pub(crate) fn start_run(
        &self,
        shard: Option<Shard>,
        llm: bool,
        open_loop: bool,
    ) -> Arc<RunMetrics> {
        let mut labels = Vec::new();
        if let Some(shard) = shard {
            labels.push(format!("shard=\"{}\"", shard.index));
            labels.push(format!("shards=\"{}\"", shard.count));
        }
        if let Some((step, offered_rps)) = self.step {
            labels.push(format!("step=\"{step}\""));
            labels.push(format!("offered_rps=\"{offered_rps}\""));
        }
        let run = Arc::new(RunMetrics {
            labels: labels.join(","),
            llm,
            open_loop,
            requests: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BUCKETS_S),
            ttft: Histogram::new(&LATENCY_BUCKETS_S),
            itl: Histogram::new(&ITL_BUCKETS_S),
            lateness: Histogram::new(&LATENESS_BUCKETS_S),
            in_flight: AtomicI64::new(0),
        });
        if let Ok(mut runs) = self.registry.runs.lock() {
            runs.push(run.clone());
        }
        run
    }

    /// The Prometheus text exposition (format 0.0.4) of every run so far.
    pub fn render(&self) -> String {
        let runs = match self.registry.runs.lock() {
            Ok(runs) => runs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = String::new();
        for family in FAMILIES {
            let applies = |run: &RunMetrics| match family.name {
                n if n == PROMPT_TOKENS.name || n == OUTPUT_TOKENS.name => run.llm,
                n if n == TTFT.name || n == ITL.name => run.llm,
                n if n == LATENESS.name => run.open_loop,
                _ => true,
            };
            let shown: Vec<&Arc<RunMetrics>> = runs.iter().filter(|r| applies(r)).collect();
            if shown.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
            for run in shown {
                render_family(&mut out, family, run);
            }
        }
        out
    }
}

fn render_family(out: &mut String, family: Family, run: &RunMetrics) {
    let labels = run.labels.as_str();
    let counter = |out: &mut String, value: u64| {
        let _ = writeln!(out, "{}{} {value}", family.name, braces(labels));
    };
    match family.name {
        n if n == REQUESTS.name => counter(out, run.requests.load(Ordering::Relaxed)),
        n if n == PROMPT_TOKENS.name => counter(out, run.prompt_tokens.load(Ordering::Relaxed)),
        n if n == OUTPUT_TOKENS.name => counter(out, run.output_tokens.load(Ordering::Relaxed)),
        n if n == IN_FLIGHT.name => {
            let _ = writeln!(
                out,
                "{}{} {}",
                family.name,
                braces(labels),
                run.in_flight.load(Ordering::Relaxed).max(0)
            );
        }
        n if n == ERRORS.name => {
            let errors = match run.errors.lock() {
                Ok(errors) => errors.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            let sep = if labels.is_empty() { "" } else { "," };
            for (kind, count) in errors {
                let _ = writeln!(
                    out,
                    "{}{{{labels}{sep}kind=\"{}\"}} {count}",
                    family.name,
                    escape_label(&kind)
                );
            }
        }
        n if n == LATENCY.name => run.latency.render(out, n, labels),
        n if n == TTFT.name => run.ttft.render(out, n, labels),
        n if n == ITL.name => run.itl.render(out, n, labels),
        n if n == LATENESS.name => run.lateness.render(out, n, labels),
        _ => {}
    }
}

/// A label value as the text format needs it: backslash, quote and newline
/// escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(latency_ms: f64, ok: bool, error: &str) -> LogRow {
        LogRow {
            latency_ms,
            ok,
            error: error.to_owned(),
            status_code: if ok { 200 } else { 503 },
            ..LogRow::default()
        }
    }

    #[test]
    fn buckets_are_inclusive_and_cumulative() {
        let metrics = Metrics::new();
        let run = metrics.start_run(None, false, false);
        // 10 ms sits exactly on a bound: counted in le="0.01".
        for ms in [4.0, 10.0, 10.5, 500.0, 1e6] {
            run.record(&row(ms, true, ""));
        }
        run.record(&row(1.0, false, "http_503"));
        run.record(&row(1.0, false, ""));
        let text = metrics.render();
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"0.01\"} 2\n"));
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"0.015\"} 3\n"));
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"0.5\"} 4\n"));
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"120\"} 4\n"));
        assert!(text.contains("loadgen_request_latency_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("loadgen_request_latency_seconds_count 5\n"));
        assert!(text.contains("loadgen_request_latency_seconds_sum 1000.5245\n"));
        assert!(text.contains("loadgen_requests_total 7\n"));
        assert!(text.contains("loadgen_errors_total{kind=\"http_503\"} 1\n"));
        assert!(text.contains("loadgen_errors_total{kind=\"unknown\"} 1\n"));
        // Closed loop, no LLM: those families are not listed.
        assert!(!text.contains("loadgen_ttft_seconds"));
        assert!(!text.contains("loadgen_send_lateness_seconds"));
    }

    #[test]
    fn steps_and_shards_are_labelled_and_families_listed_once() {
        let metrics = Metrics::new();
        let shard = Some(Shard { index: 1, count: 4 });
        let a = metrics.for_step(0, 2.5).start_run(shard, true, true);
        let b = metrics.for_step(1, 5.0).start_run(shard, true, true);
        a.record(&row(20.0, true, ""));
        let guard = b.in_flight();
        let text = metrics.render();
        assert_eq!(
            text.matches("# TYPE loadgen_requests_total counter")
                .count(),
            1
        );
        assert!(text.contains(
            "loadgen_requests_total{shard=\"1\",shards=\"4\",step=\"0\",offered_rps=\"2.5\"} 1\n"
        ));
        assert!(text.contains(
            "loadgen_requests_total{shard=\"1\",shards=\"4\",step=\"1\",offered_rps=\"5\"} 0\n"
        ));
        assert!(text.contains(
            "loadgen_in_flight_requests{shard=\"1\",shards=\"4\",step=\"1\",offered_rps=\"5\"} 1\n"
        ));
        drop(guard);
        assert!(metrics.render().contains(
            "loadgen_in_flight_requests{shard=\"1\",shards=\"4\",step=\"1\",offered_rps=\"5\"} 0\n"
        ));
        for family in FAMILIES {
            assert!(text.contains(&format!("# TYPE {} {}", family.name, family.kind)));
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
