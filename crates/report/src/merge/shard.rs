//! One shard directory, read and checked on its own: its `summary.json`
//! (version, `shard`, `plan`, counts that add up), the histograms it
//! ships (decoded, each of as many values as its series counts) and, when
//! there, its `log.csv` (as many rows as the summary's `total`).

use std::fs;
use std::path::{Path, PathBuf};

use model::log::Log;
use model::summary::{LlmSummary, Percentiles, Plan, RunSummary, ShardSummary};
use serde_json::{Map, Value};
use stats::LatencyHistogram;

use super::write::{LOG_FILE, SUMMARY_FILE};
use super::MergeError;

/// One shard, read and checked on its own.
pub(super) struct Shard {
    pub(super) dir: PathBuf,
    pub(super) summary_path: PathBuf,
    pub(super) summary: RunSummary,
    pub(super) info: ShardSummary,
    /// The plan as JSON, to name the first key two shards differ in.
    pub(super) plan: Map<String, Value>,
    pub(super) histogram: LatencyHistogram,
    /// The LLM series' histograms, when the shard ran an LLM API.
    pub(super) llm: Option<LlmHistograms>,
    pub(super) log: Option<Log>,
}

/// The TTFT, ITL and TPOT histograms of one shard (or of the merge).
#[derive(Debug, Clone, Default)]
pub(super) struct LlmHistograms {
    pub(super) ttft: LatencyHistogram,
    pub(super) itl: LatencyHistogram,
    pub(super) tpot: LatencyHistogram,
}

/// The LLM series of a summary, each with the key of its histogram.
fn llm_series(llm: &LlmSummary) -> [(&Percentiles, &Option<String>, &'static str); 3] {
    [
        (&llm.ttft, &llm.ttft_histogram, "llm.ttft_histogram"),
        (&llm.itl, &llm.itl_histogram, "llm.itl_histogram"),
        (&llm.tpot, &llm.tpot_histogram, "llm.tpot_histogram"),
    ]
}

pub(super) fn read_shard(dir: &Path) -> Result<Shard, MergeError> {
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
