//! One side's numbers ([`SideSummary`], `model::comparison`), computed
//! exactly from a log's rows.
//!
//! Definitions, so that a reader can re-derive every number from the CSV:
//!
//! - `total` is the number of rows, `succeeded` the rows with `ok` (for an
//!   `input.py` log, `ok` is 2xx with an empty `error`), `failed` the rest.
//! - `p50_ms`, `p95_ms`, `p99_ms`, `mean_ms`, `min_ms`, `max_ms` are over the
//!   latencies of *successful* rows only; percentiles use
//!   [`QuantileMethod::Linear`] (Hyndman-Fan 7, numpy's default). They are
//!   `null` when no row succeeded: there is nothing to measure, and a zero
//!   would read as "instant".
//! - `duration_s` is the wall-clock span of the run over *all* rows:
//!   `(max(timestamp_ms + latency_ms) - min(timestamp_ms)) / 1000`, from the
//!   first request's start to the last response. `null` for an empty log.
//! - `throughput_rps` is `succeeded / duration_s` (successful requests per
//!   second); `null` when the duration is zero or unknown.
//! - `goodput_rps` is the successful requests that met every per-request
//!   objective (see [`crate::slo`]) per second of `duration_s`; present
//!   when the comparison judged objectives.
//! - Warm-up rows (`phase` = `warmup`) are in none of these numbers:
//!   `model::log::read_log` leaves them out, and so does
//!   [`summary_of_rows`] for rows built otherwise.
//! - `llm`, for logs with the LLM columns: percentiles of TTFT, TPOT and
//!   e2e over successful rows, of ITL over every gap of successful rows,
//!   and output tokens per second (the successful rows' tokens over
//!   `duration_s`).

use model::comparison::SideSummary;
use model::log::{Log, LogFormat, LogRow, Phase, TokensFrom};
use model::summary::{LlmSummary, Percentiles};
use stats::QuantileMethod;

use crate::error::ReportError;

/// The method every percentile in `comparison.json` uses (numpy's default).
pub(crate) const REPORT_QUANTILE_METHOD: QuantileMethod = QuantileMethod::Linear;

/// The percentiles of `samples` (any order), exact: numpy's linear method
/// over every value.
pub(crate) fn percentiles_of(mut samples: Vec<f64>) -> Result<Percentiles, ReportError> {
    samples.sort_by(f64::total_cmp);
    let q = |p| quantile_ms(&samples, p, REPORT_QUANTILE_METHOD);
    Ok(Percentiles {
        count: samples.len() as u64,
        p50_ms: q(0.50)?,
        p90_ms: q(0.90)?,
        p95_ms: q(0.95)?,
        p99_ms: q(0.99)?,
        mean_ms: mean(&samples),
        min_ms: samples.first().copied(),
        max_ms: samples.last().copied(),
        quantiles_exact: true,
        quantile_error: None,
    })
}

/// The LLM numbers of `rows` over a run of `duration_s`, if any row has
/// LLM timing: percentiles of TTFT, TPOT and e2e over successful rows, of
/// ITL over every gap of successful rows (no histograms: the rows are
/// there).
pub(crate) fn llm_summary(
    rows: &[LogRow],
    duration_s: Option<f64>,
) -> Result<Option<LlmSummary>, ReportError> {
    if rows.iter().all(|r| r.llm.is_none()) {
        return Ok(None);
    }
    let ok = || rows.iter().filter(|r| r.ok);
    let timings = || ok().filter_map(|r| r.llm.as_ref());
    let output_tokens = timings().filter_map(|t| t.output_tokens).sum();
    let usage = timings()
        .filter(|t| t.tokens_from == Some(TokensFrom::Usage))
        .count();
    let counted = timings()
        .filter(|t| t.tokens_from == Some(TokensFrom::Counted))
        .count();
    let tokens_from = match (usage, counted) {
        (0, 0) => "none",
        (_, 0) => "usage",
        (0, _) => "counted",
        _ => "mixed",
    };
    Ok(Some(LlmSummary {
        ttft: percentiles_of(timings().filter_map(|t| t.ttft_ms).collect())?,
        itl: percentiles_of(timings().flat_map(|t| t.itl_ms.iter().copied()).collect())?,
        tpot: percentiles_of(timings().filter_map(|t| t.tpot_ms).collect())?,
        e2e: percentiles_of(ok().map(|r| r.latency_ms).collect())?,
        output_tokens,
        tokens_from: tokens_from.to_owned(),
        output_tokens_per_s: duration_s
            .filter(|d| *d > 0.0)
            .map(|d| output_tokens as f64 / d),
        ttft_histogram: None,
        itl_histogram: None,
        tpot_histogram: None,
        // The log has no write stamps to measure against.
        client_delay: None,
        server_itl: None,
    }))
}

