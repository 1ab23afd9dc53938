//! Run configuration: every option of a load test, its defaults, the named
//! profiles and the checks that turn bad values into clear errors.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

/// Longest `-z/--duration` accepted: load tests are bounded by design.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most logical requests one run may issue.
pub const MAX_REQUESTS: u64 = 100_000_000;
/// Most closed-loop workers.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Most client threads.
pub const MAX_THREADS: usize = 1024;
/// Highest open-loop rate, requests per second.
pub const MAX_RATE_RPS: f64 = 1_000_000.0;
/// Largest client micro-batch.
pub const MAX_BATCH_SIZE: usize = 1024;
/// Longest client batch wait, ms.
pub const MAX_BATCH_WAIT_MS: u64 = 60_000;
/// Longest per-request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Default bound on open-loop requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// Longest busy-poll window, us: past a few tens of microseconds a
/// longer one only burns CPU.
pub const MAX_BUSY_POLL_US: u64 = 10_000;
/// Default busy-poll window, us: off (see [`crate::busy_poll`] for why).
pub const DEFAULT_BUSY_POLL_US: u64 = 0;
/// Default seed of the Poisson arrival process.
pub const DEFAULT_SEED: u64 = 42;

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// A new TCP connection for every HTTP request, closed after the
    /// response (what `input.py` does by opening a client per request).
    PerRequest,
    /// Keep-alive connections, reused across requests.
    Pooled,
}

impl ConnectionMode {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::PerRequest => "per-request",
            Self::Pooled => "pooled",
        }
    }
}

/// The spacing of open-loop sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Exactly `1/rate` apart.
    Constant,
    /// Exponential gaps with mean `1/rate` (a Poisson process), seeded.
    Poisson,
}

impl Arrival {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Poisson => "poisson",
        }
    }
}

/// Named presets; explicit options override their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `input.py` reproduced: 400 requests, concurrency 20, timeout 30 s,
    /// a new connection per request, no batching.
    Baseline,
    /// The project's optimization: pooled keep-alive connections and client
    /// micro-batching (batch size 10, wait 5 ms), same load otherwise.
    Optimized,
}

impl Profile {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Optimized => "optimized",
        }
    }

    /// Connection mode of the profile.
    pub fn connection(self) -> ConnectionMode {
        match self {
            Self::Baseline => ConnectionMode::PerRequest,
            Self::Optimized => ConnectionMode::Pooled,
        }
    }

    /// Client batch size of the profile.
    pub fn batch_size(self) -> usize {
        match self {
            Self::Baseline => 1,
            Self::Optimized => 10,
        }
    }

    /// Client batch wait of the profile, ms.
    pub fn batch_wait_ms(self) -> u64 {
        match self {
            Self::Baseline => 0,
            Self::Optimized => 5,
        }
    }
}

/// Open-loop settings: sends follow a schedule, not the responses.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoop {
    /// Target rate, requests per second.
    pub rate_rps: f64,
    /// Spacing of the sends.
    pub arrival: Arrival,
    /// Seed of the Poisson process (ignored for constant arrivals).
    pub seed: u64,
    /// Most logical requests in flight; a send beyond it is dropped and
    /// logged as a failed row with error `dropped`.
    pub max_in_flight: usize,
}

/// Where request bodies come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSource {
    /// `input.py`'s inputs: request `i` sends `baseline_input(i)`.
    Baseline,
    /// Inputs read from a JSONL file (`{"input": "...", "model": "..."}` per
    /// line, `model` optional), cycled.
    File(PathBuf),
}

