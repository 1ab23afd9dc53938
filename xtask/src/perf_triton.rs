//! `cargo xtask perf --server triton`: the Before/After story against a
//! real NVIDIA Triton Inference Server that the workflow starts itself.
//!
//! Every phase gets a fresh Triton ([`crate::triton`]) serving the
//! placeholder's cost shape, loaded by `loadgen --api kserve-v2`, with
//! Triton's own statistics read around the run (`--server-stats`):
//!
//! 1. Before: the baseline client (a new connection per request, one input
//!    per request, concurrency 20, 400 requests) against 2 instances
//!    without dynamic batching.
//! 2. After (a client change): the optimized client (pooled connections,
//!    micro-batches of 10 stacked along dimension 0), same server.
//! 3. Server change, measured and reported beside it: the baseline client
//!    against the same model with Triton's dynamic batcher on, its
//!    `max_queue_delay` chosen from the Before's statistics.
//!
//! `input.py` does not run: it speaks the simulator's wire format, not
//! KServe v2. The exit code is the client change's verdict, as for the
//! simulator.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::perf::{self, Outcome, PerfArgs, CLIENT_LIMIT};
use crate::process;
use crate::triton::{self, TritonSetup};
use crate::{json, workspace};

/// The share of the measured execution time per request that the chosen
/// `max_queue_delay` may add to a request that waits alone.
const DELAY_SHARE_OF_EXECUTION: f64 = 0.02;

pub fn run(args: &PerfArgs) -> Result<Outcome, TaskError> {
    let started = std::time::Instant::now();
    let root = workspace::root()?;
    perf::create_dir(&args.out.join("logs"))?;
    println!("server: a real NVIDIA Triton (nvidia-pytriton), fresh for every phase, loaded over KServe v2");
    perf::step("1/6", "build the release binaries");
    let bins = build::release_binaries(&perf::PACKAGES)?;
    perf::step(
        "2/6",
        "Triton: the venv (system Python 3.11) and its pinned wheel",
    );
    let python = triton::ensure_venv(&root)?;
    println!("Triton's Python: {}", python.display());
    println!("input.py skipped: it sends the simulator's wire format, not KServe v2; the Rust baseline client is the Before.");

    perf::step(
        "3/6",
        "functional check: single and batched requests, every output verified",
    );
    functional_check(&bins, &python, &root, &args.out)?;

    perf::run_pairs(
        args,
        &bins,
        started,
        "; the server change in server-change/",
        |dir, seed| run_pair(&bins, &python, &root, args, dir, seed),
    )
}

fn loadgen(bins: &Binaries, base_url: &str) -> Command {
    let mut cmd = Command::new(bins.path("loadgen"));
    cmd.args([
        "--url",
        base_url,
        "--api",
        "kserve-v2",
        "--model",
        triton::MODEL,
        // The workflow's Triton model answers as the simulator does.
        "--verify",
    ]);
    cmd.stdin(Stdio::null());
    cmd
}

fn functional_check(
    bins: &Binaries,
    python: &Path,
    root: &Path,
    out: &Path,
) -> Result<(), TaskError> {
    let server = triton::start(
        python,
        root,
        &TritonSetup::PLACEHOLDER,
        &out.join("logs/functional-triton.log"),
    )?;
    let checks: [&[&str]; 2] = [
        &["-n", "4", "-c", "2", "--connection", "per-request"],
        &[
            "-n",
            "6",
            "-c",
            "6",
            "--batch-size",
            "3",
            "--batch-wait-ms",
            "20",
        ],
    ];
    for flags in checks {
        let status = process::run_with_deadline(
            loadgen(bins, &server.base_url)
                .args(flags)
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "functional check against Triton failed: `loadgen --url {} --api kserve-v2 {}` reported failed requests",
                server.base_url,
                flags.join(" ")
            )));
        }
    }
    println!(
        "ok: Triton at {} answered single and batched requests, outputs verified",
        server.base_url
    );
    Ok(())
}

