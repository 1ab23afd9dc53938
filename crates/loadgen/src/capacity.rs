//! `loadgen capacity`: the highest open-loop rate that keeps every
//! objective (`--sla p95<=800`, repeatable), with an interval, and the
//! rate/latency curve on the way.
//!
//! Each *step* offers one rate for a warm-up and then a fixed duration; only
//! requests whose intended start falls after the warm-up are counted, and
//! their latency runs from that intended start, as in any open-loop run. A
//! step is *sustainable* when every objective holds on its counted rows
//! (latency quantiles by the Linear method over successful rows,
//! `error_rate` = failed / total; without an `error_rate` objective any
//! failed or dropped request makes it unsustainable) and the answers kept
//! pace with the sends (see [`ACHIEVED_SHARE`]).
//!
//! The search doubles the rate from `--start-rate` until a step is
//! unsustainable (or `--max-rate`), bisects until `(hi - lo) / lo <=
//! precision`, and confirms `lo` with `--repeats` fresh steps; a failed
//! repeat lowers `lo` by the precision and repeats again, a bounded number
//! of times. `--time-limit` bounds the whole search. The search is
//! [`search`], generic over a [`StepRunner`], so its logic is tested with a
//! fake runner; [`LoadgenRunner`] runs real steps through
//! [`crate::prepare`].
//!
//! The result is [`model::capacity::CapacityReport`], the one type the
//! report and xtask read `--json` back through; this module prints it as
//! text ([`TableRow`] as the steps finish, [`Answer`] at the end). The
//! objectives are judged by `stats::slo`'s evaluation, the one the report
//! makes of a log, over each counted row.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use model::capacity::{CapacityReport, Phase, StepRecord, Stopped, SCHEMA_VERSION};
use model::log::{LogError, LogRow};
use stats::slo::{self, Metric, Series, Slo};
use stats::QuantileMethod;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Arrival, LoadConfig, OpenLoop, Warmup};
use crate::limits::{self, Bound, DurationBound};
use crate::LoadError;

/// A step keeps pace when its answers came at least this share of the rate
/// its counted requests were sent at.
///
/// Both rates are measured the way the open loop measures its send rate,
/// between the first and the last event: answers `(n - 1) / (last
/// completion - first completion)`, sends `(n - 1) / (last intended start -
/// first intended start)` (the offered rate for constant arrivals, the rate
/// actually drawn for Poisson ones). Their ratio is then `1 / (1 + growth)`
/// with `growth` the latency added over the step per second of it: a queue
/// that grows. Measuring the answers from the first *intended start*
/// instead would charge every step its own latency (`latency / step`), so
/// a server answering steadily in 650 ms would fail `p95<=800` with 20 s
/// steps at any rate.
pub const ACHIEVED_SHARE: f64 = 0.97;

/// Most times a failed repeat may lower the answer before the search gives
/// up as unstable.
pub const MAX_STEP_DOWNS: u32 = 5;

/// A step must hold at least this many counted requests at `--start-rate`
/// (`start_rate x step_duration`): fewer make no quantile worth judging.
pub const MIN_REQUESTS_PER_STEP: f64 = 5.0;

/// Bootstrap resamples of the interval of P95 at the answer.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// `--step-duration`.
pub const STEP_DURATION: DurationBound = DurationBound {
    what: "the step duration (--step-duration)",
    max: Duration::from_secs(30 * 60),
    max_text: "30m",
};

/// Longest `--warmup` (zero is allowed: every request counts).
pub const MAX_WARMUP: Duration = Duration::from_secs(10 * 60);

/// `--time-limit`.
pub const TIME_LIMIT: DurationBound = DurationBound {
    what: "the time limit (--time-limit)",
    max: Duration::from_secs(24 * 3600),
    max_text: "24h",
};

/// `--repeats`.
pub const REPEATS: Bound<u32> = Bound {
    what: "the repeat count (--repeats)",
    min: 1,
    max: 20,
};

