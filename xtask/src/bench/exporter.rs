//! The exporter bench (`cargo xtask bench --exporter-only`): what
//! `loadgen --metrics-listen` costs loadgen, against the zero-cost
//! simulator, with `/metrics` scraped every second during each run.
//!
//! - Throughput: the closed loop at its most (`-c` connections, the
//!   bench's duration), without and with the exporter, interleaved round by
//!   round (the order alternating); the ratio of the two is the median of
//!   the per-round ratios, and the bar is at most 5% lost.
//! - At 10,000 requests/s: the open loop at that rate without and with it,
//!   the rate achieved, loadgen's CPU per request and the send lateness.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::summary::RunSummary;
use serde::Serialize;
use serde_json::json;

use super::accounting::ClientCpu;
use super::bars::{bar, Bar};
use super::compare::median_of;
use super::pinning::Pinning;
use super::{BenchArgs, Bins, TaskError};
use crate::process::{self, ServerProcess};

/// The open loop's rate, requests/s.
const OPEN_RATE_RPS: u32 = 10_000;
/// The bar: throughput with the exporter at least this share of without.
const MIN_RATIO: f64 = 0.95;

/// One loadgen run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    exporter: bool,
    command: String,
    throughput_rps: f64,
    achieved_rate_rps: Option<f64>,
    succeeded: u64,
    failed: u64,
    cpu_us_per_request: Option<f64>,
    send_lag_p99_ms: Option<f64>,
    /// Scrapes of `/metrics` answered during the run.
    scrapes: u64,
}

/// Scrapes `addr` once a second until stopped; counts the answers.
struct Scraper {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if scrape(addr) {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                    // A scrape interval, as Prometheus would keep; not a
                    // wait for readiness (a refused scrape is just missed).
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        Self {
            stop,
            scrapes,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.scrapes.load(Ordering::Relaxed)
    }
}

/// One `GET /metrics`; whether a whole 200 answer came.
fn scrape(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut text = String::new();
    stream.read_to_string(&mut text).is_ok()
        && text.starts_with("HTTP/1.1 200")
        && text.contains("loadgen_requests_total")
}

/// A free loopback address for the exporter: bound, noted, released.
fn free_addr() -> Result<SocketAddr, TaskError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TaskError::Step(format!("cannot find a free port: {e}")))?;
    listener
        .local_addr()
        .map_err(|e| TaskError::Step(format!("cannot find a free port: {e}")))
}

/// Runs loadgen once with `load` (its flags after the URL), with or
/// without the exporter.
fn run_once(
    bins: &Bins,
    pin: &Pinning,
    url: &str,
    load: &[String],
    exporter: bool,
    json_path: &Path,
) -> Result<Run, TaskError> {
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["--url", url, "-q", "--timeout", "30s"])
        .args(load)
        .arg("--json")
        .arg(json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let addr = free_addr()?;
    if exporter {
        cmd.args(["--metrics-listen", &addr.to_string()]);
    }
    let command = super::clients::describe(&cmd);
    let scraper = exporter.then(|| Scraper::start(addr));
    pin.as_client();
    let before = ClientCpu::of_reaped_children();
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(300));
    let cpu = ClientCpu::of_reaped_children().since(before);
    pin.release();
    let scrapes = scraper.map_or(0, Scraper::finish);
    let status = status?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(TaskError::Step(format!(
            "`{command}` could not run ({status})"
        )));
    }
    let summary: RunSummary = crate::json::read_contract(json_path)?;
    let cpu_s = cpu.user_s + cpu.system_s;
    Ok(Run {
        exporter,
        command,
        throughput_rps: summary.throughput_rps,
        achieved_rate_rps: summary.achieved_rate_rps,
        succeeded: summary.succeeded,
        failed: summary.failed,
        cpu_us_per_request: (summary.total > 0).then(|| cpu_s * 1e6 / summary.total as f64),
        send_lag_p99_ms: summary.send_lag.as_ref().and_then(|l| l.p99_ms),
        scrapes,
    })
}

/// The median over `runs` with (or without) the exporter of `value`.
fn median_where(runs: &[Run], exporter: bool, value: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = runs
        .iter()
        .filter(|r| r.exporter == exporter)
        .filter_map(value)
        .collect();
    median_of(&values)
}

