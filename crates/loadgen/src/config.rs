//! Run configuration: every option of a load test, its defaults, the named
//! profiles and the checks that turn bad values into clear errors (the
//! ranges themselves live in [`crate::limits`], shared with the command
//! line; the URL in [`crate::target`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Method};

use crate::api::ApiChoice;
use crate::distributed::{self, Shard};
use crate::limits;
use crate::target::{Target, TargetError};
use crate::tls::TlsOptions;

/// Default bound on open-loop requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// Default busy-poll window, us: off (the `busy_poll` module says why).
pub const DEFAULT_BUSY_POLL_US: u64 = 0;
/// Default seed of the Poisson arrival process, the drawn lengths and the
/// prompts' words.
pub const DEFAULT_SEED: u64 = 42;
/// Most shared prefixes (`--prefix-count`).
const MAX_PREFIX_COUNT: u32 = 10_000;
/// Most tokens all shared prefixes hold together (they stay in memory).
const MAX_PREFIX_TOKENS: u64 = 10_000_000;

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// A new TCP connection for every HTTP request, closed after the
    /// response (what `input.py` does by opening a client per request).
    PerRequest,
    /// Keep-alive connections, reused across requests.
    Pooled,
}

impl ConnectionMode {
    /// The name used on the command line and in summaries.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PerRequest => "per-request",
            Self::Pooled => "pooled",
        }
    }
}

/// The spacing of open-loop sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Exactly `1/rate` apart.
    Constant,
    /// Exponential gaps with mean `1/rate` (a Poisson process), seeded.
    Poisson,
}

impl Arrival {
    /// The name used on the command line and in summaries.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Poisson => "poisson",
        }
    }
}

/// Named presets; explicit options override their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `input.py` reproduced: 400 requests, concurrency 20, timeout 30 s,
    /// a new connection per request, no batching.
    Baseline,
    /// The project's optimization: pooled keep-alive connections and client
    /// micro-batching (batch size 10, wait 5 ms), same load otherwise.
    Optimized,
}

impl Profile {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Optimized => "optimized",
        }
    }

    /// Connection mode of the profile.
    pub(crate) fn connection(self) -> ConnectionMode {
        match self {
            Self::Baseline => ConnectionMode::PerRequest,
            Self::Optimized => ConnectionMode::Pooled,
        }
    }

    /// Client batch size of the profile.
    pub(crate) fn batch_size(self) -> usize {
        match self {
            Self::Baseline => 1,
            Self::Optimized => 10,
        }
    }

    /// Client batch wait of the profile, ms.
    pub(crate) fn batch_wait_ms(self) -> u64 {
        match self {
            Self::Baseline => 0,
            Self::Optimized => 5,
        }
    }
}

/// What is sent before the measured load and left out of it: a number of
/// requests (`--warmup 50`) or a length of time (`--warmup 5s`). A run and
/// `loadgen capacity` take the same two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// This many requests (0: no warm-up).
    Requests(u64),
    /// Requests for this long.
    For(Duration),
}

impl Warmup {
    /// No warm-up.
    pub const NONE: Self = Self::Requests(0);

    /// Whether nothing is sent before the load.
    pub(crate) fn is_none(self) -> bool {
        match self {
            Self::Requests(n) => n == 0,
            Self::For(d) => d.is_zero(),
        }
    }

    /// `50` (requests) or `5s`, `500ms`, `2m` (a duration, at most 10m).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err(format!(
                "{text:?} is out of range; the warm-up is a request count (0..={}) or a duration (0s to 10m)",
                limits::WARMUP.max
            ));
        }
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return limits::WARMUP.parse(trimmed).map(Self::Requests);
        }
        let d = limits::parse_duration(trimmed).map_err(|e| {
            format!("{e}; the warm-up is a request count (e.g. 50) or a duration (e.g. 5s)")
        })?;
        if d > limits::WARMUP_DURATION {
            return Err(format!(
                "{text:?} is out of range; a warm-up duration must be at most 10m"
            ));
        }
        Ok(Self::For(d))
    }

    /// How long the warm-up lasts at `rate_rps` (a count of requests at
    /// that rate takes count / rate).
    pub fn duration_at(self, rate_rps: f64) -> Duration {
        match self {
            Self::For(d) => d,
            Self::Requests(0) => Duration::ZERO,
            Self::Requests(n) => {
                let seconds = n as f64 / rate_rps.max(f64::MIN_POSITIVE);
                Duration::from_secs_f64(seconds.min(limits::WARMUP_DURATION.as_secs_f64()))
            }
        }
    }
}

