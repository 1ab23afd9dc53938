//! A seeded discrete-event simulation of loadgen against stub-server.
//!
//! The client is loadgen's: a closed loop of `concurrency` workers (or an
//! open loop at a rate), each logical request queued in a FIFO batcher that
//! sends `batch_size` at once or whatever is queued `batch_wait_ms` after the
//! oldest arrived, several batches in flight at once. Each HTTP request
//! reaches the server after a client overhead drawn from measured samples.
//! The server is stub-server's: one FIFO queue of chunks of at most
//! `max_batch` items, `workers` executors, a batch costing `(base +
//! per_item * b) * exp(N(0, sigma^2))`, and optionally dynamic batching with
//! a window (gather whole queued chunks up to `max_batch`, waiting until the
//! window after the oldest has passed unless `max_batch` items are queued).
//!
//! Events sit in one binary heap ordered by time, then by class, then by
//! insertion: at one instant every arrival and completion is handled before
//! a client batch deadline, and those before the server forms a batch, so
//! "items already queued at that instant join" holds as in loadgen and
//! stub-server. Queues are index ranges into per-run vectors, so an event
//! allocates nothing.

use serde::{Deserialize, Serialize};
use stats::{QuantileMethod, SplitMix64};

use super::events::EventQueue;

/// The server being simulated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerModel {
    /// Executors (at least 1 is simulated).
    pub workers: usize,
    /// Fixed cost per batch, ms (median).
    pub base_ms: f64,
    /// Cost per item, ms (median).
    pub per_item_ms: f64,
    /// Standard deviation of the log-normal cost multiplier.
    pub sigma: f64,
    /// Largest batch; larger requests are split into chunks of this size.
    pub max_batch: u32,
    /// Dynamic batching with this window, ms; `None` runs each chunk alone.
    pub dynamic_batching_window_ms: Option<f64>,
}

/// The client being simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientModel<'a> {
    /// Logical requests per HTTP request (1: no batching).
    pub batch_size: u32,
    /// Longest wait of the oldest queued request, ms.
    pub batch_wait_ms: f64,
    /// Overhead samples, ms, one drawn per HTTP request and added before
    /// it reaches the server; empty means none.
    pub overhead_ms: &'a [f64],
}

use model::whatif::Load;

/// What one simulated run gives.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOutcome {
    /// Every logical request's latency, ms, in issue order.
    pub latencies_ms: Vec<f64>,
    /// Linear-method percentiles and mean of the latencies, ms (0 when
    /// there are no requests).
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p95_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub mean_ms: f64,
    /// Requests over the time from the first issue to the last completion
    /// (0 when that time is 0: a free server and no overhead).
    pub throughput_rps: f64,
    /// Completions per second between the first and the last completion:
    /// close to the offered rate when the server keeps up, its capacity
    /// when it does not (infinite when every request completed at once).
    pub completion_rate_rps: f64,
    /// From the first issue to the last completion, ms.
    pub makespan_ms: f64,
    /// Mean wait in the server's queue per logical request, ms.
    pub server_queue_ms_mean: f64,
    /// Batches the server executed.
    pub executions: u64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Open loop: the next logical request is issued.
    Issue,
    /// An HTTP request reaches the server.
    ServerArrival { http: u32 },
    /// A batch of the server's queue entries `first..first + count` ends.
    ExecutionDone { first: u32, count: u32 },
    /// The client batcher's deadline for the batch of this generation.
    ClientDeadline { generation: u32 },
    /// The server looks for work (a freed worker, new work, a window's end).
    ServerDispatch,
}

impl Kind {
    /// Order among events at the same instant (lower first).
    fn class(self) -> u8 {
        match self {
            Kind::Issue | Kind::ServerArrival { .. } | Kind::ExecutionDone { .. } => 0,
            Kind::ClientDeadline { .. } => 1,
            Kind::ServerDispatch => 2,
        }
    }
}

