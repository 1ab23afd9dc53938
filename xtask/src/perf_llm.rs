//! `cargo xtask perf --scenario llm`: the Before/After story of an LLM
//! endpoint whose time to first token breaks its SLA because sequences wait
//! for a slot.
//!
//! The server is the simulator's OpenAI-compatible routes under the
//! `llm-slots` profile (continuous batching with 8 sequence slots, fresh
//! per phase); the client is `loadgen --api openai-chat`, streamed, with
//! `input.py`'s load shape (`--profile baseline`: 400 requests, 20 at a
//! time, a new connection per request), every answer verified token for
//! token.
//!
//! 1. Before: the baseline client against 8 slots.
//! 2. Diagnosis, from the Before's measured numbers: the TTFT against one
//!    decode step (the ITL), and the streams in flight against the slots.
//! 3. After: the same client against `max_num_seqs` raised to the streams
//!    measured in flight. That is a server setting, so the After is
//!    reported as a server change: no client-side change can shorten a
//!    wait for a server slot without shortening the answers (`max_tokens`)
//!    or offering less load, and holding requests back in the client only
//!    moves the wait there (TTFT runs from the intended start).
//!
//! `input.py` does not run: it sends the simulator's inference format, not
//! OpenAI's. Objectives: those given with `--sla`, else `ttft_p95<=500`
//! and `itl_p99<=50`, beside the e2e P95 SLA.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::json;
use crate::perf::{self, Outcome, PerfArgs, CLIENT_LIMIT};
use crate::process::{self, ServerProcess};

/// The server profile of the scenario.
const PROFILE: &str = "llm-slots";
/// Its sequence slots (`stub-server --profile llm-slots`).
const PROFILE_SLOTS: u32 = 8;
/// The objectives when `--sla` gives none.
pub const DEFAULT_SLOS: [&str; 2] = ["ttft_p95<=500", "itl_p99<=50"];

pub fn run(args: &PerfArgs) -> Result<Outcome, TaskError> {
    let started = std::time::Instant::now();
    perf::create_dir(&args.out.join("logs"))?;
    println!(
        "scenario: llm. Server: the simulator's OpenAI-compatible routes, profile {PROFILE} \
         ({PROFILE_SLOTS} sequence slots), fresh for every phase; client: loadgen --api openai-chat, streamed"
    );
    perf::step("1/5", "build the release binaries");
    let bins = build::release_binaries(&perf::PACKAGES)?;
    println!("input.py skipped: it sends the simulator's inference format, not OpenAI's; the Rust baseline client (input.py's load shape, streamed) is the Before.");
    perf::step(
        "2/5",
        "functional check: streamed chat, non-streamed chat, batched completions; every answer verified",
    );
    functional_check(&bins, &args.out)?;
    // The step loop draws no randomness: every pair runs the same server.
    perf::run_pairs(args, &bins, started, "", |dir, _seed| {
        run_pair(&bins, args, dir)
    })
}

fn loadgen(bins: &Binaries, base_url: &str, api: &str) -> Command {
    let mut cmd = Command::new(bins.path("loadgen"));
    // stub-server's LLM routes give the simulator's known answers.
    cmd.args(["--url", base_url, "--api", api, "--verify"]);
    cmd.stdin(Stdio::null());
    cmd
}

fn start_server(bins: &Binaries, extra: &[String], log: &Path) -> Result<ServerProcess, TaskError> {
    let mut args = vec!["--profile".to_owned(), PROFILE.to_owned()];
    args.extend(extra.iter().cloned());
    Ok(ServerProcess::start(&bins.path("stub-server"), &args, log)?)
}

