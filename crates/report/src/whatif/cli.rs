//! `report whatif`: decide the After from the Before, print the decision
//! and its reason, write `whatif.json` (`model::whatif`).
//!
//! - `--scenario inference` (the default): the what-if engine fits the
//!   Before and the probes, predicts every candidate, prints the ranking
//!   and chooses the client change. With `--server triton` it also decides
//!   Triton's dynamic batcher from `--before-stats`, a server change
//!   measured beside the After (without probes, that decision alone).
//! - `--scenario llm`: an LLM server whose streams wait for a sequence
//!   slot; the After raises `max_num_seqs` (`--max-num-seqs`, the Before's
//!   slots) to the streams in flight.
//!
//! Exit codes as the other subcommands: 0 the After was decided, 1 the
//! engine found no client candidate that meets the SLA with the margin
//! (its best is still the After), 2 error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use model::args::{Bound, FloatBound};
use std::process::ExitCode;

use model::log::{read_log_file, Log};

use super::sim::Load;
use super::{decide, WhatifError, WhatifOptions};
use crate::summary::SideSummary;
use crate::write_files::write_atomically;
use model::whatif::{
    CandidateKind, CandidateRow, Decision, EngineReport, ServerSetting, WhatifReport,
    SCHEMA_VERSION,
};

/// What is analysed (`report whatif --scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Batch inference: the what-if engine chooses the client change.
    Inference,
    /// An LLM server: its sequence slots against the streams in flight.
    Llm,
}

/// What is known of the server beyond its logs (`report whatif --server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    /// Nothing: only client changes are chosen.
    Any,
    /// stub-server: its dynamic batcher's candidates are predicted (never
    /// chosen), as with --server-dynamic-batching.
    Simulator,
    /// NVIDIA Triton: its dynamic batcher's max_queue_delay is decided from
    /// --before-stats, a server change measured beside the After.
    Triton,
}

/// Flags of `report whatif`.
#[derive(Debug, Clone, clap::Args)]
pub struct WhatifArgs {
    /// What is analysed: `inference` (the what-if engine: fit, predict the
    /// candidate fixes, choose the client change) or `llm` (an LLM server:
    /// raise max_num_seqs to the streams in flight when their time to first
    /// token is spent waiting for a slot).
    #[arg(long, value_enum, default_value = "inference", value_name = "SCENARIO")]
    pub scenario: Scenario,
    /// The server, where more is known than its logs: `any`, `simulator`
    /// (stub-server: dynamic-batching candidates predicted) or `triton`
    /// (also decide its dynamic batcher's max_queue_delay from
    /// --before-stats, a server change measured beside the After; without
    /// --probe, that decision alone).
    #[arg(long, value_enum, default_value = "any", value_name = "SERVER")]
    pub server: ServerKind,
    /// With --scenario llm: the sequence slots (max_num_seqs) of the
    /// Before's server.
    #[arg(long, value_name = "N", value_parser = parse_max_num_seqs, allow_negative_numbers = true)]
    pub max_num_seqs: Option<u32>,
    /// The Before run's loadgen log (for the engine it needs service_ms:
    /// Server-Timing, or --before-stats; for --scenario llm the LLM columns).
    #[arg(long, value_name = "FILE.csv")]
    pub before: PathBuf,
    /// Probe runs at other batch sizes (loadgen logs), repeatable.
    #[arg(long = "probe", value_name = "FILE.csv", num_args = 1..)]
    pub probes: Vec<PathBuf>,
    /// For a server that sends no Server-Timing (Triton): its statistics
    /// around the Before (`loadgen --server-stats FILE`); needs
    /// --probe-stats for every --probe.
    #[arg(long, value_name = "FILE.json")]
    pub before_stats: Option<PathBuf>,
    /// The server's statistics around each probe, in --probe's order.
    #[arg(long = "probe-stats", value_name = "FILE.json", num_args = 1.., requires = "before_stats")]
    pub probe_stats: Vec<PathBuf>,
    /// Closed loop with this many workers [default: the most requests in
    /// flight in the Before].
    #[arg(long, value_name = "N", conflicts_with = "rate",
          value_parser = parse_concurrency, allow_negative_numbers = true)]
    pub concurrency: Option<u32>,
    /// Open loop at this rate, requests per second, instead of a closed loop.
    #[arg(long, value_name = "RPS", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// With --rate: exponential (Poisson) gaps instead of even spacing.
    #[arg(long, requires = "rate")]
    pub poisson: bool,
    /// Logical requests per simulated run [default: the Before's rows].
    #[arg(long, value_name = "N", value_parser = parse_requests, allow_negative_numbers = true)]
    pub requests: Option<u32>,
    /// SLA bound on P95, ms.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 800.0,
        value_parser = parse_sla_p95_ms,
        allow_negative_numbers = true
    )]
    pub sla_p95_ms: f64,
    /// Fraction of the SLA kept in reserve: a candidate's P95 interval must
    /// end at or below SLA * (1 - margin).
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.2,
        value_parser = parse_margin,
        allow_negative_numbers = true
    )]
    pub margin: f64,
    /// The server's largest batch [default: the largest batch seen].
    #[arg(long, value_name = "N", value_parser = parse_max_batch, allow_negative_numbers = true)]
    pub max_batch: Option<u32>,
    /// The server supports dynamic batching: add those candidates.
    #[arg(long)]
    pub server_dynamic_batching: bool,
    /// Bootstrap refits behind the prediction intervals.
    #[arg(long, value_name = "R", default_value_t = 40, value_parser = parse_refits, allow_negative_numbers = true)]
    pub refits: u64,
    /// Seed of every draw (same seed, same JSON but for elapsed_ms).
    #[arg(long, default_value_t = 1, value_parser = parse_seed, allow_negative_numbers = true)]
    pub seed: u64,
    /// Where to write the JSON report.
    #[arg(long, value_name = "OUT.json")]
    pub json: PathBuf,
}

