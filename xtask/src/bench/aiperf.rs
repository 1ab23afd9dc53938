//! loadgen beside aiperf (`cargo xtask bench --aiperf-only`): the same
//! stub-server (OpenAI chat, streamed, `--sse-stamps`, a step per token of
//! `--aiperf-itl-ms`, 20 ms by default, no prefill cost), the same prompt
//! length under the same locally made tokenizer, the same answer length
//! (256 tokens, `ignore_eos`) and concurrency (10, 100, 1,000 by default),
//! one tool at a time on the client's CPUs and a fresh server each run.
//!
//! CPU per token compares only between readers that keep up: one that
//! falls behind the server finds several events at each read and spends
//! less per token than keeping up costs. The table says per level whether
//! aiperf kept up (its ITL P50 within 10% of the server's stamped gaps);
//! where it did not, a longer time between tokens measures both keeping up.
//!
//! aiperf comes from its own venv (`xtask/tools/aiperf-setup.sh` makes
//! `.venv-aiperf`); without it the bench records why and measures loadgen
//! alone. aiperf is only ever given `http://127.0.0.1:PORT`.
//!
//! Client CPU: aiperf is a tree of Python processes (a controller,
//! services, workers) that takes tens of seconds to start, so its CPU is
//! read from `/proc` of the whole tree every 100 ms and counted over the
//! requests' own window (the first request's start to the last one's end,
//! from its `profile_export.jsonl`) as well as in total. loadgen's is
//! read the same way over its own requests' window (from its `--out` log:
//! the first intended start to the last answer's end; the log's writer
//! runs in that window too) and in total (`wait4`). Each per 1,000 tokens
//! the server reported (`usage.completion_tokens`, which aiperf counts
//! with `--use-server-token-count`).
//!
//! What each tool calls TTFT and ITL: loadgen's TTFT runs from the
//! request's start to the first non-empty content delta and its ITL is
//! every gap between content deltas; aiperf's TTFT is from its request
//! start to the first response chunk with content, and its ITL is one value
//! per request, (latency - TTFT) / (tokens - 1). The server's stamps
//! (`: t=<ns>`) say when each token was written: their gaps are the
//! schedule as the server kept it, and loadgen's client delay is its own
//! share of every token's time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::summary::{Percentiles, RunSummary};
use serde_json::{json, Value};

use super::accounting::descendants_cpu_s;
use super::pinning::Pinning;
use super::{Bins, TaskError};
use crate::process::{self, ServerProcess};

/// Concurrency levels, by default.
pub(super) const DEFAULT_LEVELS: &str = "10,100,1000";
/// The server's time between tokens, ms, by default: the client-delay
/// bench's schedule.
pub(super) const DEFAULT_ITL_MS: u32 = 20;

/// [`DEFAULT_LEVELS`], parsed.
pub(super) fn default_levels() -> Vec<usize> {
    DEFAULT_LEVELS
        .split(',')
        .filter_map(|level| level.parse().ok())
        .collect()
}
/// The most concurrency one level may ask for.
pub(super) const MAX_LEVEL: usize = 10_000;
/// aiperf's version, as `aiperf-setup.sh` pins it.
pub(super) const AIPERF_VERSION: &str = "0.13.0";
/// Prompt length, tokens under the bench's tokenizer.
const INPUT_TOKENS: u32 = 100;
/// Answer length, tokens.
const OUTPUT_TOKENS: u32 = 256;
/// How long one tool's run may take beyond its answers' time: start-up
/// (aiperf takes tens of seconds) and the late readers' lag.
const RUN_MARGIN: Duration = Duration::from_secs(180);

/// Parses `--aiperf-concurrency`: comma-separated levels.
pub(super) fn parse_levels(text: &str) -> Result<Vec<usize>, String> {
    let allowed = format!(
        "a comma-separated list of concurrency levels, each 1 to {MAX_LEVEL}, at most 4 (e.g. {DEFAULT_LEVELS})"
    );
    super::count_list(
        "--aiperf-concurrency",
        text,
        MAX_LEVEL,
        &allowed,
        &format!("too many; {allowed}"),
    )
}

/// Requests at `concurrency`: two waves at low concurrency, one at 1,000
/// and more, so a level takes about two answers' time (10 s) at most.
fn requests_at(concurrency: usize) -> usize {
    concurrency.max((2 * concurrency).min(200))
}

