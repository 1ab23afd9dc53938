//! `cargo xtask perf`: Before, analysis, After, verification and the report.
//!
//! Each phase gets a fresh simulator with the same profile, so no phase
//! inherits another's queue, connections or warm state; the clients run as
//! separate processes; every output lands in the chosen directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::machine::Machine;
use crate::process::{self, ServerProcess};
use crate::{json, python, workspace};

/// Flags of `cargo xtask perf` (and so of `./run_tests`).
#[derive(clap::Args)]
pub struct PerfArgs {
    /// What is measured: `inference` (the task's inference endpoint) or
    /// `llm` (an OpenAI-compatible LLM server whose time to first token
    /// breaks its SLA; streamed, TTFT and inter-token latency measured).
    #[arg(long, default_value = "inference", value_name = "SCENARIO")]
    pub(crate) scenario: String,
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
    /// An objective on the After beyond the P95 SLA, repeatable, checked by
    /// the report: 'p99<=1000', 'error_rate<=0.01', 'throughput_rps>=100';
    /// for LLM runs also 'ttft_p95<=500', 'itl_p99<=50', 'tpot_mean<=40',
    /// 'goodput_rps>=5' [default for --scenario llm: ttft_p95<=500, itl_p99<=50].
    #[arg(long = "sla", value_name = "EXPR")]
    pub(crate) slos: Vec<String>,
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

/// The packages whose binaries the workflow runs.
pub(crate) const PACKAGES: [&str; 3] = ["stub-server", "loadgen", "report"];

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

/// What every phase needs: the binaries, the target, the client.
struct Setup {
    bins: Binaries,
    target: Target,
    client: Client,
}

pub fn run(args: PerfArgs) -> Result<Outcome, TaskError> {
    validate(&args)?;
    if args.scenario == "llm" {
        if let Err(e) = process::install_signal_handlers() {
            eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interruption may leave simulators running");
        }
        return crate::perf_llm::run(&args);
    }
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
    let bins = build::release_binaries(&PACKAGES)?;
    let setup = Setup {
        bins,
        target,
        client,
    };

    step(
        "2/5",
        "functional check: a few requests, single and batched",
    );
    functional_check(&setup, &args.out)?;
    let client = &setup.client;

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
        match python::ensure_venv(&workspace::root()?) {
            Ok(python) => Some(python),
            Err(why) => {
                loud_fallback(&why);
                None
            }
        }
    };

    run_pairs(&args, started, "", |dir| {
        run_pair(&setup, python.as_deref(), &args, dir)
    })
}

