//! `cargo xtask perf`: Before, analysis, After, verification and the report.
//!
//! Each phase gets a fresh simulator with the same profile, so no phase
//! inherits another's queue, connections or warm state; the clients run as
//! separate processes; every output lands in the chosen directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::accounting::ClientCpu;
use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::machine::{LoadSnapshot, Machine};
use crate::process::{self, ServerProcess};
use crate::{python, workspace};

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
    /// The After's client: `auto` (probe the batch cost, fit the service,
    /// simulate the candidate fixes, run the one the what-if engine chooses)
    /// or `optimized` (the fixed profile: pooled, batches of 10, 5 ms wait).
    #[arg(long, default_value = "auto", value_name = "AFTER")]
    pub(crate) after: String,
    /// After the After, search the highest open-loop rate its client keeps
    /// the SLA at (`loadgen capacity`, against a fresh simulator); the
    /// report charts it beside the what-if engine's predicted capacity.
    #[arg(long)]
    pub(crate) capacity: bool,
    /// With --capacity: the measured duration of each rate step (e.g. 10s;
    /// loadgen's default is 20s).
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        requires = "capacity"
    )]
    pub(crate) capacity_step: String,
    /// Run N Before/After pairs, interleaved, each on fresh servers with a
    /// seed of its own; the proof states the P95 difference with a bootstrap
    /// interval and passes only if every pair met the SLA.
    #[arg(long, default_value_t = 1, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u32> { what: "--repeat", min: 1, max: 20 }.parse(t))]
    pub(crate) repeat: u32,
    /// The SLA: P95 latency must be at most this many ms after optimization.
    #[arg(
        long,
        default_value_t = 800.0,
        value_name = "MS",
        allow_negative_numbers = true,
        value_parser = |t: &str| model::args::FloatBound { what: "--sla-p95-ms", min: 0.0, max: f64::INFINITY, min_inclusive: false }.parse(t)
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

    step("1/6", "build the release binaries");
    let bins = build::release_binaries(&PACKAGES)?;
    let setup = Setup {
        bins,
        target,
        client,
    };

    step(
        "2/6",
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

    run_pairs(&args, &setup.bins, started, "", |dir, seed| {
        run_pair(&setup, python.as_deref(), &args, dir, seed)
    })
}

/// What the console repeats of a pair's `comparison.json`.
#[derive(serde::Deserialize)]
struct EvidenceWarnings {
    #[serde(default)]
    warnings: Vec<String>,
}

/// The simulator's seed in the first pair; pair `n` runs with
/// `FIRST_SEED + n - 1`, so one pair reproduces today's single run and each
/// further pair draws the service's randomness afresh.
pub(crate) const FIRST_SEED: u64 = 42;

