//! The arithmetic of merging: sums over the shards, and the percentiles,
//! means, extremes, time span and rates either from the union of the rows
//! or, without every shard's rows, from the merged histograms.

use std::collections::{BTreeMap, HashSet};

use model::comparison::SideSummary;
use model::log::{Log, LogFormat};
use model::summary::{
    LlmSummary, MergedShard, MergedShards, ObjectiveResult, Percentiles, Plan, RequestIds,
    RunSummary, SCHEMA_VERSION,
};
use stats::slo::{Metric, Series, Slo, Stat};
use stats::LatencyHistogram;

use super::shard::{LlmHistograms, Shard};
use super::write::LOG_FILE;
use super::MergeError;
use crate::summary::{
    quantile_ms, successful_latencies_sorted, summary_of_log, REPORT_QUANTILE_METHOD,
};

/// What `quantile_error` says when the percentiles come from histograms:
/// the histogram's own bound ([`LatencyHistogram::QUANTILE_ERROR`]), and
/// the rounding of the rows it is compared with.
pub fn histogram_error() -> String {
    format!(
        "{}; loadgen records each latency as measured and log.csv rounds it to 0.001 ms, so \
         against numpy over the rows allow 0.0005 ms more",
        LatencyHistogram::QUANTILE_ERROR
    )
}

/// What every shard adds up to, and what the plan says: everything but
/// the percentiles and the time span, which depend on having rows.
pub(super) fn summed(shards: &[Shard]) -> RunSummary {
    let each = || shards.iter().map(|s| &s.summary);
    let plan: &Plan = &shards[0].summary.plan;
    let sum = |f: fn(&RunSummary) -> u64| each().map(f).sum::<u64>();
    let mut errors = BTreeMap::new();
    let mut status_codes = BTreeMap::new();
    for s in each() {
        for (kind, count) in &s.errors {
            *errors.entry(kind.clone()).or_insert(0) += count;
        }
        for (code, count) in &s.status_codes {
            *status_codes.entry(*code).or_insert(0) += count;
        }
    }
    let http_requests = sum(|s| s.http_requests);
    // The server's mean batch size, weighted by the HTTP requests it answered.
    let batches: Vec<(f64, u64)> = each()
        .filter_map(|s| s.server_batch_size_mean.map(|m| (m, s.http_requests)))
        .collect();
    let batch_requests: u64 = batches.iter().map(|b| b.1).sum();
    let server_batch_size_mean = (batch_requests > 0)
        .then(|| batches.iter().map(|(m, n)| m * *n as f64).sum::<f64>() / batch_requests as f64);
    let warnings = |f: fn(&RunSummary) -> Option<&String>| {
        let said: Vec<String> = shards
            .iter()
            .filter_map(|s| f(&s.summary).map(|w| format!("shard {}: {w}", s.info.index)))
            .collect();
        (!said.is_empty()).then(|| said.join("; "))
    };
    let mut resolved: Vec<String> = Vec::new();
    for address in each().flat_map(|s| &s.resolved) {
        if !resolved.contains(address) {
            resolved.push(address.clone());
        }
    }
    let per_shard = shards
        .iter()
        .map(|s| MergedShard {
            dir: s.dir.display().to_string(),
            index: s.info.index,
            total: s.summary.total,
            succeeded: s.summary.succeeded,
            start_skew_ms: s.info.start_skew_ms,
            log_csv: s.log.is_some(),
        })
        .collect();
    RunSummary {
        schema_version: SCHEMA_VERSION,
        total: sum(|s| s.total),
        succeeded: sum(|s| s.succeeded),
        failed: sum(|s| s.failed),
        errors,
        status_codes,
        connections_opened: sum(|s| s.connections_opened),
        retries: sum(|s| s.retries),
        mode: plan.mode.clone(),
        profile: plan.profile.clone(),
        connection: plan.connection.clone(),
        http2: plan.http2,
        batch_size: plan.batch_size,
        batch_wait_ms: plan.batch_wait_ms,
        concurrency: each().map(|s| s.concurrency).sum(),
        client_threads: each().map(|s| s.client_threads).sum(),
        busy_poll_us: each().map(|s| s.busy_poll_us).max().unwrap_or(0),
        http_requests,
        server_batch_size_mean,
        verified: each().all(|s| s.verified),
        verified_rows: sum(|s| s.verified_rows),
        target_rate_rps: each().map(|s| s.target_rate_rps).sum(),
        late_sends: each().map(|s| s.late_sends).sum(),
        dropped: each().map(|s| s.dropped).sum(),
        max_send_lag_ms: each().filter_map(|s| s.max_send_lag_ms).reduce(f64::max),
        rate_warning: warnings(|s| s.rate_warning.as_ref()),
        interrupted: each().any(|s| s.interrupted),
        url: plan.url.clone(),
        resolved,
        api: shards[0].summary.api.clone(),
        protocol: distinct(each().map(|s| s.protocol.as_str())),
        tls_verification: Some(distinct(
            each().filter_map(|s| s.tls_verification.as_deref()),
        ))
        .filter(|t| !t.is_empty()),
        tls_first_failure: warnings(|s| s.tls_first_failure.as_ref()),
        server_stats_warning: warnings(|s| s.server_stats_warning.as_ref()),
        model: distinct(each().map(|s| s.model.as_str())),
        shard: None,
        plan: plan.clone(),
        shards: Some(MergedShards {
            count: shards.len() as u64,
            per_shard,
        }),
        ..RunSummary::default()
    }
}

