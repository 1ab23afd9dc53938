//! The workload bench (`cargo xtask bench --workload-only`): what loadgen's
//! LLM workloads cost it, each a `loadgen` process timed with its peak
//! memory (`wait4`'s `ru_maxrss`).
//!
//! - Prompts: 100,000 prompts of exactly 1,000 tokens under a tokenizer
//!   (`xtask/tools/make_bpe_tokenizer.py`, a byte-level BPE), built and
//!   written by `--dry-run`.
//! - Trace reading: a 1,000,000-row Mooncake trace, checked whole and then
//!   streamed into requests by `--dry-run` (short prompts, so reading
//!   dominates); and the same with `--trace-sort`, which holds the rows, for
//!   the memory a held trace takes.
//! - Replay: a trace of 20,000 rows at 2,000 requests/s against the
//!   simulator's OpenAI route at no cost (no step, prefill or per-sequence
//!   time), and its send lateness, the summary's schedule adherence.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::summary::RunSummary;
use serde_json::json;

use super::bars::{bar, Bar};
use super::pinning::Pinning;
use super::{Bins, TaskError};
use crate::process::ServerProcess;
use crate::workspace;

/// Prompts built in the prompt bench, and their length in tokens.
const PROMPTS: u64 = 100_000;
const PROMPT_TOKENS: u32 = 1000;
/// Rows of the trace-reading bench.
const TRACE_ROWS: u64 = 1_000_000;
/// The replay: rows and their rate.
const REPLAY_ROWS: u64 = 20_000;
const REPLAY_RATE_RPS: u64 = 2000;
/// The bar on the replay's send lateness P99, ms.
const REPLAY_LAG_P99_MS: f64 = 5.0;

/// One timed process: its wall time, peak memory and exit.
#[derive(Debug, Clone, serde::Serialize)]
struct Timed {
    command: String,
    wall_s: f64,
    max_rss_mib: f64,
    exit_code: Option<i32>,
}

/// Runs `cmd` to its end (or `limit`), timing it and taking its peak
/// resident memory from `wait4`, which reaps exactly this child.
fn timed(cmd: &mut Command, limit: Duration) -> Result<Timed, TaskError> {
    let command = super::clients::describe(cmd);
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| TaskError::Step(format!("cannot start `{command}`: {e}")))?;
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| TaskError::Step(format!("`{command}`: a pid out of range")))?;
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes into the zeroed struct and the int we own.
        let (reaped, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let reaped = libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage);
            (reaped, usage)
        };
        if reaped == pid {
            let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return Ok(Timed {
                command,
                wall_s: started.elapsed().as_secs_f64(),
                // Linux reports kilobytes.
                max_rss_mib: usage.ru_maxrss as f64 / 1024.0,
                exit_code,
            });
        }
        if reaped < 0 {
            return Err(TaskError::Step(format!("`{command}`: wait4 failed")));
        }
        if started.elapsed() > limit {
            // SAFETY: the child is ours and not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(TaskError::Step(format!(
                "`{command}` ran past {limit:?}; stopped"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
    move |source| TaskError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A Mooncake trace of `rows` rows `gap_ms` apart, short prompts whose
/// first hash id is shared by a tenth of the rows.
fn write_trace(path: &Path, rows: u64, gap_ms: f64) -> Result<(), TaskError> {
    let mut text = String::with_capacity(usize::try_from(rows).unwrap_or(0) * 96);
    for k in 0..rows {
        let _ = writeln!(
            text,
            "{{\"timestamp\": {:.3}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": [{}, {}]}}",
            k as f64 * gap_ms,
            16 + k % 48,
            1 + k % 2,
            k % 10,
            1000 + k
        );
    }
    fs::write(path, text).map_err(io_error(path))
}