/// Runs `pair` `--repeat` times, each in its own directory with its own
/// seed, Before and After interleaved (each pair runs its Before, then its
/// After); with more than one pair, `report repeats` draws the interleaved
/// proof. The workflow's outcome is met only if every pair's verdict was.
/// `also` names extra outputs.
pub(crate) fn run_pairs(
    args: &PerfArgs,
    bins: &Binaries,
    started: std::time::Instant,
    also: &str,
    mut pair: impl FnMut(&Path, u64) -> Result<bool, TaskError>,
) -> Result<Outcome, TaskError> {
    let mut verdicts = Vec::new();
    let mut dirs = Vec::new();
    for number in 1..=args.repeat {
        let dir = pair_dir(&args.out, number);
        create_dir(&dir.join("logs"))?;
        let seed = FIRST_SEED + u64::from(number) - 1;
        if args.repeat > 1 {
            println!(
                "\n=== Before/After pair {number} of {} (server seed {seed}) ===",
                args.repeat
            );
        }
        verdicts.push(pair(&dir, seed)?);
        dirs.push(dir);
    }
    let mut proof_met = true;
    if args.repeat > 1 {
        step("repeats", "the interleaved proof across the pairs");
        let mut cmd = Command::new(bins.path("report"));
        cmd.arg("repeats")
            .args(["--out-dir".as_ref(), args.out.as_os_str()])
            .args(&dirs);
        proof_met = run_report(&mut cmd)?;
    }
    // The reports put their warnings first; the console repeats them last,
    // where a reader of a long log looks.
    for dir in &dirs {
        let path = dir.join("comparison.json");
        if let Ok(EvidenceWarnings { warnings }) = crate::json::read(&path) {
            for warning in warnings {
                eprintln!("\nWARNING ({}): {warning}", path.display());
            }
        }
    }
    println!(
        "\nresults in {} (report.html, report.md, comparison.json{also}{}); workflow took {:.1} s",
        args.out.display(),
        if args.repeat > 1 {
            ", repeats.md, repeats.json"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    Ok(if proof_met && verdicts.iter().all(|&met| met) {
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
    if !["auto", "optimized"].contains(&args.after.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--after {:?} is not known; allowed: auto, optimized",
            args.after
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

/// `report summary LOG`: one log's exact summary, read into `T`.
pub(crate) fn report_summary<T: serde::de::DeserializeOwned>(
    bins: &Binaries,
    log: &Path,
) -> Result<T, TaskError> {
    let output = Command::new(bins.path("report"))
        .arg("summary")
        .arg(log)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TaskError::Io {
            path: bins.path("report"),
            source,
        })?;
    if !output.status.success() {
        return Err(TaskError::Step(format!(
            "report summary {} failed: {}",
            log.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    crate::json::parse(&String::from_utf8_lossy(&output.stdout), log)
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

/// Starts a fresh simulator (or names the endpoint) for one phase, with
/// `seed` unless the user's server flags set one.
fn start_target(
    setup: &Setup,
    log: &Path,
    seed: Option<u64>,
) -> Result<(Option<ServerProcess>, String), TaskError> {
    match &setup.target {
        Target::Endpoint(url) => Ok((None, url.clone())),
        Target::Simulator { profile, extra } => {
            let mut args = vec!["--profile".to_owned(), profile.clone()];
            if let Some(seed) = seed.filter(|_| !sets_seed(extra)) {
                args.extend(["--seed".to_owned(), seed.to_string()]);
            }
            args.extend(extra.iter().cloned());
            let server = ServerProcess::start(&setup.bins.path("stub-server"), &args, log)?;
            let url = server.infer_url();
            Ok((Some(server), url))
        }
    }
}

/// Whether the user's simulator flags choose the seed themselves.
fn sets_seed(server_args: &[String]) -> bool {
    server_args
        .iter()
        .any(|a| a == "--seed" || a.starts_with("--seed="))
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
    let (_server, url) = start_target(setup, &out.join("logs/functional-server.log"), None)?;
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
    seed: u64,
) -> Result<bool, TaskError> {
    step(
        "3/6",
        "Before: the original input.py, then its Rust reproduction",
    );
    let mut phases = serde_json::Map::new();
    let input_py = match python {
        Some(python) => with_load(&mut phases, "before_input_py", || {
            run_input_py(python, setup, dir, seed)
        })?,
        None => None,
    };
    let input_py_ran = input_py.is_some();
    // What input.py's own process cost: the report weighs its one event
    // loop's busy share against the server's pace.
    if let (Some(run), Some(phase)) = (
        input_py,
        phases
            .get_mut("before_input_py")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        phase.insert("client_cpu_s".into(), run.cpu_s.into());
        phase.insert("client_wall_s".into(), run.wall_s.into());
    }
    let baseline = ["--profile".to_owned(), "baseline".to_owned()];
    with_load(&mut phases, "before", || {
        run_loadgen_phase(setup, dir, "before", &baseline, seed)
    })?;

    step(
        "4/6",
        if args.after == "auto" {
            "analysis: probe the batch cost, fit the service, predict the candidate fixes"
        } else {
            "analysis: none (--after optimized runs the fixed profile)"
        },
    );
    let crate::whatif::AfterChoice {
        flags: after_flags,
        whatif_json,
        open_loop,
    } = with_load(&mut phases, "analysis", || {
        choose_after(setup, args, dir, seed)
    })?;

    step(
        "5/6",
        "After: the chosen client, same profile, same 400 inputs, same concurrency",
    );
    with_load(&mut phases, "after", || {
        run_loadgen_phase(setup, dir, "after", &after_flags, seed)
    })?;

    let capacity_json = if args.capacity {
        step(
            "capacity",
            "the After client's highest open-loop rate under the SLA",
        );
        Some(with_load(&mut phases, "capacity", || {
            run_capacity(setup, args, dir, ("capacity", &after_flags, None), seed)
        })?)
    } else {
        None
    };
    // The After is chosen for the Before's closed loop, where a response
    // frees a burst of slots and batches fill at once; traffic that arrives
    // spread out fills them only with a longer wait. When the engine names
    // another client for that, its capacity is measured too.
    let open_loop_json = match &open_loop {
        Some(client) if args.capacity && client.loadgen_args != after_flags => {
            step(
                "capacity",
                &format!(
                    "the client for open-loop traffic ({}, predicted {:.1} req/s): its highest rate under the SLA",
                    client.label, client.max_rate_rps
                ),
            );
            // The search doubles from a quarter of the prediction: a step
            // or two more than from half, and it still brackets the answer
            // when the prediction is up to four times too high (beyond that
            // nothing holds at the start, and the report says so).
            let start_rps = (client.max_rate_rps / 4.0).max(1.0);
            Some(with_load(&mut phases, "capacity_open_loop", || {
                run_capacity(
                    setup,
                    args,
                    dir,
                    ("capacity_open_loop", &client.loadgen_args, Some(start_rps)),
                    seed,
                )
            })?)
        }
        _ => None,
    };

    step("6/6", "compare, verify, diagnose, report");
    write_conditions(
        &setup.target,
        &setup.client,
        python,
        dir,
        (seed, &after_flags),
        phases,
    )?;
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
        .args(
            whatif_json
                .iter()
                .flat_map(|path| ["--prediction".as_ref(), path.as_os_str()]),
        )
        .args(
            capacity_json
                .iter()
                .flat_map(|path| ["--capacity".as_ref(), path.as_os_str()]),
        )
        .args(
            open_loop_json
                .iter()
                .flat_map(|path| ["--capacity-open-loop".as_ref(), path.as_os_str()]),
        )
        .args([
            "--conditions".as_ref(),
            dir.join("conditions.json").as_os_str(),
        ])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(args.slos.iter().flat_map(|slo| ["--sla", slo.as_str()]))
        .args(["--out-dir".as_ref(), dir.as_os_str()]);
    run_report(&mut report)
}

/// What one input.py run cost its process.
#[derive(Debug, Clone, Copy)]
struct InputPyRun {
    /// CPU time of the Python process, user plus system, s.
    cpu_s: f64,
    /// From its start to its exit, s.
    wall_s: f64,
}

/// Runs the original input.py against a fresh target; `None` when it
/// failed (the reproduction is then the Before).
fn run_input_py(
    python: &Path,
    setup: &Setup,
    dir: &Path,
    seed: u64,
) -> Result<Option<InputPyRun>, TaskError> {
    let (_server, url) = start_target(
        setup,
        &dir.join("logs/before-input-py-server.log"),
        Some(seed),
    )?;
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
    // The target runs on until `_server` drops, so the only child to end
    // between the two readings is input.py.
    let cpu_before = ClientCpu::of_reaped_children();
    let started = Instant::now();
    let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
    let used = ClientCpu::of_reaped_children().since(cpu_before);
    let run = InputPyRun {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: used.user_s + used.system_s,
    };
    let printed = fs::read_to_string(&stdout_path).unwrap_or_default();
    for line in printed.lines() {
        println!("  | {line}");
    }
    if !status.success() {
        eprintln!("warning: input.py exited with {status}; the Rust reproduction is the Before");
        return Ok(None);
    }
    Ok(Some(run))
}

/// One loadgen phase against a fresh target; `flags` choose the client
/// (`--profile baseline`, or the After's flags).
fn run_loadgen_phase(
    setup: &Setup,
    dir: &Path,
    name: &str,
    flags: &[String],
    seed: u64,
) -> Result<(), TaskError> {
    let log = dir.join(format!("logs/{name}-server.log"));
    let (_server, url) = start_target(setup, &log, Some(seed))?;
    println!("loadgen {}  ({url})", flags.join(" "));
    let status = process::run_with_deadline(
        loadgen(&url, setup)
            .args(flags)
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
            "loadgen {} could not run ({status})",
            flags.join(" ")
        ))),
    }
}

/// `loadgen capacity` with a client's flags against a fresh target, as
/// `name` (its JSON `DIR/NAME.json`, its server's log `logs/NAME-server.log`),
/// from `start_rps` when given; returns the JSON it wrote.
fn run_capacity(
    setup: &Setup,
    args: &PerfArgs,
    dir: &Path,
    (name, flags, start_rps): (&str, &[String], Option<f64>),
    seed: u64,
) -> Result<PathBuf, TaskError> {
    let (_server, url) = start_target(
        setup,
        &dir.join(format!("logs/{name}-server.log")),
        Some(seed),
    )?;
    let json_path = dir.join(format!("{name}.json"));
    let mut cmd = Command::new(setup.bins.path("loadgen"));
    cmd.arg("capacity")
        .args(["--url", &url, "--api", &setup.client.api])
        .args(flags)
        .args(&setup.client.extra)
        .args(["--sla", &format!("p95<={}", args.sla_p95_ms)])
        .args(args.slos.iter().flat_map(|slo| ["--sla", slo.as_str()]))
        .args(["--step-duration", &args.capacity_step, "--warmup", "2s"])
        // Inside the workflow's limit on one client run.
        .args(["--time-limit", "9m"])
        .args(["--json".as_ref(), json_path.as_os_str()])
        .stdin(Stdio::null());
    if let Some(rps) = start_rps {
        cmd.args(["--start-rate", &format!("{rps:.2}")]);
    }
    if matches!(setup.target, Target::Endpoint(_)) && setup.client.api == "simulator" {
        cmd.arg("--no-verify");
    }
    println!("loadgen capacity {}  ({url})", flags.join(" "));
    let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
    match status.code() {
        // 1: no rate was sustainable; the JSON says so and the report shows it.
        Some(0 | 1) => Ok(json_path),
        _ => Err(TaskError::Step(format!(
            "loadgen capacity could not run ({status}); see the message above"
        ))),
    }
}

/// The After's flags: the what-if engine's choice (`--after auto`), or the
/// fixed profile. Returns the flags and, for auto, the engine's JSON.
fn choose_after(
    setup: &Setup,
    args: &PerfArgs,
    dir: &Path,
    seed: u64,
) -> Result<crate::whatif::AfterChoice, TaskError> {
    if args.after == "optimized" {
        return Ok(crate::whatif::AfterChoice::optimized());
    }
    let (_server, url) = start_target(setup, &dir.join("logs/probe-server.log"), Some(seed))?;
    println!(
        "probe: {} batches at each batch size {:?}, one batch at a time ({url})",
        crate::whatif::PROBE_BATCHES,
        crate::whatif::PROBE_BATCH_SIZES
    );
    let probes = crate::whatif::probe(|| loadgen(&url, setup), dir, CLIENT_LIMIT)?;
    drop(_server);
    let json_path = dir.join("whatif.json");
    let mut cmd = Command::new(setup.bins.path("report"));
    cmd.arg("whatif")
        .args(["--before".as_ref(), dir.join("before.csv").as_os_str()])
        .args(
            probes
                .iter()
                .flat_map(|p| ["--probe".as_ref(), p.as_os_str()]),
        )
        .args(["--concurrency", "20", "--requests", "400"])
        .args(["--sla-p95-ms", &args.sla_p95_ms.to_string()])
        .args(["--json".as_ref(), json_path.as_os_str()]);
    if matches!(setup.target, Target::Simulator { .. }) {
        // The simulator has a dynamic batcher: its settings are server
        // changes the engine may predict (never choose).
        cmd.arg("--server-dynamic-batching");
    }
    Ok(crate::whatif::choose(&mut cmd, &json_path, CLIENT_LIMIT))
}

/// Runs one phase, recording in `phases` the machine's load at its start
/// and the CPU time stolen during it: a slow phase on a busy machine says
/// so in `conditions.phases`.
pub(crate) fn with_load<T>(
    phases: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    phase: impl FnOnce() -> Result<T, TaskError>,
) -> Result<T, TaskError> {
    let start = LoadSnapshot::now();
    let outcome = phase();
    phases.insert(name.to_owned(), start.phase_json(&LoadSnapshot::now()));
    outcome
}

fn write_conditions(
    target: &Target,
    client: &Client,
    python: Option<&Path>,
    dir: &Path,
    (seed, after_flags): (u64, &[String]),
    phases: serde_json::Map<String, serde_json::Value>,
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
        "after_client": format!("loadgen {}", after_flags.join(" ")),
        "server_seed": (matches!(target, Target::Simulator { .. }) && !sets_seed(&server_args))
            .then_some(seed),
        "api": client.api,
        "loadgen_args": client.extra,
        "quantile_method": "linear",
        "python": python.map(python::version),
    });
    write_conditions_file(dir, conditions, phases)
}

/// Writes `DIR/conditions.json`: `conditions` (a JSON object) with the
/// machine's description and each phase's load added, the same keys in
/// every workflow.
pub(crate) fn write_conditions_file(
    dir: &Path,
    mut conditions: serde_json::Value,
    phases: serde_json::Map<String, serde_json::Value>,
) -> Result<(), TaskError> {
    if let Some(map) = conditions.as_object_mut() {
        map.insert("machine".into(), Machine::probe().conditions_json());
        map.insert("phases".into(), serde_json::Value::Object(phases));
    }
    let path = dir.join("conditions.json");
    let text = serde_json::to_string_pretty(&conditions).unwrap_or_default();
    fs::write(&path, text).map_err(|source| TaskError::Io { path, source })
}
