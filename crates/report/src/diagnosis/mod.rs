//! Findings computed from measured data only, each a sentence with its numbers.
//!
//! A finding appears only when the log has the columns it needs: an
//! `input.py` log (five columns) supports Little's law, drift and failure
//! findings; a `loadgen` log adds the queue/execution split (`Server-Timing`),
//! connection set-up, client overhead, client batch wait and the execution
//! floor. Nothing is estimated or assumed where a column is missing.

use std::collections::BTreeMap;

use model::comparison::{Finding, SideSummary};
use model::kserve::ModelStats;
use model::log::{Log, LogRow};

use crate::summary::{mean, quantile_ms, REPORT_QUANTILE_METHOD};

/// Fewest rows a drift estimate uses: below this, quarters are one or two
/// requests and the "trend" would be noise.
const MIN_ROWS_FOR_DRIFT: usize = 8;

/// One run to diagnose.
pub(crate) struct DiagnosisInput<'a> {
    /// `before`, `after` or `before_reproduction`.
    pub side: &'a str,
    /// The run's log.
    pub log: &'a Log,
    /// Its summary (label, P95, throughput).
    pub summary: &'a SideSummary,
    /// The concurrency the client was configured with, if the caller said.
    pub configured_concurrency: Option<f64>,
}

/// Every finding the run's columns support, in a fixed order.
pub(crate) fn diagnose(input: &DiagnosisInput<'_>) -> Vec<Finding> {
    let finders: [fn(&DiagnosisInput<'_>) -> Option<Finding>; 10] = [
        littles_law,
        latency_breakdown,
        server_parallelism,
        connection_setup,
        client_overhead,
        client_batch_wait,
        service_floor,
        llm_slot_wait,
        drift,
        failures,
    ];
    finders.iter().filter_map(|f| f(input)).collect()
}

fn finding(
    input: &DiagnosisInput<'_>,
    id: &str,
    sentence: String,
    values: &[(&str, f64)],
) -> Finding {
    Finding {
        id: id.to_owned(),
        side: input.side.to_owned(),
        finding: format!("{}: {sentence}", input.summary.label),
        values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    }
}

/// A first token this many decode steps late (at the median) is mostly
/// waiting, not prefill: a stream with a slot sees it after about one.
const SLOT_WAIT_STEPS: f64 = 3.0;

/// A streamed LLM run: its time to first token counted in decode steps
/// (the median gap between tokens). A stream that has a sequence slot sees
/// its first token after about one step plus its prompt's prefill, so a
/// first token many steps late was waiting for a slot.
fn llm_slot_wait(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let wait = crate::whatif::slot_wait(input.summary.llm.as_ref()?)?;
    let (p50_steps, p95_steps) = (wait.p50_steps(), wait.p95_steps());
    let sentence = if p50_steps >= SLOT_WAIT_STEPS {
        format!(
            "time to first token P50 {:.0} ms and P95 {:.0} ms are {p50_steps:.0} and {p95_steps:.0} decode steps (inter-token P50 {:.1} ms): a stream that has a slot sees its first token after about one step, so most of it was spent waiting for a sequence slot (more streams in flight than the server decodes at once)",
            wait.ttft_p50_ms, wait.ttft_p95_ms, wait.itl_p50_ms
        )
    } else {
        format!(
            "time to first token P50 {:.0} ms is {p50_steps:.1} decode steps (inter-token P50 {:.1} ms; P95 {:.0} ms, {p95_steps:.1} steps): streams got a slot without waiting",
            wait.ttft_p50_ms, wait.itl_p50_ms, wait.ttft_p95_ms
        )
    };
    Some(finding(
        input,
        "llm_slot_wait",
        sentence,
        &[
            ("ttft_p50_ms", wait.ttft_p50_ms),
            ("ttft_p95_ms", wait.ttft_p95_ms),
            ("itl_p50_ms", wait.itl_p50_ms),
            ("ttft_p50_steps", p50_steps),
            ("ttft_p95_steps", p95_steps),
        ],
    ))
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// Little's law over all rows: arrival rate x mean time in system = mean
/// requests in flight. Compared with the configured concurrency it shows
/// whether the client kept its slots busy (then latency is waiting, not pacing).
fn littles_law(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let rows = &input.log.rows;
    let duration_s = input.summary.duration_s.filter(|d| *d > 0.0)?;
    let arrival_rps = rows.len() as f64 / duration_s;
    let mean_latency_s = mean(&rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>())? / 1000.0;
    let in_flight = arrival_rps * mean_latency_s;
    let mut values = vec![
        ("arrival_rps", arrival_rps),
        ("mean_latency_s", mean_latency_s),
        ("mean_in_flight", in_flight),
    ];
    let sentence = match input.configured_concurrency {
        Some(c) if c > 0.0 => {
            let utilisation = pct(in_flight, c);
            values.push(("configured_concurrency", c));
            values.push(("in_flight_pct_of_concurrency", utilisation));
            let reading = if utilisation >= 90.0 {
                "the client kept its slots busy, so latency here is time spent waiting on the service, not client pacing"
            } else {
                "the client left slots idle part of the run (ramp-up, tail or its own overhead)"
            };
            format!(
                "Little's law: {arrival_rps:.2} requests/s x {mean_latency_s:.3} s mean latency = {in_flight:.1} requests in flight on average, {utilisation:.0}% of the configured concurrency {c}; {reading}."
            )
        }
        _ => format!(
            "Little's law: {arrival_rps:.2} requests/s x {mean_latency_s:.3} s mean latency = {in_flight:.1} requests in flight on average (no configured concurrency given to compare with)."
        ),
    };
    Some(finding(input, "littles_law", sentence, &values))
}

/// Successful rows that carry the server's queue and execution times.
fn timed_rows(log: &Log) -> Vec<(&LogRow, f64, f64)> {
    log.rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| Some((r, r.queue_ms?, r.service_ms?)))
        .collect()
}

/// Mean latency, queue, execution and other (latency - queue - execution).
fn split(rows: &[(&LogRow, f64, f64)]) -> Option<[f64; 4]> {
    let n = rows.len() as f64;
    if rows.is_empty() {
        return None;
    }
    let latency = rows.iter().map(|(r, _, _)| r.latency_ms).sum::<f64>() / n;
    let queue = rows.iter().map(|(_, q, _)| q).sum::<f64>() / n;
    let service = rows.iter().map(|(_, _, s)| s).sum::<f64>() / n;
    Some([latency, queue, service, latency - queue - service])
}

/// Where the time goes, on average and among the slowest 5%.
fn latency_breakdown(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let rows = timed_rows(input.log);
    let [lat, queue, service, other] = split(&rows)?;
    let mut latencies: Vec<f64> = rows.iter().map(|(r, _, _)| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let p95 = quantile_ms(&latencies, 0.95, REPORT_QUANTILE_METHOD).ok()??;
    let tail: Vec<_> = rows
        .iter()
        .copied()
        .filter(|(r, _, _)| r.latency_ms >= p95)
        .collect();
    let [t_lat, t_queue, t_service, t_other] = split(&tail)?;
    let sentence = format!(
        "of the mean latency {lat:.1} ms, {queue:.1} ms ({:.0}%) was queueing in the server, {service:.1} ms ({:.0}%) execution and {other:.1} ms ({:.0}%) client and network; among the slowest 5% (latency >= P95 {p95:.1} ms, mean {t_lat:.1} ms) it is {t_queue:.1} ms ({:.0}%) queueing, {t_service:.1} ms ({:.0}%) execution, {t_other:.1} ms ({:.0}%) other.",
        pct(queue, lat),
        pct(service, lat),
        pct(other, lat),
        pct(t_queue, t_lat),
        pct(t_service, t_lat),
        pct(t_other, t_lat),
    );
    Some(finding(
        input,
        "latency_breakdown",
        sentence,
        &[
            ("mean_latency_ms", lat),
            ("mean_queue_ms", queue),
            ("mean_service_ms", service),
            ("mean_other_ms", other),
            ("queue_pct", pct(queue, lat)),
            ("service_pct", pct(service, lat)),
            ("other_pct", pct(other, lat)),
            ("p95_ms", p95),
            ("tail_mean_latency_ms", t_lat),
            ("tail_queue_pct", pct(t_queue, t_lat)),
            ("tail_service_pct", pct(t_service, t_lat)),
            ("tail_other_pct", pct(t_other, t_lat)),
        ],
    ))
}

/// One entry per HTTP request the client sent: its client batch size and
/// the server's execution time. Rows of one client batch share a request.
fn executed_batches(log: &Log) -> Vec<(u32, f64)> {
    let mut seen = std::collections::HashSet::new();
    log.rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| {
            let service_ms = r.service_ms?;
            // A row without a batch id was its own HTTP request.
            let key = r.batch_id.map_or((false, r.request_id), |b| (true, b));
            seen.insert(key)
                .then_some((r.batch_size.unwrap_or(1).max(1), service_ms))
        })
        .collect()
}

/// Busy execution time per second of run: how many batches the server had
/// executing at once on average. Set against the requests in flight it shows
/// how deep the server's queue must have been.
fn server_parallelism(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let duration_s = input.summary.duration_s.filter(|d| *d > 0.0)?;
    let batches = executed_batches(input.log);
    if batches.is_empty() {
        return None;
    }
    let busy_s: f64 = batches.iter().map(|(_, ms)| ms / 1000.0).sum();
    let parallelism = busy_s / duration_s;
    let mut values = vec![
        ("executed_batches", batches.len() as f64),
        ("execution_busy_s", busy_s),
        ("mean_batches_executing", parallelism),
    ];
    let mut sentence = format!(
        "the server spent {busy_s:.1} s executing {} batches over a {duration_s:.1} s run, so it executed {parallelism:.2} batches at once on average",
        batches.len()
    );
    if let Some(c) = input.configured_concurrency.filter(|c| *c > parallelism) {
        let mean_batch =
            batches.iter().map(|(b, _)| f64::from(*b)).sum::<f64>() / batches.len() as f64;
        let waiting = c / mean_batch - parallelism;
        values.push(("http_requests_queued", waiting.max(0.0)));
        sentence.push_str(&format!(
            "; with {c} logical requests in flight in batches of {mean_batch:.1}, about {:.1} HTTP requests wait in its queue at any time",
            waiting.max(0.0)
        ));
    }
    sentence.push('.');
    Some(finding(input, "server_parallelism", sentence, &values))
}

/// The cost model read off the measurements of several runs: mean execution
/// time per client batch size, and the least-squares line through them
/// (fixed cost per batch + cost per input). Needs two batch sizes or more.
pub(crate) fn batch_cost(logs: &[&Log]) -> Option<Finding> {
    let mut by_size: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for log in logs {
        for (size, ms) in executed_batches(log) {
            let entry = by_size.entry(size).or_insert((0.0, 0));
            entry.0 += ms;
            entry.1 += 1;
        }
    }
    batch_cost_line(&by_size, "batch_cost", "Server-Timing, all runs")
}

/// The same line from the servers' own statistics (Triton's `batch_stats`:
/// executions and their time by executed batch size) of several runs.
pub(crate) fn batch_cost_from_stats(stats: &[&ModelStats]) -> Option<Finding> {
    let mut by_size: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for run in stats {
        for b in &run.batch_stats {
            let size = u32::try_from(b.batch_size).unwrap_or(u32::MAX);
            let entry = by_size.entry(size).or_insert((0.0, 0));
            entry.0 += b.compute_infer.ns as f64 / 1e6;
            entry.1 += usize::try_from(b.compute_infer.count).unwrap_or(usize::MAX);
        }
    }
    batch_cost_line(
        &by_size,
        "batch_cost_server_stats",
        "the server's own statistics, all runs",
    )
}

/// Mean execution per batch size and the least-squares line through the
/// means; `by_size` maps a batch size to (total ms, executions).
fn batch_cost_line(
    by_size: &BTreeMap<u32, (f64, usize)>,
    id: &str,
    source: &str,
) -> Option<Finding> {
    let by_size: BTreeMap<u32, (f64, usize)> = by_size
        .iter()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    if by_size.len() < 2 {
        return None;
    }
    let points: Vec<(f64, f64)> = by_size
        .iter()
        .map(|(size, (sum, n))| (f64::from(*size), sum / *n as f64))
        .collect();
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let per_item_ms = sxy / sxx;
    let fixed_ms = mean_y - per_item_ms * mean_x;
    let described: Vec<String> = by_size
        .iter()
        .map(|(size, (sum, count))| {
            format!(
                "{:.1} ms for batches of {size} ({count} measured)",
                sum / *count as f64
            )
        })
        .collect();
    let (smallest, largest) = (points[0], points[points.len() - 1]);
    let ratio = largest.1 / smallest.1;
    let sentence = format!(
        "Execution cost by batch size ({source}): {}. A least-squares line gives {fixed_ms:.1} ms fixed per batch + {per_item_ms:.2} ms per input: executing {} inputs together costs {ratio:.2}x executing {}, so batching amortises the fixed cost that dominates each request.",
        described.join(", "),
        largest.0,
        smallest.0,
    );
    let mut values: BTreeMap<String, f64> = [
        ("fixed_ms".to_owned(), fixed_ms),
        ("per_item_ms".to_owned(), per_item_ms),
        ("largest_over_smallest".to_owned(), ratio),
    ]
    .into_iter()
    .collect();
    for (size, mean_ms) in &points {
        values.insert(format!("mean_service_ms_batch_{size}"), *mean_ms);
    }
    Some(Finding {
        id: id.to_owned(),
        side: "runs".to_owned(),
        finding: sentence,
        values,
    })
}

/// What the server's own statistics say of one run (the difference of
/// Triton's `/stats` before and after it): requests, items and executions,
/// queue and compute per request against the client's mean latency, and how
/// many executions ran at once.
pub(crate) fn server_statistics(
    side: &str,
    summary: &SideSummary,
    stats: &ModelStats,
) -> Option<Finding> {
    let s = &stats.inference_stats;
    let requests = s.success.count;
    if requests == 0 {
        return None;
    }
    let per_request = |d: model::kserve::Duration| d.ns as f64 / 1e6 / d.count.max(1) as f64;
    let queue_ms = per_request(s.queue);
    let input_ms = per_request(s.compute_input);
    let infer_ms = per_request(s.compute_infer);
    let output_ms = per_request(s.compute_output);
    let compute_ms = input_ms + infer_ms + output_ms;
    let server_ms = per_request(s.success);
    let executions = stats.execution_count;
    let items = stats.inference_count;
    let mean_executed_batch = items as f64 / executions.max(1) as f64;
    let busy_s: f64 = stats
        .batch_stats
        .iter()
        .map(|b| b.compute_infer.ns as f64 / 1e9)
        .sum();
    let mut values = vec![
        ("requests", requests as f64),
        ("items", items as f64),
        ("executions", executions as f64),
        ("mean_executed_batch", mean_executed_batch),
        ("queue_ms_per_request", queue_ms),
        ("compute_input_ms_per_request", input_ms),
        ("compute_infer_ms_per_request", infer_ms),
        ("compute_output_ms_per_request", output_ms),
        ("server_ms_per_request", server_ms),
        ("failed_requests", s.fail.count as f64),
    ];
    let mut sentence = format!(
        "the server's own statistics for this run: {requests} requests of {items} items in {executions} executions (mean executed batch {mean_executed_batch:.2}); per request {queue_ms:.1} ms queueing and {compute_ms:.1} ms compute (input {input_ms:.2}, infer {infer_ms:.1}, output {output_ms:.2} ms), {server_ms:.1} ms in the server in all"
    );
    if let Some(client_ms) = summary.mean_ms.filter(|m| *m > 0.0) {
        values.push(("queue_pct_of_client_mean", pct(queue_ms, client_ms)));
        sentence.push_str(&format!(
            "; queueing is {:.0}% of the client's mean latency of {client_ms:.1} ms",
            pct(queue_ms, client_ms)
        ));
    }
    if let Some(duration_s) = summary.duration_s.filter(|d| *d > 0.0 && busy_s > 0.0) {
        let parallelism = busy_s / duration_s;
        values.push(("mean_executions_running", parallelism));
        sentence.push_str(&format!(
            "; {busy_s:.1} s of execution in a {duration_s:.1} s run: {parallelism:.2} executions at once on average"
        ));
    }
    sentence.push('.');
    Some(Finding {
        id: "server_statistics".to_owned(),
        side: side.to_owned(),
        finding: format!("{}: {sentence}", summary.label),
        values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}

/// Share of latency spent opening connections (a new one per request is
/// `input.py`'s habit; a pool opens a handful).
fn connection_setup(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let rows: Vec<(f64, f64)> = input
        .log
        .rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| Some((r.connect_ms?, r.latency_ms)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    let connect = rows.iter().map(|(c, _)| c).sum::<f64>() / n;
    let latency = rows.iter().map(|(_, l)| l).sum::<f64>() / n;
    let opened = rows.iter().filter(|(c, _)| *c > 0.0).count() as f64;
    let share = pct(connect, latency);
    let sentence = format!(
        "{opened:.0} of {n:.0} successful requests opened a new connection; set-up averaged {connect:.2} ms per request, {share:.2}% of the mean latency {latency:.1} ms."
    );
    Some(finding(
        input,
        "connection_setup",
        sentence,
        &[
            ("requests", n),
            ("new_connections", opened),
            ("mean_connect_ms", connect),
            ("mean_latency_ms", latency),
            ("connect_pct_of_latency", share),
        ],
    ))
}

fn is_batched(row: &LogRow) -> bool {
    row.batch_size.is_some_and(|b| b > 1)
}

/// Time outside the server (latency - queue - execution) for unbatched rows.
fn client_overhead(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let rows: Vec<_> = timed_rows(input.log)
        .into_iter()
        .filter(|(r, _, _)| !is_batched(r))
        .collect();
    let [lat, _, _, other] = split(&rows)?;
    let mut others: Vec<f64> = rows.iter().map(|(r, q, s)| r.latency_ms - q - s).collect();
    others.sort_by(f64::total_cmp);
    let p95 = quantile_ms(&others, 0.95, REPORT_QUANTILE_METHOD).ok()??;
    let connect = mean(
        &rows
            .iter()
            .filter_map(|(r, _, _)| r.connect_ms)
            .collect::<Vec<_>>(),
    );
    let of_which = connect.map_or(String::new(), |c| {
        format!(", of which {c:.2} ms connection set-up")
    });
    let sentence = format!(
        "client-side and network overhead (latency - queue - execution) averaged {other:.2} ms per unbatched request ({:.1}% of its mean latency {lat:.1} ms){of_which}; its P95 is {p95:.2} ms.",
        pct(other, lat)
    );
    let mut values = vec![
        ("requests", rows.len() as f64),
        ("mean_overhead_ms", other),
        ("p95_overhead_ms", p95),
        ("overhead_pct_of_latency", pct(other, lat)),
    ];
    if let Some(c) = connect {
        values.push(("mean_connect_ms", c));
    }
    Some(finding(input, "client_overhead", sentence, &values))
}

/// For client-batched rows, latency - queue - execution is mostly the wait
/// for the batch to fill: the price of batching, counted, not hidden.
fn client_batch_wait(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let rows: Vec<_> = timed_rows(input.log)
        .into_iter()
        .filter(|(r, _, _)| is_batched(r))
        .collect();
    let [lat, _, _, wait] = split(&rows)?;
    let mut waits: Vec<f64> = rows.iter().map(|(r, q, s)| r.latency_ms - q - s).collect();
    waits.sort_by(f64::total_cmp);
    let p95 = quantile_ms(&waits, 0.95, REPORT_QUANTILE_METHOD).ok()??;
    let batch = rows
        .iter()
        .filter_map(|(r, _, _)| r.batch_size)
        .map(f64::from)
        .sum::<f64>()
        / rows.len() as f64;
    let sentence = format!(
        "{} requests went out in client batches (mean {batch:.1} requests per batch); each spent {wait:.1} ms on average outside the server (P95 {p95:.1} ms), waiting for its batch to fill plus transfer, {:.0}% of their mean latency {lat:.1} ms.",
        rows.len(),
        pct(wait, lat)
    );
    Some(finding(
        input,
        "client_batch_wait",
        sentence,
        &[
            ("batched_requests", rows.len() as f64),
            ("mean_batch_size", batch),
            ("mean_batch_wait_ms", wait),
            ("p95_batch_wait_ms", p95),
            ("batch_wait_pct_of_latency", pct(wait, lat)),
        ],
    ))
}

/// The P95 of execution time alone is the floor no client change can go
/// below; the run's P95 over it shows how much queueing is left.
fn service_floor(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let mut service: Vec<f64> = input
        .log
        .rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.service_ms)
        .collect();
    service.sort_by(f64::total_cmp);
    let floor = quantile_ms(&service, 0.95, REPORT_QUANTILE_METHOD).ok()??;
    let p95 = input.summary.p95_ms?;
    if floor <= 0.0 {
        return None;
    }
    let ratio = p95 / floor;
    let median = quantile_ms(&service, 0.5, REPORT_QUANTILE_METHOD)
        .ok()??
        .max(f64::MIN_POSITIVE);
    let over_median = p95 / median;
    let sentence = format!(
        "the P95 of server execution time alone (service_ms) is {floor:.1} ms, the floor for this request shape; the run's P95 of {p95:.1} ms is {ratio:.2}x that floor, so {:.1} ms of the P95 is spent outside execution (queueing, batching, network). Against the median execution time ({median:.1} ms, the service's own jitter removed) the P95 is {over_median:.2}x.",
        p95 - floor
    );
    Some(finding(
        input,
        "service_floor",
        sentence,
        &[
            ("p95_service_ms", floor),
            ("p95_ms", p95),
            ("p95_over_floor", ratio),
            ("p95_above_floor_ms", p95 - floor),
            ("p50_service_ms", median),
            ("p95_over_median_service", over_median),
        ],
    ))
}

/// First vs last quarter of the run (by start time) and a least-squares
/// trend: a warming cache or a growing queue shows here.
fn drift(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let mut rows: Vec<&LogRow> = input.log.rows.iter().filter(|r| r.ok).collect();
    if rows.len() < MIN_ROWS_FOR_DRIFT {
        return None;
    }
    rows.sort_by(|a, b| a.timestamp_ms.total_cmp(&b.timestamp_ms));
    let quarter = rows.len() / 4;
    let latencies: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
    let first = mean(&latencies[..quarter])?;
    let last = mean(&latencies[latencies.len() - quarter..])?;
    let slope_per_100 = least_squares_slope(&latencies)? * 100.0;
    let change = pct(last - first, first);
    let sentence = format!(
        "mean latency was {first:.1} ms over the first quarter of requests (by start time) and {last:.1} ms over the last ({change:+.0}%); the linear trend is {slope_per_100:+.1} ms per 100 requests."
    );
    Some(finding(
        input,
        "drift",
        sentence,
        &[
            ("first_quarter_mean_ms", first),
            ("last_quarter_mean_ms", last),
            ("change_pct", change),
            ("trend_ms_per_100_requests", slope_per_100),
        ],
    ))
}

/// Slope of `y` against its index (0, 1, 2, ...), by least squares.
fn least_squares_slope(y: &[f64]) -> Option<f64> {
    let n = y.len() as f64;
    if y.len() < 2 {
        return None;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    Some(sxy / sxx)
}

/// How many requests failed and why (the most frequent error kinds).
fn failures(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for r in input.log.rows.iter().filter(|r| !r.ok) {
        let kind = if r.error.is_empty() {
            format!("HTTP {}", r.status_code)
        } else {
            // Long exception texts would swamp the sentence; the kind is enough.
            r.error.chars().take(80).collect()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    if kinds.is_empty() {
        return None;
    }
    let failed = input.summary.failed as f64;
    let mut ranked: Vec<(String, u64)> = kinds.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top: Vec<String> = ranked
        .iter()
        .take(3)
        .map(|(kind, n)| format!("{n} x {kind:?}"))
        .collect();
    let sentence = format!(
        "{failed:.0} of {} requests failed ({:.1}%): {}{}.",
        input.summary.total,
        pct(failed, input.summary.total as f64),
        top.join(", "),
        if ranked.len() > 3 { ", ..." } else { "" }
    );
    Some(finding(
        input,
        "failures",
        sentence,
        &[
            ("failed", failed),
            ("failed_pct", pct(failed, input.summary.total as f64)),
            ("error_kinds", ranked.len() as f64),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::log::LogFormat;

    fn rich(id: u64, lat: f64, queue: f64, service: f64, batch: u32) -> LogRow {
        LogRow {
            request_id: id,
            timestamp_ms: id as f64 * 10.0,
            latency_ms: lat,
            status_code: 200,
            ok: true,
            batch_size: Some(batch),
            connect_ms: Some(if id == 0 { 2.0 } else { 0.0 }),
            queue_ms: Some(queue),
            service_ms: Some(service),
            ..LogRow::default()
        }
    }

    fn run(log: &Log, concurrency: Option<f64>) -> Vec<Finding> {
        let summary = crate::summary::summary_of_log("After", None, log).unwrap();
        diagnose(&DiagnosisInput {
            side: "after",
            log,
            summary: &summary,
            configured_concurrency: concurrency,
        })
    }

    fn batched(id: u64, batch: u64, size: u32, service: f64) -> LogRow {
        LogRow {
            batch_id: Some(batch),
            ..rich(id, service + 1.0, 0.0, service, size)
        }
    }

    fn stats_run(batches: &[(u64, u64, f64)], queue_ms: f64) -> ModelStats {
        use model::kserve::{BatchStats, Duration, InferenceStats};
        let executions: u64 = batches.iter().map(|b| b.1).sum();
        let items: u64 = batches.iter().map(|b| b.0 * b.1).sum();
        let ns = |ms: f64| (ms * 1e6) as u64;
        let infer_ns: u64 = batches.iter().map(|&(_, n, ms)| n * ns(ms)).sum();
        ModelStats {
            name: "m".into(),
            version: "1".into(),
            inference_count: items,
            execution_count: executions,
            inference_stats: InferenceStats {
                success: Duration {
                    count: executions,
                    ns: executions * ns(queue_ms) + infer_ns,
                },
                queue: Duration {
                    count: executions,
                    ns: executions * ns(queue_ms),
                },
                compute_infer: Duration {
                    count: executions,
                    ns: infer_ns,
                },
                ..InferenceStats::default()
            },
            batch_stats: batches
                .iter()
                .map(|&(size, n, ms)| BatchStats {
                    batch_size: size,
                    compute_infer: Duration {
                        count: n,
                        ns: n * ns(ms),
                    },
                    ..BatchStats::default()
                })
                .collect(),
        }
    }

    #[test]
    fn server_statistics_give_queueing_parallelism_and_the_cost_line() {
        // 10 requests of one item, each queued 900 ms and run 102 ms: the
        // numbers are hand-worked.
        let log = Log {
            format: LogFormat::Loadgen,
            rows: (0..10).map(|i| rich(i, 1000.0, 900.0, 100.0, 1)).collect(),
        };
        let summary = crate::summary::summary_of_log("Before", None, &log).unwrap();
        let before = stats_run(&[(1, 10, 102.0)], 900.0);
        let f = server_statistics("before", &summary, &before).unwrap();
        assert_eq!(f.id, "server_statistics");
        assert_eq!(f.values["requests"], 10.0);
        assert_eq!(f.values["mean_executed_batch"], 1.0);
        assert!((f.values["queue_ms_per_request"] - 900.0).abs() < 1e-9);
        assert!((f.values["compute_infer_ms_per_request"] - 102.0).abs() < 1e-9);
        assert!((f.values["queue_pct_of_client_mean"] - 90.0).abs() < 1e-9);
        let duration_s = summary.duration_s.unwrap();
        assert!((f.values["mean_executions_running"] - 1.02 / duration_s).abs() < 1e-9);
        // Base 100 ms + 2 ms per item, measured at batch sizes 1, 5 and 10.
        let after = stats_run(&[(5, 2, 110.0), (10, 1, 120.0)], 0.0);
        let line = batch_cost_from_stats(&[&before, &after]).unwrap();
        assert_eq!(line.id, "batch_cost_server_stats");
        assert!((line.values["fixed_ms"] - 100.0).abs() < 1e-6, "{line:?}");
        assert!((line.values["per_item_ms"] - 2.0).abs() < 1e-6, "{line:?}");
        assert!(
            batch_cost_from_stats(&[&before]).is_none(),
            "one size is no line"
        );
    }

    #[test]
    fn batch_cost_fits_fixed_and_per_item_cost_across_runs() {
        // Batches of 1 took 102 and 104 ms (mean 103); one batch of 4 (four
        // rows, counted once) took 109 ms. Line through (1, 103) and (4, 109):
        // per item (109 - 103) / 3 = 2 ms, fixed 103 - 2 = 101 ms; 109 / 103.
        let singles = Log {
            format: LogFormat::Loadgen,
            rows: vec![rich(0, 110.0, 5.0, 102.0, 1), rich(1, 110.0, 5.0, 104.0, 1)],
        };
        let quad = Log {
            format: LogFormat::Loadgen,
            rows: (0..4).map(|i| batched(i, 7, 4, 109.0)).collect(),
        };
        let f = batch_cost(&[&singles, &quad]).unwrap();
        assert!((f.values["per_item_ms"] - 2.0).abs() < 1e-9);
        assert!((f.values["fixed_ms"] - 101.0).abs() < 1e-9);
        assert!((f.values["largest_over_smallest"] - 109.0 / 103.0).abs() < 1e-12);
        assert!(
            f.finding.contains("109.0 ms for batches of 4 (1 measured)"),
            "{}",
            f.finding
        );
        assert!(
            batch_cost(&[&singles]).is_none(),
            "one batch size fits no line"
        );
    }

    #[test]
    fn server_parallelism_is_busy_time_over_duration() {
        // Rows start at 0, 10, 20 ms and take 100 ms: the run spans 0..120 ms.
        // Three single batches of 100 ms executed = 0.3 s busy / 0.12 s = 2.5
        // at once; with 20 in flight in batches of 1, 17.5 wait in the queue.
        let log = Log {
            format: LogFormat::Loadgen,
            rows: (0..3).map(|i| rich(i, 100.0, 0.0, 100.0, 1)).collect(),
        };
        let findings = run(&log, Some(20.0));
        let f = findings
            .iter()
            .find(|f| f.id == "server_parallelism")
            .unwrap();
        assert!((f.values["mean_batches_executing"] - 2.5).abs() < 1e-9);
        assert!((f.values["http_requests_queued"] - 17.5).abs() < 1e-9);
    }

    #[test]
    fn input_py_logs_get_only_the_findings_their_columns_support() {
        let rows = (0..10)
            .map(|i| LogRow {
                request_id: i,
                timestamp_ms: i as f64 * 100.0,
                latency_ms: 100.0,
                status_code: 200,
                ok: true,
                ..LogRow::default()
            })
            .collect();
        let log = Log {
            format: LogFormat::InputPy,
            rows,
        };
        let ids: Vec<String> = run(&log, Some(1.0)).into_iter().map(|f| f.id).collect();
        assert_eq!(ids, ["littles_law", "drift"]);
    }

    #[test]
    fn littles_law_and_breakdown_numbers() {
        // 8 unbatched rows, one every 10 ms, each 100 ms = 20 queue + 70 service + 10 other.
        // Duration = (70 + 100 - 0) / 1000 = 0.17 s; arrival 8 / 0.17 rps; W = 0.1 s;
        // in flight = 8 / 0.17 * 0.1 = 4.70588...
        let rows = (0..8).map(|i| rich(i, 100.0, 20.0, 70.0, 1)).collect();
        let log = Log {
            format: LogFormat::Loadgen,
            rows,
        };
        let found = run(&log, Some(4.0));
        let little = found.iter().find(|f| f.id == "littles_law").unwrap();
        assert!((little.values["mean_in_flight"] - 8.0 / 0.17 * 0.1).abs() < 1e-9);
        let split = found.iter().find(|f| f.id == "latency_breakdown").unwrap();
        assert!((split.values["queue_pct"] - 20.0).abs() < 1e-9);
        assert!((split.values["service_pct"] - 70.0).abs() < 1e-9);
        assert!((split.values["other_pct"] - 10.0).abs() < 1e-9);
        let overhead = found.iter().find(|f| f.id == "client_overhead").unwrap();
        assert!((overhead.values["mean_overhead_ms"] - 10.0).abs() < 1e-9);
        let floor = found.iter().find(|f| f.id == "service_floor").unwrap();
        assert!((floor.values["p95_over_floor"] - 100.0 / 70.0).abs() < 1e-9);
        let connect = found.iter().find(|f| f.id == "connection_setup").unwrap();
        assert_eq!(connect.values["new_connections"], 1.0);
        assert!(!found.iter().any(|f| f.id == "client_batch_wait"));
        assert!(
            little.finding.contains("4.7 requests in flight"),
            "{}",
            little.finding
        );
    }

    #[test]
    fn batched_rows_report_their_wait_and_drift_is_measured() {
        // Latency rises 10 ms per request: 100, 110, ..., 170; queue 0, service 60, batch 4.
        // Wait = latency - 60: mean (40 + ... + 110) / 8 = 75. Slope 10 ms/request = 1000 per 100.
        // First quarter (2 rows): mean 105; last: mean 165.
        let rows = (0..8)
            .map(|i| rich(i, 100.0 + 10.0 * i as f64, 0.0, 60.0, 4))
            .collect();
        let log = Log {
            format: LogFormat::Loadgen,
            rows,
        };
        let found = run(&log, None);
        let wait = found.iter().find(|f| f.id == "client_batch_wait").unwrap();
        assert!((wait.values["mean_batch_wait_ms"] - 75.0).abs() < 1e-9);
        assert_eq!(wait.values["mean_batch_size"], 4.0);
        assert!(!found.iter().any(|f| f.id == "client_overhead"));
        let drift = found.iter().find(|f| f.id == "drift").unwrap();
        assert!((drift.values["trend_ms_per_100_requests"] - 1000.0).abs() < 1e-9);
        assert_eq!(drift.values["first_quarter_mean_ms"], 105.0);
        assert_eq!(drift.values["last_quarter_mean_ms"], 165.0);
    }
}