/// One tool's run at one level.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct ToolRun {
    tool: &'static str,
    concurrency: usize,
    requests: usize,
    succeeded: u64,
    failed: u64,
    /// Output tokens, as the server counted them.
    tokens: u64,
    /// All the client's CPU, start-up included, s.
    cpu_total_s: Option<f64>,
    /// The client's CPU over its requests' window, s.
    cpu_window_s: Option<f64>,
    ttft_p50_ms: Option<f64>,
    ttft_p99_ms: Option<f64>,
    itl_p50_ms: Option<f64>,
    itl_p99_ms: Option<f64>,
    /// loadgen only: from the server's stamps.
    client_delay: Option<Percentiles>,
    server_itl: Option<Percentiles>,
    command: String,
    error: Option<String>,
}

impl ToolRun {
    /// CPU ms per 1,000 tokens: over the window where known, else total.
    fn cpu_ms_per_1000_tokens(&self) -> Option<f64> {
        let cpu = self.cpu_window_s.or(self.cpu_total_s)?;
        (self.tokens > 0).then(|| cpu * 1e6 / self.tokens as f64)
    }
}

/// The bench: each level, loadgen then aiperf; returns the record and a
/// markdown table with the disagreements explained.
pub(super) fn measure(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    levels: &[usize],
    itl_ms: u32,
    venv: &Path,
    tokenizer: Option<&Path>,
) -> Result<(Value, String), TaskError> {
    let aiperf = venv.join("bin/aiperf");
    let missing = (!aiperf.is_file()).then(|| {
        format!(
            "{} not found: run xtask/tools/aiperf-setup.sh (PyPI aiperf=={AIPERF_VERSION} into its own venv)",
            aiperf.display()
        )
    });
    if let Some(why) = &missing {
        println!("aiperf: {why}; measuring loadgen alone");
    }
    if let Some(given) = tokenizer.filter(|t| !t.join("tokenizer.json").is_file()) {
        return Err(TaskError::BadFlag(format!(
            "--aiperf-tokenizer {}: no tokenizer.json there (allowed: a directory with tokenizer.json and tokenizer_config.json)",
            given.display()
        )));
    }
    let tokenizer = match (tokenizer, &missing) {
        (Some(given), _) => Some(given.to_owned()),
        (None, None) => Some(make_tokenizer(venv, dir)?),
        // Without aiperf's venv there is no `tokenizers` to make one:
        // loadgen's prompts are then its own common words.
        (None, Some(_)) => None,
    };
    let mut runs = Vec::new();
    for &c in levels {
        let server = Schedule {
            concurrency: c,
            itl_ms,
        };
        runs.push(run_loadgen(bins, pin, dir, server, tokenizer.as_deref())?);
        if missing.is_none() {
            if let Some(tokenizer) = &tokenizer {
                runs.push(run_aiperf(bins, pin, dir, server, &aiperf, tokenizer)?);
            }
        }
    }
    let table = table(&runs, pin, itl_ms, missing.as_deref());
    let record = json!({
        "aiperf_version": AIPERF_VERSION,
        "aiperf_missing": missing,
        "input_tokens": INPUT_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "schedule_ms": f64::from(itl_ms),
        "runs": runs,
        "table": table,
    });
    Ok((record, table))
}

/// A byte-level BPE tokenizer made here (`make_bpe_tokenizer.py`, with the
/// venv's `tokenizers`), as a directory aiperf's Hugging Face loader reads
/// and a `tokenizer.json` loadgen reads.
fn make_tokenizer(venv: &Path, dir: &Path) -> Result<PathBuf, TaskError> {
    let out = dir.join("aiperf-tokenizer");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TaskError::Io { path, source }
    };
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let script = crate::workspace::root()?.join("xtask/tools/make_bpe_tokenizer.py");
    let json_path = out.join("tokenizer.json");
    let status = Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(&json_path)
        .stdout(Stdio::null())
        .status()
        .map_err(io(&script))?;
    if !status.success() {
        return Err(TaskError::Step(format!(
            "{} could not write {} ({status})",
            script.display(),
            json_path.display()
        )));
    }
    let config = out.join("tokenizer_config.json");
    std::fs::write(
        &config,
        r#"{"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1000000}"#,
    )
    .map_err(io(&config))?;
    Ok(out)
}

/// A fresh stub-server on the server's CPUs for `concurrency` streams.
/// What the server of one level does: as many slots as streams, and a
/// token every `itl_ms`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    concurrency: usize,
    itl_ms: u32,
}

