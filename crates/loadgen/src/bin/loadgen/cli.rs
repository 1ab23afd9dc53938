//! The command line's definition (clap): a run (`loadgen --url ... -n
//! 400`, the flags at top level, with the load shape of [`RunArgs`]) and
//! `loadgen capacity` ([`CapacityArgs`]) share the target and request flags
//! ([`TargetArgs`]); `capacity` chooses the load itself and so refuses the
//! flags that would set it. The values are parsed in [`crate::values`],
//! and [`crate::convert`] turns the flags into the library's
//! configuration.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Method};
use loadgen::{
    parse_extra_body, LengthDist, ShardArg, Stages, Turns, Warmup, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SEED,
};
use stats::slo::Slo;

use crate::values::{
    parse_batch_size, parse_batch_wait_ms, parse_block_tokens, parse_busy_poll_us,
    parse_concurrency, parse_header_arg, parse_length_dist, parse_max_in_flight, parse_max_tokens,
    parse_metrics_linger, parse_metrics_listen, parse_precision, parse_prefix_count,
    parse_prefix_tokens, parse_rate, parse_repeats, parse_requests, parse_run_duration, parse_seed,
    parse_server_metrics_interval, parse_shape, parse_shard, parse_slo, parse_speedup,
    parse_stages, parse_start_at, parse_step_duration, parse_think_time, parse_threads,
    parse_time_limit, parse_timeout, parse_trace_offset, parse_turns, parse_warmup, ItemShape,
};

/// HTTP load generator for inference APIs.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// `capacity`; none: a run with the flags given.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// The target and how requests are made.
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// The load shape and outputs of a run.
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// Live Prometheus metrics.
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
}

/// Live Prometheus metrics, for a run and for `capacity`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics while the load runs
    /// (request, error and token counters; latency, TTFT, ITL and send
    /// lateness histograms; requests in flight): IP:PORT, such as
    /// 127.0.0.1:9464 or [::1]:9464 (port 0: a free one, printed on
    /// stderr). The listener stops when the run ends (see
    /// --metrics-linger).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_listen)]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,

    /// Keep serving /metrics this long after the run ends, so a last
    /// scrape sees the totals (set it to the scrape interval or more):
    /// 0s to 10m [default: 0s].
    #[arg(long, value_name = "DURATION", requires = "metrics_listen", value_parser = parse_metrics_linger)]
    pub(crate) metrics_linger: Option<Duration>,
}

/// Commands besides a run.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Find the highest open-loop rate that keeps every --sla objective.
    ///
    /// Steps of --warmup + --step-duration at one rate each, doubling from
    /// --start-rate until a step fails, bisecting to --precision, confirmed
    /// by --repeats steps; a table of steps on stdout, the answer and the
    /// curve in --json. Exit 0: an answer; 1: nothing sustainable (or
    /// interrupted); 2: usage or setup error.
    Capacity(Box<CapacityArgs>),
}

/// The target and the request flags, shared by a run and `capacity`.
#[derive(Debug, clap::Args)]
pub(crate) struct TargetArgs {
    /// Endpoint to load: any http:// or https:// URL (a host name, an IPv4
    /// address or a bracketed IPv6 address). For --api kserve-v2 the
    /// server's base URL; requests go to {base}/v2/models/{model}/infer
    /// [default: http://127.0.0.1:8000/v1/infer; kserve-v2: http://127.0.0.1:8000;
    /// kserve-v2-grpc: http://127.0.0.1:8001].
    #[arg(long)]
    pub(crate) url: Option<String>,

    /// Request format: `simulator` (the simulator's {"model","input"} wire
    /// format; outputs verified), `template` (any JSON body from
    /// --body-template), `kserve-v2` (NVIDIA Triton's protocol for
    /// --model), `openai-chat` or `openai-completions` (an
    /// OpenAI-compatible LLM server, streamed: TTFT, inter-token latency,
    /// tokens), `kserve-v2-grpc` (KServe v2 over gRPC, Triton's port 8001:
    /// --url http://HOST:PORT, or https:// for TLS). Only `simulator`
    /// verifies outputs by default; the others log output digests (see
    /// --verify).
    #[arg(long, value_enum, default_value_t = ApiArg::Simulator)]
    pub(crate) api: ApiArg,

