//! The decisions `report whatif` writes into `whatif.json`: what the After
//! changes, and any server change measured beside it, each with its reason
//! and numbers.
//!
//! - Batch inference: the what-if engine's client candidate
//!   ([`engine_after`]).
//! - Triton: its dynamic batcher's `max_queue_delay`, a share of the
//!   execution time the Before's statistics measured
//!   ([`dynamic_batching`]).
//! - An LLM server whose streams wait for a sequence slot: `max_num_seqs`
//!   raised to the streams in flight ([`max_num_seqs`]); the time to first
//!   token against one decode step says they waited ([`slot_wait`], also a
//!   diagnosis finding).
//!
//! The server rules are rules, not simulations: each reads one or two
//! measured numbers and says which.

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

/// The LLM server's `max_num_seqs` for the After, from the Before's
/// numbers (`llm`, of the log at `origin`): `in_flight` streams (the
/// closed loop's concurrency) against `slots`. A stream that has a slot
/// sees its first token after about one decode step, so a first token
/// many steps late waited for a slot; raising the slots to the streams in
/// flight gives every stream one, and each step then costs a little more,
/// which the inter-token objective checks.
pub(super) fn max_num_seqs(
    llm: Option<&LlmSummary>,
    origin: &str,
    in_flight: u32,
    slots: u32,
) -> Result<Decision, WhatifError> {
    let missing = |what: &str| {
        WhatifError::InvalidOption(format!(
            "--before {origin}: the Before measured no {what}; no LLM decision is possible (the log needs loadgen's LLM columns from a streamed run)"
        ))
    };
    let llm = llm.ok_or_else(|| missing("time to first token"))?;
    if llm.ttft.p50_ms.is_none() || llm.ttft.p95_ms.is_none() {
        return Err(missing("time to first token"));
    }
    let wait = slot_wait(llm).ok_or_else(|| missing("inter-token gap"))?;
    let chosen = in_flight.max(slots);
    let reason = format!(
        "the Before's TTFT P50 {:.0} ms and P95 {:.0} ms are {:.0} and {:.0} decode steps \
         (ITL P50 {:.1} ms): a stream that had a slot would see its first token after about one step, \
         so the rest is waiting for a slot; {in_flight} streams were in flight (the closed loop's concurrency) \
         for {slots} slots. max_num_seqs {chosen} gives every stream a slot; each step then costs more \
         (one more sequence in every step), which the ITL objective checks",
        wait.ttft_p50_ms,
        wait.ttft_p95_ms,
        wait.p50_steps(),
        wait.p95_steps(),
        wait.itl_p50_ms,
    );
    Ok(Decision {
        kind: CandidateKind::Server,
        label: format!("max_num_seqs {chosen}"),
        loadgen_args: baseline_client(),
        server_setting: Some(ServerSetting::MaxNumSeqs {
            max_num_seqs: chosen,
        }),
        reason,
        numbers: numbers([
            ("ttft_p50_ms", wait.ttft_p50_ms),
            ("ttft_p95_ms", wait.ttft_p95_ms),
            ("itl_p50_ms", wait.itl_p50_ms),
            ("ttft_p50_steps", wait.p50_steps()),
            ("ttft_p95_steps", wait.p95_steps()),
            ("streams_in_flight", f64::from(in_flight)),
            ("slots_before", f64::from(slots)),
            ("max_num_seqs", f64::from(chosen)),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use model::kserve::{Duration, InferenceStats};

    use super::*;
    use model::summary::Percentiles;

    fn percentiles(p50_ms: Option<f64>, p95_ms: Option<f64>) -> Percentiles {
        Percentiles {
            count: 1,
            p50_ms,
            p90_ms: p95_ms,
            p95_ms,
            p99_ms: p95_ms,
            mean_ms: p50_ms,
            max_ms: p95_ms,
            ..Percentiles::default()
        }
    }

    fn llm(ttft: (Option<f64>, Option<f64>), itl_p50_ms: Option<f64>) -> LlmSummary {
        LlmSummary {
            ttft: percentiles(ttft.0, ttft.1),
            itl: percentiles(itl_p50_ms, itl_p50_ms),
            tpot: percentiles(None, None),
            e2e: percentiles(None, None),
            output_tokens: 0,
            tokens_from: "usage".to_owned(),
            output_tokens_per_s: None,
            ..LlmSummary::default()
        }
    }

    #[test]
    fn the_slots_are_the_streams_in_flight_and_the_reason_quotes_the_numbers() {
        let before = llm((Some(700.0), Some(1400.0)), Some(10.0));
        let d = max_num_seqs(Some(&before), "before.csv", 20, 8).unwrap();
        assert_eq!(d.kind, CandidateKind::Server);
        assert_eq!(
            d.server_setting,
            Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 })
        );
        assert_eq!(d.label, "max_num_seqs 20");
        assert_eq!(d.loadgen_args, ["--profile", "baseline"]);
        assert!(
            d.reason.contains("are 70 and 140 decode steps"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("20 streams were in flight"),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("for 8 slots"), "{}", d.reason);
        assert_eq!(d.numbers["ttft_p95_steps"], 140.0);
        assert_eq!(d.numbers["max_num_seqs"], 20.0);
        // Fewer streams than slots: the slots stay.
        let d = max_num_seqs(Some(&before), "before.csv", 4, 8).unwrap();
        assert_eq!(d.numbers["max_num_seqs"], 8.0);
    }

    #[test]
    fn a_run_without_tokens_is_an_error_naming_the_file() {
        let none = llm((None, None), None);
        let err = max_num_seqs(Some(&none), "/out/before.csv", 20, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/out/before.csv") && err.contains("measured no time to first token"),
            "{err}"
        );
        let err = max_num_seqs(None, "/out/before.csv", 20, 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("measured no time to first token"), "{err}");
        let no_gap = llm((Some(700.0), Some(1400.0)), None);
        let err = max_num_seqs(Some(&no_gap), "/out/before.csv", 20, 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("measured no inter-token gap"), "{err}");
    }

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
