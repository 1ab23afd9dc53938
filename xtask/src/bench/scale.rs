//! The scale bench (`cargo xtask bench --scale-only`): 1,000 and 10,000
//! concurrent streams of 256 tokens at a 20 ms inter-token schedule,
//! `loadgen --api openai-chat` against stub-server's LLM routes with
//! `--sse-stamps`, client and server on disjoint CPUs; with
//! `--isolate-client`, the client's CPUs kept to loadgen for the runs (see
//! [`super::isolation`]).
//!
//! What it reports per run, from the client's own side:
//! - CPU: loadgen's user + system time from `wait4(2)` of the loadgen
//!   process alone, per 1,000 tokens received;
//! - memory: its peak resident set (`ru_maxrss`, `VmHWM` at exit) and that
//!   over the streams;
//! - timing error: the client delay (server's write stamp to loadgen's
//!   read) at P50/P99/max, and the server's own gaps between stamps, which
//!   show a server late against its 20 ms schedule (the step loop, or a
//!   VM stall that pauses both processes) apart from the client.
//!
//! The bars: at 1,000 streams, client delay P50 under 0.2 ms and P99
//! under 1 ms, judged on the median run when 1,000 streams run more than
//! once (the default runs them three times, then 10,000 once). The open-files limit: loadgen and stub-server each raise
//! their own to the hard limit; the bench says so when that is short.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::summary::{Percentiles, RunSummary};
use serde_json::json;

use super::accounting::process_tree_cpu_s;
use super::bars::{bar, Bar};
use super::isolation::{self, Isolation};
use super::pinning::Pinning;
use super::{Bins, TaskError};
use crate::process::{self, ServerProcess};

/// The most streams one run may ask for (the server's `--max-num-seqs`).
pub(super) const MAX_STREAMS: usize = 100_000;
/// Tokens per stream.
const TOKENS: u32 = 256;
/// The server's step, so the schedule between tokens, ms.
const STEP_MS: f64 = 20.0;
/// The bars on the client delay at 1,000 streams, ms.
const DELAY_P50_BAR_MS: f64 = 0.2;
const DELAY_P99_BAR_MS: f64 = 1.0;
/// The streams the bars apply to.
const BAR_STREAMS: usize = 1000;

/// Parses `--scale-streams`: a comma-separated list of stream counts.
pub(super) fn parse_streams(text: &str) -> Result<Vec<usize>, String> {
    let allowed = format!(
        "a comma-separated list of stream counts, each 1 to {MAX_STREAMS} (e.g. 1000,10000)"
    );
    super::count_list(
        "--scale-streams",
        text,
        MAX_STREAMS,
        &allowed,
        &format!("at most 4 runs, each {allowed}"),
    )
}

/// What one run measured.
struct Run {
    streams: usize,
    summary: RunSummary,
    usage: process::ChildUsage,
    wall_s: f64,
    server_cpu_s: Option<f64>,
    command: String,
}

impl Run {
    fn tokens(&self) -> u64 {
        self.summary.llm.as_ref().map_or(0, |l| l.output_tokens)
    }

    fn cpu_ms_per_1000_tokens(&self) -> Option<f64> {
        let tokens = self.tokens();
        (tokens > 0).then(|| (self.usage.user_s + self.usage.system_s) * 1e6 / tokens as f64)
    }

    fn rss_kib_per_stream(&self) -> f64 {
        self.usage.max_rss_kib as f64 / self.streams as f64
    }
}

