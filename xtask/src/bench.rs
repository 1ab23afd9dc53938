//! `cargo xtask bench`: measures the tools against their peers (wrk, oha,
//! nginx, hdrhistogram) and writes `results/bench.json`.
//!
//! - Throughput: `loadgen` (with its defaults and with `--busy-poll-us`),
//!   `wrk` and `oha` against the zero-cost simulator and against nginx
//!   serving a static JSON file, same connections, same duration,
//!   interleaved round by round; medians, and ratios as the median of the
//!   per-round ratios with their interquartile range (this VM's absolute
//!   rates drift too much between rounds for a ratio of medians to hold).
//! - Client-bound: against nginx again, each client capped at 40% of one CPU
//!   (a cgroup CFS quota), so the client and not the server is the
//!   bottleneck and req/s measures what a client makes of the same CPU.
//! - HTTPS (`tls.rs`): against nginx over TLS 1.3 with a self-signed
//!   certificate made per run, `loadgen`, `wrk` and `oha` with keep-alive
//!   connections and with a new connection (handshake) per request;
//!   `--tls-only` runs just this part.
//! - gRPC (`grpc.rs`, `--grpc-only`): against a real Triton, `loadgen`
//!   beside Triton's own `perf_analyzer` (installed into `.bench-tools/`),
//!   over gRPC and HTTP at concurrency 1, 8 and 32: latency and client CPU
//!   per request.
//! - Self-overhead: P50 at one connection (low load) against the zero-cost
//!   simulator, `loadgen` versus `wrk`.
//! - The simulator: its zero-cost requests/s (with the fastest client) versus
//!   what `loadgen` can send (against nginx), and the error of its service
//!   time under load.
//! - `stats` and the what-if engine: criterion benchmarks
//!   (`crates/stats/benches`, `crates/report/benches`: 100,000 simulated
//!   requests well under a second).
//! - `./run_tests` wall time once built.
//! - LLM streams at scale (`--scale-only`, `scale.rs`): 1,000 and 10,000
//!   streams against stub-server's write stamps: the client's own delay,
//!   CPU per 1,000 tokens and peak memory per stream.
//! - loadgen beside aiperf (`--aiperf-only`, `aiperf.rs`): client CPU per
//!   1,000 tokens, TTFT and ITL at 10, 100 and 1,000 streams, differences
//!   explained from the server's write stamps.
//! - LLM streams (`--llm-only`, `llm.rs`) and LLM workloads
//!   (`--workload-only`, `workload.rs`: prompt building, trace reading, a
//!   2,000 requests/s replay's send lateness), each on its own.
//! - The live metrics exporter (`--exporter-only`, `exporter.rs`):
//!   loadgen's throughput without and with `--metrics-listen` scraped
//!   every second (the bar: at most 5% lost), and at 10,000 requests/s.
//!
//! Client and server get disjoint CPUs (the effect of `taskset -c`), set with
//! `sched_setaffinity` on the spawning thread so children inherit it. The
//! bench installs nothing but perf_analyzer (`--grpc-only`, under
//! `.bench-tools/`): a missing peer is recorded as missing. A missed bar
//! is a finding, not a failure: the exit code is 0 whenever it measured.
//!
//! By job: `peers` (finding wrk, oha, nginx), `pinning` (CPU affinity),
//! `cgroup` (the client-bound CPU cap), `accounting` (CPU used, from
//! `getrusage` and `/proc`), `clients` (one timed run of each client and its
//! output), `compare` (interleaved rounds, medians and ratios), `nginx`,
//! `plain` (everything over plain HTTP), `tls`, `accuracy`, `criterion`,
//! `exporter`, `bars` (the verdicts). [`run`] is the steps in order.

pub(crate) mod accounting;
mod accuracy;
mod aiperf;
mod bars;
mod cgroup;
mod clients;
mod compare;
mod criterion;
mod exporter;
mod grpc;
mod isolation;
mod llm;
mod nginx;
mod peers;
mod pinning;
mod plain;
mod scale;
mod tls;
mod workload;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::build;
use crate::error::TaskError;
use crate::machine::Machine;
use crate::process;
use crate::workspace;
use bars::{bar, Bar};
use clients::{Load, Reuse};
use peers::Peers;
use pinning::Pinning;
use plain::Plain;

