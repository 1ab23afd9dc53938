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
use crate::distributed::Shard;
use crate::engine::{Engine, LogicalRequest};
use crate::payloads::Payloads;
use crate::shards::Shards;

/// A send more than this behind its schedule counts as late. tokio's timer
/// has 1 ms granularity, so wake-ups up to ~1 ms late are normal and not
/// the generator failing to keep up.
pub(crate) const LATE_THRESHOLD_MS: f64 = 2.0;

/// Where a run stands; workers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Issue requests.
    Running,
    /// Shutdown asked: issue no more, let in-flight ones finish.
    Stopping,
    /// Grace over: give up on in-flight requests (logged as `interrupted`).
    Aborted,
}

/// Issues logical requests and hands their rows to the sink.
pub(crate) struct Issuer {
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
    /// `requests` are taken, `deadline` passes or shutdown is asked. The
    /// `j`-th request taken from `next` is id `ids.request_id(j)`.
    async fn work(
        &self,
        next: &AtomicU64,
        ids: Shard,
        requests: Option<u64>,
        deadline: Option<Instant>,
    ) {
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
                let request_id = ids.request_id(next.fetch_add(1, Ordering::Relaxed));
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

/// How a closed loop runs: its workers, its ids and when it stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClosedLoop {
    /// Workers, each waiting for its answer before the next request.
    pub concurrency: usize,
    /// The ids this generator issues: `ids.request_id(j)` for its `j`-th
    /// request ([`Shard::WHOLE`]: 0, 1, 2, ...).
    pub ids: Shard,
    /// Stop before the first id at or above this.
    pub requests: Option<u64>,
    /// Stop issuing at this instant.
    pub deadline: Option<Instant>,
}

/// Runs the closed loop `plan` until its requests are issued, its deadline
/// passes or shutdown is asked; spread over `shards` when given, else on
/// the caller's runtime. Each shard busy-polls for `busy_poll` after a
/// completion (zero: never).
pub(crate) async fn closed_loop(
    issuer: Arc<Issuer>,
    plan: ClosedLoop,
    shards: Option<&Shards>,
    busy_poll: Duration,
) {
    // Dropped (so aborted) when the workers are done.
    let mut pollers = tokio::task::JoinSet::new();
    if let Some(shards) = shards.filter(|_| !busy_poll.is_zero()) {
        shards.spawn_on_each(&mut pollers, || busy_poll::poll_while_busy(busy_poll));
    }
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..plan.concurrency {
        let issuer = issuer.clone();
        let next = next.clone();
        let work = async move {
            issuer
                .work(&next, plan.ids, plan.requests, plan.deadline)
                .await
        };
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
pub(crate) struct OpenLoopStats {
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

/// The open-loop schedule one generator keeps: `(request id, offset from
/// the origin in s)` in order. The global schedule (arrival `k` at its
/// offset, id `k`) is walked in full, every Poisson gap drawn from the one
/// seeded process, and only `shard`'s arrivals are yielded, so the shards
/// of a split load together yield exactly the unsplit schedule.
#[derive(Debug, Clone)]
pub(crate) struct Arrivals {
    arrival: Arrival,
    rate_rps: f64,
    rng: SplitMix64,
    shard: Shard,
    requests: Option<u64>,
    duration_s: Option<f64>,
    next_id: u64,
    offset_s: f64,
}

impl Arrivals {
    /// The arrivals of `open` that `shard` keeps, until `requests` are due
    /// or `duration` is over (globally: the same bounds for every shard).
    pub(crate) fn new(
        open: &OpenLoop,
        shard: Shard,
        requests: Option<u64>,
        duration: Option<Duration>,
    ) -> Self {
        Self {
            arrival: open.arrival,
            rate_rps: open.rate_rps,
            rng: SplitMix64::new(open.seed),
            shard,
            requests,
            duration_s: duration.map(|d| d.as_secs_f64()),
            next_id: 0,
            offset_s: 0.0,
        }
    }
}

impl Iterator for Arrivals {
    type Item = (u64, f64);

    fn next(&mut self) -> Option<(u64, f64)> {
        loop {
            let (request_id, offset_s) = (self.next_id, self.offset_s);
            if self.requests.is_some_and(|n| request_id >= n)
                || self.duration_s.is_some_and(|d| offset_s >= d)
            {
                return None;
            }
            self.next_id += 1;
            self.offset_s += match self.arrival {
                Arrival::Constant => 1.0 / self.rate_rps,
                Arrival::Poisson => -self.rng.unit_open_closed().ln() / self.rate_rps,
            };
            if self.shard.keeps(request_id) {
                return Some((request_id, offset_s));
            }
        }
    }
}

/// Sends `arrivals` at `origin` + their offsets. Each request's latency
/// runs from its intended start, so time a send spends late (or queued
/// behind a stalled server, or waiting for a shard that started after its
/// `--start-at`) counts.
pub(crate) async fn open_loop(
    issuer: Arc<Issuer>,
    open: &OpenLoop,
    arrivals: Arrivals,
    origin: Instant,
) -> OpenLoopStats {
    let mut stats = OpenLoopStats::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut first_send: Option<Instant> = None;
    let mut last_send = origin;
    let mut phase = issuer.phase.clone();
    for (request_id, offset_s) in arrivals {
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

    fn open(arrival: Arrival, rate_rps: f64) -> OpenLoop {
        OpenLoop {
            rate_rps,
            arrival,
            seed: 42,
            max_in_flight: 1000,
        }
    }

    /// The union of `count` shards' schedules, sorted by id, and whether
    /// each shard kept only its own ids.
    fn union(
        open: &OpenLoop,
        count: u32,
        requests: Option<u64>,
        duration: Option<Duration>,
    ) -> Vec<(u64, f64)> {
        let mut all = Vec::new();
        for index in 0..count {
            let shard = Shard { index, count };
            let own: Vec<_> = Arrivals::new(open, shard, requests, duration).collect();
            assert!(own.iter().all(|&(id, _)| shard.keeps(id)), "{shard:?}");
            assert!(own.windows(2).all(|w| w[0].1 <= w[1].1), "in time order");
            all.extend(own);
        }
        all.sort_by_key(|&(id, _)| id);
        all
    }

    #[test]
    fn the_shards_of_a_schedule_are_the_unsharded_schedule() {
        for arrival in [Arrival::Constant, Arrival::Poisson] {
            let open = open(arrival, 200.0);
            for (requests, duration) in [
                (Some(1000), None),
                (Some(1001), None),
                (None, Some(Duration::from_secs(3))),
                (Some(300), Some(Duration::from_millis(900))),
            ] {
                let whole: Vec<_> =
                    Arrivals::new(&open, Shard::WHOLE, requests, duration).collect();
                assert!(!whole.is_empty());
                // Ids 0, 1, 2, ... once each.
                assert!(whole.iter().enumerate().all(|(i, &(id, _))| id == i as u64));
                for count in [1, 2, 3, 4, 7] {
                    // Times and ids bit for bit: every shard sums the same gaps.
                    assert_eq!(
                        union(&open, count, requests, duration),
                        whole,
                        "{arrival:?} {requests:?} {duration:?} over {count} shards"
                    );
                }
            }
        }
        // Constant: shard INDEX of COUNT sends at (INDEX + j * COUNT) / R,
        // interleaved with the others.
        let shard = Shard { index: 1, count: 4 };
        let times: Vec<f64> = Arrivals::new(&open(Arrival::Constant, 200.0), shard, Some(20), None)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(times.len(), 5);
        for (j, t) in times.iter().enumerate() {
            assert!((t - (1 + 4 * j) as f64 / 200.0).abs() < 1e-12, "{times:?}");
        }
        // Poisson: each shard sees a quarter of the process's arrivals.
        let kept = Arrivals::new(
            &open(Arrival::Poisson, 1000.0),
            Shard { index: 3, count: 4 },
            None,
            Some(Duration::from_secs(10)),
        )
        .count();
        assert!((2300..2700).contains(&kept), "{kept}");
    }
}
