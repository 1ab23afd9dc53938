//! The what-if JSON (`schema_version` 1) as typed structs, for the
//! comparison report and xtask to read back (`serde_json::from_str::<WhatifReport>`).

use serde::{Deserialize, Serialize};

use super::fit::{Estimate, ServiceFit};
use super::sim::Load;

/// Version of this JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `report whatif --json` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatifReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The fitted service model.
    pub fit: FitSummary,
    /// The load every candidate was simulated under.
    pub load: Load,
    /// SLA bound on P95, ms.
    pub sla_p95_ms: f64,
    /// Safety margin: a candidate must keep its P95 interval's upper end at
    /// or below `sla_p95_ms * (1 - margin)`.
    pub margin: f64,
    /// Bootstrap refits behind the prediction intervals.
    pub refits: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// The Before as measured (per-request connections, no batching).
    pub baseline: CandidateRow,
    /// Every candidate, the baseline included, ranked by predicted P95.
    pub candidates: Vec<CandidateRow>,
    /// The client-side candidate to run as the After; `None` when none
    /// meets the SLA with the margin.
    pub chosen: Option<CandidateRow>,
    /// Whether the best batched candidate's P95 is at least 10% below the
    /// best unbatched one's.
    pub batching_helps: bool,
    /// One sentence with the numbers behind the choice.
    pub conclusion: String,
    /// Highest open-loop rate that keeps the SLA.
    pub predicted_capacity_rps: PredictedCapacity,
    /// Wall time of the fit and the predictions, ms.
    pub elapsed_ms: f64,
}

/// The fit as the JSON shows it (the samples themselves stay out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Fixed cost per executed batch, ms.
    pub base_ms: Estimate,
    /// Cost per item, ms.
    pub per_item_ms: Estimate,
    /// Standard deviation of the log-normal cost multiplier.
    pub sigma: Estimate,
    /// Executions that run at once.
    pub workers: usize,
    /// Busy time over span in the run with the most overlap.
    pub mean_executions_in_flight: f64,
    /// Executions the fit used.
    pub executions: usize,
    /// Distinct batch sizes seen, ascending.
    pub batch_sizes: Vec<u32>,
    /// Largest batch the server is assumed to take.
    pub max_batch: u32,
    /// Mean client overhead per request (per-request connections), ms.
    pub overhead_ms_mean: f64,
    /// Mean TCP connect time of those rows, ms, when logged.
    pub connect_ms_mean: Option<f64>,
}

impl FitSummary {
    /// The summary of a fit.
    pub fn of(fit: &ServiceFit) -> Self {
        FitSummary {
            base_ms: fit.base_ms,
            per_item_ms: fit.per_item_ms,
            sigma: fit.sigma,
            workers: fit.workers,
            mean_executions_in_flight: fit.mean_executions_in_flight,
            executions: fit.executions.len(),
            batch_sizes: fit.batch_sizes.clone(),
            max_batch: fit.max_batch,
            overhead_ms_mean: fit.overhead_ms_mean(),
            connect_ms_mean: fit.connect_ms_mean,
        }
    }
}

/// Who has to change something for a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// The Before as measured, for reference.
    Baseline,
    /// A client-side change only (pooling, batching): what `--after auto` may run.
    Client,
    /// A change to the server (labelled so; not the client's to make).
    Server,
}

/// A change to the server a candidate assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerChange {
    /// The fitted workers plus one.
    OneMoreWorker {
        /// Workers in all.
        workers: usize,
    },
    /// Dynamic batching with this window.
    DynamicBatching {
        /// Window after the oldest queued request, ms.
        batch_window_ms: u64,
    },
}

/// One candidate's predicted latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRow {
    /// Position by predicted P95, from 1.
    pub rank: usize,
    /// What the candidate is, in words.
    pub label: String,
    /// Who has to change something.
    pub kind: CandidateKind,
    /// Logical requests per HTTP request.
    pub batch_size: u32,
    /// Client batcher's wait, ms.
    pub batch_wait_ms: u64,
    /// Pooled (keep-alive) connections.
    pub pooled: bool,
    /// The server change assumed, if any.
    pub server_change: Option<ServerChange>,
    /// Flags that make loadgen run this client.
    pub loadgen_args: Vec<String>,
    /// Flags that make stub-server run this server (empty: as measured).
    pub server_args: Vec<String>,
    /// Predicted P50, ms (mean over the point simulations).
    pub p50_ms: f64,
    /// Predicted P95, ms.
    pub p95_ms: f64,
    /// Predicted P99, ms.
    pub p99_ms: f64,
    /// 95% prediction interval of P50, ms.
    pub p50_interval_ms: [f64; 2],
    /// 95% prediction interval of P95, ms.
    pub p95_interval_ms: [f64; 2],
    /// 95% prediction interval of P99, ms.
    pub p99_interval_ms: [f64; 2],
    /// Predicted requests per second over the run.
    pub throughput_rps: f64,
    /// Whether the P95 interval's upper end is within `sla * (1 - margin)`.
    pub meets_sla_with_margin: bool,
    /// Refits behind this row's intervals (fewer for rows far from the best).
    pub refits: usize,
}

/// Highest open-loop (evenly spaced) rate whose simulated P95 keeps the
/// SLA while the server keeps up; `None` when no rate does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedCapacity {
    /// With the Before's client.
    pub baseline: Option<f64>,
    /// With the chosen candidate (`None` when nothing was chosen). The
    /// choice is made for the Before's load, which is a closed loop in the
    /// workflow; an open loop may want another client, see `best`.
    pub chosen: Option<f64>,
    /// The client with the highest predicted open-loop capacity (`None`
    /// when no client sustains any rate, and in files from before it).
    #[serde(default)]
    pub best: Option<CapacityChoice>,
}

/// A client chosen for open-loop capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityChoice {
    /// As the ranked table names it.
    pub label: String,
    /// Logical requests per HTTP request.
    pub batch_size: u32,
    /// Client batcher's wait, ms.
    pub batch_wait_ms: u64,
    /// The loadgen flags that run it.
    pub loadgen_args: Vec<String>,
    /// Its predicted capacity, requests/s.
    pub max_rate_rps: f64,
}