impl Schedule {
    /// One answer's time at the server's pace.
    fn answer(self) -> Duration {
        Duration::from_millis(u64::from(OUTPUT_TOKENS) * u64::from(self.itl_ms))
    }

    /// Each request's time limit, for both tools: an answer and a minute.
    fn request_timeout_s(self) -> u64 {
        self.answer().as_secs() + 60
    }

    /// How long one tool's run may take: its waves of answers (two at
    /// most, see [`requests_at`]) and a margin.
    fn run_limit(self) -> Duration {
        2 * self.answer() + RUN_MARGIN
    }
}

fn server(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    name: &str,
    schedule: Schedule,
) -> Result<ServerProcess, TaskError> {
    let args: Vec<String> = vec![
        format!("--max-num-seqs={}", schedule.concurrency.max(1)),
        format!("--step-base-ms={}", schedule.itl_ms),
        "--step-per-seq-ms=0".into(),
        "--prefill-per-token-ms=0".into(),
        "--max-batched-tokens=1048576".into(),
        "--sse-stamps".into(),
    ];
    pin.as_server();
    let server = ServerProcess::start(&bins.server, &args, &dir.join(format!("{name}-server.log")));
    pin.release();
    Ok(server?)
}

fn run_loadgen(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    schedule: Schedule,
    tokenizer: Option<&Path>,
) -> Result<ToolRun, TaskError> {
    let c = schedule.concurrency;
    let requests = requests_at(c);
    println!("side by side: loadgen, concurrency {c}, {requests} requests");
    let server = server(bins, pin, dir, &format!("side-loadgen-{c}"), schedule)?;
    let json_path = dir.join(format!("side-loadgen-{c}.json"));
    let log_path = dir.join(format!("side-loadgen-{c}.csv"));
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["--url", &server.base_url, "--api", "openai-chat"])
        .args(["-c", &c.to_string(), "-n", &requests.to_string()])
        .args(["--max-tokens", &OUTPUT_TOKENS.to_string()])
        .args(["--extra-body", r#"{"ignore_eos": true}"#])
        .args([
            "--timeout",
            &format!("{}s", schedule.request_timeout_s()),
            "--quiet",
        ])
        .args(["--json".as_ref(), json_path.as_os_str()])
        .args(["--out".as_ref(), log_path.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(tokenizer) = tokenizer {
        cmd.arg("--tokenizer")
            .arg(tokenizer.join("tokenizer.json"))
            .args(["--input-tokens", &INPUT_TOKENS.to_string()]);
    }
    let command = format!("{}{}", pin.prefix(true), super::clients::describe(&cmd));
    pin.as_client();
    let child = process::spawn_child(&mut cmd);
    pin.release();
    let mut child = child?;
    let samples = Sampler::start(child.id());
    let waited = process::wait_with_usage(&mut child, "loadgen", schedule.run_limit());
    let mut samples = samples.stop();
    let (status, usage) = waited?;
    drop(server);
    // The exit's exact total closes the samples.
    if let Some(now) = unix_ns() {
        samples.push((now, usage.user_s + usage.system_s));
    }
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(TaskError::Step(format!(
            "`{command}` could not run ({status})"
        )));
    }
    let summary: RunSummary = crate::json::read_contract(&json_path)?;
    let llm = summary.llm.as_ref();
    Ok(ToolRun {
        tool: "loadgen",
        concurrency: c,
        requests,
        succeeded: summary.succeeded,
        failed: summary.failed,
        tokens: llm.map_or(0, |l| l.output_tokens),
        cpu_total_s: Some(usage.user_s + usage.system_s),
        cpu_window_s: log_window(&log_path)
            .and_then(|(first_ns, last_ns)| cpu_between(&samples, first_ns, last_ns)),
        ttft_p50_ms: llm.and_then(|l| l.ttft.p50_ms),
        ttft_p99_ms: llm.and_then(|l| l.ttft.p99_ms),
        itl_p50_ms: llm.and_then(|l| l.itl.p50_ms),
        itl_p99_ms: llm.and_then(|l| l.itl.p99_ms),
        client_delay: llm.and_then(|l| l.client_delay.clone()),
        server_itl: llm.and_then(|l| l.server_itl.clone()),
        command,
        error: None,
    })
}

fn run_aiperf(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    schedule: Schedule,
    aiperf: &Path,
    tokenizer: &Path,
) -> Result<ToolRun, TaskError> {
    let c = schedule.concurrency;
    let requests = requests_at(c);
    println!(
        "side by side: aiperf, concurrency {c}, {requests} requests (tens of seconds to start)"
    );
    let server = server(bins, pin, dir, &format!("side-aiperf-{c}"), schedule)?;
    // Only ever the loopback server just started.
    let url = server.base_url.clone();
    if !url.starts_with("http://127.0.0.1:") {
        return Err(TaskError::Step(format!(
            "refusing to point aiperf at {url}"
        )));
    }
    let artifacts = dir.join(format!("side-aiperf-{c}"));
    let _ = std::fs::remove_dir_all(&artifacts);
    let log = dir.join(format!("side-aiperf-{c}.log"));
    let log_file = std::fs::File::create(&log).map_err(|source| TaskError::Io {
        path: log.clone(),
        source,
    })?;
    let log_err = log_file.try_clone().map_err(|source| TaskError::Io {
        path: log.clone(),
        source,
    })?;
    let mut cmd = Command::new(aiperf);
    cmd.arg("profile")
        .args(["--model", "example-model", "--url", &url])
        .args(["--endpoint-type", "chat", "--streaming"])
        .arg("--tokenizer")
        .arg(tokenizer)
        .args(["--concurrency", &c.to_string()])
        .args(["--request-count", &requests.to_string()])
        .args(["--isl", &INPUT_TOKENS.to_string(), "--isl-stddev", "0"])
        .args(["--osl", &OUTPUT_TOKENS.to_string()])
        .args(["--use-legacy-max-tokens", "--use-server-token-count"])
        .args(["--extra-inputs", "ignore_eos:true"])
        .args([
            "--request-timeout-seconds",
            &schedule.request_timeout_s().to_string(),
        ])
        .arg("--no-auto-plot")
        .arg("--output-artifact-dir")
        .arg(&artifacts)
        // A local tokenizer directory is loaded as a path, with no Hub
        // query (aiperf 0.13.0 asks the Hub only of names that are not
        // paths). `HF_HUB_OFFLINE` is not set: under it that version looks
        // every name up in the Hub's cache, a path included, and fails.
        // Nothing else (OTel, MLflow, W&B) is configured, so nothing leaves
        // the machine.
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let command = format!("{}{}", pin.prefix(true), super::clients::describe(&cmd));
    pin.as_client();
    let child = process::spawn_child(&mut cmd);
    pin.release();
    let mut child = child?;
    let samples = Sampler::start(child.id());
    let waited = process::wait_with_usage(&mut child, "aiperf", schedule.run_limit());
    let samples = samples.stop();
    drop(server);
    let (status, usage) = waited?;
    let mut run = ToolRun {
        tool: "aiperf",
        concurrency: c,
        requests,
        cpu_total_s: Some(usage.user_s + usage.system_s),
        command,
        ..ToolRun::default()
    };
    if !status.success() {
        run.error = Some(format!(
            "aiperf exited with {status}; see {}",
            log.display()
        ));
        return Ok(run);
    }
    let export = artifacts.join("profile_export_aiperf.json");
    let summary: Value = crate::json::read(&export)?;
    let stat = |metric: &str, key: &str| summary[metric][key].as_f64();
    run.ttft_p50_ms = stat("time_to_first_token", "p50");
    run.ttft_p99_ms = stat("time_to_first_token", "p99");
    run.itl_p50_ms = stat("inter_token_latency", "p50");
    run.itl_p99_ms = stat("inter_token_latency", "p99");
    run.succeeded = summary["request_count"]["avg"].as_f64().unwrap_or(0.0) as u64;
    run.failed = requests as u64 - run.succeeded.min(requests as u64);
    run.tokens = stat("total_usage_completion_tokens", "avg")
        .or_else(|| stat("total_osl", "avg"))
        .unwrap_or(0.0) as u64;
    if let Some((first_ns, last_ns)) = request_window(&artifacts.join("profile_export.jsonl")) {
        run.cpu_window_s = cpu_between(&samples, first_ns, last_ns);
    }
    Ok(run)
}

/// The first request's start and the last one's end, Unix ns, from
/// aiperf's per-request records.
fn request_window(jsonl: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(jsonl).ok()?;
    let mut window: Option<(u64, u64)> = None;
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let meta = &record["metadata"];
        if let (Some(start), Some(end)) = (
            meta["request_start_ns"].as_u64(),
            meta["request_end_ns"].as_u64(),
        ) {
            window = Some(match window {
                Some((a, b)) => (a.min(start), b.max(end)),
                None => (start, end),
            });
        }
    }
    window
}

/// The first intended start and the last answer's end, Unix ns, from a
/// loadgen log.
fn log_window(csv: &Path) -> Option<(u64, u64)> {
    let rows = model::log::read_log_file(csv).ok()?.rows;
    let first_ms = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(f64::INFINITY, f64::min);
    let last_ms = rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let ns = |ms: f64| (ms.is_finite() && ms >= 0.0).then_some((ms * 1e6) as u64);
    Some((ns(first_ms)?, ns(last_ms)?))
}

/// The tree's CPU seconds between two wall-clock instants, interpolated
/// between the samples around each.
fn cpu_between(samples: &[(u64, f64)], from_ns: u64, to_ns: u64) -> Option<f64> {
    let at = |t: u64| -> Option<f64> {
        let after = samples.iter().position(|&(s, _)| s >= t)?;
        if after == 0 {
            return Some(samples[0].1);
        }
        let (t0, c0) = samples[after - 1];
        let (t1, c1) = samples[after];
        let share = (t - t0) as f64 / (t1 - t0).max(1) as f64;
        Some(c0 + share * (c1 - c0))
    };
    let end = at(to_ns).or_else(|| samples.last().map(|s| s.1))?;
    Some(end - at(from_ns)?)
}

/// Samples a process tree's CPU every 100 ms on a thread of its own.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u64, f64)>>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let (Some(now), Some(cpu)) = (unix_ns(), descendants_cpu_s(pid)) {
                    samples.push((now, cpu));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(u64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn unix_ns() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.2}"))
}