/// Smallest `--precision`.
pub const MIN_PRECISION: f64 = 0.001;
/// Largest `--precision`.
pub const MAX_PRECISION: f64 = 0.5;

/// Why the search could not run. Unsustainable steps are not errors: they
/// are the curve.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// An option is out of range or contradicts another.
    #[error("{0}")]
    Invalid(String),
    /// A step could not be set up or run.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A step's log could not be read back.
    #[error("step log: {0}")]
    Log(#[from] LogError),
}

/// How the search runs; [`CapacityOptions::validate`] checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityOptions {
    /// The objectives every counted step must meet.
    pub slos: Vec<Slo>,
    /// Counted part of each step.
    pub step_duration: Duration,
    /// Uncounted start of each step, at the step's rate: a duration, or a
    /// request count that takes count / rate at each step's rate.
    pub warmup: Warmup,
    /// First rate tried, requests/s.
    pub start_rate_rps: f64,
    /// Highest rate tried, requests/s (`None`: [`limits::MAX_RATE_RPS`]).
    pub max_rate_rps: Option<f64>,
    /// Bisection stops when `(hi - lo) / lo` is at most this.
    pub precision: f64,
    /// Confirming steps at the answer.
    pub repeats: u32,
    /// Bound on the whole search; a step that would end past it is not
    /// started.
    pub time_limit: Duration,
    /// Seed of the arrivals (step `i` uses `seed + i`) and the bootstrap.
    pub seed: u64,
}

impl Default for CapacityOptions {
    fn default() -> Self {
        Self {
            slos: vec![Slo::e2e_quantile(0.95, 800.0)],
            step_duration: Duration::from_secs(20),
            warmup: Warmup::For(Duration::from_secs(5)),
            start_rate_rps: 1.0,
            max_rate_rps: None,
            precision: 0.05,
            repeats: 3,
            time_limit: Duration::from_secs(15 * 60),
            seed: crate::config::DEFAULT_SEED,
        }
    }
}

impl CapacityOptions {
    /// Checks every value and how they fit together; the message names the
    /// flag and what it allows.
    pub fn validate(&self) -> Result<(), CapacityError> {
        let invalid = |m: String| Err(CapacityError::Invalid(m));
        if self.slos.is_empty() {
            return invalid("--sla: give at least one objective, e.g. --sla 'p95<=800'".into());
        }
        STEP_DURATION
            .check(self.step_duration)
            .map_err(CapacityError::Invalid)?;
        if let Warmup::For(d) = self.warmup {
            if d > MAX_WARMUP {
                return invalid(format!(
                    "--warmup {d:?} is out of range; the warm-up must be 0 or more and at most 10m"
                ));
            }
        }
        TIME_LIMIT
            .check(self.time_limit)
            .map_err(CapacityError::Invalid)?;
        limits::check_rate(self.start_rate_rps)
            .map_err(|e| CapacityError::Invalid(format!("--start-rate: {e}")))?;
        if let Some(max) = self.max_rate_rps {
            limits::check_rate(max)
                .map_err(|e| CapacityError::Invalid(format!("--max-rate: {e}")))?;
            if max < self.start_rate_rps {
                return invalid(format!(
                    "--max-rate {max} is below --start-rate {}; the search goes up from the start rate",
                    self.start_rate_rps
                ));
            }
        }
        if !(self.precision.is_finite()
            && (MIN_PRECISION..=MAX_PRECISION).contains(&self.precision))
        {
            return invalid(format!(
                "--precision {} is out of range; it is the relative gap (hi - lo) / lo at which bisection stops, from {MIN_PRECISION} to {MAX_PRECISION} (e.g. 0.05)",
                self.precision
            ));
        }
        REPEATS
            .check(self.repeats)
            .map_err(CapacityError::Invalid)?;
        // The first step is the longest: a warm-up by count lasts longest
        // at the lowest rate.
        let warmup = self.warmup.duration_at(self.start_rate_rps);
        let step = warmup + self.step_duration;
        if step > self.time_limit {
            return invalid(format!(
                "--time-limit {:?} is shorter than one step (--warmup {warmup:?} + --step-duration {:?}); give at least {:?}",
                self.time_limit, self.step_duration, step
            ));
        }
        let per_step = self.start_rate_rps * self.step_duration.as_secs_f64();
        if per_step < MIN_REQUESTS_PER_STEP {
            return invalid(format!(
                "--start-rate {} x --step-duration {:?} counts {per_step:.1} requests per step; raise either so a step counts at least {MIN_REQUESTS_PER_STEP}",
                self.start_rate_rps, self.step_duration
            ));
        }
        Ok(())
    }

