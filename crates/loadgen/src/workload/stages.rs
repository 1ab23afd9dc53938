//! `--stages '30s:10,2m:50,30s:0'`: a load that changes over the run.
//!
//! In the open loop each stage ramps the rate linearly from where the
//! previous stage ended (the first from `--rate`, or 0) to its target over
//! its duration, as k6's ramping-arrival-rate does. Arrival times come from
//! the integral of the rate, Λ(t): arrival `k` is due when Λ(t) reaches
//! `k` (constant arrivals) or the sum of `k` exponential gaps of mean 1
//! (Poisson arrivals: a Poisson process of varying rate is a unit-rate one
//! on the clock Λ). With `-c` the stages step the closed loop's
//! concurrency instead: each stage runs its target of workers from its
//! start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::limits;

/// Most stages one run may have.
const MAX_STAGES: usize = 100;

/// One stage: its length and the rate (or concurrency) it reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// Requests per second at its end (open loop), or its workers (closed
    /// loop, a whole number).
    pub target: f64,
}

/// The stages of a run, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    stages: Vec<Stage>,
    text: String,
}

const GRAMMAR: &str = "give DURATION:TARGET stages separated by commas, e.g. '30s:10,2m:50,30s:0' (a duration more than 0, a target of 0 or more: requests/s, or workers with -c)";

impl FromStr for Stages {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut stages = Vec::new();
        for part in text.split(',') {
            let bad = |why: &str| {
                format!(
                    "--stages {text:?}: stage {:?} {why}; {GRAMMAR}",
                    part.trim()
                )
            };
            let (duration, target) = part.split_once(':').ok_or_else(|| bad("has no colon"))?;
            let duration = limits::parse_duration(duration.trim())
                .map_err(|e| bad(&format!("has a bad duration ({e})")))?;
            if duration.is_zero() {
                return Err(bad("lasts no time"));
            }
            let target: f64 = target
                .trim()
                .parse()
                .map_err(|_| bad("has a target that is not a number"))?;
            if !(target.is_finite() && (0.0..=limits::MAX_RATE_RPS).contains(&target)) {
                return Err(bad("has a target out of range"));
            }
            stages.push(Stage { duration, target });
        }
        if stages.len() > MAX_STAGES {
            return Err(format!(
                "--stages {text:?} has {} stages; at most {MAX_STAGES}",
                stages.len()
            ));
        }
        let total: Duration = stages.iter().map(|s| s.duration).sum();
        if total > limits::DURATION.max {
            return Err(format!(
                "--stages {text:?} last {:.0} s in all; a run lasts at most 1h",
                total.as_secs_f64()
            ));
        }
        Ok(Self {
            stages,
            text: text.trim().to_owned(),
        })
    }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Stages {
    /// The stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// How long they last together.
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Checks the targets as concurrencies: whole numbers, at most the
    /// concurrency bound, and some stage with a worker.
    pub(crate) fn check_concurrency(&self) -> Result<(), String> {
        for stage in &self.stages {
            if stage.target.fract() != 0.0 || stage.target > limits::CONCURRENCY.max as f64 {
                return Err(format!(
                    "--stages {}: with -c each target is a number of workers, 0..={}; {} is not",
                    self.text,
                    limits::CONCURRENCY.max,
                    stage.target
                ));
            }
        }
        if self.stages.iter().all(|s| s.target == 0.0) {
            return Err(format!(
                "--stages {}: every stage has 0 workers, so nothing would be sent",
                self.text
            ));
        }
        Ok(())
    }

    /// The workers of the stage running `elapsed` after the start, and
    /// when that stage ends; `None` once every stage is over.
    pub(crate) fn concurrency_at(&self, elapsed: Duration) -> Option<(usize, Duration)> {
        let mut end = Duration::ZERO;
        for stage in &self.stages {
            end += stage.duration;
            if elapsed < end {
                return Some((stage.target as usize, end));
            }
        }
        None
    }

    /// The open-loop rate shape that starts at `start_rps`.
    pub(crate) fn ramp(&self, start_rps: f64) -> Ramp {
        let mut segments = Vec::with_capacity(self.stages.len());
        let (mut t0, mut area0, mut r0) = (0.0, 0.0, start_rps);
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            let r1 = stage.target;
            segments.push(Segment {
                t0,
                d,
                r0,
                r1,
                area0,
            });
            t0 += d;
            area0 += (r0 + r1) / 2.0 * d;
            r0 = r1;
        }
        Ramp {
            segments,
            total_area: area0,
            total_s: t0,
        }
    }
}

