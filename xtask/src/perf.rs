//! `cargo xtask perf`: Before, analysis, After, verification and the
//! report, written once for every server the workflow measures; what
//! differs between them (how a server starts, how loadgen talks to it,
//! what the analysis is told) is a [`Backend`].
//!
//! Each pair of Before and After:
//!
//! 1. Before: input.py and its Rust reproduction where they apply, else the
//!    reproduction (`loadgen --profile baseline`), each against a fresh
//!    server.
//! 2. Analysis: the batch-cost probe where the what-if engine applies, then
//!    `report whatif`, which decides the After (and any server change to
//!    measure beside it) and writes `whatif.json`.
//! 3. After: what report decided, carried out as it says: its loadgen
//!    flags, its server setting. Then the server change beside it, and
//!    with `--capacity` the capacity searches.
//! 4. `conditions.json`, then `report compare` (and for the server change,
//!    its own report in `server-change/`).
//!
//! `--repeat N` runs N pairs interleaved, each on fresh servers with a seed
//! of its own, and `report repeats` draws the proof. The verdict is also
//! `junit.xml` for CI: the pair's checks, or with `--repeat` every pair's
//! and the proof's, in one file. The clients always run
//! as separate processes; every output lands in the chosen directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::comparison::Comparison;
use model::conditions::{Conditions, Phase};
use model::whatif::{CandidateKind, Decision, DecisionRole, ServerSetting, WhatifReport};

use crate::backend::{self, Backend, Target};
use crate::bench::accounting::ClientCpu;
use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::machine::{LoadSnapshot, Machine};
use crate::whatif::OpenLoopClient;
use crate::{process, python, workspace};