    fn rate_ceiling_rps(&self) -> f64 {
        self.max_rate_rps.unwrap_or(limits::MAX_RATE_RPS)
    }
}

/// One step the search asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// Position in the search, from 0.
    pub index: u32,
    /// Part of the search.
    pub phase: Phase,
    /// Rate to offer, requests/s.
    pub offered_rps: f64,
    /// Uncounted start.
    pub warmup: Duration,
    /// Counted part.
    pub duration: Duration,
    /// Seed of this step's arrivals.
    pub seed: u64,
}

/// What a step sent: every row, warm-up included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepRows {
    /// One per request, as the log holds them.
    pub rows: Vec<LogRow>,
    /// A shutdown signal cut the step short: it is not judged.
    pub interrupted: bool,
}

/// Runs one step. A trait so that the search can be driven by a fake.
pub trait StepRunner {
    /// Sends `plan.offered_rps` for `plan.warmup + plan.duration` and
    /// returns the rows.
    fn run_step(
        &mut self,
        plan: &StepPlan,
    ) -> impl Future<Output = Result<StepRows, CapacityError>>;
}

/// A judged step: its record and what the answer's statistics pool.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMeasurement {
    /// The curve entry.
    pub record: StepRecord,
    /// Latencies of successful counted requests, ms, ascending.
    pub latencies_ms: Vec<f64>,
    /// Successful counted requests that met every per-request objective.
    pub good: u64,
    /// From the first counted intended start to the last completion, s.
    pub window_s: f64,
}

fn opt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

/// The header of the table [`TableRow`]s go under.
pub const TABLE_HEADER: &str =
    "phase    offered/s achieved/s   p50 ms   p95 ms   p99 ms       ok failed  verdict";

/// A step as a line of the table loadgen prints as the search goes.
pub struct TableRow<'a>(pub &'a StepRecord);

impl fmt::Display for TableRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = self.0;
        let verdict = if step.sustainable {
            "sustainable".to_owned()
        } else {
            format!("NOT sustainable: {}", step.reason)
        };
        write!(
            f,
            "{:<8} {:>9.2} {:>10.2} {:>8} {:>8} {:>8} {:>8} {:>6}  {verdict}",
            step.phase.name(),
            step.offered_rps,
            step.achieved_rps,
            opt_ms(step.p50_ms),
            opt_ms(step.p95_ms),
            opt_ms(step.p99_ms),
            step.succeeded,
            step.failed,
        )
    }
}

/// The search's answer as loadgen prints it at the end.
pub struct Answer<'a>(pub &'a CapacityReport);

impl fmt::Display for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        let sla = report.sla.join(", ");
        let steps = report.curve.len();
        match report.max_rate_rps {
            Some(rate) => {
                write!(f, "capacity: {rate:.2} req/s keeps {sla}")?;
                if let Some(p95) = report.p95_at_max_ms {
                    write!(f, " (P95 there {p95:.1} ms")?;
                    if let Some([lo, hi]) = report.p95_interval_ms {
                        write!(f, ", 95% interval {lo:.1}..{hi:.1} ms")?;
                    }
                    if let Some(goodput) = report.goodput_rps {
                        write!(f, "; goodput {goodput:.2} req/s")?;
                    }
                    write!(f, ")")?;
                }
            }
            None => write!(f, "capacity: no rate kept {sla}")?,
        }
        let how = match report.stopped {
            Stopped::Converged => "converged and confirmed by the repeats",
            Stopped::MaxRate => "--max-rate was sustainable; the capacity may be higher",
            Stopped::TimeLimit => {
                "bounded by --time-limit: the highest rate measured sustainable so far, not converged or confirmed"
            }
            Stopped::NothingSustainable => "the first step, at --start-rate, was already unsustainable",
            Stopped::Unstable => "repeats kept failing as the rate was lowered",
            Stopped::Interrupted => "interrupted: the highest rate measured sustainable so far, not confirmed",
        };
        writeln!(f, "; {how}; {steps} steps in {:.1} s", report.elapsed_s)
    }
}