/// One linear piece of the rate: from `r0` to `r1` over `d` s from `t0`,
/// with `area0` arrivals due before it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    t0: f64,
    d: f64,
    r0: f64,
    r1: f64,
    area0: f64,
}

/// A piecewise-linear rate and its integral.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ramp {
    segments: Vec<Segment>,
    total_area: f64,
    total_s: f64,
}

impl Ramp {
    /// Arrivals due over the whole ramp (Λ at its end).
    pub(crate) fn total_area(&self) -> f64 {
        self.total_area
    }

    /// Its length, s.
    pub(crate) fn total_s(&self) -> f64 {
        self.total_s
    }

    /// The time at which Λ reaches `area`, s from the start; `None` when
    /// it never does within the ramp.
    pub(crate) fn time_at(&self, area: f64) -> Option<f64> {
        if area > self.total_area {
            return None;
        }
        for s in &self.segments {
            let a = area - s.area0;
            let seg_area = (s.r0 + s.r1) / 2.0 * s.d;
            if a > seg_area {
                continue;
            }
            // Λ within the segment: r0 t + slope t² / 2 = a.
            let slope = (s.r1 - s.r0) / s.d;
            let t = if a <= 0.0 {
                0.0
            } else if slope == 0.0 {
                if s.r0 <= 0.0 {
                    continue;
                }
                a / s.r0
            } else {
                // The root of slope/2 t² + r0 t - a = 0 that lies in the
                // segment, written so that it does not cancel when slope
                // is small: 2a / (r0 + sqrt(r0² + 2 slope a)).
                let disc = (s.r0 * s.r0 + 2.0 * slope * a).max(0.0);
                2.0 * a / (s.r0 + disc.sqrt())
            };
            return Some(s.t0 + t.min(s.d));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_and_bad_ones_say_what_is_allowed() {
        let s: Stages = "30s:10, 2m:50,30s:0".parse().unwrap();
        assert_eq!(s.stages().len(), 3);
        assert_eq!(s.total(), Duration::from_secs(180));
        assert_eq!(s.stages()[1].target, 50.0);
        for (text, why) in [
            ("30s", "has no colon"),
            ("30x:5", "bad duration"),
            ("0s:5", "lasts no time"),
            ("5s:abc", "not a number"),
            ("5s:-1", "out of range"),
            ("2h:5", "at most 1h"),
        ] {
            let err = text.parse::<Stages>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let s: Stages = "1s:2.5".parse().unwrap();
        assert!(s
            .check_concurrency()
            .unwrap_err()
            .contains("number of workers"));
        let s: Stages = "1s:0".parse().unwrap();
        assert!(s
            .check_concurrency()
            .unwrap_err()
            .contains("nothing would be sent"));
    }

    #[test]
    fn the_integral_of_a_linear_ramp_gives_the_arrival_times() {
        // 0 -> 100 req/s over 10 s: Λ(t) = 5 t², 500 arrivals; then 100
        // req/s flat for 2 s (200 more); then down to 0 over 4 s (200 more).
        let stages: Stages = "10s:100,2s:100,4s:0".parse().unwrap();
        let ramp = stages.ramp(0.0);
        assert!((ramp.total_area() - 900.0).abs() < 1e-9);
        for (area, t) in [
            (0.0, 0.0),
            (5.0, 1.0),
            (125.0, 5.0),
            (500.0, 10.0),
            (600.0, 11.0),
            (700.0, 12.0),
            // Down-ramp: Λ = 700 + 100 u - 12.5 u², 150 more at u = 2.
            (850.0, 14.0),
            (900.0, 16.0),
        ] {
            let got = ramp.time_at(area).unwrap();
            assert!((got - t).abs() < 1e-9, "Λ = {area}: {got} vs {t}");
        }
        assert_eq!(ramp.time_at(900.5), None);
        // A constant stage from --rate: evenly spaced.
        let ramp = "2s:50".parse::<Stages>().unwrap().ramp(50.0);
        assert!((ramp.time_at(10.0).unwrap() - 0.2).abs() < 1e-12);
    }

    #[test]
    fn concurrency_steps_with_the_stages() {
        let stages: Stages = "1s:2,2s:5,1s:0".parse().unwrap();
        let at = |ms| stages.concurrency_at(Duration::from_millis(ms));
        assert_eq!(at(0), Some((2, Duration::from_secs(1))));
        assert_eq!(at(1500), Some((5, Duration::from_secs(3))));
        assert_eq!(at(3999), Some((0, Duration::from_secs(4))));
        assert_eq!(at(4000), None);
    }
}
