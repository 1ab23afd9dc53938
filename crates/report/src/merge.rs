//! `report merge`: one result from the shards of a distributed run.
//!
//! Each shard directory is what `loadgen --shard INDEX/COUNT --out-dir DIR`
//! writes: `summary.json` (the usual summary plus `latency_histogram`,
//! `shard` and `plan`) and, when the shard shipped it, `log.csv`. The
//! shards must form one run: every one a shard, one `count` equal to the
//! number of directories, each index in `0..count` exactly once, and the
//! same `plan` (target, API, schedule, client), since percentiles over
//! different plans describe no single load.
//!
//! How the numbers are merged, so that a reader can re-derive them:
//!
//! - `total`, `succeeded`, `failed`, `errors`, `status_codes` and
//!   `connections_opened` are sums over the shards.
//! - With every shard's `log.csv` (`percentiles_from: "rows"`), every
//!   number is computed from the union of the rows exactly as `report
//!   summary` computes it for their concatenated CSV ([`SideSummary`]: the
//!   Linear method, successful rows, `duration_s` from the first start to
//!   the last response over all rows); `ids` counts the request ids, and
//!   an id logged by two shards means they overlapped.
//! - Otherwise (`percentiles_from: "histogram"`) the percentiles come from
//!   the shards' merged `LatencyHistogram`s by the same Linear method: the
//!   two order statistics it interpolates between are read from their
//!   buckets, the smallest and largest are the exact `min_ms` and
//!   `max_ms`, and the result is clamped to them, so the only error is the
//!   bucket resolution, stated in `percentile_error` ([`histogram_error`]:
//!   at most 1/2048 of the value plus 0.5 ns, and the log's rounding to
//!   0.001 ms when compared with rows). `mean_ms`, `min_ms` and `max_ms`
//!   stay exact (loadgen keeps them exactly per shard), and
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
use serde::{Deserialize, Serialize};
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
/// What `percentile_error` says when the percentiles come from histograms:
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
    /// `latency_histogram` does not decode, or the histograms do not merge.
    #[error("{path}: field `latency_histogram`: {source}")]
    Histogram {
        /// The file.
        path: PathBuf,
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

/// The parts of a shard's `summary.json` the merge reads. Keys that may be
/// `null` must still be present: a missing one means a different writer.
#[derive(Debug, Deserialize)]
struct ShardSummaryFile {
    total: u64,
    succeeded: u64,
    failed: u64,
    #[serde(deserialize_with = "Option::deserialize")]
    mean_ms: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    min_ms: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    max_ms: Option<f64>,
    duration_s: f64,
    errors: BTreeMap<String, u64>,
    /// HTTP responses by status (absent from summaries of older loadgens).
    #[serde(default)]
    status_codes: BTreeMap<String, u64>,
    /// TCP connections opened (absent from summaries of older loadgens).
    #[serde(default)]
    connections_opened: Option<u64>,
    #[serde(deserialize_with = "Option::deserialize")]
    achieved_rate_rps: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    dropped: Option<u64>,
    /// `null` only if loadgen could not encode it; then nothing merges.
    #[serde(deserialize_with = "Option::deserialize")]
    latency_histogram: Option<String>,
    /// Read as a value first, so that a null reads as "not a shard" and a
    /// bad inner field is reported as `shard: ...`.
    #[serde(default)]
    shard: Option<Value>,
    plan: Value,
}

/// `summary.json.shard`.
#[derive(Debug, Clone, Deserialize)]
struct ShardInfo {
    index: u64,
    count: u64,
    #[serde(deserialize_with = "Option::deserialize")]
    start_at_unix_ms: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    start_skew_ms: Option<f64>,
}

/// `summary.json.plan`: read typed so that a plan lacking a key of the
/// contract is an error, not two equal absences.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Only `mode` is used; the rest are read to be checked.
struct Plan {
    url: String,
    api: String,
    mode: String,
    #[serde(deserialize_with = "Option::deserialize")]
    rate_rps: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    arrival: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    seed: Option<u64>,
    #[serde(deserialize_with = "Option::deserialize")]
    concurrency: Option<u64>,
    #[serde(deserialize_with = "Option::deserialize")]
    requests: Option<u64>,
    #[serde(deserialize_with = "Option::deserialize")]
    duration_s: Option<f64>,
    batch_size: u64,
    batch_wait_ms: u64,
    connection: String,
    http2: bool,
    #[serde(deserialize_with = "Option::deserialize")]
    profile: Option<String>,
}

/// One shard, read and checked on its own.
struct Shard {
    dir: PathBuf,
    summary_path: PathBuf,
    file: ShardSummaryFile,
    info: ShardInfo,
    plan: Map<String, Value>,
    histogram: LatencyHistogram,
    log: Option<Log>,
}

/// One shard in the merged summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// The directory given.
    pub dir: String,
    /// `shard.index`.
    pub index: u64,
    /// The shard's rows.
    pub total: u64,
    /// The shard's successes.
    pub succeeded: u64,
    /// How late the shard started after `start_at`, ms (`null` without it).
    pub start_skew_ms: Option<f64>,
    /// Whether the shard shipped its `log.csv`.
    pub log_csv: bool,
}

