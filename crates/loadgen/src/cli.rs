//! Command-line options and their translation into a [`LoadConfig`]:
//! a profile sets defaults, explicit flags override them.
//!
//! Two commands share the target and request flags ([`TargetArgs`]): a run
//! (`loadgen --url ... -n 400`, the flags at top level, with the load shape
//! of [`RunArgs`]) and `loadgen capacity` ([`CapacityArgs`]), which chooses
//! the load itself and so refuses the flags that would set it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Method};
use stats::slo::Slo;

use crate::api::kserve::KServeOptions;
use crate::api::ApiChoice;
use crate::capacity::{self, CapacityOptions};
use crate::config::{
    parse_header, Arrival, ConfigError, ConnectionMode, LoadConfig, OpenLoop, PayloadSource,
    Profile, Warmup, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SEED,
};
use crate::distributed::{self, OutDir, ShardArg};
use crate::limits;
use crate::outputs::{self, Output};
use crate::tls::TlsOptions;
use model::kserve::Datatype;

/// HTTP load generator for inference APIs.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// `capacity`; none: a run with the flags given.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The target and how requests are made.
    #[command(flatten)]
    pub target: TargetArgs,

    /// The load shape and outputs of a run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Commands besides a run.
#[derive(Debug, Subcommand)]
pub enum Command {
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
pub struct TargetArgs {
    /// Endpoint to load: any http:// or https:// URL (a host name, an IPv4
    /// address or a bracketed IPv6 address). For --api kserve-v2 the
    /// server's base URL; requests go to {base}/v2/models/{model}/infer
    /// [default: http://127.0.0.1:8000/v1/infer; kserve-v2: http://127.0.0.1:8000].
    #[arg(long)]
    pub url: Option<String>,

    /// Request format: `simulator` (the simulator's {"model","input"} wire
    /// format; outputs verified), `template` (any JSON body from
    /// --body-template), `kserve-v2` (NVIDIA Triton's protocol for
    /// --model), `openai-chat` or `openai-completions` (an
    /// OpenAI-compatible LLM server, streamed: TTFT, inter-token latency,
    /// tokens). Only `simulator` verifies outputs by default; the others
    /// log output digests (see --verify).
    #[arg(long, value_enum, default_value_t = ApiArg::Simulator)]
    pub api: ApiArg,

    /// --api openai-*: ask for the whole answer as one JSON body; only
    /// end-to-end latency and `usage` tokens are measured.
    #[arg(long)]
    pub no_stream: bool,

    /// --api openai-*: `max_tokens` of every request.
    #[arg(long, value_parser = parse_max_tokens, allow_negative_numbers = true)]
    pub max_tokens: Option<u32>,

    /// --api openai-*: JSON object merged into every body last, e.g.
    /// '{"ignore_eos": true, "temperature": 0}'.
    #[arg(long, value_name = "JSON", value_parser = crate::api::openai::parse_extra_body)]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,

    /// JSON body template for --api template; the placeholders `{{input}}`,
    /// `{{inputs}}` (a JSON array, for --batch-size > 1), `{{model}}` and
    /// `{{id}}` stand for whole JSON values, e.g.
    /// `{"model": {{model}}, "inputs": {{inputs}}}`.
    #[arg(long, value_name = "FILE")]
    pub body_template: Option<PathBuf>,

    /// --api template: a response succeeds only if its JSON holds this path
    /// (keys and indices separated by dots: outputs, data.0.embedding); for a
    /// batched request it must hold one item per input.
    #[arg(long, value_name = "PATH")]
    pub expect_json_path: Option<String>,

    /// --api kserve-v2: the input tensor [default: the model's only input].
    #[arg(long, value_name = "NAME")]
    pub input_name: Option<String>,

    /// --api kserve-v2: the input's datatype; text goes as BYTES, numbers
    /// from a generator seeded by the request id [default: the model's].
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub input_datatype: Option<DatatypeArg>,

    /// --api kserve-v2: the shape of one item, without the batch dimension,
    /// e.g. 1 or 3,224,224 [default: the model's, variable dimensions 1].
    #[arg(long, value_name = "DIMS", value_parser = parse_shape, allow_negative_numbers = true)]
    pub input_shape: Option<ItemShape>,

    /// --api kserve-v2: the output to read [default: the model's first].
    #[arg(long, value_name = "NAME")]
    pub output_name: Option<String>,

    /// HTTP method of every request.
    #[arg(long, value_enum, ignore_case = true, default_value_t = MethodArg::Post)]
    pub method: MethodArg,

    /// https: trust the CA certificates in this PEM file, besides the
    /// platform's roots.
    #[arg(long, value_name = "FILE.pem")]
    pub cacert: Option<PathBuf>,

    /// https: do not verify the server's certificate (said in the summary
    /// and the log).
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// https: resume TLS sessions on new connections even with
    /// --connection per-request (by default each of those pays a full
    /// handshake, as input.py's client per request does; pooled
    /// connections always may resume).
    #[arg(long)]
    pub tls_resume: bool,

