//! Command-line options and their translation into a [`LoadConfig`]:
//! a profile sets defaults, explicit flags override them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use http::{HeaderName, HeaderValue};

use crate::config::{
    parse_duration, parse_header, Arrival, ConfigError, ConnectionMode, LoadConfig, OpenLoop,
    PayloadSource, Profile, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SEED, MAX_DURATION,
};

/// HTTP load generator for inference APIs (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// Endpoint to load; must be http:// on a loopback host.
    #[arg(long, default_value = model::DEFAULT_URL)]
    pub url: String,

    /// Preset: `baseline` reproduces input.py (new connection per request);
    /// `optimized` pools connections and micro-batches (size 10, wait 5 ms).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,

    /// Closed-loop workers [default: 20].
    #[arg(short = 'c', long, value_parser = parse_concurrency)]
    pub concurrency: Option<usize>,

    /// Logical requests to send [default: 400 unless -z is given].
    #[arg(short = 'n', long, value_parser = parse_requests)]
    pub requests: Option<u64>,

    /// Send for this long (500ms, 5s, 2m; at most 1h).
    #[arg(short = 'z', long, value_parser = parse_run_duration)]
    pub duration: Option<Duration>,

    /// Open loop: send this many requests per second regardless of responses.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Open-loop arrival process.
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant, requires = "rate")]
    pub arrival: ArrivalArg,

    /// Seed of the Poisson arrival process.
    #[arg(long, default_value_t = DEFAULT_SEED, requires = "rate")]
    pub seed: u64,

    /// Open loop: most requests in flight; sends beyond it are dropped and
    /// logged as failed rows with error `dropped`.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = parse_max_in_flight, requires = "rate")]
    pub max_in_flight: usize,

    /// Connection reuse [default: pooled; baseline profile: per-request].
    #[arg(long, value_enum)]
    pub connection: Option<ConnectionArg>,

    /// Use HTTP/2 cleartext with prior knowledge instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,

    /// Logical requests per HTTP request (1 = no batching) [default: 1; optimized: 10].
    #[arg(long, value_parser = parse_batch_size)]
    pub batch_size: Option<usize>,

    /// Longest wait of the oldest queued request for its batch to fill, ms
    /// [default: 0; optimized: 5].
    #[arg(long, value_parser = parse_batch_wait_ms)]
    pub batch_wait_ms: Option<u64>,

    /// Do not compare outputs with the simulator's expected outputs (for
    /// real endpoints); rows still carry output digests.
    #[arg(long)]
    pub no_verify: bool,

    /// Per-request CSV log (streamed); none without this flag.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Write the run summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Extra header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// JSONL payloads, one {"input": "...", "model": "..."} per line, cycled
    /// [default: input.py's prompts].
    #[arg(long, value_name = "FILE.jsonl")]
    pub payloads: Option<PathBuf>,

    /// Model name sent when a payload does not name one.
    #[arg(long, default_value = model::DEFAULT_MODEL)]
    pub model: String,

    /// Limit on one HTTP request, connection set-up included (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Requests sent before the measured run and not logged.
    #[arg(long, default_value_t = 0, value_parser = parse_warmup)]
    pub warmup: u64,

    /// Client threads, each with its own runtime and connections (closed
    /// loop over HTTP/1.1 without batching; elsewhere one shared runtime)
    /// [default: one per CPU this process may use, at most -c].
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// After a request completes, keep polling the sockets this long (us)
    /// before a client thread sleeps, so a fast server need not wake the
    /// client for every response (50 is a good value). Only for a client
    /// pinned to CPUs of its own: it spins while it waits, and a server
    /// sharing those CPUs sees its tail latency grow. Applies where
    /// --threads does.
    #[arg(long, default_value_t = crate::config::DEFAULT_BUSY_POLL_US, value_parser = parse_busy_poll_us)]
    pub busy_poll_us: u64,

    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `--profile` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// input.py reproduced.
    Baseline,
    /// Pooled connections and micro-batching.
    Optimized,
}

/// `--arrival` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    /// Evenly spaced sends.
    Constant,
    /// Exponential gaps (seeded).
    Poisson,
}

/// `--connection` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectionArg {
    /// New TCP connection per HTTP request.
    PerRequest,
    /// Reused keep-alive connections.
    Pooled,
}

