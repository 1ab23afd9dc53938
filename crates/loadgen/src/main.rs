//! The `loadgen` binary: parse flags, run the library, print the summary,
//! map the outcome to an exit code (0 all ok, 1 some failed, 2 usage/setup).

use std::process::ExitCode;

use clap::Parser;
use loadgen::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help/version (exit 0) or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    let json_path = cli.json.clone();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let log_path = config.log_path.clone();
    raise_fd_limit();
    let quiet = !config.progress;
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
    print!("{summary}");
    if let Some(path) = log_path {
        println!("Log written to {}", path.display());
    }
    if let Some(path) = json_path {
        if let Err(e) = summary.write_json(&path) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
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
