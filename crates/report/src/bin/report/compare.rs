//! `report compare`'s flags, and the files they name read into
//! [`CompareOptions`]: the conditions, `input.py`'s stdout, the analysis
//! and the capacity searches.

use std::fs;
use std::path::{Path, PathBuf};

use model::capacity::Capacity;
use report::{compare, write_reports, CompareOptions, ReportError, RunLog};
use stats::slo::Slo;

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
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
    /// The server's metrics through the Before (`loadgen
    /// --server-metrics-url`'s JSON time series), for the LLM findings:
    /// the TTFT split from the server's histograms, KV-cache pressure, the
    /// prefix cache's hit rate.
    #[arg(long, value_name = "FILE.json")]
    before_metrics: Option<PathBuf>,
    /// The server's metrics through the After.
    #[arg(long, value_name = "FILE.json")]
    after_metrics: Option<PathBuf>,
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
    slos: Vec<Slo>,
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
    /// Also write the verdict as JUnit XML to FILE (for CI): one test
    /// suite, one test case per check and per --sla objective, a failed
    /// check a <failure> with the measured value against the threshold.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// `report compare --decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DecisionArg {
    /// whatif.json's `after`.
    After,
    /// whatif.json's `server_change`.
    ServerChange,
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

/// Compares, writes the reports, prints the table; returns whether the
/// verdict is met.
pub(crate) fn run(args: &CompareArgs) -> Result<bool, ReportError> {
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
    if let Some(path) = &args.junit {
        report::junit::check_path(path)?;
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
    if let Some(path) = &args.before_metrics {
        before = before.with_server_metrics(path)?;
    }
    let mut after = RunLog::read(&args.after_label, &args.after)?;
    if let Some(path) = &args.after_server_stats {
        after = after.with_server_stats(path)?;
    }
    if let Some(path) = &args.after_metrics {
        after = after.with_server_metrics(path)?;
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
            Some(path) => Some(read_capacity(path)?),
            None => None,
        },
        capacity_open_loop: match &args.capacity_open_loop {
            Some(path) => Some(read_capacity(path)?),
            None => None,
        },
    };
    let comparison = compare(&before, &after, reproduction.as_ref(), &options)?;
    let written = write_reports(&comparison, &before, &after, &args.out_dir)?;
    print!("{}", report::plain_text(&comparison));
    println!("Reports written:");
    for path in written {
        println!("  {}", path.display());
    }
    if let Some(path) = &args.junit {
        let name = format!("{} vs {}", comparison.before.label, comparison.after.label);
        let beside = report::junit::with_logs_beside(&comparison, None, path);
        let suite = report::junit::comparison_suite(&beside, &name, "");
        report::junit::write(path, "report compare", &[suite])?;
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
            model::whatif::SCHEMA_VERSION
        ))
    })
}

/// Reads `loadgen capacity --json`'s file.
fn read_capacity(path: &Path) -> Result<Capacity, ReportError> {
    Capacity::read(path).map_err(|e| {
        ReportError::InvalidOption(format!(
            "--capacity {e}; give the file `loadgen capacity --json` wrote"
        ))
    })
}

#[cfg(test)]
mod tests {
    use model::capacity::{CapacityReport, Phase, StepRecord, Stopped, SCHEMA_VERSION};

    use super::*;

    fn measured() -> CapacityReport {
        CapacityReport {
            schema_version: SCHEMA_VERSION,
            sla: vec!["p95<=800".into()],
            max_rate_rps: Some(10.0),
            p95_at_max_ms: Some(150.0),
            p95_interval_ms: Some([140.0, 160.0]),
            goodput_rps: Some(9.9),
            curve: vec![StepRecord {
                phase: Phase::Bracket,
                offered_rps: 10.0,
                achieved_rps: 10.0,
                p50_ms: Some(100.0),
                p95_ms: Some(150.0),
                p99_ms: None,
                succeeded: 40,
                failed: 0,
                error_rate: 0.0,
                sustainable: true,
                reason: "every objective met".into(),
            }],
            step_duration_s: 2.0,
            warmup_s: 0.5,
            warmup_requests: None,
            precision: 0.05,
            repeats: 2,
            elapsed_s: 9.0,
            bounded_by_time: false,
            stopped: Stopped::Converged,
        }
    }

    #[test]
    fn a_capacity_file_of_another_version_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capacity.json");
        measured().write_json(&path).unwrap();
        assert_eq!(read_capacity(&path).unwrap().measured, measured());
        let text = measured()
            .to_json()
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        std::fs::write(&path, text).unwrap();
        let err = read_capacity(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "--capacity {}: `schema_version` is 2",
                path.display()
            )),
            "{err}"
        );
    }
}
