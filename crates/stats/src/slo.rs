//! The grammar of service-level objectives: `p95<=800`, `p99<500`,
//! `error_rate<=0.01`, `throughput_rps>=150`, and for LLM runs
//! `ttft_p95<=500`, `itl_p99<=50`, `tpot_mean<=40`, `e2e_p95<=800`,
//! `goodput_rps>=5`.
//!
//! Metrics: a series and a statistic. Series: end-to-end latency (no
//! prefix, or `e2e_`), `ttft_`, `tpot_` and `itl_`, ms. Statistics: `p50`,
//! `p90`, `p95`, `p99`, `p99.9` (any `pNN`, the Linear method), `mean`,
//! `max`. Besides: `error_rate` (failed / total, 0 to 1), `throughput_rps`
//! and `goodput_rps`.
//!
//! This module only parses and compares: what a series holds and how a
//! run is judged belongs to the tools that read runs (`report` judges logs,
//! `loadgen capacity` judges its steps), so both share one grammar without
//! depending on each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{quantile, QuantileMethod};

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
    /// Whether `measured` compares with `threshold` as the operator says.
    pub fn holds(self, measured: f64, threshold: f64) -> bool {
        match self {
            Self::AtMost => measured <= threshold,
            Self::Below => measured < threshold,
            Self::AtLeast => measured >= threshold,
            Self::Above => measured > threshold,
        }
    }

    /// The operator as written: `<=`, `<`, `>=` or `>`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::AtMost => "<=",
            Self::Below => "<",
            Self::AtLeast => ">=",
            Self::Above => ">",
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
    /// The statistic of ascending, finite values; `None` when there are
    /// none (nothing to measure is not a number).
    pub fn of_sorted(self, sorted: &[f64]) -> Option<f64> {
        if sorted.is_empty() {
            return None;
        }
        match self {
            Self::Quantile(q) => quantile(sorted, q, QuantileMethod::Linear).ok(),
            Self::Mean => Some(sorted.iter().sum::<f64>() / sorted.len() as f64),
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

    /// Whether a measured value meets the objective (`None`, nothing
    /// measured, never does).
    pub fn holds(&self, measured: Option<f64>) -> bool {
        measured.is_some_and(|m| self.op.holds(m, self.threshold))
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
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
    fn statistics_and_comparisons_are_computed_on_the_numbers() {
        // numpy: np.percentile([10..100], 90) = 91.0
        let sorted: Vec<f64> = (1..=10).map(|i| 10.0 * i as f64).collect();
        assert_eq!(Stat::Quantile(0.9).of_sorted(&sorted), Some(91.0));
        assert_eq!(Stat::Mean.of_sorted(&sorted), Some(55.0));
        assert_eq!(Stat::Max.of_sorted(&sorted), Some(100.0));
        assert_eq!(Stat::Max.of_sorted(&[]), None);
        let p90 = parse("p90<=91").unwrap();
        assert!(p90.holds(Some(91.0)));
        assert!(!parse("p90<91").unwrap().holds(Some(91.0)));
        assert!(!p90.holds(None));
        assert_eq!(Slo::e2e_quantile(0.95, 800.0).to_string(), "p95<=800");
        assert_eq!(
            parse("p95<=800").unwrap(),
            Slo::e2e_quantile(0.95, 800.0),
            "the SLA as an objective is the parsed expression"
        );
    }
}