/// Flags of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Directory for bench.json and the raw outputs (under `bench/`).
    #[arg(long, default_value = "results", value_name = "DIR")]
    out: PathBuf,
    /// Seconds each client sends in a throughput run.
    #[arg(long, default_value_t = 3, value_name = "S", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u64> { what: "--duration-s", min: 1, max: 60 }.parse(t))]
    duration_s: u64,
    /// Open connections in the throughput runs (all clients).
    #[arg(long, default_value_t = 32, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<usize> { what: "--connections", min: 1, max: 1024 }.parse(t))]
    connections: usize,
    /// Interleaved rounds per measurement; medians are reported.
    #[arg(long, default_value_t = 9, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<usize> { what: "--rounds", min: 1, max: 20 }.parse(t))]
    rounds: usize,
    /// Use `loadgen` and `stub-server` from this directory instead of
    /// building them (e.g. to measure an older build the same way).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// A name for the machine, recorded beside what /proc says.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Skip the criterion benchmarks of `stats` and of the what-if engine.
    #[arg(long)]
    skip_stats: bool,
    /// Skip timing `./run_tests`.
    #[arg(long)]
    skip_run_tests: bool,
    /// Do not pin client and server to different CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Run only the HTTPS comparison (nginx over TLS 1.3, keep-alive and a
    /// connection per request) and write `bench-tls.json` instead of
    /// `bench.json`, leaving a full run's record in place.
    #[arg(long)]
    tls_only: bool,
    /// Run only the streaming bench (1,000 concurrent LLM streams of 256
    /// tokens at a 20 ms schedule: ITL accuracy and loadgen's CPU per
    /// token) and write `bench-llm.json`.
    #[arg(long, conflicts_with = "tls_only")]
    llm_only: bool,
    /// Run only the workload bench (100,000 prompts of 1,000 tokens under a
    /// tokenizer; reading a 1,000,000-row Mooncake trace, streamed and
    /// held; a 2,000 requests/s replay against the zero-cost simulator and
    /// its send lateness) and write `bench-workload.json`.
    #[arg(long, conflicts_with_all = ["tls_only", "llm_only"])]
    workload_only: bool,
    /// Run only the exporter bench (loadgen's throughput against the
    /// zero-cost simulator without and with --metrics-listen scraped every
    /// second, interleaved over --rounds of --duration-s; and the open loop
    /// at 10,000 requests/s) and write `bench-exporter.json`.
    #[arg(long, conflicts_with_all = ["tls_only", "llm_only", "workload_only"])]
    exporter_only: bool,
    /// Run only the gRPC bench (a real Triton's unary model, loadgen beside
    /// perf_analyzer over gRPC and HTTP at concurrency 1, 8 and 32, --rounds
    /// interleaved rounds) and write `bench-grpc.json`.
    #[arg(long, conflicts_with_all = ["tls_only", "llm_only", "workload_only", "exporter_only"])]
    grpc_only: bool,
    /// Run only the scale bench (`--scale-streams` concurrent streams of
    /// 256 tokens at a 20 ms schedule against stub-server `--sse-stamps`:
    /// loadgen's CPU per 1,000 tokens, peak memory per stream, client delay
    /// from the write stamps) and write `bench-scale.json` and `.md`.
    #[arg(long, conflicts_with_all = ["tls_only", "llm_only", "workload_only", "exporter_only", "grpc_only"])]
    scale_only: bool,
    /// The scale bench's runs: stream counts, comma-separated, each 1 to
    /// 100000, at most 4 runs; a count given again runs again, and the
    /// bars at 1,000 streams are judged on the median run.
    #[arg(long, value_name = "LIST", default_value = "1000,1000,1000,10000",
          value_parser = |t: &str| scale::parse_streams(t).map(StreamCounts))]
    scale_streams: StreamCounts,
    /// The scale bench keeps the client's CPUs to loadgen during its runs:
    /// every other thread that may move, kernel threads included, goes to
    /// the server's CPUs and gets its own back after, and loadgen runs at
    /// SCHED_FIFO 1 (what `isolcpus` and `chrt -f 1` do). Needs root or
    /// CAP_SYS_NICE; only with --scale-only, not with --no-pin.
    #[arg(long)]
    isolate_client: bool,
    /// Run only loadgen beside aiperf (PyPI `aiperf` from `--aiperf-venv`,
    /// against stub-server on 127.0.0.1: client CPU per 1,000 tokens, TTFT
    /// and ITL) and write `bench-aiperf.json` and `.md`.
    #[arg(long, conflicts_with_all = ["tls_only", "llm_only", "workload_only", "scale_only", "exporter_only", "grpc_only"])]
    aiperf_only: bool,
    /// The side-by-side's concurrency levels, comma-separated, each 1 to
    /// 10000, at most 4.
    #[arg(long, value_name = "LIST", default_value = aiperf::DEFAULT_LEVELS,
          value_parser = |t: &str| aiperf::parse_levels(t).map(StreamCounts))]
    aiperf_concurrency: StreamCounts,
    /// The venv holding aiperf (default: `.venv-aiperf` at the repository
    /// root, made by `xtask/tools/aiperf-setup.sh`).
    #[arg(long, value_name = "DIR")]
    aiperf_venv: Option<PathBuf>,
    /// A directory holding `tokenizer.json` and `tokenizer_config.json`
    /// for both tools (default: one made with the venv's `tokenizers` by
    /// `xtask/tools/make_bpe_tokenizer.py`).
    #[arg(long, value_name = "DIR")]
    aiperf_tokenizer: Option<PathBuf>,
    /// The side-by-side server's time between tokens, ms (1 to 1000). At
    /// 20 ms and 1,000 streams one core of aiperf falls behind the server;
    /// a longer gap measures both tools where each keeps up.
    #[arg(long, value_name = "MS", default_value_t = aiperf::DEFAULT_ITL_MS, allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u32> { what: "--aiperf-itl-ms", min: 1, max: 1000 }.parse(t))]
    aiperf_itl_ms: u32,
}

