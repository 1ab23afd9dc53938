//! What differs between the servers `cargo xtask perf` measures; the
//! workflow itself ([`crate::perf`]) is written once.
//!
//! - [`Simulator`]: stub-server, fresh per phase (`--profile`,
//!   `--server-arg`), loaded with the simulator's wire format.
//! - [`Endpoint`]: the user's URL (`--url`); nothing is started.
//! - [`Triton`]: a real NVIDIA Triton (`--server triton`), fresh per phase,
//!   over KServe v2 (HTTP, or gRPC with `--protocol grpc`), its statistics
//!   read around every run; its dynamic batcher is the server change report
//!   decides.
//! - [`Llm`]: an OpenAI-compatible LLM server (`--scenario llm`):
//!   stub-server's LLM routes (`--profile`, `--server-arg`), fresh per
//!   phase; its slots or its step's token budget is the server change
//!   report may decide, applied on top of the user's flags.
//! - [`LlamaCpp`]: llama.cpp's own `llama-server` (`--scenario llm
//!   --server llama`), fresh per phase, its `--parallel` slots the
//!   `max_num_seqs` report decides.
//!
//! A backend says how to start a server (with a server setting applied),
//! how loadgen talks to it, what the analysis is told, and what the
//! conditions record; the workflow does the rest the same way for all.

use std::path::{Path, PathBuf};

use model::conditions::{Conditions, TargetKind};
use model::whatif::ServerSetting;

use crate::build::Binaries;
use crate::error::TaskError;
use crate::llama;
use crate::perf::{PerfArgs, FIRST_SEED};
use crate::process::ServerProcess;
use crate::triton::{self as triton_server, TritonSetup};

/// A server for one phase: running until dropped (or the user's endpoint),
/// and the URL loadgen aims at.
pub(crate) struct Target {
    /// The server process; `None` for the user's endpoint.
    pub _server: Option<ServerProcess>,
    /// What loadgen's `--url` gets.
    pub url: String,
}

/// One functional check: loadgen's `--api` and the flags of a few requests.
pub(crate) struct FunctionalCheck {
    /// loadgen's `--api`; `None` for the phases' own.
    pub api: Option<&'static str>,
    /// Flags in place of [`Spec::client_args`] (another model); `None`:
    /// the phases' own.
    pub client_args: Option<Vec<String>>,
    /// The load: a few requests, single or batched (loadgen's flags,
    /// separated by spaces).
    pub flags: &'static str,
}

/// The fixed facts of a backend.
pub(crate) struct Spec {
    /// What is measured, for the console's first line (empty: nothing to add).
    pub intro: String,
    /// What [`Backend::prepare`] installs, when it does.
    pub prepare: Option<&'static str>,
    /// loadgen's `--api` in every phase.
    pub api: String,
    /// Flags every loadgen run gets after `--url` and `--api`: the model,
    /// whether outputs are verified (the user's own `--loadgen-arg`s follow).
    pub client_args: Vec<String>,
    /// Server logs are `logs/PHASE-SUFFIX.log`.
    pub log_suffix: &'static str,
    /// The functional check's server log, under `logs/`.
    pub functional_log: &'static str,
    /// The functional check's requests.
    pub functional_checks: Vec<FunctionalCheck>,
    /// What the functional check proved, `{url}` replaced by the URL.
    pub functional_ok: &'static str,
    /// Why input.py cannot run against it; `None` when it can.
    pub input_py_skip: Option<String>,
    /// Whether loadgen reads the server's statistics around every run
    /// (`--server-stats`), for a server that sends no `Server-Timing`.
    pub server_stats: bool,
    /// Whether the batch-cost probe and the what-if engine apply (`--after
    /// auto`).
    pub probe: bool,
    /// How the LLM step probe runs, with `--scenario llm`.
    pub llm_probe: crate::whatif::LlmProbe,
    /// `report whatif`'s flags for this server and its load.
    pub whatif_args: Vec<String>,
    /// Whether `report whatif` decides a server change without probes,
    /// so it runs even with `--after optimized`.
    pub decides_server_change: bool,
    /// The Before's label when input.py did not run.
    pub before_label: String,
    /// Objectives when `--sla` gives none.
    pub default_slos: Vec<String>,
    /// Whether each phase's server is started fresh (not for `--url`).
    pub fresh_server_per_phase: bool,
    /// Streams in flight in the Before and the After (the baseline
    /// client's concurrency, or less for a small server).
    pub concurrency: usize,
    /// The server's Prometheus path, when it has one: loadgen scrapes it
    /// through every phase (`--server-metrics-url`) into
    /// `PHASE_server_metrics.json`.
    pub metrics_path: Option<&'static str>,
}

/// How the workflow talks to one kind of server.
pub(crate) trait Backend {
    /// The fixed facts.
    fn spec(&self) -> &Spec;