    /// https: client certificate chain for mutual TLS (PEM; needs --key).
    #[arg(long, value_name = "FILE.pem", requires = "key")]
    pub cert: Option<PathBuf>,

    /// https: private key of --cert (PEM).
    #[arg(long, value_name = "FILE.pem", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Preset: `baseline` reproduces input.py (new connection per request);
    /// `optimized` pools connections and micro-batches (size 10, wait 5 ms).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,

    /// Connection reuse [default: pooled; baseline profile: per-request].
    #[arg(long, value_enum)]
    pub connection: Option<ConnectionArg>,

    /// Use HTTP/2 instead of HTTP/1.1: cleartext with prior knowledge for
    /// http://, required through ALPN for https:// (without it ALPN offers
    /// http/1.1 only).
    #[arg(long)]
    pub http2: bool,

    /// Logical requests per HTTP request (1 = no batching) [default: 1; optimized: 10].
    #[arg(long, value_parser = parse_batch_size, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,

    /// Longest wait of the oldest queued request for its batch to fill, ms;
    /// needs a batch size of 2 or more [default: 0; optimized: 5].
    #[arg(long, value_parser = parse_batch_wait_ms, allow_negative_numbers = true)]
    pub batch_wait_ms: Option<u64>,

    /// Check every output against the simulator's expected output, with an
    /// API other than `simulator`: only for a server known to give the
    /// simulator's answers (stub-server's OpenAI and KServe routes, the
    /// workflow's Triton model). A real model gives its own answers, which
    /// would all fail; without this flag those APIs log output digests.
    #[arg(long, conflicts_with = "no_verify")]
    pub verify: bool,

    /// --api simulator: do not compare outputs with the simulator's
    /// expected outputs (a real endpoint speaking its format); rows still
    /// carry output digests. The other APIs do not verify unless --verify
    /// is given.
    #[arg(long)]
    pub no_verify: bool,

    /// Extra header, 'Name: value' (repeatable). One named like a default
    /// header (Content-Type, Accept, User-Agent) replaces it; Host replaces
    /// the URL's host over HTTP/1.1 (refused with --http2). Headers that
    /// frame the message or manage the connection are refused:
    /// Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// JSONL payloads, one {"input": "...", "model": "..."} per line, cycled
    /// [default: input.py's prompts].
    #[arg(long, value_name = "FILE.jsonl")]
    pub payloads: Option<PathBuf>,

    /// Model name sent when a payload does not name one.
    #[arg(long, default_value = model::DEFAULT_MODEL)]
    pub model: String,

    /// Limit on one HTTP request, connection set-up included (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// No start lines and no progress bar on stderr (the bar is drawn only
    /// when stderr is a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// What a run sends and writes: its load shape and outputs.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Closed-loop workers (with --rate: the warm-up's workers) [default: 20].
    #[arg(short = 'c', long, value_parser = parse_concurrency, allow_negative_numbers = true)]
    pub concurrency: Option<usize>,

    /// Logical requests to send [default: 400 unless -z is given].
    #[arg(short = 'n', long, value_parser = parse_requests, allow_negative_numbers = true)]
    pub requests: Option<u64>,

    /// Send for this long (500ms, 5s, 2m; at most 1h).
    #[arg(short = 'z', long, value_parser = parse_run_duration)]
    pub duration: Option<Duration>,