/// The runs as a markdown table, then each disagreement over 1 ms.
fn table(runs: &[ToolRun], pin: &Pinning, itl_ms: u32, missing: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Client CPUs {}, server CPUs {}{}; stub-server `--sse-stamps`, {itl_ms} ms per token, {INPUT_TOKENS}-token prompts, {OUTPUT_TOKENS}-token answers (`ignore_eos`).\n",
        super::pinning::cpu_list(&pin.client),
        super::pinning::cpu_list(&pin.server),
        if pin.used { " (pinned)" } else { " (not pinned)" }
    );
    if let Some(why) = missing {
        let _ = writeln!(out, "aiperf not measured: {why}\n");
    }
    let _ = writeln!(out, "| concurrency | tool | ok / failed | tokens | client CPU s (total) | CPU s (requests' window) | CPU ms / 1,000 tokens | TTFT P50 / P99 ms | ITL P50 / P99 ms | stamps: server ITL P50 / P99, client delay P50 / P99 ms |");
    let _ = writeln!(out, "|---:|---|---|---:|---:|---:|---:|---|---|---|");
    for run in runs {
        let stamps = match (&run.server_itl, &run.client_delay) {
            (Some(s), Some(d)) => format!(
                "{} / {}, {} / {}",
                ms(s.p50_ms),
                ms(s.p99_ms),
                format_args!("{:.3}", d.p50_ms.unwrap_or(f64::NAN)),
                format_args!("{:.3}", d.p99_ms.unwrap_or(f64::NAN))
            ),
            _ => "(not read)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
            run.concurrency,
            run.tool,
            run.succeeded,
            run.failed,
            run.tokens,
            ms(run.cpu_total_s),
            ms(run.cpu_window_s),
            ms(run.cpu_ms_per_1000_tokens()),
            ms(run.ttft_p50_ms),
            ms(run.ttft_p99_ms),
            ms(run.itl_p50_ms),
            ms(run.itl_p99_ms),
            match &run.error {
                Some(e) => e.clone(),
                None => stamps,
            }
        );
    }
    let cpu = cpu_ratios(runs);
    if !cpu.is_empty() {
        let _ = writeln!(
            out,
            "\nClient CPU per 1,000 tokens, loadgen against aiperf:\n"
        );
        for line in cpu {
            let _ = writeln!(out, "- {line}");
        }
    }
    let notes = disagreements(runs);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nWhere the two differ by more than 1 ms:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// Each loadgen run beside the aiperf run of its concurrency that
