//! `cargo xtask distributed`: the Kubernetes contract, on loopback.
//!
//! One simulator; one unsharded loadgen at the target rate as the
//! reference; then `--shards` loadgen processes with `JOB_COMPLETION_INDEX`
//! set as an Indexed Job sets it, all started for one `--start-at`, each
//! with `--out-dir`; then `report merge`. The checks: the union of the
//! shards' request ids is the single run's (every id once), the merged
//! percentiles equal `report summary` over the concatenated shard logs, and
//! the merged achieved rate is the target within 1%.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use model::summary::{RequestIds, RunSummary};
use serde::Deserialize;

use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::json;
use crate::machine::Machine;
use crate::perf::{create_dir, CLIENT_LIMIT, PACKAGES};
use crate::process::{self, ServerProcess};

/// Flags of `cargo xtask distributed`.
#[derive(clap::Args)]
pub(crate) struct DistributedArgs {
    /// Load generator processes (2 to 64).
    #[arg(long, default_value_t = 4, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u32> { what: "--shards", min: 2, max: 64 }.parse(t))]
    shards: u32,
    /// The open-loop rate of the whole load, requests/s (1 to 5000).
    #[arg(long, default_value_t = 200.0, value_name = "RPS", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::FloatBound { what: "--rate", min: 1.0, max: 5000.0, min_inclusive: true }.parse(t))]
    rate: f64,
    /// Requests of the whole load (100 to 1000000).
    #[arg(long, default_value_t = 2000, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u32> { what: "--requests", min: 100, max: 1_000_000 }.parse(t))]
    requests: u32,
    /// Where the runs, the merge and distributed.json go.
    #[arg(long, default_value = "results/distributed", value_name = "DIR")]
    out: PathBuf,
}

/// The simulator: fast enough that the rate, not the service, is the
/// limit (16 workers of 5 ms), with some jitter so percentiles differ.
const SERVER_ARGS: [&str; 10] = [
    "--workers",
    "16",
    "--base-ms",
    "5",
    "--per-item-ms",
    "0",
    "--jitter",
    "0.2",
    "--seed",
    "42",
];

/// What is read of `report summary` over the concatenated logs.
#[derive(Debug, Deserialize)]
struct Exact {
    #[serde(deserialize_with = "json::nullable")]
    p50_ms: Option<f64>,
    #[serde(deserialize_with = "json::nullable")]
    p95_ms: Option<f64>,
    #[serde(deserialize_with = "json::nullable")]
    p99_ms: Option<f64>,
}

