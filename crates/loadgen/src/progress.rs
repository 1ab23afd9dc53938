//! The live progress bar on stderr (only on a terminal, off with `-q`):
//! done of total (or elapsed of `-z`), req/s, live P50/P95 of successful
//! latencies, errors so far, ETA; for LLM APIs also tokens/s and TTFT P95.
//!
//! Where the live numbers come from: every request already hands its row
//! to the collector thread, which owns the run's histogram. The collector
//! publishes a [`Snapshot`] into [`Live`] a few times a second, and a
//! ticker task reads it and redraws. So the request path pays nothing for
//! the bar (not even an atomic), and the one lock is shared only by the
//! collector and the ticker, a handful of times a second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::summary::RowStats;

/// How often the collector publishes a snapshot.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// How often the bar is redrawn.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// What the bar shows of the rows so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Rows logged.
    pub done: u64,
    /// Failed rows.
    pub failed: u64,
    /// Median successful latency, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile of successful latencies, ms.
    pub p95_ms: Option<f64>,
    /// Output tokens of successful requests (LLM APIs).
    pub output_tokens: u64,
    /// 95th percentile of time to first token, ms (LLM APIs).
    pub ttft_p95_ms: Option<f64>,
}

impl Snapshot {
    /// The snapshot of `stats`. A few quantile look-ups: called a few times
    /// a second by the collector, never per row.
    pub(crate) fn of(stats: &RowStats) -> Self {
        let (output_tokens, ttft_p95_ms) = stats.llm_progress(0.95).unwrap_or((0, None));
        Self {
            done: stats.total,
            failed: stats.total - stats.succeeded,
            p50_ms: stats.live_quantile_ms(0.50),
            p95_ms: stats.live_quantile_ms(0.95),
            output_tokens,
            ttft_p95_ms,
        }
    }
}

/// The latest snapshot, shared by the collector (writer) and the ticker
/// (reader).
#[derive(Debug, Default)]
pub(crate) struct Live {
    snapshot: Mutex<Snapshot>,
}

impl Live {
    /// Replaces the snapshot with that of `stats`.
    pub(crate) fn publish(&self, stats: &RowStats) {
        let snapshot = Snapshot::of(stats);
        // A poisoned lock only means a panic elsewhere; the data is a plain
        // value, still fine to overwrite.
        match self.snapshot.lock() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// The latest snapshot.
    pub(crate) fn get(&self) -> Snapshot {
        match self.snapshot.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// When the run is done: after a number of requests (and perhaps a time
/// limit too, `-n` with `-z`: whichever comes first), or after a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// `-n` (this shard's share), with `-z` if also given.
    Requests {
        /// Requests to log.
        total: u64,
        /// The time limit, if any.
        limit: Option<Duration>,
    },
    /// `-z` alone.
    Time(Duration),
}

impl Goal {
    /// The goal of a run sending `requests` (if bounded) for `duration` (if
    /// bounded); `None` when neither is set.
    pub(crate) fn of(requests: Option<u64>, duration: Option<Duration>) -> Option<Self> {
        match (requests, duration) {
            (Some(total), limit) => Some(Self::Requests { total, limit }),
            (None, Some(duration)) => Some(Self::Time(duration)),
            (None, None) => None,
        }
    }
}

/// One redraw: where the bar is, of how long, and the text beside it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// Bar position (requests, or ms of a time goal).
    pub position: u64,
    /// Bar length, in the same unit.
    pub length: u64,
    /// Everything but the bar.
    pub message: String,
}

/// The frame for `snapshot` after `elapsed` towards `goal`; `llm` adds
/// tokens/s and TTFT P95.
pub(crate) fn frame(snapshot: &Snapshot, elapsed: Duration, goal: Goal, llm: bool) -> Frame {
    let elapsed_s = elapsed.as_secs_f64();
    let rate_rps = if elapsed_s > 0.0 {
        snapshot.done as f64 / elapsed_s
    } else {
        0.0
    };
    let time_left = |limit: Duration| limit.saturating_sub(elapsed);
    let (position, length, done, eta) = match goal {
        Goal::Requests { total, limit } => {
            let left = total.saturating_sub(snapshot.done);
            let by_count =
                (rate_rps > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate_rps));
            let eta = match (by_count, limit.map(time_left)) {
                (Some(count), Some(time)) => Some(count.min(time)),
                (count, time) => count.or(time),
            };
            (
                snapshot.done.min(total),
                total,
                format!("{}/{total} requests", snapshot.done),
                eta,
            )
        }
        Goal::Time(limit) => (
            millis(elapsed.min(limit)),
            millis(limit).max(1),
            format!(
                "{}/{}, {} requests",
                clock(elapsed.min(limit)),
                clock(limit),
                snapshot.done
            ),
            Some(time_left(limit)),
        ),
    };
    // Most telling first: a narrow terminal cuts the line from the right.
    let mut message = format!(
        "{done}, ETA {}, {rate_rps:.1} req/s, {} {}, P50 {}, P95 {}",
        eta.map_or_else(|| "?".to_owned(), clock_up),
        snapshot.failed,
        if snapshot.failed == 1 {
            "error"
        } else {
            "errors"
        },
        ms(snapshot.p50_ms),
        ms(snapshot.p95_ms),
    );
    if llm {
        let tokens_per_s = if elapsed_s > 0.0 {
            snapshot.output_tokens as f64 / elapsed_s
        } else {
            0.0
        };
        message.push_str(&format!(
            ", {tokens_per_s:.0} tokens/s, TTFT P95 {}",
            ms(snapshot.ttft_p95_ms)
        ));
    }
    Frame {
        position,
        length,
        message,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A latency in three or four significant digits: `0.052 ms`, `4.50 ms`,
/// `12.3 ms`, `1431 ms`; `-` before the first success.
fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v < 1.0 => format!("{v:.3} ms"),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// Elapsed time as `42s`, `3m05s`, `1h02m`, in whole seconds rounded down.
fn clock(d: Duration) -> String {
    clock_secs(d.as_secs())
}

/// Time left, rounded up, so a run about to end shows `1s` rather than `0s`.
fn clock_up(d: Duration) -> String {
    clock_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

fn clock_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The bar and the task that redraws it.
pub(crate) struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts a bar on stderr for a run that began at `started`. The caller
    /// decides whether stderr is a terminal (indicatif also hides a bar on
    /// anything else, but CI logs should not depend on that).
    pub(crate) fn start(live: Arc<Live>, goal: Goal, llm: bool, started: Instant) -> Self {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
        // The template is a constant; should indicatif refuse it, the
        // default bar still shows the position.
        let style = ProgressStyle::with_template("[{bar:24}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        let drawn = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            loop {
                tick.tick().await;
                let frame = frame(&live.get(), started.elapsed(), goal, llm);
                drawn.set_length(frame.length);
                drawn.set_position(frame.position);
                drawn.set_message(frame.message);
            }
        });
        Self { bar, ticker }
    }

