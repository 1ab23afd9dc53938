//! A seeded discrete-event simulation of loadgen against a
//! continuous-batching LLM server: stub-server's step loop, step for step.
//!
//! # The server
//!
//! Each replica runs one step loop. A step first gives each running
//! sequence that decodes its one token, then prompt tokens to the running
//! sequences still prefilling (chunked prefill, oldest first), then admits
//! waiting sequences while fewer than `max_num_seqs` run, each with a chunk
//! of what is left of the budget of `max_batched_tokens`. It costs
//! `base + per_seq x running + prefill_per_token x prefilled tokens +
//! attention x (tokens computed / 1000) x (tokens of context of the
//! running / 1000) + kv x (tokens of context of the running / 1000) + join
//! x prompts whose prefill it ends + over_pass x (tokens computed beyond
//! the server's pass / 1000)`, the tokens computed being the prefilled
//! ones and one per decode, times a draw of the spread: a
//! measured step's observed over fitted cost, drawn from the steps that
//! prefilled for a step that prefills and from the others for one that
//! does not (else a log-normal draw of `sigma`); at its end every sequence whose
//! prompt is done emits one token. A prompt's leading blocks found
//! in the prefix cache (LRU, chained over the blocks before, so only true
//! prefixes hit) cost nothing, its last token always computed; the KV
//! capacity, in blocks, preempts the newest running sequence when a
//! running one needs a block and none is free: it goes back to the front
//! of the queue and recomputes its prompt and the tokens it had. A step
//! that preempted admits no one. With chunked prefill off, a step that can
//! admit a prompt prefills whole prompts only and decodes nothing (vLLM's
//! scheduler without chunking); the next step decodes.
//!
//! An idle replica starts a step as a request arrives (after `intake_ms`,
//! the time its loop takes to wake, gathering whoever arrived meanwhile);
//! a busy one takes arrivals at its next step, so requests that arrive
//! together join together. Several replicas sit behind a balancer that sends each request
//! to the replica with the fewest outstanding, ties to the first.
//!
//! # The client
//!
//! A closed loop of `concurrency` workers or an open loop at a rate
//! (constant or Poisson gaps), each request reaching the server after a
//! client overhead drawn from measured samples, its tokens read after the
//! step's end plus a read delay drawn from measured deviations. With a cap
//! on streams in flight, the others wait at the client in order; every
//! latency counts from the request's intended start.
//!
//! A closed loop's workers do not start at one instant: loadgen starts
//! them one after another, a tenth of a millisecond or so apart, so the
//! idle server's first step takes only the earliest of their first
//! requests and the others join the next one. With more workers than
//! slots the server never idles again, so that first split lasts the
//! whole run: some steps prefill a prompt beside the others' decodes.
//! Started all at once, the slots would instead run in lockstep, every
//! prefill in a step of its own. So the first starts are the measured
//! ones, replayed.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use model::whatif::Load;
use stats::SplitMix64;

use crate::whatif::events::EventQueue;

/// Fewest measured ratios to draw a step's spread from; with fewer, the
/// log-normal of `sigma`.
pub(crate) const MIN_RATIOS: usize = 20;

/// What one step costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepCost<'a> {
    /// Fixed cost of a step, ms.
    pub base_ms: f64,
    /// Cost per sequence in the step, ms.
    pub per_seq_ms: f64,
    /// Cost per prompt token prefilled, ms.
    pub prefill_per_token_ms: f64,
    /// Cost of the tokens the step computes times the context of its
    /// sequences, ms per (1,000 tokens x 1,000 tokens).
    pub attention_ms: f64,
    /// Cost per 1,000 tokens of context of the step's sequences, ms.
    pub kv_ms: f64,
    /// Cost per prompt whose prefill the step ends, ms.
    pub join_ms: f64,
    /// Standard deviation of the log-normal multiplier (0: exact).
    pub sigma: f64,
    /// Share of steps that stall (0: none).
    pub stall_share: f64,
    /// What a stall adds, ms: one drawn per stalled step.
    pub stalls_ms: &'a [f64],
    /// Tokens the server computes in one pass (`usize::MAX`: no limit).
    pub pass_tokens: usize,
    /// Cost per 1,000 tokens a step computes beyond its pass, ms.
    pub over_pass_ms: f64,
    /// Observed over fitted, of the measured steps that prefilled
    /// nothing: a decode step's cost is its nominal times one drawn.
    pub decode_ratios: &'a [f64],
    /// The same of the measured steps that prefilled, for a step that
    /// prefills.
    pub prefill_ratios: &'a [f64],
}

/// The scheduler's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scheduler {
    /// Sequence slots (at least 1 is simulated).
    pub max_num_seqs: usize,
    /// Tokens per step; `usize::MAX`: no limit.
    pub max_batched_tokens: usize,
    /// Chunked prefill.
    pub chunked_prefill: bool,
    /// Tokens per KV block (at least 1).
    pub kv_block_tokens: usize,
    /// KV capacity in blocks; `None`: unlimited.
    pub kv_capacity_blocks: Option<usize>,
    /// Blocks the prefix cache holds (0: none).
    pub prefix_cache_blocks: usize,
    /// An idle replica starts its step this long after a request arrives,
    /// with every request that arrived meanwhile (the time its loop takes
    /// to wake), ms.
    pub intake_ms: f64,
}

/// The server: its step cost, its scheduler, and how many copies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LlmServer<'a> {
    /// What a step costs.
    pub cost: StepCost<'a>,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Copies behind the balancer (at least 1 is simulated).
    pub replicas: usize,
}

/// One request of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SimRequest {
    /// Prompt tokens (at least 1 is simulated).
    pub prompt_tokens: u32,
    /// Answer tokens (at least 1 is simulated).
    pub output_tokens: u32,
    /// A prefix this prompt shares with others (a conversation): its id.
    pub prefix_group: Option<u64>,
    /// How many of the prompt's first tokens are that shared prefix.
    pub shared_prefix_tokens: u32,
}

/// The client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Client<'a> {
    /// Overhead samples, ms: one drawn per request, added before it
    /// reaches the server (empty: none).
    pub overhead_ms: &'a [f64],
    /// Read-delay deviations, ms: one drawn per token, added to the
    /// step's end (empty: none).
    pub read_jitter_ms: &'a [f64],
    /// Streams in flight at most; the others wait at the client.
    pub max_in_flight: Option<usize>,
    /// An open loop's intended starts, ms from the first (a measured run's,
    /// replayed); the requests beyond them follow at the load's rate.
    pub schedule_ms: &'a [f64],
    /// A closed loop's workers' first intended starts, ms from the first
    /// (a measured run's, replayed): loadgen starts its workers one after
    /// another, so their first requests reach an idle server spread over
    /// a fraction of a millisecond, and only the earliest join its first
    /// step. Workers beyond them follow at their mean spacing; empty: all
    /// start at once.
    pub first_starts_ms: &'a [f64],
    /// How far each closed-loop worker's first request may reach the
    /// server after its start, ms: a uniform draw per worker from the
    /// run's seed, added to its client overhead (its latencies still count
    /// from the start), so point runs differ in which requests an idle
    /// server's first step takes (0: none).
    pub first_jitter_ms: f64,
}

