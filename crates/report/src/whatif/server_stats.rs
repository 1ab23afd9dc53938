//! Fitting a server whose responses carry no `Server-Timing` (NVIDIA
//! Triton) from its own statistics, as `loadgen --server-stats` records
//! them around a run (Triton's `/v2/models/{m}/stats`: executions and
//! their total time by executed batch size, queue time by request).
//!
//! Statistics are totals: they give each batch size's mean execution time
//! exactly but no spread, and nothing per request. So the rows are
//! annotated before the fit, differently by run:
//!
//! - A probe run sends one batch at a time, so nothing queues and each
//!   batch's latency is its execution plus the client's overhead. Its rows
//!   get `service_ms = latency - overhead`, where the overhead at batch
//!   size B is the run's mean latency at B less Triton's mean execution at
//!   B: the executions then average exactly what Triton measured, and keep
//!   the spread the client saw. `queue_ms` is 0.
//! - The Before queues, so its rows get Triton's mean execution at its
//!   batch size as `service_ms` and the rest of their latency, less the
//!   mean overhead, as `queue_ms`. Those executions tell the fit how many
//!   run at once and what the client's overhead is, but carry no spread:
//!   the cost line is then fitted to the probes alone
//!   ([`super::fit::fit_seeded_opts`] with `line_from_probes_only`).

use std::collections::BTreeMap;

use model::kserve::ModelStats;
use model::log::Log;

/// Mean execution time by executed batch size, ms, from the statistics.
fn mean_execution_ms(stats: &ModelStats) -> BTreeMap<u32, f64> {
    stats
        .batch_stats
        .iter()
        .filter(|b| b.compute_infer.count > 0)
        .filter_map(|b| {
            let size = u32::try_from(b.batch_size).ok()?;
            Some((
                size,
                b.compute_infer.ns as f64 / b.compute_infer.count as f64 / 1e6,
            ))
        })
        .collect()
}

/// Annotates a probe run's successful rows (one batch in flight at a
/// time); returns how many rows were annotated. Rows of a batch size the
/// statistics do not show are left as they were.
pub(super) fn annotate_probe(log: &mut Log, stats: &ModelStats) -> usize {
    let execution_ms = mean_execution_ms(stats);
    let mut latency_sum: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for row in log.rows.iter().filter(|r| r.ok) {
        let entry = latency_sum
            .entry(row.batch_size.unwrap_or(1).max(1))
            .or_insert((0.0, 0));
        entry.0 += row.latency_ms;
        entry.1 += 1;
    }
    let overhead_ms: BTreeMap<u32, f64> = latency_sum
        .iter()
        .filter_map(|(size, (sum, n))| {
            let mean_execution = execution_ms.get(size)?;
            Some((*size, (sum / *n as f64 - mean_execution).max(0.0)))
        })
        .collect();
    let mut annotated = 0;
    for row in log.rows.iter_mut().filter(|r| r.ok) {
        let size = row.batch_size.unwrap_or(1).max(1);
        let (Some(overhead), Some(mean_execution)) =
            (overhead_ms.get(&size), execution_ms.get(&size))
        else {
            continue;
        };
        // A row faster than the mean overhead would get a negative
        // execution; a hundredth of the mean keeps its log finite.
        row.service_ms = Some((row.latency_ms - overhead).max(mean_execution * 0.01));
        row.queue_ms = Some(0.0);
        annotated += 1;
    }
    annotated
}