    /// Stops redrawing and clears the bar, leaving the terminal to the
    /// summary.
    pub(crate) fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            done: 250,
            failed: 3,
            p50_ms: Some(1.234),
            p95_ms: Some(4.5),
            output_tokens: 5000,
            ttft_p95_ms: Some(120.0),
        }
    }

    #[test]
    fn a_count_goal_shows_done_of_total_rate_percentiles_errors_and_eta() {
        let goal = Goal::of(Some(1000), None).unwrap();
        let f = frame(&snapshot(), Duration::from_secs(5), goal, false);
        assert_eq!((f.position, f.length), (250, 1000));
        // 50 req/s, 750 left: 15 s.
        assert_eq!(
            f.message,
            "250/1000 requests, ETA 15s, 50.0 req/s, 3 errors, P50 1.23 ms, P95 4.50 ms"
        );
        // A time limit that ends first shortens the ETA.
        let limited = Goal::of(Some(1000), Some(Duration::from_secs(8))).unwrap();
        let f = frame(&snapshot(), Duration::from_secs(5), limited, false);
        assert!(f.message.contains(", ETA 3s,"), "{}", f.message);
    }

    #[test]
    fn a_time_goal_shows_elapsed_of_duration_and_llm_adds_tokens_and_ttft() {
        let goal = Goal::of(None, Some(Duration::from_secs(120))).unwrap();
        let f = frame(&snapshot(), Duration::from_secs(10), goal, true);
        assert_eq!((f.position, f.length), (10_000, 120_000));
        assert_eq!(
            f.message,
            "10s/2m00s, 250 requests, ETA 1m50s, 25.0 req/s, 3 errors, P50 1.23 ms, \
             P95 4.50 ms, 500 tokens/s, TTFT P95 120 ms"
        );
    }

    #[test]
    fn nothing_yet_shows_no_percentiles_and_no_eta() {
        let goal = Goal::of(Some(10), None).unwrap();
        let f = frame(&Snapshot::default(), Duration::ZERO, goal, false);
        assert_eq!(
            f.message,
            "0/10 requests, ETA ?, 0.0 req/s, 0 errors, P50 -, P95 -"
        );
        assert_eq!(clock(Duration::from_millis(3_600_500)), "1h00m");
        assert_eq!(clock(Duration::from_millis(2_200)), "2s");
        assert_eq!(clock_up(Duration::from_millis(1_800)), "2s");
    }
}
