//! From flags to the library's configuration: a profile sets defaults,
//! explicit flags override them, and every combination that would do
//! nothing or break what is measured is refused with the reason, before
//! any request.

use std::path::PathBuf;
use std::time::Duration;

use loadgen::capacity::CapacityOptions;
use loadgen::{
    ApiChoice, Arrival, ConfigError, ConnectionMode, KServeGrpcOptions, KServeOptions, LoadConfig,
    OpenAiEndpoint, OpenAiOptions, OpenLoop, OutDir, PayloadSource, Profile, SharedPrefix,
    TlsOptions, TraceFormat, TraceOptions, Warmup, DEFAULT_BLOCK_TOKENS, DEFAULT_BUSY_POLL_US,
    DEFAULT_MAX_IN_FLIGHT, SHARD_INDEX_VAR,
};
use model::kserve::Datatype;

use crate::cli::{
    ApiArg, ArrivalArg, CapacityArgs, Cli, ConnectionArg, DatatypeArg, PayloadsFormatArg,
    ProfileArg, RunArgs, TargetArgs, TraceFormatArg,
};
use crate::outputs::{self, Output};

/// Everything `loadgen capacity` needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct CapacityPlan {
    /// What every step starts from.
    pub(crate) config: LoadConfig,
    /// How the search runs.
    pub(crate) options: CapacityOptions,
    /// Spacing of sends.
    pub(crate) arrival: Arrival,
    /// Open-loop bound on requests in flight.
    pub(crate) max_in_flight: usize,
    /// Where the result goes.
    pub(crate) json: PathBuf,
    /// No target lines on stderr.
    pub(crate) quiet: bool,
}