/// Runs the exporter bench; returns its record and its bar.
pub(super) fn measure(
    args: &BenchArgs,
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
) -> Result<(serde_json::Value, Bar), TaskError> {
    let rounds = args.rounds;
    let duration = format!("{}s", args.duration_s);
    println!(
        "exporter: zero-cost stub-server, {rounds} rounds of {duration}, /metrics scraped every second"
    );
    pin.as_server();
    let server = ServerProcess::start(
        &bins.server,
        &["--profile".to_owned(), "zero-cost".to_owned()],
        &dir.join("exporter-server.log"),
    );
    pin.release();
    let server = server?;
    let url = server.infer_url();
    let closed: Vec<String> = ["-c", &args.connections.to_string(), "-z", &duration]
        .map(str::to_owned)
        .to_vec();
    let open: Vec<String> = [
        "--rate",
        &OPEN_RATE_RPS.to_string(),
        "-z",
        &duration,
        "--max-in-flight",
        "1000",
    ]
    .map(str::to_owned)
    .to_vec();
    let json_path = dir.join("exporter-loadgen.json");
    let mut closed_runs = Vec::new();
    let mut open_runs = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // The order alternates so a drift of the machine favours neither.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0f64; 2];
        for exporter in order {
            let run = run_once(bins, pin, &url, &closed, exporter, &json_path)?;
            pair[usize::from(exporter)] = run.throughput_rps;
            closed_runs.push(run);
        }
        if pair[0] > 0.0 {
            ratios.push(pair[1] / pair[0]);
        }
        for exporter in order {
            open_runs.push(run_once(bins, pin, &url, &open, exporter, &json_path)?);
        }
        println!(
            "  round {}: closed loop {:.0} req/s without, {:.0} with",
            round + 1,
            pair[0],
            pair[1]
        );
    }
    drop(server);
    let ratio = median_of(&ratios);
    let tput = |exporter| median_where(&closed_runs, exporter, |r| Some(r.throughput_rps));
    let closed_cpu = |exporter| median_where(&closed_runs, exporter, |r| r.cpu_us_per_request);
    let open_rate = |exporter| median_where(&open_runs, exporter, |r| r.achieved_rate_rps);
    let open_cpu = |exporter| median_where(&open_runs, exporter, |r| r.cpu_us_per_request);
    let open_lag = |exporter| median_where(&open_runs, exporter, |r| r.send_lag_p99_ms);
    let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
    println!(
        "  closed loop: {} req/s without, {} with (median ratio {}); CPU {} vs {} us/request",
        fmt(tput(false)),
        fmt(tput(true)),
        ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}")),
        fmt(closed_cpu(false)),
        fmt(closed_cpu(true)),
    );
    println!(
        "  open loop at {OPEN_RATE_RPS}/s: achieved {} vs {} req/s; CPU {} vs {} us/request; send lateness P99 {} vs {} ms",
        fmt(open_rate(false)),
        fmt(open_rate(true)),
        fmt(open_cpu(false)),
        fmt(open_cpu(true)),
        open_lag(false).map_or("n/a".to_owned(), |v| format!("{v:.3}")),
        open_lag(true).map_or("n/a".to_owned(), |v| format!("{v:.3}")),
    );
    let scraped = closed_runs
        .iter()
        .chain(&open_runs)
        .filter(|r| r.exporter)
        .all(|r| r.scrapes > 0);
    let verdict = bar(
        "exporter_costs_at_most_5pct_of_throughput",
        ratio.map(|r| r >= MIN_RATIO && scraped),
        format!(
            "closed-loop throughput with --metrics-listen (scraped each second) / without: median {} over {rounds} rounds (bar: at least {MIN_RATIO}){}",
            ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}")),
            if scraped { "" } else { "; a run with the exporter answered no scrape" }
        ),
    );
    let record = json!({
        "server": "stub-server --profile zero-cost",
        "rounds": rounds,
        "duration_s": args.duration_s,
        "connections": args.connections,
        "closed_loop": {
            "throughput_ratio_median": ratio,
            "throughput_rps_without": tput(false),
            "throughput_rps_with": tput(true),
            "cpu_us_per_request_without": closed_cpu(false),
            "cpu_us_per_request_with": closed_cpu(true),
            "runs": closed_runs,
        },
        "open_loop": {
            "rate_rps": OPEN_RATE_RPS,
            "achieved_rps_without": open_rate(false),
            "achieved_rps_with": open_rate(true),
            "cpu_us_per_request_without": open_cpu(false),
            "cpu_us_per_request_with": open_cpu(true),
            "send_lag_p99_ms_without": open_lag(false),
            "send_lag_p99_ms_with": open_lag(true),
            "runs": open_runs,
        },
    });
    Ok((record, verdict))
}