/// What one request measured, as loadgen would log it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestOutcome {
    /// The intended start, ms from the run's start.
    pub start_ms: f64,
    /// From the intended start to the first token read, ms.
    pub ttft_ms: f64,
    /// Gaps between tokens read, ms.
    pub itl_ms: Vec<f64>,
    /// From the intended start to the last token read, ms.
    pub e2e_ms: f64,
    /// Arrival at the server to its first admission, ms.
    pub server_queue_ms: f64,
}

impl RequestOutcome {
    /// `(e2e - ttft) / (tokens - 1)`; `None` under two tokens.
    pub(crate) fn tpot_ms(&self) -> Option<f64> {
        (!self.itl_ms.is_empty()).then(|| (self.e2e_ms - self.ttft_ms) / self.itl_ms.len() as f64)
    }
}

/// What one simulated run gives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Every request, in issue order.
    pub requests: Vec<RequestOutcome>,
    /// Steps run, over all replicas.
    pub steps: u64,
    /// Preemptions, over all replicas.
    pub preemptions: u64,
    /// Prompt tokens looked up in the prefix cache, and of those found.
    pub prefix_queries: u64,
    /// See `prefix_queries`.
    pub prefix_hits: u64,
    /// From the first issue to the last token read, ms.
    pub makespan_ms: f64,
}

impl Outcome {
    /// Requests per second over the run.
    pub(crate) fn throughput_rps(&self) -> f64 {
        if self.makespan_ms > 0.0 {
            self.requests.len() as f64 * 1000.0 / self.makespan_ms
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Open loop: the next request's intended start, and the one after
    /// it planned.
    Issue,
    /// Closed loop: a worker's next request.
    NextOfWorker,
    /// A request reaches its replica.
    Arrival { seq: u32 },
    /// A replica's step ends.
    StepEnd { replica: u32 },
    /// A replica plans its next step (after the arrivals of the instant).
    Schedule { replica: u32 },
}

impl Kind {
    fn class(self) -> u8 {
        match self {
            Kind::Issue | Kind::NextOfWorker | Kind::Arrival { .. } => 0,
            Kind::StepEnd { .. } => 1,
            Kind::Schedule { .. } => 2,
        }
    }
}

/// A sequence: one request on the server.
struct Seq {
    prompt: usize,
    output: usize,
    /// Chained hashes of the prompt's full blocks (only with a prefix cache).
    hashes: Vec<u64>,
    emitted: usize,
    target: usize,
    prefilled: usize,
    fresh: bool,
    kv_blocks: usize,
    /// In the current step's batch (emits at its end when decoding).
    in_step: bool,
    intended_ms: f64,
    arrived_ms: f64,
    admitted_ms: Option<f64>,
    read_ms: Vec<f64>,
    replica: usize,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.prefilled == self.target
    }
}

struct Replica {
    waiting: VecDeque<usize>,
    running: Vec<usize>,
    used_blocks: usize,
    cache: Option<lru::LruCache<u64, ()>>,
    busy: bool,
    schedule_pending: bool,
    outstanding: usize,
}

struct Sim<'a> {
    server: LlmServer<'a>,
    client: Client<'a>,
    workload: &'a [SimRequest],
    rng: SplitMix64,
    spare_normal: Option<f64>,
    events: EventQueue<Kind>,
    requests: u32,
    issued: u32,
    seqs: Vec<Seq>,
    replicas: Vec<Replica>,
    in_flight: usize,
    client_queue: VecDeque<usize>,
    closed_loop: bool,
    steps: u64,
    preemptions: u64,
    prefix_queries: u64,
    prefix_hits: u64,
    last_read_ms: f64,
    /// A closed loop's workers' first requests: how late each reaches the
    /// server, ms (see [`Client::first_jitter_ms`]); empty without jitter.
    first_late_ms: Vec<f64>,
}

/// Runs one simulation of `load` over `workload` (request `i` is
/// `workload[i % len]`); the same arguments and seed give the same outcome.
/// Out-of-range values are clamped (at least one slot, replica, block
/// token, prompt and answer token), so a noisy refit can always be run.
pub(crate) fn simulate(
    server: &LlmServer<'_>,
    client: &Client,
    workload: &[SimRequest],
    load: &Load,
    seed: u64,
) -> Outcome {
    let mut server = *server;
    server.replicas = server.replicas.max(1);
    server.scheduler.max_num_seqs = server.scheduler.max_num_seqs.max(1);
    server.scheduler.kv_block_tokens = server.scheduler.kv_block_tokens.max(1);
    let requests = if workload.is_empty() {
        0
    } else {
        load.requests()
    };
    let cache = NonZeroUsize::new(server.scheduler.prefix_cache_blocks);
    let mut sim = Sim {
        server,
        client: *client,
        workload,
        rng: SplitMix64::new(seed),
        spare_normal: None,
        events: EventQueue::new(),
        requests,
        issued: 0,
        seqs: Vec::with_capacity(requests as usize),
        replicas: (0..server.replicas)
            .map(|_| Replica {
                waiting: VecDeque::new(),
                running: Vec::new(),
                used_blocks: 0,
                cache: cache.map(lru::LruCache::new),
                busy: false,
                schedule_pending: false,
                outstanding: 0,
            })
            .collect(),
        in_flight: 0,
        client_queue: VecDeque::new(),
        closed_loop: matches!(load, Load::Closed { .. }),
        steps: 0,
        preemptions: 0,
        prefix_queries: 0,
        prefix_hits: 0,
        last_read_ms: 0.0,
        first_late_ms: Vec::new(),
    };
    let (gap_ms, poisson) = match *load {
        Load::Closed { concurrency, .. } => {
            for worker in 0..concurrency.min(requests) {
                let at = first_start_ms(client.first_starts_ms, worker as usize);
                sim.push(at, Kind::NextOfWorker);
                if client.first_jitter_ms > 0.0 {
                    let late = sim.rng.unit_open_closed() * client.first_jitter_ms;
                    sim.first_late_ms.push(late);
                }
            }
            (f64::INFINITY, false)
        }
        Load::Open {
            rate_rps, poisson, ..
        } => {
            if requests > 0 && rate_rps.is_finite() && rate_rps > 0.0 {
                sim.push(0.0, Kind::Issue);
            }
            (1000.0 / rate_rps, poisson)
        }
    };
    sim.run(gap_ms, poisson);
    sim.outcome()
}