/// Runs each count of `streams`; returns the record, the bars and a
/// markdown table of the runs.
pub(super) fn measure(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    streams: &[usize],
    isolate: bool,
) -> Result<(serde_json::Value, Vec<Bar>, String), TaskError> {
    report_open_files(streams);
    let isolation = if isolate {
        if !pin.used {
            return Err(TaskError::BadFlag(
                "--isolate-client needs client and server on different CPUs: at least 2 CPUs, and not --no-pin".into(),
            ));
        }
        Some(Isolation::start(&pin.client, &pin.server))
    } else {
        None
    };
    let mut runs = Vec::new();
    for (k, &n) in streams.iter().enumerate() {
        // A count given more than once runs again, into files of its own.
        let round = streams[..k].iter().filter(|&&m| m == n).count() + 1;
        runs.push(run_one(bins, pin, dir, n, round, isolation.as_ref())?);
    }
    let moved = isolation.as_ref().map(|i| (i.moved, i.stayed));
    // Every thread gets its CPUs back before the results are written.
    drop(isolation);
    let bars = bars(&runs);
    let table = table(&runs, pin, moved);
    let record = json!({
        "tokens_per_stream": TOKENS,
        "schedule_ms": STEP_MS,
        "client_isolated": moved.map(|(moved, stayed)| json!({
            "threads_moved": moved,
            "threads_that_could_not_move": stayed,
            "client_policy": format!("SCHED_FIFO {}", isolation::CLIENT_FIFO_PRIORITY),
        })),
        "runs": runs.iter().map(|r| json!({
            "streams": r.streams,
            "command": r.command,
            "succeeded": r.summary.succeeded,
            "failed": r.summary.failed,
            "errors": r.summary.errors,
            "duration_s": r.summary.duration_s,
            "wall_s": r.wall_s,
            "output_tokens": r.tokens(),
            "client_cpu": r.usage,
            "client_cpu_ms_per_1000_tokens": r.cpu_ms_per_1000_tokens(),
            "peak_rss_kib": r.usage.max_rss_kib,
            "peak_rss_kib_per_stream": r.rss_kib_per_stream(),
            "server_cpu_s": r.server_cpu_s,
            "client_delay": r.summary.llm.as_ref().and_then(|l| l.client_delay.clone()),
            "server_itl": r.summary.llm.as_ref().and_then(|l| l.server_itl.clone()),
            "itl": r.summary.llm.as_ref().map(|l| l.itl.clone()),
            "ttft": r.summary.llm.as_ref().map(|l| l.ttft.clone()),
        })).collect::<Vec<_>>(),
        "table": table,
    });
    Ok((record, bars, table))
}

/// Says whether the open-files limit holds the largest run's sockets.
fn report_open_files(streams: &[usize]) {
    let largest = streams.iter().copied().max().unwrap_or(0);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        let hard = limit.rlim_max;
        let needed = largest as u64 + 64;
        println!(
            "  open files: hard limit {hard}, which loadgen and stub-server each raise to; {largest} streams need about {needed}{}",
            if hard < needed { " (SHORT: raise the hard limit, `ulimit -Hn`, as root)" } else { "" }
        );
    }
}

