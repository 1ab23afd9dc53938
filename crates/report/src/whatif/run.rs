//! `report whatif`: decide the After from the Before, print the decision
//! and its reason, write `whatif.json` (`model::whatif`).
//!
//! - [`Scenario::Inference`] (the default): the what-if engine fits the
//!   Before and the probes, predicts every candidate, prints the ranking
//!   and chooses the client change. With [`ServerKind::Triton`] it also
//!   decides Triton's dynamic batcher from the Before's statistics, a
//!   server change measured beside the After (without probes, that
//!   decision alone).
//! - [`Scenario::Llm`]: an LLM server with continuous batching: the LLM
//!   engine (`llm/`) fits a step model to the Before and the probe,
//!   predicts TTFT, ITL, TPOT and e2e of every server and client change,
//!   and chooses the After (a server change labelled so, or the client's).
//!
//! The options are checked before any file is read; their messages name
//! the flag of `report whatif` each option comes from.

use std::path::{Path, PathBuf};

use model::log::{read_log_file, Log};
use model::whatif::{EngineReport, Load, WhatifReport, SCHEMA_VERSION};
use stats::slo::Slo;

use super::llm::candidates::ServerChanges;
use super::llm::{run_llm, KnownServer, LlmOptions};
use super::text::summary_text;
use super::{decide, EngineOptions, WhatifError};
use crate::write_files::write_atomically;

/// The objectives of `--scenario llm` when `--sla` gives none: the
/// workflow's own for LLM runs.
pub const LLM_DEFAULT_OBJECTIVES: [&str; 2] = ["ttft_p95<=500", "itl_p99<=50"];

/// What is analysed (`report whatif --scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Batch inference: the what-if engine chooses the client change.
    Inference,
    /// An LLM server: the continuous-batching engine chooses the After.
    Llm,
}

/// What is known of the server beyond its logs (`report whatif --server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Nothing: only client changes are chosen.
    Any,
    /// stub-server: its dynamic batcher's candidates are predicted (never
    /// chosen), as with `--server-dynamic-batching`.
    Simulator,
    /// NVIDIA Triton: its dynamic batcher's max_queue_delay is decided from
    /// `--before-stats`, a server change measured beside the After.
    Triton,
}

/// What `report whatif` is asked, one field per flag.
#[derive(Debug, Clone)]
pub struct Options {
    /// What is analysed (`--scenario`).
    pub scenario: Scenario,
    /// What is known of the server (`--server`).
    pub server: ServerKind,
    /// With [`Scenario::Llm`]: the Before's server as known
    /// (`--max-num-seqs`, `--max-batched-tokens`, `--pass-tokens`,
    /// `--chunked-prefill`,
    /// `--kv-cache-tokens`, `--kv-block-tokens`, `--prefix-cache-blocks`,
    /// `--replicas`); slots not given come from `--before-metrics`, else
    /// the most sequences seen decoding at once.
    pub llm_server: KnownServer,
    /// With [`Scenario::Llm`]: the prompt length of rows whose log has no
    /// `prompt_tokens` column (`--prompt-tokens`).
    pub prompt_tokens: Option<u32>,
    /// With [`Scenario::Llm`]: each probe's prompt length, in `probes`'
    /// order, for probe logs without the column (`--probe-prompt-tokens`).
    pub probe_prompt_tokens: Vec<u32>,
    /// With [`Scenario::Llm`]: the server's metrics through the Before
    /// (`--before-metrics`, `model::server_metrics`).
    pub before_metrics: Option<PathBuf>,
    /// With [`Scenario::Llm`]: objectives beyond the P95 SLA (`--sla`;
    /// none: [`LLM_DEFAULT_OBJECTIVES`]).
    pub slos: Vec<Slo>,
    /// With [`Scenario::Llm`]: the server changes the runner can apply
    /// (`--server-changes`); the others are predicted, never chosen.
    pub server_changes: ServerChanges,
    /// The Before run's loadgen log (`--before`).
    pub before: PathBuf,
    /// Probe runs at other batch sizes (`--probe`).
    pub probes: Vec<PathBuf>,
    /// The server's statistics around the Before (`--before-stats`).
    pub before_stats: Option<PathBuf>,
    /// The server's statistics around each probe, in `probes`' order
    /// (`--probe-stats`).
    pub probe_stats: Vec<PathBuf>,
    /// Closed loop with this many workers (`--concurrency`; `None`: the
    /// most requests in flight in the Before).
    pub concurrency: Option<u32>,
    /// Open loop at this rate instead, requests/s (`--rate`).
    pub rate_rps: Option<f64>,
    /// With `rate_rps`: exponential gaps instead of even spacing (`--poisson`).
    pub poisson: bool,
    /// Logical requests per simulated run (`--requests`; `None`: the
    /// Before's rows).
    pub requests: Option<u32>,
    /// SLA bound on P95, ms (`--sla-p95-ms`).
    pub sla_p95_ms: f64,
    /// Fraction of the SLA kept in reserve (`--margin`).
    pub margin: f64,
    /// The server's largest batch (`--max-batch`; `None`: the largest seen).
    pub max_batch: Option<u32>,
    /// The server supports dynamic batching (`--server-dynamic-batching`).
    pub server_dynamic_batching: bool,
    /// Bootstrap refits behind the prediction intervals (`--refits`).
    pub refits: u64,
    /// Seed of every draw (`--seed`).
    pub seed: u64,
    /// Where to write the JSON report (`--json`).
    pub json: PathBuf,
}

