//! The analysis step of `--after auto`: probe the batch cost, fit the
//! service, predict the fixes, and take the chosen one as the After.
//!
//! The Before alone sends one input per request, which cannot separate a
//! batch's fixed cost from its cost per input; so a short probe against a
//! fresh server sends batches of 1 to 32 inputs, one batch at a time, and
//! `report whatif` fits the model to the Before's rows and the probe's and
//! simulates the candidates. The choice comes back through `whatif.json`;
//! xtask reads only the fields it acts on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::error::TaskError;
use crate::{json, process};

/// Batch sizes of the probe: a spread wide enough to fit a line, up to the
/// simulator's largest batch.
pub const PROBE_BATCH_SIZES: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// Batches sent at each probe size.
pub const PROBE_BATCHES: u32 = 8;

/// What xtask reads of `whatif.json`.
#[derive(Debug, Deserialize)]
pub struct Whatif {
    /// The client-side candidate chosen, if one meets the SLA with margin.
    #[serde(deserialize_with = "json::nullable")]
    pub chosen: Option<Candidate>,
    /// Every candidate, best predicted P95 first.
    pub candidates: Vec<Candidate>,
    /// The engine's conclusion, one sentence.
    pub conclusion: String,
    /// Whether batching beats the best unbatched client by 10%.
    pub batching_helps: bool,
    /// The engine's capacity predictions.
    #[serde(default)]
    pub predicted_capacity_rps: PredictedCapacity,
}

/// What xtask reads of `whatif.json`'s `predicted_capacity_rps`.
#[derive(Debug, Default, Deserialize)]
pub struct PredictedCapacity {
    /// The client with the most predicted open-loop capacity.
    #[serde(default, deserialize_with = "json::nullable")]
    pub best: Option<OpenLoopClient>,
}

/// A client the engine chose for open-loop capacity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpenLoopClient {
    /// Human-readable.
    pub label: String,
    /// The loadgen flags that run it.
    pub loadgen_args: Vec<String>,
    /// Its predicted capacity, requests/s.
    pub max_rate_rps: f64,
}

/// The After [`choose`] settled on.
#[derive(Debug, Clone)]
pub struct AfterChoice {
    /// The loadgen flags of the After.
    pub flags: Vec<String>,
    /// The engine's JSON, when the After is its candidate.
    pub whatif_json: Option<PathBuf>,
    /// The engine's client for open-loop capacity, when it names one.
    pub open_loop: Option<OpenLoopClient>,
}

impl AfterChoice {
    /// The fixed profile, with no engine behind it.
    pub fn optimized() -> Self {
        Self {
            flags: optimized_flags(),
            whatif_json: None,
            open_loop: None,
        }
    }
}

/// A candidate fix as the engine describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    /// Human-readable.
    pub label: String,
    /// `client` or `server`.
    pub kind: String,
    /// The loadgen flags that apply it.
    pub loadgen_args: Vec<String>,
    /// Predicted P95, ms.
    pub p95_ms: f64,
    /// Its 95% interval, ms.
    pub p95_interval_ms: [f64; 2],
}

impl Whatif {
    /// The After to run: the chosen candidate, else the client-side one
    /// with the lowest predicted P95 (its verdict will then say not met).
    pub fn after(&self) -> Option<&Candidate> {
        self.chosen
            .as_ref()
            .or_else(|| self.candidates.iter().find(|c| c.kind == "client"))
    }
}

/// Runs the probe with `loadgen` (a command already aimed at the target)
/// and returns the probe logs written into `dir`.
pub fn probe(
    loadgen: impl FnMut() -> Command,
    dir: &Path,
    limit: std::time::Duration,
) -> Result<Vec<PathBuf>, TaskError> {
    probe_with(loadgen, dir, limit, false).map(|(logs, _)| logs)
}

/// [`probe`], also recording the server's statistics around each size
/// (`--server-stats`, for a server that sends no `Server-Timing`); returns
/// the logs and the statistics files.
pub fn probe_with(
    mut loadgen: impl FnMut() -> Command,
    dir: &Path,
    limit: std::time::Duration,
    server_stats: bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), TaskError> {
    let mut logs = Vec::new();
    let mut stats = Vec::new();
    for size in PROBE_BATCH_SIZES {
        let log = dir.join(format!("probe_b{size}.csv"));
        let mut cmd = loadgen();
        if server_stats {
            let path = dir.join(format!("probe_b{size}_server_stats.json"));
            cmd.args(["--server-stats".as_ref(), path.as_os_str()]);
            stats.push(path);
        }
        // B workers and a wait far above a batch's assembly: every batch
        // leaves full, and one batch is in flight at a time, so the server
        // never queues and each row measures one execution at size B.
        let status = process::run_with_deadline(
            cmd.args(["--connection", "pooled", "-q"])
                .args(["-c", &size.to_string()])
                .args(["-n", &(size * PROBE_BATCHES).to_string()])
                .args(["--batch-size", &size.to_string()])
                // A batch of one leaves at once: no wait to give.
                .args(if size > 1 {
                    &["--batch-wait-ms", "50"][..]
                } else {
                    &[][..]
                })
                .args(["--out".as_ref(), log.as_os_str()])
                .stdout(Stdio::null()),
            limit,
        )?;
        match status.code() {
            Some(0 | 1) => logs.push(log),
            _ => {
                return Err(TaskError::Step(format!(
                    "the batch-cost probe at batch size {size} could not run ({status})"
                )))
            }
        }
    }
    Ok((logs, stats))
}

/// Runs `report whatif` and reads its answer.
pub fn predict(
    cmd: &mut Command,
    json_path: &Path,
    limit: std::time::Duration,
) -> Result<Whatif, TaskError> {
    let status = process::run_with_deadline(cmd, limit)?;
    match status.code() {
        // 1: no candidate meets the SLA with margin; the JSON says which is best.
        Some(0 | 1) => json::read(json_path),
        _ => Err(TaskError::Step(format!(
            "the what-if engine could not run ({status}); see the message above"
        ))),
    }
}

/// The fixed profile, the After whenever the engine has no answer.
pub fn optimized_flags() -> Vec<String> {
    vec!["--profile".to_owned(), "optimized".to_owned()]
}

/// Runs `report whatif` (`cmd`, writing `json_path`) and returns the After
/// to run: the engine's candidate and its JSON, or, when the engine gives
/// no answer or no client-side candidate, the fixed profile (said loudly).
pub fn choose(cmd: &mut Command, json_path: &Path, limit: std::time::Duration) -> AfterChoice {
    let whatif = match predict(cmd, json_path, limit) {
        Ok(whatif) => whatif,
        Err(e) => {
            eprintln!("warning: the what-if engine gave no answer ({e}); the After is the fixed optimized profile");
            return AfterChoice::optimized();
        }
    };
    println!("what-if: {}", whatif.conclusion);
    match whatif.after() {
        Some(candidate) => {
            println!(
                "After: {} (predicted P95 {:.1} ms, 95% interval {:.1} to {:.1} ms)",
                candidate.label,
                candidate.p95_ms,
                candidate.p95_interval_ms[0],
                candidate.p95_interval_ms[1]
            );
            AfterChoice {
                flags: candidate.loadgen_args.clone(),
                whatif_json: Some(json_path.to_owned()),
                open_loop: whatif.predicted_capacity_rps.best.clone(),
            }
        }
        None => {
            eprintln!("warning: the what-if engine proposed no client-side candidate; the After is the fixed optimized profile");
            AfterChoice::optimized()
        }
    }
}