/// The distinct values, in order, joined: one value when all agree.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(", ")
}

/// Every shard's rows, by timestamp, then id (a stable order for equal times).
pub(super) fn union_of_rows(shards: &[Shard]) -> Log {
    let mut rows: Vec<_> = shards
        .iter()
        .filter_map(|s| s.log.as_ref())
        .flat_map(|log| log.rows.iter().cloned())
        .collect();
    rows.sort_by(|a, b| {
        a.timestamp_ms
            .total_cmp(&b.timestamp_ms)
            .then(a.request_id.cmp(&b.request_id))
    });
    Log {
        format: LogFormat::Loadgen,
        rows,
    }
}

/// Fills `summary` from the union of rows; returns the rows' [`SideSummary`].
pub(super) fn from_rows(
    summary: &mut RunSummary,
    log: &Log,
    open_loop: bool,
) -> Result<SideSummary, MergeError> {
    let side = summary_of_log("merged", None, log)?;
    let sorted = successful_latencies_sorted(&log.rows);
    let q = |p| quantile_ms(&sorted, p, REPORT_QUANTILE_METHOD);
    summary.p50_ms = side.p50_ms;
    summary.p90_ms = q(0.90)?;
    summary.p95_ms = side.p95_ms;
    summary.p99_ms = side.p99_ms;
    summary.p99_9_ms = q(0.999)?;
    summary.quantiles_exact = true;
    summary.quantile_error = None;
    summary.mean_ms = side.mean_ms;
    summary.min_ms = side.min_ms;
    summary.max_ms = side.max_ms;
    summary.throughput_rps = side.throughput_rps.unwrap_or(0.0);
    summary.duration_s = side.duration_s.unwrap_or(0.0);
    summary.llm = side.llm.clone();
    summary.percentiles_from = Some("rows".to_owned());
    summary.ids = Some(ids_of(log));
    if open_loop {
        // loadgen's own definition for one generator: (sent - 1) over the
        // span from the first send to the last; `dropped` rows were not sent.
        let sends = || log.rows.iter().filter(|r| r.error != "dropped");
        let sent = sends().count();
        let first = sends().map(|r| r.timestamp_ms).reduce(f64::min);
        let last = sends().map(|r| r.timestamp_ms).reduce(f64::max);
        summary.achieved_rate_rps = Some(match (first, last) {
            (Some(a), Some(b)) if sent >= 2 && b > a => (sent - 1) as f64 / ((b - a) / 1000.0),
            _ => 0.0,
        });
    }
    Ok(side)
}

