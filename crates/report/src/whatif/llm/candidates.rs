//! LLM candidates, their predicted TTFT, ITL, TPOT and e2e, and the choice.
//!
//! Server changes, labelled so: sequence slots, the step's token budget,
//! chunked prefill on or off, one more replica. Client changes: a cap on
//! streams in flight (the others wait at the client, their wait counted in
//! TTFT from the intended start), evenly spaced arrivals instead of
//! Poisson ones, requests that share a prefix sent together. Shorter
//! answers or fewer requests change the quality or the load, not the
//! system, and are never candidates.
//!
//! Each candidate is simulated [`POINT_SIMULATIONS`] times with the fit's
//! point model (the prediction is the median of those runs) and once per
//! bootstrap refit with a fresh seed (the 95% interval: the fit's
//! uncertainty and one run's own noise together); every candidate sees the
//! same seeds and refits. A closed loop is simulated
//! [`TOGETHER_SIMULATIONS`] times more with its workers' first requests all
//! in the server's first step, the prediction had the run started so
//! (`started_together`): with answers of one length a run keeps the
//! pattern its first steps set, and which one a real run takes turns on
//! arrivals tenths of a millisecond apart. The choice is the best predicted score (the
//! worst objective's prediction over its bound) among candidates that can
//! be run and whose intervals keep every objective with the margin;
//! candidates within [`TIE_FRACTION`] of that score tie, and the smaller
//! change wins.

use model::whatif::{
    CandidateKind, LlmCandidateRow, LlmChange, LlmServerConfig, Load, ObjectivePrediction,
    PredictedSeries, ServerSetting, StartedTogether,
};
use stats::slo::{Op, Request, Slo, Tokens};
use stats::{QuantileMethod, SplitMix64};

use super::super::candidates::par_map;
use super::fit::{StepFit, StepModel};
use super::sim::{self, Client, LlmServer, Outcome, Scheduler, SimRequest, StepCost};

/// Simulations with the point model behind each prediction, whose median
/// is the prediction: odd, so the median is one run's.
pub(crate) const POINT_SIMULATIONS: usize = 9;
/// Simulations behind a closed loop's prediction with its first requests
/// all in the first step (see [`LlmCandidateRow::started_together`]): odd,
/// and fewer, since nothing is drawn at the start.
const TOGETHER_SIMULATIONS: usize = 3;
/// Scores within this fraction of the best tie; the smaller change wins.
pub(crate) const TIE_FRACTION: f64 = 0.02;
/// How long an idle server takes to wake and gather arrivals, ms: within
/// it, requests that arrive nearly together join one step (stub-server's
/// loop wakes within tens of microseconds). It is part of the client's
/// fitted time, so each request reaches the simulated server that much
/// sooner.
pub(crate) const INTAKE_MS: f64 = 0.05;
/// The stub-server's and vLLM's largest token budget worth trying.
const MAX_BUDGET: u32 = 1_048_576;

/// The server changes a runner can apply (`report whatif
/// --server-changes`); the others are predicted and shown, never chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerChanges {
    /// Sequence slots.
    pub slots: bool,
    /// The step's token budget.
    pub batched_tokens: bool,
    /// Chunked prefill on or off.
    pub chunked_prefill: bool,
    /// One more replica.
    pub replicas: bool,
}

impl ServerChanges {
    /// Every change.
    pub const ALL: ServerChanges = ServerChanges {
        slots: true,
        batched_tokens: true,
        chunked_prefill: true,
        replicas: true,
    };

    fn allows(&self, change: LlmChange) -> bool {
        match change {
            LlmChange::MaxNumSeqs { .. } => self.slots,
            LlmChange::MaxBatchedTokens { .. } => self.batched_tokens,
            LlmChange::ChunkedPrefill { .. } => self.chunked_prefill,
            LlmChange::Replicas { .. } => self.replicas,
            _ => true,
        }
    }
}

