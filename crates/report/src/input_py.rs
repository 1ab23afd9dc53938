//! Reconciles the numbers `input.py` prints with ours from the same log.
//!
//! `input.py` prints percentiles from `statistics.quantiles(..., n=100)`, the
//! "exclusive" method (Hyndman-Fan 6), over rows with `status_code == 200`.
//! The report uses the Linear method (numpy's default) everywhere, so the two
//! differ slightly; recomputing with [`QuantileMethod::Exclusive`] over the
//! same rows shows the difference is the method and nothing else.
use model::log::LogRow;
use stats::QuantileMethod;

use crate::error::ReportError;
use crate::summary::{quantile_ms, REPORT_QUANTILE_METHOD};

/// How far (ms) our Exclusive numbers may be from the printed ones: the
/// script prints two decimals, so rounding alone accounts for 0.005 ms.
pub(crate) const INPUT_PY_TOLERANCE_MS: f64 = 0.01;

use model::comparison::{InputPyNumbers, InputPyReconciliation, LinearPercentiles};

/// Reads `Total requests`, `Succeeded`, `Failed` and `P50/P95/P99 latency`
/// lines; other lines (the log path, warnings) are ignored.
pub(crate) fn parse_input_py_stdout(text: &str) -> InputPyNumbers {
    let mut numbers = InputPyNumbers::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().trim_end_matches("ms").trim();
        match key.trim() {
            "Total requests" => numbers.total = value.parse().ok(),
            "Succeeded" => numbers.succeeded = value.parse().ok(),
            "Failed" => numbers.failed = value.parse().ok(),
            "P50 latency" => numbers.p50_ms = value.parse().ok(),
            "P95 latency" => numbers.p95_ms = value.parse().ok(),
            "P99 latency" => numbers.p99_ms = value.parse().ok(),
            _ => {}
        }
    }
    numbers
}