/// Judges one step's rows: counts those whose intended start is at least
/// `plan.warmup` after the step's first, and checks `slos` on them.
pub fn judge_step(plan: &StepPlan, rows: &[LogRow], slos: &[Slo]) -> StepMeasurement {
    let first_ms = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .reduce(f64::min)
        .unwrap_or(0.0);
    // A microsecond of slack: intended starts are sums of float gaps.
    let counted_from_ms = first_ms + plan.warmup.as_secs_f64() * 1000.0 - 1e-3;
    let counted: Vec<&LogRow> = rows
        .iter()
        .filter(|r| r.timestamp_ms >= counted_from_ms)
        .collect();
    let succeeded = counted.iter().filter(|r| r.ok).count() as u64;
    let failed = counted.len() as u64 - succeeded;
    let total = succeeded + failed;
    let error_rate = if total > 0 {
        failed as f64 / total as f64
    } else {
        0.0
    };
    let requests: Vec<slo::Request<'_>> = counted.iter().map(|r| request(r)).collect();
    let latencies_ms = slo::series_sorted(&requests, Series::E2e);
    let quantile = |q: f64| {
        (!latencies_ms.is_empty())
            .then(|| stats::quantile(&latencies_ms, q, QuantileMethod::Linear).ok())
            .flatten()
    };

    // Answered requests: everything but those never sent or cut off.
    let answered: Vec<&&LogRow> = counted
        .iter()
        .filter(|r| r.error != "dropped" && r.error != "interrupted")
        .collect();
    let completions = answered.iter().map(|r| r.timestamp_ms + r.latency_ms);
    let first_done_ms = completions.clone().reduce(f64::min);
    let last_done_ms = completions.reduce(f64::max);
    let rate_between = |n: usize, from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(a), Some(b)) if n >= 2 && b > a => (n - 1) as f64 / ((b - a) / 1000.0),
        _ => 0.0,
    };
    let achieved_rps = rate_between(answered.len(), first_done_ms, last_done_ms);
    let first_sent_ms = counted.iter().map(|r| r.timestamp_ms).reduce(f64::min);
    let last_sent_ms = counted.iter().map(|r| r.timestamp_ms).reduce(f64::max);
    let sent_rps = rate_between(counted.len(), first_sent_ms, last_sent_ms);
    let window_s = match (first_sent_ms, last_done_ms) {
        (Some(a), Some(b)) if b > a => (b - a) / 1000.0,
        _ => 0.0,
    };
    let good = slo::good_count(&requests, slos);

    let mut misses: Vec<String> = Vec::new();
    if total == 0 {
        misses.push("no counted requests".into());
    }
    for slo in slos {
        // Rates are per second of the step's window, from the first
        // counted intended start to the last completion.
        let measured = slo.measure(&requests, slos, Some(window_s));
        if !slo.holds(measured) {
            misses.push(match measured {
                Some(m) => format!("{slo} not met ({m:.3})"),
                None => format!("{slo} not met (nothing to measure)"),
            });
        }
    }
    let judges_errors = slos.iter().any(|s| s.metric == Metric::ErrorRate);
    if failed > 0 && !judges_errors {
        misses.push(format!(
            "{failed} failed ({}) and no error_rate objective allows any",
            error_kinds(&counted)
        ));
    }
    if total > 0 && achieved_rps < ACHIEVED_SHARE * sent_rps {
        misses.push(format!(
            "answers came at {achieved_rps:.2}/s, below {:.0}% of the {sent_rps:.2}/s sent",
            ACHIEVED_SHARE * 100.0
        ));
    }
    let sustainable = misses.is_empty();
    let reason = if sustainable {
        "every objective met".to_owned()
    } else {
        misses.join("; ")
    };
    StepMeasurement {
        record: StepRecord {
            phase: plan.phase,
            offered_rps: plan.offered_rps,
            achieved_rps,
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            succeeded,
            failed,
            error_rate,
            sustainable,
            reason,
        },
        latencies_ms,
        good,
        window_s,
    }
}

