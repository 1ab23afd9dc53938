//! `report whatif`'s flags, parsed into the library's
//! [`report::whatif::Options`].

use std::path::PathBuf;

use model::args::{Bound, FloatBound};
use report::whatif::{KnownServer, Options, Scenario, ServerChanges, ServerKind};
use stats::slo::Slo;

/// What is analysed (`report whatif --scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ScenarioArg {
    /// Batch inference: the what-if engine chooses the client change.
    Inference,
    /// An LLM server with continuous batching: fit the step model, predict
    /// TTFT, ITL, TPOT and e2e of every server and client change, choose.
    Llm,
}

/// Chunked prefill of the Before's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    /// On (vLLM V1, stub-server).
    On,
    /// Off: a step that admits prompts prefills them whole, decoding nothing.
    Off,
}

/// A server change the runner can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ChangeArg {
    /// Sequence slots (max_num_seqs).
    Slots,
    /// The step's token budget (max_batched_tokens).
    BatchedTokens,
    /// Chunked prefill on or off.
    ChunkedPrefill,
    /// One more replica behind a balancer.
    Replicas,
}

/// What is known of the server beyond its logs (`report whatif --server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServerArg {
    /// Nothing: only client changes are chosen.
    Any,
    /// stub-server: its dynamic batcher's candidates are predicted (never
    /// chosen), as with --server-dynamic-batching.
    Simulator,
    /// NVIDIA Triton: its dynamic batcher's max_queue_delay is decided from
    /// --before-stats, a server change measured beside the After.
    Triton,
}

