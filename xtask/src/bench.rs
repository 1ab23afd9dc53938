//! `cargo xtask bench`: measures the tools against their peers (SPEC section
//! 9) and writes `results/bench.json`.
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
//! - Self-overhead: P50 at one connection (low load) against the zero-cost
//!   simulator, `loadgen` versus `wrk`.
//! - The simulator: its zero-cost requests/s (with the fastest client) versus
//!   what `loadgen` can send (against nginx), and the error of its service
//!   time under load.
//! - `stats`: criterion benchmarks (`crates/stats/benches`).
//! - `./run_tests` wall time once built.
//!
//! Client and server get disjoint CPUs (the effect of `taskset -c`), set with
//! `sched_setaffinity` on the spawning thread so children inherit it. The
//! bench installs nothing: a missing peer is recorded as missing. A missed bar
//! is a finding, not a failure: the exit code is 0 whenever it measured.

mod accuracy;
mod criterion;
mod tls;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::error::TaskError;
use crate::process::{self, ServerProcess};
use crate::workspace;
use tools::{ClientRun, Load, Peer, Reuse};

/// Flags of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Directory for bench.json and the raw outputs (under `bench/`).
    #[arg(long, default_value = "results", value_name = "DIR")]
    out: PathBuf,
    /// Seconds each client sends in a throughput run.
    #[arg(long, default_value_t = 3, value_name = "S")]
    duration_s: u64,
    /// Open connections in the throughput runs (all clients).
    #[arg(long, default_value_t = 32, value_name = "N")]
    connections: usize,
    /// Interleaved rounds per measurement; medians are reported.
    #[arg(long, default_value_t = 9, value_name = "N")]
    rounds: usize,
    /// Use `loadgen` and `stub-server` from this directory instead of
    /// building them (e.g. to measure an older build the same way).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// A name for the machine, recorded beside what /proc says.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Skip the criterion benchmarks of `stats`.
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
}

/// Entry point from `main`: 0 measured, 2 could not measure.
pub fn main(args: BenchArgs) -> ExitCode {
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

/// CPUs for each side.
struct Pinning {
    client: Vec<usize>,
    server: Vec<usize>,
    all: Vec<usize>,
    used: bool,
}

impl Pinning {
    fn plan(cores: usize, enabled: bool) -> Self {
        let all: Vec<usize> = (0..cores).collect();
        if !enabled || cores < 2 {
            return Self {
                client: all.clone(),
                server: all.clone(),
                all,
                used: false,
            };
        }
        let half = cores / 2;
        Self {
            client: (0..half).collect(),
            server: (half..cores).collect(),
            all,
            used: true,
        }
    }

    fn as_server(&self) {
        if self.used {
            tools::pin_self(&self.server);
        }
    }

    fn as_client(&self) {
        if self.used {
            tools::pin_self(&self.client);
        }
    }

    fn release(&self) {
        if self.used {
            tools::pin_self(&self.all);
        }
    }

    fn prefix(&self, client: bool) -> String {
        if self.used {
            let cpus = if client { &self.client } else { &self.server };
            format!("taskset -c {} ", tools::cpu_list(cpus))
        } else {
            String::new()
        }
    }
}

/// Median of the rounds of one client against one server.
#[derive(Debug, Clone, Serialize)]
struct ClientResult {
    rps_median: f64,
    rps_rounds: Vec<f64>,
    p50_us_median: Option<f64>,
    /// The client's own CPU (user + system) per completed request.
    cpu_us_per_request_median: Option<f64>,
    cpu_us_per_request_rounds: Vec<f64>,
    context_switches_per_request_median: Option<f64>,
    /// The server's CPU per request this client completed.
    server_cpu_us_per_request_median: Option<f64>,
    errors: u64,
    command: String,
}

/// The `q` quantile (numpy's default method) of the finite `values`;
/// `None` when there are none.
fn quantile_of(values: &[f64], q: f64) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let sorted = stats::sorted_finite(&finite).ok()?;
    stats::quantile(&sorted, q, stats::QuantileMethod::Linear).ok()
}