/// `--scale-streams` and `--aiperf-concurrency`: counts, one run each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamCounts(Vec<usize>);

/// Entry point from `main`: 0 measured, 2 could not measure.
pub(crate) fn main(args: BenchArgs) -> ExitCode {
    match run(args) {
        Ok(path) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// The request body every client sends: `input.py`'s request 0, byte for
/// byte as `model::payload::baseline_body(0)` writes it (xtask depends on no
/// tool crate, so it is spelled out; the simulator's verification of
/// loadgen's requests and a non-200 count of 0 from wrk and oha confirm it).
const BODY: &str = r#"{"model":"example-model","input":"Request 0: Summarize the following support ticket in two sentences. Ticket #0: The customer says the mobile app signs them out after every update and asks how to keep their saved preferences between versions."}"#;

/// The packages whose binaries the bench runs.
const PACKAGES: [&str; 2] = ["stub-server", "loadgen"];

/// The binaries under test.
struct Bins {
    loadgen: PathBuf,
    server: PathBuf,
}

/// What the bench measured; each part is absent where it was skipped.
struct Measured {
    /// Over plain HTTP (absent with `--tls-only`).
    plain: Option<Plain>,
    /// Over TLS (absent where nginx is missing).
    tls: Option<tls::Results>,
    stats: Option<criterion::StatsBench>,
    whatif: Option<criterion::WhatifBench>,
    run_tests: Option<RunTestsTiming>,
}

/// `./run_tests` once built.
#[derive(Debug, Clone, Serialize)]
struct RunTestsTiming {
    wall_s: f64,
    exit_code: Option<i32>,
    command: &'static str,
    log: PathBuf,
}

/// The steps in order: check the flags, get the binaries, find the peers,
/// plan the CPUs, measure, judge the bars, write the record.
fn run(args: BenchArgs) -> Result<PathBuf, TaskError> {
    validate(&args)?;
    if args.isolate_client {
        isolation::allowed()?;
    }
    let started = Instant::now();
    let dir = args.out.join("bench");
    fs::create_dir_all(&dir).map_err(|source| TaskError::Io {
        path: dir.clone(),
        source,
    })?;
    let bins = binaries(&args)?;
    let pin = Pinning::for_this_machine(!args.no_pin);
    if args.llm_only {
        let (streams, verdict) = llm::measure(&bins, &pin, &dir)?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "llm_streams": streams,
                "bars": [verdict],
            }),
        );
        return write_named(&args.out.join("bench-llm.json"), &record);
    }
    if args.exporter_only {
        let (exporter, verdict) = exporter::measure(&args, &bins, &pin, &dir)?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "exporter": exporter,
                "bars": [verdict],
            }),
        );
        return write_named(&args.out.join("bench-exporter.json"), &record);
    }
    if args.scale_only {
        let (scale, verdicts, table) = scale::measure(
            &bins,
            &pin,
            &dir,
            &args.scale_streams.0,
            args.isolate_client,
        )?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "scale": scale,
                "bars": verdicts,
            }),
        );
        write_text(&args.out.join("bench-scale.md"), &table)?;
        println!("{table}");
        return write_named(&args.out.join("bench-scale.json"), &record);
    }
    if args.aiperf_only {
        let venv = match &args.aiperf_venv {
            Some(dir) => dir.clone(),
            None => workspace::root()?.join(".venv-aiperf"),
        };
        let (side, table) = aiperf::measure(
            &bins,
            &pin,
            &dir,
            &args.aiperf_concurrency.0,
            args.aiperf_itl_ms,
            &venv,
            args.aiperf_tokenizer.as_deref(),
        )?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "side_by_side": side,
            }),
        );
        write_text(&args.out.join("bench-aiperf.md"), &table)?;
        println!("{table}");
        return write_named(&args.out.join("bench-aiperf.json"), &record);
    }
    if args.workload_only {
        let (workload, verdict) = workload::measure(&bins, &pin, &dir)?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "workload": workload,
                "bars": [verdict],
            }),
        );
        return write_named(&args.out.join("bench-workload.json"), &record);
    }
    if args.grpc_only {
        let (measured, bars) = grpc::measure(&bins, &pin, &dir, args.rounds)?;
        let record = part_record(
            &args,
            &pin,
            json!({
                "grpc": measured,
                "bars": bars,
            }),
        );
        return write_named(&args.out.join("bench-grpc.json"), &record);
    }
    let peers = Peers::find();
    // What every client run shares; each comparison sets the URL, the
    // server and the connection settings (the URL here is never used).
    let template = Load {
        url: "",
        connections: args.connections,
        threads: pin.client.len(),
        duration: Duration::from_secs(args.duration_s),
        body: BODY,
        dir: &dir,
        cap: None,
        server_pid: None,
        cacert: None,
        reuse: Reuse::KeepAlive,
    };
    let measured = measure(&args, &bins, &peers, &pin, &template)?;
    println!("bars:");
    let bars = measured.bars();
    let record = record(&args, started, &bins, &peers, &pin, &measured, &bars);
    write_record(&args, &record)
}

