//! Option values every binary parses the same way: whole numbers in a
//! named range, finite numbers in a range, and durations (`500ms`, `5s`,
//! `2m`, `1h`). A parser's message says what the value is and what is
//! allowed, so `-1`, `abc` and a number too large for its type each get
//! words a user can act on, not "invalid digit found in string".

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

impl<T: PartialOrd + Display + Copy + FromStr + TryFrom<i128>> Bound<T> {
    /// `value` if it lies in the range, else a message with the range.
    pub fn check(&self, value: T) -> Result<T, String> {
        if value < self.min || value > self.max {
            return Err(self.out_of_range(value));
        }
        Ok(value)
    }

    /// Parses a whole number and checks it. A whole number too large (or
    /// negative) for the type is out of range, not "not a number": the
    /// message says what is allowed either way.
    pub fn parse(&self, text: &str) -> Result<T, String> {
        let wide: i128 = text.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not a whole number; {} must be {}..={}",
                self.what, self.min, self.max
            )
        })?;
        let value = T::try_from(wide).map_err(|_| self.out_of_range(text.trim()))?;
        self.check(value)
    }

    fn out_of_range(&self, shown: impl Display) -> String {
        format!(
            "{shown} is out of range; {} must be {}..={}",
            self.what, self.min, self.max
        )
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

/// A finite number in an inclusive range, named for messages.
#[derive(Debug, Clone, Copy)]
pub struct FloatBound {
    /// What the value is ("the margin").
    pub what: &'static str,
    /// Smallest value allowed.
    pub min: f64,
    /// Largest value allowed.
    pub max: f64,
    /// Whether `min` itself is allowed (a rate must be more than 0).
    pub min_inclusive: bool,
}

impl FloatBound {
    fn allowed(&self) -> String {
        let low = if self.min_inclusive {
            format!("at least {}", self.min)
        } else {
            format!("more than {}", self.min)
        };
        if self.max.is_finite() {
            format!("{} must be {low} and at most {}", self.what, self.max)
        } else {
            format!("{} must be {low}", self.what)
        }
    }

    /// `value` if it is finite and in the range.
    pub(crate) fn check(&self, value: f64) -> Result<f64, String> {
        let above = if self.min_inclusive {
            value >= self.min
        } else {
            value > self.min
        };
        if value.is_finite() && above && value <= self.max {
            Ok(value)
        } else {
            Err(format!("{value} is out of range; {}", self.allowed()))
        }
    }

    /// Parses a number and checks it.
    pub fn parse(&self, text: &str) -> Result<f64, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number; {}", self.allowed()))?;
        self.check(value)
    }
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

    const WORKERS: Bound<usize> = Bound {
        what: "the worker count",
        min: 1,
        max: 1024,
    };

    #[test]
    fn whole_numbers_say_what_is_allowed() {
        assert_eq!(WORKERS.parse("20"), Ok(20));
        assert_eq!(
            WORKERS.parse("0").unwrap_err(),
            "0 is out of range; the worker count must be 1..=1024"
        );
        assert_eq!(
            WORKERS.parse("-1").unwrap_err(),
            "-1 is out of range; the worker count must be 1..=1024"
        );
        assert_eq!(
            WORKERS.parse("99999999999999999999999").unwrap_err(),
            "99999999999999999999999 is out of range; the worker count must be 1..=1024"
        );
        assert!(WORKERS
            .parse("x")
            .unwrap_err()
            .starts_with("\"x\" is not a whole number"));
    }

    #[test]
    fn floats_say_what_is_allowed() {
        let margin = FloatBound {
            what: "the margin",
            min: 0.0,
            max: 0.9,
            min_inclusive: true,
        };
        assert_eq!(margin.parse("0.2"), Ok(0.2));
        assert_eq!(
            margin.parse("1").unwrap_err(),
            "1 is out of range; the margin must be at least 0 and at most 0.9"
        );
        assert!(margin.parse("NaN").is_err());
        assert!(margin.parse("abc").unwrap_err().contains("is not a number"));
        let rate = FloatBound {
            what: "the rate",
            min: 0.0,
            max: f64::INFINITY,
            min_inclusive: false,
        };
        assert_eq!(
            rate.parse("0").unwrap_err(),
            "0 is out of range; the rate must be more than 0"
        );
    }

    #[test]
    fn durations_take_the_documented_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
    }
}
