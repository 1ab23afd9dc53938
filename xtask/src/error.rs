//! The one error type of the xtask commands: why a task could not run (exit code 2).

use std::path::PathBuf;

use crate::process::ProcessError;

/// Why `perf` or `bench` could not run; each maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A flag is out of range.
    #[error("{0}")]
    BadFlag(String),
    /// Building the release binaries failed.
    #[error("the release build failed: run `cargo build --release` to see why")]
    Build,
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
    /// A step could not produce its result.
    #[error("{0}")]
    Step(String),
}