fn median_of(values: &[f64]) -> Option<f64> {
    quantile_of(values, 0.5)
}

fn median(values: &[f64]) -> f64 {
    median_of(values).unwrap_or(f64::NAN)
}

fn collect(runs: &[ClientRun], command: String) -> ClientResult {
    let rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let p50: Vec<f64> = runs.iter().filter_map(|r| r.p50_us).collect();
    let cpu: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::cpu_us_per_request)
        .collect();
    let switches: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::switches_per_request)
        .collect();
    let server_cpu: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::server_cpu_us_per_request)
        .collect();
    ClientResult {
        server_cpu_us_per_request_median: median_of(&server_cpu),
        rps_median: median(&rps),
        rps_rounds: rps,
        p50_us_median: median_of(&p50),
        cpu_us_per_request_median: median_of(&cpu),
        cpu_us_per_request_rounds: cpu,
        context_switches_per_request_median: median_of(&switches),
        errors: runs.iter().map(|r| r.errors).sum(),
        command,
    }
}

struct Bins {
    loadgen: PathBuf,
    server: PathBuf,
}

struct Peers {
    wrk: Peer,
    oha: Peer,
    nginx: Peer,
}

/// The busy-poll window of the `loadgen-busy-poll` runs: loadgen's
/// setting for a client pinned to cores of its own (see
/// `crates/loadgen/src/busy_poll.rs`), off by default.
const BUSY_POLL_US: u64 = 50;

/// A client the bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// `loadgen` with its defaults.
    Loadgen,
    /// `loadgen --busy-poll-us BUSY_POLL_US`.
    LoadgenBusyPoll,
    Wrk,
    Oha,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Self::Loadgen => "loadgen",
            Self::LoadgenBusyPoll => "loadgen-busy-poll",
            Self::Wrk => "wrk",
            Self::Oha => "oha",
        }
    }

    fn run(
        self,
        bins: &Bins,
        peers: &Peers,
        load: &Load,
        script: &Path,
        tag: &str,
    ) -> Result<Option<ClientRun>, TaskError> {
        let tag = format!("{}-{tag}", self.name());
        let server_cpu_s = || load.server_pid.and_then(tools::process_tree_cpu_s);
        let before = server_cpu_s();
        let mut run = match self {
            Self::Loadgen => tools::run_loadgen(&bins.loadgen, load, &tag, None)?,
            Self::LoadgenBusyPoll => {
                tools::run_loadgen(&bins.loadgen, load, &tag, Some(BUSY_POLL_US))?
            }
            Self::Wrk => match &peers.wrk.path {
                Some(wrk) => tools::run_wrk(wrk, load, script, &tag)?,
                None => return Ok(None),
            },
            Self::Oha => match &peers.oha.path {
                Some(oha) => tools::run_oha(oha, load, &tag)?,
                None => return Ok(None),
            },
        };
        run.server_cpu_s = server_cpu_s()
            .zip(before)
            .map(|(after, before)| after - before);
        Ok(Some(run))
    }

    fn command(self, bins: &Bins, peers: &Peers, load: &Load, script: &Path) -> String {
        let json = Path::new("loadgen.json");
        match self {
            Self::Loadgen => {
                tools::describe(&tools::loadgen_command(&bins.loadgen, load, json, None))
            }
            Self::LoadgenBusyPoll => tools::describe(&tools::loadgen_command(
                &bins.loadgen,
                load,
                json,
                Some(BUSY_POLL_US),
            )),
            Self::Wrk => peers
                .wrk
                .path
                .as_deref()
                .map(|w| tools::describe(&tools::wrk_command(w, load, script)))
                .unwrap_or_default(),
            Self::Oha => peers
                .oha
                .path
                .as_deref()
                .map(|o| tools::describe(&tools::oha_command(o, load)))
                .unwrap_or_default(),
        }
    }
}

