//! Every option's allowed range, in one place. The command line's parsers
//! and [`crate::LoadConfig::validate`] both check through these, so a limit
//! and the message that explains it are written once, and a library caller
//! gets the same words as a user at the shell.

use std::time::Duration;

pub use model::args::{parse_duration, Bound, DurationBound};

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
pub(crate) const WARMUP: Bound<u64> = Bound {
    what: "the warm-up count",
    min: 0,
    max: 1_000_000,
};
/// Longest warm-up given as a duration.
pub(crate) const WARMUP_DURATION: Duration = Duration::from_secs(600);
/// A seed: any 64-bit unsigned number.
pub const SEED: Bound<u64> = Bound {
    what: "the seed",
    min: 0,
    max: u64::MAX,
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
/// Tokens of a shared prefix (`--prefix-tokens`).
pub const PREFIX_TOKENS: Bound<u32> = Bound {
    what: "--prefix-tokens",
    min: 1,
    max: 1_000_000,
};
/// Shared prefixes (`--prefix-count`).
pub const PREFIX_COUNT: Bound<u32> = Bound {
    what: "--prefix-count",
    min: 1,
    max: 10_000,
};
/// Prompt tokens per Mooncake hash id (`--trace-block-tokens`).
pub const BLOCK_TOKENS: Bound<u32> = Bound {
    what: "--trace-block-tokens",
    min: 1,
    max: 1_000_000,
};
/// Highest open-loop rate, requests per second.
pub(crate) const MAX_RATE_RPS: f64 = 1_000_000.0;

/// An open-loop rate: finite, more than 0, at most [`MAX_RATE_RPS`].
pub(crate) fn check_rate(rate_rps: f64) -> Result<f64, String> {
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
        // Too large for the type, or negative: out of range, not "not a
        // whole number".
        assert_eq!(
            MAX_TOKENS.parse("99999999999").unwrap_err(),
            "99999999999 is out of range; --max-tokens must be 1..=1000000"
        );
        assert_eq!(
            CONCURRENCY.parse("-1").unwrap_err(),
            "-1 is out of range; concurrency must be 1..=10000"
        );
        assert!(SEED
            .parse("abc")
            .unwrap_err()
            .contains("is not a whole number; the seed must be 0..=18446744073709551615"));
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
