//! `report merge`: one result from the shards of a distributed run.
//!
//! Each shard directory is what `loadgen --shard INDEX/COUNT --out-dir DIR`
//! writes: `summary.json` (a [`RunSummary`] with `latency_histogram`, the
//! LLM series' histograms, `shard` and `plan`) and, when the shard shipped
//! it, `log.csv`. The shards must form one run: every one a shard, one
//! `count` equal to the number of directories, each index in `0..count`
//! exactly once, and the same `plan` (target, API, schedule, client), since
//! percentiles over different plans describe no single load. The merged
//! `summary.json` is a [`RunSummary`] too, with the merge's own keys
//! (`percentiles_from`, `ids`, `shards`, `slos`).
//!
//! How the numbers are merged, so that a reader can re-derive them:
//!
//! - `total`, `succeeded`, `failed`, `errors`, `status_codes`,
//!   `connections_opened`, `retries`, `verified_rows`, `http_requests` and
//!   the open loop's `late_sends` and `dropped` are sums over the shards.
//! - With every shard's `log.csv` (`percentiles_from: "rows"`), every
//!   number is computed from the union of the rows exactly as `report
//!   summary` computes it for their concatenated CSV ([`SideSummary`]: the
//!   Linear method, successful rows, `duration_s` from the first start to
//!   the last response over all rows), the LLM series' (`llm`) too; `ids`
//!   counts the request ids, and an id logged by two shards means they
//!   overlapped.
//! - Otherwise (`percentiles_from: "histogram"`) the percentiles come from
//!   the shards' merged `LatencyHistogram`s by the same Linear method: the
//!   two order statistics it interpolates between are read from their
//!   buckets, the smallest and largest are the exact `min_ms` and
//!   `max_ms`, and the result is clamped to them, so the only error is the
//!   bucket resolution, stated in `quantile_error` ([`histogram_error`]:
//!   at most 1/2048 of the value plus 0.5 ns, and the log's rounding to
//!   0.001 ms when compared with rows). So are TTFT, ITL and TPOT, each
//!   from its merged histogram between its exact extremes. Means, minima
//!   and maxima stay exact (loadgen keeps them exactly per shard), and
//!   `duration_s` runs from the earliest shard start (`start_at_unix_ms +
//!   start_skew_ms`) to the latest shard end (start + its `duration_s`).
//! - `throughput_rps` is merged successes over the merged `duration_s`.
//! - `achieved_rate_rps` (open loop): requests sent (not `dropped`) per
//!   second between the first and the last send, the definition loadgen
//!   uses for one generator; without rows each shard's send span is
//!   recovered from its own rate and placed at its start.
//!
//! Objectives (`--sla`) are judged on the merged result. Exit codes: 0
//! every objective holds and no id repeats, 1 otherwise, 2 when the shards
//! cannot be merged (the message names the directory and the field).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use model::log::{Log, LogError, LogFormat, LogWriter};
use model::summary::{
    LatencyBucket, LlmSummary, MergedShard, MergedShards, Percentiles, Plan, RequestIds,
    RunSummary, ShardSummary, LATENCY_BUCKETS, SCHEMA_VERSION,
};
use serde_json::{Map, Value};
use stats::{LatencyHistogram, StatsError};

use crate::error::ReportError;
use crate::slo::{Judge, Metric, Series, Slo, SloResult, Stat};
use crate::summary::REPORT_QUANTILE_METHOD;
use crate::summary::{quantile_ms, successful_latencies_sorted, SideSummary};
use crate::write_files::write_atomically;

/// The summary each shard directory holds, and the merged one.
pub const SUMMARY_FILE: &str = "summary.json";
/// The per-request log a shard directory may hold, and the merged one.
pub const LOG_FILE: &str = "log.csv";
/// What `quantile_error` says when the percentiles come from histograms:
/// the histogram's own bound ([`LatencyHistogram::QUANTILE_ERROR`]), and
/// the rounding of the rows it is compared with.
pub fn histogram_error() -> String {
    format!(
        "{}; loadgen records each latency as measured and log.csv rounds it to 0.001 ms, so \
         against numpy over the rows allow 0.0005 ms more",
        LatencyHistogram::QUANTILE_ERROR
    )
}

/// The plan's keys in the order differences are reported; any other key a
/// newer loadgen adds is compared too, after these.
const PLAN_KEYS: [&str; 14] = [
    "url",
    "api",
    "mode",
    "rate_rps",
    "arrival",
    "seed",
    "concurrency",
    "requests",
    "duration_s",
    "batch_size",
    "batch_wait_ms",
    "connection",
    "http2",
    "profile",
];

/// Flags of `report merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Where the merged summary.json and log.csv go (created if missing;
    /// must not be one of the shard directories).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// An objective judged on the merged result, repeatable (the grammar of
    /// `report compare --sla`), e.g. 'p95<=800', 'error_rate<=0.01'.
    #[arg(long = "sla", value_name = "EXPR")]
    pub slos: Vec<Slo>,
    /// The shards' directories (loadgen --out-dir), one per index, any order.
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
}