    /// Open loop: send this many requests per second regardless of responses.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Open-loop arrival process.
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant, requires = "rate")]
    pub arrival: ArrivalArg,

    /// Seed of the Poisson arrival process.
    #[arg(long, default_value_t = DEFAULT_SEED, value_parser = parse_seed, allow_negative_numbers = true, requires = "rate")]
    pub seed: u64,

    /// Open loop: most requests in flight; sends beyond it are dropped and
    /// logged as failed rows with error `dropped`.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = parse_max_in_flight, allow_negative_numbers = true, requires = "rate")]
    pub max_in_flight: usize,

    /// Per-request CSV log (streamed); none without this flag.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// --api kserve-v2: read the model's statistics (Triton's
    /// /v2/models/{m}/stats) before and after the load and write both and
    /// their difference here, as JSON.
    #[arg(long, value_name = "FILE")]
    pub server_stats: Option<PathBuf>,

    /// With --server-stats: Triton's metrics URL (e.g.
    /// http://host:8002/metrics), whose nv_inference_* counters are read
    /// when the statistics endpoint is closed (no executions by batch size
    /// then).
    #[arg(long, value_name = "URL", requires = "server_stats")]
    pub server_metrics_url: Option<String>,

    /// Write the run summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Sent before the measured run (closed loop, -c workers) and left out
    /// of it: a request count (50) or a duration (5s, at most 10m).
    #[arg(long, value_name = "N|DURATION", value_parser = parse_warmup, allow_negative_numbers = true)]
    pub warmup: Option<Warmup>,

    /// Client threads, each with its own runtime and connections (closed
    /// loop over HTTP/1.1 without batching; elsewhere one shared runtime)
    /// [default: one per CPU this process may use, at most -c].
    #[arg(long, value_parser = parse_threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,

    /// After a request completes, keep polling the sockets this long (us)
    /// before a client thread sleeps, so a fast server need not wake the
    /// client for every response (50 is a good value). Only for a client
    /// pinned to CPUs of its own: it spins while it waits, and a server
    /// sharing those CPUs sees its tail latency grow. Applies where
    /// --threads does [default: 0].
    #[arg(long, value_parser = parse_busy_poll_us, allow_negative_numbers = true)]
    pub busy_poll_us: Option<u64>,

    /// Run one part of a load split across generators: INDEX/COUNT (0/4),
    /// or COUNT with INDEX from JOB_COMPLETION_INDEX (set by a Kubernetes
    /// Indexed Job). Every shard takes the same flags and together they do
    /// what one generator would: the open loop's arrivals k with
    /// k % COUNT == INDEX, the closed loop's -c split and ids strided.
    /// COUNT 1..=1024.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub shard: Option<ShardArg>,

    /// Wait until this wall-clock time, then start (after --warmup); the
    /// open-loop schedule and a -z deadline are anchored at it, so a late
    /// start shows in latency. RFC 3339 (2026-12-02T10:00:00Z,
    /// 2026-12-02T10:00:00.250+01:00) or Unix seconds (1764669600.25); at
    /// most 24 h ahead.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,

    /// Write the log to DIR/log.csv and the summary to DIR/summary.json
    /// (DIR is created); instead of -o and --json.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// The summary on stdout: `text` for a person, `json` for a program
    /// (the document --json writes, and nothing else on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub output_format: OutputFormat,
}

/// `--output-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
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
pub struct CapacityArgs {
    /// The target and how requests are made.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Objective every counted step must meet (repeatable): p95<=800,
    /// p99<500, mean<=200, error_rate<=0.01, throughput_rps>=150,
    /// goodput_rps>=5, ttft_p95<=500, itl_p99<=50, tpot_mean<=40 (latencies
    /// in ms, the Linear method, over successful requests). Without an
    /// error_rate objective any failed or dropped request fails the step.
    #[arg(long = "sla", value_name = "EXPR", default_value = "p95<=800", value_parser = parse_slo)]
    pub slos: Vec<Slo>,

    /// Write the answer, its interval and the curve of steps here as JSON
    /// (also after Ctrl-C, with what was measured).
    #[arg(long, value_name = "FILE")]
    pub json: PathBuf,

    /// Counted part of each step (e.g. 20s, 1m; at most 30m).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_step_duration)]
    pub step_duration: Duration,

    /// Start of each step at the step's rate whose requests are not
    /// counted: a duration (0s to 10m) or a request count (at the step's
    /// rate).
    #[arg(long, value_name = "DURATION|N", default_value = "5s", value_parser = parse_warmup, allow_negative_numbers = true)]
    pub warmup: Warmup,

    /// First rate tried, requests/s; the search doubles it until a step
    /// fails.
    #[arg(long, value_name = "RPS", default_value_t = 1.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub start_rate: f64,

    /// Highest rate tried, requests/s [default: no bound but the time limit].
    #[arg(long, value_name = "RPS", value_parser = parse_rate, allow_negative_numbers = true)]
    pub max_rate: Option<f64>,

    /// Bisection stops when (hi - lo) / lo is at most this (0.001 to 0.5).
    #[arg(long, default_value_t = 0.05, value_parser = parse_precision, allow_negative_numbers = true)]
    pub precision: f64,

    /// Steps at the answer that must all be sustainable (1 to 20); a failed
    /// one lowers the answer by the precision.
    #[arg(long, default_value_t = 3, value_parser = parse_repeats, allow_negative_numbers = true)]
    pub repeats: u32,

    /// Bound on the whole search (at most 24h); a step that would end past
    /// it is not started, and the output says the answer was bounded.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_time_limit)]
    pub time_limit: Duration,

    /// Arrival process of every step.
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant)]
    pub arrival: ArrivalArg,

    /// Seed of the arrivals (step i uses seed + i) and of the bootstrap
    /// interval.
    #[arg(long, default_value_t = DEFAULT_SEED, value_parser = parse_seed, allow_negative_numbers = true)]
    pub seed: u64,

    /// Most requests in flight; sends beyond it are dropped, failed rows
    /// that make the step unsustainable.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = parse_max_in_flight, allow_negative_numbers = true)]
    pub max_in_flight: usize,

    #[arg(short = 'n', long = "requests", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_requests: Option<String>,
    #[arg(short = 'z', long = "duration", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_duration: Option<String>,
    #[arg(long = "rate", hide = true, num_args = 0..=1, default_missing_value = "", allow_negative_numbers = true)]
    refused_rate: Option<String>,
    #[arg(short = 'c', long = "concurrency", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_concurrency: Option<String>,
    #[arg(short = 'o', long = "out", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_out: Option<String>,
    #[arg(long = "threads", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_threads: Option<String>,
    #[arg(long = "busy-poll-us", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_busy_poll_us: Option<String>,
    #[arg(long = "server-stats", hide = true, num_args = 0..=1, default_missing_value = "")]
    refused_server_stats: Option<String>,
}

