//! One FIFO queue of work, a batch former, and `workers` simulated executors.
//!
//! A single dispatcher task forms batches in queue order, and only when a
//! worker is free, so batches start in FIFO order and the seeded service-time
//! stream is drawn in a reproducible order. Executing a batch is a sleep
//! until its deadline on a [`PreciseTimer`]. Every queue entry carries the
//! sender half of a oneshot; when a client goes away its handler drops the
//! receiver, and the dispatcher skips the entry instead of spending a worker
//! on it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;
use crate::cost::ServiceTimeModel;
use crate::metrics::Metrics;
use crate::timer::PreciseTimer;

/// What a queue entry learns when its batch has run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BatchOutcome {
    /// From enqueue to the start of the batch, in ms.
    pub queue_ms: f64,
    /// Observed execution time of the batch, in ms.
    pub infer_ms: f64,
    /// Items in the executed batch.
    pub batch_items: usize,
}

/// Why work was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubmitError {
    /// Admitting the items would exceed `max_queue`.
    QueueFull {
        /// Items already waiting.
        queued_items: usize,
    },
    /// The server is shutting down.
    Closed,
}

/// Scheduling knobs, copied out of [`ServerConfig`].
#[derive(Debug, Clone)]
struct Policy {
    workers: usize,
    service: ServiceTimeModel,
    max_batch: usize,
    dynamic_batching: bool,
    batch_window: Duration,
    /// Sorted, largest first.
    preferred: Vec<usize>,
    max_queue: usize,
}

/// Executions by batch size: how many, and their total time, in ns
/// (Triton's `batch_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Executions {
    pub count: u64,
    pub ns: u64,
}

struct Entry {
    items: usize,
    enqueued_at: Instant,
    reply: oneshot::Sender<BatchOutcome>,
}

#[derive(Default)]
struct QueueState {
    entries: VecDeque<Entry>,
    /// Items in `entries`, cancelled ones included until they are pruned.
    queued_items: usize,
    closed: bool,
}

impl QueueState {
    fn prune_cancelled_front(&mut self) {
        while self.entries.front().is_some_and(|e| e.reply.is_closed()) {
            if let Some(e) = self.entries.pop_front() {
                self.queued_items -= e.items;
            }
        }
    }

    fn prune_all_cancelled(&mut self) {
        self.entries.retain(|e| !e.reply.is_closed());
        self.queued_items = self.entries.iter().map(|e| e.items).sum();
    }

    /// The largest preferred batch size that whole queued requests, taken
    /// in order, add up to exactly (what Triton's dynamic batcher sends
    /// without waiting).
    fn preferred_batch(&self, policy: &Policy) -> Option<usize> {
        if policy.preferred.is_empty() {
            return None;
        }
        let mut items = 0;
        let mut best = None;
        for entry in self.entries.iter().filter(|e| !e.reply.is_closed()) {
            items += entry.items;
            if items > policy.max_batch {
                break;
            }
            if policy.preferred.contains(&items) {
                best = Some(items);
            }
        }
        best
    }
}

struct Shared {
    policy: Policy,
    state: Mutex<QueueState>,
    /// Executions by batch size, for the statistics endpoint.
    executions: Mutex<std::collections::BTreeMap<usize, Executions>>,
    /// Wakes the dispatcher: new work, or closing.
    wake: Notify,
    /// Ends simulated executions on time to well under a ms.
    timer: PreciseTimer,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; recover rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
}

/// A batch taken off the queue, about to run.
struct Batch {
    entries: Vec<Entry>,
    items: usize,
    started_at: Instant,
}

impl Scheduler {
    /// Starts the dispatcher on the current tokio runtime.
    pub(crate) fn start(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let timer = PreciseTimer::start()?;
        let mut preferred = config.preferred_batch_sizes.clone();
        preferred.sort_unstable_by(|a, b| b.cmp(a));
        let policy = Policy {
            workers: config.workers,
            service: config.service,
            max_batch: config.max_batch,
            dynamic_batching: config.dynamic_batching,
            batch_window: Duration::try_from_secs_f64(config.batch_window_ms / 1000.0)
                .unwrap_or(Duration::ZERO),
            preferred,
            max_queue: config.max_queue,
        };
        let shared = Arc::new(Shared {
            policy,
            state: Mutex::new(QueueState::default()),
            executions: Mutex::new(std::collections::BTreeMap::new()),
            wake: Notify::new(),
            timer,
            metrics,
        });
        let dispatcher = tokio::spawn(dispatch(shared.clone()));
        Ok((Self { shared }, dispatcher))
    }

