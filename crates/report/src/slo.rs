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
//! The grammar (`Slo`, its parts and parsing) is `stats::slo`, re-exported
//! here; this module judges objectives on logs ([`Judge`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::summary::{run_duration_s, SideSummary};
use model::log::{Log, LogRow};

// The grammar lives in `stats` so that `loadgen capacity --sla` parses the
// same expressions without depending on this crate; judging logs stays here.
pub use stats::slo::{Metric, Op, Series, Slo, SloError, Stat};

/// The values of `series` in `rows`: successful rows only, ascending.
pub fn series_sorted(rows: &[LogRow], series: Series) -> Vec<f64> {
    let ok = rows.iter().filter(|r| r.ok);
    let mut values: Vec<f64> = match series {
        Series::E2e => ok.map(|r| r.latency_ms).collect(),
        Series::Ttft => ok.filter_map(|r| r.llm.as_ref()?.ttft_ms).collect(),
        Series::Tpot => ok.filter_map(|r| r.llm.as_ref()?.tpot_ms).collect(),
        Series::Itl => ok
            .filter_map(|r| r.llm.as_ref())
            .flat_map(|t| t.itl_ms.iter().copied())
            .collect(),
    };
    values.sort_by(f64::total_cmp);
    values
}

/// An objective judged on a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// The expression.
    pub expression: String,
    /// `<=`, `<`, `>=` or `>`.
    pub op: Op,
    /// The bound.
    pub threshold: f64,
    /// The run's value (`None`: nothing to measure, e.g. no successful
    /// request for a latency).
    pub measured: Option<f64>,
    /// Whether the objective holds (never when nothing was measured).
    pub met: bool,
}

/// Judging an objective on report's runs: a log and its summary. A trait
/// because [`Slo`] is defined in `stats`, which knows nothing of logs.
pub trait Judge {
    /// The objective's value on a run; `objectives` are all those given,
    /// for goodput.
    fn measure(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> Option<f64>;

    /// Judges the objective on a run.
    fn judge(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> SloResult;

    /// Whether one request meets the objective on its own values; `None`
    /// for objectives that are not per request.
    fn met_by(&self, row: &LogRow) -> Option<bool>;
}

impl Judge for Slo {
    fn measure(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> Option<f64> {
        match self.metric {
            Metric::Latency(series, stat) => stat.of_sorted(&series_sorted(&log.rows, series)),
            Metric::ErrorRate => {
                (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
            }
            Metric::Throughput => summary.throughput_rps,
            Metric::Goodput => goodput_rps(objectives, &log.rows),
        }
    }

    fn judge(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> SloResult {
        let measured = self.measure(summary, log, objectives);
        SloResult {
            expression: self.text.clone(),
            op: self.op,
            threshold: self.threshold,
            measured,
            met: self.holds(measured),
        }
    }

    fn met_by(&self, row: &LogRow) -> Option<bool> {
        let Metric::Latency(series, stat) = self.metric else {
            return None;
        };
        let holds = |value: Option<f64>| value.is_some_and(|v| self.op.holds(v, self.threshold));
        let llm = row.llm.as_ref();
        Some(match series {
            Series::E2e => self.op.holds(row.latency_ms, self.threshold),
            Series::Ttft => holds(llm.and_then(|t| t.ttft_ms)),
            // One token: no time per output token to miss.
            Series::Tpot => match llm.and_then(|t| t.tpot_ms) {
                None => llm.is_some(),
                some => holds(some),
            },
            Series::Itl => match llm {
                None => false,
                Some(t) if t.itl_ms.is_empty() => true,
                Some(t) => {
                    let mut gaps = t.itl_ms.clone();
                    gaps.sort_by(f64::total_cmp);
                    holds(stat.of_sorted(&gaps))
                }
            },
        })
    }
}

/// Successful requests per second of the run that met every per-request
/// objective in `objectives` (all successful ones when none is per request).
pub fn goodput_rps(objectives: &[Slo], rows: &[LogRow]) -> Option<f64> {
    let duration_s = run_duration_s(rows).filter(|d| *d > 0.0)?;
    let good = rows
        .iter()
        .filter(|r| r.ok && objectives.iter().all(|o| o.met_by(r) != Some(false)))
        .count();
    Some(good as f64 / duration_s)
}

impl fmt::Display for SloResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.met { "met" } else { "NOT met" };
        match self.measured {
            Some(m) => write!(
                f,
                "SLO {}: After measured {m:.3} ({verdict})",
                self.expression
            ),
            None => write!(
                f,
                "SLO {}: nothing to measure in the After ({verdict})",
                self.expression
            ),
        }
    }
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
        let summary = SideSummary::from_log("After", None, &log).unwrap();
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
        let summary = SideSummary::from_log("After", None, &log).unwrap();
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
