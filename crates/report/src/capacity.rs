//! Capacity under the SLA, as `loadgen capacity --json` measured it, with
//! the what-if engine's predicted capacity beside it.
//!
//! The file crosses a process boundary (loadgen writes it, the report reads
//! it), so only the fields the report shows are read, through typed
//! structs: a renamed or missing field is an error naming it, not a blank
//! chart.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ReportError;

/// One step of the rate search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    /// `bracket`, `bisect` or `repeat`.
    pub phase: String,
    /// The open-loop rate sent, requests/s.
    pub offered_rps: f64,
    /// Completed requests per second of the step.
    pub achieved_rps: f64,
    /// Latency quantiles of the step's successful requests, ms.
    pub p50_ms: Option<f64>,
    /// P95, ms.
    pub p95_ms: Option<f64>,
    /// P99, ms.
    pub p99_ms: Option<f64>,
    /// Failed requests of the step.
    pub failed: u64,
    /// Whether the step kept every objective and kept up with the rate.
    pub sustainable: bool,
    /// Why it was judged so.
    pub reason: String,
}

/// What the report shows of a capacity search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The objectives the search held, as written.
    pub sla: Vec<String>,
    /// The highest sustainable rate found, requests/s.
    pub max_rate_rps: Option<f64>,
    /// P95 over the repeats at that rate, ms, and its bootstrap interval.
    pub p95_at_max_ms: Option<f64>,
    /// The 95% bootstrap interval of that P95, ms.
    pub p95_interval_ms: Option<[f64; 2]>,
    /// Requests/s meeting every objective at that rate.
    pub goodput_rps: Option<f64>,
    /// Every step, in the order run.
    pub curve: Vec<CapacityStep>,
    /// Why the search stopped.
    pub stopped: String,
    /// The what-if engine's predicted capacity of the same client, if known
    /// (not in loadgen's file; the report adds it).
    #[serde(default)]
    pub predicted_max_rate_rps: Option<f64>,
    /// The client searched, as the what-if engine labels it (not in
    /// loadgen's file; the report adds it when it knows).
    #[serde(default)]
    pub client: Option<String>,
}

impl Capacity {
    /// Reads `loadgen capacity --json`'s file.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            ReportError::InvalidOption(format!(
                "--capacity {}: not a `loadgen capacity --json` file ({e})",
                path.display()
            ))
        })
    }

    /// The measured capacity against the predicted one, in one sentence.
    pub fn sentence(&self) -> String {
        let measured = match (self.max_rate_rps, self.p95_at_max_ms, self.p95_interval_ms) {
            (Some(rate), Some(p95), Some([lo, hi])) => format!(
                "the highest open-loop rate that kept {} is {rate:.2} req/s (P95 there {p95:.1} ms, 95% bootstrap interval {lo:.1} to {hi:.1} ms)",
                self.sla.join(", ")
            ),
            (Some(rate), _, _) => format!(
                "the highest open-loop rate that kept {} is {rate:.2} req/s",
                self.sla.join(", ")
            ),
            (None, ..) => format!("no rate tried kept {}", self.sla.join(", ")),
        };
        let predicted = match (self.predicted_max_rate_rps, self.max_rate_rps) {
            (Some(p), Some(m)) if m > 0.0 => format!(
                "; the what-if engine predicted {p:.2} req/s ({:+.1}%)",
                (p - m) / m * 100.0
            ),
            (Some(p), _) => format!("; the what-if engine predicted {p:.2} req/s"),
            (None, _) => String::new(),
        };
        let client = self
            .client
            .as_ref()
            .map_or_else(String::new, |c| format!(" of {c}"));
        format!(
            "Capacity{client}: {measured}{predicted}; {} steps, stopped: {}.",
            self.curve.len(),
            self.stopped
        )
    }
}

impl Capacity {
    /// Headings of [`Capacity::rows`].
    pub const HEADINGS: [&'static str; 8] = [
        "step",
        "phase",
        "offered (req/s)",
        "achieved (req/s)",
        "P50 (ms)",
        "P95 (ms)",
        "P99 (ms)",
        "sustainable",
    ];

    /// The search's steps, for the reports.
    pub fn rows(&self) -> Vec<[String; 8]> {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        self.curve
            .iter()
            .enumerate()
            .map(|(i, s)| {
                [
                    (i + 1).to_string(),
                    s.phase.clone(),
                    format!("{:.2}", s.offered_rps),
                    format!("{:.2}", s.achieved_rps),
                    ms(s.p50_ms),
                    ms(s.p95_ms),
                    ms(s.p99_ms),
                    if s.sustainable {
                        "yes".to_owned()
                    } else {
                        format!("no: {}", s.reason)
                    },
                ]
            })
            .collect()
    }
}