/// Why the shards could not be merged; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `summary.json` is not JSON, or a field is missing or of the wrong type.
    #[error("{path}: {context}{source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The enclosing field (`shard: `, `plan: `), empty at the top.
        context: &'static str,
        /// What serde said (names the field).
        source: serde_json::Error,
    },
    /// A shard's `log.csv` could not be read.
    #[error("{path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// What `model::log` said (line, column).
        source: LogError,
    },
    /// A histogram does not decode, or the histograms do not merge.
    #[error("{path}: field `{field}`: {source}")]
    Histogram {
        /// The file.
        path: PathBuf,
        /// The histogram's key (`latency_histogram`, `llm.ttft_histogram`, ...).
        field: &'static str,
        /// What `stats` said.
        source: StatsError,
    },
    /// The summary has no `shard` object: the run was not sharded.
    #[error("{path}: not a shard (`shard` is missing or null); run loadgen with --shard INDEX/COUNT --out-dir DIR")]
    NotAShard {
        /// The summary file.
        path: PathBuf,
    },
    /// The shards do not form one run of `count` shards.
    #[error("{0}")]
    Incomplete(String),
    /// Two shards ran different plans.
    #[error("{dir}: field `plan.{field}` is {value} but {first_dir} has {first_value}; every shard must run the same plan")]
    PlanMismatch {
        /// The first directory whose plan differs.
        dir: PathBuf,
        /// The plan key.
        field: String,
        /// Its value there (JSON).
        value: String,
        /// The directory it was compared with.
        first_dir: PathBuf,
        /// The value there (JSON).
        first_value: String,
    },
    /// A shard's files contradict each other or the merge cannot place it.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A flag is unusable.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Writing the merged summary failed, or a statistic on bad samples.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// One shard, read and checked on its own.
struct Shard {
    dir: PathBuf,
    summary_path: PathBuf,
    summary: RunSummary,
    info: ShardSummary,
    /// The plan as JSON, to name the first key two shards differ in.
    plan: Map<String, Value>,
    histogram: LatencyHistogram,
    /// The LLM series' histograms, when the shard ran an LLM API.
    llm: Option<LlmHistograms>,
    log: Option<Log>,
}

/// The TTFT, ITL and TPOT histograms of one shard (or of the merge).
#[derive(Debug, Clone, Default)]
struct LlmHistograms {
    ttft: LatencyHistogram,
    itl: LatencyHistogram,
    tpot: LatencyHistogram,
}

/// The LLM series of a summary, each with the key of its histogram.
fn llm_series(llm: &LlmSummary) -> [(&Percentiles, &Option<String>, &'static str); 3] {
    [
        (&llm.ttft, &llm.ttft_histogram, "llm.ttft_histogram"),
        (&llm.itl, &llm.itl_histogram, "llm.itl_histogram"),
        (&llm.tpot, &llm.tpot_histogram, "llm.tpot_histogram"),
    ]
}

/// The merge's result: the summary and, with every shard's rows, their union.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What `summary.json` holds: a loadgen summary with the merge's keys.
    pub summary: RunSummary,
    /// The union of rows, by timestamp then id (`None` unless every shard had rows).
    pub log: Option<Log>,
}

impl Merged {
    /// Whether every objective holds and no request id repeats.
    pub fn met(&self) -> bool {
        self.summary.slos.iter().flatten().all(|s| s.met)
            && self
                .summary
                .ids
                .as_ref()
                .is_none_or(|ids| ids.duplicates == 0)
    }
}

/// `report merge`: merges, writes, prints; 0 met, 1 not, 2 error.
pub fn main(args: &MergeArgs) -> ExitCode {
    match run(args) {
        Ok(merged) if merged.met() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => {
            eprintln!("report: error: {err}");
            ExitCode::from(2)
        }
    }
}

/// Merges the shards, writes `summary.json` (and `log.csv`) into `--out`,
/// prints the result.
pub fn run(args: &MergeArgs) -> Result<Merged, MergeError> {
    check_out_dir(&args.out, &args.shards)?;
    let merged = merge(&args.shards, &args.slos)?;
    let written = write(&merged, &args.out)?;
    print!("{}", render_text(&merged));
    for path in written {
        println!("written: {}", path.display());
    }
    Ok(merged)
}

/// Refuses an output directory that is a file or one of the shards (its
/// summary.json would be overwritten by the merged one).
fn check_out_dir(out: &Path, shards: &[PathBuf]) -> Result<(), MergeError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(MergeError::InvalidOption(format!(
            "--out {} exists and is not a directory; pass a directory path",
            out.display()
        )));
    }
    let out_real = fs::canonicalize(out).map_err(|source| MergeError::Io {
        path: out.to_owned(),
        source,
    })?;
    for dir in shards {
        if fs::canonicalize(dir).is_ok_and(|d| d == out_real) {
            return Err(MergeError::InvalidOption(format!(
                "--out {} is the shard directory {}; pass a directory of its own, e.g. {}",
                out.display(),
                dir.display(),
                out.join("merged").display()
            )));
        }
    }
    Ok(())
}