/// Runs the workload bench; returns its record and its bar.
pub(super) fn measure(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
) -> Result<(serde_json::Value, Bar), TaskError> {
    let root = workspace::root()?;
    let python = root.join(".venv-tools/bin/python");
    pin.as_client();

    // Prompts of 1,000 tokens under a tokenizer.
    let prompts = if python.exists() {
        let tokenizer = dir.join("workload-tokenizer.json");
        let made = Command::new(&python)
            .arg(root.join("xtask/tools/make_bpe_tokenizer.py"))
            .arg(&tokenizer)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| TaskError::Step(format!("make_bpe_tokenizer.py: {e}")))?;
        if !made.success() {
            return Err(TaskError::Step("make_bpe_tokenizer.py failed".into()));
        }
        let out = dir.join("workload-prompts.jsonl");
        println!("workload: {PROMPTS} prompts of {PROMPT_TOKENS} tokens (--dry-run)");
        let run = timed(
            Command::new(&bins.loadgen)
                .args(["--api", "openai-completions", "--tokenizer"])
                .arg(&tokenizer)
                .args(["--input-tokens", &PROMPT_TOKENS.to_string()])
                .args(["--output-tokens", "16", "-n", &PROMPTS.to_string(), "-q"])
                .arg("--dry-run")
                .arg(&out),
            Duration::from_secs(600),
        )?;
        let bytes = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = fs::remove_file(&out);
        println!(
            "  {:.2} s, peak {:.1} MiB, {:.1} MB written",
            run.wall_s,
            run.max_rss_mib,
            bytes as f64 / 1e6
        );
        json!({"prompts": PROMPTS, "tokens_each": PROMPT_TOKENS, "run": run, "bytes_written": bytes,
               "prompts_per_s": PROMPTS as f64 / run.wall_s})
    } else {
        json!({"missing": format!("{} (run xtask/tools/setup.sh): no tokenizer to build prompts with", python.display())})
    };

    // A 1,000,000-row trace, streamed and held.
    let trace = dir.join("workload-trace.jsonl");
    write_trace(&trace, TRACE_ROWS, 1.0)?;
    let mut reading = Vec::new();
    for sort in [false, true] {
        let out = dir.join("workload-trace-dry.jsonl");
        println!(
            "workload: reading a {TRACE_ROWS}-row Mooncake trace{}",
            if sort { " with --trace-sort" } else { "" }
        );
        let mut cmd = Command::new(&bins.loadgen);
        cmd.args(["--api", "openai-completions", "-q", "--trace"])
            .arg(&trace)
            .arg("--dry-run")
            .arg(&out);
        if sort {
            cmd.arg("--trace-sort");
        }
        let run = timed(&mut cmd, Duration::from_secs(600))?;
        let _ = fs::remove_file(&out);
        println!("  {:.2} s, peak {:.1} MiB", run.wall_s, run.max_rss_mib);
        reading.push(json!({"sort": sort, "rows": TRACE_ROWS, "run": run,
                            "rows_per_s": TRACE_ROWS as f64 / run.wall_s}));
    }
    let _ = fs::remove_file(&trace);
    pin.release();

    // Replay at 2,000 requests/s against the simulator at no cost.
    let replay_trace = dir.join("workload-replay.jsonl");
    write_trace(&replay_trace, REPLAY_ROWS, 1000.0 / REPLAY_RATE_RPS as f64)?;
    pin.as_server();
    let server_args: Vec<String> = [
        "--max-num-seqs=4096",
        "--step-base-ms=0",
        "--step-per-seq-ms=0",
        "--prefill-per-token-ms=0",
        "--max-batched-tokens=1048576",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let server =
        ServerProcess::start(&bins.server, &server_args, &dir.join("workload-server.log"))?;
    pin.release();
    let json_path = dir.join("workload-replay.json");
    println!("workload: replaying {REPLAY_ROWS} rows at {REPLAY_RATE_RPS} requests/s");
    pin.as_client();
    let run = timed(
        Command::new(&bins.loadgen)
            .args([
                "--url",
                &server.base_url,
                "--api",
                "openai-completions",
                "-q",
            ])
            .arg("--trace")
            .arg(&replay_trace)
            .args(["--timeout", "30s", "--json"])
            .arg(&json_path),
        Duration::from_secs(300),
    );
    pin.release();
    drop(server);
    let run = run?;
    let summary: RunSummary = crate::json::read_contract(&json_path)?;
    let lag = summary.send_lag.clone().unwrap_or_default();
    println!(
        "  {} ok, {} failed; send lateness P50 {:?} ms, P99 {:?} ms, max {:?} ms; {} late, {} dropped",
        summary.succeeded,
        summary.failed,
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms,
        summary.late_sends.unwrap_or(0),
        summary.dropped.unwrap_or(0)
    );
    let within = lag.p99_ms.is_some_and(|p| p <= REPLAY_LAG_P99_MS) && summary.failed == 0;
    let verdict = bar(
        "workload_replay_2000rps_send_lag_p99_under_5ms",
        Some(within),
        format!(
            "send lateness P99 {} ms replaying {REPLAY_ROWS} rows at {REPLAY_RATE_RPS}/s (bar: at most {REPLAY_LAG_P99_MS} ms), {} failed",
            lag.p99_ms.map_or("n/a".to_owned(), |v| format!("{v:.3}")),
            summary.failed
        ),
    );
    let record = json!({
        "prompts": prompts,
        "trace_reading": reading,
        "replay": {
            "rows": REPLAY_ROWS,
            "rate_rps": REPLAY_RATE_RPS,
            "server": format!("stub-server {}", server_args.join(" ")),
            "run": run,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "achieved_rate_rps": summary.achieved_rate_rps,
            "late_sends": summary.late_sends,
            "dropped": summary.dropped,
            "send_lag": lag,
            "rate_warning": summary.rate_warning,
        },
    });
    let _ = fs::remove_file(&replay_trace);
    Ok((record, verdict))
}