/// Reads the logs, decides, writes the JSON and prints the summary. The
/// engine may choose nothing (`engine.chosen` is `None`): no client
/// candidate meets the SLA with the margin, and its best is still the After.
pub fn run(options: &Options) -> Result<WhatifReport, WhatifError> {
    check_options(options)?;
    let report = match options.scenario {
        Scenario::Llm => {
            let (after, llm) = run_llm(&llm_options(options)?)?;
            WhatifReport {
                schema_version: SCHEMA_VERSION,
                after: Some(after),
                server_change: None,
                engine: None,
                llm: Some(llm),
            }
        }
        Scenario::Inference => {
            // Triton's server change needs only the Before's statistics:
            // decided first, so a refused engine still leaves the flags checked.
            let server_change = match (&options.server, &options.before_stats) {
                (ServerKind::Triton, Some(path)) => Some(decide::dynamic_batching(
                    &read_stats(path)?,
                    &path.display().to_string(),
                )?),
                _ => None,
            };
            let engine = if options.server == ServerKind::Triton && options.probes.is_empty() {
                None
            } else {
                Some(engine(options)?)
            };
            WhatifReport {
                schema_version: SCHEMA_VERSION,
                after: engine.as_ref().and_then(decide::engine_after),
                server_change,
                engine,
                llm: None,
            }
        }
    };
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write_atomically(&options.json, json.as_bytes())?;
    print!("{}", summary_text(&report));
    println!("JSON written: {}", options.json.display());
    Ok(report)
}

