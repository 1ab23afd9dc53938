//! The result of `loadgen capacity`, as `--json FILE` writes it and
//! `report compare --capacity FILE` and `xtask` read it: the highest
//! open-loop rate that kept every objective, with an interval, and every
//! step of the search (the rate/latency curve).
//!
//! One set of types for the writer and every reader; the `schema_version`
//! is checked before any field ([`crate::contract`]). `comparison.json`
//! holds a search as [`Capacity`]: loadgen's report with the what-if
//! engine's predicted capacity beside it.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::contract::{self, Contract, ContractError};

/// Version of the JSON `loadgen capacity --json` writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Which part of the search a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Doubling from the start rate.
    Bracket,
    /// Halving the interval between the last sustainable and the first
    /// unsustainable rate.
    Bisect,
    /// Confirming the answer.
    Repeat,
}

impl Phase {
    /// The name in the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bracket => "bracket",
            Self::Bisect => "bisect",
            Self::Repeat => "repeat",
        }
    }
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Bisection reached the precision and the repeats confirmed the answer.
    Converged,
    /// `--time-limit` came first; the answer is the highest rate measured
    /// sustainable so far (not confirmed).
    TimeLimit,
    /// `--max-rate` was sustainable (and confirmed): the capacity may be
    /// higher.
    MaxRate,
    /// Already the first step, at `--start-rate`, was unsustainable.
    NothingSustainable,
    /// Repeats kept failing after the most lowerings the search allows.
    Unstable,
    /// A shutdown signal stopped the search; the answer, if any, is the
    /// highest rate measured sustainable so far (not confirmed).
    Interrupted,
}

impl Stopped {
    /// The name in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Converged => "converged",
            Self::TimeLimit => "time_limit",
            Self::MaxRate => "max_rate",
            Self::NothingSustainable => "nothing_sustainable",
            Self::Unstable => "unstable",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One step of the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    /// Part of the search.
    pub phase: Phase,
    /// Rate offered, requests/s.
    pub offered_rps: f64,
    /// Rate answers came at, requests/s.
    pub achieved_rps: f64,
    /// Median latency of successful counted requests, ms.
    pub p50_ms: Option<f64>,
    /// P95 of successful counted requests, ms.
    pub p95_ms: Option<f64>,
    /// P99 of successful counted requests, ms.
    pub p99_ms: Option<f64>,
    /// Counted requests that succeeded.
    pub succeeded: u64,
    /// Counted requests that failed (dropped ones included).
    pub failed: u64,
    /// `failed / (succeeded + failed)`.
    pub error_rate: f64,
    /// Whether every objective held and the answers kept pace.
    pub sustainable: bool,
    /// Why not, or that all held.
    pub reason: String,
}

/// The result of a capacity search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CapacityReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The objectives, as given.
    pub sla: Vec<String>,
    /// The highest sustainable rate, requests/s; `None` when nothing was.
    pub max_rate_rps: Option<f64>,
    /// P95 at that rate over the pooled steps there (the repeats), ms.
    pub p95_at_max_ms: Option<f64>,
    /// 95% bootstrap interval of that P95, ms.
    pub p95_interval_ms: Option<[f64; 2]>,
    /// Successful requests/s meeting every latency objective at that rate.
    pub goodput_rps: Option<f64>,
    /// Every judged step, in order.
    pub curve: Vec<StepRecord>,
    /// Counted part of each step, s.
    pub step_duration_s: f64,
    /// Uncounted start of each step, s (of the first step, when the
    /// warm-up is a request count: later steps, at higher rates, warm up
    /// for less time).
    pub warmup_s: f64,
    /// The warm-up as a request count per step, when given so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_requests: Option<u64>,
    /// Bisection's stopping gap.
    pub precision: f64,
    /// Confirming steps asked for.
    pub repeats: u32,
    /// How long the search took, s.
    pub elapsed_s: f64,
    /// Whether `--time-limit` ended the search.
    pub bounded_by_time: bool,
    /// Why the search ended.
    pub stopped: Stopped,
}

impl Contract for CapacityReport {
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;
    const WHAT: &'static str = "a capacity report (loadgen capacity --json)";
}

impl CapacityReport {
    /// Whether an answer was found (loadgen exits 0).
    pub fn found(&self) -> bool {
        self.max_rate_rps.is_some() && self.stopped != Stopped::Interrupted
    }

    /// The report as pretty JSON, with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        contract::to_json(self)
    }

    /// Writes the report as pretty JSON, through a temporary file renamed
    /// into place so a reader never sees half of it.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = self.to_json().map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads the report at `path`.
    pub fn read(path: &Path) -> Result<Self, ContractError> {
        contract::read(path)
    }
}

/// A capacity search as `comparison.json` holds it: loadgen's report, and
/// what `report compare` adds beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

impl From<CapacityReport> for Capacity {
    fn from(measured: CapacityReport) -> Self {
        Self {
            measured,
            predicted_max_rate_rps: None,
            client: None,
        }
    }
}

impl Capacity {
    /// Reads `loadgen capacity --json`'s file, nothing beside it yet.
    pub fn read(path: &Path) -> Result<Self, ContractError> {
        CapacityReport::read(path).map(Self::from)
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
    use super::*;

    #[test]
    fn the_names_are_the_json_ones() {
        for phase in [Phase::Bracket, Phase::Bisect, Phase::Repeat] {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.name());
        }
        for stopped in [
            Stopped::Converged,
            Stopped::TimeLimit,
            Stopped::MaxRate,
            Stopped::NothingSustainable,
            Stopped::Unstable,
            Stopped::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(stopped).unwrap(), stopped.name());
        }
    }

    #[test]
    fn a_report_round_trips_through_a_file_and_another_version_is_refused() {
        let report = CapacityReport {
            schema_version: SCHEMA_VERSION,
            sla: vec!["p95<=800".into()],
            max_rate_rps: Some(10.0),
            p95_at_max_ms: Some(120.0),
            p95_interval_ms: Some([110.0, 130.0]),
            goodput_rps: Some(9.9),
            curve: vec![StepRecord {
                phase: Phase::Bracket,
                offered_rps: 10.0,
                achieved_rps: 9.95,
                p50_ms: Some(100.0),
                p95_ms: Some(120.0),
                p99_ms: None,
                succeeded: 20,
                failed: 0,
                error_rate: 0.0,
                sustainable: true,
                reason: "every objective met".into(),
            }],
            step_duration_s: 2.0,
            warmup_s: 0.5,
            warmup_requests: None,
            precision: 0.05,
            repeats: 2,
            elapsed_s: 9.0,
            bounded_by_time: false,
            stopped: Stopped::Converged,
        };
        let dir = std::env::temp_dir().join(format!("model-capacity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capacity.json");
        report.write_json(&path).unwrap();
        assert_eq!(CapacityReport::read(&path).unwrap(), report);
        assert!(report.found());
        let newer = report
            .to_json()
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 7");
        std::fs::write(&path, newer).unwrap();
        let err = CapacityReport::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("capacity.json: `schema_version` is 7"),
            "{err}"
        );
        let missing = CapacityReport::read(&dir.join("none.json")).unwrap_err();
        assert!(missing.to_string().contains("none.json"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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

    /// The file loadgen writes is what the comparison reads, and its copy
    /// in `comparison.json` keeps loadgen's keys at the top level.
    #[test]
    fn loadgens_file_reads_and_round_trips_through_the_comparison() {
        let dir = std::env::temp_dir().join(format!("model-capacity-shown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capacity.json");
        measured().write_json(&path).unwrap();
        let mut capacity = Capacity::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
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
}