    /// --api kserve-v2-grpc: call ModelStreamInfer, one stream per request,
    /// for a decoupled model (an LLM backend): every response is a token
    /// (TTFT, inter-token latency, tokens). The prompt goes in input
    /// text_input (or --input-name), --max-tokens in input max_tokens.
    #[arg(long)]
    pub(crate) streaming: bool,

    /// --api openai-*: ask for the whole answer as one JSON body; only
    /// end-to-end latency and `usage` tokens are measured.
    #[arg(long)]
    pub(crate) no_stream: bool,

    /// --api openai-*: `max_tokens` of every request; --api kserve-v2-grpc
    /// --streaming: the value of the model's max_tokens input.
    #[arg(long, value_parser = parse_max_tokens, allow_negative_numbers = true)]
    pub(crate) max_tokens: Option<u32>,

    /// --api openai-*: JSON object merged into every body last, e.g.
    /// '{"ignore_eos": true, "temperature": 0}'.
    #[arg(long, value_name = "JSON", value_parser = parse_extra_body)]
    pub(crate) extra_body: Option<serde_json::Map<String, serde_json::Value>>,

    /// JSON body template for --api template; the placeholders `{{input}}`,
    /// `{{inputs}}` (a JSON array, for --batch-size > 1), `{{model}}` and
    /// `{{id}}` stand for whole JSON values, e.g.
    /// `{"model": {{model}}, "inputs": {{inputs}}}`.
    #[arg(long, value_name = "FILE")]
    pub(crate) body_template: Option<PathBuf>,

    /// --api template: a response succeeds only if its JSON holds this path
    /// (keys and indices separated by dots: outputs, data.0.embedding); for a
    /// batched request it must hold one item per input.
    #[arg(long, value_name = "PATH")]
    pub(crate) expect_json_path: Option<String>,

    /// --api kserve-v2(-grpc): the input tensor [default: the model's only input].
    #[arg(long, value_name = "NAME")]
    pub(crate) input_name: Option<String>,

    /// --api kserve-v2(-grpc): the input's datatype; text goes as BYTES, numbers
    /// from a generator seeded by the request id [default: the model's].
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub(crate) input_datatype: Option<DatatypeArg>,

    /// --api kserve-v2(-grpc): the shape of one item, without the batch dimension,
    /// e.g. 1 or 3,224,224 [default: the model's, variable dimensions 1].
    #[arg(long, value_name = "DIMS", value_parser = parse_shape, allow_negative_numbers = true)]
    pub(crate) input_shape: Option<ItemShape>,

    /// --api kserve-v2(-grpc): the output to read [default: the model's first].
    #[arg(long, value_name = "NAME")]
    pub(crate) output_name: Option<String>,

    /// HTTP method of every request.
    #[arg(long, value_enum, ignore_case = true, default_value_t = MethodArg::Post)]
    pub(crate) method: MethodArg,

    /// https: trust the CA certificates in this PEM file, besides the
    /// platform's roots.
    #[arg(long, value_name = "FILE.pem")]
    pub(crate) cacert: Option<PathBuf>,

    /// https: do not verify the server's certificate (said in the summary
    /// and the log).
    #[arg(long, short = 'k')]
    pub(crate) insecure: bool,

    /// https: resume TLS sessions on new connections even with
    /// --connection per-request (by default each of those pays a full
    /// handshake, as input.py's client per request does; pooled
    /// connections always may resume).
    #[arg(long)]
    pub(crate) tls_resume: bool,

    /// https: client certificate chain for mutual TLS (PEM; needs --key).
    #[arg(long, value_name = "FILE.pem", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// https: private key of --cert (PEM).
    #[arg(long, value_name = "FILE.pem", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    /// Preset: `baseline` reproduces input.py (new connection per request);
    /// `optimized` pools connections and micro-batches (size 10, wait 5 ms).
    #[arg(long, value_enum)]
    pub(crate) profile: Option<ProfileArg>,

    /// Connection reuse [default: pooled; baseline profile: per-request].
    #[arg(long, value_enum)]
    pub(crate) connection: Option<ConnectionArg>,

    /// Use HTTP/2 instead of HTTP/1.1: cleartext with prior knowledge for
    /// http://, required through ALPN for https:// (without it ALPN offers
    /// http/1.1 only).
    #[arg(long)]
    pub(crate) http2: bool,

    /// Logical requests per HTTP request (1 = no batching) [default: 1; optimized: 10].
    #[arg(long, value_parser = parse_batch_size, allow_negative_numbers = true)]
    pub(crate) batch_size: Option<usize>,

