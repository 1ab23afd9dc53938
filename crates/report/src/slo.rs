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

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use stats::QuantileMethod;

use crate::summary::{quantile_ms, run_duration_s, SideSummary};
use model::log::{Log, LogRow};

/// A comparison of an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<=`.
    #[serde(rename = "<=")]
    AtMost,
    /// `<`.
    #[serde(rename = "<")]
    Below,
    /// `>=`.
    #[serde(rename = ">=")]
    AtLeast,
    /// `>`.
    #[serde(rename = ">")]
    Above,
}

impl Op {
    fn holds(self, measured: f64, threshold: f64) -> bool {
        match self {
            Self::AtMost => measured <= threshold,
            Self::Below => measured < threshold,
            Self::AtLeast => measured >= threshold,
            Self::Above => measured > threshold,
        }
    }
}

/// A latency series of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// End-to-end latency.
    E2e,
    /// Time to first token.
    Ttft,
    /// Inter-token latency (every gap).
    Itl,
    /// Time per output token.
    Tpot,
}

/// A statistic of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A quantile, 0 to 1 (the Linear method).
    Quantile(f64),
    /// The mean.
    Mean,
    /// The largest value.
    Max,
}

impl Stat {
    fn of_sorted(self, sorted: &[f64]) -> Option<f64> {
        match self {
            Self::Quantile(q) => quantile_ms(sorted, q, QuantileMethod::Linear)
                .ok()
                .flatten(),
            Self::Mean => crate::summary::mean(sorted),
            Self::Max => sorted.last().copied(),
        }
    }
}

/// What an objective measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A statistic of a latency series of successful requests, ms.
    Latency(Series, Stat),
    /// Failed requests over all requests.
    ErrorRate,
    /// Successful requests per second.
    Throughput,
    /// Successful requests per second that met every latency objective.
    Goodput,
}

/// One objective, as written and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The expression as given, spaces removed.
    pub text: String,
    /// What it measures.
    pub metric: Metric,
    /// How it compares.
    pub op: Op,
    /// The bound.
    pub threshold: f64,
}

/// Why an expression is not an objective; the message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--sla {text:?}: {reason}")]
pub struct SloError {
    /// The expression.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Slo {
    type Err = SloError;

    fn from_str(s: &str) -> Result<Self, SloError> {
        let text: String = s.split_whitespace().collect();
        let bad = |reason: String| SloError {
            text: text.clone(),
            reason,
        };
        let Some((at, op_len, op)) = [
            ("<=", Op::AtMost),
            (">=", Op::AtLeast),
            ("<", Op::Below),
            (">", Op::Above),
        ]
        .iter()
        .find_map(|(symbol, op)| text.find(symbol).map(|at| (at, symbol.len(), *op))) else {
            return Err(bad("no comparison; write METRIC<=VALUE, e.g. p95<=800 or error_rate<=0.01 (also <, >=, >)".into()));
        };
        let (name, value) = (&text[..at], &text[at + op_len..]);
        let metric = metric(name).map_err(bad)?;
        let threshold: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad(format!("{value:?} is not a number >= 0")))?;
        if metric == Metric::ErrorRate && threshold > 1.0 {
            return Err(bad(format!(
                "error_rate is a share from 0 to 1, not {threshold}"
            )));
        }
        Ok(Self {
            text,
            metric,
            op,
            threshold,
        })
    }
}

fn metric(name: &str) -> Result<Metric, String> {
    let known =
        "p50, p90, p95, p99, p99.9 (any pNN), mean, max of e2e latency (no prefix or e2e_), \
                 ttft_, itl_ or tpot_ (ms); error_rate, throughput_rps, goodput_rps";
    match name {
        "error_rate" => return Ok(Metric::ErrorRate),
        "throughput_rps" => return Ok(Metric::Throughput),
        "goodput_rps" => return Ok(Metric::Goodput),
        _ => {}
    }
    let (series, stat) = [
        ("e2e_", Series::E2e),
        ("ttft_", Series::Ttft),
        ("itl_", Series::Itl),
        ("tpot_", Series::Tpot),
    ]
    .iter()
    .find_map(|(prefix, series)| name.strip_prefix(prefix).map(|rest| (*series, rest)))
    .unwrap_or((Series::E2e, name));
    match stat {
        "mean" => return Ok(Metric::Latency(series, Stat::Mean)),
        "max" => return Ok(Metric::Latency(series, Stat::Max)),
        _ => {}
    }
    // Digits and a point only: `str::parse` would also take `1e1` or `inf`.
    let percent = stat
        .strip_prefix('p')
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .and_then(|p| p.parse::<f64>().ok())
        .filter(|p| *p > 0.0 && *p < 100.0);
    match percent {
        Some(p) => Ok(Metric::Latency(series, Stat::Quantile(p / 100.0))),
        None if name.is_empty() => Err(format!(
            "no metric before the comparison; the metrics are {known}"
        )),
        None if stat.is_empty() => Err(format!(
            "{name:?} names no statistic; write e.g. {name}p95; the metrics are {known}"
        )),
        None => Err(format!("unknown metric {name:?}; the metrics are {known}")),
    }
}

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

