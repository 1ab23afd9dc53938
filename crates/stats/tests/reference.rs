//! Checks quantiles, summaries and t intervals against numpy/Python/scipy values in `fixtures/reference.json`.

use serde::Deserialize;
use stats::{mean_ci, quantile, sorted_finite, student_t_quantile, QuantileMethod, Summary};

#[derive(Deserialize)]
struct Fixtures {
    quantiles: Vec<QuantileSet>,
    summaries: Vec<SummarySet>,
    student_t: Vec<TCase>,
    mean_ci: Vec<MeanCiCase>,
}

#[derive(Deserialize)]
struct QuantileSet {
    name: String,
    samples: Vec<f64>,
    cases: Vec<QuantileCase>,
}

#[derive(Deserialize)]
struct QuantileCase {
    method: String,
    q: f64,
    expected: f64,
    source: String,
}

#[derive(Deserialize)]
struct SummarySet {
    name: String,
    samples: Vec<f64>,
    expected: Vec<ExpectedSummary>,
}

#[derive(Deserialize)]
struct ExpectedSummary {
    method: String,
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    p50: f64,
    p90: f64,
    p95: f64,
    p99: f64,
    p999: f64,
}

#[derive(Deserialize)]
struct TCase {
    p: f64,
    df: f64,
    t: f64,
}

#[derive(Deserialize)]
struct MeanCiCase {
    values: Vec<f64>,
    confidence: f64,
    estimate: f64,
    lower: f64,
    upper: f64,
}

fn fixtures() -> Fixtures {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(path).expect("fixture file is readable");
    serde_json::from_str(&text).expect("fixture file is valid")
}

/// Relative 1e-9, with a 1e-12 absolute floor for values at or near zero
/// (an all-equal sample's standard deviation, extrapolated quantiles near 0).
fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs() + 1e-12;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (diff {:e})",
        (actual - expected).abs()
    );
}

#[test]
fn quantiles_match_numpy_and_python() {
    let fixtures = fixtures();
    let mut checked = 0;
    for set in &fixtures.quantiles {
        let sorted = sorted_finite(&set.samples).unwrap();
        for case in &set.cases {
            let method: QuantileMethod = case.method.parse().unwrap();
            let actual = quantile(&sorted, case.q, method).unwrap();
            let what = format!(
                "{} {} q={} ({})",
                set.name, case.method, case.q, case.source
            );
            assert_close(actual, case.expected, &what);
            checked += 1;
        }
    }
    // Guards against an empty or truncated fixture silently passing.
    assert!(checked >= 16 * 13 * 4, "only {checked} quantile cases");
}

#[test]
fn python_documented_extrapolation_is_reproduced() {
    let quartiles: Vec<f64> = [0.25, 0.5, 0.75]
        .into_iter()
        .map(|q| quantile(&[1.0, 2.0], q, QuantileMethod::Exclusive).unwrap())
        .collect();
    assert_eq!(quartiles, [0.75, 1.5, 2.25]);
}

#[test]
fn summaries_match_python_statistics() {
    let fixtures = fixtures();
    let mut checked = 0;
    for set in &fixtures.summaries {
        for expected in &set.expected {
            let method: QuantileMethod = expected.method.parse().unwrap();
            let actual = Summary::from_samples(&set.samples, method).unwrap();
            let what = |field: &str| format!("{} {} {field}", set.name, expected.method);
            assert_eq!(actual.count, expected.count, "{}", what("count"));
            assert_close(actual.min, expected.min, &what("min"));
            assert_close(actual.max, expected.max, &what("max"));
            assert_close(actual.mean, expected.mean, &what("mean"));
            assert_close(actual.stddev, expected.stddev, &what("stddev"));
            assert_close(actual.p50, expected.p50, &what("p50"));
            assert_close(actual.p90, expected.p90, &what("p90"));
            assert_close(actual.p95, expected.p95, &what("p95"));
            assert_close(actual.p99, expected.p99, &what("p99"));
            assert_close(actual.p999, expected.p999, &what("p999"));
            checked += 1;
        }
    }
    assert!(checked >= 16 * 4, "only {checked} summaries");
}

#[test]
fn t_quantiles_match_scipy() {
    let fixtures = fixtures();
    assert!(fixtures.student_t.len() >= 120);
    for case in &fixtures.student_t {
        let actual = student_t_quantile(case.p, case.df).unwrap();
        let what = format!("t.ppf({}, {})", case.p, case.df);
        // The bar is 1e-6; the implementation does far better.
        assert_close(actual, case.t, &what);
    }
}

#[test]
fn mean_intervals_match_scipy() {
    let fixtures = fixtures();
    assert!(!fixtures.mean_ci.is_empty());
    for case in &fixtures.mean_ci {
        let ci = mean_ci(&case.values, case.confidence).unwrap();
        let what = format!("mean_ci({:?}, {})", case.values, case.confidence);
        assert_close(ci.estimate, case.estimate, &what);
        assert_close(ci.lower, case.lower, &what);
        assert_close(ci.upper, case.upper, &what);
        assert_eq!(ci.confidence, case.confidence);
    }
}

#[test]
fn summary_serializes_with_field_names() {
    let summary = Summary::from_samples(&[2.0, 4.0], QuantileMethod::NearestRank).unwrap();
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["count"], 2);
    assert_eq!(json["p50"], 2.0);
    assert_eq!(json["stddev"], 2f64.sqrt());
}