/// Runs every client `rounds` times against `url`, rotating the order each
/// round so no client always goes first (warm caches) or last.
fn compare_clients(
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    load: &Load,
    rounds: usize,
    tag: &str,
    clients: &[Client],
) -> Result<serde_json::Value, TaskError> {
    let script = tools::write_wrk_script(load.dir, load.body)?;
    let available = |c: &Client| match c {
        Client::Wrk => peers.wrk.path.is_some(),
        Client::Oha => peers.oha.path.is_some(),
        Client::Loadgen | Client::LoadgenBusyPoll => true,
    };
    let mut results: Vec<(Client, Vec<ClientRun>)> = clients
        .iter()
        .filter(|c| available(c))
        .map(|c| (*c, Vec::new()))
        .collect();
    pin.as_client();
    for round in 0..rounds {
        let n = results.len();
        for k in 0..n {
            let i = (k + round) % n;
            let client = results[i].0;
            let Some(run) = client.run(bins, peers, load, &script, &format!("{tag}-{round}"))?
            else {
                continue;
            };
            print_run(tag, round, client.name(), &run);
            results[i].1.push(run);
        }
    }
    pin.release();
    let prefix = pin.prefix(true);
    let mut out = serde_json::Map::new();
    for (client, runs) in &results {
        let command = client.command(bins, peers, load, &script);
        let result = collect(runs, format!("{prefix}{command}"));
        out.insert(client.name().to_owned(), json!(result));
    }
    let runs_of = |c: Client| {
        results
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, r)| r.as_slice())
    };
    let mut ratios = serde_json::Map::new();
    for ours in [Client::Loadgen, Client::LoadgenBusyPoll] {
        for peer in [Client::Wrk, Client::Oha] {
            if let (Some(a), Some(b)) = (runs_of(ours), runs_of(peer)) {
                ratios.insert(
                    format!("{}/{}", ours.name(), peer.name()),
                    json!(Ratios::of(a, b)),
                );
            }
        }
    }
    let p50 = |c: Client| {
        runs_of(c).and_then(|r| median_of(&r.iter().filter_map(|x| x.p50_us).collect::<Vec<_>>()))
    };
    let p50_diff = match (p50(Client::Loadgen), p50(Client::Wrk)) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    Ok(json!({
        "clients": out,
        "ratios": ratios,
        "loadgen_minus_wrk_p50_us": p50_diff,
    }))
}

fn print_run(tag: &str, round: usize, name: &str, run: &ClientRun) {
    println!(
        "  {tag} round {}: {name:17} {:>10.0} req/s  p50 {}  cpu {}/req  {} switches/req  server cpu {}/req{}",
        round + 1,
        run.rps,
        run.p50_us
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1} us")),
        run.cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.2} us")),
        run.switches_per_request()
            .map_or_else(|| "n/a".to_owned(), |n| format!("{n:.3}")),
        run.server_cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.2} us")),
        if run.errors > 0 {
            format!("  ({} FAILED requests: this run is not valid)", run.errors)
        } else {
            String::new()
        }
    );
}

/// One of our clients against one peer, over the same interleaved rounds.
#[derive(Debug, Clone, Serialize)]
struct Ratios {
    /// Median over rounds of (ours / peer) req/s within the same round: the
    /// figure the bars use, as it cancels drift between rounds (this VM's
    /// absolute rates move 10-20% from minute to minute).
    rps_paired_median: Option<f64>,
    /// First and third quartiles of the per-round ratios: how far one
    /// round can be trusted.
    rps_paired_interquartile: Option<[f64; 2]>,
    /// Each round's ours / peer req/s.
    rps_paired_rounds: Vec<f64>,
    /// Median req/s of ours over median req/s of the peer.
    rps_of_medians: Option<f64>,
    /// Median CPU per request of ours over the peer's.
    cpu_per_request: Option<f64>,
}