/// The name `SideSummary::source` gives a log format.
pub(crate) fn source_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::InputPy => "input.py",
        LogFormat::Loadgen => "loadgen",
    }
}

/// Summarises a whole log read from `log_file` (if any).
pub fn summary_of_log(
    label: &str,
    log_file: Option<&str>,
    log: &Log,
) -> Result<SideSummary, ReportError> {
    let mut summary = summary_of_rows(label, source_name(log.format), &log.rows)?;
    summary.log_file = log_file.map(str::to_owned);
    Ok(summary)
}

/// Summarises rows; `source` names the tool that wrote them.
pub fn summary_of_rows(
    label: &str,
    source: &str,
    rows: &[LogRow],
) -> Result<SideSummary, ReportError> {
    let measured: Vec<LogRow>;
    let rows = if rows.iter().any(|r| r.phase == Phase::Warmup) {
        measured = rows
            .iter()
            .filter(|r| r.phase != Phase::Warmup)
            .cloned()
            .collect();
        &measured[..]
    } else {
        rows
    };
    let sorted = successful_latencies_sorted(rows);
    let total = rows.len() as u64;
    let succeeded = sorted.len() as u64;
    let duration_s = run_duration_s(rows);
    let throughput_rps = match duration_s {
        Some(d) if d > 0.0 => Some(succeeded as f64 / d),
        _ => None,
    };
    Ok(SideSummary {
        label: label.to_owned(),
        source: source.to_owned(),
        log_file: None,
        total,
        succeeded,
        failed: total - succeeded,
        p50_ms: quantile_ms(&sorted, 0.50, REPORT_QUANTILE_METHOD)?,
        p95_ms: quantile_ms(&sorted, 0.95, REPORT_QUANTILE_METHOD)?,
        p99_ms: quantile_ms(&sorted, 0.99, REPORT_QUANTILE_METHOD)?,
        mean_ms: mean(&sorted),
        min_ms: sorted.first().copied(),
        max_ms: sorted.last().copied(),
        throughput_rps,
        duration_s,
        goodput_rps: None,
        llm: llm_summary(rows, duration_s)?,
    })
}

/// Latencies of the successful rows, ascending.
pub(crate) fn successful_latencies_sorted(rows: &[LogRow]) -> Vec<f64> {
    let mut latencies: Vec<f64> = rows.iter().filter(|r| r.ok).map(|r| r.latency_ms).collect();
    // `model::log` refuses non-finite latencies, so total_cmp orders plain numbers.
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// The `q` quantile of ascending samples, `None` when there are none.
pub(crate) fn quantile_ms(
    sorted: &[f64],
    q: f64,
    method: QuantileMethod,
) -> Result<Option<f64>, ReportError> {
    if sorted.is_empty() {
        return Ok(None);
    }
    stats::quantile(sorted, q, method)
        .map(Some)
        .map_err(|e| ReportError::Stats(e.to_string()))
}

/// Arithmetic mean, `None` when empty.
pub(crate) fn mean(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        None
    } else {
        Some(samples.iter().sum::<f64>() / samples.len() as f64)
    }
}

