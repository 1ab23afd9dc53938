//! `stub-server` binary: parse flags, bind, announce the address, serve until
//! SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, ValueEnum};
use stub_server::{serve_with_grpc, ServerConfig, ServerError};

/// Inference-service simulator: a FIFO queue, `workers` executors and a
/// seeded batch cost of (base + per_item * b) * exp(N(0, jitter^2)) ms.
///
/// Start from a --profile; every other flag overrides the profile's value.
#[derive(Debug, Parser)]
#[command(name = "stub-server", version)]
struct Cli {
    /// Named profile to start from.
    #[arg(long, value_name = "NAME", value_enum, default_value_t = Profile::Placeholder)]
    profile: Profile,
    #[command(flatten)]
    overrides: Overrides,
}

/// The built-in profiles of [`ServerConfig::profile`], by the names it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// The scenario of the task (default): 2 workers, 100 ms + 2 ms/item,
    /// jitter 0.1, no dynamic batching.
    #[value(name = "placeholder")]
    Placeholder,
    /// No service time at all, 64 workers: for benchmarks.
    #[value(name = "zero-cost")]
    ZeroCost,
    /// 1 worker, ~440 ms per batch almost regardless of its size.
    #[value(name = "gpt2-medium")]
    Gpt2Medium,
    /// 1 worker, 4.2 ms + 0.045 ms/item, dynamic batching.
    #[value(name = "bert-base")]
    BertBase,
    /// LLM routes with 8 sequence slots, steps of 6 ms + 0.4 ms per
    /// running sequence: 20 concurrent streams wait for slots.
    #[value(name = "llm-slots")]
    LlmSlots,
}

impl Profile {
    /// The name [`ServerConfig::profile`] knows it by.
    fn name(self) -> &'static str {
        match self {
            Profile::Placeholder => "placeholder",
            Profile::ZeroCost => "zero-cost",
            Profile::Gpt2Medium => "gpt2-medium",
            Profile::BertBase => "bert-base",
            Profile::LlmSlots => "llm-slots",
        }
    }
}

