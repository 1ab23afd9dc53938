//! The search driven by a fake runner on paused time (bracketing,
//! bisection, repeats, the time limit, interruption), and the judging of
//! one step's rows.

use std::time::Duration;

use model::capacity::{CapacityReport, Phase, Stopped};
use model::log::LogRow;
use stats::slo::Slo;

use super::error::CapacityError;
use super::judge::judge_step;
use super::options::CapacityOptions;
use super::search::{search, StepPlan, StepRows, StepRunner, MAX_STEP_DOWNS};
use crate::config::Warmup;

fn slos(texts: &[&str]) -> Vec<Slo> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
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
    async fn run_step(&mut self, plan: &StepPlan) -> Result<StepRows, CapacityError> {
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
        warmup: Warmup::For(Duration::from_secs(2)),
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
