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

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::TaskError;
use crate::perf::{self, Outcome, PerfArgs, CLIENT_LIMIT};
use crate::process;
use crate::triton::{self, TritonSetup};
use crate::workspace;

/// The share of the measured execution time per request that the chosen
/// `max_queue_delay` may add to a request that waits alone.
const DELAY_SHARE_OF_EXECUTION: f64 = 0.02;

pub fn run(args: &PerfArgs) -> Result<Outcome, TaskError> {
    let started = std::time::Instant::now();
    let root = workspace::root();
    perf::create_dir(&args.out.join("logs"))?;
    println!("server: a real NVIDIA Triton (nvidia-pytriton), fresh for every phase, loaded over KServe v2");
    perf::step("1/6", "build the release binaries");
    perf::build()?;
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
    functional_check(&python, &root, &args.out)?;

    let mut verdicts = Vec::new();
    for pair in 1..=args.repeat {
        let dir = perf::pair_dir(&args.out, pair);
        perf::create_dir(&dir.join("logs"))?;
        if args.repeat > 1 {
            println!("\n=== Before/After pair {pair} of {} ===", args.repeat);
        }
        verdicts.push(run_pair(&python, &root, args, &dir)?);
    }
    if args.repeat > 1 {
        perf::summarize_repeats(&args.out, args.repeat)?;
    }
    println!(
        "\nresults in {} (report.html, report.md, comparison.json; the server change in server-change/); workflow took {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(if verdicts.iter().all(|&met| met) {
        Outcome::Met
    } else {
        Outcome::NotMet
    })
}

fn loadgen(base_url: &str) -> Command {
    let mut cmd = Command::new(workspace::release_bin("loadgen"));
    cmd.args([
        "--url",
        base_url,
        "--api",
        "kserve-v2",
        "--model",
        triton::MODEL,
    ]);
    cmd.stdin(Stdio::null());
    cmd
}

fn functional_check(python: &Path, root: &Path, out: &Path) -> Result<(), TaskError> {
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
            loadgen(&server.base_url).args(flags).stdout(Stdio::null()),
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

/// One phase: a fresh Triton with `setup`, one loadgen run with `profile`,
/// its log, summary and Triton's statistics around it.
fn phase(
    python: &Path,
    root: &Path,
    setup: &TritonSetup,
    dir: &Path,
    name: &str,
    profile: &str,
) -> Result<(), TaskError> {
    let server = triton::start(
        python,
        root,
        setup,
        &dir.join(format!("logs/{name}-triton.log")),
    )?;
    println!(
        "loadgen --profile {profile} --api kserve-v2  ({}; {})",
        server.base_url,
        setup.describe()
    );
    let file = |ext: &str| dir.join(format!("{name}{ext}"));
    let status = process::run_with_deadline(
        loadgen(&server.base_url)
            .args(["--profile", profile])
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
            "loadgen --profile {profile} against Triton could not run ({status})"
        ))),
    }
}

/// The dynamic batcher's `max_queue_delay` for the server change, from the
/// Before's statistics: a small share of the execution time a request
/// pays, so a request that waits alone loses little, and requests that
/// arrive together are gathered. Returns the delay and the reasoning.
fn chosen_delay_us(before_stats: &Path) -> Result<(u64, String), TaskError> {
    let text = fs::read_to_string(before_stats).map_err(|source| TaskError::Io {
        path: before_stats.to_owned(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TaskError::Step(format!("{}: {e}", before_stats.display())))?;
    let infer = &json["delta"]["inference_stats"]["compute_infer"];
    let (count, ns) = (infer["count"].as_f64(), infer["ns"].as_f64());
    let Some(execution_ms) = count
        .zip(ns)
        .filter(|(c, _)| *c > 0.0)
        .map(|(c, ns)| ns / c / 1e6)
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

fn run_pair(python: &Path, root: &Path, args: &PerfArgs, dir: &Path) -> Result<bool, TaskError> {
    let placeholder = TritonSetup::PLACEHOLDER;
    perf::step(
        "4/6",
        "Before: the baseline client against Triton (2 instances, no dynamic batching)",
    );
    phase(python, root, &placeholder, dir, "before", "baseline")?;
    perf::step(
        "5/6",
        "After: the optimized client, same Triton set-up (a client change)",
    );
    phase(python, root, &placeholder, dir, "after", "optimized")?;
    let (delay_us, why) = chosen_delay_us(&dir.join("before_server_stats.json"))?;
    let dynamic = TritonSetup {
        dynamic_batching_delay_us: Some(delay_us),
        ..placeholder.clone()
    };
    println!("server change: Triton's dynamic batcher with {why}");
    phase(python, root, &dynamic, dir, "server_change", "baseline")?;

    perf::step(
        "6/6",
        "compare, verify, diagnose, report (client change; server change beside it)",
    );
    write_conditions(dir, &placeholder, &dynamic, &why)?;
    let met = report(dir, "after", "After (optimized client)", args, dir)?;
    let server_change_dir = dir.join("server-change");
    perf::create_dir(&server_change_dir)?;
    println!("\nThe server change (reported beside the client change, not gating the exit code):");
    report(
        dir,
        "server_change",
        &format!("Server change (dynamic batching, max_queue_delay {delay_us} us)"),
        args,
        &server_change_dir,
    )?;
    Ok(met)
}

/// `report compare` of the Before against `after_name`, into `out`.
fn report(
    dir: &Path,
    after_name: &str,
    after_label: &str,
    args: &PerfArgs,
    out: &Path,
) -> Result<bool, TaskError> {
    let file = |name: &str| dir.join(name);
    let mut cmd = Command::new(workspace::release_bin("report"));
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
        .args(["--conditions".as_ref(), file("conditions.json").as_os_str()])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(["--out-dir".as_ref(), out.as_os_str()]);
    let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(TaskError::Step(format!(
            "the report could not be written ({status}); see the message above"
        ))),
    }
}

fn write_conditions(
    dir: &Path,
    before: &TritonSetup,
    server_change: &TritonSetup,
    why: &str,
) -> Result<(), TaskError> {
    let conditions = serde_json::json!({
        "target": "triton",
        "server": before.describe(),
        "server_change": server_change.describe(),
        "server_change_reason": why,
        "fresh_server_per_phase": true,
        "requests": 400,
        "concurrency": 20,
        "timeout_s": 30,
        "api": "kserve-v2",
        "payloads": "input.py build_payload(i), i = 0..399, as BYTES tensors",
        "before_client": "loadgen --profile baseline --api kserve-v2 (new connection per request, one input per request)",
        "after_client": "loadgen --profile optimized --api kserve-v2 (pooled keep-alive, micro-batches of 10 along dimension 0, W=5 ms)",
        "server_change_client": "loadgen --profile baseline --api kserve-v2",
        "quantile_method": "linear",
        "machine": perf::machine(),
    });
    let path = dir.join("conditions.json");
    let text = serde_json::to_string_pretty(&conditions).unwrap_or_default();
    fs::write(&path, text).map_err(|source| TaskError::Io { path, source })
}