/// Everything a prediction needs.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The fitted step model.
    pub fit: StepFit,
    /// The Before's server.
    pub server: LlmServerConfig,
    /// Whether prompt lengths are tokens (else one unit each: the budget
    /// and KV blocks then mean nothing, and their changes are not tried).
    pub prompts_known: bool,
    /// The Before's requests, in issue order.
    pub workload: Vec<SimRequest>,
    /// Each Before request's own connection set-up, ms (the client's
    /// fitted time is added).
    pub setup_ms: Vec<f64>,
    /// The load every candidate runs under.
    pub load: Load,
    /// With an open loop at the Before's own rate: its intended starts, ms
    /// from the first, replayed (loadgen draws the same Poisson starts from
    /// the same seed); empty otherwise.
    pub schedule_ms: Vec<f64>,
    /// A closed loop's workers' first starts, ms from the first: the
    /// Before's, replayed (see [`sim::Client::first_starts_ms`]).
    pub first_starts_ms: Vec<f64>,
    /// How far each of those first requests may reach the server after
    /// its start, ms (see [`sim::Client::first_jitter_ms`]). Which requests
    /// an idle server's first step takes decides which steady pattern a
    /// closed loop settles into, and that split differs between fresh
    /// runs of the same setup: six streams against six slots split 1/3/2,
    /// 3/3 and 4/2 in three runs, with TTFT P95 296, 345 and 347 ms. The
    /// point runs each draw the arrivals anew, and their median is the
    /// prediction.
    pub first_jitter_ms: f64,
    /// The objectives.
    pub objectives: Vec<Slo>,
    /// The margin kept on every objective.
    pub margin: f64,
    /// Refits behind the intervals.
    pub refits: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// What the runner can change on the server.
    pub allowed: ServerChanges,
    /// Streams the Before had in flight at most (the slot candidates go
    /// up to it).
    pub in_flight: u32,
}

/// Every candidate, the baseline first, in a fixed order.
pub(crate) fn candidates(setup: &Setup) -> Vec<LlmChange> {
    let s = setup.server.max_num_seqs;
    let mut out = vec![LlmChange::None];
    let mut slots: Vec<u32> = [s / 2, s + s / 2, 2 * s, 4 * s, setup.in_flight]
        .into_iter()
        .map(|n| n.clamp(1, 4096))
        .filter(|&n| n != s)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    out.extend(
        slots
            .into_iter()
            .map(|max_num_seqs| LlmChange::MaxNumSeqs { max_num_seqs }),
    );
    if setup.prompts_known {
        let budgets: Vec<u32> = match setup.server.max_batched_tokens {
            Some(b) => vec![b / 4, b / 2, b.saturating_mul(2)],
            None => vec![512, 2048, 8192],
        };
        let mut budgets: Vec<u32> = budgets
            .into_iter()
            .filter(|&b| b >= s.max(16) && b <= MAX_BUDGET)
            .filter(|&b| Some(b) != setup.server.max_batched_tokens)
            .collect();
        budgets.dedup();
        out.extend(
            budgets
                .into_iter()
                .map(|max_batched_tokens| LlmChange::MaxBatchedTokens { max_batched_tokens }),
        );
    }
    out.push(LlmChange::ChunkedPrefill {
        enabled: !setup.server.chunked_prefill,
    });
    out.push(LlmChange::Replicas {
        replicas: setup.server.replicas + 1,
    });
    let mut caps: Vec<u32> = [s / 4, s / 2, 3 * s / 4]
        .into_iter()
        .filter(|&k| k >= 1 && k < s.min(setup.in_flight))
        .collect();
    caps.dedup();
    out.extend(
        caps.into_iter()
            .map(|max_in_flight| LlmChange::ConcurrencyCap { max_in_flight }),
    );
    if matches!(setup.load, Load::Open { poisson: true, .. }) {
        out.push(LlmChange::SmoothArrivals);
    }
    let grouped = setup.workload.iter().any(|r| r.prefix_group.is_some());
    if grouped && setup.server.prefix_cache_blocks > 0 {
        out.push(LlmChange::OrderByPrefix);
    }
    out
}

/// Who has to change something.
pub(crate) fn kind_of(change: LlmChange) -> CandidateKind {
    match change {
        LlmChange::None => CandidateKind::Baseline,
        LlmChange::MaxNumSeqs { .. }
        | LlmChange::MaxBatchedTokens { .. }
        | LlmChange::ChunkedPrefill { .. }
        | LlmChange::Replicas { .. } => CandidateKind::Server,
        LlmChange::ConcurrencyCap { .. } | LlmChange::SmoothArrivals | LlmChange::OrderByPrefix => {
            CandidateKind::Client
        }
    }
}

/// The change in words.
pub(crate) fn label_of(change: LlmChange, server: &LlmServerConfig) -> String {
    match change {
        LlmChange::None => format!(
            "baseline as measured: max_num_seqs {}, the Before's client",
            server.max_num_seqs
        ),
        LlmChange::MaxNumSeqs { max_num_seqs } => format!(
            "server: max_num_seqs {max_num_seqs} (from {})",
            server.max_num_seqs
        ),
        LlmChange::MaxBatchedTokens { max_batched_tokens } => format!(
            "server: max_batched_tokens {max_batched_tokens} (from {})",
            server
                .max_batched_tokens
                .map_or("no limit".to_owned(), |b| b.to_string())
        ),
        LlmChange::ChunkedPrefill { enabled } => format!(
            "server: chunked prefill {}",
            if enabled { "on" } else { "off" }
        ),
        LlmChange::Replicas { replicas } => {
            format!("server: {replicas} replicas behind a balancer (fewest outstanding)")
        }
        LlmChange::ConcurrencyCap { max_in_flight } => format!(
            "client: at most {max_in_flight} streams in flight, the rest wait at the client"
        ),
        LlmChange::SmoothArrivals => "client: evenly spaced arrivals at the same rate".to_owned(),
        LlmChange::OrderByPrefix => "client: requests sharing a prefix sent together".to_owned(),
    }
}