    /// Anything to install before the first start (Triton's venv; see
    /// [`Spec::prepare`]).
    fn prepare(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    /// A fresh server for one phase with `seed` (when the server draws
    /// randomness) and `setting` applied, its log at `log`; or the user's
    /// endpoint.
    fn start(
        &self,
        bins: &Binaries,
        log: &Path,
        seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError>;

    /// The server of the functional check: the first phase's, unless
    /// the check needs more than the phases do.
    fn start_functional(&self, bins: &Binaries, log: &Path) -> Result<Target, TaskError> {
        self.start(bins, log, FIRST_SEED, None)
    }

    /// The server with `setting` applied, in words (console and conditions).
    fn describe(&self, seed: u64, setting: Option<&ServerSetting>) -> String;

    /// What `conditions.json` records of the server and the clients.
    fn conditions(&self, seed: u64) -> Conditions;
}

/// The backend `args` ask for (the flags are already validated).
pub(crate) fn choose(args: &PerfArgs) -> Box<dyn Backend> {
    if args.scenario == "llm" {
        if args.server == "llama" {
            return Box::new(LlamaCpp::new(args));
        }
        return Box::new(Llm::new(args));
    }
    if args.server == "triton" {
        return Box::new(Triton::new(args.protocol == "grpc"));
    }
    match &args.url {
        Some(url) => Box::new(Endpoint::new(args, url)),
        None => Box::new(Simulator::new(args)),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `report whatif --concurrency --requests`: the Before's load shape.
fn load_shape() -> Vec<String> {
    vec![
        "--concurrency".to_owned(),
        model::BASELINE_CONCURRENCY.to_string(),
        "--requests".to_owned(),
        model::BASELINE_REQUESTS.to_string(),
    ]
}

/// What every phase sends: input.py's payloads, `how`.
fn payloads(how: &str) -> String {
    format!(
        "input.py build_payload(i), i = 0..{} ({how})",
        model::BASELINE_REQUESTS - 1
    )
}

/// A setting this server cannot apply: an error that says which.
fn cannot_apply(server: &str, setting: &ServerSetting) -> TaskError {
    TaskError::Step(format!(
        "report chose a server setting {setting:?} that {server} cannot apply"
    ))
}

/// The inference functional check: single requests on fresh connections,
/// then batches.
fn inference_checks(single: &'static str, batched: &'static str) -> Vec<FunctionalCheck> {
    [single, batched]
        .into_iter()
        .map(|flags| FunctionalCheck {
            api: None,
            client_args: None,
            flags,
        })
        .collect()
}

/// Whether the user's simulator flags choose the seed themselves.
fn sets_seed(server_args: &[String]) -> bool {
    server_args
        .iter()
        .any(|a| a == "--seed" || a.starts_with("--seed="))
}

/// Why input.py cannot speak an `--api` other than the simulator's.
fn input_py_skip(api: &str, skip_python: bool) -> Option<String> {
    if skip_python {
        Some("input.py skipped (--skip-python): the Rust reproduction is the Before.".to_owned())
    } else if api != "simulator" {
        Some(format!(
            "input.py skipped: it sends the simulator's wire format, which an --api {api} endpoint does not read; the Rust reproduction (same load shape, your body) is the Before."
        ))
    } else {
        None
    }
}

/// stub-server, fresh per phase, with the user's profile and flags.
pub(crate) struct Simulator {
    spec: Spec,
    profile: String,
    server_args: Vec<String>,
}

/// The inference workflow's facts: the simulator's, which `--url`
/// changes in a few places.
fn inference_spec(args: &PerfArgs) -> Spec {
    Spec {
        intro: String::new(),
        prepare: None,
        api: args.api.clone(),
        client_args: Vec::new(),
        log_suffix: "server",
        functional_log: "functional-server.log",
        functional_checks: inference_checks(
            "-n 8 -c 2 --connection per-request",
            "-n 12 -c 6 --connection pooled --batch-size 3 --batch-wait-ms 5",
        ),
        functional_ok: if args.api == "simulator" {
            "ok: single and batched requests answered and verified at {url}"
        } else {
            "ok: single and batched requests answered (outputs digested, not verified) at {url}"
        },
        input_py_skip: input_py_skip(&args.api, args.skip_python),
        server_stats: false,
        probe: true,
        llm_probe: crate::whatif::LlmProbe::SIMULATOR,
        // The simulator has a dynamic batcher: its settings are server
        // changes the engine may predict (never choose).
        whatif_args: [strings(&["--server", "simulator"]), load_shape()].concat(),
        decides_server_change: false,
        before_label: "Before (Rust reproduction of input.py)".to_owned(),
        default_slos: Vec::new(),
        fresh_server_per_phase: true,
        metrics_path: None,
        concurrency: model::BASELINE_CONCURRENCY,
    }
}

/// What the inference workflow's conditions say of its load and clients.
fn inference_conditions(api: &str) -> Conditions {
    Conditions {
        scenario: Some("inference".to_owned()),
        api: Some(api.to_owned()),
        payloads: Some(payloads("byte-identical, pinned by a test")),
        before_client: Some(
            "input.py (httpx, new AsyncClient and connection per request)".to_owned(),
        ),
        reproduction_client: Some(
            "loadgen --profile baseline (new connection per request)".to_owned(),
        ),
        ..Conditions::default()
    }
}

impl Simulator {
    fn new(args: &PerfArgs) -> Self {
        Self {
            spec: inference_spec(args),
            profile: args
                .profile
                .clone()
                .unwrap_or_else(|| "placeholder".to_owned()),
            server_args: args.server_args.clone(),
        }
    }
}

impl Backend for Simulator {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn start(
        &self,
        bins: &Binaries,
        log: &Path,
        seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        if let Some(setting) = setting {
            return Err(cannot_apply("the inference simulator", setting));
        }
        let mut args = vec!["--profile".to_owned(), self.profile.clone()];
        if !sets_seed(&self.server_args) {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        args.extend(self.server_args.iter().cloned());
        let server = ServerProcess::start(&bins.path("stub-server"), &args, log)?;
        Ok(Target {
            url: server.infer_url(),
            _server: Some(server),
        })
    }

    fn describe(&self, seed: u64, _setting: Option<&ServerSetting>) -> String {
        let seed = if sets_seed(&self.server_args) {
            String::new()
        } else {
            format!(" --seed {seed}")
        };
        format!(
            "stub-server --profile {}{seed} {}",
            self.profile,
            self.server_args.join(" ")
        )
        .trim_end()
        .to_owned()
    }

    fn conditions(&self, seed: u64) -> Conditions {
        Conditions {
            scenario: Some("inference".to_owned()),
            target: Some(TargetKind::Simulator),
            server_profile: Some(self.profile.clone()),
            server_args: self.server_args.clone(),
            server_seed: (!sets_seed(&self.server_args)).then_some(seed),
            ..inference_conditions(&self.spec.api)
        }
    }
}

/// The user's endpoint: every phase loads it, nothing is started.
pub(crate) struct Endpoint {
    spec: Spec,
    url: String,
}

impl Endpoint {
    fn new(args: &PerfArgs, url: &str) -> Self {
        Self {
            spec: Spec {
                intro: format!(
                    "target: {url} (your endpoint: no simulator is started; every phase loads it)"
                ),
                // A real endpoint speaking the simulator's format gives its
                // own answers: compare them by digest, not with the simulator's.
                client_args: if args.api == "simulator" {
                    strings(&["--no-verify"])
                } else {
                    Vec::new()
                },
                functional_ok:
                    "ok: single and batched requests answered (outputs digested, not verified) at {url}",
                whatif_args: load_shape(),
                fresh_server_per_phase: false,
                metrics_path: None,
                concurrency: model::BASELINE_CONCURRENCY,
                ..inference_spec(args)
            },
            url: url.to_owned(),
        }
    }
}

impl Backend for Endpoint {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn start(
        &self,
        _bins: &Binaries,
        _log: &Path,
        _seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        if let Some(setting) = setting {
            return Err(cannot_apply("your endpoint (--url)", setting));
        }
        Ok(Target {
            _server: None,
            url: self.url.clone(),
        })
    }

    fn describe(&self, _seed: u64, _setting: Option<&ServerSetting>) -> String {
        format!("your endpoint {}", self.url)
    }

    fn conditions(&self, _seed: u64) -> Conditions {
        Conditions {
            scenario: Some("inference".to_owned()),
            target: Some(TargetKind::Endpoint),
            server_profile: Some(self.url.clone()),
            ..inference_conditions(&self.spec.api)
        }
    }
}

/// A real NVIDIA Triton serving the placeholder's cost shape, fresh per
/// phase: 2 instances without dynamic batching in the Before. Over gRPC
/// (`--protocol grpc`) it serves the decoupled streaming model beside,
/// which the functional check streams from.
pub(crate) struct Triton {
    spec: Spec,
    grpc: bool,
    root: Option<PathBuf>,
    python: Option<PathBuf>,
}

impl Triton {
    /// A fresh Triton with `setting`, the decoupled streaming model beside
    /// when `stream_model`.
    fn start_with(
        &self,
        seed: u64,
        setting: Option<&ServerSetting>,
        stream_model: bool,
        log: &Path,
    ) -> Result<Target, TaskError> {
        let (Some(python), Some(root)) = (&self.python, &self.root) else {
            return Err(TaskError::Step(
                "Triton was started before its venv was prepared".to_owned(),
            ));
        };
        let setup = Self::setup(seed, setting)?;
        let server = triton_server::start(python, root, &setup, stream_model, log)?;
        let url = match (&server.grpc_url, self.grpc) {
            (Some(grpc), true) => grpc.clone(),
            _ => server.base_url.clone(),
        };
        Ok(Target {
            url,
            _server: Some(server),
        })
    }

    fn new(grpc: bool) -> Self {
        let client_args = strings(&[
            "--model",
            triton_server::MODEL,
            // The workflow's Triton model answers as the simulator does.
            "--verify",
        ]);
        let mut functional_checks = inference_checks(
            "-n 4 -c 2 --connection per-request",
            "-n 6 -c 6 --batch-size 3 --batch-wait-ms 20",
        );
        if grpc {
            // The streaming model's tokens are the simulator's answer too.
            functional_checks.push(FunctionalCheck {
                api: None,
                client_args: Some(strings(&[
                    "--model",
                    triton_server::STREAM_MODEL,
                    "--verify",
                ])),
                flags: "-n 4 -c 2 --streaming --max-tokens 8",
            });
        }
        let (protocol, api) = if grpc {
            ("KServe v2 over gRPC", "kserve-v2-grpc")
        } else {
            ("KServe v2", "kserve-v2")
        };
        Self {
            spec: Spec {
                intro: format!("server: a real NVIDIA Triton (nvidia-pytriton), fresh for every phase, loaded over {protocol}"),
                prepare: Some("Triton: the venv (system Python 3.11) and its pinned wheel"),
                api: api.to_owned(),
                client_args,
                log_suffix: "triton",
                functional_log: "functional-triton.log",
                functional_checks,
                functional_ok: if grpc {
                    "ok: Triton at {url} answered single and batched calls and streamed the decoupled model's tokens over gRPC, outputs verified"
                } else {
                    "ok: Triton at {url} answered single and batched requests, outputs verified"
                },
                input_py_skip: Some(format!("input.py skipped: it sends the simulator's wire format, not {protocol}; the Rust baseline client is the Before.")),
                // Triton sends no Server-Timing: the engine fits its statistics.
                server_stats: true,
                probe: true,
                llm_probe: crate::whatif::LlmProbe::SIMULATOR,
                whatif_args: [
                    strings(&[
                        "--server",
                        "triton",
                        "--max-batch",
                        &TritonSetup::PLACEHOLDER.max_batch_size.to_string(),
                    ]),
                    load_shape(),
                ]
                .concat(),
                decides_server_change: true,
                before_label: "Before (baseline client, Triton)".to_owned(),
                default_slos: Vec::new(),
                fresh_server_per_phase: true,
                metrics_path: None,
                concurrency: model::BASELINE_CONCURRENCY,
            },
            grpc,
            root: None,
            python: None,
        }
    }

    fn setup(seed: u64, setting: Option<&ServerSetting>) -> Result<TritonSetup, TaskError> {
        let dynamic_batching_delay_us = match setting {
            None => None,
            Some(ServerSetting::DynamicBatching { max_queue_delay_us }) => {
                Some(*max_queue_delay_us)
            }
            Some(other) => return Err(cannot_apply("Triton", other)),
        };
        Ok(TritonSetup {
            seed,
            dynamic_batching_delay_us,
            ..TritonSetup::PLACEHOLDER
        })
    }
}

impl Backend for Triton {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn prepare(&mut self) -> Result<(), TaskError> {
        let root = crate::workspace::root()?;
        let python = triton_server::ensure_venv(&root)?;
        println!("Triton's Python: {}", python.display());
        self.root = Some(root);
        self.python = Some(python);
        Ok(())
    }

    fn start(
        &self,
        _bins: &Binaries,
        log: &Path,
        seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        // The decoupled model is the functional check's alone: loading
        // it costs every start seconds, and a phase never calls it.
        self.start_with(seed, setting, false, log)
    }

    fn start_functional(&self, _bins: &Binaries, log: &Path) -> Result<Target, TaskError> {
        self.start_with(FIRST_SEED, None, self.grpc, log)
    }

    fn describe(&self, seed: u64, setting: Option<&ServerSetting>) -> String {
        let described = Self::setup(seed, setting).map_or_else(|e| e.to_string(), |s| s.describe());
        if self.grpc {
            format!("{described}; loaded over gRPC")
        } else {
            described
        }
    }

    fn conditions(&self, seed: u64) -> Conditions {
        let before_client = if self.grpc {
            "loadgen --profile baseline --api kserve-v2-grpc (a new HTTP/2 connection per call, one input per call)"
        } else {
            "loadgen --profile baseline --api kserve-v2 (new connection per request, one input per request)"
        };
        Conditions {
            scenario: Some("inference".to_owned()),
            target: Some(TargetKind::Triton),
            server: Some(self.describe(seed, None)),
            server_seed: Some(seed),
            api: Some(self.spec.api.clone()),
            payloads: Some(payloads("as BYTES tensors")),
            before_client: Some(before_client.to_owned()),
            ..Conditions::default()
        }
    }
}

/// The simulator's OpenAI-compatible routes (the `llm-slots` profile
/// unless `--profile` names another, with the user's `--server-arg`s),
/// fresh per phase: continuous batching over sequence slots.
pub(crate) struct Llm {
    spec: Spec,
    profile: String,
    server_args: Vec<String>,
}

/// The LLM scenario's server profile when `--profile` names none.
pub(crate) const LLM_PROFILE: &str = "llm-slots";
/// The objectives when `--sla` gives none.
pub(crate) const LLM_DEFAULT_SLOS: [&str; 2] = ["ttft_p95<=500", "itl_p99<=50"];

/// The Before's scheduler as `report whatif` needs it: each stub-server
/// flag, the `report whatif` flag that says the same, and the value every
/// stub-server profile has (they all keep the LLM routes' defaults but
/// for their step costs, which report fits). `None`: the flag is left
/// out when the value is this (stub-server's 0 = unlimited or none).
const LLM_SCHEDULER_FLAGS: [(&str, &str, &str, Option<&str>); 5] = [
    ("--max-num-seqs", "--max-num-seqs", "8", None),
    ("--max-batched-tokens", "--max-batched-tokens", "2048", None),
    ("--kv-cache-tokens", "--kv-cache-tokens", "0", Some("0")),
    ("--kv-block-tokens", "--kv-block-tokens", "16", None),
    ("--prefix-cache-blocks", "--prefix-cache-blocks", "0", None),
];

/// The value the last `--flag=V` or `--flag V` in `args` gives.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut value = None;
    for (i, a) in args.iter().enumerate() {
        if a == flag {
            value = args.get(i + 1).map(String::as_str);
        } else if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            value = Some(v);
        }
    }
    value
}

/// `args` without any `--flag=V` or `--flag V`: a setting applied on top
/// replaces the user's own (stub-server takes each flag once).
fn without_flag(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
        } else if a == flag {
            skip_value = true;
        } else if !a
            .strip_prefix(flag)
            .is_some_and(|rest| rest.starts_with('='))
        {
            out.push(a.clone());
        }
    }
    out
}

impl Llm {
    pub(crate) fn new(args: &PerfArgs) -> Self {
        let profile = args
            .profile
            .clone()
            .unwrap_or_else(|| LLM_PROFILE.to_owned());
        let server_args = args.server_args.clone();
        let slots = flag_value(&server_args, "--max-num-seqs").unwrap_or("8");
        let given = if server_args.is_empty() {
            String::new()
        } else {
            format!(" {}", server_args.join(" "))
        };
        let mut whatif_args = strings(&["--scenario", "llm"]);
        for (server_flag, report_flag, default, omit) in LLM_SCHEDULER_FLAGS {
            let value = flag_value(&server_args, server_flag).unwrap_or(default);
            if omit != Some(value) {
                whatif_args.extend([report_flag.to_owned(), value.to_owned()]);
            }
        }
        whatif_args.extend([
            // Every request is input.py's prompt as one user message:
            // stub-server counts its whitespace words.
            "--prompt-tokens".to_owned(),
            model::payload::baseline_input(0)
                .split_whitespace()
                .count()
                .to_string(),
            "--concurrency".to_owned(),
            model::BASELINE_CONCURRENCY.to_string(),
            // stub-server always chunks prefill, and the workflow runs one
            // server: those two changes are predicted, never chosen.
            "--server-changes".to_owned(),
            "slots,batched-tokens".to_owned(),
        ]);
        Self {
            spec: Spec {
                intro: format!(
                    "scenario: llm. Server: the simulator's OpenAI-compatible routes, stub-server --profile {profile}{given} \
                     ({slots} sequence slots), fresh for every phase; client: loadgen --api openai-chat, streamed"
                ),
                prepare: None,
                api: "openai-chat".to_owned(),
                // stub-server's LLM routes give the simulator's known answers.
                client_args: strings(&["--verify"]),
                log_suffix: "server",
                functional_log: "functional-llm-server.log",
                functional_checks: vec![
                    FunctionalCheck {
                        api: Some("openai-chat"),
                        client_args: None,
                        flags: "-n 4 -c 2",
                    },
                    FunctionalCheck {
                        api: Some("openai-chat"),
                        client_args: None,
                        flags: "-n 2 -c 2 --no-stream",
                    },
                    FunctionalCheck {
                        api: Some("openai-completions"),
                        client_args: None,
                        flags: "-n 6 -c 3 --batch-size 3 --batch-wait-ms 20",
                    },
                ],
                functional_ok: "ok: the simulator at {url} streamed and answered chat and batched completions, every answer verified",
                input_py_skip: Some("input.py skipped: it sends the simulator's inference format, not OpenAI's; the Rust baseline client (input.py's load shape, streamed) is the Before.".to_owned()),
                server_stats: false,
                // The step probe: one request at a time at a few prompt
                // lengths, so the fit can tell a step's costs apart.
                probe: true,
                llm_probe: crate::whatif::LlmProbe::SIMULATOR,
                whatif_args,
                decides_server_change: true,
                before_label: format!("Before (baseline client, {slots} slots)"),
                default_slos: strings(&LLM_DEFAULT_SLOS),
                fresh_server_per_phase: true,
                metrics_path: Some("/metrics"),
                concurrency: model::BASELINE_CONCURRENCY,
            },
            profile,
            server_args,
        }
    }