/// Everything `loadgen capacity` needs, checked.
#[derive(Debug, Clone)]
pub struct CapacityPlan {
    /// What every step starts from.
    pub config: LoadConfig,
    /// How the search runs.
    pub options: CapacityOptions,
    /// Spacing of sends.
    pub arrival: Arrival,
    /// Open-loop bound on requests in flight.
    pub max_in_flight: usize,
    /// Where the result goes.
    pub json: PathBuf,
    /// No target lines on stderr.
    pub quiet: bool,
}

/// `--api` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// The simulator's wire format.
    Simulator,
    /// A JSON body template.
    Template,
    /// KServe v2 (NVIDIA Triton).
    #[value(name = "kserve-v2")]
    KServeV2,
    /// OpenAI-compatible `/v1/chat/completions`.
    #[value(name = "openai-chat")]
    OpenAiChat,
    /// OpenAI-compatible `/v1/completions`.
    #[value(name = "openai-completions")]
    OpenAiCompletions,
}

/// `--input-datatype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatatypeArg {
    /// Strings.
    Bytes,
    /// 32-bit floats.
    Fp32,
    /// 64-bit integers.
    Int64,
}

/// `--method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
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
    fn method(self) -> Method {
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
pub enum ProfileArg {
    /// input.py reproduced.
    Baseline,
    /// Pooled connections and micro-batching.
    Optimized,
}

/// `--arrival` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    /// Evenly spaced sends.
    Constant,
    /// Exponential gaps (seeded).
    Poisson,
}

/// `--connection` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectionArg {
    /// New TCP connection per HTTP request.
    PerRequest,
    /// Reused keep-alive connections.
    Pooled,
}

impl Cli {
    /// The configuration these options describe (a run; `capacity` has
    /// [`CapacityArgs::into_plan`]).
    pub fn into_config(self) -> Result<LoadConfig, ConfigError> {
        let mut outputs = Vec::new();
        if let Some(dir) = &self.run.out_dir {
            outputs.push(Output {
                flag: "--out-dir",
                path: dir,
                is_dir: true,
            });
        }
        for (flag, path) in [
            ("-o/--out", &self.run.out),
            ("--json", &self.run.json),
            ("--server-stats", &self.run.server_stats),
        ] {
            if let Some(path) = path {
                outputs.push(Output {
                    flag,
                    path,
                    is_dir: false,
                });
            }
        }
        outputs::check(&outputs).map_err(ConfigError::Invalid)?;
        let mut config = self.target.into_base_config()?;
        self.run.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }
}

