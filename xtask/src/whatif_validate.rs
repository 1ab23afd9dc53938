//! `cargo xtask whatif-validate`: the what-if engine against scenarios its
//! fit never saw.
//!
//! For each simulator configuration below: a fresh simulator per phase; the
//! baseline client (input.py's load shape at the scenario's concurrency) as
//! the Before; the batch-cost probe; `report whatif`; then the chosen
//! candidate measured as the After. The table compares the predicted P95
//! of the chosen candidate with the measured one; a scenario passes when
//! they are within 10% of each other, and the batching-useless scenario
//! passes only if the engine also says batching will not help. With
//! `--capacity`, each scenario also measures the open-loop capacity of the
//! client the engine names for it (`loadgen capacity`) against the
//! predicted one, within 10% too. Minutes of run time, so not in CI; the
//! tables go in `docs/`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use model::capacity::CapacityReport;
use serde::{Deserialize, Serialize};

use crate::build::{self, Binaries};
use crate::error::TaskError;
use crate::machine::Machine;
use crate::perf::{create_dir, CLIENT_LIMIT, FIRST_SEED, PACKAGES};
use crate::process::{self, ServerProcess};
use crate::{json, whatif};

/// Flags of `cargo xtask whatif-validate`.
#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
    /// Which engine: `inference` (the batch what-if engine on nine
    /// simulator scenarios) or `llm` (the continuous-batching engine on
    /// six stub-server LLM configurations).
    #[arg(long, value_enum, default_value = "inference", value_name = "SCENARIO")]
    scenario: ValidateScenario,
    /// Where the scenarios' logs and the table go.
    #[arg(long, default_value = "results/whatif-validate", value_name = "DIR")]
    out: PathBuf,
    /// Logical requests of every Before and After (1 to 100000); the LLM
    /// scenarios each have their own count.
    #[arg(long, default_value_t = 400, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| model::args::Bound::<u32> { what: "--requests", min: 1, max: 100_000 }.parse(t))]
    requests: u32,
    /// Run only the scenarios whose name contains this.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Also measure the open-loop capacity of the engine's client for it
    /// (from a quarter of the prediction, 2 s of warm-up a step).
    #[arg(long)]
    capacity: bool,
    /// With --capacity: the measured duration of each rate step (as
    /// `./run_tests --capacity-step`).
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        requires = "capacity"
    )]
    capacity_step: String,
}

/// What `--scenario` validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ValidateScenario {
    /// The batch-inference what-if engine.
    Inference,
    /// The LLM continuous-batching engine.
    Llm,
}

/// The SLA every scenario is judged by (`report whatif`'s default).
const SLA_P95_MS: f64 = 800.0;

/// Predicted and measured open-loop capacity of one scenario's client.
#[derive(Debug, Serialize)]
struct CapacityRow {
    client: String,
    predicted_rps: f64,
    measured_rps: Option<f64>,
    error_pct: Option<f64>,
    passed: bool,
}

/// One simulator configuration and the load on it.
struct Scenario {
    name: &'static str,
    workers: u32,
    base_ms: f64,
    per_item_ms: f64,
    jitter: f64,
    concurrency: u32,
    /// The engine must find that batching does not help.
    batching_useless: bool,
}

const SCENARIOS: [Scenario; 9] = [
    Scenario::new("placeholder", 2, 100.0, 2.0, 0.1, 20),
    Scenario::new("one-worker", 1, 50.0, 1.0, 0.1, 10),
    Scenario::new("four-workers-slow", 4, 200.0, 5.0, 0.2, 40),
    Scenario::new("small-no-jitter", 1, 20.0, 0.5, 0.0, 5),
    Scenario::new("heavy-base", 3, 300.0, 5.0, 0.2, 30),
    Scenario::new("costly-items", 2, 150.0, 20.0, 0.05, 30),
    Scenario::new("one-worker-jittery", 1, 80.0, 4.0, 0.15, 15),
    Scenario::new("wide-jitter", 4, 40.0, 1.0, 0.3, 50),
    Scenario {
        batching_useless: true,
        ..Scenario::new("batching-useless", 4, 20.0, 20.0, 0.1, 5)
    },
];

