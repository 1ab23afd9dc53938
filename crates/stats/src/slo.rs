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
//! This module parses objectives and evaluates them over requests, each
//! seen through a [`Request`]: the few values an objective reads of one
//! request. The tools that read runs (`report` judges logs, `loadgen
//! capacity` judges its steps) build that view from their rows, so both
//! share one grammar and one evaluation without depending on each other.
//!
//! A value that is not finite (NaN, an infinity) is no measurement: series
//! leave it out, and a request whose own value is not finite does not meet
//! an objective on it.

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
    fn of_sorted(self, sorted: &[f64]) -> Option<f64> {
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

/// What an objective reads of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    /// Whether the request succeeded; latency series hold successes only.
    pub ok: bool,
    /// End-to-end latency, ms.
    pub latency_ms: f64,
    /// The streamed timings, when the request carried any.
    pub tokens: Option<Tokens<'a>>,
}

/// The streamed timings of one request, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tokens<'a> {
    /// Time to first token.
    pub ttft_ms: Option<f64>,
    /// Time per output token (none for a one-token answer).
    pub tpot_ms: Option<f64>,
    /// Every gap between tokens.
    pub itl_ms: &'a [f64],
}

/// `value` when it is a measurement (finite), else `None`.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

impl Request<'_> {
    /// This request's values of `series`: one for e2e, TTFT and TPOT when
    /// it has them, every gap for ITL; finite ones only.
    fn values(&self, series: Series) -> Vec<f64> {
        let tokens = self.tokens.as_ref();
        let values: Vec<f64> = match series {
            Series::E2e => vec![self.latency_ms],
            Series::Ttft => tokens.and_then(|t| t.ttft_ms).into_iter().collect(),
            Series::Tpot => tokens.and_then(|t| t.tpot_ms).into_iter().collect(),
            Series::Itl => tokens.map_or_else(Vec::new, |t| t.itl_ms.to_vec()),
        };
        values.into_iter().filter_map(finite).collect()
    }
}