    /// stub-server's flags: the profile, the user's flags, and `setting`
    /// on top of them.
    fn server_args(&self, setting: Option<&ServerSetting>) -> Result<Vec<String>, TaskError> {
        let mut args = vec!["--profile".to_owned(), self.profile.clone()];
        let (flag, value) = match setting {
            None => {
                args.extend(self.server_args.iter().cloned());
                return Ok(args);
            }
            Some(ServerSetting::MaxNumSeqs { max_num_seqs }) => ("--max-num-seqs", *max_num_seqs),
            Some(ServerSetting::MaxBatchedTokens { max_batched_tokens }) => {
                ("--max-batched-tokens", *max_batched_tokens)
            }
            Some(other) => return Err(cannot_apply("the LLM simulator", other)),
        };
        args.extend(without_flag(&self.server_args, flag));
        args.push(format!("{flag}={value}"));
        Ok(args)
    }
}

impl Backend for Llm {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn start(
        &self,
        bins: &Binaries,
        log: &Path,
        _seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        // The step loop draws no randomness: every pair runs the same server.
        let args = self.server_args(setting)?;
        let server = ServerProcess::start(&bins.path("stub-server"), &args, log)?;
        Ok(Target {
            url: server.base_url.clone(),
            _server: Some(server),
        })
    }

