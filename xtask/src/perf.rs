//! `cargo xtask perf`: Before, analysis, After, verification and the report.
//!
//! Each phase gets a fresh simulator with the same profile, so no phase
//! inherits another's queue, connections or warm state; the clients run as
//! separate processes; every output lands in the chosen directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::process::{self, ProcessError, ServerProcess};
use crate::{python, workspace};

/// Flags of `cargo xtask perf` (and so of `./run_tests`).
#[derive(clap::Args)]
pub struct PerfArgs {
    /// The server of every phase: `simulator` (stub-server, fresh per
    /// phase) or `triton` (a real NVIDIA Triton started by the workflow
    /// from the nvidia-pytriton wheel, fresh per phase, loaded over KServe v2).
    #[arg(long, default_value = "simulator", value_name = "SERVER")]
    pub(crate) server: String,
    /// Measure your endpoint (any http:// or https:// URL) instead of
    /// starting the simulator; outputs are then compared by digest, not
    /// verified. Every phase loads the same endpoint.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Request format of every loadgen phase: `simulator` (the simulator's
    /// wire format, which input.py also sends) or `template` (your JSON:
    /// give --loadgen-arg=--body-template=FILE; input.py is then skipped).
    #[arg(long, default_value = "simulator", value_name = "API")]
    api: String,
    /// Extra loadgen flag, repeatable, applied identically to every loadgen
    /// run (e.g. `--loadgen-arg=--cacert=ca.pem`,
    /// `--loadgen-arg=--body-template=body.json`, `--loadgen-arg=-H=Authorization: Bearer T`).
    #[arg(long = "loadgen-arg", value_name = "FLAG", allow_hyphen_values = true)]
    loadgen_args: Vec<String>,
    /// Run N Before/After pairs and report confidence intervals across them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) repeat: u32,
    /// The SLA: P95 latency must be at most this many ms after optimization.
    #[arg(
        long,
        default_value_t = 800.0,
        value_name = "MS",
        allow_negative_numbers = true
    )]
    pub(crate) sla_p95_ms: f64,
    /// Directory for logs and reports (created if missing).
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Do not run input.py; the Rust reproduction is the Before.
    #[arg(long)]
    skip_python: bool,
    /// Simulator profile for every phase.
    #[arg(long, default_value = "placeholder", value_name = "NAME")]
    profile: String,
    /// Extra simulator flag, repeatable (e.g. `--server-arg=--base-ms=20`);
    /// applied identically to every phase.
    #[arg(long = "server-arg", value_name = "FLAG", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// What the workflow concluded.
pub enum Outcome {
    /// SLA met after optimization, no failed request, every output verified.
    Met,
    /// SLA or quality not met.
    NotMet,
}

pub(crate) const CLIENT_LIMIT: Duration = Duration::from_secs(600);
const BUILD_LIMIT: Duration = Duration::from_secs(3600);

/// The simulator, or the real endpoint the user named.
enum Target {
    Simulator { profile: String, extra: Vec<String> },
    Endpoint(String),
}

/// The request formats loadgen speaks (`loadgen --api`).
const APIS: [&str; 2] = ["simulator", "template"];

/// How every loadgen phase talks to the target.
struct Client {
    api: String,
    extra: Vec<String>,
}

pub fn run(args: PerfArgs) -> Result<Outcome, TaskError> {
    validate(&args)?;
    if args.server == "triton" {
        if let Err(e) = process::install_signal_handlers() {
            eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interruption may leave Triton running");
        }
        return crate::perf_triton::run(&args);
    }
    // Ctrl-C or SIGTERM: stop the children, keep what they flushed, never
    // leave a simulator running (see `process`).
    if let Err(e) = process::install_signal_handlers() {
        eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interruption may leave simulators running");
    }
    let started = Instant::now();
    let target = match &args.url {
        Some(url) => Target::Endpoint(url.clone()),
        None => Target::Simulator {
            profile: args.profile.clone(),
            extra: args.server_args.clone(),
        },
    };
    let client = Client {
        api: args.api.clone(),
        extra: args.loadgen_args.clone(),
    };
    create_dir(&args.out.join("logs"))?;
    if let Target::Endpoint(url) = &target {
        println!("target: {url} (your endpoint: no simulator is started; every phase loads it)");
    }

    step("1/5", "build the release binaries");
    build()?;

    step(
        "2/5",
        "functional check: a few requests, single and batched",
    );
    functional_check(&target, &client, &args.out)?;

    let python = if args.skip_python {
        println!("input.py skipped (--skip-python): the Rust reproduction is the Before.");
        None
    } else if client.api != "simulator" {
        println!(
            "input.py skipped: it sends the simulator's wire format, which an --api {} endpoint does not read; the Rust reproduction (same load shape, your body) is the Before.",
            client.api
        );
        None
    } else {
        match python::ensure_venv(&workspace::root()) {
            Ok(python) => Some(python),
            Err(why) => {
                loud_fallback(&why);
                None
            }
        }
    };

    let mut verdicts = Vec::new();
    for pair in 1..=args.repeat {
        let dir = pair_dir(&args.out, pair);
        create_dir(&dir.join("logs"))?;
        if args.repeat > 1 {
            println!("\n=== Before/After pair {pair} of {} ===", args.repeat);
        }
        verdicts.push(run_pair(&target, &client, python.as_deref(), &args, &dir)?);
    }
    if args.repeat > 1 {
        summarize_repeats(&args.out, args.repeat)?;
    }
    println!(
        "\nresults in {} (report.html, report.md, comparison.json); workflow took {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(if verdicts.iter().all(|&met| met) {
        Outcome::Met
    } else {
        Outcome::NotMet
    })
}