/// `--scenario llm`: the LLM engine's options; the objectives are
/// `--sla`'s (or [`LLM_DEFAULT_OBJECTIVES`]) and the P95 SLA on e2e
/// latency, which the comparison's verdict judges too.
fn llm_options(options: &Options) -> Result<LlmOptions, WhatifError> {
    let mut objectives = if options.slos.is_empty() {
        LLM_DEFAULT_OBJECTIVES
            .iter()
            .map(|t| {
                t.parse::<Slo>()
                    .map_err(|e| WhatifError::InvalidOption(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        options.slos.clone()
    };
    objectives.push(Slo::e2e_quantile(0.95, options.sla_p95_ms));
    Ok(LlmOptions {
        before: options.before.clone(),
        probes: options.probes.clone(),
        probe_prompt_tokens: options.probe_prompt_tokens.clone(),
        prompt_tokens: options.prompt_tokens,
        before_metrics: options.before_metrics.clone(),
        server: options.llm_server,
        concurrency: options.concurrency,
        rate_rps: options.rate_rps,
        poisson: options.poisson,
        requests: options.requests,
        objectives,
        margin: options.margin,
        refits: usize::try_from(options.refits).unwrap_or(usize::MAX),
        seed: options.seed,
        allowed: options.server_changes,
    })
}

/// The what-if engine over the Before and the probes.
fn engine(options: &Options) -> Result<EngineReport, WhatifError> {
    let mut before = read(&options.before)?;
    let mut probes = options
        .probes
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let from_stats = options.before_stats.is_some();
    if let Some(path) = &options.before_stats {
        if super::server_stats::annotate_before(&mut before, &read_stats(path)?) == 0 {
            return Err(WhatifError::InvalidOption(format!(
                "--before-stats {}: the statistics show no execution at the Before's batch size",
                path.display()
            )));
        }
        for (probe, path) in probes.iter_mut().zip(&options.probe_stats) {
            super::server_stats::annotate_probe(probe, &read_stats(path)?);
        }
    }
    let requests = match options.requests {
        Some(n) => n,
        None => u32::try_from(before.rows.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                WhatifError::InvalidOption(format!(
                    "the Before log has {} rows; pass --requests N (1 to 100000000)",
                    before.rows.len()
                ))
            })?,
    };
    let load = match options.rate_rps {
        Some(rate_rps) => Load::Open {
            rate_rps,
            requests,
            poisson: options.poisson,
        },
        None => Load::Closed {
            concurrency: match options.concurrency {
                Some(c) => c,
                None => max_in_flight(&before).max(1),
            },
            requests,
        },
    };
    let engine_options = EngineOptions {
        load,
        sla_p95_ms: options.sla_p95_ms,
        margin: options.margin,
        refits: usize::try_from(options.refits).unwrap_or(usize::MAX),
        seed: options.seed,
        server_dynamic_batching: options.server_dynamic_batching
            || options.server == ServerKind::Simulator,
    };
    let runs: Vec<&Log> = std::iter::once(&before).chain(&probes).collect();
    super::fit_and_predict(&runs, options.max_batch, from_stats, &engine_options)
}

fn read(path: &Path) -> Result<Log, WhatifError> {
    read_log_file(path).map_err(|source| WhatifError::ReadLog {
        path: path.to_owned(),
        source,
    })
}

/// The checks the flags' parsers cannot make, before any file is read.
fn check_options(options: &Options) -> Result<(), WhatifError> {
    let bad = |m: String| Err(WhatifError::InvalidOption(m));
    if !(options.sla_p95_ms.is_finite() && options.sla_p95_ms > 0.0) {
        return bad(format!(
            "--sla-p95-ms must be a finite number of ms above 0 (got {}); e.g. --sla-p95-ms 800",
            options.sla_p95_ms
        ));
    }
    if !(options.margin.is_finite() && (0.0..1.0).contains(&options.margin)) {
        return bad(format!(
            "--margin must be a fraction from 0 up to (not including) 1 (got {}); e.g. --margin 0.2",
            options.margin
        ));
    }
    if let Some(rate) = options.rate_rps {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1e7) {
            return bad(format!(
                "--rate must be a number of requests per second above 0, at most 1e7 (got {rate})"
            ));
        }
    }
    // Flags the chosen analysis would not read are refused, not ignored.
    let set = |on: bool, flag: &'static str| on.then_some(flag);
    let known = &options.llm_server;
    let unused: Vec<&str> = match options.scenario {
        Scenario::Llm => [
            set(options.before_stats.is_some(), "--before-stats"),
            set(!options.probe_stats.is_empty(), "--probe-stats"),
            set(options.max_batch.is_some(), "--max-batch"),
            set(options.server_dynamic_batching, "--server-dynamic-batching"),
            set(options.server != ServerKind::Any, "--server"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Scenario::Inference => [
            set(known.max_num_seqs.is_some(), "--max-num-seqs"),
            set(known.max_batched_tokens.is_some(), "--max-batched-tokens"),
            set(known.pass_tokens.is_some(), "--pass-tokens"),
            set(!known.chunked_prefill, "--chunked-prefill"),
            set(known.kv_cache_tokens.is_some(), "--kv-cache-tokens"),
            set(known.kv_block_tokens != 16, "--kv-block-tokens"),
            set(known.prefix_cache_blocks != 0, "--prefix-cache-blocks"),
            set(known.replicas != 1, "--replicas"),
            set(options.prompt_tokens.is_some(), "--prompt-tokens"),
            set(
                !options.probe_prompt_tokens.is_empty(),
                "--probe-prompt-tokens",
            ),
            set(options.before_metrics.is_some(), "--before-metrics"),
            set(!options.slos.is_empty(), "--sla"),
            set(
                options.server_changes != ServerChanges::ALL,
                "--server-changes",
            ),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    if let Some(flag) = unused.first() {
        let scenario = match options.scenario {
            Scenario::Llm => "llm",
            Scenario::Inference => "inference",
        };
        return bad(format!(
            "{flag} does nothing with --scenario {scenario}; --scenario llm refuses --before-stats, --probe-stats, --max-batch, --server-dynamic-batching and --server, --scenario inference the LLM server's flags (--max-num-seqs, --max-batched-tokens, --pass-tokens, --chunked-prefill, --kv-cache-tokens, --kv-block-tokens, --prefix-cache-blocks, --replicas), --prompt-tokens, --probe-prompt-tokens, --before-metrics, --sla and --server-changes"
        ));
    }
    if options.probe_prompt_tokens.len() > options.probes.len() {
        return bad(format!(
            "--probe-prompt-tokens: {} lengths for {} --probe logs; give at most one per probe, in the same order",
            options.probe_prompt_tokens.len(),
            options.probes.len()
        ));
    }
    if options.scenario == Scenario::Llm && options.poisson && options.rate_rps.is_none() {
        return bad("--poisson needs --rate".to_owned());
    }
    if options.server == ServerKind::Triton && options.before_stats.is_none() {
        return bad("--server triton needs --before-stats FILE (loadgen --server-stats around the Before): the dynamic batcher's max_queue_delay is decided from Triton's statistics".to_owned());
    }
    if options.before_stats.is_some() && options.probe_stats.len() != options.probes.len() {
        return bad(format!(
            "--probe-stats: {} files for {} --probe logs; with --before-stats give one per probe, in the same order",
            options.probe_stats.len(),
            options.probes.len()
        ));
    }
    if options.json.is_dir() || options.json.as_os_str().is_empty() {
        return bad(format!(
            "--json must name a file to write, not {:?}; e.g. --json whatif.json",
            options.json.display().to_string()
        ));
    }
    Ok(())
}

/// Most requests in flight at once in `log`: the deepest overlap of the
/// rows' `[timestamp, timestamp + latency]` intervals. A request that
/// starts as another ends does not overlap it (a closed loop's worker
/// issues its next request right then), and "as" allows 5 us: the log
/// rounds both columns to 1 us and an epoch timestamp in an f64 carries
/// about 0.2 us, so a worker's next start can read a hair before its
/// previous end.
pub(super) fn max_in_flight(log: &Log) -> u32 {
    const TOLERANCE_MS: f64 = 0.005;
    let mut edges: Vec<(f64, i32)> = Vec::with_capacity(2 * log.rows.len());
    for row in &log.rows {
        if row.timestamp_ms.is_finite() && row.latency_ms.is_finite() {
            let end_ms = row.timestamp_ms + (row.latency_ms - TOLERANCE_MS).max(0.0);
            edges.push((row.timestamp_ms, 1));
            edges.push((end_ms, -1));
        }
    }
    // Ends before starts at the same instant.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    u32::try_from(most).unwrap_or(0)
}

/// Reads a `loadgen --server-stats` file's delta (the statistics of the run).
fn read_stats(path: &std::path::Path) -> Result<model::kserve::ModelStats, WhatifError> {
    crate::compare::read_server_stats(path).map_err(|e| WhatifError::InvalidOption(e.to_string()))
}

#[cfg(test)]
mod tests {
    use model::log::{LogFormat, LogRow};

    use super::*;

    fn log(intervals: &[(f64, f64)]) -> Log {
        Log {
            format: LogFormat::Loadgen,
            rows: intervals
                .iter()
                .enumerate()
                .map(|(i, &(timestamp_ms, latency_ms))| LogRow {
                    request_id: i as u64,
                    timestamp_ms,
                    latency_ms,
                    ..LogRow::default()
                })
                .collect(),
        }
    }

    #[test]
    fn in_flight_counts_overlaps_but_not_back_to_back_requests() {
        // Two workers back to back (the next start a rounding hair early),
        // and a third request overlapping both for a while.
        let t0 = 1_700_000_000_000.0;
        let rows = [
            (t0, 100.0),
            (t0 + 99.999, 100.0),
            (t0 + 10.0, 100.0),
            (t0 + 109.999, 50.0),
        ];
        assert_eq!(max_in_flight(&log(&rows)), 2);
        assert_eq!(
            max_in_flight(&log(&[(t0, 100.0), (t0 + 50.0, 100.0), (t0 + 60.0, 1.0)])),
            3
        );
        assert_eq!(max_in_flight(&log(&[])), 0);
    }
}