fn functional_check(bins: &Binaries, out: &Path) -> Result<(), TaskError> {
    let server = start_server(bins, &[], &out.join("logs/functional-llm-server.log"))?;
    let checks: [(&str, &[&str]); 3] = [
        ("openai-chat", &["-n", "4", "-c", "2"]),
        ("openai-chat", &["-n", "2", "-c", "2", "--no-stream"]),
        (
            "openai-completions",
            &[
                "-n",
                "6",
                "-c",
                "3",
                "--batch-size",
                "3",
                "--batch-wait-ms",
                "20",
            ],
        ),
    ];
    for (api, flags) in checks {
        let status = process::run_with_deadline(
            loadgen(bins, &server.base_url, api)
                .args(flags)
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "functional check failed: `loadgen --url {} --api {api} {}` reported failed requests",
                server.base_url,
                flags.join(" ")
            )));
        }
    }
    println!(
        "ok: the simulator at {} streamed and answered chat and batched completions, every answer verified",
        server.base_url
    );
    Ok(())
}

/// One phase: a fresh server with `extra` flags, the baseline client.
fn phase(bins: &Binaries, extra: &[String], dir: &Path, name: &str) -> Result<(), TaskError> {
    let server = start_server(bins, extra, &dir.join(format!("logs/{name}-server.log")))?;
    println!(
        "loadgen --profile baseline --api openai-chat  ({}; stub-server --profile {PROFILE} {})",
        server.base_url,
        extra.join(" ")
    );
    let file = |ext: &str| dir.join(format!("{name}{ext}"));
    let status = process::run_with_deadline(
        loadgen(bins, &server.base_url, "openai-chat")
            .args(["--profile", "baseline"])
            .args(["--out".as_ref(), file(".csv").as_os_str()])
            .args(["--json".as_ref(), file(".json").as_os_str()]),
        CLIENT_LIMIT,
    )?;
    match status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(TaskError::Step(format!(
            "loadgen --profile baseline --api openai-chat could not run ({status})"
        ))),
    }
}

/// What is read of loadgen's `--json` summary.
#[derive(Debug, Deserialize)]
struct RunSummary {
    concurrency: u32,
    llm: LlmSummary,
}

#[derive(Debug, Deserialize)]
struct LlmSummary {
    ttft: Percentiles,
    itl: Percentiles,
}

#[derive(Debug, Deserialize)]
struct Percentiles {
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
}

/// The After's `max_num_seqs`, from the Before's measured numbers, and
/// the reasoning.
fn chosen_slots(before_json: &Path) -> Result<(u32, String), TaskError> {
    let summary: RunSummary = json::read(before_json)?;
    let missing = |what: &str| {
        TaskError::Step(format!(
            "{}: the Before measured no {what}; no diagnosis is possible",
            before_json.display()
        ))
    };
    let ttft_p50 = summary.llm.ttft.p50_ms.ok_or_else(|| missing("TTFT"))?;
    let ttft_p95 = summary.llm.ttft.p95_ms.ok_or_else(|| missing("TTFT"))?;
    let itl_p50 = summary
        .llm
        .itl
        .p50_ms
        .ok_or_else(|| missing("inter-token gap"))?;
    // A closed loop of c workers keeps c streams in flight.
    let in_flight = summary.concurrency;
    let slots = in_flight.max(PROFILE_SLOTS);
    let why = format!(
        "the Before's TTFT P50 {ttft_p50:.0} ms and P95 {ttft_p95:.0} ms are {:.0} and {:.0} decode steps \
         (ITL P50 {itl_p50:.1} ms): a stream that had a slot would see its first token after about one step, \
         so the rest is waiting for a slot; {in_flight} streams were in flight (the closed loop's concurrency) \
         for {PROFILE_SLOTS} slots. max_num_seqs {slots} gives every stream a slot; each step then costs more \
         (one more sequence in every step), which the ITL objective checks",
        ttft_p50 / itl_p50,
        ttft_p95 / itl_p50,
    );
    Ok((slots, why))
}