fn validate(args: &BenchArgs) -> Result<(), TaskError> {
    if args.duration_s == 0 || args.duration_s > 60 {
        return Err(TaskError::BadFlag("--duration-s must be 1..=60".into()));
    }
    if args.rounds == 0 || args.rounds > 20 || args.connections == 0 || args.connections > 1024 {
        return Err(TaskError::BadFlag(
            "--rounds must be 1..=20 and --connections 1..=1024".into(),
        ));
    }
    if args.isolate_client && !args.scale_only {
        return Err(TaskError::BadFlag(
            "--isolate-client keeps the client's CPUs to loadgen in the scale bench only: add --scale-only".into(),
        ));
    }
    let aiperf_flags = [
        (
            "--aiperf-concurrency",
            args.aiperf_concurrency.0 != aiperf::default_levels(),
        ),
        ("--aiperf-venv", args.aiperf_venv.is_some()),
        ("--aiperf-tokenizer", args.aiperf_tokenizer.is_some()),
        (
            "--aiperf-itl-ms",
            args.aiperf_itl_ms != aiperf::DEFAULT_ITL_MS,
        ),
    ];
    if let Some((flag, _)) = aiperf_flags
        .iter()
        .find(|(_, set)| *set && !args.aiperf_only)
    {
        return Err(TaskError::BadFlag(format!(
            "{flag} sets up the side-by-side with aiperf: add --aiperf-only"
        )));
    }
    if args.isolate_client && args.no_pin {
        return Err(TaskError::BadFlag(
            "--isolate-client needs client and server on different CPUs: drop --no-pin".into(),
        ));
    }
    Ok(())
}

