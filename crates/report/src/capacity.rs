//! Capacity under the SLA, as `loadgen capacity --json` measured it, with
//! the what-if engine's predicted capacity beside it.
//!
//! The file crosses a process boundary (loadgen writes it, the report reads
//! it) through one type, [`model::capacity::CapacityReport`]: a renamed or
//! missing field, or a file of another `schema_version`, is an error naming
//! it, not a blank chart.

use std::ops::Deref;
use std::path::Path;

use model::capacity::CapacityReport;
use serde::{Deserialize, Serialize};

use crate::error::ReportError;

/// A capacity search as the report shows it: loadgen's report, and what
/// the report adds beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// What `loadgen capacity --json` wrote, its keys at the top level.
    #[serde(flatten)]
    pub measured: CapacityReport,
    /// The what-if engine's predicted capacity of the same client, if known
    /// (not in loadgen's file; the report adds it).
    #[serde(default)]
    pub predicted_max_rate_rps: Option<f64>,
    /// The client searched, as the what-if engine labels it (not in
    /// loadgen's file; the report adds it when it knows).
    #[serde(default)]
    pub client: Option<String>,
}

/// The report's fields read as loadgen's: `capacity.curve`, `capacity.sla`.
impl Deref for Capacity {
    type Target = CapacityReport;

    fn deref(&self) -> &CapacityReport {
        &self.measured
    }
}

impl Capacity {
    /// Reads `loadgen capacity --json`'s file.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let measured = CapacityReport::read(path).map_err(|e| {
            ReportError::InvalidOption(format!(
                "--capacity {e}; give the file `loadgen capacity --json` wrote"
            ))
        })?;
        Ok(Self {
            measured,
            predicted_max_rate_rps: None,
            client: None,
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
            self.stopped.name()
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
                    s.phase.name().to_owned(),
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

#[cfg(test)]
mod tests {
    use model::capacity::{Phase, StepRecord, Stopped, SCHEMA_VERSION};

    use super::*;

    fn measured() -> CapacityReport {
        let step = |offered_rps: f64, sustainable: bool| StepRecord {
            phase: Phase::Bracket,
            offered_rps,
            achieved_rps: offered_rps,
            p50_ms: Some(100.0),
            p95_ms: Some(if sustainable { 150.0 } else { 1900.0 }),
            p99_ms: None,
            succeeded: 40,
            failed: 0,
            error_rate: 0.0,
            sustainable,
            reason: if sustainable {
                "every objective met"
            } else {
                "p95<=800 not met (1900.000)"
            }
            .into(),
        };
        CapacityReport {
            schema_version: SCHEMA_VERSION,
            sla: vec!["p95<=800".into()],
            max_rate_rps: Some(10.0),
            p95_at_max_ms: Some(150.0),
            p95_interval_ms: Some([140.0, 160.0]),
            goodput_rps: Some(9.9),
            curve: vec![step(10.0, true), step(20.0, false)],
            step_duration_s: 2.0,
            warmup_s: 0.5,
            warmup_requests: None,
            precision: 0.05,
            repeats: 2,
            elapsed_s: 9.0,
            bounded_by_time: false,
            stopped: Stopped::Converged,
        }
    }

    /// The file loadgen writes is what the report reads, and the report's
    /// copy in `comparison.json` keeps loadgen's keys at the top level.
    #[test]
    fn loadgens_file_reads_and_round_trips_through_the_comparison() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capacity.json");
        measured().write_json(&path).unwrap();
        let mut capacity = Capacity::read(&path).unwrap();
        assert_eq!(capacity.measured, measured());
        capacity.predicted_max_rate_rps = Some(11.0);
        assert_eq!(
            capacity.sentence(),
            "Capacity: the highest open-loop rate that kept p95<=800 is 10.00 req/s (P95 there \
             150.0 ms, 95% bootstrap interval 140.0 to 160.0 ms); the what-if engine predicted \
             11.00 req/s (+10.0%); 2 steps, stopped: converged."
        );
        let rows = capacity.rows();
        assert_eq!(rows[0][1], "bracket");
        assert_eq!(rows[1][7], "no: p95<=800 not met (1900.000)");
        let json = serde_json::to_value(&capacity).unwrap();
        assert_eq!(json["max_rate_rps"], 10.0);
        assert_eq!(json["curve"][1]["offered_rps"], 20.0);
        assert_eq!(json["predicted_max_rate_rps"], 11.0);
        let back: Capacity = serde_json::from_value(json).unwrap();
        assert_eq!(back, capacity);
    }

    #[test]
    fn a_file_of_another_version_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capacity.json");
        let text = measured()
            .to_json()
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        std::fs::write(&path, text).unwrap();
        let err = Capacity::read(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "--capacity {}: `schema_version` is 2",
                path.display()
            )),
            "{err}"
        );
    }
}