impl TargetArgs {
    /// The configuration of the target and the requests, before the load
    /// shape is set; not validated yet.
    pub fn into_base_config(self) -> Result<LoadConfig, ConfigError> {
        let mut config = match self.profile {
            Some(ProfileArg::Baseline) => LoadConfig::from_profile(Profile::Baseline),
            Some(ProfileArg::Optimized) => LoadConfig::from_profile(Profile::Optimized),
            None => LoadConfig::default(),
        };
        let kserve_flags = self.input_name.is_some()
            || self.input_datatype.is_some()
            || self.input_shape.is_some()
            || self.output_name.is_some();
        if kserve_flags && self.api != ApiArg::KServeV2 {
            return Err(ConfigError::Invalid(
                "--input-name, --input-datatype, --input-shape and --output-name apply to --api kserve-v2".into(),
            ));
        }
        if self.api != ApiArg::Template && self.expect_json_path.is_some() {
            return Err(ConfigError::Invalid(
                "--expect-json-path applies to --api template".into(),
            ));
        }
        let openai = matches!(self.api, ApiArg::OpenAiChat | ApiArg::OpenAiCompletions);
        if !openai && (self.no_stream || self.max_tokens.is_some() || self.extra_body.is_some()) {
            return Err(ConfigError::Invalid(
                "--no-stream, --max-tokens and --extra-body apply to --api openai-chat and openai-completions".into(),
            ));
        }
        config.api = match (self.api, self.body_template) {
            (ApiArg::OpenAiChat | ApiArg::OpenAiCompletions, None) => {
                ApiChoice::OpenAi(crate::api::openai::OpenAiOptions {
                    endpoint: if self.api == ApiArg::OpenAiChat {
                        crate::api::openai::Endpoint::Chat
                    } else {
                        crate::api::openai::Endpoint::Completions
                    },
                    stream: !self.no_stream,
                    max_tokens: self.max_tokens,
                    extra_body: self.extra_body,
                })
            }
            (ApiArg::Simulator, None) => ApiChoice::Simulator,
            (ApiArg::KServeV2, None) => ApiChoice::KServeV2(KServeOptions {
                input_name: self.input_name,
                input_datatype: self.input_datatype.map(|d| match d {
                    DatatypeArg::Bytes => Datatype::Bytes,
                    DatatypeArg::Fp32 => Datatype::Fp32,
                    DatatypeArg::Int64 => Datatype::Int64,
                }),
                input_shape: self.input_shape.map(|shape| shape.0),
                output_name: self.output_name,
            }),
            (
                ApiArg::Simulator
                | ApiArg::KServeV2
                | ApiArg::OpenAiChat
                | ApiArg::OpenAiCompletions,
                Some(_),
            ) => {
                return Err(ConfigError::Invalid(
                    "--body-template needs --api template".into(),
                ))
            }
            (ApiArg::Template, None) => {
                return Err(ConfigError::Invalid(
                    "--api template needs --body-template FILE".into(),
                ))
            }
            (ApiArg::Template, Some(body_template)) => ApiChoice::Template {
                body_template,
                expect_json_path: self.expect_json_path,
            },
        };
        config.url = self
            .url
            .unwrap_or_else(|| config.api.default_url().to_owned());
        config.method = self.method.method();
        config.tls = TlsOptions {
            cacert: self.cacert,
            insecure: self.insecure,
            client_cert: self.cert,
            client_key: self.key,
            resume: self.tls_resume,
        };
        if let Some(connection) = self.connection {
            config.connection = match connection {
                ConnectionArg::PerRequest => ConnectionMode::PerRequest,
                ConnectionArg::Pooled => ConnectionMode::Pooled,
            };
        }
        config.http2 = self.http2;
        if let Some(b) = self.batch_size {
            config.batch_size = b;
        }
        if let Some(w) = self.batch_wait_ms {
            config.batch_wait_ms = w;
        }
        config.verify = match (self.verify, self.no_verify) {
            (true, _) => Some(true),
            (false, true) if self.api != ApiArg::Simulator => {
                return Err(ConfigError::Invalid(format!(
                    "--no-verify applies to --api simulator; --api {} checks outputs only with --verify, so there is nothing to turn off",
                    config.api.name()
                )))
            }
            (false, true) => Some(false),
            (false, false) => None,
        };
        if self.batch_wait_ms.is_some() && config.batch_size == 1 {
            return Err(ConfigError::Invalid(
                "--batch-wait-ms is how long a client batch waits to fill; with a batch size of 1 every request leaves at once: give --batch-size 2 or more, or drop --batch-wait-ms".into(),
            ));
        }
        config.headers = self.headers;
        if let Some(path) = self.payloads {
            config.payloads = PayloadSource::File(path);
        }
        config.model = self.model;
        config.timeout = self.timeout;
        config.progress = !self.quiet;
        Ok(config)
    }
}

impl RunArgs {
    /// Where the run's JSON summary goes: `--json`, or `DIR/summary.json`
    /// of `--out-dir`.
    pub fn summary_path(&self) -> Option<PathBuf> {
        match &self.out_dir {
            Some(dir) => Some(OutDir::new(dir).summary_path()),
            None => self.json.clone(),
        }
    }

    /// Sets the load shape and outputs of a run on `config`.
    pub fn apply(self, config: &mut LoadConfig) -> Result<(), ConfigError> {
        if self.rate.is_some() && self.concurrency.is_some() && self.warmup.is_none() {
            return Err(ConfigError::Invalid(
                "-c/--concurrency sets the closed loop's workers; with --rate the schedule sets the load (bound the requests in flight with --max-in-flight), and -c only sizes a --warmup: drop -c or give --warmup".into(),
            ));
        }
        if let Some(c) = self.concurrency {
            config.concurrency = c;
        }
        // -z alone runs for a duration; -n and -z together stop at the first.
        config.requests = match (self.requests, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => config.requests,
        };
        config.duration = self.duration;
        config.open_loop = self.rate.map(|rate_rps| OpenLoop {
            rate_rps,
            arrival: match self.arrival {
                ArrivalArg::Constant => Arrival::Constant,
                ArrivalArg::Poisson => Arrival::Poisson,
            },
            seed: self.seed,
            max_in_flight: self.max_in_flight,
        });
        if self.out_dir.is_some() && (self.out.is_some() || self.json.is_some()) {
            return Err(ConfigError::Invalid(
                "--out-dir writes DIR/log.csv and DIR/summary.json itself; -o/--out and --json would name a second log or summary: give --out-dir alone, or -o and --json without it".into(),
            ));
        }
        config.log_path = match &self.out_dir {
            Some(dir) => Some(OutDir::new(dir).log_path()),
            None => self.out,
        };
        config.shard = match self.shard {
            Some(arg) => Some(
                arg.resolve(std::env::var_os(distributed::INDEX_VAR).as_deref())
                    .map_err(ConfigError::Invalid)?,
            ),
            None => None,
        };
        config.start_at = self.start_at;
        if self.server_stats.is_some() && !matches!(config.api, ApiChoice::KServeV2(_)) {
            return Err(ConfigError::Invalid(
                "--server-stats applies to --api kserve-v2 (servers with Triton's statistics endpoint)".into(),
            ));
        }
        config.server_stats_path = self.server_stats;
        config.server_metrics_url = self.server_metrics_url;
        config.warmup = self.warmup.unwrap_or(Warmup::NONE);
        if (self.threads.is_some() || self.busy_poll_us.is_some()) && !config.runs_client_threads()
        {
            return Err(ConfigError::Invalid(
                "--threads and --busy-poll-us apply to the closed loop over HTTP/1.1 without client batching, which runs on client threads; with --rate, --http2 or --batch-size above 1 one shared runtime sends every request".into(),
            ));
        }
        config.threads = self.threads;
        config.busy_poll = Duration::from_micros(
            self.busy_poll_us
                .unwrap_or(crate::config::DEFAULT_BUSY_POLL_US),
        );
        Ok(())
    }
}