impl std::fmt::Display for Warmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Requests(n) => write!(f, "{n} requests"),
            Self::For(d) => write!(f, "{:.3} s", d.as_secs_f64()),
        }
    }
}

/// Open-loop settings: sends follow a schedule, not the responses.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoop {
    /// Target rate, requests per second.
    pub rate_rps: f64,
    /// Spacing of the sends.
    pub arrival: Arrival,
    /// Seed of the Poisson process (ignored for constant arrivals).
    pub seed: u64,
    /// Most logical requests in flight; a send beyond it is dropped and
    /// logged as a failed row with error `dropped`.
    pub max_in_flight: usize,
}

/// Where request bodies come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSource {
    /// `input.py`'s inputs: request `i` sends `baseline_input(i)`.
    Baseline,
    /// Inputs read from a JSONL file (`{"input": "...", "model": "..."}` per
    /// line, `model` optional), cycled.
    File(PathBuf),
    /// A ShareGPT-style JSON dataset: its human turns, cycled (or whole
    /// conversations with [`crate::Turns::FromData`]).
    ShareGpt(PathBuf),
}

/// Everything a run needs. Build one with [`LoadConfig::default`] (the
/// `input.py` load shape over pooled connections) or
/// [`LoadConfig::from_profile`], adjust fields, and call
/// [`LoadConfig::validate`] (which [`crate::run`] calls too).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Target endpoint: any `http://` or `https://` URL.
    pub url: String,
    /// Request format.
    pub api: ApiChoice,
    /// HTTP method of every request.
    pub method: Method,
    /// TLS settings (used for `https://` targets).
    pub tls: TlsOptions,
    /// Profile the values came from, if any (reported in the summary).
    pub profile: Option<Profile>,
    /// Closed-loop workers (also the warm-up concurrency in open loop).
    pub concurrency: usize,
    /// Logical requests to issue; `None` with a duration means "until the
    /// duration ends". At least one of `requests` and `duration` is set.
    pub requests: Option<u64>,
    /// How long to issue requests.
    pub duration: Option<Duration>,
    /// Open loop when set; closed loop otherwise.
    pub open_loop: Option<OpenLoop>,
    /// How connections are used.
    pub connection: ConnectionMode,
    /// Speak HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Logical requests per HTTP request; 1 disables micro-batching.
    pub batch_size: usize,
    /// How long the oldest queued logical request waits for a batch to fill.
    pub batch_wait_ms: u64,
    /// Compare every output with the simulator's expected output: `None`
    /// leaves it to the API (on for `simulator`, whose answers are known;
    /// off elsewhere, where a real model gives its own answers and only
    /// digests are kept); `Some(true)` asks for it where the API can check
    /// (a server known to give the simulator's answers, such as
    /// stub-server); `Some(false)` turns it off.
    pub verify: Option<bool>,
    /// Log each answer's digest (with a log); off for a model whose
    /// answers change with its batching.
    pub digests: bool,
    /// Model name sent when the payload does not name one.
    pub model: String,
    /// Limit on one HTTP request: connect, send and read the whole body.
    pub timeout: Duration,
    /// Sent (closed loop, `concurrency` workers) before the measured run;
    /// logged with `phase` = `warmup` and left out of every statistic.
    pub warmup: Warmup,
    /// LLM workloads: token lengths, shared prefixes, conversations, a
    /// trace to replay (for `--api openai-*`).
    pub workload: crate::workload::WorkloadOptions,
    /// A load that changes over the run ([`crate::Stages`]): with
    /// `open_loop` set, the rate ramps from its `rate_rps` (0 allowed);
    /// with `stages_step_concurrency`, the closed loop's workers step. The
    /// stages set the run's length (no `duration`); `requests` may still
    /// stop it earlier.
    pub stages: Option<crate::workload::Stages>,
    /// The stages are closed-loop concurrencies, not open-loop rates.
    pub stages_step_concurrency: bool,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request inputs.
    pub payloads: PayloadSource,
    /// Client threads for the closed loop over HTTP/1.1 without batching,
    /// each a single-threaded runtime with its own connections; `None`: one
    /// per CPU this process may run on (at most one per worker).
    pub threads: Option<usize>,
    /// How long a client thread keeps polling its sockets after a request
    /// completes before it sleeps (the `busy_poll` module); zero: never.
    /// Applies where `threads` does.
    pub busy_poll: Duration,
    /// Per-request CSV log; none when `None`.
    pub log_path: Option<PathBuf>,
    /// Where to write the server's statistics around the run (APIs with a
    /// statistics endpoint: `kserve-v2`).
    pub server_stats_path: Option<PathBuf>,
    /// A Prometheus metrics URL (`http://host:8000/metrics`): scraped
    /// through the run when `server_metrics_path` is set (the
    /// `server_metrics` module), and with `server_stats_path` Triton's
    /// counters there stand in when the statistics endpoint is closed.
    pub server_metrics_url: Option<String>,
    /// Where the scraped series goes (`model::server_metrics`).
    pub server_metrics_path: Option<PathBuf>,
    /// Time between scrapes.
    pub server_metrics_interval: Duration,
    /// Draw the live progress bar on stderr, when stderr is a terminal
    /// (the `progress` module).
    pub progress: bool,
    /// After a shutdown signal, how long in-flight requests may still finish.
    pub shutdown_grace: Duration,
    /// This generator's part of a load split across generators
    /// (`--shard`, the `distributed` module); `None`: the whole load.
    /// `concurrency` and `requests` stay the totals of the whole load.
    pub shard: Option<Shard>,
    /// Wall-clock start of the measured load (`--start-at`): the run waits
    /// for it after any warm-up, and the open-loop schedule (and a `-z`
    /// deadline) is anchored at it, so a late start shows in latency.
    pub start_at: Option<SystemTime>,
    /// Live metrics for a Prometheus scrape (`--metrics-listen`, the
    /// [`crate::metrics`] module); none when `None`.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            url: model::DEFAULT_URL.to_owned(),
            api: ApiChoice::Simulator,
            method: Method::POST,
            tls: TlsOptions::default(),
            profile: None,
            concurrency: model::BASELINE_CONCURRENCY,
            requests: Some(model::BASELINE_REQUESTS),
            duration: None,
            open_loop: None,
            connection: ConnectionMode::Pooled,
            http2: false,
            batch_size: 1,
            batch_wait_ms: 0,
            verify: None,
            digests: true,
            model: model::DEFAULT_MODEL.to_owned(),
            timeout: Duration::from_secs(model::BASELINE_TIMEOUT_S),
            warmup: Warmup::NONE,
            workload: crate::workload::WorkloadOptions::default(),
            stages: None,
            stages_step_concurrency: false,
            headers: Vec::new(),
            payloads: PayloadSource::Baseline,
            threads: None,
            busy_poll: Duration::from_micros(DEFAULT_BUSY_POLL_US),
            log_path: None,
            server_stats_path: None,
            server_metrics_url: None,
            server_metrics_path: None,
            server_metrics_interval: crate::server_metrics::DEFAULT_INTERVAL,
            progress: false,
            shutdown_grace: Duration::from_secs(2),
            shard: None,
            start_at: None,
            metrics: None,
        }
    }
}