/// Everything a run needs. Build one with [`LoadConfig::default`] (the
/// `input.py` load shape over pooled connections) or
/// [`LoadConfig::from_profile`], adjust fields, and call
/// [`LoadConfig::validate`] (which [`crate::run`] calls too).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Target endpoint; `http://` on a loopback host only.
    pub url: String,
    /// Profile the values came from, if any (reported in the summary).
    pub profile: Option<Profile>,
    /// Closed-loop workers (also the warm-up concurrency in open loop).
    pub concurrency: usize,
    /// Logical requests to issue; `None` with a duration means "until the
    /// duration ends". At least one of `requests` and `duration` is set.
    pub requests: Option<u64>,
    /// How long to issue requests.
    pub duration: Option<Duration>,
    /// Open loop when set; closed loop otherwise.
    pub open_loop: Option<OpenLoop>,
    /// How connections are used.
    pub connection: ConnectionMode,
    /// Speak HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Logical requests per HTTP request; 1 disables micro-batching.
    pub batch_size: usize,
    /// How long the oldest queued logical request waits for a batch to fill.
    pub batch_wait_ms: u64,
    /// Compare every output with `model::output::expected_output`.
    pub verify: bool,
    /// Model name sent when the payload does not name one.
    pub model: String,
    /// Limit on one HTTP request: connect, send and read the whole body.
    pub timeout: Duration,
    /// Requests sent (closed loop) before the measured run, not logged.
    pub warmup: u64,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request inputs.
    pub payloads: PayloadSource,
    /// Client threads for the closed loop over HTTP/1.1 without batching,
    /// each a single-threaded runtime with its own connections; `None`: one
    /// per CPU this process may run on (at most one per worker).
    pub threads: Option<usize>,
    /// How long a client thread keeps polling its sockets after a request
    /// completes before it sleeps ([`crate::busy_poll`]); zero: never.
    /// Applies where `threads` does.
    pub busy_poll: Duration,
    /// Per-request CSV log; none when `None`.
    pub log_path: Option<PathBuf>,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// After a shutdown signal, how long in-flight requests may still finish.
    pub shutdown_grace: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            url: model::DEFAULT_URL.to_owned(),
            profile: None,
            concurrency: model::BASELINE_CONCURRENCY,
            requests: Some(model::BASELINE_REQUESTS),
            duration: None,
            open_loop: None,
            connection: ConnectionMode::Pooled,
            http2: false,
            batch_size: 1,
            batch_wait_ms: 0,
            verify: true,
            model: model::DEFAULT_MODEL.to_owned(),
            timeout: Duration::from_secs(model::BASELINE_TIMEOUT_S),
            warmup: 0,
            headers: Vec::new(),
            payloads: PayloadSource::Baseline,
            threads: None,
            busy_poll: Duration::from_micros(DEFAULT_BUSY_POLL_US),
            log_path: None,
            progress: false,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl LoadConfig {
    /// The defaults with a profile's values applied.
    pub fn from_profile(profile: Profile) -> Self {
        Self {
            profile: Some(profile),
            connection: profile.connection(),
            batch_size: profile.batch_size(),
            batch_wait_ms: profile.batch_wait_ms(),
            ..Self::default()
        }
    }

    /// Checks every value; the error says what is wrong and what is allowed.
    pub fn validate(&self) -> Result<Target, ConfigError> {
        let target = Target::parse(&self.url)?;
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(ConfigError::Invalid(format!(
                "concurrency {} is out of range; allowed 1..={MAX_CONCURRENCY}",
                self.concurrency
            )));
        }
        match (self.requests, self.duration) {
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "give a request count (-n) or a duration (-z); unbounded runs are refused"
                        .into(),
                ))
            }
            (Some(n), _) if n == 0 || n > MAX_REQUESTS => {
                return Err(ConfigError::Invalid(format!(
                    "request count {n} is out of range; allowed 1..={MAX_REQUESTS}"
                )))
            }
            (_, Some(d)) if d.is_zero() || d > MAX_DURATION => {
                return Err(ConfigError::Invalid(format!(
                    "duration {d:?} is out of range; allowed more than 0 and at most 1h"
                )))
            }
            _ => {}
        }
        if let Some(open) = &self.open_loop {
            if !(open.rate_rps.is_finite() && open.rate_rps > 0.0 && open.rate_rps <= MAX_RATE_RPS)
            {
                return Err(ConfigError::Invalid(format!(
                    "rate {} is out of range; allowed more than 0 and at most {MAX_RATE_RPS} requests/s",
                    open.rate_rps
                )));
            }
            if open.max_in_flight == 0 {
                return Err(ConfigError::Invalid(
                    "max in flight must be at least 1".into(),
                ));
            }
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(ConfigError::Invalid(format!(
                "batch size {} is out of range; allowed 1..={MAX_BATCH_SIZE}",
                self.batch_size
            )));
        }
        if self.batch_wait_ms > MAX_BATCH_WAIT_MS {
            return Err(ConfigError::Invalid(format!(
                "batch wait {} ms is out of range; allowed 0..={MAX_BATCH_WAIT_MS}",
                self.batch_wait_ms
            )));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::Invalid(format!(
                "timeout {:?} is out of range; allowed more than 0 and at most 10m",
                self.timeout
            )));
        }
        if self.threads.is_some_and(|t| t == 0 || t > MAX_THREADS) {
            return Err(ConfigError::Invalid(format!(
                "threads {} is out of range; allowed 1..={MAX_THREADS}",
                self.threads.unwrap_or(0)
            )));
        }
        if self.busy_poll > Duration::from_micros(MAX_BUSY_POLL_US) {
            return Err(ConfigError::Invalid(format!(
                "busy-poll window {:?} is out of range; allowed 0..={MAX_BUSY_POLL_US} us",
                self.busy_poll
            )));
        }
        if self.model.is_empty() {
            return Err(ConfigError::Invalid("model name must not be empty".into()));
        }
        Ok(target)
    }
}