/// Flags of `report whatif`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WhatifArgs {
    /// What is analysed: `inference` (the what-if engine: fit, predict the
    /// candidate fixes, choose the client change) or `llm` (an LLM server
    /// with continuous batching: fit the step model to the Before and the
    /// --probe logs, predict TTFT, ITL, TPOT and e2e of every server and
    /// client change, choose the After).
    #[arg(long, value_enum, default_value = "inference", value_name = "SCENARIO")]
    scenario: ScenarioArg,
    /// The server, where more is known than its logs: `any`, `simulator`
    /// (stub-server: dynamic-batching candidates predicted) or `triton`
    /// (also decide its dynamic batcher's max_queue_delay from
    /// --before-stats, a server change measured beside the After; without
    /// --probe, that decision alone).
    #[arg(long, value_enum, default_value = "any", value_name = "SERVER")]
    server: ServerArg,
    /// With --scenario llm: the sequence slots (max_num_seqs) of the
    /// Before's server [default: from --before-metrics, else the most
    /// sequences seen decoding at once].
    #[arg(long, value_name = "N", value_parser = parse_max_num_seqs, allow_negative_numbers = true)]
    max_num_seqs: Option<u32>,
    /// With --scenario llm: tokens one step of the Before's server may
    /// process (max_num_batched_tokens) [default: no limit].
    #[arg(long, value_name = "TOKENS", value_parser = parse_batched_tokens, allow_negative_numbers = true)]
    max_batched_tokens: Option<u32>,
    /// With --scenario llm: tokens the Before's server computes in one pass
    /// of a step (llama.cpp's --ubatch-size, 512 by default; vLLM and
    /// SGLang have no such limit) [default: none]. Steps of more are
    /// fitted apart, as the cost beyond the pass.
    #[arg(long, value_name = "TOKENS", value_parser = parse_pass_tokens, allow_negative_numbers = true)]
    pass_tokens: Option<u32>,
    /// With --scenario llm: chunked prefill of the Before's server.
    #[arg(long, value_enum, default_value = "on", value_name = "ON|OFF")]
    chunked_prefill: OnOff,
    /// With --scenario llm: KV capacity of the Before's server, tokens
    /// [default: unlimited].
    #[arg(long, value_name = "TOKENS", value_parser = parse_kv_cache_tokens, allow_negative_numbers = true)]
    kv_cache_tokens: Option<u64>,
    /// With --scenario llm: tokens per KV block of the Before's server.
    #[arg(long, value_name = "TOKENS", default_value_t = 16, value_parser = parse_kv_block_tokens, allow_negative_numbers = true)]
    kv_block_tokens: u32,
    /// With --scenario llm: blocks the Before's server's prefix cache
    /// holds (0: none).
    #[arg(long, value_name = "BLOCKS", default_value_t = 0, value_parser = parse_prefix_cache_blocks, allow_negative_numbers = true)]
    prefix_cache_blocks: u64,
    /// With --scenario llm: copies of the Before's server behind a balancer.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_replicas, allow_negative_numbers = true)]
    replicas: u32,
    /// With --scenario llm: prompt tokens of every row whose log has no
    /// prompt_tokens (or input_tokens) column.
    #[arg(long, value_name = "TOKENS", value_parser = parse_prompt_tokens, allow_negative_numbers = true)]
    prompt_tokens: Option<u32>,
    /// With --scenario llm: each --probe log's prompt tokens, in --probe's
    /// order, for probe logs without the column (repeatable).
    #[arg(long = "probe-prompt-tokens", value_name = "TOKENS", num_args = 1.., value_parser = parse_prompt_tokens, allow_negative_numbers = true)]
    probe_prompt_tokens: Vec<u32>,
    /// With --scenario llm: the server's metrics through the Before
    /// (loadgen --server-metrics-url's JSON time series): the slots when
    /// --max-num-seqs is not given.
    #[arg(long, value_name = "FILE.json")]
    before_metrics: Option<PathBuf>,
    /// With --scenario llm: an objective, repeatable, as `report compare
    /// --sla` writes them ('ttft_p95<=500', 'itl_p99<=50', 'tpot_mean<=40')
    /// [default: ttft_p95<=500 and itl_p99<=50]; the P95 SLA on e2e latency
    /// (--sla-p95-ms) is always one.
    #[arg(long = "sla", value_name = "EXPR")]
    slos: Vec<Slo>,
    /// With --scenario llm: the server changes the runner can apply,
    /// comma-separated; the others are predicted, never chosen.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "slots,batched-tokens,chunked-prefill,replicas"
    )]
    server_changes: Vec<ChangeArg>,
    /// The Before run's loadgen log (for the engine it needs service_ms:
    /// Server-Timing, or --before-stats; for --scenario llm the LLM columns).
    #[arg(long, value_name = "FILE.csv")]
    before: PathBuf,
    /// Probe runs (loadgen logs), repeatable: at other batch sizes
    /// (inference), or one request at a time at a few prompt lengths (llm).
    #[arg(long = "probe", value_name = "FILE.csv", num_args = 1..)]
    probes: Vec<PathBuf>,
    /// For a server that sends no Server-Timing (Triton): its statistics
    /// around the Before (`loadgen --server-stats FILE`); needs
    /// --probe-stats for every --probe.
    #[arg(long, value_name = "FILE.json")]
    before_stats: Option<PathBuf>,
    /// The server's statistics around each probe, in --probe's order.
    #[arg(long = "probe-stats", value_name = "FILE.json", num_args = 1.., requires = "before_stats")]
    probe_stats: Vec<PathBuf>,
    /// Closed loop with this many workers [default: the most requests in
    /// flight in the Before].
    #[arg(long, value_name = "N", conflicts_with = "rate",
          value_parser = parse_concurrency, allow_negative_numbers = true)]
    concurrency: Option<u32>,
    /// Open loop at this rate, requests per second, instead of a closed loop.
    #[arg(long, value_name = "RPS", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// With --rate: exponential (Poisson) gaps instead of even spacing.
    #[arg(long, requires = "rate")]
    poisson: bool,
    /// Logical requests per simulated run [default: the Before's rows].
    #[arg(long, value_name = "N", value_parser = parse_requests, allow_negative_numbers = true)]
    requests: Option<u32>,
    /// SLA bound on P95, ms.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 800.0,
        value_parser = parse_sla_p95_ms,
        allow_negative_numbers = true
    )]
    sla_p95_ms: f64,
    /// Fraction of the SLA kept in reserve: a candidate's P95 interval must
    /// end at or below SLA * (1 - margin).
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.2,
        value_parser = parse_margin,
        allow_negative_numbers = true
    )]
    margin: f64,
    /// The server's largest batch [default: the largest batch seen].
    #[arg(long, value_name = "N", value_parser = parse_max_batch, allow_negative_numbers = true)]
    max_batch: Option<u32>,
    /// The server supports dynamic batching: add those candidates.
    #[arg(long)]
    server_dynamic_batching: bool,
    /// Bootstrap refits behind the prediction intervals.
    #[arg(long, value_name = "R", default_value_t = 40, value_parser = parse_refits, allow_negative_numbers = true)]
    refits: u64,
    /// Seed of every draw (same seed, same JSON but for elapsed_ms).
    #[arg(long, default_value_t = 1, value_parser = parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// Where to write the JSON report.
    #[arg(long, value_name = "OUT.json")]
    json: PathBuf,
}