impl LoadConfig {
    /// The defaults with a profile's values applied.
    pub fn from_profile(profile: Profile) -> Self {
        Self {
            profile: Some(profile),
            connection: profile.connection(),
            batch_size: profile.batch_size(),
            batch_wait_ms: profile.batch_wait_ms(),
            ..Self::default()
        }
    }

    /// Checks every value; the error says what is wrong and what is allowed.
    pub fn validate(&self) -> Result<Target, ConfigError> {
        let target = Target::parse(&self.url)?;
        let invalid = ConfigError::Invalid;
        limits::CONCURRENCY
            .check(self.concurrency)
            .map_err(invalid)?;
        let bounded_otherwise = self.stages.is_some() || self.workload.trace.is_some();
        match (self.requests, self.duration) {
            (None, None) if bounded_otherwise => {}
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "give a request count (-n) or a duration (-z); unbounded runs are refused"
                        .into(),
                ))
            }
            (requests, duration) => {
                if let Some(n) = requests {
                    limits::REQUESTS.check(n).map_err(invalid)?;
                }
                if let Some(d) = duration {
                    limits::DURATION.check(d).map_err(invalid)?;
                }
            }
        }
        if let Some(open) = &self.open_loop {
            // A trace sets its own times, and stages may ramp from 0.
            if self.workload.trace.is_none() && !(self.stages.is_some() && open.rate_rps == 0.0) {
                limits::check_rate(open.rate_rps).map_err(invalid)?;
            }
            limits::MAX_IN_FLIGHT
                .check(open.max_in_flight)
                .map_err(invalid)?;
        }
        limits::BATCH_SIZE.check(self.batch_size).map_err(invalid)?;
        limits::BATCH_WAIT_MS
            .check(self.batch_wait_ms)
            .map_err(invalid)?;
        limits::TIMEOUT.check(self.timeout).map_err(invalid)?;
        match self.warmup {
            Warmup::Requests(n) => {
                limits::WARMUP.check(n).map_err(invalid)?;
            }
            Warmup::For(d) if d > limits::WARMUP_DURATION => {
                return Err(ConfigError::Invalid(format!(
                    "a warm-up of {d:?} is out of range; a warm-up duration must be at most 10m"
                )))
            }
            Warmup::For(_) => {}
        }
        if let Some(threads) = self.threads {
            limits::THREADS.check(threads).map_err(invalid)?;
        }
        let busy_poll_us = u64::try_from(self.busy_poll.as_micros()).unwrap_or(u64::MAX);
        limits::BUSY_POLL_US.check(busy_poll_us).map_err(invalid)?;
        if self.model.is_empty() {
            return Err(ConfigError::Invalid("model name must not be empty".into()));
        }
        if let Some(shard) = self.shard {
            self.check_shard(shard)?;
        }
        if let Some(start_at) = self.start_at {
            distributed::check_start_at(start_at, SystemTime::now()).map_err(invalid)?;
        }
        check_headers(&self.headers, self.http2).map_err(invalid)?;
        self.check_workload().map_err(invalid)?;
        let tls_options_given = self.tls != TlsOptions::default();
        if tls_options_given && !target.is_tls() {
            return Err(ConfigError::Invalid(format!(
                "--cacert, --insecure, --cert, --key and --tls-resume apply to https:// URLs; {} is http://",
                self.url
            )));
        }
        Ok(target)
    }
}