impl Cli {
    /// The configuration these options describe (a run; `capacity` has
    /// [`CapacityArgs::into_plan`]).
    pub(crate) fn into_config(self) -> Result<LoadConfig, ConfigError> {
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
            ("--server-metrics", &self.run.server_metrics),
            ("--dry-run", &self.run.dry_run),
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
    pub(crate) fn into_base_config(self) -> Result<LoadConfig, ConfigError> {
        let mut config = match self.profile {
            Some(ProfileArg::Baseline) => LoadConfig::from_profile(Profile::Baseline),
            Some(ProfileArg::Optimized) => LoadConfig::from_profile(Profile::Optimized),
            None => LoadConfig::default(),
        };
        let kserve_flags = self.input_name.is_some()
            || self.input_datatype.is_some()
            || self.input_shape.is_some()
            || self.output_name.is_some();
        let grpc = self.api == ApiArg::KServeV2Grpc;
        if kserve_flags && !(self.api == ApiArg::KServeV2 || grpc) {
            return Err(ConfigError::Invalid(
                "--input-name, --input-datatype, --input-shape and --output-name apply to --api kserve-v2 and kserve-v2-grpc".into(),
            ));
        }
        if self.streaming && !grpc {
            return Err(ConfigError::Invalid(
                "--streaming applies to --api kserve-v2-grpc (ModelStreamInfer); the OpenAI APIs stream by default (--no-stream turns it off)".into(),
            ));
        }
        if grpc && self.max_tokens.is_some() && !self.streaming {
            return Err(ConfigError::Invalid(
                "--max-tokens with --api kserve-v2-grpc is the max_tokens input of a decoupled LLM model: give --streaming".into(),
            ));
        }
        if self.api != ApiArg::Template && self.expect_json_path.is_some() {
            return Err(ConfigError::Invalid(
                "--expect-json-path applies to --api template".into(),
            ));
        }
        let openai = matches!(self.api, ApiArg::OpenAiChat | ApiArg::OpenAiCompletions);
        if !openai && (self.no_stream || self.extra_body.is_some()) {
            return Err(ConfigError::Invalid(
                "--no-stream and --extra-body apply to --api openai-chat and openai-completions"
                    .into(),
            ));
        }
        if !openai && !grpc && self.max_tokens.is_some() {
            return Err(ConfigError::Invalid(
                "--max-tokens applies to --api openai-chat, openai-completions and kserve-v2-grpc --streaming".into(),
            ));
        }
        let tensors = KServeOptions {
            input_name: self.input_name,
            input_datatype: self.input_datatype.map(|d| match d {
                DatatypeArg::Bytes => Datatype::Bytes,
                DatatypeArg::Fp32 => Datatype::Fp32,
                DatatypeArg::Int64 => Datatype::Int64,
            }),
            input_shape: self.input_shape.map(|shape| shape.0),
            output_name: self.output_name,
        };
        config.api = match (self.api, self.body_template) {
            (ApiArg::OpenAiChat | ApiArg::OpenAiCompletions, None) => {
                ApiChoice::OpenAi(OpenAiOptions {
                    endpoint: if self.api == ApiArg::OpenAiChat {
                        OpenAiEndpoint::Chat
                    } else {
                        OpenAiEndpoint::Completions
                    },
                    stream: !self.no_stream,
                    max_tokens: self.max_tokens,
                    extra_body: self.extra_body,
                })
            }
            (ApiArg::Simulator, None) => ApiChoice::Simulator,
            (ApiArg::KServeV2, None) => ApiChoice::KServeV2(tensors),
            (ApiArg::KServeV2Grpc, None) => ApiChoice::KServeV2Grpc(KServeGrpcOptions {
                tensors,
                streaming: self.streaming,
                max_tokens: self.max_tokens,
            }),
            (
                ApiArg::Simulator
                | ApiArg::KServeV2
                | ApiArg::KServeV2Grpc
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
        // gRPC is HTTP/2 whether --http2 says so or not.
        config.http2 = self.http2 || grpc;
        if let Some(b) = self.batch_size {
            config.batch_size = b;
        }
        if let Some(w) = self.batch_wait_ms {
            config.batch_wait_ms = w;
        }
        config.digests = !self.no_digest;
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
            config.payloads = match self.payloads_format {
                Some(PayloadsFormatArg::Sharegpt) => PayloadSource::ShareGpt(path),
                Some(PayloadsFormatArg::Jsonl) | None => PayloadSource::File(path),
            };
        }
        let workload = &mut config.workload;
        workload.tokenizer = self.tokenizer;
        workload.input_tokens = self.input_tokens;
        workload.output_tokens = self.output_tokens;
        workload.ignore_eos = self.ignore_eos;
        workload.prefix = match (self.prefix_tokens, self.prefix_count) {
            (Some(tokens), Some(count)) => Some(SharedPrefix { tokens, count }),
            // clap requires each with the other.
            _ => None,
        };
        config.model = self.model;
        config.timeout = self.timeout;
        config.progress = !self.quiet;
        Ok(config)
    }
}

impl RunArgs {
    /// Where the run's JSON summary goes: `--json`, or `DIR/summary.json`
    /// of `--out-dir`.
    pub(crate) fn summary_path(&self) -> Option<PathBuf> {
        match &self.out_dir {
            Some(dir) => Some(OutDir::new(dir).summary_path()),
            None => self.json.clone(),
        }
    }

    /// Sets the load shape and outputs of a run on `config`.
    pub(crate) fn apply(self, config: &mut LoadConfig) -> Result<(), ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(why.to_owned()));
        if self.trace.is_some() && self.rate.is_some() {
            return invalid("--trace sets every request's time from its rows; drop --rate (speed the replay up or down with --trace-speedup)");
        }
        if self.trace.is_some() && self.stages.is_some() {
            return invalid("--trace sets every request's time from its rows; drop --stages");
        }
        let stepped = self.stages.is_some() && self.concurrency.is_some();
        if stepped && self.rate.is_some() {
            return invalid("--stages steps either the open loop's rate (--rate R, the rate the first stage ramps from) or the closed loop's workers (-c), not both: drop --rate or -c");
        }
        let open =
            self.rate.is_some() || self.trace.is_some() || (self.stages.is_some() && !stepped);
        if !open && (self.arrival.is_some() || self.max_in_flight.is_some()) {
            return invalid("--arrival and --max-in-flight apply to the open loop: give --rate, --stages (without -c) or --trace");
        }
        if self.trace.is_some() && self.arrival.is_some() {
            return invalid(
                "--arrival does not apply to --trace: the rows' timestamps are the arrivals",
            );
        }
        if (self.rate.is_some() || self.trace.is_some())
            && self.concurrency.is_some()
            && self.warmup.is_none()
        {
            return invalid("-c/--concurrency sets the closed loop's workers; with --rate or --trace the schedule sets the load (bound the requests in flight with --max-in-flight), and -c only sizes a --warmup: drop -c or give --warmup");
        }
        if self.dry_run.is_some() {
            if self.out.is_some() || self.json.is_some() || self.out_dir.is_some() {
                return invalid("--dry-run sends nothing, so there is no log or summary: drop -o, --json and --out-dir");
            }
            if matches!(config.api, ApiChoice::KServeV2Grpc(_)) {
                return invalid(loadgen::DRY_RUN_GRPC_REFUSED);
            }
            if self.turns.is_some() {
                return invalid("--dry-run cannot write conversations: their later turns carry the server's answers; drop --turns");
            }
            if !open && self.requests.is_none() && self.stages.is_none() {
                return invalid("--dry-run writes the requests a closed-loop run would send, which -z alone does not count: give -n");
            }
        }
        if self.rate.is_some() && self.concurrency.is_some() && self.warmup.is_none() {
            return Err(ConfigError::Invalid(
                "-c/--concurrency sets the closed loop's workers; with --rate the schedule sets the load (bound the requests in flight with --max-in-flight), and -c only sizes a --warmup: drop -c or give --warmup".into(),
            ));
        }
        if let Some(c) = self.concurrency {
            config.concurrency = c;
        }
        // -z alone runs for a duration; -n and -z together stop at the
        // first; stages and a trace bound the run themselves.
        let bounded = self.stages.is_some() || self.trace.is_some();
        config.requests = match (self.requests, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) if bounded => None,
            (None, None) => config.requests,
        };
        config.duration = self.duration;
        config.open_loop = open.then(|| OpenLoop {
            // A trace's times and a ramp from 0 need no rate.
            rate_rps: self.rate.unwrap_or(0.0),
            arrival: match self.arrival.unwrap_or(ArrivalArg::Constant) {
                ArrivalArg::Constant => Arrival::Constant,
                ArrivalArg::Poisson => Arrival::Poisson,
            },
            seed: self.seed,
            max_in_flight: self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        });
        config.stages = self.stages;
        config.stages_step_concurrency = stepped;
        let workload = &mut config.workload;
        workload.seed = self.seed;
        workload.turns = self.turns;
        workload.think_time = self.think_time.unwrap_or_default();
        workload.trace = self.trace.map(|path| TraceOptions {
            format: self.trace_format.map(|f| match f {
                TraceFormatArg::Mooncake => TraceFormat::Mooncake,
                TraceFormatArg::Azure => TraceFormat::Azure,
                TraceFormatArg::Burstgpt => TraceFormat::BurstGpt,
            }),
            speedup: self.trace_speedup.unwrap_or(1.0),
            start: self.trace_start.unwrap_or_default(),
            duration: self.trace_duration,
            block_tokens: self.trace_block_tokens.unwrap_or(DEFAULT_BLOCK_TOKENS),
            sort: self.trace_sort,
            ..TraceOptions::new(path)
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
                arg.resolve(std::env::var_os(SHARD_INDEX_VAR).as_deref())
                    .map_err(ConfigError::Invalid)?,
            ),
            None => None,
        };
        config.start_at = self.start_at;
        if self.server_stats.is_some()
            && !matches!(
                config.api,
                ApiChoice::KServeV2(_) | ApiChoice::KServeV2Grpc(_)
            )
        {
            return Err(ConfigError::Invalid(
                "--server-stats applies to --api kserve-v2 and kserve-v2-grpc (servers with Triton's statistics)".into(),
            ));
        }
        if self.server_metrics_url.is_some()
            && self.server_metrics.is_none()
            && self.server_stats.is_none()
        {
            return Err(ConfigError::Invalid(
                "--server-metrics-url needs --server-metrics FILE, where the series scraped through the run goes (or --server-stats, where it is Triton's fallback)".into(),
            ));
        }
        config.server_stats_path = self.server_stats;
        config.server_metrics_url = self.server_metrics_url;
        config.server_metrics_path = self.server_metrics;
        if let Some(interval) = self.server_metrics_interval {
            config.server_metrics_interval = interval;
        }
        config.warmup = self.warmup.unwrap_or(Warmup::NONE);
        if (self.threads.is_some() || self.busy_poll_us.is_some()) && !config.runs_client_threads()
        {
            return Err(ConfigError::Invalid(
                "--threads and --busy-poll-us apply to the closed loop over HTTP/1.1 without client batching, which runs on client threads; with --rate, --http2 or --batch-size above 1 one shared runtime sends every request".into(),
            ));
        }
        config.threads = self.threads;
        config.busy_poll = Duration::from_micros(self.busy_poll_us.unwrap_or(DEFAULT_BUSY_POLL_US));
        Ok(())
    }
}

