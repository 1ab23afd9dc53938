//! `whatif.json`, the contract between `report whatif` (which writes it)
//! and its readers: `report compare --prediction`, and `cargo xtask perf`,
//! which runs what it chose.
//!
//! The file says what the After is and why ([`WhatifReport::after`]), and
//! any server change to measure beside it ([`WhatifReport::server_change`]),
//! each a [`Decision`] with its reason in one sentence and the numbers
//! behind it. For batch inference the decision is the what-if engine's
//! ([`WhatifReport::engine`]: the fitted service, every candidate fix
//! simulated and ranked); for an LLM server or Triton's dynamic batcher it
//! is a rule over the Before's measurements. Whoever runs the After only
//! executes the decision: the loadgen flags, and the server setting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of this layout; bumped on any incompatible change (2: the
/// decisions, and the engine's prediction under `engine`).
pub const SCHEMA_VERSION: u32 = 2;

/// Everything `report whatif --json` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhatifReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What the After runs; `None` when the analysis proposes nothing to
    /// run (the workflow then runs its fixed optimized client, and says so).
    pub after: Option<Decision>,
    /// A server change measured beside the After (which stays the client's
    /// change), when the analysis decided one.
    pub server_change: Option<Decision>,
    /// The what-if engine's prediction, when it ran (batch inference with
    /// probes of the batch cost).
    pub engine: Option<EngineReport>,
}

impl WhatifReport {
    /// The decision named by `which`.
    pub fn decision(&self, which: DecisionRole) -> Option<&Decision> {
        match which {
            DecisionRole::After => self.after.as_ref(),
            DecisionRole::ServerChange => self.server_change.as_ref(),
        }
    }
}

/// Which of the file's decisions a run carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRole {
    /// [`WhatifReport::after`].
    After,
    /// [`WhatifReport::server_change`].
    ServerChange,
}

/// One change the analysis chose, as the runner carries it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Who changes something: the client, or the server.
    pub kind: CandidateKind,
    /// What it is, in words ("client batching B=10, W=5 ms, pooled",
    /// "max_num_seqs 20").
    pub label: String,
    /// The loadgen flags of the client that runs against it.
    pub loadgen_args: Vec<String>,
    /// The server setting to apply; `None` runs the Before's server.
    pub server_setting: Option<ServerSetting>,
    /// Why, one sentence with the numbers.
    pub reason: String,
    /// The numbers the reason quotes, by name (units in the names).
    pub numbers: BTreeMap<String, f64>,
}

/// A server setting a [`Decision`] applies, independent of which server
/// runs it; each runner maps it to its server's own flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerSetting {
    /// Sequences an LLM server decodes at once (vLLM's `max_num_seqs`,
    /// llama-server's `--parallel`).
    MaxNumSeqs {
        /// Sequence slots.
        max_num_seqs: u32,
    },
    /// A dynamic batcher that holds a request at most this long for others
    /// to join it (Triton's `max_queue_delay_microseconds`).
    DynamicBatching {
        /// The longest hold, microseconds.
        max_queue_delay_us: u64,
    },
}

/// The what-if engine's part: the fit, every candidate, its choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EngineReport {
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

impl EngineReport {
    /// The candidate to run as the After: the chosen one, else the
    /// client-side one with the lowest predicted P95 (its verdict will then
    /// say not met).
    pub fn after(&self) -> Option<&CandidateRow> {
        self.chosen.as_ref().or_else(|| {
            self.candidates
                .iter()
                .find(|c| c.kind == CandidateKind::Client)
        })
    }
}

/// A fitted quantity with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    /// The estimate from all executions.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
}

impl Estimate {
    /// Whether `x` lies within `[lo, hi]`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// How requests are offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// `concurrency` workers, each issuing its next request when its
    /// previous one completes, until `requests` have been issued.
    Closed {
        /// Workers.
        concurrency: u32,
        /// Logical requests in all.
        requests: u32,
    },
    /// Requests at `rate_rps`, evenly spaced or with exponential gaps.
    Open {
        /// Offered rate, requests per second.
        rate_rps: f64,
        /// Logical requests in all.
        requests: u32,
        /// Exponential (Poisson) gaps instead of constant ones.
        poisson: bool,
    },
}

impl Load {
    /// Logical requests in all.
    pub fn requests(&self) -> u32 {
        match *self {
            Load::Closed { requests, .. } | Load::Open { requests, .. } => requests,
        }
    }
}

/// The fit as the JSON shows it (the samples themselves stay out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

/// Who has to change something for a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// The Before as measured, for reference.
    Baseline,
    /// A client-side change only (pooling, batching): what `--after auto` may run.
    Client,
    /// A change to the server (labelled so; not the client's to make).
    Server,
}

/// A change to the simulated server a candidate of the engine assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictedCapacity {
    /// With the Before's client.
    pub baseline: Option<f64>,
    /// With the chosen candidate (`None` when nothing was chosen). The
    /// choice is made for the Before's load, which is a closed loop in the
    /// workflow; an open loop may want another client, see `best`.
    pub chosen: Option<f64>,
    /// The client with the highest predicted open-loop capacity (`None`
    /// when no client sustains any rate).
    #[serde(default)]
    pub best: Option<CapacityChoice>,
}

/// A client chosen for open-loop capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            kind: CandidateKind::Server,
            label: "max_num_seqs 20".to_owned(),
            loadgen_args: vec!["--profile".to_owned(), "baseline".to_owned()],
            server_setting: Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 }),
            reason: "20 streams for 8 slots".to_owned(),
            numbers: BTreeMap::from([("slots".to_owned(), 8.0)]),
        }
    }

    #[test]
    fn a_report_without_the_engine_round_trips_and_names_its_decisions() {
        let report = WhatifReport {
            schema_version: SCHEMA_VERSION,
            after: Some(decision()),
            server_change: None,
            engine: None,
        };
        let text = serde_json::to_string(&report).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema_version"], 2);
        assert_eq!(value["after"]["kind"], "server");
        assert_eq!(
            value["after"]["server_setting"],
            serde_json::json!({"kind": "max_num_seqs", "max_num_seqs": 20})
        );
        assert!(value["engine"].is_null());
        let back: WhatifReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.decision(DecisionRole::After), Some(&decision()));
        assert_eq!(back.decision(DecisionRole::ServerChange), None);
        let delay = ServerSetting::DynamicBatching {
            max_queue_delay_us: 2000,
        };
        assert_eq!(
            serde_json::to_value(delay).unwrap(),
            serde_json::json!({"kind": "dynamic_batching", "max_queue_delay_us": 2000})
        );
    }

    #[test]
    fn a_load_counts_its_requests_and_an_estimate_holds_its_bounds() {
        let closed = Load::Closed {
            concurrency: 20,
            requests: 400,
        };
        assert_eq!(closed.requests(), 400);
        assert!(Estimate {
            value: 1.0,
            lo: 0.5,
            hi: 2.0
        }
        .contains(2.0));
    }
}
