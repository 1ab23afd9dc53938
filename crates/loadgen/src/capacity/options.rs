//! How the search runs ([`CapacityOptions`]): its defaults, the bounds of
//! every flag that sets it, and the checks that explain a bad value.

use std::time::Duration;

use stats::slo::Slo;

use super::error::CapacityError;
use crate::config::Warmup;
use crate::limits::{self, Bound, DurationBound};

/// A step must hold at least this many counted requests at `--start-rate`
/// (`start_rate x step_duration`): fewer make no quantile worth judging.
pub(super) const MIN_REQUESTS_PER_STEP: f64 = 5.0;

/// `--step-duration`.
pub const STEP_DURATION: DurationBound = DurationBound {
    what: "the step duration (--step-duration)",
    max: Duration::from_secs(30 * 60),
    max_text: "30m",
};

/// Longest `--warmup` (zero is allowed: every request counts).
pub(super) const MAX_WARMUP: Duration = Duration::from_secs(10 * 60);

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
    /// Highest rate tried, requests/s (`None`: the most a rate may be,
    /// `limits::MAX_RATE_RPS`).
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

    pub(super) fn rate_ceiling_rps(&self) -> f64 {
        self.max_rate_rps.unwrap_or(limits::MAX_RATE_RPS)
    }
}