impl WhatifArgs {
    /// The options the flags give.
    pub(crate) fn options(&self) -> Options {
        Options {
            scenario: match self.scenario {
                ScenarioArg::Inference => Scenario::Inference,
                ScenarioArg::Llm => Scenario::Llm,
            },
            server: match self.server {
                ServerArg::Any => ServerKind::Any,
                ServerArg::Simulator => ServerKind::Simulator,
                ServerArg::Triton => ServerKind::Triton,
            },
            llm_server: KnownServer {
                max_num_seqs: self.max_num_seqs,
                max_batched_tokens: self.max_batched_tokens,
                chunked_prefill: self.chunked_prefill == OnOff::On,
                kv_cache_tokens: self.kv_cache_tokens,
                kv_block_tokens: self.kv_block_tokens,
                prefix_cache_blocks: self.prefix_cache_blocks,
                replicas: self.replicas,
                pass_tokens: self.pass_tokens,
            },
            prompt_tokens: self.prompt_tokens,
            probe_prompt_tokens: self.probe_prompt_tokens.clone(),
            before_metrics: self.before_metrics.clone(),
            slos: self.slos.clone(),
            server_changes: ServerChanges {
                slots: self.server_changes.contains(&ChangeArg::Slots),
                batched_tokens: self.server_changes.contains(&ChangeArg::BatchedTokens),
                chunked_prefill: self.server_changes.contains(&ChangeArg::ChunkedPrefill),
                replicas: self.server_changes.contains(&ChangeArg::Replicas),
            },
            before: self.before.clone(),
            probes: self.probes.clone(),
            before_stats: self.before_stats.clone(),
            probe_stats: self.probe_stats.clone(),
            concurrency: self.concurrency,
            rate_rps: self.rate,
            poisson: self.poisson,
            requests: self.requests,
            sla_p95_ms: self.sla_p95_ms,
            margin: self.margin,
            max_batch: self.max_batch,
            server_dynamic_batching: self.server_dynamic_batching,
            refits: self.refits,
            seed: self.seed,
            json: self.json.clone(),
        }
    }
}

fn parse_max_num_seqs(text: &str) -> Result<u32, String> {
    Bound {
        what: "--max-num-seqs",
        min: 1,
        max: 4096,
    }
    .parse(text)
}

fn parse_batched_tokens(text: &str) -> Result<u32, String> {
    Bound {
        what: "--max-batched-tokens",
        min: 1,
        max: 1_048_576,
    }
    .parse(text)
}

fn parse_pass_tokens(text: &str) -> Result<u32, String> {
    Bound {
        what: "--pass-tokens",
        min: 1,
        max: 1_048_576,
    }
    .parse(text)
}

fn parse_kv_cache_tokens(text: &str) -> Result<u64, String> {
    Bound {
        what: "--kv-cache-tokens",
        min: 1,
        max: 1_000_000_000,
    }
    .parse(text)
}

fn parse_kv_block_tokens(text: &str) -> Result<u32, String> {
    Bound {
        what: "--kv-block-tokens",
        min: 1,
        max: 1024,
    }
    .parse(text)
}

fn parse_prefix_cache_blocks(text: &str) -> Result<u64, String> {
    Bound {
        what: "--prefix-cache-blocks",
        min: 0,
        max: 100_000_000,
    }
    .parse(text)
}

fn parse_replicas(text: &str) -> Result<u32, String> {
    Bound {
        what: "--replicas",
        min: 1,
        max: 64,
    }
    .parse(text)
}

fn parse_prompt_tokens(text: &str) -> Result<u32, String> {
    Bound {
        what: "--prompt-tokens",
        min: 1,
        max: 1_000_000,
    }
    .parse(text)
}

fn parse_concurrency(text: &str) -> Result<u32, String> {
    Bound {
        what: "--concurrency",
        min: 1,
        max: 1_000_000,
    }
    .parse(text)
}

fn parse_requests(text: &str) -> Result<u32, String> {
    Bound {
        what: "--requests",
        min: 1,
        max: 100_000_000,
    }
    .parse(text)
}

fn parse_max_batch(text: &str) -> Result<u32, String> {
    Bound {
        what: "--max-batch",
        min: 1,
        max: 1024,
    }
    .parse(text)
}

fn parse_refits(text: &str) -> Result<u64, String> {
    Bound {
        what: "--refits",
        min: 2,
        max: 10_000,
    }
    .parse(text)
}

fn parse_seed(text: &str) -> Result<u64, String> {
    Bound {
        what: "--seed",
        min: 0,
        max: u64::MAX,
    }
    .parse(text)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--rate (requests/s)",
        min: 0.0,
        max: 1_000_000.0,
        min_inclusive: false,
    }
    .parse(text)
}

fn parse_sla_p95_ms(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--sla-p95-ms",
        min: 0.0,
        max: f64::INFINITY,
        min_inclusive: false,
    }
    .parse(text)
}

/// A fraction of the SLA: from 0 up to, not including, 1.
fn parse_margin(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--margin",
        min: 0.0,
        max: 0.99,
        min_inclusive: true,
    }
    .parse(text)
}