fn ids_of(log: &Log) -> RequestIds {
    let mut seen = HashSet::with_capacity(log.rows.len());
    let mut duplicates = 0;
    for row in &log.rows {
        if !seen.insert(row.request_id) {
            duplicates += 1;
        }
    }
    let min = seen.iter().copied().min();
    let max = seen.iter().copied().max();
    let span = match (min, max) {
        (Some(a), Some(b)) => b - a + 1,
        _ => 0,
    };
    RequestIds {
        unique: seen.len() as u64,
        duplicates,
        missing: span - seen.len() as u64,
        min,
        max,
    }
}

/// The union of one histogram of every shard that has it.
pub(super) fn merged<'a>(
    shards: &'a [Shard],
    field: &'static str,
    pick: impl Fn(&'a Shard) -> Option<&'a LatencyHistogram>,
) -> Result<LatencyHistogram, MergeError> {
    let mut merged = LatencyHistogram::new();
    for shard in shards {
        if let Some(histogram) = pick(shard) {
            merged
                .merge(histogram)
                .map_err(|source| MergeError::Histogram {
                    path: shard.summary_path.clone(),
                    field,
                    source,
                })?;
        }
    }
    Ok(merged)
}

/// The LLM series' histograms over every shard that ran an LLM API (one
/// whose every request failed has none); `None` when none did.
pub(super) fn merged_llm(shards: &[Shard]) -> Result<Option<LlmHistograms>, MergeError> {
    if shards.iter().all(|s| s.llm.is_none()) {
        return Ok(None);
    }
    Ok(Some(LlmHistograms {
        ttft: merged(shards, "llm.ttft_histogram", |s| {
            s.llm.as_ref().map(|l| &l.ttft)
        })?,
        itl: merged(shards, "llm.itl_histogram", |s| {
            s.llm.as_ref().map(|l| &l.itl)
        })?,
        tpot: merged(shards, "llm.tpot_histogram", |s| {
            s.llm.as_ref().map(|l| &l.tpot)
        })?,
    }))
}

/// Ships the merged histograms with the LLM numbers, so the merged
/// summary merges again like any loadgen summary.
pub(super) fn with_histograms(llm: &mut LlmSummary, histograms: &LlmHistograms) {
    llm.ttft_histogram = histograms.ttft.to_base64_v2().ok();
    llm.itl_histogram = histograms.itl.to_base64_v2().ok();
    llm.tpot_histogram = histograms.tpot.to_base64_v2().ok();
}

/// One series merged from the shards' exact counts, means and extremes
/// and its merged histogram: percentiles by the Linear method between the
/// exact extremes, within [`histogram_error`].
fn from_histogram<'a>(
    parts: impl Iterator<Item = &'a Percentiles> + Clone,
    histogram: &LatencyHistogram,
) -> Percentiles {
    let measured = parts.filter(|p| p.count > 0);
    let count: u64 = measured.clone().map(|p| p.count).sum();
    // loadgen's mean is the exact sum over the series divided by its count,
    // so weighting by the count gives back the exact merged mean.
    let weighted: Option<f64> = measured
        .clone()
        .map(|p| p.mean_ms.map(|m| m * p.count as f64))
        .sum();
    let min_ms = measured.clone().filter_map(|p| p.min_ms).reduce(f64::min);
    let max_ms = measured.filter_map(|p| p.max_ms).reduce(f64::max);
    let q = |p| {
        (count > 0)
            .then(|| histogram_quantile_ms(histogram, p, min_ms, max_ms))
            .flatten()
    };
    Percentiles {
        count,
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        mean_ms: weighted.filter(|_| count > 0).map(|sum| sum / count as f64),
        min_ms,
        max_ms,
        quantiles_exact: count == 0,
        quantile_error: (count > 0).then(histogram_error),
    }
}