/// Flags of `cargo xtask perf` (and so of `./run_tests`).
#[derive(clap::Args)]
pub(crate) struct PerfArgs {
    /// What is measured: `inference` (the task's inference endpoint) or
    /// `llm` (an OpenAI-compatible LLM server whose time to first token
    /// breaks its SLA; streamed, TTFT and inter-token latency measured).
    #[arg(long, default_value = "inference", value_name = "SCENARIO")]
    pub(crate) scenario: String,
    /// The server of every phase: `simulator` (stub-server, fresh per
    /// phase), `triton` (a real NVIDIA Triton started by the workflow
    /// from the nvidia-pytriton wheel, fresh per phase, loaded over KServe
    /// v2) or, with `--scenario llm`, `llama` (llama.cpp's llama-server on
    /// a tiny local model, fresh per phase, its /metrics scraped).
    #[arg(long, default_value = "simulator", value_name = "SERVER")]
    pub(crate) server: String,
    /// How loadgen talks to `--server triton`: `http` (KServe v2 over HTTP,
    /// port 8000's protocol) or `grpc` (KServe v2 over gRPC, port 8001's,
    /// with a decoupled streaming model beside for the functional check).
    #[arg(long, default_value = "http", value_name = "PROTOCOL")]
    pub(crate) protocol: String,
    /// Measure your endpoint (any http:// or https:// URL) instead of
    /// starting the simulator; outputs are then compared by digest, not
    /// verified. Every phase loads the same endpoint.
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Request format of every loadgen phase: `simulator` (the simulator's
    /// wire format, which input.py also sends) or `template` (your JSON:
    /// give --loadgen-arg=--body-template=FILE; input.py is then skipped).
    #[arg(long, default_value = "simulator", value_name = "API")]
    pub(crate) api: String,
    /// Extra loadgen flag, repeatable, applied identically to every loadgen
    /// run (e.g. `--loadgen-arg=--cacert=ca.pem`,
    /// `--loadgen-arg=--body-template=body.json`, `--loadgen-arg=-H=Authorization: Bearer T`).
    #[arg(long = "loadgen-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub(crate) loadgen_args: Vec<String>,
    /// The After's client: `auto` (probe the batch cost; `report whatif`
    /// fits the service, simulates the candidate fixes and chooses; the
    /// After runs its choice) or `optimized` (the fixed profile: pooled,
    /// batches of 10, 5 ms wait). Server changes report decides (Triton's
    /// dynamic batcher, an LLM server's max_num_seqs) run either way.
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
    pub(crate) skip_python: bool,
    /// Simulator profile for every phase [default: placeholder; with
    /// --scenario llm: llm-slots].
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Extra simulator flag, repeatable (e.g. `--server-arg=--base-ms=20`,
    /// with --scenario llm `--server-arg=--max-num-seqs=4`); applied
    /// identically to every phase, a server change report decides on top.
    #[arg(long = "server-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub(crate) server_args: Vec<String>,
}

/// What the workflow concluded.
pub(crate) enum Outcome {
    /// SLA met after optimization, no failed request, every output verified.
    Met,
    /// SLA or quality not met.
    NotMet,
}

pub(crate) const CLIENT_LIMIT: Duration = Duration::from_secs(600);

/// The workflow's verdict as JUnit XML, in `--out`: the one pair's
/// checks (`report compare --junit`), or with `--repeat N` one suite per
/// pair and one for the proof (`report repeats --junit`).
pub(crate) const JUNIT_FILE: &str = "junit.xml";

/// The packages whose binaries the workflow runs.
pub(crate) const PACKAGES: [&str; 3] = ["stub-server", "loadgen", "report"];

/// The request formats loadgen speaks (`loadgen --api`).
const APIS: [&str; 2] = ["simulator", "template"];

/// The seed of the servers in the first pair; pair `n` runs with
/// `FIRST_SEED + n - 1`, so one pair reproduces today's single run and each
/// further pair draws the service's randomness afresh.
pub(crate) const FIRST_SEED: u64 = 42;

/// The fewest requests `loadgen capacity` lets a rate step count (it
/// refuses a `--start-rate` x `--step-duration` under that).
const CAPACITY_MIN_REQUESTS_PER_STEP: f64 = 5.0;

/// Where a capacity search starts (`--start-rate`), from the engine's
/// predicted capacity of the client, if any, and `--capacity-step`. The
/// search doubles from a quarter of the prediction: a step or two more
/// than from half, and it still brackets the answer when the prediction
/// is up to four times too high (beyond that nothing holds at the start,
/// and the report says so). Without a prediction it is loadgen's own
/// start, 1 req/s (`None`). Either way the first step must count enough
/// requests for loadgen to accept it: a short step (or a prediction near
/// 0, an SLA nothing meets) starts higher, rounded up to the two decimals
/// the flag is written with.
fn capacity_start_rps(predicted_rps: Option<f64>, capacity_step: &str) -> Option<f64> {
    // A step loadgen cannot parse is refused by it, with its own message.
    let step_s = model::args::parse_duration(capacity_step)
        .map(|d| d.as_secs_f64())
        .ok()
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let floor_rps = ((CAPACITY_MIN_REQUESTS_PER_STEP / step_s) * 100.0).ceil() / 100.0;
    match predicted_rps {
        Some(rps) => Some((rps / 4.0).max(floor_rps).max(1.0)),
        None => (floor_rps > 1.0).then_some(floor_rps),
    }
}

pub(crate) fn run(args: PerfArgs) -> Result<Outcome, TaskError> {
    validate(&args)?;
    // Ctrl-C or SIGTERM: stop the children, keep what they flushed, never
    // leave a server running (see `process`).
    if let Err(e) = process::install_signal_handlers() {
        eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interruption may leave servers running");
    }
    let started = Instant::now();
    create_dir(&args.out.join("logs"))?;
    let mut backend = backend::choose(&args);
    if !backend.spec().intro.is_empty() {
        println!("{}", backend.spec().intro);
    }
    let steps = Steps {
        prepare: backend.spec().prepare.is_some(),
    };

    steps.show(Step::Build, "build the release binaries");
    let bins = build::release_binaries(&PACKAGES)?;
    if let Some(what) = backend.spec().prepare {
        steps.show(Step::Prepare, what);
        backend.prepare()?;
    }
    steps.show(
        Step::Functional,
        "functional check: a few requests, single and batched, every answer checked",
    );
    let workflow = Workflow {
        args: &args,
        bins: &bins,
        backend: &*backend,
        python: None,
        steps,
    };
    workflow.functional_check()?;
    let python = match &backend.spec().input_py_skip {
        Some(why) => {
            println!("{why}");
            None
        }
        None => match python::ensure_venv(&workspace::root()?) {
            Ok(python) => Some(python),
            Err(why) => {
                loud_fallback(&why);
                None
            }
        },
    };
    let workflow = Workflow { python, ..workflow };
    run_pairs(&args, &bins, started, |dir, seed| {
        workflow.run_pair(dir, seed)
    })
}

/// The console's numbered steps.
#[derive(Clone, Copy)]
struct Steps {
    /// Whether the server needs installing first (Triton).
    prepare: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Build,
    Prepare,
    Functional,
    Before,
    Analysis,
    After,
    Report,
}

impl Steps {
    fn show(&self, which: Step, what: &str) {
        let order = [
            Step::Build,
            Step::Prepare,
            Step::Functional,
            Step::Before,
            Step::Analysis,
            Step::After,
            Step::Report,
        ];
        let shown: Vec<Step> = order
            .into_iter()
            .filter(|s| *s != Step::Prepare || self.prepare)
            .collect();
        let number = shown.iter().position(|s| *s == which).map_or(0, |i| i + 1);
        step(&format!("{number}/{}", shown.len()), what);
    }
}

/// What one phase runs: the client's flags against the server with a
/// setting, and how the report labels it.
#[derive(Debug, Clone, PartialEq)]
struct Arm {
    /// The report's label of the run.
    label: String,
    /// loadgen's flags choosing the client.
    flags: Vec<String>,
    /// The server setting applied, if any.
    setting: Option<ServerSetting>,
    /// The decision of `whatif.json` it carries out, if any.
    role: Option<DecisionRole>,
}

impl Arm {
    /// input.py's load shape: a new connection per request.
    fn baseline() -> Self {
        Self {
            label: String::new(),
            flags: vec!["--profile".to_owned(), "baseline".to_owned()],
            setting: None,
            role: None,
        }
    }

    /// The fixed profile, with no analysis behind it.
    fn optimized() -> Self {
        Self {
            label: "After (optimized client)".to_owned(),
            flags: vec!["--profile".to_owned(), "optimized".to_owned()],
            setting: None,
            role: None,
        }
    }

    /// A decision of `whatif.json`, as the run that carries it out.
    fn decided(decision: &Decision, role: DecisionRole) -> Self {
        let label = match (role, decision.kind) {
            (DecisionRole::ServerChange, _) => format!("Server change ({})", decision.label),
            (DecisionRole::After, CandidateKind::Server) => {
                format!("After (server change: {})", decision.label)
            }
            (DecisionRole::After, _) => "After (optimized client)".to_owned(),
        };
        Self {
            label,
            flags: decision.loadgen_args.clone(),
            setting: decision.server_setting,
            role: Some(role),
        }
    }
}

/// What the analysis leaves the pair to run.
#[derive(Debug, Clone)]
struct Plan {
    /// The After.
    after: Arm,
    /// A server change measured beside the After, not gating the verdict.
    beside: Option<Arm>,
    /// `whatif.json`, when `report whatif` ran.
    whatif_json: Option<PathBuf>,
    /// The engine's client for open-loop capacity, when it names one.
    open_loop: Option<OpenLoopClient>,
}

impl Plan {
    fn optimized() -> Self {
        Self {
            after: Arm::optimized(),
            beside: None,
            whatif_json: None,
            open_loop: None,
        }
    }

    /// The plan `report whatif` wrote into `json`; `engine_ran` says
    /// whether the engine was asked for the After.
    fn from_whatif(whatif: &WhatifReport, json: &Path, engine_ran: bool) -> Self {
        let after = match &whatif.after {
            Some(decision) => Arm::decided(decision, DecisionRole::After),
            None => {
                if engine_ran {
                    eprintln!("warning: the what-if engine proposed no client-side candidate; the After is the fixed optimized profile");
                }
                Arm::optimized()
            }
        };
        Self {
            after,
            beside: whatif
                .server_change
                .as_ref()
                .map(|d| Arm::decided(d, DecisionRole::ServerChange)),
            whatif_json: Some(json.to_owned()),
            open_loop: whatif
                .engine
                .as_ref()
                .and_then(|e| e.predicted_capacity_rps.best.clone()),
        }
    }
}

/// Everything a pair needs: the flags, the binaries, the server, input.py.
struct Workflow<'a> {
    args: &'a PerfArgs,
    bins: &'a Binaries,
    backend: &'a dyn Backend,
    /// input.py's interpreter, when input.py runs.
    python: Option<PathBuf>,
    steps: Steps,
}

impl Workflow<'_> {
    /// loadgen (or `loadgen capacity`) aimed at `url`, speaking `api` (the
    /// phases' own by default), with the backend's and the user's flags.
    fn loadgen(&self, subcommand: Option<&str>, url: &str, api: Option<&str>) -> Command {
        self.loadgen_with(subcommand, url, api, &self.backend.spec().client_args)
    }