    fn describe(&self, _seed: u64, setting: Option<&ServerSetting>) -> String {
        match self.server_args(setting) {
            Ok(args) => format!("stub-server {}", args.join(" ")),
            Err(e) => e.to_string(),
        }
    }

    fn conditions(&self, _seed: u64) -> Conditions {
        Conditions {
            scenario: Some("llm".to_owned()),
            target: Some(TargetKind::Simulator),
            server: Some(format!(
                "{} (OpenAI-compatible routes, continuous batching)",
                self.describe(0, None)
            )),
            server_profile: Some(self.profile.clone()),
            server_args: self.server_args.clone(),
            api: Some("openai-chat, streamed (stream_options.include_usage)".to_owned()),
            payloads: Some(payloads("as one user message each")),
            before_client: Some(
                "loadgen --profile baseline --api openai-chat (a new connection per request)"
                    .to_owned(),
            ),
            ..Conditions::default()
        }
    }
}

/// llama.cpp's own `llama-server` on the tiny local model, fresh per
/// phase: few slots in the Before, so streams wait for one.
pub(crate) struct LlamaCpp {
    spec: Spec,
    out: PathBuf,
    install: Option<llama::Install>,
}

/// The Before's slots (`llama-server --parallel`).
pub(crate) const LLAMA_BEFORE_SLOTS: u32 = 1;
/// Streams in flight: the baseline client's 400 requests, 8 at a time.
/// On a 2-core CPU every token costs llama-server a wake-up of the HTTP
/// thread of its stream, so 20 streams measure the machine's scheduler
/// more than the server's slots.
pub(crate) const LLAMA_STREAMS: usize = 8;
/// Tokens of the answers, drawn uniform from 8 to 56 per request (from
/// loadgen's seed, so the same in every phase; 32 on average), each
/// exactly as long as drawn (`--ignore-eos`). With answers of one length,
/// a closed loop over more streams than slots locks into a pattern its
/// first steps set: 4 slots under 8 streams ran in lockstep (ITL P99
/// about 2 ms) in some fresh starts and staggered (4 to 8 ms) in others,
/// and 8 slots took prompts in clumps. Three runs of one configuration
/// then differed by more than a fifth; with drawn lengths they stayed
/// within it in 8 of 10 stored rows, against 5 of 12 with one length
/// (docs/measurements.md).
pub(crate) const LLAMA_ANSWER_TOKENS: &str = "uniform:8,56";

/// loadgen's flags for llama-server in every phase.
pub(crate) fn llama_client_args() -> Vec<String> {
    strings(&[
        "--model",
        llama::MODEL,
        "--output-tokens",
        LLAMA_ANSWER_TOKENS,
        "--ignore-eos",
        "--extra-body",
        r#"{"temperature": 0}"#,
        // Its kernels are not batch-invariant: a near tie of the random
        // model's logits can fall the other way with other slots, so
        // answers are not compared.
        "--no-digest",
    ])
}

/// The step probe on a server with a slot per stream: the Before's one
/// slot runs one sequence a step, so the concurrent run is what shows a
/// step's cost per sequence. Prompts in words; llama-server counts them
/// itself (8, 64 and 128 words are about 50, 210 and 390 tokens with the
/// chat template, within a slot's context of 512). The concurrent runs'
/// prompts of 8 and 64 words join up to eight at once, 50 to 1,700 tokens
/// in one step (within its batch of 2,048): what the After's cohorts do,
/// at amounts enough apart to tell a cost per token from one that grows
/// with the batch. 64 requests a stream, 512 a run: the two runs show
/// about 300 steps where prompts joined beside decodes, where 8 a stream
/// showed about 30, too few for a steady price of a joining prompt (about
/// 9 s more in all on two cores).
pub(crate) const LLAMA_PROBE: crate::whatif::LlmProbe = crate::whatif::LlmProbe {
    prompt_words: &[8, 64, 128],
    concurrent_streams: Some(LLAMA_STREAMS as u32),
    concurrent_words: &[8, 64],
    concurrent_requests_per_stream: 64,
    client_args: &["--model", llama::MODEL, "--no-digest"],
};

impl LlamaCpp {
    fn new(args: &PerfArgs) -> Self {
        Self {
            spec: Spec {
                intro: format!(
                    "scenario: llm. Server: llama.cpp's llama-server (continuous batching over --parallel slots, CPU, a tiny local GGUF), \
                     {LLAMA_BEFORE_SLOTS} slot in the Before, fresh for every phase; client: loadgen --api openai-chat, streamed, {LLAMA_STREAMS} at a time, answers of {LLAMA_ANSWER_TOKENS} tokens, greedy, answers not compared"
                ),
                prepare: Some("llama-server: the binary (xtask/llama/build_server.sh) and the tiny model"),
                api: "openai-chat".to_owned(),
                client_args: llama_client_args(),
                log_suffix: "llama-server",
                functional_log: "functional-llama-server.log",
                functional_checks: vec![
                    FunctionalCheck {
                        client_args: None,
                        api: Some("openai-chat"),
                        flags: "-n 4 -c 2",
                    },
                    FunctionalCheck {
                        client_args: None,
                        api: Some("openai-chat"),
                        flags: "-n 2 -c 2 --no-stream",
                    },
                    FunctionalCheck {
                        client_args: None,
                        api: Some("openai-completions"),
                        flags: "-n 4 -c 2",
                    },
                ],
                functional_ok: "ok: llama-server at {url} streamed chat and completions and answered a whole chat",
                input_py_skip: Some("input.py skipped: it sends the simulator's inference format, not OpenAI's; the Rust baseline client (input.py's load shape, streamed) is the Before.".to_owned()),
                server_stats: false,
                probe: true,
                llm_probe: LLAMA_PROBE,
                // The current LLM rule (slots raised to the streams in
                // flight); where the analysis ranks other server changes,
                // `LlamaCpp::server_args` is where each is carried out.
                whatif_args: vec![
                    "--scenario".to_owned(),
                    "llm".to_owned(),
                    "--max-num-seqs".to_owned(),
                    LLAMA_BEFORE_SLOTS.to_string(),
                    "--concurrency".to_owned(),
                    LLAMA_STREAMS.to_string(),
                    "--pass-tokens".to_owned(),
                    llama::PASS_TOKENS.to_string(),
                    // What `LlamaCpp::slots` carries out; the others are
                    // predicted, never chosen.
                    "--server-changes".to_owned(),
                    "slots".to_owned(),
                ],
                decides_server_change: true,
                before_label: format!(
                    "Before (baseline client, llama-server --parallel {LLAMA_BEFORE_SLOTS})"
                ),
                default_slos: strings(&LLM_DEFAULT_SLOS),
                fresh_server_per_phase: true,
                metrics_path: Some("/metrics"),
                concurrency: LLAMA_STREAMS,
            },
            out: args.out.clone(),
            install: None,
        }
    }

