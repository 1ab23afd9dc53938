//! `conditions.json`: what a Before/After run ran on and how, written by
//! `cargo xtask perf` beside the logs and read by `report compare
//! --conditions`, which copies it into `comparison.json`.
//!
//! Every field but the version is optional, so a hand-written file that
//! says only `{"concurrency": 20}` is read too; the workflow fills them
//! all. Keys this version does not know are ignored, so a newer file is
//! still read.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of this layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

fn current_version() -> u32 {
    SCHEMA_VERSION
}

/// Everything `conditions.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Conditions {
    /// [`SCHEMA_VERSION`] (a file without it is read as this version).
    #[serde(default = "current_version")]
    pub schema_version: u32,
    /// What is measured: `inference` or `llm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// What served the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetKind>,
    /// The server as configured for the Before, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The simulator's profile, or the endpoint's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_profile: Option<String>,
    /// Extra simulator flags, the same in every phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_args: Vec<String>,
    /// The server as changed for the After or beside it, in words, when a
    /// server change ran (the reason is in `comparison.json`'s `decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_change: Option<String>,
    /// The seed of the server's random draws, when the workflow set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_seed: Option<u64>,
    /// Whether every phase had a server of its own, started fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_server_per_phase: Option<bool>,
    /// Requests of every phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Requests in flight at once in the Before (closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Per-request timeout, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// What the requests carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<String>,
    /// loadgen's `--api`, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The user's extra loadgen flags, the same in every phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loadgen_args: Vec<String>,
    /// The Before's client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_client: Option<String>,
    /// The Rust reproduction of the Before's client, when input.py ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduction_client: Option<String>,
    /// The After's client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_client: Option<String>,
    /// The client of the server change measured beside the After.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_change_client: Option<String>,
    /// How every percentile is computed (`report compare` sets `linear`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile_method: Option<String>,
    /// The Python that ran input.py, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// The machine the run took place on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// Each phase's machine load, by phase name (`before_input_py`,
    /// `before`, `analysis`, `after`, `server_change`, `capacity`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, Phase>,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            scenario: None,
            target: None,
            server: None,
            server_profile: None,
            server_args: Vec::new(),
            server_change: None,
            server_seed: None,
            fresh_server_per_phase: None,
            requests: None,
            concurrency: None,
            timeout_s: None,
            payloads: None,
            api: None,
            loadgen_args: Vec::new(),
            before_client: None,
            reproduction_client: None,
            after_client: None,
            server_change_client: None,
            quantile_method: None,
            python: None,
            machine: None,
            phases: BTreeMap::new(),
        }
    }
}

/// What served the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// stub-server, started by the workflow.
    Simulator,
    /// The user's endpoint (`--url`): nothing started.
    Endpoint,
    /// NVIDIA Triton, started by the workflow.
    Triton,
    /// llama.cpp's `llama-server`, started by the workflow.
    LlamaServer,
}

/// The machine, as `/proc` and the standard library describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Machine {
    /// Available parallelism (0 when unknown).
    pub cores: usize,
    /// The CPU's model name (`unknown` when unknown).
    pub cpu: String,
    /// The operating system.
    pub os: String,
    /// The kernel release (empty when unknown).
    pub kernel: String,
}

/// One phase's machine load and, for input.py, what its process cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Phase {
    /// Load averages over 1, 5 and 15 minutes when the phase started.
    #[serde(default)]
    pub loadavg_at_start: Option<[f64; 3]>,
    /// CPUs available.
    #[serde(default)]
    pub cpus: Option<usize>,
    /// Share of CPU time the hypervisor stole during the phase, percent
    /// (`null` where the kernel reports none).
    #[serde(default)]
    pub cpu_stolen_pct: Option<f64>,
    /// CPU time of the client process (input.py), user plus system, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_s: Option<f64>,
    /// From the client process's start to its exit, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_wall_s: Option<f64>,
}

impl Conditions {
    /// Parses a `conditions.json` text; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The conditions as an ordered list of `(key, value as text)` for the
    /// reports' Conditions section: every field that is set, nested ones
    /// as JSON.
    pub fn entries(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let Some(map) = value.as_object() else {
            return Vec::new();
        };
        map.iter()
            .map(|(key, value)| {
                let shown = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), shown)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_reads_and_unknown_keys_are_ignored() {
        let c = Conditions::from_json(r#"{"concurrency": 20, "profile": "x"}"#).unwrap();
        assert_eq!(c.concurrency, Some(20));
        assert_eq!(c.schema_version, SCHEMA_VERSION);
        assert!(Conditions::from_json("[1, 2]").is_err());
        assert!(Conditions::from_json(r#"{"concurrency": "twenty"}"#).is_err());
    }

    #[test]
    fn a_full_file_round_trips_and_shows_only_what_is_set() {
        let c = Conditions {
            target: Some(TargetKind::Triton),
            server_seed: Some(42),
            requests: Some(400),
            machine: Some(Machine {
                cores: 2,
                cpu: "unknown".to_owned(),
                os: "linux".to_owned(),
                kernel: String::new(),
            }),
            phases: BTreeMap::from([(
                "before_input_py".to_owned(),
                Phase {
                    loadavg_at_start: Some([1.0, 0.5, 0.25]),
                    cpus: Some(2),
                    cpu_stolen_pct: None,
                    client_cpu_s: Some(1.5),
                    client_wall_s: Some(2.0),
                },
            )]),
            ..Conditions::default()
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(Conditions::from_json(&text).unwrap(), c);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["target"], "triton");
        assert!(value.get("scenario").is_none(), "{value}");
        let keys: Vec<String> = c.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "machine",
                "phases",
                "requests",
                "schema_version",
                "server_seed",
                "target"
            ]
        );
    }
}