/// The parsed endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The whole URL.
    pub uri: Uri,
    /// Host as written (name or IP literal, without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Value of the `Host` header.
    pub authority: String,
    /// Path and query sent in the HTTP/1.1 request line.
    pub path_and_query: String,
}

impl Target {
    /// Parses an `http://` URL and refuses hosts that are not loopback:
    /// this project's load tests only ever target the local machine.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let uri: Uri = url.parse().map_err(|e| ConfigError::BadUrl {
            url: url.to_owned(),
            reason: format!("{e}"),
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(ConfigError::BadUrl {
                    url: url.to_owned(),
                    reason: "https is not supported by this build; use http:// on loopback".into(),
                })
            }
            _ => {
                return Err(ConfigError::BadUrl {
                    url: url.to_owned(),
                    reason: "expected an absolute http:// URL, e.g. http://127.0.0.1:8000/v1/infer"
                        .into(),
                })
            }
        }
        let authority = uri.authority().ok_or_else(|| ConfigError::BadUrl {
            url: url.to_owned(),
            reason: "the URL has no host".into(),
        })?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !is_loopback_name(&host) {
            return Err(ConfigError::NotLoopback(host));
        }
        let port = authority.port_u16().unwrap_or(80);
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            authority: authority.as_str().to_owned(),
            uri,
            host,
            port,
            path_and_query,
        })
    }
}

/// Whether a host, as written, names the local machine. Names other than
/// `localhost` are refused without a DNS lookup; `localhost` is resolved at
/// run time and every address it gives must be loopback too.
pub fn is_loopback_name(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
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

/// Parses a `-H 'Name: value'` header.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header; write 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header {name} has characters HTTP does not allow"))?;
    Ok((name, value))
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse or is not `http://`.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host is not loopback.
    #[error(
        "refusing to load {0:?}: load tests only target loopback (127.0.0.0/8, ::1, localhost)"
    )]
    NotLoopback(String),
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_documented_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn only_loopback_http_urls_pass() {
        let t = Target::parse("http://127.0.0.1:8000/v1/infer").unwrap();
        assert_eq!((t.port, t.path_and_query.as_str()), (8000, "/v1/infer"));
        assert!(Target::parse("http://[::1]:9/x").is_ok());
        assert!(Target::parse("http://localhost/x").is_ok());
        assert!(matches!(
            Target::parse("http://10.0.0.1/x"),
            Err(ConfigError::NotLoopback(_))
        ));
        assert!(matches!(
            Target::parse("http://example.com/x"),
            Err(ConfigError::NotLoopback(_))
        ));
        assert!(matches!(
            Target::parse("https://127.0.0.1/x"),
            Err(ConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            Target::parse("127.0.0.1:80"),
            Err(ConfigError::BadUrl { .. })
        ));
    }

    #[test]
    fn profiles_set_their_knobs() {
        let b = LoadConfig::from_profile(Profile::Baseline);
        assert_eq!(
            (b.connection, b.batch_size, b.concurrency),
            (ConnectionMode::PerRequest, 1, 20)
        );
        let o = LoadConfig::from_profile(Profile::Optimized);
        assert_eq!(
            (o.connection, o.batch_size, o.batch_wait_ms),
            (ConnectionMode::Pooled, 10, 5)
        );
        assert_eq!(o.requests, Some(400));
    }

    #[test]
    fn validation_names_the_problem() {
        let c = LoadConfig {
            concurrency: 0,
            ..LoadConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("concurrency"));
        let c = LoadConfig {
            requests: None,
            duration: None,
            ..LoadConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LoadConfig {
            open_loop: Some(OpenLoop {
                rate_rps: -1.0,
                arrival: Arrival::Constant,
                seed: 1,
                max_in_flight: 1,
            }),
            ..LoadConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("rate"));
    }

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("X-Api-Key: abc").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-api-key", "abc"));
        assert!(parse_header("nocolon").is_err());
    }
}
