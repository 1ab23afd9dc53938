//! `whatif.json`, the contract between `report whatif` (which writes it)
//! and its readers: `report compare --prediction`, and `cargo xtask perf`,
//! which runs what it chose.
//!
//! The file says what the After is and why ([`WhatifReport::after`]), and
//! any server change to measure beside it ([`WhatifReport::server_change`]),
//! each a [`Decision`] with its reason in one sentence and the numbers
//! behind it. For batch inference the decision is the what-if engine's
//! ([`WhatifReport::engine`]: the fitted service, every candidate fix
//! simulated and ranked); for an LLM server it is the continuous-batching
//! engine's ([`WhatifReport::llm`]: the fitted step model, every candidate
//! simulated and ranked on TTFT, ITL, TPOT and e2e); for Triton's dynamic
//! batcher it is a rule over the Before's measurements. Whoever runs the
//! After only executes the decision: the loadgen flags, and the server
//! setting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of this layout; bumped on any incompatible change (2: the
/// decisions, and the engine's prediction under `engine`; 3: the LLM step
/// model's `attention_ms` in place of `prefill_sq_ms`; 4: an LLM
/// candidate's `started_together`; 5: the LLM step model's
/// `over_pass_steps`, `over_pass_ms`, `decode_spread` and
/// `prefill_spread`, the server's `pass_tokens`).
pub const SCHEMA_VERSION: u32 = 5;

/// Everything `report whatif --json` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhatifReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What the After runs; `None` when the analysis proposes nothing to
    /// run (the workflow then runs its fixed optimized client, and says so).
    pub after: Option<Decision>,
    /// A server change measured beside the After (which stays the client's
    /// change), when the analysis decided one.
    pub server_change: Option<Decision>,
    /// The what-if engine's prediction, when it ran (batch inference with
    /// probes of the batch cost).
    pub engine: Option<EngineReport>,
    /// The LLM what-if engine's prediction (`--scenario llm`): absent in
    /// files of the other scenarios.
    #[serde(default)]
    pub llm: Option<LlmEngineReport>,
}

impl WhatifReport {
    /// The decision named by `which`.
    pub fn decision(&self, which: DecisionRole) -> Option<&Decision> {
        match which {
            DecisionRole::After => self.after.as_ref(),
            DecisionRole::ServerChange => self.server_change.as_ref(),
        }
    }
}

/// Which of the file's decisions a run carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRole {
    /// [`WhatifReport::after`].
    After,
    /// [`WhatifReport::server_change`].
    ServerChange,
}

/// One change the analysis chose, as the runner carries it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Who changes something: the client, or the server.
    pub kind: CandidateKind,
    /// What it is, in words ("client batching B=10, W=5 ms, pooled",
    /// "max_num_seqs 20").
    pub label: String,
    /// The loadgen flags of the client that runs against it.
    pub loadgen_args: Vec<String>,
    /// The server setting to apply; `None` runs the Before's server.
    pub server_setting: Option<ServerSetting>,
    /// Why, one sentence with the numbers.
    pub reason: String,
    /// The numbers the reason quotes, by name (units in the names).
    pub numbers: BTreeMap<String, f64>,
}

/// A server setting a [`Decision`] applies, independent of which server
/// runs it; each runner maps it to its server's own flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerSetting {
    /// Sequences an LLM server decodes at once (vLLM's `max_num_seqs`,
    /// llama-server's `--parallel`).
    MaxNumSeqs {
        /// Sequence slots.
        max_num_seqs: u32,
    },
    /// A dynamic batcher that holds a request at most this long for others
    /// to join it (Triton's `max_queue_delay_microseconds`).
    DynamicBatching {
        /// The longest hold, microseconds.
        max_queue_delay_us: u64,
    },
    /// Tokens one step of an LLM server may process, decodes and prefill
    /// chunks together (vLLM's `max_num_batched_tokens`, stub-server's
    /// `--max-batched-tokens`, llama-server's `--batch-size`).
    MaxBatchedTokens {
        /// The step's token budget.
        max_batched_tokens: u32,
    },
    /// Whether a long prompt is prefilled in chunks beside the decodes
    /// (vLLM's `--enable-chunked-prefill`); off, a step that admits
    /// prompts prefills them whole and decodes nothing.
    ChunkedPrefill {
        /// On or off.
        enabled: bool,
    },
    /// Copies of the Before's server behind a balancer that sends each
    /// request to the copy with the fewest requests outstanding (ties to
    /// the first).
    Replicas {
        /// Copies in all.
        replicas: u32,
    },
}

