//! The parsers of flag values: each says what is allowed when a value is
//! refused. Ranges come from the library ([`loadgen::limits`], the
//! capacity search's bounds), so a flag and a library caller get one
//! message for one mistake.

use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use loadgen::{capacity, limits, parse_header, LengthDist, ShardArg, Stages, Turns, Warmup};
use stats::slo::Slo;

pub(crate) fn parse_max_tokens(text: &str) -> Result<u32, String> {
    limits::MAX_TOKENS.parse(text)
}

pub(crate) fn parse_concurrency(text: &str) -> Result<usize, String> {
    limits::CONCURRENCY.parse(text)
}

pub(crate) fn parse_requests(text: &str) -> Result<u64, String> {
    limits::REQUESTS.parse(text)
}

pub(crate) fn parse_max_in_flight(text: &str) -> Result<usize, String> {
    limits::MAX_IN_FLIGHT.parse(text)
}

pub(crate) fn parse_batch_size(text: &str) -> Result<usize, String> {
    limits::BATCH_SIZE.parse(text)
}

pub(crate) fn parse_batch_wait_ms(text: &str) -> Result<u64, String> {
    limits::BATCH_WAIT_MS.parse(text)
}

pub(crate) fn parse_warmup(text: &str) -> Result<Warmup, String> {
    Warmup::parse(text)
}

pub(crate) fn parse_seed(text: &str) -> Result<u64, String> {
    limits::SEED.parse(text)
}

pub(crate) fn parse_threads(text: &str) -> Result<usize, String> {
    limits::THREADS.parse(text)
}

pub(crate) fn parse_busy_poll_us(text: &str) -> Result<u64, String> {
    limits::BUSY_POLL_US.parse(text)
}

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    limits::parse_rate(text)
}

pub(crate) fn parse_run_duration(text: &str) -> Result<Duration, String> {
    limits::DURATION.parse(text)
}

pub(crate) fn parse_server_metrics_interval(text: &str) -> Result<Duration, String> {
    loadgen::server_metrics::parse_interval(text)
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    limits::TIMEOUT.parse(text)
}

pub(crate) fn parse_slo(text: &str) -> Result<Slo, String> {
    text.parse::<Slo>().map_err(|e| e.reason)
}

pub(crate) fn parse_step_duration(text: &str) -> Result<Duration, String> {
    capacity::STEP_DURATION.parse(text)
}

pub(crate) fn parse_time_limit(text: &str) -> Result<Duration, String> {
    capacity::TIME_LIMIT.parse(text)
}

pub(crate) fn parse_precision(text: &str) -> Result<f64, String> {
    let allowed = format!(
        "the relative gap (hi - lo) / lo at which bisection stops, from {} to {} (e.g. 0.05)",
        capacity::MIN_PRECISION,
        capacity::MAX_PRECISION
    );
    match text.trim().parse::<f64>() {
        Ok(p) if (capacity::MIN_PRECISION..=capacity::MAX_PRECISION).contains(&p) => Ok(p),
        Ok(_) => Err(format!(
            "{text:?} is out of range; the precision is {allowed}"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number; the precision is {allowed}"
        )),
    }
}

pub(crate) fn parse_repeats(text: &str) -> Result<u32, String> {
    capacity::REPEATS.parse(text)
}

/// `--input-shape`: the dimensions of one item. A type of its own because
/// clap reads a `Vec` field as a repeatable flag of single values, and a
/// parser that returns the whole `Vec` then fails when the value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemShape(pub(crate) Vec<u64>);

/// `1`, `3,224,224`: positive whole dimensions separated by commas.
pub(crate) fn parse_shape(text: &str) -> Result<ItemShape, String> {
    text.split(',')
        .map(|d| match d.trim().parse::<u64>() {
            Ok(n) if (1..=1 << 20).contains(&n) => Ok(n),
            _ => Err(format!(
                "{text:?} is not a shape; give whole dimensions from 1 to 1048576 separated by commas, e.g. 1 or 3,224,224"
            )),
        })
        .collect::<Result<Vec<u64>, String>>()
        .map(ItemShape)
}

pub(crate) fn parse_shard(text: &str) -> Result<ShardArg, String> {
    loadgen::parse_shard(text)
}

pub(crate) fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    loadgen::parse_start_at(text)
}

pub(crate) fn parse_header_arg(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    parse_header(text)
}

pub(crate) fn parse_length_dist(text: &str) -> Result<LengthDist, String> {
    text.parse()
}

pub(crate) fn parse_turns(text: &str) -> Result<Turns, String> {
    text.parse()
}

pub(crate) fn parse_stages(text: &str) -> Result<Stages, String> {
    text.parse()
}

pub(crate) fn parse_prefix_tokens(text: &str) -> Result<u32, String> {
    limits::PREFIX_TOKENS.parse(text)
}

pub(crate) fn parse_prefix_count(text: &str) -> Result<u32, String> {
    limits::PREFIX_COUNT.parse(text)
}

pub(crate) fn parse_block_tokens(text: &str) -> Result<u32, String> {
    limits::BLOCK_TOKENS.parse(text)
}

pub(crate) fn parse_think_time(text: &str) -> Result<Duration, String> {
    let d = limits::parse_duration(text.trim())
        .map_err(|e| format!("{e}; the think time is a duration from 0s to 10m (e.g. 2s)"))?;
    if d > Duration::from_secs(600) {
        return Err(format!(
            "{text:?} is out of range; the think time is at most 10m"
        ));
    }
    Ok(d)
}

/// `--trace-start`, `--trace-duration`: a time on the trace's clock, up to
/// a year.
pub(crate) fn parse_trace_offset(text: &str) -> Result<Duration, String> {
    let d = limits::parse_duration(text.trim())
        .map_err(|e| format!("{e}; give a time on the trace's clock such as 90s, 10m or 2h"))?;
    if d > Duration::from_secs(366 * 86_400) {
        return Err(format!("{text:?} is out of range; at most a year (8784h)"));
    }
    Ok(d)
}

pub(crate) fn parse_speedup(text: &str) -> Result<f64, String> {
    let allowed = "a factor more than 0 and at most 1000000 (2: twice as fast, 0.5: half)";
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e6 => Ok(x),
        Ok(_) => Err(format!(
            "{text:?} is out of range; the trace speedup is {allowed}"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number; the trace speedup is {allowed}"
        )),
    }
}

/// `--metrics-listen`: an IP address and port (no host name: what to bind
/// must not depend on a resolver).
pub(crate) fn parse_metrics_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not an address to listen on; give IP:PORT such as 127.0.0.1:9464, \
             0.0.0.0:9464 or [::1]:9464 (port 0: a free one)"
        )
    })
}

/// `--metrics-linger`: 0s to 10m.
pub(crate) fn parse_metrics_linger(text: &str) -> Result<Duration, String> {
    let allowed = "the metrics linger is a duration from 0s to 10m (e.g. 15s)";
    let d = limits::parse_duration(text.trim()).map_err(|e| format!("{e}; {allowed}"))?;
    if d > Duration::from_secs(600) {
        return Err(format!("{text:?} is out of range; {allowed}"));
    }
    Ok(d)
}