/// The server setting a runner applies.
pub(crate) fn setting_of(change: LlmChange) -> Option<ServerSetting> {
    match change {
        LlmChange::MaxNumSeqs { max_num_seqs } => Some(ServerSetting::MaxNumSeqs { max_num_seqs }),
        LlmChange::MaxBatchedTokens { max_batched_tokens } => {
            Some(ServerSetting::MaxBatchedTokens { max_batched_tokens })
        }
        LlmChange::ChunkedPrefill { enabled } => Some(ServerSetting::ChunkedPrefill { enabled }),
        LlmChange::Replicas { replicas } => Some(ServerSetting::Replicas { replicas }),
        _ => None,
    }
}

/// The After's loadgen flags: the Before's client for a server change.
fn loadgen_args_of(change: LlmChange, load: &Load) -> Vec<String> {
    let mut args = vec!["--profile".to_owned(), "baseline".to_owned()];
    match (change, load) {
        (LlmChange::SmoothArrivals, Load::Open { rate_rps, .. }) => {
            args.extend([
                "--rate".to_owned(),
                format!("{rate_rps}"),
                "--arrival".to_owned(),
                "constant".to_owned(),
            ]);
        }
        (LlmChange::ConcurrencyCap { max_in_flight }, _) => {
            args.extend(["--max-in-flight".to_owned(), max_in_flight.to_string()]);
        }
        _ => {}
    }
    args
}

/// Why a candidate cannot be run as things stand; `None` when it can.
fn needs_of(change: LlmChange, allowed: &ServerChanges) -> Option<String> {
    match change {
        LlmChange::ConcurrencyCap { .. } => Some(
            "loadgen to hold the streams beyond --max-in-flight at the client and count their wait from the intended start (today it drops them)"
                .to_owned(),
        ),
        LlmChange::OrderByPrefix => {
            Some("loadgen to send the requests of one prefix one after another".to_owned())
        }
        c if kind_of(c) == CandidateKind::Server && !allowed.allows(c) => {
            Some("a runner that applies this server change (not in --server-changes)".to_owned())
        }
        _ => None,
    }
}

/// How big a change is, for ties: none, then the client's, then the
/// server's configuration by how far it moves, then hardware.
fn size_of(change: LlmChange, server: &LlmServerConfig) -> f64 {
    let ratio = |a: f64, b: f64| (a / b).ln().abs();
    match change {
        LlmChange::None => 0.0,
        LlmChange::SmoothArrivals | LlmChange::OrderByPrefix => 1.0,
        LlmChange::ConcurrencyCap { max_in_flight } => {
            1.5 + ratio(f64::from(max_in_flight), f64::from(server.max_num_seqs))
        }
        LlmChange::MaxNumSeqs { max_num_seqs } => {
            2.0 + ratio(f64::from(max_num_seqs), f64::from(server.max_num_seqs))
        }
        LlmChange::MaxBatchedTokens { max_batched_tokens } => {
            2.0 + ratio(
                f64::from(max_batched_tokens),
                f64::from(server.max_batched_tokens.unwrap_or(MAX_BUDGET)),
            )
        }
        LlmChange::ChunkedPrefill { .. } => 2.5,
        LlmChange::Replicas { replicas } => 4.0 + f64::from(replicas),
    }
}