impl LoadConfig {
    /// The workload options fit the API and each other; the message names
    /// the flags at fault and what to give instead.
    fn check_workload(&self) -> Result<(), String> {
        let w = &self.workload;
        let openai = match &self.api {
            crate::api::ApiChoice::OpenAi(options) => Some(options),
            _ => None,
        };
        let sharegpt = matches!(self.payloads, PayloadSource::ShareGpt(_));
        if (w.is_set() || sharegpt) && openai.is_none() {
            return Err(format!(
                "--tokenizer, --input-tokens, --output-tokens, --prefix-tokens, --prefix-count, --turns, --think-time, --ignore-eos, --trace and --payloads-format sharegpt make LLM requests: they apply to --api openai-chat and openai-completions, not --api {}",
                self.api.name()
            ));
        }
        if let Some(stages) = &self.stages {
            if self.duration.is_some() {
                return Err(format!(
                    "--stages {stages} sets the run's length ({:.0} s); drop -z (-n may still stop it earlier)",
                    stages.total().as_secs_f64()
                ));
            }
            match (self.stages_step_concurrency, &self.open_loop) {
                (true, Some(_)) => {
                    return Err(
                        "--stages steps either the open loop's rate (--rate, or no -c) or the closed loop's workers (-c), not both: drop --rate or -c".into(),
                    )
                }
                (true, None) => stages.check_concurrency()?,
                (false, Some(_)) => {
                    if stages.ramp(self.open_loop.as_ref().map_or(0.0, |o| o.rate_rps)).total_area() < 1.0 {
                        return Err(format!(
                            "--stages {stages}: the rates add up to less than one request over the stages; give higher targets"
                        ));
                    }
                }
                (false, None) => {
                    return Err(
                        "--stages needs a loop to shape: the open loop's rate (LoadConfig::open_loop) or the closed loop's workers (stages_step_concurrency)".into(),
                    )
                }
            }
        }
        let Some(options) = openai else {
            return Ok(());
        };
        if w.tokenizer.is_some() && !w.synthetic() {
            return Err(
                "--tokenizer makes prompts of drawn lengths exact; give --input-tokens DIST or --trace FILE (payload and dataset prompts are sent as they are)".into(),
            );
        }
        if let Some(prefix) = w.prefix {
            if w.input_tokens.is_none() {
                return Err(
                    "--prefix-tokens and --prefix-count start each synthetic prompt with a shared prefix; give --input-tokens DIST for the rest of each prompt".into(),
                );
            }
            if !(1..=MAX_PREFIX_COUNT).contains(&prefix.count)
                || !(1..=crate::workload::lengths::MAX_LENGTH).contains(&prefix.tokens)
                || u64::from(prefix.tokens) * u64::from(prefix.count) > MAX_PREFIX_TOKENS
            {
                return Err(format!(
                    "--prefix-tokens {} --prefix-count {}: a prefix has 1 to 1000000 tokens, there are 1 to {MAX_PREFIX_COUNT} of them, and {MAX_PREFIX_TOKENS} tokens in all at most",
                    prefix.tokens, prefix.count
                ));
            }
        }
        let extra = options.extra_body.as_ref();
        let extra_max_tokens = extra.is_some_and(|e| e.contains_key("max_tokens"));
        if w.output_tokens.is_some() && (options.max_tokens.is_some() || extra_max_tokens) {
            return Err(
                "--output-tokens draws each request's max_tokens; drop --max-tokens (and max_tokens from --extra-body)".into(),
            );
        }
        if (w.output_tokens.is_some() || w.trace.is_some()) && self.batch_size > 1 {
            return Err(
                "--output-tokens and --trace give each request its own max_tokens, and a client batch sends one: drop --batch-size".into(),
            );
        }
        if w.ignore_eos
            && w.output_tokens.is_none()
            && w.trace.is_none()
            && options.max_tokens.is_none()
            && !extra_max_tokens
        {
            return Err(
                "--ignore-eos makes answers run to max_tokens; give --output-tokens DIST or --max-tokens N (a trace gives its own)".into(),
            );
        }
        if w.ignore_eos && self.batch_size > 1 {
            return Err("--ignore-eos sends min_tokens per request; drop --batch-size".into());
        }
        match w.turns {
            None if !w.think_time.is_zero() => {
                return Err(
                    "--think-time is the wait between a conversation's turns; give --turns".into(),
                )
            }
            None => {}
            Some(turns) => {
                if options.endpoint != crate::api::openai::OpenAiEndpoint::Chat {
                    return Err(
                        "--turns sends conversations, whose history is chat messages: use --api openai-chat".into(),
                    );
                }
                if turns == crate::workload::Turns::FromData && !sharegpt {
                    return Err(
                        "--turns from-data replays a dataset's conversations: give --payloads FILE --payloads-format sharegpt".into(),
                    );
                }
                if w.think_time > limits::WARMUP_DURATION {
                    return Err("--think-time is at most 10m".into());
                }
            }
        }
        if let Some(trace) = &w.trace {
            let given: Vec<&str> = [
                (self.requests.is_some(), "-n"),
                (self.duration.is_some(), "-z"),
                (w.input_tokens.is_some(), "--input-tokens"),
                (w.output_tokens.is_some(), "--output-tokens"),
                (w.prefix.is_some(), "--prefix-tokens/--prefix-count"),
                (w.turns.is_some(), "--turns"),
                (self.stages.is_some(), "--stages"),
                (self.payloads != PayloadSource::Baseline, "--payloads"),
                (options.max_tokens.is_some(), "--max-tokens"),
            ]
            .into_iter()
            .filter_map(|(given, flag)| given.then_some(flag))
            .collect();
            if !given.is_empty() {
                return Err(format!(
                    "--trace sets every request's time, prompt length and max_tokens from its rows; drop {} (cut a window with --trace-start and --trace-duration, speed it up with --trace-speedup)",
                    given.join(", ")
                ));
            }
            if self.open_loop.is_none() {
                return Err("--trace replays on the open loop's schedule (LoadConfig::open_loop gives its in-flight bound)".into());
            }
            if !(trace.speedup.is_finite() && trace.speedup > 0.0 && trace.speedup <= 1e6) {
                return Err(format!(
                    "--trace-speedup {} is out of range; give a factor more than 0 and at most 1000000 (2: twice as fast, 0.5: half)",
                    trace.speedup
                ));
            }
            if !(1..=1_000_000).contains(&trace.block_tokens) {
                return Err(format!(
                    "--trace-block-tokens {} is out of range; 1 to 1000000 tokens per hash block (Mooncake's: 512)",
                    trace.block_tokens
                ));
            }
        }
        Ok(())
    }