/// One phase: a fresh Triton with `setup`, one loadgen run with `flags`
/// (`--profile baseline`, or the After's), its log, summary and Triton's
/// statistics around it.
fn phase(
    bins: &Binaries,
    python: &Path,
    root: &Path,
    setup: &TritonSetup,
    dir: &Path,
    name: &str,
    flags: &[String],
) -> Result<(), TaskError> {
    let flags_text = flags.join(" ");
    let server = triton::start(
        python,
        root,
        setup,
        &dir.join(format!("logs/{name}-triton.log")),
    )?;
    println!(
        "loadgen {flags_text} --api kserve-v2  ({}; {})",
        server.base_url,
        setup.describe()
    );
    let file = |ext: &str| dir.join(format!("{name}{ext}"));
    let status = process::run_with_deadline(
        loadgen(bins, &server.base_url)
            .args(flags)
            .args(["--out".as_ref(), file(".csv").as_os_str()])
            .args(["--json".as_ref(), file(".json").as_os_str()])
            .args([
                "--server-stats".as_ref(),
                file("_server_stats.json").as_os_str(),
            ]),
        CLIENT_LIMIT,
    )?;
    match status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(TaskError::Step(format!(
            "loadgen {flags_text} against Triton could not run ({status})"
        ))),
    }
}

/// The After's flags: with `--after auto`, the what-if engine's choice,
/// fitted from Triton's statistics (Triton sends no `Server-Timing`) of the
/// Before and of a probe against a fresh Triton; otherwise, or when the
/// engine gives no answer, the fixed optimized profile.
fn choose_after(
    bins: &Binaries,
    python: &Path,
    root: &Path,
    setup: &TritonSetup,
    args: &PerfArgs,
    dir: &Path,
) -> Result<crate::whatif::AfterChoice, TaskError> {
    if args.after == "optimized" {
        return Ok(crate::whatif::AfterChoice::optimized());
    }
    perf::step(
        "analysis",
        "probe the batch cost (Triton's statistics), fit the service, predict the candidate fixes",
    );
    // A probe that cannot run leaves the workflow with the fixed profile
    // (said loudly), not without an After.
    let server = match triton::start(python, root, setup, &dir.join("logs/probe-triton.log")) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("warning: the probe's Triton did not start ({e}); the After is the fixed optimized profile");
            return Ok(crate::whatif::AfterChoice::optimized());
        }
    };
    println!(
        "probe: {} batches at each batch size {:?}, one batch at a time, Triton's statistics around each ({})",
        crate::whatif::PROBE_BATCHES,
        crate::whatif::PROBE_BATCH_SIZES,
        server.base_url
    );
    let (probes, stats) = crate::whatif::probe_with(
        || loadgen(bins, &server.base_url),
        dir,
        perf::CLIENT_LIMIT,
        true,
    )?;
    drop(server);
    let json_path = dir.join("whatif.json");
    let mut cmd = Command::new(bins.path("report"));
    cmd.arg("whatif")
        .args(["--before".as_ref(), dir.join("before.csv").as_os_str()])
        .args([
            "--before-stats".as_ref(),
            dir.join("before_server_stats.json").as_os_str(),
        ])
        .args(
            probes
                .iter()
                .flat_map(|p| ["--probe".as_ref(), p.as_os_str()]),
        )
        .args(
            stats
                .iter()
                .flat_map(|p| ["--probe-stats".as_ref(), p.as_os_str()]),
        )
        .args(["--concurrency", "20", "--requests", "400"])
        .args(["--max-batch", &setup.max_batch_size.to_string()])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(["--json".as_ref(), json_path.as_os_str()]);
    Ok(crate::whatif::choose(
        &mut cmd,
        &json_path,
        perf::CLIENT_LIMIT,
    ))
}

/// What is read of the `--server-stats` file loadgen writes (model's
/// `ServerStatsDelta`: Triton's statistics before, after, and the delta).
#[derive(Debug, Deserialize)]
struct ServerStats {
    delta: ModelStats,
}

#[derive(Debug, Deserialize)]
struct ModelStats {
    inference_stats: InferenceStats,
}

#[derive(Debug, Deserialize)]
struct InferenceStats {
    compute_infer: CountAndNs,
}