/// Reads and checks every shard and merges them; `slos` are judged on the result.
pub fn merge(dirs: &[PathBuf], slos: &[Slo]) -> Result<Merged, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::InvalidOption(
            "no shard directories given; pass each shard's --out-dir".to_owned(),
        ));
    }
    let shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<Vec<_>, _>>()?;
    check_indices(&shards)?;
    check_plans(&shards)?;
    let mut shards = shards;
    shards.sort_by_key(|s| s.info.index);
    let open_loop = shards[0].summary.plan.mode == "open";
    let mut summary = summed(&shards);

    let histogram = merged(&shards, "latency_histogram", |s| Some(&s.histogram))?;
    summary.latency_histogram = histogram.to_base64_v2().ok();
    let llm = merged_llm(&shards)?;
    let merged = if shards.iter().all(|s| s.log.is_some()) {
        let log = union_of_rows(&shards);
        let side = from_rows(&mut summary, &log, open_loop)?;
        if let (Some(numbers), Some(histograms)) = (summary.llm.as_mut(), &llm) {
            with_histograms(numbers, histograms);
        }
        // The same judgement `report compare` makes, on the union.
        summary.slos = Some(
            slos.iter()
                .map(|slo| slo.judge(&side, &log, slos))
                .collect(),
        );
        Merged {
            summary,
            log: Some(log),
        }
    } else {
        from_histograms(&mut summary, &shards, &histogram, llm.as_ref(), open_loop)?;
        summary.slos = Some(
            slos.iter()
                .map(|slo| judge_without_rows(slo, &summary, &histogram, llm.as_ref()))
                .collect(),
        );
        Merged { summary, log: None }
    };
    let buckets = match (merged.summary.min_ms, merged.summary.max_ms) {
        (Some(min), Some(max)) => histogram.log_buckets_ms(min, max, LATENCY_BUCKETS),
        _ => Vec::new(),
    };
    let mut merged = merged;
    merged.summary.latency_buckets = buckets
        .into_iter()
        .map(|(upper_ms, count)| LatencyBucket { upper_ms, count })
        .collect();
    Ok(merged)
}

/// What every shard adds up to, and what the plan says: everything but
/// the percentiles and the time span, which depend on having rows.
fn summed(shards: &[Shard]) -> RunSummary {
    let each = || shards.iter().map(|s| &s.summary);
    let plan: &Plan = &shards[0].summary.plan;
    let sum = |f: fn(&RunSummary) -> u64| each().map(f).sum::<u64>();
    let mut errors = BTreeMap::new();
    let mut status_codes = BTreeMap::new();
    for s in each() {
        for (kind, count) in &s.errors {
            *errors.entry(kind.clone()).or_insert(0) += count;
        }
        for (code, count) in &s.status_codes {
            *status_codes.entry(*code).or_insert(0) += count;
        }
    }
    let http_requests = sum(|s| s.http_requests);
    // The server's mean batch size, weighted by the HTTP requests it answered.
    let batches: Vec<(f64, u64)> = each()
        .filter_map(|s| s.server_batch_size_mean.map(|m| (m, s.http_requests)))
        .collect();
    let batch_requests: u64 = batches.iter().map(|b| b.1).sum();
    let server_batch_size_mean = (batch_requests > 0)
        .then(|| batches.iter().map(|(m, n)| m * *n as f64).sum::<f64>() / batch_requests as f64);
    let warnings = |f: fn(&RunSummary) -> Option<&String>| {
        let said: Vec<String> = shards
            .iter()
            .filter_map(|s| f(&s.summary).map(|w| format!("shard {}: {w}", s.info.index)))
            .collect();
        (!said.is_empty()).then(|| said.join("; "))
    };
    let mut resolved: Vec<String> = Vec::new();
    for address in each().flat_map(|s| &s.resolved) {
        if !resolved.contains(address) {
            resolved.push(address.clone());
        }
    }
    let per_shard = shards
        .iter()
        .map(|s| MergedShard {
            dir: s.dir.display().to_string(),
            index: s.info.index,
            total: s.summary.total,
            succeeded: s.summary.succeeded,
            start_skew_ms: s.info.start_skew_ms,
            log_csv: s.log.is_some(),
        })
        .collect();
    RunSummary {
        schema_version: SCHEMA_VERSION,
        total: sum(|s| s.total),
        succeeded: sum(|s| s.succeeded),
        failed: sum(|s| s.failed),
        errors,
        status_codes,
        connections_opened: sum(|s| s.connections_opened),
        retries: sum(|s| s.retries),
        mode: plan.mode.clone(),
        profile: plan.profile.clone(),
        connection: plan.connection.clone(),
        http2: plan.http2,
        batch_size: plan.batch_size,
        batch_wait_ms: plan.batch_wait_ms,
        concurrency: each().map(|s| s.concurrency).sum(),
        client_threads: each().map(|s| s.client_threads).sum(),
        busy_poll_us: each().map(|s| s.busy_poll_us).max().unwrap_or(0),
        http_requests,
        server_batch_size_mean,
        verified: each().all(|s| s.verified),
        verified_rows: sum(|s| s.verified_rows),
        target_rate_rps: each().map(|s| s.target_rate_rps).sum(),
        late_sends: each().map(|s| s.late_sends).sum(),
        dropped: each().map(|s| s.dropped).sum(),
        max_send_lag_ms: each().filter_map(|s| s.max_send_lag_ms).reduce(f64::max),
        rate_warning: warnings(|s| s.rate_warning.as_ref()),
        interrupted: each().any(|s| s.interrupted),
        url: plan.url.clone(),
        resolved,
        api: shards[0].summary.api.clone(),
        protocol: distinct(each().map(|s| s.protocol.as_str())),
        tls_verification: Some(distinct(
            each().filter_map(|s| s.tls_verification.as_deref()),
        ))
        .filter(|t| !t.is_empty()),
        tls_first_failure: warnings(|s| s.tls_first_failure.as_ref()),
        server_stats_warning: warnings(|s| s.server_stats_warning.as_ref()),
        model: distinct(each().map(|s| s.model.as_str())),
        shard: None,
        plan: plan.clone(),
        shards: Some(MergedShards {
            count: shards.len() as u64,
            per_shard,
        }),
        ..RunSummary::default()
    }
}