/// Runs the subcommand and maps the outcome to an exit code, printing any
/// error as `report: error: ...`.
pub fn main(args: &WhatifArgs) -> ExitCode {
    match run(args) {
        Ok(report) if report.engine.as_ref().is_some_and(|e| e.chosen.is_none()) => {
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("report: error: {err}");
            ExitCode::from(2)
        }
    }
}

/// Reads the logs, decides, writes the JSON and prints the summary.
pub fn run(args: &WhatifArgs) -> Result<WhatifReport, WhatifError> {
    check_flags(args)?;
    let report = match args.scenario {
        Scenario::Llm => WhatifReport {
            schema_version: SCHEMA_VERSION,
            after: Some(llm_decision(args)?),
            server_change: None,
            engine: None,
        },
        Scenario::Inference => {
            // Triton's server change needs only the Before's statistics:
            // decided first, so a refused engine still leaves the flags checked.
            let server_change = match (&args.server, &args.before_stats) {
                (ServerKind::Triton, Some(path)) => Some(decide::dynamic_batching(
                    &read_stats(path)?,
                    &path.display().to_string(),
                )?),
                _ => None,
            };
            let engine = if args.server == ServerKind::Triton && args.probes.is_empty() {
                None
            } else {
                Some(engine(args)?)
            };
            WhatifReport {
                schema_version: SCHEMA_VERSION,
                after: engine.as_ref().and_then(decide::engine_after),
                server_change,
                engine,
            }
        }
    };
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write_atomically(&args.json, json.as_bytes())?;
    print!("{}", summary_text(&report));
    println!("JSON written: {}", args.json.display());
    Ok(report)
}

/// `--scenario llm`: the Before's first-token wait against its slots.
fn llm_decision(args: &WhatifArgs) -> Result<Decision, WhatifError> {
    let before = read(&args.before)?;
    let origin = args.before.display().to_string();
    let summary = SideSummary::from_log("Before", Some(&origin), &before)?;
    let in_flight = match args.concurrency {
        Some(c) => c,
        None => max_in_flight(&before).max(1),
    };
    let slots = args.max_num_seqs.ok_or_else(|| {
        WhatifError::InvalidOption(
            "--scenario llm needs --max-num-seqs N, the Before's sequence slots (1 to 4096)"
                .to_owned(),
        )
    })?;
    decide::max_num_seqs(summary.llm.as_ref(), &origin, in_flight, slots)
}

