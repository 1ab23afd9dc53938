//! Token-length distributions (`--input-tokens`, `--output-tokens`,
//! `--turns`): `N` fixed, `normal:MEAN,STDDEV` or `uniform:LO,HI`, drawn
//! from a seeded stream and truncated at 1, so a run's lengths are the same
//! every time and never zero.

use std::fmt;
use std::str::FromStr;

use stats::SplitMix64;

/// Largest length a distribution may name: far above any context window,
/// low enough that a prompt of it fits in memory.
pub(crate) const MAX_LENGTH: u32 = 1_000_000;

/// A distribution of whole lengths, at least 1: `N`, `normal:MEAN,STDDEV`
/// or `uniform:LO,HI` (parse one with `str::parse`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDist {
    /// Always this length.
    Fixed(u32),
    /// Normal with this mean and standard deviation, rounded, truncated at
    /// 1 (and at 1,000,000 tokens).
    Normal {
        /// Mean length.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// Uniform over the whole numbers `lo..=hi`.
    Uniform {
        /// Smallest length.
        lo: u32,
        /// Largest length.
        hi: u32,
    },
}

const GRAMMAR: &str =
    "give N (e.g. 512), normal:MEAN,STDDEV (e.g. normal:512,128) or uniform:LO,HI (e.g. uniform:100,900), lengths from 1 to 1000000";

impl FromStr for LengthDist {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} {why}; {GRAMMAR}");
        let whole = |t: &str| -> Result<u32, String> {
            match t.trim().parse::<i64>() {
                Ok(n) if (1..=i64::from(MAX_LENGTH)).contains(&n) => Ok(n as u32),
                Ok(_) => Err(bad("has a length out of range")),
                Err(_) => Err(bad("is not a length distribution")),
            }
        };
        let number = |t: &str| -> Result<f64, String> {
            match t.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(bad("is not a length distribution")),
            }
        };
        let trimmed = text.trim();
        let Some((kind, params)) = trimmed.split_once(':') else {
            return whole(trimmed).map(LengthDist::Fixed);
        };
        let (a, b) = params
            .split_once(',')
            .ok_or_else(|| bad("needs two numbers after the colon"))?;
        match kind.trim() {
            "normal" => {
                let (mean, stddev) = (number(a)?, number(b)?);
                if !(1.0..=f64::from(MAX_LENGTH)).contains(&mean) {
                    return Err(bad("has a mean out of range"));
                }
                if stddev < 0.0 {
                    return Err(bad("has a negative standard deviation"));
                }
                Ok(LengthDist::Normal { mean, stddev })
            }
            "uniform" => {
                let (lo, hi) = (whole(a)?, whole(b)?);
                if lo > hi {
                    return Err(bad("has LO above HI"));
                }
                Ok(LengthDist::Uniform { lo, hi })
            }
            _ => Err(bad("names no distribution")),
        }
    }
}

impl LengthDist {
    /// The longest length it draws.
    pub fn max(self) -> u32 {
        match self {
            Self::Fixed(n) => n,
            Self::Normal { .. } => MAX_LENGTH,
            Self::Uniform { hi, .. } => hi,
        }
    }

    /// One draw from a stream of its own, seeded by `seed` (a request's
    /// own: the same request draws the same length on every run).
    pub(crate) fn draw(self, seed: u64) -> u32 {
        LengthSampler::new(self, seed).next_length()
    }
}

impl fmt::Display for LengthDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Normal { mean, stddev } => write!(f, "normal:{mean},{stddev}"),
            Self::Uniform { lo, hi } => write!(f, "uniform:{lo},{hi}"),
        }
    }
}

/// Draws lengths from one distribution with a seeded stream of its own.
#[derive(Debug, Clone)]
pub(crate) struct LengthSampler {
    dist: LengthDist,
    rng: SplitMix64,
    spare: Option<f64>,
}

impl LengthSampler {
    /// A sampler of `dist` whose draws are fixed by `seed`.
    pub(crate) fn new(dist: LengthDist, seed: u64) -> Self {
        Self {
            dist,
            rng: SplitMix64::new(seed),
            spare: None,
        }
    }