/// Every knob of [`ServerConfig`] as a flag; one given replaces the
/// profile's value ([`Overrides::apply`]), one left out keeps it.
#[derive(Debug, Args)]
struct Overrides {
    /// Executors running batches in parallel (>= 1).
    #[arg(long, value_name = "N", value_parser = whole::<usize>, allow_negative_numbers = true)]
    workers: Option<usize>,
    /// Fixed cost per executed batch, in ms (>= 0).
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    base_ms: Option<f64>,
    /// LLM routes: most sequences running at once (1 to 100000).
    #[arg(long, value_name = "N", value_parser = whole::<usize>, allow_negative_numbers = true)]
    max_num_seqs: Option<usize>,
    /// LLM routes: fixed cost of one step of the step loop, ms.
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    step_base_ms: Option<f64>,
    /// LLM routes: cost per running sequence in a step, ms.
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    step_per_seq_ms: Option<f64>,
    /// LLM routes: cost per prompt token prefilled in a step, ms.
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    prefill_per_token_ms: Option<f64>,
    /// LLM routes: tokens one step may process (1 to 1048576).
    #[arg(long, value_name = "TOKENS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    max_batched_tokens: Option<usize>,
    /// LLM routes: a local Hugging Face tokenizer.json; a prompt's tokens
    /// are then its token ids (no special tokens), not its whitespace
    /// words. Nothing is downloaded.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// LLM routes: tokens per KV block, of the prefix cache and the KV
    /// capacity (1 to 1024) [default: 16].
    #[arg(long, value_name = "TOKENS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    kv_block_tokens: Option<usize>,
    /// LLM routes: prompt blocks the prefix cache holds, least recently
    /// used evicted; a prompt's cached leading blocks cost no prefill
    /// (0 = no prefix cache, to 100000000) [default: 0].
    #[arg(long, value_name = "BLOCKS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    prefix_cache_blocks: Option<usize>,
    /// LLM routes: KV capacity of the running sequences, in tokens; when
    /// full, the newest is preempted and recomputed later (0 = unlimited,
    /// or --kv-block-tokens to 1000000000) [default: 0].
    #[arg(long, value_name = "TOKENS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    kv_cache_tokens: Option<usize>,
    /// LLM routes: write an SSE comment `: t=<unix ns>` before each
    /// streamed event, the time the server wrote it (`--sse-stamps=false`
    /// turns it off) [default: off].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    sse_stamps: Option<bool>,
    /// Added cost per item in a batch, in ms (>= 0).
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    per_item_ms: Option<f64>,
    /// Sd of the log-normal service-time multiplier, 0 to 2.
    #[arg(long, value_name = "SIGMA", value_parser = number, allow_negative_numbers = true)]
    jitter: Option<f64>,
    /// Seed of the service-time RNG.
    #[arg(long, value_name = "U64", value_parser = whole::<u64>, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Most items in one executed batch (>= 1).
    #[arg(long, value_name = "ITEMS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    max_batch: Option<usize>,
    /// Gather queued items across requests into batches (`--dynamic-batching=false` turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    dynamic_batching: Option<bool>,
    /// With dynamic batching, the longest wait for a batch to fill after its
    /// oldest item arrived, in ms (0 to 60000).
    #[arg(long, value_name = "MS", value_parser = number, allow_negative_numbers = true)]
    batch_window_ms: Option<f64>,
    /// With dynamic batching, a batch size formed at once when the queue
    /// holds enough whole requests for it (Triton's preferred_batch_size;
    /// repeatable, 1 to --max-batch).
    #[arg(long = "preferred-batch-size", value_name = "ITEMS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    preferred_batch_sizes: Vec<usize>,
    /// Most items waiting in the queue; beyond it 503 queue_full (>= 1).
    #[arg(long, value_name = "ITEMS", value_parser = whole::<usize>, allow_negative_numbers = true)]
    max_queue: Option<usize>,
    /// Largest request body, in bytes; beyond it 413 (>= 1).
    #[arg(long, value_name = "BYTES", value_parser = whole::<usize>, allow_negative_numbers = true)]
    max_body_bytes: Option<usize>,
    /// Datatype of the KServe v2 model's input tensor: BYTES (text), FP32
    /// or INT64 [default: BYTES].
    #[arg(long, value_name = "TYPE", value_parser = parse_datatype)]
    kserve_input_datatype: Option<model::kserve::Datatype>,
    /// Comma-separated model names served.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8000].
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Also serve KServe v2 over gRPC (Triton's protocol, port 8001 in
    /// Triton) on this address, an IP:PORT; port 0 picks a free port. The
    /// second line on stdout is then `grpc listening on ADDR` [default:
    /// no gRPC].
    #[arg(long, value_name = "ADDR")]
    grpc_bind: Option<SocketAddr>,
    /// gRPC: the name of the decoupled model that streams an LLM's tokens
    /// on ModelStreamInfer; must differ from --models [default:
    /// llm-stream].
    #[arg(long, value_name = "NAME")]
    grpc_stream_model: Option<String>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// The fault-injection flags, listed under their own heading in --help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Fault injection (off by default)")]
struct FaultArgs {
    /// Fault injection: share of requests answered 500/503 with a JSON
    /// error (0 to 1; all fault rates together at most 1) [default: 0].
    #[arg(long, value_name = "P", value_parser = number, allow_negative_numbers = true)]
    fault_error_rate: Option<f64>,
    /// Share of requests answered 200 with a wrong output (0 to 1).
    #[arg(long, value_name = "P", value_parser = number, allow_negative_numbers = true)]
    fault_corrupt_rate: Option<f64>,
    /// Share of requests whose body is cut after half its bytes (0 to 1).
    #[arg(long, value_name = "P", value_parser = number, allow_negative_numbers = true)]
    fault_truncate_rate: Option<f64>,
    /// Share of requests whose connection is dropped unanswered (0 to 1).
    #[arg(long, value_name = "P", value_parser = number, allow_negative_numbers = true)]
    fault_reset_rate: Option<f64>,
    /// Share of requests held --fault-stall-ms before being served (0 to 1).
    #[arg(long, value_name = "P", value_parser = number, allow_negative_numbers = true)]
    fault_stall_rate: Option<f64>,
    /// How long a stalled request is held, in ms (1 to 600000).
    #[arg(long, value_name = "MS", value_parser = whole::<u64>, allow_negative_numbers = true)]
    fault_stall_ms: Option<u64>,
    /// Seed of the fault sequence [default: 0].
    #[arg(long, value_name = "U64", value_parser = whole::<u64>, allow_negative_numbers = true)]
    fault_seed: Option<u64>,
}

/// A whole number; the configuration's checks then say its range.
fn whole<T: std::str::FromStr + TryFrom<i128>>(text: &str) -> Result<T, String> {
    let wide: i128 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    T::try_from(wide).map_err(|_| {
        format!(
            "{text:?} is out of range; give a whole number from 0 to {}",
            u64::MAX
        )
    })
}

/// A finite number; the configuration's checks then say its range.
fn number(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}

fn parse_datatype(text: &str) -> Result<model::kserve::Datatype, String> {
    model::kserve::Datatype::from_name(&text.to_ascii_uppercase()).ok_or_else(|| {
        format!("{text:?} is not a datatype this server takes; use BYTES, FP32 or INT64")
    })
}

impl Overrides {
    /// Replaces each of `config`'s values whose flag was given: the one
    /// table from flags to knobs.
    fn apply(self, config: &mut ServerConfig) {
        fn set<T>(knob: &mut T, flag: Option<T>) {
            if let Some(value) = flag {
                *knob = value;
            }
        }
        let Overrides {
            workers,
            base_ms,
            max_num_seqs,
            step_base_ms,
            step_per_seq_ms,
            prefill_per_token_ms,
            max_batched_tokens,
            // Read from its file by `Cli::config`, which can fail.
            tokenizer: _,
            kv_block_tokens,
            prefix_cache_blocks,
            kv_cache_tokens,
            sse_stamps,
            per_item_ms,
            jitter,
            seed,
            max_batch,
            dynamic_batching,
            batch_window_ms,
            preferred_batch_sizes,
            max_queue,
            max_body_bytes,
            kserve_input_datatype,
            models,
            bind,
            grpc_bind,
            grpc_stream_model,
            faults: f,
        } = self;
        // A repeatable flag given no times, like an optional one left out,
        // keeps the profile's value.
        let preferred_batch_sizes =
            (!preferred_batch_sizes.is_empty()).then_some(preferred_batch_sizes);
        let models = models.map(|names| names.iter().map(|m| m.trim().to_owned()).collect());
        set(&mut config.workers, workers);
        set(&mut config.llm.max_num_seqs, max_num_seqs);
        set(&mut config.llm.step_base_ms, step_base_ms);
        set(&mut config.llm.step_per_seq_ms, step_per_seq_ms);
        set(&mut config.llm.prefill_per_token_ms, prefill_per_token_ms);
        set(&mut config.llm.max_batched_tokens, max_batched_tokens);
        set(&mut config.llm.kv_block_tokens, kv_block_tokens);
        set(&mut config.llm.prefix_cache_blocks, prefix_cache_blocks);
        set(&mut config.llm.kv_cache_tokens, kv_cache_tokens);
        set(&mut config.llm.sse_stamps, sse_stamps);
        set(&mut config.service.base_ms, base_ms);
        set(&mut config.service.per_item_ms, per_item_ms);
        set(&mut config.service.jitter, jitter);
        set(&mut config.service.seed, seed);
        set(&mut config.max_batch, max_batch);
        set(&mut config.dynamic_batching, dynamic_batching);
        set(&mut config.batch_window_ms, batch_window_ms);
        set(&mut config.preferred_batch_sizes, preferred_batch_sizes);
        set(&mut config.max_queue, max_queue);
        set(&mut config.max_body_bytes, max_body_bytes);
        set(&mut config.kserve_input_datatype, kserve_input_datatype);
        set(&mut config.models, models);
        set(&mut config.bind, bind);
        set(&mut config.grpc_bind, grpc_bind.map(Some));
        set(&mut config.grpc_stream_model, grpc_stream_model);
        set(&mut config.faults.error_rate, f.fault_error_rate);
        set(&mut config.faults.corrupt_rate, f.fault_corrupt_rate);
        set(&mut config.faults.truncate_rate, f.fault_truncate_rate);
        set(&mut config.faults.reset_rate, f.fault_reset_rate);
        set(&mut config.faults.stall_rate, f.fault_stall_rate);
        set(&mut config.faults.stall_ms, f.fault_stall_ms);
        set(&mut config.faults.seed, f.fault_seed);
    }
}

impl Cli {
    fn config(mut self) -> Result<ServerConfig, ServerError> {
        let mut config = ServerConfig::profile(self.profile.name())?;
        let tokenizer = self.overrides.tokenizer.take();
        // Flags that only shape dynamic batching do nothing without it:
        // say so rather than serve as if they did.
        let batching_flags = self.overrides.batch_window_ms.is_some()
            || !self.overrides.preferred_batch_sizes.is_empty();
        self.overrides.apply(&mut config);
        if batching_flags && !config.dynamic_batching {
            return Err(ServerError::Config(stub_server::ConfigError::Invalid {
                flag: "batch-window-ms",
                value: "(or --preferred-batch-size)".into(),
                allowed: "these shape the server's dynamic batching, which is off: add --dynamic-batching (or a profile with it, such as bert-base), or drop them",
            }));
        }
        config.validate()?;
        // Read last, after the cheap checks: a bad file is refused before
        // the server binds anything.
        if let Some(path) = tokenizer {
            config.llm.tokenizer = Some(stub_server::PromptTokenizer::from_file(&path)?);
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 0 for --help/--version and 2 for usage errors.
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stub-server: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), ServerError> {
    let config = cli.config()?;
    let fd_limit = raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(stub_server::bind(config.bind)?)?;
        let addr = listener.local_addr()?;
        let grpc = match config.grpc_bind {
            Some(grpc_addr) => Some(tokio::net::TcpListener::from_std(stub_server::bind(
                grpc_addr,
            )?)?),
            None => None,
        };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        if let Some(grpc) = &grpc {
            writeln!(stdout, "grpc listening on {}", grpc.local_addr()?)?;
        }
        stdout.flush()?;
        drop(stdout);
        tracing::info!(
            %addr,
            workers = config.workers,
            base_ms = config.service.base_ms,
            per_item_ms = config.service.per_item_ms,
            jitter = config.service.jitter,
            seed = config.service.seed,
            max_batch = config.max_batch,
            dynamic_batching = config.dynamic_batching,
            batch_window_ms = config.batch_window_ms,
            max_queue = config.max_queue,
            fd_limit,
            "serving"
        );
        if !config.faults.is_off() {
            tracing::warn!(faults = ?config.faults, "fault injection is ON");
        }
        serve_with_grpc(config, listener, grpc, shutdown_signal()).await
    })
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received");
}

/// Raises the soft limit on open files to the hard limit, so thousands of
/// concurrent connections do not run out of descriptors; returns the limit
/// in force afterwards (None where it cannot be read).
#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        // Not raised (the OS refused): the limit in force is the old one.
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _hard)| soft),
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