/// `shards` of the merged summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardsEntry {
    /// How many shards were merged.
    pub count: u64,
    /// Each shard, by index.
    pub per_shard: Vec<ShardEntry>,
}

/// Request ids over the merged rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdsEntry {
    /// Distinct ids.
    pub unique: u64,
    /// Rows whose id an earlier row already had (0 when shards did not overlap).
    pub duplicates: u64,
    /// Ids between `min` and `max` that no shard logged.
    pub missing: u64,
    /// Smallest id (`null` without rows).
    pub min: Option<u64>,
    /// Largest id.
    pub max: Option<u64>,
}

/// The merged `summary.json`: the keys of a loadgen summary, and where the
/// numbers came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedSummary {
    /// Rows over all shards.
    pub total: u64,
    /// Successes over all shards.
    pub succeeded: u64,
    /// Failures over all shards.
    pub failed: u64,
    /// Median latency of successes, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    pub p99_9_ms: Option<f64>,
    /// Mean latency of successes, ms.
    pub mean_ms: Option<f64>,
    /// Fastest success, ms.
    pub min_ms: Option<f64>,
    /// Slowest success, ms.
    pub max_ms: Option<f64>,
    /// Successes per second of `duration_s`.
    pub throughput_rps: Option<f64>,
    /// Earliest start to latest response over all shards, s.
    pub duration_s: Option<f64>,
    /// Failures by kind, summed.
    pub errors: BTreeMap<String, u64>,
    /// HTTP responses by status, summed.
    pub status_codes: BTreeMap<String, u64>,
    /// TCP connections opened, summed (`None` when a shard did not say).
    pub connections_opened: Option<u64>,
    /// `open` or `closed` (the plan's).
    pub mode: String,
    /// The target (the plan's).
    pub url: String,
    /// The request format (the plan's).
    pub api: String,
    /// Open loop: requests sent per second of schedule, all shards together.
    pub achieved_rate_rps: Option<f64>,
    /// `rows` (exact, every shard had its log.csv) or `histogram`.
    pub percentiles_from: String,
    /// The error bound of histogram percentiles (absent when exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_error: Option<String>,
    /// Request ids (only with rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdsEntry>,
    /// The shards merged.
    pub shards: ShardsEntry,
    /// The plan every shard ran.
    pub plan: Value,
    /// Each `--sla`, judged on the merged result.
    pub slos: Vec<SloResult>,
    /// LLM metrics from the rows, for LLM runs with every log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::summary::LlmSummary>,
}

/// The merge's result: the summary and, with every shard's rows, their union.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What `summary.json` holds.
    pub summary: MergedSummary,
    /// The union of rows, by timestamp then id (`None` unless every shard had rows).
    pub log: Option<Log>,
}