/// Triton's statistic unit: how many, and the nanoseconds over all of them.
#[derive(Debug, Deserialize)]
struct CountAndNs {
    count: u64,
    ns: u64,
}

/// The dynamic batcher's `max_queue_delay` for the server change, from the
/// Before's statistics: a small share of the execution time a request
/// pays, so a request that waits alone loses little, and requests that
/// arrive together are gathered. Returns the delay and the reasoning.
fn chosen_delay_us(before_stats: &Path) -> Result<(u64, String), TaskError> {
    let stats: ServerStats = json::read(before_stats)?;
    let infer = stats.delta.inference_stats.compute_infer;
    let Some(execution_ms) = (infer.count > 0).then(|| infer.ns as f64 / infer.count as f64 / 1e6)
    else {
        return Err(TaskError::Step(format!(
            "{}: Triton reported no executions for the Before",
            before_stats.display()
        )));
    };
    let delay_us = ((execution_ms * 1000.0 * DELAY_SHARE_OF_EXECUTION / 100.0).round() * 100.0)
        .clamp(100.0, 10_000.0) as u64;
    let why = format!(
        "max_queue_delay {delay_us} us = {:.0}% of the Before's measured execution of {execution_ms:.1} ms per request (Triton's statistics), rounded to 100 us: a request that waits alone pays at most that, requests that arrive together while an instance is busy are executed as one batch",
        DELAY_SHARE_OF_EXECUTION * 100.0
    );
    Ok((delay_us, why))
}

fn run_pair(
    bins: &Binaries,
    python: &Path,
    root: &Path,
    args: &PerfArgs,
    dir: &Path,
    seed: u64,
) -> Result<bool, TaskError> {
    let placeholder = TritonSetup {
        seed,
        ..TritonSetup::PLACEHOLDER
    };
    perf::step(
        "4/6",
        "Before: the baseline client against Triton (2 instances, no dynamic batching)",
    );
    let mut phases = serde_json::Map::new();
    let baseline = ["--profile".to_owned(), "baseline".to_owned()];
    perf::with_load(&mut phases, "before", || {
        phase(bins, python, root, &placeholder, dir, "before", &baseline)
    })?;
    // No capacity search here: the Triton workflow has no --capacity.
    let crate::whatif::AfterChoice {
        flags: after_flags,
        whatif_json,
        ..
    } = perf::with_load(&mut phases, "analysis", || {
        choose_after(bins, python, root, &placeholder, args, dir)
    })?;
    perf::step(
        "5/6",
        "After: the chosen client, same Triton set-up (a client change)",
    );
    perf::with_load(&mut phases, "after", || {
        phase(bins, python, root, &placeholder, dir, "after", &after_flags)
    })?;
    let (delay_us, why) = chosen_delay_us(&dir.join("before_server_stats.json"))?;
    let dynamic = TritonSetup {
        dynamic_batching_delay_us: Some(delay_us),
        ..placeholder.clone()
    };
    println!("server change: Triton's dynamic batcher with {why}");
    phase(
        bins,
        python,
        root,
        &dynamic,
        dir,
        "server_change",
        &baseline,
    )?;

    perf::step(
        "6/6",
        "compare, verify, diagnose, report (client change; server change beside it)",
    );
    write_conditions(dir, (&placeholder, &after_flags), &dynamic, &why, phases)?;
    let met = report(
        bins,
        dir,
        ("after", "After (optimized client)"),
        whatif_json.as_deref(),
        args,
        dir,
    )?;
    let server_change_dir = dir.join("server-change");
    perf::create_dir(&server_change_dir)?;
    println!("\nThe server change (reported beside the client change, not gating the exit code):");
    report(
        bins,
        dir,
        (
            "server_change",
            &format!("Server change (dynamic batching, max_queue_delay {delay_us} us)"),
        ),
        None,
        args,
        &server_change_dir,
    )?;
    Ok(met)
}