#[cfg(test)]
#[path = "../../../xtask/src/cli_check.rs"]
mod cli_check;

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks, and every flag parsed at least once through the
    /// derive type, with numbers refused in words that say what is allowed.
    #[test]
    fn every_flag_parses() {
        use clap::CommandFactory;
        let samples: &[&[&str]] = &[
            &[
                "--profile",
                "bert-base",
                "--workers",
                "2",
                "--base-ms",
                "1.5",
                "--per-item-ms",
                "0.5",
                "--jitter",
                "0.1",
                "--seed",
                "7",
                "--max-batch",
                "8",
                "--dynamic-batching",
                "--batch-window-ms",
                "2",
                "--preferred-batch-size",
                "4",
                "--max-queue",
                "100",
                "--max-body-bytes",
                "4096",
                "--kserve-input-datatype",
                "FP32",
                "--models",
                "a,b",
                "--bind",
                "127.0.0.1:0",
                "--grpc-bind",
                "127.0.0.1:0",
                "--grpc-stream-model",
                "tokens",
            ],
            &[
                "--profile",
                "llm-slots",
                "--max-num-seqs",
                "4",
                "--step-base-ms",
                "6",
                "--step-per-seq-ms",
                "0.4",
                "--prefill-per-token-ms",
                "0.01",
                "--max-batched-tokens",
                "512",
                "--tokenizer",
                "tokenizer.json",
                "--kv-block-tokens",
                "8",
                "--prefix-cache-blocks",
                "100",
                "--kv-cache-tokens",
                "4096",
                "--sse-stamps",
            ],
            &[
                "--fault-error-rate",
                "0.1",
                "--fault-corrupt-rate",
                "0.1",
                "--fault-truncate-rate",
                "0.1",
                "--fault-reset-rate",
                "0.1",
                "--fault-stall-rate",
                "0.1",
                "--fault-stall-ms",
                "5",
                "--fault-seed",
                "3",
            ],
        ];
        crate::cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
            Cli::try_parse_from(std::iter::once("stub-server").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }

    #[test]
    fn batching_flags_without_dynamic_batching_are_refused() {
        for args in [
            &["--batch-window-ms", "5"][..],
            &["--preferred-batch-size", "4"][..],
        ] {
            let cli =
                Cli::try_parse_from(std::iter::once("stub-server").chain(args.iter().copied()))
                    .unwrap();
            let err = cli.config().unwrap_err().to_string();
            assert!(
                err.contains("dynamic batching, which is off"),
                "{args:?}: {err}"
            );
        }
        let with = config_of(&["--dynamic-batching", "--batch-window-ms", "5"]);
        assert_eq!(with.batch_window_ms, 5.0);
        // A profile that batches takes the window without the flag.
        assert_eq!(
            config_of(&["--profile", "bert-base", "--batch-window-ms", "3"]).batch_window_ms,
            3.0
        );
    }

    fn config_of(args: &[&str]) -> ServerConfig {
        let cli = Cli::try_parse_from(std::iter::once("stub-server").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.config().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn profile_values_are_the_library_profiles() {
        let names: Vec<&str> = Profile::value_variants()
            .iter()
            .map(|p| {
                let value = p.to_possible_value().expect("not hidden");
                assert_eq!(value.get_name(), p.name());
                p.name()
            })
            .collect();
        assert_eq!(names, stub_server::PROFILES);
        assert_eq!(Profile::Placeholder.name(), stub_server::DEFAULT_PROFILE);
        for profile in Profile::value_variants() {
            // No flags: exactly the library's profile.
            assert_eq!(
                config_of(&["--profile", profile.name()]),
                ServerConfig::profile(profile.name()).unwrap()
            );
        }
        assert_eq!(
            config_of(&[]),
            ServerConfig::profile("placeholder").unwrap()
        );
        let err = Cli::try_parse_from(["stub-server", "--profile", "gpu"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        for name in stub_server::PROFILES {
            assert!(text.contains(name), "{text}");
        }
    }

    #[test]
    fn help_lists_the_profiles() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for name in stub_server::PROFILES {
            assert!(help.contains(name), "--help lacks {name}:\n{help}");
        }
    }

    #[test]
    fn every_flag_overrides_its_knob_and_only_it() {
        let config = config_of(&[
            "--profile",
            "placeholder",
            "--workers",
            "3",
            "--base-ms",
            "1.5",
            "--per-item-ms",
            "0.25",
            "--jitter",
            "0.3",
            "--seed",
            "99",
            "--max-batch",
            "40",
            "--dynamic-batching",
            "--batch-window-ms",
            "7",
            "--preferred-batch-size",
            "8",
            "--preferred-batch-size",
            "16",
            "--max-queue",
            "77",
            "--max-body-bytes",
            "2048",
            "--kserve-input-datatype",
            "fp32",
            "--max-num-seqs",
            "6",
            "--step-base-ms",
            "11",
            "--step-per-seq-ms",
            "0.75",
            "--prefill-per-token-ms",
            "0.125",
            "--max-batched-tokens",
            "512",
            "--kv-block-tokens",
            "8",
            "--prefix-cache-blocks",
            "100",
            "--kv-cache-tokens",
            "4096",
            "--sse-stamps",
            "--models",
            "a, b",
            "--bind",
            "127.0.0.1:0",
            "--grpc-bind",
            "127.0.0.1:8001",
            "--grpc-stream-model",
            "tokens",
            "--fault-error-rate",
            "0.1",
            "--fault-corrupt-rate",
            "0.05",
            "--fault-truncate-rate",
            "0.04",
            "--fault-reset-rate",
            "0.03",
            "--fault-stall-rate",
            "0.02",
            "--fault-stall-ms",
            "12",
            "--fault-seed",
            "5",
        ]);
        let expected = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            workers: 3,
            service: stub_server::ServiceTimeModel {
                base_ms: 1.5,
                per_item_ms: 0.25,
                jitter: 0.3,
                seed: 99,
            },
            max_batch: 40,
            dynamic_batching: true,
            batch_window_ms: 7.0,
            preferred_batch_sizes: vec![8, 16],
            max_queue: 77,
            max_body_bytes: 2048,
            models: vec!["a".into(), "b".into()],
            kserve_input_datatype: model::kserve::Datatype::Fp32,
            llm: stub_server::LlmConfig {
                max_num_seqs: 6,
                step_base_ms: 11.0,
                step_per_seq_ms: 0.75,
                prefill_per_token_ms: 0.125,
                max_batched_tokens: 512,
                tokenizer: None,
                kv_block_tokens: 8,
                prefix_cache_blocks: 100,
                kv_cache_tokens: 4096,
                sse_stamps: true,
            },
            faults: stub_server::FaultConfig {
                error_rate: 0.1,
                corrupt_rate: 0.05,
                truncate_rate: 0.04,
                reset_rate: 0.03,
                stall_rate: 0.02,
                stall_ms: 12,
                seed: 5,
            },
            grpc_bind: Some("127.0.0.1:8001".parse().unwrap()),
            grpc_stream_model: "tokens".into(),
        };
        assert_eq!(config, expected);
        // One flag changes one knob; the rest stay the profile's.
        let mut expected = ServerConfig::profile("placeholder").unwrap();
        expected.max_queue = 9;
        assert_eq!(config_of(&["--max-queue", "9"]), expected);
        let mut expected = ServerConfig::profile("placeholder").unwrap();
        expected.dynamic_batching = true;
        assert_eq!(config_of(&["--dynamic-batching"]), expected);
        let mut expected = ServerConfig::profile("bert-base").unwrap();
        expected.dynamic_batching = false;
        assert_eq!(
            config_of(&["--profile", "bert-base", "--dynamic-batching=false"]),
            expected
        );
    }

    #[test]
    fn the_tokenizer_flag_reads_its_file_or_says_why_not() {
        use tokenizers::models::wordlevel::WordLevel;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let model = WordLevel::builder()
            .vocab(
                [("[UNK]".to_owned(), 0), ("hello".to_owned(), 1)]
                    .into_iter()
                    .collect(),
            )
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        tokenizers::Tokenizer::new(model)
            .save(&path, false)
            .unwrap();
        let given = path.to_str().unwrap();
        let config = config_of(&["--profile", "llm-slots", "--tokenizer", given]);
        assert_eq!(
            config.llm.tokenizer.as_ref().map(|t| t.path()),
            Some(path.as_path())
        );
        // Only the tokenizer differs from the profile.
        let mut expected = ServerConfig::profile("llm-slots").unwrap();
        expected.llm.tokenizer = config.llm.tokenizer.clone();
        assert_eq!(config, expected);
        let refused = |file: &std::path::Path| {
            let cli = Cli::try_parse_from(["stub-server", "--tokenizer", file.to_str().unwrap()])
                .unwrap();
            cli.config().unwrap_err().to_string()
        };
        let missing = refused(&dir.path().join("absent.json"));
        assert!(
            missing.contains("--tokenizer") && missing.contains("no such file"),
            "{missing}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let invalid = refused(&bad);
        assert!(
            invalid.contains("--tokenizer")
                && invalid.contains("not a Hugging Face tokenizer.json"),
            "{invalid}"
        );
    }

    #[test]
    fn kv_flags_out_of_range_say_what_is_allowed() {
        for (args, needle) in [
            (
                &["--kv-block-tokens", "0"][..],
                "--kv-block-tokens 0: must be an integer from 1",
            ),
            (
                &["--kv-cache-tokens", "8"][..],
                "--kv-cache-tokens 8: must be 0 (unlimited)",
            ),
            (
                &["--prefix-cache-blocks", "100000001"][..],
                "--prefix-cache-blocks 100000001: must be an integer from 0",
            ),
        ] {
            let cli =
                Cli::try_parse_from(std::iter::once("stub-server").chain(args.iter().copied()))
                    .unwrap();
            let err = cli.config().unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        // A capacity of one block is allowed.
        assert_eq!(
            config_of(&["--kv-block-tokens", "8", "--kv-cache-tokens", "8"])
                .llm
                .kv_cache_tokens,
            8
        );
    }

    #[test]
    fn raising_the_fd_limit_reports_the_soft_limit_in_force() {
        #[cfg(unix)]
        {
            let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
            let limit = raise_fd_limit();
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
            assert_eq!(limit, Some(soft));
            assert!(soft >= before, "lowered from {before} to {soft}");
            // Up to a finite hard limit (an unlimited one is more than
            // Linux lets a process have; macOS caps it lower still).
            if cfg!(target_os = "linux") && hard != rlimit::INFINITY {
                assert_eq!(soft, hard);
            }
        }
        #[cfg(not(unix))]
        assert_eq!(raise_fd_limit(), None);
    }
}