/// `--bin-dir`'s binaries, or the release build's.
fn binaries(args: &BenchArgs) -> Result<Bins, TaskError> {
    let dir = match &args.bin_dir {
        Some(dir) => build::Binaries::in_dir(dir),
        None => {
            if workspace::prebuilt_bin_dir().is_none() {
                println!("building stub-server and loadgen (release)");
            }
            build::release_binaries(&PACKAGES)?
        }
    };
    Ok(Bins {
        loadgen: dir.path("loadgen"),
        server: dir.path("stub-server"),
    })
}

/// The server's CPUs: nginx's workers, one per CPU.
fn server_workers(pin: &Pinning) -> usize {
    pin.server.len()
}

/// 1-4 over plain HTTP (the simulator, self-overhead, nginx, accuracy), 5
/// HTTPS against nginx, 6 the stats benchmarks, 7 `./run_tests`.
fn measure(
    args: &BenchArgs,
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    template: &Load,
) -> Result<Measured, TaskError> {
    let plain = if args.tls_only {
        None
    } else {
        Some(Plain::measure(
            bins,
            peers,
            pin,
            template,
            args.rounds,
            server_workers(pin),
        )?)
    };
    let tls = match &peers.nginx.path {
        Some(bin) => Some(tls::measure(
            bins,
            peers,
            pin,
            template,
            bin,
            server_workers(pin),
            args.rounds,
        )?),
        None => None,
    };
    let stats = if args.skip_stats || args.tls_only {
        None
    } else {
        println!("stats: cargo bench -p stats --bench histogram (criterion)");
        Some(criterion::run(template.dir)?)
    };
    let whatif = if args.skip_stats || args.tls_only {
        None
    } else {
        println!("what-if: cargo bench -p report --bench whatif (criterion)");
        Some(criterion::run_whatif(template.dir)?)
    };
    let run_tests = if args.skip_run_tests || args.tls_only {
        None
    } else {
        Some(time_run_tests(template.dir)?)
    };
    Ok(Measured {
        plain,
        tls,
        stats,
        whatif,
        run_tests,
    })
}

/// Runs `./run_tests` once (everything is built by now), its output to a log.
fn time_run_tests(dir: &std::path::Path) -> Result<RunTestsTiming, TaskError> {
    println!("./run_tests (wall time)");
    let log = dir.join("run_tests.out");
    let file = fs::File::create(&log).map_err(|source| TaskError::Io {
        path: log.clone(),
        source,
    })?;
    let err = file.try_clone().map_err(|source| TaskError::Io {
        path: log.clone(),
        source,
    })?;
    let root = workspace::root()?;
    let mut cmd = Command::new(root.join("run_tests"));
    cmd.current_dir(&root)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    let t0 = Instant::now();
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(600))?;
    Ok(RunTestsTiming {
        wall_s: t0.elapsed().as_secs_f64(),
        exit_code: status.code(),
        command: "./run_tests",
        log,
    })
}

