//! Counters and histograms of the simulator, rendered as Prometheus text.
//!
//! Hand-written exposition format keeps the dependency list short; the
//! histograms use fixed buckets chosen to span the built-in profiles.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&state.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", state.count);
        let _ = writeln!(out, "{name}_sum {}", state.sum);
        let _ = writeln!(out, "{name}_count {}", state.count);
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
}
