//! Why a report could not be produced: unreadable logs, bad options, I/O.

use std::path::PathBuf;

/// Everything that can stop a comparison or its reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A log file could not be read or parsed; the inner error names the
    /// line and column at fault.
    #[error("{path}: {source}")]
    ReadLog {
        /// The log file.
        path: PathBuf,
        /// What `model::log` said (line, column, expected value).
        source: model::log::LogError,
    },
    /// A caller-supplied option is out of range; the message says what to do.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A statistic could not be computed (only on invalid samples).
    #[error("statistics: {0}")]
    Stats(String),
    /// Writing or reading a report file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serialising the comparison to JSON failed.
    #[error("serialising JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReportError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