    /// The slots with `setting` applied: the Before's, or the decided
    /// `max_num_seqs` as `--parallel`. Other server settings are refused
    /// until llama-server is given a way to apply them.
    fn slots(setting: Option<&ServerSetting>) -> Result<u32, TaskError> {
        match setting {
            None => Ok(LLAMA_BEFORE_SLOTS),
            Some(ServerSetting::MaxNumSeqs { max_num_seqs }) => Ok(*max_num_seqs),
            Some(other) => Err(cannot_apply("llama-server", other)),
        }
    }
}

impl Backend for LlamaCpp {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn prepare(&mut self) -> Result<(), TaskError> {
        let root = crate::workspace::root()?;
        let dir = self.out.join("llama");
        std::fs::create_dir_all(&dir)
            .map_err(|e| TaskError::Step(format!("cannot create {}: {e}", dir.display())))?;
        self.install = Some(llama::prepare(&root, &dir)?);
        Ok(())
    }

    fn start(
        &self,
        _bins: &Binaries,
        log: &Path,
        _seed: u64,
        setting: Option<&ServerSetting>,
    ) -> Result<Target, TaskError> {
        let Some(install) = &self.install else {
            return Err(TaskError::Step(
                "llama-server was started before it was prepared".to_owned(),
            ));
        };
        let server = llama::start(install, Self::slots(setting)?, log)?;
        Ok(Target {
            url: server.base_url.clone(),
            _server: Some(server),
        })
    }

