//! Why the shards could not be merged.

use std::path::PathBuf;

use model::log::LogError;
use stats::StatsError;

use crate::error::ReportError;

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