impl Measured {
    /// Every bar, printed as judged.
    fn bars(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        if let Some(p) = &self.plain {
            bars.extend(p.bars());
        }
        bars.extend(tls::bars(self.tls.as_ref()));
        if let Some(s) = &self.stats {
            bars.push(bar(
                "stats records 10 M no slower than hdrhistogram",
                Some(s.stats_vs_hdrhistogram <= 1.05),
                format!(
                    "{:.1} ms vs {:.1} ms (ratio {:.3}; <= 1.05 counted as met, criterion noise)",
                    s.stats_record_ns_10m_ms, s.hdrhistogram_record_10m_ms, s.stats_vs_hdrhistogram
                ),
            ));
            bars.push(bar(
                "exact quantiles of 1 M samples well under 100 ms",
                Some(s.exact_quantiles_1m_ms < 50.0),
                format!(
                    "{:.1} ms (< 50 ms counted as well under)",
                    s.exact_quantiles_1m_ms
                ),
            ));
        }
        if let Some(w) = &self.whatif {
            let slowest = w
                .simulate_100k_unbatched_ms
                .max(w.simulate_100k_batches_of_10_ms)
                .max(w.simulate_100k_dynamic_batching_ms);
            bars.push(bar(
                "what-if simulation of 100,000 requests well under a second",
                Some(slowest < 250.0),
                format!(
                    "unbatched {:.1} ms, batches of 10 {:.1} ms, dynamic batching {:.1} ms (< 250 ms counted as well under)",
                    w.simulate_100k_unbatched_ms,
                    w.simulate_100k_batches_of_10_ms,
                    w.simulate_100k_dynamic_batching_ms
                ),
            ));
        }
        if let Some(r) = &self.run_tests {
            let exit_code = r
                .exit_code
                .map_or_else(|| "null".to_owned(), |c| c.to_string());
            bars.push(bar(
                "./run_tests in about a minute once built",
                Some(r.wall_s <= 75.0 && r.exit_code == Some(0)),
                format!("{:.1} s, exit code {exit_code}", r.wall_s),
            ));
        }
        bars
    }
}

/// bench.json (or bench-tls.json): the machine, the set-up, every
/// measurement and the bars.
fn record(
    args: &BenchArgs,
    started: Instant,
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    measured: &Measured,
    bars: &[Bar],
) -> serde_json::Value {
    let Measured {
        plain,
        tls,
        stats,
        whatif,
        run_tests,
    } = measured;
    let (stub_capacity, loadgen_max) = plain
        .as_ref()
        .map_or((None, None), |p| (Some(p.stub_capacity()), p.loadgen_max()));
    json!({
        "schema": "latency-toolkit/bench/v1",
        "generated_unix_s": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "bench_wall_s": started.elapsed().as_secs_f64(),
        "tls_only": args.tls_only,
        "machine": Machine::probe().bench_json(args.label.as_deref()),
        "pinning": {
            "used": pin.used,
            "method": "sched_setaffinity on the spawning thread (the effect of taskset -c)",
            "client_cpus": pinning::cpu_list(&pin.client),
            "server_cpus": pinning::cpu_list(&pin.server),
        },
        "peers": {
            "wrk": peers.wrk,
            "oha": peers.oha,
            "nginx": peers.nginx,
        },
        "settings": {
            "connections": args.connections,
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "client_threads": pin.client.len(),
            "server_workers_nginx": server_workers(pin),
            "body_bytes": BODY.len(),
            "binaries": { "loadgen": bins.loadgen, "stub_server": bins.server },
            "server_commands": {
                "stub_server": format!("{}{} --bind 127.0.0.1:0 --profile zero-cost", pin.prefix(false), bins.server.display()),
                "nginx": "nginx -p DIR -c DIR/nginx.conf (see bench/nginx/nginx.conf)",
            },
            "tls": tls.as_ref().map(|t| &t.settings),
        },
        "throughput": {
            "stub_zero_cost": plain.as_ref().map(|p| &p.stub),
            "nginx": plain.as_ref().and_then(|p| p.nginx.as_ref()),
            "nginx_client_bound": plain.as_ref().and_then(|p| p.client_bound.as_ref()),
            "nginx_tls_keepalive": tls.as_ref().map(|t| &t.keepalive),
            "nginx_tls_per_request": tls.as_ref().map(|t| &t.per_request),
        },
        "self_overhead_low_load": plain.as_ref().map(|p| &p.low_load),
        "stub_server": {
            "zero_cost_rps_best_client": stub_capacity,
            "loadgen_rps_against_nginx": loadgen_max,
            "service_time_accuracy": plain.as_ref().map(|p| &p.accuracy),
        },
        "stats": stats,
        "whatif": whatif,
        "run_tests": run_tests,
        "bars": bars,
    })
}

