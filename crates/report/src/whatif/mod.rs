//! The analysis behind every After: from the Before's measurements, decide
//! what the After changes and say why, with the numbers.
//!
//! For batch inference that is the what-if engine: it predicts what
//! candidate fixes will do to P50/P95/P99 and chooses the client change.
//! For a server the workflow can reconfigure, `decide.rs` holds the rules
//! that choose a server setting from the Before (Triton's dynamic batcher,
//! an LLM server's sequence slots). `report whatif` ([`run()`]) writes the
//! decisions into `whatif.json` (`model::whatif`), which the workflow only
//! carries out.
//!
//! `fit.rs` reads the server's cost model out of the per-request rows (the
//! `Server-Timing` execution time of every batch by its size, and how many
//! executions overlap), `sim.rs` replays loadgen against stub-server as a
//! seeded discrete-event simulation ([`simulate`]), and `candidates.rs`
//! runs every candidate (client batching at each size and wait, pooled
//! connections, and server changes labelled as such) under the Before's
//! load, with intervals from bootstrap refits, then chooses the lowest
//! predicted P95 that keeps the SLA with a margin; `capacity.rs` searches
//! the simulated open-loop capacity of batched clients. The JSON it writes
//! is `model::whatif`, typed, for the comparison report and xtask to read
//! back; `text.rs` is what `report whatif` prints.
//!
//! It lives in `report` because it is analysis of logs, like the
//! comparison: it reads only what loadgen wrote, sends nothing, and its
//! output feeds `comparison.json.prediction`. It depends on `model` (the
//! log rows) and `stats` (quantiles, the seeded RNG) only.

mod candidates;
mod capacity;
mod decide;
mod events;
mod fit;
pub(crate) mod llm;
mod run;
mod server_stats;
mod sim;
mod text;

use std::path::PathBuf;
use std::time::Instant;

use model::log::Log;
use model::whatif::EngineReport;

use candidates::{predict, EngineOptions};
pub(crate) use decide::slot_wait;
pub use fit::FitError;
pub use llm::candidates::ServerChanges;
pub use llm::{
    probe_command, KnownServer, StepFitError, PROBE_OUTPUT_TOKENS, PROBE_PROMPT_TOKENS,
    PROBE_REQUESTS,
};
pub use run::{run, Options, Scenario, ServerKind, LLM_DEFAULT_OBJECTIVES};
pub use sim::{simulate, ClientModel, ServerModel, SimOutcome};

/// Why a what-if could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum WhatifError {
    /// A log could not be read or parsed.
    #[error("{path}: {source}")]
    ReadLog {
        /// The log file.
        path: PathBuf,
        /// What `model::log` said.
        source: model::log::LogError,
    },
    /// The runs do not support a fit; the message says what to add.
    #[error("fitting the service model: {0}")]
    Fit(#[from] FitError),
    /// The LLM runs do not support a step model; the message says what to add.
    #[error("fitting the step model: {0}")]
    StepFit(#[from] StepFitError),
    /// An option is out of range; the message says what is allowed.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Writing the JSON failed.
    #[error(transparent)]
    Write(#[from] crate::error::ReportError),
    /// Serialising the JSON failed.
    #[error("serialising JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Fits `runs` (the Before first, then any probes; the bootstrap seeded
/// with `options.seed`; the cost line fitted to the probes alone when
/// `line_from_probes_only`, the Before's execution times then coming from
/// the server's statistics), optionally overrides the server's largest
/// batch, and predicts; `elapsed_ms` covers both.
fn fit_and_predict(
    runs: &[&Log],
    max_batch: Option<u32>,
    line_from_probes_only: bool,
    options: &EngineOptions,
) -> Result<EngineReport, WhatifError> {
    let started = Instant::now();
    options.validate()?;
    let mut fitted = fit::fit_seeded_opts(
        runs,
        fit::DEFAULT_BOOTSTRAP_RESAMPLES,
        options.seed,
        line_from_probes_only,
    )?;
    if let Some(max_batch) = max_batch {
        fitted = fitted.with_max_batch(max_batch);
    }
    let mut report = predict(&fitted, options)?;
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}