impl Ratios {
    fn of(ours: &[ClientRun], peer: &[ClientRun]) -> Self {
        let rps = |runs: &[ClientRun]| median_of(&runs.iter().map(|r| r.rps).collect::<Vec<_>>());
        let cpu = |runs: &[ClientRun]| {
            median_of(
                &runs
                    .iter()
                    .filter_map(ClientRun::cpu_us_per_request)
                    .collect::<Vec<_>>(),
            )
        };
        let paired: Vec<f64> = ours
            .iter()
            .zip(peer)
            .filter(|(_, p)| p.rps > 0.0)
            .map(|(o, p)| o.rps / p.rps)
            .collect();
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b.filter(|b| *b > 0.0)?);
        Self {
            rps_paired_median: median_of(&paired),
            rps_paired_interquartile: quantile_of(&paired, 0.25)
                .zip(quantile_of(&paired, 0.75))
                .map(|(q1, q3)| [q1, q3]),
            rps_paired_rounds: paired,
            rps_of_medians: ratio(rps(ours), rps(peer)),
            cpu_per_request: ratio(cpu(ours), cpu(peer)),
        }
    }
}

fn machine(label: Option<&str>) -> serde_json::Value {
    let proc_line = |file: &str, key: &str| {
        fs::read_to_string(file).ok().and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(key)
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            })
        })
    };
    let memory_gib = proc_line("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "label": label,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": proc_line("/proc/cpuinfo", "model name"),
        "memory_gib": memory_gib,
        "os": std::env::consts::OS,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).ok(),
    })
}

fn build() -> Result<(), TaskError> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace::root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "stub-server",
            "-p",
            "loadgen",
        ])
        .stdin(Stdio::null())
        .status()
        .map_err(|source| TaskError::Io {
            path: "cargo".into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(TaskError::Step(
            "the release build failed: run `cargo build --release` to see why".into(),
        ))
    }
}

fn bar(name: &str, met: Option<bool>, detail: String) -> serde_json::Value {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    println!("  [{verdict:12}] {name}: {detail}");
    json!({ "bar": name, "met": met, "detail": detail })
}

/// The share of one CPU each client gets in the client-bound runs: well
/// below what any of them needs to saturate nginx on the other CPU.
const CLIENT_CAP_SHARE: f64 = 0.4;

/// Client-bound runs against `load` (nginx): each client capped at
/// [`CLIENT_CAP_SHARE`] of a CPU, so its req/s is what it makes of the
/// same CPU. Busy polling is left out: a capped client is never idle.
fn compare_capped(
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    load: &Load,
    rounds: usize,
) -> Result<serde_json::Value, TaskError> {
    let Some(cap) = tools::CpuCap::create(CLIENT_CAP_SHARE) else {
        println!("client-bound: SKIPPED (no writable cgroup cpu controller; run as root)");
        return Ok(json!({ "skipped": "no writable cgroup cpu controller" }));
    };
    println!(
        "client-bound: nginx, each client capped at {:.0}% of one CPU (cgroup CFS quota)",
        cap.share * 100.0
    );
    let load = Load {
        cap: Some(&cap),
        ..*load
    };
    let mut result = compare_clients(
        bins,
        peers,
        pin,
        &load,
        rounds,
        "capped",
        &[Client::Loadgen, Client::Wrk, Client::Oha],
    )?;
    result["cpu_share"] = json!(cap.share);
    Ok(result)
}