    /// Longest wait of the oldest queued request for its batch to fill, ms;
    /// needs a batch size of 2 or more [default: 0; optimized: 5].
    #[arg(long, value_parser = parse_batch_wait_ms, allow_negative_numbers = true)]
    pub(crate) batch_wait_ms: Option<u64>,

    /// Check every output against the simulator's expected output, with an
    /// API other than `simulator`: only for a server known to give the
    /// simulator's answers (stub-server's OpenAI and KServe routes, the
    /// workflow's Triton model). A real model gives its own answers, which
    /// would all fail; without this flag those APIs log output digests.
    #[arg(long, conflicts_with = "no_verify")]
    pub(crate) verify: bool,

    /// --api simulator: do not compare outputs with the simulator's
    /// expected outputs (a real endpoint speaking its format); rows still
    /// carry output digests. The other APIs do not verify unless --verify
    /// is given.
    #[arg(long)]
    pub(crate) no_verify: bool,

    /// Log no output digest: for a real model whose answers change with
    /// how the server batches them (llama.cpp's and vLLM's kernels are not
    /// batch-invariant), so a Before and an After are not expected to give
    /// the same text and nothing should compare them.
    #[arg(long, conflicts_with = "verify")]
    pub(crate) no_digest: bool,

    /// Extra header, 'Name: value' (repeatable). One named like a default
    /// header (Content-Type, Accept, User-Agent) replaces it; Host replaces
    /// the URL's host over HTTP/1.1 (refused with --http2). Headers that
    /// frame the message or manage the connection are refused:
    /// Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,

    /// Payloads, cycled: JSONL, one {"input": "...", "model": "..."} per
    /// line; or with --payloads-format sharegpt a ShareGPT JSON dataset
    /// [default: input.py's prompts].
    #[arg(long, value_name = "FILE")]
    pub(crate) payloads: Option<PathBuf>,

    /// The format of --payloads: `jsonl`, or `sharegpt` (a JSON list of
    /// {"conversations": [{"from": "human", "value": ...}, {"from": "gpt",
    /// ...}]}: each human turn is a prompt, cycled; with --turns from-data
    /// each conversation is a session whose human turns are its turns).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "payloads")]
    pub(crate) payloads_format: Option<PayloadsFormatArg>,

    /// --api openai-*: a local Hugging Face tokenizer.json (nothing is
    /// downloaded): every synthetic prompt (--input-tokens, --trace) then
    /// has exactly its drawn number of tokens under it (the chat template's
    /// tokens come on top). Without it prompts are common English words,
    /// about one token each, and the start line says lengths are
    /// approximate.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokenizer: Option<PathBuf>,

    /// --api openai-*: synthetic prompts of drawn lengths, in tokens: N
    /// (fixed), normal:MEAN,STDDEV or uniform:LO,HI (drawn per request from
    /// --seed, truncated at 1; the log's input_tokens). Each prompt is
    /// unique from its first words, so no two share a prefix by accident.
    #[arg(long, value_name = "DIST", value_parser = parse_length_dist, allow_negative_numbers = true)]
    pub(crate) input_tokens: Option<LengthDist>,

    /// --api openai-*: each request's max_tokens, drawn as --input-tokens
    /// (the log's max_tokens); the summary compares them with the tokens
    /// received. Instead of --max-tokens.
    #[arg(long, value_name = "DIST", value_parser = parse_length_dist, allow_negative_numbers = true)]
    pub(crate) output_tokens: Option<LengthDist>,

    /// --api openai-*: also send "ignore_eos": true and "min_tokens" equal
    /// to max_tokens (vLLM's and llama.cpp's ways to make an answer exactly
    /// max_tokens long; some servers refuse unknown fields, so it is asked
    /// for).
    #[arg(long)]
    pub(crate) ignore_eos: bool,

    /// --api openai-* with --input-tokens: every prompt starts with one of
    /// --prefix-count shared prefixes of this many tokens (a system prompt
    /// the server's prefix cache can reuse); the drawn length follows it.
    #[arg(long, value_name = "N", value_parser = parse_prefix_tokens, allow_negative_numbers = true, requires = "prefix_count")]
    pub(crate) prefix_tokens: Option<u32>,

    /// How many distinct shared prefixes (1 to 10000), each prompt's picked
    /// by --seed; needs --prefix-tokens.
    #[arg(long, value_name = "K", value_parser = parse_prefix_count, allow_negative_numbers = true, requires = "prefix_tokens")]
    pub(crate) prefix_count: Option<u32>,