/// The distinct values, in order, joined: one value when all agree.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(", ")
}

fn read_shard(dir: &Path) -> Result<Shard, MergeError> {
    let summary_path = dir.join(SUMMARY_FILE);
    let text = fs::read_to_string(&summary_path).map_err(|source| MergeError::Io {
        path: summary_path.clone(),
        source,
    })?;
    let json = |context, source| MergeError::Json {
        path: summary_path.clone(),
        context,
        source,
    };
    let inconsistent = |path: &Path, message: String| MergeError::Inconsistent {
        path: path.to_owned(),
        message,
    };
    let document: Value = serde_json::from_str(&text).map_err(|e| json("", e))?;
    model::contract::check_version::<RunSummary>(&document)
        .map_err(|problem| inconsistent(&summary_path, problem))?;
    // `shard` and `plan` first, so that a bad inner field is named in them.
    let info: ShardSummary = match document.get("shard") {
        None | Some(Value::Null) => {
            return Err(MergeError::NotAShard {
                path: summary_path.clone(),
            })
        }
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| json("shard: ", e))?,
    };
    let plan = match document.get("plan") {
        Some(Value::Object(map)) => map.clone(),
        other => {
            return Err(inconsistent(
                &summary_path,
                format!(
                    "field `plan` is {}, not an object",
                    other.map_or_else(|| "missing".to_owned(), Value::to_string)
                ),
            ))
        }
    };
    serde_json::from_value::<Plan>(Value::Object(plan.clone())).map_err(|e| json("plan: ", e))?;
    let summary: RunSummary = serde_json::from_value(document).map_err(|e| json("", e))?;
    let decode = |encoded: &Option<String>, field: &'static str| match encoded {
        None => Err(inconsistent(
            &summary_path,
            format!("field `{field}` is absent or null: the shard's latencies cannot be merged"),
        )),
        Some(text) => {
            LatencyHistogram::from_base64_v2(text).map_err(|source| MergeError::Histogram {
                path: summary_path.clone(),
                field,
                source,
            })
        }
    };
    let histogram = decode(&summary.latency_histogram, "latency_histogram")?;
    if summary.succeeded + summary.failed != summary.total {
        return Err(inconsistent(
            &summary_path,
            format!(
                "succeeded {} + failed {} is not total {}",
                summary.succeeded, summary.failed, summary.total
            ),
        ));
    }
    if histogram.count() != summary.succeeded {
        return Err(inconsistent(
            &summary_path,
            format!(
                "`latency_histogram` holds {} latencies but `succeeded` is {}; the histogram must be of this run's successes",
                histogram.count(),
                summary.succeeded
            ),
        ));
    }
    let llm = match &summary.llm {
        None => None,
        Some(llm) => {
            let [ttft, itl, tpot] = llm_series(llm).map(|(numbers, encoded, field)| {
                let histogram = decode(encoded, field)?;
                if histogram.count() != numbers.count {
                    return Err(inconsistent(
                        &summary_path,
                        format!(
                            "`{field}` holds {} values but its series counts {}; the histogram must be of this run's series",
                            histogram.count(),
                            numbers.count
                        ),
                    ));
                }
                Ok(histogram)
            });
            Some(LlmHistograms {
                ttft: ttft?,
                itl: itl?,
                tpot: tpot?,
            })
        }
    };
    let log_path = dir.join(LOG_FILE);
    // A shard need not ship its rows; a log that is there must be readable.
    let log = if log_path.exists() {
        let log = model::log::read_log_file(&log_path).map_err(|source| MergeError::Log {
            path: log_path.clone(),
            source,
        })?;
        if log.rows.len() as u64 != summary.total {
            return Err(inconsistent(
                &log_path,
                format!(
                    "{} rows but {} says total {}; the log is truncated or from another run",
                    log.rows.len(),
                    summary_path.display(),
                    summary.total
                ),
            ));
        }
        Some(log)
    } else {
        None
    };
    Ok(Shard {
        dir: dir.to_owned(),
        summary_path,
        summary,
        info,
        plan,
        histogram,
        llm,
        log,
    })
}