/// The throughput bars against one server, judged on loadgen as configured
/// for a pinned throughput run (busy polling on, where the build has it);
/// loadgen with its defaults is in the detail and in bench.json. CPU per
/// request is recorded, not judged, here: with the server the bottleneck a
/// client's CPU includes sleeping and being woken, which a faster client
/// does more of (see the client-bound bars for what a client makes of its
/// CPU).
fn throughput_bars(server: &str, v: &serde_json::Value) -> Vec<serde_json::Value> {
    let ours = if v["ratios"]["loadgen-busy-poll/wrk"].is_object() {
        "loadgen-busy-poll"
    } else {
        "loadgen"
    };
    let rps_bar = |peer: &str, title: String, met: fn(f64) -> bool| {
        let pair = format!("{ours}/{peer}");
        let judged = paired_ratio(v, &pair);
        let default = paired_ratio(v, &format!("loadgen/{peer}"))
            .map_or_else(|| "n/a".to_owned(), |(_, text)| text);
        bar(
            &title,
            judged.as_ref().map(|(r, _)| met(*r)),
            judged.map_or_else(
                || format!("{peer} missing or no successful loadgen run"),
                |(_, text)| {
                    format!("{pair} = {text}, median of per-round ratios; loadgen with its defaults: {default}")
                },
            ),
        )
    };
    vec![
        rps_bar(
            "wrk",
            format!("loadgen rps within a few % of wrk ({server})"),
            |r| r >= 0.95,
        ),
        rps_bar("oha", format!("loadgen rps above oha ({server})"), |r| {
            r > 1.0
        }),
    ]
}

/// The client-bound bars: loadgen's req/s against wrk's and oha's with
/// every client held to the same share of a CPU.
fn client_bound_bars(v: Option<&serde_json::Value>) -> Vec<serde_json::Value> {
    let title = |peer: &str| format!("loadgen rps, client-bound (same CPU cap), vs {peer}");
    let Some(v) = v.filter(|v| v["ratios"].is_object()) else {
        let why = v
            .and_then(|v| v["skipped"].as_str())
            .unwrap_or("nginx missing");
        return vec![bar(&title("wrk"), None, why.to_owned())];
    };
    let judged = |peer: &str, met: fn(f64) -> bool, rule: &str| {
        let pair = format!("loadgen/{peer}");
        let ratio = paired_ratio(v, &pair);
        bar(
            &title(peer),
            ratio.as_ref().map(|(r, _)| met(*r)),
            ratio.map_or_else(
                || format!("{peer} missing"),
                |(_, text)| format!("{pair} = {text}, median of per-round ratios; {rule}"),
            ),
        )
    };
    vec![
        judged("wrk", |r| r >= 0.95, ">= 0.95 counted as met"),
        judged("oha", |r| r > 1.0, "> 1 counted as met"),
    ]
}

/// The median of `pair`'s per-round req/s ratios in a comparison `v` (pair
/// as in `"loadgen/wrk"`), and how it reads: `1.074 (IQR 0.972-1.105)`.
fn paired_ratio(v: &serde_json::Value, pair: &str) -> Option<(f64, String)> {
    let ratios = &v["ratios"][pair];
    let median = ratios["rps_paired_median"].as_f64()?;
    let iqr = &ratios["rps_paired_interquartile"];
    let spread = match (iqr[0].as_f64(), iqr[1].as_f64()) {
        (Some(q1), Some(q3)) => format!("IQR {q1:.3}-{q3:.3}"),
        _ => "no IQR".to_owned(),
    };
    Some((median, format!("{median:.3} ({spread})")))
}

