//! Every option's allowed range, in one place. The command line's parsers
//! and [`crate::LoadConfig::validate`] both check through these, so a limit
//! and the message that explains it are written once, and a library caller
//! gets the same words as a user at the shell.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// An inclusive range of whole numbers, named for messages.
#[derive(Debug, Clone, Copy)]
pub struct Bound<T> {
    /// What the value is, as a message names it ("concurrency").
    pub what: &'static str,
    /// Smallest value allowed.
    pub min: T,
    /// Largest value allowed.
    pub max: T,
}

impl<T: PartialOrd + Display + Copy + FromStr> Bound<T> {
    /// `value` if it lies in the range, else a message with the range.
    pub fn check(&self, value: T) -> Result<T, String> {
        if value < self.min || value > self.max {
            return Err(format!(
                "{value} is out of range; {} must be {}..={}",
                self.what, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// Parses a whole number and checks it.
    pub fn parse(&self, text: &str) -> Result<T, String> {
        let value: T = text.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not a whole number; {} must be {}..={}",
                self.what, self.min, self.max
            )
        })?;
        self.check(value)
    }
}

/// A positive duration with an upper bound, named for messages.
#[derive(Debug, Clone, Copy)]
pub struct DurationBound {
    /// What the value is ("the timeout").
    pub what: &'static str,
    /// Longest value allowed.
    pub max: Duration,
    /// `max` as the message writes it ("1h").
    pub max_text: &'static str,
}

impl DurationBound {
    fn in_range(&self, value: Duration) -> bool {
        !value.is_zero() && value <= self.max
    }

    fn out_of_range(&self, shown: impl Display) -> String {
        format!(
            "{shown} is out of range; {} must be more than 0 and at most {}",
            self.what, self.max_text
        )
    }

    /// `value` if it is more than zero and at most `max`.
    pub fn check(&self, value: Duration) -> Result<Duration, String> {
        if self.in_range(value) {
            Ok(value)
        } else {
            Err(self.out_of_range(format_args!("{value:?}")))
        }
    }

    /// Parses `500ms`, `5s`, `2m`, `1h` and checks it; the message quotes
    /// the text as given.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let value = parse_duration(text)?;
        if self.in_range(value) {
            Ok(value)
        } else {
            Err(self.out_of_range(format_args!("{text:?}")))
        }
    }
}

/// Closed-loop workers.
pub const CONCURRENCY: Bound<usize> = Bound {
    what: "concurrency",
    min: 1,
    max: 10_000,
};
/// `max_tokens` of an LLM request.
pub const MAX_TOKENS: Bound<u32> = Bound {
    what: "--max-tokens",
    min: 1,
    max: 1_000_000,
};
/// Logical requests one run may issue.
pub const REQUESTS: Bound<u64> = Bound {
    what: "the request count",
    min: 1,
    max: 100_000_000,
};
/// Open-loop requests in flight.
pub const MAX_IN_FLIGHT: Bound<usize> = Bound {
    what: "the in-flight bound",
    min: 1,
    max: 1_000_000,
};
/// Client micro-batch size.
pub const BATCH_SIZE: Bound<usize> = Bound {
    what: "the batch size",
    min: 1,
    max: 1024,
};
/// Client batch wait, ms.
pub const BATCH_WAIT_MS: Bound<u64> = Bound {
    what: "the batch wait (ms)",
    min: 0,
    max: 60_000,
};
/// Requests sent before the measured run.
pub const WARMUP: Bound<u64> = Bound {
    what: "the warm-up count",
    min: 0,
    max: 1_000_000,
};
/// Client threads.
pub const THREADS: Bound<usize> = Bound {
    what: "the thread count",
    min: 1,
    max: 1024,
};
/// Busy-poll window, us: past a few tens of microseconds a longer one only
/// burns CPU.
pub const BUSY_POLL_US: Bound<u64> = Bound {
    what: "the busy-poll window (us)",
    min: 0,
    max: 10_000,
};
/// `-z/--duration`: load tests are bounded by design.
pub const DURATION: DurationBound = DurationBound {
    what: "the duration",
    max: Duration::from_secs(3600),
    max_text: "1h",
};
/// Limit on one HTTP request.
pub const TIMEOUT: DurationBound = DurationBound {
    what: "the timeout",
    max: Duration::from_secs(600),
    max_text: "10m",
};
/// Highest open-loop rate, requests per second.
pub const MAX_RATE_RPS: f64 = 1_000_000.0;

/// An open-loop rate: finite, more than 0, at most [`MAX_RATE_RPS`].
pub fn check_rate(rate_rps: f64) -> Result<f64, String> {
    if rate_rps.is_finite() && rate_rps > 0.0 && rate_rps <= MAX_RATE_RPS {
        return Ok(rate_rps);
    }
    Err(format!(
        "rate {rate_rps} is out of range; the rate must be more than 0 and at most {MAX_RATE_RPS} requests/s (e.g. 50 or 0.5)"
    ))
}

/// Parses and checks an open-loop rate.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a rate; give requests per second, more than 0 and at most {MAX_RATE_RPS} (e.g. 50 or 0.5)")
    })?;
    check_rate(rate)
}

/// Parses a duration such as `500ms`, `5s`, `2m`, `1h` or `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; use a number and a unit: 500ms, 5s, 2m, 1h")
    })?;
    let scale_s = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "{text:?} has no unit; write e.g. {value}s (units: ms, s, m, h)"
            ))
        }
        other => {
            return Err(format!(
                "{text:?} has unknown unit {other:?}; use ms, s, m or h (e.g. 500ms, 5s, 2m)"
            ))
        }
    };
    let seconds = value * scale_s;
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_for_the_parser_and_the_check() {
        assert_eq!(CONCURRENCY.parse("20"), Ok(20));
        assert_eq!(
            CONCURRENCY.parse("0").unwrap_err(),
            "0 is out of range; concurrency must be 1..=10000"
        );
        assert_eq!(
            CONCURRENCY.check(0).unwrap_err(),
            CONCURRENCY.parse("0").unwrap_err()
        );
        assert!(CONCURRENCY
            .parse("x")
            .unwrap_err()
            .starts_with("\"x\" is not a whole number"));
        assert_eq!(BUSY_POLL_US.parse("0"), Ok(0));
    }

    #[test]
    fn durations_take_the_documented_units_and_bounds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(DURATION.parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            DURATION.parse("2h").unwrap_err(),
            "\"2h\" is out of range; the duration must be more than 0 and at most 1h"
        );
        assert!(TIMEOUT.parse("0s").unwrap_err().contains("more than 0"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn rates_are_positive_and_bounded() {
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("-1").unwrap_err().contains("more than 0"));
        assert!(check_rate(f64::NAN).is_err());
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
    }
}
