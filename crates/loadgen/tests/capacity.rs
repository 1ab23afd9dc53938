//! `loadgen capacity`: the search against a simulator whose capacity is
//! known exactly, the binary's flags and exit codes, and the search logic
//! driven by a fake runner on paused time.

mod common;

use common::loadgen;

use std::process::Command;
use std::time::{Duration, Instant};

use loadgen::capacity::{
    judge_step, search, Answer, CapacityOptions, CapacityReport, LoadgenRunner, Phase, StepPlan,
    StepRecord, StepRows, StepRunner, Stopped, TableRow, MAX_STEP_DOWNS,
};
use loadgen::{Arrival, LoadConfig};
use model::log::LogRow;
use stats::slo::Slo;

/// One worker, 100 ms per request whatever its size, no jitter: exactly 10
/// requests/s.
fn ten_per_second_server() -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 1;
    config.service.base_ms = 100.0;
    config.service.per_item_ms = 0.0;
    config.service.jitter = 0.0;
    stub_server::spawn(config).unwrap()
}

fn slos(texts: &[&str]) -> Vec<Slo> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_capacity_of_a_ten_per_second_server() {
    let server = ten_per_second_server();
    let base = LoadConfig {
        url: server.url(),
        timeout: Duration::from_secs(10),
        progress: false,
        ..LoadConfig::default()
    };
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut runner = LoadgenRunner::new(base, Arrival::Constant, 1000, stop_rx);
    let options = CapacityOptions {
        step_duration: Duration::from_secs(2),
        warmup: loadgen::Warmup::For(Duration::from_millis(500)),
        start_rate_rps: 4.0,
        precision: 0.05,
        repeats: 2,
        time_limit: Duration::from_secs(120),
        ..CapacityOptions::default()
    };
    let started = Instant::now();
    let mut table = Vec::new();
    let report = search(&options, &mut runner, &mut |r: &StepRecord| {
        table.push(TableRow(r).to_string())
    })
    .await
    .unwrap();
    let took_s = started.elapsed().as_secs_f64();
    println!("{}", table.join("\n"));
    print!("{}", Answer(&report));
    println!("capacity test took {took_s:.1} s");

    let max = report.max_rate_rps.expect("an answer");
    assert!(
        (9.0..=11.0).contains(&max),
        "max_rate_rps {max}: {report:#?}"
    );
    assert_eq!(report.stopped, Stopped::Converged, "{report:#?}");
    assert!(!report.bounded_by_time);
    // Under capacity the latency is the service time; the interval is
    // around the pooled P95.
    let p95 = report.p95_at_max_ms.unwrap();
    assert!((95.0..400.0).contains(&p95), "P95 at the answer {p95}");
    let [lo, hi] = report.p95_interval_ms.unwrap();
    assert!(lo <= p95 && p95 <= hi, "{lo} {p95} {hi}");
    let goodput = report.goodput_rps.unwrap();
    assert!(
        goodput > 0.9 * max && goodput < 1.1 * max,
        "goodput {goodput}"
    );
    let phases: Vec<Phase> = report.curve.iter().map(|s| s.phase).collect();
    assert_eq!(&phases[..3], [Phase::Bracket; 3], "4, 8 and 16 req/s");
    assert!(phases.contains(&Phase::Bisect));
    let repeats: Vec<&StepRecord> = report
        .curve
        .iter()
        .filter(|s| s.phase == Phase::Repeat)
        .collect();
    assert!(repeats
        .iter()
        .all(|s| s.sustainable && s.offered_rps == max));
    // Twice the capacity queues: the answers lag the sends.
    let overload = &report.curve[2];
    assert_eq!(overload.offered_rps, 16.0);
    assert!(!overload.sustainable);
    assert!(overload.achieved_rps < 11.0, "{overload:?}");
}