    /// Whether the load runs on client threads of their own (`threads`,
    /// `busy_poll`): the closed loop over HTTP/1.1 without client batching.
    /// An HTTP/2 connection (gRPC's too) or the micro-batcher is one task
    /// all requests share, and the open loop's single scheduler hands out
    /// every send, so those run on the caller's runtime.
    pub fn runs_client_threads(&self) -> bool {
        self.open_loop.is_none()
            && !self.http2
            && self.batch_size == 1
            && !matches!(self.api, ApiChoice::KServeV2Grpc(_))
    }

    /// The workers this generator runs: `concurrency`, or this shard's part
    /// of it (at least one, which an open loop's warm-up may need).
    pub fn workers(&self) -> usize {
        match self.shard {
            None => self.concurrency,
            Some(shard) => {
                let total = u64::try_from(self.concurrency).unwrap_or(u64::MAX);
                usize::try_from(shard.share(total))
                    .unwrap_or(usize::MAX)
                    .max(1)
            }
        }
    }

    /// The logical requests this generator issues when `requests` bounds
    /// the run: all of them, or this shard's ids among them.
    pub fn own_requests(&self) -> Option<u64> {
        let shard = self.shard.unwrap_or(Shard::WHOLE);
        self.requests.map(|n| shard.share(n))
    }