impl Cli {
    /// The configuration these options describe.
    pub fn into_config(self) -> Result<LoadConfig, ConfigError> {
        let mut config = match self.profile {
            Some(ProfileArg::Baseline) => LoadConfig::from_profile(Profile::Baseline),
            Some(ProfileArg::Optimized) => LoadConfig::from_profile(Profile::Optimized),
            None => LoadConfig::default(),
        };
        config.url = self.url;
        if let Some(c) = self.concurrency {
            config.concurrency = c;
        }
        // -z alone runs for a duration; -n and -z together stop at the first.
        config.requests = match (self.requests, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => config.requests,
        };
        config.duration = self.duration;
        config.open_loop = self.rate.map(|rate_rps| OpenLoop {
            rate_rps,
            arrival: match self.arrival {
                ArrivalArg::Constant => Arrival::Constant,
                ArrivalArg::Poisson => Arrival::Poisson,
            },
            seed: self.seed,
            max_in_flight: self.max_in_flight,
        });
        if let Some(connection) = self.connection {
            config.connection = match connection {
                ConnectionArg::PerRequest => ConnectionMode::PerRequest,
                ConnectionArg::Pooled => ConnectionMode::Pooled,
            };
        }
        config.http2 = self.http2;
        if let Some(b) = self.batch_size {
            config.batch_size = b;
        }
        if let Some(w) = self.batch_wait_ms {
            config.batch_wait_ms = w;
        }
        config.verify = !self.no_verify;
        config.log_path = self.out;
        config.headers = self.headers;
        if let Some(path) = self.payloads {
            config.payloads = PayloadSource::File(path);
        }
        config.model = self.model;
        config.timeout = self.timeout;
        config.warmup = self.warmup;
        config.threads = self.threads;
        config.busy_poll = Duration::from_micros(self.busy_poll_us);
        config.progress = !self.quiet;
        config.validate()?;
        Ok(config)
    }
}

fn parse_count<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    text: &str,
    min: T,
    max: T,
    what: &str,
) -> Result<T, String> {
    let value: T = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number; {what} must be {min}..={max}"))?;
    if value < min || value > max {
        return Err(format!(
            "{value} is out of range; {what} must be {min}..={max}"
        ));
    }
    Ok(value)
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    parse_count(text, 1, crate::config::MAX_CONCURRENCY, "concurrency")
}

fn parse_requests(text: &str) -> Result<u64, String> {
    parse_count(text, 1, crate::config::MAX_REQUESTS, "the request count")
}

fn parse_max_in_flight(text: &str) -> Result<usize, String> {
    parse_count(text, 1, 1_000_000, "the in-flight bound")
}

fn parse_batch_size(text: &str) -> Result<usize, String> {
    parse_count(text, 1, crate::config::MAX_BATCH_SIZE, "the batch size")
}

fn parse_batch_wait_ms(text: &str) -> Result<u64, String> {
    parse_count(
        text,
        0,
        crate::config::MAX_BATCH_WAIT_MS,
        "the batch wait (ms)",
    )
}

fn parse_warmup(text: &str) -> Result<u64, String> {
    parse_count(text, 0, 1_000_000, "the warm-up count")
}

fn parse_threads(text: &str) -> Result<usize, String> {
    parse_count(text, 1, crate::config::MAX_THREADS, "the thread count")
}

fn parse_busy_poll_us(text: &str) -> Result<u64, String> {
    parse_count(
        text,
        0,
        crate::config::MAX_BUSY_POLL_US,
        "the busy-poll window (us)",
    )
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let max = crate::config::MAX_RATE_RPS;
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= max => Ok(r),
        _ => Err(format!(
            "{text:?} is not a valid rate; give requests per second, more than 0 and at most {max} (e.g. 50 or 0.5)"
        )),
    }
}

fn parse_run_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d > MAX_DURATION {
        return Err(format!(
            "{text:?} is out of range; the duration must be more than 0 and at most 1h"
        ));
    }
    Ok(d)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d > crate::config::MAX_TIMEOUT {
        return Err(format!(
            "{text:?} is out of range; the timeout must be more than 0 and at most 10m"
        ));
    }
    Ok(d)
}

fn parse_header_arg(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    parse_header(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<LoadConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn flags_override_the_profile() {
        let c = parse(&["--profile", "optimized", "--batch-size", "4", "-c", "3"]).unwrap();
        assert_eq!((c.batch_size, c.batch_wait_ms, c.concurrency), (4, 5, 3));
        assert_eq!(c.connection, ConnectionMode::Pooled);
        let c = parse(&["--profile", "baseline"]).unwrap();
        assert_eq!(
            (c.connection, c.requests),
            (ConnectionMode::PerRequest, Some(400))
        );
        let c = parse(&["-z", "2s"]).unwrap();
        assert_eq!(
            (c.requests, c.duration),
            (None, Some(Duration::from_secs(2)))
        );
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(parse(&["-c", "0"])
            .unwrap_err()
            .contains("concurrency must be 1..="));
        assert!(parse(&["--rate", "-1"])
            .unwrap_err()
            .contains("more than 0"));
        assert!(parse(&["-z", "5x"]).unwrap_err().contains("unknown unit"));
        assert!(parse(&["-z", "2h"]).unwrap_err().contains("at most 1h"));
        assert!(parse(&["--threads", "0"])
            .unwrap_err()
            .contains("thread count must be 1..="));
        assert_eq!(parse(&["--threads", "3"]).unwrap().threads, Some(3));
        assert!(parse(&["--busy-poll-us", "10001"])
            .unwrap_err()
            .contains("busy-poll window (us) must be 0..=10000"));
        assert_eq!(
            parse(&["--busy-poll-us", "0"]).unwrap().busy_poll,
            Duration::ZERO
        );
        assert!(parse(&["--url", "http://8.8.8.8/v1/infer"])
            .unwrap_err()
            .contains("loopback"));
        assert!(
            parse(&["--arrival", "poisson"]).is_err(),
            "--arrival needs --rate"
        );
    }
}