    /// Model name sent when a payload does not name one.
    #[arg(long, default_value = model::DEFAULT_MODEL)]
    pub(crate) model: String,

    /// Limit on one HTTP request, connection set-up included (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub(crate) timeout: Duration,

    /// No start lines and no progress bar on stderr (the bar is drawn only
    /// when stderr is a terminal).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

/// What a run sends and writes: its load shape and outputs.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Closed-loop workers (with --rate: the warm-up's workers) [default: 20].
    #[arg(short = 'c', long, value_parser = parse_concurrency, allow_negative_numbers = true)]
    pub(crate) concurrency: Option<usize>,

    /// Logical requests to send (with --turns: conversations); refused with
    /// --trace, whose rows are the requests [default: 400 unless -z,
    /// --stages or --trace is given].
    #[arg(short = 'n', long, value_parser = parse_requests, allow_negative_numbers = true)]
    pub(crate) requests: Option<u64>,

    /// Send for this long (500ms, 5s, 2m; at most 1h).
    #[arg(short = 'z', long, value_parser = parse_run_duration)]
    pub(crate) duration: Option<Duration>,

    /// Open loop: send this many requests per second regardless of responses.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    pub(crate) rate: Option<f64>,

    /// Open-loop arrival process (--rate or --stages) [default: constant].
    #[arg(long, value_enum)]
    pub(crate) arrival: Option<ArrivalArg>,

    /// Seed of the Poisson arrivals, of drawn lengths (--input-tokens,
    /// --output-tokens, --turns) and of the prompts' words.
    #[arg(long, default_value_t = DEFAULT_SEED, value_parser = parse_seed, allow_negative_numbers = true)]
    pub(crate) seed: u64,

    /// Open loop (--rate, --stages, --trace): most requests (or
    /// conversations) in flight; sends beyond it are dropped and logged as
    /// failed rows with error `dropped` [default: 1000].
    #[arg(long, value_parser = parse_max_in_flight, allow_negative_numbers = true)]
    pub(crate) max_in_flight: Option<usize>,

    /// A load that changes: DURATION:TARGET stages, e.g.
    /// '30s:10,2m:50,30s:0'. Without -c the open loop's rate ramps
    /// linearly within each stage from where the last ended (the first
    /// from --rate, or 0), as k6's ramping-arrival-rate; with -c the
    /// closed loop's workers step to each stage's target at its start (-c
    /// then sizes only a --warmup). The stages set the run's length (no
    /// -z); -n may stop it earlier.
    #[arg(long, value_name = "STAGES", value_parser = parse_stages)]
    pub(crate) stages: Option<Stages>,

    /// --api openai-chat: conversations of this many turns: DIST as
    /// --input-tokens, or from-data (each --payloads-format sharegpt
    /// conversation's human turns). A turn is sent after the previous
    /// answer and --think-time, with the whole history (the server's
    /// answers included); a failed turn ends its conversation. -n counts
    /// conversations; closed loop: each worker runs one after another;
    /// open loop: conversations start on the schedule.
    #[arg(long, value_name = "DIST|from-data", value_parser = parse_turns, allow_negative_numbers = true)]
    pub(crate) turns: Option<Turns>,

    /// With --turns: the wait between an answer and the next turn (e.g.
    /// 2s; at most 10m) [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_think_time, requires = "turns")]
    pub(crate) think_time: Option<Duration>,

    /// --api openai-*: replay a trace: each row is a request due at its
    /// timestamp (open loop, latency from that time), with the row's input
    /// length as its prompt and its output length as max_tokens. Mooncake
    /// JSONL (timestamp ms, input_length, output_length, hash_ids: prompts
    /// sharing their first k ids share their first k blocks of text),
    /// Azure CSV (TIMESTAMP, ContextTokens, GeneratedTokens) or BurstGPT
    /// CSV (Timestamp s, Request tokens, Response tokens; rows with 0
    /// response tokens failed in production and are skipped). Read as a
    /// stream, checked whole before the first request.
    #[arg(long, value_name = "FILE")]
    pub(crate) trace: Option<PathBuf>,

    /// The --trace's format [default: told from the file's first line].
    #[arg(long, value_enum, value_name = "FORMAT", requires = "trace")]
    pub(crate) trace_format: Option<TraceFormatArg>,

