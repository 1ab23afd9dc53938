//! When requests are issued: the closed loop (c workers, each waiting for
//! its answer before the next; with stages, their number stepped) and the
//! open loop (sends on a schedule: a constant or Poisson rate, a ramped
//! one, or a trace's times; latency from each send's intended start so a
//! stall cannot hide). A conversation is one job for either: its turns
//! follow their answers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::log::LogRow;
use stats::SplitMix64;
use tokio::sync::{mpsc, watch};

use model::log::Phase as RowPhase;

use crate::batcher::Batcher;
use crate::busy_poll;
use crate::config::{Arrival, OpenLoop};
use crate::distributed::Shard;
use crate::engine::{Engine, LogicalRequest, RequestShape};
use crate::metrics::RunMetrics;
use crate::race::{race, Finished};
use crate::shards::Shards;
use crate::workload::requests::{Requests, Spec};
use crate::workload::stages::Ramp;
use crate::workload::trace::TraceRow;
use crate::workload::Stages;

/// A send more than this behind its schedule counts as late: the schedule
/// keeps time to about 0.1 ms, so one this late means the client could not
/// keep up (a busy machine, or more sends than its CPUs can make).
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
    /// What each request carries.
    pub requests: Arc<Requests>,
    /// Rows go here; `None` discards them.
    pub sink: Option<mpsc::UnboundedSender<LogRow>>,
    /// Shutdown state.
    pub phase: watch::Receiver<Phase>,
    /// Every row is marked with this: the warm-up's or the measured run's.
    pub row_phase: RowPhase,
    /// Ids of conversations' turns.
    pub turn_ids: TurnIds,
    /// Live metrics: the in-flight gauge is counted here, as requests go
    /// out and come back (the rest from rows, on the collector's thread).
    pub metrics: Option<Arc<RunMetrics>>,
}

/// Request ids for conversations' turns, which are not on the schedule:
/// this generator's `j`-th turn is id `shard.request_id(j)`, so the shards
/// of a split load never share one.
#[derive(Debug)]
pub(crate) struct TurnIds {
    next: AtomicU64,
    shard: Shard,
}

impl TurnIds {
    /// Ids 0, 1, 2, ... of `shard`'s.
    pub(crate) fn new(shard: Shard) -> Self {
        Self {
            next: AtomicU64::new(0),
            shard,
        }
    }