/// succeeded; levels without one are left out.
fn side_by_side(runs: &[ToolRun]) -> impl Iterator<Item = (&ToolRun, &ToolRun)> {
    runs.iter()
        .filter(|r| r.tool == "loadgen")
        .filter_map(|ours| {
            runs.iter()
                .find(|r| {
                    r.tool == "aiperf" && r.concurrency == ours.concurrency && r.error.is_none()
                })
                .map(|theirs| (ours, theirs))
        })
}

/// How far a reader's ITL P50 may sit above the server's stamped gaps and
/// still count as keeping up.
const KEPT_UP: f64 = 1.10;

/// One line per level: loadgen's CPU per 1,000 tokens against aiperf's
/// (over each tool's requests' window where known), and whether aiperf kept
/// up with the server. A reader that falls behind finds several events at
/// each read and spends less per token than one that reads each as it
/// comes, so its figure is then not what it costs to keep up.
fn cpu_ratios(runs: &[ToolRun]) -> Vec<String> {
    let mut lines = Vec::new();
    for (ours, theirs) in side_by_side(runs) {
        let (Some(a), Some(b)) = (
            ours.cpu_ms_per_1000_tokens(),
            theirs.cpu_ms_per_1000_tokens(),
        ) else {
            continue;
        };
        if a <= 0.0 {
            continue;
        }
        let mut line = format!(
            "c={}: loadgen {a:.2} ms, aiperf {b:.2} ms: 1/{:.2}",
            ours.concurrency,
            b / a
        );
        let server = ours.server_itl.as_ref().and_then(|s| s.p50_ms);
        match (theirs.itl_p50_ms, server) {
            (Some(read), Some(wrote)) if read > KEPT_UP * wrote => {
                let _ = write!(
                    line,
                    "; aiperf fell behind (its ITL P50 {read:.2} ms against the server's stamped {wrote:.2} ms), so it found several events at each read and its CPU per token is below what keeping up costs"
                );
            }
            (Some(read), Some(wrote)) => {
                let _ = write!(
                    line,
                    "; both kept up (aiperf's ITL P50 {read:.2} ms, the server's stamped {wrote:.2} ms)"
                );
            }
            _ => {}
        }
        lines.push(line);
    }
    lines
}

