//! `cargo xtask whatif-validate --scenario llm`: the continuous-batching
//! engine (`report whatif --scenario llm`) against stub-server LLM
//! configurations its fit never saw, and against llama.cpp's
//! `llama-server` at two slot counts.
//!
//! For each configuration below: a fresh server per phase; a streamed
//! `loadgen --api openai-chat` Before with the scenario's prompt and answer
//! lengths and arrival process (llama-server: the workflow's load); the
//! step probe (one request at a time at a few prompt lengths; for
//! llama-server, then a concurrent run); `report whatif --scenario llm`;
//! then the scenario's candidate (a slot count other than the Before's)
//! run [`CANDIDATE_RUNS`] times for real, each on a fresh server. The
//! candidate's predicted TTFT P95 and ITL P99 are compared with the
//! medians of the runs; a scenario passes when both are within 10% (20%
//! on llama-server). Where the engine's closed loop started together
//! predicts another pattern, each run is also listed against both
//! predictions, since a run keeps the pattern its first steps set. A
//! minute or so a scenario, so not in CI; the table goes in `docs/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use model::whatif::{LlmChange, LlmEngineReport, WhatifReport};
use serde::{Deserialize, Serialize};

use crate::backend;
use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::machine::Machine;
use crate::perf::{create_dir, CLIENT_LIMIT, PACKAGES};
use crate::process::{self, ServerProcess};
use crate::{llama, whatif};

/// How far a prediction may be from the measurement, percent of the
/// measurement.
pub(crate) const GOAL_PCT: f64 = 10.0;

/// The same on llama-server, whose steps share two cores with the client
/// and its own HTTP threads, percent.
pub(crate) const LLAMA_GOAL_PCT: f64 = 20.0;

/// llama.cpp's `llama-server` (CPU, the tiny local model) under the
/// workflow's load (`--profile baseline`, its streams, its answers): the
/// Before's slots and the candidate's.
struct LlamaScenario {
    name: &'static str,
    slots: u32,
    candidate_slots: u32,
}

const LLAMA_SCENARIOS: [LlamaScenario; 2] = [
    LlamaScenario {
        name: "llama-server-1-to-4",
        slots: 1,
        candidate_slots: 4,
    },
    LlamaScenario {
        name: "llama-server-2-to-8",
        slots: 2,
        candidate_slots: 8,
    },
];

/// Fresh runs of the candidate: a closed loop over more streams than
/// slots settles into one of a few steady patterns, set by how many
/// requests its idle server's first step happens to take (sub-millisecond
/// timing; stub-server's `long-prompts-c6`: ITL P99 124.5 ms in two of
/// three fresh starts, 174 ms in the rest), and a CPU server shares two
/// cores with the client: the measurement is the median of three.
const CANDIDATE_RUNS: usize = 3;

/// Requests of each llama-server phase (the workflow's).
const LLAMA_REQUESTS: u32 = 400;

/// How requests arrive.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// Closed loop: this many streams, each sending its next request when
    /// the last one ends.
    Closed { concurrency: u32 },
    /// Open loop at this rate, evenly spaced or Poisson.
    Open { rate_rps: f64, poisson: bool },
}

impl Arrival {
    fn loadgen_args(self) -> Vec<String> {
        match self {
            Self::Closed { concurrency } => vec!["-c".to_owned(), concurrency.to_string()],
            Self::Open { rate_rps, poisson } => {
                let mut args = vec!["--rate".to_owned(), rate_rps.to_string()];
                if poisson {
                    args.extend(["--arrival".to_owned(), "poisson".to_owned()]);
                }
                args
            }
        }
    }

    /// The same load, as `report whatif` simulates it.
    fn whatif_args(self) -> Vec<String> {
        match self {
            Self::Closed { concurrency } => {
                vec!["--concurrency".to_owned(), concurrency.to_string()]
            }
            Self::Open { rate_rps, poisson } => {
                let mut args = vec!["--rate".to_owned(), rate_rps.to_string()];
                if poisson {
                    args.push("--poisson".to_owned());
                }
                args
            }
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Closed { concurrency } => format!("c={concurrency}"),
            Self::Open { rate_rps, poisson } => format!(
                "{rate_rps} req/s {}",
                if poisson { "Poisson" } else { "even" }
            ),
        }
    }
}