    /// A shard must be in range and have work: closed-loop workers and,
    /// with `-n`, requests of its own.
    fn check_shard(&self, shard: Shard) -> Result<(), ConfigError> {
        shard.check().map_err(ConfigError::Invalid)?;
        let count = shard.count;
        let too_few = |n: u64| n < u64::from(count);
        let workers = u64::try_from(self.concurrency).unwrap_or(u64::MAX);
        if self.open_loop.is_none() && too_few(workers) {
            return Err(ConfigError::Invalid(format!(
                "-c {} --shard {}/{count}: the closed loop splits -c across the shards, and {} workers cannot give each of {count} shards one; give -c {count} or more, or fewer shards",
                self.concurrency, shard.index, self.concurrency
            )));
        }
        if let Some(n) = self.requests.filter(|&n| too_few(n)) {
            return Err(ConfigError::Invalid(format!(
                "-n {n} --shard {}/{count}: the shards split the -n requests, and {n} cannot give each of {count} shards one; give -n {count} or more, or fewer shards",
                shard.index
            )));
        }
        Ok(())
    }
}

/// Parses a `-H 'Name: value'` header; a header that frames the message or
/// manages the connection is refused, as [`LoadConfig::validate`] refuses
/// it.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header; write 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header {name} has characters HTTP does not allow"))?;
    if let Some(why) = framing_refusal(&name) {
        return Err(refused(&name, why));
    }
    Ok((name, value))
}

/// What `-H` may set, said after each refusal.
const HEADERS_ALLOWED: &str = "-H may set any other header; one named like a default header (Content-Type, Accept, User-Agent) replaces it, and Host replaces the URL's host over HTTP/1.1";

fn refused(name: &HeaderName, why: &str) -> String {
    format!("-H {name} is refused: {why}. {HEADERS_ALLOWED}")
}

/// Why a header is not the user's to set: it frames the message or manages
/// the connection, which loadgen does itself (a second `Content-Length`, or
/// a `Transfer-Encoding: chunked` over a body that is not chunked, would
/// corrupt the request stream).
fn framing_refusal(name: &HeaderName) -> Option<&'static str> {
    use http::header;
    Some(match *name {
        header::CONTENT_LENGTH => "loadgen sets Content-Length from the size of each body it sends",
        header::TRANSFER_ENCODING => {
            "loadgen sends each body whole with its Content-Length, never chunked"
        }
        header::CONNECTION => {
            "loadgen manages its connections; choose how with --connection pooled|per-request"
        }
        header::UPGRADE => "loadgen does not switch protocols; for HTTP/2 use --http2",
        header::TE => "loadgen asks for no transfer coding beyond what it reads (chunked)",
        _ if name.as_str() == "keep-alive" || name.as_str() == "proxy-connection" => {
            "loadgen manages its connections; choose how with --connection pooled|per-request"
        }
        _ => return None,
    })
}