    /// [`Workflow::loadgen`] with `client_args` in place of the backend's.
    fn loadgen_with(
        &self,
        subcommand: Option<&str>,
        url: &str,
        api: Option<&str>,
        client_args: &[String],
    ) -> Command {
        let spec = self.backend.spec();
        let mut cmd = Command::new(self.bins.path("loadgen"));
        cmd.args(subcommand)
            .args(["--url", url, "--api", api.unwrap_or(&spec.api)])
            .args(client_args)
            .args(&self.args.loadgen_args)
            .stdin(Stdio::null());
        cmd
    }

    /// A fresh server for phase `name` (its log `logs/NAME-SUFFIX.log`).
    fn start(
        &self,
        dir: &Path,
        name: &str,
        seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        let log = dir.join(format!(
            "logs/{name}-{}.log",
            self.backend.spec().log_suffix
        ));
        self.backend.start(self.bins, &log, seed, setting)
    }

    /// The objectives of every judgement: `--sla`, else the backend's.
    fn slos(&self) -> &[String] {
        if self.args.slos.is_empty() {
            &self.backend.spec().default_slos
        } else {
            &self.args.slos
        }
    }

    fn functional_check(&self) -> Result<(), TaskError> {
        let spec = self.backend.spec();
        let log = self.args.out.join("logs").join(spec.functional_log);
        let target = self.backend.start_functional(self.bins, &log)?;
        for check in &spec.functional_checks {
            let api = check.api.unwrap_or(&spec.api);
            let client_args = check.client_args.as_ref().unwrap_or(&spec.client_args);
            let status = process::run_with_deadline(
                self.loadgen_with(None, &target.url, Some(api), client_args)
                    .args(check.flags.split_whitespace())
                    .stdout(Stdio::null()),
                CLIENT_LIMIT,
            )?;
            if !status.success() {
                return Err(TaskError::Step(format!(
                    "functional check failed: `loadgen --url {} --api {api} {}` reported failed requests",
                    target.url,
                    check.flags
                )));
            }
        }
        println!("{}", spec.functional_ok.replace("{url}", &target.url));
        Ok(())
    }