/// Without every shard's rows: percentiles from the merged histograms; the
/// means, minima and maxima from the shards' exact ones; the time span from
/// each shard's start and duration.
pub(super) fn from_histograms(
    summary: &mut RunSummary,
    shards: &[Shard],
    histogram: &LatencyHistogram,
    llm: Option<&LlmHistograms>,
    open_loop: bool,
) -> Result<(), MergeError> {
    // The e2e series of each shard, as its summary states it.
    let e2e: Vec<Percentiles> = shards
        .iter()
        .map(|s| Percentiles {
            count: s.summary.succeeded,
            mean_ms: s.summary.mean_ms,
            min_ms: s.summary.min_ms,
            max_ms: s.summary.max_ms,
            ..Percentiles::default()
        })
        .collect();
    let merged = from_histogram(e2e.iter(), histogram);
    summary.mean_ms = merged.mean_ms;
    summary.min_ms = merged.min_ms;
    summary.max_ms = merged.max_ms;
    let q = |p| histogram_quantile_ms(histogram, p, summary.min_ms, summary.max_ms);
    summary.p50_ms = q(0.50);
    summary.p90_ms = q(0.90);
    summary.p95_ms = q(0.95);
    summary.p99_ms = q(0.99);
    summary.p99_9_ms = q(0.999);
    summary.quantiles_exact = false;
    summary.quantile_error = Some(histogram_error());
    summary.percentiles_from = Some("histogram".to_owned());

    // Shards started apart (and on different clocks, within `start_skew_ms`),
    // so the run spans from the earliest start to the latest end.
    let mut starts = Vec::with_capacity(shards.len());
    for shard in shards {
        let Some(start_at) = shard.info.start_at_unix_ms else {
            // Name the logs that are missing, not this shard's (it may have
            // its own): they are why the rows cannot place the shards.
            let absent: Vec<String> = shards
                .iter()
                .filter(|s| s.log.is_none())
                .map(|s| s.dir.join(LOG_FILE).display().to_string())
                .collect();
            return Err(MergeError::Inconsistent {
                path: shard.summary_path.clone(),
                message: format!(
                    "field `shard.start_at_unix_ms` is null, so without every shard's rows the shard cannot be placed in time, and {} {} absent; run the shards with --start-at, or ship every log.csv",
                    absent.join(", "),
                    if absent.len() == 1 { "is" } else { "are" }
                ),
            });
        };
        // No skew recorded: the shard started on time.
        starts.push(start_at + shard.info.start_skew_ms.unwrap_or(0.0));
    }
    let start_ms = starts.iter().copied().reduce(f64::min);
    let end_ms = shards
        .iter()
        .zip(&starts)
        .map(|(s, start)| start + s.summary.duration_s * 1000.0)
        .reduce(f64::max);
    if let (Some(start), Some(end)) = (start_ms, end_ms) {
        let duration_s = (end - start) / 1000.0;
        summary.duration_s = duration_s;
        summary.throughput_rps = if duration_s > 0.0 {
            summary.succeeded as f64 / duration_s
        } else {
            0.0
        };
    }
    if open_loop {
        summary.achieved_rate_rps = Some(achieved_rate_without_rows(shards, &starts));
    }
    if let Some(histograms) = llm {
        summary.llm = Some(llm_from_histograms(summary, shards, histograms));
    }
    Ok(())
}

/// The LLM numbers without every shard's rows: each series from its merged
/// histogram, e2e the merged summary's own, the tokens summed.
fn llm_from_histograms(
    summary: &RunSummary,
    shards: &[Shard],
    histograms: &LlmHistograms,
) -> LlmSummary {
    let parts: Vec<&LlmSummary> = shards
        .iter()
        .filter_map(|s| s.summary.llm.as_ref())
        .collect();
    let output_tokens: u64 = parts.iter().map(|l| l.output_tokens).sum();
    // Where the counts came from: one source if every shard that counted
    // any tokens agrees, else `mixed`.
    let sources: Vec<&str> = parts
        .iter()
        .map(|l| l.tokens_from.as_str())
        .filter(|from| *from != "none")
        .collect();
    let tokens_from = match distinct(sources.iter().copied()) {
        one if one.is_empty() => "none".to_owned(),
        one if !one.contains(", ") => one,
        _ => "mixed".to_owned(),
    };
    let mut llm = LlmSummary {
        ttft: from_histogram(parts.iter().map(|l| &l.ttft), &histograms.ttft),
        itl: from_histogram(parts.iter().map(|l| &l.itl), &histograms.itl),
        tpot: from_histogram(parts.iter().map(|l| &l.tpot), &histograms.tpot),
        e2e: Percentiles {
            count: summary.succeeded,
            p50_ms: summary.p50_ms,
            p90_ms: summary.p90_ms,
            p95_ms: summary.p95_ms,
            p99_ms: summary.p99_ms,
            mean_ms: summary.mean_ms,
            min_ms: summary.min_ms,
            max_ms: summary.max_ms,
            quantiles_exact: summary.quantiles_exact,
            quantile_error: summary.quantile_error.clone(),
        },
        output_tokens,
        output_tokens_per_s: (summary.duration_s > 0.0)
            .then(|| output_tokens as f64 / summary.duration_s),
        tokens_from,
        ..LlmSummary::default()
    };
    with_histograms(&mut llm, histograms);
    llm
}