    /// Replay the trace this many times faster (2: twice the rate, 0.5:
    /// half) [default: 1].
    #[arg(long, value_name = "X", value_parser = parse_speedup, allow_negative_numbers = true, requires = "trace")]
    pub(crate) trace_speedup: Option<f64>,

    /// Start the replay this long after the trace's first row (on the
    /// trace's clock, e.g. 10m) [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_trace_offset, requires = "trace")]
    pub(crate) trace_start: Option<Duration>,

    /// Replay only this long of the trace (on its own clock) from
    /// --trace-start [default: to its end].
    #[arg(long, value_name = "DURATION", value_parser = parse_trace_offset, requires = "trace")]
    pub(crate) trace_duration: Option<Duration>,

    /// Prompt tokens per Mooncake hash id (1 to 1000000) [default: 512].
    #[arg(long, value_name = "N", value_parser = parse_block_tokens, allow_negative_numbers = true, requires = "trace")]
    pub(crate) trace_block_tokens: Option<u32>,

    /// Sort the trace's rows by time (holding them all in memory) instead
    /// of refusing rows out of order.
    #[arg(long, requires = "trace")]
    pub(crate) trace_sort: bool,

    /// Send nothing: build every request the run would send (no warm-up)
    /// and write them to FILE, one JSON object a line (request_id, at_s
    /// on the open loop's schedule, input_tokens, max_tokens, body). Needs
    /// a known number of requests (-n, --stages or --trace); not with
    /// --turns, whose later turns carry answers.
    #[arg(long, value_name = "FILE")]
    pub(crate) dry_run: Option<PathBuf>,

    /// Per-request CSV log (streamed); none without this flag.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,

    /// --api kserve-v2(-grpc): read the model's statistics (Triton's
    /// /v2/models/{m}/stats, or the ModelStatistics RPC) before and after
    /// the load and write both and their difference here, as JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) server_stats: Option<PathBuf>,

    /// A Prometheus metrics URL (e.g. http://127.0.0.1:8000/metrics).
    /// With --server-metrics FILE it is scraped before, through and after
    /// the run on the log's clock (vLLM, SGLang, TGI and llama.cpp names
    /// understood, others kept as they are); an unreachable or wrong URL is
    /// a warning and the run goes on. With --server-stats, Triton's
    /// nv_inference_* counters there stand in when the statistics endpoint
    /// is closed.
    #[arg(long, value_name = "URL")]
    pub(crate) server_metrics_url: Option<String>,

    /// Where the scraped series of --server-metrics-url goes, as JSON.
    #[arg(long, value_name = "FILE", requires = "server_metrics_url")]
    pub(crate) server_metrics: Option<PathBuf>,

    /// Time between scrapes of --server-metrics-url: 100ms to 10m.
    #[arg(long, value_name = "DURATION", value_parser = parse_server_metrics_interval, requires = "server_metrics")]
    pub(crate) server_metrics_interval: Option<Duration>,

    /// Write the run summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,

    /// Sent before the measured run (closed loop, -c workers), logged with
    /// phase=warmup and left out of every statistic: a request count (50)
    /// or a duration (5s, at most 10m).
    #[arg(long, value_name = "N|DURATION", value_parser = parse_warmup, allow_negative_numbers = true)]
    pub(crate) warmup: Option<Warmup>,

    /// Client threads, each with its own runtime and connections (closed
    /// loop over HTTP/1.1 without batching; elsewhere one shared runtime)
    /// [default: one per CPU this process may use, at most -c].
    #[arg(long, value_parser = parse_threads, allow_negative_numbers = true)]
    pub(crate) threads: Option<usize>,

    /// After a request completes, keep polling the sockets this long (us)
    /// before a client thread sleeps, so a fast server need not wake the
    /// client for every response (50 is a good value). Only for a client
    /// pinned to CPUs of its own: it spins while it waits, and a server
    /// sharing those CPUs sees its tail latency grow. Applies where
    /// --threads does [default: 0].
    #[arg(long, value_parser = parse_busy_poll_us, allow_negative_numbers = true)]
    pub(crate) busy_poll_us: Option<u64>,

    /// Run one part of a load split across generators: INDEX/COUNT (0/4),
    /// or COUNT with INDEX from JOB_COMPLETION_INDEX (set by a Kubernetes
    /// Indexed Job). Every shard takes the same flags and together they do
    /// what one generator would: the open loop's arrivals k with
    /// k % COUNT == INDEX, the closed loop's -c split and ids strided.
    /// COUNT 1..=1024.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub(crate) shard: Option<ShardArg>,