/// `report compare` of the Before against `after_name`, into `out`.
fn report(
    bins: &Binaries,
    dir: &Path,
    (after_name, after_label): (&str, &str),
    prediction: Option<&Path>,
    args: &PerfArgs,
    out: &Path,
) -> Result<bool, TaskError> {
    let file = |name: &str| dir.join(name);
    let mut cmd = Command::new(bins.path("report"));
    cmd.arg("compare")
        .args(["--before".as_ref(), file("before.csv").as_os_str()])
        .args(["--before-label", "Before (baseline client, Triton)"])
        .args([
            "--before-server-stats".as_ref(),
            file("before_server_stats.json").as_os_str(),
        ])
        .args([
            "--after".as_ref(),
            file(&format!("{after_name}.csv")).as_os_str(),
        ])
        .args(["--after-label", after_label])
        .args([
            "--after-server-stats".as_ref(),
            file(&format!("{after_name}_server_stats.json")).as_os_str(),
        ])
        .args(
            prediction
                .iter()
                .flat_map(|path| ["--prediction".as_ref(), path.as_os_str()]),
        )
        .args(["--conditions".as_ref(), file("conditions.json").as_os_str()])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(args.slos.iter().flat_map(|slo| ["--sla", slo.as_str()]))
        .args(["--out-dir".as_ref(), out.as_os_str()]);
    perf::run_report(&mut cmd)
}

fn write_conditions(
    dir: &Path,
    (before, after_flags): (&TritonSetup, &[String]),
    server_change: &TritonSetup,
    why: &str,
    phases: serde_json::Map<String, serde_json::Value>,
) -> Result<(), TaskError> {
    let conditions = serde_json::json!({
        "target": "triton",
        "server": before.describe(),
        "server_change": server_change.describe(),
        "server_change_reason": why,
        "server_seed": before.seed,
        "fresh_server_per_phase": true,
        "requests": 400,
        "concurrency": 20,
        "timeout_s": 30,
        "api": "kserve-v2",
        "payloads": "input.py build_payload(i), i = 0..399, as BYTES tensors",
        "before_client": "loadgen --profile baseline --api kserve-v2 (new connection per request, one input per request)",
        "after_client": format!("loadgen {} --api kserve-v2 (batches along dimension 0)", after_flags.join(" ")),
        "server_change_client": "loadgen --profile baseline --api kserve-v2",
        "quantile_method": "linear",
    });
    perf::write_conditions_file(dir, conditions, phases)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// The head of a `--server-stats` file as loadgen writes it.
    fn stats_file(name: &str, compute_infer: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "xtask-server-stats-{name}-{}.json",
            std::process::id()
        ));
        let model = |infer: &str| {
            format!(
                r#"{{"name": "example-model", "version": "1", "inference_count": 400, "execution_count": 400,
                    "inference_stats": {{"success": {{"count": 400, "ns": 1}}, "compute_infer": {infer}}},
                    "batch_stats": []}}"#
            )
        };
        let zero = r#"{"count": 0, "ns": 0}"#;
        fs::write(
            &path,
            format!(
                r#"{{"path": "/v2/models/example-model/stats", "before": {}, "after": {}, "delta": {}}}"#,
                model(zero),
                model(zero),
                model(compute_infer)
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn the_delay_is_a_share_of_the_measured_execution() {
        // 400 executions of 102 ms: 2% is 2.04 ms, rounded to 2000 us.
        let path = stats_file("ok", r#"{"count": 400, "ns": 40800000000}"#);
        let (delay_us, why) = chosen_delay_us(&path).unwrap();
        assert_eq!(delay_us, 2000);
        assert!(why.contains("execution of 102.0 ms"), "{why}");
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn no_executions_or_a_renamed_field_is_an_error_naming_the_file() {
        let path = stats_file("none", r#"{"count": 0, "ns": 0}"#);
        let err = chosen_delay_us(&path).unwrap_err().to_string();
        assert!(err.contains("Triton reported no executions"), "{err}");
        let _ = fs::remove_file(&path);
        let path = stats_file("renamed", r#"{"n": 400, "ns": 40800000000}"#);
        assert_eq!(
            chosen_delay_us(&path).unwrap_err().to_string(),
            format!(
                "{}: missing field `delta.inference_stats.compute_infer.count`",
                path.display()
            )
        );
        let _ = fs::remove_file(&path);
    }
}