    /// The next length, at least 1.
    pub(crate) fn next_length(&mut self) -> u32 {
        match self.dist {
            LengthDist::Fixed(n) => n,
            LengthDist::Normal { mean, stddev } => {
                let z = self.rng.standard_normal(&mut self.spare);
                (mean + stddev * z)
                    .round()
                    .clamp(1.0, f64::from(MAX_LENGTH)) as u32
            }
            LengthDist::Uniform { lo, hi } => {
                let span = usize::try_from(hi - lo).unwrap_or(0) + 1;
                lo + self.rng.index_below(span) as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(dist: &str, n: usize) -> (f64, f64) {
        let mut sampler = LengthSampler::new(dist.parse().unwrap(), 42);
        let draws: Vec<f64> = (0..n).map(|_| f64::from(sampler.next_length())).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn ten_thousand_draws_have_the_asked_mean_and_spread_within_two_percent() {
        let (mean, sd) = moments("normal:512,128", 10_000);
        assert!((mean / 512.0 - 1.0).abs() < 0.02, "{mean}");
        assert!((sd / 128.0 - 1.0).abs() < 0.02, "{sd}");
        // Uniform over 100..=900: mean 500, sd sqrt((801^2 - 1) / 12).
        let (mean, sd) = moments("uniform:100,900", 10_000);
        let want_sd = ((801.0f64 * 801.0 - 1.0) / 12.0).sqrt();
        assert!((mean / 500.0 - 1.0).abs() < 0.02, "{mean}");
        assert!((sd / want_sd - 1.0).abs() < 0.02, "{sd} vs {want_sd}");
        assert_eq!(moments("256", 100), (256.0, 0.0));
    }

    #[test]
    fn per_request_draws_have_the_asked_mean_and_spread_too() {
        // What a run draws: one length per request id, each from a stream
        // seeded by the run's seed and the id.
        for (dist, want_mean, want_sd) in [
            ("normal:512,128", 512.0, 128.0),
            (
                "uniform:100,900",
                500.0,
                ((801.0f64 * 801.0 - 1.0) / 12.0).sqrt(),
            ),
        ] {
            let dist: LengthDist = dist.parse().unwrap();
            let draws: Vec<f64> = (0..10_000u64)
                .map(|id| f64::from(dist.draw(super::super::seed_of(&[42, 1, id]))))
                .collect();
            let n = draws.len() as f64;
            let mean = draws.iter().sum::<f64>() / n;
            let sd = (draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            assert!((mean / want_mean - 1.0).abs() < 0.02, "{dist}: {mean}");
            assert!((sd / want_sd - 1.0).abs() < 0.02, "{dist}: {sd}");
        }
    }

    #[test]
    fn draws_are_truncated_at_one_and_seeded() {
        let mut sampler = LengthSampler::new("normal:2,50".parse().unwrap(), 1);
        assert!((0..10_000).all(|_| sampler.next_length() >= 1));
        let a: Vec<u32> = {
            let mut s = LengthSampler::new("uniform:1,1000".parse().unwrap(), 9);
            (0..50).map(|_| s.next_length()).collect()
        };
        let b: Vec<u32> = {
            let mut s = LengthSampler::new("uniform:1,1000".parse().unwrap(), 9);
            (0..50).map(|_| s.next_length()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|&n| (1..=1000).contains(&n)));
    }

    #[test]
    fn bad_distributions_say_what_is_allowed() {
        for (text, why) in [
            ("0", "out of range"),
            ("-5", "out of range"),
            ("abc", "is not a length distribution"),
            ("normal:512", "needs two numbers"),
            ("normal:0,1", "mean out of range"),
            ("normal:10,-1", "negative standard deviation"),
            ("uniform:9,3", "LO above HI"),
            ("poisson:3,4", "names no distribution"),
            ("uniform:1,2000000", "out of range"),
        ] {
            let err = text.parse::<LengthDist>().unwrap_err();
            assert!(
                err.contains(why) && err.contains("normal:MEAN,STDDEV"),
                "{text}: {err}"
            );
        }
        assert_eq!(
            "normal:512,128".parse::<LengthDist>().unwrap().to_string(),
            "normal:512,128"
        );
    }
}
