//! The streaming bench (`cargo xtask bench --llm-only`): 1,000 concurrent
//! streams of 256 tokens at a 20 ms inter-token schedule, `loadgen --api
//! openai-chat` against the simulator's LLM routes.
//!
//! The server: one step loop with 1,000 slots, every step 20 ms whatever
//! runs (`--step-base-ms 20 --step-per-seq-ms 0`, no prefill cost), each
//! answer forced to 256 tokens (`ignore_eos` with `max_tokens 256`, still
//! verified token for token). Every running stream gets one token per step,
//! so the schedule is 20 ms between tokens; the bar is the measured ITL P99
//! within 2 ms of it. What the client spends is `getrusage` of the reaped
//! loadgen over the tokens it received: CPU per token.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::summary::RunSummary;
use serde_json::json;

use super::accounting::{process_tree_cpu_s, ClientCpu};
use super::bars::{bar, Bar};
use super::pinning::Pinning;
use super::{Bins, TaskError};
use crate::process::{self, ServerProcess};

/// Streams at once.
pub(super) const STREAMS: usize = 1000;
/// Tokens per stream.
pub(super) const TOKENS: u32 = 256;
/// The server's step, so the schedule between tokens, ms.
pub(super) const STEP_MS: f64 = 20.0;
/// How far the measured ITL P99 may be from the schedule, ms.
pub(super) const ITL_P99_SLACK_MS: f64 = 2.0;

/// Runs the streaming bench; returns its record and its bar.
pub(super) fn measure(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
) -> Result<(serde_json::Value, Bar), TaskError> {
    println!(
        "LLM streams: {STREAMS} concurrent streams of {TOKENS} tokens, a step every {STEP_MS} ms"
    );
    pin.as_server();
    let server_args: Vec<String> = [
        "--max-num-seqs=1000",
        "--step-base-ms=20",
        "--step-per-seq-ms=0",
        "--prefill-per-token-ms=0",
        "--max-batched-tokens=1048576",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let server = ServerProcess::start(&bins.server, &server_args, &dir.join("llm-server.log"))?;
    pin.release();
    let server_cpu_before = process_tree_cpu_s(server.pid());
    let json_path = dir.join("llm-loadgen.json");
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args([
        "--url",
        &server.base_url,
        "--api",
        "openai-chat",
        "--verify",
    ])
    .args(["-c", &STREAMS.to_string(), "-n", &STREAMS.to_string()])
    .args(["--max-tokens", &TOKENS.to_string()])
    .args(["--extra-body", r#"{"ignore_eos": true}"#])
    .args(["--timeout", "60s", "--quiet"])
    .args(["--json".as_ref(), json_path.as_os_str()])
    .args(["--out".as_ref(), dir.join("llm-loadgen.csv").as_os_str()])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let command = super::clients::describe(&cmd);
    pin.as_client();
    let before = ClientCpu::of_reaped_children();
    let started = Instant::now();
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(300));
    let wall_s = started.elapsed().as_secs_f64();
    let cpu = ClientCpu::of_reaped_children().since(before);
    pin.release();
    let server_cpu_s = match (server_cpu_before, process_tree_cpu_s(server.pid())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    drop(server);
    let status = status?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(TaskError::Step(format!(
            "`{command}` could not run ({status})"
        )));
    }
    let summary: RunSummary = crate::json::read_contract(&json_path)?;
    let Some(llm) = &summary.llm else {
        return Err(TaskError::Step(format!(
            "{}: `llm` is null: no stream succeeded, so there is no ITL to bench",
            json_path.display()
        )));
    };
    let client_cpu_s = cpu.user_s + cpu.system_s;
    let tokens = llm.output_tokens.max(1);
    let cpu_us_per_token = client_cpu_s * 1e6 / tokens as f64;
    let itl_p99 = llm.itl.p99_ms;
    println!(
        "  {} streams ok, {} failed; ITL P50 {:?} ms, P99 {:?} ms; TTFT P99 {:?} ms; loadgen {client_cpu_s:.2} CPU s for {tokens} tokens = {cpu_us_per_token:.2} us/token",
        summary.succeeded, summary.failed, llm.itl.p50_ms, itl_p99, llm.ttft.p99_ms
    );
    let within =
        itl_p99.is_some_and(|p99| (p99 - STEP_MS).abs() <= ITL_P99_SLACK_MS) && summary.failed == 0;
    let verdict = bar(
        "llm_itl_p99_within_2ms_of_schedule",
        Some(within),
        format!(
            "ITL P99 {} ms against a {STEP_MS} ms schedule (bar: within {ITL_P99_SLACK_MS} ms), {} of {STREAMS} streams failed",
            itl_p99.map_or("n/a".to_owned(), |v| format!("{v:.3}")),
            summary.failed
        ),
    );
    let record = json!({
        "command": command,
        "server": format!("stub-server {}", server_args.join(" ")),
        "streams": STREAMS,
        "tokens_per_stream": TOKENS,
        "schedule_ms": STEP_MS,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "duration_s": summary.duration_s,
        "wall_s": wall_s,
        "itl": llm.itl,
        "ttft": llm.ttft,
        "output_tokens": llm.output_tokens,
        "client_cpu": cpu,
        "client_cpu_us_per_token": cpu_us_per_token,
        "server_cpu_s": server_cpu_s,
    });
    Ok((record, verdict))
}