/// An HTTP request: logical requests `first..first + count`.
#[derive(Debug, Clone, Copy)]
struct Http {
    first: u32,
    count: u32,
    chunks_left: u32,
}

/// A chunk in the server's queue.
#[derive(Debug, Clone, Copy)]
struct Entry {
    http: u32,
    items: u32,
    enqueued_ms: f64,
}

struct Sim<'a> {
    server: ServerModel,
    client: ClientModel<'a>,
    rng: SplitMix64,
    spare_normal: Option<f64>,
    events: EventQueue<Kind>,
    requests: u32,
    /// Logical requests issued so far; the client queue is `client_head..issued`.
    issued: u32,
    /// First logical request still in the client batcher.
    client_head: u32,
    generation: u32,
    enqueued_ms: Vec<f64>,
    latencies_ms: Vec<f64>,
    https: Vec<Http>,
    /// The server queue is `entries[server_head..]`.
    entries: Vec<Entry>,
    server_head: usize,
    queued_items: u64,
    free_workers: usize,
    dispatch_pending: bool,
    window_timer_ms: f64,
    closed_loop: bool,
    completed: u32,
    first_done_ms: f64,
    last_done_ms: f64,
    queue_wait_sum_ms: f64,
    executions: u64,
}

/// Runs one simulation; the same arguments and seed give the same outcome.
///
/// Out-of-range models are clamped rather than refused (at least one worker,
/// batch sizes of at least 1, costs and waits of at least 0), so a refit of
/// noisy data can always be simulated.
pub fn simulate(server: &ServerModel, client: &ClientModel, load: &Load, seed: u64) -> SimOutcome {
    let requests = load.requests();
    let n = requests as usize;
    let mut server = *server;
    server.workers = server.workers.max(1);
    server.max_batch = server.max_batch.max(1);
    let mut client = *client;
    client.batch_size = client.batch_size.max(1);
    client.batch_wait_ms = finite_or_zero(client.batch_wait_ms).max(0.0);
    let mut sim = Sim {
        server,
        client,
        rng: SplitMix64::new(seed),
        spare_normal: None,
        events: EventQueue::new(),
        requests,
        issued: 0,
        client_head: 0,
        generation: 0,
        enqueued_ms: vec![0.0; n],
        latencies_ms: vec![0.0; n],
        https: Vec::with_capacity(n / client.batch_size as usize + 1),
        entries: Vec::with_capacity(n / client.batch_size as usize + 1),
        server_head: 0,
        queued_items: 0,
        free_workers: server.workers,
        dispatch_pending: false,
        window_timer_ms: f64::NAN,
        closed_loop: matches!(load, Load::Closed { .. }),
        completed: 0,
        first_done_ms: f64::NAN,
        last_done_ms: 0.0,
        queue_wait_sum_ms: 0.0,
        executions: 0,
    };
    let (rate_rps, poisson) = match *load {
        Load::Closed { concurrency, .. } => {
            for _ in 0..concurrency.min(requests) {
                sim.issue(0.0);
            }
            (0.0, false)
        }
        Load::Open {
            rate_rps, poisson, ..
        } => {
            if requests > 0 && rate_rps.is_finite() && rate_rps > 0.0 {
                sim.push(0.0, Kind::Issue);
            }
            (rate_rps, poisson)
        }
    };
    sim.run(rate_rps, poisson);
    sim.outcome()
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

impl Sim<'_> {
    fn push(&mut self, at_ms: f64, kind: Kind) {
        self.events.push(at_ms, kind.class(), kind);
    }

    /// The event loop; `rate_rps` and `poisson` only matter to an open loop.
    fn run(&mut self, rate_rps: f64, poisson: bool) {
        let gap_ms = 1000.0 / rate_rps;
        while let Some((now, kind)) = self.events.pop() {
            match kind {
                Kind::Issue => {
                    self.issue(now);
                    if self.issued < self.requests {
                        let next = if poisson {
                            now - self.rng.unit_open_closed().ln() * gap_ms
                        } else {
                            // From the start, not from the last send, so rounding never drifts.
                            f64::from(self.issued) * gap_ms
                        };
                        self.push(next, Kind::Issue);
                    }
                }
                Kind::ServerArrival { http } => self.server_arrival(http, now),
                Kind::ExecutionDone { first, count } => self.execution_done(first, count, now),
                Kind::ClientDeadline { generation } => {
                    if generation == self.generation && self.client_head < self.issued {
                        let queued = self.issued - self.client_head;
                        self.send(queued.min(self.client.batch_size), now);
                    }
                }
                Kind::ServerDispatch => {
                    self.dispatch_pending = false;
                    self.dispatch(now);
                }
            }
        }
    }

    /// A logical request enters the client batcher at `now`.
    fn issue(&mut self, now: f64) {
        let id = self.issued;
        self.enqueued_ms[id as usize] = now;
        self.issued += 1;
        let queued = self.issued - self.client_head;
        if queued >= self.client.batch_size {
            self.send(self.client.batch_size, now);
        } else if queued == 1 {
            let deadline = now + self.client.batch_wait_ms;
            self.push(
                deadline,
                Kind::ClientDeadline {
                    generation: self.generation,
                },
            );
        }
    }

    /// The batcher sends its oldest `count` logical requests as one HTTP request.
    fn send(&mut self, count: u32, now: f64) {
        let http = self.https.len() as u32;
        let chunks = count.div_ceil(self.server.max_batch);
        self.https.push(Http {
            first: self.client_head,
            count,
            chunks_left: chunks,
        });
        self.client_head += count;
        // A new batch starts filling: deadlines of the one just sent are stale.
        self.generation = self.generation.wrapping_add(1);
        if self.client_head < self.issued {
            let oldest = self.enqueued_ms[self.client_head as usize];
            let deadline = (oldest + self.client.batch_wait_ms).max(now);
            self.push(
                deadline,
                Kind::ClientDeadline {
                    generation: self.generation,
                },
            );
        }
        let overhead = match self.client.overhead_ms.len() {
            0 => 0.0,
            len => finite_or_zero(self.client.overhead_ms[self.rng.index_below(len)]).max(0.0),
        };
        self.push(now + overhead, Kind::ServerArrival { http });
    }

    fn server_arrival(&mut self, http: u32, now: f64) {
        let mut left = self.https[http as usize].count;
        while left > 0 {
            let items = left.min(self.server.max_batch);
            self.entries.push(Entry {
                http,
                items,
                enqueued_ms: now,
            });
            self.queued_items += u64::from(items);
            left -= items;
        }
        self.request_dispatch(now);
    }

    fn request_dispatch(&mut self, now: f64) {
        if !self.dispatch_pending {
            self.dispatch_pending = true;
            self.push(now, Kind::ServerDispatch);
        }
    }

    /// Starts batches while a worker is free and work is ready.
    fn dispatch(&mut self, now: f64) {
        while self.free_workers > 0 && self.server_head < self.entries.len() {
            let dynamic = self.server.dynamic_batching_window_ms;
            if let Some(window) = dynamic {
                let deadline =
                    self.entries[self.server_head].enqueued_ms + finite_or_zero(window).max(0.0);
                if self.queued_items < u64::from(self.server.max_batch) && now < deadline {
                    // Wait for the window; one timer per deadline is enough.
                    if self.window_timer_ms != deadline {
                        self.window_timer_ms = deadline;
                        self.push(deadline, Kind::ServerDispatch);
                    }
                    return;
                }
            }
            let first = self.server_head;
            let mut items = 0u32;
            while self.server_head < self.entries.len() {
                let entry = self.entries[self.server_head];
                let fits = if dynamic.is_some() {
                    items + entry.items <= self.server.max_batch
                } else {
                    self.server_head == first
                };
                if !fits {
                    break;
                }
                items += entry.items;
                self.queued_items -= u64::from(entry.items);
                self.queue_wait_sum_ms += (now - entry.enqueued_ms) * f64::from(entry.items);
                self.server_head += 1;
            }
            let count = (self.server_head - first) as u32;
            let cost = self.cost_ms(items);
            self.free_workers -= 1;
            self.executions += 1;
            self.push(
                now + cost,
                Kind::ExecutionDone {
                    first: first as u32,
                    count,
                },
            );
        }
    }

    fn cost_ms(&mut self, items: u32) -> f64 {
        let nominal = self.server.base_ms + self.server.per_item_ms * f64::from(items);
        let z = self.standard_normal();
        let ms = nominal * (self.server.sigma * z).exp();
        if ms.is_finite() && ms >= 0.0 {
            ms
        } else {
            nominal.max(0.0)
        }
    }

    /// Box-Muller from the one stream, as stub-server's cost model draws.
    fn standard_normal(&mut self) -> f64 {
        self.rng.standard_normal(&mut self.spare_normal)
    }

    fn execution_done(&mut self, first: u32, count: u32, now: f64) {
        self.free_workers += 1;
        for e in first..first + count {
            let http = self.entries[e as usize].http as usize;
            self.https[http].chunks_left -= 1;
            if self.https[http].chunks_left == 0 {
                self.respond(http, now);
            }
        }
        self.request_dispatch(now);
    }

    /// The HTTP request's response: its logical requests complete.
    fn respond(&mut self, http: usize, now: f64) {
        let Http { first, count, .. } = self.https[http];
        for id in first..first + count {
            let id = id as usize;
            self.latencies_ms[id] = now - self.enqueued_ms[id];
        }
        self.completed += count;
        if self.first_done_ms.is_nan() {
            self.first_done_ms = now;
        }
        self.last_done_ms = now;
        if self.closed_loop {
            // Each worker whose request completed issues its next one.
            for _ in 0..count {
                if self.issued < self.requests {
                    self.issue(now);
                }
            }
        }
    }

    fn outcome(self) -> SimOutcome {
        let n = self.completed as usize;
        let mut latencies_ms = self.latencies_ms;
        latencies_ms.truncate(self.issued as usize);
        if n == 0 {
            return SimOutcome {
                latencies_ms,
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                mean_ms: 0.0,
                throughput_rps: 0.0,
                completion_rate_rps: 0.0,
                makespan_ms: 0.0,
                server_queue_ms_mean: 0.0,
                executions: self.executions,
            };
        }
        let mut sorted = latencies_ms.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let q = |p: f64| stats::quantile(&sorted, p, QuantileMethod::Linear).unwrap_or(f64::NAN);
        let makespan_ms = self.last_done_ms;
        let completion_span_ms = self.last_done_ms - self.first_done_ms;
        SimOutcome {
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            mean_ms: sorted.iter().sum::<f64>() / n as f64,
            throughput_rps: if makespan_ms > 0.0 {
                n as f64 * 1000.0 / makespan_ms
            } else {
                0.0
            },
            completion_rate_rps: if completion_span_ms > 0.0 && n > 1 {
                (n - 1) as f64 * 1000.0 / completion_span_ms
            } else {
                f64::INFINITY
            },
            makespan_ms,
            server_queue_ms_mean: self.queue_wait_sum_ms / n as f64,
            executions: self.executions,
            latencies_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(workers: usize, base_ms: f64, per_item_ms: f64) -> ServerModel {
        ServerModel {
            workers,
            base_ms,
            per_item_ms,
            sigma: 0.0,
            max_batch: 32,
            dynamic_batching_window_ms: None,
        }
    }

    fn unbatched() -> ClientModel<'static> {
        ClientModel {
            batch_size: 1,
            batch_wait_ms: 0.0,
            overhead_ms: &[],
        }
    }

    fn closed(concurrency: u32, requests: u32) -> Load {
        Load::Closed {
            concurrency,
            requests,
        }
    }

    fn assert_all(latencies: &[f64], expected: f64) {
        for (i, l) in latencies.iter().enumerate() {
            assert!(
                (l - expected).abs() < 1e-9,
                "request {i}: {l} != {expected}"
            );
        }
    }

    #[test]
    fn one_worker_one_client_waits_only_for_service() {
        let o = simulate(&server(1, 100.0, 2.0), &unbatched(), &closed(1, 50), 1);
        assert_eq!(o.latencies_ms.len(), 50);
        assert_all(&o.latencies_ms, 102.0);
        assert!((o.p95_ms - 102.0).abs() < 1e-9 && (o.mean_ms - 102.0).abs() < 1e-9);
        assert!((o.makespan_ms - 5100.0).abs() < 1e-6);
        assert!((o.throughput_rps - 50.0 * 1000.0 / 5100.0).abs() < 1e-9);
        assert_eq!(o.executions, 50);
    }

    #[test]
    fn three_clients_one_worker_wait_for_each_other() {
        let o = simulate(&server(1, 100.0, 2.0), &unbatched(), &closed(3, 30), 1);
        // First round: 1, 2 and 3 services; then each waits for the two ahead.
        assert_all(&o.latencies_ms[..1], 102.0);
        assert_all(&o.latencies_ms[1..2], 204.0);
        assert_all(&o.latencies_ms[2..], 306.0);
    }

    #[test]
    fn two_workers_two_clients_never_queue() {
        let o = simulate(&server(2, 100.0, 2.0), &unbatched(), &closed(2, 40), 1);
        assert_all(&o.latencies_ms, 102.0);
        assert_eq!(o.server_queue_ms_mean, 0.0);
    }

    #[test]
    fn client_batches_of_four_without_wait() {
        // Eight clients, B=4, W=0, one worker; a batch of 4 costs 108 ms.
        // t=0: two batches leave; the first runs 0-108, the second 108-216.
        // At 108 the first four clients send again: that batch runs 216-324,
        // 216 ms after they sent it; every later batch also waits one ahead.
        let client = ClientModel {
            batch_size: 4,
            batch_wait_ms: 0.0,
            overhead_ms: &[],
        };
        let o = simulate(&server(1, 100.0, 2.0), &client, &closed(8, 32), 1);
        assert_all(&o.latencies_ms[..4], 108.0);
        assert_all(&o.latencies_ms[4..], 216.0);
        assert_eq!(o.executions, 8);
    }

    #[test]
    fn a_batch_waits_for_its_deadline_when_it_cannot_fill() {
        // Two clients, B=4, W=5: the pair leaves at 5 ms and costs 104 ms.
        let client = ClientModel {
            batch_size: 4,
            batch_wait_ms: 5.0,
            overhead_ms: &[],
        };
        let o = simulate(&server(1, 100.0, 2.0), &client, &closed(2, 20), 1);
        assert_all(&o.latencies_ms, 109.0);
    }

    #[test]
    fn requests_over_max_batch_are_split_into_chunks() {
        // B=8 against max_batch 4: two chunks of 108 ms, one after the other.
        let client = ClientModel {
            batch_size: 8,
            batch_wait_ms: 0.0,
            overhead_ms: &[],
        };
        let s = ServerModel {
            max_batch: 4,
            ..server(1, 100.0, 2.0)
        };
        let o = simulate(&s, &client, &closed(8, 24), 1);
        assert_all(&o.latencies_ms, 216.0);
        assert_eq!(o.executions, 6);
    }

    #[test]
    fn overhead_is_added_before_the_server() {
        let client = ClientModel {
            batch_size: 1,
            batch_wait_ms: 0.0,
            overhead_ms: &[3.0],
        };
        let o = simulate(&server(1, 100.0, 2.0), &client, &closed(1, 10), 1);
        assert_all(&o.latencies_ms, 105.0);
    }

    #[test]
    fn dynamic_batching_gathers_within_the_window() {
        // One worker, window 10 ms, max batch 4, arrivals every 4 ms:
        // t=10: {0,1,2} (arrived 0, 4, 8) runs 10-116 (106 ms);
        // t=116: 3..7 queued, 4 fill a batch: {3,4,5,6} runs 116-224;
        // t=224: {7} (arrived 28) has waited past its window: 224-326.
        let s = ServerModel {
            max_batch: 4,
            dynamic_batching_window_ms: Some(10.0),
            ..server(1, 100.0, 2.0)
        };
        let load = Load::Open {
            rate_rps: 250.0,
            requests: 8,
            poisson: false,
        };
        let o = simulate(&s, &unbatched(), &load, 1);
        let expected = [116.0, 112.0, 108.0, 212.0, 208.0, 204.0, 200.0, 298.0];
        for (got, want) in o.latencies_ms.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{:?}", o.latencies_ms);
        }
        assert_eq!(o.executions, 3);
    }

    #[test]
    fn dynamic_batching_leaves_at_once_when_full() {
        // Four clients at t=0, max batch 4, window 50: one batch at once.
        let s = ServerModel {
            max_batch: 4,
            dynamic_batching_window_ms: Some(50.0),
            ..server(1, 100.0, 2.0)
        };
        let o = simulate(&s, &unbatched(), &closed(4, 4), 1);
        assert_all(&o.latencies_ms, 108.0);
    }

    fn md1_wait(rho: f64) -> (f64, f64) {
        let s_ms = 10.0;
        let load = Load::Open {
            rate_rps: rho / s_ms * 1000.0,
            requests: 200_000,
            poisson: true,
        };
        let o = simulate(&server(1, s_ms, 0.0), &unbatched(), &load, 7);
        (o.server_queue_ms_mean, rho * s_ms / (2.0 * (1.0 - rho)))
    }

    #[test]
    fn poisson_arrivals_match_m_d_1_queue_wait() {
        for rho in [0.5, 0.8] {
            let (simulated, theory) = md1_wait(rho);
            assert!(
                (simulated / theory - 1.0).abs() < 0.03,
                "rho {rho}: {simulated} vs {theory}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let s = ServerModel {
            sigma: 0.1,
            ..server(2, 100.0, 2.0)
        };
        let client = ClientModel {
            batch_size: 3,
            batch_wait_ms: 2.0,
            overhead_ms: &[0.5, 1.0, 2.5],
        };
        let a = simulate(&s, &client, &closed(20, 400), 42);
        let b = simulate(&s, &client, &closed(20, 400), 42);
        let c = simulate(&s, &client, &closed(20, 400), 43);
        assert_eq!(a, b);
        assert_ne!(a.latencies_ms, c.latencies_ms);
    }

    #[test]
    fn a_hundred_thousand_requests_complete() {
        let s = ServerModel {
            sigma: 0.1,
            ..server(2, 100.0, 2.0)
        };
        let client = ClientModel {
            batch_size: 10,
            batch_wait_ms: 5.0,
            overhead_ms: &[0.5, 1.0],
        };
        let o = simulate(&s, &client, &closed(20, 100_000), 1);
        assert_eq!(o.latencies_ms.len(), 100_000);
        assert!(o.latencies_ms.iter().all(|l| l.is_finite() && *l > 0.0));
        assert!(o.p50_ms <= o.p95_ms && o.p95_ms <= o.p99_ms);
    }

    #[test]
    fn constant_open_loop_below_capacity_never_queues() {
        let load = Load::Open {
            rate_rps: 5.0,
            requests: 100,
            poisson: false,
        };
        let o = simulate(&server(1, 100.0, 2.0), &unbatched(), &load, 1);
        assert_all(&o.latencies_ms, 102.0);
        assert!((o.completion_rate_rps - 5.0).abs() < 1e-9);
    }
}
