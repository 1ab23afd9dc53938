//! The `report` command line: `report compare`, `summary`, `repeats`,
//! `whatif` and `merge`.
//!
//! Exit codes (for CI gates): 0 the verdict is met, 1 it is not, 2 the
//! report could not be produced (bad flag, unreadable or malformed log,
//! unwritable output directory).
//!
//! The flags live here, one module per subcommand that has many
//! (`compare.rs`, `whatif.rs`, `merge.rs`); the library takes the plain
//! options they fill.

mod compare;
mod merge;
mod whatif;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use report::{summary_of_log, ReportError, RunLog};

/// Compare Before/After latency logs against a P95 SLA and write reports.
#[derive(Parser)]
#[command(name = "report", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare two runs, write comparison.json/.csv, report.md and report.html,
    /// print the table and the verdict; exit 0 if met, 1 if not, 2 on error.
    Compare(Box<compare::CompareArgs>),
    /// Print one log's summary (the keys of a side of comparison.json) as JSON.
    Summary {
        /// An input.py or loadgen log (CSV).
        file: PathBuf,
        /// Label to put in the summary.
        #[arg(long, default_value = "run")]
        label: String,
    },
    /// The interleaved proof of `--repeat N`: read each pair's
    /// comparison.json and logs, write repeats.json and repeats.md (the P95
    /// difference with a bootstrap interval, the seeds, how many pairs met);
    /// exit 0 if every pair met its verdict, 1 if not, 2 on error.
    Repeats {
        /// Where repeats.json and repeats.md go (created if missing).
        #[arg(long)]
        out_dir: PathBuf,
        /// Also write JUnit XML to FILE (for CI): one test suite per pair
        /// (its verdict's checks, as `report compare --junit` writes them),
        /// then one for the proof (every pair met).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// The pairs' directories, in the order they ran.
        #[arg(required = true)]
        pairs: Vec<PathBuf>,
    },
    /// Decide the After from the Before and write whatif.json: the what-if
    /// engine's client change (--scenario inference), Triton's dynamic
    /// batcher beside it (--server triton), the continuous-batching
    /// engine's server or client change (--scenario llm); each with its
    /// reason and numbers. Exit 0 decided, 1 the engine found nothing
    /// within the SLA's (the objectives') margin, 2 error.
    Whatif(Box<whatif::WhatifArgs>),
    /// Merge the shards of a distributed run (loadgen --shard ... --out-dir)
    /// into DIR/summary.json and DIR/log.csv, judge --sla on the union;
    /// exit 0 met, 1 not met or shards overlapped, 2 error.
    Merge(Box<merge::MergeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Compare(args) => exit_code(compare::run(&args)),
        Command::Summary { file, label } => exit_code(run_summary(&file, &label).map(|()| true)),
        // 1 when an engine found no candidate that meets the SLA (the
        // objectives) with the margin (its best is still the After).
        Command::Whatif(args) => exit_code(report::whatif::run(&args.options()).map(|r| {
            r.engine.as_ref().is_none_or(|e| e.chosen.is_some())
                && r.llm.as_ref().is_none_or(|l| l.chosen.is_some())
        })),
        Command::Merge(args) => exit_code(merge::run(&args)),
        Command::Repeats {
            out_dir,
            junit,
            pairs,
        } => exit_code(run_repeats(&out_dir, junit.as_deref(), &pairs)),
    }
}

/// 0 met, 1 not, 2 error (printed as `report: error: ...`).
fn exit_code<E: Display>(result: Result<bool, E>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("report: error: {err}");
            ExitCode::from(2)
        }
    }
}

fn run_summary(file: &Path, label: &str) -> Result<(), ReportError> {
    let run = RunLog::read(label, file)?;
    let summary = summary_of_log(label, run.log_file.as_deref(), &run.log)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Returns whether every pair met its verdict.
fn run_repeats(
    out_dir: &Path,
    junit: Option<&Path>,
    pairs: &[PathBuf],
) -> Result<bool, ReportError> {
    if let Some(path) = junit {
        report::junit::check_path(path)?;
    }
    let (summary, comparisons) = report::repeats::summarize_pairs(pairs)?;
    let written = report::repeats::write(&summary, out_dir)?;
    print!("{}", report::repeats::render_markdown(&summary));
    for path in written {
        println!("written: {}", path.display());
    }
    if let Some(path) = junit {
        let suites = report::repeats::junit_suites(&summary, &comparisons, path);
        report::junit::write(path, "report repeats", &suites)?;
        println!("written: {}", path.display());
    }
    Ok(summary.met_every_pair)
}

// Shared with xtask and the other binaries, where its helper is public.
#[cfg(test)]
#[path = "../../../../../xtask/src/cli_check.rs"]
#[allow(unreachable_pub)]
mod cli_check;

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks, and every flag of every subcommand parsed at
    /// least once through the derive type.
    #[test]
    fn every_flag_parses() {
        use clap::CommandFactory;
        let samples: &[&[&str]] = &[
            &[
                "compare",
                "--before",
                "b.csv",
                "--after",
                "a.csv",
                "--reproduction",
                "r.csv",
                "--input-py-stdout",
                "o.txt",
                "--before-server-stats",
                "bs.json",
                "--after-server-stats",
                "as.json",
                "--conditions",
                "c.json",
                "--before-label",
                "B",
                "--after-label",
                "A",
                "--reproduction-label",
                "R",
                "--sla-p95-ms",
                "800",
                "--sla",
                "p99<=1000",
                "--prediction",
                "w.json",
                "--decision",
                "server-change",
                "--capacity",
                "cap.json",
                "--capacity-open-loop",
                "cap2.json",
                "--before-metrics",
                "bm.json",
                "--after-metrics",
                "am.json",
                "--max-failed",
                "0",
                "--out-dir",
                "out",
                "--junit",
                "j.xml",
            ],
            &["summary", "x.csv", "--label", "run"],
            &[
                "repeats",
                "--out-dir",
                "out",
                "--junit",
                "j.xml",
                "p1",
                "p2",
            ],
            &[
                "whatif",
                "--before",
                "b.csv",
                "--probe",
                "p1.csv",
                "--before-stats",
                "bs.json",
                "--probe-stats",
                "ps.json",
                "--concurrency",
                "20",
                "--requests",
                "400",
                "--sla-p95-ms",
                "800",
                "--margin",
                "0.2",
                "--max-batch",
                "32",
                "--server-dynamic-batching",
                "--refits",
                "10",
                "--seed",
                "1",
                "--json",
                "w.json",
            ],
            &[
                "whatif",
                "--scenario",
                "llm",
                "--max-num-seqs",
                "8",
                "--max-batched-tokens",
                "2048",
                "--pass-tokens",
                "512",
                "--chunked-prefill",
                "off",
                "--kv-cache-tokens",
                "4096",
                "--kv-block-tokens",
                "16",
                "--prefix-cache-blocks",
                "64",
                "--replicas",
                "1",
                "--prompt-tokens",
                "34",
                "--probe-prompt-tokens",
                "16",
                "--before-metrics",
                "m.json",
                "--sla",
                "ttft_p95<=500",
                "--server-changes",
                "slots,batched-tokens",
                "--before",
                "b.csv",
                "--json",
                "w.json",
            ],
            &[
                "whatif",
                "--server",
                "triton",
                "--before",
                "b.csv",
                "--rate",
                "5",
                "--poisson",
                "--json",
                "w.json",
            ],
            &[
                "merge", "--out", "m", "--sla", "p95<=800", "--junit", "j.xml", "s0", "s1",
            ],
        ];
        crate::cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
            Cli::try_parse_from(std::iter::once("report").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
}