/// One stub-server LLM configuration, the load on it, and the slot count
/// the candidate runs with.
struct Scenario {
    name: &'static str,
    slots: u32,
    step_base_ms: f64,
    step_per_seq_ms: f64,
    prefill_per_token_ms: f64,
    input_tokens: u32,
    max_tokens: u32,
    arrival: Arrival,
    requests: u32,
    /// One of the engine's slot candidates (half, 1.5x, 2x, 4x the
    /// Before's slots, or the Before's streams in flight).
    candidate_slots: u32,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "llm-slots-c20",
        slots: 8,
        step_base_ms: 6.0,
        step_per_seq_ms: 0.4,
        prefill_per_token_ms: 0.05,
        input_tokens: 64,
        max_tokens: 32,
        arrival: Arrival::Closed { concurrency: 20 },
        requests: 160,
        candidate_slots: 16,
    },
    Scenario {
        name: "two-slots-long-prefill",
        slots: 2,
        step_base_ms: 4.0,
        step_per_seq_ms: 1.0,
        prefill_per_token_ms: 0.2,
        input_tokens: 256,
        max_tokens: 16,
        arrival: Arrival::Closed { concurrency: 4 },
        requests: 100,
        candidate_slots: 4,
    },
    Scenario {
        name: "wide-slots-halved",
        slots: 16,
        step_base_ms: 8.0,
        step_per_seq_ms: 0.2,
        prefill_per_token_ms: 0.02,
        input_tokens: 32,
        max_tokens: 64,
        arrival: Arrival::Closed { concurrency: 32 },
        requests: 128,
        candidate_slots: 8,
    },
    Scenario {
        name: "long-prompts-c6",
        slots: 3,
        step_base_ms: 10.0,
        step_per_seq_ms: 2.0,
        prefill_per_token_ms: 0.1,
        input_tokens: 512,
        max_tokens: 24,
        arrival: Arrival::Closed { concurrency: 6 },
        requests: 90,
        candidate_slots: 6,
    },
    Scenario {
        name: "open-poisson",
        slots: 4,
        step_base_ms: 5.0,
        step_per_seq_ms: 0.5,
        prefill_per_token_ms: 0.05,
        input_tokens: 128,
        max_tokens: 32,
        arrival: Arrival::Open {
            rate_rps: 10.0,
            poisson: true,
        },
        requests: 150,
        candidate_slots: 8,
    },
    Scenario {
        name: "open-even",
        slots: 8,
        step_base_ms: 6.0,
        step_per_seq_ms: 0.4,
        prefill_per_token_ms: 0.05,
        input_tokens: 64,
        max_tokens: 48,
        arrival: Arrival::Open {
            rate_rps: 14.0,
            poisson: false,
        },
        requests: 150,
        candidate_slots: 16,
    },
];

impl Scenario {
    fn server_args(&self, slots: u32) -> Vec<String> {
        vec![
            "--profile".to_owned(),
            "llm-slots".to_owned(),
            format!("--max-num-seqs={slots}"),
            format!("--step-base-ms={}", self.step_base_ms),
            format!("--step-per-seq-ms={}", self.step_per_seq_ms),
            format!("--prefill-per-token-ms={}", self.prefill_per_token_ms),
        ]
    }

    fn describe(&self) -> String {
        format!(
            "{} slots, step {} ms + {} ms/seq, prefill {} ms/token, {} prompt / {} answer tokens, {}, {} requests",
            self.slots,
            self.step_base_ms,
            self.step_per_seq_ms,
            self.prefill_per_token_ms,
            self.input_tokens,
            self.max_tokens,
            self.arrival.describe(),
            self.requests
        )
    }
}

/// A prediction beside its measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Comparison {
    pub(crate) predicted_ms: f64,
    pub(crate) measured_ms: f64,
    /// (predicted - measured) / measured, percent; `None` when nothing
    /// was measured to divide by.
    pub(crate) error_pct: Option<f64>,
    pub(crate) within_goal: bool,
}