/// The simulated server of `config` with step costs `model`.
pub(crate) fn server_of<'a>(
    config: &LlmServerConfig,
    model: &StepModel,
    fit: &'a StepFit,
    prompts_known: bool,
) -> LlmServer<'a> {
    let block = config.kv_block_tokens.max(1) as usize;
    LlmServer {
        cost: StepCost {
            base_ms: model.base_ms,
            per_seq_ms: model.per_seq_ms,
            prefill_per_token_ms: model.prefill_per_token_ms,
            attention_ms: model.attention_ms,
            kv_ms: model.kv_ms,
            join_ms: model.join_ms,
            sigma: model.sigma,
            stall_share: fit.stall_share,
            stalls_ms: &fit.stalls_ms,
            pass_tokens: match (prompts_known, config.pass_tokens) {
                (true, Some(p)) => p as usize,
                _ => usize::MAX,
            },
            over_pass_ms: fit.over_pass_ms,
            decode_ratios: &fit.decode_ratios,
            prefill_ratios: &fit.prefill_ratios,
        },
        scheduler: Scheduler {
            max_num_seqs: config.max_num_seqs as usize,
            max_batched_tokens: match (prompts_known, config.max_batched_tokens) {
                (true, Some(b)) => b as usize,
                _ => usize::MAX,
            },
            chunked_prefill: config.chunked_prefill,
            kv_block_tokens: block,
            kv_capacity_blocks: config
                .kv_cache_tokens
                .filter(|_| prompts_known)
                .map(|t| (t / block as u64) as usize),
            prefix_cache_blocks: if prompts_known {
                config.prefix_cache_blocks as usize
            } else {
                0
            },
            intake_ms: INTAKE_MS,
        },
        replicas: config.replicas as usize,
    }
}

/// The server config with `change` applied.
fn changed(config: &LlmServerConfig, change: LlmChange) -> LlmServerConfig {
    let mut c = *config;
    match change {
        LlmChange::MaxNumSeqs { max_num_seqs } => c.max_num_seqs = max_num_seqs,
        LlmChange::MaxBatchedTokens { max_batched_tokens } => {
            c.max_batched_tokens = Some(max_batched_tokens);
        }
        LlmChange::ChunkedPrefill { enabled } => c.chunked_prefill = enabled,
        LlmChange::Replicas { replicas } => c.replicas = replicas,
        _ => {}
    }
    c
}

/// The load with `change` applied.
fn load_of(change: LlmChange, load: &Load) -> Load {
    match (change, *load) {
        (
            LlmChange::SmoothArrivals,
            Load::Open {
                rate_rps, requests, ..
            },
        ) => Load::Open {
            rate_rps,
            requests,
            poisson: false,
        },
        (_, load) => load,
    }
}

/// The workload with `change` applied: grouped by prefix, in order of
/// each group's first request.
fn workload_of(change: LlmChange, workload: &[SimRequest]) -> Vec<SimRequest> {
    if change != LlmChange::OrderByPrefix {
        return workload.to_vec();
    }
    let mut first: std::collections::HashMap<Option<u64>, usize> = Default::default();
    let mut keyed: Vec<(usize, usize, SimRequest)> = workload
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let next = first.len();
            let g = *first
                .entry(r.prefix_group.or(Some(u64::MAX - i as u64)))
                .or_insert(next);
            (g, i, *r)
        })
        .collect();
    keyed.sort_by_key(|&(g, i, _)| (g, i));
    keyed.into_iter().map(|(_, _, r)| r).collect()
}

/// A seed for draw `index` of stream `stream`, decorrelated from `seed`.
fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut rng = SplitMix64::new(
        seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03)
            ^ index.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7),
    );
    rng.next_u64()
}

const STREAM_POINT: u64 = 11;
const STREAM_REFIT_SIM: u64 = 12;

/// The statistics of one simulated run.
#[derive(Debug, Clone, Default)]
struct Stats {
    /// TTFT, ITL, TPOT, e2e: P50, P95, P99 each.
    series: [[f64; 3]; 4],
    /// Each objective's value.
    objectives: Vec<f64>,
    throughput_rps: f64,
    preemptions: f64,
}

fn stats_of(o: &Outcome, objectives: &[Slo]) -> Stats {
    let q = |mut v: Vec<f64>| -> [f64; 3] {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        [0.50, 0.95, 0.99]
            .map(|p| stats::quantile(&v, p, QuantileMethod::Linear).unwrap_or(f64::NAN))
    };
    let ttft = q(o.requests.iter().map(|r| r.ttft_ms).collect());
    let itl = q(o
        .requests
        .iter()
        .flat_map(|r| r.itl_ms.iter().copied())
        .collect());
    let tpot = q(o.requests.iter().filter_map(|r| r.tpot_ms()).collect());
    let e2e = q(o.requests.iter().map(|r| r.e2e_ms).collect());
    let tpots: Vec<Option<f64>> = o.requests.iter().map(|r| r.tpot_ms()).collect();
    let views: Vec<Request<'_>> = o
        .requests
        .iter()
        .zip(&tpots)
        .map(|(r, tpot)| Request {
            ok: true,
            latency_ms: r.e2e_ms,
            tokens: Some(Tokens {
                ttft_ms: Some(r.ttft_ms),
                tpot_ms: *tpot,
                itl_ms: &r.itl_ms,
            }),
        })
        .collect();
    let duration_s = Some(o.makespan_ms / 1000.0);
    Stats {
        series: [ttft, itl, tpot, e2e],
        objectives: objectives
            .iter()
            .map(|slo| {
                slo.measure(&views, objectives, duration_s)
                    .unwrap_or(f64::NAN)
            })
            .collect(),
        throughput_rps: o.throughput_rps(),
        preemptions: o.preemptions as f64,
    }
}