impl ServerSetting {
    /// The setting in words ("max_num_seqs 20", "2 replicas behind a
    /// balancer").
    pub fn describe(&self) -> String {
        match *self {
            ServerSetting::MaxNumSeqs { max_num_seqs } => format!("max_num_seqs {max_num_seqs}"),
            ServerSetting::DynamicBatching { max_queue_delay_us } => {
                format!("dynamic batching, max_queue_delay {max_queue_delay_us} us")
            }
            ServerSetting::MaxBatchedTokens { max_batched_tokens } => {
                format!("max_batched_tokens {max_batched_tokens}")
            }
            ServerSetting::ChunkedPrefill { enabled } => {
                format!("chunked prefill {}", if enabled { "on" } else { "off" })
            }
            ServerSetting::Replicas { replicas } => {
                format!("{replicas} replicas behind a balancer (fewest outstanding)")
            }
        }
    }
}

/// The what-if engine's part: the fit, every candidate, its choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EngineReport {
    /// The fitted service model.
    pub fit: FitSummary,
    /// The load every candidate was simulated under.
    pub load: Load,
    /// SLA bound on P95, ms.
    pub sla_p95_ms: f64,
    /// Safety margin: a candidate must keep its P95 interval's upper end at
    /// or below `sla_p95_ms * (1 - margin)`.
    pub margin: f64,
    /// Bootstrap refits behind the prediction intervals.
    pub refits: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// The Before as measured (per-request connections, no batching).
    pub baseline: CandidateRow,
    /// Every candidate, the baseline included, ranked by predicted P95.
    pub candidates: Vec<CandidateRow>,
    /// The client-side candidate to run as the After; `None` when none
    /// meets the SLA with the margin.
    pub chosen: Option<CandidateRow>,
    /// Whether the best batched candidate's P95 is at least 10% below the
    /// best unbatched one's.
    pub batching_helps: bool,
    /// One sentence with the numbers behind the choice.
    pub conclusion: String,
    /// Highest open-loop rate that keeps the SLA.
    pub predicted_capacity_rps: PredictedCapacity,
    /// Wall time of the fit and the predictions, ms.
    pub elapsed_ms: f64,
}

impl EngineReport {
    /// The candidate to run as the After: the chosen one, else the
    /// client-side one with the lowest predicted P95 (its verdict will then
    /// say not met).
    pub fn after(&self) -> Option<&CandidateRow> {
        self.chosen.as_ref().or_else(|| {
            self.candidates
                .iter()
                .find(|c| c.kind == CandidateKind::Client)
        })
    }
}

/// A fitted quantity with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    /// The estimate from all executions.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
}

impl Estimate {
    /// Whether `x` lies within `[lo, hi]`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// How requests are offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// `concurrency` workers, each issuing its next request when its
    /// previous one completes, until `requests` have been issued.
    Closed {
        /// Workers.
        concurrency: u32,
        /// Logical requests in all.
        requests: u32,
    },
    /// Requests at `rate_rps`, evenly spaced or with exponential gaps.
    Open {
        /// Offered rate, requests per second.
        rate_rps: f64,
        /// Logical requests in all.
        requests: u32,
        /// Exponential (Poisson) gaps instead of constant ones.
        poisson: bool,
    },
}

impl Load {
    /// Logical requests in all.
    pub fn requests(&self) -> u32 {
        match *self {
            Load::Closed { requests, .. } | Load::Open { requests, .. } => requests,
        }
    }
}

/// The fit as the JSON shows it (the samples themselves stay out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FitSummary {
    /// Fixed cost per executed batch, ms.
    pub base_ms: Estimate,
    /// Cost per item, ms.
    pub per_item_ms: Estimate,
    /// Standard deviation of the log-normal cost multiplier.
    pub sigma: Estimate,
    /// Executions that run at once.
    pub workers: usize,
    /// Busy time over span in the run with the most overlap.
    pub mean_executions_in_flight: f64,
    /// Executions the fit used.
    pub executions: usize,
    /// Distinct batch sizes seen, ascending.
    pub batch_sizes: Vec<u32>,
    /// Largest batch the server is assumed to take.
    pub max_batch: u32,
    /// Mean client overhead per request (per-request connections), ms.
    pub overhead_ms_mean: f64,
    /// Mean TCP connect time of those rows, ms, when logged.
    pub connect_ms_mean: Option<f64>,
}