    /// One Before/After pair; returns whether its verdict was met.
    fn run_pair(&self, dir: &Path, seed: u64) -> Result<bool, TaskError> {
        let mut phases = BTreeMap::new();
        self.steps.show(
            Step::Before,
            &match &self.python {
                Some(_) => "Before: the original input.py, then its Rust reproduction".to_owned(),
                None => format!(
                    "Before: the baseline client ({} requests, {} at a time) against {}",
                    model::BASELINE_REQUESTS,
                    self.backend.spec().concurrency,
                    self.backend.describe(seed, None)
                ),
            },
        );
        let input_py = match &self.python {
            Some(python) => with_load(&mut phases, "before_input_py", || {
                self.run_input_py(python, dir, seed)
            })?,
            None => None,
        };
        // What input.py's own process cost: the report weighs its one event
        // loop's busy share against the server's pace.
        if let (Some(run), Some(phase)) = (input_py, phases.get_mut("before_input_py")) {
            phase.client_cpu_s = Some(run.cpu_s);
            phase.client_wall_s = Some(run.wall_s);
        }
        with_load(&mut phases, "before", || {
            self.phase(dir, "before", &Arm::baseline(), seed)
        })?;

        let plan = with_load(&mut phases, "analysis", || self.analyse(dir, seed))?;

        self.steps.show(
            Step::After,
            &match &plan.after.setting {
                None => format!(
                    "After: {}, same server, same {} inputs, same concurrency",
                    plan.after.flags.join(" "),
                    model::BASELINE_REQUESTS
                ),
                Some(_) => format!(
                    "After: the same client against {} (a server change)",
                    self.backend.describe(seed, plan.after.setting.as_ref())
                ),
            },
        );
        with_load(&mut phases, "after", || {
            self.phase(dir, "after", &plan.after, seed)
        })?;
        if let Some(beside) = &plan.beside {
            println!(
                "\nserver change, measured beside the After: {}",
                self.backend.describe(seed, beside.setting.as_ref())
            );
            with_load(&mut phases, "server_change", || {
                self.phase(dir, "server_change", beside, seed)
            })?;
        }
        let capacity = self.capacities(dir, &plan, seed, &mut phases)?;

        self.steps
            .show(Step::Report, "compare, verify, diagnose, report");
        self.write_conditions(dir, seed, &plan, phases)?;
        let input_py_ran = input_py.is_some();
        // One run: its verdict is the workflow's JUnit file. With
        // `--repeat`, `report repeats` writes that file for every pair.
        let junit = (self.args.repeat == 1).then(|| self.args.out.join(JUNIT_FILE));
        let met = self.report(
            dir,
            &plan,
            (&plan.after, "after"),
            input_py_ran,
            (&capacity, junit.as_deref()),
            dir,
        )?;
        if let Some(beside) = &plan.beside {
            let out = dir.join("server-change");
            create_dir(&out)?;
            println!("\nThe server change (reported beside the After, not gating the exit code):");
            self.report(
                dir,
                &plan,
                (beside, "server_change"),
                input_py_ran,
                (&(None, None), None),
                &out,
            )?;
        }
        Ok(met)
    }

    /// One loadgen run of `arm` against a fresh server, as phase `name`:
    /// its log `NAME.csv`, summary `NAME.json`, and the server's statistics
    /// where the backend reads them.
    fn phase(&self, dir: &Path, name: &str, arm: &Arm, seed: u64) -> Result<(), TaskError> {
        let spec = self.backend.spec();
        let target = self.start(dir, name, seed, arm.setting.as_ref())?;
        let flags = arm.flags.join(" ");
        println!(
            "loadgen {flags} --api {}  ({}; {})",
            spec.api,
            target.url,
            self.backend.describe(seed, arm.setting.as_ref())
        );
        let file = |ext: &str| dir.join(format!("{name}{ext}"));
        let mut cmd = self.loadgen(None, &target.url, None);
        cmd.args(&arm.flags)
            // A small server's own share of the baseline's streams.
            .flag_each(
                "-c",
                (spec.concurrency != model::BASELINE_CONCURRENCY)
                    .then(|| spec.concurrency.to_string()),
            )
            .flag_each("--out", [file(".csv")])
            .flag_each("--json", [file(".json")])
            .flag_each(
                "--server-stats",
                spec.server_stats.then(|| file("_server_stats.json")),
            );
        if let Some(path) = spec.metrics_path {
            // The server's own view of the phase, on the log's clock.
            cmd.flag_each("--server-metrics-url", [format!("{}{path}", target.url)])
                .flag_each("--server-metrics", [file("_server_metrics.json")]);
        }
        let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
        // Exit 1 means some requests failed: that is data for the report,
        // not a reason to stop. Anything else means the client could not run.
        match status.code() {
            Some(0 | 1) => Ok(()),
            _ => Err(TaskError::Step(format!(
                "loadgen {flags} could not run ({status})"
            ))),
        }
    }