/// The objective's prediction over its bound, lower is better.
fn ratio(slo: &Slo, predicted: f64) -> f64 {
    let (p, t) = (predicted, slo.threshold);
    match slo.op {
        Op::AtMost | Op::Below => {
            if t > 0.0 {
                p / t
            } else if p > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        }
        Op::AtLeast | Op::Above => {
            if p > 0.0 {
                t / p
            } else if t > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        }
    }
}

/// Whether `interval` keeps `slo` with `margin`: its far end within the
/// bound less the margin (`<=`), or beyond the bound plus it (`>=`).
fn meets(slo: &Slo, interval: [f64; 2], margin: f64) -> bool {
    match slo.op {
        Op::AtMost => interval[1] <= slo.threshold * (1.0 - margin),
        Op::Below => interval[1] < slo.threshold * (1.0 - margin),
        Op::AtLeast => interval[0] >= slo.threshold * (1.0 + margin),
        Op::Above => interval[0] > slo.threshold * (1.0 + margin),
    }
}

/// What a candidate runs: server, client, workload, load.
struct Plan {
    config: LlmServerConfig,
    max_in_flight: Option<usize>,
    /// Replay the Before's starts.
    replay: bool,
    workload: Vec<SimRequest>,
    load: Load,
}

fn plan_of(setup: &Setup, change: LlmChange) -> Plan {
    Plan {
        config: changed(&setup.server, change),
        max_in_flight: match change {
            LlmChange::ConcurrencyCap { max_in_flight } => Some(max_in_flight as usize),
            _ => None,
        },
        workload: workload_of(change, &setup.workload),
        load: load_of(change, &setup.load),
        replay: change != LlmChange::SmoothArrivals,
    }
}

/// How a closed loop's workers' first requests reach the idle server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Starts {
    /// At the Before's starts, each drawn late by up to
    /// [`Setup::first_jitter_ms`].
    Replayed,
    /// All at once: the first step takes every slot's prompt.
    Together,
}

fn run(setup: &Setup, plan: &Plan, model: &StepModel, seed: u64, starts: Starts) -> Stats {
    let overhead: Vec<f64> = setup
        .setup_ms
        .iter()
        .map(|s| (model.client_ms + s - INTAKE_MS).max(0.0))
        .collect();
    let client = Client {
        overhead_ms: &overhead,
        read_jitter_ms: &setup.fit.read_jitter_ms,
        max_in_flight: plan.max_in_flight,
        schedule_ms: if plan.replay { &setup.schedule_ms } else { &[] },
        first_starts_ms: match starts {
            Starts::Replayed => &setup.first_starts_ms,
            Starts::Together => &[],
        },
        first_jitter_ms: match starts {
            Starts::Replayed => setup.first_jitter_ms,
            Starts::Together => 0.0,
        },
    };
    let server = server_of(&plan.config, model, &setup.fit, setup.prompts_known);
    let o = sim::simulate(&server, &client, &plan.workload, &plan.load, seed);
    stats_of(&o, &setup.objectives)
}

/// Predicts every candidate and ranks them; the baseline is among them.
pub(crate) fn predict(setup: &Setup) -> Vec<LlmCandidateRow> {
    let all = candidates(setup);
    let refits: Vec<StepModel> = setup
        .fit
        .refits
        .iter()
        .copied()
        .cycle()
        .take(setup.refits)
        .collect();
    let rows = par_map(&all, |&change| {
        let plan = plan_of(setup, change);
        let point_runs = |count: usize, starts: Starts| -> Vec<Stats> {
            (0..count)
                .map(|k| {
                    let seed = derive_seed(setup.seed, STREAM_POINT, k as u64);
                    run(setup, &plan, &setup.fit.point, seed, starts)
                })
                .collect()
        };
        let points = point_runs(POINT_SIMULATIONS, Starts::Replayed);
        // Only where the starts are replayed does starting together differ.
        let closed = matches!(plan.load, Load::Closed { .. }) && !setup.first_starts_ms.is_empty();
        let together = point_runs(
            if closed { TOGETHER_SIMULATIONS } else { 0 },
            Starts::Together,
        );
        let draws: Vec<Stats> = refits
            .iter()
            .enumerate()
            .map(|(r, m)| {
                run(
                    setup,
                    &plan,
                    m,
                    derive_seed(setup.seed, STREAM_REFIT_SIM, r as u64),
                    Starts::Replayed,
                )
            })
            .collect();
        row_of(setup, change, &points, &together, &draws, refits.len())
    });
    let mut rows = rows;
    rows.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(size_of(a.change, &setup.server).total_cmp(&size_of(b.change, &setup.server)))
    });
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = i + 1;
    }
    rows
}