    /// Wait until this wall-clock time, then start (after --warmup); the
    /// open-loop schedule and a -z deadline are anchored at it, so a late
    /// start shows in latency. RFC 3339 (2026-12-02T10:00:00Z,
    /// 2026-12-02T10:00:00.250+01:00) or Unix seconds (1764669600.25); at
    /// most 24 h ahead.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub(crate) start_at: Option<SystemTime>,

    /// Write the log to DIR/log.csv and the summary to DIR/summary.json
    /// (DIR is created); instead of -o and --json.
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,

    /// The summary on stdout: `text` for a person, `json` for a program
    /// (the document --json writes, and nothing else on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub(crate) output_format: OutputFormat,
}

/// `--output-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// The text summary, with percentiles, histogram and status codes.
    Text,
    /// The JSON summary alone.
    Json,
}

/// `loadgen capacity`: the target and request flags of a run, the
/// objectives and how the search steps. The flags that set a run's load
/// shape are accepted only to be refused with the reason (hidden from the
/// help), so a run's command line turned into a search is told what to use
/// instead rather than only "unexpected argument".
#[derive(Debug, clap::Args)]
pub(crate) struct CapacityArgs {
    /// The target and how requests are made.
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Live Prometheus metrics, each step's series labelled with it.
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,

    /// Objective every counted step must meet (repeatable): p95<=800,
    /// p99<500, mean<=200, error_rate<=0.01, throughput_rps>=150,
    /// goodput_rps>=5, ttft_p95<=500, itl_p99<=50, tpot_mean<=40 (latencies
    /// in ms, the Linear method, over successful requests). Without an
    /// error_rate objective any failed or dropped request fails the step.
    #[arg(long = "sla", value_name = "EXPR", default_value = "p95<=800", value_parser = parse_slo)]
    pub(crate) slos: Vec<Slo>,

    /// Write the answer, its interval and the curve of steps here as JSON
    /// (also after Ctrl-C, with what was measured).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: PathBuf,

    /// Counted part of each step (e.g. 20s, 1m; at most 30m).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_step_duration)]
    pub(crate) step_duration: Duration,

    /// Start of each step at the step's rate whose requests are not
    /// counted: a duration (0s to 10m) or a request count (at the step's
    /// rate).
    #[arg(long, value_name = "DURATION|N", default_value = "5s", value_parser = parse_warmup, allow_negative_numbers = true)]
    pub(crate) warmup: Warmup,

    /// First rate tried, requests/s; the search doubles it until a step
    /// fails.
    #[arg(long, value_name = "RPS", default_value_t = 1.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub(crate) start_rate: f64,

    /// Highest rate tried, requests/s [default: no bound but the time limit].
    #[arg(long, value_name = "RPS", value_parser = parse_rate, allow_negative_numbers = true)]
    pub(crate) max_rate: Option<f64>,

    /// Bisection stops when (hi - lo) / lo is at most this (0.001 to 0.5).
    #[arg(long, default_value_t = 0.05, value_parser = parse_precision, allow_negative_numbers = true)]
    pub(crate) precision: f64,

    /// Steps at the answer that must all be sustainable (1 to 20); a failed
    /// one lowers the answer by the precision.
    #[arg(long, default_value_t = 3, value_parser = parse_repeats, allow_negative_numbers = true)]
    pub(crate) repeats: u32,

    /// Bound on the whole search (at most 24h); a step that would end past
    /// it is not started, and the output says the answer was bounded.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_time_limit)]
    pub(crate) time_limit: Duration,

    /// Arrival process of every step.
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant)]
    pub(crate) arrival: ArrivalArg,

    /// Seed of the arrivals (step i uses seed + i) and of the bootstrap
    /// interval.
    #[arg(long, default_value_t = DEFAULT_SEED, value_parser = parse_seed, allow_negative_numbers = true)]
    pub(crate) seed: u64,

    /// Most requests in flight; sends beyond it are dropped, failed rows
    /// that make the step unsustainable.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = parse_max_in_flight, allow_negative_numbers = true)]
    pub(crate) max_in_flight: usize,

    #[arg(short = 'n', long = "requests", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_requests: Option<String>,
    #[arg(short = 'z', long = "duration", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_duration: Option<String>,
    #[arg(long = "rate", hide = true, num_args = 0..=1, default_missing_value = "", allow_negative_numbers = true)]
    pub(crate) refused_rate: Option<String>,
    #[arg(short = 'c', long = "concurrency", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_concurrency: Option<String>,
    #[arg(short = 'o', long = "out", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_out: Option<String>,
    #[arg(long = "threads", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_threads: Option<String>,
    #[arg(long = "busy-poll-us", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_busy_poll_us: Option<String>,
    #[arg(long = "server-stats", hide = true, num_args = 0..=1, default_missing_value = "")]
    pub(crate) refused_server_stats: Option<String>,
}