impl CapacityArgs {
    /// The search these options describe: every flag checked, the flags of
    /// a run's load shape refused with the reason.
    pub fn into_plan(self) -> Result<CapacityPlan, ConfigError> {
        let refusals = [
            (
                self.refused_requests.is_some(),
                "-n/--requests does not apply to capacity: each step sends at its own rate for --warmup + --step-duration",
            ),
            (
                self.refused_duration.is_some(),
                "-z/--duration does not apply to capacity: --step-duration sets each step and --time-limit the whole search",
            ),
            (
                self.refused_rate.is_some(),
                "--rate does not apply to capacity: the search chooses the rates; bound them with --start-rate and --max-rate",
            ),
            (
                self.refused_concurrency.is_some(),
                "-c/--concurrency does not apply to capacity: its steps are open-loop; bound the requests in flight with --max-in-flight",
            ),
            (
                self.refused_out.is_some(),
                "-o/--out does not apply to capacity: it writes no per-request log; every step's statistics go to --json",
            ),
            (
                self.refused_threads.is_some() || self.refused_busy_poll_us.is_some(),
                "--threads and --busy-poll-us apply to the closed loop; capacity's steps are open-loop",
            ),
            (
                self.refused_server_stats.is_some(),
                "--server-stats does not apply to capacity: the statistics would span the whole search; run `loadgen --rate R --server-stats FILE` at the rate it finds",
            ),
        ];
        if let Some((_, why)) = refusals.iter().find(|(given, _)| *given) {
            return Err(ConfigError::Invalid((*why).to_owned()));
        }
        outputs::check(&[Output {
            flag: "--json",
            path: &self.json,
            is_dir: false,
        }])
        .map_err(ConfigError::Invalid)?;
        let quiet = self.target.quiet;
        let arrival = match self.arrival {
            ArrivalArg::Constant => Arrival::Constant,
            ArrivalArg::Poisson => Arrival::Poisson,
        };
        let options = CapacityOptions {
            slos: self.slos,
            step_duration: self.step_duration,
            warmup: self.warmup,
            start_rate_rps: self.start_rate,
            max_rate_rps: self.max_rate,
            precision: self.precision,
            repeats: self.repeats,
            time_limit: self.time_limit,
            seed: self.seed,
        };
        options
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut config = self.target.into_base_config()?;
        config.requests = None;
        config.duration =
            Some(options.warmup.duration_at(options.start_rate_rps) + options.step_duration);
        config.open_loop = Some(OpenLoop {
            rate_rps: options.start_rate_rps,
            arrival,
            seed: options.seed,
            max_in_flight: self.max_in_flight,
        });
        config.warmup = Warmup::NONE;
        // Checked as the first step will run, so a bad URL or template is
        // an error before the search, not a failed first step.
        config.validate()?;
        Ok(CapacityPlan {
            config,
            options,
            arrival,
            max_in_flight: self.max_in_flight,
            json: self.json,
            quiet,
        })
    }
}

fn parse_max_tokens(text: &str) -> Result<u32, String> {
    limits::MAX_TOKENS.parse(text)
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    limits::CONCURRENCY.parse(text)
}

fn parse_requests(text: &str) -> Result<u64, String> {
    limits::REQUESTS.parse(text)
}

fn parse_max_in_flight(text: &str) -> Result<usize, String> {
    limits::MAX_IN_FLIGHT.parse(text)
}

fn parse_batch_size(text: &str) -> Result<usize, String> {
    limits::BATCH_SIZE.parse(text)
}

fn parse_batch_wait_ms(text: &str) -> Result<u64, String> {
    limits::BATCH_WAIT_MS.parse(text)
}

fn parse_warmup(text: &str) -> Result<Warmup, String> {
    Warmup::parse(text)
}

fn parse_seed(text: &str) -> Result<u64, String> {
    limits::SEED.parse(text)
}

fn parse_threads(text: &str) -> Result<usize, String> {
    limits::THREADS.parse(text)
}

fn parse_busy_poll_us(text: &str) -> Result<u64, String> {
    limits::BUSY_POLL_US.parse(text)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    limits::parse_rate(text)
}