/// Writes the record; a TLS-only run records beside, not over, the full
/// bench's file.
fn write_record(args: &BenchArgs, record: &serde_json::Value) -> Result<PathBuf, TaskError> {
    let name = if args.tls_only {
        "bench-tls.json"
    } else {
        "bench.json"
    };
    write_named(&args.out.join(name), record)
}

/// Writes a table beside the JSON record.
fn write_text(path: &std::path::Path, text: &str) -> Result<(), TaskError> {
    fs::write(path, text).map_err(|source| TaskError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A flag's comma-separated counts, each 1 to `max`, at most 4 of them:
/// a bad one is named with `allowed`, too many with `too_many`.
fn count_list(
    flag: &str,
    text: &str,
    max: usize,
    allowed: &str,
    too_many: &str,
) -> Result<Vec<usize>, String> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{flag} {text:?}: {part:?} is not {allowed}"))
        })
        .collect::<Result<_, _>>()?;
    if counts.len() > 4 {
        return Err(format!("{flag} {text:?}: {too_many}"));
    }
    Ok(counts)
}

/// The record of a bench run with `--*-only`: the machine and the CPUs
/// every record names, then `part`'s own keys.
fn part_record(args: &BenchArgs, pin: &Pinning, part: serde_json::Value) -> serde_json::Value {
    let mut record = json!({
        "machine": Machine::probe().conditions_json(),
        "label": args.label,
        "pinned": pin.used,
        "client_cpus": pinning::cpu_list(&pin.client),
        "server_cpus": pinning::cpu_list(&pin.server),
    });
    if let (Some(record), serde_json::Value::Object(part)) = (record.as_object_mut(), part) {
        record.extend(part);
    }
    record
}

fn write_named(path: &std::path::Path, record: &serde_json::Value) -> Result<PathBuf, TaskError> {
    let path = path.to_owned();
    let text = serde_json::to_string_pretty(record).map_err(|e| TaskError::Step(e.to_string()))?;
    fs::write(&path, text + "\n").map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn checked(flags: &[&str]) -> Result<(), String> {
        let flags = Flags::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        validate(&flags.bench).map_err(|e| e.to_string())
    }

    #[test]
    fn isolating_the_client_is_for_the_scale_bench_with_pinning() {
        assert_eq!(checked(&["--scale-only", "--isolate-client"]), Ok(()));
        let alone = checked(&["--isolate-client"]).err().unwrap_or_default();
        assert!(alone.contains("add --scale-only"), "{alone}");
        let unpinned = checked(&["--scale-only", "--isolate-client", "--no-pin"])
            .err()
            .unwrap_or_default();
        assert!(unpinned.contains("drop --no-pin"), "{unpinned}");
    }

    #[test]
    fn the_side_by_side_schedule_is_a_bounded_gap_for_the_aiperf_bench() {
        assert_eq!(
            checked(&["--aiperf-only", "--aiperf-itl-ms", "100"]),
            Ok(())
        );
        assert_eq!(checked(&["--aiperf-only"]), Ok(()));
        for bad in ["0", "1001", "20ms", "-5"] {
            let err = checked(&["--aiperf-only", "--aiperf-itl-ms", bad])
                .err()
                .unwrap_or_default();
            assert!(err.contains("--aiperf-itl-ms"), "{bad}: {err}");
        }
        for flags in [
            &["--aiperf-itl-ms", "100"][..],
            &["--aiperf-concurrency", "1000"],
            &["--aiperf-venv", "v"],
            &["--aiperf-tokenizer", "t"],
        ] {
            let err = checked(flags).err().unwrap_or_default();
            assert!(
                err.contains("add --aiperf-only") && err.contains(flags[0]),
                "{flags:?}: {err}"
            );
        }
    }
}