/// Recomputes `input.py`'s numbers from `rows` and compares them with `stdout`.
pub(crate) fn reconcile_input_py(
    stdout: &str,
    rows: &[LogRow],
) -> Result<InputPyReconciliation, ReportError> {
    let printed = parse_input_py_stdout(stdout);
    // input.py counts only status 200 as success (not any 2xx): mirror it.
    let mut ok: Vec<f64> = rows
        .iter()
        .filter(|r| r.status_code == 200)
        .map(|r| r.latency_ms)
        .collect();
    ok.sort_by(f64::total_cmp);
    // The script prints percentiles only with at least two samples.
    let enough = ok.len() >= 2;
    let pct = |q: f64, method: QuantileMethod| -> Result<Option<f64>, ReportError> {
        if enough {
            quantile_ms(&ok, q, method)
        } else {
            Ok(None)
        }
    };
    let recomputed_exclusive = InputPyNumbers {
        total: Some(rows.len() as u64),
        succeeded: Some(ok.len() as u64),
        failed: Some((rows.len() - ok.len()) as u64),
        p50_ms: pct(0.50, QuantileMethod::Exclusive)?,
        p95_ms: pct(0.95, QuantileMethod::Exclusive)?,
        p99_ms: pct(0.99, QuantileMethod::Exclusive)?,
    };
    let recomputed_linear = LinearPercentiles {
        p50_ms: pct(0.50, REPORT_QUANTILE_METHOD)?,
        p95_ms: pct(0.95, REPORT_QUANTILE_METHOD)?,
        p99_ms: pct(0.99, REPORT_QUANTILE_METHOD)?,
    };
    let mut mismatches = Vec::new();
    let counts = [
        ("Total requests", printed.total, recomputed_exclusive.total),
        (
            "Succeeded",
            printed.succeeded,
            recomputed_exclusive.succeeded,
        ),
        ("Failed", printed.failed, recomputed_exclusive.failed),
    ];
    for (name, shown, ours) in counts {
        match shown {
            None => mismatches.push(format!("input.py's stdout has no `{name}` line")),
            Some(v) if Some(v) != ours => mismatches.push(format!(
                "{name}: input.py printed {v}, the log has {}",
                ours.unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    let percentiles = [
        ("P50", printed.p50_ms, recomputed_exclusive.p50_ms),
        ("P95", printed.p95_ms, recomputed_exclusive.p95_ms),
        ("P99", printed.p99_ms, recomputed_exclusive.p99_ms),
    ];
    for (name, shown, ours) in percentiles {
        match (shown, ours) {
            (Some(v), Some(o)) if (v - o).abs() > INPUT_PY_TOLERANCE_MS => {
                mismatches.push(format!(
                    "{name}: input.py printed {v:.2} ms, the Exclusive method over its log gives {o:.3} ms"
                ));
            }
            (Some(v), None) => mismatches.push(format!(
                "{name}: input.py printed {v:.2} ms but its log has fewer than 2 status-200 rows"
            )),
            (None, Some(o)) => mismatches.push(format!(
                "{name}: input.py printed no value, the log gives {o:.3} ms"
            )),
            _ => {}
        }
    }
    Ok(InputPyReconciliation {
        printed,
        recomputed_exclusive,
        recomputed_linear,
        tolerance_ms: INPUT_PY_TOLERANCE_MS,
        matches: mismatches.is_empty(),
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDOUT: &str = "Total requests: 400\nSucceeded: 398\nFailed: 2\n\
        P50 latency: 1234.50 ms\nP95 latency: 2469.01 ms\nP99 latency: 2600.00 ms\n\
        Log written to latency_log.csv\n";

    #[test]
    fn parses_every_printed_number() {
        let n = parse_input_py_stdout(STDOUT);
        assert_eq!(
            (n.total, n.succeeded, n.failed),
            (Some(400), Some(398), Some(2))
        );
        assert_eq!(n.p50_ms, Some(1234.5));
        assert_eq!(n.p95_ms, Some(2469.01));
        assert_eq!(n.p99_ms, Some(2600.0));
    }

    #[test]
    fn too_few_successes_leaves_percentiles_empty() {
        let text = "Total requests: 3\nSucceeded: 1\nFailed: 2\n\
                    Not enough successful requests to compute percentiles\n";
        let n = parse_input_py_stdout(text);
        assert_eq!(n.succeeded, Some(1));
        assert_eq!((n.p50_ms, n.p95_ms, n.p99_ms), (None, None, None));
    }

    fn row(id: u64, lat: f64, status: u16) -> LogRow {
        LogRow {
            request_id: id,
            timestamp_ms: id as f64,
            latency_ms: lat,
            status_code: status,
            ok: status == 200,
            ..LogRow::default()
        }
    }

    #[test]
    fn exclusive_recomputation_matches_python() {
        // Python: statistics.quantiles([10, 20, ..., 200], n=100) (20 samples, m = 21):
        // P50: i=50, j = 1050 // 100 = 10, delta = 50 -> (x[9]*50 + x[10]*50)/100 = 105.0
        // P95: i=95, j = 1995 // 100 = 19, delta = 95 -> (190*5 + 200*95)/100 = 199.5
        let mut rows: Vec<LogRow> = (1..=20).map(|i| row(i, 10.0 * i as f64, 200)).collect();
        rows.push(row(21, 5000.0, 0));
        let stdout = "Total requests: 21\nSucceeded: 20\nFailed: 1\n\
                      P50 latency: 105.00 ms\nP95 latency: 199.50 ms\n";
        let r = reconcile_input_py(stdout, &rows).unwrap();
        assert!((r.recomputed_exclusive.p50_ms.unwrap() - 105.0).abs() < 1e-9);
        assert!((r.recomputed_exclusive.p95_ms.unwrap() - 199.5).abs() < 1e-9);
        // No P99 line printed but the log has one: reported, not hidden.
        assert!(!r.matches);
        assert_eq!(r.mismatches.len(), 1, "{:?}", r.mismatches);
        assert!(r.mismatches[0].starts_with("P99"));
        // Linear P95 over the same rows: h = 19 * 0.95 = 18.05 -> 190 + 0.05*10 = 190.5.
        assert!((r.recomputed_linear.p95_ms.unwrap() - 190.5).abs() < 1e-9);
    }

    #[test]
    fn a_wrong_printed_number_is_a_mismatch() {
        let rows: Vec<LogRow> = (1..=20).map(|i| row(i, 10.0 * i as f64, 200)).collect();
        let stdout = "Total requests: 20\nSucceeded: 20\nFailed: 0\n\
                      P50 latency: 105.00 ms\nP95 latency: 199.52 ms\n";
        let r = reconcile_input_py(stdout, &rows).unwrap();
        assert!(
            r.mismatches.iter().any(|m| m.starts_with("P95")),
            "{:?}",
            r.mismatches
        );
    }
}