impl Comparison {
    pub(crate) fn new(predicted_ms: f64, measured_ms: f64, goal_pct: f64) -> Self {
        let error_pct = (measured_ms > 0.0 && predicted_ms.is_finite())
            .then(|| (predicted_ms - measured_ms) / measured_ms * 100.0);
        Self {
            predicted_ms,
            measured_ms,
            error_pct,
            within_goal: error_pct.is_some_and(|e| e.abs() <= goal_pct),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    /// Each candidate run's TTFT P95 and ITL P99, ms (the measurement is
    /// their medians).
    pub(crate) candidate_runs: Vec<(f64, f64)>,
    pub(crate) setup: String,
    pub(crate) change: String,
    pub(crate) before_ttft_p95_ms: f64,
    pub(crate) before_itl_p99_ms: f64,
    pub(crate) ttft_p95: Comparison,
    pub(crate) itl_p99: Comparison,
    pub(crate) goal_pct: f64,
    pub(crate) passed: bool,
    /// The engine's words where its point runs fell into two patterns.
    pub(crate) patterns: Option<String>,
    /// The engine's TTFT P95 and ITL P99, ms, had a closed loop's first
    /// requests all reached the server in its first step.
    pub(crate) started_together: Option<(f64, f64)>,
    /// Which prediction each candidate run matched within the goal on both
    /// metrics, in run order.
    pub(crate) run_matches: Vec<RunMatch>,
}

/// Which of the engine's two predictions a measured run matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunMatch {
    /// The prediction (the Before's starts replayed), both metrics within
    /// the goal.
    Predicted,
    /// The prediction started together, both metrics within the goal.
    StartedTogether,
    /// Neither.
    Neither,
}

impl RunMatch {
    /// `run` (TTFT P95, ITL P99) against `predicted` and `together`,
    /// within `goal_pct` on both metrics; the prediction first.
    pub(crate) fn of(
        run: (f64, f64),
        predicted: (f64, f64),
        together: Option<(f64, f64)>,
        goal_pct: f64,
    ) -> Self {
        let within = |p: (f64, f64)| {
            Comparison::new(p.0, run.0, goal_pct).within_goal
                && Comparison::new(p.1, run.1, goal_pct).within_goal
        };
        if within(predicted) {
            Self::Predicted
        } else if together.is_some_and(within) {
            Self::StartedTogether
        } else {
            Self::Neither
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Predicted => "as predicted",
            Self::StartedTogether => "as started together",
            Self::Neither => "neither",
        }
    }
}

/// What is read of `report summary`'s LLM part.
#[derive(Debug, Deserialize)]
struct Summary {
    llm: Option<LlmSummary>,
}

#[derive(Debug, Deserialize)]
struct LlmSummary {
    ttft: Series,
    itl: Series,
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(deserialize_with = "crate::json::nullable")]
    p95_ms: Option<f64>,
    #[serde(deserialize_with = "crate::json::nullable")]
    p99_ms: Option<f64>,
}