/// `(max(timestamp_ms + latency_ms) - min(timestamp_ms)) / 1000` over all rows.
pub(crate) fn run_duration_s(rows: &[LogRow]) -> Option<f64> {
    let start_ms = rows.iter().map(|r| r.timestamp_ms).reduce(f64::min)?;
    let end_ms = rows
        .iter()
        .map(|r| r.timestamp_ms + r.latency_ms)
        .reduce(f64::max)?;
    Some((end_ms - start_ms) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, ts: f64, lat: f64, ok: bool) -> LogRow {
        LogRow {
            request_id: id,
            timestamp_ms: ts,
            latency_ms: lat,
            status_code: if ok { 200 } else { 503 },
            ok,
            ..LogRow::default()
        }
    }

    #[test]
    fn hand_computed_linear_percentiles_exclude_failures() {
        // Successful latencies 10, 20, 30, 40, 50 (n = 5); the 1000 ms row failed.
        // Linear: h = (n - 1) q. P50: h = 2 -> 30. P95: h = 3.8 -> 40 + 0.8*10 = 48.
        // P99: h = 3.96 -> 40 + 0.96*10 = 49.6. Mean = 150 / 5 = 30.
        let rows = vec![
            row(0, 0.0, 30.0, true),
            row(1, 100.0, 10.0, true),
            row(2, 200.0, 1000.0, false),
            row(3, 300.0, 50.0, true),
            row(4, 400.0, 20.0, true),
            row(5, 500.0, 40.0, true),
        ];
        let s = summary_of_rows("t", "loadgen", &rows).unwrap();
        assert_eq!((s.total, s.succeeded, s.failed), (6, 5, 1));
        assert!((s.p50_ms.unwrap() - 30.0).abs() < 1e-9);
        assert!((s.p95_ms.unwrap() - 48.0).abs() < 1e-9);
        assert!((s.p99_ms.unwrap() - 49.6).abs() < 1e-9);
        assert_eq!(s.mean_ms, Some(30.0));
        assert_eq!((s.min_ms, s.max_ms), (Some(10.0), Some(50.0)));
        // Duration: last end is the failed row, 200 + 1000 = 1200 ms; start 0 -> 1.2 s.
        assert!((s.duration_s.unwrap() - 1.2).abs() < 1e-12);
        assert!((s.throughput_rps.unwrap() - 5.0 / 1.2).abs() < 1e-9);
    }

    #[test]
    fn warmup_rows_are_in_no_number() {
        let measured = vec![row(10, 1000.0, 30.0, true), row(11, 1100.0, 10.0, true)];
        let mut rows = vec![
            LogRow {
                phase: Phase::Warmup,
                ..row(0, 0.0, 900.0, false)
            },
            LogRow {
                phase: Phase::Warmup,
                ..row(1, 10.0, 5000.0, true)
            },
        ];
        rows.extend(measured.iter().cloned());
        let with = summary_of_rows("t", "loadgen", &rows).unwrap();
        let without = summary_of_rows("t", "loadgen", &measured).unwrap();
        assert_eq!(with, without);
        assert_eq!((with.total, with.failed, with.max_ms), (2, 0, Some(30.0)));
        // From a file too: the reader leaves them out.
        let mut csv = Vec::new();
        let mut writer = model::log::LogWriter::new(&mut csv, false).unwrap();
        for r in &rows {
            writer.write_row(r).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let log = model::log::read_log(csv.as_slice()).unwrap();
        assert_eq!(summary_of_log("t", None, &log).unwrap(), without);
    }

    #[test]
    fn llm_numbers_match_numpy() {
        use model::log::LlmTiming;
        let llm_row = |id: u64, ttft: f64, gaps: &[f64], tokens: u64, ok: bool| LogRow {
            llm: Some(LlmTiming {
                ttft_ms: Some(ttft),
                tpot_ms: Some(ttft / 10.0),
                output_tokens: Some(tokens),
                tokens_from: Some(TokensFrom::Usage),
                itl_ms: gaps.to_vec(),
            }),
            ..row(id, id as f64 * 1000.0, ttft + gaps.iter().sum::<f64>(), ok)
        };
        let rows = vec![
            llm_row(0, 100.0, &[10.0, 30.0], 3, true),
            llm_row(1, 300.0, &[20.0], 2, true),
            llm_row(2, 200.0, &[40.0, 50.0, 60.0], 4, true),
            llm_row(3, 900.0, &[999.0], 2, false),
        ];
        let s = summary_of_rows("t", "loadgen", &rows).unwrap();
        let llm = s.llm.unwrap();
        // numpy: np.percentile([100, 300, 200], [50, 90, 95, 99]) = 200, 280, 290, 298
        assert_eq!(
            (
                llm.ttft.p50_ms,
                llm.ttft.p90_ms,
                llm.ttft.p95_ms,
                llm.ttft.p99_ms
            ),
            (Some(200.0), Some(280.0), Some(290.0), Some(298.0))
        );
        // Every gap of the successful rows: [10, 30, 20, 40, 50, 60];
        // np.percentile(..., 90) = 55, 99 -> 59.5; the failed row's 999 is not in.
        assert_eq!(llm.itl.count, 6);
        assert_eq!((llm.itl.p90_ms, llm.itl.max_ms), (Some(55.0), Some(60.0)));
        assert!((llm.itl.p99_ms.unwrap() - 59.5).abs() < 1e-9);
        assert_eq!((llm.output_tokens, llm.tokens_from.as_str()), (9, "usage"));
        // Duration: 0 to the failed row's end, 3000 + 900 + 999 ms.
        assert!((llm.output_tokens_per_s.unwrap() - 9.0 / 4.899).abs() < 1e-9);
    }

    #[test]
    fn empty_and_all_failed_logs_give_null_numbers() {
        let s = summary_of_rows("empty", "input.py", &[]).unwrap();
        assert_eq!((s.total, s.succeeded, s.failed), (0, 0, 0));
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.mean_ms, s.duration_s),
            (None, None, None, None)
        );
        assert_eq!(s.throughput_rps, None);
        let rows = vec![row(0, 0.0, 5.0, false), row(1, 1.0, 7.0, false)];
        let s = summary_of_rows("failed", "input.py", &rows).unwrap();
        assert_eq!((s.total, s.failed), (2, 2));
        assert_eq!(s.p95_ms, None);
        assert_eq!(s.throughput_rps, Some(0.0));
    }
}
