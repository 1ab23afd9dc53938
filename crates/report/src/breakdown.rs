//! Where the time goes: each successful request's latency split into the
//! client's wait for its batch, connection set-up (TCP and TLS), the
//! server's queue, execution, and the rest (transfer and the client's own
//! work), averaged over all requests and over the slowest 5%.
//!
//! Only rows that carry the server's `Server-Timing` can be split; an
//! `input.py` log cannot, and gets no breakdown (its reproduction does).
//! The batch wait is a lower bound: a batch cannot leave before its last
//! member arrived, so each row waited at least from its own start to the
//! latest start in its batch; anything beyond lands in "transfer and
//! client".

use std::collections::HashMap;

use model::comparison::{Breakdown, Parts};
use model::log::{Log, LogRow};

use crate::summary::{quantile_ms, REPORT_QUANTILE_METHOD};

/// Splits one row; `batch_last_start_ms` is the latest start among the rows
/// of its batch.
fn split_row(row: &LogRow, batch_last_start_ms: f64) -> Option<Parts> {
    let queue_ms = row.queue_ms?;
    let execution_ms = row.service_ms?;
    let connect_ms = row.connect_ms.unwrap_or(0.0) + row.tls_ms.unwrap_or(0.0);
    let batch_wait_ms = (batch_last_start_ms - row.timestamp_ms).max(0.0);
    let transfer_ms =
        (row.latency_ms - batch_wait_ms - connect_ms - queue_ms - execution_ms).max(0.0);
    Some(Parts {
        batch_wait_ms,
        connect_ms,
        queue_ms,
        execution_ms,
        transfer_ms,
    })
}

/// The breakdown of a run's successful rows, if they carry server timings.
pub(crate) fn breakdown(label: &str, log: &Log) -> Option<Breakdown> {
    let ok: Vec<&LogRow> = log.rows.iter().filter(|r| r.ok).collect();
    let mut last_start: HashMap<u64, f64> = HashMap::new();
    for row in &ok {
        if let Some(batch) = row.batch_id {
            let latest = last_start.entry(batch).or_insert(row.timestamp_ms);
            *latest = latest.max(row.timestamp_ms);
        }
    }
    let split: Vec<(f64, Parts)> = ok
        .iter()
        .filter_map(|row| {
            let last = row
                .batch_id
                .and_then(|b| last_start.get(&b).copied())
                .unwrap_or(row.timestamp_ms);
            Some((row.latency_ms, split_row(row, last)?))
        })
        .collect();
    let mut latencies: Vec<f64> = split.iter().map(|(l, _)| *l).collect();
    latencies.sort_by(f64::total_cmp);
    let p95_ms = quantile_ms(&latencies, 0.95, REPORT_QUANTILE_METHOD).ok()??;
    let all: Vec<Parts> = split.iter().map(|(_, p)| *p).collect();
    let tail: Vec<Parts> = split
        .iter()
        .filter(|(l, _)| *l >= p95_ms)
        .map(|(_, p)| *p)
        .collect();
    Some(Breakdown {
        label: label.to_owned(),
        rows: all.len(),
        mean: Parts::mean(&all)?,
        p95_ms,
        tail: Parts::mean(&tail)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, start: f64, latency: f64, batch: u64, connect: f64) -> LogRow {
        LogRow {
            request_id: id,
            timestamp_ms: start,
            latency_ms: latency,
            status_code: 200,
            ok: true,
            batch_id: Some(batch),
            batch_size: Some(2),
            connect_ms: Some(connect),
            queue_ms: Some(10.0),
            service_ms: Some(50.0),
            ..LogRow::default()
        }
    }

    #[test]
    fn parts_add_up_to_the_latency_and_the_batch_wait_is_to_the_last_member() {
        // Batch 0: starts at 0 and 4 ms; the first waited 4 ms for the second.
        // Latencies 70 and 66: 4 + 1 + 10 + 50 + 5 and 0 + 1 + 10 + 50 + 5.
        let log = Log {
            format: model::log::LogFormat::Loadgen,
            rows: vec![row(0, 0.0, 70.0, 0, 1.0), row(1, 4.0, 66.0, 0, 1.0)],
        };
        let b = breakdown("After", &log).unwrap();
        assert_eq!(b.rows, 2);
        assert!((b.mean.batch_wait_ms - 2.0).abs() < 1e-12);
        assert!((b.mean.connect_ms - 1.0).abs() < 1e-12);
        assert!((b.mean.queue_ms - 10.0).abs() < 1e-12);
        assert!((b.mean.execution_ms - 50.0).abs() < 1e-12);
        assert!((b.mean.transfer_ms - 5.0).abs() < 1e-12);
        assert!((b.mean.total_ms() - 68.0).abs() < 1e-12);
        // Linear P95 of [66, 70] is 69.8: the tail is the 70 ms row alone.
        assert!((b.p95_ms - 69.8).abs() < 1e-9);
        assert!((b.tail.batch_wait_ms - 4.0).abs() < 1e-12);
        assert_eq!(b.table_rows()[0][1], "2.0 (3%)");
    }

    #[test]
    fn rows_without_server_timing_have_no_breakdown() {
        let mut r = row(0, 0.0, 70.0, 0, 1.0);
        r.service_ms = None;
        let log = Log {
            format: model::log::LogFormat::InputPy,
            rows: vec![r],
        };
        assert_eq!(breakdown("Before", &log), None);
    }
}