    /// The analysis: the batch-cost probe where the engine applies, then
    /// `report whatif`, whose decisions the pair carries out. `--after
    /// optimized` skips the probe and the engine; a server change report
    /// decides from the Before alone is still decided.
    fn analyse(&self, dir: &Path, seed: u64) -> Result<Plan, TaskError> {
        let spec = self.backend.spec();
        let engine = self.args.after == "auto" && spec.probe;
        self.steps.show(
            Step::Analysis,
            match (engine, spec.decides_server_change) {
                (true, _) => {
                    "analysis: probe the batch cost, fit the service, predict the candidate fixes (report whatif)"
                }
                (false, true) => "analysis: report whatif decides the server change from the Before",
                (false, false) => "analysis: none (--after optimized runs the fixed profile)",
            },
        );
        if !engine && !spec.decides_server_change {
            return Ok(Plan::optimized());
        }
        let probes = if engine { self.probe(dir, seed)? } else { None };
        if engine && probes.is_none() && !spec.decides_server_change {
            return Ok(Plan::optimized());
        }
        let json_path = dir.join("whatif.json");
        let whatif = match self.run_whatif(dir, probes.as_ref(), &json_path) {
            Ok(whatif) => whatif,
            Err(e) if spec.decides_server_change && probes.is_some() => {
                eprintln!("warning: the what-if engine gave no answer ({e}); the After is the fixed optimized profile, the server change is decided alone");
                self.run_whatif(dir, None, &json_path)?
            }
            Err(e) if spec.decides_server_change => return Err(e),
            Err(e) => {
                eprintln!("warning: the what-if engine gave no answer ({e}); the After is the fixed optimized profile");
                return Ok(Plan::optimized());
            }
        };
        Ok(Plan::from_whatif(&whatif, &json_path, engine))
    }