fn run(args: BenchArgs) -> Result<PathBuf, TaskError> {
    if args.duration_s == 0 || args.duration_s > 60 {
        return Err(TaskError::BadFlag("--duration-s must be 1..=60".into()));
    }
    if args.rounds == 0 || args.rounds > 20 || args.connections == 0 || args.connections > 1024 {
        return Err(TaskError::BadFlag(
            "--rounds must be 1..=20 and --connections 1..=1024".into(),
        ));
    }
    let started = Instant::now();
    let dir = args.out.join("bench");
    fs::create_dir_all(&dir).map_err(|source| TaskError::Io {
        path: dir.clone(),
        source,
    })?;
    let bins = match &args.bin_dir {
        Some(d) => Bins {
            loadgen: d.join("loadgen"),
            server: d.join("stub-server"),
        },
        None => {
            println!("building stub-server and loadgen (release)");
            build()?;
            Bins {
                loadgen: workspace::release_bin("loadgen"),
                server: workspace::release_bin("stub-server"),
            }
        }
    };
    let peers = Peers {
        wrk: tools::find("wrk", &["-v"]),
        oha: tools::find("oha", &["--version"]),
        nginx: tools::find("nginx", &["-v"]),
    };
    for (name, peer) in [
        ("wrk", &peers.wrk),
        ("oha", &peers.oha),
        ("nginx", &peers.nginx),
    ] {
        match &peer.version {
            Some(v) => println!("peer {name}: {v}"),
            None => println!("peer {name}: MISSING (not installed; its comparisons are skipped)"),
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = Pinning::plan(cores, !args.no_pin);
    let threads = pin.client.len();
    println!(
        "{cores} cores; client CPUs {}, server CPUs {}{}",
        tools::cpu_list(&pin.client),
        tools::cpu_list(&pin.server),
        if pin.used {
            " (pinned)"
        } else {
            " (not pinned)"
        }
    );
    let duration = Duration::from_secs(args.duration_s);
    let server_workers = pin.server.len();
    // What every client run shares; each comparison sets the URL, the
    // server and the connection settings (the URL here is never used).
    let template = Load {
        url: "",
        connections: args.connections,
        threads,
        duration,
        body: BODY,
        dir: &dir,
        cap: None,
        server_pid: None,
        cacert: None,
        reuse: Reuse::KeepAlive,
    };

    // 1-4. Over plain HTTP: the simulator, self-overhead, nginx, accuracy.
    let plain = if args.tls_only {
        None
    } else {
        Some(Plain::measure(
            &bins,
            &peers,
            &pin,
            &template,
            args.rounds,
            server_workers,
        )?)
    };

    // 5. HTTPS against nginx, keep-alive and a connection per request.
    let tls = match &peers.nginx.path {
        Some(bin) => Some(tls::measure(
            &bins,
            &peers,
            &pin,
            &template,
            bin,
            server_workers,
            args.rounds,
        )?),
        None => None,
    };

    // 6. stats benchmarks.
    let stats = if args.skip_stats || args.tls_only {
        None
    } else {
        println!("stats: cargo bench -p stats --bench histogram (criterion)");
        Some(criterion::run(&dir)?)
    };

    // 7. ./run_tests once built.
    let run_tests = if args.skip_run_tests || args.tls_only {
        None
    } else {
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
        let mut cmd = Command::new(workspace::root().join("run_tests"));
        cmd.current_dir(workspace::root())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        let t0 = Instant::now();
        let status = process::run_with_deadline(&mut cmd, Duration::from_secs(600))?;
        Some(json!({
            "wall_s": t0.elapsed().as_secs_f64(),
            "exit_code": status.code(),
            "command": "./run_tests",
            "log": log,
        }))
    };

    // Bars.
    println!("bars:");
    let mut bars = Vec::new();
    if let Some(p) = &plain {
        bars.extend(p.bars());
    }
    bars.extend(tls::bars(tls.as_ref()));
    if let Some(s) = &stats {
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
    if let Some(r) = &run_tests {
        let wall = r["wall_s"].as_f64().unwrap_or(f64::NAN);
        bars.push(bar(
            "./run_tests in about a minute once built",
            Some(wall <= 75.0 && r["exit_code"].as_i64() == Some(0)),
            format!("{wall:.1} s, exit code {}", r["exit_code"]),
        ));
    }

    let (stub_capacity, loadgen_max) = plain
        .as_ref()
        .map_or((None, None), |p| (Some(p.stub_capacity()), p.loadgen_max()));
    let report = json!({
        "schema": "latency-toolkit/bench/v1",
        "generated_unix_s": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "bench_wall_s": started.elapsed().as_secs_f64(),
        "tls_only": args.tls_only,
        "machine": machine(args.label.as_deref()),
        "pinning": {
            "used": pin.used,
            "method": "sched_setaffinity on the spawning thread (the effect of taskset -c)",
            "client_cpus": tools::cpu_list(&pin.client),
            "server_cpus": tools::cpu_list(&pin.server),
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
            "client_threads": threads,
            "server_workers_nginx": server_workers,
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
        "run_tests": run_tests,
        "bars": bars,
    });
    // A TLS-only run records beside, not over, the full bench's file.
    let name = if args.tls_only {
        "bench-tls.json"
    } else {
        "bench.json"
    };
    let path = args.out.join(name);
    let text = serde_json::to_string_pretty(&report).map_err(|e| TaskError::Step(e.to_string()))?;
    fs::write(&path, text + "\n").map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The measurements over plain HTTP (everything but the TLS comparison,
/// the stats benchmarks and `./run_tests`).
struct Plain {
    stub: serde_json::Value,
    low_load: serde_json::Value,
    /// `None` where nginx is missing.
    nginx: Option<serde_json::Value>,
    client_bound: Option<serde_json::Value>,
    accuracy: accuracy::Accuracy,
}

impl Plain {
    fn measure(
        bins: &Bins,
        peers: &Peers,
        pin: &Pinning,
        template: &Load,
        rounds: usize,
        server_workers: usize,
    ) -> Result<Self, TaskError> {
        let dir = template.dir;
        // 1. Throughput against the zero-cost simulator.
        println!(
            "throughput: zero-cost stub-server, {} connections, {} s",
            template.connections,
            template.duration.as_secs()
        );
        let zero_cost_args: Vec<String> = ["--profile", "zero-cost"].map(str::to_owned).to_vec();
        pin.as_server();
        let server = ServerProcess::start(
            &bins.server,
            &zero_cost_args,
            &dir.join("stub-zero-cost.log"),
        );
        pin.release();
        let server = server?;
        let url = server.infer_url();
        let load = Load {
            url: &url,
            server_pid: Some(server.pid()),
            ..*template
        };
        let mut throughput_clients = vec![Client::Loadgen];
        if tools::loadgen_has_flag(&bins.loadgen, "--busy-poll-us") {
            throughput_clients.push(Client::LoadgenBusyPoll);
        }
        throughput_clients.extend([Client::Wrk, Client::Oha]);
        let stub = compare_clients(bins, peers, pin, &load, rounds, "stub", &throughput_clients)?;

        // 2. Self-overhead: one connection, one request at a time.
        println!("self-overhead: zero-cost stub-server, 1 connection");
        let low = Load {
            connections: 1,
            threads: 1,
            duration: load.duration.min(Duration::from_secs(3)),
            ..load
        };
        // Busy polling is for a client kept busy; at one request in flight
        // it would only spin through each round trip.
        let low_load = compare_clients(
            bins,
            peers,
            pin,
            &low,
            rounds,
            "lowload",
            &[Client::Loadgen, Client::Wrk, Client::Oha],
        )?;
        drop(server);

        // 3. Throughput against nginx (a server much cheaper than the simulator).
        let (nginx, client_bound) = match &peers.nginx.path {
            Some(bin) => {
                println!("throughput: nginx static JSON, {server_workers} worker(s)");
                // nginx's workers drop root for `nobody`, who may not traverse
                // the output directory (e.g. under /root): serve from the
                // world-readable temp directory instead.
                let nginx_dir = std::env::temp_dir()
                    .join(format!("latency-bench-nginx-{}", std::process::id()));
                pin.as_server();
                let nginx = tools::Nginx::start(bin, &nginx_dir, server_workers, BODY, None);
                pin.release();
                let nginx = nginx?;
                let load = Load {
                    url: &nginx.url,
                    server_pid: Some(nginx.pid()),
                    ..load
                };
                let server_bound = compare_clients(
                    bins,
                    peers,
                    pin,
                    &load,
                    rounds,
                    "nginx",
                    &throughput_clients,
                )?;
                let client_bound = compare_capped(bins, peers, pin, &load, rounds)?;
                (Some(server_bound), Some(client_bound))
            }
            None => (None, None),
        };

        // 4. Service-time accuracy under load (fresh simulator).
        println!("stub-server service-time accuracy (placeholder shape, jitter 0, c=20, n=200)");
        let accuracy = accuracy::measure(&bins.server, &bins.loadgen, dir)?;
        Ok(Self {
            stub,
            low_load,
            nginx,
            client_bound,
            accuracy,
        })
    }

    /// The simulator's zero-cost req/s with the fastest client.
    fn stub_capacity(&self) -> f64 {
        ["loadgen", "loadgen-busy-poll", "wrk", "oha"]
            .iter()
            .filter_map(|c| rps_of(&self.stub, c))
            .fold(f64::NAN, f64::max)
    }

    /// What loadgen sends at best against nginx (its own ceiling).
    fn loadgen_max(&self) -> Option<f64> {
        self.nginx.as_ref().and_then(|v| {
            ["loadgen", "loadgen-busy-poll"]
                .iter()
                .filter_map(|c| rps_of(v, c))
                .reduce(f64::max)
        })
    }

    fn bars(&self) -> Vec<serde_json::Value> {
        let mut bars = Vec::new();
        for (name, v) in [
            ("zero-cost stub-server", Some(&self.stub)),
            ("nginx", self.nginx.as_ref()),
        ] {
            match v {
                Some(v) => bars.extend(throughput_bars(name, v)),
                None => bars.push(bar(
                    &format!("loadgen rps within a few % of wrk ({name})"),
                    None,
                    "nginx missing".into(),
                )),
            }
        }
        bars.extend(client_bound_bars(self.client_bound.as_ref()));
        let diff = self.low_load["loadgen_minus_wrk_p50_us"].as_f64();
        bars.push(bar(
            "loadgen P50 at low load <= wrk's + 50 us",
            diff.map(|d| d <= 50.0),
            diff.map_or_else(
                || "wrk missing".into(),
                |d| format!("loadgen - wrk = {d:+.1} us"),
            ),
        ));
        let stub_capacity = self.stub_capacity();
        let loadgen_max = self.loadgen_max();
        bars.push(bar(
            "stub-server zero-cost rps > what loadgen can send",
            loadgen_max.map(|l| stub_capacity > l),
            loadgen_max.map_or_else(
                || "nginx missing: loadgen's own ceiling unknown".into(),
                |l| format!("stub-server {stub_capacity:.0} req/s (fastest client) vs loadgen {l:.0} req/s against nginx"),
            ),
        ));
        let accuracy = &self.accuracy;
        let p99 = accuracy.server_timing_overshoot.p99_ms;
        bars.push(bar(
            "service time honoured within 2 ms at P99",
            Some(p99.abs() <= 2.0),
            format!(
                "Server-Timing overshoot p50 {:+.3} ms, p99 {p99:+.3} ms; client-side p99 {:+.3} ms",
                accuracy.server_timing_overshoot.p50_ms, accuracy.client_overshoot.p99_ms
            ),
        ));
        bars
    }
}

/// A client's median req/s in a comparison `v`.
fn rps_of(v: &serde_json::Value, client: &str) -> Option<f64> {
    v["clients"][client]["rps_median"].as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_splits_the_cores() {
        let p = Pinning::plan(2, true);
        assert_eq!(
            (p.client.clone(), p.server.clone(), p.used),
            (vec![0], vec![1], true)
        );
        let p = Pinning::plan(16, true);
        assert_eq!((p.client.len(), p.server[0]), (8, 8));
        assert!(!Pinning::plan(1, true).used);
        assert!(!Pinning::plan(4, false).used);
        assert_eq!(p.prefix(true), "taskset -c 0-7 ");
    }

    #[test]
    fn median_ignores_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