pub(crate) fn run(args: &DistributedArgs) -> Result<bool, TaskError> {
    if !(2..=64).contains(&args.shards) {
        return Err(TaskError::BadFlag(format!(
            "--shards must be from 2 to 64, got {}",
            args.shards
        )));
    }
    if !(args.rate.is_finite() && (1.0..=5000.0).contains(&args.rate)) {
        return Err(TaskError::BadFlag(format!(
            "--rate must be from 1 to 5000 requests/s, got {}",
            args.rate
        )));
    }
    if !(100..=1_000_000).contains(&args.requests) {
        return Err(TaskError::BadFlag(format!(
            "--requests must be from 100 to 1000000, got {}",
            args.requests
        )));
    }
    let bins = build::release_binaries(&PACKAGES)?;
    create_dir(&args.out.join("logs"))?;
    let server_args: Vec<String> = SERVER_ARGS.iter().map(|s| (*s).to_owned()).collect();
    let server = ServerProcess::start(
        &bins.path("stub-server"),
        &server_args,
        &args.out.join("logs/server.log"),
    )?;
    let url = server.infer_url();
    let load = [
        "--url".to_owned(),
        url.clone(),
        "--rate".to_owned(),
        args.rate.to_string(),
        "-n".to_owned(),
        args.requests.to_string(),
        "-q".to_owned(),
    ];

    println!(
        "single generator: {} requests at {} req/s ({url})",
        args.requests, args.rate
    );
    let single_dir = args.out.join("single");
    let status = process::run_with_deadline(
        loadgen(&bins, &load)
            .args(["--out-dir".as_ref(), single_dir.as_os_str()])
            .stdout(Stdio::null()),
        CLIENT_LIMIT,
    )?;
    check_status("the single generator", status)?;

    // Every shard waits for the same instant, far enough ahead for all of
    // them to have started.
    let start_at_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() + 2.0)
        .unwrap_or(0.0);
    println!(
        "{} shards (JOB_COMPLETION_INDEX 0..{}), --start-at {start_at_s:.3}",
        args.shards,
        args.shards - 1
    );
    let mut children = Vec::new();
    let mut shard_dirs = Vec::new();
    for index in 0..args.shards {
        let dir = args.out.join(format!("shard-{index}"));
        let mut cmd = loadgen(&bins, &load);
        cmd.args(["--shard", &args.shards.to_string()])
            .args(["--start-at", &format!("{start_at_s:.3}")])
            .args(["--out-dir".as_ref(), dir.as_os_str()])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .stdout(Stdio::null());
        children.push(process::spawn_child(&mut cmd)?);
        shard_dirs.push(dir);
    }
    for (index, mut child) in children.into_iter().enumerate() {
        let status = process::wait_with_deadline(
            &mut child,
            &format!("loadgen shard {index}"),
            CLIENT_LIMIT,
        )?;
        check_status(&format!("shard {index}"), status)?;
    }
    drop(server);

    let merged_dir = args.out.join("merged");
    let status = process::run_with_deadline(
        Command::new(bins.path("report"))
            .arg("merge")
            .args(["--out".as_ref(), merged_dir.as_os_str()])
            .args(&shard_dirs)
            .stdin(Stdio::null()),
        CLIENT_LIMIT,
    )?;
    check_status("report merge", status)?;

    let single: RunSummary = json::read_contract(&single_dir.join("summary.json"))?;
    let merged_path = merged_dir.join("summary.json");
    let merged: RunSummary = json::read_contract(&merged_path)?;
    // A merge with every shard's rows counts the ids.
    let missing = |what: &str| TaskError::Json {
        path: merged_path.clone(),
        problem: format!("missing field `{what}`: not a merge of every shard's rows"),
    };
    let ids: RequestIds = merged.ids.clone().ok_or_else(|| missing("ids"))?;
    let percentiles_from = merged
        .percentiles_from
        .clone()
        .ok_or_else(|| missing("percentiles_from"))?;
    let (Some(id_min), Some(id_max)) = (ids.min, ids.max) else {
        return Err(TaskError::Step(format!(
            "{}: the merged rows hold no request id",
            merged_path.display()
        )));
    };
    let concatenated = concatenate_logs(&shard_dirs, &args.out.join("concatenated.csv"))?;
    let exact: Exact = crate::perf::report_summary(&bins, &concatenated)?;
    // The single run's percentiles the same way (Linear, from its rows),
    // not from its summary's histogram, so the two columns compare.
    let single_exact: Exact = crate::perf::report_summary(&bins, &single_dir.join("log.csv"))?;

    let n = u64::from(args.requests);
    let ids_ok = ids.unique == n && ids.duplicates == 0 && id_min == 0 && id_max == n - 1;
    let percentiles_ok = percentiles_from == "rows"
        && merged.p50_ms == exact.p50_ms
        && merged.p95_ms == exact.p95_ms
        && merged.p99_ms == exact.p99_ms;
    let rate_error_pct = merged
        .achieved_rate_rps
        .map(|r| (r - args.rate) / args.rate * 100.0);
    let rate_ok = rate_error_pct.is_some_and(|e| e.abs() <= 1.0);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    println!("\n| | single generator | {} shards, merged |", args.shards);
    println!("| --- | ---: | ---: |");
    println!("| requests | {} | {} |", single.total, merged.total);
    println!("| failed | {} | {} |", single.failed, merged.failed);
    println!(
        "| achieved rate (req/s) | {} | {} |",
        ms(single.achieved_rate_rps),
        ms(merged.achieved_rate_rps)
    );
    for (name, a, b) in [
        ("P50 (ms)", single_exact.p50_ms, merged.p50_ms),
        ("P95 (ms)", single_exact.p95_ms, merged.p95_ms),
        ("P99 (ms)", single_exact.p99_ms, merged.p99_ms),
    ] {
        println!("| {name} | {} | {} |", ms(a), ms(b));
    }
    println!(
        "\nids: {} unique, {} duplicated, {}..{} (single run: {} requests, 0..{}): {}",
        ids.unique,
        ids.duplicates,
        id_min,
        id_max,
        single.total,
        n - 1,
        verdict(ids_ok)
    );
    println!(
        "merged percentiles vs report summary of the concatenated shard logs: P50 {} / {}, P95 {} / {}, P99 {} / {} ({}): {}",
        ms(merged.p50_ms),
        ms(exact.p50_ms),
        ms(merged.p95_ms),
        ms(exact.p95_ms),
        ms(merged.p99_ms),
        ms(exact.p99_ms),
        percentiles_from,
        verdict(percentiles_ok)
    );
    println!(
        "merged achieved rate {} req/s against {} ({} %): {}",
        ms(merged.achieved_rate_rps),
        args.rate,
        rate_error_pct.map_or_else(|| "-".to_owned(), |e| format!("{e:+.2}")),
        verdict(rate_ok)
    );
    let record = serde_json::json!({
        "shards": args.shards,
        "rate_rps": args.rate,
        "requests": args.requests,
        "server_args": SERVER_ARGS,
        "single": {"total": single.total, "failed": single.failed, "achieved_rate_rps": single.achieved_rate_rps,
                   "p50_ms": single_exact.p50_ms, "p95_ms": single_exact.p95_ms, "p99_ms": single_exact.p99_ms},
        "merged": {"total": merged.total, "failed": merged.failed, "achieved_rate_rps": merged.achieved_rate_rps,
                   "p50_ms": merged.p50_ms, "p95_ms": merged.p95_ms, "p99_ms": merged.p99_ms,
                   "percentiles_from": percentiles_from},
        "concatenated": {"p50_ms": exact.p50_ms, "p95_ms": exact.p95_ms, "p99_ms": exact.p99_ms},
        "ids": {"unique": ids.unique, "duplicates": ids.duplicates, "min": id_min, "max": id_max},
        "checks": {"ids_equal_single_run": ids_ok, "percentiles_equal_concatenated_rows": percentiles_ok,
                   "achieved_rate_within_1_pct": rate_ok, "rate_error_pct": rate_error_pct},
        "machine": Machine::probe().conditions_json(),
    });
    let path = args.out.join("distributed.json");
    fs::write(
        &path,
        serde_json::to_string_pretty(&record).unwrap_or_default(),
    )
    .map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    println!("written: {}", path.display());
    Ok(ids_ok && percentiles_ok && rate_ok)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}

fn loadgen(bins: &Binaries, load: &[String]) -> Command {
    let mut cmd = Command::new(bins.path("loadgen"));
    cmd.args(load).stdin(Stdio::null());
    cmd
}

/// Exit 1 (some requests failed) is data; anything else is a failure.
fn check_status(what: &str, status: std::process::ExitStatus) -> Result<(), TaskError> {
    match status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(TaskError::Step(format!("{what} could not run ({status})"))),
    }
}

/// The shards' logs as one CSV (the header once), for `report summary`.
fn concatenate_logs(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, TaskError> {
    let mut text = String::new();
    for (i, dir) in dirs.iter().enumerate() {
        let path = dir.join("log.csv");
        let log = fs::read_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        let mut lines = log.lines();
        let header = lines.next().unwrap_or_default();
        if i == 0 {
            text.push_str(header);
            text.push('\n');
        }
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    fs::write(out, text).map_err(|source| TaskError::Io {
        path: out.to_owned(),
        source,
    })?;
    Ok(out.to_owned())
}
