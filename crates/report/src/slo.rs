//! Service-level objectives on any measured metric: `p95<=800`,
//! `p99<500`, `error_rate<=0.01`, `throughput_rps>=150`, and for LLM runs
//! `ttft_p95<=500`, `itl_p99<=50`, `tpot_mean<=40`, `e2e_p95<=800`
//! (`report compare --sla EXPR`, repeatable). Each is one check of the
//! verdict, judged on the After, with its measured value.
//!
//! Metrics: a series and a statistic. Series: end-to-end latency (no
//! prefix, or `e2e_`), `ttft_`, `tpot_` (successful rows) and `itl_`
//! (every gap of successful rows), ms. Statistics: `p50`, `p90`, `p95`,
//! `p99`, `p99.9` (any `pNN`, the Linear method), `mean`, `max`. Besides:
//! `error_rate` (failed / total, 0 to 1), `throughput_rps` and
//! `goodput_rps`.
//!
//! Goodput counts the successful requests that meet every latency
//! objective given, each judged on the request's own value: its e2e, TTFT
//! or TPOT (a request with one token has no TPOT and meets it), and for ITL
//! the statistic over its own gaps (`itl_p99<=50`: the P99 of its gaps);
//! `error_rate` and the rates are not per request.
//!
//! The grammar (`Slo`, its parts and parsing) and the evaluation over
//! requests are `stats::slo`, the evaluation `loadgen capacity` makes of
//! its steps too; this module judges objectives on logs ([`Judge`]), each
//! row seen through [`request`].

use model::comparison::SideSummary;
use model::log::{Log, LogRow};
use model::summary::ObjectiveResult;
// The grammar lives in `stats` so that `loadgen capacity --sla` parses the
// same expressions without depending on this crate; judging logs stays here.
use stats::slo::Slo;

use crate::summary::run_duration_s;

/// What an objective reads of a row.
pub(crate) fn request(row: &LogRow) -> stats::slo::Request<'_> {
    stats::slo::Request {
        ok: row.ok,
        latency_ms: row.latency_ms,
        tokens: row.llm.as_ref().map(|t| stats::slo::Tokens {
            ttft_ms: t.ttft_ms,
            tpot_ms: t.tpot_ms,
            itl_ms: &t.itl_ms,
        }),
    }
}

/// Every row as an objective reads it.
pub(crate) fn requests(rows: &[LogRow]) -> Vec<stats::slo::Request<'_>> {
    rows.iter().map(request).collect()
}

/// `slo` judged: its expression, bound and measured value.
pub(crate) fn result(slo: &Slo, measured: Option<f64>) -> ObjectiveResult {
    ObjectiveResult {
        expression: slo.text.clone(),
        op: slo.op.symbol().to_owned(),
        threshold: slo.threshold,
        measured,
        met: slo.holds(measured),
    }
}