impl Slo {
    /// `pNN<=threshold_ms` on end-to-end latency (the SLA as an objective).
    pub fn e2e_quantile(q: f64, threshold_ms: f64) -> Self {
        Self {
            text: format!("p{}<={threshold_ms}", q * 100.0),
            metric: Metric::Latency(Series::E2e, Stat::Quantile(q)),
            op: Op::AtMost,
            threshold: threshold_ms,
        }
    }

    /// The objective's value on a run; `objectives` are all those given,
    /// for goodput.
    pub fn measure(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> Option<f64> {
        match self.metric {
            Metric::Latency(series, stat) => stat.of_sorted(&series_sorted(&log.rows, series)),
            Metric::ErrorRate => {
                (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
            }
            Metric::Throughput => summary.throughput_rps,
            Metric::Goodput => goodput_rps(objectives, &log.rows),
        }
    }

    /// Judges the objective on a run.
    pub fn judge(&self, summary: &SideSummary, log: &Log, objectives: &[Slo]) -> SloResult {
        let measured = self.measure(summary, log, objectives);
        SloResult {
            expression: self.text.clone(),
            op: self.op,
            threshold: self.threshold,
            measured,
            met: measured.is_some_and(|m| self.op.holds(m, self.threshold)),
        }
    }

    /// Whether one request meets the objective on its own values; `None`
    /// for objectives that are not per request.
    pub fn met_by(&self, row: &LogRow) -> Option<bool> {
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
    fn expressions_parse_with_every_operator() {
        let s = parse(" p95 <= 800 ").unwrap();
        assert_eq!(
            (s.metric, s.op, s.threshold, s.text.as_str()),
            (
                Metric::Latency(Series::E2e, Stat::Quantile(0.95)),
                Op::AtMost,
                800.0,
                "p95<=800"
            )
        );
        assert_eq!(
            parse("e2e_p99<500").unwrap().metric,
            Metric::Latency(Series::E2e, Stat::Quantile(0.99))
        );
        assert_eq!(
            parse("ttft_p95<=500").unwrap().metric,
            Metric::Latency(Series::Ttft, Stat::Quantile(0.95))
        );
        assert_eq!(
            parse("itl_max<=80").unwrap().metric,
            Metric::Latency(Series::Itl, Stat::Max)
        );
        assert_eq!(
            parse("tpot_mean<40").unwrap().metric,
            Metric::Latency(Series::Tpot, Stat::Mean)
        );
        assert_eq!(parse("goodput_rps>=5").unwrap().metric, Metric::Goodput);
        let Metric::Latency(Series::E2e, Stat::Quantile(q)) = parse("p99.9<=1000").unwrap().metric
        else {
            panic!("p99.9 is a quantile")
        };
        assert!((q - 0.999).abs() < 1e-12, "{q}");
        assert_eq!(parse("error_rate<=0.01").unwrap().metric, Metric::ErrorRate);
        assert_eq!(parse("throughput_rps>=150").unwrap().op, Op::AtLeast);
        assert_eq!(parse("max>2").unwrap().op, Op::Above);
    }

    #[test]
    fn a_bad_expression_names_its_bad_part() {
        assert!(parse("p95=800").unwrap_err().contains("no comparison"));
        assert!(parse("p95<=fast")
            .unwrap_err()
            .contains("\"fast\" is not a number"));
        assert!(parse("p100<=5")
            .unwrap_err()
            .contains("unknown metric \"p100\""));
        assert!(parse("latency<=5")
            .unwrap_err()
            .contains("unknown metric \"latency\""));
        assert!(parse("<=5").unwrap_err().contains("no metric"));
        assert!(parse("error_rate<=5")
            .unwrap_err()
            .contains("share from 0 to 1"));
        assert!(parse("ttft_<=500")
            .unwrap_err()
            .contains("names no statistic"));
        assert!(parse("ttft_p101<=500")
            .unwrap_err()
            .contains("unknown metric \"ttft_p101\""));
        assert!(parse("p1e1<=5").unwrap_err().contains("unknown metric"));
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