/// The values of `series` over the successful requests, ascending; values
/// that are not finite are left out.
pub fn series_sorted(requests: &[Request<'_>], series: Series) -> Vec<f64> {
    let mut values: Vec<f64> = requests
        .iter()
        .filter(|r| r.ok)
        .flat_map(|r| r.values(series))
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Successful requests that meet every per-request objective in
/// `objectives` (all successful ones when none is per request).
pub fn good_count(requests: &[Request<'_>], objectives: &[Slo]) -> u64 {
    requests
        .iter()
        .filter(|r| r.ok && objectives.iter().all(|o| o.met_by(r) != Some(false)))
        .count() as u64
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

    /// The objective's value over `requests` that ran for `duration_s`
    /// (the span rates are per second of; `None` or not above zero: no
    /// rate to measure). `objectives` are all those given, for goodput.
    /// `None` when there is nothing to measure (no successful request for a
    /// latency, no request for the error rate).
    pub fn measure(
        &self,
        requests: &[Request<'_>],
        objectives: &[Slo],
        duration_s: Option<f64>,
    ) -> Option<f64> {
        let per_s = |n: u64| duration_s.filter(|d| *d > 0.0).map(|d| n as f64 / d);
        match self.metric {
            Metric::Latency(series, stat) => stat.of_sorted(&series_sorted(requests, series)),
            Metric::ErrorRate => {
                let failed = requests.iter().filter(|r| !r.ok).count();
                (!requests.is_empty()).then(|| failed as f64 / requests.len() as f64)
            }
            Metric::Throughput => per_s(requests.iter().filter(|r| r.ok).count() as u64),
            Metric::Goodput => per_s(good_count(requests, objectives)),
        }
    }

    /// Whether one request meets the objective on its own values: its
    /// e2e, TTFT or TPOT (a request with one token has no TPOT and meets
    /// it), and for ITL the statistic over its own gaps (`itl_p99<=50`:
    /// the P99 of its gaps; no gap meets it). `None` for objectives that
    /// are not per request (error rate, the rates).
    fn met_by(&self, request: &Request<'_>) -> Option<bool> {
        let Metric::Latency(series, stat) = self.metric else {
            return None;
        };
        let Some(tokens) = request.tokens else {
            // No streamed timings: only the e2e latency is there to meet.
            return Some(series == Series::E2e && self.holds(finite(request.latency_ms)));
        };
        Some(match series {
            Series::E2e => self.holds(finite(request.latency_ms)),
            Series::Ttft => self.holds(tokens.ttft_ms.and_then(finite)),
            Series::Tpot => match tokens.tpot_ms {
                // One token: no time per output token to miss.
                None => true,
                Some(tpot) => self.holds(finite(tpot)),
            },
            Series::Itl if tokens.itl_ms.is_empty() => true,
            Series::Itl => {
                let mut gaps = request.values(Series::Itl);
                gaps.sort_by(f64::total_cmp);
                self.holds(stat.of_sorted(&gaps))
            }
        })
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

    fn plain(ok: bool, latency_ms: f64) -> Request<'static> {
        Request {
            ok,
            latency_ms,
            tokens: None,
        }
    }

    fn streamed<'a>(
        latency_ms: f64,
        ttft_ms: f64,
        tpot_ms: Option<f64>,
        itl_ms: &'a [f64],
    ) -> Request<'a> {
        Request {
            ok: true,
            latency_ms,
            tokens: Some(Tokens {
                ttft_ms: Some(ttft_ms),
                tpot_ms,
                itl_ms,
            }),
        }
    }

    #[test]
    fn objectives_are_measured_over_requests() {
        // Latencies 10, 20, ..., 100 ms; one more request failed.
        let mut requests: Vec<Request<'_>> =
            (1..=10).map(|i| plain(true, 10.0 * i as f64)).collect();
        requests.push(plain(false, 3.0));
        let measure = |s: &str, duration_s| parse(s).unwrap().measure(&requests, &[], duration_s);
        // numpy: np.percentile([10..100], 90) = 91.0; the failure is not in.
        assert_eq!(measure("p90<=91", None), Some(91.0));
        assert_eq!(measure("mean<=55", None), Some(55.0));
        assert_eq!(measure("max<=100", None), Some(100.0));
        assert_eq!(measure("error_rate<=0.05", None), Some(1.0 / 11.0));
        assert_eq!(measure("throughput_rps>=1", Some(2.0)), Some(5.0));
        // No span, no rate; no request, no error rate; no success, no latency.
        assert_eq!(measure("throughput_rps>=1", Some(0.0)), None);
        assert_eq!(measure("goodput_rps>=1", None), None);
        let none: [Request<'_>; 0] = [];
        assert_eq!(
            parse("error_rate<=0.1").unwrap().measure(&none, &[], None),
            None
        );
        let failed = [plain(false, 5.0)];
        assert_eq!(parse("p95<=1").unwrap().measure(&failed, &[], None), None);
        // Goodput: the successes at or under 50 ms, per second of 2 s.
        let slos = [parse("p95<=50").unwrap(), parse("goodput_rps>=1").unwrap()];
        assert_eq!(slos[1].measure(&requests, &slos, Some(2.0)), Some(2.5));
        assert_eq!(good_count(&requests, &slos), 5);
        assert_eq!(good_count(&requests, &[]), 10);
    }

    #[test]
    fn llm_objectives_are_met_per_request_on_its_own_values() {
        let gaps_0 = [10.0, 20.0];
        let gaps_2 = [10.0, 90.0];
        let requests = [
            streamed(130.0, 100.0, Some(15.0), &gaps_0),
            // One token: no TPOT and no gap to miss.
            streamed(600.0, 600.0, None, &[]),
            streamed(1000.0, 200.0, Some(50.0), &gaps_2),
        ];
        let slo = |s: &str| parse(s).unwrap();
        // TTFT [100, 200, 600]: median 200. ITL gaps [10, 20, 10, 90]: max 90.
        assert_eq!(
            slo("ttft_p50<=500").measure(&requests, &[], None),
            Some(200.0)
        );
        assert_eq!(slo("itl_max<=50").measure(&requests, &[], None), Some(90.0));
        // TPOT [15, 50]: mean 32.5 (the one-token request has none).
        assert_eq!(
            slo("tpot_mean<=40").measure(&requests, &[], None),
            Some(32.5)
        );
        let met = |s: &str| {
            requests
                .iter()
                .map(|r| slo(s).met_by(r))
                .collect::<Vec<_>>()
        };
        assert_eq!(met("ttft_p50<=500"), [Some(true), Some(false), Some(true)]);
        assert_eq!(met("itl_max<=50"), [Some(true), Some(true), Some(false)]);
        assert_eq!(met("tpot_max<=20"), [Some(true), Some(true), Some(false)]);
        assert_eq!(met("error_rate<=0.1"), [None, None, None]);
        // Per request, both: row 0 only; one good request over 2 s.
        let both = [slo("ttft_p50<=500"), slo("itl_max<=50")];
        assert_eq!(
            slo("goodput_rps>=0").measure(&requests, &both, Some(2.0)),
            Some(0.5)
        );
        // A request without streamed timings meets only e2e objectives.
        let bare = plain(true, 10.0);
        assert_eq!(slo("p95<=20").met_by(&bare), Some(true));
        for s in ["ttft_p95<=500", "tpot_max<=500", "itl_max<=500"] {
            assert_eq!(slo(s).met_by(&bare), Some(false), "{s}");
            assert_eq!(slo(s).measure(&[bare], &[], None), None, "{s}");
        }
    }

    #[test]
    fn values_that_are_not_finite_are_no_measurement() {
        let gaps = [5.0, f64::NAN, 7.0, f64::INFINITY];
        let requests = [
            plain(true, 10.0),
            plain(true, f64::INFINITY),
            plain(true, f64::NAN),
            plain(true, 30.0),
            streamed(20.0, f64::NAN, Some(f64::INFINITY), &gaps),
        ];
        assert_eq!(series_sorted(&requests, Series::E2e), [10.0, 20.0, 30.0]);
        assert_eq!(series_sorted(&requests, Series::Itl), [5.0, 7.0]);
        assert!(series_sorted(&requests, Series::Ttft).is_empty());
        assert!(series_sorted(&requests, Series::Tpot).is_empty());
        let slo = |s: &str| parse(s).unwrap();
        assert_eq!(slo("max<=100").measure(&requests, &[], None), Some(30.0));
        assert_eq!(slo("ttft_p50<=100").measure(&requests, &[], None), None);
        // A request's own value that is not finite does not meet an objective.
        assert_eq!(slo("max<=100").met_by(&requests[1]), Some(false));
        assert_eq!(slo("max>=0").met_by(&requests[2]), Some(false));
        assert_eq!(slo("ttft_max<=100").met_by(&requests[4]), Some(false));
        assert_eq!(slo("tpot_max>=0").met_by(&requests[4]), Some(false));
        // Its gaps: the finite ones, 5 and 7.
        assert_eq!(slo("itl_max<=7").met_by(&requests[4]), Some(true));
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