/// The `q` quantile of the merged histogram by the Linear method, with
/// the exact extremes standing for the smallest and largest latency.
fn histogram_quantile_ms(
    histogram: &LatencyHistogram,
    q: f64,
    min_ms: Option<f64>,
    max_ms: Option<f64>,
) -> Option<f64> {
    match (min_ms, max_ms) {
        (Some(min), Some(max)) => histogram.quantile_linear_between_ms(q, min, max).ok(),
        _ => histogram.quantile_linear_ms(q).ok(),
    }
}

/// Each shard's sends span `(sent - 1) / rate` seconds from its start; the
/// merged rate is every send over the union of those spans.
fn achieved_rate_without_rows(shards: &[Shard], starts: &[f64]) -> f64 {
    let mut sent_total = 0;
    let mut first_ms = f64::INFINITY;
    let mut last_ms = f64::NEG_INFINITY;
    for (shard, start) in shards.iter().zip(starts) {
        let sent = shard.summary.total - shard.summary.dropped.unwrap_or(0);
        if sent == 0 {
            continue;
        }
        sent_total += sent;
        let span_ms = match shard.summary.achieved_rate_rps {
            Some(rate) if rate > 0.0 && sent >= 2 => (sent - 1) as f64 / rate * 1000.0,
            _ => 0.0,
        };
        first_ms = first_ms.min(*start);
        last_ms = last_ms.max(start + span_ms);
    }
    if sent_total >= 2 && last_ms > first_ms {
        (sent_total - 1) as f64 / ((last_ms - first_ms) / 1000.0)
    } else {
        0.0
    }
}

/// An objective on the merged numbers when some shard shipped no rows:
/// percentiles of e2e, TTFT, ITL and TPOT from their merged histograms,
/// the rest from the summary; what needs each request (goodput) has
/// nothing to measure.
pub(super) fn judge_without_rows(
    slo: &Slo,
    summary: &RunSummary,
    histogram: &LatencyHistogram,
    llm: Option<&LlmHistograms>,
) -> ObjectiveResult {
    let of = |numbers: &Percentiles, histogram: &LatencyHistogram, stat: Stat| match stat {
        Stat::Quantile(q) => (numbers.count > 0)
            .then(|| histogram_quantile_ms(histogram, q, numbers.min_ms, numbers.max_ms))
            .flatten(),
        Stat::Mean => numbers.mean_ms,
        Stat::Max => numbers.max_ms,
    };
    let series = |series: Series| {
        let numbers = summary.llm.as_ref()?;
        let histograms = llm?;
        Some(match series {
            Series::Ttft => (&numbers.ttft, &histograms.ttft),
            Series::Itl => (&numbers.itl, &histograms.itl),
            Series::Tpot => (&numbers.tpot, &histograms.tpot),
            Series::E2e => return None,
        })
    };
    let measured = match slo.metric {
        Metric::Latency(Series::E2e, Stat::Quantile(q)) => {
            histogram_quantile_ms(histogram, q, summary.min_ms, summary.max_ms)
        }
        Metric::Latency(Series::E2e, Stat::Mean) => summary.mean_ms,
        Metric::Latency(Series::E2e, Stat::Max) => summary.max_ms,
        Metric::Latency(s, stat) => series(s).and_then(|(numbers, h)| of(numbers, h, stat)),
        Metric::Goodput => None,
        Metric::ErrorRate => {
            (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
        }
        Metric::Throughput => (summary.duration_s > 0.0).then_some(summary.throughput_rps),
    };
    crate::slo::result(slo, measured)
}