/// `http_503 3, timeout 1`: the commonest failure kinds first, at most three.
fn error_kinds(rows: &[&LogRow]) -> String {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.ok) {
        // `http_<status>` of some APIs carries the server's message after a
        // colon; the kind is what comes before it.
        let kind = row.error.split(':').next().unwrap_or("");
        *kinds
            .entry(if kind.is_empty() { "failed" } else { kind })
            .or_default() += 1;
    }
    let mut kinds: Vec<(&str, u64)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = kinds
        .iter()
        .take(3)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    shown.join(", ")
}

/// What the objectives read of a row (`stats::slo` evaluates them, as
/// `report` does on a log).
fn request(row: &LogRow) -> slo::Request<'_> {
    slo::Request {
        ok: row.ok,
        latency_ms: row.latency_ms,
        tokens: row.llm.as_ref().map(|t| slo::Tokens {
            ttft_ms: t.ttft_ms,
            tpot_ms: t.tpot_ms,
            itl_ms: &t.itl_ms,
        }),
    }
}

/// The search's state: every judged step and the clock.
struct Search<'a, R> {
    options: &'a CapacityOptions,
    runner: &'a mut R,
    on_step: &'a mut dyn FnMut(&StepRecord),
    started: Instant,
    steps: Vec<StepMeasurement>,
}

/// What trying a step came to.
enum Tried {
    /// It ran and was judged.
    Judged(bool),
    /// It would have ended past the time limit, so it did not start.
    OutOfTime,
    /// A shutdown signal cut it short.
    Interrupted,
}

