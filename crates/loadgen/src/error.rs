//! Why a run could not start or finish: one error type over every set-up
//! step. A failed request is not among them; it is a row.

use model::log::LogError;

use crate::api::ApiError;
use crate::config::ConfigError;
use crate::payloads::PayloadError;
use crate::server_stats::StatsError;
use crate::target::TargetError;
use crate::tls::TlsError;

/// Why a run could not start or finish. Failed requests are not errors:
/// they are rows in the log and counts in the summary.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host name does not resolve.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The TLS configuration cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The request format cannot be set up (a bad body template).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The server's statistics could not be read before the load, or
    /// written.
    #[error(transparent)]
    ServerStats(#[from] StatsError),
    /// The payload file is unusable.
    #[error(transparent)]
    Payloads(#[from] PayloadError),
    /// The trace to replay is unusable (a bad row names its line).
    #[error(transparent)]
    Trace(#[from] crate::workload::trace::TraceError),
    /// The tokenizer cannot be read.
    #[error(transparent)]
    Prompt(#[from] crate::workload::prompt::PromptError),
    /// The dry run's file cannot be written.
    #[error("--dry-run {path}: {source}")]
    DryRun {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log file cannot be created or written.
    #[error("log file: {0}")]
    Log(#[from] LogError),
    /// The log writer thread failed.
    #[error("the log writer stopped unexpectedly")]
    Collector,
    /// The client threads could not be started.
    #[error("cannot start the client threads: {0}")]
    Threads(std::io::Error),
    /// `--start-at` cannot be placed on this machine's monotonic clock.
    #[error("--start-at: {0}")]
    StartAt(String),
}
