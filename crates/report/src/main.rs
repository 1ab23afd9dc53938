//! The `report` command line: `report compare ...` and `report summary FILE`.
//!
//! Exit codes (for CI gates): 0 the verdict is met, 1 it is not, 2 the
//! report could not be produced (bad flag, unreadable or malformed log,
//! unwritable output directory).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use report::{compare, write_reports, CompareOptions, ReportError, RunLog, SideSummary};

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
    Compare(Box<CompareArgs>),
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
        /// The pairs' directories, in the order they ran.
        #[arg(required = true)]
        pairs: Vec<PathBuf>,
    },
    /// Decide the After from the Before and write whatif.json: the what-if
    /// engine's client change (--scenario inference), Triton's dynamic
    /// batcher beside it (--server triton), an LLM server's max_num_seqs
    /// (--scenario llm); each with its reason and numbers. Exit 0 decided,
    /// 1 the engine found nothing within the SLA's margin, 2 error.
    Whatif(Box<report::whatif::cli::WhatifArgs>),
    /// Merge the shards of a distributed run (loadgen --shard ... --out-dir)
    /// into DIR/summary.json and DIR/log.csv, judge --sla on the union;
    /// exit 0 met, 1 not met or shards overlapped, 2 error.
    Merge(Box<report::merge::MergeArgs>),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The Before log (input.py's own log, or the Rust reproduction).
    #[arg(long)]
    before: PathBuf,
    /// The After log (the optimized client).
    #[arg(long)]
    after: PathBuf,
    /// The Rust reproduction of the Before (loadgen log), when the Before is input.py's log.
    #[arg(long)]
    reproduction: Option<PathBuf>,
    /// A file holding what input.py printed, to reconcile with its log.
    #[arg(long)]
    input_py_stdout: Option<PathBuf>,
    /// The server's statistics around the Before run (`loadgen
    /// --server-stats`, Triton's /stats), for findings from them.
    #[arg(long, value_name = "FILE")]
    before_server_stats: Option<PathBuf>,
    /// The server's statistics around the After run.
    #[arg(long, value_name = "FILE")]
    after_server_stats: Option<PathBuf>,
    /// The run's conditions.json (server, load shape, machine, each
    /// phase's load...; every key optional, unknown ones ignored).
    #[arg(long)]
    conditions: Option<PathBuf>,
    /// Label of the Before in tables and charts.
    #[arg(long, default_value = "Before")]
    before_label: String,
    /// Label of the After in tables and charts.
    #[arg(long, default_value = "After")]
    after_label: String,
    /// Label of the reproduction.
    #[arg(long, default_value = "Before (Rust reproduction)")]
    reproduction_label: String,
    /// SLA bound on the After's P95, in ms (met when P95 <= this).
    #[arg(long, default_value_t = 800.0, value_parser = parse_sla_p95_ms, allow_negative_numbers = true)]
    sla_p95_ms: f64,
    /// An objective on the After beyond the P95 SLA, repeatable: METRIC
    /// (p50, p90, p95, p99, p99.9, mean, max in ms, with ttft_, itl_, tpot_
    /// or e2e_ in front for LLM runs; error_rate; throughput_rps;
    /// goodput_rps) then <=, <, >= or >, then a number, e.g. 'p99<=1000',
    /// 'error_rate<=0.01', 'ttft_p95<=500'.
    #[arg(long = "sla", value_name = "EXPR")]
    slos: Vec<report::slo::Slo>,
    /// The analysis's JSON (`report whatif --json`) whose decision the After
    /// carried out: comparison.json gets `decision` (what was chosen, why,
    /// its numbers) and, for the engine's client change, `prediction`
    /// (predicted beside measured).
    #[arg(long, value_name = "FILE")]
    prediction: Option<PathBuf>,
    /// With --prediction: which of its decisions the After carried out,
    /// `after` or `server-change` (the server change measured beside it).
    #[arg(
        long,
        value_enum,
        default_value = "after",
        value_name = "WHICH",
        requires = "prediction"
    )]
    decision: DecisionArg,
    /// A capacity search of the After's client (`loadgen capacity --json`),
    /// charted with the engine's predicted capacity beside it.
    #[arg(long, value_name = "FILE")]
    capacity: Option<PathBuf>,
    /// A capacity search of the client the engine predicts the most
    /// open-loop capacity for (`loadgen capacity --json`; needs
    /// --prediction for the prediction beside it).
    #[arg(long, value_name = "FILE")]
    capacity_open_loop: Option<PathBuf>,
    /// Failed After requests the verdict allows.
    #[arg(long, default_value_t = 0, value_parser = parse_max_failed, allow_negative_numbers = true)]
    max_failed: u64,
    /// Directory for the report files (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
}

/// `report compare --decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DecisionArg {
    /// whatif.json's `after`.
    After,
    /// whatif.json's `server_change`.
    ServerChange,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(args) => run_compare(&args),
        Command::Summary { file, label } => run_summary(&file, &label).map(|()| true),
        Command::Whatif(args) => return report::whatif::cli::main(&args),
        Command::Merge(args) => return report::merge::main(&args),
        Command::Repeats { out_dir, pairs } => run_repeats(&out_dir, &pairs),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("report: error: {err}");
            ExitCode::from(2)
        }
    }
}

