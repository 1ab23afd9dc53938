//! `stub-server` binary: parse flags, bind, announce the address, serve until
//! SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser};
use stub_server::{serve, ServerConfig, ServerError, DEFAULT_PROFILE};

/// Inference-service simulator: a FIFO queue, `workers` executors and a
/// seeded batch cost of (base + per_item * b) * exp(N(0, jitter^2)) ms.
///
/// Profiles: placeholder (default; 2 workers, 100 ms + 2 ms/item, jitter
/// 0.1), zero-cost (no service time, 64 workers), gpt2-medium (1 worker,
/// ~440 ms per batch), bert-base (1 worker, 4.2 ms + 0.045 ms/item, dynamic
/// batching). Every flag overrides the profile's value.
#[derive(Debug, Parser)]
#[command(name = "stub-server", version)]
struct Cli {
    /// Named profile to start from.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PROFILE)]
    profile: String,
    /// Executors running batches in parallel (>= 1).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Fixed cost per executed batch, in ms (>= 0).
    #[arg(long, value_name = "MS")]
    base_ms: Option<f64>,
    /// Added cost per item in a batch, in ms (>= 0).
    #[arg(long, value_name = "MS")]
    per_item_ms: Option<f64>,
    /// Sd of the log-normal service-time multiplier, 0 to 2.
    #[arg(long, value_name = "SIGMA")]
    jitter: Option<f64>,
    /// Seed of the service-time RNG.
    #[arg(long, value_name = "U64")]
    seed: Option<u64>,
    /// Most items in one executed batch (>= 1).
    #[arg(long, value_name = "ITEMS")]
    max_batch: Option<usize>,
    /// Gather queued items across requests into batches (`--dynamic-batching=false` turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    dynamic_batching: Option<bool>,
    /// With dynamic batching, the longest wait for a batch to fill after its
    /// oldest item arrived, in ms (0 to 60000).
    #[arg(long, value_name = "MS")]
    batch_window_ms: Option<f64>,
    /// With dynamic batching, a batch size formed at once when the queue
    /// holds enough whole requests for it (Triton's preferred_batch_size;
    /// repeatable, 1 to --max-batch).
    #[arg(long = "preferred-batch-size", value_name = "ITEMS")]
    preferred_batch_sizes: Vec<usize>,
    /// Most items waiting in the queue; beyond it 503 queue_full (>= 1).
    #[arg(long, value_name = "ITEMS")]
    max_queue: Option<usize>,
    /// Largest request body, in bytes; beyond it 413 (>= 1).
    #[arg(long, value_name = "BYTES")]
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
    #[command(flatten)]
    faults: FaultArgs,
}

/// The fault-injection flags, listed under their own heading in --help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Fault injection (off by default)")]
struct FaultArgs {
    /// Fault injection: share of requests answered 500/503 with a JSON
    /// error (0 to 1; all fault rates together at most 1) [default: 0].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    fault_error_rate: Option<f64>,
    /// Share of requests answered 200 with a wrong output (0 to 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    fault_corrupt_rate: Option<f64>,
    /// Share of requests whose body is cut after half its bytes (0 to 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    fault_truncate_rate: Option<f64>,
    /// Share of requests whose connection is dropped unanswered (0 to 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    fault_reset_rate: Option<f64>,
    /// Share of requests held --fault-stall-ms before being served (0 to 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    fault_stall_rate: Option<f64>,
    /// How long a stalled request is held, in ms (1 to 600000).
    #[arg(long, value_name = "MS")]
    fault_stall_ms: Option<u64>,
    /// Seed of the fault sequence [default: 0].
    #[arg(long, value_name = "U64")]
    fault_seed: Option<u64>,
}

fn parse_datatype(text: &str) -> Result<model::kserve::Datatype, String> {
    model::kserve::Datatype::from_name(&text.to_ascii_uppercase()).ok_or_else(|| {
        format!("{text:?} is not a datatype this server takes; use BYTES, FP32 or INT64")
    })
}

impl Cli {
    fn config(self) -> Result<ServerConfig, ServerError> {
        let mut config = ServerConfig::profile(&self.profile)?;
        let service = &mut config.service;
        if let Some(v) = self.base_ms {
            service.base_ms = v;
        }
        if let Some(v) = self.per_item_ms {
            service.per_item_ms = v;
        }
        if let Some(v) = self.jitter {
            service.jitter = v;
        }
        if let Some(v) = self.seed {
            service.seed = v;
        }
        if let Some(v) = self.workers {
            config.workers = v;
        }
        if let Some(v) = self.max_batch {
            config.max_batch = v;
        }
        if let Some(v) = self.dynamic_batching {
            config.dynamic_batching = v;
        }
        if let Some(v) = self.batch_window_ms {
            config.batch_window_ms = v;
        }
        if !self.preferred_batch_sizes.is_empty() {
            config.preferred_batch_sizes = self.preferred_batch_sizes;
        }
        if let Some(v) = self.max_queue {
            config.max_queue = v;
        }
        if let Some(v) = self.max_body_bytes {
            config.max_body_bytes = v;
        }
        if let Some(v) = self.kserve_input_datatype {
            config.kserve_input_datatype = v;
        }
        if let Some(v) = self.models {
            config.models = v.into_iter().map(|m| m.trim().to_owned()).collect();
        }
        if let Some(v) = self.bind {
            config.bind = v;
        }
        let (flags, fault_config) = (self.faults, &mut config.faults);
        for (flag, rate) in [
            (flags.fault_error_rate, &mut fault_config.error_rate),
            (flags.fault_corrupt_rate, &mut fault_config.corrupt_rate),
            (flags.fault_truncate_rate, &mut fault_config.truncate_rate),
            (flags.fault_reset_rate, &mut fault_config.reset_rate),
            (flags.fault_stall_rate, &mut fault_config.stall_rate),
        ] {
            if let Some(v) = flag {
                *rate = v;
            }
        }
        if let Some(v) = flags.fault_stall_ms {
            fault_config.stall_ms = v;
        }
        if let Some(v) = flags.fault_seed {
            fault_config.seed = v;
        }
        config.validate()?;
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
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
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
        serve(config, listener, shutdown_signal()).await
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
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a
    // live, properly aligned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // rlim_t is u64 on Linux, not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    Some(current)
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}