/// One line per level and metric where loadgen and aiperf differ by more
/// than 1 ms, with what the server's stamps say.
fn disagreements(runs: &[ToolRun]) -> Vec<String> {
    let mut notes = Vec::new();
    for (ours, theirs) in side_by_side(runs) {
        let c = ours.concurrency;
        let delay = ours.client_delay.as_ref();
        let server = ours.server_itl.as_ref();
        for (name, a, b) in [
            ("TTFT P50", ours.ttft_p50_ms, theirs.ttft_p50_ms),
            ("TTFT P99", ours.ttft_p99_ms, theirs.ttft_p99_ms),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                if (a - b).abs() > 1.0 {
                    notes.push(format!(
                        "c={c} {name}: loadgen {a:.2} ms, aiperf {b:.2} ms. stub-server sends no role-only delta, empty delta or `: ping` before the first token here (its first event is the first content token), so both count the same event; the stamps put loadgen's own share of it at P50 {} / P99 {} ms (client delay), so the rest of the difference is on aiperf's side (its request start to its read of that event){}.",
                        ms(delay.and_then(|d| d.p50_ms)),
                        ms(delay.and_then(|d| d.p99_ms)),
                        if b < a { "; aiperf lower: loadgen times from the intended start, before a connection is opened, aiperf from its own request start" } else { "" }
                    ));
                }
            }
        }
        for (name, a, b, s) in [
            (
                "ITL P50",
                ours.itl_p50_ms,
                theirs.itl_p50_ms,
                server.and_then(|s| s.p50_ms),
            ),
            (
                "ITL P99",
                ours.itl_p99_ms,
                theirs.itl_p99_ms,
                server.and_then(|s| s.p99_ms),
            ),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                if (a - b).abs() > 1.0 {
                    notes.push(format!(
                        "c={c} {name}: loadgen {a:.2} ms, aiperf {b:.2} ms, the server's own gaps between stamps {} ms. loadgen's ITL is every gap and aiperf's one mean per request ((latency - TTFT) / (tokens - 1)), so a stall shows in loadgen's P99 and is averaged away in aiperf's; the stamped gaps are what the server did, so the figure nearer them is right.",
                        ms(s)
                    ));
                }
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse_levels(DEFAULT_LEVELS).unwrap(), vec![10, 100, 1000]);
        for bad in ["", "0", "10001", "a", "1,2,3,4,5"] {
            let err = parse_levels(bad).unwrap_err();
            assert!(
                err.contains("--aiperf-concurrency") && err.contains("1 to 10000"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn the_cpu_ratio_says_whether_aiperf_kept_up() {
        let p50 = |ms: f64| Percentiles {
            p50_ms: Some(ms),
            ..Percentiles::default()
        };
        let run = |tool, c, cpu_window_s, itl_p50_ms| ToolRun {
            tool,
            concurrency: c,
            tokens: 256_000,
            cpu_window_s: Some(cpu_window_s),
            itl_p50_ms: Some(itl_p50_ms),
            ..ToolRun::default()
        };
        let runs = [
            ToolRun {
                server_itl: Some(p50(20.6)),
                ..run("loadgen", 1000, 2.56, 20.6)
            },
            // 50 us a token against 10: 1/5; read 30 ms apart: behind.
            run("aiperf", 1000, 12.8, 30.1),
            ToolRun {
                server_itl: Some(p50(100.0)),
                ..run("loadgen", 100, 2.56, 100.0)
            },
            run("aiperf", 100, 25.6, 100.2),
            // No aiperf run at this level: no line.
            run("loadgen", 10, 1.0, 20.0),
        ];
        let lines = cpu_ratios(&runs);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("c=1000: loadgen 10.00 ms, aiperf 50.00 ms: 1/5.00; aiperf fell behind (its ITL P50 30.10 ms against the server's stamped 20.60 ms)"), "{}", lines[0]);
        assert!(
            lines[1]
                .starts_with("c=100: loadgen 10.00 ms, aiperf 100.00 ms: 1/10.00; both kept up"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn cpu_is_interpolated_over_the_window() {
        let samples = [(0, 1.0), (100, 2.0), (200, 4.0)];
        assert_eq!(cpu_between(&samples, 50, 150), Some(3.0 - 1.5));
        // Past the last sample: up to it.
        assert_eq!(cpu_between(&samples, 100, 900), Some(2.0));
        assert_eq!(cpu_between(&[], 0, 1), None);
    }

    #[test]
    fn loadgens_window_runs_from_the_first_start_to_the_last_end() {
        let dir = std::env::temp_dir().join(format!("loadgen-window-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.csv");
        let row = |id: u64, at_ms: f64, latency_ms: f64| model::log::LogRow {
            request_id: id,
            timestamp_ms: at_ms,
            latency_ms,
            ..model::log::LogRow::default()
        };
        let mut writer = model::log::LogWriter::create(&path, false).unwrap();
        for r in [
            row(0, 1000.0, 50.0),
            row(1, 1010.0, 20.0),
            row(2, 1002.0, 80.0),
        ] {
            writer.write_row(&r).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        // From 1,000 ms to 1,082 ms, in ns.
        assert_eq!(log_window(&path), Some((1_000_000_000, 1_082_000_000)));
        assert_eq!(log_window(&dir.join("absent.csv")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_window_spans_every_request() {
        let dir = std::env::temp_dir().join(format!("aiperf-window-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("profile_export.jsonl");
        std::fs::write(
            &path,
            "{\"metadata\":{\"request_start_ns\":20,\"request_end_ns\":50}}\nnot json\n{\"metadata\":{\"request_start_ns\":10,\"request_end_ns\":40}}\n",
        )
        .unwrap();
        assert_eq!(request_window(&path), Some((10, 50)));
        assert_eq!(request_window(&dir.join("absent")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gap_over_a_millisecond_is_explained_and_a_small_one_not() {
        let base = ToolRun {
            concurrency: 10,
            ttft_p50_ms: Some(20.0),
            ttft_p99_ms: Some(21.0),
            itl_p50_ms: Some(20.0),
            itl_p99_ms: Some(25.0),
            ..ToolRun::default()
        };
        let ours = ToolRun {
            tool: "loadgen",
            ..base.clone()
        };
        let theirs = ToolRun {
            tool: "aiperf",
            ttft_p50_ms: Some(20.5),
            itl_p99_ms: Some(20.2),
            ..base
        };
        let notes = disagreements(&[ours, theirs]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("c=10 ITL P99"), "{notes:?}");
    }
}