/// The medians of the runs started together; `None` without any.
fn started_together(runs: &[Stats]) -> Option<StartedTogether> {
    let at = |i: usize, j: usize| median(runs.iter().map(|s| s.series[i][j]).collect());
    (!runs.is_empty()).then(|| StartedTogether {
        ttft_p95_ms: at(0, 1),
        itl_p99_ms: at(1, 2),
        e2e_p95_ms: at(3, 1),
    })
}

/// The median of `v` (numpy's, the mean of the middle two for an even
/// count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    stats::quantile(&v, 0.5, QuantileMethod::Linear).unwrap_or(f64::NAN)
}

fn row_of(
    setup: &Setup,
    change: LlmChange,
    points: &[Stats],
    together: &[Stats],
    draws: &[Stats],
    refits: usize,
) -> LlmCandidateRow {
    // The median of the point runs, not their mean: a closed loop
    // settles into one of a few steady patterns (see
    // `Setup::first_jitter_ms`), and a mean of 296 and 346 ms predicts a
    // run that never happens.
    let point = |f: &dyn Fn(&Stats) -> f64| {
        let v: Vec<f64> = points.iter().map(f).filter(|x| x.is_finite()).collect();
        median(v)
    };
    let interval = |f: &dyn Fn(&Stats) -> f64, point: f64| -> [f64; 2] {
        let mut v: Vec<f64> = draws.iter().map(f).filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| stats::quantile(&v, p, QuantileMethod::Linear).unwrap_or(point);
        // The median point run can fall outside the refits' range
        // with heavy tails: the interval holds it, which only makes the
        // test of an objective stricter.
        [q(0.025).min(point), q(0.975).max(point)]
    };
    let series = |i: usize| {
        let at = |j: usize| move |s: &Stats| s.series[i][j];
        let (p50, p95, p99) = (point(&at(0)), point(&at(1)), point(&at(2)));
        PredictedSeries {
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            p50_interval_ms: interval(&at(0), p50),
            p95_interval_ms: interval(&at(1), p95),
            p99_interval_ms: interval(&at(2), p99),
        }
    };
    let objectives: Vec<ObjectivePrediction> = setup
        .objectives
        .iter()
        .enumerate()
        .map(|(i, slo)| {
            let pick = move |s: &Stats| s.objectives[i];
            let predicted = point(&pick);
            let interval = interval(&pick, predicted);
            ObjectivePrediction {
                objective: slo.text.clone(),
                predicted,
                interval,
                meets_with_margin: meets(slo, interval, setup.margin),
            }
        })
        .collect();
    let score = setup
        .objectives
        .iter()
        .zip(&objectives)
        .map(|(slo, o)| {
            // An objective that measured nothing (a rate over no time)
            // cannot be judged: it counts as missed.
            if o.predicted.is_finite() {
                ratio(slo, o.predicted)
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0_f64, f64::max);
    let needs = needs_of(change, &setup.allowed);
    let plan_load = load_of(change, &setup.load);
    let sorted_runs = |i: usize, j: usize| {
        let mut v: Vec<f64> = points
            .iter()
            .map(|s| s.series[i][j])
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (ttft_p95_runs, itl_p99_runs) = (sorted_runs(0, 1), sorted_runs(1, 2));
    LlmCandidateRow {
        rank: 0,
        label: label_of(change, &setup.server),
        kind: kind_of(change),
        change,
        server_setting: setting_of(change),
        loadgen_args: loadgen_args_of(change, &plan_load),
        runnable: needs.is_none(),
        needs,
        ttft: series(0),
        itl: series(1),
        tpot: series(2),
        e2e: series(3),
        meets_objectives_with_margin: objectives.iter().all(|o| o.meets_with_margin),
        objectives,
        score,
        throughput_rps: point(&|s: &Stats| s.throughput_rps),
        preemptions: point(&|s: &Stats| s.preemptions),
        refits,
        patterns: patterns_of(&[
            ("TTFT P95", 0, &ttft_p95_runs),
            ("ITL P99", 1, &itl_p99_runs),
        ]),
        ttft_p95_point_runs_ms: ttft_p95_runs,
        itl_p99_point_runs_ms: itl_p99_runs,
        started_together: started_together(together),
    }
}

/// What a closed loop started together would give instead, in words,
/// where it differs from the prediction by more than a tenth in TTFT P95
/// or ITL P99; `None` otherwise.
pub(super) fn together_words(c: &LlmCandidateRow) -> Option<String> {
    let t = c.started_together?;
    let apart = |a: f64, b: f64| b > 0.0 && (a / b - 1.0).abs() > 0.10;
    (apart(t.ttft_p95_ms, c.ttft.p95_ms) || apart(t.itl_p99_ms, c.itl.p99_ms)).then(|| {
        format!(
            " Were every stream's first request in the server's first step, the run would keep that pattern instead: TTFT P95 {:.0} ms, ITL P99 {:.1} ms, e2e P95 {:.0} ms (a closed loop with answers of one length keeps the pattern its first steps set; which one a run takes depends on when its first requests arrive, tenths of a millisecond apart).",
            t.ttft_p95_ms, t.itl_p99_ms, t.e2e_p95_ms
        )
    })
}

/// Two groups of point runs count apart when the gap between them is over
/// this fraction of the lower one: the simulator's validation goal, so
/// that within it the runs make one prediction.
const PATTERN_GAP_FRACTION: f64 = 0.10;

/// The two groups `sorted` values fall into, split at the widest gap
/// between neighbours, where that gap is over [`PATTERN_GAP_FRACTION`]
/// of the value below it and each group holds at least two runs.
fn split_in_two(sorted: &[f64]) -> Option<(&[f64], &[f64])> {
    let (at, gap) = sorted
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] > 0.0)
        .map(|(i, w)| (i + 1, w[1] / w[0] - 1.0))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (gap > PATTERN_GAP_FRACTION && at >= 2 && sorted.len() - at >= 2).then(|| sorted.split_at(at))
}

/// The groups of each metric's point runs in words (`name`, decimals,
/// ascending values); `None` when no metric splits.
fn patterns_of(metrics: &[(&str, usize, &Vec<f64>)]) -> Option<String> {
    let range = |v: &[f64], digits: usize| {
        let ends = (v.first(), v.last());
        let (Some(first), Some(last)) = ends else {
            return String::new();
        };
        let (first, last) = (format!("{first:.digits$}"), format!("{last:.digits$}"));
        if first == last {
            first
        } else {
            format!("{first}-{last}")
        }
    };
    let parts: Vec<String> = metrics
        .iter()
        .filter_map(|&(name, digits, sorted)| {
            let (low, high) = split_in_two(sorted)?;
            Some(format!(
                "{name} {} ms in {} of {n}, {} ms in {} of {n}",
                range(low, digits),
                low.len(),
                range(high, digits),
                high.len(),
                n = sorted.len(),
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "the point runs settle into two patterns: {}; a single run may land in either",
            parts.join("; ")
        )
    })
}

/// The choice among ranked rows: the best score among the runnable
/// changes that meet every objective with the margin, ties within
/// [`TIE_FRACTION`] to the smaller change; `None` when none does.
pub(crate) fn choose<'a>(
    rows: &'a [LlmCandidateRow],
    server: &LlmServerConfig,
) -> Option<&'a LlmCandidateRow> {
    let eligible = || {
        rows.iter().filter(|r| {
            r.runnable && r.meets_objectives_with_margin && r.kind != CandidateKind::Baseline
        })
    };
    let best = eligible().map(|r| r.score).fold(f64::INFINITY, f64::min);
    eligible()
        .filter(|r| r.score <= best * (1.0 + TIE_FRACTION))
        .min_by(|a, b| size_of(a.change, server).total_cmp(&size_of(b.change, server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed loop of 8 streams on 4 slots: steps of 1 ms + 0.1 ms per
    /// prompt token, 20-token prompts and 10-token answers; the workers'
    /// first requests at `first_starts_ms`.
    fn four_slots(first_starts_ms: Vec<f64>, load: Load) -> Setup {
        let zero = model::whatif::Estimate {
            value: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
        let point = StepModel {
            base_ms: 1.0,
            per_seq_ms: 0.0,
            prefill_per_token_ms: 0.1,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            client_ms: 0.2,
        };
        Setup {
            fit: StepFit {
                point,
                refits: vec![point],
                estimates: [zero; 8],
                steps: 100,
                first_token_steps: 8,
                read_jitter_ms: Vec::new(),
                stall_share: 0.0,
                stalls_ms: Vec::new(),
                decode_ratios: Vec::new(),
                prefill_ratios: Vec::new(),
                over_pass_steps: 0,
                over_pass_ms: 0.0,
                caveats: Vec::new(),
            },
            server: LlmServerConfig {
                max_num_seqs: 4,
                max_batched_tokens: None,
                chunked_prefill: true,
                kv_cache_tokens: None,
                kv_block_tokens: 16,
                prefix_cache_blocks: 0,
                replicas: 1,
                pass_tokens: None,
            },
            prompts_known: true,
            workload: vec![SimRequest {
                prompt_tokens: 20,
                output_tokens: 10,
                prefix_group: None,
                shared_prefix_tokens: 0,
            }],
            setup_ms: vec![0.0],
            load,
            schedule_ms: Vec::new(),
            first_starts_ms,
            first_jitter_ms: 0.0,
            objectives: vec!["ttft_p95<=500".parse().unwrap()],
            margin: 0.2,
            refits: 1,
            seed: 1,
            allowed: ServerChanges::ALL,
            in_flight: 8,
        }
    }

    #[test]
    fn a_closed_loop_is_also_predicted_started_together() {
        // Replayed 0.3 ms apart, the first step takes one prompt and the
        // others join the next beside its decode: from then on prompts
        // join beside decodes, whose gaps stretch to a 3-ms step of one
        // prompt (1 + 0.1 x 20) or more. Started together, the four slots
        // run in lockstep: every prompt joins with the others and no
        // decode waits for one, every gap is a 1-ms decode.
        let closed = Load::Closed {
            concurrency: 8,
            requests: 200,
        };
        let setup = four_slots((0..8).map(|i| 0.3 * f64::from(i)).collect(), closed);
        let rows = predict(&setup);
        let baseline = rows
            .iter()
            .find(|r| r.kind == CandidateKind::Baseline)
            .unwrap();
        let together = baseline.started_together.expect("a closed loop's");
        assert!(baseline.itl.p99_ms >= 3.0, "{baseline:?}");
        assert!((together.itl_p99_ms - 1.0).abs() < 1e-9, "{together:?}");
        assert!(together.e2e_p95_ms > together.ttft_p95_ms);
        // Apart by more than a tenth: the conclusion gives both.
        let words = together_words(baseline).expect("words for the other pattern");
        assert!(words.contains("ITL P99 1.0 ms"), "{words}");
        let same = LlmCandidateRow {
            started_together: Some(StartedTogether {
                ttft_p95_ms: baseline.ttft.p95_ms * 1.05,
                itl_p99_ms: baseline.itl.p99_ms * 0.95,
                e2e_p95_ms: 1.0,
            }),
            ..baseline.clone()
        };
        assert_eq!(together_words(&same), None);
        // Every candidate carries it; an open loop none.
        assert!(rows.iter().all(|r| r.started_together.is_some()));
        let open = Load::Open {
            rate_rps: 100.0,
            requests: 200,
            poisson: false,
        };
        let rows = predict(&four_slots(Vec::new(), open));
        assert!(rows.iter().all(|r| r.started_together.is_none()));
    }

    #[test]
    fn the_prediction_is_the_median_point_run() {
        // Two runs in one pattern and one in another: the median is a run
        // that happens, where the mean (312.8) is not.
        assert_eq!(median(vec![296.0, 346.4, 296.2]), 296.2);
        assert_eq!(median(vec![1.0, 4.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn point_runs_split_into_two_patterns_only_past_a_tenth_with_two_in_each() {
        // Five runs near 296 ms and four near 346 ms: two patterns.
        let two = [
            296.0, 296.1, 296.2, 297.0, 299.9, 345.0, 346.0, 346.4, 350.0,
        ];
        let (low, high) = split_in_two(&two).unwrap_or_default();
        assert_eq!((low.len(), high.len()), (5, 4));
        // Spread evenly, no gap is over a tenth: one prediction.
        let spread = [
            100.0, 105.0, 110.0, 115.0, 120.0, 126.0, 132.0, 138.0, 145.0,
        ];
        assert_eq!(split_in_two(&spread), None);
        // A lone outlier is not a pattern.
        let lone = [
            100.0, 100.5, 101.0, 101.0, 101.2, 101.3, 101.4, 101.9, 160.0,
        ];
        assert_eq!(split_in_two(&lone), None);
        assert_eq!(split_in_two(&[]), None);
        let words = patterns_of(&[
            ("TTFT P95", 0, &two.to_vec()),
            ("ITL P99", 1, &spread.to_vec()),
        ]);
        assert_eq!(
            words.as_deref(),
            Some("the point runs settle into two patterns: TTFT P95 296-300 ms in 5 of 9, 345-350 ms in 4 of 9; a single run may land in either")
        );
        assert_eq!(patterns_of(&[("ITL P99", 1, &spread.to_vec())]), None);
        // Ends that print alike print once.
        let close = [7.4, 7.6, 8.4, 9.61, 9.64];
        assert_eq!(
            patterns_of(&[("ITL P99", 1, &close.to_vec())]).as_deref(),
            Some("the point runs settle into two patterns: ITL P99 7.4-8.4 ms in 3 of 5, 9.6 ms in 2 of 5; a single run may land in either")
        );
    }
}