/// One `count` for all, equal to the directories given, each index once.
fn check_indices(shards: &[Shard]) -> Result<(), MergeError> {
    let first = &shards[0];
    let count = first.info.count;
    if let Some(other) = shards.iter().find(|s| s.info.count != count) {
        return Err(MergeError::Incomplete(format!(
            "{} says `shard.count` {} but {} says {}; merge the shards of one run",
            other.summary_path.display(),
            other.info.count,
            first.summary_path.display(),
            count
        )));
    }
    if let Some(bad) = shards.iter().find(|s| s.info.index >= count) {
        return Err(MergeError::Incomplete(format!(
            "{}: `shard.index` {} is not below `shard.count` {count}",
            bad.summary_path.display(),
            bad.info.index
        )));
    }
    let mut by_index: HashMap<u32, &Path> = HashMap::new();
    for shard in shards {
        if let Some(earlier) = by_index.insert(shard.info.index, &shard.dir) {
            return Err(MergeError::Incomplete(format!(
                "shard index {} appears twice: in {} and in {}; give each shard's directory once",
                shard.info.index,
                earlier.display(),
                shard.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() || shards.len() != count as usize {
        return Err(MergeError::Incomplete(format!(
            "the shards say `shard.count` {count} but {} directories were given; missing shard index {}",
            shards.len(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The first shard (in the order given) whose plan differs from the first
/// one's, and the first key that differs.
fn check_plans(shards: &[Shard]) -> Result<(), MergeError> {
    let first = &shards[0];
    for shard in &shards[1..] {
        let mut others: Vec<&String> = first
            .plan
            .keys()
            .chain(shard.plan.keys())
            .filter(|k| !PLAN_KEYS.contains(&k.as_str()))
            .collect();
        others.sort();
        others.dedup();
        let keys = PLAN_KEYS
            .iter()
            .copied()
            .chain(others.iter().map(|k| k.as_str()));
        for key in keys {
            let (a, b) = (first.plan.get(key), shard.plan.get(key));
            if a != b {
                let show =
                    |v: Option<&Value>| v.map_or_else(|| "absent".to_owned(), Value::to_string);
                return Err(MergeError::PlanMismatch {
                    dir: shard.dir.clone(),
                    field: key.to_owned(),
                    value: show(b),
                    first_dir: first.dir.clone(),
                    first_value: show(a),
                });
            }
        }
    }
    Ok(())
}

/// Every shard's rows, by timestamp, then id (a stable order for equal times).
fn union_of_rows(shards: &[Shard]) -> Log {
    let mut rows: Vec<_> = shards
        .iter()
        .filter_map(|s| s.log.as_ref())
        .flat_map(|log| log.rows.iter().cloned())
        .collect();
    rows.sort_by(|a, b| {
        a.timestamp_ms
            .total_cmp(&b.timestamp_ms)
            .then(a.request_id.cmp(&b.request_id))
    });
    Log {
        format: LogFormat::Loadgen,
        rows,
    }
}

/// Fills `summary` from the union of rows; returns the rows' [`SideSummary`].
fn from_rows(
    summary: &mut RunSummary,
    log: &Log,
    open_loop: bool,
) -> Result<SideSummary, MergeError> {
    let side = SideSummary::from_log("merged", None, log)?;
    let sorted = successful_latencies_sorted(&log.rows);
    let q = |p| quantile_ms(&sorted, p, REPORT_QUANTILE_METHOD);
    summary.p50_ms = side.p50_ms;
    summary.p90_ms = q(0.90)?;
    summary.p95_ms = side.p95_ms;
    summary.p99_ms = side.p99_ms;
    summary.p99_9_ms = q(0.999)?;
    summary.quantiles_exact = true;
    summary.quantile_error = None;
    summary.mean_ms = side.mean_ms;
    summary.min_ms = side.min_ms;
    summary.max_ms = side.max_ms;
    summary.throughput_rps = side.throughput_rps.unwrap_or(0.0);
    summary.duration_s = side.duration_s.unwrap_or(0.0);
    summary.llm = side.llm.clone();
    summary.percentiles_from = Some("rows".to_owned());
    summary.ids = Some(ids_of(log));
    if open_loop {
        // loadgen's own definition for one generator: (sent - 1) over the
        // span from the first send to the last; `dropped` rows were not sent.
        let sends = || log.rows.iter().filter(|r| r.error != "dropped");
        let sent = sends().count();
        let first = sends().map(|r| r.timestamp_ms).reduce(f64::min);
        let last = sends().map(|r| r.timestamp_ms).reduce(f64::max);
        summary.achieved_rate_rps = Some(match (first, last) {
            (Some(a), Some(b)) if sent >= 2 && b > a => (sent - 1) as f64 / ((b - a) / 1000.0),
            _ => 0.0,
        });
    }
    Ok(side)
}

fn ids_of(log: &Log) -> RequestIds {
    let mut seen = HashSet::with_capacity(log.rows.len());
    let mut duplicates = 0;
    for row in &log.rows {
        if !seen.insert(row.request_id) {
            duplicates += 1;
        }
    }
    let min = seen.iter().copied().min();
    let max = seen.iter().copied().max();
    let span = match (min, max) {
        (Some(a), Some(b)) => b - a + 1,
        _ => 0,
    };
    RequestIds {
        unique: seen.len() as u64,
        duplicates,
        missing: span - seen.len() as u64,
        min,
        max,
    }
}

/// The union of one histogram of every shard that has it.
fn merged<'a>(
    shards: &'a [Shard],
    field: &'static str,
    pick: impl Fn(&'a Shard) -> Option<&'a LatencyHistogram>,
) -> Result<LatencyHistogram, MergeError> {
    let mut merged = LatencyHistogram::new();
    for shard in shards {
        if let Some(histogram) = pick(shard) {
            merged
                .merge(histogram)
                .map_err(|source| MergeError::Histogram {
                    path: shard.summary_path.clone(),
                    field,
                    source,
                })?;
        }
    }
    Ok(merged)
}

/// The LLM series' histograms over every shard that ran an LLM API (one
/// whose every request failed has none); `None` when none did.
fn merged_llm(shards: &[Shard]) -> Result<Option<LlmHistograms>, MergeError> {
    if shards.iter().all(|s| s.llm.is_none()) {
        return Ok(None);
    }
    Ok(Some(LlmHistograms {
        ttft: merged(shards, "llm.ttft_histogram", |s| {
            s.llm.as_ref().map(|l| &l.ttft)
        })?,
        itl: merged(shards, "llm.itl_histogram", |s| {
            s.llm.as_ref().map(|l| &l.itl)
        })?,
        tpot: merged(shards, "llm.tpot_histogram", |s| {
            s.llm.as_ref().map(|l| &l.tpot)
        })?,
    }))
}

/// Ships the merged histograms with the LLM numbers, so the merged
/// summary merges again like any loadgen summary.
fn with_histograms(llm: &mut LlmSummary, histograms: &LlmHistograms) {
    llm.ttft_histogram = histograms.ttft.to_base64_v2().ok();
    llm.itl_histogram = histograms.itl.to_base64_v2().ok();
    llm.tpot_histogram = histograms.tpot.to_base64_v2().ok();
}

/// One series merged from the shards' exact counts, means and extremes
/// and its merged histogram: percentiles by the Linear method between the
/// exact extremes, within [`histogram_error`].
fn from_histogram<'a>(
    parts: impl Iterator<Item = &'a Percentiles> + Clone,
    histogram: &LatencyHistogram,
) -> Percentiles {
    let measured = parts.filter(|p| p.count > 0);
    let count: u64 = measured.clone().map(|p| p.count).sum();
    // loadgen's mean is the exact sum over the series divided by its count,
    // so weighting by the count gives back the exact merged mean.
    let weighted: Option<f64> = measured
        .clone()
        .map(|p| p.mean_ms.map(|m| m * p.count as f64))
        .sum();
    let min_ms = measured.clone().filter_map(|p| p.min_ms).reduce(f64::min);
    let max_ms = measured.filter_map(|p| p.max_ms).reduce(f64::max);
    let q = |p| {
        (count > 0)
            .then(|| histogram_quantile_ms(histogram, p, min_ms, max_ms))
            .flatten()
    };
    Percentiles {
        count,
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        mean_ms: weighted.filter(|_| count > 0).map(|sum| sum / count as f64),
        min_ms,
        max_ms,
        quantiles_exact: count == 0,
        quantile_error: (count > 0).then(histogram_error),
    }
}

/// Without every shard's rows: percentiles from the merged histograms; the
/// means, minima and maxima from the shards' exact ones; the time span from
/// each shard's start and duration.
fn from_histograms(
    summary: &mut RunSummary,
    shards: &[Shard],
    histogram: &LatencyHistogram,
    llm: Option<&LlmHistograms>,
    open_loop: bool,
) -> Result<(), MergeError> {
    // The e2e series of each shard, as its summary states it.
    let e2e: Vec<Percentiles> = shards
        .iter()
        .map(|s| Percentiles {
            count: s.summary.succeeded,
            mean_ms: s.summary.mean_ms,
            min_ms: s.summary.min_ms,
            max_ms: s.summary.max_ms,
            ..Percentiles::default()
        })
        .collect();
    let merged = from_histogram(e2e.iter(), histogram);
    summary.mean_ms = merged.mean_ms;
    summary.min_ms = merged.min_ms;
    summary.max_ms = merged.max_ms;
    let q = |p| histogram_quantile_ms(histogram, p, summary.min_ms, summary.max_ms);
    summary.p50_ms = q(0.50);
    summary.p90_ms = q(0.90);
    summary.p95_ms = q(0.95);
    summary.p99_ms = q(0.99);
    summary.p99_9_ms = q(0.999);
    summary.quantiles_exact = false;
    summary.quantile_error = Some(histogram_error());
    summary.percentiles_from = Some("histogram".to_owned());

    // Shards started apart (and on different clocks, within `start_skew_ms`),
    // so the run spans from the earliest start to the latest end.
    let mut starts = Vec::with_capacity(shards.len());
    for shard in shards {
        let Some(start_at) = shard.info.start_at_unix_ms else {
            // Name the logs that are missing, not this shard's (it may have
            // its own): they are why the rows cannot place the shards.
            let absent: Vec<String> = shards
                .iter()
                .filter(|s| s.log.is_none())
                .map(|s| s.dir.join(LOG_FILE).display().to_string())
                .collect();
            return Err(MergeError::Inconsistent {
                path: shard.summary_path.clone(),
                message: format!(
                    "field `shard.start_at_unix_ms` is null, so without every shard's rows the shard cannot be placed in time, and {} {} absent; run the shards with --start-at, or ship every log.csv",
                    absent.join(", "),
                    if absent.len() == 1 { "is" } else { "are" }
                ),
            });
        };
        // No skew recorded: the shard started on time.
        starts.push(start_at + shard.info.start_skew_ms.unwrap_or(0.0));
    }
    let start_ms = starts.iter().copied().reduce(f64::min);
    let end_ms = shards
        .iter()
        .zip(&starts)
        .map(|(s, start)| start + s.summary.duration_s * 1000.0)
        .reduce(f64::max);
    if let (Some(start), Some(end)) = (start_ms, end_ms) {
        let duration_s = (end - start) / 1000.0;
        summary.duration_s = duration_s;
        summary.throughput_rps = if duration_s > 0.0 {
            summary.succeeded as f64 / duration_s
        } else {
            0.0
        };
    }
    if open_loop {
        summary.achieved_rate_rps = Some(achieved_rate_without_rows(shards, &starts));
    }
    if let Some(histograms) = llm {
        summary.llm = Some(llm_from_histograms(summary, shards, histograms));
    }
    Ok(())
}

/// The LLM numbers without every shard's rows: each series from its merged
/// histogram, e2e the merged summary's own, the tokens summed.
fn llm_from_histograms(
    summary: &RunSummary,
    shards: &[Shard],
    histograms: &LlmHistograms,
) -> LlmSummary {
    let parts: Vec<&LlmSummary> = shards
        .iter()
        .filter_map(|s| s.summary.llm.as_ref())
        .collect();
    let output_tokens: u64 = parts.iter().map(|l| l.output_tokens).sum();
    // Where the counts came from: one source if every shard that counted
    // any tokens agrees, else `mixed`.
    let sources: Vec<&str> = parts
        .iter()
        .map(|l| l.tokens_from.as_str())
        .filter(|from| *from != "none")
        .collect();
    let tokens_from = match distinct(sources.iter().copied()) {
        one if one.is_empty() => "none".to_owned(),
        one if !one.contains(", ") => one,
        _ => "mixed".to_owned(),
    };
    let mut llm = LlmSummary {
        ttft: from_histogram(parts.iter().map(|l| &l.ttft), &histograms.ttft),
        itl: from_histogram(parts.iter().map(|l| &l.itl), &histograms.itl),
        tpot: from_histogram(parts.iter().map(|l| &l.tpot), &histograms.tpot),
        e2e: Percentiles {
            count: summary.succeeded,
            p50_ms: summary.p50_ms,
            p90_ms: summary.p90_ms,
            p95_ms: summary.p95_ms,
            p99_ms: summary.p99_ms,
            mean_ms: summary.mean_ms,
            min_ms: summary.min_ms,
            max_ms: summary.max_ms,
            quantiles_exact: summary.quantiles_exact,
            quantile_error: summary.quantile_error.clone(),
        },
        output_tokens,
        output_tokens_per_s: (summary.duration_s > 0.0)
            .then(|| output_tokens as f64 / summary.duration_s),
        tokens_from,
        ..LlmSummary::default()
    };
    with_histograms(&mut llm, histograms);
    llm
}

/// The `q` quantile of the merged histogram by the Linear method, with
/// the exact extremes standing for the smallest and largest latency.
fn histogram_quantile_ms(
    histogram: &LatencyHistogram,
    q: f64,
    min_ms: Option<f64>,
    max_ms: Option<f64>,
) -> Option<f64> {
    match (min_ms, max_ms) {
        (Some(min), Some(max)) => histogram.quantile_linear_between_ms(q, min, max).ok(),
        _ => histogram.quantile_linear_ms(q).ok(),
    }
}

/// Each shard's sends span `(sent - 1) / rate` seconds from its start; the
/// merged rate is every send over the union of those spans.
fn achieved_rate_without_rows(shards: &[Shard], starts: &[f64]) -> f64 {
    let mut sent_total = 0;
    let mut first_ms = f64::INFINITY;
    let mut last_ms = f64::NEG_INFINITY;
    for (shard, start) in shards.iter().zip(starts) {
        let sent = shard.summary.total - shard.summary.dropped.unwrap_or(0);
        if sent == 0 {
            continue;
        }
        sent_total += sent;
        let span_ms = match shard.summary.achieved_rate_rps {
            Some(rate) if rate > 0.0 && sent >= 2 => (sent - 1) as f64 / rate * 1000.0,
            _ => 0.0,
        };
        first_ms = first_ms.min(*start);
        last_ms = last_ms.max(start + span_ms);
    }
    if sent_total >= 2 && last_ms > first_ms {
        (sent_total - 1) as f64 / ((last_ms - first_ms) / 1000.0)
    } else {
        0.0
    }
}

/// An objective on the merged numbers when some shard shipped no rows:
/// percentiles of e2e, TTFT, ITL and TPOT from their merged histograms,
/// the rest from the summary; what needs each request (goodput) has
/// nothing to measure.
fn judge_without_rows(
    slo: &Slo,
    summary: &RunSummary,
    histogram: &LatencyHistogram,
    llm: Option<&LlmHistograms>,
) -> SloResult {
    let of = |numbers: &Percentiles, histogram: &LatencyHistogram, stat: Stat| match stat {
        Stat::Quantile(q) => (numbers.count > 0)
            .then(|| histogram_quantile_ms(histogram, q, numbers.min_ms, numbers.max_ms))
            .flatten(),
        Stat::Mean => numbers.mean_ms,
        Stat::Max => numbers.max_ms,
    };
    let series = |series: Series| {
        let numbers = summary.llm.as_ref()?;
        let histograms = llm?;
        Some(match series {
            Series::Ttft => (&numbers.ttft, &histograms.ttft),
            Series::Itl => (&numbers.itl, &histograms.itl),
            Series::Tpot => (&numbers.tpot, &histograms.tpot),
            Series::E2e => return None,
        })
    };
    let measured = match slo.metric {
        Metric::Latency(Series::E2e, Stat::Quantile(q)) => {
            histogram_quantile_ms(histogram, q, summary.min_ms, summary.max_ms)
        }
        Metric::Latency(Series::E2e, Stat::Mean) => summary.mean_ms,
        Metric::Latency(Series::E2e, Stat::Max) => summary.max_ms,
        Metric::Latency(s, stat) => series(s).and_then(|(numbers, h)| of(numbers, h, stat)),
        Metric::Goodput => None,
        Metric::ErrorRate => {
            (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
        }
        Metric::Throughput => (summary.duration_s > 0.0).then_some(summary.throughput_rps),
    };
    crate::slo::result(slo, measured)
}

/// Writes `summary.json` and, with rows, `log.csv` into `out`, each to a
/// temporary name first; returns their paths.
pub fn write(merged: &Merged, out: &Path) -> Result<Vec<PathBuf>, MergeError> {
    fs::create_dir_all(out).map_err(|source| MergeError::Io {
        path: out.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    if let Some(log) = &merged.log {
        let path = out.join(LOG_FILE);
        let tmp = out.join(format!(".{LOG_FILE}.{}.tmp", std::process::id()));
        let result = (|| {
            let llm = log.rows.iter().any(|r| r.llm.is_some());
            let mut writer = LogWriter::create(&tmp, llm)?;
            for row in &log.rows {
                writer.write_row(row)?;
            }
            writer.flush()
        })();
        if let Err(source) = result {
            // Best effort: a leftover temporary file is harmless but untidy.
            let _ = fs::remove_file(&tmp);
            return Err(MergeError::Log { path, source });
        }
        fs::rename(&tmp, &path).map_err(|source| MergeError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    } else {
        // A log.csv left from an earlier merge would not match this summary.
        let stale = out.join(LOG_FILE);
        if stale.exists() {
            fs::remove_file(&stale).map_err(|source| MergeError::Io {
                path: stale.clone(),
                source,
            })?;
        }
    }
    let path = out.join(SUMMARY_FILE);
    let mut text = serde_json::to_string_pretty(&merged.summary).map_err(ReportError::from)?;
    text.push('\n');
    write_atomically(&path, text.as_bytes())?;
    written.push(path);
    Ok(written)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} ms"))
}

/// What `report merge` prints: the merged numbers, each objective with
/// its measured value, and any overlap.
pub fn render_text(merged: &Merged) -> String {
    let s = &merged.summary;
    let mut out = String::new();
    let from_rows = s.percentiles_from.as_deref() == Some("rows");
    let from = if from_rows {
        "exact, from every shard's rows".to_owned()
    } else {
        format!(
            "from the merged histograms, {}",
            s.quantile_error.clone().unwrap_or_else(histogram_error)
        )
    };
    let _ = writeln!(
        out,
        "Merged {} shards of {} ({} loop)",
        s.shards.as_ref().map_or(0, |shards| shards.count),
        s.url,
        s.mode
    );
    let _ = writeln!(
        out,
        "Total {} / succeeded {} / failed {}",
        s.total, s.succeeded, s.failed
    );
    for (kind, count) in &s.errors {
        let _ = writeln!(out, "  {kind}: {count}");
    }
    let _ = writeln!(out, "Percentiles {from}:");
    let _ = writeln!(
        out,
        "  P50 {} / P90 {} / P95 {} / P99 {} / P99.9 {}",
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.p99_9_ms)
    );
    let _ = writeln!(
        out,
        "  mean {} / min {} / max {}",
        ms(s.mean_ms),
        ms(s.min_ms),
        ms(s.max_ms)
    );
    if let Some(llm) = &s.llm {
        for (name, p) in [("TTFT", &llm.ttft), ("ITL", &llm.itl), ("TPOT", &llm.tpot)] {
            let _ = writeln!(
                out,
                "  {name}: P50 {} / P90 {} / P95 {} / P99 {} / max {} ({} samples)",
                ms(p.p50_ms),
                ms(p.p90_ms),
                ms(p.p95_ms),
                ms(p.p99_ms),
                ms(p.max_ms),
                p.count
            );
        }
    }
    if s.duration_s > 0.0 {
        let _ = writeln!(
            out,
            "Throughput {:.1} req/s over {:.3} s",
            s.throughput_rps, s.duration_s
        );
    }
    if let Some(rate) = s.achieved_rate_rps {
        let _ = writeln!(out, "Achieved send rate {rate:.1} req/s (all shards)");
    }
    if let Some(ids) = &s.ids {
        if ids.duplicates > 0 {
            let _ = writeln!(
                out,
                "OVERLAP: {} rows repeat a request id another row has; the shards overlapped",
                ids.duplicates
            );
        }
    }
    for r in s.slos.iter().flatten() {
        let verdict = if r.met { "met" } else { "NOT met" };
        match r.measured {
            Some(m) => {
                let _ = writeln!(out, "SLO {}: measured {m:.3} ({verdict})", r.expression);
            }
            None if !from_rows => {
                let _ = writeln!(
                    out,
                    "SLO {}: nothing to measure without every shard's log.csv ({verdict})",
                    r.expression
                );
            }
            None => {
                let _ = writeln!(out, "SLO {}: nothing to measure ({verdict})", r.expression);
            }
        }
    }
    out
}