impl CapacityArgs {
    /// The search these options describe: every flag checked, the flags of
    /// a run's load shape refused with the reason.
    pub(crate) fn into_plan(self) -> Result<CapacityPlan, ConfigError> {
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

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use clap::Parser;
    use http::Method;
    use loadgen::Shard;
    use stats::slo::Slo;

    use super::*;
    use crate::cli::Command;

    /// Milliseconds since the Unix epoch.
    fn unix_ms(at: SystemTime) -> f64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
    }

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
            c.start_at.map(unix_ms),
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
    fn grpc_flags_build_its_options_and_refuse_what_does_not_apply() {
        let c = parse(&[
            "--api",
            "kserve-v2-grpc",
            "--streaming",
            "--max-tokens",
            "8",
            "--model",
            "llm-stream",
            "--server-stats",
            "s.json",
        ])
        .unwrap();
        let ApiChoice::KServeV2Grpc(options) = &c.api else {
            panic!("{:?}", c.api)
        };
        assert!(options.streaming);
        assert_eq!(options.max_tokens, Some(8));
        assert_eq!(c.url, "http://127.0.0.1:8001");
        assert!(c.http2, "gRPC is HTTP/2");
        assert!(!c.runs_client_threads());
        let c = parse(&["--api", "kserve-v2-grpc", "--input-datatype", "fp32"]).unwrap();
        let ApiChoice::KServeV2Grpc(options) = &c.api else {
            panic!("{:?}", c.api)
        };
        assert_eq!(options.tensors.input_datatype, Some(Datatype::Fp32));
        for (args, needle) in [
            (
                &["--streaming"][..],
                "--streaming applies to --api kserve-v2-grpc",
            ),
            (
                &["--api", "kserve-v2-grpc", "--max-tokens", "8"][..],
                "give --streaming",
            ),
            (
                &["--api", "kserve-v2", "--max-tokens", "8"][..],
                "--max-tokens applies to",
            ),
            (
                &["--api", "kserve-v2-grpc", "--no-stream"][..],
                "--no-stream and --extra-body apply to --api openai",
            ),
            (
                &["--api", "kserve-v2-grpc", "--threads", "2"][..],
                "--threads and --busy-poll-us apply",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
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