impl Scenario {
    const fn new(
        name: &'static str,
        workers: u32,
        base_ms: f64,
        per_item_ms: f64,
        jitter: f64,
        concurrency: u32,
    ) -> Self {
        Self {
            name,
            workers,
            base_ms,
            per_item_ms,
            jitter,
            concurrency,
            batching_useless: false,
        }
    }

    fn server_args(&self) -> Vec<String> {
        [
            ("--workers", self.workers.to_string()),
            ("--base-ms", self.base_ms.to_string()),
            ("--per-item-ms", self.per_item_ms.to_string()),
            ("--jitter", self.jitter.to_string()),
            ("--seed", FIRST_SEED.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    workers: u32,
    base_ms: f64,
    per_item_ms: f64,
    jitter: f64,
    concurrency: u32,
    before_p95_ms: f64,
    candidate: String,
    chosen: bool,
    predicted_p95_ms: f64,
    predicted_p95_interval_ms: [f64; 2],
    measured_p95_ms: f64,
    p95_error_pct: f64,
    batching_helps: bool,
    /// With `--capacity`.
    capacity: Option<CapacityRow>,
    passed: bool,
}

/// What is read of `report summary`.
#[derive(Debug, Deserialize)]
struct RunSummary {
    #[serde(deserialize_with = "json::nullable")]
    p95_ms: Option<f64>,
}

pub(crate) fn run(args: &ValidateArgs) -> Result<bool, TaskError> {
    if args.scenario == ValidateScenario::Llm {
        if args.capacity {
            return Err(TaskError::BadFlag(
                "--capacity is for --scenario inference only; allowed with llm: --out, --only"
                    .to_owned(),
            ));
        }
        return crate::whatif_validate_llm::run(&args.out, args.only.as_deref());
    }
    if !(1..=100_000).contains(&args.requests) {
        return Err(TaskError::BadFlag(format!(
            "--requests must be from 1 to 100000, got {}",
            args.requests
        )));
    }
    let started = Instant::now();
    let bins = build::release_binaries(&PACKAGES)?;
    create_dir(&args.out)?;
    let mut rows = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| {
        args.only
            .as_deref()
            .is_none_or(|only| s.name.contains(only))
    }) {
        println!(
            "\n=== {}: {} workers, {} ms + {} ms/item, jitter {}, concurrency {} ===",
            scenario.name,
            scenario.workers,
            scenario.base_ms,
            scenario.per_item_ms,
            scenario.jitter,
            scenario.concurrency
        );
        let row = validate(
            &bins,
            scenario,
            &args.out.join(scenario.name),
            args.requests,
            args.capacity.then_some(args.capacity_step.as_str()),
        )?;
        println!(
            "{}: chose {}; predicted P95 {:.1} ms [{:.1}, {:.1}], measured {:.1} ms ({:+.1}%): {}",
            row.scenario,
            row.candidate,
            row.predicted_p95_ms,
            row.predicted_p95_interval_ms[0],
            row.predicted_p95_interval_ms[1],
            row.measured_p95_ms,
            row.p95_error_pct,
            if row.passed { "pass" } else { "FAIL" }
        );
        if let Some(c) = &row.capacity {
            println!(
                "{}: for open-loop traffic, {}: predicted {:.1} req/s, measured {}",
                row.scenario,
                c.client,
                c.predicted_rps,
                c.measured_rps
                    .map_or("nothing sustainable".to_owned(), |m| format!(
                        "{m:.1} req/s"
                    )),
            );
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(TaskError::BadFlag(format!(
            "--only {:?} matches no scenario",
            args.only.as_deref().unwrap_or("")
        )));
    }
    let passed = rows.iter().all(|r| r.passed);
    let mut table = markdown(&rows);
    if args.capacity {
        table.push('\n');
        table.push_str(&capacity_markdown(&rows));
    }
    print!("\n{table}");
    let document = serde_json::json!({
        "requests": args.requests,
        "tolerance_pct": 10.0,
        "capacity_step": args.capacity.then_some(args.capacity_step.as_str()),
        "rows": rows,
        "passed": passed,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": Machine::probe().conditions_json(),
    });
    write(
        &args.out.join("whatif-validate.json"),
        &serde_json::to_string_pretty(&document).unwrap_or_default(),
    )?;
    write(&args.out.join("whatif-validate.md"), &table)?;
    println!(
        "table in {} (whatif-validate.md, whatif-validate.json); took {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(passed)
}

fn validate(
    bins: &Binaries,
    scenario: &Scenario,
    dir: &Path,
    requests: u32,
    capacity_step: Option<&str>,
) -> Result<Row, TaskError> {
    create_dir(&dir.join("logs"))?;
    let server_args = scenario.server_args();
    let concurrency = scenario.concurrency.to_string();
    let n = requests.to_string();
    let phase = |name: &str, flags: &[String]| -> Result<PathBuf, TaskError> {
        let server = ServerProcess::start(
            &bins.path("stub-server"),
            &server_args,
            &dir.join(format!("logs/{name}-server.log")),
        )?;
        let log = dir.join(format!("{name}.csv"));
        let status = process::run_with_deadline(
            Command::new(bins.path("loadgen"))
                .args(["--url", &server.infer_url(), "-q"])
                .args(flags)
                .args(["-c", &concurrency, "-n", &n])
                .args(["--out".as_ref(), log.as_os_str()])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            CLIENT_LIMIT,
        )?;
        match status.code() {
            Some(0 | 1) => Ok(log),
            _ => Err(TaskError::Step(format!(
                "{}: loadgen {} could not run ({status})",
                scenario.name,
                flags.join(" ")
            ))),
        }
    };
    let before = phase("before", &["--profile".to_owned(), "baseline".to_owned()])?;
    let probes = {
        let server = ServerProcess::start(
            &bins.path("stub-server"),
            &server_args,
            &dir.join("logs/probe-server.log"),
        )?;
        let url = server.infer_url();
        whatif::probe(
            || {
                let mut cmd = Command::new(bins.path("loadgen"));
                cmd.args(["--url", &url]).stdin(Stdio::null());
                cmd
            },
            dir,
            CLIENT_LIMIT,
        )?
    };
    let json_path = dir.join("whatif.json");
    let mut cmd = Command::new(bins.path("report"));
    cmd.arg("whatif")
        .args(["--before".as_ref(), before.as_os_str()])
        .args(
            probes
                .iter()
                .flat_map(|p| ["--probe".as_ref(), p.as_os_str()]),
        )
        .args(["--concurrency", &concurrency, "--requests", &n])
        .args(["--json".as_ref(), json_path.as_os_str()])
        .arg("--server-dynamic-batching")
        .stdout(Stdio::null());
    let prediction = whatif::predict(&mut cmd, &json_path, CLIENT_LIMIT)?;
    let batching_helps = prediction.batching_helps;
    let candidate = prediction.after().cloned().ok_or_else(|| {
        TaskError::Step(format!(
            "{}: the what-if engine proposed no client-side candidate",
            scenario.name
        ))
    })?;
    let after = phase("after", &candidate.loadgen_args)?;
    let before_p95_ms = p95_ms(bins, &before)?;
    let measured_p95_ms = p95_ms(bins, &after)?;
    let p95_error_pct = (candidate.p95_ms - measured_p95_ms) / measured_p95_ms * 100.0;
    let capacity = match (&prediction.predicted_capacity_rps.best, capacity_step) {
        (Some(client), Some(step)) => Some(measure_capacity(bins, scenario, dir, client, step)?),
        (None, Some(_)) => Some(CapacityRow {
            client: "none: no client sustains any rate in the simulation".to_owned(),
            predicted_rps: 0.0,
            measured_rps: None,
            error_pct: None,
            passed: false,
        }),
        (_, None) => None,
    };
    let passed = p95_error_pct.abs() <= 10.0
        && (batching_helps != scenario.batching_useless)
        && capacity.as_ref().is_none_or(|c| c.passed);
    Ok(Row {
        scenario: scenario.name.to_owned(),
        workers: scenario.workers,
        base_ms: scenario.base_ms,
        per_item_ms: scenario.per_item_ms,
        jitter: scenario.jitter,
        concurrency: scenario.concurrency,
        before_p95_ms,
        chosen: prediction.chosen.is_some(),
        candidate: candidate.label,
        predicted_p95_ms: candidate.p95_ms,
        predicted_p95_interval_ms: candidate.p95_interval_ms,
        measured_p95_ms,
        p95_error_pct,
        batching_helps,
        capacity,
        passed,
    })
}

/// `loadgen capacity` of `client` against a fresh simulator of `scenario`.
fn measure_capacity(
    bins: &Binaries,
    scenario: &Scenario,
    dir: &Path,
    client: &whatif::OpenLoopClient,
    step: &str,
) -> Result<CapacityRow, TaskError> {
    let server = ServerProcess::start(
        &bins.path("stub-server"),
        &scenario.server_args(),
        &dir.join("logs/capacity-server.log"),
    )?;
    let json_path = dir.join("capacity.json");
    let start_rps = (client.max_rate_rps / 4.0).max(1.0);
    let status = process::run_with_deadline(
        Command::new(bins.path("loadgen"))
            .arg("capacity")
            .args(["--url", &server.infer_url(), "-q"])
            .args(&client.loadgen_args)
            .args(["--sla", &format!("p95<={SLA_P95_MS}")])
            .args(["--step-duration", step, "--warmup", "2s"])
            .args(["--start-rate", &format!("{start_rps:.2}")])
            .args(["--time-limit", "9m"])
            .args(["--json".as_ref(), json_path.as_os_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        CLIENT_LIMIT,
    )?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(TaskError::Step(format!(
            "{}: loadgen capacity {} could not run ({status})",
            scenario.name,
            client.loadgen_args.join(" ")
        )));
    }
    let measured: CapacityReport = json::read_contract(&json_path)?;
    let error_pct = measured
        .max_rate_rps
        .filter(|m| *m > 0.0)
        .map(|m| (client.max_rate_rps - m) / m * 100.0);
    Ok(CapacityRow {
        client: client.label.clone(),
        predicted_rps: client.max_rate_rps,
        measured_rps: measured.max_rate_rps,
        error_pct,
        passed: error_pct.is_some_and(|e| e.abs() <= 10.0),
    })
}

fn capacity_markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "| scenario | open-loop client | predicted capacity req/s | measured req/s | error | result |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for (r, c) in rows
        .iter()
        .filter_map(|r| r.capacity.as_ref().map(|c| (r, c)))
    {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} | {} | {} |",
            r.scenario,
            c.client,
            c.predicted_rps,
            c.measured_rps
                .map_or("none".to_owned(), |m| format!("{m:.1}")),
            c.error_pct.map_or("-".to_owned(), |e| format!("{e:+.1}%")),
            if c.passed { "pass" } else { "FAIL" }
        );
    }
    md
}

/// The exact P95 of a log's successful rows, from `report summary`.
fn p95_ms(bins: &Binaries, log: &Path) -> Result<f64, TaskError> {
    let summary: RunSummary = crate::perf::report_summary(bins, log)?;
    summary
        .p95_ms
        .ok_or_else(|| TaskError::Step(format!("{}: no request succeeded", log.display())))
}

fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "| scenario | workers | base ms | per item ms | jitter | c | Before P95 ms | candidate | predicted P95 ms [95% interval] | measured P95 ms | error | batching helps | result |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {}{} | {:.1} [{:.1}, {:.1}] | {:.1} | {:+.1}% | {} | {} |",
            r.scenario,
            r.workers,
            r.base_ms,
            r.per_item_ms,
            r.jitter,
            r.concurrency,
            r.before_p95_ms,
            r.candidate,
            if r.chosen { "" } else { " (best; none met the margin)" },
            r.predicted_p95_ms,
            r.predicted_p95_interval_ms[0],
            r.predicted_p95_interval_ms[1],
            r.measured_p95_ms,
            r.p95_error_pct,
            if r.batching_helps { "yes" } else { "no" },
            if r.passed { "pass" } else { "FAIL" }
        );
    }
    md
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), TaskError> {
    fs::write(path, text).map_err(|source| TaskError::Io {
        path: path.to_owned(),
        source,
    })
}