fn run_pair(bins: &Binaries, args: &PerfArgs, dir: &Path) -> Result<bool, TaskError> {
    perf::step(
        "3/5",
        &format!("Before: the baseline client, streamed, against {PROFILE_SLOTS} sequence slots"),
    );
    let mut phases = serde_json::Map::new();
    perf::with_load(&mut phases, "before", || phase(bins, &[], dir, "before"))?;
    let (slots, why) = chosen_slots(&dir.join("before.json"))?;
    println!("diagnosis: {why}");
    perf::step(
        "4/5",
        &format!("After: the same client against max_num_seqs {slots} (a server change)"),
    );
    let extra = vec![format!("--max-num-seqs={slots}")];
    perf::with_load(&mut phases, "after", || phase(bins, &extra, dir, "after"))?;
    perf::step("5/5", "compare, verify, diagnose, report");
    write_conditions(dir, slots, &why, phases)?;
    report(bins, dir, slots, args)
}

fn report(bins: &Binaries, dir: &Path, slots: u32, args: &PerfArgs) -> Result<bool, TaskError> {
    let file = |name: &str| dir.join(name);
    let slos: Vec<&str> = if args.slos.is_empty() {
        DEFAULT_SLOS.to_vec()
    } else {
        args.slos.iter().map(String::as_str).collect()
    };
    let mut cmd = Command::new(bins.path("report"));
    cmd.arg("compare")
        .args(["--before".as_ref(), file("before.csv").as_os_str()])
        .args([
            "--before-label",
            &format!("Before (baseline client, {PROFILE_SLOTS} slots)"),
        ])
        .args(["--after".as_ref(), file("after.csv").as_os_str()])
        .args([
            "--after-label",
            &format!("After (server change: max_num_seqs {slots})"),
        ])
        .args(["--conditions".as_ref(), file("conditions.json").as_os_str()])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(slos.iter().flat_map(|slo| ["--sla", slo]))
        .args(["--out-dir".as_ref(), dir.as_os_str()]);
    perf::run_report(&mut cmd)
}

fn write_conditions(
    dir: &Path,
    slots: u32,
    why: &str,
    phases: serde_json::Map<String, serde_json::Value>,
) -> Result<(), TaskError> {
    let conditions = serde_json::json!({
        "scenario": "llm",
        "target": "simulator",
        "server": format!("stub-server --profile {PROFILE} (OpenAI-compatible routes, continuous batching, {PROFILE_SLOTS} sequence slots, steps of 6 ms + 0.4 ms per running sequence)"),
        "server_change": format!("--max-num-seqs {slots}"),
        "server_change_reason": why,
        "fresh_server_per_phase": true,
        "requests": 400,
        "concurrency": 20,
        "timeout_s": 30,
        "api": "openai-chat, streamed (stream_options.include_usage)",
        "payloads": "input.py build_payload(i), i = 0..399, as one user message each",
        "before_client": "loadgen --profile baseline --api openai-chat (a new connection per request)",
        "after_client": "loadgen --profile baseline --api openai-chat (unchanged)",
        "quantile_method": "linear",
    });
    perf::write_conditions_file(dir, conditions, phases)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn summary_file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "xtask-llm-summary-{name}-{}.json",
            std::process::id()
        ));
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_slots_are_the_streams_in_flight_and_the_reason_quotes_the_numbers() {
        let path = summary_file(
            "ok",
            r#"{"concurrency": 20, "llm": {"ttft": {"p50_ms": 700.0, "p95_ms": 1400.0},
                "itl": {"p50_ms": 10.0, "p95_ms": 11.0}}}"#,
        );
        let (slots, why) = chosen_slots(&path).unwrap();
        assert_eq!(slots, 20);
        assert!(why.contains("are 70 and 140 decode steps"), "{why}");
        assert!(why.contains("20 streams were in flight"), "{why}");
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_run_without_tokens_is_an_error_naming_the_file() {
        let path = summary_file(
            "none",
            r#"{"concurrency": 20, "llm": {"ttft": {"p50_ms": null, "p95_ms": null},
                "itl": {"p50_ms": null, "p95_ms": null}}}"#,
        );
        let err = chosen_slots(&path).unwrap_err().to_string();
        assert!(err.contains("measured no TTFT"), "{err}");
        let _ = fs::remove_file(&path);
    }
}