fn validate(args: &PerfArgs) -> Result<(), TaskError> {
    if !(args.sla_p95_ms.is_finite() && args.sla_p95_ms > 0.0) {
        return Err(TaskError::BadFlag(format!(
            "--sla-p95-ms must be a positive number of ms, got {}",
            args.sla_p95_ms
        )));
    }
    if !(1..=20).contains(&args.repeat) {
        return Err(TaskError::BadFlag(format!(
            "--repeat must be between 1 and 20, got {}",
            args.repeat
        )));
    }
    if !["simulator", "triton"].contains(&args.server.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--server {:?} is not known; allowed: simulator, triton",
            args.server
        )));
    }
    if args.server == "triton" {
        let conflicting = [
            (args.url.is_some(), "--url"),
            (!args.server_args.is_empty(), "--server-arg"),
            (args.api != "simulator", "--api"),
            (args.profile != "placeholder", "--profile"),
        ];
        if let Some((_, flag)) = conflicting.iter().find(|(set, _)| *set) {
            return Err(TaskError::BadFlag(format!(
                "{flag} cannot be used with --server triton (it runs the placeholder scenario on Triton over KServe v2)"
            )));
        }
    }
    if !APIS.contains(&args.api.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--api {:?} is not known; allowed: {}",
            args.api,
            APIS.join(", ")
        )));
    }
    if let Some(url) = &args.url {
        let scheme_ok = ["http://", "https://"].iter().any(|s| {
            url.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        if !scheme_ok {
            return Err(TaskError::BadFlag(format!(
                "--url {url:?} must be an absolute http:// or https:// URL"
            )));
        }
    }
    if args.url.is_some() && !args.server_args.is_empty() {
        return Err(TaskError::BadFlag(
            "--server-arg configures the simulator; it cannot be used with --url".into(),
        ));
    }
    Ok(())
}

pub(crate) fn pair_dir(out: &Path, pair: u32) -> PathBuf {
    if pair == 1 {
        out.to_path_buf()
    } else {
        out.join(format!("repeat-{pair}"))
    }
}

pub(crate) fn step(number: &str, what: &str) {
    println!("\n[{number}] {what}");
}

fn loud_fallback(why: &str) {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}\n!! input.py CANNOT RUN: {why}");
    eprintln!("!! Falling back: the Rust reproduction (loadgen --profile baseline) is the Before.");
    eprintln!(
        "!! Install python3 (3.9+) with venv and pip, then re-run to include input.py.\n{bar}"
    );
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), TaskError> {
    fs::create_dir_all(dir).map_err(|source| TaskError::Io {
        path: dir.to_owned(),
        source,
    })
}

pub(crate) fn build() -> Result<(), TaskError> {
    if let Some(dir) = workspace::prebuilt_bin_dir() {
        println!(
            "using prebuilt binaries from {} ({}); not building",
            dir.display(),
            workspace::BIN_DIR_ENV
        );
        return Ok(());
    }
    // A registered child, so an interruption stops the build too.
    let status = process::run_with_deadline(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace::root())
            .args(["build", "--release", "--quiet", "--bins"])
            .args(["-p", "stub-server", "-p", "loadgen", "-p", "report"]),
        BUILD_LIMIT,
    );
    if let Some(signal) = process::interrupted() {
        return Err(ProcessError::Interrupted(signal).into());
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(TaskError::Build),
    }
}