/// Who has to change something for a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// The Before as measured, for reference.
    Baseline,
    /// A client-side change only (pooling, batching): what `--after auto` may run.
    Client,
    /// A change to the server (labelled so; not the client's to make).
    Server,
}

/// A change to the simulated server a candidate of the engine assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerChange {
    /// The fitted workers plus one.
    OneMoreWorker {
        /// Workers in all.
        workers: usize,
    },
    /// Dynamic batching with this window.
    DynamicBatching {
        /// Window after the oldest queued request, ms.
        batch_window_ms: u64,
    },
}

/// One candidate's predicted latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateRow {
    /// Position by predicted P95, from 1.
    pub rank: usize,
    /// What the candidate is, in words.
    pub label: String,
    /// Who has to change something.
    pub kind: CandidateKind,
    /// Logical requests per HTTP request.
    pub batch_size: u32,
    /// Client batcher's wait, ms.
    pub batch_wait_ms: u64,
    /// Pooled (keep-alive) connections.
    pub pooled: bool,
    /// The server change assumed, if any.
    pub server_change: Option<ServerChange>,
    /// Flags that make loadgen run this client.
    pub loadgen_args: Vec<String>,
    /// Flags that make stub-server run this server (empty: as measured).
    pub server_args: Vec<String>,
    /// Predicted P50, ms (mean over the point simulations).
    pub p50_ms: f64,
    /// Predicted P95, ms.
    pub p95_ms: f64,
    /// Predicted P99, ms.
    pub p99_ms: f64,
    /// 95% prediction interval of P50, ms.
    pub p50_interval_ms: [f64; 2],
    /// 95% prediction interval of P95, ms.
    pub p95_interval_ms: [f64; 2],
    /// 95% prediction interval of P99, ms.
    pub p99_interval_ms: [f64; 2],
    /// Predicted requests per second over the run.
    pub throughput_rps: f64,
    /// Whether the P95 interval's upper end is within `sla * (1 - margin)`.
    pub meets_sla_with_margin: bool,
    /// Refits behind this row's intervals (fewer for rows far from the best).
    pub refits: usize,
}

/// Highest open-loop (evenly spaced) rate whose simulated P95 keeps the
/// SLA while the server keeps up; `None` when no rate does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictedCapacity {
    /// With the Before's client.
    pub baseline: Option<f64>,
    /// With the chosen candidate (`None` when nothing was chosen). The
    /// choice is made for the Before's load, which is a closed loop in the
    /// workflow; an open loop may want another client, see `best`.
    pub chosen: Option<f64>,
    /// The client with the highest predicted open-loop capacity (`None`
    /// when no client sustains any rate).
    #[serde(default)]
    pub best: Option<CapacityChoice>,
}

/// A client chosen for open-loop capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CapacityChoice {
    /// As the ranked table names it.
    pub label: String,
    /// Logical requests per HTTP request.
    pub batch_size: u32,
    /// Client batcher's wait, ms.
    pub batch_wait_ms: u64,
    /// The loadgen flags that run it.
    pub loadgen_args: Vec<String>,
    /// Its predicted capacity, requests/s.
    pub max_rate_rps: f64,
}

/// The LLM what-if engine's part (`report whatif --scenario llm`): the
/// step model fitted to the Before and the probe, every candidate
/// simulated on the continuous-batching scheduler and ranked, its choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmEngineReport {
    /// The fitted step model and the server it assumes.
    pub fit: StepFit,
    /// What every candidate replays: the Before's requests.
    pub workload: LlmWorkload,
    /// The load every candidate was simulated under.
    pub load: Load,
    /// The objectives judged (`ttft_p95<=500`, `itl_p99<=50`,
    /// `e2e_p95<=800`).
    pub objectives: Vec<String>,
    /// Safety margin: a candidate meets an objective `<= X` when its
    /// prediction interval's upper end is at most `X * (1 - margin)`.
    pub margin: f64,
    /// Bootstrap refits behind the prediction intervals.
    pub refits: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// The Before as measured, replayed by the simulation.
    pub baseline: LlmCandidateRow,
    /// Every candidate, the baseline included, ranked by predicted score.
    pub candidates: Vec<LlmCandidateRow>,
    /// The candidate to run as the After; `None` when none that can be
    /// run meets every objective with the margin.
    pub chosen: Option<LlmCandidateRow>,
    /// One sentence with the numbers behind the choice.
    pub conclusion: String,
    /// Wall time of the fit and the predictions, ms.
    pub elapsed_ms: f64,
}