    /// The batch-cost probe against a fresh server: the logs and, where
    /// the backend reads them, the server's statistics. `None` (said
    /// loudly) when its server does not start.
    fn probe(&self, dir: &Path, seed: u64) -> Result<Option<Probes>, TaskError> {
        let llm_probe = &self.backend.spec().llm_probe;
        // The concurrent run needs a slot per stream.
        let setting = (self.args.scenario == "llm")
            .then_some(llm_probe.concurrent_streams)
            .flatten()
            .map(|max_num_seqs| ServerSetting::MaxNumSeqs { max_num_seqs });
        let target = match self.start(dir, "probe", seed, setting.as_ref()) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("warning: the probe's server did not start ({e}); without the engine's prediction the After is the fixed optimized profile");
                return Ok(None);
            }
        };
        if self.args.scenario == "llm" {
            println!("probe: {} ({})", llm_probe.describe(), target.url);
            let client_args: Vec<String> = if llm_probe.client_args.is_empty() {
                self.backend.spec().client_args.clone()
            } else {
                llm_probe
                    .client_args
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect()
            };
            let (logs, prompt_tokens) = crate::whatif::llm_probe(
                llm_probe,
                || self.loadgen_with(None, &target.url, None, &client_args),
                dir,
                CLIENT_LIMIT,
            )?;
            return Ok(Some(Probes {
                logs,
                stats: Vec::new(),
                prompt_tokens,
            }));
        }
        println!(
            "probe: {} batches at each batch size {:?}, one batch at a time ({})",
            crate::whatif::PROBE_BATCHES,
            crate::whatif::PROBE_BATCH_SIZES,
            target.url
        );
        let (logs, stats) = crate::whatif::probe_with(
            || self.loadgen(None, &target.url, None),
            dir,
            CLIENT_LIMIT,
            self.backend.spec().server_stats,
        )?;
        Ok(Some(Probes {
            logs,
            stats,
            prompt_tokens: Vec::new(),
        }))
    }

    /// `report whatif` over the Before (and the probes), writing `json`.
    fn run_whatif(
        &self,
        dir: &Path,
        probes: Option<&Probes>,
        json: &Path,
    ) -> Result<WhatifReport, TaskError> {
        let spec = self.backend.spec();
        let stats = spec
            .server_stats
            .then(|| dir.join("before_server_stats.json"));
        let mut cmd = Command::new(self.bins.path("report"));
        cmd.arg("whatif")
            .args(&spec.whatif_args)
            .flag_each("--before", [dir.join("before.csv")])
            .flag_each("--before-stats", stats)
            .flag_each("--probe", probes.iter().flat_map(|p| &p.logs))
            .flag_each("--probe-stats", probes.iter().flat_map(|p| &p.stats))
            .flag_each(
                "--probe-prompt-tokens",
                probes
                    .iter()
                    .flat_map(|p| p.prompt_tokens.iter().map(u32::to_string)),
            )
            .args(["--sla-p95-ms", &self.args.sla_p95_ms.to_string()])
            .flag_each("--json", [json]);
        crate::whatif::analyse(&mut cmd, json, CLIENT_LIMIT)
    }

    /// With `--capacity`: the After's highest open-loop rate under the
    /// SLA, and that of the engine's client for open-loop traffic when it
    /// is another; their JSON files.
    fn capacities(
        &self,
        dir: &Path,
        plan: &Plan,
        seed: u64,
        phases: &mut BTreeMap<String, Phase>,
    ) -> Result<(Option<PathBuf>, Option<PathBuf>), TaskError> {
        if !self.args.capacity {
            return Ok((None, None));
        }
        step(
            "capacity",
            "the After client's highest open-loop rate under the SLA",
        );
        let after = with_load(phases, "capacity", || {
            let start_rps = capacity_start_rps(None, &self.args.capacity_step);
            self.capacity(dir, "capacity", &plan.after, start_rps, seed)
        })?;
        // The After is chosen for the Before's closed loop, where a
        // response frees a burst of slots and batches fill at once; traffic
        // that arrives spread out fills them only with a longer wait. When
        // the engine names another client for that, its capacity is
        // measured too.
        let open_loop = match &plan.open_loop {
            Some(client) if client.loadgen_args != plan.after.flags => {
                step(
                    "capacity",
                    &format!(
                        "the client for open-loop traffic ({}, predicted {:.1} req/s): its highest rate under the SLA",
                        client.label, client.max_rate_rps
                    ),
                );
                let start_rps =
                    capacity_start_rps(Some(client.max_rate_rps), &self.args.capacity_step);
                let arm = Arm {
                    label: client.label.clone(),
                    flags: client.loadgen_args.clone(),
                    setting: None,
                    role: None,
                };
                Some(with_load(phases, "capacity_open_loop", || {
                    self.capacity(dir, "capacity_open_loop", &arm, start_rps, seed)
                })?)
            }
            _ => None,
        };
        Ok((Some(after), open_loop))
    }

    /// `loadgen capacity` of `arm` against a fresh server, as `name` (its
    /// JSON `DIR/NAME.json`), from `start_rps` when given.
    fn capacity(
        &self,
        dir: &Path,
        name: &str,
        arm: &Arm,
        start_rps: Option<f64>,
        seed: u64,
    ) -> Result<PathBuf, TaskError> {
        let target = self.start(dir, name, seed, arm.setting.as_ref())?;
        let json_path = dir.join(format!("{name}.json"));
        let mut cmd = self.loadgen(Some("capacity"), &target.url, None);
        cmd.args(&arm.flags)
            .args(["--sla", &format!("p95<={}", self.args.sla_p95_ms)])
            .flag_each("--sla", self.slos())
            .args(["--step-duration", &self.args.capacity_step])
            .args(["--warmup", "2s"])
            // Inside the workflow's limit on one client run.
            .args(["--time-limit", "9m"])
            .flag_each("--json", [&json_path])
            .flag_each("--start-rate", start_rps.map(|rps| format!("{rps:.2}")));
        println!("loadgen capacity {}  ({})", arm.flags.join(" "), target.url);
        let status = process::run_with_deadline(&mut cmd, CLIENT_LIMIT)?;
        match status.code() {
            // 1: no rate was sustainable; the JSON says so and the report shows it.
            Some(0 | 1) => Ok(json_path),
            _ => Err(TaskError::Step(format!(
                "loadgen capacity could not run ({status}); see the message above"
            ))),
        }
    }

    /// Runs the original input.py against a fresh server; `None` when it
    /// failed (the reproduction is then the Before).
    fn run_input_py(
        &self,
        python: &Path,
        dir: &Path,
        seed: u64,
    ) -> Result<Option<InputPyRun>, TaskError> {
        let target = self.start(dir, "before-input-py", seed, None)?;
        let url = &target.url;
        let stdout_path = dir.join("input_py_stdout.txt");
        let stdout = fs::File::create(&stdout_path).map_err(|source| TaskError::Io {
            path: stdout_path.clone(),
            source,
        })?;
        let mut cmd = Command::new(python);
        cmd.arg(workspace::root()?.join("input.py"))
            .env("API_URL", url)
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
        // The server runs on until `target` drops, so the only child to end
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
            eprintln!(
                "warning: input.py exited with {status}; the Rust reproduction is the Before"
            );
            return Ok(None);
        }
        Ok(Some(run))
    }

    /// `DIR/conditions.json`: the backend's record of the server and the
    /// clients, the load shape, the machine and each phase's load.
    fn write_conditions(
        &self,
        dir: &Path,
        seed: u64,
        plan: &Plan,
        phases: BTreeMap<String, Phase>,
    ) -> Result<(), TaskError> {
        let spec = self.backend.spec();
        let client = |arm: &Arm| format!("loadgen {} --api {}", arm.flags.join(" "), spec.api);
        let changed = plan
            .beside
            .iter()
            .chain([&plan.after])
            .find_map(|arm| arm.setting.as_ref());
        let conditions = Conditions {
            fresh_server_per_phase: Some(spec.fresh_server_per_phase),
            requests: Some(model::BASELINE_REQUESTS),
            // The backend's streams (llama-server runs 8, not 20): the
            // report's Little's law reads its utilisation against them.
            concurrency: Some(spec.concurrency as u64),
            timeout_s: Some(model::BASELINE_TIMEOUT_S),
            loadgen_args: self.args.loadgen_args.clone(),
            after_client: Some(match plan.after.setting {
                None => client(&plan.after),
                Some(_) => format!(
                    "{} (unchanged: the change is the server's)",
                    client(&plan.after)
                ),
            }),
            server_change: changed.map(|s| self.backend.describe(seed, Some(s))),
            server_change_client: plan.beside.as_ref().map(client),
            python: self.python.as_deref().map(python::version),
            machine: Some(Machine::probe().conditions()),
            phases,
            quantile_method: Some("linear".to_owned()),
            ..self.backend.conditions(seed)
        };
        let path = dir.join("conditions.json");
        let text = serde_json::to_string_pretty(&conditions).unwrap_or_default();
        fs::write(&path, text).map_err(|source| TaskError::Io { path, source })
    }

    /// `report compare` of the Before against `arm` (phase `name`), into
    /// `out` (and its verdict as JUnit XML into `junit`, when given);
    /// `true` when its verdict is met.
    fn report(
        &self,
        dir: &Path,
        plan: &Plan,
        (arm, name): (&Arm, &str),
        input_py_ran: bool,
        ((capacity, open_loop), junit): (&(Option<PathBuf>, Option<PathBuf>), Option<&Path>),
        out: &Path,
    ) -> Result<bool, TaskError> {
        let spec = self.backend.spec();
        let file = |name: &str| dir.join(name);
        let mut cmd = Command::new(self.bins.path("report"));
        cmd.arg("compare");
        if input_py_ran {
            cmd.flag_each("--before", [file("before_input_py.csv")])
                .args(["--before-label", "Before (input.py)"])
                .flag_each("--reproduction", [file("before.csv")])
                .flag_each("--input-py-stdout", [file("input_py_stdout.txt")]);
        } else {
            cmd.flag_each("--before", [file("before.csv")])
                .args(["--before-label", &spec.before_label]);
        }
        cmd.flag_each("--after", [file(&format!("{name}.csv"))])
            .args(["--after-label", &arm.label]);
        if spec.server_stats {
            cmd.flag_each("--before-server-stats", [file("before_server_stats.json")])
                .flag_each(
                    "--after-server-stats",
                    [file(&format!("{name}_server_stats.json"))],
                );
        }
        if let (Some(json), Some(role)) = (&plan.whatif_json, arm.role) {
            let decision = match role {
                DecisionRole::After => "after",
                DecisionRole::ServerChange => "server-change",
            };
            cmd.flag_each("--prediction", [json])
                .args(["--decision", decision]);
        }
        cmd.flag_each("--capacity", capacity)
            .flag_each("--capacity-open-loop", open_loop)
            .flag_each("--conditions", [file("conditions.json")])
            .args(["--sla-p95-ms", &self.args.sla_p95_ms.to_string()])
            .flag_each("--sla", self.slos())
            .flag_each("--out-dir", [out])
            .flag_each("--junit", junit);
        run_report(&mut cmd)
    }
}