    fn take(&self) -> u64 {
        self.shard
            .request_id(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where a request's latency starts and how late it was handed over.
#[derive(Debug, Clone, Copy)]
struct Start {
    at: Instant,
    /// Open loop: actual minus intended send, ms.
    lag_ms: Option<f64>,
}

impl Issuer {
    fn running(&self) -> bool {
        *self.phase.borrow() == Phase::Running
    }

    fn emit(&self, mut row: LogRow) {
        if let Some(sink) = &self.sink {
            row.phase = self.row_phase;
            // The collector outlives every issuer; a closed sink only means
            // the run is being torn down.
            let _ = sink.send(row);
        }
    }

    /// Request `request_id` of `spec`, its latency from `start`.
    fn item(
        request_id: u64,
        start: Start,
        spec: Spec,
        session: Option<(u64, u32)>,
        keep_answer: bool,
    ) -> LogicalRequest {
        LogicalRequest {
            request_id,
            model: spec.model,
            input: spec.input,
            messages: spec.messages,
            start: start.at,
            shape: RequestShape {
                input_tokens: spec.input_tokens,
                max_tokens: spec.max_tokens,
                min_tokens: spec.min_tokens,
                session,
                send_lag_ms: start.lag_ms,
                keep_answer,
            },
        }
    }

    /// Sends `item` and returns its row (`None` if the batcher went away).
    async fn exchange(&self, item: LogicalRequest) -> Option<LogRow> {
        let _in_flight = self.metrics.as_ref().map(RunMetrics::in_flight);
        match &self.batcher {
            Some(batcher) => batcher.submit(item).await,
            None => Some(self.engine.execute_single(&item).await),
        }
    }

    /// Issues `item` and emits its row, or an `interrupted` one if the run
    /// is aborted first.
    async fn issue(&self, item: LogicalRequest) {
        let (request_id, start, shape) = (item.request_id, item.start, item.shape);
        let mut phase = self.phase.clone();
        let row = tokio::select! {
            row = self.exchange(item) => row,
            _ = phase.wait_for(|p| *p == Phase::Aborted) => None,
        };
        let row = row.unwrap_or_else(|| {
            self.engine
                .unsent_shaped_row(request_id, start, shape, "interrupted")
        });
        self.emit(row);
    }

    fn emit_or_interrupted(&self, row: Option<LogRow>, request_id: u64, start: Instant) {
        let row = row.unwrap_or_else(|| self.engine.unsent_row(request_id, start, "interrupted"));
        self.emit(row);
    }

    /// Runs conversation `session` turn after turn: each turn after the
    /// previous answer and the think time, with the whole history. Its
    /// first turn's latency runs from `first` (the open loop's intended
    /// start; the closed loop: when it is sent). A failed turn ends the
    /// conversation (there is no answer to carry on with); so do the
    /// shutdown and `deadline`.
    async fn converse(
        &self,
        session: u64,
        first: Option<Start>,
        deadline: Option<Instant>,
        in_flight: &InFlight,
    ) {
        let turns = self.requests.turns_of(session);
        let mut history: Vec<(String, String)> = Vec::new();
        for turn in 1..=turns {
            if turn > 1 {
                let think = self.requests.think_time();
                if !think.is_zero() {
                    let mut phase = self.phase.clone();
                    tokio::select! {
                        () = tokio::time::sleep(think) => {}
                        _ = phase.wait_for(|p| *p != Phase::Running) => return,
                    }
                }
                if !self.running() || deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
            }
            let request_id = self.turn_ids.take();
            let (spec, asked) = self.requests.turn(session, turn, request_id, &history);
            let start = match first.filter(|_| turn == 1) {
                Some(start) => start,
                None => Start {
                    at: Instant::now(),
                    lag_ms: None,
                },
            };
            let item = Self::item(request_id, start, spec, Some((session, turn)), turn < turns);
            in_flight.set(request_id, start.at);
            let in_flight_gauge = self.metrics.as_ref().map(RunMetrics::in_flight);
            let (row, answer) = self.engine.execute_for_answer(&item).await;
            drop(in_flight_gauge);
            busy_poll::note_completion();
            in_flight.clear();
            let ok = row.ok;
            self.emit(row);
            match answer {
                Some(answer) if ok => history.push((asked, answer)),
                _ => return,
            }
        }
    }

    /// A conversation on the open loop's schedule, as its own task: the
    /// turn in flight when the run is aborted is logged `interrupted`.
    async fn converse_on_schedule(&self, session: u64, first: Start, deadline: Option<Instant>) {
        let in_flight = InFlight::new();
        let mut phase = self.phase.clone();
        tokio::select! {
            () = self.converse(session, Some(first), deadline, &in_flight) => {}
            _ = phase.wait_for(|p| *p == Phase::Aborted) => {
                if let Some((request_id, start)) = in_flight.take() {
                    self.emit_or_interrupted(None, request_id, start);
                }
            }
        }
    }

    /// One closed-loop worker, number `worker` of this generator: issues
    /// requests (or runs conversations) one after another until `plan`'s
    /// requests are taken, its deadline passes or shutdown is asked. The
    /// `j`-th id taken from `next` is `plan.ids.request_id(j)` (a session's
    /// id, when conversing).
    async fn work(&self, next: &AtomicU64, plan: &ClosedLoop, worker: usize) {
        // The worker as a whole races the abort: one watch future per
        // worker, not one per request (creating and dropping one cost as
        // much user time as building the request). `in_flight` remembers
        // the request an abort cuts off, so it is still logged.
        let in_flight = InFlight::new();
        let requests_in_turn = async {
            loop {
                if !self.running() || plan.deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                if let Some(stages) = &plan.stages {
                    if !self.wait_for_stage(stages, plan, worker).await {
                        return;
                    }
                }
                let id = plan.ids.request_id(next.fetch_add(1, Ordering::Relaxed));
                if plan.requests.is_some_and(|n| id >= n) {
                    return;
                }
                if self.requests.converses() {
                    self.converse(id, None, plan.deadline, &in_flight).await;
                    continue;
                }
                let spec = self.requests.single(id);
                let start = Instant::now();
                let item = Self::item(
                    id,
                    Start {
                        at: start,
                        lag_ms: None,
                    },
                    spec,
                    None,
                    false,
                );
                in_flight.set(id, start);
                let row = self.exchange(item).await;
                busy_poll::note_completion();
                in_flight.clear();
                self.emit_or_interrupted(row, id, start);
            }
        };
        let mut phase = self.phase.clone();
        // Done when the run is aborted, or when nothing can abort it any
        // more (the sender is gone).
        let aborted = async move {
            let _ = phase.wait_for(|p| *p == Phase::Aborted).await;
        };
        // The abort is polled only when the phase changes, not on every
        // read of the worker's streamed answers (see `crate::race`).
        if let Finished::Guard(()) = race(requests_in_turn, aborted).await {
            if let Some((request_id, start)) = in_flight.take() {
                self.emit_or_interrupted(None, request_id, start);
            }
        }
    }

    /// Waits until `worker` is among the current stage's workers; `false`
    /// when the stages are over or the run stops first.
    async fn wait_for_stage(&self, stages: &Stages, plan: &ClosedLoop, worker: usize) -> bool {
        loop {
            let Some((workers, end)) = stages.concurrency_at(plan.origin.elapsed()) else {
                return false;
            };
            let own = plan.ids.share(workers as u64);
            if (worker as u64) < own {
                return true;
            }
            let mut phase = self.phase.clone();
            tokio::select! {
                () = tokio::time::sleep_until((plan.origin + end).into()) => {}
                _ = phase.wait_for(|p| *p != Phase::Running) => return false,
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
#[derive(Debug, Clone)]
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
    /// Workers stepped by stages (the shard's part of each stage's).
    pub stages: Option<Stages>,
    /// When the stages start.
    pub origin: Instant,
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
    let plan = Arc::new(plan);
    for worker in 0..plan.concurrency {
        let issuer = issuer.clone();
        let next = next.clone();
        let plan = plan.clone();
        let work = async move { issuer.work(&next, &plan, worker).await };
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
    /// Stages: the rate's shape; arrival `k` is due when its integral
    /// reaches `area` (see [`crate::workload::stages`]).
    ramp: Option<Ramp>,
    area: f64,
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
            ramp: None,
            area: 0.0,
        }
    }

    /// The arrivals of a rate ramped by `stages` from `open.rate_rps`.
    pub(crate) fn staged(
        open: &OpenLoop,
        stages: &Stages,
        shard: Shard,
        requests: Option<u64>,
    ) -> Self {
        Self {
            ramp: Some(stages.ramp(open.rate_rps)),
            ..Self::new(open, shard, requests, None)
        }
    }

    fn next_staged(&mut self) -> Option<(u64, f64)> {
        loop {
            let request_id = self.next_id;
            if self.requests.is_some_and(|n| request_id >= n) {
                return None;
            }
            let offset_s = self.ramp.as_ref()?.time_at(self.area)?;
            self.next_id += 1;
            self.area += match self.arrival {
                Arrival::Constant => 1.0,
                Arrival::Poisson => -self.rng.unit_open_closed().ln(),
            };
            if self.shard.keeps(request_id) {
                return Some((request_id, offset_s));
            }
        }
    }
}

impl Iterator for Arrivals {
    type Item = (u64, f64);

    fn next(&mut self) -> Option<(u64, f64)> {
        if self.ramp.is_some() {
            return self.next_staged();
        }
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

/// One send of an open-loop schedule: its id (a session's, when
/// conversing), its offset from the origin in s, and the trace row it
/// replays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Due {
    pub id: u64,
    pub offset_s: f64,
    pub row: Option<TraceRow>,
}

/// What a due send starts.
enum Job {
    One(Spec),
    Session(u64),
}

/// Longest single sleep of the schedule thread, so it sees a shutdown
/// within this long even before a trace's distant next row.
const SCHEDULE_SLICE: Duration = Duration::from_millis(20);

/// The lateness of the open loop's sends, shared by the tasks that make
/// them (each measures its own when it starts).
#[derive(Debug, Default)]
struct Lateness {
    late: AtomicU64,
    max_ns: AtomicU64,
}

impl Lateness {
    /// Notes a send `lag` behind its time; returns it in ms.
    fn note(&self, lag: Duration) -> f64 {
        let ms = lag.as_secs_f64() * 1000.0;
        if ms > LATE_THRESHOLD_MS {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
        ms
    }
}

/// Sends `arrivals` at `origin` + their offsets. Each request's latency
/// runs from its intended start, so time a send spends late (or queued
/// behind a stalled server, or waiting for a shard that started after its
/// `--start-at`) counts. A conversation's first turn is on the schedule;
/// its later turns follow their answers. `deadline` ends conversations.
///
/// The schedule keeps time on a thread of its own, sleeping with the OS's
/// timer to the due time (late by its timer slack, ~0.05 ms), not tokio's
/// (whole milliseconds, rounded up); there it makes each request before
/// it is due and hands it to the runtime when it is. A send's lateness is
/// taken when its task starts on the runtime, so the hand-over counts.
pub(crate) async fn open_loop(
    issuer: Arc<Issuer>,
    open: &OpenLoop,
    arrivals: impl Iterator<Item = Due> + Send + 'static,
    origin: Instant,
    deadline: Option<Instant>,
) -> OpenLoopStats {
    let runtime = tokio::runtime::Handle::current();
    let max_in_flight = open.max_in_flight;
    let (done, finished) = tokio::sync::oneshot::channel();
    let schedule = move || {
        let outcome = keep_schedule(&issuer, &runtime, arrivals, origin, deadline, max_in_flight);
        let _ = done.send(outcome);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("loadgen-schedule".into())
        .spawn(schedule)
    {
        eprintln!("loadgen: cannot start the schedule's thread: {e}; nothing was sent");
        return OpenLoopStats::default();
    }
    let Ok((mut stats, mut tasks, lateness)) = finished.await else {
        return OpenLoopStats::default();
    };
    while tasks.join_next().await.is_some() {}
    stats.late_sends = lateness.late.load(Ordering::Relaxed);
    stats.max_send_lag_ms = lateness.max_ns.load(Ordering::Relaxed) as f64 / 1e6;
    stats
}

/// The schedule thread's loop: each due send made, waited for, handed
/// over (or dropped at the in-flight bound); returns the counts, the
/// tasks still running and their lateness.
fn keep_schedule(
    issuer: &Arc<Issuer>,
    runtime: &tokio::runtime::Handle,
    arrivals: impl Iterator<Item = Due>,
    origin: Instant,
    deadline: Option<Instant>,
    max_in_flight: usize,
) -> (OpenLoopStats, tokio::task::JoinSet<()>, Arc<Lateness>) {
    let mut stats = OpenLoopStats::default();
    let lateness = Arc::new(Lateness::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut first_send: Option<Instant> = None;
    let mut last_send = origin;
    'schedule: for due in arrivals {
        let intended = origin + Duration::from_secs_f64(due.offset_s);
        // Made before it is due, so making it does not make it late.
        let job = match (&due.row, issuer.requests.converses()) {
            (Some(row), _) => Job::One(issuer.requests.traced(due.id, row)),
            (None, true) => Job::Session(due.id),
            (None, false) => Job::One(issuer.requests.single(due.id)),
        };
        loop {
            if !issuer.running() {
                break 'schedule;
            }
            let now = Instant::now();
            if now >= intended {
                break;
            }
            std::thread::sleep((intended - now).min(SCHEDULE_SLICE));
        }
        let now = Instant::now();
        // Finished tasks are reaped as we go so a long run holds only the
        // in-flight ones.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            stats.dropped += 1;
            let start = Start {
                at: intended,
                lag_ms: Some(lateness.note(now.saturating_duration_since(intended))),
            };
            let item = match job {
                Job::One(spec) => Issuer::item(due.id, start, spec, None, false),
                Job::Session(session) => {
                    let id = issuer.turn_ids.take();
                    let (spec, _) = issuer.requests.turn(session, 1, id, &[]);
                    Issuer::item(id, start, spec, Some((session, 1)), false)
                }
            };
            issuer.emit(issuer.engine.unsent_item_row(&item, "dropped"));
            continue;
        }
        stats.sent += 1;
        first_send.get_or_insert(now);
        last_send = now;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let issuer = issuer.clone();
        let in_flight = in_flight.clone();
        let lateness = lateness.clone();
        let id = due.id;
        tasks.spawn_on(
            async move {
                let start = Start {
                    at: intended,
                    lag_ms: Some(lateness.note(Instant::now().saturating_duration_since(intended))),
                };
                match job {
                    Job::One(spec) => {
                        issuer
                            .issue(Issuer::item(id, start, spec, None, false))
                            .await;
                    }
                    Job::Session(session) => {
                        issuer.converse_on_schedule(session, start, deadline).await;
                    }
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            },
            runtime,
        );
    }
    if let Some(first) = first_send {
        let span_s = (last_send - first).as_secs_f64();
        stats.achieved_rate_rps = if stats.sent >= 2 && span_s > 0.0 {
            (stats.sent - 1) as f64 / span_s
        } else {
            0.0
        };
    }
    (stats, tasks, lateness)
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