impl Merged {
    /// Whether every objective holds and no request id repeats.
    pub fn met(&self) -> bool {
        self.summary.slos.iter().all(|s| s.met)
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
    let first = &shards[0];
    let plan: Plan =
        serde_json::from_value(Value::Object(first.plan.clone())).map_err(|source| {
            MergeError::Json {
                path: first.summary_path.clone(),
                context: "plan: ",
                source,
            }
        })?;
    let open_loop = plan.mode == "open";

    let total = shards.iter().map(|s| s.file.total).sum();
    let succeeded = shards.iter().map(|s| s.file.succeeded).sum();
    let mut errors = BTreeMap::new();
    for shard in &shards {
        for (kind, count) in &shard.file.errors {
            *errors.entry(kind.clone()).or_insert(0) += count;
        }
    }
    let mut status_codes = BTreeMap::new();
    for shard in &shards {
        for (code, count) in &shard.file.status_codes {
            *status_codes.entry(code.clone()).or_insert(0) += count;
        }
    }
    let connections_opened = shards
        .iter()
        .map(|s| s.file.connections_opened)
        .sum::<Option<u64>>();
    let per_shard = shards
        .iter()
        .map(|s| ShardEntry {
            dir: s.dir.display().to_string(),
            index: s.info.index,
            total: s.file.total,
            succeeded: s.file.succeeded,
            start_skew_ms: s.info.start_skew_ms,
            log_csv: s.log.is_some(),
        })
        .collect();
    let mut summary = MergedSummary {
        total,
        succeeded,
        failed: shards.iter().map(|s| s.file.failed).sum(),
        p50_ms: None,
        p90_ms: None,
        p95_ms: None,
        p99_ms: None,
        p99_9_ms: None,
        mean_ms: None,
        min_ms: None,
        max_ms: None,
        throughput_rps: None,
        duration_s: None,
        errors,
        status_codes,
        connections_opened,
        mode: plan.mode.clone(),
        url: plan.url.clone(),
        api: plan.api.clone(),
        achieved_rate_rps: None,
        percentiles_from: String::new(),
        percentile_error: None,
        ids: None,
        shards: ShardsEntry {
            count: shards.len() as u64,
            per_shard,
        },
        plan: Value::Object(first.plan.clone()),
        slos: Vec::new(),
        llm: None,
    };

    if shards.iter().all(|s| s.log.is_some()) {
        let log = union_of_rows(&shards);
        let side = from_rows(&mut summary, &log, open_loop)?;
        // The same judgement `report compare` makes, on the union.
        summary.slos = slos
            .iter()
            .map(|slo| slo.judge(&side, &log, slos))
            .collect();
        Ok(Merged {
            summary,
            log: Some(log),
        })
    } else {
        let histogram = merged_histogram(&shards)?;
        from_histograms(&mut summary, &shards, &histogram, open_loop)?;
        summary.slos = slos
            .iter()
            .map(|slo| judge_without_rows(slo, &summary, &histogram))
            .collect();
        Ok(Merged { summary, log: None })
    }
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
    let file: ShardSummaryFile = serde_json::from_str(&text).map_err(|e| json("", e))?;
    let info: ShardInfo = match &file.shard {
        None | Some(Value::Null) => {
            return Err(MergeError::NotAShard {
                path: summary_path.clone(),
            })
        }
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| json("shard: ", e))?,
    };
    let plan = match &file.plan {
        Value::Object(map) => map.clone(),
        other => {
            return Err(MergeError::Inconsistent {
                path: summary_path.clone(),
                message: format!("field `plan` is {other}, not an object"),
            })
        }
    };
    // Checked per shard too, so that the error names the file at fault.
    serde_json::from_value::<Plan>(Value::Object(plan.clone())).map_err(|e| json("plan: ", e))?;
    let inconsistent = |path: &Path, message: String| MergeError::Inconsistent {
        path: path.to_owned(),
        message,
    };
    let Some(encoded) = &file.latency_histogram else {
        return Err(inconsistent(
            &summary_path,
            "field `latency_histogram` is null: the shard's latencies cannot be merged".to_owned(),
        ));
    };
    let histogram =
        LatencyHistogram::from_base64_v2(encoded).map_err(|source| MergeError::Histogram {
            path: summary_path.clone(),
            source,
        })?;
    if file.succeeded + file.failed != file.total {
        return Err(inconsistent(
            &summary_path,
            format!(
                "succeeded {} + failed {} is not total {}",
                file.succeeded, file.failed, file.total
            ),
        ));
    }
    if histogram.count() != file.succeeded {
        return Err(inconsistent(
            &summary_path,
            format!(
                "`latency_histogram` holds {} latencies but `succeeded` is {}; the histogram must be of this run's successes",
                histogram.count(),
                file.succeeded
            ),
        ));
    }
    let log_path = dir.join(LOG_FILE);
    // A shard need not ship its rows; a log that is there must be readable.
    let log = if log_path.exists() {
        let log = model::log::read_log_file(&log_path).map_err(|source| MergeError::Log {
            path: log_path.clone(),
            source,
        })?;
        if log.rows.len() as u64 != file.total {
            return Err(inconsistent(
                &log_path,
                format!(
                    "{} rows but {} says total {}; the log is truncated or from another run",
                    log.rows.len(),
                    summary_path.display(),
                    file.total
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
        file,
        info,
        plan,
        histogram,
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
    let mut by_index: HashMap<u64, &Path> = HashMap::new();
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
    if !missing.is_empty() || shards.len() as u64 != count {
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
    summary: &mut MergedSummary,
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
    summary.mean_ms = side.mean_ms;
    summary.min_ms = side.min_ms;
    summary.max_ms = side.max_ms;
    summary.throughput_rps = side.throughput_rps;
    summary.duration_s = side.duration_s;
    summary.llm = side.llm.clone();
    summary.percentiles_from = "rows".to_owned();
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

fn ids_of(log: &Log) -> IdsEntry {
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
    IdsEntry {
        unique: seen.len() as u64,
        duplicates,
        missing: span - seen.len() as u64,
        min,
        max,
    }
}

fn merged_histogram(shards: &[Shard]) -> Result<LatencyHistogram, MergeError> {
    let mut merged = LatencyHistogram::new();
    for shard in shards {
        merged
            .merge(&shard.histogram)
            .map_err(|source| MergeError::Histogram {
                path: shard.summary_path.clone(),
                source,
            })?;
    }
    Ok(merged)
}

/// Without every shard's rows: percentiles from the merged histogram; the
/// mean, min and max from the shards' exact ones; the time span from each
/// shard's start and duration.
fn from_histograms(
    summary: &mut MergedSummary,
    shards: &[Shard],
    histogram: &LatencyHistogram,
    open_loop: bool,
) -> Result<(), MergeError> {
    // loadgen's mean is the exact sum over its successes divided by their
    // count, so weighting by `succeeded` gives back the exact merged mean.
    let ok = || shards.iter().filter(|s| s.file.succeeded > 0);
    let weighted: Option<f64> = ok()
        .map(|s| s.file.mean_ms.map(|m| m * s.file.succeeded as f64))
        .sum();
    summary.mean_ms = match weighted {
        Some(sum) if summary.succeeded > 0 => Some(sum / summary.succeeded as f64),
        _ => None,
    };
    summary.min_ms = ok().filter_map(|s| s.file.min_ms).reduce(f64::min);
    summary.max_ms = ok().filter_map(|s| s.file.max_ms).reduce(f64::max);
    let q = |p| histogram_quantile_ms(histogram, p, summary.min_ms, summary.max_ms);
    summary.p50_ms = q(0.50);
    summary.p90_ms = q(0.90);
    summary.p95_ms = q(0.95);
    summary.p99_ms = q(0.99);
    summary.p99_9_ms = q(0.999);
    summary.percentiles_from = "histogram".to_owned();
    summary.percentile_error = Some(histogram_error());

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
        .map(|(s, start)| start + s.file.duration_s * 1000.0)
        .reduce(f64::max);
    if let (Some(start), Some(end)) = (start_ms, end_ms) {
        let duration_s = (end - start) / 1000.0;
        summary.duration_s = Some(duration_s);
        summary.throughput_rps = (duration_s > 0.0).then(|| summary.succeeded as f64 / duration_s);
    }
    if open_loop {
        summary.achieved_rate_rps = Some(achieved_rate_without_rows(shards, &starts));
    }
    Ok(())
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
        let sent = shard.file.total - shard.file.dropped.unwrap_or(0);
        if sent == 0 {
            continue;
        }
        sent_total += sent;
        let span_ms = match shard.file.achieved_rate_rps {
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
/// e2e percentiles from the histogram, the rest from the summary; what
/// needs each request (other series, goodput) has nothing to measure.
fn judge_without_rows(
    slo: &Slo,
    summary: &MergedSummary,
    histogram: &LatencyHistogram,
) -> SloResult {
    let measured = match slo.metric {
        Metric::Latency(Series::E2e, Stat::Quantile(q)) => {
            histogram_quantile_ms(histogram, q, summary.min_ms, summary.max_ms)
        }
        Metric::Latency(Series::E2e, Stat::Mean) => summary.mean_ms,
        Metric::Latency(Series::E2e, Stat::Max) => summary.max_ms,
        Metric::Latency(..) | Metric::Goodput => None,
        Metric::ErrorRate => {
            (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
        }
        Metric::Throughput => summary.throughput_rps,
    };
    SloResult {
        expression: slo.text.clone(),
        op: slo.op,
        threshold: slo.threshold,
        measured,
        met: slo.holds(measured),
    }
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
    let from = if s.percentiles_from == "rows" {
        "exact, from every shard's rows".to_owned()
    } else {
        format!(
            "from the merged histograms, {}",
            s.percentile_error.clone().unwrap_or_else(histogram_error)
        )
    };
    let _ = writeln!(
        out,
        "Merged {} shards of {} ({} loop)",
        s.shards.count, s.url, s.mode
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
    if let (Some(rps), Some(d)) = (s.throughput_rps, s.duration_s) {
        let _ = writeln!(out, "Throughput {rps:.1} req/s over {d:.3} s");
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
    for r in &s.slos {
        let verdict = if r.met { "met" } else { "NOT met" };
        match r.measured {
            Some(m) => {
                let _ = writeln!(out, "SLO {}: measured {m:.3} ({verdict})", r.expression);
            }
            None if s.percentiles_from == "histogram" => {
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
