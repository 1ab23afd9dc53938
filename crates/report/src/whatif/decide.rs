//! The decisions `report whatif` writes into `whatif.json`: what the After
//! changes, and any server change measured beside it, each with its reason
//! and numbers.
//!
//! - Batch inference: the what-if engine's client candidate
//!   ([`engine_after`]).
//! - Triton: its dynamic batcher's `max_queue_delay`, a share of the
//!   execution time the Before's statistics measured
//!   ([`dynamic_batching`]).
//! - An LLM server: the continuous-batching engine's choice (`llm/`); the
//!   time to first token against one decode step ([`slot_wait`]) stays a
//!   diagnosis finding.
//!
//! Triton's rule is a rule, not a simulation: it reads one measured number
//! and says which.

use std::collections::BTreeMap;

use model::kserve::ModelStats;
use model::summary::LlmSummary;
use model::whatif::{CandidateKind, Decision, EngineReport, ServerSetting};

use super::WhatifError;

/// The share of the measured execution time per request that the chosen
/// `max_queue_delay` may add to a request that waits alone.
pub(super) const DELAY_SHARE_OF_EXECUTION: f64 = 0.02;

/// The client that runs against a server change: the Before's own, so
/// the change is the server's alone.
fn baseline_client() -> Vec<String> {
    vec!["--profile".to_owned(), "baseline".to_owned()]
}

fn numbers<const N: usize>(pairs: [(&str, f64); N]) -> BTreeMap<String, f64> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// The After the engine proposes: its chosen candidate, else the client
/// candidate with the lowest predicted P95 (whose verdict will say not
/// met); `None` when it has no client candidate at all.
pub(super) fn engine_after(engine: &EngineReport) -> Option<Decision> {
    let candidate = engine.after()?;
    let [lo, hi] = candidate.p95_interval_ms;
    let mut numbers = numbers([
        ("predicted_p95_ms", candidate.p95_ms),
        ("predicted_p95_lo_ms", lo),
        ("predicted_p95_hi_ms", hi),
        ("baseline_p95_ms", engine.baseline.p95_ms),
        ("sla_p95_ms", engine.sla_p95_ms),
        ("margin", engine.margin),
    ]);
    if engine.chosen.is_none() {
        numbers.insert("meets_sla_with_margin".to_owned(), 0.0);
    }
    Some(Decision {
        kind: CandidateKind::Client,
        label: candidate.label.clone(),
        loadgen_args: candidate.loadgen_args.clone(),
        server_setting: None,
        reason: engine.conclusion.clone(),
        numbers,
    })
}

/// Triton's dynamic batcher for the server change, from the Before's
/// statistics (`stats`, read from `origin`): `max_queue_delay` a small
/// share of the execution time a request pays, rounded to 100 us, within
/// 100 us to 10 ms, so a request that waits alone loses little and
/// requests that arrive together are gathered.
pub(super) fn dynamic_batching(stats: &ModelStats, origin: &str) -> Result<Decision, WhatifError> {
    let infer = stats.inference_stats.compute_infer;
    if infer.count == 0 {
        return Err(WhatifError::InvalidOption(format!(
            "--before-stats {origin}: Triton reported no executions for the Before (inference_stats.compute_infer.count is 0); no max_queue_delay can be chosen"
        )));
    }
    let execution_ms = infer.ns as f64 / infer.count as f64 / 1e6;
    let delay_us = ((execution_ms * 1000.0 * DELAY_SHARE_OF_EXECUTION / 100.0).round() * 100.0)
        .clamp(100.0, 10_000.0) as u64;
    let share_pct = DELAY_SHARE_OF_EXECUTION * 100.0;
    Ok(Decision {
        kind: CandidateKind::Server,
        label: format!("dynamic batching, max_queue_delay {delay_us} us"),
        loadgen_args: baseline_client(),
        server_setting: Some(ServerSetting::DynamicBatching {
            max_queue_delay_us: delay_us,
        }),
        reason: format!(
            "max_queue_delay {delay_us} us = {share_pct:.0}% of the Before's measured execution of {execution_ms:.1} ms per request (Triton's statistics), rounded to 100 us: a request that waits alone pays at most that, requests that arrive together while an instance is busy are executed as one batch"
        ),
        numbers: numbers([
            ("execution_ms", execution_ms),
            ("delay_share_pct", share_pct),
            ("max_queue_delay_us", delay_us as f64),
        ]),
    })
}

/// How long streams waited for their first token, in decode steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlotWait {
    /// Time to first token, median, ms.
    pub ttft_p50_ms: f64,
    /// Time to first token, P95, ms.
    pub ttft_p95_ms: f64,
    /// Inter-token latency, median, ms: one decode step.
    pub itl_p50_ms: f64,
}

impl SlotWait {
    /// The median time to first token in decode steps.
    pub(crate) fn p50_steps(&self) -> f64 {
        self.ttft_p50_ms / self.itl_p50_ms
    }

    /// The P95 time to first token in decode steps.
    pub(crate) fn p95_steps(&self) -> f64 {
        self.ttft_p95_ms / self.itl_p50_ms
    }
}

/// The first-token wait of a streamed run; `None` when it measured no
/// first token or no gap between tokens.
pub(crate) fn slot_wait(llm: &LlmSummary) -> Option<SlotWait> {
    let wait = SlotWait {
        ttft_p50_ms: llm.ttft.p50_ms?,
        ttft_p95_ms: llm.ttft.p95_ms?,
        itl_p50_ms: llm.itl.p50_ms.filter(|itl| *itl > 0.0)?,
    };
    Some(wait)
}

#[cfg(test)]
mod tests {
    use model::kserve::{Duration, InferenceStats};

    use super::*;

    fn stats(count: u64, ns: u64) -> ModelStats {
        ModelStats {
            name: "example-model".to_owned(),
            inference_stats: InferenceStats {
                compute_infer: Duration { count, ns },
                ..InferenceStats::default()
            },
            ..ModelStats::default()
        }
    }

    #[test]
    fn the_delay_is_a_share_of_the_measured_execution() {
        // 400 executions of 102 ms: 2% is 2.04 ms, rounded to 2000 us.
        let d = dynamic_batching(&stats(400, 40_800_000_000), "s.json").unwrap();
        assert_eq!(
            d.server_setting,
            Some(ServerSetting::DynamicBatching {
                max_queue_delay_us: 2000
            })
        );
        assert_eq!(d.kind, CandidateKind::Server);
        assert!(d.reason.contains("execution of 102.0 ms"), "{}", d.reason);
        assert!(
            d.reason.starts_with("max_queue_delay 2000 us = 2%"),
            "{}",
            d.reason
        );
        assert_eq!(d.numbers["execution_ms"], 102.0);
        // Within 100 us and 10 ms whatever the execution.
        let fast = dynamic_batching(&stats(10, 10_000), "s.json").unwrap();
        assert_eq!(fast.numbers["max_queue_delay_us"], 100.0);
        let slow = dynamic_batching(&stats(1, 10_000_000_000), "s.json").unwrap();
        assert_eq!(slow.numbers["max_queue_delay_us"], 10_000.0);
    }

    #[test]
    fn no_executions_is_an_error_naming_the_file() {
        let err = dynamic_batching(&stats(0, 0), "/out/before_server_stats.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/out/before_server_stats.json")
                && err.contains("Triton reported no executions"),
            "{err}"
        );
    }
}