/// Checks extra headers for a run: none that frames the message or
/// manages the connection, and `Host` at most once, and not over HTTP/2
/// (where the URL's authority is the `:authority` pseudo-header).
pub(crate) fn check_headers(
    headers: &[(HeaderName, HeaderValue)],
    http2: bool,
) -> Result<(), String> {
    for (name, _) in headers {
        if let Some(why) = framing_refusal(name) {
            return Err(refused(name, why));
        }
    }
    let hosts = headers
        .iter()
        .filter(|(name, _)| name == http::header::HOST)
        .count();
    if hosts > 0 && http2 {
        return Err(refused(
            &http::header::HOST,
            "with --http2 the host is the URL's (the :authority pseudo-header); give it in --url",
        ));
    }
    if hosts > 1 {
        return Err(format!(
            "-H host is given {hosts} times; a request carries one Host. {HEADERS_ALLOWED}"
        ));
    }
    Ok(())
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse or is not `http(s)://`.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_host_is_a_target_and_tls_options_need_https() {
        for url in [
            "http://10.1.2.3:8000/v1/infer",
            "https://gpu.example:8443/v1/infer",
            "http://[2001:db8::1]/x",
        ] {
            let c = LoadConfig {
                url: url.into(),
                ..LoadConfig::default()
            };
            assert!(c.validate().is_ok(), "{url}");
        }
        let c = LoadConfig {
            tls: TlsOptions {
                insecure: true,
                ..TlsOptions::default()
            },
            ..LoadConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("apply to https://"));
        let c = LoadConfig {
            url: "ftp://h/x".into(),
            ..LoadConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Target(_))));
    }

    #[test]
    fn profiles_set_their_knobs() {
        let b = LoadConfig::from_profile(Profile::Baseline);
        assert_eq!(
            (b.connection, b.batch_size, b.concurrency),
            (ConnectionMode::PerRequest, 1, 20)
        );
        let o = LoadConfig::from_profile(Profile::Optimized);
        assert_eq!(
            (o.connection, o.batch_size, o.batch_wait_ms),
            (ConnectionMode::Pooled, 10, 5)
        );
        assert_eq!(o.requests, Some(400));
    }

    #[test]
    fn validation_names_the_problem() {
        let c = LoadConfig {
            concurrency: 0,
            ..LoadConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("concurrency"));
        let c = LoadConfig {
            requests: None,
            duration: None,
            ..LoadConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LoadConfig {
            open_loop: Some(OpenLoop {
                rate_rps: -1.0,
                arrival: Arrival::Constant,
                seed: 1,
                max_in_flight: 1,
            }),
            ..LoadConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("rate"));
    }

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("X-Api-Key: abc").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-api-key", "abc"));
        assert!(parse_header("nocolon").is_err());
    }

    #[test]
    fn framing_and_connection_headers_are_refused_with_the_reason() {
        for (header, why) in [
            (
                "Content-Length: 5",
                "sets Content-Length from the size of each body",
            ),
            ("transfer-encoding: chunked", "never chunked"),
            ("Connection: close", "--connection pooled|per-request"),
            ("Keep-Alive: timeout=5", "--connection pooled|per-request"),
            (
                "Proxy-Connection: keep-alive",
                "--connection pooled|per-request",
            ),
            ("Upgrade: h2c", "use --http2"),
            ("TE: trailers", "no transfer coding"),
        ] {
            let err = parse_header(header).unwrap_err();
            let name = header.split(':').next().unwrap().to_ascii_lowercase();
            assert!(err.starts_with(&format!("-H {name} is refused: ")), "{err}");
            assert!(err.contains(why), "{header}: {err}");
            assert!(err.contains("-H may set any other header"), "{err}");
        }
        // Host parses: over HTTP/1.1 it replaces the URL's, once.
        let host = parse_header("Host: example.test").unwrap();
        assert!(check_headers(std::slice::from_ref(&host), false).is_ok());
        let err = check_headers(std::slice::from_ref(&host), true).unwrap_err();
        assert!(err.contains("with --http2 the host is the URL's"), "{err}");
        let err = check_headers(&[host.clone(), host], false).unwrap_err();
        assert!(err.contains("given 2 times"), "{err}");
        // A configuration built in code is checked too.
        let c = LoadConfig {
            headers: vec![(http::header::CONTENT_LENGTH, HeaderValue::from_static("5"))],
            ..LoadConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("refused"));
    }
}