/// `--api` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApiArg {
    /// The simulator's wire format.
    Simulator,
    /// A JSON body template.
    Template,
    /// KServe v2 (NVIDIA Triton).
    #[value(name = "kserve-v2")]
    KServeV2,
    /// KServe v2 over gRPC (NVIDIA Triton's port 8001).
    #[value(name = "kserve-v2-grpc")]
    KServeV2Grpc,
    /// OpenAI-compatible `/v1/chat/completions`.
    #[value(name = "openai-chat")]
    OpenAiChat,
    /// OpenAI-compatible `/v1/completions`.
    #[value(name = "openai-completions")]
    OpenAiCompletions,
}

/// `--input-datatype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DatatypeArg {
    /// Strings.
    Bytes,
    /// 32-bit floats.
    Fp32,
    /// 64-bit integers.
    Int64,
}

/// `--method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodArg {
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// GET (with the body all the same).
    Get,
    /// DELETE.
    Delete,
}

impl MethodArg {
    pub(crate) fn method(self) -> Method {
        match self {
            Self::Post => Method::POST,
            Self::Put => Method::PUT,
            Self::Patch => Method::PATCH,
            Self::Get => Method::GET,
            Self::Delete => Method::DELETE,
        }
    }
}

/// `--profile` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// input.py reproduced.
    Baseline,
    /// Pooled connections and micro-batching.
    Optimized,
}

/// `--arrival` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ArrivalArg {
    /// Evenly spaced sends.
    Constant,
    /// Exponential gaps (seeded).
    Poisson,
}

/// `--payloads-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PayloadsFormatArg {
    /// One JSON object a line.
    Jsonl,
    /// A ShareGPT JSON dataset.
    Sharegpt,
}

/// `--trace-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TraceFormatArg {
    /// Mooncake's JSONL.
    Mooncake,
    /// Azure's LLM inference trace CSV.
    Azure,
    /// BurstGPT's CSV.
    Burstgpt,
}