impl LlmEngineReport {
    /// The candidate to run as the After: the chosen one, else the best
    /// ranked one that can be run and changes something.
    pub fn after(&self) -> Option<&LlmCandidateRow> {
        self.chosen.as_ref().or_else(|| {
            self.candidates
                .iter()
                .find(|c| c.runnable && c.kind != CandidateKind::Baseline)
        })
    }
}

/// The step model: what one step of the server costs, and the server it
/// runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepFit {
    /// Fixed cost of a step, ms.
    pub step_base_ms: Estimate,
    /// Cost per sequence in the step, ms.
    pub step_per_seq_ms: Estimate,
    /// Cost per prompt token prefilled in the step, ms.
    pub prefill_per_token_ms: Estimate,
    /// Cost of the tokens the step computes (its prompt tokens and one per
    /// decode) times the tokens of context of its sequences, ms per (1,000
    /// tokens x 1,000 tokens): what prompts prefilled together, or beside
    /// decodes of long context, cost beyond the sum of their costs alone;
    /// 0 where the runs cannot tell it or the server shows none.
    pub attention_ms: Estimate,
    /// Cost per 1,000 tokens of context of the step's sequences, ms
    /// (attention over each one's prompt and answer so far); 0 where the
    /// runs cannot tell it or the server shows none.
    pub kv_ms: Estimate,
    /// Cost per prompt whose prefill the step ends (what the server does
    /// once per prompt beside its tokens), ms; 0 where the runs cannot
    /// tell it or the server shows none.
    pub join_ms: Estimate,
    /// Steps (and first tokens of prompts alone) that computed more than
    /// the server's pass (`server.pass_tokens`): left out of the line, as
    /// llama.cpp computes a step in passes of `--ubatch-size` tokens and a
    /// step of more costs on another curve.
    pub over_pass_steps: usize,
    /// What those cost beyond the line, ms per 1,000 tokens a step
    /// computes beyond the pass; 0 with fewer than 3 of them.
    pub over_pass_ms: f64,
    /// Standard deviation of the log-normal multiplier of a step's cost,
    /// the spread simulated where too few steps of a kind were measured.
    pub sigma: Estimate,
    /// The spread the simulation draws for a step that decodes only: the
    /// observed over fitted cost of the measured ones (where their run ran
    /// its usual number of sequences), summarised by its median and P99;
    /// `None` where too few were measured (then `sigma`).
    pub decode_spread: Option<Spread>,
    /// The same for a step that prefills (a prompt joins).
    pub prefill_spread: Option<Spread>,
    /// The client's own time in a time to first token (sending, the
    /// server's intake, reading), ms.
    pub client_overhead_ms: Estimate,
    /// Standard deviation of the delay with which the client read a
    /// token after the step that made it, ms (from tokens of one step).
    pub read_jitter_ms: f64,
    /// Share of the steps that stalled (lasted longer than the line by
    /// more than six robust standard deviations); the simulation stalls
    /// the same share.
    pub stall_share: f64,
    /// What a stall added on average, ms.
    pub stall_mean_ms: f64,
    /// Steps observed back to back (a gap between two tokens of one
    /// stream), the fit's main observations.
    pub steps: usize,
    /// First tokens of requests that found the server idle (the probe's):
    /// their time to first token is the client's time plus one step.
    pub first_token_steps: usize,
    /// Where the prompt lengths came from (`column prompt_tokens`,
    /// `--prompt-tokens`, ...).
    pub prompt_tokens_from: String,
    /// The Before's server as the simulation runs it.
    pub server: LlmServerConfig,
    /// Where the slot count came from (`--max-num-seqs`, the server's
    /// metrics, the most sequences seen decoding at once).
    pub slots_from: String,
    /// The Before replayed by the fitted model, against what it measured.
    pub checks: Vec<ModelCheck>,
    /// What the runs could not tell apart, what the fit held instead and
    /// which runs would tell it (empty when nothing was held).
    #[serde(default)]
    pub caveats: Vec<String>,
}

