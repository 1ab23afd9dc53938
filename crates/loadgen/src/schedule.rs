//! When requests are issued: the closed loop (c workers, each waiting for
//! its answer before the next) and the open loop (sends on a schedule, with
//! latency from each send's intended start so a stall cannot hide).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::log::LogRow;
use stats::SplitMix64;
use tokio::sync::{mpsc, watch};

use crate::batcher::Batcher;
use crate::busy_poll;
use crate::config::{Arrival, OpenLoop};
use crate::engine::{Engine, LogicalRequest};
use crate::payloads::Payloads;
use crate::shards::Shards;

/// A send more than this behind its schedule counts as late. tokio's timer
/// has 1 ms granularity, so wake-ups up to ~1 ms late are normal and not
/// the generator failing to keep up.
pub const LATE_THRESHOLD_MS: f64 = 2.0;

/// Where a run stands; workers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Issue requests.
    Running,
    /// Shutdown asked: issue no more, let in-flight ones finish.
    Stopping,
    /// Grace over: give up on in-flight requests (logged as `interrupted`).
    Aborted,
}

/// Issues logical requests and hands their rows to the sink.
pub struct Issuer {
    /// Sends HTTP requests.
    pub engine: Arc<Engine>,
    /// Micro-batcher, when batching is on.
    pub batcher: Option<Batcher>,
    /// Request inputs.
    pub payloads: Payloads,
    /// Rows go here; `None` discards them (warm-up).
    pub sink: Option<mpsc::UnboundedSender<LogRow>>,
    /// Shutdown state.
    pub phase: watch::Receiver<Phase>,
}

impl Issuer {
    fn running(&self) -> bool {
        *self.phase.borrow() == Phase::Running
    }

    fn emit(&self, row: LogRow) {
        if let Some(sink) = &self.sink {
            // The collector outlives every issuer; a closed sink only means
            // the run is being torn down.
            let _ = sink.send(row);
        }
    }

    /// Sends request `request_id` whose latency runs from `start` and
    /// returns its row (`None` if the batcher went away).
    async fn exchange(&self, request_id: u64, start: Instant) -> Option<LogRow> {
        let payload = self.payloads.get(request_id);
        let item = LogicalRequest {
            request_id,
            model: payload.model,
            input: payload.input,
            messages: payload.messages,
            start,
        };
        match &self.batcher {
            Some(batcher) => batcher.submit(item).await,
            None => Some(self.engine.execute_single(&item).await),
        }
    }

    /// Issues request `request_id` whose latency runs from `start` and
    /// emits its row, or an `interrupted` one if the run is aborted first.
    async fn issue(&self, request_id: u64, start: Instant) {
        let mut phase = self.phase.clone();
        let row = tokio::select! {
            row = self.exchange(request_id, start) => row,
            _ = phase.wait_for(|p| *p == Phase::Aborted) => None,
        };
        self.emit_or_interrupted(row, request_id, start);
    }

    fn emit_or_interrupted(&self, row: Option<LogRow>, request_id: u64, start: Instant) {
        let row = row.unwrap_or_else(|| self.engine.unsent_row(request_id, start, "interrupted"));
        self.emit(row);
    }

    /// One closed-loop worker: issues requests one after another until
    /// `requests` are taken, `deadline` passes or shutdown is asked.
    async fn work(&self, next_id: &AtomicU64, requests: Option<u64>, deadline: Option<Instant>) {
        // The worker as a whole races the abort: one watch future per
        // worker, not one per request (creating and dropping one cost as
        // much user time as building the request). `in_flight` remembers
        // the request an abort cuts off, so it is still logged.
        let in_flight = InFlight::new();
        let requests_in_turn = async {
            loop {
                if !self.running() || deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let request_id = next_id.fetch_add(1, Ordering::Relaxed);
                if requests.is_some_and(|n| request_id >= n) {
                    return;
                }
                let start = Instant::now();
                in_flight.set(request_id, start);
                let row = self.exchange(request_id, start).await;
                busy_poll::note_completion();
                in_flight.clear();
                self.emit_or_interrupted(row, request_id, start);
            }
        };
        let mut phase = self.phase.clone();
        tokio::select! {
            () = requests_in_turn => {}
            _ = phase.wait_for(|p| *p == Phase::Aborted) => {
                if let Some((request_id, start)) = in_flight.take() {
                    self.emit_or_interrupted(None, request_id, start);
                }
            }
        }
    }
}

/// The request a closed-loop worker has in flight, readable after the
/// worker's future is dropped. Atomics rather than a `Cell` because worker
/// futures must be `Send`; relaxed stores, as only the worker's own task
/// writes and reads them.
struct InFlight {
    anchor: Instant,
    request_id: AtomicU64,
    start_ns: AtomicU64,
}