/// `--connection` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConnectionArg {
    /// New TCP connection per HTTP request.
    PerRequest,
    /// Reused keep-alive connections.
    Pooled,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own checks of the definition, and every flag of a run and of
    /// `capacity` parsed at least once through the derive type: a flag whose
    /// definition and type disagree (`--input-shape` once panicked "Mismatch
    /// between definition and access") fails here, not in a user's hands.
    #[test]
    fn every_flag_parses() {
        let samples: &[&[&str]] = &[
            &[
                "--url",
                "http://127.0.0.1:9/v1/infer",
                "--api",
                "simulator",
                "--no-verify",
            ],
            &[
                "--server-metrics-url",
                "http://127.0.0.1:8000/metrics",
                "--server-metrics",
                "m.json",
                "--server-metrics-interval",
                "500ms",
                "--no-digest",
            ],
            &[
                "--api",
                "openai-chat",
                "--no-stream",
                "--max-tokens",
                "8",
                "--extra-body",
                "{\"temperature\": 0}",
                "--verify",
            ],
            &[
                "--api",
                "template",
                "--body-template",
                "t.json",
                "--expect-json-path",
                "outputs",
            ],
            &[
                "--api",
                "kserve-v2",
                "--model",
                "toy",
                "--input-name",
                "INPUT",
                "--input-datatype",
                "FP32",
                "--input-shape",
                "4",
                "--output-name",
                "OUTPUT",
                "--server-stats",
                "s.json",
                "--server-metrics-url",
                "http://127.0.0.1:8002/metrics",
            ],
            &[
                "--api",
                "kserve-v2-grpc",
                "--streaming",
                "--max-tokens",
                "16",
                "--input-name",
                "text_input",
                "--server-stats",
                "s.json",
            ],
            &[
                "--method",
                "put",
                "--cacert",
                "ca.pem",
                "-k",
                "--tls-resume",
                "--cert",
                "c.pem",
                "--key",
                "k.pem",
                "--profile",
                "optimized",
                "--connection",
                "pooled",
                "--http2",
                "--batch-size",
                "4",
                "--batch-wait-ms",
                "5",
                "-H",
                "X-A: b",
                "--payloads",
                "p.jsonl",
                "--timeout",
                "5s",
                "-q",
            ],
            &[
                "-c",
                "4",
                "-n",
                "10",
                "-z",
                "2s",
                "-o",
                "x.csv",
                "--json",
                "x.json",
                "--warmup",
                "5",
                "--threads",
                "2",
                "--busy-poll-us",
                "50",
            ],
            &[
                "--rate",
                "5",
                "--arrival",
                "poisson",
                "--seed",
                "7",
                "--max-in-flight",
                "9",
                "--shard",
                "0/2",
                "--start-at",
                "2026-12-02T10:00:00Z",
                "--out-dir",
                "d",
                "--output-format",
                "json",
            ],
            &[
                "capacity",
                "--json",
                "c.json",
                "--sla",
                "p95<=800",
                "--step-duration",
                "2s",
                "--warmup",
                "1s",
                "--start-rate",
                "2",
                "--max-rate",
                "50",
                "--precision",
                "0.1",
                "--repeats",
                "2",
                "--time-limit",
                "1m",
                "--arrival",
                "poisson",
                "--seed",
                "3",
                "--max-in-flight",
                "100",
            ],
            &[
                "capacity",
                "--json",
                "c.json",
                "--url",
                "http://127.0.0.1:9",
                "--api",
                "kserve-v2",
                "--input-name",
                "INPUT",
                "--input-datatype",
                "BYTES",
                "--input-shape",
                "1",
                "--output-name",
                "OUTPUT",
                "--model",
                "toy",
                "--method",
                "post",
                "--timeout",
                "1s",
                "-q",
                "--no-verify",
                "--no-stream",
                "--streaming",
                "--max-tokens",
                "3",
                "--extra-body",
                "{}",
                "--body-template",
                "t.json",
                "--expect-json-path",
                "a",
                "--cacert",
                "ca.pem",
                "-k",
                "--tls-resume",
                "--cert",
                "c.pem",
                "--key",
                "k.pem",
                "--profile",
                "baseline",
                "--connection",
                "per-request",
                "--http2",
                "--batch-size",
                "2",
                "--batch-wait-ms",
                "1",
                "-H",
                "X: y",
                "--payloads",
                "p.jsonl",
            ],
            &["capacity", "--json", "c.json", "--verify"],
            // LLM workloads.
            &[
                "--api",
                "openai-chat",
                "--tokenizer",
                "t.json",
                "--input-tokens",
                "normal:512,128",
                "--output-tokens",
                "uniform:10,100",
                "--ignore-eos",
                "--prefix-tokens",
                "256",
                "--prefix-count",
                "4",
                "--turns",
                "3",
                "--think-time",
                "1s",
                "--stages",
                "10s:5,10s:0",
                "--dry-run",
                "d.jsonl",
            ],
            &[
                "--api",
                "openai-chat",
                "--payloads",
                "s.json",
                "--payloads-format",
                "sharegpt",
                "--trace",
                "t.jsonl",
                "--trace-format",
                "mooncake",
                "--trace-speedup",
                "2",
                "--trace-start",
                "10s",
                "--trace-duration",
                "1m",
                "--trace-block-tokens",
                "16",
                "--trace-sort",
                "--metrics-listen",
                "127.0.0.1:0",
                "--metrics-linger",
                "2s",
            ],
            &[
                "capacity",
                "--json",
                "c.json",
                "--api",
                "openai-completions",
                "--tokenizer",
                "t.json",
                "--input-tokens",
                "100",
                "--output-tokens",
                "10",
                "--ignore-eos",
                "--prefix-tokens",
                "8",
                "--prefix-count",
                "2",
                "--payloads",
                "p.jsonl",
                "--payloads-format",
                "jsonl",
                "--metrics-listen",
                "[::1]:9464",
                "--metrics-linger",
                "0s",
                "--no-digest",
            ],
            // The flags of a run that capacity refuses with a reason.
            &[
                "capacity",
                "--json",
                "c.json",
                "-n",
                "5",
                "-z",
                "1s",
                "--rate",
                "3",
                "-c",
                "2",
                "-o",
                "x",
                "--threads",
                "2",
                "--busy-poll-us",
                "5",
                "--server-stats",
                "s",
            ],
        ];
        crate::cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
            Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
}