/// The continuous-batching server the simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LlmServerConfig {
    /// Sequence slots.
    pub max_num_seqs: u32,
    /// Tokens one step may process; `None`: no limit.
    pub max_batched_tokens: Option<u32>,
    /// Chunked prefill.
    pub chunked_prefill: bool,
    /// KV capacity of the running sequences, tokens; `None`: unlimited.
    pub kv_cache_tokens: Option<u64>,
    /// Tokens per KV block.
    pub kv_block_tokens: u32,
    /// Blocks the prefix cache holds (0: none).
    pub prefix_cache_blocks: u64,
    /// Copies behind a balancer.
    pub replicas: u32,
    /// Tokens the server computes in one pass of a step (llama.cpp's
    /// `--ubatch-size`); `None`: no such limit known.
    pub pass_tokens: Option<u32>,
}

/// How a kind of step spread about the fitted cost: observed over fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spread {
    /// Steps measured.
    pub steps: usize,
    /// Median of observed over fitted.
    pub p50: f64,
    /// P99 of observed over fitted.
    pub p99: f64,
}

/// One statistic of the Before, predicted by replaying it and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelCheck {
    /// `itl_p50`, `itl_p99`, `ttft_p50`, `ttft_p95`, `e2e_p95`.
    pub metric: String,
    /// The replay's value, ms.
    pub predicted_ms: f64,
    /// The Before's, ms.
    pub measured_ms: f64,
    /// (predicted - measured) / measured, percent.
    pub error_pct: f64,
}

/// The requests every candidate replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmWorkload {
    /// Requests per simulated run.
    pub requests: u32,
    /// Prompt lengths, tokens.
    pub prompt_tokens: Lengths,
    /// Answer lengths, tokens.
    pub output_tokens: Lengths,
    /// Requests whose prompt begins with an earlier one's conversation
    /// (same `session_id`), which a prefix cache can serve.
    pub sharing_prefix: u32,
}

/// A length distribution in four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lengths {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// What an LLM candidate changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LlmChange {
    /// Nothing: the Before as measured.
    None,
    /// Server: sequence slots.
    MaxNumSeqs {
        /// Slots.
        max_num_seqs: u32,
    },
    /// Server: the step's token budget.
    MaxBatchedTokens {
        /// Tokens per step.
        max_batched_tokens: u32,
    },
    /// Server: chunked prefill on or off.
    ChunkedPrefill {
        /// On or off.
        enabled: bool,
    },
    /// Server: copies behind a balancer.
    Replicas {
        /// Copies in all.
        replicas: u32,
    },
    /// Client: at most this many streams in flight; the others wait at
    /// the client, their wait counted in TTFT from the intended start.
    ConcurrencyCap {
        /// Streams in flight at most.
        max_in_flight: u32,
    },
    /// Client: evenly spaced arrivals at the same rate instead of Poisson.
    SmoothArrivals,
    /// Client: requests that share a prefix sent one after another.
    OrderByPrefix,
}

/// A latency series predicted: three quantiles, each with its 95%
/// interval over the refits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictedSeries {
    /// P50, ms (the median point simulation's).
    pub p50_ms: f64,
    /// P95, ms.
    pub p95_ms: f64,
    /// P99, ms.
    pub p99_ms: f64,
    /// 95% interval of P50, ms.
    pub p50_interval_ms: [f64; 2],
    /// 95% interval of P95, ms.
    pub p95_interval_ms: [f64; 2],
    /// 95% interval of P99, ms.
    pub p99_interval_ms: [f64; 2],
}

/// One objective, predicted for a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectivePrediction {
    /// As written (`ttft_p95<=500`).
    pub objective: String,
    /// The predicted value.
    pub predicted: f64,
    /// Its 95% interval.
    pub interval: [f64; 2],
    /// Whether the interval's far end keeps the bound with the margin.
    pub meets_with_margin: bool,
}