/// Judging an objective on report's runs: a log and its summary. A trait
/// because [`Slo`] is defined in `stats`, which knows nothing of logs.
pub(crate) trait Judge {
    /// The objective's value on a run; `objectives` are all those given,
    /// for goodput.
    fn measure(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> Option<f64>;

    /// Judges the objective on a run.
    fn judge(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> ObjectiveResult;
}

impl Judge for Slo {
    fn measure(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> Option<f64> {
        // The summary's duration is the rows' (first start to last response).
        Slo::measure(self, &requests(&log.rows), objectives, summary.duration_s)
    }

    fn judge(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> ObjectiveResult {
        result(self, Judge::measure(self, summary, log, objectives))
    }
}

/// Successful requests per second of the run that met every per-request
/// objective in `objectives` (all successful ones when none is per request).
pub(crate) fn goodput_rps(objectives: &[Slo], rows: &[LogRow]) -> Option<f64> {
    let duration_s = run_duration_s(rows).filter(|d| *d > 0.0)?;
    let good = stats::slo::good_count(&requests(rows), objectives);
    Some(good as f64 / duration_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Slo, String> {
        s.parse::<Slo>().map_err(|e| e.to_string())
    }

    #[test]
    fn objectives_are_judged_on_the_numbers() {
        use model::log::{LogFormat, LogRow};
        // Latencies 10, 20, ..., 100 ms; one more row failed.
        let mut rows: Vec<LogRow> = (0..10)
            .map(|i| LogRow {
                request_id: i,
                timestamp_ms: i as f64,
                latency_ms: 10.0 * (i + 1) as f64,
                status_code: 200,
                ok: true,
                ..LogRow::default()
            })
            .collect();
        rows.push(LogRow {
            request_id: 10,
            status_code: 503,
            error: "http_503".into(),
            ..LogRow::default()
        });
        let log = Log {
            format: LogFormat::Loadgen,
            rows,
        };
        let summary = crate::summary::summary_of_log("After", None, &log).unwrap();
        let judge = |s: &str| parse(s).unwrap().judge(&summary, &log, &[]);
        // numpy: np.percentile([10..100], 90) = 91.0
        let p90 = judge("p90<=91");
        assert_eq!((p90.measured, p90.met), (Some(91.0), true));
        assert!(!judge("p90<91").met);
        let errors = judge("error_rate<=0.05");
        assert_eq!(errors.measured, Some(1.0 / 11.0));
        assert!(!errors.met);
        assert!(judge("mean<=55").met);
        assert!(judge("max>=100").met);
    }

    /// loadgen's capacity search and the report judge one way: a value
    /// that is not finite is no measurement (rows built in memory can
    /// carry one; the CSV reader refuses them).
    #[test]
    fn a_value_that_is_not_finite_is_no_measurement() {
        use model::log::{LlmTiming, LogFormat};
        let row = |id: u64, latency_ms: f64, gaps: Vec<f64>| LogRow {
            request_id: id,
            timestamp_ms: id as f64 * 100.0,
            latency_ms,
            status_code: 200,
            ok: true,
            llm: Some(LlmTiming {
                ttft_ms: Some(5.0),
                itl_ms: gaps,
                ..LlmTiming::default()
            }),
            ..LogRow::default()
        };
        let log = Log {
            format: LogFormat::Loadgen,
            rows: vec![
                row(0, 10.0, vec![1.0, f64::NAN]),
                row(1, f64::INFINITY, vec![2.0]),
                row(2, 20.0, vec![f64::INFINITY, 3.0]),
            ],
        };
        // The summary refuses the infinity; the judge reads only its span.
        let finite = Log {
            format: LogFormat::Loadgen,
            rows: [&log.rows[0], &log.rows[2]]
                .map(|r| LogRow {
                    llm: None,
                    ..r.clone()
                })
                .to_vec(),
        };
        let summary = crate::summary::summary_of_log("After", None, &finite).unwrap();
        let judge = |s: &str| parse(s).unwrap().judge(&summary, &log, &[]);
        let max = judge("max<=100");
        assert_eq!((max.measured, max.met), (Some(20.0), true));
        assert_eq!(judge("itl_max<=10").measured, Some(3.0));
        assert_eq!(judge("p50<=100").measured, Some(15.0));
    }

    #[test]
    fn llm_objectives_and_goodput_are_judged_per_request() {
        use model::log::{LlmTiming, LogFormat};
        // Three streamed requests over 0..2 s (the last ends at 1000 + 1000 ms).
        let row = |id: u64, ttft: f64, gaps: Vec<f64>, tpot: Option<f64>, latency: f64| LogRow {
            request_id: id,
            timestamp_ms: id as f64 * 500.0,
            latency_ms: latency,
            status_code: 200,
            ok: true,
            llm: Some(LlmTiming {
                ttft_ms: Some(ttft),
                tpot_ms: tpot,
                output_tokens: Some(gaps.len() as u64 + 1),
                itl_ms: gaps,
                ..LlmTiming::default()
            }),
            ..LogRow::default()
        };
        let log = Log {
            format: LogFormat::Loadgen,
            rows: vec![
                row(0, 100.0, vec![10.0, 20.0], Some(15.0), 130.0),
                row(1, 600.0, vec![], None, 600.0),
                row(2, 200.0, vec![10.0, 90.0], Some(50.0), 1000.0),
            ],
        };
        let summary = crate::summary::summary_of_log("After", None, &log).unwrap();
        let slos: Vec<Slo> = ["ttft_p50<=500", "itl_max<=50", "goodput_rps>=0"]
            .iter()
            .map(|s| parse(s).unwrap())
            .collect();
        let judge = |s: &str| parse(s).unwrap().judge(&summary, &log, &slos);
        // TTFT [100, 200, 600]: median 200. ITL gaps [10, 20, 10, 90]: max 90.
        assert_eq!(judge("ttft_p50<=500").measured, Some(200.0));
        assert_eq!(judge("itl_max<=50").measured, Some(90.0));
        assert!(!judge("itl_max<=50").met);
        // TPOT [15, 50]: mean 32.5 (the one-token row has none).
        assert_eq!(judge("tpot_mean<=40").measured, Some(32.5));
        // Per request: row 0 meets both; row 1's TTFT 600 misses; row 2's
        // largest gap 90 misses. One good request over 2 s.
        assert_eq!(judge("goodput_rps>=0").measured, Some(0.5));
        // A log without the LLM columns has nothing to measure for them.
        let plain = Log {
            format: LogFormat::Loadgen,
            rows: log
                .rows
                .iter()
                .map(|r| LogRow {
                    llm: None,
                    ..r.clone()
                })
                .collect(),
        };
        let r = parse("ttft_p95<=500").unwrap().judge(&summary, &plain, &[]);
        assert_eq!((r.measured, r.met), (None, false));
    }
}