/// Starts a fresh simulator (or names the endpoint) for one phase.
fn start_target(target: &Target, log: &Path) -> Result<(Option<ServerProcess>, String), TaskError> {
    match target {
        Target::Endpoint(url) => Ok((None, url.clone())),
        Target::Simulator { profile, extra } => {
            let mut args = vec!["--profile".to_owned(), profile.clone()];
            args.extend(extra.iter().cloned());
            let server = ServerProcess::start(&workspace::release_bin("stub-server"), &args, log)?;
            let url = server.infer_url();
            Ok((Some(server), url))
        }
    }
}

fn loadgen(url: &str, target: &Target, client: &Client) -> Command {
    let mut cmd = Command::new(workspace::release_bin("loadgen"));
    cmd.args(["--url", url, "--api", &client.api]);
    if matches!(target, Target::Endpoint(_)) && client.api == "simulator" {
        cmd.arg("--no-verify");
    }
    cmd.args(&client.extra);
    cmd.stdin(Stdio::null());
    cmd
}

fn functional_check(target: &Target, client: &Client, out: &Path) -> Result<(), TaskError> {
    let (_server, url) = start_target(target, &out.join("logs/functional-server.log"))?;
    let checks: [&[&str]; 2] = [
        &["-n", "8", "-c", "2", "--connection", "per-request"],
        &[
            "-n",
            "12",
            "-c",
            "6",
            "--connection",
            "pooled",
            "--batch-size",
            "3",
            "--batch-wait-ms",
            "5",
        ],
    ];
    for flags in checks {
        let status = process::run_with_deadline(
            loadgen(&url, target, client)
                .args(flags)
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "functional check failed: `loadgen --url {url} {}` reported failed requests",
                flags.join(" ")
            )));
        }
    }
    let checked = if matches!(target, Target::Simulator { .. }) && client.api == "simulator" {
        "answered and verified"
    } else {
        "answered (outputs digested, not verified)"
    };
    println!("ok: single and batched requests {checked} at {url}");
    Ok(())
}

/// One Before/After pair; returns whether its verdict was met.
fn run_pair(
    target: &Target,
    client: &Client,
    python: Option<&Path>,
    args: &PerfArgs,
    dir: &Path,
) -> Result<bool, TaskError> {
    step(
        "3/5",
        "Before: the original input.py, then its Rust reproduction",
    );
    let input_py_ran = match python {
        Some(python) => run_input_py(python, target, dir)?,
        None => false,
    };
    run_loadgen_phase(target, client, dir, "before", "baseline")?;

    step(
        "4/5",
        "After: the optimized client, same profile, same 400 inputs, same concurrency",
    );
    run_loadgen_phase(target, client, dir, "after", "optimized")?;

    step("5/5", "compare, verify, diagnose, report");
    write_conditions(target, client, python, dir)?;
    let mut report = Command::new(workspace::release_bin("report"));
    report.arg("compare");
    if input_py_ran {
        report
            .args([
                "--before".as_ref(),
                dir.join("before_input_py.csv").as_os_str(),
            ])
            .args(["--before-label", "Before (input.py)"])
            .args([
                "--reproduction".as_ref(),
                dir.join("before.csv").as_os_str(),
            ])
            .args([
                "--input-py-stdout".as_ref(),
                dir.join("input_py_stdout.txt").as_os_str(),
            ]);
    } else {
        report
            .args(["--before".as_ref(), dir.join("before.csv").as_os_str()])
            .args(["--before-label", "Before (Rust reproduction of input.py)"]);
    }
    report
        .args(["--after".as_ref(), dir.join("after.csv").as_os_str()])
        .args(["--after-label", "After (optimized client)"])
        .args([
            "--conditions".as_ref(),
            dir.join("conditions.json").as_os_str(),
        ])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(["--out-dir".as_ref(), dir.as_os_str()]);
    let status = process::run_with_deadline(&mut report, CLIENT_LIMIT)?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(TaskError::Step(format!(
            "the report could not be written ({status}); see the message above"
        ))),
    }
}