/// The what-if engine over the Before and the probes.
fn engine(args: &WhatifArgs) -> Result<EngineReport, WhatifError> {
    let mut before = read(&args.before)?;
    let mut probes = args
        .probes
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let from_stats = args.before_stats.is_some();
    if let Some(path) = &args.before_stats {
        if super::server_stats::annotate_before(&mut before, &read_stats(path)?) == 0 {
            return Err(WhatifError::InvalidOption(format!(
                "--before-stats {}: the statistics show no execution at the Before's batch size",
                path.display()
            )));
        }
        for (probe, path) in probes.iter_mut().zip(&args.probe_stats) {
            super::server_stats::annotate_probe(probe, &read_stats(path)?);
        }
    }
    let requests = match args.requests {
        Some(n) => n,
        None => u32::try_from(before.rows.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                WhatifError::InvalidOption(format!(
                    "the Before log has {} rows; pass --requests N (1 to 100000000)",
                    before.rows.len()
                ))
            })?,
    };
    let load = match args.rate {
        Some(rate_rps) => Load::Open {
            rate_rps,
            requests,
            poisson: args.poisson,
        },
        None => Load::Closed {
            concurrency: match args.concurrency {
                Some(c) => c,
                None => max_in_flight(&before).max(1),
            },
            requests,
        },
    };
    let options = WhatifOptions {
        load,
        sla_p95_ms: args.sla_p95_ms,
        margin: args.margin,
        refits: usize::try_from(args.refits).unwrap_or(usize::MAX),
        seed: args.seed,
        server_dynamic_batching: args.server_dynamic_batching
            || args.server == ServerKind::Simulator,
    };
    let runs: Vec<&Log> = std::iter::once(&before).chain(&probes).collect();
    super::whatif_opts(&runs, args.max_batch, from_stats, &options)
}

fn read(path: &Path) -> Result<Log, WhatifError> {
    read_log_file(path).map_err(|source| WhatifError::ReadLog {
        path: path.to_owned(),
        source,
    })
}