fn parse_run_duration(text: &str) -> Result<Duration, String> {
    limits::DURATION.parse(text)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    limits::TIMEOUT.parse(text)
}

fn parse_slo(text: &str) -> Result<Slo, String> {
    text.parse::<Slo>().map_err(|e| e.reason)
}

fn parse_step_duration(text: &str) -> Result<Duration, String> {
    capacity::STEP_DURATION.parse(text)
}

fn parse_time_limit(text: &str) -> Result<Duration, String> {
    capacity::TIME_LIMIT.parse(text)
}

fn parse_precision(text: &str) -> Result<f64, String> {
    let allowed = format!(
        "the relative gap (hi - lo) / lo at which bisection stops, from {} to {} (e.g. 0.05)",
        capacity::MIN_PRECISION,
        capacity::MAX_PRECISION
    );
    match text.trim().parse::<f64>() {
        Ok(p) if (capacity::MIN_PRECISION..=capacity::MAX_PRECISION).contains(&p) => Ok(p),
        Ok(_) => Err(format!(
            "{text:?} is out of range; the precision is {allowed}"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number; the precision is {allowed}"
        )),
    }
}

fn parse_repeats(text: &str) -> Result<u32, String> {
    capacity::REPEATS.parse(text)
}

/// `--input-shape`: the dimensions of one item. A type of its own because
/// clap reads a `Vec` field as a repeatable flag of single values, and a
/// parser that returns the whole `Vec` then fails when the value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemShape(pub Vec<u64>);

/// `1`, `3,224,224`: positive whole dimensions separated by commas.
fn parse_shape(text: &str) -> Result<ItemShape, String> {
    text.split(',')
        .map(|d| match d.trim().parse::<u64>() {
            Ok(n) if (1..=1 << 20).contains(&n) => Ok(n),
            _ => Err(format!(
                "{text:?} is not a shape; give whole dimensions from 1 to 1048576 separated by commas, e.g. 1 or 3,224,224"
            )),
        })
        .collect::<Result<Vec<u64>, String>>()
        .map(ItemShape)
}

fn parse_shard(text: &str) -> Result<ShardArg, String> {
    distributed::parse_shard(text)
}

fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    distributed::parse_start_at(text)
}

