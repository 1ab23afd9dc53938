//! Service-level objectives on any measured metric: `p95<=800`,
//! `p99<500`, `error_rate<=0.01`, `throughput_rps>=150` (`report compare
//! --sla EXPR`, repeatable). Each is one check of the verdict, judged on
//! the After, with its measured value.
//!
//! Metrics: `p50`, `p90`, `p95`, `p99`, `p99.9` (any `pNN`), `mean`, `max`
//! (latency of successful requests, ms, the Linear method; `e2e_` in front
//! is the same), `error_rate` (failed / total, 0 to 1) and `throughput_rps`.
//! LLM metrics (`ttft_*`, `itl_*`, `tpot_*`) are named and refused with
//! the reason until runs log them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use stats::QuantileMethod;

use crate::summary::{quantile_ms, successful_latencies_sorted, SideSummary};
use model::log::Log;

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

/// What an objective measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency quantile (0 to 1) of successful requests, ms.
    Quantile(f64),
    /// Mean latency of successful requests, ms.
    Mean,
    /// Slowest successful request, ms.
    Max,
    /// Failed requests over all requests.
    ErrorRate,
    /// Successful requests per second.
    Throughput,
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
    let known = "p50, p90, p95, p99, p99.9 (any pNN), mean, max (ms; e2e_ in front is the same), error_rate, throughput_rps";
    if ["ttft_", "itl_", "tpot_"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err(format!(
            "{name:?} is an LLM metric, which needs per-token timings these logs do not hold; the metrics here are {known}"
        ));
    }
    let name = name.strip_prefix("e2e_").unwrap_or(name);
    match name {
        "mean" => return Ok(Metric::Mean),
        "max" => return Ok(Metric::Max),
        "error_rate" => return Ok(Metric::ErrorRate),
        "throughput_rps" => return Ok(Metric::Throughput),
        _ => {}
    }
    // Digits and a point only: `str::parse` would also take `1e1` or `inf`.
    let percent = name
        .strip_prefix('p')
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .and_then(|p| p.parse::<f64>().ok())
        .filter(|p| *p > 0.0 && *p < 100.0);
    match percent {
        Some(p) => Ok(Metric::Quantile(p / 100.0)),
        None if name.is_empty() => Err(format!(
            "no metric before the comparison; the metrics are {known}"
        )),
        None => Err(format!("unknown metric {name:?}; the metrics are {known}")),
    }
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
    /// The objective's value on a run.
    pub fn measure(&self, summary: &SideSummary, log: &Log) -> Option<f64> {
        match self.metric {
            Metric::Quantile(q) => {
                let sorted = successful_latencies_sorted(&log.rows);
                quantile_ms(&sorted, q, QuantileMethod::Linear)
                    .ok()
                    .flatten()
            }
            Metric::Mean => summary.mean_ms,
            Metric::Max => summary.max_ms,
            Metric::ErrorRate => {
                (summary.total > 0).then(|| summary.failed as f64 / summary.total as f64)
            }
            Metric::Throughput => summary.throughput_rps,
        }
    }

    /// Judges the objective on a run.
    pub fn judge(&self, summary: &SideSummary, log: &Log) -> SloResult {
        let measured = self.measure(summary, log);
        SloResult {
            expression: self.text.clone(),
            op: self.op,
            threshold: self.threshold,
            measured,
            met: measured.is_some_and(|m| self.op.holds(m, self.threshold)),
        }
    }
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
            (Metric::Quantile(0.95), Op::AtMost, 800.0, "p95<=800")
        );
        assert_eq!(parse("e2e_p99<500").unwrap().metric, Metric::Quantile(0.99));
        let Metric::Quantile(q) = parse("p99.9<=1000").unwrap().metric else {
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
        assert!(parse("ttft_p95<=500").unwrap_err().contains("LLM metric"));
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
        let judge = |s: &str| parse(s).unwrap().judge(&summary, &log);
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
}
