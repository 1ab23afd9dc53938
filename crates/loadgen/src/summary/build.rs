//! The run's [`RunSummary`] from its statistics, the engine's counters and
//! the open loop's health; and the plan, the whole load a configuration
//! asks for.

use model::summary::{Plan, RunSummary, SCHEMA_VERSION};

use super::rows::RowStats;
use crate::config::LoadConfig;
use crate::engine::Engine;
use crate::schedule::{OpenLoopStats, LATE_THRESHOLD_MS};

/// What the schedule says of itself at the end of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScheduleFacts {
    /// The open loop's own counts (`None` for the closed loop).
    pub open: Option<OpenLoopStats>,
    /// The whole load's mean target rate (a trace's, or a ramp's mean).
    pub mean_rate_rps: Option<f64>,
    /// A trace that could not be read to its end during the replay.
    pub trace_error: Option<String>,
}

/// Lines in the summary's text histogram.
pub(super) const HISTOGRAM_BUCKETS: usize = model::summary::LATENCY_BUCKETS;

/// The plan of `config`: the whole load it asks for.
pub(super) fn plan_of(config: &LoadConfig) -> Plan {
    let open = config.open_loop.as_ref();
    // A trace's rows set the times: no rate or arrival process was asked.
    let rated = open.filter(|_| config.workload.trace.is_none());
    Plan {
        url: config.url.clone(),
        api: config.api.name().to_owned(),
        mode: if open.is_some() { "open" } else { "closed" }.to_owned(),
        rate_rps: rated.map(|o| o.rate_rps),
        arrival: rated.map(|o| o.arrival.name().to_owned()),
        seed: rated
            .filter(|o| o.arrival == crate::config::Arrival::Poisson)
            .map(|o| o.seed),
        concurrency: open.is_none().then_some(config.concurrency),
        requests: config.requests,
        duration_s: config.duration.map(|d| d.as_secs_f64()),
        batch_size: config.batch_size,
        batch_wait_ms: config.batch_wait_ms,
        connection: config.connection.name().to_owned(),
        http2: config.http2,
        profile: config.profile.map(|p| p.name().to_owned()),
    }
}

/// The summary of a run: `stats` of its rows (the final percentiles sort
/// their kept values), the open loop's health when it ran open, and the
/// engine's counters; what the set-up reports is filled in by the caller.
pub(crate) fn build_summary(
    config: &LoadConfig,
    stats: &mut RowStats,
    schedule: ScheduleFacts,
    duration_s: f64,
    engine: &Engine,
    interrupted: bool,
) -> RunSummary {
    let open_stats = schedule.open;
    // A shard's own target: its part of the schedule, 1/COUNT of the rate.
    let shard_count = config.shard.map_or(1.0, |s| f64::from(s.count));
    let target_rate = schedule.mean_rate_rps.map(|r| r / shard_count);
    let send_lag = stats.send_lag_percentiles();
    let rate_warning = match (target_rate, open_stats) {
        (Some(target), Some(open)) => {
            // A trace or a ramp is bursty: its achieved rate over the
            // sends is no measure of keeping up; lateness is.
            let steady = config.workload.trace.is_none() && config.stages.is_none();
            let behind = steady && open.achieved_rate_rps < 0.95 * target && open.sent >= 10;
            let late_share = open.late_sends as f64 / (open.sent + open.dropped).max(1) as f64;
            let p99 = send_lag.as_ref().and_then(|p| p.p99_ms).unwrap_or(0.0);
            (behind || late_share > 0.01 || open.dropped > 0).then(|| {
                format!(
                    "the generator did not keep its schedule: achieved {:.1} of {target:.1} req/s, {} late sends ({:.1}% more than {LATE_THRESHOLD_MS} ms behind), send lateness P99 {p99:.2} ms, max {:.2} ms, {} dropped at the in-flight bound; the offered load was lower than asked (a busy client machine, or too few CPUs for this rate)",
                    open.achieved_rate_rps,
                    open.late_sends,
                    late_share * 100.0,
                    open.max_send_lag_ms,
                    open.dropped
                )
            })
        }
        _ => None,
    };
    let rate_warning = match (rate_warning, schedule.trace_error) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    let latency_histogram = stats.latency_histogram_base64();
    // numpy's linear method, as `report` computes it from the log: exact
    // from every latency while they fit in memory's bound.
    let latency = stats.latency_mut();
    let [p50_ms, p90_ms, p95_ms, p99_ms, p99_9_ms] =
        [0.50, 0.90, 0.95, 0.99, 0.999].map(|q| latency.quantile_ms(q));
    let (quantiles_exact, quantile_error) = (latency.exact(), latency.quantile_error());
    RunSummary {
        schema_version: SCHEMA_VERSION,
        total: stats.total,
        succeeded: stats.succeeded,
        failed: stats.total - stats.succeeded,
        p50_ms,
        p90_ms,
        p95_ms,
        p99_ms,
        p99_9_ms,
        quantiles_exact,
        quantile_error,
        mean_ms: stats.mean_ms(),
        min_ms: stats.min_ms(),
        max_ms: stats.max_ms(),
        latency_buckets: stats.latency_buckets(HISTOGRAM_BUCKETS),
        throughput_rps: if duration_s > 0.0 {
            stats.succeeded as f64 / duration_s
        } else {
            0.0
        },
        duration_s,
        errors: stats.errors.clone(),
        status_codes: engine.status_codes(),
        connections_opened: engine.connections_opened(),
        retries: stats.retries,
        mode: if config.open_loop.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_owned(),
        profile: config.profile.map(|p| p.name().to_owned()),
        connection: config.connection.name().to_owned(),
        http2: config.http2,
        batch_size: config.batch_size,
        batch_wait_ms: config.batch_wait_ms,
        concurrency: config.workers(),
        client_threads: 0,
        busy_poll_us: 0,
        http_requests: engine.http_requests(),
        server_batch_size_mean: engine.server_batch_size_mean(),
        verified: false,
        verified_rows: stats.verified,
        target_rate_rps: target_rate,
        achieved_rate_rps: open_stats.map(|o| o.achieved_rate_rps),
        late_sends: open_stats.map(|o| o.late_sends),
        dropped: open_stats.map(|o| o.dropped),
        max_send_lag_ms: open_stats.map(|o| o.max_send_lag_ms),
        rate_warning,
        send_lag: send_lag.filter(|_| open_stats.is_some()),
        warmup_rows: stats.warmup_rows,
        workload: None,
        interrupted,
        url: config.url.clone(),
        resolved: Vec::new(),
        api: config.api.name().to_owned(),
        protocol: String::new(),
        tls_verification: None,
        tls_first_failure: None,
        server_stats_warning: None,
        model: config.model.clone(),
        llm: stats.llm_summary(duration_s).map(|mut llm| {
            if let Some(stamps) = engine.stamp_percentiles() {
                llm.client_delay = Some(stamps.client_delay);
                llm.server_itl = Some(stamps.server_itl);
            }
            llm
        }),
        shard: None,
        plan: plan_of(config),
        latency_histogram,
        // A single run's summary has none of a merge's keys.
        percentiles_from: None,
        ids: None,
        shards: None,
        slos: None,
    }
}