#[test]
fn bad_capacity_flags_exit_2_naming_the_flag() {
    // Every case is refused before a connection is opened.
    let cases: &[(&[&str], &str)] = &[
        (&["--precision", "0"], "--precision"),
        (&["--precision", "0.7"], "from 0.001 to 0.5"),
        (&["--repeats", "0"], "--repeats"),
        (&["--repeats", "21"], "must be 1..=20"),
        (&["--step-duration", "0s"], "--step-duration"),
        (&["--step-duration", "2"], "has no unit"),
        (&["--warmup", "11m"], "at most 10m"),
        (&["--start-rate", "0"], "--start-rate"),
        (&["--max-rate", "-1"], "--max-rate"),
        (
            &["--start-rate", "4", "--max-rate", "2"],
            "below --start-rate",
        ),
        (&["--time-limit", "5s"], "shorter than one step"),
        (&["--start-rate", "0.1"], "at least 5"),
        (&["--sla", "p95=800"], "--sla"),
        (&["--sla", "latency<=5"], "unknown metric"),
        (&["--arrival", "bursty"], "--arrival"),
        (&["-n", "100"], "-n/--requests does not apply to capacity"),
        (&["-z", "5s"], "--step-duration sets each step"),
        (&["--rate", "5"], "the search chooses the rates"),
        (&["-c", "4"], "its steps are open-loop"),
        (&["-o", "log.csv"], "writes no per-request log"),
        (&["--threads", "2"], "apply to the closed loop"),
        (
            &["--url", "ftp://127.0.0.1/v1/infer"],
            "use http:// or https://",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["capacity", "--json", "never-written.json"];
        all.extend_from_slice(args);
        let out = loadgen(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = loadgen(&["capacity"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json"));
    assert!(!std::path::Path::new("never-written.json").exists());
}

#[test]
fn the_binary_exits_0_with_an_answer_and_1_with_nothing_sustainable() {
    let server = ten_per_second_server();
    let dir = common::temp_dir("capacity-cli");
    let json = dir.join("capacity.json");
    let url = server.url();
    // --max-rate under the capacity: sustainable there, confirmed once.
    let out = loadgen(&[
        "capacity",
        "--url",
        &url,
        "--json",
        json.to_str().unwrap(),
        "--start-rate",
        "5",
        "--max-rate",
        "5",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "--repeats",
        "1",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("offered/s"), "the table: {stdout}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "schema_version",
        "sla",
        "max_rate_rps",
        "p95_at_max_ms",
        "p95_interval_ms",
        "goodput_rps",
        "curve",
        "step_duration_s",
        "warmup_s",
        "precision",
        "repeats",
        "elapsed_s",
        "bounded_by_time",
        "stopped",
    ] {
        assert!(value.get(key).is_some(), "missing {key}: {value}");
    }
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["sla"][0], "p95<=800");
    assert_eq!(value["max_rate_rps"], 5.0);
    assert_eq!(value["stopped"], "max_rate");
    let step = &value["curve"][0];
    for key in [
        "phase",
        "offered_rps",
        "achieved_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "succeeded",
        "failed",
        "error_rate",
        "sustainable",
        "reason",
    ] {
        assert!(step.get(key).is_some(), "missing curve.{key}: {step}");
    }
    assert_eq!(step["phase"], "bracket");
    // The readers read it through the writer's own type: the report's
    // `--capacity` and `model` for xtask.
    let typed = CapacityReport::read(&json).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), value);
    assert!(typed.found());
    let shown = model::capacity::Capacity::read(&json).unwrap();
    assert_eq!(shown.measured, typed);
    assert!(
        shown.sentence().contains("5.00 req/s"),
        "{}",
        shown.sentence()
    );
    drop(server);

    // Nothing listens: every request of the first step fails.
    let out = loadgen(&[
        "capacity",
        "--url",
        &common::dead_url(),
        "--json",
        json.to_str().unwrap(),
        "--start-rate",
        "5",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["stopped"], "nothing_sustainable");
    assert!(value["max_rate_rps"].is_null());
    let reason = value["curve"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("connect_refused"), "{reason}");
}

/// A server in arithmetic: every rate up to `capacity_rps` answers in 100
/// ms, any rate above in 2 s (missing `p95<=800`). Steps take their length
/// on the (paused) clock; `fail` can fail chosen steps anyway.
struct FakeRunner {
    capacity_rps: f64,
    plans: Vec<StepPlan>,
    fail: Box<dyn FnMut(&StepPlan) -> bool>,
    interrupt_at: Option<u32>,
}

impl FakeRunner {
    fn new(capacity_rps: f64) -> Self {
        Self {
            capacity_rps,
            plans: Vec::new(),
            fail: Box::new(|_| false),
            interrupt_at: None,
        }
    }

    fn rates(&self, phase: Phase) -> Vec<f64> {
        self.plans
            .iter()
            .filter(|p| p.phase == phase)
            .map(|p| p.offered_rps)
            .collect()
    }
}

/// Rows of a step sent at `rate_rps` for `length`, each answered in
/// `latency_ms`.
fn rows_at(rate_rps: f64, length: Duration, latency_ms: f64) -> Vec<LogRow> {
    let gap_ms = 1000.0 / rate_rps;
    let count = (length.as_secs_f64() * rate_rps).ceil() as u64;
    (0..count)
        .map(|i| LogRow {
            request_id: i,
            timestamp_ms: 1.7e12 + i as f64 * gap_ms,
            latency_ms,
            status_code: 200,
            ok: true,
            ..LogRow::default()
        })
        .collect()
}

impl StepRunner for FakeRunner {
    async fn run_step(
        &mut self,
        plan: &StepPlan,
    ) -> Result<StepRows, loadgen::capacity::CapacityError> {
        self.plans.push(plan.clone());
        let length = plan.warmup + plan.duration;
        tokio::time::sleep(length).await;
        if self.interrupt_at == Some(plan.index) {
            return Ok(StepRows {
                rows: Vec::new(),
                interrupted: true,
            });
        }
        let over = plan.offered_rps > self.capacity_rps || (self.fail)(plan);
        let latency_ms = if over { 2000.0 } else { 100.0 };
        Ok(StepRows {
            rows: rows_at(plan.offered_rps, length, latency_ms),
            interrupted: false,
        })
    }
}

fn fast_options() -> CapacityOptions {
    CapacityOptions {
        step_duration: Duration::from_secs(10),
        warmup: loadgen::Warmup::For(Duration::from_secs(2)),
        time_limit: Duration::from_secs(3600),
        ..CapacityOptions::default()
    }
}

async fn run_search(options: &CapacityOptions, runner: &mut FakeRunner) -> CapacityReport {
    search(options, runner, &mut |_| {}).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn bracketing_doubles_then_bisection_stops_at_the_precision() {
    let mut runner = FakeRunner::new(37.0);
    let options = fast_options();
    let report = run_search(&options, &mut runner).await;
    assert_eq!(
        runner.rates(Phase::Bracket),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    );
    // Bisection between 32 and 64: 48 fails, 40 fails, 36 holds, 38 fails,
    // 37 holds; (38 - 37) / 37 <= 0.05.
    assert_eq!(runner.rates(Phase::Bisect), [48.0, 40.0, 36.0, 38.0, 37.0]);
    assert_eq!(runner.rates(Phase::Repeat), [37.0; 3]);
    assert_eq!(report.max_rate_rps, Some(37.0));
    assert_eq!(report.stopped, Stopped::Converged);
    assert_eq!(report.curve.len(), 15);
    assert_eq!(report.p95_at_max_ms, Some(100.0));
    assert_eq!(report.p95_interval_ms, Some([100.0, 100.0]));
    // Every request met the objective: goodput is the rate answered.
    let goodput = report.goodput_rps.unwrap();
    assert!((goodput - 37.0).abs() < 1.0, "goodput {goodput}");
    // 15 steps of 12 s on the paused clock.
    assert!(
        (report.elapsed_s - 180.0).abs() < 1.0,
        "{}",
        report.elapsed_s
    );
    // Step i draws its arrivals from seed + i.
    assert_eq!(runner.plans[3].seed, options.seed + 3);
}

#[tokio::test(start_paused = true)]
async fn a_finer_precision_bisects_further() {
    let mut coarse = FakeRunner::new(37.0);
    let options = CapacityOptions {
        precision: 0.2,
        ..fast_options()
    };
    let report = run_search(&options, &mut coarse).await;
    // 48 fails, 40 fails, 36 holds: (40 - 36) / 36 = 0.11 <= 0.2.
    assert_eq!(coarse.rates(Phase::Bisect), [48.0, 40.0, 36.0]);
    assert_eq!(report.max_rate_rps, Some(36.0));
    let mut fine = FakeRunner::new(37.0);
    let options = CapacityOptions {
        precision: 0.001,
        ..fast_options()
    };
    let report = run_search(&options, &mut fine).await;
    let answer = report.max_rate_rps.unwrap();
    assert!((37.0 / 1.001..=37.0).contains(&answer), "{answer}");
    assert!(fine.rates(Phase::Bisect).len() > 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_repeat_lowers_the_answer_by_the_precision() {
    let mut runner = FakeRunner::new(37.0);
    // The second repeat at 37 fails (a noisy neighbour, say).
    let mut repeats_at_37 = 0;
    runner.fail = Box::new(move |plan| {
        if plan.phase == Phase::Repeat && plan.offered_rps == 37.0 {
            repeats_at_37 += 1;
            return repeats_at_37 == 2;
        }
        false
    });
    let options = fast_options();
    let report = run_search(&options, &mut runner).await;
    let lowered = 37.0 * (1.0 - options.precision);
    assert_eq!(
        runner.rates(Phase::Repeat),
        [37.0, 37.0, lowered, lowered, lowered]
    );
    assert_eq!(report.max_rate_rps, Some(lowered));
    assert_eq!(report.stopped, Stopped::Converged);
    let failed_repeat = report
        .curve
        .iter()
        .find(|s| s.phase == Phase::Repeat && !s.sustainable)
        .unwrap();
    assert!(failed_repeat.reason.contains("p95<=800 not met (2000.000)"));
}

#[tokio::test(start_paused = true)]
async fn repeats_that_keep_failing_end_unstable_and_bounded() {
    let mut runner = FakeRunner::new(37.0);
    runner.fail = Box::new(|plan| plan.phase == Phase::Repeat);
    let report = run_search(&fast_options(), &mut runner).await;
    assert_eq!(report.stopped, Stopped::Unstable);
    assert_eq!(report.max_rate_rps, None);
    // One failed repeat at each of the first rate and the lowered ones.
    assert_eq!(
        runner.rates(Phase::Repeat).len(),
        MAX_STEP_DOWNS as usize + 1
    );
}

#[tokio::test(start_paused = true)]
async fn the_time_limit_stops_the_search_with_the_best_rate_so_far() {
    let mut runner = FakeRunner::new(37.0);
    // Room for 9 steps of 12 s: the bracket (7) and two bisection steps.
    let options = CapacityOptions {
        time_limit: Duration::from_secs(9 * 12 + 5),
        ..fast_options()
    };
    let report = run_search(&options, &mut runner).await;
    assert_eq!(runner.plans.len(), 9);
    assert_eq!(report.stopped, Stopped::TimeLimit);
    assert!(report.bounded_by_time);
    // 48 and 40 failed; the best measured is the bracket's 32.
    assert_eq!(report.max_rate_rps, Some(32.0));
    assert!(report.elapsed_s <= options.time_limit.as_secs_f64());
    assert_eq!(report.p95_at_max_ms, Some(100.0));
}

#[tokio::test(start_paused = true)]
async fn nothing_sustainable_at_the_start_rate_is_said() {
    let mut runner = FakeRunner::new(0.5);
    let report = run_search(&fast_options(), &mut runner).await;
    assert_eq!(runner.plans.len(), 1);
    assert_eq!(report.stopped, Stopped::NothingSustainable);
    assert_eq!(report.max_rate_rps, None);
    assert_eq!(report.p95_at_max_ms, None);
    assert!(!report.found());
}

#[tokio::test(start_paused = true)]
async fn max_rate_caps_the_bracket() {
    let mut runner = FakeRunner::new(1000.0);
    let options = CapacityOptions {
        max_rate_rps: Some(10.0),
        ..fast_options()
    };
    let report = run_search(&options, &mut runner).await;
    assert_eq!(runner.rates(Phase::Bracket), [1.0, 2.0, 4.0, 8.0, 10.0]);
    assert!(runner.rates(Phase::Bisect).is_empty());
    assert_eq!(report.max_rate_rps, Some(10.0));
    assert_eq!(report.stopped, Stopped::MaxRate);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_step_ends_the_search_with_what_was_measured() {
    let mut runner = FakeRunner::new(37.0);
    runner.interrupt_at = Some(4);
    let report = run_search(&fast_options(), &mut runner).await;
    assert_eq!(report.stopped, Stopped::Interrupted);
    // Four judged steps (1, 2, 4, 8), the cut one is not on the curve.
    assert_eq!(report.curve.len(), 4);
    assert_eq!(report.max_rate_rps, Some(8.0));
    assert!(!report.found(), "interrupted is not an answer");
}

fn plan(rate_rps: f64, warmup_s: u64, duration_s: u64) -> StepPlan {
    StepPlan {
        index: 0,
        phase: Phase::Bracket,
        offered_rps: rate_rps,
        warmup: Duration::from_secs(warmup_s),
        duration: Duration::from_secs(duration_s),
        seed: 1,
    }
}

#[test]
fn judging_counts_rows_after_the_warmup_and_checks_every_objective() {
    let p95 = slos(&["p95<=800"]);
    // 10/s for 2 s of warm-up and 10 s counted; the warm-up was slow.
    let mut rows = rows_at(10.0, Duration::from_secs(12), 100.0);
    for row in rows.iter_mut().take(20) {
        row.latency_ms = 5000.0;
    }
    let judged = judge_step(&plan(10.0, 2, 10), &rows, &p95);
    let r = &judged.record;
    assert_eq!((r.succeeded, r.failed), (100, 0));
    assert_eq!(
        (r.p50_ms, r.p95_ms, r.p99_ms),
        (Some(100.0), Some(100.0), Some(100.0))
    );
    assert!(r.sustainable, "{}", r.reason);
    assert!((r.achieved_rps - 10.0).abs() < 1e-6, "{}", r.achieved_rps);

    // A failed request: unsustainable without an error_rate objective,
    // fine within one.
    rows[50].ok = false;
    rows[50].status_code = 503;
    rows[50].error = "http_503".into();
    let judged = judge_step(&plan(10.0, 2, 10), &rows, &p95);
    assert!(!judged.record.sustainable);
    assert!(
        judged.record.reason.contains("1 failed (http_503 1)"),
        "{}",
        judged.record.reason
    );
    let judged = judge_step(
        &plan(10.0, 2, 10),
        &rows,
        &slos(&["p95<=800", "error_rate<=0.02"]),
    );
    assert!(judged.record.sustainable, "{}", judged.record.reason);
    assert_eq!(judged.record.error_rate, 0.01);
    let judged = judge_step(&plan(10.0, 2, 10), &rows, &slos(&["error_rate<0.01"]));
    assert!(judged
        .record
        .reason
        .contains("error_rate<0.01 not met (0.010)"));
}

#[test]
fn a_growing_queue_fails_the_pace_but_a_steady_slow_answer_does_not() {
    let p95 = slos(&["p95<=800"]);
    // Steady 650 ms answers over a short step keep pace: the latency is
    // the same at the end as at the start.
    let rows = rows_at(4.0, Duration::from_secs(2), 650.0);
    let judged = judge_step(&plan(4.0, 0, 2), &rows, &p95);
    assert!(judged.record.sustainable, "{}", judged.record.reason);
    // 10/s sent, answered at 9.5/s: each answer 5.3 ms later than the one
    // before; P95 still under 800 ms.
    let mut rows = rows_at(10.0, Duration::from_secs(10), 100.0);
    for (i, row) in rows.iter_mut().enumerate() {
        row.latency_ms = 100.0 + i as f64 * (1000.0 / 9.5 - 100.0);
    }
    let judged = judge_step(&plan(10.0, 0, 10), &rows, &p95);
    let r = &judged.record;
    assert!(r.p95_ms.unwrap() < 800.0);
    assert!((r.achieved_rps - 9.5).abs() < 1e-6, "{}", r.achieved_rps);
    assert!(!r.sustainable);
    assert!(
        r.reason.contains("below 97% of the 10.00/s sent"),
        "{}",
        r.reason
    );
}

#[test]
fn goodput_and_throughput_objectives_are_judged_on_the_counted_window() {
    // 10/s for 10 s; every tenth answer takes 900 ms.
    let mut rows = rows_at(10.0, Duration::from_secs(10), 100.0);
    for row in rows.iter_mut().step_by(10) {
        row.latency_ms = 900.0;
    }
    let judged = judge_step(
        &plan(10.0, 0, 10),
        &rows,
        &slos(&["p99<=1000", "goodput_rps>=8.5", "throughput_rps>=9.5"]),
    );
    assert_eq!(judged.good, 100);
    assert!(judged.record.sustainable, "{}", judged.record.reason);
    let judged = judge_step(
        &plan(10.0, 0, 10),
        &rows,
        &slos(&["p50<=800", "goodput_rps>=9.5"]),
    );
    // Per request, the 900 ms ones miss p50<=800: 90 good of 100.
    assert_eq!(judged.good, 90);
    assert!(judged.record.reason.contains("goodput_rps>=9.5 not met"));
}

#[cfg(unix)]
#[test]
fn sigint_stops_the_search_and_writes_what_was_measured() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = ten_per_second_server();
    let dir = common::temp_dir("capacity-sigint");
    let json = dir.join("capacity.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["capacity", "--url", &server.url(), "-q"])
        .args([
            "--start-rate",
            "5",
            "--step-duration",
            "1s",
            "--warmup",
            "0s",
        ])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first step's row of the table (a condition, not a
    // sleep): the second step is then under way.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let first_step = line.starts_with("bracket");
        seen.push(line);
        if first_step {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.starts_with("bracket")),
        "{seen:?}"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["stopped"], "interrupted", "{value}");
    let curve = value["curve"].as_array().unwrap();
    assert!(!curve.is_empty(), "{value}");
    assert_eq!(curve[0]["offered_rps"], 5.0);
    // The best rate measured so far (5, or 10 had the step ended first).
    assert!(value["max_rate_rps"].as_f64().unwrap() >= 5.0, "{value}");
}
