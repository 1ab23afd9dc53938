//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask perf [--scenario llm] [--server triton [--protocol grpc]|llama] [--url URL] [--repeat N] [--sla-p95-ms MS] [--sla EXPR] [--out DIR] [--skip-python]`
//!   runs the whole Before/After story; `./run_tests` calls it.
//! - `cargo xtask whatif-validate [--scenario llm] [--only NAME]` checks
//!   the what-if engine's predicted P95 against measured runs on nine
//!   simulator scenarios (with `llm`: the LLM engine's TTFT P95 and ITL P99
//!   on six stub-server LLM configurations) and writes the table.
//! - `cargo xtask distributed [--shards 4]` runs the shards of one load on
//!   loopback as an Indexed Job would, merges them and checks the merge
//!   against a single generator.
//! - `cargo xtask bench [--duration-s S] [--connections N] [--rounds N] ...`
//!   measures the tools against wrk, oha, nginx and hdrhistogram and
//!   writes `results/bench.json`.
//!
//! Exit codes: 0 SLA met with no failed request and every output verified,
//! 1 SLA or quality not met, 2 the workflow could not run.

mod backend;
mod bench;
mod build;
#[cfg(test)]
mod cli_check;
mod distributed;
mod error;
mod json;
mod llama;
mod machine;
mod perf;
mod process;
mod python;
mod triton;
mod whatif;
mod whatif_validate;
mod whatif_validate_llm;
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
    /// Measure the tools against their peers and write results/bench.json.
    Bench(bench::BenchArgs),
    /// Check the what-if engine's predictions against measurements on
    /// simulator scenarios its fit never saw (minutes; not in CI).
    WhatifValidate(whatif_validate::ValidateArgs),
    /// Run shards of one load as Kubernetes would (JOB_COMPLETION_INDEX,
    /// one --start-at), merge them, and check the merge against one
    /// generator.
    Distributed(distributed::DistributedArgs),
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
        Task::Bench(args) => return bench::main(args),
        Task::Distributed(args) => distributed::run(&args).map(|passed| {
            if passed {
                perf::Outcome::Met
            } else {
                perf::Outcome::NotMet
            }
        }),
        Task::WhatifValidate(args) => whatif_validate::run(&args).map(|passed| {
            if passed {
                perf::Outcome::Met
            } else {
                perf::Outcome::NotMet
            }
        }),
    };
    // Interrupted (SIGINT/SIGTERM): the children are stopped; say so with
    // 128 + the signal, whatever the unwinding workflow returned.
    if let Some(code) = process::interrupted_exit_code() {
        eprintln!("interrupted: simulators and clients stopped; partial results are in the output directory");
        return ExitCode::from(code);
    }
    match result {
        Ok(perf::Outcome::Met) => ExitCode::SUCCESS,
        Ok(perf::Outcome::NotMet) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks, and every flag of every task parsed at least once
    /// through the derive type.
    #[test]
    fn every_flag_parses() {
        use clap::CommandFactory;
        let samples: &[&[&str]] = &[
            &[
                "perf",
                "--scenario",
                "inference",
                "--server",
                "simulator",
                "--api",
                "simulator",
                "--loadgen-arg=--timeout=5s",
                "--after",
                "auto",
                "--capacity",
                "--capacity-step",
                "5s",
                "--repeat",
                "2",
                "--sla-p95-ms",
                "800",
                "--sla",
                "p99<=1000",
                "--out",
                "r",
                "--skip-python",
                "--profile",
                "placeholder",
                "--server-arg=--base-ms=20",
            ],
            &["perf", "--url", "http://127.0.0.1:9/v1/infer"],
            &["perf", "--server", "triton", "--protocol", "grpc"],
            &[
                "bench",
                "--out",
                "r",
                "--duration-s",
                "3",
                "--connections",
                "32",
                "--rounds",
                "3",
                "--bin-dir",
                "target/release",
                "--label",
                "vm",
                "--skip-stats",
                "--skip-run-tests",
                "--no-pin",
                "--tls-only",
            ],
            &["bench", "--llm-only"],
            &["bench", "--workload-only"],
            &["bench", "--exporter-only"],
            &["bench", "--grpc-only"],
            &[
                "bench",
                "--scale-only",
                "--scale-streams",
                "1000,10000",
                "--isolate-client",
            ],
            &[
                "bench",
                "--aiperf-only",
                "--aiperf-concurrency",
                "10,100",
                "--aiperf-venv",
                ".venv-aiperf",
                "--aiperf-tokenizer",
                "tok",
                "--aiperf-itl-ms",
                "100",
            ],
            &[
                "whatif-validate",
                "--scenario",
                "inference",
                "--out",
                "r",
                "--requests",
                "400",
                "--only",
                "placeholder",
                "--capacity",
                "--capacity-step",
                "10s",
            ],
            &["whatif-validate", "--scenario", "llm", "--only", "open"],
            &[
                "distributed",
                "--shards",
                "4",
                "--rate",
                "200",
                "--requests",
                "2000",
                "--out",
                "r",
            ],
        ];
        cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
            Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
}