/// One LLM candidate's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmCandidateRow {
    /// Position by score, from 1.
    pub rank: usize,
    /// What the candidate is, in words ("server: max_num_seqs 20").
    pub label: String,
    /// Who has to change something.
    pub kind: CandidateKind,
    /// The change.
    pub change: LlmChange,
    /// The server setting a runner applies (server changes).
    pub server_setting: Option<ServerSetting>,
    /// The loadgen flags of the After's client.
    pub loadgen_args: Vec<String>,
    /// Whether loadgen and the runner can carry it out as it stands.
    pub runnable: bool,
    /// When not runnable, what it would need.
    pub needs: Option<String>,
    /// Time to first token, from the intended start.
    pub ttft: PredictedSeries,
    /// Inter-token latency, every gap.
    pub itl: PredictedSeries,
    /// Time per output token.
    pub tpot: PredictedSeries,
    /// End-to-end latency.
    pub e2e: PredictedSeries,
    /// Every objective, predicted.
    pub objectives: Vec<ObjectivePrediction>,
    /// Whether every objective is met with the margin.
    pub meets_objectives_with_margin: bool,
    /// The worst objective's prediction over its bound (lower is better;
    /// at most `1 - margin` when it meets with the margin at the point).
    pub score: f64,
    /// Predicted requests per second over the run.
    pub throughput_rps: f64,
    /// Predicted preemptions per run.
    pub preemptions: f64,
    /// Refits behind this row's intervals.
    pub refits: usize,
    /// Each point simulation's TTFT P95, ms, ascending (the prediction is
    /// the median one).
    #[serde(default)]
    pub ttft_p95_point_runs_ms: Vec<f64>,
    /// Each point simulation's ITL P99, ms, ascending.
    #[serde(default)]
    pub itl_p99_point_runs_ms: Vec<f64>,
    /// Where the point simulations fall into two groups further apart than
    /// a tenth (a closed loop that settles into one of two steady
    /// patterns), the groups in words: a single run may land in either.
    #[serde(default)]
    pub patterns: Option<String>,
    /// For a closed loop, the prediction had the workers' first requests
    /// all reached the idle server in its first step (the point runs
    /// replay the Before's staggered starts instead); `None` for an open
    /// loop. With answers of one length and every slot kept busy, a run
    /// keeps the pattern its first steps set, and real runs start either
    /// way: on llama-server 4 slots under 8 streams ran in lockstep in 13
    /// of 27 stored runs (every slot's prompt in one step, ITL P99 2.0 to
    /// 5.4 ms) and staggered in the other 14 (4.0 to 8.1 ms).
    #[serde(default)]
    pub started_together: Option<StartedTogether>,
}

/// A candidate's prediction with a closed loop's first requests all in
/// the server's first step: the medians of its own point runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StartedTogether {
    /// TTFT P95, ms.
    pub ttft_p95_ms: f64,
    /// ITL P99, ms.
    pub itl_p99_ms: f64,
    /// End-to-end latency P95, ms.
    pub e2e_p95_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            kind: CandidateKind::Server,
            label: "max_num_seqs 20".to_owned(),
            loadgen_args: vec!["--profile".to_owned(), "baseline".to_owned()],
            server_setting: Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 }),
            reason: "20 streams for 8 slots".to_owned(),
            numbers: BTreeMap::from([("slots".to_owned(), 8.0)]),
        }
    }

    #[test]
    fn a_report_without_the_engine_round_trips_and_names_its_decisions() {
        let report = WhatifReport {
            schema_version: SCHEMA_VERSION,
            after: Some(decision()),
            server_change: None,
            engine: None,
            llm: None,
        };
        let text = serde_json::to_string(&report).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema_version"], 5);
        assert_eq!(value["after"]["kind"], "server");
        assert_eq!(
            value["after"]["server_setting"],
            serde_json::json!({"kind": "max_num_seqs", "max_num_seqs": 20})
        );
        assert!(value["engine"].is_null());
        let back: WhatifReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.decision(DecisionRole::After), Some(&decision()));
        assert_eq!(back.decision(DecisionRole::ServerChange), None);
        let delay = ServerSetting::DynamicBatching {
            max_queue_delay_us: 2000,
        };
        assert_eq!(
            serde_json::to_value(delay).unwrap(),
            serde_json::json!({"kind": "dynamic_batching", "max_queue_delay_us": 2000})
        );
    }

    #[test]
    fn a_load_counts_its_requests_and_an_estimate_holds_its_bounds() {
        let closed = Load::Closed {
            concurrency: 20,
            requests: 400,
        };
        assert_eq!(closed.requests(), 400);
        assert!(Estimate {
            value: 1.0,
            lo: 0.5,
            hi: 2.0
        }
        .contains(2.0));
    }
}
