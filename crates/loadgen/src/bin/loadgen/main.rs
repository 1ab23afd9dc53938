//! The `loadgen` binary: parse flags, run the library, print the summary,
//! map the outcome to an exit code (a run: 0 all ok, 1 some failed;
//! `capacity`: 0 an answer found, 1 nothing sustainable or interrupted;
//! both: 2 usage/setup).

mod cli;
mod convert;
mod outputs;
mod values;

// The flag test every binary of the workspace shares: xtask's file, whose
// helper is declared `pub`.
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../../../../xtask/src/cli_check.rs"]
mod cli_check;

use std::process::ExitCode;

use clap::Parser;
use loadgen::capacity::{self, LoadgenRunner, StepRecord};

use loadgen::metrics::MetricsServer;

use crate::cli::{CapacityArgs, Cli, Command, MetricsArgs, OutputFormat};

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help/version (exit 0) or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    match cli.command.take() {
        Some(Command::Capacity(args)) => capacity_main(*args),
        None => run_main(cli),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    runtime_with(None)
}

/// The runtime with `workers` worker threads (`None`: one a core).
fn runtime_with(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(2)
    })
}

/// Worker threads of a run's runtime: for a closed loop, no more than its
/// streams (at least one); `None` (one a core) for an open loop, whose
/// requests in flight are not bounded by `concurrency`.
fn runtime_workers(open_loop: bool, concurrency: usize, cores: usize) -> Option<usize> {
    (!open_loop).then(|| cores.min(concurrency).max(1))
}