impl<R: StepRunner> Search<'_, R> {
    async fn step(&mut self, phase: Phase, offered_rps: f64) -> Result<Tried, CapacityError> {
        let options = self.options;
        let warmup = options.warmup.duration_at(offered_rps);
        let length = warmup + options.step_duration;
        if self.started.elapsed() + length > options.time_limit {
            return Ok(Tried::OutOfTime);
        }
        let index = u32::try_from(self.steps.len()).unwrap_or(u32::MAX);
        let plan = StepPlan {
            index,
            phase,
            offered_rps,
            warmup,
            duration: options.step_duration,
            seed: options.seed.wrapping_add(u64::from(index)),
        };
        let rows = self.runner.run_step(&plan).await?;
        if rows.interrupted {
            return Ok(Tried::Interrupted);
        }
        let measured = judge_step(&plan, &rows.rows, &options.slos);
        (self.on_step)(&measured.record);
        let sustainable = measured.record.sustainable;
        self.steps.push(measured);
        Ok(Tried::Judged(sustainable))
    }

    /// The highest rate with a sustainable step and no unsustainable step
    /// at or below it: the answer when the search ends early.
    fn best_measured_rps(&self) -> Option<f64> {
        let lowest_failure = self
            .steps
            .iter()
            .filter(|s| !s.record.sustainable)
            .map(|s| s.record.offered_rps)
            .reduce(f64::min)
            .unwrap_or(f64::INFINITY);
        self.steps
            .iter()
            .filter(|s| s.record.sustainable && s.record.offered_rps < lowest_failure)
            .map(|s| s.record.offered_rps)
            .reduce(f64::max)
    }

    fn finish(self, answer_rps: Option<f64>, stopped: Stopped) -> CapacityReport {
        let options = self.options;
        // The answer's numbers pool its repeats; an answer the search could
        // not confirm pools the sustainable steps it had at that rate.
        let at_answer: Vec<&StepMeasurement> = answer_rps
            .map(|rate| {
                let at: Vec<&StepMeasurement> = self
                    .steps
                    .iter()
                    .filter(|s| s.record.sustainable && s.record.offered_rps == rate)
                    .collect();
                let repeats: Vec<&StepMeasurement> = at
                    .iter()
                    .copied()
                    .filter(|s| s.record.phase == Phase::Repeat)
                    .collect();
                if repeats.is_empty() {
                    at
                } else {
                    repeats
                }
            })
            .unwrap_or_default();
        let mut pooled: Vec<f64> = at_answer
            .iter()
            .flat_map(|s| s.latencies_ms.iter().copied())
            .collect();
        pooled.sort_by(f64::total_cmp);
        let interval = stats::bootstrap_quantile_ci(
            &pooled,
            0.95,
            QuantileMethod::Linear,
            BOOTSTRAP_RESAMPLES,
            0.95,
            options.seed,
        )
        .ok();
        let window_s: f64 = at_answer.iter().map(|s| s.window_s).sum();
        let good: u64 = at_answer.iter().map(|s| s.good).sum();
        CapacityReport {
            schema_version: SCHEMA_VERSION,
            sla: options.slos.iter().map(|s| s.text.clone()).collect(),
            max_rate_rps: answer_rps,
            p95_at_max_ms: interval.as_ref().map(|ci| ci.estimate),
            p95_interval_ms: interval.as_ref().map(|ci| [ci.lower, ci.upper]),
            goodput_rps: (answer_rps.is_some() && window_s > 0.0).then(|| good as f64 / window_s),
            curve: self.steps.into_iter().map(|s| s.record).collect(),
            step_duration_s: options.step_duration.as_secs_f64(),
            warmup_s: options
                .warmup
                .duration_at(options.start_rate_rps)
                .as_secs_f64(),
            warmup_requests: match options.warmup {
                Warmup::Requests(n) => Some(n),
                Warmup::For(_) => None,
            },
            precision: options.precision,
            repeats: options.repeats,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            bounded_by_time: stopped == Stopped::TimeLimit,
            stopped,
        }
    }

    /// Ends the search early (time limit or signal) with the best rate
    /// measured so far.
    fn cut_short(self, tried: &Tried) -> CapacityReport {
        let stopped = match tried {
            Tried::Interrupted => Stopped::Interrupted,
            _ => Stopped::TimeLimit,
        };
        let best = self.best_measured_rps();
        self.finish(best, stopped)
    }
}

/// Finds the highest sustainable rate; `on_step` sees each step's record
/// as it is judged (the binary prints the table from it).
pub async fn search<R: StepRunner>(
    options: &CapacityOptions,
    runner: &mut R,
    on_step: &mut dyn FnMut(&StepRecord),
) -> Result<CapacityReport, CapacityError> {
    options.validate()?;
    let mut s = Search {
        options,
        runner,
        on_step,
        started: Instant::now(),
        steps: Vec::new(),
    };
    let ceiling_rps = options.rate_ceiling_rps();

    // Bracket: double until a step fails or the ceiling holds.
    let mut lo: Option<f64> = None;
    let mut hi: Option<f64> = None;
    let mut rate = options.start_rate_rps;
    loop {
        match s.step(Phase::Bracket, rate).await? {
            Tried::Judged(true) => {
                lo = Some(rate);
                if rate >= ceiling_rps {
                    break;
                }
                rate = (rate * 2.0).min(ceiling_rps);
            }
            Tried::Judged(false) => {
                hi = Some(rate);
                break;
            }
            other => return Ok(s.cut_short(&other)),
        }
    }
    let Some(mut lo) = lo else {
        return Ok(s.finish(None, Stopped::NothingSustainable));
    };

    // Bisect between the last sustainable and the first unsustainable rate.
    while let Some(h) = hi {
        if (h - lo) / lo <= options.precision {
            break;
        }
        let mid = (lo + h) / 2.0;
        match s.step(Phase::Bisect, mid).await? {
            Tried::Judged(true) => lo = mid,
            Tried::Judged(false) => hi = Some(mid),
            other => return Ok(s.cut_short(&other)),
        }
    }

    // Confirm: every repeat at `lo` must hold; a failure lowers `lo` by the
    // precision and starts the repeats over.
    let mut step_downs = 0;
    loop {
        let mut held = true;
        for _ in 0..options.repeats {
            match s.step(Phase::Repeat, lo).await? {
                Tried::Judged(true) => {}
                Tried::Judged(false) => {
                    held = false;
                    break;
                }
                other => return Ok(s.cut_short(&other)),
            }
        }
        if held {
            let stopped = if hi.is_none() && lo >= ceiling_rps {
                Stopped::MaxRate
            } else {
                Stopped::Converged
            };
            return Ok(s.finish(Some(lo), stopped));
        }
        step_downs += 1;
        if step_downs > MAX_STEP_DOWNS {
            return Ok(s.finish(None, Stopped::Unstable));
        }
        hi = Some(lo);
        lo *= 1.0 - options.precision;
    }
}