impl InFlight {
    const NONE: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            anchor: Instant::now(),
            request_id: AtomicU64::new(Self::NONE),
            start_ns: AtomicU64::new(0),
        }
    }

    fn set(&self, request_id: u64, start: Instant) {
        let ns = start.saturating_duration_since(self.anchor).as_nanos();
        self.start_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.request_id.store(request_id, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.request_id.store(Self::NONE, Ordering::Relaxed);
    }

    fn take(&self) -> Option<(u64, Instant)> {
        let request_id = self.request_id.swap(Self::NONE, Ordering::Relaxed);
        let start = self.anchor + Duration::from_nanos(self.start_ns.load(Ordering::Relaxed));
        (request_id != Self::NONE).then_some((request_id, start))
    }
}

/// Runs `concurrency` workers until `requests` are issued, `deadline`
/// passes or shutdown is asked; spread over `shards` when given, else on
/// the caller's runtime. Each shard busy-polls for `busy_poll` after a
/// completion (zero: never).
pub async fn closed_loop(
    issuer: Arc<Issuer>,
    concurrency: usize,
    requests: Option<u64>,
    deadline: Option<Instant>,
    shards: Option<&Shards>,
    busy_poll: Duration,
) {
    // Dropped (so aborted) when the workers are done.
    let mut pollers = tokio::task::JoinSet::new();
    if let Some(shards) = shards.filter(|_| !busy_poll.is_zero()) {
        shards.spawn_on_each(&mut pollers, || busy_poll::poll_while_busy(busy_poll));
    }
    let next_id = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let issuer = issuer.clone();
        let next_id = next_id.clone();
        let work = async move { issuer.work(&next_id, requests, deadline).await };
        match shards {
            Some(shards) => shards.spawn_into(&mut workers, worker, work),
            None => {
                workers.spawn(work);
            }
        }
    }
    while workers.join_next().await.is_some() {}
}

/// What the open-loop generator measured about itself.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpenLoopStats {
    /// Sends made (not dropped).
    pub sent: u64,
    /// Sends more than [`LATE_THRESHOLD_MS`] behind schedule.
    pub late_sends: u64,
    /// Sends skipped because `max_in_flight` requests were outstanding.
    pub dropped: u64,
    /// Largest lag behind schedule, ms.
    pub max_send_lag_ms: f64,
    /// Sends per second between the first and the last send.
    pub achieved_rate_rps: f64,
}

/// Sends on the schedule of `open` until `requests` sends are due or
/// `duration` is over. Each request's latency runs from its intended start,
/// so time a send spends late (or queued behind a stalled server) counts.
pub async fn open_loop(
    issuer: Arc<Issuer>,
    open: &OpenLoop,
    requests: Option<u64>,
    duration: Option<Duration>,
) -> OpenLoopStats {
    let mut stats = OpenLoopStats::default();
    let mut rng = SplitMix64::new(open.seed);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let origin = Instant::now();
    let mut offset_s = 0.0_f64;
    let mut first_send: Option<Instant> = None;
    let mut last_send = origin;
    let mut phase = issuer.phase.clone();
    for request_id in 0.. {
        if requests.is_some_and(|n| request_id >= n)
            || duration.is_some_and(|d| offset_s >= d.as_secs_f64())
        {
            break;
        }
        let intended = origin + Duration::from_secs_f64(offset_s);
        tokio::select! {
            _ = tokio::time::sleep_until(intended.into()) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => break,
        }
        let now = Instant::now();
        let lag_ms = now.saturating_duration_since(intended).as_secs_f64() * 1000.0;
        stats.max_send_lag_ms = stats.max_send_lag_ms.max(lag_ms);
        if lag_ms > LATE_THRESHOLD_MS {
            stats.late_sends += 1;
        }
        // Finished tasks are reaped as we go so a long run holds only the
        // in-flight ones.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= open.max_in_flight {
            stats.dropped += 1;
            issuer.emit(issuer.engine.unsent_row(request_id, intended, "dropped"));
        } else {
            stats.sent += 1;
            first_send.get_or_insert(now);
            last_send = now;
            in_flight.fetch_add(1, Ordering::Relaxed);
            let issuer = issuer.clone();
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                issuer.issue(request_id, intended).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        offset_s += match open.arrival {
            Arrival::Constant => 1.0 / open.rate_rps,
            Arrival::Poisson => -rng.unit_open_closed().ln() / open.rate_rps,
        };
    }
    if let Some(first) = first_send {
        let span_s = (last_send - first).as_secs_f64();
        stats.achieved_rate_rps = if stats.sent >= 2 && span_s > 0.0 {
            (stats.sent - 1) as f64 / span_s
        } else {
            0.0
        };
    }
    while tasks.join_next().await.is_some() {}
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let mut rng = SplitMix64::new(7);
        let n = 100_000;
        let mean: f64 = (0..n).map(|_| -rng.unit_open_closed().ln()).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean gap {mean}");
    }
}