fn run_input_py(python: &Path, target: &Target, dir: &Path) -> Result<bool, TaskError> {
    let (_server, url) = start_target(target, &dir.join("logs/before-input-py-server.log"))?;
    let stdout_path = dir.join("input_py_stdout.txt");
    let stdout = fs::File::create(&stdout_path).map_err(|source| TaskError::Io {
        path: stdout_path.clone(),
        source,
    })?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace::root().join("input.py"))
        .env("API_URL", &url)
        .env("OUTPUT_CSV", dir.join("before_input_py.csv"))
        .stdin(Stdio::null())
        .stdout(stdout);
    // A proxy from the environment would route loopback traffic elsewhere.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    println!("python input.py  (API_URL={url})");
    let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
    let printed = fs::read_to_string(&stdout_path).unwrap_or_default();
    for line in printed.lines() {
        println!("  | {line}");
    }
    if !status.success() {
        eprintln!("warning: input.py exited with {status}; the Rust reproduction is the Before");
        return Ok(false);
    }
    Ok(true)
}

fn run_loadgen_phase(
    target: &Target,
    client: &Client,
    dir: &Path,
    name: &str,
    profile: &str,
) -> Result<(), TaskError> {
    let log = dir.join(format!("logs/{name}-server.log"));
    let (_server, url) = start_target(target, &log)?;
    println!("loadgen --profile {profile}  ({url})");
    let status = process::run_with_deadline(
        loadgen(&url, target, client)
            .args(["--profile", profile])
            .args([
                "--out".as_ref(),
                dir.join(format!("{name}.csv")).as_os_str(),
            ])
            .args([
                "--json".as_ref(),
                dir.join(format!("{name}.json")).as_os_str(),
            ]),
        CLIENT_LIMIT,
    )?;
    // Exit 1 means some requests failed: that is data for the report, not a
    // reason to stop. Anything else means the client could not run.
    match status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(TaskError::Step(format!(
            "loadgen --profile {profile} could not run ({status})"
        ))),
    }
}

fn write_conditions(
    target: &Target,
    client: &Client,
    python: Option<&Path>,
    dir: &Path,
) -> Result<(), TaskError> {
    let (target_kind, profile, server_args) = match target {
        Target::Simulator { profile, extra } => ("simulator", profile.clone(), extra.clone()),
        Target::Endpoint(url) => ("endpoint", url.clone(), Vec::new()),
    };
    let conditions = serde_json::json!({
        "target": target_kind,
        "server_profile": profile,
        "server_args": server_args,
        "fresh_server_per_phase": matches!(target, Target::Simulator { .. }),
        "requests": 400,
        "concurrency": 20,
        "timeout_s": 30,
        "payloads": "input.py build_payload(i), i = 0..399 (byte-identical, pinned by a test)",
        "before_client": "input.py (httpx, new AsyncClient and connection per request)",
        "reproduction_client": "loadgen --profile baseline (new connection per request)",
        "after_client": "loadgen --profile optimized (pooled keep-alive, client micro-batching B=10, W=5 ms)",
        "api": client.api,
        "loadgen_args": client.extra,
        "quantile_method": "linear",
        "python": python.map(python::version),
        "machine": machine(),
    });
    let path = dir.join("conditions.json");
    let text = serde_json::to_string_pretty(&conditions).unwrap_or_default();
    fs::write(&path, text).map_err(|source| TaskError::Io { path, source })
}

pub(crate) fn machine() -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "kernel": kernel,
    })
}

pub(crate) fn summarize_repeats(out: &Path, repeat: u32) -> Result<(), TaskError> {
    let mut before_p95 = Vec::new();
    let mut after_p95 = Vec::new();
    let mut met = Vec::new();
    for pair in 1..=repeat {
        let path = pair_dir(out, pair).join("comparison.json");
        let text = fs::read_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TaskError::Step(format!("{}: {e}", path.display())))?;
        let p95 = |side: &str| json[side]["p95_ms"].as_f64();
        match (p95("before"), p95("after")) {
            (Some(b), Some(a)) => {
                before_p95.push(b);
                after_p95.push(a);
            }
            _ => {
                return Err(TaskError::Step(format!(
                    "{}: no p95_ms on both sides",
                    path.display()
                )))
            }
        }
        met.push(json["verdict"]["met"].as_bool().unwrap_or(false));
    }
    let ci = |values: &[f64]| {
        stats::bootstrap::mean_ci(values, 0.95)
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null)
    };
    let summary = serde_json::json!({
        "pairs": repeat,
        "before_p95_ms": before_p95,
        "after_p95_ms": after_p95,
        "before_p95_mean_ci95": ci(&before_p95),
        "after_p95_mean_ci95": ci(&after_p95),
        "met_every_pair": met.iter().all(|&m| m),
        "met": met,
    });
    println!(
        "\nacross {repeat} pairs: {}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    let path = out.join("repeats.json");
    fs::write(
        &path,
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )
    .map_err(|source| TaskError::Io { path, source })
}
