//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask perf [--url URL] [--repeat N] [--sla-p95-ms MS] [--out DIR] [--skip-python]`
//!   runs the whole Before/After story (SPEC section 8); `./run_tests` calls it.
//!
//! Exit codes: 0 SLA met with no failed request and every output verified,
//! 1 SLA or quality not met, 2 the workflow could not run.

mod perf;
mod process;
mod python;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the latency toolkit"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run Before (input.py and its Rust reproduction), analysis, After, and the report.
    Perf(perf::PerfArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0, errors with a hint.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.task {
        Task::Perf(args) => perf::run(args),
    };
    match result {
        Ok(perf::Outcome::Met) => ExitCode::SUCCESS,
        Ok(perf::Outcome::NotMet) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