    /// Queues `items` items of one request; the receivers resolve as their
    /// batches finish. A request is split into chunks of at most
    /// `max_batch`, each queued whole, as Triton keeps a request whole:
    /// without dynamic batching each chunk is one batch; with it, a batch
    /// gathers whole chunks across requests up to `max_batch` items.
    pub(crate) fn submit(
        &self,
        items: usize,
    ) -> Result<Vec<oneshot::Receiver<BatchOutcome>>, SubmitError> {
        let policy = &self.shared.policy;
        let chunk = policy.max_batch;
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(items.div_ceil(chunk));
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(SubmitError::Closed);
            }
            if state.queued_items + items > policy.max_queue {
                state.prune_all_cancelled();
                if state.queued_items + items > policy.max_queue {
                    return Err(SubmitError::QueueFull {
                        queued_items: state.queued_items,
                    });
                }
            }
            let mut left = items;
            while left > 0 {
                let n = left.min(chunk);
                let (reply, receiver) = oneshot::channel();
                state.entries.push_back(Entry {
                    items: n,
                    enqueued_at: now,
                    reply,
                });
                receivers.push(receiver);
                left -= n;
            }
            state.queued_items += items;
        }
        self.shared.wake.notify_one();
        Ok(receivers)
    }

    /// Items waiting now.
    pub(crate) fn queued_items(&self) -> usize {
        self.shared.lock().queued_items
    }

    /// Roughly how long the current queue takes to drain, in ms, for
    /// `Retry-After`.
    pub(crate) fn drain_estimate_ms(&self, queued_items: usize) -> f64 {
        let policy = &self.shared.policy;
        let batches = queued_items.div_ceil(policy.max_batch) as f64;
        batches / policy.workers as f64
            * policy
                .service
                .nominal_ms(policy.max_batch.min(queued_items.max(1)))
    }

    /// Executions so far by batch size.
    pub(crate) fn executions(&self) -> Vec<(usize, Executions)> {
        let executions = self
            .shared
            .executions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        executions.iter().map(|(&size, &e)| (size, e)).collect()
    }

    /// Stops forming batches; queued entries are dropped, so their requests
    /// learn the server is going away.
    pub(crate) fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.entries.clear();
        state.queued_items = 0;
        drop(state);
        self.shared.wake.notify_one();
    }
}

async fn dispatch(shared: Arc<Shared>) {
    let workers = Arc::new(Semaphore::new(shared.policy.workers));
    let mut sampler = shared.policy.service.sampler();
    loop {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let Some(batch) = next_batch(&shared).await else {
            return;
        };
        let service_ms = sampler.next_ms(batch.items);
        for e in &batch.entries {
            let wait_ms = ms_between(e.enqueued_at, batch.started_at);
            shared.metrics.observe_queue_wait(wait_ms, e.items);
        }
        if service_ms <= 0.0 {
            // Zero-cost batches finish here: no task, no timer.
            finish(&shared, batch, permit);
        } else {
            tokio::spawn(execute(shared.clone(), batch, service_ms, permit));
        }
    }
}

/// Waits for work and forms the next batch; `None` once closed.
async fn next_batch(shared: &Shared) -> Option<Batch> {
    let policy = &shared.policy;
    loop {
        let oldest = loop {
            let notified = shared.wake.notified();
            {
                let mut state = shared.lock();
                if state.closed {
                    return None;
                }
                state.prune_cancelled_front();
                if let Some(e) = state.entries.front() {
                    break e.enqueued_at;
                }
            }
            notified.await;
        };
        if policy.dynamic_batching && !policy.batch_window.is_zero() {
            // Triton's rule: a full batch, or one of a preferred size, leaves
            // at once; otherwise the batch waits for more until the oldest
            // request has waited `max_queue_delay`.
            let deadline = oldest + policy.batch_window;
            loop {
                let notified = shared.wake.notified();
                {
                    let state = shared.lock();
                    if state.closed {
                        return None;
                    }
                    if state.queued_items >= policy.max_batch
                        || state.preferred_batch(policy).is_some()
                        || Instant::now() >= deadline
                    {
                        break;
                    }
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
        }
        let mut state = shared.lock();
        let limit = if policy.dynamic_batching {
            state.preferred_batch(policy).unwrap_or(policy.max_batch)
        } else {
            policy.max_batch
        };
        let mut entries = Vec::new();
        let mut items = 0;
        while let Some(front) = state.entries.front() {
            if !front.reply.is_closed() {
                let fits = items + front.items <= limit;
                let room = if policy.dynamic_batching {
                    fits
                } else {
                    entries.is_empty()
                };
                if !room {
                    break;
                }
            }
            let Some(entry) = state.entries.pop_front() else {
                break;
            };
            state.queued_items -= entry.items;
            if !entry.reply.is_closed() {
                items += entry.items;
                entries.push(entry);
            }
        }
        drop(state);
        if !entries.is_empty() {
            return Some(Batch {
                entries,
                items,
                started_at: Instant::now(),
            });
        }
    }
}

async fn execute(shared: Arc<Shared>, batch: Batch, service_ms: f64, permit: OwnedSemaphorePermit) {
    let service = Duration::try_from_secs_f64(service_ms / 1000.0).unwrap_or(Duration::MAX);
    let deadline = batch
        .started_at
        .checked_add(service)
        .unwrap_or(batch.started_at);
    shared.timer.sleep_until(deadline).await;
    finish(&shared, batch, permit);
}

fn finish(shared: &Shared, batch: Batch, permit: OwnedSemaphorePermit) {
    let infer_ms = ms_between(batch.started_at, Instant::now());
    shared.metrics.observe_batch(batch.items, infer_ms);
    {
        let mut executions = shared.executions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = executions.entry(batch.items).or_default();
        entry.count += 1;
        entry.ns += (infer_ms * 1e6) as u64;
    }
    // The worker is free before replies go out, as on a real server.
    drop(permit);
    for entry in batch.entries {
        let outcome = BatchOutcome {
            queue_ms: ms_between(entry.enqueued_at, batch.started_at),
            infer_ms,
            batch_items: batch.items,
        };
        // A receiver gone meanwhile is a client that left: nothing to do.
        let _ = entry.reply.send(outcome);
    }
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}
