//! The one error type of the xtask commands: why a task could not run (exit code 2).

use std::path::PathBuf;

use crate::build::BuildError;
use crate::process::ProcessError;

/// Why `perf` or `bench` could not run; each maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    /// A flag is out of range.
    #[error("{0}")]
    BadFlag(String),
    /// The repository root could not be found.
    #[error("cannot find the workspace root: {0}")]
    Workspace(String),
    /// Building the release binaries failed, or could not even start.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A child process failed to start or stop in time.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file a tool wrote does not hold what xtask reads from it: a
    /// field is missing, null where a number is needed, or of another type.
    #[error("{path}: {problem}")]
    Json {
        /// The file (or the output it was read from).
        path: PathBuf,
        /// What is wrong, naming the field (`before.p95_ms`).
        problem: String,
    },
    /// A step could not produce its result.
    #[error("{0}")]
    Step(String),
}
