//! `repeats.json`, the contract between `report repeats` (which writes it
//! after `--repeat N`) and its readers: CI, dashboards, the reader's own
//! scripts.
//!
//! One row per Before/After pair, the pooled P95s with their bootstrap
//! intervals, and the proof's outcome: met only when every pair's verdict
//! was.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::contract::Contract;

/// Version of the `repeats.json` layout; bumped only on breaking changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One pair of the proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PairRow {
    /// 1-based number of the pair, in the order it ran.
    pub pair: u32,
    /// The pair's directory.
    pub dir: String,
    /// The simulator's seed in that pair (`conditions.server_seed`), if any.
    pub seed: Option<u64>,
    /// The Before's P95, ms.
    pub before_p95_ms: Option<f64>,
    /// The After's P95, ms.
    pub after_p95_ms: Option<f64>,
    /// After minus Before, ms.
    pub diff_p95_ms: Option<f64>,
    /// Whether the pair's verdict was met.
    pub met: bool,
}

/// A point estimate with a two-sided confidence interval, in the unit of
/// the data (here ms): the shape of `stats::ConfidenceInterval`, which
/// computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    /// The statistic computed on the data as given.
    pub estimate: f64,
    /// Lower end of the interval.
    pub lower: f64,
    /// Upper end of the interval.
    pub upper: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
}

/// The whole `repeats.json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepeatsReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Pairs run.
    pub pairs: u32,
    /// Every pair, in order.
    pub rows: Vec<PairRow>,
    /// Pairs whose verdict was met.
    pub met_count: u32,
    /// Whether every pair's verdict was met (the proof's outcome).
    pub met_every_pair: bool,
    /// The Before's P95 over the pooled rows of every pair, ms.
    pub before_p95_ms: Option<Interval>,
    /// The After's P95 over the pooled rows of every pair, ms.
    pub after_p95_ms: Option<Interval>,
    /// After P95 minus Before P95 over the pooled rows, ms.
    pub diff_p95_ms: Option<Interval>,
    /// Bootstrap resamples per interval.
    pub resamples: usize,
    /// The conclusion in one sentence, with its numbers.
    pub verdict: String,
}

impl Contract for RepeatsReport {
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;
    const WHAT: &'static str = "the interleaved proof (report repeats, repeats.json)";
}