/// Annotates the Before's successful rows (queueing allowed) with Triton's
/// mean execution at their batch size and, as queue, the rest of their
/// latency less the run's mean overhead; returns how many rows were
/// annotated.
pub(super) fn annotate_before(log: &mut Log, stats: &ModelStats) -> usize {
    let execution_ms = mean_execution_ms(stats);
    let queue = &stats.inference_stats.queue;
    let queue_mean_ms = (queue.count > 0).then(|| queue.ns as f64 / queue.count as f64 / 1e6);
    let ok: Vec<f64> = log
        .rows
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.latency_ms)
        .collect();
    if ok.is_empty() {
        return 0;
    }
    let latency_mean_ms = ok.iter().sum::<f64>() / ok.len() as f64;
    let mut annotated = 0;
    for row in log.rows.iter_mut().filter(|r| r.ok) {
        let Some(&service) = execution_ms.get(&row.batch_size.unwrap_or(1).max(1)) else {
            continue;
        };
        let overhead = (latency_mean_ms - queue_mean_ms.unwrap_or(0.0) - service).max(0.0);
        row.service_ms = Some(service);
        row.queue_ms = Some((row.latency_ms - service - overhead).max(0.0));
        annotated += 1;
    }
    annotated
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::kserve::{BatchStats, Duration, InferenceStats};
    use model::log::{LogFormat, LogRow};

    fn stats(batches: &[(u64, u64, u64)], queue: (u64, u64)) -> ModelStats {
        ModelStats {
            batch_stats: batches
                .iter()
                .map(|&(size, count, ns)| BatchStats {
                    batch_size: size,
                    compute_infer: Duration { count, ns },
                    ..BatchStats::default()
                })
                .collect(),
            inference_stats: InferenceStats {
                queue: Duration {
                    count: queue.0,
                    ns: queue.1,
                },
                ..InferenceStats::default()
            },
            ..ModelStats::default()
        }
    }

    fn row(id: u64, batch: u64, size: u32, latency_ms: f64) -> LogRow {
        LogRow {
            request_id: id,
            latency_ms,
            status_code: 200,
            ok: true,
            batch_id: Some(batch),
            batch_size: Some(size),
            ..LogRow::default()
        }
    }

    #[test]
    fn probe_rows_average_to_the_servers_execution_and_keep_their_spread() {
        // Batches of 2 at 110 and 130 ms, Triton's mean execution 118 ms:
        // overhead 2 ms; executions 108 and 128 (mean 118, spread kept).
        let mut log = Log {
            format: LogFormat::Loadgen,
            rows: vec![
                row(0, 0, 2, 110.0),
                row(1, 0, 2, 110.0),
                row(2, 1, 2, 130.0),
                row(3, 1, 2, 130.0),
            ],
        };
        let s = stats(&[(2, 2, 236_000_000)], (4, 0));
        assert_eq!(annotate_probe(&mut log, &s), 4);
        let service: Vec<f64> = log.rows.iter().map(|r| r.service_ms.unwrap()).collect();
        for (got, want) in service.iter().zip([108.0, 108.0, 128.0, 128.0]) {
            assert!((got - want).abs() < 1e-9, "{service:?}");
        }
        assert!(log.rows.iter().all(|r| r.queue_ms == Some(0.0)));
    }

    #[test]
    fn before_rows_get_the_mean_execution_and_their_queue() {
        // Mean execution 100 ms, mean queue 50 ms, latencies 101 and 201
        // (mean 151): overhead 1 ms; queues 0 and 100.
        let mut log = Log {
            format: LogFormat::Loadgen,
            rows: vec![row(0, 0, 1, 101.0), row(1, 1, 1, 201.0)],
        };
        let s = stats(&[(1, 2, 200_000_000)], (2, 100_000_000));
        assert_eq!(annotate_before(&mut log, &s), 2);
        assert_eq!(log.rows[0].service_ms, Some(100.0));
        assert!((log.rows[0].queue_ms.unwrap() - 0.0).abs() < 1e-9);
        assert!((log.rows[1].queue_ms.unwrap() - 100.0).abs() < 1e-9);
        // A batch size the statistics lack is left alone.
        let mut other = Log {
            format: LogFormat::Loadgen,
            rows: vec![row(0, 0, 4, 101.0)],
        };
        assert_eq!(annotate_before(&mut other, &s), 0);
        assert_eq!(other.rows[0].service_ms, None);
    }
}