fn run_one(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    streams: usize,
    round: usize,
    isolation: Option<&Isolation>,
) -> Result<Run, TaskError> {
    // Between spawns this thread waits on the server's CPUs when the
    // client's are kept to the client.
    let rest = || {
        if isolation.is_some() {
            pin.as_server();
        } else {
            pin.release();
        }
    };
    let name = if round == 1 {
        format!("scale-{streams}")
    } else {
        format!("scale-{streams}-{round}")
    };
    println!(
        "scale: {streams} concurrent streams of {TOKENS} tokens, a step every {STEP_MS} ms, write stamps on"
    );
    let server_args: Vec<String> = vec![
        format!("--max-num-seqs={streams}"),
        "--step-base-ms=20".into(),
        "--step-per-seq-ms=0".into(),
        "--prefill-per-token-ms=0".into(),
        "--max-batched-tokens=1048576".into(),
        "--sse-stamps".into(),
    ];
    pin.as_server();
    let server = ServerProcess::start(
        &bins.server,
        &server_args,
        &dir.join(format!("{name}-server.log")),
    );
    rest();
    let server = server?;
    let server_cpu_before = process_tree_cpu_s(server.pid());
    let json_path = dir.join(format!("{name}-loadgen.json"));
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["--url", &server.base_url, "--api", "openai-chat"])
        .args(["-c", &streams.to_string(), "-n", &streams.to_string()])
        .args(["--max-tokens", &TOKENS.to_string()])
        .args(["--extra-body", r#"{"ignore_eos": true}"#])
        .args(["--timeout", "300s", "--quiet"])
        .args(["--json".as_ref(), json_path.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut prefix = pin.prefix(true);
    if isolation.is_some() {
        // SAFETY: the closure runs in the child between fork and exec and
        // makes one system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(isolation::take_fifo);
        }
        prefix.push_str(&format!("chrt -f {} ", isolation::CLIENT_FIFO_PRIORITY));
    }
    let command = format!("{prefix}{}", super::clients::describe(&cmd));
    pin.as_client();
    let started = Instant::now();
    let child = process::spawn_child(&mut cmd);
    rest();
    let mut child = child?;
    let waited = process::wait_with_usage(&mut child, "loadgen", Duration::from_secs(600));
    let wall_s = started.elapsed().as_secs_f64();
    let server_cpu_s = match (server_cpu_before, process_tree_cpu_s(server.pid())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    drop(server);
    let (status, usage) = waited?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(TaskError::Step(format!(
            "`{command}` could not run ({status})"
        )));
    }
    let summary: RunSummary = crate::json::read_contract(&json_path)?;
    let run = Run {
        streams,
        summary,
        usage,
        wall_s,
        server_cpu_s,
        command,
    };
    let llm = run.summary.llm.as_ref();
    let delay = llm.and_then(|l| l.client_delay.as_ref());
    println!(
        "  {} ok, {} failed; client delay {}; server ITL {}; loadgen {:.2} CPU s, {} per 1,000 tokens; peak RSS {:.1} MiB ({:.1} KiB per stream)",
        run.summary.succeeded,
        run.summary.failed,
        three(delay),
        three(llm.and_then(|l| l.server_itl.as_ref())),
        usage.user_s + usage.system_s,
        run.cpu_ms_per_1000_tokens()
            .map_or("n/a".to_owned(), |v| format!("{v:.1} ms")),
        usage.max_rss_kib as f64 / 1024.0,
        run.rss_kib_per_stream(),
    );
    Ok(run)
}

/// `P50 / P99 / max` in ms.
fn three(p: Option<&Percentiles>) -> String {
    let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
    match p {
        Some(p) => format!("{} / {} / {}", ms(p.p50_ms), ms(p.p99_ms), ms(p.max_ms)),
        None => "n/a (no stamps)".to_owned(),
    }
}

/// The bars, on the run of [`BAR_STREAMS`] streams when there is one.
fn bars(runs: &[Run]) -> Vec<Bar> {
    let at_bar: Vec<&Run> = runs.iter().filter(|r| r.streams == BAR_STREAMS).collect();
    if at_bar.is_empty() {
        return Vec::new();
    }
    let delays: Vec<_> = at_bar
        .iter()
        .map(|r| r.summary.llm.as_ref().and_then(|l| l.client_delay.as_ref()))
        .collect();
    let p50s: Vec<Option<f64>> = delays.iter().map(|d| d.and_then(|d| d.p50_ms)).collect();
    let p99s: Vec<Option<f64>> = delays.iter().map(|d| d.and_then(|d| d.p99_ms)).collect();
    let failed: u64 = at_bar.iter().map(|r| r.summary.failed).sum();
    let judged =
        |values: &[Option<f64>], limit: f64| median_of(values).map(|v| v < limit && failed == 0);
    vec![
        bar(
            "scale_client_delay_p50_under_0.2ms_at_1000_streams",
            judged(&p50s, DELAY_P50_BAR_MS),
            format!(
                "client delay P50 {} (bar: under {DELAY_P50_BAR_MS} ms), {failed} failed",
                over_runs(&p50s)
            ),
        ),
        bar(
            "scale_client_delay_p99_under_1ms_at_1000_streams",
            judged(&p99s, DELAY_P99_BAR_MS),
            format!(
                "client delay P99 {} (bar: under {DELAY_P99_BAR_MS} ms), {failed} failed",
                over_runs(&p99s)
            ),
        ),
    ]
}

/// The median of the runs' values, `None` when a run has none: a run of
/// 1,000 streams on a shared machine meets a kernel thread or a stall on
/// the client's core now and then, so a bar is judged on the median run
/// when the count is given more than once (`1000,1000,1000`).
fn median_of(values: &[Option<f64>]) -> Option<f64> {
    let all: Vec<f64> = values.iter().copied().collect::<Option<_>>()?;
    super::compare::median_of(&all)
}

/// "X ms", or "median X ms of A, B, C" over several runs.
fn over_runs(values: &[Option<f64>]) -> String {
    match values {
        [one] => format!("{} ms", three_one(*one)),
        _ => format!(
            "median {} ms of {}",
            three_one(median_of(values)),
            values
                .iter()
                .map(|v| three_one(*v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn three_one(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.3}"))
}

/// The runs as a markdown table.
fn table(runs: &[Run], pin: &Pinning, isolated: Option<(usize, usize)>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Client CPUs {}, server CPUs {}{}; {}; {TOKENS} tokens per stream, {STEP_MS} ms schedule, `--sse-stamps`.\n",
        super::pinning::cpu_list(&pin.client),
        super::pinning::cpu_list(&pin.server),
        if pin.used { " (pinned)" } else { " (not pinned)" },
        match isolated {
            Some((moved, stayed)) => format!(
                "client isolated (`--isolate-client`: {moved} other threads moved off its CPUs, {stayed} per-CPU kernel threads stayed; loadgen at SCHED_FIFO {})",
                isolation::CLIENT_FIFO_PRIORITY
            ),
            None => "client not isolated (other threads may share its CPUs; loadgen at normal priority)".to_owned(),
        }
    );
    let _ = writeln!(
        out,
        "| streams | ok / failed | tokens | loadgen CPU s | CPU ms / 1,000 tokens | peak RSS MiB | KiB / stream | client delay P50 / P99 / max ms | server ITL P50 / P99 / max ms | ITL P50 / P99 ms | TTFT P50 / P99 ms | server CPU s | wall s |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|"
    );
    for run in runs {
        let llm = run.summary.llm.as_ref();
        let two = |p: Option<&Percentiles>| match p {
            Some(p) => format!("{} / {}", three_one(p.p50_ms), three_one(p.p99_ms)),
            None => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {:.2} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1} |",
            run.streams,
            run.summary.succeeded,
            run.summary.failed,
            run.tokens(),
            run.usage.user_s + run.usage.system_s,
            run.cpu_ms_per_1000_tokens()
                .map_or("n/a".to_owned(), |v| format!("{v:.1}")),
            run.usage.max_rss_kib as f64 / 1024.0,
            run.rss_kib_per_stream(),
            three(llm.and_then(|l| l.client_delay.as_ref())),
            three(llm.and_then(|l| l.server_itl.as_ref())),
            two(llm.map(|l| &l.itl)),
            two(llm.map(|l| &l.ttft)),
            run.server_cpu_s
                .map_or("n/a".to_owned(), |v| format!("{v:.2}")),
            run.wall_s,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_counts_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse_streams("1000,10000").unwrap(), vec![1000, 10_000]);
        assert_eq!(parse_streams(" 8 ").unwrap(), vec![8]);
        for bad in ["", "0", "100001", "1000,", "x", "-5", "1,2,3,4,5"] {
            let err = parse_streams(bad).unwrap_err();
            assert!(
                err.contains("--scale-streams") && err.contains("1 to 100000"),
                "{bad:?}: {err}"
            );
        }
        // A count may repeat: the default runs 1,000 streams three times.
        assert_eq!(
            parse_streams("1000,1000,1000,10000").unwrap(),
            vec![1000, 1000, 1000, 10_000]
        );
    }

    #[test]
    fn repeated_runs_are_judged_on_their_median() {
        assert_eq!(median_of(&[Some(2.7), Some(0.2), Some(0.8)]), Some(0.8));
        assert_eq!(median_of(&[Some(1.0), Some(3.0)]), Some(2.0));
        assert_eq!(median_of(&[Some(1.0), None]), None);
        assert_eq!(median_of(&[]), None);
        assert_eq!(over_runs(&[Some(0.5)]), "0.500 ms");
        assert_eq!(
            over_runs(&[Some(2.7), Some(0.2), Some(0.8)]),
            "median 0.800 ms of 2.700, 0.200, 0.800"
        );
    }
}