fn parse_sla_p95_ms(text: &str) -> Result<f64, String> {
    model::args::FloatBound {
        what: "--sla-p95-ms",
        min: 0.0,
        max: f64::INFINITY,
        min_inclusive: false,
    }
    .parse(text)
}

fn parse_max_failed(text: &str) -> Result<u64, String> {
    model::args::Bound {
        what: "--max-failed",
        min: 0,
        max: u64::MAX,
    }
    .parse(text)
}

fn read_text(what: &str, path: &Path) -> Result<String, ReportError> {
    fs::read_to_string(path).map_err(|e| {
        ReportError::io(
            path,
            std::io::Error::new(e.kind(), format!("cannot read the {what} file: {e}")),
        )
    })
}

/// Returns whether the verdict is met.
fn run_compare(args: &CompareArgs) -> Result<bool, ReportError> {
    if !(args.sla_p95_ms.is_finite() && args.sla_p95_ms > 0.0) {
        return Err(ReportError::InvalidOption(format!(
            "--sla-p95-ms must be a finite number of milliseconds above 0 (got {}); e.g. --sla-p95-ms 800",
            args.sla_p95_ms
        )));
    }
    for (flag, label) in [
        ("--before-label", &args.before_label),
        ("--after-label", &args.after_label),
    ] {
        if label.trim().is_empty() {
            return Err(ReportError::InvalidOption(format!(
                "{flag} must not be empty; give a short name such as \"Before\""
            )));
        }
    }
    if args.out_dir.exists() && !args.out_dir.is_dir() {
        return Err(ReportError::InvalidOption(format!(
            "--out-dir {} exists and is not a directory; pass a directory path",
            args.out_dir.display()
        )));
    }
    let conditions = match &args.conditions {
        Some(path) => {
            let text = read_text("conditions", path)?;
            model::conditions::Conditions::from_json(&text).map_err(|e| {
                ReportError::InvalidOption(format!(
                    "--conditions {}: not a conditions.json ({e}); pass a JSON object such as {{\"concurrency\": 20}}",
                    path.display()
                ))
            })?
        }
        None => model::conditions::Conditions::default(),
    };
    let input_py_stdout = match &args.input_py_stdout {
        Some(path) => Some(read_text("input.py stdout", path)?),
        None => None,
    };
    let mut before = RunLog::read(&args.before_label, &args.before)?;
    if let Some(path) = &args.before_server_stats {
        before = before.with_server_stats(path)?;
    }
    let mut after = RunLog::read(&args.after_label, &args.after)?;
    if let Some(path) = &args.after_server_stats {
        after = after.with_server_stats(path)?;
    }
    let reproduction = match &args.reproduction {
        Some(path) => Some(RunLog::read(&args.reproduction_label, path)?),
        None => None,
    };
    let options = CompareOptions {
        sla_p95_ms: args.sla_p95_ms,
        max_failed: args.max_failed,
        conditions,
        input_py_stdout,
        slos: args.slos.clone(),
        whatif: match &args.prediction {
            Some(path) => Some(read_whatif(path)?),
            None => None,
        },
        decision: match args.decision {
            DecisionArg::After => model::whatif::DecisionRole::After,
            DecisionArg::ServerChange => model::whatif::DecisionRole::ServerChange,
        },
        capacity: match &args.capacity {
            Some(path) => Some(report::capacity::Capacity::read(path)?),
            None => None,
        },
        capacity_open_loop: match &args.capacity_open_loop {
            Some(path) => Some(report::capacity::Capacity::read(path)?),
            None => None,
        },
    };
    let comparison = compare(&before, &after, reproduction.as_ref(), &options)?;
    let written = write_reports(&comparison, &before, &after, &args.out_dir)?;
    print!("{}", report::table::plain_text(&comparison));
    println!("Reports written:");
    for path in written {
        println!("  {}", path.display());
    }
    Ok(comparison.verdict.met)
}

fn read_whatif(path: &Path) -> Result<model::whatif::WhatifReport, ReportError> {
    let text = read_text("--prediction", path)?;
    serde_json::from_str(&text).map_err(|e| {
        ReportError::InvalidOption(format!(
            "--prediction {}: not a `report whatif --json` file of schema version {} ({e})",
            path.display(),
            report::whatif::SCHEMA_VERSION
        ))
    })
}

fn run_summary(file: &Path, label: &str) -> Result<(), ReportError> {
    let run = RunLog::read(label, file)?;
    let summary = SideSummary::from_log(label, run.log_file.as_deref(), &run.log)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Returns whether every pair met its verdict.
fn run_repeats(out_dir: &Path, pairs: &[PathBuf]) -> Result<bool, ReportError> {
    let summary = report::repeats::summarize(pairs)?;
    let written = report::repeats::write(&summary, out_dir)?;
    print!("{}", report::repeats::render_markdown(&summary));
    for path in written {
        println!("written: {}", path.display());
    }
    Ok(summary.met_every_pair)
}

#[cfg(test)]
#[path = "../../../xtask/src/cli_check.rs"]
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
                "--max-failed",
                "0",
                "--out-dir",
                "out",
            ],
            &["summary", "x.csv", "--label", "run"],
            &["repeats", "--out-dir", "out", "p1", "p2"],
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
            &["merge", "--out", "m", "--sla", "p95<=800", "s0", "s1"],
        ];
        crate::cli_check::assert_every_flag_parsed(Cli::command(), samples, |args| {
            Cli::try_parse_from(std::iter::once("report").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
}