    fn describe(&self, _seed: u64, setting: Option<&ServerSetting>) -> String {
        match Self::slots(setting) {
            Ok(slots) => format!("llama-server {}", llama::args(slots).join(" ")),
            Err(e) => e.to_string(),
        }
    }

    fn conditions(&self, seed: u64) -> Conditions {
        Conditions {
            scenario: Some("llm".to_owned()),
            target: Some(TargetKind::LlamaServer),
            server: Some(format!(
                "{} (llama.cpp's server, CPU, the tiny random-weight GGUF of xtask/llama/make_gguf.py)",
                self.describe(seed, None)
            )),
            api: Some(format!(
                "openai-chat, streamed (stream_options.include_usage), max_tokens drawn {LLAMA_ANSWER_TOKENS} with ignore_eos, temperature 0"
            )),
            payloads: Some(payloads("as one user message each")),
            before_client: Some(format!("loadgen --profile baseline --api openai-chat -c {LLAMA_STREAMS} (a new connection per request)")),
            ..Conditions::default()
        }
    }
}

/// The seed of pair `n`: see [`FIRST_SEED`].
pub(crate) fn pair_seed(pair: u32) -> u64 {
    FIRST_SEED + u64::from(pair) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask perf` parsed from `flags`.
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
    fn each_server_maps_the_settings_it_can_apply_and_refuses_the_others() {
        let slots = ServerSetting::MaxNumSeqs { max_num_seqs: 20 };
        let delay = ServerSetting::DynamicBatching {
            max_queue_delay_us: 2000,
        };
        let llm = Llm::new(&perf_args(&["--scenario", "llm"]));
        assert_eq!(
            llm.server_args(Some(&slots)).unwrap(),
            ["--profile", "llm-slots", "--max-num-seqs=20"]
        );
        assert!(llm.server_args(Some(&delay)).is_err());
        let chunking = ServerSetting::ChunkedPrefill { enabled: false };
        let err = llm.server_args(Some(&chunking)).unwrap_err().to_string();
        assert!(err.contains("the LLM simulator cannot apply"), "{err}");
        let setup = Triton::setup(43, Some(&delay)).unwrap();
        assert_eq!(
            (setup.seed, setup.dynamic_batching_delay_us),
            (43, Some(2000))
        );
        assert_eq!(Triton::setup(42, None).unwrap(), TritonSetup::PLACEHOLDER);
        let err = Triton::setup(42, Some(&slots)).unwrap_err().to_string();
        assert!(err.contains("Triton cannot apply"), "{err}");
        assert_eq!(LlamaCpp::slots(None).unwrap(), LLAMA_BEFORE_SLOTS);
        assert_eq!(LlamaCpp::slots(Some(&slots)).unwrap(), 20);
        let err = LlamaCpp::slots(Some(&delay)).unwrap_err().to_string();
        assert!(err.contains("llama-server cannot apply"), "{err}");
    }

    #[test]
    fn the_llm_scenario_describes_the_users_server_and_applies_a_change_on_top() {
        let llm = Llm::new(&perf_args(&[
            "--scenario",
            "llm",
            "--profile",
            "placeholder",
            "--server-arg=--max-num-seqs=4",
            "--server-arg",
            "--max-batched-tokens",
            "--server-arg",
            "512",
            "--server-arg=--prefix-cache-blocks=64",
        ]));
        // The Before: the user's profile and flags as given.
        assert_eq!(
            llm.server_args(None).unwrap(),
            [
                "--profile",
                "placeholder",
                "--max-num-seqs=4",
                "--max-batched-tokens",
                "512",
                "--prefix-cache-blocks=64"
            ]
        );
        // A change replaces the user's own value of its flag, keeps the rest.
        let budget = ServerSetting::MaxBatchedTokens {
            max_batched_tokens: 1024,
        };
        assert_eq!(
            llm.server_args(Some(&budget)).unwrap(),
            [
                "--profile",
                "placeholder",
                "--max-num-seqs=4",
                "--prefix-cache-blocks=64",
                "--max-batched-tokens=1024"
            ]
        );
        let slots = ServerSetting::MaxNumSeqs { max_num_seqs: 8 };
        assert_eq!(
            llm.server_args(Some(&slots)).unwrap(),
            [
                "--profile",
                "placeholder",
                "--max-batched-tokens",
                "512",
                "--prefix-cache-blocks=64",
                "--max-num-seqs=8"
            ]
        );
        // report whatif is told the same server; what stub-server cannot
        // change is predicted, never chosen.
        let w = llm.spec().whatif_args.join(" ");
        assert!(
            w.contains("--max-num-seqs 4 --max-batched-tokens 512 --kv-block-tokens 16 --prefix-cache-blocks 64"),
            "{w}"
        );
        assert!(!w.contains("--kv-cache-tokens"), "{w}");
        assert!(w.contains("--server-changes slots,batched-tokens"), "{w}");
        let words = model::payload::baseline_input(0).split_whitespace().count();
        assert!(w.contains(&format!("--prompt-tokens {words}")), "{w}");
        assert_eq!(llm.spec().before_label, "Before (baseline client, 4 slots)");
        // Without flags: the llm-slots profile's 8 slots.
        let plain = Llm::new(&perf_args(&["--scenario", "llm"]));
        assert!(plain
            .spec()
            .whatif_args
            .join(" ")
            .contains("--max-num-seqs 8"));
        assert_eq!(plain.describe(0, None), "stub-server --profile llm-slots");
    }

    #[test]
    fn llama_server_is_told_only_the_change_it_can_apply_and_probed_with_a_slot_a_stream() {
        let llama = LlamaCpp::new(&perf_args(&["--scenario", "llm", "--server", "llama"]));
        let spec = llama.spec();
        // A chosen replica or token budget would stop the workflow: the
        // runner sets the slots alone.
        let w = spec.whatif_args.join(" ");
        assert!(w.contains("--server-changes slots"), "{w}");
        assert!(w.contains("--pass-tokens 512"), "{w}");
        assert!(spec.probe);
        assert_eq!(
            spec.llm_probe.concurrent_streams,
            Some(LLAMA_STREAMS as u32)
        );
        // The probe's client sets its own answer length.
        assert!(!spec.llm_probe.client_args.contains(&"--max-tokens"));
        assert!(LlamaCpp::slots(Some(&ServerSetting::Replicas { replicas: 2 })).is_err());
    }

    #[test]
    fn a_user_seed_wins_over_the_pairs() {
        assert!(sets_seed(&["--seed=7".to_owned()]));
        assert!(sets_seed(&["--seed".to_owned(), "7".to_owned()]));
        assert!(!sets_seed(&["--seeds".to_owned()]));
        assert_eq!((pair_seed(1), pair_seed(2)), (FIRST_SEED, FIRST_SEED + 1));
    }
}