/// The checks clap cannot make, before any file is read.
fn check_flags(args: &WhatifArgs) -> Result<(), WhatifError> {
    let bad = |m: String| Err(WhatifError::InvalidOption(m));
    if !(args.sla_p95_ms.is_finite() && args.sla_p95_ms > 0.0) {
        return bad(format!(
            "--sla-p95-ms must be a finite number of ms above 0 (got {}); e.g. --sla-p95-ms 800",
            args.sla_p95_ms
        ));
    }
    if !(args.margin.is_finite() && (0.0..1.0).contains(&args.margin)) {
        return bad(format!(
            "--margin must be a fraction from 0 up to (not including) 1 (got {}); e.g. --margin 0.2",
            args.margin
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1e7) {
            return bad(format!(
                "--rate must be a number of requests per second above 0, at most 1e7 (got {rate})"
            ));
        }
    }
    // Flags the chosen analysis would not read are refused, not ignored.
    let set = |on: bool, flag: &'static str| on.then_some(flag);
    let unused: Vec<&str> = match args.scenario {
        Scenario::Llm => [
            set(!args.probes.is_empty(), "--probe"),
            set(args.before_stats.is_some(), "--before-stats"),
            set(!args.probe_stats.is_empty(), "--probe-stats"),
            set(args.rate.is_some(), "--rate"),
            set(args.requests.is_some(), "--requests"),
            set(args.max_batch.is_some(), "--max-batch"),
            set(args.server_dynamic_batching, "--server-dynamic-batching"),
            set(args.server != ServerKind::Any, "--server"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Scenario::Inference => [set(args.max_num_seqs.is_some(), "--max-num-seqs")]
            .into_iter()
            .flatten()
            .collect(),
    };
    if let Some(flag) = unused.first() {
        let scenario = match args.scenario {
            Scenario::Llm => "llm",
            Scenario::Inference => "inference",
        };
        return bad(format!(
            "{flag} does nothing with --scenario {scenario}; --scenario llm reads --before, --concurrency, --max-num-seqs and --json, --scenario inference everything but --max-num-seqs"
        ));
    }
    if args.scenario == Scenario::Llm && args.max_num_seqs.is_none() {
        return bad(
            "--scenario llm needs --max-num-seqs N, the Before's sequence slots (1 to 4096)"
                .to_owned(),
        );
    }
    if args.server == ServerKind::Triton && args.before_stats.is_none() {
        return bad("--server triton needs --before-stats FILE (loadgen --server-stats around the Before): the dynamic batcher's max_queue_delay is decided from Triton's statistics".to_owned());
    }
    if args.before_stats.is_some() && args.probe_stats.len() != args.probes.len() {
        return bad(format!(
            "--probe-stats: {} files for {} --probe logs; with --before-stats give one per probe, in the same order",
            args.probe_stats.len(),
            args.probes.len()
        ));
    }
    if args.json.is_dir() || args.json.as_os_str().is_empty() {
        return bad(format!(
            "--json must name a file to write, not {:?}; e.g. --json whatif.json",
            args.json.display().to_string()
        ));
    }
    Ok(())
}

/// Most requests in flight at once in `log`: the deepest overlap of the
/// rows' `[timestamp, timestamp + latency]` intervals. A request that
/// starts as another ends does not overlap it (a closed loop's worker
/// issues its next request right then), and "as" allows 5 us: the log
/// rounds both columns to 1 us and an epoch timestamp in an f64 carries
/// about 0.2 us, so a worker's next start can read a hair before its
/// previous end.
pub fn max_in_flight(log: &Log) -> u32 {
    const TOLERANCE_MS: f64 = 0.005;
    let mut edges: Vec<(f64, i32)> = Vec::with_capacity(2 * log.rows.len());
    for row in &log.rows {
        if row.timestamp_ms.is_finite() && row.latency_ms.is_finite() {
            let end_ms = row.timestamp_ms + (row.latency_ms - TOLERANCE_MS).max(0.0);
            edges.push((row.timestamp_ms, 1));
            edges.push((end_ms, -1));
        }
    }
    // Ends before starts at the same instant.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    u32::try_from(most).unwrap_or(0)
}

/// The engine's ranking, then every decision with its reason, as printed
/// to stdout.
pub fn summary_text(report: &WhatifReport) -> String {
    let mut out = report.engine.as_ref().map_or_else(String::new, engine_text);
    for (heading, decision) in [
        ("After", &report.after),
        (
            "Server change, measured beside the After",
            &report.server_change,
        ),
    ] {
        if let Some(d) = decision {
            let _ = writeln!(out, "{heading}: {}", decision_line(d));
            let _ = writeln!(out, "  why: {}", d.reason);
        }
    }
    if report.after.is_none() && report.engine.is_some() {
        let _ = writeln!(out, "After: none proposed (no client-side candidate)");
    }
    out
}

/// A decision in one line: who changes what, and how it is run.
fn decision_line(d: &Decision) -> String {
    let who = match d.kind {
        CandidateKind::Server => "server change",
        CandidateKind::Client => "client change",
        CandidateKind::Baseline => "no change",
    };
    let setting = match d.server_setting {
        Some(ServerSetting::MaxNumSeqs { max_num_seqs }) => {
            format!("; server max_num_seqs {max_num_seqs}")
        }
        Some(ServerSetting::DynamicBatching { max_queue_delay_us }) => {
            format!("; server dynamic batching, max_queue_delay {max_queue_delay_us} us")
        }
        None => String::new(),
    };
    format!(
        "{} ({who}) -> loadgen {}{setting}",
        d.label,
        d.loadgen_args.join(" ")
    )
}

/// The engine's ranking (top 10 and every server change), the choice and
/// the conclusion.
fn engine_text(report: &EngineReport) -> String {
    let mut out = String::new();
    let f = &report.fit;
    let load = match report.load {
        Load::Closed {
            concurrency,
            requests,
        } => format!("closed loop, concurrency {concurrency}, {requests} requests"),
        Load::Open {
            rate_rps,
            requests,
            poisson,
        } => format!(
            "open loop at {rate_rps} rps ({}), {requests} requests",
            if poisson { "Poisson" } else { "even spacing" }
        ),
    };
    let _ = writeln!(
        out,
        "Fit: {} workers, base {:.2} ms [{:.2}, {:.2}], per item {:.3} ms [{:.3}, {:.3}], sigma {:.3} [{:.3}, {:.3}], {} executions, batch sizes {:?}",
        f.workers,
        f.base_ms.value,
        f.base_ms.lo,
        f.base_ms.hi,
        f.per_item_ms.value,
        f.per_item_ms.lo,
        f.per_item_ms.hi,
        f.sigma.value,
        f.sigma.lo,
        f.sigma.hi,
        f.executions,
        f.batch_sizes
    );
    let _ = writeln!(
        out,
        "Load: {load}; SLA P95 <= {} ms, margin {} (must predict <= {:.0} ms)",
        report.sla_p95_ms,
        report.margin,
        report.sla_p95_ms * (1.0 - report.margin)
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<72} {:>9} {:>19} {:>9} {:>9}  meets",
        "rank", "candidate", "P95 ms", "P95 interval", "P50 ms", "P99 ms"
    );
    let shown = report
        .candidates
        .iter()
        .filter(|r| r.rank <= 10 || r.kind != CandidateKind::Client);
    for row in shown {
        let _ = writeln!(out, "{}", table_line(row));
    }
    match &report.chosen {
        Some(c) => {
            let _ = writeln!(
                out,
                "Chosen: {} -> loadgen {}",
                c.label,
                c.loadgen_args.join(" ")
            );
        }
        None => {
            let _ = writeln!(out, "Chosen: none meets the SLA with the margin");
        }
    }
    let _ = writeln!(out, "{}", report.conclusion);
    let cap = &report.predicted_capacity_rps;
    let rps = |x: Option<f64>| x.map_or("none".to_owned(), |v| format!("{v:.1} rps"));
    let _ = writeln!(
        out,
        "Predicted capacity at P95 <= {} ms: baseline {}, chosen {}",
        report.sla_p95_ms,
        rps(cap.baseline),
        rps(cap.chosen)
    );
    if let Some(best) = &cap.best {
        let _ = writeln!(
            out,
            "Most open-loop capacity: {} at {:.1} rps (measure it: loadgen capacity {} --sla 'p95<={}')",
            best.label,
            best.max_rate_rps,
            best.loadgen_args.join(" "),
            report.sla_p95_ms
        );
    }
    out
}

fn table_line(row: &CandidateRow) -> String {
    format!(
        "{:>4}  {:<72} {:>9.1} {:>19} {:>9.1} {:>9.1}  {}",
        row.rank,
        row.label,
        row.p95_ms,
        format!(
            "[{:.1}, {:.1}]",
            row.p95_interval_ms[0], row.p95_interval_ms[1]
        ),
        row.p50_ms,
        row.p99_ms,
        if row.meets_sla_with_margin {
            "yes"
        } else {
            "no"
        }
    )
}

/// Reads a `loadgen --server-stats` file's delta (the statistics of the run).
fn read_stats(path: &std::path::Path) -> Result<model::kserve::ModelStats, WhatifError> {
    crate::compare::read_server_stats(path).map_err(|e| WhatifError::InvalidOption(e.to_string()))
}

fn parse_max_num_seqs(text: &str) -> Result<u32, String> {
    Bound {
        what: "--max-num-seqs",
        min: 1,
        max: 4096,
    }
    .parse(text)
}

fn parse_concurrency(text: &str) -> Result<u32, String> {
    Bound {
        what: "--concurrency",
        min: 1,
        max: 1_000_000,
    }
    .parse(text)
}

fn parse_requests(text: &str) -> Result<u32, String> {
    Bound {
        what: "--requests",
        min: 1,
        max: 100_000_000,
    }
    .parse(text)
}

fn parse_max_batch(text: &str) -> Result<u32, String> {
    Bound {
        what: "--max-batch",
        min: 1,
        max: 1024,
    }
    .parse(text)
}

fn parse_refits(text: &str) -> Result<u64, String> {
    Bound {
        what: "--refits",
        min: 2,
        max: 10_000,
    }
    .parse(text)
}

fn parse_seed(text: &str) -> Result<u64, String> {
    Bound {
        what: "--seed",
        min: 0,
        max: u64::MAX,
    }
    .parse(text)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--rate (requests/s)",
        min: 0.0,
        max: 1_000_000.0,
        min_inclusive: false,
    }
    .parse(text)
}

fn parse_sla_p95_ms(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--sla-p95-ms",
        min: 0.0,
        max: f64::INFINITY,
        min_inclusive: false,
    }
    .parse(text)
}