/// When closed-loop worker `worker` sends its first request, ms: its
/// measured start, or beyond them the last one plus their mean spacing
/// for each worker more; 0 without any.
fn first_start_ms(starts_ms: &[f64], worker: usize) -> f64 {
    let finite = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    match starts_ms {
        [] => 0.0,
        _ if worker < starts_ms.len() => finite(starts_ms[worker]),
        [only] => finite(*only),
        [first, .., last] => {
            let spacing = finite((last - first) / (starts_ms.len() - 1) as f64);
            finite(*last) + spacing * (worker + 1 - starts_ms.len()) as f64
        }
    }
}

/// A 64-bit mix of two numbers (SplitMix64's finaliser), for block ids.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sim<'_> {
    fn push(&mut self, at_ms: f64, kind: Kind) {
        self.events.push(at_ms, kind.class(), kind);
    }

    fn run(&mut self, gap_ms: f64, poisson: bool) {
        while let Some((now, kind)) = self.events.pop() {
            match kind {
                Kind::Issue => {
                    self.issue(now);
                    if self.issued < self.requests {
                        let i = self.issued as usize;
                        let next = if let Some(&at) = self.client.schedule_ms.get(i) {
                            at.max(now)
                        } else if poisson {
                            now - self.rng.unit_open_closed().ln() * gap_ms
                        } else if self.client.schedule_ms.is_empty() {
                            f64::from(self.issued) * gap_ms
                        } else {
                            now + gap_ms
                        };
                        self.push(next, Kind::Issue);
                    }
                }
                Kind::NextOfWorker => {
                    if self.issued < self.requests {
                        self.issue(now);
                    }
                }
                Kind::Arrival { seq } => {
                    let seq = seq as usize;
                    self.seqs[seq].arrived_ms = now;
                    let r = self.seqs[seq].replica;
                    self.replicas[r].waiting.push_back(seq);
                    if !self.replicas[r].busy {
                        let intake = self.server.scheduler.intake_ms.max(0.0);
                        self.request_schedule(r, now + intake);
                    }
                }
                Kind::StepEnd { replica } => {
                    let r = replica as usize;
                    self.complete(r, now);
                    self.replicas[r].busy = false;
                    self.request_schedule(r, now);
                }
                Kind::Schedule { replica } => {
                    let r = replica as usize;
                    self.replicas[r].schedule_pending = false;
                    if !self.replicas[r].busy {
                        self.start_step(r, now);
                    }
                }
            }
        }
    }

    fn request_schedule(&mut self, r: usize, now: f64) {
        if !self.replicas[r].schedule_pending {
            self.replicas[r].schedule_pending = true;
            self.push(now, Kind::Schedule { replica: r as u32 });
        }
    }

    /// A request's intended start at `now`: sent at once, or queued at
    /// the client behind its cap.
    fn issue(&mut self, now: f64) {
        let i = self.issued as usize;
        self.issued += 1;
        let request = self.workload[i % self.workload.len()];
        let prompt = request.prompt_tokens.max(1) as usize;
        let hashes = if self.server.scheduler.prefix_cache_blocks > 0 {
            let block = self.server.scheduler.kv_block_tokens;
            let shared = match request.prefix_group {
                Some(_) => (request.shared_prefix_tokens as usize).min(prompt) / block,
                None => 0,
            };
            let group = request.prefix_group.unwrap_or(0);
            // Chained: a block's identity is its prefix's, so the blocks
            // after a private one never match another prompt's.
            (0..prompt / block)
                .map(|j| {
                    if j < shared {
                        mix(mix(group, 0x5eed), j as u64)
                    } else {
                        mix(mix(i as u64, 0xfeed), j as u64)
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        self.seqs.push(Seq {
            prompt,
            output: request.output_tokens.max(1) as usize,
            hashes,
            emitted: 0,
            target: prompt,
            prefilled: 0,
            fresh: true,
            kv_blocks: 0,
            in_step: false,
            intended_ms: now,
            arrived_ms: f64::NAN,
            admitted_ms: None,
            read_ms: Vec::with_capacity(request.output_tokens.max(1) as usize),
            replica: 0,
        });
        let capped = self
            .client
            .max_in_flight
            .is_some_and(|k| self.in_flight >= k);
        if capped {
            self.client_queue.push_back(i);
        } else {
            self.send(i, now);
        }
    }

    /// Sends request `seq` at `now` to the replica with the fewest
    /// outstanding.
    fn send(&mut self, seq: usize, now: f64) {
        self.in_flight += 1;
        let r = (0..self.replicas.len())
            .min_by_key(|&r| (self.replicas[r].outstanding, r))
            .unwrap_or(0);
        self.replicas[r].outstanding += 1;
        self.seqs[seq].replica = r;
        let overhead = self.draw(self.client.overhead_ms);
        // The workers' first requests are the first issued.
        let late = self.first_late_ms.get(seq).copied().unwrap_or(0.0);
        self.push(now + overhead + late, Kind::Arrival { seq: seq as u32 });
    }

    fn draw(&mut self, samples: &[f64]) -> f64 {
        match samples.len() {
            0 => 0.0,
            len => {
                let x = samples[self.rng.index_below(len)];
                if x.is_finite() {
                    x
                } else {
                    0.0
                }
            }
        }
    }

    fn blocks(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.server.scheduler.kv_block_tokens)
    }

    /// Sends replica `r`'s newest running sequence back to the front of
    /// its queue, its blocks freed and its progress lost.
    fn preempt_newest(&mut self, r: usize) {
        if let Some(seq) = self.replicas[r].running.pop() {
            let s = &mut self.seqs[seq];
            self.replicas[r].used_blocks -= s.kv_blocks;
            s.kv_blocks = 0;
            s.prefilled = 0;
            s.in_step = false;
            self.preemptions += 1;
            self.replicas[r].waiting.push_front(seq);
        }
    }

    /// Grows running sequence `index` of replica `r` to `blocks` blocks,
    /// preempting the newest until they fit; false when it was itself
    /// preempted.
    fn reserve(&mut self, r: usize, index: usize, blocks: usize, preempted: &mut bool) -> bool {
        if let Some(capacity) = self.server.scheduler.kv_capacity_blocks {
            loop {
                let mine = self.seqs[self.replicas[r].running[index]].kv_blocks;
                if self.replicas[r].used_blocks - mine + blocks <= capacity {
                    break;
                }
                let was_last = index + 1 == self.replicas[r].running.len();
                self.preempt_newest(r);
                *preempted = true;
                if was_last {
                    return false;
                }
            }
        }
        let seq = self.replicas[r].running[index];
        let rep = &mut self.replicas[r];
        rep.used_blocks = rep.used_blocks - self.seqs[seq].kv_blocks + blocks;
        self.seqs[seq].kv_blocks = blocks;
        true
    }

    /// Plans and starts replica `r`'s step at `now`, if anything runs.
    fn start_step(&mut self, r: usize, now: f64) {
        let Some((batch, prefill_tokens)) = self.plan(r, now) else {
            return;
        };
        let cost = self.server.cost;
        let context = self.context_tokens(r) as f64 / 1000.0;
        let (decodes, joining) = self.decodes_and_joining(r);
        let nominal = cost.base_ms
            + cost.per_seq_ms * batch as f64
            + cost.prefill_per_token_ms * prefill_tokens as f64
            + cost.attention_ms * ((prefill_tokens + decodes) as f64 / 1000.0) * context
            + cost.kv_ms * context
            + cost.join_ms * joining as f64
            + cost.over_pass_ms
                * ((prefill_tokens + decodes).saturating_sub(cost.pass_tokens) as f64 / 1000.0);
        let ratios = if prefill_tokens > 0 {
            cost.prefill_ratios
        } else {
            cost.decode_ratios
        };
        let mut ms = if ratios.len() >= MIN_RATIOS {
            nominal * self.draw(ratios)
        } else {
            let z = self.rng.standard_normal(&mut self.spare_normal);
            nominal * (cost.sigma * z).exp()
        };
        if !(ms.is_finite() && ms >= 0.0) {
            ms = nominal.max(0.0);
        }
        if cost.stall_share > 0.0 && self.rng.unit_open_closed() <= cost.stall_share {
            ms += self.draw(cost.stalls_ms).max(0.0);
        }
        self.steps += 1;
        self.replicas[r].busy = true;
        self.push(now + ms, Kind::StepEnd { replica: r as u32 });
    }

    /// Tokens of context the running sequences of replica `r` hold in
    /// the planned step: a decoding one its prompt and the tokens before
    /// the one it makes, a prefilling one what is prefilled.
    fn context_tokens(&self, r: usize) -> usize {
        self.replicas[r]
            .running
            .iter()
            .map(|&seq| {
                let s = &self.seqs[seq];
                if s.decoding() {
                    s.prompt + s.emitted
                } else {
                    s.prefilled
                }
            })
            .sum()
    }

    /// Sequences of replica `r` in the planned step that decode a token,
    /// and those whose prefill it ends.
    fn decodes_and_joining(&self, r: usize) -> (usize, usize) {
        let mut out = (0, 0);
        for &seq in &self.replicas[r].running {
            let s = &self.seqs[seq];
            if s.in_step && s.decoding() {
                if s.fresh {
                    out.1 += 1;
                } else {
                    out.0 += 1;
                }
            }
        }
        out
    }

    /// The scheduler: who is in the step and how many prompt tokens it
    /// computes; `None` when nothing runs.
    fn plan(&mut self, r: usize, now: f64) -> Option<(usize, usize)> {
        let sched = self.server.scheduler;
        if !sched.chunked_prefill {
            if let Some(planned) = self.plan_whole_prefill(r, now) {
                return Some(planned);
            }
        }
        let mut preempted = false;
        // Decodes first, one token each, oldest first.
        let mut decoding = 0;
        let mut index = 0;
        while index < self.replicas[r].running.len() {
            let seq = self.replicas[r].running[index];
            if self.seqs[seq].decoding() {
                let blocks = self.blocks(self.seqs[seq].prompt + self.seqs[seq].emitted);
                if !self.reserve(r, index, blocks, &mut preempted) {
                    break;
                }
                decoding += 1;
            }
            index += 1;
        }
        // Then prefill chunks of the running, oldest first.
        let mut budget = sched.max_batched_tokens.saturating_sub(decoding);
        let mut prefill_tokens = 0;
        let mut index = 0;
        while index < self.replicas[r].running.len() {
            let seq = self.replicas[r].running[index];
            let s = &self.seqs[seq];
            let chunk = (s.target - s.prefilled).min(budget);
            if chunk > 0 {
                let blocks = self.blocks(s.prefilled + chunk);
                if !self.reserve(r, index, blocks, &mut preempted) {
                    break;
                }
                self.seqs[seq].prefilled += chunk;
                budget -= chunk;
                prefill_tokens += chunk;
            }
            index += 1;
        }
        // Then the waiting, while slots are free and no one was preempted.
        if sched.chunked_prefill {
            while !preempted && self.replicas[r].running.len() < sched.max_num_seqs {
                let Some(&seq) = self.replicas[r].waiting.front() else {
                    break;
                };
                let (hit_blocks, target) = self.lookup(r, seq);
                let hit = hit_blocks * sched.kv_block_tokens;
                let chunk = (target - hit).min(budget);
                let blocks = self.blocks(hit + chunk);
                if !self.fits(r, blocks) {
                    break;
                }
                self.admit(r, seq, hit_blocks, target, hit + chunk, blocks, now);
                budget -= chunk;
                prefill_tokens += chunk;
            }
        }
        let replica = &self.replicas[r];
        for &seq in &replica.running {
            self.seqs[seq].in_step = true;
        }
        (!replica.running.is_empty()).then_some((replica.running.len(), prefill_tokens))
    }

    /// Without chunked prefill: a step that admits whole prompts and
    /// decodes nothing, when any waiting prompt can be admitted (whole,
    /// within the budget, the first one whatever its length when nothing
    /// runs); `None` otherwise (the step decodes).
    fn plan_whole_prefill(&mut self, r: usize, now: f64) -> Option<(usize, usize)> {
        let sched = self.server.scheduler;
        let mut budget = sched.max_batched_tokens;
        let mut prefill_tokens = 0;
        let mut admitted = 0;
        for &seq in &self.replicas[r].running {
            self.seqs[seq].in_step = false;
        }
        while self.replicas[r].running.len() < sched.max_num_seqs {
            let Some(&seq) = self.replicas[r].waiting.front() else {
                break;
            };
            let (hit_blocks, target) = self.lookup(r, seq);
            let need = target - hit_blocks * sched.kv_block_tokens;
            let alone = self.replicas[r].running.is_empty() && admitted == 0;
            if need > budget && !alone {
                break;
            }
            let blocks = self.blocks(target);
            if !self.fits(r, blocks) {
                break;
            }
            self.admit(r, seq, hit_blocks, target, target, blocks, now);
            if let Some(&last) = self.replicas[r].running.last() {
                self.seqs[last].in_step = true;
            }
            budget = budget.saturating_sub(need);
            prefill_tokens += need;
            admitted += 1;
        }
        (admitted > 0).then_some((admitted, prefill_tokens))
    }

    /// The leading cached blocks of waiting `seq` on replica `r` (at least
    /// its last token is computed) and the tokens it must hold.
    fn lookup(&self, r: usize, seq: usize) -> (usize, usize) {
        let s = &self.seqs[seq];
        let target = s.prompt + s.emitted;
        let block = self.server.scheduler.kv_block_tokens;
        let cacheable = ((target - 1) / block).min(s.hashes.len());
        let hits = self.replicas[r].cache.as_ref().map_or(0, |c| {
            s.hashes[..cacheable]
                .iter()
                .take_while(|h| c.contains(h))
                .count()
        });
        (hits, target)
    }

    /// Whether `blocks` more fit the KV capacity; alone a sequence always
    /// fits (the server refuses one that could never).
    fn fits(&self, r: usize, blocks: usize) -> bool {
        let replica = &self.replicas[r];
        match self.server.scheduler.kv_capacity_blocks {
            Some(capacity) => {
                replica.running.is_empty() || replica.used_blocks + blocks <= capacity
            }
            None => true,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        r: usize,
        seq: usize,
        hit_blocks: usize,
        target: usize,
        prefilled: usize,
        blocks: usize,
        now: f64,
    ) {
        self.replicas[r].waiting.pop_front();
        let block = self.server.scheduler.kv_block_tokens;
        if let Some(cache) = &mut self.replicas[r].cache {
            // Last block first, so a prompt's tail is evicted before its head.
            for h in self.seqs[seq].hashes[..hit_blocks].iter().rev() {
                cache.put(*h, ());
            }
            self.prefix_queries += target as u64;
            self.prefix_hits += (hit_blocks * block) as u64;
        }
        let s = &mut self.seqs[seq];
        s.admitted_ms.get_or_insert(now);
        s.target = target;
        s.prefilled = prefilled;
        s.fresh = true;
        s.kv_blocks = blocks;
        self.replicas[r].used_blocks += blocks;
        self.replicas[r].running.push(seq);
    }

    /// Ends replica `r`'s step at `now`: every sequence of the step whose
    /// prompt is done emits one token; finished ones leave.
    fn complete(&mut self, r: usize, now: f64) {
        let running = std::mem::take(&mut self.replicas[r].running);
        let mut still = Vec::with_capacity(running.len());
        for seq in running {
            let (emit, fresh) = {
                let s = &self.seqs[seq];
                (s.in_step && s.decoding(), s.fresh)
            };
            if emit {
                if fresh {
                    self.seqs[seq].fresh = false;
                    if let Some(cache) = &mut self.replicas[r].cache {
                        for h in self.seqs[seq].hashes.iter().rev() {
                            cache.put(*h, ());
                        }
                    }
                }
                if self.seqs[seq].emitted < self.seqs[seq].output {
                    let jitter = self.draw(self.client.read_jitter_ms);
                    let s = &mut self.seqs[seq];
                    let earliest = s.read_ms.last().copied().unwrap_or(f64::NEG_INFINITY);
                    // A stream's tokens are read in order.
                    s.read_ms.push((now + jitter).max(earliest));
                    s.emitted += 1;
                }
            }
            let s = &self.seqs[seq];
            if s.decoding() && s.emitted == s.output {
                self.replicas[r].used_blocks -= s.kv_blocks;
                self.replicas[r].outstanding -= 1;
                // A read drawn before the step's end moves the worker's
                // next request no earlier than now.
                let done_ms = s.read_ms.last().copied().unwrap_or(now).max(now);
                self.finish(done_ms);
            } else {
                still.push(seq);
            }
        }
        self.replicas[r].running = still;
    }

    /// A stream read its last token at `done_ms`: its slot at the client
    /// frees, and a closed loop's worker issues its next request.
    fn finish(&mut self, done_ms: f64) {
        self.last_read_ms = self.last_read_ms.max(done_ms);
        self.in_flight -= 1;
        if let Some(next) = self.client_queue.pop_front() {
            self.send(next, done_ms);
        }
        if self.closed_loop {
            self.push(done_ms, Kind::NextOfWorker);
        }
    }

    fn outcome(self) -> Outcome {
        let requests = self
            .seqs
            .into_iter()
            .map(|s| {
                let first = s.read_ms.first().copied().unwrap_or(f64::NAN);
                let last = s.read_ms.last().copied().unwrap_or(f64::NAN);
                RequestOutcome {
                    start_ms: s.intended_ms,
                    ttft_ms: first - s.intended_ms,
                    itl_ms: s.read_ms.windows(2).map(|w| w[1] - w[0]).collect(),
                    e2e_ms: last - s.intended_ms,
                    server_queue_ms: s.admitted_ms.unwrap_or(f64::NAN) - s.arrived_ms,
                }
            })
            .collect();
        Outcome {
            requests,
            steps: self.steps,
            preemptions: self.preemptions,
            prefix_queries: self.prefix_queries,
            prefix_hits: self.prefix_hits,
            makespan_ms: self.last_read_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMIT: usize = usize::MAX;

    fn server(
        max_num_seqs: usize,
        base_ms: f64,
        per_seq_ms: f64,
        prefill_ms: f64,
    ) -> LlmServer<'static> {
        LlmServer {
            cost: StepCost {
                base_ms,
                per_seq_ms,
                prefill_per_token_ms: prefill_ms,
                attention_ms: 0.0,
                kv_ms: 0.0,
                join_ms: 0.0,
                sigma: 0.0,
                stall_share: 0.0,
                stalls_ms: &[],
                pass_tokens: usize::MAX,
                over_pass_ms: 0.0,
                decode_ratios: &[],
                prefill_ratios: &[],
            },
            scheduler: Scheduler {
                max_num_seqs,
                max_batched_tokens: NO_LIMIT,
                chunked_prefill: true,
                kv_block_tokens: 16,
                kv_capacity_blocks: None,
                prefix_cache_blocks: 0,
                intake_ms: 0.0,
            },
            replicas: 1,
        }
    }

    const CLIENT: Client<'static> = Client {
        overhead_ms: &[],
        read_jitter_ms: &[],
        max_in_flight: None,
        schedule_ms: &[],
        first_starts_ms: &[],
        first_jitter_ms: 0.0,
    };

    fn request(prompt_tokens: u32, output_tokens: u32) -> SimRequest {
        SimRequest {
            prompt_tokens,
            output_tokens,
            prefix_group: None,
            shared_prefix_tokens: 0,
        }
    }

    fn closed(concurrency: u32, requests: u32) -> Load {
        Load::Closed {
            concurrency,
            requests,
        }
    }

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() < 1e-9
    }

    /// TTFT, the gaps and e2e of request `i`.
    fn timeline(o: &Outcome, i: usize) -> (f64, Vec<f64>, f64) {
        let r = &o.requests[i];
        (r.ttft_ms, r.itl_ms.clone(), r.e2e_ms)
    }

    #[test]
    fn one_slot_serves_in_order() {
        // Steps: 6 ms + 1 ms per sequence + 0.5 ms per prompt token; three
        // 4-token prompts of 3 tokens each arrive at 0. A prefill step of
        // one sequence costs 6 + 1 + 2 = 9 ms, a decode step 7 ms: A reads
        // tokens at 9, 16, 23; B is admitted at 23: 32, 39, 46; C at 46:
        // 55, 62, 69.
        let o = simulate(
            &server(1, 6.0, 1.0, 0.5),
            &CLIENT,
            &[request(4, 3)],
            &closed(3, 3),
            1,
        );
        for (i, (ttft, e2e, queue)) in [(9.0, 23.0, 0.0), (32.0, 46.0, 23.0), (55.0, 69.0, 46.0)]
            .into_iter()
            .enumerate()
        {
            let (got_ttft, gaps, got_e2e) = timeline(&o, i);
            assert!(close(got_ttft, ttft) && close(got_e2e, e2e), "{i}: {o:?}");
            assert!(gaps.iter().all(|g| close(*g, 7.0)), "{gaps:?}");
            assert!(close(o.requests[i].server_queue_ms, queue));
            assert!(close(o.requests[i].tpot_ms().unwrap(), 7.0));
        }
        assert_eq!(o.steps, 9);
        assert!(close(o.makespan_ms, 69.0));
    }

    #[test]
    fn a_budget_chunks_a_long_prompt_beside_a_decode() {
        // Budget 8 tokens, steps 10 ms + 1 ms per sequence + 0.5 ms per
        // prompt token. D (2-token prompt, 5 tokens) and A (20-token
        // prompt, 2 tokens) arrive at 0, D first.
        // Step 1: D's 2 tokens and 6 of A's: 10 + 2 + 4 = 16; D reads 1.
        // Steps 2, 3: D decodes, A gets 7 then 7: 10 + 2 + 3.5 = 15.5
        // each; at 47 A's prompt is done: its first token.
        // Step 4: both decode, 12 ms: 59, A's last. Step 5: D alone, 70.
        let mut s = server(4, 10.0, 1.0, 0.5);
        s.scheduler.max_batched_tokens = 8;
        let workload = [request(2, 5), request(20, 2)];
        let o = simulate(&s, &CLIENT, &workload, &closed(2, 2), 1);
        let (ttft, gaps, e2e) = timeline(&o, 0);
        assert!(close(ttft, 16.0) && close(e2e, 70.0), "{o:?}");
        for (g, want) in gaps.iter().zip([15.5, 15.5, 12.0, 11.0]) {
            assert!(close(*g, want), "{gaps:?}");
        }
        let (ttft, gaps, e2e) = timeline(&o, 1);
        assert!(close(ttft, 47.0) && close(e2e, 59.0), "{o:?}");
        assert!(close(gaps[0], 12.0));
        // Without chunked prefill A waits for a step that can take its
        // whole prompt: only once D is done, alone (21 ms), at 56 + 21.
        s.scheduler.chunked_prefill = false;
        let o = simulate(&s, &CLIENT, &workload, &closed(2, 2), 1);
        // D's prompt step alone: 10 + 1 + 1 = 12; then 11 ms decodes.
        let (ttft, gaps, e2e) = timeline(&o, 0);
        assert!(close(ttft, 12.0) && close(e2e, 56.0), "{o:?}");
        assert!(gaps.iter().all(|g| close(*g, 11.0)));
        let (ttft, _, e2e) = timeline(&o, 1);
        assert!(close(ttft, 77.0) && close(e2e, 88.0), "{o:?}");
    }

    #[test]
    fn without_chunking_a_prefill_step_stalls_the_decodes() {
        // Two slots, no budget: D (1-token prompt, 4 tokens) runs; A
        // (10-token prompt) arrives at 15 ms, during D's second step
        // (10-20 ms at 10 ms + 0 per sequence + 1 ms per token, D's prompt
        // step 11 ms: 0-11, 11-21). At 21 the step prefills A alone (10
        // tokens, 20 ms) and D reads nothing: D's next gap is 20 ms.
        let mut s = server(2, 10.0, 0.0, 1.0);
        s.scheduler.chunked_prefill = false;
        let load = Load::Open {
            rate_rps: 1000.0 / 15.0,
            requests: 2,
            poisson: false,
        };
        let o = simulate(&s, &CLIENT, &[request(1, 4), request(10, 2)], &load, 1);
        let (ttft, gaps, _) = timeline(&o, 0);
        assert!(close(ttft, 11.0), "{o:?}");
        for (g, want) in gaps.iter().zip([10.0, 30.0, 10.0]) {
            assert!(close(*g, want), "{gaps:?}");
        }
        // A: intended at 15, first token at 41, next at 51.
        let (ttft, gaps, _) = timeline(&o, 1);
        assert!(close(ttft, 26.0) && close(gaps[0], 10.0), "{o:?}");
        // With chunking, A joins D's step at 21: 10 + 10 = 20 ms, D reads
        // at 41 too: the same gap, but A's first token and D's token share
        // that step.
        s.scheduler.chunked_prefill = true;
        let o = simulate(&s, &CLIENT, &[request(1, 4), request(10, 2)], &load, 1);
        let (_, gaps, _) = timeline(&o, 0);
        for (g, want) in gaps.iter().zip([10.0, 20.0, 10.0]) {
            assert!(close(*g, want), "{gaps:?}");
        }
    }

    #[test]
    fn a_full_kv_cache_preempts_the_newest_which_recomputes() {
        // stub-server's own case: 4 blocks of 4 tokens; two sequences of
        // 4 prompt tokens and 8 answer tokens; 10 ms a step. Both read
        // tokens 1-5 at 10..50; at step 6 the older needs a third block
        // and the newer is preempted; the older reads 6-8 at 60..80; the
        // newer comes back alone at step 9, recomputes 9 tokens and reads
        // 6-8 at 90, 100, 110.
        let mut s = server(8, 10.0, 0.0, 0.0);
        s.scheduler.kv_block_tokens = 4;
        s.scheduler.kv_capacity_blocks = Some(4);
        let o = simulate(&s, &CLIENT, &[request(4, 8)], &closed(2, 2), 1);
        assert_eq!(o.preemptions, 1);
        let (ttft, gaps, e2e) = timeline(&o, 0);
        assert!(close(ttft, 10.0) && close(e2e, 80.0), "{o:?}");
        assert!(gaps.iter().all(|g| close(*g, 10.0)));
        let (ttft, gaps, e2e) = timeline(&o, 1);
        assert!(close(ttft, 10.0) && close(e2e, 110.0), "{o:?}");
        for (g, want) in gaps.iter().zip([10.0, 10.0, 10.0, 10.0, 40.0, 10.0, 10.0]) {
            assert!(close(*g, want), "{gaps:?}");
        }
        assert_eq!(o.steps, 11);
    }

    #[test]
    fn a_shared_prefix_is_prefilled_once() {
        // One slot, 1 ms per prompt token, nothing else: two 48-token
        // prompts whose first 32 tokens (2 blocks) are one conversation.
        // The first prefills 48 (48 ms), the second 16.
        let mut s = server(1, 0.0, 0.0, 1.0);
        s.scheduler.prefix_cache_blocks = 100;
        let shared = SimRequest {
            prefix_group: Some(7),
            shared_prefix_tokens: 32,
            ..request(48, 1)
        };
        let o = simulate(&s, &CLIENT, &[shared], &closed(1, 2), 1);
        assert!(close(o.requests[0].ttft_ms, 48.0), "{o:?}");
        assert!(close(o.requests[1].ttft_ms, 16.0), "{o:?}");
        assert_eq!((o.prefix_queries, o.prefix_hits), (96, 32));
        // Without a group nothing is shared.
        let o = simulate(&s, &CLIENT, &[request(48, 1)], &closed(1, 2), 1);
        assert!(close(o.requests[1].ttft_ms, 48.0));
    }

    #[test]
    fn a_client_cap_waits_at_the_client_and_counts_from_the_intended_start() {
        // One slot would give the second stream TTFT 2 steps; a cap of 1
        // at the client gives the same, the wait now the client's, and the
        // server queue empty.
        let capped = Client {
            max_in_flight: Some(1),
            ..CLIENT
        };
        let o = simulate(
            &server(4, 10.0, 0.0, 0.0),
            &capped,
            &[request(1, 2)],
            &closed(2, 2),
            1,
        );
        assert!(close(o.requests[1].ttft_ms, 30.0), "{o:?}");
        assert!(close(o.requests[1].server_queue_ms, 0.0));
        // Uncapped, four slots: both in the first step.
        let o = simulate(
            &server(4, 10.0, 0.0, 0.0),
            &CLIENT,
            &[request(1, 2)],
            &closed(2, 2),
            1,
        );
        assert!(close(o.requests[1].ttft_ms, 10.0));
    }

    #[test]
    fn an_idle_server_gathers_what_arrives_while_it_wakes() {
        // Two requests 0.03 ms apart at an idle server, 10 ms a step.
        let load = Load::Open {
            rate_rps: 1000.0 / 0.03,
            requests: 2,
            poisson: false,
        };
        let mut s = server(4, 10.0, 0.0, 0.0);
        // Without an intake the first starts a step alone, the second
        // waits for the next: 20 ms less its 0.03.
        let o = simulate(&s, &CLIENT, &[request(1, 1)], &load, 1);
        assert!(close(o.requests[0].ttft_ms, 10.0), "{o:?}");
        assert!(close(o.requests[1].ttft_ms, 19.97), "{o:?}");
        // With 0.05 ms the step starts at 0.05 with both.
        s.scheduler.intake_ms = 0.05;
        let o = simulate(&s, &CLIENT, &[request(1, 1)], &load, 1);
        assert!(close(o.requests[0].ttft_ms, 10.05), "{o:?}");
        assert!(close(o.requests[1].ttft_ms, 10.02), "{o:?}");
    }

    #[test]
    fn a_closed_loops_staggered_first_starts_split_its_first_step() {
        // Two workers, two slots, 10-token prompts of 3 answer tokens;
        // steps 10 ms + 1 ms per prompt token; the idle server gathers for
        // 0.05 ms. All at once, both prompts share the first step (10 + 20
        // = 30 ms) and the two run in lockstep: TTFT 30.05, gaps 10, 10.
        let mut s = server(2, 10.0, 0.0, 1.0);
        s.scheduler.intake_ms = 0.05;
        let workload = [request(10, 3)];
        let o = simulate(&s, &CLIENT, &workload, &closed(2, 2), 1);
        for i in 0..2 {
            let (ttft, gaps, _) = timeline(&o, i);
            assert!(close(ttft, 30.05), "{o:?}");
            assert!(gaps.iter().all(|g| close(*g, 10.0)), "{gaps:?}");
        }
        // The second worker starting 0.2 ms after the first, as loadgen's
        // do: A's step runs alone, 0.05 to 20.05 (10 + 10); B, arrived
        // meanwhile, is prefilled in the next step beside A's decode
        // (20.05 to 40.05): A's gap is that whole step, 20 ms. Then 10 ms
        // steps: A's last token at 50.05, B's at 50.05 and 60.05.
        let staggered = Client {
            first_starts_ms: &[0.0, 0.2],
            ..CLIENT
        };
        let o = simulate(&s, &staggered, &workload, &closed(2, 2), 1);
        let starts: Vec<f64> = o.requests.iter().map(|r| r.start_ms).collect();
        assert_eq!(starts, [0.0, 0.2]);
        let (ttft, gaps, e2e) = timeline(&o, 0);
        assert!(close(ttft, 20.05) && close(e2e, 50.05), "{o:?}");
        assert!(close(gaps[0], 20.0) && close(gaps[1], 10.0), "{gaps:?}");
        let (ttft, gaps, e2e) = timeline(&o, 1);
        assert!(close(ttft, 39.85) && close(e2e, 59.85), "{o:?}");
        assert!(gaps.iter().all(|g| close(*g, 10.0)), "{gaps:?}");
        // A third worker, beyond the measured starts, follows at their
        // spacing: at 0.4.
        let o = simulate(&s, &staggered, &workload, &closed(3, 3), 1);
        let starts: Vec<f64> = o.requests.iter().map(|r| r.start_ms).collect();
        assert!(close(starts[2], 0.4), "{starts:?}");
    }

    #[test]
    fn first_arrivals_drawn_late_split_the_first_step_differently_by_seed() {
        // Four workers started together against four slots, 20-token
        // prompts at 1 ms a token: without jitter every seed puts all four
        // in the first step (TTFT 90.05 for each). With the first requests
        // reaching the server up to 10 ms late, the first arrival's step
        // takes only those within its 0.05 ms intake, the others join
        // later steps, and seeds split them differently; starts stay the
        // intended ones.
        let mut s = server(4, 10.0, 0.0, 1.0);
        s.scheduler.intake_ms = 0.05;
        let workload = [request(20, 2)];
        let ttfts = |client: &Client, seed: u64| -> Vec<f64> {
            let o = simulate(&s, client, &workload, &closed(4, 4), seed);
            assert!(o.requests.iter().all(|r| r.start_ms == 0.0), "{o:?}");
            o.requests.iter().map(|r| r.ttft_ms).collect()
        };
        for seed in 1..5 {
            let all = ttfts(&CLIENT, seed);
            assert!(all.iter().all(|&t| close(t, 90.05)), "{all:?}");
        }
        let late = Client {
            first_jitter_ms: 10.0,
            ..CLIENT
        };
        let runs: Vec<Vec<f64>> = (1..9).map(|seed| ttfts(&late, seed)).collect();
        for run in &runs {
            // The first step ends 10 ms + 20 ms per prompt after the first
            // arrival (at most 10 ms late), and without all four in it.
            let first = run.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(first > 30.0 && first < 80.1, "{run:?}");
        }
        let distinct: std::collections::BTreeSet<Vec<u64>> = runs
            .iter()
            .map(|r| r.iter().map(|t| (t * 100.0).round() as u64).collect())
            .collect();
        assert!(
            distinct.len() > 1,
            "every seed split the same way: {runs:?}"
        );
        // The same seed, the same split.
        assert_eq!(ttfts(&late, 3), ttfts(&late, 3));
    }

    #[test]
    fn stalls_add_to_their_share_of_steps() {
        // One slot, 10 ms steps, half of them stalling 5 ms: 10 000 steps
        // average 12.5 ms, and every step is 10 or 15.
        let mut s = server(1, 10.0, 0.0, 0.0);
        s.cost.stall_share = 0.5;
        s.cost.stalls_ms = &[5.0];
        let o = simulate(&s, &CLIENT, &[request(1, 10_000)], &closed(1, 1), 3);
        let gaps = &o.requests[0].itl_ms;
        assert!(gaps.iter().all(|g| close(*g, 10.0) || close(*g, 15.0)));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 12.5).abs() < 0.1, "{mean}");
    }

    #[test]
    fn a_step_beyond_the_pass_costs_its_tokens_beyond_it() {
        // One slot, 10 ms a step, 0.01 ms a prompt token, passes of 100
        // tokens and 10 ms per 1,000 tokens beyond: a 300-token prompt's
        // step costs 10 + 3 + 2 = 15 ms, a decode 10.
        let mut s = server(1, 10.0, 0.0, 0.01);
        s.cost.pass_tokens = 100;
        s.cost.over_pass_ms = 10.0;
        let o = simulate(&s, &CLIENT, &[request(300, 3)], &closed(1, 1), 1);
        assert!(close(o.requests[0].ttft_ms, 15.0), "{o:?}");
        assert!(
            o.requests[0].itl_ms.iter().all(|g| close(*g, 10.0)),
            "{o:?}"
        );
    }

    #[test]
    fn a_step_draws_its_spread_from_the_measured_steps_of_its_kind() {
        // One slot, 10 ms a step and 0.1 ms a prompt token: the prompt's
        // step (20 ms) draws from the prefilling steps' ratios (all 3), the
        // decodes (10 ms) from the others' (all 2).
        let mut s = server(1, 10.0, 0.0, 0.1);
        s.cost.decode_ratios = &[2.0; MIN_RATIOS];
        s.cost.prefill_ratios = &[3.0; MIN_RATIOS];
        let o = simulate(&s, &CLIENT, &[request(100, 50)], &closed(1, 1), 3);
        assert!(close(o.requests[0].ttft_ms, 60.0), "{o:?}");
        assert!(
            o.requests[0].itl_ms.iter().all(|g| close(*g, 20.0)),
            "{o:?}"
        );
        // With fewer measured than MIN_RATIOS, the log-normal (sigma 0).
        s.cost.decode_ratios = &[2.0; MIN_RATIOS - 1];
        let o = simulate(&s, &CLIENT, &[request(100, 50)], &closed(1, 1), 3);
        assert!(
            o.requests[0].itl_ms.iter().all(|g| close(*g, 10.0)),
            "{o:?}"
        );
    }

    #[test]
    fn an_open_loop_replays_a_schedule_then_keeps_its_rate() {
        // Starts at 0, 1 and 50 ms, then every 100 ms (10 rps).
        let client = Client {
            schedule_ms: &[0.0, 1.0, 50.0],
            ..CLIENT
        };
        let load = Load::Open {
            rate_rps: 10.0,
            requests: 5,
            poisson: false,
        };
        let o = simulate(
            &server(8, 10.0, 0.0, 0.0),
            &client,
            &[request(1, 1)],
            &load,
            1,
        );
        let starts: Vec<f64> = o.requests.iter().map(|r| r.start_ms).collect();
        assert_eq!(starts, [0.0, 1.0, 50.0, 150.0, 250.0]);
        // The second arrived during the first's step: it waits for its end.
        assert!(close(o.requests[1].ttft_ms, 19.0), "{o:?}");
    }

    #[test]
    fn a_second_replica_takes_the_other_request() {
        let mut s = server(1, 10.0, 0.0, 0.0);
        s.replicas = 2;
        let o = simulate(&s, &CLIENT, &[request(1, 3)], &closed(2, 4), 1);
        for r in &o.requests {
            assert!(close(r.ttft_ms, 10.0) && close(r.e2e_ms, 30.0), "{o:?}");
        }
    }

    #[test]
    fn overhead_delays_arrival_and_jitter_moves_reads() {
        let client = Client {
            overhead_ms: &[2.0],
            read_jitter_ms: &[0.5],
            ..CLIENT
        };
        let o = simulate(
            &server(1, 10.0, 0.0, 0.0),
            &client,
            &[request(1, 2)],
            &closed(1, 2),
            1,
        );
        // Arrives at 2, tokens at 12 and 22, read 0.5 ms later.
        assert!(close(o.requests[0].ttft_ms, 12.5) && close(o.requests[0].e2e_ms, 22.5));
        // The next starts at 22.5, arrives at 24.5.
        assert!(close(o.requests[1].ttft_ms, 12.5));
    }

    /// Mean wait in the queue of one slot whose every request is one step
    /// of `s_ms`, under Poisson arrivals at `rho`, and M/D/1's.
    fn md1_wait(rho: f64) -> (f64, f64) {
        let s_ms = 10.0;
        let load = Load::Open {
            rate_rps: rho / s_ms * 1000.0,
            requests: 100_000,
            poisson: true,
        };
        let o = simulate(
            &server(1, s_ms, 0.0, 0.0),
            &CLIENT,
            &[request(1, 1)],
            &load,
            7,
        );
        let waits: f64 = o.requests.iter().map(|r| r.server_queue_ms).sum();
        (
            waits / o.requests.len() as f64,
            rho * s_ms / (2.0 * (1.0 - rho)),
        )
    }

    #[test]
    fn poisson_arrivals_on_one_slot_match_m_d_1() {
        for rho in [0.5, 0.8] {
            let (simulated, theory) = md1_wait(rho);
            assert!(
                (simulated / theory - 1.0).abs() < 0.04,
                "rho {rho}: {simulated} vs {theory}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let mut s = server(4, 10.0, 0.5, 0.05);
        s.cost.sigma = 0.1;
        let client = Client {
            overhead_ms: &[0.5, 1.5],
            read_jitter_ms: &[-0.2, 0.3],
            ..CLIENT
        };
        let workload = [request(30, 20), request(100, 5)];
        let a = simulate(&s, &client, &workload, &closed(10, 200), 3);
        let b = simulate(&s, &client, &workload, &closed(10, 200), 3);
        let c = simulate(&s, &client, &workload, &closed(10, 200), 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.requests.len(), 200);
        assert!(a
            .requests
            .iter()
            .all(|r| r.ttft_ms.is_finite() && r.e2e_ms >= r.ttft_ms));
    }
}