/// Runs `pair` `--repeat` times, each in its own directory, summarises the
/// repeats, and says where the results are; the workflow's outcome is met
/// only if every pair's verdict was. `also` names extra outputs.
pub(crate) fn run_pairs(
    args: &PerfArgs,
    started: std::time::Instant,
    also: &str,
    mut pair: impl FnMut(&Path) -> Result<bool, TaskError>,
) -> Result<Outcome, TaskError> {
    let mut verdicts = Vec::new();
    for number in 1..=args.repeat {
        let dir = pair_dir(&args.out, number);
        create_dir(&dir.join("logs"))?;
        if args.repeat > 1 {
            println!("\n=== Before/After pair {number} of {} ===", args.repeat);
        }
        verdicts.push(pair(&dir)?);
    }
    if args.repeat > 1 {
        summarize_repeats(&args.out, args.repeat)?;
    }
    println!(
        "\nresults in {} (report.html, report.md, comparison.json{also}); workflow took {:.1} s",
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
    if !["inference", "llm"].contains(&args.scenario.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--scenario {:?} is not known; allowed: inference, llm",
            args.scenario
        )));
    }
    if args.scenario == "llm" {
        let conflicting = [
            (args.server != "simulator", "--server"),
            (args.url.is_some(), "--url"),
            (!args.server_args.is_empty(), "--server-arg"),
            (args.api != "simulator", "--api"),
            (args.profile != "placeholder", "--profile"),
            (!args.loadgen_args.is_empty(), "--loadgen-arg"),
        ];
        if let Some((_, flag)) = conflicting.iter().find(|(set, _)| *set) {
            return Err(TaskError::BadFlag(format!(
                "{flag} cannot be used with --scenario llm (it runs the llm-slots scenario on the simulator; point loadgen --api openai-chat at your own LLM server)"
            )));
        }
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

/// Runs a `report compare` command: `true` when its verdict is met,
/// `false` when not, an error when it could not write the report.
pub(crate) fn run_report(cmd: &mut Command) -> Result<bool, TaskError> {
    let status = process::run_with_deadline(cmd, CLIENT_LIMIT)?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(TaskError::Step(format!(
            "the report could not be written ({status}); see the message above"
        ))),
    }
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

/// Starts a fresh simulator (or names the endpoint) for one phase.
fn start_target(setup: &Setup, log: &Path) -> Result<(Option<ServerProcess>, String), TaskError> {
    match &setup.target {
        Target::Endpoint(url) => Ok((None, url.clone())),
        Target::Simulator { profile, extra } => {
            let mut args = vec!["--profile".to_owned(), profile.clone()];
            args.extend(extra.iter().cloned());
            let server = ServerProcess::start(&setup.bins.path("stub-server"), &args, log)?;
            let url = server.infer_url();
            Ok((Some(server), url))
        }
    }
}

fn loadgen(url: &str, setup: &Setup) -> Command {
    let client = &setup.client;
    let mut cmd = Command::new(setup.bins.path("loadgen"));
    cmd.args(["--url", url, "--api", &client.api]);
    if matches!(setup.target, Target::Endpoint(_)) && client.api == "simulator" {
        cmd.arg("--no-verify");
    }
    cmd.args(&client.extra);
    cmd.stdin(Stdio::null());
    cmd
}

fn functional_check(setup: &Setup, out: &Path) -> Result<(), TaskError> {
    let (_server, url) = start_target(setup, &out.join("logs/functional-server.log"))?;
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
            loadgen(&url, setup).args(flags).stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "functional check failed: `loadgen --url {url} {}` reported failed requests",
                flags.join(" ")
            )));
        }
    }
    let checked =
        if matches!(setup.target, Target::Simulator { .. }) && setup.client.api == "simulator" {
            "answered and verified"
        } else {
            "answered (outputs digested, not verified)"
        };
    println!("ok: single and batched requests {checked} at {url}");
    Ok(())
}

/// One Before/After pair; returns whether its verdict was met.
fn run_pair(
    setup: &Setup,
    python: Option<&Path>,
    args: &PerfArgs,
    dir: &Path,
) -> Result<bool, TaskError> {
    step(
        "3/5",
        "Before: the original input.py, then its Rust reproduction",
    );
    let input_py_ran = match python {
        Some(python) => run_input_py(python, setup, dir)?,
        None => false,
    };
    run_loadgen_phase(setup, dir, "before", "baseline")?;

    step(
        "4/5",
        "After: the optimized client, same profile, same 400 inputs, same concurrency",
    );
    run_loadgen_phase(setup, dir, "after", "optimized")?;

    step("5/5", "compare, verify, diagnose, report");
    write_conditions(&setup.target, &setup.client, python, dir)?;
    let mut report = Command::new(setup.bins.path("report"));
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
        .args(args.slos.iter().flat_map(|slo| ["--sla", slo.as_str()]))
        .args(["--out-dir".as_ref(), dir.as_os_str()]);
    run_report(&mut report)
}

fn run_input_py(python: &Path, setup: &Setup, dir: &Path) -> Result<bool, TaskError> {
    let (_server, url) = start_target(setup, &dir.join("logs/before-input-py-server.log"))?;
    let stdout_path = dir.join("input_py_stdout.txt");
    let stdout = fs::File::create(&stdout_path).map_err(|source| TaskError::Io {
        path: stdout_path.clone(),
        source,
    })?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace::root()?.join("input.py"))
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
    setup: &Setup,
    dir: &Path,
    name: &str,
    profile: &str,
) -> Result<(), TaskError> {
    let log = dir.join(format!("logs/{name}-server.log"));
    let (_server, url) = start_target(setup, &log)?;
    println!("loadgen --profile {profile}  ({url})");
    let status = process::run_with_deadline(
        loadgen(&url, setup)
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
        "machine": Machine::probe().conditions_json(),
    });
    let path = dir.join("conditions.json");
    let text = serde_json::to_string_pretty(&conditions).unwrap_or_default();
    fs::write(&path, text).map_err(|source| TaskError::Io { path, source })
}