/// Runs the LLM scenarios whose name contains `only` (all without it)
/// into `out`; true when every one met the goal.
pub(crate) fn run(out: &Path, only: Option<&str>) -> Result<bool, TaskError> {
    let started = Instant::now();
    let matches = |name: &str| only.is_none_or(|o| name.contains(o));
    let chosen: Vec<&Scenario> = SCENARIOS.iter().filter(|s| matches(s.name)).collect();
    let chosen_llama: Vec<&LlamaScenario> =
        LLAMA_SCENARIOS.iter().filter(|s| matches(s.name)).collect();
    if chosen.is_empty() && chosen_llama.is_empty() {
        return Err(TaskError::BadFlag(format!(
            "--only {:?} matches no LLM scenario; allowed: a part of {}",
            only.unwrap_or(""),
            SCENARIOS
                .iter()
                .map(|s| s.name)
                .chain(LLAMA_SCENARIOS.iter().map(|s| s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let bins = build::release_binaries(&PACKAGES)?;
    create_dir(out)?;
    let mut rows = Vec::new();
    let print = |row: &Row| {
        println!(
            "{}: {}; TTFT P95 predicted {:.1} ms, measured {:.1} ms ({}); ITL P99 predicted {:.2} ms, measured {:.2} ms ({}): {}",
            row.scenario,
            row.change,
            row.ttft_p95.predicted_ms,
            row.ttft_p95.measured_ms,
            error_text(row.ttft_p95.error_pct),
            row.itl_p99.predicted_ms,
            row.itl_p99.measured_ms,
            error_text(row.itl_p99.error_pct),
            if row.passed { "pass" } else { "FAIL" }
        );
    };
    for scenario in chosen {
        println!("\n=== {}: {} ===", scenario.name, scenario.describe());
        let row = validate(&bins, scenario, &out.join(scenario.name))?;
        print(&row);
        rows.push(row);
    }
    if !chosen_llama.is_empty() {
        let root = crate::workspace::root()?;
        let model_dir = out.join("llama");
        create_dir(&model_dir)?;
        let install = llama::prepare(&root, &model_dir)?;
        for scenario in chosen_llama {
            println!("\n=== {}: {} ===", scenario.name, scenario.describe());
            let row = validate_llama(&bins, &install, scenario, &out.join(scenario.name))?;
            print(&row);
            rows.push(row);
        }
    }
    let passed = rows.iter().all(|r| r.passed);
    let table = markdown(&rows);
    print!("\n{table}");
    let document = serde_json::json!({
        "scenario": "llm",
        "goal_pct": GOAL_PCT,
        "llama_server_goal_pct": LLAMA_GOAL_PCT,
        "rows": rows,
        "passed": passed,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": Machine::probe().conditions_json(),
    });
    crate::whatif_validate::write(
        &out.join("whatif-validate-llm.json"),
        &serde_json::to_string_pretty(&document).unwrap_or_default(),
    )?;
    crate::whatif_validate::write(&out.join("whatif-validate-llm.md"), &table)?;
    println!(
        "table in {} (whatif-validate-llm.md, whatif-validate-llm.json); took {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(passed)
}

fn validate(bins: &Binaries, scenario: &Scenario, dir: &Path) -> Result<Row, TaskError> {
    create_dir(&dir.join("logs"))?;
    let loadgen = |url: &str| {
        let mut cmd = Command::new(bins.path("loadgen"));
        cmd.args(["--url", url, "--api", "openai-chat"])
            .stdin(Stdio::null());
        cmd
    };
    let phase = |name: &str, slots: u32| -> Result<PathBuf, TaskError> {
        let server = ServerProcess::start(
            &bins.path("stub-server"),
            &scenario.server_args(slots),
            &dir.join(format!("logs/{name}-server.log")),
        )?;
        let log = dir.join(format!("{name}.csv"));
        let status = process::run_with_deadline(
            loadgen(&server.base_url)
                .args(["-q", "--verify", "--ignore-eos"])
                .args(["--input-tokens", &scenario.input_tokens.to_string()])
                .args(["--max-tokens", &scenario.max_tokens.to_string()])
                .args(scenario.arrival.loadgen_args())
                .args(["-n", &scenario.requests.to_string()])
                .args(["--out".as_ref(), log.as_os_str()])
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        match status.code() {
            Some(0 | 1) => Ok(log),
            _ => Err(TaskError::Step(format!(
                "{}: loadgen ({name}) could not run ({status})",
                scenario.name
            ))),
        }
    };
    let before = phase("before", scenario.slots)?;
    let (probes, probe_tokens) = {
        let server = ServerProcess::start(
            &bins.path("stub-server"),
            &scenario.server_args(scenario.slots),
            &dir.join("logs/probe-server.log"),
        )?;
        whatif::llm_probe(
            &whatif::LlmProbe::SIMULATOR,
            || loadgen(&server.base_url),
            dir,
            CLIENT_LIMIT,
        )?
    };
    let scenario_args: Vec<String> = [
        "--max-num-seqs".to_owned(),
        scenario.slots.to_string(),
        "--max-batched-tokens".to_owned(),
        "2048".to_owned(),
        "--prompt-tokens".to_owned(),
        scenario.input_tokens.to_string(),
    ]
    .into_iter()
    .chain(scenario.arrival.whatif_args())
    .chain(["--requests".to_owned(), scenario.requests.to_string()])
    .chain([
        "--server-changes".to_owned(),
        "slots,batched-tokens".to_owned(),
    ])
    .collect();
    predict_and_measure(
        bins,
        Validation {
            name: scenario.name,
            setup: scenario.describe(),
            change: format!(
                "max_num_seqs {} -> {}",
                scenario.slots, scenario.candidate_slots
            ),
            whatif_args: scenario_args,
            before: &before,
            probes: &probes,
            probe_lengths: &probe_tokens,
            candidate_slots: scenario.candidate_slots,
            goal_pct: GOAL_PCT,
            dir,
        },
        &phase,
    )
}

impl LlamaScenario {
    fn describe(&self) -> String {
        format!(
            "llama-server --parallel {} (CPU, the tiny local model), loadgen --profile baseline, {} streams, answers of {} tokens, {LLAMA_REQUESTS} requests",
            self.slots,
            backend::LLAMA_STREAMS,
            backend::LLAMA_ANSWER_TOKENS,
        )
    }
}

/// One llama-server scenario: a fresh server per phase, the Before, the
/// workflow's probe, `report whatif`, the candidate measured.
fn validate_llama(
    bins: &Binaries,
    install: &llama::Install,
    scenario: &LlamaScenario,
    dir: &Path,
) -> Result<Row, TaskError> {
    create_dir(&dir.join("logs"))?;
    let loadgen = |url: &str, client_args: &[String]| {
        let mut cmd = Command::new(bins.path("loadgen"));
        cmd.args(["--url", url, "--api", "openai-chat"])
            .args(client_args)
            .stdin(Stdio::null());
        cmd
    };
    let client_args = backend::llama_client_args();
    let phase = |name: &str, slots: u32| -> Result<PathBuf, TaskError> {
        let server = llama::start(install, slots, &dir.join(format!("logs/{name}-server.log")))?;
        let log = dir.join(format!("{name}.csv"));
        let status = process::run_with_deadline(
            loadgen(&server.base_url, &client_args)
                .args(["-q", "--profile", "baseline"])
                .args(["-c", &backend::LLAMA_STREAMS.to_string()])
                .args(["-n", &LLAMA_REQUESTS.to_string()])
                .args(["--out".as_ref(), log.as_os_str()])
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        match status.code() {
            Some(0 | 1) => Ok(log),
            _ => Err(TaskError::Step(format!(
                "{}: loadgen ({name}) could not run ({status})",
                scenario.name
            ))),
        }
    };
    let before = phase("before", scenario.slots)?;
    let probe = backend::LLAMA_PROBE;
    let (probes, probe_words) = {
        let slots = probe.concurrent_streams.unwrap_or(scenario.slots);
        let server = llama::start(install, slots, &dir.join("logs/probe-server.log"))?;
        let args: Vec<String> = probe.client_args.iter().map(|a| (*a).to_owned()).collect();
        whatif::llm_probe(
            &probe,
            || loadgen(&server.base_url, &args),
            dir,
            CLIENT_LIMIT,
        )?
    };
    let scenario_args: Vec<String> = [
        "--max-num-seqs".to_owned(),
        scenario.slots.to_string(),
        "--concurrency".to_owned(),
        backend::LLAMA_STREAMS.to_string(),
        "--requests".to_owned(),
        LLAMA_REQUESTS.to_string(),
        "--pass-tokens".to_owned(),
        llama::PASS_TOKENS.to_string(),
        "--server-changes".to_owned(),
        "slots".to_owned(),
    ]
    .into();
    predict_and_measure(
        bins,
        Validation {
            name: scenario.name,
            setup: scenario.describe(),
            change: format!(
                "--parallel {} -> {}",
                scenario.slots, scenario.candidate_slots
            ),
            whatif_args: scenario_args,
            before: &before,
            probes: &probes,
            probe_lengths: &probe_words,
            candidate_slots: scenario.candidate_slots,
            goal_pct: LLAMA_GOAL_PCT,
            dir,
        },
        &phase,
    )
}

/// One scenario's Before and probes, and what its row says of them.
struct Validation<'a> {
    name: &'static str,
    setup: String,
    change: String,
    /// `report whatif`'s flags for the Before's server and load.
    whatif_args: Vec<String>,
    before: &'a Path,
    probes: &'a [PathBuf],
    /// Each probe log's prompt length, where the log has none.
    probe_lengths: &'a [u32],
    candidate_slots: u32,
    goal_pct: f64,
    dir: &'a Path,
}

/// `report whatif --scenario llm` over the Before and the probes, then
/// the candidate's slots run [`CANDIDATE_RUNS`] times by `phase` (a fresh
/// server and loadgen, its log's path back): the row.
fn predict_and_measure(
    bins: &Binaries,
    v: Validation<'_>,
    phase: &dyn Fn(&str, u32) -> Result<PathBuf, TaskError>,
) -> Result<Row, TaskError> {
    let json_path = v.dir.join("whatif.json");
    let mut cmd = Command::new(bins.path("report"));
    cmd.args(["whatif", "--scenario", "llm"])
        .args(&v.whatif_args)
        .args(["--before".as_ref(), v.before.as_os_str()])
        .args(
            v.probes
                .iter()
                .flat_map(|p| ["--probe".as_ref(), p.as_os_str()]),
        )
        .args(
            v.probe_lengths
                .iter()
                .flat_map(|t| ["--probe-prompt-tokens".to_owned(), t.to_string()]),
        )
        .args(["--json".as_ref(), json_path.as_os_str()])
        .stdout(Stdio::null());
    let report: WhatifReport = whatif::analyse(&mut cmd, &json_path, CLIENT_LIMIT)?;
    let engine = report.llm.ok_or_else(|| {
        TaskError::Step(format!(
            "{}: report whatif wrote no LLM engine prediction",
            json_path.display()
        ))
    })?;
    let candidate = slot_candidate(&engine, v.candidate_slots).ok_or_else(|| {
        TaskError::Step(format!(
            "{}: report whatif predicted no candidate of {} slots",
            v.name, v.candidate_slots
        ))
    })?;
    let candidate_runs = (1..=CANDIDATE_RUNS)
        .map(|i| measured(bins, &phase(&format!("after{i}"), v.candidate_slots)?))
        .collect::<Result<Vec<_>, TaskError>>()?;
    let (before_ttft_p95_ms, before_itl_p99_ms) = measured(bins, v.before)?;
    let (ttft_ms, itl_ms) = medians(&candidate_runs);
    let started_together = candidate
        .started_together
        .map(|t| (t.ttft_p95_ms, t.itl_p99_ms));
    let predicted = (candidate.ttft.p95_ms, candidate.itl.p99_ms);
    let run_matches = candidate_runs
        .iter()
        .map(|&run| RunMatch::of(run, predicted, started_together, v.goal_pct))
        .collect();
    let ttft_p95 = Comparison::new(candidate.ttft.p95_ms, ttft_ms, v.goal_pct);
    let itl_p99 = Comparison::new(candidate.itl.p99_ms, itl_ms, v.goal_pct);
    Ok(Row {
        scenario: v.name.to_owned(),
        setup: v.setup,
        change: v.change,
        before_ttft_p95_ms,
        before_itl_p99_ms,
        candidate_runs,
        passed: ttft_p95.within_goal && itl_p99.within_goal,
        ttft_p95,
        itl_p99,
        goal_pct: v.goal_pct,
        patterns: candidate.patterns.clone(),
        started_together,
        run_matches,
    })
}

/// The medians of the runs' TTFT P95 and of their ITL P99.
fn medians(runs: &[(f64, f64)]) -> (f64, f64) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        stats::quantile(&v, 0.5, stats::QuantileMethod::Linear).unwrap_or(f64::NAN)
    };
    (
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect()),
    )
}

/// The engine's prediction for `slots` sequence slots.
fn slot_candidate(engine: &LlmEngineReport, slots: u32) -> Option<&model::whatif::LlmCandidateRow> {
    engine.candidates.iter().find(
        |c| matches!(c.change, LlmChange::MaxNumSeqs { max_num_seqs } if max_num_seqs == slots),
    )
}

/// A log's measured TTFT P95 and ITL P99, from `report summary`.
fn measured(bins: &Binaries, log: &Path) -> Result<(f64, f64), TaskError> {
    let summary: Summary = crate::perf::report_summary(bins, log)?;
    let none = || TaskError::Step(format!("{}: no streamed answer measured", log.display()));
    let llm = summary.llm.ok_or_else(none)?;
    Ok((
        llm.ttft.p95_ms.ok_or_else(none)?,
        llm.itl.p99_ms.ok_or_else(none)?,
    ))
}

fn error_text(error_pct: Option<f64>) -> String {
    error_pct.map_or("-".to_owned(), |e| format!("{e:+.1}%"))
}

pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "| scenario | setup | what changed | Before TTFT P95 ms | TTFT P95 predicted ms | measured ms (median of the runs) | error | Before ITL P99 ms | ITL P99 predicted ms | measured ms (median of the runs) | error | within goal |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let runs = |r: &Row, pick: fn(&(f64, f64)) -> f64, places: usize| {
        r.candidate_runs
            .iter()
            .map(|run| format!("{:.*}", places, pick(run)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} ({}) | {} | {:.2} | {:.2} | {:.2} ({}) | {} | {} |",
            r.scenario,
            r.setup,
            r.change,
            r.before_ttft_p95_ms,
            r.ttft_p95.predicted_ms,
            r.ttft_p95.measured_ms,
            runs(r, |run| run.0, 1),
            error_text(r.ttft_p95.error_pct),
            r.before_itl_p99_ms,
            r.itl_p99.predicted_ms,
            r.itl_p99.measured_ms,
            runs(r, |run| run.1, 2),
            error_text(r.itl_p99.error_pct),
            if r.passed {
                format!("yes (±{}%)", r.goal_pct)
            } else {
                format!("NO (±{}%)", r.goal_pct)
            }
        );
    }
    let split: Vec<&Row> = rows.iter().filter(|r| r.patterns.is_some()).collect();
    if !split.is_empty() {
        md.push_str("\nWhere the engine's point runs fell into two patterns (the prediction is the median run):\n\n");
        for r in split {
            let _ = writeln!(
                md,
                "- {}: {}.",
                r.scenario,
                r.patterns.as_deref().unwrap_or_default()
            );
        }
    }
    // Only where starting together predicts another pattern: elsewhere
    // the two predictions are one.
    let apart = |r: &&Row| {
        r.started_together.is_some_and(|t| {
            !Comparison::new(t.0, r.ttft_p95.predicted_ms, r.goal_pct).within_goal
                || !Comparison::new(t.1, r.itl_p99.predicted_ms, r.goal_pct).within_goal
        })
    };
    let two: Vec<&Row> = rows.iter().filter(apart).collect();
    if !two.is_empty() {
        md.push_str("\nWhere a closed loop started together would settle into another pattern, each run against both predictions (TTFT P95 ms / ITL P99 ms):\n\n");
        for r in two {
            let (ttft, itl) = r.started_together.unwrap_or_default();
            let runs: Vec<String> = r
                .candidate_runs
                .iter()
                .zip(&r.run_matches)
                .map(|(run, m)| format!("{:.1} / {:.2} {}", run.0, run.1, m.words()))
                .collect();
            let matched = r
                .run_matches
                .iter()
                .filter(|&&m| m != RunMatch::Neither)
                .count();
            let _ = writeln!(
                md,
                "- {}: predicted {:.1} / {:.2}, started together {ttft:.1} / {itl:.2}; runs {}: {matched} of {} within ±{}% of one of them.",
                r.scenario,
                r.ttft_p95.predicted_ms,
                r.itl_p99.predicted_ms,
                runs.join(", "),
                r.run_matches.len(),
                r.goal_pct,
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_is_within_the_goal_only_inside_it_and_never_without_a_measurement() {
        let c = Comparison::new(110.0, 100.0, 10.0);
        assert!((c.error_pct.unwrap() - 10.0).abs() < 1e-9);
        assert!(c.within_goal);
        let low = Comparison::new(88.0, 100.0, 10.0);
        assert!((low.error_pct.unwrap() + 12.0).abs() < 1e-9);
        assert!(!low.within_goal);
        let high = Comparison::new(111.0, 100.0, 10.0);
        assert!(!high.within_goal);
        let nothing = Comparison::new(50.0, 0.0, 10.0);
        assert_eq!(nothing.error_pct, None);
        assert!(!nothing.within_goal);
    }

    #[test]
    fn the_table_has_one_line_a_scenario_with_both_errors_and_the_verdict() {
        let row = |name: &str, ttft: Comparison, itl: Comparison| Row {
            patterns: None,
            started_together: None,
            run_matches: Vec::new(),
            scenario: name.to_owned(),
            setup: "8 slots".to_owned(),
            change: "max_num_seqs 8 -> 16".to_owned(),
            before_ttft_p95_ms: 300.0,
            before_itl_p99_ms: 9.0,
            candidate_runs: vec![(99.0, 10.0), (100.0, 10.0), (130.0, 12.5)],
            passed: ttft.within_goal && itl.within_goal,
            ttft_p95: ttft,
            itl_p99: itl,
            goal_pct: 10.0,
        };
        let md = markdown(&[
            row(
                "good",
                Comparison::new(105.0, 100.0, 10.0),
                Comparison::new(9.5, 10.0, 10.0),
            ),
            row(
                "bad",
                Comparison::new(105.0, 100.0, 10.0),
                Comparison::new(5.0, 10.0, 10.0),
            ),
        ]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert_eq!(
            lines[2],
            "| good | 8 slots | max_num_seqs 8 -> 16 | 300.0 | 105.0 | 100.0 (99.0, 100.0, 130.0) | +5.0% | 9.00 | 9.50 | 10.00 (10.00, 10.00, 12.50) | -5.0% | yes (±10%) |"
        );
        assert!(lines[3].ends_with("| -50.0% | NO (±10%) |"), "{}", lines[3]);
        // Every line has as many cells as the header.
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{md}");
        // A row whose point runs split is listed under the table.
        let mut split = row(
            "split",
            Comparison::new(105.0, 100.0, 10.0),
            Comparison::new(9.5, 10.0, 10.0),
        );
        split.patterns = Some("the point runs settle into two patterns: x".to_owned());
        let md = markdown(&[split]);
        assert!(
            md.ends_with("two patterns (the prediction is the median run):\n\n- split: the point runs settle into two patterns: x.\n"),
            "{md}"
        );
    }

    #[test]
    fn a_run_matches_the_prediction_or_the_start_together_on_both_metrics() {
        // Predicted 76 ms / 9.1 ms staggered, 85 / 2.5 started together.
        let (predicted, together) = ((76.0, 9.1), Some((85.0, 2.5)));
        let of = |run| RunMatch::of(run, predicted, together, 20.0);
        assert_eq!(of((66.1, 8.14)), RunMatch::Predicted);
        assert_eq!(of((79.3, 2.74)), RunMatch::StartedTogether);
        // The lockstep ITL with the staggered TTFT matches neither: both
        // metrics must fit one prediction.
        assert_eq!(of((60.0, 2.6)), RunMatch::Neither);
        assert_eq!(
            RunMatch::of((79.3, 2.74), predicted, None, 20.0),
            RunMatch::Neither
        );
        // Within both, the prediction counts first.
        assert_eq!(
            RunMatch::of((80.0, 5.0), (80.0, 5.0), Some((80.0, 5.0)), 20.0),
            RunMatch::Predicted
        );
    }

    #[test]
    fn runs_are_listed_against_both_patterns_only_where_they_differ() {
        let base = Row {
            patterns: None,
            started_together: Some((85.0, 2.5)),
            run_matches: vec![
                RunMatch::StartedTogether,
                RunMatch::Predicted,
                RunMatch::Neither,
            ],
            scenario: "llama".to_owned(),
            setup: "4 slots".to_owned(),
            change: "max_num_seqs 1 -> 4".to_owned(),
            before_ttft_p95_ms: 96.0,
            before_itl_p99_ms: 0.4,
            candidate_runs: vec![(79.3, 2.74), (66.1, 8.14), (40.0, 2.0)],
            passed: false,
            ttft_p95: Comparison::new(76.0, 79.3, 20.0),
            itl_p99: Comparison::new(9.1, 2.74, 20.0),
            goal_pct: 20.0,
        };
        let md = markdown(std::slice::from_ref(&base));
        assert!(
            md.ends_with("- llama: predicted 76.0 / 9.10, started together 85.0 / 2.50; runs 79.3 / 2.74 as started together, 66.1 / 8.14 as predicted, 40.0 / 2.00 neither: 2 of 3 within ±20% of one of them.\n"),
            "{md}"
        );
        // The same prediction either way: no list.
        let one = Row {
            started_together: Some((77.0, 9.0)),
            ..base
        };
        assert!(!markdown(&[one]).contains("started together"));
    }

    #[test]
    fn every_scenarios_candidate_is_one_the_engine_predicts() {
        // The engine's slot candidates: half, 1.5x, 2x, 4x the slots, or
        // the streams in flight (a closed loop's concurrency).
        for s in &SCENARIOS {
            let n = s.slots;
            let mut allowed = vec![n / 2, n + n / 2, 2 * n, 4 * n];
            if let Arrival::Closed { concurrency } = s.arrival {
                allowed.push(concurrency);
            }
            assert!(
                allowed.contains(&s.candidate_slots) && s.candidate_slots != n,
                "{}",
                s.name
            );
        }
        for s in &LLAMA_SCENARIOS {
            let n = s.slots;
            let allowed = [
                n / 2,
                n + n / 2,
                2 * n,
                4 * n,
                backend::LLAMA_STREAMS as u32,
            ];
            assert!(
                allowed.contains(&s.candidate_slots) && s.candidate_slots != n,
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn the_measurement_is_the_median_of_the_runs() {
        assert_eq!(
            medians(&[(296.1, 124.5), (345.3, 175.6), (292.1, 124.5)]),
            (296.1, 124.5)
        );
    }
}