/// `loadgen capacity`: the table of steps as they finish, the answer, the
/// JSON (also after Ctrl-C, with the steps measured so far).
fn capacity_main(args: CapacityArgs) -> ExitCode {
    let metrics_args = args.metrics.clone();
    let mut plan = match args.into_plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    raise_fd_limit();
    let server = match start_metrics(&runtime, &metrics_args) {
        Ok(server) => server,
        Err(code) => return code,
    };
    plan.config.metrics = server.as_ref().map(MetricsServer::metrics);
    let outcome = runtime.block_on(async {
        // One signal stops the whole search: the step in progress winds
        // down as a run does, and no further step starts.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop_signal().await;
            let _ = stop_tx.send(true);
        });
        let mut runner = LoadgenRunner::new(plan.config, plan.arrival, plan.max_in_flight, stop_rx);
        runner.announce = !plan.quiet;
        println!("{}", capacity::TABLE_HEADER);
        let mut print_step = |record: &StepRecord| println!("{}", capacity::TableRow(record));
        capacity::search(&plan.options, &mut runner, &mut print_step).await
    });
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", capacity::Answer(&report));
    if let Err(e) = report.write_json(&plan.json) {
        eprintln!("error: cannot write {}: {e}", plan.json.display());
        return ExitCode::from(2);
    }
    println!("Result written to {}", plan.json.display());
    linger(&runtime, server, &metrics_args);
    if report.found() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_main(cli: Cli) -> ExitCode {
    let json_path = cli.run.summary_path();
    let dry_run = cli.run.dry_run.clone();
    let output_format = cli.run.output_format;
    let out_dir = cli.run.out_dir.clone().map(loadgen::OutDir::new);
    let metrics_args = cli.metrics.clone();
    let mut config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Created only once every flag is known good, so a refused command
    // line leaves nothing behind.
    if let Some(dir) = &out_dir {
        if let Err(e) = dir.create() {
            eprintln!(
                "error: cannot create --out-dir {}: {e}",
                dir.dir().display()
            );
            return ExitCode::from(2);
        }
    }
    // A closed loop has at most `concurrency` requests in flight: more
    // workers than that only wake each other (against Triton over gRPC at
    // one stream, a second worker cost futex wake-ups on every request).
    // The HTTP client runs on its own shard threads either way.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = runtime_workers(config.open_loop.is_some(), config.concurrency, cores);
    let runtime = match runtime_with(workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let log_path = config.log_path.clone();
    raise_fd_limit();
    let quiet = !config.progress;
    if let Some(path) = dry_run {
        let outcome = runtime.block_on(async {
            let prepared = loadgen::prepare(config).await?;
            if !quiet {
                for line in prepared.start_lines() {
                    eprintln!("loadgen: {line}");
                }
            }
            prepared.dry_run(&path)
        });
        return match outcome {
            Ok(written) => {
                println!(
                    "Dry run: {} requests written to {} in {:.3} s; nothing was sent",
                    written.requests,
                    path.display(),
                    written.seconds
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let server = match start_metrics(&runtime, &metrics_args) {
        Ok(server) => server,
        Err(code) => return code,
    };
    config.metrics = server.as_ref().map(MetricsServer::metrics);
    let outcome = runtime.block_on(async {
        let prepared = loadgen::prepare(config).await?;
        if !quiet {
            for line in prepared.start_lines() {
                eprintln!("loadgen: {line}");
            }
        }
        prepared.run(stop_signal()).await
    });
    let summary = match outcome {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match output_format {
        OutputFormat::Text => {
            print!("{}", loadgen::SummaryText(&summary));
            if let Some(path) = log_path {
                println!("Log written to {}", path.display());
            }
        }
        // stdout carries the JSON alone, so a program can parse it whole.
        OutputFormat::Json => {
            match summary.to_json() {
                Ok(json) => print!("{json}"),
                Err(e) => {
                    eprintln!("error: cannot encode the summary as JSON: {e}");
                    return ExitCode::from(2);
                }
            }
            if let Some(path) = log_path {
                eprintln!("Log written to {}", path.display());
            }
        }
    }
    if let Some(path) = json_path {
        if let Err(e) = summary.write_json(&path) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    linger(&runtime, server, &metrics_args);
    if summary.failed == 0 && !summary.interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the run then stops issuing,
/// flushes its log and prints and writes the partial summary. If no handler
/// can be installed, it never resolves and the run goes to completion.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending::<()>().await,
        }
        eprintln!("loadgen: signal received; stopping, flushing the log and the summary");
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so thousands of
/// concurrent connections do not run out of descriptors. Best effort: where
/// the OS refuses, the run goes on with the limit in force.
#[cfg(unix)]
fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

#[cfg(not(unix))]
fn raise_fd_limit() {}

/// Opens `--metrics-listen` before any request (a taken port is a usage
/// error, not a run without metrics) and says where it is: with port 0
/// that line is the only way to know.
fn start_metrics(
    runtime: &tokio::runtime::Runtime,
    args: &MetricsArgs,
) -> Result<Option<MetricsServer>, ExitCode> {
    let Some(addr) = args.metrics_listen else {
        return Ok(None);
    };
    match runtime.block_on(MetricsServer::bind(addr)) {
        Ok(server) => {
            eprintln!(
                "loadgen: metrics at http://{}/metrics (until the run ends)",
                server.local_addr()
            );
            Ok(Some(server))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Serves the final totals for `--metrics-linger`, then stops the
/// listener (the runtime keeps serving scrapes while this waits).
fn linger(runtime: &tokio::runtime::Runtime, server: Option<MetricsServer>, args: &MetricsArgs) {
    let Some(server) = server else {
        return;
    };
    let linger = args.metrics_linger.unwrap_or_default();
    if !linger.is_zero() {
        eprintln!(
            "loadgen: serving the final metrics for {:.3} s more (--metrics-linger)",
            linger.as_secs_f64()
        );
    }
    runtime.block_on(server.linger(linger));
}

#[cfg(test)]
mod runtime_tests {
    use super::runtime_workers;

    #[test]
    fn a_closed_loop_gets_no_more_workers_than_streams() {
        assert_eq!(runtime_workers(false, 1, 16), Some(1));
        assert_eq!(runtime_workers(false, 8, 2), Some(2));
        assert_eq!(runtime_workers(false, 0, 4), Some(1));
        assert_eq!(runtime_workers(true, 1, 16), None);
    }
}