/// What the repeat summary reads of each pair's `comparison.json` (the
/// report's `Comparison`).
#[derive(Debug, Deserialize)]
struct PairComparison {
    before: SideP95,
    after: SideP95,
    verdict: PairVerdict,
}

#[derive(Debug, Deserialize)]
struct SideP95 {
    /// Null when no request succeeded.
    #[serde(deserialize_with = "json::nullable")]
    p95_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PairVerdict {
    met: bool,
}

/// Each side's P95 and the verdict of one pair's `comparison.json`.
fn read_pair(path: &Path) -> Result<(f64, f64, bool), TaskError> {
    let pair: PairComparison = json::read(path)?;
    match (pair.before.p95_ms, pair.after.p95_ms) {
        (Some(before), Some(after)) => Ok((before, after, pair.verdict.met)),
        (before, _) => Err(TaskError::Json {
            path: path.to_owned(),
            problem: format!(
                "field `{}.p95_ms` is null (no request succeeded): no P95 to summarize",
                if before.is_none() { "before" } else { "after" }
            ),
        }),
    }
}

pub(crate) fn summarize_repeats(out: &Path, repeat: u32) -> Result<(), TaskError> {
    let mut before_p95 = Vec::new();
    let mut after_p95 = Vec::new();
    let mut met = Vec::new();
    for pair in 1..=repeat {
        let (before, after, pair_met) = read_pair(&pair_dir(out, pair).join("comparison.json"))?;
        before_p95.push(before);
        after_p95.push(after);
        met.push(pair_met);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary output directory, removed on drop.
    struct Out(PathBuf);

    impl Out {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("xtask-perf-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Writes pair `pair`'s comparison.json.
        fn pair(&self, pair: u32, text: &str) -> PathBuf {
            let dir = pair_dir(&self.0, pair);
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("comparison.json");
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Out {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn comparison(before_p95: &str, after_p95: &str, met: bool) -> String {
        format!(
            r#"{{"schema_version": 1, "verdict": {{"met": {met}, "reasons": []}},
                "before": {{"total": 400, "p50_ms": 90.0, "p95_ms": {before_p95}}},
                "after": {{"total": 400, "p50_ms": 20.0, "p95_ms": {after_p95}}}}}"#
        )
    }

    #[test]
    fn repeats_are_summarized_from_each_pairs_comparison() {
        let out = Out::new("repeats");
        out.pair(1, &comparison("100.0", "30.0", true));
        out.pair(2, &comparison("110.0", "32.0", false));
        summarize_repeats(&out.0, 2).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.0.join("repeats.json")).unwrap()).unwrap();
        assert_eq!(summary["before_p95_ms"], serde_json::json!([100.0, 110.0]));
        assert_eq!(summary["after_p95_ms"], serde_json::json!([30.0, 32.0]));
        assert_eq!(summary["met"], serde_json::json!([true, false]));
        assert_eq!(summary["met_every_pair"], false);
    }

    #[test]
    fn a_missing_verdict_or_p95_is_an_error_naming_file_and_field() {
        let out = Out::new("missing");
        let path = out.pair(
            1,
            &comparison("100.0", "30.0", true).replace("\"met\"", "\"ok\""),
        );
        let err = read_pair(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: missing field `verdict.met`", path.display())
        );
        let path = out.pair(
            1,
            &comparison("100.0", "30.0", true).replace("\"p95_ms\": 30.0", "\"p95\": 30.0"),
        );
        assert_eq!(
            read_pair(&path).unwrap_err().to_string(),
            format!("{}: missing field `after.p95_ms`", path.display())
        );
        let path = out.pair(1, &comparison("null", "30.0", true));
        assert_eq!(
            read_pair(&path).unwrap_err().to_string(),
            format!(
                "{}: field `before.p95_ms` is null (no request succeeded): no P95 to summarize",
                path.display()
            )
        );
        assert!(matches!(
            summarize_repeats(&out.0, 2),
            Err(TaskError::Io { .. }) | Err(TaskError::Json { .. })
        ));
    }
}
