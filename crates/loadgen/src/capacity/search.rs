//! The search: double the rate until a step fails, bisect to the
//! precision, confirm the answer with repeats (a failed one lowers it), all
//! within the time limit. Generic over a [`StepRunner`], so that a fake
//! runner drives it in tests.

use std::future::Future;
use std::time::Duration;

use model::capacity::{CapacityReport, Phase, StepRecord, Stopped, SCHEMA_VERSION};
use model::log::LogRow;
use stats::QuantileMethod;
use tokio::time::Instant;

use super::error::CapacityError;
use super::judge::{judge_step, StepMeasurement};
use super::options::CapacityOptions;
use crate::config::Warmup;

/// Most times a failed repeat may lower the answer before the search gives
/// up as unstable.
pub(super) const MAX_STEP_DOWNS: u32 = 5;

/// Bootstrap resamples of the interval of P95 at the answer.
pub(super) const BOOTSTRAP_RESAMPLES: usize = 1000;

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