/// Runs real steps: each an open-loop run of `warmup + duration` at the
/// step's rate through [`crate::prepare`], its rows logged to a temporary
/// CSV file that is read back and removed.
pub struct LoadgenRunner {
    /// The run settings every step starts from (target, API, connections,
    /// batching, timeout, ...); the rate, length, log and warm-up are the
    /// step's.
    pub base: LoadConfig,
    /// Spacing of sends.
    pub arrival: Arrival,
    /// Open-loop bound on requests in flight.
    pub max_in_flight: usize,
    /// Becomes `true` on a shutdown signal: the step in progress stops.
    pub stop: watch::Receiver<bool>,
    /// Print the target and protocol lines (on stderr) before the first step.
    pub announce: bool,
}

/// Tells temporary log files of one process apart.
static STEP_LOGS: AtomicU64 = AtomicU64::new(0);

/// Removes a step's temporary log when dropped, whatever happened.
struct TempLog(PathBuf);

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl LoadgenRunner {
    /// A runner over `base`, stopped when `stop` turns `true`.
    pub fn new(
        base: LoadConfig,
        arrival: Arrival,
        max_in_flight: usize,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            base,
            arrival,
            max_in_flight,
            stop,
            announce: false,
        }
    }

    /// The configuration of one step.
    pub fn step_config(&self, plan: &StepPlan, log_path: PathBuf) -> LoadConfig {
        LoadConfig {
            open_loop: Some(OpenLoop {
                rate_rps: plan.offered_rps,
                arrival: self.arrival,
                seed: plan.seed,
                max_in_flight: self.max_in_flight,
            }),
            // The step is bounded by time only: its warm-up is sent at its
            // own rate and told apart by intended start when judged.
            requests: None,
            duration: Some(plan.warmup + plan.duration),
            warmup: Warmup::NONE,
            log_path: Some(log_path),
            progress: false,
            ..self.base.clone()
        }
    }
}

impl StepRunner for LoadgenRunner {
    async fn run_step(&mut self, plan: &StepPlan) -> Result<StepRows, CapacityError> {
        let n = STEP_LOGS.fetch_add(1, Ordering::Relaxed);
        let log = TempLog(
            std::env::temp_dir().join(format!("loadgen-capacity-{}-{n}.csv", std::process::id())),
        );
        let config = self.step_config(plan, log.0.clone());
        let prepared = crate::prepare(config).await?;
        if std::mem::take(&mut self.announce) {
            for line in prepared.start_lines() {
                eprintln!("loadgen: {line}");
            }
        }
        let mut stop = self.stop.clone();
        let shutdown = async move {
            // A dropped sender means no signal can come: never stop.
            if stop.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let summary = prepared.run(shutdown).await?;
        let rows = model::log::read_log_file(&log.0)?.rows;
        Ok(StepRows {
            rows,
            interrupted: summary.interrupted,
        })
    }
}