/// Flags that take a value, on a command.
trait FlagEach {
    /// `FLAG VALUE` for each of `values` (none for an empty `Option`).
    fn flag_each<V: AsRef<OsStr>>(
        &mut self,
        flag: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self;
}

impl FlagEach for Command {
    fn flag_each<V: AsRef<OsStr>>(
        &mut self,
        flag: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for value in values {
            self.arg(flag).arg(value);
        }
        self
    }
}

/// The probe's logs and, where read, the server's statistics.
#[derive(Debug, Clone)]
struct Probes {
    logs: Vec<PathBuf>,
    stats: Vec<PathBuf>,
    /// Each LLM probe log's prompt length, tokens (empty for the batch
    /// probe).
    prompt_tokens: Vec<u32>,
}

/// What one input.py run cost its process.
#[derive(Debug, Clone, Copy)]
struct InputPyRun {
    /// CPU time of the Python process, user plus system, s.
    cpu_s: f64,
    /// From its start to its exit, s.
    wall_s: f64,
}

/// Runs one phase, recording in `phases` the machine's load at its start
/// and the CPU time stolen during it: a slow phase on a busy machine says
/// so in `conditions.phases`.
fn with_load<T>(
    phases: &mut BTreeMap<String, Phase>,
    name: &str,
    phase: impl FnOnce() -> Result<T, TaskError>,
) -> Result<T, TaskError> {
    let start = LoadSnapshot::now();
    let outcome = phase();
    phases.insert(name.to_owned(), start.phase(&LoadSnapshot::now()));
    outcome
}

/// Runs `pair` `--repeat` times, each in its own directory with its own
/// seed, Before and After interleaved (each pair runs its Before, then its
/// After); with more than one pair, `report repeats` draws the interleaved
/// proof. The workflow's outcome is met only if every pair's verdict was.
pub(crate) fn run_pairs(
    args: &PerfArgs,
    bins: &Binaries,
    started: std::time::Instant,
    mut pair: impl FnMut(&Path, u64) -> Result<bool, TaskError>,
) -> Result<Outcome, TaskError> {
    let mut verdicts = Vec::new();
    let mut dirs = Vec::new();
    for number in 1..=args.repeat {
        let dir = pair_dir(&args.out, number);
        create_dir(&dir.join("logs"))?;
        let seed = backend::pair_seed(number);
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
            .arg("--junit")
            .arg(args.out.join(JUNIT_FILE))
            .args(&dirs);
        proof_met = run_report(&mut cmd)?;
    }
    // The reports put their warnings first; the console repeats them last,
    // where a reader of a long log looks.
    for dir in &dirs {
        let path = dir.join("comparison.json");
        if let Ok(comparison) = crate::json::read::<Comparison>(&path) {
            for warning in comparison.warnings {
                eprintln!("\nWARNING ({}): {warning}", path.display());
            }
        }
    }
    let also = if args.out.join("server-change").is_dir() {
        "; the server change in server-change/"
    } else {
        ""
    };
    println!(
        "\nresults in {} (report.html, report.md, comparison.json, junit.xml{also}{}); workflow took {:.1} s",
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
            (
                !["simulator", "llama"].contains(&args.server.as_str()),
                "--server",
            ),
            (args.url.is_some(), "--url"),
            (args.api != "simulator", "--api"),
            (!args.loadgen_args.is_empty(), "--loadgen-arg"),
        ];
        if let Some((_, flag)) = conflicting.iter().find(|(set, _)| *set) {
            return Err(TaskError::BadFlag(format!(
                "{flag} cannot be used with --scenario llm (it runs the simulator's LLM routes, described by --profile and --server-arg, or llama.cpp's llama-server with --server llama; point loadgen --api openai-chat at your own LLM server)"
            )));
        }
    }
    if !["http", "grpc"].contains(&args.protocol.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--protocol {:?} is not known; allowed: http, grpc",
            args.protocol
        )));
    }
    if args.protocol == "grpc" && args.server != "triton" {
        return Err(TaskError::BadFlag(
            "--protocol grpc applies to --server triton (Triton's gRPC port); the simulator's workflow speaks its own HTTP format".into(),
        ));
    }
    if !["simulator", "triton", "llama"].contains(&args.server.as_str()) {
        return Err(TaskError::BadFlag(format!(
            "--server {:?} is not known; allowed: simulator, triton, llama (with --scenario llm)",
            args.server
        )));
    }
    if args.server == "llama" && (args.profile.is_some() || !args.server_args.is_empty()) {
        return Err(TaskError::BadFlag(
            "--profile and --server-arg describe the simulator; --server llama starts llama.cpp's llama-server on the tiny local model, whose slots the workflow sets: drop them".into(),
        ));
    }
    if args.server == "llama" && args.scenario != "llm" {
        return Err(TaskError::BadFlag(
            "--server llama is an LLM server: give it with --scenario llm".into(),
        ));
    }
    if args.server == "triton" {
        let conflicting = [
            (args.url.is_some(), "--url"),
            (!args.server_args.is_empty(), "--server-arg"),
            (args.api != "simulator", "--api"),
            (args.profile.is_some(), "--profile"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn perf_args(flags: &[&str]) -> PerfArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            perf: PerfArgs,
        }
        Wrap::try_parse_from(std::iter::once("perf").chain(flags.iter().copied()))
            .unwrap()
            .perf
    }

    #[test]
    fn the_llm_scenario_takes_profile_and_server_arg_but_not_a_url() {
        let ok = perf_args(&[
            "--scenario",
            "llm",
            "--profile",
            "llm-slots",
            "--server-arg=--max-num-seqs=4",
        ]);
        assert!(validate(&ok).is_ok());
        let url = perf_args(&["--scenario", "llm", "--url", "http://127.0.0.1:9/v1"]);
        let err = validate(&url).unwrap_err().to_string();
        assert!(
            err.contains("--url cannot be used with --scenario llm"),
            "{err}"
        );
        // Triton still runs its own scenario only.
        let triton = perf_args(&["--server", "triton", "--profile", "llm-slots"]);
        let err = validate(&triton).unwrap_err().to_string();
        assert!(
            err.contains("--profile cannot be used with --server triton"),
            "{err}"
        );
    }

    #[test]
    fn a_search_starts_at_a_quarter_of_the_prediction_or_at_loadgens_own_start() {
        assert_eq!(capacity_start_rps(Some(400.0), "10s"), Some(100.0));
        assert_eq!(capacity_start_rps(Some(0.0), "10s"), Some(1.0));
        assert_eq!(capacity_start_rps(None, "10s"), None);
        assert_eq!(capacity_start_rps(None, "5s"), None);
    }

    /// With a short step, 1 req/s (loadgen's start, or a prediction near
    /// 0: an SLA nothing meets) would count under 5 requests a step, which
    /// loadgen refuses; the start is raised so the step counts them, as
    /// the flag is written.
    #[test]
    fn a_short_step_still_counts_enough_requests_at_the_start() {
        for (step, step_s) in [("1s", 1.0), ("1.5s", 1.5), ("3s", 3.0), ("500ms", 0.5)] {
            for predicted in [None, Some(0.0), Some(2.0)] {
                let rps = capacity_start_rps(predicted, step).unwrap_or(1.0);
                let written: f64 = format!("{rps:.2}").parse().unwrap();
                assert!(
                    written * step_s >= 5.0,
                    "{step}, predicted {predicted:?}: {written} req/s"
                );
            }
        }
        assert_eq!(capacity_start_rps(None, "1s"), Some(5.0));
        assert_eq!(capacity_start_rps(Some(0.0), "not a duration"), Some(5.0));
    }
}