fn parse_header_arg(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    parse_header(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::Shard;

    fn parse(args: &[&str]) -> Result<LoadConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn flags_override_the_profile() {
        let c = parse(&["--profile", "optimized", "--batch-size", "4", "-c", "3"]).unwrap();
        assert_eq!((c.batch_size, c.batch_wait_ms, c.concurrency), (4, 5, 3));
        assert_eq!(c.connection, ConnectionMode::Pooled);
        let c = parse(&["--profile", "baseline"]).unwrap();
        assert_eq!(
            (c.connection, c.requests),
            (ConnectionMode::PerRequest, Some(400))
        );
        let c = parse(&[
            "--url",
            "https://10.1.2.3:8443/v1/infer",
            "-k",
            "--method",
            "put",
        ])
        .unwrap();
        assert!(c.tls.insecure);
        assert_eq!(c.method, Method::PUT);
        let c = parse(&["-z", "2s"]).unwrap();
        assert_eq!(
            (c.requests, c.duration),
            (None, Some(Duration::from_secs(2)))
        );
    }

    fn capacity(args: &[&str]) -> Result<CapacityPlan, String> {
        let cli = Cli::try_parse_from(
            ["loadgen", "capacity"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Capacity(args)) => args.into_plan().map_err(|e| e.to_string()),
            None => Err("no subcommand".into()),
        }
    }

    #[test]
    fn capacity_takes_the_target_flags_and_its_own_defaults() {
        let plan = capacity(&[
            "--json",
            "c.json",
            "--profile",
            "optimized",
            "--timeout",
            "5s",
        ])
        .unwrap();
        let o = &plan.options;
        assert_eq!(
            (o.step_duration, o.warmup, o.start_rate_rps, o.max_rate_rps),
            (
                Duration::from_secs(20),
                Warmup::For(Duration::from_secs(5)),
                1.0,
                None
            )
        );
        assert_eq!(
            (o.precision, o.repeats, o.time_limit),
            (0.05, 3, Duration::from_secs(900))
        );
        assert_eq!(o.slos, vec![Slo::e2e_quantile(0.95, 800.0)]);
        assert_eq!(
            (plan.config.batch_size, plan.config.timeout),
            (10, Duration::from_secs(5))
        );
        // The profile's request count does not bound a step; time does.
        assert_eq!(plan.config.requests, None);
        let plan = capacity(&[
            "--json",
            "c.json",
            "--sla",
            "p99<500",
            "--sla",
            "error_rate<=0.01",
            "--warmup",
            "0s",
            "--arrival",
            "poisson",
            "--max-rate",
            "50",
        ])
        .unwrap();
        assert_eq!(plan.options.slos.len(), 2);
        assert_eq!(
            (plan.options.warmup, plan.arrival),
            (Warmup::For(Duration::ZERO), Arrival::Poisson)
        );
        // A run's command line is unchanged, and its flags stay its own.
        assert!(parse(&["--rate", "5", "-z", "2s", "--warmup", "10"]).is_ok());
        assert!(parse(&["--step-duration", "2s"]).is_err());
        assert!(capacity(&["--json", "c.json", "--rate", "5"])
            .unwrap_err()
            .contains("the search chooses the rates"));
    }

    #[test]
    fn shard_start_and_out_dir_flags() {
        // A minute ahead, with a fraction: within the allowed window.
        let ahead_s = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let c = parse(&[
            "--rate",
            "200",
            "-n",
            "200",
            "--shard",
            "1/4",
            "--start-at",
            &format!("{ahead_s}.25"),
        ]);
        let c = c.unwrap();
        assert_eq!(c.shard, Some(Shard { index: 1, count: 4 }));
        assert_eq!(
            c.start_at.map(crate::distributed::unix_ms),
            Some(ahead_s as f64 * 1000.0 + 250.0)
        );
        // Totals stay totals; the shard's part is derived.
        assert_eq!((c.requests, c.own_requests()), (Some(200), Some(50)));
        let c = parse(&[
            "-c",
            "10",
            "-n",
            "100",
            "--shard",
            "3/4",
            "--out-dir",
            "out",
        ])
        .unwrap();
        assert_eq!((c.concurrency, c.workers()), (10, 2));
        assert_eq!(c.log_path, Some(PathBuf::from("out").join("log.csv")));
        let cli = Cli::try_parse_from(["loadgen", "--out-dir", "out"]).unwrap();
        assert_eq!(
            cli.run.summary_path(),
            Some(PathBuf::from("out").join("summary.json"))
        );
        let cli = Cli::try_parse_from(["loadgen", "--json", "s.json"]).unwrap();
        assert_eq!(cli.run.summary_path(), Some(PathBuf::from("s.json")));
        for (args, needle) in [
            (
                &["--out-dir", "d", "-o", "x.csv"][..],
                "--out-dir writes DIR/log.csv",
            ),
            (
                &["--out-dir", "d", "--json", "x.json"][..],
                "give --out-dir alone",
            ),
            (
                &["--shard", "4/4"][..],
                "index must be below the count, 0..=3",
            ),
            (&["--shard", "0/0"][..], "shard count must be 1..=1024"),
            (&["--shard", "a/b"][..], "--shard takes INDEX/COUNT"),
            (
                &["-c", "2", "--shard", "1/4"][..],
                "-c 2 --shard 1/4: the closed loop splits -c",
            ),
            (
                &["-n", "3", "--shard", "1/4", "--rate", "5"][..],
                "-n 3 --shard 1/4: the shards split",
            ),
            (&["--start-at", "noon"][..], "--start-at takes RFC 3339"),
            (
                &["--start-at", "2999-01-01T00:00:00Z"][..],
                "at most 24 h ahead",
            ),
            (&["--start-at", "1764669600.25"][..], "s in the past"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        // An open loop needs no workers per shard: a warm-up's -c 2 over 4
        // shards is fine.
        assert!(parse(&["--rate", "5", "-c", "2", "--warmup", "4", "--shard", "1/4"]).is_ok());
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(parse(&["-c", "0"])
            .unwrap_err()
            .contains("concurrency must be 1..="));
        assert!(parse(&["--rate", "-1"])
            .unwrap_err()
            .contains("more than 0"));
        assert!(parse(&["-z", "5x"]).unwrap_err().contains("unknown unit"));
        assert!(parse(&["-z", "2h"]).unwrap_err().contains("at most 1h"));
        assert!(parse(&["--threads", "0"])
            .unwrap_err()
            .contains("thread count must be 1..="));
        assert_eq!(parse(&["--threads", "3"]).unwrap().threads, Some(3));
        assert!(parse(&["--busy-poll-us", "10001"])
            .unwrap_err()
            .contains("busy-poll window (us) must be 0..=10000"));
        assert_eq!(
            parse(&["--busy-poll-us", "0"]).unwrap().busy_poll,
            Duration::ZERO
        );
        assert!(parse(&["--url", "ftp://h/v1/infer"])
            .unwrap_err()
            .contains("use http:// or https://"));
        assert!(parse(&["--api", "template"])
            .unwrap_err()
            .contains("needs --body-template"));
        assert!(parse(&["--body-template", "t.json"])
            .unwrap_err()
            .contains("needs --api template"));
        assert!(parse(&["--expect-json-path", "outputs"])
            .unwrap_err()
            .contains("applies to --api template"));
        assert!(parse(&["--insecure"])
            .unwrap_err()
            .contains("apply to https://"));
        assert!(parse(&["--cert", "c.pem"]).is_err(), "--cert needs --key");
        assert!(parse(&["--method", "TRACE"])
            .unwrap_err()
            .contains("possible values"));
        assert!(
            parse(&["--arrival", "poisson"]).is_err(),
            "--arrival needs --rate"
        );
    }
}