/// A fraction of the SLA: from 0 up to, not including, 1.
fn parse_margin(text: &str) -> Result<f64, String> {
    FloatBound {
        what: "--margin",
        min: 0.0,
        max: 0.99,
        min_inclusive: true,
    }
    .parse(text)
}

#[cfg(test)]
mod tests {
    use model::log::{LogFormat, LogRow};

    use super::*;

    fn log(intervals: &[(f64, f64)]) -> Log {
        Log {
            format: LogFormat::Loadgen,
            rows: intervals
                .iter()
                .enumerate()
                .map(|(i, &(timestamp_ms, latency_ms))| LogRow {
                    request_id: i as u64,
                    timestamp_ms,
                    latency_ms,
                    ..LogRow::default()
                })
                .collect(),
        }
    }

    #[test]
    fn in_flight_counts_overlaps_but_not_back_to_back_requests() {
        // Two workers back to back (the next start a rounding hair early),
        // and a third request overlapping both for a while.
        let t0 = 1_700_000_000_000.0;
        let rows = [
            (t0, 100.0),
            (t0 + 99.999, 100.0),
            (t0 + 10.0, 100.0),
            (t0 + 109.999, 50.0),
        ];
        assert_eq!(max_in_flight(&log(&rows)), 2);
        assert_eq!(
            max_in_flight(&log(&[(t0, 100.0), (t0 + 50.0, 100.0), (t0 + 60.0, 1.0)])),
            3
        );
        assert_eq!(max_in_flight(&log(&[])), 0);
    }
}
